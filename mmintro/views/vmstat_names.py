"""The names /proc/vmstat and /proc/zoneinfo print for the vm counters (mm/vmstat.c,
``vmstat_text[]``).

The text is a string table in the kernel, not part of the type data, and the enum names do not
lowercase to it (``NR_FILE_MAPPED`` prints as ``nr_mapped``).  The table below is keyed by
enumerator name (aliases included) and was taken from the reference 6.18 /proc/vmstat line
mapping (reference/enums.txt).  Enumerator *values* always come from the snapshot's type data.
"""

from __future__ import annotations

from mmintro.types.typedata import TypeDB

__all__ = ["THP_PRINTED_ITEMS", "VMSTAT_TEXT", "stat_names"]

VMSTAT_TEXT: dict[str, str] = {
    # enum zone_stat_item
    "NR_FREE_PAGES": "nr_free_pages",
    "NR_FREE_PAGES_BLOCKS": "nr_free_pages_blocks",
    "NR_ZONE_INACTIVE_ANON": "nr_zone_inactive_anon",
    "NR_ZONE_LRU_BASE": "nr_zone_inactive_anon",
    "NR_ZONE_ACTIVE_ANON": "nr_zone_active_anon",
    "NR_ZONE_INACTIVE_FILE": "nr_zone_inactive_file",
    "NR_ZONE_ACTIVE_FILE": "nr_zone_active_file",
    "NR_ZONE_UNEVICTABLE": "nr_zone_unevictable",
    "NR_ZONE_WRITE_PENDING": "nr_zone_write_pending",
    "NR_MLOCK": "nr_mlock",
    "NR_ZSPAGES": "nr_zspages",
    "NR_FREE_CMA_PAGES": "nr_free_cma",
    "NR_UNACCEPTED": "nr_unaccepted",
    # enum numa_stat_item
    "NUMA_HIT": "numa_hit",
    "NUMA_MISS": "numa_miss",
    "NUMA_FOREIGN": "numa_foreign",
    "NUMA_INTERLEAVE_HIT": "numa_interleave",
    "NUMA_LOCAL": "numa_local",
    "NUMA_OTHER": "numa_other",
    # enum node_stat_item
    "NR_INACTIVE_ANON": "nr_inactive_anon",
    "NR_LRU_BASE": "nr_inactive_anon",
    "NR_ACTIVE_ANON": "nr_active_anon",
    "NR_INACTIVE_FILE": "nr_inactive_file",
    "NR_ACTIVE_FILE": "nr_active_file",
    "NR_UNEVICTABLE": "nr_unevictable",
    "NR_SLAB_RECLAIMABLE_B": "nr_slab_reclaimable",
    "NR_SLAB_UNRECLAIMABLE_B": "nr_slab_unreclaimable",
    "NR_ISOLATED_ANON": "nr_isolated_anon",
    "NR_ISOLATED_FILE": "nr_isolated_file",
    "WORKINGSET_NODES": "workingset_nodes",
    "WORKINGSET_REFAULT_ANON": "workingset_refault_anon",
    "WORKINGSET_REFAULT_BASE": "workingset_refault_anon",
    "WORKINGSET_REFAULT_FILE": "workingset_refault_file",
    "WORKINGSET_ACTIVATE_ANON": "workingset_activate_anon",
    "WORKINGSET_ACTIVATE_BASE": "workingset_activate_anon",
    "WORKINGSET_ACTIVATE_FILE": "workingset_activate_file",
    "WORKINGSET_RESTORE_ANON": "workingset_restore_anon",
    "WORKINGSET_RESTORE_BASE": "workingset_restore_anon",
    "WORKINGSET_RESTORE_FILE": "workingset_restore_file",
    "WORKINGSET_NODERECLAIM": "workingset_nodereclaim",
    "NR_ANON_MAPPED": "nr_anon_pages",
    "NR_FILE_MAPPED": "nr_mapped",
    "NR_FILE_PAGES": "nr_file_pages",
    "NR_FILE_DIRTY": "nr_dirty",
    "NR_WRITEBACK": "nr_writeback",
    "NR_WRITEBACK_TEMP": "nr_writeback_temp",
    "NR_SHMEM": "nr_shmem",
    "NR_SHMEM_THPS": "nr_shmem_hugepages",
    "NR_SHMEM_PMDMAPPED": "nr_shmem_pmdmapped",
    "NR_FILE_THPS": "nr_file_hugepages",
    "NR_FILE_PMDMAPPED": "nr_file_pmdmapped",
    "NR_ANON_THPS": "nr_anon_transparent_hugepages",
    "NR_VMSCAN_WRITE": "nr_vmscan_write",
    "NR_VMSCAN_IMMEDIATE": "nr_vmscan_immediate_reclaim",
    "NR_DIRTIED": "nr_dirtied",
    "NR_WRITTEN": "nr_written",
    "NR_THROTTLED_WRITTEN": "nr_throttled_written",
    "NR_KERNEL_MISC_RECLAIMABLE": "nr_kernel_misc_reclaimable",
    "NR_FOLL_PIN_ACQUIRED": "nr_foll_pin_acquired",
    "NR_FOLL_PIN_RELEASED": "nr_foll_pin_released",
    "NR_KERNEL_STACK_KB": "nr_kernel_stack",
    "NR_KERNEL_SCS_KB": "nr_shadow_call_stack",
    "NR_PAGETABLE": "nr_page_table_pages",
    "NR_SECONDARY_PAGETABLE": "nr_sec_page_table_pages",
    "NR_IOMMU_PAGES": "nr_iommu_pages",
    "NR_SWAPCACHE": "nr_swapcached",
    "PGPROMOTE_SUCCESS": "pgpromote_success",
    "PGPROMOTE_CANDIDATE": "pgpromote_candidate",
    "PGPROMOTE_CANDIDATE_NRL": "pgpromote_candidate_nrl",
    "PGDEMOTE_KSWAPD": "pgdemote_kswapd",
    "PGDEMOTE_DIRECT": "pgdemote_direct",
    "PGDEMOTE_KHUGEPAGED": "pgdemote_khugepaged",
    "PGDEMOTE_PROACTIVE": "pgdemote_proactive",
    "NR_HUGETLB": "nr_hugetlb",
    "NR_BALLOON_PAGES": "nr_balloon_pages",
    "NR_KERNEL_FILE_PAGES": "nr_kernel_file_pages",
}

# include/linux/vmstat.h, vmstat_item_print_in_thp(): counted in pages, printed in THPs.
THP_PRINTED_ITEMS = frozenset(
    {"NR_ANON_THPS", "NR_FILE_THPS", "NR_SHMEM_THPS", "NR_SHMEM_PMDMAPPED", "NR_FILE_PMDMAPPED"}
)


def stat_names(types: TypeDB, enum: str, count: str) -> list[tuple[int, str, str]]:
    """``(index, enumerator, /proc name)`` for items ``0 .. count-1`` of a stat enum.

    :param enum: ``"zone_stat_item"``, ``"numa_stat_item"`` or ``"node_stat_item"``
    :param count: the enumerator that ends the items (``"NR_VM_ZONE_STAT_ITEMS"``)
    """
    values = types.enum(enum)
    n = values[count]
    by_value: dict[int, list[str]] = {}
    for name, v in values.items():
        by_value.setdefault(v, []).append(name)
    out = []
    for i in range(n):
        names = by_value.get(i, [f"{enum}_{i}"])
        known = [nm for nm in names if nm in VMSTAT_TEXT]
        enumerator = known[-1] if known else names[-1]
        out.append((i, enumerator, VMSTAT_TEXT.get(enumerator, enumerator.lower())))
    return out
