"""crash's inspection commands over a snapshot: ``struct``, ``p``, ``rd`` and ``sym``.

Everything is read through the reader (the dump's own types and symbols); the text follows
crash 9.0.2, which prints values through its gdb with ``print pretty on``, ``print repeats``
unlimited and ``print elements 256`` (gdb_interface.c), in decimal unless asked for hex:

* :func:`struct_layout` -- ``struct TYPE [-o]``: the declaration as gdb's ptype spells it, with
  crash's member offsets (symbols.c: do_datatype_declaration, show_member_offset);
* :func:`struct_value` -- ``struct TYPE ADDR``: the members and their values;
* :func:`evaluate` / :func:`print_expression` -- ``p EXPR``: a small C expression parser (no
  Python eval): globals, ``.member``, ``->member``, ``[index]``, ``*``, ``&``, casts, ``+``/``-``,
  and crash's per-CPU ``symbol:cpuspec``;
* :func:`rd` -- ``rd [-8|-16|-32|-64] [-p] [-s] ADDR [COUNT]`` (memory.c: display_memory);
* :func:`sym` -- ``sym NAME|ADDR`` (symbols.c: cmd_sym, show_symbol).

Addresses are parsed in one place, :func:`parse_address` (:data:`ADDRESS_HELP` says how).
"""

from __future__ import annotations

import re
import struct as _struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmintro.reader.errors import FaultError
from mmintro.reader.object import Object
from mmintro.types.typedata import Type, TypeError_

if TYPE_CHECKING:
    from mmintro.reader.program import Program

__all__ = [
    "ADDRESS_HELP",
    "AddressError",
    "check_address",
    "evaluate",
    "parse_address",
    "print_expression",
    "rd",
    "resolve_type",
    "struct_layout",
    "struct_value",
    "sym",
]

ADDRESS_HELP = (
    "An address is hex with or without 0x (ffffffff83007280, 0xffffffff83007280), decimal "
    "only with 0d (0d4096; so hex that starts 0d needs 0x), a symbol (init_mm), or a symbol plus or minus an offset "
    "(init_mm+0x40, init_mm+0d64; a bare offset is hex, as crash reads it); a per-CPU "
    "symbol takes :CPU (vm_event_states:1)."
)

PRINT_MAX = 256  # crash sets gdb's print elements to 256 (gdb_interface.c)
_MASK64 = (1 << 64) - 1


class AddressError(ValueError):
    """An address argument that is not one (or names no symbol): one line, exit 1."""


# -- addresses ------------------------------------------------------------------------------------
_NUM = re.compile(r"(?:0x[0-9a-f]+|0d[0-9]+|(?!0d)[0-9a-f]+)\Z", re.I)
_ADDR = re.compile(r"([A-Za-z_.$][\w.$]*)(?::(\d+))?(?:([+-])(0x[0-9a-f]+|0d[0-9]+|(?!0d)[0-9a-f]+))?\Z", re.I)


def _number(text: str) -> int:
    t = text.lower()
    if t.startswith("0d"):
        return int(t[2:], 10)
    return int(t[2:] if t.startswith("0x") else t, 16)


def check_address(text: str) -> None:
    """Raise :class:`AddressError` unless ``text`` has the form of an address (no symbol
    lookup: a command checks this before it opens the snapshot)."""
    s = text.strip()
    if _NUM.match(s):
        if _number(s) > _MASK64:
            raise AddressError(f"{text!r} is wider than 64 bits")
        return
    if not _ADDR.match(s):
        raise AddressError(f"{text!r} is not an address ({ADDRESS_HELP})")


def parse_address(prog: Program, text: str) -> int:
    """The address ``text`` names (see :data:`ADDRESS_HELP`).  Hex digits alone are a number,
    as in crash's ``rd``/``struct`` (a symbol spelled only in hex digits needs ``+0``)."""
    check_address(text)
    s = text.strip()
    if _NUM.match(s):
        return _number(s)
    m = _ADDR.match(s)
    assert m is not None
    name, cpu, sign, off = m.groups()
    syms = prog.symbols.by_name
    if name not in syms:
        raise AddressError(f"no symbol {name!r} (and {text!r} is not a hex address)")
    addr = syms[name].address
    if cpu is not None:
        addr = _per_cpu_address(prog, name, int(cpu))
    if off is not None:
        addr = addr + _number(off) if sign == "+" else addr - _number(off)
    if not 0 <= addr <= _MASK64:
        raise AddressError(f"{text!r} is outside the 64-bit address space")
    return addr


def _is_per_cpu(prog: Program, name: str) -> bool:
    s = prog.symbols.by_name.get(name)
    start, end = prog.symbols.by_name.get("__per_cpu_start"), prog.symbols.by_name.get("__per_cpu_end")
    if s is None:
        return False
    if start is not None and end is not None:
        return start.address <= s.address < end.address
    v = prog.types.variables.get(name)
    return bool(v and v[1])


def _nr_cpus(prog: Program) -> int:
    return int(prog["nr_cpu_ids"].value_())


def _per_cpu_address(prog: Program, name: str, cpu: int) -> int:
    if not _is_per_cpu(prog, name):
        raise AddressError(f"{name} is not a per-CPU symbol: it takes no :CPU")
    n = _nr_cpus(prog)
    if not 0 <= cpu < n:
        raise AddressError(f"no CPU {cpu}: the dump has CPUs 0-{n - 1}")
    return (prog.symbols.by_name[name].address + prog["__per_cpu_offset"][cpu].value_()) & _MASK64


# -- types as gdb spells them ----------------------------------------------------------------------
_GDB_NAMES = {
    "long unsigned int": "unsigned long",
    "long int": "long",
    "long long unsigned int": "unsigned long long",
    "long long int": "long long",
    "short unsigned int": "unsigned short",
    "short int": "short",
}


def resolve_type(prog: Program, name: str) -> Type:
    """``page``, ``struct page``, ``union X``, ``pgd_t``: crash's struct_name (LookupError)."""
    n = " ".join(name.split())
    for cand in (n, f"struct {n}", f"union {n}") if not n.startswith(("struct ", "union ", "enum ")) else (n,):
        try:
            return prog.type(cand)
        except LookupError:
            continue
    raise LookupError(f"invalid data structure reference: {name}")


def _base_name(t: Type) -> str:
    k = t.kind
    if k in ("struct", "union", "enum"):
        return f"{k} {t.name}" if t.name else f"{k} {{...}}"
    if k == "int":
        return _GDB_NAMES.get(t.name, t.name)
    if k == "void":
        return "void"
    return t.name


def decl(t: Type, inner: str = "") -> str:
    """gdb's C spelling of a type around a declarator (``struct page *next``,
    ``void (*func)(struct callback_head *)``, ``struct zone node_zones[5]``)."""
    k = t.kind
    if k == "ptr":
        assert t.target is not None
        tt = t.target.unqualified() if t.target.kind != "typedef" else t.target
        if tt.kind in ("array", "func_proto"):
            return decl(t.target, f"(*{inner})")
        return decl(t.target, f"*{inner}")
    if k == "array":
        assert t.target is not None
        return decl(t.target, f"{inner}[{t.nelems or ''}]")
    if k in ("const", "volatile"):
        assert t.target is not None
        if t.target.kind == "ptr":
            return decl(t.target, f" {k} {inner}".rstrip() if inner else f" {k}")
        return f"{k} {decl(t.target, inner)}"
    if k in ("restrict", "typedef_transparent"):
        assert t.target is not None
        return decl(t.target, inner)
    if k == "func_proto":
        params = ", ".join(decl(p) for _, p in t.params) or "void"
        ret = t.target if t.target is not None else None
        return (decl(ret, f"{inner}({params})") if ret is not None else f"void {inner}({params})").replace(
            "void void", "void"
        )
    base = _base_name(t)
    if not inner:
        return base
    return f"{base} {inner}" if not inner.startswith(" ") else f"{base}{inner}"


def _ptype_lines(t: Type, level: int) -> list[tuple[str, str | None, bool]]:
    """gdb's ptype body of a struct/union, 4 spaces a level: (line, member name or None,
    is end of an anonymous block)."""
    out: list[tuple[str, str | None, bool]] = []
    pad = "    " * level
    for m in t.members:
        mt = m.type
        r = mt.unqualified()
        if r.kind in ("struct", "union") and not r.name:  # an inline (anonymous) type
            out.append((f"{pad}{r.kind} {{", None, False))
            out += _ptype_lines(r, level + 1)
            out.append((f"{pad}}}{' ' + m.name if m.name else ''};", m.name or None, True))
            continue
        bits = f" : {m.bit_size}" if m.bit_size else ""
        out.append((f"{pad}{decl(mt, m.name)}{bits};", m.name or None, False))
    return out


def struct_layout(prog: Program, spec: str, offsets: bool = False, address: int | None = None) -> str:
    """``struct TYPE`` (``-o``: with offsets, or with ADDR the members' addresses), or
    ``struct TYPE.member`` (its offset), as crash prints them."""
    name, _, member = spec.partition(".")
    t = resolve_type(prog, name)
    r = t.resolved()
    if r.kind not in ("struct", "union") or r.is_decl:
        raise LookupError(f"invalid data structure reference: {spec}")
    if member and "." in member:
        raise LookupError(f"invalid data structure reference: {spec}")
    if member:
        r.member(member)  # TypeError_ (a LookupError) when there is none
        offsets = True
    size = r.size
    head = f"{r.kind} {r.name}" if r.name else f"{r.kind} {{"
    lines = [f"{head} {{" if r.name else head]
    width = len(str(size)) + 4
    in_block: str | None = None
    for text, mname, end in _ptype_lines(r, 1):
        if not offsets:
            lines.append(text)
            continue
        stripped = text.strip()
        if stripped in ("union {", "struct {"):
            in_block = stripped
        target = mname
        off = None
        if target:
            try:
                off = r.member(target)[0] // 8
            except TypeError_:
                off = None
        if off is None:
            if end:
                in_block = None
            if member:
                continue
            lines.append(" " * (len(str(size)) + 1) + text)
            continue
        if member and target != member:
            if end:
                in_block = None
            continue
        if end and member and in_block:
            lines.append(" " * (width + 1) + in_block)
            in_block = None
        tag = f"  [{off + address:x}]" if address is not None else f"  [{off}]"
        lines.append(tag.rjust(width) + text[3:])
    lines.append("}")
    if not member:
        lines.append(f"SIZE: {size}")
    return "\n".join(lines) + "\n"


# -- values as gdb prints them ---------------------------------------------------------------------
def _is_char(r: Type) -> bool:
    return r.kind == "int" and r.size == 1 and not r.encoding & 4 and r.name in ("char", "unsigned char", "signed char")


def _char_escape(b: int, quote: str) -> str:
    c = chr(b)
    if c == quote or c == "\\":
        return "\\" + c
    if 32 <= b < 127:
        return c
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\033"}
    return named.get(b, f"\\{b:03o}")


def _string(data: bytes, truncated: bool) -> str:
    return '"' + "".join(_char_escape(b, '"') for b in data) + '"' + ("..." if truncated else "")


def _read_c_string(prog: Program, addr: int) -> tuple[bytes, bool]:
    """Up to PRINT_MAX bytes at ``addr`` before a NUL (FaultError if unreadable)."""
    out = b""
    while len(out) < PRINT_MAX:
        chunk = min(PRINT_MAX - len(out), 4096 - (addr + len(out)) % 4096)
        data = prog.read(addr + len(out), chunk)
        n = data.find(b"\0")
        if n >= 0:
            return out + data[:n], False
        out += data
    return out, True


def symbolize(prog: Program, v: int) -> str:
    """`` <name>`` or `` <name+off>`` when ``v`` is inside a symbol, as gdb's ``print symbol``
    (of the symbols at one address, one with a size: gdb's lookup_minimal_symbol_by_pc)."""
    if not v:
        return ""
    import bisect

    syms = prog.symbols.symbols
    i = bisect.bisect_right(prog.symbols.addresses, v) - 1
    if i < 0:
        return ""
    a = syms[i].address
    same = [syms[j] for j in range(i, max(i - 64, -1), -1) if syms[j].address == a]
    sized = [s for s in same if s.size]
    s = sized[0] if sized else same[0]
    if v - a >= max(s.size, 1):
        return ""
    if a != v and prog.vmlinux is None and s.kind != "func":
        return ""  # kallsyms sizes are the gaps to the next symbol: only code is trusted inside one
    return f" <{s.name}>" if a == v else f" <{s.name}+{v - a}>"


@dataclass
class _Fmt:
    prog: Program
    hex: bool = False

    def scalar(self, o: Object) -> str:
        r = o.type_.resolved()
        v = o.value_()
        if r.kind == "ptr":
            return self.pointer(o, v, top=False)
        if r.kind == "enum":
            names = [n for n, val in r.values if val == v]
            if names:
                return names[0]
            return f"{v & ((1 << 8 * r.size) - 1):#x}" if self.hex else str(v)
        if r.kind == "float":
            return repr(v)
        if r.encoding & 4 and not self.hex:  # _Bool
            return {0: "false", 1: "true"}.get(int(v), str(int(v)))
        size = (o.bit_field_size_ + 7) // 8 if o.bit_field_size_ else r.size
        num = f"{v & ((1 << 8 * size) - 1):#x}" if self.hex else str(v)
        if _is_char(r) and not self.hex:  # (crash's -x: a char is its number)
            return f"{num} '{_char_escape(v & 0xFF, chr(39))}'"
        return num

    def pointer(self, o: Object, v: int, top: bool) -> str:
        r = o.type_.resolved()
        assert r.target is not None
        target = r.target.resolved()
        text = f"{v:#x}" + symbolize(self.prog, v)
        if _is_char(target):
            if v:
                try:
                    data, trunc = _read_c_string(self.prog, v)
                    text += " " + _string(data, trunc)
                except FaultError:
                    text += f" <error: Cannot access memory at address {v:#x}>"
            return text
        if top:
            return f"({decl(o.type_)}) {text}"
        return text

    def value(self, o: Object, level: int, addr: int | None = None) -> str:
        """``o`` printed at nesting ``level`` (0: the top; members of a struct at level n are
        indented 2*(n+1)); ``addr``: where a value copy ``o`` was read from."""
        r = o.type_.resolved()
        if addr is None:
            addr = o.address_
        if r.kind in ("struct", "union"):
            return self.struct_body(o, level, addr)
        if r.kind == "array":
            return self.array(o, level, addr)
        if r.kind in ("int", "enum", "ptr", "float"):
            return self.scalar(o)
        return "<incomplete type>"

    def struct_body(self, o: Object, level: int, addr: int | None = None) -> str:
        r = o.type_.resolved()
        if addr is None:
            addr = o.address_
        obj = o.read_()
        pad = "  " * (level + 1)
        parts = []
        for m in r.members:
            sub = obj._sub(m.bit_offset, m.bit_size, m.type)
            body = self.value(sub, level + 1, None if addr is None else addr + m.bit_offset // 8)
            parts.append(f"{pad}{m.name} = {body}" if m.name else f"{pad}{body}")
        if not parts:
            return "{<No data fields>}"
        return "{\n" + ",\n".join(parts) + "\n" + "  " * level + "}"

    def array(self, o: Object, level: int, addr: int | None = None) -> str:
        r = o.type_.resolved()
        assert r.target is not None
        et = r.target.resolved()
        if addr is None:
            addr = o.address_
        if r.nelems == 0:  # a flexible array: gdb prints its address (and a char one's string)
            addr = addr or 0
            text = f"{addr:#x}"
            text += symbolize(self.prog, addr)
            if _is_char(et) and addr:
                try:
                    data, trunc = _read_c_string(self.prog, addr)
                    text += " " + _string(data, trunc)
                except FaultError:
                    pass
            return text
        if _is_char(et):
            data = o.to_bytes_() if o.address_ is None else self.prog.read(o.address_, r.size)
            trunc = len(data) > PRINT_MAX
            data = data[:PRINT_MAX]
            if not trunc and data.endswith(b"\0"):
                data = data[:-1]
            return _string(data, trunc)
        obj = o.read_()
        n = min(r.nelems, PRINT_MAX)
        esize = r.target.size
        elems = [self.value(obj[i], level + 1, None if addr is None else addr + i * esize) for i in range(n)]
        return "{" + ", ".join(elems) + ("..." if r.nelems > PRINT_MAX else "") + "}"


def _member_lines(body: str, level: int, names: list[str]) -> list[str]:
    """The lines of the named members in a struct body printed at ``level`` (anonymous
    members included, as crash greps the full print)."""
    lines = body.splitlines()[1:-1]
    out: list[str] = []
    for name in names:
        found = False
        i = 0
        while i < len(lines):
            line = lines[i]
            stripped = line.lstrip(" ")
            ind = len(line) - len(stripped)
            if stripped.startswith(f"{name} = "):
                block = [line]
                if stripped.rstrip(",").endswith("{") or stripped.rstrip(",").endswith("{{"):
                    j = i + 1
                    while j < len(lines) and (len(lines[j]) - len(lines[j].lstrip(" ")) > ind):
                        block.append(lines[j])
                        j += 1
                    if j < len(lines):
                        block.append(lines[j])
                out += block
                found = True
                break
            i += 1
        if not found:
            raise LookupError(f"member {name!r} not found")
    return out


def struct_value(
    prog: Program, spec: str, address: int, offsets: bool = False, hex_output: bool = False, count: int = 1
) -> str:
    """``struct TYPE[.member[,member]] ADDR [COUNT]``: the structure's members and values."""
    name, _, members = spec.partition(".")
    t = resolve_type(prog, name)
    r = t.resolved()
    if r.kind not in ("struct", "union") or r.is_decl:
        raise LookupError(f"invalid data structure reference: {spec}")
    names = [m for m in members.split(",") if m] if members else []
    for m in names:
        r.member(m)
    fmt = _Fmt(prog, hex_output)
    out = []
    for i in range(count):
        addr = address + i * r.size
        obj = Object(prog, t, address=addr)
        prog.read(addr, r.size)  # an unmapped address fails before any text
        if offsets:
            out.append(struct_layout(prog, spec, offsets=True, address=addr))
            continue
        body = fmt.struct_body(obj, 0)
        if names:
            out.append("\n".join(_member_lines(body, 0, names)) + "\n")
        else:
            head = f"{r.kind} {r.name} " if r.name else ""
            out.append(head + body + "\n")
    return "\n".join(out)


# -- expressions -------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<num>0x[0-9a-fA-F]+|\d+)|(?P<id>[A-Za-z_]\w*)|(?P<op>->|\.|\[|\]|\(|\)|\*|&|\+|-|:|,))")


class ExpressionError(ValueError):
    """An expression ``p`` cannot read: one line, exit 1."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"cannot parse {text!r} at {text[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)*; term := '*' term | '&' term | '-' term | '(' TYPE ')' term
    | postfix; postfix := primary ('.' id | '->' id | '[' expr ']')*; primary := number | id
    | '(' expr ')'."""

    def __init__(self, prog: Program, text: str) -> None:
        self.prog, self.text = prog, text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        t = self.peek()
        if t is None or (value is not None and t[1] != value):
            want = repr(value) if value else "more"
            raise ExpressionError(f"{self.text!r}: expected {want}")
        self.i += 1
        return t

    def parse(self) -> Object:
        v = self.expr()
        if self.peek() is not None:
            raise ExpressionError(f"{self.text!r}: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return v

    def expr(self) -> Object:
        v = self.term()
        while self.peek() is not None and self.peek()[1] in ("+", "-"):  # type: ignore[index]
            op = self.take()[1]
            w = self.term()
            try:
                v = v + w if op == "+" else v - w
            except TypeError as e:
                raise ExpressionError(f"{self.text!r}: {e}") from None
        return v

    def _int(self, v: int) -> Object:
        return Object(self.prog, "unsigned long" if v >> 63 else "long", v)

    def _cast_type(self) -> Type | None:
        """``(TYPE)`` ahead: the type, consumed; else None (nothing consumed)."""
        if self.peek() is None or self.peek()[1] != "(":  # type: ignore[index]
            return None
        j, words = self.i + 1, []
        while j < len(self.toks) and self.toks[j][0] == "id":
            words.append(self.toks[j][1])
            j += 1
        stars = 0
        while j < len(self.toks) and self.toks[j][1] == "*":
            stars += 1
            j += 1
        if not words or j >= len(self.toks) or self.toks[j][1] != ")":
            return None
        name = " ".join(words)
        if len(words) == 1 and (name in self.prog.symbols.by_name or name in self.prog.types.variables):
            return None
        try:
            t = self.prog.type(name + " *" * stars) if stars else self.prog.type(name)
        except LookupError:
            if words[0] in ("struct", "union", "enum") or stars:
                raise ExpressionError(f"no type named {name!r}") from None
            return None
        self.i = j + 1
        return t

    def term(self) -> Object:
        t = self.peek()
        if t is None:
            raise ExpressionError(f"{self.text!r}: expected a value")
        if t[1] == "*":
            self.take()
            v = self.term()
            try:
                return v.deref_()
            except TypeError as e:
                raise ExpressionError(str(e)) from None
        if t[1] == "&":
            self.take()
            v = self.term()
            try:
                return v.address_of_()
            except ValueError as e:
                raise ExpressionError(str(e)) from None
        if t[1] == "-":
            self.take()
            return -self.term()
        cast = self._cast_type()
        if cast is not None:
            v = self.term()
            cr = cast.resolved()
            if cr.kind in ("struct", "union", "array"):
                raise ExpressionError(f"cannot cast to {decl(cast)}")
            if v.type_.resolved().kind not in ("int", "enum", "ptr"):
                raise ExpressionError(f"cannot cast {decl(v.type_)} to {decl(cast)}")
            return Object(self.prog, cast, v.value_())
        return self.postfix()

    def postfix(self) -> Object:
        v = self.primary()
        while (t := self.peek()) is not None and t[1] in (".", "->", "["):
            self.take()
            if t[1] == "[":
                idx = self.expr()
                self.take("]")
                try:
                    v = v[int(idx)]
                except TypeError as e:
                    raise ExpressionError(str(e)) from None
                continue
            name = self.take()[1]
            r = v.type_.resolved()
            if t[1] == "->" and r.kind != "ptr":
                raise ExpressionError(f"{decl(v.type_)} is not a pointer: use '.{name}'")
            if t[1] == "." and r.kind == "ptr":
                raise ExpressionError(f"{decl(v.type_)} is a pointer: use '->{name}'")
            try:
                v = v.member_(name)
            except (TypeError_, TypeError) as e:
                raise ExpressionError(f"there is no member named {name}: {e}") from None
        return v

    def primary(self) -> Object:
        kind, text = self.take()
        if kind == "num":
            return self._int(int(text, 0))
        if text == "(":
            v = self.expr()
            self.take(")")
            return v
        if kind != "id":
            raise ExpressionError(f"{self.text!r}: unexpected {text!r}")
        if self.peek() is not None and self.peek()[1] == ":":  # type: ignore[index]
            self.take()
            cpu = int(self.take()[1], 0)
            addr = _per_cpu_address(self.prog, text, cpu)
            return Object(self.prog, self._var_type(text), address=addr)
        try:
            return self.prog.variable(text)
        except LookupError:
            pass
        try:
            return self.prog.constant(text)
        except LookupError:
            pass
        if text in self.prog.symbols.by_name:
            raise ExpressionError(f"{text} has no type in the dump's type data")
        raise ExpressionError(f'No symbol "{text}" in current context.')

    def _var_type(self, name: str) -> Type:
        try:
            return self.prog.types.var_type(name)
        except TypeError_:
            raise ExpressionError(f"{name} has no type in the dump's type data") from None


def evaluate(prog: Program, expr: str) -> Object:
    """The object ``expr`` names (:class:`ExpressionError` when it names none)."""
    return _Parser(prog, expr).parse()


def _cpu_list(spec: str, n: int) -> list[int]:
    if spec.lower() in ("a", "all"):
        return list(range(n))
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ExpressionError(f"invalid cpu specification: {spec}") from None
        if not 0 <= a <= b < n:
            raise ExpressionError(f"invalid cpu specification: {spec} (CPUs 0-{n - 1})")
        out += range(a, b + 1)
    return sorted(set(out))


def _gdb_print(fmt: _Fmt, o: Object, leader: str | None) -> str:
    """``$1 = VALUE`` as gdb prints it, with crash's ``leader = `` before it (its line break
    before a brace that is not at the end of the first line)."""
    r = o.type_.resolved()
    if r.kind == "ptr":
        body = fmt.pointer(o, o.value_(), top=True)
    elif r.kind in ("void", "func_proto") or (r.kind in ("struct", "union") and r.is_decl):
        body = "<incomplete type>"
    else:
        if o.address_ is not None:
            fmt.prog.read(o.address_, r.size)
        body = fmt.value(o, 0)
    text = f"$1 = {body}\n"
    if leader:
        first, _, rest = text.partition("\n")
        k = first.find("{")
        if k >= 0 and first[k:] != "{":
            text = first[:k] + "\n {" + first[k + 1 :] + "\n" + rest
        text = f"{leader} = {text}"
    return text


def print_expression(prog: Program, expr: str, hex_output: bool = False) -> str:
    """crash's ``p EXPR`` (``p SYMBOL:CPUSPEC`` for a per-CPU symbol; ``p SYMBOL`` of a
    per-CPU symbol lists its type and per-CPU addresses)."""
    fmt = _Fmt(prog, hex_output)
    e = expr.strip()
    name, colon, spec = e.rpartition(":")
    if not colon:
        name, spec = e, None
    if re.fullmatch(r"[A-Za-z_]\w*", name) and name in prog.symbols.by_name:
        if _is_per_cpu(prog, name):
            t = None
            try:
                t = prog.types.var_type(name)
            except TypeError_:
                pass
            n = _nr_cpus(prog)
            base = prog.symbols.by_name[name].address
            if spec is None:
                lines = ["PER-CPU DATA TYPE:", f"  {decl(t, name) if t else '[undetermined type] ' + name};"]
                lines.append("PER-CPU ADDRESSES:")
                for c in range(n):
                    lines.append(f"  [{c}]: {(base + prog['__per_cpu_offset'][c].value_()) & _MASK64:x}")
                return "\n".join(lines) + "\n"
            out = []
            for c in _cpu_list(spec, n) if spec else []:
                addr = _per_cpu_address(prog, name, c)
                if t is not None:
                    out.append(_gdb_print(fmt, Object(prog, t, address=addr), f"per_cpu({name}, {c})"))
                else:
                    out.append(_gdb_print(fmt, Object(prog, "void *", addr), f"&per_cpu({name}, {c})"))
            if not spec:
                raise ExpressionError(f"{e}: give a CPU (:N, :N-M, :a)")
            return "".join(out)
        if spec is not None:
            raise ExpressionError(f"{name} is not percpu; a cpuspec does not apply")
        return _gdb_print(fmt, evaluate(prog, name), name)
    # crash's leader: the first word of the command line is a symbol (``jiffies + 1`` too)
    first = e.split()[0] if e.split() else ""
    return _gdb_print(fmt, evaluate(prog, e), first if first in prog.symbols.by_name else None)


# -- rd ----------------------------------------------------------------------------------------------
def rd(
    prog: Program,
    address: int,
    count: int = 1,
    size: int = 8,
    physical: bool = False,
    symbols: bool = False,
) -> str:
    """crash's ``rd``: COUNT values of SIZE bytes from ADDRESS, 16 bytes a line, hex with an
    ASCII column (``symbols``: a value inside a kernel symbol shown as ``name+off``, no ASCII)."""
    if size not in (1, 2, 4, 8):
        raise ValueError(f"rd: size {size} is not 1, 2, 4 or 8 bytes")
    if count < 1:
        raise ValueError(f"rd: count {count} is not positive")
    if symbols and size != 8:
        raise ValueError("rd -s reads 64-bit words")
    nbytes = count * size
    data = prog.read(address, nbytes, physical=physical)
    per_line = 16 // size
    fmtw = 2 * size
    addr_width = 16
    lines = []
    for i in range(0, count, per_line):
        chunk = data[i * size : (i + per_line) * size]
        vals = [int.from_bytes(chunk[j : j + size], "little") for j in range(0, len(chunk), size)]
        line_addr = address + i * size
        head = f"{line_addr:x}".rjust(addr_width) + ":  "
        if symbols:
            cells = []
            for v in vals:
                s = _rd_symbol(prog, v)
                cells.append(f"{s:<16}" if s else f"{v:0{fmtw}x}")
            lines.append(head + " ".join(cells) + " ")
            continue
        cells = " ".join(f"{v:0{fmtw}x}" for v in vals)
        full = " ".join(["0" * fmtw] * per_line)
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(head + cells.ljust(len(full)) + "   " + ascii_)
    return "\n".join(lines) + "\n"


def _rd_symbol(prog: Program, v: int) -> str:
    """crash's rd -s: a value inside a kernel symbol (text or data) as ``name`` or ``name+off``
    (decimal offset, memory.c: display_memory / value_symbol)."""
    if not v or not _in_symbol_range(prog, v):
        return ""
    s = _value_search(prog, v)
    if s is None:
        return ""
    return s.name if s.address == v else f"{s.name}+{v - s.address}"


# -- sym ----------------------------------------------------------------------------------------------
def _sym_range(prog: Program) -> tuple[int, int]:
    syms = prog.symbols.symbols
    lo = next((s.address for s in syms if s.address), 0)
    return lo, syms[-1].address if syms else 0


def _in_symbol_range(prog: Program, v: int) -> bool:
    lo, hi = _sym_range(prog)
    return lo <= v <= hi


def _value_search(prog: Program, v: int) -> Any:
    """The symbol at or before ``v`` (crash's value_search: sizes ignored).  Of several symbols
    at one address, an exact match is the first and an address inside is the last, in crash's
    order, where linker markers (no size: _sdata) sort before the object they start."""
    import bisect

    syms = prog.symbols.symbols
    i = bisect.bisect_right(prog.symbols.addresses, v) - 1
    if i < 0:
        return None
    a = syms[i].address
    j = i
    while j > 0 and syms[j - 1].address == a and i - j < 64:
        j -= 1
    same = sorted(syms[j : i + 1], key=lambda s: s.size)
    return same[0] if a == v else same[-1]


def _section_flags(prog: Program) -> list[tuple[int, int, int, int]]:
    """(start, end, flags, type) of the vmlinux's allocated sections, at run-time addresses."""
    cache = prog.cache.get("inspect.sections")
    if cache is not None:
        return cache
    out: list[tuple[int, int, int, int]] = []
    elf = prog.vmlinux
    if elf is not None:
        from mmintro.reader.elf import SHDR

        for i in range(elf.header.e_shnum):
            sh = SHDR.unpack_from(elf.buf, elf.header.e_shoff + i * SHDR.size)
            flags, addr, size, stype = sh[2], sh[3], sh[5], sh[1]
            if flags & 2 and size:  # SHF_ALLOC
                out.append((addr + prog.kernel_offset, addr + prog.kernel_offset + size, flags, stype))
    prog.cache["inspect.sections"] = out
    return out


def type_letter(prog: Program, s: Any) -> str:
    """nm's letter for a symbol, from its section (as bfd gives crash): T text, R read-only,
    D data, B bss, A absolute; lower case for a local symbol."""
    letter = None
    for lo, hi, flags, stype in _section_flags(prog):
        if lo <= s.address < hi or (s.address == hi and s.size == 0):
            if flags & 4:  # SHF_EXECINSTR
                letter = "t"
            elif stype == 8:  # SHT_NOBITS
                letter = "b"
            elif not flags & 1:  # not SHF_WRITE
                letter = "r"
            else:
                letter = "d"
            if lo <= s.address < hi:
                break
    if letter is None:
        letter = "t" if s.kind == "func" else ("d" if s.kind == "object" else "a")
    return letter if s.binding == "local" else letter.upper()


def _is_text(prog: Program, addr: int) -> bool:
    st, et = prog.symbols.by_name.get("_stext"), prog.symbols.by_name.get("_etext")
    if st is not None and et is not None:
        return st.address <= addr < et.address
    return any(lo <= addr < hi and flags & 4 for lo, hi, flags, _ in _section_flags(prog))


def _show_symbol(prog: Program, s: Any, offset: int) -> str:
    line = f"{s.address + offset:x} ({type_letter(prog, s)}) {s.name}"
    if offset:
        line += f"+{offset}"
    if _is_text(prog, s.address + offset):
        line += " "  # crash's (empty) file and line number
    return line


def sym(prog: Program, arg: str) -> str:
    """crash's ``sym NAME`` (every symbol of that name) or ``sym ADDR`` (``name+off``)."""
    a = arg.strip()
    syms = prog.symbols
    if a not in syms.by_name and _NUM.match(a):
        v = _number(a)
        if not _in_symbol_range(prog, v):
            raise AddressError(f"invalid address: {arg}")
        s = _value_search(prog, v)
        if s is None:
            raise AddressError(f"symbol not found: {arg}")
        return _show_symbol(prog, s, v - s.address) + "\n"
    if a not in syms.by_name:
        m = _ADDR.match(a)
        if m and m.group(1) in syms.by_name and m.group(3):
            v = parse_address(prog, a)
            s = _value_search(prog, v)
            return _show_symbol(prog, s, v - s.address) + "\n"
        raise AddressError(f"symbol not found: {arg}")
    same = [s for s in syms.symbols if s.name == a]
    return "".join(_show_symbol(prog, s, 0) + "\n" for s in same)


def unpack_words(data: bytes, size: int) -> list[int]:
    """The little-endian values of ``size`` bytes in ``data`` (tests and rd share it)."""
    code = {1: "B", 2: "H", 4: "I", 8: "Q"}[size]
    return list(_struct.unpack(f"<{len(data) // size}{code}", data))
