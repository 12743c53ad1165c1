"""The mmintro command line: reports read from a snapshot, compared with the reader's own
objects and with real 6.18 /proc files (reference/procfs), plus one-line error handling."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import REFERENCE, needs_reference, run, run_json
from click.testing import CliRunner

from mmintro.cli.main import cli
from mmintro.reader import open_snapshot
from mmintro.reader.helpers.list import list_for_each_entry
from mmintro.reader.helpers.mm import page_to_pfn
from mmintro.reader.helpers.mmzone import (
    for_each_populated_zone,
    for_each_present_section,
    for_each_zone,
    section_geometry,
)
from mmintro.views import zoneinfo as zoneinfo_view


# -- zoneinfo -----------------------------------------------------------------------------------
def test_zoneinfo_page_counts_equal_the_zone_objects(cli_snapshot):
    zones = run_json("zoneinfo", cli_snapshot)
    with open_snapshot(cli_snapshot) as prog:
        want = [
            (
                z.name.string_().decode(),
                z.spanned_pages.value_(),
                z.present_pages.value_(),
                z.managed_pages.counter.value_(),
                z.zone_start_pfn.value_(),
            )
            for z in for_each_zone(prog)
        ]
    got = [
        (
            z["zone"],
            z["pages"]["spanned"],
            z["pages"]["present"],
            z["pages"]["managed"],
            z["start_pfn"] if z["populated"] else want[i][4],
        )
        for i, z in enumerate(zones)
    ]
    assert got == want
    # the text agrees with the JSON
    text = zoneinfo_view.parse(run("zoneinfo", cli_snapshot).stdout)
    assert [(z["zone"], z["pages"]["managed"]) for z in text] == [(w[0], w[3]) for w in want]


def _key_structure(zones: list[dict]) -> dict[str, dict]:
    out = {}
    for z in zones:
        s = {}
        for k, v in z.items():
            if k == "pagesets":
                s[k] = {cpu: frozenset(d) for cpu, d in v.items()}
            elif isinstance(v, dict):
                s[k] = frozenset(v)
            else:
                s[k] = None
        out[z["zone"]] = s
    return out


@needs_reference
def test_zoneinfo_has_the_keys_of_a_real_6_18_zoneinfo(cli_snapshot):
    ours = zoneinfo_view.parse(run("zoneinfo", cli_snapshot).stdout)
    ref = zoneinfo_view.parse((REFERENCE / "zoneinfo").read_text())
    assert _key_structure(ours) == _key_structure(ref)


@needs_reference
def test_zoneinfo_lines_have_the_reference_spacing(cli_snapshot):
    """Every line, digits replaced by N, is a line shape the real kernel prints (and vice versa)."""

    def shapes(text: str) -> set[str]:
        return {re.sub(r"\d+", "N", line) for line in text.splitlines()}

    assert shapes(run("zoneinfo", cli_snapshot).stdout) == shapes((REFERENCE / "zoneinfo").read_text())


# -- iomem --------------------------------------------------------------------------------------
_IOMEM_LINE = re.compile(r"^((?:  )*)([0-9a-f]{8,})-([0-9a-f]{8,}) : (.+)$")


@needs_reference
def test_iomem_looks_like_the_reference(cli_snapshot):
    lines = run("iomem", cli_snapshot).stdout.splitlines()
    ref = (REFERENCE / "iomem").read_text().splitlines()
    assert lines[:2] == ref[:2]  # 00000000-00000fff : Reserved / 00001000-0009fbff : System RAM
    stack: list[tuple[int, int]] = []
    for line in lines:
        m = _IOMEM_LINE.match(line)
        assert m, line
        depth, start, end = len(m.group(1)) // 2, int(m.group(2), 16), int(m.group(3), 16)
        assert start <= end
        del stack[depth:]
        assert len(stack) == depth, f"{line!r} is indented deeper than its parent"
        if stack:
            assert stack[-1][0] <= start and end <= stack[-1][1], f"{line!r} is outside its parent"
        stack.append((start, end))
    i = next(i for i, s in enumerate(lines) if s.endswith(": Kernel code"))
    assert lines[i].startswith("  ")
    parent = next(s for s in reversed(lines[:i]) if not s.startswith(" "))
    assert parent.endswith(": System RAM")
    names = [s.split(" : ")[1] for s in lines[i : i + 4]]
    assert names == ["Kernel code", "Kernel rodata", "Kernel data", "Kernel bss"]


def _patch_u64(snapshot: str, vaddr: int, value: int, out_dir: Path) -> str:
    """A copy of the snapshot with the 8 bytes at kernel address ``vaddr`` replaced."""
    dst = out_dir / "patched"
    shutil.copy(snapshot + ".vmlinux", str(dst) + ".vmlinux")
    shutil.copy(snapshot + ".vmcore", str(dst) + ".vmcore")
    with open_snapshot(snapshot) as prog:
        phys = prog.translate(vaddr)
        seg = prog.core.segment_at(phys)
        offset = seg.offset + phys - seg.paddr
        assert phys - seg.paddr + 8 <= seg.filesz
    with open(str(dst) + ".vmcore", "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(8, "little"))
    return str(dst)


def test_iomem_reports_a_cycle_instead_of_hanging(cli_snapshot, tmp_path):
    with open_snapshot(cli_snapshot) as prog:
        first = prog["iomem_resource"].child
        second = first.sibling
        where = int(second) + prog.types.struct("resource").offsetof("sibling")
        target = int(first)
    bad = _patch_u64(cli_snapshot, where, target, tmp_path)  # second->sibling = first
    r = run("iomem", bad, ok=False)
    assert r.exit_code == 1
    assert r.stderr.startswith("mmintro: error: ") and "cycle" in r.stderr
    assert r.stderr.count("\n") == 1


# -- page-types, buddyinfo, page ------------------------------------------------------------------
def test_page_types_counts_every_struct_page_and_every_free_block(cli_snapshot):
    rows = run_json("page-types", cli_snapshot)
    with open_snapshot(cli_snapshot) as prog:
        g = section_geometry(prog)
        nr_pages = sum(g.pages_per_section for _ in for_each_present_section(prog))
        nr_free_blocks = sum(
            z.free_area[o].nr_free.value_() for z in for_each_zone(prog) for o in range(len(z.free_area))
        )
    assert sum(r["page-count"] for r in rows) == nr_pages
    assert sum(r["page-count"] for r in rows if r["page-type"] == "buddy") == nr_free_blocks
    assert {"flags", "page-count", "MB", "symbolic-flags"} <= set(rows[0])
    text = run("page-types", cli_snapshot).stdout.splitlines()
    assert text[0].split() == ["flags", "page-count", "MB", "symbolic-flags"]
    assert text[-1].split()[:2] == ["total", str(nr_pages)]


def test_buddyinfo_blocks_are_the_buddy_heads(cli_snapshot):
    zones = run_json("buddyinfo", cli_snapshot)
    rows = run_json("page-types", cli_snapshot)
    assert sum(map(sum, (z["nr_free"] for z in zones))) == sum(
        r["page-count"] for r in rows if r["page-type"] == "buddy"
    )
    line = run("buddyinfo", cli_snapshot).stdout.splitlines()[0]
    assert re.fullmatch(r"Node 0, zone      DMA (?:[ \d]{6} ){11}", line)


def test_page_decodes_zone_node_and_type(cli_snapshot):
    with open_snapshot(cli_snapshot) as prog:
        zones = [
            (i, z.zone_start_pfn.value_(), z.spanned_pages.value_())
            for i, z in enumerate(for_each_zone(prog))
            if z.present_pages.value_()
        ]
        # a free block head in each populated zone: first entry of its highest non-empty order
        heads = []
        for z in for_each_populated_zone(prog):  # empty zones never get their free lists initialised
            for o in reversed(range(len(z.free_area))):
                fl = z.free_area[o].free_list
                pages = [
                    p
                    for m in range(len(fl))
                    for p in list_for_each_entry("struct page", fl[m].address_of_(), "buddy_list")
                ]
                if pages:
                    heads.append((page_to_pfn(pages[0]).value_(), o))
                    break
    for pfn, order in heads:
        info = run_json("page", cli_snapshot, hex(pfn))
        assert info["page_type_name"] == "buddy" and info["private"] == order and info["refcount"] == 0
        assert info["node"] == 0
        zid = next(i for i, start, span in zones if start <= pfn < start + span)
        assert info["zone"] == zid
    text = run("page", cli_snapshot, str(heads[0][0])).stdout
    assert "(buddy)" in text and "zone" in text


# -- vtop ----------------------------------------------------------------------------------------
def test_vtop_of_a_direct_map_address(cli_snapshot):
    with open_snapshot(cli_snapshot) as prog:
        base = prog["page_offset_base"].value_()
    addr = base + 0x12345678
    v = run_json("vtop", cli_snapshot, hex(addr))
    assert v["phys"] == hex(addr - base) and v["vaddr"] == hex(addr)  # addresses: hex strings
    assert v["levels"][0]["level"] == "pgd"
    assert v["page"]["pfn"] == (addr - base) >> 12
    text = run("vtop", cli_snapshot, hex(addr)).stdout
    assert f"{addr:x}  {addr - base:x}" in text.replace(" " * 3, "  ")


# -- run ---------------------------------------------------------------------------------------------
def test_run_executes_a_script_with_prog(cli_snapshot, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('ram', totalram_pages(prog), len(list(for_each_online_pgdat(prog))))\n")
    out = run("run", str(script), cli_snapshot).stdout
    with open_snapshot(cli_snapshot) as prog:
        total = prog["_totalram_pages"].counter.value_()
    assert out == f"ram {total} 1\n"


def test_run_shows_the_scripts_traceback(cli_snapshot, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("prog['no_such_symbol_anywhere']\n")
    r = run("run", str(script), cli_snapshot, ok=False)
    assert r.exit_code == 1 and "SymbolNotFoundError" in r.stderr and "bad.py" in r.stderr  # a KeyError, as drgn raises


# -- errors: one line on stderr, exit 1 ---------------------------------------------------------------
def _assert_one_line_error(r, *words: str) -> None:
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("mmintro: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr


def test_error_missing_file(tmp_path):
    _assert_one_line_error(run("iomem", str(tmp_path / "nothing"), ok=False), "does not exist")


def test_error_vmcore_without_vmlinux(cli_snapshot, tmp_path):
    shutil.copy(cli_snapshot + ".vmcore", tmp_path / "lonely.vmcore")
    _assert_one_line_error(run("zoneinfo", str(tmp_path / "lonely.vmcore"), ok=False), "vmlinux")


def test_error_truncated_vmcore(cli_snapshot, tmp_path):
    src = Path(cli_snapshot + ".vmcore")
    with open(src, "rb") as f:
        data = f.read(src.stat().st_size // 2)
    (tmp_path / "half.vmcore").write_bytes(data)
    shutil.copy(cli_snapshot + ".vmlinux", tmp_path / "half.vmlinux")
    _assert_one_line_error(run("iomem", str(tmp_path / "half"), ok=False), "truncated")


def test_error_vmlinux_given_as_the_core(cli_snapshot, tmp_path):
    shutil.copy(cli_snapshot + ".vmlinux", tmp_path / "x.vmcore")
    shutil.copy(cli_snapshot + ".vmlinux", tmp_path / "x.vmlinux")
    _assert_one_line_error(run("iomem", str(tmp_path / "x"), ok=False))


def test_error_unmapped_vtop_address(cli_snapshot):
    _assert_one_line_error(run("vtop", cli_snapshot, "0x1000", ok=False), "not mapped", "0x1000")


def test_error_out_of_range_and_absent_pfn(cli_snapshot):
    _assert_one_line_error(run("page", cli_snapshot, str(1 << 40), ok=False), "out of range")
    with open_snapshot(cli_snapshot) as prog:
        g = section_geometry(prog)
        present = {s.nr for s in for_each_present_section(prog)}
    hole = next(nr for nr in range(max(present)) if nr not in present)
    r = run("page", cli_snapshot, str(hole * g.pages_per_section), ok=False)
    _assert_one_line_error(r, "not present")


def test_error_through_the_installed_entry_point(tmp_path):
    """main() itself (not only the click group) gives one line and status 1."""
    p = subprocess.run(
        [sys.executable, "-c", "from mmintro.cli.main import main; main()", "iomem", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 1 and p.stderr.startswith("mmintro: error: ") and "Traceback" not in p.stderr


def test_usage_errors_are_one_line_with_clicks_status(cli_snapshot):
    """A bad argument or option is a usage error (exit status 2, as click gives it), reported
    like every other failure: one line starting ``mmintro: error:``, pointing at --help."""
    for args in (("page", cli_snapshot, "zzz"), ("nosuch",), ("simulate", "--ram", "3X", "-o", "x")):
        r = run(*args, ok=False)
        assert r.exit_code == 2, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmintro: error: ") and lines[0].endswith("(see --help)")


# -- simulate and the default machine -------------------------------------------------------------
def test_simulate_writes_a_snapshot_the_reader_opens(tmp_path):
    r = run("simulate", "boot", "--output", str(tmp_path / "small"), "--ram", "512M", "--cpus", "1")
    assert r.stdout.split() == [str(tmp_path / "small.vmcore"), str(tmp_path / "small.vmlinux")]
    with open_snapshot(tmp_path / "small") as prog:
        assert prog["nr_cpu_ids"].value_() == 1
    zones = run_json("zoneinfo", str(tmp_path / "small"))
    assert len(zones[0]["pagesets"]) == 1


def test_simulate_unknown_scenario_and_bad_size(tmp_path):
    r = run("simulate", "nope", "-o", str(tmp_path / "x"), ok=False)
    _assert_one_line_error(r, "unknown scenario", "boot")
    assert run("simulate", "-o", str(tmp_path / "x"), "--ram", "lots", ok=False).exit_code == 2
    _assert_one_line_error(run("simulate", "-o", str(tmp_path / "x"), "--ram", "100M", ok=False), "ram")


def test_default_machine_is_booted_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MMINTRO_CACHE", str(tmp_path))
    first = run("buddyinfo").stdout
    files = sorted(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".vmcore", ".vmlinux"]
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert run("buddyinfo").stdout == first
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.iterdir())] == mtimes


def test_shell_reads_python_from_stdin(cli_snapshot):
    code = "print('zones', len(list(for_each_zone(prog))))\n"
    r = CliRunner().invoke(cli, ["shell", cli_snapshot], input=code)
    assert r.exit_code == 0 and "zones 5" in r.stdout


def test_two_nodes_per_node_stats_and_page_node(numa2_snapshot):
    zones = run_json("zoneinfo", numa2_snapshot)
    with open_snapshot(numa2_snapshot) as prog:
        spans = [
            (z.zone_pgdat.node_id.value_(), z.zone_start_pfn.value_(), z.spanned_pages.value_())
            for z in for_each_populated_zone(prog)
        ]
        shift = section_geometry(prog).pfn_section_shift
        present = {s.nr for s in for_each_present_section(prog)}
    for nid in (0, 1):
        node_zones = [z for z in zones if z["node"] == nid]
        with_stats = [z["zone"] for z in node_zones if z["per_node_stats"] is not None]
        assert with_stats == [next(z["zone"] for z in node_zones if z["populated"])]
    for nid, start, span in spans:
        pfns = [p for p in (start, start + span // 2, start + span - 1) if p >> shift in present]
        assert pfns
        for pfn in pfns:
            assert run_json("page", numa2_snapshot, str(pfn))["node"] == nid


def test_kmem_s_with_a_mistyped_snapshot_path_is_one_line_not_the_default_machine(tmp_path) -> None:
    """``kmem-s out/fork-cwo`` (a typo) names a snapshot, not a cache (cache names have no '/'):
    one line and exit 1 instead of reading the default machine and looking for a cache of that
    name."""
    import subprocess

    p = subprocess.run(["mmintro", "kmem-s", str(tmp_path / "fork-cwo")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        f"mmintro: error: vmcore '{tmp_path}/fork-cwo.vmcore' does not exist (a cache name has no '/')"
    ]


def test_whatis_pfn_without_a_struct_page_fails_like_page(tmp_path) -> None:
    """``whatis --pfn`` of a pfn beyond the memory map is one line and exit 1, as ``page`` is; an
    address wider than 64 bits is refused, not truncated."""
    r = run("whatis", "--pfn", "0x99999999", ok=False)
    assert r.exit_code == 1 and "out of range" in r.stderr and r.stdout == ""
    assert run("page", "0x99999999", ok=False).exit_code == 1
    r = run("whatis", "0x1ffffffffffffffff", ok=False)
    assert r.exit_code == 2 and "is wider than 64 bits" in r.stderr


def test_pid_reports_of_pid_0_and_of_a_kernel_thread(real_dump) -> None:
    """/proc has no 0 (the idle task is on no pid list): one line, exit 1.  A kernel thread has
    no mm: its status has no Vm lines and its smaps_rollup fails as the kernel's does (ESRCH),
    one line, exit 1 -- not a rollup of zeros."""
    r = run("status", "0", ok=False)
    assert r.exit_code == 1 and r.stderr.strip() == (
        "mmintro: error: no process 0: PID 0 is the idle task (swapper), which /proc does not list"
    )
    dump = str(real_dump.path("elf"))
    status = run("status", dump, "2", "--kernel", real_dump.vmlinuz).stdout
    assert status.startswith("Name:\tkthreadd\n") and "Kthread:\t1" in status and "VmRSS" not in status
    r = run("smaps-rollup", dump, "2", "--kernel", real_dump.vmlinuz, ok=False)
    assert r.exit_code == 1 and r.stdout == "" and "kernel thread" in r.stderr and "ESRCH" in r.stderr


def test_simulate_into_an_existing_directory_is_refused(tmp_path) -> None:
    """``-o DIR`` names files DIR.vmcore and DIR.vmlinux: beside an existing directory DIR they
    would not be where the user looks, so it is refused (usage error) and nothing is written."""
    r = run("simulate", "-o", str(tmp_path), ok=False)
    assert r.exit_code == 2 and "is a directory" in r.stderr
    assert not (tmp_path.parent / (tmp_path.name + ".vmcore")).exists()


def test_start_up_imports_no_reader_numpy_or_rich() -> None:
    """The command line loads a command's machinery only when that command runs: importing it
    (what `mmintro --help` does) pulls in neither numpy, nor the reader and its type data, nor a
    view, nor rich (measured: `mmintro --help` 0.46 s before, 0.2 s after)."""
    code = (
        "import sys, mmintro.cli.main; "
        "print(sorted(m for m in sys.modules if m in ('numpy', 'rich', 'mmintro.reader.program', "
        "'mmintro.types.typedata') or m.startswith('mmintro.views')))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_reader_helpers_import_no_view() -> None:
    """The reader's helpers are the layer below the views: none imports a view (issue 14)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "mmintro" / "reader"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if re.search(r"^\s*(from|import) mmintro\.views", p.read_text(), re.M)
    ]
    assert offenders == []
