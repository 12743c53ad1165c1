#!/usr/bin/env python3
"""The columnar slab census against drgn, on one snapshot with a slab-leak-like workload.

    python benchmarks/bench_slab.py [--ram 1G] [--leak 150000] [--keep DIR]

The workload: one cache (``leaky_obj``, 96-byte objects) grows to LEAK objects with every
seventh freed again, while kmalloc caches of every size churn a few thousand objects on two
CPUs and vm_area_struct fills its sheaves and barn.  The snapshot is then read twice:

* mmintro: ``slab_census(prog)``: every object of every cache, allocated or free (one numpy
  pass over the struct page array, all freelists of a cache walked at once);
* drgn 0.3.0: ``slab_cache_for_each_allocated_object(cache, "void")`` for every cache on
  ``slab_caches`` (its stock helper: a for_each_page() scan per cache, then each slab's
  freelist and the per-CPU freelists and sheaves).

Both must find the same allocated objects in every cache; the script prints both times and
their ratio (the goal is a census at least 20x faster).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mmintro.kernel import slab_common as sc
from mmintro.kernel import slub
from mmintro.kernel.config import MachineConfig, parse_size
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save


def leak_workload(k, leak: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    cpus = k.config.cpus
    leaky = slub.kmem_cache_create(k, "leaky_obj", 96, flags=sc.SLAB_HWCACHE_ALIGN)
    objs = []
    for i in range(leak):
        if i % 4096 == 0:
            k.on_cpu(int(rng.integers(cpus)))
        objs.append(slub.kmem_cache_alloc(k, leaky, caller="leaky_alloc"))
    for a in objs[::7]:
        slub.kmem_cache_free(k, leaky, a)
    live: list[int] = []
    sizes = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192]
    for _ in range(8000):
        k.on_cpu(int(rng.integers(cpus)))
        if live and rng.random() < 0.35:
            slub.kfree(k, live.pop(int(rng.integers(len(live)))))
        else:
            live.append(slub.kmalloc(k, int(rng.choice(sizes)), "GFP_KERNEL", caller="bench_kmalloc"))
    vma = slub.find_cache(k, "vm_area_struct")
    vs = [slub.kmem_cache_alloc(k, vma, caller="vm_area_alloc") for _ in range(600)]
    for v in vs[:500]:
        slub.kmem_cache_free(k, vma, v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ram", default="1G")
    ap.add_argument("--leak", type=int, default=150_000)
    ap.add_argument("--keep", help="write the snapshot into this directory (default: a temporary one)")
    args = ap.parse_args()

    from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_for_each_allocated_object

    from mmintro.crosscheck import open_drgn
    from mmintro.reader import open_snapshot
    from mmintro.reader.helpers.slab import slab_census

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        k = boot(MachineConfig(ram=parse_size(args.ram), cpus=2, seed=3))
        leak_workload(k, args.leak)
        save(k, d / "leak")
        want = {s.addr: set(slub.live_objects(k, s)) for s in k.slab.caches}
        del k

        prog = open_snapshot(d / "leak")
        t = time.perf_counter()
        census = slab_census(prog)
        t_census = time.perf_counter() - t
        mine = {a: set(c.objects[c.allocated].tolist()) for a, c in census.items()}

        dprog = open_drgn(str(d / "leak.vmcore"), str(d / "leak.vmlinux"))
        t = time.perf_counter()
        theirs = {
            c.value_(): {o.value_() for o in slab_cache_for_each_allocated_object(c, "void")}
            for c in for_each_slab_cache(dprog)
        }
        t_drgn = time.perf_counter() - t

    total = sum(len(v) for v in mine.values())
    biggest = max(census.values(), key=lambda c: c.nr_allocated)
    assert mine.keys() == theirs.keys(), "the census and drgn see different caches"
    diff = [census[a].name for a in mine if mine[a] != theirs[a]]
    assert not diff, f"the census and drgn disagree on {diff}"
    assert mine == want, "the census disagrees with the simulator's live objects"
    print(
        f"snapshot: {args.ram} RAM, {len(census)} caches, {total:,} allocated objects "
        f"({biggest.name}: {biggest.nr_allocated:,} of {len(biggest.objects):,})"
    )
    print(f"mmintro slab_census (every cache)                       {t_census:8.3f} s")
    print(f"drgn slab_cache_for_each_allocated_object (every cache) {t_drgn:8.3f} s")
    print(f"census is {t_drgn / t_census:,.0f}x faster; identical allocated-object sets in every cache")


if __name__ == "__main__":
    main()
