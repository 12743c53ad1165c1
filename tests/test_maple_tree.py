"""The maple tree as 6.18 writes it (mmintro/kernel/maple_tree.py), read back by real drgn's
stock helpers (drgn.helpers.linux.mapletree) and by ours (mmintro/reader/helpers/maple_tree.py).

Trees are built in a booted machine with nodes from the page allocator (16 per page, as the
maple_node slab packs them) and saved in one snapshot.  The VMA-like tree made of a real
process's mappings (reference/procfs/pid/self_maps) hangs off ``init_mm.mm_mt`` (a real
kernel's init_mm has no VMAs; this machine is the test's own); the others are ``struct
maple_tree`` s in allocated memory, handed to drgn as ``struct maple_tree *``.
"""

from __future__ import annotations

import itertools
import random
import shutil
import struct
from pathlib import Path

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import maple_tree as M
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import ValidationError, open_snapshot
from mmintro.reader.helpers import maple_tree as RM
from mmintro.reader.object import Object
from mmintro.snapshot.writer import save
from mmintro.types import get_types

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.mapletree import mt_for_each as drgn_mt_for_each
from drgn.helpers.linux.mapletree import mtree_load as drgn_mtree_load
from nomem import NoMem as _NoMem

T = get_types()
ULONG_MAX = M.ULONG_MAX
MAPS = Path(__file__).parent / "data" / "reference" / "procfs" / "pid" / "self_maps"


class NodePool:
    """Node memory from the page allocator, ``size`` bytes a node, freed nodes reused."""

    def __init__(self, k, size: int) -> None:
        self.k, self.size = k, size
        self.free: list[int] = []
        self.live: set[int] = set()

    def alloc(self) -> int:
        if not self.free:
            pfn = self.k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0)
            base = self.k.phys_to_virt(pfn << 12)
            self.free = [base + i * self.size for i in range(4096 // self.size)][::-1]
        a = self.free.pop()
        self.live.add(a)
        return a

    def release(self, addr: int) -> None:
        self.live.remove(addr)
        self.k.kmem.write_bytes(addr, bytes(self.size))  # as a freed object's contents no longer matter
        self.free.append(addr)


def _vma(i: int) -> int:
    """A fake ``struct vm_area_struct *``: 8-byte aligned, in the direct map."""
    return 0xFFFF888100000000 + 0xB8 * i


def _ascending(n: int, seed: int, adjacent: float = 0.3, page: int = 4096) -> list[tuple[int, int, int]]:
    rnd = random.Random(seed)
    out, a = [], 0x400000
    for i in range(n):
        ln = rnd.randrange(1, 16) * page
        out.append((a, a + ln - 1, _vma(i + 1)))
        a += ln + (0 if rnd.random() < adjacent else rnd.randrange(1, 64) * page)
    return out


def _self_maps() -> list[tuple[int, int, int]]:
    out = []
    for i, line in enumerate(MAPS.read_text().splitlines()):
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if start >= 1 << 47:  # [vsyscall]: the gate area, not a VMA in mm_mt
            continue
        out.append((start, end - 1, _vma(i + 1)))
    return out


def _random_ops(mt: M.MapleTree, seed: int, n: int, top: int) -> None:
    """Inserts, overwrites, spanning NULL stores and erases, checked after each."""
    rnd = random.Random(seed)
    for i in range(n):
        if rnd.random() < 0.3:
            have = list(mt.mt_for_each())
            if have:
                f, l_, e = rnd.choice(have)
                assert mt.mtree_erase(rnd.randrange(f, l_ + 1)) == e
                continue
        f = rnd.randrange(top) & ~0xFFF
        ln = rnd.choice([0x1000, 0x5000, 0x40000, top // 16])
        e = None if rnd.random() < 0.4 else _vma(100000 + i)
        mt.mtree_store_range(f, min(f + ln - 1, ULONG_MAX), e)
        assert not mt.mt_validate()


class Built:
    def __init__(self) -> None:
        self.k = boot(MachineConfig(ram=1 << 30))
        self.pool = NodePool(self.k, 256)
        self.trees: dict[str, tuple[int, M.MapleTree, list[tuple[int, int, int]]]] = {}
        self.times: dict[str, float] = {}

    def place(self, name: str, ranges, flags: int = M.MM_MT_FLAGS, addr: int | None = None) -> M.MapleTree:
        if addr is None:
            addr = self.k.phys_to_virt(self.k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12) + 0x40
        mt = M.mt_build(self.k, addr, ranges, self.pool.alloc, self.pool.release, flags)
        self.trees[name] = (addr, mt, list(mt.mt_for_each()))
        return mt


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Built, str]:
    b = Built()
    init_mm_mt = b.k.sym("init_mm") + T.offsetof("mm_struct", "mm_mt")
    b.place("self_maps", _self_maps(), addr=init_mm_mt)
    b.place("empty", [])
    b.place("one_at_0", [(0, 0, _vma(1))])  # kept in ma_root itself
    b.place("one_range", [(0x1000, 0x1FFF, _vma(1))])
    b.place("few", _ascending(5, 1))
    b.place("adjacent", _ascending(300, 2, adjacent=1.0))
    b.place("hundreds", _ascending(700, 3))
    b.place("range64", _ascending(3000, 4), flags=M.MT_FLAGS_USE_RCU)  # no ALLOC_RANGE: range_64 internal nodes
    b.place("not_rcu", _ascending(2000, 5), flags=M.MT_FLAGS_ALLOC_RANGE | M.MT_FLAGS_LOCK_EXTERN)
    import time

    t = time.perf_counter()
    b.place("big", _ascending(30000, 6))
    b.times["big"] = time.perf_counter() - t
    # fork: the child's tree is the parent's, node for node, with the child's VMAs stored over
    # the parent's (dup_mmap: __mt_dup, then an exact-fit store per VMA)
    parent = b.trees["hundreds"][1]
    dup_addr = b.k.phys_to_virt(b.k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12) + 0x100
    dup = M.__mt_dup(parent, dup_addr, b.pool.alloc, b.pool.release)
    for i, (f, l_, _e) in enumerate(list(dup.mt_for_each())):
        dup.mtree_store_range(f, l_, _vma(50000 + i))
    b.trees["dup"] = (dup_addr, dup, list(dup.mt_for_each()))
    mixed = b.place("mixed", _ascending(1500, 7))
    _random_ops(mixed, 8, 300, 1 << 33)
    addr = b.trees["mixed"][0]
    b.trees["mixed"] = (addr, mixed, list(mixed.mt_for_each()))
    d = tmp_path_factory.mktemp("maple")
    save(b.k, d / "mt")
    return b, str(d / "mt")


@pytest.fixture(scope="module")
def progs(built):
    _b, path = built
    return open_drgn(path + ".vmcore", path + ".vmlinux"), open_snapshot(path)


TREES = [
    "self_maps",
    "empty",
    "one_at_0",
    "one_range",
    "few",
    "adjacent",
    "hundreds",
    "range64",
    "not_rcu",
    "big",
    "mixed",
    "dup",
]


def _d(dprog, addr: int):
    return drgn.Object(dprog, "struct maple_tree *", addr)


def _o(prog, addr: int):
    return Object(prog, "struct maple_tree *", addr)


@pytest.mark.parametrize("name", TREES)
def test_drgn_and_our_reader_walk_exactly_the_stored_ranges(built, progs, name):
    b, _ = built
    dprog, prog = progs
    addr, mt, expect = b.trees[name]
    assert [(f, l_, e.value_()) for f, l_, e in drgn_mt_for_each(_d(dprog, addr))] == expect
    assert [(f, l_, e.value_()) for f, l_, e in RM.mt_for_each(_o(prog, addr))] == expect
    assert RM.mt_validate(_o(prog, addr)) == len(expect)
    assert RM.mt_height(_o(prog, addr)) == mt.height


@pytest.mark.parametrize("name", TREES)
def test_mtree_load_agrees_at_every_boundary(built, progs, name):
    b, _ = built
    dprog, prog = progs
    addr, mt, expect = b.trees[name]
    probes = {0, 1, 0xFFF, ULONG_MAX, ULONG_MAX - 1}
    for f, l_, _e in expect[:: max(1, len(expect) // 400)]:
        probes |= {f - 1 if f else 0, f, (f + l_) // 2, l_, l_ + 1 if l_ < ULONG_MAX else l_}
    for i in sorted(probes):
        want = mt.mtree_load(i) or 0
        assert drgn_mtree_load(_d(dprog, addr), i).value_() == want, hex(i)
        assert RM.mtree_load(_o(prog, addr), i).value_() == want, hex(i)


def test_heights_cover_root_pointer_leaf_root_and_deep_trees(built):
    b, _ = built
    h = {n: b.trees[n][1].height for n in TREES}
    assert h["empty"] == 0 and h["one_at_0"] == 0  # ma_root NULL / the entry itself
    assert h["one_range"] == 1 and h["few"] == 1  # one leaf_64 root
    assert h["big"] >= 3 and h["range64"] >= 3
    assert len(b.trees["big"][2]) == 30000


def test_the_model_keeps_the_kernels_invariants(built):
    b, _ = built
    for name in TREES:
        assert b.trees[name][1].mt_validate() == []


def test_encodings_match_a_live_6_18_mm(built, progs):
    """reference/semantics.md §6 [LIVE]: ma_flags 0x303 | height << 2, root ``enode | 2`` with
    type arange_64 (low byte 0x1e), root parent = &mm->mm_mt | 1, leaf children low byte 0x0c
    with parent = root | slot << 3 | 6, arange metadata {end, gap} at offset 240."""
    b, _ = built
    _, prog = progs
    addr, mt, _ = b.trees["self_maps"]
    assert mt.height == 2  # 72 VMAs and the holes between them: a root over leaves, as live
    flags = prog.read_u32(addr + T.offsetof("maple_tree", "ma_flags"))
    assert flags == 0x303 | mt.height << 2
    root = prog.read_u64(addr + T.offsetof("maple_tree", "ma_root"))
    assert root & 0xFF == 0x1E
    node = root & ~0xFF
    assert prog.read_u64(node) == addr | 1
    a64 = T.struct("maple_arange_64")
    end = prog.read_u8(node + a64.offsetof("meta.end"))
    gap_at = prog.read_u8(node + a64.offsetof("meta.gap"))
    gaps = [prog.read_u64(node + a64.offsetof(f"gap[{i}]")) for i in range(end + 1)]
    assert gaps[gap_at] == max(gaps)
    pivots = [prog.read_u64(node + a64.offsetof(f"pivot[{i}]")) for i in range(end + 1)]
    assert pivots[end] == ULONG_MAX  # the node's maximum is stored while a pivot is free
    for i in range(end + 1):
        child = prog.read_u64(node + a64.offsetof(f"slot[{i}]"))
        assert child & 0xFF == 0x0C
        assert prog.read_u64(child & ~0xFF) == node | i << 3 | 6


def test_leaf_metadata_only_when_not_full(built, progs):
    """mas_leaf_set_meta(): a leaf_64 with 16 entries keeps data in slot 15 (no metadata, pivot
    14 below the maximum); one with fewer has meta.end and pivot[end] = its maximum."""
    b, _ = built
    _, prog = progs
    r64 = T.struct("maple_range_64")
    seen = set()
    for n in _nodes(b.trees["big"][1].root):
        if n.type != M.maple_leaf_64:
            continue
        raw = prog.read(n.addr, 256)
        piv14 = struct.unpack_from("<Q", raw, r64.offsetof("pivot[14]"))[0]
        if len(n.piv) == 16:
            assert piv14 and piv14 != n.piv[-1]
            seen.add("full")
        else:
            assert raw[r64.offsetof("meta.end")] == len(n.piv) - 1
            assert struct.unpack_from("<Q", raw, r64.offsetof(f"pivot[{len(n.piv) - 1}]"))[0] == n.piv[-1]
            seen.add("partial")
    assert seen == {"full", "partial"}


def _nodes(root):
    stack = [root] if root is not None else []
    while stack:
        n = stack.pop()
        yield n
        if n.type != M.maple_leaf_64:
            stack.extend(n.slot)


def test_a_forked_tree_has_the_parents_shape_and_its_own_entries(built):
    b, _ = built
    parent, child = b.trees["hundreds"][1], b.trees["dup"][1]
    shape = [(n.type, n.piv, n.gap) for n in _nodes(parent.root)]
    assert [(n.type, n.piv, n.gap) for n in _nodes(child.root)] == shape
    assert {n.addr for n in _nodes(parent.root)}.isdisjoint(n.addr for n in _nodes(child.root))
    assert child.ma_flags == parent.ma_flags
    assert [e for _f, _l, e in child.mt_for_each()] == [_vma(50000 + i) for i in range(len(b.trees["dup"][2]))]


def test_nodes_live_in_the_pool_and_replaced_ones_are_freed(built):
    b, _ = built
    in_trees = {n.addr for _a, mt, _e in b.trees.values() for n in _nodes(mt.root)}
    assert in_trees == b.pool.live


def test_store_paths_on_a_small_tree(built):
    """Exact fit, append, overwrite inside a range, spanning NULL store, erase down to one
    entry and to empty: the model against a plain list, the kernel's invariants each time."""
    b, _ = built
    k = b.k
    addr = k.phys_to_virt(k.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12)
    mt = M.mt_init_flags(k, addr, M.MM_MT_FLAGS, b.pool.alloc, b.pool.release)
    assert k.kmem.get(addr, "maple_tree", "ma_root") == 0
    mt.mtree_store(0, _vma(1))
    assert k.kmem.get(addr, "maple_tree", "ma_root") == _vma(1)  # the root pointer
    mt.mtree_store_range(0x1000, 0x1FFF, _vma(2))
    assert mt.height == 1 and [(f, l_) for f, l_, _ in mt.mt_for_each()] == [(0, 0), (0x1000, 0x1FFF)]
    for i in range(3, 200):
        mt.mtree_store_range(i << 12, (i << 12) + 0xFFF, _vma(i))
    assert mt.height == 3  # ~13 full leaves: more than an arange_64 root's 10 slots
    assert mt.mtree_insert_range(0x5000, 0x5FFF, _vma(9)) == -17
    mt.mtree_store_range(0x10800, 0x20FFF, None)  # spans leaves
    mt.mt_validate()
    assert mt.mtree_load(0x10800) is None and mt.mtree_load(0x107FF) == _vma(16)
    for f, _l, _e in list(mt.mt_for_each()):
        mt.mtree_erase(f)
        mt.mt_validate()
    assert mt.root is None and mt.height == 0 and mt.root_ptr == 0
    assert k.kmem.get(addr, "maple_tree", "ma_root") == 0
    assert k.kmem.get(addr, "maple_tree", "ma_flags") == M.MM_MT_FLAGS
    with mt.batch():
        for i in range(1, 40):
            mt.mtree_store_range(i << 12, (i << 12) + 0xFFF, _vma(i))
        assert k.kmem.get(addr, "maple_tree", "ma_root") == 0  # nothing written inside the batch
    assert k.kmem.get(addr, "maple_tree", "ma_root") == mt.mt_mk_node(mt.root) | 2
    mt.mtree_destroy()
    assert k.kmem.get(addr, "maple_tree", "ma_root") == 0


def test_empty_area_search(built):
    b, _ = built
    mt = b.trees["self_maps"][1]
    maps = b.trees["self_maps"][2]
    low, high = 0x10000, (1 << 47) - 1
    top = mt.mas_empty_area_rev(low, high, 1 << 20)
    assert top is not None and all(l_ < top or f > top + (1 << 20) - 1 for f, l_, _ in maps)
    bottom = mt.mas_empty_area(low, high, 1 << 20)
    assert bottom is not None and bottom < maps[0][0]


def test_build_speed(built):
    b, _ = built
    rate = 30000 / b.times["big"]
    print(f"mt_build: {rate:,.0f} ranges/s")
    assert rate > 5000


# -- corruption -------------------------------------------------------------------------------------
def _file_offset(prog, vaddr: int) -> int:
    p = prog.translate(vaddr)
    seg = prog.core.segment_at(p)
    assert p - seg.paddr < seg.filesz
    return seg.offset + p - seg.paddr


@pytest.fixture
def copy(built, tmp_path):
    _, path = built
    dst = tmp_path / "c"
    for ext in (".vmcore", ".vmlinux"):
        shutil.copy(path + ext, str(dst) + ext)
    return str(dst)


def _poke_u64(path: str, prog, vaddr: int, value: int) -> None:
    off = _file_offset(prog, vaddr)
    with open(path + ".vmcore", "r+b") as f:
        f.seek(off)
        f.write(struct.pack("<Q", value))


def _leaf_and_parent(mt: M.MapleTree):
    parent = mt.root
    while parent.slot[0].type != M.maple_leaf_64:
        parent = parent.slot[0]
    return parent, parent.slot[1]


def _open_both(path: str):
    return open_drgn(path + ".vmcore", path + ".vmlinux"), open_snapshot(path)


def test_bad_type_bits_raise_naming_the_node(built, progs, copy):
    b, _ = built
    _, prog = progs
    addr, mt, _ = b.trees["hundreds"]
    parent, leaf = _leaf_and_parent(mt)
    slot_addr = parent.addr + T.offsetof("maple_arange_64", "slot[1]")
    _poke_u64(copy, prog, slot_addr, leaf.addr | (M.maple_dense << 3) | 4)
    d, p = _open_both(copy)
    with pytest.raises(ValidationError, match=f"node {leaf.addr:#x}.*type bits 0"):
        list(RM.mt_for_each(_o(p, addr)))
    with pytest.raises(NotImplementedError):  # drgn: "unknown maple_type 0"
        list(drgn_mt_for_each(_d(d, addr)))


def test_pivots_not_increasing_raise(built, progs, copy):
    b, _ = built
    _, prog = progs
    addr, mt, expect = b.trees["hundreds"]
    _parent, leaf = _leaf_and_parent(mt)
    _poke_u64(copy, prog, leaf.addr + T.offsetof("maple_range_64", "pivot[3]"), leaf.piv[1])
    d, p = _open_both(copy)
    with pytest.raises(ValidationError, match=f"node {leaf.addr:#x}.*pivot 3"):
        list(RM.mt_for_each(_o(p, addr)))
    with pytest.raises(ValidationError):
        RM.mtree_load(_o(p, addr), leaf.piv[2])
    # drgn walks on and reports ranges that overlap and run backwards.
    got = [(f, l_) for f, l_, _ in drgn_mt_for_each(_d(d, addr))]
    assert got != [(f, l_) for f, l_, _ in expect]
    assert any(f > l_ for f, l_ in got)


def test_a_cycle_raises_instead_of_hanging(built, progs, copy):
    b, _ = built
    _, prog = progs
    addr, mt, expect = b.trees["big"]
    root = mt.root
    child = root.slot[1]
    # The second child's first slot points back at the root node.
    _poke_u64(copy, prog, child.addr + T.offsetof("maple_arange_64", "slot[0]"), mt.mt_mk_node(root))
    d, p = _open_both(copy)
    with pytest.raises(ValidationError, match="second time|parent word"):
        list(RM.mt_for_each(_o(p, addr)))
    # drgn's breadth-first walk has no bound: it keeps going round the cycle.
    assert len(list(itertools.islice(drgn_mt_for_each(_d(d, addr)), 3 * len(expect)))) == 3 * len(expect)


def test_a_chain_deeper_than_maple_height_max_raises(built, progs):
    """A hand-made chain of 40 range_64 nodes, one child each, ending in a leaf: our reader
    stops at MAPLE_HEIGHT_MAX (31) levels whatever ma_flags says."""
    _b, path = built
    kb = boot(MachineConfig(ram=1 << 30))
    pool = NodePool(kb, 256)
    tree = kb.phys_to_virt(kb.alloc_pages("GFP_KERNEL|__GFP_ZERO", 0) << 12)
    nodes = [pool.alloc() for _ in range(41)]
    r64 = T.struct("maple_range_64")
    for depth, n in enumerate(nodes):
        leaf = depth == len(nodes) - 1
        parent = (tree | 1) if depth == 0 else nodes[depth - 1] | 6
        kb.kmem.write_u64(n, parent)
        kb.kmem.write_u64(n + r64.offsetof("pivot[0]"), ULONG_MAX)
        kb.kmem.write_u64(n + r64.offsetof("slot[0]"), _vma(1) if leaf else nodes[depth + 1] | (2 << 3) | 4)
    kb.kmem.write_u64(tree + T.offsetof("maple_tree", "ma_root"), nodes[0] | (2 << 3) | 4 | 2)
    kb.kmem.set(tree, "maple_tree", "ma_flags", 0x302 | 31 << 2)  # a range_64 tree claiming height 31
    save(kb, path + "-chain")
    p = open_snapshot(path + "-chain")
    with pytest.raises(ValidationError, match="depth|MAPLE_HEIGHT_MAX"):
        list(RM.mt_for_each(_o(p, tree)))
    with pytest.raises(ValidationError):
        RM.mtree_load(_o(p, tree), 5)


# -- the model against a plain list ------------------------------------------------------------------


def _ref_store(ref: list, first: int, last: int, entry: int | None) -> list:
    out = []
    for f, l_, e in ref:
        if l_ < first or f > last:
            out.append((f, l_, e))
            continue
        if f < first:
            out.append((f, first - 1, e))
        if l_ > last:
            out.append((last + 1, l_, e))
    if entry is not None:
        out.append((first, last, entry))
    return sorted(out)


@pytest.mark.parametrize(
    "seed,flags,space,maxlen",
    [
        (1, M.MM_MT_FLAGS, 5000, 3),  # dense small indices: mab_calc_split's "range below a node" rule
        (2, 0, 1 << 20, 50),  # range_64 internal nodes
        (3, M.MT_FLAGS_ALLOC_RANGE, 1 << 40, 1 << 30),  # big spanning stores
    ],
)
def test_random_stores_and_erases_keep_contents_and_invariants(seed, flags, space, maxlen):
    rnd = random.Random(seed)
    nxt = iter(range(0x100000, 1 << 40, 256))
    mt = M.MapleTree(_NoMem(), 0x1000, lambda: next(nxt), None, flags)
    ref: list = []
    for i in range(1500):
        if ref and rnd.random() < 0.2:
            f, l_, e = rnd.choice(ref)
            assert mt.mtree_erase(rnd.randrange(f, l_ + 1)) == e
            ref = _ref_store(ref, f, l_, None)
        else:
            f = rnd.randrange(space)
            l_ = ULONG_MAX if rnd.random() < 0.03 else min(space, f + rnd.randrange(maxlen))
            e = None if rnd.random() < 0.3 else _vma(i + 1)
            mt.mtree_store_range(f, l_, e)
            ref = _ref_store(ref, f, l_, e)
        if i % 10 == 0:
            mt.mt_validate(strict_size=False)
            assert list(mt.mt_for_each()) == ref
    assert mt.height >= 2


def test_reader_and_simulator_restate_the_same_defines():
    for name in (
        "MAPLE_NODE_MASK",
        "MAPLE_NODE_TYPE_MASK",
        "MAPLE_NODE_TYPE_SHIFT",
        "MAPLE_HEIGHT_MAX",
        "MT_FLAGS_ALLOC_RANGE",
        "MT_FLAGS_HEIGHT_OFFSET",
        "MT_FLAGS_HEIGHT_MASK",
        "MA_ROOT_PARENT",
        "MAPLE_PARENT_SLOT_SHIFT",
        "MAPLE_PARENT_RANGE64",
    ):
        assert getattr(RM, name) == getattr(M, name), name
    # the header's slot counts are the type data's array sizes (asserted at import, restated here)
    assert T.struct("maple_range_64").walk("slot")[2].resolved().nelems == M.MAPLE_RANGE64_SLOTS
    assert T.struct("maple_arange_64").walk("gap")[2].resolved().nelems == M.MAPLE_ARANGE64_SLOTS
    assert T.enum("maple_type") == {"maple_dense": 0, "maple_leaf_64": 1, "maple_range_64": 2, "maple_arange_64": 3}
