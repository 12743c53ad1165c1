"""Columnar page-table scans: every leaf of an address space as numpy columns.

drgn's ``follow_page`` walks the four levels for one address at a time.  A scan here reads
each table page once, as an array of 512 ``u64`` entries, and descends level by level with
numpy: the present entries of the PGD give the PUD tables, all PUD tables are read in one
gather, and so on down to the PTEs.  The result, :class:`PageTableScan`, holds one row per
leaf: its virtual address, the entry, the level (4 KiB PTE, 2 MiB PMD leaf with PSE, 1 GiB
PUD leaf with PSE) and the physical address of the slot; non-present, non-zero leaf entries
(swap or migration entries) are kept too, with ``present`` False.

The scan trusts nothing: a table whose frame is not RAM, or a table reached twice (a loop or
a shared table where none may be), is recorded as a *finding* and not descended, so a
corrupted page table gives a one-line finding, never a hang or a traceback.  Page-table
entry bits are the #defines of arch/x86/include/asm/pgtable_types.h, written once in
:mod:`mmintro.arch.x86`.

The same scan of the kernel's vmemmap gives a vectorised translation (:class:`Translator`)
that turns many ``struct page`` addresses into physical addresses at once, so per-pfn struct
page columns (:func:`page_columns`) are gathered without a Python loop per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mmintro.arch import x86 as _x86
from mmintro.reader.errors import FaultError
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = [
    "LEAF_SIZE",
    "LEVEL_PMD",
    "LEVEL_PTE",
    "LEVEL_PUD",
    "PageColumns",
    "PageTableScan",
    "Translator",
    "entry_dirty",
    "entry_young",
    "mm_pgd_phys",
    "page_columns",
    "scan_mm",
    "scan_page_tables",
    "vmemmap_translator",
]

PAGE_SHIFT = _x86.PAGE_SHIFT
PTE_PFN_MASK = np.uint64(_x86.PTE_PFN_MASK)
_PRESENT = np.uint64(_x86._PAGE_PRESENT)
_PSE = np.uint64(_x86._PAGE_PSE)
# pte_present() is PRESENT | PROTNONE (PROTNONE is the GLOBAL bit on a user entry):
# arch/x86/include/asm/pgtable.h.
_PTE_PRESENT = np.uint64(_x86._PAGE_PRESENT | _x86._PAGE_GLOBAL)

# pte_dirty() / pmd_dirty() test _PAGE_DIRTY_BITS (Dirty or SavedDirty), pte_young() /
# pmd_young() _PAGE_ACCESSED: arch/x86/include/asm/pgtable.h.
_DIRTY_BITS = np.uint64(_x86._PAGE_DIRTY_BITS)
_ACCESSED = np.uint64(_x86._PAGE_ACCESSED)


def entry_dirty(entry: np.ndarray) -> np.ndarray:
    """bool: ``pte_dirty()`` / ``pmd_dirty()`` of present leaf entries (uint64): the hardware
    Dirty bit or the SavedDirty software bit that ``pte_wrprotect()`` moves it to (x86-64,
    since 6.6: a fork's CoW write-protection leaves the parent's and child's dirty PTEs with
    SavedDirty only)."""
    return (np.asarray(entry, dtype=np.uint64) & _DIRTY_BITS) != 0


def entry_young(entry: np.ndarray) -> np.ndarray:
    """bool: ``pte_young()`` / ``pmd_young()`` of present leaf entries (_PAGE_ACCESSED)."""
    return (np.asarray(entry, dtype=np.uint64) & _ACCESSED) != 0


LEVEL_PTE, LEVEL_PMD, LEVEL_PUD = 1, 2, 3
LEAF_SIZE = {LEVEL_PTE: 1 << 12, LEVEL_PMD: 1 << 21, LEVEL_PUD: 1 << 30}
_IDX = np.arange(512, dtype=np.uint64)


@dataclass
class PageTableScan:
    """Every leaf below one PGD, in address order."""

    vaddr: np.ndarray
    """uint64: virtual address of each leaf (canonical, sign-extended)."""
    entry: np.ndarray
    """uint64: the leaf entry."""
    level: np.ndarray
    """uint8: :data:`LEVEL_PTE` (4 KiB), :data:`LEVEL_PMD` (2 MiB), :data:`LEVEL_PUD` (1 GiB)."""
    slot: np.ndarray
    """uint64: physical address of the entry."""
    present: np.ndarray
    """bool: ``pte_present()`` (False rows are non-zero non-present entries: swap, migration)."""
    findings: list[str] = field(default_factory=list)
    """One line per problem found (table outside RAM, table reached twice)."""
    tables: dict[str, int] = field(default_factory=dict)
    """Number of table pages read per level (``pud``, ``pmd``, ``pte``)."""

    def __len__(self) -> int:
        return len(self.vaddr)

    @property
    def pfn(self) -> np.ndarray:
        """Frame of each leaf's first page as ``pte_pfn()`` / ``pmd_pfn()`` / ``pud_pfn()``
        give it (arch/x86/include/asm/pgtable.h): ``entry & PTE_PFN_MASK >> PAGE_SHIFT``, the PAT
        bit of large leaves masked, and the PFN of a non-zero entry without _PAGE_PRESENT (a
        PROT_NONE leaf) inverted back (``protnone_mask``, pgtable-invert.h: x86 stores it
        inverted against L1TF).  Meaningless for swap entries."""
        size = np.array([0, 1 << 12, 1 << 21, 1 << 30], dtype=np.uint64)[self.level]
        inv = (self.entry != 0) & ((self.entry & _PRESENT) == 0)
        e = np.where(inv, ~self.entry, self.entry)
        return (e & PTE_PFN_MASK & ~(size - np.uint64(1))) >> np.uint64(PAGE_SHIFT)

    @property
    def size(self) -> np.ndarray:
        """uint64: bytes mapped by each leaf."""
        return np.array([0, 1 << 12, 1 << 21, 1 << 30], dtype=np.uint64)[self.level]

    def select(self, mask: np.ndarray) -> PageTableScan:
        return PageTableScan(
            self.vaddr[mask],
            self.entry[mask],
            self.level[mask],
            self.slot[mask],
            self.present[mask],
            self.findings,
            self.tables,
        )


def _canonical(v: np.ndarray, top_bit: int = 47) -> np.ndarray:
    """Sign-extend bit ``top_bit`` (47: 4-level paging, 56: 5-level)."""
    hi = (v >> np.uint64(top_bit)) & np.uint64(1)
    return np.where(hi == 1, v | np.uint64(((1 << 64) - 1) & ~((1 << (top_bit + 1)) - 1)), v)


def _walk_levels(prog: Program) -> list[tuple[str, int, int | None]]:
    """(name, shift, leaf level code or None) from the top table down: ``prog.levels`` (the
    dump's paging mode: 5-level when vmcoreinfo says pgtable_l5_enabled, adding the P4D
    below a PGD of shift 48), else 4-level."""
    levels = getattr(prog, "levels", None)
    codes = {"pud": LEVEL_PUD, "pmd": LEVEL_PMD, "pte": LEVEL_PTE}
    if levels and len(levels) == 5:
        return [(lv.name, lv.shift, codes.get(lv.name)) for lv in levels]
    return [("pgd", 39, None), ("pud", 30, LEVEL_PUD), ("pmd", 21, LEVEL_PMD), ("pte", 12, LEVEL_PTE)]


def _read_tables(prog: Program, phys: np.ndarray) -> np.ndarray:
    """(n, 512) uint64: the table pages at the physical addresses ``phys`` (each page-aligned,
    each known to be RAM)."""
    core = prog.core
    out = np.empty((len(phys), 512), dtype=np.uint64)
    raw = out.view(np.uint8).reshape(len(phys), 4096)
    for i, p in enumerate(phys.tolist()):
        core.read_phys_into(raw[i], p)
    return out


def scan_page_tables(prog: Program, pgd_phys: int, first: int = 0, last: int = 255) -> PageTableScan:
    """Scan the page tables under the PGD at physical ``pgd_phys``, PGD slots ``first..last``
    (0..255 is the user half of a 4- or 5-level PGD; the dump's paging mode decides the levels).

    :return: the leaves, with findings for tables outside RAM or reached twice
    """
    findings: list[str] = []
    tables_read: dict[str, int] = {}
    pgd_phys = int(pgd_phys)
    if not prog.core.is_ram(pgd_phys):
        findings.append(f"pgd at physical {pgd_phys:#x} is not RAM")
        e = np.zeros(0, dtype=np.uint64)
        return PageTableScan(e, e, e.astype(np.uint8), e, e.astype(bool), findings, tables_read)
    seen = {pgd_phys}
    # the current level's tables: physical address and the virtual address each one covers
    tab_phys = np.array([pgd_phys], dtype=np.uint64)
    tab_base = np.array([0], dtype=np.uint64)
    leaves: list[tuple[np.ndarray, ...]] = []
    walk_levels = _walk_levels(prog)
    top_bit = walk_levels[0][1] + 8
    for i, (name, shift_, lvl) in enumerate(walk_levels):
        if not len(tab_phys):
            break
        lower = walk_levels[i + 1][0] if i + 1 < len(walk_levels) else ""
        ents = _read_tables(prog, tab_phys)
        if i:
            tables_read[name] = len(tab_phys)
        shift = np.uint64(shift_)
        if i == 0:
            ents = ents[:, first : last + 1]
            idx = _IDX[first : last + 1]
        else:
            idx = _IDX
        vaddr = (tab_base[:, None] + (idx[None, :] << shift)).reshape(-1)
        slot = (tab_phys[:, None] + idx[None, :] * np.uint64(8)).reshape(-1)
        e = ents.reshape(-1)
        nz = e != 0
        vaddr, slot, e = vaddr[nz], slot[nz], e[nz]
        if lvl == LEVEL_PTE:
            leaves.append((vaddr, e, np.full(len(e), LEVEL_PTE, np.uint8), slot, (e & _PTE_PRESENT) != 0))
            break
        present = (e & _PRESENT) != 0
        if lvl in (LEVEL_PUD, LEVEL_PMD):
            big = ((e & _PSE) != 0) & ((e & _PTE_PRESENT) != 0)
            # a non-present entry with PSE at the PMD level is a THP migration/swap entry
            leafish = big | ((e & _PSE) != 0)
            if leafish.any():
                leaves.append(
                    (
                        vaddr[leafish],
                        e[leafish],
                        np.full(int(leafish.sum()), lvl, np.uint8),
                        slot[leafish],
                        big[leafish],
                    )
                )
            present &= ~leafish
        # non-present table-level entries other than those are not leaves the kernel maps
        nxt = e[present] & PTE_PFN_MASK
        base = vaddr[present]
        if not len(nxt):
            tab_phys = nxt
            break
        ok = _is_ram_many(prog, nxt, 4096)
        for p, v in zip(nxt[~ok].tolist(), base[~ok].tolist()):
            findings.append(
                f"{name} entry for {int(_canonical(np.array([v], np.uint64), top_bit)[0]):#x} "
                f"points to a {lower} table at physical {p:#x}, which is not RAM"
            )
        nxt, base = nxt[ok], base[ok]
        # a table reached twice: a loop, or two entries sharing one table
        uniq, first_i, counts = np.unique(nxt, return_index=True, return_counts=True)
        keep = np.zeros(len(nxt), dtype=bool)
        keep[first_i] = True
        for p in uniq[counts > 1].tolist():
            findings.append(
                f"{lower} table at physical {p:#x} is referenced {int(counts[uniq == p][0])} times at the {name} level"
            )
        again = np.isin(nxt, np.fromiter(seen, np.uint64, len(seen)))
        for p in nxt[again & keep].tolist():
            findings.append(f"{lower} table at physical {p:#x} is also a higher-level table (page-table loop)")
        keep &= ~again
        tab_phys, tab_base = nxt[keep], base[keep]
        seen.update(tab_phys.tolist())
    if leaves:
        cols = [np.concatenate(c) for c in zip(*leaves)]
        order = np.argsort(cols[0], kind="stable")
        cols = [c[order] for c in cols]
        cols[0] = _canonical(cols[0], top_bit)
    else:
        z = np.zeros(0, dtype=np.uint64)
        cols = [z, z, z.astype(np.uint8), z, z.astype(bool)]
    return PageTableScan(*cols, findings=findings, tables=tables_read)


def _is_ram_many(prog: Program, phys: np.ndarray, size: int) -> np.ndarray:
    """bool: ``[phys, phys + size)`` lies inside one RAM segment of the core."""
    segs = prog.core.segments
    if not segs:
        return np.zeros(len(phys), dtype=bool)
    starts = np.array([s.paddr for s in segs], dtype=np.uint64)
    ends = np.array([s.end for s in segs], dtype=np.uint64)
    i = np.searchsorted(starts, phys, side="right").astype(np.int64) - 1
    return (i >= 0) & (phys + np.uint64(size) <= ends[np.maximum(i, 0)])


def mm_pgd_phys(mm: Object) -> int:
    """Physical address of ``mm->pgd`` (a direct-map address; ``init_mm`` uses swapper_pg_dir).

    :param mm: ``struct mm_struct *``
    """
    prog = mm.prog_
    pgd = mm.pgd.value_()
    sym = prog.symbols.by_name.get("swapper_pg_dir")
    if sym is not None and pgd == sym.address:
        return prog.pgd_phys
    return prog.translate(pgd)


def scan_mm(mm: Object) -> PageTableScan:
    """The user half (PGD slots 0..255) of ``mm``'s page tables.

    :param mm: ``struct mm_struct *``
    """
    try:
        pgd = mm_pgd_phys(mm)
    except FaultError as e:
        z = np.zeros(0, dtype=np.uint64)
        return PageTableScan(
            z,
            z,
            z.astype(np.uint8),
            z,
            z.astype(bool),
            [f"mm {mm.value_():#x}: pgd {mm.pgd.value_():#x} is not mapped ({e.message})"],
            {},
        )
    return scan_page_tables(mm.prog_, pgd, 0, 255)


# -- vectorised translation and struct page columns -------------------------------------------
class Translator:
    """Many virtual addresses to physical at once, from a scan's present leaves."""

    def __init__(self, scan: PageTableScan) -> None:
        s = scan.select(scan.present)
        self.start = s.vaddr
        self.size = s.size
        self.phys = s.pfn << np.uint64(PAGE_SHIFT)

    def __call__(self, vaddrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(physical addresses, mapped mask) of ``vaddrs`` (uint64)."""
        v = np.asarray(vaddrs, dtype=np.uint64)
        i = np.searchsorted(self.start, v, side="right").astype(np.int64) - 1
        j = np.maximum(i, 0)
        ok = (i >= 0) & (v < self.start[j] + self.size[j]) if len(self.start) else np.zeros(len(v), bool)
        if not len(self.start):
            return np.zeros(len(v), np.uint64), ok
        return np.where(ok, self.phys[j] + (v - self.start[j]), np.uint64(0)), ok


def vmemmap_translator(prog: Program) -> Translator:
    """A :class:`Translator` for the vmemmap (the PGD slots holding ``vmemmap_base``), cached."""
    t = prog.cache.get("pgtable.vmemmap_translator")
    if t is None:
        from mmintro.reader.helpers.mm import vmemmap

        base = vmemmap(prog).value_()
        first = (base >> _walk_levels(prog)[0][1]) & 511
        t = prog.cache["pgtable.vmemmap_translator"] = Translator(
            scan_page_tables(prog, prog.pgd_phys, first, min(511, first + 1))
        )
    return t


class PageColumns(NamedTuple):
    """Columns of ``struct page`` (and of the folio each page belongs to) for many pfns."""

    pfn: np.ndarray
    valid: np.ndarray
    """bool: the pfn has a mapped struct page."""
    flags: np.ndarray
    """uint64: ``page->flags``."""
    mapcount: np.ndarray
    """int32: ``page->_mapcount`` (raw; -1 = unmapped)."""
    refcount: np.ndarray
    """int32: ``page->_refcount``."""
    mapping: np.ndarray
    """uint64: ``page->mapping``."""
    index: np.ndarray
    """uint64: ``page->__folio_index``."""
    head: np.ndarray
    """uint64: pfn of the folio's head page (the page itself if not a tail)."""
    head_flags: np.ndarray
    head_refcount: np.ndarray
    head_mapping: np.ndarray
    order: np.ndarray
    """uint8: folio order (``_flags_1 & 0xff`` when the head has PG_head, else 0)."""
    entire_mapcount: np.ndarray
    """int32: ``folio->_entire_mapcount`` of a large folio (raw: -1 = not PMD-mapped); -1 for
    order-0 folios."""
    large_mapcount: np.ndarray
    """int32: ``folio->_large_mapcount`` of a large folio (raw), -1 otherwise."""
    pincount: np.ndarray
    """int32: ``folio->_pincount`` of a large folio, 0 otherwise."""


def _gather_words(prog: Program, phys: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    out = np.empty(len(phys), dtype=np.uint64)
    for s in range(0, len(phys), chunk):
        out[s : s + chunk] = prog.core.gather_u64(phys[s : s + chunk])
    return out


_DENSE_MIN = 1 << 15


def _dense_rows(
    prog: Program, pfns: np.ndarray, base: np.uint64, size: np.uint64
) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, index): the struct pages of ``pfns`` as ``rows[index]`` ((span, size/8) u64 and the
    row of each pfn), read as one stretch of the vmemmap — a
    sequential copy per vmemmap leaf (2 MiB each), holes (sections without a memmap) left
    zero — when the pfns are dense enough; None when they are sparse."""
    lo, hi = int(pfns.min()), int(pfns.max())
    span = hi - lo + 1
    if span > 4 * len(pfns):
        return None
    words = int(size) // 8
    buf = np.zeros(span * words, dtype=np.uint64)
    raw = buf.view(np.uint8)
    start = int(base) + lo * int(size)
    end = start + span * int(size)
    tr = vmemmap_translator(prog)
    first = max(0, int(np.searchsorted(tr.start, np.uint64(start), side="right")) - 1)
    for i in range(first, len(tr.start)):
        v0, sz, p0 = int(tr.start[i]), int(tr.size[i]), int(tr.phys[i])
        if v0 >= end:
            break
        a, b = max(v0, start), min(v0 + sz, end)
        if a >= b:
            continue
        try:
            prog.core.read_phys_into(raw[a - start : b - start], p0 + (a - v0))
        except FaultError:
            continue  # a vmemmap leaf outside RAM: those rows stay zero (and not valid)
    return buf.reshape(span, words), (pfns - np.uint64(lo)).astype(np.int64)


def page_columns(prog: Program, pfns: np.ndarray) -> PageColumns:
    """Struct page and folio columns for ``pfns``, gathered in bulk (numpy, no per-page objects).

    Offsets come from the type data (``struct page``, ``struct folio``); the flag bit numbers
    from ``enum pageflags``.
    """
    from mmintro.reader.helpers.mm import vmemmap

    T = prog.types
    pfns = np.asarray(pfns, dtype=np.uint64)
    size = np.uint64(T.struct("page").size)
    base = np.uint64(vmemmap(prog).value_())
    tr = vmemmap_translator(prog)
    phys, ok = tr(base + pfns * size)
    ok &= _is_ram_many(prog, phys, int(size))

    dense = _dense_rows(prog, pfns, base, size) if len(pfns) >= _DENSE_MIN else None

    def word(ph: np.ndarray, off: int) -> np.ndarray:
        if dense is not None and ph is phys:
            rows, index = dense
            return np.where(ok, rows[:, off >> 3][index], np.uint64(0))
        o = np.uint64(off & ~7)
        w = np.zeros(len(ph), dtype=np.uint64)
        if ok.any():
            w[ok] = _gather_words(prog, ph[ok] + o)
        return w

    page = T.struct("page")
    folio = T.struct("folio")
    off_flags = page.offsetof("flags")
    off_map = page.offsetof("_mapcount")
    off_ref = page.offsetof("_refcount")
    off_mapping = page.offsetof("mapping")
    off_index = page.offsetof("__folio_index")
    off_ch = page.offsetof("compound_head")

    def s32(w: np.ndarray, off: int) -> np.ndarray:
        return ((w >> np.uint64(8 * (off & 7))) & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)

    flags = word(phys, off_flags)
    mc_ref = word(phys, off_map)
    mapcount = s32(mc_ref, off_map)
    refcount = s32(word(phys, off_ref), off_ref) if (off_ref & ~7) != (off_map & ~7) else s32(mc_ref, off_ref)
    mapping = word(phys, off_mapping)
    index = word(phys, off_index)
    ch = word(phys, off_ch)
    tail = (ch & np.uint64(1)) == 1
    head_addr = np.where(tail, ch - np.uint64(1), base + pfns * size)
    head = ((head_addr - base) // size).astype(np.uint64)
    head_flags, head_ref, head_mapping = flags.copy(), refcount.copy(), mapping.copy()
    order = np.zeros(len(pfns), dtype=np.uint8)
    entire = np.full(len(pfns), -1, dtype=np.int32)
    large = np.full(len(pfns), -1, dtype=np.int32)
    pin = np.zeros(len(pfns), dtype=np.int32)
    pg_head = np.uint64(1 << T.const("PG_head"))
    if tail.any() or ((flags & pg_head) != 0).any():
        hphys, hok = tr(head_addr)
        sel = ok & hok & _is_ram_many(prog, hphys, int(size))
        hp = np.where(sel, hphys, np.uint64(0))

        def hword(off: int) -> np.ndarray:
            w = np.zeros(len(pfns), dtype=np.uint64)
            if sel.any():
                w[sel] = _gather_words(prog, hp[sel] + np.uint64(off & ~7))
            return w

        head_flags = np.where(tail, hword(off_flags), flags)
        hr = hword(off_ref)
        head_ref = np.where(tail, s32(hr, off_ref), refcount)
        head_mapping = np.where(tail, hword(off_mapping), mapping)
        is_large = (head_flags & pg_head) != 0
        f1 = hword(folio.offsetof("_flags_1"))
        order = np.where(is_large, f1 & np.uint64(0xFF), 0).astype(np.uint8)
        off_e = folio.offsetof("_entire_mapcount")
        off_l = folio.offsetof("_large_mapcount")
        off_p = folio.offsetof("_pincount")
        we = hword(off_e)
        entire = np.where(is_large, s32(we, off_e), -1).astype(np.int32)
        wl = hword(off_l)
        large = np.where(is_large, s32(wl, off_l), -1).astype(np.int32)
        wp = we if (off_p & ~7) == (off_e & ~7) else hword(off_p)
        pin = np.where(is_large, s32(wp, off_p), 0).astype(np.int32)
    return PageColumns(
        pfns,
        ok,
        flags,
        mapcount,
        refcount,
        mapping,
        index,
        head,
        head_flags,
        head_ref,
        head_mapping,
        order,
        entire,
        large,
        pin,
    )
