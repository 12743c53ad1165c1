"""/proc/pagetypeinfo (mm/vmstat.c: pagetypeinfo_show), read from a snapshot.

Two tables per node with memory:

* free blocks per zone, migratetype and order, counted by walking
  ``zone->free_area[order].free_list[mt]`` (pagetypeinfo_showfree_print) with the kernel's cap:
  a list reaching 100000 entries stops there and prints ``>100000``;
* pageblocks per stored migratetype (pagetypeinfo_showblockcount_print), read from the
  SPARSEMEM ``mem_section->usage->pageblock_flags`` bitmaps with numpy.

:func:`pagetypeinfo` computes :class:`NodePageTypes` rows, :func:`render` prints the kernel's
format, :func:`parse` reads /proc/pagetypeinfo text (ours or a real kernel's).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

from mmintro.reader.errors import ValidationError
from mmintro.reader.helpers.mm import get_page_flags, pfn_to_page
from mmintro.reader.helpers.mmzone import (
    NODE_DATA,
    for_each_node_state,
    for_each_present_section,
    section_geometry,
)
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.reader.x86_pgtable import LEVELS_4
from mmintro.views.pageflags import flags_layout

__all__ = [
    "FREE_LIST_CAP",
    "BlockCounts",
    "FreeCounts",
    "NodePageTypes",
    "count_free_list",
    "migratetype_names",
    "pageblock_migratetypes",
    "pageblock_order",
    "pagetypeinfo",
    "parse",
    "render",
    "to_json",
]

# pagetypeinfo_showfree_print(): "Cap the free_list iteration because it might be really large
# and we are under a spinlock".
FREE_LIST_CAP = 100000

# mm/page_alloc.c migratetype_names[], by enumerator (CMA only with CONFIG_CMA, Isolate only
# with CONFIG_MEMORY_ISOLATION; the snapshot's enum migratetype says which exist).
_MIGRATETYPE_TEXT = {
    "MIGRATE_UNMOVABLE": "Unmovable",
    "MIGRATE_MOVABLE": "Movable",
    "MIGRATE_RECLAIMABLE": "Reclaimable",
    "MIGRATE_HIGHATOMIC": "HighAtomic",
    "MIGRATE_CMA": "CMA",
    "MIGRATE_ISOLATE": "Isolate",
}


class FreeCounts(NamedTuple):
    """Free blocks on one zone's free lists of one migratetype."""

    node: int
    zone: str
    type: str
    counts: list[int]
    """Blocks on ``free_area[order].free_list[type]`` for each order (capped at 100000)."""
    overflow: list[bool]
    """True where the walk stopped at the cap (printed ``>100000``)."""


class BlockCounts(NamedTuple):
    """Pageblocks of one zone by ``get_pageblock_migratetype()``."""

    node: int
    zone: str
    counts: list[int]
    """One count per migratetype, in enum order."""


class NodePageTypes(NamedTuple):
    """What pagetypeinfo_show prints for one node."""

    node: int
    pageblock_order: int
    pages_per_block: int
    types: list[str]
    """Migratetype names, in enum order."""
    free: list[FreeCounts]
    blocks: list[BlockCounts]


def migratetype_names(prog: Program) -> list[str]:
    """``migratetype_names[]``: one name per migratetype value below ``MIGRATE_TYPES``."""
    values = prog.types.enum("migratetype")
    names = []
    for v in range(values["MIGRATE_TYPES"]):
        known = [_MIGRATETYPE_TEXT[e] for e, ev in values.items() if ev == v and e in _MIGRATETYPE_TEXT]
        names.append(known[0] if known else f"type{v}")
    return names


def pageblock_order(prog: Program) -> int:
    """``pageblock_order``: the variable when the snapshot has one, else x86's
    ``HUGETLB_PAGE_ORDER`` (PMD_SHIFT - PAGE_SHIFT), which is what 6.18 uses."""
    if "pageblock_order" in prog.symbols.by_name:
        order = prog["pageblock_order"].value_()
        if not 0 <= order < prog.types.struct("zone").walk("free_area")[2].resolved().nelems:  # MAX_PAGE_ORDER
            raise ValidationError(f"pageblock_order is {order}")
        return order
    return LEVELS_4[-2].shift - LEVELS_4[-1].shift


def count_free_list(prog: Program, head: int, cap: int = FREE_LIST_CAP, name: str = "free list") -> tuple[int, bool]:
    """Entries on the ``list_head`` at ``head``, stopping at ``cap`` (like the kernel's walk).

    Reads only the two link words of each entry; every ``next->prev`` must point back, and
    an entry seen twice is a cycle.  Either raises :class:`ValidationError`.

    :return: (count, whether the walk stopped at the cap)
    """
    lh = prog.types.struct("list_head")
    off_next, off_prev = lh.offsetof("next"), lh.offsetof("prev")
    read = prog.read_u64
    seen: set[int] = set()
    pos, n = head, 0
    while True:
        nxt = read(pos + off_next)
        back = read(nxt + off_prev)
        if back != pos:
            raise ValidationError(f"{name}: next of {pos:#x} is {nxt:#x}, whose prev is {back:#x} (broken link)")
        if nxt == head:
            return n, False
        if nxt in seen:
            raise ValidationError(f"{name}: cycle at {nxt:#x} that does not return to the head")
        seen.add(nxt)
        n += 1
        if n >= cap:
            return n, True
        pos = nxt


def _nr_pageblock_bits(prog: Program) -> int:
    # include/linux/pageblock-flags.h: NR_PAGEBLOCK_BITS = roundup_pow_of_two(__NR_PAGEBLOCK_BITS)
    return 1 << (prog.types.const("__NR_PAGEBLOCK_BITS") - 1).bit_length()


class _Sections(NamedTuple):
    """Per-section arrays (indexed by section number) that pfn_to_online_page() and
    get_pageblock_migratetype() consult."""

    online: np.ndarray  # bool: present and SECTION_IS_ONLINE
    early: np.ndarray  # bool: SECTION_IS_EARLY (every subsection valid)
    subsections: np.ndarray  # bool [section, subsection]: usage->subsection_map
    migratetype: np.ndarray  # int16 [section, pageblock]: get_pageblock_migratetype(), -1 if unknown
    skip: np.ndarray  # bool [section, pageblock]: PB_compact_skip (compaction's skip hint)


def _section_bit(prog: Program, name: str) -> int:
    return 1 << prog.types.const(f"SECTION_{name}_BIT")


def pageblock_migratetypes(prog: Program) -> _Sections:
    """Every present section's pageblock migratetypes, from ``usage->pageblock_flags``.

    Per section: one read of the section's usage (subsection map and pageblock bitmap); the
    bits are split with numpy.  A pageblock's value is ``MIGRATE_ISOLATE`` when its
    ``PB_migrate_isolate`` bit is set (6.17+ keeps isolation as a separate bit), else its
    ``PB_migrate_0..2`` bits (get_pfnblock_migratetype).
    """
    cached = prog.cache.get("views.pageblock_migratetypes")
    if cached is not None:
        return cached
    types = prog.types
    g = section_geometry(prog)
    order = pageblock_order(prog)
    nbits = _nr_pageblock_bits(prog)
    per_section = g.pages_per_section >> order
    usage_t = types.struct("mem_section_usage")
    off_sub = usage_t.offsetof("subsection_map")
    _o, _b, sub_t = usage_t.member("subsection_map")
    n_sub = 8 * sub_t.size
    off_pb = usage_t.offsetof("pageblock_flags")
    pb_bytes = -(-per_section * nbits // 64) * 8  # BITS_TO_LONGS(...) longs
    ms_t = types.struct("mem_section")
    off_smm, off_usage = ms_t.offsetof("section_mem_map"), ms_t.offsetof("usage")
    online_bit, early_bit = _section_bit(prog, "IS_ONLINE"), _section_bit(prog, "IS_EARLY")
    mt_mask = sum(1 << types.const(f"PB_migrate_{i}") for i in range(3))
    isolate_bit = types.const("PB_migrate_isolate") if "PB_migrate_isolate" in types.enum("pageblock_bits") else None
    isolate = types.const("MIGRATE_ISOLATE") if isolate_bit is not None else None

    sections = list(for_each_present_section(prog))
    nsec = sections[-1].nr + 1 if sections else 0
    online = np.zeros(nsec, dtype=bool)
    early = np.zeros(nsec, dtype=bool)
    subsections = np.zeros((nsec, n_sub), dtype=bool)
    mt = np.full((nsec, per_section), -1, dtype=np.int16)
    skip = np.zeros((nsec, per_section), dtype=bool)
    skip_bit = types.const("PB_compact_skip") if "PB_compact_skip" in types.enum("pageblock_bits") else None
    weights = 1 << np.arange(nbits, dtype=np.int64)
    for sec in sections:
        raw = prog.read(int(sec.section), ms_t.size)
        smm = int.from_bytes(raw[off_smm : off_smm + 8], "little")
        usage = int.from_bytes(raw[off_usage : off_usage + 8], "little")
        if not smm & online_bit or not usage:
            continue
        online[sec.nr] = True
        early[sec.nr] = bool(smm & early_bit)
        data = np.frombuffer(prog.read(usage + off_sub, off_pb - off_sub + pb_bytes), dtype=np.uint8)
        subsections[sec.nr] = np.unpackbits(data[: sub_t.size], bitorder="little")[:n_sub].astype(bool)
        bits = np.unpackbits(data[off_pb - off_sub :], bitorder="little")[: per_section * nbits]
        flags = bits.reshape(per_section, nbits).astype(np.int64) @ weights
        vals = flags & mt_mask
        if isolate_bit is not None:
            vals = np.where(flags >> isolate_bit & 1, isolate, vals)
        mt[sec.nr] = vals
        if skip_bit is not None:
            skip[sec.nr] = (flags >> skip_bit & 1).astype(bool)
    out = _Sections(online, early, subsections, mt, skip)
    prog.cache["views.pageblock_migratetypes"] = out
    return out


def _zone_spans(prog: Program) -> list[tuple[int, int, int, int]]:
    """(node, zone index, start_pfn, end_pfn) of every populated zone."""
    spans = []
    for nid in for_each_node_state(prog, "N_ONLINE"):
        zones = NODE_DATA(prog, nid).node_zones
        for zid in range(len(zones)):
            z = zones[zid]
            if z.present_pages.value_():
                start = z.zone_start_pfn.value_()
                spans.append((nid, zid, start, start + z.spanned_pages.value_()))
    return spans


def _block_counts(
    prog: Program,
    nid: int,
    zid: int,
    zone: Object,
    secs: _Sections,
    nr_types: int,
    spans: list[tuple[int, int, int, int]],
) -> list[int]:
    """pagetypeinfo_showblockcount_print(): for pfn = start, start + pageblock_nr_pages, ... below
    the zone's end, count get_pageblock_migratetype() of the pages pfn_to_online_page() finds
    and page_zone() puts in this zone."""
    g = section_geometry(prog)
    order = pageblock_order(prog)
    start = zone.zone_start_pfn.value_()
    end = start + zone.spanned_pages.value_()
    if not len(secs.online) and end > start:  # (nothing to index: a corrupt mem_section or its vmemmap)
        raise ValidationError(
            f"node {nid} zone {zid} spans pfns {start:#x}-{end:#x} but no memory section could be read"
        )
    # pfns past the last present section are never online, never counted: a corrupt span (2^60
    # pages) must not become an array of them
    stop = min(end, len(secs.online) << g.pfn_section_shift)
    pfns = np.arange(start, stop, 1 << order, dtype=np.int64) if start < stop else np.zeros(0, np.int64)
    sec = pfns >> g.pfn_section_shift
    ok = sec < len(secs.online)
    sec_c = np.where(ok, sec, 0)
    in_sec = pfns & (g.pages_per_section - 1)
    n_sub = secs.subsections.shape[1]
    sub = in_sec // (g.pages_per_section // n_sub)
    ok &= secs.online[sec_c] & (secs.early[sec_c] | secs.subsections[sec_c, sub])  # pfn_section_valid()
    mt = np.where(ok, secs.migratetype[sec_c, in_sec >> order], -1)
    # page_zone(page) != zone can only happen where another populated zone's span overlaps this
    # one (interleaved nodes); only those pfns have their struct page's zone and node read.
    others = [(s, e) for n, z, s, e in spans if (n, z) != (nid, zid) and s < end and start < e]
    if others:
        lay = flags_layout(prog)
        overlap = np.zeros(len(pfns), dtype=bool)
        for s, e in others:
            overlap |= (pfns >= s) & (pfns < e)
        for i in np.nonzero(overlap & (mt >= 0))[0]:
            flags = get_page_flags(pfn_to_page(prog, int(pfns[i])))
            if (lay.node(flags), lay.zone(flags)) != (nid, zid):
                mt[i] = -1
    valid = mt[(mt >= 0) & (mt < nr_types)]
    return np.bincount(valid, minlength=nr_types)[:nr_types].tolist()


def pagetypeinfo(prog: Program) -> list[NodePageTypes]:
    """pagetypeinfo_show() for every node with memory (``N_MEMORY``)."""
    names = migratetype_names(prog)
    order = pageblock_order(prog)
    secs = pageblock_migratetypes(prog)
    spans = _zone_spans(prog)
    out = []
    for nid in for_each_node_state(prog, "N_MEMORY"):
        pgdat = NODE_DATA(prog, nid)
        free: list[FreeCounts] = []
        blocks: list[BlockCounts] = []
        zones = pgdat.node_zones
        for zid in range(len(zones)):
            zone = zones[zid]
            if not zone.present_pages.value_():  # walk_zones_in_node(assert_populated=true)
                continue
            zname = zone.name.string_().decode("utf-8", "replace")
            fa = zone.free_area
            for mtype, tname in enumerate(names):
                counts, over = [], []
                for o in range(len(fa)):
                    head = int(fa[o].free_list[mtype].address_of_())
                    n, cut = count_free_list(
                        prog, head, name=f"node {nid} zone {zname} free_area[{o}].free_list[{tname}]"
                    )
                    counts.append(n)
                    over.append(cut)
                free.append(FreeCounts(nid, zname, tname, counts, over))
            blocks.append(BlockCounts(nid, zname, _block_counts(prog, nid, zid, zone, secs, len(names), spans)))
        out.append(NodePageTypes(nid, order, 1 << order, names, free, blocks))
    return out


def render(nodes: list[NodePageTypes]) -> str:
    """The /proc/pagetypeinfo text (every line of the tables ends with a space, as the kernel's)."""
    parts: list[str] = []
    w = parts.append
    for nd in nodes:
        norders = len(nd.free[0].counts) if nd.free else 0
        w(f"Page block order: {nd.pageblock_order}\n")
        w(f"Pages per block:  {nd.pages_per_block}\n\n")
        w(f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6} " for o in range(norders)) + "\n")
        for f in nd.free:
            w(
                f"Node {f.node:4}, zone {f.zone:>8}, type {f.type:>12} "
                + "".join(f"{'>' if cut else ''}{n:6} " for n, cut in zip(f.counts, f.overflow))
                + "\n"
            )
        w(f"\n{'Number of blocks type ':<23}" + "".join(f"{t:>12} " for t in nd.types) + "\n")
        for b in nd.blocks:
            w(f"Node {b.node}, zone {b.zone:>8} " + "".join(f"{n:12} " for n in b.counts) + "\n")
    return "".join(parts)


def to_json(nodes: list[NodePageTypes]) -> list[dict[str, Any]]:
    return [
        {
            "node": nd.node,
            "pageblock_order": nd.pageblock_order,
            "pages_per_block": nd.pages_per_block,
            "types": nd.types,
            "free": [f._asdict() for f in nd.free],
            "blocks": [b._asdict() for b in nd.blocks],
        }
        for nd in nodes
    ]


_FREE = re.compile(r"^Node +(\d+), zone +(\S+), type +(\S+) ((?:>?\s*\d+ )+)$")
_BLOCKS = re.compile(r"^Node (\d+), zone +(\S+) ((?:\s*\d+ )+)$")


def parse(text: str) -> dict[str, Any]:
    """/proc/pagetypeinfo text → ``{"pageblock_order", "pages_per_block", "orders": [...],
    "types": [...], "free": [{node, zone, type, counts, overflow}], "blocks": [{node, zone,
    counts}]}`` (all nodes together; a ``>100000`` count reads as 100000 with overflow set)."""
    out: dict[str, Any] = {"free": [], "blocks": []}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("Page block order:"):
            out["pageblock_order"] = int(line.split(":")[1])
        elif line.startswith("Pages per block:"):
            out["pages_per_block"] = int(line.split(":")[1])
        elif line.startswith("Free pages count per migrate type at order"):
            out["orders"] = [int(v) for v in line[43:].split()]
        elif line.startswith("Number of blocks type"):
            out["types"] = line[23:].split()
        elif m := _FREE.match(line):
            words = m.group(4).replace("> ", ">").split()
            out["free"].append(
                {
                    "node": int(m.group(1)),
                    "zone": m.group(2),
                    "type": m.group(3),
                    "counts": [int(v.lstrip(">")) for v in words],
                    "overflow": [v.startswith(">") for v in words],
                }
            )
        elif m := _BLOCKS.match(line):
            out["blocks"].append(
                {"node": int(m.group(1)), "zone": m.group(2), "counts": [int(v) for v in m.group(3).split()]}
            )
        else:
            raise ValueError(f"pagetypeinfo: unexpected line {n}: {line!r}")
    return out
