"""The crash dump (NAME.vmcore): an mmap'd ELF core read as physical memory.

RAM segments (``p_paddr`` with ``p_vaddr`` 0 or its direct-map address, as kdump writes
them, or ``p_vaddr == p_paddr``, as QEMU's ``dump-guest-memory`` writes them without paging)
describe memory for the reader; segments with another virtual address (a kernel
text segment, GDB aliases) re-describe the same bytes and are ignored, so that every
virtual read goes through the snapshot's own page tables.  Bytes past ``p_filesz`` (up to
``p_memsz``) read as zeros.  Physical addresses outside every segment are not RAM.
"""

from __future__ import annotations

import bisect
import os
from typing import NamedTuple

import numpy as np

from mmintro.arch.x86 import PAGE_OFFSET_BASE_L4, VMALLOC_BASE_L4
from mmintro.reader.elf import ET_CORE, PHDR, PT_LOAD, PT_NOTE, iter_notes, map_file, parse_header
from mmintro.reader.errors import FaultError, SnapshotError

__all__ = ["Segment", "CoreFile", "find_segment", "merged_ranges", "parse_vmcoreinfo"]

MAX_PHYSADDR_BITS = 52  # x86-64's architectural limit on physical addresses
_BULK = 256 << 10  # copies at least this large use preadv instead of the mapping


class Segment(NamedTuple):
    """A physical PT_LOAD segment."""

    paddr: int
    offset: int
    filesz: int
    memsz: int

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


def parse_vmcoreinfo(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines into a dict (values kept as text; the first ``=`` splits)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _is_direct_map(vaddr: int) -> bool:
    """kdump's RAM segments carry their direct-map address (``p_vaddr = __va(paddr)``, as
    crash_prepare_elf64_headers writes them); other virtual segments (the kernel text
    segment, GDB aliases) re-describe memory some RAM segment already holds."""
    return PAGE_OFFSET_BASE_L4 <= vaddr < VMALLOC_BASE_L4


class CoreFile:
    """Physical memory and notes of an ELF core file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        what = f"vmcore {self.path!r}"
        self.buf = map_file(path, "vmcore")
        self._fd = os.open(self.path, os.O_RDONLY)  # bulk copies: preadv beats mmap page faults
        self._np = np.frombuffer(self.buf, dtype=np.uint8)
        size = len(self.buf)
        h = parse_header(self.buf, what, (ET_CORE,))
        segs: list[Segment] = []
        self.aliases: list[tuple[int, int, int, int, int]] = []  # vaddr, paddr, offset, filesz, memsz
        self.notes: list[tuple[str, int, bytes]] = []
        for i in range(h.e_phnum):
            p_type, _flags, off, vaddr, paddr, filesz, memsz, _align = PHDR.unpack_from(
                self.buf, h.e_phoff + i * PHDR.size
            )
            if p_type not in (PT_LOAD, PT_NOTE):
                continue
            if off + filesz > size:
                raise SnapshotError(
                    f"{what} is truncated: program header {i} needs bytes up to {off + filesz:#x}, "
                    f"the file has {size:#x}"
                )
            if p_type == PT_NOTE:
                self.notes.extend(iter_notes(self.buf, off, off + filesz, what))
                continue
            if filesz > memsz:
                raise SnapshotError(f"{what}: program header {i} has p_filesz {filesz:#x} > p_memsz {memsz:#x}")
            if p_type == PT_LOAD and paddr + memsz > 1 << MAX_PHYSADDR_BITS:
                raise SnapshotError(
                    f"{what}: program header {i} ends at physical {paddr + memsz:#x}, past "
                    f"x86-64's {MAX_PHYSADDR_BITS}-bit physical address space"
                )
            if vaddr and vaddr != paddr and not _is_direct_map(vaddr):
                self.aliases.append((vaddr, paddr, off, filesz, memsz))
            elif memsz:
                segs.append(Segment(paddr, off, filesz, memsz))
        segs.sort()
        for a, b in zip(segs, segs[1:]):
            if b.paddr < a.end:
                raise SnapshotError(
                    f"{what}: segments overlap in physical memory ({a.paddr:#x}-{a.end:#x} and {b.paddr:#x}-{b.end:#x})"
                )
        self.segments = segs
        self._starts = [s.paddr for s in segs]
        self._seg_arrays: tuple[np.ndarray, ...] | None = None
        self._u64: np.ndarray | None = None
        info = [desc for name, ntype, desc in self.notes if name == "VMCOREINFO"]
        if not info:
            raise SnapshotError(f"{what} has no VMCOREINFO note")
        self.vmcoreinfo_text = info[0].rstrip(b"\0").decode("utf-8", "replace")
        self.vmcoreinfo = parse_vmcoreinfo(self.vmcoreinfo_text)

    def close(self) -> None:
        self._u64 = None
        del self._np
        try:
            self.buf.close()
        except BufferError:  # numpy views of the mapping still alive (an exception's traceback holds a
            pass  # report's arrays): the mapping closes when they go, as DiskDumpFile.close does
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- physical reads -----------------------------------------------------------
    def segment_at(self, paddr: int) -> Segment:
        return find_segment(self.segments, self._starts, paddr)

    def is_ram(self, paddr: int) -> bool:
        try:
            self.segment_at(paddr)
            return True
        except FaultError:
            return False

    def read_phys(self, paddr: int, size: int) -> bytes:
        """``size`` bytes of physical memory at ``paddr``; FaultError outside RAM."""
        s = self.segment_at(paddr)
        rel = paddr - s.paddr
        if rel + size <= s.filesz:  # the common case: one segment, stored bytes
            return self.buf[s.offset + rel : s.offset + rel + size]
        return self.read_phys_array(paddr, size).tobytes()

    def read_phys_into(self, out: np.ndarray, paddr: int) -> None:
        """Fill the uint8 array ``out`` from physical memory at ``paddr``."""
        pos, n = 0, len(out)
        while pos < n:
            s = self.segment_at(paddr + pos)
            rel = paddr + pos - s.paddr
            take = min(n - pos, s.memsz - rel)
            stored = max(0, min(take, s.filesz - rel))
            if stored >= _BULK and hasattr(os, "preadv"):
                got = os.preadv(self._fd, [memoryview(out[pos : pos + stored])], s.offset + rel)
                if got != stored:
                    raise SnapshotError(f"vmcore {self.path!r}: short read at {s.offset + rel:#x}")
            elif stored:
                out[pos : pos + stored] = self._np[s.offset + rel : s.offset + rel + stored]
            if take > stored:
                out[pos + stored : pos + take] = 0
            pos += take

    def read_phys_array(self, paddr: int, size: int) -> np.ndarray:
        """Physical memory as a uint8 numpy array (a zero-copy view when possible)."""
        s = self.segment_at(paddr)
        rel = paddr - s.paddr
        if rel + size <= s.filesz:
            return self._np[s.offset + rel : s.offset + rel + size]
        out = np.empty(size, dtype=np.uint8)
        self.read_phys_into(out, paddr)
        return out

    def gather_u64(self, paddrs: np.ndarray) -> np.ndarray:
        """The 64-bit words at many physical addresses at once (numpy gather).

        Addresses inside a segment but past its stored bytes read 0 (as zero pages do);
        an address outside every segment raises FaultError naming the first such address.
        """
        paddrs = np.asarray(paddrs, dtype=np.uint64)
        if not len(paddrs):
            return np.zeros(0, dtype=np.uint64)
        if self._seg_arrays is None:
            self._seg_arrays = (
                np.array([s.paddr for s in self.segments], dtype=np.uint64),
                np.array([s.end for s in self.segments], dtype=np.uint64),
                np.array([s.offset for s in self.segments], dtype=np.uint64),
                np.array([s.filesz for s in self.segments], dtype=np.uint64),
            )
        starts, ends, offs, fsz = self._seg_arrays
        i = np.searchsorted(starts, paddrs, side="right").astype(np.int64) - 1
        bad = (i < 0) | (paddrs + np.uint64(8) > ends[np.maximum(i, 0)])
        if bad.any():
            raise FaultError(int(paddrs[np.argmax(bad)]), "physical address is not in the core (not RAM)")
        rel = paddrs - starts[i]
        stored = rel + np.uint64(8) <= fsz[i]
        out = np.zeros(len(paddrs), dtype=np.uint64)
        fo = (offs[i] + rel)[stored].astype(np.int64)
        if len(fo):
            if not (fo & 7).any():  # aligned words (the common case): index the file as u64
                if self._u64 is None:
                    self._u64 = self._np[: len(self._np) // 8 * 8].view(np.uint64)
                out[stored] = self._u64[fo >> 3]
            else:
                idx = fo[:, None] + np.arange(8, dtype=np.int64)
                out[stored] = self._np[idx].view(np.uint64).reshape(-1)
        return out

    @property
    def ram_ranges(self) -> list[tuple[int, int]]:
        """Physical ranges covered by segments, adjacent segments merged."""
        return merged_ranges(self.segments)


def find_segment(segments: list[Segment], starts: list[int], paddr: int) -> Segment:
    """The segment holding ``paddr`` (``starts``: the sorted segments' start addresses);
    FaultError outside them all."""
    i = bisect.bisect_right(starts, paddr) - 1
    if i >= 0:
        s = segments[i]
        if paddr < s.end:
            return s
    raise FaultError(paddr, "physical address is not in the core (not RAM)")


def merged_ranges(segments: list[Segment]) -> list[tuple[int, int]]:
    """(start, end) of sorted segments, adjacent ones merged."""
    out: list[tuple[int, int]] = []
    for s in segments:
        if out and out[-1][1] == s.paddr:
            out[-1] = (out[-1][0], s.end)
        else:
            out.append((s.paddr, s.end))
    return out
