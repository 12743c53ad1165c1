"""x86-64 kernel page tables (arch/x86/mm/init.c, init_64.c, kernel/head_64.S).

Builds swapper_pg_dir (init_top_pgt): the direct map of RAM at page_offset_base with the
page sizes ``split_mem_range`` and ``adjust_range_page_size_mask`` choose, the vmemmap with
2 MiB leaves (``vmemmap_populate_hugepages``), and the kernel image's static
level3/level2_kernel_pgt with 2 MiB pages.
"""

from __future__ import annotations

from typing import Callable

from mmintro.arch.x86 import (
    PAGE_SIZE, PMD_SHIFT, PUD_SHIFT, PGDIR_SHIFT, PTE_PFN_MASK, _PAGE_TABLE, _KERNPG_TABLE,
    __PAGE_KERNEL, __PAGE_KERNEL_LARGE, __PAGE_KERNEL_LARGE_EXEC, _PAGE_PRESENT, _PAGE_PSE,
)
from mmintro.kernel.physmem import PhysMem

PMD_SIZE = 1 << PMD_SHIFT
PUD_SIZE = 1 << PUD_SHIFT
SHIFTS = [PGDIR_SHIFT, PUD_SHIFT, PMD_SHIFT, 12]
PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G = 1, 2, 3


def _idx(vaddr: int, level: int) -> int:
    return (vaddr >> SHIFTS[level]) & 511


class PageTables:
    """Writes a 4-level hierarchy rooted at a PGD page into physical memory."""

    def __init__(self, mem: PhysMem, pgd_phys: int, alloc_table: Callable[[int], int]) -> None:
        self.mem = mem
        self.pgd = pgd_phys
        self.alloc_table = alloc_table  # nid -> phys of a zeroed 4 KiB page
        self.table_pages: list[int] = []
        self.direct_pages_count = {PG_LEVEL_4K: 0, PG_LEVEL_2M: 0, PG_LEVEL_1G: 0}

    def entry(self, table: int, index: int) -> int:
        return self.mem.read_u64(table + 8 * index)

    def set_entry(self, table: int, index: int, value: int) -> None:
        self.mem.write_u64(table + 8 * index, value)

    def _next(self, table: int, index: int, nid: int, table_prot: int) -> int:
        e = self.entry(table, index)
        if e & _PAGE_PRESENT:
            if e & _PAGE_PSE:
                raise ValueError("mapping over a large page")
            return e & PTE_PFN_MASK
        t = self.alloc_table(nid)
        self.table_pages.append(t)
        self.set_entry(table, index, t | table_prot)
        return t

    def map(self, vaddr: int, paddr: int, level: int, prot: int, nid: int = 0, table_prot: int = _PAGE_TABLE) -> None:
        """Map one page of the size of ``level`` (3 = 1 GiB PUD leaf, 2 = 2 MiB, 1 = 4 KiB)."""
        table = self.pgd
        depth = {PG_LEVEL_1G: 1, PG_LEVEL_2M: 2, PG_LEVEL_4K: 3}[level]
        for lv in range(depth):
            table = self._next(table, _idx(vaddr, lv), nid, table_prot)
        self.set_entry(table, _idx(vaddr, depth), paddr | prot)


def split_mem_range(start: int, end: int) -> list[tuple[int, int, int]]:
    """arch/x86/mm/init.c: split [start, end) into (start, end, largest page level) ranges."""
    pmd_pfns, pud_pfns = PMD_SIZE >> 12, PUD_SIZE >> 12
    start_pfn, limit_pfn = start >> 12, end >> 12
    rup = lambda x, a: -(-x // a) * a  # noqa: E731
    rdown = lambda x, a: x // a * a  # noqa: E731
    out: list[tuple[int, int, int]] = []
    pfn = start_pfn
    e = min(rup(pfn, pmd_pfns), limit_pfn)
    if pfn < e:
        out.append((pfn, e, PG_LEVEL_4K))
        pfn = e
    s, e = rup(pfn, pmd_pfns), min(rup(pfn, pud_pfns), rdown(limit_pfn, pmd_pfns))
    if s < e:
        out.append((s, e, PG_LEVEL_2M))
        pfn = e
    s, e = rup(pfn, pud_pfns), rdown(limit_pfn, pud_pfns)
    if s < e:
        out.append((s, e, PG_LEVEL_1G))
        pfn = e
    s, e = rup(pfn, pmd_pfns), rdown(limit_pfn, pmd_pfns)
    if s < e:
        out.append((s, e, PG_LEVEL_2M))
        pfn = e
    if pfn < limit_pfn:
        out.append((pfn, limit_pfn, PG_LEVEL_4K))
    return [(a << 12, b << 12, lv) for a, b, lv in out]


def adjust_range_page_size(ranges: list[tuple[int, int, int]], is_memory: Callable[[int, int], bool]) -> list[tuple[int, int, int]]:
    """adjust_range_page_size_mask: a 4 KiB range whose surrounding 2 MiB (1 GiB) lies wholly in
    one RAM region may be mapped with the larger page."""
    out = []
    for s, e, lv in ranges:
        if lv < PG_LEVEL_2M and is_memory(s // PMD_SIZE * PMD_SIZE, -(-e // PMD_SIZE) * PMD_SIZE):
            lv = PG_LEVEL_2M
        if lv < PG_LEVEL_1G and is_memory(s // PUD_SIZE * PUD_SIZE, -(-e // PUD_SIZE) * PUD_SIZE):
            lv = PG_LEVEL_1G
        out.append((s, e, lv))
    return out


def kernel_physical_mapping_init(pt: PageTables, page_offset: int, start: int, end: int, level: int,
                                 mapped_4k: Callable[[int], bool], nid: int) -> None:
    """Map [start, end) of physical memory at page_offset with pages up to ``level``.

    ``mapped_4k(paddr)`` implements phys_pte_init's e820 check: 4 KiB pages that overlap no
    RAM/ACPI e820 entry are left unmapped during boot.
    """
    p = start
    while p < end:
        if level >= PG_LEVEL_1G and p % PUD_SIZE == 0 and p + PUD_SIZE <= end:
            pt.map(page_offset + p, p, PG_LEVEL_1G, __PAGE_KERNEL_LARGE, nid)
            pt.direct_pages_count[PG_LEVEL_1G] += 1
            p += PUD_SIZE
        elif level >= PG_LEVEL_2M and p % PMD_SIZE == 0 and p + PMD_SIZE <= end:
            pt.map(page_offset + p, p, PG_LEVEL_2M, __PAGE_KERNEL_LARGE, nid)
            pt.direct_pages_count[PG_LEVEL_2M] += 1
            p += PMD_SIZE
        else:
            if mapped_4k(p):
                pt.map(page_offset + p, p, PG_LEVEL_4K, __PAGE_KERNEL, nid)
                pt.direct_pages_count[PG_LEVEL_4K] += 1
            p += PAGE_SIZE


def map_kernel_image(pt: PageTables, level3_kernel_pgt: int, level2_kernel_pgt: int, start_kernel_map: int,
                     phys_base: int, image_start: int, image_end: int) -> None:
    """head_64.S: init_top_pgt[511] -> level3_kernel_pgt[510] -> level2_kernel_pgt, whose 2 MiB
    entries map the image; cleanup_highmap() leaves only [_text, _end) mapped."""
    pt.set_entry(pt.pgd, _idx(start_kernel_map, 0), level3_kernel_pgt | _PAGE_TABLE)
    pt.set_entry(level3_kernel_pgt, _idx(start_kernel_map, 1), level2_kernel_pgt | _KERNPG_TABLE)
    for p in range(image_start // PMD_SIZE * PMD_SIZE, image_end, PMD_SIZE):
        v = start_kernel_map + p - phys_base
        pt.set_entry(level2_kernel_pgt, _idx(v, 2), (p + phys_base) | __PAGE_KERNEL_LARGE_EXEC)
