"""User page tables, rmap and rss of a snapshot, read back by real drgn.

A process populates anonymous memory (some pages only read: the zero page), forks, and
both sides write part of it (CoW copy in the child, reuse in the parent).  drgn walks the
snapshot's page tables (follow_phys), sums the per-CPU rss counters (task_rss), and reads
struct pages, anon_vma trees and the LRU through the vmlinux's DWARF types.
"""

from __future__ import annotations

import pytest

from mmintro.kernel import fork, memory, mmap, rmap
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

RW = mmap.VM_READ | mmap.VM_WRITE
LEN = 2 << 20


def _present(k, mm, start, end):
    """{addr: pfn} for every present PTE of [start, end) (our side)."""
    out = {}
    for a in range(start, end, 4096):
        level, _slot, e = memory.walk(k, mm, a)
        if level == "PTE" and e & 1:
            out[a] = (e >> 12) & ((1 << 40) - 1)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not hasattr(fork, "do_fork"):
        pytest.skip("fork.do_fork (VMA helper) not available")
    k = boot(MachineConfig(ram=1 << 30, seed=11))
    p = fork.spawn_process(k, "parent", mmaps=[(LEN, RW)])
    vma = next(
        v
        for _f, _l, v in mmap.mm_tree(k, p.mm).mt_for_each(0)
        if k.kmem.get(v, "vm_area_struct", "vm_end") - k.kmem.get(v, "vm_area_struct", "vm_start") == LEN
    )
    a = k.kmem.get(vma, "vm_area_struct", "vm_start")
    memory.mm_populate(k, p.mm, a, 300 * 4096, True)
    memory.mm_populate(k, p.mm, a + 300 * 4096, 20 * 4096, False)
    fa = None
    try:
        from mmintro.kernel import filemap, inode
    except ImportError:
        filemap = None
    if filemap is not None:  # a shared file mapping, faulted before the fork
        f = inode.create_file(k, "/data/shared", 32 * 4096)
        fa = filemap.mmap_file(k, p.mm, f, 32 * 4096, mmap.VM_READ | mmap.VM_WRITE, True)
        for i in (0, 1, 20):
            memory.handle_mm_fault(k, p.mm, fa + i * 4096, i == 20, task=p.task)
    c = fork.do_fork(k, p)
    if fa is not None:
        memory.handle_mm_fault(k, c.mm, fa + 3 * 4096, False, task=c.task)
    for i in range(10):
        memory.handle_mm_fault(k, c.mm, a + i * 4096, True, task=c.task)
    for i in range(5, 15):
        memory.handle_mm_fault(k, p.mm, a + i * 4096, True, task=p.task)
    memory.handle_mm_fault(k, c.mm, a + 400 * 4096, False, task=c.task)
    k.on_cpu(1)
    memory.mm_populate(k, c.mm, a + 500 * 4096, 7 * 4096, True, task=c.task)
    d = tmp_path_factory.mktemp("memdrgn")
    save(k, d / "mem")
    from mmintro.crosscheck import open_drgn

    prog = open_drgn(str(d / "mem.vmcore"), str(d / "mem.vmlinux"))
    k.file_addr = fa
    return k, prog, p, c, vma, a


def test_follow_phys_agrees_on_every_mapped_page(world) -> None:
    from drgn import FaultError, Object
    from drgn.helpers.linux.mm import follow_phys

    k, prog, p, c, _vma, a = world
    n = 0
    for proc in (p, c):
        mm = Object(prog, "struct mm_struct *", proc.mm)
        ours = _present(k, proc.mm, a, a + LEN)
        assert ours
        for addr, pfn in ours.items():
            assert follow_phys(mm, addr + 0x123).value_() == (pfn << 12) + 0x123
            n += 1
        hole = next(x for x in range(a, a + LEN, 4096) if x not in ours)
        with pytest.raises(FaultError):
            follow_phys(mm, hole)
    assert n > 600


def test_zero_page_is_empty_zero_page(world) -> None:
    from drgn import Object
    from drgn.helpers.linux.mm import follow_phys

    _k, prog, p, _c, _vma, a = world
    sym = prog.symbol("empty_zero_page")
    kernel_pfn = follow_phys(prog["init_mm"].address_of_(), sym.address).value_() >> 12
    assert prog["zero_pfn"].value_() == kernel_pfn
    mm = Object(prog, "struct mm_struct *", p.mm)
    assert follow_phys(mm, a + 310 * 4096).value_() >> 12 == kernel_pfn


def test_task_rss_and_pgtables_bytes(world) -> None:
    from drgn import Object
    from drgn.helpers.linux.mm import task_rss

    k, prog, p, c, _vma, _a = world
    for proc in (p, c):
        task = Object(prog, "struct task_struct *", proc.task)
        r = task_rss(prog, task)
        assert (r.file, r.anon, r.shmem, r.swap) == tuple(
            memory.get_mm_counter_sum(k, proc.mm, m)
            for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS")
        )
        # an independent count: every table page below the user half of the PGD, walked by drgn
        mm = task.mm
        pgd = mm.pgd.value_()
        tables = 0
        mask = ((1 << 52) - 1) & ~0xFFF
        for i in range(256):
            e = prog.read_u64(pgd + 8 * i)
            if not e & 1:
                continue
            tables += 1
            for j in range(512):
                e2 = prog.read_u64(0xFFFF888000000000 + (e & mask) + 8 * j)
                if not e2 & 1 or e2 & 0x80:
                    continue
                tables += 1
                for m in range(512):
                    e3 = prog.read_u64(0xFFFF888000000000 + (e2 & mask) + 8 * m)
                    if e3 & 1 and not e3 & 0x80:
                        tables += 1
        assert mm.pgtables_bytes.counter.value_() == tables * 4096
    # the child's rss: 300 shared + 7 populated on CPU 1, anon pages only
    assert task_rss(prog, Object(prog, "struct task_struct *", c.task)).anon == 307


def test_cow_struct_pages_in_drgn(world) -> None:
    from drgn import Object
    from drgn.helpers.linux.mm import follow_page

    k, prog, p, c, vma, a = world
    pm = Object(prog, "struct mm_struct *", p.mm)
    cm = Object(prog, "struct mm_struct *", c.mm)
    excl = 1 << prog["PG_anon_exclusive"].value_()
    pav = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    # page 20: still shared by parent and child
    pg = follow_page(pm, a + 20 * 4096)
    assert follow_page(cm, a + 20 * 4096) == pg
    assert pg._mapcount.counter.value_() == 1 and pg._refcount.counter.value_() == 2
    assert not pg.flags.f.value_() & excl if hasattr(pg.flags, "f") else not pg.flags.value_() & excl
    assert pg.mapping.value_() == pav | 1
    # page 2: the child copied it; the parent's page is back to one mapping, not yet exclusive
    pp, cp = follow_page(pm, a + 2 * 4096), follow_page(cm, a + 2 * 4096)
    assert pp != cp
    assert pp._mapcount.counter.value_() == 0 and pp._refcount.counter.value_() == 1
    assert cp._mapcount.counter.value_() == 0 and cp._refcount.counter.value_() == 1
    cvma = mmap.find_vma(k, c.mm, a)
    assert cp.mapping.value_() == k.kmem.get(cvma, "vm_area_struct", "anon_vma") | 1
    # page 7: copied by the child, then reused by the parent (exclusive again)
    p7 = follow_page(pm, a + 7 * 4096)
    flags = p7.flags.f.value_() if hasattr(p7.flags, "f") else p7.flags.value_()
    assert flags & excl and p7._mapcount.counter.value_() == 0
    # page 12: written by the parent only -> copied in the parent, the old one the child's alone
    assert follow_page(pm, a + 12 * 4096) != follow_page(cm, a + 12 * 4096)


def test_anon_mapped_counter_and_lru_in_drgn(world) -> None:
    from drgn import Object
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import page_to_pfn

    k, prog, p, c, _vma, a = world
    anon = set()
    for proc in (p, c):
        for pfn in _present(k, proc.mm, a, a + LEN).values():
            page = prog["vmemmap_base"].value_() + pfn * 64
            if prog.read_u64(page + prog.type("struct page").member("mapping").offset) & 1:
                anon.add(pfn)
    stat = prog["vm_node_stat"][prog["NR_ANON_MAPPED"]].counter.value_()
    assert stat == len(anon)  # pages mapped at least once
    lru = prog["node_data"][0].__lruvec.lists[prog["LRU_INACTIVE_ANON"]]
    on_lru = {page_to_pfn(pg).value_() for pg in list_for_each_entry("struct page", lru.address_of_(), "lru")}
    assert anon <= on_lru
    _ = Object


def test_anon_vma_interval_tree_in_drgn(world) -> None:
    from drgn import Object
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry, validate_rbtree

    k, prog, _p, c, vma, a = world
    av = Object(prog, "struct anon_vma *", k.kmem.get(vma, "vm_area_struct", "anon_vma"))
    cvma = mmap.find_vma(k, c.mm, a)
    avcs = list(rbtree_inorder_for_each_entry("struct anon_vma_chain", av.rb_root.rb_root.address_of_(), "rb"))
    assert sorted(x.vma.value_() for x in avcs) == sorted([vma, cvma])
    assert av.rb_root.rb_leftmost == avcs[0].rb.address_of_()
    validate_rbtree(
        "struct anon_vma_chain",
        av.rb_root.rb_root.address_of_(),
        "rb",
        lambda x, y: (x.vma.vm_pgoff > y.vma.vm_pgoff) - (x.vma.vm_pgoff < y.vma.vm_pgoff),
        True,
    )

    def last(x):
        v = x.vma
        return v.vm_pgoff.value_() + ((v.vm_end - v.vm_start).value_() >> 12) - 1

    for x in avcs:
        kids = [x.rb.rb_left, x.rb.rb_right]
        want = max(
            [last(x)]
            + [
                Object(
                    prog,
                    "struct anon_vma_chain *",
                    kid.value_() - prog.type("struct anon_vma_chain").member("rb").offset,
                ).rb_subtree_last.value_()
                for kid in kids
                if kid
            ]
        )
        assert x.rb_subtree_last.value_() == want
    assert rmap.anon_vma_interval_tree_vmas(k, av.value_())


def test_file_pages_and_i_mmap_in_drgn(world) -> None:
    from drgn import Object
    from drgn.helpers.linux.mm import follow_phys, page_to_pfn
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry
    from drgn.helpers.linux.xarray import xa_load

    k, prog, p, c, _vma, _a = world
    fa = k.file_addr
    if fa is None:
        pytest.skip("no file mappings (FILE helper)")
    pvma, cvma = mmap.find_vma(k, p.mm, fa), mmap.find_vma(k, c.mm, fa)
    file = Object(prog, "struct vm_area_struct *", pvma).vm_file
    mapping = file.f_mapping
    # i_mmap holds the parent's VMA and the child's copy (dup_mmap links it after the parent's)
    vmas = [
        v.value_()
        for v in rbtree_inorder_for_each_entry(
            "struct vm_area_struct", mapping.i_mmap.rb_root.address_of_(), "shared.rb"
        )
    ]
    assert sorted(vmas) == sorted([pvma, cvma])
    # every file PTE of both processes maps the page-cache folio at its index (drgn's xa_load)
    counts: dict[int, int] = {}
    for proc in (p, c):
        mm = Object(prog, "struct mm_struct *", proc.mm)
        for addr, pfn in _present(k, proc.mm, fa, fa + 32 * 4096).items():
            idx = (addr - fa) >> 12
            folio = xa_load(mapping.i_pages.address_of_(), idx)
            assert folio, idx
            cache_pfn = page_to_pfn(Object(prog, "struct page *", folio.value_())).value_()
            assert follow_phys(mm, addr).value_() >> 12 == cache_pfn == pfn
            counts[pfn] = counts.get(pfn, 0) + 1
    assert counts
    # fork did not copy the shared file VMA's PTEs (no anon_vma: vma_needs_copy is false); the
    # child faulted its own, so each page's _mapcount + 1 is the number of PTEs found above
    for pfn, n in counts.items():
        page = Object(prog, "struct page *", prog["vmemmap_base"].value_() + 64 * pfn)
        assert page._mapcount.counter.value_() + 1 == n
        assert page._refcount.counter.value_() == n + 1  # + the page cache's reference
