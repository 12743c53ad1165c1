"""/proc/vmstat (mm/vmstat.c: vmstat_start, vmstat_show), read from a snapshot.

The global counters are read the way the kernel's accessors read them (named after them):
``global_zone_page_state`` (``vm_zone_stat[]``), ``global_numa_event_state`` (``vm_numa_event[]``
after ``fold_vm_numa_events``), ``global_node_page_state_pages`` (``vm_node_stat[]``),
``global_dirty_limits`` (mm/page-writeback.c) and ``all_vm_events`` (the per-CPU
``vm_event_states``).  :func:`vmstat` puts them in ``vmstat_text[]`` order; :func:`render`
prints ``name value`` lines; :func:`parse` reads /proc/vmstat text (ours or a real kernel's).
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.helpers.mmzone import for_each_populated_zone
from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.reader.x86_pgtable import LEVELS_4
from mmintro.views.vmstat_names import THP_PRINTED_ITEMS, stat_names

__all__ = [
    "DirtyLimits",
    "all_vm_events",
    "domain_dirty_limits",
    "global_dirty_limits",
    "global_dirtyable_memory",
    "global_node_page_state_pages",
    "global_numa_event_state",
    "global_zone_page_state",
    "hpage_pmd_nr",
    "parse",
    "render",
    "vmstat",
]

# include/linux/limits.h: the dirty limits are kept below 2^32 pages (domain_dirty_limits).
UINT_MAX = (1 << 32) - 1
# vmstat_show(): printed after the last item "to avoid breaking userspace" (NFS unstable pages
# were folded into writeback in 5.9).
LEGACY_TRAILER = (("nr_unstable", 0),)


def _counters(arr: Object) -> list[int]:
    """The values of an ``atomic_long_t[]`` array, read in one go."""
    return [v["counter"] if isinstance(v, dict) else v for v in arr.value_()]


def hpage_pmd_nr() -> int:
    """``HPAGE_PMD_NR``: base pages per PMD-mapped THP (512 on x86-64)."""
    return 1 << (LEVELS_4[-2].shift - LEVELS_4[-1].shift)


def global_zone_page_state(prog: Program, item: int | str) -> int:
    """``global_zone_page_state()``: ``vm_zone_stat[item]``, negative drift read as 0.

    :param item: ``enum zone_stat_item`` value or enumerator name
    """
    i = prog.types.const(item) if isinstance(item, str) else item
    return max(0, prog["vm_zone_stat"][i].counter.value_())


def global_node_page_state_pages(prog: Program, item: int | str) -> int:
    """``global_node_page_state_pages()``: ``vm_node_stat[item]`` (pages, also for the ``_B``
    items, which the kernel keeps in pages), negative drift read as 0.

    :param item: ``enum node_stat_item`` value or enumerator name
    """
    i = prog.types.const(item) if isinstance(item, str) else item
    return max(0, prog["vm_node_stat"][i].counter.value_())


def _pending_numa_events(prog: Program, cpus: list[int]) -> list[int]:
    """Σ over populated zones and online CPUs of ``per_cpu_zonestats->vm_numa_event[]``: what
    ``fold_vm_numa_events()`` would add to the zone and global counters before printing."""
    n = prog.types.const("NR_VM_NUMA_EVENT_ITEMS")
    out = [0] * n
    for zone in for_each_populated_zone(prog):
        for cpu in cpus:
            ev = per_cpu_ptr(zone.per_cpu_zonestats, cpu).vm_numa_event.value_()
            for i in range(n):
                out[i] += ev[i]
    return out


def global_numa_event_state(prog: Program) -> list[int]:
    """``global_numa_event_state()`` of every ``enum numa_stat_item``, after
    ``fold_vm_numa_events()``."""
    pending = _pending_numa_events(prog, list(for_each_online_cpu(prog)))
    return [v + p for v, p in zip(_counters(prog["vm_numa_event"]), pending)]


def all_vm_events(prog: Program) -> list[int]:
    """``all_vm_events()``: each ``enum vm_event_item`` summed over the online CPUs'
    ``vm_event_states`` (sum_vm_events; a CPU going offline has its events folded into a
    live one by vm_events_fold_cpu, so nothing is lost by skipping offline CPUs)."""
    n = prog.types.const("NR_VM_EVENT_ITEMS")
    total = [0] * n
    states = prog["vm_event_states"].address_of_()
    for cpu in for_each_online_cpu(prog):
        ev = per_cpu_ptr(states, cpu).event.value_()
        for i in range(n):
            total[i] += ev[i]
    return total


class DirtyLimits(NamedTuple):
    """``global_dirty_limits()``: the global writeback thresholds, in pages."""

    background: int
    """``nr_dirty_background_threshold``."""
    dirty: int
    """``nr_dirty_threshold``."""


def global_dirtyable_memory(free: int, totalreserve: int, file_lru: int) -> int:
    """mm/page-writeback.c ``global_dirtyable_memory()``: free pages minus the kernel's
    reserves plus the file LRU, plus one so it is never 0 (x86-64 has no highmem to subtract).

    :param free: global ``NR_FREE_PAGES``
    :param totalreserve: ``totalreserve_pages``
    :param file_lru: global ``NR_INACTIVE_FILE + NR_ACTIVE_FILE``
    """
    x = free - min(free, totalreserve)
    return x + file_lru + 1


def domain_dirty_limits(
    avail: int, dirty_ratio: int, background_ratio: int, dirty_bytes: int, background_bytes: int, page_size: int = 4096
) -> DirtyLimits:
    """mm/page-writeback.c ``domain_dirty_limits()`` for the global domain.

    The ratios are turned into parts per PAGE_SIZE first ("for higher precision"), which is why
    20 % of 6100864 pages is 1219874 and not 1220172 (the reference capture's value).  The
    real-time-task boost does not apply: the reader of /proc/vmstat is not an RT task.
    """
    ratio = dirty_ratio * page_size // 100
    bg_ratio = background_ratio * page_size // 100
    thresh = -(-dirty_bytes // page_size) if dirty_bytes else ratio * avail // page_size
    bg_thresh = -(-background_bytes // page_size) if background_bytes else bg_ratio * avail // page_size
    thresh = min(thresh, UINT_MAX)
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    return DirtyLimits(bg_thresh, thresh)


def global_dirty_limits(prog: Program) -> DirtyLimits:
    """``global_dirty_limits()`` from the snapshot's counters and the vm.dirty_* sysctls
    (``vm_dirty_ratio``, ``dirty_background_ratio``, ``vm_dirty_bytes``,
    ``dirty_background_bytes``)."""
    file_lru = global_node_page_state_pages(prog, "NR_INACTIVE_FILE") + global_node_page_state_pages(
        prog, "NR_ACTIVE_FILE"
    )
    avail = global_dirtyable_memory(
        global_zone_page_state(prog, "NR_FREE_PAGES"), prog["totalreserve_pages"].value_(), file_lru
    )
    return domain_dirty_limits(
        avail,
        prog["vm_dirty_ratio"].value_(),
        prog["dirty_background_ratio"].value_(),
        prog["vm_dirty_bytes"].value_(),
        prog["dirty_background_bytes"].value_(),
        prog.page_size,
    )


def _global_only(prog: Program, name: str) -> int:
    """A static ``atomic_long_t`` of mm/vmstat.c (``nr_memmap_pages``...), 0 if the snapshot
    does not have the symbol (not modelled)."""
    if name not in prog.symbols.by_name:
        return 0
    return prog[name].counter.value_()


def vmstat(prog: Program) -> dict[str, int]:
    """Every /proc/vmstat line as ``{name: value}``, in the kernel's order."""
    types = prog.types
    out: dict[str, int] = {}
    zone_stat = _counters(prog["vm_zone_stat"])
    for i, _e, name in stat_names(types, "zone_stat_item", "NR_VM_ZONE_STAT_ITEMS"):
        out[name] = max(0, zone_stat[i])
    numa = global_numa_event_state(prog)
    for i, _e, name in stat_names(types, "numa_stat_item", "NR_VM_NUMA_EVENT_ITEMS"):
        out[name] = numa[i]
    node_stat = _counters(prog["vm_node_stat"])
    thp = hpage_pmd_nr()
    for i, e, name in stat_names(types, "node_stat_item", "NR_VM_NODE_STAT_ITEMS"):
        v = max(0, node_stat[i])
        out[name] = v // thp if e in THP_PRINTED_ITEMS else v  # vmstat_item_print_in_thp()
    limits = global_dirty_limits(prog)
    global_only = {
        "NR_DIRTY_THRESHOLD": limits.dirty,
        "NR_DIRTY_BG_THRESHOLD": limits.background,
        "NR_MEMMAP_PAGES": _global_only(prog, "nr_memmap_pages"),
        "NR_MEMMAP_BOOT_PAGES": _global_only(prog, "nr_memmap_boot_pages"),
    }
    for _i, e, name in stat_names(types, "vm_stat_item", "NR_VM_STAT_ITEMS"):
        out[name] = global_only.get(e, 0)  # an item this module does not know: not modelled
    events = all_vm_events(prog)
    for i, e, name in stat_names(types, "vm_event_item", "NR_VM_EVENT_ITEMS"):
        out[name] = events[i] // 2 if e in ("PGPGIN", "PGPGOUT") else events[i]  # sectors -> kB
    out.update(LEGACY_TRAILER)
    return out


def render(stats: dict[str, int]) -> str:
    """The /proc/vmstat text: ``name value`` per line."""
    return "".join(f"{name} {v}\n" for name, v in stats.items())


def parse(text: str) -> dict[str, int]:
    """/proc/vmstat text → ``{name: value}`` in file order."""
    out: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"vmstat: line {n} is not 'name value': {line!r}")
        if parts[0] in out:
            raise ValueError(f"vmstat: line {n}: {parts[0]!r} appears twice")
        out[parts[0]] = int(parts[1])
    return out
