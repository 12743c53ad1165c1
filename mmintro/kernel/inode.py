"""Files: one mounted filesystem with inodes, dentries, a mount and open files (fs/inode.c,
fs/dcache.c, fs/file_table.c, fs/super.c, fs/namespace.c).

What is modelled.  A single block-device filesystem is mounted at "/" on first use
(:func:`vfs_root`): the disk is a virtio disk ``vda`` (dev_t 253:0) with its own
``backing_dev_info`` (:mod:`mmintro.kernel.page_writeback`), and the filesystem type is named
``"mmintrofs"`` -- honestly not ext4: it stands for any disk filesystem whose inodes come
straight from the generic ``inode_cache`` (``alloc_inode`` without ``->alloc_inode``: a real
ext4 would use ``ext4_inode_cache`` and ``struct ext4_inode_info``), whose data sits in the
page cache (``address_space`` = ``inode->i_data``) and is written back through its disk's bdi.
Blocks, journals and on-disk layouts are not modelled: a file's content is a function of its
path and offset (:func:`file_bytes`), what the "disk" returns on a read.

* ``alloc_super``: the ``super_block`` (kzalloc) on ``super_blocks`` and its type's
  ``fs_supers``, ``s_type``, ``s_dev``, ``s_blocksize``, ``s_magic``, ``s_root``, ``s_bdi``,
  ``s_id``, ``s_inodes``, ``s_mounts`` (6.18's singly linked ``mnt_next_for_sb`` list);
* the ``struct mount`` of the root mount (``mnt_parent`` = itself, ``mnt_mountpoint`` = the
  root dentry, ``mnt.mnt_root``/``mnt_sb``, ``mnt_devname`` "/dev/vda"), so drgn's
  ``d_path(file.f_path)`` and ``super_block_for_each_mount`` work.  No mount namespace
  (``struct mnt_namespace`` is not in the type data), so ``for_each_mount`` finds nothing;
* ``new_inode``/``inode_init_always``: an object of ``inode_cache`` (its ``init_once``
  constructor has run), ``i_ino`` (2 for the root, as on ext2/3/4; then 12, 13, ...),
  ``i_mode``, ``i_nlink``, ``i_count``, ``i_size``, ``i_blkbits``, ``i_sb``,
  ``i_mapping = &i_data``, ``mapping->host``, ``mapping->gfp_mask`` (GFP_HIGHUSER_MOVABLE),
  ``i_state`` 0 after ``unlock_new_inode``, linked on ``sb->s_inodes``; the mapping's
  ``i_pages`` XArray model is kept in :func:`mapping_xa` (nodes from ``radix_tree_node``);
* ``d_alloc``/``d_instantiate``: ``dentry`` objects with ``d_name`` (the name in
  ``d_shortname`` when it fits, else kmalloc'd), ``d_parent``, ``d_sb``, ``d_inode``, the
  entry type in ``d_flags``, ``d_lockref.count``, ``d_sib``/``d_children`` and the alias on
  ``inode->i_dentry``.  ``d_name.hash`` stays 0 (the salted full_name_hash is not modelled)
  and the dentry hash table is not built;
* ``alloc_empty_file``/``do_dentry_open``: a ``struct file`` from ``filp`` with ``f_path``
  (``path_get``: the dentry referenced; the mount's per-CPU count is not modelled), ``f_inode``, ``f_mapping``, ``f_mode``, ``f_flags``,
  ``f_ref`` (file_ref_t: one reference is 0) and ``f_ra`` (``file_ra_state_init``: ra_pages
  from the bdi, prev_pos -1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.kernel import gfp as G
from mmintro.kernel import slub
from mmintro.kernel.xarray import XA_FLAGS_ACCOUNT, XA_FLAGS_LOCK_IRQ, XArray, radix_tree_node_xarray

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "FS_NAME",
    "Vfs",
    "create_file",
    "dput",
    "fd_install",
    "file_bytes",
    "fput",
    "get_file",
    "iput",
    "mapping_xa",
    "open_file",
    "task_fs",
    "vfs_root",
]

FS_NAME = "mmintrofs"
DISK = "vda"
DISK_MAJOR, DISK_MINOR = 253, 0  # virtio_blk's dynamic major on the reference host class
MINORBITS = 20  # include/linux/kdev_t.h MKDEV
FS_MAGIC = 0x6D6D6673  # "mmfs": a magic of our own (not EXT4_SUPER_MAGIC: this is not ext4)
MAX_LFS_FILESIZE = 0x7FFFFFFFFFFFFFFF  # include/linux/fs.h (64-bit)
# include/uapi/linux/stat.h
S_IFDIR = 0o040000
S_IFREG = 0o100000
# include/linux/fs.h fmode_t bits (#defines, not in the type data)
FMODE_READ = 1 << 0
FMODE_WRITE = 1 << 1
FMODE_LSEEK = 1 << 2
FMODE_PREAD = 1 << 3
FMODE_PWRITE = 1 << 4
FMODE_CAN_READ = 1 << 17
FMODE_CAN_WRITE = 1 << 18
FMODE_OPENED = 1 << 19
FILE_REF_DEAD = 0xE000000000000000  # include/linux/file_ref.h
CLONE_NEWNS = 0x00020000  # include/uapi/linux/sched.h (ns_common.ns_type of a mount namespace)
RB_BLACK = 1  # include/linux/rbtree_augmented.h
# include/uapi/asm-generic/fcntl.h
O_RDWR = 0o2
O_LARGEFILE = 0o100000
DNAME_INLINE_LEN = 40  # include/linux/dcache.h, 64-bit: sizeof(d_shortname.string)
ROOT_INO = 2  # EXT2_ROOT_INO; the first regular inode number after the reserved ones is 11
FIRST_INO = 12


@dataclass
class Vfs:
    """The simulator's books of the mounted filesystem (the kernel's are in memory)."""

    fs_type: int
    sb: int
    mount: int
    root: int  # root dentry
    bdi: int
    dentries: dict[str, int] = field(default_factory=dict)  # path -> dentry
    inodes: dict[int, int] = field(default_factory=dict)  # inode -> i_ino
    paths: dict[int, str] = field(default_factory=dict)  # inode -> path
    xas: dict[int, XArray] = field(default_factory=dict)  # address_space -> i_pages model
    next_ino: int = FIRST_INO
    next_mnt_id: int = 1


def _zalloc_obj(k: Kernel, cache: str, caller: str) -> int:
    s = slub.find_cache(k, cache)
    a = slub.kmem_cache_alloc(k, s, "GFP_KERNEL", caller=caller)
    if not a:
        raise MemoryError(f"{caller}: no memory for a {cache} object")
    return a


def _ensure_global(k: Kernel, name: str) -> int:
    """A global list head (``super_blocks``, ``bdi_list``): placed in .data on first use and
    initialised empty (LIST_HEAD())."""
    if name not in k.image.symbols:
        k.image.var(name, "data")
    if not k.kmem.get(k.sym(name), "list_head", "next"):
        k.kmem.init_list_head(k.sym(name))
    return k.sym(name)


def _hlist_add_head(k: Kernel, node: int, head: int) -> None:
    km = k.kmem
    first = km.get(head, "hlist_head", "first")
    km.set(node, "hlist_node", "next", first)
    if first:
        km.set(first, "hlist_node", "pprev", km.addr(node, "hlist_node", "next"))  # first->pprev = &n->next
    km.set(head, "hlist_head", "first", node)
    km.set(node, "hlist_node", "pprev", head)


def vfs_root(k: Kernel) -> Vfs:
    """The root filesystem, mounted on first use (mount_root: the disk's super_block, its
    root inode and dentry, the mount)."""
    v = k.__dict__.get("vfs")
    if v is not None:
        return v
    from mmintro.kernel import page_writeback as pw

    km, T = k.kmem, k.T
    bdi = pw.bdi_register_disk(k, f"{DISK_MAJOR}:{DISK_MINOR}")
    # the filesystem type: a module's static struct in a real kernel, here kzalloc'd
    fst = slub.kzalloc(k, T.sizeof("struct file_system_type"), "GFP_KERNEL", caller="register_filesystem")
    km.set(fst, "file_system_type", "name", k.image.string(FS_NAME))
    km.set(fst, "file_system_type", "fs_flags", 1)  # FS_REQUIRES_DEV
    # fs/super.c alloc_super() + sget_fc(): on super_blocks and the type's fs_supers
    sb = slub.kzalloc(k, T.sizeof("struct super_block"), "GFP_KERNEL", caller="alloc_super")
    for p in ("s_inodes", "s_inodes_wb"):
        km.init_list_head(km.addr(sb, "super_block", p))
    k.kmem.list_add_tail(km.addr(sb, "super_block", "s_list"), _ensure_global(k, "super_blocks"))
    _hlist_add_head(k, km.addr(sb, "super_block", "s_instances"), km.addr(fst, "file_system_type", "fs_supers"))
    km.set(sb, "super_block", "s_type", fst)
    km.set(sb, "super_block", "s_dev", DISK_MAJOR << MINORBITS | DISK_MINOR)
    km.set(sb, "super_block", "s_blocksize", 4096)
    km.set(sb, "super_block", "s_blocksize_bits", 12)
    km.set(sb, "super_block", "s_maxbytes", MAX_LFS_FILESIZE)
    km.set(sb, "super_block", "s_magic", FS_MAGIC)
    km.set(sb, "super_block", "s_count", 1)
    km.set(sb, "super_block", "s_active.counter", 1)
    km.set(sb, "super_block", "s_bdi", bdi)
    km.write_bytes(km.addr(sb, "super_block", "s_id"), DISK.encode() + b"\0")
    v = Vfs(fst, sb, 0, 0, bdi)
    k.vfs = v
    root_inode = _new_inode(k, v, S_IFDIR | 0o755, 0, ino=ROOT_INO, nlink=2)
    root = _d_alloc(k, v, 0, "/")
    _d_instantiate(k, root, root_inode, S_IFDIR)
    km.set(sb, "super_block", "s_root", root)
    v.root = root
    v.dentries["/"] = root
    v.paths[root_inode] = "/"
    mnt = vfs_create_mount(k, sb, root, f"/dev/{DISK}", k.T.const("MNT_RELATIME"), mnt_id=v.next_mnt_id)
    v.mount = mnt
    # init_mount_tree(): set_fs_root/set_fs_pwd of init_task's fs (the static init_fs)
    if "init_fs" not in k.image.symbols:
        k.image.var("init_fs", "data")
    fs = k.sym("init_fs")
    km.set(fs, "fs_struct", "users", 1)
    km.set(fs, "fs_struct", "umask", 0o022)
    for p in ("root", "pwd"):
        km.set(fs, "fs_struct", f"{p}.mnt", km.addr(mnt, "mount", "mnt"))
        km.set(fs, "fs_struct", f"{p}.dentry", root)
        _d_get(k, root)
    km.set(k.sym("init_task"), "task_struct", "fs", fs)
    _init_mnt_ns(k, mnt)
    return v


def _init_mnt_ns(k: Kernel, mnt: int) -> None:
    """init_mount_tree(): the initial mount namespace (alloc_mnt_ns: kzalloc) holding the root
    mount in its ``mounts`` rbtree (mnt_add_to_ns: one black node, first = last = it),
    ``root``, ``nr_mounts`` 1, inum MNT_NS_INIT_INO; init_nsproxy.mnt_ns points at it."""
    km = k.kmem
    ns = slub.kzalloc(k, k.T.sizeof("struct mnt_namespace"), "GFP_KERNEL", caller="alloc_mnt_ns")
    km.set(ns, "mnt_namespace", "ns.ns_type", CLONE_NEWNS)
    km.set(ns, "mnt_namespace", "ns.inum", k.T.const("MNT_NS_INIT_INO"))
    km.set(ns, "mnt_namespace", "ns.__ns_ref.refs.counter", 1)
    km.set(ns, "mnt_namespace", "root", mnt)
    node = km.addr(mnt, "mount", "mnt_node")
    km.set(node, "rb_node", "__rb_parent_color", RB_BLACK)  # the root: no parent, black
    km.set(ns, "mnt_namespace", "mounts.rb_node", node)
    km.set(ns, "mnt_namespace", "mnt_first_node", node)
    km.set(ns, "mnt_namespace", "mnt_last_node", node)
    km.set(ns, "mnt_namespace", "nr_mounts", 1)
    km.set(ns, "mnt_namespace", "passive.refs.counter", 1)
    km.init_list_head(km.addr(ns, "mnt_namespace", "poll.head"))
    km.set(mnt, "mount", "mnt_ns", ns)
    km.set(k.sym("init_nsproxy"), "nsproxy", "mnt_ns", ns)


def _new_inode(k: Kernel, v: Vfs, mode: int, size: int, ino: int | None = None, nlink: int = 1) -> int:
    """fs/inode.c new_inode(): alloc_inode (inode_cache, init_once ran) + inode_init_always
    + inode_sb_list_add; then the filesystem's i_ino/i_mode/i_size and unlock_new_inode."""
    km = k.kmem
    inode = _zalloc_obj(k, "inode_cache", "alloc_inode")
    if ino is None:
        ino, v.next_ino = v.next_ino, v.next_ino + 1
    km.set(inode, "inode", "i_sb", v.sb)
    km.set(inode, "inode", "i_blkbits", 12)
    km.set(inode, "inode", "i_count.counter", 1)
    km.set(inode, "inode", "i_nlink", nlink)
    km.set(inode, "inode", "i_mode", mode)
    km.set(inode, "inode", "i_ino", ino)
    km.set(inode, "inode", "i_size", size)
    km.set(inode, "inode", "i_blocks", -(-size // 512) if mode & S_IFREG else 8)
    mapping = km.addr(inode, "inode", "i_data")
    km.set(inode, "inode", "i_mapping", mapping)
    km.set(mapping, "address_space", "host", inode)
    km.set(mapping, "address_space", "gfp_mask", G.parse_gfp("GFP_HIGHUSER_MOVABLE"))
    km.set(mapping, "address_space", "i_pages.xa_flags", XA_FLAGS_LOCK_IRQ | XA_FLAGS_ACCOUNT)
    k.kmem.list_add_tail(km.addr(inode, "inode", "i_sb_list"), km.addr(v.sb, "super_block", "s_inodes"))
    v.inodes[inode] = ino
    return inode


def vfs_create_mount(
    k: Kernel, sb: int, root: int, devname: str, flags: int = 0, mnt_id: int | None = None, ns: int | None = None
) -> int:
    """fs/namespace.c alloc_vfsmnt() (mnt_cache: here kzalloc) + vfs_create_mount(): a
    ``struct mount`` of ``sb`` rooted at ``root`` (its own parent and mountpoint, empty lists),
    on ``sb->s_mounts`` (6.18: a singly linked list through mnt_next_for_sb /
    mnt_pprev_for_sb), holding a reference to ``root``."""
    km = k.kmem
    mnt = slub.kzalloc(k, k.T.sizeof("struct mount"), "GFP_KERNEL", caller="alloc_vfsmnt")
    if not mnt:
        raise MemoryError("alloc_vfsmnt: out of memory")
    km.set(mnt, "mount", "mnt.mnt_root", root)
    km.set(mnt, "mount", "mnt.mnt_sb", sb)
    km.set(mnt, "mount", "mnt.mnt_flags", flags)
    km.set(mnt, "mount", "mnt_parent", mnt)
    km.set(mnt, "mount", "mnt_mountpoint", root)
    km.set(mnt, "mount", "mnt_devname", k.image.string(devname))
    if mnt_id is not None:
        km.set(mnt, "mount", "mnt_id", mnt_id)
    if ns is not None:
        km.set(mnt, "mount", "mnt_ns", ns)
    for p in ("mnt_mounts", "mnt_child", "mnt_list", "mnt_expire", "mnt_share", "mnt_slave_list", "mnt_slave"):
        km.init_list_head(km.addr(mnt, "mount", p))
    km.set(sb, "super_block", "s_mounts", mnt)
    km.set(mnt, "mount", "mnt_pprev_for_sb", km.addr(sb, "super_block", "s_mounts"))
    _d_get(k, root)  # the mount's reference to its root
    return mnt


def mapping_xa(k: Kernel, mapping: int) -> XArray:
    """The model of ``mapping->i_pages`` (created on first use; nodes from radix_tree_node)."""
    v = vfs_root(k)
    xa = v.xas.get(mapping)
    if xa is None:
        addr = k.kmem.addr(mapping, "address_space", "i_pages")
        xa = radix_tree_node_xarray(k, addr, XA_FLAGS_LOCK_IRQ | XA_FLAGS_ACCOUNT)
        v.xas[mapping] = xa
    return xa


def _d_get(k: Kernel, dentry: int) -> None:
    km = k.kmem
    km.set(dentry, "dentry", "d_lockref.count", km.get(dentry, "dentry", "d_lockref.count") + 1)


def _d_alloc(k: Kernel, v: Vfs, parent: int, name: str) -> int:
    """fs/dcache.c __d_alloc() (+ d_alloc's parent link): the name inline when it fits."""
    km = k.kmem
    d = _zalloc_obj(k, "dentry", "__d_alloc")
    km.write_bytes(d, bytes(k.T.sizeof("struct dentry")))
    raw = name.encode()
    if len(raw) < DNAME_INLINE_LEN:
        nm = km.addr(d, "dentry", "d_shortname.string")
    else:
        # struct external_name (kmalloc'd, count 1): the name after its count and rcu_head
        ext = slub.kmalloc(k, k.T.offsetof("external_name", "name") + len(raw) + 1, "GFP_KERNEL", caller="__d_alloc")
        km.set(ext, "external_name", "count.counter", 1)
        nm = km.addr(ext, "external_name", "name")
    km.write_bytes(nm, raw + b"\0")
    km.set(d, "dentry", "d_name.name", nm)
    km.set(d, "dentry", "d_name.len", len(raw))
    km.set(d, "dentry", "d_lockref.count", 1)
    km.set(d, "dentry", "d_sb", v.sb)
    km.set(d, "dentry", "d_parent", parent or d)
    if parent:
        _d_get(k, parent)
        _hlist_add_head(k, km.addr(d, "dentry", "d_sib"), km.addr(parent, "dentry", "d_children"))
    return d


def _d_instantiate(k: Kernel, d: int, inode: int, mode: int) -> None:
    """d_instantiate(): d_inode, the entry type (d_flags_for_inode), the alias on i_dentry."""
    km = k.kmem
    t = k.T.const("DCACHE_DIRECTORY_TYPE") if mode == S_IFDIR else k.T.const("DCACHE_REGULAR_TYPE")
    km.set(d, "dentry", "d_flags", km.get(d, "dentry", "d_flags") | t)
    km.set(d, "dentry", "d_inode", inode)
    _hlist_add_head(k, km.addr(d, "dentry", "d_u.d_alias"), km.addr(inode, "inode", "i_dentry"))


def _lookup_create(k: Kernel, v: Vfs, path: str, mode: int, size: int) -> tuple[int, int]:
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError(f"create_file: {path!r} names the root directory")
    parent = v.root
    cur = ""
    for i, name in enumerate(parts):
        cur += "/" + name
        last = i == len(parts) - 1
        d = v.dentries.get(cur)
        if d is None:
            m = mode if last else S_IFDIR
            inode = _new_inode(k, v, m | (0o644 if last else 0o755), size if last else 4096, nlink=1 if last else 2)
            d = _d_alloc(k, v, parent, name)
            _d_instantiate(k, d, inode, m)
            v.dentries[cur] = d
            v.paths[inode] = cur
            if not last:  # the new directory's ".." link
                pi = k.kmem.get(parent, "dentry", "d_inode")
                k.kmem.set(pi, "inode", "i_nlink", k.kmem.get(pi, "inode", "i_nlink") + 1)
        elif last:
            raise FileExistsError(f"create_file: {cur} exists")
        parent = d
    return parent, k.kmem.get(parent, "dentry", "d_inode")


def get_file(k: Kernel, file: int) -> int:
    """get_file(): one more reference (file_ref_inc)."""
    km = k.kmem
    km.set(file, "file", "f_ref.refcnt.counter", km.get(file, "file", "f_ref.refcnt.counter") + 1)
    return file


def fput(k: Kernel, file: int) -> None:
    """fs/file_table.c fput(): file_ref_put (``refcnt`` is the count minus one); the last
    reference runs __fput: dput(f_path.dentry) (the mount's count is not modelled) and
    file_free() back to ``filp``.  The inode keeps its dentry's reference (i_count) until
    the dentry itself goes (:func:`dput`)."""
    km = k.kmem
    cnt = km.get(file, "file", "f_ref.refcnt.counter") - 1
    km.set(file, "file", "f_ref.refcnt.counter", cnt)
    if cnt >= 0:
        return
    dput(k, km.get(file, "file", "f_path.dentry"))
    km.set(file, "file", "f_ref.refcnt.counter", FILE_REF_DEAD - (1 << 64))  # __file_ref_put's cmpxchg
    slub.kmem_cache_free(k, slub.find_cache(k, "filp"), file)


def _is_root(k: Kernel, dentry: int) -> bool:
    return k.kmem.get(dentry, "dentry", "d_parent") == dentry  # IS_ROOT()


def dput(k: Kernel, dentry: int) -> None:
    """fs/dcache.c dput(): drop a reference; at 0, retain_dentry() decides.  A dentry that
    can be looked up stays cached with count 0 (this model's disk dentries: hashed in the
    kernel -- the hash table is not built here -- and the model keeps their creation
    reference, so they never reach 0; d_lru_add is not modelled).  An unreachable one --
    d_alloc_pseudo's, IS_ROOT but not its super_block's root (alloc_file_pseudo: MAP_HUGETLB
    files), never hashed -- is killed (:func:`__dentry_kill`), which iputs its inode."""
    if not dentry:
        return
    km = k.kmem
    cnt = km.get(dentry, "dentry", "d_lockref.count") - 1
    km.set(dentry, "dentry", "d_lockref.count", cnt)
    if cnt > 0:
        return
    sb = km.get(dentry, "dentry", "d_sb")
    unhashed = (
        _is_root(k, dentry)
        and dentry != km.get(sb, "super_block", "s_root")
        and not km.get(dentry, "dentry", "d_hash.pprev")
    )
    if unhashed:  # retain_dentry(): d_unhashed -> false
        __dentry_kill(k, dentry)


def __dentry_kill(k: Kernel, dentry: int) -> None:
    """fs/dcache.c __dentry_kill() of a dentry without parent or children (IS_ROOT):
    dentry_unlink_inode (d_inode and the entry type cleared, the alias off inode->i_dentry,
    iput) then dentry_free (the inline name needs no free; DCACHE_NORCU: straight back to
    the dentry cache)."""
    km = k.kmem
    inode = km.get(dentry, "dentry", "d_inode")
    if inode:
        km.set(
            dentry, "dentry", "d_flags", km.get(dentry, "dentry", "d_flags") & ~k.T.const("DCACHE_ENTRY_TYPE")
        )  # __d_clear_type_and_inode
        km.set(dentry, "dentry", "d_inode", 0)
        alias = km.addr(dentry, "dentry", "d_u.d_alias")  # hlist_del_init
        nxt, pprev = km.get(alias, "hlist_node", "next"), km.get(alias, "hlist_node", "pprev")
        if pprev:
            km.write_u64(pprev, nxt)
            if nxt:
                km.set(nxt, "hlist_node", "pprev", pprev)
        km.set(alias, "hlist_node", "next", 0)
        km.set(alias, "hlist_node", "pprev", 0)
        iput(k, inode)
    name = km.get(dentry, "dentry", "d_name.name")
    if name != km.addr(dentry, "dentry", "d_shortname.string"):  # an external_name: its last reference
        slub.kfree(k, name - k.T.offsetof("external_name", "name"))
    slub.kmem_cache_free(k, slub.find_cache(k, "dentry"), dentry)


def iput(k: Kernel, inode: int) -> None:
    """fs/inode.c iput(): drop i_count; at 0 iput_final() asks ->drop_inode: hugetlbfs's is
    generic_delete_inode (always drop: evict -> hugetlbfs_evict_inode frees its page-cache
    folios back to the pool, the unused reservations, the resv_map and the inode), and so
    is tmpfs's (shmem_evict_inode: the page-cache folios freed, the inode freed);
    otherwise inode_generic_drop_inode drops only an unlinked inode -- a linked disk inode
    stays cached with i_count 0 (inode_add_lru: the inode LRU is not modelled).  Evicting an
    unlinked disk inode (truncate_inode_pages_final) is not modelled: it stays too."""
    from mmintro.kernel import hugetlb, shmem

    km = k.kmem
    cnt = km.get(inode, "inode", "i_count.counter") - 1
    km.set(inode, "inode", "i_count.counter", cnt)
    if cnt > 0:
        return
    sb = km.get(inode, "inode", "i_sb")
    if sb and km.get(sb, "super_block", "s_magic") == hugetlb.HUGETLBFS_MAGIC:
        mapping = km.addr(inode, "inode", "i_data")
        hugetlb.hugetlbfs_evict_inode(k, inode)  # evict(): ->evict_inode, destroy_inode
        v = k.__dict__.get("vfs")
        if v is not None:
            v.xas.pop(mapping, None)  # the freed inode's i_pages model
    elif sb and km.get(sb, "super_block", "s_magic") == shmem.TMPFS_MAGIC:
        # shmem's ->drop_inode is generic_delete_inode (an unlinked tmpfs file is dropped at
        # once): evict -> shmem_evict_inode, destroy_inode (the shm_mnt files of shared
        # anonymous mappings)
        shmem.shmem_evict_inode(k, inode)


def open_dentry(k: Kernel, dentry: int) -> int:
    """alloc_empty_file() (filp) + do_dentry_open() for O_RDWR|O_LARGEFILE."""
    km = k.kmem
    v = vfs_root(k)
    inode = km.get(dentry, "dentry", "d_inode")
    f = _zalloc_obj(k, "filp", "alloc_empty_file")
    km.write_bytes(f, bytes(k.T.sizeof("struct file")))
    km.set(f, "file", "f_ref.refcnt.counter", 0)  # file_ref_init(&f->f_ref, 1): one reference = 0
    km.set(f, "file", "f_flags", O_RDWR | O_LARGEFILE)
    km.set(
        f,
        "file",
        "f_mode",
        FMODE_READ
        | FMODE_WRITE
        | FMODE_LSEEK
        | FMODE_PREAD
        | FMODE_PWRITE
        | FMODE_CAN_READ
        | FMODE_CAN_WRITE
        | FMODE_OPENED,
    )
    km.set(f, "file", "f_path.mnt", km.addr(v.mount, "mount", "mnt"))
    km.set(f, "file", "f_path.dentry", dentry)
    _d_get(k, dentry)
    km.set(f, "file", "f_inode", inode)
    km.set(f, "file", "f_mapping", km.get(inode, "inode", "i_mapping"))  # path_get: no inode reference
    # file_ra_state_init(): ra_pages from the bdi, prev_pos -1
    km.set(f, "file", "f_ra.ra_pages", km.get(v.bdi, "backing_dev_info", "ra_pages"))
    km.set(f, "file", "f_ra.prev_pos", -1)
    return f


def create_file(k: Kernel, path: str, size: int, sb: int | None = None, task: int | None = None) -> int:
    """Create the regular file ``path`` (its missing directories too) of ``size`` bytes on the
    root filesystem and open it read-write; returns the ``struct file *``.  ``sb`` must be
    None or the root filesystem's super_block (one filesystem is modelled).  With ``task``
    the file is installed in that task's fd table (:func:`fd_install`)."""
    v = vfs_root(k)
    if sb not in (None, v.sb):
        raise ValueError("create_file: only the root filesystem is modelled")
    d, _inode = _lookup_create(k, v, path, S_IFREG, size)
    f = open_dentry(k, d)
    if task:
        fd_install(k, task, f)
    return f


NR_OPEN_DEFAULT = 64  # include/linux/fdtable.h: BITS_PER_LONG


def _files_struct(k: Kernel, task: int) -> int:
    """task->files, created empty on first use as dup_fd()/init_files lay one out: count 1,
    fdt = &fdtab with the embedded NR_OPEN_DEFAULT-slot fd_array and the *_init bitmaps."""
    km = k.kmem
    files = km.get(task, "task_struct", "files")
    if files:
        return files
    files = _zalloc_obj(k, "files_cache", "dup_fd")
    km.write_bytes(files, bytes(k.T.sizeof("struct files_struct")))
    km.set(files, "files_struct", "count.counter", 1)
    km.init_list_head(km.addr(files, "files_struct", "resize_wait.head"))
    fdt = km.addr(files, "files_struct", "fdtab")
    km.set(files, "files_struct", "fdt", fdt)
    km.set(fdt, "fdtable", "max_fds", NR_OPEN_DEFAULT)
    km.set(fdt, "fdtable", "fd", km.addr(files, "files_struct", "fd_array"))
    km.set(fdt, "fdtable", "close_on_exec", km.addr(files, "files_struct", "close_on_exec_init"))
    km.set(fdt, "fdtable", "open_fds", km.addr(files, "files_struct", "open_fds_init"))
    km.set(fdt, "fdtable", "full_fds_bits", km.addr(files, "files_struct", "full_fds_bits_init"))
    km.set(task, "task_struct", "files", files)
    return files


def task_fs(k: Kernel, task: int) -> int:
    """task->fs, made on first use as copy_fs() -> copy_fs_struct() makes it from the parent's
    (init_fs: the root mount's root as root and pwd, each path_get)."""
    km = k.kmem
    fs = km.get(task, "task_struct", "fs")
    if fs:
        return fs
    vfs_root(k)
    init_fs = k.sym("init_fs")
    fs = _zalloc_obj(k, "fs_cache", "copy_fs_struct")
    km.write_bytes(fs, bytes(k.T.sizeof("struct fs_struct")))
    km.set(fs, "fs_struct", "users", 1)
    km.set(fs, "fs_struct", "umask", km.get(init_fs, "fs_struct", "umask"))
    for p in ("root", "pwd"):
        d = km.get(init_fs, "fs_struct", f"{p}.dentry")
        km.set(fs, "fs_struct", f"{p}.mnt", km.get(init_fs, "fs_struct", f"{p}.mnt"))
        km.set(fs, "fs_struct", f"{p}.dentry", d)
        _d_get(k, d)
    km.set(task, "task_struct", "fs", fs)
    return fs


def fd_install(k: Kernel, task: int, file: int) -> int:
    """fs/file.c alloc_fd(0, ...) + fd_install() in ``task``'s table: the lowest free fd
    (from files->next_fd), its open_fds bit, fdt->fd[fd] = file.  The table takes over the
    caller's reference.  Returns the fd (-EMFILE past the embedded table: not modelled)."""
    km = k.kmem
    task_fs(k, task)  # a task with files has its fs (copy_fs at fork)
    files = _files_struct(k, task)
    fdt = km.get(files, "files_struct", "fdt")
    open_fds = km.get(fdt, "fdtable", "open_fds")
    word = int.from_bytes(k.mem.read(k.pa(open_fds), 8), "little")  # open_fds[0] (64 fds a word)
    start = km.get(files, "files_struct", "next_fd")
    fd = next((i for i in range(start, NR_OPEN_DEFAULT) if not word >> i & 1), None)
    if fd is None:
        raise OSError("fd_install: the embedded fd table is full (expand_files not modelled)")
    word |= 1 << fd
    k.kmem.write_u64(open_fds, word)
    if word == (1 << 64) - 1:  # __set_open_fd: a full word sets its full_fds_bits bit
        k.kmem.write_u64(km.get(fdt, "fdtable", "full_fds_bits"), 1)
    km.set(files, "files_struct", "next_fd", fd + 1)
    slot = k.T.struct("files_struct").walk("fd_array")[2].resolved().size // NR_OPEN_DEFAULT  # sizeof(struct file *)
    k.kmem.write_u64(km.get(fdt, "fdtable", "fd") + slot * fd, file)
    return fd


def open_file(k: Kernel, path: str) -> int:
    """open(2) of an existing file of the root filesystem: a new ``struct file``
    (FileNotFoundError when the path was never created)."""
    v = vfs_root(k)
    d = v.dentries.get("/" + "/".join(p for p in path.split("/") if p))
    if d is None or d == v.root:
        raise FileNotFoundError(f"open_file: {path} does not exist")
    return open_dentry(k, d)


def file_path(k: Kernel, file: int) -> str:
    inode = k.kmem.get(file, "file", "f_inode")
    return vfs_root(k).paths[inode]


def file_bytes(path: str, pos: int, length: int) -> bytes:
    """What the disk holds for ``path`` at [pos, pos+length): one 64-byte record per 64
    bytes, ``"<path> @<offset hex> "`` then a fill of hex digits from a digest of the path and
    the page offset, ending in a newline, so a dump reader recognises a file's pages and
    their offsets."""
    out = bytearray()
    start = pos - pos % 64
    page = -1
    fill = b""
    for off in range(start, pos + length, 64):
        if off >> 12 != page:
            page = off >> 12
            fill = hashlib.blake2b(f"{path}:{page}".encode(), digest_size=32).hexdigest().encode()
        head = f"{path} @{off:#x} ".encode()[:48]
        out += (head + fill)[:63] + b"\n"
    return bytes(out[pos - start : pos - start + length])
