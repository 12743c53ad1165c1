"""Every way a snapshot pair can be unusable gives one SnapshotError line naming the problem."""

from __future__ import annotations

import shutil
import struct

import pytest

from mmintro.reader import SnapshotError, open_snapshot
from mmintro.reader.synthetic import build_synthetic


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("syn"))


@pytest.fixture
def copy(syn, tmp_path):
    """A private copy of the pair: NAME (no extension)."""
    name = str(tmp_path / "snap")
    shutil.copy(syn.vmcore, name + ".vmcore")
    shutil.copy(syn.vmlinux, name + ".vmlinux")
    return name


def _poke(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _flip(path: str, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


def _error(*args) -> str:
    with pytest.raises(SnapshotError) as e:
        open_snapshot(*args).close()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_all_three_spellings_open(syn):
    for spec in (syn.path, syn.vmcore, (syn.vmcore, syn.vmlinux)):
        p = open_snapshot(spec)
        assert p["max_pfn"].value_() == 16384
        p.close()


def test_missing_vmcore(tmp_path):
    assert "does not exist" in _error(str(tmp_path / "nothing"))


def test_vmcore_without_vmlinux(copy):
    import os

    os.remove(copy + ".vmlinux")
    msg = _error(copy + ".vmcore")
    assert "has no vmlinux" in msg and "snap.vmlinux" in msg


def test_vmlinux_passed_as_the_core(copy):
    msg = _error((copy + ".vmlinux", copy + ".vmlinux"))
    assert "ET_EXEC, expected ET_CORE" in msg and "vmlinux?" in msg


def test_vmcore_passed_as_the_vmlinux(copy):
    msg = _error((copy + ".vmcore", copy + ".vmcore"))
    assert "ET_CORE" in msg and "vmcore?" in msg


def test_empty_and_short_files(copy):
    open(copy + ".vmcore", "wb").close()
    assert "is empty" in _error(copy)
    with open(copy + ".vmcore", "wb") as f:
        f.write(b"\x7fELF\x02\x01\x01")
    assert "shorter than an ELF header" in _error(copy)


def test_truncated_vmcore(copy):
    path = copy + ".vmcore"
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    msg = _error(copy)
    assert "truncated" in msg and "program header" in msg


def test_truncated_vmlinux(copy):
    path = copy + ".vmlinux"
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, 2) - 100)
    assert "truncated" in _error(copy)


@pytest.mark.parametrize(
    "offset,bit,expect",
    [
        (0, 0, "not an ELF file"),  # magic
        (4, 0, "ELF class"),  # ELFCLASS64 -> 3
        (5, 1, "data encoding"),  # little-endian -> 3
        (16, 2, "expected ET_CORE"),  # e_type 4 -> 0
        (18, 0, "not x86-64"),  # e_machine
        (0x36, 0, "program header entry size"),  # e_phentsize
    ],
)
def test_bit_flips_in_the_elf_header(copy, offset, bit, expect):
    _flip(copy + ".vmcore", offset, bit)
    assert expect in _error(copy)


def test_bit_flip_in_a_program_header_offset(copy):
    # second program header (the first PT_LOAD with data): set a high bit of p_offset
    phoff = struct.unpack_from("<Q", open(copy + ".vmcore", "rb").read(64), 32)[0]
    _flip(copy + ".vmcore", phoff + 56 * 3 + 8 + 3, 7)  # p_offset of phdr 3, bit 31
    assert "truncated" in _error(copy)


def test_filesz_larger_than_memsz(copy):
    phoff = struct.unpack_from("<Q", open(copy + ".vmcore", "rb").read(64), 32)[0]
    _poke(copy + ".vmcore", phoff + 56 * 3 + 40, struct.pack("<Q", 0x1000))  # p_memsz of phdr 3
    assert "p_filesz" in _error(copy)


def test_mismatched_build_ids(copy, tmp_path):
    from mmintro.snapshot.vmlinux import write_vmlinux
    from mmintro.types import get_types

    write_vmlinux(copy + ".vmlinux", get_types(), [], b"\xaa" * 20)
    msg = _error(copy)
    assert "mismatched" in msg and "aaaa" in msg


def test_vmlinux_without_types_section_falls_back_to_packaged_types(syn, copy):
    from mmintro.snapshot.vmlinux import Symbol, write_vmlinux
    from mmintro.types import get_types

    T = get_types()
    syms = [Symbol(n, a, 8, "object", T.var_type(n)) for n, a in syn.symbols.items() if n != "vmemmap_populate"]
    write_vmlinux(copy + ".vmlinux", T, syms, syn.build_id)
    p = open_snapshot(copy)
    assert p.types is T and p["max_pfn"].value_() == 16384
    p.close()


def test_missing_vmcoreinfo_note(copy):
    data = bytearray(open(copy + ".vmcore", "rb").read())
    i = data.find(b"VMCOREINFO")
    data[i : i + 10] = b"XMCOREINFO"
    open(copy + ".vmcore", "wb").write(data)
    assert "no VMCOREINFO" in _error(copy)
