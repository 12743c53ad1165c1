"""The last fput of a MAP_HUGETLB file ends in hugetlbfs_evict_inode (6.18 __fput -> dput of
the alloc_file_pseudo dentry -> __dentry_kill -> iput -> evict -> hugetlbfs_evict_inode),
while a disk file's dentry and inode stay cached.

Checked with real drgn: slab_object_info says whether the file, dentry, inode and resv_map
objects are still allocated, the hstate counters are read from the snapshot, and the
hugetlbfs super_block's s_inodes list is walked with drgn's list helpers.
"""

from __future__ import annotations

import pytest

from mmintro.kernel import exit as E
from mmintro.kernel import fork, hugetlb, memory
from mmintro.kernel import mmap as M
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

drgn = pytest.importorskip("drgn")

R, W = M.VM_READ, M.VM_WRITE


def _open(k, path):
    from mmintro.crosscheck import open_drgn

    save(k, path)
    return open_drgn(f"{path}.vmcore", f"{path}.vmlinux")


def _objects(k, mm, addr):
    km = k.kmem
    vma = M.find_vma(k, mm, addr)
    f = km.get(vma, "vm_area_struct", "vm_file")
    inode = km.get(f, "file", "f_inode")
    return {
        "file": f,
        "dentry": km.get(f, "file", "f_path.dentry"),
        "inode": inode,
        "resv_map": km.get(km.get(inode, "inode", "i_mapping"), "address_space", "i_private_data"),
    }


def _allocated(prog, objs):
    from drgn.helpers.linux.slab import slab_object_info

    return {n: slab_object_info(prog, a).allocated for n, a in objs.items()}


def _sb_inodes(prog, sb):
    from drgn.helpers.linux.list import list_for_each_entry

    s = drgn.Object(prog, "struct super_block *", sb)
    return [i.value_() for i in list_for_each_entry("struct inode", s.s_inodes.address_of_(), "i_sb_list")]


@pytest.mark.parametrize("shared", [True, False])
def test_last_exit_evicts_the_hugetlb_inode(shared, tmp_path) -> None:
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=41, hugepages_2m=4))
    h = hugetlb.hstate_for_size(k, 2 << 20)
    sb = k.hugetlbfs_mounts[h.idx].sb
    fork.spawn_process(k, "init")  # pid 1 outlives the others
    p = fork.spawn_process(k, "db")
    a = hugetlb.hugetlb_mmap(k, p.mm, 4 << 20, 2 << 20, R | W, shared=shared)
    memory.handle_mm_fault(k, p.mm, a, True)
    objs = _objects(k, p.mm, a)
    c = fork.do_fork(k, p)  # the child's VMA holds the file too (get_file in dup_mmap)
    E.do_exit(k, p)
    mid = _open(k, tmp_path / "mid")
    assert _allocated(mid, objs) == dict.fromkeys(objs, True)
    assert objs["inode"] in _sb_inodes(mid, sb)
    hs = mid["hstates"][mid["default_hstate_idx"]]
    if shared:  # the page stays in the file's page cache; the second one is still reserved
        assert (hs.free_huge_pages.value_(), hs.resv_huge_pages.value_()) == (3, 1)
    E.do_exit(k, c)
    end = _open(k, tmp_path / "end")
    # __fput -> dput -> __dentry_kill -> iput -> hugetlbfs_evict_inode: everything freed
    assert _allocated(end, objs) == dict.fromkeys(objs, False)
    assert objs["inode"] not in _sb_inodes(end, sb)
    assert len(_sb_inodes(end, sb)) == 1  # the mount's root directory inode
    hs = end["hstates"][end["default_hstate_idx"]]
    assert (hs.free_huge_pages.value_(), hs.resv_huge_pages.value_(), hs.nr_huge_pages.value_()) == (4, 0, 4)


def test_a_disk_file_stays_cached_after_the_last_unmap(tmp_path) -> None:
    """A disk file's dentry is hashed (retain_dentry): it and its inode (i_count held by the
    dentry) outlive the mapping; only the VMA's file reference goes."""
    from mmintro.kernel import filemap, inode

    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=42))
    f = inode.create_file(k, "/data/t", 64 << 10)
    p = fork.spawn_process(k, "w")
    a = filemap.mmap_file(k, p.mm, f, 64 << 10, R | W, True)
    memory.mm_populate(k, p.mm, a, 64 << 10, True)
    km = k.kmem
    objs = {"file": f, "dentry": km.get(f, "file", "f_path.dentry"), "inode": km.get(f, "file", "f_inode")}
    E.do_exit(k, p)
    prog = _open(k, tmp_path / "end")
    assert _allocated(prog, objs) == dict.fromkeys(objs, True)
    d = drgn.Object(prog, "struct dentry *", objs["dentry"])
    assert d.d_inode.value_() == objs["inode"] and d.d_inode.i_count.counter.value_() == 1
    assert drgn.Object(prog, "struct file *", f).f_ref.refcnt.counter.value_() == 0  # the creator's reference
