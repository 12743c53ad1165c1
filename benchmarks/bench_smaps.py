#!/usr/bin/env python3
"""smaps of a process with about a million mapped 4 KiB pages: mmintro's columnar page-table
scan against real drgn's follow_page per address.

    python benchmarks/bench_smaps.py [--pages 1M] [--ram 6G] [--sample N] [--keep DIR [--reuse]]

The workload: one process maps PAGES pages of anonymous memory, writes every page
(``memory.mm_populate``: a do_anonymous_page per page), then forks one child that keeps the
memory shared copy-on-write, so that half of the census is shared (mapcount 2) and Pss is not
simply Rss.  The snapshot is then read twice, for the same census — every mapped page of every
VMA with its struct page:

* mmintro: ``views.smaps.smaps(prog, pid)``: one scan of the page tables (each table page read
  once as 512 u64), the struct page/folio words of every mapped pfn gathered in bulk, 6.18's
  smaps_account in numpy;
* drgn 0.3.0: for every page-aligned address of every VMA, ``follow_page(mm, addr)`` (its stock
  helper: a 4-level walk per address), and for each hit the page's ``flags``, ``_mapcount``
  and ``_refcount`` (what smaps_account needs).  With ``--sample N`` drgn only does every
  N-th address and its time is scaled up (the per-address cost is flat).

Both must find the same Rss for every VMA (and with the whole census, the same Pss); the
script prints both times and their ratio (the goal is at least 20x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mmintro.kernel.config import MachineConfig, parse_size


def build(path: Path, pages: int, ram: int, seed: int = 1) -> int:
    """Boot, map and populate; save the snapshot at ``path``; return the parent's pid."""
    from mmintro.kernel import fork
    from mmintro.kernel import mmap as M
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save

    k = boot(MachineConfig(ram=ram, cpus=2, seed=seed, nodes=1))
    proc = fork.spawn_process(k, "bench", mmaps=[])
    length = pages * 4096
    addr = M.do_mmap(k, proc.mm, length, M.VM_READ | M.VM_WRITE)
    from mmintro.kernel import memory

    if hasattr(memory, "mm_populate"):
        memory.mm_populate(k, proc.mm, addr, length, True, task=proc.task)
    else:  # the per-page fault path
        for a in range(addr, addr + length, 4096):
            memory.handle_mm_fault(k, proc.mm, a, True, task=proc.task)
    if hasattr(fork, "do_fork"):
        fork.do_fork(k, proc)
    save(k, path)
    return proc.pid


def drgn_census(vmcore: str, vmlinux: str, pid: int, sample: int) -> tuple[float, dict[int, int], int]:
    """drgn: follow_page per address; returns (seconds, Rss pages per VMA start, pss-ish sum)."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_page, for_each_vma
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    d = open_drgn(vmcore, vmlinux)
    t0 = time.perf_counter()
    mm = find_task(d, pid).mm
    rss: dict[int, int] = {}
    pss = 0
    for vma in for_each_vma(mm):
        start, end = vma.vm_start.value_(), vma.vm_end.value_()
        hits = 0
        for a in range(start, end, 4096 * sample):
            try:
                page = follow_page(mm, a)
            except FaultError:
                continue
            page.flags.value_()
            mc = page._mapcount.counter.value_() + 1
            page._refcount.counter.value_()
            hits += 1
            pss += (4096 << 12) // mc if mc >= 2 else 4096 << 12
        rss[start] = hits
    return time.perf_counter() - t0, rss, pss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", default="1M", help="mapped 4 KiB pages (1M = 1048576)")
    ap.add_argument("--ram", default="6G")
    ap.add_argument("--sample", type=int, default=1, help="drgn looks at every N-th address (time scaled)")
    ap.add_argument("--keep", default=None, help="keep the snapshot in this directory")
    ap.add_argument("--reuse", action="store_true", help="with --keep: read the snapshot already there")
    args = ap.parse_args()
    pages = parse_size(args.pages)  # "1M" = 1048576 pages
    ram = parse_size(args.ram)
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    d = Path(args.keep or tmp.name)  # type: ignore[union-attr]
    d.mkdir(parents=True, exist_ok=True)
    path = d / "bench_smaps"
    pid_file = d / "bench_smaps.pid"
    if args.reuse and pid_file.exists() and Path(str(path) + ".vmcore").exists():
        pid = int(pid_file.read_text())
        print(f"reusing {path} (pid {pid})")
    else:
        t0 = time.perf_counter()
        pid = build(path, pages, ram)
        pid_file.write_text(str(pid))
        print(f"simulate + save: {time.perf_counter() - t0:.1f} s ({pages:,} pages written, then fork)")

    from mmintro.reader import open_snapshot
    from mmintro.views import smaps as S

    with open_snapshot(path) as prog:
        t0 = time.perf_counter()
        rep = S.smaps(prog, pid)
        t_cold = time.perf_counter() - t0  # the first pass also pulls the vmcore into the OS cache
        t0 = time.perf_counter()
        rep = S.smaps(prog, pid)
        t_mine = time.perf_counter() - t0  # warm, as drgn's pass after it is
    mine = {v.maps.start: v.stats.resident // 4096 for v in rep.vmas}
    # the [vsyscall] gate VMA smaps prints last is not in the mm's tree (drgn's for_each_vma)
    gate = [v.maps.start for v in rep.vmas if v.maps.start >= 1 << 47]
    assert all(mine.pop(g) == 0 for g in gate)
    mine_pss = sum(v.stats.pss for v in rep.vmas)
    t_drgn, theirs, drgn_pss = drgn_census(str(path) + ".vmcore", str(path) + ".vmlinux", pid, args.sample)
    t_drgn_full = t_drgn * args.sample
    total = sum(mine.values())
    print(f"census: {total:,} mapped pages in {len(rep.vmas)} VMAs; findings: {rep.findings or 'none'}")
    print(f"mmintro smaps (columnar scan + bulk struct pages)  {t_mine:8.3f} s (first, cold pass {t_cold:.3f} s)")
    what = "" if args.sample == 1 else f" (every {args.sample}th address: {t_drgn:.2f} s, scaled)"
    print(f"drgn follow_page per address + struct page reads   {t_drgn_full:8.3f} s{what}")
    print(f"columnar smaps is {t_drgn_full / t_mine:,.0f}x faster")
    if args.sample == 1:
        assert mine == theirs, "Rss per VMA differs from drgn's follow_page census"
        # drgn's sum uses the page's own mapcount (order-0 folios): equal to smaps' Pss here
        assert mine_pss == drgn_pss, (mine_pss, drgn_pss)
        print("identical Rss in every VMA and identical Pss")
    else:
        for start, n in theirs.items():
            assert abs(mine[start] / args.sample - n) <= 1 + 0.01 * n, (hex(start), mine[start], n)
        print("Rss per VMA agrees with drgn's sampled census")


if __name__ == "__main__":
    main()
