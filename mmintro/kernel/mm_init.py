"""Zones, nodes and the memory map (mm/mm_init.c: free_area_init, memmap_init).

Every struct page of every present section is initialised as __init_single_page does:
zone and node in the flags word, last_cpupid reset, _refcount 1, _mapcount -1, lru pointing
at itself.  Pages that are not RAM (holes inside a section) are PG_reserved and carry the
zone memmap_init gives them.  Every pageblock starts MIGRATE_MOVABLE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.kernel import config as kc
from mmintro.kernel.sparse import PAGES_PER_SECTION, PFN_SECTION_SHIFT, memmap_array, section_nr_to_pfn

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

ZONE_NAMES = ["DMA", "DMA32", "Normal", "Movable", "Device"]


@dataclass
class ZoneState:
    """The simulator's book of one struct zone.

    The free lists and the per-CPU lists are circular doubly linked lists kept in two dicts,
    ``nxt`` and ``prv``, keyed by pfn; each list's head is a negative sentinel key
    (:func:`mmintro.kernel.page_alloc.free_list_head`, ``pcp_list_head``).  They are written
    into the zone's ``free_area[].free_list[]``, the pagesets' ``lists[]`` and the pages'
    ``lru`` at sync.
    """

    nid: int
    idx: int
    addr: int  # kernel virtual address of the struct zone
    start_pfn: int = 0
    spanned: int = 0
    present: int = 0
    managed: int = 0
    watermark: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    watermark_boost: int = 0
    lowmem_reserve: list[int] = field(default_factory=lambda: [0] * 5)
    nxt: dict[int, int] = field(default_factory=dict)
    prv: dict[int, int] = field(default_factory=dict)
    nr_free: list[int] = field(default_factory=list)
    free_order: dict[int, int] = field(default_factory=dict)  # PageBuddy head pfn -> buddy_order
    free_pages: int = 0  # NR_FREE_PAGES (account_freepages)
    nr_free_highatomic: int = 0
    nr_reserved_highatomic: int = 0
    flags: int = 0  # enum zone_flags bits
    pageset: int = 0  # __percpu pointers
    zonestats: int = 0
    pcp: list = field(default_factory=list)  # per CPU: mmintro.kernel.page_alloc.PerCpuPages
    pcp_batch: int = 1
    pcp_high_min: int = 0
    pcp_high_max: int = 0
    stat_threshold: int = 0
    numa_events: list[int] = field(default_factory=lambda: [0] * 6)
    vm_stat: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.idx]

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned

    @property
    def populated(self) -> bool:
        return self.present > 0


def page_dtype(k: Kernel) -> np.dtype:
    return k.T.dtype(
        "page",
        {
            "flags": "flags.f",
            "lru_next": "lru.next",
            "lru_prev": "lru.prev",
            "mapping": "mapping",
            "index": "__folio_index",
            "private": "private",
            "page_type": "page_type",
            "refcount": "_refcount",
            "memcg_data": "memcg_data",
        },
    )


def section_pages(k: Kernel, nr: int) -> np.ndarray:
    """The struct pages of one present section as a structured numpy view of memory (the
    section becomes an array if it was compact)."""
    return memmap_array(k, nr).view(k.page_dtype)


def page_field(k: Kernel, name: str) -> tuple[int, int | None]:
    """(64-bit word, 32-bit half or None) of struct page member ``name`` of ``k.page_dtype``."""
    dt, off = k.page_dtype.fields[name][:2]
    if dt.itemsize == 8:
        return off // 8, None
    return off // 8, (off % 8) // 4


def memmap_update(k: Kernel, pfn: int, n: int, name: str, op: str, value: int) -> None:
    """Member ``name`` of the struct pages of pfns [pfn, pfn + n): ``op`` "set", "and" or
    "or" with ``value`` -- ``section_pages(k, nr)[a:b][name] op= value`` without making
    compact sections arrays.  Every section of the range must be present."""
    cache = k.__dict__.setdefault("_page_fields", {})
    j, lane = cache.get(name) or cache.setdefault(name, page_field(k, name))
    end = pfn + n
    while pfn < end:
        nr = pfn >> PFN_SECTION_SHIFT
        base = nr << PFN_SECTION_SHIFT
        hi = min(end, base + PAGES_PER_SECTION)
        k.memmap_store[nr].update(pfn - base, hi - base, j, lane, op, value)
        pfn = hi


def init_currently_empty_zone(k: Kernel, za: int) -> None:
    """init_currently_empty_zone() -> zone_init_free_lists(): the zone at ``za`` is initialized
    and every free list (order x migratetype) is empty."""
    T, km = k.T, k.kmem
    km.set(za, "zone", "initialized", 1)
    fa = T.struct("zone").offsetof("free_area")
    fa_size = T.sizeof("struct free_area")
    lh = T.sizeof("struct list_head")
    for o in range(kc.NR_PAGE_ORDERS):
        for mt in range(T.const("MIGRATE_TYPES")):
            km.init_list_head(za + fa + o * fa_size + mt * lh)


def free_area_init(k: Kernel) -> None:
    T = k.T
    k.page_dtype = page_dtype(k)
    zone_size = T.sizeof("struct zone")
    zones_off = T.struct("pglist_data").offsetof("node_zones")
    low, high = arch_zone_limits(k)
    zone_movable_pfn = find_zone_movable_pfns_for_nodes(k, low, high)
    print_zone_ranges(k, low, high, zone_movable_pfn)
    pageset_boot = k.image.symbols["boot_pageset"].address
    zonestats_boot = k.image.symbols["boot_zonestats"].address
    km = k.kmem
    for nid in range(k.config.nodes):
        node_start, node_end = get_pfn_range_for_nid(k, nid)
        sizes = calculate_node_totalpages(k, nid, node_start, node_end, low, high, zone_movable_pfn)
        pg = k.pgdat[nid]
        zs_list = []
        nr_zones = 0
        for idx in range(len(ZONE_NAMES)):
            za = pg + zones_off + idx * zone_size
            z = ZoneState(nid, idx, za)
            z.nr_free = [0] * kc.NR_PAGE_ORDERS
            z.numa_events = [0] * T.const("NR_VM_NUMA_EVENT_ITEMS")
            for o in range(kc.NR_PAGE_ORDERS):
                for mt in range(T.const("MIGRATE_TYPES")):
                    h = -(1 + o * T.const("MIGRATE_TYPES") + mt)  # page_alloc.free_list_head
                    z.nxt[h] = z.prv[h] = h
            z.start_pfn, z.spanned, z.present = sizes[idx]
            if z.present:
                nr_zones = idx + 1
            zs_list.append(z)
            # zone_init_internals()
            km.set(za, "zone", "node", nid)
            km.set(za, "zone", "name", k.image.string(ZONE_NAMES[idx]))
            km.set(za, "zone", "zone_pgdat", pg)
            km.set(za, "zone", "per_cpu_pageset", pageset_boot)
            km.set(za, "zone", "per_cpu_zonestats", zonestats_boot)
            km.set(za, "zone", "pageset_batch", 1)  # BOOT_PAGESET_BATCH
            km.set(za, "zone", "zone_start_pfn", z.start_pfn)
            km.set(za, "zone", "spanned_pages", z.spanned)
            km.set(za, "zone", "present_pages", z.present)
            km.set(za, "zone", "present_early_pages", z.present)
            if z.spanned:  # the free lists exist only for spanned zones
                init_currently_empty_zone(k, za)
        k.zones.append(zs_list)
        km.set(pg, "pglist_data", "nr_zones", nr_zones)
        km.set(pg, "pglist_data", "node_start_pfn", node_start)
        km.set(pg, "pglist_data", "node_spanned_pages", node_end - node_start)
        km.set(pg, "pglist_data", "node_present_pages", sum(z.present for z in zs_list))
        for wq in ("kswapd_wait", "pfmemalloc_wait", "kcompactd_wait"):
            km.init_list_head(km.addr(pg, "pglist_data", f"{wq}.head"))
        lru_off = T.struct("pglist_data").offsetof("__lruvec.lists")
        for i in range(T.const("NR_LRU_LISTS")):
            km.init_list_head(pg + lru_off + 16 * i)
        km.set(pg, "pglist_data", "__lruvec.pgdat", pg)
    build_zonelists(k)
    memmap_init(k)


# -- zone sizes (mm/mm_init.c free_area_init, calculate_node_totalpages) ------------------------
MAX_ORDER_NR_PAGES = 1 << kc.MAX_PAGE_ORDER
MAX_DMA_PFN = (16 << 20) >> PAGE_SHIFT
MAX_DMA32_PFN = (4 << 30) >> PAGE_SHIFT


def mem_pfn_ranges(k: Kernel, nid: int | None = None) -> list[tuple[int, int, int]]:
    """for_each_mem_pfn_range(): (PFN_UP(base), PFN_DOWN(end), nid) of each memblock.memory
    region (of node ``nid``), in address order."""
    out = []
    for r in sorted(k.memblock.memory, key=lambda r: r.base):
        if nid is None or r.nid == nid:
            s, e = -(-r.base >> PAGE_SHIFT), r.end >> PAGE_SHIFT
            if s < e:
                out.append((s, e, r.nid))
    return out


def get_pfn_range_for_nid(k: Kernel, nid: int) -> tuple[int, int]:
    """get_pfn_range_for_nid(): the node's first and last-plus-one pfn (0, 0 when it has none)."""
    ranges = mem_pfn_ranges(k, nid)
    if not ranges:
        return 0, 0
    return min(s for s, _e, _n in ranges), max(e for _s, e, _n in ranges)


def arch_zone_limits(k: Kernel) -> tuple[list[int], list[int]]:
    """free_area_init()'s arch_zone_lowest/highest_possible_pfn[] from x86 zone_sizes_init()'s
    max_zone_pfns (DMA: MAX_DMA_PFN, DMA32: MAX_DMA32_PFN, Normal: max_low_pfn, which is
    max_pfn on x86-64), each zone starting where the one below ended, the first at the start
    of DRAM; ZONE_MOVABLE has no range of its own (0, 0) and ZONE_DEVICE's is empty."""
    nzones = len(ZONE_NAMES)
    movable = ZONE_NAMES.index("Movable")
    max_zone_pfn = [min(MAX_DMA_PFN, k.max_pfn), min(MAX_DMA32_PFN, k.max_pfn), k.max_pfn, 0, 0]
    low, high = [0] * nzones, [0] * nzones
    start = min(r.base for r in k.memblock.memory) >> PAGE_SHIFT  # PHYS_PFN(memblock_start_of_DRAM())
    for zone in range(nzones):
        if zone == movable:
            continue
        end = max(max_zone_pfn[zone], start)
        low[zone], high[zone] = start, end
        start = end
    return low, high


def _parse_core(value: str | None) -> tuple[int, int]:
    """cmdline_parse_core(): (pages, percent) of ``kernelcore=``/``movablecore=``."""
    from mmintro.kernel.cmdline import memparse

    if value is None or value == "mirror":
        return 0, 0
    if value.endswith("%"):
        return 0, int(value[:-1])
    return memparse(value)[0] >> PAGE_SHIFT, 0


def find_zone_movable_pfns_for_nodes(k: Kernel, low: list[int], high: list[int]) -> list[int]:
    """find_zone_movable_pfns_for_nodes(): where ZONE_MOVABLE starts on each node (0: none).

    ``movablecore=`` becomes the kernelcore it leaves (rounded up to MAX_ORDER_NR_PAGES, at most
    all memory), ``kernelcore=`` wins when larger; percentages are of all memory.  Kernel
    memory is then spread evenly over the nodes with memory: each node keeps ``kernelcore /
    usable_nodes`` pages (counting, first, its memory below the zone ZONE_MOVABLE is carved
    from -- the highest populated zone, ``movable_zone`` -- which is kernel memory anyway),
    and a node too small for its share passes the rest to another round over the nodes with
    one node fewer.  Each node's start is finally rounded up to MAX_ORDER_NR_PAGES, and
    dropped when that is past the node's end.  ``kernelcore=mirror`` finds no mirrored memory
    on the simulated machine and is ignored with the kernel's warning."""
    nodes = k.config.nodes
    zone_movable_pfn = [0] * nodes
    movable = ZONE_NAMES.index("Movable")
    # early_calculate_totalpages() and N_MEMORY
    totalpages = sum(e - s for s, e, _n in mem_pfn_ranges(k))
    memory_nodes = sorted({n for _s, _e, n in mem_pfn_ranges(k)})
    usable_nodes = len(memory_nodes)
    # find_usable_zone_for_movable()
    k.movable_zone = next(z for z in reversed(range(len(ZONE_NAMES))) if z != movable and high[z] > low[z])
    if k.config.kernelcore == "mirror":
        k.printk(4, "The system has no mirror memory, ignore kernelcore=mirror.")
        return zone_movable_pfn
    required_kernelcore, kernelcore_percent = _parse_core(k.config.kernelcore)
    required_movablecore, movablecore_percent = _parse_core(k.config.movablecore)
    if kernelcore_percent:
        required_kernelcore = (totalpages * 100 * kernelcore_percent) // 10000
    if movablecore_percent:
        required_movablecore = (totalpages * 100 * movablecore_percent) // 10000
    if required_movablecore:
        # round up so that ZONE_MOVABLE is at least as large as asked
        required_movablecore = -(-required_movablecore // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
        required_movablecore = min(totalpages, required_movablecore)
        required_kernelcore = max(required_kernelcore, totalpages - required_movablecore)
    if not required_kernelcore or required_kernelcore >= totalpages:
        return zone_movable_pfn
    usable_startpfn = low[k.movable_zone]
    while True:  # restart:
        kernelcore_node = required_kernelcore // usable_nodes
        for nid in memory_nodes:
            if required_kernelcore < kernelcore_node:
                kernelcore_node = required_kernelcore // usable_nodes
            kernelcore_remaining = kernelcore_node
            for start_pfn, end_pfn, _n in mem_pfn_ranges(k, nid):
                start_pfn = max(start_pfn, zone_movable_pfn[nid])
                if start_pfn >= end_pfn:
                    continue
                if start_pfn < usable_startpfn:  # only usable for kernelcore
                    kernel_pages = min(end_pfn, usable_startpfn) - start_pfn
                    kernelcore_remaining -= min(kernel_pages, kernelcore_remaining)
                    required_kernelcore -= min(kernel_pages, required_kernelcore)
                    if end_pfn <= usable_startpfn:
                        # push zone_movable_pfn to the end so a rebalancing round does not
                        # count this range twice
                        zone_movable_pfn[nid] = end_pfn
                        continue
                    start_pfn = usable_startpfn
                size_pages = min(end_pfn - start_pfn, kernelcore_remaining)
                zone_movable_pfn[nid] = start_pfn + size_pages
                required_kernelcore -= min(required_kernelcore, size_pages)
                kernelcore_remaining -= size_pages
                if not kernelcore_remaining:
                    break
        usable_nodes -= 1
        if not (usable_nodes and required_kernelcore > usable_nodes):
            break
    # out2: align the start of ZONE_MOVABLE on every node to MAX_ORDER_NR_PAGES
    for nid in memory_nodes:
        zone_movable_pfn[nid] = -(-zone_movable_pfn[nid] // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
        if zone_movable_pfn[nid] >= get_pfn_range_for_nid(k, nid)[1]:
            zone_movable_pfn[nid] = 0
    return zone_movable_pfn


def zone_spanned_pages_in_node(
    k: Kernel,
    nid: int,
    zone_type: int,
    node_start: int,
    node_end: int,
    low: list[int],
    high: list[int],
    zone_movable_pfn: list[int],
) -> tuple[int, int]:
    """zone_spanned_pages_in_node() with adjust_zone_range_for_zone_movable(): the zone's
    [start, end) on the node (ZONE_MOVABLE from zone_movable_pfn[nid] to the end of the node's
    part of movable_zone, which ends at zone_movable_pfn[nid])."""
    zone_start = min(max(node_start, low[zone_type]), high[zone_type])
    zone_end = min(max(node_end, low[zone_type]), high[zone_type])
    zmp = zone_movable_pfn[nid]
    if zmp:
        if zone_type == ZONE_NAMES.index("Movable"):
            zone_start, zone_end = zmp, min(node_end, high[k.movable_zone])
        elif zone_start < zmp < zone_end:
            zone_end = zmp
        elif zone_start >= zmp:
            zone_start = zone_end
    if zone_end < node_start or zone_start > node_end:
        return 0, 0
    zone_end, zone_start = min(zone_end, node_end), max(zone_start, node_start)
    return zone_start, zone_end


def calculate_node_totalpages(
    k: Kernel, nid: int, node_start: int, node_end: int, low: list[int], high: list[int], zone_movable_pfn: list[int]
) -> list[tuple[int, int, int]]:
    """calculate_node_totalpages(): (zone_start_pfn, spanned, present) of each zone of the node,
    present = spanned - the holes (zone_absent_pages_in_node); a node without memory has none
    (reset_memoryless_node_totalpages)."""
    out = []
    ranges = mem_pfn_ranges(k, nid)
    for zone_type in range(len(ZONE_NAMES)):
        if node_start == node_end:
            out.append((0, 0, 0))
            continue
        s, e = zone_spanned_pages_in_node(k, nid, zone_type, node_start, node_end, low, high, zone_movable_pfn)
        spanned = e - s
        present = sum(max(0, min(e, re) - max(s, rs)) for rs, re, _n in ranges) if spanned else 0
        out.append((s if spanned else 0, spanned, present))
    return out


def print_zone_ranges(k: Kernel, low: list[int], high: list[int], zone_movable_pfn: list[int]) -> None:
    """free_area_init()'s boot log: the zone ranges, where ZONE_MOVABLE starts on each node,
    the early memory node ranges, and each node's "Initmem setup" line."""
    lines = ["Zone ranges:"]
    for i, name in enumerate(ZONE_NAMES):
        if name == "Movable":
            continue
        span = (
            "empty" if low[i] == high[i] else f"[mem {low[i] << PAGE_SHIFT:#018x}-{(high[i] << PAGE_SHIFT) - 1:#018x}]"
        )
        lines.append(f"  {name:<8} {span}")
    lines.append("Movable zone start for each node")
    lines += [f"  Node {nid}: {pfn << PAGE_SHIFT:#018x}" for nid, pfn in enumerate(zone_movable_pfn) if pfn]
    lines.append("Early memory node ranges")
    lines += [
        f"  node {nid:3d}: [mem {s << PAGE_SHIFT:#018x}-{(e << PAGE_SHIFT) - 1:#018x}]"
        for s, e, nid in mem_pfn_ranges(k)
    ]
    for nid in range(k.config.nodes):
        s, e = get_pfn_range_for_nid(k, nid)
        lines.append(
            f"Initmem setup node {nid} [mem {s << PAGE_SHIFT:#018x}-{(e << PAGE_SHIFT) - 1 if e else 0:#018x}]"
            if s != e
            else f"Initmem setup node {nid} as memoryless"
        )
    k.printk(6, "\n".join(lines))


def find_next_best_node(k: Kernel, node: int, used: set[int], node_load: list[int]) -> int:
    """mm/page_alloc.c find_next_best_node(): the local node first, then the nearest by
    node_distance, nodes below ``node`` and nodes with CPUs slightly penalised, ties broken
    by node_load and then by the lowest node id."""
    if node not in used:
        return node
    best, min_val = -1, None
    cpu_nodes = {k.cpu_to_node(c) for c in range(k.config.cpus)}
    for n in range(k.config.nodes):
        if n in used:
            continue
        val = k.numa_distance[node][n] + (n < node) + (1 if n in cpu_nodes else 0)  # PENALTY_FOR_NODE_WITH_CPUS
        val = val * kc.MAX_NUMNODES + node_load[n]
        if min_val is None or val < min_val:
            best, min_val = n, val
    return best


def build_zonelists(k: Kernel) -> None:
    """__build_all_zonelists(): per node, the fallback list orders nodes as
    find_next_best_node picks them and, within a node, zones from highest to lowest; the
    no-fallback list (__GFP_THISNODE) holds only the local node's zones."""
    T = k.T
    zl_off = T.struct("pglist_data").offsetof("node_zonelists")
    zl_size = T.sizeof("struct zonelist")
    zr_size = T.sizeof("struct zoneref")
    node_load = [0] * k.config.nodes
    for nid, pg in enumerate(k.pgdat):
        used: set[int] = set()
        order: list[int] = []
        prev = nid
        while len(order) < k.config.nodes:
            n = find_next_best_node(k, nid, used, node_load)
            used.add(n)
            if k.numa_distance[nid][n] != k.numa_distance[nid][prev]:
                node_load[n] += 1
            order.append(n)
            prev = n
        k.node_order[nid] = order
        k.zonelist[nid] = [
            [z for n in order for z in reversed(k.zones[n]) if z.populated],
            [z for z in reversed(k.zones[nid]) if z.populated],
        ]
        for li, zl in enumerate(k.zonelist[nid]):
            base = pg + zl_off + li * zl_size
            for i, z in enumerate(zl):
                k.kmem.set(base + i * zr_size, "zoneref", "zone", z.addr)
                k.kmem.set(base + i * zr_size, "zoneref", "zone_idx", z.idx)
            # terminator: zone NULL, zone_idx 0


def memmap_init(k: Kernel) -> None:
    """memmap_init(): every struct page of every present section as __init_single_page()
    leaves it (PG_reserved on pfns that are not RAM, which get the zone of memmap_init's hole
    rule), and every pageblock MIGRATE_MOVABLE.  A compact section gets one run per
    (zone, RAM or hole) stretch; an array section (``k.compact_memmap`` False) is written
    page by page."""
    T = k.T
    k.pageblock_flags = bytearray((max(k.present_sections) + 1) * (PAGES_PER_SECTION >> kc.PAGEBLOCK_ORDER))
    ram = [(r.base >> PAGE_SHIFT, r.end >> PAGE_SHIFT) for r in k.memblock.memory]
    for nr, nid in k.present_sections.items():
        if k.memmap_store[nr].materialized is None:
            _memmap_init_runs(k, nr, nid, ram)
        else:
            _memmap_init_pages(k, nr, nid, ram)
        # init_pageblock_migratetype(MIGRATE_MOVABLE) for every pageblock of the section; the
        # allocator keeps the pageblock bits in k.pageblock_flags (one byte a pageblock,
        # NR_PAGEBLOCK_BITS = 8) and writes them to mem_section_usage at sync.
        nblocks = PAGES_PER_SECTION // k.pageblock_nr_pages
        first = section_nr_to_pfn(nr) >> kc.PAGEBLOCK_ORDER
        k.pageblock_flags[first : first + nblocks] = bytes([T.const("MIGRATE_MOVABLE")]) * nblocks


def _init_single_page_flags(k: Kernel, nid: int, zone_idx: int) -> int:
    """set_page_links() and page_cpupid_reset_last(): the flags word of a new struct page."""
    cpupid = ((1 << kc.LAST_CPUPID_SHIFT) - 1) << kc.LAST_CPUPID_PGOFF
    return (nid << kc.NODES_PGOFF) | (zone_idx << kc.ZONES_PGOFF) | cpupid


def _memmap_init_runs(k: Kernel, nr: int, nid: int, ram: list[tuple[int, int]]) -> None:
    reserved_bit = 1 << k.T.const("PG_reserved")
    lru_off = k.T.struct("page").offsetof("lru")
    base = section_nr_to_pfn(nr)
    end = base + PAGES_PER_SECTION
    zs = [z for z in k.zones[nid] if z.spanned]
    cuts = {base} | {z.end_pfn for z in zs if base < z.end_pfn < end}
    cuts |= {p for a, b in ram for p in (a, b) if base < p < end}
    fields = {name: page_field(k, name) for name in ("flags", "lru_next", "lru_prev", "page_type", "refcount")}
    runs = []
    for p in sorted(cuts):
        # memmap_init's hole rule: a pfn outside every zone gets the next zone, else the last.
        zone = next((z for z in zs if p < z.end_pfn), zs[-1])
        flags = _init_single_page_flags(k, nid, zone.idx)
        if not any(a <= p < b for a, b in ram):
            flags |= reserved_bit
        words = [0] * 8
        selfs = 0
        for name, value in (
            ("flags", flags),
            ("lru_next", lru_off),
            ("lru_prev", lru_off),
            ("page_type", 0xFFFFFFFF),
            ("refcount", 1),
        ):  # _mapcount -1, _refcount 1
            j, lane = fields[name]
            words[j] = words[j] | (value << (32 * lane)) if lane is not None else value
        for name in ("lru_next", "lru_prev"):  # INIT_LIST_HEAD(&page->lru): the page's own lru
            selfs |= 1 << fields[name][0]
        runs.append((p - base, words, selfs))
    k.memmap_store[nr].set_runs(runs)


def _memmap_init_pages(k: Kernel, nr: int, nid: int, ram: list[tuple[int, int]]) -> None:
    lru_off = k.T.struct("page").offsetof("lru")
    reserved_bit = 1 << k.T.const("PG_reserved")
    pages = section_pages(k, nr)
    base = section_nr_to_pfn(nr)
    pfn = np.arange(base, base + PAGES_PER_SECTION, dtype=np.uint64)
    zs = [z for z in k.zones[nid] if z.spanned]
    # memmap_init's hole rule: a pfn outside every zone gets the next zone, else the last.
    zone_id = np.full(PAGES_PER_SECTION, zs[-1].idx, dtype=np.uint64)
    for z in reversed(zs):
        zone_id[pfn < z.end_pfn] = z.idx
    is_ram = np.zeros(PAGES_PER_SECTION, dtype=bool)
    for a, b in ram:
        lo, hi = max(a, base), min(b, base + PAGES_PER_SECTION)
        if lo < hi:
            is_ram[lo - base : hi - base] = True
    flags = (
        (np.uint64(nid) << np.uint64(kc.NODES_PGOFF))
        | (zone_id << np.uint64(kc.ZONES_PGOFF))
        | np.uint64(_init_single_page_flags(k, 0, 0))
    )
    flags[~is_ram] |= np.uint64(reserved_bit)
    pages["flags"] = flags
    lru = np.uint64(k.vmemmap_base) + pfn * np.uint64(k.struct_page_size) + np.uint64(lru_off)
    pages["lru_next"] = lru
    pages["lru_prev"] = lru
    pages["page_type"] = 0xFFFFFFFF  # _mapcount -1
    pages["refcount"] = 1


# -- large system hashes --------------------------------------------------------------------
HASH_EARLY = 0x00000001  # allocating during early boot? (from memblock)
HASH_ZERO = 0x00000002  # zero allocated hash table


def calc_nr_kernel_pages(k: Kernel) -> None:
    """calc_nr_kernel_pages() (free_area_init): the pages memblock still has free, which size
    the boot-time hash tables (no highmem on x86-64: nr_kernel_pages == nr_all_pages)."""
    total = 0
    for start, end, _nid in k.memblock.free_ranges():
        s, e = -(-start >> PAGE_SHIFT), end >> PAGE_SHIFT
        if s < e:
            total += e - s
    k.nr_kernel_pages = k.nr_all_pages = total
    k.kmem.write_u64(k.sym("nr_kernel_pages"), total)
    k.kmem.write_u64(k.sym("nr_all_pages"), total)


def alloc_large_system_hash(
    k: Kernel,
    tablename: str,
    bucketsize: int,
    numentries: int,
    scale: int,
    flags: int,
    low_limit: int = 0,
    high_limit: int = 0,
) -> tuple[int, int] | None:
    """mm/mm_init.c alloc_large_system_hash(): size a hash table by the kernel's memory (one
    bucket per 2^scale bytes, a power of two, capped at 1/16 of memory) and allocate it.

    Only HASH_EARLY tables are allocated here (memblock_alloc, SMP_CACHE_BYTES aligned: the
    dentry and inode hashes of a one-node machine).  Returns (physical address, size), or
    None for a table the caller allocates later (hashdist: vmalloc, not modelled)."""
    if not numentries:
        numentries = k.nr_kernel_pages
        numentries = -(-numentries // ((1 << 20) >> PAGE_SHIFT)) * ((1 << 20) >> PAGE_SHIFT)  # round to 1 MiB
        numentries = numentries >> (scale - PAGE_SHIFT) if scale > PAGE_SHIFT else numentries << (PAGE_SHIFT - scale)
        if numentries * bucketsize < (1 << PAGE_SHIFT):
            numentries = (1 << PAGE_SHIFT) // bucketsize
    numentries = 1 << (numentries - 1).bit_length()  # roundup_pow_of_two
    max_ = high_limit or ((k.nr_all_pages << PAGE_SHIFT) >> 4) // bucketsize
    max_ = min(max_, 0x80000000)
    numentries = min(max(numentries, low_limit), max_)
    log2qty = numentries.bit_length() - 1
    size = bucketsize << log2qty
    if not flags & HASH_EARLY:
        return None
    base = k.memblock.alloc(size, 64)
    order = max(0, (size - 1).bit_length() - PAGE_SHIFT)  # get_order(size)
    k.printk(6, f"{tablename} hash table entries: {1 << log2qty} (order: {order}, {size} bytes, linear)")
    return base, size


def vfs_caches_init_early(k: Kernel) -> None:
    """fs/dcache.c vfs_caches_init_early(): with one node of memory (fixup_hashdist() turned
    hashdist off), dcache_init_early() and inode_init_early() take their hash tables from
    memblock, zeroed.  With several nodes they are vmalloc'd later (dcache_init()), which the
    simulator does not model."""
    nodes_with_memory = {r.nid for r in k.memblock.memory}
    if len(nodes_with_memory) > 1:
        return
    bl_head = k.T.sizeof("struct hlist_bl_head")
    head = k.T.sizeof("struct hlist_head")
    k.hash_tables = {}
    for name, bucket, scale in (("Dentry cache", bl_head, 13), ("Inode-cache", head, 14)):
        got = alloc_large_system_hash(k, name, bucket, 0, scale, HASH_EARLY | HASH_ZERO)
        if got is not None:
            k.hash_tables[name] = got
