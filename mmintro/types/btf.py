"""A pure-Python reader for BTF, the kernel's compact type format.

The format is the kernel's Documentation/bpf/btf.rst: a header, a type section of
variable-length ``struct btf_type`` records (ids from 1; 0 is void) and a string table.
This module only decodes; :mod:`mmintro.types.typedata` turns a closure of the decoded
types into the pinned type data the package ships.
"""

from __future__ import annotations

import gc
import struct
from dataclasses import dataclass, field

__all__ = ["BtfError", "BtfType", "parse_btf", "KIND_NAMES"]

BTF_MAGIC = 0xEB9F

KIND_NAMES = {
    1: "int",
    2: "ptr",
    3: "array",
    4: "struct",
    5: "union",
    6: "enum",
    7: "fwd",
    8: "typedef",
    9: "volatile",
    10: "const",
    11: "restrict",
    12: "func",
    13: "func_proto",
    14: "var",
    15: "datasec",
    16: "float",
    17: "decl_tag",
    18: "type_tag",
    19: "enum64",
}


class BtfError(Exception):
    """The BTF blob is malformed."""


@dataclass
class BtfType:
    id: int
    kind: str
    name: str
    size: int = 0  # struct/union/enum/int/float/datasec size in bytes
    type: int = 0  # referenced type id (ptr, typedef, cv, func, var, array elem)
    kind_flag: bool = False
    # int
    encoding: int = 0  # BTF_INT_SIGNED=1, CHAR=2, BOOL=4
    bits: int = 0
    # array
    nelems: int = 0
    # struct/union: (name, type id, bit offset, bitfield size or 0)
    members: list = field(default_factory=list)
    # enum/enum64: (name, value); signedness via kind_flag
    values: list = field(default_factory=list)
    # func_proto: (name, type id)
    params: list = field(default_factory=list)
    vlen: int = 0
    linkage: int = 0


def parse_btf(data: bytes) -> list[BtfType | None]:
    """Decode a BTF blob into a list indexed by type id (index 0 is None = void)."""
    # A kernel's BTF makes ~10^6 small objects, none of them cyclic garbage: with the cyclic
    # collector paused the parse takes half the time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_btf(data)
    finally:
        if enabled:
            gc.enable()


def _parse_btf(data: bytes) -> list[BtfType | None]:
    if len(data) < 24:
        raise BtfError("BTF blob too short")
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != BTF_MAGIC:
        raise BtfError(f"bad BTF magic {magic:#x}")
    type_off, type_len, str_off, str_len = struct.unpack_from("<4I", data, 8)
    types_base = hdr_len + type_off
    strs_base = hdr_len + str_off
    strtab = data[strs_base : strs_base + str_len]
    if types_base + type_len > len(data) or len(strtab) != str_len:
        raise BtfError("BTF sections out of range")

    def s(off: int) -> str:
        end = strtab.index(b"\0", off)
        return strtab[off:end].decode()

    out: list[BtfType | None] = [None]
    pos, end = types_base, types_base + type_len
    u32 = struct.Struct("<I")
    i32 = struct.Struct("<i")
    while pos < end:
        name_off, info, size_type = struct.unpack_from("<3I", data, pos)
        pos += 12
        kind_no = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        kind = KIND_NAMES.get(kind_no)
        if kind is None:
            raise BtfError(f"unknown BTF kind {kind_no} at type {len(out)}")
        t = BtfType(id=len(out), kind=kind, name=s(name_off), kind_flag=kflag, vlen=vlen)
        if kind in ("int", "struct", "union", "enum", "enum64", "float", "datasec"):
            t.size = size_type
        else:
            t.type = size_type
        if kind == "int":
            v = u32.unpack_from(data, pos)[0]
            pos += 4
            t.encoding = (v >> 24) & 0xF
            t.bits = v & 0xFF
            if (v >> 16) & 0xFF:
                raise BtfError("BTF int with a bit offset is not supported")
        elif kind == "array":
            t.type, _idx, t.nelems = struct.unpack_from("<3I", data, pos)
            pos += 12
        elif kind in ("struct", "union"):
            for _ in range(vlen):
                mn, mt, moff = struct.unpack_from("<3I", data, pos)
                pos += 12
                if kflag:
                    t.members.append((s(mn), mt, moff & 0xFFFFFF, moff >> 24))
                else:
                    t.members.append((s(mn), mt, moff, 0))
        elif kind == "enum":
            for _ in range(vlen):
                en, ev = struct.unpack_from("<Ii", data, pos)
                pos += 8
                t.values.append((s(en), ev if kflag else ev & 0xFFFFFFFF))
            if not kflag:
                # Unsigned enum: values stored as u32.
                pass
        elif kind == "enum64":
            for _ in range(vlen):
                en, lo, hi = struct.unpack_from("<3I", data, pos)
                pos += 12
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                t.values.append((s(en), v))
        elif kind == "func_proto":
            for _ in range(vlen):
                pn, pt = struct.unpack_from("<2I", data, pos)
                pos += 8
                t.params.append((s(pn), pt))
        elif kind == "var":
            t.linkage = u32.unpack_from(data, pos)[0]
            pos += 4
        elif kind == "datasec":
            for _ in range(vlen):
                vt, voff, vsz = struct.unpack_from("<3I", data, pos)
                pos += 12
                t.members.append(("", vt, voff, vsz))
        elif kind == "decl_tag":
            i32.unpack_from(data, pos)
            pos += 4
        elif kind == "func":
            t.linkage = vlen
        out.append(t)
    if pos != end:
        raise BtfError("BTF type section does not end on a record boundary")
    return out
