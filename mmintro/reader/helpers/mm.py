"""Memory management helpers (include/linux/mm.h, page-flags.h, asm/page.h), named and
behaving like drgn's ``drgn.helpers.linux.mm``.

Virtual-to-physical conversions for the direct map use ``page_offset_base``; ``follow_phys``
walks page tables.  Page flag bit numbers come from ``enum pageflags`` and page types from
``enum pagetype`` in the type data; a page has type X iff ``page_type >> 24 == PGTY_X``
(6.12+ encoding, semantics.md §1.6).
"""

from __future__ import annotations

from collections.abc import Iterator

from mmintro.reader.errors import SnapshotError
from mmintro.reader.helpers.mmzone import for_each_present_section, section_geometry
from mmintro.reader.object import Object, cast
from mmintro.reader.program import Program

__all__ = [
    "PFN_PHYS",
    "PHYS_PFN",
    "PageBuddy",
    "PageCompound",
    "PageHead",
    "PageLRU",
    "PageReserved",
    "PageSlab",
    "PageTable",
    "PageTail",
    "compound_head",
    "compound_nr",
    "compound_order",
    "decode_page_flags",
    "follow_phys",
    "follow_pfn",
    "follow_page",
    "for_each_page",
    "get_page_flags",
    "page_has_type",
    "page_to_pfn",
    "page_to_phys",
    "page_to_virt",
    "pfn_to_page",
    "pfn_to_virt",
    "phys_to_page",
    "phys_to_virt",
    "totalram_pages",
    "virt_to_page",
    "virt_to_pfn",
    "virt_to_phys",
    "vmemmap",
]


def _page_ptr_type(prog: Program):
    t = prog.cache.get("struct page *")
    if t is None:
        t = prog.cache["struct page *"] = prog.type("struct page *")
    return t


def vmemmap(prog: Program) -> Object:
    """The ``struct page *`` of pfn 0 (``vmemmap``): ``vmemmap_base``, or decoded from the first
    present section's ``section_mem_map`` like drgn."""
    v = prog.cache.get("vmemmap")
    if v is None:
        try:
            base = prog["vmemmap_base"].value_()
        except KeyError:
            first = next(for_each_present_section(prog), None)
            if first is None:
                raise SnapshotError(
                    "no vmemmap_base symbol and no present memory section: cannot find the struct pages"
                ) from None
            base = first.mem_map
        v = prog.cache["vmemmap"] = Object(prog, _page_ptr_type(prog), base)
    return v


def _page_offset(prog: Program) -> int:
    v = prog.cache.get("page_offset_base")
    if v is None:
        v = prog.cache["page_offset_base"] = prog["page_offset_base"].value_()
    return v


def PFN_PHYS(prog: Program, pfn: int) -> Object:
    """Physical address of a pfn.

    :return: ``phys_addr_t``
    """
    return Object(prog, "phys_addr_t", int(pfn) << 12)


def PHYS_PFN(prog: Program, addr: int) -> Object:
    """Pfn of a physical address.

    :return: ``unsigned long``
    """
    return Object(prog, "unsigned long", int(addr) >> 12)


def pfn_to_page(prog: Program, pfn: int) -> Object:
    """The page descriptor (``struct page``) of a page frame number.

    :return: ``struct page *``"""
    return vmemmap(prog) + int(pfn)


def page_to_pfn(page: Object) -> Object:
    """The page frame number of a page.

    :param page: ``struct page *``
    :return: ``unsigned long``"""
    return Object(page.prog_, "unsigned long", (page - vmemmap(page.prog_)).value_())


def page_to_phys(page: Object) -> Object:
    """The physical address of a page.

    :param page: ``struct page *``
    :return: ``phys_addr_t``"""
    return PFN_PHYS(page.prog_, page_to_pfn(page).value_())


def phys_to_virt(prog: Program, addr: int) -> Object:
    """Direct-map address of a physical address.

    :return: ``void *``
    """
    return Object(prog, "void *", int(addr) + _page_offset(prog))


def virt_to_phys(prog: Program, addr: int) -> Object:
    """Physical address of a direct-map address (no page-table walk; see :func:`follow_phys`).

    :return: ``unsigned long`` (as drgn's)
    """
    return Object(prog, "unsigned long", int(addr) - _page_offset(prog))


def pfn_to_virt(prog: Program, pfn: int) -> Object:
    """The direct-map address of a page frame number.

    :return: ``void *``"""
    return phys_to_virt(prog, int(pfn) << 12)


def page_to_virt(page: Object) -> Object:
    """Direct-map address of a page.

    :param page: ``struct page *``
    :return: ``void *``
    """
    return pfn_to_virt(page.prog_, page_to_pfn(page).value_())


def virt_to_pfn(prog: Program, addr: int) -> Object:
    """The page frame number of a direct-map address.

    :return: ``unsigned long``"""
    return PHYS_PFN(prog, virt_to_phys(prog, addr).value_())


def virt_to_page(prog: Program, addr: int) -> Object:
    """Page of a direct-map address.

    :return: ``struct page *``
    """
    return pfn_to_page(prog, virt_to_pfn(prog, addr).value_())


def phys_to_page(prog: Program, addr: int) -> Object:
    """The page of a physical address.

    :return: ``struct page *``"""
    return pfn_to_page(prog, int(addr) >> 12)


def follow_phys(prog_or_mm: Program | Object, addr: int) -> Object:
    """Physical address that ``addr`` maps to in an address space, by walking ``mm->pgd``.

    :param prog_or_mm: a Program (kernel tables, ``init_mm``) or ``struct mm_struct *``
    :return: ``phys_addr_t``
    :raises FaultError: if the address is not mapped
    """
    if isinstance(prog_or_mm, Program):
        prog = prog_or_mm
        pgd_phys = prog.pgd_phys
    else:
        prog = prog_or_mm.prog_
        pgd = prog_or_mm.pgd.value_()
        init_pgd = prog.symbols.by_name.get("swapper_pg_dir")
        if init_pgd is not None and pgd == init_pgd.address:
            pgd_phys = prog.pgd_phys
        else:
            pgd_phys = prog.translate(pgd)  # mm->pgd is a direct-map address
    return Object(prog, "phys_addr_t", prog.translate(int(addr), pgd_phys))


def follow_pfn(prog_or_mm: Program | Object, addr: int) -> Object:
    """The page frame number that ``addr`` maps to in an address space (``mm->pgd`` walked).

    :return: ``unsigned long``"""
    obj = follow_phys(prog_or_mm, addr)
    return Object(obj.prog_, "unsigned long", obj.value_() >> 12)


def follow_page(prog_or_mm: Program | Object, addr: int) -> Object:
    """The page that ``addr`` maps to in an address space (``mm->pgd`` walked).

    :return: ``struct page *``"""
    obj = follow_phys(prog_or_mm, addr)
    return phys_to_page(obj.prog_, obj.value_())


def for_each_page(prog: Program) -> Iterator[Object]:
    """Every ``struct page *`` of every present section (absent sections are skipped).

    :return: Iterator of ``struct page *`` objects.
    """
    g = section_geometry(prog)
    page0 = vmemmap(prog)
    t = page0.type_
    base = page0.value_()
    size = prog.types.struct("page").size
    for sec in for_each_present_section(prog):
        start = base + sec.start_pfn * size
        for i in range(g.pages_per_section):
            yield Object(prog, t, start + i * size)


def totalram_pages(prog: Program) -> int:
    """``totalram_pages()``: ``_totalram_pages`` (an atomic_long_t)."""
    return prog["_totalram_pages"].counter.value_()


# -- flags ------------------------------------------------------------------------------------
def get_page_flags(page: Object) -> int:
    """The flags word (``page->flags.f`` in 6.18, ``page->flags`` before).

    :param page: ``struct page *``
    """
    try:
        return page.flags.f.value_()
    except AttributeError:
        return page.flags.value_()


def _flag(page: Object, name: str) -> bool:
    return bool(get_page_flags(page) >> page.prog_.types.const(name) & 1)


def PageLRU(page: Object) -> bool:
    """Whether the page is on an LRU list (``PG_lru``).

    :param page: ``struct page *``"""
    return _flag(page, "PG_lru")


def PageReserved(page: Object) -> bool:
    """Whether the page is reserved (``PG_reserved``).

    :param page: ``struct page *``"""
    return _flag(page, "PG_reserved")


def page_has_type(page: Object, pgty: str) -> bool:
    """Whether ``page->page_type`` carries ``PGTY_<pgty>`` in its top byte.

    :param page: ``struct page *``
    :param pgty: ``"buddy"``, ``"slab"``, ``"table"``, ...
    """
    return page.page_type.value_() >> 24 == page.prog_.types.const(f"PGTY_{pgty}")


def PageBuddy(page: Object) -> bool:
    """Free page in the buddy allocator (head of a free block; order in ``page->private``).
    :param page: ``struct page *``"""
    return page_has_type(page, "buddy")


def PageSlab(page: Object) -> bool:
    """Page owned by the slab allocator (``PGTY_slab``). :param page: ``struct page *``"""
    return page_has_type(page, "slab")


def PageTable(page: Object) -> bool:
    """Page-table page (``PGTY_table``). :param page: ``struct page *``"""
    return page_has_type(page, "table")


def PageTail(page: Object) -> bool:
    """Tail page of a compound page (bit 0 of ``compound_head``). :param page: ``struct page *``"""
    return bool(page.compound_head.value_() & 1)


def PageHead(page: Object) -> bool:
    """Head page of a compound page (``PG_head``). :param page: ``struct page *``"""
    return _flag(page, "PG_head")


def PageCompound(page: Object) -> bool:
    """Head or tail of a compound page. :param page: ``struct page *``"""
    return PageHead(page) or PageTail(page)


def compound_head(page: Object) -> Object:
    """The head page of a tail page, else the page itself.

    :param page: ``struct page *``
    :return: ``struct page *``
    """
    head = page.compound_head.value_()
    if head & 1:
        return Object(page.prog_, page.type_, head - 1)
    return page


def compound_order(page: Object) -> int:
    """Order of a compound page (``folio->_flags_1 & 0xff`` on the head), 0 if not a head.

    :param page: ``struct page *``
    """
    if not PageHead(page):
        return 0
    flags1 = cast("struct folio *", page)._flags_1
    try:
        return flags1.f.value_() & 0xFF  # if it becomes a memdesc_flags_t like page->flags
    except AttributeError:
        return flags1.value_() & 0xFF


def compound_nr(page: Object) -> int:
    """Number of pages in a compound page. :param page: ``struct page *``"""
    return 1 << compound_order(page)


def decode_page_flags(page: Object) -> str:
    """``PG_a|PG_b|...`` for the flag bits below ``__NR_PAGEFLAGS`` (aliases included, as drgn
    prints them), unknown bits as hex.

    :param page: ``struct page *``
    """
    types = page.prog_.types
    nr = types.const("__NR_PAGEFLAGS")
    flags = get_page_flags(page) & ((1 << nr) - 1)
    parts, known = [], 0
    for name, bit in types.enum("pageflags").items():
        if name.startswith("__") or bit >= nr:
            continue
        if flags >> bit & 1:
            parts.append(name)
            known |= 1 << bit
    if flags & ~known:
        parts.append(hex(flags & ~known))
    return "|".join(parts) or "0"
