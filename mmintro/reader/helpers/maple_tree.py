"""Maple trees (include/linux/maple_tree.h, lib/maple_tree.c) read from a snapshot; named like
drgn's ``drgn.helpers.linux.mapletree``.

``mm->mm_mt`` holds an mm's VMAs: ``mt_for_each(mm.mm_mt.address_of_())`` gives each VMA's
``[vm_start, vm_end - 1]`` and its ``struct vm_area_struct *``.

The walks are bounded and checked.  Each node is read once (one 256-byte read) and decoded
through the type data; a node is corrupt — :class:`MapleTreeError`, naming the tree, the node
and the index range it should cover — when its type bits are not a 64-bit node type (or a
leaf type above the leaves, an internal type at them), its data end (``ma_data_end``) is out
of range, its pivots do not increase inside the limits its parent gives it or the last one is
not its maximum, its ``parent`` word is not the encoding of where it hangs, it was already
seen (a cycle or a shared node), it lies deeper than MAPLE_HEIGHT_MAX or its leaves are not
all at the tree's height (``ma_flags``), or (for MT_FLAGS_ALLOC_RANGE trees) a parent's gap
is not the largest NULL range below it.  A node pointer that cannot be read is corruption
of the node holding it.  :func:`mt_validate` adds the kernel's NULL rules (no two NULL
ranges in a row, no NULL ending a node other than the rightmost).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = ["MapleTreeError", "mt_for_each", "mt_height", "mt_validate", "mtree_load"]

ULONG_MAX = (1 << 64) - 1
# include/linux/maple_tree.h and lib/maple_tree.c (#defines; the reader does not import the
# simulator, so they are restated here from the same headers).
MAPLE_NODE_MASK = 255
MAPLE_NODE_TYPE_MASK = 0x0F
MAPLE_NODE_TYPE_SHIFT = 0x03
MAPLE_HEIGHT_MAX = 31
MT_FLAGS_ALLOC_RANGE = 0x01
MT_FLAGS_HEIGHT_OFFSET = 0x02
MT_FLAGS_HEIGHT_MASK = 0x7C
MA_ROOT_PARENT = 1
MAPLE_PARENT_SLOT_SHIFT = 0x03
MAPLE_PARENT_RANGE64 = 0x06
# include/linux/xarray.h: the maple tree shares the XArray's entry encoding.
XA_ZERO_ENTRY = (257 << 2) | 2


def xa_is_node(v: int) -> bool:
    return v & 3 == 2 and v > 4096


class MapleTreeError(ValidationError):
    """A maple tree node read from the snapshot is inconsistent."""


class _Layout(NamedTuple):
    leaf: int
    range64: int
    arange64: int
    r64_pivot: int
    r64_slot: int
    r64_meta: int
    a64_pivot: int
    a64_slot: int
    a64_gap: int
    a64_meta: int
    r64_slots: int
    a64_slots: int
    meta_end: int
    meta_gap: int
    node_size: int
    mt_flags: int
    mt_root: int


def _layout(prog: Program) -> _Layout:
    lay = prog.cache.get("maple_tree_layout")
    if lay is None:
        T = prog.types
        r64, a64 = T.struct("maple_range_64"), T.struct("maple_arange_64")
        lay = _Layout(
            T.const("maple_leaf_64"),
            T.const("maple_range_64"),
            T.const("maple_arange_64"),
            r64.offsetof("pivot"),
            r64.offsetof("slot"),
            r64.offsetof("meta"),
            a64.offsetof("pivot"),
            a64.offsetof("slot"),
            a64.offsetof("gap"),
            a64.offsetof("meta"),
            r64.walk("slot")[2].resolved().nelems,
            a64.walk("slot")[2].resolved().nelems,
            T.offsetof("maple_metadata", "end"),
            T.offsetof("maple_metadata", "gap"),
            T.sizeof("struct maple_node"),
            T.offsetof("maple_tree", "ma_flags"),
            T.offsetof("maple_tree", "ma_root"),
        )
        prog.cache["maple_tree_layout"] = lay
    return lay


class _Node(NamedTuple):
    addr: int
    type: int
    parent: int
    piv: tuple[int, ...]  # pivots of slots 0..end; piv[end] is the node's maximum
    slot: tuple[int, ...]
    gap: tuple[int, ...] | None


class _Walker:
    """Reads and checks nodes of one tree."""

    def __init__(self, mt: Object) -> None:
        self.prog = mt.prog_
        self.lay = _layout(self.prog)
        self.mt_addr = int(mt)
        raw = self.prog.read(self.mt_addr + self.lay.mt_flags, 4)
        self.flags = int.from_bytes(raw, "little")
        self.root = self.prog.read_u64(self.mt_addr + self.lay.mt_root)
        self.height = (self.flags & MT_FLAGS_HEIGHT_MASK) >> MT_FLAGS_HEIGHT_OFFSET
        self.alloc = bool(self.flags & MT_FLAGS_ALLOC_RANGE)
        self.name = f"maple tree {self._describe(self.mt_addr)}"
        self.seen: set[int] = set()
        self.strict_nulls = False
        self.void_p = self.prog.type("void *")

    def _describe(self, addr: int) -> str:
        where = self.prog.symbols.describe(addr)
        return where if where == f"{addr:#x}" else f"{where} ({addr:#x})"

    def error(self, node: int, mn: int, mx: int, what: str) -> MapleTreeError:
        return MapleTreeError(f"{self.name}: node {node:#x} [{mn:#x}, {mx:#x}]: {what}")

    def read(self, enode: int, mn: int, mx: int, depth: int, parent_word: int, holder: str) -> _Node:
        lay = self.lay
        addr = enode & ~MAPLE_NODE_MASK
        type_ = (enode >> MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK
        if depth > MAPLE_HEIGHT_MAX:
            raise self.error(addr, mn, mx, f"deeper than MAPLE_HEIGHT_MAX ({MAPLE_HEIGHT_MAX})")
        if type_ not in (lay.leaf, lay.range64, lay.arange64):
            raise self.error(
                addr, mn, mx, f"encoded pointer {enode:#x} ({holder}) has type bits {type_}, not a 64-bit node type"
            )
        if addr in self.seen:
            raise self.error(addr, mn, mx, f"reached a second time (from {holder}): a cycle or a shared node")
        self.seen.add(addr)
        try:
            buf = self.prog.read(addr, lay.node_size)
        except FaultError as e:
            raise self.error(addr, mn, mx, f"cannot be read (pointer in {holder}): {e}") from None
        parent = struct.unpack_from("<Q", buf, 0)[0]
        if parent != parent_word:
            raise self.error(addr, mn, mx, f"parent word is {parent:#x}, expected {parent_word:#x} ({holder})")
        if type_ == lay.arange64:
            n = lay.a64_slots
            pivots = struct.unpack_from(f"<{n - 1}Q", buf, lay.a64_pivot)
            slots = struct.unpack_from(f"<{n}Q", buf, lay.a64_slot)
            gaps = struct.unpack_from(f"<{n}Q", buf, lay.a64_gap)
            end = buf[lay.a64_meta + lay.meta_end]
            if end >= n:
                raise self.error(addr, mn, mx, f"metadata end {end} is not below {n}")
        else:
            n = lay.r64_slots
            pivots = struct.unpack_from(f"<{n - 1}Q", buf, lay.r64_pivot)
            slots = struct.unpack_from(f"<{n}Q", buf, lay.r64_slot)
            gaps = None
            # ma_data_end(): the metadata end unless the last pivot is in use.
            last = pivots[n - 2]
            if not last:
                end = buf[lay.r64_meta + lay.meta_end]
                if end >= n - 1:
                    raise self.error(addr, mn, mx, f"metadata end {end} in a node that is not full")
            elif last == mx:
                end = n - 2
            else:
                end = n - 1
        piv = list(pivots[:end])
        if end < len(pivots):
            if pivots[end] != mx:
                raise self.error(
                    addr, mn, mx, f"pivot {end} (the data end) is {pivots[end]:#x}, not the node's maximum"
                )
        piv.append(mx)
        lo = mn
        for i, p in enumerate(piv):
            if p < lo or p > mx:
                raise self.error(
                    addr,
                    mn,
                    mx,
                    f"pivot {i} = {p:#x} is outside [{lo:#x}, {mx:#x}] (pivots must increase inside the node's range)",
                )
            lo = p + 1
        return _Node(addr, type_, parent, tuple(piv), slots[: end + 1], gaps[: end + 1] if gaps else None)

    def root_node(self) -> int | None:
        """The encoded root node, or None for a tree that is empty or holds one entry."""
        if xa_is_node(self.root):
            if self.height == 0 or self.height > MAPLE_HEIGHT_MAX:
                raise MapleTreeError(
                    f"{self.name}: ma_flags {self.flags:#x} gives height {self.height} for a tree with a root node"
                )
            return self.root & ~2  # mte_safe_root()
        return None

    def check_level(self, node: _Node, depth: int, mn: int, mx: int) -> None:
        lay = self.lay
        leaf = node.type == lay.leaf
        if leaf and depth != self.height:
            raise self.error(node.addr, mn, mx, f"leaf at depth {depth}, but the tree's height is {self.height}")
        if not leaf and depth >= self.height:
            raise self.error(node.addr, mn, mx, f"internal node at depth {depth}, the tree's height is {self.height}")
        if not leaf and node.type != (lay.arange64 if self.alloc else lay.range64):
            raise self.error(node.addr, mn, mx, f"internal node type {node.type} in a tree with flags {self.flags:#x}")

    def child_parent_word(self, node: _Node, off: int) -> int:
        return node.addr | (off << MAPLE_PARENT_SLOT_SHIFT) | MAPLE_PARENT_RANGE64

    def walk(self, enode: int, mn: int, mx: int, depth: int, parent_word: int, holder: str, entries: list) -> int:
        """Depth-first: append (first, last, entry) of every slot, return the node's max gap."""
        node = self.read(enode, mn, mx, depth, parent_word, holder)
        self.check_level(node, depth, mn, mx)
        lo = mn
        if node.type == self.lay.leaf:
            best = 0
            for p, s in zip(node.piv, node.slot):
                entries.append((lo, p, s))
                if not s and p - lo + 1 > best:
                    best = p - lo + 1
                lo = p + 1
            if self.strict_nulls and mx != ULONG_MAX and not node.slot[-1]:
                raise self.error(node.addr, mn, mx, "ends with a NULL range but is not the rightmost leaf")
            return best
        best = 0
        for i, (p, s) in enumerate(zip(node.piv, node.slot)):
            g = self.walk(s, lo, p, depth + 1, self.child_parent_word(node, i), f"slot {i} of {node.addr:#x}", entries)
            if node.gap is not None and node.gap[i] != g:
                raise self.error(
                    node.addr, mn, mx, f"gap {i} is {node.gap[i]:#x}, the largest NULL range below it is {g:#x}"
                )
            best = max(best, g)
            lo = p + 1
        return best


def _entries(mt: Object, strict_nulls: bool = False) -> tuple[_Walker, list[tuple[int, int, int]]]:
    w = _Walker(mt)
    w.strict_nulls = strict_nulls
    out: list[tuple[int, int, int]] = []
    enode = w.root_node()
    if enode is None:
        if w.root:
            out.append((0, 0, w.root))
        return w, out
    w.walk(enode, 0, ULONG_MAX, 1, w.mt_addr | MA_ROOT_PARENT, "ma_root", out)
    return w, out


def mt_for_each(mt: Object, *, advanced: bool = False) -> Iterator[tuple[int, int, Object]]:
    """Every entry of a maple tree with its range, in index order (the tree is checked as
    it is read; see the module docstring).

    :param mt: ``struct maple_tree *``
    :param advanced: also return zero entries (``XA_ZERO_ENTRY``), like drgn's.
    :return: Iterator of (first_index, last_index, ``void *``) tuples, both inclusive.
    """
    w, entries = _entries(mt)
    for first, last, e in entries:
        if e and (advanced or e != XA_ZERO_ENTRY):
            yield first, last, Object(w.prog, w.void_p, e)


def mtree_load(mt: Object, index: int, *, advanced: bool = False) -> Object:
    """The entry at ``index`` (a walk down one path, each node on it checked).

    :param mt: ``struct maple_tree *``
    :return: ``void *`` (NULL if none)
    """
    index = int(index)
    w = _Walker(mt)
    enode = w.root_node()
    if enode is None:
        return Object(w.prog, w.void_p, w.root if (index == 0 and w.root) else 0)
    mn, mx, depth = 0, ULONG_MAX, 1
    parent_word, holder = w.mt_addr | MA_ROOT_PARENT, "ma_root"
    while True:
        node = w.read(enode, mn, mx, depth, parent_word, holder)
        w.check_level(node, depth, mn, mx)
        off = 0
        while node.piv[off] < index:
            off += 1
        e = node.slot[off]
        if node.type == w.lay.leaf:
            if e == XA_ZERO_ENTRY and not advanced:
                e = 0
            return Object(w.prog, w.void_p, e)
        mn = node.piv[off - 1] + 1 if off else mn
        mx = node.piv[off]
        parent_word, holder = w.child_parent_word(node, off), f"slot {off} of {node.addr:#x}"
        enode = e
        depth += 1


def mt_height(mt: Object) -> int:
    """The tree's height as ``ma_flags`` records it (0: no root node).

    :param mt: ``struct maple_tree *``
    """
    w = _Walker(mt)
    return w.height


def mt_validate(mt: Object) -> int:
    """Check the whole tree (every node, as :func:`mt_for_each` does) and the kernel's NULL
    rules: no two NULL ranges in a row, no node but the rightmost ending on NULL.  Returns the
    number of present entries.

    :param mt: ``struct maple_tree *``
    """
    w, entries = _entries(mt, strict_nulls=True)
    prev_null = False
    for first, last, e in entries:
        if not e and prev_null:
            raise MapleTreeError(f"{w.name}: two NULL ranges in a row, the second at [{first:#x}, {last:#x}]")
        prev_null = not e
    return sum(1 for *_r, e in entries if e)
