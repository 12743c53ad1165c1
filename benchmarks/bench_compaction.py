#!/usr/bin/env python3
"""Compaction and migration benchmarks, on this machine.

    python benchmarks/bench_compaction.py [--ram 512M]

Three measurements on a machine whose DMA32 free memory is all in order-3 holes between a
process's pages (the `compaction` scenario's layout, anonymous pages only):

  migrate      migrate_pages() of order-0 anonymous LRU folios to freshly allocated pages
               (isolation, unmap, copy, rmap, PTE rewrite, LRU, free): folios per second
  direct       one order-9 GFP_HIGHUSER_MOVABLE allocation that needs direct (async)
               compaction: the allocation's wall time and the pages it migrated
  compact_all  vm.compact_memory over the whole zone (sync, both scanners end to end):
               pages migrated per second, pages scanned per second

Measured (512M, the shared 2-core machine, Python 3.11): migrate 6,400 folios/s when the machine
was quiet (2,900/s at load 5); direct 41 ms (62 ms loaded) for an order-9 allocation that migrated
124-256 pages; compact_all 6,450 pages migrated/s and 31,000 pfns scanned/s quiet (3,400 and 16,500
loaded).  Most of a migration's time is the rmap walk (anon_vma / i_mmap interval tree) and the
PTE rewrite through simulated memory.
"""

from __future__ import annotations

import argparse
import time

from mmintro.kernel import memory, migrate
from mmintro.kernel.config import MachineConfig, parse_size
from mmintro.kernel.machine import boot
from mmintro.workload import Workload

PAGE = 4096


def fragmented(ram: int, seed: int = 1):
    k = boot(MachineConfig(ram=ram, cpus=2, seed=seed))
    w = Workload(k)
    w.alloc("fill", 3, "GFP_HIGHUSER_MOVABLE", until="exhausted")
    w.free("fill", every=2)
    w.drain()
    z = w.zone("DMA32")
    w.spawn("p")
    w.mmap("p", "a", ((z.free_pages - z.watermark[2] - 4000) * PAGE) & ~((1 << 20) - 1))
    w.touch("p", "a", write=True, populate=True)
    w.free("fill")
    w.drain()
    w.alloc("pinned", 9, "__GFP_MOVABLE|__GFP_HIGHMEM|__GFP_NOWARN", until="exhausted")
    return k, w, z


def ev(k, name: str) -> int:
    i = k.T.enum("vm_event_item")[name]
    return sum(c[i] for c in k.vm_events)


def bench_migrate(ram: int, n: int) -> tuple[int, float]:
    k, w, _z = fragmented(ram)
    mm = w.proc("p").mm
    a = w.mapping("p", "a").start
    pfns = []
    for i in range(n):
        _l, _s, e = memory.walk(k, mm, a + i * PAGE)
        pfns.append(memory.pte_pfn(e))
    t = time.perf_counter()
    todo = [p for p in pfns if migrate.folio_isolate_lru(k, p)]
    rc = migrate.migrate_pages(k, todo, lambda src: k.alloc_pages("GFP_HIGHUSER_MOVABLE", 0))
    dt = time.perf_counter() - t
    assert rc == 0
    return n, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ram", default="512M")
    ap.add_argument("--migrate", type=int, default=5000, help="folios for the migrate_pages measurement")
    args = ap.parse_args()
    ram = parse_size(args.ram)

    n, dt = bench_migrate(ram, args.migrate)
    print(f"migrate      {n} order-0 anon folios in {dt:.2f} s: {n / dt:,.0f} folios/s")

    k, w, z = fragmented(ram)
    t = time.perf_counter()
    pfn = k.alloc_pages("GFP_HIGHUSER_MOVABLE|__GFP_COMP", 9)
    dt = time.perf_counter() - t
    assert pfn is not None
    print(
        f"direct       order-9 allocation with direct compaction: {dt * 1000:.1f} ms, "
        f"{ev(k, 'PGMIGRATE_SUCCESS')} pages migrated, {ev(k, 'COMPACTMIGRATE_SCANNED')} migrate-scanned, "
        f"{ev(k, 'COMPACTFREE_SCANNED')} free-scanned"
    )

    k, w, z = fragmented(ram)
    t = time.perf_counter()
    w.sysctl("vm.compact_memory", 1)
    dt = time.perf_counter() - t
    moved = ev(k, "PGMIGRATE_SUCCESS")
    scanned = ev(k, "COMPACTMIGRATE_SCANNED") + ev(k, "COMPACTFREE_SCANNED")
    print(
        f"compact_all  vm.compact_memory: {moved} pages migrated in {dt:.2f} s: {moved / dt:,.0f} pages/s, "
        f"{scanned / dt:,.0f} pfns scanned/s; free order>=9 blocks after: {sum(z.nr_free[9:])}"
    )


if __name__ == "__main__":
    main()
