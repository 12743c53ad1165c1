"""Rows for nodes, zones, memory sections, pfn_to_page and the kernel's page tables (mm/mm_init.c,
mm/sparse.c): drgn's mmzone/mm helpers and its ``crash kmem -z/-n/-f`` and ``vtop``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from mmintro.crosscheck.answers import Addr
from mmintro.crosscheck.drgn import crash
from mmintro.reader import Program
from mmintro.reader.columns import present_pfn_mask
from mmintro.reader.helpers import mm as mmh
from mmintro.reader.helpers import mmzone as mz


# -- the checks: each returns (mmintro answer, drgn answer) ----------------------------------
def c_pgdats(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    return (
        [int(pg.node_id.value_()) for pg in mz.for_each_online_pgdat(p)],
        [pg.node_id.value_() for pg in for_each_online_pgdat(d)],
    )


ZONE_FIELDS = ("zone_start_pfn", "spanned_pages", "present_pages")


def c_zones(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    mine = []
    for pg in mz.for_each_online_pgdat(p):
        for z in _zones(pg):
            mine.append(
                (
                    int(pg.node_id.value_()),
                    z.name.string_().decode(),
                    *[int(z.member_(f).value_()) for f in ZONE_FIELDS],
                    int(z.managed_pages.counter.value_()),
                )
            )
    theirs = []
    for pg in for_each_online_pgdat(d):
        for i in range(len(pg.node_zones)):
            z = pg.node_zones[i]
            theirs.append(
                (
                    pg.node_id.value_(),
                    z.name.string_().decode(),
                    *[z.member_(f).value_() for f in ZONE_FIELDS],
                    z.managed_pages.counter.value_(),
                )
            )
    return mine, theirs


def _zones(pg: Any) -> list:
    n = pg.node_zones.type_.resolved().nelems
    return [pg.node_zones[i] for i in range(n)]


def c_totalram(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.mm import totalram_pages

    return int(mmh.totalram_pages(p)), totalram_pages(d)


def c_for_each_page(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.mm import for_each_page

    return int(present_pfn_mask(p).sum()), sum(1 for _ in for_each_page(d))


def _sample_pfns(p: Program) -> list[int]:
    out = []
    for s in mz.for_each_present_section(p):
        base = s.nr << 15
        out += [base, base + 12345, base + (1 << 15) - 1]
    return out


def c_pfn_to_page(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.mm import page_to_pfn, pfn_to_page

    pfns = _sample_pfns(p)
    mine = [
        (pfn, int(mmh.pfn_to_page(p, pfn).value_()), int(mmh.page_to_pfn(mmh.pfn_to_page(p, pfn)).value_()))
        for pfn in pfns
    ]
    theirs = [(pfn, pfn_to_page(d, pfn).value_(), page_to_pfn(pfn_to_page(d, pfn)).value_()) for pfn in pfns]
    return mine, theirs


def _sample_vaddrs(p: Program, n: int = 64) -> list[int]:
    rng = random.Random(0)
    pob = int(p["page_offset_base"].value_())
    out = []
    ram = [(int(s.nr) << 27, (int(s.nr) + 1) << 27) for s in mz.for_each_present_section(p)]
    mask = present_pfn_mask(p)
    for _ in range(n):
        a, b = ram[rng.randrange(len(ram))]
        pa = rng.randrange(a, b) & ~7
        if (
            pa >> 12 < len(mask)
            and mask[pa >> 12]
            and not (int(mmh.PageReserved(mmh.pfn_to_page(p, pa >> 12))) and pa < 1 << 20)
        ):
            out.append(pob + pa)
    vm = int(mmh.vmemmap(p).value_())
    for s in list(mz.for_each_present_section(p))[:8]:
        out.append(vm + (int(s.nr) << 15) * 64 + rng.randrange(0, 64 << 15) & ~7)
    for name in ("node_data", "init_mm", "swapper_pg_dir", "mem_section", "_totalram_pages", "iomem_resource"):
        out.append(int(p.symbol(name).address))
    return out


def c_follow_phys(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.mm import follow_phys

    addrs = _sample_vaddrs(p)
    mine = [(hex(a), Addr(mmh.follow_phys(p, a).value_())) for a in addrs]
    init_mm = d["init_mm"].address_of_()
    theirs = [(hex(a), Addr(follow_phys(init_mm, a).value_())) for a in addrs]
    return mine, theirs


def c_kmem_z(p: Program, d: Any) -> tuple:
    out = crash(d, "kmem -z")
    theirs = [
        (int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4) or 0))
        for m in re.finditer(
            r"NODE: (\d+)\s+ZONE: \d+\s+ADDR: \w+\s+NAME: \"(\w+)\"\s+SIZE: (\d+)(?:\s+PRESENT: (\d+))?", out
        )
    ]
    mine = []
    for pg in mz.for_each_online_pgdat(p):
        for z in _zones(pg):
            if int(z.spanned_pages.value_()):
                spanned, present = int(z.spanned_pages.value_()), int(z.present_pages.value_())
                mine.append(
                    (int(pg.node_id.value_()), z.name.string_().decode(), spanned, present if present != spanned else 0)
                )
    free_theirs = [int(x) for x in re.findall(r"^\s+NR_FREE_PAGES\s+(\d+)", out, re.M)]
    free_mine = [
        int(z.vm_stat[0].counter.value_())
        for pg in mz.for_each_online_pgdat(p)
        for z in _zones(pg)
        if int(z.spanned_pages.value_())
    ]
    return (mine, free_mine), (theirs, free_theirs)


def c_kmem_n(p: Program, d: Any) -> tuple:
    out = crash(d, "kmem -n")
    theirs = [
        (int(m.group(1)), int(m.group(2), 16), int(m.group(3)))
        for m in re.finditer(r"^\s*(\d+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\w+\s+(\d+)\s*$", out, re.M)
    ]
    vm = int(mmh.vmemmap(p).value_())
    mine = [(int(s.nr), vm + (int(s.nr) << 15) * 64, int(s.nr) << 15) for s in mz.for_each_present_section(p)]
    return mine, theirs


def c_kmem_f(p: Program, d: Any) -> tuple:
    out = crash(d, "kmem -f")
    m = re.search(r"nr_free_pages: (\d+)\s+\(([^)]*)\)", out)  # "(verified)" or "(found N)"
    theirs = (int(m.group(1)), m.group(2)) if m else ("no summary", out[-200:])
    total = 0
    for pg in mz.for_each_online_pgdat(p):
        for z in _zones(pg):
            if int(z.spanned_pages.value_()):
                for o in range(len(z.free_area)):
                    total += int(z.free_area[o].nr_free.value_()) << o
    return (total, "verified"), theirs


def c_vtop(p: Program, d: Any) -> tuple:
    addrs = _sample_vaddrs(p)[:16]
    mine, theirs = [], []
    for a in addrs:
        mine.append((hex(a), hex(int(p.translate(a)))))
        out = crash(d, f"vtop {a:x}")
        m = re.search(rf"{a:x}\s+([0-9a-f]+)", out)
        theirs.append((hex(a), "0x" + m.group(1) if m else out.strip()[-80:]))
    return mine, theirs


# -- the page allocator: free lists, per-CPU lists, counters, compound pages -----------------
def _populated(p: Program) -> list[tuple[int, int, str, Any]]:
    """(nid, zone index, name, struct zone) of every populated zone, by mmintro's reader."""
    out = []
    for pg in mz.for_each_online_pgdat(p):
        for i, z in enumerate(_zones(pg)):
            if int(z.present_pages.value_()):
                out.append((int(pg.node_id.value_()), i, z.name.string_().decode(), z))
    return out


def _d_populated(d: Any) -> list[tuple[int, int, str, Any]]:
    """The same, by drgn."""
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    out = []
    for pg in for_each_online_pgdat(d):
        for i in range(len(pg.node_zones)):
            z = pg.node_zones[i]
            if z.present_pages.value_():
                out.append((pg.node_id.value_(), i, z.name.string_().decode(), z.address_of_()))
    return out


def _zone_stat_items(p: Program) -> list[tuple[str, int]]:
    return [(n, v) for n, v in p.types.enum("zone_stat_item").items() if n != "NR_VM_ZONE_STAT_ITEMS"]


def _has_constant(d: Any, name: str) -> bool:
    try:
        d.constant(name)
    except LookupError:
        return False
    return True


ZONE_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_online_pgdat", c_pgdats),
    ("zones: start/spanned/present/managed", c_zones),
    ("totalram_pages", c_totalram),
    ("for_each_page count", c_for_each_page),
    ("pfn_to_page/page_to_pfn per section", c_pfn_to_page),
    ("follow_phys(init_mm): direct map, vmemmap, image", c_follow_phys),
    ("crash kmem -z", c_kmem_z),
    ("crash kmem -n", c_kmem_n),
    ("crash kmem -f", c_kmem_f),
    ("crash vtop", c_vtop),
]
