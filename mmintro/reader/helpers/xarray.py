"""XArrays (include/linux/xarray.h, lib/xarray.c) read from a snapshot; named like drgn's
``drgn.helpers.linux.xarray`` and the kernel's API.

``address_space->i_pages`` is the page cache: ``xa_for_each(mapping.i_pages.address_of_())``
gives (index, ``struct folio *`` or shadow value entry); a large folio appears once, at its
first index (its other slots are sibling entries), and :func:`xa_load` finds it from any of
its indices.  Marks: the page cache's XA_MARK_0/1/2 are PAGECACHE_TAG_DIRTY / WRITEBACK /
TOWRITE (:func:`xa_get_mark`, :func:`xa_for_each_marked`).

Walks are bounded and checked: a node is corrupt — :class:`XArrayError`, naming the array, the
node and the indices it covers — when its ``shift`` is not a multiple of XA_CHUNK_SHIFT below
BITS_PER_LONG or not its parent's minus XA_CHUNK_SHIFT, its ``offset``, ``parent`` or
``array`` do not say where it hangs (a freed node has ``array`` = XA_RCU_FREE), its ``count``
is not its number of non-NULL slots, a sibling entry does not point back to an earlier
non-sibling slot, it was already seen (a cycle), or (in a full walk) a mark bit of a node
slot disagrees with the marks below it.  An unreadable node pointer is corruption of the
slot holding it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.object import Object, cast
from mmintro.reader.program import Program

__all__ = [
    "XArrayError",
    "xa_for_each",
    "xa_for_each_marked",
    "xa_get_mark",
    "xa_is_internal",
    "xa_is_sibling",
    "xa_is_value",
    "xa_is_zero",
    "xa_load",
    "xa_to_value",
]

# include/linux/xarray.h (#defines; restated for the reader, which does not import the simulator)
XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
XA_MAX_MARKS = 3
BITS_PER_LONG = 64
XA_RETRY_ENTRY = (256 << 2) | 2
XA_ZERO_ENTRY = (257 << 2) | 2
XA_RCU_FREE = 1  # lib/xarray.c: node->array of a node waiting for its RCU grace period


def _is_node(v: int) -> bool:
    return v & 3 == 2 and v > 4096


def _is_sibling(v: int) -> bool:
    return v & 3 == 2 and v < ((XA_CHUNK_SIZE - 1) << 2 | 2)


class XArrayError(ValidationError):
    """An XArray node read from the snapshot is inconsistent."""


class _Layout(NamedTuple):
    shift: int
    offset: int
    count: int
    nr_values: int
    parent: int
    array: int
    slots: int
    marks: int
    node_size: int
    xa_flags: int
    xa_head: int
    gfp_bits_shift: int


def _layout(prog: Program) -> _Layout:
    lay = prog.cache.get("xarray_layout")
    if lay is None:
        T = prog.types
        n = T.struct("xa_node")
        if n.walk("slots")[2].resolved().nelems != XA_CHUNK_SIZE:
            raise XArrayError(
                f"struct xa_node has {n.walk('slots')[2].resolved().nelems} slots, not XA_CHUNK_SIZE {XA_CHUNK_SIZE}"
            )
        lay = _Layout(
            *(n.offsetof(m) for m in ("shift", "offset", "count", "nr_values", "parent", "array", "slots", "marks")),
            T.sizeof("struct xa_node"),
            T.offsetof("xarray", "xa_flags"),
            T.offsetof("xarray", "xa_head"),
            T.const("___GFP_LAST_BIT"),
        )  # __GFP_BITS_SHIFT, below XA_FLAGS_MARK()
        prog.cache["xarray_layout"] = lay
    return lay


class _Node(NamedTuple):
    addr: int
    shift: int
    slots: tuple[int, ...]
    marks: tuple[int, ...]


class _Walker:
    def __init__(self, xa: Object) -> None:
        self.prog = xa.prog_
        self.lay = _layout(self.prog)
        self.xa_addr = int(xa)
        self.flags = int.from_bytes(self.prog.read(self.xa_addr + self.lay.xa_flags, 4), "little")
        self.head = self.prog.read_u64(self.xa_addr + self.lay.xa_head)
        self.seen: set[int] = set()
        self.void_p = self.prog.type("void *")
        where = self.prog.symbols.describe(self.xa_addr)
        self.name = f"xarray {where}" + ("" if where == f"{self.xa_addr:#x}" else f" ({self.xa_addr:#x})")

    def error(self, node: int, first: int, shift: int, what: str) -> XArrayError:
        last = first + (XA_CHUNK_SIZE << shift) - 1 if shift < BITS_PER_LONG else (1 << 64) - 1
        return XArrayError(f"{self.name}: node {node:#x} [{first:#x}, {min(last, (1 << 64) - 1):#x}]: {what}")

    def xa_marked(self, mark: int) -> bool:
        return bool(self.flags & ((1 << self.lay.gfp_bits_shift) << mark))

    def read(self, entry: int, parent: int, offset: int, want_shift: int | None, first: int, holder: str) -> _Node:
        lay = self.lay
        addr = entry - 2  # xa_to_node()
        shift_hint = want_shift if want_shift is not None else 0
        if addr in self.seen:
            raise self.error(addr, first, shift_hint, f"reached a second time (from {holder}): a cycle")
        self.seen.add(addr)
        try:
            buf = self.prog.read(addr, lay.node_size)
        except FaultError as e:
            raise self.error(addr, first, shift_hint, f"cannot be read (pointer in {holder}): {e}") from None
        shift, n_off, count = buf[lay.shift], buf[lay.offset], buf[lay.count]
        n_parent, n_array = struct.unpack_from("<QQ", buf, lay.parent)
        if shift % XA_CHUNK_SHIFT or shift >= BITS_PER_LONG:
            raise self.error(
                addr, first, shift_hint, f"shift {shift} is not a multiple of {XA_CHUNK_SHIFT} below {BITS_PER_LONG}"
            )
        if want_shift is not None and shift != want_shift:
            raise self.error(addr, first, shift, f"shift {shift}, but its parent's is {want_shift + XA_CHUNK_SHIFT}")
        if n_array != self.xa_addr:
            what = "a freed node (array = XA_RCU_FREE)" if n_array == XA_RCU_FREE else f"array {n_array:#x}"
            raise self.error(addr, first, shift, f"{what}, not this xarray")
        if n_parent != parent:
            raise self.error(addr, first, shift, f"parent {n_parent:#x}, but it hangs from {parent:#x} ({holder})")
        if parent and n_off != offset:
            raise self.error(addr, first, shift, f"offset {n_off}, but it is in slot {offset} of its parent")
        slots = struct.unpack_from(f"<{XA_CHUNK_SIZE}Q", buf, lay.slots)
        marks = struct.unpack_from(f"<{XA_MAX_MARKS}Q", buf, lay.marks)
        present = sum(1 for s in slots if s)
        if present != count:
            raise self.error(addr, first, shift, f"count {count}, but {present} slots are in use")
        for i, s in enumerate(slots):
            if _is_sibling(s):
                to = s >> 2
                if to >= i or _is_sibling(slots[to]) or not slots[to]:
                    raise self.error(
                        addr, first, shift, f"slot {i} is a sibling of slot {to}, which is not an entry before it"
                    )
        return _Node(addr, shift, slots, marks)

    def top(self) -> tuple[int, int] | None:
        """(encoded head node, its shift) or None when the head is not a node."""
        if _is_node(self.head):
            return self.head, -1
        return None

    def walk(
        self,
        entry: int,
        parent: int,
        offset: int,
        want_shift: int | None,
        first: int,
        holder: str,
        out: list[tuple[int, int, int]] | None,
        check_marks: bool,
    ) -> list[bool]:
        """Depth-first: append (index, entry, marks bitmask) of every entry; return which
        marks some entry below has."""
        node = self.read(entry, parent, offset, want_shift, first, holder)
        below = [False] * XA_MAX_MARKS
        if check_marks:
            used = sum(1 << i for i, s in enumerate(node.slots) if s and not _is_sibling(s))
            for k in range(XA_MAX_MARKS):
                stray = node.marks[k] & ~used
                if stray and not (k == 0 and self.flags & 4):
                    i = (stray & -stray).bit_length() - 1
                    raise self.error(
                        node.addr, first, node.shift, f"mark {k} is set on slot {i}, which holds no entry of its own"
                    )
        for i, s in enumerate(node.slots):
            if not s or _is_sibling(s):
                continue
            idx = first + (i << node.shift)
            m = [bool(node.marks[k] >> i & 1) for k in range(XA_MAX_MARKS)]
            if _is_node(s):
                if node.shift == 0:
                    raise self.error(node.addr, first, 0, f"slot {i} holds a node pointer {s:#x} at shift 0")
                sub = self.walk(
                    s, node.addr, i, node.shift - XA_CHUNK_SHIFT, idx, f"slot {i} of {node.addr:#x}", out, check_marks
                )
                if check_marks:
                    for k in range(XA_MAX_MARKS):
                        if m[k] != sub[k] and not (k == 0 and self.flags & 4):  # XA_FLAGS_TRACK_FREE
                            raise self.error(
                                node.addr,
                                first,
                                node.shift,
                                f"mark {k} of slot {i} is {int(m[k])}, the entries below say {int(sub[k])}",
                            )
                m = sub
            elif out is not None:
                out.append((idx, s, sum(1 << k for k in range(XA_MAX_MARKS) if m[k])))
            for k in range(XA_MAX_MARKS):
                below[k] = below[k] or m[k]
        return below


def _entries(xa: Object, check_marks: bool = True) -> tuple[_Walker, list[tuple[int, int, int]]]:
    w = _Walker(xa)
    out: list[tuple[int, int, int]] = []
    if _is_node(w.head):
        below = w.walk(w.head, 0, 0, None, 0, "xa_head", out, check_marks)
        if check_marks:
            for k in range(XA_MAX_MARKS):
                if k == 0 and w.flags & 4:
                    continue
                if below[k] != w.xa_marked(k):
                    raise XArrayError(
                        f"{w.name}: xa_flags says mark {k} is {'set' if w.xa_marked(k) else 'clear'}"
                        f", the entries say {'set' if below[k] else 'clear'}"
                    )
    elif w.head:
        out.append((0, w.head, sum(1 << k for k in range(XA_MAX_MARKS) if w.xa_marked(k))))
    return w, out


def _yieldable(e: int, advanced: bool) -> bool:
    if e & 3 == 2:  # internal: zero and retry entries are seen by the advanced API only
        return advanced
    return True


def xa_for_each(xa: Object, *, advanced: bool = False) -> Iterator[tuple[int, Object]]:
    """Every entry of an XArray in index order (a multi-index entry once, at its first index);
    the whole array is checked as it is read.

    :param xa: ``struct xarray *``
    :param advanced: also return zero (and retry) entries, as drgn's does for zero entries.
    :return: Iterator of (index, ``void *``) tuples.
    """
    w, entries = _entries(xa)
    for idx, e, _m in entries:
        if _yieldable(e, advanced):
            yield idx, Object(w.prog, w.void_p, e)


def xa_for_each_marked(xa: Object, mark: int) -> Iterator[tuple[int, Object]]:
    """The entries with ``mark`` set (XA_MARK_0/1/2; the page cache's dirty/writeback/towrite).

    :param xa: ``struct xarray *``
    :return: Iterator of (index, ``void *``) tuples.
    """
    w, entries = _entries(xa)
    for idx, e, m in entries:
        if m >> mark & 1 and _yieldable(e, False):
            yield idx, Object(w.prog, w.void_p, e)


def xa_load(xa: Object, index: int, *, advanced: bool = False) -> Object:
    """The entry at ``index`` (one path down, each node on it checked); a multi-index entry is
    found from any of its indices.

    :param xa: ``struct xarray *``
    :return: ``void *`` (NULL if none)
    """
    index = int(index)
    w = _Walker(xa)
    e = w.head
    if not _is_node(e):
        v = e if index == 0 else 0
    else:
        parent, offset, want, first, holder = 0, 0, None, 0, "xa_head"
        v = 0
        while True:
            node = w.read(e, parent, offset, want, first, holder)
            if index >> node.shift > XA_CHUNK_MASK and parent == 0:
                break  # beyond what the array can hold
            off = (index >> node.shift) & XA_CHUNK_MASK
            s = node.slots[off]
            if _is_sibling(s):
                off = s >> 2
                s = node.slots[off]
            if not _is_node(s):
                v = s
                break
            if node.shift == 0:
                raise w.error(node.addr, first, 0, f"slot {off} holds a node pointer {s:#x} at shift 0")
            parent, offset, want = node.addr, off, node.shift - XA_CHUNK_SHIFT
            first += off << node.shift
            holder = f"slot {off} of {node.addr:#x}"
            e = s
    if v & 3 == 2 and not advanced:
        v = 0
    return Object(w.prog, w.void_p, v)


def xa_get_mark(xa: Object, index: int, mark: int) -> bool:
    """Whether the entry at ``index`` has ``mark`` (the kernel's xa_get_mark(): the bit on every
    level of the path, ``xa_flags`` at the top).

    :param xa: ``struct xarray *``
    """
    index = int(index)
    w = _Walker(xa)
    if not w.xa_marked(mark):
        return False
    e = w.head
    parent, offset, want, first, holder = 0, 0, None, 0, "xa_head"
    while _is_node(e):
        node = w.read(e, parent, offset, want, first, holder)
        if index >> node.shift > XA_CHUNK_MASK and parent == 0:
            return False
        off = (index >> node.shift) & XA_CHUNK_MASK
        s = node.slots[off]
        if _is_sibling(s):
            off = s >> 2
            s = node.slots[off]
        if not node.marks[mark] >> off & 1:
            return False
        parent, offset, want = node.addr, off, node.shift - XA_CHUNK_SHIFT
        first += off << node.shift
        holder = f"slot {off} of {node.addr:#x}"
        e = s
    return bool(e) if parent else (index == 0 and bool(e))


def xa_is_value(entry: Object) -> bool:
    """Whether an entry is a value entry (an integer, like a page-cache shadow entry).

    :param entry: ``void *``
    """
    return bool(int(entry) & 1)


def xa_to_value(entry: Object) -> Object:
    """The integer in a value entry.

    :param entry: ``void *``
    :return: ``unsigned long``
    """
    return Object(entry.prog_, "unsigned long", int(cast("unsigned long", entry)) >> 1)


def xa_is_zero(entry: Object) -> bool:
    """Whether an entry is the zero entry (reserved, reads as NULL).

    :param entry: ``void *``
    """
    return int(entry) == XA_ZERO_ENTRY


def xa_is_internal(entry: Object) -> bool:
    """Whether an entry is internal to the XArray (a node, sibling, retry, zero or error).

    :param entry: ``void *``
    """
    return int(entry) & 3 == 2


def xa_is_sibling(entry: Object) -> bool:
    """Whether an entry is a sibling entry of a multi-index entry.

    :param entry: ``void *``
    """
    return _is_sibling(int(entry))
