"""User page tables, faults, CoW, rmap and mempolicy (mmintro.kernel.memory / rmap / mempolicy).

Expected values come from the 6.18 rules (x86 PAGE_* protections, do_anonymous_page's
pte_mkwrite(pte_mkdirty()), __copy_present_ptes' wrprotect + pte_mkold, lib/percpu_counter.c
batching, interleave_nid's modulo) and, for the snapshot, from real drgn reading the pair.
"""

from __future__ import annotations

import pytest

from mmintro.kernel import fork, memory, mempolicy, mmap, rmap
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot

RW = mmap.VM_READ | mmap.VM_WRITE
# arch/x86/include/asm/pgtable_types.h bits, spelled out here on purpose (the test's oracle)
P, W, U, A, D, SPECIAL, NX = 1 << 0, 1 << 1, 1 << 2, 1 << 5, 1 << 6, 1 << 9, 1 << 63
PAGE_TABLE = P | W | U | A | D  # _PAGE_TABLE
PGTY_TABLE = 0xF2000000


def _vma_of_len(k, mm, length):
    for _f, _l, v in mmap.mm_tree(k, mm).mt_for_each(0):
        if k.kmem.get(v, "vm_area_struct", "vm_end") - k.kmem.get(v, "vm_area_struct", "vm_start") == length:
            return v
    raise LookupError(length)


def _start(k, vma):
    return k.kmem.get(vma, "vm_area_struct", "vm_start")


@pytest.fixture()
def k():
    return boot(MachineConfig(ram=1 << 30, seed=3))


def _proc(k, length=4 << 20, prot=RW, comm="t"):
    p = fork.spawn_process(k, comm, mmaps=[(length, prot)])
    vma = _vma_of_len(k, p.mm, length)
    return p, vma, _start(k, vma)


def test_read_fault_maps_the_zero_page_write_fault_a_new_page(k) -> None:
    p, _vma, a = _proc(k)
    nr_pt = k.node_vm_stat[0].get("NR_PAGETABLE", 0)
    f = memory.handle_mm_fault(k, p.mm, a, False)
    assert f.kind == "anon-zero" and f.pfn == k.pa(k.sym("empty_zero_page")) >> 12
    level, _slot, e = memory.walk(k, p.mm, a)
    # PAGE_COPY (P|U|A|NX) of a private writable VMA + _PAGE_SPECIAL, read-only
    assert level == "PTE" and e == (f.pfn << 12) | P | U | A | NX | SPECIAL
    # a fresh region: PUD, PMD and PTE tables, each 4 KiB in pgtables_bytes and NR_PAGETABLE
    assert k.kmem.get(p.mm, "mm_struct", "pgtables_bytes.counter") == 3 * 4096
    assert k.node_vm_stat[0]["NR_PAGETABLE"] == nr_pt + 3
    g = memory.handle_mm_fault(k, p.mm, a + 0x1000, True)
    assert g.kind == "anon"
    assert memory.walk(k, p.mm, a + 0x1000)[2] == (g.pfn << 12) | P | W | U | A | D | NX
    # the zero page's own PTE: a write goes through do_wp_page -> wp_page_copy (a new page)
    h = memory.handle_mm_fault(k, p.mm, a, True)
    assert h.kind == "anon" and h.pfn != f.pfn
    assert memory.walk(k, p.mm, a)[2] == (h.pfn << 12) | P | W | U | A | D | NX
    # every upper entry is _PAGE_TABLE | the table's physical address
    pgd = k.kmem.get(p.mm, "mm_struct", "pgd")
    e = k.mem.read_u64(k.pa(pgd + 8 * ((a >> 39) & 511)))
    assert e & 0xFFF == PAGE_TABLE
    for level in ("pud", "pmd", "pte"):
        table_pfn = (e & ((1 << 52) - 1)) >> 12
        page = k.pfn_to_page(table_pfn)
        assert k.kmem.get(page, "ptdesc", "__page_type") == PGTY_TABLE
        assert k.kmem.get(page, "page", "_refcount.counter") == 1
        assert k.kmem.get(page, "ptdesc", "ptl.rlock.raw_lock.val.counter") == 0
        if level != "pte":
            shift = 30 if level == "pud" else 21
            e = k.mem.read_u64((table_pfn << 12) + 8 * ((a >> shift) & 511))
            assert e & 0xFFF == PAGE_TABLE
    assert [r.kind for r in k.fault_log] == ["anon-zero", "anon", "anon"]
    assert k.kmem.get(p.task, "task_struct", "min_flt") == 3


def test_new_anon_page_struct_page_words(k) -> None:
    p, vma, a = _proc(k)
    f = memory.handle_mm_fault(k, p.mm, a + 5 * 4096, True)
    av = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    assert av and k.kmem.get(av, "anon_vma", "root") == av and k.kmem.get(av, "anon_vma", "refcount.counter") == 1
    page = k.pfn_to_page(f.pfn)
    assert k.kmem.get(page, "page", "mapping") == av | 1  # FOLIO_MAPPING_ANON
    assert k.kmem.get(page, "folio", "index") == (a >> 12) + 5  # linear_page_index, vm_pgoff = start >> 12
    assert k.kmem.get(page, "page", "_mapcount.counter") == 0
    assert k.kmem.get(page, "page", "_refcount.counter") == 1
    flags = k.kmem.get(page, "page", "flags")
    for bit in ("PG_uptodate", "PG_swapbacked", "PG_anon_exclusive", "PG_lru"):
        assert flags >> k.T.const(bit) & 1, bit
    # the anon_vma's interval tree holds the VMA's one chain
    assert rmap.anon_vma_interval_tree_vmas(k, av) == [vma]
    assert k.kmem.get(av, "anon_vma", "num_active_vmas") == 1


def test_rss_percpu_counter_batching(k) -> None:
    p, _vma, a = _proc(k)
    batch = max(32, 2 * k.config.cpus)  # lib/percpu_counter.c compute_batch_value
    n = 3 * batch + 5
    for i in range(n):
        memory.handle_mm_fault(k, p.mm, a + i * 4096, True)
    assert memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES") == n
    # fbc->count got the deltas each time the CPU's s32 reached the batch
    assert memory.get_mm_counter(k, p.mm, "MM_ANONPAGES") == n - n % batch
    k.on_cpu(1)
    memory.handle_mm_fault(k, p.mm, a + n * 4096, True)
    assert memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES") == n + 1
    assert memory.get_mm_counter(k, p.mm, "MM_ANONPAGES") == n - n % batch


def test_access_errors_are_sigsegv(k) -> None:
    p, _vma, a = _proc(k, prot=mmap.VM_READ)
    with pytest.raises(memory.SegmentationFault):
        memory.handle_mm_fault(k, p.mm, a, True)
    with pytest.raises(memory.SegmentationFault):
        memory.handle_mm_fault(k, p.mm, 0x1000, False)  # no VMA below the program
    memory.handle_mm_fault(k, p.mm, a, False)


def test_populate_equals_fault_by_fault() -> None:
    """mm_populate's batched path leaves exactly the memory one handle_mm_fault per page leaves."""
    mems, logs = [], []
    for batched in (True, False):
        k = boot(MachineConfig(ram=1 << 30, seed=5))
        p, _vma, a = _proc(k, length=8 << 20)
        start = ((a + (4 << 20)) & ~((1 << 21) - 1)) - 40 * 4096  # straddles a PMD boundary
        memory.handle_mm_fault(k, p.mm, start + 7 * 4096, False)  # a zero page inside the range
        if batched:
            n = memory.mm_populate(k, p.mm, start, 700 * 4096, True)
            assert n == 700
        else:
            for i in range(700):
                e = memory.walk(k, p.mm, start + i * 4096)[2]
                if not e & P or not e & W:
                    memory.handle_mm_fault(k, p.mm, start + i * 4096, True)
        k.sync()
        mems.append({a: bytes(b) for a, b in k.mem.nonzero_runs()})
        logs.append([(r.addr, r.pfn, r.kind) for r in k.fault_log])
    assert logs[0] == logs[1]
    assert mems[0].keys() == mems[1].keys()
    assert all(mems[0][a] == mems[1][a] for a in mems[0])


def _require_fork():
    if not hasattr(fork, "do_fork"):
        pytest.skip("fork.do_fork (VMA helper) not available")


def test_fork_cow_then_copy_and_reuse(k) -> None:
    _require_fork()
    p, vma, a = _proc(k)
    f = memory.handle_mm_fault(k, p.mm, a, True)
    z = memory.handle_mm_fault(k, p.mm, a + 4096, False)
    child = fork.do_fork(k, p)
    cvma = mmap.find_vma(k, child.mm, a)
    pe = memory.walk(k, p.mm, a)[2]
    ce = memory.walk(k, child.mm, a)[2]
    # __copy_present_ptes: both write-protected; the child's entry old (no Accessed)
    assert pe == (f.pfn << 12) | P | U | A | D | NX
    assert ce == (f.pfn << 12) | P | U | D | NX
    # the zero page PTE is copied as is (special, already read-only), made old in the child
    assert memory.walk(k, child.mm, a + 4096)[2] == (z.pfn << 12) | P | U | NX | SPECIAL
    page = k.pfn_to_page(f.pfn)
    assert k.kmem.get(page, "page", "_mapcount.counter") == 1  # two PTE mappings
    assert k.kmem.get(page, "page", "_refcount.counter") == 2
    assert not k.kmem.get(page, "page", "flags") >> k.T.const("PG_anon_exclusive") & 1
    assert memory.get_mm_counter_sum(k, child.mm, "MM_ANONPAGES") == 1
    # anon_vma_fork: the child's own anon_vma, child of the parent's, same root
    pav = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    cav = k.kmem.get(cvma, "vm_area_struct", "anon_vma")
    assert cav != pav and k.kmem.get(cav, "anon_vma", "parent") == pav and k.kmem.get(cav, "anon_vma", "root") == pav
    assert k.kmem.get(pav, "anon_vma", "num_children") == 2  # itself (root) + the child's
    assert sorted(rmap.anon_vma_interval_tree_vmas(k, pav)) == sorted([vma, cvma])
    # the child writes: wp_page_copy, the parent's page back to one mapping
    c = memory.handle_mm_fault(k, child.mm, a, True, task=child.task)
    assert c.kind == "cow-copy" and c.pfn != f.pfn
    assert memory.walk(k, child.mm, a)[2] == (c.pfn << 12) | P | W | U | A | D | NX
    assert k.kmem.get(k.pfn_to_page(c.pfn), "page", "mapping") == cav | 1
    assert k.kmem.get(page, "page", "_mapcount.counter") == 0
    assert k.kmem.get(page, "page", "_refcount.counter") == 1
    # the parent writes: its page is no longer shared -> reused in place
    r = memory.handle_mm_fault(k, p.mm, a, True)
    assert r.kind == "cow-reuse" and r.pfn == f.pfn
    assert memory.walk(k, p.mm, a)[2] == (f.pfn << 12) | P | W | U | A | D | NX
    assert k.kmem.get(page, "page", "flags") >> k.T.const("PG_anon_exclusive") & 1


def test_fork_skips_vmas_without_anon_vma(k) -> None:
    _require_fork()
    p, _vma, a = _proc(k)
    memory.handle_mm_fault(k, p.mm, a, False)  # zero page only: no anon_vma
    child = fork.do_fork(k, p)
    assert memory.walk(k, child.mm, a)[0] != "PTE" or not memory.walk(k, child.mm, a)[2]


def test_zap_and_free_pgtables_return_everything(k) -> None:
    p, vma, a = _proc(k)
    before_pt = k.node_vm_stat[0].get("NR_PAGETABLE", 0)
    before_anon = k.node_vm_stat[0].get("NR_ANON_MAPPED", 0)
    memory.mm_populate(k, p.mm, a, 600 * 4096, True)
    pfns = [memory.walk(k, p.mm, a + i * 4096)[2] >> 12 & ((1 << 40) - 1) for i in range(600)]
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == before_anon + 600
    end = _start(k, vma) + (4 << 20)
    memory.zap_page_range(k, vma, a, end)
    memory.free_pgtables(k, p.mm, a, end, 0, 0)
    assert memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES") == 0
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == before_anon
    assert k.node_vm_stat[0]["NR_PAGETABLE"] == before_pt
    assert k.kmem.get(p.mm, "mm_struct", "pgtables_bytes.counter") == 0
    assert all(k.kmem.get(k.pfn_to_page(pf), "page", "_refcount.counter") == 0 for pf in pfns)
    assert not any(pf in k.allocations for pf in pfns)  # back in the page allocator
    assert memory.walk(k, p.mm, a)[0] == "PGD"


def test_mempolicy_interleave_bind_preferred() -> None:
    k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=2, seed=2))
    p, vma, a = _proc(k, length=64 * 4096)
    mempolicy.do_mbind(k, p.mm, a, 64 * 4096, "MPOL_INTERLEAVE", [0, 1])
    pol = k.kmem.get(vma, "vm_area_struct", "vm_policy")
    assert pol and k.kmem.get(pol, "mempolicy", "mode") == k.T.const("MPOL_INTERLEAVE")
    assert k.kmem.get(pol, "mempolicy", "refcnt.counter") == 1
    pgoff = k.kmem.get(vma, "vm_area_struct", "vm_pgoff")
    for i in range(8):
        f = memory.handle_mm_fault(k, p.mm, a + i * 4096, True)
        assert rmap.folio_nid(k, f.pfn) == (pgoff + i) % 2  # interleave_nid: ilx % nnodes
    memory.mm_populate(k, p.mm, a + 8 * 4096, 8 * 4096, True)
    for i in range(8, 16):
        pfn = memory.walk(k, p.mm, a + i * 4096)[2] >> 12 & ((1 << 40) - 1)
        assert rmap.folio_nid(k, pfn) == (pgoff + i) % 2
    q, _qvma, b = _proc(k, length=16 * 4096, comm="b")
    mempolicy.do_set_mempolicy(k, q.task, "MPOL_BIND", [1])
    assert all(rmap.folio_nid(k, memory.handle_mm_fault(k, q.mm, b + i * 4096, True).pfn) == 1 for i in range(4))
    mempolicy.do_set_mempolicy(k, q.task, "MPOL_PREFERRED", [1])
    assert rmap.folio_nid(k, memory.handle_mm_fault(k, q.mm, b + 8 * 4096, True).pfn) == 1
    mempolicy.do_set_mempolicy(k, q.task, "MPOL_DEFAULT", [])
    assert k.kmem.get(q.task, "task_struct", "mempolicy") == 0
    assert rmap.folio_nid(k, memory.handle_mm_fault(k, q.mm, b + 9 * 4096, True).pfn) == 0  # local


def _file_api():
    try:
        from mmintro.kernel import filemap, inode
    except ImportError:
        pytest.skip("FILE helper's inode/filemap not available")
    return inode, filemap


def test_file_faults_private_read_cow_and_shared_write(k) -> None:
    inode, filemap = _file_api()
    p = fork.spawn_process(k, "f")
    f = inode.create_file(k, "/data/m", 16 * 4096)
    priv = filemap.mmap_file(k, p.mm, f, 16 * 4096, RW, False)
    shared = filemap.mmap_file(k, p.mm, f, 16 * 4096, RW, True)
    mapped0 = k.node_vm_stat[0].get("NR_FILE_MAPPED", 0)
    r = memory.handle_mm_fault(k, p.mm, priv, False)
    # a private file page read: read-only PAGE_COPY entry; one mapping + the page cache's reference
    assert r.kind == "file" and memory.walk(k, p.mm, priv)[2] == (r.pfn << 12) | P | U | A | NX
    assert rmap.page_mapcount(k, r.pfn) == 1 and rmap.folio_ref_count(k, r.pfn) == 2
    assert k.node_vm_stat[0]["NR_FILE_MAPPED"] == mapped0 + 1
    # a write fault on a shared page never faulted: do_shared_fault, dirty writable entry, PG_dirty
    s = memory.handle_mm_fault(k, p.mm, shared + 4096, True)
    assert s.kind == "file-shared"
    assert memory.walk(k, p.mm, shared + 4096)[2] == (s.pfn << 12) | P | W | U | A | D | NX
    assert k.kmem.get(k.pfn_to_page(s.pfn), "page", "flags") >> k.T.const("PG_dirty") & 1
    # the same file page through the shared mapping: two mappings, three references; the
    # read fault maps its 64 KiB fault-around window (do_fault_around -> filemap_map_pages):
    # every cached, uptodate, unlocked, non-readahead page into a none PTE, read-only, young
    mapping = k.kmem.get(f, "file", "f_mapping")
    pf = k.T.enum("pageflags")
    eligible = {}
    for idx in range(16):
        pfn = filemap._lookup(k, mapping, idx)
        if pfn is not None:
            fl = k.kmem.get(k.pfn_to_page(pfn), "page", "flags")
            if fl >> pf["PG_uptodate"] & 1 and not fl >> pf["PG_locked"] & 1 and not fl >> pf["PG_reclaim"] & 1:
                eligible[idx] = pfn
    assert 1 < len(eligible) < 16  # readahead marked one page PG_readahead
    # do_fault_around()'s window: from_pte = max(ALIGN_DOWN(pte_off, nr_pages), pte_off -
    # min(pte_off, vma_off)), to_pte = min3(from_pte + nr_pages, PTRS_PER_PTE, pte_off +
    # vma_pages - vma_off) - 1 -- clamped to the VMA *and to the PTE table*: the fault at
    # the VMA's first page (vma_off 0) maps idx 0 .. min(16, 512 - pte_off) - 1 only, the
    # rest of the file lies under the next PMD entry and stays unmapped
    pte_off = (shared >> 12) & 511
    window = range(min(16, 512 - pte_off))
    eligible = {idx: pfn for idx, pfn in eligible.items() if idx in window}
    t = memory.handle_mm_fault(k, p.mm, shared, False)
    assert t.pfn == r.pfn and rmap.page_mapcount(k, r.pfn) == 2 and rmap.folio_ref_count(k, r.pfn) == 3
    for idx in range(16):
        e = memory.walk(k, p.mm, shared + idx * 4096)[2]
        if idx == 1:
            continue
        if idx in eligible:
            # mk_pte(page, vm_page_prot) (read-only with writenotify; PAGE_SHARED without it,
            # then pte_mkdirty for a dirty folio)
            prot = k.kmem.get(mmap.find_vma(k, p.mm, shared), "vm_area_struct", "vm_page_prot")
            fl = k.kmem.get(k.pfn_to_page(eligible[idx]), "page", "flags")
            want = (eligible[idx] << 12) | prot | (D if prot & W and fl >> pf["PG_dirty"] & 1 else 0)
            assert prot & (P | U | A | NX) == P | U | A | NX and e == want, idx
        else:
            assert not e & P, idx
    files = set(eligible.values()) | {s.pfn}
    assert memory.get_mm_counter_sum(k, p.mm, "MM_FILEPAGES") == 1 + len(files)
    assert k.node_vm_stat[0]["NR_FILE_MAPPED"] == mapped0 + len(files)  # counted once per page
    # a private write on the cached page: wp_page_copy into an anonymous page, rss moves
    c = memory.handle_mm_fault(k, p.mm, priv, True)
    assert c.kind == "cow-copy" and c.pfn != r.pfn
    assert memory.walk(k, p.mm, priv)[2] == (c.pfn << 12) | P | W | U | A | D | NX
    assert rmap.page_mapcount(k, r.pfn) == 1 and rmap.folio_ref_count(k, r.pfn) == 2
    assert memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES") == 1
    assert memory.get_mm_counter_sum(k, p.mm, "MM_FILEPAGES") == len(files)
    # both VMAs sit in the file's i_mmap interval tree, ordered by pgoff (both 0: insertion order)
    vmas = rmap.vma_interval_tree_vmas(k, mapping)
    assert sorted(vmas) == sorted([mmap.find_vma(k, p.mm, priv), mmap.find_vma(k, p.mm, shared)])
    # unmapping the shared VMA: the dirty PTE's page stays dirty in the cache, rss and mapcounts drop
    svma = mmap.find_vma(k, p.mm, shared)
    memory.zap_page_range(k, svma, shared, shared + 16 * 4096)
    assert memory.get_mm_counter_sum(k, p.mm, "MM_FILEPAGES") == 0
    assert rmap.page_mapcount(k, s.pfn) == 0 and rmap.folio_ref_count(k, s.pfn) == 1
    assert k.node_vm_stat[0]["NR_FILE_MAPPED"] == mapped0


def test_mbind_of_part_of_a_vma_splits_it() -> None:
    k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=2, seed=4))
    p, _vma, a = _proc(k, length=12 * 4096)
    mempolicy.do_mbind(k, p.mm, a + 4 * 4096, 4 * 4096, "MPOL_BIND", [1])
    vmas = [mmap.find_vma(k, p.mm, a + i * 4096) for i in (0, 4, 8)]
    assert len(set(vmas)) == 3
    assert [(_start(k, v) - a) // 4096 for v in vmas] == [0, 4, 8]
    pols = [k.kmem.get(v, "vm_area_struct", "vm_policy") for v in vmas]
    assert pols[0] == 0 and pols[2] == 0 and pols[1]
    assert mempolicy.policy_info(k, pols[1]) == (k.T.const("MPOL_BIND"), [1])
    assert rmap.folio_nid(k, memory.handle_mm_fault(k, p.mm, a + 5 * 4096, True).pfn) == 1
    assert rmap.folio_nid(k, memory.handle_mm_fault(k, p.mm, a + 9 * 4096, True).pfn) == 0


def test_thp_shared_by_fork_tracks_both_mm_ids() -> None:
    _require_fork()
    k = boot(MachineConfig(ram=1 << 30, seed=6, thp="always"))
    p, _vma, a = _proc(k, length=8 << 20)
    b = (a + (2 << 20)) & ~((2 << 20) - 1)
    f = memory.handle_mm_fault(k, p.mm, b, True)
    if f.kind != "thp":
        pytest.skip("THP faults not available (HUGE helper)")
    c = fork.do_fork(k, p)
    pid_, cid = rmap.mm_id(k, p.mm), rmap.mm_id(k, c.mm)
    assert pid_ != cid and {pid_, cid} <= {1, 2, 3, 4}
    page = k.pfn_to_page(f.pfn)
    # folio_add_large_mapcount (CONFIG_MM_ID): slot 0 the parent (0 = one mapping), slot 1 the
    # child, bit 63 "maybe mapped shared"; two PMD mappings: _entire_mapcount 1, _large_mapcount 1
    assert k.kmem.get(page, "folio", "_mm_ids") == (1 << 63) | (cid << 32) | pid_
    assert k.kmem.get(page, "folio", "_entire_mapcount.counter") == 1
    assert k.kmem.get(page, "folio", "_large_mapcount.counter") == 1
    # the child's write splits its PMD and copies one page: the folio stays shared
    x = memory.handle_mm_fault(k, c.mm, b + 2 * 4096, True, task=c.task)
    assert x.kind == "cow-copy" and x.pfn != f.pfn + 2
    assert k.kmem.get(page, "folio", "_large_mapcount.counter") == 1 + 511 - 1  # PMD + 511 PTEs, -1 based
    assert k.kmem.get(page, "folio", "_mm_id_mapcount[1]") == 510


def test_fork_then_child_unmaps_leaves_the_parent_whole(k) -> None:
    _require_fork()
    p, vma, a = _proc(k)
    memory.mm_populate(k, p.mm, a, 600 * 4096, True)
    anon0 = k.node_vm_stat[0]["NR_ANON_MAPPED"]
    c = fork.do_fork(k, p)
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == anon0  # shared pages count once
    copies = [memory.handle_mm_fault(k, c.mm, a + i * 4096, True, task=c.task).pfn for i in range(0, 600, 7)]
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == anon0 + len(copies)
    cvma = mmap.find_vma(k, c.mm, a)
    memory.zap_page_range(k, cvma, a, a + (4 << 20))
    assert memory.get_mm_counter_sum(k, c.mm, "MM_ANONPAGES") == 0
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == anon0
    assert not any(pf in k.allocations for pf in copies)
    for i in range(600):
        pfn = memory.walk(k, p.mm, a + i * 4096)[2] >> 12 & ((1 << 40) - 1)
        page = k.pfn_to_page(pfn)
        assert k.kmem.get(page, "page", "_mapcount.counter") == 0
        assert k.kmem.get(page, "page", "_refcount.counter") == 1
    _ = vma


def test_task_interleave_outside_vmas_walks_il_prev() -> None:
    k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=2, seed=8))
    p = fork.spawn_process(k, "il")
    mempolicy.do_set_mempolicy(k, p.task, "MPOL_INTERLEAVE", [0, 1])
    assert k.kmem.get(p.task, "task_struct", "il_prev") == 1023  # MAX_NUMNODES - 1
    # interleave_nodes(): next_node_in(il_prev, {0, 1}) wraps to 0, then 1, 0, ...
    nids = [rmap.folio_nid(k, mempolicy.alloc_pages_task(k, p.task, 0xCC0)) for _ in range(5)]
    assert nids == [0, 1, 0, 1, 0]
    assert k.kmem.get(p.task, "task_struct", "il_prev") == 0


def test_prot_none_entries_are_present_for_fork_and_unmap(k) -> None:
    _require_fork()
    try:
        from mmintro.kernel import mprotect
    except ImportError:
        pytest.skip("mprotect (VMA helper) not available")
    p, _vma, a = _proc(k)
    pfns = [memory.handle_mm_fault(k, p.mm, a + i * 4096, True).pfn for i in range(8)]
    anon0 = k.node_vm_stat[0]["NR_ANON_MAPPED"]
    assert mprotect.do_mprotect(k, p.mm, a, 8 * 4096, 0) == 0
    e = memory.walk(k, p.mm, a)[2]
    if e & P:
        pytest.skip("mprotect left the entries present")
    assert e & (1 << 8) and memory.pte_present(e)  # _PAGE_PROTNONE
    with pytest.raises(memory.SegmentationFault):
        memory.handle_mm_fault(k, p.mm, a, False)
    c = fork.do_fork(k, p)
    assert all(k.kmem.get(k.pfn_to_page(pf), "page", "_mapcount.counter") == 1 for pf in pfns)
    assert memory.get_mm_counter_sum(k, c.mm, "MM_ANONPAGES") == 8
    for proc in (c, p):
        memory.zap_page_range(k, mmap.find_vma(k, proc.mm, a), a, a + 8 * 4096)
    assert not any(pf in k.allocations for pf in pfns)
    assert k.node_vm_stat[0]["NR_ANON_MAPPED"] == anon0 - 8


def test_unmap_mapping_pages_keeps_private_copies(k) -> None:
    inode, filemap = _file_api()
    p = fork.spawn_process(k, "u")
    f = inode.create_file(k, "/data/u", 16 * 4096)
    priv = filemap.mmap_file(k, p.mm, f, 16 * 4096, RW, False)
    shared = filemap.mmap_file(k, p.mm, f, 16 * 4096, RW, True)
    memory.handle_mm_fault(k, p.mm, priv, False)
    cow = memory.handle_mm_fault(k, p.mm, priv + 4096, True).pfn
    memory.handle_mm_fault(k, p.mm, shared + 2 * 4096, False)
    mapped = {i for i in range(16) if memory.walk(k, p.mm, shared + i * 4096)[2] & P}
    assert mapped
    memory.unmap_mapping_pages(k, k.kmem.get(f, "file", "f_mapping"), 0, 16)
    for i in range(16):
        assert not memory.walk(k, p.mm, shared + i * 4096)[2] & P
        e = memory.walk(k, p.mm, priv + i * 4096)[2]
        assert (e >> 12 & ((1 << 40) - 1)) == cow if i == 1 else not e & P
    assert memory.get_mm_counter_sum(k, p.mm, "MM_FILEPAGES") == 0
    assert memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES") == 1


def test_access_sets_accessed_dirty_without_faulting(k) -> None:
    _require_fork()
    p, _vma, a = _proc(k)
    f = memory.handle_mm_fault(k, p.mm, a, True)
    c = fork.do_fork(k, p)
    assert memory.walk(k, c.mm, a)[2] == (f.pfn << 12) | P | U | D | NX  # old after fork
    n = len(k.fault_log)
    assert memory.access(k, c.mm, a, False, task=c.task) is None  # the walker sets Accessed
    assert memory.walk(k, c.mm, a)[2] == (f.pfn << 12) | P | U | A | D | NX and len(k.fault_log) == n
    g = memory.access(k, c.mm, a, True, task=c.task)  # read-only: a CoW fault
    assert g.kind == "cow-copy" and len(k.fault_log) == n + 1


def test_fork_and_zap_fast_paths_equal_the_per_pte_path(monkeypatch) -> None:
    """copy_page_range / zap_page_range's table-at-a-time handling of small folios leaves the
    memory the per-PTE path leaves (checked by forcing every entry through the latter)."""
    _require_fork()

    def every_entry_slow(k, vals, idx, flags, rss):
        for j in range(len(idx)):
            yield int(idx[j]), 0, None, None

    mems = []
    for slow in (False, True):
        with monkeypatch.context() as m:
            if slow:
                m.setattr(memory, "_dup_small_folios", every_entry_slow)
                m.setattr(memory, "_zap_shared_small_anon", lambda k, vals, rss: list(range(len(vals))))
            k = boot(MachineConfig(ram=1 << 30, seed=9))
            p, _vma, a = _proc(k, length=8 << 20)
            memory.mm_populate(k, p.mm, a, 900 * 4096, True)
            memory.mm_populate(k, p.mm, a + 900 * 4096, 30 * 4096, False)
            c = fork.do_fork(k, p)
            for i in range(0, 900, 5):
                memory.handle_mm_fault(k, c.mm, a + i * 4096, True, task=c.task)
            cvma = mmap.find_vma(k, c.mm, a)
            memory.zap_page_range(k, cvma, a, a + (8 << 20))
            memory.free_pgtables(k, c.mm, a, a + (8 << 20))
            k.sync()
            mems.append({s: bytes(b) for s, b in k.mem.nonzero_runs()})
    assert mems[0].keys() == mems[1].keys()
    assert all(mems[0][s] == mems[1][s] for s in mems[0])


def _check_avc_tree(k, av):
    """Every anon_vma_chain node's rb_subtree_last = max(its VMA's last pgoff, its children's)."""
    from mmintro.kernel import rbtree as rb

    off = k.T.struct("anon_vma_chain").offsetof("rb")
    root = k.kmem.addr(av, "anon_vma", "rb_root.rb_root")
    rd = lambda a: k.mem.read_u64(k.pa(a))

    def walk_(node):
        if not node:
            return -1
        avc = node - off
        v = k.kmem.get(avc, "anon_vma_chain", "vma")
        last = (
            k.kmem.get(v, "vm_area_struct", "vm_pgoff")
            + ((k.kmem.get(v, "vm_area_struct", "vm_end") - k.kmem.get(v, "vm_area_struct", "vm_start")) >> 12)
            - 1
        )
        want = max(last, walk_(rd(node + rb.LEFT)), walk_(rd(node + rb.RIGHT)))
        assert k.kmem.get(avc, "anon_vma_chain", "rb_subtree_last") == want
        return want

    walk_(rd(root))


def test_split_vmas_share_the_anon_vma_with_exact_interval_keys(k) -> None:
    try:
        from mmintro.kernel import mprotect
    except ImportError:
        pytest.skip("mprotect (VMA helper) not available")
    p, vma, a = _proc(k, length=64 * 4096)
    memory.mm_populate(k, p.mm, a, 64 * 4096, True)
    av = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    assert mprotect.do_mprotect(k, p.mm, a + 16 * 4096, 16 * 4096, mmap.VM_READ) == 0
    vmas = sorted({mmap.find_vma(k, p.mm, a + i * 4096) for i in (0, 16, 40)})
    assert len(vmas) == 3
    assert all(k.kmem.get(v, "vm_area_struct", "anon_vma") == av for v in vmas)
    assert sorted(rmap.anon_vma_interval_tree_vmas(k, av)) == vmas
    _check_avc_tree(k, av)
    # every page's index still falls inside the VMA that maps it (rmap can find it)
    for i in range(64):
        pfn = memory.walk(k, p.mm, a + i * 4096)[2] >> 12 & ((1 << 40) - 1)
        v = mmap.find_vma(k, p.mm, a + i * 4096)
        idx = k.kmem.get(k.pfn_to_page(pfn), "folio", "index")
        vp = k.kmem.get(v, "vm_area_struct", "vm_pgoff")
        assert (
            vp
            <= idx
            < vp + ((k.kmem.get(v, "vm_area_struct", "vm_end") - k.kmem.get(v, "vm_area_struct", "vm_start")) >> 12)
        )


def test_rmap_walk_finds_exactly_the_mappings(k) -> None:
    _require_fork()
    p, vma, a = _proc(k, length=64 * 4096)
    memory.mm_populate(k, p.mm, a, 32 * 4096, True)
    c = fork.do_fork(k, p)
    cvma = mmap.find_vma(k, c.mm, a)
    copied = memory.handle_mm_fault(k, c.mm, a + 3 * 4096, True, task=c.task).pfn
    shared = memory.walk(k, p.mm, a + 5 * 4096)[2] >> 12 & ((1 << 40) - 1)
    old3 = memory.walk(k, p.mm, a + 3 * 4096)[2] >> 12 & ((1 << 40) - 1)
    assert sorted(rmap.rmap_walk(k, shared)) == sorted([(vma, a + 5 * 4096), (cvma, a + 5 * 4096)])
    assert rmap.rmap_walk(k, copied) == [(cvma, a + 3 * 4096)]  # on the child's own anon_vma
    assert rmap.rmap_walk(k, old3) == [(vma, a + 3 * 4096)]  # the child's candidate VMA no longer maps it
    # after the child unmaps, the shared page is the parent's alone
    memory.zap_page_range(k, cvma, a, a + 64 * 4096)
    assert rmap.rmap_walk(k, shared) == [(vma, a + 5 * 4096)]
    inode, filemap = _file_api()
    f = inode.create_file(k, "/data/r", 8 * 4096)
    x = filemap.mmap_file(k, p.mm, f, 8 * 4096, RW, True)
    y = filemap.mmap_file(k, c.mm, f, 8 * 4096, RW, True)
    pg = memory.handle_mm_fault(k, p.mm, x + 2 * 4096, False).pfn
    memory.handle_mm_fault(k, c.mm, y + 2 * 4096, False, task=c.task)
    assert sorted(rmap.rmap_walk(k, pg)) == sorted(
        [(mmap.find_vma(k, p.mm, x), x + 2 * 4096), (mmap.find_vma(k, c.mm, y), y + 2 * 4096)]
    )


def test_interval_tree_queries_match_brute_force(k) -> None:
    _require_fork()
    p, vma, a = _proc(k, length=64 * 4096)
    memory.handle_mm_fault(k, p.mm, a, True)
    kids = [fork.do_fork(k, p) for _ in range(6)]
    try:
        from mmintro.kernel import mprotect

        for i, c in enumerate(kids):  # split the children's VMAs at different places
            mprotect.do_mprotect(k, c.mm, a + (4 + 7 * i) * 4096, 4096, mmap.VM_READ)
    except ImportError:
        pass
    av = k.kmem.get(vma, "vm_area_struct", "anon_vma")
    t = rmap._avc_tree(k)
    root = k.kmem.addr(av, "anon_vma", "rb_root")
    avcs = t.objects(root)
    assert len(avcs) >= 7
    _check_avc_tree(k, av)
    pg0 = k.kmem.get(vma, "vm_area_struct", "vm_pgoff")
    for s in range(0, 70, 3):
        for ln in (1, 5, 40):
            want = [x for x in avcs if t.start(x) <= pg0 + s + ln - 1 and pg0 + s <= t.last(x)]
            assert t.foreach(root, pg0 + s, pg0 + s + ln - 1) == want


def test_check_mm_after_a_mixed_life() -> None:
    _require_fork()
    k = boot(MachineConfig(ram=1 << 30, seed=12, thp="always", hugepages_2m=4))
    p, _vma, a = _proc(k, length=8 << 20)
    memory.mm_populate(k, p.mm, a, 300 * 4096, True)
    memory.handle_mm_fault(k, p.mm, a + (6 << 20), True)  # a THP where the VMA allows one
    memory.handle_mm_fault(k, p.mm, a + 400 * 4096, False)
    try:
        from mmintro.kernel import filemap, hugetlb, inode

        f = inode.create_file(k, "/data/mix", 64 * 4096)
        x = filemap.mmap_file(k, p.mm, f, 64 * 4096, RW, False)
        memory.handle_mm_fault(k, p.mm, x, False)
        memory.handle_mm_fault(k, p.mm, x + 5 * 4096, True)
        h = hugetlb.hugetlb_mmap(k, p.mm, 4 << 20, 2 << 20, RW)
        memory.handle_mm_fault(k, p.mm, h, True)
    except ImportError:
        pass
    c = fork.do_fork(k, p)
    for i in range(0, 300, 11):
        memory.handle_mm_fault(k, c.mm, a + i * 4096, True, task=c.task)
    for proc in (p, c):
        assert memory.check_mm(k, proc.mm) == []
    assert memory.check_mapcounts(k, [p.mm, c.mm]) == []
    # a broken counter is found
    memory.add_mm_counter(k, c.mm, "MM_ANONPAGES", 1)
    have = memory.get_mm_counter_sum(k, c.mm, "MM_ANONPAGES")
    assert memory.check_mm(k, c.mm) == [f"MM_ANONPAGES {have} != {have - 1} mapped"]


def test_check_mapcounts_reports_a_skewed_mapcount(k) -> None:
    p, _vma, a = _proc(k)
    f = memory.handle_mm_fault(k, p.mm, a, True)
    assert memory.check_mapcounts(k, [p.mm]) == []
    page = k.pfn_to_page(f.pfn)
    k.kmem.set(page, "page", "_mapcount.counter", 1)
    assert memory.check_mapcounts(k, [p.mm]) == [f"pfn {f.pfn:#x}: _mapcount + 1 = 2, 1 PTEs"]


def test_major_and_minor_file_faults(k) -> None:
    inode, filemap = _file_api()
    p = fork.spawn_process(k, "mj")
    f = inode.create_file(k, "/data/mj", 64 * 4096)
    x = filemap.mmap_file(k, p.mm, f, 64 * 4096, mmap.VM_READ, False)
    r = memory.handle_mm_fault(k, p.mm, x, False)  # not cached: read from disk
    assert r.major
    assert k.kmem.get(p.task, "task_struct", "maj_flt") == 1
    s = memory.handle_mm_fault(k, p.mm, x + 40 * 4096, False)
    t = memory.handle_mm_fault(k, p.mm, x + 41 * 4096, False)  # cached by now or mapped around
    assert t is not None and not t.major
    assert k.kmem.get(p.task, "task_struct", "maj_flt") == 1 + int(s.major)
    assert k.kmem.get(p.task, "task_struct", "min_flt") == 2 - int(s.major)
