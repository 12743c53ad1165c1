"""Writing NAME.vmcore: an ELF64 x86-64 ET_CORE file of physical memory.

Layout: ELF header, program headers, one PT_NOTE (VMCOREINFO, optional NT_PRSTATUS
"CORE" notes), then page-aligned segment data.  Each RAM range is described by physical
PT_LOAD segments (``p_vaddr = 0``, ``p_paddr`` = physical address); only non-zero pages are
stored: a segment's zero tail is ``p_memsz - p_filesz``.  Small gaps between stored runs are
written out as zeros to keep the segment count low.  Optional "GDB alias" PT_LOADs give the
same file bytes a kernel virtual address, because GDB cannot walk page tables.

The file is streamed: headers are computed from the run lengths, then each run's bytes are
written once.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["write_vmcore", "read_vmcoreinfo", "nonzero_runs", "PAGE_SIZE", "MAX_SEGMENTS"]

PAGE_SIZE = 4096
# kexec-tools' crashdump-elf.c writes p_align 0 in the PT_LOADs of the ELF header /proc/vmcore
# serves; crash tells a kdump (KDUMP_ELF64: panic task from crashing_cpu) from a netdump by it.
KDUMP_P_ALIGN = 0
MAX_SEGMENTS = 8192  # well below PN_XNUM (65535); raise the merge gap rather than exceed it
MIN_MERGE_GAP = 16 * PAGE_SIZE  # gaps this small are cheaper as zeros than as a header

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
ET_CORE, EM_X86_64, EV_CURRENT = 4, 62, 1
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
NT_PRSTATUS = 1

Data = "bytes | bytearray | memoryview | np.ndarray"


class _Seg(NamedTuple):
    paddr: int
    memsz: int
    pieces: list  # [(paddr, data)] stored contiguously from paddr, gaps written as zeros
    filesz: int


def merge_touching(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted [start, end) ranges with each run of touching ones merged into one."""
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    name = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def _as_bytes(data) -> memoryview:
    """A run's bytes as a memoryview; a run generated piece by piece (an object with
    ``chunks()`` and ``len()``, mmintro.kernel.memmap_store.LazyRun) is kept as it is."""
    if hasattr(data, "chunks"):
        return data
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data).view(np.uint8).reshape(-1))
    return memoryview(data).cast("B")


def nonzero_runs(mem, base: int = 0, page_size: int = PAGE_SIZE) -> list[tuple[int, memoryview]]:
    """Runs of non-zero pages of a buffer (length a multiple of the page size) at ``base``.

    A helper for callers that hold physical memory as one array: returns (paddr, view) pairs
    ready for :func:`write_vmcore`, without copying.
    """
    arr = np.frombuffer(mem, dtype=np.uint8) if not isinstance(mem, np.ndarray) else mem.reshape(-1)
    n = len(arr) // page_size
    words = arr[: n * page_size].view(np.uint64).reshape(n, page_size // 8)
    nz = words.any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], nz.view(np.int8), [0]))))
    view = memoryview(arr[: n * page_size])
    return [
        (base + int(a) * page_size, view[int(a) * page_size : int(b) * page_size])
        for a, b in zip(edges[::2], edges[1::2])
    ]


def _layout(runs: list[tuple[int, memoryview]], ram_ranges: Sequence[tuple[int, int]], max_segments: int) -> list[_Seg]:
    # Group runs by RAM range; a run may not leave its range.
    ranges = sorted((int(a), int(b)) for a, b in ram_ranges)
    for (_a0, b0), (a1, _) in zip(ranges, ranges[1:]):
        if a1 < b0:
            raise ValueError(f"RAM ranges overlap at {a1:#x}")
    per_range: list[list[tuple[int, memoryview]]] = [[] for _ in ranges]
    ri = 0
    prev_end = -1
    for paddr, data in runs:
        if paddr < prev_end:
            raise ValueError(f"runs are not sorted or overlap at {paddr:#x}")
        prev_end = paddr + len(data)
        while ri < len(ranges) and ranges[ri][1] <= paddr:
            ri += 1
        if ri == len(ranges) or paddr < ranges[ri][0] or prev_end > ranges[ri][1]:
            raise ValueError(f"run {paddr:#x}-{prev_end:#x} is not inside a RAM range")
        per_range[ri].append((paddr, data))
    # Choose the merge gap so that the segment count stays under max_segments.
    gaps = sorted((b[0] - (a[0] + len(a[1])) for rr in per_range for a, b in zip(rr, rr[1:])), reverse=True)
    budget = max_segments - 2 * len(ranges)  # each range may need a leading empty segment
    if budget < 1:
        raise ValueError(f"{len(ranges)} RAM ranges need more than {max_segments} segments")
    gap_limit = MIN_MERGE_GAP
    if len(gaps) > budget:
        gap_limit = max(gap_limit, gaps[budget])
    segs: list[_Seg] = []
    for (start, end), rr in zip(ranges, per_range):
        groups: list[list[tuple[int, memoryview]]] = []
        for run in rr:
            if groups:
                last = groups[-1][-1]
                if run[0] - (last[0] + len(last[1])) <= gap_limit:
                    groups[-1].append(run)
                    continue
            groups.append([run])
        if not groups or groups[0][0][0] - start > gap_limit:
            first = groups[0][0][0] if groups else end
            segs.append(_Seg(start, first - start, [], 0))  # all zeros
        elif groups:
            groups[0].insert(0, (start, memoryview(b"")))  # leading zeros written out
        for i, g in enumerate(groups):
            gstart = g[0][0]
            gend = g[-1][0] + len(g[-1][1])
            nxt = groups[i + 1][0][0] if i + 1 < len(groups) else end
            segs.append(_Seg(gstart, nxt - gstart, g, gend - gstart))
    return segs


def write_vmcore(
    path: str | os.PathLike,
    runs: Iterable[tuple[int, object]],
    vmcoreinfo: str,
    ram_ranges: Sequence[tuple[int, int]] | None = None,
    aliases: Iterable[tuple[int, int, int]] = (),
    prstatus: Iterable[bytes] = (),
    max_segments: int = MAX_SEGMENTS,
    direct_map: int | None = None,
) -> int:
    """Write an ELF core of physical memory; returns the file size.

    :param runs: ``(phys_addr, data)`` sorted, page-aligned runs of non-zero memory; ``data``
        a buffer, or an object with ``len()`` and ``chunks()`` (the buffers of its pieces, in
        order), which is read only while the file is written.
    :param vmcoreinfo: VMCOREINFO text (``KEY=VALUE`` lines).
    :param ram_ranges: ``[(start, end)]`` physical RAM; every byte of it gets a segment (zeros
        where no run covers it).  Default: the runs themselves are the RAM.
    :param aliases: ``(vaddr, paddr, size)`` virtual re-descriptions of RAM for GDB.
    :param prstatus: ``struct elf_prstatus`` descriptors, one NT_PRSTATUS note each.
    :param direct_map: PAGE_OFFSET: RAM segments then carry ``p_vaddr = PAGE_OFFSET + paddr``
        as kdump's crash_prepare_elf64_headers writes them (default: ``p_vaddr`` 0).
    """
    run_list = [(int(p), _as_bytes(d)) for p, d in runs]
    for p, d in run_list:
        if p % PAGE_SIZE or len(d) % PAGE_SIZE:
            raise ValueError(f"run at {p:#x} ({len(d):#x} bytes) is not page-aligned")
    run_list = [r for r in run_list if len(r[1])]
    if ram_ranges is None:
        ram_ranges = merge_touching([(p, p + len(d)) for p, d in run_list])
    segs = _layout(run_list, ram_ranges, max_segments)

    text = vmcoreinfo if vmcoreinfo.endswith("\n") else vmcoreinfo + "\n"
    notes = b"".join(_note(b"CORE", NT_PRSTATUS, bytes(p)) for p in prstatus)
    notes += _note(b"VMCOREINFO", 0, text.encode())

    # Alias pieces: split each (vaddr, paddr, size) at segment boundaries.
    alias_pieces: list[tuple[int, int, int, int]] = []  # vaddr, paddr, size, seg index
    for vaddr, paddr, size in aliases:
        a, end = int(paddr), int(paddr) + int(size)
        for si, s in enumerate(segs):
            lo, hi = max(a, s.paddr), min(end, s.paddr + s.memsz)
            if lo < hi:
                alias_pieces.append((int(vaddr) + lo - a, lo, hi - lo, si))

    nph = 1 + len(segs) + len(alias_pieces)
    if nph >= 0xFFFF:
        raise ValueError(f"{nph} program headers: too many segments (PN_XNUM is not supported)")
    note_off = EHDR.size + nph * PHDR.size
    data_off = note_off + len(notes)
    data_off += -data_off % PAGE_SIZE
    offsets = []
    file_end = data_off
    for s in segs:
        offsets.append(file_end)
        file_end += s.filesz
        file_end += -file_end % PAGE_SIZE

    phdrs = [PHDR.pack(PT_NOTE, 0, note_off, 0, 0, len(notes), len(notes), 4)]
    for s, o in zip(segs, offsets):
        vaddr = direct_map + s.paddr if direct_map is not None else 0
        phdrs.append(PHDR.pack(PT_LOAD, PF_R | PF_W | PF_X, o, vaddr, s.paddr, s.filesz, s.memsz, KDUMP_P_ALIGN))
    for vaddr, paddr, size, si in alias_pieces:
        s = segs[si]
        rel = paddr - s.paddr
        filesz = max(0, min(size, s.filesz - rel))
        aoff = offsets[si] + min(rel, s.filesz)  # a piece wholly in the zero tail stores nothing
        phdrs.append(PHDR.pack(PT_LOAD, PF_R | PF_W | PF_X, aoff, vaddr, paddr, filesz, size, KDUMP_P_ALIGN))
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = EHDR.pack(ident, ET_CORE, EM_X86_64, EV_CURRENT, 0, EHDR.size, 0, 0, EHDR.size, PHDR.size, nph, 0, 0, 0)

    with open(path, "wb") as f:
        f.write(ehdr)
        f.write(b"".join(phdrs))
        f.write(notes)
        for s, o in zip(segs, offsets):
            f.seek(o)
            pos = s.paddr
            for paddr, data in s.pieces:
                if paddr > pos:
                    f.seek(paddr - pos, os.SEEK_CUR)  # gap: a hole in the file reads as zeros
                for piece in data.chunks() if hasattr(data, "chunks") else (data,):
                    f.write(piece)
                pos = paddr + len(data)
        f.truncate(file_end)
    return file_end


def read_vmcoreinfo(path: str | os.PathLike) -> dict[str, str]:
    """The VMCOREINFO note of a core file as ``{KEY: VALUE}`` text."""
    from mmintro.reader.core import CoreFile

    core = CoreFile(path)
    try:
        return dict(core.vmcoreinfo)
    finally:
        core.close()
