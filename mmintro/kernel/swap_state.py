"""The swap cache as 6.18 keeps it (mm/swap_state.c, mm/swap_table.h).

6.18 has no ``swapper_spaces`` XArrays any more: each swap cluster (SWAPFILE_CLUSTER slots)
has a *swap table*, ``ci->table``, an array of ``atomic_long_t`` with one entry per slot --
NULL, a ``struct folio *`` while the swap cache holds the folio for that slot, or a workingset
shadow (an XArray value entry) once reclaim has evicted it.  A swap-cache folio has
PG_swapcache (PG_owner_priv_1 on a swap-backed folio), ``folio->swap`` (the ``private`` word)
holding its ``swp_entry_t``, ``folio_nr_pages`` references from the cache, and counts in
NR_FILE_PAGES and NR_SWAPCACHE.  A swap table is one page here (``sizeof(struct swap_table)``
is PAGE_SIZE: SWP_TABLE_USE_PAGE), allocated when its cluster leaves the free list.

Swap-in (``swapin_readahead``) on a rotational device is ``swap_cluster_readahead``: the
faulting slot and the in-use slots of its ``1 << page_cluster`` (8) aligned window are read
into new folios in the swap cache (SWAP_RA for the extra ones, PG_readahead on them,
SWAP_RA_HIT when a fault finds one), each folio put on the LRU after
``workingset_refault()`` has looked at the shadow it replaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.kernel import swap
from mmintro.kernel import swapfile as sf
from mmintro.kernel.xarray import xa_is_value

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "PAGE_CLUSTER",
    "add_to_swap",
    "delete_from_swap_cache",
    "folio_swap_entry",
    "folio_test_swapcache",
    "read_swap_cache_async",
    "swap_cache_get_folio",
    "swap_cache_get_shadow",
    "swapin_readahead",
]

PG_swapcache = swap._PF["PG_swapcache"]
PG_readahead = swap._PF["PG_readahead"]
PAGE_CLUSTER = 3  # vm.page-cluster


def folio_test_swapcache(k: Kernel, pfn: int) -> bool:
    """folio_test_swapcache(): PG_swapbacked and PG_swapcache."""
    return swap.folio_test(k, pfn, swap.PG_swapbacked) and swap.folio_test(k, pfn, PG_swapcache)


def folio_swap_entry(k: Kernel, pfn: int) -> int:
    """folio->swap.val (the union with ``private``)."""
    return k.kmem.get(k.pfn_to_page(pfn), "page", "private")


def _table_slot(k: Kernel, entry: int) -> int | None:
    """&ci->table->entries[offset % SWAPFILE_CLUSTER] in the direct map, or None."""
    d = sf._device(k, entry)
    off = sf.swp_offset(entry)
    tpfn = d.tables.get(off // sf.SWAPFILE_CLUSTER)
    if tpfn is None:
        return None
    return k.phys_to_virt(tpfn << PAGE_SHIFT) + 8 * (off % sf.SWAPFILE_CLUSTER)


def swap_table_alloc(k: Kernel, d: sf.SwapDevice, ci: int) -> None:
    """swap_cluster_alloc_table(): a zeroed page for the cluster's table, taken under the
    cluster lock as 6.18 does (__GFP_HIGH | __GFP_NOMEMALLOC | __GFP_NOWARN: no reclaim)."""
    from mmintro.kernel import gfp as G

    pfn = k.alloc_pages(G.__GFP_HIGH | G.__GFP_NOMEMALLOC | G.FLAGS["__GFP_NOWARN"] | G.__GFP_ZERO, 0)
    if pfn is None:
        raise MemoryError("swap: no page for a swap table (-ENOMEM)")
    k.mem.write(pfn << PAGE_SHIFT, bytes(1 << PAGE_SHIFT))
    d.tables[ci] = pfn
    k.kmem.set(sf._ci_addr(d, ci), "swap_cluster_info", "table", k.phys_to_virt(pfn << PAGE_SHIFT))


def swap_table_free(k: Kernel, d: sf.SwapDevice, ci: int) -> None:
    """swap_cluster_free_table(): only shadows (or nothing) are left in a free cluster."""
    pfn = d.tables.pop(ci)
    k.kmem.set(sf._ci_addr(d, ci), "swap_cluster_info", "table", 0)
    k.free_pages(pfn, 0)


def _tb_get(k: Kernel, entry: int) -> int:
    a = _table_slot(k, entry)
    return 0 if a is None else k.mem.read_u64(k.pa(a))


def _tb_set(k: Kernel, entry: int, v: int) -> None:
    a = _table_slot(k, entry)
    if a is None:
        if v:
            raise ValueError(f"swap entry {entry:#x}: its cluster has no swap table")
        return
    k.kmem.write_u64(a, v)


def swap_table_clear(k: Kernel, entry: int) -> None:
    """A freed slot drops its shadow (swap_entries_free -> __swap_table_set(ci, off, null))."""
    if _table_slot(k, entry) is not None:
        _tb_set(k, entry, 0)


def swap_cache_get_folio(k: Kernel, entry: int) -> int | None:
    """swap_cache_get_folio(): the folio the swap cache holds for ``entry`` (its pfn)."""
    tb = _tb_get(k, entry)
    if not tb or xa_is_value(tb):
        return None
    return (tb - k.vmemmap_base) // k.struct_page_size


def swap_cache_get_shadow(k: Kernel, entry: int) -> int | None:
    tb = _tb_get(k, entry)
    return tb if tb and xa_is_value(tb) else None


def __swap_cache_add_folio(k: Kernel, pfn: int, entry: int) -> int | None:
    """__swap_cache_add_folio(): references, PG_swapcache, folio->swap, the table entry,
    NR_FILE_PAGES and NR_SWAPCACHE; returns the shadow it replaced."""
    from mmintro.kernel import rmap

    nr = swap.folio_nr_pages(k, pfn)
    shadow = swap_cache_get_shadow(k, entry)
    rmap.folio_get(k, pfn, nr)
    swap.folio_set_flag(k, pfn, PG_swapcache)
    k.kmem.set(k.pfn_to_page(pfn), "page", "private", entry)
    _tb_set(k, entry, k.pfn_to_page(pfn))
    nid = swap.folio_nid(k, pfn)
    k.mod_node_page_state(nid, "NR_FILE_PAGES", nr)
    k.mod_node_page_state(nid, "NR_SWAPCACHE", nr)
    return shadow


def __delete_from_swap_cache(k: Kernel, pfn: int, shadow: int = 0) -> None:
    """__swap_cache_del_folio() + put_swap_folio() + the cache's references, as
    __remove_mapping does for a swap-cache folio (``shadow`` left in the table)."""
    from mmintro.kernel import rmap

    nr = swap.folio_nr_pages(k, pfn)
    entry = folio_swap_entry(k, pfn)
    _tb_set(k, entry, shadow or 0)
    k.kmem.set(k.pfn_to_page(pfn), "page", "private", 0)
    swap.folio_clear_flag(k, pfn, PG_swapcache)
    nid = swap.folio_nid(k, pfn)
    k.mod_node_page_state(nid, "NR_FILE_PAGES", -nr)
    k.mod_node_page_state(nid, "NR_SWAPCACHE", -nr)
    sf.put_swap_folio(k, entry)
    rmap.folio_put(k, pfn, nr)


def delete_from_swap_cache(k: Kernel, pfn: int) -> None:
    """delete_from_swap_cache(): out of the swap cache, no shadow."""
    __delete_from_swap_cache(k, pfn, 0)


def add_to_swap(k: Kernel, pfn: int) -> bool:
    """mm/swap_state.c add_to_swap() (folio_alloc_swap + the swap cache): the folio gets a
    slot and is dirtied so that reclaim writes it."""
    entry = sf.folio_alloc_swap(k, pfn)
    if entry is None:
        return False
    __swap_cache_add_folio(k, pfn, entry)
    swap.folio_set_flag(k, pfn, swap.PG_dirty)  # folio_mark_dirty(): the slot has no data yet
    return True


def read_swap_cache_async(
    k: Kernel, entry: int, gfp: int, vma: int, addr: int, readahead: bool = False
) -> tuple[int | None, bool]:
    """__read_swap_cache_async() + swap_read_folio(): (the folio, whether it was read now).
    A folio already in the swap cache is returned as is."""
    from mmintro.kernel import mempolicy, page_io, workingset

    pfn = swap_cache_get_folio(k, entry)
    if pfn is not None:
        return pfn, False
    if not sf.swap_count(k, entry):
        return None, False  # the slot was freed meanwhile
    if vma:
        new = mempolicy.vma_alloc_folio(k, gfp, 0, vma, addr)
    else:
        new = k.alloc_pages(gfp, 0)
    if new is None:
        return None, False
    if not sf.swapcache_prepare(k, entry):
        k.free_pages(new, 0)
        return swap_cache_get_folio(k, entry), False
    swap.folio_set_flag(k, new, swap.PG_locked)
    swap.folio_set_flag(k, new, swap.PG_swapbacked)
    # swapcache_prepare() took SWAP_HAS_CACHE; the cache's claim is that one
    shadow = __swap_cache_add_folio(k, new, entry)
    if shadow:
        workingset.workingset_refault(k, new, shadow)
    swap.folio_add_lru(k, new)
    if swap.folio_test(k, new, swap.PG_workingset):
        # swap_read_folio(): reading a workingset folio back is thrashing -- a memory stall
        from mmintro.kernel import psi

        with psi.memstall(k, None, page_io.SWAP_READ_NS):
            page_io.swap_read_folio(k, new, entry)
    else:
        page_io.swap_read_folio(k, new, entry)
    if readahead:
        swap.folio_set_flag(k, new, PG_readahead)
    return new, True


def swapin_readahead(k: Kernel, entry: int, gfp: int, vma: int, addr: int) -> tuple[int | None, bool]:
    """swapin_readahead() -> swap_cluster_readahead(): read the in-use slots of the aligned
    window around ``entry`` (SWAP_RA each), then the faulting one; (its folio, whether it
    had to be read -- a major fault)."""
    from mmintro.kernel import rmap

    d = sf._device(k, entry)
    off = sf.swp_offset(entry)
    mask = (1 << PAGE_CLUSTER) - 1
    start, end = off & ~mask, (off | mask) + 1
    for o in range(max(start, 1), min(end, d.max)):
        if o == off:
            continue
        e = sf.swp_entry(d.type, o)
        v = d.counts[o]
        if not v or v == sf.SWAP_MAP_BAD or v & sf.SWAP_HAS_CACHE:
            continue
        ra, read = read_swap_cache_async(k, e, gfp, vma, addr, readahead=True)
        if ra is not None and read:
            k.vm_events[k.current_cpu][swap._EV["SWAP_RA"]] += 1
            rmap.folio_put(k, ra)  # the readahead's own reference
    pfn, read = read_swap_cache_async(k, entry, gfp, vma, addr)
    return pfn, read
