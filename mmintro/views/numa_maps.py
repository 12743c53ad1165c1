"""/proc/PID/numa_maps (fs/proc/task_mmu.c show_numa_map, gather_stats, mm/mempolicy.c
mpol_to_str; 6.18), columnar like smaps.

Per VMA: ``%08lx <policy>`` — the VMA's policy (``vma->vm_policy``) or else the task's
(``get_task_policy``: ``task->mempolicy`` or ``default_policy``) through mpol_to_str
(``default``, ``local``, ``prefer:N``, ``bind:N-M``, ``interleave:...``, ``=static`` /
``=relative`` / ``balancing`` mode flags) — then `` file=<path>`` | `` heap`` | `` stack``,
`` huge`` for hugetlb, and, when any page is mapped, gather_stats' counts: ``anon=``,
``dirty=``, ``mapped=`` (only if it differs from both), ``mapmax=`` (> 1), ``swapcache=``,
``active=`` (only below mapped, never for hugetlb), ``writeback=``, ``N<nid>=`` per node and
``kernelpagesize_kB=``.  PTEs count through vm_normal_page (the zero page and reserved pages
are skipped: can_gather_numa_stats), PMD leaves count HPAGE_PMD_NR pages with the head's
mapcount, a hugetlb leaf counts 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mmintro.reader.helpers.pgtable import LEVEL_PMD, LEVEL_PTE, entry_dirty, page_columns, scan_mm
from mmintro.reader.helpers.task import get_task_policy
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.views.maps import task_vmas
from mmintro.views.pageflags import flags_layout
from mmintro.views.smaps import (
    FOLIO_MAPPING_ANON,
    PAGE_MAPCOUNT_RESERVE,
    VM_HUGETLB,
    _hugetlb_page_size,
    _special_pfns,
)
from mmintro.views.status import bitmap_list

__all__ = ["NumaMapsRow", "mpol_to_str", "numa_maps", "render"]

# include/uapi/linux/mempolicy.h (#defines): mode flags kept in mempolicy->flags
MPOL_F_STATIC_NODES = 1 << 15
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
# mm/mempolicy.c policy_modes[]
POLICY_MODES = {
    "MPOL_DEFAULT": "default",
    "MPOL_PREFERRED": "prefer",
    "MPOL_BIND": "bind",
    "MPOL_INTERLEAVE": "interleave",
    "MPOL_WEIGHTED_INTERLEAVE": "weighted interleave",
    "MPOL_LOCAL": "local",
    "MPOL_PREFERRED_MANY": "prefer (many)",
}


class NumaMapsRow(NamedTuple):
    start: int
    policy: str
    name: str
    """`` file=...`` / `` heap`` / `` stack`` / ``""`` (and `` huge``)."""
    pages: int
    anon: int
    dirty: int
    mapcount_max: int
    swapcache: int
    active: int
    writeback: int
    nodes: dict[int, int]
    kernelpagesize_kb: int
    hugetlb: bool


def mpol_to_str(pol: Object) -> str:
    """mm/mempolicy.c mpol_to_str() of ``struct mempolicy *`` (``default`` for NULL or
    ``&default_policy``)."""
    prog = pol.prog_
    if not pol.value_():
        return "default"
    try:
        if pol.value_() == prog["default_policy"].address_of_().value_():
            return "default"
    except KeyError:
        pass
    mode = pol.mode.value_()
    flags = pol.flags.value_()
    names = {prog.constant(k).value_(): v for k, v in POLICY_MODES.items() if k in prog}
    if mode not in names:
        return "unknown"
    out = names[mode]
    nodes = ""
    if names[mode] not in ("default", "local"):
        nodes = bitmap_list([w.value_() for w in pol.nodes.bits], 64 * len(pol.nodes.bits))
    if flags & MPOL_MODE_FLAGS:
        out += "="
        if flags & MPOL_F_STATIC_NODES:
            out += "static"
        elif flags & MPOL_F_RELATIVE_NODES:
            out += "relative"
        if flags & MPOL_F_NUMA_BALANCING:
            if (flags & MPOL_MODE_FLAGS).bit_count() != 1:
                out += "|"
            out += "balancing"
    if nodes:
        out += ":" + nodes
    return out


def numa_maps(prog: Program, pid: int) -> list[NumaMapsRow]:
    """The numa_maps rows of ``pid`` (LookupError if there is no such task)."""
    task, mm, rows = task_vmas(prog, pid)
    if mm is None:
        return []
    vmas = [v for _r, v in rows]
    scan = scan_mm(mm)
    starts = np.array([v.vm_start.value_() for v in vmas], dtype=np.uint64)
    ends = np.array([v.vm_end.value_() for v in vmas], dtype=np.uint64)
    vi = (
        np.searchsorted(starts, scan.vaddr, side="right").astype(np.int64) - 1
        if len(vmas)
        else np.zeros(len(scan), np.int64)
    )
    inside = (
        (vi >= 0) & (scan.vaddr < ends[np.maximum(vi, 0)]) & scan.present if len(vmas) else np.zeros(len(scan), bool)
    )
    s = scan.select(inside)
    vi = vi[inside]
    T = prog.types
    zero_pfn, huge_zero_pfn = _special_pfns(prog)
    lay = flags_layout(prog)
    bit = {
        n: np.uint64(1 << T.const(n))
        for n in (
            "PG_dirty",
            "PG_active",
            "PG_unevictable",
            "PG_writeback",
            "PG_reserved",
            "PG_swapcache",
            "PG_swapbacked",
        )
    }
    pfn = s.pfn
    keep = (
        ((s.entry & np.uint64(1 << 9)) == 0)
        & (pfn != np.uint64(zero_pfn & (2**64 - 1)))
        & (pfn != np.uint64(huge_zero_pfn & (2**64 - 1)))
    )
    s, vi, pfn = s.select(keep), vi[keep], pfn[keep]
    cols = page_columns(prog, pfn)
    ok = cols.valid & ((cols.head_flags & bit["PG_reserved"]) == 0)
    huge_v = np.array([bool(v.vm_flags.value_() & VM_HUGETLB) for v in vmas], dtype=bool)
    is_huge = huge_v[vi] if len(vi) else np.zeros(0, bool)
    nr = np.where(is_huge, 1, np.where(s.level == LEVEL_PMD, 512, np.where(s.level == LEVEL_PTE, 1, 1 << 18)))
    nr = np.where(ok, nr, 0).astype(np.int64)
    hf = cols.head_flags
    count = cols.mapcount.astype(np.int64) + 1
    count = np.where(count - 1 < PAGE_MAPCOUNT_RESERVE, 0, count)
    count = count + np.where(cols.order > 0, cols.entire_mapcount.astype(np.int64) + 1, 0)
    pte_dirty = entry_dirty(s.entry)
    dirty = pte_dirty | ((hf & bit["PG_dirty"]) != 0)
    # PG_swapcache aliases PG_owner_priv_1: folio_test_swapcache also needs swapbacked
    swapcache = ((hf & bit["PG_swapcache"]) != 0) & ((hf & bit["PG_swapbacked"]) != 0)
    active = ((hf & bit["PG_active"]) != 0) | ((hf & bit["PG_unevictable"]) != 0)
    writeback = (hf & bit["PG_writeback"]) != 0
    anon = (cols.head_mapping & np.uint64(FOLIO_MAPPING_ANON)) != 0
    nid = ((hf >> np.uint64(lay.nodes_pgoff)) & np.uint64((1 << lay.nodes_shift) - 1)).astype(np.int64)
    n = len(vmas)

    def per_vma(mask: np.ndarray) -> np.ndarray:
        return (
            np.bincount(vi, weights=np.where(mask, nr, 0), minlength=n).astype(np.int64)
            if len(vi)
            else np.zeros(n, np.int64)
        )

    pages = per_vma(np.ones(len(vi), bool))
    c_anon, c_dirty, c_swc = per_vma(anon), per_vma(dirty), per_vma(swapcache)
    c_act, c_wb = per_vma(active), per_vma(writeback)
    mapmax = np.zeros(n, np.int64)
    if len(vi):
        np.maximum.at(mapmax, vi[ok], count[ok])
    out = []
    tpol = None
    for k, (row, v) in enumerate(rows):
        if not v.vm_mm.value_():  # show_numa_map: the gate VMA (no mm) prints nothing
            continue
        pol = v.vm_policy
        if pol.value_():
            policy = mpol_to_str(pol)
        else:
            if tpol is None:
                tpol = mpol_to_str(get_task_policy(task))
            policy = tpol
        if v.vm_file.value_():
            name = " file=" + row.name.replace(" ", "\\040").replace("\n", "\\012").replace("\t", "\\011").replace(
                "=", "\\075"
            )
        elif row.name == "[heap]":
            name = " heap"
        elif row.name == "[stack]":
            name = " stack"
        else:
            name = ""
        hug = bool(huge_v[k])
        nodes: dict[int, int] = {}
        sel = (vi == k) & ok
        if sel.any():
            for node in np.unique(nid[sel]).tolist():
                nodes[node] = int(nr[sel & (nid == node)].sum())
        kps = _hugetlb_page_size(v, s.level[vi == k]) if hug else 4096
        out.append(
            NumaMapsRow(
                row.start,
                policy,
                name,
                int(pages[k]),
                int(c_anon[k]),
                int(c_dirty[k]),
                int(mapmax[k]),
                int(c_swc[k]),
                int(c_act[k]),
                int(c_wb[k]),
                nodes,
                kps >> 10,
                hug,
            )
        )
    return out


def render_row(r: NumaMapsRow) -> str:
    line = f"{r.start:08x} {r.policy}{r.name}" + (" huge" if r.hugetlb else "")
    if r.pages:
        if r.anon:
            line += f" anon={r.anon}"
        if r.dirty:
            line += f" dirty={r.dirty}"
        if r.pages != r.anon and r.pages != r.dirty:
            line += f" mapped={r.pages}"
        if r.mapcount_max > 1:
            line += f" mapmax={r.mapcount_max}"
        if r.swapcache:
            line += f" swapcache={r.swapcache}"
        if r.active < r.pages and not r.hugetlb:
            line += f" active={r.active}"
        if r.writeback:
            line += f" writeback={r.writeback}"
        for nid in sorted(r.nodes):
            if r.nodes[nid]:
                line += f" N{nid}={r.nodes[nid]}"
        line += f" kernelpagesize_kB={r.kernelpagesize_kb}"
    return line


def render(rows: list[NumaMapsRow]) -> str:
    return "".join(render_row(r) + "\n" for r in rows)


def to_json(rows: list[NumaMapsRow]) -> list[dict[str, Any]]:
    return [r._asdict() | {"nodes": {str(k): v for k, v in r.nodes.items()}} for r in rows]
