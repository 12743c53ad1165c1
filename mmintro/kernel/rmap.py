"""Reverse mapping: anon_vma, the i_mmap interval tree and folio map counts (mm/rmap.c,
mm/interval_tree.c, include/linux/rmap.h, include/linux/mm.h of 6.18).

* ``struct anon_vma`` objects come from the ``anon_vma`` cache (its ctor ran when the slab
  was made) and ``struct anon_vma_chain`` from ``anon_vma_chain``; ``anon_vma_prepare``,
  ``anon_vma_clone``, ``anon_vma_fork`` and ``unlink_anon_vmas`` follow mm/rmap.c,
  including the reuse rules (find_mergeable_anon_vma, num_children / num_active_vmas) and
  the root/parent links and refcounts.
* Both interval trees are the kernel's augmented rbtrees (INTERVAL_TREE_DEFINE of
  include/linux/interval_tree_generic.h, with rb_root_cached->rb_leftmost): the anon_vma's
  ``rb_root`` of anon_vma_chains keyed by [vm_pgoff, vm_pgoff + pages - 1]
  (``rb_subtree_last``), and ``mapping->i_mmap`` of VMAs through ``vma->shared.rb`` /
  ``shared.rb_subtree_last``.
* Map counts as 6.18 keeps them with CONFIG_PAGE_MAPCOUNT and CONFIG_MM_ID (semantics.md
  §1.4): ``page->_mapcount`` (-1 based), for large folios ``_large_mapcount``,
  ``_entire_mapcount``, ``_nr_pages_mapped`` (+ ENTIRELY_MAPPED for PMD mappings) and the
  two ``_mm_id`` / ``_mm_id_mapcount`` slots with the "maybe mapped shared" bit;
  PG_anon_exclusive; ``folio->mapping = anon_vma | FOLIO_MAPPING_ANON`` and
  ``folio->index = linear_page_index()``; NR_ANON_MAPPED / NR_FILE_MAPPED / NR_ANON_THPS
  / NR_{FILE,SHMEM}_PMDMAPPED (__folio_mod_stat; memory cgroups are not modelled, so
  lruvec_stat_mod_folio is the node counter).
* ``folio_get`` / ``folio_put``: the last put runs __folio_put (deferred-split unqueue,
  page_cache_release = the LRU removal, then the page allocator's free).

Pages are named by pfn; a function taking a *page* pfn finds its folio with page_folio().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.kernel import config as kc
from mmintro.kernel import page_alloc as pa
from mmintro.kernel import rbtree as rb
from mmintro.kernel import slub
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

_T = get_types()

__all__ = [
    "anon_vma_clone",
    "anon_vma_fork",
    "anon_vma_prepare",
    "folio_add_anon_rmap_pmd",
    "folio_add_anon_rmap_ptes",
    "folio_add_file_rmap_pmd",
    "folio_add_file_rmap_ptes",
    "folio_add_new_anon_rmap",
    "folio_dup_file_rmap_ptes",
    "folio_get",
    "folio_mapcount",
    "folio_put",
    "folio_remove_rmap_pmd",
    "folio_remove_rmap_ptes",
    "folio_try_dup_anon_rmap_pmd",
    "folio_try_dup_anon_rmap_ptes",
    "page_folio",
    "page_mapcount",
    "try_to_unmap",
    "unlink_anon_vmas",
    "vma_interval_tree_insert",
    "vma_interval_tree_insert_after",
    "vma_interval_tree_remove",
]

_PF = _T.enum("pageflags")
PG_anon_exclusive = _PF["PG_anon_exclusive"]
PG_swapbacked = _PF["PG_swapbacked"]
PG_dirty = _PF["PG_dirty"]
PG_head = _PF["PG_head"]
PG_uptodate = _PF["PG_uptodate"]
PG_partially_mapped = _T.const("PG_partially_mapped")

# include/linux/page-flags.h / mm/internal.h (#defines)
FOLIO_MAPPING_ANON = 0x1
FOLIO_MAPPING_KSM = 0x3
ENTIRELY_MAPPED = 0x800000
FOLIO_PAGES_MAPPED = ENTIRELY_MAPPED - 1
HPAGE_PMD_ORDER = 9
# include/linux/mm_types.h (CONFIG_MM_ID, 64-bit): mm_id_t is 32 bits, the top bit of each
# folio->_mm_id[] is free for flags; _mm_ids bit 63 = "maybe mapped shared".
MM_ID_DUMMY = 0
MM_ID_MIN = 1
MM_ID_BITS = 31
MM_ID_MASK = (1 << MM_ID_BITS) - 1
FOLIO_MM_IDS_SHARED_BIT = 1 << (2 * MM_ID_BITS + 1)
# include/linux/mm.h
VM_ACCESS_FLAGS = 0x7  # VM_READ | VM_WRITE | VM_EXEC
VM_SOFTDIRTY = 0  # CONFIG_MEM_SOFT_DIRTY is off

W_FLAGS = pa.W_FLAGS
W_MAPPING = pa.W_MAPPING
W_COMPOUND_HEAD = pa.W_COMPOUND_HEAD
W_INDEX = _T.struct("folio").offsetof("index") // 8
D_MAPCOUNT = _T.struct("page").offsetof("_mapcount") // 4
D_REFCOUNT = pa.D_REFCOUNT
FD_LARGE = pa.FD_LARGE_MAPCOUNT
FD_NR_MAPPED = pa.FD_NR_PAGES_MAPPED
FD_ENTIRE = pa.FD_ENTIRE_MAPCOUNT
FD_MMID_MC = pa.FD_MM_ID_MAPCOUNT
FW_MM_IDS = pa.FW_MM_IDS
FW_FLAGS_1 = pa.FW_FLAGS_1
PAGE_TYPE_HUGETLB = _T.const("PGTY_hugetlb") << 24


# -- struct page / folio words ----------------------------------------------------------------
def _pw(k: Kernel, pfn: int):
    return pa.page_words(k, pfn)


def _s32(v: int) -> int:
    v = int(v)
    return v - (1 << 32) if v & 0x80000000 else v


def _get32(k: Kernel, pfn: int, d: int) -> int:
    _mv64, mv32, w = _pw(k, pfn)
    return _s32(mv32[2 * w + d])


def _set32(k: Kernel, pfn: int, d: int, v: int) -> None:
    _mv64, mv32, w = _pw(k, pfn)
    mv32[2 * w + d] = v & 0xFFFFFFFF


def _get64(k: Kernel, pfn: int, word: int) -> int:
    mv64, _mv32, w = _pw(k, pfn)
    return int(mv64[w + word])


def _set64(k: Kernel, pfn: int, word: int, v: int) -> None:
    mv64, _mv32, w = _pw(k, pfn)
    mv64[w + word] = v & 0xFFFFFFFFFFFFFFFF


def page_folio(k: Kernel, pfn: int) -> int:
    """page_folio(): the head pfn (compound_head's bit 0 marks a tail)."""
    ch = _get64(k, pfn, W_COMPOUND_HEAD)
    if ch & 1:
        return (ch - 1 - k.vmemmap_base) // k.struct_page_size
    return pfn


def folio_test(k: Kernel, pfn: int, bit: int) -> bool:
    return bool(_get64(k, pfn, W_FLAGS) >> bit & 1)


def folio_set_flag(k: Kernel, pfn: int, bit: int) -> None:
    _set64(k, pfn, W_FLAGS, _get64(k, pfn, W_FLAGS) | 1 << bit)


def folio_clear_flag(k: Kernel, pfn: int, bit: int) -> None:
    _set64(k, pfn, W_FLAGS, _get64(k, pfn, W_FLAGS) & ~(1 << bit))


def folio_test_large(k: Kernel, pfn: int) -> bool:
    return folio_test(k, pfn, PG_head)


def folio_order(k: Kernel, pfn: int) -> int:
    return _get64(k, pfn, FW_FLAGS_1) & 0xFF if folio_test_large(k, pfn) else 0


def folio_nr_pages(k: Kernel, pfn: int) -> int:
    return 1 << folio_order(k, pfn)


def folio_test_anon(k: Kernel, pfn: int) -> bool:
    return bool(_get64(k, page_folio(k, pfn), W_MAPPING) & FOLIO_MAPPING_ANON)


def folio_test_hugetlb(k: Kernel, pfn: int) -> bool:
    return folio_test_large(k, pfn) and (_get32(k, pfn, D_MAPCOUNT) & 0xFFFFFFFF) >> 24 == PAGE_TYPE_HUGETLB >> 24


def folio_nid(k: Kernel, pfn: int) -> int:
    return _get64(k, pfn, W_FLAGS) >> kc.NODES_PGOFF


def folio_ref_count(k: Kernel, pfn: int) -> int:
    return _get32(k, pfn, D_REFCOUNT)


def page_mapcount(k: Kernel, pfn: int) -> int:
    """The page's own PTE map count: _mapcount + 1 (drgn's page_mapcount for small pages)."""
    return _get32(k, pfn, D_MAPCOUNT) + 1


def folio_mapcount(k: Kernel, pfn: int) -> int:
    """include/linux/mm.h folio_mapcount(): _mapcount + 1, or _large_mapcount + 1."""
    if not folio_test_large(k, pfn):
        return page_mapcount(k, pfn)
    return _get32(k, pfn, FD_LARGE) + 1


# -- refcounts -------------------------------------------------------------------------------
def folio_get(k: Kernel, pfn: int, nr: int = 1) -> None:
    """folio_get() / folio_ref_add(): on the head page."""
    f = page_folio(k, pfn)
    _set32(k, f, D_REFCOUNT, _get32(k, f, D_REFCOUNT) + nr)


def folio_put(k: Kernel, pfn: int, nr: int = 1) -> None:
    """folio_put() / folio_put_refs(): drop references; the last one runs __folio_put():
    hugetlb folios go back to their pool (free_huge_folio), others leave the deferred-split
    queue and the LRU (page_cache_release) and return to the page allocator."""
    f = page_folio(k, pfn)
    ref = _get32(k, f, D_REFCOUNT)
    if ref < nr:
        raise ValueError(f"folio_put: pfn {f:#x} has _refcount {ref} (< {nr})")
    if ref > nr:
        _set32(k, f, D_REFCOUNT, ref - nr)
        return
    if nr > 1:
        _set32(k, f, D_REFCOUNT, 1)
    if folio_test_hugetlb(k, f):
        from mmintro.kernel import memory

        hugetlb = memory._optional("hugetlb")
        if hugetlb is not None and hasattr(hugetlb, "free_huge_folio"):
            _set32(k, f, D_REFCOUNT, 0)
            hugetlb.free_huge_folio(k, f)
            return
    order = folio_order(k, f)
    if order > 1:
        from mmintro.kernel import memory

        huge = memory._optional("huge_memory")
        if huge is not None and hasattr(huge, "folio_unqueue_deferred_split"):
            huge.folio_unqueue_deferred_split(k, f)
    from mmintro.kernel import memory

    swap = memory._optional("swap")
    if swap is not None:
        swap.lruvec_del_folio(k, f)  # page_cache_release()
    k.free_pages(f, order)


# -- mm ids (kernel/fork.c mm_alloc_id, CONFIG_MM_ID) -------------------------------------------
def mm_id(k: Kernel, mm: int) -> int:
    """mm->mm_id.  kernel/fork.c mm_init() -> mm_alloc_id() gives every mm its own id; an mm
    that did not get one (made before the VMA helper calls mm_alloc_id, or a dup_mm copy
    still holding its parent's id) gets the lowest free id now."""
    v = k.kmem.get(mm, "mm_struct", "mm_id")
    if v == MM_ID_DUMMY or _mm_id_owner(k).get(v) != mm:
        v = mm_alloc_id(k, mm)
    return v


def _mm_id_owner(k: Kernel) -> dict[int, int]:
    return k.__dict__.setdefault("mm_id_owner", {})


def mm_alloc_id(k: Kernel, mm: int) -> int:
    """kernel/fork.c mm_alloc_id(): ida_alloc_range(&mm_ida, MM_ID_MIN, MM_ID_MAX)."""
    owner = _mm_id_owner(k)
    v = MM_ID_MIN
    while v in owner:
        v += 1
    owner[v] = mm
    k.kmem.set(mm, "mm_struct", "mm_id", v)
    return v


def mm_free_id(k: Kernel, mm: int) -> None:
    """kernel/fork.c mm_free_id() (__mmdrop)."""
    v = k.kmem.get(mm, "mm_struct", "mm_id")
    owner = _mm_id_owner(k)
    if owner.get(v) == mm:
        del owner[v]
    k.kmem.set(mm, "mm_struct", "mm_id", MM_ID_DUMMY)


def _vma_mm_id(k: Kernel, vma: int) -> int:
    return mm_id(k, k.kmem.get(vma, "vm_area_struct", "vm_mm"))


def _folio_mm_id(k: Kernel, f: int, idx: int) -> int:
    return (_get64(k, f, FW_MM_IDS) >> (32 * idx)) & MM_ID_MASK


def _folio_set_mm_id(k: Kernel, f: int, idx: int, v: int) -> None:
    ids = _get64(k, f, FW_MM_IDS)
    ids &= ~(MM_ID_MASK << (32 * idx))
    _set64(k, f, FW_MM_IDS, ids | v << (32 * idx))


def folio_set_large_mapcount(k: Kernel, f: int, mapcount: int, vma: int) -> None:
    """include/linux/rmap.h folio_set_large_mapcount() (CONFIG_MM_ID)."""
    _set32(k, f, FD_LARGE, mapcount - 1)
    _set32(k, f, FD_MMID_MC, mapcount - 1)
    _folio_set_mm_id(k, f, 0, _vma_mm_id(k, vma))


def folio_add_large_mapcount(k: Kernel, f: int, diff: int, vma: int) -> int:
    """include/linux/rmap.h folio_add_return_large_mapcount() (CONFIG_MM_ID, 64-bit)."""
    mid = _vma_mm_id(k, vma)
    new = _get32(k, f, FD_LARGE) + diff
    _set32(k, f, FD_LARGE, new)
    if _folio_mm_id(k, f, 0) == mid:
        _set32(k, f, FD_MMID_MC, _get32(k, f, FD_MMID_MC) + diff)
    elif _folio_mm_id(k, f, 1) == mid:
        _set32(k, f, FD_MMID_MC + 1, _get32(k, f, FD_MMID_MC + 1) + diff)
    elif _folio_mm_id(k, f, 0) == MM_ID_DUMMY:
        _folio_set_mm_id(k, f, 0, mid)
        _set32(k, f, FD_MMID_MC, diff - 1)
        if new != diff - 1:  # we might have other mappings already
            _set64(k, f, FW_MM_IDS, _get64(k, f, FW_MM_IDS) | FOLIO_MM_IDS_SHARED_BIT)
    elif _folio_mm_id(k, f, 1) == MM_ID_DUMMY:
        _folio_set_mm_id(k, f, 1, mid)
        _set32(k, f, FD_MMID_MC + 1, diff - 1)
        _set64(k, f, FW_MM_IDS, _get64(k, f, FW_MM_IDS) | FOLIO_MM_IDS_SHARED_BIT)
    return new + 1


def folio_sub_large_mapcount(k: Kernel, f: int, diff: int, vma: int) -> int:
    """include/linux/rmap.h folio_sub_return_large_mapcount() (CONFIG_MM_ID)."""
    mid = _vma_mm_id(k, vma)
    new = _get32(k, f, FD_LARGE) - diff
    _set32(k, f, FD_LARGE, new)
    for idx in (0, 1):
        if _folio_mm_id(k, f, idx) == mid:
            v = _get32(k, f, FD_MMID_MC + idx) - diff
            _set32(k, f, FD_MMID_MC + idx, v)
            if v >= 0:
                return new + 1
            _set32(k, f, FD_MMID_MC + idx, -1)
            _folio_set_mm_id(k, f, idx, MM_ID_DUMMY)
            break
    if _get32(k, f, FD_MMID_MC) == new or _get32(k, f, FD_MMID_MC + 1) == new:
        _set64(k, f, FW_MM_IDS, _get64(k, f, FW_MM_IDS) & ~FOLIO_MM_IDS_SHARED_BIT)
    return new + 1


def folio_maybe_mapped_shared(k: Kernel, f: int) -> bool:
    """include/linux/mm.h folio_maybe_mapped_shared()."""
    if not folio_test_large(k, f):
        return _get32(k, f, D_MAPCOUNT) > 0
    if folio_test_hugetlb(k, f):
        return _get32(k, f, FD_ENTIRE) > 0
    return bool(_get64(k, f, FW_MM_IDS) & FOLIO_MM_IDS_SHARED_BIT)


# -- statistics ------------------------------------------------------------------------------
def __folio_mod_stat(k: Kernel, f: int, nr: int, nr_pmdmapped: int) -> None:
    """mm/rmap.c __folio_mod_stat()."""
    nid = folio_nid(k, f)
    anon = folio_test_anon(k, f)
    if nr:
        k.mod_node_page_state(nid, "NR_ANON_MAPPED" if anon else "NR_FILE_MAPPED", nr)
    if nr_pmdmapped:
        if anon:
            k.mod_node_page_state(nid, "NR_ANON_THPS", nr_pmdmapped)
        else:
            k.mod_node_page_state(
                nid, "NR_SHMEM_PMDMAPPED" if folio_test(k, f, PG_swapbacked) else "NR_FILE_PMDMAPPED", nr_pmdmapped
            )


# -- adding and removing mappings ------------------------------------------------------------
def linear_page_index(k: Kernel, vma: int, addr: int) -> int:
    km = k.kmem
    return ((addr - km.get(vma, "vm_area_struct", "vm_start")) >> PAGE_SHIFT) + km.get(
        vma, "vm_area_struct", "vm_pgoff"
    )


def __folio_set_anon(k: Kernel, f: int, vma: int, addr: int, exclusive: bool) -> None:
    """mm/rmap.c __folio_set_anon(): mapping = anon_vma (its root unless exclusive) | ANON."""
    av = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    if not av:
        raise ValueError("__folio_set_anon: the VMA has no anon_vma (anon_vma_prepare first)")
    if not exclusive:
        av = k.kmem.get(av, "anon_vma", "root")
    _set64(k, f, W_MAPPING, av | FOLIO_MAPPING_ANON)
    _set64(k, f, W_INDEX, linear_page_index(k, vma, addr))


def folio_add_new_anon_rmap(
    k: Kernel, pfn: int, vma: int, addr: int, level: str = "pte", exclusive: bool = True
) -> None:
    """mm/rmap.c folio_add_new_anon_rmap(folio, vma, address, RMAP_EXCLUSIVE): a brand-new
    anonymous folio mapped once, entirely: a PMD-mappable folio by one PMD, a smaller large
    folio by PTEs (as 6.18, the branch follows the folio's size; ``level`` is informative)."""
    f = page_folio(k, pfn)
    if not folio_test(k, f, PG_swapbacked):
        folio_set_flag(k, f, PG_swapbacked)  # VM_DROPPABLE is not modelled
    __folio_set_anon(k, f, vma, addr, exclusive)
    nr, nr_pmdmapped = 1, 0
    if not folio_test_large(k, f):
        _set32(k, f, D_MAPCOUNT, 0)
        if exclusive:
            folio_set_flag(k, f, PG_anon_exclusive)
    elif folio_order(k, f) < HPAGE_PMD_ORDER:  # !folio_test_pmd_mappable()
        nr = folio_nr_pages(k, f)
        for i in range(nr):
            _set32(k, f + i, D_MAPCOUNT, 0)
            if exclusive:
                folio_set_flag(k, f + i, PG_anon_exclusive)
        folio_set_large_mapcount(k, f, nr, vma)
        _set32(k, f, FD_NR_MAPPED, nr)
    else:
        nr = folio_nr_pages(k, f)
        _set32(k, f, FD_ENTIRE, 0)
        folio_set_large_mapcount(k, f, 1, vma)
        _set32(k, f, FD_NR_MAPPED, ENTIRELY_MAPPED)
        if exclusive:
            folio_set_flag(k, f, PG_anon_exclusive)
        nr_pmdmapped = nr
    __folio_mod_stat(k, f, nr, nr_pmdmapped)


def __folio_add_rmap(k: Kernel, pfn: int, nr_pages: int, vma: int, level: str) -> tuple[int, int]:
    """mm/rmap.c __folio_add_rmap() (CONFIG_PAGE_MAPCOUNT): returns (nr, nr_pmdmapped) --
    the pages that became mapped, for __folio_mod_stat."""
    f = page_folio(k, pfn)
    nr = nr_pmdmapped = 0
    if level == "pte":
        if not folio_test_large(k, f):
            mc = _get32(k, f, D_MAPCOUNT) + 1
            _set32(k, f, D_MAPCOUNT, mc)
            return int(mc == 0), 0
        first = 0
        for i in range(nr_pages):
            mc = _get32(k, pfn + i, D_MAPCOUNT) + 1
            _set32(k, pfn + i, D_MAPCOUNT, mc)
            first += mc == 0
        if first:
            mapped = _get32(k, f, FD_NR_MAPPED) + first
            _set32(k, f, FD_NR_MAPPED, mapped)
            if mapped < ENTIRELY_MAPPED:
                nr = first
        folio_add_large_mapcount(k, f, nr_pages, vma)
        return nr, 0
    # PMD / PUD
    em = _get32(k, f, FD_ENTIRE) + 1
    _set32(k, f, FD_ENTIRE, em)
    if em == 0:
        mapped = _get32(k, f, FD_NR_MAPPED) + ENTIRELY_MAPPED
        _set32(k, f, FD_NR_MAPPED, mapped)
        if mapped < 2 * ENTIRELY_MAPPED:
            n = folio_nr_pages(k, f)
            if level == "pmd":
                nr_pmdmapped = n
            nr = max(0, n - (mapped & FOLIO_PAGES_MAPPED))
    folio_add_large_mapcount(k, f, 1, vma)
    return nr, nr_pmdmapped


def _add_anon_rmap(k: Kernel, pfn: int, nr_pages: int, vma: int, addr: int | None, level: str, exclusive: bool) -> None:
    """mm/rmap.c __folio_add_anon_rmap()."""
    f = page_folio(k, pfn)
    nr, nr_pmdmapped = __folio_add_rmap(k, pfn, nr_pages, vma, level)
    __folio_mod_stat(k, f, nr, nr_pmdmapped)
    if exclusive:
        for i in range(nr_pages if level == "pte" else 1):
            folio_set_flag(k, pfn + i, PG_anon_exclusive)


def folio_add_anon_rmap_ptes(
    k: Kernel, pfn: int, nr: int, vma: int, addr: int | None = None, exclusive: bool = False
) -> None:
    """folio_add_anon_rmap_ptes(folio, page, nr_pages, vma, address, flags)."""
    _add_anon_rmap(k, pfn, nr, vma, addr, "pte", exclusive)


def folio_add_anon_rmap_pmd(k: Kernel, pfn: int, vma: int, addr: int | None = None, exclusive: bool = False) -> None:
    _add_anon_rmap(k, pfn, folio_nr_pages(k, pfn), vma, addr, "pmd", exclusive)


def folio_add_file_rmap_ptes(k: Kernel, pfn: int, nr: int, vma: int) -> None:
    """mm/rmap.c folio_add_file_rmap_ptes() -> __folio_add_file_rmap()."""
    f = page_folio(k, pfn)
    n, pmd = __folio_add_rmap(k, pfn, nr, vma, "pte")
    __folio_mod_stat(k, f, n, pmd)


def folio_add_file_rmap_pmd(k: Kernel, pfn: int, vma: int) -> None:
    f = page_folio(k, pfn)
    n, pmd = __folio_add_rmap(k, pfn, folio_nr_pages(k, f), vma, "pmd")
    __folio_mod_stat(k, f, n, pmd)


def __folio_remove_rmap(k: Kernel, pfn: int, nr_pages: int, vma: int, level: str) -> None:
    """mm/rmap.c __folio_remove_rmap() (CONFIG_PAGE_MAPCOUNT): map counts down, stats
    down, and a partially mapped anonymous large folio queued for deferred split."""
    f = page_folio(k, pfn)
    nr = nr_pmdmapped = 0
    partially_mapped = False
    if level == "pte":
        if not folio_test_large(k, f):
            mc = _get32(k, f, D_MAPCOUNT) - 1
            _set32(k, f, D_MAPCOUNT, mc)
            nr = int(mc < 0)
        else:
            folio_sub_large_mapcount(k, f, nr_pages, vma)
            last = 0
            for i in range(nr_pages):
                mc = _get32(k, pfn + i, D_MAPCOUNT) - 1
                _set32(k, pfn + i, D_MAPCOUNT, mc)
                last += mc < 0
            if last:
                mapped = _get32(k, f, FD_NR_MAPPED) - last
                _set32(k, f, FD_NR_MAPPED, mapped)
                if mapped < ENTIRELY_MAPPED:
                    nr = last
            partially_mapped = bool(nr) and bool(_get32(k, f, FD_NR_MAPPED))
    else:
        folio_sub_large_mapcount(k, f, 1, vma)
        em = _get32(k, f, FD_ENTIRE) - 1
        _set32(k, f, FD_ENTIRE, em)
        if em < 0:
            mapped = _get32(k, f, FD_NR_MAPPED) - ENTIRELY_MAPPED
            _set32(k, f, FD_NR_MAPPED, mapped)
            if mapped < ENTIRELY_MAPPED:
                n = folio_nr_pages(k, f)
                if level == "pmd":
                    nr_pmdmapped = n
                nr = max(0, n - mapped)
        partially_mapped = bool(nr) and nr < nr_pmdmapped
    if partially_mapped and folio_test_anon(k, f) and not (_get64(k, f, FW_FLAGS_1) >> PG_partially_mapped & 1):
        from mmintro.kernel import memory

        huge = memory._optional("huge_memory")
        if huge is not None and hasattr(huge, "deferred_split_folio"):
            huge.deferred_split_folio(k, f)
    __folio_mod_stat(k, f, -nr, -nr_pmdmapped)


def folio_remove_rmap_ptes(k: Kernel, pfn: int, nr: int, vma: int) -> None:
    __folio_remove_rmap(k, pfn, nr, vma, "pte")


def folio_remove_rmap_pmd(k: Kernel, pfn: int, vma: int) -> None:
    __folio_remove_rmap(k, pfn, folio_nr_pages(k, pfn), vma, "pmd")


def folio_try_dup_anon_rmap_ptes(k: Kernel, pfn: int, nr: int, dst_vma: int, src_vma: int | None = None) -> int:
    """include/linux/rmap.h __folio_try_dup_anon_rmap() at PTE level: fork shares the pages
    (PageAnonExclusive cleared, map counts up).  No page is pinned in this model, so it
    never fails (returns 0; -EBUSY would make the caller copy)."""
    f = page_folio(k, pfn)
    if not folio_test_large(k, f):
        folio_clear_flag(k, f, PG_anon_exclusive)
        _set32(k, f, D_MAPCOUNT, _get32(k, f, D_MAPCOUNT) + 1)
        return 0
    for i in range(nr):
        folio_clear_flag(k, pfn + i, PG_anon_exclusive)
        _set32(k, pfn + i, D_MAPCOUNT, _get32(k, pfn + i, D_MAPCOUNT) + 1)
    folio_add_large_mapcount(k, f, nr, dst_vma)
    return 0


def folio_try_dup_anon_rmap_pmd(k: Kernel, pfn: int, dst_vma: int, src_vma: int | None = None) -> int:
    """__folio_try_dup_anon_rmap() at PMD level: PageAnonExclusive cleared on the head,
    _entire_mapcount and the large mapcount up."""
    f = page_folio(k, pfn)
    folio_clear_flag(k, pfn, PG_anon_exclusive)
    _set32(k, f, FD_ENTIRE, _get32(k, f, FD_ENTIRE) + 1)
    folio_add_large_mapcount(k, f, 1, dst_vma)
    return 0


def folio_dup_file_rmap_ptes(k: Kernel, pfn: int, nr: int, dst_vma: int) -> None:
    """include/linux/rmap.h __folio_dup_file_rmap() at PTE level (no statistics change)."""
    f = page_folio(k, pfn)
    if not folio_test_large(k, f):
        _set32(k, f, D_MAPCOUNT, _get32(k, f, D_MAPCOUNT) + 1)
        return
    for i in range(nr):
        _set32(k, pfn + i, D_MAPCOUNT, _get32(k, pfn + i, D_MAPCOUNT) + 1)
    folio_add_large_mapcount(k, f, nr, dst_vma)


def folio_dup_file_rmap_pmd(k: Kernel, pfn: int, dst_vma: int) -> None:
    f = page_folio(k, pfn)
    _set32(k, f, FD_ENTIRE, _get32(k, f, FD_ENTIRE) + 1)
    folio_add_large_mapcount(k, f, 1, dst_vma)


def folio_move_anon_rmap(k: Kernel, pfn: int, vma: int) -> None:
    """mm/rmap.c folio_move_anon_rmap(): point an exclusively owned folio at the VMA's own
    anon_vma (do_wp_page's reuse)."""
    f = page_folio(k, pfn)
    av = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    _set64(k, f, W_MAPPING, av | FOLIO_MAPPING_ANON)


# -- interval trees (include/linux/interval_tree_generic.h) -------------------------------------
class IntervalTree:
    """INTERVAL_TREE_DEFINE over ``struct_name`` with the rb_node at ``rb_path`` and the
    augmented ``subtree_path``; ``start(node)`` / ``last(node)`` give the interval of the
    object whose rb_node is at ``node``."""

    def __init__(self, k: Kernel, struct_name: str, rb_path: str, subtree_path: str, start, last) -> None:
        self.k = k
        self.rb_off = _T.struct(struct_name).offsetof(rb_path)
        self.sub_off = _T.struct(struct_name).offsetof(subtree_path)
        self.start = start
        self.last = last
        self.m = rb.RbMem(lambda a: k.mem.read_u64(k.pa(a)), lambda a, v: k.mem.write_u64(k.pa(a), v))

    def _sub(self, node: int) -> int:
        return self.m.read(node - self.rb_off + self.sub_off)

    def _set_sub(self, node: int, v: int) -> None:
        self.m.write(node - self.rb_off + self.sub_off, v)

    def _compute_max(self, node: int) -> int:
        mx = self.last(node - self.rb_off)
        for child in (self.m.read(node + rb.LEFT), self.m.read(node + rb.RIGHT)):
            if child:
                mx = max(mx, self._sub(child))
        return mx

    # RB_DECLARE_CALLBACKS_MAX
    def propagate(self, node: int, stop: int) -> None:
        while node != stop:
            mx = self._compute_max(node)
            if self._sub(node) == mx:
                break
            self._set_sub(node, mx)
            node = rb.rb_parent(self.m, node)

    def copy(self, old: int, new: int) -> None:
        self._set_sub(new, self._sub(old))

    def rotate(self, old: int, new: int) -> None:
        self._set_sub(new, self._sub(old))
        self._set_sub(old, self._compute_max(old))

    def insert(self, obj: int, root: int) -> None:
        """ITPREFIX_insert(node, struct rb_root_cached *root)."""
        m = self.m
        node = obj + self.rb_off
        start, last = self.start(obj), self.last(obj)
        link = root + rb.ROOT_NODE
        parent = 0
        leftmost = True
        while m.read(link):
            parent = m.read(link)
            if self._sub(parent) < last:
                self._set_sub(parent, last)
            if start < self.start(parent - self.rb_off):
                link = parent + rb.LEFT
            else:
                link = parent + rb.RIGHT
                leftmost = False
        self._set_sub(node, last)
        rb.rb_link_node(m, node, parent, link)
        if leftmost:  # rb_insert_augmented_cached
            m.write(root + _LEFTMOST, node)
        rb.rb_insert_augmented(m, node, root + rb.ROOT_NODE, self)

    def insert_after(self, obj: int, prev_obj: int, root: int) -> None:
        """mm/interval_tree.c vma_interval_tree_insert_after()."""
        m = self.m
        node = obj + self.rb_off
        prev = prev_obj + self.rb_off
        last = self.last(obj)
        if not m.read(prev + rb.RIGHT):
            parent, link = prev, prev + rb.RIGHT
        else:
            parent = m.read(prev + rb.RIGHT)
            if self._sub(parent) < last:
                self._set_sub(parent, last)
            while m.read(parent + rb.LEFT):
                parent = m.read(parent + rb.LEFT)
                if self._sub(parent) < last:
                    self._set_sub(parent, last)
            link = parent + rb.LEFT
        self._set_sub(node, last)
        rb.rb_link_node(m, node, parent, link)
        rb.rb_insert_augmented(m, node, root + rb.ROOT_NODE, self)

    def remove(self, obj: int, root: int) -> None:
        """ITPREFIX_remove(): rb_erase_augmented_cached."""
        m = self.m
        node = obj + self.rb_off
        if m.read(root + _LEFTMOST) == node:
            m.write(root + _LEFTMOST, rb.rb_next(m, node))
        rb.rb_erase_augmented(m, node, root + rb.ROOT_NODE, self)

    # ITPREFIX_iter_first / _iter_next (the overlap queries rmap walks use)
    def _subtree_search(self, node: int, start: int, last: int) -> int:
        m = self.m
        while True:
            left = m.read(node + rb.LEFT)
            if left and start <= self._sub(left):
                node = left
                continue
            if self.start(node - self.rb_off) <= last:
                if start <= self.last(node - self.rb_off):
                    return node
                right = m.read(node + rb.RIGHT)
                if right:
                    node = right
                    if start <= self._sub(node):
                        continue
            return 0

    def iter_first(self, root: int, start: int, last: int) -> int:
        m = self.m
        node = m.read(root + rb.ROOT_NODE)
        if not node or self._sub(node) < start:
            return 0
        leftmost = m.read(root + _LEFTMOST)
        if self.start(leftmost - self.rb_off) > last:
            return 0
        found = self._subtree_search(node, start, last)
        return found - self.rb_off if found else 0

    def iter_next(self, obj: int, start: int, last: int) -> int:
        m = self.m
        node = obj + self.rb_off
        r = m.read(node + rb.RIGHT)
        while True:
            if r and start <= self._sub(r):
                found = self._subtree_search(r, start, last)
                return found - self.rb_off if found else 0
            while True:
                parent = rb.rb_parent(m, node)
                if not parent:
                    return 0
                prev = node
                node = parent
                r = m.read(node + rb.RIGHT)
                if prev != r:
                    break
            if last < self.start(node - self.rb_off):
                return 0
            if start <= self.last(node - self.rb_off):
                return node - self.rb_off

    def foreach(self, root: int, start: int, last: int) -> list[int]:
        out = []
        obj = self.iter_first(root, start, last)
        while obj:
            out.append(obj)
            obj = self.iter_next(obj, start, last)
            if len(out) > 1 << 20:
                raise RuntimeError("interval tree walk does not end")
        return out

    def objects(self, root: int) -> list[int]:
        return [n - self.rb_off for n in rb.rb_inorder(self.m, root + rb.ROOT_NODE)]


_LEFTMOST = _T.struct("rb_root_cached").offsetof("rb_leftmost")


def _vma_pages(k: Kernel, vma: int) -> int:
    km = k.kmem
    return (km.get(vma, "vm_area_struct", "vm_end") - km.get(vma, "vm_area_struct", "vm_start")) >> PAGE_SHIFT


def _i_mmap_tree(k: Kernel) -> IntervalTree:
    t = k.__dict__.get("_vma_itree")
    if t is None:
        km = k.kmem
        t = IntervalTree(
            k,
            "vm_area_struct",
            "shared.rb",
            "shared.rb_subtree_last",
            lambda v: km.get(v, "vm_area_struct", "vm_pgoff"),
            lambda v: km.get(v, "vm_area_struct", "vm_pgoff") + _vma_pages(k, v) - 1,
        )
        k._vma_itree = t
    return t


def _avc_tree(k: Kernel) -> IntervalTree:
    t = k.__dict__.get("_avc_itree")
    if t is None:
        km = k.kmem

        def start(avc: int) -> int:
            return km.get(km.get(avc, "anon_vma_chain", "vma"), "vm_area_struct", "vm_pgoff")

        def last(avc: int) -> int:
            v = km.get(avc, "anon_vma_chain", "vma")
            return km.get(v, "vm_area_struct", "vm_pgoff") + _vma_pages(k, v) - 1

        t = IntervalTree(k, "anon_vma_chain", "rb", "rb_subtree_last", start, last)
        k._avc_itree = t
    return t


def _i_mmap(k: Kernel, mapping: int) -> int:
    return k.kmem.addr(mapping, "address_space", "i_mmap")


def vma_interval_tree_insert(k: Kernel, vma: int, mapping: int) -> None:
    """vma_interval_tree_insert(vma, &mapping->i_mmap) (__vma_link_file's tree step)."""
    _i_mmap_tree(k).insert(vma, _i_mmap(k, mapping))


def vma_interval_tree_insert_after(k: Kernel, vma: int, prev: int, mapping: int) -> None:
    _i_mmap_tree(k).insert_after(vma, prev, _i_mmap(k, mapping))


def vma_interval_tree_remove(k: Kernel, vma: int, mapping: int) -> None:
    _i_mmap_tree(k).remove(vma, _i_mmap(k, mapping))


def vma_interval_tree_vmas(k: Kernel, mapping: int) -> list[int]:
    """The VMAs on mapping->i_mmap in tree order (for tests and rmap walks)."""
    return _i_mmap_tree(k).objects(_i_mmap(k, mapping))


def anon_vma_interval_tree_vmas(k: Kernel, anon_vma: int) -> list[int]:
    km = k.kmem
    return [km.get(a, "anon_vma_chain", "vma") for a in _avc_tree(k).objects(km.addr(anon_vma, "anon_vma", "rb_root"))]


# -- anon_vma ----------------------------------------------------------------------------------
def _avcs(k: Kernel, vma: int) -> list[int]:
    """The anon_vma_chains on vma->anon_vma_chain, first to last."""
    km = k.kmem
    head = km.addr(vma, "vm_area_struct", "anon_vma_chain")
    off = _T.struct("anon_vma_chain").offsetof("same_vma")
    out = []
    p = km.get(head, "list_head", "next")
    while p != head:
        out.append(p - off)
        p = km.get(p, "list_head", "next")
        if len(out) > 1 << 20:
            raise RuntimeError("anon_vma_chain list does not end")
    return out


def anon_vma_alloc(k: Kernel) -> int:
    """mm/rmap.c anon_vma_alloc(): refcount 1, no children, self-parented root."""
    km = k.kmem
    av = slub.kmem_cache_alloc(k, slub.find_cache(k, "anon_vma"), "GFP_KERNEL", caller="anon_vma_alloc")
    if not av:
        raise MemoryError("anon_vma_alloc: out of memory")
    km.set(av, "anon_vma", "refcount.counter", 1)
    km.set(av, "anon_vma", "num_children", 0)
    km.set(av, "anon_vma", "num_active_vmas", 0)
    km.set(av, "anon_vma", "parent", av)
    km.set(av, "anon_vma", "root", av)
    return av


def anon_vma_free(k: Kernel, av: int) -> None:
    slub.kmem_cache_free(k, slub.find_cache(k, "anon_vma"), av)


def anon_vma_chain_alloc(k: Kernel) -> int:
    avc = slub.kmem_cache_alloc(k, slub.find_cache(k, "anon_vma_chain"), "GFP_KERNEL", caller="anon_vma_chain_alloc")
    if not avc:
        raise MemoryError("anon_vma_chain_alloc: out of memory")
    return avc


def anon_vma_chain_free(k: Kernel, avc: int) -> None:
    slub.kmem_cache_free(k, slub.find_cache(k, "anon_vma_chain"), avc)


def anon_vma_chain_link(k: Kernel, vma: int, avc: int, anon_vma: int) -> None:
    """mm/rmap.c anon_vma_chain_link()."""
    km = k.kmem
    km.set(avc, "anon_vma_chain", "vma", vma)
    km.set(avc, "anon_vma_chain", "anon_vma", anon_vma)
    k.kmem.list_add(km.addr(avc, "anon_vma_chain", "same_vma"), km.addr(vma, "vm_area_struct", "anon_vma_chain"))
    _avc_tree(k).insert(avc, km.addr(anon_vma, "anon_vma", "rb_root"))


def _anon_vma_compatible(k: Kernel, a: int, b: int) -> bool:
    """mm/vma.c anon_vma_compatible(): adjacent, same flags but access bits, contiguous
    pgoff, equal policies."""
    km = k.kmem
    g = lambda v, f: km.get(v, "vm_area_struct", f)
    return (
        g(a, "vm_end") == g(b, "vm_start")
        and g(a, "vm_policy") == g(b, "vm_policy")
        and not ((g(a, "vm_flags") ^ g(b, "vm_flags")) & ~(VM_ACCESS_FLAGS | VM_SOFTDIRTY))
        and g(b, "vm_pgoff") == g(a, "vm_pgoff") + _vma_pages(k, a)
        and g(a, "vm_file") == g(b, "vm_file")
    )


def _reusable_anon_vma(k: Kernel, old: int, a: int, b: int) -> int:
    """mm/vma.c reusable_anon_vma(): old's anon_vma if old has exactly one chain."""
    if _anon_vma_compatible(k, a, b):
        av = k.kmem.get(old, "vm_area_struct", "anon_vma")
        if av and len(_avcs(k, old)) == 1:
            return av
    return 0


def find_mergeable_anon_vma(k: Kernel, vma: int) -> int:
    """mm/vma.c find_mergeable_anon_vma(): try the next VMA, then the previous one."""
    from mmintro.kernel import mmap

    km = k.kmem
    mm = km.get(vma, "vm_area_struct", "vm_mm")
    start, end = km.get(vma, "vm_area_struct", "vm_start"), km.get(vma, "vm_area_struct", "vm_end")
    nxt = mmap.find_vma(k, mm, end)
    if nxt and nxt != vma:
        av = _reusable_anon_vma(k, nxt, vma, nxt)
        if av:
            return av
    prev = mmap.find_vma(k, mm, start - 1) if start else 0
    if prev and prev != vma:
        return _reusable_anon_vma(k, prev, prev, vma)
    return 0


def anon_vma_prepare(k: Kernel, vma: int) -> int:
    """include/linux/rmap.h anon_vma_prepare() -> mm/rmap.c __anon_vma_prepare(): reuse a
    neighbour's anon_vma or allocate one, link it through a new anon_vma_chain."""
    km = k.kmem
    av = km.get(vma, "vm_area_struct", "anon_vma")
    if av:
        return 0
    avc = anon_vma_chain_alloc(k)
    av = find_mergeable_anon_vma(k, vma)
    if not av:
        av = anon_vma_alloc(k)
        km.set(av, "anon_vma", "num_children", 1)  # self-parent link for the new root
    km.set(vma, "vm_area_struct", "anon_vma", av)
    anon_vma_chain_link(k, vma, avc, av)
    km.set(av, "anon_vma", "num_active_vmas", km.get(av, "anon_vma", "num_active_vmas") + 1)
    return 0


def anon_vma_clone(k: Kernel, dst: int, src: int) -> int:
    """mm/rmap.c anon_vma_clone(): link dst to every anon_vma src is on (walking src's
    chain in reverse); reuse an anon_vma with no VMA and fewer than two children."""
    km = k.kmem
    for pavc in reversed(_avcs(k, src)):
        avc = anon_vma_chain_alloc(k)
        av = km.get(pavc, "anon_vma_chain", "anon_vma")
        anon_vma_chain_link(k, dst, avc, av)
        if (
            not km.get(dst, "vm_area_struct", "anon_vma")
            and km.get(src, "vm_area_struct", "anon_vma")
            and km.get(av, "anon_vma", "num_children") < 2
            and km.get(av, "anon_vma", "num_active_vmas") == 0
        ):
            km.set(dst, "vm_area_struct", "anon_vma", av)
    dav = km.get(dst, "vm_area_struct", "anon_vma")
    if dav:
        km.set(dav, "anon_vma", "num_active_vmas", km.get(dav, "anon_vma", "num_active_vmas") + 1)
    return 0


def anon_vma_fork(k: Kernel, vma: int, pvma: int) -> int:
    """mm/rmap.c anon_vma_fork(): the child VMA joins the parent's anon_vmas and gets its
    own anon_vma (child of the parent's, same root) for the pages it will CoW."""
    km = k.kmem
    pav = km.get(pvma, "vm_area_struct", "anon_vma")
    if not pav:
        return 0
    km.set(vma, "vm_area_struct", "anon_vma", 0)
    anon_vma_clone(k, vma, pvma)
    if km.get(vma, "vm_area_struct", "anon_vma"):
        return 0
    av = anon_vma_alloc(k)
    avc = anon_vma_chain_alloc(k)
    root = km.get(pav, "anon_vma", "root")
    km.set(av, "anon_vma", "root", root)
    km.set(av, "anon_vma", "parent", pav)
    km.set(root, "anon_vma", "refcount.counter", km.get(root, "anon_vma", "refcount.counter") + 1)  # get_anon_vma
    km.set(vma, "vm_area_struct", "anon_vma", av)
    km.set(av, "anon_vma", "num_active_vmas", km.get(av, "anon_vma", "num_active_vmas") + 1)
    anon_vma_chain_link(k, vma, avc, av)
    km.set(pav, "anon_vma", "num_children", km.get(pav, "anon_vma", "num_children") + 1)
    return 0


def put_anon_vma(k: Kernel, av: int) -> None:
    """put_anon_vma() -> __put_anon_vma(): free it, and the root when that was its last
    reference."""
    km = k.kmem
    ref = km.get(av, "anon_vma", "refcount.counter") - 1
    km.set(av, "anon_vma", "refcount.counter", ref)
    if ref:
        return
    root = km.get(av, "anon_vma", "root")
    anon_vma_free(k, av)
    if root != av:
        rref = km.get(root, "anon_vma", "refcount.counter") - 1
        km.set(root, "anon_vma", "refcount.counter", rref)
        if not rref:
            anon_vma_free(k, root)


def unlink_anon_vmas(k: Kernel, vma: int) -> None:
    """mm/rmap.c unlink_anon_vmas(): take the VMA's chains off their anon_vmas' trees, free
    the chains, and drop the anon_vmas left without VMAs."""
    km = k.kmem
    t = _avc_tree(k)
    empty = []
    for avc in _avcs(k, vma):
        av = km.get(avc, "anon_vma_chain", "anon_vma")
        root = km.addr(av, "anon_vma", "rb_root")
        t.remove(avc, root)
        if not km.get(root, "rb_root_cached", "rb_root.rb_node"):
            parent = km.get(av, "anon_vma", "parent")
            km.set(parent, "anon_vma", "num_children", km.get(parent, "anon_vma", "num_children") - 1)
            empty.append(avc)
            continue
        k.kmem.list_del(km.addr(avc, "anon_vma_chain", "same_vma"))
        anon_vma_chain_free(k, avc)
    av = km.get(vma, "vm_area_struct", "anon_vma")
    if av:
        km.set(av, "anon_vma", "num_active_vmas", km.get(av, "anon_vma", "num_active_vmas") - 1)
        km.set(vma, "vm_area_struct", "anon_vma", 0)
    for avc in empty:
        put_anon_vma(k, km.get(avc, "anon_vma_chain", "anon_vma"))
        k.kmem.list_del(km.addr(avc, "anon_vma_chain", "same_vma"))
        anon_vma_chain_free(k, avc)


def anon_vma_interval_tree_insert(k: Kernel, avc: int, anon_vma: int) -> None:
    _avc_tree(k).insert(avc, k.kmem.addr(anon_vma, "anon_vma", "rb_root"))


def anon_vma_interval_tree_remove(k: Kernel, avc: int, anon_vma: int) -> None:
    _avc_tree(k).remove(avc, k.kmem.addr(anon_vma, "anon_vma", "rb_root"))


def anon_vma_interval_tree_pre_update_vma(k: Kernel, vma: int) -> None:
    """mm/vma.c anon_vma_interval_tree_pre_update_vma(): every avc of the VMA out of its
    anon_vma's tree before vm_start/vm_end/vm_pgoff change."""
    km = k.kmem
    for avc in _avcs(k, vma):
        anon_vma_interval_tree_remove(k, avc, km.get(avc, "anon_vma_chain", "anon_vma"))


def anon_vma_interval_tree_post_update_vma(k: Kernel, vma: int) -> None:
    """mm/vma.c anon_vma_interval_tree_post_update_vma(): back in, under the new keys."""
    km = k.kmem
    for avc in _avcs(k, vma):
        anon_vma_interval_tree_insert(k, avc, km.get(avc, "anon_vma_chain", "anon_vma"))


def vma_address(k: Kernel, vma: int, pgoff: int, nr_pages: int) -> int | None:
    """mm/internal.h vma_address(): where page ``pgoff`` of the folio sits in the VMA (None
    for -EFAULT)."""
    km = k.kmem
    vp = km.get(vma, "vm_area_struct", "vm_pgoff")
    vs, ve = km.get(vma, "vm_area_struct", "vm_start"), km.get(vma, "vm_area_struct", "vm_end")
    if pgoff >= vp:
        a = vs + ((pgoff - vp) << PAGE_SHIFT)
        return a if vs <= a < ve else None
    if pgoff + nr_pages - 1 >= vp:
        return vs
    return None


def rmap_walk(k: Kernel, pfn: int) -> list[tuple[int, int]]:
    """mm/rmap.c rmap_walk() -> rmap_walk_anon / rmap_walk_file with a page_vma_mapped_walk
    check: the (vma, address) pairs whose page tables map a page of the folio, found from
    the folio alone (anon_vma_interval_tree_foreach over folio_anon_vma's rb_root, or
    vma_interval_tree_foreach over mapping->i_mmap, for [folio_pgoff, + nr_pages - 1])."""
    from mmintro.kernel import memory

    km = k.kmem
    f = page_folio(k, pfn)
    mapping = _get64(k, f, W_MAPPING)
    if not mapping:
        return []
    nr = folio_nr_pages(k, f)
    start = _get64(k, f, W_INDEX)
    last = start + nr - 1
    if mapping & FOLIO_MAPPING_ANON:
        if mapping & FOLIO_MAPPING_KSM == FOLIO_MAPPING_KSM:
            return []  # KSM stable nodes are not modelled
        av = mapping & ~FOLIO_MAPPING_KSM
        vmas = [
            km.get(a, "anon_vma_chain", "vma")
            for a in _avc_tree(k).foreach(km.addr(av, "anon_vma", "rb_root"), start, last)
        ]
    else:
        vmas = _i_mmap_tree(k).foreach(_i_mmap(k, mapping), start, last)
    out = []
    for vma in vmas:
        addr = vma_address(k, vma, start, nr)
        if addr is None:
            continue
        mm = km.get(vma, "vm_area_struct", "vm_mm")
        vend = km.get(vma, "vm_area_struct", "vm_end")
        # page_vma_mapped_walk(): any PTE/PMD of the range mapping a page of this folio
        a = addr
        while a < vend and a < addr + (nr << PAGE_SHIFT):
            level, _slot, e = memory.walk(k, mm, a)
            if memory.pte_present(e) and f <= memory.leaf_pfn(level, e) < f + nr and level in ("PTE", "PMD", "PUD"):
                out.append((vma, addr))
                break
            a += 1 << PAGE_SHIFT
    return out


def folio_mkclean(k: Kernel, pfn: int) -> int:
    """mm/rmap.c folio_mkclean(): for every VM_SHARED VMA mapping the folio
    (invalid_mkclean_vma skips private ones, rmap_walk), page_vma_mkclean_one write-protects
    and cleans each PTE/PMD that is dirty or writable (ptep_clear_flush + pte_wrprotect +
    pte_mkclean), so the next write through a writenotify mapping faults and dirties the folio
    again.  Returns the number of entries cleaned (folio_clear_dirty_for_io re-dirties the
    folio when it is non-zero)."""
    from mmintro.arch.x86 import _PAGE_DIRTY, _PAGE_RW
    from mmintro.kernel import memory
    from mmintro.kernel import mmap as M

    km = k.kmem
    f = page_folio(k, pfn)
    if folio_mapcount(k, f) <= 0:  # !folio_mapped()
        return 0
    nr = folio_nr_pages(k, f)
    cleaned = 0
    for vma, addr in rmap_walk(k, f):
        if not km.get(vma, "vm_area_struct", "vm_flags") & M.VM_SHARED:
            continue
        mm = km.get(vma, "vm_area_struct", "vm_mm")
        vend = km.get(vma, "vm_area_struct", "vm_end")
        a = addr
        while a < vend and a < addr + (nr << PAGE_SHIFT):
            level, slot, e = memory.walk(k, mm, a)
            step = 1 << PAGE_SHIFT
            if (
                level in ("PTE", "PMD")
                and memory.pte_present(e)
                and f <= memory.leaf_pfn(level, e) < f + nr
                and e & (_PAGE_DIRTY | _PAGE_RW)
            ):
                memory._write(k, slot, e & ~(_PAGE_DIRTY | _PAGE_RW))
                cleaned += 1
                if level == "PMD":
                    step = 1 << 21
            a += step
    return cleaned


def try_to_unmap(k: Kernel, pfn: int) -> bool:
    """mm/rmap.c try_to_unmap() -> try_to_unmap_one() for every mapping the rmap walk finds:
    each PTE mapping a page of the folio is cleared (its Dirty bit moved to the folio); an
    anonymous page's PTE becomes the folio's swap entry (``folio->swap``, which the caller
    put it in the swap cache for: swap_duplicate, exclusive while PG_anon_exclusive,
    MM_ANONPAGES -> MM_SWAPENTS), a file page's just goes (MM_FILEPAGES / MM_SHMEMPAGES
    down); the rmap and the PTE's reference are dropped.  Returns False when an anonymous
    folio has no swap entry to install (the walk stops, as try_to_unmap_one's "goto
    walk_abort" does).  PMD mappings are not unmapped here (reclaim does not take THPs)."""
    from mmintro.arch.x86 import _PAGE_DIRTY
    from mmintro.kernel import memory, swap_state, swapfile

    km = k.kmem
    f = page_folio(k, pfn)
    nr = folio_nr_pages(k, f)
    anon = folio_test_anon(k, f)
    entry = None
    if anon:
        if not swap_state.folio_test_swapcache(k, f):
            return False
        entry = swap_state.folio_swap_entry(k, f)
    for vma, addr in rmap_walk(k, f):
        mm = km.get(vma, "vm_area_struct", "vm_mm")
        vend = km.get(vma, "vm_area_struct", "vm_end")
        rss: dict[str, int] = {}
        a = addr
        while a < vend and a < addr + (nr << PAGE_SHIFT):
            level, slot, e = memory.walk(k, mm, a)
            a += 1 << PAGE_SHIFT
            if level != "PTE" or not memory.pte_present(e):
                continue
            page = memory.leaf_pfn(level, e)
            if not f <= page < f + nr:
                continue
            if e & _PAGE_DIRTY:
                if anon:
                    folio_set_flag(k, f, PG_dirty)
                else:
                    memory._mark_dirty(k, f)
            if anon:
                exclusive = folio_test(k, page, PG_anon_exclusive)
                swapfile.swap_duplicate(k, entry)
                folio_clear_flag(k, page, PG_anon_exclusive)
                memory._write(k, slot, memory.swp_entry_to_pte(entry, exclusive))
                rss["MM_ANONPAGES"] = rss.get("MM_ANONPAGES", 0) - 1
                rss["MM_SWAPENTS"] = rss.get("MM_SWAPENTS", 0) + 1
            else:
                memory._write(k, slot, 0)  # ptep_clear_flush
                member = memory.mm_counter_file(k, page)
                rss[member] = rss.get(member, 0) - 1
            folio_remove_rmap_ptes(k, page, 1, vma)
            folio_put(k, page)
        for member, n in rss.items():
            memory.add_mm_counter(k, mm, member, n)
    return True
