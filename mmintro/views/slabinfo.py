"""/proc/slabinfo version 2.1 (mm/slab_common.c slab_show/cache_show with SLUB's
get_slabinfo), read from a snapshot.

One row per cache on ``slab_caches``, in list order (slab_start/slab_next walk the list, and
create_cache() adds at its head, so the newest cache comes first).  SLUB fills the row from
its node counters: num_objs = Σ ``total_objects``, active_slabs = num_slabs = Σ ``nr_slabs``,
active_objs = num_objs minus the free objects counted on the *node partial lists* only
(count_partial_free_approx; objects free on CPU freelists, CPU partial slabs and sheaves count
as active); objsize is ``s->size``, objperslab and pagesperslab come from ``s->oo``; the SLAB
tunables and sharedavail are 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mmintro.reader.helpers.slab import for_each_slab_cache, get_slabinfo, slab_cache_name
from mmintro.reader.program import Program
from mmintro.reader.validate import check_slab_cache, note

__all__ = ["HEADER", "SlabinfoRow", "parse", "render", "slabinfo"]

HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> "
    "<batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n"
)


class SlabinfoRow(NamedTuple):
    """One /proc/slabinfo line."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    """``s->size`` (the slot, free pointer and padding included)."""
    objperslab: int
    pagesperslab: int
    limit: int
    batchcount: int
    sharedfactor: int
    active_slabs: int
    num_slabs: int
    sharedavail: int
    cache: int
    """``struct kmem_cache *`` (not printed)."""


def slabinfo(prog: Program) -> list[SlabinfoRow]:
    rows = []
    for s in for_each_slab_cache(prog):
        note(prog, check_slab_cache(s))  # node counters against the partial lists
        si = get_slabinfo(s)
        rows.append(
            SlabinfoRow(
                slab_cache_name(s),
                si.active_objs,
                si.num_objs,
                s.size.value_(),
                si.objects_per_slab,
                1 << si.cache_order,
                0,
                0,
                0,
                si.active_slabs,
                si.num_slabs,
                0,
                s.value_(),
            )
        )
    return rows


def render(rows: list[SlabinfoRow]) -> str:
    """The /proc/slabinfo text (cache_show's format strings)."""
    out = [HEADER]
    for r in rows:
        out.append(
            f"{r.name:<17} {r.active_objs:6} {r.num_objs:6} {r.objsize:6} {r.objperslab:4} {r.pagesperslab:4}"
            f" : tunables {r.limit:4} {r.batchcount:4} {r.sharedfactor:4}"
            f" : slabdata {r.active_slabs:6} {r.num_slabs:6} {r.sharedavail:6}\n"
        )
    return "".join(out)


def to_json(rows: list[SlabinfoRow]) -> list[dict[str, Any]]:
    return [r._asdict() | {"cache": f"{r.cache:#x}"} for r in rows]


_FIELDS = SlabinfoRow._fields[1:-1]


def parse(text: str) -> list[dict[str, Any]]:
    """/proc/slabinfo text (ours or a real kernel's) → one dict per cache, in file order."""
    lines = text.splitlines()
    if len(lines) < 2 or lines[0] != "slabinfo - version: 2.1" or not lines[1].startswith("# name"):
        raise ValueError("slabinfo: not a version 2.1 /proc/slabinfo (header lines missing)")
    out = []
    for n, line in enumerate(lines[2:], 3):
        f = line.split()
        if len(f) != 16 or f[6] != ":" or f[7] != "tunables" or f[11] != ":" or f[12] != "slabdata":
            raise ValueError(f"slabinfo: line {n} is not a cache line: {line!r}")
        nums = [int(x) for x in f[1:6] + f[8:11] + f[13:16]]
        out.append({"name": f[0], **dict(zip(_FIELDS, nums))})
    return out
