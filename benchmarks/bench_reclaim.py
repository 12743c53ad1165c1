#!/usr/bin/env python3
"""Reclaim and swap (issue 13): the simulator's reclaim throughput and the cost of a swap storm.

    python benchmarks/bench_reclaim.py [--mib 320] [--scenarios]

Three measurements, each on a fresh 256 MiB machine, printed and never asserted:

* page-cache reclaim: a file of ``--mib`` read once, so kswapd drops clean page cache;
* anonymous reclaim: ``--mib`` of anonymous memory written with a swap file on, so kswapd swaps
  out (add_to_swap, try_to_unmap, swap_writeout, __remove_mapping);
* swap-in: the first quarter of that memory read back (do_swap_page with cluster readahead).

For each: wall time, pages scanned and reclaimed (the PGSCAN_*/PGSTEAL_* vm events) and their
rates per second of wall time (the rate of the whole workload: the faults and reads that drive
reclaim are included, as they are in a real kernel's measurement of the same thing).
``--scenarios`` also times the shipped swap-storm, page-cache-pressure and thrashing scenarios
end to end (boot, steps and expectations, no snapshot).
"""

from __future__ import annotations

import argparse
import time

from mmintro.kernel import swapfile
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.workload import Workload, load_scenario, run_scenario, shipped_scenarios


def _ev(k, name: str) -> int:
    from mmintro.kernel import swap

    return sum(c[swap._EV[name]] for c in k.vm_events)


def _measure(label: str, k, fn) -> None:
    names = ("PGSCAN_KSWAPD", "PGSCAN_DIRECT", "PGSTEAL_KSWAPD", "PGSTEAL_DIRECT", "PSWPOUT", "PSWPIN")
    before = {n: _ev(k, n) for n in names}
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    d = {n: _ev(k, n) - before[n] for n in names}
    scanned = d["PGSCAN_KSWAPD"] + d["PGSCAN_DIRECT"]
    stolen = d["PGSTEAL_KSWAPD"] + d["PGSTEAL_DIRECT"]
    print(
        f"{label:<24} {dt:7.2f} s  scanned {scanned:>7} ({scanned / dt:>8.0f}/s)  reclaimed {stolen:>7} "
        f"({stolen / dt:>7.0f}/s)  pswpout {d['PSWPOUT']:>6}  pswpin {d['PSWPIN']:>6}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=320)
    ap.add_argument("--scenarios", action="store_true")
    args = ap.parse_args()
    size = args.mib << 20

    k = boot(MachineConfig(ram=256 << 20, nodes=1, cpus=2))
    w = Workload(k)
    w.create_file("f", "/data/big", size)
    _measure(f"page cache ({args.mib}M read)", k, lambda: w.read("f"))

    k = boot(MachineConfig(ram=256 << 20, nodes=1, cpus=2))
    w = Workload(k)
    swapfile.sys_swapon(k, "/swapfile", 2 * size)
    w.spawn("hog")
    w.mmap("hog", "buf", size)
    _measure(f"anon ({args.mib}M written)", k, lambda: w.touch("hog", "buf", write=True))
    _measure(f"swap-in ({args.mib // 4}M read)", k, lambda: w.touch("hog", "buf", write=False, size=size // 4))

    if args.scenarios:
        for name in ("page-cache-pressure", "swap-storm", "thrashing"):
            t = time.perf_counter()
            run_scenario(load_scenario(shipped_scenarios()[name]))
            print(f"scenario {name:<20} {time.perf_counter() - t:7.2f} s")


if __name__ == "__main__":
    main()
