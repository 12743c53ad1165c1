"""Page counts per combination of flags and page type (tools/mm/page-types), columnar.

Reads every struct page with :func:`mmintro.reader.columns.page_array` and groups them with
one ``np.unique`` over a combined key; no Python code runs per page.  The kernel tool reports
``/proc/kpageflags`` bits (KPF_*); we report the ``PG_*`` bits of ``page->flags`` below
``__NR_PAGEFLAGS`` plus the page type and whether the page is a compound tail.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mmintro.reader.columns import page_array, present_pfn_mask
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
    flags = arr["flags"][present].astype(np.uint64) & np.uint64(lay.flag_mask)
    ptype = arr["page_type"][present].astype(np.uint32)
    typed = ptype.view(np.int32) < PAGE_TYPE_LIMIT
    top = np.where(typed, ptype >> np.uint32(24), np.uint32(0)).astype(np.uint64)
    tail = arr["compound_head"][present].astype(np.uint64) & np.uint64(1)
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
