"""makedumpfile's kdump-compressed vmcore ("KDUMP   " diskdump format), read as physical memory.

The layout (makedumpfile's ``diskdump_mod.h``; QEMU's ``dump-guest-memory -z/-l/-s`` writes
the same), in blocks of ``block_size`` bytes::

    block 0                      struct disk_dump_header   ("KDUMP   ", header_version, ...)
    block 1                      struct kdump_sub_header   (sub_hdr_size blocks: phys_base,
                                 dump_level, split range, vmcoreinfo / ELF notes / eraseinfo
                                 areas, 64-bit max_mapnr in version 6 and later)
    1 + sub_hdr_size             bitmap_blocks blocks: the 1st bitmap (one bit per pfn: the
                                 page is RAM) then the 2nd bitmap (the page was written)
    1 + sub_hdr_size + bitmaps   page_desc_t[] (offset, size, flags, page_flags): one per set
                                 bit of the 2nd bitmap, in pfn order
    ...                          page data, compressed (zlib, lzo, snappy, zstd) or not

A page that is RAM (1st bitmap) but was left out by makedumpfile's filtering (``-d``: zero,
cache, user or free pages; 2nd bitmap clear) raises FaultError "page was filtered out of the
dump" -- it is never read as zeros.  makedumpfile's *flattened* format (``makedumpfile -F``,
and every kdump file QEMU before 8.2 writes: a "makedumpfile" header, then big-endian
(offset, size) records) is reassembled into an unlinked temporary file (or memory, when
small) first, as ``makedumpfile -R`` would.

:class:`DiskDumpFile` has the interface of :class:`mmintro.reader.core.CoreFile`;
:func:`open_core` opens either by sniffing the file's first bytes.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from mmintro.reader.core import CoreFile, Segment, find_segment, merged_ranges, parse_vmcoreinfo
from mmintro.reader.elf import iter_notes, map_file
from mmintro.reader.errors import FaultError, SnapshotError

__all__ = ["DiskDumpFile", "open_core", "CODEC_PACKAGES"]

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
MDF_SIGNATURE = b"makedumpfile"
MDF_HEADER_SIZE = 4096  # MAX_SIZE_MDF_HEADER
ELF_MAGIC = b"\x7fELF"

PAGE_SIZE = 4096

# page_desc_t.flags
DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8  # disk_dump_header.status: makedumpfile ran out of space
DUMP_DH_EXCLUDED_VMEMMAP = 0x10
DUMP_DH_COMPRESSED_ZSTD = 0x20
_CODEC_FLAGS = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD

#: the PyPI package that decodes each codec (zlib is the standard library's)
CODEC_PACKAGES = {"lzo": "lzallright", "snappy": "cramjam", "zstd": "cramjam"}

# struct disk_dump_header on 64-bit: signature[8], header_version, utsname (6 x 65 bytes),
# struct timeval (8-aligned), status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr,
# total_ram_blocks, device_blocks, written_blocks, current_cpu, nr_cpus
_DH = struct.Struct("<8si390s6xqqIiiIIIIIIi")
# struct kdump_sub_header (64-bit): phys_base, dump_level, split, start_pfn, end_pfn,
# offset/size of vmcoreinfo (v3), note (v4), eraseinfo (v5); start/end_pfn_64, max_mapnr_64 (v6)
_SUB = struct.Struct("<QiiQQqQqQqQQQQ")
_FLAT_HDR = struct.Struct(">16sqq")
_FLAT_REC = struct.Struct(">qq")
PAGE_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])

_BULK_PAGES = 16  # reads spanning more pages take the bulk path (no cache insertion)
_IN_MEMORY_MAX = 32 << 20  # flattened files reassembled in memory up to this size
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount64(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (as int64)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).astype(np.int64)
    return _POPCOUNT8[words.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def _bit_runs(bits: np.ndarray, nbits: int) -> list[tuple[int, int]]:
    """(first, end) pfn runs of set bits in the little-endian bitmap ``bits`` (uint8)."""
    runs: list[tuple[int, int]] = []
    chunk = 1 << 24  # bytes per step: bounds the temporary bool array at 128 MiB
    for start in range(0, (nbits + 7) // 8, chunk):
        b = np.unpackbits(bits[start : start + chunk], bitorder="little")
        b = b[: max(0, nbits - start * 8)].astype(np.int8)
        edges = np.flatnonzero(np.diff(b, prepend=0, append=0))
        base = start * 8
        for lo, hi in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            if runs and runs[-1][1] == base + lo:
                runs[-1] = (runs[-1][0], base + hi)
            else:
                runs.append((base + lo, base + hi))
    return runs


def _codec_error(what: str, pfn: int, codec: str) -> SnapshotError:
    pkg = CODEC_PACKAGES[codec]
    return SnapshotError(
        f"{what}: the page at pfn {pfn:#x} is {codec}-compressed; install the Python package "
        f"{pkg!r} (pip install {pkg}) to read it"
    )


def _load_decoder(codec: str) -> Callable[[bytes, int], bytes] | None:
    """A function (data, page_size) -> bytes for ``codec``, or None if no module provides it.
    Decoders may return any length (checked by the caller) and raise anything on bad data."""
    if codec == "lzo":
        try:
            import lzallright  # type: ignore[import-not-found]

            return lambda data, n: lzallright.LZOCompressor.decompress(data)
        except ImportError:
            pass
        try:
            import lzo  # type: ignore[import-not-found]  # python-lzo

            return lambda data, n: lzo.decompress(data, False, n)
        except ImportError:
            return None
    if codec == "snappy":
        try:
            import cramjam  # type: ignore[import-not-found]

            def snappy_cj(data: bytes, n: int) -> bytes:
                if cramjam.snappy.decompress_raw_len(data) != n:  # the preamble: no big allocation
                    raise ValueError("uncompressed length is not the page size")
                return bytes(cramjam.snappy.decompress_raw(data))

            return snappy_cj
        except ImportError:
            pass
        try:
            import snappy  # type: ignore[import-not-found]  # python-snappy

            return lambda data, n: snappy.uncompress(data)
        except ImportError:
            return None
    if codec == "zstd":
        try:
            import cramjam  # type: ignore[import-not-found]

            def zstd_cj(data: bytes, n: int) -> bytes:
                out = np.empty(n, dtype=np.uint8)  # a fixed buffer: a larger frame fails
                got = cramjam.zstd.decompress_into(data, out)
                return out[:got].tobytes()

            return zstd_cj
        except ImportError:
            pass
        try:
            import zstandard  # type: ignore[import-not-found]

            return lambda data, n: zstandard.ZstdDecompressor().decompress(data, max_output_size=n)
        except ImportError:
            return None
    raise AssertionError(codec)


def _zlib_decode(data: bytes, n: int) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, n + 1)  # bounded: a bomb cannot blow up memory
    if not d.eof:
        raise ValueError("incomplete zlib stream")
    return out


def _reassemble_flattened(buf: Any, size: int, path: str, what: str) -> tuple[Any, int | None]:
    """makedumpfile -R: the flattened records of ``buf`` laid out as one file.

    Returns (buffer, fd): an mmap of an unlinked temporary file (and its fd) or a bytearray."""
    if size < MDF_HEADER_SIZE:
        raise SnapshotError(
            f"{what} is truncated: a flattened file has a {MDF_HEADER_SIZE}-byte header, the file has {size} bytes"
        )
    _sig, ftype, version = _FLAT_HDR.unpack_from(buf, 0)
    if ftype != 1:
        raise SnapshotError(f"{what}: unsupported flattened-format type {ftype} (expected 1)")
    if version != 1:
        raise SnapshotError(f"{what}: unsupported flattened-format version {version} (expected 1)")
    limit = 2 * size + (1 << 20)  # every output byte comes from a record; holes are small
    records: list[tuple[int, int, int]] = []  # output offset, input offset, size
    pos, out_size = MDF_HEADER_SIZE, 0
    while True:
        if pos + _FLAT_REC.size > size:
            raise SnapshotError(
                f"{what} is truncated: flattened record header at {pos:#x} is past the end "
                f"of the file ({size:#x} bytes; no end marker)"
            )
        off, n = _FLAT_REC.unpack_from(buf, pos)
        if off == -1:
            break
        if off < 0 or n <= 0 or off + n > limit:
            raise SnapshotError(
                f"{what}: flattened record at {pos:#x} has an absurd offset {off:#x} / "
                f"size {n:#x} for a {size:#x}-byte file"
            )
        pos += _FLAT_REC.size
        if pos + n > size:
            raise SnapshotError(
                f"{what} is truncated: flattened record at {pos - 16:#x} needs bytes up to "
                f"{pos + n:#x}, the file has {size:#x}"
            )
        records.append((off, pos, n))
        out_size = max(out_size, off + n)
        pos += n
    if out_size == 0:
        raise SnapshotError(f"{what}: flattened file holds no data")
    if out_size <= _IN_MEMORY_MAX:
        out = bytearray(out_size)
        for off, src, n in records:
            out[off : off + n] = buf[src : src + n]
        return out, None
    d = os.path.dirname(os.path.abspath(path))
    try:
        tmp = tempfile.TemporaryFile(dir=d if os.access(d, os.W_OK) else None)
    except OSError:
        tmp = tempfile.TemporaryFile()
    try:
        fd = os.dup(tmp.fileno())
    finally:
        tmp.close()  # TemporaryFile is already unlinked: the data lives as long as fd / the mapping
    try:
        os.ftruncate(fd, out_size)
        mv = memoryview(buf)
        for off, src, n in records:
            done = 0
            while done < n:
                done += os.pwrite(fd, mv[src + done : src + n], off + done)
        mv.release()
        return mmap.mmap(fd, out_size, access=mmap.ACCESS_READ), fd
    except OSError as e:
        os.close(fd)
        raise SnapshotError(f"{what}: cannot reassemble the flattened file into a temporary file: {e}") from None


class DiskDumpFile:
    """Physical memory and notes of a kdump-compressed (or flattened) vmcore.

    Same interface as :class:`~mmintro.reader.core.CoreFile`.  Segments describe the runs of
    RAM pages of the 1st bitmap (``offset`` is -1: there is no file offset).  Decompressed
    pages live in an LRU cache of ``cache_pages`` pages.
    """

    def __init__(self, path: str | os.PathLike, *, require_vmcoreinfo: bool = True, cache_pages: int = 4096) -> None:
        self.path = os.fspath(path)
        what = self._what = f"vmcore {self.path!r}"
        self.aliases: list[tuple[int, int, int, int, int]] = []
        self._fd = -1
        self._closed = False
        raw = map_file(path, "vmcore")
        self.flattened = raw[: len(MDF_SIGNATURE)] == MDF_SIGNATURE
        if self.flattened:
            try:
                self.buf, fd = _reassemble_flattened(raw, len(raw), self.path, what)
                self._fd = -1 if fd is None else fd
            finally:
                raw.close()
        else:
            self.buf = raw
        try:
            self._parse(require_vmcoreinfo)
        except BaseException:
            self.close()
            raise
        self._cache_pages = max(2, int(cache_pages))
        self._pool = np.empty((self._cache_pages, self.page_size), dtype=np.uint8)
        self._pool_u64 = self._pool.view(np.uint64)
        self._lru: OrderedDict[int, int] = OrderedDict()  # pfn -> pool slot
        self._free = list(range(self._cache_pages - 1, -1, -1))
        self._decoders: dict[str, Callable[[bytes, int], bytes] | None] = {}
        self.pages_decompressed = 0

    # -- parsing ------------------------------------------------------------------
    def _parse(self, require_vmcoreinfo: bool) -> None:
        buf, what = self.buf, self._what
        size = self._size = len(buf)
        sig = bytes(buf[:8])
        if sig == DISKDUMP_SIGNATURE:
            raise SnapshotError(f"{what} is an old-style DISKDUMP file, not a kdump-compressed one (unsupported)")
        if sig != KDUMP_SIGNATURE:
            raise SnapshotError(f"{what} is not a kdump-compressed file (signature {sig!r}, expected 'KDUMP   ')")
        if size < _DH.size:
            raise SnapshotError(
                f"{what} is truncated: the disk_dump_header needs {_DH.size} bytes, the file has {size}"
            )
        (
            _sig,
            version,
            uts,
            _tv_sec,
            _tv_usec,
            self.status,
            bs,
            sub_blocks,
            bitmap_blocks,
            max_mapnr32,
            _total,
            _device,
            _written,
            _cpu,
            self.nr_cpus,
        ) = _DH.unpack_from(buf, 0)
        if not 1 <= version <= 255:
            raise SnapshotError(f"{what}: unsupported kdump header version {version} (expected 1 to 6)")
        self.header_version = version
        fields = [uts[i * 65 : (i + 1) * 65].split(b"\0")[0].decode("latin-1") for i in range(6)]
        self.utsname = dict(zip(("sysname", "nodename", "release", "version", "machine", "domainname"), fields))
        if bs != PAGE_SIZE:
            raise SnapshotError(f"{what}: block_size is {bs}, only 4096 (64-bit x86 dumps) is supported")
        self.page_size = self.block_size = bs
        if sub_blocks < 0 or bitmap_blocks <= 0 or bitmap_blocks % 2:
            raise SnapshotError(f"{what}: corrupt header (sub_hdr_size {sub_blocks}, bitmap_blocks {bitmap_blocks})")
        sub_off = bs
        bitmap_off = (1 + sub_blocks) * bs
        desc_off = bitmap_off + bitmap_blocks * bs
        if bitmap_off > size or desc_off > size:
            raise SnapshotError(
                f"{what} is truncated: the header and bitmaps need {desc_off:#x} bytes, the file has {size:#x}"
            )
        # the sub header: fields past those of this header version read as 0
        sub = bytearray(_SUB.size)
        have = min(_SUB.size, sub_blocks * bs)
        sub[:have] = buf[sub_off : sub_off + have]
        (
            phys_base,
            dump_level,
            split,
            start_pfn,
            end_pfn,
            off_vmci,
            size_vmci,
            off_note,
            size_note,
            off_erase,
            size_erase,
            start_pfn64,
            end_pfn64,
            max_mapnr64,
        ) = _SUB.unpack(sub)
        if version < 1:
            dump_level = 0
        if version < 2:
            split, start_pfn, end_pfn = 0, 0, 0
        if version < 3:
            off_vmci = size_vmci = 0
        if version < 4:
            off_note = size_note = 0
        if version < 5:
            off_erase = size_erase = 0
        if version >= 6:
            start_pfn, end_pfn, max_mapnr = start_pfn64, end_pfn64, max_mapnr64
        else:
            max_mapnr = max_mapnr32
        self.phys_base, self.dump_level = phys_base, dump_level
        half = bitmap_blocks * bs // 2
        if max_mapnr > half * 8:
            raise SnapshotError(f"{what}: max_mapnr {max_mapnr:#x} does not fit the {half}-byte bitmaps")
        self.max_mapnr = nbits = int(max_mapnr)
        if not split:
            start_pfn, end_pfn = 0, nbits
        elif not (0 <= start_pfn <= end_pfn <= nbits):
            raise SnapshotError(
                f"{what}: split dump pfn range {start_pfn:#x}-{end_pfn:#x} is outside max_mapnr {nbits:#x}"
            )
        self.split = (int(start_pfn), int(end_pfn)) if split else None
        self._start_pfn, self._end_pfn = int(start_pfn), int(end_pfn)

        # bitmaps: words padded to 8 bytes so ranks work by uint64 word
        nbytes = (nbits + 7) // 8
        nwords = (nbits + 63) // 64
        bm = np.frombuffer(buf, dtype=np.uint8, count=bitmap_blocks * bs, offset=bitmap_off)
        self._bm1 = np.zeros(nwords * 8, dtype=np.uint8)
        self._bm2 = np.zeros(nwords * 8, dtype=np.uint8)
        self._bm1[:nbytes] = bm[:nbytes]
        self._bm2[:nbytes] = bm[half : half + nbytes]
        if nbits % 8:  # bits past max_mapnr are not pages
            mask = (1 << (nbits % 8)) - 1
            self._bm1[nbytes - 1] &= mask
            self._bm2[nbytes - 1] &= mask
        self._w2 = self._bm2.view(np.uint64)
        # rank of the 2nd bitmap: set bits before each word
        cnt = _popcount64(self._w2)
        self._rank = np.zeros(nwords + 1, dtype=np.int64)
        np.cumsum(cnt, out=self._rank[1:])
        self._desc_base = self._rank2(self._start_pfn)
        ndesc = self._rank2(self._end_pfn) - self._desc_base
        self.incomplete = bool(self.status & DUMP_DH_COMPRESSED_INCOMPLETE)
        if desc_off + ndesc * PAGE_DESC.itemsize > size:
            if not self.incomplete:
                raise SnapshotError(
                    f"{what} is truncated: {ndesc} page descriptors need bytes up to "
                    f"{desc_off + ndesc * PAGE_DESC.itemsize:#x}, the file has {size:#x}"
                )
            ndesc = (size - desc_off) // PAGE_DESC.itemsize
        self._ndesc = ndesc
        self._desc = np.frombuffer(buf, dtype=PAGE_DESC, count=ndesc, offset=desc_off)
        # every descriptor's data must lie in the file (checked in chunks: bounded memory)
        step = 1 << 22
        for i in range(0, ndesc, step):
            d = self._desc[i : i + step]
            end = d["offset"] + d["size"].astype(np.int64)
            bad = (d["offset"] < 0) | (end > size)
            if self.incomplete:
                bad &= d["offset"] != 0  # unwritten descriptors of an incomplete dump
            if bad.any():
                j = int(np.argmax(bad))
                raise SnapshotError(
                    f"{what} is truncated: the page descriptor for pfn {self._desc_pfn(i + j):#x} points "
                    f"at bytes {int(d['offset'][j]):#x}-{int(end[j]):#x}, the file has {size:#x}"
                )

        # segments: runs of RAM pages (1st bitmap)
        segs = [Segment(lo * bs, -1, (hi - lo) * bs, (hi - lo) * bs) for lo, hi in _bit_runs(self._bm1, nbits)]
        self.segments = segs
        self._starts = [s.paddr for s in segs]

        # notes, vmcoreinfo, eraseinfo
        self.notes: list[tuple[str, int, bytes]] = []
        if size_note:
            self._check_area(off_note, size_note, "ELF note area")
            self.notes.extend(iter_notes(buf, off_note, off_note + size_note, what))
        text = None
        if size_vmci:
            self._check_area(off_vmci, size_vmci, "vmcoreinfo")
            text = bytes(buf[off_vmci : off_vmci + size_vmci])
        else:
            info = [desc for name, _t, desc in self.notes if name == "VMCOREINFO"]
            if info:
                text = info[0]
        if text is None and require_vmcoreinfo:
            raise SnapshotError(f"{what} has no VMCOREINFO (neither in the kdump sub-header nor as a note)")
        self.vmcoreinfo_text = (text or b"").rstrip(b"\0").decode("utf-8", "replace")
        self.vmcoreinfo = parse_vmcoreinfo(self.vmcoreinfo_text)
        self.eraseinfo = ""
        if size_erase:
            self._check_area(off_erase, size_erase, "eraseinfo")
            self.eraseinfo = bytes(buf[off_erase : off_erase + size_erase]).decode("utf-8", "replace")

    def _check_area(self, off: int, n: int, name: str) -> None:
        if off < 0 or n < 0 or off + n > self._size:
            raise SnapshotError(
                f"{self._what} is truncated: the {name} ({off:#x}+{n:#x}) is past the end "
                f"of the file ({self._size:#x} bytes)"
            )

    def _rank2(self, pfn: int) -> int:
        """Set bits of the 2nd bitmap below ``pfn``."""
        w, b = pfn >> 6, pfn & 63
        r = int(self._rank[w])
        if b:
            r += bin(int(self._w2[w]) & ((1 << b) - 1)).count("1")
        return r

    def _rank_vec(self, pfn: np.ndarray) -> np.ndarray:
        """Vectorised _rank2 (pfns below max_mapnr)."""
        w = pfn >> 6
        b = (pfn & 63).astype(np.uint64)
        below = self._w2[w] & ((np.uint64(1) << b) - np.uint64(1))
        return self._rank[w] + _popcount64(below)

    def _desc_pfn(self, index: int) -> int:
        """The pfn of page descriptor ``index`` (for messages)."""
        target = self._desc_base + index
        w = int(np.searchsorted(self._rank, target, side="right")) - 1
        word = int(self._w2[w])
        seen = int(self._rank[w])
        for b in range(64):
            if word >> b & 1:
                if seen == target:
                    return w * 64 + b
                seen += 1
        return -1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name in ("_desc", "_pool", "_pool_u64"):
            self.__dict__.pop(name, None)
        buf = self.__dict__.pop("buf", None)
        if isinstance(buf, mmap.mmap):
            try:
                buf.close()
            except BufferError:
                pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DiskDumpFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pages -------------------------------------------------------------------
    def _bit(self, bits: np.ndarray, pfn: int) -> bool:
        return 0 <= pfn < self.max_mapnr and bool(bits[pfn >> 3] >> (pfn & 7) & 1)

    def _fault(self, pfn: int, paddr: int) -> FaultError:
        """Why page ``pfn`` cannot be read: not RAM, filtered out, or in another split part."""
        if not self._bit(self._bm1, pfn) and not self._bit(self._bm2, pfn):
            return FaultError(paddr, "physical address is not in the core (not RAM)")
        if not self._bit(self._bm2, pfn):
            return FaultError(paddr, "page was filtered out of the dump (makedumpfile -d)")
        return FaultError(paddr, "page is in another file of a split dump (makedumpfile --split)")

    def _slot(self, pfn: int, paddr: int) -> int:
        """The pool slot holding page ``pfn`` (decompressed on a miss)."""
        slot = self._lru.get(pfn)
        if slot is not None:
            self._lru.move_to_end(pfn)
            return slot
        if not (self._bit(self._bm1, pfn) and self._bit(self._bm2, pfn) and self._start_pfn <= pfn < self._end_pfn):
            raise self._fault(pfn, paddr)
        idx = self._rank2(pfn) - self._desc_base
        if idx >= self._ndesc:
            raise FaultError(paddr, "page was not written (the dump is incomplete)")
        if self._free:
            slot = self._free.pop()
        else:
            _old, slot = self._lru.popitem(last=False)
        try:
            self._decode_into(self._pool[slot], pfn, paddr, self._desc[idx].item())
        except BaseException:
            self._free.append(slot)
            raise
        self._lru[pfn] = slot
        return slot

    def _decode_into(self, dst: np.ndarray, pfn: int, paddr: int, desc: tuple[int, int, int, int]) -> None:
        """Write page ``pfn`` (its page descriptor ``desc``) into the page-sized array ``dst``."""
        off, n, flags, _pf = desc
        ps = self.page_size
        if self.incomplete and off == 0:
            raise FaultError(paddr, "page was not written (the dump is incomplete)")
        if off < 0 or n > ps or n == 0 or off + n > self._size:
            raise SnapshotError(f"{self._what}: corrupt page descriptor at pfn {pfn:#x} (offset {off:#x}, size {n:#x})")
        codec_flags = flags & _CODEC_FLAGS
        if not codec_flags:
            if n != ps:
                raise SnapshotError(
                    f"{self._what}: corrupt page at pfn {pfn:#x}: stored uncompressed "
                    f"with size {n:#x}, not the page size"
                )
            dst[:] = np.frombuffer(self.buf, dtype=np.uint8, count=ps, offset=off)
        else:
            data = bytes(self.buf[off : off + n])
            dst[:] = np.frombuffer(self._decompress(data, codec_flags, pfn), dtype=np.uint8)
            self.pages_decompressed += 1

    def _decompress(self, data: bytes, codec_flags: int, pfn: int) -> bytes:
        ps = self.page_size
        if codec_flags == DUMP_DH_COMPRESSED_ZLIB:
            codec, dec = "zlib", _zlib_decode
        else:
            codec = {
                DUMP_DH_COMPRESSED_LZO: "lzo",
                DUMP_DH_COMPRESSED_SNAPPY: "snappy",
                DUMP_DH_COMPRESSED_ZSTD: "zstd",
            }.get(codec_flags, "")
            if not codec:
                raise SnapshotError(
                    f"{self._what}: corrupt page descriptor at pfn {pfn:#x} (compression flags {codec_flags:#x})"
                )
            if codec not in self._decoders:
                self._decoders[codec] = _load_decoder(codec)
            dec = self._decoders[codec]
            if dec is None:
                raise _codec_error(self._what, pfn, codec)
        try:
            out = dec(data, ps)
        except Exception as e:
            msg = str(e).splitlines()[0][:80] if str(e) else type(e).__name__
            raise SnapshotError(
                f"{self._what}: corrupt compressed page at pfn {pfn:#x} ({pfn}; {codec}: {msg})"
            ) from None
        if len(out) != ps:
            raise SnapshotError(
                f"{self._what}: corrupt compressed page at pfn {pfn:#x} ({pfn}; {codec} "
                f"yields {len(out)} bytes, not {ps})"
            )
        return out

    def _page(self, pfn: int, paddr: int) -> np.ndarray:
        return self._pool[self._slot(pfn, paddr)]

    # -- physical reads (CoreFile's interface) -------------------------------------
    def segment_at(self, paddr: int) -> Segment:
        return find_segment(self.segments, self._starts, paddr)

    def is_ram(self, paddr: int) -> bool:
        return paddr >= 0 and self._bit(self._bm1, paddr // self.page_size)

    def is_dumped(self, paddr: int) -> bool:
        """RAM whose page is in this file (not filtered out, not in another split part)."""
        pfn = paddr // self.page_size
        return self._bit(self._bm1, pfn) and self._bit(self._bm2, pfn) and self._start_pfn <= pfn < self._end_pfn

    def read_phys(self, paddr: int, size: int) -> bytes:
        """``size`` bytes of physical memory at ``paddr``; FaultError outside RAM or for
        pages filtered out of the dump."""
        ps = self.page_size
        off = paddr % ps
        if off + size <= ps:
            page = self._page(paddr // ps, paddr)
            return page[off : off + size].tobytes()
        return self.read_phys_array(paddr, size).tobytes()

    def read_phys_into(self, out: np.ndarray, paddr: int) -> None:
        """Fill the uint8 array ``out`` from physical memory at ``paddr``.

        Short reads go through the page cache; long ones check every page at once, copy
        cached pages from the cache and decompress the others straight into ``out`` (without
        flushing the cache's hot pages)."""
        ps = self.page_size
        pos, n = 0, len(out)
        if n == 0:
            self._slot(paddr // ps, paddr)
            return
        first, last = paddr // ps, (paddr + n - 1) // ps
        if last - first < _BULK_PAGES:
            while pos < n:
                a = paddr + pos
                off = a % ps
                take = min(n - pos, ps - off)
                out[pos : pos + take] = self._page(a // ps, a)[off : off + take]
                pos += take
            return
        pfns = np.arange(first, last + 1, dtype=np.int64)
        ok = self._readable(pfns)
        if not ok.all():
            p = int(pfns[np.argmax(~ok)])
            raise self._fault(p, max(paddr, p * ps))
        idx = self._rank_vec(pfns) - self._desc_base
        if idx[-1] >= self._ndesc:
            p = int(pfns[np.argmax(idx >= self._ndesc)])
            raise FaultError(max(paddr, p * ps), "page was not written (the dump is incomplete)")
        descs = self._desc[idx].tolist()
        lru, pool = self._lru, self._pool
        page = np.empty(ps, dtype=np.uint8)
        for k, p in enumerate(pfns.tolist()):
            a = p * ps
            lo = max(a, paddr)
            hi = min(a + ps, paddr + n)
            slot = lru.get(p)
            if slot is not None:
                out[lo - paddr : hi - paddr] = pool[slot][lo - a : hi - a]
            elif hi - lo == ps:
                self._decode_into(out[lo - paddr : hi - paddr], p, lo, descs[k])
            else:
                self._decode_into(page, p, lo, descs[k])
                out[lo - paddr : hi - paddr] = page[lo - a : hi - a]

    def read_phys_array(self, paddr: int, size: int) -> np.ndarray:
        """Physical memory as a (freshly copied) uint8 numpy array."""
        out = np.empty(size, dtype=np.uint8)
        self.read_phys_into(out, paddr)
        return out

    def gather_u64(self, paddrs: np.ndarray) -> np.ndarray:
        """The 64-bit little-endian words at many physical addresses at once.

        Pages are fetched once per distinct pfn (from the cache, or decompressed), then the
        words are gathered with one numpy index per batch of pages.  An address whose page
        is not RAM, or was filtered out, raises FaultError naming the first such address."""
        paddrs = np.asarray(paddrs, dtype=np.uint64).reshape(-1)
        n = len(paddrs)
        out = np.zeros(n, dtype=np.uint64)
        if not n:
            return out
        ps = self.page_size
        shift = ps.bit_length() - 1
        top = np.uint64(self.max_mapnr << shift)
        over = paddrs >= top  # also keeps the int64 conversion below exact
        if over.any():
            i = int(np.argmax(over))
            raise FaultError(int(paddrs[i]), "physical address is not in the core (not RAM)")
        pfn = (paddrs >> np.uint64(shift)).astype(np.int64)
        off = (paddrs & np.uint64(ps - 1)).astype(np.int64)
        uniq, inv = np.unique(pfn, return_inverse=True)
        inv = inv.reshape(-1)
        ok = self._readable(uniq)
        cross = off > ps - 8
        if not ok.all() or cross.any():
            bad = ~ok[inv]
            if cross.any():
                bad |= cross & ~self._readable(pfn + 1)
            if bad.any():
                i = int(np.argmax(bad))
                p = int(pfn[i]) if not ok[inv[i]] else int(pfn[i]) + 1
                raise self._fault(p, max(int(paddrs[i]), p << shift))
            if cross.any():  # words straddling two pages (rare): one at a time
                for i in np.flatnonzero(cross).tolist():
                    out[i] = int.from_bytes(self.read_phys(int(paddrs[i]), 8), "little")
                keep = np.flatnonzero(~cross)
                out[keep] = self.gather_u64(paddrs[keep])
                return out
        batch = max(1, self._cache_pages // 2)  # a batch never evicts its own pages
        aligned = not (off & 7).any()
        if len(uniq) <= batch:
            order, bounds = None, None
        else:
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + batch, batch))
        flat = self._pool.reshape(-1)
        lru = self._lru
        for k, b0 in enumerate(range(0, len(uniq), batch)):
            pfns = uniq[b0 : b0 + batch].tolist()
            slots = np.empty(len(pfns), dtype=np.int64)
            for j, p in enumerate(pfns):
                s = lru.get(p)
                if s is None:
                    s = self._slot(p, p << shift)
                else:
                    lru.move_to_end(p)
                slots[j] = s
            sel = slice(None) if order is None else order[bounds[k] : bounds[k + 1]]
            s = slots[inv[sel] - b0]
            o = off[sel]
            if aligned:
                out[sel] = self._pool_u64[s, o >> 3]
            else:
                idx = (s * ps + o)[:, None] + np.arange(8, dtype=np.int64)
                out[sel] = flat[idx].view(np.uint64).reshape(-1)
        return out

    def _readable(self, pfn: np.ndarray) -> np.ndarray:
        """Vectorised is_dumped by pfn."""
        pfn = np.asarray(pfn, dtype=np.int64)
        inr = (pfn >= 0) & (pfn < self.max_mapnr)
        p = np.where(inr, pfn, 0)
        b1 = (self._bm1[p >> 3] >> (p & 7).astype(np.uint8)) & 1
        b2 = (self._bm2[p >> 3] >> (p & 7).astype(np.uint8)) & 1
        return inr & (b1 == 1) & (b2 == 1) & (pfn >= self._start_pfn) & (pfn < self._end_pfn)

    @property
    def ram_ranges(self) -> list[tuple[int, int]]:
        """Physical ranges of RAM (the 1st bitmap), adjacent runs merged."""
        return merged_ranges(self.segments)

    @property
    def dumped_ranges(self) -> list[tuple[int, int]]:
        """Physical ranges whose pages are in this file (2nd bitmap, split range)."""
        ps = self.page_size
        return [
            (max(lo, self._start_pfn) * ps, min(hi, self._end_pfn) * ps)
            for lo, hi in _bit_runs(self._bm1 & self._bm2, self.max_mapnr)
            if min(hi, self._end_pfn) > max(lo, self._start_pfn)
        ]


def open_core(path: str | os.PathLike, **kwargs: Any) -> CoreFile | DiskDumpFile:
    """Open a vmcore of either kind: an ELF core (:class:`CoreFile`) or a kdump-compressed
    file, plain or flattened (:class:`DiskDumpFile`; ``kwargs`` go to it)."""
    p = os.fspath(path)
    buf = map_file(p, "vmcore")  # one-line errors: missing, a directory, unreadable, empty
    head = buf[:16]
    buf.close()
    if head.startswith(ELF_MAGIC):
        return CoreFile(p)
    if head.startswith(KDUMP_SIGNATURE) or head.startswith(MDF_SIGNATURE) or head.startswith(DISKDUMP_SIGNATURE):
        return DiskDumpFile(p, **kwargs)
    raise SnapshotError(f"vmcore {p!r} is not an ELF core or a kdump-compressed file")
