"""User address spaces: VMAs (mm/mmap.c, mm/vma.c, mm/util.c, arch/x86/mm/mmap.c, fs/exec.c).

A ``struct vm_area_struct`` comes from the ``vm_area_struct`` slab cache (``vm_area_alloc``)
with ``vm_start``/``vm_end``/``vm_mm``/``vm_flags``/``vm_page_prot``/``vm_pgoff`` and an empty
``anon_vma_chain``, and is stored in ``mm->mm_mt`` over ``[vm_start, vm_end - 1]``
(``vma_iter_store``) through the 6.18 maple-tree write path (:mod:`mmintro.kernel.maple_tree`,
nodes from the ``maple_node`` cache).

What this slice models:

* ``vm_get_page_prot`` (arch/x86/mm/pgprot.c): ``protection_map[vm_flags & (READ|WRITE|EXEC|SHARED)]``;
* ``do_mmap`` of anonymous private memory: ``get_unmapped_area`` ->
  ``vm_unmapped_area`` top-down (``unmapped_area_topdown``: the highest gap below
  ``mm->mmap_base`` that also leaves ``stack_guard_gap`` below a VM_GROWSDOWN neighbour, as
  ``vm_start_gap`` does), ``pgoff = addr >> PAGE_SHIFT`` (MAP_PRIVATE), MAP_FIXED replacing
  what was there, then ``__mmap_region`` with :func:`mmintro.kernel.vma.vma_merge_new_range`
  (6.18's merge rules, anon_vma compatibility included) and vm_committed_as charged for
  VM_ACCOUNT;
* :func:`do_munmap` (``do_vmi_munmap`` -> ``do_vmi_align_munmap`` in :mod:`mmintro.kernel.vma`);
* ``sys_brk`` / ``do_brk_flags`` (the heap: grows through vma_merge_new_range in just_expand
  mode or a new VMA, shrinks through do_vmi_align_munmap);
* an exec'd layout (:func:`setup_new_exec_layout`): arch_pick_mmap_layout's ``mmap_base``,
  the program's segments at ``0x400000`` mapped from ``/usr/bin/<comm>`` (FILE's page cache
  and i_mmap), bss, a randomised brk, the stack (``setup_arg_pages``: VM_STACK_FLAGS,
  randomised top), the interpreter and libc (relro split off read-only by mprotect), and
  vvar/vvar_vclock/vdso special mappings (``map_vdso`` -> ``_install_special_mapping``:
  ``special_mapping_vmops`` and the ``vm_special_mapping`` objects, so drgn names them).

mprotect is :mod:`mmintro.kernel.mprotect`, fork's dup_mmap :mod:`mmintro.kernel.fork`, exit's
exit_mmap :mod:`mmintro.kernel.exit`; page tables, faults and rmap are MEM's memory.py/rmap.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmintro.arch.x86 import (
    _PAGE_ACCESSED,
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_USER,
    PAGE_SIZE,
)
from mmintro.kernel import slub
from mmintro.kernel.maple_tree import MapleTree

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "VM_ACCOUNT",
    "VM_DATA_DEFAULT_FLAGS",
    "VM_DONTDUMP",
    "VM_DONTEXPAND",
    "VM_EXEC",
    "VM_GROWSDOWN",
    "VM_IO",
    "VM_MAYEXEC",
    "VM_MAYREAD",
    "VM_MAYSHARE",
    "VM_MAYWRITE",
    "VM_PFNMAP",
    "VM_READ",
    "VM_SHARED",
    "VM_SPECIAL",
    "VM_STACK_FLAGS",
    "VM_WRITE",
    "ExecLayout",
    "do_brk_flags",
    "do_mmap",
    "do_munmap",
    "find_vma",
    "madvise_dontneed",
    "mm_tree",
    "protection_map",
    "setup_new_exec_layout",
    "unmapped_area_topdown",
    "vm_area_alloc",
    "vm_get_page_prot",
    "vma_store",
]

PAGE_SHIFT = 12

# include/linux/mm.h (#defines; not in the type data)
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_PFNMAP = 0x00000400
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_DONTEXPAND = 0x00040000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_DONTDUMP = 0x04000000
VM_MIXEDMAP = 0x10000000
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
# arch/x86/include/asm/page_types.h: VM_DATA_DEFAULT_FLAGS = VM_DATA_FLAGS_TSK_EXEC, which for a
# task without READ_IMPLIES_EXEC is VM_DATA_FLAGS_NON_EXEC (include/linux/mm.h).
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_DEFAULT_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_STACK = VM_GROWSDOWN
VM_STACK_FLAGS = VM_STACK | VM_STACK_DEFAULT_FLAGS | VM_ACCOUNT  # include/linux/mm.h
VM_STACK_INCOMPLETE_SETUP = 0  # cleared by setup_arg_pages(); nothing to clear here

# arch/x86/include/asm/pgtable_types.h: the PAGE_* protections (__PP, __RW, _USR, ___A, __NX, ___G)
PAGE_NONE = _PAGE_ACCESSED | _PAGE_GLOBAL
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX  # PAGE_COPY_NOEXEC
PAGE_COPY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_READONLY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED

# arch/x86/mm/pgprot.c protection_map[16], indexed by VM_READ|VM_WRITE|VM_EXEC|VM_SHARED
protection_map = (
    PAGE_NONE,
    PAGE_READONLY,
    PAGE_COPY,
    PAGE_COPY,
    PAGE_READONLY_EXEC,
    PAGE_READONLY_EXEC,
    PAGE_COPY_EXEC,
    PAGE_COPY_EXEC,
    PAGE_NONE,
    PAGE_READONLY,
    PAGE_SHARED,
    PAGE_SHARED,
    PAGE_READONLY_EXEC,
    PAGE_READONLY_EXEC,
    PAGE_SHARED_EXEC,
    PAGE_SHARED_EXEC,
)

# arch/x86/include/asm/page_64_types.h / processor.h (4-level paging)
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE
STACK_RND_MASK = 0x3FFFFF  # 64-bit tasks
STACK_GUARD_GAP = 256 << PAGE_SHIFT  # mm/mmap.c stack_guard_gap default
MMAP_RND_BITS = 28  # CONFIG_ARCH_MMAP_RND_BITS default on x86-64
SIZE_128M = 128 << 20
# include/linux/mm_types.h MMF_* bits of mm->flags, include/linux/sched/coredump.h
MMF_DUMPABLE_BITS = 2
MMF_DUMP_FILTER_SHIFT = MMF_DUMPABLE_BITS
MMF_DUMP_FILTER_DEFAULT = 0x33  # ANON_PRIVATE|ANON_SHARED|ELF_HEADERS|HUGETLB_PRIVATE (CORE_DUMP_DEFAULT_ELF_HEADERS)
SUID_DUMP_USER = 1
MMF_TOPDOWN = 31
# MMF_INIT_LEGACY_MASK: DUMPABLE | DUMP_FILTER | DISABLE_THP (24) | HAS_MDWE (28) | VM_MERGE_ANY (30) | TOPDOWN
MMF_INIT_LEGACY_MASK = 0x3 | (0x1FF << 2) | (1 << 24) | (1 << 28) | (1 << 30) | (1 << 31)
RLIMIT_STACK_CUR = 8 << 20  # _STK_LIM


def vm_get_page_prot(vm_flags: int) -> int:
    """arch/x86/mm/pgprot.c (no protection keys on this CPU)."""
    return protection_map[vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]


def _node_alloc(k: Kernel) -> int:
    s = slub.find_cache(k, "maple_node")
    a = slub.kmem_cache_alloc(k, s, "GFP_KERNEL", caller="mas_alloc_nodes")
    k.kmem.write_bytes(a, bytes(256))
    return a


def _node_free(k: Kernel, addr: int) -> None:
    slub.kmem_cache_free(k, slub.find_cache(k, "maple_node"), addr)


def mm_tree(k: Kernel, mm: int) -> MapleTree:
    """The maple-tree model of ``mm->mm_mt`` (created empty, MM_MT_FLAGS, on first use)."""
    trees = k.__dict__.setdefault("mm_trees", {})
    if mm not in trees:
        addr = k.kmem.addr(mm, "mm_struct", "mm_mt")
        trees[mm] = MapleTree(k, addr, lambda: _node_alloc(k), lambda a: _node_free(k, a))
        k.kmem.set(mm, "mm_struct", "mm_mt.ma_flags", trees[mm].ma_flags)
    return trees[mm]


def vm_area_alloc(k: Kernel, mm: int) -> int:
    """mm/vma_init.c vm_area_alloc(): an object from vm_area_cachep, vma_init() (vm_mm, an empty
    anon_vma_chain)."""
    vma = slub.kmem_cache_alloc(k, slub.find_cache(k, "vm_area_struct"), "GFP_KERNEL", caller="vm_area_alloc")
    km = k.kmem
    km.write_bytes(vma, bytes(k.T.sizeof("struct vm_area_struct")))
    km.set(vma, "vm_area_struct", "vm_mm", mm)
    km.init_list_head(km.addr(vma, "vm_area_struct", "anon_vma_chain"))
    km.set(vma, "vm_area_struct", "vm_lock_seq", 0xFFFFFFFF)  # vma_lock_init(): UINT_MAX, unlocked
    return vma


def _vma_range(k: Kernel, vma: int) -> tuple[int, int]:
    return k.kmem.get(vma, "vm_area_struct", "vm_start"), k.kmem.get(vma, "vm_area_struct", "vm_end")


def _mm_add(k: Kernel, mm: int, field: str, delta: int) -> None:
    k.kmem.set(mm, "mm_struct", field, k.kmem.get(mm, "mm_struct", field) + delta)


def vm_stat_account(k: Kernel, mm: int, flags: int, npages: int) -> None:
    """mm/mmap.c vm_stat_account() with is_exec_mapping/is_stack_mapping/is_data_mapping."""
    _mm_add(k, mm, "total_vm", npages)
    if flags & (VM_EXEC | VM_WRITE | VM_STACK) == VM_EXEC:
        _mm_add(k, mm, "exec_vm", npages)
    elif flags & VM_STACK:
        _mm_add(k, mm, "stack_vm", npages)
    elif flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE:
        _mm_add(k, mm, "data_vm", npages)


def vma_store(k: Kernel, mm: int, start: int, end: int, flags: int, pgoff: int | None = None, file: int = 0) -> int:
    """A new VMA over [start, end) in ``mm`` (vm_area_alloc + vma_iter_store_new + vma_link's
    map_count), accounted with vm_stat_account and, for VM_ACCOUNT, vm_acct_memory (what
    security_vm_enough_memory_mm charged).  ``pgoff`` defaults to the anonymous
    ``start >> PAGE_SHIFT``; ``file`` becomes vm_file (the caller holds the reference)."""
    from mmintro.kernel import vma as V

    km = k.kmem
    vma = vm_area_alloc(k, mm)
    km.set(vma, "vm_area_struct", "vm_start", start)
    km.set(vma, "vm_area_struct", "vm_end", end)
    km.set(vma, "vm_area_struct", "vm_flags", flags)
    km.set(vma, "vm_area_struct", "vm_page_prot", vm_get_page_prot(flags))
    km.set(vma, "vm_area_struct", "vm_pgoff", start >> PAGE_SHIFT if pgoff is None else pgoff)
    if file:
        km.set(vma, "vm_area_struct", "vm_file", file)
    t = mm_tree(k, mm)
    t.mtree_store_range(start, end - 1, vma)
    V.vma_mark_attached(k, vma)
    _mm_add(k, mm, "map_count", 1)
    vm_stat_account(k, mm, flags, (end - start) >> PAGE_SHIFT)
    if flags & VM_ACCOUNT:
        V.vm_acct_memory(k, (end - start) >> PAGE_SHIFT)
    return vma


def find_vma(k: Kernel, mm: int, addr: int) -> int:
    """The VMA containing addr, else 0 (vma_lookup)."""
    return mm_tree(k, mm).mtree_load(addr) or 0


def _vma_at_or_after(k: Kernel, mm: int, addr: int) -> int:
    for _f, _l, e in mm_tree(k, mm).mt_for_each(addr):
        return e
    return 0


def _vm_start_gap(k: Kernel, vma: int) -> int:
    start = k.kmem.get(vma, "vm_area_struct", "vm_start")
    if k.kmem.get(vma, "vm_area_struct", "vm_flags") & VM_GROWSDOWN:
        start = max(start - STACK_GUARD_GAP, 0)
    return start


def unmapped_area_topdown(k: Kernel, mm: int, length: int, low_limit: int, high_limit: int) -> int:
    """mm/vma.c unmapped_area_topdown() (align_mask 0): the highest gap of ``length`` in
    [low_limit, high_limit) whose next VMA's vm_start_gap leaves room; -ENOMEM as 0."""
    t = mm_tree(k, mm)
    high = high_limit
    while high - low_limit >= length:
        gap = t.mas_empty_area_rev(low_limit, high - 1, length)  # the highest fitting start
        if gap is None:
            return 0
        nxt = _vma_at_or_after(k, mm, gap + length)
        if nxt and _vm_start_gap(k, nxt) < gap + length:
            high = _vm_start_gap(k, nxt)  # the neighbour's guard gap: retry below it
            continue
        return gap
    return 0


def _merge_new(
    k: Kernel,
    mm: int,
    start: int,
    end: int,
    flags: int,
    pgoff: int,
    file: int = 0,
    just_expand: bool = False,
    prev: int | None = None,
) -> int:
    """vma_merge_new_range() for a new range [start, end) (VMG_MMAP_STATE / VMG_STATE: no
    anon_vma, no policy), with prev/next the VMAs around the gap; the merged VMA or 0."""
    from mmintro.kernel import vma as V

    if prev is None:
        prev = find_vma(k, mm, start - 1) if start else 0
    nxt = 0 if just_expand else _vma_at_or_after(k, mm, end)
    vmg = V.VmaMergeStruct(
        mm=mm, start=start, end=end, pgoff=pgoff, flags=flags, prev=prev, next=nxt, file=file, just_expand=just_expand
    )
    return V.vma_merge_new_range(k, vmg)


def do_mmap(k: Kernel, mm: int, length: int, prot_flags: int, addr: int = 0) -> int:
    """An anonymous MAP_PRIVATE mmap: ``prot_flags`` are the VM_READ/WRITE/EXEC bits; the VMA
    gets them plus VM_MAYREAD|VM_MAYWRITE|VM_MAYEXEC (calc_vm_prot_bits + mm->def_flags) and
    VM_ACCOUNT for writable private memory (accountable_mapping).  ``addr`` 0 lets
    get_unmapped_area choose top-down below mmap_base; a given ``addr`` is MAP_FIXED (what is
    mapped there is unmapped first).  __mmap_region: vma_merge_new_range with the neighbours,
    else a new VMA; __mmap_complete: vm_stat_account.  Returns the address (0 = -ENOMEM)."""
    from mmintro.kernel import vma as V

    km = k.kmem
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    flags = prot_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if flags & VM_WRITE:
        flags |= VM_ACCOUNT
    if not addr:
        # __get_unmapped_area(): THP is built in, so an anonymous mapping with no hint whose
        # length is a multiple of PMD_SIZE is placed PMD-aligned (thp_get_unmapped_area_vmflags);
        # when the padded search fails, the plain one
        from mmintro.kernel import huge_memory

        if length % huge_memory.HPAGE_PMD_SIZE == 0:
            addr = huge_memory.thp_get_unmapped_area(k, mm, length)
        if not addr:
            addr = unmapped_area_topdown(k, mm, length, PAGE_SIZE, km.get(mm, "mm_struct", "mmap_base"))
        if not addr:
            return 0
    elif V.vma_find(k, mm, addr, addr + length) and do_munmap(k, mm, addr, length):
        return 0  # MAP_FIXED: vms_gather_munmap_vmas failed (a hugetlb VMA cut off its page size)
    end = addr + length
    pgoff = addr >> PAGE_SHIFT
    if _merge_new(k, mm, addr, end, flags, pgoff):
        vm_stat_account(k, mm, flags, length >> PAGE_SHIFT)
        if flags & VM_ACCOUNT:
            V.vm_acct_memory(k, length >> PAGE_SHIFT)
        return addr
    vma_store(k, mm, addr, end, flags, pgoff)
    return addr


def do_munmap(k: Kernel, mm: int, start: int, length: int) -> int:
    """mm/vma.c do_vmi_munmap(): -EINVAL (-22) for an unaligned or empty range, 0 when nothing
    is mapped there, else do_vmi_align_munmap from the first overlapping VMA."""
    from mmintro.kernel import vma as V

    if start & (PAGE_SIZE - 1) or start > TASK_SIZE_MAX or length > TASK_SIZE_MAX - start:
        return -22
    end = start + (-(-length // PAGE_SIZE) * PAGE_SIZE)
    if end == start:
        return -22
    vma = V.vma_find(k, mm, start, end)
    if not vma:
        return 0
    return V.do_vmi_align_munmap(k, mm, vma, start, end)


def madvise_dontneed(k: Kernel, mm: int, start: int, length: int) -> int:
    """mm/madvise.c madvise(start, length, MADV_DONTNEED): madvise_walk_vmas over the range
    (-ENOMEM (-12) if part of it is unmapped, after doing the mapped parts), each VMA checked by
    madvise_dontneed_free_valid_vma (VM_LOCKED, VM_PFNMAP and hugetlb VMAs: -EINVAL, -22) and
    zapped with zap_page_range_single_batched: update_hiwater_rss, then the PTEs of the range
    cleared through MEM's zap_page_range (anonymous pages freed, file pages dropped from the
    mapping; the next touch faults).  Page tables stay."""
    from mmintro.kernel import vma as V

    if start & (PAGE_SIZE - 1):
        return -22
    end = start + (-(-length // PAGE_SIZE) * PAGE_SIZE)
    zap = V._opt("memory", "zap_page_range")
    unmapped = False
    addr = start
    while addr < end:
        vma = V.vma_find(k, mm, addr, end)
        if not vma:
            return -12
        vs, ve = _vma_range(k, vma)
        if vs > addr:
            unmapped = True
        flags = k.kmem.get(vma, "vm_area_struct", "vm_flags")
        if flags & (VM_LOCKED | VM_PFNMAP | V.VM_HUGETLB):
            return -22
        s, e = max(addr, vs), min(end, ve)
        V.update_hiwater_rss(k, mm)
        if zap is not None:
            zap(k, vma, s, e)
        addr = e
    return -12 if unmapped else 0


def do_brk_flags(k: Kernel, mm: int, newbrk: int) -> int:
    """sys_brk() to ``newbrk``: shrinking unmaps [PAGE_ALIGN(newbrk), PAGE_ALIGN(brk)) with
    do_vmi_align_munmap; growing runs do_brk_flags(): the brk VMA (vma_prev_limit: the last
    VMA at or above start_brk, ending at the old brk) expands through vma_merge_new_range in
    just_expand mode when it can, else a new anonymous VMA; total_vm/data_vm and the
    commitment grow.  mm->brk = newbrk."""
    from mmintro.kernel import vma as V

    km = k.kmem
    oldbrk_raw = km.get(mm, "mm_struct", "brk")
    start = -(-oldbrk_raw // PAGE_SIZE) * PAGE_SIZE
    end = -(-newbrk // PAGE_SIZE) * PAGE_SIZE
    flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT  # do_brk_flags: | VM_ACCOUNT | mm->def_flags
    if end == start:
        km.set(mm, "mm_struct", "brk", newbrk)
        return newbrk
    if newbrk <= oldbrk_raw:
        brkvma = V.vma_find(k, mm, end, start)
        if not brkvma or km.get(brkvma, "vm_area_struct", "vm_start") >= start:
            return oldbrk_raw
        km.set(mm, "mm_struct", "brk", newbrk)
        V.do_vmi_align_munmap(k, mm, brkvma, end, start)
        return newbrk
    prev = find_vma(k, mm, start - 1)
    if prev and km.get(prev, "vm_area_struct", "vm_start") < km.get(mm, "mm_struct", "start_brk"):
        prev = 0  # vma_prev_limit(&vmi, mm->start_brk)
    if (
        prev
        and _vma_range(k, prev)[1] == start
        and _merge_new(k, mm, start, end, flags, start >> PAGE_SHIFT, just_expand=True, prev=prev)
    ):
        vm_stat_account(k, mm, flags, (end - start) >> PAGE_SHIFT)
        V.vm_acct_memory(k, (end - start) >> PAGE_SHIFT)
    else:
        vma_store(k, mm, start, end, flags)
    km.set(mm, "mm_struct", "brk", newbrk)
    return newbrk


@dataclass
class ExecLayout:
    """Where an exec'd program sits (what load_elf_binary and setup_arg_pages decided)."""

    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    start_stack: int
    mmap_base: int
    vdso: int


def _rand_pages(k: Kernel, bits_mask: int) -> int:
    return int(k.rng.integers(0, bits_mask + 1)) << PAGE_SHIFT


def arch_pick_mmap_layout(k: Kernel, mm: int) -> int:
    """arch/x86/mm/mmap.c arch_pick_mmap_layout(): MMF_TOPDOWN set (not legacy), then
    mmap_base() for a 64-bit task (top-down): the stack rlimit plus the
    stack randomisation range and guard gap, clamped to [128M, 5/6 of TASK_SIZE], below
    TASK_SIZE minus a random mmap_rnd_bits page offset; mm->mmap_legacy_base is
    TASK_UNMAPPED_BASE + the same random offset."""
    task_size = TASK_SIZE_MAX
    rnd = _rand_pages(k, (1 << MMAP_RND_BITS) - 1)
    gap = RLIMIT_STACK_CUR + (STACK_RND_MASK << PAGE_SHIFT) + STACK_GUARD_GAP
    gap = min(max(gap, SIZE_128M), task_size // 6 * 5)
    base = (task_size - gap - rnd) & ~(PAGE_SIZE - 1)
    km = k.kmem
    km.set(mm, "mm_struct", "flags.__mm_flags[0]", km.get(mm, "mm_struct", "flags.__mm_flags[0]") | 1 << MMF_TOPDOWN)
    km.set(mm, "mm_struct", "mmap_base", base)
    km.set(mm, "mm_struct", "mmap_legacy_base", -(-(task_size // 3) // PAGE_SIZE) * PAGE_SIZE + rnd)
    km.set(mm, "mm_struct", "task_size", task_size)
    return base


# The files exec and the dynamic loader map: ELF PT_LOAD segments as (pages, prot, relro) in file
# order, offsets contiguous; shapes from the reference capture (procfs/pid/self_maps) of
# ld-linux-x86-64.so.2 and libc.so.6 (relro: mapped rw with the data, then mprotect'ed
# read-only by ld.so's _dl_protect_relro, which splits the VMA and keeps VM_ACCOUNT).
EXEC_FILES = True  # exec maps /usr/bin/<comm>, the interpreter and libc when FILE's inode.py exists
INTERP_PATH = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
INTERP_SEGMENTS = (
    (0x1, VM_READ, False),
    (0x26, VM_READ | VM_EXEC, False),
    (0xA, VM_READ, False),
    (0x2, VM_READ | VM_WRITE, True),
    (0x2, VM_READ | VM_WRITE, False),
)
LIBC_PATH = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBC_SEGMENTS = (
    (0x26, VM_READ, False),
    (0x156, VM_READ | VM_EXEC, False),
    (0x53, VM_READ, False),
    (0x4, VM_READ | VM_WRITE, True),
    (0x2, VM_READ | VM_WRITE, False),
)
LIBC_BSS_PAGES = 0xD


def _open_file(k: Kernel, path: str, size: int) -> int:
    """open(path): a new ``struct file`` of the file at ``path`` on the root filesystem (created
    with ``size`` bytes the first time); 0 when FILE's inode.py is not there."""
    try:
        from mmintro.kernel import inode as I
    except ImportError:
        return 0
    d = I.vfs_root(k).dentries.get(path)
    return I.open_dentry(k, d) if d else I.create_file(k, path, size)


def _mmap_file_fixed(k: Kernel, mm: int, file: int, addr: int, length: int, prot: int, offset: int) -> int:
    from mmintro.kernel import filemap

    return filemap.mmap_file(k, mm, file, length, prot, False, offset=offset, addr=addr)


def map_elf_segments(k: Kernel, mm: int, file: int, base: int, segments, bss_pages: int = 0) -> int:
    """elf_map()/ld.so of a shared object at ``base``: each PT_LOAD segment mmap'ed MAP_PRIVATE
    from ``file`` at its offset (the relro part together with the data that follows it, then
    mprotect(PROT_READ) over the relro pages: a split), then the anonymous bss (MAP_FIXED).
    Returns the end address."""
    from mmintro.kernel import mprotect

    addr, off = base, 0
    i = 0
    while i < len(segments):
        pages, prot, relro = segments[i]
        if relro and i + 1 < len(segments):
            total = pages + segments[i + 1][0]
            _mmap_file_fixed(k, mm, file, addr, total << PAGE_SHIFT, VM_READ | VM_WRITE, off)
            mprotect.do_mprotect(k, mm, addr, pages << PAGE_SHIFT, VM_READ)
            addr += total << PAGE_SHIFT
            off += total << PAGE_SHIFT
            i += 2
            continue
        _mmap_file_fixed(k, mm, file, addr, pages << PAGE_SHIFT, prot, off)
        addr += pages << PAGE_SHIFT
        off += pages << PAGE_SHIFT
        i += 1
    if bss_pages:
        do_mmap(k, mm, bss_pages << PAGE_SHIFT, VM_READ | VM_WRITE, addr)
        addr += bss_pages << PAGE_SHIFT
    return addr


def map_library(k: Kernel, mm: int, path: str, segments, bss_pages: int = 0, base: int = 0) -> int:
    """What ld.so does for one library (or load_elf_interp for the interpreter): open it, one
    top-down get_unmapped_area for the whole image, its segments (:func:`map_elf_segments`),
    close (fput: the VMAs keep their references).  Returns the load address (0: no FILE)."""
    from mmintro.kernel import vma as V

    pages = sum(p for p, _pr, _r in segments)
    file = _open_file(k, path, pages << PAGE_SHIFT)
    if not file:
        return 0
    total = (pages + bss_pages) << PAGE_SHIFT
    if not base:
        base = unmapped_area_topdown(k, mm, total, PAGE_SIZE, k.kmem.get(mm, "mm_struct", "mmap_base"))
    map_elf_segments(k, mm, file, base, segments, bss_pages)
    V.fput(k, file)
    return base


# mm/vma.c special_mapping_vmops and the x86 vDSO's vm_special_mapping objects (lib/vdso/datastore.c
# vdso_vvar_mapping, arch/x86/entry/vdso/vma.c vvar_vclock_mapping and vdso_mapping): their names,
# and the functions the ops point at (drgn's vma_name compares vm_ops->name with
# special_mapping_name and then reads the vm_special_mapping's name).
SPECIAL_MAPPINGS = {"vdso_vvar_mapping": "[vvar]", "vvar_vclock_mapping": "[vvar_vclock]", "vdso_mapping": "[vdso]"}
_SPECIAL_OPS = (
    ("close", "special_mapping_close"),
    ("fault", "special_mapping_fault"),
    ("mremap", "special_mapping_mremap"),
    ("name", "special_mapping_name"),
    ("may_split", "special_mapping_split"),
)


def _special_mapping_object(k: Kernel, var: str) -> int:
    """The vm_special_mapping ``var`` in .rodata (placed with special_mapping_vmops on first use)."""
    img, km = k.image, k.kmem
    if "special_mapping_vmops" not in img.symbols:
        ops = img.var("special_mapping_vmops", "rodata")
        for field, fn in _SPECIAL_OPS:
            km.set(ops, "vm_operations_struct", field, img.func(fn, 0x40))
    if var not in img.symbols:
        obj = img.var(var, "rodata")
        km.set(obj, "vm_special_mapping", "name", img.string(SPECIAL_MAPPINGS[var]))
    return k.sym(var)


def install_special_mapping(k: Kernel, mm: int, addr: int, length: int, flags: int, var: str) -> int:
    """mm/vma.c _install_special_mapping() -> __install_special_mapping(): a VMA with
    vm_flags | mm->def_flags | VM_DONTEXPAND | VM_SOFTDIRTY (0 here), vm_ops =
    &special_mapping_vmops, vm_private_data = the vm_special_mapping, insert_vm_struct,
    vm_stat_account.  Returns the VMA."""
    vma = vma_store(k, mm, addr, addr + length, flags | VM_DONTEXPAND, 0)
    k.kmem.set(vma, "vm_area_struct", "vm_private_data", _special_mapping_object(k, var))
    k.kmem.set(vma, "vm_area_struct", "vm_ops", k.sym("special_mapping_vmops"))
    return vma


def setup_new_exec_layout(
    k: Kernel,
    mm: int,
    text_pages: int = 0x2B3,
    data_pages: int = 0x140,
    bss_pages: int = 0x45,
    heap_pages: int = 0x12A,
    stack_pages: int = 0x21,
    comm: str = "",
) -> ExecLayout:
    """The address space exec leaves: a non-PIE program at 0x400000 as four segments (r--,
    r-x, r--, rw-) mapped MAP_PRIVATE from ``/usr/bin/<comm>`` at their file offsets
    (mm->exe_file = that file), the interpreter ld-linux-x86-64.so.2 top-down below
    mmap_base (load_elf_interp) and libc.so.6 below the vDSO (what ld.so maps), each with
    its relro split off read-only — when FILE's inode/filemap exist and ``comm`` is given
    (else anonymous segments and no libraries); its bss, the heap after a
    randomised brk gap (arch_randomize_brk: up to 32 MiB), the stack below a randomised
    STACK_TOP (setup_arg_pages: VM_STACK_FLAGS), and the vDSO (map_vdso: [vvar] 4 pages,
    [vvar_vclock] 2, [vdso] 2, placed by get_unmapped_area; mm->context.vdso = the text)."""
    km = k.kmem
    base = arch_pick_mmap_layout(k, mm)
    mayx = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    a = 0x400000
    hdr = 0x1F << PAGE_SHIFT
    start_code = a + hdr
    end_code = start_code + (text_pages << PAGE_SHIFT)
    ro_end = end_code + (0x73 << PAGE_SHIFT)
    start_data = ro_end
    end_data = start_data + (data_pages << PAGE_SHIFT)
    exe = _open_file(k, f"/usr/bin/{comm}", end_data - a) if EXEC_FILES and comm else 0
    if exe:
        # load_elf_binary(): elf_map() of each PT_LOAD from bprm->file; set_mm_exe_file()
        map_elf_segments(
            k,
            mm,
            exe,
            a,
            (
                (hdr >> PAGE_SHIFT, VM_READ, False),
                (text_pages, VM_READ | VM_EXEC, False),
                (0x73, VM_READ, False),
                (data_pages, VM_READ | VM_WRITE, False),
            ),
        )
        km.set(mm, "mm_struct", "exe_file", exe)  # get_file + free_bprm's fput of bprm->file
    else:
        vma_store(k, mm, a, a + hdr, VM_READ | mayx)
        vma_store(k, mm, start_code, end_code, VM_READ | VM_EXEC | mayx)
        vma_store(k, mm, end_code, ro_end, VM_READ | mayx)
        vma_store(k, mm, start_data, end_data, VM_READ | VM_WRITE | mayx | VM_ACCOUNT)
    bss_end = end_data + (bss_pages << PAGE_SHIFT)
    # set_brk(): the bss is a brk-style anonymous VMA (vm_brk_flags)
    vma_store(k, mm, end_data, bss_end, VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT)
    start_brk = bss_end + _rand_pages(k, (0x02000000 >> PAGE_SHIFT) - 1)
    km.set(mm, "mm_struct", "start_brk", start_brk)
    km.set(mm, "mm_struct", "brk", start_brk)
    do_brk_flags(k, mm, start_brk + (heap_pages << PAGE_SHIFT))
    # setup_arg_pages(): STACK_TOP randomised (randomize_stack_top), the stack VMA below it
    stack_top = (TASK_SIZE_MAX - _rand_pages(k, STACK_RND_MASK)) & ~(PAGE_SIZE - 1)
    stack_start = stack_top - (stack_pages << PAGE_SHIFT)
    vma_store(k, mm, stack_start, stack_top, VM_STACK_FLAGS)
    start_stack = stack_top - 0x1000 + 0x2F0  # argv/envp/auxv sit in the top page
    km.set(mm, "mm_struct", "start_stack", start_stack)
    km.set(mm, "mm_struct", "arg_start", start_stack + 0x8)
    km.set(mm, "mm_struct", "arg_end", start_stack + 0x40)
    km.set(mm, "mm_struct", "env_start", start_stack + 0x40)
    km.set(mm, "mm_struct", "env_end", stack_top - 0x20)
    if exe:  # load_elf_interp(): the interpreter, top-down below mmap_base, before the vDSO
        map_library(k, mm, INTERP_PATH, INTERP_SEGMENTS)
    # map_vdso(): one get_unmapped_area for vvar + vvar_vclock + vdso text, each an
    # _install_special_mapping() (vm_ops = &special_mapping_vmops, vm_private_data = the mapping)
    vv = unmapped_area_topdown(k, mm, 8 << PAGE_SHIFT, PAGE_SIZE, base)
    special = VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP | VM_DONTEXPAND
    install_special_mapping(k, mm, vv, 4 << PAGE_SHIFT, special, "vdso_vvar_mapping")
    install_special_mapping(k, mm, vv + (4 << PAGE_SHIFT), 2 << PAGE_SHIFT, special, "vvar_vclock_mapping")
    vdso = vv + (6 << PAGE_SHIFT)
    install_special_mapping(k, mm, vdso, 2 << PAGE_SHIFT, VM_READ | VM_EXEC | mayx | VM_DONTEXPAND, "vdso_mapping")
    km.set(mm, "mm_struct", "context.vdso", vdso)
    for f, v in (
        ("start_code", start_code),
        ("end_code", end_code),
        ("start_data", start_data),
        ("end_data", end_data),
    ):
        km.set(mm, "mm_struct", f, v)
    if exe:  # the dynamic loader maps libc (top-down, below the vDSO)
        map_library(k, mm, LIBC_PATH, LIBC_SEGMENTS, LIBC_BSS_PAGES)
    return ExecLayout(start_code, end_code, start_data, end_data, start_brk, start_stack, base, vdso)


# -- mm/mmap.c mmap_init(), mm/util.c mm_compute_batch() ---------------------------------------
OVERCOMMIT_NEVER = 2  # include/uapi/linux/mman.h
INT_MAX = (1 << 31) - 1


def mmap_init(k: Kernel) -> None:
    """``percpu_counter_init(&vm_committed_as, 0, GFP_KERNEL)``: the counter gets its per-CPU
    deltas (so vm_acct_memory() batches like the kernel's), then mm_compute_batch_init()."""
    km = k.kmem
    fbc = k.sym("vm_committed_as")
    km.set(fbc, "percpu_counter", "counters", k.alloc_percpu(4, 4))
    if k.T.struct("percpu_counter").has_member("list"):  # CONFIG_HOTPLUG_CPU
        km.init_list_head(km.addr(fbc, "percpu_counter", "list"))
    mm_compute_batch(k, int.from_bytes(k.mem.read(k.pa(k.sym("sysctl_overcommit_memory")), 4), "little"))


def mm_compute_batch(k: Kernel, overcommit_policy: int) -> None:
    """vm_committed_as_batch: 0.4% (OVERCOMMIT_NEVER) or 25% of totalram per present CPU, at
    least max(2 * nr, 32) and at most INT_MAX."""
    nr = k.config.cpus  # num_present_cpus()
    batch = max(nr * 2, 32)
    ram_pages = k.kmem.mem.read_u64(k.pa(k.sym("_totalram_pages")))
    memsized = min(ram_pages // nr // (256 if overcommit_policy == OVERCOMMIT_NEVER else 4), INT_MAX)
    k.kmem.write_bytes(k.sym("vm_committed_as_batch"), max(memsized, batch).to_bytes(4, "little"))
