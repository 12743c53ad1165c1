"""VMA split, merge and unmap (mm/vma.c, mm/vma_init.c, 6.18).

The VMA objects live in the ``vm_area_struct`` slab cache and in ``mm->mm_mt`` (the maple tree
of :mod:`mmintro.kernel.maple_tree`, reached through :func:`mmintro.kernel.mmap.mm_tree`).  Each
function here is the 6.18 function of the same name, operating on simulated memory:

* :func:`vm_area_dup` (``vm_area_init_from`` + ``vma_lock_init(new, true)`` + an empty
  ``anon_vma_chain``), :func:`vm_area_free`, :func:`remove_vma` (``vma_close``: hugetlb's
  close hook, ``fput`` of ``vm_file`` -- the last put frees the ``filp`` object --,
  ``mpol_put``, the object back to its cache);
* :func:`__split_vma` / :func:`split_vma`: the new VMA over the lower or upper part, pgoff
  adjusted, ``anon_vma_clone``, ``get_file``, ``vma_prepare``/``vma_complete`` (i_mmap and
  anon_vma interval trees re-keyed, the new VMA stored with ``vma_iter_store_new``,
  ``map_count++``);
* the merge rules: :func:`is_mergeable_vma` (flags but VM_SOFTDIRTY, file, policy),
  :func:`is_mergeable_anon_vma` with ``vma_is_fork_child`` (6.17+), ``can_vma_merge_before`` /
  ``after`` / ``left`` / ``right`` and pgoff continuity; :func:`vma_merge_new_range` (mmap, brk)
  with :func:`vma_expand`, :func:`vma_merge_existing_range` (mprotect & co.) with the
  ``__adjust_middle_start`` / ``__adjust_next_start`` / ``__remove_middle`` / ``__remove_next``
  cases, :func:`commit_merge`, ``dup_anon_vma``;
* :func:`vma_modify` / :func:`vma_modify_flags`: merge, else split at the edges;
* :func:`do_vmi_align_munmap`: ``vms_gather_munmap_vmas`` (split at ``start`` with new_below,
  at ``end`` without, detach and count), ``vma_iter_clear_gfp`` over the range,
  ``vms_complete_munmap_vmas`` (``map_count``, ``vms_clear_ptes`` = ``update_hiwater_rss`` +
  ``unmap_vmas`` + ``free_pgtables`` with its ``unlink_anon_vmas`` / ``unlink_file_vma``,
  ``update_hiwater_vm``, ``total_vm``/``exec_vm``/``stack_vm``/``data_vm`` down,
  ``remove_vma``, ``vm_unacct_memory``);
* the accounting helpers: ``vm_acct_memory``/``vm_unacct_memory`` (vm_committed_as),
  ``update_hiwater_rss``/``update_hiwater_vm``, ``get_mm_rss``.

Page tables, rmap and files are other modules' (MEM's memory.py/rmap.py/mempolicy.py, FILE's
filemap.py); they are called when present (:func:`_opt`), so the VMA-level work runs before
they land.  Not modelled: the detached-VMA side tree (``mas_detach``: its nodes are allocated
and freed within the call), per-VMA lock sequence numbers (``vm_lock_seq`` stays UINT_MAX,
``mm_lock_seq`` 0), uprobes, userfaultfd, mmu notifiers, anon_vma_name, VM_STICKY (6.19).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmintro.kernel import slub

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "VmaMergeStruct",
    "can_vma_merge_after",
    "can_vma_merge_before",
    "commit_merge",
    "do_vmi_align_munmap",
    "fput",
    "get_file",
    "get_mm_rss",
    "is_mergeable_anon_vma",
    "is_mergeable_vma",
    "remove_vma",
    "split_vma",
    "update_hiwater_rss",
    "update_hiwater_vm",
    "vm_acct_memory",
    "vm_area_dup",
    "vm_area_free",
    "vm_unacct_memory",
    "vma_expand",
    "vma_merge_existing_range",
    "vma_merge_new_range",
    "vma_modify",
    "vma_modify_flags",
    "vma_pages",
]

PAGE_SHIFT = 12
PMD_SIZE = 1 << 21
# include/linux/mm.h (#defines; VM_SOFTDIRTY is 0 without CONFIG_MEM_SOFT_DIRTY, as here)
VM_SOFTDIRTY = 0
VM_LOCKED = 0x00002000
VM_ACCOUNT = 0x00100000
VM_HUGETLB = 0x00400000
# mm/mmap.c: sysctl_max_map_count = DEFAULT_MAX_MAP_COUNT (USHRT_MAX - MAPCOUNT_ELF_CORE_MARGIN)
DEFAULT_MAX_MAP_COUNT = 65535 - 5
# include/linux/pgtable.h: FIRST_USER_ADDRESS 0, USER_PGTABLES_CEILING 0 on x86
FIRST_USER_ADDRESS = 0
USER_PGTABLES_CEILING = 0

_V = "vm_area_struct"


def _opt(module: str, name: str) -> Callable[..., Any] | None:
    """``mmintro.kernel.<module>.<name>`` when that module and function exist (other helpers'
    slices land during the session), else None."""
    try:
        mod = importlib.import_module(f"mmintro.kernel.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


def _g(k: Kernel, vma: int, field: str) -> int:
    return k.kmem.get(vma, _V, field)


def _s(k: Kernel, vma: int, field: str, value: int) -> None:
    k.kmem.set(vma, _V, field, value)


def vma_pages(k: Kernel, vma: int) -> int:
    return (_g(k, vma, "vm_end") - _g(k, vma, "vm_start")) >> PAGE_SHIFT


def _mm_add(k: Kernel, mm: int, field: str, delta: int) -> None:
    k.kmem.set(mm, "mm_struct", field, k.kmem.get(mm, "mm_struct", field) + delta)


def _tree(k: Kernel, mm: int):
    from mmintro.kernel.mmap import mm_tree

    return mm_tree(k, mm)


def _store(k: Kernel, mm: int, start: int, end: int, vma: int | None) -> None:
    """vma_iter_store_new / vma_iter_store_overwrite / vma_iter_clear over [start, end)."""
    _tree(k, mm).mtree_store_range(start, end - 1, vma)


def vma_prev(k: Kernel, mm: int, vma_or_addr: int, *, addr: bool = False) -> int:
    """The VMA before ``vma`` (or before address ``vma_or_addr`` with ``addr``), else 0."""
    a = vma_or_addr if addr else _g(k, vma_or_addr, "vm_start")
    if a == 0:
        return 0
    t = _tree(k, mm)
    best = 0
    for _f, _l, e in t.mt_for_each(0, a - 1):
        best = e
    return best


def vma_next(k: Kernel, mm: int, vma: int) -> int:
    """The VMA after ``vma``, else 0."""
    for _f, _l, e in _tree(k, mm).mt_for_each(_g(k, vma, "vm_end")):
        return e
    return 0


def vma_find(k: Kernel, mm: int, start: int, end: int) -> int:
    """The first VMA overlapping [start, end), else 0 (vma_find)."""
    if end <= start:
        return 0
    for _f, _l, e in _tree(k, mm).mt_for_each(start, end - 1):
        return e
    return 0


# -- files and policies (FILE's / MEM's when they exist) --------------------------------------------------
def get_file(k: Kernel, file: int) -> None:
    """include/linux/fs.h get_file(): file_ref_inc(&f->f_ref) (FILE's helper when it has one)."""
    for mod in ("inode", "filemap"):
        fn = _opt(mod, "get_file")
        if fn is not None:
            fn(k, file)
            return
    k.kmem.set(file, "file", "f_ref.refcnt.counter", k.kmem.get(file, "file", "f_ref.refcnt.counter") + 1)


def fput(k: Kernel, file: int) -> None:
    """fs/file_table.c fput(): file_ref_put(&file->f_ref) (``refcnt`` holds the count minus
    one); the last put (-1, FILE_REF_NOREF) runs __fput.  FILE's helper when it has one."""
    for mod in ("inode", "filemap"):
        fn = _opt(mod, "fput")
        if fn is not None:
            fn(k, file)
            return
    km = k.kmem
    cnt = km.get(file, "file", "f_ref.refcnt.counter")
    cnt = (cnt - 1) & ((1 << 64) - 1)
    km.set(file, "file", "f_ref.refcnt.counter", cnt)
    if cnt == (1 << 64) - 1:
        __fput(k, file)


def __fput(k: Kernel, file: int) -> None:
    """fs/file_table.c __fput() undoing what FILE's open_dentry did: the inode reference it
    took, dput(f_path.dentry), then file_free(): the object back to ``filp``."""
    km = k.kmem
    inode = km.get(file, "file", "f_inode")
    if inode:
        km.set(inode, "inode", "i_count.counter", km.get(inode, "inode", "i_count.counter") - 1)
    dentry = km.get(file, "file", "f_path.dentry")
    if dentry:
        km.set(dentry, "dentry", "d_lockref.count", km.get(dentry, "dentry", "d_lockref.count") - 1)
    km.set(file, "file", "f_ref.refcnt.counter", (1 << 64) - 1)
    slub.kmem_cache_free(k, slub.find_cache(k, "filp"), file)


def _f_mapping(k: Kernel, file: int) -> int:
    return k.kmem.get(file, "file", "f_mapping")


def _shared_maywrite(k: Kernel, vma: int) -> bool:
    from mmintro.kernel.mmap import VM_MAYWRITE, VM_SHARED

    return _g(k, vma, "vm_flags") & (VM_SHARED | VM_MAYWRITE) == VM_SHARED | VM_MAYWRITE


def _i_mmap_writable(k: Kernel, vma: int, delta: int) -> None:
    """mapping_allow_writable / mapping_unmap_writable for a shared writable VMA."""
    if _shared_maywrite(k, vma):
        m = _f_mapping(k, _g(k, vma, "vm_file"))
        k.kmem.set(
            m,
            "address_space",
            "i_mmap_writable.counter",
            k.kmem.get(m, "address_space", "i_mmap_writable.counter") + delta,
        )


def _i_mmap_insert(k: Kernel, vma: int, link: bool = False) -> None:
    """vma_interval_tree_insert into vm_file's i_mmap (MEM's rmap); with ``link`` it is
    __vma_link_file, which also counts a shared writable mapping (mapping_allow_writable)."""
    fn = _opt("rmap", "vma_interval_tree_insert")
    file = _g(k, vma, "vm_file")
    if not file:
        return
    if link:
        _i_mmap_writable(k, vma, 1)
    if fn is not None:
        fn(k, vma, _f_mapping(k, file))


def _i_mmap_remove(k: Kernel, vma: int, unlink: bool = False) -> None:
    """vma_interval_tree_remove; with ``unlink`` it is __remove_shared_vm_struct
    (unlink_file_vma), which also drops a shared writable mapping's count."""
    fn = _opt("rmap", "vma_interval_tree_remove")
    file = _g(k, vma, "vm_file")
    if not file:
        return
    if unlink:
        _i_mmap_writable(k, vma, -1)
    if fn is not None:
        fn(k, vma, _f_mapping(k, file))


def _avc_retree(k: Kernel, vma: int, insert: bool) -> None:
    """anon_vma_interval_tree_pre_update_vma / _post_update_vma (mm/vma.c): every avc of the
    VMA out of (or back into) its anon_vma's rb_root, keyed by the VMA's pgoff range (MEM's
    rmap trees)."""
    if not _g(k, vma, "anon_vma"):
        return
    fn = _opt("rmap", "anon_vma_interval_tree_post_update_vma" if insert else "anon_vma_interval_tree_pre_update_vma")
    if fn is not None:
        fn(k, vma)
        return
    avcs, tree = _opt("rmap", "_avcs"), _opt("rmap", "_avc_tree")
    if avcs is None or tree is None:
        return
    km = k.kmem
    t = tree(k)
    for avc in avcs(k, vma):
        root = km.addr(km.get(avc, "anon_vma_chain", "anon_vma"), "anon_vma", "rb_root")
        if insert:
            t.insert(avc, root)
        else:
            t.remove(avc, root)


def _anon_pre(k: Kernel, vma: int) -> None:
    _avc_retree(k, vma, False)


def _anon_post(k: Kernel, vma: int) -> None:
    _avc_retree(k, vma, True)


def split_huge_pmd_if_needed(k: Kernel, vma: int, address: int) -> None:
    """mm/huge_memory.c split_huge_pmd_if_needed(): a VMA boundary moving to an address that
    is not 2 MiB aligned splits the PMD leaf (THP) mapping it (HUGE's split_huge_pmd)."""
    if not address & (PMD_SIZE - 1):
        return
    lo, hi = address & ~(PMD_SIZE - 1), (address & ~(PMD_SIZE - 1)) + PMD_SIZE
    if lo < _g(k, vma, "vm_start") or hi > _g(k, vma, "vm_end"):
        return  # range_in_vma(): no PMD mapping can straddle the boundary
    fn = _opt("huge_memory", "split_huge_pmd")
    if fn is not None:
        fn(k, vma, address)


def vma_adjust_trans_huge(k: Kernel, vma: int, start: int, end: int, nxt: int = 0) -> None:
    """mm/huge_memory.c vma_adjust_trans_huge(): split PMD mappings at start, end, and at
    end in the VMA whose start moves (``nxt``)."""
    split_huge_pmd_if_needed(k, vma, start)
    split_huge_pmd_if_needed(k, vma, end)
    if nxt:
        split_huge_pmd_if_needed(k, nxt, end)


def anon_vma_clone(k: Kernel, dst: int, src: int) -> int:
    """mm/rmap.c anon_vma_clone() (MEM's); 0 when src has no anon_vma chain to copy."""
    fn = _opt("rmap", "anon_vma_clone")
    if fn is None:
        return 0
    return fn(k, dst, src) or 0


def unlink_anon_vmas(k: Kernel, vma: int) -> None:
    fn = _opt("rmap", "unlink_anon_vmas")
    if fn is not None:
        fn(k, vma)
    else:
        _s(k, vma, "anon_vma", 0)


def _vma_dup_policy(k: Kernel, src: int, dst: int) -> None:
    fn = _opt("mempolicy", "vma_dup_policy")
    if fn is not None:
        fn(k, src, dst)


def mpol_equal(k: Kernel, a: int, b: int) -> bool:
    """mm/mempolicy.c __mpol_equal(): the same object, or both set with equal mode, flags and
    nodes (no MPOL_F_RELATIVE/STATIC_NODES user nodemask compared: not modelled)."""
    if a == b:
        return True
    if not a or not b:
        return False
    km = k.kmem
    if km.get(a, "mempolicy", "mode") != km.get(b, "mempolicy", "mode") or km.get(a, "mempolicy", "flags") != km.get(
        b, "mempolicy", "flags"
    ):
        return False
    off = km.offsetof("mempolicy", "nodes")
    size = k.T.sizeof("nodemask_t")
    return k.mem.read(k.pa(a + off), size) == k.mem.read(k.pa(b + off), size)


def _mpol_put(k: Kernel, pol: int) -> None:
    fn = _opt("mempolicy", "mpol_put")
    if fn is not None and pol:
        fn(k, pol)


# -- VMA objects (mm/vma_init.c) ---------------------------------------------------------------------------
def vm_area_dup(k: Kernel, orig: int) -> int:
    """mm/vma_init.c vm_area_dup(): a vm_area_cachep object, vm_area_init_from() (vm_mm, vm_ops,
    range, anon_vma, pgoff, file, private data, flags, page prot, ``shared``, userfaultfd ctx,
    swap readahead info, policy; pfnmap_track_ctx NULL), vma_lock_init(new, true) (vm_lock_seq
    UINT_MAX, vm_refcnt 0: detached), an empty anon_vma_chain."""
    km = k.kmem
    new = slub.kmem_cache_alloc(k, slub.find_cache(k, _V), "GFP_KERNEL", caller="vm_area_dup")
    km.write_bytes(new, bytes(k.T.sizeof("struct vm_area_struct")))
    for f in (
        "vm_mm",
        "vm_ops",
        "vm_start",
        "vm_end",
        "anon_vma",
        "vm_pgoff",
        "vm_file",
        "vm_private_data",
        "vm_flags",
        "vm_page_prot.pgprot",
        "vm_policy",
        "swap_readahead_info.counter",
    ):
        _s(k, new, f, _g(k, orig, f))
    shared = km.offsetof(_V, "shared")
    km.write_bytes(new + shared, k.mem.read(k.pa(orig + shared), _member_size(k, "shared")))
    uf = km.offsetof(_V, "vm_userfaultfd_ctx")
    km.write_bytes(new + uf, k.mem.read(k.pa(orig + uf), _member_size(k, "vm_userfaultfd_ctx")))
    _s(k, new, "vm_lock_seq", 0xFFFFFFFF)
    km.init_list_head(km.addr(new, _V, "anon_vma_chain"))
    return new


def _member_size(k: Kernel, member: str) -> int:
    _bit, _bsz, t = k.T.struct(_V).walk(member)
    return t.size or t.resolved().size


def vma_mark_attached(k: Kernel, vma: int) -> None:
    """include/linux/mm.h vma_mark_attached(): vm_refcnt 0 -> 1."""
    _s(k, vma, "vm_refcnt.refs.counter", 1)


def vma_mark_detached(k: Kernel, vma: int) -> None:
    """vma_mark_detached(): vm_refcnt 1 -> 0."""
    _s(k, vma, "vm_refcnt.refs.counter", 0)


def vm_area_free(k: Kernel, vma: int) -> None:
    """mm/vma_init.c vm_area_free(): the object back to vm_area_cachep (SLAB_TYPESAFE_BY_RCU:
    freed at once)."""
    slub.kmem_cache_free(k, slub.find_cache(k, _V), vma)


def vma_close(k: Kernel, vma: int) -> None:
    """mm/internal.h vma_close(): vm_ops->close -- hugetlb_vm_ops' hugetlb_vm_op_close."""
    if _g(k, vma, "vm_flags") & VM_HUGETLB:
        fn = _opt("hugetlb", "hugetlb_vm_op_close")
        if fn is not None:
            fn(k, vma)


def vma_open(k: Kernel, vma: int) -> None:
    """vm_ops->open (__split_vma's new VMA, dup_mmap's copy): hugetlb_vm_op_open."""
    if _g(k, vma, "vm_flags") & VM_HUGETLB:
        fn = _opt("hugetlb", "hugetlb_vm_op_open")
        if fn is not None:
            fn(k, vma)


def remove_vma(k: Kernel, vma: int) -> None:
    """mm/vma.c remove_vma(): vma_close (vm_ops->close: hugetlb_vm_op_close for hugetlb VMAs,
    HUGE's; no other close hook is modelled), fput(vm_file), mpol_put, vm_area_free."""
    vma_close(k, vma)
    file = _g(k, vma, "vm_file")
    if file:
        fput(k, file)
    _mpol_put(k, _g(k, vma, "vm_policy"))
    vm_area_free(k, vma)


# -- rss / hiwater / commit accounting ---------------------------------------------------------------------
def get_mm_rss(k: Kernel, mm: int) -> int:
    """include/linux/mm.h get_mm_rss(): MM_FILEPAGES + MM_ANONPAGES + MM_SHMEMPAGES (MEM's
    get_mm_counter; 0 before MEM lands)."""
    fn = _opt("memory", "get_mm_counter")
    if fn is None:
        return 0
    return sum(fn(k, mm, m) for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"))


def update_hiwater_rss(k: Kernel, mm: int) -> None:
    """include/linux/mm.h update_hiwater_rss()."""
    rss = get_mm_rss(k, mm)
    if k.kmem.get(mm, "mm_struct", "hiwater_rss") < rss:
        k.kmem.set(mm, "mm_struct", "hiwater_rss", rss)


def update_hiwater_vm(k: Kernel, mm: int) -> None:
    """include/linux/mm.h update_hiwater_vm()."""
    tv = k.kmem.get(mm, "mm_struct", "total_vm")
    if k.kmem.get(mm, "mm_struct", "hiwater_vm") < tv:
        k.kmem.set(mm, "mm_struct", "hiwater_vm", tv)


def vm_acct_memory(k: Kernel, pages: int) -> None:
    """include/linux/mman.h vm_acct_memory(): percpu_counter_add_batch(&vm_committed_as, pages,
    vm_committed_as_batch): the delta stays in this CPU's counter until it reaches the batch.
    Without per-CPU storage (a kernel before mmap_init()) it goes to ``count``."""
    km = k.kmem
    fbc = k.sym("vm_committed_as")
    ctr = km.get(fbc, "percpu_counter", "counters")
    if not ctr:
        v = km.get(fbc, "percpu_counter", "count") + pages
        km.set(fbc, "percpu_counter", "count", v & ((1 << 64) - 1))
        return
    batch = int.from_bytes(k.mem.read(k.pa(k.sym("vm_committed_as_batch")), 4), "little", signed=True)
    p = k.per_cpu_ptr(ctr, k.current_cpu)
    cur = int.from_bytes(k.mem.read(k.pa(p), 4), "little", signed=True) + pages
    if abs(cur) >= batch:
        v = km.get(fbc, "percpu_counter", "count") + cur
        km.set(fbc, "percpu_counter", "count", v & ((1 << 64) - 1))
        cur = 0
    km.write_bytes(p, (cur & 0xFFFFFFFF).to_bytes(4, "little"))


def vm_unacct_memory(k: Kernel, pages: int) -> None:
    """vm_unacct_memory(): vm_acct_memory(-pages)."""
    if pages:
        vm_acct_memory(k, -pages)


# -- split ---------------------------------------------------------------------------------------------------
def __split_vma(k: Kernel, vma: int, addr: int, new_below: int) -> int:
    """mm/vma.c __split_vma(): returns the new VMA (the part below ``addr`` with new_below,
    the part from ``addr`` up otherwise; a negative errno: -EINVAL when a hugetlb VMA is cut
    off its huge page size, -ENOMEM); ``vma`` keeps the other part."""
    mm = _g(k, vma, "vm_mm")
    start, end = _g(k, vma, "vm_start"), _g(k, vma, "vm_end")
    if not start < addr < end:
        raise ValueError(f"__split_vma: {addr:#x} not inside [{start:#x}, {end:#x})")
    if _g(k, vma, "vm_flags") & VM_HUGETLB:  # vm_ops->may_split = hugetlb_vm_op_split
        hstate_vma = _opt("hugetlb", "hstate_vma")
        if hstate_vma is not None and addr & (hstate_vma(k, vma).size - 1):
            return -22
    new = vm_area_dup(k, vma)
    if new_below:
        _s(k, new, "vm_end", addr)
    else:
        _s(k, new, "vm_start", addr)
        _s(k, new, "vm_pgoff", _g(k, new, "vm_pgoff") + ((addr - start) >> PAGE_SHIFT))
    _vma_dup_policy(k, vma, new)
    if anon_vma_clone(k, new, vma):
        vm_area_free(k, new)
        return -12
    file = _g(k, new, "vm_file")
    if file:
        get_file(k, file)
    vma_open(k, new)
    # vma_prepare(): the new VMA into i_mmap, vma out of the anon_vma and i_mmap trees
    if file:
        _i_mmap_insert(k, new, link=True)
    _anon_pre(k, vma)
    if file:
        _i_mmap_remove(k, vma)
    vma_adjust_trans_huge(k, vma, start, addr)
    if new_below:
        _s(k, vma, "vm_start", addr)
        _s(k, vma, "vm_pgoff", _g(k, vma, "vm_pgoff") + ((addr - start) >> PAGE_SHIFT))
    else:
        _s(k, vma, "vm_end", addr)
    # vma_complete(): vma back into i_mmap, vma_iter_store_new(new), map_count++, anon trees
    if file:
        _i_mmap_insert(k, vma)
    _store(k, mm, _g(k, new, "vm_start"), _g(k, new, "vm_end"), new)
    vma_mark_attached(k, new)
    _mm_add(k, mm, "map_count", 1)
    _anon_post(k, vma)
    return new


def split_vma(k: Kernel, mm: int, vma: int, addr: int, new_below: int) -> int:
    """mm/vma.c split_vma(vmi, vma, addr, new_below) (``mm`` stands for the iterator): the new
    VMA from __split_vma, or -ENOMEM when map_count has reached sysctl_max_map_count (or
    __split_vma's errno)."""
    if k.kmem.get(mm, "mm_struct", "map_count") >= _max_map_count(k):
        return -12
    return __split_vma(k, vma, addr, new_below)


def _max_map_count(k: Kernel) -> int:
    """sysctl_max_map_count (mm/mmap.c: ``int sysctl_max_map_count __read_mostly =
    DEFAULT_MAX_MAP_COUNT``), placed in .data with its initial value on first use."""
    if "sysctl_max_map_count" not in k.image.symbols:
        k.image.var("sysctl_max_map_count", "data")
        k.write_int("sysctl_max_map_count", DEFAULT_MAX_MAP_COUNT)
    return int.from_bytes(k.mem.read(k.pa(k.sym("sysctl_max_map_count")), 4), "little", signed=True)


# -- merge ---------------------------------------------------------------------------------------------------
@dataclass
class VmaMergeStruct:
    """mm/vma.h struct vma_merge_struct (the fields this model uses)."""

    mm: int
    start: int
    end: int
    pgoff: int
    flags: int
    prev: int = 0
    middle: int = 0
    next: int = 0
    target: int = 0
    file: int = 0
    anon_vma: int = 0
    policy: int = 0
    copied_from: int = 0
    just_expand: bool = False
    adjust_middle_start: bool = False
    adjust_next_start: bool = False
    remove_middle: bool = False
    remove_next: bool = False
    state: str = "VMA_MERGE_START"


def _anon_vma_chain_singular(k: Kernel, vma: int) -> bool:
    km = k.kmem
    head = km.addr(vma, _V, "anon_vma_chain")
    first = km.get(head, "list_head", "next")
    return first != head and km.get(first, "list_head", "next") == head


def vma_is_fork_child(k: Kernel, vma: int) -> bool:
    """mm/vma.c vma_is_fork_child(): an anon_vma and more than one avc (cloned from a parent).
    Before MEM's rmap keeps avcs, a VMA with an anon_vma and an empty chain counts as not forked."""
    if not vma or not _g(k, vma, "anon_vma"):
        return False
    km = k.kmem
    head = km.addr(vma, _V, "anon_vma_chain")
    if km.get(head, "list_head", "next") == head:
        return False
    return not _anon_vma_chain_singular(k, vma)


def is_mergeable_vma(k: Kernel, vmg: VmaMergeStruct, merge_next: bool) -> bool:
    """mm/vma.c is_mergeable_vma(): same policy, flags (but VM_SOFTDIRTY), file; no userfaultfd
    ctx or anon_vma_name modelled (both NULL)."""
    vma = vmg.next if merge_next else vmg.prev
    if not mpol_equal(k, vmg.policy, _g(k, vma, "vm_policy")):
        return False
    if (_g(k, vma, "vm_flags") ^ vmg.flags) & ~VM_SOFTDIRTY:
        return False
    return _g(k, vma, "vm_file") == vmg.file


def is_mergeable_anon_vma(k: Kernel, vmg: VmaMergeStruct, merge_next: bool) -> bool:
    """mm/vma.c is_mergeable_anon_vma() (6.17+): dup_anon_vma from the source only if neither
    the source nor copied_from is a fork child; the target's anon_vma only if the target is
    not one; else the two must already be the same."""
    tgt = vmg.next if merge_next else vmg.prev
    tgt_anon = _g(k, tgt, "anon_vma")
    src_anon = vmg.anon_vma
    if not tgt_anon and src_anon:
        return not vma_is_fork_child(k, vmg.middle) and not vma_is_fork_child(k, vmg.copied_from)
    if tgt_anon and not src_anon:
        return not vma_is_fork_child(k, tgt)
    return src_anon == tgt_anon


def can_vma_merge_before(k: Kernel, vmg: VmaMergeStruct) -> bool:
    pglen = (vmg.end - vmg.start) >> PAGE_SHIFT
    return (
        is_mergeable_vma(k, vmg, True)
        and is_mergeable_anon_vma(k, vmg, True)
        and _g(k, vmg.next, "vm_pgoff") == vmg.pgoff + pglen
    )


def can_vma_merge_after(k: Kernel, vmg: VmaMergeStruct) -> bool:
    return (
        is_mergeable_vma(k, vmg, False)
        and is_mergeable_anon_vma(k, vmg, False)
        and _g(k, vmg.prev, "vm_pgoff") + vma_pages(k, vmg.prev) == vmg.pgoff
    )


def can_vma_merge_left(k: Kernel, vmg: VmaMergeStruct) -> bool:
    return bool(vmg.prev) and _g(k, vmg.prev, "vm_end") == vmg.start and can_vma_merge_after(k, vmg)


def can_vma_merge_right(k: Kernel, vmg: VmaMergeStruct, can_merge_left: bool) -> bool:
    nxt = vmg.next
    if not nxt or vmg.end != _g(k, nxt, "vm_start") or not can_vma_merge_before(k, vmg):
        return False
    if not can_merge_left:
        return True
    pa, na = _g(k, vmg.prev, "anon_vma"), _g(k, nxt, "anon_vma")
    return not pa or not na or pa == na


def can_merge_remove_vma(k: Kernel, vma: int) -> bool:
    """!vma->vm_ops || !vma->vm_ops->close: no close hooks are modelled."""
    return True


def dup_anon_vma(k: Kernel, dst: int, src: int) -> int:
    """mm/vma.c dup_anon_vma(): the expanding VMA takes the shrinking one's anon_vma."""
    if _g(k, src, "anon_vma") and not _g(k, dst, "anon_vma"):
        _s(k, dst, "anon_vma", _g(k, src, "anon_vma"))
        return anon_vma_clone(k, dst, src)
    return 0


def _vma_set_range(k: Kernel, vma: int, start: int, end: int, pgoff: int) -> None:
    _s(k, vma, "vm_start", start)
    _s(k, vma, "vm_end", end)
    _s(k, vma, "vm_pgoff", pgoff)


def commit_merge(k: Kernel, vmg: VmaMergeStruct) -> int:
    """mm/vma.c commit_merge(): init_multi_vma_prep + vma_prepare, vma_set_range of the VMA
    being expanded (or of middle when next's start moves), vmg_adjust_set_range,
    vma_iter_store_overwrite of the target, vma_complete (removals: detach, fput,
    anon_vma_merge, map_count--, mpol_put, vm_area_free)."""
    mm = vmg.mm
    if vmg.adjust_next_start:
        vma = vmg.middle
        it_start, it_end = vmg.end, _g(k, vmg.next, "vm_end")
    else:
        vma = vmg.target
        it_start, it_end = vmg.start, vmg.end
    remove = [v for v, f in ((vmg.middle, vmg.remove_middle), (vmg.next, vmg.remove_next)) if f]
    adjust = vmg.middle if vmg.adjust_middle_start else vmg.next if vmg.adjust_next_start else 0
    file = _g(k, vma, "vm_file")
    # vma_prepare()
    _anon_pre(k, vma)
    if adjust:
        _anon_pre(k, adjust)
    if file:
        _i_mmap_remove(k, vma)
        if adjust:
            _i_mmap_remove(k, adjust)
    vma_adjust_trans_huge(k, vma, vmg.start, vmg.end, vmg.middle if vmg.adjust_middle_start else 0)
    _vma_set_range(k, vma, vmg.start, vmg.end, vmg.pgoff)
    # vmg_adjust_set_range()
    if vmg.adjust_middle_start:
        a = vmg.middle
        _vma_set_range(
            k, a, vmg.end, _g(k, a, "vm_end"), _g(k, a, "vm_pgoff") + ((vmg.end - _g(k, a, "vm_start")) >> PAGE_SHIFT)
        )
    elif vmg.adjust_next_start:
        a = vmg.next
        _vma_set_range(
            k, a, vmg.end, _g(k, a, "vm_end"), _g(k, a, "vm_pgoff") - ((_g(k, a, "vm_start") - vmg.end) >> PAGE_SHIFT)
        )
    _store(k, mm, it_start, it_end, vmg.target)
    # vma_complete()
    if file:
        if adjust:
            _i_mmap_insert(k, adjust)
        _i_mmap_insert(k, vma)
        for r in remove:
            _i_mmap_remove(k, r, unlink=True)
    _anon_post(k, vma)
    if adjust:
        _anon_post(k, adjust)
    for r in remove:
        vma_mark_detached(k, r)
        if file:
            fput(k, file)
        if _g(k, r, "anon_vma"):
            unlink_anon_vmas(k, r)  # anon_vma_merge()
        _mm_add(k, mm, "map_count", -1)
        _mpol_put(k, _g(k, r, "vm_policy"))
        vm_area_free(k, r)
    return 0


def vma_expand(k: Kernel, vmg: VmaMergeStruct) -> int:
    """mm/vma.c vma_expand(): the target grows over [vmg.start, vmg.end); next is removed when
    the range reaches its end (dup_anon_vma from it first)."""
    target, nxt = vmg.target, vmg.next
    if nxt and target != nxt and vmg.end == _g(k, nxt, "vm_end"):
        if dup_anon_vma(k, target, nxt):
            return -12
        vmg.remove_next = True
    return commit_merge(k, vmg)


def vma_merge_new_range(k: Kernel, vmg: VmaMergeStruct) -> int:
    """mm/vma.c vma_merge_new_range(): a new range [start, end) between prev and next merges
    into prev and/or next (prev kept, next removed when both); returns the target or 0."""
    from mmintro.kernel.mmap import VM_SPECIAL

    prev, nxt, end = vmg.prev, vmg.next, vmg.end
    vmg.state = "VMA_MERGE_NOMERGE"
    if vmg.flags & VM_SPECIAL or (not prev and not nxt):
        return 0
    can_left = can_vma_merge_left(k, vmg)
    can_right = not vmg.just_expand and can_vma_merge_right(k, vmg, can_left)
    if can_right:
        vmg.end = _g(k, nxt, "vm_end")
        vmg.target = nxt
    if can_left:
        vmg.start = _g(k, prev, "vm_start")
        vmg.target = prev
        vmg.pgoff = _g(k, prev, "vm_pgoff")
        if can_right and not can_merge_remove_vma(k, nxt):
            vmg.end = end
    if vmg.target and not vma_expand(k, vmg):
        vmg.state = "VMA_MERGE_SUCCESS"
        return vmg.target
    return 0


def vma_merge_existing_range(k: Kernel, vmg: VmaMergeStruct) -> int:
    """mm/vma.c vma_merge_existing_range(): [start, end) of ``middle`` takes new properties;
    merge it into prev (left), next (right) or both when they are compatible.  Returns the
    VMA now holding [start, end), or 0 (no merge)."""
    from mmintro.kernel.mmap import VM_SPECIAL

    middle, start, end = vmg.middle, vmg.start, vmg.end
    left_side = start == _g(k, middle, "vm_start")
    right_side = end == _g(k, middle, "vm_end")
    vmg.state = "VMA_MERGE_NOMERGE"
    if vmg.flags & VM_SPECIAL or (not left_side and not right_side):
        return 0
    merge_left = left_side and can_vma_merge_left(k, vmg)
    if right_side:
        nxt = vmg.next = vma_next(k, vmg.mm, middle)
        merge_right = can_vma_merge_right(k, vmg, merge_left)
    else:
        nxt = 0
        merge_right = False
    if not merge_left and not merge_right:
        return 0
    prev = vmg.prev
    merge_both = merge_left and merge_right
    delete_vma = left_side and right_side
    if delete_vma and not can_merge_remove_vma(k, middle):
        return 0
    delete_next = merge_both
    if delete_next and not can_merge_remove_vma(k, nxt):
        delete_next = merge_right = merge_both = False
    if merge_right:
        vmg.target = nxt
    if merge_left:
        vmg.target = prev
    if merge_both:
        vmg.start = _g(k, prev, "vm_start")
        vmg.end = _g(k, nxt, "vm_end")
        vmg.pgoff = _g(k, prev, "vm_pgoff")
        err = dup_anon_vma(k, prev, nxt if _g(k, nxt, "anon_vma") else middle)
    elif merge_left:
        vmg.start = _g(k, prev, "vm_start")
        vmg.pgoff = _g(k, prev, "vm_pgoff")
        if not delete_vma:
            vmg.adjust_middle_start = True
        err = dup_anon_vma(k, prev, middle)
    else:
        pglen = (end - start) >> PAGE_SHIFT
        if delete_vma:
            vmg.start = _g(k, middle, "vm_start")
            vmg.end = _g(k, nxt, "vm_end")
            vmg.pgoff = _g(k, nxt, "vm_pgoff") - pglen
        else:
            vmg.adjust_next_start = True
            vmg.start = _g(k, middle, "vm_start")
            vmg.end = start
            vmg.pgoff = _g(k, middle, "vm_pgoff")
        err = dup_anon_vma(k, nxt, middle)
    if err:
        return 0
    vmg.remove_middle = delete_vma
    vmg.remove_next = delete_next
    commit_merge(k, vmg)
    vmg.state = "VMA_MERGE_SUCCESS"
    return prev if merge_left else nxt


def vma_modify(k: Kernel, vmg: VmaMergeStruct) -> int:
    """mm/vma.c vma_modify(): merge, else split off the parts of middle outside [start, end)
    (split_vma new_below at start, then at end).  Returns the VMA covering [start, end) or a
    negative errno."""
    merged = vma_merge_existing_range(k, vmg)
    if merged:
        return merged
    vma = vmg.middle
    if _g(k, vma, "vm_start") < vmg.start:
        r = split_vma(k, vmg.mm, vma, vmg.start, 1)
        if r <= 0:
            return r or -12
    if _g(k, vma, "vm_end") > vmg.end:
        r = split_vma(k, vmg.mm, vma, vmg.end, 0)
        if r <= 0:
            return r or -12
    return vma


def _vmg_vma_state(k: Kernel, prev: int, vma: int, start: int, end: int) -> VmaMergeStruct:
    """VMG_VMA_STATE(): the existing VMA's file, anon_vma, policy and pgoff at start."""
    return VmaMergeStruct(
        mm=_g(k, vma, "vm_mm"),
        start=start,
        end=end,
        pgoff=_g(k, vma, "vm_pgoff") + ((start - _g(k, vma, "vm_start")) >> PAGE_SHIFT),
        flags=_g(k, vma, "vm_flags"),
        prev=prev,
        middle=vma,
        file=_g(k, vma, "vm_file"),
        anon_vma=_g(k, vma, "anon_vma"),
        policy=_g(k, vma, "vm_policy"),
    )


def vma_modify_flags(k: Kernel, prev: int, vma: int, start: int, end: int, new_flags: int) -> tuple[int, int]:
    """mm/vma.c vma_modify_flags(): the VMA that holds [start, end) with ``new_flags`` once
    merged or split (a negative errno on failure), and the flags to set (a merge's target's)."""
    vmg = _vmg_vma_state(k, prev, vma, start, end)
    vmg.flags = new_flags
    ret = vma_modify(k, vmg)
    if ret > 0 and vmg.state == "VMA_MERGE_SUCCESS":
        new_flags = _g(k, ret, "vm_flags")
    return ret, new_flags


# -- munmap ----------------------------------------------------------------------------------------------------
def _is_exec_mapping(f: int) -> bool:
    from mmintro.kernel.mmap import VM_EXEC, VM_STACK, VM_WRITE

    return f & (VM_WRITE | VM_EXEC | VM_STACK) == VM_EXEC


def _is_stack_mapping(f: int) -> bool:
    from mmintro.kernel.mmap import VM_STACK

    return bool(f & VM_STACK)


def _is_data_mapping(f: int) -> bool:
    from mmintro.kernel.mmap import VM_SHARED, VM_STACK, VM_WRITE

    return f & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE


def unmap_vmas(k: Kernel, vmas: list[int], start: int, end: int) -> None:
    """mm/memory.c unmap_vmas(): unmap_single_vma over each VMA's part of [start, end) (MEM's
    zap_page_range; nothing to do before MEM lands)."""
    zap = _opt("memory", "zap_page_range")
    if zap is None:
        return
    for vma in vmas:
        s = max(_g(k, vma, "vm_start"), start)
        e = min(_g(k, vma, "vm_end"), end)
        if s < e:
            zap(k, vma, s, e)


def free_pgtables(k: Kernel, mm: int, vmas: list[int], floor: int, ceiling: int) -> None:
    """mm/memory.c free_pgtables(): for each run of VMAs (gathered while the next starts within
    PMD_SIZE of the last one's end) unlink_anon_vmas and unlink_file_vma (i_mmap), then
    free_pgd_range(addr, end, floor, next ? next->vm_start : ceiling) through MEM's
    free_pgtables(k, mm, start, end, floor, ceiling) when it exists."""
    fpt = _opt("memory", "free_pgtables")
    i = 0
    while i < len(vmas):
        vma = vmas[i]
        addr = _g(k, vma, "vm_start")
        unlink_anon_vmas(k, vma)
        _i_mmap_remove(k, vma, unlink=True)
        i += 1
        while i < len(vmas) and _g(k, vmas[i], "vm_start") <= _g(k, vma, "vm_end") + PMD_SIZE:
            vma = vmas[i]
            unlink_anon_vmas(k, vma)
            _i_mmap_remove(k, vma, unlink=True)
            i += 1
        nxt_start = _g(k, vmas[i], "vm_start") if i < len(vmas) else ceiling
        if fpt is not None:
            _call_free_pgtables(fpt, k, mm, addr, _g(k, vma, "vm_end"), floor, nxt_start)


def _call_free_pgtables(
    fpt: Callable[..., Any], k: Kernel, mm: int, addr: int, end: int, floor: int, ceiling: int
) -> None:
    """MEM's free_pgtables: (k, mm, addr, end, floor, ceiling) when it takes them (free_pgd_range
    semantics), else (k, mm, start, end) with start/end the page-aligned range whose tables
    are wholly free (the floor/ceiling clamp done here, at PMD granularity)."""
    import inspect

    n = len(inspect.signature(fpt).parameters)
    if n >= 6:
        fpt(k, mm, addr, end, floor, ceiling)
        return
    fpt(k, mm, max(addr, floor), end if not ceiling else min(end, ceiling))


def do_vmi_align_munmap(k: Kernel, mm: int, vma: int, start: int, end: int) -> int:
    """mm/vma.c do_vmi_align_munmap() from the first VMA overlapping [start, end): 0 or
    -ENOMEM (-12)."""
    km = k.kmem
    # vms_gather_munmap_vmas()
    if start > _g(k, vma, "vm_start"):
        if end < _g(k, vma, "vm_end") and km.get(mm, "mm_struct", "map_count") >= _max_map_count(k):
            return -12
        r = __split_vma(k, vma, start, 1)
        if r <= 0:
            return r or -12
    prev = vma_prev(k, mm, vma)
    detached: list[int] = []
    nr_pages = locked = accounted = exec_vm = stack_vm = data_vm = 0
    nxt = vma
    while nxt and _g(k, nxt, "vm_start") < end:
        if _g(k, nxt, "vm_end") > end:
            r = __split_vma(k, nxt, end, 0)
            if r <= 0:
                return r or -12
        detached.append(nxt)
        n = vma_pages(k, nxt)
        f = _g(k, nxt, "vm_flags")
        nr_pages += n
        if f & VM_LOCKED:
            locked += n
        if f & VM_ACCOUNT:
            accounted += n
        if _is_exec_mapping(f):
            exec_vm += n
        elif _is_stack_mapping(f):
            stack_vm += n
        elif _is_data_mapping(f):
            data_vm += n
        nxt = vma_next(k, mm, nxt)
    # vma_iter_clear_gfp(): one NULL store over the range
    _store(k, mm, start, end, None)
    for v in detached:
        vma_mark_detached(k, v)
    # vms_complete_munmap_vmas()
    _mm_add(k, mm, "map_count", -len(detached))
    _mm_add(k, mm, "locked_vm", -locked)
    if detached:  # vms_clear_ptes()
        update_hiwater_rss(k, mm)
        unmap_vmas(k, detached, start, end)
        floor = _g(k, prev, "vm_end") if prev else FIRST_USER_ADDRESS
        ceiling = _g(k, nxt, "vm_start") if nxt else USER_PGTABLES_CEILING
        free_pgtables(k, mm, detached, floor, ceiling)
    update_hiwater_vm(k, mm)
    for field, n in (("total_vm", nr_pages), ("exec_vm", exec_vm), ("stack_vm", stack_vm), ("data_vm", data_vm)):
        _mm_add(k, mm, field, -n)
    for v in detached:
        remove_vma(k, v)
    vm_unacct_memory(k, accounted)
    return 0
