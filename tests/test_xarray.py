"""The XArray as 6.18 writes it (mmintro/kernel/xarray.py), read back by real drgn's stock
helpers (drgn.helpers.linux.xarray) and by ours (mmintro/reader/helpers/xarray.py).

Arrays are ``struct xarray`` s placed in memory from the page allocator, their nodes too
(576-byte ``struct xa_node`` s, 7 to a page), saved in one snapshot and handed to drgn as
``struct xarray *``.  drgn 0.3.0 has no ``xa_get_mark``: marks are checked with ours against
the simulator's books and against the raw node bitmaps.
"""

from __future__ import annotations

import itertools
import random
import shutil
import struct

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import xarray as X
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import ValidationError, open_snapshot
from mmintro.reader.helpers import xarray as RX
from mmintro.reader.object import Object
from mmintro.snapshot.writer import save
from mmintro.types import get_types

drgn = pytest.importorskip("drgn")
import drgn.helpers.linux.xarray as DX
from nomem import NoMem as _NoMem

T = get_types()
PAGECACHE = X.XA_FLAGS_LOCK_IRQ | X.XA_FLAGS_ACCOUNT  # mapping->i_pages (include/linux/fs.h)


class NodePool:
    def __init__(self, k, size: int) -> None:
        self.k, self.size = k, size
        self.free: list[int] = []
        self.live: set[int] = set()

    def alloc(self) -> int:
        if not self.free:
            base = self.k.phys_to_virt(self.k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12)
            self.free = [base + i * self.size for i in range(4096 // self.size)][::-1]
        a = self.free.pop()
        self.live.add(a)
        return a

    def release(self, addr: int) -> None:
        self.live.remove(addr)
        self.free.append(addr)


def _folio(i: int) -> int:
    """A fake ``struct folio *`` in the vmemmap (64-byte aligned)."""
    return 0xFFFFEA0000000000 + 64 * i


class Built:
    def __init__(self) -> None:
        self.k = boot(MachineConfig(ram=1 << 30))
        self.pool = NodePool(self.k, T.sizeof("struct xa_node"))
        self.arrays: dict[str, X.XArray] = {}

    def new(self, name: str, flags: int = PAGECACHE) -> X.XArray:
        addr = self.k.phys_to_virt(self.k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12) + 0x80
        xa = X.xa_init_flags(self.k, addr, flags, self.pool.alloc, self.pool.release)
        self.arrays[name] = xa
        return xa


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    b = Built()
    b.new("empty")
    b.new("zero_only").xa_store(0, _folio(1))  # xa_head holds the entry itself
    b.new("one_at_5").xa_store(5, _folio(2))
    xa = b.new("five_pages")  # the live sample: a 5-page file
    for i in range(5):
        xa.xa_store(i, _folio(10 + i))
    xa = b.new("dense")
    with xa.batch():
        for i in range(20000):
            xa.xa_store(i, _folio(100 + i))
    xa = b.new("sparse")
    rnd = random.Random(1)
    idx = sorted(rnd.sample(range(1 << 40), 3000)) + [(1 << 63) + 5, (1 << 64) - 1]
    with xa.batch():
        for j, i in enumerate(idx):
            xa.xa_store(i, _folio(j + 1) if j % 3 else X.xa_mk_value((i ^ 0x5A5A) >> 2))
    xa = b.new("values")  # shadow entries, as reclaim leaves them
    with xa.batch():
        for i in range(0, 3000, 2):
            xa.xa_store(i, X.xa_mk_value(i * 7 + 1))
    xa = b.new("large_folios")  # a file of order-9 (PMD), order-2 and order-6 folios
    with xa.batch():
        for n in range(12):
            xa.xa_store_order(n << 9, 9, _folio(512 * n))
        for n in range(64):
            xa.xa_store_order((12 << 9) + 4 * n, 2, _folio(10000 + n))
        xa.xa_store_order(1 << 20, 6, _folio(20000))
        xa.xa_store_order(0x40000000, 9, X.xa_mk_value(77))  # a multi-index shadow entry
    xa = b.new("marked")
    with xa.batch():
        for i in range(4000):
            xa.xa_store(i * 5, _folio(i + 1))
        for i in range(0, 4000, 7):
            xa.xa_set_mark(i * 5, X.PAGECACHE_TAG_DIRTY)
        for i in range(0, 4000, 11):
            xa.xa_set_mark(i * 5, X.PAGECACHE_TAG_WRITEBACK)
        xa.xa_store_order(1 << 21, 9, _folio(99999))
        xa.xa_set_mark((1 << 21) + 100, X.PAGECACHE_TAG_TOWRITE)  # through a sibling slot
        for i in range(0, 4000, 14):
            xa.xa_clear_mark(i * 5, X.PAGECACHE_TAG_DIRTY)
    xa = b.new("churned")  # grown, erased, shrunk, regrown: xas_delete_node / xas_shrink paths
    rnd = random.Random(2)
    with xa.batch():
        for i in rnd.sample(range(1 << 16), 2000):
            xa.xa_store(i, _folio(i + 1))
        for i, _e in list(xa.xa_for_each()):
            if rnd.random() < 0.9:
                xa.xa_erase(i)
        xa.xa_store_order(4096, 9, _folio(7))
        xa.xa_erase(4096 + 300)
        xa.xa_store(3, X.xa_mk_value(3))
    xa = b.new("shrunk")
    for i in (0, 70, 5000):
        xa.xa_store(i, _folio(i + 1))
    for i in (5000, 70):
        xa.xa_erase(i)
    xa = b.new("alloc", X.XA_FLAGS_ALLOC)  # an xa_alloc array: XA_FREE_MARK tracks free slots
    for i in (0, 1, 2, 100):
        xa.xa_store(i, _folio(i + 1))
    xa.xa_erase(1)
    d = tmp_path_factory.mktemp("xarray")
    save(b.k, d / "xa")
    for xa in b.arrays.values():
        xa.xa_validate()
    return b, str(d / "xa")


@pytest.fixture(scope="module")
def progs(built):
    _, path = built
    return open_drgn(path + ".vmcore", path + ".vmlinux"), open_snapshot(path)


NAMES = [
    "empty",
    "zero_only",
    "one_at_5",
    "five_pages",
    "dense",
    "sparse",
    "values",
    "large_folios",
    "marked",
    "churned",
    "shrunk",
    "alloc",
]


def _d(dprog, xa: X.XArray):
    return drgn.Object(dprog, "struct xarray *", xa.addr)


def _o(prog, xa: X.XArray):
    return Object(prog, "struct xarray *", xa.addr)


@pytest.mark.parametrize("name", NAMES)
def test_drgn_and_our_reader_iterate_exactly_the_stored_entries(built, progs, name):
    b, _ = built
    dprog, prog = progs
    xa = b.arrays[name]
    expect = list(xa.xa_for_each())
    got = [(i, e.value_()) for i, e in DX.xa_for_each(_d(dprog, xa))]
    assert got == expect
    assert [(i, e.value_()) for i, e in RX.xa_for_each(_o(prog, xa))] == expect
    assert [DX.xa_is_value(e) for _i, e in DX.xa_for_each(_d(dprog, xa))] == [X.xa_is_value(e) for _i, e in expect]
    assert [RX.xa_is_value(e) for _i, e in RX.xa_for_each(_o(prog, xa))] == [X.xa_is_value(e) for _i, e in expect]


@pytest.mark.parametrize("name", NAMES)
def test_xa_load_agrees_everywhere(built, progs, name):
    b, _ = built
    dprog, prog = progs
    xa = b.arrays[name]
    rnd = random.Random(name)
    probes = {0, 1, 63, 64, 4095, (1 << 64) - 1}
    for i, _e in itertools.islice(xa.xa_for_each(), 0, None, 7):
        probes |= {i, i + 1, i + 511, max(i - 1, 0)}
    probes |= {rnd.randrange(1 << 41) for _ in range(200)}
    for i in sorted(p for p in probes if p < 1 << 64):
        want = xa.xa_load(i) or 0
        assert DX.xa_load(_d(dprog, xa), i).value_() == want, hex(i)
        assert RX.xa_load(_o(prog, xa), i).value_() == want, hex(i)


@pytest.mark.parametrize("name", ["marked", "large_folios", "churned", "zero_only"])
def test_marks_agree_with_the_simulators_books(built, progs, name):
    b, _ = built
    _, prog = progs
    xa = b.arrays[name]
    for mark in range(3):
        assert [i for i, _ in RX.xa_for_each_marked(_o(prog, xa), mark)] == [i for i, _ in xa.xa_for_each(mark)]
    for i, _e in itertools.islice(xa.xa_for_each(), 0, None, 3):
        for mark in range(3):
            assert RX.xa_get_mark(_o(prog, xa), i, mark) == xa.xa_get_mark(i, mark)
    if hasattr(DX, "xa_get_mark"):  # not in drgn 0.3.0
        for i, _e in itertools.islice(xa.xa_for_each(), 0, None, 3):
            assert DX.xa_get_mark(_d(progs[0], xa), i, 0) == xa.xa_get_mark(i, 0)


def test_marks_propagate_up_and_into_xa_flags(built, progs):
    b, _ = built
    _, prog = progs
    xa = b.arrays["marked"]
    assert [i for i, _ in xa.xa_for_each(X.PAGECACHE_TAG_DIRTY)] == [i * 5 for i in range(7, 4000, 14)]
    assert [i for i, _ in xa.xa_for_each(X.PAGECACHE_TAG_TOWRITE)] == [1 << 21]
    assert RX.xa_get_mark(_o(prog, xa), (1 << 21) + 511, X.PAGECACHE_TAG_TOWRITE)  # any index of the folio
    flags = prog.read_u32(xa.addr + T.offsetof("xarray", "xa_flags"))
    gfp_shift = T.const("___GFP_LAST_BIT")
    assert flags == PAGECACHE | (0b111 << gfp_shift)  # XA_FLAGS_MARK(0..2)
    empty = b.arrays["values"]
    assert prog.read_u32(empty.addr + T.offsetof("xarray", "xa_flags")) == PAGECACHE


def test_five_page_file_matches_the_live_sample(built, progs):
    """reference/semantics.md §7 [LIVE]: i_pages flags 0x21; a 5-page file has xa_head =
    node | 2, the node at shift 0 with count 5, parent NULL, slots = the folio pointers."""
    b, _ = built
    _, prog = progs
    xa = b.arrays["five_pages"]
    xn = T.struct("xa_node")
    assert prog.read_u32(xa.addr + T.offsetof("xarray", "xa_flags")) == 0x21
    head = prog.read_u64(xa.addr + T.offsetof("xarray", "xa_head"))
    assert head & 3 == 2
    node = head - 2
    assert prog.read_u8(node + xn.offsetof("shift")) == 0
    assert prog.read_u8(node + xn.offsetof("count")) == 5
    assert prog.read_u64(node + xn.offsetof("parent")) == 0
    assert prog.read_u64(node + xn.offsetof("array")) == xa.addr
    pl = node + xn.offsetof("private_list")
    assert prog.read_u64(pl) == pl  # INIT_LIST_HEAD by radix_tree_node_ctor
    assert [prog.read_u64(node + xn.offsetof(f"slots[{i}]")) for i in range(6)] == [
        _folio(10 + i) for i in range(5)
    ] + [0]
    assert prog.read_u64(b.arrays["zero_only"].addr + T.offsetof("xarray", "xa_head")) == _folio(1)


def test_an_order_9_folio_is_an_entry_and_seven_siblings_at_shift_6(built, progs):
    b, _ = built
    _, prog = progs
    xa = b.arrays["large_folios"]
    xn = T.struct("xa_node")
    head = prog.read_u64(xa.addr + T.offsetof("xarray", "xa_head")) - 2
    top_shift = prog.read_u8(head + xn.offsetof("shift"))
    node = head
    shift = top_shift
    while shift > 6:  # down to the shift-6 node holding index 3 << 9
        off = ((3 << 9) >> shift) & 63
        node = prog.read_u64(node + xn.offsetof(f"slots[{off}]")) - 2
        shift = prog.read_u8(node + xn.offsetof("shift"))
    assert shift == 6
    slots = [prog.read_u64(node + xn.offsetof(f"slots[{i}]")) for i in range(64)]
    k = (3 << 9) >> 6 & 63
    assert slots[k] == _folio(512 * 3)
    assert slots[k + 1 : k + 8] == [(k << 2) | 2] * 7  # xa_mk_sibling(k)
    count = prog.read_u8(node + xn.offsetof("count"))
    assert count == sum(1 for s in slots if s)
    # the order-2 folios: one entry and three siblings in a shift-0 node
    assert xa.xa_load((12 << 9) + 4 * 5 + 3) == _folio(10005)
    # the multi-index shadow entry counts its slots in nr_values
    assert RX.xa_is_value(RX.xa_load(_o(prog, xa), 0x40000000 + 511))


def test_store_erase_and_shrink_paths(built):
    b, _ = built
    xa = b.arrays["shrunk"]
    assert not X.xa_is_node(xa.xa_head) and xa.xa_head == _folio(1)  # back to a lone entry in xa_head
    xa2 = b.new("scratch")
    xa2.xa_store(64, _folio(1))
    assert xa2.xa_head.shift == 6 and xa2.xa_head.count == 1
    assert xa2.xa_store(64, _folio(2)) == _folio(1)
    assert xa2.xa_erase(64) == _folio(2)
    assert xa2.xa_head == 0
    xa2.xa_store_order(512, 9, _folio(3))
    assert xa2.xa_erase(700) == _folio(3) and list(xa2.xa_for_each()) == []
    with pytest.raises(ValueError):
        xa2.xa_store(1, X.XA_ZERO_ENTRY)
    assert b.pool.live == {n.addr for a in b.arrays.values() for n in _nodes(a)}


def _nodes(xa: X.XArray):
    stack = [xa.xa_head] if X.xa_is_node(xa.xa_head) else []
    while stack:
        n = stack.pop()
        yield n
        stack.extend(e for e in n.slots if X.xa_is_node(e))


def test_store_speed():
    import time

    k = boot(MachineConfig(ram=1 << 30))
    pool = NodePool(k, T.sizeof("struct xa_node"))
    xa = X.xa_init_flags(
        k, k.phys_to_virt(k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12), PAGECACHE, pool.alloc, pool.release
    )
    t = time.perf_counter()
    with xa.batch():
        for i in range(50000):
            xa.xa_store(i, _folio(i + 1))
    rate = 50000 / (time.perf_counter() - t)
    print(f"xa_store: {rate:,.0f} entries/s (batched)")
    assert rate > 20000


# -- corruption ------------------------------------------------------------------------------------
def _poke(path: str, prog, vaddr: int, data: bytes) -> None:
    p = prog.translate(vaddr)
    seg = prog.core.segment_at(p)
    with open(path + ".vmcore", "r+b") as f:
        f.seek(seg.offset + p - seg.paddr)
        f.write(data)


@pytest.fixture
def copy(built, tmp_path):
    _, path = built
    dst = tmp_path / "c"
    for ext in (".vmcore", ".vmlinux"):
        shutil.copy(path + ext, str(dst) + ext)
    return str(dst)


def _open_both(path: str):
    return open_drgn(path + ".vmcore", path + ".vmlinux"), open_snapshot(path)


def _leaf(xa: X.XArray) -> X.XaNode:
    n = xa.xa_head
    while n.shift:
        n = next(e for e in n.slots if X.xa_is_node(e))
    return n


def test_a_bad_shift_raises_naming_the_node(built, progs, copy):
    b, _ = built
    _, prog = progs
    xa = b.arrays["dense"]
    leaf = _leaf(xa)
    _poke(copy, prog, leaf.addr + T.offsetof("xa_node", "shift"), bytes([7]))
    d, p = _open_both(copy)
    with pytest.raises(ValidationError, match=f"node {leaf.addr:#x}.*shift 7"):
        list(RX.xa_for_each(_o(p, xa)))
    # drgn indexes the leaf's slots with shift 7: wrong indices, no error.
    got = [i for i, _e in DX.xa_for_each(_d(d, xa))]
    assert got != [i for i, _e in xa.xa_for_each()]


def test_a_forward_sibling_or_wrong_count_raises(built, progs, copy):
    b, _ = built
    _, prog = progs
    xa = b.arrays["large_folios"]
    leaf = next(n for n in _nodes(xa) if any(X.xa_is_sibling(e) for e in n.slots))  # order-9 folios' node
    off = next(i for i, e in enumerate(leaf.slots) if X.xa_is_sibling(e))
    _poke(copy, prog, leaf.addr + T.offsetof("xa_node", f"slots[{off}]"), struct.pack("<Q", ((off + 1) << 2) | 2))
    d, p = _open_both(copy)
    with pytest.raises(ValidationError, match=f"node {leaf.addr:#x}.*sibling"):
        list(RX.xa_for_each(_o(p, xa)))
    list(DX.xa_for_each(_d(d, xa)))  # drgn skips sibling entries without looking at them
    _poke(copy, prog, leaf.addr + T.offsetof("xa_node", "count"), bytes([leaf.count + 1]))
    _, p = _open_both(copy)
    with pytest.raises(ValidationError, match="count|sibling"):
        list(RX.xa_for_each(_o(p, xa)))


def test_a_cycle_raises_instead_of_hanging(built, progs, copy):
    b, _ = built
    _, prog = progs
    xa = b.arrays["dense"]
    top = xa.xa_head
    child = next(e for e in top.slots if X.xa_is_node(e))
    # the last slot of the top node's first child points back at the top node (drgn then
    # yields entries on every round; with slot 0 it would descend for ever without one)
    assert X.xa_is_node(child.slots[63])
    _poke(copy, prog, child.addr + T.offsetof("xa_node", "slots[63]"), struct.pack("<Q", top.addr | 2))
    d, p = _open_both(copy)
    with pytest.raises(ValidationError):
        list(RX.xa_for_each(_o(p, xa)))
    n = len(list(xa.xa_for_each()))
    # drgn's depth-first walk follows the pointer back up and goes round for ever.
    assert len(list(itertools.islice(DX.xa_for_each(_d(d, xa)), 3 * n))) == 3 * n


def test_a_stray_mark_raises(built, progs, copy):
    b, _ = built
    _, prog = progs
    xa = b.arrays["marked"]
    leaf = _leaf(xa)
    empty = next(i for i, e in enumerate(leaf.slots) if not e)
    marks = T.offsetof("xa_node", "marks[1]")
    _poke(copy, prog, leaf.addr + marks, struct.pack("<Q", leaf.marks[1] | 1 << empty))
    _, p = _open_both(copy)
    with pytest.raises(ValidationError, match="mark 1"):
        list(RX.xa_for_each(_o(p, xa)))


# -- the model against a plain dict -------------------------------------------------------------------


@pytest.mark.parametrize("seed,space", [(1, 70), (2, 1 << 14), pytest.param(3, 1 << 36, marks=pytest.mark.slow)])
def test_random_stores_marks_and_erases_keep_contents_and_invariants(seed, space):
    """Reference: first index -> [order, entry, marks].  A multi-index store replaces what its
    range holds and inherits their marks (xas_squash_marks); a store of one index inside a
    multi-index entry replaces the entry for all its indices; an erase removes all of them."""
    rnd = random.Random(seed)
    nxt = iter(range(0x100000, 1 << 40, 1024))
    xa = X.XArray(_NoMem(), 0x1000, lambda: next(nxt), None, PAGECACHE)
    ref: dict[int, list] = {}

    def find(i: int):
        return next((f for f, (o, _e, _m) in ref.items() if f <= i < f + (1 << o)), None)

    for i in range(800):
        r = rnd.random()
        if r < 0.45:
            order = rnd.choice([0, 0, 0, 1, 2, 3, 6, 9])
            idx = rnd.randrange(space) >> order << order
            a, z = idx, idx + (1 << order) - 1
            over = [f for f, (o, _e, _m) in ref.items() if f <= z and a <= f + (1 << o) - 1]
            if any(f < a or f + (1 << ref[f][0]) - 1 > z for f in over):
                if order == 0:  # inside a bigger entry: it takes the new value (same kind)
                    f = over[0]
                    e = X.xa_mk_value(i) if X.xa_is_value(ref[f][1]) else _folio(i + 1)
                    xa.xa_store(idx, e)
                    ref[f][1] = e
                continue
            e = _folio(i + 1) if rnd.random() < 0.7 else X.xa_mk_value(i)
            marks: set[int] = set()
            for f in over:
                marks |= ref.pop(f)[2]
            xa.xa_store_order(idx, order, e)
            ref[a] = [order, e, marks]
        elif r < 0.7:
            idx = rnd.randrange(space)
            f = find(idx)
            assert xa.xa_erase(idx) == (ref.pop(f)[1] if f is not None else None)
        else:
            idx = rnd.randrange(space)
            mark, f = rnd.randrange(3), find(idx)
            if rnd.random() < 0.6:
                xa.xa_set_mark(idx, mark)
                if f is not None:
                    ref[f][2].add(mark)
            else:
                xa.xa_clear_mark(idx, mark)
                if f is not None:
                    ref[f][2].discard(mark)
        if i % 10 == 0:
            xa.xa_validate()
            assert list(xa.xa_for_each()) == sorted((f, v[1]) for f, v in ref.items())
            for mark in range(3):
                assert [j for j, _ in xa.xa_for_each(mark)] == sorted(f for f, v in ref.items() if mark in v[2])


def test_reader_and_simulator_restate_the_same_defines():
    for name in ("XA_CHUNK_SHIFT", "XA_CHUNK_SIZE", "XA_CHUNK_MASK", "XA_MAX_MARKS", "XA_RETRY_ENTRY", "XA_ZERO_ENTRY"):
        assert getattr(RX, name) == getattr(X, name), name
    assert T.struct("xa_node").walk("slots")[2].resolved().nelems == X.XA_CHUNK_SIZE
    assert X.XA_FLAGS_MARK(0) == 1 << T.const("___GFP_LAST_BIT")
