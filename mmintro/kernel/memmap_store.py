"""Storage of the memory map: each section's struct pages kept compact until they are written.

A machine's memory map is 64 bytes per page (16 GiB for 1 TiB of RAM), yet after boot almost
every struct page is in one of a few states: as memmap_init's __init_single_page left it
(node and zone in flags, _refcount 1, _mapcount -1, ``lru`` pointing at itself), PG_reserved,
or a free buddy page (_refcount 0) whose block head alone carries PageBuddy, its order and
the free-list links.  So a section's 32768 struct pages are stored as

* **runs** of identical struct pages -- identical except for words that hold the page's own
  address (``lru`` initialised to itself; a run stores the offset and a bit saying the word
  is the page's address plus it);
* **exceptions**: whole struct pages, for the few pages written one by one (block heads).

A section's bytes are generated when something reads them (PhysMem.read, a snapshot).  It
turns into an ordinary numpy array, *materialized*, when bulk code asks for the array
(``section_pages``, ``memmap_array``), when a write through PhysMem (KMem) reaches it, or
when its exceptions or runs grow past a limit; from then on it is plain memory.

The allocator reaches struct pages through ``k.memmap_words[nr] = (u64 words, u32 words,
base, array)``, the struct page of pfn at 64-bit word ``base + pfn * 8``.  For a compact
section the first two are :class:`CompactWords64`/:class:`CompactWords32`, which index like
those memoryviews (reads generate the word, writes become exceptions) and keep working after
the section materializes; the array is None.  Range updates of one member over many pages
(:meth:`SectionMemmap.update`: ``flags &= ~PG_reserved`` over a freed block, compound tails)
change runs, not pages.

The representation is invisible in the bytes: a section generated from runs and exceptions
is byte for byte what the same writes into a numpy array give (tests/test_big_machine.py).
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator

import numpy as np

from mmintro.arch.x86 import PAGE_SIZE

__all__ = ["SectionMemmap", "CompactWords64", "CompactWords32", "LazyRun", "PAGE_WORDS", "EXCEPTION_LIMIT", "RUN_LIMIT"]

PAGE_WORDS = 8  # sizeof(struct page) / 8 (checked against the type data by sparse.sparse_init)
M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
#: a compact section with more exception pages (about 400 bytes each) or runs than this
#: becomes a numpy array (2 MiB)
EXCEPTION_LIMIT = 256
RUN_LIMIT = 256

_OPS = ("set", "and", "or")


def _apply(old: int, lane: int | None, op: str, value: int) -> int:
    """``old`` with ``op value`` applied to the whole word (lane None) or to its low (0) or
    high (1) 32-bit half."""
    if lane is None:
        return value if op == "set" else (old & value if op == "and" else old | value)
    sh = 32 * lane
    cur = (old >> sh) & M32
    new = value if op == "set" else (cur & value if op == "and" else cur | value)
    return (old & ~(M32 << sh) & M64) | ((new & M32) << sh)


class SectionMemmap:
    """The struct pages of one memory section (``npages`` of them at vmemmap address
    ``addr0`` onwards): runs and exceptions, or a numpy array once materialized."""

    __slots__ = (
        "nr",
        "npages",
        "addr0",
        "starts",
        "tmpls",
        "selfs",
        "exc",
        "exc_idx",
        "arr",
        "mv64",
        "mv32",
        "on_materialize",
    )

    def __init__(
        self, nr: int, npages: int, addr0: int, on_materialize: Callable[[SectionMemmap], None] | None = None
    ) -> None:
        self.nr = nr
        self.npages = npages
        self.addr0 = addr0  # the address of the first struct page
        self.starts: list[int] = [0]  # run i covers [starts[i], starts[i+1])
        self.tmpls: list[list[int]] = [[0] * PAGE_WORDS]  # its struct page (self words: an offset)
        self.selfs: list[int] = [0]  # bit j: word j is the page's own address + tmpls[i][j]
        self.exc: dict[int, list[int]] = {}  # page index -> its 8 words
        self.exc_idx: list[int] = []  # the exception pages, sorted
        self.arr: np.ndarray | None = None
        self.mv64: memoryview | None = None
        self.mv32: memoryview | None = None
        self.on_materialize = on_materialize

    # -- building ---------------------------------------------------------------------------
    def set_runs(self, runs: list[tuple[int, list[int], int]]) -> None:
        """Replace the contents by runs ``(first page, 8 words, self-word bits)`` in order,
        the first at page 0 (memmap_init)."""
        if self.arr is not None:
            raise ValueError(f"section {self.nr} is materialized")
        if not runs or runs[0][0] != 0:
            raise ValueError("runs must start at page 0")
        self.starts = [r[0] for r in runs]
        self.tmpls = [list(r[1]) for r in runs]
        self.selfs = [r[2] for r in runs]
        self.exc, self.exc_idx = {}, []
        self._merge()

    # -- one word ---------------------------------------------------------------------------
    def word(self, idx: int, j: int) -> int:
        """Word ``j`` of struct page ``idx`` (of a compact section)."""
        e = self.exc.get(idx)
        if e is not None:
            return e[j]
        i = bisect_right(self.starts, idx) - 1
        v = self.tmpls[i][j]
        if self.selfs[i] >> j & 1:
            v = (v + self.addr0 + idx * 64) & M64
        return v

    def page(self, idx: int) -> list[int]:
        e = self.exc.get(idx)
        if e is not None:
            return list(e)
        i = bisect_right(self.starts, idx) - 1
        t, sm = self.tmpls[i], self.selfs[i]
        a = self.addr0 + idx * 64
        return [(t[j] + a) & M64 if sm >> j & 1 else t[j] for j in range(PAGE_WORDS)]

    def set_word(self, idx: int, j: int, v: int) -> None:
        if self.mv64 is not None:
            self.mv64[idx * PAGE_WORDS + j] = v
            return
        e = self.exc.get(idx)
        if e is None:
            if self.word(idx, j) == v:
                return
            e = self.exc[idx] = self.page(idx)
            insort(self.exc_idx, idx)
            if len(self.exc) > EXCEPTION_LIMIT:
                e[j] = v
                self.materialize()
                return
        e[j] = v

    # -- many pages -------------------------------------------------------------------------
    def update(self, lo: int, hi: int, j: int, lane: int | None, op: str, value: int) -> None:
        """Word ``j`` (or its 32-bit ``lane``) of pages [lo, hi): ``op`` is "set", "and" or
        "or" with ``value``."""
        if op not in _OPS:
            raise ValueError(op)
        value &= M64 if lane is None else M32
        if lo >= hi:
            return
        if self.arr is None:
            starts, tmpls, selfs = self.starts, self.tmpls, self.selfs
            r0 = bisect_right(starts, lo) - 1
            r1 = bisect_left(starts, hi)  # runs r0 .. r1-1 meet [lo, hi)
            if any(selfs[r] >> j & 1 for r in range(r0, r1)) and (op != "set" or lane is not None):
                self.materialize()  # an address word changed bit by bit: no longer a run
            else:
                if any(_apply(tmpls[r][j], lane, op, value) != tmpls[r][j] or selfs[r] >> j & 1 for r in range(r0, r1)):
                    self._split(lo)
                    self._split(hi)
                    r0 = bisect_left(self.starts, lo)
                    r1 = bisect_left(self.starts, hi)
                    for r in range(r0, r1):
                        self.tmpls[r][j] = _apply(self.tmpls[r][j], lane, op, value)
                        self.selfs[r] &= ~(1 << j)
                    self._merge(r0, r1 + 1)
                a, b = bisect_left(self.exc_idx, lo), bisect_left(self.exc_idx, hi)
                for idx in self.exc_idx[a:b]:
                    e = self.exc[idx]
                    e[j] = _apply(e[j], lane, op, value)
                if len(self.starts) > RUN_LIMIT:
                    self.materialize()
                return
        assert self.arr is not None
        if lane is None:
            col = self.arr.view(np.uint64).reshape(-1, PAGE_WORDS)[lo:hi, j]
        else:
            col = self.arr.view(np.uint32).reshape(-1, 2 * PAGE_WORDS)[lo:hi, 2 * j + lane]
        v = col.dtype.type(value)
        if op == "set":
            col[...] = v
        elif op == "and":
            col &= v
        else:
            col |= v

    def _split(self, i: int) -> None:
        """Start a run at page ``i``."""
        if i >= self.npages:
            return
        r = bisect_right(self.starts, i) - 1
        if self.starts[r] == i:
            return
        self.starts.insert(r + 1, i)
        self.tmpls.insert(r + 1, list(self.tmpls[r]))
        self.selfs.insert(r + 1, self.selfs[r])

    def _merge(self, r0: int = 1, r1: int | None = None) -> None:
        """Join runs r0 .. r1 (default: all) with the run before when their struct pages
        are equal."""
        starts, tmpls, selfs = self.starts, self.tmpls, self.selfs
        r = min(len(starts) - 1, len(starts) if r1 is None else r1)
        lo = max(1, r0)
        while r >= lo:
            if tmpls[r] == tmpls[r - 1] and selfs[r] == selfs[r - 1]:
                del starts[r], tmpls[r], selfs[r]
            r -= 1

    # -- bytes ------------------------------------------------------------------------------
    def generate(self, i0: int, i1: int) -> np.ndarray:
        """Struct pages [i0, i1) as an (n, 8) uint64 array (a view when materialized)."""
        if self.arr is not None:
            return self.arr.view(np.uint64).reshape(-1, PAGE_WORDS)[i0:i1]
        out = np.empty((i1 - i0, PAGE_WORDS), dtype=np.uint64)
        starts = self.starts
        r = bisect_right(starts, i0) - 1
        while r < len(starts) and starts[r] < i1:
            a = max(starts[r], i0)
            b = min(starts[r + 1] if r + 1 < len(starts) else self.npages, i1)
            out[a - i0 : b - i0] = np.array(self.tmpls[r], dtype=np.uint64)
            sm = self.selfs[r]
            if sm:
                addrs = np.uint64(self.addr0) + np.arange(a, b, dtype=np.uint64) * np.uint64(64)
                for j in range(PAGE_WORDS):
                    if sm >> j & 1:
                        out[a - i0 : b - i0, j] += addrs
            r += 1
        a, b = bisect_left(self.exc_idx, i0), bisect_left(self.exc_idx, i1)
        if a < b:
            idx = self.exc_idx[a:b]
            out[np.array(idx) - i0] = np.array([self.exc[i] for i in idx], dtype=np.uint64)
        return out

    def materialize(self) -> np.ndarray:
        """The section as a numpy array (uint8, 64 bytes a page), made once."""
        if self.arr is None:
            words = self.generate(0, self.npages)
            self.arr = words.view(np.uint8).reshape(-1)
            self.mv64 = memoryview(self.arr).cast("Q")
            self.mv32 = memoryview(self.arr).cast("I")
            self.starts, self.tmpls, self.selfs, self.exc, self.exc_idx = [], [], [], {}, []
            if self.on_materialize is not None:
                self.on_materialize(self)
        return self.arr

    # -- PhysMem's lazy region protocol ------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return self.npages * 64

    @property
    def materialized(self) -> np.ndarray | None:
        return self.arr

    def array(self) -> np.ndarray:
        return self.materialize()

    def read(self, off: int, n: int) -> bytes:
        i0, i1 = off // 64, -(-(off + n) // 64)
        b = self.generate(i0, i1).view(np.uint8).reshape(-1)
        return b[off - i0 * 64 : off - i0 * 64 + n].tobytes()

    def pages(self, p0: int, p1: int) -> np.ndarray:
        """The bytes of 4 KiB pages [p0, p1) of the region (uint8)."""
        per = PAGE_SIZE // 64
        return self.generate(p0 * per, p1 * per).view(np.uint8).reshape(-1)

    def nonzero_pages(self) -> np.ndarray:
        """Which 4 KiB pages of the region hold a non-zero byte (bool per page)."""
        per = PAGE_SIZE // 64
        n = -(-self.npages // per)
        if self.arr is not None:
            return self.arr.reshape(n, -1).view(np.uint64).any(axis=1)
        nz = np.zeros(n, dtype=bool)
        for r, s in enumerate(self.starts):
            if self.selfs[r] or any(self.tmpls[r]):
                e = self.starts[r + 1] if r + 1 < len(self.starts) else self.npages
                nz[s // per : -(-e // per)] = True
        for idx, e in self.exc.items():
            if any(e):
                nz[idx // per] = True
        return nz


class CompactWords64:
    """``memoryview(section).cast("Q")`` of a compact section: word ``i * 8 + j`` is word ``j``
    of struct page ``i`` (the section's ``base`` makes ``base + pfn * 8`` such an index)."""

    __slots__ = ("s",)

    def __init__(self, s: SectionMemmap) -> None:
        self.s = s

    def __getitem__(self, w: int) -> int:
        s = self.s
        if s.mv64 is not None:
            return s.mv64[w]
        w = operator.index(w)
        return s.word(w >> 3, w & 7)

    def __setitem__(self, w: int, v: int) -> None:
        v = operator.index(v)
        if not 0 <= v <= M64:
            raise ValueError(f"memoryview: invalid value for format 'Q': {v}")
        w = operator.index(w)
        self.s.set_word(w >> 3, w & 7, v)


class CompactWords32:
    """``memoryview(section).cast("I")`` of a compact section (little-endian halves)."""

    __slots__ = ("s",)

    def __init__(self, s: SectionMemmap) -> None:
        self.s = s

    def __getitem__(self, d: int) -> int:
        s = self.s
        if s.mv32 is not None:
            return s.mv32[d]
        d = operator.index(d)
        w = d >> 1
        v = s.word(w >> 3, w & 7)
        return (v >> 32) & M32 if d & 1 else v & M32

    def __setitem__(self, d: int, v: int) -> None:
        v = operator.index(v)
        if not 0 <= v <= M32:
            raise ValueError(f"memoryview: invalid value for format 'I': {v}")
        s = self.s
        if s.mv32 is not None:
            s.mv32[d] = v
            return
        d = operator.index(d)
        w = d >> 1
        old = s.word(w >> 3, w & 7)
        s.set_word(w >> 3, w & 7, _apply(old, d & 1, "set", v))


class LazyRun:
    """A run of non-zero pages of a lazy region (:meth:`mmintro.kernel.physmem.PhysMem.nonzero_runs`),
    generated a piece at a time: ``len()`` is its size in bytes, :meth:`chunks` its bytes."""

    __slots__ = ("src", "p0", "p1")

    def __init__(self, src, p0: int, p1: int) -> None:
        self.src, self.p0, self.p1 = src, p0, p1

    def __len__(self) -> int:
        return (self.p1 - self.p0) * PAGE_SIZE

    def chunks(self, max_pages: int = 512) -> Iterator[np.ndarray]:
        for a in range(self.p0, self.p1, max_pages):
            yield self.src.pages(a, min(self.p1, a + max_pages))

    def __bytes__(self) -> bytes:
        return b"".join(c.tobytes() for c in self.chunks())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = np.concatenate(list(self.chunks()))
        return a if dtype is None else a.astype(dtype)
