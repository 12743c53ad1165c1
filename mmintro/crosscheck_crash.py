"""Cross-check mmintro's reports against the real crash utility (crash 9) on the same snapshot.

Each row names the crash commands it needs; every command of every row runs in one crash session
in batch mode (:func:`mmintro.realkernel.crash.run_crash`, under a timeout), and each row compares
the numbers crash printed with mmintro's report of the same thing (meminfo, buddyinfo, zoneinfo,
slabinfo, kmem-s, vmallocinfo, vmstat, ps, vm, vtop, whatis, page, swaps).  crash knows nothing of the
simulator: it reads the vmlinux and the vmcore as it reads a kernel's.

Where crash 9.0.2 and the kernel's own /proc legitimately differ, the row compares what crash
computes and says so in its name:

* ``kmem -i`` COMMITTED is ``vm_committed_as.count`` (percpu_counter_read); /proc/meminfo's
  Committed_AS sums the per-CPU deltas (vm_memory_committed).
* ``kmem -s`` ALLOCATED counts every object not on a slab's freelist, so objects held in the
  per-CPU sheaves of 6.18 (vm_area_struct, maple_node) count as allocated, as /proc/slabinfo's
  active_objs does; ``mmintro kmem-s`` counts them exactly, as free.
* ``sys`` DATE: crash 9.0.2 looks for ``timekeeper``/``shadow_timekeeper``, which 6.13 folded into
  ``tk_core``; it prints the epoch on any 6.13+ kernel (fixed after 9.0.2).
* ``mount`` searches pid 1, 2, ... for a task to take the mount namespace from, without end: on a
  snapshot with no process the row is not applicable and the command is not run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmintro.crosscheck import CheckResult, _short
from mmintro.crosscheck import _diff as _list_diff
from mmintro.reader import Object, Program

__all__ = ["CRASH_CHECKS", "CrashCheck", "CrashStartError", "crash_commands", "run_crash_crosscheck"]

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


def _diff(a: Any, b: Any) -> str:
    """The first difference: of a key for dicts (missing on one side, or unequal values)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in b:
                return f"{key!r}: only in mmintro ({a[key]!r})"
            if key not in a:
                return f"{key!r}: only in crash ({b[key]!r})"
            if a[key] != b[key]:
                return f"{key!r}: {_short(a[key])} != {_short(b[key])}"
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"part {i}: " + _diff(x, y)
    return _list_diff(a, b)


def _pages(prog: Program, kb: int) -> int:
    return kb // (prog.page_size >> 10)


# -- the rows ----------------------------------------------------------------------------------
def sys_cmds(c: _Ctx) -> list[str]:
    return ["sys"]


def sys_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """RELEASE, VERSION, NODENAME, CPUS, TASKS, UPTIME, MACHINE MHz and PANIC = the kernel's own
    (init_uts_ns, online CPUs, the task list, jiffies_64, cpu_khz, the log)."""
    from mmintro.reader.helpers.percpu import for_each_online_cpu
    from mmintro.views.ps import ps

    p = c.prog
    f = dict(re.findall(r"^\s*([A-Z ]+): (.*)$", out["sys"], re.M))
    uts = p["init_uts_ns"].name
    hz = _config_hz(p)
    jif = p["jiffies_64"].value_() - ((-300 * hz) & 0xFFFFFFFF)  # INITIAL_JIFFIES
    secs = jif // hz
    uptime = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    panic = next((t for t in reversed(_dmesg(p)) if "Kernel panic - " in t), "")
    ours = {
        "RELEASE": uts.release.string_().decode(),
        "VERSION": uts.version.string_().decode(),
        "NODENAME": uts.nodename.string_().decode(),
        "CPUS": str(len(list(for_each_online_cpu(p)))),
        "TASKS": str(len(ps(p))),
        "UPTIME": uptime,
        "MACHINE": f"{uts.machine.string_().decode()}  ({p['cpu_khz'].value_() // 1000} Mhz)",
        "PANIC": f'"{panic}"',
    }
    return ours, {k: f.get(k, "").strip() for k in ours}


def _config_hz(p: Program) -> int:
    """CONFIG_HZ from the kernel's own IKCONFIG blob (kernel_config_data), as crash reads it."""
    import gzip

    start = p.symbol("kernel_config_data")
    end = p.symbol("kernel_config_data_end")
    text = gzip.decompress(p.read(start.address, end.address - start.address)).decode()
    m = re.search(r"^CONFIG_HZ=(\d+)$", text, re.M)
    if not m:
        raise ValueError("the IKCONFIG blob has no CONFIG_HZ")
    return int(m.group(1))


def _dmesg(p: Program) -> list[str]:
    from mmintro.reader.helpers.printk import dmesg_records

    return [r.text for r in dmesg_records(p)]


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
                        zone.zone_start_pfn.value_() << 12,
                        zone.zone_start_pfn.value_(),
                    )
                )
    ours_secs = [(s.nr, s.mem_map + (s.nr << 15) * 64) for s in for_each_present_section(p)]
    text = out["kmem -n"]
    theirs_nodes = {
        int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^\s+(\d+)\s+(\d+)\s+[0-9a-f]{16}", text, re.M)
    }
    theirs_zones = [
        (m.group(1), int(m.group(2)), int(m.group(3), 16), int(m.group(4)))
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
    from mmintro.reader.columns import present_pfn_mask

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


def ps_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Every task: PID, PPID, CPU, TASK, ST, %MEM, VSZ, RSS, COMM = ``mmintro ps`` (byte for byte)."""
    from mmintro.views.ps import ps, render

    return render(ps(c.prog)).splitlines(), out["ps"].splitlines()


def _need_pid(c: _Ctx) -> int:
    if not c.pids:
        raise _NA("no user processes")
    return c.pids[0]


def vm_cmds(c: _Ctx) -> list[str]:
    return [f"vm {c.pids[0]}", f"vm -p {c.pids[0]}"] if c.pids else []


def vm_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``vm PID``: MM, PGD, RSS, TOTAL_VM and every VMA = ``mmintro vm`` (byte for byte)."""
    from mmintro.views.vm import render, vm

    pid = _need_pid(c)
    return render(vm(c.prog, pid)).splitlines(), out[f"vm {pid}"].splitlines()


def vm_p_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``vm -p PID``: each mapped page's physical address = ``mmintro vtop --pid`` of it."""
    from mmintro.views.vm import vtop_pid

    pid = _need_pid(c)
    theirs = {
        int(m.group(1), 16): int(m.group(2), 16)
        for m in re.finditer(r"^([0-9a-f]+)\s+([0-9a-f]+)$", out[f"vm -p {pid}"], re.M)
    }
    ours = {}
    for va in theirs:
        ours[va] = vtop_pid(c.prog, pid, va)["phys"]
    if not theirs:
        raise _NA("no mapped page")
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
            ours[cmd] = v["phys"]
        else:
            ours[cmd] = vtop(c.prog, addr)["phys"]
        m = re.search(rf"^{f[-1]}\s+([0-9a-f]+)\s*$", out[cmd], re.M)
        theirs[cmd] = int(m.group(1), 16) if m else None
    return ours, theirs


def files_cmds(c: _Ctx) -> list[str]:
    return [f"files {pid}" for pid in c.pids[:3]]


def files_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``files PID``: every open fd with its FILE, DENTRY, INODE and path = the task's fd table
    (files->fdt->fd[], d_path)."""
    from mmintro.reader.helpers.task import d_path, find_task

    _need_pid(c)
    ours, theirs = {}, {}
    for pid in c.pids[:3]:
        t = find_task(c.prog, pid)
        rows = []
        if t.files.value_():
            fdt = t.files.fdt
            for fd in range(fdt.max_fds.value_()):
                f = fdt.fd[fd]
                if f.value_():
                    rows.append((fd, f.value_(), f.f_path.dentry.value_(), f.f_inode.value_(), d_path(f)))
        ours[pid] = rows
        theirs[pid] = [
            (int(m.group(1)), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16), m.group(5))
            for m in re.finditer(
                r"^\s*(\d+)\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+\S+\s+(.*)$", out[f"files {pid}"], re.M
            )
        ]
    return ours, theirs


def mount_cmds(c: _Ctx) -> list[str]:
    return ["mount"] if c.pids else []


def mount_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``mount``: MOUNT, SUPERBLK, TYPE, DEVNAME and DIRNAME of each mount of init's namespace =
    the namespace's mounts rbtree."""
    from mmintro.reader.helpers.task import find_task

    _need_pid(c)
    p = c.prog
    ns = find_task(p, c.pids[0]).nsproxy.mnt_ns
    off = p.types.struct("mount").offsetof("mnt_node")
    ours = []
    node = _rb_first(ns.mounts.rb_node.value_(), p)
    for _ in range(ns.nr_mounts.value_()):
        if not node:
            break
        mnt = Object(p, p.type("struct mount *"), node - off)
        sb = mnt.mnt.mnt_sb
        ours.append(
            (
                mnt.value_(),
                sb.value_(),
                sb.s_type.name.string_().decode(),
                mnt.mnt_devname.string_().decode(),
                _mount_dir(mnt),
            )
        )
        node = _rb_next(node, p)
    theirs = [
        (int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4), m.group(5))
        for m in re.finditer(r"^([0-9a-f]{16}) ([0-9a-f]{16}) (\S+)\s+(\S+)\s+(\S+)\s*$", out["mount"], re.M)
    ]
    return ours, theirs


def _mount_dir(mnt: Any) -> str:
    """Where the mount is mounted: "/" for the namespace's root, else its mountpoint's path."""
    from mmintro.reader.helpers.task import d_path

    if mnt.mnt_parent.value_() == mnt.value_():
        return "/"
    return d_path(mnt.mnt_mountpoint)


def _rb_node(p: Program, addr: int) -> Any:
    return Object(p, p.type("struct rb_node *"), addr)


def _rb_first(node: int, p: Program) -> int:
    while node:
        left = _rb_node(p, node).rb_left.value_()
        if not left:
            return node
        node = left
    return 0


def _rb_next(node: int, p: Program) -> int:
    n = _rb_node(p, node)
    if n.rb_right.value_():
        return _rb_first(n.rb_right.value_(), p)
    while True:
        parent = n.__rb_parent_color.value_() & ~3
        if not parent:
            return 0
        pn = _rb_node(p, parent)
        if pn.rb_left.value_() == n.value_():
            return parent
        n = pn


def log_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``log``: every record's text = the kernel log (printk ring buffer) as mmintro reads it."""
    theirs = [re.sub(r"^\[\s*\d+\.\d+\] ", "", line) for line in out["log"].splitlines() if line]
    return _dmesg(c.prog), theirs


def rd_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``rd linux_banner 8``: the 8 words at the banner = memory as mmintro reads it."""
    p = c.prog
    a = p.symbol("linux_banner").address
    data = p.read(a, 64)
    ours = [int.from_bytes(data[i : i + 8], "little") for i in range(0, 64, 8)]
    theirs = [
        int(w, 16)
        for line in out["rd linux_banner 8"].splitlines()
        for w in line.split(":", 1)[1].split()[:2]
        if ":" in line
    ]
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


CRASH_CHECKS: list[CrashCheck] = [
    CrashCheck("crash sys = uname, CPUs, tasks, uptime, panic message", sys_cmds, sys_cmp),
    CrashCheck("crash kmem -i = meminfo (COMMITTED = vm_committed_as.count)", lambda c: ["kmem -i"], kmem_i_cmp),
    CrashCheck("crash kmem -f = buddyinfo, zone free pages", lambda c: ["kmem -f"], kmem_f_cmp),
    CrashCheck("crash kmem -z = zoneinfo", lambda c: ["kmem -z"], kmem_z_cmp),
    CrashCheck("crash kmem -n = nodes, zones, memory sections", lambda c: ["kmem -n"], kmem_n_cmp),
    CrashCheck("crash kmem -s = kmem-s (ALLOCATED + objects in sheaves)", lambda c: ["kmem -s"], kmem_s_cmp),
    CrashCheck("crash kmem -S CACHE = allocated objects", kmem_S_cmds, kmem_S_cmp),
    CrashCheck("crash kmem -v = vmallocinfo areas", lambda c: ["kmem -v"], kmem_v_cmp),
    CrashCheck("crash kmem -V = vmstat", lambda c: ["kmem -V"], kmem_V_cmp),
    CrashCheck("crash kmem -p = page (count, samples)", lambda c: ["kmem -p"], kmem_p_cmp),
    CrashCheck("crash kmem -h = hstates", lambda c: ["kmem -h"], kmem_h_cmp),
    CrashCheck("crash kmem ADDR = whatis (page, slab object)", kmem_addr_cmds, kmem_addr_cmp),
    CrashCheck("crash ps = mmintro ps", lambda c: ["ps"], ps_cmp),
    CrashCheck("crash vm PID = mmintro vm", vm_cmds, vm_cmp),
    CrashCheck("crash vm -p PID = vtop of each page", vm_cmds, vm_p_cmp),
    CrashCheck("crash vtop / vtop -c PID = mmintro vtop", vtop_cmds, vtop_cmp),
    CrashCheck("crash files PID = fd tables", files_cmds, files_cmp),
    CrashCheck("crash mount = mount namespace", mount_cmds, mount_cmp),
    CrashCheck("crash log = dmesg", lambda c: ["log"], log_cmp),
    CrashCheck("crash rd linux_banner = memory", lambda c: ["rd linux_banner 8"], rd_cmp),
    CrashCheck("crash struct page ADDR = mmintro page", struct_page_cmds, struct_page_cmp),
    CrashCheck("crash swap = mmintro swaps --crash", lambda c: ["swap"], swap_cmp),
    CrashCheck("crash p node_data = node_data[]", lambda c: ["p node_data"], node_data_cmp),
]


def crash_commands(ctx: _Ctx, checks: list[CrashCheck]) -> list[str]:
    out: list[str] = []
    for ch in checks:
        for cmd in ch.commands(ctx):
            if cmd not in out:
                out.append(cmd)
    return out


class CrashStartError(Exception):
    """crash did not get to run a command on the snapshot (its own first error line)."""


def run_crash_crosscheck(
    path: str, only: list[str] | None = None, timeout: float = 300.0, raise_on_start: bool = False
) -> list[CheckResult]:
    """Run every row on the snapshot at ``path`` in one crash 9 session.

    If crash cannot open the snapshot, every row fails with crash's own first error line (or,
    with ``raise_on_start``, :class:`CrashStartError` says it); if it does not finish within
    ``timeout`` seconds, the rows whose commands did not finish say so."""
    from mmintro.reader import open_snapshot
    from mmintro.realkernel.crash import fetch_crash, run_crash
    from mmintro.snapshot.writer import snapshot_paths

    prog = open_snapshot(path)
    core, vmlinux = snapshot_paths(path)
    ctx = _context(prog)
    checks = [c for c in CRASH_CHECKS if not only or any(o in c.name for o in only)]
    run = run_crash(fetch_crash(), vmlinux, core, crash_commands(ctx, checks), timeout=timeout)
    err = run.error()
    if err and not run.outputs and raise_on_start and not run.timed_out:
        raise CrashStartError(f"crash 9 cannot open {path}: {err}")
    results = []
    for ch in checks:
        cmds = ch.commands(ctx)
        missing = [c for c in cmds if c not in run.outputs]
        if err and not run.outputs:
            results.append(CheckResult(ch.name, "-", "error", False, err, oracle="crash"))
            continue
        if missing:
            why = (
                f"crash did not finish {missing[0]!r} within {timeout:g} s"
                if run.timed_out
                else f"crash printed nothing for {missing[0]!r} ({err or 'it exited'})"
            )
            results.append(CheckResult(ch.name, "-", "error", False, why, oracle="crash"))
            continue
        try:
            a, b = ch.compare(ctx, run.outputs)
            results.append(
                CheckResult(ch.name, _short(a), _short(b), a == b, "" if a == b else _diff(a, b), oracle="crash")
            )
        except _NA as e:
            results.append(CheckResult(ch.name, "-", "-", True, "", str(e), oracle="crash"))
        except Exception as e:  # a row that cannot run is a failed row, not a crash of ours
            results.append(CheckResult(ch.name, "error", "error", False, f"{type(e).__name__}: {e}", oracle="crash"))
    return results
