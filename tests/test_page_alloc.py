"""The page allocator's 6.18 behaviours, one at a time, on small simulated machines."""

from __future__ import annotations

import pytest

from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc as pa
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot

GFP_KERNEL = G.GFP_KERNEL


@pytest.fixture()
def k():
    return boot(MachineConfig(ram=1 << 30, cpus=2))


def test_gfp_masks_match_the_reference_values() -> None:
    # enums.txt of the reference kernel lists these composites.
    assert (G.GFP_KERNEL, G.GFP_ATOMIC, G.GFP_USER, G.GFP_HIGHUSER_MOVABLE) == (0xCC0, 0x820, 0x100CC0, 0x100CCA)
    assert (G.GFP_TRANSHUGE_LIGHT, G.GFP_TRANSHUGE, G.GFP_NOWAIT) == (0x1C20CA, 0x1C24CA, 0x2800)
    assert G.format_gfp(G.GFP_KERNEL | G.__GFP_ZERO | G.__GFP_COMP) == "GFP_KERNEL|__GFP_COMP|__GFP_ZERO"
    assert G.format_gfp(G.GFP_ATOMIC | G.__GFP_NOWARN) == "GFP_ATOMIC|__GFP_NOWARN"
    assert G.parse_gfp("GFP_KERNEL|__GFP_ZERO") == 0xDC0
    with pytest.raises(G.GfpError, match="unknown GFP flag 'GFP_BOGUS'"):
        G.parse_gfp("GFP_KERNEL|GFP_BOGUS")


def test_gfp_zone_and_migratetype() -> None:
    T = pa._T
    assert G.gfp_zone(GFP_KERNEL) == T.const("ZONE_NORMAL")
    assert G.gfp_zone(G.GFP_DMA) == T.const("ZONE_DMA")
    assert G.gfp_zone(GFP_KERNEL | G.GFP_DMA32) == T.const("ZONE_DMA32")
    assert G.gfp_zone(G.GFP_HIGHUSER_MOVABLE) == T.const("ZONE_MOVABLE")
    assert G.gfp_migratetype(G.GFP_HIGHUSER_MOVABLE) == pa.MIGRATE_MOVABLE
    assert G.gfp_migratetype(GFP_KERNEL | G.__GFP_RECLAIMABLE) == pa.MIGRATE_RECLAIMABLE
    assert G.gfp_migratetype(GFP_KERNEL) == pa.MIGRATE_UNMOVABLE
    with pytest.raises(G.GfpError):
        G.gfp_zone(G.__GFP_DMA | G.__GFP_DMA32)


def _page(k, pfn):
    mv64, mv32, w = pa.page_words(k, pfn)
    return mv64, mv32, w


def test_order0_comes_from_the_pcp_list_which_is_refilled_in_batches(k) -> None:
    z = k.zones[0][1]  # DMA32: the only zone above DMA on a 1 GiB machine
    pcp = z.pcp[0]
    pa.drain_all_pages(k)  # boot's allocations left pages on the list: start from an empty one
    af = pcp.alloc_factor  # boot's refills may have scaled it already
    pfn = k.alloc_pages(GFP_KERNEL | G.GFP_DMA32, 0)
    assert pa.zone_of_pfn(k, pfn) is z
    # rmqueue_bulk moved nr_pcp_alloc() pages onto the list; one of them was handed out:
    # batch << alloc_factor, capped at max(high - count - batch, batch), alloc_factor + 1.
    want = min(pcp.batch << af, max(pcp.high - pcp.batch, pcp.batch))
    assert pcp.count == want - 1 and pcp.alloc_factor == af + 1
    mv64, mv32, w = _page(k, pfn)
    assert mv32[2 * w + pa.D_REFCOUNT] == 1 and mv32[2 * w + pa.D_PAGE_TYPE] == 0xFFFFFFFF
    assert mv64[w + pa.W_LRU_NEXT] == 0 and mv64[w + pa.W_LRU_PREV] == pa.LIST_POISON2
    free_before = z.free_pages
    k.free_pages(pfn, 0)
    # Freed to the pcp list: not counted in NR_FREE_PAGES, refcount 0.
    assert z.free_pages == free_before and pcp.count == want
    assert mv32[2 * w + pa.D_REFCOUNT] == 0


def test_pcp_high_triggers_a_bulk_free_back_to_buddy(k) -> None:
    z = k.zones[0][1]
    pcp = z.pcp[0]
    pfns = [k.alloc_pages(GFP_KERNEL | G.GFP_DMA32, 0) for _ in range(4 * pcp.high_max)]
    for p in pfns:
        k.free_pages(p, 0)
    assert pcp.count < pcp.high_max + pcp.batch
    pa.drain_all_pages(k)
    assert pcp.count == 0 and sum(p.count for p in z.pcp) == 0


def test_compound_page_encoding(k) -> None:
    pfn = k.alloc_pages("GFP_KERNEL|__GFP_COMP|__GFP_DMA32", 4)
    mv64, mv32, w = _page(k, pfn)
    head = k.pfn_to_page(pfn)
    assert mv64[w + pa.W_FLAGS] & (1 << pa.PG_head)
    assert mv64[w + pa.FW_FLAGS_1] & 0xFF == 4 and mv32[2 * w + pa.FD_NR_PAGES] == 16
    assert mv32[2 * w + pa.FD_LARGE_MAPCOUNT] == 0xFFFFFFFF and mv32[2 * w + pa.FD_ENTIRE_MAPCOUNT] == 0xFFFFFFFF
    assert mv64[w + pa.FW_DEFERRED_LIST] == head + pa._T.struct("folio").offsetof("_deferred_list")
    for i in range(1, 16):
        assert mv64[w + 8 * i + pa.W_COMPOUND_HEAD] == head | 1
        assert mv32[2 * (w + 8 * i) + pa.D_REFCOUNT] == 0
    for i in range(3, 16):  # pages 1 and 2 hold folio fields where a tail's mapping would be
        assert mv64[w + 8 * i + pa.W_MAPPING] == pa.TAIL_MAPPING
    k.free_pages(pfn, 4)
    assert not mv64[w + pa.W_FLAGS] & (1 << pa.PG_head)
    for i in range(1, 16):
        assert (
            mv64[w + 8 * i + pa.W_COMPOUND_HEAD] in (0, pa.LIST_POISON1)
            or mv64[w + 8 * i + pa.W_COMPOUND_HEAD] & 1 == 0
        )


def test_gfp_zero_really_zeroes(k) -> None:
    pfn = k.alloc_pages(GFP_KERNEL | G.GFP_DMA32, 2)
    k.mem.fill(pfn << 12, 4 << 12, 0xAB)
    k.free_pages(pfn, 2)
    pa.drain_all_pages(k)
    # the freed block comes back when the allocator reaches it (first, unless it merged with
    # a free buddy and other order-2 blocks are ahead of it); every block handed out is zeroed
    for _ in range(4096):
        again = k.alloc_pages(GFP_KERNEL | G.GFP_DMA32 | G.__GFP_ZERO, 2)
        assert k.mem.read(again << 12, 4 << 12) == bytes(4 << 12)
        if again == pfn:
            break
    assert again == pfn


def test_unmovable_fallback_claims_a_movable_pageblock(k) -> None:
    """Every pageblock starts MIGRATE_MOVABLE, so the first unmovable allocation must take
    a whole movable block (try_to_claim_block) and retype its pageblock."""
    pfn = k.alloc_pages(GFP_KERNEL | G.GFP_DMA32, 0)
    assert pa.get_pfnblock_migratetype(k, pfn) == pa.MIGRATE_UNMOVABLE
    assert k.extfrag_events >= 1
    z = pa.zone_of_pfn(k, pfn)
    # The rest of the claimed block sits on the unmovable lists now.
    assert any(not pa.free_area_empty(z, o, pa.MIGRATE_UNMOVABLE) for o in range(pa.NR_PAGE_ORDERS))


def test_numa_hit_miss_foreign_local_other() -> None:
    k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=2))
    k.on_cpu(0)  # node 0
    before = {id(z): list(z.numa_events) for zs in k.zones for z in zs}  # boot allocated too
    pfn = k.alloc_pages(GFP_KERNEL, 0, nid=1)
    z = pa.zone_of_pfn(k, pfn)
    assert z.nid == 1
    delta = [a - b for a, b in zip(z.numa_events, before[id(z)])]
    assert delta[pa.NUMA_HIT] == 1 and delta[pa.NUMA_OTHER] == 1 and delta[pa.NUMA_LOCAL] == 0
    # __GFP_THISNODE on an exhausted-for-the-request zone list fails instead of spilling.
    assert k.alloc_pages(GFP_KERNEL | G.__GFP_THISNODE | G.__GFP_NOWARN, 0, nid=1, nodemask=frozenset({0})) is None


def test_warn_alloc_report_for_an_impossible_request(k) -> None:
    """GFP_DMA on a 1 GiB machine: ZONE_DMA has ~4k pages, so an order-10 request with the
    DMA zone's free blocks all taken fails; the report names the mode and every zone."""
    got = []
    while (p := k.alloc_pages(G.GFP_DMA | G.__GFP_NOWARN, 10)) is not None:
        got.append(p)
    f = k.alloc_failures[-1]
    assert f.order == 10 and f.zones[0][0] == "Node 0 DMA"
    assert not any("page allocation failure" in line for line in k.log)  # __GFP_NOWARN
    assert k.alloc_pages(G.GFP_DMA, 10) is None
    text = k.alloc_failures[-1].text
    assert text.splitlines()[0] == (
        "swapper/0: page allocation failure: order:10, mode:0x1(GFP_DMA), nodemask=(null),cpuset=/,mems_allowed=0"
    )
    assert "Node 0 DMA: " in text and text in "\n".join(k.log)
    for p in got:
        k.free_pages(p, 10)


def test_atomic_allocations_dip_below_min_and_order1_reserves_highatomic(k) -> None:
    z = k.zones[0][1]
    held = []  # (pfn, order)

    def exhaust(flags: int) -> None:
        # Big blocks first (orders 9 and 4 bypass the pcp lists), then order 0 until
        # the request fails even right after the pcp lists were drained.
        for order in (9, 4, 0):
            while (p := k.alloc_pages(flags | G.__GFP_NOWARN, order)) is not None:
                held.append((p, order))
        while True:
            pa.drain_all_pages(k)
            if (p := k.alloc_pages(flags | G.__GFP_NOWARN, 0)) is None:
                return
            held.append((p, 0))
            while (p := k.alloc_pages(flags | G.__GFP_NOWARN, 0)) is not None:
                held.append((p, 0))

    exhaust(GFP_KERNEL | G.GFP_DMA)  # ZONE_DMA first, so DMA32 requests cannot fall back to it
    exhaust(GFP_KERNEL | G.GFP_DMA32)
    assert z.free_pages <= z.watermark[0] + z.lowmem_reserve[1] + 1
    atomic = []
    while len(atomic) < 10000 and (p := k.alloc_pages(G.GFP_ATOMIC | G.GFP_DMA32 | G.__GFP_NOWARN, 0)) is not None:
        atomic.append(p)
    assert atomic and z.free_pages < z.watermark[0]
    # ALLOC_MIN_RESERVE|ALLOC_NON_BLOCK: min - min/2 - (min - min/2)/4 is the floor.
    floor = z.watermark[0] - z.watermark[0] // 2
    floor -= floor // 4
    assert z.free_pages <= floor + 1
    for p in atomic:
        k.free_pages(p, 0)
    pa.drain_all_pages(k)
    # Between min and low: the fast path (ALLOC_WMARK_LOW) refuses, the slow path's
    # gfp_to_alloc_flags() gives an order-1 GFP_ATOMIC ALLOC_HIGHATOMIC, and the block it
    # is served from becomes a highatomic reserve.
    dma32 = [(p, o) for p, o in held if pa.zone_of_pfn(k, p) is z]
    while z.free_pages < (z.watermark[0] + z.watermark[1]) // 2:
        p, o = min(dma32, key=lambda b: b[1])
        dma32.remove((p, o))
        k.free_pages(p, o)
        pa.drain_all_pages(k)
    assert z.free_pages < z.watermark[1]
    p = k.alloc_pages(G.GFP_ATOMIC | G.GFP_DMA32, 1)
    assert p is not None and pa.zone_of_pfn(k, p) is z
    assert z.nr_reserved_highatomic == pa.PAGEBLOCK_NR_PAGES
    assert pa.get_pfnblock_migratetype(k, p) == pa.MIGRATE_HIGHATOMIC


def test_free_everything_restores_boot_free_lists(k) -> None:
    pa.drain_all_pages(k)
    boot_state = [(z.nid, z.idx, list(z.nr_free), z.free_pages) for zs in k.zones for z in zs]
    boot_allocations = dict(k.allocations)  # what boot itself allocated (slab, page tables ...)
    blocks = []
    for i in range(3000):
        order = (0, 0, 1, 2, 3, 5, 9)[i % 7]
        gfp = (GFP_KERNEL | G.__GFP_COMP, G.GFP_HIGHUSER_MOVABLE, GFP_KERNEL | G.__GFP_RECLAIMABLE)[i % 3]
        p = k.alloc_pages(gfp | G.GFP_DMA32 if not gfp & G.__GFP_MOVABLE else gfp, order)
        if p is not None:
            blocks.append((p, order))
        if i % 5 == 0 and blocks:
            p, o = blocks.pop(len(blocks) // 2)
            k.free_pages(p, o)
    for p, o in blocks:
        k.free_pages(p, o)
    pa.drain_all_pages(k)
    assert k.allocations == boot_allocations
    assert [(z.nid, z.idx, list(z.nr_free), z.free_pages) for zs in k.zones for z in zs] == boot_state


def test_double_free_is_refused(k) -> None:
    p = k.alloc_pages(GFP_KERNEL | G.GFP_DMA32, 0)
    k.free_pages(p, 0)
    with pytest.raises(ValueError, match="double free"):
        k.free_pages(p, 0)
