"""Cross-check mmintro's reader against real drgn on the same snapshot.

Each check computes one answer with mmintro's reader (objects, helpers, numpy columns) and
one with drgn's stock helpers and crash commands, and compares them.  drgn is the oracle:
it walks the snapshot's own page tables (the core has no virtual segments) and knows
nothing of the simulator.  New subsystems add checks to CHECKS.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmintro.reader import Program, open_snapshot
from mmintro.reader.columns import present_pfn_mask
from mmintro.reader.helpers import mm as mmh
from mmintro.reader.helpers import mmzone as mz

__all__ = ["CHECKS", "SLOW_CHECKS", "CheckResult", "NotApplicable", "open_drgn", "open_drgn_real", "run_crosscheck"]


@dataclass
class CheckResult:
    """One row of ``mmintro crosscheck``."""

    name: str  #: what is compared
    mmintro: str  #: mmintro's answer (abbreviated)
    drgn: str  #: drgn's answer (abbreviated)
    ok: bool  #: whether they agree
    detail: str = ""  #: the first difference, if any
    #: why the row compared nothing (both answers empty on a snapshot without what it needs,
    #: e.g. "no user processes"); such a row is reported as not applicable, not as passed
    skipped: str = ""
    #: the tool the row compares with ("drgn", or "crash": then :attr:`drgn` holds crash's answer)
    oracle: str = "drgn"


def open_drgn(vmcore: str, vmlinux: str) -> Any:
    """The snapshot in real drgn, with its crash commands loaded."""
    import logging

    import drgn
    import drgn.commands._crash

    from mmintro.reader.errors import SnapshotError

    prog = drgn.Program()
    log = logging.getLogger("drgn")
    level = log.level
    log.setLevel(logging.ERROR)  # (its warnings, e.g. "can't find kernel modules", are not our stderr's)
    try:
        prog.set_core_dump(vmcore)
        prog.load_debug_info([vmlinux])
    except Exception as e:  # damaged DWARF or core: drgn's BadDataError, MissingDebugInfoError, ...
        raise SnapshotError(
            f"drgn {drgn.__version__} cannot read the snapshot ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
    finally:
        log.setLevel(level)
    return prog


def crash(dprog: Any, cmd: str) -> str:
    from drgn.commands import run_command

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_command(dprog, f"crash {cmd}")
    except SystemExit:  # the command's argparse gave up on what it read (a corrupt snapshot): a failed row
        lines = err.getvalue().strip().splitlines()
        raise RuntimeError(f"drgn's crash {cmd} failed: {lines[-1] if lines else 'exit'}") from None
    return out.getvalue()


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _diff(a: Any, b: Any) -> str:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"[{i}]: {x!r} != {y!r}"
    return f"{a!r} != {b!r}"


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
    mine = [(hex(a), int(mmh.follow_phys(p, a).value_())) for a in addrs]
    init_mm = d["init_mm"].address_of_()
    theirs = [(hex(a), follow_phys(init_mm, a).value_()) for a in addrs]
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


def _has_constant(d: Any, name: str) -> bool:
    try:
        d.constant(name)
    except LookupError:
        return False
    return True


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


# -- SLUB and vmalloc ---------------------------------------------------------------------------
def c_slab_caches(p: Program, d: Any) -> tuple:
    """``for_each_slab_cache``: the same caches (address, name) in the same order."""
    from drgn.helpers.linux.slab import for_each_slab_cache

    from mmintro.reader.helpers import slab as sh

    return (
        [(int(c.value_()), sh.slab_cache_name(c)) for c in sh.for_each_slab_cache(p)],
        [(c.value_(), c.name.string_().decode()) for c in for_each_slab_cache(d)],
    )


def _d_slabinfo(d: Any, cache: Any) -> tuple:
    """6.18 get_slabinfo() computed with drgn's objects and list walk (count_partial_free_approx
    below MAX_PARTIAL_TO_SCAN partial slabs): (active_objs, num_objs, num_slabs, objperslab,
    pagesperslab)."""
    from drgn.helpers.linux.list import validate_list_for_each_entry
    from drgn.helpers.linux.slab import slab_cache_objects_per_slab, slab_cache_pages_per_slab

    slabs = objs = free = 0
    for nid in range(d["nr_node_ids"].value_()):
        n = cache.node[nid]
        if not n:
            continue
        slabs += n.nr_slabs.counter.value_()
        objs += n.total_objects.counter.value_()
        for sl in validate_list_for_each_entry("struct slab", n.partial.address_of_(), "slab_list"):
            free += sl.objects.value_() - sl.inuse.value_()
    return objs - free, objs, slabs, slab_cache_objects_per_slab(cache), slab_cache_pages_per_slab(cache)


def c_slab_usage(p: Program, d: Any) -> tuple:
    """Per cache: ``slab_cache_usage`` (num_slabs, num_objs, free_objs) = drgn's, and the
    /proc/slabinfo numbers (active_objs, num_objs, num_slabs, objperslab, pagesperslab) = 6.18's
    get_slabinfo() recomputed from drgn's objects."""
    from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage

    from mmintro.reader.helpers import slab as sh
    from mmintro.views.slabinfo import slabinfo

    info = {r.cache: r for r in slabinfo(p)}
    mine = []
    for c in sh.for_each_slab_cache(p):
        u, r = sh.slab_cache_usage(c), info[c.value_()]
        mine.append((r.name, tuple(u), (r.active_objs, r.num_objs, r.num_slabs, r.objperslab, r.pagesperslab)))
    theirs = [
        (c.name.string_().decode(), tuple(slab_cache_usage(c)), _d_slabinfo(d, c)) for c in for_each_slab_cache(d)
    ]
    return mine, theirs


def _d_slab_pages(d: Any) -> dict[int, list]:
    """drgn's for_each_page census of PageSlab pages by ``slab->slab_cache`` (once per program)."""
    got = d.cache.get("mmintro.slab_pages")
    if got is None:
        from drgn import cast
        from drgn.helpers.linux.mm import PageSlab, for_each_page

        got = {}
        for page in for_each_page(d):
            if PageSlab(page):
                got.setdefault(cast("struct slab *", page).slab_cache.value_(), []).append(page)
        d.cache["mmintro.slab_pages"] = got
    return got


def c_slab_objects(p: Program, d: Any) -> tuple:
    """The allocated objects of every cache: mmintro's columnar census = drgn's
    slab_cache_for_each_allocated_object().  drgn's helper scans every struct page once per
    cache (~1 s per GiB each); here its for_each_page census runs once and its per-slab object
    walk (``_page_objects``: freelist decoding, per-CPU freelists, sheaves) runs on each cache's
    slabs, exactly as the helper does.  Each side is (name, count, first objects only it has)."""
    from mmintro.reader.helpers.slab import slab_census

    census = slab_census(p)
    mine, theirs = [], []
    for c, got in d_allocated_objects(d):
        co = census[c.value_()]
        have = set(co.objects[co.allocated].tolist())
        mine.append((co.name, len(have), sorted(have - got)[:3]))
        theirs.append((c.name.string_().decode(), len(got), sorted(got - have)[:3]))
    return mine, theirs


def d_allocated_objects(d: Any) -> list[tuple[Any, set[int]]]:
    """(cache, its allocated object addresses) for every cache, by drgn:
    slab_cache_for_each_allocated_object()'s per-slab walk (``_page_objects``: freelist decoding,
    per-CPU freelists, sheaves) on the slabs of one shared for_each_page census
    (:func:`_d_slab_pages`) instead of a struct-page scan per cache."""
    from drgn import cast
    from drgn.helpers.linux.slab import _get_slab_cache_helper, for_each_slab_cache

    pages = _d_slab_pages(d)
    ptr = d.pointer_type(d.type("void"))
    out = []
    for c in for_each_slab_cache(d):
        h = _get_slab_cache_helper(c)
        h._cache_free_objects = h._sheaves_full_objects() | h._per_cpu_info().free_objects
        got: set[int] = set()
        for page in pages.get(c.value_(), []):
            got.update(o.value_() for o in h._page_objects(page, cast("struct slab *", page), ptr))
        out.append((c, got))
    return out


def _slab_samples(p: Program, n: int = 40) -> list[int]:
    """Object addresses (allocated and free, some inside the object) from many caches, and a
    few addresses that are not in slab pages."""
    from mmintro.reader.helpers.slab import slab_census

    rng = random.Random(1)
    out = []
    census = [c for c in slab_census(p).values() if len(c.objects)]
    for c in rng.sample(census, min(len(census), n)):
        for sel in (c.allocated, ~c.allocated):
            objs = c.objects[sel]
            if len(objs):
                out.append(int(objs[rng.randrange(len(objs))]) + rng.choice([0, 8, c.object_size - 1]))
    pob = int(p["page_offset_base"].value_())
    out += [pob + (1 << 20), int(p.symbol("init_mm").address), int(p["vmalloc_base"].value_())]
    return out


def _d_direct_map_end(d: Any) -> int:
    """Where drgn's in_direct_map() ends: ``__va(max_low_pfn + 1)``.  On x86-64 the kernel's
    init_mem_mapping() sets max_low_pfn = max_pfn, so this is the end of RAM; where a snapshot
    has a smaller max_low_pfn, drgn's slab helpers see no slab above it and the slab samples
    stay below it."""
    return d["page_offset_base"].value_() + ((d["max_low_pfn"].value_() + 1) << 12)


def c_slab_object_info(p: Program, d: Any) -> tuple:
    """``slab_object_info`` (cache, object start, allocated) and ``find_containing_slab_cache``
    on allocated and free objects of many caches and on non-slab addresses."""
    from drgn.helpers.linux.slab import find_containing_slab_cache, slab_object_info

    from mmintro.reader.helpers import slab as sh

    def mine_one(a: int) -> tuple:
        i = sh.slab_object_info(p, a)
        info = None if i is None else (int(i.slab_cache.value_()), int(i.slab.value_()), i.address, i.allocated)
        return hex(a), info, int(sh.find_containing_slab_cache(p, a).value_())

    def theirs_one(a: int) -> tuple:
        i = slab_object_info(d, a)
        info = None if i is None else (i.slab_cache.value_(), i.slab.value_(), i.address, i.allocated)
        return hex(a), info, find_containing_slab_cache(d, a).value_()

    addrs = [a for a in _slab_samples(p) if a < _d_direct_map_end(d)]
    return [mine_one(a) for a in addrs], [theirs_one(a) for a in addrs]


def c_vmap_areas(p: Program, d: Any) -> tuple:
    """``for_each_vmap_area``: the same areas in the same order, with their vm_struct's size,
    flags, nr_pages and caller (``symbol+0xoff``)."""
    from drgn.helpers.linux.mm import for_each_vmap_area

    from mmintro.reader.helpers import vmalloc as vh

    def caller(prog: Any, addr: int) -> str | None:
        try:
            s = prog.symbol(addr)
        except LookupError:
            return None if not addr else hex(addr)
        return f"{s.name}+{addr - s.address:#x}"

    def row(prog: Any, va: Any) -> tuple:
        vm = va.vm
        if not vm.value_():
            return va.value_(), va.va_start.value_(), va.va_end.value_(), 0
        return (
            va.value_(),
            va.va_start.value_(),
            va.va_end.value_(),
            vm.value_(),
            vm.size.value_(),
            vm.flags.value_(),
            vm.nr_pages.value_(),
            caller(prog, vm.caller.value_()),
        )

    return [row(p, va) for va in vh.for_each_vmap_area(p)], [row(d, va) for va in for_each_vmap_area(d)]


def _vmalloc_samples(p: Program) -> list[int]:
    from mmintro.reader.helpers import vmalloc as vh

    rng = random.Random(2)
    areas = [(va.va_start.value_(), va.va_end.value_()) for va in vh.for_each_vmap_area(p)]
    out = [rng.randrange(a, b) for a, b in rng.sample(areas, min(40, len(areas)))]
    out += [b - 1 for a, b in areas[:5]]  # guard pages
    out += [va.va_start.value_() for _i, va in zip(range(5), vh.for_each_lazy_vmap_area(p))]
    base = vh.VMALLOC_START(p)
    out += [base + rng.randrange(1 << 40) for _ in range(10)]  # mostly holes
    return out


def c_find_vmap_area(p: Program, d: Any) -> tuple:
    """``find_vmap_area`` and ``vmalloc_to_page`` on addresses in areas, guard pages, lazily
    freed areas and holes (None where the address is unmapped)."""
    import drgn
    from drgn.helpers.linux.mm import find_vmap_area, vmalloc_to_page

    from mmintro.reader.errors import FaultError
    from mmintro.reader.helpers import vmalloc as vh

    mine, theirs = [], []
    for a in _vmalloc_samples(p):
        va = int(vh.find_vmap_area(p, a).value_())
        try:
            page = int(vh.vmalloc_to_page(p, a).value_()) if va else None
        except FaultError:
            page = None
        mine.append((hex(a), va, page))
        dva = find_vmap_area(d, a).value_()
        try:
            dpage = vmalloc_to_page(d, a).value_() if dva else None
        except drgn.FaultError:
            dpage = None
        theirs.append((hex(a), dva, dpage))
    return mine, theirs


def c_kmem_s_slabinfo(p: Program, d: Any) -> tuple:
    """``crash kmem -s``: per cache CACHE, OBJSIZE, TOTAL, SLABS and SSIZE = mmintro's
    /proc/slabinfo (num_objs, num_slabs, pagesperslab) and ``object_size``; ALLOCATED =
    mmintro's slab_cache_usage() active objects (crash counts from SLUB's inuse counters)."""
    from mmintro.reader.helpers import slab as sh
    from mmintro.views.slabinfo import slabinfo

    caches = {c.value_(): c for c in sh.for_each_slab_cache(p)}
    mine = []
    for r in slabinfo(p):
        c = caches[r.cache]
        mine.append(
            (
                f"{r.cache:x}",
                str(c.object_size.value_()),
                str(sh.slab_cache_usage(c).active_objs),
                str(r.num_objs),
                str(r.num_slabs),
                f"{r.pagesperslab * p.page_size // 1024}k",
                r.name,
            )
        )
    theirs = [tuple(line.split()) for line in crash(d, "kmem -s").splitlines()[1:] if line.strip()]
    return mine, theirs


def c_kmem_v_vmallocinfo(p: Program, d: Any) -> tuple:
    """``crash kmem -v`` (VMAP_AREA, VM_STRUCT, range, size) = the busy areas of mmintro's
    /proc/vmallocinfo, and their callers = drgn's identify_address() of each area."""
    from drgn.helpers.common.memory import identify_address_all
    from drgn.helpers.linux.common import IdentifiedVmap

    from mmintro.views.vmallocinfo import vmallocinfo

    rows = [r for r in vmallocinfo(p) if r.words != ["unpurged vm_area"]]
    mine = [
        (
            r.vmap_area,
            r.vm_struct,
            r.start,
            r.end,
            r.size,
            r.caller.rsplit("/", 1)[0] if r.caller and "+" in r.caller else r.caller,
        )
        for r in rows
    ]
    theirs = []
    for line in crash(d, "kmem -v").splitlines()[1:]:
        f = line.split()
        if len(f) != 6 or f[3] != "-":
            continue
        va, vm, start, end, size = int(f[0], 16), int(f[1], 16), int(f[2], 16), int(f[4], 16), int(f[5])
        caller = None
        for ident in identify_address_all(d, start):
            if isinstance(ident, IdentifiedVmap):
                m = re.search(r" caller (\S+)$", str(ident))
                caller = m.group(1) if m else None
        theirs.append((va, vm, start, end, size, caller))
    return mine, theirs


def _whatis_samples(p: Program, d: Any) -> list[int]:
    """Addresses of every kind whatis knows that a snapshot has (slab objects allocated and
    free, buddy and per-CPU-list pages, vmalloc pages and guard pages, plain and page-table
    pages, struct pages, symbols, per-CPU variables, holes)."""
    from mmintro.reader.columns import page_array
    from mmintro.reader.helpers import vmalloc as vh
    from mmintro.reader.helpers.percpu import for_each_online_cpu
    from mmintro.reader.helpers.slab import slab_census
    from mmintro.views import whatis as wv

    rng = random.Random(3)
    pob = int(p["page_offset_base"].value_())
    out: list[int] = []
    end = _d_direct_map_end(d)
    census = [c for c in slab_census(p).values() if c.nr_allocated and c.nr_free]
    for c in rng.sample(census, min(6, len(census))):
        out += [int(a) + 8 for a in c.objects[c.allocated][:1] if a < end]
        out += [int(a) for a in c.objects[~c.allocated][-1:] if a < end]
    for _nid, _i, _name, z in _populated(p):
        for o in range(len(z.free_area) - 1, -1, -1):
            fl = z.free_area[o].free_list
            heads = [
                int(fl[mt].next.value_())
                for mt in range(len(fl))
                if int(fl[mt].next.value_()) != int(fl[mt].address_of_().value_())
            ]
            if heads:
                pfn = (heads[0] - int(mmh.vmemmap(p).value_())) // 64
                out.append(pob + ((pfn + (1 << o) - 1) << 12) + 16)
                break
    pcp = sorted(wv._pcp_blocks(p))
    out += [pob + (pfn << 12) + 64 for pfn in pcp[:2]]
    # not ioremapped areas: drgn 0.3.0's ``crash kmem ADDR`` then prints the struct page of the
    # mapped pfn, which is not RAM and has no struct page (FaultError in _print_pages_default_members)
    areas = [
        (va.va_start.value_(), va.va_end.value_())
        for va in vh.for_each_vmap_area(p)
        if not (va.vm.value_() and va.vm.flags.value_() & vh.VM_IOREMAP)
    ]
    for a, b in areas[:: max(1, len(areas) // 4)]:
        out += [a + 0x10, b - 8]
    types = page_array(p, {"page_type": "page_type"})["page_type"] >> np.uint32(24)
    tables = np.flatnonzero((types == p.types.const("PGTY_table")) & present_pfn_mask(p))
    out += [pob + (int(t) << 12) + 0x100 for t in tables[:2]]
    out += [int(mmh.vmemmap(p).value_()) + pfn * 64 + 8 for pfn in (0x1000, 0x12345)]
    out += [int(p.symbol(n).address) + 8 for n in ("node_data", "init_mm", "slab_caches")]
    # per_cpu_ptr() wraps: since 6.15 x86-64 per-CPU symbols are kernel addresses and
    # __per_cpu_offset[cpu] is relative to __per_cpu_start
    out += [
        (int(p["__per_cpu_offset"][cpu].value_()) + int(p.symbol("hardirq_stack_ptr").address)) & 0xFFFFFFFFFFFFFFFF
        for cpu in for_each_online_cpu(p)
    ]
    out += [pob + 0x3000000, vh.VMALLOC_START(p) + (1 << 40), 0xFFFF800000000000]
    return out


def _kmem_addr_facts(out: str) -> list[tuple]:
    """The comparable facts in drgn's ``crash kmem ADDR`` output: the symbol, the slab object
    (cache, object, allocated), the vmap area, the struct page."""
    facts = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        f = line.split()
        if not f:
            continue
        if len(f) >= 3 and f[1] == "(?)":
            name, _, off = f[2].partition("+")
            facts.append(("symbol", name, int(off or 0)))
        elif f[0] == "CACHE" and i + 1 < len(lines):
            cache = int(lines[i + 1].split()[0], 16)
            j = next(k for k in range(i, len(lines)) if "FREE / [ALLOCATED]" in lines[k])
            obj = lines[j + 1].strip()
            facts.append(("slab", cache, int(obj.strip("[]"), 16), obj.startswith("[")))
        elif f[0] == "VMAP_AREA" and i + 1 < len(lines):
            g = lines[i + 1].split()
            facts.append(("vmap", int(g[0], 16), int(g[1], 16), int(g[2], 16), int(g[4], 16)))
        elif f[0] == "PAGE" and i + 1 < len(lines):
            facts.append(("page", int(lines[i + 1].split()[0], 16)))
    return facts


def _whatis_facts(w: dict) -> list[tuple]:
    k = w["kind"]
    facts: list[tuple] = []
    if k == "symbol" and w.get("symbol"):
        facts.append(("symbol", w["symbol"], w["offset"]))
    elif k == "slab":
        facts.append(("slab", w["cache"], w["object"], w["allocated"]))
    elif k == "vmalloc":
        facts.append(("vmap", w["vmap_area"], w["vm_struct"], w["start"], w["end"]))
    if "page" in w and k not in ("vmalloc_lazy", "vmalloc_hole", "unmapped") and (k != "vmalloc" or w.get("mapped")):
        facts.append(("page", w["page"]))
    return facts


def c_kmem_addr_whatis(p: Program, d: Any) -> tuple:
    """``crash kmem ADDR`` on sample addresses of every kind = mmintro's whatis: the same
    symbol, slab object (cache, object start, allocated), vmap area, and struct page behind
    the address (nothing for unmapped ones).  Each row is labelled with whatis's kind."""
    from mmintro.views.whatis import whatis

    addrs = _whatis_samples(p, d)
    mine = [(hex(a), w["kind"], _whatis_facts(w)) for a, w in ((a, whatis(p, a)) for a in addrs)]
    theirs = [(hex(a), m[1], _kmem_addr_facts(crash(d, f"kmem {a:x}"))) for a, m in zip(addrs, mine)]
    return mine, theirs


CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
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
    ("crash kmem -f per order = buddyinfo", c_kmem_f_orders),
    ("crash kmem -z MIN/LOW/HIGH, VM_STAT = zoneinfo", c_kmem_z_watermarks),
    ("crash kmem -i TOTAL MEM/FREE/USED = meminfo", c_kmem_i),
    ("nr_free_pages, global_zone_page_state, zone_page_state", c_vmstat_helpers),
    ("min/low/high_wmark_pages = zoneinfo", c_wmark_helpers),
    ("free_area lists: entries, PageBuddy, order", c_free_lists),
    ("per-CPU lists: pages walked = per_cpu_pages.count", c_pcp_lists),
    ("compound pages: compound_order/compound_nr/compound_head", c_compound),
    ("for_each_slab_cache: caches in order", c_slab_caches),
    ("slab_cache_usage and slabinfo numbers per cache", c_slab_usage),
    ("allocated objects of every cache: columnar walk = drgn", c_slab_objects),
    ("slab_object_info/find_containing_slab_cache on samples", c_slab_object_info),
    ("for_each_vmap_area: areas, vm_structs, callers", c_vmap_areas),
    ("find_vmap_area/vmalloc_to_page on samples", c_find_vmap_area),
    ("crash kmem -s = slabinfo", c_kmem_s_slabinfo),
    ("crash kmem -v areas/callers = vmallocinfo", c_kmem_v_vmallocinfo),
    ("crash kmem ADDR = whatis on every kind", c_kmem_addr_whatis),
]

# Checks too slow for every run (a drgn loop over every struct page): run_crosscheck runs
# them only when ``only`` names them (``mmintro crosscheck --only census``).
SLOW_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_page census: PageHead/PageTail/buddy = page-types", c_page_census),
]


class NotApplicable(Exception):
    """Raised by a check that cannot compare anything on this dump; the message says why."""


def _real_dump(p: Program) -> bool:
    return getattr(p, "kernel_image", None) is not None


def _set_core_dump(prog: Any, vmcore: str, flattened: bool, core: Any) -> None:
    import tempfile

    if not flattened:
        prog.set_core_dump(vmcore)
        return
    from mmintro.reader.diskdump import open_core

    mine = core if core is not None else open_core(vmcore)
    try:
        with tempfile.NamedTemporaryFile(prefix="mmintro-drgn-", suffix=".kdump") as tmp:
            tmp.write(mine.buf)
            tmp.flush()
            prog.set_core_dump(tmp.name)  # drgn keeps its own descriptor open
    finally:
        if core is None:
            mine.close()


def open_drgn_real(vmcore: str, debug_file: str, core: Any = None) -> Any:
    """A real kernel's dump in real drgn with a debug file made by
    :func:`mmintro.snapshot.debuginfo.write_debuginfo` (forced onto the main module: no debug
    package is looked for), crash commands loaded.

    drgn's libkdumpfile does not read makedumpfile's *flattened* layout (what QEMU before 8.2
    writes for ``dump-guest-memory -z``): such a file is given to drgn reassembled
    (``makedumpfile -R``), from mmintro's reading of it (``core``, else opened here), in an
    unlinked temporary file.  (drgn 0.3.0's libkdumpfile still rejects QEMU 7.2's kdump files
    reassembled: "KDUMP_ATTR_ARCH_NAME: Key has no value"; that is one line, SnapshotError.)"""
    import logging

    import drgn
    import drgn.commands._crash

    from mmintro.reader.errors import SnapshotError

    prog = drgn.Program()
    with open(vmcore, "rb") as f:
        head = f.read(12)
    flattened = head == b"makedumpfile"
    try:
        _set_core_dump(prog, vmcore, flattened, core)
    except SnapshotError:
        raise
    except Exception as e:  # drgn raises plain Exception for libkdumpfile's errors
        kind = "kdump-compressed " if flattened or head[:8] == b"KDUMP   " else ""
        raise SnapshotError(
            f"drgn {drgn.__version__} cannot open the {kind}dump {vmcore!r} "
            f"({' '.join(str(e).split())}); give drgn the ELF dump"
        ) from None
    log = logging.getLogger("drgn")
    level = log.level
    log.setLevel(logging.ERROR)  # "can't find loaded modules without kernel debug info"
    try:
        prog.create_loaded_modules()
    finally:
        log.setLevel(level)
    prog.main_module().try_file(debug_file, force=True)
    panic_cpu = prog["panic_cpu"].value_()
    if isinstance(panic_cpu, dict):  # atomic_t
        panic_cpu = panic_cpu["counter"]
    if panic_cpu < 0:
        # A dump taken from outside (QEMU's dump-guest-memory, virsh dump) has no panicking
        # task; crash then takes the task current on CPU 0 as its context (its ``set -c 0``).
        from drgn.helpers.linux.sched import cpu_curr

        prog.config["crash_context"] = cpu_curr(prog, 0)
    return prog


def run_crosscheck(
    path: str, only: list[str] | None = None, kernel: str | None = None, system_map: str | None = None
) -> list[CheckResult]:
    """Run the checks on a snapshot, or with ``kernel`` on a real kernel's dump: its debug info
    for drgn is generated from the image's BTF and the dump's symbols
    (:func:`mmintro.snapshot.debuginfo.cached_debuginfo`)."""
    if kernel is not None:
        from mmintro.reader.dump import open_dump
        from mmintro.snapshot.debuginfo import cached_debuginfo

        prog = open_dump(path, kernel, system_map)
        dprog = open_drgn_real(path, str(cached_debuginfo(prog)), core=prog.core)
    else:
        from mmintro.snapshot.writer import snapshot_paths

        prog = open_snapshot(path)
        core, vmlinux = snapshot_paths(path)
        dprog = open_drgn(str(core), str(vmlinux))
    results = []
    checks = [c for c in CHECKS if not only or any(o in c[0] for o in only)]
    checks += [c for c in SLOW_CHECKS if only and any(o in c[0] for o in only)]
    for name, fn in checks:
        try:
            a, b = fn(prog, dprog)
            ok = a == b
            needs = getattr(fn, "needs", None)
            skipped = f"no {needs} in the snapshot" if ok and needs and a in ([], ()) else ""
            results.append(CheckResult(name, _short(a), _short(b), ok, "" if ok else _diff(a, b), skipped))
        except NotApplicable as e:
            results.append(CheckResult(name, "-", "-", True, "", str(e)))
        except Exception as e:  # a check that cannot run is a failed check, not a crash
            results.append(CheckResult(name, "error", "error", False, f"{type(e).__name__}: {e}"))
    return results


# processes (mmintro.crosscheck_tasks)
from mmintro.crosscheck_tasks import TASK_CHECKS  # noqa: E402

CHECKS += TASK_CHECKS

# swap devices, totals, swapped-out addresses (mmintro.crosscheck_swap)
from mmintro.crosscheck_swap import SWAP_CHECKS  # noqa: E402

CHECKS += SWAP_CHECKS
