"""Decoding the ``page->flags`` word and ``page->page_type`` (include/linux/page-flags.h,
include/linux/page-flags-layout.h, include/linux/mm.h).

Flag bits and page types come from the snapshot's type data (``enum pageflags``,
``__NR_PAGEFLAGS``, ``enum pagetype``).  The zone and node fields at the top of the word are
placed by page-flags-layout.h; their widths are derived from the snapshot:

* ``ZONES_SHIFT`` = order_base_2(``__MAX_NR_ZONES``) (enum zone_type, type data);
* ``NODES_SHIFT`` = log2(``MAX_NUMNODES``) = log2(VMCOREINFO ``LENGTH(node_data)``);
* ``SECTIONS_WIDTH`` = 0 because x86-64 uses SPARSEMEM_VMEMMAP (the section is not kept in
  the flags word), so ``NODES_PGOFF = 64 - NODES_SHIFT`` and ``ZONES_PGOFF = NODES_PGOFF -
  ZONES_SHIFT``.  With 5 zones and 1024 nodes: zone bits 51-53, node bits 54-63.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.errors import SnapshotError
from mmintro.reader.program import Program

__all__ = ["PAGE_TYPE_LIMIT", "FlagsLayout", "flag_names", "flags_layout", "page_type_name"]

# include/linux/page-flags.h: a page has a type iff (int)page_type < (int)PGTY_mapcount_underflow << 24,
# i.e. the top byte is below 0xff (0xff is reserved to catch _mapcount underflow).
PAGE_TYPE_LIMIT = -(1 << 24)  # (int)0xff000000
_SECTIONS_WIDTH = 0  # SPARSEMEM_VMEMMAP: page-flags-layout.h sets SECTIONS_WIDTH 0


class FlagsLayout(NamedTuple):
    """Where the fields of ``page->flags`` are (page-flags-layout.h)."""

    nr_pageflags: int
    """``__NR_PAGEFLAGS``: bits 0 .. nr-1 are flags."""
    zones_pgoff: int
    zones_shift: int
    nodes_pgoff: int
    nodes_shift: int

    def zone(self, flags: int) -> int:
        """``page_zonenum()``"""
        return flags >> self.zones_pgoff & ((1 << self.zones_shift) - 1)

    def node(self, flags: int) -> int:
        """``page_to_nid()``"""
        return flags >> self.nodes_pgoff & ((1 << self.nodes_shift) - 1)

    @property
    def flag_mask(self) -> int:
        return (1 << self.nr_pageflags) - 1


def flags_layout(prog: Program) -> FlagsLayout:
    """The snapshot's page->flags layout (cached on the program)."""
    lay = prog.cache.get("views.flags_layout")
    if lay is not None:
        return lay
    types = prog.types
    zones_shift = (types.const("__MAX_NR_ZONES") - 1).bit_length()
    max_numnodes = prog.vmcoreinfo_number("LENGTH(node_data)", 1 << 10)
    if not 1 <= max_numnodes <= 1 << 10:  # MAX_NUMNODES: NODES_SHIFT is at most 10 on x86-64
        raise SnapshotError(f"impossible VMCOREINFO: LENGTH(node_data) {max_numnodes} (MAX_NUMNODES is 1 to 1024)")
    nodes_shift = max_numnodes.bit_length() - 1
    word_bits = 8 * types.sizeof("unsigned long")
    nodes_pgoff = word_bits - _SECTIONS_WIDTH - nodes_shift
    lay = FlagsLayout(types.const("__NR_PAGEFLAGS"), nodes_pgoff - zones_shift, zones_shift, nodes_pgoff, nodes_shift)
    prog.cache["views.flags_layout"] = lay
    return lay


def _flag_table(prog: Program) -> list[tuple[int, str]]:
    """(bit, name) of the canonical flag of each bit below __NR_PAGEFLAGS (first enumerator
    wins, so aliases such as PG_readahead give way to PG_reclaim)."""
    t = prog.cache.get("views.flag_table")
    if t is None:
        nr = prog.types.const("__NR_PAGEFLAGS")
        by_bit: dict[int, str] = {}
        for name, bit in prog.types.enum("pageflags").items():
            if not name.startswith("__") and bit < nr:
                by_bit.setdefault(bit, name)
        t = prog.cache["views.flag_table"] = sorted(by_bit.items())
    return t


def flag_names(prog: Program, flags: int) -> list[str]:
    """Names (``PG_*``) of the flag bits set in a flags word; unknown low bits as hex."""
    lay = flags_layout(prog)
    bits = flags & lay.flag_mask
    out, known = [], 0
    for bit, name in _flag_table(prog):
        if bits >> bit & 1:
            out.append(name)
            known |= 1 << bit
    if bits & ~known:
        out.append(hex(bits & ~known))
    return out


def page_type_name(prog: Program, page_type: int) -> str | None:
    """``"buddy"``, ``"slab"``, ... for a typed page (``PGTY_*`` from the type data), else None.

    :param page_type: the 32-bit ``page->page_type`` word
    """
    word = page_type & 0xFFFFFFFF
    signed = word - (1 << 32) if word & 0x80000000 else word
    if signed >= PAGE_TYPE_LIMIT:
        return None
    top = word >> 24
    for name, v in prog.types.enum("pagetype").items():
        if v == top:
            return name.removeprefix("PGTY_")
    return f"{top:#x}"
