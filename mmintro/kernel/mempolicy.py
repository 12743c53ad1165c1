"""NUMA memory policies (mm/mempolicy.c), the part the page allocator's workloads use.

MPOL_INTERLEAVE: interleave_nodes() picks the next node of the policy's set after the
task's ``il_prev``; alloc_pages_mpol() allocates preferring that node and counts
NUMA_INTERLEAVE_HIT on the page's zone when the page came from it.  The full policy set
(bind, preferred, VMA policies) comes with tasks and VMAs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import page_alloc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

_alloc = getattr(page_alloc, "__alloc_pages")


def interleave_nodes(k: "Kernel", nodes: tuple[int, ...]) -> int:
    """next_node_in(current->il_prev, pol->nodes), remembered per CPU's current task."""
    prev = k.il_prev.get(k.current_cpu, -1)
    ordered = sorted(nodes)
    nxt = next((n for n in ordered if n > prev), ordered[0])
    k.il_prev[k.current_cpu] = nxt
    return nxt


def alloc_pages_interleave(k: "Kernel", gfp: int, order: int, nodes: tuple[int, ...]) -> int | None:
    nid = interleave_nodes(k, nodes)
    pfn = _alloc(k, gfp, order, nid, None)
    if pfn is not None:
        z = page_alloc.page_zone(k, pfn)
        if z.nid == nid:
            z.numa_events[page_alloc.NUMA_INTERLEAVE_HIT] += 1
    return pfn
