"""A machine's own memory map: ``mmintro simulate --e820 FILE`` and ``--like DUMP --kernel VMLINUZ``.

The oracle is the real Debian 6.18 kernel booted by the harness: simulated with its dump's e820
table, CPUs and node ranges, every zone's start_pfn, spanned and present pages equal the kernel's
own /proc/zoneinfo."""

from __future__ import annotations

import re
import subprocess

import pytest

from mmintro.kernel.e820 import E820Error, parse_e820

# QEMU q35's map as Debian's 6.18 printed it at boot (the real-kernel harness's 1 GiB guest)
DMESG = """\
[    0.000000] BIOS-provided physical RAM map:
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000003ffdffff] usable
[    0.000000] BIOS-e820: [mem 0x000000003ffe0000-0x000000003fffffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000b0000000-0x00000000bfffffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000fed1c000-0x00000000fed1ffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000fffc0000-0x00000000ffffffff] reserved
[    0.000000] BIOS-e820: [mem 0x000000fd00000000-0x000000ffffffffff] reserved
[    0.000000] NX (Execute Disable) protection: active
"""
SYSFS = """\
0x0 0x9fbff System RAM
0x9fc00 0x9ffff Reserved
0xf0000 0xfffff Reserved
0x100000 0x3ffdffff System RAM
0x3ffe0000 0x3fffffff Reserved
0xb0000000 0xbfffffff Reserved
0xfed1c000 0xfed1ffff Reserved
0xfffc0000 0xffffffff Reserved
0xfd00000000 0xffffffffff Reserved
"""


def test_dmesg_and_sysfs_maps_read_the_same_and_the_bios_range_is_trimmed() -> None:
    a, b = parse_e820(DMESG), parse_e820(SYSFS)
    assert a == b
    assert [(e.addr, e.end, e.type) for e in a[:3]] == [(0, 0x1000, 2), (0x1000, 0x9FC00, 1), (0x9FC00, 0xA0000, 2)]


@pytest.mark.parametrize(
    "text,message",
    [
        ("0x0 0xfff System RAM\n0x800 0x1fffff System RAM\n", r"e820:2: overlaps line 1"),
        ("0x0 0x9ffff Reserved\n", r"no usable RAM"),
        ("0x0 0x3fffffff Mystery\n", r"e820:1: unknown e820 type 'Mystery'"),
        ("0x0 0x3fffffff Persistent Memory\n", r"e820:1: .*not modelled"),
        ("BIOS-e820: [mem 0x0-0x3fffffff usable\n", r"e820:1: not an e820 entry"),
        ("nothing here\n", r"no e820 entry"),
    ],
)
def test_a_malformed_map_is_one_line_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(E820Error, match=message) as e:
        parse_e820(text)
    assert "\n" not in str(e.value)


@pytest.mark.slow  # four CLI boots: ~3 s
def test_cli_e820_boots_the_map_and_refuses_a_bad_one(tmp_path) -> None:
    good, bad = tmp_path / "dmesg.txt", tmp_path / "bad.txt"
    good.write_text(DMESG)
    bad.write_text("0x0 0xfff System RAM\n0x800 0x1fffff System RAM\n")
    p = subprocess.run(
        ["mmintro", "simulate", "--e820", str(good), "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    z = subprocess.run(["mmintro", "zoneinfo", str(tmp_path / "m")], capture_output=True, text=True).stdout
    assert _zones(z) == {(0, "DMA"): (1, 4095, 3998), (0, "DMA32"): (4096, 258016, 258016)}
    p = subprocess.run(
        ["mmintro", "simulate", "--e820", str(bad), "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "bad.txt:2: overlaps line 1" in p.stderr


def _zones(text: str) -> dict:
    """(node, zone) -> (start_pfn, spanned, present) of every zone with pages."""
    out = {}
    for block in re.split(r"^Node ", text, flags=re.M)[1:]:
        m = re.match(r"(\d+), zone\s+(\w+)", block)
        start = re.search(r"start_pfn:\s+(\d+)", block)
        spanned = re.search(r"spanned\s+(\d+)", block)
        present = re.search(r"present\s+(\d+)", block)
        if m and spanned and int(spanned.group(1)):
            out[(int(m.group(1)), m.group(2))] = (int(start.group(1)), int(spanned.group(1)), int(present.group(1)))
    return out


def test_a_node_without_a_cpu_is_refused_in_one_line(tmp_path) -> None:
    p = subprocess.run(
        ["mmintro", "simulate", "--nodes", "2", "--cpus", "1", "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "mmintro: error: 2 nodes need at least 2 CPUs (each node has a CPU), not 1"
    ]


@pytest.mark.slow  # the whole drgn crosscheck (~5 s)
def test_a_memoryless_node_boots_and_its_cpus_allocate_from_the_others(tmp_path) -> None:
    """Uneven node ranges with a node that has CPUs but no memory: its pgdat exists (online,
    a CPU node) but it is not in N_MEMORY; a CPU on it allocates from node 0 through the
    zonelist fallback; real drgn agrees with mmintro on the snapshot."""
    from mmintro.crosscheck import run_crosscheck
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.reader import open_snapshot
    from mmintro.snapshot.writer import save

    e = parse_e820("0x0 0x9fbff System RAM\n0x100000 0x7ffdffff System RAM\n")
    k = boot(
        MachineConfig(e820=tuple(e), nodes=2, cpus=2, node_ranges=((0, 1 << 31), (1 << 31, 1 << 31)), cpu_nodes=(0, 1))
    )
    k.on_cpu(1)
    pfn = k.alloc_pages("GFP_KERNEL", 0)
    assert pfn is not None and k.memblock.node_of(pfn << 12) == 0
    save(k, tmp_path / "ml")
    prog = open_snapshot(str(tmp_path / "ml"))
    states = prog["node_states"]
    word = lambda name: states[prog.types.const(name)].bits[0].value_()
    assert (word("N_ONLINE"), word("N_CPU"), word("N_MEMORY"), word("N_NORMAL_MEMORY")) == (3, 3, 1, 1)
    assert prog["node_data"][1].node_present_pages.value_() == 0
    results = run_crosscheck(str(tmp_path / "ml"))
    assert len(results) > 30 and not [r.name for r in results if not r.ok]
