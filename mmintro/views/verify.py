"""``mmintro verify``: every consistency check the reports use, over a whole snapshot.

The checks are :mod:`mmintro.reader.validate`'s, each on every object it applies to: the
zones (page counts, watermarks), their buddy free lists (nr_free against the lists, walked)
and per-CPU page lists, /proc/meminfo's values, the LRU lists against their counters, the
swap devices' books, every slab cache's node lists and counters, every busy vmap area, and
every process's mm (its counters, its VMAs, its page tables, scanned).  A structure a check
cannot read is itself a finding; every walk is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmintro.reader import validate as V
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.program import Program

__all__ = ["GROUPS", "render", "to_json", "verify"]

GROUPS = ("zones", "meminfo", "lru", "swap", "slab", "vmalloc", "tasks")
"""The groups of checks, in the order :func:`verify` runs them."""


def _guard(check: str, where: str, fn: Callable[..., list[V.Finding]], *args: Any) -> list[V.Finding]:
    """Run one check; a structure the check cannot read is a finding too."""
    try:
        return fn(*args)
    except (ValidationError, FaultError) as e:
        return [V.Finding(check, where, f"cannot be read: {e}", "the structure is reachable and well formed")]


def _zones(prog: Program) -> list[V.Finding]:
    from mmintro.reader.helpers.mmzone import for_each_zone

    out: list[V.Finding] = []
    for z in list(for_each_zone(prog)):
        where = V._zone_where(z)
        out += _guard("zone", where, V.check_zone, z)
        out += _guard("free_area", where, V.check_free_area, z)
        out += _guard("pcp", where, V.check_pcp, z)
    return out


def _meminfo(prog: Program) -> list[V.Finding]:
    from mmintro.views.meminfo import meminfo

    return V.check_meminfo(prog, {ln.name: ln.value for ln in meminfo(prog)})


def _slab(prog: Program) -> list[V.Finding]:
    from mmintro.reader.helpers.slab import for_each_slab_cache

    out: list[V.Finding] = []
    for s in for_each_slab_cache(prog):
        out += _guard("slab", f"slab cache {s.value_():#x}", V.check_slab_cache, s)
    return out


def _vmalloc(prog: Program) -> list[V.Finding]:
    from mmintro.reader.helpers.vmalloc import for_each_vmap_area

    out: list[V.Finding] = []
    for va in for_each_vmap_area(prog):
        out += _guard("vmalloc", f"vmap_area {va.value_():#x}", V.check_vmap_area, va)
    return out


def _tasks(prog: Program) -> list[V.Finding]:
    from mmintro.reader.helpers.task import for_each_task

    out: list[V.Finding] = []
    seen: set[int] = set()
    for t in for_each_task(prog, idle=False):
        mm = t.mm.value_()
        if not mm or mm in seen:  # threads share their mm
            continue
        seen.add(mm)
        where = _guard_where(t)
        out += _guard("mm", where, V.check_mm, t)  # with check_vmas
        out += _guard("mm", where, V.check_oom_score_adj, t)
        out += _guard("page_tables", where, V.check_page_tables, t)
    return out


def _guard_where(task: Any) -> str:
    try:
        return V._task_where(task)
    except (ValidationError, FaultError, UnicodeDecodeError):
        return f"task {task.value_():#x}"


_RUN: dict[str, tuple[str, Callable[[Program], list[V.Finding]], str]] = {
    "zones": ("zone", _zones, "node_data[] points at the nodes and their zones"),
    "meminfo": ("meminfo", _meminfo, "the counters /proc/meminfo sums are readable"),
    "lru": ("lru", V.check_lru, "the lruvec lists are readable"),
    "swap": ("swap", V.check_swap, "swap_info[] points at the swap devices"),
    "slab": ("slab", _slab, "slab_caches is a list_head ring"),
    "vmalloc": ("vmalloc", _vmalloc, "mm/vmalloc.c: each node's busy list is in address order, va_start < va_end"),
    "tasks": ("mm", _tasks, "init_task.tasks is a list_head ring"),
}


def verify(prog: Program, progress: Callable[[str], None] | None = None) -> list[V.Finding]:
    """Every finding on the snapshot, group by group (:data:`GROUPS`), each once.

    :param progress: called with each group's name before it runs
    """
    out: list[V.Finding] = []
    for name in GROUPS:
        if progress is not None:
            progress(name)
        check, fn, rule = _RUN[name]
        try:
            out += fn(prog)
        except (ValidationError, FaultError, LookupError) as e:
            out.append(V.Finding(check, name, f"cannot be walked: {e}", rule))
    return list(dict.fromkeys(out))


def render(findings: list[V.Finding]) -> str:
    """One ``finding:`` line per finding (none: nothing)."""
    return "".join(f"finding: {f.check}: {f}\n" for f in findings)


def to_json(findings: list[V.Finding]) -> dict[str, Any]:
    return {"findings": [f.to_json() for f in findings]}
