"""The block-device pseudo filesystem (block/bdev.c), as far as memory tools look at it.

bdev_cache_init() mounts "bdev" at boot: alloc_super() kzallocs its ``struct super_block``,
whose ``s_inodes`` list holds one inode per block device; ``blockdev_superblock`` points at
it.  Tools sum the page cache of block devices over that list (nr_blockdev_pages(), meminfo's
"Buffers", crash's ``kmem -i``).  No block devices are modelled, so the list is empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import slub

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def bdev_cache_init(k: Kernel) -> None:
    """block/bdev.c bdev_cache_init(): the bdev pseudo filesystem's super_block (its
    "bdev_cache" is created with the other init-call caches, slab_common.INIT_CACHES)."""
    sb = slub.kzalloc(k, k.T.sizeof("struct super_block"), "GFP_KERNEL", caller="alloc_super")
    if not sb:
        raise MemoryError("bdev_cache_init: cannot allocate the bdev super_block")
    k.kmem.init_list_head(k.kmem.addr(sb, "super_block", "s_inodes"))
    k.kmem.init_list_head(k.kmem.addr(sb, "super_block", "s_mounts"))
    k.kmem.write_bytes(k.kmem.addr(sb, "super_block", "s_id"), b"bdev\0")
    k.kmem.write_u64(k.sym("blockdev_superblock"), sb)
