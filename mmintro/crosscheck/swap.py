"""drgn crosscheck rows for swap (drgn 0.3.0's ``drgn.helpers.linux.swap`` and follow_page).

* swap devices: drgn's for_each_swap_info / swap_file_path / swap_is_file / swap_usage_in_pages,
  ``pages`` and ``prio`` = ``mmintro swaps``;
* totals: drgn's swap_total_usage and total_swapcache_pages = meminfo's SwapTotal, SwapFree
  (si_swapinfo) and SwapCached, and the number of folios in 6.18's swap table;
* swapped-out addresses: drgn has no swap-entry decoding, so its follow_phys must fail ("not
  mapped") on exactly the user addresses whose PTE mmintro decodes as a swap entry (a sample
  of each process's, in address order).

drgn's swap_usage_in_pages masks bit 62 of ``inuse_pages`` where 6.18 keeps
SWAP_USAGE_OFFLIST_BIT in bit 30: the two agree unless a device is full or being switched off.
"""

from __future__ import annotations

from typing import Any

from mmintro.crosscheck.answers import Addr
from mmintro.reader.program import Program

__all__ = ["SWAP_CHECKS"]

_SAMPLE = 256  # swapped-out addresses per process for the follow_phys row


def c_swap_info(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.swap import for_each_swap_info, swap_file_path, swap_is_file, swap_usage_in_pages

    from mmintro.views.swaps import swaps

    kb = p.page_size >> 10
    mine = [(r.si, r.path, r.partition, r.size_kb, r.used_kb, r.prio) for r in swaps(p)]
    theirs = [
        (
            si.value_(),
            swap_file_path(si).decode(errors="replace"),
            not swap_is_file(si),
            si.pages.value_() * kb,
            swap_usage_in_pages(si) * kb,
            si.prio.value_(),
        )
        for si in for_each_swap_info(d)
        if si.swap_map.value_()
    ]
    return mine, theirs


def c_swap_totals(p: Program, d: Any) -> tuple:
    from drgn.helpers.linux.swap import swap_total_usage, total_swapcache_pages

    from mmintro.reader.helpers.swap import for_each_swap_info, swap_cache_folios
    from mmintro.views.meminfo import meminfo, si_swapinfo

    kb = {line.name: line.value for line in meminfo(p)}
    total, free = si_swapinfo(p)
    cached = kb["SwapCached"] // (p.page_size >> 10)
    in_tables = sum(len(swap_cache_folios(si)) for si in for_each_swap_info(p))
    usage = swap_total_usage(d)
    theirs_cached = total_swapcache_pages(d)
    return (total, free, cached, in_tables), (usage.pages, usage.free_pages, theirs_cached, theirs_cached)


def c_follow_swapped(p: Program, d: Any) -> tuple:
    import drgn
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task as d_find_task

    from mmintro.reader.helpers.pgtable import LEVEL_PTE, scan_mm
    from mmintro.reader.helpers.swap import max_swapfiles, swp_entries
    from mmintro.reader.helpers.task import for_each_task

    mine, theirs = [], []
    limit = max_swapfiles(p)
    for task in for_each_task(p, idle=False):
        if not task.mm.value_() or task.pid.value_() != task.tgid.value_():
            continue
        pid = task.pid.value_()
        scan = scan_mm(task.mm)
        sel = ~scan.present & (scan.level == LEVEL_PTE)
        types, _ = swp_entries(scan.entry[sel])
        vaddrs = scan.vaddr[sel][types < limit][:_SAMPLE].tolist()
        mine += [(pid, Addr(va)) for va in vaddrs]
        dmm = d_find_task(d, pid).mm
        for va in vaddrs:
            try:
                follow_phys(dmm, va)
            except drgn.FaultError:
                theirs.append((pid, Addr(va)))
    return mine, theirs


c_swap_info.needs = "swap devices"  # type: ignore[attr-defined]
c_follow_swapped.needs = "swapped-out pages"  # type: ignore[attr-defined]

SWAP_CHECKS = [
    ("swap devices: for_each_swap_info, swap_file_path, usage = swaps", c_swap_info),
    ("swap_total_usage, total_swapcache_pages = meminfo, swap table", c_swap_totals),
    ("follow_phys fails on swapped-out addresses", c_follow_swapped),
]
