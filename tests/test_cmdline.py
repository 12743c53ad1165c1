"""The kernel command line (``MachineConfig.cmdline``, ``mmintro simulate --cmdline``): the
memory options users set take effect as in Linux 6.18.

Expected values come from the kernel's formulas worked here by hand or from the snapshot's
other numbers (zoneinfo's managed pages, meminfo's MemTotal), never from the simulator's own
functions; the real kernel's dump is the oracle for reading a command line back."""

from __future__ import annotations

import re
import subprocess

import pytest

from mmintro.kernel import cmdline as C
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.e820 import E820_TYPE_ACPI, E820_TYPE_RAM, E820_TYPE_RESERVED, build_e820, e820_user_map
from mmintro.kernel.machine import boot

GiB, MiB = 1 << 30, 1 << 20
MAX_ORDER_NR_PAGES = 1024


# -- parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,value,rest",
    [
        ("512M", 512 << 20, ""),
        ("2g", 2 << 30, ""),
        ("64K", 64 << 10, ""),
        ("1T", 1 << 40, ""),
        ("1P", 1 << 50, ""),
        ("1E", 1 << 60, ""),
        ("0x1000", 0x1000, ""),
        ("0x10G", 16 << 30, ""),
        ("010k", 8 << 10, ""),  # a leading 0 is octal (simple_strtoull base 0)
        ("0x1e", 0x1E, ""),  # hex digits, not the E suffix
        ("64M@0x1000", 64 << 20, "@0x1000"),
        ("12Q", 12, "Q"),
    ],
)
def test_memparse_reads_like_lib_cmdline(text: str, value: int, rest: str) -> None:
    assert C.memparse(text) == (value, rest)


def test_the_three_passes_sort_the_options() -> None:
    p = C.parse_cmdline(
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet splash mem=1G memmap=64M$0x10000000 "
        "hugepagesz=1G hugepages=2 hugepagesz=2M hugepages=0:10,1:5 default-hugepagesz=1G "
        "kernelcore=25% movablecore=1G movablecore=2G movable-core=3G transparent_hugepage=never "
        "sysctl.vm.min_free_kbytes=65536 sysctl/vm/watermark_scale_factor=200 "
        'sysctl.vm.lowmem_reserve_ratio="64 64 8 0 0" usbcore.autosuspend=-1 -- single'
    )
    assert p.e820_params == (("mem", "1G"), ("memmap", "64M$0x10000000"))
    # repeated hugepagesz=/hugepages= pairs stay in order; '-' and '_' are the same in names
    assert p.hugetlb_params == (
        ("hugepagesz", "1G"),
        ("hugepages", "2"),
        ("hugepagesz", "2M"),
        ("hugepages", "0:10,1:5"),
        ("default_hugepagesz", "1G"),
    )
    assert (p.kernelcore, p.movablecore, p.thp) == ("25%", "2G", "never")  # the last one wins
    # quotes keep the vector together; sysctl/vm/X is sysctl.vm.X
    assert p.sysctl == (
        ("vm.min_free_kbytes", "65536"),
        ("vm.watermark_scale_factor", "200"),
        ("vm.lowmem_reserve_ratio", "64 64 8 0 0"),
    )
    # init gets what the kernel does not know (argv and envp; movable_core is not movablecore)
    # and what follows '--'; a dotted name is a module parameter, root/ro/quiet are the kernel's
    assert p.unknown == ("BOOT_IMAGE=/vmlinuz", "splash", "movable-core=3G", "single")


@pytest.mark.parametrize(
    "text,named",
    [
        ("mem=12Q", "mem=12Q"),
        ("mem=0", "mem=0"),
        ("mem", "mem"),
        ("mem=nopentium", "mem=nopentium"),
        ("memmap=64M^0x1000", "memmap=64M^0x1000"),
        ("memmap=exactmapx", "memmap=exactmapx"),
        ("kernelcore=150%", "kernelcore=150%"),
        ("movablecore=lots", "movablecore=lots"),
        ("hugepagesz=3M", "hugepagesz=3M"),
        ("default_hugepagesz=4k", "default_hugepagesz=4k"),
        ("hugepages=-1", "hugepages=-1"),
        ("hugepages=0:2,1", "hugepages=0:2,1"),
        ("transparent_hugepage=sometimes", "transparent_hugepage=sometimes"),
        ("hugepage_alloc_threads=0", "hugepage_alloc_threads=0"),
        ("sysctl.vm.min_free_kbytes=-1", "sysctl.vm.min_free_kbytes=-1"),
        ("sysctl.vm.min_free_kbytes=lots", "sysctl.vm.min_free_kbytes=lots"),
        ("sysctl.vm.watermark_scale_factor=3001", "sysctl.vm.watermark_scale_factor=3001"),
        ("sysctl.vm.percpu_pagelist_high_fraction=4", "sysctl.vm.percpu_pagelist_high_fraction=4"),
        ("sysctl.vm.overcommit_memory=3", "sysctl.vm.overcommit_memory=3"),
        ("sysctl.vm.dirty_bytes=4096", "sysctl.vm.dirty_bytes=4096"),  # below 2 pages
        ('sysctl.vm.lowmem_reserve_ratio="1 2 3 4 5 6"', "sysctl.vm.lowmem_reserve_ratio=1 2 3 4 5 6"),
        ("sysctl.vm.swappiness", "sysctl.vm.swappiness"),
        ("hugepages=2:4", "hugepages=2:4"),  # node 2 is not online on a 2-node machine
        ("memmap=exactmap memmap=1G@0", "Invalid user supplied memory map"),  # one entry: the kernel panics
    ],
)
def test_a_malformed_value_is_one_line_naming_the_option(text: str, named: str) -> None:
    with pytest.raises(C.CmdlineError) as e:
        MachineConfig(ram=2 * GiB, nodes=2, cmdline=text).validate()
    assert named in str(e.value) and "\n" not in str(e.value)


def test_a_field_and_the_command_line_must_agree() -> None:
    cfg = MachineConfig(ram=2 * GiB, cmdline="movablecore=512M transparent_hugepage=always")
    assert (cfg.movablecore, cfg.thp) == ("512M", "always")
    assert MachineConfig(ram=2 * GiB, movablecore="512M", cmdline="movablecore=512M").movablecore == "512M"
    with pytest.raises(ValueError, match="movablecore"):
        MachineConfig(ram=2 * GiB, movablecore="1G", cmdline="movablecore=512M")


# -- mem= and memmap=: the e820 table ---------------------------------------------------------
def _table(entries) -> list[tuple[int, int, int]]:
    return [(e.addr, e.end, e.type) for e in entries]


def test_mem_removes_the_usable_ram_above_it_and_only_ram() -> None:
    fw = build_e820(2 * GiB)  # RAM to 2 GiB - 128 KiB, then ACPI data and NVS below 2 GiB
    out, log = e820_user_map(fw, (("mem", "1G"),))
    ram = [(a, b) for a, b, t in _table(out) if t == E820_TYPE_RAM]
    assert ram == [(0x1000, 0x9FC00), (0x100000, GiB)]
    # e820__range_remove(mem_size, ULLONG_MAX - mem_size, E820_TYPE_RAM, 1): the ACPI tables and
    # the reserved ranges above 1 GiB stay
    assert [e for e in _table(out) if e[0] >= GiB] == [e for e in _table(fw) if e[0] >= GiB and e[2] != E820_TYPE_RAM]
    # parse_memopt's e820__range_remove(mem_size, ULLONG_MAX - mem_size, E820_TYPE_RAM, 1), KERN_DEBUG
    assert log[0] == (7, "e820: remove [mem 0x40000000-0xfffffffffffffffe] usable")
    assert log[1] == (6, "user-defined physical RAM map:") and log[-1][1].startswith("user: [mem 0x00000000fffc0000-")


def test_memmap_adds_reserves_retypes_and_exactmap_starts_over() -> None:
    fw = build_e820(GiB)
    out, _ = e820_user_map(fw, (("memmap", "64M$0x10000000"),))
    # the reserved range splits the usable one; the higher type wins the overlap (e820__update_table)
    assert (0x100000, 0x10000000, E820_TYPE_RAM) in _table(out)
    assert (0x10000000, 0x14000000, E820_TYPE_RESERVED) in _table(out)
    assert (0x14000000, GiB - 128 * 1024, E820_TYPE_RAM) in _table(out)
    out, _ = e820_user_map(fw, (("memmap", "16M%0x20000000-1+3"),))  # usable -> ACPI data
    assert (0x20000000, 0x21000000, E820_TYPE_ACPI) in _table(out)
    out, _ = e820_user_map(fw, (("memmap", "exactmap,640K@0,511M@1M"),))
    assert _table(out) == [(0, 640 << 10, E820_TYPE_RAM), (MiB, 512 * MiB, E820_TYPE_RAM)]
    out, _ = e820_user_map(fw, (("memmap", "256M"),))  # a bare size is mem=
    assert max(b for a, b, t in _table(out) if t == E820_TYPE_RAM) == 256 * MiB


# -- booted machines: /proc/zoneinfo and /proc/meminfo ------------------------------------------
def _snapshot(tmp_path, cfg: MachineConfig):
    from mmintro.reader import open_snapshot
    from mmintro.snapshot.writer import save

    k = boot(cfg)
    save(k, tmp_path / "m")
    return k, open_snapshot(str(tmp_path / "m"))


def _zoneinfo(prog) -> dict[tuple[int, str], dict]:
    """(node, zone) -> the numbers /proc/zoneinfo shows for it (CPU 0's pageset)."""
    from mmintro.views.zoneinfo import render, zoneinfo

    return _zoneinfo_text(render(zoneinfo(prog)))


def _zoneinfo_text(text: str) -> dict[tuple[int, str], dict]:
    out = {}
    for block in re.split(r"^Node ", text, flags=re.M)[1:]:
        m = re.match(r"(\d+), zone\s+(\w+)", block)
        z: dict = {}
        for key in ("min", "low", "high", "spanned", "present", "managed", "start_pfn"):
            f = re.search(rf"^\s+{key}:?\s+(\d+)", block, re.M)
            if f:
                z[key] = int(f.group(1))
        prot = re.search(r"protection: \(([\d, ]+)\)", block)
        z["protection"] = [int(x) for x in prot.group(1).split(",")] if prot else []
        for key in ("batch", "high_min", "high_max"):
            f = re.search(rf"^\s+{key}:\s+(\d+)", block, re.M)
            if f:
                z[key] = int(f.group(1))
        out[(int(m.group(1)), m.group(2))] = z
    return out


def _meminfo(prog) -> dict[str, int]:
    from mmintro.views.meminfo import meminfo, parse, render

    return parse(render(meminfo(prog)))


def _log(k) -> str:
    return "\n".join(k.log)


def test_mem_truncates_the_zones_and_memtotal(tmp_path) -> None:
    k, prog = _snapshot(tmp_path, MachineConfig(ram=2 * GiB, cmdline="mem=1G"))
    z = _zoneinfo(prog)
    # RAM is pfns [1, 0x9f) and [0x100, 0x40000): DMA 1..4096 holds 158 + 3840 pages, DMA32 the rest
    assert (z[0, "DMA"]["start_pfn"], z[0, "DMA"]["spanned"], z[0, "DMA"]["present"]) == (1, 4095, 158 + 3840)
    assert (z[0, "DMA32"]["start_pfn"], z[0, "DMA32"]["spanned"], z[0, "DMA32"]["present"]) == (
        4096,
        0x40000 - 4096,
        0x40000 - 4096,
    )
    assert _meminfo(prog)["MemTotal"] < 1 << 20  # kB
    assert "user-defined physical RAM map:" in _log(k)
    assert "user: [mem 0x0000000000100000-0x000000003fffffff] usable" in _log(k)
    assert "BIOS-e820: [mem 0x0000000000100000-0x000000007ffdffff] usable" in _log(k)  # the firmware's map
    from mmintro.views.iomem import iomem, render

    ram = re.findall(r"^([0-9a-f]+)-([0-9a-f]+) : System RAM$", render(*iomem(prog)), re.M)
    assert ram[-1] == ("00100000", "3fffffff")


def test_exactmap_zones_start_at_pfn_0(tmp_path) -> None:
    k = boot(MachineConfig(ram=2 * GiB, cmdline="memmap=exactmap memmap=640K@0,1023M@1M"))
    dma = k.zones[0][0]
    assert (dma.start_pfn, dma.spanned, dma.present) == (0, 4096, 160 + 3840)


def _first_pages_end(ranges: list[tuple[int, int]], n: int) -> int:
    """The pfn after the first ``n`` pages of RAM, lowest first."""
    for s, e in ranges:
        if n <= e - s:
            return s + n
        n -= e - s
    raise AssertionError("not that much RAM")


def test_movablecore_carves_zone_movable_from_the_top(tmp_path) -> None:
    k, prog = _snapshot(tmp_path, MachineConfig(ram=2 * GiB, cmdline="movablecore=500M"))
    z = _zoneinfo(prog)
    ram = [(1, 0x9F), (0x100, 0x7FFE0)]  # the generic 2 GiB PC's usable pfns
    total = sum(e - s for s, e in ram)
    movable = -(-(500 * MiB >> 12) // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES  # rounded up to MAX_ORDER
    # one node: the kernel keeps the lowest total - movable pages; ZONE_MOVABLE starts after
    # them, rounded up to MAX_ORDER_NR_PAGES
    start = -(-_first_pages_end(ram, total - movable) // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
    mov, dma32 = z[0, "Movable"], z[0, "DMA32"]
    assert (mov["start_pfn"], mov["spanned"], mov["present"]) == (start, 0x7FFE0 - start, 0x7FFE0 - start)
    assert (dma32["spanned"], dma32["present"]) == (start - 4096, start - 4096)  # Normal is empty on 2 GiB
    assert 0 < mov["managed"] <= mov["present"]
    # __setup_per_zone_wmarks: ZONE_MOVABLE's min is capped, clamp(managed / 1024, 32, 128)
    assert mov["min"] == min(max(mov["managed"] // 1024, 32), 128)
    # lowmem_reserve: DMA32 keeps managed(Movable) / 256 against Movable requests
    assert dma32["protection"][3] == mov["managed"] // 256
    assert f"  Node 0: {start << 12:#018x}" in _log(k)
    mi = _meminfo(prog)
    assert mi["MemTotal"] == sum(v["managed"] for v in z.values()) * 4


def test_kernelcore_is_spread_evenly_over_the_nodes() -> None:
    # 2 GiB over 2 nodes: node 0 pfns [1, 0x9f) + [0x100, 0x40000), node 1 [0x40000, 0x7ffe0).
    # kernelcore=512M = 131072 pages, 65536 per node.  Node 0: its pages below DMA32 (the zone
    # ZONE_MOVABLE comes from on a machine without Normal) count first: 158 + (4096 - 256);
    # the remaining 61538 end at pfn 4096 + 61538 = 65634 -> rounded up to 66560.
    # Node 1: 0x40000 + 65536 = 327680, already aligned.
    k = boot(
        MachineConfig(ram=2 * GiB, nodes=2, cpus=2, node_ranges=((0, GiB), (GiB, 2 * GiB)), cmdline="kernelcore=512M")
    )
    mov = [k.zones[n][3] for n in (0, 1)]
    assert [m.start_pfn for m in mov] == [66560, 327680]
    assert [m.spanned for m in mov] == [0x40000 - 66560, 0x7FFE0 - 327680]
    assert [k.zones[n][1].end_pfn for n in (0, 1)] == [66560, 327680]
    assert "  Node 0: 0x0000000010400000\n  Node 1: 0x0000000050000000" in _log(k)


def test_a_user_min_free_kbytes_wins_over_thps_and_the_watermarks_follow(tmp_path) -> None:
    cl = (
        "transparent_hugepage=always movablecore=256M sysctl.vm.min_free_kbytes=16384 "
        "sysctl.vm.watermark_scale_factor=100"
    )
    k, prog = _snapshot(tmp_path, MachineConfig(ram=2 * GiB, cmdline=cl))
    assert (prog["min_free_kbytes"].value_(), prog["user_min_free_kbytes"].value_()) == (16384, 16384)
    assert prog["watermark_scale_factor"].value_() == 100
    z = _zoneinfo(prog)
    pages_min = 16384 >> 2
    lowmem = sum(v["managed"] for (n, name), v in z.items() if name != "Movable")
    for (_n, name), v in z.items():
        if not v.get("managed"):
            continue
        tmp = pages_min * v["managed"] // lowmem
        wmin = min(max(v["managed"] // 1024, 32), 128) if name == "Movable" else tmp
        step = max(tmp >> 2, v["managed"] * 100 // 10000)
        assert (v["min"], v["low"], v["high"]) == (wmin, wmin + step, wmin + 2 * step), name


def test_thp_raises_min_free_kbytes_without_a_user_value(tmp_path) -> None:
    # set_recommended_min_free_kbytes(): (2 + 3 * 3) pageblocks for each populated zone up to
    # Normal (DMA and DMA32 here), 512 pages each, at most 5% of the low memory
    k = boot(MachineConfig(ram=2 * GiB, cmdline="transparent_hugepage=always"))
    assert k.min_free_kbytes == 11 * 512 * 2 * 4
    never = boot(MachineConfig(ram=2 * GiB, cmdline="transparent_hugepage=never"))
    from mmintro.kernel.huge_memory import hugepage_global_enabled

    assert never.min_free_kbytes < k.min_free_kbytes and not hugepage_global_enabled(never)


def test_lowmem_reserve_ratio_and_percpu_pagelist_high_fraction(tmp_path) -> None:
    cl = 'movablecore=256M sysctl.vm.lowmem_reserve_ratio="64 32 8 0 0" sysctl.vm.percpu_pagelist_high_fraction=16'
    k, prog = _snapshot(tmp_path, MachineConfig(ram=2 * GiB, cpus=2, cmdline=cl))
    z = _zoneinfo(prog)
    dma, dma32, mov = z[0, "DMA"]["managed"], z[0, "DMA32"]["managed"], z[0, "Movable"]["managed"]
    # setup_per_zone_lowmem_reserve(): zone i keeps (managed of zones i+1..j) / ratio[i]
    assert z[0, "DMA"]["protection"] == [0, dma32 // 64, dma32 // 64, (dma32 + mov) // 64, (dma32 + mov) // 64]
    assert z[0, "DMA32"]["protection"] == [0, 0, 0, mov // 32, mov // 32]
    assert dma and z[0, "Movable"]["protection"] == [0, 0, 0, 0, 0]
    # zone_highsize(): managed / fraction over the node's 2 CPUs, at least 4 batches; high_max too
    for name in ("DMA", "DMA32", "Movable"):
        v = z[0, name]
        high = max(v["managed"] // 16 // 2, v["batch"] * 4)
        assert (v["high_min"], v["high_max"]) == (high, high), name


def test_overcommit_and_dirty_sysctls(tmp_path) -> None:
    cl = "sysctl.vm.overcommit_memory=2 sysctl.vm.overcommit_ratio=80 sysctl.vm.dirty_bytes=67108864"
    k, prog = _snapshot(tmp_path, MachineConfig(ram=GiB, cpus=2, cmdline=cl))
    mi = _meminfo(prog)
    # vm_commit_limit(): totalram * overcommit_ratio / 100 (no huge pages, no swap)
    assert mi["CommitLimit"] == (mi["MemTotal"] // 4 * 80 // 100) * 4
    assert prog["sysctl_overcommit_memory"].value_() == 2
    # mm_compute_batch(OVERCOMMIT_NEVER): 0.4% of totalram per CPU, at least 32
    assert prog["vm_committed_as_batch"].value_() == max(mi["MemTotal"] // 4 // 2 // 256, 32)
    # dirty_bytes_handler(): vm_dirty_ratio = 0; the threshold is the byte count in pages
    assert (prog["vm_dirty_bytes"].value_(), prog["vm_dirty_ratio"].value_()) == (64 * MiB, 0)
    from mmintro.views.vmstat import global_dirty_limits

    assert global_dirty_limits(prog).dirty == 64 * MiB // 4096


def test_hugepagesz_pairs_in_order_and_default_hugepagesz(tmp_path) -> None:
    cl = "hugepagesz=2M hugepages=64 hugepagesz=1G hugepages=1 default_hugepagesz=1G"
    k, prog = _snapshot(tmp_path, MachineConfig(ram=3 * GiB, cmdline=cl))
    # hugetlb_parse_params(): hstates in command-line order, the 1 GiB one the default
    assert [prog["hstates"][i].name.string_() for i in range(2)] == [b"hugepages-2048kB", b"hugepages-1048576kB"]
    assert prog["default_hstate_idx"].value_() == 1 and prog["hugetlb_max_hstate"].value_() == 2
    mi = _meminfo(prog)
    assert (mi["HugePages_Total"], mi["Hugepagesize"]) == (1, 1 << 20)
    assert mi["Hugetlb"] == 64 * 2048 + (1 << 20)


def test_node_specific_hugepages_and_a_repeated_count(tmp_path) -> None:
    k = boot(MachineConfig(ram=2 * GiB, nodes=2, cpus=2, cmdline="hugepagesz=2M hugepages=0:3,1:5"))
    h = next(h for h in k.hstates if h.size == 2 * MiB)
    assert (h.nr_huge_pages_node[:2], h.max_huge_pages) == ([3, 5], 8)
    # hugepages= twice without a hugepagesz= between: the second is ignored with the kernel's warning
    k = boot(MachineConfig(ram=GiB, cmdline="hugepages=5 hugepages=6 sysctl.vm.nr_overcommit_hugepages=2"))
    h = next(h for h in k.hstates if h.size == 2 * MiB)
    assert (h.nr_huge_pages, h.nr_overcommit_huge_pages) == (5, 2)
    assert "HugeTLB: hugepages= specified twice without interleaving hugepagesz=, ignoring hugepages=6" in _log(k)


# -- the command line itself --------------------------------------------------------------------
@pytest.mark.slow  # four CLI boots: ~3.5 s
def test_cli_cmdline_is_saved_and_logged_and_a_bad_one_is_one_line(tmp_path) -> None:
    p = subprocess.run(
        [
            "mmintro",
            "simulate",
            "--ram",
            "1G",
            "--cmdline",
            "mem=768M quiet foo bar=1",
            "--output",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    import drgn

    from mmintro.reader import open_snapshot
    from mmintro.reader.helpers.printk import dmesg_records

    prog = drgn.Program()  # real drgn reads saved_command_line as the kernel left it
    prog.set_core_dump(str(tmp_path / "c.vmcore"))
    prog.create_loaded_modules()
    prog.main_module().try_file(str(tmp_path / "c.vmlinux"), force=True)
    assert prog["saved_command_line"].string_() == b"mem=768M quiet foo bar=1"
    log = [r.text for r in dmesg_records(open_snapshot(str(tmp_path / "c")))]
    assert "Command line: mem=768M quiet foo bar=1" in log
    assert "Kernel command line: mem=768M quiet foo bar=1" in log
    assert 'Unknown kernel command line parameters "foo bar=1", will be passed to user space.' in log
    p = subprocess.run(
        ["mmintro", "simulate", "--ram", "1G", "--cmdline", "quiet movablecore=12Q", "--output", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "mmintro: error: kernel command line: movablecore=12Q: malformed early option 'movablecore': "
        "not a size or a percentage (NUMBER[KMGTPE], e.g. 512M)"
    ]


def test_like_reads_the_real_kernels_command_line(real_dump) -> None:
    """``--like DUMP``: the command line is the dump's saved_command_line, the text the real
    kernel's /proc/cmdline showed."""
    from mmintro.reader.dump import open_dump

    text = C.command_line_of_dump(open_dump(str(real_dump.path("elf")), real_dump.vmlinuz))
    assert text == real_dump.proc("cmdline").strip()
    assert C.parse_cmdline(text).unknown == ()  # console=, panic=, loglevel=, rdinit= are the kernel's


def test_sysctl_writes_the_kernel_refuses_are_logged_as_it_logs_them() -> None:
    # Debian's 6.18 booted with these options printed these two lines (KERN_ERR) and went on:
    # hugetlb_overcommit_handler() refuses surplus gigantic pages; vm.bogus is no sysctl
    k = boot(
        MachineConfig(
            ram=GiB, cmdline="hugepagesz=1G default_hugepagesz=1G sysctl.vm.nr_overcommit_hugepages=3 sysctl.vm.bogus=1"
        )
    )
    errors = [r.text for r in k.printk_records if r.level == 3]
    assert errors[-2:] == [
        "Failed to set sysctl parameter 'vm.nr_overcommit_hugepages=3': invalid value",
        "Failed to set sysctl parameter 'vm.bogus=1': parameter not found",
    ]
    assert k.hstates[k.default_hstate_idx].size == GiB


# -- the real kernel booted with the same options ------------------------------------------------
REAL = __import__("pathlib").Path(__file__).parent / "data" / "realkernel-cmdline"


@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_the_real_kernel_booted_with_the_same_command_line(tmp_path, case: str) -> None:
    """tests/data/realkernel-cmdline: Debian's 6.18 under QEMU with mem=, movablecore=/kernelcore=,
    hugepages, THP and vm sysctls on its command line.  Booted on the same firmware map (its
    "BIOS-e820:" lines), nodes, image load address and command line, the simulator's zones start, span and hold the
    same pages; managed pages, watermarks, lowmem reserves and pagesets agree within 0.3% (the
    memory the simulator does not reserve); the huge page pools and the memory options' boot
    log lines are the real ones."""
    import json

    from mmintro.kernel.e820 import parse_e820

    d = REAL / case
    m = json.loads((d / "machine.json").read_text())
    dmesg = (d / "dmesg").read_text().splitlines()
    bios = "\n".join(line for line in dmesg if "BIOS-e820:" in line)
    cfg = MachineConfig(
        e820=tuple(parse_e820(bios)),
        cpus=m["cpus"],
        nodes=m["nodes"],
        node_ranges=tuple(map(tuple, m["node_ranges"])) if m["node_ranges"] else None,
        cpu_nodes=tuple(m["cpu_nodes"]) if m["cpu_nodes"] else None,
        # where KASLR put the image (inside ZONE_MOVABLE on a/), and the build's layout
        kernel_phys=m["kernel_phys"],
        kernel_layout=_layout(m["kernel_layout"]),
        # QEMU's initrd, at the top of RAM: above mem= on a/, where the kernel copies
        # it lower (relocate_initrd)
        initrd=tuple(m["initrd"]),
        cmdline=(d / "cmdline").read_text().strip(),
    )
    k, prog = _snapshot(tmp_path, cfg)
    ours, real = _zoneinfo(prog), _zoneinfo_text((d / "zoneinfo").read_text())
    assert ours.keys() == real.keys()
    for key, r in real.items():
        o = ours[key]
        assert [o.get(f) for f in ("start_pfn", "spanned", "present")] == [
            r.get(f) for f in ("start_pfn", "spanned", "present")
        ], key
        # (2 pages of slack for small values: b/'s watermarks date from THP's setup_per_zone_wmarks
        # at subsys_initcall time, when the two boots' reservations differed by a little more)
        for f in ("managed", "min", "low", "high", "high_min", "high_max", "batch"):
            if f in r:
                assert abs(o[f] - r[f]) <= max(2, r[f] * 3 // 1000), (key, f, o[f], r[f])
        assert all(abs(a - b) <= max(1, b * 3 // 1000) for a, b in zip(o["protection"], r["protection"])), (
            key,
            o["protection"],
            r["protection"],
        )
    # reserve_initrd(): an initrd above mem= is moved to where the real kernel moved it
    moved = lambda lines: [re.search(r"\[mem (0x[0-9a-f]+)", x).group(1) for x in lines if "Allocated new RAMDISK" in x]
    assert moved(k.log) == moved(dmesg)
    ours_mi, real_mi = _meminfo(prog), _meminfo_text((d / "meminfo").read_text())
    for f in ("HugePages_Total", "Hugepagesize", "Hugetlb"):
        assert ours_mi[f] == real_mi[f], f
    wanted = re.compile(
        r"Movable zone start|^  Node \d+: 0x|^  node +\d+: \[mem|Zone ranges|^  (DMA|DMA32|Normal|Device) |"
        r"Kernel command line|Unknown kernel command line|Failed to set sysctl|HugeTLB: (registered|"
        r"allocating|\d+ KiB)|^Initmem setup|^Command line|mirror memory|"
        r"^e820: (update|remove) \[mem 0x(?!000)"
    )  # (not trim_bios_range's, below 1 MiB)
    real_lines = [line.split(">", 1)[1] for line in dmesg if wanted.search(line.split(">", 1)[1])]
    assert [line for line in _log(k).splitlines() if wanted.search(line)] == real_lines


def _layout(d: dict):
    from mmintro.kernel.kimage import ImageLayout

    return ImageLayout(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _meminfo_text(text: str) -> dict[str, int]:
    from mmintro.views.meminfo import parse

    return parse(text)
