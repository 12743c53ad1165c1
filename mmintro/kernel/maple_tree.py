"""The maple tree (lib/maple_tree.c, include/linux/maple_tree.h), written node by node.

A :class:`MapleTree` is a ``struct maple_tree`` in simulated memory (``mm->mm_mt`` and any
other) together with a Python model of its nodes.  Every store runs the 6.18 write path on the
model, with the kernel's names:

* ``mas_wr_store_type`` chooses the store: ``mas_store_root`` / ``mas_root_expand`` (empty or
  single-pointer tree), exact fit, append / slot store / node store (the leaf is rewritten; a
  tree in RCU mode — ``mm_mt`` is, ``MT_FLAGS_USE_RCU`` — gets a new node and the old one is
  freed, as ``mas_wr_node_store`` does), ``mas_new_root``, split, rebalance, spanning store;
* ``mas_split`` splits upwards, first trying ``mas_push_data`` left then right, with
  ``mab_calc_split`` / ``mab_no_null_split`` choosing the split point;
* ``mas_rebalance`` and ``mas_wr_spanning_store`` combine nodes and end in
  ``mas_spanning_rebalance``, which rebuilds every level up to the root, pulling in the
  nearest neighbour (``mast_spanning_rebalance``) when a level is insufficient;
* ``mas_wr_extend_null`` / ``mas_extend_spanning_null`` keep NULL ranges merged, so no two
  NULL slots are adjacent and no node but the rightmost ends with NULL;
* gaps (``MT_FLAGS_ALLOC_RANGE`` trees) are the largest run of NULL indices below each slot,
  as ``mas_leaf_max_gap`` computes them, with the metadata ``gap`` at the largest (ties: the
  highest offset, as ``mab_mas_cp`` picks it).

The bytes are written at the end of each operation (``flush``): every new or changed node is
serialised whole through the type data, with the encodings of lib/maple_tree.c (``mt_mk_node``,
``mte_mk_root``, ``mas_set_parent``, ``ma_set_meta``) and ``ma_flags`` carrying the height.
Nodes get their memory from the caller's ``alloc_node`` (the ``maple_node`` slab cache, 256
bytes, 256-byte aligned) when first written; nodes the kernel would allocate and free within
one operation never reach memory.  A replaced node is marked dead (``parent`` pointing at
itself, ``mte_set_node_dead``) and handed to ``free_node`` — the kernel frees it after an RCU
grace period, which a snapshot treats as passed.

Where a real kernel may differ: node splits are not unique.  The shapes here are the ones the
6.18 store path gives for the same sequence of stores; a real mm reached its tree through its
own history (fork copies the parent's tree with ``__mt_dup``, munmap/mprotect add spanning
stores), so a tree built here from the same VMAs need not have the same nodes, only the same
contents and the same invariants.  :func:`mt_build` stores the ranges in ascending order —
the tree a sequence of bottom-up ``mtree_store_range`` calls leaves (leaves mostly full
through ``mas_push_data``'s push-left).  Allocation failure (``-ENOMEM``) is not simulated:
``alloc_node`` returning 0 raises :class:`MemoryError`.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "MAPLE_HEIGHT_MAX",
    "MM_MT_FLAGS",
    "MT_FLAGS_ALLOC_RANGE",
    "MT_FLAGS_LOCK_EXTERN",
    "MT_FLAGS_USE_RCU",
    "MapleNode",
    "MapleTree",
    "mt_build",
    "mt_init_flags",
]

ULONG_MAX = (1 << 64) - 1

# -- #defines (not in the type data) ------------------------------------------------------------
# include/linux/maple_tree.h
MAPLE_NODE_SLOTS = 31  # 64-bit: 256 bytes including ->parent
MAPLE_RANGE64_SLOTS = 16
MAPLE_ARANGE64_SLOTS = 10
MAPLE_NODE_MASK = 255
MT_FLAGS_ALLOC_RANGE = 0x01
MT_FLAGS_USE_RCU = 0x02
MT_FLAGS_HEIGHT_OFFSET = 0x02
MT_FLAGS_HEIGHT_MASK = 0x7C
MT_FLAGS_LOCK_EXTERN = 0x300
MAPLE_HEIGHT_MAX = 31
MAPLE_NODE_TYPE_MASK = 0x0F
MAPLE_NODE_TYPE_SHIFT = 0x03
MAPLE_RESERVED_RANGE = 4096
# include/linux/mm_types.h
MM_MT_FLAGS = MT_FLAGS_ALLOC_RANGE | MT_FLAGS_LOCK_EXTERN | MT_FLAGS_USE_RCU
# lib/maple_tree.c
MA_ROOT_PARENT = 1
MAPLE_ROOT_NODE = 0x02  # bit 1 of ma_root: the root is a node
MAPLE_ENODE_TYPE_SHIFT = 0x03  # enum maple_type in bits 3-6 of an encoded node
MAPLE_ENODE_NULL = 0x04  # "a NULL may be below": set by mt_mk_node
MAPLE_PARENT_SLOT_SHIFT = 0x03
MAPLE_PARENT_RANGE64 = 0x06  # parent is a maple_range_64 / maple_arange_64 node

_T = get_types()
maple_dense = _T.const("maple_dense")
maple_leaf_64 = _T.const("maple_leaf_64")
maple_range_64 = _T.const("maple_range_64")
maple_arange_64 = _T.const("maple_arange_64")


def _nelems(struct_name: str, member: str) -> int:
    return _T.struct(struct_name).walk(member)[2].resolved().nelems


# The header's slot counts, checked against the array sizes of the pinned layouts.
assert _nelems("maple_range_64", "slot") == MAPLE_RANGE64_SLOTS
assert _nelems("maple_range_64", "pivot") == MAPLE_RANGE64_SLOTS - 1
assert _nelems("maple_arange_64", "slot") == MAPLE_ARANGE64_SLOTS
assert _nelems("maple_arange_64", "pivot") == MAPLE_ARANGE64_SLOTS - 1
assert _nelems("maple_arange_64", "gap") == MAPLE_ARANGE64_SLOTS
assert _nelems("maple_node", "slot") == MAPLE_NODE_SLOTS
assert _T.sizeof("struct maple_node") == MAPLE_NODE_MASK + 1

# lib/maple_tree.c: mt_slots[], mt_pivots[], mt_min_slots[]
mt_slots = {
    maple_leaf_64: MAPLE_RANGE64_SLOTS,
    maple_range_64: MAPLE_RANGE64_SLOTS,
    maple_arange_64: MAPLE_ARANGE64_SLOTS,
}
mt_pivots = {t: n - 1 for t, n in mt_slots.items()}
mt_min_slots = {
    maple_leaf_64: MAPLE_RANGE64_SLOTS // 2 - 2,
    maple_range_64: MAPLE_RANGE64_SLOTS // 2 - 2,
    maple_arange_64: MAPLE_ARANGE64_SLOTS // 2 - 1,
}

maple_dense = _T.const("maple_dense")


def place_globals(k) -> None:
    """lib/maple_tree.c's ``mt_slots[]``, ``mt_pivots[]`` and ``mt_min_slots[]`` in .rodata, with
    their maple_dense entries (MAPLE_NODE_SLOTS, 0, MAPLE_NODE_SLOTS / 2): crash sizes its
    maple-tree walk from them."""
    tables = {
        "mt_slots": {maple_dense: MAPLE_NODE_SLOTS, **mt_slots},
        "mt_pivots": {maple_dense: 0, **mt_pivots},
        "mt_min_slots": {maple_dense: MAPLE_NODE_SLOTS // 2, **mt_min_slots},
    }
    for name, table in tables.items():
        addr = k.image.var(name, "rodata", align=1)
        n = k.T.var_type(name).resolved().nelems
        k.kmem.write_bytes(addr, bytes(table.get(i, 0) for i in range(n)))


NODE_SIZE = _T.sizeof("struct maple_node")
_R64_PIVOT = _T.offsetof("maple_range_64", "pivot")
_R64_SLOT = _T.offsetof("maple_range_64", "slot")
_R64_META = _T.offsetof("maple_range_64", "meta")
_A64_PIVOT = _T.offsetof("maple_arange_64", "pivot")
_A64_SLOT = _T.offsetof("maple_arange_64", "slot")
_A64_GAP = _T.offsetof("maple_arange_64", "gap")
_A64_META = _T.offsetof("maple_arange_64", "meta")
_PARENT = _T.offsetof("maple_range_64", "parent")
_META_END = _T.offsetof("maple_metadata", "end")
_META_GAP = _T.offsetof("maple_metadata", "gap")
_MT_FLAGS = _T.offsetof("maple_tree", "ma_flags")
_MT_ROOT = _T.offsetof("maple_tree", "ma_root")


def ma_is_leaf(type_: int) -> bool:
    return type_ < maple_range_64


def xa_is_internal(entry: int) -> bool:
    return entry & 3 == 2


def mt_is_reserved(entry: int) -> bool:
    """Entries with low bits 10 below 4096 are the tree's own (include/linux/maple_tree.h)."""
    return entry < MAPLE_RESERVED_RANGE and xa_is_internal(entry)


class MapleNode:
    """One node of the model.  ``piv[i]`` is the inclusive end of slot ``i``; the last one is
    the node's maximum (stored in memory only when a pivot is free for it, as the kernel
    does).  Leaf slots hold entries (int, ``None`` = NULL); internal slots hold children, and
    arange nodes one ``gap`` per child."""

    __slots__ = ("addr", "dirty", "gap", "parent", "piv", "slot", "type")

    def __init__(self, type_: int, piv: list[int], slot: list, gap: list[int] | None = None) -> None:
        self.type = type_
        self.piv = piv
        self.slot = slot
        self.gap = gap
        self.parent: MapleNode | None = None
        self.addr = 0
        self.dirty = False

    @property
    def end(self) -> int:
        """ma_data_end(): the offset of the last used slot."""
        return len(self.piv) - 1

    def __repr__(self) -> str:
        return f"<MapleNode type={self.type} n={len(self.piv)} addr={self.addr:#x}>"


class _Big:
    """struct maple_big_node: the combined data of a level before it is cut into nodes."""

    __slots__ = ("gap", "piv", "slot", "type")

    def __init__(
        self, type_: int, piv: list[int] | None = None, slot: list | None = None, gap: list[int] | None = None
    ) -> None:
        self.type = type_
        self.piv = piv if piv is not None else []
        self.slot = slot if slot is not None else []
        self.gap = gap

    @property
    def b_end(self) -> int:
        """The offset of the last entry (the kernel's ``b_node->b_end`` after ``--``)."""
        return len(self.piv) - 1


class _Lv:
    """One level of a walk: the node, its implied limits, and the offset taken in it."""

    __slots__ = ("max", "min", "node", "off")

    def __init__(self, node: MapleNode, mn: int, mx: int, off: int = 0) -> None:
        self.node = node
        self.min = mn
        self.max = mx
        self.off = off


def _slot_min(lv: _Lv, off: int) -> int:
    """mas_safe_min()."""
    return lv.node.piv[off - 1] + 1 if off else lv.min


class MapleTree:
    """A ``struct maple_tree`` at kernel virtual address ``addr`` and the model of its nodes.

    ``alloc_node()`` returns the kernel virtual address of zeroed, 256-byte aligned memory for
    a ``struct maple_node`` (the maple_node slab cache); ``free_node(addr)`` takes one back.
    """

    def __init__(
        self,
        k: Kernel,
        addr: int,
        alloc_node: Callable[[], int],
        free_node: Callable[[int], None] | None = None,
        flags: int | None = None,
    ) -> None:
        self.k = k
        self.addr = addr
        self.alloc_node = alloc_node
        self.free_node = free_node
        self.root: MapleNode | None = None
        self.root_ptr = 0  # a single entry at index 0 stored in ma_root itself
        self._flags = MM_MT_FLAGS if flags is None else flags & ~MT_FLAGS_HEIGHT_MASK
        self.height = 0
        self._new: list[MapleNode] = []  # nodes to write at the next flush
        self._freed: list[MapleNode] = []
        self.defer = 0  # > 0: stores do not flush (mt_build)

    # -- attributes ------------------------------------------------------------------------------
    @property
    def ma_flags(self) -> int:
        return self._flags | (self.height << MT_FLAGS_HEIGHT_OFFSET)

    def mt_is_alloc(self) -> bool:
        return bool(self._flags & MT_FLAGS_ALLOC_RANGE)

    def mt_in_rcu(self) -> bool:
        return bool(self._flags & MT_FLAGS_USE_RCU)

    def mt_set_in_rcu(self) -> None:
        self._flags |= MT_FLAGS_USE_RCU
        self._flush()

    def mt_clear_in_rcu(self) -> None:
        self._flags &= ~MT_FLAGS_USE_RCU
        self._flush()

    # -- the public API (include/linux/maple_tree.h) ------------------------------------------------
    def mtree_store_range(self, first: int, last: int, entry: int | None) -> None:
        """Store ``entry`` (``None`` = NULL) over ``[first, last]``."""
        if first > last or last > ULONG_MAX or first < 0:
            raise ValueError(f"mtree_store_range: bad range [{first:#x}, {last:#x}]")
        entry = entry or None
        if entry is not None and mt_is_reserved(entry):
            raise ValueError(f"mtree_store_range: {entry:#x} is reserved for the tree (-EINVAL)")
        self._mas_store(first, last, entry)
        self._flush()

    def mtree_store(self, index: int, entry: int | None) -> None:
        self.mtree_store_range(index, index, entry)

    def mtree_insert_range(self, first: int, last: int, entry: int) -> int:
        """Store only if ``[first, last]`` is empty: 0, or -EEXIST (-17)."""
        for _f, _l, _e in self.mt_for_each(first, last):
            return -17
        self.mtree_store_range(first, last, entry)
        return 0

    def mtree_erase(self, index: int) -> int | None:
        """Remove the entry containing ``index`` (its whole range); returns it."""
        found = self._range_at(index)
        if found is None or found[2] is None:
            return None
        first, last, entry = found
        self._mas_store(first, last, None)
        self._flush()
        return entry

    def mtree_load(self, index: int) -> int | None:
        found = self._range_at(index)
        return None if found is None else found[2]

    def mt_for_each(self, first: int = 0, last: int = ULONG_MAX) -> Iterator[tuple[int, int, int]]:
        """(first, last, entry) of every present entry overlapping ``[first, last]``."""
        if self.root is None:
            if self.root_ptr and first == 0:
                yield 0, 0, self.root_ptr
            return
        stack = [(self.root, 0)]
        while stack:
            node, lo = stack.pop()
            if ma_is_leaf(node.type):
                for p, s in zip(node.piv, node.slot):
                    if s is not None and p >= first and lo <= last:
                        yield lo, p, s
                    lo = p + 1
                continue
            kids = []
            for p, c in zip(node.piv, node.slot):
                if p >= first and lo <= last:
                    kids.append((c, lo))
                lo = p + 1
            stack.extend(reversed(kids))

    def mtree_destroy(self) -> None:
        """Free every node; the tree is empty (``__mt_destroy``)."""
        if self.root is not None:
            self._free_subtree(self.root)
        self.root = None
        self.root_ptr = 0
        self.height = 0
        self._flush()

    def mas_empty_area_rev(self, low: int, high: int, size: int) -> int | None:
        """The highest start of ``size`` empty indices inside ``[low, high]`` (what
        ``vm_unmapped_area`` asks for top-down), or None (-EBUSY)."""
        best = None
        for a, b in self._empty_runs(low, high):
            if b - a + 1 >= size:
                best = b - size + 1
        return best

    def mas_empty_area(self, low: int, high: int, size: int) -> int | None:
        """The lowest start of ``size`` empty indices inside ``[low, high]``, or None."""
        for a, b in self._empty_runs(low, high):
            if b - a + 1 >= size:
                return a
        return None

    def _empty_runs(self, low: int, high: int) -> Iterator[tuple[int, int]]:
        prev = low
        for f, l, _e in self.mt_for_each(low, high):
            if f > prev:
                yield prev, min(f - 1, high)
            prev = l + 1
            if prev > high:
                return
        if prev <= high:
            yield prev, high

    def mt_height(self) -> int:
        return self.height

    def _range_at(self, index: int) -> tuple[int, int, int | None] | None:
        """mas_walk(): the range and entry of the slot containing ``index``."""
        if self.root is None:
            if index == 0:
                return (0, 0, self.root_ptr or None) if self.root_ptr else None
            return None
        node, mn = self.root, 0
        while True:
            off = _offset_of(node, index)
            lo = node.piv[off - 1] + 1 if off else mn
            if ma_is_leaf(node.type):
                return lo, node.piv[off], node.slot[off]
            node, mn = node.slot[off], lo

    # -- mas_store: mas_wr_store_type + mas_wr_store_entry ------------------------------------------
    def _mas_store(self, index: int, last: int, entry: int | None) -> None:
        if self.root is None:
            return self._mas_store_root(index, last, entry)
        # mas_wr_walk(): descend, stopping where the write spans.
        path: list[_Lv] = []
        node, mn, mx = self.root, 0, ULONG_MAX
        while True:
            off = _offset_of(node, index)
            lv = _Lv(node, mn, mx, off)
            path.append(lv)
            r_max = node.piv[off]
            if self._mas_is_span_wr(node, r_max, mx, last, entry):
                return self._mas_wr_spanning_store(path, index, last, entry)
            if ma_is_leaf(node.type):
                break
            node, mn, mx = node.slot[off], _slot_min(lv, off), r_max
        leaf = path[-1]
        node = leaf.node
        offset = leaf.off
        end = node.end
        r_min, r_max = _slot_min(leaf, offset), node.piv[offset]
        content = node.slot[offset]
        # mas_wr_end_piv()
        offset_end = offset
        while offset_end < end and last > node.piv[offset_end]:
            offset_end += 1
        end_piv = node.piv[offset_end]
        if entry is None:
            # mas_wr_extend_null()
            if node.slot[offset_end] is None:
                last = end_piv
            elif last == end_piv and end != offset_end and node.slot[offset_end + 1] is None:
                offset_end += 1
                last = end_piv = node.piv[offset_end]
            if content is None:
                index = r_min
            elif index == r_min and offset and node.slot[offset - 1] is None:
                offset -= 1
                r_min = index = _slot_min(leaf, offset)
                r_max = node.piv[offset]
            leaf.off = offset
        if r_min == index and r_max == last:  # wr_exact_fit
            node.slot[offset] = entry
            self._touch(node)
            if (entry is None) != (content is None):
                self._mas_update_gap(path)
            return
        if index == 0 and last == ULONG_MAX:
            return self._mas_new_root(entry)
        new_end = end + 2 - (offset_end - offset) - (r_min == index) - (end_piv == last)
        bn = self._mas_store_b_node(leaf, content, offset, offset_end, index, last, entry)
        assert bn.b_end == new_end, (bn.b_end, new_end)
        if new_end < mt_min_slots[node.type] and node is not self.root:
            return self._mas_rebalance(path, bn)  # wr_rebalance
        if new_end >= mt_slots[node.type]:
            return self._mas_split(path, bn)  # wr_split_store
        # wr_append / wr_slot_store / wr_node_store: the leaf holds the big node's data.  Outside
        # RCU mode the kernel edits the node in place; in RCU mode a node store takes a new node
        # (mas_wr_node_store), while an append or a one-slot store stays in place.
        in_place = (not self.mt_in_rcu()) or (new_end == end and offset_end - offset == 1)
        if in_place:
            node.piv, node.slot = bn.piv, bn.slot
            self._touch(node)
        else:
            new = MapleNode(node.type, bn.piv, bn.slot)
            self._replace_node(path, len(path) - 1, new)
        self._mas_update_gap(path)

    @staticmethod
    def _mas_is_span_wr(node: MapleNode, r_max: int, mx: int, last: int, entry: int | None) -> bool:
        if last < r_max:
            return False
        if ma_is_leaf(node.type):
            r_max = mx
        if last < r_max:
            return False
        if last == r_max:
            # The last entry of a leaf cannot be NULL unless it is the rightmost node.
            if entry is not None or last == ULONG_MAX:
                return False
        return True

    def _mas_store_b_node(
        self, lv: _Lv, content: int | None, offset: int, offset_end: int, index: int, last: int, entry: int | None
    ) -> _Big:
        """mas_store_b_node(): the leaf's data with [index, last] = entry."""
        node = lv.node
        bn = _Big(node.type, node.piv[:offset], node.slot[:offset])
        piv = bn.piv[-1] if offset else lv.min - 1
        if piv + 1 < index:  # the old range starts before the new one
            bn.slot.append(content)
            bn.piv.append(index - 1)
        bn.slot.append(entry)
        bn.piv.append(last)
        if last >= lv.max:
            return bn
        piv = node.piv[offset_end]
        if piv > last:  # the old range ends after the new one
            bn.slot.append(content if offset_end == offset else node.slot[offset_end])
            bn.piv.append(piv)
        bn.piv += node.piv[offset_end + 1 :]
        bn.slot += node.slot[offset_end + 1 :]
        return bn

    # -- root stores -----------------------------------------------------------------------------------
    def _mas_store_root(self, index: int, last: int, entry: int | None) -> None:
        if entry is None:
            if index == 0:
                self.root_ptr = 0
        elif last != 0 or index != 0 or xa_is_internal(entry):
            self._mas_root_expand(index, last, entry)
        else:
            self.root_ptr = entry

    def _mas_root_expand(self, index: int, last: int, entry: int) -> None:
        contents = self.root_ptr or None
        piv: list[int] = []
        slot: list = []
        if index:
            if contents is not None:
                piv.append(0)
                slot.append(contents)
            if contents is None or index > 1:
                piv.append(index - 1)
                slot.append(None)
        piv.append(last)
        slot.append(entry)
        if last != ULONG_MAX:
            piv.append(ULONG_MAX)
            slot.append(None)
        self.root_ptr = 0
        self._set_root(MapleNode(maple_leaf_64, piv, slot), 1)

    def _mas_new_root(self, entry: int | None) -> None:
        old = self.root
        if entry is None:
            self.root = None
            self.height = 0
        else:
            self._set_root(MapleNode(maple_leaf_64, [ULONG_MAX], [entry]), 1)
        if old is not None:
            self._free_subtree(old)

    def _set_root(self, node: MapleNode, height: int) -> None:
        node.parent = None
        self._touch(node)
        self.root = node
        self.height = height

    # -- node replacement and gaps -----------------------------------------------------------------------
    def _touch(self, node: MapleNode) -> None:
        if not node.dirty:
            node.dirty = True
            self._new.append(node)

    def _replace_node(self, path: list[_Lv], level: int, new: MapleNode) -> None:
        """mas_replace_node(): ``new`` takes the place of ``path[level].node``."""
        old = path[level].node
        if level == 0:
            self._set_root(new, self.height)
        else:
            parent = path[level - 1].node
            parent.slot[path[level - 1].off] = new
            new.parent = parent
            self._touch(parent)
            self._touch(new)
        self._adopt(new)
        self._free(old)
        path[level].node = new

    def _adopt(self, node: MapleNode) -> None:
        """mas_adopt_children(): every child's parent pointer names ``node`` and its slot."""
        if not ma_is_leaf(node.type):
            for c in node.slot:
                c.parent = node
                self._touch(c)

    def _free(self, node: MapleNode) -> None:
        if node.addr:
            self._freed.append(node)
        node.parent = None

    def _free_subtree(self, node: MapleNode) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            if not ma_is_leaf(n.type):
                stack.extend(n.slot)
            self._free(n)

    def _max_gap(self, node: MapleNode, mn: int, mx: int) -> int:
        """mas_max_gap(): for a leaf the largest NULL range (mas_leaf_max_gap), for an arange
        node its largest child gap."""
        if not ma_is_leaf(node.type):
            return max(node.gap) if node.gap else 0
        best = 0
        lo = mn
        for p, s in zip(node.piv, node.slot):
            if s is None and p - lo + 1 > best:
                best = p - lo + 1
            lo = p + 1
        return best

    def _mas_update_gap(self, path: list[_Lv]) -> None:
        """mas_update_gap() / mas_parent_gap(): recompute the gaps on the way up."""
        if not self.mt_is_alloc():
            return
        for level in range(len(path) - 1, 0, -1):
            lv = path[level]
            g = self._max_gap(lv.node, lv.min, lv.max)
            parent = path[level - 1]
            off = parent.off
            if parent.node.gap[off] == g:
                return
            parent.node.gap[off] = g
            self._touch(parent.node)

    # -- big nodes to nodes ---------------------------------------------------------------------------------
    def _mk(self, bn: _Big, lo: int, hi: int, type_: int | None = None) -> MapleNode:
        """mab_mas_cp(): a new node with big-node entries [lo, hi]."""
        t = bn.type if type_ is None else type_
        gap = bn.gap[lo : hi + 1] if (not ma_is_leaf(t) and self.mt_is_alloc()) else None
        node = MapleNode(t, bn.piv[lo : hi + 1], bn.slot[lo : hi + 1], gap)
        self._touch(node)
        self._adopt(node)
        return node

    def _entry_of(self, node: MapleNode, mn: int, mx: int) -> tuple[int, MapleNode, int | None]:
        """mab_set_b_end(): the (pivot, slot, gap) a parent holds for ``node``."""
        return mx, node, (self._max_gap(node, mn, mx) if self.mt_is_alloc() else None)

    def _big_of(self, node: MapleNode, lo: int = 0, hi: int | None = None) -> _Big:
        """mas_mab_cp(): entries [lo, hi] of ``node`` as a big node."""
        hi = node.end if hi is None else hi
        gap = node.gap[lo : hi + 1] if node.gap is not None else None
        return _Big(node.type, node.piv[lo : hi + 1], node.slot[lo : hi + 1], gap)

    def _internal_type(self) -> int:
        return maple_arange_64 if self.mt_is_alloc() else maple_range_64

    @staticmethod
    def _mab_no_null_split(bn: _Big, split: int, slot_count: int, b_end: int | None = None) -> int:
        if bn.slot[split] is None:
            b_end = bn.b_end if b_end is None else b_end
            if split < slot_count - 1 and b_end - split > mt_min_slots[bn.type]:
                split += 1
            else:
                split -= 1
        return split

    def _mab_calc_split(self, bn: _Big, mn: int) -> tuple[int, int]:
        """(split, mid_split): the left node takes [0, split]; a middle node (the rare
        three-way split) takes [split + 1, mid_split]."""
        b_end = bn.b_end
        split = b_end // 2
        slot_count = mt_slots[bn.type]
        size = b_end
        if size >= 2 * slot_count or (bn.slot[split] is None and size >= 2 * slot_count - 1):
            split = b_end // 3
            mid_split = split * 2
        else:
            slot_min = mt_min_slots[bn.type]
            mid_split = 0
            while (
                split < slot_count - 1
                and (bn.piv[split] - mn) & ULONG_MAX < slot_count - 1
                and b_end - split > slot_min
            ):
                split += 1
        split = self._mab_no_null_split(bn, split, slot_count)
        if mid_split:
            mid_split = self._mab_no_null_split(bn, mid_split, slot_count)
        return split, mid_split

    # -- mas_split ------------------------------------------------------------------------------------------
    def _mas_split(self, path: list[_Lv], bn: _Big) -> None:
        """mas_split(): cut the overflowing level in two and carry the second half up, until a
        level has room or a sibling takes the overflow (mas_push_data)."""
        level = len(path) - 1  # bn replaces path[level].node; -1: above a root that was split
        prev_l_min = 0  # prev_l_mas starts as a fresh MA_STATE (min 0)
        while True:
            if bn.b_end < mt_slots[bn.type]:
                # mas_split_final_node(): one node holds the level.
                if level <= 0:  # the root: replaced, or a new one above the split root
                    new = self._mk(bn, 0, bn.b_end, self._internal_type())
                    if level == 0:
                        self._free(path[0].node)
                    self._set_root(new, self.height + (level < 0))
                    return
                new = self._mk(bn, 0, bn.b_end)
                self._replace_node(path, level, new)
                self._mas_update_gap(path[: level + 1])
                return
            lv = path[level]
            if level > 0 and (
                self._mas_push_data(path, level, bn, True) or self._mas_push_data(path, level, bn, False)
            ):
                return
            split, _mid = self._mab_calc_split(bn, prev_l_min)
            left = self._mk(bn, 0, split)
            right = self._mk(bn, split + 1, bn.b_end)
            prev_l_min = lv.min
            # mast_fill_bnode(skip=1): the parent's data with the old node replaced by two.
            bn = self._fill_parent(path, level, lv.min, left, bn.piv[split], right, lv.max, skip=1)
            self._free(lv.node)
            level -= 1

    def _fill_parent(
        self,
        path: list[_Lv],
        level: int,
        l_min: int,
        left: MapleNode,
        l_max: int,
        right: MapleNode,
        r_max: int,
        skip: int,
    ) -> _Big:
        """mast_fill_bnode(): the level above, with ``left`` and ``right`` in place of the
        ``skip`` nodes starting at offset ``path[level - 1].off - (skip - 1)`` (for a push left)
        or ``path[level - 1].off`` (a split or a push right)."""
        t = self._internal_type()
        alloc = self.mt_is_alloc()
        if level == 0:  # the root split: a new root will hold both halves
            nb = _Big(t, [], [], [] if alloc else None)
            first = 0
            p = None
        else:
            p = path[level - 1]
            first = p.off
            nb = self._big_of(p.node, 0, first - 1) if first else _Big(t, [], [], [] if alloc else None)
            nb.type = p.node.type
        for node, mn, mx in ((left, l_min, l_max), (right, l_max + 1, r_max)):
            piv, s, g = self._entry_of(node, mn, mx)
            nb.piv.append(piv)
            nb.slot.append(s)
            if nb.gap is not None:
                nb.gap.append(g)
        if p is not None and r_max != p.max:
            rest = self._big_of(p.node, first + skip, p.node.end)
            nb.piv += rest.piv
            nb.slot += rest.slot
            if nb.gap is not None:
                nb.gap += rest.gap
        return nb

    def _mas_push_data(self, path: list[_Lv], level: int, bn: _Big, left: bool) -> bool:
        """mas_push_data(): share the overflow with a sibling that has room, ending the split."""
        lv, p = path[level], path[level - 1]
        s = p.off
        if left:
            if s == 0:
                return False
            sib_off = s - 1
        else:
            if s >= p.node.end:
                return False
            sib_off = s + 1
        sib = p.node.slot[sib_off]
        sib_min = _slot_min(p, sib_off)
        sib_max = p.node.piv[sib_off]
        end = sib.end
        slot_total = bn.b_end + end
        space = 2 * mt_slots[lv.node.type] - 2
        if ma_is_leaf(bn.type):
            space -= 1
        if lv.max == ULONG_MAX:
            space -= 1
        if slot_total >= space:
            return False
        sb = self._big_of(sib)
        if left:
            comb = _Big(bn.type, sb.piv + bn.piv, sb.slot + bn.slot, (sb.gap + bn.gap) if bn.gap is not None else None)
            split = mt_slots[bn.type] - 2
            split = self._mab_no_null_split(comb, split, mt_slots[bn.type], slot_total + 1)
            l_min, r_max = sib_min, lv.max
            p.off = sib_off
        else:
            comb = _Big(bn.type, bn.piv + sb.piv, bn.slot + sb.slot, (bn.gap + sb.gap) if bn.gap is not None else None)
            split = slot_total - (mt_slots[bn.type] - 2)
            split = self._mab_no_null_split(comb, split, mt_slots[bn.type], slot_total + 2)
            l_min, r_max = lv.min, sib_max
        nl = self._mk(comb, 0, split)
        nr = self._mk(comb, split + 1, comb.b_end)
        nb = self._fill_parent(path, level, l_min, nl, comb.piv[split], nr, r_max, skip=2)
        self._free(lv.node)
        self._free(sib)
        # mas_split_final_node(): the parent, with the same number of entries, is replaced.
        if level - 1 == 0:
            new = self._mk(nb, 0, nb.b_end, self._internal_type())
            old = self.root
            self._set_root(new, self.height)
            self._free(old)
            return True
        new = self._mk(nb, 0, nb.b_end)
        self._replace_node(path, level - 1, new)
        self._mas_update_gap(path[:level])
        return True

    # -- mas_rebalance, mas_wr_spanning_store, mas_spanning_rebalance ---------------------------------------
    def _mas_rebalance(self, path: list[_Lv], bn: _Big) -> None:
        """Rebalance an insufficient node against its right sibling, else its left one."""
        level = len(path) - 1
        p = path[level - 1]
        lpath = [_Lv(x.node, x.min, x.max, x.off) for x in path]
        rpath = [_Lv(x.node, x.min, x.max, x.off) for x in path]
        if p.off < p.node.end:  # mas_next_sibling()
            off = p.off + 1
            sib = p.node.slot[off]
            rpath[level - 1].off = off
            rpath[level] = _Lv(sib, _slot_min(p, off), p.node.piv[off])
            sb = self._big_of(sib)
            bn.piv += sb.piv
            bn.slot += sb.slot
        else:  # mas_prev_sibling()
            off = p.off - 1
            sib = p.node.slot[off]
            lpath[level - 1].off = off
            lpath[level] = _Lv(sib, _slot_min(p, off), p.node.piv[off])
            sb = self._big_of(sib)
            bn.piv = sb.piv + bn.piv
            bn.slot = sb.slot + bn.slot
        self._mas_spanning_rebalance(bn, lpath, rpath)

    def _walk_index(self, path: list[_Lv], index: int) -> list[_Lv]:
        """mas_wr_walk_index(): from the last node of ``path`` down to the leaf holding ``index``."""
        out = [_Lv(x.node, x.min, x.max, x.off) for x in path]
        lv = out[-1]
        while True:
            off = _offset_of(lv.node, index)
            lv.off = off
            if ma_is_leaf(lv.node.type):
                return out
            lv = _Lv(lv.node.slot[off], _slot_min(lv, off), lv.node.piv[off])
            out.append(lv)

    def _mas_wr_spanning_store(self, path: list[_Lv], index: int, last: int, entry: int | None) -> None:
        if index == 0 and last == ULONG_MAX:
            return self._mas_new_root(entry)
        # The right side: the leaf holding last + 1, so the node after the store is combined too.
        rpath = self._walk_index(path, last + 1 if last != ULONG_MAX else last)
        lpath = self._walk_index(path, index)
        r, l_ = rpath[-1], lpath[-1]
        r_content = r.node.slot[r.off]
        r_max = r.node.piv[r.off]
        r_off = r.off
        l_content = l_.node.slot[l_.off]
        l_rmin = _slot_min(l_, l_.off)
        if entry is None:
            # mas_extend_spanning_null()
            l_slot = l_.off
            if l_content is None:
                index = l_rmin
            if index == l_rmin and l_slot and l_.node.slot[l_slot - 1] is None:
                index = l_.node.piv[l_slot - 2] + 1 if l_slot > 1 else l_.min
                l_.off = l_slot - 1
            if r_content is None:
                last = max(last, r_max)
                r_off += 1
            elif last == r_max and last < r.max and r.node.slot[r_off + 1] is None:
                last = r.node.piv[r_off + 1]
                r_off += 1
            if index == 0 and last == ULONG_MAX:
                return self._mas_new_root(entry)
        # The left leaf up to index, the entry, then the right leaf after last.
        node = l_.node
        off = l_.off
        bn = _Big(node.type, node.piv[:off], node.slot[:off])
        prev = bn.piv[-1] if off else l_.min - 1
        if prev + 1 < index:
            bn.slot.append(node.slot[off])
            bn.piv.append(index - 1)
        bn.slot.append(entry)
        bn.piv.append(last)
        assert last >= l_.max  # a spanning store reaches the end of the left leaf
        if r.max > last:
            rn = r.node
            bn.piv += rn.piv[r_off:]
            bn.slot += rn.slot[r_off:]
        self._mas_spanning_rebalance(bn, lpath, rpath)

    def _level_nodes(self, lpath: list[_Lv], rpath: list[_Lv]) -> list[MapleNode]:
        """The nodes of one level from the end of ``lpath`` to the end of ``rpath``, in order."""
        out = [lpath[-1].node]
        cur = [_Lv(x.node, x.min, x.max, x.off) for x in lpath]
        target = rpath[-1].node
        while out[-1] is not target:
            cur = self._next_level_node(cur)
            assert cur is not None
            out.append(cur[-1].node)
        return out

    def _next_level_node(self, path: list[_Lv]) -> list[_Lv] | None:
        """mas_next_node(): the path to the next node at the same level, or None."""
        depth = len(path) - 1
        level = depth - 1
        while level >= 0 and path[level].off >= path[level].node.end:
            level -= 1
        if level < 0:
            return None
        out = [_Lv(x.node, x.min, x.max, x.off) for x in path[: level + 1]]
        out[level].off += 1
        while len(out) <= depth:
            up = out[-1]
            child = up.node.slot[up.off]
            out.append(_Lv(child, _slot_min(up, up.off), up.node.piv[up.off], 0))
        return out

    def _prev_level_node(self, path: list[_Lv]) -> list[_Lv] | None:
        """mas_prev_node(): the path to the previous node at the same level, or None."""
        depth = len(path) - 1
        level = depth - 1
        while level >= 0 and path[level].off == 0:
            level -= 1
        if level < 0:
            return None
        out = [_Lv(x.node, x.min, x.max, x.off) for x in path[: level + 1]]
        out[level].off -= 1
        while len(out) <= depth:
            up = out[-1]
            child = up.node.slot[up.off]
            out.append(_Lv(child, _slot_min(up, up.off), up.node.piv[up.off], child.end))
        return out

    def _mast_spanning_rebalance(
        self, bn: _Big, lpath: list[_Lv], rpath: list[_Lv], olds: list[MapleNode]
    ) -> tuple[list[_Lv], list[_Lv]]:
        """Pull the nearest neighbour of the level into ``bn``: checking upwards one level at
        a time, the node to the right first, then the one to the left."""
        depth = len(rpath) - 1
        for level in range(depth - 1, -1, -1):
            if rpath[level].off < rpath[level].node.end:
                nxt = self._next_level_node(rpath)
                assert nxt is not None
                sb = self._big_of(nxt[-1].node)
                bn.piv += sb.piv
                bn.slot += sb.slot
                if bn.gap is not None:
                    bn.gap += sb.gap
                olds.append(nxt[-1].node)
                return lpath, nxt
            if lpath[level].off != 0:
                prv = self._prev_level_node(lpath)
                assert prv is not None
                sb = self._big_of(prv[-1].node)
                bn.piv[:0] = sb.piv
                bn.slot[:0] = sb.slot
                if bn.gap is not None:
                    bn.gap[:0] = sb.gap
                olds.insert(0, prv[-1].node)
                return prv, rpath
        return lpath, rpath

    def _mas_spanning_rebalance(self, bn: _Big, lpath: list[_Lv], rpath: list[_Lv]) -> None:
        """Cut ``bn`` (the data from the start of ``lpath``'s node to the end of ``rpath``'s) into
        nodes, then do the same one level up with the new nodes in place of the old ones, up to
        the root; a node that covers 0..ULONG_MAX alone becomes the root.  (The kernel counts
        the levels, the tree's height, so the loop always ends at the root.)"""
        olds = self._level_nodes(lpath, rpath)
        freed: list[MapleNode] = []
        height = 0
        l_min, r_max = lpath[-1].min, rpath[-1].max
        if (l_min != 0 or r_max != ULONG_MAX) and len(bn.piv) <= mt_min_slots[bn.type]:
            lpath, rpath = self._mast_spanning_rebalance(bn, lpath, rpath, olds)
        while True:
            l_min, r_max = lpath[-1].min, rpath[-1].max
            bn.type = lpath[-1].node.type
            b_end = bn.b_end
            # mas_mab_to_node()
            if b_end < mt_slots[bn.type]:
                cuts = [b_end]
            else:
                split, mid = self._mab_calc_split(bn, l_min)
                cuts = [split, mid, b_end] if mid else [split, b_end]
            new: list[tuple[MapleNode, int, int]] = []
            lo, mn = 0, l_min
            for c in cuts:
                mx = r_max if c == b_end else bn.piv[c]
                new.append((self._mk(bn, lo, c), mn, mx))
                lo, mn = c + 1, mx + 1
            height += 1
            freed += olds
            if len(new) == 1 and l_min == 0 and r_max == ULONG_MAX:
                self._install_root(new[0][0], height, freed)
                return
            # mast_ascend(): the level above, the new nodes in place of the old ones.
            t = self._internal_type()
            if len(lpath) == 1:  # the old root was cut in two or three: a new root above
                nb = _Big(t, [], [], [] if self.mt_is_alloc() else None)
                for node, mn, mx in new:
                    piv, s, g = self._entry_of(node, mn, mx)
                    nb.piv.append(piv)
                    nb.slot.append(s)
                    if nb.gap is not None:
                        nb.gap.append(g)
                root = self._mk(nb, 0, nb.b_end, t)
                self._install_root(root, height + 1, freed)
                return
            pl, pr = lpath[-2], rpath[-2]
            olds = _dedup_parents(olds)
            lpath, rpath = lpath[:-1], rpath[:-1]
            nb = (
                self._big_of(pl.node, 0, pl.off - 1)
                if pl.off
                else _Big(pl.node.type, [], [], [] if pl.node.gap is not None else None)
            )
            nb.type = pl.node.type
            for node, mn, mx in new:
                piv, s, g = self._entry_of(node, mn, mx)
                nb.piv.append(piv)
                nb.slot.append(s)
                if nb.gap is not None:
                    nb.gap.append(g)
            if nb.piv[-1] < pr.max:  # mast_combine_cp_right()
                rest = self._big_of(pr.node, pr.off + 1, pr.node.end)
                nb.piv += rest.piv
                nb.slot += rest.slot
                if nb.gap is not None:
                    nb.gap += rest.gap
            bn = nb
            n = len(bn.piv)
            if n > mt_min_slots[bn.type] or n >= mt_slots[bn.type]:  # sufficient, or overflow
                continue
            if len(lpath) == 1:  # orig_l is the root (mas_is_root_limits)
                root = self._mk(bn, 0, bn.b_end, t)
                self._install_root(root, height + 1, freed + olds)
                return
            lpath, rpath = self._mast_spanning_rebalance(bn, lpath, rpath, olds)

    def _install_root(self, root: MapleNode, height: int, freed: list[MapleNode]) -> None:
        """mas_wmb_replace() at the top: the new root goes in, the replaced nodes die."""
        self._set_root(root, height)
        self._adopt(root)
        seen: set[int] = set()
        for n in freed:
            if id(n) not in seen:
                seen.add(id(n))
                self._free(n)

    @contextlib.contextmanager
    def batch(self) -> Iterator[MapleTree]:
        """Write the bytes once, when the block ends (many stores in a row, as exec or mmap of
        many areas would make them); nodes replaced inside the block never reach memory."""
        self.defer += 1
        try:
            yield self
        finally:
            self.defer -= 1
            self._flush()

    # -- writing the bytes -------------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self.defer:
            return
        self.flush()

    def flush(self) -> None:
        """Write every new or changed node, free the replaced ones, and update the
        ``struct maple_tree`` (``ma_root``, ``ma_flags`` with the height)."""
        km = self.k.kmem
        live = [n for n in self._new if n.dirty and (n.parent is not None or n is self.root)]
        for n in live:
            if not n.addr:
                a = self.alloc_node()
                if not a:
                    raise MemoryError("maple_node: out of memory")
                if a & MAPLE_NODE_MASK:
                    raise ValueError(f"maple node at {a:#x} is not 256-byte aligned")
                n.addr = a
        for n in live:
            km.write_bytes(n.addr, self._node_bytes(n))
            n.dirty = False
        for n in self._new:
            n.dirty = False
        self._new.clear()
        for n in self._freed:
            if n.parent is None and n is not self.root and n.addr:
                # mte_set_node_dead(): parent points to the node itself; then the slab.
                km.write_u64(n.addr + _PARENT, n.addr)
                if self.free_node is not None:
                    self.free_node(n.addr)
                n.addr = 0
        self._freed.clear()
        if self.root is not None:
            km.write_u64(self.addr + _MT_ROOT, self.mt_mk_node(self.root) | MAPLE_ROOT_NODE)
        else:
            km.write_u64(self.addr + _MT_ROOT, self.root_ptr)
        km.set(self.addr, "maple_tree", "ma_flags", self.ma_flags)

    @staticmethod
    def mt_mk_node(node: MapleNode) -> int:
        return node.addr | (node.type << MAPLE_ENODE_TYPE_SHIFT) | MAPLE_ENODE_NULL

    def _node_bytes(self, n: MapleNode) -> bytes:
        buf = bytearray(NODE_SIZE)
        if n.parent is None:
            parent = self.addr | MA_ROOT_PARENT
        else:
            parent = n.parent.addr | (n.parent.slot.index(n) << MAPLE_PARENT_SLOT_SHIFT) | MAPLE_PARENT_RANGE64
        struct.pack_into("<Q", buf, _PARENT, parent)
        leaf = ma_is_leaf(n.type)
        slots = [(s or 0) if leaf else self.mt_mk_node(s) for s in n.slot]
        end = n.end
        npiv = mt_pivots[n.type]
        pivs = n.piv[:npiv]
        if n.type == maple_arange_64:
            struct.pack_into(f"<{len(pivs)}Q", buf, _A64_PIVOT, *pivs)
            struct.pack_into(f"<{len(slots)}Q", buf, _A64_SLOT, *slots)
            gaps = n.gap or [0] * len(slots)
            struct.pack_into(f"<{len(gaps)}Q", buf, _A64_GAP, *gaps)
            best, off = 0, 0
            for i in range(end, -1, -1):
                if gaps[i] > best:
                    best, off = gaps[i], i
            buf[_A64_META + _META_END] = end
            buf[_A64_META + _META_GAP] = off
        else:
            struct.pack_into(f"<{len(pivs)}Q", buf, _R64_PIVOT, *pivs)
            struct.pack_into(f"<{len(slots)}Q", buf, _R64_SLOT, *slots)
            if end < mt_slots[n.type] - 1:  # mas_leaf_set_meta(): only when the node is not full
                buf[_R64_META + _META_END] = end
                buf[_R64_META + _META_GAP] = 0
        return bytes(buf)

    # -- checks ---------------------------------------------------------------------------------------------------
    def mt_validate(self, strict_size: bool = True) -> list[str]:
        """The invariants lib/maple_tree.c's mt_validate() checks, on the model: leaves at one
        depth = the height, pivots increasing inside the node's limits, parents consistent,
        no two NULLs in a row and no NULL ending a node that is not the rightmost, gaps exact
        (AssertionError otherwise).  Nodes other than the rightmost of their level with fewer
        than mt_min_slots entries after the first are the kernel's "Invalid size" warning:
        ``mab_calc_split`` can leave one when the indices are dense (pivots less than a node
        apart), so they are returned, and raised only with ``strict_size``."""
        if self.root is None:
            assert self.height == 0
            return []
        prev_null = [False]
        last_end = [-1]
        warnings: list[str] = []

        def rec(node: MapleNode, mn: int, mx: int, depth: int, parent: MapleNode | None) -> int:
            assert node.parent is parent, "parent"
            assert len(node.piv) == len(node.slot) and 1 <= len(node.piv) <= mt_slots[node.type]
            if node.end < mt_min_slots[node.type] and mx != ULONG_MAX:
                warnings.append(f"Invalid size {node.end} of {node!r} [{mn:#x}, {mx:#x}]")
                assert not strict_size, warnings[-1]
            lo = mn
            for p in node.piv:
                assert lo <= p, "pivots"
                lo = p + 1
            assert node.piv[-1] == mx, "node max"
            if ma_is_leaf(node.type):
                assert depth == self.height, "leaf depth"
                lo = mn
                for p, s in zip(node.piv, node.slot):
                    assert lo == last_end[0] + 1
                    if s is None:
                        assert not prev_null[0], f"two NULLs in a row at {lo:#x}"
                    prev_null[0] = s is None
                    last_end[0] = p
                    lo = p + 1
                if mx != ULONG_MAX:
                    assert node.slot[-1] is not None, "a node other than the rightmost ends with NULL"
                return self._max_gap(node, mn, mx)
            assert node.type == self._internal_type()
            lo = mn
            best = 0
            for i, (p, c) in enumerate(zip(node.piv, node.slot)):
                g = rec(c, lo, p, depth + 1, node)
                if node.gap is not None:
                    assert node.gap[i] == g, f"gap {i} of {node!r}: {node.gap[i]} != {g}"
                best = max(best, g)
                lo = p + 1
            return best

        rec(self.root, 0, ULONG_MAX, 1, None)
        assert last_end[0] == ULONG_MAX
        return warnings


def _offset_of(node: MapleNode, index: int) -> int:
    """The slot of ``node`` whose range holds ``index`` (its pivots end at the node max)."""
    piv = node.piv
    off = 0
    while piv[off] < index:
        off += 1
    return off


def _dedup_parents(nodes: list[MapleNode]) -> list[MapleNode]:
    out: list[MapleNode] = []
    for n in nodes:
        p = n.parent
        if p is not None and (not out or out[-1] is not p):
            out.append(p)
    return out


def mt_init_flags(
    k: Kernel, addr: int, flags: int, alloc_node: Callable[[], int], free_node: Callable[[int], None] | None = None
) -> MapleTree:
    """An empty tree at ``addr`` (``ma_root`` NULL, ``ma_flags`` = ``flags``)."""
    mt = MapleTree(k, addr, alloc_node, free_node, flags)
    mt.flush()
    return mt


def __mt_dup(
    src: MapleTree, addr: int, alloc_node: Callable[[], int], free_node: Callable[[int], None] | None = None
) -> MapleTree:
    """A copy of ``src`` at ``addr``, node for node (``mas_dup_build``: each node copied whole,
    child pointers and parents redone; the new tree takes ``src``'s ``ma_flags``).  This is how
    dup_mmap() gives a child its parent's VMA tree at fork, before it stores each new VMA over
    its parent's (exact fits: the shape stays the parent's)."""
    new = MapleTree(src.k, addr, alloc_node, free_node, src.ma_flags)
    new.height = src.height
    new.root_ptr = src.root_ptr

    def copy(n: MapleNode) -> MapleNode:
        leaf = ma_is_leaf(n.type)
        c = MapleNode(
            n.type,
            list(n.piv),
            list(n.slot) if leaf else [copy(x) for x in n.slot],
            list(n.gap) if n.gap is not None else None,
        )
        new._touch(c)
        new._adopt(c)
        return c

    if src.root is not None:
        new.root = copy(src.root)
    new.flush()
    return new


def mt_build(
    k: Kernel,
    addr: int,
    ranges: list[tuple[int, int, int]] | Iterator[tuple[int, int, int]],
    alloc_node: Callable[[], int],
    free_node: Callable[[int], None] | None = None,
    flags: int = MM_MT_FLAGS,
) -> MapleTree:
    """A tree at ``addr`` holding ``ranges`` — (first, last, entry), sorted, not overlapping —
    stored in ascending order through the 6.18 write path, then written once."""
    mt = MapleTree(k, addr, alloc_node, free_node, flags)
    mt.defer += 1
    prev = -1
    for first, last, entry in ranges:
        if first <= prev:
            raise ValueError(f"mt_build: range [{first:#x}, {last:#x}] overlaps or is out of order")
        mt.mtree_store_range(first, last, entry)
        prev = last
    mt.defer -= 1
    mt.flush()
    return mt
