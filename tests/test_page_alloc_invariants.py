"""Property tests of the buddy allocator (mmintro.kernel.page_alloc): random alloc/free
sequences on 2-node machines, then the allocator's books and the struct page bytes it wrote
are checked against the invariants of mm/page_alloc.c (reference/semantics.md §1.2-§4).

Hypothesis generates sequences of operations (allocations of orders 0..10 with a mix of GFP
flags, on both CPUs, preferring either node, with a nodemask or under an interleave policy;
bursts of large allocations that push zones below their watermarks so fallbacks, claims,
steals, highatomic reserves and allocation failures happen; frees; pcp drains).  After each
sequence :func:`check_invariants` checks everything at once; then everything is freed, the
pcp lists are drained, and :func:`check_back_to_boot` compares the result with a fresh boot
of the same machine.

The checks read the allocator's books (``ZoneState``), the bytes it wrote into the memory
map (``section_pages`` numpy views, after ``k.sync()``) and the data pages (``k.mem``).  Offsets
and constants come from the type data; of the allocator only its documented API is used
(``alloc_pages``, ``free_pages``, the list sentinels, ``drain_all_pages``), so a wrong helper
in page_alloc cannot make its own check pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import Kernel, boot
from mmintro.kernel.mm_init import section_pages
from mmintro.types import get_types

T = get_types()
PAGE_SIZE = 4096
PAGES_PER_SECTION = 1 << 15
MAX_ORDER = kc.MAX_PAGE_ORDER
NR_ORDERS = MAX_ORDER + 1
PAGEBLOCK_ORDER = kc.PAGEBLOCK_ORDER
MIGRATE_TYPES = T.const("MIGRATE_TYPES")
MIGRATE_PCPTYPES = T.const("MIGRATE_PCPTYPES")
MIGRATE_MOVABLE = T.const("MIGRATE_MOVABLE")
MIGRATE_HIGHATOMIC = T.const("MIGRATE_HIGHATOMIC")
MIGRATE_ISOLATE = T.const("MIGRATE_ISOLATE")
NR_PCP_LISTS = T.struct("per_cpu_pages").walk("lists")[2].resolved().nelems
COSTLY_ORDER = (NR_PCP_LISTS - 2) // MIGRATE_PCPTYPES - 1  # NR_LOWORDER_PCP_LISTS = 3 * (3 + 1)
PGTY_BUDDY = T.const("PGTY_buddy") << 24
PAGE_TYPE_NONE = 0xFFFFFFFF
PG_HEAD = 1 << T.const("PG_head")
PG_RESERVED = 1 << T.const("PG_reserved")
PAGEFLAGS_MASK = (1 << T.const("__NR_PAGEFLAGS")) - 1
SP = T.sizeof("struct page")
ZONES_PGOFF = 64 - kc.NODES_SHIFT - kc.ZONES_SHIFT  # page-flags-layout.h: node and zone in the top bits


def _w(struct: str, path: str, size: int) -> int:
    """Index of a member in a struct page (or a folio, from its head) as ``size``-byte words."""
    off = T.struct(struct).offsetof(path)
    assert off % size == 0
    return off // size


W_FLAGS, W_LRU_NEXT, W_LRU_PREV, W_PRIVATE = (_w("page", p, 8) for p in ("flags", "lru.next", "lru.prev", "private"))
W_COMPOUND_HEAD = _w("page", "compound_head", 8)
D_PAGE_TYPE, D_REFCOUNT = _w("page", "page_type", 4), _w("page", "_refcount", 4)
FW_FLAGS_1 = _w("folio", "_flags_1", 8)
FD_NR_PAGES = _w("folio", "_nr_pages", 4)
LRU_OFF = T.struct("page").offsetof("lru")
FREE_AREA_OFF = T.struct("zone").offsetof("free_area")
FREE_AREA_SIZE = T.sizeof("struct free_area")
PCP_LISTS_OFF = T.struct("per_cpu_pages").offsetof("lists")


def pindex_order(pindex: int) -> int:
    """mm/page_alloc.c pindex_to_order(): the low-order lists, then the two THP lists."""
    return PAGEBLOCK_ORDER if pindex >= NR_PCP_LISTS - 2 else pindex // MIGRATE_PCPTYPES


# -- what the allocator holds -----------------------------------------------------------------
@dataclass
class Books:
    """Every block the allocator knows, as numpy columns (one row per block)."""

    free: np.ndarray  # pfn, order, mt, zone (index into zones)
    pcp: np.ndarray  # pfn, order, cpu, pindex, zone
    alloc: np.ndarray  # pfn, order
    zones: list = field(default_factory=list)


def _walk(z, head: int, what: str) -> list[int]:
    """Follow ``nxt`` from a sentinel, checking ``prv`` on every link (list_del's invariant)."""
    out = []
    prev, n = head, z.nxt[head]
    while n != head:
        assert z.prv[n] == prev, f"{what}: prv[{n:#x}] = {z.prv[n]:#x}, expected {prev:#x}"
        out.append(n)
        assert len(out) <= len(z.nxt), f"{what}: not circular"
        prev, n = n, z.nxt[n]
    assert z.prv[head] == prev, f"{what}: prv of the head is {z.prv[head]:#x}, expected {prev:#x}"
    return out


def books(k: Kernel) -> Books:
    zones = [z for zs in k.zones for z in zs if z.spanned]
    free, pcp = [], []
    for zi, z in enumerate(zones):
        n_entries = 0
        for o in range(NR_ORDERS):
            listed = 0
            for mt in range(MIGRATE_TYPES):
                pfns = _walk(z, page_alloc.free_list_head(o, mt), f"node {z.nid} {z.name} free_area[{o}][{mt}]")
                free += [(p, o, mt, zi) for p in pfns]
                listed += len(pfns)
            assert listed == z.nr_free[o], f"node {z.nid} {z.name} order {o}: {listed} listed, nr_free {z.nr_free[o]}"
            n_entries += listed
        for pc in z.pcp:
            pages = 0
            for i in range(NR_PCP_LISTS):
                pfns = _walk(z, page_alloc.pcp_list_head(pc.cpu, i), f"node {z.nid} {z.name} cpu {pc.cpu} pcp {i}")
                pcp += [(p, pindex_order(i), pc.cpu, i, zi) for p in pfns]
                pages += len(pfns) << pindex_order(i)
                n_entries += len(pfns)
            assert pages == pc.count, f"node {z.nid} {z.name} cpu {pc.cpu}: {pages} pages listed, count {pc.count}"
        sentinels = NR_ORDERS * MIGRATE_TYPES + len(z.pcp) * NR_PCP_LISTS
        assert len(z.nxt) == len(z.prv) == sentinels + n_entries, f"node {z.nid} {z.name}: stray list links"
    alloc = sorted(k.allocations.items())
    return Books(
        np.array(free, dtype=np.int64).reshape(-1, 4),
        np.array(pcp, dtype=np.int64).reshape(-1, 5),
        np.array(alloc, dtype=np.int64).reshape(-1, 2),
        zones,
    )


def coverage(blocks: list[np.ndarray], npfn: int) -> np.ndarray:
    """How many of the (pfn, order) blocks contain each pfn (interval counting, no per-pfn loop)."""
    diff = np.zeros(npfn + 1, dtype=np.int64)
    for b in blocks:
        np.add.at(diff, b[:, 0], 1)
        np.add.at(diff, b[:, 0] + (1 << b[:, 1]), -1)
    return np.cumsum(diff[:-1])


def memmap_words(k: Kernel) -> np.ndarray:
    """The struct pages of every present section as one pfn-indexed uint64 array (8 words a
    page; rows of absent sections stay zero)."""
    nsec = max(k.present_sections) + 1
    words = np.zeros(nsec * PAGES_PER_SECTION * SP // 8, dtype=np.uint64)
    for nr in k.present_sections:
        raw = section_pages(k, nr).view(np.uint8).view(np.uint64)
        words[nr * PAGES_PER_SECTION * 8 : (nr + 1) * PAGES_PER_SECTION * 8] = raw
    return words


@dataclass
class BootState:
    """A fresh boot of one configuration, as the comparisons need it.

    Boot itself may allocate from the buddy allocator (slab caches, page tables after
    mem_init, ...): those blocks stay allocated through every test and are the kernel's,
    not the test's; the pages boot left on pcp lists are free.  The free lists recorded
    here are boot's after drain_all_pages."""

    managed: np.ndarray  # bool per pfn: handed to the buddy allocator by memblock_free_all
    present: np.ndarray  # bool per pfn: in a present section
    boot_alloc: dict  # pfn -> order: blocks boot allocated
    boot_owned: np.ndarray  # bool per pfn: inside a block boot allocated
    free: set  # (zone, pfn, order, mt) after drain_all_pages
    words: np.ndarray  # the memory map after drain_all_pages
    pageblock_flags: bytes
    free_pages: list[int]


_BOOTS: dict[MachineConfig, BootState] = {}


def boot_state(cfg: MachineConfig) -> BootState:
    if cfg not in _BOOTS:
        k = boot(cfg)
        b = books(k)
        npfn = (max(k.present_sections) + 1) * PAGES_PER_SECTION
        present = np.zeros(npfn, dtype=bool)
        for nr in k.present_sections:
            present[nr * PAGES_PER_SECTION : (nr + 1) * PAGES_PER_SECTION] = True
        cov = coverage([b.free[:, :2], b.pcp[:, :2], b.alloc], npfn)
        assert cov.max() <= 1, "boot left a pfn in two blocks"
        owned = coverage([b.alloc], npfn) == 1
        page_alloc.drain_all_pages(k)
        d = books(k)
        _BOOTS[cfg] = BootState(
            cov == 1,
            present,
            dict(k.allocations),
            owned,
            {tuple(r) for r in d.free[:, [3, 0, 1, 2]].tolist()},
            memmap_words(k),
            bytes(k.pageblock_flags),
            [z.free_pages for z in d.zones],
        )
    return _BOOTS[cfg]


# -- the invariants ---------------------------------------------------------------------------
def check_invariants(k: Kernel, live: dict[int, tuple[int, bool]]) -> Books:
    """Every invariant at once; ``live`` is the test's own record of what it holds
    (pfn -> (order, compound))."""
    boot0 = boot_state(k.config)
    b = books(k)
    pb = np.frombuffer(bytes(k.pageblock_flags), dtype=np.uint8) & 7
    free, pcp, alloc = b.free, b.pcp, b.alloc
    pfn, order, mt, zi = free.T

    # The test's record and the allocator's agree (boot's own blocks stay allocated).
    assert {**boot0.boot_alloc, **{p: o for p, (o, _c) in live.items()}} == dict(k.allocations)

    # Natural alignment and zone containment of every block.
    for name, blocks in (("free", free), ("pcp", pcp), ("allocated", alloc)):
        bad = blocks[blocks[:, 0] & ((1 << blocks[:, 1]) - 1) != 0]
        assert not len(bad), f"{name} block {bad[0].tolist()} is not naturally aligned"
    starts = np.array([z.start_pfn for z in b.zones])
    ends = np.array([z.end_pfn for z in b.zones])
    for name, blocks, zcol in (("free", free, 3), ("pcp", pcp, 4)):
        z = blocks[:, zcol]
        bad = (blocks[:, 0] < starts[z]) | (blocks[:, 0] + (1 << blocks[:, 1]) > ends[z])
        assert not bad.any(), f"{name} block {blocks[bad][0].tolist()} lies outside its zone"

    # free_order mirrors the lists (PageBuddy + buddy_order in the books).
    for zx, z in enumerate(b.zones):
        mine = free[zi == zx]
        assert z.free_order == dict(zip(mine[:, 0].tolist(), mine[:, 1].tolist())), f"{z.name}: free_order"
        # NR_FREE_PAGES counts exactly the buddy lists (no isolation, no pcp);
        # nr_free_highatomic exactly the highatomic lists.
        assert z.free_pages == int((1 << mine[:, 1]).sum()), f"node {z.nid} {z.name}: NR_FREE_PAGES"
        ha = mine[mine[:, 2] == MIGRATE_HIGHATOMIC]
        assert z.nr_free_highatomic == int((1 << ha[:, 1]).sum()), f"node {z.nid} {z.name}: nr_free_highatomic"
        # nr_reserved_highatomic counts the zone's MIGRATE_HIGHATOMIC pageblocks (reserve and
        # unreserve move it by whole pageblocks).
        blocks = pb[z.start_pfn >> PAGEBLOCK_ORDER : ((z.end_pfn - 1) >> PAGEBLOCK_ORDER) + 1]
        assert z.nr_reserved_highatomic == int((blocks == MIGRATE_HIGHATOMIC).sum()) << PAGEBLOCK_ORDER, (
            f"node {z.nid} {z.name}: nr_reserved_highatomic {z.nr_reserved_highatomic}, "
            f"{int((blocks == MIGRATE_HIGHATOMIC).sum())} highatomic pageblocks"
        )
    assert not (mt == MIGRATE_ISOLATE).any(), "nothing isolates pageblocks, yet a block is on an isolate list"

    # A free block is on the list of its pageblock's migratetype (6.10+); a block of order
    # >= pageblock_order covers whole pageblocks, all of that type.
    first_pb = pfn >> PAGEBLOCK_ORDER
    nblocks = np.maximum(1, 1 << np.maximum(order - PAGEBLOCK_ORDER, 0))
    for extra in range(int(nblocks.max(initial=1))):
        sel = extra < nblocks
        bad = pb[first_pb[sel] + extra] != mt[sel]
        assert not bad.any(), (
            f"free block {free[sel][bad][0].tolist()} (pfn, order, mt, zone) sits in pageblock "
            f"{first_pb[sel][bad][0] + extra} of migratetype {pb[first_pb[sel][bad][0] + extra]}"
        )

    # Every managed pfn is in exactly one state; reserved pfns in none.
    cov = coverage([free[:, :2], pcp[:, :2], alloc], len(boot0.managed))
    if not np.array_equal(cov, boot0.managed.astype(np.int64)):
        p = int(np.flatnonzero(cov != boot0.managed)[0])
        where = [
            (n, r.tolist())
            for n, bl in (("free", free), ("pcp", pcp), ("alloc", alloc))
            for r in bl
            if r[0] <= p < r[0] + (1 << r[1])
        ]
        raise AssertionError(f"pfn {p:#x} (managed={bool(boot0.managed[p])}) is in {cov[p]} blocks: {where}")

    # Buddies are maximally merged: no two free buddies of the same order in one zone, except
    # where __free_one_page refuses to merge (order >= pageblock_order, different migratetypes
    # and one of them highatomic or isolate).
    index = {(int(z_), int(p), int(o)): int(m) for p, o, m, z_ in free.tolist()}
    for (z_, p, o), m in index.items():
        if o == MAX_ORDER or p & (1 << o):
            continue
        bm = index.get((z_, p ^ (1 << o), o))
        if bm is None:
            continue
        assert o >= PAGEBLOCK_ORDER and bm != m and max(m, bm) >= MIGRATE_PCPTYPES, (
            f"free buddies {p:#x} and {p ^ (1 << o):#x} of order {o} (types {m}, {bm}) were not merged"
        )

    # The struct page bytes.
    k.sync()
    words = memmap_words(k)
    w32 = words.view(np.uint32)
    npfn = len(boot0.managed)
    flags = words[W_FLAGS::8]
    page_type = w32[D_PAGE_TYPE::16]
    refcount = w32[D_REFCOUNT::16]
    private = words[W_PRIVATE::8]
    chead = words[W_COMPOUND_HEAD::8]
    managed = boot0.managed
    ours = managed & ~boot0.boot_owned  # pages that are free or the test's
    # Boot's own blocks (slab, page tables, ...) are untouched by the workload.
    kernel = np.flatnonzero(boot0.boot_owned)
    if len(kernel):
        w8 = (kernel[:, None] * 8 + np.arange(8)).ravel()
        assert np.array_equal(words[w8], boot0.words[w8]), "the workload changed a struct page boot allocated"

    is_head = np.zeros(npfn, dtype=bool)
    is_head[pfn] = True
    assert np.array_equal(page_type[ours] == PGTY_BUDDY, is_head[ours]), (
        "PGTY_buddy pages != free block heads: " + _first_diff(page_type == PGTY_BUDDY, is_head, ours)
    )
    assert not is_head[boot0.boot_owned].any()
    assert (page_type[ours & ~is_head] == PAGE_TYPE_NONE).all(), "an untyped page has a page_type"
    assert np.array_equal(private[pfn], order.astype(np.uint64)), "buddy head's private != its order"
    assert (refcount[pfn] == 0).all(), "buddy head with a reference"
    assert not (flags[pfn] & PAGEFLAGS_MASK).any(), "buddy head with page flags set"
    z_of = np.array([(z.nid << 3) | z.idx for z in b.zones], dtype=np.uint64)
    assert np.array_equal(flags[pfn] >> np.uint64(ZONES_PGOFF), z_of[zi]), "buddy head with another zone's bits"
    assert np.array_equal(flags[pcp[:, 0]] >> np.uint64(ZONES_PGOFF), z_of[pcp[:, 4]]), "pcp page in another zone"

    # References: exactly the allocated heads hold one (tails and free pages none);
    # PG_reserved exactly on present pfns the allocator never managed.
    is_alloc_head = np.zeros(npfn, dtype=bool)
    is_alloc_head[alloc[:, 0]] = True
    want_ref = np.where(managed, is_alloc_head.astype(np.uint32), 1)
    checked = boot0.present & ~boot0.boot_owned
    assert np.array_equal(refcount[checked], want_ref[checked]), "_refcount: " + _first_diff(
        refcount, want_ref, checked
    )
    reserved = (flags & PG_RESERVED) != 0
    assert np.array_equal(reserved[boot0.present], ~managed[boot0.present]), "PG_reserved: " + _first_diff(
        reserved, ~managed, boot0.present
    )

    # Compound pages: PG_head on exactly the compound heads, compound_head = head | 1 on
    # exactly their tails, folio order and _nr_pages on page 1.
    want_head = np.zeros(npfn, dtype=bool)
    want_tail = np.zeros(npfn, dtype=np.uint64)
    for p, (o, compound) in live.items():
        if compound and o:
            want_head[p] = True
            want_tail[p + 1 : p + (1 << o)] = np.uint64(k.vmemmap_base + p * SP + 1)
            assert words[p * 8 + FW_FLAGS_1] & 0xFF == o, f"folio {p:#x}: _flags_1 order"
            assert w32[p * 16 + FD_NR_PAGES] == 1 << o, f"folio {p:#x}: _nr_pages"
    has_head = (flags & PG_HEAD) != 0
    assert np.array_equal(has_head[ours], want_head[ours]), "PG_head: " + _first_diff(has_head, want_head, ours)
    tails = np.where(chead & np.uint64(1), chead, np.uint64(0))
    assert np.array_equal(tails[ours], want_tail[ours]), "compound_head: " + _first_diff(tails, want_tail, ours)

    # The list links written at sync: every entry's lru points at its neighbours' lru (or the
    # list head in struct zone / struct per_cpu_pages), and so do the heads.
    for z in b.zones:
        heads = {
            page_alloc.free_list_head(o, m): z.addr + FREE_AREA_OFF + o * FREE_AREA_SIZE + 16 * m
            for o in range(NR_ORDERS)
            for m in range(MIGRATE_TYPES)
        }
        for pc in z.pcp:
            heads.update(
                {page_alloc.pcp_list_head(pc.cpu, i): pc.addr + PCP_LISTS_OFF + 16 * i for i in range(NR_PCP_LISTS)}
            )

        def lru(key: int, heads: dict = heads) -> int:
            return heads[key] if key < 0 else k.vmemmap_base + key * SP + LRU_OFF

        for key, addr in heads.items():
            got = (k.kmem.get(addr, "list_head", "next"), k.kmem.get(addr, "list_head", "prev"))
            assert got == (lru(z.nxt[key]), lru(z.prv[key])), f"list head {addr:#x} of node {z.nid} {z.name}"
        keys = [p for p in z.nxt if p >= 0]
        if keys:
            ks = np.array(keys, dtype=np.int64)
            want_n = np.array([lru(z.nxt[p]) for p in keys], dtype=np.uint64)
            want_p = np.array([lru(z.prv[p]) for p in keys], dtype=np.uint64)
            assert np.array_equal(words[ks * 8 + W_LRU_NEXT], want_n), f"lru.next in node {z.nid} {z.name}"
            assert np.array_equal(words[ks * 8 + W_LRU_PREV], want_p), f"lru.prev in node {z.nid} {z.name}"
    return b


def _first_diff(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> str:
    bad = np.flatnonzero((a != b) & where)
    return f"first at pfn {bad[0]:#x}: {a[bad[0]]!r} != {b[bad[0]]!r} ({len(bad)} pfns)" if len(bad) else "?"


def expected_after_free_all(k: Kernel, boot0: BootState) -> set:
    """The boot free lists as they must look once everything is free again.

    Every managed page is free, so buddies merge as far as __free_one_page lets them: the
    blocks are boot's, except that an order-10 block whose two pageblocks now have
    non-mergeable migratetypes (a highatomic reserve next to a normal pageblock) stays two
    order-9 blocks.  Pageblock migratetypes are not restored by freeing (claims by unmovable
    or reclaimable allocations and highatomic reservations stay; the kernel too only changes
    them on the next claim or unreserve), so each block is expected on the list of its
    pageblock's *current* migratetype.
    """
    pb = k.pageblock_flags
    out = set()
    for zx, p, o, _mt in boot0.free:
        if o > PAGEBLOCK_ORDER:
            m0, m1 = pb[p >> PAGEBLOCK_ORDER] & 7, pb[(p >> PAGEBLOCK_ORDER) + 1] & 7
            if m0 != m1 and max(m0, m1) >= MIGRATE_PCPTYPES:
                out |= {(zx, p, PAGEBLOCK_ORDER, m0), (zx, p + (1 << PAGEBLOCK_ORDER), PAGEBLOCK_ORDER, m1)}
                continue
        out.add((zx, p, o, pb[p >> PAGEBLOCK_ORDER] & 7))
    return out


def check_back_to_boot(k: Kernel) -> None:
    """After freeing everything and drain_all_pages, the free lists are boot's.

    Holds exactly: the same set of (zone, pfn, order) blocks as a fresh boot of the same
    configuration after its drain_all_pages (boot's own allocations stay; modulo highatomic
    splits, see :func:`expected_after_free_all`), every
    block on the list of its pageblock's current migratetype, the same nr_free per zone and
    order, NR_FREE_PAGES = boot's in every zone, empty pcp lists, and the struct pages'
    flags and _refcount byte-identical to boot's (page_type and private follow from the
    block set, which check_invariants ties to the bytes).
    When no pageblock changed its migratetype (always so for movable-only workloads) the
    lists equal boot's per (zone, order, migratetype) as well.  List *order* is not
    compared: the kernel queues frees at the head or tail depending on buddy_merge_likely.
    """
    boot0 = boot_state(k.config)
    b = check_invariants(k, {})
    assert not len(b.pcp) and all(pc.count == 0 for z in b.zones for pc in z.pcp)
    got = {tuple(r) for r in b.free[:, [3, 0, 1, 2]].tolist()}
    want = expected_after_free_all(k, boot0)
    assert got == want, (
        f"{len(got - want)} blocks not as at boot, e.g. {sorted(got - want)[:3]}; "
        f"{len(want - got)} boot blocks missing, e.g. {sorted(want - got)[:3]}"
    )
    assert [z.free_pages for z in b.zones] == boot0.free_pages
    if bytes(k.pageblock_flags) == boot0.pageblock_flags:
        assert got == boot0.free
    words = memmap_words(k)
    m = boot0.managed
    for name, a, bb in (
        ("flags", words[W_FLAGS::8], boot0.words[W_FLAGS::8]),
        ("_refcount", words.view(np.uint32)[D_REFCOUNT::16], boot0.words.view(np.uint32)[D_REFCOUNT::16]),
    ):
        assert np.array_equal(a[m], bb[m]), f"{name} differs from boot: " + _first_diff(a, bb, m)


# -- the workload -------------------------------------------------------------------------------
GFP_BASES = [
    "GFP_KERNEL",
    "GFP_ATOMIC",
    "GFP_NOWAIT",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_KERNEL|__GFP_RECLAIMABLE",
    "GFP_DMA32",
    "GFP_KERNEL|GFP_DMA32",
]
GFP_MODIFIERS = ["__GFP_COMP", "__GFP_ZERO", "__GFP_THISNODE", "__GFP_RECLAIMABLE", "GFP_DMA32", "GFP_DMA"]
DIRTY = 0xA5


def _valid(gfp: int) -> bool:
    try:
        G.gfp_zone(gfp)
        G.gfp_migratetype(gfp)
    except G.GfpError:
        return False
    return True


gfps = st.builds(
    lambda base, mods: G.parse_gfp("|".join([base, *mods])),
    st.sampled_from(GFP_BASES),
    st.lists(st.sampled_from(GFP_MODIFIERS), max_size=3, unique=True),
).filter(_valid)
orders = st.one_of(st.integers(0, COSTLY_ORDER), st.integers(0, MAX_ORDER), st.just(PAGEBLOCK_ORDER))
where = st.one_of(st.none(), st.tuples(st.sampled_from(["nid", "mask", "interleave"]), st.integers(0, 1)))

ops = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 1), gfps, orders, where, st.integers(1, 8)),
    # Bursts of large blocks drive zones below their watermarks (fallbacks, highatomic
    # reserves, failures, the slow path's unreserve and drain).
    st.tuples(
        st.just("burst"),
        st.integers(0, 1),
        gfps,
        st.integers(PAGEBLOCK_ORDER - 1, MAX_ORDER),
        where,
        st.integers(20, 140),
    ),
    st.tuples(st.just("free"), st.integers(0, 1), st.integers(0, 1 << 30), st.integers(1, 40)),
    st.tuples(
        st.just("squeeze"), st.integers(0, 1), st.integers(0, 1), st.integers(1, COSTLY_ORDER), st.integers(1, 30)
    ),
    st.tuples(st.just("drain")),
)


PGALLOC = {idx: T.enum("vm_event_item")[f"PGALLOC_{n}"] for idx, n in enumerate(["DMA", "DMA32", "NORMAL", "MOVABLE"])}
PGFREE = T.enum("vm_event_item")["PGFREE"]
NUMA = {
    n: T.const(n) for n in ("NUMA_HIT", "NUMA_MISS", "NUMA_FOREIGN", "NUMA_INTERLEAVE_HIT", "NUMA_LOCAL", "NUMA_OTHER")
}


@dataclass
class Run:
    """A booted machine, what the test holds on it, and the counters it expects."""

    k: Kernel
    live: dict = field(default_factory=dict)  # pfn -> (order, compound)
    allocated: int = 0
    failed: int = 0
    il_prev: dict = field(default_factory=dict)  # cpu -> last interleave node (mempolicy's il_prev)
    events: dict = field(default_factory=dict)  # (cpu, vm_event_item) -> expected increase
    numa: dict = field(default_factory=dict)  # (nid, zone idx, numa_stat_item) -> expected increase

    def __post_init__(self) -> None:
        self.base_events = [list(c) for c in self.k.vm_events]
        self.base_failures = len(self.k.alloc_failures)
        self.base_numa = {(z.nid, z.idx): list(z.numa_events) for zs in self.k.zones for z in zs}

    def count(self, table: dict, key, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


def zone_of(k: Kernel, pfn: int):
    return next(z for zs in k.zones for z in zs if z.present and z.start_pfn <= pfn < z.end_pfn)


def check_counters(r: Run) -> None:
    """vm events and NUMA events moved exactly as the requests the test made predict:
    PGALLOC_<zone> by the pages allocated from that zone type on each CPU, PGFREE by the
    pages freed, and per zone NUMA_HIT/MISS (page on the preferred node or not), LOCAL/OTHER
    (page on the allocating CPU's node or not), INTERLEAVE_HIT; FOREIGN globally = MISS."""
    k = r.k
    for cpu, counts in enumerate(k.vm_events):
        for item in [*PGALLOC.values(), PGFREE]:
            got = counts[item] - r.base_events[cpu][item]
            assert got == r.events.get((cpu, item), 0), f"cpu {cpu} vm event {item}: {got}"
    foreign = 0
    for zs in k.zones:
        for z in zs:
            base = r.base_numa[(z.nid, z.idx)]
            for name, i in NUMA.items():
                got = z.numa_events[i] - base[i]
                if name == "NUMA_FOREIGN":
                    foreign += got
                else:
                    assert got == r.numa.get((z.nid, z.idx, name), 0), f"node {z.nid} {z.name} {name}: {got}"
    assert foreign == sum(v for (_n, _i, name), v in r.numa.items() if name == "NUMA_MISS")
    assert len(k.alloc_failures) - r.base_failures == r.failed


def ignores_nodemask(gfp: int) -> bool:
    """gfp_to_alloc_flags() drops ALLOC_CPUSET for __GFP_HIGH requests that cannot reclaim
    (GFP_ATOMIC), and __alloc_pages_slowpath() then retries with ``ac->nodemask = NULL``
    ("memory policies can be ignored"); __GFP_MEMALLOC's reserve_flags do the same."""
    return bool(
        gfp & G.__GFP_HIGH
        and not gfp & G.__GFP_DIRECT_RECLAIM
        or gfp & G.__GFP_MEMALLOC
        and not gfp & G.__GFP_NOMEMALLOC
    )


def bound_to_node(gfp: int, where) -> bool:
    """Whether the request may only use the preferred node's zones."""
    return bool(gfp & G.__GFP_THISNODE or (where and where[0] == "mask" and not ignores_nodemask(gfp)))


def check_failure_is_justified(k: Kernel, gfp: int, order: int, preferred: int, where) -> None:
    """A request failed: no zone it may use can have been able to serve it.  A zone could
    if it has a free block of the order or larger on a normal (unmovable, movable,
    reclaimable) list -- __rmqueue takes it by claim or steal when its own list is empty --
    and its free pages minus the block and the highatomic reserve clear the min watermark
    (plus boost) and lowmem_reserve: the final attempt's mark is never higher than that.
    A caller that may reclaim fails only after should_reclaim_retry() has unreserved every
    highatomic block it could use ("Before OOM, exhaust highatomic_reserve") -- unless its
    order is costly and it may not retry (no __GFP_RETRY_MAYFAIL)."""
    highest = G.gfp_zone(gfp)
    if where and where[0] == "mask" and not any(z.present and z.idx <= highest for z in k.zones[preferred]):
        return  # the nodemask leaves no zone: the slow path gives up before it could drop it
    only = preferred if bound_to_node(gfp, where) else None
    for zs in k.zones:
        for z in zs:
            if not z.present or z.idx > highest or (only is not None and z.nid != only):
                continue
            # (a costly order without __GFP_RETRY_MAYFAIL gives up after direct compaction,
            # before should_reclaim_retry: 6.18's "Do not retry costly high order allocations")
            if (
                gfp & G.__GFP_DIRECT_RECLAIM
                and not gfp & G.__GFP_NORETRY
                and (order <= COSTLY_ORDER or gfp & G.FLAGS["__GFP_RETRY_MAYFAIL"])
            ):
                assert z.nr_free_highatomic == 0, (
                    f"{G.format_gfp(gfp)} order {order} failed with {z.nr_free_highatomic} free highatomic pages "
                    f"left in node {z.nid} {z.name}"
                )
            has_block = any(
                z.nxt[page_alloc.free_list_head(o, m)] != page_alloc.free_list_head(o, m)
                for o in range(order, NR_ORDERS)
                for m in range(MIGRATE_PCPTYPES)
            )
            room = z.free_pages - (1 << order) - z.nr_free_highatomic
            assert not (has_block and room > z.watermark[0] + z.watermark_boost + z.lowmem_reserve[highest]), (
                f"{G.format_gfp(gfp)} order {order} for node {preferred} failed, but node {z.nid} {z.name} has "
                f"{z.free_pages} free pages (min {z.watermark[0]}) and a block of order >= {order}"
            )


def alloc(r: Run, cpu: int, gfp: int, order: int, where, dirty: bool = True) -> int | None:
    k = r.k
    k.on_cpu(cpu)
    local = k.cpu_to_node(cpu)
    if where is None:
        preferred = local
        pfn = k.alloc_pages(gfp, order)
    elif where[0] == "nid":
        preferred = where[1]
        pfn = k.alloc_pages(gfp, order, nid=where[1])
    elif where[0] == "mask":
        preferred = where[1]
        pfn = k.alloc_pages(gfp, order, nid=where[1], nodemask=frozenset({where[1]}))
    else:  # MPOL_INTERLEAVE over both nodes: the node after this CPU's task's il_prev
        preferred = r.il_prev[cpu] = (r.il_prev.get(cpu, -1) + 1) % 2
        pfn = k.alloc_pages_interleave(gfp, order, (0, 1))
    if pfn is None:
        r.failed += 1
        check_failure_is_justified(k, gfp, order, preferred, where)
        return None
    r.allocated += 1
    r.live[pfn] = (order, bool(gfp & G.__GFP_COMP))
    # Where the block may come from: zones up to gfp_zone(); only the preferred node under
    # __GFP_THISNODE or a one-node nodemask.
    z = zone_of(k, pfn)
    assert z.idx <= G.gfp_zone(gfp), f"{G.format_gfp(gfp)} got a page of zone {z.name}"
    if bound_to_node(gfp, where):
        assert z.nid == preferred, f"{G.format_gfp(gfp)} {where} for node {preferred} got node {z.nid}"
    r.count(r.events, (cpu, PGALLOC[z.idx]), 1 << order)
    # zone_statistics() compares with the preferred *zone*: the first zone of the preferred
    # node's zonelist the request may use, which is on the other node when the preferred
    # node has no such zone (GFP_DMA on node 1).
    pz_nid = next(
        n for n in (preferred, 1 - preferred) if any(zz.present and zz.idx <= G.gfp_zone(gfp) for zz in k.zones[n])
    )
    r.count(r.numa, (z.nid, z.idx, "NUMA_HIT" if z.nid == pz_nid else "NUMA_MISS"))
    r.count(r.numa, (z.nid, z.idx, "NUMA_LOCAL" if z.nid == local else "NUMA_OTHER"))
    if where and where[0] == "interleave" and z.nid == preferred:
        r.count(r.numa, (z.nid, z.idx, "NUMA_INTERLEAVE_HIT"))
    size = PAGE_SIZE << order
    if gfp & G.__GFP_ZERO:
        data = np.frombuffer(k.mem.read(pfn * PAGE_SIZE, size), dtype=np.uint64)
        assert not data.any(), f"__GFP_ZERO order-{order} block {pfn:#x} has non-zero bytes"
    if dirty:  # as a user would; a later __GFP_ZERO reuse must clear it
        k.mem.fill(pfn * PAGE_SIZE, min(size, 4 * PAGE_SIZE), DIRTY)
        if order > 2:
            k.mem.fill(pfn * PAGE_SIZE + size - PAGE_SIZE, PAGE_SIZE, DIRTY)
    return pfn


def free(r: Run, cpu: int, pfn: int) -> None:
    r.k.on_cpu(cpu)
    order, _c = r.live.pop(pfn)
    r.k.free_pages(pfn, order)
    r.count(r.events, (cpu, PGFREE), 1 << order)


def run_ops(r: Run, seq) -> None:
    for op in seq:
        if op[0] == "alloc":
            _, cpu, gfp, order, wh, n = op
            for _ in range(n):
                alloc(r, cpu, gfp, order, wh)
        elif op[0] == "burst":
            _, cpu, gfp, order, wh, n = op
            for _ in range(n):
                if alloc(r, cpu, gfp, order, wh, dirty=False) is None:
                    break
        elif op[0] == "free":
            _, cpu, seed, n = op
            pfns = sorted(r.live)
            picked = dict.fromkeys(pfns[(seed + i * 7919) % len(pfns)] for i in range(min(n, len(pfns))))
            for pfn in picked:
                free(r, cpu, pfn)
        elif op[0] == "squeeze":
            # Fill one node with movable THP-sized blocks until the watermark stops them, then
            # ask for high-order atomic blocks there: the slow path's ALLOC_HIGHATOMIC
            # reserves pageblocks (reserve_highatomic_pageblock).
            _, cpu, nid, order, n = op
            while (
                alloc(
                    r,
                    cpu,
                    G.GFP_HIGHUSER_MOVABLE | G.__GFP_THISNODE | G.__GFP_COMP,
                    PAGEBLOCK_ORDER,
                    ("nid", nid),
                    dirty=False,
                )
                is not None
            ):
                pass
            for _ in range(n):
                alloc(r, cpu, G.GFP_ATOMIC | G.__GFP_THISNODE, order, ("nid", nid))
        else:
            page_alloc.drain_all_pages(r.k)


def free_all(r: Run) -> None:
    for i, pfn in enumerate(sorted(r.live, key=lambda p: (p * 2654435761) & 0xFFFFFFFF)):
        free(r, i & 1, pfn)
    page_alloc.drain_all_pages(r.k)


CONFIGS = [MachineConfig(ram=1 << 30, nodes=2, cpus=2), MachineConfig(ram=512 << 20, nodes=2, cpus=2)]
SETTINGS = settings(
    max_examples=100,  # (the slow pass; 200 took ~100 s)
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.slow
@SETTINGS
@given(cfg=st.sampled_from(CONFIGS), seq=st.lists(ops, min_size=3, max_size=40))
def test_random_sequences_keep_every_invariant_and_free_back_to_boot(cfg: MachineConfig, seq) -> None:
    r = Run(boot(cfg))
    run_ops(r, seq)
    check_invariants(r.k, r.live)
    check_counters(r)
    free_all(r)
    check_back_to_boot(r.k)
    check_counters(r)


movable_ops = st.one_of(
    st.tuples(
        st.just("alloc"),
        st.integers(0, 1),
        st.sampled_from([G.GFP_HIGHUSER_MOVABLE, G.GFP_HIGHUSER_MOVABLE | G.__GFP_COMP | G.__GFP_ZERO]),
        orders,
        where,
        st.integers(1, 8),
    ),
    st.tuples(
        st.just("burst"),
        st.integers(0, 1),
        st.just(G.GFP_HIGHUSER_MOVABLE | G.__GFP_COMP),
        st.integers(PAGEBLOCK_ORDER - 1, MAX_ORDER),
        where,
        st.integers(20, 140),
    ),
    st.tuples(st.just("free"), st.integers(0, 1), st.integers(0, 1 << 30), st.integers(1, 40)),
    st.tuples(st.just("drain")),
)


@pytest.mark.slow  # 40 boots: ~11 s
@settings(SETTINGS, max_examples=40)
@given(seq=st.lists(movable_ops, min_size=1, max_size=15))
def test_movable_only_workloads_restore_boot_lists_per_migratetype(seq) -> None:
    """All pageblocks start MOVABLE, so movable requests never fall back, claim or reserve:
    pageblock types and the per-(zone, order, migratetype) free lists return to boot's."""
    cfg = CONFIGS[0]
    r = Run(boot(cfg))
    run_ops(r, seq)
    check_invariants(r.k, r.live)
    check_counters(r)
    free_all(r)
    assert bytes(r.k.pageblock_flags) == boot_state(cfg).pageblock_flags
    check_back_to_boot(r.k)


def test_highatomic_reserve_survives_free_all_and_keeps_order10_split() -> None:
    """GFP_ATOMIC high-order requests below the low watermark reserve a pageblock as
    MIGRATE_HIGHATOMIC; freeing everything leaves the reserve, whose pageblock does not
    merge with its normal buddy pageblock into an order-10 block (__free_one_page)."""
    cfg = CONFIGS[0]
    r = Run(boot(cfg))
    run_ops(r, [("squeeze", 1, 1, 2, 4)])
    z = zone_of(r.k, next(p for p, (o, _c) in r.live.items() if o == 2))
    assert z.nr_reserved_highatomic == 1 << PAGEBLOCK_ORDER
    check_invariants(r.k, r.live)
    check_counters(r)
    free_all(r)
    check_back_to_boot(r.k)
    blocks = [i for i, f in enumerate(r.k.pageblock_flags) if f & 7 == MIGRATE_HIGHATOMIC]
    assert len(blocks) == 1 and z.nr_reserved_highatomic == 1 << PAGEBLOCK_ORDER
    p = blocks[0] << PAGEBLOCK_ORDER
    # Every page of the reserved pageblock that boot did not keep is free on the highatomic
    # lists, and no order-10 block spans the reserve and its buddy pageblock.
    kept = int(boot_state(cfg).boot_owned[p : p + (1 << PAGEBLOCK_ORDER)].sum())
    assert z.nr_free_highatomic == (1 << PAGEBLOCK_ORDER) - kept
    assert z.free_order.get(p & ~((1 << MAX_ORDER) - 1)) != MAX_ORDER
    if not kept:
        assert z.free_order.get(p) == PAGEBLOCK_ORDER


@pytest.mark.parametrize("order", [0, 3, PAGEBLOCK_ORDER, MAX_ORDER])
def test_gfp_zero_clears_a_reused_dirty_block(order: int) -> None:
    """A block written all over, freed and handed out again (from the pcp list for pcp
    orders, from the buddy lists otherwise) reads back zero under __GFP_ZERO."""
    r = Run(boot(CONFIGS[1]))
    pfn = alloc(r, 0, G.GFP_KERNEL, order, None, dirty=False)
    r.k.mem.fill(pfn * PAGE_SIZE, PAGE_SIZE << order, 0xFF)
    free(r, 0, pfn)
    again = alloc(r, 0, G.GFP_KERNEL | G.__GFP_ZERO, order, None)  # asserts the zeroes
    assert again == pfn
    check_invariants(r.k, r.live)


@pytest.mark.slow  # ~9 s
@settings(SETTINGS, max_examples=8)
@given(seq=st.lists(ops, min_size=3, max_size=20))
def test_random_sequences_with_a_normal_zone(seq) -> None:
    """A 4 GiB 2-node machine: node 1 has DMA32 and Normal, so ZONE_NORMAL requests run
    with ALLOC_NOFRAGMENT (alloc_flags_nofragment) and fall back zone by zone."""
    r = Run(boot(MachineConfig(ram=4 << 30, nodes=2, cpus=2)))
    run_ops(r, seq)
    check_invariants(r.k, r.live)
    check_counters(r)
    free_all(r)
    check_back_to_boot(r.k)
    check_counters(r)


def test_movable_requests_steal_from_fragmented_unmovable_pageblocks() -> None:
    """Unmovable order-0 pages claim whole pageblocks; freeing every other one leaves them
    fragmented.  Once node 1's movable lists are used up, small movable requests cannot
    claim (should_try_claim_block: order < pageblock_order / 2) and __rmqueue_steal takes
    single pages out of the unmovable pageblocks, which keep their type."""
    r = Run(boot(CONFIGS[1]))
    thisnode = G.__GFP_THISNODE
    unmovable = [alloc(r, 1, G.GFP_KERNEL | thisnode, 0, ("nid", 1), dirty=False) for _ in range(16000)]
    for pfn in unmovable[::2]:
        free(r, 1, pfn)
    page_alloc.drain_all_pages(r.k)
    run_ops(r, [("squeeze", 1, 1, 1, 0)])
    movable = []
    while (pfn := alloc(r, 1, G.GFP_HIGHUSER_MOVABLE | thisnode, 0, ("nid", 1), dirty=False)) is not None:
        movable.append(pfn)
    pb = r.k.pageblock_flags
    stolen = [p for p in movable if pb[p >> PAGEBLOCK_ORDER] & 7 == T.const("MIGRATE_UNMOVABLE")]
    assert len(stolen) > 1000
    check_invariants(r.k, r.live)
    check_counters(r)
    free_all(r)
    check_back_to_boot(r.k)


def test_gfp_atomic_ignores_the_nodemask_before_failing() -> None:
    r = Run(boot(CONFIGS[0]))
    run_ops(r, [("squeeze", 1, 1, 1, 0)])
    got = [alloc(r, 1, G.GFP_ATOMIC, 0, ("mask", 1), dirty=False) for _ in range(5000)]
    assert None not in got
    assert any(zone_of(r.k, p).nid == 0 for p in got)
