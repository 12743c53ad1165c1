"""/proc/buddyinfo (mm/vmstat.c: frag_show_print): free blocks per order, populated zones."""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.helpers.mmzone import for_each_online_pgdat
from mmintro.reader.program import Program
from mmintro.reader.validate import check_nr_free, note

__all__ = ["BuddyInfoRow", "buddyinfo", "render"]


class BuddyInfoRow(NamedTuple):
    """One populated zone."""

    node: int
    zone: str
    nr_free: list[int]
    """``zone->free_area[order].nr_free`` (blocks of all migratetypes) for each order."""


def buddyinfo(prog: Program) -> list[BuddyInfoRow]:
    rows = []
    for pgdat in for_each_online_pgdat(prog):
        nid = pgdat.node_id.value_()
        zones = pgdat.node_zones
        for i in range(len(zones)):
            z = zones[i]
            if not z.present_pages.value_():  # walk_zones_in_node(assert_populated=true)
                continue
            fa = z.free_area
            nr_free = [fa[o].nr_free.value_() for o in range(len(fa))]
            note(prog, check_nr_free(z))  # nr_free against the free lists it counts
            rows.append(BuddyInfoRow(nid, z.name.string_().decode(), nr_free))
    return rows


def render(rows: list[BuddyInfoRow]) -> str:
    return "".join(f"Node {r.node}, zone {r.zone:>8} " + "".join(f"{n:6} " for n in r.nr_free) + "\n" for r in rows)
