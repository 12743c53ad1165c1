"""What the kernel prints about memory when it is short of it (mm/show_mem.c of 6.18).

:func:`__show_mem` is ``__show_mem(filter, nodemask, max_zone_idx)``: "Mem-Info:", then
``show_free_areas()`` -- the global counters line (``active_anon:... free_cma:...``, seven
physical lines of one printk), one line per node with memory (``Node N active_anon:...kB ...
all_unreclaimable? no Balloon:0kB``), per populated zone its counters line and
``lowmem_reserve[]:``, per zone the free lists (``Node 0 DMA32: 3*4kB (UM) ... = 1234kB``),
``hugetlb_show_meminfo_node()`` per node and hstate, "N total pagecache pages" and
``show_swap_cache_info()`` -- then "N pages RAM", "N pages HighMem/MovableOnly" and "N pages
reserved".  The OOM killer's dump_header() calls it with SHOW_MEM_FILTER_NODES, the request's
nodemask and gfp_zone(gfp_mask).

Counters come from the simulator's books (ZoneState, ``k.node_vm_stat``), as exact as the
kernel's after a vmstat fold.  The build's config decides the optional parts: THP (shmem_thp,
shmem_pmdmapped, anon_thp), ZSMALLOC (zspages), no SHADOW_CALL_STACK, no CMA ("pages cma
reserved" and free_cma stay 0 / absent), no MEMORY_FAILURE ("pages hwpoisoned" absent), no
MEM_ALLOC_PROFILING; NR_BOUNCE no longer exists in 6.18, so both bounce fields print 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SIZE

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel
    from mmintro.kernel.mm_init import ZoneState

__all__ = ["SHOW_MEM_FILTER_NODES", "__show_mem", "show_free_areas", "show_mem_lines"]

SHOW_MEM_FILTER_NODES = 0x0001  # include/linux/mm.h
MAX_RECLAIM_RETRIES = 16  # mm/internal.h
KERN_DEFAULT = 4  # printk() without a level: CONFIG_MESSAGE_LOGLEVEL_DEFAULT
_MT_LETTERS = "UMEHI"  # show_migration_types(): MIGRATE_UNMOVABLE .. MIGRATE_ISOLATE (no CMA)


def _K(x: int) -> int:
    return x * (PAGE_SIZE >> 10)


def _node(k: Kernel, nid: int, item: str) -> int:
    return k.node_vm_stat[nid].get(item, 0)


def _global_node(k: Kernel, item: str) -> int:
    return sum(d.get(item, 0) for d in k.node_vm_stat)


def _zone(z: ZoneState, item: str) -> int:
    if item == "NR_FREE_PAGES":
        return z.free_pages
    return z.vm_stat.get(item, 0)


def _populated(k: Kernel) -> list[ZoneState]:
    return [z for zs in k.zones for z in zs if z.populated]


def show_mem_node_skip(k: Kernel, flags: int, nid: int, nodemask) -> bool:
    """show_mem_node_skip(): with SHOW_MEM_FILTER_NODES, nodes outside ``nodemask`` (NULL:
    current's cpuset mems_allowed -- every node: the simulator has no cpusets)."""
    if not flags & SHOW_MEM_FILTER_NODES:
        return False
    return nodemask is not None and nid not in nodemask


def _kswapd_failures(k: Kernel, nid: int) -> int:
    try:
        return k.kmem.get(k.pgdat[nid], "pglist_data", "kswapd_failures")
    except (AttributeError, IndexError, KeyError):
        return 0


def show_free_areas(k: Kernel, filter_: int, nodemask, max_zone_idx: int) -> list[tuple[int, str]]:
    """mm/show_mem.c show_free_areas(): (level, line) pairs, one per printed line."""
    out: list[tuple[int, str]] = []
    zones = [z for z in _populated(k) if z.idx <= max_zone_idx and not show_mem_node_skip(k, filter_, z.nid, nodemask)]
    free_pcp = sum(p.count for z in zones for p in z.pcp)
    g = lambda item: _global_node(k, item)
    slab_r = g("NR_SLAB_RECLAIMABLE_B") // PAGE_SIZE  # global_node_page_state_pages()
    slab_u = g("NR_SLAB_UNRECLAIMABLE_B") // PAGE_SIZE
    gfree = sum(z.free_pages for z in _populated(k))  # global_zone_page_state(NR_FREE_PAGES)
    text = (
        f"active_anon:{g('NR_ACTIVE_ANON')} inactive_anon:{g('NR_INACTIVE_ANON')} "
        f"isolated_anon:{g('NR_ISOLATED_ANON')}\n"
        f" active_file:{g('NR_ACTIVE_FILE')} inactive_file:{g('NR_INACTIVE_FILE')} "
        f"isolated_file:{g('NR_ISOLATED_FILE')}\n"
        f" unevictable:{g('NR_UNEVICTABLE')} dirty:{g('NR_FILE_DIRTY')} writeback:{g('NR_WRITEBACK')}\n"
        f" slab_reclaimable:{slab_r} slab_unreclaimable:{slab_u}\n"
        f" mapped:{g('NR_FILE_MAPPED')} shmem:{g('NR_SHMEM')} pagetables:{g('NR_PAGETABLE')}\n"
        f" sec_pagetables:{g('NR_SECONDARY_PAGETABLE')} bounce:0\n"
        f" kernel_misc_reclaimable:{g('NR_KERNEL_MISC_RECLAIMABLE')}\n"
        f" free:{gfree} free_pcp:{free_pcp} free_cma:0"
    )
    out += [(KERN_DEFAULT, line) for line in text.split("\n")]
    for nid in range(len(k.zones)):
        if show_mem_node_skip(k, filter_, nid, nodemask):
            continue
        if not any(z.managed for z in k.zones[nid][: max_zone_idx + 1]):  # node_has_managed_zones()
            continue
        n = lambda item, nid=nid: _K(_node(k, nid, item))
        unrecl = "yes" if _kswapd_failures(k, nid) >= MAX_RECLAIM_RETRIES else "no"
        out.append(
            (
                KERN_DEFAULT,
                f"Node {nid} active_anon:{n('NR_ACTIVE_ANON')}kB inactive_anon:{n('NR_INACTIVE_ANON')}kB "
                f"active_file:{n('NR_ACTIVE_FILE')}kB inactive_file:{n('NR_INACTIVE_FILE')}kB "
                f"unevictable:{n('NR_UNEVICTABLE')}kB isolated(anon):{n('NR_ISOLATED_ANON')}kB "
                f"isolated(file):{n('NR_ISOLATED_FILE')}kB mapped:{n('NR_FILE_MAPPED')}kB "
                f"dirty:{n('NR_FILE_DIRTY')}kB writeback:{n('NR_WRITEBACK')}kB shmem:{n('NR_SHMEM')}kB "
                f"shmem_thp:{n('NR_SHMEM_THPS')}kB shmem_pmdmapped:{n('NR_SHMEM_PMDMAPPED')}kB "
                f"anon_thp:{n('NR_ANON_THPS')}kB kernel_stack:{_node(k, nid, 'NR_KERNEL_STACK_KB')}kB "
                f"pagetables:{n('NR_PAGETABLE')}kB sec_pagetables:{n('NR_SECONDARY_PAGETABLE')}kB "
                f"all_unreclaimable? {unrecl} Balloon:{n('NR_BALLOON_PAGES')}kB",
            )
        )
    for z in zones:
        zfree_pcp = sum(p.count for p in z.pcp)
        local_pcp = z.pcp[k.current_cpu].count if z.pcp else 0
        zk = lambda item, z=z: _K(_zone(z, item))
        out.append(
            (
                KERN_DEFAULT,
                f"Node {z.nid} {z.name} free:{_K(z.free_pages)}kB boost:{_K(z.watermark_boost)}kB "
                f"min:{_K(z.watermark[0] + z.watermark_boost)}kB low:{_K(z.watermark[1] + z.watermark_boost)}kB "
                f"high:{_K(z.watermark[2] + z.watermark_boost)}kB "
                f"reserved_highatomic:{_K(z.nr_reserved_highatomic)}KB "
                f"free_highatomic:{_K(z.nr_free_highatomic)}KB "
                f"active_anon:{zk('NR_ZONE_ACTIVE_ANON')}kB inactive_anon:{zk('NR_ZONE_INACTIVE_ANON')}kB "
                f"active_file:{zk('NR_ZONE_ACTIVE_FILE')}kB inactive_file:{zk('NR_ZONE_INACTIVE_FILE')}kB "
                f"unevictable:{zk('NR_ZONE_UNEVICTABLE')}kB writepending:{zk('NR_ZONE_WRITE_PENDING')}kB "
                f"zspages:{zk('NR_ZSPAGES')}kB present:{_K(z.present)}kB managed:{_K(z.managed)}kB "
                f"mlocked:{zk('NR_MLOCK')}kB bounce:0kB free_pcp:{_K(zfree_pcp)}kB "
                f"local_pcp:{_K(local_pcp)}kB free_cma:0kB",
            )
        )
        out.append((KERN_DEFAULT, "lowmem_reserve[]:" + "".join(f" {v}" for v in z.lowmem_reserve)))
    from mmintro.kernel import page_alloc

    for z in zones:
        parts, total = [], 0
        for o in range(page_alloc.NR_PAGE_ORDERS):
            nr = z.nr_free[o]
            total += nr << o
            s = f"{nr}*{_K(1) << o}kB "
            if nr:
                s += (
                    "("
                    + "".join(
                        _MT_LETTERS[mt]
                        for mt in range(page_alloc.MIGRATE_TYPES)
                        if not page_alloc.free_area_empty(z, o, mt)
                    )
                    + ") "
                )
            parts.append(s)
        out.append((KERN_DEFAULT, f"Node {z.nid} {z.name}: " + "".join(parts) + f"= {_K(total)}kB"))
    for nid in range(len(k.zones)):
        if show_mem_node_skip(k, filter_, nid, nodemask):
            continue
        for h in k.__dict__.get("hstates", []):  # hugetlb_show_meminfo_node(), for_each_hstate
            out.append(
                (
                    KERN_DEFAULT,
                    f"Node {nid} hugepages_total={h.nr_huge_pages_node[nid]} "
                    f"hugepages_free={h.free_huge_pages_node[nid]} "
                    f"hugepages_surp={h.surplus_huge_pages_node[nid]} "
                    f"hugepages_size={h.size >> 10}kB",
                )
            )
    out.append((KERN_DEFAULT, f"{_global_node(k, 'NR_FILE_PAGES')} total pagecache pages"))
    out += show_swap_cache_info(k)
    return out


def _read_global(k: Kernel, name: str) -> int:
    try:
        return int.from_bytes(k.mem.read(k.pa(k.sym(name)), 8), "little", signed=True)
    except (KeyError, AttributeError):
        return 0


def show_swap_cache_info(k: Kernel) -> list[tuple[int, str]]:
    """mm/swap_state.c show_swap_cache_info(): the swap cache's pages (NR_SWAPCACHE), free and
    total swap (nr_swap_pages, total_swap_pages as simulated memory holds them)."""
    return [
        (KERN_DEFAULT, f"{_global_node(k, 'NR_SWAPCACHE')} pages in swap cache"),
        (KERN_DEFAULT, f"Free swap  = {_K(_read_global(k, 'nr_swap_pages'))}kB"),
        (KERN_DEFAULT, f"Total swap = {_K(_read_global(k, 'total_swap_pages'))}kB"),
    ]


def show_mem_lines(
    k: Kernel, filter_: int = 0, nodemask=None, max_zone_idx: int | None = None
) -> list[tuple[int, str]]:
    """mm/show_mem.c __show_mem() as (level, line) pairs."""
    if max_zone_idx is None:
        max_zone_idx = max(len(zs) for zs in k.zones) - 1
    out = [(KERN_DEFAULT, "Mem-Info:")]
    out += show_free_areas(k, filter_, nodemask, max_zone_idx)
    zones = _populated(k)
    total = sum(z.present for z in zones)
    reserved = sum(z.present - z.managed for z in zones)
    out.append((KERN_DEFAULT, f"{total} pages RAM"))
    out.append((KERN_DEFAULT, "0 pages HighMem/MovableOnly"))  # no highmem on x86-64
    out.append((KERN_DEFAULT, f"{reserved} pages reserved"))
    return out


def __show_mem(k: Kernel, filter_: int = 0, nodemask=None, max_zone_idx: int | None = None) -> None:
    """mm/show_mem.c __show_mem(): the lines into the kernel log (printk)."""
    for level, line in show_mem_lines(k, filter_, nodemask, max_zone_idx):
        k.printk(level, line)
