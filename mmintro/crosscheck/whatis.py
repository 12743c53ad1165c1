"""The ``whatis`` row: drgn's ``crash kmem ADDR`` on sample addresses of every kind = mmintro's whatis."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np

from mmintro.crosscheck.drgn import crash
from mmintro.crosscheck.slab import _d_direct_map_end
from mmintro.crosscheck.zones import _populated
from mmintro.reader import Program
from mmintro.reader.columns import present_pfn_mask
from mmintro.reader.helpers import mm as mmh


def _whatis_samples(p: Program, d: Any) -> list[int]:
    """Addresses of every kind whatis knows that a snapshot has (slab objects allocated and
    free, buddy and per-CPU-list pages, vmalloc pages and guard pages, plain and page-table
    pages, struct pages, symbols, per-CPU variables, holes)."""
    from mmintro.reader.columns import page_array
    from mmintro.reader.helpers import vmalloc as vh
    from mmintro.reader.helpers.percpu import for_each_online_cpu
    from mmintro.reader.helpers.slab import slab_census
    from mmintro.views import whatis as wv

    rng = random.Random(3)
    pob = int(p["page_offset_base"].value_())
    out: list[int] = []
    end = _d_direct_map_end(d)
    census = [c for c in slab_census(p).values() if c.nr_allocated and c.nr_free]
    for c in rng.sample(census, min(6, len(census))):
        out += [int(a) + 8 for a in c.objects[c.allocated][:1] if a < end]
        out += [int(a) for a in c.objects[~c.allocated][-1:] if a < end]
    for _nid, _i, _name, z in _populated(p):
        for o in range(len(z.free_area) - 1, -1, -1):
            fl = z.free_area[o].free_list
            heads = [
                int(fl[mt].next.value_())
                for mt in range(len(fl))
                if int(fl[mt].next.value_()) != int(fl[mt].address_of_().value_())
            ]
            if heads:
                pfn = (heads[0] - int(mmh.vmemmap(p).value_())) // 64
                out.append(pob + ((pfn + (1 << o) - 1) << 12) + 16)
                break
    pcp = sorted(wv._pcp_blocks(p))
    out += [pob + (pfn << 12) + 64 for pfn in pcp[:2]]
    # not ioremapped areas: drgn 0.3.0's ``crash kmem ADDR`` then prints the struct page of the
    # mapped pfn, which is not RAM and has no struct page (FaultError in _print_pages_default_members)
    areas = [
        (va.va_start.value_(), va.va_end.value_())
        for va in vh.for_each_vmap_area(p)
        if not (va.vm.value_() and va.vm.flags.value_() & vh.VM_IOREMAP)
    ]
    for a, b in areas[:: max(1, len(areas) // 4)]:
        out += [a + 0x10, b - 8]
    types = page_array(p, {"page_type": "page_type"})["page_type"] >> np.uint32(24)
    tables = np.flatnonzero((types == p.types.const("PGTY_table")) & present_pfn_mask(p))
    out += [pob + (int(t) << 12) + 0x100 for t in tables[:2]]
    out += [int(mmh.vmemmap(p).value_()) + pfn * 64 + 8 for pfn in (0x1000, 0x12345)]
    out += [int(p.symbol(n).address) + 8 for n in ("node_data", "init_mm", "slab_caches")]
    # per_cpu_ptr() wraps: since 6.15 x86-64 per-CPU symbols are kernel addresses and
    # __per_cpu_offset[cpu] is relative to __per_cpu_start
    out += [
        (int(p["__per_cpu_offset"][cpu].value_()) + int(p.symbol("hardirq_stack_ptr").address)) & 0xFFFFFFFFFFFFFFFF
        for cpu in for_each_online_cpu(p)
    ]
    out += [pob + 0x3000000, vh.VMALLOC_START(p) + (1 << 40), 0xFFFF800000000000]
    return out


def _kmem_addr_facts(out: str) -> list[tuple]:
    """The comparable facts in drgn's ``crash kmem ADDR`` output: the symbol, the slab object
    (cache, object, allocated), the vmap area, the struct page."""
    facts = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        f = line.split()
        if not f:
            continue
        if len(f) >= 3 and f[1] == "(?)":
            name, _, off = f[2].partition("+")
            facts.append(("symbol", name, int(off or 0)))
        elif f[0] == "CACHE" and i + 1 < len(lines):
            cache = int(lines[i + 1].split()[0], 16)
            j = next(k for k in range(i, len(lines)) if "FREE / [ALLOCATED]" in lines[k])
            obj = lines[j + 1].strip()
            facts.append(("slab", cache, int(obj.strip("[]"), 16), obj.startswith("[")))
        elif f[0] == "VMAP_AREA" and i + 1 < len(lines):
            g = lines[i + 1].split()
            facts.append(("vmap", int(g[0], 16), int(g[1], 16), int(g[2], 16), int(g[4], 16)))
        elif f[0] == "PAGE" and i + 1 < len(lines):
            facts.append(("page", int(lines[i + 1].split()[0], 16)))
    return facts


def _whatis_facts(w: dict) -> list[tuple]:
    k = w["kind"]
    facts: list[tuple] = []
    if k == "symbol" and w.get("symbol"):
        facts.append(("symbol", w["symbol"], w["offset"]))
    elif k == "slab":
        facts.append(("slab", w["cache"], w["object"], w["allocated"]))
    elif k == "vmalloc":
        facts.append(("vmap", w["vmap_area"], w["vm_struct"], w["start"], w["end"]))
    if "page" in w and k not in ("vmalloc_lazy", "vmalloc_hole", "unmapped") and (k != "vmalloc" or w.get("mapped")):
        facts.append(("page", w["page"]))
    return facts


def c_kmem_addr_whatis(p: Program, d: Any) -> tuple:
    """``crash kmem ADDR`` on sample addresses of every kind = mmintro's whatis: the same
    symbol, slab object (cache, object start, allocated), vmap area, and struct page behind
    the address (nothing for unmapped ones).  Each row is labelled with whatis's kind."""
    from mmintro.views.whatis import whatis

    addrs = _whatis_samples(p, d)
    mine = [(hex(a), w["kind"], _whatis_facts(w)) for a, w in ((a, whatis(p, a)) for a in addrs)]
    theirs = [(hex(a), m[1], _kmem_addr_facts(crash(d, f"kmem {a:x}"))) for a, m in zip(addrs, mine)]
    return mine, theirs


WHATIS_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("crash kmem ADDR = whatis on every kind", c_kmem_addr_whatis),
]
