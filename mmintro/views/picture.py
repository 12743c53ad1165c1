"""Pictures of a snapshot: the data behind ``mmintro picture`` (and its terminal rendering).

Four kinds, each computed through the reader from the dump alone:

* ``memory``: every pfn's use, from the struct page array read as numpy words one present
  section at a time (:func:`mmintro.views.page_types._section_words`, the same bulk pass as
  page-types): a hole (no memory section), PG_reserved, free in the buddy allocator (a
  PageBuddy block of ``page->private`` order covers 2^order pages), free on a per-CPU list
  (each zone's ``per_cpu_pageset`` lists, walked as ``mmintro whatis`` does), page tables (PGTY_table), slab (the folio's PGTY_slab), hugetlb,
  anonymous (``folio->mapping`` & PAGE_MAPPING_ANON), shmem (a file folio with
  PG_swapbacked), page cache (any other file folio), or other kernel memory.  A tail page
  takes its folio's use, as page-types does; node and zone come from ``page->flags``
  (page_to_nid, page_zonenum);
* ``migratetype``: every pageblock's migratetype (get_pageblock_migratetype, from
  ``usage->pageblock_flags``: :func:`mmintro.views.pagetypeinfo.pageblock_migratetypes`);
* ``fragmentation``: the debugfs unusable and extfrag indices per zone and order
  (:mod:`mmintro.views.fragmentation`);
* ``address-space``: one process's VMAs with their size and Rss (:mod:`mmintro.views.smaps`).

:func:`render_terminal` draws any of them with one coloured character per cell (rich styles,
dropped when the output is not a terminal, the letters remain);
:mod:`mmintro.views.picture_png` draws them as PNG files with matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmintro.reader.helpers.mm import vmemmap
from mmintro.reader.helpers.mmzone import NODE_DATA, for_each_node_state, for_each_present_section, section_geometry
from mmintro.reader.program import Program
from mmintro.views import page_types as _pt
from mmintro.views.pageflags import flags_layout

__all__ = [
    "CATEGORIES",
    "KINDS",
    "AddressSpace",
    "MemoryMap",
    "MigratetypeMap",
    "address_space",
    "downsample",
    "fragmentation_picture",
    "memory_map",
    "migratetype_map",
    "render_terminal",
]

KINDS = ("memory", "migratetype", "fragmentation", "address-space")

# (name, letter, colour) of each page use, by code; free blocks add FREE_BASE + order
CATEGORIES: list[tuple[str, str, str]] = [
    ("hole", " ", "#202020"),
    ("reserved", "R", "#7f7f7f"),
    ("free (per-cpu list)", "p", "#b5e61d"),
    ("page table", "T", "#8c564b"),
    ("slab", "S", "#d62728"),
    ("hugetlb", "H", "#9467bd"),
    ("anon", "a", "#ff7f0e"),
    ("shmem", "m", "#e377c2"),
    ("page cache", "f", "#1f77b4"),
    ("kernel (other)", "k", "#17becf"),
]
HOLE, RESERVED, PCP, TABLE, SLAB, HUGETLB, ANON, SHMEM, FILE, KERNEL = range(len(CATEGORIES))
FREE_BASE = len(CATEGORIES)
MAX_ORDER_CODES = 16  # free blocks of order 0 .. 15 (x86-64's MAX_PAGE_ORDER is 10)


def free_colour(order: int, max_order: int) -> str:
    """Free blocks in greens, darker for higher orders."""
    t = order / max(1, max_order)
    r, g, b = (int(a + (c - a) * t) for a, c in ((0xC7, 0x00), (0xF0, 0x6D), (0xC0, 0x2C)))
    return f"#{r:02x}{g:02x}{b:02x}"


def code_names(max_order: int) -> list[tuple[str, str, str]]:
    """(name, letter, colour) for every code of a memory map."""
    out = list(CATEGORIES)
    for o in range(MAX_ORDER_CODES):
        letter = "0123456789ABCDEF"[o]
        out.append((f"free order {o}", letter, free_colour(min(o, max_order), max_order)))
    return out


@dataclass
class ZoneSpan:
    node: int
    zone: int
    name: str
    start_pfn: int
    end_pfn: int
    present_pages: int


@dataclass
class MemoryMap:
    """Every pfn's code (see :data:`CATEGORIES`; FREE_BASE + order inside a free buddy block)."""

    codes: np.ndarray  # uint8 per pfn
    zones: list[ZoneSpan]
    max_order: int
    free_blocks: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    """(node, zone name) -> free buddy blocks per order, counted from the PageBuddy heads."""

    def pages(self) -> dict[str, int]:
        """Pages per use (free blocks summed over orders under "free (buddy)")."""
        counts = np.bincount(self.codes, minlength=FREE_BASE + MAX_ORDER_CODES)
        out = {name: int(counts[i]) for i, (name, _l, _c) in enumerate(CATEGORIES)}
        out["free (buddy)"] = int(counts[FREE_BASE:].sum())
        return out


def _typed_top(words: np.ndarray, shift: int) -> np.ndarray:
    """The page type byte of each page_type word (0 for an untyped page)."""
    pt = (words >> np.uint64(shift)).astype(np.uint32)
    typed = (pt >> np.uint32(24) >= np.uint32(0x80)) & (pt >> np.uint32(24) < np.uint32(0xFF))
    return np.where(typed, pt >> np.uint32(24), np.uint32(0))


def memory_map(prog: Program) -> MemoryMap:
    """The use of every pfn below the end of the last present memory section."""
    fl = flags_layout(prog)
    lay = _pt._layout(prog)
    g = section_geometry(prog)
    base = vmemmap(prog).value_()
    sections = list(for_each_present_section(prog))
    present = {s.nr: True for s in sections}
    n = g.pages_per_section
    npfn = (sections[-1].nr + 1) * n if sections else 0
    codes = np.zeros(npfn, dtype=np.uint8)
    u64 = np.uint64
    pg_reserved = _pt._const(prog, "PG_reserved")  # None: not in this build
    pg_swapbacked = _pt._const(prog, "PG_swapbacked")
    ty = {t: _pt._const(prog, f"PGTY_{t}") for t in ("buddy", "slab", "table", "hugetlb")}
    max_order = prog.types.struct("zone").walk("free_area")[2].resolved().nelems - 1  # NR_PAGE_ORDERS - 1
    zmask, nmask = (1 << fl.zones_shift) - 1, (1 << fl.nodes_shift) - 1
    heads_by_zone: dict[tuple[int, int], np.ndarray] = {}
    cache: dict[int, np.ndarray | None] = {}
    for start_pfn, w in _pt._section_words(prog, lay, False):
        assert w is not None
        sl = slice(start_pfn, start_pfn + n)
        flags = w[:, lay.w_flags]
        node = (flags >> u64(fl.nodes_pgoff) & u64(nmask)).astype(np.int16)  # page_to_nid()
        zone = (flags >> u64(fl.zones_pgoff) & u64(zmask)).astype(np.int8)  # page_zonenum()
        own_top = _typed_top(w[:, lay.w_type], lay.type_shift)
        # the folio's words: a tail's head in this section, or read once from another section
        tail, hidx, ch = _pt._heads(prog, lay, w, start_pfn, base)
        fidx = np.arange(n)
        local = tail & (hidx >= 0)
        fidx[local] = hidx[local]
        fflags, fmapping, ftype = flags[fidx], w[fidx, lay.w_mapping], w[fidx, lay.w_type]
        far = np.flatnonzero(tail & (hidx < 0))
        if len(far):
            _pt._remote_heads(prog, lay, ch[far], base, npfn, present, cache)
            for i in far.tolist():
                hw = cache.get(int(ch[i]) - 1)
                if hw is None:  # no struct page at compound_head: nothing known of the folio
                    fflags[i] = fmapping[i] = ftype[i] = 0
                else:
                    fflags[i], fmapping[i], ftype[i] = hw[0, lay.w_flags], hw[0, lay.w_mapping], hw[0, lay.w_type]
        ftop = _typed_top(ftype, lay.type_shift)
        low = fmapping & u64(3)
        c = np.full(n, KERNEL, dtype=np.uint8)
        c[(fmapping != 0) & (low == 0)] = FILE
        if pg_swapbacked is not None:
            c[(fmapping != 0) & (low == 0) & (fflags >> u64(pg_swapbacked) & u64(1)).astype(bool)] = SHMEM
        c[(low == 1) | (low == 3)] = ANON  # PAGE_MAPPING_ANON (KSM: both bits)
        for t, code in (("hugetlb", HUGETLB), ("slab", SLAB)):
            if ty[t] is not None:
                c[ftop == ty[t]] = code
        if ty["table"] is not None:
            c[own_top == ty["table"]] = TABLE
        if pg_reserved is not None:
            c[(flags >> u64(pg_reserved) & u64(1)).astype(bool)] = RESERVED
        if ty["buddy"] is not None:  # PageBuddy heads: 2^page->private pages from each
            heads = np.flatnonzero(own_top == ty["buddy"])
            orders = w[heads, lay.w_private]
            ok = orders <= u64(max_order)
            heads, orders = heads[ok], orders[ok].astype(np.int64)
            in_block = np.zeros(n + 1, dtype=np.int32)
            np.add.at(in_block, heads, 1)
            np.add.at(in_block, np.minimum(heads + (1 << orders), n), -1)
            blk_order = np.zeros(n + 1, dtype=np.int64)
            np.add.at(blk_order, heads, orders)
            np.add.at(blk_order, np.minimum(heads + (1 << orders), n), -orders)
            inside = np.cumsum(in_block[:n]) > 0
            c[inside] = (FREE_BASE + np.cumsum(blk_order[:n])[inside]).astype(np.uint8)
            hn, hz = node[heads], zone[heads]
            for key in set(zip(hn.tolist(), hz.tolist())):
                sel = (hn == key[0]) & (hz == key[1])
                counts = np.bincount(orders[sel], minlength=max_order + 1)
                heads_by_zone[key] = heads_by_zone.get(key, 0) + counts
        codes[sl] = c
    from mmintro.views.whatis import _pcp_blocks

    for head, (order, _cpu, _zone, _node) in _pcp_blocks(prog).items():  # the per-CPU lists' blocks
        if 0 <= head < npfn:
            codes[head : head + (1 << order)] = PCP
    zones = zone_spans(prog)
    free_blocks = {}
    for z in zones:
        counts = heads_by_zone.get((z.node, z.zone))
        free_blocks[(z.node, z.name)] = counts.tolist() if counts is not None else [0] * (max_order + 1)
    return MemoryMap(codes, zones, max_order, free_blocks)


def zone_spans(prog: Program) -> list[ZoneSpan]:
    """Every populated zone of every node with memory, in node and zone order."""
    out = []
    for nid in for_each_node_state(prog, "N_MEMORY"):
        zs = NODE_DATA(prog, nid).node_zones
        for zid in range(len(zs)):
            z = zs[zid]
            present = z.present_pages.value_()
            if present:
                start = z.zone_start_pfn.value_()
                name = z.name.string_().decode("utf-8", "replace")
                out.append(ZoneSpan(nid, zid, name, start, start + z.spanned_pages.value_(), present))
    return out


def downsample(codes: np.ndarray, per_cell: int, ncodes: int) -> np.ndarray:
    """The most frequent code of each run of ``per_cell`` entries (the last run padded with
    code 0, a hole); a few million entries at a time."""
    ncell = -(-len(codes) // per_cell)
    if per_cell <= 1:
        return codes.astype(np.int64)
    out = np.empty(ncell, dtype=np.int64)
    step = max(1, (1 << 22) // (per_cell + ncodes))
    for i in range(0, ncell, step):
        part = codes[i * per_cell : (i + step) * per_cell]
        cells = -(-len(part) // per_cell)
        blk = np.zeros(cells * per_cell, dtype=np.int64)
        blk[: len(part)] = part
        idx = (np.arange(cells)[:, None] * ncodes + blk.reshape(cells, per_cell)).ravel()
        out[i : i + cells] = np.bincount(idx, minlength=cells * ncodes).reshape(cells, ncodes).argmax(axis=1)
    return out


# -- migratetypes ---------------------------------------------------------------------------------
@dataclass
class MigratetypeMap:
    """Every pageblock's migratetype (-1: no valid memory map there)."""

    types: np.ndarray  # int16 per pageblock
    names: list[str]
    pageblock_order: int
    zones: list[ZoneSpan]
    blocks: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    """(node, zone name) -> pageblocks per migratetype whose first pfn is in the zone's span."""


MIGRATETYPE_COLOURS = {
    "Unmovable": "#d62728",
    "Movable": "#2ca02c",
    "Reclaimable": "#1f77b4",
    "HighAtomic": "#ff7f0e",
    "CMA": "#9467bd",
    "Isolate": "#e377c2",
}


def migratetype_map(prog: Program) -> MigratetypeMap:
    from mmintro.views.pagetypeinfo import migratetype_names, pageblock_migratetypes, pageblock_order

    g = section_geometry(prog)
    order = pageblock_order(prog)
    names = migratetype_names(prog)
    secs = pageblock_migratetypes(prog)
    nsec = len(secs.online)
    per_section = g.pages_per_section >> order
    pfns = np.arange(0, nsec * g.pages_per_section, 1 << order, dtype=np.int64)
    sec = pfns >> g.pfn_section_shift
    in_sec = pfns & (g.pages_per_section - 1)
    n_sub = secs.subsections.shape[1]
    sub = in_sec // (g.pages_per_section // n_sub)
    valid = secs.online[sec] & (secs.early[sec] | secs.subsections[sec, sub])  # pfn_section_valid()
    mt = np.where(valid, secs.migratetype.reshape(nsec * per_section), -1).astype(np.int16)
    mt[mt >= len(names)] = -1
    zones = zone_spans(prog)
    blocks = {}
    for z in zones:
        # pagetypeinfo_showblockcount_print(): pfn = zone_start_pfn, += pageblock_nr_pages
        first = np.arange(z.start_pfn, min(z.end_pfn, len(mt) << order), 1 << order) >> order
        v = mt[first]
        blocks[(z.node, z.name)] = np.bincount(v[v >= 0], minlength=len(names))[: len(names)].tolist()
    return MigratetypeMap(mt, names, order, zones, blocks)


# -- fragmentation --------------------------------------------------------------------------------
def fragmentation_picture(prog: Program) -> list[Any]:
    from mmintro.views.fragmentation import fragmentation

    return fragmentation(prog)


# -- a process's address space --------------------------------------------------------------------
@dataclass
class AddressSpace:
    pid: int
    comm: str
    vmas: list[dict[str, Any]]
    """start, end, perms, name, size_kb, rss_kb, anon_kb, swap_kb of every VMA, in address order."""


def address_space(prog: Program, pid: int) -> AddressSpace:
    from mmintro.reader.helpers.task import find_task
    from mmintro.views.smaps import smaps

    task = find_task(prog, pid)
    if task is None:
        raise LookupError(f"no process {pid} in the snapshot")
    comm = task.comm.string_().decode(errors="replace")
    if not task.mm.value_():
        raise LookupError(f"pid {pid} ({comm}) is a kernel thread: it has no address space")
    rep = smaps(prog, pid)
    vmas = [
        {
            "start": v.maps.start,
            "end": v.maps.end,
            "perms": v.maps.perms,
            "name": v.maps.name,
            "size_kb": (v.maps.end - v.maps.start) >> 10,
            "rss_kb": v.stats.resident >> 10,
            "anon_kb": v.stats.anonymous >> 10,
            "swap_kb": v.stats.swap >> 10,
        }
        for v in rep.vmas
    ]
    return AddressSpace(pid, comm, vmas)


# -- the terminal ---------------------------------------------------------------------------------
def _legend(entries: list[tuple[str, str, str, int | None]], unit: str) -> list[Any]:
    from rich.text import Text

    lines = []
    for name, letter, colour, n in entries:
        t = Text()
        t.append(f" {letter} ", style=f"black on {colour}")
        t.append(f" {name}" + (f": {n} {unit}" if n is not None else ""))
        lines.append(t)
    return lines


def _grid(cells: np.ndarray, table: list[tuple[str, str, str]], width: int, row_label) -> list[Any]:  # type: ignore[no-untyped-def]
    from rich.text import Text

    lines = []
    for r in range(0, len(cells), width):
        t = Text(row_label(r))
        for code in cells[r : r + width].tolist():
            _n, letter, colour = table[code]
            t.append(letter, style=f"black on {colour}")
        lines.append(t)
    return lines


def terminal_lines(kind: str, data: Any, width: int = 64, rows: int = 32) -> list[Any]:
    """The picture as rich Text lines."""
    from rich.text import Text

    if kind == "memory":
        m: MemoryMap = data
        table = code_names(m.max_order)
        per_cell = max(1, -(-len(m.codes) // (width * rows)))
        cells = downsample(m.codes, per_cell, len(table))
        out = [Text(f"physical memory: {len(m.codes)} pfns, {per_cell} pages per cell (most common use shown)")]
        out += [
            Text(f"  node {z.node} {z.name:<8} pfn {z.start_pfn:#x}-{z.end_pfn:#x} ({z.present_pages} present pages)")
            for z in m.zones
        ]
        out += _grid(cells, table, width, lambda r: f"{r * per_cell:#9x} ")
        pages = m.pages()
        used = [(n, letter, colour, pages[n]) for n, letter, colour in CATEGORIES if pages.get(n)]
        out += _legend(used, "pages")
        by_order = np.bincount(m.codes[m.codes >= FREE_BASE] - FREE_BASE, minlength=m.max_order + 1)
        out += _legend(
            [
                (f"free order {o}", table[FREE_BASE + o][1], table[FREE_BASE + o][2], int(by_order[o]))
                for o in range(m.max_order + 1)
                if by_order[o]
            ],
            "pages",
        )
        return out
    if kind == "migratetype":
        mm: MigratetypeMap = data
        table = [("no memory map", " ", "#202020")] + [
            (nm, nm[0], MIGRATETYPE_COLOURS.get(nm, "#7f7f7f")) for nm in mm.names
        ]
        codes = (mm.types + 1).astype(np.int64)
        per_cell = max(1, -(-len(codes) // (width * rows)))
        cells = downsample(codes, per_cell, len(table))
        out = [Text(f"pageblocks of {1 << mm.pageblock_order} pages: {len(codes)}, {per_cell} per cell")]
        out += _grid(cells, table, width, lambda r: f"{(r * per_cell) << mm.pageblock_order:#9x} ")
        counts = np.bincount(codes, minlength=len(table))
        out += _legend([(*table[i], int(counts[i])) for i in range(1, len(table)) if counts[i]], "pageblocks")
        for (nid, zn), b in mm.blocks.items():
            out.append(Text(f"  node {nid} {zn:<8} " + "  ".join(f"{t} {c}" for t, c in zip(mm.names, b))))
        return out
    if kind == "fragmentation":
        out = []
        for r in data:
            out.append(Text(f"node {r.node} zone {r.zone}: order, unusable index, extfrag index", style="bold"))
            for o, (u, e) in enumerate(zip(r.unusable_index, r.extfrag_index)):
                t = Text(f"  {o:2} ")
                bar = round(u * 40 / 1000)
                t.append("█" * bar, style="#d62728")
                t.append("·" * (40 - bar), style="#7f7f7f")
                t.append(f" {u / 1000:.3f}  " + ("succeeds" if e < 0 else f"{e / 1000:.3f}"))
                out.append(t)
        return out
    if kind == "address-space":
        a: AddressSpace = data
        out = [Text(f"pid {a.pid} ({a.comm}): {len(a.vmas)} VMAs; bar: Rss of the VMA's size", style="bold")]
        for v in a.vmas:
            frac = v["rss_kb"] / v["size_kb"] if v["size_kb"] else 0.0
            bar = round(frac * 24)
            t = Text(f"{v['start']:012x}-{v['end']:012x} {v['perms']} {v['size_kb']:>9} kB ")
            t.append("█" * bar, style="#ff7f0e" if v["anon_kb"] else "#1f77b4")
            t.append("·" * (24 - bar), style="#7f7f7f")
            t.append(f" Rss {v['rss_kb']:>8} kB  {v['name']}")
            out.append(t)
        return out
    raise ValueError(f"unknown picture kind {kind!r}")


def render_terminal(kind: str, data: Any, console: Any = None) -> None:
    from rich.console import Console

    console = console or Console(highlight=False, soft_wrap=True)
    for line in terminal_lines(kind, data):
        console.print(line)
