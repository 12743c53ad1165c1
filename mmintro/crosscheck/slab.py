"""Rows for SLUB (mm/slub.c): caches, usage, allocated objects and object lookup against drgn's
slab helpers, and ``crash kmem -s``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from mmintro.crosscheck.drgn import crash
from mmintro.reader import Program


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


SLAB_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_slab_cache: caches in order", c_slab_caches),
    ("slab_cache_usage and slabinfo numbers per cache", c_slab_usage),
    ("allocated objects of every cache: columnar walk = drgn", c_slab_objects),
    ("slab_object_info/find_containing_slab_cache on samples", c_slab_object_info),
]
SLAB_CRASH_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("crash kmem -s = slabinfo", c_kmem_s_slabinfo),
]
