"""The kernel's own symbol table, read from a dump (kernel/kallsyms.c, scripts/kallsyms.c).

Since 6.0 VMCOREINFO names the kallsyms tables (``SYMBOL(kallsyms_names)``, ``_num_syms``,
``_token_table``, ``_token_index``, ``_offsets``, ``_relative_base``), so a dump of a kernel built
with CONFIG_KALLSYMS_ALL carries every symbol, data included, with its run-time address: no
System.map and no debug package needed.  Names are compressed: each entry is a length (one byte,
or two when the first has bit 7 set) and that many token indices; ``kallsyms_token_index[i]``
is the offset in ``kallsyms_token_table`` of token ``i``'s NUL-terminated text.  The first
character of the expanded name is the ``nm`` type letter.  An address is
``kallsyms_relative_base + (u32)kallsyms_offsets[i]`` (6.18 has no absolute per-CPU mode).

Symbol sizes are not stored; like crash, a symbol's size is the distance to the next one.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import numpy as np

from mmintro.reader.elf import Symbol
from mmintro.reader.errors import SnapshotError

__all__ = [
    "KALLSYMS_KEYS",
    "read_kallsyms",
    "kallsyms_names_blob",
    "decode_kallsyms_names",
    "kallsyms_addresses",
    "parse_system_map",
    "symbols_from_table",
]

KALLSYMS_KEYS = (
    "kallsyms_names",
    "kallsyms_num_syms",
    "kallsyms_token_table",
    "kallsyms_token_index",
    "kallsyms_offsets",
    "kallsyms_relative_base",
)
_MAX_SYMS = 4_000_000  # far above any kernel's (Debian 6.18: ~200k); bounds a corrupt count
_MAX_NAMES_BYTES = 64 << 20


def _text_ranges(names: list[str], addresses: list[int]) -> list[tuple[int, int]]:
    """[_stext, _etext) and [_sinittext, _einittext): where functions are."""
    at = {n: a for n, a in zip(names, addresses) if n in ("_stext", "_etext", "_sinittext", "_einittext")}
    return [
        (at[a], at[b])
        for a, b in (("_stext", "_etext"), ("_sinittext", "_einittext"))
        if a in at and b in at and at[a] < at[b]
    ]


def symbols_from_table(names: list[str], letters: list[str], addresses: list[int]) -> list[Symbol]:
    """Symbols sorted by address, each sized up to the next distinct address.

    The type letter gives the binding (lower case: local).  It does not reliably give the
    kind: kallsyms calls many data symbols text ('T' for init_mm, jiffies, slab_caches), so a
    text-letter symbol is a function only inside the kernel's text ranges (anywhere when the
    table lacks their bounds).  One numpy pass over the table (a real kernel has ~200k)."""
    n = len(names)
    if n == 0:
        return []
    addr = np.asarray(addresses, dtype=np.uint64)
    order = np.argsort(addr, kind="stable")
    distinct = np.unique(addr)
    nxt_i = np.searchsorted(distinct, addr, side="right")  # the next distinct address's index
    size = np.zeros(n, dtype=np.uint64)
    has_next = nxt_i < len(distinct)
    size[has_next] = distinct[nxt_i[has_next]] - addr[has_next]
    text = _text_ranges(names, addresses)
    in_text = np.zeros(n, dtype=bool) if text else np.ones(n, dtype=bool)
    for lo, hi in text:
        in_text |= (addr >= np.uint64(lo)) & (addr < np.uint64(hi))
    in_text = in_text.tolist()  # (a Python loop over a list, not numpy scalars)
    kinds = []
    for i in range(n):
        low = letters[i].lower()
        if low in "tw":
            kinds.append("func" if in_text[i] else "object")
        else:
            kinds.append("object" if low in "dbrgsv" else "notype")
    sizes = size.tolist()
    return [
        Symbol(names[i], addresses[i], sizes[i], kinds[i], "local" if letters[i].islower() else "global")
        for i in order.tolist()
    ]


def kallsyms_addresses(vmcoreinfo: dict[str, str], read: Callable[[int, int], bytes], num: int) -> list[int]:
    """Run-time addresses of the ``num`` kallsyms entries, in table order."""
    offsets = np.frombuffer(read(int(vmcoreinfo["SYMBOL(kallsyms_offsets)"], 16), 4 * num), dtype="<u4")
    base = struct.unpack("<Q", read(int(vmcoreinfo["SYMBOL(kallsyms_relative_base)"], 16), 8))[0]
    return ((offsets.astype(np.uint64) + np.uint64(base)) & np.uint64(0xFFFFFFFFFFFFFFFF)).tolist()


def kallsyms_names_blob(vmcoreinfo: dict[str, str], read: Callable[[int, int], bytes], what: str) -> bytes:
    """The compressed names stream, read in one piece: up to the next kallsyms table after it."""
    addr = {}
    for key in KALLSYMS_KEYS:
        v = vmcoreinfo.get(f"SYMBOL({key})")
        if v is None:
            raise SnapshotError(
                f"{what}: VMCOREINFO has no SYMBOL({key}) (a kernel before 6.0, or one "
                f"without CONFIG_KALLSYMS): give --system-map"
            )
        addr[key] = int(v, 16)
    after = [a for a in addr.values() if a > addr["kallsyms_names"]]
    span = min(after) - addr["kallsyms_names"] if after else 4 << 20
    return read(addr["kallsyms_names"], max(1, min(span, _MAX_NAMES_BYTES)))


def decode_kallsyms_names(
    vmcoreinfo: dict[str, str], read: Callable[[int, int], bytes], blob: bytes, what: str
) -> tuple[list[str], str]:
    """(names, type letters) of every kallsyms entry, in table order."""
    num = struct.unpack("<I", read(int(vmcoreinfo["SYMBOL(kallsyms_num_syms)"], 16), 4))[0]
    if not 0 < num <= _MAX_SYMS:
        raise SnapshotError(f"{what}: kallsyms_num_syms is {num}, not a symbol count")
    token_index = np.frombuffer(read(int(vmcoreinfo["SYMBOL(kallsyms_token_index)"], 16), 512), dtype="<u2")
    table = read(int(vmcoreinfo["SYMBOL(kallsyms_token_table)"], 16), int(token_index.max()) + 64)
    tokens: list[str] = []
    for off in token_index.tolist():
        end = table.find(b"\0", off)
        if end < 0:
            raise SnapshotError(f"{what}: kallsyms token at offset {off} is not terminated")
        tokens.append(table[off:end].decode("latin-1"))
    names: list[str] = []
    letters: list[str] = []
    pos = 0
    n = len(blob)
    join = "".join
    for i in range(num):
        if pos >= n:
            raise SnapshotError(f"{what}: kallsyms_names ends after {i} of {num} symbols")
        ln = blob[pos]
        if ln & 0x80:
            if pos + 1 >= n:
                raise SnapshotError(f"{what}: kallsyms_names ends inside symbol {i}")
            ln = (ln & 0x7F) | (blob[pos + 1] << 7)
            pos += 2
        else:
            pos += 1
        if ln == 0 or pos + ln > n:
            raise SnapshotError(f"{what}: kallsyms_names entry {i} is corrupt (length {ln})")
        s = join([tokens[b] for b in blob[pos : pos + ln]])
        pos += ln
        letters.append(s[0])
        names.append(s[1:])
    return names, "".join(letters)


def read_kallsyms(vmcoreinfo: dict[str, str], read: Callable[[int, int], bytes], what: str) -> list[Symbol]:
    """Every kallsyms symbol of the dumped kernel.

    :param read: ``read(kernel_virtual_address, size)`` over the kernel image
    :raises SnapshotError: VMCOREINFO lacks the tables, or they are inconsistent
    """
    blob = kallsyms_names_blob(vmcoreinfo, read, what)
    names, letters = decode_kallsyms_names(vmcoreinfo, read, blob, what)
    return symbols_from_table(names, list(letters), kallsyms_addresses(vmcoreinfo, read, len(names)))


_MAP_LINE = re.compile(r"([0-9a-fA-F]{8,16})\s+(\S)\s+(\S+)")


def parse_system_map(text: str, kernel_offset: int, what: str) -> list[Symbol]:
    """Symbols of a System.map (link-time addresses, shifted by the dump's KERNELOFFSET)."""
    names: list[str] = []
    letters: list[str] = []
    addrs: list[int] = []
    for line in text.splitlines():
        m = _MAP_LINE.match(line)
        if not m:
            continue
        a = int(m.group(1), 16)
        if m.group(2) in "aAuU" or a == 0xFFFFFFFFFFFFFFFF:
            continue
        names.append(m.group(3))
        letters.append(m.group(2))
        addrs.append((a + kernel_offset) & 0xFFFFFFFFFFFFFFFF if a >= 0xFFFFFFFF80000000 else a)
    if len(names) < 100:
        raise SnapshotError(
            f"{what} is not a System.map (found {len(names)} symbols; Debian's package "
            f"ships a placeholder, the real one is in the -dbg package)"
        )
    return symbols_from_table(names, letters, addrs)
