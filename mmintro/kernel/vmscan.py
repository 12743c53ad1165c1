"""Page reclaim (mm/vmscan.c), the classic active/inactive LRU of 6.18 (CONFIG_LRU_GEN off).

Reclaim takes folios from the tail of a node's LRU lists (``isolate_lru_folios``), ages the
active lists into the inactive ones (``shrink_active_list``: PG_active cleared, PG_workingset
set, unless an executable file folio was referenced), and tries to free inactive folios
(``shrink_folio_list``):

* ``folio_check_references`` asks the rmap (``folio_referenced``: every PTE mapping the folio,
  its Accessed bit tested and cleared) and PG_referenced: mapped folios get a second trip
  around the LRU, folios referenced twice are activated;
* anonymous folios get swap space (``add_to_swap``: into the swap cache), are unmapped
  (``try_to_unmap``: each PTE becomes a swap entry) and written (``pageout`` ->
  ``swap_writeout``); file folios are unmapped; dirty file folios are not written by reclaim
  in 6.18 -- they get PG_reclaim, NR_VMSCAN_IMMEDIATE and go back to the active list, and the
  flusher is woken;
* ``__remove_mapping`` takes the folio out of the page or swap cache and leaves a workingset
  shadow entry (mmintro.kernel.workingset), and the folio is freed.

Above that: ``get_scan_count`` (the swappiness-weighted split of scanning between anon and
file from the lruvec's ``anon_cost``/``file_cost``, SCAN_FILE without swap),
``shrink_lruvec`` (SWAP_CLUSTER_MAX batches, proportional reclaim), ``shrink_node``,
``do_try_to_free_pages`` (priority DEF_PRIORITY down to 0) for direct reclaim from the page
allocator's slow path (``try_to_free_pages``: ALLOCSTALL_*, PGSCAN_DIRECT, PGSTEAL_DIRECT),
and kswapd (``wakeup_kswapd`` records ``kswapd_order``/``kswapd_highest_zoneidx`` in the
node; ``balance_pgdat`` reclaims until a zone is balanced at its high watermark, boosted
watermarks included: PAGEOUTRUN, PGSCAN_KSWAPD, PGSTEAL_KSWAPD, ``kswapd_failures``).

The simulator runs deferred work synchronously: a woken kswapd runs ``balance_pgdat`` at once,
before the allocating task retries (as if on another CPU that finished first); its
``task_struct`` (the [kswapd0] kernel thread) is not modelled.  Swap I/O completes
synchronously (like a zram or pmem swap device, SWP_SYNCHRONOUS_IO), so an anonymous folio is
freed in the pass that wrote it.  Large folios are reclaimed whole only from the page cache;
a large anonymous folio is activated (THP split for swap-out is not modelled), and so is a
shmem/tmpfs folio (shmem_writeout, which swaps shmem out through its page cache, is not
modelled).  No slab
shrinkers are run (the simulator's dentry and inode caches keep what is in use), and there is
no writeback throttling (``reclaim_throttle``) nor ``vmpressure``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch.x86 import _PAGE_ACCESSED, PAGE_SHIFT, PMD_SHIFT
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel import mmap, rmap, swap
from mmintro.kernel import page_alloc as pa
from mmintro.kernel.swap import (
    LRU_ACTIVE,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    PG_active,
    PG_dirty,
    PG_lru,
    PG_mlocked,
    PG_reclaim,
    PG_referenced,
    PG_swapbacked,
    PG_unevictable,
    PG_workingset,
    PG_writeback,
)

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel
    from mmintro.kernel.mm_init import ZoneState

__all__ = [
    "DEF_PRIORITY",
    "MAX_RECLAIM_RETRIES",
    "ReclaimStat",
    "ScanControl",
    "balance_pgdat",
    "folio_referenced",
    "get_scan_count",
    "inactive_is_low",
    "isolate_lru_folios",
    "lru_note_cost",
    "pgdat_balanced",
    "shrink_active_list",
    "shrink_folio_list",
    "shrink_inactive_list",
    "shrink_lruvec",
    "shrink_node",
    "should_reclaim_retry",
    "try_to_free_pages",
    "wakeup_kswapd",
    "zone_reclaimable_pages",
]

_T = swap._T
DEF_PRIORITY = 12  # mm/vmscan.c / include/linux/mmzone.h
MAX_RECLAIM_RETRIES = 16  # mm/internal.h
SCAN_NS = 1_000  # the simulator's cost model: direct reclaim spends 1 us per page it looks at
SWAP_CLUSTER_MAX = kc.SWAP_CLUSTER_MAX
SWAP_CLUSTER_MAX_SKIPPED = SWAP_CLUSTER_MAX << 10
MAX_SWAPPINESS = 200
PAGE_ALLOC_COSTLY_ORDER = 3
EVICTABLE_LRUS = (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)
DEACTIVATE_ANON = 1
DEACTIVATE_FILE = 2
_PGDAT = _T.enum("pgdat_flags")
PGDAT_DIRTY = _PGDAT["PGDAT_DIRTY"]
PGDAT_WRITEBACK = _PGDAT["PGDAT_WRITEBACK"]
MAX_NR_ZONES = _T.enum("zone_type")["__MAX_NR_ZONES"]
VM_EXEC = mmap.VM_EXEC
VM_LOCKED = mmap.VM_LOCKED

FOLIOREF_RECLAIM, FOLIOREF_RECLAIM_CLEAN, FOLIOREF_KEEP, FOLIOREF_ACTIVATE = range(4)
PAGE_KEEP, PAGE_ACTIVATE, PAGE_SUCCESS, PAGE_CLEAN = range(4)


@dataclass
class ReclaimStat:
    """struct reclaim_stat: what one shrink_folio_list() pass saw."""

    nr_dirty: int = 0
    nr_unqueued_dirty: int = 0
    nr_congested: int = 0
    nr_writeback: int = 0
    nr_immediate: int = 0
    nr_pageout: int = 0
    nr_activate: list[int] = field(default_factory=lambda: [0, 0])
    nr_ref_keep: int = 0
    nr_unmap_fail: int = 0


@dataclass
class ScanControl:
    """struct scan_control (mm/vmscan.c) for one reclaim invocation."""

    nr_to_reclaim: int = SWAP_CLUSTER_MAX
    gfp_mask: int = 0
    order: int = 0
    priority: int = DEF_PRIORITY
    reclaim_idx: int = MAX_NR_ZONES - 1
    nodemask: frozenset[int] | None = None
    may_writepage: bool = True
    may_unmap: bool = True
    may_swap: bool = True
    may_deactivate: int = 0
    force_deactivate: bool = False
    skipped_deactivate: bool = False
    cache_trim_mode: bool = False
    file_is_tiny: bool = False
    compaction_ready: bool = False
    anon_cost: int = 0
    file_cost: int = 0
    kswapd: bool = False  # current_is_kswapd()
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    nr_scanned_total: int = 0  # the modelled cost of this invocation: pages looked at ...
    nr_pageout_total: int = 0  # ... and written to swap
    # sc->nr: the counts shrink_node uses to decide on writeback waits
    nr_dirty: int = 0
    nr_unqueued_dirty: int = 0
    nr_writeback: int = 0
    nr_immediate: int = 0
    nr_taken: int = 0
    nr_file_taken: int = 0


# -- books -----------------------------------------------------------------------------------
def _ev(k: Kernel, item: str, n: int = 1) -> None:
    if n:
        k.vm_events[k.current_cpu][swap._EV[item]] += n


def _zone_ev(k: Kernel, item: str, zone_idx: int, n: int) -> None:
    """__count_zid_vm_events(item, zid, n): ITEM_<ZONE>."""
    from mmintro.kernel.mm_init import ZONE_NAMES

    _ev(k, f"{item}_{ZONE_NAMES[zone_idx].upper()}", n)


def _node_state(k: Kernel, nid: int, item: str) -> int:
    return k.node_vm_stat[nid].get(item, 0)


def _zone_state(z: ZoneState, item: str) -> int:
    return z.vm_stat.get(item, 0)


def _lruvec(k: Kernel, nid: int) -> int:
    return k.pgdat[nid] + swap.LRUVEC_OFF


def _lruvec_get(k: Kernel, nid: int, member: str) -> int:
    return k.kmem.get(_lruvec(k, nid), "lruvec", member)


def _lruvec_set(k: Kernel, nid: int, member: str, v: int) -> None:
    k.kmem.set(_lruvec(k, nid), "lruvec", member, v)


def _pgdat_get(k: Kernel, nid: int, member: str) -> int:
    return k.kmem.get(k.pgdat[nid], "pglist_data", member)


def _pgdat_set(k: Kernel, nid: int, member: str, v: int) -> None:
    k.kmem.set(k.pgdat[nid], "pglist_data", member, v)


def _managed_zones(k: Kernel, nid: int, highest: int):
    return [z for z in k.zones[nid][: highest + 1] if z.managed]


def is_file_lru(lru: int) -> bool:
    return lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)


def is_active_lru(lru: int) -> bool:
    return lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)


def lruvec_lru_size(k: Kernel, nid: int, lru: int, zone_idx: int) -> int:
    """lruvec_lru_size(): the list's pages in zones 0..zone_idx of the node."""
    item = swap.ZONE_LRU_ITEM[lru]
    return sum(_zone_state(z, item) for z in k.zones[nid][: zone_idx + 1])


def can_reclaim_anon_pages(k: Kernel, nid: int) -> bool:
    """can_reclaim_anon_pages() without memcg or demotion: swap space left."""
    from mmintro.kernel import swapfile

    return swapfile.get_nr_swap_pages(k) > 0


def zone_reclaimable_pages(k: Kernel, z: ZoneState) -> int:
    """zone_reclaimable_pages(): the zone's file LRU pages, and anon when swap is left."""
    nr = _zone_state(z, "NR_ZONE_INACTIVE_FILE") + _zone_state(z, "NR_ZONE_ACTIVE_FILE")
    if can_reclaim_anon_pages(k, z.nid):
        nr += _zone_state(z, "NR_ZONE_INACTIVE_ANON") + _zone_state(z, "NR_ZONE_ACTIVE_ANON")
    return nr


def int_sqrt(x: int) -> int:
    r = 0
    b = 1 << ((x.bit_length() + 1) & ~1)
    while b:
        if x >= r + b:
            x -= r + b
            r = (r >> 1) + b
        else:
            r >>= 1
        b >>= 2
    return r


def inactive_is_low(k: Kernel, nid: int, inactive_lru: int) -> bool:
    """inactive_is_low(): the inactive list is short of ``inactive_ratio`` (sqrt(10 * GB))
    times the active list's share."""
    active_lru = inactive_lru + LRU_ACTIVE
    inactive = _node_state(k, nid, swap.NODE_LRU_ITEM[inactive_lru])
    active = _node_state(k, nid, swap.NODE_LRU_ITEM[active_lru])
    gb = (inactive + active) >> (30 - PAGE_SHIFT)
    inactive_ratio = int_sqrt(10 * gb) if gb else 1
    return inactive * inactive_ratio < active


def lru_note_cost(k: Kernel, nid: int, file: bool, nr_io: int, nr_rotated: int) -> None:
    """mm/swap.c lru_note_cost(): the cost of reclaiming one type (its I/O, weighted by
    SWAP_CLUSTER_MAX, plus the rotations), halving both costs when they outgrow a quarter of
    the LRU pages."""
    cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated
    member = "file_cost" if file else "anon_cost"
    _lruvec_set(k, nid, member, _lruvec_get(k, nid, member) + cost)
    anon_cost, file_cost = _lruvec_get(k, nid, "anon_cost"), _lruvec_get(k, nid, "file_cost")
    lrusize = sum(_node_state(k, nid, swap.NODE_LRU_ITEM[lru]) for lru in EVICTABLE_LRUS)
    if anon_cost + file_cost > lrusize // 4:
        _lruvec_set(k, nid, "anon_cost", anon_cost // 2)
        _lruvec_set(k, nid, "file_cost", file_cost // 2)


def lru_note_cost_refault(k: Kernel, pfn: int) -> None:
    """mm/swap.c lru_note_cost_refault(): a restored workingset folio costs one I/O."""
    lru_note_cost(k, swap.folio_nid(k, pfn), not swap.folio_test(k, pfn, PG_swapbacked), swap.folio_nr_pages(k, pfn), 0)


# -- the rmap side ---------------------------------------------------------------------------
def folio_referenced(k: Kernel, pfn: int) -> tuple[int, int]:
    """mm/rmap.c folio_referenced(): (referenced, vm_flags).  Every PTE (or PMD) mapping the
    folio whose Accessed bit is set counts once and has the bit cleared
    (ptep_clear_flush_young); ``vm_flags`` collects the flags of the VMAs that referenced
    it (VM_LOCKED of any mapping VMA stops the walk: the folio is mlocked)."""
    from mmintro.kernel import memory, rmap

    f = rmap.page_folio(k, pfn)
    if rmap.folio_mapcount(k, f) <= 0:
        return 0, 0
    nr = swap.folio_nr_pages(k, f)
    km = k.kmem
    referenced = 0
    vm_flags = 0
    for vma, addr in rmap.rmap_walk(k, f):
        flags = km.get(vma, "vm_area_struct", "vm_flags")
        if flags & VM_LOCKED:
            return referenced, vm_flags | VM_LOCKED
        mm = km.get(vma, "vm_area_struct", "vm_mm")
        vend = km.get(vma, "vm_area_struct", "vm_end")
        a = addr
        hit = 0
        while a < vend and a < addr + (nr << PAGE_SHIFT):
            level, slot, e = memory.walk(k, mm, a)
            step = 1 << PAGE_SHIFT
            if level in ("PTE", "PMD") and memory.pte_present(e) and f <= memory.leaf_pfn(level, e) < f + nr:
                if level == "PMD":
                    step = 1 << PMD_SHIFT
                if e & _PAGE_ACCESSED:
                    memory._write(k, slot, e & ~_PAGE_ACCESSED)
                    hit += 1
            a += step
        if hit:
            referenced += hit
            vm_flags |= flags
    return referenced, vm_flags


def folio_check_references(k: Kernel, pfn: int) -> int:
    """mm/vmscan.c folio_check_references() (classic LRU)."""
    referenced_ptes, vm_flags = folio_referenced(k, pfn)
    if vm_flags & VM_LOCKED:
        return FOLIOREF_ACTIVATE
    referenced_folio = swap.folio_clear_flag(k, pfn, PG_referenced)
    file = not swap.folio_test(k, pfn, PG_swapbacked)
    if referenced_ptes:
        # All mapped folios start out with page table references from the instantiating
        # fault: look twice before activating; executable file folios after one use.
        swap.folio_set_flag(k, pfn, PG_referenced)
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF_ACTIVATE
        if vm_flags & VM_EXEC and file:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    if referenced_folio and file:
        return FOLIOREF_RECLAIM_CLEAN
    return FOLIOREF_RECLAIM


# -- isolation ---------------------------------------------------------------------------------
def _tail(k: Kernel, head: int) -> int | None:
    prev = k.kmem.get(head, "list_head", "prev")
    if prev == head:
        return None
    return (prev - swap.LRU_OFF - k.vmemmap_base) // k.struct_page_size


def isolate_lru_folios(k: Kernel, nid: int, nr_to_scan: int, sc: ScanControl, lru: int) -> tuple[list[int], int]:
    """mm/vmscan.c isolate_lru_folios(): up to ``nr_to_scan`` pages' worth of folios from the
    tail of ``lru``; folios of zones above ``sc.reclaim_idx`` are skipped (PGSCAN_SKIP_*,
    moved back to the head).  Returns (the isolated folios, pages scanned); each isolated
    folio has a reference taken, PG_lru cleared and is off the list and its counters."""
    head = swap.lru_list_head(k, nid, lru)
    taken: list[int] = []
    skipped: list[int] = []
    nr_skipped = [0] * MAX_NR_ZONES
    scan = total_scan = 0
    max_nr_skipped = 0
    while scan < nr_to_scan:
        pfn = _tail(k, head)
        if pfn is None:
            break
        nr = swap.folio_nr_pages(k, pfn)
        total_scan += nr
        zidx = pa.page_zone(k, pfn).idx
        if max_nr_skipped < SWAP_CLUSTER_MAX_SKIPPED and zidx > sc.reclaim_idx:
            nr_skipped[zidx] += nr
            k.kmem.list_del(k.pfn_to_page(pfn) + swap.LRU_OFF)
            skipped.append(pfn)
            max_nr_skipped += 1
            continue
        scan += nr
        if not sc.may_unmap and _mapped(k, pfn):
            k.kmem.list_del(k.pfn_to_page(pfn) + swap.LRU_OFF)  # move_to = src: list_move to the head
            k.kmem.list_add(k.pfn_to_page(pfn) + swap.LRU_OFF, head)
            continue
        rmap.folio_get(k, pfn)  # folio_try_get()
        swap.folio_clear_flag(k, pfn, PG_lru)
        swap._lruvec_del_folio(k, pfn)
        taken.append(pfn)
    for pfn in reversed(skipped):  # list_splice(&folios_skipped, src)
        k.kmem.list_add(k.pfn_to_page(pfn) + swap.LRU_OFF, head)
    for zidx, n in enumerate(nr_skipped):
        if n:
            _zone_ev(k, "PGSCAN_SKIP", zidx, n)
    return taken, total_scan


def _mapped(k: Kernel, pfn: int) -> bool:
    return rmap.folio_mapcount(k, pfn) > 0


def _isolated_item(k: Kernel, pfn: int) -> str:
    return "NR_ISOLATED_ANON" if swap.folio_test(k, pfn, PG_swapbacked) else "NR_ISOLATED_FILE"


def _mod_isolated(k: Kernel, nid: int, folios: list[int], sign: int) -> None:
    anon = sum(swap.folio_nr_pages(k, p) for p in folios if swap.folio_test(k, p, PG_swapbacked))
    file = sum(swap.folio_nr_pages(k, p) for p in folios) - anon
    if anon:
        k.mod_node_page_state(nid, "NR_ISOLATED_ANON", sign * anon)
    if file:
        k.mod_node_page_state(nid, "NR_ISOLATED_FILE", sign * file)


def move_folios_to_lru(k: Kernel, nid: int, folios: list[int]) -> int:
    """mm/vmscan.c move_folios_to_lru(): put isolated folios back on the list their flags
    name (PG_lru set again) and drop the isolation reference; returns the pages that went to
    an active list."""
    nr_moved = 0
    for pfn in folios:
        if not swap.folio_evictable(k, pfn):
            swap.folio_clear_flag(k, pfn, PG_active)
            swap.folio_set_flag(k, pfn, PG_unevictable)
        swap.lruvec_add_folio(k, pfn)
        swap.folio_set_flag(k, pfn, PG_lru)
        if swap.folio_test(k, pfn, PG_active):
            nr_moved += swap.folio_nr_pages(k, pfn)
        rmap.folio_put(k, pfn)  # the isolation reference (never the last: the cache holds one)
    return nr_moved


# -- shrinking the lists -------------------------------------------------------------------------
def shrink_active_list(k: Kernel, nid: int, nr_to_scan: int, sc: ScanControl, lru: int) -> None:
    """mm/vmscan.c shrink_active_list(): age up to ``nr_to_scan`` pages off the active tail:
    referenced executable file folios keep their place, all others go to the inactive list
    with PG_workingset (PGREFILL, PGDEACTIVATE)."""
    file = is_file_lru(lru)
    folios, nr_scanned = isolate_lru_folios(k, nid, nr_to_scan, sc, lru)
    _mod_isolated(k, nid, folios, 1)
    _ev(k, "PGREFILL", nr_scanned)
    l_active, l_inactive = [], []
    nr_rotated = 0
    for pfn in folios:
        if not swap.folio_evictable(k, pfn):
            l_active.append(pfn)  # folio_putback_lru: to the unevictable list
            continue
        referenced, vm_flags = folio_referenced(k, pfn)
        if referenced:
            # Identify referenced, file-backed active folios and give them one more trip
            # around the active list, so that executable code stays in memory.
            if vm_flags & VM_EXEC and not swap.folio_test(k, pfn, PG_swapbacked):
                nr_rotated += swap.folio_nr_pages(k, pfn)
                l_active.append(pfn)
                continue
        swap.folio_clear_flag(k, pfn, PG_active)  # we are de-activating
        swap.folio_set_flag(k, pfn, PG_workingset)
        l_inactive.append(pfn)
    move_folios_to_lru(k, nid, l_active)
    nr_deactivate = sum(swap.folio_nr_pages(k, p) for p in l_inactive)
    move_folios_to_lru(k, nid, l_inactive)
    _ev(k, "PGDEACTIVATE", nr_deactivate)
    _mod_isolated(k, nid, folios, -1)
    if nr_rotated:
        lru_note_cost(k, nid, file, 0, nr_rotated)


def shrink_folio_list(
    k: Kernel, folios: list[int], nid: int, sc: ScanControl, stat: ReclaimStat
) -> tuple[int, list[int]]:
    """mm/vmscan.c shrink_folio_list(): try to free each isolated folio.  Returns (pages
    reclaimed, the folios kept or to be activated, still isolated)."""
    from mmintro.kernel import swap_state, swapfile

    nr_reclaimed = 0
    ret: list[int] = []
    for pfn in folios:
        nr_pages = swap.folio_nr_pages(k, pfn)
        sc.nr_scanned += nr_pages
        sc.nr_scanned_total += nr_pages
        file = not swap.folio_test(k, pfn, PG_swapbacked)
        outcome = "keep"
        while True:  # one pass; break with outcome
            if not swap.folio_evictable(k, pfn):
                outcome = "activate"
                break
            if not sc.may_unmap and _mapped(k, pfn):
                break
            # folio_check_dirty_writeback()
            dirty = swap.folio_test(k, pfn, PG_dirty)
            writeback = swap.folio_test(k, pfn, PG_writeback)
            if dirty or writeback:
                stat.nr_dirty += nr_pages
            if dirty and not writeback:
                stat.nr_unqueued_dirty += nr_pages
            if writeback:
                # Case 3 of the kernel's comment: mark for immediate reclaim on completion
                stat.nr_writeback += nr_pages
                swap.folio_set_flag(k, pfn, PG_reclaim)
                break
            references = folio_check_references(k, pfn)
            if references == FOLIOREF_ACTIVATE:
                outcome = "activate"
                break
            if references == FOLIOREF_KEEP:
                stat.nr_ref_keep += nr_pages
                break
            if not file and not rmap.folio_test_anon(k, pfn):
                # shmem/tmpfs: the kernel writes it to swap with shmem_writeout(), replacing
                # the page-cache entry with a swap entry -- not modelled: it stays resident
                outcome = "activate"
                break
            # Anonymous process memory has backing store? Try to allocate it swap space.
            if rmap.folio_test_anon(k, pfn) and swap.folio_test(k, pfn, PG_swapbacked):
                if not swap_state.folio_test_swapcache(k, pfn):
                    if not sc.gfp_mask & G.FLAGS["__GFP_IO"]:
                        break
                    if nr_pages > 1:
                        outcome = "activate"  # THP split for swap-out: not modelled
                        break
                    if not swap_state.add_to_swap(k, pfn):
                        outcome = "activate"
                        break
            if _mapped(k, pfn):
                rmap.try_to_unmap(k, pfn)
                if _mapped(k, pfn):
                    stat.nr_unmap_fail += nr_pages
                    outcome = "activate"
                    break
            if swap.folio_test(k, pfn, PG_dirty):
                if file:
                    # Only kswapd writes file folios, and 6.18's pageout() writes only shmem
                    # and swap-cache folios: mark for immediate reclaim, activate, and let
                    # the flusher write it.
                    k.mod_node_page_state(nid, "NR_VMSCAN_IMMEDIATE", nr_pages)
                    swap.folio_set_flag(k, pfn, PG_reclaim)
                    outcome = "activate"
                    break
                if references == FOLIOREF_RECLAIM_CLEAN or not sc.may_writepage:
                    break
                res = pageout(k, pfn)
                if res == PAGE_KEEP:
                    break
                if res == PAGE_ACTIVATE:
                    outcome = "activate"
                    break
                stat.nr_pageout += nr_pages
                sc.nr_pageout_total += nr_pages
                if swap.folio_test(k, pfn, PG_writeback) or swap.folio_test(k, pfn, PG_dirty):
                    break
            if not __remove_mapping(k, pfn):
                break
            outcome = "free"
            break
        if outcome == "free":
            nr_reclaimed += nr_pages
            _free_isolated(k, pfn)
            continue
        if outcome == "activate":
            if swap_state.folio_test_swapcache(k, pfn) and (
                swapfile.vm_swap_full(k) or swap.folio_test(k, pfn, PG_mlocked)
            ):
                swapfile.folio_free_swap(k, pfn)
            if not swap.folio_test(k, pfn, PG_mlocked):
                swap.folio_set_flag(k, pfn, PG_active)
                stat.nr_activate[int(file)] += nr_pages
        ret.append(pfn)
    _ev(k, "PGACTIVATE", stat.nr_activate[0] + stat.nr_activate[1])
    return nr_reclaimed, ret


def pageout(k: Kernel, pfn: int) -> int:
    """mm/vmscan.c pageout() for an anonymous swap-cache folio: swap_writeout() (the write
    completes synchronously here); NR_VMSCAN_WRITE."""
    from mmintro.kernel import page_io

    if not swap.folio_test(k, pfn, PG_swapbacked):
        return PAGE_ACTIVATE
    if not swap.folio_clear_flag(k, pfn, PG_dirty):
        return PAGE_CLEAN
    swap.folio_set_flag(k, pfn, PG_reclaim)
    page_io.swap_writeout(k, pfn)
    k.mod_node_page_state(swap.folio_nid(k, pfn), "NR_VMSCAN_WRITE", swap.folio_nr_pages(k, pfn))
    return PAGE_SUCCESS


def __remove_mapping(k: Kernel, pfn: int) -> bool:
    """mm/vmscan.c __remove_mapping(): only when nobody but the cache and the isolation holds
    the folio (folio_ref_freeze(1 + nr)); leaves a workingset shadow entry."""
    from mmintro.kernel import filemap, rmap, swap_state, workingset

    nr = swap.folio_nr_pages(k, pfn)
    if rmap.folio_ref_count(k, pfn) != 1 + nr or swap.folio_test(k, pfn, PG_dirty):
        return False
    if swap_state.folio_test_swapcache(k, pfn):
        shadow = workingset.workingset_eviction(k, pfn)
        swap_state.__delete_from_swap_cache(k, pfn, shadow)
        return True
    mapping = k.kmem.get(k.pfn_to_page(pfn), "page", "mapping")
    if not mapping or mapping & 1:
        return False
    shadow = workingset.workingset_eviction(k, pfn)
    filemap.__filemap_remove_folio(k, pfn, shadow)
    return True


def _free_isolated(k: Kernel, pfn: int) -> None:
    """The reclaimed folio's last (isolation) reference goes: free_unref_folios().  The flags
    reclaim leaves are cleared as __folio_put's page_cache_release/free_pages_prepare do."""
    for bit in (PG_active, PG_referenced, PG_workingset, PG_reclaim, PG_swapbacked, swap.PG_uptodate, swap.PG_locked):
        swap.folio_clear_flag(k, pfn, bit)
    rmap.folio_put(k, pfn)


def shrink_inactive_list(k: Kernel, nid: int, nr_to_scan: int, sc: ScanControl, lru: int) -> int:
    """mm/vmscan.c shrink_inactive_list()."""
    file = is_file_lru(lru)
    folios, nr_scanned = isolate_lru_folios(k, nid, nr_to_scan, sc, lru)
    _mod_isolated(k, nid, folios, 1)
    nr_taken = sum(swap.folio_nr_pages(k, p) for p in folios)
    _ev(k, "PGSCAN_KSWAPD" if sc.kswapd else "PGSCAN_DIRECT", nr_scanned)
    _ev(k, "PGSCAN_FILE" if file else "PGSCAN_ANON", nr_scanned)
    if not nr_taken:
        return 0
    stat = ReclaimStat()
    nr_reclaimed, kept = shrink_folio_list(k, folios, nid, sc, stat)
    move_folios_to_lru(k, nid, kept)
    _mod_isolated(k, nid, kept, -1)
    # the reclaimed folios were isolated too
    freed = nr_taken - sum(swap.folio_nr_pages(k, p) for p in kept)
    k.mod_node_page_state(nid, "NR_ISOLATED_FILE" if file else "NR_ISOLATED_ANON", -freed)
    lru_note_cost(k, nid, file, stat.nr_pageout, nr_scanned - nr_reclaimed)
    _ev(k, "PGSTEAL_KSWAPD" if sc.kswapd else "PGSTEAL_DIRECT", nr_reclaimed)
    _ev(k, "PGSTEAL_FILE" if file else "PGSTEAL_ANON", nr_reclaimed)
    sc.nr_dirty += stat.nr_dirty
    sc.nr_unqueued_dirty += stat.nr_unqueued_dirty
    sc.nr_writeback += stat.nr_writeback
    sc.nr_immediate += stat.nr_immediate
    sc.nr_taken += nr_taken
    if file:
        sc.nr_file_taken += nr_taken
    return nr_reclaimed


def shrink_list(k: Kernel, nid: int, lru: int, nr_to_scan: int, sc: ScanControl) -> int:
    if is_active_lru(lru):
        if sc.may_deactivate & (1 << int(is_file_lru(lru))):
            shrink_active_list(k, nid, nr_to_scan, sc, lru)
        else:
            sc.skipped_deactivate = True
        return 0
    return shrink_inactive_list(k, nid, nr_to_scan, sc, lru)


SCAN_EQUAL, SCAN_FRACT, SCAN_ANON, SCAN_FILE = range(4)


def get_scan_count(k: Kernel, nid: int, sc: ScanControl) -> dict[int, int]:
    """mm/vmscan.c get_scan_count(): how many pages of each evictable list to scan at
    ``sc.priority``."""
    swappiness = vm_swappiness(k)
    if not sc.may_swap or not can_reclaim_anon_pages(k, nid):
        balance = SCAN_FILE
    elif not sc.priority and swappiness:
        balance = SCAN_EQUAL
    elif sc.file_is_tiny:
        balance = SCAN_ANON
    elif sc.cache_trim_mode:
        balance = SCAN_FILE
    else:
        balance = SCAN_FRACT
    fraction = [1, 1]
    denominator = 1
    if balance == SCAN_FRACT:
        total_cost = sc.anon_cost + sc.file_cost
        anon_cost = total_cost + sc.anon_cost
        file_cost = total_cost + sc.file_cost
        total_cost = anon_cost + file_cost
        ap = swappiness * (total_cost + 1) // (anon_cost + 1)
        fp = (MAX_SWAPPINESS - swappiness) * (total_cost + 1) // (file_cost + 1)
        fraction = [ap, fp]
        denominator = ap + fp
    nr = {}
    for lru in EVICTABLE_LRUS:
        file = int(is_file_lru(lru))
        scan = lruvec_lru_size(k, nid, lru, sc.reclaim_idx) >> sc.priority
        if balance == SCAN_FRACT:
            scan = scan * fraction[file] // denominator if denominator else 0
        elif balance in (SCAN_FILE, SCAN_ANON) and (balance == SCAN_FILE) != bool(file):
            scan = 0
        nr[lru] = scan
    return nr


def vm_swappiness(k: Kernel) -> int:
    """The vm.swappiness sysctl (mm/vmscan.c ``int vm_swappiness``)."""
    return k.kmem.get(k.sym("vm_swappiness"), "atomic_t", "counter")


def shrink_lruvec(k: Kernel, nid: int, sc: ScanControl) -> None:
    """mm/vmscan.c shrink_lruvec(): scan the lists in SWAP_CLUSTER_MAX batches; once enough
    is reclaimed (kswapd, or below DEF_PRIORITY), scan the other type only in proportion."""
    nr = get_scan_count(k, nid, sc)
    targets = dict(nr)
    nr_to_reclaim = sc.nr_to_reclaim
    nr_reclaimed = 0
    proportional_reclaim = not sc.kswapd and sc.priority == DEF_PRIORITY
    while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
        for lru in EVICTABLE_LRUS:
            if nr[lru]:
                n = min(nr[lru], SWAP_CLUSTER_MAX)
                nr[lru] -= n
                nr_reclaimed += shrink_list(k, nid, lru, n, sc)
        if nr_reclaimed < nr_to_reclaim or proportional_reclaim:
            continue
        nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
        nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
        if not nr_file or not nr_anon:
            break
        if nr_file > nr_anon:
            scan_target = targets[LRU_INACTIVE_ANON] + targets[LRU_ACTIVE_ANON] + 1
            percentage = nr_anon * 100 // scan_target
            stop, other = LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
        else:
            scan_target = targets[LRU_INACTIVE_FILE] + targets[LRU_ACTIVE_FILE] + 1
            percentage = nr_file * 100 // scan_target
            stop, other = LRU_INACTIVE_FILE, LRU_INACTIVE_ANON
        nr[stop] = 0
        nr[stop + LRU_ACTIVE] = 0
        for lru in (other, other + LRU_ACTIVE):
            n = targets[lru] * (100 - percentage) // 100
            n -= min(n, targets[lru] - nr[lru])
            nr[lru] = n
    sc.nr_reclaimed += nr_reclaimed
    # Even if we did not try to evict anon pages at all, keep the active/inactive balance.
    if can_reclaim_anon_pages(k, nid) and inactive_is_low(k, nid, LRU_INACTIVE_ANON):
        shrink_active_list(k, nid, SWAP_CLUSTER_MAX, sc, LRU_ACTIVE_ANON)


def prepare_scan_control(k: Kernel, nid: int, sc: ScanControl) -> None:
    """mm/vmscan.c prepare_scan_control(): may_deactivate from refaults and list balance,
    cache_trim_mode, file_is_tiny, and the lruvec's costs."""
    lv = _lruvec(k, nid)
    refaults_off = k.T.struct("lruvec").offsetof("refaults")
    sc.anon_cost = _lruvec_get(k, nid, "anon_cost")
    sc.file_cost = _lruvec_get(k, nid, "file_cost")
    for bit, kind, inactive_lru, idx in (
        (DEACTIVATE_ANON, "ANON", LRU_INACTIVE_ANON, 0),
        (DEACTIVATE_FILE, "FILE", LRU_INACTIVE_FILE, 1),
    ):
        refaults = _node_state(k, nid, f"WORKINGSET_ACTIVATE_{kind}")
        seen = k.mem.read_u64(k.pa(lv + refaults_off + 8 * idx))
        if sc.force_deactivate or refaults != seen or inactive_is_low(k, nid, inactive_lru):
            sc.may_deactivate |= bit
        else:
            sc.may_deactivate &= ~bit
    file = _node_state(k, nid, "NR_INACTIVE_FILE")
    sc.cache_trim_mode = bool(file >> sc.priority and not sc.may_deactivate & DEACTIVATE_FILE)
    total_high_wmark = sum(pa.wmark_pages(z, 2) for z in k.zones[nid] if z.managed)
    free = sum(z.free_pages for z in k.zones[nid])
    file = _node_state(k, nid, "NR_ACTIVE_FILE") + _node_state(k, nid, "NR_INACTIVE_FILE")
    anon = _node_state(k, nid, "NR_INACTIVE_ANON")
    sc.file_is_tiny = bool(
        file + free <= total_high_wmark and not sc.may_deactivate & DEACTIVATE_ANON and anon >> sc.priority
    )


def snapshot_refaults(k: Kernel, nid: int) -> None:
    """snapshot_refaults(): remember WORKINGSET_ACTIVATE_* at the end of a reclaim cycle."""
    lv = _lruvec(k, nid)
    off = k.T.struct("lruvec").offsetof("refaults")
    k.kmem.write_u64(lv + off, _node_state(k, nid, "WORKINGSET_ACTIVATE_ANON"))
    k.kmem.write_u64(lv + off + 8, _node_state(k, nid, "WORKINGSET_ACTIVATE_FILE"))


def shrink_node(k: Kernel, nid: int, sc: ScanControl) -> None:
    """mm/vmscan.c shrink_node(): one lruvec (no memcg hierarchy), then the writeback state
    kswapd flags on the node (PGDAT_WRITEBACK, PGDAT_DIRTY) and a flusher wakeup when every
    file folio taken was dirty and unqueued."""
    nr_reclaimed_before = sc.nr_reclaimed
    sc.nr_dirty = sc.nr_unqueued_dirty = sc.nr_writeback = sc.nr_immediate = 0
    sc.nr_taken = sc.nr_file_taken = 0
    prepare_scan_control(k, nid, sc)
    shrink_lruvec(k, nid, sc)
    reclaimable = sc.nr_reclaimed - nr_reclaimed_before
    if sc.kswapd:
        flags = _pgdat_get(k, nid, "flags")
        if sc.nr_writeback and sc.nr_writeback == sc.nr_taken:
            flags |= 1 << PGDAT_WRITEBACK
        if sc.nr_unqueued_dirty and sc.nr_unqueued_dirty == sc.nr_file_taken:
            flags |= 1 << PGDAT_DIRTY
        _pgdat_set(k, nid, "flags", flags)
    if sc.nr_unqueued_dirty and sc.nr_unqueued_dirty == sc.nr_file_taken:
        wakeup_flusher_threads(k)
    if reclaimable:
        _pgdat_set(k, nid, "kswapd_failures", 0)


def wakeup_flusher_threads(k: Kernel, reason: str = "vmscan") -> int:
    """fs/fs-writeback.c wakeup_flusher_threads(WB_REASON_VMSCAN): every bdi with dirty I/O
    (__wakeup_flusher_threads_bdi) gets wb_start_writeback(): WB_start_all set (a wakeup while
    it is set adds nothing), start_all_reason recorded, the flusher woken.  The flusher's work
    runs at once, like the simulator's other deferred work: wb_workfn -> wb_check_start_all()
    writes get_nr_dirty_pages() pages (WB_SYNC_NONE, range_cyclic), the I/O completes, and
    WB_start_all is cleared.  Returns the pages written."""
    from mmintro.kernel import page_writeback as pw

    vfs = k.__dict__.get("vfs")  # no filesystem mounted: no bdi has dirty I/O
    if vfs is None:
        return 0
    km = k.kmem
    wb = km.addr(vfs.bdi, "backing_dev_info", "wb")
    state = km.get(wb, "bdi_writeback", "state")
    if not state >> pw.WB_has_dirty_io & 1 or state >> pw.WB_start_all & 1:  # wb_has_dirty_io(); already started
        return 0
    km.set(wb, "bdi_writeback", "state", state | 1 << pw.WB_start_all)
    km.set(wb, "bdi_writeback", "start_all_reason", pw.WB_REASONS[reason])
    k.__dict__.setdefault("flusher_wakeups", []).append((pw.jiffies(k), reason))
    # wb_workfn -> wb_do_writeback -> wb_check_start_all()
    written = 0
    nr_pages = pw.get_nr_dirty_pages(k)
    if nr_pages:
        written = pw.wb_writeback(k, reason, nr_pages, True, wb)
    km.set(wb, "bdi_writeback", "state", km.get(wb, "bdi_writeback", "state") & ~(1 << pw.WB_start_all))
    return written


def shrink_zones(k: Kernel, zones: list[ZoneState], sc: ScanControl) -> None:
    """mm/vmscan.c shrink_zones(): each node once, for the zones the request may use."""
    last_nid = None
    compaction = _optional_compaction()
    for z in zones:
        if z.idx > sc.reclaim_idx or (sc.nodemask is not None and z.nid not in sc.nodemask):
            continue
        # A costly-order request stops reclaiming a zone where compaction has what it needs
        # (or the allocation would already succeed): compaction_ready()
        if (
            compaction is not None
            and sc.order > PAGE_ALLOC_COSTLY_ORDER
            and not sc.kswapd
            and compaction.compaction_ready(k, z, sc.order, sc.reclaim_idx, sc.gfp_mask)
        ):
            sc.compaction_ready = True
            continue
        if z.nid == last_nid:
            continue
        last_nid = z.nid
        shrink_node(k, z.nid, sc)


def do_try_to_free_pages(k: Kernel, zones: list[ZoneState], sc: ScanControl) -> int:
    """mm/vmscan.c do_try_to_free_pages(): shrink the zones at falling priority until
    nr_to_reclaim pages are freed; ALLOCSTALL_<zone>; a second round with forced
    deactivation when the active lists were protected."""
    initial_priority = sc.priority
    _zone_ev(k, "ALLOCSTALL", sc.reclaim_idx, 1)
    while True:
        while True:
            sc.nr_scanned = 0
            shrink_zones(k, zones, sc)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
            if sc.compaction_ready:
                break
            if sc.priority < DEF_PRIORITY - 2:
                sc.may_writepage = True
            sc.priority -= 1
            if sc.priority < 0:
                break
        for nid in sorted({z.nid for z in zones}):
            snapshot_refaults(k, nid)
        if sc.nr_reclaimed:
            return sc.nr_reclaimed
        if sc.skipped_deactivate:
            sc.priority = initial_priority
            sc.force_deactivate = True
            sc.skipped_deactivate = False
            continue
        return 0


def try_to_free_pages(k: Kernel, zones: list[ZoneState], order: int, gfp: int, nodemask: frozenset[int] | None) -> int:
    """mm/vmscan.c try_to_free_pages(): direct reclaim of SWAP_CLUSTER_MAX pages for an
    allocation of ``order`` in ``zones`` (the allocation's zonelist)."""
    sc = ScanControl(
        nr_to_reclaim=SWAP_CLUSTER_MAX,
        gfp_mask=gfp,
        order=order,
        priority=DEF_PRIORITY,
        reclaim_idx=G.gfp_zone(gfp),
        nodemask=nodemask,
        may_writepage=True,
        may_unmap=True,
        may_swap=True,
    )
    # __perform_reclaim(): the allocating task stalls on memory for as long as the work takes
    # (the simulator's cost model: SCAN_NS per page looked at, page_io.SWAP_WRITE_NS per
    # page written to swap)
    from mmintro.kernel import page_io, psi

    flags = psi.psi_memstall_enter(k)
    try:
        return do_try_to_free_pages(k, zones, sc)
    finally:
        psi.advance(k, sc.nr_scanned_total * SCAN_NS + sc.nr_pageout_total * page_io.SWAP_WRITE_NS)
        psi.psi_memstall_leave(k, None, flags)


# -- kswapd -----------------------------------------------------------------------------------------
def pgdat_balanced(k: Kernel, nid: int, order: int, highest_zoneidx: int) -> bool:
    """mm/vmscan.c pgdat_balanced(): any managed zone up to highest_zoneidx meets its high
    watermark for ``order``."""
    any_managed = False
    for z in k.zones[nid][: highest_zoneidx + 1]:
        if not z.managed:
            continue
        any_managed = True
        if pa.zone_watermark_ok(z, order, pa.wmark_pages(z, 2), highest_zoneidx, 0):
            return True
    return not any_managed


def pgdat_watermark_boosted(k: Kernel, nid: int, highest_zoneidx: int) -> bool:
    return any(z.watermark_boost for z in k.zones[nid][: highest_zoneidx + 1])


def wakeup_kswapd(k: Kernel, z: ZoneState, gfp: int, order: int, highest_zoneidx: int) -> None:
    """mm/vmscan.c wakeup_kswapd(): record the request in the node (kswapd_order,
    kswapd_highest_zoneidx) and run kswapd unless the node is balanced or hopeless."""
    if not z.managed:
        return
    nid = z.nid
    curr_idx = _pgdat_get(k, nid, "kswapd_highest_zoneidx")
    if curr_idx == MAX_NR_ZONES or curr_idx < highest_zoneidx:
        _pgdat_set(k, nid, "kswapd_highest_zoneidx", highest_zoneidx)
    if _pgdat_get(k, nid, "kswapd_order") < order:
        _pgdat_set(k, nid, "kswapd_order", order)
    if k.__dict__.get("in_kswapd"):
        return  # kswapd is running: not waiting on kswapd_wait
    if _pgdat_get(k, nid, "kswapd_failures") >= MAX_RECLAIM_RETRIES or (
        pgdat_balanced(k, nid, order, highest_zoneidx) and not pgdat_watermark_boosted(k, nid, highest_zoneidx)
    ):
        return
    kswapd(k, nid)


def kswapd(k: Kernel, nid: int) -> None:
    """mm/vmscan.c kswapd() woken once: take the recorded order and zone, balance the node,
    then go back to sleep with kswapd_order 0 and kswapd_highest_zoneidx MAX_NR_ZONES."""
    alloc_order = _pgdat_get(k, nid, "kswapd_order")
    highest = _pgdat_get(k, nid, "kswapd_highest_zoneidx")
    if highest == MAX_NR_ZONES:
        highest = MAX_NR_ZONES - 1
    _pgdat_set(k, nid, "kswapd_order", 0)
    _pgdat_set(k, nid, "kswapd_highest_zoneidx", MAX_NR_ZONES)
    # kswapd_try_to_sleep()'s short nap (HZ/10) before this wakeup: woken again within it,
    # the low watermark was hit quickly
    from mmintro.kernel import timekeeping

    now = timekeeping.jiffies(k)
    naps = k.__dict__.setdefault("kswapd_nap", {})
    if nid in naps and now - naps[nid] < kc.HZ // 10:
        _ev(k, "KSWAPD_LOW_WMARK_HIT_QUICKLY")
    saved_cpu = k.current_cpu
    k.in_kswapd = True
    try:
        reclaim_order = balance_pgdat(k, nid, alloc_order, highest)
    finally:
        k.in_kswapd = False
        k.current_cpu = saved_cpu
    # kswapd_try_to_sleep(): a node balanced for the order reclaimed lets kswapd nap and
    # hands the high-order work to kcompactd; one that is not is left with the high
    # watermark hit quickly, and kswapd sleeps until woken
    if pgdat_balanced(k, nid, reclaim_order, highest):
        naps[nid] = timekeeping.jiffies(k)
        compaction = _optional_compaction()
        if compaction is not None and hasattr(compaction, "wakeup_kcompactd"):
            compaction.reset_isolation_suitable(k, nid)  # skip hints cleared after a full compaction
            compaction.wakeup_kcompactd(k, nid, alloc_order, highest)
    else:
        naps.pop(nid, None)
        _ev(k, "KSWAPD_HIGH_WMARK_HIT_QUICKLY")


def balance_pgdat(k: Kernel, nid: int, order: int, highest_zoneidx: int) -> int:
    """mm/vmscan.c balance_pgdat(): reclaim at rising priority until the node is balanced
    (and boosted watermarks are paid back); PAGEOUTRUN; kswapd_failures when nothing could be
    reclaimed."""
    _ev(k, "PAGEOUTRUN")
    zone_boosts = [z.watermark_boost if z.managed else 0 for z in k.zones[nid][: highest_zoneidx + 1]]
    nr_boost_reclaim = sum(zone_boosts)
    boosted = bool(nr_boost_reclaim)
    if True:  # kswapd's own memstall section: it has no task_struct here, so PSI sees nothing
        sc = ScanControl(gfp_mask=G.GFP_KERNEL, order=order, may_unmap=True, kswapd=True)
        while True:  # restart:
            sc.priority = DEF_PRIORITY
            restart = False
            while True:
                nr_reclaimed = sc.nr_reclaimed
                sc.reclaim_idx = highest_zoneidx
                balanced = pgdat_balanced(k, nid, sc.order, highest_zoneidx)
                if not balanced and nr_boost_reclaim:
                    nr_boost_reclaim = 0
                    restart = True
                    break
                if not nr_boost_reclaim and balanced:
                    break
                raise_priority = True
                if nr_boost_reclaim and sc.priority == DEF_PRIORITY - 2:
                    raise_priority = False
                sc.may_writepage = not nr_boost_reclaim
                sc.may_swap = not nr_boost_reclaim
                # kswapd_age_node(): keep the anon lists balanced
                if can_reclaim_anon_pages(k, nid) and inactive_is_low(k, nid, LRU_INACTIVE_ANON):
                    shrink_active_list(k, nid, SWAP_CLUSTER_MAX, sc, LRU_ACTIVE_ANON)
                if sc.priority < DEF_PRIORITY - 2:
                    sc.may_writepage = True
                sc.nr_scanned = 0
                if kswapd_shrink_node(k, nid, sc):
                    raise_priority = False
                nr_reclaimed = sc.nr_reclaimed - nr_reclaimed
                nr_boost_reclaim -= min(nr_boost_reclaim, nr_reclaimed)
                if nr_boost_reclaim and not nr_reclaimed:
                    break
                if raise_priority or not nr_reclaimed:
                    sc.priority -= 1
                if sc.priority < 1:
                    break
            if restart:
                continue
            break
        if not sc.nr_reclaimed:
            _pgdat_set(k, nid, "kswapd_failures", _pgdat_get(k, nid, "kswapd_failures") + 1)
        snapshot_refaults(k, nid)
    if boosted:
        for z, boost in zip(k.zones[nid], zone_boosts):
            if boost:
                z.watermark_boost -= min(z.watermark_boost, boost)
                z.flags &= ~pa.ZONE_BOOSTED_WATERMARK
        compaction = _optional_compaction()
        if compaction is not None and hasattr(compaction, "wakeup_kcompactd"):
            compaction.wakeup_kcompactd(k, nid, kc.PAGEBLOCK_ORDER, highest_zoneidx)
    return sc.order


def _optional_compaction():
    from mmintro.kernel import memory

    return memory._optional("compaction")


def kswapd_shrink_node(k: Kernel, nid: int, sc: ScanControl) -> bool:
    """mm/vmscan.c kswapd_shrink_node(): reclaim the node's high watermarks' worth; a
    high-order request falls back to order 0 once enough is free for compaction."""
    sc.nr_to_reclaim = sum(
        max(pa.wmark_pages(z, 2), SWAP_CLUSTER_MAX) for z in k.zones[nid][: sc.reclaim_idx + 1] if z.managed
    )
    shrink_node(k, nid, sc)
    if sc.order and sc.nr_reclaimed >= 2 << sc.order:  # compact_gap()
        sc.order = 0
    return sc.nr_scanned >= sc.nr_to_reclaim


# -- the allocator's side ---------------------------------------------------------------------------
def should_reclaim_retry(
    k: Kernel, gfp: int, order: int, ac, alloc_flags: int, did_some_progress: int, no_progress_loops: int
) -> tuple[bool, int]:
    """mm/page_alloc.c should_reclaim_retry(): (retry, no_progress_loops).  Retry while some
    zone could meet its min watermark if everything reclaimable were reclaimed; after
    MAX_RECLAIM_RETRIES rounds without progress, exhaust the highatomic reserves first."""
    if did_some_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
        no_progress_loops = 0
    else:
        no_progress_loops += 1
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return pa.unreserve_highatomic_pageblock(k, ac, True), no_progress_loops
    for z in ac.zones:
        available = zone_reclaimable_pages(k, z) + z.free_pages
        if pa.__zone_watermark_ok(z, order, pa.wmark_pages(z, 0), ac.highest_zoneidx, alloc_flags, available):
            return True, no_progress_loops
    return False, no_progress_loops


def reclaim_stats(k: Kernel) -> dict[str, int]:
    """The reclaim counters summed over CPUs (tests, expectations)."""
    ev = swap._EV
    names = (
        "PGSCAN_KSWAPD",
        "PGSCAN_DIRECT",
        "PGSTEAL_KSWAPD",
        "PGSTEAL_DIRECT",
        "PGSCAN_ANON",
        "PGSCAN_FILE",
        "PGSTEAL_ANON",
        "PGSTEAL_FILE",
        "PGREFILL",
        "PGACTIVATE",
        "PGDEACTIVATE",
        "PAGEOUTRUN",
        "PSWPIN",
        "PSWPOUT",
        "ALLOCSTALL_NORMAL",
        "ALLOCSTALL_DMA32",
        "ALLOCSTALL_MOVABLE",
    )
    return {n: sum(c[ev[n]] for c in k.vm_events) for n in names}


__all__ += ["reclaim_stats", "kswapd", "lru_note_cost_refault", "SWAP_CLUSTER_MAX"]
