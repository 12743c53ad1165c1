"""Typed writes into simulated memory: the simulator's only way of laying out structures.

``KMem.set(addr, "zone", "spanned_pages", n)`` resolves the member through the pinned type
data (offset, size, signedness, bitfield position) and stores the value little-endian at the
physical address behind the kernel virtual address.  No offset is ever written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from mmintro.kernel.physmem import PhysMem
from mmintro.types import Type, TypeDB


class Field:
    __slots__ = ("bit_shift", "bit_size", "offset", "signed", "size", "type")

    def __init__(self, offset: int, size: int, signed: bool, bit_shift: int, bit_size: int, type_: Type) -> None:
        self.offset = offset
        self.size = size
        self.signed = signed
        self.bit_shift = bit_shift
        self.bit_size = bit_size
        self.type = type_


def _scalar(t: Type) -> tuple[int, bool]:
    r = t.resolved()
    if r.kind == "ptr":
        return 8, False
    if r.kind == "int":
        return r.size, bool(r.encoding & 1)
    if r.kind == "enum":
        return r.size, r.signed
    if r.kind in ("struct", "union") and len(r.members) == 1 and r.members[0].bit_offset == 0:
        return _scalar(r.members[0].type)  # atomic_t, atomic_long_t, memdesc_flags_t ...
    return r.size, False


class KMem:
    """Kernel-virtual typed access to a PhysMem."""

    def __init__(self, types: TypeDB, mem: PhysMem, pa: Callable[[int], int]) -> None:
        self.T = types
        self.mem = mem
        self.pa = pa
        self._field = lru_cache(maxsize=None)(self._field_uncached)

    def _field_uncached(self, struct: str, path: str) -> Field:
        st = self.T.struct(struct)
        bit, bsize, t = st.walk(path)
        size, signed = _scalar(t)
        if bsize:
            unit = t.resolved().size
            base = (bit // (8 * unit)) * unit
            return Field(base, unit, signed, bit - base * 8, bsize, t)
        return Field(bit // 8, size, signed, 0, 0, t)

    def field(self, struct: str, path: str) -> Field:
        return self._field(struct, path)

    def offsetof(self, struct: str, path: str) -> int:
        return self._field(struct, path).offset

    def addr(self, base: int, struct: str, path: str) -> int:
        """The kernel virtual address of ``((struct X *)base)->path``."""
        return base + self.T.struct(struct).offsetof(path)

    def set(self, vaddr: int, struct: str, path: str, value: int) -> None:
        f = self._field(struct, path)
        p = self.pa(vaddr + f.offset)
        if f.bit_size:
            old = int.from_bytes(self.mem.read(p, f.size), "little")
            mask = ((1 << f.bit_size) - 1) << f.bit_shift
            value = (old & ~mask) | ((value << f.bit_shift) & mask)
        self.mem.write(p, (value & ((1 << 8 * f.size) - 1)).to_bytes(f.size, "little"))

    def get(self, vaddr: int, struct: str, path: str) -> int:
        f = self._field(struct, path)
        raw = int.from_bytes(self.mem.read(self.pa(vaddr + f.offset), f.size), "little")
        if f.bit_size:
            raw = (raw >> f.bit_shift) & ((1 << f.bit_size) - 1)
        elif f.signed and raw >> (8 * f.size - 1):
            raw -= 1 << (8 * f.size)
        return raw

    def set_many(self, vaddr: int, struct: str, values: dict[str, int]) -> None:
        for path, v in values.items():
            self.set(vaddr, struct, path, v)

    def write_bytes(self, vaddr: int, data: bytes) -> None:
        self.mem.write(self.pa(vaddr), data)

    def write_u64(self, vaddr: int, value: int) -> None:
        self.mem.write_u64(self.pa(vaddr), value)

    def init_list_head(self, vaddr: int) -> None:
        """INIT_LIST_HEAD: next = prev = the list_head itself."""
        self.set(vaddr, "list_head", "next", vaddr)
        self.set(vaddr, "list_head", "prev", vaddr)

    # include/linux/list.h on simulated memory (list_del poisons as the kernel does:
    # include/linux/poison.h LIST_POISON1/2 with CONFIG_ILLEGAL_POINTER_VALUE 0xdead000000000000)
    LIST_POISON1 = 0xDEAD000000000100
    LIST_POISON2 = 0xDEAD000000000122

    def list_add(self, new: int, head: int) -> None:
        """list_add(): ``new`` right after ``head``."""
        nxt = self.get(head, "list_head", "next")
        self.set(nxt, "list_head", "prev", new)
        self.set(new, "list_head", "next", nxt)
        self.set(new, "list_head", "prev", head)
        self.set(head, "list_head", "next", new)

    def list_add_tail(self, new: int, head: int) -> None:
        """list_add_tail(): ``new`` right before ``head`` (at the end of the list)."""
        prev = self.get(head, "list_head", "prev")
        self.set(new, "list_head", "next", head)
        self.set(new, "list_head", "prev", prev)
        self.set(prev, "list_head", "next", new)
        self.set(head, "list_head", "prev", new)

    def _list_unlink(self, entry: int) -> None:
        """__list_del_entry(): the neighbours point at each other."""
        prev = self.get(entry, "list_head", "prev")
        nxt = self.get(entry, "list_head", "next")
        self.set(nxt, "list_head", "prev", prev)
        self.set(prev, "list_head", "next", nxt)

    def list_del(self, entry: int) -> None:
        """list_del(): unlinked, both pointers poisoned."""
        self._list_unlink(entry)
        self.set(entry, "list_head", "next", self.LIST_POISON1)
        self.set(entry, "list_head", "prev", self.LIST_POISON2)

    def list_del_rcu(self, entry: int) -> None:
        """list_del_rcu(): unlinked, ``next`` kept for RCU readers, ``prev`` poisoned."""
        self._list_unlink(entry)
        self.set(entry, "list_head", "prev", self.LIST_POISON2)

    def list_del_init(self, entry: int) -> None:
        """list_del_init(): unlinked and pointing at itself."""
        self._list_unlink(entry)
        self.init_list_head(entry)

    def list_empty(self, head: int) -> bool:
        return self.get(head, "list_head", "next") == head

    def write_list(self, head: int, entries: list[int]) -> None:
        """Link the list_heads at ``entries`` into a circular list headed at ``head``."""
        nodes = [head] + list(entries)
        n = len(nodes)
        for i, a in enumerate(nodes):
            self.set(a, "list_head", "next", nodes[(i + 1) % n])
            self.set(a, "list_head", "prev", nodes[(i - 1) % n])
