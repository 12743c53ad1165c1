"""Minimal ELF64 little-endian parsing with the standard library only.

Enough for a kernel crash dump pair: the file header, program headers (the core), section
headers, ``.symtab``, notes and named sections (the vmlinux).  Every offset and count read
from the file is bounds-checked, so a truncated or bit-flipped file raises
:class:`~mmintro.reader.errors.SnapshotError` naming the problem instead of an IndexError.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from mmintro.reader.errors import SnapshotError

__all__ = [
    "ET_REL",
    "ET_EXEC",
    "ET_DYN",
    "ET_CORE",
    "EM_X86_64",
    "PT_LOAD",
    "PT_NOTE",
    "PN_XNUM",
    "ElfHeader",
    "Symbol",
    "ElfFile",
    "map_file",
    "parse_header",
    "iter_notes",
]

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
EM_X86_64 = 62
PT_LOAD, PT_NOTE = 1, 4
PN_XNUM = 0xFFFF
SHT_SYMTAB, SHT_NOTE, SHT_NOBITS = 2, 7, 8
NT_GNU_BUILD_ID = 3
STT_NAMES = {0: "notype", 1: "object", 2: "func", 3: "section", 4: "file", 5: "common", 6: "tls"}
STB_NAMES = {0: "local", 1: "global", 2: "weak", 10: "unique"}

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")


def map_file(path: str | os.PathLike, what: str) -> mmap.mmap:
    """mmap a file read-only; SnapshotError if it is missing or empty."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise SnapshotError(f"{what} {os.fspath(path)!r} is empty")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise SnapshotError(f"{what} {os.fspath(path)!r} does not exist") from None
    except IsADirectoryError:
        raise SnapshotError(f"{what} {os.fspath(path)!r} is a directory") from None
    except PermissionError:
        raise SnapshotError(f"{what} {os.fspath(path)!r} is not readable") from None


class ElfHeader(NamedTuple):
    e_type: int
    e_machine: int
    e_phoff: int
    e_shoff: int
    e_phnum: int
    e_shnum: int
    e_shstrndx: int


def parse_header(buf: mmap.mmap | bytes, what: str, types: tuple[int, ...]) -> ElfHeader:
    """Validate the ELF identification and header; ``types`` lists the acceptable e_type."""
    size = len(buf)
    if size < EHDR.size:
        raise SnapshotError(f"{what} is truncated: {size} bytes, shorter than an ELF header")
    (
        ident,
        e_type,
        e_machine,
        e_version,
        _entry,
        phoff,
        shoff,
        _flags,
        ehsize,
        phentsize,
        phnum,
        shentsize,
        shnum,
        shstrndx,
    ) = EHDR.unpack_from(buf, 0)
    if ident[:4] != b"\x7fELF":
        raise SnapshotError(f"{what} is not an ELF file (bad magic {ident[:4]!r})")
    if ident[4] != 2:
        raise SnapshotError(f"{what}: unsupported ELF class {ident[4]} (need ELFCLASS64)")
    if ident[5] != 1:
        raise SnapshotError(f"{what}: unsupported ELF data encoding {ident[5]} (need little-endian)")
    if ident[6] != 1 or e_version != 1:
        raise SnapshotError(f"{what}: bad ELF version {ident[6]}/{e_version}")
    if e_type not in types:
        want = " or ".join(ET_NAMES[t] for t in types)
        got = ET_NAMES.get(e_type, f"type {e_type}")
        hint = " (is it the vmlinux?)" if e_type in (ET_EXEC, ET_DYN) and ET_CORE in types else ""
        hint = hint or (" (is it the vmcore?)" if e_type == ET_CORE else "")
        raise SnapshotError(f"{what} is {got}, expected {want}{hint}")
    if e_machine != EM_X86_64:
        raise SnapshotError(f"{what}: machine {e_machine} is not x86-64 ({EM_X86_64})")
    # QEMU's dump-guest-memory (7.2 and earlier) writes e_ehsize = 8, sizeof a pointer
    # (dump/dump.c: sizeof(elf_header) of an Elf64_Ehdr *); the header itself is whole.
    if ehsize != EHDR.size and not (e_type == ET_CORE and ehsize == 8):
        raise SnapshotError(f"{what}: bad ELF header size {ehsize}")
    if phnum and phentsize != PHDR.size:
        raise SnapshotError(f"{what}: bad program header entry size {phentsize}")
    if shnum and shentsize != SHDR.size:
        raise SnapshotError(f"{what}: bad section header entry size {shentsize}")
    if shnum == 0 and shoff == 0 and phnum == PN_XNUM:
        raise SnapshotError(f"{what}: PN_XNUM program header count without section header 0")
    if shnum or phnum == PN_XNUM:
        if shoff + SHDR.size > size:
            raise SnapshotError(f"{what} is truncated: section headers at {shoff:#x} lie beyond the end ({size:#x})")
        if phnum == PN_XNUM:  # the real count is in section 0's sh_info
            phnum = SHDR.unpack_from(buf, shoff)[7]
        if shnum == 0:
            shnum = SHDR.unpack_from(buf, shoff)[5]
        if shoff + shnum * SHDR.size > size:
            raise SnapshotError(f"{what} is truncated: {shnum} section headers at {shoff:#x} end beyond {size:#x}")
    if phoff + phnum * PHDR.size > size:
        raise SnapshotError(
            f"{what} is truncated: {phnum} program headers at {phoff:#x} end beyond the file ({size:#x} bytes)"
        )
    return ElfHeader(e_type, e_machine, phoff, shoff, phnum, shnum, shstrndx)


def iter_notes(buf: mmap.mmap | bytes, start: int, end: int, what: str) -> Iterator[tuple[str, int, bytes]]:
    """(name, type, desc) of each note in ``buf[start:end]``."""
    off = start
    while off + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", buf, off)
        name_off = off + 12
        desc_off = name_off + (namesz + 3 & ~3)
        nxt = desc_off + (descsz + 3 & ~3)
        if desc_off + descsz > end:
            raise SnapshotError(f"{what}: note at {off:#x} overruns its segment")
        name = bytes(buf[name_off : name_off + namesz]).rstrip(b"\0").decode("latin-1")
        yield name, ntype, bytes(buf[desc_off : desc_off + descsz])
        off = nxt


@dataclass(frozen=True)
class Symbol:
    """An ELF symbol, like drgn's ``drgn.Symbol``."""

    name: str
    address: int
    size: int
    kind: str  # object, func, notype, ...
    binding: str  # local, global, weak
    shndx: int = -1  # the ELF section index (-1: not known, e.g. from kallsyms)

    def contains(self, addr: int) -> bool:
        return self.address <= addr < self.address + max(self.size, 1)


class Section(NamedTuple):
    name: str
    type: int
    addr: int
    offset: int
    size: int


class ElfFile:
    """A vmlinux (or any ELF64 x86-64 executable): sections, symbols and notes."""

    def __init__(self, path: str | os.PathLike, what: str = "vmlinux") -> None:
        self.path = os.fspath(path)
        self.what = f"{what} {self.path!r}"
        self.buf = map_file(path, what)
        self.header = parse_header(self.buf, self.what, (ET_EXEC, ET_DYN, ET_REL))
        self.sections = self._sections()
        self._by_name = {s.name: s for s in self.sections}
        self._symbols: list[Symbol] | None = None

    def _sections(self) -> list[Section]:
        h, buf, size = self.header, self.buf, len(self.buf)
        raw = [SHDR.unpack_from(buf, h.e_shoff + i * SHDR.size) for i in range(h.e_shnum)]
        for i, s in enumerate(raw):
            if s[1] != SHT_NOBITS and s[1] != 0 and s[4] + s[5] > size:
                raise SnapshotError(
                    f"{self.what} is truncated: section {i} needs bytes up to {s[4] + s[5]:#x}, file has {size:#x}"
                )
        if not raw:
            return []
        if h.e_shstrndx >= len(raw):
            raise SnapshotError(f"{self.what}: section name table index {h.e_shstrndx} out of range")
        st = raw[h.e_shstrndx]
        strtab = bytes(buf[st[4] : st[4] + st[5]])
        out = []
        for s in raw:
            end = strtab.find(b"\0", s[0])
            if s[0] >= len(strtab) and s[0]:
                raise SnapshotError(f"{self.what}: section name offset {s[0]:#x} out of range")
            out.append(Section(strtab[s[0] : end].decode("latin-1"), s[1], s[3], s[4], s[5]))
        return out

    def section(self, name: str) -> bytes | None:
        s = self._by_name.get(name)
        if s is None or s.type == SHT_NOBITS:
            return None
        return bytes(self.buf[s.offset : s.offset + s.size])

    @property
    def build_id(self) -> bytes | None:
        for s in self.sections:
            if s.type == SHT_NOTE:
                for name, ntype, desc in iter_notes(self.buf, s.offset, s.offset + s.size, self.what):
                    if name == "GNU" and ntype == NT_GNU_BUILD_ID:
                        return desc
        return None

    # -- symbols ------------------------------------------------------------------
    @property
    def symbols(self) -> list[Symbol]:
        """All named symbols, sorted by address."""
        if self._symbols is None:
            self._symbols = self._read_symbols()
        return self._symbols

    def _read_symbols(self) -> list[Symbol]:
        symtab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
        if symtab is None:
            return []
        link = SHDR.unpack_from(self.buf, self.header.e_shoff + self.sections.index(symtab) * SHDR.size)[6]
        if link >= len(self.sections):
            raise SnapshotError(f"{self.what}: .symtab string table index {link} out of range")
        strs = self.sections[link]
        return parse_symtab(
            self.buf, symtab.offset, symtab.size, bytes(self.buf[strs.offset : strs.offset + strs.size])
        )


def parse_symtab(buf: Any, offset: int, size: int, strtab: bytes) -> list[Symbol]:
    """The symbols of a ``.symtab`` (``size`` bytes at ``offset`` in ``buf``, names in
    ``strtab``), section and file symbols left out, sorted by address (larger first at a tie)."""
    out = []
    for off in range(offset, offset + size - SYM.size + 1, SYM.size):
        st_name, info, _other, shndx, value, ssize = SYM.unpack_from(buf, off)
        if not st_name or st_name >= len(strtab):
            continue
        kind = STT_NAMES.get(info & 0xF, str(info & 0xF))
        if kind in ("section", "file"):
            continue
        name = strtab[st_name : strtab.find(b"\0", st_name)].decode("latin-1")
        out.append(Symbol(name, value, ssize, kind, STB_NAMES.get(info >> 4, str(info >> 4)), shndx))
    out.sort(key=lambda s: (s.address, -s.size))
    return out


class SymbolTable:
    """Symbols by name and by address (``symbol_at``), shifted by a KASLR offset."""

    def __init__(self, symbols: list[Symbol], offset: int = 0, sections: list[tuple[int, int]] | None = None) -> None:
        if offset:
            symbols = [Symbol(s.name, s.address + offset, s.size, s.kind, s.binding, s.shndx) for s in symbols]
        self.symbols = symbols
        #: (address, size) of each ELF section by index, shifted like the symbols (None: unknown)
        self.sections = None if sections is None else [(a + offset if a else 0, n) for a, n in sections]
        self._max_end: list[int] | None = None
        self.addresses = [s.address for s in symbols]
        self.by_name: dict[str, Symbol] = {}
        for s in symbols:  # prefer global definitions over local ones of the same name
            prev = self.by_name.get(s.name)
            if prev is None or (prev.binding == "local" and s.binding != "local"):
                self.by_name[s.name] = s

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def lookup(self, name: str) -> Symbol:
        try:
            return self.by_name[name]
        except KeyError:
            raise LookupError(f"could not find symbol {name!r}") from None

    def symbol_at(self, addr: int) -> Symbol:
        """The symbol containing ``addr`` (drgn's ``prog.symbol(address)``)."""
        i = bisect.bisect_right(self.addresses, addr)
        # Walk back over symbols starting at or before addr; the closest containing one wins.
        j = i - 1
        while j >= 0 and j >= i - 64:
            s = self.symbols[j]
            if s.contains(addr):
                return s
            j -= 1
        raise LookupError(f"could not find symbol containing {addr:#x}")

    def symbolize(self, addr: int) -> Symbol | None:
        """The symbol drgn names for ``addr`` when it formats a pointer (libdrgn/elf_symtab.c's
        search by address): of the symbols containing it, the closest start, then the smallest
        size, then global before weak before local; failing that, the closest size-0 symbol
        before it, if no symbol starting before it ends past that one and it lies in the same
        ELF section (so never without sections).  None when there is none."""
        if self._max_end is None:
            ends, m = [], 0
            for s in self.symbols:
                m = max(m, s.address + s.size)
                ends.append(m)
            self._max_end = ends
        i = bisect.bisect_right(self.addresses, addr)
        if i == 0:
            return None
        prec = {"global": 3, "unique": 3, "weak": 2}
        best: Symbol | None = None
        sizeless: Symbol | None = None
        j = i - 1
        while j >= 0 and (self._max_end[j] > addr or (sizeless is None and j >= i - 4096)):
            s = self.symbols[j]
            if s.size == 0:
                if sizeless is None or (
                    s.address == sizeless.address and prec.get(s.binding, 1) >= prec.get(sizeless.binding, 1)
                ):
                    sizeless = s
            elif addr - s.address < s.size:
                key = (s.address, -s.size, prec.get(s.binding, 1))
                # walking back, >= lets the earlier symbol in the table win a tie, as in drgn
                if best is None or key >= (best.address, -best.size, prec.get(best.binding, 1)):
                    best = s
            j -= 1
        if best is not None:
            return best
        if sizeless is None or sizeless.address < self._max_end[i - 1]:
            return None
        if self.sections is None or not 0 < sizeless.shndx < len(self.sections):
            return None  # (no sections, e.g. kallsyms: a size-0 symbol has nothing to bound it)
        start, size = self.sections[sizeless.shndx]
        return sizeless if start <= addr < start + size else None

    def describe(self, addr: int) -> str:
        """``name+0xoff/0xsize`` like the kernel's %pS, or the bare hex address."""
        try:
            s = self.symbol_at(addr)
        except LookupError:
            return f"{addr:#x}"
        return f"{s.name}+{addr - s.address:#x}/{s.size:#x}"
