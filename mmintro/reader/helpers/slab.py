"""SLUB slab caches (mm/slub.c, mm/slab.h, mm/slab_common.c) read from a snapshot, named and
behaving like drgn's ``drgn.helpers.linux.slab``.

Where SLUB keeps objects (6.18, semantics.md §5):

* every slab's own ``slab->freelist`` (a frozen CPU slab's collects remote frees);
* ``kmem_cache_cpu.freelist``: the lockless freelist over the CPU slab ``kmem_cache_cpu.slab``;
* the CPU partial slabs chained from ``kmem_cache_cpu.partial`` by ``slab->next``;
* the node partial lists ``kmem_cache_node.partial`` (``slab->slab_list``);
* 6.18's sheaves: the CPU's ``main`` and ``spare`` sheaves and the node barns' full sheaves.

A free object's next pointer sits at ``object + s->offset``, hardened
(CONFIG_SLAB_FREELIST_HARDENED) as ``next ^ s->random ^ swab(ptr_addr)``.

:func:`slab_census` is the columnar census: the slab pages of every cache come from one numpy
pass over the struct page array (``__page_type`` = PGTY_slab on a slab's head page), object
addresses are computed per slab with numpy, every slab's freelist is walked for all slabs of
a cache at once (one :meth:`~mmintro.reader.core.CoreFile.gather_u64` per freelist
position), and the few per-CPU and sheaf objects are added.  Allocated = in a slab and on no
freelist or sheaf -- drgn's definition in ``slab_cache_for_each_allocated_object``.

Every walk is bounded and checked.  A freelist pointer that is not an object of its slab, or
a freelist longer than the slab has objects (a cycle), raises :class:`SlabCorruptionError`
naming the cache and the slab.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mmintro.reader.columns import page_array, present_pfn_mask
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.list import list_for_each_entry
from mmintro.reader.object import NULL, Object
from mmintro.reader.program import Program

__all__ = [
    "CacheObjects",
    "CpuSlabInfo",
    "NodeSlabInfo",
    "SlabCacheUsage",
    "SlabCorruptionError",
    "SlabFreelistCycleError",
    "SlabInfo",
    "SlabObjectInfo",
    "SlabPartialListError",
    "SlabTotalUsage",
    "find_containing_slab_cache",
    "find_slab_cache",
    "for_each_kmem_cache_node",
    "for_each_slab_cache",
    "get_slabinfo",
    "in_direct_map",
    "slab_address",
    "slab_cache_cpu_info",
    "slab_cache_for_each_allocated_object",
    "slab_cache_is_merged",
    "slab_cache_name",
    "slab_cache_node_info",
    "slab_cache_objects_per_slab",
    "slab_cache_order",
    "slab_cache_pages_per_slab",
    "slab_cache_usage",
    "slab_census",
    "slab_object_info",
    "slab_pfn",
    "slab_total_usage",
]

_MAX_CACHES = 1 << 16  # bound on the slab_caches walk
_MAX_LIST = 1 << 22  # bound on partial lists and barns
_OO_SHIFT = 16  # mm/slub.c OO_SHIFT: kmem_cache_order_objects.x = order << 16 | objects
_OO_MASK = (1 << _OO_SHIFT) - 1
MAX_PARTIAL_TO_SCAN = 10000  # mm/slub.c, count_partial_free_approx()
_M64 = (1 << 64) - 1


class SlabCorruptionError(ValidationError):
    """A slab allocator structure is inconsistent (drgn's ``SlabCorruptionError``)."""


class SlabFreelistCycleError(SlabCorruptionError):
    """A freelist does not end within the objects of its slab (drgn's name)."""


class SlabPartialListError(SlabCorruptionError):
    """A CPU or node partial list is corrupt (drgn's name)."""


# -- caches ---------------------------------------------------------------------------------------
def for_each_slab_cache(prog: Program) -> Iterator[Object]:
    """Every cache on ``slab_caches``, in list order (newest first: create_cache() adds at the
    head), as /proc/slabinfo prints them.

    :return: Iterator of ``struct kmem_cache *`` objects.
    """
    head = prog["slab_caches"].address_of_()
    yield from list_for_each_entry("struct kmem_cache", head, "list", name="slab_caches", limit=_MAX_CACHES)


def slab_cache_name(cache: Object) -> str:
    """The name of a slab cache (``s->name``).

    :param cache: ``struct kmem_cache *``"""
    try:
        return cache.name.string_(limit=256).decode(errors="replace")
    except FaultError:
        return f"slab cache {cache.value_():#x}"


def find_slab_cache(prog: Program, name: str | bytes) -> Object | None:
    """The cache named ``name`` (the first on ``slab_caches``), or None.

    :return: ``struct kmem_cache *``
    """
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    for s in for_each_slab_cache(prog):
        if slab_cache_name(s) == name:
            return s
    return None


def slab_cache_objects_per_slab(cache: Object) -> int:
    """``oo_objects(s->oo)``. :param cache: ``struct kmem_cache *``"""
    return cache.oo.x.value_() & _OO_MASK


def slab_cache_order(cache: Object) -> int:
    """``oo_order(s->oo)``. :param cache: ``struct kmem_cache *``"""
    return cache.oo.x.value_() >> _OO_SHIFT


def slab_cache_pages_per_slab(cache: Object) -> int:
    """``1 << oo_order(s->oo)``. :param cache: ``struct kmem_cache *``"""
    return 1 << slab_cache_order(cache)


def slab_cache_is_merged(cache: Object) -> bool:
    """Whether other kmem_cache_create() calls were merged into this cache (``refcount > 1``)."""
    return cache.refcount.value_() > 1


def for_each_kmem_cache_node(cache: Object) -> Iterator[tuple[int, Object]]:
    """mm/slab.h ``for_each_kmem_cache_node()``: (node id, ``struct kmem_cache_node *``) for
    every node id below ``nr_node_ids`` whose ``s->node[]`` is set."""
    prog = cache.prog_
    for nid in range(min(prog["nr_node_ids"].value_(), len(cache.node))):  # (s->node[MAX_NUMNODES])
        n = cache.node[nid]
        if n.value_():
            yield nid, n


def _page_size(prog: Program) -> int:
    return prog.types.struct("page").size


def slab_pfn(slab: Object) -> int:
    """Pfn of a slab's (head) page. :param slab: ``struct slab *``"""
    from mmintro.reader.helpers.mm import vmemmap

    prog = slab.prog_
    return (slab.value_() - vmemmap(prog).value_()) // _page_size(prog)


def slab_address(slab: Object) -> int:
    """mm/slab.h ``slab_address()``: the direct-map address of a slab's memory.

    :param slab: ``struct slab *``
    """
    prog = slab.prog_
    return prog["page_offset_base"].value_() + (slab_pfn(slab) << 12)


# -- one cache's geometry, read once ----------------------------------------------------------
class _Geom(NamedTuple):
    addr: int
    name: str
    size: int
    object_size: int
    offset: int
    random: int  # 0 without CONFIG_SLAB_FREELIST_HARDENED
    red_left_pad: int
    objects: int  # oo_objects(s->oo): the most objects a slab of this cache holds
    order: int
    sheaf_capacity: int
    flags: int


def _geom(prog: Program, addr: int) -> _Geom:
    cache = prog.cache.setdefault("slab_geom", {})
    g = cache.get(addr)
    if g is not None:
        return g
    sp = Object(prog, prog.type("struct kmem_cache *"), addr)
    s = sp.deref_().read_()

    def opt(name: str) -> int:
        try:
            return s.member_(name).value_()
        except (AttributeError, LookupError):
            return 0

    oo = s.oo.x.value_()
    mn = s.min.x.value_()
    g = _Geom(
        addr,
        slab_cache_name(sp),
        s.size.value_(),
        s.object_size.value_(),
        s.offset.value_(),
        opt("random"),
        opt("red_left_pad"),
        max(oo & _OO_MASK, mn & _OO_MASK),
        oo >> _OO_SHIFT,
        opt("sheaf_capacity"),
        s.flags.value_(),
    )
    cache[addr] = g
    return g


def _swab(x: int) -> int:
    return int.from_bytes(x.to_bytes(8, "little"), "big")


def _next_free(prog: Program, g: _Geom, obj: int) -> int:
    """mm/slub.c get_freepointer(): the decoded next pointer stored in a free object."""
    ptr_addr = obj + g.offset
    raw = prog.read_u64(ptr_addr)
    return (raw ^ g.random ^ _swab(ptr_addr)) & _M64 if g.random else raw


def _walk_freelist(prog: Program, g: _Geom, head: int, base: int, nobj: int, what: str) -> list[int]:
    """The objects of one freelist inside the slab whose first object is at ``base``.

    :raises SlabCorruptionError: a pointer that is not an object of the slab, or a fault
    :raises SlabFreelistCycleError: more entries than the slab has objects
    """
    out: list[int] = []
    ptr = head
    end = base + nobj * g.size
    while ptr:
        if not (base <= ptr < end) or (ptr - base) % g.size:
            prev = f"after {out[-1]:#x}" if out else "at its head"
            raise SlabCorruptionError(
                f"slab cache {g.name}: {what} freelist has {ptr:#x} {prev}, which is not an "
                f"object of the slab ({base:#x}-{end:#x}, {g.size}-byte objects)"
            )
        if len(out) >= nobj:
            raise SlabFreelistCycleError(
                f"slab cache {g.name}: {what} freelist contains a cycle (more than {nobj} entries, the slab's objects)"
            )
        out.append(ptr)
        try:
            ptr = _next_free(prog, g, ptr)
        except FaultError as e:
            raise SlabCorruptionError(
                f"slab cache {g.name}: {what} freelist object {ptr:#x} cannot be read: {e.message}"
            ) from None
    return out


def _slab_of(prog: Program, slab_addr: int) -> Object:
    return Object(prog, prog.type("struct slab *"), slab_addr)


def _slab_base(prog: Program, g: _Geom, slab_addr: int) -> int:
    return slab_address(_slab_of(prog, slab_addr)) + g.red_left_pad


# -- per-CPU and per-node structures -----------------------------------------------------------
class CpuSlabInfo(NamedTuple):
    """What one CPU holds of a cache."""

    cpu: int
    """CPU number."""
    slab: int
    """``struct slab *`` of the CPU slab (``kmem_cache_cpu.slab``), 0 if none."""
    freelist: list[int]
    """Objects on the CPU's lockless freelist (``kmem_cache_cpu.freelist``)."""
    partial: list[int]
    """``struct slab *`` of each CPU partial slab, in chain order."""
    sheaf_main: list[int]
    """Objects in the CPU's main sheaf (6.18 sheaves; empty without)."""
    sheaf_spare: list[int]
    """Objects in the CPU's spare sheaf."""


class NodeSlabInfo(NamedTuple):
    """One node's ``struct kmem_cache_node`` of a cache."""

    nid: int
    """Node id."""
    nr_partial: int
    """``n->nr_partial``."""
    partial: list[int]
    """``struct slab *`` of each slab on ``n->partial``, in list order."""
    nr_slabs: int
    """``n->nr_slabs``."""
    total_objects: int
    """``n->total_objects``."""
    barn_full: list[list[int]]
    """Objects of each full sheaf in the node's barn."""
    barn_empty: int
    """Empty sheaves in the barn."""


def _sheaf_objects(prog: Program, g: _Geom, sheaf_addr: int, what: str) -> list[int]:
    sheaf = Object(prog, prog.type("struct slab_sheaf *"), sheaf_addr)
    n = sheaf.size.value_()
    cap = g.sheaf_capacity or n
    if n > cap:
        raise SlabCorruptionError(
            f"slab cache {g.name}: {what} sheaf {sheaf_addr:#x} holds {n} objects, more than its capacity {cap}"
        )
    if not n:
        return []
    words = prog.read(sheaf.objects.address_, 8 * n)
    return np.frombuffer(words, dtype="<u8").tolist()


def slab_cache_cpu_info(cache: Object) -> list[CpuSlabInfo]:
    """Each online CPU's slab, freelist, partial slabs and sheaves of a cache (cached per
    snapshot; a snapshot never changes).

    :param cache: ``struct kmem_cache *``
    :raises SlabCorruptionError: a corrupt freelist, partial chain or sheaf
    """
    from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr

    prog = cache.prog_
    key = ("slab_cpu", cache.value_())
    got = prog.cache.get(key)
    if got is not None:
        return got
    g = _geom(prog, cache.value_())
    s = cache
    try:
        cpu_sheaves = s.cpu_sheaves
        has_sheaves = bool(cpu_sheaves.value_())
    except (AttributeError, LookupError):
        has_sheaves = False
    out = []
    for cpu in for_each_online_cpu(prog):
        c = per_cpu_ptr(s.cpu_slab, cpu)
        slab = c.slab.value_()
        freelist: list[int] = []
        if slab:
            sl = _slab_of(prog, slab)
            if sl.slab_cache.value_() != g.addr:
                raise SlabCorruptionError(
                    f"slab cache {g.name}: cpu {cpu} slab {slab:#x} belongs to cache {sl.slab_cache.value_():#x}"
                )
            freelist = _walk_freelist(
                prog, g, c.freelist.value_(), _slab_base(prog, g, slab), sl.objects.value_(), f"cpu {cpu}"
            )
        partial = []
        p = c.partial.value_()
        prev_slabs = None
        while p:
            sl = _slab_of(prog, p)
            if p in partial or len(partial) >= _MAX_LIST:
                raise SlabPartialListError(f"slab cache {g.name}: cpu {cpu} partial slabs contain a cycle at {p:#x}")
            if sl.slab_cache.value_() != g.addr:
                raise SlabPartialListError(
                    f"slab cache {g.name}: cpu {cpu} partial slab {p:#x} belongs to cache {sl.slab_cache.value_():#x}"
                )
            n = sl.slabs.value_()
            if prev_slabs is not None and n >= prev_slabs:
                raise SlabPartialListError(
                    f"slab cache {g.name}: cpu {cpu} partial slabs count not decreasing at {p:#x}"
                )
            prev_slabs = n
            partial.append(p)
            p = sl.next.value_()
        main: list[int] = []
        spare: list[int] = []
        if has_sheaves:
            pcs = per_cpu_ptr(cpu_sheaves, cpu)
            if pcs.main.value_():
                main = _sheaf_objects(prog, g, pcs.main.value_(), f"cpu {cpu} main")
            if pcs.spare.value_():
                spare = _sheaf_objects(prog, g, pcs.spare.value_(), f"cpu {cpu} spare")
        out.append(CpuSlabInfo(cpu, slab, freelist, partial, main, spare))
    prog.cache[key] = out
    return out


def slab_cache_node_info(cache: Object) -> list[NodeSlabInfo]:
    """Each node's partial list, counters and barn of a cache (cached per snapshot).

    :param cache: ``struct kmem_cache *``
    :raises SlabPartialListError: a corrupt partial list or barn
    """
    prog = cache.prog_
    key = ("slab_node", cache.value_())
    got = prog.cache.get(key)
    if got is not None:
        return got
    g = _geom(prog, cache.value_())
    out = []
    for nid, n in for_each_kmem_cache_node(cache):
        try:
            partial = [
                sl.value_()
                for sl in list_for_each_entry(
                    "struct slab",
                    n.partial.address_of_(),
                    "slab_list",
                    name=f"slab cache {g.name}: node {nid} partial list",
                    limit=_MAX_LIST,
                )
            ]
        except ValidationError as e:
            raise SlabPartialListError(str(e)) from None
        full: list[list[int]] = []
        empty = 0
        try:
            barn = n.barn
        except (AttributeError, LookupError):
            barn = None
        if barn is not None and barn.value_():
            try:
                for sh in list_for_each_entry(
                    "struct slab_sheaf",
                    barn.sheaves_full.address_of_(),
                    "barn_list",
                    name=f"slab cache {g.name}: node {nid} barn full sheaves",
                    limit=_MAX_LIST,
                ):
                    full.append(_sheaf_objects(prog, g, sh.value_(), f"node {nid} barn"))
                empty = sum(
                    1
                    for _ in list_for_each_entry(
                        "struct slab_sheaf",
                        barn.sheaves_empty.address_of_(),
                        "barn_list",
                        name=f"slab cache {g.name}: node {nid} barn empty sheaves",
                        limit=_MAX_LIST,
                    )
                )
            except ValidationError as e:
                raise SlabCorruptionError(str(e)) from None
        out.append(
            NodeSlabInfo(
                nid,
                n.nr_partial.value_(),
                partial,
                n.nr_slabs.counter.value_(),
                n.total_objects.counter.value_(),
                full,
                empty,
            )
        )
    prog.cache[key] = out
    return out


def _inuse_objects(prog: Program, slab_addr: int) -> tuple[int, int]:
    sl = _slab_of(prog, slab_addr).deref_().read_()
    return sl.inuse.value_(), sl.objects.value_()


# -- usage, /proc/slabinfo ----------------------------------------------------------------------
class SlabCacheUsage(NamedTuple):
    """Slab cache usage returned by :func:`slab_cache_usage` (drgn's ``SlabCacheUsage``)."""

    num_slabs: int
    """Slabs of the cache (node ``nr_slabs``)."""
    num_objs: int
    """Objects in those slabs, free and in use (node ``total_objects``)."""
    free_objs: int
    """Free objects, counted as drgn counts them: the CPU freelists, ``objects - inuse`` of CPU
    and node partial slabs, and the objects in CPU sheaves and barn full sheaves (remote frees
    into a frozen CPU slab are not counted: SLUB keeps no count of them)."""

    @property
    def active_objs(self) -> int:
        """Objects in use (``num_objs - free_objs``)."""
        return self.num_objs - self.free_objs


def slab_cache_usage(cache: Object) -> SlabCacheUsage:
    """Slabs, objects and free objects of a cache, from SLUB's counters and lists, as drgn's
    ``slab_cache_usage()`` (and so ``crash kmem -s``) computes them.

    :param cache: ``struct kmem_cache *``
    """
    prog = cache.prog_
    free = 0
    for c in slab_cache_cpu_info(cache):
        free += len(c.freelist) + len(c.sheaf_main) + len(c.sheaf_spare)
        for p in c.partial:
            inuse, objects = _inuse_objects(prog, p)
            free += objects - inuse
    slabs = objs = 0
    for n in slab_cache_node_info(cache):
        slabs += n.nr_slabs
        objs += n.total_objects
        free += sum(len(sh) for sh in n.barn_full)
        for p in n.partial:
            inuse, objects = _inuse_objects(prog, p)
            free += objects - inuse
    return SlabCacheUsage(slabs, objs, free)


class SlabInfo(NamedTuple):
    """mm/slab.h ``struct slabinfo`` as SLUB's get_slabinfo() fills it (one /proc/slabinfo row)."""

    active_objs: int
    """``total_objects`` minus the free objects on the node partial lists (objects free in
    CPU slabs, CPU partial slabs and sheaves count as active)."""
    num_objs: int
    """Node ``total_objects``."""
    active_slabs: int
    """Node ``nr_slabs``."""
    num_slabs: int
    """Node ``nr_slabs``."""
    objects_per_slab: int
    """``oo_objects(s->oo)``."""
    cache_order: int
    """``oo_order(s->oo)``."""


def _mult_frac(x: int, n: int, d: int) -> int:
    return (x // d) * n + ((x % d) * n) // d


def count_partial_free_approx(prog: Program, node: NodeSlabInfo) -> int:
    """mm/slub.c count_partial_free_approx(): free objects on a node partial list; above
    MAX_PARTIAL_TO_SCAN slabs, scaled from the first and last MAX_PARTIAL_TO_SCAN/2."""
    if node.nr_partial <= MAX_PARTIAL_TO_SCAN:
        return sum(o - i for i, o in (_inuse_objects(prog, p) for p in node.partial))
    half = MAX_PARTIAL_TO_SCAN // 2
    scanned = node.partial[:half] + node.partial[::-1][: MAX_PARTIAL_TO_SCAN - half]
    if not scanned:  # nr_partial above the cap but an empty list (corrupt; the kernel would divide by 0)
        return 0
    x = sum(o - i for i, o in (_inuse_objects(prog, p) for p in scanned))
    return min(_mult_frac(x, node.nr_partial, len(scanned)), node.total_objects)


def get_slabinfo(cache: Object) -> SlabInfo:
    """mm/slub.c get_slabinfo() of 6.18.

    :param cache: ``struct kmem_cache *``
    """
    prog = cache.prog_
    slabs = objs = free = 0
    for n in slab_cache_node_info(cache):
        slabs += n.nr_slabs
        objs += n.total_objects
        free += count_partial_free_approx(prog, n)
    oo = cache.oo.x.value_()
    return SlabInfo(objs - free, objs, slabs, slabs, oo & _OO_MASK, oo >> _OO_SHIFT)


class SlabTotalUsage(NamedTuple):
    """Slab pages returned by :func:`slab_total_usage`."""

    reclaimable_pages: int
    """``NR_SLAB_RECLAIMABLE_B`` (the node counter holds pages)."""
    unreclaimable_pages: int
    """``NR_SLAB_UNRECLAIMABLE_B``."""

    @property
    def total_pages(self) -> int:
        return self.reclaimable_pages + self.unreclaimable_pages


def slab_total_usage(prog: Program) -> SlabTotalUsage:
    """Reclaimable and unreclaimable slab pages: ``global_node_page_state()`` of the ``_B``
    items, which the kernel keeps in pages (``__mod_node_page_state`` shifts byte deltas)."""
    stat = prog["vm_node_stat"]
    return SlabTotalUsage(
        stat[prog.types.const("NR_SLAB_RECLAIMABLE_B")].counter.value_(),
        stat[prog.types.const("NR_SLAB_UNRECLAIMABLE_B")].counter.value_(),
    )


# -- the columnar census ------------------------------------------------------------------------------
@dataclass
class CacheObjects:
    """Every object slot of one cache, from :func:`slab_census`."""

    cache: int
    """``struct kmem_cache *`` address."""
    name: str
    size: int
    """``s->size``: the slot size."""
    object_size: int
    objects: np.ndarray
    """uint64 addresses of every object slot, slab by slab (slabs in pfn order)."""
    allocated: np.ndarray
    """bool, parallel to :attr:`objects`."""
    slab_pfn: np.ndarray
    """int64 pfn of each object's slab (its head page)."""
    slabs: np.ndarray
    """int64 head pfns of the cache's slabs."""
    cpu_free: int = 0
    """Free objects held by per-CPU structures and barns (CPU freelists, sheaves)."""
    errors: list[str] = field(default_factory=list)
    """Corruption found with ``strict=False`` (the rest of a bad freelist is then lost)."""

    @property
    def nr_allocated(self) -> int:
        return int(self.allocated.sum())

    @property
    def nr_free(self) -> int:
        return len(self.objects) - self.nr_allocated


class _SlabPages(NamedTuple):
    pfns: np.ndarray  # int64 head pfns of every slab
    cache: np.ndarray  # uint64 slab->slab_cache
    freelist: np.ndarray  # uint64 slab->freelist
    counters: np.ndarray  # uint64 slab->counters


def _slab_pages(prog: Program) -> _SlabPages:
    """The slab head pages of the snapshot, from one pass over the struct page array."""
    got = prog.cache.get("slab_pages")
    if got is not None:
        return got
    st = prog.types.struct("slab")
    pg = prog.types.struct("page")
    cols = {"page_type": "page_type", "slab_cache": "compound_head", "freelist": "__folio_index", "counters": "private"}
    # struct slab overlays struct page (mm/slab.h SLAB_MATCH): read slab fields through page's.
    for col, slab_path in (
        ("slab_cache", "slab_cache"),
        ("freelist", "freelist"),
        ("counters", "counters"),
        ("page_type", "__page_type"),
    ):
        if st.offsetof(slab_path) != pg.offsetof(cols[col]):
            raise ValidationError(f"struct slab.{slab_path} does not overlay struct page.{cols[col]}")
    pages = page_array(prog, cols)
    present = present_pfn_mask(prog)
    is_slab = present & ((pages["page_type"] >> np.uint32(24)) == prog.types.const("PGTY_slab"))
    pfns = np.flatnonzero(is_slab)
    out = _SlabPages(
        pfns.astype(np.int64),
        pages["slab_cache"][pfns].astype(np.uint64),
        pages["freelist"][pfns].astype(np.uint64),
        pages["counters"][pfns].astype(np.uint64),
    )
    prog.cache["slab_pages"] = out
    return out


def _counter_bits(prog: Program, name: str) -> tuple[int, int]:
    st = prog.types.struct("slab")
    bit, width, _t = st.walk(name)
    return bit - 8 * st.offsetof("counters"), width


def slab_census(prog: Program, caches: list[int] | None = None, strict: bool = True) -> dict[int, CacheObjects]:
    """Every object of every cache (or of the ``struct kmem_cache *`` addresses in ``caches``),
    columnar; caches without slabs have empty arrays.

    :param strict: raise :class:`SlabCorruptionError` at the first corrupt freelist (default);
        with False record it in :attr:`CacheObjects.errors` and drop the rest of that list
    """
    sp = _slab_pages(prog)
    if caches is None:
        wanted = [s.value_() for s in for_each_slab_cache(prog)]
    else:
        wanted = [int(c) for c in caches]
    obj_shift, obj_w = _counter_bits(prog, "objects")
    page_offset = prog["page_offset_base"].value_()
    order = np.argsort(sp.cache, kind="stable")
    sorted_cache = sp.cache[order]
    out: dict[int, CacheObjects] = {}
    for caddr in wanted:
        g = _geom(prog, caddr)
        lo, hi = (
            np.searchsorted(sorted_cache, np.uint64(caddr), "left"),
            np.searchsorted(sorted_cache, np.uint64(caddr), "right"),
        )
        idx = np.sort(order[lo:hi])
        pfns = sp.pfns[idx]
        nobj = ((sp.counters[idx] >> np.uint64(obj_shift)) & np.uint64((1 << obj_w) - 1)).astype(np.int64)
        errors: list[str] = []
        over = nobj > g.objects
        if over.any():
            j = int(np.argmax(over))
            msg = (
                f"slab cache {g.name}: slab {_slab_addr(prog, int(pfns[j])):#x} (pfn {int(pfns[j]):#x}) claims "
                f"{int(nobj[j])} objects, more than the cache's {g.objects}"
            )
            if strict:
                raise SlabCorruptionError(msg)
            errors.append(msg)
            nobj = np.minimum(nobj, g.objects)
        base = np.uint64(page_offset + g.red_left_pad) + (pfns.astype(np.uint64) << np.uint64(12))
        total = int(nobj.sum())
        slab_idx = np.repeat(np.arange(len(pfns)), nobj)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(nobj) - nobj, nobj)
        objs = base[slab_idx] + within.astype(np.uint64) * np.uint64(g.size)
        free = _walk_freelists(prog, g, pfns, base, nobj, sp.freelist[idx], page_offset, strict, errors)
        cpu_free: list[int] = []
        try:
            cache = Object(prog, prog.type("struct kmem_cache *"), caddr)
            for c in slab_cache_cpu_info(cache):
                cpu_free += c.freelist + c.sheaf_main + c.sheaf_spare
            for n in slab_cache_node_info(cache):
                for sh in n.barn_full:
                    cpu_free += sh
        except SlabCorruptionError as e:
            if strict:
                raise
            errors.append(str(e))
        except FaultError as e:
            msg = f"slab cache {g.name}: per-CPU or barn structures unreadable: {e}"
            if strict:
                raise SlabCorruptionError(msg) from None
            errors.append(msg)
        free_all = np.union1d(free, np.array(cpu_free, dtype=np.uint64))
        allocated = ~np.isin(objs, free_all)
        out[caddr] = CacheObjects(
            caddr,
            g.name,
            g.size,
            g.object_size,
            objs,
            allocated,
            pfns[slab_idx].astype(np.int64),
            pfns.astype(np.int64),
            len(cpu_free),
            errors,
        )
    return out


def _slab_addr(prog: Program, pfn: int) -> int:
    from mmintro.reader.helpers.mm import vmemmap

    return vmemmap(prog).value_() + pfn * _page_size(prog)


def _walk_freelists(
    prog: Program,
    g: _Geom,
    pfns: np.ndarray,
    base: np.ndarray,
    nobj: np.ndarray,
    heads: np.ndarray,
    page_offset: int,
    strict: bool,
    errors: list[str],
) -> np.ndarray:
    """Every slab's own freelist at once: one vectorised step (a gather of the next pointers)
    per freelist position."""
    cur = heads.copy()
    found: list[np.ndarray] = []
    steps = np.zeros(len(cur), dtype=np.int64)
    size = np.uint64(g.size)
    end = base + nobj.astype(np.uint64) * size
    rnd = np.uint64(g.random)
    active = np.flatnonzero(cur != 0)
    while len(active):
        p = cur[active]
        b = base[active]
        bad = (p < b) | (p >= end[active]) | ((p - b) % size != 0)
        steps[active] += 1
        cycle = steps[active] > nobj[active]
        if bad.any() or cycle.any():
            j = int(active[np.argmax(bad | cycle)])
            what = f"slab {_slab_addr(prog, int(pfns[j])):#x} (pfn {int(pfns[j]):#x})"
            if bad[np.argmax(bad | cycle)]:
                msg = (
                    f"slab cache {g.name}: {what} freelist has {int(cur[j]):#x}, which is not an object of the slab "
                    f"({int(base[j]):#x}-{int(end[j]):#x}, {g.size}-byte objects)"
                )
                err: type[SlabCorruptionError] = SlabCorruptionError
            else:
                msg = (
                    f"slab cache {g.name}: {what} freelist contains a cycle (more than {int(nobj[j])} entries, "
                    "the slab's objects)"
                )
                err = SlabFreelistCycleError
            if strict:
                raise err(msg)
            errors.append(msg)
            drop = bad | cycle
            cur[active[drop]] = 0
            active = active[~drop]
            p = cur[active]
            if not len(active):
                break
        found.append(p)
        ptr_addr = p + np.uint64(g.offset)
        try:
            raw = prog.core.gather_u64(ptr_addr - np.uint64(page_offset))
        except FaultError as e:
            msg = f"slab cache {g.name}: a freelist object is not in the snapshot's memory: {e}"
            if strict:
                raise SlabCorruptionError(msg) from None
            errors.append(msg)
            break
        cur[active] = raw ^ rnd ^ ptr_addr.byteswap() if g.random else raw
        active = active[cur[active] != 0]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)


def slab_cache_for_each_allocated_object(cache: Object, type: str = "void") -> Iterator[Object]:
    """Every allocated object of a cache, as ``type *`` pointers (from the census).

    :param cache: ``struct kmem_cache *``
    """
    prog = cache.prog_
    c = slab_census(prog, [cache.value_()])[cache.value_()]
    t = prog.type(f"{type} *")
    for a in c.objects[c.allocated].tolist():
        yield Object(prog, t, a)


# -- one address ------------------------------------------------------------------------------------
class SlabObjectInfo(NamedTuple):
    """What :func:`slab_object_info` finds (drgn's ``SlabObjectInfo``)."""

    slab_cache: Object
    """``struct kmem_cache *`` of the slab."""
    slab: Object
    """``struct slab *`` containing the address."""
    address: int
    """Start of the object containing the address."""
    allocated: bool | None
    """True if allocated, False if free, None if unknown (a corrupt freelist or per-CPU
    structure of this cache)."""


def in_direct_map(prog: Program, addr: int) -> bool:
    """Whether ``addr`` is in the direct map of RAM: ``__va(0) <= addr < __va(max_pfn)``.

    drgn's in_direct_map() ends at ``max_low_pfn``, which x86-64's init_mem_mapping() raises to
    ``max_pfn``; ``max_pfn`` is the bound the kernel itself uses (``high_memory``)."""
    pob = prog["page_offset_base"].value_()
    return pob + (prog["min_low_pfn"].value_() << 12) <= addr < pob + (prog["max_pfn"].value_() << 12)


def _containing_slab(prog: Program, addr: int) -> Object | None:
    from mmintro.reader.helpers.mm import PageSlab, compound_head, virt_to_page

    if not in_direct_map(prog, addr):
        return None
    try:
        page = compound_head(virt_to_page(prog, addr))
        if not PageSlab(page):
            return None
    except FaultError:
        return None
    return _slab_of(prog, page.value_())


def _cpu_free_set(cache: Object) -> set[int]:
    prog = cache.prog_
    key = ("slab_cpu_free", cache.value_())
    got = prog.cache.get(key)
    if got is None:
        got = set()
        for c in slab_cache_cpu_info(cache):
            got.update(c.freelist, c.sheaf_main, c.sheaf_spare)
        for n in slab_cache_node_info(cache):
            for sh in n.barn_full:
                got.update(sh)
        prog.cache[key] = got
    return got


def slab_object_info(prog: Program, addr: int) -> SlabObjectInfo | None:
    """The slab object containing ``addr``: its cache, slab, start and whether it is
    allocated; None if ``addr`` is not in a slab page of the direct map.

    The address's own slab freelist is walked, and the cache's per-CPU freelists and sheaves
    (cached per snapshot), as drgn's slab_object_info() does.
    """
    addr = int(addr)  # an int or an Object (a pointer), as drgn takes
    slab = _containing_slab(prog, addr)
    if slab is None:
        return None
    cache = slab.slab_cache.read_()
    g = _geom(prog, cache.value_())
    first = slab_address(slab) + g.red_left_pad
    obj = first + (addr - first) // g.size * g.size
    allocated: bool | None
    try:
        cpu_free = _cpu_free_set(cache)
    except (SlabCorruptionError, FaultError):
        cpu_free, cpu_error = set(), True
    else:
        cpu_error = False
    if obj in cpu_free:
        allocated = False
    else:
        try:
            free = _walk_freelist(
                prog, g, slab.freelist.value_(), first, slab.objects.value_(), f"slab {slab.value_():#x}"
            )
        except (SlabCorruptionError, FaultError):
            allocated = None
        else:
            allocated = None if cpu_error and obj not in free else obj not in free
    return SlabObjectInfo(cache, slab, obj, allocated)


def find_containing_slab_cache(prog: Program, addr: int) -> Object:
    """The cache of the slab containing ``addr``, or a NULL ``struct kmem_cache *``."""
    slab = _containing_slab(prog, addr)
    if slab is None:
        return NULL(prog, "struct kmem_cache *")
    return slab.slab_cache.read_()
