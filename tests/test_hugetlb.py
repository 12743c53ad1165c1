"""hugetlb: hstates, pools, free lists and MAP_HUGETLB faults against real drgn.

The expected numbers come from the scenario itself (pages asked for, mapped and faulted) and
the kernel's formulas (meminfo's HugePages_* and Hugetlb, hugetlb_total_usage), never from the
simulator's books; drgn reads the snapshot's memory.
"""

from __future__ import annotations

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import fork, hugetlb, memory, mmap
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

SZ_2M, SZ_1G = 2 << 20, 1 << 30
PMD_PAGES, PUD_PAGES = 512, 262144


@pytest.fixture(scope="module")
def numa(tmp_path_factory):
    """2 nodes; the 2 MiB pool grown to 9 then shrunk to 7 with the sysctl; a process maps 3
    huge pages MAP_PRIVATE|MAP_HUGETLB and faults two of them (one write, one read)."""
    k = boot(MachineConfig(ram=4 << 30, nodes=2, cpus=2, seed=3))
    assert hugetlb.set_nr_hugepages(k, SZ_2M, 9) == 9
    assert hugetlb.set_nr_hugepages(k, SZ_2M, 7) == 7
    p = fork.spawn_process(k, "huge")
    addr = hugetlb.hugetlb_mmap(k, p.mm, 3 * SZ_2M, SZ_2M, 0x3)
    assert addr and addr % SZ_2M == 0
    w = memory.handle_mm_fault(k, p.mm, addr + 0x1234, True)
    r = memory.handle_mm_fault(k, p.mm, addr + SZ_2M + 8, False)
    path = tmp_path_factory.mktemp("hugetlb") / "numa"
    save(k, path)
    prog = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    return k, prog, p, addr, w.pfn, r.pfn


@pytest.fixture(scope="module")
def boot_pools(tmp_path_factory):
    """1 node, hugepagesz=1G hugepages=1 and hugepagesz=2M hugepages=6 on the command line."""
    k = boot(MachineConfig(ram=4 << 30, hugepages_2m=6, hugepages_1g=1))
    path = tmp_path_factory.mktemp("hugetlb") / "boot"
    save(k, path)
    return k, open_drgn(f"{path}.vmcore", f"{path}.vmlinux"), str(path)


def test_hstates_as_x86_registers_them(numa):
    from drgn.helpers.linux.hugetlb import for_each_hstate, huge_page_size

    _k, prog, *_ = numa
    hs = list(for_each_hstate(prog))
    # gigantic_pages_init (arch_initcall) before hugetlb_init (subsys_initcall)
    assert [h.name.string_() for h in hs] == [b"hugepages-1048576kB", b"hugepages-2048kB"]
    assert [h.order.value_() for h in hs] == [18, 9]
    assert [huge_page_size(h).value_() for h in hs] == [SZ_1G, SZ_2M]
    assert [h.mask.value_() for h in hs] == [(1 << 64) - SZ_1G, (1 << 64) - SZ_2M]
    assert prog["hugetlb_max_hstate"].value_() == 2
    assert prog["default_hstate_idx"].value_() == 1
    assert hs[0].demote_order.value_() == 9 and hs[1].demote_order.value_() == 0


def test_pool_counters_after_sysctl_and_faults(numa):
    from drgn.helpers.linux.hugetlb import hugetlb_total_usage

    _k, prog, *_ = numa
    h = prog["hstates"][1]
    # 7 pages; 3 reserved by the mmap, 2 of them consumed by faults; 2 in use
    assert (
        h.nr_huge_pages.value_(),
        h.free_huge_pages.value_(),
        h.resv_huge_pages.value_(),
        h.surplus_huge_pages.value_(),
        h.max_huge_pages.value_(),
    ) == (7, 5, 1, 0, 7)
    # alloc_pool_huge_folio interleaves from node 0 (0,1,0,1,...: 5+4), the shrink frees
    # from next_nid_to_free = 0 (node 0, then node 1): 4+3
    assert [h.nr_huge_pages_node[n].value_() for n in range(2)] == [4, 3]
    assert sum(h.free_huge_pages_node[n].value_() for n in range(2)) == 5
    u = hugetlb_total_usage(prog)
    assert (u.pages, u.free_pages) == (7 * PMD_PAGES, 5 * PMD_PAGES)


def test_free_lists_walked_by_drgn(numa):
    from drgn.helpers.linux.list import list_count_nodes, list_for_each_entry
    from drgn.helpers.linux.mm import compound_head, compound_order, page_to_pfn, pfn_to_page

    k, prog, *_ = numa
    h = prog["hstates"][1]
    pgty_hugetlb = prog.constant("PGTY_hugetlb").value_()
    hpg_freed = prog.constant("HPG_freed").value_()
    seen = 0
    for nid in range(2):
        folios = list(list_for_each_entry("struct folio", h.hugepage_freelists[nid].address_of_(), "lru"))
        assert len(folios) == h.free_huge_pages_node[nid].value_()
        for f in folios:
            pfn = page_to_pfn(f.page.address_of_()).value_()
            assert pfn % PMD_PAGES == 0
            assert f.page.page_type.value_() >> 24 == pgty_hugetlb
            assert compound_order(f.page.address_of_()).value_() == 9
            assert f.page._refcount.counter.value_() == 0  # frozen while free
            assert f.page.private.value_() >> hpg_freed & 1
            assert (k.memblock.node_of(pfn << 12)) == nid
            tail = pfn_to_page(prog, pfn + 511)
            assert compound_head(tail).value_() == pfn_to_page(prog, pfn).value_()
        seen += len(folios)
    assert seen == 5
    # the two faulted folios sit on the active list
    assert list_count_nodes(h.hugepage_activelist.address_of_()) == 2


def test_mapped_hugetlb_pages(numa):
    from drgn import cast
    from drgn.helpers.linux.mm import follow_phys, pfn_to_page
    from drgn.helpers.linux.pid import find_task

    from mmintro.arch.x86 import _PAGE_DIRTY, _PAGE_PSE, _PAGE_RW, _PAGE_USER

    k, prog, p, addr, wpfn, rpfn = numa
    task = find_task(prog, p.pid)
    mm = task.mm
    assert follow_phys(mm, addr + 0x1234).value_() == (wpfn << 12) + 0x1234
    assert follow_phys(mm, addr + SZ_2M + 8).value_() == (rpfn << 12) + 8
    assert mm.hugetlb_usage.counter.value_() == 2 * PMD_PAGES  # HugetlbPages: 4096 kB
    for pfn in (wpfn, rpfn):
        f = cast("struct folio *", pfn_to_page(prog, pfn))
        assert f._entire_mapcount.counter.value_() == 0  # mapped once (starts at -1)
        assert f._large_mapcount.counter.value_() == 0
        assert f.mapping.value_() & 1  # anonymous (private hugetlb mapping)
        assert f.page._refcount.counter.value_() == 1
    wl, _, we = memory.walk(k, p.mm, addr)
    rl, _, re_ = memory.walk(k, p.mm, addr + SZ_2M)
    assert wl == rl == "PMD"
    assert we & (_PAGE_PSE | _PAGE_RW | _PAGE_DIRTY | _PAGE_USER) == _PAGE_PSE | _PAGE_RW | _PAGE_DIRTY | _PAGE_USER
    assert re_ & _PAGE_PSE and not re_ & (_PAGE_RW | _PAGE_DIRTY)  # make_huge_pte: private = read-only, clean


def test_boot_pools_and_meminfo(boot_pools):
    from drgn.helpers.linux.hugetlb import hugetlb_total_usage
    from drgn.helpers.linux.mm import totalram_pages

    k, prog, path = boot_pools
    h1g, h2m = prog["hstates"][0], prog["hstates"][1]
    assert (h1g.nr_huge_pages.value_(), h1g.free_huge_pages.value_()) == (1, 1)
    assert (h2m.nr_huge_pages.value_(), h2m.free_huge_pages.value_()) == (6, 6)
    u = hugetlb_total_usage(prog)
    assert u.pages == PUD_PAGES + 6 * PMD_PAGES
    # the gigantic page from memblock is given back to totalram (adjust_managed_page_count):
    # the same machine without pools has the same totalram
    plain = boot(MachineConfig(ram=4 << 30))
    assert totalram_pages(prog) == plain.totalram_pages
    # its struct pages: head not PG_reserved, order 18, hugetlb type, tails -> head
    pfn = k.hstates[0].freelists[0][0]
    assert pfn % PUD_PAGES == 0
    from drgn.helpers.linux.mm import PageReserved, compound_head, compound_order, pfn_to_page

    head = pfn_to_page(prog, pfn)
    assert not PageReserved(head) and compound_order(head).value_() == 18
    assert compound_head(pfn_to_page(prog, pfn + PUD_PAGES - 1)).value_() == head.value_()
    assert head.page_type.value_() >> 24 == prog.constant("PGTY_hugetlb").value_()
    # /proc/meminfo: the default hstate's counts and Hugetlb over both hstates
    from mmintro.reader import open_snapshot
    from mmintro.views.meminfo import meminfo

    mi = {line.name: line.value for line in meminfo(open_snapshot(path))}
    assert (mi["HugePages_Total"], mi["HugePages_Free"], mi["HugePages_Rsvd"], mi["HugePages_Surp"]) == (6, 6, 0, 0)
    assert mi["Hugepagesize"] == 2048
    assert mi["Hugetlb"] == 1048576 + 6 * 2048
    log = "\n".join(k.log)
    assert "HugeTLB: registered 1.00 GiB page size, pre-allocated 1 pages" in log
    assert "HugeTLB: 28 KiB vmemmap can be freed for a 2.00 MiB page" in log


def test_reservation_refused_without_free_pages():
    k = boot(MachineConfig(ram=1 << 30))
    hugetlb.set_nr_hugepages(k, SZ_2M, 2)
    p = fork.spawn_process(k, "huge")
    assert hugetlb.hugetlb_mmap(k, p.mm, 3 * SZ_2M, SZ_2M, 0x3) == 0  # -ENOMEM: 3 > 2 free
    addr = hugetlb.hugetlb_mmap(k, p.mm, 2 * SZ_2M, SZ_2M, 0x3)
    assert addr and k.hstates[1].resv_huge_pages == 2
    assert hugetlb.hugetlb_mmap(k, p.mm, SZ_2M, SZ_2M, 0x3) == 0  # all free pages reserved
    # the sysctl cannot free reserved pages: set_max_huge_pages keeps them and makes them
    # surplus (adjust_pool_surplus), so the persistent pool is 0 with 2 surplus pages
    assert hugetlb.set_nr_hugepages(k, SZ_2M, 0) == 0
    h = k.hstates[1]
    assert (h.nr_huge_pages, h.surplus_huge_pages, h.free_huge_pages, h.resv_huge_pages) == (2, 2, 2, 2)
    # growing again takes them out of surplus first
    assert hugetlb.set_nr_hugepages(k, SZ_2M, 2) == 2 and h.surplus_huge_pages == 0 and h.nr_huge_pages == 2


def test_overcommit_surplus_pages():
    from mmintro.kernel import exit as ex

    k = boot(MachineConfig(ram=1 << 30))
    h = k.hstates[1]
    hugetlb.set_nr_hugepages(k, SZ_2M, 1)
    p = fork.spawn_process(k, "huge")
    assert hugetlb.hugetlb_mmap(k, p.mm, 3 * SZ_2M, SZ_2M, 0x3) == 0  # no overcommit allowed
    assert h.nr_huge_pages == 1 and h.resv_huge_pages == 0
    hugetlb.set_nr_overcommit_hugepages(k, SZ_2M, 2)
    a = hugetlb.hugetlb_mmap(k, p.mm, 3 * SZ_2M, SZ_2M, 0x3)
    # gather_surplus_pages: 2 surplus pages from the buddy back the 3 reservations
    assert a and (h.nr_huge_pages, h.surplus_huge_pages, h.free_huge_pages, h.resv_huge_pages) == (3, 2, 3, 3)
    for i in range(3):
        memory.handle_mm_fault(k, p.mm, a + i * SZ_2M, True)
    assert (h.free_huge_pages, h.resv_huge_pages) == (0, 0)
    ex.do_exit(k, p)
    # free_huge_folio of pages while surplus_huge_pages_node is set: they leave the pool
    assert (h.nr_huge_pages, h.surplus_huge_pages, h.free_huge_pages) == (1, 0, 1)


def test_fork_shares_then_copies_on_write_and_exit_frees():
    from mmintro.kernel import exit as ex
    from mmintro.kernel import rmap

    k = boot(MachineConfig(ram=1 << 30, hugepages_2m=4))
    h = k.hstates[1]
    p = fork.spawn_process(k, "parent")
    a = hugetlb.hugetlb_mmap(k, p.mm, 2 * SZ_2M, SZ_2M, 0x3)
    t = memory.handle_mm_fault(k, p.mm, a, True).pfn
    assert (h.free_huge_pages, h.resv_huge_pages) == (3, 1)
    c = fork.do_fork(k, p)
    # copy_hugetlb_page_range: shared and write-protected in both, two mappings, two references
    for mm in (p.mm, c.mm):
        level, _s, e = memory.walk(k, mm, a)
        assert level == "PMD" and e >> 12 & ((1 << 40) - 1) == t and not e & 0x2
    assert rmap.folio_mapcount(k, t) == 2 and rmap.folio_ref_count(k, t) == 2
    # the child (no reservation) writes: hugetlb_wp copies into an unreserved free page
    n = memory.handle_mm_fault(k, c.mm, a + 5, True).pfn
    assert n != t and (h.free_huge_pages, h.resv_huge_pages) == (2, 1)
    assert rmap.folio_mapcount(k, t) == 1 and k.mem.read(n << 12, 16) == k.mem.read(t << 12, 16)
    # the parent is the only user again: reuse, writable
    assert memory.handle_mm_fault(k, p.mm, a + 5, True).pfn == t
    assert memory.walk(k, p.mm, a)[2] & 0x2
    ex.do_exit(k, c)
    assert h.free_huge_pages == 3
    ex.do_exit(k, p)
    assert (h.nr_huge_pages, h.free_huge_pages) == (4, 4) and not h.activelist
    assert k.node_vm_stat[0].get("NR_HUGETLB", 0) == 0


def test_gigantic_pages_at_run_time_and_back_to_the_buddy(tmp_path):
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import crash

    k = boot(MachineConfig(ram=8 << 30, hugepages_1g=1))
    h = k.hstates[0]

    def free_and_pcp() -> int:
        return sum(z.free_pages + sum(pcp.count for pcp in z.pcp) for zs in k.zones for z in zs)

    free0 = free_and_pcp()
    # alloc_contig_pages: the lowest free 1 GiB-aligned ranges of ZONE_NORMAL (the per-CPU
    # lists drained into the buddy lists first)
    assert hugetlb.set_nr_hugepages(k, SZ_1G, 3) == 3
    assert all(p % PUD_PAGES == 0 for p in h.freelists[0])
    assert free0 - free_and_pcp() >= 2 * PUD_PAGES
    p = fork.spawn_process(k, "g")
    a = hugetlb.hugetlb_mmap(k, p.mm, SZ_1G, SZ_1G, 0x3)
    assert a % SZ_1G == 0
    f = memory.handle_mm_fault(k, p.mm, a + 12345, True)
    level, _slot, e = memory.walk(k, p.mm, a)
    assert level == "PUD" and e & 0x80 and e >> 12 & ((1 << 40) - 1) == f.pfn  # a PUD leaf
    # the sysctl frees the two unused pages; the mapped one stays, as a surplus page
    assert hugetlb.set_nr_hugepages(k, SZ_1G, 0) == 0
    assert (h.nr_huge_pages, h.surplus_huge_pages) == (1, 1)
    save(k, tmp_path / "g")
    prog = open_drgn(f"{tmp_path}/g.vmcore", f"{tmp_path}/g.vmlinux")
    assert follow_phys(find_task(prog, p.pid).mm, a + 12345).value_() == (f.pfn << 12) + 12345
    assert "(verified)" in crash(prog, "kmem -f")  # the freed gigantic pages are on the free lists
    assert prog["hstates"][0].nr_huge_pages.value_() == 1
    assert prog["hstates"][0].surplus_huge_pages.value_() == 1


def test_shared_hugetlb_mapping_uses_the_inode_page_cache(tmp_path):
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.xarray import xa_for_each

    k = boot(MachineConfig(ram=1 << 30, hugepages_2m=4))
    h = k.hstates[1]
    p = fork.spawn_process(k, "postgres")
    a = hugetlb.hugetlb_mmap(k, p.mm, 2 * SZ_2M, SZ_2M, 0x3, shared=True)
    assert (h.resv_huge_pages, h.free_huge_pages) == (2, 4)  # the inode's reservation
    t0 = memory.handle_mm_fault(k, p.mm, a, False).pfn  # a read fault: still writable (VM_SHARED)
    _l, _s, e = memory.walk(k, p.mm, a)
    assert e & 0x2 and e & 0x40
    c = fork.do_fork(k, p)
    # vma_needs_copy(): no anon_vma in a shared mapping, so fork copies no entries
    assert not memory.walk(k, c.mm, a)[2] & 1
    assert memory.handle_mm_fault(k, c.mm, a + 3, False).pfn == t0  # from the page cache
    t1 = memory.handle_mm_fault(k, c.mm, a + SZ_2M, True).pfn  # the child instantiates page 1
    assert memory.handle_mm_fault(k, p.mm, a + SZ_2M + 9, True).pfn == t1  # the parent finds it cached
    assert (h.resv_huge_pages, h.free_huge_pages) == (0, 2)
    save(k, tmp_path / "s")
    prog = open_drgn(f"{tmp_path}/s.vmcore", f"{tmp_path}/s.vmlinux")
    pm, cm = find_task(prog, p.pid).mm, find_task(prog, c.pid).mm
    for mm in (pm, cm):
        assert follow_phys(mm, a + 77).value_() == (t0 << 12) + 77
        assert follow_phys(mm, a + SZ_2M + 77).value_() == (t1 << 12) + 77
    from drgn import Object

    f = k.kmem.get(mmap.find_vma(k, p.mm, a), "vm_area_struct", "vm_file")

    mapping = Object(prog, "struct address_space *", k.kmem.get(f, "file", "f_mapping"))
    ents = [(i, e.value_()) for i, e in xa_for_each(mapping.i_pages.address_of_())]
    # one multi-index entry per huge page at its base-page index (idx << huge_page_order)
    assert [i for i, _ in ents][:1] == [0] and 512 in [i for i, _ in ents]
    assert mapping.nrpages.value_() == 1024
    from drgn.helpers.linux.mm import pfn_to_page

    for pfn in (t0, t1):
        page = pfn_to_page(prog, pfn)
        assert page._refcount.counter.value_() == 512 + 2  # the cache's 512 + two mappings
        assert page.mapping.value_() == mapping.value_()


def test_evicting_an_anon_hugetlb_inode_empties_its_cache_and_reservations():
    from mmintro.kernel.inode import fput, get_file, mapping_xa

    k = boot(MachineConfig(ram=1 << 30, hugepages_2m=4))
    h = k.hstates[1]
    p = fork.spawn_process(k, "pg")
    a = hugetlb.hugetlb_mmap(k, p.mm, 3 * SZ_2M, SZ_2M, 0x3, shared=True)
    for i in range(2):
        memory.handle_mm_fault(k, p.mm, a + i * SZ_2M, True)
    f = k.kmem.get(mmap.find_vma(k, p.mm, a), "vm_area_struct", "vm_file")
    inode = k.kmem.get(f, "file", "f_inode")
    mapping = k.kmem.get(inode, "inode", "i_mapping")
    assert [i for i, _e in mapping_xa(k, mapping).xa_for_each()] == [0, 512]
    get_file(k, f)  # a second reference (as a memfd_create(MFD_HUGETLB) fd would hold)
    mmap.do_munmap(k, p.mm, a, 3 * SZ_2M)
    # unmapped, the pages stay in the page cache; one reservation is still unused
    assert (h.free_huge_pages, h.resv_huge_pages, len(h.activelist)) == (2, 1, 2)
    assert k.kmem.get(mapping, "address_space", "nrpages") == 2 * SZ_2M >> 12
    fput(k, f)  # the last reference: __fput -> dput -> iput -> hugetlbfs_evict_inode
    assert (h.free_huge_pages, h.resv_huge_pages, h.activelist) == (4, 0, [])
    assert k.node_vm_stat[0].get("NR_HUGETLB", 0) == 0


@pytest.mark.parametrize("cpus,per_node", [(2, [3, 3]), (8, [4, 2])])
def test_boot_pool_chunks_interleave_from_the_first_node(cpus, per_node):
    """hugetlb_pages_alloc_boot(): max(cpus / 4, 1) padata threads; with 8 CPUs two chunks of 3
    pages each restart at the first node (0, 1, 0 twice), with 2 CPUs one chunk alternates."""
    k = boot(MachineConfig(ram=4 << 30, nodes=2, cpus=cpus, hugepages_2m=6))
    h = k.hstates[1]
    assert h.nr_huge_pages_node == per_node and h.free_huge_pages == 6
    assert f"HugeTLB: allocation took 0ms with hugepage_allocation_threads={max(cpus // 4, 1)}" in k.log


def test_events_and_node_counters_in_drgn(numa):
    from drgn.helpers.linux.vmstat import global_node_page_state, global_vm_event_state

    _k, prog, *_ = numa
    # nine buddy allocations by the sysctl (9 pages asked, none failed); two pages in use
    assert global_vm_event_state(prog, prog.constant("HTLB_BUDDY_PGALLOC")) == 9
    assert global_vm_event_state(prog, prog.constant("HTLB_BUDDY_PGALLOC_FAIL")) == 0
    assert int(global_node_page_state(prog, prog.constant("NR_HUGETLB"))) == 2 * PMD_PAGES
