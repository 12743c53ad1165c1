"""The page cache (mmintro/kernel/inode.py, filemap.py) as real drgn reads it.

drgn's own helpers are the oracle: ``d_path(file.f_path)`` prints each file's path through
our struct mount and dentries, ``inode_for_each_page`` / ``xa_for_each`` / ``xa_load`` walk
the i_pages XArray to exactly the folios the simulator cached (mapping, index, PG_uptodate,
refcount), the pages hold the file's bytes, NR_FILE_PAGES and the file LRU lists count them,
and the readahead window in ``file->f_ra`` is what mm/readahead.c's arithmetic gives for the
read sequence (worked out by hand below)."""

from __future__ import annotations

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import filemap, fork, inode, swap
from mmintro.kernel import mmap as M
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.fs import (
    d_path,
    for_each_file,
    for_each_mount,
    inode_for_each_page,
    mount_dst,
    mount_fstype,
    mount_src,
    path_lookup,
)
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.xarray import xa_for_each, xa_load

PATHS = {
    "log": "/var/log/app.log",
    "db": "/data/db/table-with-a-name-longer-than-forty-bytes-0001.ibd",
    "small": "/etc/conf",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    k = boot(MachineConfig(ram=1 << 30, seed=7))
    files = {tag: inode.create_file(k, p, size) for (tag, p), size in zip(PATHS.items(), (1 << 20, 3 << 20, 5000))}
    ra = {}
    filemap.filemap_read(k, files["log"], 0, 8192)
    ra["first"] = tuple(k.kmem.get(files["log"], "file", f"f_ra.{f}") for f in ("start", "size", "async_size"))
    filemap.filemap_read(k, files["log"], 8192, 65536)
    ra["second"] = tuple(k.kmem.get(files["log"], "file", f"f_ra.{f}") for f in ("start", "size", "async_size"))
    filemap.filemap_read(k, files["db"], 1 << 20, 4096)  # a read in the middle of a cold file
    filemap.filemap_read(k, files["small"], 0, 5000)
    filemap.filemap_write(k, files["small"], 100, 200)  # a partial write into a cached page
    filemap.filemap_write(k, files["db"], 0, 3 * 4096 + 10)  # new pages, no read needed
    # a shared mapping of the log in a process; faults through filemap_fault (one reference each)
    proc = fork.spawn_process(k, "reader")
    addr = filemap.mmap_file(k, proc.mm, files["log"], 64 << 12, M.VM_READ, True)
    vma = M.find_vma(k, proc.mm, addr)
    refs_before = _ref(k, filemap._lookup(k, k.kmem.get(files["log"], "file", "f_mapping"), 3))
    fault_pfn = filemap.filemap_fault(k, vma, 3, False)
    cold_pfn = filemap.filemap_fault(k, vma, 63, False)  # not cached: a major fault + read-around
    d = tmp_path_factory.mktemp("filemap")
    save(k, d / "fm")
    return {
        "k": k,
        "files": files,
        "ra": ra,
        "path": str(d / "fm"),
        "vma": vma,
        "addr": addr,
        "fault": (fault_pfn, refs_before, cold_pfn),
    }


def _ref(k, pfn):
    return k.kmem.get(k.pfn_to_page(pfn), "page", "_refcount.counter")


@pytest.fixture(scope="module")
def prog(cache):
    return open_drgn(cache["path"] + ".vmcore", cache["path"] + ".vmlinux")


def test_d_path_of_each_file(cache, prog):
    for tag, f in cache["files"].items():
        fobj = drgn.Object(prog, "struct file *", f)
        assert d_path(fobj.f_path).decode() == PATHS[tag]
        assert fobj.f_inode.i_sb.s_type.name.string_() == inode.FS_NAME.encode()
        assert fobj.f_mapping == fobj.f_inode.i_mapping == fobj.f_inode.i_data.address_of_()


def test_mount_namespace_lists_the_root_mount(cache, prog):
    """drgn's for_each_mount walks init_task.nsproxy->mnt_ns->mounts (an rbtree) to the root
    mount: /dev/vda on / of type mmintrofs; crash's mount prints the same row."""
    from mmintro.crosscheck import crash

    rows = [(mount_src(m), mount_dst(m), mount_fstype(m)) for m in for_each_mount(prog)]
    assert rows == [(b"/dev/vda", b"/", inode.FS_NAME.encode())]
    out = crash(prog, "mount").split("\n")[1].split()
    assert out[2:] == [inode.FS_NAME, "/dev/vda", "/"]


def test_path_lookup_from_init_task(cache, prog):
    """drgn's path_lookup walks init_task.fs->root and the dentries' d_children lists."""
    for tag, f in cache["files"].items():
        found = path_lookup(prog, PATHS[tag])
        assert found.dentry.value_() == drgn.Object(prog, "struct file *", f).f_path.dentry.value_()
        assert d_path(found).decode() == PATHS[tag]
    with pytest.raises(Exception, match="could not find"):
        path_lookup(prog, "/var/log/missing")


def test_xarray_matches_the_simulator(cache, prog):
    k = cache["k"]
    vmemmap = prog["vmemmap_base"].value_()
    for f in cache["files"].values():
        fobj = drgn.Object(prog, "struct file *", f)
        mapping = fobj.f_mapping
        ours = {i: e for i, e in inode.mapping_xa(k, mapping.value_()).xa_for_each()}
        theirs = {i: p.value_() for i, p in inode_for_each_page(fobj.f_inode)}
        assert theirs == ours and ours
        assert {i: e.value_() for i, e in xa_for_each(mapping.i_pages.address_of_())} == ours
        assert mapping.nrpages.value_() == len(ours)
        for i, page in ours.items():
            assert xa_load(mapping.i_pages.address_of_(), i).value_() == page
            p = drgn.Object(prog, "struct page *", page)
            assert p.mapping == mapping and p.__folio_index.value_() == i
            flags = p.flags.f.value_()
            assert flags >> prog.constant("PG_uptodate").value_() & 1
            assert flags >> prog.constant("PG_lru").value_() & 1
            assert not flags >> prog.constant("PG_locked").value_() & 1
            # the cache's reference, plus one per mapping reference taken by filemap_fault
            pfn = (page - vmemmap) // 64
            assert p._refcount.counter.value_() == 1 + (pfn in cache["fault"][::2])


def test_pages_hold_the_file_bytes(cache, prog):
    k = cache["k"]
    m = k.kmem.get(cache["files"]["log"], "file", "f_mapping")
    for idx in (0, 5, 40):
        pfn = filemap._lookup(k, m, idx)
        data = prog.read(prog["page_offset_base"].value_() + (pfn << 12), 4096)
        assert data.startswith(f"{PATHS['log']} @{idx << 12:#x} ".encode())
    # the partial write replaced bytes 100..299 of /etc/conf's first page, the rest is the disk's
    pfn = filemap._lookup(k, k.kmem.get(cache["files"]["small"], "file", "f_mapping"), 0)
    data = prog.read(prog["page_offset_base"].value_() + (pfn << 12), 4096)
    assert data[:100] == inode.file_bytes(PATHS["small"], 0, 100)
    assert data[100:300] == inode.file_bytes(PATHS["small"] + " (written)", 100, 200)
    assert data[300:400] == inode.file_bytes(PATHS["small"], 300, 100)
    pfn1 = filemap._lookup(k, k.kmem.get(cache["files"]["small"], "file", "f_mapping"), 1)
    tail = prog.read(prog["page_offset_base"].value_() + (pfn1 << 12), 4096)
    assert tail[5000 - 4096 :] == bytes(4096 - (5000 - 4096))  # zeroes after EOF


def test_readahead_windows(cache):
    # mm/readahead.c page_cache_sync_ra at index 0 for 2 pages: get_init_ra_size(2, 32):
    # roundup 2 > 32/32, <= 32/4 -> 4 pages, async_size 4 - 2 = 2 (PG_readahead on page 2)
    assert cache["ra"]["first"] == (0, 4, 2)
    # the next read hits page 2's mark: page_cache_async_ra ramps 4 -> 8 (start 4), then
    # page 4's mark 8 -> 16 (start 12), page 12's 16 -> 32 = ra_pages (start 28)
    assert cache["ra"]["second"] == (28, 32, 32)
    k = cache["k"]
    m = k.kmem.get(cache["files"]["log"], "file", "f_mapping")
    cached = sorted(i for i, _ in inode.mapping_xa(k, m).xa_for_each())
    # 0..59 by read(2); the mmap fault at 63 read around it: start 63 - 16 = 47 for 32 pages,
    # up to the 64th page (the 1 MiB file has pages 0..255)
    assert cached == list(range(79))


def test_mmap_fault_references_and_major(cache, prog):
    k = cache["k"]
    fault_pfn, before, cold_pfn = cache["fault"]
    assert _ref(k, fault_pfn) == before + 1
    vma = drgn.Object(prog, "struct vm_area_struct *", cache["vma"])
    assert vma.vm_file.value_() == cache["files"]["log"]
    flags = vma.vm_flags.value_()
    assert flags & M.VM_SHARED and flags & M.VM_MAYSHARE
    assert drgn.Object(prog, "struct file *", cache["files"]["log"]).f_ref.refcnt.counter.value_() == 1
    assert cold_pfn != fault_pfn


def test_counters_and_file_lru(cache, prog):
    k = cache["k"]
    total = sum(
        k.kmem.get(k.kmem.get(f, "file", "f_mapping"), "address_space", "nrpages") for f in cache["files"].values()
    )
    stat = prog["node_data"][0].vm_stat
    assert stat[prog.constant("NR_FILE_PAGES")].counter.value_() == total
    lru = set()
    vmemmap = prog["vmemmap_base"].value_()
    for name in ("LRU_INACTIVE_FILE", "LRU_ACTIVE_FILE"):
        head = prog["node_data"][0].__lruvec.lists[prog.constant(name)].address_of_()
        lru |= {(f.value_() - vmemmap) // 64 for f in list_for_each_entry("struct folio", head, "lru")}
    cached = set()
    for f in cache["files"].values():
        cached |= {
            (e - k.vmemmap_base) // 64
            for _i, e in inode.mapping_xa(k, k.kmem.get(f, "file", "f_mapping")).xa_for_each()
        }
    assert lru == cached
    inactive = stat[prog.constant("NR_INACTIVE_FILE")].counter.value_()
    active = stat[prog.constant("NR_ACTIVE_FILE")].counter.value_()
    assert inactive + active == total
    # the first folio of each read batch was marked accessed once: referenced, not active
    # (a second access would promote it); so no file folio is active yet
    assert active == 0
    assert swap.folio_test(
        k, filemap._lookup(k, k.kmem.get(cache["files"]["log"], "file", "f_mapping"), 0), swap.PG_referenced
    )


def test_second_read_activates_every_folio_of_the_range():
    """filemap_read marks the first folio of a batch (unless the read continues in it) and
    every later one: one read leaves 0..3 referenced, a second one promotes them to the
    active file list (folio_mark_accessed -> folio_activate), counted in PGACTIVATE."""
    k = boot(MachineConfig(ram=1 << 30, seed=8))
    f = inode.create_file(k, "/tmp/twice", 16 * 4096)
    m = k.kmem.get(f, "file", "f_mapping")
    filemap.filemap_read(k, f, 0, 4 * 4096)
    pfns = [filemap._lookup(k, m, i) for i in range(4)]
    assert all(swap.folio_test(k, p, swap.PG_referenced) and not swap.folio_test(k, p, swap.PG_active) for p in pfns)
    before = sum(c[k.T.const("PGACTIVATE")] for c in k.vm_events)
    filemap.filemap_read(k, f, 0, 4 * 4096)
    assert all(swap.folio_test(k, p, swap.PG_active) and not swap.folio_test(k, p, swap.PG_referenced) for p in pfns)
    assert sum(c[k.T.const("PGACTIVATE")] for c in k.vm_events) - before == 4
    assert set(swap.lru_pfns(k, 0, swap.LRU_ACTIVE_FILE)) == set(pfns)
    assert k.node_vm_stat[0]["NR_ACTIVE_FILE"] == 4


def test_a_second_open_shares_the_page_cache():
    """open_file gives a second struct file on the same dentry/inode: its reads hit the
    folios the first file's reads cached (same mapping), with its own readahead state."""
    k = boot(MachineConfig(ram=1 << 30, seed=9))
    f = inode.create_file(k, "/srv/shared.bin", 8 * 4096)
    filemap.filemap_read(k, f, 0, 8 * 4096)
    m = k.kmem.get(f, "file", "f_mapping")
    before = {i: e for i, e in inode.mapping_xa(k, m).xa_for_each()}
    g = inode.open_file(k, "/srv/shared.bin")
    assert g != f and k.kmem.get(g, "file", "f_mapping") == m
    assert k.kmem.get(g, "file", "f_path.dentry") == k.kmem.get(f, "file", "f_path.dentry")
    filemap.filemap_read(k, g, 0, 8 * 4096)
    assert {i: e for i, e in inode.mapping_xa(k, m).xa_for_each()} == before
    assert k.kmem.get(g, "file", "f_ra.size") == 0  # all hits: no readahead window opened
    with pytest.raises(FileNotFoundError):
        inode.open_file(k, "/srv/missing")


def test_fd_table_seen_by_drgn_for_each_file(tmp_path):
    """create_file(task=...) installs the file in the task's files_struct (alloc_fd +
    fd_install): drgn's for_each_file and fget find it at the lowest free fds."""
    k = boot(MachineConfig(ram=1 << 30, seed=10))
    proc = fork.spawn_process(k, "opener")
    files = [inode.create_file(k, f"/run/f{i}", 4096, task=proc.task) for i in range(3)]
    save(k, tmp_path / "fd")
    prog = open_drgn(str(tmp_path / "fd.vmcore"), str(tmp_path / "fd.vmlinux"))
    task = drgn.Object(prog, "struct task_struct *", proc.task)
    got = [(fd, f.value_()) for fd, f in for_each_file(task)]
    assert got == [(0, files[0]), (1, files[1]), (2, files[2])]
    assert [d_path(f.f_path).decode() for _fd, f in for_each_file(task)] == ["/run/f0", "/run/f1", "/run/f2"]
    assert task.files.next_fd.value_() == 3 and task.files.fdt.max_fds.value_() == 64
    # crash's files command (drgn's) lists them with the task's root and cwd
    from mmintro.crosscheck import crash

    out = crash(prog, f"files {task.pid.value_()}")
    assert "ROOT: /" in out and "CWD: /" in out
    for i in range(3):
        assert f"/run/f{i}" in out
