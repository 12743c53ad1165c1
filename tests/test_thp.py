"""Transparent huge pages: the THP mode, PMD faults, the huge zero folio, deposits, the deferred
split queue, fork and unmap -- checked with real drgn on the snapshot.

Expected values are derived from the scenario (which 2 MiB ranges were written or read) and the
kernel's definitions (the enum transparent_hugepage_flag bits, ENTIRELY_MAPPED), not from the
simulator's books.
"""

from __future__ import annotations

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import fork, huge_memory, memory, mmap
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

SZ_2M = 2 << 20
RW = mmap.VM_READ | mmap.VM_WRITE
ENTIRELY_MAPPED = 0x800000  # mm/internal.h


def _round_up(a: int, n: int) -> int:
    return -(-a // n) * n


@pytest.fixture(scope="module")
def thp(tmp_path_factory):
    """madvise mode: an 8 MiB MADV_HUGEPAGE region gets a write fault (THP 1), a read fault then
    a write fault in the next 2 MiB (huge zero folio, then THP 2 replacing it), a read fault
    in the third (the huge zero folio stays); a 4 MiB region without madvise gets 4 KiB pages."""
    k = boot(MachineConfig(ram=2 << 30, seed=5))
    p = fork.spawn_process(k, "thp")
    a = mmap.do_mmap(k, p.mm, 8 << 20, RW)
    huge_memory.madvise_hugepage(k, p.mm, a, 8 << 20)
    base = _round_up(a, SZ_2M)
    t1 = memory.handle_mm_fault(k, p.mm, base + 0x10, True).pfn
    z = memory.handle_mm_fault(k, p.mm, base + SZ_2M, False).pfn
    t2 = memory.handle_mm_fault(k, p.mm, base + SZ_2M + 0x20, True).pfn
    z2 = memory.handle_mm_fault(k, p.mm, base + 2 * SZ_2M + 8, False).pfn
    small = mmap.do_mmap(k, p.mm, 4 << 20, RW)
    s = memory.handle_mm_fault(k, p.mm, small + 5 * 4096, True)
    path = tmp_path_factory.mktemp("thp") / "thp"
    save(k, path)
    return k, open_drgn(f"{path}.vmcore", f"{path}.vmlinux"), p, base, t1, t2, z, z2, small, s, str(path)


def test_thp_flags_for_the_madvise_default(thp):
    _k, prog, *_ = thp
    bits = sum(
        1 << prog.constant(n).value_()
        for n in (
            "TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG",
            "TRANSPARENT_HUGEPAGE_DEFRAG_REQ_MADV_FLAG",
            "TRANSPARENT_HUGEPAGE_DEFRAG_KHUGEPAGED_FLAG",
            "TRANSPARENT_HUGEPAGE_USE_ZERO_PAGE_FLAG",
        )
    )
    assert prog["transparent_hugepage_flags"].value_() == bits
    assert prog["huge_anon_orders_inherit"].value_() == 1 << 9
    assert prog["huge_anon_orders_always"].value_() == prog["huge_anon_orders_madvise"].value_() == 0


def test_pmd_mapped_thp_in_drgn(thp):
    from drgn import cast
    from drgn.helpers.linux.mm import PageHead, compound_order, follow_phys, pfn_to_page
    from drgn.helpers.linux.pid import find_task

    k, prog, p, base, t1, t2, *_ = thp
    assert t1 % 512 == 0 and t2 % 512 == 0 and t1 != t2
    mm = find_task(prog, p.pid).mm
    for thp_base, pfn in ((base, t1), (base + SZ_2M, t2)):
        for i in (0, 1, 300, 511):
            assert follow_phys(mm, thp_base + i * 4096 + 7).value_() == ((pfn + i) << 12) + 7
        head = pfn_to_page(prog, pfn)
        assert PageHead(head) and compound_order(head).value_() == 9
        f = cast("struct folio *", head)
        assert f._flags_1.value_() >> prog.constant("PG_large_rmappable").value_() & 1
        assert f._entire_mapcount.counter.value_() == 0  # one PMD mapping
        assert f._large_mapcount.counter.value_() == 0
        assert f._nr_pages_mapped.counter.value_() == ENTIRELY_MAPPED
        assert f.page._refcount.counter.value_() == 1
        assert f.mapping.value_() & 1  # anonymous
    level, _slot, e = memory.walk(k, p.mm, base)
    assert level == "PMD" and e & 0x80 and e & 0x2 and e & 0x40  # PSE, RW, Dirty


def test_huge_zero_folio(thp):
    from drgn.helpers.linux.mm import follow_phys, pfn_to_page
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.vmstat import global_vm_event_state

    k, prog, p, base, _t1, _t2, z, z2, *_ = thp
    hz = prog["huge_zero_pfn"].value_()
    assert z == z2 == hz and hz % 512 == 0
    assert prog["huge_zero_folio"].value_() == pfn_to_page(prog, hz).value_()
    mm = find_task(prog, p.pid).mm
    assert follow_phys(mm, base + 2 * SZ_2M + 12345).value_() == (hz << 12) + 12345
    assert mm.flags.__mm_flags[0].value_() >> 23 & 1  # MMF_HUGE_ZERO_FOLIO
    _l, _s, e = memory.walk(k, p.mm, base + 2 * SZ_2M)
    assert e & 0x80 and not e & 0x2 and e & (1 << 9)  # PSE, read-only, special
    assert global_vm_event_state(prog, prog.constant("THP_ZERO_PAGE_ALLOC")) == 1
    assert global_vm_event_state(prog, prog.constant("THP_FAULT_ALLOC")) == 2  # t1 and the zero-wp copy


def test_counters_split_queue_and_deposits(thp):
    from drgn.helpers.linux.list import list_count_nodes, list_for_each_entry
    from drgn.helpers.linux.mm import page_to_pfn, virt_to_page
    from drgn.helpers.linux.vmstat import global_node_page_state

    k, prog, p, base, t1, t2, *_ = thp
    assert int(global_node_page_state(prog, prog.constant("NR_ANON_THPS"))) == 2 * 512
    q = prog["node_data"][0].deferred_split_queue
    pfns = [
        page_to_pfn(f.page.address_of_()).value_()
        for f in list_for_each_entry("struct folio", q.split_queue.address_of_(), "_deferred_list")
    ]
    assert pfns == [t1, t2]  # list_add_tail in fault order
    assert q.split_queue_len.value_() == 2
    # three PMD leaves (two THPs, one zero) in one PMD table: three deposited PTE tables
    from drgn import cast

    _l, slot, _e = memory.walk(k, p.mm, base)
    ptdesc = cast("struct ptdesc *", virt_to_page(prog, slot))
    dep = cast("struct page *", ptdesc.pmd_huge_pte)
    assert dep.value_()
    assert 1 + list_count_nodes(dep.lru.address_of_()) == 3
    assert dep.page_type.value_() >> 24 == prog.constant("PGTY_table").value_()
    from mmintro.reader import open_snapshot
    from mmintro.views.meminfo import meminfo

    mi = {line.name: line.value for line in meminfo(open_snapshot(thp[-1]))}
    assert mi["AnonHugePages"] == 4096


def test_madvise_mode_leaves_other_vmas_to_4k_pages(thp):
    k, _prog, p, *_rest = thp
    small, s = _rest[-3], _rest[-2]
    assert s.kind == "anon"
    level, _slot, _e = memory.walk(k, p.mm, small + 5 * 4096)
    assert level == "PTE"


@pytest.mark.parametrize(
    "mode,madvised,expect",
    [("always", False, True), ("madvise", False, False), ("madvise", True, True), ("never", True, False)],
)
def test_thp_mode_decides_eligibility(mode, madvised, expect):
    k = boot(MachineConfig(ram=1 << 30, thp=mode))
    p = fork.spawn_process(k, "t")
    a = mmap.do_mmap(k, p.mm, 4 << 20, RW)
    if madvised:
        huge_memory.madvise_hugepage(k, p.mm, a, 4 << 20)
    f = memory.handle_mm_fault(k, p.mm, _round_up(a, SZ_2M), True)
    assert (f.kind == "thp") == expect


def test_small_machines_have_thp_off():
    k = boot(MachineConfig(ram=256 << 20))  # hugepage_init: totalram < 512 MiB
    assert k.mem.read_u64(k.pa(k.sym("transparent_hugepage_flags"))) == 0


def test_fork_shares_the_thp_write_protected_and_partial_unmap_splits():
    from mmintro.kernel import rmap

    k = boot(MachineConfig(ram=1 << 30, thp="always"))
    p = fork.spawn_process(k, "parent")
    a = mmap.do_mmap(k, p.mm, 8 << 20, RW)
    base = _round_up(a, SZ_2M)
    t = memory.handle_mm_fault(k, p.mm, base, True).pfn
    c = fork.do_fork(k, p)
    for mm in (p.mm, c.mm):
        level, _s, e = memory.walk(k, mm, base)
        assert level == "PMD" and e >> 12 & ((1 << 40) - 1) == t and not e & 0x2  # shared, write-protected
    assert rmap.folio_mapcount(k, t) == 2 and rmap.folio_ref_count(k, t) == 2
    assert memory.get_mm_counter(k, c.mm, "MM_ANONPAGES") >= 512
    ev = k.T.enum("vm_event_item")
    before = sum(c_[ev["THP_SPLIT_PMD"]] for c_ in k.vm_events)
    mmap.do_munmap(k, p.mm, base + (1 << 20), 1 << 20)  # the parent unmaps half of the THP
    assert sum(c_[ev["THP_SPLIT_PMD"]] for c_ in k.vm_events) == before + 1
    level, _s, _e = memory.walk(k, p.mm, base)
    assert level == "PTE"  # split into the deposited table
    assert huge_memory.HPAGE_PMD_NR - 256 == sum(1 for i in range(512) if memory.walk(k, p.mm, base + i * 4096)[2] & 1)
    # the child still maps it entirely, so it is not partially mapped yet (__folio_remove_rmap:
    # nr = 0 while _nr_pages_mapped >= ENTIRELY_MAPPED)
    pm = k.T.const("PG_partially_mapped")
    mv64, _mv32, w = memory.pa.page_words(k, t)
    assert not mv64[w + memory.pa.FW_FLAGS_1] >> pm & 1
    assert sum(c_[ev["THP_DEFERRED_SPLIT_PAGE"]] for c_ in k.vm_events) == 0
    level, _s, e = memory.walk(k, c.mm, base)
    assert level == "PMD" and e >> 12 & ((1 << 40) - 1) == t
    # the child unmaps its PMD: now 256 of 512 pages are mapped -- partially mapped, counted
    # once, still once on the node's split queue; NR_ANON_THPS drops with the last PMD mapping
    assert k.node_vm_stat[0].get("NR_ANON_THPS") == 512
    mmap.do_munmap(k, c.mm, base, SZ_2M)
    assert mv64[w + memory.pa.FW_FLAGS_1] >> pm & 1
    assert sum(c_[ev["THP_DEFERRED_SPLIT_PAGE"]] for c_ in k.vm_events) == 1
    assert k.deferred_split[0].count(t) == 1
    assert k.node_vm_stat[0].get("NR_ANON_THPS") == 0
    assert rmap.folio_mapcount(k, t) == 256 and rmap.folio_ref_count(k, t) == 256


def test_no_pmd_order_block_falls_back_to_4k():
    """vma_alloc_anon_folio_pmd() fails (no order-9 block left): THP_FAULT_FALLBACK, then
    the PTE path maps a 4 KiB page."""
    k = boot(MachineConfig(ram=1 << 30, thp="always"))
    while k.alloc_pages("GFP_KERNEL|__GFP_NOWARN", 9) is not None:
        pass
    p = fork.spawn_process(k, "t")
    a = mmap.do_mmap(k, p.mm, 4 << 20, RW)
    f = memory.handle_mm_fault(k, p.mm, _round_up(a, SZ_2M), True)
    ev = k.T.enum("vm_event_item")
    assert f.kind == "anon"
    assert sum(c[ev["THP_FAULT_FALLBACK"]] for c in k.vm_events) == 1
    assert sum(c[ev["THP_FAULT_ALLOC"]] for c in k.vm_events) == 0
    assert memory.walk(k, p.mm, _round_up(a, SZ_2M))[0] == "PTE"


def test_madvise_splits_the_vma_and_the_sysfs_mode_moves_watermarks():
    k = boot(MachineConfig(ram=1 << 30))
    p = fork.spawn_process(k, "t")
    a = mmap.do_mmap(k, p.mm, 8 << 20, RW)
    before = k.kmem.get(p.mm, "mm_struct", "map_count")
    huge_memory.madvise_hugepage(k, p.mm, a + (2 << 20), 4 << 20)
    # madvise_update_vma -> vma_modify_flags: [a, a+2M) [a+2M, a+6M) hg [a+6M, a+8M)
    assert k.kmem.get(p.mm, "mm_struct", "map_count") == before + 2
    mid = mmap.find_vma(k, p.mm, a + (3 << 20))
    assert k.kmem.get(mid, "vm_area_struct", "vm_start") == a + (2 << 20)
    assert k.kmem.get(mid, "vm_area_struct", "vm_end") == a + (6 << 20)
    assert k.kmem.get(mid, "vm_area_struct", "vm_flags") & huge_memory.VM_HUGEPAGE
    assert not k.kmem.get(mmap.find_vma(k, p.mm, a), "vm_area_struct", "vm_flags") & huge_memory.VM_HUGEPAGE
    huge_memory.madvise_nohugepage(k, p.mm, a + (2 << 20), 4 << 20)
    f = k.kmem.get(mmap.find_vma(k, p.mm, a + (3 << 20)), "vm_area_struct", "vm_flags")
    assert f & huge_memory.VM_NOHUGEPAGE and not f & huge_memory.VM_HUGEPAGE
    # echo never > enabled: start_stop_khugepaged -> calculate_min_free_kbytes (no raise)
    raised = k.min_free_kbytes
    huge_memory.set_thp_mode(k, "never")
    assert k.min_free_kbytes < raised
    huge_memory.set_thp_mode(k, "madvise")
    assert k.min_free_kbytes == raised


def test_huge_zero_folio_struct_page(thp):
    """The zero folio is an order-9 compound page with the allocation's one reference, no
    mapping and no large_rmappable (get_huge_zero_folio clears it); zero PMDs take no
    references and no map counts."""
    from drgn import cast
    from drgn.helpers.linux.mm import compound_order, pfn_to_page

    _k, prog, *_ = thp
    f = cast("struct folio *", pfn_to_page(prog, prog["huge_zero_pfn"].value_()))
    assert compound_order(f.page.address_of_()).value_() == 9
    assert f.page._refcount.counter.value_() == 1
    assert f.mapping.value_() == 0
    assert not f._flags_1.value_() >> prog.constant("PG_large_rmappable").value_() & 1
    assert f._entire_mapcount.counter.value_() == -1


def test_mprotect_of_a_thp():
    """change_huge_pmd: read-only drops _PAGE_RW from the PMD leaf; back to read-write the
    exclusive anonymous folio is made writable at once (can_change_pmd_writable); a partial
    mprotect splits the PMD first."""
    from mmintro.kernel import mprotect

    k = boot(MachineConfig(ram=1 << 30, thp="always"))
    p = fork.spawn_process(k, "t")
    a = mmap.do_mmap(k, p.mm, 8 << 20, RW)
    base = _round_up(a, SZ_2M)
    t = memory.handle_mm_fault(k, p.mm, base, True).pfn
    assert mprotect.do_mprotect(k, p.mm, base, SZ_2M, mmap.VM_READ) == 0
    level, _s, e = memory.walk(k, p.mm, base)
    assert level == "PMD" and not e & 0x2 and e & 0x80 and e >> 12 & ((1 << 40) - 1) == t
    assert mprotect.do_mprotect(k, p.mm, base, SZ_2M, RW) == 0
    assert memory.walk(k, p.mm, base)[2] & 0x2
    assert mprotect.do_mprotect(k, p.mm, base, 1 << 20, mmap.VM_READ) == 0
    assert memory.walk(k, p.mm, base)[0] == "PTE"
    assert not memory.walk(k, p.mm, base)[2] & 0x2 and memory.walk(k, p.mm, base + (1 << 20))[2] & 0x2
