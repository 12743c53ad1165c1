"""Changing kernel page attributes (arch/x86/mm/pat/set_memory.c), as the end of boot does it.

set_memory_ro/rw/nx() change the protection of a kernel virtual range: a large page the range
covers whole keeps its size (try_preserve_large_page), one it covers in part is split
(__split_large_page: a table page from the page allocator, the large page's protection copied
into its 512 entries) before the pages in the range change; a page of the kernel image's high
mapping changes its direct-map alias too (cpa_process_alias), except for NX, which the direct
map always has.  Every split of a direct-map or image page moves one page from its level to
512 of the level below in ``direct_pages_count`` (split_page_count), so the DirectMap lines of
/proc/meminfo show them.

The boot's callers: free_init_pages() (NX and RW before the image's init memory is freed) and
mark_rodata_ro() (RO over text and rodata, NX from the end of text).  The real kernel splits
more later, where modules and executable memory (ftrace, BPF, kprobes trampolines) change the
attributes of pages the simulator never allocates for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import (
    _KERNPG_TABLE,
    _PAGE_NX,
    _PAGE_PSE,
    _PAGE_RW,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PFN_MASK,
    START_KERNEL_MAP,
)
from mmintro.kernel import gfp as G
from mmintro.kernel.init_64 import PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, PMD_SIZE, PUD_SIZE, write_direct_pages_count

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

LEVEL_SIZE = {PG_LEVEL_4K: PAGE_SIZE, PG_LEVEL_2M: PMD_SIZE, PG_LEVEL_1G: PUD_SIZE}


def set_memory_ro(k: Kernel, start: int, end: int) -> None:
    change_page_attr(k, start, end, 0, _PAGE_RW)


def set_memory_rw(k: Kernel, start: int, end: int) -> None:
    change_page_attr(k, start, end, _PAGE_RW, 0)


def set_memory_nx(k: Kernel, start: int, end: int) -> None:
    change_page_attr(k, start, end, _PAGE_NX, 0)


def change_page_attr(k: Kernel, start: int, end: int, set_bits: int, clr_bits: int) -> None:
    """change_page_attr_set_clr() on the kernel virtual range [start, end) and, for the image's
    high mapping, on its direct-map alias (without NX)."""
    _cpa(k, start, end, set_bits, clr_bits)
    if start >= START_KERNEL_MAP:  # cpa_process_alias()
        pa = k.image.pa(start)
        _cpa(k, k.phys_to_virt(pa), k.phys_to_virt(pa + end - start), set_bits & ~_PAGE_NX, clr_bits & ~_PAGE_NX)
    write_direct_pages_count(k)


def _cpa(k: Kernel, start: int, end: int, set_bits: int, clr_bits: int) -> None:
    addr = start
    while addr < end:
        hit = k.pt.lookup_address(addr)
        if hit is None:  # not mapped: nothing to change
            addr = (addr & ~(PAGE_SIZE - 1)) + PAGE_SIZE
            continue
        e, at, level = hit
        size = LEVEL_SIZE[level]
        base = addr & ~(size - 1)
        new = (e | set_bits) & ~clr_bits
        if new == e:
            addr = base + size
            continue
        if level == PG_LEVEL_4K or (base >= start and base + size <= end):
            k.mem.write_u64(at, new)  # the whole page changes, large or not
            addr = base + size
            continue
        split_large_page(k, at, e, level)  # then the loop sees the smaller pages


def split_large_page(k: Kernel, at: int, e: int, level: int) -> None:
    """__split_large_page(): a page-table page from the page allocator (alloc_pages
    (GFP_KERNEL, 0)) whose 512 entries map what the large entry mapped with its protection,
    then the large entry points at it; split_page_count(level)."""
    pfn = k.alloc_pages(G.GFP_KERNEL, 0)
    if pfn is None:
        raise MemoryError("split_large_page: no page for the page table")
    table = pfn << PAGE_SHIFT
    size = LEVEL_SIZE[level]
    child = LEVEL_SIZE[level - 1]
    phys = e & PTE_PFN_MASK & ~(size - 1)
    prot = e & ~PTE_PFN_MASK
    if level == PG_LEVEL_2M:
        prot &= ~_PAGE_PSE  # 4 KiB entries (no PAT bit is set, so none moves)
    data = bytearray()
    for i in range(512):
        data += ((phys + i * child) | prot).to_bytes(8, "little")
    k.mem.write(table, bytes(data))
    k.mem.write_u64(at, table | _KERNPG_TABLE)
    count = k.pt.direct_pages_count
    if count.get(level, 0):  # split_page_count()
        count[level] -= 1
        count[level - 1] = count.get(level - 1, 0) + 512
