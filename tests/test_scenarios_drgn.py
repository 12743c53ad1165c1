"""Every crosscheck row against real drgn on every shipped scenario's snapshot and on a
4-node machine after a workload (the page-allocator issue's acceptance: "all of the above on
the shipped scenarios and on a 4-node machine")."""

from __future__ import annotations

import random

import pytest

drgn = pytest.importorskip("drgn")

from test_drgn_crosscheck import KNOWN_GAPS  # noqa: E402

from mmintro.crosscheck import run_crosscheck  # noqa: E402
from mmintro.kernel import gfp as G  # noqa: E402
from mmintro.kernel.config import MachineConfig  # noqa: E402
from mmintro.kernel.machine import boot  # noqa: E402
from mmintro.snapshot.writer import save  # noqa: E402
from mmintro.workload import load_scenario, run_scenario, shipped_scenarios  # noqa: E402

SCENARIOS = [n for n in shipped_scenarios() if n != "boot"]


def _check_all(path: str) -> None:
    results = run_crosscheck(path)
    assert len(results) >= 15
    bad = [r for r in results if not r.ok and r.name not in KNOWN_GAPS]
    assert not bad, "\n".join(f"{r.name}: {r.detail}" for r in bad)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_row_agrees_on_a_shipped_scenario(name: str, tmp_path) -> None:
    run = run_scenario(load_scenario(shipped_scenarios()[name]))
    save(run.kernel, tmp_path / name)
    _check_all(str(tmp_path / name))


def test_every_row_agrees_on_a_four_node_machine(tmp_path) -> None:
    k = boot(MachineConfig(ram=4 << 30, nodes=4, cpus=4, seed=3))
    rng = random.Random(3)
    live = []
    gfps = [G.GFP_KERNEL, G.GFP_KERNEL | G.__GFP_COMP, G.GFP_HIGHUSER_MOVABLE, G.GFP_ATOMIC,
            G.GFP_KERNEL | G.__GFP_RECLAIMABLE]
    for i in range(3000):
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
