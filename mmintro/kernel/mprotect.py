"""mprotect(2) (mm/mprotect.c, 6.18) over the VMAs of :mod:`mmintro.kernel.vma`.

* :func:`do_mprotect` is ``do_mprotect_pkey(start, len, prot, -1)``: the range must start
  inside a VMA and be covered without holes (-ENOMEM), each VMA's new flags are the requested
  R/W/X plus its other flags, refused (-EACCES) when a VM_MAY* bit is missing;
* :func:`mprotect_fixup`: VM_ACCOUNT charged when a private mapping first becomes writable and
  dropped from an anonymous VMA that never got an anon_vma when it stops being writable,
  ``vma_modify_flags`` (merge with a neighbour or split at the edges), the flags set,
  ``vma_set_page_prot``, :func:`change_protection`, ``vm_unacct_memory``, ``vm_stat_account``
  out with the old flags and in with the new;
* :func:`change_protection` / ``change_pte_range``: every present PTE in the range gets
  ``pte_modify(pte, vma->vm_page_prot)`` (arch/x86: the bits of _PAGE_CHG_MASK kept, the rest
  from the new protection), then with MM_CP_TRY_CHANGE_WRITABLE
  (``vma_wants_manual_pte_write_upgrade``: a private VM_WRITE VMA, or a shared one that does
  not want write notification) ``pte_mkwrite`` where :func:`can_change_pte_writable` allows
  it: a private PTE only over an exclusive anonymous page (PageAnon && PageAnonExclusive), a
  shared one only when dirty.  PMD leaves (THP) go through HUGE's ``change_huge_pmd`` when
  it exists, else ``pmd_modify`` here (same rule, _PAGE_PSE kept).  Page tables are read
  through MEM's ``memory.walk``; before MEM lands there are none to change.

Not modelled: protection keys (pkey 0 only), PROT_GROWSDOWN/UP, NUMA hinting (MM_CP_PROT_NUMA),
userfaultfd-wp, swap/migration entries, soft-dirty (CONFIG_MEM_SOFT_DIRTY is off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mmintro.arch.x86 import (
    _PAGE_ACCESSED,
    _PAGE_BIT_SOFTW2,
    _PAGE_BIT_SOFTW5,
    _PAGE_DIRTY,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PAGE_SIZE,
    PTE_PFN_MASK,
)
from mmintro.kernel import mmap as M
from mmintro.kernel import vma as V

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = ["can_change_pte_writable", "change_protection", "do_mprotect", "mprotect_fixup", "pte_modify"]

PAGE_SHIFT = 12
PMD_SIZE = 1 << 21
# arch/x86/include/asm/pgtable_types.h: _PAGE_UFFD_WP = _PAGE_SOFTW2 (HAVE_ARCH_USERFAULTFD_WP),
# _PAGE_SAVED_DIRTY = _PAGE_SOFTW5 (X86_USER_SHADOW_STACK), _PAGE_SOFT_DIRTY 0 (no MEM_SOFT_DIRTY),
# _PAGE_CC 0 (no memory encryption); _PAGE_CHG_MASK / _HPAGE_CHG_MASK
_PAGE_UFFD_WP = 1 << _PAGE_BIT_SOFTW2
_PAGE_SAVED_DIRTY = 1 << _PAGE_BIT_SOFTW5
_PAGE_CHG_MASK = (
    PTE_PFN_MASK
    | _PAGE_PCD
    | _PAGE_PWT
    | _PAGE_SPECIAL
    | _PAGE_ACCESSED
    | _PAGE_DIRTY
    | _PAGE_SAVED_DIRTY
    | _PAGE_UFFD_WP
)
_HPAGE_CHG_MASK = _PAGE_CHG_MASK | _PAGE_PSE
# _PAGE_PROTNONE = _PAGE_GLOBAL
_PAGE_PROTNONE = 1 << 8
# include/uapi/asm-generic/mman-common.h
PROT_READ, PROT_WRITE, PROT_EXEC = 0x1, 0x2, 0x4
VM_ACCESS_FLAGS = M.VM_READ | M.VM_WRITE | M.VM_EXEC
VM_HUGETLB = 0x00400000
VM_NORESERVE = 0x00200000
PAGE_MAPPING_ANON = 0x1  # include/linux/page-flags.h


def __pte_needs_invert(val: int) -> bool:
    """arch/x86/include/asm/pgtable-invert.h: a non-zero entry without _PAGE_PRESENT (PROT_NONE)
    holds its PFN inverted (L1TF)."""
    return bool(val) and not val & _PAGE_PRESENT


def _invert_pfns() -> bool:
    """flip_protnone_guard() is applied only when MEM's pte_pfn() undoes it (probed once), so
    a PROT_NONE entry is never read back as a wrong pfn."""
    global _INVERT
    if _INVERT is None:
        try:
            from mmintro.kernel import memory

            e = (~(5 << PAGE_SHIFT) & PTE_PFN_MASK) | _PAGE_PROTNONE
            _INVERT = memory.pte_pfn(e) == 5
        except (ImportError, AttributeError):
            _INVERT = False
    return _INVERT


_INVERT: bool | None = None


def pte_modify(pte: int, newprot: int, chg_mask: int = _PAGE_CHG_MASK) -> int:
    """arch/x86/include/asm/pgtable.h pte_modify(): keep _PAGE_CHG_MASK, take the rest from
    newprot, flip_protnone_guard() (the PFN inverted when the entry turns PROT_NONE or back);
    a formerly writable entry's Dirty moves to SavedDirty when it is now read-only
    (pte_mksaveddirty), else SavedDirty is cleared (pte_clear_saveddirty)."""
    val = (pte & chg_mask) | (newprot & ~chg_mask)
    if __pte_needs_invert(pte) != __pte_needs_invert(val) and _invert_pfns():
        val ^= PTE_PFN_MASK
    if pte & _PAGE_RW:
        if not val & _PAGE_RW and val & _PAGE_DIRTY and _shstk(None):
            val = (val | _PAGE_SAVED_DIRTY) & ~_PAGE_DIRTY
    elif val & _PAGE_SAVED_DIRTY and _shstk(None):
        val = (val | _PAGE_DIRTY) & ~_PAGE_SAVED_DIRTY
    return val


def _shstk(_k: object) -> bool:
    """cpu_feature_enabled(X86_FEATURE_USER_SHSTK): the simulated CPU has no shadow stacks, so
    the saved-dirty shuffle never runs."""
    return False


def _page_folio(k: Kernel, page: int) -> int:
    head = k.kmem.get(page, "page", "compound_head")
    return head - 1 if head & 1 else page


def vm_normal_page(k: Kernel, vma: int, addr: int, pte: int) -> int:
    """mm/memory.c vm_normal_page() for the cases modelled: special PTEs (the zero page) and
    pfns past max_pfn have no struct page; else pfn_to_page."""
    if pte & _PAGE_SPECIAL:
        return 0
    from mmintro.kernel import memory

    pfn = memory.pte_pfn(pte)  # a PROT_NONE entry's pfn is stored inverted
    zero = k.__dict__.get("zero_pfn_value")
    if zero is None:
        zero = int.from_bytes(k.mem.read(k.pa(k.sym("zero_pfn")), 8), "little")
        k.zero_pfn_value = zero
    if pfn == zero or pfn >= k.max_pfn:
        return 0
    return k.pfn_to_page(pfn)


def can_change_pte_writable(k: Kernel, vma: int, addr: int, pte: int) -> bool:
    """mm/mprotect.c can_change_pte_writable() (6.18): maybe_change_pte_writable (VM_WRITE, not
    PROT_NONE; no soft-dirty or uffd-wp tracking here), then private: an exclusive anonymous
    page; shared: a dirty PTE."""
    flags = k.kmem.get(vma, "vm_area_struct", "vm_flags")
    if not flags & M.VM_WRITE:
        return False
    if pte & (_PAGE_PROTNONE | _PAGE_PRESENT) == _PAGE_PROTNONE:
        return False
    if pte & _PAGE_UFFD_WP:
        return False
    if flags & M.VM_SHARED:
        return bool(pte & _PAGE_DIRTY)
    page = vm_normal_page(k, vma, addr, pte)
    if not page:
        return False
    folio = _page_folio(k, page)
    if not k.kmem.get(folio, "page", "mapping") & PAGE_MAPPING_ANON:
        return False
    return bool(k.kmem.get(page, "page", "flags") & (1 << k.T.const("PG_anon_exclusive")))


def vma_wants_manual_pte_write_upgrade(k: Kernel, vma: int) -> bool:
    """include/linux/mm.h: a shared VMA when it wants write notification (checked against its
    current vm_page_prot, as mprotect_fixup calls it before vma_set_page_prot), a private one
    when VM_WRITE."""
    from mmintro.kernel import filemap

    flags = k.kmem.get(vma, "vm_area_struct", "vm_flags")
    if flags & M.VM_SHARED:
        return filemap.vma_wants_writenotify(k, vma, k.kmem.get(vma, "vm_area_struct", "vm_page_prot"))
    return bool(flags & M.VM_WRITE)


# level spans for skipping absent upper-level entries (4-level paging)
_SPAN = {"PGD": 1 << 39, "P4D": 1 << 39, "PUD": 1 << 30, "PMD": 1 << 21, "PTE": 1 << 12}


def _change_pte_table(k: Kernel, vma: int, table: int, start: int, end: int, newprot: int, try_writable: bool) -> int:
    """change_pte_range() over [start, end) of one PTE table (kvaddr ``table``), all entries at
    once: every present (or PROT_NONE) entry becomes pte_modify(entry, newprot); with
    MM_CP_TRY_CHANGE_WRITABLE the ones can_change_pte_writable allows get _PAGE_RW.  Returns
    the number of entries changed."""
    i0 = (start >> PAGE_SHIFT) & 511
    i1 = i0 + ((end - start) >> PAGE_SHIFT)
    pa = k.pa(table)
    raw = bytearray(k.mem.read(pa + 8 * i0, 8 * (i1 - i0)))
    ents = np.frombuffer(raw, dtype=np.uint64).copy()
    present = (ents & np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)) != 0
    if not present.any():
        return 0
    chg = np.uint64(_PAGE_CHG_MASK)
    new = (ents & chg) | np.uint64(newprot & ~_PAGE_CHG_MASK & ((1 << 64) - 1))
    if _invert_pfns():
        old_inv = (ents != 0) & ((ents & np.uint64(_PAGE_PRESENT)) == 0)
        new_inv = (new != 0) & ((new & np.uint64(_PAGE_PRESENT)) == 0)
        flip = old_inv != new_inv
        new[flip] ^= np.uint64(PTE_PFN_MASK)
    new = np.where(present, new, ents)
    if try_writable:
        for i in np.flatnonzero(present & ((new & np.uint64(_PAGE_RW)) == 0)):
            if can_change_pte_writable(k, vma, start + (int(i) << PAGE_SHIFT), int(new[i])):
                new[i] |= np.uint64(_PAGE_RW)  # pte_mkwrite (no shadow stack VMA)
    if not np.array_equal(new, ents):
        k.mem.write(pa + 8 * i0, new.tobytes())
    return int(present.sum())


def change_protection(k: Kernel, vma: int, start: int, end: int, try_writable: bool) -> int:
    """mm/mprotect.c change_protection() -> change_protection_range() -> change_p*d_range ->
    change_pte_range(): returns the number of entries updated (pages)."""
    try:
        from mmintro.kernel import memory
    except ImportError:
        return 0
    walk = getattr(memory, "walk", None)
    if walk is None:
        return 0
    km = k.kmem
    mm = km.get(vma, "vm_area_struct", "vm_mm")
    newprot = km.get(vma, "vm_area_struct", "vm_page_prot")
    pages = 0
    addr = start
    hugetlb = bool(km.get(vma, "vm_area_struct", "vm_flags") & VM_HUGETLB)
    while addr < end:
        level, slot, entry = walk(k, mm, addr)
        if hugetlb:  # hugetlb_change_protection(): huge_pte_modify, never made writable here
            span = _SPAN.get(level, PAGE_SIZE)
            # every !huge_pte_none entry: a PROT_NONE huge entry (PROTNONE, PSE kept) comes back too
            if level in ("PMD", "PUD") and entry & (_PAGE_PRESENT | _PAGE_PROTNONE) and entry & _PAGE_PSE:
                new = pte_modify(entry, newprot, _HPAGE_CHG_MASK) | _PAGE_PSE
                if new != entry:
                    km.write_u64(slot, new)
                pages += span >> PAGE_SHIFT
            addr = min((addr & ~(span - 1)) + span, end)
            continue
        span = _SPAN.get(level, PAGE_SIZE)
        nxt = min((addr & ~(span - 1)) + span, end)
        if level == "PTE":  # change_pte_range() over this PTE table's part of the range
            pages += _change_pte_table(
                k, vma, slot & ~(PAGE_SIZE - 1), addr, min((addr | (PMD_SIZE - 1)) + 1, end), newprot, try_writable
            )
            addr = min((addr | (PMD_SIZE - 1)) + 1, end)
            continue
        if not entry & _PAGE_PRESENT and not entry & _PAGE_PROTNONE:
            addr = nxt
            continue
        if level == "PMD" and entry & _PAGE_PSE:
            from mmintro.kernel.vma import _opt

            if (addr & (PMD_SIZE - 1)) or nxt - addr != PMD_SIZE:  # change_pmd_range: a partial THP
                split = _opt("huge_memory", "split_huge_pmd")
                if split is not None:
                    split(k, vma, addr)
                    continue  # walk again: now a PTE table
            chp = _opt("huge_memory", "change_huge_pmd")
            if chp is not None:
                chp(k, vma, slot, addr, newprot, try_writable)
            if chp is None or (not entry & _PAGE_PRESENT and km.mem.read_u64(k.pa(slot)) == entry):
                # change_huge_pmd() here: pmd_modify (a PROT_NONE leaf is pmd_present too), then
                # pmd_mkwrite where can_change_pmd_writable allows it
                new = pte_modify(entry, newprot, _HPAGE_CHG_MASK) | _PAGE_PSE
                if try_writable and not new & _PAGE_RW and can_change_pte_writable(k, vma, addr, new):
                    new |= _PAGE_RW
                km.write_u64(slot, new)
            pages += 512
        addr = nxt
    return pages


def mprotect_fixup(k: Kernel, vma: int, prev: int, start: int, end: int, newflags: int) -> tuple[int, int]:
    """mm/mprotect.c mprotect_fixup(): (error, the VMA now holding [start, end) = *pprev)."""
    km = k.kmem
    mm = km.get(vma, "vm_area_struct", "vm_mm")
    oldflags = km.get(vma, "vm_area_struct", "vm_flags")
    nrpages = (end - start) >> PAGE_SHIFT
    charged = 0
    if newflags == oldflags:
        return 0, vma
    if newflags & M.VM_WRITE:
        if not oldflags & (M.VM_ACCOUNT | M.VM_WRITE | VM_HUGETLB | M.VM_SHARED | VM_NORESERVE):
            charged = nrpages
            V.vm_acct_memory(k, charged)  # security_vm_enough_memory_mm (overcommit not refused)
            newflags |= M.VM_ACCOUNT
    elif (
        oldflags & M.VM_ACCOUNT
        and not km.get(vma, "vm_area_struct", "vm_file")
        and not km.get(vma, "vm_area_struct", "vm_ops")
        and not km.get(vma, "vm_area_struct", "anon_vma")
    ):
        newflags &= ~M.VM_ACCOUNT  # vma_is_anonymous(vma) && !vma->anon_vma
    res, newflags = V.vma_modify_flags(k, prev, vma, start, end, newflags)
    if res <= 0:
        V.vm_unacct_memory(k, charged)
        return res or -12, prev
    km.set(res, "vm_area_struct", "vm_flags", newflags)  # vm_flags_reset_once
    try_writable = vma_wants_manual_pte_write_upgrade(k, res)
    from mmintro.kernel import filemap

    filemap.vma_set_page_prot(k, res)  # without write when the shared VMA wants write notification
    change_protection(k, res, start, end, try_writable)
    if oldflags & M.VM_ACCOUNT and not newflags & M.VM_ACCOUNT:
        V.vm_unacct_memory(k, nrpages)
    M.vm_stat_account(k, mm, oldflags, -nrpages)
    M.vm_stat_account(k, mm, newflags, nrpages)
    return 0, res


def do_mprotect(k: Kernel, mm: int, start: int, length: int, prot: int) -> int:
    """mm/mprotect.c do_mprotect_pkey(start, len, prot, -1): 0, -EINVAL (-22), -ENOMEM (-12)
    or -EACCES (-13).  ``prot`` is PROT_READ|PROT_WRITE|PROT_EXEC (= VM_READ|VM_WRITE|VM_EXEC)."""
    km = k.kmem
    if start & (PAGE_SIZE - 1) or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
        return -22
    if not length:
        return 0
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    end = start + length
    if end <= start:
        return -12
    vma = V.vma_find(k, mm, start, end)
    if not vma or km.get(vma, "vm_area_struct", "vm_start") > start:
        return -12
    prev = V.vma_prev(k, mm, vma)
    if start > km.get(vma, "vm_area_struct", "vm_start"):
        prev = vma
    nstart = start
    tmp = km.get(vma, "vm_area_struct", "vm_start")
    error = 0
    while vma and km.get(vma, "vm_area_struct", "vm_start") < end:
        if km.get(vma, "vm_area_struct", "vm_start") != tmp:
            error = -12
            break
        oldf = km.get(vma, "vm_area_struct", "vm_flags")
        newflags = prot | (oldf & ~VM_ACCESS_FLAGS)  # calc_vm_prot_bits(prot, 0) | kept flags
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            error = -13
            break
        tmp = min(km.get(vma, "vm_area_struct", "vm_end"), end)
        error, prev = mprotect_fixup(k, vma, prev, nstart, tmp, newflags)
        if error:
            break
        tmp = km.get(prev, "vm_area_struct", "vm_end")  # vma_iter_end(&vmi)
        nstart = tmp
        vma = V.vma_find(k, mm, tmp, end)
    if not error and tmp < end:
        error = -12
    return error
