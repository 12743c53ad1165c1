"""Rows for vmalloc (mm/vmalloc.c): vmap areas and address lookup against drgn's helpers, and
``crash kmem -v``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from mmintro.crosscheck.drgn import crash
from mmintro.reader import Program


def c_vmap_areas(p: Program, d: Any) -> tuple:
    """``for_each_vmap_area``: the same areas in the same order, with their vm_struct's size,
    flags, nr_pages and caller (``symbol+0xoff``)."""
    from drgn.helpers.linux.mm import for_each_vmap_area

    from mmintro.reader.helpers import vmalloc as vh

    def caller(prog: Any, addr: int) -> str | None:
        try:
            s = prog.symbol(addr)
        except LookupError:
            return None if not addr else hex(addr)
        return f"{s.name}+{addr - s.address:#x}"

    def row(prog: Any, va: Any) -> tuple:
        vm = va.vm
        if not vm.value_():
            return va.value_(), va.va_start.value_(), va.va_end.value_(), 0
        return (
            va.value_(),
            va.va_start.value_(),
            va.va_end.value_(),
            vm.value_(),
            vm.size.value_(),
            vm.flags.value_(),
            vm.nr_pages.value_(),
            caller(prog, vm.caller.value_()),
        )

    return [row(p, va) for va in vh.for_each_vmap_area(p)], [row(d, va) for va in for_each_vmap_area(d)]


def _vmalloc_samples(p: Program) -> list[int]:
    from mmintro.reader.helpers import vmalloc as vh

    rng = random.Random(2)
    areas = [(va.va_start.value_(), va.va_end.value_()) for va in vh.for_each_vmap_area(p)]
    out = [rng.randrange(a, b) for a, b in rng.sample(areas, min(40, len(areas)))]
    out += [b - 1 for a, b in areas[:5]]  # guard pages
    out += [va.va_start.value_() for _i, va in zip(range(5), vh.for_each_lazy_vmap_area(p))]
    base = vh.VMALLOC_START(p)
    out += [base + rng.randrange(1 << 40) for _ in range(10)]  # mostly holes
    return out


def c_find_vmap_area(p: Program, d: Any) -> tuple:
    """``find_vmap_area`` and ``vmalloc_to_page`` on addresses in areas, guard pages, lazily
    freed areas and holes (None where the address is unmapped)."""
    import drgn
    from drgn.helpers.linux.mm import find_vmap_area, vmalloc_to_page

    from mmintro.reader.errors import FaultError
    from mmintro.reader.helpers import vmalloc as vh

    mine, theirs = [], []
    for a in _vmalloc_samples(p):
        va = int(vh.find_vmap_area(p, a).value_())
        try:
            page = int(vh.vmalloc_to_page(p, a).value_()) if va else None
        except FaultError:
            page = None
        mine.append((hex(a), va, page))
        dva = find_vmap_area(d, a).value_()
        try:
            dpage = vmalloc_to_page(d, a).value_() if dva else None
        except drgn.FaultError:
            dpage = None
        theirs.append((hex(a), dva, dpage))
    return mine, theirs


def c_kmem_v_vmallocinfo(p: Program, d: Any) -> tuple:
    """``crash kmem -v`` (VMAP_AREA, VM_STRUCT, range, size) = the busy areas of mmintro's
    /proc/vmallocinfo, and their callers = drgn's identify_address() of each area."""
    from drgn.helpers.common.memory import identify_address_all
    from drgn.helpers.linux.common import IdentifiedVmap

    from mmintro.views.vmallocinfo import vmallocinfo

    rows = [r for r in vmallocinfo(p) if r.words != ["unpurged vm_area"]]
    mine = [
        (
            r.vmap_area,
            r.vm_struct,
            r.start,
            r.end,
            r.size,
            r.caller.rsplit("/", 1)[0] if r.caller and "+" in r.caller else r.caller,
        )
        for r in rows
    ]
    theirs = []
    for line in crash(d, "kmem -v").splitlines()[1:]:
        f = line.split()
        if len(f) != 6 or f[3] != "-":
            continue
        va, vm, start, end, size = int(f[0], 16), int(f[1], 16), int(f[2], 16), int(f[4], 16), int(f[5])
        caller = None
        for ident in identify_address_all(d, start):
            if isinstance(ident, IdentifiedVmap):
                m = re.search(r" caller (\S+)$", str(ident))
                caller = m.group(1) if m else None
        theirs.append((va, vm, start, end, size, caller))
    return mine, theirs


VMALLOC_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_vmap_area: areas, vm_structs, callers", c_vmap_areas),
    ("find_vmap_area/vmalloc_to_page on samples", c_find_vmap_area),
]
VMALLOC_CRASH_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("crash kmem -v areas/callers = vmallocinfo", c_kmem_v_vmallocinfo),
]
