"""shmem's swap accounting (mm/shmem.c, 6.18), read side: what smaps counts as Swap for a
mapping of a tmpfs / shared-anonymous object.

A swapped-out shmem page leaves no swap PTE behind: reclaim unmaps it (the PTE becomes none)
and puts its swap entry, as an xa_value, in the object's ``i_pages``; ``shmem_inode_info.swapped``
counts them.

* :func:`shmem_mapping` -- ``mapping->a_ops == &shmem_aops``;
* :func:`shmem_swap_usage` -- bytes of the object the VMA maps that are in swap: ``info->swapped``
  when the VMA maps it from offset 0 and at least ``i_size`` long, else
  :func:`shmem_partial_swap_usage` over the VMA's page indices;
* :func:`shmem_partial_swap_usage` -- value entries of ``i_pages`` in ``[start, end)``.

Simplified: a multi-index value entry (a large shmem folio swapped out whole) counts as one
page, where the kernel adds ``1 << xas_get_order()``; order-0 shmem (tmpfs's default
``huge=never``) is exact.
"""

from __future__ import annotations

from mmintro.reader.object import Object

__all__ = ["SHMEM_I", "shmem_mapping", "shmem_swap_usage", "shmem_partial_swap_usage", "shmem_swap_indices"]


def shmem_mapping(mapping: Object) -> bool:
    """include/linux/shmem_fs.h ``shmem_mapping()``: its address_space_operations are shmem's."""
    prog = mapping.prog_
    sym = prog.symbols.by_name.get("shmem_aops")
    if sym is None or not mapping.value_():
        return False
    return mapping.a_ops.value_() == sym.address


def SHMEM_I(inode: Object) -> Object:
    """``container_of(inode, struct shmem_inode_info, vfs_inode)``."""
    prog = inode.prog_
    off = prog.types.struct("shmem_inode_info").offsetof("vfs_inode")
    return Object(prog, prog.type("struct shmem_inode_info *"), inode.value_() - off)


def shmem_swap_indices(mapping: Object) -> list[int]:
    """The page indices of ``mapping->i_pages`` holding a swap entry (xa_value), cached."""
    from mmintro.reader.helpers.xarray import xa_for_each

    prog = mapping.prog_
    key = ("shmem.swap_indices", mapping.value_())
    got = prog.cache.get(key)
    if got is None:
        got = [idx for idx, e in xa_for_each(mapping.i_pages.address_of_()) if e.value_() & 1]
        prog.cache[key] = got
    return got


def shmem_partial_swap_usage(mapping: Object, start: int, end: int) -> int:
    """mm/shmem.c ``shmem_partial_swap_usage()``: bytes in swap of page indices [start, end)."""
    page = mapping.prog_.page_size
    return sum(1 for i in shmem_swap_indices(mapping) if start <= i < end) * page


def shmem_swap_usage(vma: Object) -> int:
    """mm/shmem.c ``shmem_swap_usage()``: bytes of the VMA's part of its shmem object in swap."""
    prog = vma.prog_
    inode = vma.vm_file.f_inode
    swapped = SHMEM_I(inode).swapped.value_()
    if not swapped:
        return 0
    start, end, pgoff = vma.vm_start.value_(), vma.vm_end.value_(), vma.vm_pgoff.value_()
    if not pgoff and end - start >= inode.i_size.value_():
        return swapped * prog.page_size
    return shmem_partial_swap_usage(inode.i_mapping, pgoff, pgoff + (end - start) // prog.page_size)
