"""Shared anonymous memory: the internal tmpfs mount and its files (mm/shmem.c of 6.18).

``mmap(MAP_SHARED | MAP_ANONYMOUS)`` is a mapping of an unlinked tmpfs file: 6.18's
__mmap_new_vma calls ``shmem_zero_setup(vma)`` for a shared VMA without a file, which makes
``shmem_kernel_file_setup("dev/zero", size, vm_flags)`` on ``shm_mnt`` and sets
``vma->vm_file`` and ``vma->vm_ops = &shmem_anon_vm_ops``.  /proc/PID/maps then names the VMA
``/dev/zero (deleted)`` (d_alloc_pseudo's anon_ops -> simple_dname) on device 00:01.

* :func:`shm_mount` -- shmem_init()'s ``register_filesystem(&shmem_fs_type)`` +
  ``shm_mnt = kern_mount(&shmem_fs_type)``: a ``file_system_type`` "tmpfs", a super_block
  (alloc_super: on ``super_blocks`` and the type's ``fs_supers``) with ``s_magic``
  TMPFS_MAGIC, ``s_dev`` 0:1 (get_anon_bdev's first anonymous device, as in the reference
  capture), ``s_flags`` SB_KERNMOUNT | SB_NOUSER | SB_ACTIVE, PAGE_SIZE blocks, ``s_bdi`` =
  &noop_backing_dev_info (no writeback: no dirty accounting, no writenotify), ``s_id``
  "tmpfs", the root directory inode (mode 01777) and dentry, and the ``struct mount``
  (MNT_INTERNAL, ``mnt_ns`` = MNT_NS_INTERNAL, devname "tmpfs").  Mounted at boot by
  slab_common.shmem_init, at shmem_init's place in the bootstrap (mnt_init, after
  kernfs_init: the reference slabinfo's order), right after ``shmem_inode_cache`` is
  created; the file_system_type and the mount are kzalloc'd (shmem_fs_type is a static
  struct and mnt_cache is not modelled).  ``struct shmem_sb_info`` is not in the
  type data: ``s_fs_info`` stays NULL (the kernel mount has no limits: max_blocks and
  max_inodes 0), inode numbers come from the per-CPU batches of shmem_reserve_inode (kept
  here in Python).
* :func:`shmem_get_inode` -- __shmem_get_inode(): a ``shmem_inode_info`` from
  ``shmem_inode_cache`` (shmem_init_inode ran inode_init_once), inode_init_always,
  ``seals`` F_SEAL_SEAL, the shrinklist/swaplist heads, ``a_ops = &shmem_aops``
  (``dirty_folio = noop_dirty_folio``), on ``sb->s_inodes``.
* :func:`shmem_kernel_file_setup` -- __shmem_file_setup(shm_mnt, name, size, flags,
  S_PRIVATE): shmem_acct_size (``vm_committed_as`` += VM_ACCT(size) unless VM_NORESERVE), an
  S_IFREG|0777 inode with ``i_size`` = size, ``clear_nlink``, alloc_file_pseudo.
* :func:`shmem_fault` -> :func:`shmem_get_folio_gfp` (SGP_CACHE): the cached folio, or a new
  order-0 one (shmem_enabled is "never": no huge orders) from shmem_alloc_folio's policy --
  the shared policy (mbind through vm_ops->set_policy = shmem_set_policy: the inode's
  ``info->policy`` tree of sp_nodes, :func:`shmem_set_policy`) else the task's -- with interleave
  index ``i_ino + index``; then shmem_alloc_and_add_folio: PG_locked + PG_swapbacked,
  shmem_add_to_page_cache (a reference, ``mapping``/``index``, i_pages, NR_FILE_PAGES and
  NR_SHMEM, ``nrpages``), shmem_inode_acct_blocks (``i_blocks`` += 8 a page:
  inode_add_bytes) and ``info->alloced``, folio_add_lru (swap-backed: the anon LRU); cleared
  (clear_highpage) and marked uptodate.  A write fault's folio_mark_dirty is
  noop_dirty_folio: PG_dirty only, no i_pages tag, no NR_FILE_DIRTY.
* :func:`shmem_evict_inode` -- the last iput of the file's inode (the pseudo dentry's
  __dentry_kill): shmem_unacct_size, i_size 0, shmem_truncate_range over everything
  (folio_cancel_dirty, filemap_remove_folio: i_pages, mapping, ``nrpages``, NR_FILE_PAGES and
  NR_SHMEM down, the cache's references put -- the last frees the folio), then the inode
  leaves ``s_inodes`` and goes back to ``shmem_inode_cache``.

Not modelled: swap (shmem_swapin_folio, shmem_writeout), large folios (huge=, shmem THP),
read(2)/write(2) on tmpfs files, tmpfs mounts other than the kernel's, userfaultfd,
fallocate, memfd seals, SysV shm, the shared policy's rwlock and MPOL_MF_MOVE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import gfp as G
from mmintro.kernel import slub, swap

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "TMPFS_MAGIC",
    "is_shmem_vma",
    "shm_mount",
    "shmem_evict_inode",
    "shmem_fault",
    "shmem_get_folio_gfp",
    "shmem_get_inode",
    "shmem_kernel_file_setup",
    "shmem_mapping",
    "shmem_mmap",
    "shmem_zero_setup",
]

TMPFS_MAGIC = 0x01021994  # include/uapi/linux/magic.h
MINORBITS = 20  # include/linux/kdev_t.h
# include/linux/fs.h (super_block s_flags, inode i_flags)
SB_ACTIVE = 1 << 30
SB_NOUSER = 1 << 31
SB_KERNMOUNT = 1 << 22
S_PRIVATE = 1 << 9
MNT_INTERNAL = 0x4000  # include/linux/mount.h
MNT_NS_INTERNAL = (1 << 64) - 22  # fs/mount.h: ERR_PTR(-EINVAL)
MAX_LFS_FILESIZE = 0x7FFFFFFFFFFFFFFF  # include/linux/fs.h (64-bit)
F_SEAL_SEAL = 0x0001  # include/uapi/linux/fcntl.h
SHMEM_INO_BATCH = 1024  # mm/shmem.c
# include/uapi/linux/stat.h
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_ISVTX = 0o001000
S_IRWXUGO = 0o777
VM_NORESERVE = 0x00200000  # include/linux/mm.h
SHMEM_NAME = "dev/zero"  # shmem_zero_setup()'s file name


@dataclass
class ShmMount:
    """The simulator's books of shm_mnt (the kernel's are in memory)."""

    fs_type: int
    sb: int
    mount: int
    root: int  # the root dentry
    next_ino: int = 1  # sbinfo->next_ino (is_zero_ino: never 0)
    cpu_ino: dict[int, int] = field(default_factory=dict)  # sbinfo->ino_batch, per CPU


def _zalloc(k: Kernel, size: int, caller: str) -> int:
    a = slub.kzalloc(k, size, "GFP_KERNEL", caller=caller)
    if not a:
        raise MemoryError(f"{caller}: out of memory")
    return a


def _func(k: Kernel, name: str, size: int = 0x40) -> int:
    return k.sym(name) if name in k.image.symbols else k.image.func(name, size)


def _ops(k: Kernel) -> tuple[int, int]:
    """``static const struct address_space_operations shmem_aops`` (dirty_folio =
    noop_dirty_folio) and ``shmem_anon_vm_ops`` (fault = shmem_fault, map_pages =
    filemap_map_pages, set_policy/get_policy), placed in .rodata on first use."""
    img, km = k.image, k.kmem
    if "shmem_aops" not in img.symbols:
        aops = img.var("shmem_aops", "rodata")
        for f, fn in (
            ("writepages", "shmem_writepages"),
            ("dirty_folio", "noop_dirty_folio"),
            ("write_begin", "shmem_write_begin"),
            ("write_end", "shmem_write_end"),
            ("migrate_folio", "migrate_folio"),
            ("error_remove_folio", "shmem_error_remove_folio"),
        ):
            km.set(aops, "address_space_operations", f, _func(k, fn))
    if "shmem_anon_vm_ops" not in img.symbols:
        ops = img.var("shmem_anon_vm_ops", "rodata")
        for f, fn in (
            ("fault", "shmem_fault"),
            ("map_pages", "filemap_map_pages"),
            ("set_policy", "shmem_set_policy"),
            ("get_policy", "shmem_get_policy"),
        ):
            km.set(ops, "vm_operations_struct", f, _func(k, fn))
    return k.sym("shmem_aops"), k.sym("shmem_anon_vm_ops")


def _noop_bdi(k: Kernel) -> int:
    """mm/backing-dev.c noop_backing_dev_info (capabilities 0: no writeback, no dirty
    accounting), placed on first use."""
    if "noop_backing_dev_info" not in k.image.symbols:
        k.image.var("noop_backing_dev_info", "data")
    return k.sym("noop_backing_dev_info")


def shm_mount(k: Kernel) -> ShmMount:
    """shmem_init(): register_filesystem(&shmem_fs_type), kern_mount -> shmem_fill_super
    (the root inode and dentry) -> vfs_create_mount (at boot; returns the mount after)."""
    from mmintro.kernel import hugetlb
    from mmintro.kernel import inode as I

    m = k.__dict__.get("shm_mnt")
    if m is not None:
        return m
    km, T = k.kmem, k.T
    fst = _zalloc(k, T.sizeof("struct file_system_type"), "register_filesystem")
    km.set(fst, "file_system_type", "name", k.image.string("tmpfs"))
    km.set(fst, "file_system_type", "fs_flags", 8 | 32)  # FS_USERNS_MOUNT | FS_ALLOW_IDMAP (fs.h)
    sb = _zalloc(k, T.sizeof("struct super_block"), "alloc_super")
    for p in ("s_inodes", "s_inodes_wb"):
        km.init_list_head(km.addr(sb, "super_block", p))
    k.kmem.list_add_tail(km.addr(sb, "super_block", "s_list"), I._ensure_global(k, "super_blocks"))
    I._hlist_add_head(k, km.addr(sb, "super_block", "s_instances"), km.addr(fst, "file_system_type", "fs_supers"))
    km.set(sb, "super_block", "s_type", fst)
    km.set(sb, "super_block", "s_dev", 0 << MINORBITS | 1)  # set_anon_super: MKDEV(0, 1)
    km.set(sb, "super_block", "s_flags", SB_KERNMOUNT | SB_NOUSER | SB_ACTIVE)
    km.set(sb, "super_block", "s_blocksize", PAGE_SIZE)
    km.set(sb, "super_block", "s_blocksize_bits", PAGE_SHIFT)
    km.set(sb, "super_block", "s_maxbytes", MAX_LFS_FILESIZE)
    km.set(sb, "super_block", "s_magic", TMPFS_MAGIC)
    km.set(sb, "super_block", "s_count", 1)
    km.set(sb, "super_block", "s_active.counter", 1)
    km.set(sb, "super_block", "s_bdi", _noop_bdi(k))
    km.write_bytes(km.addr(sb, "super_block", "s_id"), b"tmpfs\0")
    m = ShmMount(fst, sb, 0, 0)
    k.shm_mnt = m
    # shmem_fill_super(): the root directory (ctx->mode 0777 | S_ISVTX), d_make_root
    root_inode = shmem_get_inode(k, m, S_IFDIR | S_ISVTX | S_IRWXUGO, 0)
    root = hugetlb._d_alloc(k, sb, 0, "/")
    hugetlb._d_instantiate(k, root, root_inode)
    km.set(sb, "super_block", "s_root", root)
    m.root = root
    # vfs_create_mount(): MNT_INTERNAL for SB_KERNMOUNT; kern_mount: mnt_ns = MNT_NS_INTERNAL
    m.mount = I.vfs_create_mount(k, sb, root, "tmpfs", MNT_INTERNAL, ns=MNT_NS_INTERNAL)
    return m


def _reserve_ino(k: Kernel, m: ShmMount) -> int:
    """shmem_reserve_inode() on an SB_KERNMOUNT super_block: the per-CPU batch, refilled
    SHMEM_INO_BATCH at a time from sbinfo->next_ino (never inode number 0)."""
    cpu = k.current_cpu
    ino = m.cpu_ino.get(cpu, 0)
    if ino % SHMEM_INO_BATCH == 0:
        ino = m.next_ino
        m.next_ino += SHMEM_INO_BATCH
        if ino == 0:
            ino += 1
    m.cpu_ino[cpu] = ino + 1
    return ino


def _info(k: Kernel, inode: int) -> int:
    """SHMEM_I(inode): the shmem_inode_info around the inode."""
    return inode - k.T.offsetof("shmem_inode_info", "vfs_inode")


def shmem_get_inode(k: Kernel, m: ShmMount, mode: int, vm_flags: int) -> int:
    """mm/shmem.c __shmem_get_inode() with new_inode(): the inode (inside its
    shmem_inode_info, from shmem_inode_cache), inode_init_always, the shmem fields, and for a
    regular file ``a_ops = &shmem_aops``."""

    km = k.kmem
    info = slub.kmem_cache_alloc(k, slub.find_cache(k, "shmem_inode_cache"), "GFP_KERNEL", caller="shmem_alloc_inode")
    if not info:
        raise MemoryError("shmem_alloc_inode: out of memory")
    inode = info + k.T.offsetof("shmem_inode_info", "vfs_inode")
    ino = _reserve_ino(k, m)
    # inode_init_always()
    km.set(inode, "inode", "i_sb", m.sb)
    km.set(inode, "inode", "i_blkbits", PAGE_SHIFT)
    km.set(inode, "inode", "i_count.counter", 1)
    km.set(inode, "inode", "i_nlink", 1)
    mapping = km.addr(inode, "inode", "i_data")
    km.set(inode, "inode", "i_mapping", mapping)
    km.set(mapping, "address_space", "host", inode)
    km.set(mapping, "address_space", "gfp_mask", G.parse_gfp("GFP_HIGHUSER_MOVABLE"))
    km.set(inode, "inode", "i_ino", ino)
    km.set(inode, "inode", "i_mode", mode)
    # the shmem_inode_info (memset to vfs_inode by __shmem_get_inode)
    km.set(info, "shmem_inode_info", "seals", F_SEAL_SEAL)
    km.set(info, "shmem_inode_info", "flags", vm_flags & VM_NORESERVE)
    for p in ("shrinklist", "swaplist"):
        if _has(k, p):
            km.init_list_head(km.addr(info, "shmem_inode_info", p))
    if mode & S_IFREG and not mode & S_IFDIR:
        aops, _vm_ops = _ops(k)
        km.set(mapping, "address_space", "a_ops", aops)
    else:
        km.set(inode, "inode", "i_nlink", 2)  # inc_nlink: "."
    k.kmem.list_add_tail(km.addr(inode, "inode", "i_sb_list"), km.addr(m.sb, "super_block", "s_inodes"))
    return inode


def _has(k: Kernel, path: str) -> bool:
    try:
        k.T.offsetof("shmem_inode_info", path)
        return True
    except LookupError:
        return False


def shmem_kernel_file_setup(k: Kernel, name: str, size: int, vm_flags: int) -> int:
    """mm/shmem.c shmem_kernel_file_setup() -> __shmem_file_setup(shm_mnt, name, size, flags,
    S_PRIVATE): the size accounted (shmem_acct_size), an unlinked regular inode of ``size`` and
    its pseudo file (alloc_file_pseudo, O_RDWR).  Returns the ``struct file *``."""
    from mmintro.kernel import hugetlb
    from mmintro.kernel import vma as V

    if size < 0 or size > MAX_LFS_FILESIZE:
        raise ValueError("shmem_file_setup: bad size (-EINVAL)")
    km = k.kmem
    m = shm_mount(k)
    if not vm_flags & VM_NORESERVE:
        V.vm_acct_memory(k, -(-size // PAGE_SIZE))  # shmem_acct_size: VM_ACCT(size)
    inode = shmem_get_inode(k, m, S_IFREG | S_IRWXUGO, vm_flags)
    km.set(inode, "inode", "i_flags", km.get(inode, "inode", "i_flags") | S_PRIVATE)
    km.set(inode, "inode", "i_size", size)
    km.set(inode, "inode", "i_nlink", 0)  # clear_nlink(): it is unlinked
    return hugetlb.alloc_file_pseudo(k, inode, m, name)


def shmem_zero_setup(k: Kernel, vma: int) -> int:
    """mm/shmem.c shmem_zero_setup(): the "dev/zero" file of the VMA's size, vm_file and
    vm_ops = &shmem_anon_vm_ops.  Returns the file."""
    km = k.kmem
    size = km.get(vma, "vm_area_struct", "vm_end") - km.get(vma, "vm_area_struct", "vm_start")
    f = shmem_kernel_file_setup(k, SHMEM_NAME, size, km.get(vma, "vm_area_struct", "vm_flags"))
    old = km.get(vma, "vm_area_struct", "vm_file")
    if old:
        from mmintro.kernel import vma as V

        V.fput(k, old)
    km.set(vma, "vm_area_struct", "vm_file", f)
    km.set(vma, "vm_area_struct", "vm_ops", _ops(k)[1])
    return f


def shmem_mmap(k: Kernel, mm: int, length: int, prot: int, addr: int = 0) -> int:
    """do_mmap() of MAP_SHARED | MAP_ANONYMOUS: pgoff 0, VM_SHARED | VM_MAYSHARE with the
    prot bits and VM_MAY{READ,WRITE,EXEC} (no VM_ACCOUNT: not accountable_mapping; shmem
    accounts the file instead), get_unmapped_area, then __mmap_new_vma: shmem_zero_setup,
    vma_link_file (mapping_allow_writable + i_mmap), and __mmap_complete's
    vma_set_page_prot (tmpfs cannot write back: no write notification, a writable PTE on
    any fault).  A shmem VMA never merges with a neighbour (its own file).  ``prot`` is the
    VM_READ/WRITE/EXEC bits; returns the address (0 = -ENOMEM)."""
    from mmintro.kernel import filemap, rmap
    from mmintro.kernel import mmap as M

    km = k.kmem
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    flags = prot | M.VM_MAYREAD | M.VM_MAYWRITE | M.VM_MAYEXEC | M.VM_SHARED | M.VM_MAYSHARE
    if not addr:
        addr = M.unmapped_area_topdown(k, mm, length, PAGE_SIZE, km.get(mm, "mm_struct", "mmap_base"))
        if not addr:
            return 0
    vma = M.vma_store(k, mm, addr, addr + length, flags, 0)
    f = shmem_zero_setup(k, vma)
    mapping = km.get(f, "file", "f_mapping")
    if flags & M.VM_MAYWRITE:  # vma_link_file -> mapping_allow_writable()
        km.set(
            mapping,
            "address_space",
            "i_mmap_writable.counter",
            km.get(mapping, "address_space", "i_mmap_writable.counter") + 1,
        )
    rmap.vma_interval_tree_insert(k, vma, mapping)
    filemap.vma_set_page_prot(k, vma)
    return addr


def shmem_mapping(k: Kernel, mapping: int) -> bool:
    """include/linux/shmem_fs.h shmem_mapping(): ``mapping->a_ops == &shmem_aops``."""
    return (
        bool(mapping)
        and "shmem_aops" in k.image.symbols
        and k.kmem.get(mapping, "address_space", "a_ops") == k.sym("shmem_aops")
    )


def is_shmem_vma(k: Kernel, vma: int) -> bool:
    """A VMA whose faults go to shmem_fault: ``vm_ops == &shmem_anon_vm_ops``."""
    return "shmem_anon_vm_ops" in k.image.symbols and k.kmem.get(vma, "vm_area_struct", "vm_ops") == k.sym(
        "shmem_anon_vm_ops"
    )


# -- the shared policy (mm/mempolicy.c, the shmem side of mbind) ----------------------------------
def _rbm(k: Kernel):
    from mmintro.kernel import rbtree as rb

    return rb.RbMem(lambda a: int.from_bytes(k.mem.read(k.pa(a), 8), "little"), k.kmem.write_u64)


def _sp_root(k: Kernel, inode: int) -> int:
    """&SHMEM_I(inode)->policy.root."""
    return k.kmem.addr(_info(k, inode), "shmem_inode_info", "policy.root")


def _nd(k: Kernel) -> int:
    return k.T.offsetof("sp_node", "nd")


def _sp(k: Kernel, n: int, f: str) -> int:
    return k.kmem.get(n - _nd(k), "sp_node", f)


def sp_lookup(k: Kernel, inode: int, start: int, end: int) -> int:
    """mm/mempolicy.c sp_lookup(): the first sp_node (its rb_node address) overlapping
    [start, end) of the inode's shared policy, or 0."""
    from mmintro.kernel import rbtree as rb

    m = _rbm(k)
    n = m.read(_sp_root(k, inode) + rb.ROOT_NODE)
    while n:
        if start >= _sp(k, n, "end"):
            n = m.read(n + rb.RIGHT)
        elif end <= _sp(k, n, "start"):
            n = m.read(n + rb.LEFT)
        else:
            break
    if not n:
        return 0
    while True:
        prev = rb.rb_prev(m, n)
        if not prev or _sp(k, prev, "end") <= start:
            return n
        n = prev


def _sp_insert(k: Kernel, inode: int, node: int) -> None:
    """sp_insert(): by start (ranges never overlap), rb_link_node + rb_insert_color."""
    from mmintro.kernel import rbtree as rb

    m = _rbm(k)
    root = _sp_root(k, inode)
    link, parent = root + rb.ROOT_NODE, 0
    start, end = _sp(k, node, "start"), _sp(k, node, "end")
    while m.read(link):
        parent = m.read(link)
        if start < _sp(k, parent, "start"):
            link = parent + rb.LEFT
        elif end > _sp(k, parent, "end"):
            link = parent + rb.RIGHT
        else:
            raise ValueError("sp_insert: overlapping shared policy ranges (BUG)")
    rb.rb_link_node(m, node, parent, link)
    rb.rb_insert_color(m, node, root)


def _sp_alloc(k: Kernel, start: int, end: int, pol: int) -> int:
    """sp_alloc(): an sp_node from sn_cache ("shared_policy_node") holding mpol_dup(pol)
    with MPOL_F_SHARED; returns its rb_node address."""
    from mmintro.kernel import mempolicy

    km = k.kmem
    n = slub.kmem_cache_alloc(k, slub.find_cache(k, "shared_policy_node"), "GFP_KERNEL", caller="sp_alloc")
    if not n:
        raise MemoryError("sp_alloc: out of memory")
    km.write_bytes(n, bytes(k.T.sizeof("struct sp_node")))
    newpol = mempolicy.mpol_dup(k, pol)
    km.set(newpol, "mempolicy", "flags", km.get(newpol, "mempolicy", "flags") | mempolicy.MPOL_F_SHARED)
    km.set(n, "sp_node", "start", start)  # sp_node_init
    km.set(n, "sp_node", "end", end)
    km.set(n, "sp_node", "policy", newpol)
    return n + _nd(k)


def _sp_delete(k: Kernel, inode: int, node: int) -> None:
    """sp_delete(): rb_erase, then sp_free (mpol_put of its policy, back to sn_cache)."""
    from mmintro.kernel import mempolicy
    from mmintro.kernel import rbtree as rb

    rb.rb_erase(_rbm(k), node, _sp_root(k, inode))
    mempolicy.mpol_put(k, _sp(k, node, "policy"))
    slub.kmem_cache_free(k, slub.find_cache(k, "shared_policy_node"), node - _nd(k))


def shmem_set_policy(k: Kernel, vma: int, pol: int) -> int:
    """mm/shmem.c shmem_set_policy() -> mpol_set_shared_policy(&info->policy, vma, pol): the
    VMA's file range [vm_pgoff, vm_pgoff + pages) gets ``pol`` (none for MPOL_DEFAULT) --
    shared_policy_replace trims, splits or deletes the old nodes in the range, then inserts
    the new one.  vma_replace_policy calls it (vm_ops->set_policy) before setting
    vm_policy."""
    from mmintro.kernel import rbtree as rb

    km = k.kmem
    inode = km.get(km.get(vma, "vm_area_struct", "vm_file"), "file", "f_inode")
    start = km.get(vma, "vm_area_struct", "vm_pgoff")
    end = start + ((km.get(vma, "vm_area_struct", "vm_end") - km.get(vma, "vm_area_struct", "vm_start")) >> PAGE_SHIFT)
    new = _sp_alloc(k, start, end, pol) if pol else 0
    m = _rbm(k)
    n = sp_lookup(k, inode, start, end)
    while n and _sp(k, n, "start") < end:  # shared_policy_replace()
        nxt = rb.rb_next(m, n)
        ns, ne = _sp(k, n, "start"), _sp(k, n, "end")
        if ns >= start:
            if ne <= end:
                _sp_delete(k, inode, n)
            else:
                km.set(n - _nd(k), "sp_node", "start", end)
        elif ne > end:  # an old policy spanning the whole new range: split it
            old = _sp(k, n, "policy")
            split = _sp_alloc(k, end, ne, old)  # *mpol_new = *n->policy, refcnt 1
            km.set(n - _nd(k), "sp_node", "end", start)
            _sp_insert(k, inode, split)
            break
        else:
            km.set(n - _nd(k), "sp_node", "end", start)
        n = nxt
    if new:
        _sp_insert(k, inode, new)
    return 0


def mpol_shared_policy_lookup(k: Kernel, inode: int, index: int) -> int:
    """mm/mempolicy.c mpol_shared_policy_lookup(): the policy of the node holding ``index``
    (the reference it takes is dropped again by mpol_cond_put: not written), or 0."""
    n = sp_lookup(k, inode, index, index + 1)
    return _sp(k, n, "policy") if n else 0


def mpol_free_shared_policy(k: Kernel, inode: int) -> None:
    """mm/mempolicy.c mpol_free_shared_policy(): every node deleted (shmem_destroy_inode)."""
    from mmintro.kernel import rbtree as rb

    m = _rbm(k)
    while True:
        n = rb.rb_first(m, _sp_root(k, inode))
        if not n:
            return
        _sp_delete(k, inode, n)


# -- faults ------------------------------------------------------------------------------------
def _folio_alloc(k: Kernel, vma: int, inode: int, index: int, gfp: int) -> int | None:
    """shmem_alloc_folio(gfp, 0, info, index): shmem_get_pgoff_policy (ilx = i_ino + index;
    the shared policy at ``index``, else get_task_policy(current)) and folio_alloc_mpol on
    the local node."""
    from mmintro.kernel import mempolicy

    km = k.kmem
    ilx = km.get(inode, "inode", "i_ino") + index
    mm = km.get(vma, "vm_area_struct", "vm_mm") if vma else 0
    task = k.__dict__.get("current_task") or (km.get(mm, "mm_struct", "owner") if mm else 0)
    pol = mpol_shared_policy_lookup(k, inode, index)
    if not pol and task:
        pol = km.get(task, "task_struct", "mempolicy")
    return mempolicy.alloc_pages_mpol(k, gfp, 0, pol, ilx, k.numa_node_id(), task=task)


def shmem_add_to_page_cache(k: Kernel, pfn: int, mapping: int, index: int) -> None:
    """mm/shmem.c shmem_add_to_page_cache(): folio_ref_add(nr), mapping/index, the i_pages
    store, NR_FILE_PAGES and NR_SHMEM, nrpages."""
    from mmintro.kernel import inode as I
    from mmintro.kernel.filemap import _ref_add

    nr = swap.folio_nr_pages(k, pfn)
    _ref_add(k, pfn, nr)
    page = k.pfn_to_page(pfn)
    k.kmem.set(page, "page", "mapping", mapping)
    k.kmem.set(page, "page", "__folio_index", index)
    xa = I.mapping_xa(k, mapping)
    if xa.xa_load(index):
        raise ValueError(f"shmem_add_to_page_cache: index {index} is already cached (-EEXIST)")
    xa.xa_store(index, page)
    nid = swap.folio_nid(k, pfn)
    k.mod_node_page_state(nid, "NR_FILE_PAGES", nr)
    k.mod_node_page_state(nid, "NR_SHMEM", nr)
    k.kmem.set(mapping, "address_space", "nrpages", k.kmem.get(mapping, "address_space", "nrpages") + nr)


def shmem_get_folio_gfp(k: Kernel, inode: int, index: int, gfp: int, vma: int = 0) -> int:
    """mm/shmem.c shmem_get_folio_gfp(..., SGP_CACHE, ...): the folio at ``index`` with a
    reference for the caller -- found in i_pages, or allocated (shmem_alloc_and_add_folio),
    cleared and marked uptodate.  Raises ValueError at or beyond i_size (-EINVAL: SIGBUS)
    and MemoryError when no page is left (VM_FAULT_OOM)."""
    from mmintro.kernel import inode as I

    km = k.kmem
    if index << PAGE_SHIFT >= km.get(inode, "inode", "i_size"):
        raise ValueError(f"shmem_get_folio_gfp: page {index} is beyond i_size (SIGBUS)")
    mapping = km.get(inode, "inode", "i_mapping")
    e = I.mapping_xa(k, mapping).xa_load(index)  # filemap_get_entry: a reference
    if e:
        pfn = (e - k.vmemmap_base) // k.struct_page_size
        from mmintro.kernel.filemap import _ref_add

        _ref_add(k, pfn, 1)
        return pfn
    # shmem_alloc_and_add_folio(vmf, gfp, inode, index, fault_mm, 0)
    pfn = _folio_alloc(k, vma, inode, index, gfp)
    if pfn is None:
        raise MemoryError("shmem_get_folio_gfp: no memory (VM_FAULT_OOM)")
    swap.folio_set_flag(k, pfn, swap.PG_locked)  # __folio_set_locked
    swap.folio_set_flag(k, pfn, swap.PG_swapbacked)  # __folio_set_swapbacked
    shmem_add_to_page_cache(k, pfn, mapping, index)
    info = _info(k, inode)
    # shmem_inode_acct_blocks(inode, 1): no limits on the kernel mount; the quota hook
    # dquot_alloc_block_nodirty without an active quota is inode_add_bytes(pages << i_blkbits)
    km.set(inode, "inode", "i_blocks", km.get(inode, "inode", "i_blocks") + (PAGE_SIZE >> 9))
    km.set(info, "shmem_inode_info", "alloced", km.get(info, "shmem_inode_info", "alloced") + 1)  # shmem_recalc_inode
    swap.folio_add_lru(k, pfn)
    k.mem.fill(pfn << PAGE_SHIFT, PAGE_SIZE, 0)  # clear_highpage
    swap.folio_set_flag(k, pfn, swap.PG_uptodate)  # folio_mark_uptodate
    swap.folio_clear_flag(k, pfn, swap.PG_locked)  # the fault's folio_unlock after finish_fault
    return pfn


def shmem_fault(k: Kernel, vma: int, pgoff: int, write: bool) -> int:
    """mm/shmem.c shmem_fault(): shmem_get_folio_gfp(inode, pgoff, 0, SGP_CACHE,
    mapping_gfp_mask) -- a minor fault (no swap: never VM_FAULT_MAJOR).  Returns the pfn
    with the reference the PTE keeps, as filemap_fault does; dirtying on a write is the
    caller's (do_shared_fault -> folio_mark_dirty: noop_dirty_folio)."""
    km = k.kmem
    file = km.get(vma, "vm_area_struct", "vm_file")
    inode = km.get(file, "file", "f_inode")
    gfp = km.get(km.get(inode, "inode", "i_mapping"), "address_space", "gfp_mask")
    k.last_fault_major = False
    return shmem_get_folio_gfp(k, inode, pgoff, gfp, vma)


# -- eviction ------------------------------------------------------------------------------------
def shmem_evict_inode(k: Kernel, inode: int) -> None:
    """mm/shmem.c shmem_evict_inode() + evict()'s inode_sb_list_del and destroy_inode
    (shmem_destroy_inode, shmem_free_in_core_inode): see the module docstring."""
    from mmintro.kernel import inode as I
    from mmintro.kernel import rmap
    from mmintro.kernel import vma as V

    km = k.kmem
    info = _info(k, inode)
    mapping = km.get(inode, "inode", "i_mapping")
    if shmem_mapping(k, mapping):
        if not km.get(info, "shmem_inode_info", "flags") & VM_NORESERVE:
            V.vm_unacct_memory(k, -(-km.get(inode, "inode", "i_size") // PAGE_SIZE))  # shmem_unacct_size
        km.set(inode, "inode", "i_size", 0)
        # shmem_truncate_range(inode, 0, -1) -> shmem_undo_range -> truncate_inode_folio
        if km.get(mapping, "address_space", "nrpages"):
            xa = I.mapping_xa(k, mapping)
            for index, entry in list(xa.xa_for_each()):
                pfn = (entry - k.vmemmap_base) // k.struct_page_size
                nr = swap.folio_nr_pages(k, pfn)
                swap.folio_clear_flag(k, pfn, swap.PG_dirty)  # folio_cancel_dirty (no accounting)
                xa.xa_erase(index)  # filemap_remove_folio -> page_cache_delete
                km.set(k.pfn_to_page(pfn), "page", "mapping", 0)
                km.set(mapping, "address_space", "nrpages", km.get(mapping, "address_space", "nrpages") - nr)
                nid = swap.folio_nid(k, pfn)
                k.mod_node_page_state(nid, "NR_FILE_PAGES", -nr)  # filemap_unaccount_folio
                k.mod_node_page_state(nid, "NR_SHMEM", -nr)
                rmap.folio_put(k, pfn, nr)  # filemap_free_folio: the cache's references
        # shmem_recalc_inode(inode, 0, 0): the freed pages leave alloced and, through
        # shmem_inode_unacct_blocks -> dquot_free_block_nodirty, i_blocks (inode_sub_bytes)
        freed = km.get(info, "shmem_inode_info", "alloced") - km.get(mapping, "address_space", "nrpages")
        km.set(info, "shmem_inode_info", "alloced", km.get(mapping, "address_space", "nrpages"))
        km.set(inode, "inode", "i_blocks", km.get(inode, "inode", "i_blocks") - freed * (PAGE_SIZE >> 9))
    if km.get(inode, "inode", "i_mode") & S_IFREG:
        mpol_free_shared_policy(k, inode)  # shmem_destroy_inode
    sl = km.addr(inode, "inode", "i_sb_list")  # inode_sb_list_del
    nxt, prev = km.get(sl, "list_head", "next"), km.get(sl, "list_head", "prev")
    km.set(prev, "list_head", "next", nxt)
    km.set(nxt, "list_head", "prev", prev)
    km.init_list_head(sl)
    v = k.__dict__.get("vfs")
    if v is not None:
        v.xas.pop(mapping, None)  # the freed inode's i_pages model
    slub.kmem_cache_free(k, slub.find_cache(k, "shmem_inode_cache"), info)
