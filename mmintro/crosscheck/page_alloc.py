"""Rows for the page allocator (mm/page_alloc.c, mm/vmstat.c): free lists, per-CPU lists,
watermarks, zone counters, compound pages, against drgn's helpers and ``crash kmem -f/-z/-i``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from mmintro.crosscheck.drgn import crash
from mmintro.crosscheck.zones import _d_populated, _has_constant, _populated, _zone_stat_items
from mmintro.reader import Program
from mmintro.reader.columns import present_pfn_mask
from mmintro.reader.helpers import mm as mmh


def c_kmem_f_orders(p: Program, d: Any) -> tuple:
    """``crash kmem -f``: blocks per zone and order (all migratetypes) = /proc/buddyinfo, and
    the list walk verified against NR_FREE_PAGES."""
    from mmintro.views.buddyinfo import buddyinfo

    out = crash(d, "kmem -f")
    node, zone = 0, None
    counts: dict[tuple[int, str], list[int]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) in (7, 8) and f[-1].isdigit() and not f[1].endswith("k"):
            node, zone = (int(f[0]), f[2]) if len(f) == 8 else (0, f[1])  # NODE column with > 1 node
        elif len(f) >= 5 and f[1].endswith("k") and f[0].isdigit():
            o = int(f[0])
            row = counts.setdefault((node, zone), [])
            row += [0] * (o + 1 - len(row))
            # a list drgn could not walk prints [CORRUPTED]: keep the word, it never equals a count
            if isinstance(row[o], int):
                row[o] = row[o] + int(f[4]) if f[4].isdigit() else f[4]
    m = re.search(r"nr_free_pages: (\d+)\s+\(([^)]*)\)", out)
    populated = {(nid, name) for nid, _i, name, _z in _d_populated(d)}
    theirs = [(n, z, c) for (n, z), c in counts.items() if (n, z) in populated]
    mine = [(r.node, r.zone, list(r.nr_free)) for r in buddyinfo(p)]
    return (mine, "verified"), (theirs, m.group(2) if m else out[-200:])


def _kmem_z_zones(out: str) -> list[tuple]:
    zones = []
    for block in re.split(r"\n(?=NODE: )", out):
        h = re.match(r"NODE: (\d+)\s+ZONE: (\d+)\s+ADDR: \w+\s+NAME: \"(\w+)\"", block)
        w = re.search(r"MIN/LOW/HIGH: (\d+)/(\d+)/(\d+)", block)
        if h and w:
            stats = {
                m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+([A-Z_]+)\s+(-?\d+)\s*$", block, re.MULTILINE)
            }
            zones.append((int(h.group(1)), int(h.group(2)), h.group(3), tuple(int(x) for x in w.groups()), stats))
    return zones


def c_kmem_z_watermarks(p: Program, d: Any) -> tuple:
    """``crash kmem -z`` MIN/LOW/HIGH and every VM_STAT item of each populated zone =
    mmintro's /proc/zoneinfo (min/low/high include the boost, as wmark_pages() does)."""
    from mmintro.views.vmstat_names import stat_names
    from mmintro.views.zoneinfo import zoneinfo

    names = {i: name for i, _e, name in stat_names(p.types, "zone_stat_item", "NR_VM_ZONE_STAT_ITEMS")}
    items = _zone_stat_items(p)  # every enumerator, aliases (NR_ZONE_LRU_BASE) included, as kmem -z prints
    mine = []
    zis = [zi for zi in zoneinfo(p) if zi.populated]
    for (nid, i, name, _z), zi in zip(_populated(p), zis):
        mine.append(
            (
                nid,
                i,
                name,
                (zi.pages["min"], zi.pages["low"], zi.pages["high"]),
                {e: zi.stats[names[v]] for e, v in items},
            )
        )
    theirs = [z for z in _kmem_z_zones(crash(d, "kmem -z")) if (z[0], z[1]) in {(m[0], m[1]) for m in mine}]
    return mine, theirs


def c_kmem_i(p: Program, d: Any) -> tuple:
    """``crash kmem -i`` TOTAL MEM / FREE / USED (pages) = /proc/meminfo MemTotal / MemFree."""
    from mmintro.views.meminfo import meminfo

    out = crash(d, "kmem -i")
    theirs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*(TOTAL MEM|FREE|USED)\s+(\d+)", out, re.MULTILINE)}
    kb = {line.name: line.value for line in meminfo(p)}
    per_page = p.page_size >> 10
    total, free = kb["MemTotal"] // per_page, kb["MemFree"] // per_page
    return {"TOTAL MEM": total, "FREE": free, "USED": total - free}, theirs


def c_vmstat_helpers(p: Program, d: Any) -> tuple:
    """drgn's ``nr_free_pages``, ``global_zone_page_state`` and ``zone_page_state`` for every
    zone_stat_item = mmintro's /proc/meminfo MemFree, /proc/vmstat and /proc/zoneinfo."""
    from drgn.helpers.linux.vmstat import global_zone_page_state, nr_free_pages, zone_page_state

    from mmintro.views import vmstat as vs
    from mmintro.views.meminfo import meminfo
    from mmintro.views.vmstat_names import stat_names
    from mmintro.views.zoneinfo import zoneinfo

    items = _zone_stat_items(p)
    names = {i: name for i, _e, name in stat_names(p.types, "zone_stat_item", "NR_VM_ZONE_STAT_ITEMS")}
    memfree = next(line.value for line in meminfo(p) if line.name == "MemFree") // (p.page_size >> 10)
    mine = (
        memfree,
        {n: vs.global_zone_page_state(p, v) for n, v in items},
        [(zi.node, zi.zone, {n: zi.stats[names[v]] for n, v in items}) for zi in zoneinfo(p) if zi.populated],
    )
    theirs = (
        nr_free_pages(d),
        {n: global_zone_page_state(d, v) for n, v in items},
        [(nid, name, {n: zone_page_state(z, v) for n, v in items}) for nid, _i, name, z in _d_populated(d)],
    )
    return mine, theirs


def c_wmark_helpers(p: Program, d: Any) -> tuple:
    """drgn's ``min_wmark_pages``/``low_wmark_pages``/``high_wmark_pages`` = mmintro's
    /proc/zoneinfo min/low/high, per populated zone."""
    from drgn.helpers.linux.mmzone import high_wmark_pages, low_wmark_pages, min_wmark_pages

    from mmintro.views.zoneinfo import zoneinfo

    mine = [
        (zi.node, zi.zone, zi.pages["min"], zi.pages["low"], zi.pages["high"]) for zi in zoneinfo(p) if zi.populated
    ]
    theirs = [
        (nid, name, min_wmark_pages(z), low_wmark_pages(z), high_wmark_pages(z)) for nid, _i, name, z in _d_populated(d)
    ]
    return mine, theirs


FREE_LIST_OK = "every entry PageBuddy with page->private == its order"


def c_free_lists(p: Program, d: Any) -> tuple:
    """Every ``zone->free_area[o].free_list[mt]`` walked (``buddy_list``) by mmintro's reader
    and by drgn: the same (node, zone, order, migratetype, pfn, page_type, private) entries,
    and drgn finds each a PGTY_buddy head whose ``private`` is the list's order
    (reference/semantics.md §2; drgn 0.3.0 has no PageBuddy helper, so the type byte is
    tested as PageBuddy does)."""
    from drgn.helpers.linux.list import validate_list_for_each_entry
    from drgn.helpers.linux.mm import page_to_pfn

    from mmintro.reader.helpers.list import list_for_each_entry

    mine = []
    for nid, i, _name, z in _populated(p):
        for o in range(len(z.free_area)):
            fl = z.free_area[o].free_list
            for mt in range(len(fl)):
                for page in list_for_each_entry("struct page", fl[mt].address_of_(), "buddy_list"):
                    mine.append(
                        (
                            nid,
                            i,
                            o,
                            mt,
                            int(mmh.page_to_pfn(page).value_()),
                            "buddy" if mmh.PageBuddy(page) else hex(int(page.page_type.value_())),
                            int(page.private.value_()),
                        )
                    )
    theirs, bad = [], []
    buddy = d.constant("PGTY_buddy").value_() if _has_constant(d, "PGTY_buddy") else 0xF0
    for nid, i, _name, z in _d_populated(d):
        for o in range(len(z.free_area)):
            fl = z.free_area[o].free_list
            for mt in range(len(fl)):
                for page in validate_list_for_each_entry("struct page", fl[mt].address_of_(), "buddy_list"):
                    pt, priv = page.page_type.value_(), page.private.value_()
                    is_buddy = pt >> 24 == buddy
                    theirs.append((nid, i, o, mt, page_to_pfn(page).value_(), "buddy" if is_buddy else hex(pt), priv))
                    if not is_buddy or priv != o:
                        bad.append(theirs[-1])
    verdict = FREE_LIST_OK if not bad else f"{len(bad)} bad, first {bad[0]}"
    return (sorted(mine), FREE_LIST_OK), (sorted(theirs), verdict)


def _pcp_orders(nr_lists: int, pcptypes: int, pageblock_order: int) -> list[int]:
    """mm/page_alloc.c pindex_to_order(): MIGRATE_PCPTYPES lists per order up to
    PAGE_ALLOC_COSTLY_ORDER, then (CONFIG_TRANSPARENT_HUGEPAGE) two for pageblock_order."""
    low = nr_lists - 2
    return [o // pcptypes if o < low else pageblock_order for o in range(nr_lists)]


PCP_OK = "every page untyped with _refcount 0"


def c_pcp_lists(p: Program, d: Any) -> tuple:
    """Per populated zone and online CPU: drgn walks ``per_cpu_ptr(zone->per_cpu_pageset,
    cpu)->lists[]`` (``pcp_list``) and counts pages (each list holds one order), which must
    equal ``per_cpu_pages.count`` as mmintro's reader reads it; the list lengths of both walks
    agree; and every page drgn finds there is free but not PageBuddy (reference/semantics.md §3)."""
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.list import validate_list_for_each_entry
    from drgn.helpers.linux.percpu import per_cpu_ptr

    from mmintro.reader.helpers.list import list_count_nodes
    from mmintro.views import percpu
    from mmintro.views.pagetypeinfo import pageblock_order

    nr = p.types.struct("per_cpu_pages").walk("lists")[2].resolved().nelems
    orders = _pcp_orders(nr, p.types.const("MIGRATE_PCPTYPES"), pageblock_order(p))
    cpus = list(percpu.for_each_online_cpu(p))
    mine_count, mine_lists = [], []
    for nid, i, _name, z in _populated(p):
        for cpu in cpus:
            pcp = percpu.per_cpu_ptr(z.per_cpu_pageset, cpu)
            mine_count.append((nid, i, cpu, int(pcp.count.value_())))
            mine_lists.append((nid, i, cpu, [list_count_nodes(pcp.lists[j].address_of_()) for j in range(nr)]))
    theirs_count, theirs_lists, bad = [], [], []
    for nid, i, _name, z in _d_populated(d):
        for cpu in for_each_online_cpu(d):
            pcp = per_cpu_ptr(z.per_cpu_pageset, cpu)
            lens = []
            pages = 0
            for j in range(len(pcp.lists)):
                n = 0
                for page in validate_list_for_each_entry("struct page", pcp.lists[j].address_of_(), "pcp_list"):
                    n += 1
                    if page.page_type.value_() != 0xFFFFFFFF or page._refcount.counter.value_():
                        bad.append((nid, i, cpu, j, hex(page.value_())))
                lens.append(n)
                pages += n << orders[j]
            theirs_count.append((nid, i, cpu, pages))
            theirs_lists.append((nid, i, cpu, lens))
    verdict = PCP_OK if not bad else f"{len(bad)} bad, first {bad[0]}"
    return (mine_count, mine_lists, PCP_OK), (theirs_count, theirs_lists, verdict)


def c_compound(p: Program, d: Any) -> tuple:
    """Compound heads (PG_head, found with mmintro's page columns): drgn's ``compound_order``
    and ``compound_nr`` of each head, and ``compound_head`` of its last tail, = mmintro's
    reader helpers.  On a snapshot without compound pages both sides are (0, [])."""
    from drgn.helpers.linux.mm import compound_head, compound_nr, compound_order, page_to_pfn, pfn_to_page

    from mmintro.reader.columns import page_array

    flags = page_array(p, {"flags": "flags"})["flags"]
    heads = np.flatnonzero((flags & np.uint64(1 << p.types.const("PG_head")) != 0) & present_pfn_mask(p))
    mine, theirs = [], []
    for pfn in heads.tolist():
        page = mmh.pfn_to_page(p, pfn)
        o = mmh.compound_order(page)
        last = mmh.compound_head(mmh.pfn_to_page(p, pfn + (1 << o) - 1))
        mine.append((pfn, o, mmh.compound_nr(page), int(mmh.page_to_pfn(last).value_())))
        dp = pfn_to_page(d, pfn)
        do = compound_order(dp).value_()
        dlast = compound_head(pfn_to_page(d, pfn + (1 << do) - 1))
        theirs.append((pfn, do, compound_nr(dp).value_(), page_to_pfn(dlast).value_()))
    return (len(mine), mine), (len(theirs), theirs)


def c_page_census(p: Program, d: Any) -> tuple:
    """drgn's ``for_each_page`` with ``PageHead`` and ``PageTail`` (and the buddy type byte)
    counted over every page = mmintro's page-types census.  drgn needs about 10 µs a page
    for this, so it is not in CHECKS: ``mmintro crosscheck --only census`` runs it."""
    from drgn.helpers.linux.mm import PageHead, PageTail, for_each_page

    from mmintro.views.page_types import page_types

    head = 1 << p.types.const("PG_head")
    rows = page_types(p)
    mine = {
        "pages": sum(r.page_count for r in rows),
        "PageHead": sum(r.page_count for r in rows if r.flags & head),
        "PageTail": sum(r.page_count for r in rows if r.tail),
        "buddy": sum(r.page_count for r in rows if r.page_type == "buddy"),
    }
    buddy = d.constant("PGTY_buddy").value_() if _has_constant(d, "PGTY_buddy") else 0xF0
    theirs = dict.fromkeys(mine, 0)
    for page in for_each_page(d):
        theirs["pages"] += 1
        theirs["PageHead"] += PageHead(page)
        theirs["PageTail"] += PageTail(page)
        theirs["buddy"] += page.page_type.value_() >> 24 == buddy
    return mine, theirs


PAGE_ALLOC_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("crash kmem -f per order = buddyinfo", c_kmem_f_orders),
    ("crash kmem -z MIN/LOW/HIGH, VM_STAT = zoneinfo", c_kmem_z_watermarks),
    ("crash kmem -i TOTAL MEM/FREE/USED = meminfo", c_kmem_i),
    ("nr_free_pages, global_zone_page_state, zone_page_state", c_vmstat_helpers),
    ("min/low/high_wmark_pages = zoneinfo", c_wmark_helpers),
    ("free_area lists: entries, PageBuddy, order", c_free_lists),
    ("per-CPU lists: pages walked = per_cpu_pages.count", c_pcp_lists),
    ("compound pages: compound_order/compound_nr/compound_head", c_compound),
]

# Too slow for every run (a drgn loop over every struct page): run only when ``only`` names it.
PAGE_ALLOC_SLOW_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_page census: PageHead/PageTail/buddy = page-types", c_page_census),
]
