"""crash's ``kmem -s`` (every cache) and ``kmem -S CACHE`` (one cache in detail), read from a
snapshot.

The summary has crash's columns: CACHE (``struct kmem_cache *``), OBJSIZE (``object_size``),
ALLOCATED, TOTAL, SLABS, SSIZE and NAME.  TOTAL and SLABS are SLUB's node counters
(``total_objects``, ``nr_slabs``; what /proc/slabinfo prints as num_objs and num_slabs);
ALLOCATED is exact: the objects on no freelist and in no sheaf, from the columnar census
(:func:`~mmintro.reader.helpers.slab.slab_census`).  crash and drgn count ALLOCATED from
SLUB's ``inuse`` counters instead, so objects freed remotely into a CPU slab (which SLUB does
not count) show as allocated there and free here.

The detail of one cache lists each CPU's slab and lockless freelist, its CPU partial slabs,
each node's counters and partial slabs, the barn's sheaves, and per slab TOTAL / ALLOCATED /
FREE from the census.  Allocation call sites exist only with SLUB_DEBUG user tracking
(SLAB_STORE_USER, ``slub_debug=U``), which the reference kernel leaves off.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mmintro.reader.helpers.slab import (
    CacheObjects,
    find_slab_cache,
    for_each_slab_cache,
    get_slabinfo,
    slab_address,
    slab_cache_cpu_info,
    slab_cache_name,
    slab_cache_node_info,
    slab_census,
    slab_pfn,
)
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.reader.validate import check_slab_cache, note

__all__ = ["KmemCacheRow", "SlabRow", "cache_detail", "kmem_s", "render", "render_detail"]


class KmemCacheRow(NamedTuple):
    """One ``kmem -s`` line."""

    cache: int
    name: str
    objsize: int
    """``s->object_size`` (crash prints this, /proc/slabinfo prints ``s->size``)."""
    allocated: int
    """Objects in use (census)."""
    total: int
    """Node ``total_objects``."""
    slabs: int
    """Node ``nr_slabs``."""
    ssize: int
    """Bytes per slab (``PAGE_SIZE << oo_order``)."""


def kmem_s(prog: Program) -> list[KmemCacheRow]:
    """Every cache, in ``slab_caches`` order."""
    caches = list(for_each_slab_cache(prog))
    census = slab_census(prog, [c.value_() for c in caches])
    rows = []
    for s in caches:
        note(prog, check_slab_cache(s))  # node counters against the partial lists
        si = get_slabinfo(s)
        rows.append(
            KmemCacheRow(
                s.value_(),
                slab_cache_name(s),
                s.object_size.value_(),
                census[s.value_()].nr_allocated,
                si.num_objs,
                si.num_slabs,
                prog.page_size << si.cache_order,
            )
        )
    return rows


# crash 9's kmem_cache_hdr and dump_kmem_cache_info(): "%016lx %8ld  %9ld  %8ld  %5ld  %4ldk  %s"
_HEAD = "CACHE" + " " * 12 + " OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME\n"


def _row(r: KmemCacheRow) -> str:
    return f"{r.cache:016x} {r.objsize:8}  {r.allocated:9}  {r.total:8}  {r.slabs:5}  {r.ssize >> 10:4}k  {r.name}\n"


def render(rows: list[KmemCacheRow]) -> str:
    return _HEAD + "".join(_row(r) for r in rows)


# -- one cache ---------------------------------------------------------------------------------
class SlabRow(NamedTuple):
    """One slab of a cache, with its census counts."""

    slab: int
    """``struct slab *``."""
    pfn: int
    memory: int
    """Direct-map address of the slab's memory."""
    node: int
    inuse: int
    """``slab->inuse`` (SLUB's count; ``objects`` while the slab is a CPU slab)."""
    objects: int
    """``slab->objects``."""
    allocated: int
    """Objects in use (census)."""
    free: int
    """Free objects (census)."""


def _slab_row(
    prog: Program, census: CacheObjects, per_slab: dict[int, tuple[int, int]], slab_addr: int, nid_of: Any
) -> SlabRow:
    sl = Object(prog, prog.type("struct slab *"), slab_addr)
    pfn = slab_pfn(sl)
    alloc, total = per_slab.get(pfn, (0, 0))
    return SlabRow(
        slab_addr, pfn, slab_address(sl), nid_of(sl), sl.inuse.value_(), sl.objects.value_(), alloc, total - alloc
    )


def cache_detail(prog: Program, name: str) -> dict[str, Any]:
    """``kmem -S NAME``: the cache's summary row, CPU slabs, freelists and partial slabs, node
    lists and barns, and census counts (JSON-ready).

    :raises ValueError: no cache of that name
    """
    from mmintro.views.pageflags import flags_layout

    s = find_slab_cache(prog, name)
    if s is None:
        raise ValueError(f"kmem: no slab cache named {name!r}")
    census = slab_census(prog, [s.value_()])[s.value_()]
    si = get_slabinfo(s)
    lay = flags_layout(prog)

    def nid_of(sl: Object) -> int:
        return lay.node(sl.flags.f.value_())

    per_slab: dict[int, tuple[int, int]] = {}
    if len(census.slab_pfn):
        pfns, starts, counts = np.unique(census.slab_pfn, return_index=True, return_counts=True)
        alloc = np.add.reduceat(census.allocated.astype(np.int64), starts) if len(starts) else []
        per_slab = {int(p): (int(a), int(c)) for p, a, c in zip(pfns, alloc, counts)}
    summary = KmemCacheRow(
        s.value_(),
        slab_cache_name(s),
        s.object_size.value_(),
        census.nr_allocated,
        si.num_objs,
        si.num_slabs,
        prog.page_size << si.cache_order,
    )
    cpus = []
    for c in slab_cache_cpu_info(s):
        cpus.append(
            {
                "cpu": c.cpu,
                "slab": _slab_row(prog, census, per_slab, c.slab, nid_of)._asdict() if c.slab else None,
                "freelist": c.freelist,
                "partial": [_slab_row(prog, census, per_slab, p, nid_of)._asdict() for p in c.partial],
                "sheaf_main": len(c.sheaf_main),
                "sheaf_spare": len(c.sheaf_spare),
            }
        )
    nodes = []
    for n in slab_cache_node_info(s):
        nodes.append(
            {
                "node": n.nid,
                "kmem_cache_node": s.node[n.nid].value_(),
                "nr_slabs": n.nr_slabs,
                "total_objects": n.total_objects,
                "nr_partial": n.nr_partial,
                "partial": [_slab_row(prog, census, per_slab, p, nid_of)._asdict() for p in n.partial],
                "barn_full_sheaves": [len(sh) for sh in n.barn_full],
                "barn_empty_sheaves": n.barn_empty,
            }
        )
    store_user = bool(s.flags.value_() >> prog.types.const("_SLAB_STORE_USER") & 1)
    return {
        "summary": summary._asdict(),
        "size": s.size.value_(),
        "offset": s.offset.value_(),
        "objects_per_slab": si.objects_per_slab,
        "order": si.cache_order,
        "census": {
            "slabs": len(census.slabs),
            "objects": len(census.objects),
            "allocated": census.nr_allocated,
            "free": census.nr_free,
            "free_in_cpu_structures": census.cpu_free,
        },
        "cpus": cpus,
        "nodes": nodes,
        "callers": None,
        "callers_note": (
            "SLAB_STORE_USER is set, but mmintro does not decode struct track"
            if store_user
            else "not tracked: SLAB_STORE_USER (slub_debug=U) is off, so the kernel keeps no allocation call sites"
        ),
    }


_SLAB_HEAD = f"    {'SLAB':<16}  {'MEMORY':<16}  {'PFN':>8}  NODE  {'TOTAL':>5}  {'ALLOCATED':>9}  {'FREE':>5}  INUSE\n"


def _slab_line(r: dict[str, Any]) -> str:
    return (
        f"    {r['slab']:016x}  {r['memory']:016x}  {r['pfn']:8x}  {r['node']:4}  {r['objects']:5}  "
        f"{r['allocated']:9}  {r['free']:5}  {r['inuse']}\n"
    )


def render_detail(d: dict[str, Any]) -> str:
    out = [_HEAD, _row(KmemCacheRow(**d["summary"]))]
    c = d["census"]
    out.append(
        f"  object slot {d['size']} bytes, free pointer at +{d['offset']}, {d['objects_per_slab']} objects per "
        f"order-{d['order']} slab\n"
    )
    out.append(
        f"  census: {c['slabs']} slabs, {c['objects']} objects: {c['allocated']} allocated, {c['free']} free "
        f"({c['free_in_cpu_structures']} in CPU freelists and sheaves)\n"
    )
    for cpu in d["cpus"]:
        out.append(f"  CPU {cpu['cpu']} SLAB:\n")
        if cpu["slab"]:
            out.append(_SLAB_HEAD + _slab_line(cpu["slab"]))
            fl = cpu["freelist"]
            out.append(f"    FREELIST ({len(fl)}):" + ("" if fl else " (empty)") + "\n")
            for i in range(0, len(fl), 4):
                out.append("      " + "  ".join(f"{a:016x}" for a in fl[i : i + 4]) + "\n")
        else:
            out.append("    (empty)\n")
        out.append(f"  CPU {cpu['cpu']} PARTIAL:\n")
        out.append(_SLAB_HEAD + "".join(_slab_line(r) for r in cpu["partial"]) if cpu["partial"] else "    (empty)\n")
        if cpu["sheaf_main"] or cpu["sheaf_spare"]:
            out.append(f"  CPU {cpu['cpu']} SHEAVES: main {cpu['sheaf_main']} objects, spare {cpu['sheaf_spare']}\n")
    out.append(f"  {'KMEM_CACHE_NODE':<16}  NODE  {'SLABS':>6}  {'OBJECTS':>8}  {'PARTIAL':>7}\n")
    for n in d["nodes"]:
        out.append(
            f"  {n['kmem_cache_node']:016x}  {n['node']:4}  {n['nr_slabs']:6}  {n['total_objects']:8}  "
            f"{n['nr_partial']:7}\n"
        )
    for n in d["nodes"]:
        out.append(f"  NODE {n['node']} PARTIAL:\n")
        out.append(_SLAB_HEAD + "".join(_slab_line(r) for r in n["partial"]) if n["partial"] else "    (empty)\n")
        if n["barn_full_sheaves"] or n["barn_empty_sheaves"]:
            out.append(
                f"  NODE {n['node']} BARN: {len(n['barn_full_sheaves'])} full sheaves "
                f"({sum(n['barn_full_sheaves'])} objects), {n['barn_empty_sheaves']} empty\n"
            )
        out.append(f"  NODE {n['node']} FULL:\n    (not tracked: SLUB lists full slabs only with SLUB_DEBUG)\n")
    out.append(f"  CALLERS: {d['callers_note']}\n")
    return "".join(out)
