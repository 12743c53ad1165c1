"""SLUB, the slab allocator of Linux 6.18 (mm/slub.c).

Boot (kmem_cache_init): the kmem_cache_node and kmem_cache boot caches built on their own
early slabs and bootstrapped into slab objects, the kmalloc caches (slab_common), random
freelist sequences, then the named caches of start_kernel's init calls.

Run time follows 6.18 function by function: the lockless fast paths on the CPU slab
(``kmem_cache_cpu.freelist`` + ``tid``), ___slab_alloc (CPU slab, CPU partial slabs, node
partial list, get_any_partial, new_slab), __slab_free / put_cpu_partial / __put_partials /
deactivate_slab / discard_slab, allocate_slab with shuffle_freelist
(CONFIG_SLAB_FREELIST_RANDOM) and the hardened free pointer
(``ptr ^ s->random ^ swab(ptr_addr)``, CONFIG_SLAB_FREELIST_HARDENED), the per-CPU sheaves
and per-node barns of caches created with a ``sheaf_capacity`` (6.18 has them only there:
maple_node and vm_area_struct), kmalloc / kfree and kmalloc_large (PGTY_large_kmalloc
folios), and the node counters NR_SLAB_RECLAIMABLE_B / NR_SLAB_UNRECLAIMABLE_B.

Every structure is written into simulated memory when the kernel would write it: free
pointers inside free objects, ``struct slab`` over the struct page, ``kmem_cache_cpu``,
``kmem_cache_node`` lists and counters, sheaves and barns.  Python objects mirror them for
speed (and the simulator never reads back what it did not write).  Nothing is deferred to
``k.sync()``.  What is not modelled: SLUB_DEBUG object tracking (off by default in the
reference), memcg obj_exts (``obj_exts`` stays 0), sysfs kobjects, kfence/kasan, RCU
grace periods (a SLAB_TYPESAFE_BY_RCU slab is freed at once, as after the grace period),
kfree_rcu sheaves (``rcu_free`` stays NULL) and cmpxchg retries (one CPU runs at a time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.kernel import slab_common as sc
from mmintro.kernel.sparse import PFN_SECTION_SHIFT
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "KMEM_CACHE",
    "KmemCache",
    "SlubError",
    "SlubState",
    "cache_of",
    "find_cache",
    "kfree",
    "kmalloc",
    "kmalloc_node",
    "kmem_cache_alloc",
    "kmem_cache_alloc_node",
    "kmem_cache_create",
    "kmem_cache_free",
    "kmem_cache_init",
    "kmem_cache_zalloc",
    "ksize",
    "kzalloc",
    "live_objects",
    "slabinfo",
]

_T = get_types()

# -- mm/slub.c #defines and boot parameters ---------------------------------------------------
MIN_PARTIAL = 5
MAX_PARTIAL = 10
OO_SHIFT = 16
OO_MASK = (1 << OO_SHIFT) - 1
MAX_OBJS_PER_PAGE = 32767  # slab->objects is 15 bits
SLUB_MIN_ORDER = 0
SLUB_MAX_ORDER = kc.PAGE_ALLOC_COSTLY_ORDER  # slub_max_order default ("Order=0-3", config.txt)
SLUB_MIN_OBJECTS = 0
# TID_STEP = roundup_pow_of_two(CONFIG_NR_CPUS) with CONFIG_PREEMPTION (PREEMPT_DYNAMIC).
TID_STEP = 1 << (kc.NR_CPUS - 1).bit_length()
MAX_FULL_SHEAVES = 10
MAX_EMPTY_SHEAVES = 10
PCS_BATCH_MAX = 32
# mm/internal.h
_F = G.FLAGS
GFP_RECLAIM_MASK = (
    G.__GFP_RECLAIM
    | _F["__GFP_HIGH"]
    | _F["__GFP_IO"]
    | _F["__GFP_FS"]
    | _F["__GFP_NOWARN"]
    | _F["__GFP_RETRY_MAYFAIL"]
    | _F["__GFP_NOFAIL"]
    | _F["__GFP_NORETRY"]
    | _F["__GFP_MEMALLOC"]
    | _F["__GFP_NOMEMALLOC"]
)  # | __GFP_NOLOCKDEP (0 without LOCKDEP)
GFP_CONSTRAINT_MASK = _F["__GFP_HARDWALL"] | _F["__GFP_THISNODE"]
__GFP_ZERO = _F["__GFP_ZERO"]
__GFP_COMP = _F["__GFP_COMP"]
__GFP_THISNODE = _F["__GFP_THISNODE"]
__GFP_NOWARN = _F["__GFP_NOWARN"]
__GFP_NORETRY = _F["__GFP_NORETRY"]
__GFP_NOFAIL = _F["__GFP_NOFAIL"]
__GFP_NOMEMALLOC = _F["__GFP_NOMEMALLOC"]
__GFP_MEMALLOC = _F["__GFP_MEMALLOC"]
__GFP_DIRECT_RECLAIM = _F["__GFP_DIRECT_RECLAIM"]
__GFP_RECLAIMABLE = _F["__GFP_RECLAIMABLE"]
__GFP_RECLAIM = G.__GFP_RECLAIM
MASK64 = (1 << 64) - 1
LIST_POISON1 = page_alloc.LIST_POISON1
LIST_POISON2 = page_alloc.LIST_POISON2
_free_frozen_pages = getattr(page_alloc, "__free_frozen_pages")

# -- layouts (all from the type data) -------------------------------------------------------------
_slab = _T.struct("slab")
SLAB_LIST = _slab.offsetof("slab_list")
assert _slab.offsetof("next") == SLAB_LIST
W_SLAB_CACHE = page_alloc._word("slab", "slab_cache", 8)
W_SLAB_LIST = page_alloc._word("slab", "slab_list", 8)
W_SLAB_FREELIST = page_alloc._word("slab", "freelist", 8)
D_SLAB_SLABS = page_alloc._word("slab", "slabs", 4)
D_COUNTERS = page_alloc._word("slab", "counters", 4)
_cbit = _slab.walk("counters")[0]
SH_INUSE = _slab.walk("inuse")[0] - _cbit
SH_OBJECTS = _slab.walk("objects")[0] - _cbit
SH_FROZEN = _slab.walk("frozen")[0] - _cbit
assert max(SH_INUSE, SH_OBJECTS, SH_FROZEN) < 32
W_FLAGS = page_alloc.W_FLAGS
W_MAPPING = page_alloc.W_MAPPING
W_LRU_NEXT = page_alloc.W_LRU_NEXT
D_PAGE_TYPE = page_alloc.D_PAGE_TYPE
D_REFCOUNT = page_alloc.D_REFCOUNT
SL_PARTIAL = 1 << _T.const("SL_partial")
SL_PFMEMALLOC = 1 << _T.const("SL_pfmemalloc")
PGTY_SLAB = _T.const("PGTY_slab") << 24
PGTY_LARGE_KMALLOC = _T.const("PGTY_large_kmalloc") << 24
PAGE_TYPE_NONE = page_alloc.PAGE_TYPE_NONE
NR_SLAB_RECLAIMABLE_B = "NR_SLAB_RECLAIMABLE_B"
NR_SLAB_UNRECLAIMABLE_B = "NR_SLAB_UNRECLAIMABLE_B"

_cpu = _T.struct("kmem_cache_cpu")
CPU_FREELIST = _cpu.offsetof("freelist")
CPU_TID = _cpu.offsetof("tid")
CPU_SLAB = _cpu.offsetof("slab")
CPU_PARTIAL = _cpu.offsetof("partial")
_node = _T.struct("kmem_cache_node")
N_NR_PARTIAL = _node.offsetof("nr_partial")
N_PARTIAL = _node.offsetof("partial")
N_NR_SLABS = _node.offsetof("nr_slabs")
N_TOTAL_OBJECTS = _node.offsetof("total_objects")
N_FULL = _node.offsetof("full")
N_BARN = _node.offsetof("barn")
_barn = _T.struct("node_barn")
B_FULL = _barn.offsetof("sheaves_full")
B_EMPTY = _barn.offsetof("sheaves_empty")
B_NR_FULL = _barn.offsetof("nr_full")
B_NR_EMPTY = _barn.offsetof("nr_empty")
_sheaf = _T.struct("slab_sheaf")
SHEAF_LIST = _sheaf.offsetof("barn_list")
SHEAF_CACHE = _sheaf.offsetof("cache")
SHEAF_SIZE = _sheaf.offsetof("size")
SHEAF_OBJECTS = _sheaf.offsetof("objects")
_pcs = _T.struct("slub_percpu_sheaves")
PCS_MAIN = _pcs.offsetof("main")
PCS_SPARE = _pcs.offsetof("spare")
KMEM_CACHE_LIST = _T.offsetof("kmem_cache", "list")
KMEM_CACHE_NODE_OFF = _T.offsetof("kmem_cache", "node")


class SlubError(RuntimeError):
    """A misuse the kernel would BUG or WARN on: double free, free of a foreign pointer,
    free to the wrong cache."""


# -- fast typed access to simulated memory ----------------------------------------------------------
class _Words:
    """u64 reads and writes at kernel virtual addresses: direct-map addresses through cached
    memoryviews of 64 KiB PhysMem chunks, vmemmap addresses through the memory map's words,
    anything else through KMem."""

    __slots__ = ("chunks", "k", "pob", "vmb")

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.chunks: dict[int, memoryview | None] = {}
        self.pob = k.page_offset_base
        self.vmb = k.vmemmap_base

    def chunk(self, pa: int) -> memoryview | None:
        c = pa >> 16
        try:
            m: memoryview | None = memoryview(self.k.mem.view(c << 16, 1 << 16)).cast("Q")
        except ValueError:  # part of a registered region that ends inside the chunk
            m = None
        self.chunks[c] = m
        return m

    def w(self, va: int, v: int) -> None:
        pa = va - self.pob
        if 0 <= pa < 1 << 46:
            m = self.chunks.get(pa >> 16)
            if m is None:
                m = self.chunk(pa)
                if m is None:
                    self.k.mem.write_u64(pa, v)
                    return
            m[(pa & 0xFFFF) >> 3] = v & MASK64
        elif self.vmb <= va < self.vmb + (1 << 40):
            off = va - self.vmb
            pfn = off >> 6
            mv64, _mv32, base, _a = self.k.memmap_words[pfn >> PFN_SECTION_SHIFT]
            mv64[base + pfn * 8 + ((off & 63) >> 3)] = v & MASK64
        else:
            self.k.kmem.write_u64(va, v)

    def r(self, va: int) -> int:
        pa = va - self.pob
        if 0 <= pa < 1 << 46:
            m = self.chunks.get(pa >> 16)
            if m is None:
                m = self.chunk(pa)
                if m is None:
                    return self.k.mem.read_u64(pa)
            return m[(pa & 0xFFFF) >> 3]
        return self.k.mem.read_u64(self.k.pa(va))

    def w32(self, va: int, v: int) -> None:
        """A 4-byte store (read-modify-write of its aligned word)."""
        a = va & ~7
        shift = (va & 4) * 8
        old = self.r(a)
        self.w(a, (old & ~(0xFFFFFFFF << shift)) | ((v & 0xFFFFFFFF) << shift))


class KList:
    """A kernel ``struct list_head`` list written as it changes (list_add, list_add_tail,
    list_del with poisoning); ``obj`` maps each linked list_head address to its owner."""

    __slots__ = ("W", "head", "nxt", "obj", "prv")

    def __init__(self, W: _Words, head: int) -> None:
        self.W = W
        self.head = head
        self.nxt = {head: head}
        self.prv = {head: head}
        self.obj: dict[int, object] = {}
        W.w(head, head)  # INIT_LIST_HEAD
        W.w(head + 8, head)

    def _link(self, new: int, prev: int, nxt: int, owner: object) -> None:
        if new in self.obj:
            raise SlubError(f"list_add of {new:#x}: already on the list")
        self.nxt[prev] = new
        self.prv[new] = prev
        self.nxt[new] = nxt
        self.prv[nxt] = new
        self.obj[new] = owner
        W = self.W
        W.w(new, nxt)
        W.w(new + 8, prev)
        W.w(prev, new)
        W.w(nxt + 8, new)

    def add(self, new: int, owner: object) -> None:
        self._link(new, self.head, self.nxt[self.head], owner)

    def add_tail(self, new: int, owner: object) -> None:
        self._link(new, self.prv[self.head], self.head, owner)

    def delete(self, e: int) -> None:
        p = self.prv.pop(e)
        n = self.nxt.pop(e)
        del self.obj[e]
        self.nxt[p] = n
        self.prv[n] = p
        W = self.W
        W.w(p, n)
        W.w(n + 8, p)
        W.w(e, LIST_POISON1)
        W.w(e + 8, LIST_POISON2)

    def first(self) -> object | None:
        n = self.nxt[self.head]
        return None if n == self.head else self.obj[n]

    def __iter__(self) -> Iterator:
        n = self.nxt[self.head]
        while n != self.head:
            o = self.obj[n]
            n = self.nxt[n]  # safe against deletion of o
            yield o

    def __len__(self) -> int:
        return len(self.obj)


def _swab(a: int) -> int:
    return int.from_bytes(a.to_bytes(8, "little"), "big")


# -- the simulator's mirror of the SLUB structures ---------------------------------------------------
class Slab:
    """A ``struct slab`` (the head struct page of a slab) and the fields SLUB keeps there."""

    __slots__ = (
        "base",
        "cache",
        "freelist",
        "frozen",
        "inuse",
        "mv32",
        "mv64",
        "next",
        "nid",
        "node_partial",
        "objects",
        "order",
        "page",
        "pfmemalloc",
        "pfn",
        "slabs",
        "w",
    )

    def __init__(self, k: Kernel, pfn: int, order: int, nid: int) -> None:
        self.pfn = pfn
        self.page = k.vmemmap_base + pfn * k.struct_page_size
        self.base = k.page_offset_base + (pfn << PAGE_SHIFT)
        self.order = order
        self.cache: KmemCache | None = None
        self.freelist = 0
        self.inuse = 0
        self.objects = 0
        self.frozen = 0
        self.nid = nid
        self.next: Slab | None = None
        self.slabs = 0
        self.node_partial = False
        self.pfmemalloc = False
        self.mv64, self.mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
        self.w = base + pfn * 8

    def write(self) -> None:
        """slab->freelist and slab->counters."""
        self.mv64[self.w + W_SLAB_FREELIST] = self.freelist
        self.mv32[2 * self.w + D_COUNTERS] = (
            (self.inuse << SH_INUSE) | (self.objects << SH_OBJECTS) | (self.frozen << SH_FROZEN)
        )

    def write_next(self) -> None:
        """slab->next and slab->slabs (the CPU partial chain)."""
        self.mv64[self.w + W_SLAB_LIST] = self.next.page if self.next is not None else 0
        self.mv32[2 * self.w + D_SLAB_SLABS] = self.slabs

    def set_flag(self, bit: int, on: bool) -> None:
        if on:
            self.mv64[self.w + W_FLAGS] |= bit
        else:
            self.mv64[self.w + W_FLAGS] &= ~bit

    def __repr__(self) -> str:
        name = self.cache.name if self.cache else "?"
        return f"<slab {self.page:#x} {name} pfn={self.pfn:#x} inuse={self.inuse}/{self.objects} frozen={self.frozen}>"


class CpuSlab:
    """One CPU's ``struct kmem_cache_cpu``."""

    __slots__ = ("addr", "freelist", "partial", "slab", "tid")

    def __init__(self, addr: int, tid: int) -> None:
        self.addr = addr
        self.freelist = 0
        self.tid = tid
        self.slab: Slab | None = None
        self.partial: Slab | None = None

    def write(self, W: _Words) -> None:
        a = self.addr
        W.w(a + CPU_FREELIST, self.freelist)
        W.w(a + CPU_TID, self.tid)
        W.w(a + CPU_SLAB, self.slab.page if self.slab is not None else 0)
        W.w(a + CPU_PARTIAL, self.partial.page if self.partial is not None else 0)


class Sheaf:
    """A ``struct slab_sheaf`` (kmalloc'd): ``objs`` mirrors objects[0 .. size-1]."""

    __slots__ = ("addr", "objs")

    def __init__(self, addr: int) -> None:
        self.addr = addr
        self.objs: list[int] = []

    @property
    def size(self) -> int:
        return len(self.objs)

    def write_size(self, W: _Words) -> None:
        W.w32(self.addr + SHEAF_SIZE, len(self.objs))

    def push(self, W: _Words, obj: int) -> None:
        W.w(self.addr + SHEAF_OBJECTS + 8 * len(self.objs), obj)
        self.objs.append(obj)
        W.w32(self.addr + SHEAF_SIZE, len(self.objs))


class Barn:
    """A ``struct node_barn``: full and empty sheaves of one node."""

    __slots__ = ("addr", "empty", "full")

    def __init__(self, W: _Words, addr: int) -> None:
        self.addr = addr
        self.full = KList(W, addr + B_FULL)
        self.empty = KList(W, addr + B_EMPTY)
        self.write_counts(W)

    def write_counts(self, W: _Words) -> None:
        W.w32(self.addr + B_NR_FULL, len(self.full))
        W.w32(self.addr + B_NR_EMPTY, len(self.empty))


class PerCpuSheaves:
    """One CPU's ``struct slub_percpu_sheaves``."""

    __slots__ = ("addr", "main", "spare")

    def __init__(self, addr: int) -> None:
        self.addr = addr
        self.main: Sheaf | None = None
        self.spare: Sheaf | None = None

    def write(self, W: _Words) -> None:
        W.w(self.addr + PCS_MAIN, self.main.addr if self.main else 0)
        W.w(self.addr + PCS_SPARE, self.spare.addr if self.spare else 0)


class KmemCacheNode:
    """A ``struct kmem_cache_node`` (an object of the kmem_cache_node cache)."""

    __slots__ = ("addr", "barn", "nid", "nr_slabs", "partial", "total_objects")

    def __init__(self, W: _Words, addr: int, nid: int, barn: Barn | None) -> None:
        """init_kmem_cache_node()."""
        self.addr = addr
        self.nid = nid
        W.w(addr + N_NR_PARTIAL, 0)
        W.w32(addr, 0)  # spin_lock_init(&n->list_lock)
        self.partial = KList(W, addr + N_PARTIAL)
        self.nr_slabs = 0
        self.total_objects = 0
        W.w(addr + N_NR_SLABS, 0)
        W.w(addr + N_TOTAL_OBJECTS, 0)
        KList(W, addr + N_FULL)  # only SLAB_STORE_USER debugging links slabs here
        self.barn = barn
        W.w(addr + N_BARN, barn.addr if barn else 0)

    @property
    def nr_partial(self) -> int:
        return len(self.partial)


class KmemCache:
    """A ``struct kmem_cache`` and SLUB's per-CPU and per-node state for it."""

    def __init__(self, addr: int) -> None:
        self.addr = addr
        self.name = ""
        self.name_addr = 0
        self.aliases: list[str] = []  # names merged into this cache (__kmem_cache_alias)
        self.object_size = 0
        self.size = 0
        self.align = 0
        self.offset = 0
        self.inuse = 0
        self.red_left_pad = 0
        self.flags = 0
        self.ctor: str | None = None
        self.ctor_fn: Callable[[Kernel, int], None] | None = None
        self.ctor_addr = 0
        self.oo_order = self.oo_objects = 0
        self.min_order = self.min_objects = 0
        self.cpu_partial = 0
        self.cpu_partial_slabs = 0
        self.min_partial = 0
        self.allocflags = 0
        self.refcount = 0
        self.random = 0
        self.random_seq: list[int] | None = None
        self.random_seq_addr = 0
        self.remote_node_defrag_ratio = 0
        self.useroffset = 0
        self.usersize = 0
        self.reciprocal = (0, 0, 0)
        self.sheaf_capacity = 0
        self.cpu_slab = 0  # __percpu struct kmem_cache_cpu *
        self.cpus: list[CpuSlab] = []
        self.cpu_sheaves = 0  # __percpu struct slub_percpu_sheaves *
        self.pcs: list[PerCpuSheaves] = []
        self.nodes: list[KmemCacheNode | None] = []

    @property
    def oo(self) -> int:
        return (self.oo_order << OO_SHIFT) + self.oo_objects

    def __repr__(self) -> str:
        return f"<kmem_cache {self.name} {self.addr:#x} size={self.size}>"


class SlubState:
    """SLUB's books for one simulated kernel (``k.slab``)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.W = _Words(k)
        self.state = sc.DOWN
        self.caches: list[KmemCache] = []  # slab_caches in creation (list_add) order
        self.slab_caches = KList(self.W, k.sym("slab_caches"))
        self.kmem_cache: KmemCache | None = None
        self.kmem_cache_node: KmemCache | None = None
        self.kmem_buckets_cache: KmemCache | None = None
        self.kmalloc_caches: list[list[KmemCache | None]] = [
            [None] * (sc.KMALLOC_SHIFT_HIGH + 1) for _ in range(sc.NR_KMALLOC_TYPES)
        ]
        self.buckets: dict[int, list[KmemCache | None]] = {}  # kmem_buckets address -> caches
        self.cachep: dict[str, KmemCache] = {}  # kernel global (task_struct_cachep ...) -> cache
        self.names: dict[str, KmemCache] = {}  # every name asked for (aliases too) -> cache
        self.slab_of_pfn: dict[int, Slab] = {}  # every pfn of every slab -> its slab
        self.large: dict[int, int] = {}  # kmalloc_large head pfn -> order
        self.live: dict[int, tuple[KmemCache | None, str | None]] = {}  # object -> (cache, caller)
        self.slab_nodes = list(range(k.config.nodes))
        self.callers: dict[str, int] = {}  # caller name -> call site address
        self.oom: list[str] = []  # slab_out_of_memory reports

    def slab_caches_add(self, s: KmemCache) -> None:
        """list_add(&s->list, &slab_caches)."""
        self.caches.append(s)
        self.names.setdefault(s.name, s)
        self.slab_caches.add(s.addr + KMEM_CACHE_LIST, s)


# -- call sites ---------------------------------------------------------------------------------------
# Sizes of the kernel functions the simulator names as call sites (what %pS prints after '/').
CALLER_SIZES = {
    "__kmem_cache_create_args": 0x2F0,
    "create_kmalloc_cache": 0xA0,
    "bootstrap": 0x120,
    "init_kmem_cache_nodes": 0x1A0,
    "early_kmem_cache_node_alloc": 0x150,
    "cache_random_seq_create": 0xD0,
    "kstrdup": 0x60,
    "kvasprintf": 0xC0,
    "alloc_empty_sheaf": 0x70,
    "kmem_buckets_create": 0x260,
}
DEFAULT_CALLER_SIZE = 0x200


def callsite(k: Kernel, caller: str) -> int:
    """The address of the call in ``caller`` (registered once as a function symbol)."""
    sl = k.slab
    a = sl.callers.get(caller)
    if a is None:
        sym = k.image.symbols.get(caller)
        if sym is None:
            size = CALLER_SIZES.get(caller, DEFAULT_CALLER_SIZE)
            start = k.image.func(caller, size)
        else:
            if sym.kind != "func":
                raise ValueError(f"caller {caller!r} is a {sym.kind} symbol, not a function")
            start, size = sym.address, max(sym.size, 2)
        a = sl.callers[caller] = start + (size // 3 & ~1)
    return a


# -- sizes (calculate_sizes and friends) ---------------------------------------------------------
def order_objects(order: int, size: int) -> int:
    return (PAGE_SIZE << order) // size


def calc_slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(k: Kernel, size: int) -> int:
    """mm/slub.c calculate_order(): at least 4 * (fls(nr_cpus) + 1) objects per slab when
    slub_max_order allows, and the smallest order wasting at most 1/16 (then 1/8, 1/4)."""
    min_objects = SLUB_MIN_OBJECTS
    if not min_objects:
        nr_cpus = k.config.cpus  # num_present_cpus(); nr_cpu_ids when it reads 1
        min_objects = 4 * (sc.fls(nr_cpus) + 1)
    max_objects = max(order_objects(SLUB_MAX_ORDER, size), 1)
    min_objects = min(min_objects, max_objects)
    min_order = max(SLUB_MIN_ORDER, sc.get_order(min_objects * size))
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
        return sc.get_order(size * MAX_OBJS_PER_PAGE) - 1
    fraction = 16
    while fraction > 1:
        order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fraction)
        if order <= SLUB_MAX_ORDER:
            return order
        fraction //= 2
    order = sc.get_order(size)
    if order <= kc.MAX_PAGE_ORDER:
        return order
    return -1


def reciprocal_value(d: int) -> tuple[int, int, int]:
    """lib/math/reciprocal_div.c reciprocal_value(): (m, sh1, sh2)."""
    l_ = sc.fls(d - 1)
    m = ((1 << 32) * ((1 << l_) - d)) // d + 1
    return m & 0xFFFFFFFF, min(l_, 1), max(l_ - 1, 0)


def calculate_sizes(k: Kernel, args: sc.KmemCacheArgs, s: KmemCache) -> bool:
    """mm/slub.c calculate_sizes(): where the free pointer goes (mid-object, after the object
    for ctor / RCU / poisoned caches, or at the RCU cache's freeptr_offset), the slot size,
    the slab order and objects per slab (oo, min) and the page allocator flags."""
    flags = s.flags
    size = sc.ALIGN(s.object_size, 8)
    if flags & sc.SLAB_POISON and not flags & sc.SLAB_TYPESAFE_BY_RCU and not s.ctor:
        s.flags |= sc.__OBJECT_POISON
    else:
        s.flags &= ~sc.__OBJECT_POISON
    if flags & sc.SLAB_RED_ZONE and size == s.object_size:
        size += 8
    s.inuse = size
    if (
        (flags & sc.SLAB_TYPESAFE_BY_RCU and not args.use_freeptr_offset)
        or flags & sc.SLAB_POISON
        or s.ctor
        or (flags & sc.SLAB_RED_ZONE and s.object_size < 8)
    ):
        # The object's contents must survive being free: the pointer goes after it.
        s.offset = size
        size += 8
    elif flags & sc.SLAB_TYPESAFE_BY_RCU and args.use_freeptr_offset:
        s.offset = args.freeptr_offset
    else:
        # Away from the edges, against small over/underflows from the neighbours.
        s.offset = sc.ALIGN_DOWN(s.object_size // 2, 8)
    if flags & sc.SLAB_STORE_USER:
        size += 2 * 24 + (4 if flags & sc.SLAB_KMALLOC else 0)  # 2 struct track (no STACKDEPOT) + orig_size
    if flags & sc.SLAB_RED_ZONE:
        size += 8
        s.red_left_pad = sc.ALIGN(8, s.align)
        size += s.red_left_pad
    size = sc.ALIGN(size, s.align)
    s.size = size
    s.reciprocal = reciprocal_value(size)
    order = calculate_order(k, size)
    if order < 0:
        return False
    s.allocflags = __GFP_COMP
    if s.flags & sc.SLAB_CACHE_DMA:
        s.allocflags |= G.GFP_DMA
    if s.flags & sc.SLAB_CACHE_DMA32:
        s.allocflags |= G.GFP_DMA32
    if s.flags & sc.SLAB_RECLAIM_ACCOUNT:
        s.allocflags |= __GFP_RECLAIMABLE
    s.oo_order, s.oo_objects = order, order_objects(order, size)
    s.min_order = sc.get_order(size)
    s.min_objects = order_objects(s.min_order, size)
    return bool(s.oo_objects)


def set_cpu_partial(s: KmemCache) -> None:
    """mm/slub.c set_cpu_partial() / slub_set_cpu_partial(): objects kept on the per-CPU
    partial list by slot size, and the slab count that half-full slabs would need."""
    if s.flags & sc.SLAB_DEBUG_FLAGS:
        nr_objects = 0
    elif s.size >= PAGE_SIZE:
        nr_objects = 6
    elif s.size >= 1024:
        nr_objects = 24
    elif s.size >= 256:
        nr_objects = 52
    else:
        nr_objects = 120
    s.cpu_partial = nr_objects
    s.cpu_partial_slabs = -(-(nr_objects * 2) // s.oo_objects)


def init_cache_random_seq(k: Kernel, s: KmemCache) -> None:
    """mm/slub.c init_cache_random_seq() with slab_common's cache_random_seq_create() and
    freelist_randomize(): a Fisher-Yates shuffle of the object indices, kcalloc'd, then
    scaled to byte offsets."""
    count = s.oo_objects
    if s.random_seq is not None or count < 2:
        return
    addr = kmalloc(k, count * 4, G.GFP_KERNEL | __GFP_ZERO, caller="cache_random_seq_create")
    if not addr:
        raise MemoryError(f"SLUB: Unable to initialize free list for {s.name}")
    seq = list(range(count))
    rng = k.rng
    for i in range(count - 1, 0, -1):
        r = int(rng.integers(i + 1))  # get_random_u32_below(i + 1)
        seq[i], seq[r] = seq[r], seq[i]
    seq = [i * s.size for i in seq]
    k.kmem.write_bytes(addr, b"".join(v.to_bytes(4, "little") for v in seq))
    s.random_seq = seq
    s.random_seq_addr = addr
    if s.addr and s in k.slab.caches:
        k.kmem.set(s.addr, "kmem_cache", "random_seq", addr)


def init_freelist_randomization(k: Kernel) -> None:
    """mm/slub.c init_freelist_randomization(): every cache created before slab_state UP,
    walking slab_caches from its head (newest first)."""
    for s in reversed(k.slab.caches):
        init_cache_random_seq(k, s)


# -- cache creation --------------------------------------------------------------------------------
def do_kmem_cache_create(
    k: Kernel,
    addr: int,
    name: str,
    name_addr: int,
    size: int,
    args: sc.KmemCacheArgs,
    flags: int,
    into: KmemCache | None = None,
) -> KmemCache:
    """mm/slub.c do_kmem_cache_create()."""
    sl = k.slab
    s = into if into is not None else KmemCache(addr)
    s.name = name
    s.name_addr = name_addr
    s.size = s.object_size = size
    s.flags = flags  # kmem_cache_flags(): no slab_debug= on the command line
    s.random = int(k.rng.integers(0, 1 << 64, dtype="uint64"))  # get_random_long()
    s.align = args.align
    s.ctor = args.ctor
    s.ctor_fn = args.ctor_fn
    if args.ctor:
        # a CTORS key "name@file" is a static function whose name another file also uses
        sym = k.image.symbols.get(args.ctor)
        s.ctor_addr = (
            sym.address
            if sym
            else k.image.func(args.ctor.split("@")[0], sc.CTORS.get(args.ctor, (0x40,))[0], key=args.ctor)
        )
    s.useroffset = args.useroffset
    s.usersize = args.usersize
    if not calculate_sizes(k, args, s):
        raise ValueError(f"kmem_cache_create({name}): object size {size} does not fit a slab")
    if not s.flags & SLAB_NO_CMPXCHG:  # system_has_freelist_aba(): cmpxchg16b
        s.flags |= sc.__CMPXCHG_DOUBLE
    s.min_partial = max(MIN_PARTIAL, min(MAX_PARTIAL, (s.size.bit_length() - 1) // 2))
    set_cpu_partial(s)
    if args.sheaf_capacity and not s.flags & sc.SLAB_DEBUG_FLAGS:
        s.cpu_sheaves = k.alloc_percpu(_T.sizeof("struct slub_percpu_sheaves"), 8)
        s.sheaf_capacity = args.sheaf_capacity
    s.remote_node_defrag_ratio = 1000
    if sl.state >= sc.UP:
        init_cache_random_seq(k, s)
    init_kmem_cache_nodes(k, s)
    alloc_kmem_cache_cpus(k, s)
    if s.cpu_sheaves:
        init_percpu_sheaves(k, s)
    return s


SLAB_NO_CMPXCHG = sc.SLAB_NO_CMPXCHG


def init_kmem_cache_nodes(k: Kernel, s: KmemCache) -> None:
    """mm/slub.c init_kmem_cache_nodes(): a kmem_cache_node per node (from the early slab
    while slab_state is DOWN), with a kmalloc'd barn for caches with sheaves."""
    sl = k.slab
    s.nodes = [None] * k.config.nodes
    for nid in sl.slab_nodes:
        if sl.state == sc.DOWN:
            early_kmem_cache_node_alloc(k, nid)
            continue
        barn = None
        if s.cpu_sheaves:
            baddr = kmalloc_node(k, _T.sizeof("struct node_barn"), G.GFP_KERNEL, nid, caller="init_kmem_cache_nodes")
            if not baddr:
                raise MemoryError("init_kmem_cache_nodes: barn")
            barn = Barn(sl.W, baddr)  # barn_init()
        n = kmem_cache_alloc_node(k, sl.kmem_cache_node, G.GFP_KERNEL, nid, caller="init_kmem_cache_nodes")
        if not n:
            raise MemoryError("init_kmem_cache_nodes")
        s.nodes[nid] = KmemCacheNode(sl.W, n, nid, barn)


def early_kmem_cache_node_alloc(k: Kernel, nid: int) -> None:
    """mm/slub.c early_kmem_cache_node_alloc(): the first kmem_cache_node object comes from
    a slab taken by hand, which then goes on that node's partial list."""
    sl = k.slab
    s = sl.kmem_cache_node
    assert s is not None
    slab = new_slab(k, s, G.GFP_NOWAIT, nid)
    if slab is None:
        raise MemoryError("early_kmem_cache_node_alloc")
    if slab.nid != nid:
        k.log.append(f"SLUB: Unable to allocate memory from node {nid}")
    n = slab.freelist
    slab.freelist = get_freepointer(sl.W, s, n)
    slab.inuse = 1
    slab.write()
    node = KmemCacheNode(sl.W, n, nid, None)
    s.nodes[nid] = node
    inc_slabs_node(k, s, nid, slab.objects)
    __add_partial(k, node, slab, tail=False)
    sl.live[n] = (s, "early_kmem_cache_node_alloc")
    callsite(k, "early_kmem_cache_node_alloc")


def alloc_kmem_cache_cpus(k: Kernel, s: KmemCache) -> None:
    """mm/slub.c alloc_kmem_cache_cpus() / init_kmem_cache_cpus(): tid = init_tid(cpu)."""
    s.cpu_slab = k.alloc_percpu(_T.sizeof("struct kmem_cache_cpu"), 16)
    s.cpus = []
    for cpu in range(k.config.cpus):
        c = CpuSlab(k.per_cpu_ptr(s.cpu_slab, cpu), cpu)
        c.write(k.slab.W)
        s.cpus.append(c)


def init_percpu_sheaves(k: Kernel, s: KmemCache) -> None:
    """mm/slub.c init_percpu_sheaves(): an empty main sheaf per CPU."""
    s.pcs = []
    for cpu in range(k.config.cpus):
        pcs = PerCpuSheaves(k.per_cpu_ptr(s.cpu_sheaves, cpu))
        pcs.main = alloc_empty_sheaf(k, s, G.GFP_KERNEL)
        if pcs.main is None:
            raise MemoryError("init_percpu_sheaves")
        pcs.write(k.slab.W)
        s.pcs.append(pcs)


def write_kmem_cache(k: Kernel, s: KmemCache) -> None:
    """Store ``struct kmem_cache`` (its node[] only up to nr_node_ids: the object is sized so)."""
    km = k.kmem
    fields = {
        "cpu_slab": s.cpu_slab,
        "cpu_sheaves": s.cpu_sheaves,
        "flags": s.flags,
        "min_partial": s.min_partial,
        "size": s.size,
        "object_size": s.object_size,
        "reciprocal_size.m": s.reciprocal[0],
        "reciprocal_size.sh1": s.reciprocal[1],
        "reciprocal_size.sh2": s.reciprocal[2],
        "offset": s.offset,
        "cpu_partial": s.cpu_partial,
        "cpu_partial_slabs": s.cpu_partial_slabs,
        "sheaf_capacity": s.sheaf_capacity,
        "oo.x": s.oo,
        "min.x": (s.min_order << OO_SHIFT) + s.min_objects,
        "allocflags": s.allocflags,
        "refcount": s.refcount,
        "ctor": s.ctor_addr,
        "inuse": s.inuse,
        "align": s.align,
        "red_left_pad": s.red_left_pad,
        "name": s.name_addr,
        "random": s.random,
        "remote_node_defrag_ratio": s.remote_node_defrag_ratio,
        "random_seq": s.random_seq_addr,
        "useroffset": s.useroffset,
        "usersize": s.usersize,
    }
    for path, v in fields.items():
        km.set(s.addr, "kmem_cache", path, v)
    for nid, n in enumerate(s.nodes):
        km.write_u64(s.addr + KMEM_CACHE_NODE_OFF + 8 * nid, n.addr if n else 0)


def write_kmalloc_caches(k: Kernel) -> None:
    base = k.sym("kmalloc_caches")
    row = sc.KMALLOC_SHIFT_HIGH + 1
    for t, caches in enumerate(k.slab.kmalloc_caches):
        for i, s in enumerate(caches):
            k.kmem.write_u64(base + 8 * (t * row + i), s.addr if s is not None else 0)


def __kmem_cache_alias(k: Kernel, name: str, size: int, align: int, flags: int, ctor: str | None) -> KmemCache | None:
    """mm/slub.c __kmem_cache_alias(): reuse a mergeable cache, growing its object_size and
    inuse so that kzalloc clears the larger object."""
    s = sc.find_mergeable(k, size, align, flags, name, ctor)
    if s is not None:
        s.refcount += 1
        s.object_size = max(s.object_size, size)
        s.inuse = max(s.inuse, sc.ALIGN(size, 8))
        s.aliases.append(name)
        k.slab.names.setdefault(name, s)
        k.kmem.set(s.addr, "kmem_cache", "refcount", s.refcount)
        k.kmem.set(s.addr, "kmem_cache", "object_size", s.object_size)
        k.kmem.set(s.addr, "kmem_cache", "inuse", s.inuse)
    return s


def bootstrap(k: Kernel, static_cache: KmemCache) -> KmemCache:
    """mm/slub.c bootstrap(): copy a static boot cache into an object of the kmem_cache
    cache, flush its CPU slab and point its slabs at the copy."""
    sl = k.slab
    addr = kmem_cache_zalloc(k, sl.kmem_cache, G.GFP_NOWAIT, caller="bootstrap")
    if not addr:
        raise MemoryError("bootstrap")
    s = static_cache  # memcpy(s, static_cache, kmem_cache->object_size)
    s.addr = addr
    __flush_cpu_slab(k, s, k.current_cpu)
    for n in s.nodes:
        if n is None:
            continue
        for slab in n.partial:
            slab.mv64[slab.w + W_SLAB_CACHE] = addr
    write_kmem_cache(k, s)
    sl.slab_caches_add(s)
    return s


@contextlib.contextmanager
def boot_pagesets(k: Kernel) -> Iterator[None]:
    """Run with every zone on its ``boot_pageset`` (mm/page_alloc.c: high 0, batch 1), as
    mm_core_init() -> kmem_cache_init() runs before start_kernel's setup_per_cpu_pageset():
    order-0 pages are taken from the buddy lists one at a time and freed straight back, so
    the real pagesets are still empty when boot is over.  (The simulated boot sets the real
    pagesets up first; this restores the kernel's order for the slab's boot allocations.)"""
    saved = []
    for zs in k.zones:
        for z in zs:
            for pcp in z.pcp:
                if pcp.count:
                    raise SlubError(f"boot_pagesets: CPU {pcp.cpu}'s pageset of {z.name} is not empty")
                saved.append(
                    (
                        pcp,
                        (pcp.high, pcp.high_min, pcp.high_max, pcp.batch, pcp.alloc_factor, pcp.free_count, pcp.flags),
                    )
                )
                pcp.high = pcp.high_min = pcp.high_max = 0  # BOOT_PAGESET_HIGH
                pcp.batch = 1  # BOOT_PAGESET_BATCH
                pcp.alloc_factor = pcp.free_count = pcp.flags = 0
    try:
        yield
    finally:
        for pcp, v in saved:
            assert pcp.count == 0
            pcp.high, pcp.high_min, pcp.high_max, pcp.batch, pcp.alloc_factor, pcp.free_count, pcp.flags = v


def kmem_cache_init(k: Kernel) -> None:
    """mm/slub.c kmem_cache_init() (mm_core_init): the boot caches, the kmalloc caches and
    random freelists, then the caches of the later init calls (slab_common.INIT_CACHES),
    all on the boot pagesets (see boot_pagesets())."""
    with boot_pagesets(k):
        _kmem_cache_init(k)


def _kmem_cache_init(k: Kernel) -> None:
    img = k.image
    for name in ("kmalloc_caches", "kmalloc_size_index", "kmem_cache", "kmem_cache_node", "kmem_buckets_cache"):
        img.var(name, "data")
    k.kmem.write_bytes(k.sym("kmalloc_size_index"), bytes(sc.KMALLOC_SIZE_INDEX))
    sl = k.slab = SlubState(k)
    boot_kmem_cache_node = KmemCache(0)  # static __initdata structures until bootstrap()
    boot_kmem_cache = KmemCache(0)
    sl.kmem_cache_node = boot_kmem_cache_node
    sl.kmem_cache = boot_kmem_cache
    sc.create_boot_cache(
        k,
        boot_kmem_cache_node,
        "kmem_cache_node",
        _T.sizeof("struct kmem_cache_node"),
        sc.SLAB_HWCACHE_ALIGN | sc.SLAB_NO_OBJ_EXT,
        0,
        0,
    )
    sl.state = sc.PARTIAL
    sc.create_boot_cache(
        k,
        boot_kmem_cache,
        "kmem_cache",
        KMEM_CACHE_NODE_OFF + 8 * k.config.nodes,
        sc.SLAB_HWCACHE_ALIGN | sc.SLAB_NO_OBJ_EXT,
        0,
        0,
    )
    sl.kmem_cache = bootstrap(k, boot_kmem_cache)
    sl.kmem_cache_node = bootstrap(k, boot_kmem_cache_node)
    k.kmem.write_u64(k.sym("kmem_cache"), sl.kmem_cache.addr)
    k.kmem.write_u64(k.sym("kmem_cache_node"), sl.kmem_cache_node.addr)
    sc.create_kmalloc_caches(k)
    assert sl.kmem_buckets_cache is not None
    k.kmem.write_u64(k.sym("kmem_buckets_cache"), sl.kmem_buckets_cache.addr)
    init_freelist_randomization(k)
    # mm_core_init() -> vmalloc_init() creates vmap_area right after kmem_cache_init(), before
    # the caches of later init calls (procfs/slabinfo: vmap_area just above kmalloc_buckets);
    # vmalloc_init() itself runs later in the simulated boot and takes this cache.
    from mmintro.kernel import vmalloc

    vmalloc.create_vmap_area_cache(k)
    sc.create_init_caches(k)


# -- slab pages --------------------------------------------------------------------------------------
def alloc_slab_page(k: Kernel, gfp: int, node: int | None, order: int) -> tuple[int, bool] | None:
    """mm/slub.c alloc_slab_page(): frozen pages (no refcount), __SetPageSlab on the head;
    pfmemalloc pages (page->lru.next & BIT(1)) make a pfmemalloc slab."""
    pfn = k.alloc_pages(gfp, order, node)
    if pfn is None:
        return None
    mv64, mv32, w = page_alloc.page_words(k, pfn)
    mv32[2 * w + D_REFCOUNT] = 0  # alloc_frozen_pages(): the slab holds no reference
    mv32[2 * w + D_PAGE_TYPE] = PGTY_SLAB
    pfmemalloc = bool(mv64[w + W_LRU_NEXT] & 2)
    return pfn, pfmemalloc


def account_slab(k: Kernel, slab: Slab, order: int, s: KmemCache, sign: int = 1) -> None:
    """mm/slub.c account_slab() / unaccount_slab(): the node's slab bytes (memcg obj_exts
    are not modelled)."""
    item = NR_SLAB_RECLAIMABLE_B if s.flags & sc.SLAB_RECLAIM_ACCOUNT else NR_SLAB_UNRECLAIMABLE_B
    k.mod_node_page_state(slab.nid, item, sign * (PAGE_SIZE << order))


def setup_object(k: Kernel, s: KmemCache, obj: int) -> None:
    if s.ctor_fn is not None:
        s.ctor_fn(k, obj)


def _build_freelist(k: Kernel, s: KmemCache, slab: Slab, order: list[int]) -> None:
    """Link the objects at byte offsets ``order`` into slab->freelist, in that order."""
    W = k.slab.W
    base = slab.base
    ctor = s.ctor_fn
    if ctor is not None:
        for off in order:
            ctor(k, base + off)
    rnd = s.random
    soff = s.offset
    prev = 0
    for off in order:
        cur = base + off
        if prev:
            a = prev + soff
            W.w(a, cur ^ rnd ^ _swab(a))
        prev = cur
    a = prev + soff
    W.w(a, rnd ^ _swab(a))  # set_freepointer(s, p, NULL)
    slab.freelist = base + order[0]


def shuffle_freelist(k: Kernel, s: KmemCache, slab: Slab) -> bool:
    """mm/slub.c shuffle_freelist(): walk random_seq from a random position, wrapping, and
    skip entries beyond a smaller (fallback order) slab."""
    seq = s.random_seq
    if slab.objects < 2 or not seq:
        return False
    count = s.oo_objects
    pos = int(k.rng.integers(count))  # get_random_u32_below(freelist_count)
    limit = slab.objects * s.size
    order = []
    while len(order) < slab.objects:
        idx = seq[pos]
        pos += 1
        if pos >= count:
            pos = 0
        if idx < limit:
            order.append(idx)
    _build_freelist(k, s, slab, order)
    return True


def allocate_slab(k: Kernel, s: KmemCache, flags: int, node: int | None) -> Slab | None:
    """mm/slub.c allocate_slab(): the cache's order without reclaim or warnings first, then
    the minimum order; a shuffled (or, before random sequences exist, sequential) freelist."""
    flags |= s.allocflags
    alloc_gfp = (flags | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_NOFAIL
    if alloc_gfp & __GFP_DIRECT_RECLAIM and s.oo_order > s.min_order:
        alloc_gfp = (alloc_gfp | __GFP_NOMEMALLOC) & ~__GFP_RECLAIM
    order, objects = s.oo_order, s.oo_objects
    got = alloc_slab_page(k, alloc_gfp, node, order)
    if got is None:
        order, objects = s.min_order, s.min_objects
        got = alloc_slab_page(k, flags, node, order)
        if got is None:
            return None
    pfn, pfmemalloc = got
    nid = page_alloc.page_zone(k, pfn).nid
    slab = Slab(k, pfn, order, nid)
    slab.objects = objects
    slab.pfmemalloc = pfmemalloc
    if pfmemalloc:
        slab.set_flag(SL_PFMEMALLOC, True)
    account_slab(k, slab, order, s)
    slab.cache = s
    slab.mv64[slab.w + W_SLAB_CACHE] = s.addr
    if not shuffle_freelist(k, s, slab):
        _build_freelist(k, s, slab, [i * s.size for i in range(objects)])
    slab.write()
    sp = k.slab.slab_of_pfn
    for i in range(1 << order):
        sp[pfn + i] = slab
    return slab


def new_slab(k: Kernel, s: KmemCache, flags: int, node: int | None) -> Slab | None:
    """mm/slub.c new_slab()."""
    return allocate_slab(k, s, flags & (GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK), node)


def __free_slab(k: Kernel, s: KmemCache, slab: Slab) -> None:
    """mm/slub.c __free_slab(): clear pfmemalloc, page->mapping and PageSlab, unaccount, and
    free the frozen pages."""
    if slab.pfmemalloc:
        slab.set_flag(SL_PFMEMALLOC, False)
    mv64, mv32, w = slab.mv64, slab.mv32, slab.w
    mv64[w + W_MAPPING] = 0
    mv32[2 * w + D_PAGE_TYPE] = PAGE_TYPE_NONE
    account_slab(k, slab, slab.order, s, -1)
    sp = k.slab.slab_of_pfn
    for i in range(1 << slab.order):
        del sp[slab.pfn + i]
    k.allocations.pop(slab.pfn, None)
    _free_frozen_pages(k, slab.pfn, slab.order)


def discard_slab(k: Kernel, s: KmemCache, slab: Slab) -> None:
    """mm/slub.c discard_slab(): SLAB_TYPESAFE_BY_RCU slabs wait for a grace period in the
    kernel; the simulator's snapshots are quiescent, so the grace period has passed."""
    dec_slabs_node(k, s, slab.nid, slab.objects)
    __free_slab(k, s, slab)


def inc_slabs_node(k: Kernel, s: KmemCache, nid: int, objects: int) -> None:
    n = s.nodes[nid]
    assert n is not None
    n.nr_slabs += 1
    n.total_objects += objects
    W = k.slab.W
    W.w(n.addr + N_NR_SLABS, n.nr_slabs)
    W.w(n.addr + N_TOTAL_OBJECTS, n.total_objects)


def dec_slabs_node(k: Kernel, s: KmemCache, nid: int, objects: int) -> None:
    n = s.nodes[nid]
    assert n is not None
    n.nr_slabs -= 1
    n.total_objects -= objects
    W = k.slab.W
    W.w(n.addr + N_NR_SLABS, n.nr_slabs)
    W.w(n.addr + N_TOTAL_OBJECTS, n.total_objects)


# -- free pointers -------------------------------------------------------------------------------------
def get_freepointer(W: _Words, s: KmemCache, obj: int) -> int:
    """freelist_ptr_decode(s, *(obj + s->offset), obj + s->offset)."""
    a = obj + s.offset
    return W.r(a) ^ s.random ^ _swab(a)


def set_freepointer(W: _Words, s: KmemCache, obj: int, fp: int) -> None:
    """freelist_ptr_encode(): ptr ^ s->random ^ swab(ptr_addr)."""
    if obj == fp:
        raise SlubError(f"{s.name}: naive double free of {obj:#x} (set_freepointer BUG_ON)")
    a = obj + s.offset
    W.w(a, fp ^ s.random ^ _swab(a))


# -- node partial lists -----------------------------------------------------------------------------
def __add_partial(k: Kernel, n: KmemCacheNode, slab: Slab, tail: bool) -> None:
    lh = slab.page + SLAB_LIST
    if tail:
        n.partial.add_tail(lh, slab)
    else:
        n.partial.add(lh, slab)
    slab.node_partial = True
    slab.set_flag(SL_PARTIAL, True)
    k.slab.W.w(n.addr + N_NR_PARTIAL, len(n.partial))


add_partial = __add_partial


def remove_partial(k: Kernel, n: KmemCacheNode, slab: Slab) -> None:
    n.partial.delete(slab.page + SLAB_LIST)
    slab.node_partial = False
    slab.set_flag(SL_PARTIAL, False)
    k.slab.W.w(n.addr + N_NR_PARTIAL, len(n.partial))


def pfmemalloc_match(slab: Slab, gfp: int) -> bool:
    if slab.pfmemalloc:
        return bool(gfp & __GFP_MEMALLOC) and not gfp & __GFP_NOMEMALLOC  # gfp_pfmemalloc_allowed()
    return True


def get_partial_node(k: Kernel, s: KmemCache, n: KmemCacheNode | None, pc_flags: int) -> Slab | None:
    """mm/slub.c get_partial_node(): the first slab for the CPU, more (up to half of
    cpu_partial_slabs) onto its CPU partial list."""
    if n is None or not len(n.partial):
        return None
    partial = None
    partial_slabs = 0
    for slab in n.partial:
        if not pfmemalloc_match(slab, pc_flags):
            continue
        remove_partial(k, n, slab)
        if partial is None:
            partial = slab
            if s.cpu_partial_slabs == 0:
                break
        else:
            put_cpu_partial(k, s, slab, False)
            partial_slabs += 1
            if partial_slabs > s.cpu_partial_slabs // 2:
                break
    return partial


def get_any_partial(k: Kernel, s: KmemCache, pc_flags: int) -> Slab | None:
    """mm/slub.c get_any_partial(): other nodes' partial slabs, when they hold more than
    min_partial and get_cycles() % 1024 <= remote_node_defrag_ratio."""
    if k.config.nodes == 1:
        return None  # the one node was just searched
    if not s.remote_node_defrag_ratio or int(k.rng.integers(1024)) > s.remote_node_defrag_ratio:
        return None
    highest = G.gfp_zone(pc_flags)
    for z in k.zonelist[k.numa_node_id()][0]:
        if z.idx > highest:
            continue
        n = s.nodes[z.nid]
        if n is not None and len(n.partial) > s.min_partial:
            slab = get_partial_node(k, s, n, pc_flags)
            if slab is not None:
                return slab
    return None


def get_partial(k: Kernel, s: KmemCache, node: int | None, pc_flags: int) -> Slab | None:
    searchnode = node if node is not None else k.numa_node_id()
    slab = get_partial_node(k, s, s.nodes[searchnode], pc_flags)
    if slab is not None or (node is not None and pc_flags & __GFP_THISNODE):
        return slab
    return get_any_partial(k, s, pc_flags)


# -- CPU slabs and CPU partial lists ----------------------------------------------------------------
def put_cpu_partial(k: Kernel, s: KmemCache, slab: Slab, drain: bool) -> None:
    """mm/slub.c put_cpu_partial(): push onto this CPU's partial chain; a free into a full
    chain first drains the chain to the node lists."""
    c = s.cpus[k.current_cpu]
    oldslab = c.partial
    slab_to_put = None
    slabs = 0
    if oldslab is not None:
        if drain and oldslab.slabs >= s.cpu_partial_slabs:
            slab_to_put = oldslab
            oldslab = None
        else:
            slabs = oldslab.slabs
    slabs += 1
    slab.slabs = slabs
    slab.next = oldslab
    slab.write_next()
    c.partial = slab
    k.slab.W.w(c.addr + CPU_PARTIAL, slab.page)
    if slab_to_put is not None:
        __put_partials(k, s, slab_to_put)


def __put_partials(k: Kernel, s: KmemCache, partial_slab: Slab | None) -> None:
    """mm/slub.c __put_partials(): unfreeze a CPU partial chain onto the node partial lists,
    discarding empty slabs beyond min_partial."""
    to_discard: list[Slab] = []
    while partial_slab is not None:
        slab = partial_slab
        partial_slab = slab.next
        n = s.nodes[slab.nid]
        assert n is not None
        if not slab.inuse and len(n.partial) >= s.min_partial:
            to_discard.append(slab)
        else:
            __add_partial(k, n, slab, tail=True)
    for slab in reversed(to_discard):  # slab_to_discard is a stack
        discard_slab(k, s, slab)


def put_partials_cpu(k: Kernel, s: KmemCache, c: CpuSlab) -> None:
    partial = c.partial
    c.partial = None
    k.slab.W.w(c.addr + CPU_PARTIAL, 0)
    if partial is not None:
        __put_partials(k, s, partial)


def deactivate_slab(k: Kernel, s: KmemCache, slab: Slab, freelist: int) -> None:
    """mm/slub.c deactivate_slab(): splice the CPU freelist in front of the slab's own,
    unfreeze, and file the slab by its new state (discard / node partial / full)."""
    W = k.slab.W
    n = s.nodes[slab.nid]
    assert n is not None
    tail = bool(slab.freelist)  # remote frees: DEACTIVATE_TO_TAIL
    free_delta = 0
    freelist_tail = 0
    it = freelist
    lo, hi = slab.base, slab.base + slab.objects * s.size
    while it:
        nextfree = get_freepointer(W, s, it)
        if nextfree and not lo <= nextfree < hi:
            raise SlubError(f"{s.name}: corrupted CPU freelist in {slab!r}: {it:#x} -> {nextfree:#x}")
        freelist_tail = it
        free_delta += 1
        it = nextfree
    slab.frozen = 0
    if freelist_tail:
        slab.inuse -= free_delta
        set_freepointer(W, s, freelist_tail, slab.freelist)
        slab.freelist = freelist
    slab.write()
    if not slab.inuse and len(n.partial) >= s.min_partial:
        discard_slab(k, s, slab)
    elif slab.freelist:
        __add_partial(k, n, slab, tail)


def __flush_cpu_slab(k: Kernel, s: KmemCache, cpu: int) -> None:
    c = s.cpus[cpu]
    freelist = c.freelist
    slab = c.slab
    c.slab = None
    c.freelist = 0
    c.tid += TID_STEP
    c.write(k.slab.W)
    if slab is not None:
        deactivate_slab(k, s, slab, freelist)
    put_partials_cpu(k, s, c)


def flush_all(k: Kernel, s: KmemCache) -> None:
    """flush_all(): every CPU's slab and partial chain back to the node lists."""
    for cpu in range(k.config.cpus):
        __flush_cpu_slab(k, s, cpu)


def get_freelist(k: Kernel, s: KmemCache, slab: Slab) -> int:
    """mm/slub.c get_freelist(): take the slab's freelist for the CPU; frozen iff non-empty."""
    freelist = slab.freelist
    slab.freelist = 0
    slab.inuse = slab.objects
    slab.frozen = 1 if freelist else 0
    slab.write()
    return freelist


def freeze_slab(k: Kernel, s: KmemCache, slab: Slab) -> int:
    assert not slab.frozen
    freelist = slab.freelist
    slab.freelist = 0
    slab.inuse = slab.objects
    slab.frozen = 1
    slab.write()
    return freelist


def slab_out_of_memory(k: Kernel, s: KmemCache, gfp: int, nid: int | None) -> None:
    msg = (
        f"SLUB: Unable to allocate memory on node {-1 if nid is None else nid}, gfp={gfp:#x}"
        f"({G.format_gfp(gfp)})\n  cache: {s.name}, object size: {s.object_size}, buffer size: {s.size}, "
        f"default order: {s.oo_order}, min order: {s.min_order}"
    )
    k.slab.oom.append(msg)
    k.log.append(msg)


def ___slab_alloc(k: Kernel, s: KmemCache, gfp: int, node: int | None, orig_size: int) -> int:
    """mm/slub.c ___slab_alloc(): the slow path.  Returns the object or 0."""
    W = k.slab.W
    c = s.cpus[k.current_cpu]
    allow_spin = bool(gfp & __GFP_RECLAIM)
    nodes_ok = k.slab.slab_nodes

    def load_freelist(freelist: int) -> int:
        c.freelist = get_freepointer(W, s, freelist)
        c.tid += TID_STEP
        W.w(c.addr + CPU_FREELIST, c.freelist)
        W.w(c.addr + CPU_TID, c.tid)
        return freelist

    slab = c.slab
    if slab is None:
        if node is not None and node not in nodes_ok:
            node = None
    else:
        deactivate = False
        if node is not None and slab.nid != node:
            if node not in nodes_ok:
                node = None
            else:
                deactivate = True
        if not deactivate and not pfmemalloc_match(slab, gfp) and allow_spin:
            deactivate = True
        if not deactivate:
            freelist = c.freelist
            if freelist:
                return load_freelist(freelist)
            freelist = get_freelist(k, s, slab)
            if freelist:
                return load_freelist(freelist)
            c.slab = None  # DEACTIVATE_BYPASS: the slab is full and on no list
            c.tid += TID_STEP
            c.write(W)
        else:
            freelist = c.freelist
            c.slab = None
            c.freelist = 0
            c.tid += TID_STEP
            c.write(W)
            deactivate_slab(k, s, slab, freelist)
    # new_slab: the CPU partial list
    while c.partial is not None:
        slab = c.partial
        c.partial = slab.next
        W.w(c.addr + CPU_PARTIAL, c.partial.page if c.partial is not None else 0)
        if ((node is None or slab.nid == node) and pfmemalloc_match(slab, gfp)) or not allow_spin:
            c.slab = slab
            W.w(c.addr + CPU_SLAB, slab.page)
            freelist = get_freelist(k, s, slab)
            assert freelist, "a CPU partial slab always has free objects"
            return load_freelist(freelist)
        slab.next = None
        __put_partials(k, s, slab)
    try_thisnode = True
    while True:  # new_objects
        pc_flags = gfp
        if node is not None and not gfp & __GFP_THISNODE and try_thisnode:
            pc_flags = (gfp | __GFP_THISNODE) if not allow_spin else (G.GFP_NOWAIT | __GFP_THISNODE)
        slab = get_partial(k, s, node, pc_flags)
        if slab is not None:
            freelist = freeze_slab(k, s, slab)
            break
        slab = new_slab(k, s, pc_flags, node)
        if slab is None:
            if node is not None and not gfp & __GFP_THISNODE and try_thisnode:
                try_thisnode = False
                continue
            slab_out_of_memory(k, s, gfp, node)
            return 0
        freelist = slab.freelist
        slab.freelist = 0
        slab.inuse = slab.objects
        slab.frozen = 1
        slab.write()
        inc_slabs_node(k, s, slab.nid, slab.objects)
        if not pfmemalloc_match(slab, gfp) and allow_spin:
            deactivate_slab(k, s, slab, get_freepointer(W, s, freelist))
            return freelist
        break
    # retry_load_slab
    while c.slab is not None:
        flush_freelist = c.freelist
        flush_slab = c.slab
        c.slab = None
        c.freelist = 0
        c.tid += TID_STEP
        c.write(W)
        deactivate_slab(k, s, flush_slab, flush_freelist)
    c.slab = slab
    W.w(c.addr + CPU_SLAB, slab.page)
    return load_freelist(freelist)


# -- sheaves (6.18: caches created with sheaf_capacity) ----------------------------------------------
def alloc_empty_sheaf(k: Kernel, s: KmemCache, gfp: int) -> Sheaf | None:
    size = _T.sizeof("struct slab_sheaf") + 8 * s.sheaf_capacity  # struct_size(sheaf, objects, cap)
    addr = kmalloc(k, size, gfp | __GFP_ZERO, caller="alloc_empty_sheaf")
    if not addr:
        return None
    k.slab.W.w(addr + SHEAF_CACHE, s.addr)
    return Sheaf(addr)


def free_empty_sheaf(k: Kernel, s: KmemCache, sheaf: Sheaf) -> None:
    kfree(k, sheaf.addr)


def refill_sheaf(k: Kernel, s: KmemCache, sheaf: Sheaf, gfp: int) -> bool:
    """mm/slub.c refill_sheaf(): fill to capacity with __kmem_cache_alloc_bulk(); False when
    short (-ENOMEM)."""
    to_fill = s.sheaf_capacity - sheaf.size
    if not to_fill:
        return True
    objs = __kmem_cache_alloc_bulk(k, s, gfp, to_fill)
    W = k.slab.W
    for o in objs:
        W.w(sheaf.addr + SHEAF_OBJECTS + 8 * len(sheaf.objs), o)
        sheaf.objs.append(o)
    sheaf.write_size(W)
    return len(objs) == to_fill


def alloc_full_sheaf(k: Kernel, s: KmemCache, gfp: int) -> Sheaf | None:
    sheaf = alloc_empty_sheaf(k, s, gfp)
    if sheaf is None:
        return None
    if not refill_sheaf(k, s, sheaf, gfp):
        sheaf_flush_unused(k, s, sheaf)
        free_empty_sheaf(k, s, sheaf)
        return None
    return sheaf


def sheaf_flush_unused(k: Kernel, s: KmemCache, sheaf: Sheaf) -> None:
    objs = sheaf.objs
    sheaf.objs = []
    __kmem_cache_free_bulk(k, s, objs)
    sheaf.write_size(k.slab.W)


def get_barn(k: Kernel, s: KmemCache) -> Barn:
    n = s.nodes[k.numa_node_id()]
    assert n is not None and n.barn is not None
    return n.barn


def barn_put_empty_sheaf(k: Kernel, barn: Barn, sheaf: Sheaf) -> None:
    barn.empty.add(sheaf.addr + SHEAF_LIST, sheaf)
    barn.write_counts(k.slab.W)


def barn_put_full_sheaf(k: Kernel, barn: Barn, sheaf: Sheaf) -> None:
    barn.full.add(sheaf.addr + SHEAF_LIST, sheaf)
    barn.write_counts(k.slab.W)


def barn_get_empty_sheaf(k: Kernel, barn: Barn) -> Sheaf | None:
    sheaf = barn.empty.first()
    if sheaf is None:
        return None
    assert isinstance(sheaf, Sheaf)
    barn.empty.delete(sheaf.addr + SHEAF_LIST)
    barn.write_counts(k.slab.W)
    return sheaf


def barn_replace_empty_sheaf(k: Kernel, barn: Barn, empty: Sheaf) -> Sheaf | None:
    """A full sheaf for an empty one, if the barn has one."""
    full = barn.full.first()
    if full is None:
        return None
    assert isinstance(full, Sheaf)
    barn.full.delete(full.addr + SHEAF_LIST)
    barn.empty.add(empty.addr + SHEAF_LIST, empty)
    barn.write_counts(k.slab.W)
    return full


def barn_replace_full_sheaf(k: Kernel, barn: Barn, full: Sheaf) -> Sheaf | str:
    """An empty sheaf for a full one: "E2BIG" when the barn has MAX_FULL_SHEAVES full ones,
    "ENOMEM" when it has no empty one."""
    if len(barn.full) >= MAX_FULL_SHEAVES:
        return "E2BIG"
    empty = barn.empty.first()
    if empty is None:
        return "ENOMEM"
    assert isinstance(empty, Sheaf)
    barn.empty.delete(empty.addr + SHEAF_LIST)
    barn.full.add(full.addr + SHEAF_LIST, full)
    barn.write_counts(k.slab.W)
    return empty


def __pcs_replace_empty_main(k: Kernel, s: KmemCache, pcs: PerCpuSheaves, gfp: int) -> bool:
    """mm/slub.c __pcs_replace_empty_main(): the spare if full, a full sheaf from the barn,
    or (when the allocation may block) a sheaf refilled from the slabs."""
    W = k.slab.W
    assert pcs.main is not None
    if pcs.spare is not None and pcs.spare.size > 0:
        pcs.main, pcs.spare = pcs.spare, pcs.main
        pcs.write(W)
        return True
    barn = get_barn(k, s)
    full = barn_replace_empty_sheaf(k, barn, pcs.main)
    if full is not None:
        pcs.main = full
        pcs.write(W)
        return True
    can_alloc = bool(gfp & __GFP_DIRECT_RECLAIM)  # gfpflags_allow_blocking()
    if not can_alloc:
        return False
    if pcs.spare is not None:
        empty: Sheaf | None = pcs.spare
        pcs.spare = None
        pcs.write(W)
    else:
        empty = barn_get_empty_sheaf(k, barn)
    if empty is not None:
        if refill_sheaf(k, s, empty, gfp):
            full = empty
        else:
            sheaf_flush_unused(k, s, empty)  # (the kernel frees its partial fill with the sheaf)
            free_empty_sheaf(k, s, empty)
    else:
        full = alloc_full_sheaf(k, s, gfp)
    if full is None:
        return False
    if pcs.main.size == 0:
        barn_put_empty_sheaf(k, barn, pcs.main)
        pcs.main = full
    elif pcs.spare is None:
        pcs.spare = full
    elif pcs.spare.size == 0:
        barn_put_empty_sheaf(k, barn, pcs.spare)
        pcs.spare = full
    else:
        barn_put_full_sheaf(k, barn, full)
    pcs.write(W)
    return True


def alloc_from_pcs(k: Kernel, s: KmemCache, gfp: int, node: int | None) -> int:
    """mm/slub.c alloc_from_pcs(): pop from this CPU's main sheaf (local objects only)."""
    if node is not None and node != k.numa_node_id():
        return 0
    pcs = s.pcs[k.current_cpu]
    assert pcs.main is not None
    if pcs.main.size == 0 and not __pcs_replace_empty_main(k, s, pcs, gfp):
        return 0
    main = pcs.main
    obj = main.objs[-1]
    if node is not None:
        slab = k.slab.slab_of_pfn[(obj - k.page_offset_base) >> PAGE_SHIFT]
        if slab.nid != node:
            return 0
    main.objs.pop()
    main.write_size(k.slab.W)
    return obj


def __pcs_install_empty_sheaf(k: Kernel, s: KmemCache, pcs: PerCpuSheaves, empty: Sheaf) -> None:
    assert pcs.main is not None
    if pcs.spare is None:
        pcs.spare = pcs.main
        pcs.main = empty
    else:
        barn = get_barn(k, s)
        if pcs.main.size < s.sheaf_capacity:
            barn_put_empty_sheaf(k, barn, empty)
        elif pcs.spare.size < s.sheaf_capacity:
            pcs.main, pcs.spare = pcs.spare, pcs.main
            barn_put_empty_sheaf(k, barn, empty)
        else:
            barn_put_full_sheaf(k, barn, pcs.main)
            pcs.main = empty
    pcs.write(k.slab.W)


def sheaf_flush_main(k: Kernel, s: KmemCache) -> bool:
    pcs = s.pcs[k.current_cpu]
    assert pcs.main is not None
    ret = False
    while pcs.main.size:
        batch = min(PCS_BATCH_MAX, pcs.main.size)
        objs = pcs.main.objs[-batch:]
        del pcs.main.objs[-batch:]
        pcs.main.write_size(k.slab.W)
        __kmem_cache_free_bulk(k, s, objs)
        ret = True
    return ret


def __pcs_replace_full_main(k: Kernel, s: KmemCache, pcs: PerCpuSheaves) -> bool:
    """mm/slub.c __pcs_replace_full_main(): an empty sheaf from the barn (trading in the
    full main), the non-full spare, a new empty sheaf (GFP_NOWAIT), or flush."""
    W = k.slab.W
    while True:
        assert pcs.main is not None
        barn = get_barn(k, s)
        if pcs.spare is None:
            empty = barn_get_empty_sheaf(k, barn)
            if empty is not None:
                pcs.spare = pcs.main
                pcs.main = empty
                pcs.write(W)
                return True
        else:
            if pcs.spare.size < s.sheaf_capacity:
                pcs.main, pcs.spare = pcs.spare, pcs.main
                pcs.write(W)
                return True
            got = barn_replace_full_sheaf(k, barn, pcs.main)
            if isinstance(got, Sheaf):
                pcs.main = got
                pcs.write(W)
                return True
            if got == "E2BIG":
                to_flush = pcs.spare
                pcs.spare = None
                pcs.write(W)
                sheaf_flush_unused(k, s, to_flush)
                __pcs_install_empty_sheaf(k, s, pcs, to_flush)
                return True
            # ENOMEM: the barn has no empty sheaf; allocate one (BARN_PUT_FAIL if that fails)
        empty = alloc_empty_sheaf(k, s, G.GFP_NOWAIT)
        if empty is not None:
            __pcs_install_empty_sheaf(k, s, pcs, empty)
            return True
        if not sheaf_flush_main(k, s):
            return False
        if pcs.main.size == s.sheaf_capacity:
            continue
        return True


def free_to_pcs(k: Kernel, s: KmemCache, obj: int) -> bool:
    """mm/slub.c free_to_pcs(): push onto this CPU's main sheaf."""
    pcs = s.pcs[k.current_cpu]
    assert pcs.main is not None
    if pcs.main.size == s.sheaf_capacity and not __pcs_replace_full_main(k, s, pcs):
        return False
    pcs.main.push(k.slab.W, obj)
    return True


# -- bulk ------------------------------------------------------------------------------------------
def __kmem_cache_alloc_bulk(k: Kernel, s: KmemCache, gfp: int, size: int) -> list[int]:
    """mm/slub.c __kmem_cache_alloc_bulk(): drain the CPU freelist, refilling through
    ___slab_alloc(); all or nothing."""
    W = k.slab.W
    c = s.cpus[k.current_cpu]
    out: list[int] = []
    for _ in range(size):
        obj = c.freelist
        if not obj:
            c.tid += TID_STEP
            W.w(c.addr + CPU_TID, c.tid)
            o = ___slab_alloc(k, s, gfp, None, s.object_size)
            if not o:
                __kmem_cache_free_bulk(k, s, out)
                return []
            out.append(o)
            continue
        c.freelist = get_freepointer(W, s, obj)
        out.append(obj)
    c.tid += TID_STEP
    W.w(c.addr + CPU_FREELIST, c.freelist)
    W.w(c.addr + CPU_TID, c.tid)
    return out


def __kmem_cache_free_bulk(k: Kernel, s: KmemCache, p: list[int]) -> None:
    """mm/slub.c __kmem_cache_free_bulk() with build_detached_freelist(): from the end of the
    array, gather objects of the same slab (looking past at most 3 others) into one detached
    freelist and free it with one do_slab_free()."""
    W = k.slab.W
    sp = k.slab.slab_of_pfn
    pob = k.page_offset_base
    p = list(p)
    size = len(p)
    while size:
        size -= 1
        obj = p[size]
        slab = sp[(obj - pob) >> PAGE_SHIFT]
        tail = freelist = obj
        cnt = 1
        set_freepointer(W, s, obj, 0)
        same = size
        lookahead = 3
        while size:
            size -= 1
            o = p[size]
            if sp[(o - pob) >> PAGE_SHIFT] is slab:
                set_freepointer(W, s, o, freelist)
                freelist = o
                cnt += 1
                same -= 1
                if size != same:
                    p[size], p[same] = p[same], p[size]
                continue
            lookahead -= 1
            if not lookahead:
                break
        size = same
        do_slab_free(k, s, slab, freelist, tail, cnt)


# -- allocation and free entry points --------------------------------------------------------------------
_GFP_CACHE: dict[str, int] = {}


def _gfp(gfp: int | str) -> int:
    if type(gfp) is int:
        return gfp
    v = _GFP_CACHE.get(gfp)  # type: ignore[arg-type]
    if v is None:
        v = _GFP_CACHE[gfp] = G.parse_gfp(gfp)  # type: ignore[index]
    return v


def slab_alloc_node(k: Kernel, s: KmemCache, gfp: int, node: int | None, caller: str | None, orig_size: int) -> int:
    """mm/slub.c slab_alloc_node(): sheaves, then the CPU freelist fast path, then
    ___slab_alloc(); slab_post_alloc_hook() zeroes for __GFP_ZERO."""
    obj = 0
    if s.cpu_sheaves:
        obj = alloc_from_pcs(k, s, gfp, node)
    if not obj:
        # __slab_alloc_node(): the lockless fast path on this CPU's slab
        c = s.cpus[k.current_cpu]
        obj = c.freelist
        slab = c.slab
        if not obj or slab is None or (node is not None and slab.nid != node):
            obj = ___slab_alloc(k, s, gfp, node, orig_size)
            if not obj:
                return 0
        else:
            W = k.slab.W
            a = obj + s.offset
            nxt = W.r(a) ^ s.random ^ int.from_bytes(a.to_bytes(8, "little"), "big")
            c.freelist = nxt
            c.tid += TID_STEP
            ca = c.addr
            W.w(ca + CPU_FREELIST, nxt)
            W.w(ca + CPU_TID, c.tid)
    if gfp & __GFP_ZERO:
        k.mem.fill(obj - k.page_offset_base, s.object_size, 0)
    if caller is not None and caller not in k.slab.callers:
        callsite(k, caller)
    k.slab.live[obj] = (s, caller)
    return obj


def kmem_cache_alloc(k: Kernel, s: KmemCache, gfp: int | str = "GFP_KERNEL", caller: str | None = None) -> int:
    """kmem_cache_alloc(s, gfp): an object's kernel virtual address, or 0 (NULL)."""
    return slab_alloc_node(k, s, _gfp(gfp), None, caller, s.object_size)


def kmem_cache_alloc_node(k: Kernel, s: KmemCache, gfp: int | str, node: int | None, caller: str | None = None) -> int:
    return slab_alloc_node(k, s, _gfp(gfp), node, caller, s.object_size)


def kmem_cache_zalloc(k: Kernel, s: KmemCache, gfp: int | str = "GFP_KERNEL", caller: str | None = None) -> int:
    return slab_alloc_node(k, s, _gfp(gfp) | __GFP_ZERO, None, caller, s.object_size)


def do_slab_free(k: Kernel, s: KmemCache, slab: Slab, head: int, tail: int, cnt: int) -> None:
    """mm/slub.c do_slab_free(): onto this CPU's freelist when the object is from its CPU
    slab, else __slab_free()."""
    c = s.cpus[k.current_cpu]
    if slab is not c.slab:
        __slab_free(k, s, slab, head, tail, cnt)
        return
    W = k.slab.W
    set_freepointer(W, s, tail, c.freelist)
    c.freelist = head
    c.tid += TID_STEP
    W.w(c.addr + CPU_FREELIST, head)
    W.w(c.addr + CPU_TID, c.tid)


def __slab_free(k: Kernel, s: KmemCache, slab: Slab, head: int, tail: int, cnt: int) -> None:
    """mm/slub.c __slab_free(): onto the slab's own freelist; a full slab goes to the CPU
    partial list, an empty one on the node list beyond min_partial is discarded."""
    W = k.slab.W
    prior = slab.freelist
    set_freepointer(W, s, tail, prior)
    was_frozen = slab.frozen
    slab.inuse -= cnt
    n = None
    on_node_partial = False
    if (not slab.inuse or not prior) and not was_frozen and prior:
        n = s.nodes[slab.nid]
        on_node_partial = slab.node_partial
    slab.freelist = head
    slab.write()
    if n is None:
        if not was_frozen and not prior:
            put_cpu_partial(k, s, slab, True)
        return
    if prior and not on_node_partial:
        return  # on a CPU partial list
    if not slab.inuse and len(n.partial) >= s.min_partial:
        if prior:
            remove_partial(k, n, slab)
        discard_slab(k, s, slab)


def slab_free(k: Kernel, s: KmemCache, slab: Slab, obj: int) -> None:
    """mm/slub.c slab_free(): local objects of sheaf caches go to the main sheaf."""
    if s.cpu_sheaves and slab.nid == k.numa_node_id():
        if free_to_pcs(k, s, obj):
            return
    do_slab_free(k, s, slab, obj, obj, 1)


def virt_to_slab(k: Kernel, addr: int) -> Slab | None:
    return k.slab.slab_of_pfn.get((addr - k.page_offset_base) >> PAGE_SHIFT)


def _untrack(k: Kernel, addr: int, who: str) -> None:
    if k.slab.live.pop(addr, None) is None:
        slab = virt_to_slab(k, addr)
        where = f"an object of {slab.cache.name}" if slab and slab.cache else "not a live allocation"
        raise SlubError(f"{who}({addr:#x}): double free or invalid pointer ({where})")


def kmem_cache_free(k: Kernel, s: KmemCache, addr: int) -> None:
    """kmem_cache_free(s, x), with the hardened cache_from_obj() check."""
    slab = virt_to_slab(k, addr)
    if slab is None or slab.cache is not s:
        other = slab.cache.name if slab and slab.cache else "no slab cache"
        raise SlubError(f"kmem_cache_free: Wrong slab cache. {s.name} but object {addr:#x} is from {other}")
    _untrack(k, addr, "kmem_cache_free")
    slab_free(k, s, slab, addr)


def kmalloc_slab(k: Kernel, size: int, gfp: int) -> KmemCache:
    """mm/slab.h kmalloc_slab()."""
    s = k.slab.kmalloc_caches[sc.kmalloc_type(gfp)][sc.kmalloc_index(size)]
    assert s is not None
    return s


def kmalloc_node(
    k: Kernel, size: int, gfp: int | str = "GFP_KERNEL", node: int | None = None, caller: str | None = None
) -> int:
    """__kmalloc_node(): a kmalloc cache, or kmalloc_large above KMALLOC_MAX_CACHE_SIZE;
    kmalloc(0) is ZERO_SIZE_PTR."""
    g = _gfp(gfp)
    if size > sc.KMALLOC_MAX_CACHE_SIZE:
        return kmalloc_large_node(k, size, g, node, caller)
    if not size:
        return sc.ZERO_SIZE_PTR
    s = k.slab.kmalloc_caches[sc.kmalloc_type(g)][sc.kmalloc_index(size)]
    assert s is not None
    return slab_alloc_node(k, s, g, node, caller, size)


def kmalloc(k: Kernel, size: int, gfp: int | str = "GFP_KERNEL", caller: str | None = None) -> int:
    """kmalloc(size, gfp): a kernel virtual address, or 0 (NULL)."""
    return kmalloc_node(k, size, gfp, None, caller)


def kzalloc(k: Kernel, size: int, gfp: int | str = "GFP_KERNEL", caller: str | None = None) -> int:
    return kmalloc_node(k, size, _gfp(gfp) | __GFP_ZERO, None, caller)


def kmalloc_large_node(k: Kernel, size: int, gfp: int, node: int | None, caller: str | None) -> int:
    """mm/slub.c ___kmalloc_large_node(): a compound frozen folio marked PGTY_large_kmalloc,
    counted in NR_SLAB_UNRECLAIMABLE_B."""
    order = sc.get_order(size)
    pfn = k.alloc_pages(gfp | __GFP_COMP, order, node)
    if pfn is None:
        return 0
    _mv64, mv32, w = page_alloc.page_words(k, pfn)
    mv32[2 * w + D_REFCOUNT] = 0
    mv32[2 * w + D_PAGE_TYPE] = PGTY_LARGE_KMALLOC
    k.mod_node_page_state(page_alloc.page_zone(k, pfn).nid, NR_SLAB_UNRECLAIMABLE_B, PAGE_SIZE << order)
    k.slab.large[pfn] = order
    addr = k.page_offset_base + (pfn << PAGE_SHIFT)
    if caller is not None:
        callsite(k, caller)
    k.slab.live[addr] = (None, caller)
    return addr


def free_large_kmalloc(k: Kernel, pfn: int, addr: int) -> None:
    order = k.slab.large.pop(pfn)
    _untrack(k, addr, "kfree")
    _mv64, mv32, w = page_alloc.page_words(k, pfn)
    k.mod_node_page_state(page_alloc.page_zone(k, pfn).nid, NR_SLAB_UNRECLAIMABLE_B, -(PAGE_SIZE << order))
    mv32[2 * w + D_PAGE_TYPE] = PAGE_TYPE_NONE  # __folio_clear_large_kmalloc()
    k.allocations.pop(pfn, None)
    _free_frozen_pages(k, pfn, order)


def kfree(k: Kernel, addr: int) -> None:
    """kfree(x): NULL and ZERO_SIZE_PTR are ignored; large kmallocs go back to the page
    allocator."""
    if addr <= sc.ZERO_SIZE_PTR:
        return
    pfn = (addr - k.page_offset_base) >> PAGE_SHIFT
    slab = k.slab.slab_of_pfn.get(pfn)
    if slab is None:
        if pfn in k.slab.large and addr & (PAGE_SIZE - 1) == 0:
            free_large_kmalloc(k, pfn, addr)
            return
        raise SlubError(f"kfree({addr:#x}): not a slab object nor a large kmalloc")
    s = slab.cache
    assert s is not None
    _untrack(k, addr, "kfree")
    slab_free(k, s, slab, addr)


def ksize(k: Kernel, addr: int) -> int:
    """__ksize(): the usable size (slab_ksize: the slot, or inuse for RCU caches)."""
    slab = virt_to_slab(k, addr)
    if slab is None:
        order = k.slab.large.get((addr - k.page_offset_base) >> PAGE_SHIFT)
        if order is None:
            raise SlubError(f"ksize({addr:#x}): not a kmalloc object")
        return PAGE_SIZE << order
    s = slab.cache
    assert s is not None
    if s.flags & (sc.SLAB_RED_ZONE | sc.SLAB_POISON):
        return s.object_size
    if s.flags & (sc.SLAB_TYPESAFE_BY_RCU | sc.SLAB_STORE_USER):
        return s.inuse
    return s.size


kmem_cache_create = sc.kmem_cache_create
KMEM_CACHE = sc.KMEM_CACHE


# -- queries --------------------------------------------------------------------------------------------
def find_cache(k: Kernel, name: str) -> KmemCache:
    """The cache a kmem_cache_create(name, ...) call got (its own, or the one it merged into)."""
    try:
        return k.slab.names[name]
    except KeyError:
        raise KeyError(f"no slab cache {name!r}") from None


def cache_of(k: Kernel, addr: int) -> KmemCache | None:
    slab = virt_to_slab(k, addr)
    return slab.cache if slab is not None else None


def live_objects(k: Kernel, s: KmemCache | None = None) -> dict[int, str | None]:
    """Object address -> caller, of every object handed out and not freed (``s``: one
    cache's; None: every cache's and the large kmallocs)."""
    return {a: c for a, (cache, c) in k.slab.live.items() if s is None or cache is s}


class SlabInfo(NamedTuple):
    """One /proc/slabinfo row (mm/slab_common.c cache_show() with SLUB's get_slabinfo())."""

    name: str
    active_objs: int  # total_objects - free objects on the node partial lists
    num_objs: int
    objsize: int  # s->size
    objperslab: int
    pagesperslab: int
    active_slabs: int
    num_slabs: int


def slabinfo(k: Kernel) -> list[SlabInfo]:
    """/proc/slabinfo rows, newest cache first (the order of slab_caches)."""
    rows = []
    for s in reversed(k.slab.caches):
        nr_slabs = nr_objs = nr_free = 0
        for n in s.nodes:
            if n is None:
                continue
            nr_slabs += n.nr_slabs
            nr_objs += n.total_objects
            nr_free += sum(sl.objects - sl.inuse for sl in n.partial)
        rows.append(
            SlabInfo(s.name, nr_objs - nr_free, nr_objs, s.size, s.oo_objects, 1 << s.oo_order, nr_slabs, nr_slabs)
        )
    return rows
