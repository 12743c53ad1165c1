"""The XArray (lib/xarray.c, include/linux/xarray.h), written node by node.

An :class:`XArray` is a ``struct xarray`` in simulated memory (``address_space->i_pages``
and any other) with a Python model of its ``struct xa_node`` tree.  The operations are the
kernel's, on an ``xa_state`` (:class:`XaState`), with the kernel's names and control flow:

* ``xas_store`` through ``xas_create`` / ``xas_expand`` / ``xas_alloc`` (the head grows a level
  at a time; a lone entry for index 0 lives in ``xa_head`` itself), and on removal
  ``update_node`` / ``xas_delete_node`` / ``xas_shrink`` (empty nodes go, a head node whose
  only entry is slot 0 collapses into ``xa_head``);
* multi-index entries as 6.18 stores a large folio (``XA_STATE_ORDER`` + ``xas_store``, what
  ``__filemap_add_folio`` does): the entry in the first slot of the node at
  ``order - order % XA_CHUNK_SHIFT``, ``(1 << order % XA_CHUNK_SHIFT) - 1`` sibling entries
  (``xa_mk_sibling(offset)``) after it; an order-9 folio takes 8 slots of a shift-6 node;
* ``count`` (non-NULL slots, siblings and child nodes included) and ``nr_values`` kept as
  ``xas_store`` and ``xas_alloc`` keep them;
* marks (XA_MARK_0/1/2 = the page cache's dirty / writeback / towrite): ``xas_set_mark`` sets
  the bit up to the head and ``XA_FLAGS_MARK(mark)`` in ``xa_flags``; ``xas_clear_mark``
  clears upwards while no sibling bit is left; a multi-index entry's marks sit on its first
  slot (``xas_squash_marks``); ``xas_init_marks`` when an entry is erased; ``xas_expand``
  carries the head's marks into a new top node; XA_FLAGS_TRACK_FREE arrays (xa_alloc) keep
  XA_FREE_MARK on free slots.

Nodes come from the caller's ``alloc_node`` (the ``radix_tree_node`` slab cache: zeroed
``struct xa_node`` memory; ``private_list`` is initialised here, as the cache's constructor
``radix_tree_node_ctor`` does) when first written; a node freed by a store is released as
``radix_tree_node_rcu_free`` does after the grace period (slots and marks cleared,
``private_list`` re-initialised) and handed to ``free_node``.  Bytes are written at the end of
each operation, or once at the end of a :meth:`XArray.batch`.  The workingset shadow-node LRU
(``xas_set_update``, ``private_list`` linked into ``shadow_nodes``) is not modelled.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mmintro.kernel import gfp as G
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "PAGECACHE_TAG_DIRTY",
    "PAGECACHE_TAG_TOWRITE",
    "PAGECACHE_TAG_WRITEBACK",
    "XA_CHUNK_MASK",
    "XA_CHUNK_SHIFT",
    "XA_CHUNK_SIZE",
    "XA_FLAGS_ACCOUNT",
    "XA_FLAGS_ALLOC",
    "XA_FLAGS_LOCK_BH",
    "XA_FLAGS_LOCK_IRQ",
    "XA_FLAGS_MARK",
    "XA_FLAGS_TRACK_FREE",
    "XA_FREE_MARK",
    "XA_MARK_0",
    "XA_MARK_1",
    "XA_MARK_2",
    "XA_PRESENT",
    "XA_RETRY_ENTRY",
    "XA_ZERO_ENTRY",
    "XArray",
    "XaNode",
    "XaState",
    "radix_tree_node_xarray",
    "xa_init_flags",
    "xa_is_internal",
    "xa_is_sibling",
    "xa_is_value",
    "xa_mk_internal",
    "xa_mk_sibling",
    "xa_mk_value",
    "xa_to_sibling",
    "xa_to_value",
]

# -- #defines (not in the type data): include/linux/xarray.h -------------------------------------
XA_CHUNK_SHIFT = 6  # CONFIG_BASE_SMALL=n
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
XA_MAX_MARKS = 3
XA_MARK_0, XA_MARK_1, XA_MARK_2 = 0, 1, 2
XA_MARK_MAX = XA_MARK_2
XA_PRESENT = 8  # the filter "any present entry" of xa_find()
XA_FREE_MARK = XA_MARK_0
XA_FLAGS_LOCK_IRQ = 1
XA_FLAGS_LOCK_BH = 2
XA_FLAGS_TRACK_FREE = 4
XA_FLAGS_ZERO_BUSY = 8
XA_FLAGS_ALLOC_WRAPPED = 16
XA_FLAGS_ACCOUNT = 32


def XA_FLAGS_MARK(mark: int) -> int:
    """The ``xa_flags`` bit saying some entry has ``mark`` (above the GFP bits)."""
    return (1 << G.__GFP_BITS_SHIFT) << mark


XA_FLAGS_ALLOC = XA_FLAGS_TRACK_FREE | XA_FLAGS_MARK(XA_FREE_MARK)
# include/linux/fs.h: the page cache's names for the marks.
PAGECACHE_TAG_DIRTY = XA_MARK_0
PAGECACHE_TAG_WRITEBACK = XA_MARK_1
PAGECACHE_TAG_TOWRITE = XA_MARK_2


def xa_mk_internal(v: int) -> int:
    return (v << 2) | 2


def xa_to_internal(entry: int) -> int:
    return entry >> 2


def xa_is_internal(entry: int) -> bool:
    return entry & 3 == 2


XA_RETRY_ENTRY = xa_mk_internal(256)
XA_ZERO_ENTRY = xa_mk_internal(257)


def xa_mk_value(v: int) -> int:
    """A value entry: ``v`` (0 <= v <= LONG_MAX) shifted up, bit 0 set."""
    if not 0 <= v < 1 << 63:
        raise ValueError(f"xa_mk_value: {v} is not in 0..LONG_MAX")
    return (v << 1) | 1


def xa_to_value(entry: int) -> int:
    return entry >> 1


def xa_is_value(entry: int | XaNode | None) -> bool:
    return isinstance(entry, int) and bool(entry & 1)


def xa_mk_sibling(offset: int) -> int:
    return xa_mk_internal(offset)


def xa_to_sibling(entry: int) -> int:
    return xa_to_internal(entry)


def xa_is_sibling(entry: int | XaNode | None) -> bool:
    return isinstance(entry, int) and xa_is_internal(entry) and entry < xa_mk_sibling(XA_CHUNK_SIZE - 1)


def xa_is_zero(entry: int | XaNode | None) -> bool:
    return entry == XA_ZERO_ENTRY


def xa_is_node(entry: object) -> bool:
    return isinstance(entry, XaNode)


_T = get_types()
assert _T.struct("xa_node").walk("slots")[2].resolved().nelems == XA_CHUNK_SIZE
assert _T.struct("xa_node").walk("marks")[2].resolved().nelems == XA_MAX_MARKS
assert _T.struct("xa_node").walk("marks[0]")[2].resolved().size * 8 == XA_CHUNK_SIZE  # XA_MARK_LONGS = 1
NODE_SIZE = _T.sizeof("struct xa_node")
_OFF = {
    m: _T.offsetof("xa_node", m)
    for m in ("shift", "offset", "count", "nr_values", "parent", "array", "private_list", "slots", "marks")
}
_XA_HEAD = _T.offsetof("xarray", "xa_head")

# include/linux/xarray.h: XAS_BOUNDS (1), XAS_RESTART (3) and XA_ERROR(-ENOMEM) as states.
XAS_BOUNDS = "XAS_BOUNDS"
XAS_RESTART = "XAS_RESTART"


class XaNode:
    """A ``struct xa_node`` of the model: slots hold entries (ints; 0 is NULL; siblings, retry
    and zero entries are the internal ints the kernel stores) or child :class:`XaNode` s."""

    __slots__ = ("addr", "count", "dead", "dirty", "marks", "nr_values", "offset", "parent", "shift", "slots")

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.offset = 0
        self.count = 0
        self.nr_values = 0
        self.parent: XaNode | None = None
        self.slots: list = [0] * XA_CHUNK_SIZE
        self.marks = [0] * XA_MAX_MARKS
        self.addr = 0
        self.dirty = False
        self.dead = False

    def __repr__(self) -> str:
        return f"<XaNode shift={self.shift} offset={self.offset} count={self.count} addr={self.addr:#x}>"


class XaState:
    """struct xa_state: where an operation is in the array."""

    __slots__ = ("xa", "xa_index", "xa_node", "xa_offset", "xa_shift", "xa_sibs")

    def __init__(self, xa: XArray, index: int) -> None:  # XA_STATE()
        self.xa = xa
        self.xa_index = index
        self.xa_shift = 0
        self.xa_sibs = 0
        self.xa_offset = 0
        self.xa_node: XaNode | str | None = XAS_RESTART

    def xas_set_order(self, index: int, order: int) -> None:
        self.xa_index = (index >> order) << order if order < 64 else 0
        self.xa_shift = order - order % XA_CHUNK_SHIFT
        self.xa_sibs = (1 << (order % XA_CHUNK_SHIFT)) - 1
        self.xa_node = XAS_RESTART

    def valid(self) -> bool:
        return self.xa_node is None or isinstance(self.xa_node, XaNode)

    def invalid(self) -> bool:
        return not self.valid()


def get_offset(index: int, node: XaNode) -> int:
    return (index >> node.shift) & XA_CHUNK_MASK


def max_index(entry: object) -> int:
    """The largest index the array can hold without growing (0 for a lone entry)."""
    if not xa_is_node(entry):
        return 0
    return (XA_CHUNK_SIZE << entry.shift) - 1  # type: ignore[union-attr]


class XArray:
    """A ``struct xarray`` at kernel virtual address ``addr`` and the model of its nodes.

    ``alloc_node()`` returns the kernel virtual address of a zeroed ``struct xa_node`` (the
    radix_tree_node slab cache); ``free_node(addr)`` takes one back.
    """

    def __init__(
        self,
        k: Kernel,
        addr: int,
        alloc_node: Callable[[], int],
        free_node: Callable[[int], None] | None = None,
        flags: int = 0,
    ) -> None:
        self.k = k
        self.addr = addr
        self.alloc_node = alloc_node
        self.free_node = free_node
        self.xa_flags = flags
        self.xa_head: XaNode | int = 0
        self._dirty: list[XaNode] = []
        self._freed: list[XaNode] = []
        self._defer = 0

    # -- helpers on the array ---------------------------------------------------------------------
    def xa_track_free(self) -> bool:
        return bool(self.xa_flags & XA_FLAGS_TRACK_FREE)

    def xa_marked(self, mark: int) -> bool:
        return bool(self.xa_flags & XA_FLAGS_MARK(mark))

    def xa_mark_set(self, mark: int) -> None:
        self.xa_flags |= XA_FLAGS_MARK(mark)

    def xa_mark_clear(self, mark: int) -> None:
        self.xa_flags &= ~XA_FLAGS_MARK(mark)

    def _touch(self, node: XaNode) -> None:
        if not node.dirty:
            node.dirty = True
            self._dirty.append(node)

    # -- the normal API ---------------------------------------------------------------------------------
    def xa_load(self, index: int) -> int | None:
        xas = XaState(self, index)
        entry = self.xas_load(xas)
        if entry == XA_ZERO_ENTRY:
            entry = 0
        return entry or None  # type: ignore[return-value]

    def xa_store(self, index: int, entry: int | None) -> int | None:
        """Store ``entry`` (a pointer or an ``xa_mk_value``; ``None`` erases) at ``index``;
        returns the old entry."""
        return self.xa_store_order(index, 0, entry)

    def xa_store_order(self, index: int, order: int, entry: int | None) -> int | None:
        """Store ``entry`` over the ``1 << order`` indices containing ``index``, as one
        multi-index entry (XA_STATE_ORDER + xas_store, as ``__filemap_add_folio`` does for a
        large folio); returns the old entry at the first index."""
        entry = entry or 0
        if entry and xa_is_internal(entry):
            raise ValueError(f"xa_store: {entry:#x} is an internal entry (-EINVAL)")
        if self.xa_track_free() and not entry:
            entry = XA_ZERO_ENTRY
        xas = XaState(self, index)
        if order:
            xas.xas_set_order(index, order)
        curr = self.xas_store(xas, entry)
        if self.xa_track_free():
            self.xas_clear_mark(xas, XA_FREE_MARK)
        self._flush()
        if curr == XA_ZERO_ENTRY or xa_is_node(curr):
            return None
        return curr or None

    def xa_erase(self, index: int) -> int | None:
        """Remove the entry at ``index`` (every index of a multi-index entry); returns it."""
        xas = XaState(self, index)
        curr = self.xas_store(xas, 0)
        self._flush()
        if curr == XA_ZERO_ENTRY or xa_is_node(curr):
            return None
        return curr or None

    def xa_set_mark(self, index: int, mark: int) -> None:
        """Mark the entry at ``index`` (nothing if there is none)."""
        xas = XaState(self, index)
        if self.xas_load(xas):
            self.xas_set_mark(xas, mark)
        self._flush()

    def xa_clear_mark(self, index: int, mark: int) -> None:
        xas = XaState(self, index)
        if self.xas_load(xas):
            self.xas_clear_mark(xas, mark)
        self._flush()

    def xa_get_mark(self, index: int, mark: int) -> bool:
        xas = XaState(self, index)
        entry = self.xas_start(xas)
        while self.xas_get_mark(xas, mark):
            if not xa_is_node(entry):
                return True
            entry = self.xas_descend(xas, entry)
        return False

    def xa_for_each(self, mark: int | None = None) -> Iterator[tuple[int, int]]:
        """(index, entry) for every present entry in index order (a multi-index entry once,
        at its first index), optionally only those with ``mark``; zero entries skipped."""
        head = self.xa_head
        if not xa_is_node(head):
            if head and head != XA_ZERO_ENTRY and (mark is None or self.xa_marked(mark)):
                yield 0, head  # type: ignore[misc]
            return
        yield from self._walk_node(head, 0, mark)  # type: ignore[arg-type]

    def _walk_node(self, node: XaNode, base: int, mark: int | None) -> Iterator[tuple[int, int]]:
        for off, e in enumerate(node.slots):
            if not e or xa_is_sibling(e) or e == XA_ZERO_ENTRY or e == XA_RETRY_ENTRY:
                continue
            if mark is not None and not node.marks[mark] >> off & 1:
                continue
            idx = base + (off << node.shift)
            if xa_is_node(e):
                yield from self._walk_node(e, idx, mark)
            else:
                yield idx, e

    @contextlib.contextmanager
    def batch(self) -> Iterator[XArray]:
        """Write the bytes once, when the block ends (many stores in a row)."""
        self._defer += 1
        try:
            yield self
        finally:
            self._defer -= 1
            self._flush()

    # -- walking (the advanced API) -----------------------------------------------------------------------
    def xas_start(self, xas: XaState) -> object:
        if xas.valid():
            return self.xas_reload(xas)
        if xas.xa_node not in (XAS_RESTART, XAS_BOUNDS):  # an error
            return 0
        entry = self.xa_head
        if not xa_is_node(entry):
            if xas.xa_index:
                xas.xa_node = XAS_BOUNDS
                return 0
        elif (xas.xa_index >> entry.shift) > XA_CHUNK_MASK:  # type: ignore[union-attr]
            xas.xa_node = XAS_BOUNDS
            return 0
        xas.xa_node = None
        return entry

    def xas_reload(self, xas: XaState) -> object:
        node = xas.xa_node
        if node is None:
            return self.xa_head
        assert isinstance(node, XaNode)
        offset = (xas.xa_index >> node.shift) & XA_CHUNK_MASK
        entry = node.slots[offset]
        if not xa_is_sibling(entry):
            return entry
        return node.slots[xa_to_sibling(entry)]

    def xas_descend(self, xas: XaState, node: XaNode) -> object:
        offset = get_offset(xas.xa_index, node)
        entry = node.slots[offset]
        xas.xa_node = node
        if xa_is_sibling(entry):
            offset = xa_to_sibling(entry)
            entry = node.slots[offset]
        xas.xa_offset = offset
        return entry

    def xas_load(self, xas: XaState) -> object:
        entry = self.xas_start(xas)
        while xa_is_node(entry):
            if xas.xa_shift > entry.shift:  # type: ignore[union-attr]
                break
            entry = self.xas_descend(xas, entry)  # type: ignore[arg-type]
        return entry

    # -- growing ------------------------------------------------------------------------------------------
    def xas_alloc(self, xas: XaState, shift: int) -> XaNode:
        parent = xas.xa_node
        node = XaNode(shift)
        if isinstance(parent, XaNode):
            node.offset = xas.xa_offset
            parent.count += 1
            assert parent.count <= XA_CHUNK_SIZE
            self._touch(parent)
            node.parent = parent
        self._touch(node)
        return node

    def xas_max(self, xas: XaState) -> int:
        mx = xas.xa_index
        if xas.xa_shift or xas.xa_sibs:
            mask = ((xas.xa_sibs + 1) << xas.xa_shift) - 1
            mx |= mask
            if mask == mx:
                mx += 1
        return mx

    def xas_expand(self, xas: XaState, head: object) -> int:
        """Add levels above the head until it can hold the index; the new top's shift + 6."""
        node = None
        shift = 0
        mx = self.xas_max(xas)
        if not head:
            if mx == 0:
                return 0
            while (mx >> shift) >= XA_CHUNK_SIZE:
                shift += XA_CHUNK_SHIFT
            return shift + XA_CHUNK_SHIFT
        if xa_is_node(head):
            node = head
            shift = head.shift + XA_CHUNK_SHIFT  # type: ignore[union-attr]
        xas.xa_node = None
        while mx > max_index(head):
            node = self.xas_alloc(xas, shift)
            node.count = 1
            if xa_is_value(head):
                node.nr_values = 1
            node.slots[0] = head
            # Propagate the aggregated mark information to the new child.
            for mark in range(XA_MARK_MAX + 1):
                if self.xa_track_free() and mark == XA_FREE_MARK:
                    node.marks[mark] = (1 << XA_CHUNK_SIZE) - 1
                    if not self.xa_marked(XA_FREE_MARK):
                        node.marks[mark] &= ~1
                        self.xa_mark_set(XA_FREE_MARK)
                elif self.xa_marked(mark):
                    node.marks[mark] |= 1
            if xa_is_node(head):
                head.offset = 0  # type: ignore[union-attr]
                head.parent = node  # type: ignore[union-attr]
                self._touch(head)  # type: ignore[arg-type]
            head = node
            self.xa_head = node
            shift += XA_CHUNK_SHIFT
        xas.xa_node = node
        return shift

    def xas_create(self, xas: XaState) -> object:
        """Make a slot for the entry: returns what the slot held (0 if it was made)."""
        node = xas.xa_node
        order = xas.xa_shift
        if node is None or node in (XAS_RESTART, XAS_BOUNDS):  # xas_top()
            entry = self.xa_head
            xas.xa_node = None
            shift = self.xas_expand(xas, entry)
            entry = self.xa_head
            parent_slot: tuple[XaNode, int] | None = None  # None: xa_head
        else:
            assert isinstance(node, XaNode)
            shift = node.shift
            entry = node.slots[xas.xa_offset]
            parent_slot = (node, xas.xa_offset)
        while shift > order:
            shift -= XA_CHUNK_SHIFT
            if not entry:
                node = self.xas_alloc(xas, shift)
                if self.xa_track_free():
                    node.marks[XA_FREE_MARK] = (1 << XA_CHUNK_SIZE) - 1
                if parent_slot is None:
                    self.xa_head = node
                else:
                    parent_slot[0].slots[parent_slot[1]] = node
            elif xa_is_node(entry):
                node = entry
            else:
                break
            entry = self.xas_descend(xas, node)  # type: ignore[arg-type]
            parent_slot = (node, xas.xa_offset)  # type: ignore[assignment]
        return entry

    # -- storing ----------------------------------------------------------------------------------------
    def xas_store(self, xas: XaState, entry: int) -> object:
        """Store ``entry`` at the slot(s) of ``xas``; returns the old entry."""
        value = xa_is_value(entry)
        first = self.xas_create(xas) if entry else self.xas_load(xas)
        if xas.invalid():
            return first
        node = xas.xa_node
        if isinstance(node, XaNode) and xas.xa_shift < node.shift:
            xas.xa_sibs = 0
        if first == entry and not xas.xa_sibs:
            return first
        nxt = first
        offset = xas.xa_offset
        mx = xas.xa_offset + xas.xa_sibs
        if isinstance(node, XaNode) and xas.xa_sibs:
            self.xas_squash_marks(xas)
        if not entry:
            self.xas_init_marks(xas)
        count = values = 0
        while True:
            if isinstance(node, XaNode):
                node.slots[offset] = entry
                self._touch(node)
            else:
                self.xa_head = entry
            if xa_is_node(nxt):
                self.xas_free_nodes(xas, nxt)  # type: ignore[arg-type]
            if not isinstance(node, XaNode):
                break
            count += (not nxt) - (not entry)
            values += (not xa_is_value(first)) - (not value)
            if entry:
                if offset == mx:
                    break
                if not xa_is_sibling(entry):
                    entry = xa_mk_sibling(xas.xa_offset)
            else:
                if offset == XA_CHUNK_MASK:
                    break
            offset += 1
            nxt = node.slots[offset]
            if not xa_is_sibling(nxt):
                if not entry and offset > mx:
                    break
                first = nxt
        self.update_node(xas, node, count, values)
        return first

    def update_node(self, xas: XaState, node: object, count: int, values: int) -> None:
        if not isinstance(node, XaNode) or (not count and not values):
            return
        node.count += count
        node.nr_values += values
        assert 0 <= node.count <= XA_CHUNK_SIZE and 0 <= node.nr_values <= XA_CHUNK_SIZE
        self._touch(node)
        if count < 0:
            self.xas_delete_node(xas)

    def xas_delete_node(self, xas: XaState) -> None:
        node = xas.xa_node
        assert isinstance(node, XaNode)
        while True:
            if node.count:
                break
            parent = node.parent
            xas.xa_node = parent
            xas.xa_offset = node.offset
            self.xa_node_free(node)
            if parent is None:
                self.xa_head = 0
                xas.xa_node = XAS_BOUNDS
                return
            parent.slots[xas.xa_offset] = 0
            parent.count -= 1
            self._touch(parent)
            node = parent
        if node.parent is None:
            self.xas_shrink(xas)

    def xas_shrink(self, xas: XaState) -> None:
        node = xas.xa_node
        assert isinstance(node, XaNode)
        while True:
            if node.count != 1:
                break
            entry = node.slots[0]
            if not entry:
                break
            if not xa_is_node(entry) and node.shift:
                break
            xas.xa_node = XAS_BOUNDS
            self.xa_head = entry
            if self.xa_track_free() and not node.marks[XA_FREE_MARK] & 1:
                self.xa_mark_clear(XA_FREE_MARK)
            node.count = 0
            node.nr_values = 0
            if not xa_is_node(entry):
                node.slots[0] = XA_RETRY_ENTRY
            self.xa_node_free(node)
            if not xa_is_node(entry):
                break
            node = entry
            node.parent = None
            self._touch(node)

    def xas_free_nodes(self, xas: XaState, top: XaNode) -> None:
        """A subtree replaced by one entry: every node of it goes."""
        stack = [top]
        while stack:
            n = stack.pop()
            stack.extend(e for e in n.slots if xa_is_node(e))
            n.count = n.nr_values = 0
            self.xa_node_free(n)

    def xa_node_free(self, node: XaNode) -> None:
        node.dead = True
        if node.addr:
            self._freed.append(node)

    # -- marks -----------------------------------------------------------------------------------------------
    def xas_get_mark(self, xas: XaState, mark: int) -> bool:
        if xas.invalid():
            return False
        node = xas.xa_node
        if node is None:
            return self.xa_marked(mark)
        assert isinstance(node, XaNode)
        return bool(node.marks[mark] >> xas.xa_offset & 1)

    def xas_set_mark(self, xas: XaState, mark: int) -> None:
        if xas.invalid():
            return
        node = xas.xa_node
        offset = xas.xa_offset
        while isinstance(node, XaNode):
            was = node.marks[mark] >> offset & 1
            node.marks[mark] |= 1 << offset
            self._touch(node)
            if was:
                return
            offset = node.offset
            node = node.parent
        if not self.xa_marked(mark):
            self.xa_mark_set(mark)

    def xas_clear_mark(self, xas: XaState, mark: int) -> None:
        if xas.invalid():
            return
        node = xas.xa_node
        offset = xas.xa_offset
        while isinstance(node, XaNode):
            if not node.marks[mark] >> offset & 1:
                return
            node.marks[mark] &= ~(1 << offset)
            self._touch(node)
            if node.marks[mark]:
                return
            offset = node.offset
            node = node.parent
        if self.xa_marked(mark):
            self.xa_mark_clear(mark)

    def xas_init_marks(self, xas: XaState) -> None:
        for mark in range(XA_MARK_MAX + 1):
            if self.xa_track_free() and mark == XA_FREE_MARK:
                self.xas_set_mark(xas, mark)
            else:
                self.xas_clear_mark(xas, mark)

    def xas_squash_marks(self, xas: XaState) -> None:
        """Merge the marks of a multi-index entry's slots onto its first slot."""
        if not xas.xa_sibs:
            return
        node = xas.xa_node
        assert isinstance(node, XaNode)
        lo, n = xas.xa_offset, xas.xa_sibs
        rest = ((1 << n) - 1) << (lo + 1)
        for mark in range(XA_MARK_MAX + 1):
            if node.marks[mark] & rest:
                node.marks[mark] = (node.marks[mark] | 1 << lo) & ~rest
                self._touch(node)

    # -- writing the bytes ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._defer:
            self.flush()

    def flush(self) -> None:
        """Write every new or changed node and ``struct xarray``; release freed nodes."""
        km = self.k.kmem
        live = [n for n in self._dirty if not n.dead]
        for n in live:
            if not n.addr:
                a = self.alloc_node()
                if not a:
                    raise MemoryError("radix_tree_node: out of memory")
                n.addr = a
        for n in live:
            km.write_bytes(n.addr, self._node_bytes(n))
        for n in self._dirty:
            n.dirty = False
        self._dirty.clear()
        for n in self._freed:
            if n.addr:
                # radix_tree_node_rcu_free(): a zeroed node, private_list re-initialised.
                blank = XaNode(0)
                blank.addr = n.addr
                km.write_bytes(n.addr, self._node_bytes(blank, array=0))
                if self.free_node is not None:
                    self.free_node(n.addr)
                n.addr = 0
        self._freed.clear()
        head = self.xa_head
        km.write_u64(self.addr + _XA_HEAD, (head.addr | 2) if xa_is_node(head) else head)  # type: ignore[union-attr]
        km.set(self.addr, "xarray", "xa_flags", self.xa_flags)

    def _node_bytes(self, n: XaNode, array: int | None = None) -> bytes:
        buf = bytearray(NODE_SIZE)
        buf[_OFF["shift"]] = n.shift
        buf[_OFF["offset"]] = n.offset
        buf[_OFF["count"]] = n.count
        buf[_OFF["nr_values"]] = n.nr_values
        struct.pack_into(
            "<QQ", buf, _OFF["parent"], n.parent.addr if n.parent else 0, self.addr if array is None else array
        )
        pl = n.addr + _OFF["private_list"]  # INIT_LIST_HEAD(&node->private_list)
        struct.pack_into("<QQ", buf, _OFF["private_list"], pl, pl)
        struct.pack_into(
            f"<{XA_CHUNK_SIZE}Q", buf, _OFF["slots"], *((e.addr | 2) if xa_is_node(e) else e for e in n.slots)
        )
        struct.pack_into(f"<{XA_MAX_MARKS}Q", buf, _OFF["marks"], *n.marks)
        return bytes(buf)

    # -- checks ------------------------------------------------------------------------------------------------
    def xa_validate(self) -> None:
        """The structure's invariants on the model: shifts step by 6 down to 0, offsets and
        parents agree, count / nr_values match the slots, a mark on a node slot iff some
        entry below has it, the xa_flags mark bits iff the top has them, the head is a node
        unless the array holds at most index 0."""
        head = self.xa_head
        if not xa_is_node(head):
            return

        def rec(node: XaNode, parent: XaNode | None) -> list[bool]:
            assert node.parent is parent and not node.dead
            cnt = sum(1 for e in node.slots if e)
            vals = 0
            cur = 0
            for e in node.slots:
                if xa_is_sibling(e):
                    vals += xa_is_value(cur)
                else:
                    cur = e
                    vals += xa_is_value(e)
            assert node.count == cnt, (node, cnt)
            assert node.nr_values == vals, (node, vals)
            any_marks = [False] * XA_MAX_MARKS
            for off, e in enumerate(node.slots):
                if xa_is_node(e):
                    assert e.shift == node.shift - XA_CHUNK_SHIFT and e.offset == off
                    sub = rec(e, node)
                    for m in range(XA_MAX_MARKS):
                        if self.xa_track_free() and m == XA_FREE_MARK:
                            continue
                        assert bool(node.marks[m] >> off & 1) == sub[m], (node, off, m)
                elif xa_is_sibling(e):
                    assert xa_to_sibling(e) < off
                    for m in range(XA_MAX_MARKS):
                        assert not node.marks[m] >> off & 1 or (self.xa_track_free() and m == XA_FREE_MARK)
                for m in range(XA_MAX_MARKS):
                    if node.marks[m] >> off & 1:
                        any_marks[m] = True
            return any_marks

        top = rec(head, None)  # type: ignore[arg-type]
        h = head  # xas_shrink() leaves no head node that only holds slot 0 (a node, or at shift 0)
        assert not (h.count == 1 and h.slots[0] and (xa_is_node(h.slots[0]) or not h.shift)), "head not shrunk"  # type: ignore[union-attr]
        for m in range(XA_MAX_MARKS):
            if not (self.xa_track_free() and m == XA_FREE_MARK):
                assert self.xa_marked(m) == top[m], ("xa_flags mark", m)


def xa_init_flags(
    k: Kernel, addr: int, flags: int, alloc_node: Callable[[], int], free_node: Callable[[int], None] | None = None
) -> XArray:
    """An empty array at ``addr`` (``xa_head`` NULL, ``xa_flags`` = ``flags``; XA_FLAGS_ALLOC
    arrays start with XA_FREE_MARK set, as xa_init_flags() does)."""
    xa = XArray(k, addr, alloc_node, free_node, flags)
    xa.flush()
    return xa


def radix_tree_node_xarray(k: Kernel, addr: int, flags: int) -> XArray:
    """The model of the array at ``addr`` whose nodes, as in lib/xarray.c xas_alloc(), come
    zeroed from the ``radix_tree_node`` slab cache and go back to it (the array in memory is
    left as it is: ``xa_init_flags`` initialises a new one)."""
    from mmintro.kernel import slub

    cache = slub.find_cache(k, "radix_tree_node")
    size = k.T.sizeof("struct xa_node")

    def alloc() -> int:
        a = slub.kmem_cache_alloc(k, cache, "GFP_KERNEL", caller="xas_alloc")
        if not a:  # xas_nomem() found nothing either: the caller's -ENOMEM
            raise MemoryError("xas_alloc: no radix_tree_node (-ENOMEM)")
        k.kmem.write_bytes(a, bytes(size))
        return a

    return XArray(k, addr, alloc, lambda a: slub.kmem_cache_free(k, cache, a), flags=flags)
