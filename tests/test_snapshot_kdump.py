"""Snapshots in makedumpfile's kdump-compressed format (``save(core_format="kdump")``,
``mmintro simulate --format kdump``): real drgn 0.3.0 (libkdumpfile), real crash 9.0.2 and
mmintro's reader read the same machine from it as from the ELF snapshot of the same boot."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run

from mmintro.kernel.config import OSRELEASE, MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import SnapshotError, open_snapshot
from mmintro.reader.core import CoreFile
from mmintro.reader.diskdump import DiskDumpFile
from mmintro.snapshot.kdump import write_kdump
from mmintro.snapshot.writer import save

PS = 4096
# crash 9.0.2 diskdump.h, x86-64: struct disk_dump_header up to nr_cpus; struct kdump_sub_header;
# page_desc_t.  Spelled out here as well, so that the writer's (shared) definition is checked.
DH = struct.Struct("<8si65s65s65s65s65s65s6xqqIiiIIIIIIi")
SUB = struct.Struct("<QiiQQqQqQqQQQQ")
DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
REPORTS = [
    "meminfo",
    "zoneinfo",
    "buddyinfo",
    "pagetypeinfo",
    "slabinfo",
    "vmstat",
    "iomem",
    "vmallocinfo",
    "page-types",
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[str, str]:
    """The default machine (4 GiB, 1 node, 2 CPUs) booted once and saved in both formats:
    (ELF stem, kdump stem)."""
    d = tmp_path_factory.mktemp("kdump")
    k = boot(MachineConfig())
    save(k, d / "elf")
    save(k, d / "kd", core_format="kdump")
    return str(d / "elf"), str(d / "kd")


@pytest.fixture(scope="module")
def shm_pair(tmp_path_factory) -> tuple[str, str]:
    """The shared-memory scenario (processes, page cache, shmem) in both formats."""
    from mmintro.workload import load_scenario, run_scenario, shipped_scenarios

    d = tmp_path_factory.mktemp("kdump-shm")
    k = run_scenario(load_scenario(shipped_scenarios()["shared-memory"])).kernel
    save(k, d / "elf")
    save(k, d / "kd", core_format="kdump")
    return str(d / "elf"), str(d / "kd")


class Parsed:
    """A kdump-compressed file parsed with the struct layouts above (not mmintro's reader)."""

    def __init__(self, path: str) -> None:
        self.buf = Path(path).read_bytes()
        f = DH.unpack_from(self.buf, 0)
        (self.sig, self.version, *uts) = f[:8]
        self.utsname = [u.rstrip(b"\0").decode() for u in uts]
        (
            self.tv_sec,
            _usec,
            self.status,
            self.block_size,
            self.sub_hdr_size,
            self.bitmap_blocks,
            self.max_mapnr32,
            _t,
            _d,
            _w,
            _c,
            self.nr_cpus,
        ) = f[8:]
        (
            self.phys_base,
            self.dump_level,
            self.split,
            _s,
            _e,
            self.off_vmci,
            self.size_vmci,
            self.off_note,
            self.size_note,
            _oe,
            _se,
            _s64,
            _e64,
            self.max_mapnr,
        ) = SUB.unpack_from(self.buf, self.block_size)
        bs = self.block_size
        half = self.bitmap_blocks * bs // 2
        bm_off = (1 + self.sub_hdr_size) * bs
        self.bm1 = np.frombuffer(self.buf, np.uint8, half, bm_off)
        self.bm2 = np.frombuffer(self.buf, np.uint8, half, bm_off + half)
        self.desc_off = bm_off + 2 * half
        bits = np.unpackbits(self.bm2, bitorder="little")[: self.max_mapnr]
        self.pfns = np.flatnonzero(bits)
        self.descs = np.frombuffer(self.buf, DESC, len(self.pfns), self.desc_off)
        self.zero_off = self.desc_off + DESC.itemsize * len(self.pfns)  # the shared zero page follows

    def d(self, pfn: int) -> tuple[int, int, int, int]:
        """The page descriptor of ``pfn``: (offset, size, flags, page_flags)."""
        i = int(np.searchsorted(self.pfns, pfn))
        assert self.pfns[i] == pfn
        return tuple(int(x) for x in self.descs[i].item())

    def page(self, pfn: int) -> bytes:
        off, size, flags, _pf = self.d(pfn)
        data = self.buf[off : off + size]
        return zlib.decompress(data) if flags & 1 else data


# -- the file itself ----------------------------------------------------------------------------


def test_header_as_makedumpfile_writes_it(pair) -> None:
    elf, kd = pair
    p = Parsed(kd + ".vmcore")
    assert (p.sig, p.version, p.block_size) == (b"KDUMP   ", 6, PS)
    assert p.utsname == ["Linux", "(none)", OSRELEASE, p.utsname[3], "x86_64", "(none)"]
    assert p.status == 1 and p.dump_level == 1 and p.split == 0  # DUMP_DH_COMPRESSED_ZLIB, -d 1
    assert p.nr_cpus == 2 and p.tv_sec > 0
    assert p.max_mapnr == p.max_mapnr32 == 5 << 18  # RAM ends at 5 GiB (the PCI hole below 4 GiB)
    assert p.bitmap_blocks * PS // 2 >= p.max_mapnr // 8 and p.bitmap_blocks % 2 == 0
    assert (p.bm1 == p.bm2).all()  # nothing filtered out
    # notes right after the sub header; VMCOREINFO inside them, as makedumpfile points at it
    assert p.off_note == PS + SUB.size
    assert p.off_note < p.off_vmci < p.off_vmci + p.size_vmci <= p.off_note + p.size_note
    core = CoreFile(elf + ".vmcore")
    notes = core.notes
    assert (
        p.buf[p.off_vmci : p.off_vmci + p.size_vmci].decode()
        == dict((n, d) for n, _t, d in notes)["VMCOREINFO"].decode()
    )
    with DiskDumpFile(kd + ".vmcore") as dd:
        assert dd.notes == notes  # NT_PRSTATUS per CPU, then VMCOREINFO: the ELF snapshot's notes
        assert [n for n, t, _ in dd.notes] == ["CORE", "CORE", "VMCOREINFO"]
    core.close()


def test_every_ram_page_has_a_descriptor_and_zero_pages_share_one(pair) -> None:
    _elf, kd = pair
    p = Parsed(kd + ".vmcore")
    ram = np.unpackbits(p.bm1, bitorder="little")[: p.max_mapnr]
    assert len(p.pfns) == int(ram.sum())
    assert p.buf[p.zero_off : p.zero_off + PS] == bytes(PS)
    d = p.descs
    assert (d["page_flags"] == 0).all() and (d["size"] <= PS).all()
    zero = d["offset"] == p.zero_off
    assert (d["size"][zero] == PS).all() and (d["flags"][zero] == 0).all()
    zlib_ = d["flags"] == 1
    assert (d["size"][zlib_] < PS).all()
    raw = ~zero & ~zlib_
    assert (d["flags"][raw] == 0).all() and (d["size"][raw] == PS).all()
    assert zero.sum() > 0.9 * len(d) and zlib_.sum() > 10_000
    assert (d["offset"][~zero] > p.zero_off).all() and (d["offset"][~zero] + d["size"][~zero] <= len(p.buf)).all()
    assert len(p.buf) < 40 << 20  # vs 67 MB of ELF: the vmemmap compresses ~10x


@pytest.mark.slow  # ~2 s
def test_every_ram_byte_equals_the_elf_snapshot(pair) -> None:
    """The pages stored in the kdump file (decoded here, without mmintro's reader) are exactly
    the ELF snapshot's non-zero pages, with the same bytes; all other RAM is the zero page."""
    elf, kd = pair
    p = Parsed(kd + ".vmcore")
    core = CoreFile(elf + ".vmcore")
    ranges = core.ram_ranges
    # the same RAM, a partial page at a range's end counting whole (makedumpfile's bitmap)
    assert [(a // PS, -(-b // PS)) for a, b in ranges] == _runs(np.unpackbits(p.bm1, bitorder="little"))
    nonzero = []
    for a, b in ranges:
        for s in range(a // PS * PS, b // PS * PS, 64 << 20):
            pages = core.read_phys_array(s, min(64 << 20, b // PS * PS - s)).view(np.uint64).reshape(-1, PS // 8)
            nonzero += (s // PS + np.flatnonzero(pages.any(axis=1))).tolist()
    stored = p.pfns[p.descs["offset"] != p.zero_off].tolist()
    assert stored == nonzero and len(stored) > 10_000
    for q in stored:
        assert p.page(q) == core.read_phys(q * PS, PS), hex(q)
    # mmintro's reader: 1 MiB windows all over RAM
    with DiskDumpFile(kd + ".vmcore") as dd:
        for a, b in ranges:
            for s in range(a, b, 61 << 20):
                n = min(1 << 20, b - s)
                assert (core.read_phys_array(s, n) == dd.read_phys_array(s, n)).all(), hex(s)
    core.close()


def _runs(bits: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], bits.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def test_pages_that_do_not_shrink_are_stored_raw_and_equal_pages_share_data(tmp_path) -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, PS, dtype=np.uint8).tobytes()
    text = b"mmintro " * (PS // 8)
    same = bytes([7]) * PS
    # pfn 16: noise, 17: zeros, 18: text; 20..5020: one page repeated across a chunk boundary
    run1 = noise + bytes(PS) + text
    run2 = same * 5001
    path = tmp_path / "t.kdump"
    stats = write_kdump(
        path,
        [(16 * PS, run1), (20 * PS, run2)],
        "OSRELEASE=x\n",
        [(0, 32 << 20)],
        utsname=b"Linux".ljust(65, b"\0") * 6,
        nr_cpus=1,
    )
    p = Parsed(str(path))
    assert stats.size == len(p.buf) and stats.ram_pages == len(p.pfns) == 8192
    assert p.d(16)[1:3] == (PS, 0) and p.page(16) == noise
    assert p.d(18)[2] == 1 and p.d(18)[1] < 100 and p.page(18) == text
    zero = p.d(0)
    assert all(p.d(q) == zero for q in (0, 15, 17, 19, 5021, 8191))
    assert {p.d(q) for q in range(20, 5021)} == {p.d(20)} and p.page(20) == same
    assert (stats.raw_pages, stats.compressed_pages, stats.shared_pages) == (1, 2, 5000)
    assert stats.zero_pages == 8192 - 5003  # all but noise, text and the 5001 equal pages


def test_threads_write_the_same_file(tmp_path) -> None:
    rng = np.random.default_rng(2)
    pages = (rng.integers(0, 4, (300, PS), dtype=np.uint8) * 60).tobytes()  # compressible, all different
    out = []
    for threads in (1, 3):
        path = tmp_path / f"t{threads}"
        write_kdump(path, [(PS, pages)], "X=1\n", [(0, 2 << 20)], threads=threads)
        out.append(path.read_bytes())
    assert out[0] == out[1]
    with DiskDumpFile(tmp_path / "t3", require_vmcoreinfo=False) as dd:
        assert dd.read_phys(PS, len(pages)) == pages


def test_runs_must_lie_in_ram(tmp_path) -> None:
    with pytest.raises(ValueError, match="not inside a RAM range"):
        write_kdump(tmp_path / "t", [(0x3000, bytes(2 * PS))], "X=1\n", [(0, 0x4000)])
    with pytest.raises(ValueError, match="page-aligned"):
        write_kdump(tmp_path / "t", [(0x100, bytes(PS))], "X=1\n", [(0, 0x4000)])
    with pytest.raises(ValueError, match="overlap"):
        write_kdump(tmp_path / "t", [], "X=1\n", [(0, 0x4000), (0x3000, 0x8000)])
    assert not (tmp_path / "t").exists()  # nothing half-written is left behind


def test_partial_pages_and_several_ranges(tmp_path) -> None:
    """RAM 0x1000-0x9fc00 and 1 MiB-3 MiB (as e820 gives it): the partial page is RAM, the hole
    between is not; data in the second range reads back at its address."""
    page = bytes(range(256)) * 16
    path = tmp_path / "t.kdump"
    write_kdump(path, [(0x100000 + 5 * PS, page)], "OSRELEASE=x\n", [(0x1000, 0x9FC00), (0x100000, 0x300000)])
    with DiskDumpFile(path) as dd:
        assert dd.ram_ranges == [(0x1000, 0xA0000), (0x100000, 0x300000)]
        assert dd.read_phys(0x105000, PS) == page and dd.read_phys(0x9F000, PS) == bytes(PS)
        assert not dd.is_ram(0xA0000) and dd.max_mapnr == 0x300


# -- real drgn ----------------------------------------------------------------------------------


def _drgn(stem: str):
    from mmintro import crosscheck as xc

    return xc.open_drgn(stem + ".vmcore", stem + ".vmlinux")


def test_drgn_reads_the_same_machine(pair) -> None:
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.mm import pfn_to_page, pfn_to_virt, totalram_pages
    from drgn.helpers.linux.slab import for_each_slab_cache

    a, b = _drgn(pair[0]), _drgn(pair[1])
    assert totalram_pages(a) == totalram_pages(b) > 1_000_000 - 50_000
    assert [c.name.string_() for c in for_each_slab_cache(a)] == [c.name.string_() for c in for_each_slab_cache(b)]
    assert len(list(for_each_slab_cache(b))) > 50
    size = a.type("struct page").size
    managed = []
    for prog in (a, b):
        managed.append([z.managed_pages.counter.value_() for z in prog["node_data"][0].node_zones])
    assert managed[0] == managed[1]
    for pfn in list(range(1, 0xA0)) + list(range(0x100, 0xC0000, 4099)) + list(range(0x100000, 0x140000, 4099)):
        pa, pb = pfn_to_page(a, pfn), pfn_to_page(b, pfn)
        assert a.read(pa.value_(), size) == b.read(pb.value_(), size), hex(pfn)
        assert pb.flags.f.value_() == pa.flags.f.value_()
        assert pb._refcount.counter.value_() == pa._refcount.counter.value_()
    # a free page in the middle of RAM is the shared zero page; the PCI hole is not RAM
    free = 0x80000
    assert b.read(pfn_to_virt(b, free).value_(), PS) == bytes(PS)
    for prog in (a, b):
        with pytest.raises(drgn.FaultError):
            prog.read(0xC0000000, 8, True)


@pytest.mark.slow  # the whole crosscheck (several seconds): the slow pass
def test_drgn_crosscheck_rows_agree_on_kdump(pair, shm_pair) -> None:
    """Every drgn crosscheck row (drgn's stock helpers and crash commands vs mmintro's reader)
    agrees on the kdump snapshots, as on the ELF ones."""
    pytest.importorskip("drgn")
    from mmintro.crosscheck import run_crosscheck

    for stem in (pair[1], shm_pair[1]):
        rows = run_crosscheck(stem)
        bad = [f"{r.name}: {r.detail}" for r in rows if not r.ok]
        assert len(rows) > 30 and not bad, "\n".join(bad)
    # the scenario has something for every row but swap's (a swap storm takes a minute: the
    # swap-storm scenario runs those rows in test_scenarios_drgn)
    assert not [r.name for r in rows if r.skipped and "swap" not in r.name]


# -- real crash ---------------------------------------------------------------------------------


def test_crash_opens_kdump_quietly_and_agrees_with_elf(pair) -> None:
    from mmintro.realkernel.crash import fetch_crash, run_crash

    tool = fetch_crash()
    cmds = ["sys", "kmem -i", "kmem -z", "ps", "log", "kmem -s"]
    out = {}
    for stem in pair:
        r = run_crash(tool, stem + ".vmlinux", stem + ".vmcore", cmds, timeout=120)
        assert r.error() is None and r.returncode == 0, r.error()
        assert r.preamble.strip() == "" and r.stderr.strip() == "", r.preamble + r.stderr
        out[stem] = r
    elf, kd = (out[s] for s in pair)
    for c in cmds[1:]:
        assert kd[c] == elf[c] and kd[c].strip(), c

    def sys_lines(r):
        return [ln for ln in r["sys"].splitlines() if "KERNEL:" not in ln and "DUMPFILE:" not in ln]

    assert sys_lines(kd) == sys_lines(elf)
    assert "kd.vmcore  [PARTIAL DUMP]" in kd["sys"]  # crash's label for a 2-bitmap kdump file
    assert '"Kernel panic - not syncing: sysrq triggered crash"' in kd["sys"]


@pytest.mark.slow  # the whole crosscheck (several seconds): the slow pass
def test_crash_crosscheck_rows_agree_on_kdump(shm_pair) -> None:
    from mmintro.crosscheck.crash_utility import CRASH_CHECKS, run_crash_crosscheck

    rows = run_crash_crosscheck(shm_pair[1], raise_on_start=True)
    assert len(rows) == len(CRASH_CHECKS)
    bad = [f"{r.name}: {r.detail}" for r in rows if not r.ok]
    assert not bad, "\n".join(bad)
    assert not [r.name for r in rows if r.skipped]


@pytest.mark.slow
def test_makedumpfile_reads_it_and_refilters_free_pages(pair, tmp_path) -> None:
    """makedumpfile 1.7.2 takes the kdump snapshot as its input (``-x NAME.vmlinux`` for the
    symbols) and writes it again without zero and free pages (``-d 17``); crash and mmintro
    read that file as the same machine."""
    import shutil

    from mmintro.realkernel.crash import fetch_crash, run_crash

    assert shutil.which("makedumpfile"), "makedumpfile is not installed (.ci/run installs it)"
    kd = pair[1]
    out = tmp_path / "refiltered"
    p = subprocess.run(
        ["makedumpfile", "-c", "-d", "17", "-x", kd + ".vmlinux", kd + ".vmcore", str(out) + ".vmcore"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    shutil.copy(kd + ".vmlinux", str(out) + ".vmlinux")
    with DiskDumpFile(str(out) + ".vmcore") as dd:
        assert dd.dump_level == 17 and len(dd.dumped_ranges) > 1  # free pages are filtered out now
    assert os.path.getsize(str(out) + ".vmcore") < os.path.getsize(kd + ".vmcore") / 2
    for report in ("meminfo", "buddyinfo", "slabinfo"):
        assert run(report, str(out)).stdout == run(report, kd).stdout, report
    r = run_crash(fetch_crash(), str(out) + ".vmlinux", str(out) + ".vmcore", ["kmem -i"], timeout=120)
    assert r.error() is None and r.preamble.strip() == "" and r.stderr.strip() == "", r.preamble + r.stderr
    assert r["kmem -i"] == run_crash(fetch_crash(), kd + ".vmlinux", kd + ".vmcore", ["kmem -i"])["kmem -i"]


# -- mmintro's reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("report", REPORTS)
def test_reports_are_identical(pair, report: str) -> None:
    elf, kd = (run(report, stem).stdout for stem in pair)
    assert kd == elf and len(elf.splitlines()) >= 3


def test_process_reports_are_identical(shm_pair) -> None:
    elf, kd = shm_pair
    ps = run("ps", elf).stdout
    assert run("ps", kd).stdout == ps
    pid = next(int(ln.split()[0]) for ln in ps.splitlines()[1:] if ln.split()[0].isdigit() and int(ln.split()[0]) > 1)
    for cmd in (["smaps", kd, str(pid)], ["status", kd, str(pid)], ["meminfo", kd], ["slabinfo", kd]):
        assert run(*cmd).stdout == run(*[elf if x == kd else x for x in cmd]).stdout, cmd


def test_open_snapshot_reads_kdump(pair) -> None:
    prog = open_snapshot(pair[1])
    assert type(prog.core).__name__ == "DiskDumpFile"
    assert prog["max_pfn"].value_() == 5 << 18
    prog.close()


# -- bad files: one line, no traceback ------------------------------------------------------------


@pytest.fixture
def kd_copy(pair, tmp_path) -> str:
    import shutil

    name = str(tmp_path / "bad")
    shutil.copy(pair[1] + ".vmcore", name + ".vmcore")
    shutil.copy(pair[1] + ".vmlinux", name + ".vmlinux")
    return name


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from mmintro.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "keep,expect",
    [
        (100, "the disk_dump_header needs"),
        (PS + 50, "the header and bitmaps need"),
        (0x60000, "page descriptors need bytes up to"),
        (-1000, "points at bytes"),  # the last page's data cut short
    ],
)
def test_truncated_kdump_is_one_line(kd_copy, keep: int, expect: str) -> None:
    path = kd_copy + ".vmcore"
    size = os.path.getsize(path)
    os.truncate(path, keep if keep > 0 else size + keep)
    with pytest.raises(SnapshotError) as e:
        open_snapshot(kd_copy)
    assert "truncated" in str(e.value) and expect in str(e.value) and "\n" not in str(e.value)
    p = _cli("meminfo", kd_copy)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("mmintro: error: vmcore") and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_corrupt_page_data_is_one_line(kd_copy) -> None:
    path = kd_copy + ".vmcore"
    p = Parsed(path)
    data_start = p.desc_off + 24 * len(p.pfns) + PS  # after the shared zero page
    with open(path, "r+b") as f:
        f.seek(data_start)
        f.write(b"\x55" * (len(p.buf) - data_start))
    r = _cli("meminfo", kd_copy)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "corrupt compressed page at pfn" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- the command line -------------------------------------------------------------------------------


def test_simulate_format_kdump(tmp_path) -> None:
    out = tmp_path / "small"
    r = run("simulate", "-o", str(out), "--ram", "512M", "--format", "kdump")
    # the default machine's processes took page faults: their trace is written beside the snapshot
    assert r.stdout.split() == [f"{out}.vmcore", f"{out}.vmlinux", f"{out}.faults.tsv"]
    assert (tmp_path / "small.vmcore").read_bytes()[:8] == b"KDUMP   "
    assert "MemTotal:" in run("meminfo", str(out)).stdout
    r = run("simulate", "-o", str(out), "--format", "kdump", "--gdb-aliases", ok=False)
    assert r.exit_code == 2 and "--gdb-aliases needs --format elf" in r.stderr
    r = run("simulate", "-o", str(out), "--format", "lzo", ok=False)
    assert r.exit_code == 2 and "'lzo' is not one of 'elf', 'kdump'" in r.stderr


def test_save_refuses_an_unknown_format(tmp_path) -> None:
    k = boot(MachineConfig(ram=512 << 20))
    with pytest.raises(ValueError, match="unknown vmcore format 'zip'"):
        save(k, tmp_path / "x", core_format="zip")
    with pytest.raises(ValueError, match="GDB alias segments need the ELF format"):
        save(k, tmp_path / "x", core_format="kdump", gdb_aliases=True)
    assert not list(tmp_path.iterdir())  # refused before writing anything
