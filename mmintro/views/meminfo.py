"""/proc/meminfo (fs/proc/meminfo.c: meminfo_proc_show, 6.18), read from a snapshot.

:func:`meminfo` computes every line in the kernel's order, as :class:`MeminfoLine` rows;
:func:`render` prints them with the kernel's alignment (``show_val_kb``: the label padded to
16 columns, the value right-aligned in 8, then `` kB``); :func:`parse` reads /proc/meminfo
text (ours or a real kernel's) back.

Config-dependent lines are decided the way the kernel's #ifdefs would be, from the
snapshot's type data (an enumerator exists only when its config option is on).  Values the
snapshot does not model (a symbol it does not have) print 0, never a guess; a symbol that is
present but unreadable raises, as any other read fault does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from mmintro.reader.errors import ValidationError
from mmintro.reader.helpers.list import list_for_each_entry
from mmintro.reader.helpers.mmzone import for_each_zone
from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr
from mmintro.reader.helpers.swap import swap_usage_in_pages
from mmintro.reader.helpers.vmalloc import VMALLOC_END, VMALLOC_START
from mmintro.reader.program import Program
from mmintro.reader.x86_pgtable import LEVELS_4
from mmintro.views.vmstat import global_node_page_state_pages, global_zone_page_state

__all__ = [
    "MeminfoLine",
    "meminfo",
    "parse",
    "pcpu_nr_pages",
    "render",
    "si_mem_available",
    "vm_commit_limit",
    "vm_memory_committed",
    "vmalloc_nr_pages",
]

# include/linux/sizes.h
SZ_1K = 1 << 10
# fs/block_dev.c keeps one inode per block device on blockdev_superblock; nothing bounds the
# list but memory, so the walk stops (ValidationError) well beyond any real machine.
_MAX_BDEV_INODES = 1 << 20


class MeminfoLine(NamedTuple):
    """One /proc/meminfo line."""

    name: str
    """The label without its colon (``MemTotal``, ``HugePages_Total``)."""
    value: int
    """In kB, or a count for the ``HugePages_*`` lines."""
    unit: str
    """``"kB"`` or ``""`` (the ``HugePages_*`` counts)."""


# -- the kernel functions meminfo_proc_show calls ---------------------------------------------------
def _optional_long(prog: Program, name: str) -> int:
    """A global integer or ``atomic_long_t`` the snapshot may not model (then 0)."""
    if name not in prog.symbols.by_name:
        return 0
    obj = prog[name]
    try:
        return obj.counter.value_()
    except AttributeError:
        return obj.value_()


def _has_const(prog: Program, name: str) -> bool:
    try:
        prog.types.const(name)
    except LookupError:
        return False
    return True


def si_mem_available(free: int, totalreserve: int, file_lru: int, reclaimable: int, wmark_low: int) -> int:
    """mm/show_mem.c ``si_mem_available()`` (pages): free memory above the reserves, plus the
    part of the page cache and of reclaimable kernel memory that can go without thrashing
    (half of each, or all but the low watermarks' worth), never negative.

    :param free: global ``NR_FREE_PAGES``
    :param totalreserve: ``totalreserve_pages``
    :param file_lru: ``NR_ACTIVE_FILE + NR_INACTIVE_FILE``
    :param reclaimable: ``NR_SLAB_RECLAIMABLE_B`` (in pages) ``+ NR_KERNEL_MISC_RECLAIMABLE``
    :param wmark_low: Σ ``low_wmark_pages()`` over every zone, populated or not
    """
    available = free - totalreserve
    available += file_lru - min(file_lru // 2, wmark_low)
    available += reclaimable - min(reclaimable // 2, wmark_low)
    return max(0, available)


def _wmark_low(prog: Program) -> int:
    wm_low = prog.types.const("WMARK_LOW")
    # low_wmark_pages(z) = z->_watermark[WMARK_LOW] + z->watermark_boost, for_each_zone.
    return sum(z._watermark[wm_low].value_() + z.watermark_boost.value_() for z in for_each_zone(prog))


def hugetlb_total_pages(prog: Program) -> int:
    """``hugetlb_total_pages()``: base pages in all hugetlb pools."""
    return sum(h.nr_huge_pages.value_() << h.order.value_() for h in _hstates(prog))


def _hstates(prog: Program) -> list:
    """``for_each_hstate``: ``hstates[0 .. hugetlb_max_hstate)`` (none without CONFIG_HUGETLB_PAGE)."""
    if "hstates" not in prog.symbols.by_name:
        return []
    hs = prog["hstates"]
    return [hs[i] for i in range(min(prog["hugetlb_max_hstate"].value_(), len(hs)))]


def vm_commit_limit(prog: Program) -> int:
    """mm/util.c ``vm_commit_limit()`` (pages): overcommit_kbytes if set, else overcommit_ratio
    percent of the RAM not given to hugetlb, plus all swap."""
    kbytes = prog["sysctl_overcommit_kbytes"].value_()
    if kbytes:
        allowed = kbytes >> (prog.page_size.bit_length() - 1 - 10)
    else:
        totalram = prog["_totalram_pages"].counter.value_()
        allowed = (totalram - hugetlb_total_pages(prog)) * prog["sysctl_overcommit_ratio"].value_() // 100
    return allowed + prog["total_swap_pages"].value_()


def vm_memory_committed(prog: Program) -> int:
    """mm/util.c ``vm_memory_committed()``: ``percpu_counter_sum_positive(&vm_committed_as)``,
    the central count plus every online CPU's pending delta, floored at 0.  A counter whose
    per-CPU storage was never allocated (``counters`` NULL) has no deltas."""
    fbc = prog["vm_committed_as"]
    total = fbc.count.value_()
    if fbc.counters.value_():
        for cpu in for_each_online_cpu(prog):
            total += per_cpu_ptr(fbc.counters, cpu)[0].value_()
    return max(0, total)


def vmalloc_nr_pages(prog: Program) -> int:
    """mm/vmalloc.c ``vmalloc_nr_pages()``: ``atomic_long_read(&nr_vmalloc_pages)``, pages
    backing vmalloc areas; 0 when the snapshot has no such variable (a ``vmalloc_nr_pages``
    variable is accepted too, a function of that name is not data)."""
    for name in ("nr_vmalloc_pages", "vmalloc_nr_pages"):
        if name in prog.symbols.by_name:
            try:
                prog.types.var_type(name)
            except LookupError:
                continue
            return _optional_long(prog, name)
    return 0


def pcpu_nr_pages(prog: Program) -> int:
    """mm/percpu.c ``pcpu_nr_pages()``: populated pages of every chunk, on every unit."""
    return prog["pcpu_nr_populated"].value_() * prog["pcpu_nr_units"].value_()


def nr_blockdev_pages(prog: Program) -> int:
    """block/bdev.c ``nr_blockdev_pages()``: page-cache pages of all block devices (the
    Buffers line), Σ ``inode->i_mapping->nrpages`` over ``blockdev_superblock->s_inodes``."""
    if "blockdev_superblock" not in prog.symbols.by_name:
        return 0
    sb = prog["blockdev_superblock"]
    if not sb.value_():
        return 0
    return sum(
        inode.i_mapping.nrpages.value_()
        for inode in list_for_each_entry(
            "struct inode",
            sb.s_inodes.address_of_(),
            "i_sb_list",
            name="blockdev_superblock->s_inodes",
            limit=_MAX_BDEV_INODES,
        )
    )


def si_swapinfo(prog: Program) -> tuple[int, int]:
    """mm/swapfile.c ``si_swapinfo()``: (total, free) swap pages, counting the pages of a
    swap device being switched off (``SWP_USED`` without ``SWP_WRITEOK``) as both."""
    to_be_unused = 0
    nr = _optional_long(prog, "nr_swapfiles")
    if nr:
        used, writeok = prog.types.const("SWP_USED"), prog.types.const("SWP_WRITEOK")
        for i in range(nr):
            si = prog["swap_info"][i]
            flags = si.flags.value_()
            if flags & used and not flags & writeok:
                # 6.12+: atomic_long_t carrying SWAP_USAGE_OFFLIST_BIT (bit 30), masked off
                to_be_unused += swap_usage_in_pages(si)
    return (prog["total_swap_pages"].value_() + to_be_unused, prog["nr_swap_pages"].counter.value_() + to_be_unused)


def _default_hstate(prog: Program, hstates: list) -> tuple[int, int, int, int, int]:
    """(nr, free, resv, surplus, order) of ``default_hstate``.

    A booted x86 kernel always has one: hugetlb_init() registers HUGETLB_PAGE_ORDER (the PMD
    order) when no default_hugepagesz= was given.  A snapshot whose ``hugetlb_max_hstate``
    is still 0 has not modelled hugetlb_init, so that default hstate with empty pools is shown.
    """
    pmd_order = LEVELS_4[-2].shift - LEVELS_4[-1].shift
    if not hstates:
        return 0, 0, 0, 0, pmd_order
    if "default_hstate_idx" in prog.symbols.by_name:
        # default_hstate is hstates[default_hstate_idx] (include/linux/hugetlb.h), whatever
        # hugetlb_max_hstate says
        arr = prog["hstates"]
        idx = prog["default_hstate_idx"].value_()
        if idx >= len(arr):
            raise ValidationError(f"default_hstate_idx {idx} is beyond hstates[{len(arr)}]")
        h = arr[idx]
    else:  # the hstate hugetlb_init() would have made the default
        h = hstates[next((i for i, h in enumerate(hstates) if h.order.value_() == pmd_order), 0)]
    return (
        h.nr_huge_pages.value_(),
        h.free_huge_pages.value_(),
        h.resv_huge_pages.value_(),
        h.surplus_huge_pages.value_(),
        h.order.value_(),
    )


def _vmalloc_total_kb(prog: Program) -> int:
    """``VMALLOC_TOTAL >> 10`` = (VMALLOC_END - VMALLOC_START) >> 10."""
    return (VMALLOC_END(prog) - VMALLOC_START(prog)) >> 10


# -- the report -------------------------------------------------------------------------------
def meminfo(prog: Program) -> list[MeminfoLine]:
    """Every /proc/meminfo line, in meminfo_proc_show's order."""
    types = prog.types
    kb = prog.page_size // SZ_1K

    def node(item: str) -> int:
        return global_node_page_state_pages(prog, item)

    def zone(item: str) -> int:
        return global_zone_page_state(prog, item)

    lines: list[MeminfoLine] = []

    def pages(name: str, value: int) -> None:  # show_val_kb()
        lines.append(MeminfoLine(name, value * kb, "kB"))

    def kbytes(name: str, value: int) -> None:  # seq_printf("%8lu kB")
        lines.append(MeminfoLine(name, value, "kB"))

    totalram = prog["_totalram_pages"].counter.value_()
    freeram = zone("NR_FREE_PAGES")
    bufferram = nr_blockdev_pages(prog)
    swapcache = node("NR_SWAPCACHE")  # total_swapcache_pages()
    totalswap, freeswap = si_swapinfo(prog)
    lru = {
        e: node(e)
        for e in ("NR_INACTIVE_ANON", "NR_ACTIVE_ANON", "NR_INACTIVE_FILE", "NR_ACTIVE_FILE", "NR_UNEVICTABLE")
    }
    sreclaimable = node("NR_SLAB_RECLAIMABLE_B")  # kept in pages, see global_node_page_state_pages
    sunreclaim = node("NR_SLAB_UNRECLAIMABLE_B")
    misc_reclaimable = node("NR_KERNEL_MISC_RECLAIMABLE")
    available = si_mem_available(
        freeram,
        prog["totalreserve_pages"].value_(),
        lru["NR_ACTIVE_FILE"] + lru["NR_INACTIVE_FILE"],
        sreclaimable + misc_reclaimable,
        _wmark_low(prog),
    )

    pages("MemTotal", totalram)
    pages("MemFree", freeram)
    pages("MemAvailable", available)
    pages("Buffers", bufferram)
    pages("Cached", max(0, node("NR_FILE_PAGES") - swapcache - bufferram))
    pages("SwapCached", swapcache)
    pages("Active", lru["NR_ACTIVE_ANON"] + lru["NR_ACTIVE_FILE"])
    pages("Inactive", lru["NR_INACTIVE_ANON"] + lru["NR_INACTIVE_FILE"])
    pages("Active(anon)", lru["NR_ACTIVE_ANON"])
    pages("Inactive(anon)", lru["NR_INACTIVE_ANON"])
    pages("Active(file)", lru["NR_ACTIVE_FILE"])
    pages("Inactive(file)", lru["NR_INACTIVE_FILE"])
    pages("Unevictable", lru["NR_UNEVICTABLE"])
    pages("Mlocked", zone("NR_MLOCK"))
    pages("SwapTotal", totalswap)
    pages("SwapFree", freeswap)
    if _has_const(prog, "ZSWPIN"):  # CONFIG_ZSWAP
        # zswap_total_pages() sums the zsmalloc pools on zswap_pools; not modelled, so 0.
        pages("Zswap", 0)
        pages("Zswapped", _optional_long(prog, "zswap_stored_pages"))
    pages("Dirty", node("NR_FILE_DIRTY"))
    pages("Writeback", node("NR_WRITEBACK"))
    pages("AnonPages", node("NR_ANON_MAPPED"))
    pages("Mapped", node("NR_FILE_MAPPED"))
    pages("Shmem", node("NR_SHMEM"))
    pages("KReclaimable", sreclaimable + misc_reclaimable)
    pages("Slab", sreclaimable + sunreclaim)
    pages("SReclaimable", sreclaimable)
    pages("SUnreclaim", sunreclaim)
    kbytes("KernelStack", node("NR_KERNEL_STACK_KB"))
    if _has_const(prog, "NR_KERNEL_SCS_KB"):  # CONFIG_SHADOW_CALL_STACK
        kbytes("ShadowCallStack", node("NR_KERNEL_SCS_KB"))
    pages("PageTables", node("NR_PAGETABLE"))
    pages("SecPageTables", node("NR_SECONDARY_PAGETABLE"))
    pages("NFS_Unstable", 0)  # kept for userspace; the counters are gone
    pages("Bounce", 0)
    pages("WritebackTmp", 0)
    pages("CommitLimit", vm_commit_limit(prog))
    pages("Committed_AS", vm_memory_committed(prog))
    kbytes("VmallocTotal", _vmalloc_total_kb(prog))
    pages("VmallocUsed", vmalloc_nr_pages(prog))
    pages("VmallocChunk", 0)
    pages("Percpu", pcpu_nr_pages(prog))
    if _has_const(prog, "PG_hwpoison"):  # CONFIG_MEMORY_FAILURE: "HardwareCorrupted: %5lu kB"
        kbytes("HardwareCorrupted", _optional_long(prog, "num_poisoned_pages") * kb)
    if _has_const(prog, "THP_FAULT_ALLOC"):  # CONFIG_TRANSPARENT_HUGEPAGE
        pages("AnonHugePages", node("NR_ANON_THPS"))
        pages("ShmemHugePages", node("NR_SHMEM_THPS"))
        pages("ShmemPmdMapped", node("NR_SHMEM_PMDMAPPED"))
        pages("FileHugePages", node("NR_FILE_THPS"))
        pages("FilePmdMapped", node("NR_FILE_PMDMAPPED"))
    if _has_const(prog, "MIGRATE_CMA"):  # CONFIG_CMA
        pages("CmaTotal", _optional_long(prog, "totalcma_pages"))
        pages("CmaFree", zone("NR_FREE_CMA_PAGES"))
    if _has_const(prog, "NR_UNACCEPTED"):  # CONFIG_UNACCEPTED_MEMORY
        pages("Unaccepted", zone("NR_UNACCEPTED"))
    pages("Balloon", node("NR_BALLOON_PAGES"))
    if "hstates" in prog.symbols.by_name:  # CONFIG_HUGETLB_PAGE: hugetlb_report_meminfo()
        hstates = _hstates(prog)
        nr, free, resv, surplus, order = _default_hstate(prog, hstates)
        lines.append(MeminfoLine("HugePages_Total", nr, ""))
        lines.append(MeminfoLine("HugePages_Free", free, ""))
        lines.append(MeminfoLine("HugePages_Rsvd", resv, ""))
        lines.append(MeminfoLine("HugePages_Surp", surplus, ""))
        kbytes("Hugepagesize", (prog.page_size << order) // SZ_1K)
        kbytes(
            "Hugetlb", sum(h.nr_huge_pages.value_() * (prog.page_size << h.order.value_()) for h in hstates) // SZ_1K
        )
    # arch/x86/mm/pat/set_memory.c arch_report_meminfo(): direct-map pages per mapping size.
    # Each count is shifted by (mapping size shift - 10): << 2, << 11, << 20.  DirectMap1G is
    # printed when direct_gbpages is on (the reference has it; a snapshot without the symbol too).
    count = prog["direct_pages_count"].value_()
    pte, pmd, pud = LEVELS_4[-1].shift, LEVELS_4[-2].shift, LEVELS_4[-3].shift
    kbytes("DirectMap4k", count[types.const("PG_LEVEL_4K")] << (pte - 10))
    kbytes("DirectMap2M", count[types.const("PG_LEVEL_2M")] << (pmd - 10))
    if "direct_gbpages" not in prog.symbols.by_name or prog["direct_gbpages"].value_():
        kbytes("DirectMap1G", count[types.const("PG_LEVEL_1G")] << (pud - 10))
    from mmintro.reader.validate import check_meminfo, note

    note(prog, check_meminfo(prog, {ln.name: ln.value for ln in lines}))
    return lines


# The formats that are not show_val_kb's "%-16s%8lu kB" (fs/proc/meminfo.c, mm/hugetlb.c).
_SPECIAL: dict[str, Callable[[int], str]] = {
    "HugePages_Total": lambda v: f"HugePages_Total:   {v:5}",
    "HugePages_Free": lambda v: f"HugePages_Free:    {v:5}",
    "HugePages_Rsvd": lambda v: f"HugePages_Rsvd:    {v:5}",
    "HugePages_Surp": lambda v: f"HugePages_Surp:    {v:5}",
    "HardwareCorrupted": lambda v: f"HardwareCorrupted: {v:5} kB",
    "ShadowCallStack": lambda v: f"ShadowCallStack:{v:8} kB",
}


def render(lines: list[MeminfoLine]) -> str:
    """The /proc/meminfo text."""
    out = []
    for ln in lines:
        special = _SPECIAL.get(ln.name)
        if special is not None:
            out.append(special(ln.value))
        else:
            out.append(f"{ln.name + ':':<16}{ln.value:8}" + (f" {ln.unit}" if ln.unit else ""))
    return "".join(s + "\n" for s in out)


def parse(text: str) -> dict[str, int]:
    """/proc/meminfo text → ``{name: value}`` (kB, or counts for ``HugePages_*``), file order."""
    out: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not fields[0].isdigit() or fields[1:] not in ([], ["kB"]):
            raise ValueError(f"meminfo: line {n} is not 'Name: value [kB]': {line!r}")
        out[name] = int(fields[0])
    return out
