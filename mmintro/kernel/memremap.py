"""ZONE_DEVICE: persistent memory mapped with memremap_pages() (mm/memremap.c, mm/mm_init.c).

Legacy persistent memory is an e820 range of type 12 (the firmware's, or ``memmap=nn!ss``): not
RAM, so memblock and the zones never see it; e820__reserve_resources_late() puts it in
/proc/iomem as "Persistent Memory (legacy)".  At device_initcall time x86's
register_e820_pmem() makes the "e820_pmem" platform device, nd_e820 turns every such range into
an nvdimm region and namespace (namespace0.0, 1.0, ...), and nd_pmem's pmem_attach_disk()
claims the namespace's range (a child resource named after it) and, because an e820 region may
map pages (ND_REGION_PAGEMAP) and the namespace is raw, gives it struct pages with
devm_memremap_pages() of type MEMORY_DEVICE_FS_DAX:

* the dev_pagemap: its one range, type, a percpu_ref that starts in percpu mode (count
  PERCPU_COUNT_BIAS + 1) and then holds one reference per page (percpu_ref_get_many on the
  probing CPU), the teardown completion, the pmem driver's fsdax_pagemap_ops;
* pagemap_range() -> arch_add_memory(): the range in the direct map (init_memory_mapping,
  table pages from the page allocator now, each new entry counted once), and per memory
  section sparse_add_section(): a usage map from kzalloc, the subsection bits, a memory map
  (vmemmap_populate: one 2 MiB block from the buddy allocator on the node, order 9, zeroed)
  unless the section has one, and section_mem_map marked present with a memory map (not
  online, not early: that is what the real dump shows);
* move_pfn_range_to_zone(ZONE_DEVICE): the node's Device zone starts and spans the range (no
  present or managed pages), the node's span grows to hold it;
* memmap_init_zone_device(): every page as __init_single_page() leaves it in zone Device,
  PG_reserved, ``pgmap`` over lru.next and ``zone_device_data`` NULL over lru.prev, refcount 0
  (FS_DAX pages are handed out by the driver), each pageblock MIGRATE_MOVABLE.

Checked against Debian's 6.18 with nd_e820 and nd_pmem loaded (tests/test_memremap.py).  Not
modelled: the pmem_device and nvdimm bus objects the dev_pagemap is embedded in (their types
are the modules'; the dev_pagemap is kzalloc'd by itself and its ``owner`` left NULL), and the
pgmap_array xarray that get_dev_pagemap() looks pfns up in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel.e820 import E820_TYPE_PRAM
from mmintro.kernel.sparse import PAGES_PER_SECTION, PFN_SECTION_SHIFT, SUBSECTIONS_PER_SECTION, section_nr_to_pfn

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

SECTION_SIZE = PAGES_PER_SECTION << PAGE_SHIFT
PAGES_PER_SUBSECTION = PAGES_PER_SECTION // SUBSECTIONS_PER_SECTION
SUBSECTION_SIZE = PAGES_PER_SUBSECTION << PAGE_SHIFT
PERCPU_COUNT_BIAS = 1 << 63  # lib/percpu-refcount.c, BITS_PER_LONG - 1
ZONE_DEVICE_NAME = "Device"


class MemremapError(ValueError):
    """A persistent-memory range the kernel would not map (one line)."""


def place_text(k: Kernel) -> None:
    """What the pmem driver and mm/memremap.c link into the image: dev_pagemap_percpu_release()
    (the pgmap reference's release), pmem_pagemap_memory_failure() and the driver's
    ``fsdax_pagemap_ops`` that points at it (nd_pmem built in)."""
    img = k.image
    img.func("dev_pagemap_percpu_release", 0x20)
    failure = img.func("pmem_pagemap_memory_failure", 0x90)
    t = k.T.lookup("struct dev_pagemap_ops")
    ops = img.reserve("rodata", t.size, 8)
    img.add("fsdax_pagemap_ops", ops, t.size, "object", t, section="rodata")
    k.kmem.set(ops, "dev_pagemap_ops", "memory_failure", failure)


def pmem_ranges(k: Kernel) -> list[tuple[int, int]]:
    """The e820 table's legacy persistent memory, [start, end) each, in address order."""
    return sorted((e.addr, e.end) for e in k.e820 if e.type == E820_TYPE_PRAM)


def check_pmem_ranges(ranges: list[tuple[int, int]]) -> None:
    """memremap_pages() maps whole subsections (2 MiB): a range that is not aligned to them
    is refused (the kernel fails the namespace's probe)."""
    for start, end in ranges:
        if start % SUBSECTION_SIZE or end % SUBSECTION_SIZE:
            raise MemremapError(
                f"persistent memory [{start:#x}-{end - 1:#x}] is not 2 MiB aligned "
                "(memremap_pages maps whole subsections)"
            )


def target_node(k: Kernel, paddr: int) -> int:
    """phys_to_target_node(): the node whose range holds ``paddr`` (the machine's own node
    ranges, else the node of the nearest RAM below, else 0)."""
    if k.config.node_ranges is not None:
        for nid, (s, e) in enumerate(k.config.node_ranges):
            if s <= paddr < e:
                return nid
    below = [r for r in k.memblock.memory if r.base <= paddr]
    return max(below, key=lambda r: r.base).nid if below else 0


def e820_pmem_probe(k: Kernel) -> list[int]:
    """register_e820_pmem() + nd_e820 + nd_pmem: every legacy pmem range gets a namespace
    resource and ZONE_DEVICE struct pages.  Returns the dev_pagemaps' addresses."""
    from mmintro.kernel import resource

    ranges = pmem_ranges(k)
    check_pmem_ranges(ranges)
    k.dev_pagemaps = []
    for region, (start, end) in enumerate(ranges):
        resource.request_mem_region(k, start, end - 1, f"namespace{region}.0")
        k.dev_pagemaps.append(memremap_pages(k, start, end, target_node(k, start)))
    return k.dev_pagemaps


def memremap_pages(k: Kernel, start: int, end: int, nid: int) -> int:
    """devm_memremap_pages() of type MEMORY_DEVICE_FS_DAX for [start, end); returns the
    dev_pagemap's address."""
    from mmintro.kernel import slub

    T, km = k.T, k.kmem
    pgmap = slub.kzalloc(k, T.sizeof("struct dev_pagemap"), "GFP_KERNEL", caller="pmem_attach_disk")
    km.set(pgmap, "dev_pagemap", "type", T.const("MEMORY_DEVICE_FS_DAX"))
    km.set(pgmap, "dev_pagemap", "nr_range", 1)
    km.set(pgmap, "dev_pagemap", "range.start", start)
    km.set(pgmap, "dev_pagemap", "range.end", end - 1)
    km.set(pgmap, "dev_pagemap", "ops", k.image.symbols["fsdax_pagemap_ops"].address)
    # init_completion(&pgmap->done): done 0, an empty wait queue
    km.init_list_head(km.addr(pgmap, "dev_pagemap", "done.wait.task_list"))
    # percpu_ref_init(&pgmap->ref, dev_pagemap_percpu_release, 0, GFP_KERNEL): percpu mode
    counter = k.alloc_percpu(8, 8)
    data = slub.kzalloc(k, T.sizeof("struct percpu_ref_data"), "GFP_KERNEL", caller="percpu_ref_init")
    km.set(data, "percpu_ref_data", "count", PERCPU_COUNT_BIAS + 1)
    km.set(data, "percpu_ref_data", "release", k.image.symbols["dev_pagemap_percpu_release"].address)
    km.set(data, "percpu_ref_data", "ref", km.addr(pgmap, "dev_pagemap", "ref"))
    km.set(pgmap, "dev_pagemap", "ref.percpu_count_ptr", counter)
    km.set(pgmap, "dev_pagemap", "ref.data", data)
    arch_add_memory(k, nid, start, end)
    move_pfn_range_to_zone_device(k, nid, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    memmap_init_zone_device(k, nid, start >> PAGE_SHIFT, end >> PAGE_SHIFT, pgmap)
    # percpu_ref_get_many(&pgmap->ref, pfn_len(pgmap, range_id)): on the probing CPU
    mine = k.per_cpu_ptr(counter, k.current_cpu)
    k.kmem.write_u64(mine, k.kmem.mem.read_u64(k.pa(mine)) + ((end - start) >> PAGE_SHIFT))
    return pgmap


def arch_add_memory(k: Kernel, nid: int, start: int, end: int) -> None:
    """arch/x86/mm/init_64.c arch_add_memory(): init_memory_mapping() of the range, then
    add_pages() -> __add_pages() -> sparse_add_section() for each section it touches."""
    from mmintro.kernel.init_64 import (
        PG_LEVEL_1G,
        PG_LEVEL_2M,
        DirectMapper,
        split_mem_range_masked,
        write_direct_pages_count,
    )

    def alloc_low_page() -> int:  # after_bootmem: __get_free_pages(GFP_ATOMIC | __GFP_ZERO, 0)
        pfn = k.alloc_pages(G.GFP_ATOMIC | G.__GFP_ZERO, 0)
        if pfn is None:
            raise MemoryError("arch_add_memory: no page for the direct map's tables")
        return pfn << PAGE_SHIFT

    # (after boot nothing past the range is cleared, so no e820 check is asked)
    mapper = DirectMapper(k.pt, k.page_offset_base, None, alloc_low_page, after_bootmem=True)
    mask = (1 << PG_LEVEL_2M) | (1 << PG_LEVEL_1G)
    # (after boot, split_mem_range() does not widen pages over RAM: adjust_range_page_size_mask
    # runs only before after_bootmem)
    for s, e, m in split_mem_range_masked(start, end, mask, lambda a, b: False):
        mapper.kernel_physical_mapping_init(s, e, m)
    write_direct_pages_count(k)
    pfn, end_pfn = start >> PAGE_SHIFT, end >> PAGE_SHIFT
    while pfn < end_pfn:
        nr = pfn >> PFN_SECTION_SHIFT
        hi = min(end_pfn, section_nr_to_pfn(nr + 1))
        sparse_add_section(k, nid, nr, pfn, hi)
        pfn = hi


def sparse_add_section(k: Kernel, nid: int, nr: int, pfn: int, end_pfn: int) -> None:
    """mm/sparse.c sparse_add_section() -> section_activate(): the section's usage map
    (kzalloc'd when it has none), its subsection bits, a memory map when it has none
    (populate_section_memmap: vmemmap_populate's 2 MiB from the buddy allocator), then
    section_mark_present() and sparse_init_one_section() with SECTION_HAS_MEM_MAP."""
    from mmintro.kernel import slub, sparse

    T, km = k.T, k.kmem
    if nr not in k.section_addr:  # sparse_index_init(): the root, kzalloc'd when it has none
        ms_size = T.sizeof("struct mem_section")
        per_root = (1 << PAGE_SHIFT) // ms_size
        slot = k.mem_section_roots + 8 * (nr // per_root)
        root = km.mem.read_u64(k.pa(slot))
        if not root:
            root = slub.kzalloc(k, per_root * ms_size, "GFP_KERNEL", caller="sparse_index_alloc")
            km.write_u64(slot, root)
        k.section_addr[nr] = root + (nr % per_root) * ms_size
    if nr not in k.section_usage:
        k.section_usage[nr] = slub.kzalloc(k, k.mem_section_usage_size, "GFP_KERNEL", caller="section_activate")
    usage = k.section_usage[nr]
    sub_addr = km.addr(usage, "mem_section_usage", "subsection_map")
    bits = k.kmem.mem.read_u64(k.pa(sub_addr))
    base = section_nr_to_pfn(nr)
    for j in range((pfn - base) // PAGES_PER_SUBSECTION, -(-(end_pfn - base) // PAGES_PER_SUBSECTION)):
        bits |= 1 << j
    k.kmem.write_u64(sub_addr, bits)
    sa = k.section_addr[nr]
    if nr not in k.memmap_store:
        order = (2 << 20).bit_length() - 1 - PAGE_SHIFT  # get_order(PMD_SIZE)
        block = k.alloc_pages(G.GFP_KERNEL | G.__GFP_ZERO | G.__GFP_RETRY_MAYFAIL | G.__GFP_NOWARN, order, nid=nid)
        if block is None:
            raise MemoryError(f"vmemmap_populate: no 2 MiB block on node {nid} for section {nr}'s memory map")
        k.mem.discard(block << PAGE_SHIFT, 2 << 20)  # zeroed (__GFP_ZERO): reads as zeros again
        sparse.populate_section_memmap(k, nr, block << PAGE_SHIFT, nid)
        # sparse_encode_mem_map(): the section's first struct page less its first pfn
        flags = (1 << T.const("SECTION_MARKED_PRESENT_BIT")) | (1 << T.const("SECTION_HAS_MEM_MAP_BIT"))
        km.set(sa, "mem_section", "section_mem_map", k.vmemmap_base | flags)
    km.set(sa, "mem_section", "usage", usage)


def move_pfn_range_to_zone_device(k: Kernel, nid: int, start_pfn: int, end_pfn: int) -> None:
    """mm/memory_hotplug.c move_pfn_range_to_zone(ZONE_DEVICE): init_currently_empty_zone()
    for the first range, resize_zone_range() and resize_pgdat_range(); memmap_init_range()
    leaves ZONE_DEVICE pages to memmap_init_zone_device()."""
    from mmintro.kernel.mm_init import init_currently_empty_zone

    km = k.kmem
    z = next(z for z in k.zones[nid] if z.name == ZONE_DEVICE_NAME)
    if not z.spanned:
        z.start_pfn, z.spanned = start_pfn, end_pfn - start_pfn
        init_currently_empty_zone(k, z.addr)
    else:
        new_start = min(z.start_pfn, start_pfn)
        z.spanned = max(z.start_pfn + z.spanned, end_pfn) - new_start
        z.start_pfn = new_start
    km.set(z.addr, "zone", "zone_start_pfn", z.start_pfn)
    km.set(z.addr, "zone", "spanned_pages", z.spanned)
    pg = k.pgdat[nid]
    node_start = km.get(pg, "pglist_data", "node_start_pfn")
    node_end = node_start + km.get(pg, "pglist_data", "node_spanned_pages")
    if start_pfn < node_start or end_pfn > node_end:
        node_start, node_end = min(node_start, start_pfn), max(node_end, end_pfn)
        km.set(pg, "pglist_data", "node_start_pfn", node_start)
        km.set(pg, "pglist_data", "node_spanned_pages", node_end - node_start)


def memmap_init_zone_device(k: Kernel, nid: int, start_pfn: int, end_pfn: int, pgmap: int) -> None:
    """mm/mm_init.c memmap_init_zone_device() -> __init_zone_device_page() for each pfn."""
    from mmintro.kernel.mm_init import _init_single_page_flags, memmap_update

    T = k.T
    z = next(z for z in k.zones[nid] if z.name == ZONE_DEVICE_NAME)
    n = end_pfn - start_pfn
    flags = _init_single_page_flags(k, nid, z.idx) | (1 << T.const("PG_reserved"))
    for name, value in (
        ("flags", flags),
        ("lru_next", pgmap),
        ("lru_prev", 0),
        ("page_type", 0xFFFFFFFF),
        ("refcount", 0),
    ):
        memmap_update(k, start_pfn, n, name, "set", value)
    movable = T.const("MIGRATE_MOVABLE")
    order = kc.PAGEBLOCK_ORDER
    first, last = start_pfn >> order, -(-end_pfn >> order)
    if len(k.pageblock_flags) < last:
        k.pageblock_flags.extend(bytes(last - len(k.pageblock_flags)))
    k.pageblock_flags[first:last] = bytes([movable]) * (last - first)
