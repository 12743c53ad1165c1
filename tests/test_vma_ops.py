"""munmap / mprotect / fork / exit (mmintro/kernel/vma.py, mmap.py, mprotect.py, fork.py,
exit.py) checked with real drgn on the snapshots they leave.

One machine: a parent with a populated anonymous mapping and heap; a hole punched with
munmap, part made read-only then partly writable again with mprotect (splits, merges,
PTE permissions); a child forked from it, then a last mprotect in the parent (which merges
its three VMAs back into one); a grandchild forked from the child that writes three heap
pages (copy-on-write), snapshotted, then exits and the machine is snapshotted again.

Expectations come from the kernel's rules, not from the model: the VMA lists are written
out by hand, PTEs are read by walking the page tables with drgn's memory reads, slab counts
are drgn's slab_cache_usage, the commitment is recomputed from the VMAs drgn sees.
"""

from __future__ import annotations

import pytest

from mmintro.kernel import exit as E
from mmintro.kernel import fork, memory
from mmintro.kernel import mmap as M
from mmintro.kernel import mprotect as P
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

drgn = pytest.importorskip("drgn")

R, W = M.VM_READ, M.VM_WRITE
PG = 0x1000
LEN = 0x40 * PG  # the anonymous mapping: 64 pages
HOLE = (0x10 * PG, 0x18 * PG)  # munmap'd: pages 16..23
HEAP_PAGES = 0x10
COW_PAGES = 3
CACHES = (
    "vm_area_struct",
    "mm_struct",
    "task_struct",
    "signal_cache",
    "pid",
    "maple_node",
    "anon_vma",
    "anon_vma_chain",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=11))
    par = fork.spawn_process(k, "forker", brk_grow=HEAP_PAGES * PG)
    a = M.do_mmap(k, par.mm, LEN, R | W)
    memory.mm_populate(k, par.mm, a, LEN, True)
    heap = k.kmem.get(par.mm, "mm_struct", "start_brk")
    memory.mm_populate(k, par.mm, heap, HEAP_PAGES * PG, True)
    rc = [
        M.do_munmap(k, par.mm, a + HOLE[0], HOLE[1] - HOLE[0]),
        P.do_mprotect(k, par.mm, a, 4 * PG, R),  # pages 0-3 read-only: a split
        P.do_mprotect(k, par.mm, a, 2 * PG, R | W),
    ]  # pages 0-1 writable again: split + merge left
    child = fork.do_fork(k, par)
    rc.append(P.do_mprotect(k, par.mm, a + 2 * PG, 2 * PG, R | W))  # merge prev and next: one VMA
    gchild = fork.do_fork(k, child)
    for i in range(COW_PAGES):
        memory.handle_mm_fault(k, gchild.mm, heap + i * PG, True)
    gchild_tree_nodes = _model_nodes(M.mm_tree(k, gchild.mm))
    d = tmp_path_factory.mktemp("vmaops")
    save(k, d / "before")
    E.do_exit(k, gchild)
    save(k, d / "after")
    before = open_drgn(str(d / "before.vmcore"), str(d / "before.vmlinux"))
    after = open_drgn(str(d / "after.vmcore"), str(d / "after.vmlinux"))
    return {
        "k": k,
        "par": par,
        "child": child,
        "gchild": gchild,
        "a": a,
        "heap": heap,
        "rc": rc,
        "before": before,
        "after": after,
        "gchild_nodes": gchild_tree_nodes,
    }


def _model_nodes(t) -> int:
    n = 0
    stack = [t.root] if t.root is not None else []
    while stack:
        node = stack.pop()
        n += 1
        if node.type in (2, 3):  # maple_range_64 / maple_arange_64 (internal)
            stack.extend(node.slot)
    return n


def _vmas(prog, pid):
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task

    return [
        (v.vm_start.value_(), v.vm_end.value_(), v.vm_flags.value_() & 0xF, v.vm_pgoff.value_(), v)
        for v in for_each_vma(find_task(prog, pid).mm)
    ]


def _region(prog, pid, a):
    return [(s - a, e - a, f, pg) for s, e, f, pg, _v in _vmas(prog, pid) if a <= s < a + LEN]


def _pte(prog, mm, addr) -> int:
    """The PTE mapping ``addr``, read through drgn (4-level walk, physical reads); 0 if absent."""
    table = mm.pgd.value_()
    entry = prog.read_u64(table + 8 * ((addr >> 39) & 511))
    for shift in (30, 21, 12):
        if not entry & 1:
            return 0
        entry = prog.read_u64((entry & 0x000FFFFFFFFFF000) + 8 * ((addr >> shift) & 511), True)
    return entry


def test_calls_succeed(world) -> None:
    assert world["rc"] == [0, 0, 0, 0]


def test_munmap_mprotect_split_and_merge_exact_vmas(world) -> None:
    d, a = world["before"], world["a"]
    pg0 = a >> 12
    # the parent: mprotect R|W over pages 2-3 merged prev [0,2) and next [4,16) into one VMA
    assert _region(d, world["par"].pid, a) == [(0, HOLE[0], R | W, pg0), (HOLE[1], LEN, R | W, pg0 + 0x18)]
    # the child was forked between the two mprotects: the split state, pgoffs kept
    assert _region(d, world["child"].pid, a) == [
        (0, 2 * PG, R | W, pg0),
        (2 * PG, 4 * PG, R, pg0 + 2),
        (4 * PG, HOLE[0], R | W, pg0 + 4),
        (HOLE[1], LEN, R | W, pg0 + 0x18),
    ]


def test_drgn_walks_every_mm_and_accounts_match(world) -> None:
    from drgn.helpers.linux.pid import find_task

    k = world["k"]
    for prog, procs in ((world["before"], ("par", "child", "gchild")), (world["after"], ("par", "child"))):
        for name in procs:
            proc = world[name]
            mine = (
                [(f, l_ + 1, e) for f, l_, e in M.mm_tree(k, proc.mm).mt_for_each()] if prog is world["after"] else None
            )
            vmas = _vmas(prog, proc.pid)
            mm = find_task(prog, proc.pid).mm
            if mine is not None:
                assert [(s, e, v.value_()) for s, e, _f, _p, v in vmas] == mine
            assert mm.map_count.value_() == len(vmas)
            pages = {"total_vm": 0, "data_vm": 0, "exec_vm": 0, "stack_vm": 0}
            for s, e, _f, _p, v in vmas:
                fl = v.vm_flags.value_()
                n = (e - s) >> 12
                pages["total_vm"] += n
                if fl & (M.VM_EXEC | W | M.VM_GROWSDOWN) == M.VM_EXEC:
                    pages["exec_vm"] += n
                elif fl & M.VM_GROWSDOWN:
                    pages["stack_vm"] += n
                elif fl & (W | M.VM_SHARED) == W:
                    pages["data_vm"] += n
                assert v.vm_page_prot.pgprot.value_() == M.protection_map[fl & 0xF]
            assert {f: getattr(mm, f).value_() for f in pages} == pages


def test_maple_trees_validate_in_the_reader(world, tmp_path) -> None:
    from mmintro.reader import open_snapshot
    from mmintro.reader.helpers.maple_tree import mt_validate

    k = world["k"]
    save(k, tmp_path / "again")
    p = open_snapshot(str(tmp_path / "again"))
    for name in ("par", "child"):
        proc = world[name]
        n = mt_validate(p.object("struct mm_struct", proc.mm).mm_mt.address_of_())
        assert n == k.kmem.get(proc.mm, "mm_struct", "map_count")


def test_ptes_after_mprotect_and_fork(world) -> None:
    """Pages 0-1 were made read-only then writable again while exclusive: mprotect's
    can_change_pte_writable put RW back.  After fork every private PTE is write-protected on
    both sides, and the parent's later mprotect(R|W) over pages 2-3 cannot make them writable
    (the pages are no longer PageAnonExclusive)."""
    d, a = world["before"], world["a"]
    from drgn.helpers.linux.pid import find_task

    par, child = find_task(d, world["par"].pid).mm, find_task(d, world["child"].pid).mm
    for i in list(range(HOLE[0] // PG)) + list(range(HOLE[1] // PG, LEN // PG)):
        pp, pc = _pte(d, par, a + i * PG), _pte(d, child, a + i * PG)
        assert pp & 1 and pc & 1, i
        assert pp >> 12 == pc >> 12, i  # the same page
        assert not pp & 2 and not pc & 2, i  # both write-protected
        assert pp & (1 << 63) and pc & (1 << 63), i  # NX kept by pte_modify
    for i in range(HOLE[0] // PG, HOLE[1] // PG):
        assert _pte(d, par, a + i * PG) == 0 and _pte(d, child, a + i * PG) == 0


def test_mprotect_restores_write_on_exclusive_pages(tmp_path) -> None:
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=12))
    p = fork.spawn_process(k, "mp")
    a = M.do_mmap(k, p.mm, 8 * PG, R | W)
    memory.mm_populate(k, p.mm, a, 8 * PG, True)
    assert P.do_mprotect(k, p.mm, a, 8 * PG, R) == 0
    assert P.do_mprotect(k, p.mm, a + 2 * PG, 2 * PG, R | W) == 0
    assert P.do_mprotect(k, p.mm, a - PG, 2 * PG, R) == -12  # starts in the hole below: -ENOMEM
    assert P.do_mprotect(k, p.mm, a + 1, PG, R) == -22
    save(k, tmp_path / "mp")
    d = open_drgn(str(tmp_path / "mp.vmcore"), str(tmp_path / "mp.vmlinux"))
    mm = find_task(d, p.pid).mm
    assert [_pte(d, mm, a + i * PG) & 2 for i in range(8)] == [0, 0, 2, 2, 0, 0, 0, 0]
    assert [(s - a, e - a, f) for s, e, f, _p, _v in _vmas(d, p.pid) if a <= s < a + 8 * PG] == [
        (0, 2 * PG, R),
        (2 * PG, 4 * PG, R | W),
        (4 * PG, 8 * PG, R),
    ]


def test_fork_shares_pfns_drgn_follow_phys(world) -> None:
    from drgn.helpers.linux.mm import follow_phys, task_rss
    from drgn.helpers.linux.pid import find_task

    d, a, heap = world["before"], world["a"], world["heap"]
    tp, tc = find_task(d, world["par"].pid), find_task(d, world["child"].pid)
    addrs = [a + i * PG for i in range(LEN // PG) if not HOLE[0] <= i * PG < HOLE[1]]
    addrs += [heap + i * PG for i in range(HEAP_PAGES)]
    for x in addrs:
        assert follow_phys(tp.mm, x).value_() == follow_phys(tc.mm, x).value_()
    # the child's rss is what copy_page_range copied: every anonymous page of the parent
    assert task_rss(d, tc).anon == len(addrs) == task_rss(d, tp).anon
    assert tc.real_parent.value_() == tp.value_()
    assert tc.comm.string_() == tp.comm.string_()
    # hiwater marks as dup_mm sets them: get_mm_rss(mm) of the new mm, which reads each
    # counter's fbc->count (per-CPU deltas below the batch are not in it); the child has not
    # faulted since, so its counts are still those
    assert tc.mm.hiwater_rss.value_() == sum(
        tc.mm.rss_stat[i].count.value_() for i in range(4) if i != d.constant("MM_SWAPENTS").value_()
    )
    assert tc.mm.hiwater_vm.value_() == tc.mm.total_vm.value_()


def test_cow_in_grandchild(world) -> None:
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    d, heap = world["before"], world["heap"]
    tc, tg = find_task(d, world["child"].pid), find_task(d, world["gchild"].pid)
    for i in range(HEAP_PAGES):
        same = follow_phys(tc.mm, heap + i * PG).value_() == follow_phys(tg.mm, heap + i * PG).value_()
        assert same == (i >= COW_PAGES), i
        assert bool(_pte(d, tg.mm, heap + i * PG) & 2) == (i < COW_PAGES), i


_USAGE_CACHE: dict = {}


def _usage(prog, name):
    """Objects in use in the cache ``name``, as drgn's slab_cache_for_each_allocated_object
    finds them.  (slab_cache_usage is approximate here: for a CPU's active, frozen slab it
    counts only the lockless c->freelist as free, not objects another CPU freed onto the
    slab's own freelist -- which a task exiting on CPU 1 does.)  One for_each_page pass per
    program counts every cache at once through the same per-cache helper (drgn internals;
    the public walk as the fallback)."""
    from drgn.helpers.linux.slab import find_slab_cache, slab_cache_for_each_allocated_object

    key = id(prog)
    if key not in _USAGE_CACHE:
        try:
            from drgn.helpers.linux.mm import for_each_page
            from drgn.helpers.linux.slab import _get_PageSlab_impl, _get_slab_cache_helper, _get_slab_type

            page_slab, slab_type = _get_PageSlab_impl(prog), _get_slab_type(prog)
            ptr = prog.pointer_type(prog.type("void"))
            helpers: dict = {}
            counts: dict[str, int] = {}
            for page in for_each_page(prog):
                if not page_slab(page):
                    continue
                slab = drgn.cast(slab_type, page)
                cache = slab.slab_cache
                h = helpers.get(cache.value_())
                if h is None:
                    h = helpers[cache.value_()] = _get_slab_cache_helper(cache)
                    h.for_each_allocated_object("void")  # computes the CPU/sheaf free sets
                cname = cache.name.string_().decode()
                counts[cname] = counts.get(cname, 0) + sum(1 for _ in h._page_objects(page, slab, ptr))
            _USAGE_CACHE[key] = (prog, counts)
        except (ImportError, AttributeError):
            _USAGE_CACHE[key] = (prog, None)
    counts = _USAGE_CACHE[key][1]
    if counts is None:
        return sum(1 for _ in slab_cache_for_each_allocated_object(find_slab_cache(prog, name), "void"))
    return counts.get(name, 0)


@pytest.mark.slow  # ~3 s
def test_exit_frees_everything_back(world) -> None:
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_pid, find_task, for_each_task

    b, a_ = world["before"], world["after"]
    g = world["gchild"]
    tg = find_task(b, g.pid)
    nvma = len(list(for_each_vma(tg.mm)))
    n_avc = 0
    for v in for_each_vma(tg.mm):
        head = v.anon_vma_chain.address_of_()
        p = head.next
        while p.value_() != head.value_():
            n_avc += 1
            p = p.next
    # page tables of the grandchild: its pgd and every table below the user half
    tables = 1
    pgd = tg.mm.pgd.value_()
    for i in range(256):
        e = b.read_u64(pgd + 8 * i)
        if not e & 1:
            continue
        tables += 1
        for j in range(512):
            e2 = b.read_u64((e & 0xFFFFFFFFFF000) + 8 * j, True)
            if not e2 & 1 or e2 & 0x80:
                continue
            tables += 1
            for m in range(512):
                e3 = b.read_u64((e2 & 0xFFFFFFFFFF000) + 8 * m, True)
                if e3 & 1 and not e3 & 0x80:
                    tables += 1
    assert not find_task(a_, g.pid) and not find_pid(a_, g.pid)
    assert g.pid not in [t.pid.value_() for t in for_each_task(a_)]
    # slab merging (find_mergeable, __kmem_cache_alias): a cache created with the size and
    # SLAB_MERGE_SAME flags of an existing one is that cache -- as on the real 6.18 guest,
    # whose /proc/slabinfo has no fs_cache or cred line.  The grandchild's own fs_struct
    # (exit_fs) and cred (exit_creds) are freed into whichever cache they alias (here
    # anon_vma_chain and pid): count them there, not as anon_vma_chains or pids.
    from drgn.helpers.linux.slab import slab_object_info

    assert tg.fs.users.value_() == 1 and tg.cred == tg.real_cred and tg.real_cred.usage.counter.value_() == 2
    alias: dict[str, int] = {}
    for obj, own in ((tg.fs, "fs_cache"), (tg.real_cred, "cred")):
        name = slab_object_info(b, obj).slab_cache.name.string_().decode()
        alias[name] = alias.get(name, 0) + (name != own)
    ub, ua = ({c: _usage(p, c) for c in CACHES} for p in (b, a_))
    drop = {c: ub[c] - ua[c] - alias.get(c, 0) for c in CACHES}
    assert drop["vm_area_struct"] == nvma
    assert drop["anon_vma_chain"] == n_avc
    assert drop["mm_struct"] == drop["task_struct"] == drop["signal_cache"] == drop["pid"] == 1
    assert drop["maple_node"] == world["gchild_nodes"]

    def node_stat(p, item):
        return p["vm_node_stat"][p.constant(item).value_()].counter.value_()

    assert node_stat(b, "NR_PAGETABLE") - node_stat(a_, "NR_PAGETABLE") == tables
    assert node_stat(b, "NR_KERNEL_STACK_KB") - node_stat(a_, "NR_KERNEL_STACK_KB") == 16
    assert node_stat(b, "NR_ANON_MAPPED") - node_stat(a_, "NR_ANON_MAPPED") == COW_PAGES
    ns = "init_pid_ns"
    assert b[ns].pid_allocated.value_() - a_[ns].pid_allocated.value_() == 1
    assert b["nr_threads"].value_() - a_["nr_threads"].value_() == 1
    assert b["total_forks"].value_() == a_["total_forks"].value_() >= 3


def test_committed_as_is_the_accounted_vmas(world) -> None:
    """vm_committed_as = the VM_ACCOUNT pages of every mm (mmap/brk/stack/fork charge them,
    munmap/mprotect/exit give them back)."""
    from drgn.helpers.linux.mm import for_each_vma, vm_memory_committed
    from drgn.helpers.linux.pid import for_each_task

    for prog in (world["before"], world["after"]):
        want = 0
        for t in for_each_task(prog):
            if not t.mm:
                continue
            for v in for_each_vma(t.mm):
                if v.vm_flags.value_() & M.VM_ACCOUNT:
                    want += (v.vm_end.value_() - v.vm_start.value_()) >> 12
        assert vm_memory_committed(prog) == want


def _i_mmap_vmas(prog, mapping):
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry

    return sorted(
        v.value_()
        for v in rbtree_inorder_for_each_entry(
            "struct vm_area_struct", mapping.i_mmap.rb_root.address_of_(), "shared.rb"
        )
    )


@pytest.mark.slow  # ~4 s
def test_file_vmas_i_mmap_and_exit_of_an_execd_process(tmp_path) -> None:
    """Exec maps /usr/bin/<comm>, ld.so and libc privately: every file VMA of every process
    is on its file's i_mmap tree (fork adds the child's, munmap of part of libc's text splits
    it: one more), and the exit of an exec'd process frees its three struct files (the
    program's exe_file and the two libraries' VMA references) and every VMA leaves i_mmap."""
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import for_each_task

    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=13))
    a = fork.spawn_process(k, "svc")
    b = fork.spawn_process(k, "short")
    fork.do_fork(k, a)
    libc = [
        (f, l_)
        for f, l_, v in M.mm_tree(k, a.mm).mt_for_each()
        if k.kmem.get(v, "vm_area_struct", "vm_flags") & M.VM_EXEC and k.kmem.get(v, "vm_area_struct", "vm_file")
    ]
    text = libc[1]  # the program's text, then libc's, then ld.so's
    assert M.do_munmap(k, a.mm, text[0] + 0x10 * PG, 0x10 * PG) == 0
    save(k, tmp_path / "b")
    E.do_exit(k, b)
    save(k, tmp_path / "a")
    for name in ("b", "a"):
        d = open_drgn(str(tmp_path / f"{name}.vmcore"), str(tmp_path / f"{name}.vmlinux"))
        by_mapping: dict[int, list[int]] = {}
        for t in for_each_task(d):
            if t.mm:
                for v in for_each_vma(t.mm):
                    if v.vm_file:
                        by_mapping.setdefault(v.vm_file.f_mapping.value_(), []).append(v.value_())
        assert len(by_mapping) == (4 if name == "b" else 3)  # svc, short, ld.so, libc
        for m, vmas in by_mapping.items():
            assert _i_mmap_vmas(d, drgn.Object(d, "struct address_space", address=m)) == sorted(vmas)
        if name == "b":
            before = _usage(d, "filp")
            short_files = {
                v.vm_file.value_()
                for t in for_each_task(d)
                if t.pid.value_() == b.pid
                for v in for_each_vma(t.mm)
                if v.vm_file
            }
    assert len(short_files) == 3
    assert before - _usage(d, "filp") == 3


def test_mprotect_of_half_a_thp_splits_the_pmd(tmp_path) -> None:
    """vma_modify splits the VMA at a 1 MiB boundary inside a PMD-mapped THP:
    vma_adjust_trans_huge splits the PMD first, then change_protection write-protects the
    first half's PTEs only; the pages stay the THP's 512 subpages, in order."""
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=14, thp="always"))
    p = fork.spawn_process(k, "thp")
    a = M.do_mmap(k, p.mm, 8 << 20, R | W)
    base = -(-a // (2 << 20)) * (2 << 20)
    t = memory.handle_mm_fault(k, p.mm, base, True).pfn
    assert memory.walk(k, p.mm, base)[0] == "PMD"
    assert P.do_mprotect(k, p.mm, base, 1 << 20, R) == 0
    save(k, tmp_path / "thp")
    d = open_drgn(str(tmp_path / "thp.vmcore"), str(tmp_path / "thp.vmlinux"))
    mm = find_task(d, p.pid).mm
    ptes = [_pte(d, mm, base + i * PG) for i in range(512)]
    assert all(e & 1 and not e & 0x80 for e in ptes)  # 4 KiB entries now
    assert [bool(e & 2) for e in ptes] == [False] * 256 + [True] * 256
    assert [follow_phys(mm, base + i * PG).value_() >> 12 for i in range(0, 512, 37)] == [
        t + i for i in range(0, 512, 37)
    ]
    want = [(a, base, R | W), (base, base + (1 << 20), R), (base + (1 << 20), a + (8 << 20), R | W)]
    assert [(s, e, f) for s, e, f, _p, _v in _vmas(d, p.pid) if a <= s < a + (8 << 20)] == [
        w for w in want if w[0] < w[1]
    ]


def test_hugetlb_vma_splits_only_at_huge_page_boundaries() -> None:
    from mmintro.kernel import hugetlb

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=15, hugepages_2m=4))
    p = fork.spawn_process(k, "h")
    a = hugetlb.hugetlb_mmap(k, p.mm, 8 << 20, 2 << 20, R | W)
    n = k.kmem.get(p.mm, "mm_struct", "map_count")
    assert M.do_munmap(k, p.mm, a + PG, PG) == -22  # hugetlb_vm_op_split: -EINVAL
    assert P.do_mprotect(k, p.mm, a, 1 << 20, R) == -22
    assert k.kmem.get(p.mm, "mm_struct", "map_count") == n
    h = hugetlb._state(k)[1]
    assert (h.free_huge_pages, h.resv_huge_pages) == (4, 4)
    assert M.do_munmap(k, p.mm, a + (2 << 20), 2 << 20) == 0  # split (vm_ops->open), unmap (->close)
    assert k.kmem.get(p.mm, "mm_struct", "map_count") == n + 1
    assert (h.free_huge_pages, h.resv_huge_pages) == (4, 3)


def test_new_ranges_merge_unless_the_neighbour_is_a_fork_child() -> None:
    """6.18's is_mergeable_anon_vma(): a new anonymous range next to a VMA with an anon_vma
    merges only when that VMA is not a fork child (its anon_vma_chain is singular).  So
    filling a munmap hole with MAP_FIXED rejoins the parent's three pieces but not the
    child's, and brk growth extends the parent's faulted heap but gives the child a new VMA
    (do_brk_flags: "singular lists do not occur after forking")."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=16))
    p = fork.spawn_process(k, "m")
    a = M.do_mmap(k, p.mm, 16 * PG, R | W)
    memory.mm_populate(k, p.mm, a, 16 * PG, True)
    heap_end = k.kmem.get(p.mm, "mm_struct", "brk")
    memory.mm_populate(k, p.mm, k.kmem.get(p.mm, "mm_struct", "start_brk"), PG, True)
    assert M.do_munmap(k, p.mm, a + 4 * PG, 4 * PG) == 0
    c = fork.do_fork(k, p)

    def region(proc):
        return [
            (s - a, e - a)
            for s, e, _v in ((f, l_ + 1, v) for f, l_, v in M.mm_tree(k, proc.mm).mt_for_each())
            if a <= s < a + 16 * PG
        ]

    assert region(p) == region(c) == [(0, 4 * PG), (8 * PG, 16 * PG)]
    n_p, n_c = (k.kmem.get(x.mm, "mm_struct", "map_count") for x in (p, c))
    for proc in (p, c):
        assert M.do_mmap(k, proc.mm, 4 * PG, R | W, a + 4 * PG) == a + 4 * PG
    assert region(p) == [(0, 16 * PG)]
    assert region(c) == [(0, 4 * PG), (4 * PG, 8 * PG), (8 * PG, 16 * PG)]
    assert k.kmem.get(p.mm, "mm_struct", "map_count") == n_p - 1
    assert k.kmem.get(c.mm, "mm_struct", "map_count") == n_c + 1
    for proc in (p, c):
        M.do_brk_flags(k, proc.mm, heap_end + 4 * PG)
    heaps = [
        [
            (f, l_ + 1)
            for f, l_, _v in M.mm_tree(k, x.mm).mt_for_each()
            if k.kmem.get(x.mm, "mm_struct", "start_brk") <= f < heap_end + 4 * PG
        ]
        for x in (p, c)
    ]
    start = -(-heap_end // PG) * PG
    assert heaps[0] == [(k.kmem.get(p.mm, "mm_struct", "start_brk"), start + 4 * PG)]
    assert heaps[1] == [(k.kmem.get(c.mm, "mm_struct", "start_brk"), start), (start, start + 4 * PG)]
    # brk shrinking unmaps: back to the old break in both
    for proc in (p, c):
        M.do_brk_flags(k, proc.mm, heap_end)
        assert k.kmem.get(proc.mm, "mm_struct", "brk") == heap_end
    assert [
        (f, l_ + 1)
        for f, l_, _v in M.mm_tree(k, c.mm).mt_for_each()
        if k.kmem.get(c.mm, "mm_struct", "start_brk") <= f < heap_end + 4 * PG
    ] == [(k.kmem.get(c.mm, "mm_struct", "start_brk"), start)]


def test_exit_reparents_children_to_init(tmp_path) -> None:
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=17))
    init = fork.spawn_process(k, "init")
    a = fork.do_fork(k, init)
    b = fork.do_fork(k, a)
    c = fork.do_fork(k, a)
    E.do_exit(k, a)
    save(k, tmp_path / "r")
    d = open_drgn(str(tmp_path / "r.vmcore"), str(tmp_path / "r.vmlinux"))
    t = find_task(d, init.pid)
    assert d["init_pid_ns"].child_reaper.value_() == t.value_()
    kids = [x.pid.value_() for x in list_for_each_entry("struct task_struct", t.children.address_of_(), "sibling")]
    assert kids == [b.pid, c.pid]  # a is gone; its children moved in order to the reaper
    assert all(find_task(d, x.pid).real_parent.value_() == t.value_() for x in (b, c))
    assert not find_task(d, a.pid)


def test_prot_none_round_trip(tmp_path) -> None:
    """mprotect(PROT_NONE) turns the PTEs into PROT_NONE entries (_PAGE_PRESENT clear,
    _PAGE_PROTNONE = _PAGE_GLOBAL set: what pte_modify with PAGE_NONE gives); drgn's
    follow_phys then faults; mprotect(R|W) makes them present and, the pages being exclusive
    anonymous ones, writable again, with the same pfns."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=18))
    p = fork.spawn_process(k, "pn")
    a = M.do_mmap(k, p.mm, 4 * PG, R | W)
    memory.mm_populate(k, p.mm, a, 4 * PG, True)
    pfns = [memory.walk(k, p.mm, a + i * PG)[2] >> 12 & ((1 << 40) - 1) for i in range(4)]
    assert P.do_mprotect(k, p.mm, a, 4 * PG, 0) == 0
    save(k, tmp_path / "n")
    d = open_drgn(str(tmp_path / "n.vmcore"), str(tmp_path / "n.vmlinux"))
    mm = find_task(d, p.pid).mm
    for i in range(4):
        e = _pte(d, mm, a + i * PG)
        assert e & 0x1FF == (1 << 8) | (1 << 5) | (e & (1 << 6))  # PROTNONE|ACCESSED (+DIRTY kept)
        with pytest.raises(FaultError):
            follow_phys(mm, a + i * PG)
    assert P.do_mprotect(k, p.mm, a, 4 * PG, R | W) == 0
    save(k, tmp_path / "y")
    d = open_drgn(str(tmp_path / "y.vmcore"), str(tmp_path / "y.vmlinux"))
    mm = find_task(d, p.pid).mm
    assert [follow_phys(mm, a + i * PG).value_() >> 12 for i in range(4)] == pfns
    assert all(_pte(d, mm, a + i * PG) & 3 == 3 for i in range(4))


def test_shared_writable_file_mapping_counts_follow_fork_split_and_exit() -> None:
    """address_space.i_mmap_writable counts the shared writable VMAs of the file
    (mapping_map_writable at mmap, __vma_link_file on a split, dup_mmap at fork,
    __remove_shared_vm_struct at munmap/exit); i_mmap holds exactly those VMAs."""
    from mmintro.kernel import filemap, inode, rmap

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=19))
    p = fork.spawn_process(k, "db")
    f = inode.create_file(k, "/data/table", 64 * PG)
    mapping = k.kmem.get(f, "file", "f_mapping")
    a = filemap.mmap_file(k, p.mm, f, 64 * PG, R | W, True)

    def writable() -> int:
        return k.kmem.get(mapping, "address_space", "i_mmap_writable.counter")

    assert writable() == 1
    c = fork.do_fork(k, p)
    assert writable() == 2
    assert P.do_mprotect(k, p.mm, a + 8 * PG, 8 * PG, R) == 0  # a split into three: +2
    assert writable() == 4
    assert len(rmap.vma_interval_tree_vmas(k, mapping)) == 4
    E.do_exit(k, c)
    assert writable() == 3
    assert M.do_munmap(k, p.mm, a, 64 * PG) == 0
    assert writable() == 0
    assert rmap.vma_interval_tree_vmas(k, mapping) == []


def test_fork_then_exec_replaces_the_child_mm(tmp_path) -> None:
    """fork + execve: the child's copied address space (sharing the parent's pages) is torn
    down by exec_mmap's mmput (exit_mmap, __mmdrop) and replaced by the new program's; pid,
    task and parent stay; the parent's pages are exclusive to it again (mapcount 1)."""
    from drgn.helpers.linux.mm import for_each_vma, vma_name
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.slab import find_slab_cache, slab_cache_usage

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import rmap

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=20))
    sh = fork.spawn_process(k, "bash")
    a = M.do_mmap(k, sh.mm, 8 * PG, R | W)
    memory.mm_populate(k, sh.mm, a, 8 * PG, True)
    child = fork.do_fork(k, sh)
    pfn = memory.walk(k, sh.mm, a)[2] >> 12 & ((1 << 40) - 1)
    assert rmap.folio_mapcount(k, pfn) == 2
    old_mm = child.mm
    fork.do_execve(k, child, "ls")
    assert child.mm != old_mm and rmap.folio_mapcount(k, pfn) == 1
    save(k, tmp_path / "x")
    d = open_drgn(str(tmp_path / "x.vmcore"), str(tmp_path / "x.vmlinux"))
    t = find_task(d, child.pid)
    assert t.comm.string_() == b"ls" and t.real_parent.pid.value_() == sh.pid
    assert t.mm.value_() == child.mm and t.active_mm.value_() == child.mm
    names = [vma_name(v).decode() for v in for_each_vma(t.mm)]
    assert names[:4] == ["/usr/bin/ls"] * 4 and names[-1] == "[stack]"
    used = slab_cache_usage(find_slab_cache(d, "mm_struct"))
    assert used.num_objs - used.free_objs == 2  # bash's and ls's: the copied mm is freed


def test_hiwater_marks_as_munmap_leaves_them(world) -> None:
    """vms_complete_munmap_vmas: update_hiwater_vm before total_vm drops (VmPeak keeps the
    8 unmapped pages); vms_clear_ptes: update_hiwater_rss before the zap, from get_mm_rss()
    (percpu_counter_read_positive: the folded count only, so it may trail the exact rss by
    what the CPUs still hold -- /proc's VmHWM is max(hiwater_rss, rss))."""
    from drgn.helpers.linux.mm import task_rss
    from drgn.helpers.linux.pid import find_task

    d = world["before"]
    t = find_task(d, world["par"].pid)
    hole = (HOLE[1] - HOLE[0]) // PG
    assert t.mm.hiwater_vm.value_() == t.mm.total_vm.value_() + hole
    rss_now = task_rss(d, t).total
    assert 0 < t.mm.hiwater_rss.value_() <= rss_now + hole


@pytest.mark.slow  # ~4 s
def test_everything_returns_after_the_last_exit(tmp_path) -> None:
    """A process with a THP, 4K anonymous pages, a hugetlb page and a mapped file forks a
    child that CoWs part of the THP; both exit.  Against the freshly booted machine (drgn on
    both snapshots): page tables, anonymous and THP counts, mapped file pages, kernel stacks,
    the commitment, the hugetlb pool and the per-process slab objects are back exactly."""
    from drgn.helpers.linux.mm import vm_memory_committed
    from drgn.helpers.linux.pid import for_each_task

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import filemap, huge_memory, hugetlb, inode

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=21, hugepages_2m=4))
    save(k, tmp_path / "boot")
    p = fork.spawn_process(k, "big")
    a = M.do_mmap(k, p.mm, 8 << 20, R | W)
    huge_memory.madvise_hugepage(k, p.mm, a, 8 << 20)
    base = -(-a // (2 << 20)) * (2 << 20)
    memory.handle_mm_fault(k, p.mm, base, True)
    memory.mm_populate(k, p.mm, a, 0x10000, True)
    h = hugetlb.hugetlb_mmap(k, p.mm, 4 << 20, 2 << 20, R | W)
    memory.handle_mm_fault(k, p.mm, h, True)
    f = inode.create_file(k, "/data/f", 1 << 20)
    fa = filemap.mmap_file(k, p.mm, f, 1 << 20, R, False)
    memory.mm_populate(k, p.mm, fa, 1 << 20, False)
    c = fork.do_fork(k, p)
    memory.handle_mm_fault(k, c.mm, base + PG, True)
    assert P.do_mprotect(k, c.mm, base, 1 << 20, R) == 0
    E.do_exit(k, c)
    E.do_exit(k, p)
    save(k, tmp_path / "end")
    b, e = (open_drgn(str(tmp_path / f"{n}.vmcore"), str(tmp_path / f"{n}.vmlinux")) for n in ("boot", "end"))
    assert [t.pid.value_() for t in for_each_task(e)] == []

    def stat(prog, item):
        return prog["vm_node_stat"][prog.constant(item).value_()].counter.value_()

    for item in ("NR_PAGETABLE", "NR_ANON_MAPPED", "NR_ANON_THPS", "NR_FILE_MAPPED", "NR_KERNEL_STACK_KB"):
        assert stat(e, item) == stat(b, item), item
    assert vm_memory_committed(e) == vm_memory_committed(b) == 0
    hs = e["hstates"][e["default_hstate_idx"]]
    assert hs.free_huge_pages.value_() == hs.nr_huge_pages.value_() == 4
    assert hs.resv_huge_pages.value_() == 0  # the unused reservation went back at vma_close
    for cache in (
        "vm_area_struct",
        "mm_struct",
        "task_struct",
        "signal_cache",
        "pid",
        "anon_vma",
        "anon_vma_chain",
        "maple_node",
    ):
        assert _usage(e, cache) == _usage(b, cache), cache


def test_madvise_dontneed_zaps_and_raises_hiwater(tmp_path) -> None:
    """MADV_DONTNEED: update_hiwater_rss first (VmHWM keeps the pages), then the range's PTEs
    are cleared (drgn's follow_phys faults there), rss drops by the pages zapped and the VMA
    stays."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_phys, task_rss
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=22))
    p = fork.spawn_process(k, "dn")
    a = M.do_mmap(k, p.mm, 256 * PG, R | W)
    memory.mm_populate(k, p.mm, a, 256 * PG, True)
    n = k.kmem.get(p.mm, "mm_struct", "map_count")
    assert M.madvise_dontneed(k, p.mm, a + 64 * PG, 128 * PG) == 0
    assert M.madvise_dontneed(k, p.mm, a + 1, PG) == -22
    save(k, tmp_path / "d")
    d = open_drgn(str(tmp_path / "d.vmcore"), str(tmp_path / "d.vmlinux"))
    t = find_task(d, p.pid)
    assert task_rss(d, t).anon == 128
    assert t.mm.hiwater_rss.value_() >= 224  # at least what the counter had folded of the 256
    assert t.mm.map_count.value_() == n
    for i in (63, 64, 191, 192):
        if 64 <= i < 192:
            with pytest.raises(FaultError):
                follow_phys(t.mm, a + i * PG)
        else:
            follow_phys(t.mm, a + i * PG)


def test_drgn_vma_find_after_the_operations(world) -> None:
    """drgn's vma_find (a maple-tree walk by address) over every page of the operated region
    and the hole, in parent and child: the VMA whose range holds the address, NULL in the
    munmap hole."""
    from drgn.helpers.linux.mm import vma_find
    from drgn.helpers.linux.pid import find_task

    d, a = world["before"], world["a"]
    for name in ("par", "child"):
        mm = find_task(d, world[name].pid).mm
        vmas = _vmas(d, world[name].pid)
        for i in range(-1, LEN // PG + 1):
            x = a + i * PG
            want = next((v.value_() for s, e, _f, _p, v in vmas if s <= x < e), 0)
            assert vma_find(mm, x).value_() == want, (name, i)
        assert not vma_find(mm, a + HOLE[0]).value_()


def test_mprotect_over_several_vmas_merges_them_back() -> None:
    """One mprotect(R) over [RW][R][RW] pieces of one faulted mapping (same anon_vma): the
    first piece merges right into the R one, the last merges left: one VMA, VM_ACCOUNT kept
    (a faulted anonymous VMA keeps its charge when it loses write), the commitment and
    data_vm follow; a range with a hole fails with -ENOMEM after changing what precedes it."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=23))
    p = fork.spawn_process(k, "m")
    a = M.do_mmap(k, p.mm, 16 * PG, R | W)
    memory.mm_populate(k, p.mm, a, 16 * PG, True)
    assert P.do_mprotect(k, p.mm, a + 2 * PG, 2 * PG, R) == 0
    data = k.kmem.get(p.mm, "mm_struct", "data_vm")

    def region():
        return [
            (f - a, l_ + 1 - a, k.kmem.get(v, "vm_area_struct", "vm_flags"))
            for f, l_, v in M.mm_tree(k, p.mm).mt_for_each()
            if a <= f < a + 16 * PG
        ]

    flags_rw = region()[0][2]
    assert region() == [(0, 2 * PG, flags_rw), (2 * PG, 4 * PG, flags_rw & ~W), (4 * PG, 16 * PG, flags_rw)]
    n = k.kmem.get(p.mm, "mm_struct", "map_count")
    assert P.do_mprotect(k, p.mm, a, 16 * PG, R) == 0
    assert region() == [(0, 16 * PG, flags_rw & ~W)] and flags_rw & M.VM_ACCOUNT
    assert k.kmem.get(p.mm, "mm_struct", "map_count") == n - 2
    assert k.kmem.get(p.mm, "mm_struct", "data_vm") == data - 14
    assert M.do_munmap(k, p.mm, a + 8 * PG, PG) == 0
    assert P.do_mprotect(k, p.mm, a, 16 * PG, R | W) == -12
    assert region()[0] == (0, 8 * PG, flags_rw)  # done up to the hole


@pytest.mark.parametrize("seed", [pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_random_vma_operations_keep_the_books_and_leave_nothing_behind(seed, tmp_path) -> None:
    """300 random steps over up to six processes on a THP-always machine: anonymous mmaps
    (small, and 4-6 MiB ones that get THPs), private and shared file mmaps at random offsets,
    populate / faults, munmap, mprotect (PROT_NONE only on small ranges: see the xfail
    below), MADV_DONTNEED, brk up and down, fork, exec, exit.  Every step: each tree validates,
    map_count and total_vm match the VMAs, every VMA is attached over exactly its range; every
    40 steps MEM's check_mapcounts/check_mm (mapcounts and rss against the page tables) are
    clean.  After the last exit drgn sees the booted machine's page-table, anon, THP,
    file-mapped, stack and per-process slab counts, and a zero commitment."""
    import random

    from drgn.helpers.linux.mm import vm_memory_committed

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import filemap, hugetlb, inode

    rng = random.Random(seed)
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=seed, thp="always", hugepages_2m=16))
    save(k, tmp_path / "boot")
    procs = [fork.spawn_process(k, "f0")]
    files = [inode.create_file(k, f"/data/f{i}", 4 << 20) for i in range(2)]
    regions: dict[int, list[tuple[int, int]]] = {}
    for step in range(300):
        p = rng.choice(procs)
        op = rng.random()
        mine = regions.get(p.pid)
        if mine:
            a, n = rng.choice(mine)
            s = rng.randint(0, n - 1)
            ln = rng.randint(1, n - s)
        if op < 0.12:
            n = rng.choice([rng.randint(1, 64), 1024, 1536])
            regions.setdefault(p.pid, []).append((M.do_mmap(k, p.mm, n * PG, rng.choice([R, R | W])), n))
        elif op < 0.16:
            hn = rng.randint(1, 3)  # private MAP_HUGETLB (shared ones: see the xfail below)
            h = hugetlb.hugetlb_mmap(k, p.mm, hn << 21, 2 << 20, rng.choice([R, R | W]))
            if h:
                regions.setdefault(p.pid, []).append((h, hn * 512))
        elif op < 0.2:
            n = rng.randint(1, 256)
            addr = filemap.mmap_file(
                k,
                p.mm,
                rng.choice(files),
                n * PG,
                rng.choice([R, R | W]),
                rng.random() < 0.4,
                offset=rng.randint(0, 700) * PG,
            )
            regions.setdefault(p.pid, []).append((addr, n))
        elif op < 0.35 and mine:
            try:
                memory.mm_populate(k, p.mm, a + s * PG, ln * PG, rng.random() < 0.7)
            except (memory.SegmentationFault, memory.BusError):
                pass  # unmapped or PROT_NONE there now
        elif op < 0.45 and mine:
            assert M.do_munmap(k, p.mm, a + s * PG, ln * PG) in (0, -22)  # -EINVAL: inside a huge page
        elif op < 0.6 and mine:
            P.do_mprotect(k, p.mm, a + s * PG, ln * PG, rng.choice([0, R, R | W] if n <= 64 else [R, R | W]))
        elif op < 0.65 and mine:
            M.madvise_dontneed(k, p.mm, a + s * PG, ln * PG)
        elif op < 0.72:
            M.do_brk_flags(k, p.mm, k.kmem.get(p.mm, "mm_struct", "brk") + rng.randint(-8, 16) * PG)
        elif op < 0.8 and len(procs) < 6:
            c = fork.do_fork(k, p)
            procs.append(c)
            regions[c.pid] = list(regions.get(p.pid, []))
        elif op < 0.86 and len(procs) > 1 and p.pid != 1:
            E.do_exit(k, p)
            procs.remove(p)
        elif op < 0.9:
            fork.do_execve(k, p, rng.choice(["sh", "ls"]))
            regions[p.pid] = []
        elif mine:
            try:
                memory.handle_mm_fault(k, p.mm, a + s * PG, rng.random() < 0.8)
            except (memory.SegmentationFault, memory.BusError):
                pass
        for q in procs:
            t = M.mm_tree(k, q.mm)
            t.mt_validate(strict_size=False)
            vmas = list(t.mt_for_each())
            assert k.kmem.get(q.mm, "mm_struct", "map_count") == len(vmas), step
            assert k.kmem.get(q.mm, "mm_struct", "total_vm") == sum((l_ - f + 1) >> 12 for f, l_, _v in vmas), step
            for f, l_, v in vmas:
                assert (k.kmem.get(v, "vm_area_struct", "vm_start"), k.kmem.get(v, "vm_area_struct", "vm_end")) == (
                    f,
                    l_ + 1,
                ), step
                assert k.kmem.get(v, "vm_area_struct", "vm_refcnt.refs.counter") == 1, step
        if step % 40 == 39:
            errs = memory.check_mapcounts(k, [q.mm for q in procs])
            for q in procs:
                errs += memory.check_mm(k, q.mm)
            assert not errs, (step, errs[:3])
    for q in sorted(procs, key=lambda x: -x.pid):
        E.do_exit(k, q)
    save(k, tmp_path / "end")
    b, e = (open_drgn(str(tmp_path / f"{n}.vmcore"), str(tmp_path / f"{n}.vmlinux")) for n in ("boot", "end"))
    for item in ("NR_PAGETABLE", "NR_ANON_MAPPED", "NR_ANON_THPS", "NR_FILE_MAPPED", "NR_KERNEL_STACK_KB"):
        assert (
            e["vm_node_stat"][e.constant(item).value_()].counter.value_()
            == b["vm_node_stat"][b.constant(item).value_()].counter.value_()
        ), item
    assert vm_memory_committed(e) == 0
    for cache in ("vm_area_struct", "mm_struct", "task_struct", "anon_vma", "anon_vma_chain", "maple_node", "pid"):
        assert _usage(e, cache) == _usage(b, cache), cache
    hs = e["hstates"][e["default_hstate_idx"]]
    assert (hs.free_huge_pages.value_(), hs.resv_huge_pages.value_()) == (16, 0)


def test_shared_hugetlb_pages_go_back_after_the_last_exit() -> None:
    from mmintro.kernel import hugetlb

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=25, hugepages_2m=4))
    p = fork.spawn_process(k, "db")
    h = hugetlb.hugetlb_mmap(k, p.mm, 4 << 20, 2 << 20, R | W, shared=True)
    memory.handle_mm_fault(k, p.mm, h, True)
    E.do_exit(k, p)
    hs = hugetlb._state(k)[1]
    assert (hs.free_huge_pages, hs.resv_huge_pages) == (4, 0)


def test_prot_none_thp_round_trip() -> None:
    """mprotect(PROT_NONE) over a whole PMD-mapped THP (pmd_modify: _PAGE_PRESENT off,
    _PAGE_PROTNONE on), back to R|W (present and writable again: the folio is exclusive)."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=24, thp="always"))
    p = fork.spawn_process(k, "t")
    a = M.do_mmap(k, p.mm, 8 << 20, R | W)
    base = -(-a // (2 << 20)) * (2 << 20)
    memory.handle_mm_fault(k, p.mm, base, True)
    assert P.do_mprotect(k, p.mm, base, 2 << 20, 0) == 0
    level, _s, e = memory.walk(k, p.mm, base)
    assert level == "PMD" and e & 0x181 == 0x180  # PSE | PROTNONE, not present
    assert P.do_mprotect(k, p.mm, base, 2 << 20, R | W) == 0
    level, _s, e = memory.walk(k, p.mm, base)
    assert level == "PMD" and e & 0x83 == 0x83  # present, writable, PSE


def test_prot_none_thp_is_zapped_at_exit() -> None:
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=24, thp="always"))
    ns = k.node_vm_stat[0]
    before = ns.get("NR_PAGETABLE")
    p = fork.spawn_process(k, "t")
    a = M.do_mmap(k, p.mm, 8 << 20, R | W)
    base = -(-a // (2 << 20)) * (2 << 20)
    memory.handle_mm_fault(k, p.mm, base, True)
    assert P.do_mprotect(k, p.mm, base, 2 << 20, 0) == 0
    E.do_exit(k, p)
    assert (ns.get("NR_ANON_THPS") or 0, ns.get("NR_PAGETABLE")) == (0, before)


def test_fork_copies_the_fd_table_and_fs_and_exit_puts_them(tmp_path) -> None:
    """copy_files (dup_fd: the open files shared, one more reference each) and copy_fs
    (copy_fs_struct: root and pwd dentries referenced) at fork; exit_files / exit_fs put them
    back; fault counters start at 0 in the child (copy_mm)."""
    from drgn.helpers.linux.fs import for_each_file
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import inode

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=26))
    p = fork.spawn_process(k, "srv")
    files = [inode.create_file(k, f"/srv/{n}", 8 * PG, task=p.task) for n in ("a", "b", "c")]
    a = M.do_mmap(k, p.mm, 8 * PG, R | W)
    for i in range(8):
        memory.handle_mm_fault(k, p.mm, a + i * PG, True, task=p.task)
    refs = [k.kmem.get(f, "file", "f_ref.refcnt.counter") for f in files]
    root = k.kmem.get(k.kmem.get(p.task, "task_struct", "fs"), "fs_struct", "root.dentry")
    droot = k.kmem.get(root, "dentry", "d_lockref.count")
    fs = k.kmem.get(p.task, "task_struct", "fs")
    assert k.kmem.get(fs, "fs_struct", "pwd.dentry") == root  # pwd is / too: two path_gets
    c = fork.do_fork(k, p)
    assert [k.kmem.get(f, "file", "f_ref.refcnt.counter") for f in files] == [r + 1 for r in refs]
    assert k.kmem.get(root, "dentry", "d_lockref.count") == droot + 2
    save(k, tmp_path / "f")
    d = open_drgn(str(tmp_path / "f.vmcore"), str(tmp_path / "f.vmlinux"))
    tp, tc = find_task(d, p.pid), find_task(d, c.pid)
    assert [(fd, f.value_()) for fd, f in for_each_file(tc)] == [(fd, f.value_()) for fd, f in for_each_file(tp)]
    assert [f.value_() for _fd, f in for_each_file(tc)] == files
    assert tc.files.value_() != tp.files.value_() and tc.fs.value_() != tp.fs.value_()
    assert tp.min_flt.value_() == 8 and tc.min_flt.value_() == 0
    E.do_exit(k, c)
    assert [k.kmem.get(f, "file", "f_ref.refcnt.counter") for f in files] == refs
    assert k.kmem.get(root, "dentry", "d_lockref.count") == droot


@pytest.mark.slow  # ~6 s
def test_threads_share_the_mm_and_exit_group(tmp_path) -> None:
    """clone(CLONE_VM|CLONE_THREAD...): a thread has its own pid, stack and task_struct but the
    leader's tgid, signal_struct (on its thread_head), mm (mm_users up), files and fs; drgn's
    find_task / for_each_task / for_each_task_in_group see it.  A thread's exit gives back
    only its own objects; the leader's exit takes the whole group (exit_group)."""
    from drgn.helpers.linux.pid import find_task, for_each_task, for_each_task_in_group

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import inode

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=27))
    init = fork.spawn_process(k, "init")
    app = fork.spawn_process(k, "app", parent=init.task)
    inode.create_file(k, "/var/app.log", PG, task=app.task)
    a = M.do_mmap(k, app.mm, 16 * PG, R | W)
    threads = [fork.do_clone_thread(k, app), fork.do_clone_thread(k, app, cpu=1)]
    for i, t in enumerate(threads):  # threads fault in the shared mm
        memory.handle_mm_fault(k, t.mm, a + i * PG, True, task=t.task)
    save(k, tmp_path / "t")
    d = open_drgn(str(tmp_path / "t.vmcore"), str(tmp_path / "t.vmlinux"))
    lead = find_task(d, app.pid)
    assert sorted(t.pid.value_() for t in for_each_task(d)) == [init.pid, app.pid] + [t.pid for t in threads]
    assert [t.pid.value_() for t in for_each_task_in_group(lead, include_self=True)] == [app.pid] + [
        t.pid for t in threads
    ]
    for t in threads:
        tt = find_task(d, t.pid)
        assert tt.tgid.value_() == app.pid and tt.group_leader.value_() == lead.value_()
        assert tt.mm.value_() == lead.mm.value_() and tt.files.value_() == lead.files.value_()
        assert tt.real_parent.value_() == find_task(d, init.pid).value_()
    assert lead.mm.mm_users.counter.value_() == 3 and lead.signal.nr_threads.value_() == 3
    assert lead.files.count.counter.value_() == 3
    used = {c: _usage(d, c) for c in ("task_struct", "signal_cache", "mm_struct", "pid")}
    E.do_exit(k, threads[0])
    assert k.kmem.get(app.mm, "mm_struct", "mm_users.counter") == 2
    save(k, tmp_path / "u")
    d2 = open_drgn(str(tmp_path / "u.vmcore"), str(tmp_path / "u.vmlinux"))
    assert {c: used[c] - _usage(d2, c) for c in used} == {"task_struct": 1, "signal_cache": 0, "mm_struct": 0, "pid": 1}
    assert find_task(d2, app.pid).signal.nr_threads.value_() == 2
    E.do_exit(k, app)  # exit_group: the other thread, then the leader
    save(k, tmp_path / "v")
    d3 = open_drgn(str(tmp_path / "v.vmcore"), str(tmp_path / "v.vmlinux"))
    assert [t.pid.value_() for t in for_each_task(d3)] == [init.pid]
    # the group's one cred (copy_creds: a thread shares its creator's, get_cred_many(cred, 2))
    # goes with the last of them; cred_jar is a slab-merge alias (of pid here, as in
    # test_exit_frees_everything_back), so it counts where it lives
    from drgn.helpers.linux.slab import slab_object_info

    cred = lead.real_cred
    assert all(find_task(d, t.pid).real_cred == cred for t in threads) and cred.usage.counter.value_() == 6
    want = {"task_struct": 3, "signal_cache": 1, "mm_struct": 1, "pid": 3}
    name = slab_object_info(d, cred).slab_cache.name.string_().decode()
    if name in want:
        want[name] += 1
    assert {c: used[c] - _usage(d3, c) for c in used} == want


def test_max_map_count_refuses_splits(tmp_path) -> None:
    """vm.max_map_count (sysctl_max_map_count, 65530 in the image as DEFAULT_MAX_MAP_COUNT):
    at the limit a split is refused -- mprotect inside a VMA and munmap of its middle give
    -ENOMEM and nothing changes; a whole-VMA change needs no split and goes through."""
    from mmintro.crosscheck import open_drgn

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=28))
    p = fork.spawn_process(k, "m")
    a = M.do_mmap(k, p.mm, 16 * PG, R | W)
    save(k, tmp_path / "m")
    assert open_drgn(str(tmp_path / "m.vmcore"), str(tmp_path / "m.vmlinux"))["sysctl_max_map_count"].value_() == 65530
    n = k.kmem.get(p.mm, "mm_struct", "map_count")
    k.write_int("sysctl_max_map_count", n)
    assert P.do_mprotect(k, p.mm, a + 4 * PG, 4 * PG, R) == -12
    assert M.do_munmap(k, p.mm, a + 4 * PG, 4 * PG) == -12
    assert k.kmem.get(p.mm, "mm_struct", "map_count") == n
    assert P.do_mprotect(k, p.mm, a, 16 * PG, R) == 0
    assert M.do_munmap(k, p.mm, a + 12 * PG, 4 * PG) == 0  # the end of the VMA: a split without the check
