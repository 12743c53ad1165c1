"""Workload steps for slab objects and vmalloc areas (kmalloc/kfree/vmalloc/vfree)."""

from __future__ import annotations

import pytest

from mmintro.workload import ScenarioError, load_scenario, parse_scenario, run_scenario, shipped_scenarios


def test_slab_leak_scenario_makes_kmalloc_192_dominate() -> None:
    run = run_scenario(load_scenario(shipped_scenarios()["slab-leak"]))
    from mmintro.kernel import slub

    k = run.kernel
    counts = {
        name: len(slub.live_objects(k, slub.find_cache(k, name)))
        for name in ("kmalloc-192", "kmalloc-64", "kmalloc-512", "dentry")
    }
    assert counts["kmalloc-192"] >= 100_000
    assert max(counts, key=counts.get) == "kmalloc-192"
    assert len(run.workload.objects["leak"]) == 100_000


@pytest.mark.parametrize(
    "text,msg",
    [
        ('[[step]]\nkfree = "nothing"\n', "unknown tag 'nothing'"),
        ('[[step]]\nkmalloc = "x"\nsize = 64\ncache = "dentry"\n', "kmalloc takes a size"),
        ('[[step]]\nkmalloc = "x"\nsize = -1\n', "is not a size in bytes"),
        ('[[step]]\nvmalloc = "x"\n', "vmalloc needs a size"),
        ('[[step]]\nkmalloc = "x"\nsize = 64\ncaller = "not a name"\n', "is not a function name"),
    ],
)
def test_malformed_object_steps_get_one_line_errors(text: str, msg: str) -> None:
    with pytest.raises(ScenarioError, match=msg) as e:
        parse_scenario(text, "bad.toml")
    assert "\n" not in str(e.value) and str(e.value).startswith("bad.toml:")


def test_an_unknown_cache_fails_the_run() -> None:
    sc = parse_scenario('[machine]\nram = "512M"\n[[step]]\nkmalloc = "x"\ncache = "no_such_cache"\n', "c.toml")
    with pytest.raises(ScenarioError, match="no slab cache named 'no_such_cache'"):
        run_scenario(sc)


def test_vmalloc_heavy_scenario_fragments_the_vmalloc_space() -> None:
    run = run_scenario(load_scenario(shipped_scenarios()["vmalloc-heavy"]))
    from mmintro.kernel import vmalloc as vm

    k = run.kernel
    sizes = {"small": 4096, "medium": 65536, "large": 2 << 20, "small2": 12288}
    live = sorted((a, sizes[tag]) for tag, objs in run.workload.objects.items() for a, _kind in objs)
    assert len(live) == 150 + 133 + 20 + 200
    for a, _size in live[:50]:
        assert vm.find_vmap_area(k, a)  # every live area is in a busy tree
    # Freed areas left holes: some neighbours are further apart than the area plus its guard.
    holes = sum(1 for (a, size), (b, _) in zip(live, live[1:]) if b > a + size + 4096)
    assert holes > 10
