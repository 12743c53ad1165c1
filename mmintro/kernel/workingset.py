"""Workingset detection (mm/workingset.c): shadow entries and refault distances.

When reclaim evicts a page-cache or swap-cache folio, ``workingset_eviction()`` leaves a
*shadow entry* where the folio was (``mapping->i_pages`` for a file, the cluster's swap table
for anonymous memory): an XArray value entry packing the memcg id, the node, the lruvec's
``nonresident_age`` clock at eviction (shifted right by ``bucket_order``) and whether the folio
was in the workingset (PG_workingset).  When the same index is faulted or read back in,
``workingset_refault()`` unpacks it: the *refault distance* (how many evictions and
activations happened since) is compared with the size of the workingset the folio could have
stayed in; a folio that would have fit is activated at once (WORKINGSET_ACTIVATE_*), and one
that was in the workingset counts as restored (WORKINGSET_RESTORE_*) -- the signal of
thrashing that PSI's memory stall accounting also uses.

The layout is 6.18's (``pack_shadow``/``unpack_shadow``) with the build's constants:
BITS_PER_XA_VALUE = BITS_PER_LONG - 1, WORKINGSET_SHIFT 1, MEM_CGROUP_ID_SHIFT 16 and
NODES_SHIFT from the configuration.  Memory cgroups are disabled in the simulator (see
mmintro.kernel.swap), so the memcg id is 0 and the lruvec is the node's ``__lruvec``.

Not modelled: the shadow-node shrinker (``workingset_shadow_shrinker``: xa_nodes holding only
shadows on the ``shadow_nodes`` list_lru, WORKINGSET_NODES / WORKINGSET_NODERECLAIM) -- shadow
entries stay until their index is reused or the file goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import config as kc
from mmintro.kernel import swap
from mmintro.kernel.xarray import xa_is_value, xa_mk_value, xa_to_value

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "EVICTION_MASK",
    "EVICTION_SHIFT",
    "bucket_order",
    "pack_shadow",
    "unpack_shadow",
    "workingset_age_nonresident",
    "workingset_eviction",
    "workingset_refault",
    "workingset_test_recent",
]

BITS_PER_LONG = 64
BITS_PER_XA_VALUE = BITS_PER_LONG - 1
WORKINGSET_SHIFT = 1
MEM_CGROUP_ID_SHIFT = 16
EVICTION_SHIFT = (BITS_PER_LONG - BITS_PER_XA_VALUE) + WORKINGSET_SHIFT + kc.NODES_SHIFT + MEM_CGROUP_ID_SHIFT
EVICTION_MASK = (1 << (BITS_PER_LONG - EVICTION_SHIFT)) - 1  # ~0UL >> EVICTION_SHIFT

_NS = swap._NS
_NONRES_OFF = swap._NONRES_OFF


def bucket_order(k: Kernel) -> int:
    """workingset_init(): the eviction counter's granularity, so that the timestamp bits
    cover totalram_pages (0 on any machine below 2^(64 - EVICTION_SHIFT) pages)."""
    timestamp_bits = BITS_PER_LONG - EVICTION_SHIFT
    total = sum(z.managed for zs in k.zones for z in zs)
    max_order = max(total - 1, 0).bit_length()  # fls_long(totalram_pages() - 1)
    return max_order - timestamp_bits if max_order > timestamp_bits else 0


def pack_shadow(memcgid: int, nid: int, eviction: int, workingset: bool) -> int:
    eviction &= EVICTION_MASK
    eviction = (eviction << MEM_CGROUP_ID_SHIFT) | memcgid
    eviction = (eviction << kc.NODES_SHIFT) | nid
    eviction = (eviction << WORKINGSET_SHIFT) | int(workingset)
    return xa_mk_value(eviction)


def unpack_shadow(shadow: int) -> tuple[int, int, int, bool]:
    """(memcgid, nid, eviction, workingset) of a shadow entry."""
    entry = xa_to_value(shadow)
    workingset = bool(entry & ((1 << WORKINGSET_SHIFT) - 1))
    entry >>= WORKINGSET_SHIFT
    nid = entry & ((1 << kc.NODES_SHIFT) - 1)
    entry >>= kc.NODES_SHIFT
    memcgid = entry & ((1 << MEM_CGROUP_ID_SHIFT) - 1)
    entry >>= MEM_CGROUP_ID_SHIFT
    return memcgid, nid, entry, workingset


def _nonresident_addr(k: Kernel, nid: int) -> int:
    return k.pgdat[nid] + swap.LRUVEC_OFF + _NONRES_OFF


def nonresident_age(k: Kernel, nid: int) -> int:
    return k.kmem.get(_nonresident_addr(k, nid), "atomic_long_t", "counter")


def workingset_age_nonresident(k: Kernel, nid: int, nr_pages: int) -> None:
    """lruvec->nonresident_age += nr_pages (no parent lruvecs without memcg)."""
    a = _nonresident_addr(k, nid)
    k.kmem.set(a, "atomic_long_t", "counter", (k.kmem.get(a, "atomic_long_t", "counter") + nr_pages) & ((1 << 64) - 1))


def workingset_eviction(k: Kernel, pfn: int) -> int:
    """The shadow entry for a folio about to leave the page or swap cache: the lruvec's
    clock before this eviction ages it by the folio's pages."""
    nid = swap.folio_nid(k, pfn)
    eviction = nonresident_age(k, nid) >> bucket_order(k)
    workingset_age_nonresident(k, nid, swap.folio_nr_pages(k, pfn))
    return pack_shadow(0, nid, eviction, swap.folio_test(k, pfn, swap.PG_workingset))


def _lruvec_state(k: Kernel, nid: int, item: str) -> int:
    return k.node_vm_stat[nid].get(item, 0)


def workingset_test_recent(k: Kernel, shadow: int, file: bool) -> tuple[bool, bool, int]:
    """workingset_test_recent(): (recent, workingset, eviction nid).  Recent when the refault
    distance is within the workingset the folio competes with: the active file list, plus
    the inactive file list for anon, plus the anon lists when swap is available."""
    from mmintro.kernel import swapfile

    _memcgid, nid, eviction, workingset = unpack_shadow(shadow)
    eviction <<= bucket_order(k)
    refault = nonresident_age(k, nid)
    refault_distance = (refault - eviction) & (EVICTION_MASK << bucket_order(k)) & ((1 << 64) - 1)
    size = _lruvec_state(k, nid, "NR_ACTIVE_FILE")
    if not file:
        size += _lruvec_state(k, nid, "NR_INACTIVE_FILE")
    if swapfile.get_nr_swap_pages(k) > 0:
        size += _lruvec_state(k, nid, "NR_ACTIVE_ANON")
        if file:
            size += _lruvec_state(k, nid, "NR_INACTIVE_ANON")
    return refault_distance <= size, workingset, nid


def workingset_refault(k: Kernel, pfn: int, shadow: int) -> None:
    """workingset_refault(): a folio comes back where ``shadow`` was.  Called before the folio
    goes on the LRU, so an activation puts it straight on the active list."""
    if not xa_is_value(shadow):
        return
    file = not swap.folio_test(k, pfn, swap.PG_swapbacked)
    nr = swap.folio_nr_pages(k, pfn)
    nid = swap.folio_nid(k, pfn)
    kind = "FILE" if file else "ANON"
    k.mod_node_page_state(nid, f"WORKINGSET_REFAULT_{kind}", nr)
    recent, workingset, _enid = workingset_test_recent(k, shadow, file)
    if not recent:
        return
    swap.folio_set_flag(k, pfn, swap.PG_active)
    workingset_age_nonresident(k, nid, nr)
    k.mod_node_page_state(nid, f"WORKINGSET_ACTIVATE_{kind}", nr)
    if workingset:
        swap.folio_set_flag(k, pfn, swap.PG_workingset)
        from mmintro.kernel import vmscan

        vmscan.lru_note_cost_refault(k, pfn)
        k.mod_node_page_state(nid, f"WORKINGSET_RESTORE_{kind}", nr)
