#!/usr/bin/env python3
"""Page allocator benchmarks: steady-state alloc+free throughput and boot time with the free
lists built, on this machine.

    python benchmarks/bench_page_alloc.py [--big]    (--big adds the 64 GiB, 4-node boot)

Steady state: a pool of live blocks is built first; then every step frees a random live
block and allocates a replacement of the same kind, so free memory, the pcp lists and the
free lists stay at equilibrium.  "ops" counts each alloc and each free as one operation.

Workloads:
  order-0      GFP_KERNEL order 0 (the per-CPU list fast path), 1000 live pages
  mixed        orders 0,0,0,1,2,3,4,9 with GFP_KERNEL|__GFP_COMP, GFP_HIGHUSER_MOVABLE and
               __GFP_RECLAIMABLE, on 2 CPUs, 2000 live blocks (buddy splits and merges,
               pcp high-order lists, migratetype fallbacks)
"""

from __future__ import annotations

import argparse
import random
import time

from mmintro.kernel import gfp as G
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot


def steady(k, kinds, live: int, steps: int, seed: int = 1) -> tuple[float, int]:
    rng = random.Random(seed)
    pool = []
    for i in range(live):
        gfp, order = kinds[i % len(kinds)]
        pool.append((k.alloc_pages(gfp, order), gfp, order))
    t = time.perf_counter()
    ops = 0
    for i in range(steps):
        j = rng.randrange(live)
        pfn, gfp, order = pool[j]
        k.on_cpu(i & (k.config.cpus - 1) if k.config.cpus > 1 else 0)
        k.free_pages(pfn, order)
        pool[j] = (k.alloc_pages(gfp, order), gfp, order)
        ops += 2
    return time.perf_counter() - t, ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", action="store_true", help="also boot a 64 GiB, 4-node machine")
    ap.add_argument("--steps", type=int, default=200_000)
    args = ap.parse_args()

    k = boot(MachineConfig(ram=4 << 30, cpus=2))
    k.on_cpu(0)
    dt, ops = steady(k, [(G.GFP_KERNEL, 0)], 1000, args.steps)
    print(f"order-0  GFP_KERNEL       {ops / dt:>10,.0f} ops/s  ({ops // 2 / dt:,.0f} alloc+free pairs/s)")

    k = boot(MachineConfig(ram=4 << 30, cpus=2))
    comp = G.GFP_KERNEL | G.__GFP_COMP
    kinds = [
        (comp, 0),
        (G.GFP_HIGHUSER_MOVABLE, 0),
        (G.GFP_KERNEL | G.__GFP_RECLAIMABLE, 0),
        (comp, 1),
        (G.GFP_HIGHUSER_MOVABLE, 2),
        (comp, 3),
        (comp, 4),
        (G.GFP_HIGHUSER_MOVABLE | G.__GFP_COMP, 9),
    ]
    dt, ops = steady(k, kinds, 2000, args.steps // 2)
    print(f"mixed    orders 0..9      {ops / dt:>10,.0f} ops/s  ({ops // 2 / dt:,.0f} alloc+free pairs/s)")
    assert not k.alloc_failures, "the steady state must not run out of memory"

    configs = [MachineConfig(ram=4 << 30, cpus=2)]
    if args.big:
        configs.append(MachineConfig(ram=64 << 30, nodes=4, cpus=2))
    for cfg in configs:
        t = time.perf_counter()
        k = boot(cfg)
        dt = time.perf_counter() - t
        blocks = sum(sum(z.nr_free) for zs in k.zones for z in zs)
        print(
            f"boot {cfg.ram >> 30:>3} GiB, {cfg.nodes} node(s): {dt:6.2f} s  "
            f"({blocks:,} free blocks on the lists, {k.totalram_pages:,} pages managed)"
        )


if __name__ == "__main__":
    main()
