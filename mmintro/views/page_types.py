"""Page counts per combination of flags and page type (tools/mm/page-types), columnar.

Reads every struct page with :func:`mmintro.reader.columns.page_array` and groups them with
one ``np.unique`` over a combined key; no Python code runs per page.  The kernel tool reports
``/proc/kpageflags`` bits (KPF_*); we report the ``PG_*`` bits below ``__NR_PAGEFLAGS`` plus the
page type and whether the page is a compound tail.  As stable_page_flags() does, a tail page
reports its folio's flags and page type (the head page's, but PG_head): a tail's own flags word
holds folio metadata (the first tail's low byte is the folio's order), not page flags.  A tail
whose compound_head does not point at a struct page in the map reports no flags.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mmintro.reader.columns import page_array, present_pfn_mask
from mmintro.reader.helpers.mm import vmemmap
from mmintro.reader.program import Program
from mmintro.views.pageflags import PAGE_TYPE_LIMIT, flag_names, flags_layout, page_type_name

__all__ = ["COLUMNS", "PageTypesRow", "page_types", "render"]

_TYPE_SHIFT = 32  # key bits 32..39: page type byte (0 = untyped)
_TAIL_BIT = 40  # key bit 40: compound tail


class PageTypesRow(NamedTuple):
    """One combination of flags, page type and tail-ness."""

    flags: int
    """The ``PG_*`` bits (below ``__NR_PAGEFLAGS``)."""
    page_type: str
    """``PGTY_*`` name without the prefix, or empty if the page has no type."""
    tail: bool
    """Tail page of a compound page (``compound_head & 1``)."""
    page_count: int
    """Number of struct pages with this combination."""
    mb: int
    """``page_count`` in MiB (rounded down, as page-types prints it)."""
    symbolic_flags: str
    """Flag names, lower case without ``PG_``, then the type and ``tail``, comma separated."""


# column name (as printed and as JSON key) -> row field
COLUMNS: dict[str, str] = {
    "flags": "flags",
    "page-count": "page_count",
    "MB": "mb",
    "symbolic-flags": "symbolic_flags",
    "page-type": "page_type",
}


def page_types(prog: Program) -> list[PageTypesRow]:
    """Rows sorted by flags word, covering every struct page of every present section."""
    lay = flags_layout(prog)
    arr = page_array(prog, {"flags": "flags", "compound_head": "compound_head", "page_type": "page_type"})
    present = present_pfn_mask(prog)
    own = arr["flags"].astype(np.uint64) & np.uint64(lay.flag_mask)
    ch = arr["compound_head"].astype(np.uint64)
    is_tail = (ch & np.uint64(1)).astype(bool)
    size = prog.types.struct("page").size
    base = np.uint64(vmemmap(prog).value_())
    # page_folio(): the head's pfn from compound_head - 1 (in range, on a struct page boundary)
    off = ch - np.uint64(1) - base
    head = off // np.uint64(size)
    ok = is_tail & (ch - np.uint64(1) >= base) & (off % np.uint64(size) == 0) & (head < np.uint64(len(arr)))
    folio_flags = np.where(is_tail, np.uint64(0), own)
    hidx = head[ok].astype(np.int64)
    # (PG_head is the head page's own: a tail is "tail", as KPF_COMPOUND_HEAD/TAIL go)
    folio_flags[ok] = own[hidx] & ~np.uint64(1 << prog.types.const("PG_head"))
    flags = folio_flags[present]
    # the folio's page type too (a slab's or hugetlb folio's tails are slab / hugetlb pages)
    all_types = arr["page_type"].astype(np.uint32)
    all_types[ok] = all_types[hidx]
    ptype = all_types[present]
    typed = ptype.view(np.int32) < PAGE_TYPE_LIMIT
    top = np.where(typed, ptype >> np.uint32(24), np.uint32(0)).astype(np.uint64)
    tail = is_tail[present].astype(np.uint64)
    key = flags | (top << np.uint64(_TYPE_SHIFT)) | (tail << np.uint64(_TAIL_BIT))
    keys, counts = np.unique(key, return_counts=True)
    rows = []
    for k, n in zip(keys.tolist(), counts.tolist()):
        fl = k & lay.flag_mask
        byte = k >> _TYPE_SHIFT & 0xFF
        pt = (page_type_name(prog, byte << 24) or "") if byte else ""
        is_tail = bool(k >> _TAIL_BIT & 1)
        names = [nm.removeprefix("PG_").lower() for nm in flag_names(prog, fl)]
        names += [pt] if pt else []
        names += ["tail"] if is_tail else []
        rows.append(PageTypesRow(fl, pt, is_tail, n, n * prog.page_size >> 20, ",".join(names)))
    return rows


def render(rows: list[PageTypesRow]) -> str:
    """page-types' layout: ``flags page-count MB symbolic-flags`` and a total line."""
    out = [f"{'flags':>18}\t{'page-count':>10} {'MB':>8}  symbolic-flags"]
    for r in rows:
        out.append(f"{r.flags:#018x}\t{r.page_count:>10} {r.mb:>8}  {r.symbolic_flags or '-'}")
    total = sum(r.page_count for r in rows)
    mb = sum(r.page_count for r in rows) * 4096 >> 20
    out.append(f"{'total':>18}\t{total:>10} {mb:>8}")
    return "\n".join(out) + "\n"
