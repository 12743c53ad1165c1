"""The buddy page allocator (mm/page_alloc.c of 6.18).

Boot: memblock_free_all() hands every free memblock range to the allocator in naturally
aligned blocks (__free_pages_core -> __free_pages_ok with FPI_TO_TAIL), then the watermarks,
lowmem_reserve and the per-CPU pagesets are set up as 6.18 computes them.

Run time: __alloc_pages() and __free_pages() follow 6.18 function by function:
prepare_alloc_pages / get_page_from_freelist (zonelists, zone_watermark_fast,
ALLOC_NOFRAGMENT) / rmqueue (rmqueue_pcplist with nr_pcp_alloc, rmqueue_buddy) / __rmqueue
(__rmqueue_smallest, __rmqueue_claim with try_to_claim_block, __rmqueue_steal) / expand /
prep_new_page (post_alloc_hook, prep_compound_page); a slow path with gfp_to_alloc_flags,
the highatomic reserve and warn_alloc; and on free free_pages_prepare,
free_frozen_page_commit (nr_pcp_high, nr_pcp_free, free_pcppages_bulk) and
__free_one_page with buddy merging.  The slow path calls reclaim and kswapd
(mmintro.kernel.vmscan), direct compaction (mmintro.kernel.compaction) and the OOM killer
(mmintro.kernel.oom_kill).

What the kernel writes into struct pages (page_type, private, _refcount, flags, compound
heads, folio fields, poisoned list pointers) is written into simulated memory as it
happens.  The free lists and per-CPU lists are kept as linked dicts (ZoneState.nxt/prv)
and written into the list heads and the pages' ``lru`` by :func:`write_free_lists` before
a snapshot; counters are folded by mmintro.kernel.vmstat.  NR_FREE_PAGES is kept exact
(as if every per-CPU delta were folded at once), so watermark checks see exact numbers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel.cmdline import vm_sysctl
from mmintro.kernel.mm_init import ZoneState, memmap_update
from mmintro.kernel.sparse import PAGES_PER_SECTION, PFN_SECTION_SHIFT, pfn_to_section_nr
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

_T = get_types()

# -- constants from the type data ----------------------------------------------------------
MIGRATE_UNMOVABLE = _T.const("MIGRATE_UNMOVABLE")
MIGRATE_MOVABLE = _T.const("MIGRATE_MOVABLE")
MIGRATE_RECLAIMABLE = _T.const("MIGRATE_RECLAIMABLE")
MIGRATE_PCPTYPES = _T.const("MIGRATE_PCPTYPES")
MIGRATE_HIGHATOMIC = _T.const("MIGRATE_HIGHATOMIC")
MIGRATE_ISOLATE = _T.const("MIGRATE_ISOLATE")
MIGRATE_TYPES = _T.const("MIGRATE_TYPES")
MIGRATETYPE_MASK = (1 << _T.const("PB_migrate_0")) | (1 << _T.const("PB_migrate_1")) | (1 << _T.const("PB_migrate_2"))
MAX_PAGE_ORDER = kc.MAX_PAGE_ORDER
NR_PAGE_ORDERS = kc.NR_PAGE_ORDERS
PAGEBLOCK_ORDER = kc.PAGEBLOCK_ORDER
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
PAGE_ALLOC_COSTLY_ORDER = kc.PAGE_ALLOC_COSTLY_ORDER
HPAGE_PMD_ORDER = 21 - PAGE_SHIFT  # PMD_SHIFT - PAGE_SHIFT
NR_PCP_LISTS = _T.struct("per_cpu_pages").walk("lists")[2].resolved().nelems
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
assert NR_PCP_LISTS == NR_LOWORDER_PCP_LISTS + 2, "CONFIG_TRANSPARENT_HUGEPAGE pcp lists"
PCP_BATCH_SCALE_MAX = 5  # CONFIG_PCP_BATCH_SCALE_MAX (config.txt)
NR_ZONE_IDX = {name: _T.const(f"ZONE_{name.upper()}") for name in ("DMA", "DMA32", "Normal", "Movable")}
ZONE_MOVABLE = _T.const("ZONE_MOVABLE")
ZONES_MASK = (1 << kc.ZONES_SHIFT) - 1

ZONE_BOOSTED_WATERMARK = 1 << _T.const("ZONE_BOOSTED_WATERMARK")
ZONE_RECLAIM_ACTIVE = 1 << _T.const("ZONE_RECLAIM_ACTIVE")
ZONE_BELOW_HIGH = 1 << _T.const("ZONE_BELOW_HIGH")

PG_head = _T.const("PG_head")
PG_reserved = _T.const("PG_reserved")
# __PG_HWPOISON is 0 without CONFIG_MEMORY_FAILURE (the reference kernel has no PG_hwpoison).
__PG_HWPOISON = 1 << _T.enum("pageflags")["PG_hwpoison"] if "PG_hwpoison" in _T.enum("pageflags") else 0
PG_has_hwpoisoned = _T.const("PG_has_hwpoisoned")
PG_large_rmappable = _T.const("PG_large_rmappable")
PG_partially_mapped = _T.const("PG_partially_mapped")
NR_PAGEFLAGS = _T.const("__NR_PAGEFLAGS")
# PAGE_FLAGS_CHECK_AT_PREP: every page flag but HWPoison (the LRU generation bits, also in
# the mask, are never set by the simulator).
PAGE_FLAGS_CHECK_AT_PREP = ((1 << NR_PAGEFLAGS) - 1) & ~__PG_HWPOISON
PAGE_FLAGS_SECOND = 0xFF | (1 << PG_has_hwpoisoned) | (1 << PG_large_rmappable) | (1 << PG_partially_mapped)
LAST_CPUPID_MASK = ((1 << kc.LAST_CPUPID_SHIFT) - 1) << kc.LAST_CPUPID_PGOFF
PGTY_BUDDY = _T.const("PGTY_buddy") << 24
PGTY_MAPCOUNT_UNDERFLOW = _T.const("PGTY_mapcount_underflow") << 24
PAGE_TYPE_NONE = 0xFFFFFFFF  # page_type reset / _mapcount -1

# include/linux/poison.h with POISON_POINTER_DELTA = 0xdead000000000000 on x86-64.
LIST_POISON1 = 0xDEAD000000000100
LIST_POISON2 = 0xDEAD000000000122
TAIL_MAPPING = 0xDEAD000000000400


def _word(struct: str, path: str, size: int) -> int:
    off = _T.struct(struct).offsetof(path)
    if off % size:
        raise AssertionError(f"{struct}.{path} is not {size}-byte aligned")
    return off // size


# 64-bit word / 32-bit word indices inside a struct page (and a folio, from its head page).
W_FLAGS = _word("page", "flags", 8)
W_LRU_NEXT = _word("page", "lru.next", 8)
W_LRU_PREV = _word("page", "lru.prev", 8)
W_COMPOUND_HEAD = _word("page", "compound_head", 8)
W_MAPPING = _word("page", "mapping", 8)
W_PRIVATE = _word("page", "private", 8)
D_PAGE_TYPE = _word("page", "page_type", 4)
D_REFCOUNT = _word("page", "_refcount", 4)
FW_FLAGS_1 = _word("folio", "_flags_1", 8)
FD_LARGE_MAPCOUNT = _word("folio", "_large_mapcount", 4)
FD_NR_PAGES_MAPPED = _word("folio", "_nr_pages_mapped", 4)
FD_ENTIRE_MAPCOUNT = _word("folio", "_entire_mapcount", 4)
FD_PINCOUNT = _word("folio", "_pincount", 4)
FD_MM_ID_MAPCOUNT = _word("folio", "_mm_id_mapcount", 4)
FW_MM_IDS = _word("folio", "_mm_ids", 8)
FD_NR_PAGES = _word("folio", "_nr_pages", 4)
FW_DEFERRED_LIST = _word("folio", "_deferred_list", 8)
LRU_OFF = _T.struct("page").offsetof("lru")

# mm/internal.h alloc flags (#defines, not in the type data).
ALLOC_WMARK_MIN = _T.const("WMARK_MIN")
ALLOC_WMARK_LOW = _T.const("WMARK_LOW")
ALLOC_WMARK_HIGH = _T.const("WMARK_HIGH")
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_HIGHATOMIC = 0x200
ALLOC_TRYLOCK = 0x400
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM
assert ALLOC_MIN_RESERVE == G.FLAGS["__GFP_HIGH"] and ALLOC_KSWAPD == G.FLAGS["__GFP_KSWAPD_RECLAIM"]

# mm/internal.h fpi_t and mm/page_alloc.c pcp flags.
FPI_NONE = 0
FPI_SKIP_REPORT_NOTIFY = 1 << 0
FPI_TO_TAIL = 1 << 1
PCPF_PREV_FREE_HIGH_ORDER = 1 << 0
PCPF_FREE_HIGH_BATCH = 1 << 1

# mm/page_alloc.c fallbacks[]
FALLBACKS = {
    MIGRATE_UNMOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    MIGRATE_MOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    MIGRATE_RECLAIMABLE: (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
}

_EV = {name: i for name, i in _T.enum("vm_event_item").items()}
PGALLOC_BASE = _EV["PGALLOC_DMA"]
PGFREE = _EV["PGFREE"]
NUMA_HIT, NUMA_MISS, NUMA_FOREIGN, NUMA_INTERLEAVE_HIT, NUMA_LOCAL, NUMA_OTHER = (
    _T.const(n) for n in ("NUMA_HIT", "NUMA_MISS", "NUMA_FOREIGN", "NUMA_INTERLEAVE_HIT", "NUMA_LOCAL", "NUMA_OTHER")
)


# -- list heads ----------------------------------------------------------------------------
def free_list_head(order: int, mt: int) -> int:
    """The sentinel key of ``zone->free_area[order].free_list[mt]``."""
    return -(1 + order * MIGRATE_TYPES + mt)


def pcp_list_head(cpu: int, pindex: int) -> int:
    """The sentinel key of CPU ``cpu``'s ``per_cpu_pages.lists[pindex]``."""
    return -(1000 + cpu * NR_PCP_LISTS + pindex)


def order_to_pindex(migratetype: int, order: int) -> int:
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (migratetype == MIGRATE_MOVABLE)
    return MIGRATE_PCPTYPES * order + migratetype


def pindex_to_order(pindex: int) -> int:
    return HPAGE_PMD_ORDER if pindex >= NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES


def pcp_allowed_order(order: int) -> bool:
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == HPAGE_PMD_ORDER


class PerCpuPages:
    """One CPU's ``struct per_cpu_pages`` for one zone (its lists live in the zone's dicts)."""

    __slots__ = (
        "cpu",
        "addr",
        "count",
        "high",
        "high_min",
        "high_max",
        "batch",
        "flags",
        "alloc_factor",
        "free_count",
        "heads",
    )

    def __init__(self, cpu: int, addr: int, high_min: int, high_max: int, batch: int) -> None:
        self.cpu = cpu
        self.addr = addr
        self.count = 0
        self.high = 0  # per_cpu_pages_init(): 0 until the first allocation or free clamps it
        self.high_min = high_min
        self.high_max = high_max
        self.batch = batch
        self.flags = 0
        self.alloc_factor = 0
        self.free_count = 0
        self.heads = [pcp_list_head(cpu, i) for i in range(NR_PCP_LISTS)]


class AllocFailure:
    """What warn_alloc reported, plus the simulator's reading of why each zone refused."""

    __slots__ = ("order", "gfp", "preferred_nid", "nodemask", "cpu", "zones", "text")

    def __init__(self, order, gfp, preferred_nid, nodemask, cpu, zones, text) -> None:
        self.order, self.gfp, self.preferred_nid, self.nodemask = order, gfp, preferred_nid, nodemask
        self.cpu, self.zones, self.text = cpu, zones, text

    @property
    def reasons(self) -> set[str]:
        return {r for _z, r in self.zones}


# -- struct page words ---------------------------------------------------------------------
def page_words(k: Kernel, pfn: int):
    """(u64 view, u32 view, word index) of pfn's struct page."""
    mv64, mv32, base, _arr = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    return mv64, mv32, base + pfn * 8


def page_zone(k: Kernel, pfn: int) -> ZoneState:
    mv64, _mv32, w = page_words(k, pfn)
    f = mv64[w + W_FLAGS]
    return k.zones[f >> kc.NODES_PGOFF][(f >> kc.ZONES_PGOFF) & ZONES_MASK]


def zone_of_pfn(k: Kernel, pfn: int) -> ZoneState:
    for zones in k.zones:
        for z in zones:
            if z.spanned and z.start_pfn <= pfn < z.end_pfn:
                return z
    raise KeyError(pfn)


def get_pfnblock_migratetype(k: Kernel, pfn: int) -> int:
    return k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] & MIGRATETYPE_MASK


get_pageblock_migratetype = get_pfnblock_migratetype


def set_pageblock_migratetype(k: Kernel, pfn: int, mt: int) -> None:
    i = pfn >> PAGEBLOCK_ORDER
    k.pageblock_flags[i] = (k.pageblock_flags[i] & ~MIGRATETYPE_MASK) | mt


def change_pageblock_range(k: Kernel, pfn: int, start_order: int, mt: int) -> None:
    for i in range(1 << (start_order - PAGEBLOCK_ORDER)):
        set_pageblock_migratetype(k, pfn + i * PAGEBLOCK_NR_PAGES, mt)


# -- the free lists ------------------------------------------------------------------------
def account_freepages(z: ZoneState, nr_pages: int, mt: int) -> None:
    if mt == MIGRATE_ISOLATE:
        return
    z.free_pages += nr_pages
    if mt == MIGRATE_HIGHATOMIC:
        z.nr_free_highatomic += nr_pages


def _add_to_free_list(k: Kernel, z: ZoneState, pfn: int, order: int, mt: int, tail: bool) -> None:
    """__add_to_free_list() plus set_buddy_order(): link the block, mark its head PageBuddy."""
    head = -(1 + order * MIGRATE_TYPES + mt)
    nxt, prv = z.nxt, z.prv
    if tail:
        p = prv[head]
        prv[head] = pfn
        nxt[pfn] = head
        prv[pfn] = p
        nxt[p] = pfn
    else:
        n = nxt[head]
        nxt[head] = pfn
        prv[pfn] = head
        nxt[pfn] = n
        prv[n] = pfn
    z.nr_free[order] += 1
    z.free_order[pfn] = order
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    mv64[w + W_PRIVATE] = order
    mv32[2 * w + D_PAGE_TYPE] = PGTY_BUDDY


def _list_del(k: Kernel, z: ZoneState, pfn: int) -> None:
    """list_del(): unlink and poison the page's lru."""
    nxt, prv = z.nxt, z.prv
    n = nxt.pop(pfn)
    p = prv.pop(pfn)
    nxt[p] = n
    prv[n] = p
    mv64, _mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    mv64[w + W_LRU_NEXT] = LIST_POISON1
    mv64[w + W_LRU_PREV] = LIST_POISON2


def _del_page_from_free_list(k: Kernel, z: ZoneState, pfn: int, order: int) -> None:
    """__del_page_from_free_list(): unlink, __ClearPageBuddy, private = 0."""
    _list_del(k, z, pfn)
    del z.free_order[pfn]
    z.nr_free[order] -= 1
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    mv32[2 * w + D_PAGE_TYPE] = PAGE_TYPE_NONE
    mv64[w + W_PRIVATE] = 0


def free_area_first(z: ZoneState, order: int, mt: int) -> int | None:
    """get_page_from_free_area(): the first block on the list, or None."""
    head = -(1 + order * MIGRATE_TYPES + mt)
    n = z.nxt[head]
    return None if n == head else n


def free_area_empty(z: ZoneState, order: int, mt: int) -> bool:
    head = -(1 + order * MIGRATE_TYPES + mt)
    return z.nxt[head] == head


def list_pfns(z: ZoneState, head: int) -> list[int]:
    out = []
    n = z.nxt[head]
    while n != head:
        out.append(n)
        n = z.nxt[n]
    return out


def move_to_free_list(k: Kernel, z: ZoneState, pfn: int, order: int, old_mt: int, new_mt: int) -> None:
    """list_move_tail() to the new migratetype's list, moving the accounting with it."""
    nxt, prv = z.nxt, z.prv
    n = nxt.pop(pfn)
    p = prv.pop(pfn)
    nxt[p] = n
    prv[n] = p
    head = -(1 + order * MIGRATE_TYPES + new_mt)
    last = prv[head]
    prv[head] = pfn
    nxt[pfn] = head
    prv[pfn] = last
    nxt[last] = pfn
    account_freepages(z, -(1 << order), old_mt)
    account_freepages(z, 1 << order, new_mt)


def _is_buddy(k: Kernel, z: ZoneState, pfn: int, buddy: int, order: int) -> bool:
    """page_is_buddy(): the buddy is a PageBuddy head of this order in the same zone."""
    return z.free_order.get(buddy) == order and z.start_pfn <= buddy < z.start_pfn + z.spanned


def __free_one_page(k: Kernel, z: ZoneState, pfn: int, order: int, migratetype: int, fpi: int) -> None:
    account_freepages(z, 1 << order, migratetype)
    buddy_pfn = pfn
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if not _is_buddy(k, z, pfn, buddy_pfn, order):
            break
        buddy_mt = migratetype
        if order >= PAGEBLOCK_ORDER:
            # Do not merge pageblocks without fallbacks (highatomic, isolate) with normal ones.
            buddy_mt = get_pfnblock_migratetype(k, buddy_pfn)
            if migratetype != buddy_mt and (migratetype >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES):
                break
        _del_page_from_free_list(k, z, buddy_pfn, order)
        if buddy_mt != migratetype:
            set_pageblock_migratetype(k, buddy_pfn, migratetype)
        pfn &= buddy_pfn
        order += 1
    # done_merging
    if fpi & FPI_TO_TAIL:
        to_tail = True
    else:
        to_tail = buddy_merge_likely(k, z, pfn, buddy_pfn, order)
    _add_to_free_list(k, z, pfn, order, migratetype, to_tail)


def buddy_merge_likely(k: Kernel, z: ZoneState, pfn: int, buddy_pfn: int, order: int) -> bool:
    """If the next-larger block's buddy is free, a merge is likely soon: queue at the tail
    so the block is less likely to be allocated first."""
    if order >= MAX_PAGE_ORDER - 1:
        return False
    higher = buddy_pfn & pfn
    return _is_buddy(k, z, higher, higher ^ (1 << (order + 1)), order + 1)


def expand(k: Kernel, z: ZoneState, pfn: int, low: int, high: int, mt: int) -> int:
    """Split a block of order ``high`` down to ``low``, queueing the upper halves."""
    size = 1 << high
    nr_added = 0
    while high > low:
        high -= 1
        size >>= 1
        _add_to_free_list(k, z, pfn + size, high, mt, False)
        nr_added += size
    return nr_added


def page_del_and_expand(k: Kernel, z: ZoneState, pfn: int, low: int, high: int, mt: int) -> None:
    nr_pages = 1 << high
    _del_page_from_free_list(k, z, pfn, high)
    nr_pages -= expand(k, z, pfn, low, high, mt)
    account_freepages(z, -nr_pages, mt)


def __rmqueue_smallest(k: Kernel, z: ZoneState, order: int, mt: int) -> int | None:
    nxt = z.nxt
    for current in range(order, NR_PAGE_ORDERS):
        head = -(1 + current * MIGRATE_TYPES + mt)
        pfn = nxt[head]
        if pfn == head:
            continue
        page_del_and_expand(k, z, pfn, order, current, mt)
        return pfn
    return None


def should_try_claim_block(order: int, start_mt: int) -> bool:
    if order >= PAGEBLOCK_ORDER or order >= PAGEBLOCK_ORDER // 2:
        return True
    return start_mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)


def find_suitable_fallback(z: ZoneState, order: int, mt: int, claimable: bool) -> int:
    if claimable and not should_try_claim_block(order, mt):
        return -2
    if z.nr_free[order] == 0:
        return -1
    for fallback_mt in FALLBACKS[mt]:
        if not free_area_empty(z, order, fallback_mt):
            return fallback_mt
    return -1


def boost_watermark(k: Kernel, z: ZoneState) -> bool:
    boost_factor = vm_sysctl(k, "watermark_boost_factor")
    if not boost_factor:
        return False
    if PAGEBLOCK_NR_PAGES * 4 > z.managed:
        return False
    high = z.watermark[ALLOC_WMARK_HIGH]
    max_boost = high * boost_factor // 10000  # mult_frac
    if not max_boost:
        return False
    max_boost = max(PAGEBLOCK_NR_PAGES, max_boost)
    z.watermark_boost = min(z.watermark_boost + PAGEBLOCK_NR_PAGES, max_boost)
    return True


def prep_move_freepages_block(k: Kernel, z: ZoneState, pfn: int, count: bool):
    """The pageblock of pfn, if it lies inside the zone: (start, free pages, movable pages)."""
    start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
    end = start + PAGEBLOCK_NR_PAGES
    if not (z.start_pfn <= start < z.end_pfn) or not (z.start_pfn <= end - 1 < z.end_pfn):
        return None
    free = movable = 0
    if count:
        lru = 1 << _T.const("PG_lru")
        p = start
        while p < end:
            o = z.free_order.get(p)
            if o is not None:
                free += 1 << o
                p += 1 << o
                continue
            mv64, _mv32, w = page_words(k, p)
            if mv64[w + W_FLAGS] & lru:
                movable += 1
            p += 1
    return start, free, movable


def __move_freepages_block(k: Kernel, z: ZoneState, start: int, old_mt: int, new_mt: int) -> int:
    moved = 0
    p = start
    end = start + PAGEBLOCK_NR_PAGES
    while p < end:
        o = z.free_order.get(p)
        if o is None:
            p += 1
            continue
        move_to_free_list(k, z, p, o, old_mt, new_mt)
        p += 1 << o
        moved += 1 << o
    set_pageblock_migratetype(k, start, new_mt)
    return moved


def move_freepages_block(k: Kernel, z: ZoneState, pfn: int, old_mt: int, new_mt: int) -> int:
    r = prep_move_freepages_block(k, z, pfn, False)
    if r is None:
        return -1
    res = __move_freepages_block(k, z, r[0], old_mt, new_mt)
    set_pageblock_migratetype(k, r[0], new_mt)
    return res


def try_to_claim_block(
    k: Kernel,
    z: ZoneState,
    pfn: int,
    current_order: int,
    order: int,
    start_type: int,
    block_type: int,
    alloc_flags: int,
) -> int | None:
    if current_order >= PAGEBLOCK_ORDER:
        _del_page_from_free_list(k, z, pfn, current_order)
        account_freepages(z, -(1 << current_order), block_type)
        change_pageblock_range(k, pfn, current_order, start_type)
        nr_added = expand(k, z, pfn, order, current_order, start_type)
        account_freepages(z, nr_added, start_type)
        return pfn
    if boost_watermark(k, z) and alloc_flags & ALLOC_KSWAPD:
        z.flags |= ZONE_BOOSTED_WATERMARK
    r = prep_move_freepages_block(k, z, pfn, True)
    if r is None:
        return None
    start, free_pages, movable_pages = r
    if start_type == MIGRATE_MOVABLE:
        alike = movable_pages
    elif block_type == MIGRATE_MOVABLE:
        alike = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
    else:
        alike = 0
    if free_pages + alike >= (1 << (PAGEBLOCK_ORDER - 1)):
        __move_freepages_block(k, z, start, block_type, start_type)
        set_pageblock_migratetype(k, start, start_type)
        return __rmqueue_smallest(k, z, order, start_type)
    return None


def __rmqueue_claim(k: Kernel, z: ZoneState, order: int, start_mt: int, alloc_flags: int) -> int | None:
    min_order = order
    if order < PAGEBLOCK_ORDER and alloc_flags & ALLOC_NOFRAGMENT:
        min_order = PAGEBLOCK_ORDER
    for current in range(MAX_PAGE_ORDER, min_order - 1, -1):
        fallback_mt = find_suitable_fallback(z, current, start_mt, True)
        if fallback_mt == -1:
            continue
        if fallback_mt == -2:
            break
        pfn = free_area_first(z, current, fallback_mt)
        pfn = try_to_claim_block(k, z, pfn, current, order, start_mt, fallback_mt, alloc_flags)
        if pfn is not None:
            k.extfrag_events += 1
            return pfn
    return None


def __rmqueue_steal(k: Kernel, z: ZoneState, order: int, start_mt: int) -> int | None:
    for current in range(order, NR_PAGE_ORDERS):
        fallback_mt = find_suitable_fallback(z, current, start_mt, False)
        if fallback_mt == -1:
            continue
        pfn = free_area_first(z, current, fallback_mt)
        page_del_and_expand(k, z, pfn, order, current, fallback_mt)
        k.extfrag_events += 1
        return pfn
    return None


RMQUEUE_NORMAL, RMQUEUE_CMA, RMQUEUE_CLAIM, RMQUEUE_STEAL = range(4)


def __rmqueue(k: Kernel, z: ZoneState, order: int, mt: int, alloc_flags: int, mode: list[int]) -> int | None:
    """First the requested migratetype's lists, then claiming a foreign block, then stealing
    from one; ``mode`` remembers where the last call found pages (rmqueue_bulk's loop)."""
    m = mode[0]
    if m == RMQUEUE_NORMAL:
        pfn = __rmqueue_smallest(k, z, order, mt)
        if pfn is not None:
            return pfn
        m = RMQUEUE_CMA
    if m <= RMQUEUE_CLAIM:  # no CMA in this configuration
        pfn = __rmqueue_claim(k, z, order, mt, alloc_flags)
        if pfn is not None:
            mode[0] = RMQUEUE_NORMAL
            return pfn
    if not alloc_flags & ALLOC_NOFRAGMENT:
        pfn = __rmqueue_steal(k, z, order, mt)
        if pfn is not None:
            mode[0] = RMQUEUE_STEAL
            return pfn
    return None


# -- watermarks ----------------------------------------------------------------------------
def wmark_pages(z: ZoneState, i: int) -> int:
    return z.watermark[i] + z.watermark_boost


def __zone_watermark_unusable_free(z: ZoneState, order: int, alloc_flags: int) -> int:
    unusable = (1 << order) - 1
    if not alloc_flags & ALLOC_RESERVES:
        unusable += z.nr_free_highatomic
    return unusable


def __zone_watermark_ok(
    z: ZoneState, order: int, mark: int, highest_zoneidx: int, alloc_flags: int, free_pages: int
) -> bool:
    mn = mark
    free_pages -= __zone_watermark_unusable_free(z, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                mn -= mn // 4
        if alloc_flags & ALLOC_OOM:
            mn -= mn // 2
    if free_pages <= mn + z.lowmem_reserve[highest_zoneidx]:
        return False
    if not order:
        return True
    for o in range(order, NR_PAGE_ORDERS):
        if not z.nr_free[o]:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            if not free_area_empty(z, o, mt):
                return True
        if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) and not free_area_empty(z, o, MIGRATE_HIGHATOMIC):
            return True
    return False


def zone_watermark_ok(z: ZoneState, order: int, mark: int, highest_zoneidx: int, alloc_flags: int) -> bool:
    return __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, z.free_pages)


def zone_watermark_fast(z: ZoneState, order: int, mark: int, highest_zoneidx: int, alloc_flags: int) -> bool:
    free_pages = z.free_pages
    if not order:
        usable = free_pages
        reserved = __zone_watermark_unusable_free(z, 0, alloc_flags)
        usable -= min(usable, reserved)
        if usable > mark + z.lowmem_reserve[highest_zoneidx]:
            return True
    if __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, free_pages):
        return True
    if (
        not order
        and alloc_flags & ALLOC_MIN_RESERVE
        and z.watermark_boost
        and (alloc_flags & ALLOC_WMARK_MASK) == ALLOC_WMARK_MIN
    ):
        return __zone_watermark_ok(z, order, z.watermark[ALLOC_WMARK_MIN], highest_zoneidx, alloc_flags, free_pages)
    return False


# -- per-CPU lists -------------------------------------------------------------------------
def nr_pcp_alloc(pcp: PerCpuPages, z: ZoneState, order: int) -> int:
    base_batch = pcp.batch
    high = pcp.high = min(max(pcp.high, pcp.high_min), pcp.high_max)
    if high < base_batch:
        return 1
    batch = base_batch if order else base_batch << pcp.alloc_factor
    if pcp.high_min != pcp.high_max and not z.flags & ZONE_BELOW_HIGH:
        high = pcp.high = min(high + batch, pcp.high_max)
    if not order:
        max_nr_alloc = max(high - pcp.count - base_batch, base_batch)
        if batch <= max_nr_alloc and pcp.alloc_factor < PCP_BATCH_SCALE_MAX:
            pcp.alloc_factor += 1
        batch = min(batch, max_nr_alloc)
    if batch > 1:
        batch = max(batch >> order, 2)
    return batch


def rmqueue_bulk(k: Kernel, z: ZoneState, order: int, count: int, head: int, mt: int, alloc_flags: int) -> int:
    mode = [RMQUEUE_NORMAL]
    nxt, prv = z.nxt, z.prv
    i = 0
    while i < count:
        pfn = __rmqueue(k, z, order, mt, alloc_flags, mode)
        if pfn is None:
            break
        # list_add_tail(&page->pcp_list, list)
        p = prv[head]
        prv[head] = pfn
        nxt[pfn] = head
        prv[pfn] = p
        nxt[p] = pfn
        i += 1
    return i


def __rmqueue_pcplist(
    k: Kernel, z: ZoneState, order: int, mt: int, alloc_flags: int, pcp: PerCpuPages, head: int
) -> int | None:
    nxt = z.nxt
    if nxt[head] == head:
        batch = nr_pcp_alloc(pcp, z, order)
        alloced = rmqueue_bulk(k, z, order, batch, head, mt, alloc_flags)
        pcp.count += alloced << order
        if nxt[head] == head:
            return None
    pfn = nxt[head]
    _list_del(k, z, pfn)
    pcp.count -= 1 << order
    return pfn


def free_pcppages_bulk(k: Kernel, z: ZoneState, count: int, pcp: PerCpuPages, pindex: int) -> None:
    count = min(pcp.count, count)
    pindex -= 1
    nxt, prv = z.nxt, z.prv
    heads = pcp.heads
    while count > 0:
        while True:
            pindex += 1
            if pindex > NR_PCP_LISTS - 1:
                pindex = 0
            head = heads[pindex]
            if nxt[head] != head:
                break
        order = pindex_to_order(pindex)
        nr_pages = 1 << order
        while True:
            pfn = prv[head]  # list_last_entry
            mt = k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] & MIGRATETYPE_MASK
            _list_del(k, z, pfn)
            count -= nr_pages
            pcp.count -= nr_pages
            __free_one_page(k, z, pfn, order, mt, FPI_NONE)
            if count <= 0 or nxt[head] == head:
                break


def drain_pages_zone(k: Kernel, cpu: int, z: ZoneState) -> None:
    pcp = z.pcp[cpu]
    while pcp.count:
        free_pcppages_bulk(k, z, min(pcp.count, pcp.batch << PCP_BATCH_SCALE_MAX), pcp, 0)


def drain_all_pages(k: Kernel, zone: ZoneState | None = None) -> None:
    """Return every CPU's pcp pages (of one zone, or all) to the buddy lists."""
    for zs in k.zones:
        for z in zs:
            if z.pcp and (zone is None or z is zone):
                for cpu in range(len(z.pcp)):
                    drain_pages_zone(k, cpu, z)


def nr_pcp_high(pcp: PerCpuPages, z: ZoneState, batch: int, free_high: bool) -> int:
    high_min, high_max = pcp.high_min, pcp.high_max
    high = pcp.high = min(max(pcp.high, high_min), high_max)
    if not high:
        return 0
    if free_high:
        pcp.high = max(high - (batch << PCP_BATCH_SCALE_MAX), high_min)
        return 0
    if z.flags & ZONE_RECLAIM_ACTIVE:
        free_count = max(pcp.free_count, batch)
        pcp.high = max(high - free_count, high_min)
        return min(batch << 2, pcp.high)
    if high_min == high_max:
        return high
    if z.flags & ZONE_BELOW_HIGH:
        free_count = max(pcp.free_count, batch)
        pcp.high = max(high - free_count, high_min)
        high = max(pcp.count, high_min)
    elif pcp.count >= high:
        need_high = pcp.free_count + batch
        if pcp.high < need_high:
            pcp.high = min(max(need_high, high_min), high_max)
    return high


def nr_pcp_free(pcp: PerCpuPages, batch: int, high: int, free_high: bool) -> int:
    if free_high:
        return min(pcp.count, batch << PCP_BATCH_SCALE_MAX)
    if high < batch:
        return 1
    return min(max(pcp.free_count, batch), high - batch)


def free_frozen_page_commit(k: Kernel, z: ZoneState, pcp: PerCpuPages, pfn: int, mt: int, order: int) -> None:
    pcp.alloc_factor >>= 1
    k.vm_events[pcp.cpu][PGFREE] += 1 << order
    pindex = order_to_pindex(mt, order)
    head = pcp.heads[pindex]
    nxt, prv = z.nxt, z.prv
    n = nxt[head]
    nxt[head] = pfn
    prv[pfn] = head
    nxt[pfn] = n
    prv[n] = pfn
    pcp.count += 1 << order
    batch = pcp.batch
    free_high = False
    if order and order <= PAGE_ALLOC_COSTLY_ORDER:
        free_high = (
            pcp.free_count >= batch + pcp.high_min // 2
            and bool(pcp.flags & PCPF_PREV_FREE_HIGH_ORDER)
            and (not pcp.flags & PCPF_FREE_HIGH_BATCH or pcp.count >= batch)
        )
        pcp.flags |= PCPF_PREV_FREE_HIGH_ORDER
    elif pcp.flags & PCPF_PREV_FREE_HIGH_ORDER:
        pcp.flags &= ~PCPF_PREV_FREE_HIGH_ORDER
    if pcp.free_count < batch << PCP_BATCH_SCALE_MAX:
        pcp.free_count += 1 << order
    high = nr_pcp_high(pcp, z, batch, free_high)
    if pcp.count >= high:
        free_pcppages_bulk(k, z, nr_pcp_free(pcp, batch, high, free_high), pcp, pindex)
        if z.flags & ZONE_BELOW_HIGH and zone_watermark_ok(z, 0, wmark_pages(z, ALLOC_WMARK_HIGH), ZONE_MOVABLE, 0):
            z.flags &= ~ZONE_BELOW_HIGH


# -- allocation ----------------------------------------------------------------------------
def zone_statistics(k: Kernel, preferred: ZoneState, z: ZoneState, nr: int) -> None:
    local = NUMA_LOCAL if z.nid == k.numa_node_id() else NUMA_OTHER
    if z.nid == preferred.nid:
        z.numa_events[NUMA_HIT] += nr
    else:
        z.numa_events[NUMA_MISS] += nr
        preferred.numa_events[NUMA_FOREIGN] += nr
    z.numa_events[local] += nr


def rmqueue_pcplist(k: Kernel, preferred: ZoneState, z: ZoneState, order: int, mt: int, alloc_flags: int) -> int | None:
    pcp = z.pcp[k.current_cpu]
    pcp.free_count >>= 1
    pindex = MIGRATE_PCPTYPES * order + mt if order <= PAGE_ALLOC_COSTLY_ORDER else order_to_pindex(mt, order)
    head = pcp.heads[pindex]
    nxt = z.nxt
    pfn = nxt[head]
    if pfn == head:
        pfn = __rmqueue_pcplist(k, z, order, mt, alloc_flags, pcp, head)
        if pfn is None:
            return None
    else:  # the list has pages: list_first_entry + list_del, inline
        prv = z.prv
        n = nxt.pop(pfn)
        del prv[pfn]
        nxt[head] = n
        prv[n] = head
        mv64, _mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
        w = base + pfn * 8
        mv64[w + W_LRU_NEXT] = LIST_POISON1
        mv64[w + W_LRU_PREV] = LIST_POISON2
        pcp.count -= 1 << order
    k.vm_events[pcp.cpu][PGALLOC_BASE + z.idx] += 1 << order
    zone_statistics(k, preferred, z, 1)
    return pfn


def rmqueue_buddy(k: Kernel, preferred: ZoneState, z: ZoneState, order: int, alloc_flags: int, mt: int) -> int | None:
    pfn = None
    if alloc_flags & ALLOC_HIGHATOMIC:
        pfn = __rmqueue_smallest(k, z, order, MIGRATE_HIGHATOMIC)
    if pfn is None:
        pfn = __rmqueue(k, z, order, mt, alloc_flags, [RMQUEUE_NORMAL])
        if pfn is None and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
            pfn = __rmqueue_smallest(k, z, order, MIGRATE_HIGHATOMIC)
        if pfn is None:
            return None
    k.vm_events[k.current_cpu][PGALLOC_BASE + z.idx] += 1 << order
    zone_statistics(k, preferred, z, 1)
    return pfn


def rmqueue(
    k: Kernel, preferred: ZoneState, z: ZoneState, order: int, gfp: int, alloc_flags: int, mt: int
) -> int | None:
    pfn = None
    if order <= PAGE_ALLOC_COSTLY_ORDER or order == HPAGE_PMD_ORDER:
        pfn = rmqueue_pcplist(k, preferred, z, order, mt, alloc_flags)
    if pfn is None:
        pfn = rmqueue_buddy(k, preferred, z, order, alloc_flags, mt)
    if alloc_flags & ALLOC_KSWAPD and z.flags & ZONE_BOOSTED_WATERMARK:
        z.flags &= ~ZONE_BOOSTED_WATERMARK
        from mmintro.kernel import vmscan

        vmscan.wakeup_kswapd(k, z, 0, 0, z.idx)
    return pfn


def post_alloc_hook(k: Kernel, pfn: int, order: int, gfp: int) -> None:
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    mv64[base + pfn * 8 + W_PRIVATE] = 0
    if gfp & G.__GFP_ZERO:  # want_init_on_alloc(): init_on_alloc is off in this config
        k.mem.fill(pfn << PAGE_SHIFT, PAGE_SIZE << order, 0)


def prep_compound_page(k: Kernel, pfn: int, order: int) -> None:
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    head_addr = k.vmemmap_base + pfn * k.struct_page_size
    mv64[w + W_FLAGS] |= 1 << PG_head
    n = 1 << order
    if n > 8:
        memmap_update(k, pfn + 1, n - 1, "mapping", "set", TAIL_MAPPING)
        memmap_update(k, pfn + 1, n - 1, "lru_next", "set", head_addr | 1)  # compound_head
        memmap_update(k, pfn + 1, n - 1, "private", "set", 0)
    else:
        for i in range(1, n):
            mv64[w + 8 * i + W_MAPPING] = TAIL_MAPPING
            mv64[w + 8 * i + W_COMPOUND_HEAD] = head_addr | 1
            mv64[w + 8 * i + W_PRIVATE] = 0
    # prep_compound_head(): folio_set_order and the large-folio counters.
    mv64[w + FW_FLAGS_1] = (mv64[w + FW_FLAGS_1] & ~0xFF) | order
    mv32[2 * w + FD_NR_PAGES] = n
    mv32[2 * w + FD_LARGE_MAPCOUNT] = 0xFFFFFFFF
    mv32[2 * w + FD_NR_PAGES_MAPPED] = 0
    mv64[w + FW_MM_IDS] = 0
    mv32[2 * w + FD_MM_ID_MAPCOUNT] = 0xFFFFFFFF
    mv32[2 * w + FD_MM_ID_MAPCOUNT + 1] = 0xFFFFFFFF
    mv32[2 * w + FD_PINCOUNT] = 0
    mv32[2 * w + FD_ENTIRE_MAPCOUNT] = 0xFFFFFFFF
    if order > 1:
        dl = head_addr + _T.struct("folio").offsetof("_deferred_list")
        mv64[w + FW_DEFERRED_LIST] = dl
        mv64[w + FW_DEFERRED_LIST + 1] = dl


def prep_new_page(k: Kernel, pfn: int, order: int, gfp: int, alloc_flags: int) -> None:
    if gfp & G.__GFP_ZERO or order:
        post_alloc_hook(k, pfn, order, gfp)
        if order and gfp & G.__GFP_COMP:
            prep_compound_page(k, pfn, order)
    mv64, _mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    mv64[w + W_PRIVATE] = 0  # post_alloc_hook's set_page_private(page, 0)
    # set_page_pfmemalloc / clear_page_pfmemalloc: lru.next = BIT(1) or NULL
    mv64[w + W_LRU_NEXT] = 2 if alloc_flags & ALLOC_NO_WATERMARKS else 0


def reserve_highatomic_pageblock(k: Kernel, pfn: int, order: int, z: ZoneState) -> None:
    if z.managed // 100 < PAGEBLOCK_NR_PAGES:
        return
    max_managed = -(-(z.managed // 100) // PAGEBLOCK_NR_PAGES) * PAGEBLOCK_NR_PAGES
    if z.nr_reserved_highatomic >= max_managed:
        return
    mt = get_pfnblock_migratetype(k, pfn)
    if mt >= MIGRATE_PCPTYPES:
        return
    if order < PAGEBLOCK_ORDER:
        if move_freepages_block(k, z, pfn, mt, MIGRATE_HIGHATOMIC) == -1:
            return
        z.nr_reserved_highatomic += PAGEBLOCK_NR_PAGES
    else:
        change_pageblock_range(k, pfn, order, MIGRATE_HIGHATOMIC)
        z.nr_reserved_highatomic += 1 << order


def unreserve_highatomic_pageblock(k: Kernel, ac: AllocContext, force: bool) -> bool:
    for z in ac.zones:
        if not force and z.nr_reserved_highatomic <= PAGEBLOCK_NR_PAGES:
            continue
        for order in range(NR_PAGE_ORDERS):
            pfn = free_area_first(z, order, MIGRATE_HIGHATOMIC)
            if pfn is None:
                continue
            size = min(max(PAGEBLOCK_NR_PAGES, 1 << order), z.nr_reserved_highatomic)
            z.nr_reserved_highatomic -= size
            if order < PAGEBLOCK_ORDER:
                ret = move_freepages_block(k, z, pfn, MIGRATE_HIGHATOMIC, ac.migratetype)
            else:
                move_to_free_list(k, z, pfn, order, MIGRATE_HIGHATOMIC, ac.migratetype)
                change_pageblock_range(k, pfn, order, ac.migratetype)
                ret = 1
            if ret > 0:
                return True
    return False


class AllocContext:
    """struct alloc_context: the eligible zones in zonelist order, and the request's types."""

    __slots__ = ("zones", "preferred", "highest_zoneidx", "migratetype", "nodemask", "preferred_nid")

    def __init__(self, zones, highest_zoneidx, migratetype, nodemask, preferred_nid) -> None:
        self.zones = zones
        self.preferred = zones[0] if zones else None
        self.highest_zoneidx = highest_zoneidx
        self.migratetype = migratetype
        self.nodemask = nodemask
        self.preferred_nid = preferred_nid


def prepare_alloc_pages(k: Kernel, gfp: int, preferred_nid: int, nodemask: frozenset[int] | None) -> AllocContext:
    key = (gfp & (G.GFP_ZONEMASK | G.GFP_MOVABLE_MASK | G.__GFP_THISNODE), preferred_nid, nodemask)
    ac = k.alloc_context_cache.get(key)
    if ac is None:
        highest = G.gfp_zone(gfp)
        zonelist = k.zonelist[preferred_nid][1 if gfp & G.__GFP_THISNODE else 0]
        zones = [z for z in zonelist if z.idx <= highest and (nodemask is None or z.nid in nodemask)]
        ac = AllocContext(zones, highest, G.gfp_migratetype(gfp), nodemask, preferred_nid)
        k.alloc_context_cache[key] = ac
    return ac


def alloc_flags_nofragment(k: Kernel, z: ZoneState | None, gfp: int) -> int:
    alloc_flags = gfp & G.__GFP_KSWAPD_RECLAIM
    if z is None or z.idx != NR_ZONE_IDX["Normal"]:
        return alloc_flags
    if k.config.nodes > 1 and not k.zones[z.nid][z.idx - 1].populated:
        return alloc_flags
    return alloc_flags | ALLOC_NOFRAGMENT


def get_page_from_freelist(k: Kernel, gfp: int, order: int, alloc_flags: int, ac: AllocContext) -> int | None:
    preferred = ac.preferred
    highest = ac.highest_zoneidx
    while True:
        no_fallback = alloc_flags & ALLOC_NOFRAGMENT
        retry = False
        for z in ac.zones:
            if no_fallback and k.config.nodes > 1 and z is not preferred and z.nid != preferred.nid:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                retry = True
                break
            ok = False
            if not z.flags & ZONE_BELOW_HIGH:
                if zone_watermark_fast(z, order, z.watermark[2] + z.watermark_boost, highest, alloc_flags):
                    ok = True
                else:
                    z.flags |= ZONE_BELOW_HIGH
            if not ok:
                mark = z.watermark[alloc_flags & ALLOC_WMARK_MASK] + z.watermark_boost
                if not zone_watermark_fast(z, order, mark, highest, alloc_flags):
                    if not alloc_flags & ALLOC_NO_WATERMARKS:
                        continue  # node_reclaim is off (node_reclaim_mode = 0)
            pfn = rmqueue(k, preferred, z, order, gfp, alloc_flags, ac.migratetype)
            if pfn is not None:
                prep_new_page(k, pfn, order, gfp, alloc_flags)
                if alloc_flags & ALLOC_HIGHATOMIC:
                    reserve_highatomic_pageblock(k, pfn, order, z)
                return pfn
        if retry:
            continue
        if no_fallback:
            alloc_flags &= ~ALLOC_NOFRAGMENT
            continue
        return None


def gfp_to_alloc_flags(gfp: int, order: int) -> int:
    alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    alloc_flags |= gfp & (G.__GFP_HIGH | G.__GFP_KSWAPD_RECLAIM)
    if not gfp & G.__GFP_DIRECT_RECLAIM:
        if not gfp & G.__GFP_NOMEMALLOC:
            alloc_flags |= ALLOC_NON_BLOCK
            if order > 0 and alloc_flags & ALLOC_MIN_RESERVE:
                alloc_flags |= ALLOC_HIGHATOMIC
        if alloc_flags & ALLOC_MIN_RESERVE:
            alloc_flags &= ~ALLOC_CPUSET
    return alloc_flags


def wake_all_kswapds(k: Kernel, order: int, gfp: int, ac: AllocContext) -> None:
    """mm/page_alloc.c wake_all_kswapds(): each node of the zonelist once."""
    from mmintro.kernel import vmscan

    last_nid = None
    for z in ac.zones:
        if z.nid != last_nid:
            vmscan.wakeup_kswapd(k, z, gfp, order, ac.highest_zoneidx)
            last_nid = z.nid


def __alloc_pages_direct_reclaim(
    k: Kernel, gfp: int, order: int, alloc_flags: int, ac: AllocContext
) -> tuple[int | None, int]:
    """mm/page_alloc.c __alloc_pages_direct_reclaim(): __perform_reclaim (try_to_free_pages)
    and one retry, then another after unreserving highatomic blocks and draining the per-CPU
    lists.  Returns (pfn, pages reclaimed)."""
    from mmintro.kernel import vmscan

    progress = vmscan.try_to_free_pages(k, ac.zones, order, gfp, ac.nodemask)
    if not progress:
        return None, 0
    pfn = get_page_from_freelist(k, gfp, order, alloc_flags, ac)
    if pfn is None:
        unreserve_highatomic_pageblock(k, ac, False)
        drain_all_pages(k)
        pfn = get_page_from_freelist(k, gfp, order, alloc_flags, ac)
    return pfn, progress


def __alloc_pages_slowpath(k: Kernel, gfp: int, order: int, ac: AllocContext) -> tuple[int | None, int, AllocContext]:
    """mm/page_alloc.c __alloc_pages_slowpath(): wake kswapd (which runs at once here, see
    mmintro.kernel.vmscan), retry at the min watermark with the caller's reserves
    (gfp_to_alloc_flags), with __GFP_MEMALLOC's no-watermark access; then, for a caller
    that may reclaim, direct reclaim (__alloc_pages_direct_reclaim) and
    should_reclaim_retry()'s loop (no_progress_loops up to MAX_RECLAIM_RETRIES, the
    highatomic reserves unreserved before giving up).  __GFP_NORETRY tries once; costly
    orders (> PAGE_ALLOC_COSTLY_ORDER) without __GFP_RETRY_MAYFAIL give up after one
    round.  When reclaim has failed, __alloc_pages_may_oom (mmintro.kernel.oom_kill) runs
    the OOM killer for order <= PAGE_ALLOC_COSTLY_ORDER and, while it makes progress, the
    loop starts again (an OOM victim with ALLOC_OOM's reserves; bounded by MAX_OOM_RETRIES
    where the kernel loops as long as out_of_memory() reports progress).  Direct compaction
    (mmintro.kernel.compaction) runs as 6.18 places it: an async attempt before the loop for
    costly and non-movable high orders, one after each direct reclaim at compact_priority,
    and should_compact_retry() after should_reclaim_retry()."""
    from mmintro.kernel import compaction, vmscan

    alloc_flags = gfp_to_alloc_flags(gfp, order)
    if ac.preferred is None:
        return None, alloc_flags, ac
    can_direct_reclaim = bool(gfp & G.__GFP_DIRECT_RECLAIM)
    costly_order = order > PAGE_ALLOC_COSTLY_ORDER
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(k, order, gfp, ac)
    pfn = get_page_from_freelist(k, gfp, order, alloc_flags, ac)
    if pfn is not None:
        return pfn, alloc_flags, ac
    # -- direct compaction (mmintro.kernel.compaction): costly and non-movable high orders try
    # async compaction first; a costly __GFP_NORETRY request whose compaction was skipped or
    # deferred gives up here.
    dc = compaction.DirectCompaction(k, gfp, order, ac)
    pfn, nopage = dc.initial(alloc_flags)
    if pfn is not None or nopage:
        return pfn, alloc_flags, ac
    no_progress_loops = 0
    oom_retries = 0
    for _round in range(4 * vmscan.MAX_RECLAIM_RETRIES + 4 * MAX_OOM_RETRIES + 8):  # retry: (bounded)
        if alloc_flags & ALLOC_KSWAPD:
            wake_all_kswapds(k, order, gfp, ac)
        # __GFP_MEMALLOC may dip into every reserve (__gfp_pfmemalloc_flags), an OOM victim
        # into ALLOC_OOM's (oom_reserves_allowed) ...
        reserve_flags = ALLOC_NO_WATERMARKS if gfp & G.__GFP_MEMALLOC and not gfp & G.__GFP_NOMEMALLOC else 0
        if not reserve_flags and not gfp & G.__GFP_NOMEMALLOC and _oom_reserves_allowed(k):
            reserve_flags = ALLOC_OOM
        if reserve_flags:
            alloc_flags = reserve_flags | (alloc_flags & ALLOC_KSWAPD)
        # ... and high-priority requests that ignore cpusets also ignore the memory policy's
        # nodemask ("these allocations are high priority and system rather than user oriented").
        if not alloc_flags & ALLOC_CPUSET or reserve_flags:
            ac = prepare_alloc_pages(k, gfp, ac.preferred_nid, None)
        pfn = get_page_from_freelist(k, gfp, order, alloc_flags, ac) if ac.preferred is not None else None
        if pfn is not None:
            return pfn, alloc_flags, ac
        if not can_direct_reclaim:
            return None, alloc_flags, ac
        pfn, did_some_progress = __alloc_pages_direct_reclaim(k, gfp, order, alloc_flags, ac)
        if pfn is not None:
            return pfn, alloc_flags, ac
        pfn = dc.after_reclaim(alloc_flags, ac)  # __alloc_pages_direct_compact at compact_priority
        if pfn is not None:
            return pfn, alloc_flags, ac
        if gfp & G.__GFP_NORETRY:
            return None, alloc_flags, ac
        if costly_order and (not dc.can_compact or not gfp & G.FLAGS["__GFP_RETRY_MAYFAIL"]):
            return None, alloc_flags, ac
        retry, no_progress_loops = vmscan.should_reclaim_retry(
            k, gfp, order, ac, alloc_flags, did_some_progress, no_progress_loops
        )
        if retry:
            continue
        if dc.should_retry(alloc_flags, did_some_progress > 0):  # should_compact_retry()
            continue
        # -- Reclaim has failed us, start killing things (mmintro.kernel.oom_kill) ------------
        from mmintro.kernel import oom_kill

        pfn, did_some_progress = oom_kill.__alloc_pages_may_oom(k, gfp, order, ac)
        if pfn is not None:
            return pfn, alloc_flags, ac
        # Avoid allocations with no watermarks from looping endlessly
        if oom_kill.tsk_is_oom_victim(k, oom_kill.current(k)) and (alloc_flags & ALLOC_OOM or gfp & G.__GFP_NOMEMALLOC):
            return None, alloc_flags, ac
        # Retry as long as the OOM killer is making progress (bounded: the kernel would loop)
        if did_some_progress and oom_retries < MAX_OOM_RETRIES:
            oom_retries += 1
            no_progress_loops = 0
            continue
        return None, alloc_flags, ac
    return None, alloc_flags, ac


MAX_OOM_RETRIES = 16  # mmintro: the kernel retries as long as out_of_memory() reports progress


def _oom_reserves_allowed(k: Kernel) -> bool:
    """__gfp_pfmemalloc_flags()'s oom_reserves_allowed(current) (mmintro.kernel.oom_kill)."""
    if not k.__dict__.get("oom"):
        return False  # nobody was ever OOM-killed: no victim can be current
    from mmintro.kernel import oom_kill

    return oom_kill.oom_reserves_allowed(k)


def __alloc_pages(
    k: Kernel, gfp: int, order: int, preferred_nid: int | None = None, nodemask: frozenset[int] | None = None
) -> int | None:
    """Allocate 2^order pages; returns the first pfn or None (after a warn_alloc report)."""
    if order > MAX_PAGE_ORDER:
        return None  # WARN_ON_ONCE_GFP
    if preferred_nid is None:
        preferred_nid = k.numa_node_id()
    ac = prepare_alloc_pages(k, gfp, preferred_nid, nodemask)
    alloc_flags = ALLOC_WMARK_LOW | alloc_flags_nofragment(k, ac.preferred, gfp)
    pfn = get_page_from_freelist(k, gfp, order, alloc_flags, ac) if ac.preferred is not None else None
    if pfn is None:
        pfn, alloc_flags, ac = __alloc_pages_slowpath(k, gfp, order, ac)
        if pfn is None:
            warn_alloc(k, gfp, order, ac, alloc_flags)
            return None
    # set_page_refcounted()
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    mv32[2 * (base + pfn * 8) + D_REFCOUNT] = 1
    k.allocations[pfn] = order
    return pfn


# -- freeing -------------------------------------------------------------------------------
def free_pages_prepare(k: Kernel, pfn: int, order: int) -> bool:
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    flags = mv64[w + W_FLAGS]
    compound = bool(flags & (1 << PG_head))
    if order:
        if compound:
            mv64[w + FW_FLAGS_1] &= ~PAGE_FLAGS_SECOND
            mv32[2 * w + FD_NR_PAGES] = 0
        n = 1 << order
        if n > 8:
            if compound:
                memmap_update(k, pfn + 1, n - 1, "mapping", "set", 0)
                memmap_update(k, pfn + 1, n - 1, "lru_next", "set", 0)
            memmap_update(k, pfn + 1, n - 1, "flags", "and", ~PAGE_FLAGS_CHECK_AT_PREP)
        else:
            for i in range(1, n):
                if compound:
                    mv64[w + 8 * i + W_MAPPING] = 0
                    mv64[w + 8 * i + W_COMPOUND_HEAD] = 0
                mv64[w + 8 * i + W_FLAGS] &= ~PAGE_FLAGS_CHECK_AT_PREP
    if mv64[w + W_MAPPING] & 1:  # folio_test_anon
        mv64[w + W_MAPPING] = 0
    pt = mv32[2 * w + D_PAGE_TYPE]
    if 0x80000000 <= pt < PGTY_MAPCOUNT_UNDERFLOW:  # page_has_type
        mv32[2 * w + D_PAGE_TYPE] = PAGE_TYPE_NONE
    # page_cpupid_reset_last() and the flags check
    mv64[w + W_FLAGS] = (flags & ~PAGE_FLAGS_CHECK_AT_PREP) | LAST_CPUPID_MASK
    return True


def split_large_buddy(k: Kernel, z: ZoneState, pfn: int, order: int, fpi: int) -> None:
    end = pfn + (1 << order)
    order = min(order, PAGEBLOCK_ORDER)
    while pfn < end:
        mt = k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] & MIGRATETYPE_MASK
        __free_one_page(k, z, pfn, order, mt, fpi)
        pfn += 1 << order


def free_one_page(k: Kernel, z: ZoneState, pfn: int, order: int, fpi: int) -> None:
    split_large_buddy(k, z, pfn, order, fpi)
    k.vm_events[k.current_cpu][PGFREE] += 1 << order


def __free_pages_ok(k: Kernel, pfn: int, order: int, fpi: int) -> None:
    z = page_zone(k, pfn)
    if free_pages_prepare(k, pfn, order):
        free_one_page(k, z, pfn, order, fpi)


def __free_frozen_pages(k: Kernel, pfn: int, order: int, fpi: int = FPI_NONE) -> None:
    if not (order <= PAGE_ALLOC_COSTLY_ORDER or order == HPAGE_PMD_ORDER):
        __free_pages_ok(k, pfn, order, fpi)
        return
    free_pages_prepare(k, pfn, order)
    mv64, _mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    f = mv64[base + pfn * 8 + W_FLAGS]
    z = k.zones[f >> kc.NODES_PGOFF][(f >> kc.ZONES_PGOFF) & ZONES_MASK]  # page_zone()
    mt = k.pageblock_flags[pfn >> PAGEBLOCK_ORDER] & MIGRATETYPE_MASK
    if mt >= MIGRATE_PCPTYPES:
        if mt == MIGRATE_ISOLATE:
            free_one_page(k, z, pfn, order, fpi)
            return
        mt = MIGRATE_MOVABLE
    free_frozen_page_commit(k, z, z.pcp[k.current_cpu], pfn, mt, order)


def __free_pages(k: Kernel, pfn: int, order: int) -> None:
    """___free_pages(): drop the caller's reference; free the block when it was the last."""
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    w = base + pfn * 8
    head = mv64[w + W_FLAGS] & (1 << PG_head)
    ref = mv32[2 * w + D_REFCOUNT]
    if ref == 0:
        raise ValueError(f"__free_pages: pfn {pfn:#x} has _refcount 0 (double free)")
    mv32[2 * w + D_REFCOUNT] = ref - 1
    if ref == 1:
        k.allocations.pop(pfn, None)
        __free_frozen_pages(k, pfn, order)
    elif not head:
        k.allocations[pfn] = 0
        while order > 0:
            order -= 1
            __free_frozen_pages(k, pfn + (1 << order), order)


# -- warn_alloc ----------------------------------------------------------------------------
_MT_LETTERS = {
    MIGRATE_UNMOVABLE: "U",
    MIGRATE_MOVABLE: "M",
    MIGRATE_RECLAIMABLE: "E",
    MIGRATE_HIGHATOMIC: "H",
    MIGRATE_ISOLATE: "I",
}


def why_refused(z: ZoneState, order: int, alloc_flags: int, highest: int) -> str:
    """Which test of __zone_watermark_ok() the zone failed on the final attempt:
    'watermark' if the free pages the request may use (free - (2^order - 1) - reserves it
    may not touch) are at or below the watermark plus lowmem_reserve, else 'fragmentation'
    (enough free pages, but no free block of the order or larger on a list it may take)."""
    if alloc_flags & ALLOC_NO_WATERMARKS:
        return "fragmentation"
    mark = wmark_pages(z, alloc_flags & ALLOC_WMARK_MASK)
    if not __zone_watermark_ok(z, 0, mark, highest, alloc_flags, z.free_pages - ((1 << order) - 1)):
        return "watermark"
    return "fragmentation"


def show_free_areas(k: Kernel, zones: list[ZoneState]) -> list[str]:
    """The per-zone part of show_free_areas() (lib/show_mem.c / mm/show_mem.c)."""
    K = PAGE_SIZE >> 10
    lines = []
    for z in zones:
        free_pcp = sum(p.count for p in z.pcp)
        local_pcp = z.pcp[k.current_cpu].count if z.pcp else 0
        lines.append(
            f"Node {z.nid} {z.name} free:{z.free_pages * K}kB boost:{z.watermark_boost * K}kB "
            f"min:{wmark_pages(z, 0) * K}kB low:{wmark_pages(z, 1) * K}kB high:{wmark_pages(z, 2) * K}kB "
            f"reserved_highatomic:{z.nr_reserved_highatomic * K}KB free_highatomic:{z.nr_free_highatomic * K}KB "
            f"active_anon:0kB inactive_anon:0kB active_file:0kB inactive_file:0kB unevictable:0kB writepending:0kB "
            f"zspages:0kB present:{z.present * K}kB managed:{z.managed * K}kB mlocked:0kB bounce:0kB "
            f"free_pcp:{free_pcp * K}kB local_pcp:{local_pcp * K}kB free_cma:0kB"
        )
        lines.append("lowmem_reserve[]: " + " ".join(str(v) for v in z.lowmem_reserve))
    for z in zones:
        parts = []
        total = 0
        for o in range(NR_PAGE_ORDERS):
            n = z.nr_free[o]
            total += n << o
            s = f"{n}*{K << o}kB "
            if n:
                types = "".join(_MT_LETTERS[mt] for mt in range(MIGRATE_TYPES) if not free_area_empty(z, o, mt))
                s += f"({types}) "
            parts.append(s)
        lines.append(f"Node {z.nid} {z.name}: " + "".join(parts) + f"= {total * K}kB")
    return lines


def warn_alloc(k: Kernel, gfp: int, order: int, ac: AllocContext, alloc_flags: int) -> None:
    zones = ac.zones
    verdicts = [(z, why_refused(z, order, alloc_flags, ac.highest_zoneidx)) for z in zones]
    nodemask = "(null)" if ac.nodemask is None else _nodelist(ac.nodemask)
    mems = _nodelist(range(k.config.nodes))
    lines = [
        f"{k.current_comm()}: page allocation failure: order:{order}, mode:{gfp:#x}({G.format_gfp(gfp)}), "
        f"nodemask={nodemask},cpuset=/,mems_allowed={mems}"
    ]
    lines.append("Mem-Info:")
    lines += show_free_areas(k, [z for zs in k.zones for z in zs if z.populated])
    for z, why in verdicts:
        lines.append(
            f"mmintro: Node {z.nid} {z.name} refused order-{order}: {why} "
            f"(free {z.free_pages} pages, watermark {wmark_pages(z, alloc_flags & ALLOC_WMARK_MASK)}"
            f" + lowmem_reserve {z.lowmem_reserve[ac.highest_zoneidx]})"
        )
    if not zones:
        lines.append("mmintro: no zone is eligible for this request (zone modifiers, nodemask or __GFP_THISNODE)")
    text = "\n".join(lines)
    failure = AllocFailure(
        order,
        gfp,
        ac.preferred_nid,
        ac.nodemask,
        k.current_cpu,
        [(f"Node {z.nid} {z.name}", why) for z, why in verdicts],
        text,
    )
    k.alloc_failures.append(failure)
    if not gfp & G.__GFP_NOWARN:
        k.printk(4, "\n".join(lines))  # pr_warn


def _nodelist(nodes) -> str:
    """%*pbl: a bitmap as a list of ranges, e.g. 0-1,3."""
    nodes = sorted(nodes)
    out = []
    i = 0
    while i < len(nodes):
        j = i
        while j + 1 < len(nodes) and nodes[j + 1] == nodes[j] + 1:
            j += 1
        out.append(str(nodes[i]) if i == j else f"{nodes[i]}-{nodes[j]}")
        i = j + 1
    return ",".join(out)


# -- boot ----------------------------------------------------------------------------------
def memblock_free_all(k: Kernel) -> None:
    """mem_init() -> memblock_free_all(): reserve_bootmem_region() over every reserved range,
    then __free_pages_memory() over every free range, lowest address first."""
    for r in k.memblock.reserved:
        lo, hi = r.base >> PAGE_SHIFT, -(-r.end // PAGE_SIZE)
        for nr in range(pfn_to_section_nr(lo), pfn_to_section_nr(hi - 1) + 1):
            if nr not in k.present_sections:
                continue
            base = nr << PFN_SECTION_SHIFT
            a, b = max(lo, base), min(hi, base + PAGES_PER_SECTION)
            memmap_update(k, a, b - a, "flags", "or", 1 << PG_reserved)
    total = 0
    for start, end, _nid in k.memblock.free_ranges():
        s, e = -(-start // PAGE_SIZE), end >> PAGE_SHIFT
        while s < e:
            order = MAX_PAGE_ORDER if s == 0 else min(MAX_PAGE_ORDER, (s & -s).bit_length() - 1)
            while s + (1 << order) > e:
                order -= 1
            __free_pages_core(k, s, order)
            total += 1 << order
            s += 1 << order
    k.totalram_pages = total
    k.kmem.write_u64(k.sym("_totalram_pages"), total)


def __free_pages_core(k: Kernel, pfn: int, order: int) -> None:
    """Clear PG_reserved, drop every page's count to 0, account the zone's managed pages,
    then free the block (__free_pages_ok with FPI_TO_TAIL)."""
    memmap_update(k, pfn, 1 << order, "flags", "and", ~(1 << PG_reserved))
    memmap_update(k, pfn, 1 << order, "refcount", "set", 0)
    z = page_zone(k, pfn)
    z.managed += 1 << order
    __free_pages_ok(k, pfn, order, FPI_TO_TAIL)


def zone_free_pages(z: ZoneState) -> int:
    return sum(n << o for o, n in enumerate(z.nr_free))


def write_free_lists(k: Kernel) -> None:
    """Write every free list and per-CPU list into memory: the list heads in struct zone and
    struct per_cpu_pages, ``lru`` in the pages; nr_free; the pagesets' counters; the
    pageblock bits into each section's mem_section_usage."""
    T = k.T
    fa = T.struct("zone").offsetof("free_area")
    fa_size = T.sizeof("struct free_area")
    nr_free_off = T.struct("free_area").offsetof("nr_free")
    lists_off = T.struct("per_cpu_pages").offsetof("lists")
    vm = k.vmemmap_base + LRU_OFF
    sp = k.struct_page_size
    for zones in k.zones:
        for z in zones:
            if not z.spanned:
                continue
            heads: dict[int, int] = {}
            for o in range(NR_PAGE_ORDERS):
                k.kmem.write_u64(z.addr + fa + o * fa_size + nr_free_off, z.nr_free[o])
                for mt in range(MIGRATE_TYPES):
                    heads[free_list_head(o, mt)] = z.addr + fa + o * fa_size + mt * 16
            for pcp in z.pcp:
                for i, h in enumerate(pcp.heads):
                    heads[h] = pcp.addr + lists_off + 16 * i
                for name in ("count", "high", "high_min", "high_max", "batch", "flags", "alloc_factor", "free_count"):
                    k.kmem.set(pcp.addr, "per_cpu_pages", name, getattr(pcp, name))
            nxt, prv = z.nxt, z.prv

            def addr(key: int, heads: dict = heads) -> int:
                return heads[key] if key < 0 else vm + key * sp

            for h, ha in heads.items():
                k.kmem.write_u64(ha, addr(nxt[h]))
                k.kmem.write_u64(ha + 8, addr(prv[h]))
                n = nxt[h]
                guard = len(nxt)
                while n != h:
                    mv64, _mv32, w = page_words(k, n)
                    mv64[w + W_LRU_NEXT] = addr(nxt[n])
                    mv64[w + W_LRU_PREV] = addr(prv[n])
                    n = nxt[n]
                    guard -= 1
                    if guard < 0:
                        raise AssertionError(f"free list of zone {z.name} is not circular")
            for name, v in (
                ("nr_reserved_highatomic", z.nr_reserved_highatomic),
                ("nr_free_highatomic", z.nr_free_highatomic),
                ("watermark_boost", z.watermark_boost),
                ("flags", z.flags),
            ):
                k.kmem.set(z.addr, "zone", name, v)
    per = PAGES_PER_SECTION >> PAGEBLOCK_ORDER
    for nr in k.present_sections:
        k.kmem.write_bytes(k.section_usage[nr] + k.usemap_offset, bytes(k.pageblock_flags[nr * per : (nr + 1) * per]))


# -- watermarks and reserves ---------------------------------------------------------------
def init_per_zone_wmark_min(k: Kernel) -> None:
    """postcore_initcall(init_per_zone_wmark_min): calculate_min_free_kbytes(), then
    setup_per_zone_wmarks() and setup_per_zone_lowmem_reserve().  khugepaged's raise
    (set_recommended_min_free_kbytes) comes later, from hugepage_init's
    start_stop_khugepaged (:mod:`mmintro.kernel.huge_memory`)."""
    zones = [z for zs in k.zones for z in zs]
    lowmem_kbytes = sum(z.managed for z in zones if z.idx <= 2) * (PAGE_SIZE >> 10)
    new_min = math.isqrt(lowmem_kbytes * 16)
    min_free_kbytes = max(128, min(262144, new_min))
    k.min_free_kbytes = min_free_kbytes
    k.write_int("min_free_kbytes", min_free_kbytes)
    k.write_int("user_min_free_kbytes", -1)
    setup_per_zone_wmarks(k)
    setup_per_zone_lowmem_reserve(k)


def setup_per_zone_wmarks(k: Kernel) -> None:
    zones = [z for zs in k.zones for z in zs]
    for z in zones:  # the managed pages the watermarks and pagesets are computed from
        z.managed_at_wmarks = z.managed
    pages_min = k.min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(z.managed for z in zones if z.idx != 3)  # !is_highmem && != ZONE_MOVABLE
    for z in zones:
        tmp = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
        if z.idx == 3:  # ZONE_MOVABLE: a small, capped minimum
            wmin = max(kc.SWAP_CLUSTER_MAX, min(z.managed // 1024, 128))
        else:
            wmin = tmp
        tmp = max(tmp >> 2, z.managed * vm_sysctl(k, "watermark_scale_factor") // 10000)
        z.watermark = [wmin, wmin + tmp, wmin + 2 * tmp, wmin + 3 * tmp]
        for i, v in enumerate(z.watermark):
            k.kmem.set(z.addr, "zone", f"_watermark[{i}]", v)
        z.watermark_boost = 0
    # "The watermark size have changed so update the pcpu batch and high limits"
    for z in zones:
        zone_pcp_update(k, z)


def zone_pcp_update(k: Kernel, z: ZoneState) -> None:
    """zone_pcp_update(zone, 0) -> zone_set_pageset_high_and_batch(): batch, high_min (the low
    watermark split over the node's CPUs) and high_max (managed / 8 split likewise) recomputed;
    if any changed, every CPU's pageset gets them (pageset_update: not ``high`` itself).  A zone
    whose pagesets do not exist yet (before setup_per_cpu_pageset) is left alone."""
    if not getattr(z, "pcp", None):
        return
    batch = max(1, zone_batchsize(z))
    high_min, high_max = pageset_high(k, z, batch)
    if (z.pcp_high_min, z.pcp_high_max, z.pcp_batch) == (high_min, high_max, batch):
        return
    z.pcp_high_min, z.pcp_high_max, z.pcp_batch = high_min, high_max, batch
    k.kmem.set(z.addr, "zone", "pageset_batch", batch)
    k.kmem.set(z.addr, "zone", "pageset_high_min", high_min)
    k.kmem.set(z.addr, "zone", "pageset_high_max", high_max)
    for pcp in z.pcp:
        pcp.high_min, pcp.high_max, pcp.batch = high_min, high_max, batch


MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8  # mm/page_alloc.c


def pageset_high(k: Kernel, z: ZoneState, batch: int) -> tuple[int, int]:
    """zone_set_pageset_high_and_batch()'s (high_min, high_max): the low watermark and managed / 8
    over the node's CPUs; with vm.percpu_pagelist_high_fraction set, managed / fraction for both
    (auto-tuning off)."""
    fraction = vm_sysctl(k, "percpu_pagelist_high_fraction")
    if fraction:
        high = zone_highsize(k, z, batch, fraction)
        return high, high
    return zone_highsize(k, z, batch, 0), zone_highsize(k, z, batch, MIN_PERCPU_PAGELIST_HIGH_FRACTION)


def setup_per_zone_lowmem_reserve(k: Kernel) -> None:
    k.lowmem_reserve_ready = True
    for zs in k.zones:
        for i in range(len(zs) - 1):
            z = zs[i]
            ratio = vm_sysctl(k, "lowmem_reserve_ratio")[i]
            clear = not ratio or not z.managed
            managed = 0
            for j in range(i + 1, len(zs)):
                managed += zs[j].managed
                z.lowmem_reserve[j] = 0 if clear else managed // ratio
        for z in zs:
            for j, v in enumerate(z.lowmem_reserve):
                k.kmem.set(z.addr, "zone", f"lowmem_reserve[{j}]", v)
    calculate_totalreserve_pages(k)


def calculate_totalreserve_pages(k: Kernel) -> None:
    """calculate_totalreserve_pages(): per node and in all, each zone's largest lowmem_reserve
    plus its high watermark, at most its managed pages."""
    total = 0
    for nid, zs in enumerate(k.zones):
        node_total = 0
        for z in zs:
            m = max(z.lowmem_reserve) + z.watermark[2]
            node_total += min(m, z.managed)
        k.kmem.set(k.pgdat[nid], "pglist_data", "totalreserve_pages", node_total)
        total += node_total
    k.totalreserve_pages = total
    k.kmem.write_u64(k.sym("totalreserve_pages"), total)


def zone_batchsize(z: ZoneState) -> int:
    batch = min(z.managed >> 10, (1 << 20) // PAGE_SIZE)
    batch //= 4
    batch = max(batch, 1)
    x = batch + batch // 2
    return (1 << (x.bit_length() - 1)) - 1


def zone_highsize(k: Kernel, z: ZoneState, batch: int, high_fraction: int) -> int:
    total = z.watermark[1] if not high_fraction else z.managed // high_fraction
    nr_split_cpus = sum(1 for cpu in range(k.config.cpus) if k.cpu_to_node(cpu) == z.nid) or k.config.cpus
    return max(total // nr_split_cpus, batch << 2)


def cpu_to_node(k: Kernel, cpu: int) -> int:
    return k.cpu_to_node(cpu)


def calculate_normal_threshold(k: Kernel, z: ZoneState) -> int:
    mem = z.managed >> (27 - PAGE_SHIFT)
    fls = lambda x: x.bit_length()
    return min(125, 2 * fls(k.config.cpus) * (1 + fls(mem)))


def setup_zone_pagesets(k: Kernel) -> None:
    """setup_per_cpu_pageset(): per-CPU pagesets and zonestats for every populated zone,
    nodestats for every node; high/batch as zone_set_pageset_high_and_batch() sets them."""
    T = k.T
    pcp_size = T.sizeof("struct per_cpu_pages")
    zst_size = T.sizeof("struct per_cpu_zonestat")
    nst_size = T.sizeof("struct per_cpu_nodestat")
    for nid, zs in enumerate(k.zones):
        node_threshold = 0
        for z in zs:
            if not z.populated:
                continue
            z.pageset = k.alloc_percpu(pcp_size, 64)
            z.zonestats = k.alloc_percpu(zst_size, 64)
            z.pcp_batch = max(1, zone_batchsize(z))  # zone_set_pageset_high_and_batch()
            z.pcp_high_min, z.pcp_high_max = pageset_high(k, z, z.pcp_batch)
            z.stat_threshold = calculate_normal_threshold(k, z)
            node_threshold = max(node_threshold, z.stat_threshold)
            k.kmem.set(z.addr, "zone", "per_cpu_pageset", z.pageset)
            k.kmem.set(z.addr, "zone", "per_cpu_zonestats", z.zonestats)
            k.kmem.set(z.addr, "zone", "pageset_batch", z.pcp_batch)
            k.kmem.set(z.addr, "zone", "pageset_high_min", z.pcp_high_min)
            k.kmem.set(z.addr, "zone", "pageset_high_max", z.pcp_high_max)
            z.pcp = []
            for cpu in range(k.config.cpus):
                pcp = PerCpuPages(cpu, k.per_cpu_ptr(z.pageset, cpu), z.pcp_high_min, z.pcp_high_max, z.pcp_batch)
                for h in pcp.heads:
                    z.nxt[h] = z.prv[h] = h
                z.pcp.append(pcp)
                k.kmem.set(k.per_cpu_ptr(z.zonestats, cpu), "per_cpu_zonestat", "stat_threshold", z.stat_threshold)
        ptr = k.alloc_percpu(nst_size, 64)
        k.node_stats_ptr[nid] = ptr
        k.kmem.set(k.pgdat[nid], "pglist_data", "per_cpu_nodestats", ptr)
        for cpu in range(k.config.cpus):
            k.kmem.set(k.per_cpu_ptr(ptr, cpu), "per_cpu_nodestat", "stat_threshold", node_threshold)


# -- giving boot memory back ------------------------------------------------------------------
POISON_FREE_INITMEM = 0xCC  # include/linux/poison.h


def adjust_managed_page_count(k: Kernel, pfn: int, count: int) -> None:
    """adjust_managed_page_count(): the zone's managed pages and totalram move together."""
    page_zone(k, pfn).managed += count
    k.totalram_pages += count
    k.kmem.write_u64(k.sym("_totalram_pages"), k.totalram_pages)


def free_reserved_area(k: Kernel, start: int, end: int, poison: int, what: str | None) -> int:
    """mm/page_alloc.c free_reserved_area() on the physical range [start, end) (page-rounded
    inwards): each page is poisoned (``poison`` <= 0xff), then free_reserved_page():
    PG_reserved cleared, the count set to 1 and __free_page() (the page goes through this
    CPU's pageset), managed pages and totalram up by one.  Logs "Freeing WHAT memory: NK"."""
    lo, hi = -(-start // PAGE_SIZE), end // PAGE_SIZE
    pages = 0
    for pfn in range(lo, hi):
        if poison <= 0xFF:
            k.mem.write(pfn << PAGE_SHIFT, bytes([poison]) * PAGE_SIZE)
        mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
        w = base + pfn * 8
        mv64[w + W_FLAGS] &= ~np.uint64(1 << PG_reserved)
        mv32[2 * w + D_REFCOUNT] = 1  # init_page_count()
        __free_pages(k, pfn, 0)
        adjust_managed_page_count(k, pfn, 1)
        pages += 1
    if pages and what:
        k.printk(6, f"Freeing {what} memory: {pages << (PAGE_SHIFT - 10)}K")
    if pages and getattr(k, "lowmem_reserve_ready", False):
        # Every real 6.18 dump shows each zone's protection computed from its final managed
        # pages (after the image's init memory went back), while the pagesets still show
        # the managed pages of the last setup_per_zone_wmarks(): the lowmem reserves follow
        # managed-page changes; they are recomputed here, once per freed range.
        setup_per_zone_lowmem_reserve(k)
    return pages
