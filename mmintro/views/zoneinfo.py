"""/proc/zoneinfo (mm/vmstat.c: zoneinfo_show, zoneinfo_show_print), read from a snapshot.

:func:`zoneinfo` computes one :class:`ZoneInfo` per zone of every online node; :func:`render`
prints them with the kernel's exact format strings; :func:`parse` reads /proc/zoneinfo text
(ours or a real kernel's) back into nested dicts, so the two can be compared key by key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from mmintro.reader.helpers.mmzone import for_each_online_pgdat
from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.reader.validate import check_pcp, check_zone, note
from mmintro.reader.x86_pgtable import LEVELS_4
from mmintro.views.vmstat_names import THP_PRINTED_ITEMS, stat_names

__all__ = ["PageSet", "ZoneInfo", "parse", "render", "to_json", "zoneinfo"]

# mm/internal.h: kswapd gives up on a node after this many reclaim failures; zoneinfo prints
# node_unreclaimable = (pgdat->kswapd_failures >= MAX_RECLAIM_RETRIES).
MAX_RECLAIM_RETRIES = 16


@dataclass
class PageSet:
    """One CPU's ``struct per_cpu_pages`` and its vmstat threshold."""

    cpu: int
    count: int
    high: int
    batch: int
    high_min: int
    high_max: int
    vm_stats_threshold: int


@dataclass
class ZoneInfo:
    """Everything /proc/zoneinfo prints for one zone (in pages unless the stat says kB)."""

    node: int
    zone: str
    populated: bool
    per_node_stats: dict[str, int] | None
    """node_stat_item values, only on the node's first populated zone."""
    pages: dict[str, int]
    """free, boost, min, low, high, promo, spanned, present, managed, cma."""
    protection: list[int]
    stats: dict[str, int] = field(default_factory=dict)
    """zone_stat_item then numa events (populated zones only)."""
    pagesets: list[PageSet] = field(default_factory=list)
    node_unreclaimable: int = 0
    start_pfn: int = 0


def _atomic(obj: Object) -> int:
    """An ``atomic_long_t``/``atomic_t`` value, or a plain integer."""
    try:
        return obj.counter.value_()
    except AttributeError:
        return obj.value_()


def _nonneg(v: int) -> int:
    # zone_page_state()/node_page_state_pages(): CONFIG_SMP clamps transient negatives to 0.
    return max(0, v)


def _node_stats(prog: Program, pgdat: Object) -> dict[str, int]:
    hpage_pmd_nr = 1 << (LEVELS_4[-2].shift - LEVELS_4[-1].shift)  # HPAGE_PMD_NR (512)
    vm_stat = pgdat.vm_stat
    out = {}
    for i, enumerator, name in stat_names(prog.types, "node_stat_item", "NR_VM_NODE_STAT_ITEMS"):
        v = _nonneg(_atomic(vm_stat[i]))
        if enumerator in THP_PRINTED_ITEMS:
            v //= hpage_pmd_nr
        out[name] = v
    return out


def _zone(prog: Program, pgdat: Object, zone: Object, first_populated: bool, cpus: list[int]) -> ZoneInfo:
    types = prog.types
    boost = zone.watermark_boost.value_()
    wmark = zone._watermark
    wm = types.enum("zone_watermarks")
    try:
        cma = zone.cma_pages.value_()
    except AttributeError:  # !CONFIG_CMA: zone_cma_pages() is 0
        cma = 0
    zone_items = stat_names(types, "zone_stat_item", "NR_VM_ZONE_STAT_ITEMS")
    free_idx = types.const("NR_FREE_PAGES")
    present = zone.present_pages.value_()
    info = ZoneInfo(
        node=pgdat.node_id.value_(),
        zone=zone.name.string_().decode("utf-8", "replace") if zone.name.value_() else "?",
        populated=bool(present),
        per_node_stats=_node_stats(prog, pgdat) if first_populated else None,
        pages={
            "free": _nonneg(_atomic(zone.vm_stat[free_idx])),
            "boost": boost,
            "min": wmark[wm["WMARK_MIN"]].value_() + boost,
            "low": wmark[wm["WMARK_LOW"]].value_() + boost,
            "high": wmark[wm["WMARK_HIGH"]].value_() + boost,
            "promo": wmark[wm["WMARK_PROMO"]].value_() + boost,
            "spanned": zone.spanned_pages.value_(),
            "present": present,
            "managed": _atomic(zone.managed_pages),
            "cma": cma,
        },
        protection=[v for v in zone.lowmem_reserve.value_()],
    )
    if not info.populated:  # "If unpopulated, no other information is useful"
        return info
    for i, _e, name in zone_items:
        info.stats[name] = _nonneg(_atomic(zone.vm_stat[i]))
    # fold_vm_zone_numa_events(): the per-CPU numa counters are folded into the zone's.
    numa = stat_names(types, "numa_stat_item", "NR_VM_NUMA_EVENT_ITEMS")
    zonestats = [per_cpu_ptr(zone.per_cpu_zonestats, cpu) for cpu in cpus]
    for i, _e, name in numa:
        per_cpu = sum(z.vm_numa_event[i].value_() for z in zonestats)
        info.stats[name] = _atomic(zone.vm_numa_event[i]) + per_cpu
    for cpu, pzstats in zip(cpus, zonestats):
        pcp = per_cpu_ptr(zone.per_cpu_pageset, cpu)
        info.pagesets.append(
            PageSet(
                cpu,
                pcp.count.value_(),
                pcp.high.value_(),
                pcp.batch.value_(),
                pcp.high_min.value_(),
                pcp.high_max.value_(),
                pzstats.stat_threshold.value_(),
            )
        )
    info.node_unreclaimable = int(_atomic(pgdat.kswapd_failures) >= MAX_RECLAIM_RETRIES)
    info.start_pfn = zone.zone_start_pfn.value_()
    return info


def zoneinfo(prog: Program) -> list[ZoneInfo]:
    """Every zone of every online node, in the order /proc/zoneinfo prints them."""
    cpus = list(for_each_online_cpu(prog))
    out = []
    for pgdat in for_each_online_pgdat(prog):
        nr = len(pgdat.node_zones)
        zones = [pgdat.node_zones[i] for i in range(nr)]
        first = next((i for i, z in enumerate(zones) if z.present_pages.value_()), None)
        for i, z in enumerate(zones):
            out.append(_zone(prog, pgdat, z, i == first, cpus))
            note(prog, check_zone(z) + check_pcp(z))  # page counts, watermarks, pcp->count
    return out


def render(zones: list[ZoneInfo]) -> str:
    """The /proc/zoneinfo text (zoneinfo_show_print's format strings)."""
    parts: list[str] = []
    w = parts.append
    for z in zones:
        w(f"Node {z.node}, zone {z.zone:>8}")
        if z.per_node_stats is not None:
            w("\n  per-node stats")
            for name, v in z.per_node_stats.items():
                w(f"\n      {name:<12} {v}")
        p = z.pages
        w(f"\n  pages free     {p['free']}")
        for key in ("boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma"):
            w(f"\n        {key:<8} {p[key]}")
        w("\n        protection: (" + ", ".join(str(v) for v in z.protection) + ")")
        if not z.populated:
            w("\n")
            continue
        for name, v in z.stats.items():
            w(f"\n      {name:<12} {v}")
        w("\n  pagesets")
        for ps in z.pagesets:
            w(
                f"\n    cpu: {ps.cpu}"
                f"\n              count:    {ps.count}"
                f"\n              high:     {ps.high}"
                f"\n              batch:    {ps.batch}"
                f"\n              high_min: {ps.high_min}"
                f"\n              high_max: {ps.high_max}"
            )
            w(f"\n  vm stats threshold: {ps.vm_stats_threshold}")
        w(f"\n  node_unreclaimable:  {z.node_unreclaimable}\n  start_pfn:           {z.start_pfn}\n")
    return "".join(parts)


def to_json(zones: list[ZoneInfo]) -> list[dict[str, Any]]:
    """The zones as JSON-ready dicts (pagesets as a list of objects)."""
    return [dataclasses.asdict(z) for z in zones]


_HEADER = re.compile(r"^Node (\d+), zone +(\S+)$")
_CPU = re.compile(r"^    cpu: (\d+)$")


def parse(text: str) -> list[dict[str, Any]]:
    """/proc/zoneinfo text → a list of zones: ``{"node", "zone", "per-node stats": {...},
    "pages": {...}, "protection": [...], "stats": {...}, "pagesets": {cpu: {...}}, ...}``.

    Works on a real kernel's file and on ours; it does not know which fields exist, it only
    follows the indentation the kernel uses.
    """
    zones: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    section = None
    cpu: dict[str, int] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _HEADER.match(line)
        if m:
            cur = {"node": int(m.group(1)), "zone": m.group(2)}
            zones.append(cur)
            section, cpu = None, None
            continue
        if cur is None:
            raise ValueError(f"zoneinfo: line before the first 'Node' header: {line!r}")
        stripped = line.strip()
        if line == "  per-node stats":
            section = cur.setdefault("per-node stats", {})
        elif line.startswith("  pages free"):
            cur["pages"] = {"free": int(stripped.split()[-1])}
            section = cur["pages"]
        elif stripped.startswith("protection:"):
            cur["protection"] = [int(v) for v in stripped.split(":", 1)[1].strip(" ()").split(",")]
            section = cur.setdefault("stats", {})
        elif line == "  pagesets":
            section = cur.setdefault("pagesets", {})
        elif _CPU.match(line):
            cpu = cur["pagesets"].setdefault(int(_CPU.match(line).group(1)), {})  # type: ignore[union-attr]
        elif line.startswith("              ") and cpu is not None:
            k, v = stripped.split(":")
            cpu[k] = int(v)
        elif stripped.startswith("vm stats threshold:") and cpu is not None:
            cpu["vm stats threshold"] = int(stripped.split(":")[1])
        elif line.startswith("  ") and not line.startswith("   ") and ":" in stripped:
            k, v = stripped.split(":", 1)
            cur[k] = int(v)
            section = None
        elif section is not None and not line.startswith("  pagesets"):
            k, v = stripped.rsplit(None, 1)
            section[k] = int(v)
        else:
            raise ValueError(f"zoneinfo: unexpected line {line!r}")
    for z in zones:  # "stats" is opened by the protection line; unpopulated zones leave it empty
        if not z.get("stats", True):
            del z["stats"]
    return zones
