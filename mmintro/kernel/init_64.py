"""x86-64 kernel page tables (arch/x86/mm/init.c, init_64.c, kernel/head_64.S).

Builds swapper_pg_dir (init_top_pgt): the direct map of RAM at page_offset_base with the
page sizes ``split_mem_range`` and ``adjust_range_page_size_mask`` choose, the vmemmap with
2 MiB leaves (``vmemmap_populate_hugepages``), and the kernel image's static
level3/level2_kernel_pgt with 2 MiB pages.

Table pages come from memblock until mem_init() sets ``after_bootmem``, unaccounted (as
alloc_low_pages() hands them out).  From then on init_mm's tables are allocated the way
the generic p?d_alloc_one() helpers do it for init_mm (include/asm-generic/pgalloc.h):
``pagetable_alloc(GFP_PGTABLE_KERNEL)`` from the page allocator, then the ptdesc
constructor (__pagetable_ctor: page_type PGTY_table, NR_PAGETABLE + 1 on the page's node;
kernel page tables are accounted like any other) and ptdesc_set_kernel (PT_kernel).
mem_init() also runs preallocate_vmalloc_pages(): one PUD page under every PGD slot of the
vmalloc range, so that no PGD entry ever needs syncing between page tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mmintro.arch.x86 import (
    __PAGE_KERNEL,
    __PAGE_KERNEL_LARGE,
    __PAGE_KERNEL_LARGE_EXEC,
    _KERNPG_TABLE,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_TABLE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PGDIR_SHIFT,
    PMD_SHIFT,
    PTE_PFN_MASK,
    PUD_SHIFT,
    VMALLOC_SIZE_TB_L4,
)
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel.physmem import PhysMem
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

_T = get_types()

PMD_SIZE = 1 << PMD_SHIFT
PUD_SIZE = 1 << PUD_SHIFT
SHIFTS = [PGDIR_SHIFT, PUD_SHIFT, PMD_SHIFT, 12]
PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G = 1, 2, 3
PTRS_PER_TABLE = 512
# include/linux/gfp.h: GFP_PGTABLE_KERNEL = GFP_KERNEL | __GFP_ZERO; pagetable_alloc() adds
# __GFP_COMP and the p?d_alloc_one() helpers clear __GFP_HIGHMEM.
GFP_PGTABLE_KERNEL = G.GFP_KERNEL | G.__GFP_ZERO
PGTY_TABLE = _T.const("PGTY_table") << 24
PT_KERNEL = _T.const("PT_kernel")


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

    def populate(self, table: int, index: int, nid: int, table_prot: int = _PAGE_TABLE) -> tuple[int, bool]:
        """pud_alloc() / pmd_alloc() / pte_alloc_kernel() on entry ``index`` of ``table``: the
        next-level table (physical) and whether it was allocated now (p?d_populate with
        ``_PAGE_TABLE``, as x86's pud_populate/pmd_populate_kernel write it)."""
        e = self.entry(table, index)
        if e & _PAGE_PRESENT:
            if e & _PAGE_PSE:
                raise ValueError("mapping over a large page")
            return e & PTE_PFN_MASK, False
        return self._next(table, index, nid, table_prot), True

    def lookup_address(self, vaddr: int) -> tuple[int, int, int] | None:
        """arch/x86/mm/pat/set_memory.c lookup_address(): (entry, its physical address, level)
        of the leaf mapping ``vaddr``, or None where the walk finds no present entry."""
        table = self.pgd
        for depth, level in ((0, None), (1, PG_LEVEL_1G), (2, PG_LEVEL_2M), (3, PG_LEVEL_4K)):
            at = table + 8 * _idx(vaddr, depth)
            e = self.mem.read_u64(at)
            if not e & _PAGE_PRESENT:
                return None
            if level is not None and (level == PG_LEVEL_4K or e & _PAGE_PSE):
                return e, at, level
            table = e & PTE_PFN_MASK
        return None

    def virt_to_phys(self, vaddr: int) -> int:
        """slow_virt_to_phys(): the physical address behind any mapped kernel address."""
        hit = self.lookup_address(vaddr)
        if hit is None:
            raise ValueError(f"page tables: {vaddr:#x} is not mapped")
        e, _at, level = hit
        size = {PG_LEVEL_4K: PAGE_SIZE, PG_LEVEL_2M: PMD_SIZE, PG_LEVEL_1G: PUD_SIZE}[level]
        return (e & PTE_PFN_MASK & ~(size - 1)) | (vaddr & (size - 1))

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
    rup = lambda x, a: -(-x // a) * a
    rdown = lambda x, a: x // a * a
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


# -- init_mem_mapping(): the direct map as arch/x86/mm/init.c and init_64.c build it ------------
ISA_END_ADDRESS = 0x100000
PTRS = 512
# (module-level names: inside a class body __PAGE_* would be name-mangled)
PROT_4K, PROT_LARGE = __PAGE_KERNEL, __PAGE_KERNEL_LARGE


def split_mem_range_masked(
    start: int, end: int, page_size_mask: int, is_memory: Callable[[int, int], bool]
) -> list[tuple[int, int, int]]:
    """split_mem_range(): [start, end) as (start, end, page_size_mask) ranges -- 4 KiB head,
    2 MiB up to the first 1 GiB boundary, 1 GiB, 2 MiB, 4 KiB tail -- then
    adjust_range_page_size_mask() (a range whose whole 2 MiB / 1 GiB is RAM may use the larger
    page) and the merge of neighbours with the same mask."""
    m2, m1g = 1 << PG_LEVEL_2M, 1 << PG_LEVEL_1G
    out = []
    for s, e, lv in split_mem_range(start, end):
        mask = {PG_LEVEL_4K: 0, PG_LEVEL_2M: page_size_mask & m2, PG_LEVEL_1G: page_size_mask & (m2 | m1g)}[lv]
        out.append([s, e, mask])
    for r in out:
        if page_size_mask & m2 and not r[2] & m2:
            if is_memory(r[0] // PMD_SIZE * PMD_SIZE, -(-r[1] // PMD_SIZE) * PMD_SIZE):
                r[2] |= m2
        if page_size_mask & m1g and not r[2] & m1g:
            if is_memory(r[0] // PUD_SIZE * PUD_SIZE, -(-r[1] // PUD_SIZE) * PUD_SIZE):
                r[2] |= m1g
    merged: list[list[int]] = []
    for r in out:
        if merged and merged[-1][1] == r[0] and merged[-1][2] == r[2]:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [(a, b, c) for a, b, c in merged]


class DirectMapper:
    """kernel_physical_mapping_init() for the boot's direct map: phys_pud_init(),
    phys_pmd_init() and phys_pte_init(), which map what is not mapped yet, clear the entries
    of a table past the range where e820 has nothing, and -- before after_bootmem -- count an
    entry that is already there again (``pages++`` on reuse), so the DirectMap counters can
    exceed RAM, as real /proc/meminfo shows."""

    def __init__(
        self,
        pt: PageTables,
        page_offset: int,
        e820_mapped_any: Callable[[int, int], bool] | None,
        alloc_table: Callable[[], int],
        after_bootmem: bool = False,
    ) -> None:
        self.pt, self.page_offset, self.mapped_any, self.alloc_table = pt, page_offset, e820_mapped_any, alloc_table
        # after mem_init() (memory hotplug, memremap_pages): nothing past the range is cleared
        # (``e820_mapped_any`` is not asked, may be None) and an entry already there is not
        # counted again
        self.after_bootmem = after_bootmem
        self.count = pt.direct_pages_count

    def _table(self, table: int, index: int) -> int:
        """The next-level table under ``table[index]`` (allocated and linked when absent)."""
        e = self.pt.entry(table, index)
        if e & _PAGE_PRESENT:
            return e & PTE_PFN_MASK
        t = self.alloc_table()
        self.pt.table_pages.append(t)
        self.pt.set_entry(table, index, t | _KERNPG_TABLE)
        return t

    def kernel_physical_mapping_init(self, start: int, end: int, mask: int) -> None:
        paddr = start
        while paddr < end:  # phys_p4d_init: one PUD table per 512 GiB
            vaddr = self.page_offset + paddr
            pud = self._table(self.pt.pgd, _idx(vaddr, 0))
            nxt = (paddr & ~((1 << PGDIR_SHIFT) - 1)) + (1 << PGDIR_SHIFT)
            self.phys_pud_init(pud, paddr, min(end, nxt), mask)
            paddr = nxt

    # phys_pud_init(), phys_pmd_init() and phys_pte_init() walk one table the same way; the
    # level decides the page size, whether a leaf may be large and what lies below.
    _LEVELS = {PG_LEVEL_1G: (1, PUD_SIZE), PG_LEVEL_2M: (2, PMD_SIZE), PG_LEVEL_4K: (3, PAGE_SIZE)}

    def phys_pud_init(self, table: int, paddr: int, paddr_end: int, mask: int) -> None:
        self._phys_init(PG_LEVEL_1G, table, paddr, paddr_end, mask)

    def phys_pmd_init(self, table: int, paddr: int, paddr_end: int, mask: int) -> None:
        self._phys_init(PG_LEVEL_2M, table, paddr, paddr_end, mask)

    def phys_pte_init(self, table: int, paddr: int, paddr_end: int) -> None:
        self._phys_init(PG_LEVEL_4K, table, paddr, paddr_end, 0)

    def _phys_init(self, level: int, table: int, paddr: int, paddr_end: int, mask: int) -> None:
        depth, size = self._LEVELS[level]
        for i in range(_idx(self.page_offset + paddr, depth), PTRS):
            nxt = (paddr & ~(size - 1)) + size
            if paddr >= paddr_end:  # past the range: cleared where e820 has nothing (at boot)
                if not self.after_bootmem and not self.mapped_any(paddr & ~(size - 1), nxt):
                    self.pt.set_entry(table, i, 0)
            elif level == PG_LEVEL_4K:
                # "We will re-use the existing mapping": counted again before boot ends
                if not self.pt.entry(table, i):
                    self.pt.set_entry(table, i, (paddr & ~(size - 1)) | PROT_4K)
                    self.count[level] += 1
                else:
                    self.count[level] += not self.after_bootmem
            else:
                e = self.pt.entry(table, i)
                if e & _PAGE_PRESENT and not e & _PAGE_PSE:  # a table below: walk it
                    self._phys_init(level - 1, e & PTE_PFN_MASK, paddr, paddr_end, mask)
                elif e & _PAGE_PRESENT:
                    if not mask & (1 << level):
                        raise ValueError(f"splitting a {size >> 20} MiB direct-map page at boot is not modelled")
                    self.count[level] += not self.after_bootmem  # the existing leaf, counted again
                elif mask & (1 << level):
                    self.count[level] += 1
                    self.pt.set_entry(table, i, (paddr & ~(size - 1)) | PROT_LARGE)
                else:
                    below = self.alloc_table()
                    self.pt.table_pages.append(below)
                    self._phys_init(level - 1, below, paddr, paddr_end, mask)
                    self.pt.set_entry(table, i, below | _KERNPG_TABLE)
            paddr = nxt


def write_direct_pages_count(k: Kernel) -> None:
    """direct_pages_count[] as arch_report_meminfo()'s DirectMap lines read it, from the page
    tables' books (after the boot's mapping, a split, or memory added at run time)."""
    for level, n in k.pt.direct_pages_count.items():
        k.kmem.write_u64(k.sym("direct_pages_count") + 8 * level, n)


def init_direct_map(k: Kernel, mapper: DirectMapper, page_size_mask: int) -> None:
    """init_mem_mapping(): the ISA range always, then memory_map_top_down(ISA_END_ADDRESS,
    max_pfn): from a free 2 MiB near the top of RAM downwards, in steps that grow by
    2^(PMD_SHIFT - PAGE_SHIFT - 1) once as much RAM as a step is mapped, each step mapping
    the memblock memory it meets (init_range_memory_mapping -> init_memory_mapping)."""
    is_memory = k.memblock.is_memory

    def init_memory_mapping(start: int, end: int) -> None:
        for s, e, mask in split_mem_range_masked(start, end, page_size_mask, is_memory):
            mapper.kernel_physical_mapping_init(s, e, mask)

    def init_range_memory_mapping(r_start: int, r_end: int) -> int:
        mapped = 0
        for r in k.memblock.memory:  # for_each_mem_pfn_range
            start = min(max(-(-r.base // PAGE_SIZE) * PAGE_SIZE, r_start), r_end)
            end = min(max(r.end // PAGE_SIZE * PAGE_SIZE, r_start), r_end)
            if start < end:
                init_memory_mapping(start, end)
                mapped += end - start
        return mapped

    init_memory_mapping(0, ISA_END_ADDRESS)
    map_start, map_end = ISA_END_ADDRESS, k.max_pfn << PAGE_SHIFT
    addr = k.memblock.alloc(PMD_SIZE, PMD_SIZE, limit=map_end, min_addr=map_start)  # memblock_phys_alloc_range
    k.memblock.free(addr, PMD_SIZE)
    real_end = addr + PMD_SIZE
    step_size, last_start, mapped = PMD_SIZE, real_end, 0
    while last_start > map_start:
        start = max(map_start, (last_start - 1) // step_size * step_size) if last_start > step_size else map_start
        mapped += init_range_memory_mapping(start, last_start)
        last_start = start
        if mapped >= step_size:
            step_size <<= PMD_SHIFT - PAGE_SHIFT - 1  # get_new_step_size()
    if real_end < map_end:
        init_range_memory_mapping(real_end, map_end)


def map_kernel_image(
    pt: PageTables,
    level3_kernel_pgt: int,
    level2_kernel_pgt: int,
    start_kernel_map: int,
    phys_base: int,
    image_start: int,
    image_end: int,
) -> None:
    """head_64.S: init_top_pgt[511] -> level3_kernel_pgt[510] -> level2_kernel_pgt, whose 2 MiB
    entries map the image; cleanup_highmap() leaves only [_text, _end) mapped."""
    pt.set_entry(pt.pgd, _idx(start_kernel_map, 0), level3_kernel_pgt | _PAGE_TABLE)
    pt.set_entry(level3_kernel_pgt, _idx(start_kernel_map, 1), level2_kernel_pgt | _KERNPG_TABLE)
    for p in range(image_start // PMD_SIZE * PMD_SIZE, image_end, PMD_SIZE):  # physical
        v = start_kernel_map + p - phys_base
        pt.set_entry(level2_kernel_pgt, _idx(v, 2), p | __PAGE_KERNEL_LARGE_EXEC)


# -- init_mm's page tables after boot -----------------------------------------------------
class PgtableAllocError(MemoryError):
    """pagetable_alloc() found no page: the caller's -ENOMEM."""


def pagetable_alloc_kernel(k: Kernel) -> int:
    """__pte/__pmd/__pud_alloc_one() for init_mm: pagetable_alloc(GFP_PGTABLE_KERNEL &
    ~__GFP_HIGHMEM, 0), __pagetable_ctor() and ptdesc_set_kernel(); returns the page's
    physical address."""
    pfn = k.alloc_pages((GFP_PGTABLE_KERNEL | G.__GFP_COMP) & ~G.__GFP_HIGHMEM, 0)
    if pfn is None:
        raise PgtableAllocError("pagetable_alloc: out of memory")
    page = k.pfn_to_page(pfn)
    km = k.kmem
    # __pagetable_ctor(): __SetPageTable() stores PGTY_table << 24 over the untyped
    # UINT_MAX, and NR_PAGETABLE counts the page on its node (memdesc_nid()).
    km.set(page, "ptdesc", "__page_type", PGTY_TABLE)
    nid = km.get(page, "page", "flags") >> kc.NODES_PGOFF
    k.mod_node_page_state(nid, "NR_PAGETABLE", 1)
    # ptdesc_set_kernel(): set_bit(PT_kernel, &ptdesc->pt_flags.f).
    km.set(page, "page", "flags", km.get(page, "page", "flags") | 1 << PT_KERNEL)
    return pfn << PAGE_SHIFT


def mm_inc_nr_tables(k: Kernel) -> None:
    """mm_inc_nr_puds()/mm_inc_nr_pmds() on init_mm: pgtables_bytes += PTRS_PER_P?D * 8, as
    __pud_alloc()/__pmd_alloc() do when they populate a new table (__pte_alloc_kernel() does
    not count)."""
    mm = k.sym("init_mm")
    k.kmem.set(mm, "mm_struct", "pgtables_bytes", k.kmem.get(mm, "mm_struct", "pgtables_bytes") + PTRS_PER_TABLE * 8)


def preallocate_vmalloc_pages(k: Kernel) -> int:
    """arch/x86/mm/init_64.c: for every PGD slot of [VMALLOC_START, VMEMORY_END] (= VMALLOC_END
    without KMSAN), p4d_alloc() (folded on 4-level) then pud_alloc(), so the top hardware
    level never changes again.  Returns the number of PUD pages allocated."""
    end = k.vmalloc_base + (VMALLOC_SIZE_TB_L4 << 40) - 1
    addr = k.vmalloc_base
    n = 0
    while addr <= end:
        _pud, new = k.pt.populate(k.pt.pgd, _idx(addr, 0), k.numa_node_id())
        if new:
            mm_inc_nr_tables(k)
            n += 1
        addr = (addr + (1 << PGDIR_SHIFT)) & ~((1 << PGDIR_SHIFT) - 1)
    return n


def mem_init(k: Kernel) -> None:
    """arch/x86/mm/init_64.c mem_init() after memblock_free_all(): after_bootmem = 1 (page
    tables now come from the page allocator), then preallocate_vmalloc_pages()."""
    k.after_bootmem = True
    preallocate_vmalloc_pages(k)


def pagetable_dtor_free(k: Kernel, phys: int) -> None:
    """pagetable_dtor_free() of an init_mm table: pagetable_dtor() (__ClearPageTable,
    NR_PAGETABLE - 1; kernel tables have no split lock) and pagetable_free(), which clears
    PT_kernel and frees the page (the kernel may defer that to a work item; here it is
    immediate)."""
    pfn = phys >> PAGE_SHIFT
    page = k.pfn_to_page(pfn)
    km = k.kmem
    flags = km.get(page, "page", "flags")
    km.set(page, "ptdesc", "__page_type", 0xFFFFFFFF)
    k.mod_node_page_state(flags >> kc.NODES_PGOFF, "NR_PAGETABLE", -1)
    km.set(page, "page", "flags", flags & ~(1 << PT_KERNEL))
    k.free_pages(pfn, 0)


# -- freeing what the boot no longer needs --------------------------------------------------------
def free_init_pages(k: Kernel, what: str, begin: int, end: int, image: bool = True) -> int:
    """arch/x86/mm/init.c free_init_pages() on the physical range [begin, end), addressed
    through the image's high mapping (``image``) or the direct map (the initrd): the range is
    made NX and RW (set_memory_nx/rw, which may split large pages: set_memory.py), then
    free_reserved_area() with POISON_FREE_INITMEM."""
    from mmintro.kernel import set_memory
    from mmintro.kernel.page_alloc import POISON_FREE_INITMEM, free_reserved_area

    if begin >= end:
        return 0
    va = k.image.virt(begin) if image else k.phys_to_virt(begin)
    set_memory.set_memory_nx(k, va, va + end - begin)
    set_memory.set_memory_rw(k, va, va + end - begin)
    return free_reserved_area(k, begin, end, POISON_FREE_INITMEM, what)


def alternative_instructions(k: Kernel) -> None:
    """arch/x86/kernel/alternative.c alternative_instructions() (from arch_cpu_finalize_init):
    a kernel booted SMP never needs its UP lock-prefix patch sites again, so .smp_locks is
    freed ("Freeing SMP alternatives memory").  Only that freeing is modelled."""
    r = k.image.layout.smp_locks
    if r is not None and k.config.cpus > 1:
        free_init_pages(k, "SMP alternatives", k.image.start + r[0], k.image.start + r[1])


def free_initmem(k: Kernel) -> None:
    """arch/x86/mm/init.c free_initmem() (kernel_init, after every initcall):
    mem_encrypt_free_decrypted_mem() frees the unused part of .bss..decrypted, then
    free_kernel_image_pages() frees __init_begin..__init_end (.init.text, .init.data and the
    per-CPU template, which setup_per_cpu_areas copied into every CPU's unit)."""
    r = k.image.layout.bss_decrypted_unused
    if r is not None:
        free_init_pages(k, "unused decrypted", k.image.start + r[0], k.image.start + r[1])
    free_init_pages(k, "unused kernel image (initmem)", k.pa(k.sym("__init_begin")), k.image.init_end)


def mark_rodata_ro(k: Kernel) -> None:
    """arch/x86/mm/init_64.c mark_rodata_ro() (kernel_init -> mark_readonly): _text up to
    __end_rodata_hpage_align is write-protected, then the gaps the linker left between
    .text and .rodata and between .rodata and .data are freed."""
    from mmintro.kernel import set_memory

    lay, start = k.image.layout, k.image.start
    k.printk(6, f"Write protecting the kernel read-only data: {lay.end_rodata_hpage_align >> 10}k")
    text = k.image.virt(start)
    set_memory.set_memory_ro(k, text, text + lay.end_rodata_hpage_align)
    # rodata, data, bss and brk not executable, up to the PMD the brk ends in
    all_end = text + -(-lay.brk_end // (2 << 20)) * (2 << 20)
    set_memory.set_memory_nx(k, text + -(-lay.etext // PAGE_SIZE) * PAGE_SIZE, all_end)
    text_end = start + -(-lay.etext // PAGE_SIZE) * PAGE_SIZE  # PFN_ALIGN(_etext)
    rodata_end = start + -(-lay.end_rodata // PAGE_SIZE) * PAGE_SIZE
    free_init_pages(k, "unused kernel image (text/rodata gap)", text_end, start + lay.start_rodata)
    free_init_pages(k, "unused kernel image (rodata/data gap)", rodata_end, start + lay.sdata)


def free_initrd_mem(k: Kernel) -> None:
    """init/initramfs.c populate_rootfs() (rootfs_initcall) unpacks the initrd, then x86's
    free_initrd_mem() frees it: free_init_pages("initrd", start, PAGE_ALIGN(end))."""
    if k.initrd_range is not None:
        start, size = k.initrd_range
        free_init_pages(k, "initrd", start, start + -(-size // PAGE_SIZE) * PAGE_SIZE, image=False)
