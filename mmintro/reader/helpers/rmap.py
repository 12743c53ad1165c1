"""Who maps this page: the reverse-map walk of mm/rmap.c (6.18) over a snapshot.

* :func:`rmap_walk` -- ``rmap_walk()``: an anonymous folio (``folio->mapping`` has
  ``FOLIO_MAPPING_ANON``) goes through ``rmap_walk_anon()`` -- ``folio_anon_vma()``, then
  ``anon_vma_interval_tree_foreach()`` over ``anon_vma->rb_root`` (anon_vma_chains keyed by
  their VMA's [vm_pgoff, vm_pgoff + vma_pages - 1], augmented by ``rb_subtree_last``); a file
  folio through ``rmap_walk_file()`` -- ``vma_interval_tree_foreach()`` over
  ``mapping->i_mmap`` (VMAs through ``vma->shared.rb``).  The query is the one page's pgoff
  (``folio->index`` + its offset in the folio), its address ``vma_address()`` (as
  ``page_address_in_vma()``), and the VMA counts only if its mm's page tables map this pfn
  there (``page_vma_mapped_walk()``'s check).
* The interval-tree iteration is ``ITPREFIX_iter_first`` / ``ITPREFIX_iter_next`` /
  ``ITPREFIX_subtree_search`` of include/linux/interval_tree_generic.h, bounded: a node that
  cannot be read, a step budget used up (a cycle) or a NULL ``rb_leftmost`` under a non-empty
  tree raises :class:`ValidationError` in one line.
* A mm's tasks come from one pass over ``for_each_task`` (threads included).

KSM folios (``FOLIO_MAPPING_KSM``) are not modelled and map to no one here.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.mm import compound_head, follow_pfn, page_to_pfn, pfn_to_page
from mmintro.reader.object import Object, cast
from mmintro.reader.program import Program

__all__ = ["RmapHit", "mm_tasks", "rmap_walk", "rmap_walk_pfn"]

# include/linux/page-flags.h (#defines)
FOLIO_MAPPING_ANON = 0x1
FOLIO_MAPPING_KSM = 0x3
FOLIO_MAPPING_FLAGS = 0x3
PAGE_SHIFT = 12  # arch/x86/include/asm/page_types.h
_STEP_LIMIT = 1 << 16  # interval-tree steps of one walk before it is called a cycle
_M64 = (1 << 64) - 1


class RmapHit(NamedTuple):
    """One mapping of the page: the tasks using ``mm`` (pids, comms), the mm, the VMA and the
    user address."""

    pids: tuple[int, ...]
    comms: tuple[str, ...]
    mm: Object
    vma: Object
    address: int


def mm_tasks(prog: Program) -> dict[int, list[tuple[int, str]]]:
    """mm address -> [(pid, comm)] of every task using it (one pass over ``for_each_task``;
    ``mm->owner`` needs CONFIG_MEMCG and names only one task)."""
    got = prog.cache.get("rmap.mm_tasks")
    if got is None:
        from mmintro.reader.helpers.task import for_each_task

        got = {}
        for t in for_each_task(prog, idle=False):
            mm = t.mm.value_()
            if mm:
                got.setdefault(mm, []).append((t.pid.value_(), t.comm.string_().decode(errors="replace")))
        prog.cache["rmap.mm_tasks"] = got
    return got


class _IntervalTree:
    """INTERVAL_TREE_DEFINE's iteration (include/linux/interval_tree_generic.h) over a
    ``struct rb_root_cached`` in the snapshot, with a step budget."""

    def __init__(self, prog: Program, root: int, rb_off: int, sub_off: int, start_last, name: str) -> None:
        self.prog, self.root, self.rb_off, self.sub_off = prog, root, rb_off, sub_off
        self.start_last = start_last  # object address -> (start, last)
        self.name = name
        self.steps = 0
        t = prog.types
        self.left = t.offsetof("rb_node", "rb_left")
        self.right = t.offsetof("rb_node", "rb_right")
        self.parent = t.offsetof("rb_node", "__rb_parent_color")
        self.leftmost = t.offsetof("rb_root_cached", "rb_leftmost")

    def _read(self, addr: int, what: str) -> int:
        self.steps += 1
        if self.steps > _STEP_LIMIT:
            raise ValidationError(f"{self.name}: interval-tree walk did not end after {_STEP_LIMIT} steps (a cycle)")
        if addr & 7 or addr < 1 << 63:
            raise ValidationError(f"{self.name}: {what} pointer {addr:#x} is not a kernel address")
        try:
            return self.prog.read_u64(addr)
        except FaultError as e:
            raise ValidationError(f"{self.name}: {what} at {addr:#x} is unreadable ({e.message})") from None

    def _node(self, node: int, field: int) -> int:
        return self._read(node + field, f"rb_node {node:#x}")

    def _sub(self, node: int) -> int:
        return self._read(node - self.rb_off + self.sub_off, f"rb_node {node:#x}")

    def _interval(self, node: int) -> tuple[int, int]:
        self._read(node, f"rb_node {node:#x}")  # the node itself must be readable
        try:
            return self.start_last(node - self.rb_off)
        except FaultError as e:
            raise ValidationError(f"{self.name}: the object of rb_node {node:#x} is unreadable ({e.message})") from None

    def _subtree_search(self, node: int, start: int, last: int) -> int:
        """ITPREFIX_subtree_search()."""
        while True:
            left = self._node(node, self.left)
            if left and start <= self._sub(left):
                node = left
                continue
            s, l_ = self._interval(node)
            if s <= last:
                if start <= l_:
                    return node
                right = self._node(node, self.right)
                if right:
                    node = right
                    if start <= self._sub(node):
                        continue
            return 0

    def _iter_first(self, start: int, last: int) -> int:
        node = self._read(self.root, "rb_root")
        if not node or self._sub(node) < start:
            return 0
        leftmost = self._read(self.root + self.leftmost, "rb_leftmost")
        if not leftmost:
            raise ValidationError(f"{self.name}: rb_leftmost is NULL in a non-empty tree")
        if self._interval(leftmost)[0] > last:
            return 0
        return self._subtree_search(node, start, last)

    def _iter_next(self, node: int, start: int, last: int) -> int:
        r = self._node(node, self.right)
        while True:
            if r and start <= self._sub(r):
                return self._subtree_search(r, start, last)
            while True:  # climb while we came from the right
                parent = self._node(node, self.parent) & ~3
                if not parent:
                    return 0
                prev, node = node, parent
                r = self._node(node, self.right)
                if prev != r:
                    break
            s, l_ = self._interval(node)
            if last < s:
                return 0
            if start <= l_:
                return node

    def foreach(self, start: int, last: int) -> list[int]:
        """The objects (not rb_nodes) overlapping [start, last], in tree order."""
        out = []
        node = self._iter_first(start, last)
        while node:
            out.append(node - self.rb_off)
            node = self._iter_next(node, start, last)
        return out


def _vma_pgoff_range(prog: Program, vma: int) -> tuple[int, int]:
    """[vm_pgoff, vm_pgoff + vma_pages(vma) - 1] (avc_start_pgoff/avc_last_pgoff,
    vma_start_pgoff/vma_last_pgoff of mm/interval_tree.c)."""
    v = prog.object("struct vm_area_struct", vma)
    pgoff = v.vm_pgoff.value_()
    return pgoff, pgoff + ((v.vm_end.value_() - v.vm_start.value_()) >> PAGE_SHIFT) - 1


def _vma_address(vma: Object, pgoff: int) -> int | None:
    """mm/internal.h vma_address(vma, pgoff, 1) (None for -EFAULT)."""
    vp = vma.vm_pgoff.value_()
    if pgoff < vp:
        return None
    a = vma.vm_start.value_() + ((pgoff - vp) << PAGE_SHIFT)
    return a if vma.vm_start.value_() <= a < vma.vm_end.value_() else None


def rmap_walk(page: Object) -> list[RmapHit]:
    """mm/rmap.c rmap_walk() for one page: every (tasks, mm, vma, address) whose page tables
    map it, found from the folio alone (anon_vma or i_mmap interval tree).

    :param page: ``struct page *``
    :raises ValidationError: a corrupt anon_vma / i_mmap tree (one line)
    """
    prog = page.prog_
    pfn = page_to_pfn(page).value_()
    folio = compound_head(page)
    head_pfn = page_to_pfn(folio).value_()
    try:
        f = cast("struct folio *", folio)
        mapping = f.mapping.value_()
        index = f.index.value_()
    except FaultError as e:
        raise ValidationError(f"struct page of pfn {pfn:#x} is unreadable ({e.message})") from None
    if not mapping:
        return []
    pgoff = index + (pfn - head_pfn)
    t = prog.types
    if mapping & FOLIO_MAPPING_ANON:
        if mapping & FOLIO_MAPPING_FLAGS == FOLIO_MAPPING_KSM:
            return []
        av = mapping & ~FOLIO_MAPPING_FLAGS
        avc_vma = t.offsetof("anon_vma_chain", "vma")

        def avc_range(avc: int) -> tuple[int, int]:
            return _vma_pgoff_range(prog, prog.read_u64(avc + avc_vma))

        tree = _IntervalTree(
            prog,
            av + t.offsetof("anon_vma", "rb_root"),
            t.offsetof("anon_vma_chain", "rb"),
            t.offsetof("anon_vma_chain", "rb_subtree_last"),
            avc_range,
            f"anon_vma {av:#x} (pfn {pfn:#x})",
        )
        vmas = [tree._read(a + avc_vma, f"anon_vma_chain {a:#x}") for a in tree.foreach(pgoff, pgoff)]
    else:
        tree = _IntervalTree(
            prog,
            mapping + t.offsetof("address_space", "i_mmap"),
            t.offsetof("vm_area_struct", "shared.rb"),
            t.offsetof("vm_area_struct", "shared.rb_subtree_last"),
            lambda v: _vma_pgoff_range(prog, v),
            f"address_space {mapping:#x} i_mmap (pfn {pfn:#x})",
        )
        vmas = tree.foreach(pgoff, pgoff)
    owners = mm_tasks(prog)
    out = []
    for va in vmas:
        vma = prog.object("struct vm_area_struct *", value=va)
        try:
            addr = _vma_address(vma, pgoff)
            mm = vma.vm_mm
            if addr is None or not mm.value_():
                continue
            try:  # page_vma_mapped_walk(): does this mm map our pfn at addr?
                if follow_pfn(mm, addr).value_() != pfn:
                    continue
            except FaultError:
                continue
        except FaultError as e:
            raise ValidationError(
                f"vm_area_struct {va:#x} on the rmap of pfn {pfn:#x} is unreadable ({e.message})"
            ) from None
        tasks = owners.get(mm.value_(), [])
        out.append(RmapHit(tuple(p for p, _c in tasks), tuple(c for _p, c in tasks), mm, vma, addr))
    return out


def rmap_walk_pfn(prog: Program, pfn: int) -> list[RmapHit]:
    """:func:`rmap_walk` of ``pfn_to_page(pfn)``."""
    return rmap_walk(pfn_to_page(prog, pfn))
