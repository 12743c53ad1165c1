"""Page migration of movable folios (mm/migrate.c of 6.18, with the LRU isolation of
mm/vmscan.c folio_isolate_lru and mm/compaction.c isolate_migratepages_block's checks).

What one migration does, in the kernel's order (migrate_pages -> migrate_pages_batch ->
migrate_folio_unmap, migrate_folio_move):

* the source folio is isolated from its LRU beforehand (:func:`folio_isolate_lru`: a
  reference taken, PG_lru cleared, ``lruvec_del_folio``, NR_ISOLATED_ANON/FILE up);
* ``get_new_folio`` (compaction_alloc, or any callable) gives the destination;
* ``try_to_migrate``: every PTE mapping the folio, found by :func:`mmintro.kernel.rmap.rmap_walk`,
  is taken down (its Dirty bit goes to the folio: folio_mark_dirty), the source's rmap
  removed and the mapping's reference dropped; PageAnonExclusive goes into the (virtual)
  migration entry;
* ``move_to_new_folio`` -> ``migrate_folio`` / ``__folio_migrate_mapping``: the reference count
  must be the expected one (``folio_expected_ref_count`` + the isolation reference: a
  pinned or otherwise referenced folio fails with -EAGAIN and is mapped back); an anonymous
  folio passes ``mapping`` / ``index`` / PG_swapbacked; a page-cache folio has its
  ``mapping->i_pages`` entry replaced by the new folio (the xarray marks -- dirty, towrite --
  stay on the index), its page-cache references moved, PG_dirty moved (folio_clear_dirty /
  folio_set_dirty); then ``folio_migrate_copy`` (the 4 KiB of simulated memory) and
  ``folio_migrate_flags`` (referenced, uptodate, active or unevictable -- cleared on the
  source --, workingset, checked, mappedtodisk, dirty, readahead, young/idle);
* ``remove_migration_ptes``: each PTE rewritten with the new pfn (the old entry's protection,
  write, Accessed and Dirty bits kept: x86-64 migration entries carry A/D), ``folio_get`` and
  ``folio_add_anon_rmap_pte`` (RMAP_EXCLUSIVE when it was exclusive) or
  ``folio_add_file_rmap_pte`` on the destination; the destination goes on the LRU
  (``folio_add_lru``) and its allocation reference is dropped;
* ``migrate_folio_done``: NR_ISOLATED down and the source's last reference dropped: it goes
  back to the page allocator.
* PGMIGRATE_SUCCESS / PGMIGRATE_FAIL count pages (``count_vm_events`` at the end of
  migrate_pages); the node and zone counters need no move, since compaction migrates within
  its zone (NR_FILE_PAGES & co. move in __folio_migrate_mapping only when the zones differ,
  which :func:`migrate_folio` handles as the kernel does).

Simplified: order-0 folios only (a large folio is refused with -EAGAIN, as a failed split
would be).  Compaction never isolates a folio of pageblock order or more (6.18's
skip_isolation_on_order), so PMD-mapped THPs stay put as in the kernel, and the simulator
makes no smaller large folios (no mTHP, order-0 page cache); no migration entries are left between
the two steps (nothing runs in between); the retry loop of migrate_pages_batch
(NR_MAX_MIGRATE_PAGES_RETRY passes) is one pass, because nothing in the simulator changes
a reference count between passes; movable non-LRU pages (balloon, zsmalloc's
movable_operations) do not exist in the simulator; mlocked (unevictable) folios are not
isolated (6.18 isolates them when vm.compact_unevictable_allowed is 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PTE_PFN_MASK
from mmintro.kernel import page_alloc as pa
from mmintro.kernel import rmap, swap
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "MIGRATEPAGE_SUCCESS",
    "MigrateStats",
    "folio_isolate_lru",
    "folio_putback_lru",
    "migrate_folio",
    "migrate_pages",
    "putback_movable_pages",
]

_T = get_types()
_EV = _T.enum("vm_event_item")
_PF = _T.enum("pageflags")
PG_locked = _PF["PG_locked"]
PG_writeback = _PF["PG_writeback"]
PG_dirty = _PF["PG_dirty"]
PG_lru = _PF["PG_lru"]
PG_active = _PF["PG_active"]
PG_unevictable = _PF["PG_unevictable"]
PG_mlocked = _PF["PG_mlocked"]
PG_swapbacked = _PF["PG_swapbacked"]
PG_anon_exclusive = _PF["PG_anon_exclusive"]
PG_private = _PF["PG_private"]
PG_swapcache = _PF["PG_swapcache"]
# folio_migrate_flags(): the flags that follow the data (PG_active and PG_unevictable
# by their own rules; PG_dirty in the mapping step; PG_anon_exclusive through the PTEs)
_MIGRATE_FLAGS = [
    _PF[n]
    for n in ("PG_referenced", "PG_uptodate", "PG_workingset", "PG_checked", "PG_readahead", "PG_young", "PG_idle")
]

MIGRATEPAGE_SUCCESS = 0
EAGAIN = -11
ENOMEM = -12
MR_COMPACTION = _T.const("MR_COMPACTION")


class MigrateStats:
    """struct migrate_pages_stats: what one migrate_pages() call did, in folios and pages."""

    __slots__ = ("nr_succeeded", "nr_failed_pages", "nr_failed", "moved")

    def __init__(self) -> None:
        self.nr_succeeded = 0  # pages migrated
        self.nr_failed_pages = 0
        self.nr_failed = 0  # folios that stay where they were
        self.moved: list[tuple[int, int]] = []  # (old pfn, new pfn) of every migrated folio


def _flags(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = pa.page_words(k, pfn)
    return int(mv64[w + pa.W_FLAGS])


def _count(k: Kernel, item: str, n: int) -> None:
    if n:
        k.vm_events[k.current_cpu][_EV[item]] += n


def _isolated_item(k: Kernel, pfn: int) -> str:
    """NR_ISOLATED_ANON + folio_is_file_lru(folio)."""
    return "NR_ISOLATED_ANON" if _flags(k, pfn) >> PG_swapbacked & 1 else "NR_ISOLATED_FILE"


# -- isolation ------------------------------------------------------------------------------------
def folio_isolate_lru(k: Kernel, pfn: int) -> bool:
    """mm/vmscan.c folio_isolate_lru() as isolate_migratepages_block uses it: take a reference
    (folio_get), folio_test_clear_lru, lruvec_del_folio (the list and its counters; PG_active
    stays), then node_stat_mod_folio(NR_ISOLATED_ANON + folio_is_file_lru).  False when the
    folio is not on an LRU."""
    if not swap.folio_test(k, pfn, PG_lru):
        return False
    rmap.folio_get(k, pfn)
    swap._lruvec_del_folio(k, pfn)
    swap.folio_clear_flag(k, pfn, PG_lru)
    k.mod_node_page_state(swap.folio_nid(k, pfn), _isolated_item(k, pfn), swap.folio_nr_pages(k, pfn))
    return True


def folio_putback_lru(k: Kernel, pfn: int) -> None:
    """mm/vmscan.c folio_putback_lru(): folio_add_lru + folio_put (the isolation reference)."""
    swap.folio_add_lru(k, pfn)
    rmap.folio_put(k, pfn)


def putback_movable_pages(k: Kernel, pfns: list[int]) -> None:
    """mm/migrate.c putback_movable_pages(): every isolated folio back on its LRU, NR_ISOLATED
    down."""
    for pfn in pfns:
        k.mod_node_page_state(swap.folio_nid(k, pfn), _isolated_item(k, pfn), -swap.folio_nr_pages(k, pfn))
        folio_putback_lru(k, pfn)
    pfns.clear()


# -- one folio -------------------------------------------------------------------------------------
def folio_expected_ref_count(k: Kernel, pfn: int) -> int:
    """include/linux/mm.h folio_expected_ref_count(): the references a folio's owners hold --
    one per mapping (folio_mapcount) and, for a page-cache folio, one per page of the cache,
    plus one for PG_private -- without the caller's."""
    f = _flags(k, pfn)
    mapping = rmap._get64(k, pfn, rmap.W_MAPPING)
    nr = swap.folio_nr_pages(k, pfn)
    ref = 0
    if mapping & rmap.FOLIO_MAPPING_ANON:
        if f >> PG_swapcache & 1 and f >> PG_swapbacked & 1:
            ref += nr
    elif mapping:
        ref += nr + (f >> PG_private & 1)
    return ref + rmap.folio_mapcount(k, pfn)


def try_to_migrate(k: Kernel, src: int) -> list[tuple[int, int, int, bool]]:
    """mm/rmap.c try_to_migrate() on an order-0 folio: every PTE mapping it (rmap_walk) is
    cleared -- (vma, slot, old entry, anon exclusive) kept for remove_migration_ptes --, a
    dirty PTE dirties the folio, the rmap and the mapping's reference go."""
    from mmintro.kernel import memory

    out = []
    anon = rmap.folio_test_anon(k, src)
    for vma, addr in rmap.rmap_walk(k, src):
        mm = k.kmem.get(vma, "vm_area_struct", "vm_mm")
        level, slot, e = memory.walk(k, mm, addr)
        if level != "PTE" or not memory.pte_present(e) or memory.pte_pfn(e) != src:
            continue
        if e & memory._PAGE_DIRTY and not _flags(k, src) >> PG_dirty & 1:
            if anon:
                swap.folio_set_flag(k, src, PG_dirty)
            else:
                memory._mark_dirty(k, src)
        exclusive = anon and bool(_flags(k, src) >> PG_anon_exclusive & 1)
        if exclusive:
            swap.folio_clear_flag(k, src, PG_anon_exclusive)  # folio_try_share_anon_rmap_pte
        memory._write(k, slot, 0)
        rmap.folio_remove_rmap_ptes(k, src, 1, vma)
        rmap.folio_put(k, src)
        out.append((vma, slot, e, exclusive))
    return out


def remove_migration_ptes(k: Kernel, old: int, new: int, ptes: list[tuple[int, int, int, bool]]) -> None:
    """mm/migrate.c remove_migration_ptes() -> remove_migration_pte(): each entry back,
    pointing at ``new`` (the pfn bits changed, protnone inversion included: XOR with the
    difference changes the pfn whether or not it is stored inverted), with a reference and
    the rmap of ``new``."""
    from mmintro.kernel import memory

    anon = rmap.folio_test_anon(k, new)
    delta = ((old ^ new) << PAGE_SHIFT) & PTE_PFN_MASK
    for vma, slot, e, exclusive in ptes:
        rmap.folio_get(k, new)
        if anon:
            rmap.folio_add_anon_rmap_ptes(k, new, 1, vma, None, exclusive)
        else:
            rmap.folio_add_file_rmap_ptes(k, new, 1, vma)
        memory._write(k, slot, e ^ delta)


def folio_migrate_mapping(k: Kernel, dst: int, src: int, extra_count: int) -> int:
    """mm/migrate.c __folio_migrate_mapping(): -EAGAIN unless the count is the expected one;
    then the mapping moves (anon: mapping/index/PG_swapbacked; page cache: the i_pages entry,
    the cache's references, PG_dirty, and the node/zone counters if the zones differ)."""
    from mmintro.kernel import inode as I

    expected = folio_expected_ref_count(k, src) + extra_count
    if rmap.folio_ref_count(k, src) != expected:
        return EAGAIN
    mapping = rmap._get64(k, src, rmap.W_MAPPING)
    index = rmap._get64(k, src, rmap.W_INDEX)
    nr = swap.folio_nr_pages(k, src)
    if mapping & rmap.FOLIO_MAPPING_ANON or not mapping:
        rmap._set64(k, dst, rmap.W_INDEX, index)
        rmap._set64(k, dst, rmap.W_MAPPING, mapping)
        if _flags(k, src) >> PG_swapbacked & 1:
            swap.folio_set_flag(k, dst, PG_swapbacked)
        return MIGRATEPAGE_SUCCESS
    rmap._set64(k, dst, rmap.W_INDEX, index)
    rmap._set64(k, dst, rmap.W_MAPPING, mapping)
    rmap.folio_get(k, dst, nr)  # folio_ref_add(newfolio, nr): the page cache's references
    if _flags(k, src) >> PG_swapbacked & 1:
        swap.folio_set_flag(k, dst, PG_swapbacked)
    dirty = bool(_flags(k, src) >> PG_dirty & 1)
    if dirty:
        swap.folio_clear_flag(k, src, PG_dirty)
        swap.folio_set_flag(k, dst, PG_dirty)
    I.mapping_xa(k, mapping).xa_store(index, k.pfn_to_page(dst))  # xas_store(&xas, newfolio)
    # folio_ref_unfreeze(folio, expected_count - nr)
    rmap._set32(k, src, rmap.D_REFCOUNT, rmap.folio_ref_count(k, src) - nr)
    oldzone, newzone = pa.page_zone(k, src), pa.page_zone(k, dst)
    if oldzone is not newzone:
        for pfn, sign in ((src, -1), (dst, 1)):
            nid = swap.folio_nid(k, pfn)
            k.mod_node_page_state(nid, "NR_FILE_PAGES", sign * nr)
            if _flags(k, dst) >> PG_swapbacked & 1:
                k.mod_node_page_state(nid, "NR_SHMEM", sign * nr)
            if dirty:
                k.mod_node_page_state(nid, "NR_FILE_DIRTY", sign * nr)
                k.mod_zone_page_state(pa.page_zone(k, pfn), "NR_ZONE_WRITE_PENDING", sign * nr)
    return MIGRATEPAGE_SUCCESS


def folio_migrate_flags(k: Kernel, dst: int, src: int) -> None:
    """mm/migrate.c folio_migrate_flags(): the state that follows the data."""
    f = _flags(k, src)
    for bit in _MIGRATE_FLAGS:
        if f >> bit & 1:
            swap.folio_set_flag(k, dst, bit)
    if f >> PG_active & 1:
        swap.folio_clear_flag(k, src, PG_active)  # folio_test_clear_active
        swap.folio_set_flag(k, dst, PG_active)
    elif f >> PG_unevictable & 1:
        swap.folio_clear_flag(k, src, PG_unevictable)  # folio_test_clear_unevictable
        swap.folio_set_flag(k, dst, PG_unevictable)
    if not rmap.folio_test_anon(k, src) and f >> PG_anon_exclusive & 1:
        swap.folio_set_flag(k, dst, PG_anon_exclusive)  # PG_mappedtodisk of a file folio
    if f >> PG_dirty & 1:
        swap.folio_set_flag(k, dst, PG_dirty)  # "Move dirty on pages not done by folio_migrate_mapping()"


def migrate_folio(k: Kernel, dst: int, src: int) -> int:
    """mm/migrate.c migrate_folio() -> __migrate_folio(): mapping, then folio_migrate_copy
    (the page's bytes) and folio_migrate_flags.  ``extra_count`` 1: the isolation reference."""
    from mmintro.kernel import memory

    rc = folio_migrate_mapping(k, dst, src, 1)
    if rc != MIGRATEPAGE_SUCCESS:
        return rc
    memory.copy_page(k, dst, src)
    folio_migrate_flags(k, dst, src)
    return MIGRATEPAGE_SUCCESS


def _migrate_one(
    k: Kernel, src: int, get_new_folio: Callable[[int], int | None], put_new_folio: Callable[[int], None] | None
) -> tuple[int, int | None]:
    """migrate_folio_unmap + migrate_folio_move for one isolated order-0 folio; returns
    (MIGRATEPAGE_SUCCESS, -EAGAIN or -ENOMEM; the new pfn or None)."""
    if swap.folio_nr_pages(k, src) != 1:
        return EAGAIN, None  # large folios: not modelled (the kernel would split or migrate them whole)
    if rmap.folio_ref_count(k, src) == 1:
        # "Folio was freed from under us. So we are done." (migrate_folio_unmap)
        swap.folio_clear_flag(k, src, PG_active)
        swap.folio_clear_flag(k, src, PG_unevictable)
        return MIGRATEPAGE_SUCCESS, None
    f = _flags(k, src)
    if f >> PG_locked & 1 or f >> PG_writeback & 1:
        return EAGAIN, None  # folio_trylock fails / under writeback (MIGRATE_SYNC would wait)
    dst = get_new_folio(src)
    if dst is None:
        return ENOMEM, None
    ptes = try_to_migrate(k, src) if rmap.folio_mapcount(k, src) > 0 else []
    rc = migrate_folio(k, dst, src)
    if rc != MIGRATEPAGE_SUCCESS:
        remove_migration_ptes(k, src, src, ptes)  # mapped back where it was
        if put_new_folio is not None:
            put_new_folio(dst)
        else:
            k.free_pages(dst, 0)
        return rc, None
    if not rmap.folio_test_anon(k, src):
        rmap._set64(k, src, rmap.W_MAPPING, 0)  # move_to_new_folio: src->mapping = NULL
    swap.folio_add_lru(k, dst)
    remove_migration_ptes(k, src, dst, ptes)
    rmap.folio_put(k, dst)  # the allocation's reference: the mappings and the cache hold it now
    return MIGRATEPAGE_SUCCESS, dst


def migrate_pages(
    k: Kernel,
    pfns: list[int],
    get_new_folio: Callable[[int], int | None],
    put_new_folio: Callable[[int], None] | None = None,
    reason: int = MR_COMPACTION,
    stats: MigrateStats | None = None,
) -> int:
    """mm/migrate.c migrate_pages(): migrate every isolated folio of ``pfns`` (consumed);
    the ones that fail stay in ``pfns`` for the caller's putback_movable_pages.  Returns the
    number of folios not migrated (0 = all), or -ENOMEM when no destination could be had
    (the remaining folios stay in ``pfns``)."""
    st = stats if stats is not None else MigrateStats()
    failed: list[int] = []
    rc_all = 0
    todo = list(pfns)
    pfns.clear()
    for i, src in enumerate(todo):
        nr = swap.folio_nr_pages(k, src)
        rc, new = _migrate_one(k, src, get_new_folio, put_new_folio)
        if rc == MIGRATEPAGE_SUCCESS:
            # migrate_folio_done(): NR_ISOLATED down, the isolation reference dropped (the
            # last one: the folio goes back to the allocator).
            k.mod_node_page_state(swap.folio_nid(k, src), _isolated_item(k, src), -nr)
            rmap.folio_put(k, src)
            st.nr_succeeded += nr
            if new is not None:
                st.moved.append((src, new))
            continue
        if rc == ENOMEM:
            failed.append(src)
            failed.extend(todo[i + 1 :])
            rc_all = ENOMEM
            break
        failed.append(src)
        st.nr_failed += 1
        st.nr_failed_pages += nr
    pfns.extend(failed)
    _count(k, "PGMIGRATE_SUCCESS", st.nr_succeeded)
    _count(k, "PGMIGRATE_FAIL", st.nr_failed_pages)
    if reason == MR_COMPACTION:
        k.__dict__.setdefault("migrations", []).extend(st.moved)
    return rc_all if rc_all else st.nr_failed
