"""x86-64 paging described as data (one walker, one table per paging mode).

The entry bits are C ``#define``s, not types, so they are not in the BTF-derived type data;
they are written down once here, from arch/x86/include/asm/pgtable_types.h (6.18) and
arch/x86/include/asm/page_types.h / page_64_types.h.  A paging mode is a tuple of
:class:`Level` rows (after volatility3's ``intel.py``): adding 5-level paging is a new table,
not new code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from mmintro.reader.errors import FaultError

__all__ = [
    "Level",
    "LEVELS_4",
    "LEVELS_5",
    "PTE_BITS",
    "PTE_PFN_MASK",
    "START_KERNEL_MAP",
    "decode_entry",
    "WalkStep",
    "PageWalk",
    "walk",
]

# The #defines of arch/x86/include/asm/page*_types.h and pgtable_types.h live once, in
# mmintro.arch.x86 (shared by the simulator and the reader); here they become the table
# of entry bits, with the names crash prints.
from mmintro.arch import x86 as _x86

START_KERNEL_MAP = _x86.START_KERNEL_MAP
PHYSICAL_MASK = (1 << 52) - 1
PTE_PFN_MASK = _x86.PTE_PFN_MASK

PTE_BITS: tuple[tuple[int, str], ...] = (
    (_x86._PAGE_BIT_PRESENT, "PRESENT"),
    (_x86._PAGE_BIT_RW, "RW"),
    (_x86._PAGE_BIT_USER, "USER"),
    (_x86._PAGE_BIT_PWT, "PWT"),
    (_x86._PAGE_BIT_PCD, "PCD"),
    (_x86._PAGE_BIT_ACCESSED, "ACCESSED"),
    (_x86._PAGE_BIT_DIRTY, "DIRTY"),
    (_x86._PAGE_BIT_PSE, "PSE"),  # PAT on 4 KiB PTEs
    (_x86._PAGE_BIT_GLOBAL, "GLOBAL"),  # PROTNONE when not present
    (_x86._PAGE_BIT_SOFTW1, "SPECIAL"),
    (_x86._PAGE_BIT_SOFTW2, "UFFD_WP"),
    (_x86._PAGE_BIT_SOFTW3, "SOFT_DIRTY"),
    (_x86._PAGE_BIT_PAT_LARGE, "PAT_LARGE"),  # 2 MiB / 1 GiB leaves only
    (_x86._PAGE_BIT_SOFTW5, "SAVED_DIRTY"),
    (_x86._PAGE_BIT_NX, "NX"),
)
_PAGE_PRESENT = _x86._PAGE_PRESENT
_PAGE_PSE = _x86._PAGE_PSE
_PAGE_BIT_PAT = _x86._PAGE_BIT_PAT
_PAGE_BIT_PAT_LARGE = _x86._PAGE_BIT_PAT_LARGE


@dataclass(frozen=True)
class Level:
    """One paging level: its name, the shift of the address bits it indexes, and whether an
    entry with PSE set is a leaf here (``large``); the last level is always a leaf."""

    name: str
    shift: int
    bits: int = 9
    large: bool = False

    @property
    def entries(self) -> int:
        return 1 << self.bits

    @property
    def page_size(self) -> int:
        return 1 << self.shift


# 4-level paging (PGD 39, PUD 30, PMD 21, PTE 12).  The P4D level is folded at run time
# (semantics.md §8.1), so it does not appear.
LEVELS_4: tuple[Level, ...] = (
    Level("pgd", 39),
    Level("pud", 30, large=True),
    Level("pmd", 21, large=True),
    Level("pte", 12),
)
LEVELS_5: tuple[Level, ...] = (
    Level("pgd", 48),
    Level("p4d", 39),
    Level("pud", 30, large=True),
    Level("pmd", 21, large=True),
    Level("pte", 12),
)


def decode_entry(entry: int, level: Level | None = None) -> list[str]:
    """Names of the bits set in a page-table entry (PSE is PAT on a 4 KiB PTE)."""
    names = []
    leaf4k = level is not None and level.shift == 12
    for bit, name in PTE_BITS:
        if entry >> bit & 1:
            if bit == _PAGE_BIT_PAT and leaf4k:
                name = "PAT"
            elif bit == _PAGE_BIT_PAT_LARGE and (level is None or level.shift == 12 or not entry & _PAGE_PSE):
                continue  # part of the PFN, not a flag
            names.append(name)
    return names


class WalkStep(NamedTuple):
    """One level of a page-table walk."""

    level: str
    """Level name: ``pgd``, ``p4d``, ``pud``, ``pmd`` or ``pte``."""
    table: int
    """Physical address of the table that was indexed."""
    index: int
    """Index of the entry in the table."""
    entry: int
    """The 64-bit entry value."""
    flags: list[str]
    """Decoded bits of the entry."""


class PageWalk(NamedTuple):
    """A complete translation, as crash's ``vtop`` prints it."""

    vaddr: int
    """The virtual address translated."""
    steps: list[WalkStep]
    """Every level visited, top first."""
    phys: int
    """The physical address."""
    page_size: int
    """Size of the leaf mapping (4 KiB, 2 MiB or 1 GiB)."""

    def __str__(self) -> str:
        lines = [f"VIRTUAL {self.vaddr:#x}"]
        for s in self.steps:
            addr = s.table + 8 * s.index
            lines.append(f"  {s.level.upper():4} {addr:016x} => {s.entry:016x}  ({' '.join(s.flags)})")
        size = {1 << 12: "4 KiB", 1 << 21: "2 MiB", 1 << 30: "1 GiB"}.get(self.page_size, hex(self.page_size))
        lines.append(f"  PAGE {self.phys & ~(self.page_size - 1):016x}  ({size})")
        lines.append(f"PHYSICAL {self.phys:#x}")
        return "\n".join(lines)


def walk(
    vaddr: int,
    pgd_phys: int,
    read_u64: Callable[[int], int],
    levels: tuple[Level, ...] = LEVELS_4,
) -> PageWalk:
    """Translate ``vaddr`` through the tables rooted at physical ``pgd_phys``.

    ``read_u64(phys)`` reads one entry.  Raises :class:`FaultError` for a non-canonical
    address or a non-present entry.
    """
    top = levels[0].shift + levels[0].bits  # 48 or 57 address bits
    hi = vaddr >> (top - 1)  # bits top-1..63 must all equal bit top-1
    if hi != 0 and hi != (1 << (65 - top)) - 1:
        raise FaultError(vaddr, "non-canonical address")
    steps: list[WalkStep] = []
    table = pgd_phys
    last = len(levels) - 1
    for i, lv in enumerate(levels):
        index = (vaddr >> lv.shift) & (lv.entries - 1)
        entry = read_u64(table + 8 * index)
        steps.append(WalkStep(lv.name, table, index, entry, decode_entry(entry, lv)))
        if not entry & _PAGE_PRESENT:
            raise FaultError(vaddr, f"{lv.name} entry not present (entry {entry:#x})")
        if i == last or (lv.large and entry & _PAGE_PSE):
            size = lv.page_size
            mask = PTE_PFN_MASK & ~(size - 1)
            return PageWalk(vaddr, steps, (entry & mask) | (vaddr & (size - 1)), size)
        table = entry & PTE_PFN_MASK
    raise AssertionError("unreachable")
