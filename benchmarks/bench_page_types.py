#!/usr/bin/env python3
"""page-types: mmintro's columnar census against drgn's for_each_page doing the same count.

    python benchmarks/bench_page_types.py [--sizes 4,64] [--dir DIR] [--repeat N] [--no-drgn]

For each machine (4 GiB / 1 node / 2 CPUs and 64 GiB / 4 nodes / 4 CPUs by default) it boots,
runs a small workload (a process that writes a 64 MiB heap and forks, so there are anonymous,
CoW-shared, slab, page-table, compound and buddy pages), saves an ELF snapshot, then measures:

* ``mmintro page-types`` end to end (a fresh process: start-up, open, census, printing);
* the census itself (:func:`mmintro.views.page_types.page_types`), best of ``--repeat`` runs
  in one process, and the first run (which also page-faults the mapped core file);
* drgn's ``for_each_page`` computing the same counts -- per page the flags below
  ``__NR_PAGEFLAGS``, the page type byte and the tail bit, a tail taking its head's flags (but
  PG_head) and type -- once, and checks that both censuses are identical.

Prints one table with pages/s and the ratio drgn time / mmintro time.  Numbers depend on the
machine and its load (the 2-core machine this project runs on is shared); they are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save
from mmintro.views import page_types as V
from mmintro.workload import Workload

MACHINES = {4: (1, 2), 64: (4, 4)}  # GiB -> (nodes, CPUs)


def make(gib: int, d: str) -> str:
    nodes, cpus = MACHINES.get(gib, (4, 4))
    k = boot(MachineConfig(ram=gib << 30, nodes=nodes, cpus=cpus))
    w = Workload(k)
    w.spawn("postgres", heap=64 << 20)
    w.touch("postgres", "heap", write=True, populate=True)
    w.fork("worker", "postgres")
    path = os.path.join(d, f"pt-{gib}g")
    save(k, path)
    return path


def mmintro_counts(prog) -> Counter:  # type: ignore[no-untyped-def]
    enum = {n.removeprefix("PGTY_"): v for n, v in prog.types.enum("pagetype").items()}
    out: Counter = Counter()
    for r in V.page_types(prog):
        out[(r.flags, enum[r.page_type] if r.page_type else 0, r.tail)] += r.page_count
    return out


def drgn_counts(path: str) -> tuple[Counter, float]:
    from drgn import FaultError, Object
    from drgn.helpers.linux.mm import for_each_page

    from mmintro.crosscheck import open_drgn

    prog = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    mask = (1 << prog["__NR_PAGEFLAGS"].value_()) - 1
    head_bit = 1 << prog["PG_head"].value_()
    page_ptr = prog.type("struct page *")
    t = time.perf_counter()
    out: Counter = Counter()
    for page in for_each_page(prog):
        try:
            ch = page.compound_head.value_()
            src, tail = page, 0
            if ch & 1:
                src, tail = Object(prog, page_ptr, ch - 1), 1
            flags = src.flags.f.value_() & mask
            if tail:
                flags &= ~head_bit
            pt = src.page_type.value_() & 0xFFFFFFFF
        except FaultError:  # a pfn without a memory map
            continue
        top = pt >> 24 if 0x80 <= pt >> 24 <= 0xFE else 0
        out[(flags, top, tail)] += 1
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4,64", help="machine sizes in GiB (default 4,64)")
    ap.add_argument("--dir", default=None, help="where to write the snapshots (default: a temporary directory)")
    ap.add_argument("--repeat", type=int, default=3, help="census runs in one process (the best is reported)")
    ap.add_argument("--no-drgn", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for gib in (int(x) for x in args.sizes.split(",")):
            path = make(gib, d)
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", "from mmintro.cli.main import main; main()", "page-types", path],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            t_cli = time.perf_counter() - t
            prog = open_snapshot(path)
            times = []
            for _ in range(max(1, args.repeat)):
                t = time.perf_counter()
                mine = mmintro_counts(prog)
                times.append(time.perf_counter() - t)
            pages = sum(mine.values())
            best = min(times)
            if args.no_drgn:
                rows.append((gib, pages, t_cli, times[0], best, None, None))
                continue
            theirs, t_drgn = drgn_counts(path)
            same = theirs == mine
            rows.append((gib, pages, t_cli, times[0], best, t_drgn, same))
            os.unlink(f"{path}.vmcore")
    print(
        f"{'machine':>8} {'pages':>10} {'CLI s':>7} {'first s':>8} {'best s':>7} {'M pages/s':>9} "
        f"{'drgn s':>8} {'drgn M/s':>8} {'ratio':>6}  same counts"
    )
    for gib, pages, t_cli, first, best, t_drgn, same in rows:
        drgn = f"{t_drgn:8.2f} {pages / t_drgn / 1e6:8.2f} {t_drgn / best:5.0f}x  {same}" if t_drgn else "       -"
        print(f"{gib:>6}G {pages:>10} {t_cli:>7.2f} {first:>8.3f} {best:>7.3f} {pages / best / 1e6:>9.1f} {drgn}")


if __name__ == "__main__":
    main()
