"""Swap devices (mm/swapfile.c): swapon, the swap map, the cluster allocator, swap counts.

``sys_swapon(path, size)`` makes a swap file on the root filesystem and enables it as 6.18
does for a device without a priority (``--least_priority``: -2 for the first): a
``struct swap_info_struct`` (kvzalloc'ed, with its per-node ``avail_lists``) in
``swap_info[type]``; ``swap_map`` (vzalloc'ed, one byte per slot: the number of swap PTEs
referring to the slot, plus SWAP_HAS_CACHE while the swap cache holds a folio for it);
``cluster_info`` (one ``struct swap_cluster_info`` per SWAPFILE_CLUSTER slots: its used
count, its flags, which list it is on -- ``free_clusters``, ``nonfull_clusters[0]``,
``full_clusters`` -- and its swap table, mmintro.kernel.swap_state); the swap header slot 0
and the slots past the end of the last cluster are bad (SWAP_MAP_BAD); the file's inode gets
S_SWAPFILE and one ``struct swap_extent`` maps it.  ``total_swap_pages`` and
``nr_swap_pages`` count the good pages and the free ones.

Slots are handed out by ``folio_alloc_swap`` the way 6.18 does for a rotational device
(no SWP_SOLIDSTATE): sequentially from ``si->global_cluster->next[0]``, taking a new cluster
from the nonfull list, then the free list, when the current one fills (a cluster's swap
table is allocated when it leaves the free list and freed when it goes back).  Large folios
are never given swap here (THP swap-out is not modelled).

The device's data (the pages written to it) is kept by the simulator beside the swap map
(``SwapDevice.data``), as a disk would keep it; I/O completes at once (mmintro.kernel.page_io).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "SWAPFILE_CLUSTER",
    "SWAP_HAS_CACHE",
    "SWAP_MAP_BAD",
    "SwapDevice",
    "folio_alloc_swap",
    "folio_free_swap",
    "free_swap_and_cache",
    "get_nr_swap_pages",
    "put_swap_folio",
    "swap_count",
    "swap_duplicate",
    "swap_free",
    "swap_info",
    "swp_entry",
    "swp_offset",
    "swp_type",
    "sys_swapon",
    "vm_swap_full",
]

_T = get_types()
SWAPFILE_CLUSTER = 512  # HPAGE_PMD_NR with CONFIG_THP_SWAP
SWAP_HAS_CACHE = 0x40
SWAP_MAP_BAD = 0x3F
SWAP_MAP_MAX = 0x3E
MAX_SWAPFILES_SHIFT = 5
SWP_TYPE_SHIFT = 63 - MAX_SWAPFILES_SHIFT  # BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1
_CF = _T.enum("swap_cluster_flags")
CLUSTER_FLAG_FREE = _CF["CLUSTER_FLAG_FREE"]
CLUSTER_FLAG_NONFULL = _CF["CLUSTER_FLAG_NONFULL"]
CLUSTER_FLAG_FULL = _CF["CLUSTER_FLAG_FULL"]
SWAP_USAGE_OFFLIST_BIT = 1 << 63
S_SWAPFILE = 1 << 8  # include/linux/fs.h


def swp_entry(type_: int, offset: int) -> int:
    """include/linux/swapops.h swp_entry(): the arch-independent swp_entry_t value."""
    return (type_ << SWP_TYPE_SHIFT) | (offset & SWP_OFFSET_MASK)


def swp_type(entry: int) -> int:
    return entry >> SWP_TYPE_SHIFT


def swp_offset(entry: int) -> int:
    return entry & SWP_OFFSET_MASK


@dataclass
class SwapDevice:
    """The simulator's book of one swap_info_struct (its memory is the truth for tools)."""

    type: int
    si: int  # struct swap_info_struct *
    path: str
    file: int  # struct file *
    max: int  # slots, header included
    pages: int  # good slots
    prio: int
    swap_map: int  # vmalloc address
    cluster_info: int  # struct swap_cluster_info *
    counts: bytearray = field(default_factory=bytearray)  # the swap_map bytes
    ci_count: list[int] = field(default_factory=list)
    ci_flags: list[int] = field(default_factory=list)
    tables: dict[int, int] = field(default_factory=dict)  # cluster -> swap table pfn
    next_offset: int = 0  # si->global_cluster->next[0]
    inuse: int = 0
    data: dict[int, bytes] = field(default_factory=dict)  # offset -> the page written there
    global_cluster: int = 0


def swap_info(k: Kernel) -> list[SwapDevice]:
    return k.__dict__.setdefault("swap_devices", [])


def get_nr_swap_pages(k: Kernel) -> int:
    """get_nr_swap_pages(): free swap slots over all devices."""
    return sum(d.pages - d.inuse for d in swap_info(k))


def total_swap_pages(k: Kernel) -> int:
    return sum(d.pages for d in swap_info(k))


def vm_swap_full(k: Kernel) -> bool:
    """include/linux/swap.h vm_swap_full(): more than half of the swap space in use."""
    total = total_swap_pages(k)
    return bool(total) and get_nr_swap_pages(k) * 2 < total


def _device(k: Kernel, entry: int) -> SwapDevice:
    t = swp_type(entry)
    devs = swap_info(k)
    if t >= len(devs):
        raise ValueError(f"swap entry {entry:#x}: no swap device of type {t}")
    return devs[t]


def _ci_addr(d: SwapDevice, ci: int) -> int:
    return d.cluster_info + ci * _T.sizeof("struct swap_cluster_info")


def _write_map(k: Kernel, d: SwapDevice, offset: int) -> None:
    from mmintro.kernel import vmalloc

    vmalloc.vmalloc_write(k, d.swap_map + offset, bytes([d.counts[offset]]))


def _write_books(k: Kernel) -> None:
    """si->inuse_pages, total_swap_pages and nr_swap_pages as the kernel keeps them."""
    km = k.kmem
    for d in swap_info(k):
        full = d.inuse >= d.pages
        km.set(d.si, "swap_info_struct", "inuse_pages.counter", d.inuse | (SWAP_USAGE_OFFLIST_BIT if full else 0))
    if "total_swap_pages" in k.image.symbols:
        km.write_u64(k.sym("total_swap_pages"), total_swap_pages(k))
        km.set(k.sym("nr_swap_pages"), "atomic_long_t", "counter", get_nr_swap_pages(k))


def _cluster_move(k: Kernel, d: SwapDevice, ci: int, flag: int) -> None:
    """move_cluster(): off its list, onto the list of ``flag``."""
    km = k.kmem
    addr = _ci_addr(d, ci)
    if d.ci_flags[ci] == flag:
        return
    if d.ci_flags[ci]:
        km.list_del(km.addr(addr, "swap_cluster_info", "list"))
    head = {
        CLUSTER_FLAG_FREE: "free_clusters",
        CLUSTER_FLAG_NONFULL: "nonfull_clusters[0]",
        CLUSTER_FLAG_FULL: "full_clusters",
    }[flag]
    km.list_add_tail(km.addr(addr, "swap_cluster_info", "list"), km.addr(d.si, "swap_info_struct", head))
    d.ci_flags[ci] = flag
    km.set(addr, "swap_cluster_info", "flags", flag)
    if flag == CLUSTER_FLAG_FREE and ci in d.tables:
        from mmintro.kernel import swap_state

        swap_state.swap_table_free(k, d, ci)
    elif flag != CLUSTER_FLAG_FREE and ci not in d.tables:
        from mmintro.kernel import swap_state

        swap_state.swap_table_alloc(k, d, ci)


def _set_count(k: Kernel, d: SwapDevice, offset: int, v: int) -> None:
    """Change one swap_map byte, keeping the cluster's used count and lists."""
    old = d.counts[offset]
    d.counts[offset] = v
    _write_map(k, d, offset)
    ci = offset // SWAPFILE_CLUSTER
    if bool(old) == bool(v):
        return
    delta = 1 if v else -1
    d.ci_count[ci] += delta
    k.kmem.set(_ci_addr(d, ci), "swap_cluster_info", "count", d.ci_count[ci])
    if old == SWAP_MAP_BAD or v == SWAP_MAP_BAD:
        pass
    else:
        d.inuse += delta
    if d.ci_count[ci] == SWAPFILE_CLUSTER:
        _cluster_move(k, d, ci, CLUSTER_FLAG_FULL)
    elif d.ci_count[ci] == 0:
        _cluster_move(k, d, ci, CLUSTER_FLAG_FREE)
    else:
        _cluster_move(k, d, ci, CLUSTER_FLAG_NONFULL)


def sys_swapon(k: Kernel, path: str, size: int, prio: int | None = None) -> SwapDevice:
    """mm/swapfile.c sys_swapon() of a new swap file of ``size`` bytes at ``path``."""
    from mmintro.kernel import inode as I
    from mmintro.kernel import slub, vmalloc

    km = k.kmem
    devs = swap_info(k)
    nr = len(devs)
    if nr >= 1 << MAX_SWAPFILES_SHIFT:
        raise ValueError("swapon: too many swap devices (-EPERM)")
    maxpages = size >> PAGE_SHIFT
    if maxpages < 2 or maxpages > SWP_OFFSET_MASK:
        raise ValueError(f"swapon: {size} bytes is not a usable swap area (-EINVAL)")
    # alloc_swap_info(): struct_size(p, avail_lists, nr_node_ids)
    node_size = _T.sizeof("struct plist_node")
    si_size = _T.sizeof("struct swap_info_struct") + node_size * k.config.nodes
    si = slub.kzalloc(k, si_size, "GFP_KERNEL", caller="alloc_swap_info")
    if not si:
        raise MemoryError("swapon: no memory for the swap_info_struct (-ENOMEM)")
    file = I.create_file(k, path, size)
    ino = km.get(km.get(file, "file", "f_mapping"), "address_space", "host")
    km.set(ino, "inode", "i_flags", km.get(ino, "inode", "i_flags") | S_SWAPFILE)
    swap_map = vmalloc.vzalloc(k, maxpages, caller="sys_swapon")
    nr_clusters = -(-maxpages // SWAPFILE_CLUSTER)
    ci_size = _T.sizeof("struct swap_cluster_info")
    cluster_info = (
        slub.kzalloc(k, nr_clusters * ci_size, "GFP_KERNEL", caller="setup_clusters")
        if nr_clusters * ci_size <= 8192
        else vmalloc.vzalloc(k, nr_clusters * ci_size, caller="setup_clusters")
    )
    if not swap_map or not cluster_info:
        raise MemoryError("swapon: no memory for the swap map (-ENOMEM)")
    least = k.__dict__.get("least_priority", -1)
    if prio is None:
        least -= 1
        prio = least
        k.least_priority = least
    d = SwapDevice(
        type=nr,
        si=si,
        path=path,
        file=file,
        max=maxpages,
        pages=maxpages - 1,
        prio=prio,
        swap_map=swap_map,
        cluster_info=cluster_info,
        counts=bytearray(nr_clusters * SWAPFILE_CLUSTER),
        ci_count=[0] * nr_clusters,
        ci_flags=[0] * nr_clusters,
    )
    devs.append(d)
    for name in ("free_clusters", "full_clusters", "frag_clusters[0]", "discard_clusters"):
        km.init_list_head(km.addr(si, "swap_info_struct", name))
    sis = _T.struct("swap_info_struct")  # SWAP_NR_ORDERS lists each
    n_orders = (sis.offsetof("frag_clusters") - sis.offsetof("nonfull_clusters")) // _T.sizeof("struct list_head")
    for o in range(n_orders):
        km.init_list_head(km.addr(si, "swap_info_struct", f"nonfull_clusters[{o}]"))
        km.init_list_head(km.addr(si, "swap_info_struct", f"frag_clusters[{o}]"))
    for ci in range(nr_clusters):
        km.set(_ci_addr(d, ci), "swap_cluster_info", "order", 0)
        km.init_list_head(km.addr(_ci_addr(d, ci), "swap_cluster_info", "list"))
    # setup_clusters(): the clusters with bad slots (the header, the tail) are nonfull
    bad = [0] + list(range(maxpages, nr_clusters * SWAPFILE_CLUSTER))
    for ci in range(nr_clusters):
        _cluster_move(k, d, ci, CLUSTER_FLAG_FREE)
    for off in bad:
        _set_count(k, d, off, SWAP_MAP_BAD)
    d.next_offset = 1
    gc = slub.kzalloc(k, _T.sizeof("struct swap_sequential_cluster"), "GFP_KERNEL", caller="sys_swapon")
    d.global_cluster = gc
    km.write_u64(gc, 1)
    km.set(si, "swap_info_struct", "global_cluster", gc)
    km.set(si, "swap_info_struct", "type", nr)
    km.set(si, "swap_info_struct", "prio", prio & 0xFFFF)
    km.set(si, "swap_info_struct", "max", maxpages)
    km.set(si, "swap_info_struct", "pages", d.pages)
    km.set(si, "swap_info_struct", "swap_map", swap_map)
    km.set(si, "swap_info_struct", "cluster_info", cluster_info)
    km.set(si, "swap_info_struct", "swap_file", file)
    sb = km.get(ino, "inode", "i_sb")
    km.set(si, "swap_info_struct", "bdev", km.get(sb, "super_block", "s_bdev"))
    km.set(si, "swap_info_struct", "users.percpu_count_ptr", 0)
    flags = _T.const("SWP_USED") | _T.const("SWP_WRITEOK")
    km.set(si, "swap_info_struct", "flags", flags)
    # one swap_extent covering the file (setup_swap_extents -> add_swap_extent)
    se = slub.kzalloc(k, _T.sizeof("struct swap_extent"), "GFP_KERNEL", caller="add_swap_extent")
    km.set(se, "swap_extent", "start_page", 0)
    km.set(se, "swap_extent", "nr_pages", maxpages)
    km.set(se, "swap_extent", "start_block", 0)
    km.set(si, "swap_info_struct", "swap_extent_root.rb_node", se)
    # plist nodes: si->list on swap_active_head, avail_lists[node] (prio negated)
    km.set(si, "swap_info_struct", "list.prio", (-prio) & 0xFFFFFFFF)
    km.init_list_head(km.addr(si, "swap_info_struct", "list.prio_list"))
    km.init_list_head(km.addr(si, "swap_info_struct", "list.node_list"))
    for nid in range(k.config.nodes):
        node = km.addr(si, "swap_info_struct", "avail_lists") + nid * node_size
        km.set(node, "plist_node", "prio", (-prio) & 0xFFFFFFFF)
        km.init_list_head(km.addr(node, "plist_node", "prio_list"))
        km.init_list_head(km.addr(node, "plist_node", "node_list"))
    # plist_add(&si->list, &swap_active_head): devices in priority order (one list here,
    # prio_list linking only the first node of each priority, as plist.h does)
    head = km.addr(k.sym("swap_active_head"), "plist_head", "node_list")
    km.list_add_tail(km.addr(si, "swap_info_struct", "list.node_list"), head)
    km.write_u64(k.sym("swap_info") + 8 * nr, si)
    km.write_bytes(k.sym("nr_swapfiles"), (nr + 1).to_bytes(4, "little"))
    _write_books(k)
    if _sync_hook not in k.sync_hooks:
        k.sync_hooks.append(_sync_hook)
    k.printk(
        6,
        f"Adding {d.pages << (PAGE_SHIFT - 10)}k swap on {path}.  Priority:{prio} extents:1 "
        f"across:{d.pages << (PAGE_SHIFT - 10)}k ",
    )
    return d


def _sync_hook(k: Kernel) -> None:
    _write_books(k)
    for d in swap_info(k):
        k.kmem.write_u64(d.global_cluster, d.next_offset)


def _alloc_offset(k: Kernel, d: SwapDevice) -> int | None:
    """cluster_alloc_swap_entry() for order 0 on a rotational device: the next free slot of
    the current cluster, else the first free slot of a nonfull cluster, else of a free one."""
    nclusters = len(d.ci_count)
    start = d.next_offset
    ci = start // SWAPFILE_CLUSTER
    if ci < nclusters and d.ci_flags[ci] != CLUSTER_FLAG_FULL:
        for off in range(start, (ci + 1) * SWAPFILE_CLUSTER):
            if not d.counts[off]:
                return off
    for flag in (CLUSTER_FLAG_NONFULL, CLUSTER_FLAG_FREE):
        for c in range(nclusters):
            if d.ci_flags[c] != flag:
                continue
            base = c * SWAPFILE_CLUSTER
            for off in range(base, base + SWAPFILE_CLUSTER):
                if not d.counts[off]:
                    return off
    return None


def folio_alloc_swap(k: Kernel, pfn: int) -> int | None:
    """mm/swapfile.c folio_alloc_swap() for an order-0 folio: a slot on the highest-priority
    device with room, marked SWAP_HAS_CACHE; returns the swp_entry_t value or None."""
    from mmintro.kernel import swap

    if swap.folio_nr_pages(k, pfn) > 1:
        return None
    for d in sorted(swap_info(k), key=lambda d: -d.prio):
        if d.inuse >= d.pages:
            continue
        off = _alloc_offset(k, d)
        if off is None:
            continue
        if off // SWAPFILE_CLUSTER not in d.tables:  # a free cluster: swap_cluster_alloc_table() first
            from mmintro.kernel import swap_state

            try:
                swap_state.swap_table_alloc(k, d, off // SWAPFILE_CLUSTER)
            except MemoryError:  # -ENOMEM (no reclaim under the cluster lock): no slot, the folio stays
                return None
        _set_count(k, d, off, SWAP_HAS_CACHE)
        d.next_offset = off + 1
        _write_books(k)
        return swp_entry(d.type, off)
    return None


def swap_count(k: Kernel, entry: int) -> int:
    """swap_count(si->swap_map[offset]): the PTE references (SWAP_HAS_CACHE masked)."""
    d = _device(k, entry)
    return d.counts[swp_offset(entry)] & ~SWAP_HAS_CACHE


def has_cache(k: Kernel, entry: int) -> bool:
    d = _device(k, entry)
    return bool(d.counts[swp_offset(entry)] & SWAP_HAS_CACHE)


def swap_duplicate(k: Kernel, entry: int) -> None:
    """swap_duplicate(): one more swap PTE refers to the slot (swap continuation pages past
    SWAP_MAP_MAX are not modelled)."""
    d = _device(k, entry)
    off = swp_offset(entry)
    v = d.counts[off]
    if not v or v == SWAP_MAP_BAD:
        raise ValueError(f"swap_duplicate: slot {off} of {d.path} is not in use")
    if (v & ~SWAP_HAS_CACHE) >= SWAP_MAP_MAX:
        raise NotImplementedError("swap count continuation (more than 62 references) is not modelled")
    _set_count(k, d, off, v + 1)


def swapcache_prepare(k: Kernel, entry: int) -> bool:
    """swapcache_prepare(): claim SWAP_HAS_CACHE for a swap-in; False if already cached."""
    d = _device(k, entry)
    off = swp_offset(entry)
    v = d.counts[off]
    if v & SWAP_HAS_CACHE:
        return False
    _set_count(k, d, off, v | SWAP_HAS_CACHE)
    return True


def _put(k: Kernel, entry: int, usage: int) -> int:
    """swap_entry_put_locked(): drop ``usage`` (1 or SWAP_HAS_CACHE) from the slot; free it
    (and its stored data) when nothing is left.  Returns the new map byte."""
    d = _device(k, entry)
    off = swp_offset(entry)
    v = d.counts[off]
    if usage == SWAP_HAS_CACHE:
        if not v & SWAP_HAS_CACHE:
            raise ValueError(f"swap slot {off} of {d.path} has no cache to drop")
        v &= ~SWAP_HAS_CACHE
    else:
        if not v & ~SWAP_HAS_CACHE:
            raise ValueError(f"swap slot {off} of {d.path} has no reference to drop")
        v -= 1
    _set_count(k, d, off, v)
    if not v:
        d.data.pop(off, None)
        from mmintro.kernel import swap_state

        swap_state.swap_table_clear(k, entry)
    _write_books(k)
    return v


def swap_free(k: Kernel, entry: int) -> int:
    """swap_free_nr(entry, 1): a swap PTE no longer refers to the slot."""
    return _put(k, entry, 1)


def put_swap_folio(k: Kernel, entry: int) -> None:
    """put_swap_folio(): the swap cache's claim on the slot goes."""
    _put(k, entry, SWAP_HAS_CACHE)


def folio_free_swap(k: Kernel, pfn: int) -> bool:
    """mm/swapfile.c folio_free_swap(): when no PTE refers to the slot any more, take the
    folio out of the swap cache (it becomes dirty: its only copy is in memory)."""
    from mmintro.kernel import swap, swap_state

    if not swap_state.folio_test_swapcache(k, pfn) or swap.folio_test(k, pfn, swap.PG_writeback):
        return False
    entry = swap_state.folio_swap_entry(k, pfn)
    if swap_count(k, entry):
        return False
    swap_state.delete_from_swap_cache(k, pfn)
    swap.folio_set_flag(k, pfn, swap.PG_dirty)
    return True


def free_swap_and_cache(k: Kernel, entry: int) -> None:
    """free_swap_and_cache_nr(entry, 1): a swap PTE is zapped; if only the swap cache still
    holds the slot and its folio is unmapped (or swap is full), reclaim that too
    (__try_to_reclaim_swap with TTRS_UNMAPPED | TTRS_FULL)."""
    from mmintro.kernel import rmap, swap_state

    v = swap_free(k, entry)
    if v != SWAP_HAS_CACHE:
        return
    pfn = swap_state.swap_cache_get_folio(k, entry)
    if pfn is None:
        return
    if rmap.folio_mapcount(k, pfn) > 0 and not vm_swap_full(k):
        return
    rmap.folio_get(k, pfn)
    if folio_free_swap(k, pfn):
        from mmintro.kernel import swap

        swap.folio_clear_flag(k, pfn, swap.PG_dirty)  # an unmapped anon folio: nobody needs it
    rmap.folio_put(k, pfn)
