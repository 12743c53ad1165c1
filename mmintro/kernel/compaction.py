"""Memory compaction (mm/compaction.c of 6.18), kcompactd, proactive compaction, and the
direct-compaction steps of the allocator's slow path (mm/page_alloc.c
__alloc_pages_direct_compact, should_compact_retry).

compact_zone() runs the two scanners of one zone towards each other: the migrate scanner
(:func:`isolate_migratepages` / :func:`isolate_migratepages_block`) from the zone start up,
isolating LRU folios in pageblocks suitable as a source, and the free scanner
(:func:`isolate_freepages` / :func:`isolate_freepages_block`, after
:func:`fast_isolate_freepages`' search of the MOVABLE free lists) from the zone end down,
taking free buddy blocks out of the allocator (__isolate_free_page) as migration targets;
:func:`mmintro.kernel.migrate.migrate_pages` moves the folios (compaction_alloc /
compaction_free), and :func:`compact_finished` stops the run when the scanners meet
(COMPACT_COMPLETE / COMPACT_PARTIAL_SKIPPED) or a free block of the requested order exists
(COMPACT_SUCCESS).  The zone's books are the kernel's: ``compact_cached_migrate_pfn[2]``,
``compact_cached_free_pfn``, ``compact_init_{migrate,free}_pfn``, the deferral counters
``compact_considered`` / ``compact_defer_shift`` / ``compact_order_failed``,
``compact_blockskip_flush``, and the PB_compact_skip bit of each pageblock; the node's
``kcompactd_max_order`` / ``kcompactd_highest_zoneidx`` / ``proactive_compact_trigger``.
They are written into struct zone / pglist_data at sync (and the skip bits with the
pageblock flags), so drgn and crash read them.  vm events: compact_migrate_scanned,
compact_free_scanned, compact_isolated, compact_stall, compact_fail, compact_success,
compact_daemon_wake, compact_daemon_migrate_scanned, compact_daemon_free_scanned (and
pgmigrate_success / pgmigrate_fail from migrate_pages).

Direct compaction is a PSI memory stall of the allocating task (psi_memstall_enter/leave
around try_to_compact_pages, lasting COMPACT_SCAN_NS per pfn scanned + MIGRATE_NS per page
migrated of simulated time); kcompactd, which has no task here, stalls nobody.

kcompactd has no thread in the simulator (``pgdat->kcompactd`` stays NULL): as with the
rest of its deferred work, :func:`wakeup_kcompactd` runs :func:`kcompactd_do_work` at once
when the kernel would wake the thread, and :func:`kcompactd_proactive` is the thread's
timeout branch (should_proactive_compact_node -> compact_node(pgdat, true)).  Writing
vm.compact_memory is :func:`sysctl_compaction_handler` (compact_nodes).

Simplified, and said where it matters: no capture_control (the page a compaction frees is
found by the following get_page_from_freelist, not captured in __free_one_page); a large folio below the target order is isolated as 6.18 does but its migration
fails (mmintro.kernel.migrate migrates order-0 folios; the simulator makes no such folios); no lock contention, need_resched or fatal signals (cc->contended is
never set); defrag_mode (vm.defrag_mode, default 0) is not modelled; mlocked folios are not
isolated.  The fragmentation index (mm/vmstat.c fill_contig_page_info,
__fragmentation_index, extfrag_for_order) is computed here from the zone's nr_free, as
vmstat.c does; mmintro.views.fragmentation prints the debugfs files from a dump.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel import migrate, swap
from mmintro.kernel import page_alloc as pa
from mmintro.kernel.sparse import PFN_SECTION_SHIFT
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel
    from mmintro.kernel.mm_init import ZoneState

__all__ = [
    "COMPACT_COMPLETE",
    "COMPACT_CONTINUE",
    "COMPACT_DEFERRED",
    "COMPACT_PARTIAL_SKIPPED",
    "COMPACT_SKIPPED",
    "COMPACT_SUCCESS",
    "CompactControl",
    "DirectCompaction",
    "compact_node",
    "compact_nodes",
    "compact_zone",
    "compaction_defer_reset",
    "compaction_deferred",
    "compaction_ready",
    "compaction_suitable",
    "defer_compaction",
    "extfrag_for_order",
    "fragmentation_index",
    "fragmentation_score_node",
    "fragmentation_score_zone",
    "kcompactd_do_work",
    "kcompactd_init",
    "kcompactd_proactive",
    "sysctl_compaction_handler",
    "try_to_compact_pages",
    "wakeup_kcompactd",
    "zone_compact",
]

_T = get_types()
_EV = _T.enum("vm_event_item")
_CR = _T.enum("compact_result")
COMPACT_NOT_SUITABLE_ZONE = _CR["COMPACT_NOT_SUITABLE_ZONE"]
COMPACT_SKIPPED = _CR["COMPACT_SKIPPED"]
COMPACT_DEFERRED = _CR["COMPACT_DEFERRED"]
COMPACT_NO_SUITABLE_PAGE = _CR["COMPACT_NO_SUITABLE_PAGE"]
COMPACT_CONTINUE = _CR["COMPACT_CONTINUE"]
COMPACT_COMPLETE = _CR["COMPACT_COMPLETE"]
COMPACT_PARTIAL_SKIPPED = _CR["COMPACT_PARTIAL_SKIPPED"]
COMPACT_CONTENDED = _CR["COMPACT_CONTENDED"]
COMPACT_SUCCESS = _CR["COMPACT_SUCCESS"]
RESULT_NAMES = {v: n for n, v in _CR.items()}
_CP = _T.enum("compact_priority")
COMPACT_PRIO_SYNC_FULL = _CP["COMPACT_PRIO_SYNC_FULL"]
MIN_COMPACT_PRIORITY = _CP["MIN_COMPACT_PRIORITY"]
COMPACT_PRIO_SYNC_LIGHT = _CP["COMPACT_PRIO_SYNC_LIGHT"]
MIN_COMPACT_COSTLY_PRIORITY = _CP["MIN_COMPACT_COSTLY_PRIORITY"]
DEF_COMPACT_PRIORITY = _CP["DEF_COMPACT_PRIORITY"]
COMPACT_PRIO_ASYNC = _CP["COMPACT_PRIO_ASYNC"]
INIT_COMPACT_PRIORITY = _CP["INIT_COMPACT_PRIORITY"]
_MM = _T.enum("migrate_mode")
MIGRATE_ASYNC = _MM["MIGRATE_ASYNC"]
MIGRATE_SYNC_LIGHT = _MM["MIGRATE_SYNC_LIGHT"]
MIGRATE_SYNC = _MM["MIGRATE_SYNC"]

PAGEBLOCK_ORDER = pa.PAGEBLOCK_ORDER
PAGEBLOCK_NR_PAGES = pa.PAGEBLOCK_NR_PAGES
NR_PAGE_ORDERS = pa.NR_PAGE_ORDERS
PAGE_ALLOC_COSTLY_ORDER = pa.PAGE_ALLOC_COSTLY_ORDER
PB_COMPACT_SKIP = 1 << _T.const("PB_compact_skip")
COMPACT_CLUSTER_MAX = kc.SWAP_CLUSTER_MAX  # include/linux/swap.h
COMPACT_MAX_DEFER_SHIFT = 6  # mm/compaction.c
COMPACTION_HPAGE_ORDER = pa.HPAGE_PMD_ORDER  # CONFIG_TRANSPARENT_HUGEPAGE
MAX_COMPACT_RETRIES = 16  # mm/page_alloc.c
ISOLATE_UNEVICTABLE = 0x4  # include/linux/mmzone.h isolate_mode_t
ISOLATE_ASYNC_MIGRATE = 0x8
ISOLATE_ABORT, ISOLATE_NONE, ISOLATE_SUCCESS = range(3)  # isolate_migrate_t
EAGAIN = -11
ENOMEM = -12

# The compaction sysctls and their 6.18 defaults (mm/compaction.c, mm/vmstat.c).
SYSCTL_DEFAULTS = {"compaction_proactiveness": 20, "extfrag_threshold": 500, "compact_unevictable_allowed": 1}
_PG_lru = swap.PG_lru
_PG_head = swap.PG_head
_PG_unevictable = swap.PG_unevictable
_PG_mlocked = swap.PG_mlocked
_PG_writeback = swap.PG_writeback
_PG_locked = swap.PG_locked
_PG_dirty = swap.PG_dirty


def compaction_sysctl(k: Kernel, name: str) -> int:
    """/proc/sys/vm/``name`` for the compaction tunables (default until a sysctl wrote it)."""
    return k.__dict__.get("vm_sysctl", {}).get(name, SYSCTL_DEFAULTS[name])


def set_compaction_sysctl(k: Kernel, name: str, value: int) -> None:
    if name not in SYSCTL_DEFAULTS:
        raise ValueError(f"unknown compaction sysctl {name!r}")
    lo, hi = {
        "compaction_proactiveness": (0, 100),
        "extfrag_threshold": (0, 1000),
        "compact_unevictable_allowed": (0, 1),
    }[name]
    if not lo <= int(value) <= hi:
        raise ValueError(f"vm.{name} = {value} is outside {lo}..{hi} (EINVAL)")
    k.__dict__.setdefault("vm_sysctl", {})[name] = int(value)
    if name == "compaction_proactiveness":
        compaction_proactiveness_sysctl_handler(k)


COMPACT_SCAN_NS = 100  # the simulator's cost model: a scanner's look at one pfn ...
MIGRATE_NS = 2_000  # ... and the migration of one page (unmap, 4 KiB copy, remap)


def _sum_events(k: Kernel, item: str) -> int:
    i = _EV[item]
    return sum(c[i] for c in k.vm_events)


def _count(k: Kernel, item: str, n: int = 1) -> None:
    if n:
        k.vm_events[k.current_cpu][_EV[item]] += n


# -- the zone's and node's books --------------------------------------------------------------
class ZoneCompact:
    """The compaction fields of one struct zone (zeroed at boot, as the kernel's are)."""

    __slots__ = (
        "cached_free_pfn",
        "cached_migrate_pfn",
        "init_migrate_pfn",
        "init_free_pfn",
        "considered",
        "defer_shift",
        "order_failed",
        "blockskip_flush",
    )

    def __init__(self) -> None:
        self.cached_free_pfn = 0
        self.cached_migrate_pfn = [0, 0]
        self.init_migrate_pfn = 0
        self.init_free_pfn = 0
        self.considered = 0
        self.defer_shift = 0
        self.order_failed = 0
        self.blockskip_flush = False


class NodeCompact:
    """pglist_data's kcompactd fields."""

    __slots__ = ("max_order", "highest_zoneidx", "proactive_compact_trigger", "wakeups")

    def __init__(self, nr_zones: int) -> None:
        self.max_order = 0
        self.highest_zoneidx = nr_zones - 1  # kcompactd(): pgdat->nr_zones - 1
        self.proactive_compact_trigger = False
        self.wakeups = 0


def _books(k: Kernel) -> dict[str, Any]:
    b = k.__dict__.get("compaction_books")
    if b is None:
        b = k.__dict__["compaction_books"] = {"zones": {}, "nodes": {}}
        k.sync_hooks.append(write_compaction_books)
    return b


def zone_compact(k: Kernel, z: ZoneState) -> ZoneCompact:
    """The compaction fields of zone ``z``."""
    zones = _books(k)["zones"]
    zc = zones.get((z.nid, z.idx))
    if zc is None:
        zc = zones[(z.nid, z.idx)] = ZoneCompact()
    return zc


def _nr_zones(k: Kernel, nid: int) -> int:
    """pgdat->nr_zones: the highest populated zone + 1."""
    return max((z.idx + 1 for z in k.zones[nid] if z.populated), default=0)


def node_compact(k: Kernel, nid: int) -> NodeCompact:
    nodes = _books(k)["nodes"]
    nc = nodes.get(nid)
    if nc is None:
        nc = nodes[nid] = NodeCompact(_nr_zones(k, nid))
    return nc


def write_compaction_books(k: Kernel) -> None:
    """Sync hook: the compaction fields into struct zone and pglist_data."""
    b = _books(k)
    for (nid, idx), zc in b["zones"].items():
        a = k.zones[nid][idx].addr
        km = k.kmem
        km.set(a, "zone", "compact_cached_free_pfn", zc.cached_free_pfn)
        km.set(a, "zone", "compact_cached_migrate_pfn[0]", zc.cached_migrate_pfn[0])
        km.set(a, "zone", "compact_cached_migrate_pfn[1]", zc.cached_migrate_pfn[1])
        km.set(a, "zone", "compact_init_migrate_pfn", zc.init_migrate_pfn)
        km.set(a, "zone", "compact_init_free_pfn", zc.init_free_pfn)
        km.set(a, "zone", "compact_considered", zc.considered)
        km.set(a, "zone", "compact_defer_shift", zc.defer_shift)
        km.set(a, "zone", "compact_order_failed", zc.order_failed & 0xFFFFFFFF)
        km.set(a, "zone", "compact_blockskip_flush", int(zc.blockskip_flush))
    for nid, nc in b["nodes"].items():
        p = k.pgdat[nid]
        k.kmem.set(p, "pglist_data", "kcompactd_max_order", nc.max_order)
        k.kmem.set(p, "pglist_data", "kcompactd_highest_zoneidx", nc.highest_zoneidx)
        k.kmem.set(p, "pglist_data", "proactive_compact_trigger", int(nc.proactive_compact_trigger))


# -- pageblock skip hints ------------------------------------------------------------------------
def get_pageblock_skip(k: Kernel, pfn: int) -> bool:
    return bool(k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] & PB_COMPACT_SKIP)


def set_pageblock_skip(k: Kernel, pfn: int) -> None:
    k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] |= PB_COMPACT_SKIP


def clear_pageblock_skip(k: Kernel, pfn: int) -> None:
    k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] &= ~PB_COMPACT_SKIP & 0xFF


def pageblock_start_pfn(pfn: int) -> int:
    return pfn & ~(PAGEBLOCK_NR_PAGES - 1)


def pageblock_end_pfn(pfn: int) -> int:
    return (pfn + PAGEBLOCK_NR_PAGES) & ~(PAGEBLOCK_NR_PAGES - 1)  # ALIGN(pfn + 1, pageblock_nr_pages)


def block_start_pfn(pfn: int, order: int) -> int:
    return pfn & ~((1 << order) - 1)


def block_end_pfn(pfn: int, order: int) -> int:
    return (pfn + (1 << order)) & ~((1 << order) - 1)


# -- deferred compaction -----------------------------------------------------------------------
def defer_compaction(k: Kernel, z: ZoneState, order: int) -> None:
    """defer_compaction(): skip the next 1 << compact_defer_shift attempts (at most 64)."""
    zc = zone_compact(k, z)
    zc.considered = 0
    zc.defer_shift += 1
    if order < zc.order_failed:
        zc.order_failed = order
    if zc.defer_shift > COMPACT_MAX_DEFER_SHIFT:
        zc.defer_shift = COMPACT_MAX_DEFER_SHIFT


def compaction_deferred(k: Kernel, z: ZoneState, order: int) -> bool:
    """compaction_deferred(): True if this attempt is to be skipped."""
    zc = zone_compact(k, z)
    defer_limit = 1 << zc.defer_shift
    if order < zc.order_failed:
        return False
    zc.considered += 1
    if zc.considered >= defer_limit:
        zc.considered = defer_limit
        return False
    return True


def compaction_defer_reset(k: Kernel, z: ZoneState, order: int, alloc_success: bool) -> None:
    """compaction_defer_reset(): after a compaction that succeeded (or should have)."""
    zc = zone_compact(k, z)
    if alloc_success:
        zc.considered = 0
        zc.defer_shift = 0
    if order >= zc.order_failed:
        zc.order_failed = order + 1


def compaction_restarting(k: Kernel, z: ZoneState, order: int) -> bool:
    zc = zone_compact(k, z)
    if order < zc.order_failed:
        return False
    return zc.defer_shift == COMPACT_MAX_DEFER_SHIFT and zc.considered >= 1 << zc.defer_shift


def reset_cached_positions(k: Kernel, z: ZoneState) -> None:
    zc = zone_compact(k, z)
    zc.cached_migrate_pfn = [z.start_pfn, z.start_pfn]
    zc.cached_free_pfn = pageblock_start_pfn(z.end_pfn - 1)


# -- the memory map as the scanners see it ---------------------------------------------------------
def pfn_valid(k: Kernel, pfn: int) -> bool:
    return (pfn >> PFN_SECTION_SHIFT) in k.present_sections


def _flags(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = pa.page_words(k, pfn)
    return int(mv64[w + pa.W_FLAGS])


def _page_zone_is(k: Kernel, pfn: int, z: ZoneState) -> bool:
    f = _flags(k, pfn)
    return (f >> kc.NODES_PGOFF) == z.nid and ((f >> kc.ZONES_PGOFF) & pa.ZONES_MASK) == z.idx


def pageblock_pfn_to_page(k: Kernel, start: int, end: int, z: ZoneState) -> int | None:
    """__pageblock_pfn_to_page(): the block's first pfn if its first and last pages are
    valid and in ``z``, else None."""
    end -= 1
    if not (pfn_valid(k, start) and pfn_valid(k, end)):
        return None
    if not (z.start_pfn <= start and end < z.end_pfn):
        return None
    if not _page_zone_is(k, start, z) or not _page_zone_is(k, end, z):
        return None
    return start


def _compound_order(k: Kernel, pfn: int) -> int | None:
    """compound_order() of a compound page (head or tail), None for a small page."""
    from mmintro.kernel import rmap

    head = rmap.page_folio(k, pfn)
    if head == pfn and not _flags(k, pfn) >> _PG_head & 1:
        return None
    return rmap.folio_order(k, head)


def pageblock_skip_persistent(k: Kernel, pfn: int) -> bool:
    """Compound pages of >= pageblock_order are skipped until released."""
    order = _compound_order(k, pfn)
    return order is not None and order >= PAGEBLOCK_ORDER


# -- compact_control ------------------------------------------------------------------------------
class CompactControl:
    """struct compact_control (mm/internal.h): one compaction run's parameters and lists."""

    def __init__(
        self,
        z: ZoneState | None = None,
        order: int = -1,
        gfp_mask: int = G.GFP_KERNEL,
        mode: int = MIGRATE_ASYNC,
        alloc_flags: int = 0,
        highest_zoneidx: int = 0,
        direct_compaction: bool = False,
        proactive_compaction: bool = False,
        whole_zone: bool = False,
        ignore_skip_hint: bool = False,
        ignore_block_suitable: bool = False,
    ) -> None:
        self.zone = z
        self.order = order
        self.search_order = order
        self.gfp_mask = gfp_mask
        self.migratetype = G.gfp_migratetype(gfp_mask)
        self.mode = mode
        self.alloc_flags = alloc_flags
        self.highest_zoneidx = highest_zoneidx
        self.direct_compaction = direct_compaction
        self.proactive_compaction = proactive_compaction
        self.whole_zone = whole_zone
        self.ignore_skip_hint = ignore_skip_hint
        self.ignore_block_suitable = ignore_block_suitable
        self.no_set_skip_hint = False
        self.finish_pageblock = False
        self.contended = False
        self.alloc_contig = False
        self.migrate_pfn = 0
        self.free_pfn = 0
        self.fast_start_pfn = 0
        self.fast_search_fail = 0
        self.nr_migratepages = 0
        self.nr_freepages = 0
        self.migratepages: list[int] = []
        self.freepages: list[list[int]] = [[] for _ in range(NR_PAGE_ORDERS)]
        self.total_migrate_scanned = 0
        self.total_free_scanned = 0
        self.nr_migrated = 0
        self.nr_migrate_failed = 0


def is_via_compact_memory(order: int) -> bool:
    return order == -1


def isolation_suitable(k: Kernel, cc: CompactControl, pfn: int) -> bool:
    return cc.ignore_skip_hint or not get_pageblock_skip(k, pfn)


def test_and_set_skip(k: Kernel, cc: CompactControl, pfn: int) -> bool:
    if cc.ignore_skip_hint:
        return False
    skip = get_pageblock_skip(k, pfn)
    if not skip and not cc.no_set_skip_hint:
        set_pageblock_skip(k, pfn)
    return skip


def update_cached_migrate(k: Kernel, cc: CompactControl, pfn: int) -> None:
    if cc.no_set_skip_hint:
        return
    zc = zone_compact(k, cc.zone)
    pfn = pageblock_end_pfn(pfn)
    if pfn > zc.cached_migrate_pfn[0]:
        zc.cached_migrate_pfn[0] = pfn
    if cc.mode != MIGRATE_ASYNC and pfn > zc.cached_migrate_pfn[1]:
        zc.cached_migrate_pfn[1] = pfn


def update_pageblock_skip(k: Kernel, cc: CompactControl, page: int, pfn: int) -> None:
    if cc.no_set_skip_hint:
        return
    set_pageblock_skip(k, page)
    zc = zone_compact(k, cc.zone)
    if pfn < zc.cached_free_pfn:
        zc.cached_free_pfn = pfn


def __reset_isolation_pfn(k: Kernel, z: ZoneState, pfn: int, check_source: bool, check_target: bool) -> bool:
    if not pfn_valid(k, pfn) or not _page_zone_is(k, pfn, z) or pageblock_skip_persistent(k, pfn):
        return False
    if check_source and check_target and not get_pageblock_skip(k, pfn):
        return True
    if not check_source and check_target and pa.get_pfnblock_migratetype(k, pfn) != pa.MIGRATE_MOVABLE:
        return False
    bpfn = max(pageblock_start_pfn(pfn), z.start_pfn)
    if pfn_valid(k, bpfn):
        pfn = bpfn
    end = min(pageblock_end_pfn(pfn) - 1, z.end_pfn - 1)
    if not pfn_valid(k, end):
        return False
    p = pfn
    while p <= end:  # sample one page per 1 << PAGE_ALLOC_COSTLY_ORDER
        if check_source and _flags(k, p) >> _PG_lru & 1:
            clear_pageblock_skip(k, p)
            return True
        if check_target and p in z.free_order:
            clear_pageblock_skip(k, p)
            return True
        p += 1 << PAGE_ALLOC_COSTLY_ORDER
    return False


def __reset_isolation_suitable(k: Kernel, z: ZoneState) -> None:
    """__reset_isolation_suitable(): after a full pass, clear the skip hints of blocks that
    hold an LRU page (sources) or a free page (targets), walking from both ends."""
    zc = zone_compact(k, z)
    migrate_pfn = z.start_pfn
    free_pfn = z.end_pfn - 1
    reset_migrate, reset_free = free_pfn, migrate_pfn
    source_set = free_set = False
    if not zc.blockskip_flush:
        return
    zc.blockskip_flush = False
    while migrate_pfn < free_pfn:
        if __reset_isolation_pfn(k, z, migrate_pfn, True, source_set) and migrate_pfn < reset_migrate:
            source_set = True
            reset_migrate = migrate_pfn
            zc.init_migrate_pfn = reset_migrate
            zc.cached_migrate_pfn = [reset_migrate, reset_migrate]
        if __reset_isolation_pfn(k, z, free_pfn, free_set, True) and free_pfn > reset_free:
            free_set = True
            reset_free = free_pfn
            zc.init_free_pfn = reset_free
            zc.cached_free_pfn = reset_free
        migrate_pfn += PAGEBLOCK_NR_PAGES
        free_pfn -= PAGEBLOCK_NR_PAGES
    if reset_migrate >= reset_free:
        zc.cached_migrate_pfn = [migrate_pfn, migrate_pfn]
        zc.cached_free_pfn = free_pfn


def reset_isolation_suitable(k: Kernel, nid: int) -> None:
    """reset_isolation_suitable(pgdat): what kswapd runs before it sleeps."""
    for z in k.zones[nid]:
        if z.populated and zone_compact(k, z).blockskip_flush:
            __reset_isolation_suitable(k, z)


# -- the free scanner ----------------------------------------------------------------------------
def __isolate_free_page(k: Kernel, z: ZoneState, pfn: int, order: int) -> int:
    """mm/page_alloc.c __isolate_free_page(): take a free block off its list, as if allocated
    at the min watermark (+ its size); a block of at least half a pageblock makes its
    pageblocks MOVABLE."""
    mt = pa.get_pfnblock_migratetype(k, pfn)
    if mt != pa.MIGRATE_ISOLATE:
        watermark = z.watermark[pa.ALLOC_WMARK_MIN] + (1 << order)
        if not pa.zone_watermark_ok(z, 0, watermark, 0, pa.ALLOC_CMA):
            return 0
    pa._del_page_from_free_list(k, z, pfn, order)
    pa.account_freepages(z, -(1 << order), mt)
    if order >= PAGEBLOCK_ORDER - 1:
        p = pfn
        while p < pfn + (1 << order) - 1:
            bmt = pa.get_pfnblock_migratetype(k, p)
            if bmt < pa.MIGRATE_PCPTYPES and bmt != pa.MIGRATE_MOVABLE:
                pa.move_freepages_block(k, z, p, bmt, pa.MIGRATE_MOVABLE)
            p += PAGEBLOCK_NR_PAGES
    return 1 << order


def _set_private(k: Kernel, pfn: int, v: int) -> None:
    mv64, _mv32, w = pa.page_words(k, pfn)
    mv64[w + pa.W_PRIVATE] = v


def _add_freepage(cc: CompactControl, pfn: int, order: int) -> None:
    cc.freepages[order].append(pfn)  # list_add_tail(&page->lru, &freelist[order])


def isolate_freepages_block(
    k: Kernel, cc: CompactControl, start_pfn: int, end_pfn: int, stride: int, strict: bool
) -> tuple[int, int]:
    """isolate_freepages_block(): (pages isolated, where the scan stopped)."""
    z = cc.zone
    nr_scanned = total_isolated = 0
    blockpfn = start_pfn
    free_order = z.free_order
    while blockpfn < end_pfn:
        nr_scanned += 1
        order = free_order.get(blockpfn)
        if order is None:
            co = _compound_order(k, blockpfn)
            if co is not None and blockpfn + (1 << co) <= end_pfn:
                blockpfn += (1 << co) - 1
                nr_scanned += (1 << co) - 1
            if strict:
                break
            blockpfn += stride
            continue
        isolated = __isolate_free_page(k, z, blockpfn, order)
        if not isolated:
            break
        _set_private(k, blockpfn, order)
        nr_scanned += isolated - 1
        total_isolated += isolated
        cc.nr_freepages += isolated
        _add_freepage(cc, blockpfn, order)
        if not strict and cc.nr_migratepages <= cc.nr_freepages:
            blockpfn += isolated
            break
        blockpfn += isolated - 1
        blockpfn += stride
    if blockpfn > end_pfn:
        blockpfn = end_pfn
    if strict and blockpfn < end_pfn:
        total_isolated = 0
    cc.total_free_scanned += nr_scanned
    _count(k, "COMPACTISOLATED", total_isolated)
    return total_isolated, blockpfn


def suitable_migration_target(k: Kernel, cc: CompactControl, pfn: int) -> bool:
    order = cc.zone.free_order.get(pfn)
    if order is not None and order >= (cc.order if cc.order > 0 else PAGEBLOCK_ORDER):
        return False  # a block that large is what compaction is making: do not split it
    if cc.ignore_block_suitable:
        return True
    return pa.get_pfnblock_migratetype(k, pfn) == pa.MIGRATE_MOVABLE  # is_migrate_movable (no CMA)


def freelist_scan_limit(cc: CompactControl) -> int:
    shift = min(cc.fast_search_fail, 63)
    return (COMPACT_CLUSTER_MAX >> shift) + 1


def next_search_order(cc: CompactControl, order: int) -> int:
    order -= 1
    if order < 0:
        order = cc.order - 1
    if order == cc.search_order:
        cc.search_order -= 1
        if cc.search_order < 0:
            cc.search_order = cc.order - 1
        return -1
    return order


def _move_freelist_head(z: ZoneState, head: int, pfn: int) -> None:
    """move_freelist_head(): rotate the list so that ``pfn`` and what follows it come first
    (list_cut_before + list_splice_tail), so the next search skips the pages just seen."""
    nxt, prv = z.nxt, z.prv
    if prv[head] == pfn or nxt[head] == pfn:
        return  # list_is_first / list_is_last: nothing to do
    first, last = nxt[head], prv[head]
    before = prv[pfn]
    # the entries first..before move behind last
    nxt[head] = pfn
    prv[pfn] = head
    nxt[last] = first
    prv[first] = last
    nxt[before] = head
    prv[head] = before


def fast_isolate_around(k: Kernel, cc: CompactControl, pfn: int) -> None:
    if cc.nr_freepages >= cc.nr_migratepages:
        return
    if cc.direct_compaction and cc.mode == MIGRATE_ASYNC:
        return
    start = max(pageblock_start_pfn(pfn), cc.zone.start_pfn)
    end = min(pageblock_end_pfn(pfn), cc.zone.end_pfn)
    if pageblock_pfn_to_page(k, start, end, cc.zone) is None:
        return
    _n, stopped = isolate_freepages_block(k, cc, start, end, 1, False)
    if stopped == end and not cc.no_set_skip_hint:
        set_pageblock_skip(k, start)  # "full or nearly full": skip it in the future


def fast_isolate_freepages(k: Kernel, cc: CompactControl) -> None:
    """fast_isolate_freepages(): a bounded search of the MOVABLE free lists below the
    requested order for a block in the top quarter (else half) of the scan space."""
    z = cc.zone
    zc = zone_compact(k, z)
    limit = max(1, freelist_scan_limit(cc) >> 1)
    nr_scanned = total_isolated = 0
    highest = 0
    page = None
    scan_start = False
    if cc.order <= 0:
        return
    if cc.free_pfn >= zc.init_free_pfn:
        limit = PAGEBLOCK_NR_PAGES >> 1
        scan_start = True
    distance = cc.free_pfn - cc.migrate_pfn
    low_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 2))
    min_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 1))
    if min_pfn > low_pfn:
        low_pfn = min_pfn
    cc.search_order = min(cc.order - 1, cc.search_order)
    order = cc.search_order
    while page is None and order >= 0:
        if z.nr_free[order]:
            head = pa.free_list_head(order, pa.MIGRATE_MOVABLE)
            order_scanned = 0
            high_pfn = 0
            freepage = None
            p = z.prv[head]  # list_for_each_entry_reverse
            while p != head:
                order_scanned += 1
                nr_scanned += 1
                freepage = p
                if p >= highest:
                    highest = max(pageblock_start_pfn(p), z.start_pfn)
                if p >= low_pfn:
                    cc.fast_search_fail = 0
                    cc.search_order = order
                    page = p
                    break
                if p >= min_pfn and p > high_pfn:
                    high_pfn = p
                    limit >>= 1
                if order_scanned >= limit:
                    break
                p = z.prv[p]
            if page is None and high_pfn:
                page = freepage = high_pfn
            if freepage is not None:
                _move_freelist_head(z, head, freepage)
            if page is not None:
                if __isolate_free_page(k, z, page, order):
                    _set_private(k, page, order)
                    nr = 1 << order
                    nr_scanned += nr - 1
                    total_isolated += nr
                    cc.nr_freepages += nr
                    _add_freepage(cc, page, order)
                    _count(k, "COMPACTISOLATED", nr)
                else:
                    order = cc.search_order + 1  # "If isolation fails, abort the search"
                    page = None
            if cc.nr_freepages >= cc.nr_migratepages:
                break
            if order_scanned >= limit:
                limit = max(1, limit >> 1)
        if page is not None:
            break
        order = next_search_order(cc, order)
    if page is None:
        cc.fast_search_fail += 1
        if scan_start:
            if highest >= min_pfn:
                page = highest
                cc.free_pfn = highest
            elif cc.direct_compaction and pfn_valid(k, min_pfn):
                page = pageblock_pfn_to_page(k, min_pfn, min(pageblock_end_pfn(min_pfn), z.end_pfn), z)
                if page is not None and not suitable_migration_target(k, cc, page):
                    page = None
                cc.free_pfn = min_pfn
    if highest and highest >= zc.cached_free_pfn:
        highest -= PAGEBLOCK_NR_PAGES
        zc.cached_free_pfn = highest
    cc.total_free_scanned += nr_scanned
    if page is None:
        return
    fast_isolate_around(k, cc, page)


def isolate_freepages(k: Kernel, cc: CompactControl) -> None:
    """isolate_freepages(): the free scanner, pageblock by pageblock from cc->free_pfn down to
    the migrate scanner's block, until it holds as many free pages as there are folios to
    migrate (the stride doubles over blocks without free pages in async mode)."""
    z = cc.zone
    fast_isolate_freepages(k, cc)
    if cc.nr_freepages:
        return
    isolate_start_pfn = cc.free_pfn
    bstart = pageblock_start_pfn(isolate_start_pfn)
    bend = min(bstart + PAGEBLOCK_NR_PAGES, z.end_pfn)
    low_pfn = pageblock_end_pfn(cc.migrate_pfn)
    stride = COMPACT_CLUSTER_MAX if cc.mode == MIGRATE_ASYNC else 1
    while bstart >= low_pfn:
        page = pageblock_pfn_to_page(k, bstart, bend, z)
        if page is not None and suitable_migration_target(k, cc, page) and isolation_suitable(k, cc, page):
            nr_isolated, isolate_start_pfn = isolate_freepages_block(k, cc, isolate_start_pfn, bend, stride, False)
            if isolate_start_pfn == bend:
                update_pageblock_skip(k, cc, page, bstart - PAGEBLOCK_NR_PAGES)
            if cc.nr_freepages >= cc.nr_migratepages:
                if isolate_start_pfn >= bend:
                    isolate_start_pfn = bstart - PAGEBLOCK_NR_PAGES
                break
            elif isolate_start_pfn < bend:
                break
            stride = 1 if nr_isolated else min(COMPACT_CLUSTER_MAX, stride << 1)
        bend = bstart
        bstart -= PAGEBLOCK_NR_PAGES
        isolate_start_pfn = bstart
    cc.free_pfn = isolate_start_pfn


def compaction_alloc(k: Kernel, cc: CompactControl, src: int) -> int | None:
    """compaction_alloc(): the smallest isolated free block that fits, split down (the halves
    back on cc->freepages), then post_alloc_hook + set_page_refcounted; the free scanner
    runs once more when none is left."""
    order = 0
    has_isolated_pages = False
    while True:
        start_order = next((o for o in range(order, NR_PAGE_ORDERS) if cc.freepages[o]), NR_PAGE_ORDERS)
        if start_order < NR_PAGE_ORDERS:
            break
        if has_isolated_pages:
            return None
        isolate_freepages(k, cc)
        has_isolated_pages = True
    freepage = cc.freepages[start_order].pop(0)  # list_first_entry + list_del
    size = 1 << start_order
    while start_order > order:
        start_order -= 1
        size >>= 1
        cc.freepages[start_order].insert(0, freepage + size)  # list_add
        _set_private(k, freepage + size, start_order)
    pa.post_alloc_hook(k, freepage, order, G.FLAGS["__GFP_MOVABLE"])
    _set_private(k, freepage, 0)
    mv64, mv32, w = pa.page_words(k, freepage)
    mv32[2 * w + pa.D_REFCOUNT] = 1  # set_page_refcounted
    k.allocations[freepage] = order
    cc.nr_freepages -= 1 << order
    cc.nr_migratepages -= 1 << order
    return freepage


def compaction_free(k: Kernel, cc: CompactControl, dst: int) -> None:
    """compaction_free(): an unused destination goes back on cc->freepages."""
    from mmintro.kernel import rmap

    order = 0
    ref = rmap.folio_ref_count(k, dst)
    rmap._set32(k, dst, rmap.D_REFCOUNT, ref - 1)
    if ref - 1 == 0:
        k.allocations.pop(dst, None)
        pa.free_pages_prepare(k, dst, order)
        cc.freepages[order].insert(0, dst)
        cc.nr_freepages += 1 << order
    cc.nr_migratepages += 1 << order


def release_free_list(k: Kernel, cc: CompactControl) -> int:
    """release_free_list(): every isolated free page back to the allocator (mark_allocated +
    __free_pages); returns the highest pfn."""
    high_pfn = 0
    for order in range(NR_PAGE_ORDERS):
        for pfn in cc.freepages[order]:
            _set_private(k, pfn, 0)
            mv64, mv32, w = pa.page_words(k, pfn)
            mv32[2 * w + pa.D_REFCOUNT] = 1
            k.allocations[pfn] = order
            k.free_pages(pfn, order)
            high_pfn = max(high_pfn, pfn)
        cc.freepages[order] = []
    return high_pfn


# -- the migrate scanner -------------------------------------------------------------------------
def too_many_isolated(k: Kernel, cc: CompactControl) -> bool:
    """too_many_isolated(): isolated pages above half of the node's LRU pages."""
    s = k.node_vm_stat[cc.zone.nid]
    inactive = s.get("NR_INACTIVE_FILE", 0) + s.get("NR_INACTIVE_ANON", 0)
    active = s.get("NR_ACTIVE_FILE", 0) + s.get("NR_ACTIVE_ANON", 0)
    isolated = s.get("NR_ISOLATED_FILE", 0) + s.get("NR_ISOLATED_ANON", 0)
    return isolated > (inactive + active) // 2


def skip_isolation_on_order(order: int, target_order: int) -> bool:
    """skip_isolation_on_order(): a compound page at least as large as the target order (or,
    for vm.compact_memory, of pageblock order or more) is not worth migrating."""
    if not is_via_compact_memory(target_order) and order >= target_order:
        return True
    return order >= PAGEBLOCK_ORDER


def isolate_migratepages_block(k: Kernel, cc: CompactControl, low_pfn: int, end_pfn: int, mode: int) -> int:
    """isolate_migratepages_block(): isolate the LRU folios of [low_pfn, end_pfn) onto
    cc->migratepages (at most COMPACT_CLUSTER_MAX at a time), skipping free blocks, compound
    pages and everything not on an LRU; async direct compaction gives up an order-aligned
    block at the first page it cannot isolate (skip_on_failure).  Returns 0 or -EAGAIN."""
    from mmintro.kernel import rmap

    z = cc.zone
    nr_scanned = nr_isolated = 0
    valid_page = None
    skip_updated = False
    ret = 0
    skip_on_failure = False
    next_skip_pfn = 0
    start_pfn = low_pfn
    if too_many_isolated(k, cc):
        if cc.mode == MIGRATE_ASYNC:
            return EAGAIN
        # the kernel waits for isolated pages to come back: nothing in flight here
    if cc.direct_compaction and cc.mode == MIGRATE_ASYNC:
        skip_on_failure = True
        next_skip_pfn = block_end_pfn(low_pfn, cc.order)
    free_order = z.free_order
    while low_pfn < end_pfn:
        if skip_on_failure and low_pfn >= next_skip_pfn:
            if nr_isolated:
                break
            next_skip_pfn = block_end_pfn(low_pfn, cc.order)
        nr_scanned += 1
        page = low_pfn
        if valid_page is None and (low_pfn % PAGEBLOCK_NR_PAGES == 0 or low_pfn == z.start_pfn):
            if not isolation_suitable(k, cc, page):
                low_pfn = end_pfn
                break  # isolate_abort
            valid_page = page
        fo = free_order.get(low_pfn)
        if fo is not None:
            if 0 < fo <= pa.MAX_PAGE_ORDER:
                low_pfn += (1 << fo) - 1
                nr_scanned += (1 << fo) - 1
            low_pfn += 1
            continue
        failed = False
        f = _flags(k, page)
        co = _compound_order(k, page)
        if co is not None and rmap.page_folio(k, page) != page:
            failed = True  # a tail page: compound_order() 0, folio_get_nontail_page() fails
        elif co is not None and not cc.alloc_contig and skip_isolation_on_order(co, cc.order):
            if co <= pa.MAX_PAGE_ORDER:
                low_pfn += (1 << co) - 1
                nr_scanned += (1 << co) - 1
            failed = True
        elif not f >> _PG_lru & 1:
            failed = True  # not an LRU page, and no movable_operations pages exist here
        else:
            mapping = rmap._get64(k, page, rmap.W_MAPPING)
            file_mapping = mapping and not mapping & rmap.FOLIO_MAPPING_ANON
            ref = rmap.folio_ref_count(k, page) + 1  # folio_get_nontail_page
            if not file_mapping and ref - 1 > rmap.folio_mapcount(k, page):
                failed = True  # pinned or otherwise referenced anonymous folio
            elif not cc.gfp_mask & G.FLAGS["__GFP_FS"] and file_mapping:
                failed = True
            elif f >> _PG_unevictable & 1 or f >> _PG_mlocked & 1:
                failed = True  # mlocked: not isolated in this model
            elif mode & ISOLATE_ASYNC_MIGRATE and f >> _PG_writeback & 1:
                failed = True
            elif f >> _PG_locked & 1:
                failed = True  # folio_trylock
            else:
                if not skip_updated and valid_page is not None:
                    skip_updated = True
                    if test_and_set_skip(k, cc, valid_page) and not cc.finish_pageblock:
                        low_pfn = end_pfn
                        break  # isolate_abort
                migrate.folio_isolate_lru(k, page)
                cc.migratepages.append(page)
                cc.nr_migratepages += 1
                nr_isolated += 1
                if cc.nr_migratepages >= COMPACT_CLUSTER_MAX and not cc.finish_pageblock and not cc.contended:
                    low_pfn += 1
                    break
                low_pfn += 1
                continue
        if failed:  # isolate_fail
            if not skip_on_failure:
                low_pfn += 1
                continue
            if nr_isolated:
                migrate.putback_movable_pages(k, cc.migratepages)
                cc.nr_migratepages = 0
                nr_isolated = 0
            if low_pfn < next_skip_pfn:
                low_pfn = next_skip_pfn - 1
                next_skip_pfn += 1 << cc.order
            low_pfn += 1
    if low_pfn > end_pfn:
        low_pfn = end_pfn
    if low_pfn == end_pfn and (not nr_isolated or cc.finish_pageblock):
        if not cc.no_set_skip_hint and valid_page is not None and not skip_updated:
            set_pageblock_skip(k, valid_page)
        update_cached_migrate(k, cc, low_pfn)
    del start_pfn
    cc.total_migrate_scanned += nr_scanned
    _count(k, "COMPACTISOLATED", nr_isolated)
    cc.migrate_pfn = low_pfn
    return ret


def suitable_migration_source(k: Kernel, cc: CompactControl, pfn: int) -> bool:
    if pageblock_skip_persistent(k, pfn):
        return False
    if cc.mode != MIGRATE_ASYNC or not cc.direct_compaction:
        return True
    block_mt = pa.get_pfnblock_migratetype(k, pfn)
    if cc.migratetype == pa.MIGRATE_MOVABLE:
        return block_mt == pa.MIGRATE_MOVABLE
    return block_mt == cc.migratetype


ULONG_MAX = (1 << 64) - 1


def _move_freelist_tail(z: ZoneState, head: int, pfn: int) -> None:
    """move_freelist_tail(): the entries up to and including ``pfn`` go to the list's tail
    (list_cut_position + list_splice_tail), so the next search starts after them."""
    nxt, prv = z.nxt, z.prv
    if prv[head] == pfn:
        return  # list_is_last
    first, last, after = nxt[head], prv[head], nxt[pfn]
    nxt[head] = after
    prv[after] = head
    nxt[last] = first
    prv[first] = last
    nxt[pfn] = head
    prv[head] = pfn


def update_fast_start_pfn(cc: CompactControl, pfn: int) -> None:
    if cc.fast_start_pfn == ULONG_MAX:
        return
    if not cc.fast_start_pfn:
        cc.fast_start_pfn = pfn
    cc.fast_start_pfn = min(cc.fast_start_pfn, pfn)


def reinit_migrate_pfn(cc: CompactControl) -> int:
    if not cc.fast_start_pfn or cc.fast_start_pfn == ULONG_MAX:
        return cc.migrate_pfn
    cc.migrate_pfn = cc.fast_start_pfn
    cc.fast_start_pfn = ULONG_MAX
    return cc.migrate_pfn


def fast_find_migrateblock(k: Kernel, cc: CompactControl) -> int:
    """fast_find_migrateblock(): for a costly order (kcompactd, or a direct compaction for a
    movable request) starting a pageblock, pick a pageblock holding a free block of order
    PAGE_ALLOC_COSTLY_ORDER..order-1 within the first half of the scan space (the first eighth
    once the scanner has left the zone start) from the MOVABLE free lists, so compaction
    empties a block that is already partly free; else the linear scanner's position."""
    z = cc.zone
    limit = freelist_scan_limit(cc)
    nr_scanned = 0
    pfn = cc.migrate_pfn
    found_block = False
    if cc.ignore_skip_hint or cc.finish_pageblock:
        return pfn
    if pfn != z.start_pfn and pfn != pageblock_start_pfn(pfn):
        return pfn  # a continuation of a block restarted after COMPACT_CLUSTER_MAX
    if cc.order <= PAGE_ALLOC_COSTLY_ORDER:
        return pfn
    if cc.direct_compaction and cc.migratetype != pa.MIGRATE_MOVABLE:
        return pfn
    distance = (cc.free_pfn - cc.migrate_pfn) >> 1
    if cc.migrate_pfn != z.start_pfn:
        distance >>= 2
    high_pfn = pageblock_start_pfn(cc.migrate_pfn + distance)
    order = cc.order - 1
    while order >= PAGE_ALLOC_COSTLY_ORDER and not found_block and nr_scanned < limit:
        if z.nr_free[order]:
            head = pa.free_list_head(order, pa.MIGRATE_MOVABLE)
            p = z.nxt[head]
            while p != head:
                nxt = z.nxt[p]
                if nr_scanned >= limit:
                    nr_scanned += 1
                    _move_freelist_tail(z, head, p)
                    break
                nr_scanned += 1
                if p < high_pfn:
                    if get_pageblock_skip(k, p):
                        p = nxt
                        continue
                    _move_freelist_tail(z, head, p)
                    update_fast_start_pfn(cc, p)
                    pfn = max(pageblock_start_pfn(p), z.start_pfn)
                    cc.fast_search_fail = 0
                    found_block = True
                    break
                p = nxt
        order -= 1
    cc.total_migrate_scanned += nr_scanned
    if not found_block:
        cc.fast_search_fail += 1
        pfn = reinit_migrate_pfn(cc)
    return pfn


def isolate_migratepages(k: Kernel, cc: CompactControl) -> int:
    """isolate_migratepages(): from fast_find_migrateblock()'s pick (or cc->migrate_pfn), the
    first pageblock that is a suitable source (not skip-marked unless the fast search chose
    it, right migratetype for async direct compaction), isolated by
    isolate_migratepages_block."""
    z = cc.zone
    isolate_mode = (ISOLATE_UNEVICTABLE if compaction_sysctl(k, "compact_unevictable_allowed") else 0) | (
        ISOLATE_ASYNC_MIGRATE if cc.mode != MIGRATE_SYNC else 0
    )
    low_pfn = fast_find_migrateblock(k, cc)
    bstart = max(pageblock_start_pfn(low_pfn), z.start_pfn)
    fast_find_block = low_pfn != cc.migrate_pfn and not cc.fast_search_fail
    bend = pageblock_end_pfn(low_pfn)
    while bend <= cc.free_pfn:
        page = pageblock_pfn_to_page(k, bstart, bend, z)
        if page is not None:
            if (
                (low_pfn % PAGEBLOCK_NR_PAGES == 0 or low_pfn == z.start_pfn)
                and not fast_find_block
                and not isolation_suitable(k, cc, page)
            ):
                pass
            elif not suitable_migration_source(k, cc, page):
                update_cached_migrate(k, cc, bend)
            else:
                if isolate_migratepages_block(k, cc, low_pfn, bend, isolate_mode):
                    return ISOLATE_ABORT
                break
        fast_find_block = False
        cc.migrate_pfn = low_pfn = bend
        bstart = bend
        bend += PAGEBLOCK_NR_PAGES
    return ISOLATE_SUCCESS if cc.nr_migratepages else ISOLATE_NONE


# -- finishing -----------------------------------------------------------------------------------
def compact_scanners_met(cc: CompactControl) -> bool:
    return (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER)


def __compact_finished(k: Kernel, cc: CompactControl) -> int:
    z = cc.zone
    if compact_scanners_met(cc):
        reset_cached_positions(k, z)
        if cc.direct_compaction:
            zone_compact(k, z).blockskip_flush = True
        return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
    if cc.proactive_compaction:
        # kswapd_is_running(): kswapd has no thread in the simulator
        score = fragmentation_score_zone(z)
        ret = COMPACT_CONTINUE if score > fragmentation_score_wmark(k, True) else COMPACT_SUCCESS
        return COMPACT_CONTENDED if cc.contended else ret
    if is_via_compact_memory(cc.order):
        return COMPACT_CONTINUE
    if cc.migrate_pfn % PAGEBLOCK_NR_PAGES:
        return COMPACT_CONTINUE
    ret = COMPACT_NO_SUITABLE_PAGE
    for order in range(cc.order, NR_PAGE_ORDERS):
        if not pa.free_area_empty(z, order, cc.migratetype):
            return COMPACT_SUCCESS
        if pa.find_suitable_fallback(z, order, cc.migratetype, True) >= 0:
            return COMPACT_SUCCESS
    return COMPACT_CONTENDED if cc.contended else ret


def compact_finished(k: Kernel, cc: CompactControl) -> int:
    ret = __compact_finished(k, cc)
    return COMPACT_CONTINUE if ret == COMPACT_NO_SUITABLE_PAGE else ret


# -- suitability ---------------------------------------------------------------------------------
def compact_gap(order: int) -> int:
    """compact_gap(): free pages compaction needs besides the request (2 << order)."""
    return 2 << order


def __compaction_suitable(z: ZoneState, order: int, watermark: int, highest_zoneidx: int, free_pages: int) -> bool:
    """Order-0 free pages above the caller's watermark + compact_gap(order) (+ low - min for
    costly orders, "to increase its chances"), as migration targets."""
    watermark += compact_gap(order)
    if order > PAGE_ALLOC_COSTLY_ORDER:
        watermark += pa.wmark_pages(z, pa.ALLOC_WMARK_LOW) - pa.wmark_pages(z, pa.ALLOC_WMARK_MIN)
    return pa.__zone_watermark_ok(z, 0, watermark, highest_zoneidx, pa.ALLOC_CMA, free_pages)


def compaction_suitable(k: Kernel, z: ZoneState, order: int, watermark: int, highest_zoneidx: int) -> bool:
    """compaction_suitable(): enough order-0 free pages to migrate into, and for costly orders
    a fragmentation index above vm.extfrag_threshold (a failure due to fragmentation, not to
    a lack of memory)."""
    suitable = __compaction_suitable(z, order, watermark, highest_zoneidx, z.free_pages)
    if suitable and order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = fragmentation_index(z, order)
        if 0 <= fragindex <= compaction_sysctl(k, "extfrag_threshold"):
            suitable = False
    return suitable


def compaction_suit_allocation_order(
    k: Kernel, z: ZoneState, order: int, highest_zoneidx: int, alloc_flags: int, is_async: bool, kcompactd: bool
) -> int:
    """compaction_suit_allocation_order(): COMPACT_SUCCESS if the allocation would succeed
    already, COMPACT_SKIPPED if compaction cannot help, else COMPACT_CONTINUE."""
    free_pages = z.free_pages
    watermark = pa.wmark_pages(z, alloc_flags & pa.ALLOC_WMARK_MASK)
    if pa.__zone_watermark_ok(z, order, watermark, highest_zoneidx, alloc_flags, free_pages):
        return COMPACT_SUCCESS
    if order > PAGE_ALLOC_COSTLY_ORDER and is_async and not alloc_flags & pa.ALLOC_CMA:
        if not pa.__zone_watermark_ok(z, 0, watermark + compact_gap(order), highest_zoneidx, 0, z.free_pages):
            return COMPACT_SKIPPED
    if not compaction_suitable(k, z, order, watermark, highest_zoneidx):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


def compaction_zonelist_suitable(k: Kernel, ac: pa.AllocContext, order: int, alloc_flags: int) -> bool:
    """compaction_zonelist_suitable(): would any zone pass __compaction_suitable if reclaim
    freed its reclaimable pages (zone_reclaimable_pages / order)?"""
    from mmintro.kernel import vmscan

    for z in ac.zones:
        available = vmscan.zone_reclaimable_pages(k, z) // order + z.free_pages
        if __compaction_suitable(z, order, pa.wmark_pages(z, pa.ALLOC_WMARK_MIN), ac.highest_zoneidx, available):
            return True
    return False


def compaction_ready(k: Kernel, z: ZoneState, order: int, reclaim_idx: int, gfp: int) -> bool:
    """mm/vmscan.c compaction_ready(): reclaim for a costly order can stop for this zone --
    the allocation would succeed already, or compaction has enough free pages to work with
    above the high watermark (shrink_zones sets sc->compaction_ready from it)."""
    if not gfp_compaction_allowed(gfp):
        return False
    if pa.zone_watermark_ok(z, order, pa.wmark_pages(z, pa.ALLOC_WMARK_MIN), reclaim_idx, 0):
        return True
    return compaction_suitable(k, z, order, pa.wmark_pages(z, pa.ALLOC_WMARK_HIGH), reclaim_idx)


# -- fragmentation (mm/vmstat.c) ----------------------------------------------------------------
def fill_contig_page_info(z: ZoneState, suitable_order: int) -> tuple[int, int, int]:
    """(free_pages, free_blocks_total, free_blocks_suitable) from zone->free_area[].nr_free."""
    free_pages = total = suitable = 0
    for order in range(NR_PAGE_ORDERS):
        blocks = z.nr_free[order]
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return free_pages, total, suitable


def __fragmentation_index(order: int, info: tuple[int, int, int]) -> int:
    free_pages, total, suitable = info
    if not total:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // (1 << order)) // total


def fragmentation_index(z: ZoneState, order: int) -> int:
    """fragmentation_index(): -1000 if a block of ``order`` is free, else towards 0 for a
    failure from lack of memory and towards 1000 for one from fragmentation."""
    return __fragmentation_index(order, fill_contig_page_info(z, order))


def extfrag_for_order(z: ZoneState, order: int) -> int:
    """extfrag_for_order(): the share (0..100) of free memory in blocks smaller than ``order``."""
    free_pages, _total, suitable = fill_contig_page_info(z, order)
    if not free_pages:
        return 0
    return (free_pages - (suitable << order)) * 100 // free_pages


def fragmentation_score_zone(z: ZoneState) -> int:
    return extfrag_for_order(z, COMPACTION_HPAGE_ORDER)


def fragmentation_score_zone_weighted(k: Kernel, z: ZoneState) -> int:
    node_present = sum(zz.present for zz in k.zones[z.nid])
    return z.present * fragmentation_score_zone(z) // (node_present + 1)


def fragmentation_score_node(k: Kernel, nid: int) -> int:
    """fragmentation_score_node(): the node's zones' scores weighted by their size."""
    return sum(fragmentation_score_zone_weighted(k, z) for z in k.zones[nid] if z.populated)


def fragmentation_score_wmark(k: Kernel, low: bool) -> int:
    wmark_low = max(100 - compaction_sysctl(k, "compaction_proactiveness"), 5)
    return wmark_low if low else min(wmark_low + 10, 100)


def should_proactive_compact_node(k: Kernel, nid: int) -> bool:
    if not compaction_sysctl(k, "compaction_proactiveness"):
        return False  # (kswapd_is_running(pgdat): no kswapd thread runs in the simulator)
    return fragmentation_score_node(k, nid) > fragmentation_score_wmark(k, False)


# -- compact_zone ---------------------------------------------------------------------------------
def compact_zone(k: Kernel, cc: CompactControl) -> int:
    """compact_zone(): one compaction run over cc->zone; returns an enum compact_result."""
    z = cc.zone
    zc = zone_compact(k, z)
    start_pfn, end_pfn = z.start_pfn, z.end_pfn
    sync = cc.mode != MIGRATE_ASYNC
    cc.total_migrate_scanned = cc.total_free_scanned = 0
    cc.nr_migratepages = cc.nr_freepages = 0
    cc.migratepages = []
    cc.freepages = [[] for _ in range(NR_PAGE_ORDERS)]
    cc.migratetype = G.gfp_migratetype(cc.gfp_mask)
    if not is_via_compact_memory(cc.order):
        ret = compaction_suit_allocation_order(
            k, z, cc.order, cc.highest_zoneidx, cc.alloc_flags, cc.mode == MIGRATE_ASYNC, not cc.direct_compaction
        )
        if ret != COMPACT_CONTINUE:
            return ret
    if compaction_restarting(k, z, cc.order):
        __reset_isolation_suitable(k, z)
    cc.fast_start_pfn = 0
    if cc.whole_zone:
        cc.migrate_pfn = start_pfn
        cc.free_pfn = pageblock_start_pfn(end_pfn - 1)
    else:
        cc.migrate_pfn = zc.cached_migrate_pfn[int(sync)]
        cc.free_pfn = zc.cached_free_pfn
        if cc.free_pfn < start_pfn or cc.free_pfn >= end_pfn:
            cc.free_pfn = pageblock_start_pfn(end_pfn - 1)
            zc.cached_free_pfn = cc.free_pfn
        if cc.migrate_pfn < start_pfn or cc.migrate_pfn >= end_pfn:
            cc.migrate_pfn = start_pfn
            zc.cached_migrate_pfn = [start_pfn, start_pfn]
        if cc.migrate_pfn <= zc.init_migrate_pfn:
            cc.whole_zone = True
    last_migrated_pfn = 0
    update_cached = not sync and zc.cached_migrate_pfn[0] == zc.cached_migrate_pfn[1]
    # lru_add_drain(): the LRU batches are drained as they are filled in this model
    while True:
        ret = compact_finished(k, cc)
        if ret != COMPACT_CONTINUE:
            break
        iteration_start_pfn = cc.migrate_pfn
        cc.finish_pageblock = pageblock_start_pfn(last_migrated_pfn) == pageblock_start_pfn(iteration_start_pfn)
        rescan = True
        stop = False
        while rescan:
            rescan = False
            r = isolate_migratepages(k, cc)
            if r == ISOLATE_ABORT:
                ret = COMPACT_CONTENDED
                migrate.putback_movable_pages(k, cc.migratepages)
                cc.nr_migratepages = 0
                stop = True
                break
            if r == ISOLATE_NONE:
                if update_cached:
                    zc.cached_migrate_pfn[1] = zc.cached_migrate_pfn[0]
                break  # check_drain
            update_cached = False
            last_migrated_pfn = max(z.start_pfn, pageblock_start_pfn(cc.migrate_pfn - 1))
            stats = migrate.MigrateStats()
            err = migrate.migrate_pages(
                k,
                cc.migratepages,
                lambda src: compaction_alloc(k, cc, src),
                lambda dst: compaction_free(k, cc, dst),
                migrate.MR_COMPACTION,
                stats,
            )
            cc.nr_migrated += stats.nr_succeeded
            cc.nr_migrate_failed += stats.nr_failed_pages
            cc.nr_migratepages = 0
            if err:
                migrate.putback_movable_pages(k, cc.migratepages)
                if err == ENOMEM and not compact_scanners_met(cc):
                    ret = COMPACT_CONTENDED
                    stop = True
                    break
                if (
                    cc.migrate_pfn % PAGEBLOCK_NR_PAGES
                    and not cc.ignore_skip_hint
                    and not cc.finish_pageblock
                    and cc.mode < MIGRATE_SYNC
                ):
                    cc.finish_pageblock = True
                    if cc.order == COMPACTION_HPAGE_ORDER:
                        last_migrated_pfn = 0
                    rescan = True
        if stop:
            break
        # check_drain: the migrate scanner left the order-aligned block it migrated from:
        # flush this CPU's pcp pages of the zone so the freed pages can merge.
        if cc.order > 0 and last_migrated_pfn:
            if last_migrated_pfn < block_start_pfn(cc.migrate_pfn, cc.order):
                pa.drain_pages_zone(k, k.current_cpu, z)  # lru_add_drain_cpu_zone
                last_migrated_pfn = 0
    # out:
    if cc.nr_freepages > 0:
        free_pfn = pageblock_start_pfn(release_free_list(k, cc))
        cc.nr_freepages = 0
        if free_pfn > zc.cached_free_pfn:
            zc.cached_free_pfn = free_pfn
    _count(k, "COMPACTMIGRATE_SCANNED", cc.total_migrate_scanned)
    _count(k, "COMPACTFREE_SCANNED", cc.total_free_scanned)
    log = k.__dict__.setdefault("compaction_log", [])
    log.append(
        (
            z.nid,
            z.name,
            cc.order,
            cc.mode,
            RESULT_NAMES[ret],
            cc.total_migrate_scanned,
            cc.total_free_scanned,
            cc.nr_migrated,
            cc.nr_migrate_failed,
        )
    )
    return ret


def compact_zone_order(
    k: Kernel, z: ZoneState, order: int, gfp_mask: int, prio: int, alloc_flags: int, highest_zoneidx: int
) -> int:
    """compact_zone_order(): one zone's direct compaction at priority ``prio``."""
    cc = CompactControl(
        z,
        order,
        gfp_mask,
        MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT,
        alloc_flags,
        highest_zoneidx,
        direct_compaction=True,
        whole_zone=prio == MIN_COMPACT_PRIORITY,
        ignore_skip_hint=prio == MIN_COMPACT_PRIORITY,
        ignore_block_suitable=prio == MIN_COMPACT_PRIORITY,
    )
    return compact_zone(k, cc)


def gfp_compaction_allowed(gfp: int) -> bool:
    """CONFIG_COMPACTION and __GFP_IO (compaction may block on I/O)."""
    return bool(gfp & G.FLAGS["__GFP_IO"])


def try_to_compact_pages(k: Kernel, gfp_mask: int, order: int, alloc_flags: int, ac: pa.AllocContext, prio: int) -> int:
    """try_to_compact_pages(): direct compaction of each zone of the zonelist until one says
    the allocation should now succeed; deferred zones are skipped above MIN priority, and a
    sync run that completes without success defers the zone."""
    rc = COMPACT_SKIPPED
    if not gfp_compaction_allowed(gfp_mask):
        return COMPACT_SKIPPED
    for z in ac.zones:
        if prio > MIN_COMPACT_PRIORITY and compaction_deferred(k, z, order):
            rc = max(COMPACT_DEFERRED, rc)
            continue
        status = compact_zone_order(k, z, order, gfp_mask, prio, alloc_flags, ac.highest_zoneidx)
        rc = max(status, rc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(k, z, order, False)
            break
        if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            defer_compaction(k, z, order)
    return rc


# -- the allocator's slow path (mm/page_alloc.c) ------------------------------------------------
def __alloc_pages_direct_compact(
    k: Kernel, gfp: int, order: int, alloc_flags: int, ac: pa.AllocContext, prio: int
) -> tuple[int | None, int]:
    """mm/page_alloc.c __alloc_pages_direct_compact(): try_to_compact_pages, then (no capture)
    get_page_from_freelist; COMPACTSTALL unless every zone was skipped, then COMPACTSUCCESS
    (and the zone's deferral reset) or COMPACTFAIL.  Returns (pfn or None, compact_result)."""
    from mmintro.kernel import psi

    if not order:
        return None, COMPACT_SKIPPED
    # psi_memstall_enter/leave around try_to_compact_pages: the allocating task stalls on memory
    # for as long as the work takes (the simulator's cost model: COMPACT_SCAN_NS per pfn the
    # scanners looked at, MIGRATE_NS per page migrated)
    work = (
        _sum_events(k, "COMPACTMIGRATE_SCANNED") + _sum_events(k, "COMPACTFREE_SCANNED"),
        _sum_events(k, "PGMIGRATE_SUCCESS"),
    )
    flags = psi.psi_memstall_enter(k)
    try:
        result = try_to_compact_pages(k, gfp, order, alloc_flags, ac, prio)
    finally:
        scanned = _sum_events(k, "COMPACTMIGRATE_SCANNED") + _sum_events(k, "COMPACTFREE_SCANNED") - work[0]
        migrated = _sum_events(k, "PGMIGRATE_SUCCESS") - work[1]
        psi.advance(k, scanned * COMPACT_SCAN_NS + migrated * MIGRATE_NS)
        psi.psi_memstall_leave(k, None, flags)
    if result == COMPACT_SKIPPED:
        return None, result
    _count(k, "COMPACTSTALL")
    pfn = pa.get_page_from_freelist(k, gfp, order, alloc_flags, ac)
    if pfn is not None:
        z = pa.page_zone(k, pfn)
        zone_compact(k, z).blockskip_flush = False
        compaction_defer_reset(k, z, order, True)
        _count(k, "COMPACTSUCCESS")
        return pfn, result
    _count(k, "COMPACTFAIL")
    return None, result


alloc_pages_direct_compact = __alloc_pages_direct_compact  # callable from a class body (no name mangling)


def should_compact_retry(
    k: Kernel, ac: pa.AllocContext, order: int, alloc_flags: int, compact_result: int, state: DirectCompaction
) -> bool:
    """mm/page_alloc.c should_compact_retry(): retry after a skipped compaction if reclaim
    could help, a few times after a success that lost the race, and otherwise with a raised
    priority down to MIN_COMPACT_(COSTLY_)PRIORITY."""
    if not order:
        return False
    if compact_result == COMPACT_SKIPPED:
        return compaction_zonelist_suitable(k, ac, order, alloc_flags)
    if compact_result == COMPACT_SUCCESS:
        max_retries = MAX_COMPACT_RETRIES // 4 if order > PAGE_ALLOC_COSTLY_ORDER else MAX_COMPACT_RETRIES
        state.compaction_retries += 1
        if state.compaction_retries <= max_retries:
            return True
    min_priority = MIN_COMPACT_COSTLY_PRIORITY if order > PAGE_ALLOC_COSTLY_ORDER else MIN_COMPACT_PRIORITY
    if state.compact_priority > min_priority:
        state.compact_priority -= 1
        state.compaction_retries = 0
        return True
    return False


class DirectCompaction:
    """The slow path's compaction state (compact_result, compact_priority,
    compaction_retries of __alloc_pages_slowpath) and its two calls, so the slow path needs
    only a few lines: :meth:`initial` before the ``retry:`` label, :meth:`after_reclaim` after
    direct reclaim, :meth:`should_retry` after should_reclaim_retry."""

    def __init__(self, k: Kernel, gfp: int, order: int, ac: pa.AllocContext) -> None:
        self.k, self.gfp, self.order, self.ac = k, gfp, order, ac
        self.compact_result = COMPACT_SKIPPED
        self.compact_priority = DEF_COMPACT_PRIORITY
        self.compaction_retries = 0
        self.can_compact = gfp_compaction_allowed(gfp)
        self.costly_order = order > PAGE_ALLOC_COSTLY_ORDER

    def initial(self, alloc_flags: int) -> tuple[int | None, bool]:
        """The first, async attempt for costly orders and non-movable high orders (not for
        __GFP_MEMALLOC requests, whose no-watermark attempt comes first).  Returns (pfn or
        None, nopage): nopage when a costly __GFP_NORETRY request should give up now."""
        gfp = self.gfp
        can_direct_reclaim = bool(gfp & G.FLAGS["__GFP_DIRECT_RECLAIM"])
        pfmemalloc = bool(gfp & G.FLAGS["__GFP_MEMALLOC"] and not gfp & G.FLAGS["__GFP_NOMEMALLOC"])
        if not (
            can_direct_reclaim
            and self.can_compact
            and not pfmemalloc
            and (self.costly_order or (self.order > 0 and self.ac.migratetype != pa.MIGRATE_MOVABLE))
        ):
            return None, False
        pfn, self.compact_result = alloc_pages_direct_compact(
            self.k, gfp, self.order, alloc_flags, self.ac, INIT_COMPACT_PRIORITY
        )
        if pfn is not None:
            return pfn, False
        if self.costly_order and gfp & G.FLAGS["__GFP_NORETRY"]:
            if self.compact_result in (COMPACT_SKIPPED, COMPACT_DEFERRED):
                return None, True
            self.compact_priority = INIT_COMPACT_PRIORITY
        return None, False

    def after_reclaim(self, alloc_flags: int, ac: pa.AllocContext | None = None) -> int | None:
        """``page = __alloc_pages_direct_compact(..., compact_priority, &compact_result)``."""
        if ac is not None:
            self.ac = ac
        pfn, self.compact_result = alloc_pages_direct_compact(
            self.k, self.gfp, self.order, alloc_flags, self.ac, self.compact_priority
        )
        return pfn

    def should_retry(self, alloc_flags: int, did_some_progress: bool) -> bool:
        """``did_some_progress > 0 && can_compact && should_compact_retry(...)``."""
        return (
            did_some_progress
            and self.can_compact
            and should_compact_retry(self.k, self.ac, self.order, alloc_flags, self.compact_result, self)
        )


# -- kcompactd and /proc/sys/vm/compact_memory ------------------------------------------------
def kcompactd_init(k: Kernel) -> None:
    """subsys_initcall(kcompactd_init) -> kcompactd_run() per node: the kcompactd thread starts
    and sets ``kcompactd_max_order = 0``, ``kcompactd_highest_zoneidx = nr_zones - 1`` (what
    a real 6.18 dump shows for a node that never compacted).  The thread itself is not
    modelled: ``pgdat->kcompactd`` stays NULL, and its work runs when it would be woken."""
    for nid in range(k.config.nodes):
        node_compact(k, nid)


def kcompactd_node_suitable(k: Kernel, nid: int) -> bool:
    nc = node_compact(k, nid)
    for z in k.zones[nid][: nc.highest_zoneidx + 1]:
        if not z.populated:
            continue
        if (
            compaction_suit_allocation_order(k, z, nc.max_order, nc.highest_zoneidx, pa.ALLOC_WMARK_MIN, False, True)
            == COMPACT_CONTINUE
        ):
            return True
    return False


def kcompactd_do_work(k: Kernel, nid: int) -> None:
    """kcompactd_do_work(): sync-light compaction of the node's zones up to
    kcompactd_highest_zoneidx for kcompactd_max_order; deferral as direct compaction."""
    nc = node_compact(k, nid)
    order, highest = nc.max_order, nc.highest_zoneidx
    _count(k, "KCOMPACTD_WAKE")
    for zoneid in range(highest + 1):
        z = k.zones[nid][zoneid]
        if not z.populated:
            continue
        if compaction_deferred(k, z, order):
            continue
        if compaction_suit_allocation_order(k, z, order, zoneid, pa.ALLOC_WMARK_MIN, False, True) != COMPACT_CONTINUE:
            continue
        cc = CompactControl(z, order, G.GFP_KERNEL, MIGRATE_SYNC_LIGHT, pa.ALLOC_WMARK_MIN, highest)
        cc.search_order = order
        status = compact_zone(k, cc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(k, z, order, False)
        elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
            pa.drain_all_pages(k, z)
            defer_compaction(k, z, order)
        _count(k, "KCOMPACTD_MIGRATE_SCANNED", cc.total_migrate_scanned)
        _count(k, "KCOMPACTD_FREE_SCANNED", cc.total_free_scanned)
    if nc.max_order <= order:
        nc.max_order = 0
    if nc.highest_zoneidx >= highest:
        nc.highest_zoneidx = _nr_zones(k, nid) - 1


def wakeup_kcompactd(k: Kernel, nid: int, order: int, highest_zoneidx: int) -> bool:
    """wakeup_kcompactd(): raise the node's kcompactd_max_order / lower its
    kcompactd_highest_zoneidx, and if compaction is suitable there, wake kcompactd -- which
    here runs its work at once.  Returns whether it ran."""
    if not order:
        return False
    nc = node_compact(k, nid)
    if nc.max_order < order:
        nc.max_order = order
    if nc.highest_zoneidx > highest_zoneidx:
        nc.highest_zoneidx = highest_zoneidx
    if not kcompactd_node_suitable(k, nid):
        return False
    nc.wakeups += 1
    with _cpu_of_node(k, nid):
        kcompactd_do_work(k, nid)
    return True


class _cpu_of_node:
    """Run kcompactd's work on a CPU of its node (the kthread is bound to the node's CPUs),
    so its events and pcp drains land there."""

    def __init__(self, k: Kernel, nid: int) -> None:
        self.k, self.nid = k, nid

    def __enter__(self) -> None:
        self.saved = self.k.current_cpu
        cpus = [c for c in range(self.k.config.cpus) if self.k.cpu_to_node(c) == self.nid]
        if cpus and self.k.cpu_to_node(self.saved) != self.nid:
            self.k.current_cpu = cpus[0]

    def __exit__(self, *exc: object) -> None:
        self.k.current_cpu = self.saved


def compact_node(k: Kernel, nid: int, proactive: bool) -> None:
    """compact_node(): whole-zone compaction (order -1) of every populated zone of the node;
    MIGRATE_SYNC for vm.compact_memory, MIGRATE_SYNC_LIGHT for proactive compaction."""
    for z in k.zones[nid]:
        if not z.populated:
            continue
        cc = CompactControl(
            z,
            -1,
            G.GFP_KERNEL,
            MIGRATE_SYNC_LIGHT if proactive else MIGRATE_SYNC,
            ignore_skip_hint=True,
            whole_zone=True,
            proactive_compaction=proactive,
        )
        compact_zone(k, cc)
        if proactive:
            _count(k, "KCOMPACTD_MIGRATE_SCANNED", cc.total_migrate_scanned)
            _count(k, "KCOMPACTD_FREE_SCANNED", cc.total_free_scanned)


def compact_nodes(k: Kernel) -> None:
    """compact_nodes(): compact_node() on every online node (and drain_all_pages first:
    6.18's sysctl_compaction_handler calls compact_nodes, which flushes the pcp lists
    with lru_add_drain_all() only; the pages it frees go through this CPU's pagesets)."""
    for nid in range(k.config.nodes):
        compact_node(k, nid, False)


def sysctl_compaction_handler(k: Kernel, value: int = 1) -> None:
    """Writing vm.compact_memory (only the value 1 is accepted): compact_nodes()."""
    if value != 1:
        raise ValueError("vm.compact_memory accepts only 1 (EINVAL)")
    compact_nodes(k)


def compaction_proactiveness_sysctl_handler(k: Kernel) -> None:
    """compaction_proactiveness_sysctl_handler(): a non-zero proactiveness triggers each
    node's kcompactd (proactive_compact_trigger), which runs here at once."""
    if not compaction_sysctl(k, "compaction_proactiveness"):
        return
    for nid in range(k.config.nodes):
        nc = node_compact(k, nid)
        if nc.proactive_compact_trigger:
            continue
        nc.proactive_compact_trigger = True
        kcompactd_proactive(k, nid)


def kcompactd_proactive(k: Kernel, nid: int) -> int | None:
    """kcompactd()'s timeout branch: if the node's fragmentation score is above the high
    mark, compact_node(pgdat, true) until it falls below the low mark; returns the score
    after (None if it did not run)."""
    nc = node_compact(k, nid)
    ran = None
    if should_proactive_compact_node(k, nid):
        with _cpu_of_node(k, nid):
            compact_node(k, nid, True)
        ran = fragmentation_score_node(k, nid)
    nc.proactive_compact_trigger = False
    return ran
