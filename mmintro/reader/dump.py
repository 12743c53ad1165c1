"""Opening a dump of a real kernel: the vmcore plus that kernel's image, nothing else.

Types come from the image's ``.BTF`` (the same closure the pinned type data is generated with,
resolved against *this* build), symbols from the dump's own kallsyms tables (or a System.map),
KASLR from KERNELOFFSET and phys_base, the paging mode from VMCOREINFO.  The image must be the
dumped kernel: its build ID must equal VMCOREINFO's BUILD-ID.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mmintro.cache import cache_dir
from mmintro.reader.diskdump import open_core
from mmintro.reader.elf import Symbol, SymbolTable
from mmintro.reader.errors import FaultError, SnapshotError
from mmintro.reader.kallsyms import (
    decode_kallsyms_names,
    kallsyms_addresses,
    kallsyms_names_blob,
    parse_system_map,
    symbols_from_table,
)
from mmintro.reader.program import Program
from mmintro.reader.x86_pgtable import START_KERNEL_MAP

__all__ = ["open_dump"]

_KALLSYMS_CACHE_VERSION = 1


def _kallsyms_cached(info: dict[str, str], read: Any, what: str) -> list[Symbol]:
    """read_kallsyms, with the decoded names cached: the key is BUILD-ID and the CRC of the
    compressed names blob, so an entry can only ever describe these very bytes.  Addresses are
    always read from the dump (they move with KASLR)."""
    blob = kallsyms_names_blob(info, read, what)
    key = f"{info.get('BUILD-ID', 'nobuildid')}-{zlib.crc32(blob):08x}-{len(blob)}"
    path = cache_dir() / "kallsyms" / f"{key}.json.gz"
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()))
        names, letters = doc["names"], doc["letters"]
        if doc.get("version") != _KALLSYMS_CACHE_VERSION or len(names) != len(letters):
            raise ValueError("stale cache entry")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zlib.error):
        names, letters = decode_kallsyms_names(info, read, blob, what)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(
                gzip.compress(
                    json.dumps({"version": _KALLSYMS_CACHE_VERSION, "names": names, "letters": letters}).encode(), 1
                )
            )
            os.replace(tmp, path)
        except OSError:
            pass
    addresses = kallsyms_addresses(info, read, len(names))
    # the same table as the last one read (by content: names, letters and every address)
    memo = (key, zlib.crc32(np.asarray(addresses, dtype=np.uint64).tobytes()), len(addresses), letters)
    got = _LAST_SYMBOLS.get(memo)
    if got is None:
        got = symbols_from_table(names, list(letters), addresses)
        _LAST_SYMBOLS.clear()
        _LAST_SYMBOLS[memo] = got
    return list(got)


# The last kernel image read (by the file's identity) and the last kallsyms table built (by its
# content): a process that opens the same dump again (a script, ``mmintro diff`` of two dumps of
# one kernel, a test suite) does not decompress the image, parse its BTF and rebuild 200k
# symbols every time.
_LAST_IMAGE: dict[tuple, list[Any]] = {}  # identity -> [image, its types (built on first use)]
_LAST_SYMBOLS: dict[tuple, list[Symbol]] = {}


def _identity(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _kernel_image(kernel: str) -> list[Any]:
    """[image, types or None] of the kernel image file: the last one read when it is the same file."""
    from mmintro.types.kernel_image import read_kernel_image

    key = _identity(kernel)
    entry = _LAST_IMAGE.get(key) if key is not None else None
    if entry is None:
        entry = [read_kernel_image(kernel), None]
        if key is not None:
            _LAST_IMAGE.clear()
            _LAST_IMAGE[key] = entry
    return entry


def open_dump(
    core_path: str | os.PathLike, kernel: str | os.PathLike, system_map: str | os.PathLike | None = None
) -> Program:
    """Open a real kernel's dump with its kernel image (a bzImage or a vmlinux ELF with .BTF).

    :raises SnapshotError: one line naming what is wrong (missing files, a dump of another
        kernel, an image without .BTF, a corrupt or truncated dump)
    """
    from mmintro.types.closure import typedb_from_btf

    core_path, kernel = os.fspath(core_path), os.fspath(kernel)
    core = open_core(core_path)  # missing, empty, unknown format: one-line SnapshotError
    try:
        what = f"vmcore {core_path!r}"
        info = core.vmcoreinfo
        entry = _kernel_image(kernel)
        image = entry[0]
        want = info.get("BUILD-ID")
        if want is None:
            raise SnapshotError(f"{what}: VMCOREINFO has no BUILD-ID, so the kernel image cannot be matched")
        if image.build_id is None:
            raise SnapshotError(f"kernel image {kernel!r} has no build ID note")
        if image.build_id.hex() != want.lower():
            rel = info.get("OSRELEASE", "?")
            mine = f" ({image.osrelease})" if getattr(image, "osrelease", None) else ""
            raise SnapshotError(
                f"kernel image {kernel!r}{mine} is not the dumped kernel ({rel}): build ID "
                f"{image.build_id.hex()} != the dump's {want.lower()}"
            )
        if entry[1] is None:  # after the build ID check: a wrong image's BTF is never parsed
            entry[1] = typedb_from_btf(image.btf)
        types = entry[1]
        phys_base = int(info.get("NUMBER(phys_base)", "0"), 0)

        def read_image(vaddr: int, size: int) -> bytes:
            try:
                return core.read_phys(vaddr - START_KERNEL_MAP + phys_base, size)
            except FaultError as e:
                raise SnapshotError(f"{what}: the kernel image at {vaddr:#x} is not in the dump ({e})") from None

        if system_map is not None:
            try:
                text = Path(system_map).read_text(errors="replace")
            except OSError as e:
                raise SnapshotError(f"System.map {os.fspath(system_map)!r}: {e.strerror}") from None
            syms = parse_system_map(
                text, int(info.get("KERNELOFFSET", "0"), 16), f"System.map {os.fspath(system_map)!r}"
            )
        else:
            syms = _kallsyms_cached(info, read_image, what)
        # VMCOREINFO names a few symbols kallsyms does not have (swapper_pg_dir is a #define
        # of init_top_pgt); SYMBOL(mem_section) is the pointer's value, not its address.
        have = {s.name for s in syms}
        for key, value in info.items():
            if key.startswith("SYMBOL(") and key.endswith(")"):
                name = key[7:-1]
                if name not in have and name != "mem_section":
                    syms.append(Symbol(name, int(value, 16), 0, "object", "global"))
        syms.sort(key=lambda s: s.address)
        return Program(core, None, types, symbols=SymbolTable(syms), kernel_image=image)
    except BaseException:
        core.close()
        raise
