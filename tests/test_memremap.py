"""ZONE_DEVICE: legacy persistent memory (e820 type 12, ``memmap=nn!ss``) mapped with
memremap_pages() as nd_pmem does, checked against Debian's 6.18 with nd_e820 and nd_pmem loaded
(the real-kernel harness's ``real-pmem`` machine: 2 GiB with 256 MiB at 1 GiB made pmem)."""

from __future__ import annotations

import re
import subprocess

import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot

PMEM = (0x40000000, 0x50000000)


def _page_words(read, vmemmap: int, pfn: int, size: int) -> list[int]:
    b = read(vmemmap + pfn * size, size)
    return [int.from_bytes(b[i : i + 8], "little") for i in range(0, size, 8)]


def _section(prog, nr: int) -> tuple[int, int]:
    """(section_mem_map flag bits, usage's subsection_map) of mem_section ``nr``."""
    T = prog.types
    ms = T.sizeof("struct mem_section")
    per_root = 4096 // ms
    root = int.from_bytes(prog.read(prog["mem_section"].value_() + 8 * (nr // per_root), 8), "little")
    sa = root + (nr % per_root) * ms
    smm = int.from_bytes(prog.read(sa, 8), "little")
    usage = int.from_bytes(prog.read(sa + T.struct("mem_section").offsetof("usage"), 8), "little")
    sub = int.from_bytes(prog.read(usage + T.struct("mem_section_usage").offsetof("subsection_map"), 8), "little")
    return smm & 0x3F, sub


def _device_state(prog) -> dict:
    """What memremap_pages() left: the Device zone, a device page's words (pgmap replaced by
    what it points at), the dev_pagemap, its reference count and the sections."""
    from mmintro.reader.object import Object

    T = prog.types
    pg = prog["node_data"][0]
    z = pg.node_zones[T.const("ZONE_DEVICE")]
    size = T.sizeof("struct page")
    vm = prog["vmemmap_base"].value_()
    pfn = PMEM[0] >> 12
    words = [_page_words(prog.read, vm, p, size) for p in (pfn, pfn + 1, (PMEM[1] >> 12) - 1)]
    pgmap = words[0][1]
    pm = Object(prog, "struct dev_pagemap", address=pgmap)
    data = pm.ref.data[0]
    counter = pm.ref.percpu_count_ptr.value_()
    gets = sum(
        int.from_bytes(prog.read((counter + prog["__per_cpu_offset"][c].value_()) & (2**64 - 1), 8), "little")
        for c in range(prog["nr_cpu_ids"].value_())
    )
    return {
        "zone": (
            z.zone_start_pfn.value_(),
            z.spanned_pages.value_(),
            z.present_pages.value_(),
            z.managed_pages.counter.value_(),
        ),
        "node": (pg.node_start_pfn.value_(), pg.node_spanned_pages.value_(), pg.node_present_pages.value_()),
        # flags: node, zone and PG_reserved (the rest of the word is LAST_CPUPID, whose width is the build's)
        "page": [(w[0] & (1 << T.const("PG_reserved")) != 0, w[1] == pgmap, w[2:8]) for w in words],
        "pgmap": (
            pm.type.value_(),
            pm.nr_range.value_(),
            pm.range.start.value_(),
            pm.range.end.value_(),
            pm.vmemmap_shift.value_(),
            pm.flags.value_(),
        ),
        "ref": (
            data.count.counter.value_() if hasattr(data.count, "counter") else data.count.value_(),
            data.ref.value_() == pgmap + T.struct("dev_pagemap").offsetof("ref"),
            gets,
        ),
        "sections": [_section(prog, nr) for nr in range(PMEM[0] >> 27, PMEM[1] >> 27)],
    }


@pytest.mark.slow
def test_like_the_real_pmem_machine(real_dump_pmem, tmp_path) -> None:
    """Booted like the real pmem machine, the simulator's ZONE_DEVICE is the kernel's: the Device
    zone and the node span, every device struct page (PG_reserved, pgmap, zone_device_data
    NULL, _mapcount -1, refcount 0), the dev_pagemap (FS_DAX, one range), its percpu_ref
    (percpu mode, one reference per page), the sections (present with a memory map, neither
    online nor early; all subsections), /proc/iomem, and the other zones as without pmem."""
    from mmintro.kernel.e820 import machine_of_dump
    from mmintro.reader import open_snapshot
    from mmintro.reader.dump import open_dump
    from mmintro.snapshot.writer import save
    from mmintro.views.iomem import iomem, render

    ref = real_dump_pmem
    real = open_dump(str(ref.path("elf")), ref.vmlinuz)
    found = machine_of_dump(real)
    k = boot(MachineConfig(**{key: v for key, v in found.items() if v is not None}))
    save(k, tmp_path / "pmem")
    ours = open_snapshot(str(tmp_path / "pmem"))
    a, b = _device_state(ours), _device_state(real)
    assert a == b
    assert a["zone"] == (PMEM[0] >> 12, (PMEM[1] - PMEM[0]) >> 12, 0, 0)
    assert a["sections"] == [(0x3, (1 << 64) - 1)] * 2
    rows, width = iomem(ours)
    assert render(rows, width) == ref.proc("iomem")
    assert "40000000-4fffffff : Persistent Memory (legacy)\n  40000000-4fffffff : namespace0.0\n" in ref.proc("iomem")


def test_memmap_bang_gives_zone_device_pages_drgn_reads(tmp_path) -> None:
    """``memmap=128M!512M`` on a 1 GiB machine: the range leaves the zones, comes back as the
    node's Device zone, and real drgn reads its struct pages (PG_reserved, zone Device, the
    dev_pagemap) and agrees with mmintro on the zone."""
    from drgn.helpers.linux.mm import PageReserved, pfn_to_page

    from mmintro.crosscheck import open_drgn
    from mmintro.snapshot.writer import save

    k = boot(MachineConfig(ram=1 << 30, cmdline="memmap=128M!0x20000000"))
    save(k, tmp_path / "m")
    prog = open_drgn(f"{tmp_path}/m.vmcore", f"{tmp_path}/m.vmlinux")
    z = prog["node_data"][0].node_zones[prog["ZONE_DEVICE"]]
    assert (z.zone_start_pfn.value_(), z.spanned_pages.value_(), z.present_pages.value_()) == (0x20000, 0x8000, 0)
    page = pfn_to_page(prog, 0x20000 + 12345)
    assert PageReserved(page)
    from mmintro.kernel import config as kc

    assert page.flags.f.value_() >> kc.ZONES_PGOFF & ((1 << kc.ZONES_SHIFT) - 1) == prog["ZONE_DEVICE"].value_()
    pgmap = drgn_pgmap(prog, page)
    assert pgmap.type.value_() == prog["MEMORY_DEVICE_FS_DAX"].value_()
    assert (pgmap.range.start.value_(), pgmap.range.end.value_()) == (0x20000000, 0x27FFFFFF)
    assert page._refcount.counter.value_() == 0
    # the zones the RAM is in lost the range: DMA32 spans the hole it left as absent pages
    dma32 = next(z for z in k.zones[0] if z.name == "DMA32")
    assert dma32.present == dma32.spanned - 0x8000 - (dma32.start_pfn + dma32.spanned - (0x3FFE0000 >> 12))
    out = subprocess.run(["mmintro", "zoneinfo", str(tmp_path / "m")], capture_output=True, text=True).stdout
    block = out[out.index("zone   Device") :]
    assert re.search(r"spanned\s+32768\n\s+present\s+0\n\s+managed\s+0", block)


def drgn_pgmap(prog, page):
    """``page_folio(page)->pgmap`` through drgn (struct folio's pgmap over lru.next)."""
    import drgn

    folio = drgn.cast("struct folio *", page)
    return folio.pgmap[0]


def test_unaligned_pmem_is_refused_in_one_line(tmp_path) -> None:
    p = subprocess.run(
        ["mmintro", "simulate", "--ram", "1G", "--cmdline", "memmap=1M!0x20000000", "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "mmintro: error: persistent memory [0x20000000-0x200fffff] is not 2 MiB "
        "aligned (memremap_pages maps whole subsections)"
    ]
