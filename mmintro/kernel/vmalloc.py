"""vmalloc (mm/vmalloc.c of 6.18) and the x86 users of it (ioremap, the IRQ stacks).

The kernel virtual range [VMALLOC_START, VMALLOC_END] is handed out as ``struct vmap_area``
objects, all of them from the ``vmap_area`` slab cache:

* the *free* space is an augmented red-black tree ``free_vmap_area_root`` (each node keeps
  ``subtree_max_size``, the largest free block below it) plus the address-sorted
  ``free_vmap_area_list``; vmap_init_free_space() starts it as one area [1, ULONG_MAX);
* *busy* areas sit in the rb-tree and sorted list ``busy`` of vmap node
  ``addr_to_node(va_start)`` = ``(addr / vmap_zone_size) % nr_vmap_nodes`` (since 6.9 there
  is one node per possible CPU, up to 128, striped in 16-page zones, in a kmalloc'd
  ``vmap_nodes`` array; one CPU keeps the static ``single`` node);
* vfree()/vunmap() unmap at once but free the address range *lazily*: the area moves to the
  ``lazy`` tree of its node and ``vmap_lazy_nr`` grows; past lazy_max_pages() (fls(CPUs) *
  32 MiB) the purge (drain_vmap_area_work, run here as soon as the freeing call returns)
  moves lazy areas of <= 256 pages into the node's per-size ``pool`` (reused as they are by
  alloc_vmap_area's node_alloc()) and merges the rest back into the free tree; each purge
  also decays a quarter of every pool back into the free tree.  vm_unmap_aliases() purges
  on demand.

alloc_vmap_area() is 6.18's: node_alloc() from the CPU's pool first, else the lowest-fit
search find_vmap_lowest_match() over the augmented free tree and va_clip() (full, left-edge,
right-edge or no-edge fit, the latter with the CPU's preloaded ``ne_fit_preload_node``), then
insert_vmap_area() into the busy tree.  Every rb-tree and list operation is done on the
objects in simulated memory by :mod:`mmintro.kernel.rbtree` and the list helpers below, so
the bytes are the kernel's: same tree shapes and colours, same stale words.

``vm_struct`` (kzalloc'd) describes each mapping: addr, size including the guard page, flags
(VM_ALLOC, VM_MAP, VM_IOREMAP, ...), the pages array (kmalloc'd, or vmalloc'd itself above one
page: "vpages"), nr_pages, phys_addr for ioremap, and the caller's return address.  Pages are
mapped with 4 KiB PTEs in init_mm's tables (``swapper_pg_dir``); vmalloc never maps huge pages
unless the caller opts in with VM_ALLOW_HUGE_VMAP (vmalloc_huge(), not modelled: no caller
here asks for it), while ioremap uses 2 MiB / 1 GiB leaves wherever a range is aligned and
large enough (ioremap_max_page_shift, x86 HAVE_ARCH_HUGE_VMAP).

drgn and crash read only the busy side (``vmap_nodes[i].busy``); the free tree, the lazy
trees and the pools are written all the same, because the kernel's memory holds them.

Boot (:func:`vmalloc_init`) creates the vmap_area cache, the nodes and the free space, then
runs the boot's first users: CPU 0's IRQ stack (vmap of its per-CPU backing store, caller
irq_init_percpu_irqstack), the ACPI tables (ioremap_cache, caller acpi_os_map_iomem), and
for every other CPU the idle task's stack (fork_idle) and its IRQ stack.

Not modelled: vm_map_ram()'s per-CPU vmap blocks, KASAN/KMSAN shadows, kmemleak, memcg
charging, the vmap-node shrinker, VM_FLUSH_RESET_PERMS, TLB flushes (no TLB), the PAT
memtype tree (cache-mode conflicts, the memtype of RAM pages, the direct map's attributes
for ioremapped RAM) and the MTRRs (ranges the e820 calls RAM/ACPI/NVS are write-back, the
rest uncached).  The alloc_pages_bulk() calls of vm_area_alloc_pages() are made one order-0
__alloc_pages() at a time, which takes the same pages from the same per-CPU lists; the purge
work items of several nodes run one after the other, in node order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch import x86
from mmintro.arch.x86 import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PGDIR_SHIFT,
    PMD_SHIFT,
    PTE_PFN_MASK,
    PUD_SHIFT,
    VMALLOC_SIZE_TB_L4,
)
from mmintro.kernel import gfp as G
from mmintro.kernel import rbtree as rb
from mmintro.kernel.e820 import E820_TYPE_ACPI, E820_TYPE_NVS, E820_TYPE_RAM
from mmintro.kernel.init_64 import PgtableAllocError, mm_inc_nr_tables, pagetable_dtor_free
from mmintro.kernel.kobj import KMem
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "NUMA_NO_NODE",
    "VM_ALLOC",
    "VM_IOREMAP",
    "VM_MAP",
    "VM_NO_GUARD",
    "VM_UNINITIALIZED",
    "VM_USERMAP",
    "VmArea",
    "__vmalloc_node",
    "__vmalloc_node_range",
    "acpi_os_map_iomem",
    "busy_areas",
    "caller_address",
    "find_vm_area",
    "find_vmap_area",
    "ioremap",
    "ioremap_cache",
    "iounmap",
    "irq_init_percpu_irqstack",
    "lazy_areas",
    "lazy_max_pages",
    "purge_vmap_area_lazy",
    "vfree",
    "vm_unmap_aliases",
    "vmalloc",
    "vmalloc_init",
    "vmalloc_node",
    "vmalloc_nr_pages",
    "vmalloc_read",
    "vmalloc_to_pfn",
    "vmalloc_write",
    "vmap",
    "vunmap",
    "vzalloc",
    "vzalloc_node",
]

_T = get_types()
M64 = (1 << 64) - 1
ULONG_MAX = M64
NUMA_NO_NODE = -1

# include/linux/vmalloc.h (#defines; BTF has no vm_struct flag values).
VM_IOREMAP = 0x00000001
VM_ALLOC = 0x00000002
VM_MAP = 0x00000004
VM_USERMAP = 0x00000008
VM_DMA_COHERENT = 0x00000010
VM_UNINITIALIZED = 0x00000020
VM_NO_GUARD = 0x00000040
VM_KASAN = 0x00000080
VM_FLUSH_RESET_PERMS = 0x00000100
VM_MAP_PUT_PAGES = 0x00000200
VM_ALLOW_HUGE_VMAP = 0x00000400
VM_SPARSE = 0x00001000
# mm/vmalloc.c: vmap_area.flags for vm_map_ram areas.
VMAP_RAM = 0x1
VMAP_BLOCK = 0x2
VMAP_FLAGS_MASK = 0x3
BITS_PER_BYTE = 8
# arch/x86/include/asm/page_types.h (x86-64): ioremap aligns up to 1 GiB.
IOREMAP_MAX_ORDER = PUD_SHIFT
# mm/vmalloc.c: ioremap_max_page_shift = BITS_PER_LONG - 1 with CONFIG_HAVE_ARCH_HUGE_VMAP.
IOREMAP_MAX_PAGE_SHIFT = 63
# mm/internal.h GFP_RECLAIM_MASK (__GFP_NOLOCKDEP is 0 without LOCKDEP).
GFP_RECLAIM_MASK = (
    G.__GFP_RECLAIM
    | G.__GFP_HIGH
    | G.__GFP_IO
    | G.__GFP_FS
    | G.__GFP_NOWARN
    | G.__GFP_RETRY_MAYFAIL
    | G.__GFP_NOFAIL
    | G.__GFP_NORETRY
    | G.__GFP_MEMALLOC
    | G.__GFP_NOMEMALLOC
)
PMD_SIZE = 1 << PMD_SHIFT
PUD_SIZE = 1 << PUD_SHIFT

# Layouts, from the type data.
_va = _T.struct("vmap_area")
VA_START = _va.offsetof("va_start")
VA_END = _va.offsetof("va_end")
VA_RB = _va.offsetof("rb_node")
VA_LIST = _va.offsetof("list")
VA_SUBTREE = _va.offsetof("subtree_max_size")
VA_VM = _va.offsetof("vm")
VA_FLAGS = _va.offsetof("flags")
VA_SIZE = _T.sizeof("struct vmap_area")
_vn = _T.struct("vmap_node")
VN_POOL = _vn.offsetof("pool")
VN_SKIP_POPULATE = _vn.offsetof("skip_populate")
VN_BUSY_ROOT = _vn.offsetof("busy.root")
VN_BUSY_HEAD = _vn.offsetof("busy.head")
VN_LAZY_ROOT = _vn.offsetof("lazy.root")
VN_LAZY_HEAD = _vn.offsetof("lazy.head")
VN_PURGE_LIST = _vn.offsetof("purge_list")
VN_PURGE_WORK_FUNC = _vn.offsetof("purge_work.func")
VN_NR_PURGED = _vn.offsetof("nr_purged")
VN_SIZE = _T.sizeof("struct vmap_node")
MAX_VA_SIZE_PAGES = _vn.walk("pool")[2].resolved().nelems  # mm/vmalloc.c: 256 (pools up to 1 MiB)
VP_HEAD = _T.struct("vmap_pool").offsetof("head")
VP_LEN = _T.struct("vmap_pool").offsetof("len")
VP_SIZE = _T.sizeof("struct vmap_pool")
VM_SIZE = _T.sizeof("struct vm_struct")
LH_NEXT = _T.struct("list_head").offsetof("next")
LH_PREV = _T.struct("list_head").offsetof("prev")
VBQ_FREE = _T.struct("vmap_block_queue").offsetof("free")

# arch/x86/mm/pat/memtype.c: the PAT MSR pat_bp_init() programs (0 WB, 1 WC, 2 UC-, 3 UC,
# 4 WB, 5 WP, 6 UC-, 7 WT); init_cache_modes() walks it from 7 down to 0, so each cache mode
# maps to its lowest index, encoded in a 4 KiB PTE as PAT (bit 7) | PCD | PWT.
_PAT = ["WB", "WC", "UC_MINUS", "UC", "WB", "WP", "UC_MINUS", "WT"]


def _cm_idx2pte(i: int) -> int:
    return ((i & 4) << (x86._PAGE_BIT_PAT - 2)) | ((i & 2) << (x86._PAGE_BIT_PCD - 1)) | ((i & 1) << x86._PAGE_BIT_PWT)


CACHEMODE2PTE = {}
for _i in range(7, -1, -1):
    CACHEMODE2PTE[_T.const(f"_PAGE_CACHE_MODE_{_PAT[_i]}")] = _cm_idx2pte(_i)
PCM_WB = _T.const("_PAGE_CACHE_MODE_WB")
PCM_UC_MINUS = _T.const("_PAGE_CACHE_MODE_UC_MINUS")
# arch/x86/include/asm/pgtable_types.h: __PAGE_KERNEL_IO = __PAGE_KERNEL; PAGE_KERNEL for vmalloc.
PAGE_KERNEL = x86.PAGE_KERNEL
PAGE_KERNEL_IO = x86.PAGE_KERNEL

# Call sites the reference kernel's /proc/vmallocinfo shows ("caller+off/size", %pS):
# the return addresses a vm_struct records.
KNOWN_CALLERS = {
    "kernel_clone": (0x94, 0x3E0),
    "fork_idle": (0x74, 0x120),
    "irq_init_percpu_irqstack": (0xCA, 0x100),
    "acpi_os_map_iomem": (0x1BC, 0x1E0),
    "bpf_prog_alloc_no_stats": (0x39, 0x230),
    "vp_modern_map_capability": (0x12D, 0x1C0),
    "htab_map_alloc": (0x2E4, 0x5A0),
    "__pci_enable_msix_range": (0x305, 0x520),
    "bpf_prog_realloc": (0x62, 0xF0),
    "queue_stack_map_alloc": (0x34, 0xA0),
    "pcpu_create_chunk": (0x56, 0x230),
    "pci_mmcfg_arch_map": (0x2B, 0x60),
    "n_tty_open": (0x14, 0xA0),
    "memremap": (0x123, 0x210),
    "bpf_prog_pack_alloc": (0x28B, 0x3A0),
    "arch_ftrace_update_trampoline": (0x160, 0x350),
}

_SCRATCH_TOP = 0x0000_8000_0000_0000  # below: local list heads/roots (the kernel's stack variables)


def ALIGN(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1) & M64


def _fls(x: int) -> int:
    return x.bit_length()


# -- the simulator's records --------------------------------------------------------------
@dataclass
class VmArea:
    """A live ``struct vm_struct`` and its busy ``struct vmap_area``, as the simulator made them."""

    addr: int  #: vm->addr (= va_start)
    size: int  #: vm->size, the guard page included
    flags: int  #: vm->flags
    caller: int  #: vm->caller (a return address in .text)
    vm: int  #: address of the struct vm_struct
    va: int  #: address of the struct vmap_area
    pfns: list[int] = field(default_factory=list)  #: pfn of each PAGE_SIZE page mapped (vmalloc/vmap)
    phys_addr: int = 0  #: vm->phys_addr (ioremap)
    pages_array: int = 0  #: vm->pages (vmalloc, VM_MAP_PUT_PAGES)
    prot: int = 0  #: the PTE protection bits used

    @property
    def nr_pages(self) -> int:
        return len(self.pfns) if self.pages_array else 0

    @property
    def end(self) -> int:
        return self.addr + self.size


class VmapState:
    """mm/vmalloc.c's globals for one kernel, and the simulator's mirror of live areas."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.scratch: dict[int, int] = {}
        self.scratch_next = 0x1000
        self.m = rb.RbMem(self.r, self.w)
        self.cachep = None
        self.initialized = False
        self.nodes = 0
        self.nr_nodes = 1
        self.zone_size = 1
        self.free_root = k.sym("free_vmap_area_root")
        self.free_list = k.sym("free_vmap_area_list")
        self.lazy_nr = 0
        self.nr_vmalloc_pages = 0
        self.areas: dict[int, VmArea] = {}
        self.drain_pending = False  # drain_vmap_work is queued
        self.depth = 0  # nesting of the freeing entry points (vfree of a vmalloc'd pages array)
        self.purges = 0  # __purge_vmap_area_lazy() runs that purged areas
        self.purged_areas = 0
        self.augment = _FreeAugment(self)
        self.vkmem = KMem(k.T, k.mem, self.pa)

    # memory: kernel addresses through the simulator's translation (vmalloc ones through
    # the page tables); addresses below _SCRATCH_TOP are the kernel's on-stack locals.
    def pa(self, vaddr: int) -> int:
        if self.k.vmalloc_base <= vaddr <= VMALLOC_END(self.k):
            return self.k.pt.virt_to_phys(vaddr)
        return self.k.pa(vaddr)

    def r(self, a: int) -> int:
        if a < _SCRATCH_TOP:
            return self.scratch.get(a, 0)
        return self.k.mem.read_u64(self.k.pa(a))

    def w(self, a: int, v: int) -> None:
        if a < _SCRATCH_TOP:
            self.scratch[a] = v & M64
        else:
            self.k.mem.write_u64(self.k.pa(a), v)

    def local(self, size: int = 16) -> int:
        """A LIST_HEAD/RB_ROOT on the kernel stack of the caller."""
        a = self.scratch_next
        self.scratch_next += size
        for i in range(0, size, 8):
            self.scratch[a + i] = 0
        return a


def _s(k: Kernel) -> VmapState:
    return k.vmap  # type: ignore[attr-defined]


def VMALLOC_START(k: Kernel) -> int:
    return k.vmalloc_base


def VMALLOC_END(k: Kernel) -> int:
    """arch/x86/include/asm/pgtable_64_types.h: VMALLOC_START + (VMALLOC_SIZE_TB << 40) - 1."""
    return k.vmalloc_base + (VMALLOC_SIZE_TB_L4 << 40) - 1


def is_vmalloc_addr(k: Kernel, addr: int) -> bool:
    return VMALLOC_START(k) <= addr < VMALLOC_END(k)


# -- include/linux/list.h on simulated memory ---------------------------------------------
def INIT_LIST_HEAD(s: VmapState, h: int) -> None:
    s.w(h + LH_NEXT, h)
    s.w(h + LH_PREV, h)


def __list_add(s: VmapState, new: int, prev: int, nxt: int) -> None:
    s.w(nxt + LH_PREV, new)
    s.w(new + LH_NEXT, nxt)
    s.w(new + LH_PREV, prev)
    s.w(prev + LH_NEXT, new)


def list_add(s: VmapState, new: int, head: int) -> None:
    __list_add(s, new, head, s.r(head + LH_NEXT))


def list_add_tail(s: VmapState, new: int, head: int) -> None:
    __list_add(s, new, s.r(head + LH_PREV), head)


def __list_del_entry(s: VmapState, e: int) -> None:
    prev, nxt = s.r(e + LH_PREV), s.r(e + LH_NEXT)
    s.w(nxt + LH_PREV, prev)
    s.w(prev + LH_NEXT, nxt)


def list_del_init(s: VmapState, e: int) -> None:
    __list_del_entry(s, e)
    INIT_LIST_HEAD(s, e)


def list_move_tail(s: VmapState, e: int, head: int) -> None:
    __list_del_entry(s, e)
    list_add_tail(s, e, head)


def list_replace_init(s: VmapState, old: int, new: int) -> None:
    s.w(new + LH_NEXT, s.r(old + LH_NEXT))
    s.w(s.r(new + LH_NEXT) + LH_PREV, new)
    s.w(new + LH_PREV, s.r(old + LH_PREV))
    s.w(s.r(new + LH_PREV) + LH_NEXT, new)
    INIT_LIST_HEAD(s, old)


def list_empty(s: VmapState, h: int) -> bool:
    return s.r(h + LH_NEXT) == h


def _list_entries(s: VmapState, head: int) -> Iterator[int]:
    """list_for_each_entry_safe over struct vmap_area.list: yields vmap_area addresses."""
    e = s.r(head + LH_NEXT)
    while e != head:
        nxt = s.r(e + LH_NEXT)
        yield e - VA_LIST
        e = nxt


# -- struct vmap_area fields ----------------------------------------------------------------
def va_start(s: VmapState, va: int) -> int:
    return s.r(va + VA_START)


def va_end(s: VmapState, va: int) -> int:
    return s.r(va + VA_END)


def va_size(s: VmapState, va: int) -> int:
    return s.r(va + VA_END) - s.r(va + VA_START)


def get_subtree_max_size(s: VmapState, node: int) -> int:
    return s.r(node - VA_RB + VA_SUBTREE) if node else 0


class _FreeAugment:
    """RB_DECLARE_CALLBACKS_MAX(static, free_vmap_area_rb_augment_cb, struct vmap_area, rb_node,
    unsigned long, subtree_max_size, va_size)."""

    def __init__(self, s: VmapState) -> None:
        self.s = s

    def compute_max(self, va: int, exit_: bool) -> bool:
        s = self.s
        mx = va_size(s, va)
        left = s.r(va + VA_RB + rb.LEFT)
        if left and s.r(left - VA_RB + VA_SUBTREE) > mx:
            mx = s.r(left - VA_RB + VA_SUBTREE)
        right = s.r(va + VA_RB + rb.RIGHT)
        if right and s.r(right - VA_RB + VA_SUBTREE) > mx:
            mx = s.r(right - VA_RB + VA_SUBTREE)
        if exit_ and s.r(va + VA_SUBTREE) == mx:
            return True
        s.w(va + VA_SUBTREE, mx)
        return False

    def propagate(self, node: int, stop: int) -> None:
        while node != stop:
            if self.compute_max(node - VA_RB, True):
                break
            node = rb.rb_parent(self.s.m, node)

    def copy(self, old: int, new: int) -> None:
        self.s.w(new - VA_RB + VA_SUBTREE, self.s.r(old - VA_RB + VA_SUBTREE))

    def rotate(self, old: int, new: int) -> None:
        self.s.w(new - VA_RB + VA_SUBTREE, self.s.r(old - VA_RB + VA_SUBTREE))
        self.compute_max(old - VA_RB, False)


# -- vmap nodes ---------------------------------------------------------------------------
def addr_to_node_id(s: VmapState, addr: int) -> int:
    return (addr // s.zone_size) % s.nr_nodes


def addr_to_node(s: VmapState, addr: int) -> int:
    return s.nodes + addr_to_node_id(s, addr) * VN_SIZE


def id_to_node(s: VmapState, i: int) -> int:
    return s.nodes + (i % s.nr_nodes) * VN_SIZE


def node_to_id(s: VmapState, vn: int) -> int:
    return (vn - s.nodes) // VN_SIZE


def encode_vn_id(s: VmapState, node_id: int) -> int:
    if node_id < s.nr_nodes:
        return (node_id + 1) << BITS_PER_BYTE
    return 0


def decode_vn_id(s: VmapState, val: int) -> int:
    node_id = ((val >> BITS_PER_BYTE) - 1) & 0xFFFFFFFF
    return min(s.nr_nodes, node_id)


def is_vn_id_valid(s: VmapState, node_id: int) -> bool:
    return node_id < s.nr_nodes


# -- the slab objects (SLUB's kmalloc and the vmap_area cache) ------------------------------
def _slub():
    from mmintro.kernel import slub

    return slub


def _node(node: int) -> int | None:
    return None if node == NUMA_NO_NODE else node


def kmem_cache_alloc_node(k: Kernel, gfp: int, node: int, caller: str) -> int:
    """kmem_cache_alloc_node(vmap_area_cachep, gfp, node) from ``caller`` (the function the
    call is compiled into: the static helpers of alloc_vmap_area() are inlined there)."""
    return _slub().kmem_cache_alloc_node(k, _s(k).cachep, gfp, _node(node), caller) or 0


def kmem_cache_free(k: Kernel, va: int) -> None:
    _slub().kmem_cache_free(k, _s(k).cachep, va)


def kmalloc_node(k: Kernel, size: int, gfp: int, node: int, caller: str) -> int:
    return _slub().kmalloc_node(k, size, gfp, _node(node), caller) or 0


def kfree(k: Kernel, addr: int) -> None:
    _slub().kfree(k, addr)


# -- the free / busy / lazy trees (mm/vmalloc.c "Global kva allocator") ---------------------
def __find_vmap_area(s: VmapState, addr: int, root: int) -> int:
    n = s.r(root)
    while n:
        va = n - VA_RB
        if addr < va_start(s, va):
            n = s.r(n + rb.LEFT)
        elif addr >= va_end(s, va):
            n = s.r(n + rb.RIGHT)
        else:
            return va
    return 0


def find_va_links(s: VmapState, va: int, root: int, frm: int) -> tuple[int, int] | None:
    """(link, parent) where ``va`` goes in the tree: ``link`` is the address of the child
    pointer to fill.  None (with the kernel's WARN) when ``va`` overlaps an area."""
    if root:
        link = root
        cur = s.r(root)
        if not cur:
            return link, 0
    else:
        cur = frm
    start, end = va_start(s, va), va_end(s, va)
    while True:
        tmp = cur - VA_RB
        if end <= va_start(s, tmp):
            link = cur + rb.LEFT
        elif start >= va_end(s, tmp):
            link = cur + rb.RIGHT
        else:
            s.k.log.append(
                f"WARNING: vmalloc bug: {start:#x}-{end:#x} overlaps with {va_start(s, tmp):#x}-{va_end(s, tmp):#x}"
            )
            return None
        parent = cur
        cur = s.r(link)
        if not cur:
            return link, parent


def get_va_next_sibling(s: VmapState, parent: int, link: int) -> int:
    if not parent:
        return 0
    lst = parent - VA_RB + VA_LIST
    return s.r(lst + LH_NEXT) if parent + rb.RIGHT == link else lst


def __link_va(s: VmapState, va: int, root: int, parent: int, link: int, head: int, augment: bool) -> None:
    if parent:
        head = parent - VA_RB + VA_LIST
        if parent + rb.RIGHT != link:
            head = s.r(head + LH_PREV)
    rb.rb_link_node(s.m, va + VA_RB, parent, link)
    if augment:
        # The kernel inserts first and sets subtree_max_size to 0 afterwards, letting
        # augment_tree_propagate_from() fill the tree bottom-up.
        rb.rb_insert_augmented(s.m, va + VA_RB, root, s.augment)
        s.w(va + VA_SUBTREE, 0)
    else:
        rb.rb_insert_color(s.m, va + VA_RB, root)
    list_add(s, va + VA_LIST, head)


def __unlink_va(s: VmapState, va: int, root: int, augment: bool) -> None:
    if rb.RB_EMPTY_NODE(s.m, va + VA_RB):
        s.k.log.append("WARNING: __unlink_va of an unlinked vmap_area")
        return
    if augment:
        rb.rb_erase_augmented(s.m, va + VA_RB, root, s.augment)
    else:
        rb.rb_erase(s.m, va + VA_RB, root)
    list_del_init(s, va + VA_LIST)
    rb.RB_CLEAR_NODE(s.m, va + VA_RB)


def augment_tree_propagate_from(s: VmapState, va: int) -> None:
    s.augment.propagate(va + VA_RB, 0)


def insert_vmap_area(s: VmapState, va: int, root: int, head: int) -> None:
    links = find_va_links(s, va, root, 0)
    if links:
        __link_va(s, va, root, links[1], links[0], head, False)


def insert_vmap_area_augment(s: VmapState, va: int, frm: int, root: int, head: int) -> None:
    links = find_va_links(s, va, 0, frm) if frm else find_va_links(s, va, root, 0)
    if links:
        __link_va(s, va, root, links[1], links[0], head, True)
        augment_tree_propagate_from(s, va)


def __merge_or_add_vmap_area(s: VmapState, va: int, root: int, head: int, augment: bool) -> int:
    """Merge a freed range with its free neighbours (freeing ``va`` when it merges) or insert
    it; returns the area that now holds the range."""
    links = find_va_links(s, va, root, 0)
    if not links:
        return 0
    link, parent = links
    merged = False
    nxt = get_va_next_sibling(s, parent, link)
    if nxt:
        if nxt != head:
            sibling = nxt - VA_LIST
            if va_start(s, sibling) == va_end(s, va):
                s.w(sibling + VA_START, va_start(s, va))
                kmem_cache_free(s.k, va)
                va = sibling
                merged = True
        prev = s.r(nxt + LH_PREV)
        if prev != head:
            sibling = prev - VA_LIST
            if va_end(s, sibling) == va_start(s, va):
                # Unlink "next" before growing "prev", or a rotation could normalise a
                # sibling's augmented value from a half-updated tree.
                if merged:
                    __unlink_va(s, va, root, augment)
                s.w(sibling + VA_END, va_end(s, va))
                kmem_cache_free(s.k, va)
                va = sibling
                merged = True
    if not merged:
        __link_va(s, va, root, parent, link, head, augment)
    return va


def merge_or_add_vmap_area_augment(s: VmapState, va: int, root: int, head: int) -> int:
    va = __merge_or_add_vmap_area(s, va, root, head, True)
    if va:
        augment_tree_propagate_from(s, va)
    return va


def is_within_this_va(s: VmapState, va: int, size: int, align: int, vstart: int) -> bool:
    start = va_start(s, va)
    nva = ALIGN(start, align) if start > vstart else ALIGN(vstart, align)
    if nva + size > M64 or nva < vstart:
        return False
    return nva + size <= va_end(s, va)


def find_vmap_lowest_match(
    s: VmapState, root: int, size: int, align: int, vstart: int, adjust_search_size: bool
) -> int:
    """The free area with the lowest address that fits (size, align) at or above vstart."""
    node = s.r(root)
    length = size + align - 1 if adjust_search_size else size
    while node:
        va = node - VA_RB
        if get_subtree_max_size(s, s.r(node + rb.LEFT)) >= length and vstart < va_start(s, va):
            node = s.r(node + rb.LEFT)
            continue
        if is_within_this_va(s, va, size, align, vstart):
            return va
        if get_subtree_max_size(s, s.r(node + rb.RIGHT)) >= length:
            node = s.r(node + rb.RIGHT)
            continue
        # Roll back to the first right subtree that can satisfy the request (vstart or an
        # alignment above PAGE_SIZE can make a left subtree useless).
        while True:
            node = rb.rb_parent(s.m, node)
            if not node:
                return 0
            va = node - VA_RB
            if is_within_this_va(s, va, size, align, vstart):
                return va
            if get_subtree_max_size(s, s.r(node + rb.RIGHT)) >= length and vstart <= va_start(s, va):
                vstart = va_start(s, va) + 1
                node = s.r(node + rb.RIGHT)
                break
    return 0


NOTHING_FIT, FL_FIT_TYPE, LE_FIT_TYPE, RE_FIT_TYPE, NE_FIT_TYPE = range(5)


def classify_va_fit_type(s: VmapState, va: int, nva_start: int, size: int) -> int:
    start, end = va_start(s, va), va_end(s, va)
    if nva_start < start or nva_start + size > end:
        return NOTHING_FIT
    if start == nva_start:
        return FL_FIT_TYPE if end == nva_start + size else LE_FIT_TYPE
    if end == nva_start + size:
        return RE_FIT_TYPE
    return NE_FIT_TYPE


def va_clip(s: VmapState, root: int, head: int, va: int, nva_start: int, size: int) -> int:
    k = s.k
    lva = 0
    t = classify_va_fit_type(s, va, nva_start, size)
    if t == FL_FIT_TYPE:
        __unlink_va(s, va, root, True)
        kmem_cache_free(k, va)
    elif t == LE_FIT_TYPE:
        s.w(va + VA_START, va_start(s, va) + size)
    elif t == RE_FIT_TYPE:
        s.w(va + VA_END, nva_start)
    elif t == NE_FIT_TYPE:
        # __this_cpu_xchg(ne_fit_preload_node, NULL), else GFP_NOWAIT from the cache.
        slot = k.per_cpu_ptr(k.sym("ne_fit_preload_node"), k.current_cpu)
        lva = s.r(slot)
        s.w(slot, 0)
        if not lva:
            lva = kmem_cache_alloc_node(k, G.GFP_NOWAIT, NUMA_NO_NODE, "alloc_vmap_area")
            if not lva:
                return -12  # -ENOMEM
        s.w(lva + VA_START, va_start(s, va))
        s.w(lva + VA_END, nva_start)
        s.w(va + VA_START, nva_start + size)
    else:
        return -22  # -EINVAL
    if t != FL_FIT_TYPE:
        augment_tree_propagate_from(s, va)
        if lva:
            insert_vmap_area_augment(s, lva, va + VA_RB, root, head)
    return 0


def va_alloc(s: VmapState, va: int, root: int, head: int, size: int, align: int, vstart: int, vend: int) -> int | None:
    start = va_start(s, va)
    nva = ALIGN(start, align) if start > vstart else ALIGN(vstart, align)
    if nva + size > vend:
        return None  # -ERANGE
    if va_clip(s, root, head, va, nva, size):
        s.k.log.append("WARNING: va_clip failed")
        return None
    return nva


def __alloc_vmap_area(s: VmapState, root: int, head: int, size: int, align: int, vstart: int, vend: int) -> int | None:
    # No alignment overhead in the search length for align <= PAGE_SIZE, nor for a range
    # exactly the requested size.
    adjust = not (align <= PAGE_SIZE or (vend - vstart) == size)
    va = find_vmap_lowest_match(s, root, size, align, vstart, adjust)
    if not va:
        return None
    return va_alloc(s, va, root, head, size, align, vstart, vend)


def free_vmap_area(s: VmapState, va: int) -> None:
    vn = addr_to_node(s, va_start(s, va))
    __unlink_va(s, va, vn + VN_BUSY_ROOT, False)
    merge_or_add_vmap_area_augment(s, va, s.free_root, s.free_list)


def preload_this_cpu_lock(s: VmapState, gfp: int, node: int) -> None:
    """Preload this CPU with one vmap_area for a no-edge split, outside the lock."""
    k = s.k
    slot = k.per_cpu_ptr(k.sym("ne_fit_preload_node"), k.current_cpu)
    if not s.r(slot):
        va = kmem_cache_alloc_node(k, gfp, node, "alloc_vmap_area")
        if va:
            s.w(slot, va)


def size_to_va_pool(s: VmapState, vn: int, size: int) -> int:
    idx = (size - 1) // PAGE_SIZE
    return vn + VN_POOL + idx * VP_SIZE if idx < MAX_VA_SIZE_PAGES else 0


def node_pool_add_va(s: VmapState, vn: int, va: int) -> bool:
    vp = size_to_va_pool(s, vn, va_size(s, va))
    if not vp:
        return False
    list_add(s, va + VA_LIST, vp + VP_HEAD)
    s.w(vp + VP_LEN, s.r(vp + VP_LEN) + 1)
    return True


def node_pool_del_va(s: VmapState, vn: int, size: int, align: int, vstart: int, vend: int) -> int:
    vp = size_to_va_pool(s, vn, size)
    if not vp or list_empty(s, vp + VP_HEAD):
        return 0
    va = s.r(vp + VP_HEAD + LH_NEXT) - VA_LIST
    if va_start(s, va) % align == 0:
        if va_size(s, va) != size or va_start(s, va) < vstart or va_end(s, va) > vend:
            s.k.log.append("WARNING: node_pool_del_va: a pooled area does not fit its pool")
            return 0
        list_del_init(s, va + VA_LIST)
        s.w(vp + VP_LEN, s.r(vp + VP_LEN) - 1)
        return va
    list_move_tail(s, va + VA_LIST, vp + VP_HEAD)
    return 0


def node_alloc(s: VmapState, size: int, align: int, vstart: int, vend: int) -> tuple[int, int]:
    """(va from this CPU's node pool or 0, encoded vn_id to remember in va->flags)."""
    k = s.k
    if vstart != VMALLOC_START(k) or vend != VMALLOC_END(k) or s.nr_nodes == 1:
        return 0, 0
    vn_id = k.current_cpu % s.nr_nodes
    va = node_pool_del_va(s, id_to_node(s, vn_id), size, align, vstart, vend)
    return va, encode_vn_id(s, vn_id)


def alloc_vmap_area(
    k: Kernel, size: int, align: int, vstart: int, vend: int, node: int, gfp: int, va_flags: int, vm: int
) -> int:
    """A busy vmap_area of ``size`` bytes aligned to ``align`` in [vstart, vend), bound to
    ``vm`` when given; 0 on failure."""
    s = _s(k)
    if not size or size % PAGE_SIZE or align & (align - 1):
        return 0
    if not s.initialized:
        return 0
    gfp &= GFP_RECLAIM_MASK
    allow_block = bool(gfp & G.__GFP_DIRECT_RECLAIM)
    va, vn_id = node_alloc(s, size, align, vstart, vend)
    addr = va_start(s, va) if va else None
    if not va:
        va = kmem_cache_alloc_node(k, gfp, node, "alloc_vmap_area")
        if not va:
            return 0
    purged = False
    while True:
        if addr is None:
            preload_this_cpu_lock(s, gfp, node)
            addr = __alloc_vmap_area(s, s.free_root, s.free_list, size, align, vstart, vend)
        if addr is not None:
            break
        if allow_block and not purged:
            reclaim_and_purge_vmap_areas(k)
            purged = True
            continue
        if not gfp & G.__GFP_NOWARN:
            k.log.append(
                f"vmalloc_node_range for size {size} failed: Address range restricted to {vstart:#x} - {vend:#x}"
            )
        kmem_cache_free(k, va)
        return 0
    s.w(va + VA_START, addr)
    s.w(va + VA_END, addr + size)
    s.w(va + VA_VM, 0)
    s.w(va + VA_FLAGS, va_flags | vn_id)
    if vm:
        k.kmem.set(vm, "vm_struct", "addr", addr)
        k.kmem.set(vm, "vm_struct", "size", size)
        s.w(va + VA_VM, vm)
    vn = addr_to_node(s, addr)
    insert_vmap_area(s, va, vn + VN_BUSY_ROOT, vn + VN_BUSY_HEAD)
    return va


# -- lazy freeing and the purge ---------------------------------------------------------------
def lazy_max_pages(k: Kernel) -> int:
    """fls(num_online_cpus()) * 32 MiB worth of pages of freed but unflushed address space."""
    return _fls(k.config.cpus) * ((32 << 20) // PAGE_SIZE)


def _set_lazy_nr(s: VmapState, v: int) -> None:
    s.lazy_nr = v
    s.k.kmem.set(s.k.sym("vmap_lazy_nr"), "atomic_long_t", "counter", v)


def reclaim_list_global(s: VmapState, head: int) -> None:
    for va in list(_list_entries(s, head)):
        merge_or_add_vmap_area_augment(s, va, s.free_root, s.free_list)


def decay_va_pool_node(s: VmapState, vn: int, full_decay: bool) -> None:
    """Give back ~25% (all, when full_decay) of each size pool to the free tree."""
    decay_root = s.local(8)
    decay_list = s.local(16)
    INIT_LIST_HEAD(s, decay_list)
    for i in range(MAX_VA_SIZE_PAGES):
        vp = vn + VN_POOL + i * VP_SIZE
        if list_empty(s, vp + VP_HEAD):
            continue
        tmp_list = s.local(16)
        INIT_LIST_HEAD(s, tmp_list)
        list_replace_init(s, vp + VP_HEAD, tmp_list)
        pool_len = n_decay = s.r(vp + VP_LEN)
        s.w(vp + VP_LEN, 0)
        if not full_decay:
            n_decay >>= 2
        pool_len -= n_decay
        for va in list(_list_entries(s, tmp_list)):
            if not n_decay:
                break
            n_decay -= 1
            list_del_init(s, va + VA_LIST)
            __merge_or_add_vmap_area(s, va, decay_root, decay_list, False)
        if not list_empty(s, tmp_list):
            list_replace_init(s, tmp_list, vp + VP_HEAD)
            s.w(vp + VP_LEN, pool_len)
    reclaim_list_global(s, decay_list)


def purge_vmap_node(s: VmapState, vn: int) -> int:
    """Pool (<= 256 pages, node known) or merge back every area of vn's purge_list."""
    nr_purged_pages = 0
    nr_purged = 0
    local_list = s.local(16)
    INIT_LIST_HEAD(s, local_list)
    skip = s.k.kmem.get(vn, "vmap_node", "skip_populate")
    for va in list(_list_entries(s, vn + VN_PURGE_LIST)):
        nr = va_size(s, va) >> PAGE_SHIFT
        vn_id = decode_vn_id(s, s.r(va + VA_FLAGS))
        list_del_init(s, va + VA_LIST)
        nr_purged_pages += nr
        nr_purged += 1
        if is_vn_id_valid(s, vn_id) and not skip and node_pool_add_va(s, vn, va):
            continue
        list_add(s, va + VA_LIST, local_list)  # back to the global free tree
    s.k.kmem.set(vn, "vmap_node", "nr_purged", nr_purged)
    _set_lazy_nr(s, s.lazy_nr - nr_purged_pages)
    reclaim_list_global(s, local_list)
    return nr_purged


def __purge_vmap_area_lazy(k: Kernel, start: int, end: int, full_pool_decay: bool) -> bool:
    """Move every node's lazy areas to its purge_list, flush (nothing to flush here), then
    purge_vmap_node() each; the per-node work items run inline, in node order."""
    s = _s(k)
    purge_nodes = []
    for i in range(s.nr_nodes):
        vn = s.nodes + i * VN_SIZE
        INIT_LIST_HEAD(s, vn + VN_PURGE_LIST)
        k.kmem.set(vn, "vmap_node", "skip_populate", int(full_pool_decay))
        decay_va_pool_node(s, vn, full_pool_decay)
        if rb.RB_EMPTY_ROOT(s.m, vn + VN_LAZY_ROOT):
            continue
        s.w(vn + VN_LAZY_ROOT, 0)
        list_replace_init(s, vn + VN_LAZY_HEAD, vn + VN_PURGE_LIST)
        purge_nodes.append(i)
    nr_purged_areas = 0
    for i in purge_nodes:
        vn = s.nodes + i * VN_SIZE
        s.w(vn + VN_PURGE_WORK_FUNC, 0)
        nr_purged_areas += purge_vmap_node(s, vn)
    s.scratch.clear()
    s.scratch_next = 0x1000
    if nr_purged_areas:
        s.purges += 1
        s.purged_areas += nr_purged_areas
    return nr_purged_areas > 0


def reclaim_and_purge_vmap_areas(k: Kernel) -> None:
    __purge_vmap_area_lazy(k, ULONG_MAX, 0, True)


def drain_vmap_area_work(k: Kernel) -> None:
    __purge_vmap_area_lazy(k, ULONG_MAX, 0, False)


def vm_unmap_aliases(k: Kernel) -> None:
    """Flush every lazily freed area now (there are no vmap blocks to purge)."""
    __purge_vmap_area_lazy(k, ULONG_MAX, 0, False)


purge_vmap_area_lazy = vm_unmap_aliases


def free_vmap_area_noflush(k: Kernel, va: int) -> None:
    s = _s(k)
    nr_lazy_max = lazy_max_pages(k)
    vn_id = decode_vn_id(s, s.r(va + VA_FLAGS))
    if not list_empty(s, va + VA_LIST):
        k.log.append("WARNING: free_vmap_area_noflush of a listed vmap_area")
        return
    nr_lazy = s.lazy_nr + (va_size(s, va) >> PAGE_SHIFT)
    _set_lazy_nr(s, nr_lazy)
    vn = id_to_node(s, vn_id) if is_vn_id_valid(s, vn_id) else addr_to_node(s, va_start(s, va))
    insert_vmap_area(s, va, vn + VN_LAZY_ROOT, vn + VN_LAZY_HEAD)
    if nr_lazy > nr_lazy_max:
        s.drain_pending = True  # schedule_work(&drain_vmap_work)


def _run_scheduled_work(k: Kernel) -> None:
    """The system workqueue runs drain_vmap_work once the freeing call has returned."""
    s = _s(k)
    if s.drain_pending and not s.depth:
        s.drain_pending = False
        drain_vmap_area_work(k)


def free_unmap_vmap_area(k: Kernel, va: int) -> None:
    s = _s(k)
    vunmap_range_noflush(k, va_start(s, va), va_end(s, va))
    free_vmap_area_noflush(k, va)


def find_vmap_area(k: Kernel, addr: int) -> int:
    """The busy ``struct vmap_area`` containing ``addr`` (0 if none)."""
    s = _s(k)
    if not s.initialized:
        return 0
    i = j = addr_to_node_id(s, addr)
    while True:
        vn = s.nodes + i * VN_SIZE
        va = __find_vmap_area(s, addr, vn + VN_BUSY_ROOT)
        if va:
            return va
        i = (i + 1) % s.nr_nodes
        if i == j:
            return 0


def find_unlink_vmap_area(k: Kernel, addr: int) -> int:
    s = _s(k)
    i = j = addr_to_node_id(s, addr)
    while True:
        vn = s.nodes + i * VN_SIZE
        va = __find_vmap_area(s, addr, vn + VN_BUSY_ROOT)
        if va:
            __unlink_va(s, va, vn + VN_BUSY_ROOT, False)
            return va
        i = (i + 1) % s.nr_nodes
        if i == j:
            return 0


# -- page tables (the vmap_*_range / vunmap_*_range walkers) --------------------------------
def _idx(addr: int, shift: int) -> int:
    return (addr >> shift) & 511


def _end_of(addr: int, shift: int, end: int) -> int:
    """p?d_addr_end(): the next boundary of a 1 << shift region, capped at end."""
    b = (addr + (1 << shift)) & ~((1 << shift) - 1)
    return b if b - 1 < end - 1 else end


def _pud_pmd_tables(k: Kernel, addr: int) -> tuple[int, int]:
    """pud_alloc() (p4d folded) then pmd_alloc() for ``addr``; __pud_alloc()/__pmd_alloc()
    count their new tables in init_mm.pgtables_bytes."""
    pt = k.pt
    nid = k.numa_node_id()
    pud, new = pt.populate(pt.pgd, _idx(addr, PGDIR_SHIFT), nid)
    if new:
        mm_inc_nr_tables(k)
    pmd, new = pt.populate(pud, _idx(addr, PUD_SHIFT), nid)
    if new:
        mm_inc_nr_tables(k)
    return pud, pmd


def vmap_small_pages_range_noflush(k: Kernel, addr: int, end: int, prot: int, pfns: list[int]) -> int:
    """Map pfns[] with 4 KiB PTEs (mk_pte(page, prot)); 0 or -errno."""
    pt = k.pt
    nr = 0
    while addr != end:
        try:
            _pud, pmd = _pud_pmd_tables(k, addr)
            pte, _new = pt.populate(pmd, _idx(addr, PMD_SHIFT), k.numa_node_id())  # pte_alloc_kernel
        except PgtableAllocError:
            return -12
        nxt = _end_of(addr, PMD_SHIFT, end)
        n = (nxt - addr) >> PAGE_SHIFT
        at = pte + 8 * _idx(addr, PAGE_SHIFT)
        if any(k.mem.read(at, 8 * n)):
            k.log.append(f"WARNING: vmap_pages_pte_range: {addr:#x} is already mapped")
            return -16  # -EBUSY
        k.mem.write(at, b"".join(((p << PAGE_SHIFT) | prot).to_bytes(8, "little") for p in pfns[nr : nr + n]))
        nr += n
        addr = nxt
    return 0


def vmap_pages_range(k: Kernel, addr: int, end: int, prot: int, pfns: list[int], page_shift: int = PAGE_SHIFT) -> int:
    # __vmap_pages_range_noflush(): huge mappings only for page_shift > PAGE_SHIFT
    # (VM_ALLOW_HUGE_VMAP), which no caller here asks for.
    if page_shift != PAGE_SHIFT:
        raise NotImplementedError("huge vmalloc mappings (VM_ALLOW_HUGE_VMAP) are not modelled")
    return vmap_small_pages_range_noflush(k, addr, end, prot, pfns)


def protval_4k_2_large(prot: int) -> int:
    """arch/x86/include/asm/pgtable_types.h: move the PAT bit from bit 7 to bit 12."""
    pat = 1 << x86._PAGE_BIT_PAT
    return (prot & ~pat) | ((prot & pat) << (x86._PAGE_BIT_PAT_LARGE - x86._PAGE_BIT_PAT))


def vmap_range_noflush(k: Kernel, addr: int, end: int, phys: int, prot: int, max_page_shift: int) -> int:
    """Map the physically contiguous [phys, ...) at [addr, end), with PUD/PMD leaves where a
    1 GiB / 2 MiB step is aligned on both sides (vmap_try_huge_pud/pmd; x86 supports both:
    X86_FEATURE_GBPAGES, X86_FEATURE_PSE; no MTRRs, so every range is uniform)."""
    pt = k.pt
    nid = k.numa_node_id()
    try:
        while addr != end:
            pgd_next = _end_of(addr, PGDIR_SHIFT, end)
            pud, new = pt.populate(pt.pgd, _idx(addr, PGDIR_SHIFT), nid)
            if new:
                mm_inc_nr_tables(k)
            while addr != pgd_next:
                nxt = _end_of(addr, PUD_SHIFT, pgd_next)
                e_at = pud + 8 * _idx(addr, PUD_SHIFT)
                if (
                    max_page_shift >= PUD_SHIFT
                    and nxt - addr == PUD_SIZE
                    and not addr % PUD_SIZE
                    and not phys % PUD_SIZE
                ):
                    if k.mem.read_u64(e_at) & _PAGE_PRESENT:
                        pud_free_pmd_page(k, e_at)
                    k.mem.write_u64(e_at, phys | protval_4k_2_large(prot) | _PAGE_PSE)
                else:
                    pmd, new = pt.populate(pud, _idx(addr, PUD_SHIFT), nid)
                    if new:
                        mm_inc_nr_tables(k)
                    a, p = addr, phys
                    while a != nxt:
                        n2 = _end_of(a, PMD_SHIFT, nxt)
                        m_at = pmd + 8 * _idx(a, PMD_SHIFT)
                        if max_page_shift >= PMD_SHIFT and n2 - a == PMD_SIZE and not a % PMD_SIZE and not p % PMD_SIZE:
                            if k.mem.read_u64(m_at) & _PAGE_PRESENT:
                                pmd_free_pte_page(k, m_at)
                            k.mem.write_u64(m_at, p | protval_4k_2_large(prot) | _PAGE_PSE)
                        else:
                            pte, _n = pt.populate(pmd, _idx(a, PMD_SHIFT), nid)
                            cnt = (n2 - a) >> PAGE_SHIFT
                            at = pte + 8 * _idx(a, PAGE_SHIFT)
                            if any(k.mem.read(at, 8 * cnt)):
                                raise AssertionError(f"vmap_pte_range: remapping already mapped {a:#x}")  # BUG()
                            k.mem.write(
                                at,
                                b"".join(
                                    (((p >> PAGE_SHIFT) + i) << PAGE_SHIFT | prot).to_bytes(8, "little")
                                    for i in range(cnt)
                                ),
                            )
                        p += n2 - a
                        a = n2
                phys += nxt - addr
                addr = nxt
    except PgtableAllocError:
        return -12
    return 0


def pmd_free_pte_page(k: Kernel, pmd_entry: int) -> None:
    """arch/x86/mm/pgtable.c: clear the PMD and free the PTE table under it."""
    e = k.mem.read_u64(pmd_entry)
    k.mem.write_u64(pmd_entry, 0)
    pagetable_dtor_free(k, e & PTE_PFN_MASK)


def pud_free_pmd_page(k: Kernel, pud_entry: int) -> None:
    """arch/x86/mm/pgtable.c: save and clear the PMD table in a scratch page, clear the PUD,
    free every PTE table and the PMD table."""
    pmd = k.mem.read_u64(pud_entry) & PTE_PFN_MASK
    sv = k.alloc_pages(G.GFP_KERNEL, 0)  # __get_free_page(GFP_KERNEL)
    if sv is None:
        raise PgtableAllocError("pud_free_pmd_page: no page to save the PMD table")
    saved = k.mem.read(pmd, PAGE_SIZE)
    k.mem.write(sv << PAGE_SHIFT, saved)
    k.mem.fill(pmd, PAGE_SIZE, 0)
    k.mem.write_u64(pud_entry, 0)
    for i in range(512):
        e = int.from_bytes(saved[8 * i : 8 * i + 8], "little")
        if e:
            pagetable_dtor_free(k, e & PTE_PFN_MASK)
    k.free_pages(sv, 0)
    pagetable_dtor_free(k, pmd)


def vunmap_range_noflush(k: Kernel, start: int, end: int) -> None:
    """Clear every leaf mapping [start, end) (tables stay, as in the kernel)."""
    pt = k.pt
    addr = start
    while addr != end:
        nxt = _end_of(addr, PMD_SHIFT, end)
        pud_e = pt.entry(pt.pgd, _idx(addr, PGDIR_SHIFT))
        if not pud_e & _PAGE_PRESENT:
            addr = _end_of(addr, PGDIR_SHIFT, end)
            continue
        pud_at = (pud_e & PTE_PFN_MASK) + 8 * _idx(addr, PUD_SHIFT)
        pmd_e = k.mem.read_u64(pud_at)
        if not pmd_e & _PAGE_PRESENT:
            addr = _end_of(addr, PUD_SHIFT, end)
            continue
        if pmd_e & _PAGE_PSE:  # pud_clear_huge()
            k.mem.write_u64(pud_at, 0)
            addr = _end_of(addr, PUD_SHIFT, end)
            continue
        pmd_at = (pmd_e & PTE_PFN_MASK) + 8 * _idx(addr, PMD_SHIFT)
        pte_e = k.mem.read_u64(pmd_at)
        if pte_e & _PAGE_PRESENT:
            if pte_e & _PAGE_PSE:  # pmd_clear_huge()
                k.mem.write_u64(pmd_at, 0)
            else:
                at = (pte_e & PTE_PFN_MASK) + 8 * _idx(addr, PAGE_SHIFT)
                k.mem.write(at, bytes(8 * ((nxt - addr) >> PAGE_SHIFT)))  # ptep_get_and_clear
        addr = nxt


def vmalloc_to_pfn(k: Kernel, addr: int) -> int | None:
    """vmalloc_to_page() as a pfn: the page-table walk of init_mm (huge leaves give the
    base page at the offset)."""
    hit = k.pt.lookup_address(addr)
    if hit is None:
        return None
    return k.pt.virt_to_phys(addr) >> PAGE_SHIFT


# -- vm_struct and the public API -------------------------------------------------------------
def caller_address(k: Kernel, caller: str | int) -> int:
    """The return address a vm_struct records for ``caller``: an address, a function name
    (offset and size from the reference kernel's vmallocinfo when known), or the %pS form
    ``"name+0xoff/0xsize"``.  Unknown functions are added to the image's .text."""
    if isinstance(caller, int):
        return caller
    name, off, size = caller, None, None
    if "+" in caller:
        name, rest = caller.split("+", 1)
        o, _, sz = rest.partition("/")
        off = int(o, 16)
        size = int(sz, 16) if sz else None
    known = KNOWN_CALLERS.get(name)
    if off is None:
        off = known[0] if known else 0x10
    sym = k.image.symbols.get(name)
    if sym is None:
        size = size or (known[1] if known else max(0x100, off + 0x10))
        k.image.func(name, size)
        sym = k.image.symbols[name]
    if off >= max(sym.size, 1):
        raise ValueError(f"caller {caller!r}: offset {off:#x} outside {name} (size {sym.size:#x})")
    return sym.address + off


def get_vm_area_size(k: Kernel, vm: int) -> int:
    size = k.kmem.get(vm, "vm_struct", "size")
    return size if k.kmem.get(vm, "vm_struct", "flags") & VM_NO_GUARD else size - PAGE_SIZE


def __get_vm_area_node(
    k: Kernel, size: int, align: int, shift: int, flags: int, start: int, end: int, node: int, gfp: int, caller: int
) -> int:
    """Reserve address space (no mapping): a kzalloc'd vm_struct bound to a busy vmap_area."""
    requested_size = size
    size = ALIGN(size, 1 << shift)
    if not size:
        return 0
    if flags & VM_IOREMAP:
        order = _fls(size - 1)  # get_count_order_long()
        align = 1 << min(max(order, PAGE_SHIFT), IOREMAP_MAX_ORDER)
    area = kmalloc_node(k, VM_SIZE, (gfp & GFP_RECLAIM_MASK) | G.__GFP_ZERO, node, "__get_vm_area_node")
    if not area:
        return 0
    if not flags & VM_NO_GUARD:
        size += PAGE_SIZE
    km = k.kmem
    km.set(area, "vm_struct", "flags", flags)
    km.set(area, "vm_struct", "caller", caller)
    km.set(area, "vm_struct", "requested_size", requested_size)
    va = alloc_vmap_area(k, size, align, start, end, node, gfp, 0, area)
    if not va:
        kfree(k, area)
        return 0
    return area


def get_vm_area_caller(k: Kernel, size: int, flags: int, caller: int) -> int:
    return __get_vm_area_node(
        k, size, 1, PAGE_SHIFT, flags, VMALLOC_START(k), VMALLOC_END(k), NUMA_NO_NODE, G.GFP_KERNEL, caller
    )


def find_vm_area(k: Kernel, addr: int) -> int:
    va = find_vmap_area(k, addr)
    return _s(k).r(va + VA_VM) if va else 0


def remove_vm_area(k: Kernel, addr: int) -> int:
    """Unlink the area from the busy tree, unmap it and free its range lazily; returns the
    vm_struct (still allocated) or 0."""
    if addr % PAGE_SIZE:
        k.log.append(f"WARNING: Trying to vfree() bad address ({addr:#x})")
        return 0
    va = find_unlink_vmap_area(k, addr)
    if not va:
        return 0
    vm = _s(k).r(va + VA_VM)
    if not vm:
        return 0
    free_unmap_vmap_area(k, va)
    return vm


def _read_pfns(k: Kernel, pages: int, n: int) -> list[int]:
    """The pfns of the struct page pointers in a vm_struct's pages array."""
    raw = vmalloc_read(k, pages, 8 * n) if is_vmalloc_addr(k, pages) else k.mem.read(k.pa(pages), 8 * n)
    return [(int.from_bytes(raw[8 * i : 8 * i + 8], "little") - k.vmemmap_base) // k.struct_page_size for i in range(n)]


def _write_pages_array(k: Kernel, pages: int, pfns: list[int]) -> None:
    data = b"".join(k.pfn_to_page(p).to_bytes(8, "little") for p in pfns)
    if is_vmalloc_addr(k, pages):
        vmalloc_write(k, pages, data)
    else:
        k.kmem.write_bytes(pages, data)


def _set_nr_vmalloc_pages(s: VmapState, v: int) -> None:
    s.nr_vmalloc_pages = v
    s.k.kmem.set(s.k.sym("nr_vmalloc_pages"), "atomic_long_t", "counter", v)


def vfree(k: Kernel, addr: int) -> None:
    """Unmap and lazily free the area at ``addr``; its pages go back to the page allocator at once."""
    if not addr:
        return
    s = _s(k)
    s.depth += 1
    try:
        vm = remove_vm_area(k, addr)
        if not vm:
            k.log.append(f"WARNING: Trying to vfree() nonexistent vm area ({addr:#x})")
            return
        km = k.kmem
        flags = km.get(vm, "vm_struct", "flags")
        nr = km.get(vm, "vm_struct", "nr_pages")
        pages = km.get(vm, "vm_struct", "pages")
        for pfn in _read_pfns(k, pages, nr) if nr else []:
            k.free_pages(pfn, 0)  # __free_page(): huge allocations were split, so order 0
        if not flags & VM_MAP_PUT_PAGES:
            _set_nr_vmalloc_pages(s, s.nr_vmalloc_pages - nr)
        s.areas.pop(addr, None)
        if pages:
            if is_vmalloc_addr(k, pages):  # kvfree()
                vfree(k, pages)
            else:
                kfree(k, pages)
        kfree(k, vm)
    finally:
        s.depth -= 1
    _run_scheduled_work(k)


def vunmap(k: Kernel, addr: int) -> None:
    """Release a vmap()/ioremap mapping; the pages stay the caller's."""
    if not addr:
        return
    vm = remove_vm_area(k, addr)
    if not vm:
        k.log.append(f"WARNING: Trying to vunmap() nonexistent vm area ({addr:#x})")
        return
    _s(k).areas.pop(addr, None)
    kfree(k, vm)
    _run_scheduled_work(k)


def _record(k: Kernel, vm: int, pfns: list[int], prot: int) -> VmArea:
    km = k.kmem
    addr = km.get(vm, "vm_struct", "addr")
    a = VmArea(
        addr=addr,
        size=km.get(vm, "vm_struct", "size"),
        flags=km.get(vm, "vm_struct", "flags"),
        caller=km.get(vm, "vm_struct", "caller"),
        vm=vm,
        va=find_vmap_area(k, addr),
        pfns=list(pfns),
        phys_addr=km.get(vm, "vm_struct", "phys_addr"),
        pages_array=km.get(vm, "vm_struct", "pages"),
        prot=prot,
    )
    _s(k).areas[addr] = a
    return a


def vmap(k: Kernel, pfns: list[int], flags: int, prot: int, caller: str | int) -> int:
    """Map existing pages (pfns) at a new virtually contiguous address; 0 on failure."""
    if flags & VM_FLUSH_RESET_PERMS:
        return 0
    flags &= ~VM_NO_GUARD  # "your top guard is someone else's bottom guard"
    count = len(pfns)
    if count > k.totalram_pages:
        return 0
    size = count << PAGE_SHIFT
    area = get_vm_area_caller(k, size, flags, caller_address(k, caller))
    if not area:
        return 0
    addr = k.kmem.get(area, "vm_struct", "addr")
    prot |= x86._PAGE_NX  # pgprot_nx()
    if vmap_pages_range(k, addr, addr + size, prot, pfns) < 0:
        vunmap(k, addr)
        return 0
    if flags & VM_MAP_PUT_PAGES:
        raise NotImplementedError("VM_MAP_PUT_PAGES: vmap() takes no pages array here")
    _record(k, area, pfns, prot)
    return addr


def vm_area_alloc_pages(k: Kernel, gfp: int, nid: int, order: int, nr_pages: int) -> list[int]:
    """The pages of a vmalloc area: alloc_pages_bulk() in batches of up to 100 order-0 pages
    (mempolicy or node), then single pages for what the bulk allocator did not give."""
    if order:
        raise NotImplementedError("high-order vmalloc pages (huge mappings) are not modelled")
    pfns: list[int] = []
    node = None if nid == NUMA_NO_NODE else nid
    while len(pfns) < nr_pages:
        request = min(100, nr_pages - len(pfns))
        got = 0
        for _ in range(request):  # alloc_pages_bulk_*(): order-0 pages from the pcp lists
            pfn = k.alloc_pages(gfp, 0, node)
            if pfn is None:
                break
            pfns.append(pfn)
            got += 1
        if got != request:
            break
    while len(pfns) < nr_pages:
        pfn = k.alloc_pages(gfp, 0, node)
        if pfn is None:
            break
        pfns.append(pfn)
    return pfns


def _warn_alloc(k: Kernel, gfp: int, msg: str) -> None:
    if not gfp & G.__GFP_NOWARN:
        k.log.append(f"{k.current_comm()}: {msg}, mode:{gfp:#x}({G.format_gfp(gfp)}), nodemask=(null)")


def __vmalloc_area_node(k: Kernel, area: int, gfp: int, prot: int, page_shift: int, node: int) -> int:
    """Allocate the pages array and the pages of ``area``, then map them; 0 on failure (the
    area is freed)."""
    s = _s(k)
    km = k.kmem
    nested_gfp = (gfp & GFP_RECLAIM_MASK) | G.__GFP_ZERO
    addr = km.get(area, "vm_struct", "addr")
    size = get_vm_area_size(k, area)
    nr_small_pages = size >> PAGE_SHIFT
    array_size = nr_small_pages * 8
    caller = km.get(area, "vm_struct", "caller")
    if not gfp & (G.GFP_DMA | G.GFP_DMA32):
        gfp |= G.__GFP_HIGHMEM
    if array_size > PAGE_SIZE:
        pages = __vmalloc_node(k, array_size, 1, nested_gfp, node, caller)
    else:
        pages = kmalloc_node(k, array_size, nested_gfp, node, "__vmalloc_node_range_noprof")
    if not pages:
        _warn_alloc(
            k,
            gfp,
            f"vmalloc error: size {nr_small_pages * PAGE_SIZE}, failed to allocated page array size {array_size}",
        )
        vfree(k, addr)
        return 0
    km.set(area, "vm_struct", "pages", pages)
    km.set(area, "vm_struct", "page_order", page_shift - PAGE_SHIFT)
    pfns = vm_area_alloc_pages(k, gfp | G.__GFP_NOWARN, node, page_shift - PAGE_SHIFT, nr_small_pages)
    if pfns:
        _write_pages_array(k, pages, pfns)
    km.set(area, "vm_struct", "nr_pages", len(pfns))
    _set_nr_vmalloc_pages(s, s.nr_vmalloc_pages + len(pfns))
    if len(pfns) != nr_small_pages:
        _warn_alloc(k, gfp, f"vmalloc error: size {nr_small_pages * PAGE_SIZE}, failed to allocate pages")
        vfree(k, addr)
        return 0
    if vmap_pages_range(k, addr, addr + size, prot, pfns, page_shift) < 0:
        _warn_alloc(k, gfp, f"vmalloc error: size {len(pfns) * PAGE_SIZE}, failed to map pages")
        vfree(k, addr)
        return 0
    _record(k, area, pfns, prot)
    return addr


def __vmalloc_node_range(
    k: Kernel,
    size: int,
    align: int,
    start: int,
    end: int,
    gfp: int,
    prot: int,
    vm_flags: int,
    node: int,
    caller: str | int,
) -> int:
    """Allocate ``size`` bytes of virtually contiguous memory in [start, end); 0 on failure."""
    if isinstance(gfp, str):
        gfp = G.parse_gfp(gfp)
    caller = caller_address(k, caller)
    if not size:
        return 0
    if (size >> PAGE_SHIFT) > k.totalram_pages:
        _warn_alloc(k, gfp, f"vmalloc error: size {size}, exceeds total pages")
        return 0
    if vm_flags & VM_ALLOW_HUGE_VMAP:
        raise NotImplementedError("VM_ALLOW_HUGE_VMAP (vmalloc_huge) is not modelled")
    shift = PAGE_SHIFT
    while True:
        area = __get_vm_area_node(
            k, size, align, shift, VM_ALLOC | VM_UNINITIALIZED | vm_flags, start, end, node, gfp, caller
        )
        if area:
            break
        _warn_alloc(
            k,
            gfp,
            f"vmalloc error: size {size}, vm_struct allocation failed"
            + (". Retrying." if gfp & G.__GFP_NOFAIL else ""),
        )
        if not gfp & G.__GFP_NOFAIL:
            return 0
    ret = __vmalloc_area_node(k, area, gfp, prot, shift, node)
    if not ret:
        return 0
    # clear_vm_uninitialized_flag(): the area is complete, readers may now look at it.
    km = k.kmem
    km.set(area, "vm_struct", "flags", km.get(area, "vm_struct", "flags") & ~VM_UNINITIALIZED)
    _s(k).areas[ret].flags &= ~VM_UNINITIALIZED
    return ret


def __vmalloc_node(k: Kernel, size: int, align: int, gfp: int, node: int, caller: str | int) -> int:
    return __vmalloc_node_range(k, size, align, VMALLOC_START(k), VMALLOC_END(k), gfp, PAGE_KERNEL, 0, node, caller)


def vmalloc(k: Kernel, size: int, caller: str | int) -> int:
    """vmalloc(size) called from ``caller``: GFP_KERNEL pages from any node; the address or 0."""
    return __vmalloc_node(k, size, 1, G.GFP_KERNEL, NUMA_NO_NODE, caller)


def vzalloc(k: Kernel, size: int, caller: str | int) -> int:
    return __vmalloc_node(k, size, 1, G.GFP_KERNEL | G.__GFP_ZERO, NUMA_NO_NODE, caller)


def vmalloc_node(k: Kernel, size: int, node: int, caller: str | int) -> int:
    return __vmalloc_node(k, size, 1, G.GFP_KERNEL, node, caller)


def vzalloc_node(k: Kernel, size: int, node: int, caller: str | int) -> int:
    return __vmalloc_node(k, size, 1, G.GFP_KERNEL | G.__GFP_ZERO, node, caller)


def vmalloc_nr_pages(k: Kernel) -> int:
    """atomic_long_read(&nr_vmalloc_pages): meminfo's VmallocUsed, in pages."""
    return _s(k).nr_vmalloc_pages


# -- reading and writing vmalloc memory (the simulator's, through the page tables) -----------
def vmalloc_write(k: Kernel, addr: int, data: bytes) -> None:
    """Store ``data`` at a mapped vmalloc address (page by page through init_mm's tables)."""
    pos = 0
    while pos < len(data):
        n = min(len(data) - pos, PAGE_SIZE - ((addr + pos) & (PAGE_SIZE - 1)))
        k.mem.write(k.pt.virt_to_phys(addr + pos), data[pos : pos + n])
        pos += n


def vmalloc_read(k: Kernel, addr: int, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        n = min(size - len(out), PAGE_SIZE - ((addr + len(out)) & (PAGE_SIZE - 1)))
        out += k.mem.read(k.pt.virt_to_phys(addr + len(out)), n)
    return bytes(out)


# -- x86 ioremap (arch/x86/mm/ioremap.c) --------------------------------------------------------
def _e820_overlap(k: Kernel, start: int, end: int, types: tuple[int, ...]) -> bool:
    return any(e.type in types and e.addr < end and start < e.end for e in k.e820)


def _is_range_ram(k: Kernel, start: int, end: int) -> int:
    """pat_pagerange_is_ram(): 1 if every pfn is System RAM, 0 if none, -1 if mixed."""
    ram_pfns = set()
    for e in k.e820:
        if e.type == E820_TYPE_RAM:
            ram_pfns.update(
                range(max(-(-e.addr // PAGE_SIZE), start >> PAGE_SHIFT), min(e.end >> PAGE_SHIFT, end >> PAGE_SHIFT))
            )
    n = (end - start) >> PAGE_SHIFT
    return 1 if len(ram_pfns) == n else 0 if not ram_pfns else -1


def __ioremap_check_ram(k: Kernel, start: int, end: int) -> bool:
    """True when the range holds System RAM pages that are not PageReserved (refused)."""
    pg_reserved = 1 << k.T.const("PG_reserved")
    for e in k.e820:
        if e.type != E820_TYPE_RAM or not (e.addr < end and start < e.end):
            continue
        lo, hi = -(-max(e.addr, start) // PAGE_SIZE), min(e.end, end) >> PAGE_SHIFT
        for pfn in range(lo, hi):
            if not k.kmem.get(k.pfn_to_page(pfn), "page", "flags") & pg_reserved:
                return True
    return False


def __ioremap_caller(k: Kernel, phys_addr: int, size: int, pcm: int, caller: str | int) -> int:
    """Map device/firmware memory [phys_addr, +size) with cache mode ``pcm``; the address
    (with phys_addr's page offset) or 0."""
    caller = caller_address(k, caller)
    last_addr = phys_addr + size - 1
    if not size or last_addr < phys_addr:
        return 0
    if last_addr >> x86.MAX_PHYSMEM_BITS:
        k.log.append(f"ioremap: invalid physical address {phys_addr:#x}")
        return 0
    if __ioremap_check_ram(k, phys_addr, last_addr + 1):
        k.log.append(f"WARNING: ioremap on RAM at {phys_addr:#x} - {last_addr:#x}")
        return 0
    offset = phys_addr & (PAGE_SIZE - 1)
    phys_addr &= ~(PAGE_SIZE - 1)
    size = ALIGN(last_addr + 1, PAGE_SIZE) - phys_addr
    # memtype_reserve(): no RAM/non-RAM mix; a WB request on memory the MTRRs leave
    # uncached (pat_x_mtrr_type) gets UC-.
    is_ram = _is_range_ram(k, phys_addr, phys_addr + size)
    if is_ram < 0:
        k.log.append("ioremap memtype_reserve failed -22")
        return 0
    if (
        pcm == PCM_WB
        and not is_ram
        and not _e820_overlap(k, phys_addr, phys_addr + size, (E820_TYPE_RAM, E820_TYPE_ACPI, E820_TYPE_NVS))
    ):
        pcm = PCM_UC_MINUS
    prot = PAGE_KERNEL_IO | CACHEMODE2PTE[pcm]
    area = get_vm_area_caller(k, size, VM_IOREMAP, caller)
    if not area:
        return 0
    k.kmem.set(area, "vm_struct", "phys_addr", phys_addr)
    vaddr = k.kmem.get(area, "vm_struct", "addr")
    if ioremap_page_range(k, vaddr, vaddr + size, phys_addr, prot):
        vunmap(k, vaddr)
        return 0
    _record(k, area, [], prot | x86._PAGE_NX)
    return vaddr + offset


def ioremap_page_range(k: Kernel, addr: int, end: int, phys_addr: int, prot: int) -> int:
    area = find_vm_area(k, addr)
    if not area or not k.kmem.get(area, "vm_struct", "flags") & VM_IOREMAP:
        k.log.append(f"WARNING: vm_area at addr {addr:#x} is not marked as VM_IOREMAP")
        return -22
    if addr != k.kmem.get(area, "vm_struct", "addr") or end != addr + get_vm_area_size(k, area):
        return -34
    # vmap_page_range(): pgprot_nx(), up to ioremap_max_page_shift.
    return vmap_range_noflush(k, addr, end, phys_addr, prot | x86._PAGE_NX, IOREMAP_MAX_PAGE_SHIFT)


def ioremap(k: Kernel, phys_addr: int, size: int, caller: str | int) -> int:
    """ioremap(): uncached (_PAGE_CACHE_MODE_UC_MINUS), as every ioremap() is on x86."""
    return __ioremap_caller(k, phys_addr, size, PCM_UC_MINUS, caller)


def ioremap_cache(k: Kernel, phys_addr: int, size: int, caller: str | int) -> int:
    """ioremap_cache(): write-back where the memory is cacheable."""
    return __ioremap_caller(k, phys_addr, size, PCM_WB, caller)


def iounmap(k: Kernel, addr: int) -> None:
    addr &= ~(PAGE_SIZE - 1)
    vm = find_vm_area(k, addr)
    if not vm:
        k.log.append(f"iounmap: bad address {addr:#x}")
        return
    o = remove_vm_area(k, addr)
    if o != vm:
        raise AssertionError("iounmap: the area changed under us")
    _s(k).areas.pop(addr, None)
    kfree(k, vm)
    _run_scheduled_work(k)


# -- boot-time users ---------------------------------------------------------------------------
def irq_init_percpu_irqstack(k: Kernel, cpu: int) -> int:
    """arch/x86/kernel/irq_64.c map_irq_stack(): vmap() the CPU's per-CPU
    irq_stack_backing_store (so it has a guard page) and point hardirq_stack_ptr at its top."""
    ptr = k.per_cpu_ptr(k.sym("hardirq_stack_ptr"), cpu)
    if k.kmem.mem.read_u64(k.pa(ptr)):
        return 0
    stack = k.per_cpu_ptr(k.sym("irq_stack_backing_store"), cpu)
    size = k.T.sizeof("struct irq_stack")  # IRQ_STACK_SIZE
    pfns = [k.pa(stack + i) >> PAGE_SHIFT for i in range(0, size, PAGE_SIZE)]  # per_cpu_ptr_to_phys()
    va = vmap(k, pfns, VM_MAP, PAGE_KERNEL, "irq_init_percpu_irqstack")
    if not va:
        return -12
    k.kmem.write_u64(ptr, va + size - 8)
    return 0


def acpi_os_map_iomem(k: Kernel, phys: int, size: int) -> int:
    """drivers/acpi/osl.c: acpi_map() -> acpi_os_ioremap() -> ioremap_cache() for memory that
    is not System RAM (page_is_ram() RAM is kmap'ed instead)."""
    return ioremap_cache(k, phys, size, "acpi_os_map_iomem")


def boot_vmalloc_users(k: Kernel) -> None:
    """The boot's vmalloc users after mm_core_init(), in start_kernel()'s order: init_IRQ()
    maps CPU 0's IRQ stack; ACPI maps its tables (the ACPI Tables e820 range) and the FACS
    (first page of ACPI NVS); smp_init() forks the idle tasks of the other CPUs
    (idle_threads_init(), vmalloc'd stacks) and brings each CPU up (its IRQ stack)."""
    from mmintro.kernel import init_task

    irq_init_percpu_irqstack(k, 0)
    for e in k.e820:
        if e.type == E820_TYPE_ACPI:
            acpi_os_map_iomem(k, e.addr, e.size)
    for e in k.e820:
        if e.type == E820_TYPE_NVS:
            acpi_os_map_iomem(k, e.addr, PAGE_SIZE)
            break
    init_task.fork_idle_stacks(k)
    for cpu in range(1, k.config.cpus):
        irq_init_percpu_irqstack(k, cpu)


# -- vmalloc_init ------------------------------------------------------------------------------
def vmap_init_nodes(k: Kernel) -> None:
    s = _s(k)
    n = min(max(k.config.cpus, 1), 128)  # clamp(num_possible_cpus(), 1, 128)
    if n > 1:
        vn = kmalloc_node(k, n * VN_SIZE, G.GFP_NOWAIT, NUMA_NO_NODE, "vmalloc_init")  # kmalloc_array()
        if vn:
            s.zone_size = (1 << 4) * PAGE_SIZE  # node partition is 16 pages
            s.nr_nodes = n
            s.nodes = vn
            k.kmem.write_u64(k.sym("vmap_nodes"), vn)
            k.write_int("vmap_zone_size", s.zone_size)
            k.write_int("nr_vmap_nodes", n)
        else:
            k.log.append("Failed to allocate an array. Disable a node layer")
    for i in range(s.nr_nodes):
        vn = s.nodes + i * VN_SIZE
        s.w(vn + VN_BUSY_ROOT, 0)
        INIT_LIST_HEAD(s, vn + VN_BUSY_HEAD)
        s.w(vn + VN_LAZY_ROOT, 0)
        INIT_LIST_HEAD(s, vn + VN_LAZY_HEAD)
        for p in range(MAX_VA_SIZE_PAGES):
            INIT_LIST_HEAD(s, vn + VN_POOL + p * VP_SIZE + VP_HEAD)
            s.w(vn + VN_POOL + p * VP_SIZE + VP_LEN, 0)


def vmap_init_free_space(k: Kernel) -> None:
    """No early vm areas on x86 (vmlist is empty): the free space is one area [1, ULONG_MAX)."""
    s = _s(k)
    free = kmem_cache_alloc_node(k, G.GFP_NOWAIT | G.__GFP_ZERO, NUMA_NO_NODE, "vmalloc_init")
    s.w(free + VA_START, 1)
    s.w(free + VA_END, ULONG_MAX)
    insert_vmap_area_augment(s, free, 0, s.free_root, s.free_list)


def create_vmap_area_cache(k: Kernel):
    """vmalloc_init(): ``vmap_area_cachep = KMEM_CACHE(vmap_area, SLAB_PANIC)``."""
    from mmintro.kernel import slab_common

    k.vmap_area_cachep = _slub().KMEM_CACHE(k, "vmap_area", slab_common.SLAB_PANIC)
    return k.vmap_area_cachep


def vmalloc_init(k: Kernel) -> None:
    """mm_core_init() -> vmalloc_init(), followed by the boot's first vmalloc users
    (:func:`boot_vmalloc_users`).

    The kernel runs x86's mem_init() (after_bootmem, preallocate_vmalloc_pages) right after
    memblock_free_all() and before kmem_cache_init(); while the simulator's boot has no step
    for it there, it runs here, first (and is skipped if the boot already ran it).
    """
    from mmintro.kernel import init_64

    for name in (
        "single",
        "free_vmap_area_root",
        "free_vmap_area_list",
        "vmap_area_cachep",
        "vmap_initialized",
        "vmap_lazy_nr",
        "nr_vmalloc_pages",
    ):
        k.image.var(name, "bss")
    if not getattr(k, "after_bootmem", False):
        init_64.mem_init(k)
    s = k.vmap = VmapState(k)  # type: ignore[attr-defined]
    # vmap_nodes = &single, nr_vmap_nodes = 1, vmap_zone_size = 1 (static initialisers).
    s.nodes = k.sym("single")
    k.kmem.write_u64(k.sym("vmap_nodes"), s.nodes)
    k.write_int("nr_vmap_nodes", 1)
    k.write_int("vmap_zone_size", 1)
    INIT_LIST_HEAD(s, s.free_list)
    s.cachep = getattr(k, "vmap_area_cachep", None) or create_vmap_area_cache(k)
    k.kmem.write_u64(k.sym("vmap_area_cachep"), s.cachep.addr)
    for cpu in range(k.config.cpus):
        vbq = k.per_cpu_ptr(k.sym("vmap_block_queue"), cpu)
        INIT_LIST_HEAD(s, vbq + VBQ_FREE)
    vmap_init_nodes(k)
    vmap_init_free_space(k)
    s.initialized = True
    k.write_int("vmap_initialized", 1)
    boot_vmalloc_users(k)


# -- reports for checks -------------------------------------------------------------------------
def busy_areas(k: Kernel) -> list[tuple[int, int, int]]:
    """(va address, va_start, va_end) of every busy area, in for_each_vmap_area() order (node
    by node, each node's list by address), read from simulated memory."""
    s = _s(k)
    out = []
    for i in range(s.nr_nodes):
        vn = s.nodes + i * VN_SIZE
        for va in _list_entries(s, vn + VN_BUSY_HEAD):
            out.append((va, va_start(s, va), va_end(s, va)))
    return out


def lazy_areas(k: Kernel) -> list[tuple[int, int]]:
    """(va_start, va_end) of every lazily freed, not yet purged area (vmallocinfo's
    "unpurged vm_area" lines)."""
    s = _s(k)
    out = []
    for i in range(s.nr_nodes):
        vn = s.nodes + i * VN_SIZE
        out += [(va_start(s, va), va_end(s, va)) for va in _list_entries(s, vn + VN_LAZY_HEAD)]
    return out
