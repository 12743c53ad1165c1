"""Shared anonymous memory (mm/shmem.c): MAP_SHARED|MAP_ANONYMOUS is an unlinked tmpfs file
"dev/zero" on the kernel's internal mount, faulted through shmem_fault into its page cache.

Everything is checked against real drgn reading the snapshot, or against the reference
capture (/proc/self/maps and smaps of a real 6.18 process with such a mapping): the file's
objects (tmpfs super_block, unlinked inode, pseudo dentry with simple_dname, vm_ops =
shmem_anon_vm_ops), drgn's xa_for_each over the inode's i_pages against drgn's follow_page
in both processes after a fork, the smaps/status/meminfo numbers recomputed from drgn's page
mapcounts and node counters, every process crosscheck row, and the eviction at the last exit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmintro.kernel import mmap as M
from mmintro.kernel import shmem
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save
from mmintro.workload import ScenarioError, Workload, parse_scenario, run_scenario
from tests.cli_helpers import run

drgn = pytest.importorskip("drgn")

REF = Path("/work/shared/reference/procfs/pid")
NPAGES = 256  # 1 MiB, as in the reference capture
TMPFS_MAGIC = 0x01021994  # include/uapi/linux/magic.h
VM_SHARED, VM_MAYSHARE = 0x8, 0x80  # include/linux/mm.h


def _books(k):
    """The node counters, live objects of the caches a shmem file uses, and Committed_AS."""
    from mmintro.kernel import slub

    stats = {
        n: sum(d.get(n, 0) for d in k.node_vm_stat)
        for n in ("NR_SHMEM", "NR_FILE_PAGES", "NR_FILE_MAPPED", "NR_INACTIVE_ANON", "NR_ACTIVE_ANON")
    }
    objs = {c: len(slub.live_objects(k, slub.find_cache(k, c))) for c in ("shmem_inode_cache", "filp", "dentry")}
    return stats, objs, _committed(k)


def _committed(k):
    """percpu_counter_sum(&vm_committed_as): the count plus every CPU's delta."""
    fbc = k.sym("vm_committed_as")
    total = k.kmem.get(fbc, "percpu_counter", "count")
    ctr = k.kmem.get(fbc, "percpu_counter", "counters")
    for cpu in range(k.config.cpus):
        total += int.from_bytes(k.mem.read(k.pa(k.per_cpu_ptr(ctr, cpu)), 4), "little", signed=True)
    return total


def _open(k, path):
    from mmintro.crosscheck import open_drgn

    save(k, path)
    return open_drgn(f"{path}.vmcore", f"{path}.vmlinux")


def _node_stat(d, item):
    """global_node_page_state(item): vm_node_stat[item] as drgn reads it."""
    return d["vm_node_stat"][d.constant(item).value_()].counter.value_()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """init, app (1 MiB shared anonymous, every page written), child forked from app that
    reads every page; the snapshot, drgn on it and the numbers before the mmap."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=7))
    w = Workload(k)
    w.spawn("init")
    w.spawn("app", parent="init")
    shmem.shm_mount(k)  # the boot's shm_mnt (mounted by shmem_init)
    base = _books(k)
    addr = w.mmap("app", "buf", NPAGES << 12, kind="shmem")
    faults = w.touch("app", "buf", write=True)
    w.fork("child", "app")
    cfaults = w.touch("child", "buf")
    path = tmp_path_factory.mktemp("shmem") / "shm"
    d = _open(k, path)
    return {"k": k, "w": w, "addr": addr, "path": str(path), "d": d, "base": base, "faults": faults, "cfaults": cfaults}


def _dvma(world, pid):
    from drgn.helpers.linux.mm import vma_find
    from drgn.helpers.linux.pid import find_task

    d = world["d"]
    return vma_find(find_task(d, pid).mm, world["addr"])


def test_the_file_is_an_unlinked_tmpfs_dev_zero(world) -> None:
    """shmem_zero_setup's file, as drgn reads it: vm_ops = &shmem_anon_vm_ops, pgoff 0,
    VM_SHARED|VM_MAYSHARE; an S_IFREG 0777 inode with i_nlink 0 and i_size = the VMA's size
    on a TMPFS_MAGIC super_block (dev 0:1, the reference's device) whose a_ops is shmem_aops;
    the pseudo dentry "dev/zero" with anon_ops' simple_dname (drgn's d_path prints such a
    dentry as "[<fs type>]": "[tmpfs]")."""
    from drgn.helpers.linux.fs import d_path

    d = world["d"]
    app = world["w"].proc("app")
    v = _dvma(world, app.pid)
    assert d.symbol(v.vm_ops.value_()).name == "shmem_anon_vm_ops"
    assert v.vm_pgoff.value_() == 0
    assert v.vm_flags.value_() & (VM_SHARED | VM_MAYSHARE) == VM_SHARED | VM_MAYSHARE
    f = v.vm_file
    inode = f.f_inode
    assert inode.i_sb.s_magic.value_() == TMPFS_MAGIC
    assert inode.i_sb.s_type.name.string_() == b"tmpfs"
    assert inode.i_sb.s_dev.value_() == 1  # MKDEV(0, 1)
    assert inode.__i_nlink.value_() == 0
    assert inode.i_mode.value_() == 0o100777
    assert inode.i_size.value_() == NPAGES << 12
    assert d.symbol(inode.i_mapping.a_ops.value_()).name == "shmem_aops"
    assert d.symbol(inode.i_mapping.a_ops.dirty_folio.value_()).name == "noop_dirty_folio"
    dentry = f.f_path.dentry
    assert dentry.d_name.name.string_() == b"dev/zero"
    assert d.symbol(dentry.d_op.d_dname.value_()).name == "simple_dname"
    assert d_path(f.f_path) == b"[tmpfs]"
    # the inode lives in its shmem_inode_info, an object of shmem_inode_cache
    from drgn.helpers.linux.slab import slab_object_info

    info = slab_object_info(d, inode.value_())
    assert info.slab_cache.name.string_() == b"shmem_inode_cache" and info.allocated
    assert info.address == inode.value_() - d.type("struct shmem_inode_info").member("vfs_inode").offset
    # the child's VMA shares the file (dup_mmap's get_file)
    assert _dvma(world, world["w"].proc("child").pid).vm_file.value_() == f.value_()


def test_maps_line_as_the_reference_capture(world) -> None:
    """/proc/PID/maps: "rw-s 00000000 00:01 INO /dev/zero (deleted)" in both processes, with
    INO from drgn; VmFlags as the reference capture's shared anonymous VMA."""
    ref = next(line for line in (REF / "self_maps").read_text().splitlines() if "/dev/zero" in line)
    assert ref.split()[1:4] == ["rw-s", "00000000", "00:01"] and ref.endswith("/dev/zero (deleted)")
    ino = _dvma(world, world["w"].proc("app").pid).vm_file.f_inode.i_ino.value_()
    a = world["addr"]
    for name in ("app", "child"):
        out = run("maps", world["path"], str(world["w"].proc(name).pid)).stdout
        line = next(x for x in out.splitlines() if x.startswith(f"{a:012x}-"))
        assert line.split(None, 5) == [
            f"{a:012x}-{a + (NPAGES << 12):012x}",
            "rw-s",
            "00000000",
            "00:01",
            str(ino),
            "/dev/zero (deleted)",
        ]
    smaps = run("smaps", world["path"], str(world["w"].proc("app").pid)).stdout
    block = smaps.split(f"{a:012x}-")[1]
    ref_flags = next(
        x
        for x in (REF / "self_smaps").read_text().split("/dev/zero (deleted)")[1].splitlines()
        if x.startswith("VmFlags")
    )
    assert next(x for x in block.splitlines() if x.startswith("VmFlags")).split() == ref_flags.split()


def test_page_cache_is_what_both_processes_map(world) -> None:
    """drgn's xa_for_each over the inode's i_pages: indices 0..255, each folio the page
    drgn's follow_page finds at that offset in the parent and in the child; nrpages 256; each
    folio swap-backed, uptodate, dirty (written), on an LRU list, not anonymous, its mapping
    and index the file's, two mappings (_mapcount 1) and three references (cache + 2 PTEs)."""
    from drgn.helpers.linux.mm import PageDirty, PageLRU, PageSwapBacked, PageUptodate, follow_page
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.xarray import xa_for_each

    d = world["d"]
    v = _dvma(world, world["w"].proc("app").pid)
    mapping = v.vm_file.f_mapping
    entries = [(i, e.value_()) for i, e in xa_for_each(mapping.i_pages.address_of_())]
    assert [i for i, _e in entries] == list(range(NPAGES))
    assert mapping.nrpages.value_() == NPAGES
    # shmem_inode_acct_blocks -> inode_add_bytes: 512-byte blocks of every page; alloced
    inode = mapping.host
    assert inode.i_blocks.value_() == NPAGES * 8
    info = drgn.container_of(inode, "struct shmem_inode_info", "vfs_inode")
    assert info.alloced.value_() == NPAGES and info.swapped.value_() == 0 and info.seals.value_() == 1  # F_SEAL_SEAL
    for name in ("app", "child"):
        mm = find_task(d, world["w"].proc(name).pid).mm
        assert [follow_page(mm, world["addr"] + (i << 12)).value_() for i in range(NPAGES)] == [e for _i, e in entries]
    for i, e in entries[::17]:
        pg = drgn.Object(d, "struct page *", e)
        assert PageSwapBacked(pg) and PageUptodate(pg) and PageDirty(pg) and PageLRU(pg)
        assert pg.mapping.value_() == mapping.value_() and pg.__folio_index.value_() == i
        assert pg._mapcount.counter.value_() == 1 and pg._refcount.counter.value_() == 3


def test_smaps_after_fork_shares_the_pages(world) -> None:
    """smaps of the shared VMA in each process: Rss all pages, Pss = sum(4096 / mapcount)
    over drgn's pages, all Shared_Dirty (mapped twice, PG_dirty), nothing private or
    anonymous; smaps_rollup's Pss_Shmem is that Pss; the fault log: 256 minor write faults
    (do_shared_fault) in app."""
    from drgn.helpers.linux.mm import PageDirty, follow_page
    from drgn.helpers.linux.pid import find_task

    d = world["d"]
    assert [f.kind for f in world["faults"]] == ["file-shared"] * NPAGES
    assert not any(f.major for f in world["faults"])
    # the child's reads map the cached folios by fault-around (filemap_map_pages over the
    # 64 KiB-aligned window: shmem_anon_vm_ops has map_pages): one fault per window
    a, end = world["addr"], world["addr"] + (NPAGES << 12)
    assert [f.kind for f in world["cfaults"]] == ["file"] * (((end - 1) >> 16) - (a >> 16) + 1)
    for name in ("app", "child"):
        pid = world["w"].proc(name).pid
        mm = find_task(d, pid).mm
        pages = [follow_page(mm, a + (i << 12)) for i in range(NPAGES)]
        pss_kb = sum(4096 // (p._mapcount.counter.value_() + 1) for p in pages) >> 10
        dirty_kb = sum(4 for p in pages if PageDirty(p))
        out = run("smaps", world["path"], str(pid)).stdout.split(f"{a:012x}-")[1].split("VmFlags")[0]
        got = {x.split(":")[0]: int(x.split()[1]) for x in out.splitlines()[1:] if x.endswith("kB")}
        assert got["Rss"] == NPAGES * 4 and got["Pss"] == pss_kb == NPAGES * 2
        assert got["Shared_Dirty"] == dirty_kb == NPAGES * 4
        assert got["Private_Dirty"] == got["Private_Clean"] == got["Shared_Clean"] == got["Anonymous"] == 0
        roll = run("smaps-rollup", world["path"], str(pid)).stdout
        rolled = {x.split(":")[0]: int(x.split()[1]) for x in roll.splitlines()[1:]}
        assert rolled["Pss_Shmem"] == pss_kb and rolled["Pss_Anon"] == 0


def test_status_meminfo_and_counters(world) -> None:
    """status RssShmem = drgn's task_rss shmem pages; meminfo Shmem = NR_SHMEM, Cached
    includes them (NR_FILE_PAGES), Mapped = NR_FILE_MAPPED, Inactive(anon) holds them
    (swap-backed folios on the anon LRU) and AnonPages does not; Committed_AS charged the
    file's size (shmem_acct_size); no NR_FILE_DIRTY (noop_dirty_folio)."""
    from drgn.helpers.linux.mm import task_rss
    from drgn.helpers.linux.pid import find_task

    d = world["d"]
    for name in ("app", "child"):
        pid = world["w"].proc(name).pid
        assert task_rss(find_task(d, pid)).shmem == NPAGES
        st = run("status", world["path"], str(pid)).stdout
        assert next(x for x in st.splitlines() if x.startswith("RssShmem:")).split() == [
            "RssShmem:",
            str(NPAGES * 4),
            "kB",
        ]
    mi = {x.split(":")[0]: int(x.split()[1]) for x in run("meminfo", world["path"]).stdout.splitlines()}
    assert mi["Shmem"] == _node_stat(d, "NR_SHMEM") * 4 == NPAGES * 4
    assert mi["Cached"] == _node_stat(d, "NR_FILE_PAGES") * 4 - mi["Buffers"] >= NPAGES * 4
    assert mi["Mapped"] == _node_stat(d, "NR_FILE_MAPPED") * 4 >= NPAGES * 4
    assert mi["Inactive(anon)"] >= NPAGES * 4 and mi["AnonPages"] < NPAGES * 4
    assert _node_stat(d, "NR_FILE_DIRTY") == 0
    # the simulator's books moved by exactly one file's worth: 256 pages cached, mapped (by
    # the first mapping), on the inactive anon LRU; one inode, file and dentry; 256 pages
    # of Committed_AS
    (s0, o0, c0), (s1, o1, c1) = world["base"], _books(world["k"])
    assert {n: s1[n] - s0[n] for n in s0} == {
        "NR_SHMEM": NPAGES,
        "NR_FILE_PAGES": NPAGES,
        "NR_FILE_MAPPED": NPAGES,
        "NR_INACTIVE_ANON": NPAGES,
        "NR_ACTIVE_ANON": 0,
    }
    assert {c: o1[c] - o0[c] for c in o0} == {"shmem_inode_cache": 1, "filp": 1, "dentry": 1}
    # Committed_AS: the file's size, plus what dup_mmap charged for the child's VM_ACCOUNT VMAs
    from drgn.helpers.linux.mm import for_each_vma

    child = find_task(d, world["w"].proc("child").pid)
    forked = sum(
        (v.vm_end.value_() - v.vm_start.value_()) >> 12
        for v in for_each_vma(child.mm)
        if v.vm_flags.value_() & 0x00100000
    )  # VM_ACCOUNT
    assert c1 - c0 == NPAGES + forked


def test_every_process_crosscheck_row_agrees(world) -> None:
    from mmintro.crosscheck.tasks import TASK_CHECKS
    from mmintro.reader.program import open_snapshot

    p = open_snapshot(world["path"])
    try:
        for name, fn in TASK_CHECKS:
            mine, theirs = fn(p, world["d"])
            assert mine == theirs, name
    finally:
        p.close()


def test_exit_and_munmap_free_everything(tmp_path) -> None:
    """The parent exits first (the child keeps the file and its pages: drgn sees them), then
    the child's munmap drops the last mapping: the last fput kills the pseudo dentry and
    evicts the inode -- file, dentry and inode freed (drgn's slab_object_info), every cached
    folio back in the page allocator (drgn: _refcount 0, no PG_lru, no mapping), the node
    counters, LRU sizes, live objects and Committed_AS as before the mmap, and the tmpfs
    super_block left with its root inode only."""
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import PageLRU
    from drgn.helpers.linux.slab import slab_object_info

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=9))
    w = Workload(k)
    w.spawn("init")
    w.spawn("app", parent="init")
    m = shmem.shm_mount(k)  # the boot's
    before = _books(k)
    addr = w.mmap("app", "buf", 64 << 12, kind="shmem")
    assert _books(k)[2] == before[2] + 64  # shmem_acct_size: VM_ACCT(size)
    w.touch("app", "buf", write=True)
    w.fork("child", "app")
    w.touch("child", "buf", write=True, every=3)
    km = k.kmem
    f = km.get(M.find_vma(k, w.proc("app").mm, addr), "vm_area_struct", "vm_file")
    inode = km.get(f, "file", "f_inode")
    objs = {"file": f, "dentry": km.get(f, "file", "f_path.dentry"), "inode": inode}
    pages = [e for _i, e in _shmem_xa(k, inode)]
    assert len(pages) == 64
    w.exit("app")
    d = _open(k, tmp_path / "mid")
    assert _dvma({"d": d, "addr": addr}, w.proc("child").pid).vm_file.value_() == f
    assert all(slab_object_info(d, a).allocated for a in objs.values())
    assert _node_stat(d, "NR_SHMEM") == 64
    w.munmap("child", "buf")
    assert _books(k) == before
    d = _open(k, tmp_path / "after")
    assert not any(slab_object_info(d, a).allocated for a in objs.values())
    assert _node_stat(d, "NR_SHMEM") == 0
    for e in pages:
        pg = drgn.Object(d, "struct page *", e)
        assert pg._refcount.counter.value_() == 0 and not PageLRU(pg) and not pg.mapping
    sb = drgn.Object(d, "struct super_block *", m.sb)
    left = list(list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list"))
    assert [i.value_() for i in left] == [km.get(m.root, "dentry", "d_inode")]


def _shmem_xa(k, inode):
    from mmintro.kernel.inode import mapping_xa

    return list(mapping_xa(k, k.kmem.get(inode, "inode", "i_mapping")).xa_for_each())


def test_a_thread_shares_the_mapping(tmp_path) -> None:
    """A thread = NAME step: the thread (its own pid, the leader's mm in drgn) faults the
    shared mapping; both see the same rss; the leader's exit ends the thread too and frees
    the file's pages."""
    from drgn.helpers.linux.pid import find_task

    text = """
[machine]
ram = "512M"

[[step]]
spawn = "init"

[[step]]
spawn = "db"
parent = "init"

[[step]]
mmap = "shm"
process = "db"
kind = "shmem"
size = "256K"

[[step]]
thread = "worker"
process = "db"

[[step]]
touch = "shm"
process = "worker"
access = "write"

[[step]]
expect = "rss_shmem('db') == 64 and rss_shmem('worker') == 64 and node_stat('NR_SHMEM') == 64"
"""
    r = run_scenario(parse_scenario(text, "thr.toml"))
    w, k = r.workload, r.kernel
    db, worker = w.proc("db"), w.proc("worker")
    d = _open(k, tmp_path / "thr")
    assert worker.pid != db.pid
    assert find_task(d, worker.pid).mm.value_() == find_task(d, db.pid).mm.value_() == db.mm
    w.exit("db")  # exit_group: the worker goes too, and with the last mapping the file
    assert "worker" not in w.procs and "worker" not in w.mappings
    assert sum(s.get("NR_SHMEM", 0) for s in k.node_vm_stat) == 0


@pytest.mark.parametrize(
    ("step", "msg"),
    [
        ('thread = "t"', "thread needs process = NAME"),
        ('thread = "a"\nprocess = "a"', "process 'a' already exists"),
        ('mmap = "m"\nprocess = "a"\nkind = "shmem"\nsize = "1M"\nfile = "f"', "file and offset go with kind"),
        ('mmap = "m"\nprocess = "a"\nkind = "shmem"\nsize = "1M"\nshared = true', "shared = true goes with kind"),
        ('thread = "t"\nprocess = "a"\n\n[[step]]\nexec = "a"\ncomm = "x"', "exec there (de_thread) is not modelled"),
        (
            'thread = "t"\nprocess = "a"\n\n[[step]]\nexit = "a"\n\n[[step]]\ntouch = "heap"\nprocess = "t"',
            "unknown process 't'",
        ),
    ],
)
def test_static_checks_are_one_line(step, msg) -> None:
    text = f'[[step]]\nspawn = "a"\n\n[[step]]\nspawn = "b"\n\n[[step]]\n{step}\n'
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "bad.toml")
    assert "\n" not in str(e.value) and str(e.value).startswith("bad.toml:") and msg in str(e.value)


def test_partial_munmap_keeps_the_file_and_mbind_interleaves(tmp_path) -> None:
    """munmap of part of the mapping zaps its PTEs (rss, NR_FILE_MAPPED down) but the pages
    stay in the file (NR_SHMEM, nrpages): a tmpfs file keeps its data until it is evicted.
    mbind(MPOL_INTERLEAVE) on a 2-node machine: shmem_alloc_folio's interleave index is
    i_ino + index, so page i is on node (i_ino + i) % 2 -- drgn's page_to_nid of every
    cached folio."""
    from drgn.helpers.linux.mm import page_to_pfn
    from drgn.helpers.linux.xarray import xa_for_each

    from mmintro.kernel import memory, slub

    k = boot(MachineConfig(ram=1 << 30, nodes=2, cpus=2, seed=5))
    w = Workload(k)
    w.spawn("init")
    w.spawn("a", parent="init")
    pols = len(slub.live_objects(k, slub.find_cache(k, "numa_policy")))
    addr = w.mmap("a", "m", 32 << 12, kind="shmem")
    w.mbind("a", "m", "interleave", [0, 1])
    w.touch("a", "m", write=True)
    w.munmap("a", "m", start=8 << 12, size=8 << 12)
    mm = w.proc("a").mm
    assert memory.get_mm_counter_sum(k, mm, "MM_SHMEMPAGES") == 24
    d = _open(k, tmp_path / "part")
    assert _node_stat(d, "NR_SHMEM") == 32 and _node_stat(d, "NR_FILE_MAPPED") == 24
    v = _dvma({"d": d, "addr": addr}, w.proc("a").pid)
    ino = v.vm_file.f_inode.i_ino.value_()
    mapping = v.vm_file.f_mapping
    assert mapping.nrpages.value_() == 32
    spans = [
        (n.node_start_pfn.value_(), n.node_start_pfn.value_() + n.node_spanned_pages.value_())
        for n in (d["node_data"][nid] for nid in range(2))
    ]

    def nid_of(e):  # the node whose pfn span holds the page
        pfn = page_to_pfn(drgn.Object(d, "struct page *", e.value_())).value_()
        return next(nid for nid, (lo, hi) in enumerate(spans) if lo <= pfn < hi)

    nids = [(i, nid_of(e)) for i, e in xa_for_each(mapping.i_pages.address_of_())]
    assert nids == [(i, (ino + i) % 2) for i in range(32)]
    # the two pieces share the file (split_vma's get_file); the right one starts at pgoff 16
    right = _dvma({"d": d, "addr": addr + (16 << 12)}, w.proc("a").pid)
    assert right.vm_file.value_() == v.vm_file.value_() and right.vm_pgoff.value_() == 16
    # the shared policy (shmem_set_policy): one sp_node over the file's pages [0, 32), its
    # own MPOL_F_SHARED copy of the interleave policy; a second mbind inside it splits it
    info = drgn.container_of(v.vm_file.f_inode, "struct shmem_inode_info", "vfs_inode")
    assert _sp_nodes(d, info) == [(0, 32, "MPOL_INTERLEAVE", 1)]
    w.mbind("a", "m", "bind", [1], start=20 << 12, size=4 << 12)
    sn = len(slub.live_objects(k, slub.find_cache(k, "shared_policy_node")))
    d = _open(k, tmp_path / "split")
    v = _dvma({"d": d, "addr": addr}, w.proc("a").pid)
    info = drgn.container_of(v.vm_file.f_inode, "struct shmem_inode_info", "vfs_inode")
    assert _sp_nodes(d, info) == [
        (0, 20, "MPOL_INTERLEAVE", 1),
        (20, 24, "MPOL_BIND", 1),
        (24, 32, "MPOL_INTERLEAVE", 1),
    ]
    w.exit("a")  # the last mapping: eviction frees the tree (mpol_free_shared_policy)
    assert len(slub.live_objects(k, slub.find_cache(k, "shared_policy_node"))) == sn - 3
    assert len(slub.live_objects(k, slub.find_cache(k, "numa_policy"))) == pols  # no policy leaked


def _sp_nodes(d, info):
    """(start, end, mode, MPOL_F_SHARED) of each sp_node of info->policy, in order (drgn)."""
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry

    modes = {d.constant(n).value_(): n for n in ("MPOL_INTERLEAVE", "MPOL_BIND", "MPOL_PREFERRED")}
    return [
        (n.start.value_(), n.end.value_(), modes.get(n.policy.mode.value_()), n.policy.flags.value_() & 1)
        for n in rbtree_inorder_for_each_entry("struct sp_node", info.policy.root.address_of_(), "nd")
    ]


def test_boot_mounts_shm_mnt(tmp_path) -> None:
    """shmem_init at boot: drgn finds on super_blocks a tmpfs super_block (TMPFS_MAGIC, dev
    0:1, SB_KERNMOUNT) whose only inode is the root directory (mode 01777, an object of
    shmem_inode_cache), mounted MNT_INTERNAL; in /proc/slabinfo (newest first)
    shmem_inode_cache comes after buffer_head and before filp, as in the reference."""
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.slab import slab_object_info

    k = boot(MachineConfig(ram=512 << 20, cpus=2, seed=1))
    d = _open(k, tmp_path / "boot")
    sbs = [
        sb
        for sb in list_for_each_entry("struct super_block", d["super_blocks"].address_of_(), "s_list")
        if sb.s_magic.value_() == TMPFS_MAGIC
    ]
    assert len(sbs) == 1
    sb = sbs[0]
    assert sb.s_dev.value_() == 1 and sb.s_flags.value_() & (1 << 22)  # SB_KERNMOUNT
    assert sb.s_type.name.string_() == b"tmpfs" and sb.s_id.string_() == b"tmpfs"
    inodes = list(list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list"))
    assert len(inodes) == 1 and inodes[0].i_mode.value_() == 0o41777
    assert inodes[0].value_() == sb.s_root.d_inode.value_()
    assert slab_object_info(d, inodes[0].value_()).slab_cache.name.string_() == b"shmem_inode_cache"
    mnt = sb.s_mounts  # 6.18: the first struct mount of the super_block
    assert mnt.mnt.mnt_flags.value_() & 0x4000 and mnt.mnt.mnt_root.value_() == sb.s_root.value_()
    names = [line.split()[0] for line in run("slabinfo", str(tmp_path / "boot")).stdout.splitlines()[2:]]
    ref = [line.split()[0] for line in (REF.parent / "slabinfo").read_text().splitlines()[2:]]
    common = [n for n in ref if n in names and n in ("buffer_head", "shmem_inode_cache", "filp", "inode_cache")]
    assert [n for n in names if n in common] == common


def test_fork_copies_no_shared_pte(tmp_path) -> None:
    """copy_page_range skips a shared mapping without an anon_vma (vma_needs_copy false):
    right after fork the child's VMA (same file, same flags) has no present PTE -- drgn's
    follow_page faults on every page -- and no shmem rss, while the folios keep one
    mapping (the parent's) and the cache's reference."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_page, task_rss
    from drgn.helpers.linux.pid import find_task

    k = boot(MachineConfig(ram=512 << 20, cpus=2, seed=3))
    w = Workload(k)
    w.spawn("init")
    w.spawn("p", parent="init")
    addr = w.mmap("p", "m", 16 << 12, kind="shmem")
    w.touch("p", "m", write=True)
    w.fork("c", "p")
    d = _open(k, tmp_path / "f")
    tc, tp = find_task(d, w.proc("c").pid), find_task(d, w.proc("p").pid)
    assert (
        _dvma({"d": d, "addr": addr}, w.proc("c").pid).vm_file.value_()
        == _dvma({"d": d, "addr": addr}, w.proc("p").pid).vm_file.value_()
    )
    for i in range(16):
        with pytest.raises(FaultError):
            follow_page(tc.mm, addr + (i << 12))
        pg = follow_page(tp.mm, addr + (i << 12))
        assert pg._mapcount.counter.value_() == 0 and pg._refcount.counter.value_() == 2
    assert task_rss(tc).shmem == 0 and task_rss(tp).shmem == 16
