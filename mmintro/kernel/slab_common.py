"""Allocator-independent slab code (mm/slab_common.c, mm/slab.h, include/linux/slab.h of 6.18).

Cache creation and merging (__kmem_cache_create_args, find_mergeable, calculate_alignment),
the boot and kmalloc caches (create_boot_cache, create_kmalloc_caches, kmalloc_info,
kmalloc_size_index, kmalloc_type), dedicated kmalloc buckets (kmem_buckets_create) and the
caches start_kernel's init calls create, in the order a real 6.18 boot creates them.
SLUB itself (mm/slub.c: calculate_sizes, the allocator, kmalloc/kfree) is
:mod:`mmintro.kernel.slub`.

Flag bits come from the pinned ``enum _slab_flag_bits``; sizes from the type data.  The
#defines that are not in the type data live in the block below, each with its header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.types import Type, get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel
    from mmintro.kernel.slub import KmemCache

_T = get_types()


def _flag(name: str) -> int:
    return 1 << _T.const(f"_SLAB_{name}")


# -- slab_flags_t (include/linux/slab.h: enum _slab_flag_bits) -------------------------------
SLAB_CONSISTENCY_CHECKS = _flag("CONSISTENCY_CHECKS")
SLAB_RED_ZONE = _flag("RED_ZONE")
SLAB_POISON = _flag("POISON")
SLAB_KMALLOC = _flag("KMALLOC")
SLAB_HWCACHE_ALIGN = _flag("HWCACHE_ALIGN")
SLAB_CACHE_DMA = _flag("CACHE_DMA")
SLAB_CACHE_DMA32 = _flag("CACHE_DMA32")
SLAB_STORE_USER = _flag("STORE_USER")
SLAB_PANIC = _flag("PANIC")
SLAB_TYPESAFE_BY_RCU = _flag("TYPESAFE_BY_RCU")
SLAB_TRACE = _flag("TRACE")
SLAB_NOLEAKTRACE = _flag("NOLEAKTRACE")
SLAB_NO_MERGE = _flag("NO_MERGE")
SLAB_ACCOUNT = _flag("ACCOUNT")
SLAB_NO_USER_FLAGS = _flag("NO_USER_FLAGS")
SLAB_RECLAIM_ACCOUNT = _flag("RECLAIM_ACCOUNT")
SLAB_NO_OBJ_EXT = _flag("NO_OBJ_EXT")
__OBJECT_POISON = _flag("OBJECT_POISON")
__CMPXCHG_DOUBLE = _flag("CMPXCHG_DOUBLE")
# SLAB_FAILSLAB, SLAB_KASAN, SLAB_SKIP_KFENCE are __SLAB_FLAG_UNUSED (0) in this config:
# their bits are absent from the enum.
SLAB_FAILSLAB = _flag("FAILSLAB") if "_SLAB_FAILSLAB" in _T.enum("_slab_flag_bits") else 0

# mm/slab.h
SLAB_DEBUG_FLAGS = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_CONSISTENCY_CHECKS
# mm/slab_common.c
SLAB_NEVER_MERGE = (
    SLAB_RED_ZONE
    | SLAB_POISON
    | SLAB_STORE_USER
    | SLAB_TRACE
    | SLAB_TYPESAFE_BY_RCU
    | SLAB_NOLEAKTRACE
    | SLAB_FAILSLAB
    | SLAB_NO_MERGE
)
SLAB_MERGE_SAME = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT
# mm/slub.c
SLAB_NO_CMPXCHG = SLAB_CONSISTENCY_CHECKS | SLAB_STORE_USER | SLAB_TRACE

# -- #defines not in the type data ----------------------------------------------------------
# arch/x86/include/asm/cache.h: L1_CACHE_SHIFT = CONFIG_X86_L1_CACHE_SHIFT = 6; cache_line_size()
# is boot_cpu_data.x86_clflush_size, 64 on the reference ("SLUB: HWalign=64", config.txt).
L1_CACHE_BYTES = 64
CACHE_LINE_SIZE = 64
# include/linux/slab.h: ARCH_KMALLOC_MINALIGN and ARCH_SLAB_MINALIGN default to
# __alignof__(unsigned long long) (x86 defines no ARCH_DMA_MINALIGN).
ARCH_KMALLOC_MINALIGN = 8
ARCH_SLAB_MINALIGN = 8
# include/linux/slab.h: KMALLOC_SHIFT_LOW = ilog2(KMALLOC_MIN_SIZE) with KMALLOC_MIN_SIZE 8;
# KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1 (the length of kmem_buckets, from the type data, - 1).
KMALLOC_MIN_SIZE = 8
KMALLOC_SHIFT_LOW = 3
KMALLOC_SHIFT_HIGH = _T.lookup("kmem_buckets").resolved().nelems - 1
assert KMALLOC_SHIFT_HIGH == PAGE_SHIFT + 1
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
# include/linux/slab.h: ZERO_SIZE_PTR ((void *)16), what kmalloc(0) returns.
ZERO_SIZE_PTR = 16
# include/uapi/linux/limits.h
PATH_MAX = 4096
# ipc/util.h: DATALEN_MSG = PAGE_SIZE - sizeof(struct msg_msg)
DATALEN_MSG = PAGE_SIZE - _T.sizeof("struct msg_msg")
# include/linux/limits.h
INT_MAX = 0x7FFFFFFF
# fpu_kernel_cfg.default_size of the reference CPU (compacted XSAVE area: x87, SSE, AVX,
# AVX-512, PKRU).  A property of the CPU, not of the kernel: it is what makes the reference's
# task_struct cache object_size 5888 (procfs/sys/sys_kernel_slab.tsv) = sizeof(task_struct)
# + sizeof(struct fpu) - sizeof(union fpregs_state) + default_size.
FPU_KERNEL_DEFAULT_SIZE = 2496

# enum kmalloc_cache_type (pinned).  KMALLOC_NO_OBJ_EXT (6.18's stable fix for obj_exts
# recursion) gets caches of its own only when memory allocation profiling is enabled or
# KMALLOC_CGROUP aliases KMALLOC_NORMAL (need_kmalloc_no_objext()); neither holds here, and
# the reference slabinfo has no such caches: its row aliases KMALLOC_NORMAL.
_KT = _T.enum("kmalloc_cache_type")
KMALLOC_NORMAL = _KT["KMALLOC_NORMAL"]
KMALLOC_RECLAIM = _KT["KMALLOC_RECLAIM"]
KMALLOC_DMA = _KT["KMALLOC_DMA"]
KMALLOC_CGROUP = _KT["KMALLOC_CGROUP"]
KMALLOC_NO_OBJ_EXT = _KT["KMALLOC_NO_OBJ_EXT"]
NR_KMALLOC_TYPES = _KT["NR_KMALLOC_TYPES"]
KMALLOC_NOT_NORMAL_BITS = G.FLAGS["__GFP_RECLAIMABLE"] | G.FLAGS["__GFP_DMA"] | G.FLAGS["__GFP_ACCOUNT"]

# mm/slab_common.c kmalloc_size_index[]: the cache index for sizes 1..192, by (size-1)/8.
KMALLOC_SIZE_INDEX = [3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2]

# mm/slab_common.c kmalloc_info[]: (size, short name) per index; index 1 and 2 are 96 and 192.
_SHORT = {0: None, 1: "96", 2: "192"}
for _i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1):
    _sz = 1 << _i
    _SHORT[_i] = f"{_sz >> 10}k" if _sz >= 1024 else str(_sz)
KMALLOC_INFO: list[tuple[int, str | None]] = [(0, None), (96, "96"), (192, "192")] + [
    (1 << i, _SHORT[i]) for i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)
]
_NAME_PREFIX = {
    KMALLOC_NORMAL: "kmalloc-",
    KMALLOC_RECLAIM: "kmalloc-rcl-",
    KMALLOC_DMA: "dma-kmalloc-",
    KMALLOC_CGROUP: "kmalloc-cg-",
}


def kmalloc_info_name(idx: int, type_: int) -> str:
    """kmalloc_info[idx].name[type]."""
    return _NAME_PREFIX[type_] + str(KMALLOC_INFO[idx][1])


# enum slab_state (mm/slab.h)
DOWN, PARTIAL, UP, FULL = range(4)


# -- helpers ---------------------------------------------------------------------------------
def ALIGN(x: int, a: int) -> int:
    return -(-x // a) * a


def ALIGN_DOWN(x: int, a: int) -> int:
    return x // a * a


def fls(x: int) -> int:
    return x.bit_length()


def get_order(size: int) -> int:
    """include/asm-generic/getorder.h get_order()."""
    return max(0, (size - 1) >> PAGE_SHIFT).bit_length()


def alignof(t: Type) -> int:
    """__alignof__ of a type, from its members (BTF carries no explicit __aligned())."""
    r = t.resolved()
    if r.kind in ("int", "enum", "float"):
        return max(1, r.size)
    if r.kind == "ptr":
        return 8
    if r.kind == "array":
        assert r.target is not None
        return alignof(r.target)
    if r.kind in ("struct", "union"):
        return max([alignof(m.type) for m in r.members] or [1])
    return 1


def calculate_alignment(flags: int, align: int, size: int) -> int:
    """mm/slab_common.c calculate_alignment(): HWCACHE_ALIGN halves the cache line while the
    object fits twice in it; never below ARCH_SLAB_MINALIGN; a multiple of the word."""
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    align = max(align, ARCH_SLAB_MINALIGN)
    return ALIGN(align, 8)


def slab_unmergeable(s: KmemCache) -> bool:
    """mm/slab_common.c slab_unmergeable()."""
    if s.flags & SLAB_NEVER_MERGE:
        return True
    if s.ctor:
        return True
    if s.usersize:  # CONFIG_HARDENED_USERCOPY
        return True
    if s.cpu_sheaves:
        return True
    if s.refcount < 0:  # set during bootstrap
        return True
    return False


def find_mergeable(k: Kernel, size: int, align: int, flags: int, name: str, ctor: str | None) -> KmemCache | None:
    """mm/slab_common.c find_mergeable(): the oldest cache (slab_caches walked in reverse)
    whose slots can hold the object with the same MERGE_SAME flags and compatible alignment,
    wasting less than a word."""
    if ctor:
        return None
    if flags & SLAB_NEVER_MERGE:
        return None
    size = ALIGN(size, 8)
    align = calculate_alignment(flags, align, size)
    size = ALIGN(size, align)
    for s in k.slab.caches:  # list_for_each_entry_reverse: creation order
        if slab_unmergeable(s):
            continue
        if size > s.size:
            continue
        if (flags & SLAB_MERGE_SAME) != (s.flags & SLAB_MERGE_SAME):
            continue
        if (s.size & ~(align - 1)) != s.size:
            continue
        if s.size - size >= 8:
            continue
        return s
    return None


def create_unique_id(s: KmemCache) -> str:
    """mm/slub.c create_unique_id(): the /sys/kernel/slab name of a mergeable cache."""
    p = ":"
    if s.flags & SLAB_CACHE_DMA:
        p += "d"
    if s.flags & SLAB_CACHE_DMA32:
        p += "D"
    if s.flags & SLAB_RECLAIM_ACCOUNT:
        p += "a"
    if s.flags & SLAB_CONSISTENCY_CHECKS:
        p += "F"
    if s.flags & SLAB_ACCOUNT:
        p += "A"
    if len(p) > 1:
        p += "-"
    return p + f"{s.size:07d}"


def sysfs_name(s: KmemCache) -> str:
    """The cache's directory in /sys/kernel/slab (sysfs_slab_add): its name when it can never
    be merged, else its unique id (its name is then a symlink)."""
    return s.name if slab_unmergeable(s) else create_unique_id(s)


# -- kmalloc type / index ---------------------------------------------------------------------
def kmalloc_type(flags: int) -> int:
    """include/linux/slab.h kmalloc_type() (CONFIG_RANDOM_KMALLOC_CACHES off)."""
    if not flags & KMALLOC_NOT_NORMAL_BITS:
        return KMALLOC_NORMAL
    if flags & G.FLAGS["__GFP_DMA"]:
        return KMALLOC_DMA
    if flags & G.FLAGS["__GFP_RECLAIMABLE"]:
        return KMALLOC_RECLAIM
    return KMALLOC_CGROUP


def kmalloc_index(size: int) -> int:
    """mm/slab.h kmalloc_slab()'s index: the table up to 192 bytes, then fls(size - 1)."""
    if size <= 192:
        return KMALLOC_SIZE_INDEX[(size - 1) // 8]
    return fls(size - 1)


def __kmalloc_index(size: int) -> int:
    """include/linux/slab.h __kmalloc_index() (size_is_constant = false)."""
    if not size:
        return 0
    if size <= KMALLOC_MIN_SIZE:
        return KMALLOC_SHIFT_LOW
    if KMALLOC_MIN_SIZE <= 32 and 64 < size <= 96:
        return 1
    if KMALLOC_MIN_SIZE <= 64 and 128 < size <= 192:
        return 2
    return fls(size - 1)


# -- cache creation ---------------------------------------------------------------------------
@dataclass
class KmemCacheArgs:
    """struct kmem_cache_args (include/linux/slab.h)."""

    align: int = 0
    useroffset: int = 0
    usersize: int = 0
    freeptr_offset: int = 0
    use_freeptr_offset: bool = False
    ctor: str | None = None  # the constructor's symbol name
    ctor_fn: Callable[[Kernel, int], None] | None = None  # what it does to an object
    sheaf_capacity: int = 0


def kstrdup_const(k: Kernel, name: str, name_addr: int | None) -> int:
    """mm/util.c kstrdup_const(): a string in .rodata is kept, anything else is copied with
    kmalloc (kstrdup)."""
    from mmintro.kernel import slub

    if name_addr is not None:
        return name_addr
    data = name.encode() + b"\0"
    addr = slub.kmalloc(k, len(data), G.GFP_KERNEL, caller="kstrdup")
    if not addr:
        raise MemoryError(f"kstrdup of {name!r} failed")
    k.kmem.write_bytes(addr, data)
    return addr


def __kmem_cache_create_args(
    k: Kernel, name: str, object_size: int, args: KmemCacheArgs, flags: int, name_addr: int | None = None
) -> KmemCache:
    """mm/slab_common.c __kmem_cache_create_args(): an alias of a mergeable cache, or a new
    cache (create_cache).  ``name_addr`` is where the caller's name string lives (None: a
    string in .rodata, as the kernel's literal names are)."""
    from mmintro.kernel import slub

    if args.sheaf_capacity:
        flags |= SLAB_NO_MERGE
    if not name or not 8 <= object_size <= INT_MAX - 64:  # kmem_cache_sanity_check()
        raise ValueError(f"kmem_cache_create: bad cache {name!r} size {object_size}")
    if object_size - args.usersize < args.useroffset or object_size < args.usersize:
        args.usersize = args.useroffset = 0
    s = None
    if not args.usersize and not args.sheaf_capacity:
        s = slub.__kmem_cache_alias(k, name, object_size, args.align, flags, args.ctor)
    if s is not None:
        return s
    if name_addr is None:
        name_addr = k.image.string(name)
        k.kmem.write_bytes(name_addr, name.encode() + b"\0")
    else:
        name_addr = kstrdup_const(k, name, None)
    args.align = calculate_alignment(flags, args.align, object_size)
    return create_cache(k, name, name_addr, object_size, args, flags)


def create_cache(k: Kernel, name: str, name_addr: int, object_size: int, args: KmemCacheArgs, flags: int) -> KmemCache:
    """mm/slab_common.c create_cache(): a zeroed struct kmem_cache from the kmem_cache cache,
    do_kmem_cache_create(), refcount 1, and list_add() at the head of slab_caches."""
    from mmintro.kernel import slub

    if args.use_freeptr_offset and (
        args.freeptr_offset >= object_size or not flags & SLAB_TYPESAFE_BY_RCU or args.freeptr_offset % 8
    ):
        raise ValueError(f"kmem_cache_create({name}): bad freeptr_offset {args.freeptr_offset}")
    sl = k.slab
    addr = slub.kmem_cache_zalloc(k, sl.kmem_cache, G.GFP_KERNEL, caller="__kmem_cache_create_args")
    if not addr:
        raise MemoryError(f"kmem_cache_create({name}): no memory for struct kmem_cache")
    s = slub.do_kmem_cache_create(k, addr, name, name_addr, object_size, args, flags)
    s.refcount = 1
    slub.write_kmem_cache(k, s)
    sl.slab_caches_add(s)
    return s


def kmem_cache_create(
    k: Kernel,
    name: str,
    size: int,
    *,
    align: int = 0,
    flags: int = 0,
    ctor: str | None = None,
    ctor_fn: Callable[[Kernel, int], None] | None = None,
    useroffset: int = 0,
    usersize: int = 0,
    freeptr_offset: int | None = None,
    sheaf_capacity: int = 0,
    name_addr: int | None = None,
) -> KmemCache:
    """kmem_cache_create() / kmem_cache_create_usercopy() of include/linux/slab.h.

    ``ctor`` names the constructor (a function symbol placed in the image) and ``ctor_fn``
    does its work on a new object; ``freeptr_offset`` asks for a free pointer inside the
    object of a SLAB_TYPESAFE_BY_RCU cache; ``sheaf_capacity`` turns on 6.18's per-CPU
    sheaves.  Returns the cache (an existing one when merged)."""
    args = KmemCacheArgs(
        align=align,
        useroffset=useroffset,
        usersize=usersize,
        ctor=ctor,
        ctor_fn=ctor_fn,
        freeptr_offset=freeptr_offset or 0,
        use_freeptr_offset=freeptr_offset is not None,
        sheaf_capacity=sheaf_capacity,
    )
    return __kmem_cache_create_args(k, name, size, args, flags, name_addr)


def KMEM_CACHE(k: Kernel, struct: str, flags: int, **kw) -> KmemCache:
    """include/linux/slab.h KMEM_CACHE(): a cache named after ``struct``, sized and aligned
    like it."""
    t = _T.struct(struct)
    return kmem_cache_create(k, struct, t.size, align=alignof(t), flags=flags, **kw)


def create_boot_cache(
    k: Kernel, s: KmemCache, name: str, size: int, flags: int, useroffset: int, usersize: int
) -> None:
    """mm/slab_common.c create_boot_cache(): kmalloc caches are aligned to the largest power
    of two dividing their size; refcount -1 exempts the cache from merging for now."""
    from mmintro.kernel import slub

    align = ARCH_KMALLOC_MINALIGN
    if flags & SLAB_KMALLOC:
        align = max(align, size & -size)
    args = KmemCacheArgs(align=calculate_alignment(flags, align, size), useroffset=useroffset, usersize=usersize)
    name_addr = k.image.string(name)
    k.kmem.write_bytes(name_addr, name.encode() + b"\0")
    slub.do_kmem_cache_create(k, s.addr, name, name_addr, size, args, flags, into=s)
    s.refcount = -1


def create_kmalloc_cache(k: Kernel, name: str, size: int, flags: int) -> KmemCache:
    """mm/slab_common.c create_kmalloc_cache()."""
    from mmintro.kernel import slub

    sl = k.slab
    addr = slub.kmem_cache_zalloc(k, sl.kmem_cache, G.GFP_NOWAIT, caller="create_kmalloc_cache")
    if not addr:
        raise MemoryError(f"Out of memory when creating slab {name}")
    s = slub.KmemCache(addr)
    create_boot_cache(k, s, name, size, flags | SLAB_KMALLOC, 0, size)
    s.refcount = 1
    slub.write_kmem_cache(k, s)
    sl.slab_caches_add(s)
    return s


def new_kmalloc_cache(k: Kernel, idx: int, type_: int) -> None:
    """mm/slab_common.c new_kmalloc_cache() (CONFIG_MEMCG=y, ZONE_DMA=y; __kmalloc_minalign()
    is ARCH_KMALLOC_MINALIGN, so no index is folded into a larger one)."""
    table = k.slab.kmalloc_caches
    flags = 0
    if type_ == KMALLOC_RECLAIM:
        flags |= SLAB_RECLAIM_ACCOUNT
    elif type_ == KMALLOC_CGROUP:
        flags |= SLAB_ACCOUNT  # mem_cgroup_kmem_disabled() is false
    elif type_ == KMALLOC_DMA:
        flags |= SLAB_CACHE_DMA
    elif type_ == KMALLOC_NO_OBJ_EXT:
        table[type_][idx] = table[KMALLOC_NORMAL][idx]  # need_kmalloc_no_objext() is false
        return
    if type_ == KMALLOC_NORMAL:
        flags |= SLAB_NO_MERGE  # CONFIG_MEMCG: normal kmalloc caches never merge
    if table[type_][idx] is None:
        table[type_][idx] = create_kmalloc_cache(k, kmalloc_info_name(idx, type_), KMALLOC_INFO[idx][0], flags)


def create_kmalloc_caches(k: Kernel) -> None:
    """mm/slab_common.c create_kmalloc_caches(): per type, the 96 and 192 byte caches, then
    the powers of two 8 .. 8k; then slab_state = UP and the kmalloc_buckets cache."""
    from mmintro.kernel import slub

    for type_ in range(NR_KMALLOC_TYPES):
        new_kmalloc_cache(k, 1, type_)
        new_kmalloc_cache(k, 2, type_)
        for i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1):
            if k.slab.kmalloc_caches[type_][i] is None:
                new_kmalloc_cache(k, i, type_)
    k.slab.state = UP
    k.slab.kmem_buckets_cache = kmem_cache_create(k, "kmalloc_buckets", _T.sizeof("kmem_buckets"), flags=SLAB_NO_MERGE)
    slub.write_kmalloc_caches(k)


def kmem_buckets_create(k: Kernel, name: str, flags: int, useroffset: int, usersize: int) -> int:
    """mm/slab_common.c kmem_buckets_create(): a kmem_buckets array (from kmalloc_buckets)
    of SLAB_NO_MERGE caches "<name>-<size>" shadowing the normal kmalloc caches.  Returns
    the array's address."""
    from mmintro.kernel import slub

    sl = k.slab
    b = slub.kmem_cache_alloc(k, sl.kmem_buckets_cache, G.GFP_KERNEL | G.__GFP_ZERO, caller="kmem_buckets_create")
    if not b:
        raise MemoryError("kmem_buckets_create")
    flags |= SLAB_NO_MERGE
    caches: list[KmemCache | None] = [None] * (KMALLOC_SHIFT_HIGH + 1)
    for idx in range(KMALLOC_SHIFT_HIGH + 1):
        base = sl.kmalloc_caches[KMALLOC_NORMAL][idx]
        if base is None or not base.object_size:
            continue
        size = base.object_size
        short = base.name[base.name.index("-") + 1 :]
        if useroffset >= size:
            cuo, cus = 0, 0
        else:
            cuo, cus = useroffset, min(size - useroffset, usersize)
        aligned_idx = __kmalloc_index(size)
        if caches[aligned_idx] is None:
            cache_name = f"{name}-{short}"
            tmp = slub.kmalloc(k, len(cache_name) + 1, G.GFP_KERNEL, caller="kvasprintf")  # kasprintf
            k.kmem.write_bytes(tmp, cache_name.encode() + b"\0")
            caches[aligned_idx] = kmem_cache_create(
                k, cache_name, size, flags=flags, useroffset=cuo, usersize=cus, name_addr=tmp
            )
            slub.kfree(k, tmp)
        if idx != aligned_idx:
            caches[idx] = caches[aligned_idx]
    for idx, c in enumerate(caches):
        k.kmem.write_u64(b + 8 * idx, c.addr if c is not None else 0)
    sl.buckets[b] = caches
    return b


# -- the caches start_kernel's init calls create ------------------------------------------------
def _set_list_head(k: Kernel, obj: int, struct: str, path: str) -> None:
    k.kmem.init_list_head(obj + _T.struct(struct).offsetof(path))


def radix_tree_node_ctor(k: Kernel, obj: int) -> None:
    """lib/radix-tree.c radix_tree_node_ctor(): zero the node, INIT_LIST_HEAD(private_list)."""
    k.mem.fill(k.pa(obj), _T.sizeof("struct xa_node"), 0)
    _set_list_head(k, obj, "xa_node", "private_list")


def anon_vma_ctor(k: Kernel, obj: int) -> None:
    """mm/rmap.c anon_vma_ctor(): init_rwsem(&anon_vma->rwsem), refcount 0, empty rb_root."""
    _set_list_head(k, obj, "anon_vma", "rwsem.wait_list")
    k.kmem.set(obj, "anon_vma", "refcount.counter", 0)
    k.kmem.set(obj, "anon_vma", "rb_root.rb_root.rb_node", 0)
    k.kmem.set(obj, "anon_vma", "rb_root.rb_leftmost", 0)


def sighand_ctor(k: Kernel, obj: int) -> None:
    """kernel/fork.c sighand_ctor(): spin_lock_init(siglock), init_waitqueue_head(signalfd_wqh)."""
    k.kmem.set(obj, "sighand_struct", "siglock.rlock.raw_lock.val.counter", 0)
    _set_list_head(k, obj, "sighand_struct", "signalfd_wqh.head")


def inode_init_once(k: Kernel, obj: int) -> None:
    """fs/inode.c init_once() -> inode_init_once(): a zeroed inode with its lists empty and
    its i_data address_space initialised (__address_space_init_once)."""
    t = _T.struct("inode")
    k.mem.fill(k.pa(obj), t.size, 0)
    for path in (
        "i_devices",
        "i_io_list",
        "i_wb_list",
        "i_lru",
        "i_sb_list",
        "i_data.i_private_list",
        "i_data.i_mmap_rwsem.wait_list",
    ):
        if _has_path(t, path):
            _set_list_head(k, obj, "inode", path)
    # xa_init_flags(&mapping->i_pages, XA_FLAGS_LOCK_IRQ | XA_FLAGS_ACCOUNT)
    k.kmem.set(obj, "inode", "i_data.i_pages.xa_flags", XA_FLAGS_LOCK_IRQ | XA_FLAGS_ACCOUNT)


def shmem_init_inode(k: Kernel, obj: int) -> None:
    """mm/shmem.c shmem_init_inode(): inode_init_once(&info->vfs_inode) of a
    shmem_inode_info (the bytes before vfs_inode are set by __shmem_get_inode)."""
    k.mem.fill(k.pa(obj), _T.offsetof("shmem_inode_info", "vfs_inode"), 0)
    inode_init_once(k, obj + _T.offsetof("shmem_inode_info", "vfs_inode"))


def shmem_init(k: Kernel) -> KmemCache:
    """mm/shmem.c shmem_init(): shmem_init_inodecache() -- kmem_cache_create
    ("shmem_inode_cache", sizeof(struct shmem_inode_info), 0, SLAB_PANIC | SLAB_ACCOUNT,
    shmem_init_inode) -- then register_filesystem and shm_mnt = kern_mount(&shmem_fs_type)
    (:func:`mmintro.kernel.shmem.shm_mount`)."""
    from mmintro.kernel import shmem

    s = kmem_cache_create(
        k,
        "shmem_inode_cache",
        _T.sizeof("struct shmem_inode_info"),
        flags=SLAB_PANIC | SLAB_ACCOUNT,
        **_ctor("shmem_init_inode"),
    )
    shmem.shm_mount(k)
    return s


# include/linux/xarray.h
XA_FLAGS_LOCK_IRQ = 1
XA_FLAGS_ACCOUNT = 1 << 5


def _has_path(t: Type, path: str) -> bool:
    try:
        t.walk(path)
        return True
    except LookupError:
        return False


# Constructor symbols and sizes as the reference reports them (sys_kernel_slab.tsv "ctor").
CTORS: dict[str, tuple[int, Callable[[Kernel, int], None]]] = {
    "radix_tree_node_ctor": (0x50, radix_tree_node_ctor),
    "anon_vma_ctor": (0x50, anon_vma_ctor),
    "sighand_ctor": (0x30, sighand_ctor),
    "init_once": (0x10, inode_init_once),
    "shmem_init_inode": (0x10, shmem_init_inode),
    "init_once@block/bdev.c": (0x20, lambda k, obj: inode_init_once(k, obj + _T.offsetof("bdev_inode", "vfs_inode"))),
}


def _ctor(name: str) -> dict:
    return {"ctor": name, "ctor_fn": CTORS[name][1]}


def arch_task_struct_size() -> int:
    """arch/x86/kernel/fpu/init.c fpu__init_task_struct_size(): the FPU state follows the
    task_struct, sized for the CPU's XSAVE features."""
    return (
        _T.sizeof("struct task_struct")
        + _T.sizeof("struct fpu")
        - _T.sizeof("union fpregs_state")
        + FPU_KERNEL_DEFAULT_SIZE
    )


def cpumask_size() -> int:
    """include/linux/cpumask.h cpumask_size(): BITS_TO_LONGS(NR_CPUS) longs (no OFFSTACK)."""
    return -(-kc.NR_CPUS // 64) * 8


# (global variable, kernel function that creates it, creator) in the order of the reference
# 6.18 boot (procfs/slabinfo lists caches newest first).  vmap_area belongs to vmalloc_init()
# (mmintro.kernel.vmalloc), which the boot runs after kmem_cache_init().
INIT_CACHES: list[tuple[str, str, Callable[[Kernel], KmemCache]]] = [
    (
        "mm_cachep",
        "mm_cache_init",
        lambda k: kmem_cache_create(
            k,
            "mm_struct",
            _T.sizeof("struct mm_struct") + 3 * cpumask_size(),  # + mm_cid_size() = 2 masks
            flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT,
            useroffset=_T.offsetof("mm_struct", "saved_auxv"),
            usersize=_T.struct("mm_struct").walk("saved_auxv")[2].size,
        ),
    ),
    (
        "maple_node_cache",
        "maple_tree_init",
        lambda k: kmem_cache_create(
            k,
            "maple_node",
            _T.sizeof("struct maple_node"),
            align=_T.sizeof("struct maple_node"),
            flags=SLAB_PANIC,
            sheaf_capacity=32,
        ),
    ),
    (
        "radix_tree_node_cachep",
        "radix_tree_init",
        lambda k: kmem_cache_create(
            k,
            "radix_tree_node",
            _T.sizeof("struct xa_node"),
            flags=SLAB_PANIC | SLAB_RECLAIM_ACCOUNT,
            **_ctor("radix_tree_node_ctor"),
        ),
    ),
    # mm/mempolicy.c numa_policy_init(): kmem_cache_create(name, size, 0, SLAB_PANIC, NULL)
    (
        "policy_cache",
        "numa_policy_init",
        lambda k: kmem_cache_create(k, "numa_policy", _T.sizeof("struct mempolicy"), flags=SLAB_PANIC),
    ),
    (
        "sn_cache",
        "numa_policy_init",
        lambda k: kmem_cache_create(k, "shared_policy_node", _T.sizeof("struct sp_node"), flags=SLAB_PANIC),
    ),
    (
        "pid_cachep",
        "pid_idr_init",
        lambda k: kmem_cache_create(
            k,
            "pid",
            _T.sizeof("struct pid") + _T.sizeof("struct upid"),
            align=alignof(_T.struct("pid")),
            flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT,
        ),
    ),
    (
        "anon_vma_cachep",
        "anon_vma_init",
        lambda k: kmem_cache_create(
            k,
            "anon_vma",
            _T.sizeof("struct anon_vma"),
            flags=SLAB_TYPESAFE_BY_RCU | SLAB_PANIC | SLAB_ACCOUNT,
            **_ctor("anon_vma_ctor"),
        ),
    ),
    ("anon_vma_chain_cachep", "anon_vma_init", lambda k: KMEM_CACHE(k, "anon_vma_chain", SLAB_PANIC | SLAB_ACCOUNT)),
    # kernel/cred.c cred_init(), just before fork_init()
    ("cred_jar", "cred_init", lambda k: KMEM_CACHE(k, "cred", SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT)),
    (
        "task_struct_cachep",
        "fork_init",
        lambda k: kmem_cache_create(
            k,
            "task_struct",
            arch_task_struct_size(),
            align=max(L1_CACHE_BYTES, 64),
            flags=SLAB_PANIC | SLAB_ACCOUNT,
            # task_struct_whitelist(): the XSAVE registers behind the task_struct are user-copyable
            useroffset=_T.sizeof("struct task_struct") + _T.offsetof("fpu", "__fpstate.regs"),
            usersize=FPU_KERNEL_DEFAULT_SIZE,
        ),
    ),
    (
        "sighand_cachep",
        "proc_caches_init",
        lambda k: kmem_cache_create(
            k,
            "sighand_cache",
            _T.sizeof("struct sighand_struct"),
            flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_TYPESAFE_BY_RCU | SLAB_ACCOUNT,
            **_ctor("sighand_ctor"),
        ),
    ),
    (
        "signal_cachep",
        "proc_caches_init",
        lambda k: kmem_cache_create(
            k, "signal_cache", _T.sizeof("struct signal_struct"), flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT
        ),
    ),
    (
        "files_cachep",
        "proc_caches_init",
        lambda k: kmem_cache_create(
            k, "files_cache", _T.sizeof("struct files_struct"), flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT
        ),
    ),
    (
        "fs_cachep",
        "proc_caches_init",
        lambda k: kmem_cache_create(
            k, "fs_cache", _T.sizeof("struct fs_struct"), flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT
        ),
    ),
    (
        "vm_area_cachep",
        "vma_state_init",
        lambda k: kmem_cache_create(
            k,
            "vm_area_struct",
            _T.sizeof("struct vm_area_struct"),
            flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_TYPESAFE_BY_RCU | SLAB_ACCOUNT,
            freeptr_offset=_T.offsetof("vm_area_struct", "vm_freeptr"),
            sheaf_capacity=32,
        ),
    ),
    (
        "names_cachep",
        "vfs_caches_init",
        lambda k: kmem_cache_create(
            k, "names_cache", PATH_MAX, flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC, useroffset=0, usersize=PATH_MAX
        ),
    ),
    (
        "dentry_cache",
        "dcache_init",
        lambda k: KMEM_CACHE(
            k,
            "dentry",
            SLAB_RECLAIM_ACCOUNT | SLAB_PANIC | SLAB_ACCOUNT,
            useroffset=_T.offsetof("dentry", "d_shortname.string"),
            usersize=_T.struct("dentry").walk("d_shortname.string")[2].size,
        ),
    ),
    (
        "inode_cachep",
        "inode_init",
        lambda k: kmem_cache_create(
            k,
            "inode_cache",
            _T.sizeof("struct inode"),
            flags=SLAB_RECLAIM_ACCOUNT | SLAB_PANIC | SLAB_ACCOUNT,
            **_ctor("init_once"),
        ),
    ),
    (
        "filp_cachep",
        "files_init",
        lambda k: kmem_cache_create(
            k,
            "filp",
            _T.sizeof("struct file"),
            flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT | SLAB_TYPESAFE_BY_RCU,
            freeptr_offset=_T.offsetof("file", "f_freeptr"),
        ),
    ),
    (
        "bfilp_cachep",
        "files_init",
        lambda k: kmem_cache_create(
            k,
            "bfilp",
            _T.sizeof("struct backing_file"),
            flags=SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT | SLAB_TYPESAFE_BY_RCU,
            freeptr_offset=_T.offsetof("backing_file", "bf_freeptr"),
        ),
    ),
    # mnt_init() -> shmem_init() -> shmem_init_inodecache() (after kernfs_init, before
    # bdev_cache_init: the reference slabinfo has it between kernfs_node_cache and bdev_cache)
    ("shmem_inode_cachep", "shmem_init", lambda k: shmem_init(k)),
    # vfs_caches_init() -> bdev_cache_init(): struct bdev_inode (a block_device and its inode),
    # constructed by bdev.c's init_once() (inode_init_once() of the inode)
    (
        "bdev_cachep",
        "bdev_cache_init",
        lambda k: kmem_cache_create(
            k,
            "bdev_cache",
            _T.sizeof("struct bdev_inode"),
            flags=SLAB_HWCACHE_ALIGN | SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT | SLAB_PANIC,
            **_ctor("init_once@block/bdev.c"),
        ),
    ),
    ("bh_cachep", "buffer_init", lambda k: KMEM_CACHE(k, "buffer_head", SLAB_RECLAIM_ACCOUNT | SLAB_PANIC)),
]


def create_init_caches(k: Kernel) -> None:
    """The named caches of start_kernel's later init calls (the table above), then the
    kmalloc buckets of memdup_user_init() and msg_init(), each stored in its global."""
    for var, _fn, create in INIT_CACHES:
        s = create(k)
        k.slab.cachep[var] = s
        k.kmem.write_u64(k.image.var(var, "data"), s.addr)
    ub = kmem_buckets_create(k, "memdup_user", 0, 0, INT_MAX)
    k.kmem.write_u64(k.image.var("user_buckets", "data"), ub)
    mb = kmem_buckets_create(k, "msg_msg", SLAB_ACCOUNT, _T.sizeof("struct msg_msg"), DATALEN_MSG)
    k.kmem.write_u64(k.image.var("msg_buckets", "data"), mb)
