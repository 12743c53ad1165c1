"""Transparent huge pages (mm/huge_memory.c, include/linux/huge_mm.h, mm/pgtable-generic.c) of 6.18.

Boot
    ``transparent_hugepage_flags`` is initialised statically for the Kconfig default
    (CONFIG_TRANSPARENT_HUGEPAGE_MADVISE: REQ_MADV | DEFRAG_REQ_MADV | DEFRAG_KHUGEPAGED |
    USE_ZERO_PAGE), changed by ``transparent_hugepage=always|never``
    (setup_transparent_hugepage); ``huge_zero_pfn`` is statically ~0UL.  hugepage_init()
    (subsys_initcall): hugepage_init_sysfs() sets ``huge_anon_orders_inherit = BIT(PMD_ORDER)``
    (the 2048kB size "inherit", the mTHP sizes "never", as the reference sysfs shows),
    khugepaged_init() would create the ``mm_slot`` cache (struct mm_slot is not in the pinned
    type data: not created), and a machine with less than 512 MiB of RAM gets
    ``transparent_hugepage_flags = 0``.  khugepaged itself (mm slots, collapse) is not modelled.

Faults
    * :func:`thp_vma_allowable` is thp_vma_allowable_order(vma, vm_flags, TVA_PAGEFAULT,
      PMD_ORDER): anonymous VMAs, the sysfs masks against VM_HUGEPAGE, not VM_NOHUGEPAGE or
      MMF_DISABLE_THP; do_huge_pmd_anonymous_page() then checks that the aligned 2 MiB range
      fits in the VMA (thp_vma_suitable_order).
    * :func:`do_huge_pmd_anonymous_page`: a read fault with use_zero_page maps the huge zero
      folio (mm_get_huge_zero_folio: allocated on first use with (GFP_TRANSHUGE | __GFP_ZERO)
      & ~__GFP_MOVABLE, THP_ZERO_PAGE_ALLOC, MMF_HUGE_ZERO_FOLIO on the mm;
      set_huge_zero_folio: folio_mk_pmd + pmd_mkspecial, a deposited PTE table,
      mm_inc_nr_ptes); a write fault takes a PMD-order folio from vma_alloc_folio with
      vma_thp_gfp_mask() (THP_FAULT_FALLBACK and the 4 KiB path when it fails), zeroes it
      (folio_zero_user), deposits a PTE table (pgtable_trans_huge_deposit: ptdesc->pmd_huge_pte
      of the PMD table, FIFO through page->lru), and map_anon_folio_pmd_pf():
      folio_add_new_anon_rmap (RMAP_EXCLUSIVE, PMD level), folio_add_lru_vma,
      maybe_pmd_mkwrite(pmd_mkdirty(folio_mk_pmd())), deferred_split_folio(folio, false)
      (split_underused_thp is on: every new anonymous THP joins its node's split queue),
      MM_ANONPAGES += 512, THP_FAULT_ALLOC.
    * :func:`do_huge_pmd_wp_page`: the huge zero PMD gets a new THP (do_huge_zero_wp_pmd);
      an exclusive or sole-reference folio is reused (pmd_mkyoung + dirty + write); otherwise
      the PMD is split and the fault falls back to the PTE level.
    * fork: :func:`copy_huge_pmd` (the child's deposited table, the zero PMD shared, an
      anonymous THP write-protected in both with folio_try_dup_anon_rmap_pmd);
      munmap/exit: :func:`zap_huge_pmd` (withdraw and free the deposit, remove the rmap,
      MM_ANONPAGES, folio_put); a partial unmap or mprotect: :func:`__split_huge_pmd` (the
      deposited table filled with 512 PTEs, the folio's PMD mapping turned into PTE mappings,
      THP_SPLIT_PMD) and :func:`deferred_split_folio` with ``partially_mapped``.

MADV_HUGEPAGE (:func:`madvise_hugepage`) sets VM_HUGEPAGE on the VMAs of the range; a range that
starts or ends inside a VMA is split first with the VMA helper's vma.split_vma when it exists,
otherwise whole VMAs are changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PAGE_SHIFT,
    PAGE_SIZE,
    PHYSICAL_PMD_PAGE_MASK,
    PMD_SHIFT,
    flip_protnone_guard,
    pfn_pmd,
    pfn_pte,
    pmd_pfn,
)
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "HPAGE_PMD_NR",
    "HPAGE_PMD_ORDER",
    "__split_huge_pmd",
    "change_huge_pmd",
    "copy_huge_pmd",
    "deferred_split_folio",
    "do_huge_pmd_anonymous_page",
    "do_huge_pmd_wp_page",
    "hugepage_init",
    "is_huge_zero_pmd",
    "madvise_hugepage",
    "madvise_nohugepage",
    "mm_put_huge_zero_folio",
    "set_thp_mode",
    "split_huge_pmd",
    "thp_get_unmapped_area",
    "thp_vma_allowable",
    "vma_thp_gfp_mask",
    "zap_huge_pmd",
]

_T = get_types()
HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER
HPAGE_PMD_SIZE = PAGE_SIZE << HPAGE_PMD_ORDER
HPAGE_PMD_MASK = ~(HPAGE_PMD_SIZE - 1) & 0xFFFFFFFFFFFFFFFF

# enum transparent_hugepage_flag (include/linux/huge_mm.h), from the type data.
_F = {
    n: _T.const(n)
    for n in (
        "TRANSPARENT_HUGEPAGE_UNSUPPORTED",
        "TRANSPARENT_HUGEPAGE_FLAG",
        "TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG",
        "TRANSPARENT_HUGEPAGE_DEFRAG_DIRECT_FLAG",
        "TRANSPARENT_HUGEPAGE_DEFRAG_KSWAPD_FLAG",
        "TRANSPARENT_HUGEPAGE_DEFRAG_KSWAPD_OR_MADV_FLAG",
        "TRANSPARENT_HUGEPAGE_DEFRAG_REQ_MADV_FLAG",
        "TRANSPARENT_HUGEPAGE_DEFRAG_KHUGEPAGED_FLAG",
        "TRANSPARENT_HUGEPAGE_USE_ZERO_PAGE_FLAG",
    )
}
_EV = _T.enum("vm_event_item")
THP_FAULT_ALLOC = _EV["THP_FAULT_ALLOC"]
THP_FAULT_FALLBACK = _EV["THP_FAULT_FALLBACK"]
THP_ZERO_PAGE_ALLOC = _EV["THP_ZERO_PAGE_ALLOC"]
THP_ZERO_PAGE_ALLOC_FAILED = _EV["THP_ZERO_PAGE_ALLOC_FAILED"]
THP_DEFERRED_SPLIT_PAGE = _EV["THP_DEFERRED_SPLIT_PAGE"]
THP_SPLIT_PMD = _EV["THP_SPLIT_PMD"]
PG_partially_mapped = _T.const("PG_partially_mapped")
PG_anon_exclusive = _T.const("PG_anon_exclusive") if "PG_anon_exclusive" in _T.enum("pageflags") else None

# include/linux/mm.h vm_flags bits (#defines, not in the type data)
VM_WRITE = 0x00000002
VM_SHARED = 0x00000008
VM_HUGETLB = 0x00400000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
# include/linux/mm_types.h: mm->flags bits
MMF_HUGE_ZERO_FOLIO = 23
MMF_DISABLE_THP = 24
# include/linux/mm.h: 512 MiB in pages, hugepage_init()'s small-machine limit (MB_TO_PAGES(512))
THP_MIN_RAM_PAGES = (512 << 20) >> PAGE_SHIFT
PTRS_PER_PTE = 512


def _flags(k: Kernel) -> int:
    return k.__dict__.get("thp_flags", 0)


def _set_flags(k: Kernel, v: int) -> None:
    k.thp_flags = v
    k.kmem.write_u64(k.sym("transparent_hugepage_flags"), v)


def _bit(name: str) -> int:
    return 1 << _F[name]


def hugepage_global_enabled(k: Kernel) -> bool:
    return bool(_flags(k) & (_bit("TRANSPARENT_HUGEPAGE_FLAG") | _bit("TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG")))


def hugepage_global_always(k: Kernel) -> bool:
    return bool(_flags(k) & _bit("TRANSPARENT_HUGEPAGE_FLAG"))


def transparent_hugepage_use_zero_page(k: Kernel) -> bool:
    return bool(_flags(k) & _bit("TRANSPARENT_HUGEPAGE_USE_ZERO_PAGE_FLAG"))


def set_thp_mode(k: Kernel, mode: str) -> None:
    """``/sys/kernel/mm/transparent_hugepage/enabled`` (enabled_store) and the
    ``transparent_hugepage=`` boot parameter: always sets TRANSPARENT_HUGEPAGE_FLAG, madvise
    REQ_MADV, never clears both."""
    f = _flags(k) & ~(_bit("TRANSPARENT_HUGEPAGE_FLAG") | _bit("TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG"))
    if mode == "always":
        f |= _bit("TRANSPARENT_HUGEPAGE_FLAG")
    elif mode == "madvise":
        f |= _bit("TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG")
    elif mode != "never":
        raise ValueError(f"THP mode {mode!r} is not always, madvise or never")
    _set_flags(k, f)
    if k.__dict__.get("thp_initialised"):
        start_stop_khugepaged(k)  # enabled_store() after a successful write


enabled_store = set_thp_mode


def hugepage_init(k: Kernel) -> None:
    """The statically initialised globals, ``transparent_hugepage=`` and subsys_initcall(hugepage_init)."""
    img = k.image
    for name in (
        "transparent_hugepage_flags",
        "huge_anon_orders_always",
        "huge_anon_orders_madvise",
        "huge_anon_orders_inherit",
        "huge_zero_folio",
        "huge_zero_pfn",
    ):
        img.var(name, "data")
    # CONFIG_TRANSPARENT_HUGEPAGE_MADVISE's static value
    _set_flags(
        k,
        _bit("TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG")
        | _bit("TRANSPARENT_HUGEPAGE_DEFRAG_REQ_MADV_FLAG")
        | _bit("TRANSPARENT_HUGEPAGE_DEFRAG_KHUGEPAGED_FLAG")
        | _bit("TRANSPARENT_HUGEPAGE_USE_ZERO_PAGE_FLAG"),
    )
    k.kmem.write_u64(k.sym("huge_zero_pfn"), 0xFFFFFFFFFFFFFFFF)  # huge_zero_pfn = ~0UL
    k.huge_zero_pfn = None
    if k.config.thp != "madvise":
        set_thp_mode(k, k.config.thp)  # setup_transparent_hugepage(), an early param
    # hugepage_init_sysfs(): PMD-sized THP inherits the global setting, other sizes are off
    k.kmem.write_u64(k.sym("huge_anon_orders_inherit"), 1 << HPAGE_PMD_ORDER)
    k.huge_anon_orders = {"always": 0, "madvise": 0, "inherit": 1 << HPAGE_PMD_ORDER}
    from mmintro.kernel import slab_common

    try:  # khugepaged_init(): mm_slot_cache = KMEM_CACHE(mm_slot, 0) -- struct mm_slot is not
        slab_common.KMEM_CACHE(k, "mm_slot", 0)  # in the pinned type data yet, so no cache
    except LookupError:
        pass
    # free_area_init_core() -> pgdat_init_split_queue(): each node's queue starts empty
    k.sync_hooks.append(write_deferred_split)
    if k.totalram_pages < THP_MIN_RAM_PAGES:
        _set_flags(k, 0)
        return
    start_stop_khugepaged(k)
    k.thp_initialised = True


def _nr_free_buffer_pages(k: Kernel) -> int:
    """nr_free_buffer_pages(): managed minus the high watermark over the zones GFP_USER may use
    (up to ZONE_NORMAL) of the local node's zonelist (every node's)."""
    normal = page_alloc.NR_ZONE_IDX["Normal"]
    return sum(max(z.managed - z.watermark[2], 0) for zs in k.zones for z in zs if z.idx <= normal and z.spanned)


def start_stop_khugepaged(k: Kernel) -> None:
    """start_stop_khugepaged() (khugepaged itself is not modelled) ->
    set_recommended_min_free_kbytes(): with THP enabled, min_free_kbytes raised to 2 + 3*3
    pageblocks per zone up to ZONE_NORMAL (at most 5 % of nr_free_buffer_pages()); with THP
    "never", calculate_min_free_kbytes(); then setup_per_zone_wmarks() -- over the managed
    pages of now, which include boot gigantic pages given back by hugetlb_init --
    and calculate_totalreserve_pages()."""
    import math

    from mmintro.kernel.cmdline import vm_sysctl

    normal = page_alloc.NR_ZONE_IDX["Normal"]
    user_min_free_kbytes = vm_sysctl(k, "user_min_free_kbytes")  # -1 until vm.min_free_kbytes is written
    if hugepage_global_enabled(k):
        nr_zones = sum(1 for zs in k.zones for z in zs if z.populated and z.idx <= normal)
        pb = k.pageblock_nr_pages
        recommended = pb * nr_zones * 2 + pb * nr_zones * page_alloc.MIGRATE_PCPTYPES**2
        recommended = min(recommended, _nr_free_buffer_pages(k) // 20) << (PAGE_SHIFT - 10)
        if recommended > k.min_free_kbytes:  # a user's value is raised too; it only changes the log
            if user_min_free_kbytes >= 0:
                k.printk(
                    6,
                    f"raising min_free_kbytes from {k.min_free_kbytes} to {recommended} to help "
                    "transparent hugepage allocations",
                )
            k.min_free_kbytes = recommended
    else:
        # calculate_min_free_kbytes(): int_sqrt(lowmem_kbytes * 16) within [128, 262144], unless
        # the user's vm.min_free_kbytes is at least that
        lowmem_kbytes = _nr_free_buffer_pages(k) * (PAGE_SIZE >> 10)
        new_min = math.isqrt(lowmem_kbytes * 16)
        if new_min > user_min_free_kbytes:
            k.min_free_kbytes = max(128, min(262144, new_min))
        else:
            k.printk(
                4,
                f"min_free_kbytes is not updated to {new_min} because user defined value "
                f"{user_min_free_kbytes} is preferred",
            )
    k.write_int("min_free_kbytes", k.min_free_kbytes)
    page_alloc.setup_per_zone_wmarks(k)
    page_alloc.calculate_totalreserve_pages(k)  # __setup_per_zone_wmarks ends with it


# -- eligibility ----------------------------------------------------------------------------------
def _vget(k: Kernel, vma: int, f: str) -> int:
    return k.kmem.get(vma, "vm_area_struct", f)


def _vma_is_anonymous(k: Kernel, vma: int) -> bool:
    return not _vget(k, vma, "vm_ops") and not _vget(k, vma, "vm_file")


def _mm_flags(k: Kernel, mm: int) -> int:
    return k.kmem.get(mm, "mm_struct", "flags.__mm_flags[0]")


def thp_vma_suitable_order(k: Kernel, vma: int, addr: int, order: int = HPAGE_PMD_ORDER) -> bool:
    """include/linux/huge_mm.h thp_vma_suitable_order(): the aligned range around ``addr`` lies
    inside the VMA and (anonymous: pgoff = vm_start >> PAGE_SHIFT) is aligned the same way."""
    hpage_size = PAGE_SIZE << order
    start, end = _vget(k, vma, "vm_start"), _vget(k, vma, "vm_end")
    if not _vma_is_anonymous(k, vma) and (start >> PAGE_SHIFT) - _vget(k, vma, "vm_pgoff") & ((1 << order) - 1):
        return False
    haddr = addr & ~(hpage_size - 1)
    return not (haddr < start or haddr + hpage_size > end)


def thp_vma_allowable(k: Kernel, vma: int) -> bool:
    """thp_vma_allowable_order(vma, vma->vm_flags, TVA_PAGEFAULT, PMD_ORDER) for anonymous
    VMAs (thp_vma_allowable_orders' sysfs masks, then __thp_vma_allowable_orders:
    vma_thp_disabled, no temporary stack, size checks left to the fault handler)."""
    if not _vma_is_anonymous(k, vma):
        return False
    vm_flags = _vget(k, vma, "vm_flags")
    orders = k.__dict__.get("huge_anon_orders", {"always": 0, "madvise": 0, "inherit": 0})
    mask = orders["always"]
    if vm_flags & VM_HUGEPAGE:
        mask |= orders["madvise"]
    if hugepage_global_always(k) or (vm_flags & VM_HUGEPAGE and hugepage_global_enabled(k)):
        mask |= orders["inherit"]
    if not mask & (1 << HPAGE_PMD_ORDER):
        return False
    if _flags(k) & _bit("TRANSPARENT_HUGEPAGE_UNSUPPORTED"):
        return False
    mm = _vget(k, vma, "vm_mm")
    return not (not mm or vm_flags & VM_NOHUGEPAGE or _mm_flags(k, mm) >> MMF_DISABLE_THP & 1)


def vma_thp_gfp_mask(k: Kernel, vma: int) -> int:
    """mm/huge_memory.c vma_thp_gfp_mask(): the defrag setting against VM_HUGEPAGE."""
    madvised = bool(vma and _vget(k, vma, "vm_flags") & VM_HUGEPAGE)
    f = _flags(k)
    if f & _bit("TRANSPARENT_HUGEPAGE_DEFRAG_DIRECT_FLAG"):
        return G.GFP_TRANSHUGE | (0 if madvised else G.FLAGS["__GFP_NORETRY"])
    if f & _bit("TRANSPARENT_HUGEPAGE_DEFRAG_KSWAPD_FLAG"):
        return G.GFP_TRANSHUGE_LIGHT | G.FLAGS["__GFP_KSWAPD_RECLAIM"]
    if f & _bit("TRANSPARENT_HUGEPAGE_DEFRAG_KSWAPD_OR_MADV_FLAG"):
        return G.GFP_TRANSHUGE_LIGHT | (
            G.FLAGS["__GFP_DIRECT_RECLAIM"] if madvised else G.FLAGS["__GFP_KSWAPD_RECLAIM"]
        )
    if f & _bit("TRANSPARENT_HUGEPAGE_DEFRAG_REQ_MADV_FLAG"):
        return G.GFP_TRANSHUGE_LIGHT | (G.FLAGS["__GFP_DIRECT_RECLAIM"] if madvised else 0)
    return G.GFP_TRANSHUGE_LIGHT


# -- madvise --------------------------------------------------------------------------------------
def madvise_hugepage(k: Kernel, mm: int, start: int, length: int) -> None:
    """madvise(start, length, MADV_HUGEPAGE): VM_HUGEPAGE set, VM_NOHUGEPAGE cleared."""
    _madvise_flags(k, mm, start, length, VM_HUGEPAGE, VM_NOHUGEPAGE)


def _madvise_flags(k: Kernel, mm: int, start: int, length: int, set_: int, clear: int) -> None:
    """madvise(start, length, MADV_HUGEPAGE): madvise_walk_vmas() over the range,
    hugepage_madvise() (VM_HUGEPAGE set, VM_NOHUGEPAGE cleared; VM_SPECIAL and hugetlb VMAs
    keep their flags) and madvise_update_vma(): vma_modify_flags() splits a VMA the range cuts
    and merges with compatible neighbours (the VMA helper's vma.vma_modify_flags), then
    vm_flags_reset.  Without that helper whole VMAs change."""
    from mmintro.kernel import mmap

    end = start + (-(-length // PAGE_SIZE) * PAGE_SIZE)
    try:
        from mmintro.kernel import vma as V

        modify = getattr(V, "vma_modify_flags", None)
    except ImportError:
        modify = None
    addr = start
    while addr < end:
        allv = [e for _f, _l, e in mmap.mm_tree(k, mm).mt_for_each(0)]
        v = next((x for x in allv if _vget(k, x, "vm_end") > addr), 0)
        if not v or _vget(k, v, "vm_start") >= end:
            break
        vs, ve = _vget(k, v, "vm_start"), _vget(k, v, "vm_end")
        s, e = max(vs, addr), min(ve, end)
        flags = _vget(k, v, "vm_flags")
        new = (flags | set_) & ~clear
        if flags & VM_HUGETLB or flags & mmap.VM_SPECIAL or new == flags:
            addr = e
            continue
        if modify is not None:
            i = allv.index(v)
            prev = v if s > vs else (allv[i - 1] if i else 0)
            ret, new = modify(k, prev, v, s, e, new)
            if ret:
                v = ret
        k.kmem.set(v, "vm_area_struct", "vm_flags", new)  # vm_flags_reset()
        addr = e


def madvise_nohugepage(k: Kernel, mm: int, start: int, length: int) -> None:
    """madvise(MADV_NOHUGEPAGE): hugepage_madvise() sets VM_NOHUGEPAGE and clears VM_HUGEPAGE
    (same VMA walk and split/merge as :func:`madvise_hugepage`)."""
    _madvise_flags(k, mm, start, length, VM_NOHUGEPAGE, VM_HUGEPAGE)


def thp_get_unmapped_area(k: Kernel, mm: int, length: int) -> int:
    """mm/huge_memory.c thp_get_unmapped_area_vmflags() -> __thp_get_unmapped_area() for an
    anonymous mmap whose length is a multiple of PMD_SIZE with no hint (what 6.18's
    __get_unmapped_area does when THP is built in): search len + PMD_SIZE top-down, then
    align -- top-down with off_sub 0 gives ret + PMD_SIZE, else ret + off_sub.  Returns 0
    when the padded search fails (the caller retries without padding)."""
    from mmintro.kernel import mmap

    size = HPAGE_PMD_SIZE
    if length < size:
        return 0
    ret = mmap.unmapped_area_topdown(k, mm, length + size, PAGE_SIZE, k.kmem.get(mm, "mm_struct", "mmap_base"))
    if not ret:
        return 0
    off_sub = (0 - ret) & (size - 1)
    return ret + size if not off_sub else ret + off_sub


# -- page-table helpers (MEM's memory.py does the tables) --------------------------------------
def _mem():
    from mmintro.kernel import memory

    return memory


def _rmap():
    from mmintro.kernel import rmap

    return rmap


def _read(k: Kernel, kva: int) -> int:
    return k.mem.read_u64(kva - k.page_offset_base)


def _write(k: Kernel, kva: int, v: int) -> None:
    k.mem.write_u64(kva - k.page_offset_base, v)


def _table_page(k: Kernel, slot: int) -> int:
    """virt_to_page() of the table holding ``slot``: its struct page (ptdesc) address."""
    return k.pfn_to_page((slot - k.page_offset_base) >> PAGE_SHIFT)


def pgtable_trans_huge_deposit(k: Kernel, pmd: int, pgtable_pfn: int) -> None:
    """mm/pgtable-generic.c pgtable_trans_huge_deposit(): FIFO through pgtable->lru with the
    head in the PMD table's ptdesc->pmd_huge_pte."""
    km = k.kmem
    ptdesc = _table_page(k, pmd)
    page = k.pfn_to_page(pgtable_pfn)
    lru = page + page_alloc.LRU_OFF
    cur = km.get(ptdesc, "ptdesc", "pmd_huge_pte")
    if not cur:
        km.init_list_head(lru)
    else:
        head = cur + page_alloc.LRU_OFF  # list_add(&pgtable->lru, &pmd_huge_pte->lru)
        nxt = km.get(head, "list_head", "next")
        km.set(lru, "list_head", "next", nxt)
        km.set(lru, "list_head", "prev", head)
        km.set(nxt, "list_head", "prev", lru)
        km.set(head, "list_head", "next", lru)
    km.set(ptdesc, "ptdesc", "pmd_huge_pte", page)


def pgtable_trans_huge_withdraw(k: Kernel, pmd: int) -> int:
    """pgtable_trans_huge_withdraw(): the deposited table (FIFO), its pfn."""
    km = k.kmem
    ptdesc = _table_page(k, pmd)
    page = km.get(ptdesc, "ptdesc", "pmd_huge_pte")
    if not page:
        raise ValueError("pgtable_trans_huge_withdraw: nothing deposited")
    lru = page + page_alloc.LRU_OFF
    nxt = km.get(lru, "list_head", "next")
    if nxt == lru:
        km.set(ptdesc, "ptdesc", "pmd_huge_pte", 0)
    else:
        km.set(ptdesc, "ptdesc", "pmd_huge_pte", nxt - page_alloc.LRU_OFF)
        prev = km.get(lru, "list_head", "prev")
        km.set(prev, "list_head", "next", nxt)
        km.set(nxt, "list_head", "prev", prev)
    # list_del(&pgtable->lru)
    km.set(lru, "list_head", "next", page_alloc.LIST_POISON1)
    km.set(lru, "list_head", "prev", page_alloc.LIST_POISON2)
    return (page - k.vmemmap_base) // k.struct_page_size


def _pte_alloc_one(k: Kernel) -> int:
    """pte_alloc_one(mm): a PTE table page with its ctor (MEM's pagetable_alloc)."""
    return _mem().pagetable_alloc(k, "pte")


def _mm_inc_nr_ptes(k: Kernel, mm: int, n: int = 1) -> None:
    km = k.kmem
    km.set(
        mm,
        "mm_struct",
        "pgtables_bytes.counter",
        km.get(mm, "mm_struct", "pgtables_bytes.counter") + n * PTRS_PER_PTE * 8,
    )


def folio_mk_pmd(pfn: int, prot: int) -> int:
    """folio_mk_pmd(): pmd_mkhuge(pfn_pmd(pfn, prot)) (no PAT bit in a user protection)."""
    return pfn_pmd(pfn, prot) | _PAGE_PSE


def pmd_present(e: int) -> bool:
    """x86 pmd_present(): _PAGE_PRESENT, _PAGE_PROTNONE or _PAGE_PSE (a PROT_NONE leaf
    is present)."""
    return bool(e & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE))


def pmd_trans_huge(e: int) -> bool:
    """x86 pmd_trans_huge(): _PAGE_PSE (present or PROT_NONE leaf; no swap PMDs here)."""
    return bool(e & _PAGE_PSE)


def pmd_modify(e: int, newprot: int) -> int:
    """arch/x86/include/asm/pgtable.h pmd_modify(): keep _HPAGE_CHG_MASK (the pfn, cache
    bits, A/D, special, PSE, PAT_LARGE), take the rest from newprot, and
    flip_protnone_guard(PHYSICAL_PMD_PAGE_MASK): the pfn is inverted as the leaf turns
    PROT_NONE and back (the shadow-stack saved-dirty shuffle is off: no USER_SHSTK)."""
    from mmintro.kernel import mprotect

    chg = mprotect._HPAGE_CHG_MASK  # includes _PAGE_PAT_LARGE through PTE_PFN_MASK
    val = (e & chg) | (newprot & ~chg)
    return flip_protnone_guard(e, val, PHYSICAL_PMD_PAGE_MASK)


def is_huge_zero_pmd(k: Kernel, e: int) -> bool:
    """is_huge_zero_pmd(): pmd_present() and pmd_pfn() == huge_zero_pfn."""
    hz = k.__dict__.get("huge_zero_pfn")
    return hz is not None and pmd_present(e) and pmd_pfn(e) == hz


# -- the huge zero folio ------------------------------------------------------------------------
def get_huge_zero_folio(k: Kernel) -> int | None:
    """get_huge_zero_folio(): on first use folio_alloc((GFP_TRANSHUGE | __GFP_ZERO) &
    ~__GFP_MOVABLE, HPAGE_PMD_ORDER) (large_rmappable cleared again), huge_zero_folio and
    huge_zero_pfn set, THP_ZERO_PAGE_ALLOC, huge_zero_refcount 2."""
    if k.__dict__.get("huge_zero_pfn") is not None:
        return k.huge_zero_pfn
    gfp = (G.GFP_TRANSHUGE | G.FLAGS["__GFP_ZERO"] | G.FLAGS["__GFP_COMP"]) & ~G.FLAGS["__GFP_MOVABLE"]
    pfn = k.alloc_pages(gfp, HPAGE_PMD_ORDER)
    if pfn is None:
        k.vm_events[k.current_cpu][THP_ZERO_PAGE_ALLOC_FAILED] += 1
        return None
    k.huge_zero_pfn = pfn
    k.kmem.write_u64(k.sym("huge_zero_folio"), k.pfn_to_page(pfn))
    k.kmem.write_u64(k.sym("huge_zero_pfn"), pfn)
    # huge_zero_refcount = 2 (a static: the extra reference the shrinker puts back); the
    # folio itself keeps the allocation's single reference, zero PMDs take none
    k.huge_zero_refcount = 2
    k.vm_events[k.current_cpu][THP_ZERO_PAGE_ALLOC] += 1
    return pfn


def mm_get_huge_zero_folio(k: Kernel, mm: int) -> int | None:
    """mm_get_huge_zero_folio(): one reference per mm, noted by MMF_HUGE_ZERO_FOLIO."""
    km = k.kmem
    f = _mm_flags(k, mm)
    if f >> MMF_HUGE_ZERO_FOLIO & 1:
        return k.huge_zero_pfn
    pfn = get_huge_zero_folio(k)
    if pfn is None:
        return None
    km.set(mm, "mm_struct", "flags.__mm_flags[0]", f | 1 << MMF_HUGE_ZERO_FOLIO)
    k.huge_zero_mm_refs = k.__dict__.get("huge_zero_mm_refs", 0) + 1
    return pfn


# -- the anonymous THP fault ------------------------------------------------------------------
def _count(k: Kernel, ev: int, n: int = 1) -> None:
    k.vm_events[k.current_cpu][ev] += n


def vma_alloc_anon_folio_pmd(k: Kernel, vma: int, addr: int) -> int | None:
    """vma_alloc_anon_folio_pmd(): vma_alloc_folio(vma_thp_gfp_mask(vma), HPAGE_PMD_ORDER, vma,
    addr & HPAGE_PMD_MASK), THP_FAULT_FALLBACK on failure, folio_zero_user, uptodate."""
    from mmintro.kernel import mempolicy

    gfp = vma_thp_gfp_mask(k, vma)
    pfn = mempolicy.vma_alloc_folio(k, gfp, HPAGE_PMD_ORDER, vma, addr & HPAGE_PMD_MASK)
    if pfn is None:
        _count(k, THP_FAULT_FALLBACK)
        return None
    k.mem.fill(pfn << PAGE_SHIFT, HPAGE_PMD_SIZE, 0)  # folio_zero_user()
    mv64, _mv32, base, _a = k.memmap_words[pfn >> page_alloc.PFN_SECTION_SHIFT]
    mv64[base + pfn * 8 + page_alloc.W_FLAGS] |= 1 << _T.const("PG_uptodate")  # __folio_mark_uptodate
    return pfn


def map_anon_folio_pmd_pf(k: Kernel, mm: int, vma: int, pmd: int, haddr: int, pfn: int) -> None:
    """map_anon_folio_pmd_pf(): map_anon_folio_pmd_nopf() (the entry, the anon rmap, the LRU,
    set_pmd_at, deferred_split_folio(folio, false)), MM_ANONPAGES += HPAGE_PMD_NR,
    THP_FAULT_ALLOC."""
    prot = _vget(k, vma, "vm_page_prot")
    e = folio_mk_pmd(pfn, prot) | _PAGE_DIRTY  # pmd_mkdirty (no soft-dirty in this config)
    if _vget(k, vma, "vm_flags") & VM_WRITE:
        e |= _PAGE_RW  # maybe_pmd_mkwrite
    _rmap().folio_add_new_anon_rmap(k, pfn, vma, haddr, level="pmd")
    swap = _optional("swap")
    if swap is not None:
        swap.folio_add_lru_vma(k, pfn, vma)
    _write(k, pmd, e)
    deferred_split_folio(k, pfn, False)
    _mem().add_mm_counter(k, mm, "MM_ANONPAGES", HPAGE_PMD_NR)
    _count(k, THP_FAULT_ALLOC)


def _optional(name: str):
    import importlib

    try:
        return importlib.import_module(f"mmintro.kernel.{name}")
    except ImportError:
        return None


def do_huge_pmd_anonymous_page(k: Kernel, mm: int, vma: int, addr: int, write: bool) -> int | None:
    """mm/huge_memory.c do_huge_pmd_anonymous_page(); returns the pfn mapped at the 2 MiB
    range (the huge zero folio's for a read), or None for VM_FAULT_FALLBACK."""
    haddr = addr & HPAGE_PMD_MASK
    if not thp_vma_suitable_order(k, vma, haddr):
        return None
    mem = _mem()
    _rmap().anon_vma_prepare(k, vma)  # vmf_anon_prepare()
    pmd = mem.pmd_alloc(k, mm, addr)
    if not write and transparent_hugepage_use_zero_page(k):
        pgtable = _pte_alloc_one(k)
        zero = mm_get_huge_zero_folio(k, mm)
        if zero is None:
            mem.pagetable_free(k, pgtable)
            _count(k, THP_FAULT_FALLBACK)
            return None
        if _read(k, pmd):
            mem.pagetable_free(k, pgtable)
            return None
        # set_huge_zero_folio(): folio_mk_pmd + pmd_mkspecial, deposit, set_pmd_at, mm_inc_nr_ptes
        e = folio_mk_pmd(zero, _vget(k, vma, "vm_page_prot")) | _PAGE_SPECIAL
        pgtable_trans_huge_deposit(k, pmd, pgtable)
        _write(k, pmd, e)
        _mm_inc_nr_ptes(k, mm)
        return zero
    # __do_huge_pmd_anonymous_page()
    pfn = vma_alloc_anon_folio_pmd(k, vma, addr)
    if pfn is None:
        return None
    pgtable = _pte_alloc_one(k)
    if _read(k, pmd):
        mem.pagetable_free(k, pgtable)
        _rmap().folio_put(k, pfn)
        return None
    pgtable_trans_huge_deposit(k, pmd, pgtable)
    map_anon_folio_pmd_pf(k, mm, vma, pmd, haddr, pfn)
    _mm_inc_nr_ptes(k, mm)
    return pfn


def _page_anon_exclusive(k: Kernel, pfn: int) -> bool:
    if PG_anon_exclusive is None:
        return False
    mv64, _mv32, base, _a = k.memmap_words[pfn >> page_alloc.PFN_SECTION_SHIFT]
    return bool(mv64[base + pfn * 8 + page_alloc.W_FLAGS] >> PG_anon_exclusive & 1)


def do_huge_pmd_wp_page(k: Kernel, mm: int, vma: int, addr: int) -> int | None:
    """mm/huge_memory.c do_huge_pmd_wp_page(): a write to a write-protected PMD leaf."""
    mem = _mem()
    pmd = mem.pmd_alloc(k, mm, addr)
    orig = _read(k, pmd)
    haddr = addr & HPAGE_PMD_MASK
    if is_huge_zero_pmd(k, orig):
        # do_huge_zero_wp_pmd(): a THP replaces the zero PMD (the deposit stays)
        pfn = vma_alloc_anon_folio_pmd(k, vma, addr)
        if pfn is not None:
            _write(k, pmd, 0)  # pmdp_huge_clear_flush
            map_anon_folio_pmd_pf(k, mm, vma, pmd, haddr, pfn)
            return pfn
        __split_huge_pmd(k, vma, pmd, addr)
        return None
    pfn = pmd_pfn(orig)
    mv64, mv32, base, _a = k.memmap_words[pfn >> page_alloc.PFN_SECTION_SHIFT]
    w = base + pfn * 8
    reuse = _page_anon_exclusive(k, pfn)
    if not reuse and mv32[2 * w + page_alloc.D_REFCOUNT] == 1:
        # folio_move_anon_rmap + SetPageAnonExclusive
        rm = _rmap()
        if hasattr(rm, "folio_move_anon_rmap"):
            rm.folio_move_anon_rmap(k, pfn, vma)
        if PG_anon_exclusive is not None:
            mv64[w + page_alloc.W_FLAGS] |= 1 << PG_anon_exclusive
        reuse = True
    if reuse:
        e = orig | _PAGE_ACCESSED | _PAGE_DIRTY
        if _vget(k, vma, "vm_flags") & VM_WRITE:
            e |= _PAGE_RW
        _write(k, pmd, e)
        return pfn
    __split_huge_pmd(k, vma, pmd, addr)
    return None


# -- fork, unmap ---------------------------------------------------------------------------------
def copy_huge_pmd(k: Kernel, dst_vma: int, src_vma: int, addr: int) -> None:
    """mm/huge_memory.c copy_huge_pmd() for fork: a PTE table deposited in the child
    (pte_alloc_one, mm_inc_nr_ptes); the huge zero PMD is copied as is (mm_get_huge_zero_folio
    for the child); an anonymous THP gets folio_try_dup_anon_rmap_pmd, MM_ANONPAGES in the child,
    and both PMDs are write-protected (pmdp_set_wrprotect, pmd_mkold(pmd_wrprotect()))."""
    mem = _mem()
    dst_mm, src_mm = _vget(k, dst_vma, "vm_mm"), _vget(k, src_vma, "vm_mm")
    src_pmd = mem.pmd_alloc(k, src_mm, addr)
    e = _read(k, src_pmd)
    if not pmd_trans_huge(e):  # a PROT_NONE leaf is copied too
        return
    dst_pmd = mem.pmd_alloc(k, dst_mm, addr)
    pgtable = _pte_alloc_one(k)
    if is_huge_zero_pmd(k, e):
        # out_zero_page: deposit, pmdp_set_wrprotect (already read-only), pmd_mkold in the child
        mm_get_huge_zero_folio(k, dst_mm)
        _mm_inc_nr_ptes(k, dst_mm)
        pgtable_trans_huge_deposit(k, dst_pmd, pgtable)
        _write(k, dst_pmd, e & ~_PAGE_RW & ~_PAGE_ACCESSED)
        return
    pfn = pmd_pfn(e)
    rm = _rmap()
    rm.folio_get(k, pfn)
    rm.folio_try_dup_anon_rmap_pmd(k, pfn, dst_vma, src_vma)
    mem.add_mm_counter(k, dst_mm, "MM_ANONPAGES", HPAGE_PMD_NR)
    _mm_inc_nr_ptes(k, dst_mm)
    pgtable_trans_huge_deposit(k, dst_pmd, pgtable)
    e &= ~_PAGE_RW  # pmdp_set_wrprotect on the parent
    _write(k, src_pmd, e)
    _write(k, dst_pmd, e & ~_PAGE_ACCESSED)  # pmd_mkold(pmd_wrprotect(pmd))


def zap_deposited_table(k: Kernel, mm: int, pmd: int) -> None:
    """zap_deposited_table(): withdraw, pte_free, mm_dec_nr_ptes."""
    pfn = pgtable_trans_huge_withdraw(k, pmd)
    _mem().pagetable_free(k, pfn)
    _mm_inc_nr_ptes(k, mm, -1)


def zap_huge_pmd(k: Kernel, vma: int, addr: int) -> None:
    """mm/huge_memory.c zap_huge_pmd(): clear the PMD; the huge zero PMD only drops its
    deposit; an anonymous THP: folio_remove_rmap_pmd, the deposit, MM_ANONPAGES -=
    HPAGE_PMD_NR, then the mapping's reference (tlb_remove_page_size -> folio_put)."""
    mem = _mem()
    mm = _vget(k, vma, "vm_mm")
    pmd = mem.pmd_alloc(k, mm, addr)
    e = _read(k, pmd)
    if not pmd_present(e):  # a PROT_NONE leaf (pmd_present) is zapped like any other
        return
    _write(k, pmd, 0)  # pmdp_huge_get_and_clear_full
    if is_huge_zero_pmd(k, e):
        zap_deposited_table(k, mm, pmd)
        return
    pfn = pmd_pfn(e)
    rm = _rmap()
    rm.folio_remove_rmap_pmd(k, pfn, vma)
    zap_deposited_table(k, mm, pmd)
    mem.add_mm_counter(k, mm, "MM_ANONPAGES", -HPAGE_PMD_NR)
    rm.folio_put(k, pfn)


# -- splitting -------------------------------------------------------------------------------------
def __split_huge_pmd(k: Kernel, vma: int, pmd: int, addr: int) -> None:
    """__split_huge_pmd() -> __split_huge_pmd_locked(): the deposited PTE table withdrawn and
    filled with 512 entries (the huge zero PMD: zero-page PTEs; a THP: its subpages with the
    PMD's bits, PG_anon_exclusive kept), the folio's PMD mapping replaced by 512 PTE mappings
    (folio_add_anon_rmap_ptes + folio_remove_rmap_pmd), pmd_populate, THP_SPLIT_PMD."""
    from mmintro.arch.x86 import _PAGE_TABLE

    e = _read(k, pmd)
    if not pmd_present(e) or not pmd_trans_huge(e):
        return
    _count(k, THP_SPLIT_PMD)
    table_pfn = pgtable_trans_huge_withdraw(k, pmd)
    table = k.phys_to_virt(table_pfn << PAGE_SHIFT)
    haddr = addr & HPAGE_PMD_MASK
    if is_huge_zero_pmd(k, e):
        # __split_huge_zero_page_pmd(): the 4 KiB zero page, special, vm_page_prot
        prot = _vget(k, vma, "vm_page_prot")
        entry = pfn_pte(k.zero_pfn, prot) | _PAGE_SPECIAL
        for i in range(PTRS_PER_PTE):
            _write(k, table + 8 * i, entry)
    else:
        # the PMD's write/young/dirty bits over vm_page_prot (mk_pte, pte_mkwrite, pte_mkold,
        # pte_mkdirty), the folio dirtied, a reference per PTE (folio_ref_add(HPAGE_PMD_NR - 1)),
        # the PTE mappings (RMAP_EXCLUSIVE when the head was PageAnonExclusive), then the PMD
        # mapping removed
        pfn = pmd_pfn(e)
        prot = _vget(k, vma, "vm_page_prot")
        bits = prot | (e & _PAGE_RW) | (e & _PAGE_DIRTY)
        if not e & _PAGE_ACCESSED:
            bits &= ~_PAGE_ACCESSED
        mv64, _mv32, base, _a = k.memmap_words[pfn >> page_alloc.PFN_SECTION_SHIFT]
        if e & _PAGE_DIRTY:
            mv64[base + pfn * 8 + page_alloc.W_FLAGS] |= 1 << _T.const("PG_dirty")
        for i in range(PTRS_PER_PTE):
            _write(k, table + 8 * i, pfn_pte(pfn + i, bits))  # set_ptes: pte_advance_pfn
        rm = _rmap()
        exclusive = _page_anon_exclusive(k, pfn)
        rm.folio_get(k, pfn, HPAGE_PMD_NR - 1)
        rm.folio_add_anon_rmap_ptes(k, pfn, PTRS_PER_PTE, vma, haddr, exclusive=exclusive)
        rm.folio_remove_rmap_pmd(k, pfn, vma)
    _write(k, pmd, _PAGE_TABLE | (table_pfn << PAGE_SHIFT))  # pmd_populate
    del haddr


def _split_queue(k: Kernel, nid: int) -> list[int]:
    return k.__dict__.setdefault("deferred_split", {}).setdefault(nid, [])


def deferred_split_folio(k: Kernel, pfn: int, partially_mapped: bool = True) -> None:
    """mm/huge_memory.c deferred_split_folio(): order > 1 folios; with partially_mapped the
    folio gets PG_partially_mapped (THP_DEFERRED_SPLIT_PAGE for PMD-sized ones); a folio not
    yet queued goes to the tail of its node's deferred_split_queue (cgroup_disable=memory)
    and split_queue_len grows.  split_underused_thp is on, so new THPs are queued too."""
    mv64, _mv32, base, _a = k.memmap_words[pfn >> page_alloc.PFN_SECTION_SHIFT]
    w = base + pfn * 8
    order = mv64[w + page_alloc.FW_FLAGS_1] & 0xFF
    if order <= 1:
        return
    if partially_mapped and not mv64[w + page_alloc.FW_FLAGS_1] >> PG_partially_mapped & 1:
        mv64[w + page_alloc.FW_FLAGS_1] |= 1 << PG_partially_mapped
        if order >= HPAGE_PMD_ORDER:
            _count(k, THP_DEFERRED_SPLIT_PAGE)
    nid = mv64[w + page_alloc.W_FLAGS] >> page_alloc.kc.NODES_PGOFF
    q = _split_queue(k, nid)
    if pfn not in q:
        q.append(pfn)


def folio_unqueue_deferred_split(k: Kernel, pfn: int) -> None:
    """__folio_unqueue_deferred_split() as a freed THP leaves its queue."""
    for q in k.__dict__.get("deferred_split", {}).values():
        if pfn in q:
            q.remove(pfn)
            dl = k.pfn_to_page(pfn) + _T.struct("folio").offsetof("_deferred_list")
            k.kmem.init_list_head(dl)


def write_deferred_split(k: Kernel) -> None:
    """Sync hook: each node's pglist_data.deferred_split_queue (split_queue through
    folio->_deferred_list, split_queue_len)."""
    km = k.kmem
    dl_off = _T.struct("folio").offsetof("_deferred_list")
    for nid, pg in enumerate(k.pgdat):
        q = [p for p in _split_queue(k, nid) if _still_thp(k, p)]
        k.deferred_split[nid] = q
        head = km.addr(pg, "pglist_data", "deferred_split_queue.split_queue")
        km.write_list(head, [k.pfn_to_page(p) + dl_off for p in q])
        km.set(pg, "pglist_data", "deferred_split_queue.split_queue_len", len(q))


def _still_thp(k: Kernel, pfn: int) -> bool:
    mv64, mv32, base, _a = k.memmap_words[pfn >> page_alloc.PFN_SECTION_SHIFT]
    w = base + pfn * 8
    return bool(mv64[w + page_alloc.W_FLAGS] >> page_alloc.PG_head & 1) and mv32[2 * w + page_alloc.D_REFCOUNT] > 0


def split_huge_pmd(k: Kernel, vma: int, addr: int) -> None:
    """split_huge_pmd(vma, pmd, address) (include/linux/huge_mm.h): split the PMD leaf that
    maps ``addr`` (a partial munmap or mprotect of a THP)."""
    mm = _vget(k, vma, "vm_mm")
    pmd = _mem()._pmd_slot(k, mm, addr)
    if pmd is not None:
        __split_huge_pmd(k, vma, pmd, addr)


def change_huge_pmd(k: Kernel, vma: int, pmd: int, addr: int, newprot: int, try_writable: bool) -> None:
    """mm/huge_memory.c change_huge_pmd() (no NUMA hinting, no uffd-wp): pmd_modify, then
    pmd_mkwrite when the caller may make it writable and can_change_pmd_writable (VM_WRITE and,
    for a private VMA, an anonymous exclusive folio -- never the huge zero folio)."""
    e = _read(k, pmd)
    if not pmd_trans_huge(e):  # __pmd_trans_huge_lock: PROT_NONE leaves included
        return
    entry = pmd_modify(e, newprot)
    # can_change_pmd_writable(): VM_WRITE, not pmd_protnone, then shared: dirty; private:
    # an anonymous exclusive page
    if (
        try_writable
        and not entry & _PAGE_RW
        and _vget(k, vma, "vm_flags") & VM_WRITE
        and entry & (_PAGE_PROTNONE | _PAGE_PRESENT) != _PAGE_PROTNONE
    ):
        if _vget(k, vma, "vm_flags") & VM_SHARED:
            ok = bool(entry & _PAGE_DIRTY)
        else:
            pfn = pmd_pfn(e)
            ok = not is_huge_zero_pmd(k, e) and _page_anon_exclusive(k, pfn)
        if ok:
            entry |= _PAGE_RW
    _write(k, pmd, entry)


def mm_put_huge_zero_folio(k: Kernel, mm: int) -> None:
    """mm_put_huge_zero_folio() at __mmput(): the mm's reference to the huge zero folio
    (huge_zero_refcount, a static the shrinker drops to free the folio: the folio stays)."""
    k.__dict__.setdefault("huge_zero_mm_refs", 0)
    if _mm_flags(k, mm) >> MMF_HUGE_ZERO_FOLIO & 1:
        k.huge_zero_mm_refs -= 1
