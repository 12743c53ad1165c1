"""crash utility rows for memory: ``kmem -i/-f/-z/-n/-s/-S/-v/-V/-p/-h``, ``kmem ADDR``, ``vtop``,
``struct page``, ``swap``, ``p node_data``.
"""

from __future__ import annotations

import re

from mmintro.crosscheck.answers import Addr, as_addr
from mmintro.crosscheck.crash_context import _Ctx, _pages, _sheaf_caches
from mmintro.reader import Program
from mmintro.reader.columns import present_pfn_mask


def kmem_i_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """TOTAL MEM, FREE, USED, BUFFERS, CACHED, SLAB, TOTAL HUGE, HUGE FREE, COMMIT LIMIT (pages) =
    /proc/meminfo (COMMIT LIMIT without swap where crash cannot see it); COMMITTED = vm_committed_as.count (what crash reads; meminfo sums the CPUs)."""
    from mmintro.views.meminfo import meminfo

    p = c.prog
    kb = {line.name: line.value for line in meminfo(p)}
    theirs = {
        m.group(1): int(m.group(2))
        for m in re.finditer(
            r"^\s*(TOTAL MEM|FREE|USED|BUFFERS|CACHED|SLAB|TOTAL HUGE|HUGE FREE|COMMIT LIMIT|COMMITTED)"
            r"\s+(\d+)",
            out["kmem -i"],
            re.M,
        )
    }
    total, free = _pages(p, kb["MemTotal"]), _pages(p, kb["MemFree"])
    hp_total = sum(h.nr_huge_pages.value_() << h.order.value_() for h in _hstates(p))  # in base pages
    hp_free = sum(h.free_huge_pages.value_() << h.order.value_() for h in _hstates(p))
    # crash 9.0.2 adds swap to COMMIT LIMIT (and prints TOTAL SWAP) only when the kernel has
    # swapper_space(s), which 6.18's swap tables replaced: on 6.18 its limit leaves swap out.
    limit = _pages(p, kb["CommitLimit"])
    try:
        p.symbol("swapper_spaces")
    except LookupError:
        try:
            p.symbol("swapper_space")
        except LookupError:
            limit -= p["total_swap_pages"].value_()
    ours = {
        "TOTAL MEM": total,
        "FREE": free,
        "USED": total - free,
        "BUFFERS": _pages(p, kb["Buffers"]),
        "CACHED": _pages(p, kb["Cached"]),
        "SLAB": _pages(p, kb["Slab"]),
        "TOTAL HUGE": hp_total,
        "HUGE FREE": hp_free,
        "COMMIT LIMIT": limit,
        "COMMITTED": max(p["vm_committed_as"].count.value_(), 0),
    }
    return ours, theirs


def _hstates(p: Program) -> list:
    return [p["hstates"][i] for i in range(p["hugetlb_max_hstate"].value_())]


def kmem_f_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Per zone: FREE, and the blocks of every order summed over migratetypes = buddyinfo."""
    from mmintro.views.buddyinfo import buddyinfo
    from mmintro.views.zoneinfo import zoneinfo

    free = {(z.node, z.zone): z.pages["free"] for z in zoneinfo(c.prog) if z.populated}
    ours = {(r.node, r.zone): (free.get((r.node, r.zone)), r.nr_free) for r in buddyinfo(c.prog)}
    theirs: dict = {}
    node, zone, expect = 0, None, ""
    for line in out["kmem -f"].splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] in ("NODE", "ZONE", "AREA"):
            expect = f[0]
            continue
        if expect == "NODE" and f[0].isdigit():
            node, expect = int(f[0]), ""
        elif expect == "ZONE" and len(f) >= 4 and f[0].isdigit():
            zone, expect = (node, f[1]), ""
            theirs[zone] = (int(f[3]), [0] * 11)
        elif zone is not None and len(f) == 5 and f[0].isdigit() and f[1].endswith("k"):
            orders = theirs[zone][1]
            o = int(f[0])
            orders.extend([0] * (o + 1 - len(orders)))
            orders[o] += int(f[3])
    return ours, {k: v for k, v in theirs.items() if k in ours}


def kmem_z_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Per populated zone: SIZE (spanned), PRESENT, MIN/LOW/HIGH (zone->watermark[], zoneinfo's less
    the boost) and NR_FREE_PAGES = zoneinfo."""
    from mmintro.views.zoneinfo import zoneinfo

    ours, theirs = {}, {}
    for z in zoneinfo(c.prog):
        if z.populated:  # crash prints "[unpopulated]" for the others
            boost = z.pages["boost"]  # zoneinfo's min/low/high include watermark_boost; crash prints watermark[]
            ours[(z.node, z.zone)] = (
                z.pages["spanned"],
                z.pages["present"],
                z.pages["min"] - boost,
                z.pages["low"] - boost,
                z.pages["high"] - boost,
                z.stats.get("nr_free_pages"),
            )
    for block in out["kmem -z"].split("NODE: ")[1:]:
        m = re.match(r"(\d+)\s+ZONE: \d+\s+ADDR: \S+\s+NAME: \"(\w+)\"", block)
        if not m:
            continue

        def g(pat: str, block: str = block) -> int | None:
            found = re.search(pat, block)
            return int(found.group(1)) if found else None

        wm = re.search(r"MIN/LOW/HIGH: (\d+)/(\d+)/(\d+)", block)
        present = g(r"PRESENT: (\d+)")  # printed only where it differs from SIZE
        theirs[(int(m.group(1)), m.group(2))] = (
            g(r"SIZE: (\d+)"),
            present if present is not None else g(r"SIZE: (\d+)"),
            *((int(x) for x in wm.groups()) if wm else (0, 0, 0)),
            g(r"NR_FREE_PAGES: (\d+)"),
        )
    return ours, {k: v for k, v in theirs.items() if k in ours}


def kmem_n_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Per node: SIZE (spanned pages) and each populated zone's START_PADDR/START_MAPNR; the
    present memory sections with their mem_map = mmintro's nodes, zones and sections."""
    from mmintro.reader.helpers.mmzone import for_each_online_pgdat, for_each_present_section

    p = c.prog
    ours_nodes = {pg.node_id.value_(): pg.node_spanned_pages.value_() for pg in for_each_online_pgdat(p)}
    ours_zones = []
    for pg in for_each_online_pgdat(p):
        for z in range(p.types.const("__MAX_NR_ZONES")):
            zone = pg.node_zones[z]
            if zone.spanned_pages.value_():
                ours_zones.append(
                    (
                        zone.name.string_().decode(),
                        zone.spanned_pages.value_(),
                        Addr(zone.zone_start_pfn.value_() << 12),
                        zone.zone_start_pfn.value_(),
                    )
                )
    ours_secs = [(s.nr, s.mem_map + (s.nr << 15) * 64) for s in for_each_present_section(p)]
    text = out["kmem -n"]
    theirs_nodes = {
        int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^\s+(\d+)\s+(\d+)\s+[0-9a-f]{16}", text, re.M)
    }
    theirs_zones = [
        (m.group(1), int(m.group(2)), Addr(int(m.group(3), 16)), int(m.group(4)))
        for m in re.finditer(r"^\s+\d+\s+(\w+)\s+(\d+)\s+[0-9a-f]{16}\s+([0-9a-f]+)\s+(\d+)$", text, re.M)
    ]
    theirs_secs = [
        (int(m.group(1)), int(m.group(2), 16))
        for m in re.finditer(r"^\s*(\d+)\s+[0-9a-f]{16}\s+[0-9a-f]{16}\s+([0-9a-f]{16})\s+P", text, re.M)
    ]
    return (ours_nodes, ours_zones, ours_secs), (theirs_nodes, theirs_zones, theirs_secs)


def _sheaf_held(p: Program) -> dict[str, int]:
    """Free objects held in the per-CPU sheaves and the barns, per cache with sheaves."""
    from mmintro.views.kmem_s import cache_detail

    out = {}
    for name in _sheaf_caches(p):
        d = cache_detail(p, name)
        out[name] = sum(c["sheaf_main"] + c["sheaf_spare"] for c in d["cpus"]) + sum(
            sum(n["barn_full_sheaves"]) for n in d["nodes"]
        )
    return out


def kmem_s_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Per cache: CACHE, OBJSIZE, ALLOCATED, TOTAL, SLABS and SSIZE = ``mmintro kmem-s``; crash 9.0.2
    knows no sheaves, so its ALLOCATED counts the objects held in sheaves too (census + held)."""
    from mmintro.views.kmem_s import kmem_s

    ours = {}
    held = _sheaf_held(c.prog)
    for r in kmem_s(c.prog):
        ours[r.name] = (r.cache, r.objsize, r.allocated + held.get(r.name, 0), r.total, r.slabs, r.ssize >> 10)
    theirs = {}
    for m in re.finditer(r"^([0-9a-f]{16})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)k\s+(\S+)$", out["kmem -s"], re.M):
        theirs[m.group(7)] = (int(m.group(1), 16), *(int(m.group(i)) for i in range(2, 7)))
    return ours, theirs


def kmem_S_cmds(c: _Ctx) -> list[str]:
    return [f"kmem -S {n}" for n in c.caches]


def kmem_S_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """kmalloc-64 and the fullest cache without sheaves: ALLOCATED/TOTAL/SLABS, and the allocated
    objects ([ADDR] lines) of the slabs crash lists object by object (the CPU and CPU-partial
    slabs) = mmintro's census of those slabs."""
    from mmintro.reader.helpers.slab import find_slab_cache, slab_census

    ours, theirs = {}, {}
    for name in c.caches:
        text = out[f"kmem -S {name}"]
        s = find_slab_cache(c.prog, name).value_()
        census = slab_census(c.prog, [s])[s]
        # the slabs whose objects crash lists: the CPU and CPU-partial slabs (do_slab_slub VERBOSE);
        # node partial slabs get their summary line only
        slabs = {
            int(m.group(1), 16)
            for m in re.finditer(
                r"^\s+[0-9a-f]{16}\s+([0-9a-f]{16})\s+\d+\s+\d+\s+\d+\s+\d+\n\s+FREE / \[ALLOCATED\]$", text, re.M
            )
        }
        pob = c.prog["page_offset_base"].value_()
        listed = [
            int(a)
            for a, pfn in zip(census.objects[census.allocated], census.slab_pfn[census.allocated])
            if pob + (int(pfn) << 12) in slabs
        ]
        head = re.search(r"^[0-9a-f]{16}\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)", text, re.M)
        from mmintro.views.kmem_s import kmem_s

        row = next(r for r in kmem_s(c.prog) if r.name == name)
        ours[name] = ((row.allocated, row.total, row.slabs), sorted(listed))
        theirs[name] = (
            tuple(int(x) for x in head.groups()) if head else None,
            sorted(int(x, 16) for x in re.findall(r"^\s+\[([0-9a-f]{16})\]$", text, re.M)),
        )
    return ours, theirs


def kmem_v_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Every busy vmap area's range and size = /proc/vmallocinfo's areas less the unpurged ones."""
    from mmintro.views.vmallocinfo import vmallocinfo

    # the busy areas (crash walks each vmap node's busy list); /proc/vmallocinfo also shows the
    # lazily freed ones ("unpurged vm_area", show_purge_info)
    ours = sorted((r.start, r.end, r.end - r.start) for r in vmallocinfo(c.prog) if "unpurged vm_area" not in r.words)
    theirs = sorted(
        (int(m.group(1), 16), int(m.group(2), 16), int(m.group(3)))
        for m in re.finditer(
            r"^[0-9a-f]{16}\s+[0-9a-f]{16}\s+([0-9a-f]{16}) - ([0-9a-f]{16})\s+(\d+)$", out["kmem -v"], re.M
        )
    )
    return ours, theirs


def kmem_V_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """VM_ZONE_STAT, VM_NODE_STAT and VM_EVENT_STATES (summed over CPUs) = /proc/vmstat's lines
    of the same names (pgpgin/pgpgout: crash prints the sector counts, /proc/vmstat KiB)."""
    from mmintro.views.vmstat import vmstat

    ours = vmstat(c.prog)
    theirs = {}
    for m in re.finditer(r"^\s*([A-Z][A-Z0-9_]+): (\d+)$", out["kmem -V"], re.M):
        name = m.group(1).lower()
        name = {
            "nr_slab_reclaimable_b": "nr_slab_reclaimable",
            "nr_slab_unreclaimable_b": "nr_slab_unreclaimable",
            "nr_free_cma_pages": "nr_free_cma",
        }.get(name, name)
        theirs[name] = int(m.group(2))
    for name in ("pgpgin", "pgpgout"):  # counted in sectors; /proc/vmstat prints KiB (vmstat_start: / 2)
        if name in theirs:
            theirs[name] //= 2
    common = sorted(set(ours) & set(theirs))
    if len(common) < 40:
        return f"{len(common)} common counters", ""
    return {k: ours[k] for k in common}, {k: theirs[k] for k in common}


def kmem_p_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """One line per struct page; for 64 sampled pages PHYSICAL, MAPPING, INDEX, CNT and FLAGS =
    ``mmintro page``."""
    from mmintro.views.page import page_info

    p = c.prog
    lines = {}
    for m in re.finditer(
        r"^([0-9a-f]{16})\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+(-?\d+)\s+([0-9a-f]+)", out["kmem -p"], re.M
    ):
        lines[int(m.group(2), 16) >> 12] = (
            int(m.group(3), 16),
            int(m.group(4), 16),
            int(m.group(5)),
            int(m.group(6), 16),
        )
    pfns = sorted(lines)
    sample = pfns[:: max(1, len(pfns) // 64)]
    ours = {}
    for pfn in sample:
        i = page_info(p, pfn)
        ours[pfn] = (i["mapping"], i["index"], i["refcount"], i["flags"])

    return (int(present_pfn_mask(p).sum()), ours), (len(lines), {k: lines[k] for k in sample})


def kmem_h_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Each hstate's FREE and TOTAL huge pages = the hstates (HugePages_* of each size)."""
    ours = {h.name.string_().decode(): (h.free_huge_pages.value_(), h.nr_huge_pages.value_()) for h in _hstates(c.prog)}
    theirs = {
        m.group(3): (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(r"^[0-9a-f]{16}\s+\S+\s+(\d+)\s+(\d+)\s+(\S+)$", out["kmem -h"], re.M)
    }
    return ours, theirs


def kmem_addr_cmds(c: _Ctx) -> list[str]:
    return [f"kmem {c.page_addr:x}"] + ([f"kmem {c.slab_obj:x}"] if c.slab_obj else [])


def kmem_addr_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``kmem ADDR`` of a struct page (its PHYSICAL) and of an allocated kmalloc-64 object (its
    cache and slab) = ``mmintro whatis``."""
    from mmintro.views.whatis import whatis

    ours, theirs = [], []
    w = whatis(c.prog, c.page_addr)
    ours.append(("struct page", w.get("pfn")))
    m = re.search(rf"^{c.page_addr:016x}\s+([0-9a-f]+)", out[f"kmem {c.page_addr:x}"], re.M)
    theirs.append(("struct page", int(m.group(1), 16) >> 12 if m else None))
    if c.slab_obj:
        w = whatis(c.prog, c.slab_obj)
        ours.append((w.get("cache_name"), w.get("object"), w.get("allocated")))
        o = out[f"kmem {c.slab_obj:x}"]
        name = re.search(r"^[0-9a-f]{16}\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+k\s+(\S+)$", o, re.M)
        obj = re.search(r"^\s+(\[)?([0-9a-f]{16})\]?$", o, re.M)
        theirs.append(
            (name.group(1) if name else None, int(obj.group(2), 16) if obj else None, bool(obj and obj.group(1)))
        )
    return ours, theirs


def vtop_cmds(c: _Ctx) -> list[str]:
    p = c.prog
    addrs = [p.symbol("init_mm").address, p["page_offset_base"].value_() + 0x1234000, c.page_addr]
    out = [f"vtop {a:x}" for a in addrs]
    if c.pids and c.user_addr is not None:
        out.append(f"vtop -c {c.pids[0]} {c.user_addr:x}")
    return out


def vtop_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``vtop`` of a kernel-image, a direct-map and a vmemmap address, and ``vtop -c PID`` of a
    user address: the PHYSICAL address and the page size = ``mmintro vtop``."""
    from mmintro.views.vm import vtop_pid
    from mmintro.views.vtop import vtop

    ours, theirs = {}, {}
    for cmd in vtop_cmds(c):
        f = cmd.split()
        addr = int(f[-1], 16)
        if f[1] == "-c":
            v = vtop_pid(c.prog, int(f[2]), addr)
            ours[cmd] = as_addr(v["phys"])
        else:
            ours[cmd] = as_addr(vtop(c.prog, addr)["phys"])
        m = re.search(rf"^{f[-1]}\s+([0-9a-f]+)\s*$", out[cmd], re.M)
        theirs[cmd] = Addr(int(m.group(1), 16)) if m else None
    return ours, theirs


def swap_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``swap``: every line of crash's table (swap_info_struct, PARTITION or FILE, size, used,
    percent, priority, path; memory.c dump_swap_info) = ``mmintro swaps --crash``."""
    from mmintro.views.swaps import render_crash, swaps

    ours = [ln.rstrip() for ln in render_crash(swaps(c.prog)).splitlines() if ln.strip()]
    theirs = [ln.rstrip() for ln in out["swap"].splitlines() if ln.strip()]
    return ours, theirs


def struct_page_cmds(c: _Ctx) -> list[str]:
    return [f"struct page {c.page_addr:x}"]


def struct_page_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``struct page ADDR``: flags and _refcount = ``mmintro page``."""
    from mmintro.views.page import page_info

    p = c.prog
    pfn = (c.page_addr - p["vmemmap_base"].value_()) // p.types.struct("page").size
    i = page_info(p, pfn)
    o = out[f"struct page {c.page_addr:x}"]
    f = re.search(r"^\s*f = (\d+)", o, re.M)
    r = re.search(r"_refcount = \{\s*counter = (-?\d+)", o, re.M)
    return (i["flags"], i["refcount"]), (int(f.group(1)) if f else None, int(r.group(1)) if r else None)


def node_data_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``p node_data``: the pglist_data pointers = node_data[] as mmintro reads it."""
    p = c.prog
    nd = p["node_data"]
    ours = [nd[i].value_() for i in range(8)]
    m = re.search(r"\{(.*)", out["p node_data"], re.S)
    theirs = [int(x, 16) for x in re.findall(r"0x[0-9a-f]+", m.group(1))[:8]] if m else []
    return ours, theirs
