"""The buddy allocator's boot half (mm/page_alloc.c, mm/mm_init.c).

memblock_free_all() hands every free memblock range to the buddy allocator in naturally
aligned blocks of up to MAX_PAGE_ORDER (__free_pages_memory), each through
__free_pages_core() and __free_one_page(), which merges buddies and queues blocks at the
tail of their free list (FPI_TO_TAIL).  Then the watermarks (__setup_per_zone_wmarks),
lowmem_reserve and the per-CPU pagesets are computed as 6.18 computes them.

The free lists are kept as ordered dicts while the simulation runs and written into the
zone's ``free_area[order].free_list[migratetype]`` and the pages' ``buddy_list`` by
write_free_lists() before a snapshot.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import config as kc
from mmintro.kernel.mm_init import ZoneState, section_pages
from mmintro.kernel.sparse import PAGES_PER_SECTION, pfn_to_section_nr

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

# include/linux/poison.h with POISON_POINTER_DELTA = 0xdead000000000000 on x86-64.
LIST_POISON1 = 0xDEAD000000000100
LIST_POISON2 = 0xDEAD000000000122


def zone_of_pfn(k: "Kernel", pfn: int) -> ZoneState:
    for zones in k.zones:
        for z in zones:
            if z.spanned and z.start_pfn <= pfn < z.end_pfn:
                return z
    raise KeyError(pfn)


def page_row(k: "Kernel", pfn: int) -> np.ndarray:
    """One struct page as a 1-element structured view (for per-block updates)."""
    nr = pfn_to_section_nr(pfn)
    i = pfn - (nr << (27 - PAGE_SHIFT))
    return section_pages(k, nr)[i:i + 1]


def get_pageblock_migratetype(k: "Kernel", pfn: int) -> int:
    nr = pfn_to_section_nr(pfn)
    usage = k.section_usage[nr]
    blk = (pfn & (PAGES_PER_SECTION - 1)) >> kc.PAGEBLOCK_ORDER
    b = k.mem.read(k.pa(usage + k.usemap_offset + blk), 1)[0]
    return b & 0x7  # MIGRATETYPE_MASK: bits 0-2 of a pageblock's flags


def memblock_free_all(k: "Kernel") -> None:
    """mem_init() → memblock_free_all(): reserve_bootmem_region() over every reserved range,
    then __free_pages_memory() over every free range, lowest address first."""
    reserved_bit = np.uint64(1 << k.T.const("PG_reserved"))
    for r in k.memblock.reserved:
        lo, hi = r.base >> PAGE_SHIFT, -(-r.end // PAGE_SIZE)
        for nr in range(pfn_to_section_nr(lo), pfn_to_section_nr(hi - 1) + 1):
            if nr not in k.present_sections:
                continue
            base = nr << (27 - PAGE_SHIFT)
            a, b = max(lo, base) - base, min(hi, base + PAGES_PER_SECTION) - base
            section_pages(k, nr)["flags"][a:b] |= reserved_bit
    total = 0
    for start, end, _nid in k.memblock.free_ranges():
        s, e = -(-start // PAGE_SIZE), end >> PAGE_SHIFT
        while s < e:
            order = kc.MAX_PAGE_ORDER if s == 0 else min(kc.MAX_PAGE_ORDER, (s & -s).bit_length() - 1)
            while s + (1 << order) > e:
                order -= 1
            __free_pages_core(k, s, order)
            total += 1 << order
            s += 1 << order
    k.totalram_pages = total
    k.kmem.write_u64(k.sym("_totalram_pages"), total)


def __free_pages_core(k: "Kernel", pfn: int, order: int) -> None:
    """Clear PG_reserved, drop every page's count to 0, account the zone's managed pages,
    then free the block (__free_pages_ok with FPI_TO_TAIL)."""
    nr = pfn_to_section_nr(pfn)
    base = nr << (27 - PAGE_SHIFT)
    pages = section_pages(k, nr)[pfn - base:pfn - base + (1 << order)]
    pages["flags"] &= ~np.uint64(1 << k.T.const("PG_reserved"))
    pages["refcount"] = 0
    z = zone_of_pfn(k, pfn)
    z.managed += 1 << order
    __free_one_page(k, z, pfn, order, get_pageblock_migratetype(k, pfn), to_tail=True)


def __free_one_page(k: "Kernel", z: ZoneState, pfn: int, order: int, migratetype: int, to_tail: bool) -> None:
    while order < kc.MAX_PAGE_ORDER:
        buddy = pfn ^ (1 << order)
        if z.free_order.get(buddy) != order or not (z.start_pfn <= buddy < z.end_pfn):
            break
        # __del_page_from_free_list(): unlink, clear PageBuddy and private, poison lru.
        bmt = _list_of(z, buddy, order)
        del z.free[order][bmt][buddy]
        del z.free_order[buddy]
        z.nr_free[order] -= 1
        row = page_row(k, buddy)
        row["page_type"] = 0xFFFFFFFF
        row["private"] = 0
        row["lru_next"] = LIST_POISON1
        row["lru_prev"] = LIST_POISON2
        pfn &= buddy
        order += 1
    # __add_to_free_list(): set PageBuddy + order, link at head or tail.
    lst = z.free[order][migratetype]
    lst[pfn] = None
    if not to_tail:
        _move_to_head(lst, pfn)
    z.free_order[pfn] = order
    z.nr_free[order] += 1
    row = page_row(k, pfn)
    row["page_type"] = k.T.const("PGTY_buddy") << 24
    row["private"] = order


def _list_of(z: ZoneState, pfn: int, order: int) -> int:
    for mt, lst in enumerate(z.free[order]):
        if pfn in lst:
            return mt
    raise KeyError(pfn)


def _move_to_head(d: dict, key: int) -> None:
    items = list(d.items())
    d.clear()
    d[key] = None
    for kk, v in items:
        if kk != key:
            d[kk] = v


def zone_free_pages(z: ZoneState) -> int:
    return sum(n << o for o, n in enumerate(z.nr_free))


def write_free_lists(k: "Kernel") -> None:
    """Write every free list into memory: list heads in struct zone, buddy_list in pages."""
    T = k.T
    fa = T.struct("zone").offsetof("free_area")
    fa_size = T.sizeof("struct free_area")
    nr_free_off = T.struct("free_area").offsetof("nr_free")
    lh = T.sizeof("struct list_head")
    lru_off = T.struct("page").offsetof("lru")
    for zones in k.zones:
        for z in zones:
            if not z.spanned:
                continue
            for o in range(kc.NR_PAGE_ORDERS):
                k.kmem.write_u64(z.addr + fa + o * fa_size + nr_free_off, z.nr_free[o])
                for mt, lst in enumerate(z.free[o]):
                    head = z.addr + fa + o * fa_size + mt * lh
                    nodes = [head] + [k.pfn_to_page(p) + lru_off for p in lst]
                    n = len(nodes)
                    for i, a in enumerate(nodes):
                        nxt, prv = nodes[(i + 1) % n], nodes[i - 1]
                        if i == 0:
                            k.kmem.write_u64(a, nxt)
                            k.kmem.write_u64(a + 8, prv)
                        else:
                            row = page_row(k, (a - lru_off - k.vmemmap_base) // k.struct_page_size)
                            row["lru_next"] = nxt
                            row["lru_prev"] = prv


# -- watermarks and reserves ----------------------------------------------------------------
def init_per_zone_wmark_min(k: "Kernel") -> None:
    """calculate_min_free_kbytes(), raised to khugepaged's recommendation
    (set_recommended_min_free_kbytes), then setup_per_zone_wmarks() and
    setup_per_zone_lowmem_reserve()."""
    zones = [z for zs in k.zones for z in zs]
    lowmem_kbytes = sum(z.managed for z in zones if z.idx <= 2) * (PAGE_SIZE >> 10)
    new_min = math.isqrt(lowmem_kbytes * 16)
    min_free_kbytes = max(128, min(262144, new_min))
    # mm/khugepaged.c: pageblock_nr_pages * nr_zones * (2 + MIGRATE_PCPTYPES^2), capped at 5%.
    nr_zones = sum(1 for z in zones if z.populated and z.idx != 3)
    pcptypes = k.T.const("MIGRATE_PCPTYPES")
    recommended = k.pageblock_nr_pages * nr_zones * 2 + k.pageblock_nr_pages * pcptypes * pcptypes * nr_zones
    recommended = min(recommended, sum(z.managed for z in zones) // 20)
    recommended_kb = recommended << (PAGE_SHIFT - 10)
    if recommended_kb > min_free_kbytes:
        min_free_kbytes = recommended_kb
    k.min_free_kbytes = min_free_kbytes
    k.write_int("min_free_kbytes", min_free_kbytes)
    k.write_int("user_min_free_kbytes", -1)
    setup_per_zone_wmarks(k)
    setup_per_zone_lowmem_reserve(k)


def setup_per_zone_wmarks(k: "Kernel") -> None:
    zones = [z for zs in k.zones for z in zs]
    pages_min = k.min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(z.managed for z in zones if z.idx != 3)  # !is_highmem && != ZONE_MOVABLE
    for z in zones:
        tmp = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
        if z.idx == 3:  # ZONE_MOVABLE: a small, capped minimum
            wmin = max(kc.SWAP_CLUSTER_MAX, min(z.managed // 1024, 128))
        else:
            wmin = tmp
        tmp = max(tmp >> 2, z.managed * kc.WATERMARK_SCALE_FACTOR // 10000)
        z.watermark = [wmin, wmin + tmp, wmin + 2 * tmp, wmin + 3 * tmp]
        for i, v in enumerate(z.watermark):
            k.kmem.set(z.addr, "zone", f"_watermark[{i}]", v)
        k.kmem.set(z.addr, "zone", "watermark_boost", 0)


def setup_per_zone_lowmem_reserve(k: "Kernel") -> None:
    for zs in k.zones:
        for i in range(len(zs) - 1):
            z = zs[i]
            ratio = kc.LOWMEM_RESERVE_RATIO[i]
            clear = not ratio or not z.managed
            managed = 0
            for j in range(i + 1, len(zs)):
                managed += zs[j].managed
                z.lowmem_reserve[j] = 0 if clear else managed // ratio
        for z in zs:
            for j, v in enumerate(z.lowmem_reserve):
                k.kmem.set(z.addr, "zone", f"lowmem_reserve[{j}]", v)
    # calculate_totalreserve_pages()
    total = 0
    for nid, zs in enumerate(k.zones):
        node_total = 0
        for z in zs:
            m = max(z.lowmem_reserve) + z.watermark[2]
            node_total += min(m, z.managed)
        k.kmem.set(k.pgdat[nid], "pglist_data", "totalreserve_pages", node_total)
        total += node_total
    k.totalreserve_pages = total
    k.kmem.write_u64(k.sym("totalreserve_pages"), total)


def zone_batchsize(z: ZoneState) -> int:
    batch = min(z.managed >> 10, (1 << 20) // PAGE_SIZE)
    batch //= 4
    batch = max(batch, 1)
    x = batch + batch // 2
    return (1 << (x.bit_length() - 1)) - 1


def zone_highsize(k: "Kernel", z: ZoneState, batch: int, high_fraction: int) -> int:
    total = z.watermark[1] if not high_fraction else z.managed // high_fraction
    nr_split_cpus = sum(1 for cpu in range(k.config.cpus) if cpu_to_node(k, cpu) == z.nid) or k.config.cpus
    return max(total // nr_split_cpus, batch << 2)


def cpu_to_node(k: "Kernel", cpu: int) -> int:
    return k.cpu_to_node(cpu)


def calculate_normal_threshold(k: "Kernel", z: ZoneState) -> int:
    mem = z.managed >> (27 - PAGE_SHIFT)
    fls = lambda x: x.bit_length()  # noqa: E731
    return min(125, 2 * fls(k.config.cpus) * (1 + fls(mem)))


def setup_zone_pagesets(k: "Kernel") -> None:
    """setup_per_cpu_pageset(): per-CPU pagesets and zonestats for every populated zone,
    nodestats for every node; high/batch as zone_set_pageset_high_and_batch() sets them."""
    T = k.T
    pcp_size = T.sizeof("struct per_cpu_pages")
    zst_size = T.sizeof("struct per_cpu_zonestat")
    nst_size = T.sizeof("struct per_cpu_nodestat")
    lists_off = T.struct("per_cpu_pages").offsetof("lists")
    nr_lists = T.struct("per_cpu_pages").walk("lists")[2].resolved().nelems
    for nid, zs in enumerate(k.zones):
        node_threshold = 0
        for z in zs:
            if not z.populated:
                continue
            z.pageset = k.alloc_percpu(pcp_size, 64)
            z.zonestats = k.alloc_percpu(zst_size, 64)
            z.pcp_batch = max(1, zone_batchsize(z))  # zone_set_pageset_high_and_batch()
            z.pcp_high_min = zone_highsize(k, z, z.pcp_batch, 0)
            z.pcp_high_max = zone_highsize(k, z, z.pcp_batch, 8)  # MIN_PERCPU_PAGELIST_HIGH_FRACTION
            z.stat_threshold = calculate_normal_threshold(k, z)
            node_threshold = max(node_threshold, z.stat_threshold)
            k.kmem.set(z.addr, "zone", "per_cpu_pageset", z.pageset)
            k.kmem.set(z.addr, "zone", "per_cpu_zonestats", z.zonestats)
            k.kmem.set(z.addr, "zone", "pageset_batch", z.pcp_batch)
            k.kmem.set(z.addr, "zone", "pageset_high_min", z.pcp_high_min)
            k.kmem.set(z.addr, "zone", "pageset_high_max", z.pcp_high_max)
            for cpu in range(k.config.cpus):
                pcp = k.per_cpu_ptr(z.pageset, cpu)
                k.kmem.set(pcp, "per_cpu_pages", "high", z.pcp_high_min)
                k.kmem.set(pcp, "per_cpu_pages", "high_min", z.pcp_high_min)
                k.kmem.set(pcp, "per_cpu_pages", "high_max", z.pcp_high_max)
                k.kmem.set(pcp, "per_cpu_pages", "batch", z.pcp_batch)
                k.kmem.set(pcp, "per_cpu_pages", "free_count", 0)
                for i in range(nr_lists):
                    k.kmem.init_list_head(pcp + lists_off + 16 * i)
                k.kmem.set(k.per_cpu_ptr(z.zonestats, cpu), "per_cpu_zonestat", "stat_threshold", z.stat_threshold)
        ptr = k.alloc_percpu(nst_size, 64)
        k.node_stats_ptr[nid] = ptr
        k.kmem.set(k.pgdat[nid], "pglist_data", "per_cpu_nodestats", ptr)
        for cpu in range(k.config.cpus):
            k.kmem.set(k.per_cpu_ptr(ptr, cpu), "per_cpu_nodestat", "stat_threshold", node_threshold)
