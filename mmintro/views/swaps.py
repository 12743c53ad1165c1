"""/proc/swaps (mm/swapfile.c ``swap_start``/``swap_next``/``swap_show``, 6.18), and crash's
``swap`` table.

swap_start/swap_next walk ``swap_info[type]`` from type 0 while ``swap_type_to_info()`` gives
a device, skipping those without ``SWP_USED`` or without a ``swap_map`` (a swapon in
progress).  swap_show prints the header, then per device::

    seq_file_path(swap_file, " \\t\\n\\\\")  padded to 40 columns (at least one space),
    "partition" (S_ISBLK) or "file\\t", "\\t", K(si->pages), "\\t" if < 10000000, "\\t",
    K(swap_usage_in_pages(si)), "\\t" if < 10000000, "\\t", si->prio

``seq_file_path`` escapes space, tab, newline and backslash in the path as ``\\ooo`` (octal,
fs/seq_file.c mangle_path).
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.errors import ValidationError
from mmintro.reader.helpers.swap import (
    max_swapfiles,
    swap_file_path,
    swap_is_blkdev,
    swap_type_to_info,
    swap_usage_in_pages,
)
from mmintro.reader.program import Program

__all__ = ["SwapRow", "swaps", "render", "render_crash", "mangle_path"]

HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


class SwapRow(NamedTuple):
    si: int  # struct swap_info_struct *
    type: int  # the swap type (index in swap_info)
    path: str  # d_path of the swap file or block device
    partition: bool  # S_ISBLK
    size_kb: int  # K(si->pages)
    used_kb: int  # K(swap_usage_in_pages(si))
    prio: int
    flags: int


def mangle_path(path: str, esc: str = " \t\n\\") -> str:
    """fs/seq_file.c ``mangle_path()``: each character of ``esc`` as a backslash and three
    octal digits."""
    return "".join(f"\\{ord(c):03o}" if c in esc else c for c in path)


def swaps(prog: Program) -> list[SwapRow]:
    """The devices /proc/swaps lists, in swap_start/swap_next order (by type)."""
    if "swap_info" not in prog.symbols.by_name:
        return []
    used = prog.types.const("SWP_USED")
    kb = prog.page_size // 1024
    rows = []
    for t in range(max_swapfiles(prog)):
        si = swap_type_to_info(prog, t)
        if si is None:
            break
        if not si.flags.value_() & used or not si.swap_map.value_():
            continue
        if si.type.value_() != t:
            raise ValidationError(f"swap_info[{t}] at {si.value_():#x} says it is type {si.type.value_()}")
        rows.append(
            SwapRow(
                si.value_(),
                t,
                swap_file_path(si),
                swap_is_blkdev(si),
                si.pages.value_() * kb,
                swap_usage_in_pages(si) * kb,
                si.prio.value_(),
                si.flags.value_(),
            )
        )
    from mmintro.reader.validate import check_swap, note

    note(prog, check_swap(prog))  # inuse_pages against swap_map, nr_swap_pages
    return rows


def render(rows: list[SwapRow]) -> str:
    """The text of /proc/swaps, byte for byte as swap_show prints it."""
    out = [HEADER]
    for r in rows:
        path = mangle_path(r.path)
        pad = 40 - len(path) if len(path) < 40 else 1
        out.append(
            f"{path}{' ' * pad}{'partition' if r.partition else 'file' + chr(9)}\t{r.size_kb}\t"
            f"{chr(9) if r.size_kb < 10000000 else ''}{r.used_kb}\t"
            f"{chr(9) if r.used_kb < 10000000 else ''}{r.prio}\n"
        )
    return "".join(out)


def render_crash(rows: list[SwapRow]) -> str:
    """crash's ``swap`` command (memory.c dump_swap_info, crash 9.0.2), column for column:
    ``%s  %s %s %s %s %s  %s`` of the swap_info_struct address (CENTER|LJUST in 16), PARTITION or
    ``  FILE   ``, ``%ldk`` of pages and of used (CENTER|RJUST in 10), ``%2ld%%`` of used * 100
    / size (CENTER|RJUST in 4), the priority (RJUST in 4) and the path.

    crash's USED is ``swap_info_struct.inuse_pages`` read whole (an 8-byte atomic_long_t), so
    it would include 6.12+'s SWAP_USAGE_OFFLIST_BIT on a full device or one being switched off;
    it is printed here as crash computes it only when that bit is clear."""
    from mmintro.views.vm import VADDR_PRLEN, mkstring

    out = ["SWAP_INFO_STRUCT    TYPE       SIZE       USED     PCT  PRI  FILENAME"]
    for r in rows:
        pct = r.used_kb * 100 // r.size_kb if r.size_kb else 0
        out.append(
            f"{mkstring(f'{r.si:x}', max(VADDR_PRLEN, 16), center=True)}  "
            f"{'PARTITION' if r.partition else '  FILE   '} "
            f"{mkstring(f'{r.size_kb}k', 10, center=True, rjust=True)} "
            f"{mkstring(f'{r.used_kb}k', 10, center=True, rjust=True)} "
            f"{mkstring(f'{pct:2d}%', 4, center=True, rjust=True)} "
            f"{mkstring(str(r.prio), 4, rjust=True)}  {r.path}"
        )
    return "\n".join(out) + "\n"
