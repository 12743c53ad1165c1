"""The kdump-compressed vmcore reader (mmintro.reader.diskdump).

Real files: a Debian 6.18 kernel booted under QEMU (TCG) until it panics (no root fs), then
dumped with ``dump-guest-memory`` as ELF and as kdump-zlib (QEMU 7.2 writes the flattened
format), reassembled with ``makedumpfile -R``, and converted by makedumpfile itself (lzo,
and a flattened ``-F -c -d 1``).  Codecs neither tool here can write (snappy, zstd) and the
cases they never produce (filtered pages, corrupt data) come from the small kdump writer
below.  Generated dumps are cached in ``$MMINTRO_CACHE/test-dumps`` (default
``~/.cache/mmintro/test-dumps``).
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmintro.cache import cache_dir
from mmintro.reader.diskdump import DiskDumpFile, open_core
from mmintro.reader.errors import FaultError, SnapshotError

PS = 4096
DUMPS_VERSION = "1"  # bump to regenerate the cached dumps


def _cache_dir() -> Path:
    return cache_dir() / "test-dumps" / f"qemu-6.18-v{DUMPS_VERSION}"


# -- a small kdump writer (test-only) ---------------------------------------------------------


def _compress(codec: str, page: bytes) -> tuple[bytes, int]:
    if codec == "none":
        return page, 0
    if codec == "zlib":
        out, flag = zlib.compress(page), 0x1
    elif codec == "lzo":
        import lzallright

        out, flag = lzallright.LZOCompressor().compress(page), 0x2
    elif codec == "snappy":
        import cramjam

        out, flag = bytes(cramjam.snappy.compress_raw(page)), 0x4
    elif codec == "zstd":
        import cramjam

        out, flag = bytes(cramjam.zstd.compress(page)), 0x20
    else:
        raise ValueError(codec)
    return (out, flag) if len(out) < len(page) else (page, 0)


def write_kdump(
    path: Path,
    page_of,
    ram: np.ndarray,
    dumped: np.ndarray,
    codec: str = "zlib",
    *,
    version: int = 6,
    vmcoreinfo: bytes = b"",
    notes: bytes = b"",
    block_size: int = PS,
    flattened: bool = False,
) -> dict:
    """A kdump-compressed file: ``ram`` / ``dumped`` are bool arrays indexed by pfn (the 1st and
    2nd bitmaps), ``page_of(pfn)`` the page bytes.  Returns {pfn: (data offset, size)}."""
    max_mapnr = len(ram)
    bs = block_size
    sub = bytearray(104)
    extra = bytearray()
    extra_off = bs + len(sub)
    off_note = extra_off if notes else 0
    extra += notes
    off_vmci = extra_off + len(extra) if vmcoreinfo else 0
    extra += vmcoreinfo
    sub_blocks = -(-(len(sub) + len(extra)) // bs)
    struct.pack_into(
        "<QiiQQqQqQqQQQQ",
        sub,
        0,
        0,
        0,
        0,
        0,
        0,
        off_vmci,
        len(vmcoreinfo),
        off_note,
        len(notes),
        0,
        0,
        0,
        max_mapnr,
        max_mapnr,
    )
    half = -(-max_mapnr // 8)
    half = -(-half // bs) * bs
    bitmap_blocks = 2 * half // bs
    hdr = bytearray(bs)
    uts = b"".join(x.ljust(65, b"\0") for x in (b"Linux", b"test", b"6.18.0", b"#1", b"x86_64", b"(none)"))
    struct.pack_into(
        "<8si390s6xqqIiiIIIIIIi",
        hdr,
        0,
        b"KDUMP   ",
        version,
        uts,
        0,
        0,
        0,
        bs,
        sub_blocks,
        bitmap_blocks,
        min(max_mapnr, 0xFFFFFFFF),
        0,
        0,
        0,
        0,
        1,
    )
    bm = np.zeros(2 * half, dtype=np.uint8)
    bm[: (max_mapnr + 7) // 8] = np.packbits(ram.astype(np.uint8), bitorder="little")
    bm[half : half + (max_mapnr + 7) // 8] = np.packbits(dumped.astype(np.uint8), bitorder="little")
    desc_off = (1 + sub_blocks + bitmap_blocks) * bs
    pfns = np.flatnonzero(dumped).tolist()
    data_off = desc_off + 24 * len(pfns)
    descs = bytearray(24 * len(pfns))
    chunks, where = [], {}
    pos = data_off
    for i, pfn in enumerate(pfns):
        data, flag = _compress(codec, page_of(pfn))
        struct.pack_into("<qIIQ", descs, 24 * i, pos, len(data), flag, 0)
        where[pfn] = (pos, len(data))
        chunks.append(data)
        pos += len(data)
    parts = [
        (0, bytes(hdr)),
        (bs, bytes(sub) + bytes(extra)),
        ((1 + sub_blocks) * bs, bm.tobytes()),
        (desc_off, bytes(descs)),
        (data_off, b"".join(chunks)),
    ]
    with open(path, "wb") as f:
        if not flattened:
            for off, data in parts:
                f.seek(off)
                f.write(data)
        else:  # makedumpfile -F: a 4096-byte header, then big-endian (offset, size) records
            f.write(struct.pack(">16sqq", b"makedumpfile", 1, 1).ljust(4096, b"\0"))
            for off, data in parts:
                for o in range(0, len(data), 65536):  # several records per part, like makedumpfile
                    piece = data[o : o + 65536]
                    f.write(struct.pack(">qq", off + o, len(piece)))
                    f.write(piece)
            f.write(struct.pack(">qq", -1, -1))
    return where


# -- the ELF dump, read independently of CoreFile ---------------------------------------------


class ElfRam:
    """PT_LOAD segments of QEMU's ELF dump (p_vaddr == p_paddr with paging=false)."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")
        self.m = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        self.np = np.frombuffer(self.m, dtype=np.uint8)
        (phoff,) = struct.unpack_from("<Q", self.m, 32)
        phentsize, phnum = struct.unpack_from("<HH", self.m, 54)
        self.segs = []
        for i in range(phnum):
            p_type, _fl, off, _va, pa, fs, ms, _al = struct.unpack_from("<IIQQQQQQ", self.m, phoff + i * phentsize)
            if p_type == 1:
                assert fs == ms
                self.segs.append((pa, off, fs))
        self.segs.sort()

    def close(self) -> None:
        del self.np
        self.m.close()
        self.f.close()

    def page(self, pfn: int) -> bytes:
        a = pfn * PS
        for pa, off, fs in self.segs:
            if pa <= a < pa + fs:
                return bytes(self.m[off + a - pa : off + a - pa + PS])
        raise KeyError(pfn)

    def ranges(self) -> list[tuple[int, int]]:
        return [(pa, pa + fs) for pa, off, fs in self.segs]

    def bitmap(self, max_mapnr: int) -> np.ndarray:
        bits = np.zeros(max_mapnr, dtype=bool)
        for pa, _off, fs in self.segs:
            bits[pa // PS : (pa + fs) // PS] = True
        return bits

    def word(self, paddr: int) -> int:
        for pa, off, fs in self.segs:
            if pa <= paddr and paddr + 8 <= pa + fs:
                return int.from_bytes(self.m[off + paddr - pa : off + paddr - pa + 8], "little")
        raise KeyError(paddr)


# -- generating the real dumps ----------------------------------------------------------------


def _qmp(path: str):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rwb")
    f.readline()

    def cmd(name: str, **args):
        f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                return r

    return s, cmd


def _boot_and_dump(out: Path, log: Path) -> list[str]:
    """Boot the kernel to its panic, stop the VM, dump it in every format QEMU offers."""
    qmp = str(out / "q.qmp")
    from mmintro.realkernel.debian import fetch_kernel

    kernel = fetch_kernel().vmlinuz  # Debian's 6.18 (apt, cached), as the real-kernel harness uses
    proc = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-m",
            "256",
            "-cpu",
            "max,la57=off",
            "-nographic",
            "-no-reboot",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=0",
            "-qmp",
            f"unix:{qmp},server,nowait",
            "-device",
            "vmcoreinfo",
            "-monitor",
            "none",
            "-serial",
            f"file:{log}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    made = []
    try:
        t0 = time.time()
        while b"Kernel panic" not in (log.read_bytes() if log.exists() else b""):
            if proc.poll() is not None or time.time() - t0 > 240:
                raise RuntimeError("the guest did not reach its panic")
            time.sleep(0.5)
        time.sleep(1)
        s, cmd = _qmp(qmp)
        assert "return" in cmd("qmp_capabilities")
        assert "return" in cmd("stop")
        for fmt in ("elf", "kdump-zlib", "kdump-lzo", "kdump-snappy"):
            r = cmd("dump-guest-memory", paging=False, protocol=f"file:{out / ('qemu.' + fmt)}", format=fmt)
            if "return" in r:
                made.append(fmt)
        cmd("quit")
        s.close()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return made


def _makedumpfile_elf(src: Path, dst: Path) -> None:
    """A copy of QEMU's ELF dump that makedumpfile 1.7.2 reads: QEMU 7.2 puts its section
    header table right after the ELF header, older makedumpfile expects the program headers
    there (e_phoff is ignored)."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        eh = bytearray(f.read(64))
        (phoff,) = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
        first = min(struct.unpack_from("<Q", ph, i * phentsize + 8)[0] for i in range(phnum))
        assert 64 + len(ph) <= first
        struct.pack_into("<QQ", eh, 32, 64, 0)
        struct.pack_into("<HHH", eh, 58, 0, 0, 0)
        f.seek(0)
        f.write(eh)
        f.seek(64)
        f.write(ph)


def _generate(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=d, prefix=".gen-"))
    try:
        made = _boot_and_dump(work, work / "serial.log")
        assert "elf" in made and "kdump-zlib" in made, made
        run = lambda *a, **kw: subprocess.run(a, check=True, capture_output=True, **kw)
        with open(work / "qemu.kdump-zlib", "rb") as f:
            run("makedumpfile", "-R", str(work / "qemu-R.kdump-zlib"), stdin=f)
        fixed = work / "fixed.elf"
        _makedumpfile_elf(work / "qemu.elf", fixed)
        run("makedumpfile", "-l", "-d", "0", str(fixed), str(work / "mdf.kdump-lzo"))
        with open(work / "mdf-F.kdump-zlib", "wb") as f:
            subprocess.run(
                ["makedumpfile", "-F", "-c", "-d", "1", str(fixed)], check=True, stdout=f, stderr=subprocess.DEVNULL
            )
        fixed.unlink()
        # the codecs no tool here writes: our writer, from the ELF's pages
        elf = ElfRam(work / "qemu.elf")
        ref = DiskDumpFile(work / "qemu-R.kdump-zlib", require_vmcoreinfo=False)
        ram = elf.bitmap(ref.max_mapnr)
        ref.close()
        for codec in ("snappy", "zstd"):
            try:
                _compress(codec, b"\0" * PS)
            except ImportError:
                continue
            write_kdump(work / f"writer.kdump-{codec}", elf.page, ram, ram, codec)
        elf.close()
        for p in work.iterdir():
            if p.name.startswith(("qemu", "mdf", "writer")):
                os.replace(p, d / p.name)
        (d / "complete").write_text(",".join(made))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def dumps() -> Path:
    d = _cache_dir()
    if not (d / "complete").exists():
        for tool in ("qemu-system-x86_64", "makedumpfile"):
            assert shutil.which(tool), f"{tool} is not installed (.ci/run installs it)"
        _generate(d)
    return d


@pytest.fixture(scope="module")
def elf(dumps: Path) -> ElfRam:
    e = ElfRam(dumps / "qemu.elf")
    yield e
    e.close()


# Debian's QEMU 7.2 writes only kdump-zlib (lzo and snappy are "not available"), makedumpfile
# 1.7.2 lzo but not snappy or zstd: those two come from the test writer.
KDUMP_NAMES = [
    "qemu.kdump-zlib",
    "qemu-R.kdump-zlib",
    "mdf.kdump-lzo",
    "mdf-F.kdump-zlib",
    "writer.kdump-snappy",
    "writer.kdump-zstd",
]


def _open(dumps: Path, name: str, **kw) -> DiskDumpFile:
    p = dumps / name
    if not p.exists():
        pytest.skip(f"{name} could not be made here (codec unsupported by the tools)")
    return DiskDumpFile(p, require_vmcoreinfo=False, **kw)


# -- against the real dumps -------------------------------------------------------------------


@pytest.mark.parametrize("name", KDUMP_NAMES)
def test_sampled_pages_equal_elf(dumps: Path, elf: ElfRam, name: str) -> None:
    """A quick check of every file: 400 random RAM pages (the full comparison is slow)."""
    d = _open(dumps, name)
    try:
        pfns = np.flatnonzero(elf.bitmap(d.max_mapnr))
        for pfn in np.random.default_rng(3).choice(pfns, 400, replace=False).tolist():
            assert d.read_phys(pfn * PS, PS) == elf.page(pfn), f"{name}: pfn {pfn:#x}"
    finally:
        d.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", KDUMP_NAMES)
def test_pages_equal_elf(dumps: Path, elf: ElfRam, name: str) -> None:
    d = _open(dumps, name)
    try:
        assert d.ram_ranges == elf.ranges()
        assert [(s.paddr, s.end) for s in d.segments] == elf.ranges()
        assert all(s.offset == -1 for s in d.segments)
        assert d.aliases == []
        assert d.vmcoreinfo == {} and d.vmcoreinfo_text == ""
        if not name.startswith("writer"):
            assert [n[0] for n in d.notes][:1] == ["CORE"]  # QEMU's NT_PRSTATUS notes
        for pa, off, fs in elf.segs:
            got = d.read_phys_array(pa, fs)
            want = elf.np[off : off + fs]
            if not np.array_equal(got, want):
                bad = int(np.flatnonzero(got != want)[0])
                pytest.fail(f"{name}: byte at {pa + bad:#x} differs from the ELF dump")
        # single, cached and page-crossing reads
        for a in (0x1000, 0x9F000, 0xC0000, 0x100FF8, 0x1234567, 0xFFFF000 - 3):
            assert d.read_phys(a, 100) == _elf_bytes(elf, a, 100)
        assert d.is_ram(0x1000) and not d.is_ram(0xA0000) and not d.is_ram(0x10000000)
        with pytest.raises(FaultError, match="not RAM"):
            d.read_phys(0xA0000, 8)
        with pytest.raises(FaultError, match="not RAM"):
            d.read_phys(0x9FFFC, 8)  # crosses into the hole
    finally:
        d.close()


def _elf_bytes(elf: ElfRam, paddr: int, size: int) -> bytes:
    for pa, off, fs in elf.segs:
        if pa <= paddr and paddr + size <= pa + fs:
            return bytes(elf.m[off + paddr - pa : off + paddr - pa + size])
    raise KeyError(paddr)


def test_flattened_equals_reassembled(dumps: Path) -> None:
    flat = DiskDumpFile(dumps / "qemu.kdump-zlib", require_vmcoreinfo=False)
    try:
        assert flat.flattened
        with open(dumps / "qemu-R.kdump-zlib", "rb") as f:
            assert bytes(flat.buf[:]) == f.read()  # byte for byte what makedumpfile -R wrote
    finally:
        flat.close()


@pytest.mark.parametrize("cache_pages", [4096, 64])
def test_gather_u64_matches_reads(dumps: Path, elf: ElfRam, cache_pages: int) -> None:
    d = _open(dumps, "qemu-R.kdump-zlib", cache_pages=cache_pages)
    try:
        rng = np.random.default_rng(7)
        pfns = np.flatnonzero(elf.bitmap(d.max_mapnr))
        addrs = (rng.choice(pfns, 200_000) * PS + rng.integers(0, PS // 8, 200_000) * 8).astype(np.uint64)
        got = d.gather_u64(addrs)
        sample = rng.choice(len(addrs), 1000, replace=False)
        for i in sample.tolist():
            a = int(addrs[i])
            assert int(got[i]) == int.from_bytes(d.read_phys(a, 8), "little") == elf.word(a)
        # unaligned and page-crossing words
        odd = np.array([0x1001, 0x1FFD, 0x2FF9, 0x5000003, 0xFFFEFFC], dtype=np.uint64)
        assert d.gather_u64(odd).tolist() == [elf.word(int(a)) for a in odd]
        assert d.gather_u64(np.zeros(0, dtype=np.uint64)).shape == (0,)
        with pytest.raises(FaultError, match="not RAM") as ei:
            d.gather_u64(np.array([0x1000, 0xA0008, 0x20000000], dtype=np.uint64))
        assert ei.value.address == 0xA0008
        with pytest.raises(FaultError, match="not RAM"):
            d.gather_u64(np.array([0x9FFFC], dtype=np.uint64))
        with pytest.raises(FaultError, match="not RAM"):
            d.gather_u64(np.array([1 << 63], dtype=np.uint64))
    finally:
        d.close()


def test_open_core_dispatch(dumps: Path) -> None:
    d = open_core(dumps / "qemu.kdump-zlib", require_vmcoreinfo=False)
    assert isinstance(d, DiskDumpFile)
    d.close()
    with pytest.raises(SnapshotError, match="no VMCOREINFO"):
        DiskDumpFile(dumps / "mdf.kdump-lzo")  # the guest never loaded qemu_fw_cfg
    with pytest.raises(SnapshotError, match="VMCOREINFO"):
        open_core(dumps / "qemu.elf")  # an ELF core goes to CoreFile


# -- synthetic files: filtering, corruption, malformed input ---------------------------------

NPFN = 64
RAM = np.zeros(NPFN, dtype=bool)
RAM[0:40] = True
RAM[44:60] = True
FILTERED = 5


def _page(pfn: int) -> bytes:
    rng = np.random.default_rng(pfn)
    if pfn % 3 == 0:
        return bytes(rng.integers(0, 256, PS, dtype=np.uint8))  # incompressible: stored raw
    return (struct.pack("<Q", pfn) * 16 + bytes(rng.integers(0, 4, 128, dtype=np.uint8))) * 16


@pytest.fixture
def small(tmp_path: Path):
    """A 64-page kdump file: RAM pfns 0-39 and 44-59, pfn 5 filtered out, with vmcoreinfo."""

    def make(name: str = "small.kdump", codec: str = "zlib", **kw) -> tuple[Path, dict]:
        dumped = RAM.copy()
        dumped[FILTERED] = False
        kw.setdefault("vmcoreinfo", b"OSRELEASE=6.18.0\nPAGESIZE=4096\n")
        p = tmp_path / name
        return p, write_kdump(p, _page, RAM, dumped, codec, **kw)

    return make


def test_small_roundtrip_and_filtered(small) -> None:
    p, _where = small()
    d = DiskDumpFile(p)
    try:
        assert d.vmcoreinfo == {"OSRELEASE": "6.18.0", "PAGESIZE": "4096"}
        assert d.ram_ranges == [(0, 40 * PS), (44 * PS, 60 * PS)]
        for pfn in np.flatnonzero(RAM).tolist():
            if pfn != FILTERED:
                assert d.read_phys(pfn * PS, PS) == _page(pfn)
        with pytest.raises(FaultError, match="filtered") as ei:
            d.read_phys(FILTERED * PS + 16, 8)
        assert ei.value.address == FILTERED * PS + 16
        with pytest.raises(FaultError, match="filtered"):
            d.read_phys_array(0, 40 * PS)  # a bulk read through the filtered page
        with pytest.raises(FaultError, match="filtered"):
            d.read_phys(FILTERED * PS - 4, 8)  # crossing into it
        with pytest.raises(FaultError, match="filtered"):
            d.gather_u64(np.array([0, FILTERED * PS + 8], dtype=np.uint64))
        with pytest.raises(FaultError, match="not RAM"):
            d.read_phys(41 * PS, 8)
        with pytest.raises(FaultError, match="not RAM"):
            d.read_phys(NPFN * PS + 8, 8)
        assert d.is_ram(FILTERED * PS) and not d.is_dumped(FILTERED * PS)
        assert d.gather_u64(np.array([8 * PS, 50 * PS + 8], dtype=np.uint64)).tolist() == [
            int.from_bytes(_page(8)[:8], "little"),
            int.from_bytes(_page(50)[8:16], "little"),
        ]
    finally:
        d.close()


@pytest.mark.parametrize("codec", ["none", "zlib", "lzo", "snappy", "zstd"])
def test_small_codecs(small, codec: str) -> None:
    try:
        _compress(codec, b"\0" * PS)
    except ImportError:
        pytest.skip(f"no {codec} module to write with")
    p, _ = small(codec=codec)
    d = DiskDumpFile(p)
    try:
        buf = d.read_phys_array(0, 5 * PS).tobytes() + d.read_phys_array(44 * PS, 16 * PS).tobytes()
        assert buf == b"".join(_page(i) for i in list(range(5)) + list(range(44, 60)))
    finally:
        d.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_header_versions(small, version: int) -> None:
    p, _ = small(version=version)
    if version < 3:  # no vmcoreinfo area before version 3
        with pytest.raises(SnapshotError, match="no VMCOREINFO"):
            DiskDumpFile(p)
        d = DiskDumpFile(p, require_vmcoreinfo=False)
    else:
        d = DiskDumpFile(p)
        assert d.vmcoreinfo["PAGESIZE"] == "4096"
    assert d.header_version == version
    assert d.read_phys(44 * PS, PS) == _page(44)
    d.close()


def test_vmcoreinfo_from_note(small) -> None:
    text = b"OSRELEASE=6.18.0\nBUILD-ID=abcd\n\0"
    note = struct.pack("<III", 11, len(text), 0) + b"VMCOREINFO\0\0" + text + b"\0" * (-len(text) % 4)
    p, _ = small(vmcoreinfo=b"", notes=note)
    d = DiskDumpFile(p)
    assert d.vmcoreinfo == {"OSRELEASE": "6.18.0", "BUILD-ID": "abcd"}
    assert d.notes == [("VMCOREINFO", 0, text)]
    d.close()


def test_corrupt_compressed_page(small) -> None:
    p, where = small()
    pfn = 7
    off, n = where[pfn]
    with open(p, "r+b") as f:
        f.seek(off + n // 2)
        f.write(b"\xaa" * 16)
    d = DiskDumpFile(p)
    try:
        assert d.read_phys(8 * PS, PS) == _page(8)
        for read in (
            lambda: d.read_phys(pfn * PS, 8),
            lambda: d.read_phys_array(6 * PS, 14 * PS),
            lambda: d.gather_u64(np.array([pfn * PS], dtype=np.uint64)),
        ):
            with pytest.raises(SnapshotError, match=r"corrupt compressed page at pfn 0x7 \(7"):
                read()
    finally:
        d.close()


def test_decompressed_length_wrong(small, tmp_path: Path) -> None:
    p, where = small()
    off, n = where[8]
    short = zlib.compress(b"x" * 100)
    assert len(short) <= n
    with open(p, "r+b") as f:
        f.seek(off)
        f.write(short)
    d = DiskDumpFile(p)
    with pytest.raises(SnapshotError, match="corrupt compressed page at pfn 0x8.*100 bytes"):
        d.read_phys(8 * PS, 8)
    d.close()


def test_missing_codec_module(small, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmintro.reader.diskdump as dd

    p, _ = small(codec="zstd") if _has("zstd") else small(codec="zlib")
    monkeypatch.setattr(dd, "_load_decoder", lambda codec: None)
    d = DiskDumpFile(p)
    if _has("zstd"):
        with pytest.raises(SnapshotError, match="zstd-compressed; install the Python package 'cramjam'"):
            d.read_phys(PS, 8)
    d.close()


def _has(codec: str) -> bool:
    try:
        _compress(codec, b"\0" * PS)
        return True
    except ImportError:
        return False


def test_truncated(small, tmp_path: Path) -> None:
    p, where = small()
    data = p.read_bytes()
    for cut in (len(data) - 100, max(o for o, _n in where.values()), 2 * PS + 10, 3 * PS + 24 * 10, 300):
        t = tmp_path / "cut.kdump"
        t.write_bytes(data[:cut])
        with pytest.raises(SnapshotError, match="truncated") as ei:
            DiskDumpFile(t)
        assert "\n" not in str(ei.value) and str(t) in str(ei.value)


@pytest.mark.parametrize(
    "patch, msg",
    [
        ((8, struct.pack("<i", 0)), "unsupported kdump header version 0"),
        ((8, struct.pack("<i", 100000)), "unsupported kdump header version"),
        ((428, struct.pack("<i", 8192)), "block_size is 8192"),
        ((436, struct.pack("<I", 0)), "corrupt header"),
        ((436, struct.pack("<I", 0x7FFFFFFE)), "truncated"),
        ((432, struct.pack("<i", 0x7FFFFFFF)), "truncated"),
        ((4096 + 96, struct.pack("<Q", 1 << 60)), "max_mapnr"),
        ((4096 + 48, struct.pack("<qQ", 1 << 50, 100)), "truncated"),  # the note area
        ((4096 + 32, struct.pack("<q", -5)), "truncated"),  # vmcoreinfo at a negative offset
        ((0, b"DISKDUMP"), "old-style DISKDUMP"),
    ],
)
def test_malformed_header(small, patch, msg: str) -> None:
    p, _ = small()
    off, data = patch
    with open(p, "r+b") as f:
        f.seek(off)
        f.write(data)
    with pytest.raises(SnapshotError, match=msg) as ei:
        DiskDumpFile(p)
    assert "\n" not in str(ei.value)


def test_corrupt_page_descriptor(small) -> None:
    p, _ = small()
    raw = bytearray(p.read_bytes())
    desc_off = (1 + 1 + 2) * PS
    struct.pack_into("<q", raw, desc_off + 24 * 3, 1 << 40)  # pfn 3's data far past the end
    p.write_bytes(raw)
    with pytest.raises(SnapshotError, match="truncated.*pfn 0x3"):
        DiskDumpFile(p)


def test_garbage(tmp_path: Path) -> None:
    g = tmp_path / "garbage"
    g.write_bytes(os.urandom(10000))
    with pytest.raises(SnapshotError, match="not an ELF core or a kdump-compressed file"):
        open_core(g)
    with pytest.raises(SnapshotError, match="not a kdump-compressed file"):
        DiskDumpFile(g)
    e = tmp_path / "empty"
    e.write_bytes(b"")
    with pytest.raises(SnapshotError, match="empty"):
        open_core(e)
    with pytest.raises(SnapshotError, match="empty"):
        DiskDumpFile(e)
    with pytest.raises(SnapshotError, match="does not exist"):
        open_core(tmp_path / "nope")
    short = tmp_path / "short"
    short.write_bytes(b"KDUMP   \x06\0\0\0")
    with pytest.raises(SnapshotError, match="truncated"):
        open_core(short)


def test_flattened_small(small, tmp_path: Path) -> None:
    p, _ = small()
    f, _ = small("small.flat", flattened=True)
    a, b = DiskDumpFile(p), DiskDumpFile(f)
    try:
        assert b.flattened and not a.flattened
        assert bytes(b.buf[:]) == p.read_bytes()
        assert b.read_phys_array(44 * PS, 16 * PS).tobytes() == a.read_phys_array(44 * PS, 16 * PS).tobytes()
        with pytest.raises(FaultError, match="filtered"):
            b.read_phys(FILTERED * PS, 8)
    finally:
        a.close()
        b.close()
    data = f.read_bytes()
    bad = tmp_path / "bad.flat"
    bad.write_bytes(data[:-16])  # no end marker
    with pytest.raises(SnapshotError, match="truncated.*no end marker"):
        open_core(bad)
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError, match="truncated"):
        open_core(bad)
    rec = bytearray(data)
    struct.pack_into(">q", rec, 4096, 1 << 62)  # the first record's offset
    bad.write_bytes(rec)
    with pytest.raises(SnapshotError, match="absurd"):
        open_core(bad)
    rec = bytearray(data)
    struct.pack_into(">q", rec, 4096 + 8, -3)  # its size
    bad.write_bytes(rec)
    with pytest.raises(SnapshotError, match="absurd"):
        open_core(bad)
    rec = bytearray(data)
    struct.pack_into(">q", rec, 16, 2)  # the header's type
    bad.write_bytes(rec)
    with pytest.raises(SnapshotError, match="flattened-format type 2"):
        open_core(bad)
    bad.write_bytes(data[:100])
    with pytest.raises(SnapshotError, match="truncated"):
        open_core(bad)


def test_flattened_large_uses_tempfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmintro.reader.diskdump as dd

    monkeypatch.setattr(dd, "_IN_MEMORY_MAX", 0)
    dumped = RAM.copy()
    f = tmp_path / "t.flat"
    write_kdump(f, _page, RAM, dumped, "zlib", vmcoreinfo=b"A=1\n", flattened=True)
    before = set(os.listdir(tmp_path))
    d = DiskDumpFile(f)
    assert isinstance(d.buf, mmap.mmap)
    assert set(os.listdir(tmp_path)) == before  # the temporary file is unlinked from the start
    assert d.read_phys(5 * PS, PS) == _page(5)
    d.close()
    d.close()  # idempotent


def test_split_range(tmp_path: Path) -> None:
    """A makedumpfile --split part: descriptors only for pfns in [start_pfn, end_pfn)."""
    p = tmp_path / "part.kdump"
    dumped = RAM.copy()
    write_kdump(p, _page, RAM, dumped, "zlib", vmcoreinfo=b"A=1\n")
    raw = bytearray(p.read_bytes())
    # rewrite as part 2 of 2: pfns 32..63; its descriptors start with pfn 32's
    struct.pack_into("<i", raw, PS + 12, 1)
    struct.pack_into("<QQ", raw, PS + 80, 32, NPFN)
    desc_off = 4 * PS
    n_before = int(dumped[:32].sum())
    n_total = int(dumped.sum())
    raw[desc_off : desc_off + 24 * (n_total - n_before)] = raw[desc_off + 24 * n_before : desc_off + 24 * n_total]
    p.write_bytes(raw)
    d = DiskDumpFile(p)
    assert d.split == (32, NPFN)
    assert d.read_phys(33 * PS, PS) == _page(33)
    assert d.read_phys(50 * PS, PS) == _page(50)
    with pytest.raises(FaultError, match="split"):
        d.read_phys(3 * PS, 8)
    d.close()


def test_lru_cache_reuses_pages(small) -> None:
    p, _ = small()
    d = DiskDumpFile(p, cache_pages=4)
    for _ in range(3):
        d.read_phys(PS, 8)
    assert d.pages_decompressed == 1
    for pfn in (1, 2, 4, 7, 8, 10):  # evicts pfn 1
        d.read_phys(pfn * PS, 8)
    d.read_phys(PS, 8)
    assert d.pages_decompressed == 7
    addrs = np.array([pfn * PS + 8 * k for pfn in (1, 2, 4, 7, 8, 10, 11, 13) for k in range(5)], dtype=np.uint64)
    want = [int.from_bytes(_page(int(a) // PS)[int(a) % PS : int(a) % PS + 8], "little") for a in addrs]
    assert d.gather_u64(addrs).tolist() == want  # more pages than the cache holds
    d.close()
