"""A machine's own memory map: ``mmintro simulate --e820 FILE`` and ``--like DUMP --kernel VMLINUZ``.

The oracle is the real Debian 6.18 kernel booted by the harness: simulated with its dump's e820
table, CPUs and node ranges, every zone's start_pfn, spanned and present pages equal the kernel's
own /proc/zoneinfo."""

from __future__ import annotations

import re
import subprocess

import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.e820 import E820Error, machine_of_dump, parse_e820
from mmintro.kernel.machine import boot

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


@pytest.mark.parametrize("text,message", [
    ("0x0 0xfff System RAM\n0x800 0x1fffff System RAM\n", r"e820:2: overlaps line 1"),
    ("0x0 0x9ffff Reserved\n", r"no usable RAM"),
    ("0x0 0x3fffffff Mystery\n", r"e820:1: unknown e820 type 'Mystery'"),
    ("0x0 0x3fffffff Persistent Memory\n", r"e820:1: .*not modelled"),
    ("BIOS-e820: [mem 0x0-0x3fffffff usable\n", r"e820:1: not an e820 entry"),
    ("nothing here\n", r"no e820 entry"),
])
def test_a_malformed_map_is_one_line_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(E820Error, match=message) as e:
        parse_e820(text)
    assert "\n" not in str(e.value)


def test_cli_e820_boots_the_map_and_refuses_a_bad_one(tmp_path) -> None:
    good, bad = tmp_path / "dmesg.txt", tmp_path / "bad.txt"
    good.write_text(DMESG)
    bad.write_text("0x0 0xfff System RAM\n0x800 0x1fffff System RAM\n")
    p = subprocess.run(["mmintro", "simulate", "--e820", str(good), "--output", str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    z = subprocess.run(["mmintro", "zoneinfo", str(tmp_path / "m")], capture_output=True, text=True).stdout
    assert _zones(z) == {(0, "DMA"): (1, 4095, 3998), (0, "DMA32"): (4096, 258016, 258016)}
    p = subprocess.run(["mmintro", "simulate", "--e820", str(bad), "--output", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=300)
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


@pytest.mark.parametrize("which", ["real_dump", pytest.param("real_dump_numa2_l5", marks=pytest.mark.slow)])
def test_like_a_real_machine_gives_its_zones(request, which: str) -> None:
    """Booted like the real kernel's machine (its e820 table, CPUs, node ranges), the simulator's
    zones start, span and hold exactly the pages the real kernel's do."""
    from mmintro.reader.dump import open_dump

    ref = request.getfixturevalue(which)
    found = machine_of_dump(open_dump(str(ref.path("elf")), ref.vmlinuz))
    cfg = MachineConfig(**{k: v for k, v in found.items() if v is not None})
    cfg.validate()
    k = boot(cfg)
    real = _zones(ref.proc("zoneinfo"))
    ours = {(nid, z.name): (z.start_pfn, z.spanned, z.present) for nid, zs in enumerate(k.zones) for z in zs
            if z.spanned}
    assert ours == real


def _pagesets(text: str) -> dict:
    """(node, zone) -> (high_min, batch, stat threshold) of CPU 0's pageset in /proc/zoneinfo."""
    out = {}
    for block in re.split(r"^Node ", text, flags=re.M)[1:]:
        m = re.match(r"(\d+), zone\s+(\w+)", block)
        hm, b = re.search(r"high_min: (\d+)", block), re.search(r"batch: +(\d+)", block)
        th = re.search(r"vm stats threshold: (\d+)", block)
        if m and hm:
            out[(int(m.group(1)), m.group(2))] = (int(hm.group(1)), int(b.group(1)), int(th.group(1)))
    return out


@pytest.mark.parametrize("which", ["real_dump", pytest.param("real_dump_numa2_l5", marks=pytest.mark.slow)])
def test_like_a_real_machine_gives_its_pagesets(request, which: str, tmp_path) -> None:
    """The pagesets as 6.18 leaves them after THP raised min_free_kbytes (setup_per_zone_wmarks ->
    zone_pcp_update): batch and stat thresholds equal the real kernel's, high_min (the low watermark
    over the node's CPUs) within 0.3% (the managed pages differ by that much)."""
    from mmintro.reader import open_snapshot
    from mmintro.reader.dump import open_dump
    from mmintro.snapshot.writer import save
    from mmintro.views.zoneinfo import render, zoneinfo

    ref = request.getfixturevalue(which)
    found = machine_of_dump(open_dump(str(ref.path("elf")), ref.vmlinuz))
    k = boot(MachineConfig(**{key: v for key, v in found.items() if v is not None}))
    save(k, tmp_path / "like")
    ours = _pagesets(render(zoneinfo(open_snapshot(str(tmp_path / "like")))))
    real = _pagesets(ref.proc("zoneinfo"))
    assert ours.keys() == real.keys()
    for key, (hmin, batch, threshold) in real.items():
        assert (ours[key][1], ours[key][2]) == (batch, threshold), key
        assert abs(ours[key][0] - hmin) <= max(1, hmin * 3 // 1000), (key, ours[key][0], hmin)


@pytest.mark.parametrize("which", ["real_dump", pytest.param("real_dump_numa2_l5", marks=pytest.mark.slow)])
def test_like_a_real_machine_maps_as_much_directly(request, which: str) -> None:
    """init_mem_mapping(): the ISA range's 256 pages and every RAM range map as the real kernel's
    did, so DirectMap4k + 2M + 1G sum to the real total.  (After boot the real kernel splits
    some 2 MiB pages of the image's direct-map alias into 4 KiB ones: mark_rodata_ro's and the
    image-freeing set_memory_* calls, which the simulator does not make; so the split differs.)"""
    from mmintro.kernel.init_64 import PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K
    from mmintro.reader.dump import open_dump

    ref = request.getfixturevalue(which)
    found = machine_of_dump(open_dump(str(ref.path("elf")), ref.vmlinuz))
    k = boot(MachineConfig(**{key: v for key, v in found.items() if v is not None}))
    count = k.pt.direct_pages_count
    ours = (count.get(PG_LEVEL_4K, 0) << 12) + (count.get(PG_LEVEL_2M, 0) << 21) + (count.get(PG_LEVEL_1G, 0) << 30)
    real = sum(int(m.group(1)) << 10 for m in re.finditer(r"^DirectMap\w+:\s+(\d+) kB", ref.proc("meminfo"), re.M))
    assert ours == real


def test_a_node_without_a_cpu_is_refused_in_one_line(tmp_path) -> None:
    p = subprocess.run(["mmintro", "simulate", "--nodes", "2", "--cpus", "1", "--output", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == ["mmintro: error: 2 nodes need at least 2 CPUs (each node has a CPU), not 1"]
