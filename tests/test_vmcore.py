"""write_vmcore / CoreFile: the ELF core of physical memory, checked with pyelftools as oracle."""

from __future__ import annotations

import numpy as np
import pytest

from mmintro.reader.core import CoreFile
from mmintro.reader.errors import FaultError
from mmintro.snapshot.vmcore import nonzero_runs, read_vmcoreinfo, write_vmcore

PAGE = 4096
INFO = "OSRELEASE=6.18.0-test\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff82000000\n"


def _page(fill: int) -> bytes:
    return bytes([fill]) * PAGE


def test_runs_zero_tails_and_holes_read_back(tmp_path):
    path = tmp_path / "m.vmcore"
    runs = [(0x1000, _page(1)), (0x5000, _page(2) + _page(3)), (0x200000, _page(4))]
    write_vmcore(path, runs, INFO, ram_ranges=[(0, 0x9F000), (0x100000, 0x400000)])
    core = CoreFile(path)
    assert core.read_phys(0x1000, PAGE) == _page(1)
    assert core.read_phys(0x6000, 8) == b"\3" * 8
    assert core.read_phys(0x0, PAGE) == bytes(PAGE)  # RAM, never stored: zeros
    assert core.read_phys(0x3FF000, PAGE) == bytes(PAGE)  # zero tail of the last segment
    # a read across a stored run and its zero tail
    assert core.read_phys(0x6FF8, 16) == b"\3" * 8 + bytes(8)
    with pytest.raises(FaultError) as e:
        core.read_phys(0xA0000, 8)  # the legacy hole is not RAM
    assert e.value.address == 0xA0000
    with pytest.raises(FaultError):
        core.read_phys(0x400000, 1)
    assert core.ram_ranges == [(0, 0x9F000), (0x100000, 0x400000)]
    arr = core.read_phys_array(0x5000, 2 * PAGE)
    assert isinstance(arr, np.ndarray) and arr[0] == 2 and arr[-1] == 3


def test_pyelftools_sees_core_with_physical_segments(tmp_path):
    elftools = pytest.importorskip("elftools.elf.elffile")
    path = tmp_path / "m.vmcore"
    runs = [(0x1000, _page(1)), (0x200000, _page(4))]
    write_vmcore(path, runs, INFO, ram_ranges=[(0, 0x400000)], prstatus=[bytes(336)])
    with open(path, "rb") as f:
        elf = elftools.ELFFile(f)
        assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_X86_64"
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert all(s["p_vaddr"] == 0 and s["p_filesz"] <= s["p_memsz"] for s in loads)
        assert sum(s["p_memsz"] for s in loads) == 0x400000  # every RAM byte covered once
        assert any(s["p_filesz"] < s["p_memsz"] for s in loads)
        notes = [n for s in elf.iter_segments() if s["p_type"] == "PT_NOTE" for n in s.iter_notes()]
        names = [n["n_name"] for n in notes]
        assert names == ["CORE", "VMCOREINFO"]
        for s in loads:
            if s["p_paddr"] <= 0x200000 < s["p_paddr"] + s["p_filesz"]:
                f.seek(s["p_offset"] + 0x200000 - s["p_paddr"])
                assert f.read(PAGE) == _page(4)


def test_many_scattered_runs_stay_under_segment_limit(tmp_path):
    path = tmp_path / "m.vmcore"
    runs = [(i * 8 * PAGE, _page(i % 250 + 1)) for i in range(5000)]  # a page every 32 KiB
    write_vmcore(path, runs, INFO, ram_ranges=[(0, 5000 * 8 * PAGE)], max_segments=100)
    core = CoreFile(path)
    assert len(core.segments) <= 100
    for i in (0, 1, 2499, 4999):
        assert core.read_phys(i * 8 * PAGE, PAGE) == _page(i % 250 + 1)
        assert core.read_phys(i * 8 * PAGE + PAGE, PAGE) == bytes(PAGE)


def test_gdb_aliases_are_ignored_by_the_reader(tmp_path):
    path = tmp_path / "m.vmcore"
    runs = [(0x1000, _page(1)), (0x2000, _page(2))]
    write_vmcore(path, runs, INFO, aliases=[(0xFFFFFFFF81000000, 0x1000, 2 * PAGE)])
    core = CoreFile(path)
    assert [s.paddr for s in core.segments] == [0x1000]
    assert len(core.aliases) == 1 and core.aliases[0][0] == 0xFFFFFFFF81000000
    # the alias re-describes the same file bytes
    _, paddr, off, filesz, memsz = core.aliases[0]
    assert core.buf[off : off + PAGE] == _page(1) and filesz == memsz == 2 * PAGE


def test_nonzero_runs_finds_pages_without_copying():
    mem = np.zeros(16 * PAGE, dtype=np.uint8)
    mem[3 * PAGE + 5] = 1
    mem[4 * PAGE] = 2
    mem[9 * PAGE + 4095] = 3
    runs = nonzero_runs(mem, base=0x100000)
    assert [(p, len(d)) for p, d in runs] == [(0x103000, 2 * PAGE), (0x109000, PAGE)]


def test_read_vmcoreinfo_returns_keys(tmp_path):
    path = tmp_path / "m.vmcore"
    write_vmcore(path, [(0, _page(1))], INFO)
    info = read_vmcoreinfo(path)
    assert info["OSRELEASE"] == "6.18.0-test" and info["SYMBOL(swapper_pg_dir)"] == "ffffffff82000000"


def test_unaligned_or_unsorted_runs_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        write_vmcore(tmp_path / "a", [(0x10, _page(1))], INFO)
    with pytest.raises(ValueError):
        write_vmcore(tmp_path / "b", [(0x2000, _page(1)), (0x1000, _page(1))], INFO)
    with pytest.raises(ValueError):
        write_vmcore(tmp_path / "c", [(0x5000, _page(1))], INFO, ram_ranges=[(0, 0x1000)])


def test_ram_segments_carry_direct_map_addresses_and_null_faults(tmp_path) -> None:
    """kdump's RAM PT_LOADs have p_vaddr = __va(paddr); none maps virtual address 0, so a
    NULL dereference faults in drgn as on a real vmcore.  Data written across a node
    boundary (touching memblock regions) is saved."""
    import drgn

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.reader.elf import PHDR, PT_LOAD
    from mmintro.snapshot.writer import save

    k = boot(MachineConfig(ram=1 << 30, nodes=2, cpus=2))
    boundary = min(r.base for r in k.memblock.memory if r.nid == 1)
    k.mem.write(boundary - 4096, b"\x11" * 8192)
    core, vml = save(k, tmp_path / "n2")
    data = core.read_bytes()
    phoff, phnum = int.from_bytes(data[32:40], "little"), int.from_bytes(data[56:58], "little")
    loads = [PHDR.unpack_from(data, phoff + i * PHDR.size) for i in range(phnum)]
    loads = [p for p in loads if p[0] == PT_LOAD]
    assert loads and all(p[3] == k.page_offset_base + p[4] for p in loads)
    prog = open_drgn(str(core), str(vml))
    with pytest.raises(drgn.FaultError):
        prog.read(0x1000, 8)
    assert prog.read(k.phys_to_virt(boundary - 8), 16) == b"\x11" * 16
