"""The struct page array as numpy columns: one bulk read per present section.

``page_array(prog)`` reads the vmemmap of every present section through the page tables,
translating once per leaf (a 2 MiB leaf covers a whole 128 MiB section's 32768 struct pages)
and copying physically contiguous runs straight into a structured array.  Rows of absent
sections stay zero.  This is the columnar base for page-type statistics and scans: no
per-page Python code runs.
"""

from __future__ import annotations

import numpy as np

from mmintro.reader.errors import FaultError
from mmintro.reader.helpers.mm import vmemmap
from mmintro.reader.helpers.mmzone import for_each_present_section, section_geometry
from mmintro.reader.program import Program

__all__ = ["PAGE_FIELDS", "page_array", "page_dtype", "present_pfn_mask"]

# column name -> member path in struct page (6.18 names).
PAGE_FIELDS: dict[str, str] = {
    "flags": "flags",
    "lru_next": "lru.next",
    "lru_prev": "lru.prev",
    "compound_head": "compound_head",
    "mapping": "mapping",
    "index": "__folio_index",
    "private": "private",
    "page_type": "page_type",
    "mapcount": "_mapcount",
    "refcount": "_refcount",
    "memcg_data": "memcg_data",
}


def page_dtype(prog: Program, fields: dict[str, str] | None = None) -> np.dtype:
    """A structured dtype with struct page's itemsize and the requested columns."""
    return prog.types.dtype("page", dict(PAGE_FIELDS if fields is None else fields))


def page_array(prog: Program, fields: dict[str, str] | None = None, strict: bool = False) -> np.ndarray:
    """The struct page of every pfn from 0 to the end of the highest present section.

    :param fields: column name → member path (default :data:`PAGE_FIELDS`)
    :param strict: raise FaultError if part of a present section's vmemmap is unmapped
        (default: leave those rows zero)
    :return: structured array indexed by pfn
    """
    g = section_geometry(prog)
    dt = page_dtype(prog, fields)
    size = dt.itemsize
    sections = list(for_each_present_section(prog))
    n = (sections[-1].nr + 1) * g.pages_per_section if sections else 0
    out = np.zeros(n, dtype=dt)
    raw = out.view(np.uint8).reshape(-1)
    base = vmemmap(prog).value_()
    span = g.pages_per_section * size
    for sec in sections:
        start = sec.start_pfn * size
        vaddr = base + start
        pos = 0
        while pos < span:
            try:
                for v, p, length in prog.translate_range(vaddr + pos, span - pos):
                    off = start + v - vaddr
                    prog.core.read_phys_into(raw[off : off + length], p)
                    pos = v - vaddr + length
            except FaultError:
                if strict:
                    raise
                pos = (pos // 4096 + 1) * 4096  # skip the unmapped page, keep its rows zero
    return out


def present_pfn_mask(prog: Program) -> np.ndarray:
    """Boolean array: True for pfns in present sections (same length as :func:`page_array`)."""
    g = section_geometry(prog)
    sections = list(for_each_present_section(prog))
    n = (sections[-1].nr + 1) * g.pages_per_section if sections else 0
    mask = np.zeros(n, dtype=bool)
    for sec in sections:
        mask[sec.start_pfn : sec.start_pfn + g.pages_per_section] = True
    return mask
