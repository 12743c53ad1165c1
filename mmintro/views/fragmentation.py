"""The debugfs extfrag files (mm/vmstat.c, CONFIG_DEBUG_FS + CONFIG_COMPACTION), from a snapshot:

* ``/sys/kernel/debug/extfrag/unusable_index`` (unusable_show_print): for each order, the
  share of free memory that sits in blocks too small for an allocation of that order
  (0 = none, 1 = all);
* ``/sys/kernel/debug/extfrag/extfrag_index`` (extfrag_show_print): for an allocation of that
  order that would fail, whether the cause is fragmentation (towards 1) or lack of memory
  (towards 0); ``-1.000`` when the allocation would succeed.

Both come from ``zone->free_area[order].nr_free`` alone (fill_contig_page_info), in
thousandths, printed ``%d.%03d`` with C's truncating division.  :func:`fragmentation`
computes them, :func:`render` prints either file or both, :func:`parse` reads them back.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from mmintro.reader.helpers.mmzone import NODE_DATA, for_each_node_state
from mmintro.reader.program import Program
from mmintro.reader.validate import check_nr_free, note

__all__ = [
    "INDEXES",
    "ContigPageInfo",
    "FragRow",
    "fill_contig_page_info",
    "fragmentation",
    "fragmentation_index",
    "parse",
    "render",
    "unusable_free_index",
]

INDEXES = ("unusable_index", "extfrag_index")
"""The debugfs file names, in the order :func:`render` prints them."""
DEBUGFS_DIR = "/sys/kernel/debug/extfrag"


class ContigPageInfo(NamedTuple):
    """``struct contig_page_info`` for one zone and one requested order."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


class FragRow(NamedTuple):
    """One populated zone: both indexes per order, in thousandths."""

    node: int
    zone: str
    unusable_index: list[int]
    extfrag_index: list[int]


def fill_contig_page_info(nr_free: list[int], suitable_order: int) -> ContigPageInfo:
    """fill_contig_page_info(): free pages, free blocks, and blocks of at least
    ``suitable_order`` counted in units of that order.

    :param nr_free: ``zone->free_area[order].nr_free`` for each order
    """
    pages = total = suitable = 0
    for order, blocks in enumerate(nr_free):
        total += blocks
        pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(pages, total, suitable)


def unusable_free_index(order: int, info: ContigPageInfo) -> int:
    """unusable_free_index(): thousandths of the free memory unusable for ``order``
    (1000 when nothing is free)."""
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def fragmentation_index(order: int, info: ContigPageInfo) -> int:
    """__fragmentation_index(): 0 with no free blocks, -1000 when a block of ``order`` is free,
    else ``1000 - (1000 + free_pages * 1000 / 2^order) / free_blocks_total``.

    The kernel computes this in unsigned longs and returns an int, so it can come out
    negative (one order-0 block asked for order 1 gives -500); that is reproduced.
    """
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    return 1000 - (1000 + info.free_pages * 1000 // (1 << order)) // info.free_blocks_total


def fragmentation(prog: Program) -> list[FragRow]:
    """Both indexes for every populated zone of every node with memory.

    (unusable_show skips nodes without ``N_MEMORY``; extfrag_show does not, but a node without
    memory has no populated zone, so the rows are the same.)
    """
    rows = []
    for nid in for_each_node_state(prog, "N_MEMORY"):
        zones = NODE_DATA(prog, nid).node_zones
        for zid in range(len(zones)):
            zone = zones[zid]
            if not zone.present_pages.value_():
                continue
            fa = zone.free_area
            nr_free = [fa[o].nr_free.value_() for o in range(len(fa))]
            note(prog, check_nr_free(zone))  # nr_free against the free lists it counts
            infos = [fill_contig_page_info(nr_free, o) for o in range(len(nr_free))]
            rows.append(
                FragRow(
                    nid,
                    zone.name.string_().decode("utf-8", "replace"),
                    [unusable_free_index(o, i) for o, i in enumerate(infos)],
                    [fragmentation_index(o, i) for o, i in enumerate(infos)],
                )
            )
    return rows


def _c_div(a: int, b: int) -> tuple[int, int]:
    """C's ``a / b`` and ``a % b`` (truncating towards zero)."""
    q = abs(a) // abs(b) * (1 if (a >= 0) == (b > 0) else -1)
    return q, a - q * b


def _fmt(index: int, width: int) -> str:
    q, r = _c_div(index, 1000)
    return f"{q:{width}}.{r:03} "


def render_index(rows: list[FragRow], which: str) -> str:
    """One debugfs file: ``unusable_index`` ("%d.%03d ") or ``extfrag_index`` ("%2d.%03d ")."""
    width = {"unusable_index": 0, "extfrag_index": 2}[which]
    return "".join(
        f"Node {r.node}, zone {r.zone:>8} " + "".join(_fmt(v, width) for v in getattr(r, which)) + "\n" for r in rows
    )


def render(rows: list[FragRow], which: str | None = None) -> str:
    """One file's text (``which``), or both, each after a ``# <debugfs path>`` line."""
    if which is not None:
        return render_index(rows, which)
    return "".join(f"# {DEBUGFS_DIR}/{name}\n" + render_index(rows, name) for name in INDEXES)


def to_json(rows: list[FragRow], which: str | None = None) -> list[dict[str, Any]]:
    names = INDEXES if which is None else (which,)
    return [{"node": r.node, "zone": r.zone} | {n: [v / 1000 for v in getattr(r, n)] for n in names} for r in rows]


_ROW = re.compile(r"^Node (\d+), zone +(\S+) ((?:\s*-?\d+\.-?\d+ )+)$")
_HEADER = re.compile(r"^# (?:.*/)?(\w+)$")


def parse(text: str) -> dict[str, list[dict[str, Any]]]:
    """Text of one debugfs extfrag file, or of both with ``# path`` headers, →
    ``{file name: [{node, zone, index: [thousandths...]}]}``.  Text without a header is
    returned under the key ``""``.  ``0.-500`` (a negative index below one) reads as -500.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    section = ""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if m := _HEADER.match(line):
            section = m.group(1)
            out.setdefault(section, [])
            continue
        m = _ROW.match(line)
        if not m:
            raise ValueError(f"extfrag: unexpected line {n}: {line!r}")
        values = []
        for word in m.group(3).split():
            whole, frac = word.split(".")
            values.append(int(whole) * 1000 + int(frac))  # index / 1000 and index % 1000, C style
        out.setdefault(section, []).append({"node": int(m.group(1)), "zone": m.group(2), "index": values})
    return out
