"""Opening a snapshot (NAME.vmcore + NAME.vmlinux) as a :class:`Program`.

The program knows nothing of the simulator: it reads the core's physical memory, the
vmlinux's symbols and type data, and translates every virtual address through the
snapshot's own page tables (``swapper_pg_dir`` for kernel addresses), caching one
translation per leaf (4 KiB, 2 MiB or 1 GiB).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from mmintro.reader.core import CoreFile
from mmintro.reader.diskdump import KDUMP_SIGNATURE, MDF_SIGNATURE, DiskDumpFile
from mmintro.reader.elf import ElfFile, Symbol, SymbolTable
from mmintro.reader.errors import FaultError, SnapshotError, SymbolNotFoundError
from mmintro.reader.object import Object
from mmintro.reader.x86_pgtable import LEVELS_4, LEVELS_5, START_KERNEL_MAP, PageWalk, walk
from mmintro.types.typedata import Type, TypeDB, TypeError_, get_types

__all__ = ["Program", "open_snapshot"]

_TYPES_CACHE: dict[bytes, TypeDB] = {}
_U64 = struct.Struct("<Q")


def _load_types_section(blob: bytes | None, what: str) -> TypeDB:
    if blob is None:
        return get_types()
    key = hashlib.sha256(blob).digest()
    db = _TYPES_CACHE.get(key)
    if db is None:
        try:
            doc = json.loads(gzip.decompress(blob))
            check_types_doc(doc)
            db = TypeDB(doc)
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            AttributeError,
            RecursionError,
            zlib.error,
        ) as e:  # (a flipped bit, a bad index, a 5,000-deep array: never trusted)
            msg = " ".join(str(e).split())[:200] or type(e).__name__
            raise SnapshotError(f"{what}: corrupt .mmintro.types section ({msg})") from None
        _TYPES_CACHE[key] = db
    return db


_KINDS = {
    "int",
    "float",
    "ptr",
    "array",
    "struct",
    "union",
    "enum",
    "typedef",
    "const",
    "volatile",
    "restrict",
    "func_proto",
    "fwd",
    "void",
    "typedef_transparent",
}


def check_types_doc(doc: Any) -> None:
    """Raise ValueError unless ``doc`` (a snapshot's ``.mmintro.types``, which the reader
    must not trust) is well formed: every index in range, every size and offset a sane
    integer, no type containing itself (through members, arrays, typedefs or qualifiers) and
    no pointer or qualifier chain looping back (those would recurse or loop for ever)."""
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("types"), list)
        or not isinstance(doc.get("variables"), list)
    ):
        raise ValueError("not a type-data document")
    types = doc["types"]
    n = len(types)

    def index(v: Any, what: str) -> int:
        if type(v) is not int or not 0 <= v < n:
            raise ValueError(f"{what}: type index {v!r} out of range")
        return v

    def count(v: Any, what: str) -> None:
        if type(v) is not int or not 0 <= v < 1 << 48:
            raise ValueError(f"{what}: {v!r} is not a size")

    contains: list[list[int]] = [[] for _ in range(n)]  # a type's bytes include these types' bytes
    spells: list[list[int]] = [[] for _ in range(n)]  # spelling a type spells these
    for i, e in enumerate(types[1:], start=1):
        if not isinstance(e, dict) or e.get("kind") not in _KINDS:
            raise ValueError(f"type {i}: bad entry")
        k = e["kind"]
        for key in ("size", "nelems"):
            if key in e:
                count(e[key], f"type {i} {key}")
        if "type" in e:
            t = index(e["type"], f"type {i}")
            if k in ("typedef", "const", "volatile", "restrict", "array", "typedef_transparent"):
                contains[i].append(t)
            if k in ("ptr", "const", "volatile", "restrict", "array", "func_proto", "typedef_transparent"):
                spells[i].append(t)
        elif k in ("ptr", "array", "typedef", "const", "volatile", "restrict"):
            raise ValueError(f"type {i}: {k} without a target")
        for m in e.get("members", ()):
            if not isinstance(m, list) or len(m) != 4 or not isinstance(m[0], str):
                raise ValueError(f"type {i}: bad member {m!r}")
            contains[i].append(index(m[1], f"type {i} member {m[0]}"))
            count(m[2], f"type {i} member {m[0]} offset")
            count(m[3], f"type {i} member {m[0]} bit size")
        for p in e.get("params", ()):
            if not isinstance(p, list) or len(p) != 2:
                raise ValueError(f"type {i}: bad parameter {p!r}")
            spells[i].append(index(p[1], f"type {i} parameter"))
        for v in e.get("values", ()):
            if not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], str) or type(v[1]) is not int:
                raise ValueError(f"type {i}: bad enumerator {v!r}")
    for v in doc["variables"]:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            raise ValueError(f"bad variable {v!r}")
        index(v.get("type"), f"variable {v['name']}")
    for edges, what in ((contains, "contains itself"), (spells, "is its own pointer or qualifier")):
        state = bytearray(n)  # 0 unseen, 1 on the path, 2 done
        for root in range(n):
            if state[root]:
                continue
            stack = [(root, iter(edges[root]))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                elif state[nxt] == 1:
                    raise ValueError(f"type {nxt} {what}")
                elif not state[nxt]:
                    state[nxt] = 1
                    stack.append((nxt, iter(edges[nxt])))


class Program:
    """A kernel snapshot: memory, symbols and types (drgn's ``Program`` for mmintro)."""

    def __init__(
        self,
        core: CoreFile | DiskDumpFile,
        vmlinux: ElfFile | None,
        types: TypeDB,
        symbols: SymbolTable | None = None,
        kernel_image: Any = None,
    ) -> None:
        self.core = core
        self.vmlinux = vmlinux
        self.kernel_image = kernel_image  # a real dump's KernelImage (None for snapshots)
        self.types = types
        self.vmcoreinfo = core.vmcoreinfo
        self.cache: dict[str, Any] = {}  # for helpers, like drgn's prog.cache
        info = self.vmcoreinfo
        self.page_size = self.vmcoreinfo_number("PAGESIZE", 4096)
        if self.page_size != 4096:
            raise SnapshotError(f"{core.path!r}: PAGESIZE {self.page_size} is not supported (only 4096)")
        self.kernel_offset = int(info.get("KERNELOFFSET", "0"), 16)
        self.phys_base = self.vmcoreinfo_number("NUMBER(phys_base)", 0)
        # x86-64's KASLR moves the kernel within its 1 GiB image space; phys_base is the signed
        # difference between where the kernel was loaded and where it was linked to load (printed
        # with %ld: negative when KASLR put it lower), within the 52-bit physical address space
        for key, v, low, limit in (
            ("KERNELOFFSET", self.kernel_offset, 0, 1 << 32),
            ("NUMBER(phys_base)", self.phys_base, -(1 << 52), 1 << 52),
        ):
            if not low <= v < limit:
                raise SnapshotError(
                    f"{core.path!r}: VMCOREINFO {key} {v:#x} is impossible (not in {low:#x}..{limit:#x})"
                )
        if symbols is None:
            assert vmlinux is not None
            symbols = SymbolTable(
                vmlinux.symbols, self.kernel_offset, [(sec.addr, sec.size) for sec in vmlinux.sections]
            )
        self.symbols = symbols
        if "SYMBOL(swapper_pg_dir)" in info:
            pgd = int(info["SYMBOL(swapper_pg_dir)"], 16)
        elif "swapper_pg_dir" in self.symbols:
            pgd = self.symbols.lookup("swapper_pg_dir").address
        else:
            raise SnapshotError(f"{core.path!r}: VMCOREINFO has no SYMBOL(swapper_pg_dir)")
        # arch/x86/kernel/machine_kexec_64.c: NUMBER(pgtable_l5_enabled) says which paging
        # mode the dumped kernel ran in.
        self.levels = LEVELS_5 if self.vmcoreinfo_number("NUMBER(pgtable_l5_enabled)", 0) else LEVELS_4
        self.pgd_phys = self.kernel_image_phys(pgd)
        self._tlb: dict[int, tuple[dict, dict, dict]] = {}
        self._enum_types: dict[str, Type] | None = None

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Program {self.core.path!r} ({self.vmcoreinfo.get('OSRELEASE', '?')})>"

    # -- VMCOREINFO -------------------------------------------------------------------------
    def vmcoreinfo_number(self, key: str, default: int | None = None) -> int:
        """A decimal VMCOREINFO value (``PAGESIZE``, ``NUMBER(x)``, ``LENGTH(x)``, ``SIZE(x)``)."""
        v = self.vmcoreinfo.get(key)
        if v is None:
            if default is None:
                raise KeyError(f"VMCOREINFO has no {key}")
            return default
        return int(v, 0) if v.startswith(("0x", "-0x")) else int(v)

    # -- address translation ----------------------------------------------------------------
    def kernel_image_phys(self, vaddr: int) -> int:
        """Physical address of a kernel-image virtual address (no page-table walk):
        ``__phys_addr_symbol()``.  phys_base already holds the KASLR virtual offset too
        (head64.c's load_delta is taken against ``_text - __START_KERNEL_map``)."""
        return vaddr - START_KERNEL_MAP + self.phys_base

    def walk(self, vaddr: int, pgd_phys: int | None = None) -> PageWalk:
        """Every level of the walk for ``vaddr`` (crash's ``vtop``); FaultError if unmapped."""
        root = self.pgd_phys if pgd_phys is None else pgd_phys
        return walk(vaddr & 0xFFFFFFFFFFFFFFFF, root, self._read_entry, self.levels)

    def _read_entry(self, paddr: int) -> int:
        return _U64.unpack(self.core.read_phys(paddr, 8))[0]

    def translate(self, vaddr: int, pgd_phys: int | None = None) -> int:
        """Physical address of ``vaddr``; cached per leaf mapping."""
        return self._translate(vaddr, pgd_phys)[0]

    def _translate(self, vaddr: int, pgd_phys: int | None = None) -> tuple[int, int]:
        """(physical address, bytes left in the leaf)."""
        root = self.pgd_phys if pgd_phys is None else pgd_phys
        tlb = self._tlb.get(root)
        if tlb is None:
            tlb = self._tlb[root] = ({}, {}, {})
        d4k, d2m, d1g = tlb
        p = d4k.get(vaddr >> 12)
        if p is not None:
            return p | (vaddr & 0xFFF), 0x1000 - (vaddr & 0xFFF)
        p = d2m.get(vaddr >> 21)
        if p is not None:
            return p | (vaddr & 0x1FFFFF), 0x200000 - (vaddr & 0x1FFFFF)
        p = d1g.get(vaddr >> 30)
        if p is not None:
            return p | (vaddr & 0x3FFFFFFF), 0x40000000 - (vaddr & 0x3FFFFFFF)
        w = self.walk(vaddr, root)
        size = w.page_size
        base = w.phys & ~(size - 1)
        {0x1000: d4k, 0x200000: d2m, 0x40000000: d1g}[size][(vaddr & 0xFFFFFFFFFFFFFFFF) // size] = base
        return w.phys, size - (w.phys & (size - 1))

    def translate_range(self, vaddr: int, size: int, pgd_phys: int | None = None) -> Iterator[tuple[int, int, int]]:
        """(vaddr, paddr, length) runs covering ``[vaddr, vaddr+size)``, physically contiguous
        leaves merged.  Raises FaultError at the first unmapped byte."""
        pos, end = vaddr, vaddr + size
        run: list[int] | None = None
        while pos < end:
            phys, left = self._translate(pos, pgd_phys)
            n = min(left, end - pos)
            if run is not None and run[1] + run[2] == phys:
                run[2] += n
            else:
                if run is not None:
                    yield run[0], run[1], run[2]
                run = [pos, phys, n]
            pos += n
        if run is not None:
            yield run[0], run[1], run[2]

    # -- memory -------------------------------------------------------------------------------
    def read(self, vaddr: int, size: int, physical: bool = False, pgd_phys: int | None = None) -> bytes:
        """Bytes at a virtual address (or physical with ``physical=True``)."""
        if physical:
            return self.core.read_phys(vaddr, size)
        phys, left = self._translate(vaddr, pgd_phys)
        if size <= left:
            try:
                return self.core.read_phys(phys, size)
            except FaultError as e:
                raise FaultError(vaddr, f"{e.message} (physical {phys:#x})") from None
        return b"".join(self.core.read_phys(p, n) for _, p, n in self.translate_range(vaddr, size, pgd_phys))

    def read_phys(self, paddr: int, size: int) -> bytes:
        return self.core.read_phys(paddr, size)

    def _read_int(self, addr: int, size: int, signed: bool, physical: bool) -> int:
        return int.from_bytes(self.read(addr, size, physical), "little", signed=signed)

    def read_u8(self, addr: int, physical: bool = False) -> int:
        return self._read_int(addr, 1, False, physical)

    def read_u16(self, addr: int, physical: bool = False) -> int:
        return self._read_int(addr, 2, False, physical)

    def read_u32(self, addr: int, physical: bool = False) -> int:
        return self._read_int(addr, 4, False, physical)

    def read_u64(self, addr: int, physical: bool = False) -> int:
        return self._read_int(addr, 8, False, physical)

    def read_s32(self, addr: int, physical: bool = False) -> int:
        return self._read_int(addr, 4, True, physical)

    def read_s64(self, addr: int, physical: bool = False) -> int:
        return self._read_int(addr, 8, True, physical)

    read_word = read_u64

    def read_symbol_u32(self, name: str) -> int | None:
        """The 4 bytes at symbol ``name``: a static the type data does not declare (a variable
        of an anonymous enum, like ``vsyscall_mode``).  None when the kernel has no such symbol
        or its memory is not in the dump."""
        sym = self.symbols.by_name.get(name)
        if sym is None:
            return None
        try:
            return self.read_u32(sym.address)
        except FaultError:
            return None

    # -- symbols, types, objects ------------------------------------------------------------------
    def type(self, name: str | Type) -> Type:
        """A type by C name (``struct page``, ``struct page *``, ``unsigned long``)."""
        if isinstance(name, Type):
            return name
        base = name.replace("*", " ").split()
        if base in (["void"], ["const", "void"]):  # the type data has no name for void
            t = self.types.types[0]
            for _ in range(name.count("*")):
                t = self.types.pointer_to(t)
            return t
        try:
            return self.types.lookup(name)
        except TypeError_ as e:
            raise LookupError(str(e)) from None

    def symbol(self, name_or_addr: str | int) -> Symbol:
        """A symbol by name, or the symbol containing an address (LookupError if none)."""
        if isinstance(name_or_addr, str):
            return self.symbols.lookup(name_or_addr)
        return self.symbols.symbol_at(int(name_or_addr))

    def object(self, type: Type | str, address: int | None = None, value: Any = None) -> Object:
        """An object of a type at an address (a reference) or with a value."""
        if address is not None:
            return Object(self, type, address=int(address))
        return Object(self, type, value)

    def variable(self, name: str) -> Object:
        """A global variable as a reference object (LookupError if unknown)."""
        sym = self.symbols.by_name.get(name)
        if sym is None:
            raise LookupError(f"could not find variable {name!r}")
        try:
            t = self.types.var_type(name)
        except TypeError_:
            raise LookupError(f"variable {name!r} has no type in the type data") from None
        return Object(self, t, address=sym.address)

    def constant(self, name: str) -> Object:
        """An enumerator (``PG_head``, ``NR_FREE_PAGES``) or a page-size constant."""
        if name == "PAGE_SIZE":
            return Object(self, "unsigned long", self.page_size)
        if name == "PAGE_SHIFT":
            return Object(self, "int", self.page_size.bit_length() - 1)
        if name == "PAGE_MASK":
            return Object(self, "unsigned long", ~(self.page_size - 1))
        if self._enum_types is None:
            self._enum_types = {}
            for t in self.types.iter_types():
                if t.kind == "enum":
                    for n, _ in t.values:
                        self._enum_types.setdefault(n, t)
        t = self._enum_types.get(name)
        if t is None:
            raise LookupError(f"could not find constant {name!r}")
        return Object(self, t, dict(t.values)[name])

    def __getitem__(self, name: str) -> Object:
        """``prog['init_mm']``, ``prog['PG_head']``: a variable, else a constant (KeyError)."""
        try:
            return self.variable(name)
        except LookupError:
            pass
        try:
            return self.constant(name)
        except LookupError:
            where = f"vmlinux {self.vmlinux.path!r}" if self.vmlinux is not None else "the dump"
            hint = "" if self.symbols.by_name else " (it has no symbols: is .symtab missing?)"
            raise SymbolNotFoundError(f"{where} has no symbol {name!r}{hint}") from None

    def __contains__(self, name: str) -> bool:
        try:
            self[name]
            return True
        except KeyError:
            return False


def _paths(path: Any, vmlinux: Any) -> tuple[str, str]:
    if isinstance(path, (tuple, list)):
        if len(path) != 2:
            raise SnapshotError("give a snapshot as NAME, NAME.vmcore, or (vmcore, vmlinux)")
        return os.fspath(path[0]), os.fspath(path[1])
    p = os.fspath(path)
    if vmlinux is not None:
        return p, os.fspath(vmlinux)
    for ext in (".vmcore", ".vmlinux"):
        if p.endswith(ext):
            stem = p[: -len(ext)]
            return stem + ".vmcore", stem + ".vmlinux"
    return p + ".vmcore", p + ".vmlinux"


def _open_core(path: str) -> CoreFile | DiskDumpFile:
    """NAME.vmcore: a kdump-compressed file (``mmintro simulate --format kdump``, plain or
    flattened) by its signature, else an ELF core (whose errors say what is wrong with it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        head = b""  # CoreFile names the problem
    if head.startswith(KDUMP_SIGNATURE) or head.startswith(MDF_SIGNATURE):
        return DiskDumpFile(path)
    return CoreFile(path)


def open_snapshot(path: Any, vmlinux: Any = None) -> Program:
    """Open ``NAME`` / ``NAME.vmcore`` (with ``NAME.vmlinux`` beside it) or ``(vmcore, vmlinux)``.

    Raises :class:`SnapshotError` with one line naming the problem: a missing file, a vmcore
    without its vmlinux, a file of the wrong ELF type, truncation, corrupt headers, or a
    vmcore and vmlinux whose build IDs differ.
    """
    core_path, vml_path = _paths(path, vmlinux)
    if not os.path.exists(core_path):
        raise SnapshotError(f"vmcore {core_path!r} does not exist")
    if not os.path.exists(vml_path):
        raise SnapshotError(f"vmcore {core_path!r} has no vmlinux: {vml_path!r} does not exist")
    core = _open_core(core_path)
    try:
        elf = ElfFile(vml_path)
        want = core.vmcoreinfo.get("BUILD-ID")
        have = elf.build_id
        if want is not None:
            if have is None:
                raise SnapshotError(f"vmlinux {vml_path!r} has no build ID; the vmcore expects {want}")
            if have.hex() != want.lower():
                raise SnapshotError(
                    f"mismatched snapshot: vmcore {core_path!r} has BUILD-ID {want}, "
                    f"vmlinux {vml_path!r} has {have.hex()}"
                )
        types = _load_types_section(elf.section(".mmintro.types"), f"vmlinux {vml_path!r}")
        return Program(core, elf, types)
    except BaseException:
        core.close()
        raise
