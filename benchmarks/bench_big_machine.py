#!/usr/bin/env python3
"""Bigger machines (issue 12): boot time, peak memory and snapshot size from 4 GiB to 1 TiB.

    python benchmarks/bench_big_machine.py [--sizes 4,64,256,1024] [--cpus N] [--threads N]
                                           [--arrays] [--no-elf] [--no-drgn] [--dir DIR]

Each machine runs in a fresh process, so its peak RSS (``ru_maxrss``) is the simulator's own:
boot, then NAME.vmcore kdump-compressed (makedumpfile's format, zlib, ``--threads``
compressing), the same without the free pages (``save(exclude_free=True)``, makedumpfile's
``-d 17``; deleted after measuring), then ELF (which stores every struct page: 64 bytes a page of RAM; deleted after
measuring).  Then another process opens the kdump snapshot with mmintro and real drgn and runs
the crosscheck rows that read zones, counters, free lists and sample struct pages (the rows
that walk every struct page or slab are left out: drgn needs ~2 us a page); its time and peak
RSS are the reader's.  ``--arrays`` boots with the memory map as numpy arrays (the design
before the compact map) for comparison.  Machines: 4 GiB / 1 node / 4 CPUs, 64 GiB / 4 nodes /
16 CPUs, 256 GiB and 1 TiB / 8 nodes / 64 CPUs (``--cpus`` overrides).  Numbers are printed,
never asserted; the snapshots need ~1.1x RAM/64 of disk for ELF and ~RAM/128 for kdump.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MACHINES = {4: (1, 4), 64: (4, 16), 256: (8, 64), 1024: (8, 64)}  # GiB -> (nodes, CPUs)

#: crosscheck rows run on the big snapshots (substrings of mmintro.crosscheck.CHECKS names)
ROWS = (
    "for_each_online_pgdat",
    "zones:",
    "totalram",
    "pfn_to_page",
    "crash kmem -z",
    "crash kmem -f",
    "crash kmem -n",
    "MIN/LOW/HIGH",
    "crash kmem -i",
    "nr_free_pages",
    "min/low/high_wmark",
    "free_area lists",
    "per-CPU lists",
    "for_each_slab_cache",
)


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_machine(gib: int, nodes: int, cpus: int, stem: str, threads: int, arrays: bool, elf: bool) -> dict:
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import Kernel
    from mmintro.snapshot.writer import save

    out: dict = {}
    t = time.perf_counter()
    k = Kernel(MachineConfig(ram=gib << 30, nodes=nodes, cpus=cpus))
    k.compact_memmap = not arrays
    k.boot()
    out["boot_s"] = time.perf_counter() - t
    out["rss_boot_mib"] = _rss_mib()
    out["sections"] = len(k.memmap_store)
    out["array_sections"] = sum(s.materialized is not None for s in k.memmap_store.values())
    t = time.perf_counter()
    core, _ = save(k, stem, core_format="kdump", threads=threads)
    out["kdump_s"] = time.perf_counter() - t
    out["kdump_bytes"] = os.stat(core).st_size
    out["rss_kdump_mib"] = _rss_mib()
    t = time.perf_counter()
    core_nofree, vml = save(k, stem + "-nofree", core_format="kdump", threads=threads, exclude_free=True)
    out["nofree_s"] = time.perf_counter() - t
    out["nofree_bytes"] = os.stat(core_nofree).st_size
    out["rss_nofree_mib"] = _rss_mib()
    os.unlink(core_nofree)
    os.unlink(vml)
    if elf:
        t = time.perf_counter()
        core_elf, vml = save(k, stem + "-elf")
        out["elf_s"] = time.perf_counter() - t
        st = os.stat(core_elf)
        out["elf_bytes"], out["elf_disk_bytes"] = st.st_size, st.st_blocks * 512
        out["rss_elf_mib"] = _rss_mib()
        os.unlink(core_elf)
        os.unlink(vml)
    out["array_sections_after"] = sum(s.materialized is not None for s in k.memmap_store.values())
    return out


def child_read(stem: str) -> dict:
    from mmintro import crosscheck as xc

    t = time.perf_counter()
    rows = xc.run_crosscheck(stem, only=list(ROWS))
    bad = [f"{r.name}: {r.detail}" for r in rows if not r.ok]
    return {"read_s": time.perf_counter() - t, "rows": len(rows), "disagree": bad, "rss_read_mib": _rss_mib()}


def _run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4,64,256,1024", help="GiB of RAM, comma-separated")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of every machine")
    ap.add_argument("--threads", type=int, default=1, help="kdump compression threads")
    ap.add_argument("--arrays", action="store_true", help="memory map as numpy arrays (no compact sections)")
    ap.add_argument("--no-elf", action="store_true", help="skip the ELF snapshot")
    ap.add_argument("--no-drgn", action="store_true", help="skip the drgn/mmintro agreement")
    ap.add_argument("--dir", default=None, help="where the snapshots go (default: a temporary directory)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "machine":
            gib, nodes, cpus, stem, threads, arrays, elf = rest
            res = child_machine(int(gib), int(nodes), int(cpus), stem, int(threads), arrays == "1", elf == "1")
        else:
            res = child_read(rest[0])
        print(json.dumps(res))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for gib in (int(s) for s in args.sizes.split(",")):
            nodes, cpus = MACHINES.get(gib, (8, 64))
            cpus = args.cpus or cpus
            stem = os.path.join(tmp, f"m{gib}g")
            m = _run_child(
                [
                    "--child",
                    "machine",
                    str(gib),
                    str(nodes),
                    str(cpus),
                    stem,
                    str(args.threads),
                    str(int(args.arrays)),
                    str(int(not args.no_elf)),
                ]
            )
            label = f"{gib} GiB / {nodes} node{'s' if nodes > 1 else ''} / {cpus} CPUs"
            print(
                f"{label}: boot {m['boot_s']:.1f} s, peak RSS {m['rss_boot_mib']:.0f} MiB after boot; "
                f"{m['array_sections']} of {m['sections']} sections are arrays"
                f"{' (--arrays)' if args.arrays else ''}"
            )
            print(
                f"  kdump  write {m['kdump_s']:6.1f} s ({args.threads} thread{'s' if args.threads > 1 else ''}), "
                f"{m['kdump_bytes'] / 1e9:7.3f} GB ({m['kdump_bytes'] / (gib << 18):.1f} B a page of RAM), "
                f"peak RSS {m['rss_kdump_mib']:.0f} MiB"
            )
            print(
                f"  kdump without free pages (--exclude-free, makedumpfile -d 17) write {m['nofree_s']:6.1f} s, "
                f"{m['nofree_bytes'] / 1e9:7.3f} GB ({m['nofree_bytes'] / (gib << 18):.1f} B a page of RAM), "
                f"peak RSS {m['rss_nofree_mib']:.0f} MiB"
            )
            if "elf_s" in m:
                print(
                    f"  ELF    write {m['elf_s']:6.1f} s, {m['elf_bytes'] / 1e9:7.3f} GB "
                    f"({m['elf_disk_bytes'] / 1e9:.3f} GB on disk), peak RSS {m['rss_elf_mib']:.0f} MiB"
                )
            if not args.no_drgn:
                r = _run_child(["--child", "read", stem])
                verdict = "agree" if not r["disagree"] else "DISAGREE: " + "; ".join(r["disagree"])
                print(
                    f"  drgn vs mmintro: {r['rows']} crosscheck rows {verdict} ({r['read_s']:.1f} s, "
                    f"peak RSS {r['rss_read_mib']:.0f} MiB)"
                )
            for suffix in (".vmcore", ".vmlinux"):
                if os.path.exists(stem + suffix):
                    os.unlink(stem + suffix)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
