"""vmalloc areas (mm/vmalloc.c, include/linux/vmalloc.h) read from a snapshot, named and
behaving like drgn's ``for_each_vmap_area``, ``find_vmap_area`` and ``vmalloc_to_page``
(``drgn.helpers.linux.mm``).

Since 6.9 busy areas live in per-node trees: ``vmap_nodes[i].busy`` holds the areas whose
``va_start`` falls in node ``addr_to_node_id(va_start) = (va_start / vmap_zone_size) %
nr_vmap_nodes``, in an rb-tree (``busy.root``) and an address-sorted list (``busy.head``).
Lazily freed areas wait for the purge on ``vmap_nodes[i].lazy``.  Kernels before 6.9 (one
global ``vmap_area_root``/``vmap_area_list``) are read too.

Walks are bounded and checked: a list link that does not point back, a cycle, a busy list
out of address order, or an rb-tree search deeper than a red-black tree can be raises
:class:`~mmintro.reader.errors.ValidationError`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mmintro.arch.x86 import VMALLOC_SIZE_TB_L4, VMALLOC_SIZE_TB_L5
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.list import list_for_each_entry
from mmintro.reader.helpers.mm import follow_page, page_to_pfn
from mmintro.reader.object import NULL, Object
from mmintro.reader.program import Program

__all__ = [
    "VMALLOC_END",
    "VMALLOC_START",
    "VMAP_RAM",
    "VM_ALLOC",
    "VM_DMA_COHERENT",
    "VM_IOREMAP",
    "VM_MAP",
    "VM_SPARSE",
    "VM_UNINITIALIZED",
    "VM_USERMAP",
    "addr_to_node_id",
    "find_vm_area",
    "find_vmap_area",
    "for_each_lazy_vmap_area",
    "for_each_vmap_area",
    "gather_virt_u64",
    "is_vmalloc_addr",
    "nr_vmap_nodes",
    "vmalloc_nr_pages",
    "vmalloc_to_page",
    "vmalloc_to_pfn",
    "vmap_node",
]

# include/linux/vmalloc.h: vm_struct.flags (#defines, not in BTF).
VM_IOREMAP = 0x00000001
VM_ALLOC = 0x00000002
VM_MAP = 0x00000004
VM_USERMAP = 0x00000008
VM_DMA_COHERENT = 0x00000010
VM_UNINITIALIZED = 0x00000020
VM_SPARSE = 0x00001000
# mm/vmalloc.c: vmap_area.flags of vm_map_ram() areas.
VMAP_RAM = 0x1

_MAX_AREAS = 1 << 22  # bound on a list walk
_MAX_DEPTH = 128  # a red-black tree of 2^64 nodes is at most 128 deep


def VMALLOC_START(prog: Program) -> int:
    """``VMALLOC_START`` (``vmalloc_base``, KASLR-randomised)."""
    return prog["vmalloc_base"].value_()


def VMALLOC_END(prog: Program) -> int:
    """``VMALLOC_END`` (inclusive): 32 TiB after VMALLOC_START with 4-level paging, 12800 TiB
    with 5-level (arch/x86/include/asm/pgtable_64_types.h VMALLOC_SIZE_TB)."""
    size_tb = VMALLOC_SIZE_TB_L5 if len(prog.levels) == 5 else VMALLOC_SIZE_TB_L4
    return VMALLOC_START(prog) + (size_tb << 40) - 1


def is_vmalloc_addr(prog: Program, addr: int) -> bool:
    """mm/vmalloc.c ``is_vmalloc_addr()``: ``VMALLOC_START <= addr < VMALLOC_END``."""
    return VMALLOC_START(prog) <= int(addr) < VMALLOC_END(prog)


def nr_vmap_nodes(prog: Program) -> int:
    """``nr_vmap_nodes`` (1 before 6.9 or without the variable)."""
    try:
        n = prog["nr_vmap_nodes"].value_()
    except KeyError:
        return 1
    if not 1 <= n <= 8192:  # vmap_init_nodes(): at least one, at most one per possible CPU (NR_CPUS)
        raise ValidationError(f"nr_vmap_nodes is {n}")
    return n


def vmap_node(prog: Program, i: int) -> Object:
    """``&vmap_nodes[i]``.

    :return: ``struct vmap_node *``
    """
    n = nr_vmap_nodes(prog)
    if not 0 <= i < n:
        raise IndexError(f"vmap node {i} out of range (nr_vmap_nodes {n})")
    return prog["vmap_nodes"] + i


def addr_to_node_id(prog: Program, addr: int) -> int:
    """mm/vmalloc.c ``addr_to_node_id()``: ``(addr / vmap_zone_size) % nr_vmap_nodes``."""
    try:
        zone = prog["vmap_zone_size"].value_()
    except KeyError:
        zone = 1
    if zone <= 0:
        raise ValidationError(f"vmap_zone_size is {zone}")
    return (int(addr) // zone) % nr_vmap_nodes(prog)


def _has_nodes(prog: Program) -> bool:
    return "vmap_nodes" in prog.symbols


def _entries(head: Object, name: str) -> Iterator[Object]:
    """A checked list walk; a link into unreadable memory is corruption too."""
    it = list_for_each_entry("struct vmap_area", head, "list", name=name, limit=_MAX_AREAS)
    while True:
        try:
            va = next(it)
            va.va_end.value_()
        except StopIteration:
            return
        except FaultError as e:
            raise ValidationError(f"{name}: a link points to unreadable memory ({e})") from None
        yield va


def _checked_areas(head: Object, name: str) -> Iterator[Object]:
    prev_end = 0
    for va in _entries(head, name):
        start, end = va.va_start.value_(), va.va_end.value_()
        if end <= start or start < prev_end:
            raise ValidationError(
                f"{name}: vmap_area {va.value_():#x} ({start:#x}-{end:#x}) is out of address order "
                f"or empty (previous area ends at {prev_end:#x})"
            )
        prev_end = end
        yield va


def for_each_vmap_area(prog: Program) -> Iterator[Object]:
    """Every busy ``struct vmap_area *``: node by node, each node's list in address order
    (the order of drgn's helper and of /proc/vmallocinfo).

    :raises ValidationError: a broken link, a cycle, or a list out of address order
    """
    if not _has_nodes(prog):
        yield from _checked_areas(prog["vmap_area_list"].address_of_(), "vmap_area_list")
        return
    for i in range(nr_vmap_nodes(prog)):
        yield from _checked_areas(vmap_node(prog, i).busy.head.address_of_(), f"vmap_nodes[{i}].busy list")


def for_each_lazy_vmap_area(prog: Program) -> Iterator[Object]:
    """Every lazily freed ``struct vmap_area *`` waiting for the purge (``vmap_nodes[i].lazy``),
    node by node, as /proc/vmallocinfo's show_purge_info() prints them."""
    if not _has_nodes(prog):
        return
    for i in range(nr_vmap_nodes(prog)):
        yield from _entries(vmap_node(prog, i).lazy.head.address_of_(), f"vmap_nodes[{i}].lazy list")


def _rb_find(prog: Program, root: Object, addr: int, name: str) -> Object:
    """mm/vmalloc.c __find_vmap_area(): the busy area containing ``addr`` in one rb-tree."""
    t = prog.type("struct vmap_area *")
    off = prog.types.struct("vmap_area").offsetof("rb_node")
    n = root.rb_node.value_()
    depth = 0
    lo, hi = 0, 1 << 64  # the keys a node at this position may have
    while n:
        depth += 1
        if depth > _MAX_DEPTH:
            raise ValidationError(f"{name}: rb-tree search for {addr:#x} deeper than {_MAX_DEPTH} (a cycle)")
        va = Object(prog, t, n - off)
        try:
            start, end = va.va_start.value_(), va.va_end.value_()
        except FaultError as e:
            raise ValidationError(f"{name}: rb-tree node {n:#x} is unreadable ({e.message})") from None
        if not lo <= start < end <= hi:
            raise ValidationError(
                f"{name}: vmap_area {n - off:#x} ({start:#x}-{end:#x}) is out of order in the "
                f"rb-tree (its subtree spans {lo:#x}-{hi:#x})"
            )
        if addr < start:
            n, hi = va.rb_node.rb_left.value_(), start
        elif addr >= end:
            n, lo = va.rb_node.rb_right.value_(), end
        else:
            return va
    return NULL(prog, t)


def find_vmap_area(prog: Program, addr: int) -> Object:
    """mm/vmalloc.c ``find_vmap_area()``: the busy area containing ``addr``, searching the
    rb-tree of node ``addr_to_node_id(addr)`` first, then the others in turn (an area may
    start in another node's zone).

    :return: ``struct vmap_area *`` (NULL if none)
    """
    addr = int(addr)
    if not _has_nodes(prog):
        return _rb_find(prog, prog["vmap_area_root"], addr, "vmap_area_root")
    n = nr_vmap_nodes(prog)
    i = j = addr_to_node_id(prog, addr)
    while True:
        va = _rb_find(prog, vmap_node(prog, i).busy.root, addr, f"vmap_nodes[{i}].busy tree")
        if va.value_():
            return va
        i = (i + 1) % n
        if i == j:
            return va


def find_vm_area(prog: Program, addr: int) -> Object:
    """mm/vmalloc.c ``find_vm_area()``: the ``struct vm_struct *`` of the area containing
    ``addr`` (NULL if none, or a vm_map_ram area)."""
    va = find_vmap_area(prog, addr)
    if not va.value_():
        return NULL(prog, "struct vm_struct *")
    return va.vm.read_()


def vmalloc_to_page(prog: Program, addr: int) -> Object:
    """The page mapped at a vmalloc/vmap address (init_mm's page tables).

    :return: ``struct page *``
    :raises FaultError: if the address is not mapped (a guard page, a hole)
    """
    return follow_page(prog, int(addr))


def vmalloc_to_pfn(prog: Program, addr: int) -> Object:
    """The page frame number mapped at a vmalloc/vmap address (init_mm's page tables).

    :return: ``unsigned long``"""
    return page_to_pfn(vmalloc_to_page(prog, addr))


def vmalloc_nr_pages(prog: Program) -> int:
    """mm/vmalloc.c ``vmalloc_nr_pages()``: pages backing vmalloc areas."""
    return prog["nr_vmalloc_pages"].counter.value_()


def gather_virt_u64(prog: Program, vaddrs: np.ndarray) -> np.ndarray:
    """The 64-bit words at many kernel virtual addresses: one translation per distinct 4 KiB
    page, then one vectorised physical gather.

    :raises FaultError: at the first unmapped address
    """
    v = np.asarray(vaddrs, dtype=np.uint64)
    if not len(v):
        return np.zeros(0, dtype=np.uint64)
    pages, inv = np.unique(v >> np.uint64(12), return_inverse=True)
    phys = np.array([prog.translate(int(p) << 12) for p in pages.tolist()], dtype=np.uint64)
    return prog.core.gather_u64(phys[inv] + (v & np.uint64(0xFFF)))


def _vm_pages(prog: Program, vm: Object) -> np.ndarray:
    """``vm->pages[0 .. nr_pages)`` as uint64 ``struct page *`` values."""
    n = vm.nr_pages.value_()
    ptr = vm.pages.value_()
    if not n or not ptr:
        return np.zeros(0, dtype=np.uint64)
    try:
        return np.frombuffer(prog.read(ptr, 8 * n), dtype="<u8").astype(np.uint64)
    except FaultError as e:
        raise FaultError(e.address, f"vm_struct {vm.value_():#x}: pages array unreadable ({e.message})") from None


def vm_area_page_nids(prog: Program, vm: Object, nodes_pgoff: int, nodes_shift: int) -> dict[int, int]:
    """mm/vmalloc.c show_numa_info(): pages of a vm_struct per node, counting every
    ``1 << page_order``-th entry of ``vm->pages`` ``1 << page_order`` times."""
    pages = _vm_pages(prog, vm)
    try:
        order = vm.page_order.value_()
    except AttributeError:
        order = 0
    step = 1 << order
    heads = pages[::step]
    if not len(heads):
        return {}
    flags = gather_virt_u64(prog, heads)
    nids = (flags >> np.uint64(nodes_pgoff)) & np.uint64((1 << nodes_shift) - 1)
    uniq, counts = np.unique(nids, return_counts=True)
    return {int(n): int(c) * step for n, c in zip(uniq.tolist(), counts.tolist())}
