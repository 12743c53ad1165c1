"""Validation as findings: values read from a snapshot checked against what the kernel allows.

Like drgn's ``validate_*`` helpers and crash's "(verified)", but a violation where a report
can go on is a :class:`Finding` -- which value, where, and the kernel's rule it breaks --
and not an exception: the report prints what the bytes say, then the findings (the CLI
prints them after the report and exits 3).  A structure that cannot be walked at all
(a free list whose links do not point back) is a finding here too, where the walk is only a
check; the reports that *print* the walk raise :class:`ValidationError` instead (exit 1).

Each ``check_*`` function takes what one report reads and returns its findings; the views
call them on the values they print and :func:`note` the result on the program
(``prog.cache``), and :func:`mmintro.views.verify.verify` runs every check on a whole
snapshot (``mmintro verify``).  Every walk is bounded.  The rules are the kernel's (6.18):

* zones (mm/mm_init.c, mm/page_alloc.c): present <= spanned, 0 <= managed <= present, the zone
  inside its node's span, watermarks min <= low <= high <= promo, NR_FREE_PAGES <= managed;
* buddy free lists: ``free_area[order].nr_free`` is the number of blocks on
  ``free_area[order].free_list[*]`` (__add_to_free_list / __del_page_from_free_list change
  both together), every list link points back;
* per-CPU page lists: ``pcp->count`` is the pages on ``pcp->lists[*]``;
* mms: ``total_vm`` (and hiwater_vm) at most TASK_SIZE_MAX >> PAGE_SHIFT pages, data_vm +
  exec_vm + stack_vm <= total_vm (vm_stat_account counts each VMA in at most one of them),
  total_vm = the pages of the VMAs (walked), the RSS counters non-negative; in ``mmintro
  verify`` also the page tables scanned without loops or tables outside RAM;
* slab caches (mm/slub.c): nr_partial = the slabs on n->partial, nr_slabs and total_objects
  non-negative, nr_partial <= nr_slabs, total_objects <= nr_slabs * oo_objects(s->oo), each
  partial slab 0 <= inuse <= objects;
* vmap areas (mm/vmalloc.c): va_start < va_end inside VMALLOC_START..VMALLOC_END (or the
  module/kernel-image area above __START_KERNEL_map), vm->addr = va_start, vm->size <= the area;
* swap (mm/swapfile.c): inuse_pages = the used slots of swap_map, inuse_pages <= pages,
  nr_swap_pages = the free slots of the SWP_WRITEOK devices;
* the LRU lists (mm/swap.c, include/linux/mm_inline.h): the pages on
  ``pgdat->__lruvec.lists[lru]`` = NR_LRU_BASE + lru (update_lru_size), without memcg;
* /proc/meminfo: no page count above MemTotal, MemTotal = the zones' managed pages,
  SwapFree <= SwapTotal, HugePages_Free/Rsvd/Surp <= HugePages_Total.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = [
    "Finding",
    "TASK_SIZE_MAX",
    "check_free_area",
    "check_lru",
    "check_meminfo",
    "check_nr_free",
    "check_mm",
    "check_oom_score_adj",
    "check_pcp",
    "check_slab_cache",
    "check_swap",
    "check_vmap_area",
    "check_zone",
    "note",
    "noted",
]

_MASK64 = (1 << 64) - 1
_FINDINGS = "validate.findings"
_MAX_WALK = 1 << 26  # no list of a 256 GiB machine's pages is longer


class Finding(NamedTuple):
    """A value the kernel does not allow."""

    check: str
    """Which check: ``zone``, ``free_area``, ``pcp``, ``mm``, ``slab``, ``vmalloc``, ``swap``,
    ``lru``, ``meminfo``, ``page_tables``."""
    where: str
    """The object: ``node 0 zone Normal``, ``pid 1 (init)``, ``slab cache kmalloc-64``..."""
    message: str
    """What the snapshot holds."""
    rule: str
    """The kernel's rule it breaks (and where the kernel keeps it)."""

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.rule}]"

    def to_json(self) -> dict[str, str]:
        return self._asdict()


def note(prog: Program, findings: Iterable[Finding]) -> list[Finding]:
    """Remember ``findings`` on ``prog`` (each once) for the report to print; returns them."""
    findings = list(findings)
    got = prog.cache.setdefault(_FINDINGS, {})
    for f in findings:
        got.setdefault(f, None)
    return findings


def noted(prog: Program) -> list[Finding]:
    """The findings noted on ``prog`` so far, in the order they were found."""
    return list(prog.cache.get(_FINDINGS, {}))


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _atomic(obj: Object) -> int:
    try:
        return obj.counter.value_()
    except AttributeError:
        return obj.value_()


def _zone_where(zone: Object) -> str:
    try:
        name = zone.name.string_().decode("utf-8", "replace") if zone.name.value_() else "?"
    except (FaultError, ValidationError):
        name = "?"
    return f"node {zone.zone_pgdat.node_id.value_()} zone {name}"


# -- zones and their free lists ------------------------------------------------------------------
def check_zone(zone: Object) -> list[Finding]:
    """The page counts and watermarks of one ``struct zone *`` (populated or not)."""
    prog = zone.prog_
    where = _zone_where(zone)
    out = []
    spanned, present = zone.spanned_pages.value_(), zone.present_pages.value_()
    managed = _atomic(zone.managed_pages)
    start = zone.zone_start_pfn.value_()
    if present > spanned:
        out.append(
            Finding(
                "zone",
                where,
                f"present_pages {present} > spanned_pages {spanned}",
                "mm/mm_init.c calculate_node_totalpages(): present = spanned - holes",
            )
        )
    if managed < 0 or managed > present:
        out.append(
            Finding(
                "zone",
                where,
                f"managed_pages {managed} is not in 0..present_pages {present}",
                "mm/page_alloc.c: managed pages are present pages given to the buddy allocator "
                "(adjust_managed_page_count)",
            )
        )
    if spanned:
        pgdat = zone.zone_pgdat
        nstart, nspan = pgdat.node_start_pfn.value_(), pgdat.node_spanned_pages.value_()
        if start < nstart or start + spanned > nstart + nspan:
            out.append(
                Finding(
                    "zone",
                    where,
                    f"pfns {start:#x}-{start + spanned:#x} outside node pfns {nstart:#x}-{nstart + nspan:#x}",
                    "mm/mm_init.c free_area_init_core(): a zone lies inside its node's span",
                )
            )
    wm = prog.types.enum("zone_watermarks")
    marks = [zone._watermark[wm[w]].value_() for w in ("WMARK_MIN", "WMARK_LOW", "WMARK_HIGH", "WMARK_PROMO")]
    if marks != sorted(marks):
        out.append(
            Finding(
                "zone",
                where,
                "watermarks min/low/high/promo " + "/".join(map(str, marks)) + " are not increasing",
                "mm/page_alloc.c __setup_per_zone_wmarks(): low = min + tmp, high = low + tmp, promo = high + tmp",
            )
        )
    free = _atomic(zone.vm_stat[prog.types.const("NR_FREE_PAGES")])
    if present and managed >= 0 and free > managed:
        out.append(
            Finding(
                "zone",
                where,
                f"NR_FREE_PAGES {free} > managed_pages {managed}",
                "free pages are managed pages (mm/page_alloc.c __mod_zone_freepage_state)",
            )
        )
    return out


def _walk_list(prog: Program, head: int, cap: int) -> tuple[int, str | None]:
    """Entries on the ``list_head`` at ``head``, stopping at ``cap``: (count, None), or
    (count so far, what is broken)."""
    lh = prog.types.struct("list_head")
    off_next, off_prev = lh.offsetof("next"), lh.offsetof("prev")
    read = prog.read_u64
    seen: set[int] = set()
    pos, n = head, 0
    try:
        while n < cap:
            nxt = read(pos + off_next)
            back = read(nxt + off_prev)
            if back != pos:
                return n, f"next of {pos:#x} is {nxt:#x}, whose prev is {back:#x}"
            if nxt == head:
                return n, None
            if nxt in seen:
                return n, f"a cycle at {nxt:#x} that does not return to the head"
            seen.add(nxt)
            n += 1
            pos = nxt
    except FaultError as e:
        return n, f"a link points to unreadable memory ({e})"
    return n, None


def check_free_area(zone: Object) -> list[Finding]:
    """``free_area[order].nr_free`` against the blocks on its free lists (walked, bounded by
    what the zone's span can hold), and every free list's links."""
    prog = zone.prog_
    if not zone.present_pages.value_():
        return []
    where = _zone_where(zone)
    nr_types = prog.types.const("MIGRATE_TYPES")
    fa_t = prog.types.struct("free_area")
    off_list = fa_t.offsetof("free_list")
    lh_size = prog.types.sizeof("struct list_head")
    fa_addr = zone.free_area.address_
    nr_orders = len(zone.free_area)
    spanned = zone.spanned_pages.value_()
    out = []
    pages = 0
    for order in range(nr_orders):
        base = fa_addr + order * fa_t.size
        nr_free = zone.free_area[order].nr_free.value_()
        cap = min(_MAX_WALK, (spanned >> order) + 1)
        total, broken = 0, False
        for mt in range(nr_types):
            n, err = _walk_list(prog, base + off_list + mt * lh_size, cap)
            total += n
            if err:
                broken = True
                out.append(
                    Finding(
                        "free_area",
                        where,
                        f"free_area[{order}].free_list[{mt}] is broken after {n} blocks: {err}",
                        "include/linux/list.h: every next->prev points back (a buddy free list is a list_head ring)",
                    )
                )
        if not broken and total != nr_free:
            out.append(
                Finding(
                    "free_area",
                    where,
                    f"free_area[{order}].nr_free is {nr_free} but its free lists hold {total} blocks",
                    "mm/page_alloc.c __add_to_free_list()/"
                    "__del_page_from_free_list(): nr_free counts the blocks on free_list[*]",
                )
            )
        pages += min(nr_free, total) << order
    managed = _atomic(zone.managed_pages)
    if 0 <= managed < pages:
        out.append(
            Finding(
                "free_area",
                where,
                f"the free lists hold {pages} pages, more than managed_pages {managed}",
                "free blocks are managed pages",
            )
        )
    return out


def check_nr_free(zone: Object) -> list[Finding]:
    """What buddyinfo and the extfrag indexes print: each ``nr_free`` against its free lists
    (:func:`check_free_area`)."""
    return check_free_area(zone)


def check_pcp(zone: Object) -> list[Finding]:
    """Each online CPU's ``per_cpu_pages``: ``count`` = the pages on its lists (each list holds
    blocks of one order: pindex_to_order())."""
    from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr

    prog = zone.prog_
    if not zone.present_pages.value_():
        return []
    where = _zone_where(zone)
    nr = prog.types.struct("per_cpu_pages").walk("lists")[2].resolved().nelems
    pcptypes = prog.types.const("MIGRATE_PCPTYPES")
    thp_order = _pageblock_order(prog)
    orders = [i // pcptypes if i < nr - 2 else thp_order for i in range(nr)]  # pindex_to_order()
    lh_size = prog.types.sizeof("struct list_head")
    cap = min(_MAX_WALK, zone.spanned_pages.value_() + 1)
    out = []
    for cpu in for_each_online_cpu(prog):
        pcp = per_cpu_ptr(zone.per_cpu_pageset, cpu)
        count = pcp.count.value_()
        pages, broken = 0, False
        base = pcp.lists.address_
        for i in range(nr):
            n, err = _walk_list(prog, base + i * lh_size, cap)
            pages += n << orders[i]
            if err:
                broken = True
                out.append(
                    Finding(
                        "pcp",
                        where,
                        f"cpu {cpu} pcp->lists[{i}] is broken after {n} pages: {err}",
                        "include/linux/list.h: every next->prev points back",
                    )
                )
        if not broken and pages != count:
            out.append(
                Finding(
                    "pcp",
                    where,
                    f"cpu {cpu} pcp->count is {count} but its lists hold {pages} pages",
                    "mm/page_alloc.c free_frozen_page_commit()/rmqueue_pcplist(): pcp->count moves "
                    "with every page added to or taken from pcp->lists",
                )
            )
    return out


def _pageblock_order(prog: Program) -> int:
    from mmintro.reader.x86_pgtable import LEVELS_4

    if "pageblock_order" in prog.symbols.by_name:
        return prog["pageblock_order"].value_()
    return LEVELS_4[-2].shift - LEVELS_4[-1].shift  # HPAGE_PMD_ORDER


# -- processes ------------------------------------------------------------------------------------
def TASK_SIZE_MAX(prog: Program) -> int:
    """arch/x86/include/asm/page_64.h ``task_size_max()``: ``(1 << __VIRTUAL_MASK_SHIFT) -
    PAGE_SIZE``, 47 bits with 4-level paging, 56 with 5-level."""
    return (1 << (56 if len(prog.levels) == 5 else 47)) - prog.page_size


def _task_where(task: Object) -> str:
    comm = task.comm.string_().decode(errors="replace")
    return f"pid {task.pid.value_()} ({comm})"


def check_mm(task: Object) -> list[Finding]:
    """What ps, status and vm print of a task's ``struct mm_struct``: its VM page counts
    within the user address space, total_vm against its VMAs (:func:`check_vmas`), and its
    RSS counters."""
    from mmintro.reader.helpers.task import get_mm_counter_sum

    mm = task.mm
    if not mm.value_():
        return []
    prog = task.prog_
    where = _task_where(task)
    limit = TASK_SIZE_MAX(prog) // prog.page_size
    out = []
    total_vm = mm.total_vm.value_()
    for field in ("total_vm", "hiwater_vm", "locked_vm", "data_vm", "exec_vm", "stack_vm"):
        v = getattr(mm, field).value_()
        if v > limit:
            out.append(
                Finding(
                    "mm",
                    where,
                    f"mm->{field} is {v} pages, more than the {limit} pages below TASK_SIZE_MAX",
                    "mm/mmap.c vm_stat_account(): the counts are pages of the mm's VMAs, all below TASK_SIZE_MAX",
                )
            )
    parts = sum(getattr(mm, f).value_() for f in ("data_vm", "exec_vm", "stack_vm"))
    if total_vm <= limit and parts > total_vm:
        out.append(
            Finding(
                "mm",
                where,
                f"data_vm + exec_vm + stack_vm = {parts} pages > total_vm {total_vm}",
                "mm/mmap.c vm_stat_account(): a VMA counts in total_vm and in at most one of "
                "exec_vm, stack_vm, data_vm",
            )
        )
    rss = 0
    for member in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS"):
        v = get_mm_counter_sum(mm, member)
        if v < 0:
            out.append(
                Finding(
                    "mm",
                    where,
                    f"rss_stat[{member}] sums to {v}",
                    "include/linux/mm.h: the per-mm page counters count pages, never fewer than 0",
                )
            )
        elif member != "MM_SWAPENTS":
            rss += v
    if rss > limit:
        out.append(
            Finding(
                "mm",
                where,
                f"the RSS counters sum to {rss} pages, more than the {limit} pages below TASK_SIZE_MAX",
                "a page is counted once per mapping of a user address",
            )
        )
    if total_vm <= limit:
        out += check_vmas(task)
    return out


def check_oom_score_adj(task: Object) -> list[Finding]:
    """``signal->oom_score_adj`` within OOM_SCORE_ADJ_MIN..OOM_SCORE_ADJ_MAX."""
    sig = task.signal
    if not sig.value_():
        return []
    adj = sig.oom_score_adj.value_()
    lo, hi = -1000, 1000  # include/uapi/linux/oom.h OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX
    if lo <= adj <= hi:
        return []
    return [
        Finding(
            "mm",
            _task_where(task),
            f"signal->oom_score_adj is {adj}",
            "fs/proc/base.c __set_oom_adj(): OOM_SCORE_ADJ_MIN (-1000) <= oom_score_adj <= OOM_SCORE_ADJ_MAX (1000)",
        )
    ]


def check_vmas(task: Object) -> list[Finding]:
    """``total_vm`` against the pages of the mm's VMAs (walked; bounded by the maple tree)."""
    from mmintro.reader.helpers.task import for_each_vma

    mm = task.mm
    if not mm.value_():
        return []
    where = _task_where(task)
    pages = 0
    try:
        for v in for_each_vma(mm):
            start, end = v.vm_start.value_(), v.vm_end.value_()
            if end <= start or end > TASK_SIZE_MAX(task.prog_) + task.prog_.page_size:
                return [
                    Finding(
                        "mm",
                        where,
                        f"VMA {v.value_():#x} spans {start:#x}-{end:#x}",
                        "mm/vma.c: vm_start < vm_end <= TASK_SIZE",
                    )
                ]
            pages += (end - start) // task.prog_.page_size
    except (ValidationError, FaultError) as e:
        return [
            Finding(
                "mm", where, f"its VMA tree cannot be walked: {e}", "lib/maple_tree.c: mm->mm_mt is a valid maple tree"
            )
        ]
    total_vm = mm.total_vm.value_()
    if total_vm != pages:
        return [
            Finding(
                "mm",
                where,
                f"total_vm is {total_vm} pages but its VMAs span {pages}",
                "mm/mmap.c vm_stat_account(): total_vm is the pages of every VMA",
            )
        ]
    return []


def check_page_tables(task: Object) -> list[Finding]:
    """The user page tables of the task's mm, scanned (bounded): no table outside RAM, none
    reached twice or from two levels (the scan's own findings)."""
    from mmintro.reader.helpers.pgtable import scan_mm

    mm = task.mm
    if not mm.value_():
        return []
    try:
        scan = scan_mm(mm)
    except (ValidationError, FaultError) as e:
        return [
            Finding(
                "page_tables",
                _task_where(task),
                f"cannot be walked: {e}",
                "arch/x86: every table entry points at a page-table page in RAM",
            )
        ]
    return [
        Finding(
            "page_tables",
            _task_where(task),
            f,
            "arch/x86: each page table is a page of RAM with one "
            "parent entry at the level above (pmd_populate/pud_populate)",
        )
        for f in scan.findings
    ]


# -- slab caches ------------------------------------------------------------------------------------
def check_slab_cache(cache: Object) -> list[Finding]:
    """One ``struct kmem_cache *``'s node counters against its partial lists and its geometry
    (what /proc/slabinfo and kmem -s print)."""
    from mmintro.reader.helpers.list import list_for_each_entry
    from mmintro.reader.helpers.slab import for_each_kmem_cache_node, slab_cache_name

    prog = cache.prog_
    try:
        where = f"slab cache {slab_cache_name(cache)}"
    except (FaultError, ValidationError, UnicodeDecodeError):
        where = f"slab cache {cache.value_():#x}"
    from mmintro.reader.helpers.slab import _OO_MASK

    max_objs = cache.oo.x.value_() & _OO_MASK  # allocate_slab() tries s->oo first, then s->min
    out = []
    for nid, n in for_each_kmem_cache_node(cache):
        nw = f"node {nid}"
        nr_partial = n.nr_partial.value_()
        nr_slabs, total = _atomic(n.nr_slabs), _atomic(n.total_objects)
        if nr_slabs < 0 or total < 0:
            out.append(
                Finding(
                    "slab",
                    where,
                    f"{nw}: nr_slabs {nr_slabs}, total_objects {total}",
                    "mm/slub.c inc_slabs_node()/dec_slabs_node(): counts of existing slabs and their "
                    "objects, never below 0",
                )
            )
        elif total > nr_slabs * max_objs:
            out.append(
                Finding(
                    "slab",
                    where,
                    f"{nw}: total_objects {total} > nr_slabs {nr_slabs} * oo_objects(s->oo) {max_objs}",
                    "mm/slub.c inc_slabs_node(): each slab adds its objects, at most oo_objects(s->oo)",
                )
            )
        if nr_partial > max(nr_slabs, 0):
            out.append(
                Finding(
                    "slab",
                    where,
                    f"{nw}: nr_partial {nr_partial} > nr_slabs {nr_slabs}",
                    "mm/slub.c: a partial slab is one of the node's slabs",
                )
            )
        count = 0
        try:
            for sl in list_for_each_entry(
                "struct slab", n.partial.address_of_(), "slab_list", name=f"{nw} partial list", limit=_MAX_WALK
            ):
                count += 1
                inuse, objects = sl.inuse.value_(), sl.objects.value_()
                if inuse > objects or (max_objs and objects > max_objs):
                    out.append(
                        Finding(
                            "slab",
                            where,
                            f"{nw}: partial slab {sl.value_():#x} has inuse {inuse} of {objects} objects",
                            "mm/slub.c: 0 <= slab->inuse <= slab->objects <= oo_objects(s->oo)",
                        )
                    )
        except (ValidationError, FaultError) as e:
            out.append(
                Finding(
                    "slab",
                    where,
                    f"{nw}: the partial list cannot be walked: {e}",
                    "include/linux/list.h: every next->prev points back",
                )
            )
            continue
        if count != nr_partial:
            out.append(
                Finding(
                    "slab",
                    where,
                    f"{nw}: nr_partial is {nr_partial} but n->partial holds {count} slabs",
                    "mm/slub.c __add_partial()/remove_partial(): nr_partial counts the slabs on n->partial",
                )
            )
    del prog
    return out


# -- vmalloc --------------------------------------------------------------------------------------
def check_vmap_area(va: Object) -> list[Finding]:
    """One busy ``struct vmap_area *`` and its ``vm_struct`` (what vmallocinfo prints)."""
    from mmintro.reader.helpers.vmalloc import VMALLOC_END, VMALLOC_START
    from mmintro.reader.x86_pgtable import START_KERNEL_MAP

    prog = va.prog_
    start, end = va.va_start.value_(), va.va_end.value_()
    where = f"vmap_area {va.value_():#x}"
    out = []
    lo, hi = VMALLOC_START(prog), VMALLOC_END(prog) + 1
    in_vmalloc = lo <= start and end <= hi
    in_modules = start >= START_KERNEL_MAP and end >= start  # execmem/modules: __START_KERNEL_map + image .. top
    if end <= start or not (in_vmalloc or in_modules):
        out.append(
            Finding(
                "vmalloc",
                where,
                f"spans {start:#x}-{end:#x}, not inside VMALLOC_START {lo:#x}..VMALLOC_END {hi:#x} or the module area",
                "mm/vmalloc.c alloc_vmap_area(): vstart <= va_start < va_end <= vend of the range it was given",
            )
        )
    vm = va.vm.value_()
    if vm:
        v = va.vm
        addr, size = v.addr.value_(), v.size.value_()
        if addr != start or addr + size > end or size > _MASK64 - addr:
            out.append(
                Finding(
                    "vmalloc",
                    where,
                    f"vm_struct {vm:#x}: addr {addr:#x} size {size:#x} "
                    f"(end {addr + size:#x}) does not fit the area {start:#x}-{end:#x}",
                    "mm/vmalloc.c setup_vmalloc_vm(): vm->addr = va->va_start, vm->size = va->va_end - va->va_start",
                )
            )
        elif (v.nr_pages.value_() << 12) > size:
            out.append(
                Finding(
                    "vmalloc",
                    where,
                    f"vm_struct {vm:#x}: nr_pages {v.nr_pages.value_()} do not fit its size {size:#x}",
                    "mm/vmalloc.c __vmalloc_area_node(): nr_pages <= the area's pages",
                )
            )
    return out


# -- swap -----------------------------------------------------------------------------------------
def check_swap(prog: Program) -> list[Finding]:
    """Each swap device's ``inuse_pages`` against its ``swap_map``, and ``nr_swap_pages``
    against the devices' free slots."""
    import numpy as np

    from mmintro.reader.helpers.swap import SWAP_MAP_BAD, for_each_swap_info, swap_map, swap_usage_in_pages

    out = []
    writeok = prog.types.const("SWP_WRITEOK")
    free = 0
    for si in for_each_swap_info(prog):
        where = f"swap type {si.type.value_()}"
        try:
            m = swap_map(si)
        except ValidationError as e:
            out.append(Finding("swap", where, str(e), "mm/swapfile.c: swap_map holds max bytes"))
            continue
        inuse = swap_usage_in_pages(si)
        pages = si.pages.value_()
        used = int(np.count_nonzero((m != 0) & (m != SWAP_MAP_BAD)))
        if inuse != used:
            out.append(
                Finding(
                    "swap",
                    where,
                    f"inuse_pages is {inuse} but swap_map has {used} slots in use",
                    "mm/swapfile.c swap_range_alloc()/swap_range_free(): inuse_pages counts the "
                    "slots taken in swap_map",
                )
            )
        if inuse > pages:
            out.append(
                Finding(
                    "swap",
                    where,
                    f"inuse_pages {inuse} > pages {pages}",
                    "mm/swapfile.c: a device has pages usable slots",
                )
            )
        if si.flags.value_() & writeok:
            free += pages - inuse
    if "nr_swap_pages" in prog.symbols.by_name:
        nr = _atomic(prog["nr_swap_pages"])
        if nr != free:
            out.append(
                Finding(
                    "swap",
                    "nr_swap_pages",
                    f"is {nr} but the writable swap devices have {free} free slots",
                    "mm/swapfile.c swap_range_alloc()/swap_range_free()/"
                    "_enable_swap_info(): nr_swap_pages is the free slots of the SWP_WRITEOK devices",
                )
            )
    return out


# -- LRU lists ------------------------------------------------------------------------------------
def _node_stat(prog: Program, pgdat: Object, item: int) -> int:
    """node_page_state_pages() made exact: the node counter plus every CPU's unfolded diff."""
    from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr

    v = _atomic(pgdat.vm_stat[item])
    for cpu in for_each_online_cpu(prog):
        v += per_cpu_ptr(pgdat.per_cpu_nodestats, cpu).vm_node_stat_diff[item].value_()
    return v


def _uses_node_lruvec(prog: Program) -> bool:
    """The LRU pages are on ``pgdat->__lruvec`` only without memcg (mem_cgroup_disabled())
    and without the multi-gen LRU."""
    syms = prog.symbols.by_name
    if "root_mem_cgroup" in syms:  # CONFIG_MEMCG: the lists are per memcg once it is set up
        try:
            if prog.read_u64(syms["root_mem_cgroup"].address):
                return False
        except FaultError:
            return False
    # CONFIG_LRU_GEN: the folios may be on lrugen lists instead (lru_gen_caps' static keys)
    return "lru_gen_caps" not in syms


def check_lru(prog: Program) -> list[Finding]:
    """Each node's LRU lists (``__lruvec.lists[lru]``, pages per folio) against its
    NR_INACTIVE_ANON.. NR_UNEVICTABLE counters (exact: with the per-CPU diffs)."""
    from mmintro.reader.helpers.mmzone import for_each_online_pgdat

    if not _uses_node_lruvec(prog):
        return []
    types = prog.types
    lru_names = [e for e, _v in sorted(types.enum("lru_list").items(), key=lambda kv: kv[1]) if e != "NR_LRU_LISTS"][
        : types.const("NR_LRU_LISTS")
    ]
    base = types.const("NR_LRU_BASE")
    page_t = types.struct("page")
    off_lru = page_t.offsetof("lru")
    off_flags = page_t.offsetof("flags")
    head_bit = 1 << types.const("PG_head")
    lh_size = types.sizeof("struct list_head")
    off_lists = types.struct("lruvec").offsetof("lists")
    read = prog.read_u64
    out = []
    for pgdat in for_each_online_pgdat(prog):
        nid = pgdat.node_id.value_()
        cap = min(_MAX_WALK, pgdat.node_spanned_pages.value_() + 1)
        lists = pgdat.__lruvec.address_ + off_lists
        for i, name in enumerate(lru_names):
            head = lists + i * lh_size
            pages = 0
            err = None
            try:
                seen: set[int] = set()
                pos = head
                while len(seen) < cap:
                    nxt = read(pos)
                    if read(nxt + 8) != pos:
                        err = f"next of {pos:#x} is {nxt:#x}, whose prev does not point back"
                        break
                    if nxt == head:
                        break
                    if nxt in seen:
                        err = f"a cycle at {nxt:#x}"
                        break
                    seen.add(nxt)
                    page = nxt - off_lru
                    # folio_nr_pages(): 1, or 1 << folio_order() kept in the first tail page
                    pages += (
                        1 << (read(page + page_t.size + off_flags) & 0xFF) if read(page + off_flags) & head_bit else 1
                    )
                    pos = nxt
            except FaultError as e:
                err = f"a link points to unreadable memory ({e})"
            if err:
                out.append(
                    Finding(
                        "lru",
                        f"node {nid}",
                        f"lruvec.lists[{name}] is broken: {err}",
                        "include/linux/list.h: every next->prev points back",
                    )
                )
                continue
            want = _node_stat(prog, pgdat, base + i)
            if pages != want:
                out.append(
                    Finding(
                        "lru",
                        f"node {nid}",
                        f"lruvec.lists[{name}] holds {pages} pages but the node "
                        f"counter NR_{name.removeprefix('LRU_')} is {want}",
                        "include/linux/mm_inline.h update_lru_size(): the counter moves with every "
                        "folio added to or deleted from the list",
                    )
                )
    return out


# -- /proc/meminfo --------------------------------------------------------------------------------
_LE_MEMTOTAL = (
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Unevictable",
    "Mlocked",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "PageTables",
    "AnonHugePages",
    "ShmemHugePages",
    "FileHugePages",
    "VmallocUsed",
    "Percpu",
)


def check_meminfo(prog: Program, values: dict[str, int]) -> list[Finding]:
    """/proc/meminfo's values (kB, HugePages_* as counts) against the kernel's bounds."""
    from mmintro.reader.helpers.mmzone import for_each_zone

    out = []
    total = values.get("MemTotal", 0)
    for name in _LE_MEMTOTAL:
        v = values.get(name)
        if v is not None and v > total:
            out.append(
                Finding(
                    "meminfo",
                    name,
                    f"{v} kB > MemTotal {total} kB",
                    "fs/proc/meminfo.c: each counts pages of RAM the buddy allocator manages",
                )
            )
    managed = sum(max(0, _atomic(z.managed_pages)) for z in for_each_zone(prog)) * prog.page_size // 1024
    if total != managed:
        out.append(
            Finding(
                "meminfo",
                "MemTotal",
                f"{total} kB but the zones manage {managed} kB",
                "mm/page_alloc.c adjust_managed_page_count(): _totalram_pages moves with the zones' managed_pages",
            )
        )
    if values.get("SwapFree", 0) > values.get("SwapTotal", 0):
        out.append(
            Finding(
                "meminfo",
                "SwapFree",
                f"{values['SwapFree']} kB > SwapTotal {values.get('SwapTotal')} kB",
                "mm/swapfile.c si_swapinfo(): free slots are slots of the devices",
            )
        )
    ht = values.get("HugePages_Total")
    if ht is not None:
        for name in ("HugePages_Free", "HugePages_Surp"):
            if values.get(name, 0) > ht:
                out.append(
                    Finding(
                        "meminfo",
                        name,
                        f"{values[name]} > HugePages_Total {ht}",
                        "mm/hugetlb.c: free and surplus huge pages are among nr_huge_pages",
                    )
                )
        if values.get("HugePages_Rsvd", 0) > values.get("HugePages_Free", 0):
            out.append(
                Finding(
                    "meminfo",
                    "HugePages_Rsvd",
                    f"{values['HugePages_Rsvd']} > HugePages_Free {values.get('HugePages_Free')}",
                    "mm/hugetlb.c hugetlb_acct_memory(): resv_huge_pages <= free_huge_pages",
                )
            )
    return out
