"""Cross-check mmintro's reader against real drgn, and its reports against the real crash utility,
on the same snapshot.

Each drgn row computes one answer with mmintro's reader (objects, helpers, numpy columns) and
one with drgn's stock helpers and crash commands, and compares them.  drgn is the oracle:
it walks the snapshot's own page tables (the core has no virtual segments) and knows
nothing of the simulator.  The rows live in one module per subsystem:

* :mod:`~mmintro.crosscheck.drgn`: opening drgn, drgn's crash commands, :class:`CheckResult` and
  :func:`run_crosscheck`;
* :mod:`~mmintro.crosscheck.zones` (nodes, zones, sections, page tables),
  :mod:`~mmintro.crosscheck.page_alloc`, :mod:`~mmintro.crosscheck.slab`,
  :mod:`~mmintro.crosscheck.vmalloc`, :mod:`~mmintro.crosscheck.whatis`,
  :mod:`~mmintro.crosscheck.tasks`, :mod:`~mmintro.crosscheck.swap`: the drgn rows;
* :mod:`~mmintro.crosscheck.crash_utility`: the crash 9 rows (:data:`CRASH_CHECKS`, in one crash
  session), from :mod:`~mmintro.crosscheck.crash_system`, :mod:`~mmintro.crosscheck.crash_mm` and
  :mod:`~mmintro.crosscheck.crash_tasks`.

New subsystems add a module and its rows to :data:`CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmintro.crosscheck.crash_utility import CRASH_CHECKS, CrashCheck, CrashStartError, run_crash_crosscheck
from mmintro.crosscheck.drgn import (
    CheckResult,
    NotApplicable,
    _diff,
    crash,
    open_drgn,
    open_drgn_real,
    run_crosscheck,
)
from mmintro.crosscheck.page_alloc import (
    FREE_LIST_OK,
    PAGE_ALLOC_CHECKS,
    PAGE_ALLOC_SLOW_CHECKS,
    PCP_OK,
    c_compound,
    c_free_lists,
    c_kmem_f_orders,
    c_kmem_i,
    c_kmem_z_watermarks,
    c_page_census,
    c_pcp_lists,
    c_vmstat_helpers,
    c_wmark_helpers,
)
from mmintro.crosscheck.slab import (
    SLAB_CHECKS,
    SLAB_CRASH_CHECKS,
    c_kmem_s_slabinfo,
    c_slab_caches,
    c_slab_object_info,
    c_slab_objects,
    c_slab_usage,
    d_allocated_objects,
)
from mmintro.crosscheck.swap import SWAP_CHECKS
from mmintro.crosscheck.tasks import TASK_CHECKS
from mmintro.crosscheck.vmalloc import (
    VMALLOC_CHECKS,
    VMALLOC_CRASH_CHECKS,
    c_find_vmap_area,
    c_kmem_v_vmallocinfo,
    c_vmap_areas,
)
from mmintro.crosscheck.whatis import WHATIS_CHECKS, c_kmem_addr_whatis
from mmintro.crosscheck.zones import (
    ZONE_CHECKS,
    c_follow_phys,
    c_for_each_page,
    c_kmem_f,
    c_kmem_n,
    c_kmem_z,
    c_pfn_to_page,
    c_pgdats,
    c_totalram,
    c_vtop,
    c_zones,
)
from mmintro.reader import Program

__all__ = [
    "CHECKS",
    "CRASH_CHECKS",
    "FREE_LIST_OK",
    "PCP_OK",
    "SLOW_CHECKS",
    "CheckResult",
    "CrashCheck",
    "CrashStartError",
    "NotApplicable",
    "_diff",
    "c_compound",
    "c_find_vmap_area",
    "c_follow_phys",
    "c_for_each_page",
    "c_free_lists",
    "c_kmem_addr_whatis",
    "c_kmem_f",
    "c_kmem_f_orders",
    "c_kmem_i",
    "c_kmem_n",
    "c_kmem_s_slabinfo",
    "c_kmem_v_vmallocinfo",
    "c_kmem_z",
    "c_kmem_z_watermarks",
    "c_page_census",
    "c_pcp_lists",
    "c_pfn_to_page",
    "c_pgdats",
    "c_slab_caches",
    "c_slab_object_info",
    "c_slab_objects",
    "c_slab_usage",
    "c_totalram",
    "c_vmap_areas",
    "c_vmstat_helpers",
    "c_vtop",
    "c_wmark_helpers",
    "c_zones",
    "crash",
    "d_allocated_objects",
    "open_drgn",
    "open_drgn_real",
    "run_crash_crosscheck",
    "run_crosscheck",
]

#: Every drgn row, in the order ``mmintro crosscheck`` prints them: the memory model, the page
#: allocator, SLUB's and vmalloc's helpers, then their crash commands, whatis, processes, swap.
CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    *ZONE_CHECKS,
    *PAGE_ALLOC_CHECKS,
    *SLAB_CHECKS,
    *VMALLOC_CHECKS,
    *SLAB_CRASH_CHECKS,
    *VMALLOC_CRASH_CHECKS,
    *WHATIS_CHECKS,
    *TASK_CHECKS,
    *SWAP_CHECKS,
]

#: Rows too slow for every run (a drgn loop over every struct page): :func:`run_crosscheck` runs
#: them only when ``only`` names them (``mmintro crosscheck --only census``).
SLOW_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [*PAGE_ALLOC_SLOW_CHECKS]
