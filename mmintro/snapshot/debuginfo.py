"""Debug info for a real kernel, made from its BTF and symbols: no debug package needed.

drgn (and GDB) read DWARF only.  A distribution kernel ships ``.BTF`` in its image, and a dump
of it carries its symbols (kallsyms, named by VMCOREINFO since 6.0).  :func:`write_debuginfo`
turns the two into an ELF file of the same shape as a snapshot's NAME.vmlinux (the writer is
:func:`mmintro.snapshot.vmlinux.write_vmlinux`):

* DWARF-4 types of the kernel's type closure (:func:`mmintro.types.closure.typedb_from_btf`:
  the types of mmintro's globals and per-CPU variables and everything they reach, which is
  what drgn's stock mm helpers and crash commands look up);
* a ``DW_TAG_variable`` located with ``DW_OP_addr`` for each global the TypeDB knows
  (``T.variables``, per-CPU ones included: since 6.15 x86-64 links them at ordinary kernel
  addresses, and ``per_cpu_ptr`` adds ``__per_cpu_offset[cpu]``), a ``DW_TAG_subprogram`` for
  the functions drgn looks up as objects (:data:`DWARF_FUNCTIONS`), and every symbol in
  ``.symtab`` (functions as ``STT_FUNC``: the reader's kallsyms symbols in the text ranges);
* the image's GNU build ID, which equals VMCOREINFO's ``BUILD-ID``.

Addresses are **link-time** addresses: drgn adds VMCOREINFO's ``KERNELOFFSET`` to the addresses
of the main module's debug file, so the dump's run-time (KASLR) addresses are written minus
``KERNELOFFSET``.  A System.map has link-time addresses already.  Symbols outside the kernel
image mapping (``SYMBOL(vmemmap)`` is a value, not an address) are left out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from mmintro.cache import cache_dir
from mmintro.reader.errors import SnapshotError
from mmintro.snapshot.vmlinux import START_KERNEL_MAP, Symbol, write_vmlinux
from mmintro.types.typedata import TypeDB

__all__ = [
    "debuginfo_symbols",
    "write_debuginfo",
    "write_debuginfo_for_dump",
    "cached_debuginfo",
    "DEBUGINFO_VERSION",
    "DWARF_FUNCTIONS",
]

#: Bumped when the output for the same inputs changes (the cache key includes it).
DEBUGINFO_VERSION = 3

_MASK = (1 << 64) - 1

#: Functions that get a DW_TAG_subprogram (the others are in .symtab only, which is what drgn's
#: and GDB's symbolization use): the functions drgn 0.3.0 looks up as objects -- libdrgn detects
#: SPARSEMEM_VMEMMAP from vmemmap_populate, and vma_name() (crash vm) compares vm_ops->name with
#: prog["special_mapping_name"].  Every function would make llvm-dwarfdump --verify take
#: minutes (its overlap check is quadratic in one unit's subprograms).
DWARF_FUNCTIONS = frozenset({"vmemmap_populate", "special_mapping_name"})


def debuginfo_symbols(types: TypeDB, symbols: Any, kernel_offset: int = 0) -> list[Symbol]:
    """The writer's symbols: ``symbols`` (reader :class:`~mmintro.reader.elf.Symbol`\\ s with
    run-time addresses) moved to link-time addresses, the TypeDB's variables typed.

    A name defined more than once (local symbols) keeps one typed entry: the one the reader's
    symbol table resolves the name to (a global definition first)."""
    preferred: dict[str, Any] = {}
    for s in symbols:
        prev = preferred.get(s.name)
        if prev is None or (prev.binding == "local" and s.binding != "local"):
            preferred[s.name] = s
    out: list[Symbol] = []
    for s in symbols:
        if s.address < START_KERNEL_MAP:
            continue  # SYMBOL(vmemmap) and the like: VMCOREINFO values, not kernel-image addresses
        addr = (s.address - kernel_offset) & _MASK
        var = types.variables.get(s.name) if preferred.get(s.name) is s else None
        if var is not None:
            out.append(Symbol(s.name, addr, s.size, "object", var[0]))
        elif s.kind == "func":  # the reader's symbols: functions only in the text ranges
            out.append(Symbol(s.name, addr, s.size, "func"))
        else:
            out.append(Symbol(s.name, addr, s.size, "object"))
    return out


def write_debuginfo(
    path: str | os.PathLike, types: TypeDB, symbols: Any, build_id: bytes, kernel_offset: int = 0
) -> Path:
    """Write the debug file to ``path`` (atomically: a temporary file beside it, then renamed)."""
    if not build_id:
        raise SnapshotError("the kernel image has no build ID note: drgn could not pair debug info with a dump")
    syms = debuginfo_symbols(types, symbols, kernel_offset)
    if not syms:
        raise SnapshotError("no kernel symbols to write (give the dump or a System.map)")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        write_vmlinux(tmp, types, syms, bytes(build_id), dwarf_functions=DWARF_FUNCTIONS)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_debuginfo_for_dump(path: str | os.PathLike, prog: Any) -> Path:
    """The debug file of an opened real dump (:func:`mmintro.reader.dump.open_dump`)."""
    image = prog.kernel_image
    if image is None:
        raise SnapshotError("not a real kernel's dump (a snapshot has its own NAME.vmlinux)")
    return write_debuginfo(path, prog.types, prog.symbols.symbols, image.build_id, prog.kernel_offset)


def cached_debuginfo(prog: Any) -> Path:
    """``~/.cache/mmintro/debuginfo/BUILDID-KERNELOFFSET.debug`` for an opened real dump, made
    on first use.  The key also hashes the symbol table and the type data, so a dump whose
    kallsyms differ (or a changed type closure) never reuses another's file."""
    import hashlib

    image = prog.kernel_image
    if image is None or not image.build_id:
        raise SnapshotError("not a real kernel's dump (a snapshot has its own NAME.vmlinux)")
    h = hashlib.sha256(f"v{DEBUGINFO_VERSION}".encode())
    for s in prog.symbols.symbols:
        h.update(f"{s.name} {s.address:x} {s.size:x} {s.kind} {s.binding}\n".encode())
    h.update(repr(sorted((n, t.id, pc) for n, (t, pc) in prog.types.variables.items())).encode())
    h.update(str(len(prog.types.types)).encode())
    d = cache_dir() / "debuginfo"
    path = d / f"{image.build_id.hex()}-{prog.kernel_offset:x}-{h.hexdigest()[:12]}.debug"
    if path.exists():
        return path
    d.mkdir(parents=True, exist_ok=True)
    return write_debuginfo_for_dump(path, prog)
