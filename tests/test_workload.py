"""Workloads and scenario files: the shipped scenarios do what they claim (checked in the
kernel's books and, through real drgn, in the saved snapshot), runs are deterministic by
seed, malformed files fail in one line naming file, line and step, and an expectation that
cannot hold fails the scenario."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mmintro.cli.main import cli
from mmintro.cli.simulate import SCENARIOS
from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save, snapshot_paths
from mmintro.workload import (
    ExpectationFailed,
    ScenarioError,
    ScenarioFailed,
    Workload,
    WorkloadError,
    load_scenario,
    parse_scenario,
    run_scenario,
    shipped_scenarios,
)

SHIPPED = ("fragmented", "numa-spill", "atomic-reserve")
NORMAL = 2  # ZONE_NORMAL
DMA32 = 1


@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory: pytest.TempPathFactory):
    """Every shipped scenario, run on its own machine and saved (once per module)."""
    d = tmp_path_factory.mktemp("scenarios")
    runs = {}
    for name in SHIPPED:
        r = run_scenario(load_scenario(shipped_scenarios()[name]))
        save(r.kernel, d / name)
        runs[name] = (r, str(d / name))
    return runs


def _drgn(stem: str):
    pytest.importorskip("drgn")
    from mmintro.crosscheck import open_drgn

    core, vmlinux = snapshot_paths(stem)
    return open_drgn(str(core), str(vmlinux))


def _drgn_zone(prog, nid: int, idx: int):
    return prog["node_data"][nid].node_zones[idx]


# -- the shipped scenarios ----------------------------------------------------------------
def test_shipped_scenarios_are_registered_by_name():
    assert set(SHIPPED) <= set(shipped_scenarios())
    for name in SHIPPED:
        assert SCENARIOS[name].path == shipped_scenarios()[name] and SCENARIOS[name].help
    assert SCENARIOS["boot"].path is None  # the plain boot stays a Python scenario


def test_every_shipped_scenario_runs_and_its_expectations_hold(shipped_runs):
    for name in SHIPPED:
        r, _stem = shipped_runs[name]
        sc = load_scenario(shipped_scenarios()[name])
        assert [rep.index for rep in r.reports] == [s.index for s in sc.steps]
        expects = [rep for rep in r.reports if rep.action.startswith("expect")]
        assert expects and all(": ok" in rep.text for rep in expects), name


def test_fragmented_normal_is_half_free_with_no_block_of_order_4(shipped_runs):
    r, stem = shipped_runs["fragmented"]
    k = r.kernel
    normal = k.zones[0][NORMAL]
    assert normal.free_pages > normal.managed // 4
    assert sum(normal.nr_free[4:]) == 0 and normal.nr_free[3] > 10000
    order4 = [f for f in k.alloc_failures if f.order == 4][-1]
    assert dict(order4.zones)["Node 0 Normal"] == "fragmentation"
    # drgn reads the same in the snapshot: free_area[] and NR_FREE_PAGES of Node 0 Normal.
    z = _drgn_zone(_drgn(stem), 0, NORMAL)
    nr_free = [z.free_area[o].nr_free.value_() for o in range(page_alloc.NR_PAGE_ORDERS)]
    assert nr_free == normal.nr_free
    nr_free_pages = z.vm_stat[z.prog_["NR_FREE_PAGES"].value_()].counter.value_()
    assert sum(n << o for o, n in enumerate(nr_free)) == nr_free_pages == normal.free_pages


def test_numa_spill_counts_each_miss_on_both_nodes(shipped_runs):
    r, stem = shipped_runs["numa-spill"]
    k, w = r.kernel, r.workload
    ev = {"miss": page_alloc.NUMA_MISS, "foreign": page_alloc.NUMA_FOREIGN, "il": page_alloc.NUMA_INTERLEAVE_HIT}
    n1_normal, n0_dma32 = k.zones[1][NORMAL], k.zones[0][DMA32]
    # Every block node-0 CPUs got from node 1 is one miss on node 1, one foreign on node 0's
    # preferred zone.  The live spill blocks are half of those that spilled (the rest freed).
    misses = n1_normal.numa_events[ev["miss"]]
    assert misses == n0_dma32.numa_events[ev["foreign"]]
    assert len(w.tags["spill"]) == 1000 and misses == 2000 + 2 + 50
    assert n1_normal.numa_events[ev["il"]] == 50
    prog = _drgn(stem)
    z1, z0 = _drgn_zone(prog, 1, NORMAL), _drgn_zone(prog, 0, DMA32)
    assert z1.vm_numa_event[prog["NUMA_MISS"].value_()].counter.value_() == misses
    assert z0.vm_numa_event[prog["NUMA_FOREIGN"].value_()].counter.value_() == misses


def test_atomic_reserve_goes_below_min_and_reserves_a_pageblock(shipped_runs):
    r, stem = shipped_runs["atomic-reserve"]
    k = r.kernel
    normal = k.zones[0][NORMAL]
    wmin = page_alloc.wmark_pages(normal, 0)
    # below min, where GFP_KERNEL stopped; not below the atomic floor (min less a half, less a
    # quarter again: 3/8 of min) by more than the last pcp refill's batch
    assert wmin * 3 // 8 - normal.pcp_batch <= normal.free_pages < wmin
    assert normal.nr_reserved_highatomic == page_alloc.PAGEBLOCK_NR_PAGES
    assert [b.zone for b in r.workload.tags["atomic"]] == ["Normal"] * 1000
    z = _drgn_zone(_drgn(stem), 0, NORMAL)
    assert z.nr_reserved_highatomic.value_() == page_alloc.PAGEBLOCK_NR_PAGES
    nr_free_pages = z.vm_stat[z.prog_["NR_FREE_PAGES"].value_()].counter.value_()
    assert nr_free_pages == normal.free_pages < z._watermark[0].value_()


# -- determinism ------------------------------------------------------------------------------
def _simulate(tmp_path: Path, name: str, *args: str) -> tuple[bytes, bytes]:
    r = CliRunner().invoke(cli, ["simulate", "numa-spill", "-o", str(tmp_path / name), *args])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    core, vml = snapshot_paths(tmp_path / name)
    return core.read_bytes(), vml.read_bytes()


@pytest.mark.slow  # three boots and saves: ~5 s
def test_same_seed_same_snapshot_bytes_other_seed_differs(tmp_path):
    a = _simulate(tmp_path, "a", "--seed", "7")
    assert _simulate(tmp_path, "b", "--seed", "7") == a
    c = _simulate(tmp_path, "c", "--seed", "8")
    assert c[0] != a[0] and c[1] != a[1]


def test_the_seed_chooses_which_blocks_a_fraction_frees():
    text = """
    [machine]
    ram = "1G"
    [[step]]
    alloc = "x"
    count = 200
    [[step]]
    free = "x"
    fraction = 0.5
    """
    sc = parse_scenario(text, "seeded.toml")
    live = [[b.pfn for b in run_scenario(sc, sc.config(seed=s)).workload.tags["x"]] for s in (1, 1, 2)]
    assert len(live[0]) == 100 and live[0] == live[1] and live[0] != live[2]


# -- malformed scenarios: one line naming file, line and step ---------------------------------
BAD = {
    "order": ('[[step]]\nalloc = "a"\norder = 11\n', "bad.toml:3: step 1 (alloc): order 11 is outside 0..10"),
    "flag": (
        '[[step]]\nalloc = "a"\nflags = "GFP_KERNEL|__GFP_NOPE"\n',
        "bad.toml:3: step 1 (alloc): unknown GFP flag '__GFP_NOPE'",
    ),
    "tag": ('[[step]]\nalloc = "a"\n\n[[step]]\nfree = "b"\n', "bad.toml:5: step 2 (free): unknown tag 'b'"),
    "tag-in-expect": (
        '[[step]]\nalloc = "a"\n[[step]]\nexpect = "blocks(\'zz\') == 1"\n',
        "bad.toml:4: step 2 (expect): unknown tag 'zz'",
    ),
    "key": ('[[step]]\nalloc = "a"\nordre = 2\n', "bad.toml:3: step 1 (alloc): unknown key 'ordre' for alloc"),
    "machine-key": ('[machine]\nram = "1G"\nmemory = "2G"\n', "bad.toml:3: [machine]: unknown key 'memory'"),
    "no-action": ("[[step]]\norder = 2\n", "bad.toml:1: step 1 (?): the step has no action"),
    "until": ('[[step]]\nalloc = "a"\nuntil = "tired"\n', "bad.toml:3: step 1 (alloc): until = 'tired' is not one of"),
    "reason": (
        '[[step]]\nexpect_alloc = "fails"\nreason = "bad luck"\n',
        "bad.toml:3: step 1 (expect_alloc): reason = 'bad luck' is not one of",
    ),
    "expression": (
        '[[step]]\nexpect = "fre_pages > 0"\nzone = "DMA32"\n',
        "bad.toml:2: step 1 (expect): expect 'fre_pages > 0': unknown name 'fre_pages'",
    ),
    "no-eval": ("[[step]]\nexpect = \"__import__('os')\"\n", "bad.toml:2: step 1 (expect): expect"),
    "toml": ("[[step]]\nalloc = \n", "bad.toml:2: not valid TOML"),
}


@pytest.mark.parametrize("text,message", BAD.values(), ids=BAD.keys())
def test_malformed_scenario_is_one_line_naming_file_line_and_step(text, message):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "bad.toml")
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


BAD_FOR_MACHINE = {
    "node": (
        '[machine]\nram = "1G"\n[[step]]\nalloc = "a"\nnode = 1\n',
        "step 1 (alloc): node 1 does not exist (the machine has 1 node)",
    ),
    "cpu": ("[machine]\ncpus = 2\n[[step]]\non_cpu = 2\n", "step 1 (on_cpu): cpu 2 is not online"),
    "interleave": (
        '[machine]\nnodes = 2\n[[step]]\nalloc = "a"\ninterleave = [0, 2]\n',
        "step 1 (alloc): node 2 does not exist",
    ),
}


@pytest.mark.parametrize("text,message", BAD_FOR_MACHINE.values(), ids=BAD_FOR_MACHINE.keys())
def test_nodes_and_cpus_are_checked_against_the_machine_before_boot(text, message):
    sc = parse_scenario(text, "bad.toml")
    with pytest.raises(ScenarioError, match=r"^bad\.toml:5?\d?: ") as e:
        sc.check(sc.config())
    assert message in str(e.value)


def _one_line_cli_error(r, *words: str) -> None:
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("mmintro: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output + r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["order", "flag", "tag", "key", "toml"])
def test_simulate_reports_a_malformed_file_in_one_line(tmp_path, kind):
    text, message = BAD[kind]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    r = CliRunner().invoke(cli, ["simulate", str(path), "--output", str(tmp_path / "x")])
    _one_line_cli_error(r, str(path) + message.removeprefix("bad.toml"))
    assert not (tmp_path / "x.vmcore").exists()


def test_simulate_reports_a_missing_node_and_a_missing_file_in_one_line(tmp_path):
    text, message = BAD_FOR_MACHINE["node"]
    (tmp_path / "node.toml").write_text(text)
    r = CliRunner().invoke(cli, ["simulate", str(tmp_path / "node.toml"), "-o", str(tmp_path / "x")])
    _one_line_cli_error(r, "node.toml:5: " + message)
    # --nodes overrides the file's machine, and then the step is fine
    r = CliRunner().invoke(cli, ["simulate", str(tmp_path / "node.toml"), "-o", str(tmp_path / "x"), "--nodes", "2"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    _one_line_cli_error(CliRunner().invoke(cli, ["simulate", str(tmp_path / "none.toml"), "-o", "x"]), "none.toml")


# -- expectations can fail ----------------------------------------------------------------------
FALSE_CLAIMS = {
    "expression": (
        '[[step]]\nalloc = "a"\ncount = 8\n[[step]]\nexpect = "blocks_here(\'a\') == 9"\nzone = "DMA32"\n',
        ("bad.toml:5: step 2 (expect): expect blocks_here('a') == 9 on Node 0 DMA32 does not hold: blocks_here('a')=8"),
    ),
    "fails": (
        '[[step]]\nexpect_alloc = "fails"\norder = 3\n',
        "bad.toml:2: step 1 (expect_alloc): order-3 GFP_KERNEL allocation succeeded",
    ),
    "succeeds": (
        ('[[step]]\nalloc = "all"\norder = 10\nuntil = "exhausted"\n[[step]]\nexpect_alloc = "succeeds"\norder = 10\n'),
        "bad.toml:6: step 2 (expect_alloc): order-10 GFP_KERNEL allocation failed: Node 0 DMA32",
    ),
    "zone": (
        '[[step]]\nexpect_alloc = "succeeds"\nzone = "DMA"\n',
        (
            "bad.toml:2: step 1 (expect_alloc): order-0 GFP_KERNEL allocation came from Node 0 DMA32, "
            "expected Node 0 DMA"
        ),
    ),
    "count": (
        '[[step]]\nalloc = "a"\norder = 10\ncount = 1000\n',
        "bad.toml:2: step 1 (alloc): block {n} of 1000 (order 10, GFP_KERNEL) was refused: Node 0 DMA32",
    ),
}


@pytest.mark.parametrize("text,message", FALSE_CLAIMS.values(), ids=FALSE_CLAIMS.keys())
def test_a_claim_the_kernel_does_not_bear_out_fails_the_scenario(text, message):
    sc = parse_scenario(text + '[machine]\nram = "1G"\ncpus = 1\n', "bad.toml")
    with pytest.raises(ScenarioFailed) as e:
        run_scenario(sc)
    if "{n}" in message:  # the block that failed: one more than a 1 GiB machine can give
        k = boot(MachineConfig(ram=1 << 30, cpus=1))
        n = 1 + sum(1 for _ in iter(lambda: k.alloc_pages("GFP_KERNEL|__GFP_NOWARN", 10), None))
        message = message.format(n=n)
    assert str(e.value).startswith(message), str(e.value)


def test_fragmented_with_the_wrong_reason_fails_and_writes_no_snapshot(tmp_path):
    text = shipped_scenarios()["fragmented"].read_text()
    assert text.count('reason = "fragmentation"') == 1
    path = tmp_path / "fragmented-wrong.toml"
    path.write_text(text.replace('reason = "fragmentation"', 'reason = "watermark"'))
    r = CliRunner().invoke(cli, ["simulate", str(path), "-o", str(tmp_path / "x")])
    _one_line_cli_error(
        r,
        "(expect_alloc): order-4 GFP_KERNEL allocation failed, but Node 0 Normal refused for "
        "fragmentation, not watermark",
    )
    assert not (tmp_path / "x.vmcore").exists()


# -- the Python API ---------------------------------------------------------------------------
@pytest.fixture()
def small():
    return Workload(boot(MachineConfig(ram=1 << 30, cpus=2)))


def test_alloc_until_a_watermark_stops_there(small):
    w = small
    dma32 = w.zone("DMA32")
    r = w.alloc("fill", order=9, until="low", zone="DMA32")
    assert r.stop == "low" and dma32.free_pages <= page_alloc.wmark_pages(dma32, 1)
    assert dma32.free_pages > page_alloc.wmark_pages(dma32, 1) - (1 << 9) - sum(p.count for p in dma32.pcp) - 1
    assert all(b.zone == "DMA32" and b.order == 9 for b in w.tags["fill"])


def test_until_exhausted_is_bounded_by_count(small):
    r = small.alloc("few", order=0, until="exhausted", count=5)
    assert (len(r.blocks), r.stop, r.failure) == (5, "bound", None)


def test_free_every_other_leaves_the_rest_in_allocation_order(small):
    w = small
    w.alloc("x", order=1, count=10)
    before = list(w.tags["x"])
    freed = w.free("x", every=2, offset=1)
    assert freed == before[1::2] and w.tags["x"] == before[0::2]
    assert all(b.pfn not in w.k.allocations for b in freed)
    assert all(w.k.allocations[b.pfn] == 1 for b in w.tags["x"])


def test_on_cpu_per_step_cpu_and_drain(small):
    w = small
    w.alloc("c1", count=3, cpu=1)
    assert w.k.current_cpu == 0
    dma32 = w.zone("DMA32")
    assert dma32.pcp[1].count > 0
    w.drain()
    assert sum(p.count for p in dma32.pcp) == 0
    w.on_cpu(1)
    assert w.k.current_cpu == 1
    with pytest.raises(WorkloadError, match="cpu 5 is not online"):
        w.on_cpu(5)


def test_api_errors_name_what_is_wrong(small):
    w = small
    with pytest.raises(WorkloadError, match="order 11 is outside 0..10"):
        w.alloc("x", order=11)
    with pytest.raises(WorkloadError, match="unknown GFP flag"):
        w.alloc("x", gfp="GFP_KERNAL")
    with pytest.raises(WorkloadError, match="unknown tag 'nope'"):
        w.free("nope")
    with pytest.raises(WorkloadError, match="Node 0 Normal has no memory"):
        w.expect("free_pages > 0", zone="Normal")
    with pytest.raises(ExpectationFailed, match="free_pages="):
        w.expect("free_pages < 0", zone="DMA32")


@pytest.mark.slow  # ~2 s
def test_the_readme_scenario_examples_hold(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Scenarios") :]
    toml = section[section.index("```toml\n") + 8 :]
    toml = toml[: toml.index("```")]
    run_scenario(parse_scenario(toml, "README.md"))
    python = section[section.index("```python\n") + 10 :]
    python = python[: python.index("```")]
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), {})
    assert (tmp_path / "out" / "mine.vmcore").exists()
