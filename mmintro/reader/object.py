"""drgn-like objects over a snapshot: typed values and references to memory.

An :class:`Object` is either a *value* (an int, or the bytes of a struct/array already read)
or a *reference* (a type at an address, read lazily through ``Program.read`` so that an
unmapped pointer raises :class:`~mmintro.reader.errors.FaultError` when touched).  The API
follows drgn's: ``member_``/attribute access, indexing, ``value_()``, ``read_()``,
``address_of_()``, ``string_()``, pointer arithmetic, and the free functions :func:`cast`,
:func:`reinterpret`, :func:`container_of` and :func:`NULL`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mmintro.reader.errors import FaultError
from mmintro.types.typedata import Member, Type, TypeError_

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

    __slots__ = ("prog_", "type_", "address_", "bit_offset_", "bit_field_size_", "_value", "_r", "_zla")

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
        # a 0-element array where C allows only a zero-length array, not a flexible one (a
        # member other than the last, a union member, an array element): named [0], not []
        self._zla = False
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
            return base._sub(bit, bsize, mt)
        bit, bsize, mt = r.member(name)
        out = base._sub(bit, bsize, mt)
        out._zla = _zero_length_member(r, name)
        return out

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
            out = self._sub(8 * i * r.target.size, 0, r.target)
            out._zla = True
            return out
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

    # -- display (drgn's repr and libdrgn/language_c.c's c_format_object) ------------------------
    def __repr__(self) -> str:
        """drgn's ``repr``: ``Object(prog, 'unsigned long', address=0xffffffff83b342b0)``."""
        s = f"Object(prog, {type_name(self.type_, self._zla)!r}"
        if self.address_ is not None:
            s += f", address={self.address_:#x}"
            if self.bit_offset_:
                s += f", bit_offset={self.bit_offset_}"
        elif self._r.kind == "ptr":
            s += f", value={self._value:#x}"
        else:
            s += f", value={self.value_()!r}"
        if self.bit_field_size_:
            s += f", bit_field_size={self.bit_field_size_}"
        return s + ")"

    def __str__(self) -> str:
        return self.format_()

    def format_(
        self,
        *,
        dereference: bool | None = None,
        symbolize: bool | None = None,
        string: bool | None = None,
        char: bool | None = None,
        type_name: bool | None = None,
        member_type_names: bool | None = None,
        element_type_names: bool | None = None,
        members_same_line: bool | None = None,
        elements_same_line: bool | None = None,
        member_names: bool | None = None,
        element_indices: bool | None = None,
        implicit_members: bool | None = None,
        implicit_elements: bool | None = None,
        columns: int | None = None,
        integer_base: int | None = None,
    ) -> str:
        """The object as C, exactly as drgn's ``Object.format_()`` (and ``str()``) writes it:
        ``(unsigned long)258016``, ``*(struct page *)0xffffea0000000040 = { ... }``,
        ``(int [4]){ 1, 2, 3, 4 }``, ``(char [16])"swapper/0"``.  The flags and their
        defaults are drgn's; ``columns`` wraps lines like drgn (default: no limit)."""
        given = locals()
        flags = _PRETTY
        for name, bit in _FLAG_BITS.items():
            v = given[name]
            if v is not None:
                flags = flags | bit if v else flags & ~bit
        base = 10 if integer_base is None else integer_base
        if base not in (8, 10, 16):
            raise ValueError("invalid integer base")
        cols = _SIZE_MAX if columns is None else int(columns)
        if cols < 0:
            raise ValueError("columns must be non-negative")
        return _Formatter(base).object(self, 0, cols, max(cols, 1), flags)


# -- formatting, ported from drgn's libdrgn/language_c.c ----------------------------------------

_SIZE_MAX = (1 << 64) - 1

# drgn's enum drgn_format_object_flags (libdrgn/drgn.h), by the names of format_()'s keywords
_FLAG_BITS = {
    "dereference": 1 << 0,
    "symbolize": 1 << 1,
    "string": 1 << 2,
    "char": 1 << 3,
    "type_name": 1 << 4,
    "member_type_names": 1 << 5,
    "element_type_names": 1 << 6,
    "members_same_line": 1 << 7,
    "elements_same_line": 1 << 8,
    "member_names": 1 << 9,
    "element_indices": 1 << 10,
    "implicit_members": 1 << 11,
    "implicit_elements": 1 << 12,
}
_F = _FLAG_BITS
_PRETTY = (
    _F["dereference"]
    | _F["symbolize"]
    | _F["string"]
    | _F["type_name"]
    | _F["member_type_names"]
    | _F["elements_same_line"]
    | _F["member_names"]
    | _F["implicit_members"]
)
_PASSTHROUGH = sum(_FLAG_BITS.values()) & ~(_F["dereference"] | _F["type_name"])


def _member_flags(flags: int) -> int:
    return (flags & _PASSTHROUGH) | (flags & _F["member_type_names"]) >> 1


def _element_flags(flags: int) -> int:
    return (flags & _PASSTHROUGH) | (flags & _F["element_type_names"]) >> 2


class _LineWrap(Exception):
    """drgn's ``drgn_line_wrap``: the text does not fit in the columns left."""


# C's spellings of the primitive types, each mapped to drgn's preferred one (libdrgn/type.c
# drgn_primitive_type_spellings): DWARF's "long unsigned int" is drgn's "unsigned long".
def _primitive_spellings() -> dict[tuple[str, ...], tuple[str, bool | None]]:
    out: dict[tuple[str, ...], tuple[str, bool | None]] = {}
    for canon, signed, int_optional in (
        ("short", True, True),
        ("unsigned short", False, True),
        ("int", True, False),
        ("unsigned int", False, False),
        ("long", True, True),
        ("unsigned long", False, True),
        ("long long", True, True),
        ("unsigned long long", False, True),
    ):
        words = canon.split()
        variants = [words]
        if signed:
            variants.append([*words, "signed"])
        if int_optional:
            variants += [[*v, "int"] for v in variants]
        for v in variants:
            out[tuple(sorted(v))] = (canon, signed)
    out[("signed",)] = ("int", True)
    out[("unsigned",)] = ("unsigned int", False)
    for canon, signed in (("char", None), ("signed char", True), ("unsigned char", False)):
        out[tuple(sorted(canon.split()))] = (canon, signed)
    out[("char", "signed")] = ("signed char", True)
    for canon in ("_Bool", "float", "double", "long double"):
        out[tuple(sorted(canon.split()))] = (canon, None)
    return out


_PRIMITIVES = _primitive_spellings()
_QUALIFIERS = ("const", "volatile", "restrict")


def _base_name(t: Type) -> str:
    """The name drgn gives a base type: its preferred spelling of a C primitive."""
    if t.kind == "void" or not t.name:
        return "void"
    if t.kind not in ("int", "float"):
        return t.name
    hit = _PRIMITIVES.get(tuple(sorted(t.name.split())))
    if hit is None:
        return t.name
    canon, signed = hit
    if t.kind == "int" and signed is not None and not _is_bool(t) and signed != _int_info(t)[1]:
        return t.name
    return canon


def _declare(t: Type, name: str | None) -> str:
    """drgn's c_declare_variable: ``t`` declared with declarator ``name`` (None: no name)."""
    quals: set[str] = set()
    while t.kind in _QUALIFIERS or t.kind == "typedef_transparent":
        if t.kind in _QUALIFIERS:
            quals.add(t.kind)
        assert t.target is not None
        t = t.target
    q = " ".join(k for k in _QUALIFIERS if k in quals)
    k = t.kind
    if k == "ptr":
        assert t.target is not None
        ref = t.target.unqualified()
        paren = ref.kind in ("array", "func_proto")
        s = "(*" if paren else "*"
        if q:
            s += " " + q + (" " if name else "")
        s += name or ""
        return _declare(t.target, s + (")" if paren else ""))
    if k == "array":
        assert t.target is not None
        # BTF (and so the type data) writes a flexible array member ``x[]`` as 0 elements; the
        # DWARF made from it has no bound, and drgn calls it incomplete: ``[]``
        inner = t.target.unqualified()
        if inner.kind == "array" and not inner.nelems:  # an array's element cannot be flexible
            return _declare(inner.target, f"{name or ''}[{t.nelems or ''}][0]")  # type: ignore[arg-type]
        return _declare(t.target, f"{name or ''}[{t.nelems or ''}]")
    if k == "func_proto":
        params = []
        variadic = False
        for pname, ptype in t.params:
            if ptype is None or ptype.kind == "void" and not pname:
                variadic = True  # BTF marks "..." by a last parameter of type void
                continue
            params.append(_declare(ptype, pname or None))
        if params and variadic:
            params.append("...")
        elif not params and not variadic:
            params.append("void")
        s = f"{name or ''}({', '.join(params)})"
        return _declare(t.target, s) if t.target is not None else f"void {s}"
    if k in ("struct", "union", "enum", "fwd"):
        kw = "struct" if k == "fwd" else k  # a declaration only: the DWARF made from BTF says struct
        base = f"{kw} {t.name}" if t.name else f"{kw} <anonymous>"
    else:
        base = _base_name(t)
    if q:
        base = f"{q} {base}"
    return base if name is None else f"{base} {name}"


def type_name(t: Type, zero_length: bool = False) -> str:
    """A type's name as drgn writes it (``drgn.Type.type_name()``): ``unsigned long``,
    ``struct page *``, ``char [16]``, ``void (*)(struct callback_head *)``.  A 0-element
    array is ``[]`` (flexible), or ``[0]`` with ``zero_length`` (see :func:`_zero_length_member`)."""
    if t.unqualified().kind == "func_proto":
        return _declare(t, "")
    if zero_length and t.unqualified().kind == "array" and not t.unqualified().nelems:
        u = t.unqualified()
        assert u.target is not None
        return _declare(u.target, "[0]")
    return _declare(t, None)


def _can_be_flexible(parent: Type, m: Member) -> bool:
    """drgn (libdrgn/dwarf_info.c) reads a bound-less array as incomplete (``[]``) except
    where GCC allows only a zero-length array: a member of a union, of a struct with one
    member, or of a struct but not its last member."""
    return parent.kind == "struct" and len(parent.members) > 1 and m is parent.members[-1]


def _zero_length_member(r: Type, name: str) -> bool:
    """Whether member ``name`` of ``r`` (looked for in anonymous members too) is a
    zero-length array rather than a flexible one."""
    for m in r.members:
        if m.name == name:
            return not _can_be_flexible(r, m)
        if not m.name:
            mt = m.type.resolved()
            if mt.kind in ("struct", "union") and name in _member_names(mt):
                return _zero_length_member(mt, name)
    return False


def _is_character(t: Type) -> bool:
    """drgn's is_character_type: char, signed char or unsigned char itself (not a typedef)."""
    t = t.unqualified()
    return t.kind == "int" and _base_name(t) in ("char", "signed char", "unsigned char")


def _c_char(c: int, single: bool, double: bool) -> str:
    """drgn's c_format_character."""
    esc = {0: "\\0", 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 92: "\\\\"}
    if c in esc:
        return esc[c]
    if c == 34 and double:
        return '\\"'
    if c == 39 and single:
        return "\\'"
    if c <= 0x1F or c >= 0x7F:
        return f"\\x{c:02x}"
    return chr(c)


def _c_string(data: bytes) -> str:
    n = data.find(b"\0")
    if n >= 0:
        data = data[:n]
    return '"' + "".join(_c_char(c, False, True) for c in data) + '"'


def _is_zero(o: Object) -> bool:
    """drgn_object_is_zero: every scalar in it is 0 (padding is not looked at)."""
    r = o._r
    if r.kind in _SCALAR:
        return o.value_() == 0
    if r.kind == "fwd":
        return True  # drgn_object_is_zero_or_incomplete
    if r.kind in ("struct", "union", "array"):
        if r.kind != "array" and r.is_decl:
            return True
        o = o.read_()
        if not any(o._bytes()):
            return True
        if r.kind == "array":
            return all(_is_zero(e) for e in o)
        return all(_is_zero(o._sub(m.bit_offset, m.bit_size, m.type)) for m in r.members)
    return False


class _Formatter:
    """drgn's c_format_object_impl and the functions it calls, one to one; a text that does
    not fit raises :class:`_LineWrap` where drgn returns ``drgn_line_wrap``."""

    def __init__(self, integer_base: int) -> None:
        self.base = integer_base
        self.depth = 0

    def object(self, o: Object, indent: int, one: int, multi: int, flags: int) -> str:
        self.depth += 1
        try:
            if self.depth > 1000:
                raise RecursionError("maximum object depth exceeded")
            return self._object(o, indent, one, multi, flags)
        finally:
            self.depth -= 1

    def _object(self, o: Object, indent: int, one: int, multi: int, flags: int) -> str:
        r = o._r
        if r.kind == "ptr":
            return self.pointer(o, indent, one, multi, flags)
        head = ""
        if flags & _F["type_name"]:
            head = f"({type_name(o.type_, o._zla)})"
            one = max(one - len(head), 0)
        k = r.kind
        if k == "void":
            raise TypeError("cannot format void object")
        if k == "int":
            return head + self.integer(o, flags)
        if k == "float":
            v = float(o.value_())
            if math.isinf(v) or (v == v and v == int(v)):  # C's rint(v) == v
                return f"{head}{v:.1f}"
            return f"{head}{v:.17g}"
        if k in ("struct", "union"):
            return head + self.compound(o, indent, one, multi, flags)
        if k == "enum":
            v = o.value_()
            for name, val in r.values:
                if val == v:
                    return head + name
            return f"{head}{v}"
        if k == "array":
            return head + self.array(o, indent, one, multi, flags)
        if k == "func_proto":
            return f"{head}{o.address_:#x}"
        if k == "fwd":
            raise TypeError("cannot format incomplete struct object")
        raise TypeError(f"cannot format {type_name(o.type_)} object")

    def integer(self, o: Object, flags: int) -> str:
        v = int(o.value_())
        if flags & _F["char"] and _is_character(o.type_):
            return "'" + _c_char(v & 0xFF, True, False) + "'"
        if o._r.size > 8:  # drgn's *_BIG encodings: hexadecimal, whatever the base
            return f"0x{v & ((1 << 8 * o._r.size) - 1):x}"
        if self.base == 16:
            return f"-0x{-v:x}" if v < 0 else f"0x{v:x}"
        if self.base == 8:
            return (f"-0{-v:o}" if v < 0 else f"0{v:o}") if v else "0"
        return str(v)

    def pointer(self, o: Object, indent: int, one: int, multi: int, flags: int) -> str:
        r = o._r
        assert r.target is not None
        deref = bool(flags & _F["dereference"])
        c_string = bool(flags & _F["string"]) and _is_character(r.target)
        typ = f"({type_name(o.type_)})" if flags & _F["type_name"] else ""
        v = o.value_()
        sym = o.prog_.symbols.symbolize(v) if flags & _F["symbolize"] else None
        value = (f"{sym.name}+{v - sym.address:#x} = " if sym is not None else "") + f"0x{v:x}"
        if not deref and not c_string:
            return typ + value
        paren = sym is not None and deref and not c_string
        head = ("*" if deref and not c_string else "") + typ + ("(" if paren else "") + value
        head += (")" if paren else "") + " = "
        try:
            if c_string:
                return head + _c_string(o.string_())
            target = r.target.resolved()
            if target.kind in ("void", "fwd") or (target.kind in ("struct", "union") and target.is_decl):
                # drgn cannot make an object of an incomplete type: the pointer is not dereferenced
                return typ + value
            body = self.object(o.deref_(), indent, max(one - len(head), 0), multi, flags & _PASSTHROUGH)
        except FaultError:
            return typ + value
        return head + body

    def compound(self, o: Object, indent: int, one: int, multi: int, flags: int) -> str:
        r = o._r
        if r.is_decl:
            raise TypeError(f"cannot format incomplete {r.kind} object")
        o = o.read_()
        names = bool(flags & _F["member_names"])
        skip_zero = flags & (_F["member_names"] | _F["implicit_members"]) == _F["member_names"]

        def flat(t: Type, base: int) -> Iterator[tuple[str, Object]]:
            for m in t.members:
                mt = m.type.resolved()
                if m.name or not names or mt.kind not in ("struct", "union"):
                    sub = o._sub(base + m.bit_offset, m.bit_size, m.type)
                    sub._zla = not _can_be_flexible(t, m)
                    yield (f".{m.name} = " if m.name and names else ""), sub
                else:
                    yield from flat(mt, base + m.bit_offset)

        items = list(flat(r, 0))
        if skip_zero:
            items = [(d, s) for d, s in items if not _is_zero(s)]
        elif not flags & (_F["member_names"] | _F["implicit_members"]):
            while items and _is_zero(items[-1][1]):
                items.pop()
        return self.initializer(items, indent, one, multi, _member_flags(flags), bool(flags & _F["members_same_line"]))

    def array(self, o: Object, indent: int, one: int, multi: int, flags: int) -> str:
        r = o._r
        assert r.target is not None
        n = r.nelems
        if flags & _F["string"] and n and _is_character(r.target):
            return _c_string(o._bytes())
        o = o.read_()
        items = [(f"[{i}] = " if flags & _F["element_indices"] else "", o[i]) for i in range(n)]
        if flags & (_F["element_indices"] | _F["implicit_elements"]) == _F["element_indices"]:
            items = [(d, e) for d, e in items if not _is_zero(e)]
        elif not flags & (_F["element_indices"] | _F["implicit_elements"]):
            while items and _is_zero(items[-1][1]):
                items.pop()
        return self.initializer(
            items, indent, one, multi, _element_flags(flags), bool(flags & _F["elements_same_line"])
        )

    def initializer(
        self, items: list[tuple[str, Object]], indent: int, one: int, multi: int, flags: int, same_line: bool
    ) -> str:
        """drgn's c_format_initializer: ``{ a, b }`` on one line if it fits, else one per line."""
        out = "{"
        remaining = max(one - 1, 0)
        wrapped = False
        for desig, obj in items:
            if not same_line:
                wrapped = True
                break
            if out == "{":
                if remaining < 3:
                    wrapped = True
                    break
                out += " "
                remaining -= 1
            else:
                if remaining < 4:
                    wrapped = True
                    break
                out += ", "
                remaining -= 2
            if desig:
                out += desig
                remaining -= len(desig)
                if remaining < 2:
                    wrapped = True
                    break
            try:
                text = self.object(obj, indent + 1, remaining - 2, 0, flags)
            except _LineWrap:
                wrapped = True
                break
            out += text
            remaining -= len(text)
            if remaining < 0:
                wrapped = True
                break
        if not wrapped:
            if out == "{":
                return "{}"
            if remaining >= 2:
                return out + " }"
        if multi == 0:
            raise _LineWrap
        parts = ["{"]
        start = max(multi - 8 * (indent + 1), 0)
        remaining = 0
        newline = "\n" + "\t" * (indent + 1)
        for desig, obj in items:
            line = max(start - len(desig), 0)
            if line > 1:
                try:
                    text = desig + self.object(obj, 0, line - 1, 0, flags)
                except _LineWrap:
                    pass
                else:
                    if same_line and len(text) + 2 <= remaining:
                        parts.append(f" {text},")  # it fits on the previous line
                        remaining -= len(text) + 2
                        continue
                    if len(text) < start:
                        parts.append(f"{newline}{text},")
                        remaining = start - len(text) - 1
                        continue
            parts.append(f"{newline}{desig}{self.object(obj, indent + 1, 0, multi, flags)},")
            remaining = 0
        parts.append("\n" + "\t" * indent + "}")
        return "".join(parts)


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
