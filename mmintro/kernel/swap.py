"""The LRU lists (mm/swap.c, the lruvec helpers of include/linux/mm_inline.h and mm/vmscan.c).

Every folio that user memory or the page cache holds sits on one list of its node's
``struct lruvec``: ``lruvec->lists[folio_lru_list(folio)]`` linked through ``folio->lru``
(a real ``list_head`` in simulated memory, so drgn's ``list_for_each_entry("struct folio",
lruvec.lists[i].address_of_(), "lru")`` walks it), with the 6.18 flags:

* ``PG_lru`` while on a list, ``PG_active`` on the active lists, ``PG_referenced`` as the
  second-chance bit of ``folio_mark_accessed``, ``PG_swapbacked`` for anonymous/shmem folios
  (``folio_is_file_lru`` = !swapbacked), ``PG_unevictable`` (+ ``PG_mlocked``) for mlocked
  folios, which 6.18 does *not* link on ``LRU_UNEVICTABLE``: ``lruvec_add_folio`` only counts
  them, and ``folio->mlock_count`` (the word of ``lru.prev``) holds the mlock count;
* the counters ``update_lru_size`` keeps: the node's ``NR_{IN,}ACTIVE_{ANON,FILE}`` /
  ``NR_UNEVICTABLE`` (``__mod_lruvec_state``) and the zone's ``NR_ZONE_*`` twins, in pages
  (``folio_nr_pages``).

Which lruvec: the reference kernel has CONFIG_MEMCG=y and no CONFIG_LRU_GEN, so a real
folio lives on ``mem_cgroup_lruvec(folio_memcg(folio), pgdat)`` -- the root memcg's per-node
lruvec for an uncharged folio.  Memory cgroups are not modelled: the simulator behaves as a
kernel booted with ``cgroup_disable=memory`` (``mem_cgroup_disabled()``), where
``folio_lruvec()`` is ``&pgdat->__lruvec`` and ``__mod_lruvec_state`` is just the node
counter.  No multi-gen LRU (``lru_gen_enabled()`` is false).

The per-CPU folio batches (``cpu_fbatches.lru_add``, ``.lru_activate``, ``mlock_fbatch``)
are drained at once, as if each ``folio_batch_add`` had found the batch full: the batch's
temporary reference (``folio_get`` in ``__folio_batch_add_and_move``, dropped by
``folios_put`` after ``folio_batch_move_lru``) nets to zero and is not written, and a folio
is never seen "in a batch, not yet on the LRU".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import config as kc
from mmintro.kernel import page_alloc as pa
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "LRU_ACTIVE",
    "LRU_ACTIVE_ANON",
    "LRU_ACTIVE_FILE",
    "LRU_INACTIVE_ANON",
    "LRU_INACTIVE_FILE",
    "LRU_UNEVICTABLE",
    "NR_LRU_LISTS",
    "folio_activate",
    "folio_add_lru",
    "folio_add_lru_vma",
    "folio_clear_flag",
    "folio_lru_list",
    "folio_lruvec",
    "folio_mark_accessed",
    "folio_nid",
    "folio_nr_pages",
    "folio_set_flag",
    "folio_test",
    "lru_add",
    "lru_pfns",
    "lruvec_add_folio",
    "lruvec_del_folio",
    "page_cache_release",
]

_T = get_types()
_PF = _T.enum("pageflags")
PG_locked = _PF["PG_locked"]
PG_writeback = _PF["PG_writeback"]
PG_referenced = _PF["PG_referenced"]
PG_uptodate = _PF["PG_uptodate"]
PG_dirty = _PF["PG_dirty"]
PG_lru = _PF["PG_lru"]
PG_head = _PF["PG_head"]
PG_active = _PF["PG_active"]
PG_workingset = _PF["PG_workingset"]
PG_swapbacked = _PF["PG_swapbacked"]
PG_unevictable = _PF["PG_unevictable"]
PG_mlocked = _PF["PG_mlocked"]
PG_idle = _PF["PG_idle"]
PG_dropbehind = _PF["PG_dropbehind"]
PG_reclaim = _PF["PG_reclaim"]

_LRU = _T.enum("lru_list")
LRU_INACTIVE_ANON = _LRU["LRU_INACTIVE_ANON"]
LRU_ACTIVE_ANON = _LRU["LRU_ACTIVE_ANON"]
LRU_INACTIVE_FILE = _LRU["LRU_INACTIVE_FILE"]
LRU_ACTIVE_FILE = _LRU["LRU_ACTIVE_FILE"]
LRU_UNEVICTABLE = _LRU["LRU_UNEVICTABLE"]
NR_LRU_LISTS = _LRU["NR_LRU_LISTS"]
LRU_ACTIVE = LRU_ACTIVE_ANON - LRU_INACTIVE_ANON  # include/linux/mmzone.h: LRU_ACTIVE = 1
LRU_FILE = LRU_INACTIVE_FILE - LRU_INACTIVE_ANON  # LRU_FILE = 2

# enum node_stat_item NR_LRU_BASE + lru / enum zone_stat_item NR_ZONE_LRU_BASE + lru, by name
_NS = _T.enum("node_stat_item")
_ZS = _T.enum("zone_stat_item")
NODE_LRU_ITEM = {
    v - _NS["NR_LRU_BASE"]: n
    for n, v in _NS.items()
    if n in ("NR_INACTIVE_ANON", "NR_ACTIVE_ANON", "NR_INACTIVE_FILE", "NR_ACTIVE_FILE", "NR_UNEVICTABLE")
}
ZONE_LRU_ITEM = {
    v - _ZS["NR_ZONE_LRU_BASE"]: n
    for n, v in _ZS.items()
    if n
    in (
        "NR_ZONE_INACTIVE_ANON",
        "NR_ZONE_ACTIVE_ANON",
        "NR_ZONE_INACTIVE_FILE",
        "NR_ZONE_ACTIVE_FILE",
        "NR_ZONE_UNEVICTABLE",
    )
}
assert sorted(NODE_LRU_ITEM) == sorted(ZONE_LRU_ITEM) == list(range(NR_LRU_LISTS))

_EV = _T.enum("vm_event_item")
LRU_OFF = _T.struct("page").offsetof("lru")
MLOCK_COUNT_OFF = _T.struct("folio").offsetof("mlock_count")
LRUVEC_OFF = _T.struct("pglist_data").offsetof("__lruvec")
LIST_HEAD_SIZE = _T.sizeof("struct list_head")
_LISTS_OFF = _T.struct("lruvec").offsetof("lists")
_NONRES_OFF = _T.struct("lruvec").offsetof("nonresident_age")

# VM_LOCKED / VM_SPECIAL (include/linux/mm.h), as mmintro.kernel.mmap writes them
VM_LOCKED = 0x00002000
VM_SPECIAL = 0x00004000 | 0x00040000 | 0x00000400 | 0x10000000


# -- struct folio flag words --------------------------------------------------------------------
def _w(k: Kernel, pfn: int):
    mv64, mv32, w = pa.page_words(k, pfn)
    return mv64, mv32, w


def folio_test(k: Kernel, pfn: int, bit: int) -> bool:
    mv64, _mv32, w = _w(k, pfn)
    return bool(int(mv64[w + pa.W_FLAGS]) >> bit & 1)


def folio_set_flag(k: Kernel, pfn: int, bit: int) -> None:
    mv64, _mv32, w = _w(k, pfn)
    mv64[w + pa.W_FLAGS] |= 1 << bit


def folio_clear_flag(k: Kernel, pfn: int, bit: int) -> bool:
    """folio_test_clear_*: clear ``bit``, return whether it was set."""
    mv64, _mv32, w = _w(k, pfn)
    old = int(mv64[w + pa.W_FLAGS])
    mv64[w + pa.W_FLAGS] = old & ~(1 << bit)
    return bool(old >> bit & 1)


def folio_nr_pages(k: Kernel, pfn: int) -> int:
    """folio_nr_pages(): 1, or 1 << folio_order() for a large folio (``_flags_1 & 0xff``)."""
    mv64, _mv32, w = _w(k, pfn)
    if int(mv64[w + pa.W_FLAGS]) >> PG_head & 1:
        return 1 << (int(mv64[w + pa.FW_FLAGS_1]) & 0xFF)
    return 1


def folio_nid(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = _w(k, pfn)
    return int(mv64[w + pa.W_FLAGS]) >> kc.NODES_PGOFF


def folio_lruvec(k: Kernel, pfn: int) -> int:
    """folio_lruvec() with mem_cgroup_disabled(): ``&NODE_DATA(folio_nid(folio))->__lruvec``."""
    return k.pgdat[folio_nid(k, pfn)] + LRUVEC_OFF


def lru_list_head(k: Kernel, nid: int, lru: int) -> int:
    """``&NODE_DATA(nid)->__lruvec.lists[lru]``."""
    return k.pgdat[nid] + LRUVEC_OFF + _LISTS_OFF + lru * LIST_HEAD_SIZE


def folio_lru_list(k: Kernel, pfn: int) -> int:
    """include/linux/mm_inline.h folio_lru_list(): unevictable, else (in)active anon/file."""
    if folio_test(k, pfn, PG_unevictable):
        return LRU_UNEVICTABLE
    lru = LRU_INACTIVE_ANON if folio_test(k, pfn, PG_swapbacked) else LRU_INACTIVE_FILE
    if folio_test(k, pfn, PG_active):
        lru += LRU_ACTIVE
    return lru


def _count_vm_events(k: Kernel, item: str, n: int) -> None:
    k.vm_events[k.current_cpu][_EV[item]] += n


# -- list_head primitives on simulated memory ---------------------------------------------------
# -- mm_inline.h --------------------------------------------------------------------------------
def update_lru_size(k: Kernel, pfn: int, lru: int, nr_pages: int) -> None:
    """update_lru_size() -> __update_lru_size(): the lruvec (= node) counter and the zone's."""
    k.mod_node_page_state(folio_nid(k, pfn), NODE_LRU_ITEM[lru], nr_pages)
    k.mod_zone_page_state(pa.page_zone(k, pfn), ZONE_LRU_ITEM[lru], nr_pages)


def lruvec_add_folio(k: Kernel, pfn: int) -> None:
    """lruvec_add_folio(): count the folio on its list; link it unless unevictable (list_add:
    the newest folio is at the head)."""
    lru = folio_lru_list(k, pfn)
    update_lru_size(k, pfn, lru, folio_nr_pages(k, pfn))
    if lru != LRU_UNEVICTABLE:
        k.kmem.list_add(k.pfn_to_page(pfn) + LRU_OFF, lru_list_head(k, folio_nid(k, pfn), lru))


def _lruvec_del_folio(k: Kernel, pfn: int) -> None:
    lru = folio_lru_list(k, pfn)
    if lru != LRU_UNEVICTABLE:
        k.kmem.list_del(k.pfn_to_page(pfn) + LRU_OFF)
    update_lru_size(k, pfn, lru, -folio_nr_pages(k, pfn))


def lruvec_del_folio(k: Kernel, pfn: int) -> None:
    """Take the folio off its LRU for good: ``lruvec_del_folio()`` (list_del, counters down)
    followed by ``__folio_clear_lru_flags()`` (PG_lru, PG_active, PG_unevictable cleared), as
    ``__page_cache_release()`` does when the last reference goes.  A folio without PG_lru is
    left alone (it is not on a list)."""
    if not folio_test(k, pfn, PG_lru):
        return
    _lruvec_del_folio(k, pfn)
    for bit in (PG_lru, PG_active, PG_unevictable):
        folio_clear_flag(k, pfn, bit)


page_cache_release = lruvec_del_folio  # mm/swap.c __page_cache_release()


# -- mm/swap.c ----------------------------------------------------------------------------------
def folio_evictable(k: Kernel, pfn: int) -> bool:
    """mm/internal.h folio_evictable(): not mlocked (no unevictable mappings modelled)."""
    return not folio_test(k, pfn, PG_mlocked)


def lru_add(k: Kernel, pfn: int) -> None:
    """mm/swap.c lru_add() (the lru_add batch's move_fn) + folio_set_lru()."""
    if folio_test(k, pfn, PG_lru):
        raise ValueError(f"folio_add_lru: pfn {pfn:#x} is already on an LRU list")
    was_unevictable = folio_clear_flag(k, pfn, PG_unevictable)
    nr = folio_nr_pages(k, pfn)
    if folio_evictable(k, pfn):
        if was_unevictable:
            _count_vm_events(k, "UNEVICTABLE_PGRESCUED", nr)
    else:
        folio_clear_flag(k, pfn, PG_active)
        folio_set_flag(k, pfn, PG_unevictable)
        k.kmem.write_u64(k.pfn_to_page(pfn) + MLOCK_COUNT_OFF, 0)  # folio->mlock_count = 0
        if not was_unevictable:
            _count_vm_events(k, "UNEVICTABLE_PGCULLED", nr)
    lruvec_add_folio(k, pfn)
    folio_set_flag(k, pfn, PG_lru)


def folio_add_lru(k: Kernel, pfn: int) -> None:
    """mm/swap.c folio_add_lru(): through cpu_fbatches.lru_add, drained at once."""
    lru_add(k, pfn)


def mlock_new_folio(k: Kernel, pfn: int) -> None:
    """mm/mlock.c mlock_new_folio() + __mlock_new_folio(): PG_mlocked, NR_MLOCK,
    UNEVICTABLE_PGMLOCKED; then PG_unevictable with mlock_count 1, UNEVICTABLE_PGCULLED, and
    the folio counted on LRU_UNEVICTABLE (not linked) with PG_lru."""
    nr = folio_nr_pages(k, pfn)
    folio_set_flag(k, pfn, PG_mlocked)
    k.mod_zone_page_state(pa.page_zone(k, pfn), "NR_MLOCK", nr)
    _count_vm_events(k, "UNEVICTABLE_PGMLOCKED", nr)
    folio_set_flag(k, pfn, PG_unevictable)
    k.kmem.write_u64(k.pfn_to_page(pfn) + MLOCK_COUNT_OFF, 1)
    _count_vm_events(k, "UNEVICTABLE_PGCULLED", nr)
    lruvec_add_folio(k, pfn)
    folio_set_flag(k, pfn, PG_lru)


def folio_add_lru_vma(k: Kernel, pfn: int, vma: int) -> None:
    """mm/swap.c folio_add_lru_vma(): a new folio mapped in a VM_LOCKED (not special) VMA is
    mlocked straight onto the unevictable list; any other goes through folio_add_lru."""
    flags = k.kmem.get(vma, "vm_area_struct", "vm_flags")
    if flags & (VM_LOCKED | VM_SPECIAL) == VM_LOCKED:
        mlock_new_folio(k, pfn)
    else:
        folio_add_lru(k, pfn)


def lru_activate(k: Kernel, pfn: int) -> None:
    """mm/swap.c lru_activate() (under folio_batch_move_lru's PG_lru clear/set)."""
    if folio_test(k, pfn, PG_active) or folio_test(k, pfn, PG_unevictable):
        return
    nr = folio_nr_pages(k, pfn)
    _lruvec_del_folio(k, pfn)
    folio_set_flag(k, pfn, PG_active)
    lruvec_add_folio(k, pfn)
    _count_vm_events(k, "PGACTIVATE", nr)


def folio_activate(k: Kernel, pfn: int) -> None:
    """mm/swap.c folio_activate() (CONFIG_SMP): only an inactive, evictable folio on the LRU."""
    if folio_test(k, pfn, PG_active) or folio_test(k, pfn, PG_unevictable) or not folio_test(k, pfn, PG_lru):
        return
    lru_activate(k, pfn)


def workingset_activation(k: Kernel, pfn: int) -> None:
    """mm/workingset.c workingset_activation() with mem_cgroup_disabled():
    workingset_age_nonresident(folio_lruvec(folio), nr) -- lruvec->nonresident_age += nr."""
    a = folio_lruvec(k, pfn) + _NONRES_OFF
    k.kmem.set(a, "atomic_long_t", "counter", k.kmem.get(a, "atomic_long_t", "counter") + folio_nr_pages(k, pfn))


def folio_mark_accessed(k: Kernel, pfn: int) -> None:
    """mm/swap.c folio_mark_accessed() (classic LRU): inactive,unreferenced ->
    inactive,referenced; inactive,referenced -> active,unreferenced (folio_activate when on
    the LRU; a folio off the LRU is in no batch here, so __lru_cache_activate_folio finds
    nothing); the idle bit is cleared."""
    if folio_test(k, pfn, PG_dropbehind):
        return
    if not folio_test(k, pfn, PG_referenced):
        folio_set_flag(k, pfn, PG_referenced)
    elif folio_test(k, pfn, PG_unevictable):
        pass  # the unevictable list is never rotated
    elif not folio_test(k, pfn, PG_active):
        if folio_test(k, pfn, PG_lru):
            folio_activate(k, pfn)
        folio_clear_flag(k, pfn, PG_referenced)
        workingset_activation(k, pfn)
    if folio_test(k, pfn, PG_idle):
        folio_clear_flag(k, pfn, PG_idle)


# -- inspection (tests, views) ------------------------------------------------------------------
def lru_pfns(k: Kernel, nid: int, lru: int, limit: int = 1 << 24) -> list[int]:
    """The pfns on ``NODE_DATA(nid)->__lruvec.lists[lru]``, head to tail, read back from
    simulated memory (bounded)."""
    head = lru_list_head(k, nid, lru)
    out = []
    pos = k.kmem.get(head, "list_head", "next")
    while pos != head:
        if len(out) >= limit:
            raise ValueError(f"LRU list {lru} of node {nid} does not close")
        out.append((pos - LRU_OFF - k.vmemmap_base) // k.struct_page_size)
        pos = k.kmem.get(pos, "list_head", "next")
    return out
