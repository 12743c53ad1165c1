"""Compaction state of a dump (mm/compaction.c's books in struct zone and pglist_data), for
the post-mortem of "why did an order-9 allocation fail with plenty free":

* per populated zone: the scanners' cached positions (``compact_cached_migrate_pfn[2]`` --
  async, sync --, ``compact_cached_free_pfn``, ``compact_init_{migrate,free}_pfn``), the
  deferral counters (``compact_considered``, ``compact_defer_shift``,
  ``compact_order_failed``) and what they mean for the next attempt (compaction_deferred():
  orders >= compact_order_failed skip ``(1 << compact_defer_shift) - compact_considered - 1``
  more attempts), ``compact_blockskip_flush``, how many pageblocks carry the PB_compact_skip
  hint (from ``mem_section->usage->pageblock_flags``), and the zone's fragmentation score
  (extfrag_for_order at COMPACTION_HPAGE_ORDER, 0..100) with its weighted share;
* per node: kcompactd's request (``kcompactd_max_order``, ``kcompactd_highest_zoneidx``,
  ``proactive_compact_trigger``), its task, and the node's fragmentation score
  (fragmentation_score_node) against vm.compaction_proactiveness's default marks;
* the compact_* and pgmigrate_* lines of /proc/vmstat.

Works on mmintro snapshots and real 6.18 dumps alike (everything is read from the dump).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mmintro.reader.helpers.mmzone import NODE_DATA, for_each_node_state, section_geometry
from mmintro.reader.program import Program
from mmintro.views.fragmentation import fill_contig_page_info
from mmintro.views.pagetypeinfo import pageblock_migratetypes, pageblock_order

__all__ = ["NodeCompaction", "ZoneCompaction", "compaction", "render", "to_json"]

COMPACTION_HPAGE_ORDER = 9  # HPAGE_PMD_ORDER on x86-64 (CONFIG_TRANSPARENT_HUGEPAGE)
EVENT_PREFIXES = ("compact_", "pgmigrate_")


class ZoneCompaction(NamedTuple):
    """One populated zone's compaction fields."""

    node: int
    zone: str
    start_pfn: int
    end_pfn: int
    cached_migrate_pfn: tuple[int, int]
    """``compact_cached_migrate_pfn[0]`` (async) and ``[1]`` (sync): where the migrate scanner resumes."""
    cached_free_pfn: int
    """``compact_cached_free_pfn``: where the free scanner resumes (downwards)."""
    init_migrate_pfn: int
    init_free_pfn: int
    considered: int
    defer_shift: int
    order_failed: int
    """Orders at or above this one are subject to deferral."""
    deferred_attempts: int
    """How many more attempts at an order >= order_failed compaction_deferred() will skip."""
    blockskip_flush: bool
    skip_blocks: int
    """Pageblocks of the zone with the PB_compact_skip hint set."""
    pageblocks: int
    score: int
    """fragmentation_score_zone(): extfrag_for_order(zone, COMPACTION_HPAGE_ORDER), 0..100."""
    weighted_score: int
    """fragmentation_score_zone_weighted(): score * present_pages / (node_present_pages + 1)."""


class NodeCompaction(NamedTuple):
    """One node's kcompactd fields."""

    node: int
    kcompactd_max_order: int
    kcompactd_highest_zoneidx: int
    proactive_compact_trigger: bool
    kcompactd: str | None
    """``pid comm`` of the kcompactd thread, None if ``pgdat->kcompactd`` is NULL."""
    score: int
    """fragmentation_score_node(): the zones' weighted scores summed."""


def extfrag_for_order(nr_free: list[int], order: int) -> int:
    """mm/vmstat.c extfrag_for_order(): the percentage of free memory in blocks below ``order``."""
    info = fill_contig_page_info(nr_free, order)
    if not info.free_pages:
        return 0
    return (info.free_pages - (info.free_blocks_suitable << order)) * 100 // info.free_pages


def _skip_counts(prog: Program, start: int, end: int) -> tuple[int, int]:
    """(pageblocks with PB_compact_skip, pageblocks) of [start, end), online sections only."""
    secs = pageblock_migratetypes(prog)
    g = section_geometry(prog)
    order = pageblock_order(prog)
    # pfns past the last present section are never online: a corrupt zone span (2^60 pages) must
    # not become an array of them (as pagetypeinfo's walk)
    first, stop = start & ~((1 << order) - 1), min(end, len(secs.online) << g.pfn_section_shift)
    pfns = np.arange(first, stop, 1 << order, dtype=np.int64) if first < stop else np.zeros(0, np.int64)
    sec = pfns >> g.pfn_section_shift
    ok = sec < len(secs.online)
    sec_c = np.where(ok, sec, 0)
    ok &= secs.online[sec_c]
    idx = (pfns & (g.pages_per_section - 1)) >> order
    skip = secs.skip[sec_c, idx] & ok
    return int(skip.sum()), int(ok.sum())


def _task(obj: Any) -> str | None:
    addr = obj.value_()
    if not addr:
        return None
    t = obj[0] if hasattr(obj, "__getitem__") else obj
    return f"{t.pid.value_()} {t.comm.string_().decode(errors='replace')}"


def compaction(prog: Program) -> tuple[list[NodeCompaction], list[ZoneCompaction], dict[str, int]]:
    """Every node with memory and its populated zones, plus the compaction vm events."""
    from mmintro.views import vmstat as vmstat_view

    nodes, zones = [], []
    for nid in for_each_node_state(prog, "N_MEMORY"):
        pgdat = NODE_DATA(prog, nid)
        node_present = pgdat.node_present_pages.value_()
        node_score = 0
        zs = pgdat.node_zones
        for zid in range(len(zs)):
            z = zs[zid]
            present = z.present_pages.value_()
            if not present:
                continue
            start = z.zone_start_pfn.value_()
            end = start + z.spanned_pages.value_()
            fa = z.free_area
            score = extfrag_for_order([fa[o].nr_free.value_() for o in range(len(fa))], COMPACTION_HPAGE_ORDER)
            weighted = present * score // (node_present + 1)
            node_score += weighted
            considered = z.compact_considered.value_()
            shift = z.compact_defer_shift.value_()
            skip, blocks = _skip_counts(prog, start, end)
            zones.append(
                ZoneCompaction(
                    nid,
                    z.name.string_().decode("utf-8", "replace"),
                    start,
                    end,
                    (z.compact_cached_migrate_pfn[0].value_(), z.compact_cached_migrate_pfn[1].value_()),
                    z.compact_cached_free_pfn.value_(),
                    z.compact_init_migrate_pfn.value_(),
                    z.compact_init_free_pfn.value_(),
                    considered,
                    shift,
                    z.compact_order_failed.value_(),
                    max(0, (1 << shift) - considered - 1),
                    bool(z.compact_blockskip_flush.value_()),
                    skip,
                    blocks,
                    score,
                    weighted,
                )
            )
        nodes.append(
            NodeCompaction(
                nid,
                pgdat.kcompactd_max_order.value_(),
                pgdat.kcompactd_highest_zoneidx.value_(),
                bool(pgdat.proactive_compact_trigger.value_()),
                _task(pgdat.kcompactd),
                node_score,
            )
        )
    stats = vmstat_view.vmstat(prog)
    events = {k: v for k, v in stats.items() if k.startswith(EVENT_PREFIXES)}
    return nodes, zones, events


def render(nodes: list[NodeCompaction], zones: list[ZoneCompaction], events: dict[str, int]) -> str:
    """A table per zone, a line per node, then the vm events."""
    out = []
    hdr = (
        f"{'ZONE':<16} {'MIGRATE_PFN async/sync':>23} {'FREE_PFN':>10} {'CONSIDERED':>10} {'SHIFT':>5} "
        f"{'ORDER_FAILED':>12} {'DEFERRED':>8} {'FLUSH':>5} {'SKIP/BLOCKS':>12} {'SCORE':>5}"
    )
    out.append(hdr)
    for z in zones:
        mig = f"{z.cached_migrate_pfn[0]:#x}/{z.cached_migrate_pfn[1]:#x}"
        out.append(
            f"{f'Node {z.node} {z.zone}':<16} {mig:>23} {z.cached_free_pfn:>#10x} {z.considered:>10} "
            f"{z.defer_shift:>5} {z.order_failed:>12} {z.deferred_attempts:>8} {int(z.blockskip_flush):>5} "
            f"{f'{z.skip_blocks}/{z.pageblocks}':>12} {z.score:>5}"
        )
    out.append("")
    for n in nodes:
        task = n.kcompactd or "(no kcompactd thread)"
        out.append(
            f"Node {n.node}: kcompactd {task}: max_order {n.kcompactd_max_order} highest_zoneidx "
            f"{n.kcompactd_highest_zoneidx} proactive_trigger {int(n.proactive_compact_trigger)}; "
            f"fragmentation score {n.score}"
        )
    out.append("")
    out += [f"{k} {v}" for k, v in events.items()]
    return "\n".join(out) + "\n"


def to_json(nodes: list[NodeCompaction], zones: list[ZoneCompaction], events: dict[str, int]) -> dict[str, Any]:
    return {"nodes": [n._asdict() for n in nodes], "zones": [z._asdict() for z in zones], "events": events}
