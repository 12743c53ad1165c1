#!/usr/bin/env python3
"""Foundation benchmarks: boot+save time and snapshot size, open time, and page-types over
every struct page versus drgn's for_each_page doing the same count on the same snapshot.

    python benchmarks/bench_foundation.py [--big]     (--big adds the 64 GiB, 4-node machine)

Prints a table; numbers are measured on the machine it runs on, ratios against drgn.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.reader.columns import page_array, present_pfn_mask
from mmintro.snapshot.writer import save


def page_types_counts(prog) -> dict:
    """The page-types census done columnar: pages per (flags & pageflag bits, page type)."""
    T = prog.types
    pages = page_array(prog)[present_pfn_mask(prog)]
    nflags = T.const("__NR_PAGEFLAGS")
    f = pages["flags"] & np.uint64((1 << nflags) - 1)
    pt = pages["page_type"].astype(np.uint64) >> np.uint64(24)
    key = (f << np.uint64(8)) | pt
    uniq, counts = np.unique(key, return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist()))


def drgn_count(core: str, vmlinux: str) -> tuple[dict, float]:
    import drgn
    from drgn.helpers.linux.mm import for_each_page

    prog = drgn.Program()
    prog.set_core_dump(core)
    prog.load_debug_info([vmlinux])
    nflags = prog["__NR_PAGEFLAGS"].value_()
    mask = (1 << nflags) - 1
    t = time.perf_counter()
    counts: dict = {}
    for page in for_each_page(prog):
        key = ((page.flags.f.value_() & mask) << 8) | (page.page_type.value_() >> 24)
        counts[key] = counts.get(key, 0) + 1
    return counts, time.perf_counter() - t


def measure(cfg: MachineConfig, label: str, tmp: str, with_drgn: bool) -> None:
    t = time.perf_counter()
    k = boot(cfg)
    t_boot = time.perf_counter() - t
    t = time.perf_counter()
    core, vmlinux = save(k, os.path.join(tmp, label))
    t_save = time.perf_counter() - t
    del k
    size = os.path.getsize(core) + os.path.getsize(vmlinux)
    t = time.perf_counter()
    prog = open_snapshot(os.path.join(tmp, label))
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    mine = page_types_counts(prog)
    t_pt = time.perf_counter() - t
    npages = sum(mine.values())
    print(
        f"{label}: boot {t_boot:.2f} s, save {t_save:.2f} s, snapshot {size / 1e6:.1f} MB, "
        f"open {t_open * 1000:.0f} ms, page-types {npages} pages in {t_pt:.3f} s "
        f"({npages / t_pt / 1e6:.1f} M pages/s)"
    )
    if with_drgn:
        theirs, t_drgn = drgn_count(str(core), str(vmlinux))
        assert theirs == mine, "drgn's census differs from mmintro's"
        print(
            f"{label}: drgn for_each_page census {t_drgn:.2f} s ({npages / t_drgn / 1e6:.2f} M pages/s); "
            f"mmintro is {t_drgn / t_pt:.0f}x faster, same counts"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", action="store_true", help="also the 64 GiB, 4-node machine")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(MachineConfig(), "4G-1node", tmp, with_drgn=True)
        if args.big:
            measure(MachineConfig(ram=64 << 30, nodes=4, cpus=4), "64G-4node", tmp, with_drgn=True)


if __name__ == "__main__":
    main()
