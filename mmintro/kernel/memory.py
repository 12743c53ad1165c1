"""User page tables and page faults (mm/memory.c, include/linux/pgtable.h, arch/x86 of 6.18).

User page tables.  ``mm->pgd`` comes from fork.pgd_alloc (kernel half shared with
swapper_pg_dir); the lower levels are allocated on demand as ``__pud_alloc`` /
``__pmd_alloc`` / ``__pte_alloc`` do: ``pagetable_alloc(GFP_PGTABLE_USER & ~__GFP_HIGHMEM, 0)``
from the page allocator, the ptdesc constructor (``pagetable_pud_ctor`` /
``pagetable_pmd_ctor`` / ``pagetable_pte_ctor``: ``__page_type`` PGTY_table, NR_PAGETABLE on
the page's node, the split lock ``ptdesc->ptl`` initialised unlocked (ALLOC_SPLIT_PTLOCKS is
off: the spinlock lives in the ptdesc), ``pmd_huge_pte`` NULL for PMD tables), then
``mm_inc_nr_puds/pmds/ptes`` (``mm->pgtables_bytes`` += 4096) and ``p4d_populate`` /
``pud_populate`` / ``pmd_populate`` writing ``_PAGE_TABLE | __pa(table)`` (the P4D level is
folded at run time on this 4-level machine: the PGD entry points at the PUD table).

RSS.  ``add_mm_counter`` is ``percpu_counter_add(&mm->rss_stat[member], value)`` on the
current CPU with ``percpu_counter_batch`` = max(32, 2 * nr_online_cpus) folding into
``fbc->count`` as lib/percpu_counter.c does; ``get_mm_counter`` reads ``fbc->count``
(percpu_counter_read_positive) like the kernel, ``get_mm_counter_sum`` adds the per-CPU
deltas (percpu_counter_sum_positive: what /proc/PID/status prints since 6.16 and what
drgn's task_rss sums).

Faults.  :func:`handle_mm_fault` is x86's do_user_addr_fault access checks + mm/memory.c
handle_mm_fault -> __handle_mm_fault -> handle_pte_fault, with do_anonymous_page (the
shared zero page for reads), do_fault (do_read_fault / do_cow_fault / do_shared_fault +
finish_fault / set_pte_range), do_wp_page (wp_page_reuse / wp_page_copy /
wp_page_shared), and the THP / hugetlb entries of the HUGE helper's modules.  Every fault
is recorded in ``k.fault_log`` (kinds anon-zero, anon, cow-copy, cow-reuse, file,
file-shared, thp, hugetlb).  A file read fault first tries fault-around (do_fault_around
-> filemap_map_pages over the 64 KiB window).  :func:`access` is the MMU's side of an
access: Accessed/Dirty set by the walker when no fault is needed.

PROT_NONE.  As on x86 (arch/x86/include/asm/pgtable-invert.h, L1TF), a non-zero entry
without _PAGE_PRESENT holds its pfn inverted; :func:`pte_pfn` / :func:`pmd_pfn` /
:func:`pud_pfn` undo it (the arch helpers in mmintro.arch.x86), so such an entry -- still
pte_present / pmd_present through _PAGE_PROTNONE -- is copied at fork, zapped, counted and
found by rmap like any other; every pfn taken from a user leaf goes through them.

Life cycle: :func:`copy_page_range` (fork), :func:`zap_page_range` (munmap, exit, and
:func:`unmap_mapping_pages` for truncation), :func:`free_pgtables` (free_pgd_range).
:func:`mm_populate` faults a range as __get_user_pages does.  Fast paths do the kernel's
writes for many pages at once (numpy over PTE tables and the memory map): anonymous
populate (~10 us a page), fork's small folios (~1 us), unmapping shared anonymous pages;
tests check them byte for byte against the per-page path.

Not modelled: swap entries (do_swap_page), NUMA hinting faults (do_numa_page), userfaultfd,
KSM, mTHP orders below PMD size, TLB flushing and mmu_gather batching (pages are freed
as their PTEs are zapped, in the same order), page-table lock contention (the locks are
always free when a snapshot is taken).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmintro.arch import x86 as _x86
from mmintro.arch.x86 import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    _PAGE_TABLE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PGDIR_SHIFT,
    PMD_SHIFT,
    PTE_PFN_MASK,
    PUD_SHIFT,
)
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel import mmap, rmap
from mmintro.kernel import page_alloc as pa
from mmintro.kernel.init_64 import GFP_PGTABLE_KERNEL, PGTY_TABLE
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultRecord",
    "SegmentationFault",
    "access",
    "add_mm_counter",
    "copy_page_range",
    "do_anonymous_page",
    "do_wp_page",
    "finish_fault",
    "free_pgtables",
    "get_mm_counter",
    "get_mm_counter_sum",
    "handle_mm_fault",
    "mm_populate",
    "pgd_offset",
    "pmd_alloc",
    "pte_offset_alloc",
    "pud_alloc",
    "unmap_mapping_pages",
    "walk",
    "zap_page_range",
]

_T = get_types()

# include/asm-generic/pgalloc.h: GFP_PGTABLE_USER = GFP_PGTABLE_KERNEL | __GFP_ACCOUNT;
# pagetable_alloc() adds __GFP_COMP, the p?d_alloc_one() helpers clear __GFP_HIGHMEM.
GFP_PGTABLE_USER = GFP_PGTABLE_KERNEL | G.FLAGS["__GFP_ACCOUNT"]
_PT_GFP = (GFP_PGTABLE_USER | G.FLAGS["__GFP_COMP"]) & ~G.FLAGS["__GFP_HIGHMEM"]
PTRS_PER_TABLE = 512
TABLE_BYTES = PTRS_PER_TABLE * 8  # PTRS_PER_P?D * sizeof(p?d_t): what mm_inc_nr_* add
PMD_SIZE = 1 << PMD_SHIFT
PUD_SIZE = 1 << PUD_SHIFT
PGDIR_SIZE = 1 << PGDIR_SHIFT
USER_PGD_PTRS = PTRS_PER_TABLE // 2  # KERNEL_PGD_BOUNDARY: the user half of the PGD
TASK_SIZE_MAX = mmap.TASK_SIZE_MAX

# include/linux/mm_types.h enum fault_flag (#define-style, not in the type data)
FAULT_FLAG_WRITE = 1 << 0

MM_COUNTERS = {m: _T.const(m) for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")}
_EV = _T.enum("vm_event_item")
PGFAULT = _EV["PGFAULT"]
_PG_SWAPCACHE = _T.enum("pageflags")["PG_swapcache"]
PGREUSE = _EV["PGREUSE"]

_PCPU_SIZE = _T.sizeof("struct percpu_counter")
_RSS_OFF = _T.struct("mm_struct").offsetof("rss_stat")
_PCPU_COUNT = _T.struct("percpu_counter").offsetof("count")
_PCPU_COUNTERS = _T.struct("percpu_counter").offsetof("counters")

PG_anon_exclusive = _T.const("PG_anon_exclusive")
PG_swapbacked = _T.const("PG_swapbacked")
PG_uptodate = _T.const("PG_uptodate")
PG_dirty = _T.const("PG_dirty")
PG_head = _T.const("PG_head")


class SegmentationFault(Exception):
    """The access is not allowed (x86 do_user_addr_fault -> bad_area_access_error /
    bad_area_nosemaphore): the task would get SIGSEGV."""


class BusError(Exception):
    """VM_FAULT_SIGBUS (e.g. an anonymous fault in a VM_SHARED VMA without a file)."""


@dataclass
class Fault:
    kind: str
    pfn: int
    major: bool = False  # VM_FAULT_MAJOR: the page had to be read (task->maj_flt)


# The kinds of fault the simulator logs (FaultRecord.kind; `mmintro faults --kind`).
FAULT_KINDS = ("anon", "anon-zero", "cow-copy", "cow-reuse", "file", "file-shared", "thp", "hugetlb", "swap")


@dataclass(slots=True)
class FaultRecord:
    pid: int
    comm: str
    addr: int
    pfn: int
    kind: str


# -- entries (arch/x86/include/asm/pgtable.h) ---------------------------------------------
# pte_pfn / pmd_pfn / pud_pfn undo the PFN inversion of a PROT_NONE entry (pgtable-invert.h);
# pfn_pte(pfn, prot) inverts it for a PROT_NONE prot (__supported_pte_mask keeps NX).
# _PAGE_PROTNONE = _PAGE_GLOBAL (bit 8) on a non-present entry: PROT_NONE / NUMA-hinting
# entries, which the kernel still counts as present.
pte_pfn = _x86.pte_pfn
pmd_pfn = _x86.pmd_pfn
pud_pfn = _x86.pud_pfn
pfn_pte = _x86.pfn_pte
_PAGE_PROTNONE = _x86._PAGE_PROTNONE
_NP_PRESENT = np.uint64(_PAGE_PRESENT)
_NP_PFN_MASK = np.uint64(PTE_PFN_MASK)


def pte_pfns(vals: np.ndarray) -> np.ndarray:
    """pte_pfn() of an array of PTEs: the PFN bits, inverted back where the entry is non-zero
    and not _PAGE_PRESENT (protnone_mask)."""
    inv = (vals != 0) & ((vals & _NP_PRESENT) == 0)
    return (np.where(inv, ~vals, vals) & _NP_PFN_MASK) >> np.uint64(PAGE_SHIFT)


# -- swap entries in PTEs (arch/x86/include/asm/pgtable_64.h) --------------------------------
# A non-present PTE holding a swap entry: the type in the top SWP_TYPE_BITS bits, the offset
# inverted (L1TF mitigation) from bit SWP_OFFSET_FIRST_BIT (_PAGE_BIT_PROTNONE + 1) up;
# _PAGE_SWP_EXCLUSIVE (= _PAGE_PSE) marks an exclusive anonymous page.
SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = _x86._PAGE_BIT_GLOBAL + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
_PAGE_SWP_EXCLUSIVE = _PAGE_PSE
_U64 = (1 << 64) - 1


def swp_entry_to_pte(entry: int, exclusive: bool = False) -> int:
    """swp_entry_to_pte(): the arch-independent swp_entry_t as an x86 swap PTE
    (__swp_entry(swp_type, swp_offset)), with pte_swp_mkexclusive when ``exclusive``."""
    from mmintro.kernel import swapfile as sf

    type_, offset = sf.swp_type(entry), sf.swp_offset(entry)
    e = ((~offset & _U64) << SWP_OFFSET_SHIFT & _U64) >> SWP_TYPE_BITS | (type_ << (64 - SWP_TYPE_BITS))
    return e | (_PAGE_SWP_EXCLUSIVE if exclusive else 0)


def pte_to_swp_entry(e: int) -> int:
    """pte_to_swp_entry(): the swp_entry_t of a swap PTE (the exclusive bit dropped)."""
    from mmintro.kernel import swapfile as sf

    e &= ~_PAGE_SWP_EXCLUSIVE
    type_ = e >> (64 - SWP_TYPE_BITS)
    offset = (~e & _U64) << SWP_TYPE_BITS & _U64
    offset >>= SWP_OFFSET_SHIFT
    return sf.swp_entry(type_, offset)


def is_swap_pte(e: int) -> bool:
    """is_swap_pte(): not none and not present."""
    return bool(e) and not pte_present(e)


def leaf_pfn(level: str, e: int) -> int:
    """The first pfn a leaf of ``level`` ("PTE", "PMD", "PUD", as walk() names them) maps."""
    if level == "PMD":
        return pmd_pfn(e)
    if level == "PUD":
        return pud_pfn(e)
    return pte_pfn(e)


def pte_present(e: int) -> bool:
    """x86 pte_present(): _PAGE_PRESENT or _PAGE_PROTNONE."""
    return bool(e & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pmd_present(e: int) -> bool:
    """x86 pmd_present(): _PAGE_PRESENT, _PAGE_PROTNONE or _PAGE_PSE."""
    return bool(e & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE))


def pte_write(e: int) -> bool:
    return bool(e & _PAGE_RW)


def pmd_leaf(e: int) -> bool:
    return bool(pmd_present(e) and e & _PAGE_PSE)


def maybe_mkwrite(e: int, vm_flags: int) -> int:
    """include/linux/mm.h maybe_mkwrite(): pte_mkwrite() only in a VM_WRITE VMA."""
    return e | _PAGE_RW if vm_flags & mmap.VM_WRITE else e


# -- page-table pages ---------------------------------------------------------------------
def _read(k: Kernel, kva: int) -> int:
    """A page-table entry (8-byte aligned, in the direct map)."""
    p = kva - k.page_offset_base
    chunk = k.mem._chunks.get(p >> 16)  # PhysMem's lazily backed 64 KiB chunks (never in a region)
    if chunk is not None:
        return int(chunk[p & 0xFFF8 : (p & 0xFFF8) + 8].view(np.uint64)[0])
    return k.mem.read_u64(p)


def _write(k: Kernel, kva: int, v: int) -> None:
    p = kva - k.page_offset_base
    chunk = k.mem._chunks.get(p >> 16)
    if chunk is not None:
        chunk[p & 0xFFF8 : (p & 0xFFF8) + 8].view(np.uint64)[0] = v
        return
    k.mem.write_u64(p, v)


def _nid(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = pa.page_words(k, pfn)
    return int(mv64[w + pa.W_FLAGS]) >> kc.NODES_PGOFF


def pagetable_alloc(k: Kernel, level: str) -> int:
    """p?d_alloc_one(mm) for a user mm: pagetable_alloc(GFP_PGTABLE_USER) and the level's
    ctor.  Returns the table's pfn (MemoryError = VM_FAULT_OOM)."""
    pfn = k.alloc_pages(_PT_GFP, 0)
    if pfn is None:
        raise MemoryError("pagetable_alloc: out of memory (VM_FAULT_OOM)")
    page = k.pfn_to_page(pfn)
    km = k.kmem
    if level in ("pte", "pmd"):
        # ptlock_init(): spin_lock_init(ptlock_ptr(ptdesc)) -- the lock word in the ptdesc
        km.set(page, "ptdesc", "ptl.rlock.raw_lock.val.counter", 0)
    if level == "pmd":
        km.set(page, "ptdesc", "pmd_huge_pte", 0)  # pmd_ptlock_init()
        km.set(page, "ptdesc", "pt_share_count.counter", 0)  # ptdesc_pmd_pts_init()
    # __pagetable_ctor(): __SetPageTable + NR_PAGETABLE on memdesc_nid(ptdesc->pt_flags)
    km.set(page, "ptdesc", "__page_type", PGTY_TABLE)
    k.mod_node_page_state(_nid(k, pfn), "NR_PAGETABLE", 1)
    return pfn


def pagetable_free(k: Kernel, pfn: int) -> None:
    """pagetable_dtor_free(): __ClearPageTable, NR_PAGETABLE - 1, free the page."""
    page = k.pfn_to_page(pfn)
    k.kmem.set(page, "ptdesc", "__page_type", 0xFFFFFFFF)
    k.mod_node_page_state(_nid(k, pfn), "NR_PAGETABLE", -1)
    k.free_pages(pfn, 0)


def _mm_add_pgtables(k: Kernel, mm: int, delta: int) -> None:
    km = k.kmem
    km.set(mm, "mm_struct", "pgtables_bytes.counter", km.get(mm, "mm_struct", "pgtables_bytes.counter") + delta)


def pgd_offset(k: Kernel, mm: int, addr: int) -> int:
    """pgd_offset(mm, addr): the kernel virtual address of the PGD slot."""
    return k.kmem.get(mm, "mm_struct", "pgd") + 8 * ((addr >> PGDIR_SHIFT) & 511)


def _table_of(k: Kernel, entry: int) -> int:
    return k.phys_to_virt(entry & PTE_PFN_MASK)


def _populate(k: Kernel, mm: int, slot: int, level: str) -> tuple[int, bool]:
    """__pud_alloc/__pmd_alloc/__pte_alloc on a none slot: a new table and p?d_populate.
    Returns (table kvaddr, allocated now)."""
    e = _read(k, slot)
    if e & _PAGE_PRESENT:
        return _table_of(k, e), False
    pfn = pagetable_alloc(k, level)
    _mm_add_pgtables(k, mm, TABLE_BYTES)  # mm_inc_nr_puds / mm_inc_nr_pmds / mm_inc_nr_ptes
    _write(k, slot, _PAGE_TABLE | (pfn << PAGE_SHIFT))
    return k.phys_to_virt(pfn << PAGE_SHIFT), True


def pud_alloc(k: Kernel, mm: int, addr: int) -> int:
    """p4d_alloc (folded) + pud_alloc(): the PUD slot for ``addr``, allocating the PUD table."""
    table, _ = _populate(k, mm, pgd_offset(k, mm, addr), "pud")
    return table + 8 * ((addr >> PUD_SHIFT) & 511)


def pmd_alloc(k: Kernel, mm: int, addr: int) -> int:
    """pmd_alloc(): the PMD slot, allocating the PUD and PMD tables as needed."""
    pud = pud_alloc(k, mm, addr)
    if pmd_leaf(_read(k, pud)):
        raise ValueError(f"pmd_alloc: {addr:#x} is inside a PUD leaf")
    table, _ = _populate(k, mm, pud, "pmd")
    return table + 8 * ((addr >> PMD_SHIFT) & 511)


def pte_alloc(k: Kernel, mm: int, pmd: int) -> int:
    """pte_alloc(mm, pmd): __pte_alloc -> pmd_install when the PMD is none; the table."""
    e = _read(k, pmd)
    if pmd_leaf(e):
        raise ValueError("pte_alloc over a PMD leaf")
    table, _ = _populate(k, mm, pmd, "pte")
    return table


def pte_offset_alloc(k: Kernel, mm: int, addr: int) -> int:
    """The PTE slot for ``addr`` (pte_alloc_map), allocating every missing level."""
    return pte_alloc(k, mm, pmd_alloc(k, mm, addr)) + 8 * ((addr >> PAGE_SHIFT) & 511)


def walk(k: Kernel, mm: int, addr: int) -> tuple[str, int, int]:
    """(level, slot kvaddr, entry) of the leaf mapping ``addr`` or of the first non-present
    entry on the way down ("PGD", "PUD", "PMD" or "PTE")."""
    slot = pgd_offset(k, mm, addr)
    for name, _shift in (("PGD", None), ("PUD", PUD_SHIFT), ("PMD", PMD_SHIFT), ("PTE", PAGE_SHIFT)):
        e = _read(k, slot)
        if not e & _PAGE_PRESENT or name == "PTE" or (name in ("PUD", "PMD") and e & _PAGE_PSE):
            return name, slot, e
        nxt = {"PGD": PUD_SHIFT, "PUD": PMD_SHIFT, "PMD": PAGE_SHIFT}[name]
        slot = _table_of(k, e) + 8 * ((addr >> nxt) & 511)
    raise AssertionError("unreachable")


def _pmd_slot(k: Kernel, mm: int, addr: int) -> int | None:
    """The PMD slot if the PGD and PUD levels are present (no allocation)."""
    e = _read(k, pgd_offset(k, mm, addr))
    if not e & _PAGE_PRESENT:
        return None
    pud = _table_of(k, e) + 8 * ((addr >> PUD_SHIFT) & 511)
    e = _read(k, pud)
    if not e & _PAGE_PRESENT or e & _PAGE_PSE:
        return None
    return _table_of(k, e) + 8 * ((addr >> PMD_SHIFT) & 511)


# -- RSS (include/linux/mm.h add_mm_counter, lib/percpu_counter.c) --------------------------
def percpu_counter_batch(k: Kernel) -> int:
    """lib/percpu_counter.c compute_batch_value(): max(32, 2 * num_online_cpus())."""
    return max(32, 2 * k.config.cpus)


def percpu_counter_add_batch(k: Kernel, fbc: int, amount: int, batch: int) -> None:
    """lib/percpu_counter.c percpu_counter_add_batch() (the this_cpu_try_cmpxchg variant):
    the CPU's s32 delta absorbs ``amount`` unless |delta + amount| reaches ``batch``; then
    fbc->count += delta + amount and the delta is reset."""
    km = k.kmem
    ctr = k.per_cpu_ptr(km.get(fbc, "percpu_counter", "counters"), k.current_cpu)
    p = k.pa(ctr)
    count = int.from_bytes(k.mem.read(p, 4), "little", signed=True)
    if abs(count + amount) >= batch:
        km.set(fbc, "percpu_counter", "count", km.get(fbc, "percpu_counter", "count") + count + amount)
        k.mem.write(p, (0).to_bytes(4, "little"))
    else:
        k.mem.write(p, (count + amount).to_bytes(4, "little", signed=True))


def _rss_fbc(k: Kernel, mm: int, member: str) -> int:
    return mm + _RSS_OFF + MM_COUNTERS[member] * _PCPU_SIZE


def add_mm_counter(k: Kernel, mm: int, member: str, delta: int) -> None:
    """add_mm_counter(mm, member, value): percpu_counter_add(&mm->rss_stat[member], value)."""
    if delta:
        percpu_counter_add_batch(k, _rss_fbc(k, mm, member), delta, percpu_counter_batch(k))


def get_mm_counter(k: Kernel, mm: int, member: str) -> int:
    """get_mm_counter(): percpu_counter_read_positive(&mm->rss_stat[member]) (fbc->count)."""
    return max(0, k.kmem.get(_rss_fbc(k, mm, member), "percpu_counter", "count"))


def get_mm_counter_sum(k: Kernel, mm: int, member: str) -> int:
    """get_mm_counter_sum(): percpu_counter_sum_positive() -- fbc->count plus every CPU's
    delta (fs/proc/task_mmu.c task_mem() uses it since 6.16; drgn's task_rss sums too)."""
    fbc = _rss_fbc(k, mm, member)
    total = k.kmem.get(fbc, "percpu_counter", "count")
    ptr = k.kmem.get(fbc, "percpu_counter", "counters")
    for cpu in range(k.config.cpus):
        total += int.from_bytes(k.mem.read(k.pa(k.per_cpu_ptr(ptr, cpu)), 4), "little", signed=True)
    return max(0, total)


def get_mm_rss(k: Kernel, mm: int) -> int:
    """include/linux/mm.h get_mm_rss(): file + anon + shmem through get_mm_counter
    (fbc->count): what VmHWM's update and the OOM killer read."""
    return sum(get_mm_counter(k, mm, m) for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"))


def update_hiwater_rss(k: Kernel, mm: int) -> None:
    """include/linux/mm.h update_hiwater_rss(): mm->hiwater_rss = max(hiwater_rss, rss)
    (vms_clear_ptes / exit_mmap call it before tearing mappings down)."""
    rss = get_mm_rss(k, mm)
    if k.kmem.get(mm, "mm_struct", "hiwater_rss") < rss:
        k.kmem.set(mm, "mm_struct", "hiwater_rss", rss)


def mm_counter_file(k: Kernel, pfn: int) -> str:
    """include/linux/mm.h mm_counter_file(): MM_SHMEMPAGES for swap-backed (shmem) folios."""
    return "MM_SHMEMPAGES" if rmap.folio_test(k, pfn, PG_swapbacked) else "MM_FILEPAGES"


def mm_counter(k: Kernel, pfn: int) -> str:
    return "MM_ANONPAGES" if rmap.folio_test_anon(k, pfn) else mm_counter_file(k, pfn)


# -- fault bookkeeping --------------------------------------------------------------------
def _log(k: Kernel, mm: int, task: int | None, addr: int, pfn: int, kind: str) -> Fault:
    if kind not in FAULT_KINDS:
        raise AssertionError(f"fault kind {kind!r} is not one of FAULT_KINDS")
    task = task or k.kmem.get(mm, "mm_struct", "owner")
    pid = k.kmem.get(task, "task_struct", "pid") if task else 0
    comm = k.mem.read(k.pa(k.kmem.addr(task, "task_struct", "comm")), 16).split(b"\0")[0].decode() if task else ""
    k.__dict__.setdefault("fault_log", []).append(FaultRecord(pid, comm, addr, pfn, kind))
    return Fault(kind, pfn)


def _fast_get(k: Kernel, addr: int, struct: str, field: str) -> int:
    """kmem.get for an unsigned 8-byte field of a direct-map object (a slab object: VMAs,
    mm_structs), read straight from PhysMem's chunk when it is backed by one."""
    f = k.kmem.field(struct, field)
    if f.size == 8 and not f.bit_size and not f.signed:
        p = addr + f.offset - k.page_offset_base
        if 0 <= p < (1 << 46) and not p & 7:
            chunk = k.mem._chunks.get(p >> 16)
            if chunk is not None:
                o = p & 0xFFFF
                return int(chunk[o : o + 8].view(np.uint64)[0])
    return k.kmem.get(addr, struct, field)


def _vma_get(k: Kernel, vma: int, field: str) -> int:
    return _fast_get(k, vma, "vm_area_struct", field)


def vma_is_anonymous(k: Kernel, vma: int) -> bool:
    """vma_is_anonymous(): no vm_ops.  File VMAs of this model may leave vm_ops NULL, so a
    VMA is anonymous when it has neither vm_ops nor vm_file."""
    return not _vma_get(k, vma, "vm_ops") and not _vma_get(k, vma, "vm_file")


def is_zero_pfn(k: Kernel, pfn: int) -> bool:
    return pfn == k.zero_pfn


def vm_normal_page(k: Kernel, vma: int, addr: int, e: int) -> int | None:
    """mm/memory.c vm_normal_page(): the pfn of a "normal" page, None for special mappings
    (the zero page, VM_PFNMAP/VM_MIXEDMAP pfns)."""
    if e & _PAGE_SPECIAL:
        return None
    pfn = pte_pfn(e)
    if is_zero_pfn(k, pfn):
        return None
    if _vma_get(k, vma, "vm_flags") & (mmap.VM_PFNMAP | mmap.VM_MIXEDMAP):
        return None
    return pfn


_OPTIONAL: dict[str, object] = {}


def _optional(module: str):
    """Another helper's module if it exists (looked up once per process)."""
    import importlib

    if module not in _OPTIONAL:
        try:
            _OPTIONAL[module] = importlib.import_module(f"mmintro.kernel.{module}")
        except ImportError:
            return None
    return _OPTIONAL[module]


def _access_error(vm_flags: int, write: bool) -> bool:
    """arch/x86/mm/fault.c access_error() for a user access without protection keys."""
    if write:
        return not vm_flags & mmap.VM_WRITE
    return not vm_flags & (mmap.VM_READ | mmap.VM_WRITE | mmap.VM_EXEC)  # !vma_is_accessible()


def handle_mm_fault(k: Kernel, mm: int, addr: int, write: bool, task: int | None = None) -> Fault:
    """A user page fault at ``addr``: do_user_addr_fault's VMA lookup and access_error,
    then handle_mm_fault (PGFAULT, hugetlb_fault or __handle_mm_fault) and
    mm_account_fault (task->min_flt).  Raises SegmentationFault for SIGSEGV."""
    if addr >= TASK_SIZE_MAX:
        raise SegmentationFault(f"{addr:#x}: not a user address")
    vma = mmap.find_vma(k, mm, addr)
    if not vma:
        raise SegmentationFault(f"{addr:#x}: no VMA (SEGV_MAPERR)")
    flags = _vma_get(k, vma, "vm_flags")
    if _access_error(flags, write):
        raise SegmentationFault(f"{addr:#x}: {'write' if write else 'read'} not allowed by the VMA (SEGV_ACCERR)")
    task = task or k.kmem.get(mm, "mm_struct", "owner")
    k.vm_events[k.current_cpu][PGFAULT] += 1  # count_vm_event(PGFAULT)
    old_current = k.__dict__.get("current_task")
    k.current_task = task  # the fault runs as current (the OOM killer's "current")
    try:
        try:
            fault = _handle_mm_fault_once(k, mm, vma, addr, write, task, flags)
        except MemoryError as e:
            # VM_FAULT_OOM: do_user_addr_fault() -> pagefault_out_of_memory(): a task the OOM
            # killer killed just dies; otherwise the fault is retried (once here: the kernel
            # returns to user space and faults again for as long as it fails)
            oom = _optional("oom_kill")
            if oom is None or isinstance(e, oom.FatalSignalPending) or not task:
                raise
            oom.pagefault_out_of_memory(k)
            fault = _handle_mm_fault_once(k, mm, vma, addr, write, task, flags)
    finally:
        k.current_task = old_current
    if task and fault.kind != "spurious":
        # mm_account_fault(): a minor fault unless the page had to be read (VM_FAULT_MAJOR)
        field = "maj_flt" if fault.major else "min_flt"
        k.kmem.set(task, "task_struct", field, k.kmem.get(task, "task_struct", field) + 1)
    return fault


def _handle_mm_fault_once(k: Kernel, mm: int, vma: int, addr: int, write: bool, task: int, flags: int) -> Fault:
    if flags & VM_HUGETLB:
        hugetlb = _optional("hugetlb")
        if hugetlb is None:
            raise NotImplementedError("hugetlb VMAs need mmintro.kernel.hugetlb")
        pfn = hugetlb.hugetlb_fault(k, mm, vma, addr, write)
        return _log(k, mm, task, addr, pfn, "hugetlb")
    return __handle_mm_fault(k, mm, vma, addr, write, task)


def access(k: Kernel, mm: int, addr: int, write: bool, task: int | None = None) -> Fault | None:
    """A user access as the MMU performs it: a present leaf that allows the access gets
    its Accessed bit (and Dirty for a write) set by the hardware walker, no fault (None);
    otherwise the page fault (handle_mm_fault)."""
    level, slot, e = walk(k, mm, addr)
    if e & _PAGE_PRESENT and (level == "PTE" or e & _PAGE_PSE) and (not write or e & _PAGE_RW):
        ne = e | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
        if ne != e:
            _write(k, slot, ne)
        return None
    return handle_mm_fault(k, mm, addr, write, task)


VM_HUGETLB = 0x00400000  # include/linux/mm.h
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000


def __handle_mm_fault(k: Kernel, mm: int, vma: int, addr: int, write: bool, task: int | None) -> Fault:
    """mm/memory.c __handle_mm_fault(): allocate the PUD and PMD levels, try a huge PMD
    (create_huge_pmd for anonymous VMAs when thp_vma_allowable), handle an existing PMD
    leaf, else handle_pte_fault."""
    pmd = pmd_alloc(k, mm, addr)
    e = _read(k, pmd)
    huge = _optional("huge_memory")
    if not e and huge is not None and vma_is_anonymous(k, vma) and huge.thp_vma_allowable(k, vma):
        pfn = huge.do_huge_pmd_anonymous_page(k, mm, vma, addr, write)
        if pfn is not None:
            return _log(k, mm, task, addr, pfn, "thp")
        e = _read(k, pmd)  # VM_FAULT_FALLBACK
    if pmd_leaf(e):
        if write and not e & _PAGE_RW:
            if huge is None or not hasattr(huge, "do_huge_pmd_wp_page"):
                raise NotImplementedError("write fault on a read-only PMD leaf needs huge_memory.do_huge_pmd_wp_page")
            pfn = huge.do_huge_pmd_wp_page(k, mm, vma, addr)
            if pfn is not None:
                return _log(k, mm, task, addr, pfn, "thp")
            e = _read(k, pmd)  # split: fall through to the PTE level
        else:
            # huge_pmd_set_accessed(): a spurious fault, the hardware bits
            _write(k, pmd, e | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0))
            return Fault("spurious", pmd_pfn(e))
    return handle_pte_fault(k, mm, vma, addr, write, task, pmd)


def handle_pte_fault(k: Kernel, mm: int, vma: int, addr: int, write: bool, task: int | None, pmd: int) -> Fault:
    """mm/memory.c handle_pte_fault()."""
    e = _read(k, pmd)
    pte = None
    orig = 0
    if e & _PAGE_PRESENT:
        pte = _table_of(k, e) + 8 * ((addr >> PAGE_SHIFT) & 511)
        orig = _read(k, pte)
        if not orig:
            pte = None
    if pte is None:
        # do_pte_missing()
        if vma_is_anonymous(k, vma):
            if _vma_get(k, vma, "vm_flags") & (mmap.VM_PFNMAP | mmap.VM_IO):
                # [vvar]-style PFN maps fault through their vm_ops (vvar_fault ->
                # vmf_insert_pfn); without ops there is nothing to insert
                raise BusError(f"{addr:#x}: a VM_PFNMAP/VM_IO mapping without a fault handler (VM_FAULT_SIGBUS)")
            return do_anonymous_page(k, mm, vma, addr, write, task, pmd)
        if not _vma_get(k, vma, "vm_file"):
            raise NotImplementedError(f"{addr:#x}: faults in special mappings (vdso/vvar vm_ops) are not modelled")
        return do_fault(k, mm, vma, addr, write, task, pmd)
    if not pte_present(orig):
        return do_swap_page(k, mm, vma, addr, write, task, pte, orig)
    if not orig & _PAGE_PRESENT:
        raise NotImplementedError(f"{addr:#x}: NUMA hinting faults (do_numa_page) are not modelled")
    if write:
        if not pte_write(orig):
            return do_wp_page(k, mm, vma, addr, task, pte, orig)
        orig |= _PAGE_DIRTY  # pte_mkdirty
    _write(k, pte, orig | _PAGE_ACCESSED)  # pte_mkyoung + ptep_set_access_flags
    return Fault("spurious", pte_pfn(orig))


# -- swap-in -------------------------------------------------------------------------------------
def do_swap_page(k: Kernel, mm: int, vma: int, addr: int, write: bool, task: int | None, pte: int, orig: int) -> Fault:
    """mm/memory.c do_swap_page() for an order-0 swap entry: the folio from the swap cache
    or read by swapin_readahead (VM_FAULT_MAJOR, PGMAJFAULT), mapped again (a new anon rmap
    for a folio fresh from the device, else folio_add_anon_rmap_ptes), MM_SWAPENTS ->
    MM_ANONPAGES, the slot's reference dropped (swap_free); a write fault maps it writable
    and dirty, taking it out of the swap cache when that was its last reference
    (should_try_to_free_swap), and on a read fault an exclusive entry maps writable
    (RMAP_EXCLUSIVE) as the kernel does when it can reuse the page."""
    from mmintro.kernel import swap, swap_state
    from mmintro.kernel import swapfile as sf

    entry = pte_to_swp_entry(orig)
    exclusive = bool(orig & _PAGE_SWP_EXCLUSIVE)
    if sf.swp_type(entry) >= len(sf.swap_info(k)):
        raise NotImplementedError(f"{addr:#x}: non-swap entry {orig:#x} (migration/device entries are not modelled)")
    folio = swap_state.swap_cache_get_folio(k, entry)
    major = False
    if folio is not None:
        rmap.folio_get(k, folio)
        if swap.folio_clear_flag(k, folio, swap_state.PG_readahead):
            k.vm_events[k.current_cpu][_EV["SWAP_RA_HIT"]] += 1
    else:
        folio, major = swap_state.swapin_readahead(k, entry, G.GFP_HIGHUSER_MOVABLE, vma, addr & ~(PAGE_SIZE - 1))
        if folio is None:
            raise MemoryError(f"{addr:#x}: no page to swap in (VM_FAULT_OOM)")
        if not major:
            rmap.folio_get(k, folio)
        k.vm_events[k.current_cpu][_EV["PGMAJFAULT"]] += 1 if major else 0
    flags = _vma_get(k, vma, "vm_flags")
    prot = _vma_get(k, vma, "vm_page_prot")
    page = folio
    sf.swap_free(k, entry)
    # should_try_to_free_swap(): swap more than half full, an mlocked VMA, or a write fault
    # by the only user (the lookup's reference and the swap cache's)
    if swap_state.folio_test_swapcache(k, folio) and (
        sf.vm_swap_full(k)
        or flags & mmap.VM_LOCKED
        or (write and rmap.folio_ref_count(k, folio) == 1 + swap.folio_nr_pages(k, folio))
    ):
        sf.folio_free_swap(k, folio)
    add_mm_counter(k, mm, "MM_ANONPAGES", 1)
    add_mm_counter(k, mm, "MM_SWAPENTS", -1)
    e = pfn_pte(page, prot)
    if exclusive or rmap.folio_ref_count(k, folio) == 1:
        # the same logic as do_wp_page(), for pages certainly not shared
        if flags & mmap.VM_WRITE:
            e |= _PAGE_RW
            if write:
                e |= _PAGE_DIRTY
                write = False
        exclusive = True
    if not rmap.folio_test_anon(k, folio):
        rmap.folio_add_new_anon_rmap(k, folio, vma, addr & ~(PAGE_SIZE - 1), exclusive=exclusive)
    else:
        rmap.folio_add_anon_rmap_ptes(k, folio, 1, vma, addr & ~(PAGE_SIZE - 1))
    _write(k, pte, e | _PAGE_ACCESSED)
    if write:  # a write to a page others may still map: do_wp_page() copies or reuses it
        return do_wp_page(k, mm, vma, addr, task, pte, _read(k, pte))
    fault = _log(k, mm, task, addr, page, "swap")
    fault.major = major
    return fault


# -- anonymous memory -----------------------------------------------------------------------
def flags_of(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = pa.page_words(k, rmap.page_folio(k, pfn))
    return int(mv64[w + pa.W_FLAGS])


def _mk_anon_pte(pfn: int, prot: int, vm_flags: int) -> int:
    """do_anonymous_page's entry: folio_mk_pte(), pte_sw_mkyoung() (a no-op on x86, whose
    hardware sets Accessed; PAGE_* protections carry _PAGE_ACCESSED already) and for VM_WRITE
    pte_mkwrite(pte_mkdirty()) (no soft-dirty: CONFIG_MEM_SOFT_DIRTY is off)."""
    e = pfn_pte(pfn, prot)
    if vm_flags & mmap.VM_WRITE:
        e |= _PAGE_DIRTY | _PAGE_RW
    return e


def folio_prealloc(k: Kernel, vma: int, addr: int, need_zero: bool) -> int:
    """mm/memory.c folio_prealloc(): vma_alloc_zeroed_movable_folio() or
    vma_alloc_folio(GFP_HIGHUSER_MOVABLE, 0, vma, addr)."""
    from mmintro.kernel import mempolicy

    gfp = G.GFP_HIGHUSER_MOVABLE | (G.FLAGS["__GFP_ZERO"] if need_zero else 0)
    pfn = mempolicy.vma_alloc_folio(k, gfp, 0, vma, addr)
    if pfn is None:
        raise MemoryError(f"{addr:#x}: no page for the fault (VM_FAULT_OOM)")
    return pfn


def _lru_add_vma(k: Kernel, pfn: int, vma: int) -> None:
    swap = _optional("swap")
    if swap is not None:
        swap.folio_add_lru_vma(k, pfn, vma)


def do_anonymous_page(k: Kernel, mm: int, vma: int, addr: int, write: bool, task: int | None, pmd: int) -> Fault:
    """mm/memory.c do_anonymous_page() for an order-0 folio (alloc_anon_folio falls back to
    order 0 unless mTHP orders are enabled): the zero page for reads, else
    vmf_anon_prepare (anon_vma_prepare), a zeroed folio from vma_alloc_folio,
    __folio_mark_uptodate, MM_ANONPAGES, folio_add_new_anon_rmap(RMAP_EXCLUSIVE),
    folio_add_lru_vma, set_ptes."""
    flags = _vma_get(k, vma, "vm_flags")
    if flags & mmap.VM_SHARED:
        raise BusError(f"{addr:#x}: anonymous fault in a shared VMA without a file (VM_FAULT_SIGBUS)")
    table = pte_alloc(k, mm, pmd)
    pte = table + 8 * ((addr >> PAGE_SHIFT) & 511)
    prot = _vma_get(k, vma, "vm_page_prot")
    if not write:
        # pte_mkspecial(pfn_pte(my_zero_pfn(addr), vma->vm_page_prot))
        _write(k, pte, pfn_pte(k.zero_pfn, prot) | _PAGE_SPECIAL)
        return _log(k, mm, task, addr, k.zero_pfn, "anon-zero")
    rmap.anon_vma_prepare(k, vma)
    pfn = folio_prealloc(k, vma, addr, True)
    rmap.folio_set_flag(k, pfn, PG_uptodate)  # __folio_mark_uptodate
    add_mm_counter(k, mm, "MM_ANONPAGES", 1)
    rmap.folio_add_new_anon_rmap(k, pfn, vma, addr & ~(PAGE_SIZE - 1))
    _lru_add_vma(k, pfn, vma)
    _write(k, pte, _mk_anon_pte(pfn, prot, flags))
    return _log(k, mm, task, addr, pfn, "anon")


# -- file-backed faults (do_fault) --------------------------------------------------------------
def _filemap():
    fm = _optional("filemap")
    if fm is None or not hasattr(fm, "filemap_fault"):
        raise NotImplementedError("file-backed faults need mmintro.kernel.filemap.filemap_fault")
    return fm


def _vma_mapping(k: Kernel, vma: int) -> int:
    f = _vma_get(k, vma, "vm_file")
    return k.kmem.get(f, "file", "f_mapping") if f else 0


def _mark_dirty(k: Kernel, pfn: int) -> bool:
    """folio_mark_dirty() through FILE's page_writeback (PG_dirty + the i_pages mark);
    returns whether the folio became dirty now."""
    was = rmap.folio_test(k, rmap.page_folio(k, pfn), PG_dirty)
    pw = _optional("page_writeback")
    if pw is not None and hasattr(pw, "folio_mark_dirty"):
        pw.folio_mark_dirty(k, rmap.page_folio(k, pfn))
    else:
        rmap.folio_set_flag(k, rmap.page_folio(k, pfn), PG_dirty)
    return not was


def fault_dirty_shared_page(k: Kernel, vma: int, pfn: int) -> None:
    """mm/memory.c fault_dirty_shared_page(): folio_mark_dirty, then
    balance_dirty_pages_ratelimited(mapping) (filemap's page_mkwrite is assumed, as
    generic filesystems have it)."""
    _mark_dirty(k, pfn)
    mapping = _vma_mapping(k, vma)
    pw = _optional("page_writeback")
    if mapping and pw is not None and hasattr(pw, "balance_dirty_pages_ratelimited"):
        pw.balance_dirty_pages_ratelimited(k, mapping)


def _vm_ops_fault(k: Kernel, vma: int):
    """__do_fault()'s ``vma->vm_ops->fault``: shmem_fault for a VMA with shmem_anon_vm_ops
    (shared anonymous memory), else filemap_fault (this model's file VMAs leave vm_ops
    NULL: generic_file_vm_ops)."""
    shmem = _optional("shmem")
    if shmem is not None and shmem.is_shmem_vma(k, vma):
        return shmem.shmem_fault
    return _filemap().filemap_fault


def do_fault(k: Kernel, mm: int, vma: int, addr: int, write: bool, task: int | None, pmd: int) -> Fault:
    """mm/memory.c do_fault(): do_read_fault (no fault-around), do_cow_fault for a write
    to a private mapping, do_shared_fault for a write to a shared one."""
    flags = _vma_get(k, vma, "vm_flags")
    pgoff = rmap.linear_page_index(k, vma, addr)
    fault = _vm_ops_fault(k, vma)
    if write and not flags & mmap.VM_SHARED:
        # do_cow_fault(): anon_vma_prepare, the CoW folio, __do_fault, copy, finish_fault
        rmap.anon_vma_prepare(k, vma)
        cow = folio_prealloc(k, vma, addr, False)
        page = fault(k, vma, pgoff, False)
        major = bool(k.__dict__.get("last_fault_major", False))
        copy_page(k, cow, page)  # copy_mc_user_highpage
        rmap.folio_set_flag(k, cow, PG_uptodate)
        finish_fault(k, mm, vma, addr, write, pmd, cow, is_cow=True)
        rmap.folio_put(k, page)  # put_page(vmf->page): filemap_fault's reference
        f = _log(k, mm, task, addr, cow, "cow-copy")
        f.major = major  # __do_fault's VM_FAULT_MAJOR
        return f
    if not write:
        # do_read_fault(): should_fault_around() (fault_around_bytes 64 KiB > 1 page)
        page = do_fault_around(k, mm, vma, addr, pmd)
        if page is not None:
            return _log(k, mm, task, addr, page, "file")
    page = fault(k, vma, pgoff, write)
    major = bool(k.__dict__.get("last_fault_major", False))
    finish_fault(k, mm, vma, addr, write, pmd, page, is_cow=False)
    if write:
        fault_dirty_shared_page(k, vma, page)  # do_shared_fault()
        f = _log(k, mm, task, addr, page, "file-shared")
    else:
        f = _log(k, mm, task, addr, page, "file")
    f.major = major
    return f


FAULT_AROUND_PAGES = 65536 >> PAGE_SHIFT  # mm/memory.c fault_around_pages (fault_around_bytes 64 KiB)
_PF_ALL = _T.enum("pageflags")


def do_fault_around(k: Kernel, mm: int, vma: int, addr: int, pmd: int) -> int | None:
    """mm/memory.c do_fault_around() -> filemap_map_pages(): map the page-cache folios of
    the fault_around_pages window (aligned, clamped to the VMA and the PTE table) that are
    uptodate, unlocked and not PG_readahead, into none PTEs (set_pte_range: young on x86,
    read-only here), a reference and MM_FILEPAGES each, NR_FILE_MAPPED via the rmap;
    file->f_ra.mmap_miss drops by the non-workingset folios seen.  Returns the pfn mapped
    at ``addr`` (VM_FAULT_NOPAGE) or None when the fault must read the page."""
    fm = _optional("filemap")
    if fm is None or not hasattr(fm, "_lookup"):
        return None
    # vmf->prealloc_pte = pte_alloc_one() when the PMD is none: the table page is allocated
    # before any page the fault reads (installed here at once; the kernel installs it in
    # filemap_map_pmd or finish_fault -- the same page, the same accounting)
    pte_alloc(k, mm, pmd)
    km = k.kmem
    file = _vma_get(k, vma, "vm_file")
    mapping = km.get(file, "file", "f_mapping")
    vm_pgoff = _vma_get(k, vma, "vm_pgoff")
    pgoff = rmap.linear_page_index(k, vma, addr)
    pte_off = (addr >> PAGE_SHIFT) & 511
    vma_off = pgoff - vm_pgoff
    from_pte = max(pte_off & ~(FAULT_AROUND_PAGES - 1), pte_off - min(pte_off, vma_off))
    to_pte = (
        min(
            from_pte + FAULT_AROUND_PAGES,
            PTRS_PER_TABLE,
            pte_off + ((_vma_get(k, vma, "vm_end") - _vma_get(k, vma, "vm_start")) >> PAGE_SHIFT) - vma_off,
        )
        - 1
    )
    start_pgoff = pgoff + from_pte - pte_off
    end_pgoff = pgoff + to_pte - pte_off
    max_idx = -(-km.get(km.get(mapping, "address_space", "host"), "inode", "i_size") // PAGE_SIZE)
    found = []
    for idx in range(start_pgoff, min(end_pgoff + 1, max_idx)):
        pfn = fm._lookup(k, mapping, idx)
        if pfn is None:
            continue
        flags = _get_flags(k, pfn)
        if flags >> _PF_ALL["PG_locked"] & 1 or not flags >> PG_uptodate & 1 or flags >> _PF_ALL["PG_reclaim"] & 1:
            continue  # next_uptodate_folio(): locked, !uptodate or PG_readahead
        found.append((idx, pfn, flags))
    if not found:
        return None
    table = pte_alloc(k, mm, pmd)  # filemap_map_pmd -> pmd_install(prealloc_pte)
    prot = _vma_get(k, vma, "vm_page_prot")
    base = addr & ~(PMD_SIZE - 1)
    hit = None
    rss = mmap_miss = 0
    member = "MM_FILEPAGES"
    for idx, pfn, flags in found:
        if not flags >> _PF_ALL["PG_workingset"] & 1:
            mmap_miss += 1
        a = base | ((pte_off + idx - pgoff) << PAGE_SHIFT)
        slot = table + 8 * ((a >> PAGE_SHIFT) & 511)
        if _read(k, slot):
            continue
        if a == addr & ~(PAGE_SIZE - 1):
            hit = pfn
        e = pfn_pte(pfn, prot)  # set_pte_range(): mk_pte, pte_sw_mkyoung (a no-op)
        if pte_write(e) and flags >> PG_dirty & 1:
            e |= _PAGE_DIRTY
        rmap.folio_add_file_rmap_ptes(k, pfn, 1, vma)
        _write(k, slot, e)
        rmap.folio_get(k, pfn)
        member = mm_counter_file(k, pfn)
        rss += 1
    add_mm_counter(k, mm, member, rss)
    saved = km.get(file, "file", "f_ra.mmap_miss")
    km.set(file, "file", "f_ra.mmap_miss", 0 if mmap_miss >= saved else saved - mmap_miss)
    return hit


def _get_flags(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = pa.page_words(k, pfn)
    return int(mv64[w + pa.W_FLAGS])


def finish_fault(k: Kernel, mm: int, vma: int, addr: int, write: bool, pmd: int, pfn: int, is_cow: bool) -> None:
    """mm/memory.c finish_fault() for one page: pte_alloc, set_pte_range (mk_pte,
    pte_sw_mkyoung, maybe_mkwrite(pte_mkdirty) for writes, pte_mkdirty for a writable
    entry of a dirty folio; folio_add_new_anon_rmap + folio_add_lru_vma for a CoW page,
    else folio_add_file_rmap_ptes), then MM_ANONPAGES or mm_counter_file.  The reference
    the fault took becomes the mapping's."""
    table = pte_alloc(k, mm, pmd)
    pte = table + 8 * ((addr >> PAGE_SHIFT) & 511)
    flags = _vma_get(k, vma, "vm_flags")
    e = pfn_pte(pfn, _vma_get(k, vma, "vm_page_prot"))
    if write:
        e = maybe_mkwrite(e | _PAGE_DIRTY, flags)
    elif pte_write(e) and rmap.folio_test(k, rmap.page_folio(k, pfn), PG_dirty):
        e |= _PAGE_DIRTY
    if write and not flags & mmap.VM_SHARED:
        rmap.folio_add_new_anon_rmap(k, pfn, vma, addr & ~(PAGE_SIZE - 1))
        _lru_add_vma(k, pfn, vma)
        member = "MM_ANONPAGES"
    else:
        rmap.folio_add_file_rmap_ptes(k, pfn, 1, vma)
        member = mm_counter_file(k, pfn)
    _write(k, pte, e)
    add_mm_counter(k, mm, member, 1)


def copy_page(k: Kernel, dst_pfn: int, src_pfn: int) -> None:
    """copy_user_highpage(): the 4 KiB contents (a zero source is a fill, which leaves
    never-written simulated memory unbacked)."""
    data = k.mem.read(src_pfn << PAGE_SHIFT, PAGE_SIZE)
    if data.count(0) == PAGE_SIZE:
        k.mem.fill(dst_pfn << PAGE_SHIFT, PAGE_SIZE, 0)
    else:
        k.mem.write(dst_pfn << PAGE_SHIFT, data)


# -- write-protect faults (do_wp_page) ----------------------------------------------------------
def wp_can_reuse_anon_folio(k: Kernel, f: int, vma: int) -> bool:
    """mm/memory.c wp_can_reuse_anon_folio() (and __wp_can_reuse_large_anon_folio): only
    our mapping holds the folio (refcount 1; no swap cache, no KSM), then
    folio_move_anon_rmap."""
    if rmap.folio_test_large(k, f):
        lm = rmap.folio_mapcount(k, f)
        if lm <= 1 or rmap.folio_maybe_mapped_shared(k, f):
            return False
        return rmap.folio_ref_count(k, f) == lm
    if rmap.folio_ref_count(k, f) > 3:
        return False
    if rmap.folio_ref_count(k, f) != 1:
        return False
    rmap.folio_move_anon_rmap(k, f, vma)
    return True


def wp_page_reuse(k: Kernel, vma: int, pte: int, orig: int) -> None:
    """mm/memory.c wp_page_reuse(): pte_mkyoung + maybe_mkwrite(pte_mkdirty); PGREUSE."""
    _write(k, pte, maybe_mkwrite(orig | _PAGE_ACCESSED | _PAGE_DIRTY, _vma_get(k, vma, "vm_flags")))
    k.vm_events[k.current_cpu][PGREUSE] += 1


def do_wp_page(k: Kernel, mm: int, vma: int, addr: int, task: int | None, pte: int, orig: int) -> Fault:
    """mm/memory.c do_wp_page(): a write to a present read-only PTE.  Shared mappings:
    wp_page_shared (reuse + dirty).  Private: reuse an exclusive anonymous folio
    (PageAnonExclusive or wp_can_reuse_anon_folio), else wp_page_copy."""
    flags = _vma_get(k, vma, "vm_flags")
    page = vm_normal_page(k, vma, addr, orig)
    if flags & (mmap.VM_SHARED | mmap.VM_MAYSHARE):
        if page is None:
            wp_page_reuse(k, vma, pte, orig)  # wp_pfn_shared
            return _log(k, mm, task, addr, pte_pfn(orig), "file-shared")
        rmap.folio_get(k, page)
        wp_page_reuse(k, vma, pte, orig)  # do_page_mkwrite + finish_mkwrite_fault
        fault_dirty_shared_page(k, vma, page)
        rmap.folio_put(k, page)
        return _log(k, mm, task, addr, page, "file-shared")
    if page is not None and rmap.folio_test_anon(k, page):
        f = rmap.page_folio(k, page)
        if rmap.folio_test(k, page, PG_anon_exclusive) or wp_can_reuse_anon_folio(k, f, vma):
            if not rmap.folio_test(k, page, PG_anon_exclusive):
                rmap.folio_set_flag(k, page, PG_anon_exclusive)
            wp_page_reuse(k, vma, pte, orig)
            return _log(k, mm, task, addr, page, "cow-reuse")
    if page is not None:
        rmap.folio_get(k, page)
    return wp_page_copy(k, mm, vma, addr, task, pte, orig, page)


def wp_page_copy(
    k: Kernel, mm: int, vma: int, addr: int, task: int | None, pte: int, orig: int, old: int | None
) -> Fault:
    """mm/memory.c wp_page_copy(): a new anonymous page (zeroed for the zero page, else a
    copy of the old one), rss moved from file to anon for a file page, the new PTE
    (folio_mk_pte + maybe_mkwrite(pte_mkdirty)), folio_add_new_anon_rmap +
    folio_add_lru_vma, the old page's rmap removed and both references dropped."""
    rmap.anon_vma_prepare(k, vma)
    zero = is_zero_pfn(k, pte_pfn(orig))
    new = folio_prealloc(k, vma, addr, zero)
    if not zero:
        copy_page(k, new, pte_pfn(orig))  # __wp_page_copy_user
    rmap.folio_set_flag(k, new, PG_uptodate)
    if old is not None:
        if not rmap.folio_test_anon(k, old):
            add_mm_counter(k, mm, mm_counter_file(k, old), -1)
            add_mm_counter(k, mm, "MM_ANONPAGES", 1)
    else:
        add_mm_counter(k, mm, "MM_ANONPAGES", 1)
    flags = _vma_get(k, vma, "vm_flags")
    e = maybe_mkwrite(pfn_pte(new, _vma_get(k, vma, "vm_page_prot")) | _PAGE_DIRTY, flags)
    _write(k, pte, 0)  # ptep_clear_flush
    rmap.folio_add_new_anon_rmap(k, new, vma, addr & ~(PAGE_SIZE - 1))
    _lru_add_vma(k, new, vma)
    _write(k, pte, e)
    if old is not None:
        rmap.folio_remove_rmap_ptes(k, old, 1, vma)
        rmap.folio_put(k, old)  # the reference do_wp_page took
        rmap.folio_put(k, old)  # the old PTE's reference
    return _log(k, mm, task, addr, new, "anon" if zero else "cow-copy")


# -- fork: copy_page_range -------------------------------------------------------------------------
def is_cow_mapping(flags: int) -> bool:
    return flags & (mmap.VM_SHARED | mmap.VM_MAYWRITE) == mmap.VM_MAYWRITE


def vma_needs_copy(k: Kernel, dst_vma: int, src_vma: int) -> bool:
    """mm/memory.c vma_needs_copy(): PFN/mixed maps and VMAs with an anon_vma; everything
    else is refilled by faults in the child (no uffd-wp here)."""
    if _vma_get(k, src_vma, "vm_flags") & (mmap.VM_PFNMAP | mmap.VM_MIXEDMAP):
        return True
    return bool(_vma_get(k, src_vma, "anon_vma"))


def _table_entries(k: Kernel, table_kva: int) -> np.ndarray:
    return np.frombuffer(k.mem.read(table_kva - k.page_offset_base, PAGE_SIZE), dtype=np.uint64)


def copy_page_range(k: Kernel, dst_vma: int, src_vma: int) -> int:
    """mm/memory.c copy_page_range() for fork: when vma_needs_copy, walk the parent's
    tables over the VMA; PMD leaves go to huge_memory.copy_huge_pmd, PTE tables to
    copy_pte_range (copy_present_ptes: folio_try_dup_anon_rmap_ptes or
    folio_dup_file_rmap_ptes, a reference per PTE, __copy_present_ptes write-protecting
    both sides of a CoW mapping, pte_mkclean for shared, pte_mkold in the child); the
    child's rss (add_mm_rss_vec)."""
    if not vma_needs_copy(k, dst_vma, src_vma):
        return 0
    flags = _vma_get(k, src_vma, "vm_flags")
    if flags & VM_HUGETLB:
        hugetlb = _optional("hugetlb")
        if hugetlb is None or not hasattr(hugetlb, "copy_hugetlb_page_range"):
            raise NotImplementedError("fork of a hugetlb VMA needs hugetlb.copy_hugetlb_page_range")
        return hugetlb.copy_hugetlb_page_range(k, dst_vma, src_vma) or 0
    src_mm = _vma_get(k, src_vma, "vm_mm")
    dst_mm = _vma_get(k, dst_vma, "vm_mm")
    start, end = _vma_get(k, src_vma, "vm_start"), _vma_get(k, src_vma, "vm_end")
    cow = is_cow_mapping(flags)
    rss = dict.fromkeys(MM_COUNTERS, 0)
    addr = start
    while addr < end:
        nxt = min((addr + PMD_SIZE) & ~(PMD_SIZE - 1), end)
        spmd = _pmd_slot(k, src_mm, addr)
        if spmd is None:
            addr = nxt
            continue
        e = _read(k, spmd)
        if not pmd_present(e):
            addr = nxt
            continue
        if e & _PAGE_PSE:
            huge = _optional("huge_memory")
            if huge is None or not hasattr(huge, "copy_huge_pmd"):
                raise NotImplementedError("fork of a PMD-mapped THP needs huge_memory.copy_huge_pmd")
            pmd_alloc(k, dst_mm, addr)
            huge.copy_huge_pmd(k, dst_vma, src_vma, addr)
            addr = nxt
            continue
        dpmd = pmd_alloc(k, dst_mm, addr)
        dtable = pte_alloc(k, dst_mm, dpmd)
        stable = _table_of(k, e)
        sents = _table_view(k, stable)
        dents = _table_view(k, dtable)
        i0 = (addr >> PAGE_SHIFT) & 511
        i1 = i0 + ((nxt - addr) >> PAGE_SHIFT)
        idx = np.flatnonzero(sents[i0:i1]) + i0
        if not len(idx):
            addr = nxt
            continue
        vals = sents[idx]
        base = addr & ~(PMD_SIZE - 1)
        swp = (vals & np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)) == 0
        if swp.any():
            # copy_nonpresent_pte(): a swap entry gains a reference (swap_duplicate), the child
            # counts it in MM_SWAPENTS, and neither side keeps it exclusive in a CoW mapping
            from mmintro.kernel import swapfile

            for j in np.flatnonzero(swp):
                e = int(vals[j])
                swapfile.swap_duplicate(k, pte_to_swp_entry(e))
                rss["MM_SWAPENTS"] += 1
                if cow and e & _PAGE_SWP_EXCLUSIVE:
                    e &= ~_PAGE_SWP_EXCLUSIVE
                    sents[idx[j]] = e
                dents[idx[j]] = e
            keep = ~swp
            idx, vals = idx[keep], vals[keep]
            if not len(idx):
                for member, n in rss.items():
                    add_mm_counter(k, dst_mm, member, n)
                rss = dict.fromkeys(MM_COUNTERS, 0)
                addr = nxt
                continue
        # copy_present_ptes(): references and rmap for the normal pages -- small folios a
        # table at a time (folio_get + folio_try_dup_anon_rmap_pte / folio_dup_file_rmap_pte),
        # large folios one PTE at a time
        for i, _pfn, _is_anon, _swapbacked in _dup_small_folios(k, vals, idx, flags, rss):
            a = base | (int(i) << PAGE_SHIFT)
            page = vm_normal_page(k, src_vma, a, int(sents[i]))
            if page is None:
                continue
            rmap.folio_get(k, page)
            if rmap.folio_test_anon(k, page):
                rmap.folio_try_dup_anon_rmap_ptes(k, page, 1, dst_vma, src_vma)
                rss["MM_ANONPAGES"] += 1
            else:
                rmap.folio_dup_file_rmap_ptes(k, page, 1, dst_vma)
                rss[mm_counter_file(k, page)] += 1
        # __copy_present_ptes(): write-protect both sides of a CoW mapping, pte_mkclean for a
        # shared one, pte_mkold in the child
        if cow:
            sents[idx] = vals & np.uint64(~_PAGE_RW & _M64)  # wrprotect_ptes
            vals = vals & np.uint64(~_PAGE_RW & _M64)
        if flags & mmap.VM_SHARED:
            vals = vals & np.uint64(~_PAGE_DIRTY & _M64)
        dents[idx] = vals & np.uint64(~_PAGE_ACCESSED & _M64)
        # add_mm_rss_vec() at the end of each table (copy_pte_range / zap_pte_range)
        for member, n in rss.items():
            add_mm_counter(k, dst_mm, member, n)
        rss = dict.fromkeys(MM_COUNTERS, 0)
        addr = nxt
    return 0


def _table_view(k: Kernel, table_kva: int) -> np.ndarray:
    """The 512 entries of a table page as a writable uint64 view of simulated memory."""
    return k.mem.view(table_kva - k.page_offset_base, PAGE_SIZE).view(np.uint64)


def _page_groups(k: Kernel, pfns: np.ndarray):
    """(positions, u64 words, u32 words, word index array) per memory section of ``pfns``."""
    from mmintro.kernel.sparse import PFN_SECTION_SHIFT, memmap_array

    secs = pfns >> np.uint64(PFN_SECTION_SHIFT)
    for sec in np.unique(secs):
        pos = np.flatnonzero(secs == sec)
        memmap_array(k, int(sec))  # vectorised writes need the section as an array
        _mv64, _mv32, base, arr = k.memmap_words[int(sec)]
        cache = k.__dict__.setdefault("_memmap_np", {})
        views = cache.get(id(arr))
        if views is None:
            views = cache[id(arr)] = (arr, arr.view(np.uint64), arr.view(np.uint32))
        yield pos, views[1], views[2], base + pfns[pos].astype(np.int64) * 8


_EXCL = np.uint64(1 << PG_anon_exclusive)


def _dup_small_folios(k: Kernel, vals: np.ndarray, idx: np.ndarray, vm_flags: int, rss: dict):
    """copy_present_ptes() for the PTEs of one table that map small folios, vectorised:
    _refcount + 1 (folio_get), _mapcount + 1, PG_anon_exclusive cleared for anonymous ones
    (folio_try_dup_anon_rmap_pte; no page is pinned here), rss counted.  Yields
    (index, pfn, anon, swapbacked) for the entries left to the per-PTE path: large folios."""
    pfns = pte_pfns(vals)
    normal = ((vals & np.uint64(_PAGE_SPECIAL)) == 0) & (pfns != np.uint64(k.zero_pfn))
    if vm_flags & (mmap.VM_PFNMAP | mmap.VM_MIXEDMAP):
        normal[:] = False
    npos = np.flatnonzero(normal)
    if not len(npos):
        return
    for pos, mv64, mv32, w in _page_groups(k, pfns[npos]):
        sel = npos[pos]
        flags = mv64[w + pa.W_FLAGS]
        small = ((flags >> np.uint64(PG_head)) & np.uint64(1)) == 0
        small &= (mv64[w + pa.W_COMPOUND_HEAD] & np.uint64(1)) == 0
        for j in np.flatnonzero(~small):
            yield int(idx[sel[j]]), int(pfns[sel[j]]), None, None
        ws = w[small]
        if not len(ws):
            continue
        anon = (mv64[ws + pa.W_MAPPING] & np.uint64(1)) == 1
        mv32[2 * ws + pa.D_REFCOUNT] += np.uint32(1)
        mv32[2 * ws + _D_MAPCOUNT] += np.uint32(1)
        wa = ws[anon]
        mv64[wa + pa.W_FLAGS] &= ~_EXCL
        rss["MM_ANONPAGES"] += int(anon.sum())
        fl = mv64[ws[~anon] + pa.W_FLAGS]
        shmem = int((((fl >> np.uint64(PG_swapbacked)) & np.uint64(1)) == 1).sum())
        rss["MM_SHMEMPAGES"] += shmem
        rss["MM_FILEPAGES"] += int((~anon).sum()) - shmem


# -- unmapping: zap_page_range and free_pgtables --------------------------------------------------
def zap_page_range(k: Kernel, vma: int, start: int, end: int, even_cows: bool = True) -> None:
    """mm/memory.c unmap_single_vma() -> zap_pte_range/zap_pmd_range over [start, end):
    hugetlb VMAs through hugetlb.unmap_hugepage_range, PMD leaves through
    huge_memory.zap_huge_pmd (a partial range splits the PMD first), present PTEs cleared
    with zap_present_folio_ptes (file folios: PG_dirty from a dirty PTE, folio_mark_accessed
    from a young one), folio_remove_rmap_ptes, the PTE's reference put, rss down."""
    flags = _vma_get(k, vma, "vm_flags")
    mm = _vma_get(k, vma, "vm_mm")
    start = max(start, _vma_get(k, vma, "vm_start"))
    end = min(end, _vma_get(k, vma, "vm_end"))
    if start >= end:
        return
    if flags & VM_HUGETLB:
        hugetlb = _optional("hugetlb")
        if hugetlb is not None and hasattr(hugetlb, "unmap_hugepage_range"):
            hugetlb.unmap_hugepage_range(k, vma, start, end)
            return
        raise NotImplementedError("unmapping a hugetlb VMA needs hugetlb.unmap_hugepage_range")
    rss = dict.fromkeys(MM_COUNTERS, 0)
    swap = _optional("swap")
    addr = start
    while addr < end:
        nxt = min((addr + PMD_SIZE) & ~(PMD_SIZE - 1), end)
        pmd = _pmd_slot(k, mm, addr)
        if pmd is None:
            addr = nxt
            continue
        e = _read(k, pmd)
        if not pmd_present(e):
            addr = nxt
            continue
        if e & _PAGE_PSE:
            huge = _optional("huge_memory")
            if nxt - addr == PMD_SIZE:
                if huge is None or not hasattr(huge, "zap_huge_pmd"):
                    raise NotImplementedError("unmapping a PMD leaf needs huge_memory.zap_huge_pmd")
                huge.zap_huge_pmd(k, vma, addr)
                addr = nxt
                continue
            if huge is None or not hasattr(huge, "split_huge_pmd"):
                raise NotImplementedError("a partial unmap of a PMD leaf needs huge_memory.split_huge_pmd")
            huge.split_huge_pmd(k, vma, addr)
            e = _read(k, pmd)
        table = _table_of(k, e)
        view = _table_view(k, table)
        i0 = (addr >> PAGE_SHIFT) & 511
        i1 = i0 + ((nxt - addr) >> PAGE_SHIFT)
        idx = np.flatnonzero(view[i0:i1]) + i0
        vals = view[idx].copy()
        if even_cows:
            view[idx] = 0  # ptep_get_and_clear_full
            todo = _zap_shared_small_anon(k, vals, rss)
        else:
            todo = range(len(idx))
        for j in todo:
            i, pte = int(idx[j]), int(vals[j])
            a = (addr & ~(PMD_SIZE - 1)) | (i << PAGE_SHIFT)
            if not pte_present(pte):
                if even_cows and is_swap_pte(pte):
                    # zap_nonpresent_ptes(): the slot loses a reference (and its swap-cache
                    # folio, when nothing else maps it: free_swap_and_cache_nr)
                    from mmintro.kernel import swapfile

                    swapfile.free_swap_and_cache(k, pte_to_swp_entry(pte))
                    rss["MM_SWAPENTS"] -= 1
                continue
            page = vm_normal_page(k, vma, a, pte)
            if not even_cows:
                if page is not None and rmap.folio_test_anon(k, page):
                    continue  # should_zap_folio(): only non-anonymous folios
                view[i] = 0
            if page is None:
                continue
            if not rmap.folio_test_anon(k, page):
                if pte & _PAGE_DIRTY:
                    _mark_dirty(k, page)
                if pte & _PAGE_ACCESSED and swap is not None:
                    swap.folio_mark_accessed(k, rmap.page_folio(k, page))
                rss[mm_counter(k, page)] -= 1
            else:
                rss["MM_ANONPAGES"] -= 1
            rmap.folio_remove_rmap_ptes(k, page, 1, vma)
            if flags_of(k, page) >> _PG_SWAPCACHE & 1:
                # free_pages_and_swap_cache() -> free_swap_cache(): an unmapped swap-cache
                # folio gives its slot back when no swap PTE needs it
                from mmintro.kernel import swap_state, swapfile

                f = rmap.page_folio(k, page)
                if swap_state.folio_test_swapcache(k, f) and rmap.folio_mapcount(k, f) <= 0:
                    swapfile.folio_free_swap(k, f)
            rmap.folio_put(k, page)  # tlb_flush_mmu -> free_pages_and_swap_cache
        # add_mm_rss_vec() at the end of each table (copy_pte_range / zap_pte_range)
        for member, n in rss.items():
            add_mm_counter(k, mm, member, n)
        rss = dict.fromkeys(MM_COUNTERS, 0)
        addr = nxt


_M64 = (1 << 64) - 1


def unmap_mapping_pages(k: Kernel, mapping: int, start: int, nr: int, even_cows: bool = False) -> None:
    """mm/memory.c unmap_mapping_pages() -> unmap_mapping_range_tree(): for every VMA on
    mapping->i_mmap overlapping pages [start, start + nr), zap the overlapping addresses
    (truncate / hole punch; private CoW copies stay unless ``even_cows``)."""
    last = start + nr - 1
    km = k.kmem
    for vma in rmap.vma_interval_tree_vmas(k, mapping):
        vpg = km.get(vma, "vm_area_struct", "vm_pgoff")
        vstart, vend = km.get(vma, "vm_area_struct", "vm_start"), km.get(vma, "vm_area_struct", "vm_end")
        vlast = vpg + ((vend - vstart) >> PAGE_SHIFT) - 1
        if vlast < start or vpg > last:
            continue
        zs = vstart + ((max(start, vpg) - vpg) << PAGE_SHIFT)
        ze = vstart + ((min(last, vlast) - vpg + 1) << PAGE_SHIFT)
        zap_page_range(k, vma, zs, ze, even_cows=even_cows)


def _zap_shared_small_anon(k: Kernel, vals: np.ndarray, rss: dict) -> list[int]:
    """zap_present_folio_ptes() for the small anonymous folios some other reference keeps
    (refcount > 1: a forked mm's pages), vectorised: _mapcount - 1 (NR_ANON_MAPPED down where
    it reaches -1), the PTE's reference dropped, rss down.  Returns the positions left to the
    per-PTE path (last references, file and large folios, special entries), in order."""
    n = len(vals)
    if not n:
        return []
    present = (vals & np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)) != 0
    pfns = pte_pfns(vals)
    cand = present & ((vals & np.uint64(_PAGE_SPECIAL)) == 0) & (pfns != np.uint64(k.zero_pfn))
    fast = np.zeros(n, dtype=bool)
    cpos = np.flatnonzero(cand)
    for pos, mv64, mv32, w in _page_groups(k, pfns[cpos]):
        sel = cpos[pos]
        flags = mv64[w + pa.W_FLAGS]
        ok = ((flags >> np.uint64(PG_head)) & np.uint64(1)) == 0
        ok &= (mv64[w + pa.W_COMPOUND_HEAD] & np.uint64(1)) == 0
        ok &= (mv64[w + pa.W_MAPPING] & np.uint64(1)) == 1
        ok &= ((flags >> np.uint64(_PG_SWAPCACHE)) & np.uint64(1)) == 0  # free_swap_cache() below
        ok &= mv32[2 * w + pa.D_REFCOUNT] > 1
        ws = w[ok]
        if not len(ws):
            continue
        fast[sel[ok]] = True
        mv32[2 * ws + pa.D_REFCOUNT] -= np.uint32(1)
        mv32[2 * ws + _D_MAPCOUNT] -= np.uint32(1)
        gone = mv32[2 * ws + _D_MAPCOUNT] == np.uint32(0xFFFFFFFF)
        if gone.any():
            nids = mv64[ws[gone] + pa.W_FLAGS] >> np.uint64(kc.NODES_PGOFF)
            for nid, c in zip(*np.unique(nids, return_counts=True)):
                k.mod_node_page_state(int(nid), "NR_ANON_MAPPED", -int(c))
        rss["MM_ANONPAGES"] -= len(ws)
    return [int(j) for j in np.flatnonzero(~fast)]


def free_pgtables(
    k: Kernel, mm: int, start: int, end: int, floor: int | None = None, ceiling: int | None = None
) -> None:
    """mm/memory.c free_pgd_range(tlb, start, end, floor, ceiling): free the PTE, PMD and
    PUD tables that map only [start, end) within [floor, ceiling) (ceiling 0 = the top),
    clearing their entries, pagetable_dtor_free and mm_dec_nr_ptes/pmds/puds.  Without
    floor/ceiling only tables wholly inside [start, end) go.  The callers (unmap_region,
    exit_mmap) unlink anon_vmas and i_mmap first."""
    floor = start if floor is None else floor
    ceiling = end if ceiling is None else ceiling
    addr = start & ~(PMD_SIZE - 1)
    if addr < floor:
        addr += PMD_SIZE
        if not addr:
            return
    if ceiling:
        ceiling &= ~(PMD_SIZE - 1)
        if not ceiling:
            return
    if (end - 1) & _M64 > (ceiling - 1) & _M64:
        end -= PMD_SIZE
    if addr > (end - 1) & _M64:
        return
    pgd = k.kmem.get(mm, "mm_struct", "pgd")
    a = addr
    while a != end:
        nxt = min((a + PGDIR_SIZE) & ~(PGDIR_SIZE - 1), end)
        slot = pgd + 8 * ((a >> PGDIR_SHIFT) & 511)
        if _read(k, slot) & _PAGE_PRESENT:
            _free_pud_range(k, mm, slot, a, nxt, floor, ceiling)
        a = nxt


def _clear_and_free(k: Kernel, mm: int, slot: int) -> None:
    e = _read(k, slot)
    _write(k, slot, 0)  # p?d_clear
    pagetable_free(k, pte_pfn(e))
    _mm_add_pgtables(k, mm, -TABLE_BYTES)  # mm_dec_nr_ptes / pmds / puds


def _upper_ok(start: int, end: int, mask: int, floor: int, ceiling: int) -> bool:
    """The floor/ceiling test closing free_pmd_range / free_pud_range / free_p4d_range."""
    start &= mask
    if start < floor:
        return False
    if ceiling:
        ceiling &= mask
        if not ceiling:
            return False
    return not (end - 1) & _M64 > (ceiling - 1) & _M64


def _free_pud_range(k: Kernel, mm: int, pgd_slot: int, addr: int, end: int, floor: int, ceiling: int) -> None:
    start = addr
    pud_table = _table_of(k, _read(k, pgd_slot))
    while addr != end:
        nxt = min((addr + PUD_SIZE) & ~(PUD_SIZE - 1), end)
        slot = pud_table + 8 * ((addr >> PUD_SHIFT) & 511)
        e = _read(k, slot)
        if e & _PAGE_PRESENT and not e & _PAGE_PSE:
            _free_pmd_range(k, mm, slot, addr, nxt, floor, ceiling)
        addr = nxt
    if _upper_ok(start, end, ~(PGDIR_SIZE - 1) & _M64, floor, ceiling):
        _clear_and_free(k, mm, pgd_slot)  # p4d_clear on the folded P4D = the PGD entry


def _free_pmd_range(k: Kernel, mm: int, pud_slot: int, addr: int, end: int, floor: int, ceiling: int) -> None:
    start = addr
    pmd_table = _table_of(k, _read(k, pud_slot))
    while addr != end:
        nxt = min((addr + PMD_SIZE) & ~(PMD_SIZE - 1), end)
        slot = pmd_table + 8 * ((addr >> PMD_SHIFT) & 511)
        e = _read(k, slot)
        if e & _PAGE_PRESENT and not e & _PAGE_PSE:
            _clear_and_free(k, mm, slot)  # free_pte_range
        addr = nxt
    if _upper_ok(start, end, ~(PUD_SIZE - 1) & _M64, floor, ceiling):
        _clear_and_free(k, mm, pud_slot)


# -- populating a range (mm/gup.c populate_vma_page_range -> faultin_page) --------------------------
def mm_populate(k: Kernel, mm: int, start: int, length: int, write: bool, task: int | None = None) -> int:
    """Fault in every page of [start, start+length) as MAP_POPULATE / mlock's
    populate_vma_page_range does (__get_user_pages: a fault where follow_page finds no
    suitable entry).  Anonymous private VMAs take a batched path that performs the same
    writes as one do_anonymous_page per page; other VMAs fault page by page.  Returns the
    number of faults."""
    start &= ~(PAGE_SIZE - 1)
    end = (start + length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    n = 0
    addr = start
    while addr < end:
        vma = mmap.find_vma(k, mm, addr)
        if not vma:
            raise SegmentationFault(f"{addr:#x}: no VMA (mm_populate: -EFAULT)")
        vend = min(end, _vma_get(k, vma, "vm_end"))
        n += _populate_vma(k, mm, vma, addr, vend, write, task)
        addr = vend
    return n


def _populate_vma(k: Kernel, mm: int, vma: int, start: int, end: int, write: bool, task: int | None) -> int:
    flags = _vma_get(k, vma, "vm_flags")
    if (
        vma_is_anonymous(k, vma)
        and not flags & (mmap.VM_SHARED | VM_HUGETLB | mmap.VM_LOCKED | mmap.VM_PFNMAP | mmap.VM_IO)
        and not _access_error(flags, write)
    ):
        huge = _optional("huge_memory")
        if huge is None or not huge.thp_vma_allowable(k, vma):
            return _populate_anon(k, mm, vma, start, end, write, task)
    n = 0
    addr = start
    while addr < end:
        nxt = min((addr + PMD_SIZE) & ~(PMD_SIZE - 1), end)
        n += _populate_pmd(k, mm, vma, addr, nxt, write, task)
        addr = nxt
    return n


def _populate_pmd(k: Kernel, mm: int, vma: int, start: int, end: int, write: bool, task: int | None) -> int:
    """One PMD's worth of pages: fault each page whose PTE would make GUP fault."""
    n = 0
    a = start
    while a < end:
        name, _slot, e = walk(k, mm, a)
        if name != "PTE" and e & _PAGE_PRESENT:  # a huge leaf covers the rest of the PMD
            if write and not e & _PAGE_RW:
                handle_mm_fault(k, mm, a, write, task)
                n += 1
            return n
        if not (e & _PAGE_PRESENT) or (write and not e & _PAGE_RW):
            handle_mm_fault(k, mm, a, write, task)
            n += 1
        a += PAGE_SIZE
    return n


_W_INDEX = _T.struct("folio").offsetof("index") // 8
_D_MAPCOUNT = _T.struct("page").offsetof("_mapcount") // 4
_ANON_NEW_FLAGS = (1 << PG_uptodate) | (1 << PG_swapbacked) | (1 << PG_anon_exclusive)


def _rss_add_ones(k: Kernel, mm: int, member: str, n: int) -> None:
    """n calls of add_mm_counter(mm, member, 1) on this CPU, folded arithmetically: the
    per-CPU delta reaching percpu_counter_batch moves into fbc->count."""
    if n <= 0:
        return
    fbc = _rss_fbc(k, mm, member)
    batch = percpu_counter_batch(k)
    p = k.pa(k.per_cpu_ptr(k.kmem.get(fbc, "percpu_counter", "counters"), k.current_cpu))
    d = int.from_bytes(k.mem.read(p, 4), "little", signed=True)
    while d < 0 and n:  # a negative delta: one add at a time until it is non-negative
        add_mm_counter(k, mm, member, 1)
        n -= 1
        d = int.from_bytes(k.mem.read(p, 4), "little", signed=True)
    if not n:
        return
    total = d + n
    folded = total - total % batch
    if folded:
        k.kmem.set(fbc, "percpu_counter", "count", k.kmem.get(fbc, "percpu_counter", "count") + folded)
    k.mem.write(p, (total % batch).to_bytes(4, "little", signed=True))


def _lru_add_inactive_anon(k: Kernel, pfns: list[int]) -> None:
    """swap.folio_add_lru() for each new anonymous folio in order, batched: each is linked at
    the head of its node's LRU_INACTIVE_ANON (list_add), PG_lru set, NR_INACTIVE_ANON and
    NR_ZONE_INACTIVE_ANON counted."""
    swap = _optional("swap")
    if swap is None or not pfns:
        return
    by_node: dict[int, list[int]] = {}
    for p in pfns:
        by_node.setdefault(_nid(k, p), []).append(p)
    km = k.kmem
    lru = swap.LRU_INACTIVE_ANON
    for nid, ps in by_node.items():
        head = swap.lru_list_head(k, nid, lru)
        first = km.get(head, "list_head", "next")
        addrs = [k.pfn_to_page(p) + swap.LRU_OFF for p in ps]
        for i, p in enumerate(ps):
            mv64, _mv32, w = pa.page_words(k, p)
            mv64[w + pa.W_LRU_NEXT] = addrs[i - 1] if i else first
            mv64[w + pa.W_LRU_PREV] = addrs[i + 1] if i + 1 < len(ps) else head
            mv64[w + pa.W_FLAGS] |= 1 << swap.PG_lru
        km.set(first, "list_head", "prev", addrs[0])
        km.set(head, "list_head", "next", addrs[-1])
        k.mod_node_page_state(nid, swap.NODE_LRU_ITEM[lru], len(ps))
        zones: dict[int, list] = {}
        for p in ps:
            z = pa.page_zone(k, p)
            zones.setdefault(id(z), [z, 0])[1] += 1
        for z, c in zones.values():
            k.mod_zone_page_state(z, swap.ZONE_LRU_ITEM[lru], c)


def _populate_anon(k: Kernel, mm: int, vma: int, start: int, end: int, write: bool, task: int | None) -> int:
    """The batched do_anonymous_page (and do_wp_page for zero-page PTEs on writes) over an
    anonymous private VMA without THP: the same PTEs, struct page words, rmap, LRU, rss,
    counters and fault records as one handle_mm_fault per page, written a PMD at a time."""
    state = _AnonBatch(k, mm, vma, write, task)
    n = 0
    addr = start
    while addr < end:
        nxt = min((addr + PMD_SIZE) & ~(PMD_SIZE - 1), end)
        pmd = pmd_alloc(k, mm, addr)
        if pmd_leaf(_read(k, pmd)):
            n += _populate_pmd(k, mm, vma, addr, nxt, write, task)
            addr = nxt
            continue
        table = pte_alloc(k, mm, pmd)
        ents = k.mem.view(table - k.page_offset_base, PAGE_SIZE).view(np.uint64)
        i0 = (addr >> PAGE_SHIFT) & 511
        i1 = i0 + ((nxt - addr) >> PAGE_SHIFT)
        base = addr & ~(PMD_SIZE - 1)
        cur = ents[i0:i1]
        # GUP faults in address order: runs of none PTEs are batched; a read-only (zero
        # page) PTE met by a write takes the real write fault where it is
        todo = (cur == 0) | ((cur & np.uint64(_PAGE_RW)) == 0) if write else (cur == 0)
        idx = np.flatnonzero(todo) + i0
        run: list[int] = []
        for i in idx:
            i = int(i)
            if ents[i] == 0:
                run.append(i)
                continue
            n += state.batch(ents, base, run)
            run = []
            handle_mm_fault(k, mm, base | (i << PAGE_SHIFT), True, task)
            n += 1
        n += state.batch(ents, base, run)
        addr = nxt
    return n


class _AnonBatch:
    """do_anonymous_page for a run of none PTEs of one table."""

    def __init__(self, k: Kernel, mm: int, vma: int, write: bool, task: int | None) -> None:
        km = k.kmem
        self.k, self.mm, self.vma, self.write = k, mm, vma, write
        self.flags = _vma_get(k, vma, "vm_flags")
        self.prot = _vma_get(k, vma, "vm_page_prot")
        self.vstart, self.pgoff = _vma_get(k, vma, "vm_start"), _vma_get(k, vma, "vm_pgoff")
        self.task = task = task or km.get(mm, "mm_struct", "owner")
        self.pid = km.get(task, "task_struct", "pid") if task else 0
        self.comm = k.mem.read(k.pa(km.addr(task, "task_struct", "comm")), 16).split(b"\0")[0].decode() if task else ""
        self.log = k.__dict__.setdefault("fault_log", [])
        self.alloc = None
        self.av = 0

    def batch(self, ents: np.ndarray, base: int, run: list[int]) -> int:
        from mmintro.kernel import mempolicy

        k, mm, vma = self.k, self.mm, self.vma
        nm = len(run)
        if not nm:
            return 0
        pid, comm, log = self.pid, self.comm, self.log
        missing = np.array(run, dtype=np.int64)
        if not self.write:
            ents[missing] = np.uint64(pfn_pte(k.zero_pfn, self.prot) | _PAGE_SPECIAL)
            log.extend(FaultRecord(pid, comm, base | (i << PAGE_SHIFT), k.zero_pfn, "anon-zero") for i in run)
        else:
            if self.alloc is None:
                rmap.anon_vma_prepare(k, vma)
                self.av = _vma_get(k, vma, "anon_vma")
                self.alloc = mempolicy.vma_folio_allocator(k, vma, G.GFP_HIGHUSER_MOVABLE | G.FLAGS["__GFP_ZERO"])
            alloc, av, vstart, pgoff = self.alloc, self.av, self.vstart, self.pgoff
            pfns = []
            for i in run:
                pfn = alloc(base | (i << PAGE_SHIFT))
                if pfn is None:
                    break
                pfns.append(pfn)
            got = len(pfns)
            per_node: dict[int, int] = {}
            for j, pfn in enumerate(pfns):
                mv64, mv32, w = pa.page_words(k, pfn)
                mv64[w + pa.W_FLAGS] |= _ANON_NEW_FLAGS
                mv64[w + pa.W_MAPPING] = av | rmap.FOLIO_MAPPING_ANON
                a = base | (run[j] << PAGE_SHIFT)
                mv64[w + _W_INDEX] = ((a - vstart) >> PAGE_SHIFT) + pgoff
                mv32[2 * w + _D_MAPCOUNT] = 0
                nid = int(mv64[w + pa.W_FLAGS]) >> kc.NODES_PGOFF
                per_node[nid] = per_node.get(nid, 0) + 1
            for nid, c in per_node.items():
                k.mod_node_page_state(nid, "NR_ANON_MAPPED", c)
            _rss_add_ones(k, mm, "MM_ANONPAGES", got)
            _lru_add_inactive_anon(k, pfns)
            extra = _PAGE_DIRTY | _PAGE_RW if self.flags & mmap.VM_WRITE else 0
            ents[missing[:got]] = (np.array(pfns, dtype=np.uint64) << np.uint64(PAGE_SHIFT)) | np.uint64(
                self.prot | extra
            )
            log.extend(FaultRecord(pid, comm, base | (run[j] << PAGE_SHIFT), pfns[j], "anon") for j in range(got))
            if got < nm:
                k.vm_events[k.current_cpu][PGFAULT] += got + 1
                _account(k, self.task, got + 1)
                raise MemoryError(f"{base | (run[got] << PAGE_SHIFT):#x}: no page (VM_FAULT_OOM)")
        k.vm_events[k.current_cpu][PGFAULT] += nm
        _account(k, self.task, nm)
        return nm


def _account(k: Kernel, task: int | None, n: int) -> None:
    if task:
        k.kmem.set(task, "task_struct", "min_flt", k.kmem.get(task, "task_struct", "min_flt") + n)


# -- consistency census (for tests and scenario checks) --------------------------------------------
def census(k: Kernel, mm: int) -> dict:
    """Every user mapping of ``mm`` from its page tables: {"pte": {addr: entry}, "pmd":
    {addr: entry}, "pud": {addr: entry}, "tables": number of PUD/PMD/PTE table pages}."""
    out: dict = {"pte": {}, "pmd": {}, "pud": {}, "tables": 0}
    pgd = k.kmem.get(mm, "mm_struct", "pgd")
    top = _table_view(k, pgd)
    for i in np.flatnonzero(top[:USER_PGD_PTRS] & np.uint64(_PAGE_PRESENT)):
        out["tables"] += 1
        pud = _table_view(k, _table_of(k, int(top[i])))
        for j in np.flatnonzero(pud):
            e = int(pud[j])
            a1 = (int(i) << PGDIR_SHIFT) | (int(j) << PUD_SHIFT)
            if e & _PAGE_PSE:
                out["pud"][a1] = e
                continue
            if not e & _PAGE_PRESENT:
                continue
            out["tables"] += 1
            pmd = _table_view(k, _table_of(k, e))
            for m in np.flatnonzero(pmd):
                e2 = int(pmd[m])
                a2 = a1 | (int(m) << PMD_SHIFT)
                if e2 & _PAGE_PSE:
                    out["pmd"][a2] = e2
                    continue
                if not e2 & _PAGE_PRESENT:
                    continue
                out["tables"] += 1
                pte = _table_view(k, _table_of(k, e2))
                for n in np.flatnonzero(pte):
                    out["pte"][a2 | (int(n) << PAGE_SHIFT)] = int(pte[n])
    return out


def check_mm(k: Kernel, mm: int) -> list[str]:
    """Independent checks of an mm against its page tables: pgtables_bytes = the table pages
    found (+ deposited THP tables are not visible: HUGE's pmd_huge_pte lists are counted from
    the PMD leaves), and the rss counters = the normal pages mapped, by kind (anonymous,
    file, shmem; a PMD leaf counts HPAGE_PMD_NR pages; hugetlb mappings are not in rss).
    Returns the disagreements (empty when consistent)."""
    c = census(k, mm)
    problems = []
    deposited = sum(1 for e in c["pmd"].values() if not _is_hugetlb_leaf(k, mm, e))
    want_bytes = (c["tables"] + deposited) * TABLE_BYTES
    got = k.kmem.get(mm, "mm_struct", "pgtables_bytes.counter")
    if got != want_bytes:
        problems.append(f"pgtables_bytes {got} != {want_bytes} ({c['tables']} tables + {deposited} deposited)")
    rss = dict.fromkeys(MM_COUNTERS, 0)
    for a, e in c["pte"].items():
        if not pte_present(e):
            continue
        vma = mmap.find_vma(k, mm, a)
        if not vma:
            problems.append(f"{a:#x}: a PTE outside every VMA")
            continue
        page = vm_normal_page(k, vma, a, e)
        if page is not None:
            rss[mm_counter(k, page)] += 1
    for a, e in c["pmd"].items():
        vma = mmap.find_vma(k, mm, a)
        if not vma:
            problems.append(f"{a:#x}: a PMD leaf outside every VMA")
            continue
        if _vma_get(k, vma, "vm_flags") & VM_HUGETLB:
            continue
        pfn = pmd_pfn(e)
        huge_zero = k.__dict__.get("huge_zero_pfn")
        if pfn == huge_zero:
            continue
        rss[mm_counter(k, pfn)] += PMD_SIZE >> PAGE_SHIFT
    for member, n in rss.items():
        have = get_mm_counter_sum(k, mm, member)
        if have != n:
            problems.append(f"{member} {have} != {n} mapped")
    return problems


def _is_hugetlb_leaf(k: Kernel, mm: int, e: int) -> bool:
    return rmap.folio_test_hugetlb(k, pmd_pfn(e))


def check_mapcounts(k: Kernel, mms: list[int]) -> list[str]:
    """Map counts against the page tables of every mm in ``mms`` (all the user address
    spaces): a page's _mapcount + 1 = the PTEs mapping it, a large folio's _entire_mapcount
    + 1 = its PMD mappings and _large_mapcount + 1 = all of them, and NR_ANON_MAPPED /
    NR_FILE_MAPPED = the pages mapped at least once (hugetlb, the zero pages and special
    mappings excluded, as the kernel counts them)."""
    ptes: dict[int, int] = {}
    pmds: dict[int, int] = {}
    for mm in mms:
        c = census(k, mm)
        for a, e in c["pte"].items():
            if not pte_present(e):
                continue
            vma = mmap.find_vma(k, mm, a)
            page = vm_normal_page(k, vma, a, e) if vma else None
            if page is not None:
                ptes[page] = ptes.get(page, 0) + 1
        for e in c["pmd"].values():
            pfn = pmd_pfn(e)
            if pfn == k.__dict__.get("huge_zero_pfn") or rmap.folio_test_hugetlb(k, pfn):
                continue
            pmds[pfn] = pmds.get(pfn, 0) + 1
    problems = []
    folios: dict[int, int] = {}
    for page in ptes:
        folios.setdefault(rmap.page_folio(k, page), 0)
    for head in pmds:
        folios.setdefault(head, 0)
    mapped = {"NR_ANON_MAPPED": [0] * k.config.nodes, "NR_FILE_MAPPED": [0] * k.config.nodes}
    for f in folios:
        nid = rmap.folio_nid(k, f)
        item = "NR_ANON_MAPPED" if rmap.folio_test_anon(k, f) else "NR_FILE_MAPPED"
        if not rmap.folio_test_large(k, f):
            if rmap.page_mapcount(k, f) != ptes.get(f, 0):
                problems.append(f"pfn {f:#x}: _mapcount + 1 = {rmap.page_mapcount(k, f)}, {ptes.get(f, 0)} PTEs")
            mapped[item][nid] += 1
            continue
        nr = rmap.folio_nr_pages(k, f)
        total = pmds.get(f, 0)
        n_mapped = 0
        for i in range(nr):
            n = ptes.get(f + i, 0)
            total += n
            n_mapped += n > 0
            if rmap.page_mapcount(k, f + i) != n:
                problems.append(
                    f"pfn {f + i:#x} (folio {f:#x}): _mapcount + 1 = {rmap.page_mapcount(k, f + i)}, {n} PTEs"
                )
        entire = rmap._get32(k, f, rmap.FD_ENTIRE) + 1
        if entire != pmds.get(f, 0):
            problems.append(f"folio {f:#x}: _entire_mapcount + 1 = {entire}, {pmds.get(f, 0)} PMDs")
        if rmap.folio_mapcount(k, f) != total:
            problems.append(f"folio {f:#x}: _large_mapcount + 1 = {rmap.folio_mapcount(k, f)}, {total} mappings")
        mapped[item][nid] += nr if pmds.get(f, 0) else n_mapped
    for item, per_node in mapped.items():
        for nid, n in enumerate(per_node):
            have = k.node_vm_stat[nid].get(item, 0)
            if have != n:
                problems.append(f"node {nid} {item} {have} != {n} pages mapped")
    return problems
