"""drgn-like objects over a snapshot: typed values and references to memory.

An :class:`Object` is either a *value* (an int, or the bytes of a struct/array already read)
or a *reference* (a type at an address, read lazily through ``Program.read`` so that an
unmapped pointer raises :class:`~mmintro.reader.errors.FaultError` when touched).  The API
follows drgn's: ``member_``/attribute access, indexing, ``value_()``, ``read_()``,
``address_of_()``, ``string_()``, pointer arithmetic, and the free functions :func:`cast`,
:func:`reinterpret`, :func:`container_of` and :func:`NULL`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mmintro.types.typedata import Type, TypeError_

if TYPE_CHECKING:
    from mmintro.reader.program import Program

__all__ = ["Object", "cast", "reinterpret", "container_of", "NULL"]

_SCALAR = ("int", "enum", "ptr", "float")
_FLOAT = {4: "<f", 8: "<d"}


def _int_info(r: Type) -> tuple[int, bool]:
    """(size, signed) of an int, enum or pointer type (already resolved)."""
    if r.kind == "ptr":
        return 8, False
    if r.kind == "enum":
        return r.size, r.signed
    return r.size, bool(r.encoding & 1) and not r.encoding & 4


def _is_bool(r: Type) -> bool:
    return r.kind == "int" and bool(r.encoding & 4)


def _truncate(v: int, size: int, signed: bool) -> int:
    bits = 8 * size
    v &= (1 << bits) - 1
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


class Object:
    """A typed value or a typed reference to snapshot memory."""

    __slots__ = ("prog_", "type_", "address_", "bit_offset_", "bit_field_size_", "_value", "_r")

    def __init__(
        self,
        prog: Program,
        type: Type | str,
        value: Any = None,
        *,
        address: int | None = None,
        bit_offset: int = 0,
        bit_field_size: int = 0,
    ) -> None:
        t = prog.type(type) if isinstance(type, str) else type
        self.prog_ = prog
        self.type_ = t
        self._r = t.resolved()
        self.address_ = None if address is None else int(address) & 0xFFFFFFFFFFFFFFFF
        self.bit_offset_ = bit_offset
        self.bit_field_size_ = bit_field_size
        if address is None:
            if value is None:
                raise ValueError("an Object needs a value or an address")
            if isinstance(value, Object):
                value = value.value_() if value._r.kind in _SCALAR else value._bytes()
            if self._r.kind in ("int", "enum", "ptr"):
                size, signed = _int_info(self._r)
                if bit_field_size:
                    value = int(value) & ((1 << bit_field_size) - 1)
                    if signed and value >> (bit_field_size - 1):
                        value -= 1 << bit_field_size
                else:
                    value = _truncate(int(value), size, signed)
            elif self._r.kind == "float":
                value = float(value)
            elif self._r.kind in ("struct", "union", "array"):
                if not isinstance(value, (bytes, bytearray, memoryview)):
                    raise TypeError(f"a {t.spelling()} value must be given as bytes")
                value = bytes(value)
            self._value = value
        else:
            self._value = None

    # -- reading -------------------------------------------------------------------------
    @property
    def absent_(self) -> bool:
        return False

    def _bytes(self) -> bytes:
        if self.address_ is None:
            if isinstance(self._value, bytes):
                return self._value
            size, _ = _int_info(self._r) if self._r.kind != "float" else (self._r.size, False)
            if self._r.kind == "float":
                return struct.pack(_FLOAT[size], self._value)
            return (self._value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        return self.prog_.read(self.address_, self._r.size)

    def value_(self) -> Any:
        """The Python value: int for integers, enums and pointers; bool for ``_Bool``; float;
        a dict of member values for structs and unions; a list for arrays."""
        r = self._r
        if self.address_ is None and r.kind in _SCALAR:
            v = self._value
        elif r.kind in ("int", "enum", "ptr"):
            if self.bit_field_size_:
                nbytes = (self.bit_offset_ + self.bit_field_size_ + 7) // 8
                raw = int.from_bytes(self.prog_.read(self.address_, nbytes), "little")
                v = (raw >> self.bit_offset_) & ((1 << self.bit_field_size_) - 1)
                if _int_info(r)[1] and v >> (self.bit_field_size_ - 1):
                    v -= 1 << self.bit_field_size_
            else:
                size, signed = _int_info(r)
                v = int.from_bytes(self.prog_.read(self.address_, size), "little", signed=signed)
        elif r.kind == "float":
            v = struct.unpack(_FLOAT[r.size], self._bytes())[0]
        elif r.kind in ("struct", "union"):
            out: dict[str, Any] = {}
            obj = self.read_()
            for name in _member_names(r):
                out[name] = obj.member_(name).value_()
            return out
        elif r.kind == "array":
            obj = self.read_()
            return [obj[i].value_() for i in range(r.nelems)]
        else:
            raise TypeError(f"cannot get the value of {self.type_.spelling()}")
        if _is_bool(r):
            return bool(v)
        return v

    def read_(self) -> Object:
        """A value copy of a reference (reads memory once); values return themselves."""
        if self.address_ is None:
            return self
        r = self._r
        if r.kind in _SCALAR:
            return Object(self.prog_, self.type_, self.value_())
        if r.kind in ("struct", "union", "array"):
            return Object(self.prog_, self.type_, self.prog_.read(self.address_, r.size))
        raise TypeError(f"cannot read an object of type {self.type_.spelling()}")

    def to_bytes_(self) -> bytes:
        return self._bytes()

    # -- members and elements --------------------------------------------------------------
    def member_(self, name: str) -> Object:
        """A member by name (or a designator like ``node_zones[1].spanned_pages``).
        Pointers to structs are dereferenced first, like drgn's ``ptr.member``."""
        base = self
        if self._r.kind == "ptr":
            base = self.deref_()
        r = base._r
        if r.kind not in ("struct", "union"):
            raise TypeError(f"{self.type_.spelling()} is not a structure, union, or pointer to one")
        if "." in name or "[" in name:
            bit, bsize, mt = r.walk(name)
        else:
            bit, bsize, mt = r.member(name)
        return base._sub(bit, bsize, mt)

    def _sub(self, bit: int, bsize: int, mt: Type) -> Object:
        if self.address_ is not None:
            return Object(
                self.prog_,
                mt,
                address=self.address_ + bit // 8,
                bit_offset=bit % 8 if bsize else 0,
                bit_field_size=bsize,
            )
        buf: bytes = self._value
        if bsize:
            nbytes = (bit % 8 + bsize + 7) // 8
            raw = int.from_bytes(buf[bit // 8 : bit // 8 + nbytes], "little") >> (bit % 8)
            return Object(self.prog_, mt, raw, bit_field_size=bsize)
        sub = buf[bit // 8 : bit // 8 + mt.size]
        mr = mt.resolved()
        if mr.kind in ("int", "enum", "ptr"):
            size, signed = _int_info(mr)
            return Object(self.prog_, mt, int.from_bytes(sub, "little", signed=signed))
        if mr.kind == "float":
            return Object(self.prog_, mt, struct.unpack(_FLOAT[mr.size], sub)[0])
        return Object(self.prog_, mt, sub)

    def __getattr__(self, name: str) -> Object:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self.member_(name)
        except (TypeError_, TypeError) as e:
            raise AttributeError(str(e)) from None

    def __dir__(self) -> list[str]:
        r = self._r
        if r.kind == "ptr" and r.target is not None:
            r = r.target.resolved()
        extra = _member_names(r) if r.kind in ("struct", "union") else []
        return sorted(set(super().__dir__()) | set(extra))

    def __getitem__(self, i: int) -> Object:
        r = self._r
        i = int(i)
        if r.kind == "array":
            assert r.target is not None
            return self._sub(8 * i * r.target.size, 0, r.target)
        if r.kind == "ptr":
            assert r.target is not None
            return Object(self.prog_, r.target, address=self.value_() + i * _pointee_size(r))
        raise TypeError(f"{self.type_.spelling()} is not an array or pointer")

    def deref_(self) -> Object:
        """``*ptr``: a reference to the pointed-to object."""
        if self._r.kind != "ptr":
            raise TypeError(f"cannot dereference {self.type_.spelling()}")
        assert self._r.target is not None
        return Object(self.prog_, self._r.target, address=self.value_())

    deref = deref_

    def address_of_(self) -> Object:
        """``&obj`` as a pointer object."""
        if self.address_ is None:
            raise ValueError("cannot take the address of a value")
        if self.bit_field_size_:
            raise ValueError("cannot take the address of a bit field")
        return Object(self.prog_, self.prog_.types.pointer_to(self.type_), self.address_)

    def __iter__(self) -> Iterator[Object]:
        if self._r.kind != "array":
            raise TypeError(f"{self.type_.spelling()} is not iterable")
        return (self[i] for i in range(self._r.nelems))

    def __len__(self) -> int:
        if self._r.kind != "array":
            raise TypeError(f"{self.type_.spelling()} has no length")
        return self._r.nelems

    def string_(self, limit: int = 1 << 20) -> bytes:
        """The NUL-terminated string in a char array, or pointed to by a char pointer."""
        r = self._r
        if r.kind == "array":
            buf = self._bytes()
            n = buf.find(b"\0")
            return buf if n < 0 else buf[:n]
        if r.kind == "ptr":
            addr, out = self.value_(), b""
            while len(out) < limit:
                chunk = 4096 - (addr + len(out)) % 4096
                data = self.prog_.read(addr + len(out), chunk)
                n = data.find(b"\0")
                if n >= 0:
                    return out + data[:n]
                out += data
            return out[:limit]
        raise TypeError(f"{self.type_.spelling()} is not a string")

    # -- scalar protocol -------------------------------------------------------------------
    def _scalar(self) -> int | float:
        if self._r.kind not in _SCALAR:
            raise TypeError(f"{self.type_.spelling()} is not a scalar")
        return self.value_()

    def __int__(self) -> int:
        return int(self._scalar())

    def __index__(self) -> int:
        if self._r.kind not in ("int", "enum", "ptr"):
            raise TypeError(f"{self.type_.spelling()} is not an integer")
        return int(self.value_())

    def __float__(self) -> float:
        return float(self._scalar())

    def __bool__(self) -> bool:
        return bool(self._scalar())

    __hash__ = None  # type: ignore[assignment]

    def _cmp_value(self, other: Any) -> Any:
        return other._scalar() if isinstance(other, Object) else other

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return self._scalar() == self._cmp_value(other)

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        return self._scalar() != self._cmp_value(other)

    def __lt__(self, other: Any) -> bool:
        return self._scalar() < self._cmp_value(other)

    def __le__(self, other: Any) -> bool:
        return self._scalar() <= self._cmp_value(other)

    def __gt__(self, other: Any) -> bool:
        return self._scalar() > self._cmp_value(other)

    def __ge__(self, other: Any) -> bool:
        return self._scalar() >= self._cmp_value(other)

    # -- arithmetic --------------------------------------------------------------------------
    def _result_type(self, other: Any) -> Type:
        a = self.type_
        if isinstance(other, Object) and other._r.kind in ("int", "enum"):
            (sa, ua), (sb, ub) = _int_info(self._r), _int_info(other._r)
            if sb > sa or (sb == sa and not ub and ua):
                a = other.type_
        if _int_info(a.resolved())[0] < 4 or _is_bool(a.resolved()):
            a = self.prog_.type("int")
        return a

    def _arith(self, other: Any, op: str, reflected: bool = False) -> Object:
        r = self._r
        ov = other.value_() if isinstance(other, Object) else other
        if not isinstance(ov, int):
            return NotImplemented
        if r.kind == "ptr":
            size = _pointee_size(r)
            if op == "+" and not (isinstance(other, Object) and other._r.kind == "ptr"):
                return Object(self.prog_, self.type_, self.value_() + ov * size)
            if op == "-" and not reflected:
                if isinstance(other, Object) and other._r.kind == "ptr":
                    return Object(self.prog_, "long", (self.value_() - ov) // size)
                return Object(self.prog_, self.type_, self.value_() - ov * size)
            if op in ("&", "|", "^"):  # convenient for tagged pointers
                pass
            else:
                raise TypeError(f"invalid operation {op} on {self.type_.spelling()}")
        if r.kind not in ("int", "enum", "ptr"):
            raise TypeError(f"invalid operation {op} on {self.type_.spelling()}")
        a, b = self.value_(), ov
        if reflected:
            a, b = b, a
        v = {
            "+": lambda: a + b,
            "-": lambda: a - b,
            "*": lambda: a * b,
            "//": lambda: int(a / b),
            "%": lambda: a - int(a / b) * b,
            "&": lambda: a & b,
            "|": lambda: a | b,
            "^": lambda: a ^ b,
            "<<": lambda: a << b,
            ">>": lambda: a >> b,
        }[op]()
        t = self.type_ if r.kind == "ptr" else self._result_type(other)
        return Object(self.prog_, t, v)

    def __add__(self, o: Any) -> Object:
        return self._arith(o, "+")

    def __radd__(self, o: Any) -> Object:
        return self._arith(o, "+", True)

    def __sub__(self, o: Any) -> Object:
        return self._arith(o, "-")

    def __rsub__(self, o: Any) -> Object:
        return self._arith(o, "-", True)

    def __mul__(self, o: Any) -> Object:
        return self._arith(o, "*")

    def __rmul__(self, o: Any) -> Object:
        return self._arith(o, "*", True)

    def __floordiv__(self, o: Any) -> Object:
        return self._arith(o, "//")

    def __truediv__(self, o: Any) -> Object:
        return self._arith(o, "//")

    def __mod__(self, o: Any) -> Object:
        return self._arith(o, "%")

    def __and__(self, o: Any) -> Object:
        return self._arith(o, "&")

    def __rand__(self, o: Any) -> Object:
        return self._arith(o, "&", True)

    def __or__(self, o: Any) -> Object:
        return self._arith(o, "|")

    def __ror__(self, o: Any) -> Object:
        return self._arith(o, "|", True)

    def __xor__(self, o: Any) -> Object:
        return self._arith(o, "^")

    def __lshift__(self, o: Any) -> Object:
        return self._arith(o, "<<")

    def __rshift__(self, o: Any) -> Object:
        return self._arith(o, ">>")

    def __neg__(self) -> Object:
        return Object(self.prog_, self._result_type(None), -self.value_())

    def __invert__(self) -> Object:
        return Object(self.prog_, self._result_type(None), ~self.value_())

    # -- display -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        spelling = self.type_.spelling()
        if self.address_ is not None:
            s = f"Object(prog, {spelling!r}, address={self.address_:#x}"
            if self.bit_field_size_:
                s += f", bit_offset={self.bit_offset_}, bit_field_size={self.bit_field_size_}"
            return s + ")"
        if self._r.kind == "ptr":
            return f"Object(prog, {spelling!r}, value={self._value:#x})"
        if self._r.kind in _SCALAR:
            return f"Object(prog, {spelling!r}, value={self._value!r})"
        return f"Object(prog, {spelling!r}, value={self.value_()!r})"

    def __str__(self) -> str:
        return self.format_()

    def format_(self, indent: int = 0) -> str:
        """C-like text: ``(struct page *)0xffffea0000000040``, ``(struct x){ .a = 1, ... }``."""
        r = self._r
        head = f"({self.type_.spelling()})"
        try:
            if r.kind == "ptr":
                v = self.value_()
                text = f"{head}{v:#x}"
                try:
                    if v and self.prog_.symbols.symbol_at(v).address == v:
                        text += f" = &{self.prog_.symbols.symbol_at(v).name}"
                except LookupError:
                    pass
                return text
            if r.kind in _SCALAR:
                return f"{head}{self.value_()}"
            if r.kind in ("struct", "union"):
                return f"{head}{self._format_body(indent)}"
            if r.kind == "array":
                return f"{head}{self._format_body(indent)}"
        except Exception as e:  # a fault while printing shows where it happened
            return f"{head}<{e}>"
        return head

    def _format_body(self, indent: int) -> str:
        r = self._r
        obj = self.read_()
        pad = "\t" * (indent + 1)
        if r.kind == "array":
            elems = [obj[i] for i in range(min(r.nelems, 64))]
            if elems and elems[0]._r.kind in _SCALAR:
                vals = [_scalar_text(e) for e in elems]
                while vals and vals[-1] in ("0", "0x0"):
                    vals.pop()
                return "{ " + ", ".join(vals) + (", ..." if r.nelems > 64 else "") + " }"
            return "{\n" + "".join(f"{pad}{e._format_body(indent + 1)},\n" for e in elems) + "\t" * indent + "}"
        lines = []
        for m in r.members:
            sub = obj._sub(m.bit_offset, m.bit_size, m.type)
            if sub._r.kind in _SCALAR:
                body = _scalar_text(sub)
            else:
                body = sub._format_body(indent + 1)
            lines.append(f"{pad}.{m.name} = {body}," if m.name else f"{pad}{body},")
        return "{\n" + "\n".join(lines) + "\n" + "\t" * indent + "}"


def _scalar_text(o: Object) -> str:
    v = o.value_()
    if o._r.kind == "ptr":
        return f"({o.type_.spelling()}){v:#x}"
    if o._r.kind == "enum":
        names = [n for n, val in o._r.values if val == v]
        return names[0] if names else str(v)
    return str(v)


def _member_names(r: Type) -> list[str]:
    out: list[str] = []
    for m in r.members:
        if m.name:
            out.append(m.name)
        else:
            out.extend(_member_names(m.type.resolved()))
    return out


def _pointee_size(r: Type) -> int:
    assert r.target is not None
    t = r.target.resolved()
    if t.kind in ("void", "func_proto"):
        return 1  # GNU C: arithmetic on void * steps by bytes
    return t.size


def cast(type: Type | str, obj: Object) -> Object:
    """``(type)obj`` for scalars (integers, enums, pointers)."""
    prog = obj.prog_
    t = prog.type(type) if isinstance(type, str) else type
    if t.resolved().kind not in ("int", "enum", "ptr") or obj._r.kind not in ("int", "enum", "ptr"):
        raise TypeError(f"cannot cast {obj.type_.spelling()} to {t.spelling()}")
    return Object(prog, t, obj.value_())


def reinterpret(type: Type | str, obj: Object) -> Object:
    """The same bytes (or address) read as another type."""
    prog = obj.prog_
    t = prog.type(type) if isinstance(type, str) else type
    if obj.address_ is not None:
        return Object(prog, t, address=obj.address_)
    buf = obj._bytes()
    return Object(
        prog,
        t,
        address=None,
        value=buf[: t.size]
        if t.resolved().kind in ("struct", "union", "array")
        else int.from_bytes(buf[: t.size], "little"),
    )


def container_of(ptr: Object, type: Type | str, member: str) -> Object:
    """The ``type *`` containing the member at ``ptr`` (the kernel's ``container_of``)."""
    prog = ptr.prog_
    t = prog.type(type) if isinstance(type, str) else type
    off = t.resolved().offsetof(member)
    return Object(prog, prog.types.pointer_to(t), int(ptr) - off)


def NULL(prog: Program, type: Type | str) -> Object:
    """A null pointer of the given type."""
    return Object(prog, type, 0)
