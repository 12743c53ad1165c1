"""Memory counters (mm/vmstat.c): zone, node and global vm_stat arrays.

The simulator keeps its books in Python; refresh() folds them into the zone/node
``vm_stat`` atomics and the global ``vm_zone_stat``/``vm_node_stat`` sums, as if every
per-CPU delta had been folded (refresh_vm_stats).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def zone_counters(k: "Kernel", z) -> dict[str, int]:
    free = sum(n << o for o, n in enumerate(z.nr_free))
    blocks = sum(n << o for o, n in enumerate(z.nr_free) if o >= kc.PAGEBLOCK_ORDER)
    c = {"NR_FREE_PAGES": free, "NR_FREE_PAGES_BLOCKS": blocks}
    c.update(z.vm_stat)
    return c


def refresh(k: "Kernel") -> None:
    T = k.T
    zone_items = T.enum("zone_stat_item")
    node_items = T.enum("node_stat_item")
    glob_zone = {n: 0 for n in zone_items}
    for zs in k.zones:
        for z in zs:
            k.kmem.set(z.addr, "zone", "managed_pages", z.managed)
            for name, v in zone_counters(k, z).items():
                k.kmem.set(z.addr, "zone", f"vm_stat[{zone_items[name]}]", v)
                glob_zone[name] += v
    for name, v in glob_zone.items():
        if name.startswith("NR_VM_ZONE_STAT_ITEMS"):
            continue
        k.kmem.write_u64(k.sym("vm_zone_stat") + 8 * zone_items[name], v)
    node_stats = getattr(k, "node_vm_stat", None) or [{} for _ in k.pgdat]
    glob_node: dict[str, int] = {}
    for nid, pg in enumerate(k.pgdat):
        for name, v in node_stats[nid].items():
            k.kmem.set(pg, "pglist_data", f"vm_stat[{node_items[name]}]", v)
            glob_node[name] = glob_node.get(name, 0) + v
    for name, v in glob_node.items():
        k.kmem.write_u64(k.sym("vm_node_stat") + 8 * node_items[name], v)
    k.kmem.write_u64(k.sym("_totalram_pages"), sum(z.managed for zs in k.zones for z in zs))
