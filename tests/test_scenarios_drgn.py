"""Every crosscheck row against real drgn on every shipped scenario's snapshot and on a
4-node machine after a workload (the page-allocator issue's acceptance: "all of the above on
the shipped scenarios and on a 4-node machine"), and what each process scenario claims in its
header, checked through drgn's own helpers (issue 5: fork-cow, page-cache, dirty-throttle,
thp-vs-hugetlb)."""

from __future__ import annotations

import random
import time

import pytest
from conftest import on_scenario

drgn = pytest.importorskip("drgn")

from test_drgn_crosscheck import KNOWN_GAPS

from mmintro.crosscheck import open_drgn, run_crosscheck
from mmintro.kernel import gfp as G
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save
from mmintro.workload import load_scenario, run_scenario, shipped_scenarios

SCENARIOS = [n for n in shipped_scenarios() if n != "boot"]
# Rows that disagree with drgn on a scenario for a reason recorded here (strict: a row that
# starts to agree must leave this table).
SCENARIO_GAPS: dict[tuple[str, str], str] = {}
LOOSE_GAPS: set[str] = set()  # gaps that may or may not show on a given scenario


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (snapshot path, ScenarioRun, seconds for boot + run), each scenario run once."""
    cache: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in cache:
            t = time.perf_counter()
            run = run_scenario(load_scenario(shipped_scenarios()[name]))
            took = time.perf_counter() - t
            path = tmp_path_factory.mktemp(name) / name
            save(run.kernel, path)
            cache[name] = (str(path), run, took)
        return cache[name]

    return get


def _check_all(path: str, scenario: str = "") -> None:
    results = run_crosscheck(path)
    assert len(results) >= 15
    gaps = {r for (s, r) in SCENARIO_GAPS if s == scenario}
    bad = [r for r in results if not r.ok and r.name not in KNOWN_GAPS and r.name not in gaps]
    assert not bad, "\n".join(f"{r.name}: {r.detail}" for r in bad)
    fixed = [r.name for r in results if r.ok and r.name in gaps - LOOSE_GAPS]
    assert not fixed, f"rows now agree on {scenario}: remove them from SCENARIO_GAPS: {fixed}"


@pytest.mark.slow
@pytest.mark.parametrize("name", on_scenario(SCENARIOS))
def test_every_row_agrees_on_a_shipped_scenario(name: str, scenario_snapshot) -> None:
    path = scenario_snapshot(name)[0]  # simulated once for every slow per-scenario test
    _check_all(path, name)
    # and mmintro verify finds nothing the kernel would not allow (issue 14)
    from cli_helpers import run

    r = run("verify", path)
    assert r.stdout.startswith("no findings"), r.stdout


@pytest.mark.slow  # a 4-node boot and workload, every row: ~9 s
def test_every_row_agrees_on_a_four_node_machine(tmp_path) -> None:
    k = boot(MachineConfig(ram=4 << 30, nodes=4, cpus=4, seed=3))
    rng = random.Random(3)
    live = []
    gfps = [
        G.GFP_KERNEL,
        G.GFP_KERNEL | G.__GFP_COMP,
        G.GFP_HIGHUSER_MOVABLE,
        G.GFP_ATOMIC,
        G.GFP_KERNEL | G.__GFP_RECLAIMABLE,
    ]
    for _i in range(3000):
        k.on_cpu(rng.randrange(4))
        if live and rng.random() < 0.35:
            pfn, order = live.pop(rng.randrange(len(live)))
            k.free_pages(pfn, order)
            continue
        order = rng.choice([0, 0, 0, 1, 2, 3, 9])
        pfn = k.alloc_pages(rng.choice(gfps), order, nid=rng.choice([None, 0, 1, 2, 3]))
        if pfn is not None:
            live.append((pfn, order))
    other = sum(z.numa_events[5] for zs in k.zones for z in zs)  # NUMA_OTHER: a remote node served
    save(k, tmp_path / "numa4")
    _check_all(str(tmp_path / "numa4"))
    assert len(live) > 500 and other > 0


# -- what the process scenarios claim, through drgn's helpers ---------------------------------
def _drgn(path: str):
    return open_drgn(path + ".vmcore", path + ".vmlinux")


def _skip_unless_shipped(name: str) -> None:
    if name not in shipped_scenarios():
        pytest.skip(f"{name} is not shipped yet")


def _mapped_pages(d, pid: int, start: int, end: int) -> dict[int, int]:
    """address -> struct page * (drgn's follow_page) of every mapped 4K page in [start, end)."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_page
    from drgn.helpers.linux.pid import find_task

    mm = find_task(d, pid).mm
    out = {}
    for a in range(start, end, 4096):
        try:
            out[a] = follow_page(mm, a).value_()
        except FaultError:
            pass
    return out


def _vma_of(run, proc: str, tag: str) -> tuple[int, int, int]:
    m = run.workload.mappings[proc][tag]
    return run.workload.procs[proc].pid, m.start, m.start + m.length


def test_page_cache_read_write_and_mmap_share_one_set_of_folios(built) -> None:
    """drgn: every page the two processes map is the folio xa_load finds at its index in the
    file's i_pages; 2048 folios cached, 512 of them dirty (256 written by write(2), 256 by
    the shared mapping), none under writeback, no anonymous pages in either process."""
    _skip_unless_shipped("page-cache")
    from drgn.helpers.linux.fs import address_space_for_each_page
    from drgn.helpers.linux.mm import PageDirty, PageWriteback, task_rss
    from drgn.helpers.linux.pid import find_task

    path, run, _ = built("page-cache")
    d = _drgn(path)
    f = run.workload.files["db"]
    mapping = drgn.Object(d, "struct file *", f).f_mapping
    cache = {i: pg.value_() for i, pg in address_space_for_each_page(mapping)}
    assert sorted(cache) == list(range(2048))
    pages = [drgn.Object(d, "struct page *", v) for v in cache.values()]
    assert sum(PageDirty(p) for p in pages) == 512 and not any(PageWriteback(p) for p in pages)
    for proc, want in (("reader", 2048), ("indexer", 1280)):
        pid, start, end = _vma_of(run, proc, "table")
        mapped = _mapped_pages(d, pid, start, end)
        assert len(mapped) == want
        assert all(cache[(a - start) >> 12] == pg for a, pg in mapped.items())
        r = task_rss(find_task(d, pid))
        assert (r.file, r.anon) == (want, 0)
    from mmintro.views import smaps as smaps_view
    from mmintro.workload import _pss

    with open_snapshot(path) as prog:
        for proc in ("reader", "indexer"):
            rollup = smaps_view.smaps_rollup(prog, run.workload.procs[proc].pid)[2]
            assert _pss(run.workload, proc) == rollup.pss >> 12 >> 10, proc


@pytest.mark.slow  # a scenario run and drgn over it (~5 s)
def test_dirty_throttle_leaves_dirty_and_writeback_folios(built) -> None:
    """drgn: of the log's 6144 cached folios, at most bg_thresh (2048) are still dirty after the
    background flush and some are under writeback (half the flusher's I/O in flight); the
    vmstat counters are those page counts; the throttle events carried the kernel's limits."""
    _skip_unless_shipped("dirty-throttle")
    from drgn.helpers.linux.fs import address_space_for_each_page
    from drgn.helpers.linux.mm import PageDirty, PageWriteback
    from drgn.helpers.linux.vmstat import global_node_page_state

    path, run, _ = built("dirty-throttle")
    d = _drgn(path)
    mapping = drgn.Object(d, "struct file *", run.workload.files["log"]).f_mapping
    pages = [pg for _i, pg in address_space_for_each_page(mapping)]
    assert len(pages) == 6144
    dirty, wb = sum(PageDirty(p) for p in pages), sum(PageWriteback(p) for p in pages)
    assert dirty <= 2048 and wb > 0 and dirty + wb < 6144
    assert global_node_page_state(d.constant("NR_FILE_DIRTY")) == dirty
    assert global_node_page_state(d.constant("NR_WRITEBACK")) == wb
    log = run.kernel.dirty_throttle_log
    assert log and all(ev.nr_dirty > (ev.thresh + ev.bg_thresh) // 2 for ev in log)  # above the freerun ceiling
    assert {(ev.thresh, ev.bg_thresh) for ev in log} == {(4096, 2048)}
    logger = run.workload.procs["logger"]
    assert {ev.pid for ev in log} == {logger.pid}
    from drgn.helpers.linux.pid import find_task

    assert find_task(d, logger.pid).ioac.write_bytes.value_() == 24 << 20  # task_io_account_write


def test_thp_and_hugetlb_pages_as_drgn_sees_them(built) -> None:
    """drgn: the madvised region's PMD-mapped pages are order-9 compound pages, the plain
    region's are order 0; hugetlb_total_usage is the 16-page pool with 8 free; java's RSS is
    anonymous (THP pages count in MM_ANONPAGES), postgres' is 0 (hugetlb is not RSS)."""
    _skip_unless_shipped("thp-vs-hugetlb")
    from drgn.helpers.linux.hugetlb import hugetlb_total_usage
    from drgn.helpers.linux.mm import compound_order, task_rss
    from drgn.helpers.linux.pid import find_task

    path, run, _ = built("thp-vs-hugetlb")
    d = _drgn(path)
    pid, start, end = _vma_of(run, "java", "young-gen")
    mapped = _mapped_pages(d, pid, start, end)
    assert len(mapped) == (end - start) >> 12
    pmd = 2 << 20
    heads = [a for a in range(-(-start // pmd) * pmd, end - pmd + 1, pmd)]  # the 2M-aligned stretches
    assert len(heads) >= 7
    assert {compound_order(drgn.Object(d, "struct page *", mapped[h])).value_() for h in heads} == {9}
    pid2, s2, e2 = _vma_of(run, "java", "metaspace")
    small = _mapped_pages(d, pid2, s2, e2)
    assert len(small) == 2048
    assert {compound_order(drgn.Object(d, "struct page *", pg)).value_() for pg in small.values()} == {0}
    u = hugetlb_total_usage(d)
    assert (u.pages, u.free_pages) == (16 * 512, 8 * 512)
    assert task_rss(find_task(d, pid)).anon == 6144
    pg_pid = run.workload.procs["postgres"].pid
    assert task_rss(find_task(d, pg_pid)).total == 0
    # the workload's pss() (THP PMD leaves included, hugetlb left out) = smaps_rollup's Pss
    from mmintro.views import smaps as smaps_view
    from mmintro.workload import _pss

    with open_snapshot(path) as prog:
        for proc in ("java", "postgres"):
            rollup = smaps_view.smaps_rollup(prog, run.workload.procs[proc].pid)[2]
            assert _pss(run.workload, proc) == rollup.pss >> 12 >> 10, proc


@pytest.mark.slow  # a scenario run and drgn over it (~5 s)
def test_fork_cow_rss_pss_and_shared_pages(built) -> None:
    """drgn: the workers' untouched heap pages are the parent's (the same struct page, mapped
    three times: _mapcount 2), their written pages are private copies (_mapcount 0); every
    process' RSS is the whole heap; smaps_rollup's Pss equals PAGE_SIZE / mappers summed over
    the heap's pages as drgn reads them."""
    _skip_unless_shipped("fork-cow")
    from drgn.helpers.linux.mm import task_rss
    from drgn.helpers.linux.pid import find_task

    path, run, _ = built("fork-cow")
    d = _drgn(path)
    maps = {p: _mapped_pages(d, *_vma_of(run, p, "heap")) for p in ("postgres", "worker1", "worker2")}
    n = len(maps["postgres"])
    assert n == 8490 and all(len(m) == n for m in maps.values())
    w1_written = {a for a in maps["worker1"] if a < min(maps["worker1"]) + (8 << 20)}
    for a, pg in maps["worker1"].items():
        assert (pg == maps["postgres"][a]) == (a not in w1_written)
    mappers: dict[int, int] = {}
    for m in maps.values():
        for pg in m.values():
            mappers[pg] = mappers.get(pg, 0) + 1
    for pg, k in mappers.items():
        assert drgn.Object(d, "struct page *", pg)._mapcount.counter.value_() + 1 == k
    for proc in maps:
        assert task_rss(find_task(d, run.workload.procs[proc].pid)).anon == n
    # the heap VMA's Pss in smaps: 6.18 smaps_page_accumulate adds (PAGE_SIZE << PSS_SHIFT) / mapcount
    # per page (PAGE_SIZE << PSS_SHIFT when mapped once); PSS_SHIFT is 12
    from mmintro.views import smaps as smaps_view

    with open_snapshot(path) as prog:
        for proc, m in maps.items():
            want = sum((4096 << 12) // mappers[pg] for pg in m.values())
            heap = run.workload.mappings[proc]["heap"].start
            v = next(v for v in smaps_view.smaps(prog, run.workload.procs[proc].pid).vmas if v.maps.start == heap)
            assert (v.stats.resident, v.stats.pss) == (n * 4096, want), proc
            # the workload's pss() expectation (read from the simulator's books) = smaps_rollup's Pss
            from mmintro.workload import _pss

            rollup = smaps_view.smaps_rollup(prog, run.workload.procs[proc].pid)[2]
            assert _pss(run.workload, proc) == rollup.pss >> 12 >> 10, proc
