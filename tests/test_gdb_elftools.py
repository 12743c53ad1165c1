"""GDB and pyelftools read the snapshot pair as they would a kernel's."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import snapshot_paths
from mmintro.types import get_types


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb not installed")
def test_gdb_prints_node_zone_spanned_pages(gdb_snapshot: str) -> None:
    core, vmlinux = snapshot_paths(gdb_snapshot)
    out = subprocess.run(
        [
            "gdb",
            "-batch",
            "-nx",
            "-ex",
            "print node_data[0]->node_zones[1].spanned_pages",
            "-ex",
            "print _totalram_pages.counter",
            str(vmlinux),
            str(core),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    prog = open_snapshot(gdb_snapshot)
    spanned = prog["node_data"][0].node_zones[1].spanned_pages.value_()
    total = prog["_totalram_pages"].counter.value_()
    assert f"$1 = {spanned}" in out, out
    assert f"$2 = {total}" in out, out
    assert spanned > 0 and total > 0


def test_pyelftools_layouts_of_snapshot_vmlinux_equal_btf(default_snapshot: str) -> None:
    """Every complete struct in NAME.vmlinux has the BTF's size and member offsets."""
    elftools = pytest.importorskip("elftools.elf.elffile")
    _, vmlinux = snapshot_paths(default_snapshot)
    T = get_types()
    want = {}
    for t in T.iter_types():
        if t.kind in ("struct", "union") and t.name and not t.is_decl:
            want.setdefault((t.kind, t.name), {m.name: m.bit_offset for m in t.members if m.name and not m.bit_size})
            want[(t.kind, t.name)]["__size__"] = t.size
    seen = 0
    with open(vmlinux, "rb") as f:
        elf = elftools.ELFFile(f)
        dwarf = elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type") or "DW_AT_name" not in die.attributes:
                    continue
                if "DW_AT_declaration" in die.attributes:
                    continue
                kind = "struct" if die.tag == "DW_TAG_structure_type" else "union"
                name = die.attributes["DW_AT_name"].value.decode()
                exp = want.get((kind, name))
                assert exp is not None, name
                assert die.attributes["DW_AT_byte_size"].value == exp["__size__"], name
                for child in die.iter_children():
                    if child.tag != "DW_TAG_member" or "DW_AT_name" not in child.attributes:
                        continue
                    mname = child.attributes["DW_AT_name"].value.decode()
                    if "DW_AT_data_member_location" in child.attributes and mname in exp:
                        assert child.attributes["DW_AT_data_member_location"].value * 8 == exp[mname], (name, mname)
                seen += 1
    # every named complete struct/union of the type data was found and compared
    assert seen == sum(1 for t in T.iter_types() if t.kind in ("struct", "union") and t.name and not t.is_decl)
    for must in (("struct", "page"), ("struct", "zone"), ("struct", "pglist_data"), ("union", "thread_union")):
        assert must in want
