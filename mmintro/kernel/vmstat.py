"""Memory counters (mm/vmstat.c): zone, node, NUMA and event counters.

The simulator keeps its books in Python; refresh() writes them as a quiescent kernel holds
them after vmstat_update has run everywhere: every per-CPU zone/node/NUMA delta folded
into the zone and node atomics and the global vm_zone_stat / vm_node_stat / vm_numa_event
sums, and each CPU's vm events (which are never folded) in its ``vm_event_states``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def zone_counters(k: Kernel, z) -> dict[str, int]:
    blocks = sum(n << o for o, n in enumerate(z.nr_free) if o >= kc.PAGEBLOCK_ORDER)
    c = {"NR_FREE_PAGES": z.free_pages, "NR_FREE_PAGES_BLOCKS": blocks}
    c.update(z.vm_stat)
    return c


def refresh(k: Kernel) -> None:
    T = k.T
    zone_items = T.enum("zone_stat_item")
    node_items = T.enum("node_stat_item")
    glob_zone = {n: 0 for n in zone_items if not n.startswith("NR_VM_")}
    glob_numa = [0] * T.const("NR_VM_NUMA_EVENT_ITEMS")
    for zs in k.zones:
        for z in zs:
            k.kmem.set(z.addr, "zone", "managed_pages", z.managed)
            for name, v in zone_counters(k, z).items():
                k.kmem.set(z.addr, "zone", f"vm_stat[{zone_items[name]}]", v)
                glob_zone[name] += v
            for i, v in enumerate(z.numa_events):
                k.kmem.set(z.addr, "zone", f"vm_numa_event[{i}]", v)
                glob_numa[i] += v
    for name, v in glob_zone.items():
        k.kmem.write_u64(k.sym("vm_zone_stat") + 8 * zone_items[name], v)
    for i, v in enumerate(glob_numa):
        k.kmem.write_u64(k.sym("vm_numa_event") + 8 * i, v)
    node_stats = k.node_vm_stat
    glob_node: dict[str, int] = {}
    for nid, pg in enumerate(k.pgdat):
        for name, v in node_stats[nid].items():
            if name.endswith("_B"):
                # vmstat_item_in_bytes(): the books count bytes, the counters pages
                # (__mod_node_page_state shifts the delta by PAGE_SHIFT).
                v >>= PAGE_SHIFT
            k.kmem.set(pg, "pglist_data", f"vm_stat[{node_items[name]}]", v)
            glob_node[name] = glob_node.get(name, 0) + v
    for name, v in glob_node.items():
        k.kmem.write_u64(k.sym("vm_node_stat") + 8 * node_items[name], v)
    events = k.sym("vm_event_states")
    for cpu, counts in enumerate(k.vm_events):
        base = k.per_cpu_ptr(events, cpu)
        k.kmem.write_bytes(base, b"".join(v.to_bytes(8, "little") for v in counts))
    k.kmem.write_u64(k.sym("_totalram_pages"), sum(z.managed for zs in k.zones for z in zs))
