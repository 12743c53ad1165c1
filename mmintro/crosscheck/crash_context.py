"""What the crash utility's rows share: the snapshot with a few samples from it (:class:`_Ctx`),
the row type (:class:`CrashCheck`) and the not-applicable signal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmintro.reader import Program

PAGE_SIZE = 4096


class _NA(Exception):
    """The row has nothing to compare on this snapshot (the message says why)."""


@dataclass
class CrashCheck:
    name: str
    commands: Callable[[_Ctx], list[str]]
    compare: Callable[[_Ctx, dict[str, str]], tuple]


@dataclass
class _Ctx:
    """What the rows need to choose their commands: the snapshot and a few samples from it."""

    prog: Program
    pids: list[int]
    user_addr: int | None  # a mapped user address of pids[0]
    caches: list[str]  # caches for kmem -S: kmalloc-64 and the fullest cache without sheaves
    page_addr: int  # a struct page: the 257th page of the first populated zone
    slab_obj: int | None  # an allocated slab object


def _context(prog: Program) -> _Ctx:
    from mmintro.reader.helpers.mm import pfn_to_page
    from mmintro.reader.helpers.mmzone import for_each_zone
    from mmintro.reader.helpers.slab import find_slab_cache, slab_census
    from mmintro.views.kmem_s import kmem_s
    from mmintro.views.ps import ps
    from mmintro.views.vm import vm, vtop_pid

    pids = [r.pid for r in ps(prog) if r.pid]
    user_addr = None
    for pid in pids:  # the first process with a mapped page goes first (vm, vm -p, vtop -c)
        for r in vm(prog, pid)["vmas"]:
            for a in range(r["start"], min(r["end"], r["start"] + (64 << 12)), PAGE_SIZE):
                if vtop_pid(prog, pid, a)["phys"] is not None:
                    user_addr = a
                    break
            if user_addr is not None:
                pids.remove(pid)
                pids.insert(0, pid)
                break
        if user_addr is not None:
            break
    rows = kmem_s(prog)
    sheaves = _sheaf_caches(prog)
    busiest = max((r for r in rows if r.name not in sheaves and r.allocated), key=lambda r: r.allocated, default=None)
    caches = ["kmalloc-64"] + ([busiest.name] if busiest is not None and busiest.name != "kmalloc-64" else [])
    start = next(z.zone_start_pfn.value_() for z in for_each_zone(prog) if z.present_pages.value_())
    page_addr = pfn_to_page(prog, start + 0x100).value_()
    s = find_slab_cache(prog, "kmalloc-64").value_()
    census = slab_census(prog, [s])[s]
    allocated = census.objects[census.allocated]
    slab_obj = int(allocated[len(allocated) // 2]) if len(allocated) else None
    return _Ctx(prog, pids, user_addr, caches, page_addr, slab_obj)


def _sheaf_caches(prog: Program) -> set[str]:
    from mmintro.reader.helpers.slab import for_each_slab_cache, slab_cache_name

    out = set()
    for c in for_each_slab_cache(prog):
        try:
            if c.sheaf_capacity.value_():
                out.add(slab_cache_name(c))
        except AttributeError:
            return set()
    return out


def _pages(prog: Program, kb: int) -> int:
    return kb // (prog.page_size >> 10)
