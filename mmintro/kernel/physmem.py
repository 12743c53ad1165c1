"""Simulated physical memory: sparse, zero by default, with contiguous numpy regions.

Most of a simulated machine's RAM is never written, so storage is allocated lazily in
64 KiB chunks.  Large structures the kernel allocates in one piece from memblock are
registered as *regions*: one contiguous numpy array that the simulator can view column-wise
with a structured dtype.  A region may also be *lazy* (a section's memory map,
:class:`mmintro.kernel.memmap_store.SectionMemmap`): its bytes are generated on reading and
it becomes an array when something writes to it or asks for a view.  Only non-zero 4 KiB
pages reach a snapshot.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mmintro.arch.x86 import PAGE_SIZE

if TYPE_CHECKING:
    from mmintro.kernel.memmap_store import LazyRun

CHUNK_SHIFT = 16
CHUNK = 1 << CHUNK_SHIFT


class LazyRegion(Protocol):
    """What a lazy region provides (mmintro.kernel.memmap_store.SectionMemmap)."""

    nbytes: int
    materialized: np.ndarray | None  # its array, once it has one

    def array(self) -> np.ndarray: ...  # the region as a uint8 array, made on first call
    def read(self, off: int, n: int) -> bytes: ...  # bytes, without making the array
    def pages(self, p0: int, p1: int) -> np.ndarray: ...  # the uint8 bytes of pages [p0, p1)
    def nonzero_pages(self) -> np.ndarray: ...  # bool per page: holds a non-zero byte


class PhysMem:
    def __init__(self) -> None:
        self._chunks: dict[int, np.ndarray] = {}
        self._starts: list[int] = []  # sorted region starts
        self._regions: list[tuple[int, int, np.ndarray | LazyRegion]] = []

    # -- regions -------------------------------------------------------------------
    def region(self, start: int, size: int, lazy: LazyRegion | None = None) -> np.ndarray | LazyRegion:
        """Back [start, start+size) with one contiguous zeroed array and return it; or, with
        ``lazy``, with that lazy region (``lazy.nbytes == size``)."""
        if lazy is not None and lazy.nbytes != size:
            raise ValueError(f"lazy region of {lazy.nbytes} bytes for {size}")
        if start % PAGE_SIZE or size % PAGE_SIZE:
            raise ValueError("regions are page aligned")
        for c in range(start >> CHUNK_SHIFT, (start + size - 1 >> CHUNK_SHIFT) + 1):
            if c in self._chunks:
                raise ValueError(f"region {start:#x} overlaps memory already written")
        i = bisect.bisect(self._starts, start)
        if i and self._regions[i - 1][1] > start or i < len(self._regions) and self._regions[i][0] < start + size:
            raise ValueError("overlapping regions")
        arr = np.zeros(size, dtype=np.uint8) if lazy is None else lazy
        self._starts.insert(i, start)
        self._regions.insert(i, (start, start + size, arr))
        return arr

    def _find_region(self, paddr: int) -> tuple[int, int, np.ndarray | LazyRegion] | None:
        i = bisect.bisect(self._starts, paddr) - 1
        if i >= 0:
            r = self._regions[i]
            if paddr < r[1]:
                return r
        return None

    # -- byte access -----------------------------------------------------------------
    def view(self, paddr: int, size: int) -> np.ndarray:
        """A writable uint8 view of [paddr, paddr+size), which must not cross a chunk
        boundary unless it lies inside one region."""
        r = self._find_region(paddr)
        if r is not None:
            if paddr + size > r[1]:
                raise ValueError("view crosses the end of a region")
            a = r[2] if isinstance(r[2], np.ndarray) else r[2].array()
            return a[paddr - r[0] : paddr - r[0] + size]
        c = paddr >> CHUNK_SHIFT
        if (paddr + size - 1) >> CHUNK_SHIFT != c:
            raise ValueError("view crosses a chunk boundary")
        arr = self._chunks.get(c)
        if arr is None:
            arr = self._chunks[c] = np.zeros(CHUNK, dtype=np.uint8)
        off = paddr & (CHUNK - 1)
        return arr[off : off + size]

    def _pieces(self, paddr: int, size: int) -> Iterator[tuple[int, int]]:
        end = paddr + size
        while paddr < end:
            r = self._find_region(paddr)
            if r is not None:
                n = min(end, r[1]) - paddr
            else:
                n = min(end, ((paddr >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT) - paddr
                i = bisect.bisect(self._starts, paddr)
                if i < len(self._starts):
                    n = min(n, self._starts[i] - paddr)
            yield paddr, n
            paddr += n

    def write(self, paddr: int, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        buf = (
            np.frombuffer(bytes(data), dtype=np.uint8)
            if not isinstance(data, np.ndarray)
            else data.view(np.uint8).ravel()
        )
        pos = 0
        for p, n in self._pieces(paddr, len(buf)):
            self.view(p, n)[:] = buf[pos : pos + n]
            pos += n

    def read(self, paddr: int, size: int) -> bytes:
        out = bytearray()
        for p, n in self._pieces(paddr, size):
            r = self._find_region(p)
            if r is None and (p >> CHUNK_SHIFT) not in self._chunks:
                out += bytes(n)
            elif r is not None and not isinstance(r[2], np.ndarray) and r[2].materialized is None:
                out += r[2].read(p - r[0], n)
            else:
                out += self.view(p, n).tobytes()
        return bytes(out)

    def fill(self, paddr: int, size: int, byte: int = 0) -> None:
        for p, n in self._pieces(paddr, size):
            if byte == 0 and self._find_region(p) is None and (p >> CHUNK_SHIFT) not in self._chunks:
                continue
            self.view(p, n)[:] = byte

    def discard(self, paddr: int, size: int) -> None:
        """Zero [paddr, paddr+size) -- whole chunks outside any region -- by forgetting them:
        they read as zeros again and may become a region (a __GFP_ZERO block that turns into
        a memory map)."""
        if paddr % CHUNK or size % CHUNK:
            raise ValueError("discard works on whole 64 KiB chunks")
        for c in range(paddr >> CHUNK_SHIFT, (paddr + size) >> CHUNK_SHIFT):
            if self._find_region(c << CHUNK_SHIFT) is not None:
                raise ValueError(f"discard: {c << CHUNK_SHIFT:#x} is in a region")
            self._chunks.pop(c, None)

    def write_u64(self, paddr: int, value: int) -> None:
        self.write(paddr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_u64(self, paddr: int) -> int:
        return int.from_bytes(self.read(paddr, 8), "little")

    # -- snapshot support --------------------------------------------------------------
    def nonzero_runs(self) -> Iterator[tuple[int, np.ndarray | LazyRun]]:
        """(phys, bytes) for every run of non-zero pages, in address order: maximal runs of
        stored memory as arrays; a lazy region's runs (which may touch others) as
        :class:`~mmintro.kernel.memmap_store.LazyRun` objects, generated when read."""
        from mmintro.kernel.memmap_store import LazyRun

        backing: list[tuple[int, np.ndarray | LazyRegion]] = [(s, a) for (s, _e, a) in self._regions]
        backing += [(c << CHUNK_SHIFT, a) for c, a in self._chunks.items()]
        backing.sort(key=lambda x: x[0])
        run_start = -1
        run_parts: list[np.ndarray] = []
        run_end = -1
        for base, arr in backing:
            if not isinstance(arr, np.ndarray):
                if arr.materialized is None:
                    nz = np.flatnonzero(arr.nonzero_pages())
                    if len(nz) and run_parts:
                        yield run_start, _cat(run_parts)
                        run_parts, run_end = [], -1
                    for grp in np.split(nz, np.flatnonzero(np.diff(nz) != 1) + 1) if len(nz) else ():
                        yield base + int(grp[0]) * PAGE_SIZE, LazyRun(arr, int(grp[0]), int(grp[-1]) + 1)
                    continue
                arr = arr.materialized
            pages = arr.reshape(-1, PAGE_SIZE)
            nz = np.flatnonzero(pages.view(np.uint64).any(axis=1))
            if not len(nz):
                continue
            # split nz into consecutive groups
            breaks = np.flatnonzero(np.diff(nz) != 1) + 1
            for grp in np.split(nz, breaks):
                g0, g1 = int(grp[0]), int(grp[-1]) + 1
                start = base + g0 * PAGE_SIZE
                if start == run_end:
                    run_parts.append(arr[g0 * PAGE_SIZE : g1 * PAGE_SIZE])
                    run_end = base + g1 * PAGE_SIZE
                else:
                    if run_parts:
                        yield run_start, _cat(run_parts)
                    run_start, run_end = start, base + g1 * PAGE_SIZE
                    run_parts = [arr[g0 * PAGE_SIZE : g1 * PAGE_SIZE]]
        if run_parts:
            yield run_start, _cat(run_parts)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
