"""The pinned Linux 6.18 x86-64 type data, and layout queries over it.

Everything that knows where a field lives asks this module: the simulator when it writes
structures, the reader when it decodes them, the DWARF generator when it describes them.
The data is generated from the reference kernel's BTF by ``tools/gen_typedata.py``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

__all__ = ["Member", "Type", "TypeDB", "TypeError_", "get_types", "C_NAMES"]

DATA_FILE = "linux-6.18-x86_64.json.gz"

# C spellings accepted for BTF's base type names.
C_NAMES = {
    "unsigned long": "long unsigned int",
    "unsigned long int": "long unsigned int",
    "long": "long int",
    "unsigned long long": "long long unsigned int",
    "long long": "long long int",
    "unsigned short": "short unsigned int",
    "short": "short int",
    "unsigned": "unsigned int",
    "u8": "unsigned char",
}


class TypeError_(LookupError):
    """A type or member that the type data does not have."""


@dataclass(eq=False)
class Member:
    name: str
    type: Type
    bit_offset: int
    bit_size: int = 0  # 0: not a bitfield

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


@dataclass(eq=False)
class Type:
    id: int
    kind: str  # int float ptr array struct union enum typedef const volatile restrict func_proto void
    name: str = ""
    size_: int = 0
    target: Type | None = None
    nelems: int = 0
    members: list[Member] = field(default_factory=list)
    values: list[tuple[str, int]] = field(default_factory=list)
    params: list[tuple[str, Type]] = field(default_factory=list)
    signed: bool = False
    encoding: int = 0
    is_decl: bool = False
    _by_name: dict | None = None

    def __repr__(self) -> str:
        return f"<Type {self.spelling()}>"

    # -- naming -----------------------------------------------------------------
    def spelling(self, inner: str = "") -> str:
        """C spelling, e.g. ``struct page *`` or ``unsigned long [512]``."""
        k = self.kind
        if k in ("struct", "union", "enum"):
            base = f"{k} {self.name or '<anonymous>'}"
            return f"{base} {inner}".rstrip()
        if k in ("int", "float", "typedef", "void"):
            return f"{self.name or 'void'} {inner}".rstrip()
        if k == "ptr":
            assert self.target is not None
            t = self.target.unqualified()
            if t.kind in ("array", "func_proto"):
                return self.target.spelling(f"(*{inner})")
            return self.target.spelling(f"*{inner}")
        if k == "array":
            assert self.target is not None
            return self.target.spelling(f"{inner}[{self.nelems}]")
        if k in ("const", "volatile", "restrict"):
            assert self.target is not None
            return f"{k} {self.target.spelling(inner)}"
        if k == "func_proto":
            ret = self.target.spelling() if self.target else "void"
            return f"{ret} {inner}({', '.join(p.spelling() for _, p in self.params)})"
        return f"{k} {self.name}"

    # -- layout -----------------------------------------------------------------
    @property
    def size(self) -> int:
        k = self.kind
        if k in ("typedef", "const", "volatile", "restrict", "typedef_transparent"):
            assert self.target is not None
            return self.target.size
        if k == "ptr":
            return 8
        if k == "array":
            assert self.target is not None
            return self.nelems * self.target.size
        if self.is_decl:
            raise TypeError_(f"{self.spelling()} is an incomplete type")
        return self.size_

    def unqualified(self) -> Type:
        t = self
        while t.kind in ("const", "volatile", "restrict", "typedef_transparent"):
            assert t.target is not None
            t = t.target
        return t

    def resolved(self) -> Type:
        """Strip typedefs and qualifiers."""
        t = self
        while t.kind in ("typedef", "const", "volatile", "restrict", "typedef_transparent"):
            assert t.target is not None
            t = t.target
        return t

    def member(self, name: str) -> tuple[int, int, Type]:
        """(bit offset, bit size, type) of a direct member, looking into anonymous members."""
        t = self.resolved()
        if t.kind not in ("struct", "union"):
            raise TypeError_(f"{self.spelling()} is not a structure or union")
        if t._by_name is None:
            idx: dict[str, tuple[int, int, Type]] = {}

            def add(tt: Type, base: int) -> None:
                for m in tt.members:
                    if m.name:
                        idx.setdefault(m.name, (base + m.bit_offset, m.bit_size, m.type))
                    else:
                        add(m.type.resolved(), base + m.bit_offset)

            add(t, 0)
            t._by_name = idx
        try:
            return t._by_name[name]
        except KeyError:
            raise TypeError_(f"{t.spelling()} has no member {name!r}") from None

    def has_member(self, name: str) -> bool:
        try:
            self.member(name)
            return True
        except TypeError_:
            return False

    def walk(self, path: str) -> tuple[int, int, Type]:
        """Resolve a member designator like ``node_zones[1].spanned_pages``.

        Returns (bit offset, bit size, type).
        """
        bit = 0
        bsize = 0
        t: Type = self
        for tok in re.findall(r"\.?([A-Za-z_]\w*)|\[(\d+)\]", path):
            name, index = tok
            if name:
                off, bsize, t = t.member(name)
                bit += off
            else:
                r = t.resolved()
                if r.kind != "array":
                    raise TypeError_(f"{t.spelling()} is not an array")
                assert r.target is not None
                i = int(index)
                bit += 8 * i * r.target.size
                t = r.target
                bsize = 0
        return bit, bsize, t

    def offsetof(self, path: str) -> int:
        bit, _, _ = self.walk(path)
        if bit % 8:
            raise TypeError_(f"{path} is a bitfield")
        return bit // 8


class TypeDB:
    """All types of the pinned data, with lookups by C name and enumerator."""

    def __init__(self, doc: dict) -> None:
        raw = doc["types"]
        self.types: list[Type] = [Type(0, "void", "void")]
        for i, e in enumerate(raw[1:], start=1):
            self.types.append(
                Type(
                    i,
                    e["kind"],
                    e.get("name", ""),
                    size_=e.get("size", 0),
                    nelems=e.get("nelems", 0),
                    signed=bool(e.get("signed", False)),
                    encoding=e.get("encoding", 0),
                    is_decl=bool(e.get("decl", False)),
                    values=[(n, v) for n, v in e.get("values", [])],
                )
            )
        for i, e in enumerate(raw[1:], start=1):
            t = self.types[i]
            if "type" in e:
                t.target = self.types[e["type"]]
            for n, mt, off, bs in e.get("members", []):
                t.members.append(Member(n, self.types[mt], off, bs))
            for n, p in e.get("params", []):
                t.params.append((n, self.types[p]))
        self.doc = doc
        self._names: dict[str, Type] = {}
        self.enumerators: dict[str, int] = {}
        for t in self.types[1:]:
            if t.kind == "enum":
                for n, v in t.values:
                    self.enumerators.setdefault(n, v)
            if not t.name:
                continue
            if t.kind in ("struct", "union", "enum"):
                key = f"{t.kind} {t.name}"
                prev = self._names.get(key)
                if prev is None or (prev.is_decl and not t.is_decl):
                    self._names[key] = t
            elif t.kind in ("typedef", "int", "float"):
                self._names.setdefault(t.name, t)
        self.variables: dict[str, tuple[Type, bool]] = {
            v["name"]: (self.types[v["type"]], v["percpu"]) for v in doc["variables"]
        }

    # -- lookups ------------------------------------------------------------------
    def lookup(self, name: str) -> Type:
        """A type by C name: ``struct page``, ``pgd_t``, ``unsigned long``, ``struct page *``."""
        name = " ".join(name.split())
        stars = 0
        while name.endswith("*"):
            stars += 1
            name = name[:-1].rstrip()
        name = C_NAMES.get(name, name)
        t = self._names.get(name)
        if t is None:
            raise TypeError_(f"no type named {name!r}")
        for _ in range(stars):
            t = self.pointer_to(t)
        return t

    def struct(self, name: str) -> Type:
        for kind in ("struct", "union"):
            t = self._names.get(f"{kind} {name}")
            if t is not None:
                return t
        t = self._names.get(name)
        if t is not None and t.kind == "typedef" and t.resolved().kind in ("struct", "union"):
            return t.resolved()
        raise TypeError_(f"no struct or union {name!r}")

    def pointer_to(self, t: Type) -> Type:
        cache = self.__dict__.setdefault("_ptrs", {})
        p = cache.get(t.id)
        if p is None:
            p = Type(-1, "ptr", target=t)
            cache[t.id] = p
        return p

    def sizeof(self, name: str) -> int:
        return self.lookup(name).size

    def offsetof(self, struct_name: str, path: str) -> int:
        return self.struct(struct_name).offsetof(path)

    def enum(self, name: str) -> dict[str, int]:
        t = self._names.get(f"enum {name}")
        if t is None:
            raise TypeError_(f"no enum {name!r}")
        return dict(t.values)

    def const(self, enumerator: str) -> int:
        """The value of an enumerator of any enum (``PG_head``, ``NR_FREE_PAGES``)."""
        try:
            return self.enumerators[enumerator]
        except KeyError:
            raise TypeError_(f"no enumerator {enumerator!r}") from None

    def var_type(self, name: str) -> Type:
        try:
            return self.variables[name][0]
        except KeyError:
            raise TypeError_(f"no variable {name!r} in the type data") from None

    def iter_types(self) -> Iterator[Type]:
        return iter(self.types[1:])

    # -- numpy ----------------------------------------------------------------------
    def dtype(self, struct_name: str, fields: dict[str, str] | list[str] | None = None) -> np.dtype:
        """A numpy dtype with the struct's itemsize and the given members as fields.

        ``fields`` maps column name → member path (or lists paths, column = path with
        dots replaced by ``_``).  Without ``fields``, every scalar member reachable without
        crossing an array, bitfields excluded, is a column (first name wins).
        """
        st = self.struct(struct_name)
        cols: dict[str, tuple[int, Type]] = {}
        if fields is None:
            self._flatten(st, 0, "", cols)
        else:
            items = fields.items() if isinstance(fields, dict) else ((p.replace(".", "_"), p) for p in fields)
            for col, path in items:
                bit, bs, t = st.walk(path)
                if bs or bit % 8:
                    raise TypeError_(f"{struct_name}.{path} is a bitfield")
                cols[col] = (bit // 8, t)
        names, formats, offsets = [], [], []
        for col, (off, t) in cols.items():
            names.append(col)
            formats.append(scalar_dtype(t))
            offsets.append(off)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": st.size})

    def _flatten(self, t: Type, base: int, prefix: str, cols: dict) -> None:
        for m in t.resolved().members:
            if m.bit_size or m.bit_offset % 8:
                continue
            off = base + m.bit_offset // 8
            r = m.type.resolved()
            name = f"{prefix}{m.name}" if m.name else prefix.rstrip("_")
            if r.kind in ("struct", "union"):
                sub = f"{prefix}{m.name}_" if m.name else prefix
                if len(r.members) == 1 and m.name and r.members[0].type.resolved().kind in ("int", "ptr", "enum"):
                    cols.setdefault(name, (off, r.members[0].type))  # one-word wrappers: atomic_t, memdesc_flags_t
                else:
                    self._flatten(r, off, sub, cols)
            elif r.kind in ("int", "ptr", "enum") and name:
                cols.setdefault(name, (off, m.type))


def scalar_dtype(t: Type) -> str:
    r = t.resolved()
    if r.kind == "ptr":
        return "<u8"
    if r.kind in ("struct", "union") and len(r.members) == 1:
        return scalar_dtype(r.members[0].type)
    if r.kind == "int":
        signed = bool(r.encoding & 1)
        if r.encoding & 4:
            signed = False
        return f"<{'i' if signed else 'u'}{r.size}"
    if r.kind == "enum":
        return f"<{'i' if r.signed else 'u'}{r.size}"
    if r.kind == "array":
        assert r.target is not None
        return f"({r.nelems},){scalar_dtype(r.target)}"
    raise TypeError_(f"{t.spelling()} is not a scalar")


@cache
def get_types() -> TypeDB:
    """The pinned type data shipped with the package."""
    blob = resources.files("mmintro.types").joinpath("data", DATA_FILE).read_bytes()
    return TypeDB(json.loads(gzip.decompress(blob)))


def load_types(blob: bytes) -> TypeDB:
    """Type data from a (gzipped JSON) blob, e.g. the copy carried inside a snapshot."""
    return TypeDB(json.loads(gzip.decompress(blob)))
