#!/usr/bin/env python3
"""NAME.vmcore as an ELF core versus makedumpfile's kdump-compressed format: write time,
file size (apparent and allocated on disk), and the time to open it and render meminfo with
mmintro and to run ``crash kmem -i`` through real drgn.

    python benchmarks/bench_snapshot_formats.py [--big] [--threads N]
        (--big adds the 64 GiB machine; --threads compresses the kdump pages on N threads)

The vmcore write is timed alone (the vmlinux is the same for both formats).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mmintro.kernel import panic, timekeeping
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.kexec_core import prstatus_notes
from mmintro.kernel.machine import boot
from mmintro.kernel.vmcoreinfo import vmcoreinfo
from mmintro.snapshot.kdump import write_kdump
from mmintro.snapshot.vmcore import write_vmcore
from mmintro.snapshot.writer import save, utsname


def _ram(k) -> list[tuple[int, int]]:
    return [(r.base, r.end) for r in k.memblock.memory]


def _read(stem: str) -> tuple[float, float]:
    """(mmintro open + meminfo, drgn open + crash kmem -i) in seconds."""
    from mmintro import crosscheck as xc
    from mmintro.reader import open_snapshot
    from mmintro.views.meminfo import meminfo

    t = time.perf_counter()
    prog = open_snapshot(stem)
    meminfo(prog)
    t_mine = time.perf_counter() - t
    prog.close()
    t = time.perf_counter()
    xc.crash(xc.open_drgn(stem + ".vmcore", stem + ".vmlinux"), "kmem -i")
    return t_mine, time.perf_counter() - t


def measure(cfg: MachineConfig, label: str, tmp: str, threads: int) -> None:
    k = boot(cfg)
    stem = os.path.join(tmp, label)
    save(k, stem)  # the vmlinux (and the panic), shared by both formats
    _read(stem)  # warm: imports, drgn's first program
    build_id = k.build_id()
    info = vmcoreinfo(k, build_id, crashtime=timekeeping.wall_seconds(k))
    panic.sysrq_crash(k)
    rows = []
    for fmt in ("elf", "kdump"):
        path = f"{stem}-{fmt}.vmcore"
        t = time.perf_counter()
        if fmt == "elf":
            write_vmcore(
                path,
                k.mem.nonzero_runs(),
                info,
                ram_ranges=_ram(k),
                prstatus=prstatus_notes(k),
                direct_map=k.page_offset_base,
            )
        else:
            stats = write_kdump(
                path,
                k.mem.nonzero_runs(),
                info,
                _ram(k),
                prstatus=prstatus_notes(k),
                utsname=utsname(k),
                nr_cpus=cfg.cpus,
                phys_base=k.phys_base,
                threads=threads,
            )
        t_write = time.perf_counter() - t
        os.link(stem + ".vmlinux", f"{stem}-{fmt}.vmlinux")
        st = os.stat(path)
        t_mine, t_drgn = _read(f"{stem}-{fmt}")
        rows.append((fmt, t_write, st.st_size, st.st_blocks * 512, t_mine, t_drgn))
    print(
        f"{label}: {stats.ram_pages} RAM pages, {stats.compressed_pages + stats.raw_pages} stored "
        f"({stats.raw_pages} raw), {stats.shared_pages} shared with the page before, {stats.zero_pages} zero"
    )
    for fmt, t_write, size, alloc, t_mine, t_drgn in rows:
        extra = ""
        if fmt == "kdump":
            stored = stats.compressed_pages + stats.raw_pages
            extra = (
                f", {stored / t_write / 1e3:.0f} k stored pages/s, {stats.ram_pages / t_write / 1e6:.1f} M "
                f"RAM pages/s ({threads} thread{'s' if threads > 1 else ''})"
            )
        print(
            f"  {fmt:5s} write {t_write:6.2f} s, {size / 1e6:8.1f} MB ({alloc / 1e6:8.1f} MB on disk), "
            f"mmintro open+meminfo {t_mine:.2f} s, drgn open+kmem -i {t_drgn:.2f} s{extra}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", action="store_true", help="also the 64 GiB machine")
    ap.add_argument("--threads", type=int, default=1, help="kdump compression threads")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(MachineConfig(), "4G", tmp, args.threads)
        if args.big:
            measure(MachineConfig(ram=64 << 30), "64G", tmp, args.threads)


if __name__ == "__main__":
    main()
