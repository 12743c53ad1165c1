#!/usr/bin/env python3
"""Itemise the memory a boot keeps from the page allocator: the simulated kernel booted ``--like``
a real Debian 6.18 dump, against that kernel's own boot log and dump.

    python tools/itemise_reserved.py [REFDUMP_DIR ...]   (default: every cached real-* dump)

For the simulator, every page that is RAM and still reserved when memblock_free_all() runs
is charged to the function that reserved it (memblock's log, what memblock=debug prints),
and the pages given back afterwards to the "Freeing ... memory" line that gave them back.
For the real kernel, the items its log and dump name (the image's layout, the initrd, the
per-CPU first chunk, the early hash tables, the node data, swiotlb) and the "Memory:" line's
total.  The README's "Managed pages, item by item" table is this script's output.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmintro.kernel.config import MachineConfig  # noqa: E402
from mmintro.kernel.e820 import machine_of_dump  # noqa: E402
from mmintro.kernel.machine import boot  # noqa: E402
from mmintro.reader.dump import open_dump  # noqa: E402
from mmintro.reader.helpers.printk import dmesg_records  # noqa: E402

PAGE = 4096


def simulated(k) -> Counter:
    """KiB reserved at memblock_free_all(), per reserving function."""
    owner: dict[int, str] = {}
    present = [(r.base // PAGE, r.end // PAGE) for r in k.memblock.memory]
    for op, base, size, who in k.memblock.log:
        lo, hi = base // PAGE, -(-(base + size) // PAGE)
        for pfn in range(lo, hi):
            if op == "reserve":
                owner[pfn] = who
            else:
                owner.pop(pfn, None)
    out: Counter = Counter()
    for pfn, who in owner.items():
        if any(a <= pfn < b for a, b in present):
            out[who] += 4
    return out


def real_items(prog, log: list[str], initrd: tuple | None) -> dict:
    items = {"initrd": initrd[1] // 1024} if initrd else {}  # machine_of_dump's, from "RAMDISK:"
    for line in log:
        m = re.match(r"Memory: (\d+)K/(\d+)K available .* (\d+)K reserved", line)
        if m:
            items["Memory: reserved"] = int(m.group(3))
        m = re.match(r"percpu: Embedded (\d+) pages/cpu", line)
        if m:
            items["per-CPU first chunk (per CPU)"] = int(m.group(1)) * 4
        m = re.match(r"(Dentry cache|Inode-cache) hash table entries: \d+ \(order: \d+, (\d+) bytes, linear\)", line)
        if m:
            items["early hash tables"] = items.get("early hash tables", 0) + int(m.group(2)) // 1024
        m = re.match(r"NODE_DATA\(\d+\) allocated \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]", line)
        if m:
            items["node data"] = items.get("node data", 0) + (int(m.group(2), 16) + 1 - int(m.group(1), 16)) // 1024
        m = re.match(r"software IO TLB: mapped .* \((\d+)MB\)", line)
        if m:
            items["swiotlb buffer"] = int(m.group(1)) << 10
    s = prog.symbols.by_name
    brk_end = int.from_bytes(prog.read(s["_brk_end"].address, 8), "little")
    items["kernel image (_text.._brk_end)"] = (brk_end - s["_text"].address) // 1024
    return items


def main() -> None:
    dirs = [Path(a) for a in sys.argv[1:]] or sorted(Path.home().glob(".cache/mmintro/refdumps/real-*"))
    for d in dirs:
        m = json.loads((d / "manifest.json").read_text())
        prog = open_dump(str(d / "vmcore"), m["vmlinuz"])
        found = machine_of_dump(prog)
        k = boot(MachineConfig(**{key: v for key, v in found.items() if v is not None}))
        ours = simulated(k)
        log = [r.text for r in dmesg_records(prog)]
        real = real_items(prog, log, found["initrd"])
        ours_line = next(x for x in k.log if x.startswith("Memory:"))
        ours_total = int(re.search(r"(\d+)K reserved", ours_line).group(1))
        print(
            f"\n## {d.name}: {m['config']['mem_mib']} MiB, {m['config']['nodes']} node(s), {m['config']['cpus']} CPUs"
        )
        print(
            f"Memory: line reserved: simulated {ours_total}K, real {real.get('Memory: reserved')}K "
            f"(difference {ours_total - real.get('Memory: reserved', 0):+d}K)"
        )
        print("| reserved by (simulated) | KiB |")
        print("|---|---|")
        for who, kib in ours.most_common():
            print(f"| {who} | {kib} |")
        print("| real kernel's items | KiB |")
        print("|---|---|")
        for key, v in real.items():
            print(f"| {key} | {v} |")
        zi = {}
        for block in re.split(r"^Node ", (d / "proc" / "zoneinfo").read_text(), flags=re.M)[1:]:
            z = re.match(r"(\d+), zone\s+(\w+)", block)
            mg = re.search(r"managed\s+(\d+)", block)
            if mg and int(mg.group(1)):
                zi[(int(z.group(1)), z.group(2))] = int(mg.group(1))
        for (nid, name), real_managed in zi.items():
            z = next(z for z in k.zones[nid] if z.name == name)
            print(
                f"managed {nid}/{name}: simulated {z.managed}, real {real_managed}, "
                f"{z.managed - real_managed:+d} pages ({(z.managed - real_managed) / real_managed:+.3%})"
            )


if __name__ == "__main__":
    main()
