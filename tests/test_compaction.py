"""Compaction and page migration (mmintro/kernel/compaction.py, migrate.py).

* migration of one anonymous and one page-cache folio on a small booted machine: the bytes,
  the PTE, the rmap, the LRU, the i_pages entry and its dirty mark, the reference counts,
  and the old frame back in the allocator; a folio with an extra reference is not migrated;
* deferred compaction (defer_compaction / compaction_deferred / compaction_defer_reset) as
  mm/compaction.c counts it, and the fragmentation index against the formula and against
  the debugfs view a dump gives (mmintro.views.fragmentation);
* the scanners: direct compaction of a fragmented zone makes an order-9 block where there
  was none, moving only LRU folios (slab and page-table pages stay), and vm.compact_memory
  compacts the whole zone; the invariants hold after it (every pfn in exactly one state,
  free counts equal the free lists, no folio both free and on an LRU, contents preserved);
* drgn on written snapshots: every mapping of a migrated folio points at the new pfn
  (follow_phys over the process's mm), the old frame is free (on a buddy free list or a
  pcp list, walked by drgn) or part of the block the allocation got, and the zone's
  compaction fields read back from struct zone.
"""

from __future__ import annotations

import pytest

from mmintro.kernel import compaction as C
from mmintro.kernel import inode as I
from mmintro.kernel import memory, migrate, rmap, swap
from mmintro.kernel import page_alloc as pa
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.types import get_types
from mmintro.workload import Workload, load_scenario, run_scenario, shipped_scenarios

T = get_types()
EV = T.enum("vm_event_item")
PAGE = 4096


def ev(k, name: str) -> int:
    return sum(c[EV[name]] for c in k.vm_events)


def pte_pfn(k, mm, addr) -> int:
    level, _slot, e = memory.walk(k, mm, addr)
    assert level == "PTE" and memory.pte_present(e)
    return memory.pte_pfn(e)


@pytest.fixture
def small():
    """A 256 MiB machine with one process: 16 anonymous pages written with distinct bytes and
    8 pages of a privately mapped file, read."""
    k = boot(MachineConfig(ram=256 << 20, cpus=2, seed=5))
    w = Workload(k)
    w.spawn("p")
    w.mmap("p", "a", 16 * PAGE)
    w.touch("p", "a", write=True)
    w.create_file("f", "/data/f", 8 * PAGE)
    w.mmap("p", "m", 8 * PAGE, prot="r", kind="private", file="f")
    w.touch("p", "m")
    mm = w.proc("p").mm
    a = w.mapping("p", "a").start
    for i in range(16):
        k.mem.write(pte_pfn(k, mm, a + i * PAGE) << 12, bytes([0x40 + i]) * PAGE)
    return k, w, mm


def _alloc_target(k):
    return lambda src: k.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)


def test_migrate_anon_folio_moves_bytes_pte_rmap_and_lru(small) -> None:
    k, w, mm = small
    addr = w.mapping("p", "a").start + 3 * PAGE
    old = pte_pfn(k, mm, addr)
    lru_before = swap.folio_lru_list(k, old)
    anon_mapped = k.node_vm_stat[0].get("NR_ANON_MAPPED")
    assert migrate.folio_isolate_lru(k, old)
    assert k.node_vm_stat[0]["NR_ISOLATED_ANON"] == 1 and not swap.folio_test(k, old, swap.PG_lru)
    todo = [old]
    assert migrate.migrate_pages(k, todo, _alloc_target(k)) == 0 and todo == []
    new = pte_pfn(k, mm, addr)
    assert new != old
    assert bytes(k.mem.read(new << 12, PAGE)) == bytes([0x43]) * PAGE
    assert rmap.folio_ref_count(k, new) == 1 and rmap.folio_mapcount(k, new) == 1
    assert rmap.folio_test(k, new, rmap.PG_anon_exclusive)
    vma = rmap.rmap_walk(k, new)
    assert [a for _v, a in vma] == [addr]
    assert swap.folio_test(k, new, swap.PG_lru) and swap.folio_lru_list(k, new) == lru_before
    assert new in swap.lru_pfns(k, 0, lru_before) and old not in swap.lru_pfns(k, 0, lru_before)
    assert k.node_vm_stat[0]["NR_ISOLATED_ANON"] == 0
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == anon_mapped
    # the old frame went back to the allocator (this CPU's pcp list, order 0)
    assert rmap.folio_ref_count(k, old) == 0 and old not in k.allocations
    assert ev(k, "PGMIGRATE_SUCCESS") == 1 and ev(k, "PGMIGRATE_FAIL") == 0
    assert memory.check_mm(k, mm) == [] and memory.check_mapcounts(k, [mm]) == []


def test_migrate_page_cache_folio_replaces_the_i_pages_entry(small) -> None:
    k, w, mm = small
    addr = w.mapping("p", "m").start + 2 * PAGE
    old = pte_pfn(k, mm, addr)
    mapping = k.kmem.get(k.pfn_to_page(old), "page", "mapping")
    index = k.kmem.get(k.pfn_to_page(old), "page", "__folio_index")
    xa = I.mapping_xa(k, mapping)
    from mmintro.kernel import page_writeback as pw
    from mmintro.kernel.xarray import PAGECACHE_TAG_DIRTY

    pw.folio_mark_dirty(k, old)
    assert xa.xa_get_mark(index, PAGECACHE_TAG_DIRTY)
    refs = rmap.folio_ref_count(k, old)  # the cache's and the PTE's
    assert migrate.folio_isolate_lru(k, old)
    assert migrate.migrate_pages(k, [old], _alloc_target(k)) == 0
    new = pte_pfn(k, mm, addr)
    assert xa.xa_load(index) == k.pfn_to_page(new)
    assert xa.xa_get_mark(index, PAGECACHE_TAG_DIRTY)  # the mark stays on the index
    assert swap.folio_test(k, new, swap.PG_dirty) and not swap.folio_test(k, old, swap.PG_dirty)
    assert rmap.folio_ref_count(k, new) == refs
    assert k.kmem.get(k.pfn_to_page(new), "page", "mapping") == mapping
    assert k.kmem.get(k.pfn_to_page(new), "page", "__folio_index") == index
    assert bytes(k.mem.read(new << 12, PAGE)) == I.file_bytes("/data/f", index * PAGE, PAGE)
    assert [a for _v, a in rmap.rmap_walk(k, new)] == [addr]
    assert k.kmem.get(k.pfn_to_page(old), "page", "mapping") == 0


def test_a_folio_with_an_extra_reference_is_not_migrated(small) -> None:
    k, w, mm = small
    addr = w.mapping("p", "a").start
    old = pte_pfn(k, mm, addr)
    rmap.folio_get(k, old)  # a GUP pin, say
    assert migrate.folio_isolate_lru(k, old)
    todo = [old]
    assert migrate.migrate_pages(k, todo, _alloc_target(k)) == 1
    assert todo == [old] and pte_pfn(k, mm, addr) == old
    assert ev(k, "PGMIGRATE_FAIL") == 1 and ev(k, "PGMIGRATE_SUCCESS") == 0
    migrate.putback_movable_pages(k, todo)
    assert swap.folio_test(k, old, swap.PG_lru) and k.node_vm_stat[0]["NR_ISOLATED_ANON"] == 0
    assert rmap.folio_mapcount(k, old) == 1 and rmap.folio_ref_count(k, old) == 2


def test_deferred_compaction_counts_as_mm_compaction_c() -> None:
    k = boot(MachineConfig(ram=256 << 20, cpus=1))
    z = k.zones[0][1]
    zc = C.zone_compact(k, z)
    assert (zc.considered, zc.defer_shift, zc.order_failed) == (0, 0, 0)
    C.defer_compaction(k, z, 9)  # order_failed stays 0: 9 is not below it
    assert (zc.considered, zc.defer_shift, zc.order_failed) == (0, 1, 0)
    C.compaction_defer_reset(k, z, 9, False)
    assert zc.order_failed == 10
    C.defer_compaction(k, z, 9)
    assert zc.order_failed == 9 and zc.defer_shift == 2
    assert not C.compaction_deferred(k, z, 8)  # below compact_order_failed: never deferred
    assert [C.compaction_deferred(k, z, 9) for _ in range(5)] == [True, True, True, False, False]
    assert zc.considered == 4
    for _ in range(10):
        C.defer_compaction(k, z, 9)
    assert zc.defer_shift == C.COMPACT_MAX_DEFER_SHIFT
    C.compaction_defer_reset(k, z, 9, True)
    assert (zc.considered, zc.defer_shift, zc.order_failed) == (0, 0, 10)


def test_fragmentation_index_follows_vmstat_c() -> None:
    k = boot(MachineConfig(ram=256 << 20, cpus=1))
    z = k.zones[0][1]
    z_nr = list(z.nr_free)
    # a block of the order is free: -1000; above MAX_PAGE_ORDER there is none
    assert C.fragmentation_index(z, 3) == -1000
    z.nr_free = [100, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0]  # 140 pages in 110 blocks
    try:
        assert C.fragmentation_index(z, 9) == 1000 - (1000 + 140 * 1000 // 512) // 110
        assert C.extfrag_for_order(z, 9) == 100 and C.extfrag_for_order(z, 2) == 100 * 100 // 140
        assert C.fragmentation_index(z, 2) == -1000
    finally:
        z.nr_free = z_nr


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory):
    from mmintro.snapshot.writer import save

    run = run_scenario(load_scenario(shipped_scenarios()["compaction"]))
    d = tmp_path_factory.mktemp("compaction")
    save(run.kernel, d / "compaction")
    return run, str(d / "compaction")


@pytest.mark.slow
def test_direct_compaction_moves_only_lru_folios_and_makes_the_block(scenario_run) -> None:
    run, _path = scenario_run
    k, w = run.kernel, run.workload
    thp = w.blocks("thp")[0]
    moved = k.migrations
    assert len(moved) >= 256
    # the block the allocation got is the one compaction emptied: every old frame is in it
    assert all(thp.pfn <= old < thp.pfn + 512 for old, _new in moved)
    for _old, new in moved:
        assert swap.folio_test(k, new, swap.PG_lru) and rmap.folio_mapcount(k, new) == 1
    # the direct compaction: one async run of DMA32 for order 9 that succeeded (kcompactd, if
    # something woke it earlier, would show as sync-light runs)
    direct = [e for e in k.compaction_log if e[3] == C.MIGRATE_ASYNC]
    assert direct == [(0, "DMA32", 9, C.MIGRATE_ASYNC, "COMPACT_SUCCESS", direct[0][5], direct[0][6], len(moved), 0)]
    assert direct[0][5] <= ev(k, "COMPACTMIGRATE_SCANNED") and direct[0][6] <= ev(k, "COMPACTFREE_SCANNED")
    z = w.zone("DMA32")
    zc = C.zone_compact(k, z)
    assert zc.order_failed == 10 and zc.defer_shift == 0  # compaction_defer_reset(zone, 9, true)


@pytest.mark.slow
def test_compact_memory_keeps_every_invariant(scenario_run) -> None:
    """vm.compact_memory over the scenario's zone: only LRU folios move, and afterwards every
    pfn is in exactly one state, the free counts equal the free lists, contents and mappings
    are intact."""
    run = run_scenario(load_scenario(shipped_scenarios()["compaction"]))
    k, w = run.kernel, run.workload
    mm = w.proc("app").mm
    z = w.zone("DMA32")
    table = w.mapping("app", "table")
    unmovable_before = {pfn for pfn in k.allocations if not swap.folio_test(k, pfn, swap.PG_lru)}
    before_blocks = sum(z.nr_free[9:])
    pa.drain_all_pages(k)
    before_free = z.free_pages  # migration frees one page for each it takes
    w.sysctl("vm.compact_memory", 1)
    assert sum(z.nr_free[9:]) > before_blocks + 10 and C.fragmentation_index(z, 9) == -1000
    assert len(k.migrations) > 20000
    # unmovable pages (slab, page tables, the pinned buffers, the kernel's) did not move
    assert unmovable_before <= set(k.allocations)
    pa.drain_all_pages(k)
    assert z.free_pages == before_free
    # free counts = the free lists; no pfn both free and allocated; no free page on an LRU
    free = set()
    for pfn, order in z.free_order.items():
        assert pa.list_pfns(z, pa.free_list_head(order, pa.get_pfnblock_migratetype(k, pfn))).count(pfn) == 1
        free.update(range(pfn, pfn + (1 << order)))
    assert sum(1 << o for o in z.free_order.values()) == z.free_pages == pa.zone_free_pages(z)
    used = set()
    for pfn, order in k.allocations.items():
        span = set(range(pfn, pfn + (1 << order)))
        assert not span & used and not span & free
        used |= span
    for lru in range(swap.NR_LRU_LISTS - 1):
        for pfn in swap.lru_pfns(k, 0, lru):
            assert pfn not in free and rmap.folio_ref_count(k, pfn) > 0
    # contents: the file's pages hold the file's bytes at their index; mappings are intact
    for i in range(0, table.length // PAGE, 97):
        pfn = pte_pfn(k, mm, table.start + i * PAGE)
        assert bytes(k.mem.read(pfn << 12, PAGE)) == I.file_bytes("/srv/data/table.db", i * PAGE, PAGE)
    from mmintro.workload import _mapping_errors

    errors, checked = _mapping_errors(w, "app")
    assert errors == 0 and checked > 20000
    assert memory.check_mm(k, mm) == []


@pytest.mark.slow
def test_drgn_sees_every_migrated_mapping_at_its_new_pfn(scenario_run) -> None:
    pytest.importorskip("drgn")
    from drgn.helpers.linux.mm import follow_phys, page_to_pfn, pfn_to_page
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    run, path = scenario_run
    k, w = run.kernel, run.workload
    prog = open_drgn(path + ".vmcore", path + ".vmlinux")
    task = find_task(prog, w.proc("app").pid)
    mm = task.mm
    new_of = dict(k.migrations)
    news = set(new_of.values())
    # every address of the process that maps a migrated folio, from the simulator's tables ...
    from mmintro.workload import _user_ptes

    where = {addr: pfn for addr, pfn in _user_ptes(w, "app").items() if pfn in news}
    assert len(where) == len(news)
    # ... is what drgn's page-table walk finds, and no address maps an old frame
    for addr, pfn in where.items():
        assert follow_phys(mm, addr).value_() >> 12 == pfn
    olds = set(new_of)
    assert not olds & {follow_phys(mm, a).value_() >> 12 for a in list(where)[::7]}
    # the old frames: the order-9 block the allocation got (a compound page in drgn's eyes)
    thp = w.blocks("thp")[0].pfn
    vmemmap = prog["vmemmap_base"].value_()
    size = prog.type("struct page").size
    for old in list(olds)[::16]:
        page = pfn_to_page(prog, old)
        head = page.compound_head.value_()
        head_pfn = (head - 1 - vmemmap) // size if head & 1 else old
        assert head_pfn == thp
        assert page_to_pfn(page).value_() == old
    # the zone's compaction fields as struct zone holds them
    zone = prog["node_data"][0].node_zones[1]
    zc = C.zone_compact(k, w.zone("DMA32"))
    assert zone.compact_order_failed.value_() == zc.order_failed == 10
    assert zone.compact_defer_shift.value_() == 0
    assert zone.compact_cached_free_pfn.value_() == zc.cached_free_pfn
    assert [zone.compact_cached_migrate_pfn[i].value_() for i in range(2)] == zc.cached_migrate_pfn
    # the vmstat events as /proc/vmstat prints them from the dump
    from mmintro.reader import open_snapshot
    from mmintro.views import vmstat as vmstat_view

    with open_snapshot(path) as snap:
        stats = vmstat_view.vmstat(snap)
    assert (stats["compact_stall"], stats["compact_success"], stats["compact_fail"]) == (1, 1, 0)
    assert stats["pgmigrate_success"] == len(news) and stats["compact_isolated"] == ev(k, "COMPACTISOLATED")
    assert stats["compact_migrate_scanned"] == ev(k, "COMPACTMIGRATE_SCANNED") > 0


@pytest.mark.slow
def test_drgn_finds_the_old_frames_free_after_compact_memory(tmp_path) -> None:
    """After vm.compact_memory (whole-zone sync compaction) every old frame is free: drgn
    finds it in a block of a zone free list or on a pcp list."""
    pytest.importorskip("drgn")
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.percpu import per_cpu_ptr
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.snapshot.writer import save

    k = boot(MachineConfig(ram=256 << 20, cpus=2, seed=9))
    w = Workload(k)
    w.alloc("fill", 3, "GFP_HIGHUSER_MOVABLE", count=4000)
    w.free("fill", every=2)
    w.drain()
    w.spawn("p")
    w.mmap("p", "a", 16 << 20)
    w.touch("p", "a", write=True, populate=True)
    mm_sim = w.proc("p").mm
    a = w.mapping("p", "a").start
    for i in range(0, 4096, 31):
        k.mem.write(pte_pfn(k, mm_sim, a + i * PAGE) << 12, i.to_bytes(4, "little") * (PAGE // 4))
    w.free("fill")
    w.sysctl("vm.compact_memory", 1)
    assert len(k.migrations) > 100
    save(k, tmp_path / "cm")
    prog = open_drgn(str(tmp_path / "cm.vmcore"), str(tmp_path / "cm.vmlinux"))
    vmemmap = prog["vmemmap_base"].value_()
    size = prog.type("struct page").size
    free = set()
    for zone in prog["node_data"][0].node_zones:
        if not zone.present_pages.value_():
            continue
        for order in range(11):
            for mt in range(len(zone.free_area[order].free_list)):
                for page in list_for_each_entry(
                    "struct page", zone.free_area[order].free_list[mt].address_of_(), "buddy_list"
                ):
                    pfn = (page.value_() - vmemmap) // size
                    free.update(range(pfn, pfn + (1 << page.private.value_())))
        for cpu in range(2):
            pcp = per_cpu_ptr(zone.per_cpu_pageset, cpu)
            for i in range(len(pcp.lists)):
                for page in list_for_each_entry("struct page", pcp.lists[i].address_of_(), "pcp_list"):
                    pfn = (page.value_() - vmemmap) // size
                    free.update(range(pfn, pfn + (1 << (i // 3 if i < 12 else 9))))
    moved = dict(k.migrations)
    news = set(moved.values())
    for old in moved:
        assert old in free or old in news  # an old frame is free, unless a later move reused it
    mm = find_task(prog, w.proc("p").pid).mm
    for i in range(0, 4096, 31):
        phys = follow_phys(mm, a + i * PAGE).value_()
        assert prog.read(phys, 4, True) == i.to_bytes(4, "little")


def fragmented_small(seed: int = 11, cmdline: str = ""):
    """A 256 MiB machine whose DMA32 has free memory only in blocks below order 9: order-3
    fill blocks, every other one freed, a process's anonymous pages in those holes, the rest
    of the fill freed, and every free block of order >= 9 taken by a pinned buffer."""
    k = boot(MachineConfig(ram=256 << 20, cpus=2, seed=seed, cmdline=cmdline))
    w = Workload(k)
    w.alloc("fill", 3, "GFP_HIGHUSER_MOVABLE", until="exhausted")
    w.free("fill", every=2)
    w.drain()
    z = w.zone("DMA32")
    w.spawn("p")
    w.mmap("p", "a", ((z.free_pages - z.watermark[2] - 1500) * PAGE) & ~((1 << 20) - 1))
    w.touch("p", "a", write=True, populate=True)
    w.free("fill")
    w.drain()
    w.alloc("pinned", 9, "__GFP_MOVABLE|__GFP_HIGHMEM|__GFP_NOWARN", until="exhausted")
    assert z.nr_free[9] == z.nr_free[10] == 0 and z.free_pages > z.managed // 4
    return k, w, z


def test_kcompactd_woken_for_order_9_compacts_and_resets_its_request() -> None:
    k, w, z = fragmented_small()
    assert C.fragmentation_index(z, 9) > 500
    assert C.wakeup_kcompactd(k, 0, 9, z.idx)
    assert ev(k, "KCOMPACTD_WAKE") == 1 and ev(k, "COMPACTSTALL") == 0
    assert ev(k, "KCOMPACTD_MIGRATE_SCANNED") == ev(k, "COMPACTMIGRATE_SCANNED") > 0
    assert ev(k, "KCOMPACTD_FREE_SCANNED") == ev(k, "COMPACTFREE_SCANNED") > 0
    assert sum(z.nr_free[9:]) >= 1 and C.fragmentation_index(z, 9) == -1000
    assert k.compaction_log[-1][2:5] == (9, C.MIGRATE_SYNC_LIGHT, "COMPACT_SUCCESS")
    nc = C.node_compact(k, 0)
    assert (nc.max_order, nc.highest_zoneidx) == (0, 1)  # nr_zones - 1: DMA32 is the last populated
    # and what it wrote into pglist_data
    k.sync()
    assert k.kmem.get(k.pgdat[0], "pglist_data", "kcompactd_max_order") == 0
    assert k.kmem.get(k.pgdat[0], "pglist_data", "kcompactd_highest_zoneidx") == 1
    # nothing to do for order 0, and no second run when an order-9 block is free
    assert not C.wakeup_kcompactd(k, 0, 0, z.idx)
    assert not C.wakeup_kcompactd(k, 0, 9, z.idx) and ev(k, "KCOMPACTD_WAKE") == 1


def test_direct_compaction_skipped_without_gfp_io_and_deferred_after_failure() -> None:
    k, w, z = fragmented_small(seed=12)
    # no __GFP_IO: gfp_compaction_allowed() is false, the request fails for fragmentation
    f = w.expect_alloc(
        False, 9, "__GFP_DIRECT_RECLAIM|__GFP_MOVABLE|__GFP_NOWARN", reason="fragmentation", zone="DMA32"
    )
    assert f.order == 9 and ev(k, "COMPACTSTALL") == 0
    # the process's pages pinned (an extra reference each): compaction scans, moves nothing,
    # fails; the sync pass defers the zone
    mm = w.proc("p").mm
    a = w.mapping("p", "a")
    pinned = [pte_pfn(k, mm, a.start + i * PAGE) for i in range(a.length // PAGE)]
    for pfn in pinned:
        rmap.folio_get(k, pfn)
    assert k.alloc_pages("GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_NOWARN", 9) is None
    assert ev(k, "COMPACTSTALL") == 2 and ev(k, "COMPACTFAIL") == 2 and ev(k, "PGMIGRATE_SUCCESS") == 0
    zc = C.zone_compact(k, z)
    assert zc.defer_shift >= 1 and zc.order_failed <= 9
    assert zc.defer_shift == 1 and zc.considered == 0
    # the next request: its async attempt finds DMA32 deferred (1 of 2 attempts skipped) --
    # COMPACT_DEFERRED still counts a stall --, its sync-light attempt is the 2nd and runs
    runs = [e for e in k.compaction_log if e[1] == "DMA32"]
    assert [e[3] for e in runs] == [C.MIGRATE_ASYNC, C.MIGRATE_SYNC_LIGHT]
    stalls = ev(k, "COMPACTSTALL")
    assert k.alloc_pages("GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_NOWARN", 9) is None
    assert ev(k, "COMPACTSTALL") == stalls + 2
    runs = [e for e in k.compaction_log if e[1] == "DMA32"]
    assert [e[3] for e in runs] == [C.MIGRATE_ASYNC, C.MIGRATE_SYNC_LIGHT, C.MIGRATE_SYNC_LIGHT]
    assert zc.defer_shift == 2 and zc.considered == 0
    for pfn in pinned:
        rmap.folio_put(k, pfn)


def test_extfrag_view_of_the_dump_before_and_after_compaction(tmp_path) -> None:
    """The debugfs extfrag_index a dump gives (mmintro.views.fragmentation, from the zone's
    free_area as written) equals the kernel-side fragmentation_index the compaction code
    decided with, before and after kcompactd."""
    from mmintro.reader import open_snapshot
    from mmintro.snapshot.writer import save
    from mmintro.views import fragmentation as frag_view

    k, w, z = fragmented_small(seed=13)
    rows = {}
    for when in ("before", "after"):
        if when == "after":
            assert C.wakeup_kcompactd(k, 0, 9, z.idx)
        want = [C.fragmentation_index(z, o) for o in range(11)]
        save(k, tmp_path / when)
        with open_snapshot(str(tmp_path / when)) as prog:
            row = next(r for r in frag_view.fragmentation(prog) if r.zone == "DMA32")
        assert row.extfrag_index == want
        assert row.unusable_index[9] // 10 == C.extfrag_for_order(z, 9)  # thousandths vs percent
        rows[when] = row
    assert rows["before"].extfrag_index[9] > 500 and rows["after"].extfrag_index[9] == -1000
    assert rows["after"].unusable_index[9] < rows["before"].unusable_index[9]


@pytest.mark.slow
def test_proactive_compaction_lowers_the_fragmentation_score() -> None:
    k, w, z = fragmented_small(seed=14)
    before = C.fragmentation_score_node(k, 0)
    assert before > C.fragmentation_score_wmark(k, False)
    w.sysctl("vm.compaction_proactiveness", 90)  # low mark 10, high mark 20
    after = C.fragmentation_score_node(k, 0)
    assert after < before
    assert ev(k, "KCOMPACTD_MIGRATE_SCANNED") > 0 and ev(k, "PGMIGRATE_SUCCESS") > 0
    assert all(e[3] == C.MIGRATE_SYNC_LIGHT and e[2] == -1 for e in k.compaction_log)
    assert not C.node_compact(k, 0).proactive_compact_trigger


@pytest.mark.slow
def test_compaction_view_reads_the_books_back(scenario_run) -> None:
    """`mmintro compaction` on the scenario's dump: each zone's fields, the skip hints counted
    from the pageblock bitmaps, kcompactd's request and the events are what the simulator
    kept."""
    from mmintro.reader import open_snapshot
    from mmintro.views import compaction as view

    run, path = scenario_run
    k = run.kernel
    with open_snapshot(path) as prog:
        nodes, zones, events = view.compaction(prog)
    for row in zones:
        z = next(zz for zz in k.zones[row.node] if zz.name == row.zone)
        zc = C.zone_compact(k, z)
        assert (
            list(row.cached_migrate_pfn),
            row.cached_free_pfn,
            row.considered,
            row.defer_shift,
            row.order_failed,
            row.blockskip_flush,
        ) == (
            zc.cached_migrate_pfn,
            zc.cached_free_pfn,
            zc.considered,
            zc.defer_shift,
            zc.order_failed,
            zc.blockskip_flush,
        )
        blocks = range(z.start_pfn >> 9, (z.end_pfn + 511) >> 9)
        assert row.skip_blocks == sum(1 for b in blocks if k.pageblock_flags[b] & C.PB_COMPACT_SKIP)
        assert row.score == C.fragmentation_score_zone(z)
    assert any(r.skip_blocks for r in zones)
    assert nodes[0].score == C.fragmentation_score_node(k, 0)
    nc = C.node_compact(k, 0)
    assert (nodes[0].kcompactd_max_order, nodes[0].kcompactd_highest_zoneidx, nodes[0].kcompactd) == (
        nc.max_order,
        nc.highest_zoneidx,
        None,
    )
    assert events["compact_stall"] == 1 and events["pgmigrate_success"] == len(k.migrations)


def test_compaction_view_on_the_real_dump_matches_a_booted_twin(real_dump) -> None:
    """A real 6.18 kernel that never compacted: zeroed books, kcompactd0 running with
    kcompactd_highest_zoneidx = nr_zones - 1 -- as the simulator boots the same machine."""
    from mmintro.reader.dump import open_dump
    from mmintro.views import compaction as view

    with open_dump(str(real_dump.path("elf")), real_dump.vmlinuz) as prog:
        nodes, zones, events = view.compaction(prog)
    assert nodes[0].kcompactd is not None and nodes[0].kcompactd.endswith("kcompactd0")
    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    nc = C.node_compact(k, 0)
    assert (nodes[0].kcompactd_max_order, nodes[0].kcompactd_highest_zoneidx) == (nc.max_order, nc.highest_zoneidx)
    assert [r.zone for r in zones] == [z.name for z in k.zones[0] if z.populated]
    for r in zones:
        assert (r.considered, r.defer_shift, r.order_failed, r.blockskip_flush) == (0, 0, 0, False)
    assert events["compact_stall"] == 0 and events["compact_daemon_wake"] == 0


@pytest.mark.slow
def test_compact_memory_at_boot_leaves_the_books_a_real_kernel_leaves() -> None:
    """sysctl.vm.compact_memory=1 on the command line (do_sysctl_args -> compact_nodes at
    boot) on a real 6.18 guest and on the simulator's twin: every zone's scanners met and were
    reset (compact_cached_migrate_pfn = zone start, compact_cached_free_pfn = the last
    pageblock), no deferral, no blockskip flush, skip hints set, migrate-scanned pages
    counted, no stall, and kcompactd never woken."""
    from mmintro.reader.dump import open_dump
    from mmintro.realkernel.qemu import GuestConfig, cached_reference_dump
    from mmintro.views import compaction as view

    ref = cached_reference_dump(GuestConfig(append=("sysctl.vm.compact_memory=1",), formats=("elf",)), "real-compact")
    with open_dump(str(ref.path("elf")), ref.vmlinuz) as prog:
        _nodes, real_zones, real_events = view.compaction(prog)
    k = boot(MachineConfig(ram=1 << 30, cpus=2, cmdline="sysctl.vm.compact_memory=1"))
    sim = {z.name: (z, C.zone_compact(k, z)) for z in k.zones[0] if z.populated}
    assert [r.zone for r in real_zones] == list(sim)
    for r in real_zones:
        z, zc = sim[r.zone]
        assert (r.start_pfn, r.end_pfn) == (z.start_pfn, z.end_pfn)
        want = ((z.start_pfn, z.start_pfn), C.pageblock_start_pfn(z.end_pfn - 1))
        assert (r.cached_migrate_pfn, r.cached_free_pfn) == want == (tuple(zc.cached_migrate_pfn), zc.cached_free_pfn)
        assert (
            (r.considered, r.defer_shift, r.order_failed, r.blockskip_flush)
            == (zc.considered, zc.defer_shift, zc.order_failed, zc.blockskip_flush)
            == (0, 0, 0, False)
        )
        blocks = range(z.start_pfn >> 9, (z.end_pfn + 511) >> 9)
        assert r.skip_blocks > 0 and sum(1 for b in blocks if k.pageblock_flags[b] & C.PB_COMPACT_SKIP) > 0
    assert real_events["compact_migrate_scanned"] > 0 and ev(k, "COMPACTMIGRATE_SCANNED") > 0
    assert real_events["compact_stall"] == ev(k, "COMPACTSTALL") == 0
    assert real_events["compact_daemon_wake"] == ev(k, "KCOMPACTD_WAKE") == 0


# -- seeded random runs mixing compaction with the other steps ------------------------------
def check_compaction_invariants(k, w) -> None:
    """Every pfn in at most one state (a free buddy block, a pcp list, an allocated block);
    NR_FREE_PAGES = the buddy lists; nothing on an LRU is free; no folio left isolated; the
    LRU counters equal the lists; every process's mappings consistent (rss and page-table
    counts, map counts, no PTE onto a free page, migrated pages found by rmap where mapped)."""
    from mmintro.workload import _mapping_errors

    seen: dict[int, str] = {}

    def claim(lo: int, n: int, what: str) -> None:
        for p in range(lo, lo + n):
            assert p not in seen, f"pfn {p:#x} is {seen[p]} and {what}"
            seen[p] = what

    for zs in k.zones:
        for z in zs:
            if not z.populated:
                continue
            for pfn, order in z.free_order.items():
                claim(pfn, 1 << order, "buddy")
            assert sum(1 << o for o in z.free_order.values()) == z.free_pages
            assert [sum(1 for o in z.free_order.values() if o == i) for i in range(11)] == z.nr_free
            for pcp in z.pcp:
                for i, head in enumerate(pcp.heads):
                    for pfn in pa.list_pfns(z, head):
                        claim(pfn, 1 << pa.pindex_to_order(i), "pcp")
    free = set(seen)
    for pfn, order in k.allocations.items():
        claim(pfn, 1 << order, "allocated")
    for nid in range(k.config.nodes):
        stat = k.node_vm_stat[nid]
        assert stat.get("NR_ISOLATED_ANON", 0) == stat.get("NR_ISOLATED_FILE", 0) == 0
        for lru in range(swap.NR_LRU_LISTS - 1):
            pfns = swap.lru_pfns(k, nid, lru)
            assert not free & set(pfns)
            assert stat.get(swap.NODE_LRU_ITEM[lru], 0) == sum(swap.folio_nr_pages(k, p) for p in pfns)
    mms = []
    for name, p in w.procs.items():
        if getattr(p, "exited", False) or not p.mm:
            continue
        mms.append(p.mm)
        assert memory.check_mm(k, p.mm) == [], name
        assert _mapping_errors(w, name)[0] == 0, name
    assert memory.check_mapcounts(k, mms) == []


def random_run(seed: int, steps: int = 30):
    import random

    rng = random.Random(seed)
    k, w, _z = fragmented_small(seed)  # starts fragmented, with process "p" in the holes
    w.create_file("f", "/data/f", 8 << 20)
    live: list[str] = ["p"]
    n = 0
    skipped = []
    for step in range(steps):
        op = rng.choice(
            ["spawn", "anon", "file", "fork", "munmap", "exit", "blocks", "free", "order9", "compact", "kcompactd"]
        )
        try:
            if op == "spawn" or not live:
                n += 1
                w.spawn(f"p{n}")
                live.append(f"p{n}")
            elif op == "anon":
                p = rng.choice(live)
                tag = f"a{step}"
                w.mmap(p, tag, rng.choice([1, 2, 4, 8]) << 20)
                w.touch(p, tag, write=True, fraction=rng.choice([0.3, 1.0]))
            elif op == "file":
                p = rng.choice(live)
                tag = f"m{step}"
                w.mmap(p, tag, 4 << 20, prot="r", kind="private", file="f", offset=rng.randrange(4) << 20)
                w.touch(p, tag, populate=True)
            elif op == "fork":
                n += 1
                w.fork(f"p{n}", rng.choice(live))
                live.append(f"p{n}")
            elif op == "munmap":
                p = rng.choice(live)
                tags = [t for t, m in w.mappings[p].items() if t not in ("heap", "stack") and m.length > 1 << 20]
                if tags:
                    w.munmap(p, rng.choice(tags), start=1 << 20, size=1 << 19)
            elif op == "exit" and len(live) > 1:
                p = live.pop(rng.randrange(1, len(live)))  # not the first: it is init (pid 1)
                w.exit(p)
            elif op == "blocks":
                w.alloc(f"b{step}", rng.choice([0, 3]), "GFP_HIGHUSER_MOVABLE", count=rng.choice([200, 1000]))
            elif op == "free":
                tags = [t for t, bl in w.tags.items() if bl and t.startswith("b")]
                if tags:
                    w.free(rng.choice(tags), every=2)
            elif op == "order9":
                w.try_alloc(9, "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_NOWARN")
            elif op == "compact":
                w.sysctl("vm.compact_memory", 1)
            elif op == "kcompactd":
                C.wakeup_kcompactd(k, 0, rng.choice([3, 9]), 1)
        except Exception as e:  # out of memory for a fault or a block: the kernel would OOM
            if not any(w_ in str(e) for w_ in ("out of memory", "failed", "refused")):
                raise
            skipped.append((step, op, str(e)))
        if step % 10 == 9:
            check_compaction_invariants(k, w)
    check_compaction_invariants(k, w)
    k.__dict__["random_run_skipped"] = skipped
    return k, w


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_random_runs_keep_the_invariants(seed: int) -> None:
    k, w = random_run(seed)
    assert ev(k, "COMPACTMIGRATE_SCANNED") > 0 and len(k.migrations) > 100
    assert w.procs


def test_direct_compaction_is_a_memory_stall_of_the_allocating_task() -> None:
    """__alloc_pages_direct_compact's psi_memstall_enter/leave: with psi=1, an order-9 request
    that compacts, made by a process, adds to /proc/pressure/memory's some and full totals by
    the modelled duration of the work (COMPACT_SCAN_NS per pfn scanned, MIGRATE_NS per page
    migrated)."""
    from mmintro.kernel import psi

    k, w, z = fragmented_small(seed=15, cmdline="psi=1")
    before = psi.pressure(k)
    task = w.proc("p").task
    with psi.running(k, task):
        psi.advance(k, 20_000_000)  # the task runs 20 ms first: PSI weighs CPUs by non-idle jiffies
        pfn = k.alloc_pages("GFP_HIGHUSER_MOVABLE|__GFP_COMP", 9)
    assert pfn is not None and ev(k, "COMPACTSTALL") == 1
    after = psi.pressure(k)
    work_us = (
        (ev(k, "COMPACTMIGRATE_SCANNED") + ev(k, "COMPACTFREE_SCANNED")) * C.COMPACT_SCAN_NS
        + ev(k, "PGMIGRATE_SUCCESS") * C.MIGRATE_NS
    ) // 1000
    assert work_us > 0
    for kind in ("some", "full"):
        assert after[kind]["total"] - before[kind]["total"] == pytest.approx(work_us, abs=2)


def test_reset_isolation_suitable_clears_the_hints_after_a_full_pass() -> None:
    """A direct compaction whose scanners met sets compact_blockskip_flush; kswapd going to
    sleep (reset_isolation_suitable) then clears the skip hint of every block that holds an
    LRU page or a free page, once, and points the cached scanners at the first such blocks."""
    k, w, z = fragmented_small(seed=17)
    mm = w.proc("p").mm
    a = w.mapping("p", "a")
    pinned = [pte_pfn(k, mm, a.start + i * PAGE) for i in range(a.length // PAGE)]
    for pfn in pinned:
        rmap.folio_get(k, pfn)  # nothing can move: the pass completes without success
    assert k.alloc_pages("GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_NOWARN", 9) is None
    zc = C.zone_compact(k, z)
    assert zc.blockskip_flush
    blocks = range(z.start_pfn >> 9, (z.end_pfn + 511) >> 9)
    skipped = [b for b in blocks if k.pageblock_flags[b] & C.PB_COMPACT_SKIP]
    assert skipped
    C.reset_isolation_suitable(k, 0)
    assert not zc.blockskip_flush
    left = [b for b in blocks if k.pageblock_flags[b] & C.PB_COMPACT_SKIP]
    assert len(left) < len(skipped)
    for b in set(skipped) - set(left):  # a cleared block holds an LRU page or a free block
        lo = b << 9
        assert any(
            swap.folio_test(k, p, swap.PG_lru)
            for p in range(lo, lo + 512)
            if p not in z.free_order and rmap.folio_ref_count(k, p) > 0
        ) or any(lo <= p < lo + 512 for p in z.free_order)
    assert zc.init_migrate_pfn == zc.cached_migrate_pfn[0] == zc.cached_migrate_pfn[1] >= z.start_pfn
    left_again = list(left)
    C.reset_isolation_suitable(k, 0)  # compact_blockskip_flush is clear now: nothing changes
    assert [b for b in blocks if k.pageblock_flags[b] & C.PB_COMPACT_SKIP] == left_again
    for pfn in pinned:
        rmap.folio_put(k, pfn)
