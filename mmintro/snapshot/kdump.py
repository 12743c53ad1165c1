"""Writing NAME.vmcore in makedumpfile's kdump-compressed format ("KDUMP   ", zlib).

The layout, in blocks of the page size, is what makedumpfile's ``write_kdump_header`` and
``write_kdump_pages_and_bitmap_cyclic`` write (its IMPLEMENTATION file; crash 9.0.2's
``diskdump.c`` and libkdumpfile's ``diskdump.c`` read it)::

    block 0        struct disk_dump_header   header_version 6, utsname, timestamp, nr_cpus
    block 1        struct kdump_sub_header   phys_base, dump_level, max_mapnr_64,
                   then the ELF notes        offset_note/size_note: the NT_PRSTATUS notes and
                                             the VMCOREINFO note; offset_vmcoreinfo points at
                                             the VMCOREINFO note's text inside them
    1 + sub        1st bitmap, 2nd bitmap    one bit per pfn: RAM / dumped (equal here)
    ...            page_desc_t[]             one per dumped pfn, in pfn order
    ...            the zero page             4096 zero bytes, shared by every all-zero page
    ...            page data                 zlib (compress2, Z_BEST_SPEED) when smaller,
                                             else the raw page (flags 0)

Every RAM page is in both bitmaps (makedumpfile ``-d 1``): a page of zeros costs a 24-byte
descriptor pointing at the one shared zero page, as makedumpfile's ``pd_zero`` does.  Leaving
zero pages out of the 2nd bitmap instead would make them *excluded*, which crash (without
``--zero_excluded``), libkdumpfile (drgn) and mmintro's reader refuse to read.  Runs of
identical consecutive pages share one copy of the data (descriptors may share an offset, as
every zero page's does).

The file is streamed: the header, bitmaps and descriptor table are sized from the RAM
ranges before any page is read, then runs of pages are compressed a chunk at a time; the
descriptors and data are written as they are produced.  Memory use is bounded by the chunk
size (16 MiB of pages), the bitmap (1/32768 of RAM, written twice) and the write buffers:
about 24 MiB for a 64 GiB machine.
"""

from __future__ import annotations

import os
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

# The on-disk structures are defined once, in the reader, from makedumpfile's diskdump_mod.h
# (= crash 9.0.2's diskdump.h for x86-64):
#   _DH:  struct disk_dump_header  -- signature[8], header_version, struct new_utsname (6 x 65),
#         struct timeval (8-aligned), status, block_size, sub_hdr_size, bitmap_blocks,
#         max_mapnr, total_ram_blocks, device_blocks, written_blocks, current_cpu, nr_cpus
#   _SUB: struct kdump_sub_header  -- phys_base, dump_level, split, start_pfn, end_pfn,
#         offset/size_vmcoreinfo, offset/size_note, offset/size_eraseinfo, start_pfn_64,
#         end_pfn_64, max_mapnr_64
#   PAGE_DESC: page_desc_t         -- offset, size, flags, page_flags
from mmintro.reader.diskdump import _DH as DISK_DUMP_HEADER
from mmintro.reader.diskdump import _SUB as KDUMP_SUB_HEADER
from mmintro.reader.diskdump import DUMP_DH_COMPRESSED_ZLIB, KDUMP_SIGNATURE, PAGE_DESC
from mmintro.snapshot.vmcore import NT_PRSTATUS, PAGE_SIZE, _as_bytes, _note

__all__ = ["write_kdump", "KdumpStats", "HEADER_VERSION", "DUMP_LEVEL", "DL_EXCLUDE_FREE"]

HEADER_VERSION = 6  # makedumpfile 1.5.4 and later: 64-bit max_mapnr in the sub header
DUMP_LEVEL = 1  # makedumpfile -d 1: zero pages share one page (nothing is excluded)
DL_EXCLUDE_FREE = 16  # makedumpfile -d 16: free pages (PageBuddy blocks) are left out
Z_BEST_SPEED = 1  # makedumpfile's compress2 level
UTSNAME_SIZE = 390  # struct new_utsname: 6 x (__NEW_UTS_LEN + 1)

_CHUNK_PAGES = 4096  # pages examined at once: 16 MiB of input
_DESC_BUF = 1 << 16  # descriptors per write (1.5 MiB)
_DATA_BUF = 8 << 20  # page data bytes per write


class KdumpStats(NamedTuple):
    """What :func:`write_kdump` wrote."""

    size: int
    """File size in bytes."""
    ram_pages: int
    """Pages in the 2nd bitmap (= page descriptors): RAM less the excluded pages."""
    zero_pages: int
    """Pages that point at the shared zero page."""
    compressed_pages: int
    """Pages stored zlib-compressed."""
    raw_pages: int
    """Pages stored uncompressed (zlib did not make them smaller)."""
    shared_pages: int
    """Pages equal to the page before them, sharing its data."""
    excluded_pages: int = 0
    """RAM pages left out of the 2nd bitmap (``exclude``): filtered, as makedumpfile -d 16 leaves free pages."""


def _pfn_ranges(ram_ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """RAM as sorted, merged pfn ranges: a partial page at either end counts as RAM, as
    makedumpfile's create_1st_bitmap counts it."""
    ranges = sorted((int(a), int(b)) for a, b in ram_ranges if int(b) > int(a))
    for (_a0, b0), (a1, _b1) in zip(ranges, ranges[1:]):
        if a1 < b0:
            raise ValueError(f"RAM ranges overlap at {a1:#x}")
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        lo, hi = a // PAGE_SIZE, -(-b // PAGE_SIZE)
        if out and lo <= out[-1][1]:  # touching, or sharing a partial page
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _subtract(ranges: list[tuple[int, int]], holes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted pfn ranges less the (unsorted, possibly overlapping) ranges ``holes``."""
    out: list[tuple[int, int]] = []
    cuts = sorted((int(a), int(b)) for a, b in holes if int(b) > int(a))
    i = 0
    for lo, hi in ranges:
        while i < len(cuts) and cuts[i][1] <= lo:
            i += 1
        j = i
        pos = lo
        while j < len(cuts) and cuts[j][0] < hi:
            if cuts[j][0] > pos:
                out.append((pos, cuts[j][0]))
            pos = max(pos, cuts[j][1])
            j += 1
        if pos < hi:
            out.append((pos, hi))
    return out


def _bitmap(pfn_ranges: list[tuple[int, int]], nbytes: int) -> np.ndarray:
    """The 1st bitmap: bit ``pfn % 8`` of byte ``pfn // 8`` set for every RAM pfn."""
    bm = np.zeros(nbytes, dtype=np.uint8)
    for lo, hi in pfn_ranges:
        a, b = -(-lo // 8), hi // 8  # whole bytes
        if a < b:
            bm[a:b] = 0xFF
            for p in range(lo, a * 8):
                bm[p >> 3] |= 1 << (p & 7)
            for p in range(b * 8, hi):
                bm[p >> 3] |= 1 << (p & 7)
        else:
            for p in range(lo, hi):
                bm[p >> 3] |= 1 << (p & 7)
    return bm


def _compress_all(pages: list[memoryview], pool: ThreadPoolExecutor | None, threads: int) -> list[bytes]:
    """zlib (compress2 format, Z_BEST_SPEED) of each page; zlib releases the GIL while it
    deflates, so slices of the list run in parallel on ``pool``'s ``threads`` threads."""
    if pool is None or len(pages) < 64:
        return [zlib.compress(p, Z_BEST_SPEED) for p in pages]
    step = -(-len(pages) // threads)
    parts = pool.map(
        lambda s: [zlib.compress(p, Z_BEST_SPEED) for p in pages[s : s + step]], range(0, len(pages), step)
    )
    return [c for part in parts for c in part]


class _Writer:
    """Positioned writes of the descriptor table and the page data, each buffered."""

    def __init__(self, fd: int, desc_off: int, data_off: int, zero_desc: np.ndarray) -> None:
        self.fd = fd
        self.desc_pos = desc_off  # file offset of the next descriptor
        self.data_pos = data_off  # file offset of the next page data byte
        self._desc = np.empty(_DESC_BUF, dtype=PAGE_DESC)
        self._ndesc = 0
        self._data: list[bytes] = []
        self._ndata = 0
        self._data_start = data_off
        self.zero_desc = zero_desc[0]
        self._zeros = np.repeat(zero_desc, _DESC_BUF)

    def pwrite(self, data, off: int) -> None:
        mv = memoryview(data).cast("B")
        done = 0
        while done < len(mv):
            done += os.pwrite(self.fd, mv[done:], off + done)

    def flush_desc(self) -> None:
        if self._ndesc:
            self.pwrite(self._desc[: self._ndesc], self.desc_pos)
            self.desc_pos += self._ndesc * PAGE_DESC.itemsize
            self._ndesc = 0

    def zero_descs(self, count: int) -> None:
        """``count`` descriptors of the shared zero page."""
        self.flush_desc()
        while count > 0:
            n = min(count, _DESC_BUF)
            self.pwrite(self._zeros[:n], self.desc_pos)
            self.desc_pos += n * PAGE_DESC.itemsize
            count -= n

    def descs(self, d: np.ndarray) -> None:
        pos = 0
        while pos < len(d):
            n = min(len(d) - pos, _DESC_BUF - self._ndesc)
            self._desc[self._ndesc : self._ndesc + n] = d[pos : pos + n]
            self._ndesc += n
            pos += n
            if self._ndesc == _DESC_BUF:
                self.flush_desc()

    def data(self, b: bytes | memoryview) -> int:
        """Append page data; returns its file offset."""
        off = self.data_pos
        self._data.append(b)
        self._ndata += len(b)
        self.data_pos += len(b)
        if self._ndata >= _DATA_BUF:
            self.flush_data()
        return off

    def flush_data(self) -> None:
        if self._data:
            self.pwrite(b"".join(self._data), self._data_start)
            self._data_start += self._ndata
            self._data, self._ndata = [], 0


def write_kdump(
    path: str | os.PathLike,
    runs: Iterable[tuple[int, object]],
    vmcoreinfo: str,
    ram_ranges: Sequence[tuple[int, int]] | None = None,
    *,
    prstatus: Iterable[bytes] = (),
    utsname: bytes = b"",
    timestamp: int = 0,
    nr_cpus: int = 1,
    phys_base: int = 0,
    threads: int = 1,
    exclude: Sequence[tuple[int, int]] = (),
    dump_level: int = DUMP_LEVEL,
) -> KdumpStats:
    """Write a kdump-compressed vmcore of physical memory.

    :param runs: ``(phys_addr, data)`` sorted, page-aligned runs of memory (pages of zeros
        inside them are allowed and cost nothing); every byte no run covers reads as zero.
        ``data`` is a buffer or an object with ``len()`` and ``chunks()`` (its bytes piece by
        piece: a memory map generated as it is written).
    :param vmcoreinfo: VMCOREINFO text (``KEY=VALUE`` lines).
    :param ram_ranges: ``[(start, end)]`` physical RAM (the 1st bitmap); default: the runs.
    :param prstatus: ``struct elf_prstatus`` descriptors, one NT_PRSTATUS note each, before
        the VMCOREINFO note (the order of /proc/vmcore's PT_NOTE).
    :param utsname: the ``struct new_utsname`` bytes of ``init_uts_ns`` (makedumpfile copies
        the dumped kernel's); at most 390 bytes.
    :param timestamp: ``tv_sec`` of the header's time stamp (the crash time).
    :param nr_cpus: the header's ``nr_cpus`` (crash warns when it is not positive).
    :param phys_base: the sub header's ``phys_base``.
    :param threads: compress on this many threads (zlib releases the GIL).
    :param exclude: pfn ranges ``[lo, hi)`` of RAM to leave out of the 2nd bitmap: no
        descriptor and no data, the pages read as filtered (crash: "excluded"; drgn and mmintro
        refuse them), as makedumpfile's ``-d 16`` leaves out free pages.
    :param dump_level: the sub header's ``dump_level`` (makedumpfile's ``-d``; 17 with free
        pages excluded).
    """
    bs = PAGE_SIZE
    run_iter = ((int(p), _as_bytes(d)) for p, d in runs)
    if ram_ranges is None:
        run_list = list(run_iter)
        ram_ranges = [(p, p + len(d)) for p, d in run_list if len(d)]
        run_iter = iter(run_list)
    pranges = _pfn_ranges(ram_ranges)
    if not pranges:
        raise ValueError("no RAM: a kdump file needs at least one page")
    if len(utsname) > UTSNAME_SIZE:
        raise ValueError(f"utsname is {len(utsname)} bytes, struct new_utsname has {UTSNAME_SIZE}")
    if nr_cpus <= 0:
        raise ValueError(f"nr_cpus must be positive, not {nr_cpus}")
    max_mapnr = pranges[-1][1]
    starts = np.array([lo for lo, _ in pranges], dtype=np.int64)
    dumped = _subtract(pranges, exclude) if exclude else pranges  # the 2nd bitmap
    ram_pages = sum(hi - lo for lo, hi in dumped)  # descriptors
    excluded = sum(hi - lo for lo, hi in pranges) - ram_pages
    dstarts = [lo for lo, _ in dumped]
    first_index = np.concatenate(([0], np.cumsum([hi - lo for lo, hi in dumped])))  # descriptor index

    # notes: as in the ELF snapshot's PT_NOTE (NT_PRSTATUS per CPU, then VMCOREINFO)
    text = (vmcoreinfo if vmcoreinfo.endswith("\n") else vmcoreinfo + "\n").encode()
    notes = b"".join(_note(b"CORE", NT_PRSTATUS, bytes(p)) for p in prstatus)
    vmci_desc = len(notes) + 12 + 12  # Elf64_Nhdr, then "VMCOREINFO\0" padded to 4 bytes
    notes += _note(b"VMCOREINFO", 0, text)
    off_note = bs + KDUMP_SUB_HEADER.size  # makedumpfile: right after the sub header
    sub_blocks = -(-(KDUMP_SUB_HEADER.size + len(notes)) // bs)
    half = -(-max_mapnr // (8 * bs)) * bs  # bytes of each bitmap: whole blocks (crash needs that)
    bitmap_blocks = 2 * half // bs
    desc_off = (1 + sub_blocks + bitmap_blocks) * bs
    zero_off = desc_off + ram_pages * PAGE_DESC.itemsize
    data_off = zero_off + bs

    header = bytearray(bs)
    DISK_DUMP_HEADER.pack_into(
        header,
        0,
        KDUMP_SIGNATURE,
        HEADER_VERSION,
        bytes(utsname).ljust(UTSNAME_SIZE, b"\0"),
        int(timestamp),
        0,
        DUMP_DH_COMPRESSED_ZLIB,
        bs,
        sub_blocks,
        bitmap_blocks,
        min(max_mapnr, 0xFFFFFFFF),
        0,
        0,
        0,
        0,
        int(nr_cpus),
    )
    sub = KDUMP_SUB_HEADER.pack(
        int(phys_base),
        int(dump_level),
        0,
        0,
        0,
        off_note + vmci_desc,
        len(text),
        off_note,
        len(notes),
        0,
        0,
        0,
        0,
        max_mapnr,
    )
    bitmap = _bitmap(pranges, half)
    bitmap2 = _bitmap(dumped, half) if exclude else bitmap

    zero_desc = np.zeros(1, dtype=PAGE_DESC)
    zero_desc[0] = (zero_off, bs, 0, 0)
    counts = dict(zero=0, compressed=0, raw=0, shared=0)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done = False
    try:
        w = _Writer(fd, desc_off, data_off, zero_desc)
        w.pwrite(bytes(header), 0)
        w.pwrite(sub + notes, bs)
        w.pwrite(bitmap, (1 + sub_blocks) * bs)
        w.pwrite(bitmap2, (1 + sub_blocks) * bs + half)
        del bitmap, bitmap2
        w.pwrite(bytes(bs), zero_off)
        next_index = 0  # descriptors written so far
        prev_end = -1
        last: tuple[bytes, int, int, int] | None = None  # the last stored page and its descriptor
        for paddr, data in run_iter:
            if paddr % PAGE_SIZE or len(data) % PAGE_SIZE:
                raise ValueError(f"run at {paddr:#x} ({len(data):#x} bytes) is not page-aligned")
            if not len(data):
                continue
            pfn0, n = paddr // PAGE_SIZE, len(data) // PAGE_SIZE
            if pfn0 < prev_end:
                raise ValueError(f"runs are not sorted or overlap at {paddr:#x}")
            prev_end = pfn0 + n
            r = int(np.searchsorted(starts, pfn0, side="right")) - 1
            if r < 0 or prev_end > pranges[r][1]:
                raise ValueError(f"run {paddr:#x}-{paddr + len(data):#x} is not inside a RAM range")
            pfn = pfn0
            for piece in data.chunks() if hasattr(data, "chunks") else (data,):
                piece = _as_bytes(piece)
                m = len(piece) // PAGE_SIZE
                # the parts of the piece in the 2nd bitmap, each at its descriptor index
                d = bisect_right(dstarts, pfn) - 1
                while m and d < len(dumped) and (d < 0 or dumped[d][0] < pfn + m):
                    if d >= 0:
                        a, b = max(pfn, dumped[d][0]), min(pfn + m, dumped[d][1])
                        if a < b:
                            index = int(first_index[d]) + a - dumped[d][0]
                            w.zero_descs(index - next_index)
                            next_index = index + b - a
                            for c0 in range(a, b, _CHUNK_PAGES):
                                c1 = min(b, c0 + _CHUNK_PAGES)
                                chunk = piece[(c0 - pfn) * PAGE_SIZE : (c1 - pfn) * PAGE_SIZE]
                                last = _chunk(w, chunk, last, pool, threads, counts)
                    d += 1
                pfn += m
        w.zero_descs(ram_pages - next_index)
        w.flush_desc()
        w.flush_data()
        size = w.data_pos
        os.ftruncate(fd, size)
        done = True
    finally:
        os.close(fd)
        if pool is not None:
            pool.shutdown()
        if not done:  # no half-written vmcore
            os.unlink(path)
    return KdumpStats(
        size,
        ram_pages,
        counts["zero"] + ram_pages - _stored(counts),
        counts["compressed"],
        counts["raw"],
        counts["shared"],
        excluded,
    )


def _stored(counts: dict[str, int]) -> int:
    return counts["zero"] + counts["compressed"] + counts["raw"] + counts["shared"]


def _chunk(
    w: _Writer,
    chunk: memoryview,
    last: tuple[bytes, int, int, int] | None,
    pool: ThreadPoolExecutor | None,
    threads: int,
    counts: dict[str, int],
) -> tuple[bytes, int, int, int] | None:
    """Descriptors and data of the pages of ``chunk``; ``last`` is the page before it (its
    bytes and descriptor), returned updated."""
    n = len(chunk) // PAGE_SIZE
    arr = np.frombuffer(chunk, dtype=np.uint8)
    words = arr.view(np.uint64).reshape(n, PAGE_SIZE // 8)
    nonzero = words.any(axis=1)
    same = np.zeros(n, dtype=bool)  # equal to the page before (both non-zero)
    if n > 1:
        same[1:] = (words[1:] == words[:-1]).all(axis=1)
    if last is not None and nonzero[0]:
        same[0] = last[0] == chunk[:PAGE_SIZE]
    same &= nonzero
    desc = np.empty(n, dtype=PAGE_DESC)
    desc[~nonzero] = w.zero_desc
    new = np.flatnonzero(nonzero & ~same)
    pages = [chunk[i * PAGE_SIZE : (i + 1) * PAGE_SIZE] for i in new.tolist()]
    packed = _compress_all(pages, pool, threads)
    offs = np.empty(len(new), dtype=np.int64)
    sizes = np.empty(len(new), dtype=np.uint32)
    flags = np.empty(len(new), dtype=np.uint32)
    for j, (page, z) in enumerate(zip(pages, packed)):
        if len(z) < PAGE_SIZE:
            offs[j] = w.data(z)
            sizes[j], flags[j] = len(z), DUMP_DH_COMPRESSED_ZLIB
        else:  # makedumpfile stores a page that does not shrink as it is
            offs[j] = w.data(bytes(page))
            sizes[j], flags[j] = PAGE_SIZE, 0
    desc["offset"][new] = offs
    desc["size"][new] = sizes
    desc["flags"][new] = flags
    desc["page_flags"][new] = 0
    sidx = np.flatnonzero(same)
    if len(sidx):
        # each shared page takes the descriptor of the last new page before it
        src = np.maximum.accumulate(np.where(nonzero & ~same, np.arange(n), -1))[sidx]
        inside = src >= 0
        desc[sidx[inside]] = desc[src[inside]]
        if not inside.all():  # shares the previous chunk's last page
            assert last is not None
            desc[sidx[~inside]] = (last[1], last[2], last[3], 0)
    w.descs(desc)
    raw = int((flags == 0).sum())
    counts["compressed"] += len(new) - raw
    counts["raw"] += raw
    counts["shared"] += len(sidx)
    counts["zero"] += int(n - nonzero.sum())
    if nonzero[-1]:
        d = desc[-1]
        return bytes(chunk[-PAGE_SIZE:]), int(d["offset"]), int(d["size"]), int(d["flags"])
    return None
