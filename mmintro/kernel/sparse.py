"""SPARSEMEM_VMEMMAP (mm/sparse.c, mm/sparse-vmemmap.c).

mem_section is a two-level array (SPARSEMEM_EXTREME): ``mem_section`` points to
NR_SECTION_ROOTS root pointers, each root page holds SECTIONS_PER_ROOT ``struct
mem_section``.  Each present section records its node early, then its encoded memory map
(``vmemmap - section_start_pfn`` as a struct page pointer, i.e. vmemmap itself) with the
SECTION_* state bits, and its ``mem_section_usage`` (subsection map + pageblock flags).
A node's memory maps are one PMD-aligned memblock buffer (sparse_buffer_init), mapped
into the vmemmap with 2 MiB pages.

Each section's memory map is stored by :func:`populate_section_memmap` as a
:class:`~mmintro.kernel.memmap_store.SectionMemmap`: runs of identical struct pages plus
exceptions until the simulator writes to it in bulk, then a numpy array (``k.compact_memmap``
False: an array from the start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import MAX_PHYSMEM_BITS, PAGE_SHIFT, PAGE_SIZE, SECTION_SIZE_BITS
from mmintro.kernel.init_64 import PG_LEVEL_2M, PMD_SIZE
from mmintro.kernel.memmap_store import PAGE_WORDS, CompactWords32, CompactWords64, SectionMemmap

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


def populate_section_memmap(k: Kernel, nr: int, phys: int, nid: int = 0) -> SectionMemmap:
    """Give section ``nr`` a memory map backed by the physical memory at ``phys``
    (PAGES_PER_SECTION struct pages, 2 MiB, PMD-aligned): __populate_section_memmap() and
    vmemmap_populate(), the section's struct pages mapped at ``vmemmap + pfn * sizeof(struct
    page)`` with one 2 MiB leaf on node ``nid``.

    The struct pages start zeroed; the caller initialises them (memmap_init for boot memory,
    memmap_init_zone_device for ZONE_DEVICE) through ``k.memmap_words[nr]``,
    :func:`mmintro.kernel.mm_init.memmap_update` or ``SectionMemmap.set_runs``.  Records
    ``k.section_memmap[nr]`` (the physical address), ``k.memmap_store[nr]`` (the storage,
    returned) and ``k.memmap_words[nr]``; the caller sets mem_section's ``section_mem_map``
    and usage.  The memory at ``phys`` must not have been written (it becomes the section's
    lazy PhysMem region)."""
    if k.struct_page_size != PAGE_WORDS * 8:
        raise AssertionError(f"struct page is {k.struct_page_size} bytes, the word index assumes 64")
    map_size = PAGES_PER_SECTION * k.struct_page_size
    if phys % PMD_SIZE:
        raise ValueError(f"section {nr}'s memory map at {phys:#x} is not 2 MiB aligned")
    if nr in k.memmap_store:
        raise ValueError(f"section {nr} already has a memory map")
    base_pfn = section_nr_to_pfn(nr)
    store = SectionMemmap(nr, PAGES_PER_SECTION, k.pfn_to_page(base_pfn), lambda s: _materialized(k, s))
    k.mem.region(phys, map_size, lazy=store)
    k.memmap_store[nr] = store
    k.section_memmap[nr] = phys
    # word base + pfn * 8 of the section's words is pfn's struct page
    k.memmap_words[nr] = (CompactWords64(store), CompactWords32(store), -base_pfn * PAGE_WORDS, None)
    k.pt.map(k.pfn_to_page(base_pfn), phys, PG_LEVEL_2M, k.x86.PAGE_KERNEL_LARGE, nid)
    if not k.compact_memmap:
        store.materialize()
    return store


def _materialized(k: Kernel, store: SectionMemmap) -> None:
    """A section became an array: its words are memoryviews from now on."""
    k.memmap_words[store.nr] = (store.mv64, store.mv32, -section_nr_to_pfn(store.nr) * PAGE_WORDS, store.arr)


def memmap_array(k: Kernel, nr: int):
    """Section ``nr``'s struct pages as a uint8 numpy array (made from its runs if needed)."""
    return k.memmap_store[nr].materialize()


def sparse_init(k: Kernel) -> None:
    T = k.T
    ms_size = T.sizeof("struct mem_section")
    sections_per_root = PAGE_SIZE // ms_size
    nr_roots = NR_MEM_SECTIONS // sections_per_root
    k.nr_section_roots = nr_roots
    usage_size = T.sizeof("struct mem_section_usage")
    pageblock_bits = k.pageblock_nr_pages and (PAGES_PER_SECTION // k.pageblock_nr_pages) * k.NR_PAGEBLOCK_BITS
    usemap_size = -(-pageblock_bits // 64) * 8
    k.usemap_offset = usage_size  # pageblock_flags[] is the flexible array at the end
    mem_section_usage_size = k.mem_section_usage_size = usage_size + usemap_size  # memory hotplug's too

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
    k.section_addr = {
        nr: root_pages[nr // sections_per_root] + (nr % sections_per_root) * ms_size for nr in k.present_sections
    }

    # sparse_init_nid(): usage maps and the memory map buffer, per node.
    bits = {n: 1 << T.const(f"SECTION_{n}_BIT") for n in ("MARKED_PRESENT", "HAS_MEM_MAP", "IS_ONLINE", "IS_EARLY")}
    k.section_memmap: dict[int, int] = {}  # section nr -> phys of its 2 MiB memory map
    ram = sorted((r.base, r.end) for r in k.memblock.memory)
    sub_size = PAGES_PER_SUBSECTION << PAGE_SHIFT
    for nid in range(k.config.nodes):
        secs = [nr for nr, n in k.present_sections.items() if n == nid]
        if not secs:
            continue
        usage_phys = k.memblock.alloc(mem_section_usage_size * len(secs), 64, nid=nid)
        map_size = PAGES_PER_SECTION * k.struct_page_size
        buf = k.memblock.alloc(map_size * len(secs), PMD_SIZE, nid=nid)
        for i, nr in enumerate(secs):
            usage = k.phys_to_virt(usage_phys + i * mem_section_usage_size)
            k.section_usage[nr] = usage
            populate_section_memmap(k, nr, buf + i * map_size, nid)
            # subsection_map: the 2 MiB subsections that hold RAM (subsection_map_init).
            sub = 0
            base = section_nr_to_pfn(nr) << PAGE_SHIFT
            for a, b in ram:
                lo, hi = max(a, base), min(b, base + (PAGES_PER_SECTION << PAGE_SHIFT))
                if lo < hi:
                    for j in range((lo - base) // sub_size, (hi - 1 - base) // sub_size + 1):
                        sub |= 1 << j
            k.kmem.write_u64(k.kmem.addr(usage, "mem_section_usage", "subsection_map"), sub)
            sa = k.section_addr[nr]
            encoded = k.vmemmap_base  # sparse_encode_mem_map: mem_map - section_nr_to_pfn(nr)
            flags = bits["MARKED_PRESENT"] | bits["HAS_MEM_MAP"] | bits["IS_EARLY"] | bits["IS_ONLINE"]
            k.kmem.set(sa, "mem_section", "section_mem_map", encoded | flags)
            k.kmem.set(sa, "mem_section", "usage", usage)
    k.kmem.write_u64(k.sym("__highest_present_section_nr"), max(k.present_sections))
