"""/proc/PID/smaps and /proc/PID/smaps_rollup (fs/proc/task_mmu.c, 6.18), columnar.

One scan of the mm's page tables (:func:`mmintro.reader.helpers.pgtable.scan_mm`) gives every
leaf; each leaf is assigned to its VMA with ``searchsorted``; the struct page and folio words
of every mapped pfn are gathered in bulk (:func:`~mmintro.reader.helpers.pgtable.page_columns`);
then 6.18's accounting runs on numpy arrays, one reduction per VMA:

* ``smaps_pte_entry``: a present PTE counts through ``vm_normal_page`` — special PTEs (the
  shared zero page, pfn maps) and pfns without a struct page are skipped; a non-present,
  non-zero PTE whose swap type is below MAX_SWAPFILES adds a page to Swap, and to SwapPss
  the page divided by ``swp_swapcount()`` (the entry's swap_map count) when that is 2 or more
  (:mod:`mmintro.reader.helpers.swap`).
* ``smaps_pmd_entry``: a present PMD leaf counts its whole folio (``vm_normal_page_pmd`` skips
  the huge zero folio), AnonHugePages / ShmemPmdMapped / FilePmdMapped by folio kind.
* ``smaps_account``: Anonymous / LazyFree / KSM / Rss / Referenced (PTE young or folio young or
  referenced), then — folio refcount 1: all private, Pss = size; otherwise per page
  ``folio_precise_page_mapcount`` (``_mapcount + 1``, plus ``_entire_mapcount + 1`` for a large
  folio): Pss += (PAGE_SIZE << PSS_SHIFT) / mapcount when mapcount >= 2 and the page is
  shared, else private (``smaps_page_accumulate``); Pss_Dirty / Pss_Anon / Pss_File /
  Pss_Shmem / Locked (VM_LOCKED) accumulate the same fixed-point shares.
* ``smaps_hugetlb_range``: a present hugetlb leaf adds its huge page size to Shared_Hugetlb
  when ``folio_maybe_mapped_shared`` (mapcount > 1) else Private_Hugetlb; no Rss.
* ``__show_smap`` / ``show_smap`` print the fields with ``seq_put_decimal_ull_width(.., 8)``
  (Private_Hugetlb with width 7), ``THPeligible`` from ``thp_vma_allowable_orders(vma,
  vm_flags, TVA_SMAPS, THP_ORDERS_ALL)``, and ``VmFlags`` with the mnemonics of
  ``show_smap_vma_flags``; before it ``ProtectionKey`` (``vma_pkey``: vm_flags' VM_PKEY bits)
  when ``arch_pkeys_enabled()`` — x86: ``boot_cpu_has(X86_FEATURE_OSPKE)``, read from the
  dump's ``boot_cpu_data`` (a snapshot without it, the simulator's, prints no such line).
  ``show_smaps_rollup`` sums every VMA and prints the ``[rollup]`` header.

A leaf counts as dirty by ``pte_dirty()`` / ``pmd_dirty()``: Dirty or SavedDirty
(:func:`~mmintro.reader.helpers.pgtable.entry_dirty`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mmintro.arch.x86 import VM_PKEY_SHIFT, VMA_PKEY_MASK, X86_FEATURE_OSPKE
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.pgtable import (
    LEVEL_PMD,
    LEVEL_PTE,
    LEVEL_PUD,
    PageTableScan,
    entry_dirty,
    entry_young,
    page_columns,
    scan_mm,
)
from mmintro.reader.helpers.task import boot_cpu_has, vma_is_anonymous
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.views.maps import MapsRow, render_line, task_vmas

__all__ = [
    "VM_MNEMONICS",
    "MemSizeStats",
    "SmapsVma",
    "account_mm",
    "render",
    "render_rollup",
    "smaps",
    "smaps_rollup",
    "thp_eligible",
    "vm_flags_string",
]

PAGE_SIZE = 4096
PSS_SHIFT = 12  # fs/proc/task_mmu.c
HPAGE_PMD_SIZE = 1 << 21
# include/linux/mm.h (#defines in 6.18: BTF has no VM_*_BIT enum), mnemonics from
# fs/proc/task_mmu.c show_smap_vma_flags() for an x86-64 build: bit -> mnemonic
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
VM_LOCKED = 0x2000
VM_HUGETLB = 0x400000
VM_HUGEPAGE, VM_NOHUGEPAGE = 0x20000000, 0x40000000
VM_MNEMONICS: dict[int, str] = {
    0: "rd",
    1: "wr",
    2: "ex",
    3: "sh",
    4: "mr",
    5: "mw",
    6: "me",
    7: "ms",
    8: "gd",
    9: "um",
    10: "pf",
    12: "uw",
    13: "lo",
    14: "io",
    15: "sr",
    16: "rr",
    17: "dc",
    18: "de",
    19: "lf",
    20: "ac",
    21: "nr",
    22: "ht",
    23: "sf",
    24: "ar",
    25: "wf",
    26: "dd",
    27: "sd",  # VM_SOFTDIRTY (CONFIG_MEM_SOFT_DIRTY; the simulated kernel has it off and never sets it)
    28: "mm",
    29: "hg",
    30: "nh",
    31: "mg",
    # bits 32..35 are VM_PKEY_BIT0..3: printed as "" (they come out through ProtectionKey)
    32: "",
    33: "",
    34: "",
    35: "",
    37: "ss",  # VM_SHADOW_STACK = VM_HIGH_ARCH_5 (CONFIG_X86_USER_SHADOW_STACK)
    40: "dp",
    41: "ui",
    42: "sl",
}
# include/linux/page-flags.h: folio->mapping low bits
FOLIO_MAPPING_ANON = 0x1
FOLIO_MAPPING_KSM = 0x3
# swap entries: mmintro.reader.helpers.swap (pte_to_swp_entry, MAX_SWAPFILES of the dumped build)
# include/linux/page-flags.h: page_mapcount_is_type(mapcount) = page_type_has_type(mapcount - 1), i.e.
# (int)(mapcount - 1) < PGTY_mapcount_underflow << 24: a page type, not a mapcount
PAGE_MAPCOUNT_RESERVE = -(1 << 24)
# include/linux/huge_mm.h: THP_ORDERS_ALL_ANON (orders 2..PMD_ORDER)
PMD_ORDER = 9
THP_ORDERS_ALL_ANON = ((1 << (PMD_ORDER + 1)) - 1) & ~0b11
# include/linux/mm_types.h: mm->flags bit that disables THP for the whole mm (prctl)
MMF_DISABLE_THP = 24

_FIELDS = (
    "resident",
    "shared_clean",
    "shared_dirty",
    "private_clean",
    "private_dirty",
    "referenced",
    "anonymous",
    "ksm",
    "lazyfree",
    "anonymous_thp",
    "shmem_thp",
    "file_thp",
    "swap",
    "shared_hugetlb",
    "private_hugetlb",
    "pss",
    "pss_dirty",
    "pss_anon",
    "pss_file",
    "pss_shmem",
    "pss_locked",
    "swap_pss",
)


@dataclass
class MemSizeStats:
    """``struct mem_size_stats`` (bytes; the ``pss*`` fields fixed point, << PSS_SHIFT)."""

    resident: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    referenced: int = 0
    anonymous: int = 0
    ksm: int = 0
    lazyfree: int = 0
    anonymous_thp: int = 0
    shmem_thp: int = 0
    file_thp: int = 0
    swap: int = 0
    shared_hugetlb: int = 0
    private_hugetlb: int = 0
    pss: int = 0
    pss_dirty: int = 0
    pss_anon: int = 0
    pss_file: int = 0
    pss_shmem: int = 0
    pss_locked: int = 0
    swap_pss: int = 0

    def add(self, other: MemSizeStats) -> None:
        for f in _FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def fields_kb(self, rollup: bool = False) -> list[tuple[str, int]]:
        """(label, kB) in ``__show_smap`` order."""
        out = [
            ("Rss", self.resident >> 10),
            ("Pss", self.pss >> PSS_SHIFT >> 10),
            ("Pss_Dirty", self.pss_dirty >> PSS_SHIFT >> 10),
        ]
        if rollup:
            out += [
                ("Pss_Anon", self.pss_anon >> PSS_SHIFT >> 10),
                ("Pss_File", self.pss_file >> PSS_SHIFT >> 10),
                ("Pss_Shmem", self.pss_shmem >> PSS_SHIFT >> 10),
            ]
        out += [
            ("Shared_Clean", self.shared_clean >> 10),
            ("Shared_Dirty", self.shared_dirty >> 10),
            ("Private_Clean", self.private_clean >> 10),
            ("Private_Dirty", self.private_dirty >> 10),
            ("Referenced", self.referenced >> 10),
            ("Anonymous", self.anonymous >> 10),
            ("KSM", self.ksm >> 10),
            ("LazyFree", self.lazyfree >> 10),
            ("AnonHugePages", self.anonymous_thp >> 10),
            ("ShmemPmdMapped", self.shmem_thp >> 10),
            ("FilePmdMapped", self.file_thp >> 10),
            ("Shared_Hugetlb", self.shared_hugetlb >> 10),
            ("Private_Hugetlb", self.private_hugetlb >> 10),
            ("Swap", self.swap >> 10),
            ("SwapPss", self.swap_pss >> PSS_SHIFT >> 10),
            ("Locked", self.pss_locked >> PSS_SHIFT >> 10),
        ]
        return out


@dataclass
class SmapsVma:
    """One VMA of /proc/PID/smaps."""

    maps: MapsRow
    kernel_page_size: int
    mmu_page_size: int
    stats: MemSizeStats
    thp_eligible: int
    vm_flags: int
    protection_key: int | None = None
    """``vma_pkey(vma)`` when arch_pkeys_enabled(), else None (no ProtectionKey line)."""

    def to_json(self) -> dict[str, Any]:
        d = self.maps._asdict() | {
            "kernel_page_size": self.kernel_page_size,
            "mmu_page_size": self.mmu_page_size,
            "thp_eligible": self.thp_eligible,
            "vm_flags": self.vm_flags,
            "protection_key": self.protection_key,
            "VmFlags": vm_flags_string(self.vm_flags),
        }
        return d | {k: v for k, v in self.stats.fields_kb()} | {"stats": asdict(self.stats)}


@dataclass
class SmapsReport:
    """smaps of one process: the VMAs and what the page-table scan found wrong."""

    pid: int
    vmas: list[SmapsVma]
    findings: list[str] = field(default_factory=list)


def vm_flags_string(flags: int) -> str:
    """``show_smap_vma_flags``: the mnemonic of each set bit, in bit order, each followed by a
    space (unknown bits print ``??``)."""
    out = []
    for bit in range(64):
        if flags >> bit & 1:
            m = VM_MNEMONICS.get(bit, "??")
            if m:
                out.append(m + " ")
    return "".join(out)


# -- THPeligible ------------------------------------------------------------------------------
def _thp_globals(prog: Program) -> tuple[int, int, int, int]:
    g = prog.cache.get("smaps.thp_globals")
    if g is None:
        vals = []
        for name in (
            "transparent_hugepage_flags",
            "huge_anon_orders_always",
            "huge_anon_orders_madvise",
            "huge_anon_orders_inherit",
        ):
            try:
                vals.append(prog[name].value_())
            except (KeyError, FaultError):
                vals.append(0)
        g = prog.cache["smaps.thp_globals"] = tuple(vals)
    return g  # type: ignore[return-value]


def thp_eligible(vma: Object) -> int:
    """``!!thp_vma_allowable_orders(vma, vma->vm_flags, TVA_SMAPS, THP_ORDERS_ALL)`` (6.18,
    include/linux/huge_mm.h and mm/huge_memory.c __thp_vma_allowable_orders) for this
    configuration: anonymous VMAs per the sysfs masks and VM_HUGEPAGE, then the size check
    (an aligned huge page must fit below vm_end); file VMAs are never eligible
    (READ_ONLY_THP_FOR_FS not set, shmem_enabled never)."""
    prog = vma.prog_
    T = prog.types
    flags_g, always, madvise, inherit = _thp_globals(prog)
    vm_flags = vma.vm_flags.value_()
    if not vma_is_anonymous(vma):
        return 0
    hp_always = flags_g >> T.const("TRANSPARENT_HUGEPAGE_FLAG") & 1
    hp_enabled = hp_always or flags_g >> T.const("TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG") & 1
    mask = always
    if vm_flags & VM_HUGEPAGE:
        mask |= madvise
    if hp_always or (vm_flags & VM_HUGEPAGE and hp_enabled):
        mask |= inherit
    orders = THP_ORDERS_ALL_ANON & mask
    if not orders:
        return 0
    mm = vma.vm_mm
    if not mm.value_():
        return 0
    if flags_g >> T.const("TRANSPARENT_HUGEPAGE_UNSUPPORTED") & 1 or vm_flags & VM_NOHUGEPAGE:
        return 0
    try:
        mmf = mm.flags.__mm_flags[0].value_()
    except (AttributeError, LookupError):
        mmf = 0
    if mmf >> MMF_DISABLE_THP & 1:
        return 0
    start, end = vma.vm_start.value_(), vma.vm_end.value_()
    for order in range(orders.bit_length() - 1, -1, -1):
        if not orders >> order & 1:
            continue
        size = PAGE_SIZE << order
        haddr = (end - size) & ~(size - 1)
        if haddr >= start and haddr + size <= end:
            return 1
    return 0


# -- the accounting ---------------------------------------------------------------------------
def _hugetlb_page_size(vma: Object, lvl: np.ndarray) -> int:
    """``huge_page_size(hstate_vma(vma))``: the hstate of the hugetlbfs superblock, else the
    leaves' size, else the default hstate."""
    prog = vma.prog_
    try:
        f = vma.vm_file
        if f.value_():
            info = Object(prog, "struct hugetlbfs_sb_info *", f.f_inode.i_sb.s_fs_info.value_())
            if info.value_():
                return PAGE_SIZE << info.hstate.order.value_()
    except (FaultError, LookupError, AttributeError):
        pass
    if len(lvl):
        return 1 << 30 if (lvl == LEVEL_PUD).any() else 1 << 21
    try:
        idx = prog["default_hstate_idx"].value_()
        order = prog["hstates"][idx].order.value_()
        if order:
            return PAGE_SIZE << order
    except (KeyError, FaultError):
        pass
    return 1 << 21


def _special_pfns(prog: Program) -> tuple[int, int]:
    v = prog.cache.get("smaps.zero_pfns")
    if v is None:
        vals = []
        for name in ("zero_pfn", "huge_zero_pfn"):
            try:
                vals.append(prog[name].value_())
            except (KeyError, FaultError):
                vals.append(-1)
        v = prog.cache["smaps.zero_pfns"] = tuple(vals)
    return v  # type: ignore[return-value]


def _reduce(vi: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum ``values`` (int64/uint64) per VMA index (exact integer sums)."""
    out = np.zeros(n, dtype=np.uint64)
    if len(vi):
        np.add.at(out, vi, values.astype(np.uint64))
    return out


def account_mm(prog: Program, vmas: list[Object], scan: PageTableScan) -> tuple[list[MemSizeStats], list[str]]:
    """6.18's smaps accounting for every VMA of one mm, from one page-table scan, then the swap
    of the shmem objects the VMAs map (:func:`_shmem_swap`).

    :param vmas: the mm's ``struct vm_area_struct *`` in address order
    :return: one :class:`MemSizeStats` per VMA, and findings (leaves outside every VMA)
    """
    stats, findings = _account_ptes(prog, vmas, scan)
    _shmem_swap(prog, vmas, scan, stats)
    return stats, findings


def _shmem_swap(prog: Program, vmas: list[Object], scan: PageTableScan, stats: list[MemSizeStats]) -> None:
    """smap_gather_stats()'s CONFIG_SHMEM part: a VMA of a shmem object with pages in swap adds
    ``shmem_swap_usage(vma)`` to Swap when it is shared or not writable; a private writable one
    is walked with smaps_shmem_walk_ops instead, whose pte_hole (smaps_pte_hole, also called for
    every none PTE) adds ``shmem_partial_swap_usage`` of each page index without a PTE."""
    from mmintro.reader.helpers.shmem import shmem_mapping, shmem_swap_indices, shmem_swap_usage

    for i, v in enumerate(vmas):
        f = v.vm_file
        if not f.value_() or not shmem_mapping(f.f_mapping):
            continue
        swapped = shmem_swap_usage(v)
        if not swapped:
            continue
        flags = v.vm_flags.value_()
        if flags & VM_SHARED or not flags & VM_WRITE:
            stats[i].swap += swapped
            continue
        start, end, pgoff = v.vm_start.value_(), v.vm_end.value_(), v.vm_pgoff.value_()
        inside = (scan.vaddr >= np.uint64(start)) & (scan.vaddr < np.uint64(end))
        covered = set()
        for va, size in zip(scan.vaddr[inside].tolist(), scan.size[inside].tolist()):
            covered.update(range((va - start) // PAGE_SIZE, (va - start + size) // PAGE_SIZE))
        npages = (end - start) // PAGE_SIZE
        holes = sum(
            1 for idx in shmem_swap_indices(f.f_mapping) if pgoff <= idx < pgoff + npages and idx - pgoff not in covered
        )
        stats[i].swap += holes * PAGE_SIZE


def _account_ptes(prog: Program, vmas: list[Object], scan: PageTableScan) -> tuple[list[MemSizeStats], list[str]]:
    """6.18's smaps accounting for every VMA of one mm, from one page-table scan.

    :param vmas: the mm's ``struct vm_area_struct *`` in address order
    :return: one :class:`MemSizeStats` per VMA, and findings (leaves outside every VMA)
    """
    T = prog.types
    n = len(vmas)
    findings = list(scan.findings)
    starts = np.array([v.vm_start.value_() for v in vmas], dtype=np.uint64)
    ends = np.array([v.vm_end.value_() for v in vmas], dtype=np.uint64)
    vflags = [v.vm_flags.value_() for v in vmas]
    locked_v = np.array([bool(f & VM_LOCKED) for f in vflags], dtype=bool)
    huge_v = np.array([bool(f & VM_HUGETLB) for f in vflags], dtype=bool)
    stats = [MemSizeStats() for _ in vmas]
    if not len(scan) or not n:
        if len(scan):
            findings.append(f"{len(scan)} page-table leaves but no VMA")
        return stats, findings
    vi = np.searchsorted(starts, scan.vaddr, side="right").astype(np.int64) - 1
    inside = (vi >= 0) & (scan.vaddr < ends[np.maximum(vi, 0)])
    if not inside.all():
        bad = scan.vaddr[~inside]
        findings.append(f"{len(bad)} page-table leaves map addresses outside every VMA (first {int(bad[0]):#x})")
    s = scan.select(inside)
    vi = vi[inside]
    hug = huge_v[vi]
    zero_pfn, huge_zero_pfn = _special_pfns(prog)
    pfn = s.pfn
    entry = s.entry

    # -- hugetlb VMAs: smaps_hugetlb_range -------------------------------------------------------
    if hug.any():
        hsel = hug & s.present & (s.level != LEVEL_PTE)
        if hsel.any():
            cols = page_columns(prog, pfn[hsel])
            mapc = np.where(
                cols.order > 0, cols.entire_mapcount.astype(np.int64) + 1, cols.mapcount.astype(np.int64) + 1
            )
            shared = mapc > 1
            for i, sh, lvl in zip(vi[hsel].tolist(), shared.tolist(), s.level[hsel].tolist()):
                size = _hugetlb_page_size(vmas[i], np.array([lvl]))
                if sh:
                    stats[i].shared_hugetlb += size
                else:
                    stats[i].private_hugetlb += size
        # non-present hugetlb entries are "maybe shared" (folio of a migration entry): not modelled
    normal = ~hug

    # -- swap entries: non-present PTEs: smaps_pte_entry's is_swap_pte branch ------------------
    swp = normal & ~s.present & (s.level == LEVEL_PTE)
    if swp.any():
        from mmintro.reader.helpers.swap import max_swapfiles, swp_entries, swp_swapcounts

        types, offsets = swp_entries(entry[swp])
        real = types < max_swapfiles(prog)  # !non_swap_entry(): not migration, hwpoison, marker
        sv = vi[swp][real]
        # SwapPss: (PAGE_SIZE << PSS_SHIFT) / swp_swapcount() when the entry is shared (>= 2)
        count = swp_swapcounts(prog, types[real], offsets[real])
        full = np.int64(PAGE_SIZE << PSS_SHIFT)
        pss = np.where(count >= 2, full // np.maximum(count, 1), full)
        cnt = np.bincount(sv, minlength=n)
        pss_sum = _reduce(sv, pss, n)
        for i in np.nonzero(cnt)[0].tolist():
            stats[i].swap += int(cnt[i]) * PAGE_SIZE
            stats[i].swap_pss += int(pss_sum[i])

    # -- present PTEs: smaps_pte_entry -> vm_normal_page -> smaps_account(compound=false) --------
    special = np.uint64(1 << 9)  # _PAGE_SPECIAL (_PAGE_BIT_SOFTW1)
    pte = normal & s.present & (s.level == LEVEL_PTE)
    pte &= (entry & special) == 0
    pte &= pfn != np.uint64(zero_pfn & 0xFFFFFFFFFFFFFFFF)
    pmd = normal & s.present & (s.level == LEVEL_PMD) & (pfn != np.uint64(huge_zero_pfn & 0xFFFFFFFFFFFFFFFF))
    bit = {name: np.uint64(1 << T.const(name)) for name in ("PG_dirty", "PG_swapbacked", "PG_referenced", "PG_young")}

    if pte.any():
        cols = page_columns(prog, pfn[pte])
        ok = cols.valid
        v = vi[pte][ok]
        e = entry[pte][ok]
        hf, hm = cols.head_flags[ok], cols.head_mapping[ok]
        young = entry_young(e)
        pte_dirty = entry_dirty(e)
        dirty = pte_dirty | ((hf & bit["PG_dirty"]) != 0)
        anon = (hm & np.uint64(FOLIO_MAPPING_ANON)) != 0
        ksm = (hm & np.uint64(FOLIO_MAPPING_KSM)) == FOLIO_MAPPING_KSM
        swapbacked = (hf & bit["PG_swapbacked"]) != 0
        referenced = young | ((hf & bit["PG_young"]) != 0) | ((hf & bit["PG_referenced"]) != 0)
        lazy = anon & ~swapbacked & ~pte_dirty & ((hf & bit["PG_dirty"]) == 0)
        mapcount = cols.mapcount[ok].astype(np.int64) + 1
        mapcount = np.where(mapcount - 1 < PAGE_MAPCOUNT_RESERVE, 0, mapcount)
        large = cols.order[ok] > 0
        mapcount = mapcount + np.where(large, cols.entire_mapcount[ok].astype(np.int64) + 1, 0)
        ref1 = cols.head_refcount[ok] == 1
        private = ref1 | (mapcount < 2)
        full = np.int64(PAGE_SIZE << PSS_SHIFT)
        pss = np.where(private, full, full // np.maximum(mapcount, 1))
        _accumulate(
            stats,
            v,
            n,
            np.full(len(v), PAGE_SIZE, np.int64),
            pss,
            anon,
            ksm,
            lazy,
            referenced,
            dirty,
            private,
            swapbacked,
            locked_v[v],
        )

    # -- PMD leaves: smaps_pmd_entry -> smaps_account(compound=true) ----------------------------
    # every subpage of every PMD-mapped folio is expanded into one row (the folio's values
    # repeated), so the per-page mapcount loop of smaps_account is one numpy pass
    if pmd.any():
        heads = pfn[pmd]
        hcols = page_columns(prog, heads)
        ok = hcols.valid
        heads, hv, he = heads[ok], vi[pmd][ok], entry[pmd][ok]
        order = np.where(hcols.order[ok] > 0, hcols.order[ok], PMD_ORDER).astype(np.int64)
        nr = np.int64(1) << order
        hf, hm = hcols.head_flags[ok], hcols.head_mapping[ok]
        is_anon = (hm & np.uint64(FOLIO_MAPPING_ANON)) != 0
        swapbacked = (hf & bit["PG_swapbacked"]) != 0
        thp = np.int64(HPAGE_PMD_SIZE)
        for name, sel in (
            ("anonymous_thp", is_anon),
            ("shmem_thp", ~is_anon & swapbacked),
            ("file_thp", ~is_anon & ~swapbacked),
        ):
            tot = _reduce(hv, np.where(sel, thp, 0), n)
            for i in np.nonzero(tot)[0].tolist():
                setattr(stats[i], name, getattr(stats[i], name) + int(tot[i]))
        rep = np.repeat(np.arange(len(heads)), nr)  # row -> its folio
        first = np.repeat(np.cumsum(nr) - nr, nr)
        sub_pfn = heads[rep] + (np.arange(len(rep)) - first).astype(np.uint64)
        sub = page_columns(prog, sub_pfn)
        mapcount = sub.mapcount.astype(np.int64) + 1
        mapcount = np.where(mapcount - 1 < PAGE_MAPCOUNT_RESERVE, 0, mapcount)
        mapcount += hcols.entire_mapcount[ok].astype(np.int64)[rep] + 1
        ref1 = (hcols.head_refcount[ok] == 1)[rep]
        private = ref1 | (mapcount < 2)
        full = np.int64(PAGE_SIZE << PSS_SHIFT)
        pss = np.where(private, full, full // np.maximum(mapcount, 1))
        young = entry_young(he) | ((hf & bit["PG_young"]) != 0) | ((hf & bit["PG_referenced"]) != 0)
        dirty = entry_dirty(he) | ((hf & bit["PG_dirty"]) != 0)
        lazy = is_anon & ~swapbacked & ~dirty
        ksm = (hm & np.uint64(FOLIO_MAPPING_KSM)) == FOLIO_MAPPING_KSM
        _accumulate(
            stats,
            hv[rep],
            n,
            np.full(len(rep), PAGE_SIZE, np.int64),
            pss,
            is_anon[rep],
            ksm[rep],
            lazy[rep],
            young[rep],
            dirty[rep],
            private,
            swapbacked[rep],
            locked_v[hv][rep],
        )
    return stats, findings


def _accumulate(
    stats: list[MemSizeStats],
    v: np.ndarray,
    n: int,
    size: np.ndarray,
    pss: np.ndarray,
    anon: np.ndarray,
    ksm: np.ndarray,
    lazy: np.ndarray,
    referenced: np.ndarray,
    dirty: np.ndarray,
    private: np.ndarray,
    swapbacked: np.ndarray,
    locked: np.ndarray,
) -> None:
    """``smaps_account`` + ``smaps_page_accumulate`` for many pages at once, summed per VMA."""
    sums = {
        "resident": size,
        "anonymous": np.where(anon, size, 0),
        "ksm": np.where(ksm, size, 0),
        "lazyfree": np.where(lazy, size, 0),
        "referenced": np.where(referenced, size, 0),
        "pss": pss,
        "pss_anon": np.where(anon, pss, 0),
        "pss_shmem": np.where(~anon & swapbacked, pss, 0),
        "pss_file": np.where(~anon & ~swapbacked, pss, 0),
        "pss_locked": np.where(locked, pss, 0),
        "pss_dirty": np.where(dirty, pss, 0),
        "private_dirty": np.where(dirty & private, size, 0),
        "shared_dirty": np.where(dirty & ~private, size, 0),
        "private_clean": np.where(~dirty & private, size, 0),
        "shared_clean": np.where(~dirty & ~private, size, 0),
    }
    for name, vals in sums.items():
        tot = _reduce(v, vals, n)
        for i in np.nonzero(tot)[0].tolist():
            setattr(stats[i], name, getattr(stats[i], name) + int(tot[i]))


# -- the views ----------------------------------------------------------------------------------
def smaps(prog: Program, pid: int) -> SmapsReport:
    """/proc/PID/smaps of ``pid`` (LookupError if there is no such task)."""
    _task, mm, rows = task_vmas(prog, pid)
    if mm is None:
        return SmapsReport(pid, [])
    vmas = [v for _r, v in rows]
    scan = scan_mm(mm)
    stats, findings = account_mm(prog, vmas, scan)
    out = []
    pkeys = bool(boot_cpu_has(prog, X86_FEATURE_OSPKE))  # arch_pkeys_enabled()
    vi = (
        np.searchsorted(
            np.array([v.vm_start.value_() for v in vmas], dtype=np.uint64), scan.vaddr, side="right"
        ).astype(np.int64)
        - 1
        if vmas
        else np.zeros(0, np.int64)
    )
    for k, ((row, v), st) in enumerate(zip(rows, stats)):
        f = v.vm_flags.value_()
        kps = PAGE_SIZE
        if f & VM_HUGETLB:
            kps = _hugetlb_page_size(v, scan.level[vi == k])
        try:
            elig = thp_eligible(v)
        except (FaultError, ValidationError, LookupError):
            elig = 0
        out.append(SmapsVma(row, kps, kps, st, elig, f, (f & VMA_PKEY_MASK) >> VM_PKEY_SHIFT if pkeys else None))
    return SmapsReport(pid, out, findings)


def smaps_rollup(prog: Program, pid: int) -> tuple[int, int, MemSizeStats, list[str]]:
    """(first vm_start, last vm_end, summed stats, findings) for /proc/PID/smaps_rollup."""
    rep = smaps(prog, pid)
    total = MemSizeStats()
    own = [v for v in rep.vmas if v.maps.name != "[vsyscall]"]  # show_smaps_rollup: the mm's VMAs only
    for v in own:
        total.add(v.stats)
    if not own:
        return 0, 0, total, rep.findings
    return own[0].maps.start, own[-1].maps.end, total, rep.findings


def _kb_line(label: str, kb: int, width: int = 8) -> str:
    # SEQ_PUT_DEC: seq_put_decimal_ull_width(m, "Label:  " padded to 16, val >> 10, 8)
    if label == "Private_Hugetlb":
        return f"{label}: {kb:>7} kB"  # " kB\nPrivate_Hugetlb: " with width 7
    return f"{label + ':':<16}{kb:>{width}} kB"


def render_stats(st: MemSizeStats, rollup: bool = False) -> list[str]:
    return [_kb_line(label, kb) for label, kb in st.fields_kb(rollup)]


def render(rep: SmapsReport) -> str:
    lines: list[str] = []
    for v in rep.vmas:
        lines.append(render_line(v.maps))
        lines.append(_kb_line("Size", (v.maps.end - v.maps.start) >> 10))
        lines.append(_kb_line("KernelPageSize", v.kernel_page_size >> 10))
        lines.append(_kb_line("MMUPageSize", v.mmu_page_size >> 10))
        lines += render_stats(v.stats)
        lines.append(f"THPeligible:    {v.thp_eligible:>8}")
        if v.protection_key is not None:
            lines.append(f"ProtectionKey:  {v.protection_key:>8}")
        lines.append(f"VmFlags: {vm_flags_string(v.vm_flags)}")
    return "".join(s + "\n" for s in lines)


def render_rollup(start: int, end: int, st: MemSizeStats) -> str:
    head = f"{start:08x}-{end:08x} ---p 00000000 00:00 0 ".ljust(73) + "[rollup]"
    return head + "\n" + "".join(s + "\n" for s in render_stats(st, rollup=True))
