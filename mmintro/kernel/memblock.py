"""memblock: the boot-time allocator (mm/memblock.c).

Two region lists, ``memory`` (RAM, with node ids) and ``reserved``.  Allocation is
top-down below ``current_limit``, as on x86 (memblock_find_in_range_node), optionally on a
node.  Everything the kernel sets up before the buddy allocator exists (page tables,
node_data, mem_section, the memory map) comes from here and stays reserved.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


class MemblockError(RuntimeError):
    pass


@dataclass
class Region:
    base: int
    size: int
    nid: int = 0

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass
class Memblock:
    memory: list[Region] = field(default_factory=list)
    reserved: list[Region] = field(default_factory=list)
    current_limit: int = 1 << 64
    # what memblock=debug would log: (base, size, caller) of every reservation and allocation,
    # and (base, size, caller) of every range given back -- the boot's memory, item by item
    log: list[tuple[str, int, int, str]] = field(default_factory=list)

    @staticmethod
    def _caller(depth: int = 2) -> str:
        f = sys._getframe(depth)
        while f is not None and f.f_code.co_filename.endswith("memblock.py"):
            f = f.f_back
        return f.f_code.co_name if f is not None else "?"

    def add(self, base: int, size: int, nid: int = 0) -> None:
        self.memory.append(Region(base, size, nid))
        self.memory.sort(key=lambda r: r.base)

    def reserve(self, base: int, size: int) -> None:
        self.log.append(("reserve", base, size, self._caller()))
        self.reserved.append(Region(base, size))
        self.reserved.sort(key=lambda r: r.base)
        merged: list[Region] = []
        for r in self.reserved:
            if merged and r.base <= merged[-1].end:
                last = merged[-1]
                last.size = max(last.end, r.end) - last.base
            else:
                merged.append(Region(r.base, r.size))
        self.reserved = merged

    def free(self, base: int, size: int) -> None:
        """memblock_phys_free(): give [base, base+size) back (remove it from ``reserved``)."""
        self.log.append(("free", base, size, self._caller()))
        end = base + size
        out: list[Region] = []
        for r in self.reserved:
            if r.end <= base or r.base >= end:
                out.append(r)
                continue
            if r.base < base:
                out.append(Region(r.base, base - r.base))
            if r.end > end:
                out.append(Region(end, r.end - end))
        self.reserved = out

    def free_ranges(self, nid: int | None = None) -> list[tuple[int, int, int]]:
        """(start, end, nid) of memory not reserved: for_each_free_mem_range."""
        out = []
        for m in self.memory:
            if nid is not None and m.nid != nid:
                continue
            start = m.base
            for r in self.reserved:
                if r.end <= start or r.base >= m.end:
                    continue
                if r.base > start:
                    out.append((start, r.base, m.nid))
                start = max(start, r.end)
            if start < m.end:
                out.append((start, m.end, m.nid))
        return out

    def alloc(
        self, size: int, align: int = 4096, nid: int | None = None, limit: int | None = None, min_addr: int = 0
    ) -> int:
        """memblock_alloc_try_nid: the highest free, aligned range in [min_addr, limit)."""
        top = min(self.current_limit, limit or self.current_limit)
        for start, end, _ in reversed(self.free_ranges(nid)):
            end = min(end, top)
            base = (end - size) // align * align
            if base >= max(start, min_addr):
                self.reserve(base, size)
                return base
        if nid is not None:
            return self.alloc(size, align, None, limit, min_addr)
        raise MemblockError(f"memblock: cannot allocate {size} bytes")

    def node_of(self, paddr: int) -> int:
        for m in self.memory:
            if m.base <= paddr < m.end:
                return m.nid
        raise MemblockError(f"{paddr:#x} is not RAM")

    def is_memory(self, start: int, end: int) -> bool:
        return any(m.base <= start and end <= m.end for m in self.memory)
