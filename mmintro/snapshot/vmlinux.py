"""A pure-Python writer of NAME.vmlinux: an ELF file with DWARF-4 types, variables and symbols.

The file carries no code or data bytes.  It describes the snapshot's kernel to debuggers:

* ``.debug_info``/``.debug_abbrev``/``.debug_str``: one DWARF-4 compilation unit with every type of
  the :class:`~mmintro.types.TypeDB` (base, pointer, const/volatile/restrict, typedef, struct/union
  and declarations, bitfields, arrays, enums, function types), a ``DW_TAG_variable`` located with
  ``DW_OP_addr`` for every object symbol that has a type, and a ``DW_TAG_subprogram`` for every
  function symbol, or those named in ``dwarf_functions`` (drgn detects SPARSEMEM_VMEMMAP from a subprogram named ``vmemmap_populate``).
* ``.symtab``/``.strtab``: every symbol, so drgn and GDB can name the symbol containing an address.
* ``.note.gnu.build-id`` (also covered by a ``PT_NOTE``): drgn reads the build ID of a file with
  section headers from its ``SHT_NOTE`` sections, and only falls back to ``PT_NOTE`` without them;
  it must equal VMCOREINFO's ``BUILD-ID`` or drgn ignores the file.
* ``PT_LOAD`` segments with no file bytes (``p_filesz`` 0) over ``.text`` and ``.data``: drgn takes
  the kernel module's address range from the ``PT_LOAD`` segments of the file, and looks up symbols
  by address only inside that range.
* any extra ``sections`` given by the caller (non-alloc ``SHT_PROGBITS``), e.g. ``.mmintro.types``
  built by :func:`dump_types_section`.

Flexible array members (``nelems`` 0) get a ``DW_TAG_subrange_type`` with no count, as GCC emits
for ``x[]``; drgn reads that as an incomplete array (and as a zero-length array where it is not the
last member), GDB as ``x[]``.  A typedef named ``freelist_idx_t`` is never written (drgn would
switch its slab helpers to SLAB mode); references to it resolve to its target.

The output is deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import bisect
import gzip
import json
import struct
from dataclasses import dataclass
from os import PathLike

from mmintro.types.typedata import Type, TypeDB

__all__ = ["Symbol", "ImageSection", "write_vmlinux", "read_build_id", "dump_types_section", "SKIPPED_TYPEDEFS"]

#: Typedefs never written to the DWARF (drgn's slab helpers switch to SLAB mode on freelist_idx_t).
SKIPPED_TYPEDEFS = frozenset({"freelist_idx_t"})

PRODUCER = "mmintro"

# --- DWARF constants ---------------------------------------------------------------------------------
DW_TAG_array_type = 0x01
DW_TAG_enumeration_type = 0x04
DW_TAG_formal_parameter = 0x05
DW_TAG_member = 0x0D
DW_TAG_pointer_type = 0x0F
DW_TAG_compile_unit = 0x11
DW_TAG_structure_type = 0x13
DW_TAG_subroutine_type = 0x15
DW_TAG_typedef = 0x16
DW_TAG_union_type = 0x17
DW_TAG_unspecified_parameters = 0x18
DW_TAG_base_type = 0x24
DW_TAG_const_type = 0x26
DW_TAG_enumerator = 0x28
DW_TAG_subprogram = 0x2E
DW_TAG_subrange_type = 0x21
DW_TAG_variable = 0x34
DW_TAG_volatile_type = 0x35
DW_TAG_restrict_type = 0x37

DW_AT_location = 0x02
DW_AT_name = 0x03
DW_AT_byte_size = 0x0B
DW_AT_bit_size = 0x0D
DW_AT_low_pc = 0x11
DW_AT_high_pc = 0x12
DW_AT_language = 0x13
DW_AT_const_value = 0x1C
DW_AT_producer = 0x25
DW_AT_prototyped = 0x27
DW_AT_count = 0x37
DW_AT_data_member_location = 0x38
DW_AT_declaration = 0x3C
DW_AT_encoding = 0x3E
DW_AT_external = 0x3F
DW_AT_type = 0x49
DW_AT_data_bit_offset = 0x6B

DW_FORM_addr = 0x01
DW_FORM_data2 = 0x05
DW_FORM_data4 = 0x06
DW_FORM_data8 = 0x07
DW_FORM_data1 = 0x0B
DW_FORM_sdata = 0x0D
DW_FORM_strp = 0x0E
DW_FORM_udata = 0x0F
DW_FORM_ref4 = 0x13
DW_FORM_exprloc = 0x18
DW_FORM_flag_present = 0x19

DW_ATE_boolean = 0x02
DW_ATE_float = 0x04
DW_ATE_signed = 0x05
DW_ATE_signed_char = 0x06
DW_ATE_unsigned = 0x07
DW_ATE_unsigned_char = 0x08

DW_LANG_C99 = 0x0C
DW_OP_addr = 0x03

# --- ELF constants -----------------------------------------------------------------------------------
ET_EXEC = 2
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHT_NOBITS = 8
SHF_WRITE = 1
SHF_ALLOC = 2
SHF_EXECINSTR = 4
SHN_ABS = 0xFFF1
STB_GLOBAL = 1
STT_OBJECT = 1
STT_FUNC = 2
NT_GNU_BUILD_ID = 3

PAGE = 4096
START_KERNEL_MAP = 0xFFFF_FFFF_8000_0000  # __START_KERNEL_map: PT_LOAD p_paddr = p_vaddr - this
KERNEL_SPACE = 0x8000_0000_0000_0000  # addresses below are per-CPU offsets (.data..percpu)


@dataclass
class Symbol:
    name: str
    address: int  # kernel virtual address
    size: int
    kind: str  # "object" or "func"
    type: Type | None = None  # for objects: the variable's type (DW_TAG_variable); None → symtab only


@dataclass
class ImageSection:
    """One section of the kernel image with its bytes, as a real vmlinux has them.

    ``kind`` is ``text``, ``rodata``, ``data`` or ``bss`` (no file bytes); ``data`` holds the
    section's contents (``len(data)`` = ``size``) for the others."""

    name: str  # ".text", ".rodata", ".data", ".data..percpu", ".bss"
    kind: str
    address: int  # link (virtual) address
    paddr: int  # load (physical) address
    size: int
    data: bytes | memoryview | None = None


_IMAGE_KINDS = {
    "text": (SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, PF_R | PF_X),
    "rodata": (SHT_PROGBITS, SHF_ALLOC, PF_R),
    "data": (SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, PF_R | PF_W),
    "bss": (SHT_NOBITS, SHF_ALLOC | SHF_WRITE, PF_R | PF_W),
}


def dump_types_section(types: TypeDB) -> bytes:
    """The ``.mmintro.types`` section: the type data as gzipped JSON (load with ``load_types``)."""
    return gzip.compress(json.dumps(types.doc).encode(), mtime=0)


# --- LEB128 ------------------------------------------------------------------------------------------
def _uleb(v: int) -> bytes:
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if (v == 0 and not b & 0x40) or (v == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


# --- DWARF builder ------------------------------------------------------------------------------------
class _Dwarf:
    """Accumulates DIEs of one compilation unit; references are patched at the end."""

    def __init__(self) -> None:
        self.abbrevs: dict[tuple, int] = {}
        self.abbrev = bytearray()
        self.strs: dict[str, int] = {}
        self.str = bytearray()
        self.info = bytearray(11)  # CU header, filled in by finish()
        self.fixups: list[tuple[int, object]] = []
        self.offsets: dict[object, int] = {}

    def strp(self, s: str) -> bytes:
        off = self.strs.get(s)
        if off is None:
            off = len(self.str)
            self.strs[s] = off
            self.str += s.encode() + b"\0"
        return struct.pack("<I", off)

    def die(self, tag: int, children: bool, attrs: list[tuple[int, int, object]], key: object = None) -> None:
        spec = (tag, children, tuple((a, f) for a, f, _ in attrs))
        code = self.abbrevs.get(spec)
        if code is None:
            code = len(self.abbrevs) + 1
            self.abbrevs[spec] = code
            self.abbrev += _uleb(code) + _uleb(tag) + bytes((1 if children else 0,))
            for a, f, _ in attrs:
                self.abbrev += _uleb(a) + _uleb(f)
            self.abbrev += b"\0\0"
        info = self.info
        if key is not None:
            self.offsets[key] = len(info)
        info += _uleb(code)
        for _, form, v in attrs:
            if form == DW_FORM_strp:
                info += self.strp(v)  # type: ignore[arg-type]
            elif form == DW_FORM_ref4:
                self.fixups.append((len(info), v))
                info += b"\0\0\0\0"
            elif form == DW_FORM_udata:
                info += _uleb(v)  # type: ignore[arg-type]
            elif form == DW_FORM_sdata:
                info += _sleb(v)  # type: ignore[arg-type]
            elif form == DW_FORM_data1:
                info.append(v)  # type: ignore[arg-type]
            elif form == DW_FORM_data2:
                info += struct.pack("<H", v)
            elif form == DW_FORM_data4:
                info += struct.pack("<I", v)
            elif form in (DW_FORM_data8, DW_FORM_addr):
                info += struct.pack("<Q", v)
            elif form == DW_FORM_exprloc:
                info += _uleb(len(v)) + v  # type: ignore[arg-type]
            elif form == DW_FORM_flag_present:
                pass
            else:  # pragma: no cover
                raise ValueError(f"unsupported form {form:#x}")

    def end_children(self) -> None:
        self.info.append(0)

    def finish(self) -> tuple[bytes, bytes, bytes]:
        info = self.info
        for pos, key in self.fixups:
            try:
                off = self.offsets[key]
            except KeyError:  # pragma: no cover - a bug in the writer
                raise ValueError(f"DWARF reference to a type that was not written: {key!r}") from None
            struct.pack_into("<I", info, pos, off)
        # unit_length, version 4, debug_abbrev_offset 0, address_size 8
        struct.pack_into("<IHIB", info, 0, len(info) - 4, 4, 0, 8)
        return bytes(self.abbrev) + b"\0", bytes(info), bytes(self.str)


class _TypeWriter:
    def __init__(self, types: TypeDB, dw: _Dwarf) -> None:
        self.T = types
        self.dw = dw
        self.extra: list[Type] = []  # types outside types.types (e.g. from pointer_to), in first-use order
        self.extra_keys: dict[int, tuple[str, int]] = {}  # id(Type) → key
        ints: dict[str, Type] = {}
        for t in types.types:
            if t.kind == "int":
                ints.setdefault(t.name, t)
        self.ints = ints

    # -- references --------------------------------------------------------------------------------
    def key(self, t: Type | None) -> object:
        """The DIE key of a type, or None for void (no DW_AT_type)."""
        seen = 0
        while t is not None and (
            t.kind == "typedef_transparent" or (t.kind == "typedef" and t.name in SKIPPED_TYPEDEFS)
        ):
            t = t.target
            seen += 1
            if seen > 1000:  # pragma: no cover
                raise ValueError("typedef cycle")
        if t is None or t.kind == "void":
            return None
        tt = self.T.types
        if 0 < t.id < len(tt) and tt[t.id] is t:
            return t.id
        if 0 < t.id < len(tt) and tt[t.id].kind == t.kind and tt[t.id].name == t.name and t.kind != "ptr":
            return t.id  # the same type from another load of the same data
        k = self.extra_keys.get(id(t))
        if k is None:
            k = ("x", len(self.extra))
            self.extra_keys[id(t)] = k
            self.extra.append(t)
        return k

    def type_attr(self, attrs: list, t: Type | None) -> None:
        k = self.key(t)
        if k is not None:
            attrs.append((DW_AT_type, DW_FORM_ref4, k))

    def int_named(self, *names: str) -> Type | None:
        for n in names:
            t = self.ints.get(n)
            if t is not None:
                return t
        return None

    # -- DIEs --------------------------------------------------------------------------------------
    def write_all(self) -> None:
        for t in self.T.types[1:]:
            self.write(t, t.id)
        i = 0
        while i < len(self.extra):  # writing an extra type may add more
            t = self.extra[i]
            self.write(t, ("x", i))
            i += 1
        if self.index_key == ("index",):
            self.dw.die(
                DW_TAG_base_type,
                False,
                [
                    (DW_AT_name, DW_FORM_strp, "__ARRAY_SIZE_TYPE__"),
                    (DW_AT_byte_size, DW_FORM_data1, 8),
                    (DW_AT_encoding, DW_FORM_data1, DW_ATE_unsigned),
                ],
                key=("index",),
            )

    def prepare(self) -> None:
        ul = self.int_named("long unsigned int")
        self.index_key = ul.id if ul is not None and ul.size_ == 8 else ("index",)

    def write(self, t: Type, key: object) -> None:
        dw = self.dw
        k = t.kind
        a: list = []
        if k == "int":
            name = t.name
            if t.encoding & 4:
                enc = DW_ATE_boolean
            elif name == "signed char":
                enc = DW_ATE_signed_char
            elif name in ("char", "unsigned char") or t.encoding & 2:
                # x86-64 Linux builds with -funsigned-char: plain char is unsigned unless BTF says signed
                enc = DW_ATE_signed_char if t.encoding & 1 else DW_ATE_unsigned_char
            else:
                enc = DW_ATE_signed if t.encoding & 1 else DW_ATE_unsigned
            dw.die(
                DW_TAG_base_type,
                False,
                [
                    (DW_AT_name, DW_FORM_strp, name),
                    (DW_AT_byte_size, DW_FORM_data1, t.size_),
                    (DW_AT_encoding, DW_FORM_data1, enc),
                ],
                key,
            )
        elif k == "float":
            dw.die(
                DW_TAG_base_type,
                False,
                [
                    (DW_AT_name, DW_FORM_strp, t.name),
                    (DW_AT_byte_size, DW_FORM_data1, t.size_),
                    (DW_AT_encoding, DW_FORM_data1, DW_ATE_float),
                ],
                key,
            )
        elif k == "ptr":
            a.append((DW_AT_byte_size, DW_FORM_data1, 8))
            self.type_attr(a, t.target)
            dw.die(DW_TAG_pointer_type, False, a, key)
        elif k in ("const", "volatile", "restrict"):
            self.type_attr(a, t.target)
            tag = {"const": DW_TAG_const_type, "volatile": DW_TAG_volatile_type, "restrict": DW_TAG_restrict_type}[k]
            dw.die(tag, False, a, key)
        elif k == "typedef":
            if t.name in SKIPPED_TYPEDEFS:
                return
            a.append((DW_AT_name, DW_FORM_strp, t.name))
            self.type_attr(a, t.target)
            dw.die(DW_TAG_typedef, False, a, key)
        elif k == "typedef_transparent":
            return  # a BTF type tag: references go straight to the target
        elif k == "array":
            self.type_attr(a, t.target)
            dw.die(DW_TAG_array_type, True, a, key)
            sub = [(DW_AT_type, DW_FORM_ref4, self.index_key)]
            if t.nelems:
                sub.append((DW_AT_count, DW_FORM_udata, t.nelems))
            dw.die(DW_TAG_subrange_type, False, sub)
            dw.end_children()
        elif k in ("struct", "union", "fwd"):
            tag = DW_TAG_union_type if k == "union" else DW_TAG_structure_type
            if t.name:
                a.append((DW_AT_name, DW_FORM_strp, t.name))
            if t.is_decl or k == "fwd":
                a.append((DW_AT_declaration, DW_FORM_flag_present, None))
                dw.die(tag, False, a, key)
                return
            a.append((DW_AT_byte_size, DW_FORM_udata, t.size_))
            dw.die(tag, bool(t.members), a, key)
            if t.members:
                for m in t.members:
                    ma: list = []
                    if m.name:
                        ma.append((DW_AT_name, DW_FORM_strp, m.name))
                    self.type_attr(ma, m.type)
                    if m.bit_size:
                        ma.append((DW_AT_bit_size, DW_FORM_udata, m.bit_size))
                        ma.append((DW_AT_data_bit_offset, DW_FORM_udata, m.bit_offset))
                    else:
                        if m.bit_offset % 8:
                            raise ValueError(f"{t.spelling()}.{m.name}: unaligned non-bitfield member")
                        ma.append((DW_AT_data_member_location, DW_FORM_udata, m.bit_offset // 8))
                    dw.die(DW_TAG_member, False, ma)
                dw.end_children()
        elif k == "enum":
            if t.name:
                a.append((DW_AT_name, DW_FORM_strp, t.name))
            if t.is_decl:
                a.append((DW_AT_declaration, DW_FORM_flag_present, None))
                dw.die(DW_TAG_enumeration_type, False, a, key)
                return
            a.append((DW_AT_byte_size, DW_FORM_data1, t.size_))
            under = self.enum_underlying(t)
            if under is not None:
                a.append((DW_AT_type, DW_FORM_ref4, under.id))
            dw.die(DW_TAG_enumeration_type, bool(t.values), a, key)
            if t.values:
                signed = t.signed
                for n, v in t.values:
                    if signed or v < 0:
                        form = DW_FORM_sdata
                    else:
                        form = DW_FORM_udata
                    dw.die(DW_TAG_enumerator, False, [(DW_AT_name, DW_FORM_strp, n), (DW_AT_const_value, form, v)])
                dw.end_children()
        elif k == "func_proto":
            a.append((DW_AT_prototyped, DW_FORM_flag_present, None))
            self.type_attr(a, t.target)
            dw.die(DW_TAG_subroutine_type, bool(t.params), a, key)
            if t.params:
                n = len(t.params)
                for i, (pname, ptype) in enumerate(t.params):
                    if i == n - 1 and not pname and self.key(ptype) is None:
                        dw.die(DW_TAG_unspecified_parameters, False, [])  # BTF's "..."
                        continue
                    pa: list = []
                    if pname:
                        pa.append((DW_AT_name, DW_FORM_strp, pname))
                    self.type_attr(pa, ptype)
                    dw.die(DW_TAG_formal_parameter, False, pa)
                dw.end_children()
        elif k == "void":
            return
        else:
            raise ValueError(f"type #{t.id}: unknown kind {k!r}")

    def enum_underlying(self, t: Type) -> Type | None:
        signed = t.signed or any(v < 0 for _, v in t.values)
        names = {
            (1, True): ("signed char",),
            (1, False): ("unsigned char",),
            (2, True): ("short int",),
            (2, False): ("short unsigned int",),
            (4, True): ("int",),
            (4, False): ("unsigned int",),
            (8, True): ("long int", "long long int"),
            (8, False): ("long unsigned int", "long long unsigned int"),
        }.get((t.size_, signed), ())
        u = self.int_named(*names)
        return u if u is not None and u.size_ == t.size_ else None


def _build_dwarf(
    types: TypeDB, symbols: list[Symbol], cu_name: str, dwarf_functions: frozenset[str] | set[str] | None = None
) -> tuple[bytes, bytes, bytes]:
    dw = _Dwarf()
    tw = _TypeWriter(types, dw)
    tw.prepare()
    dw.die(
        DW_TAG_compile_unit,
        True,
        [
            (DW_AT_producer, DW_FORM_strp, PRODUCER),
            (DW_AT_language, DW_FORM_data1, DW_LANG_C99),
            (DW_AT_name, DW_FORM_strp, cu_name),
            (DW_AT_low_pc, DW_FORM_addr, 0),
        ],
    )
    # Variables and subprograms first in symbol order; their type references are patched later.
    for s in symbols:
        if s.kind == "object" and s.type is not None:
            a: list = [(DW_AT_name, DW_FORM_strp, s.name)]
            tw.type_attr(a, s.type)
            a.append((DW_AT_external, DW_FORM_flag_present, None))
            a.append((DW_AT_location, DW_FORM_exprloc, bytes((DW_OP_addr,)) + struct.pack("<Q", s.address)))
            dw.die(DW_TAG_variable, False, a)
        elif s.kind == "func" and (dwarf_functions is None or s.name in dwarf_functions):
            a = [
                (DW_AT_name, DW_FORM_strp, s.name),
                (DW_AT_external, DW_FORM_flag_present, None),
                (DW_AT_low_pc, DW_FORM_addr, s.address),
            ]
            if s.size > 0:
                a.append((DW_AT_high_pc, DW_FORM_data4 if s.size < 1 << 32 else DW_FORM_data8, s.size))
            dw.die(DW_TAG_subprogram, False, a)
    tw.write_all()
    dw.end_children()  # compile unit
    return dw.finish()


# --- ELF ------------------------------------------------------------------------------------------------
class _StrTab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.index: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        off = self.index.get(s)
        if off is None:
            off = len(self.data)
            self.index[s] = off
            self.data += s.encode() + b"\0"
        return off


@dataclass
class _Section:
    name: str
    type: int = 0
    flags: int = 0
    addr: int = 0
    data: bytes = b""
    size: int = 0  # for NOBITS
    align: int = 1
    link: int = 0
    info: int = 0
    entsize: int = 0
    offset: int = 0
    page_aligned: bool = False  # an image section: its file offset is congruent to its address


def _page_range(lo: int, hi: int) -> tuple[int, int]:
    lo &= ~(PAGE - 1)
    hi = (hi + PAGE - 1) & ~(PAGE - 1)
    return lo, max(hi, lo + PAGE)


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    n = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def write_vmlinux(
    path: str | PathLike[str],
    types: TypeDB,
    symbols: list[Symbol],
    build_id: bytes,
    sections: dict[str, bytes] | None = None,
    dwarf_functions: frozenset[str] | set[str] | None = None,
    image: list[ImageSection] | None = None,
) -> None:
    """Write NAME.vmlinux: DWARF for ``types`` and ``symbols``, a symbol table and the build ID.

    ``dwarf_functions``: the names of the functions that get a ``DW_TAG_subprogram`` (all of
    them when None); the others are in ``.symtab`` only.  A real kernel has ~150k functions,
    and ``llvm-dwarfdump --verify`` takes time quadratic in the subprograms of one unit.

    ``image``: the kernel image's sections with their bytes.  The file then is a kernel as crash
    wants one (text and data contents, a ``PT_LOAD`` with file bytes per section, symbols in
    their sections so their types read T/R/D/B); without it the address sections are NOBITS
    spans over the symbols.  Runs of zero pages in the image are left as holes in the file."""
    if not build_id:
        raise ValueError("build_id must not be empty")
    for s in symbols:
        if s.kind not in ("object", "func"):
            raise ValueError(f"symbol {s.name!r}: kind must be 'object' or 'func', not {s.kind!r}")
        if s.address < 0 or s.address >= 1 << 64 or s.size < 0:
            raise ValueError(f"symbol {s.name!r}: bad address or size")
    kernel = str(types.doc.get("kernel", "")) if isinstance(types.doc, dict) else ""
    cu_name = f"mmintro-linux-{kernel}" if kernel else "mmintro"
    abbrev, info, strs = _build_dwarf(types, symbols, cu_name, dwarf_functions)

    note = _note(b"GNU", NT_GNU_BUILD_ID, bytes(build_id))
    secs: list[_Section] = [_Section(""), _Section(".note.gnu.build-id", SHT_NOTE, data=note, align=4)]
    if image is not None:
        loads, shndx, entry = _image_sections(secs, image)
    else:
        loads, shndx, entry = _symbol_spans(secs, symbols)
    _finish(path, secs, symbols, shndx, sections, abbrev, info, strs, loads, entry)


def _symbol_spans(secs: list[_Section], symbols: list[Symbol]) -> tuple:
    """Address sections without bytes: NOBITS .text (functions), .data (kernel objects) and
    .data..percpu (per-CPU offsets) spanning their symbols, and PT_LOADs (no file bytes) over
    .text/.data.  Symbols outside the kernel image mapping (other than per-CPU offsets) get
    SHN_ABS, so that no section or PT_LOAD spans e.g. the direct map."""
    funcs = [s for s in symbols if s.kind == "func" and s.address >= START_KERNEL_MAP]
    kobjs = [s for s in symbols if s.kind == "object" and s.address >= START_KERNEL_MAP]
    pobjs = [s for s in symbols if s.kind == "object" and s.address < KERNEL_SPACE]
    ranges: list[tuple[str, int, int, int, list[Symbol]]] = []  # name, flags, start, end, symbols
    if funcs:
        lo, hi = _page_range(min(s.address for s in funcs), max(s.address + s.size for s in funcs))
        ranges.append([".text", SHF_ALLOC | SHF_EXECINSTR, lo, hi, funcs])  # type: ignore[arg-type]
    if kobjs:
        lo, hi = _page_range(min(s.address for s in kobjs), max(s.address + s.size for s in kobjs))
        if ranges and lo < ranges[0][3] and ranges[0][2] < hi:
            # overlaps .text: one section covers both
            r = ranges[0]
            r[2], r[3] = min(r[2], lo), max(r[3], hi)  # type: ignore[index]
            r[4] = funcs + kobjs  # type: ignore[index]
        else:
            ranges.append([".data", SHF_ALLOC | SHF_WRITE, lo, hi, kobjs])  # type: ignore[arg-type]
    load_ranges = sorted(ranges, key=lambda r: r[2])
    if pobjs:
        hi = max(s.address + s.size for s in pobjs)
        ranges.append([".data..percpu", SHF_ALLOC | SHF_WRITE, 0, max(hi, 1), pobjs])  # type: ignore
    sym_shndx: dict[int, int] = {}
    index = {}
    for name, flags, lo, hi, syms in ranges:
        sym_shndx.update({id(s): len(secs) for s in syms})
        index[name] = len(secs)
        secs.append(_Section(name, SHT_NOBITS, flags, addr=lo, size=hi - lo, align=PAGE))
    loads = []
    for _name, flags, lo, hi, _ in load_ranges:
        pf = PF_R | (PF_X if flags & SHF_EXECINSTR else 0) | (PF_W if flags & SHF_WRITE else 0)
        paddr = lo - START_KERNEL_MAP if lo >= START_KERNEL_MAP else lo
        loads.append(([PT_LOAD, pf, 0, lo, paddr, 0, hi - lo, PAGE], None))  # no file bytes: offset 0
    return loads, (lambda s: sym_shndx.get(id(s), SHN_ABS)), 0


def _image_sections(secs: list[_Section], image: list[ImageSection]) -> tuple:
    """The image's sections with their bytes, a PT_LOAD with file bytes for each (its file offset
    congruent to its address modulo the page), and each symbol in the section holding it."""
    image = sorted(image, key=lambda s: s.address)
    for a, b in zip(image, image[1:]):
        if a.address + a.size > b.address:
            raise ValueError(f"image sections {a.name} and {b.name} overlap")
    for sec in image:
        if sec.kind not in _IMAGE_KINDS:
            raise ValueError(f"image section {sec.name}: kind must be one of {', '.join(_IMAGE_KINDS)}")
        if sec.kind != "bss" and (sec.data is None or len(sec.data) != sec.size):
            raise ValueError(
                f"image section {sec.name}: {sec.size:#x} bytes, data has {0 if sec.data is None else len(sec.data):#x}"
            )
    first = len(secs)
    loads = []
    for i, sec in enumerate(image):
        sh_type, flags, pf = _IMAGE_KINDS[sec.kind]
        secs.append(
            _Section(
                sec.name,
                sh_type,
                flags,
                addr=sec.address,
                data=b"" if sec.kind == "bss" else sec.data,
                size=sec.size,
                align=PAGE,  # type: ignore[arg-type]
                page_aligned=True,
            )
        )
        loads.append(
            ([PT_LOAD, pf, 0, sec.address, sec.paddr, 0 if sec.kind == "bss" else sec.size, sec.size, PAGE], first + i)
        )
    starts = [sec.address for sec in image]

    def shndx(s: Symbol) -> int:
        # the section holding the address; an end marker (_etext, __bss_stop) stays in its section
        i = bisect.bisect_right(starts, s.address) - 1
        if i >= 0 and s.address <= image[i].address + image[i].size:
            return first + i
        return SHN_ABS

    return loads, shndx, image[0].address if image else 0


def _finish(
    path,
    secs: list[_Section],
    symbols: list[Symbol],
    shndx,
    sections: dict[str, bytes] | None,
    abbrev: bytes,
    info: bytes,
    strs: bytes,
    loads: list,
    entry: int,
) -> None:
    """The sections every vmlinux has after its address sections (the caller's extra ones, the
    DWARF, the symbol table, the section names), the program headers (``loads``: a PT_LOAD and
    the index of the section whose file offset it takes, or None; then the PT_NOTE over the
    build ID, section 1), the layout, and the file.  Sections' bytes are written with
    :func:`_write_sparse`: whole zero pages are holes."""
    for name in sorted(sections or {}):
        if any(s.name == name for s in secs) or name in (".debug_abbrev", ".debug_info", ".debug_str"):
            raise ValueError(f"extra section {name!r} clashes with a section the writer makes")
        secs.append(_Section(name, SHT_PROGBITS, data=bytes(sections[name]), align=8))  # type: ignore[index]
    secs.append(_Section(".debug_abbrev", SHT_PROGBITS, data=abbrev))
    secs.append(_Section(".debug_info", SHT_PROGBITS, data=info))
    secs.append(_Section(".debug_str", SHT_PROGBITS, 0x30, data=strs, entsize=1))  # SHF_MERGE|SHF_STRINGS

    strtab = _StrTab()
    symtab = bytearray(24)
    for s in sorted(symbols, key=lambda s: (s.address, s.name)):
        st_type = STT_FUNC if s.kind == "func" else STT_OBJECT
        symtab += struct.pack(
            "<IBBHQQ", strtab.add(s.name), (STB_GLOBAL << 4) | st_type, 0, shndx(s), s.address, s.size
        )
    symtab_idx = len(secs)
    secs.append(_Section(".symtab", SHT_SYMTAB, data=bytes(symtab), align=8, link=symtab_idx + 1, info=1, entsize=24))
    secs.append(_Section(".strtab", SHT_STRTAB, data=bytes(strtab.data)))
    shstr = _StrTab()
    shstrtab_sec = _Section(".shstrtab", SHT_STRTAB)
    secs.append(shstrtab_sec)
    name_offs = [shstr.add(s.name) for s in secs]
    shstrtab_sec.data = bytes(shstr.data)

    note = secs[1]
    phdrs = [ph for ph, _ in loads] + [[PT_NOTE, PF_R, 0, 0, 0, len(note.data), len(note.data), 4]]

    # -- layout: image sections page-aligned (file offset = address modulo the page)
    off = 64 + 56 * len(phdrs)
    for s in secs[1:]:
        align = PAGE if s.page_aligned else s.align
        if s.type == SHT_NOBITS:
            s.offset = (off + align - 1) & ~(align - 1) if s.page_aligned else off
            continue
        off = (off + align - 1) & ~(align - 1)
        s.offset = off
        off += len(s.data)
    for ph, (_, idx) in zip(phdrs, loads):
        if idx is not None:
            ph[2] = secs[idx].offset
    phdrs[-1][2] = note.offset
    shoff = (off + 7) & ~7

    head = bytearray(64 + 56 * len(phdrs))
    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)
    struct.pack_into(
        "<16sHHIQQQIHHHHHH",
        head,
        0,
        ident,
        ET_EXEC,
        EM_X86_64,
        1,
        entry,
        64,
        shoff,
        0,
        64,
        56,
        len(phdrs),
        64,
        len(secs),
        len(secs) - 1,
    )
    for i, p in enumerate(phdrs):
        struct.pack_into("<IIQQQQQQ", head, 64 + 56 * i, *p)
    shdrs = bytearray(64 * len(secs))
    for i, s in enumerate(secs):
        if i == 0:
            continue
        size = s.size if s.type == SHT_NOBITS else len(s.data)
        struct.pack_into(
            "<IIQQQQIIQQ",
            shdrs,
            64 * i,
            name_offs[i],
            s.type,
            s.flags,
            s.addr,
            s.offset,
            size,
            s.link,
            s.info,
            s.align,
            s.entsize,
        )
    with open(path, "wb") as f:
        f.write(head)
        for s in secs[1:]:
            if s.type != SHT_NOBITS and len(s.data):
                _write_sparse(f, s.offset, s.data)
        f.seek(shoff)
        f.write(shdrs)


def _write_sparse(f, offset: int, data: bytes | memoryview) -> None:
    """Write ``data`` at ``offset``, seeking over whole zero pages (a hole reads as zeros)."""
    mv = memoryview(data).cast("B")
    if len(mv) < 4 * PAGE:
        f.seek(offset)
        f.write(mv)
        return
    zero = bytes(PAGE)
    pos, n = 0, len(mv)
    while pos < n:
        end = pos
        while end < n and mv[end : end + PAGE] != zero[: min(PAGE, n - end)]:
            end += PAGE
        if end > pos:
            f.seek(offset + pos)
            f.write(mv[pos : min(end, n)])
        pos = end
        while pos < n and mv[pos : pos + PAGE] == zero[: min(PAGE, n - pos)]:
            pos += PAGE


# --- build ID -----------------------------------------------------------------------------------------
def _notes_build_id(buf: bytes, start: int, size: int, align: int) -> bytes | None:
    p, end = start, min(start + size, len(buf))
    a = 8 if align == 8 else 4
    while p + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", buf, p)
        p += 12
        name = buf[p : p + namesz]
        p += (namesz + a - 1) & ~(a - 1)
        desc = buf[p : p + descsz]
        p += (descsz + a - 1) & ~(a - 1)
        if ntype == NT_GNU_BUILD_ID and name == b"GNU\0" and descsz:
            return bytes(desc)
    return None


def read_build_id(path: str | PathLike[str]) -> bytes:
    """The NT_GNU_BUILD_ID of an ELF64 little-endian file (SHT_NOTE sections first, then PT_NOTE)."""
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"\x7fELF":
        raise ValueError(f"{path}: not an ELF file")
    if buf[4] != 2 or buf[5] != 1:
        raise ValueError(f"{path}: only ELF64 little-endian files are supported")
    if len(buf) < 64:
        raise ValueError(f"{path}: truncated ELF header")
    (e_phoff, e_shoff) = struct.unpack_from("<QQ", buf, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", buf, 54)
    try:
        for i in range(e_shnum if e_shoff else 0):
            sh_type, _fl, _ad, sh_offset, sh_size, _l, _i, sh_align = struct.unpack_from(
                "<IQQQQIIQ", buf, e_shoff + i * e_shentsize + 4
            )
            if sh_type == SHT_NOTE:
                bid = _notes_build_id(buf, sh_offset, sh_size, sh_align)
                if bid:
                    return bid
        for i in range(e_phnum if e_phoff else 0):
            p_type, _f, p_offset, _v, _p, p_filesz, _m, p_align = struct.unpack_from(
                "<IIQQQQQQ", buf, e_phoff + i * e_phentsize
            )
            if p_type == PT_NOTE:
                bid = _notes_build_id(buf, p_offset, p_filesz, p_align)
                if bid:
                    return bid
    except struct.error:
        raise ValueError(f"{path}: truncated or corrupt ELF headers") from None
    raise ValueError(f"{path}: no GNU build ID note (NT_GNU_BUILD_ID)")
