"""SPARSEMEM_VMEMMAP (mm/sparse.c, mm/sparse-vmemmap.c).

mem_section is a two-level array (SPARSEMEM_EXTREME): ``mem_section`` points to
NR_SECTION_ROOTS root pointers, each root page holds SECTIONS_PER_ROOT ``struct
mem_section``.  Each present section records its node early, then its encoded memory map
(``vmemmap - section_start_pfn`` as a struct page pointer, i.e. vmemmap itself) with the
SECTION_* state bits, and its ``mem_section_usage`` (subsection map + pageblock flags).
A node's memory maps are one PMD-aligned memblock buffer (sparse_buffer_init), mapped
into the vmemmap with 2 MiB pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import MAX_PHYSMEM_BITS, PAGE_SHIFT, PAGE_SIZE, SECTION_SIZE_BITS
from mmintro.kernel.init_64 import PG_LEVEL_2M, PMD_SIZE

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

PFN_SECTION_SHIFT = SECTION_SIZE_BITS - PAGE_SHIFT
PAGES_PER_SECTION = 1 << PFN_SECTION_SHIFT
NR_MEM_SECTIONS = 1 << (MAX_PHYSMEM_BITS - SECTION_SIZE_BITS)
SUBSECTION_SHIFT = 21
PAGES_PER_SUBSECTION = 1 << (SUBSECTION_SHIFT - PAGE_SHIFT)
SUBSECTIONS_PER_SECTION = 1 << (SECTION_SIZE_BITS - SUBSECTION_SHIFT)


def pfn_to_section_nr(pfn: int) -> int:
    return pfn >> PFN_SECTION_SHIFT


def section_nr_to_pfn(nr: int) -> int:
    return nr << PFN_SECTION_SHIFT


def sparse_init(k: "Kernel") -> None:
    T = k.T
    ms_size = T.sizeof("struct mem_section")
    sections_per_root = PAGE_SIZE // ms_size
    nr_roots = NR_MEM_SECTIONS // sections_per_root
    k.nr_section_roots = nr_roots
    usage_size = T.sizeof("struct mem_section_usage")
    pageblock_bits = k.pageblock_nr_pages and (PAGES_PER_SECTION // k.pageblock_nr_pages) * k.NR_PAGEBLOCK_BITS
    usemap_size = -(-pageblock_bits // 64) * 8
    k.usemap_offset = usage_size  # pageblock_flags[] is the flexible array at the end
    mem_section_usage_size = usage_size + usemap_size

    # memblocks_present(): the root pointer array, then a root page per used root.
    roots_phys = k.memblock.alloc(nr_roots * 8, 64)
    k.mem_section_roots = k.phys_to_virt(roots_phys)
    k.kmem.write_u64(k.sym("mem_section"), k.mem_section_roots)

    present: dict[int, int] = {}  # section nr -> nid
    for r in k.memblock.memory:
        for nr in range(pfn_to_section_nr(r.base >> PAGE_SHIFT), pfn_to_section_nr((r.end - 1) >> PAGE_SHIFT) + 1):
            present.setdefault(nr, r.nid)
    k.present_sections = dict(sorted(present.items()))
    root_pages: dict[int, int] = {}
    for nr, nid in k.present_sections.items():
        root = nr // sections_per_root
        if root not in root_pages:
            root_pages[root] = k.phys_to_virt(k.memblock.alloc(PAGE_SIZE, 64, nid=nid))
            k.kmem.write_u64(k.mem_section_roots + 8 * root, root_pages[root])
    k.section_addr = {nr: root_pages[nr // sections_per_root] + (nr % sections_per_root) * ms_size
                      for nr in k.present_sections}

    # sparse_init_nid(): usage maps and the memory map buffer, per node.
    bits = {n: 1 << T.const(f"SECTION_{n}_BIT") for n in ("MARKED_PRESENT", "HAS_MEM_MAP", "IS_ONLINE", "IS_EARLY")}
    k.section_memmap: dict[int, int] = {}  # section nr -> phys of its 2 MiB memory map
    for nid in range(k.config.nodes):
        secs = [nr for nr, n in k.present_sections.items() if n == nid]
        if not secs:
            continue
        usage_phys = k.memblock.alloc(mem_section_usage_size * len(secs), 64, nid=nid)
        map_size = PAGES_PER_SECTION * k.struct_page_size
        buf = k.memblock.alloc(map_size * len(secs), PMD_SIZE, nid=nid)
        arr = k.mem.region(buf, map_size * len(secs))
        k.memmap_buffers.append((buf, secs, arr))
        for i, nr in enumerate(secs):
            usage = k.phys_to_virt(usage_phys + i * mem_section_usage_size)
            k.section_usage[nr] = usage
            k.section_memmap[nr] = buf + i * map_size
            # subsection_map: the 2 MiB subsections that hold RAM (subsection_map_init).
            sub = 0
            base = section_nr_to_pfn(nr)
            for j in range(SUBSECTIONS_PER_SECTION):
                lo = (base + j * PAGES_PER_SUBSECTION) << PAGE_SHIFT
                hi = lo + (PAGES_PER_SUBSECTION << PAGE_SHIFT)
                if any(r.base < hi and lo < r.end for r in k.memblock.memory):
                    sub |= 1 << j
            k.kmem.write_u64(k.kmem.addr(usage, "mem_section_usage", "subsection_map"), sub)
            sa = k.section_addr[nr]
            encoded = k.vmemmap_base  # sparse_encode_mem_map: mem_map - section_nr_to_pfn(nr)
            flags = bits["MARKED_PRESENT"] | bits["HAS_MEM_MAP"] | bits["IS_EARLY"] | bits["IS_ONLINE"]
            k.kmem.set(sa, "mem_section", "section_mem_map", encoded | flags)
            k.kmem.set(sa, "mem_section", "usage", usage)
            # vmemmap_populate(): one 2 MiB leaf per section map.
            k.pt.map(k.vmemmap_base + base * k.struct_page_size, k.section_memmap[nr], PG_LEVEL_2M,
                     k.x86.PAGE_KERNEL_LARGE, nid)
    k.kmem.write_u64(k.sym("__highest_present_section_nr"), max(k.present_sections))
