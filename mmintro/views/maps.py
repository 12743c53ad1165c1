"""/proc/PID/maps (fs/proc/task_mmu.c show_map_vma) from the snapshot.

Each VMA of ``task->mm`` in address order (``mm->mm_mt``, read with the checked maple-tree
walk): ``%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu `` — start, end, r/w/x from vm_flags, ``s``
for VM_MAYSHARE else ``p``, the file offset (``vm_pgoff << PAGE_SHIFT`` for a file mapping, 0
for anonymous), device and inode (00:00 0 without a file) — then, when the VMA has a name,
spaces up to column 74 and the name.  Names as get_vma_name() gives them for anonymous VMAs:
the vDSO pages by ``mm->context.vdso`` (arch_vma_name / the special mappings' names:
``[vdso]`` at it, ``[vvar_vclock]`` and ``[vvar]`` the special VMAs just below it),
``[heap]`` for a VMA over [start_brk, brk], ``[stack]`` for the one holding start_stack.
File-backed VMAs (paths) come with the page-cache slice: here ``vm_file`` is NULL.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.helpers.maple_tree import mt_for_each
from mmintro.reader.object import Object, cast
from mmintro.reader.program import Program
from mmintro.views.ps import for_each_task

__all__ = ["MapsRow", "maps", "render", "vma_name"]

PAGE_SHIFT = 12
# include/linux/mm.h (#defines)
VM_READ, VM_WRITE, VM_EXEC, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x80
VM_PFNMAP, VM_IO, VM_DONTEXPAND = 0x400, 0x4000, 0x40000
VM_SPECIAL_BITS = VM_PFNMAP | VM_IO | VM_DONTEXPAND


class MapsRow(NamedTuple):
    """One VMA, as its /proc/PID/maps line says."""

    start: int
    end: int
    perms: str
    offset: int
    dev_major: int
    dev_minor: int
    inode: int
    name: str
    vma: int
    """``struct vm_area_struct *``."""


def vma_name(vma: Object, mm: Object, special: dict[int, str]) -> str:
    start, end = vma.vm_start.value_(), vma.vm_end.value_()
    if start in special:
        return special[start]
    if start <= mm.brk.value_() and end >= mm.start_brk.value_():
        return "[heap]"
    ss = mm.start_stack.value_()
    if start <= ss <= end:
        return "[stack]"
    return ""


def _find_task(prog: Program, pid: int) -> Object:
    for t in for_each_task(prog, idle=False):
        if t.pid.value_() == pid:
            return t
    raise LookupError(f"no task with pid {pid}")


def maps(prog: Program, pid: int) -> list[MapsRow]:
    """The maps lines of the process ``pid`` (empty for a task without an mm).

    :raises LookupError: no such pid on the task list
    """
    task = _find_task(prog, pid)
    mm = task.mm
    if not mm.value_():
        return []
    vmas = [cast("struct vm_area_struct *", v) for _f, _l, v in mt_for_each(mm.mm_mt.address_of_())]
    special: dict[int, str] = {}
    vdso = mm.context.vdso.value_()
    by_end = {v.vm_end.value_(): v for v in vmas}
    if vdso:
        special[vdso] = "[vdso]"
        below, names = vdso, ("[vvar_vclock]", "[vvar]")
        for name in names:
            v = by_end.get(below)
            if v is None or not v.vm_flags.value_() & VM_SPECIAL_BITS:
                break
            special[v.vm_start.value_()] = name
            below = v.vm_start.value_()
    rows = []
    for v in vmas:
        f = v.vm_flags.value_()
        perms = ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + ("x" if f & VM_EXEC else "-") + \
            ("s" if f & VM_MAYSHARE else "p")
        has_file = bool(v.vm_file.value_())
        rows.append(MapsRow(v.vm_start.value_(), v.vm_end.value_(), perms,
                            v.vm_pgoff.value_() << PAGE_SHIFT if has_file else 0, 0, 0, 0,
                            vma_name(v, mm, special), v.value_()))
    return rows


def render(rows: list[MapsRow]) -> str:
    out = []
    for r in rows:
        line = f"{r.start:08x}-{r.end:08x} {r.perms} {r.offset:08x} {r.dev_major:02x}:{r.dev_minor:02x} {r.inode} "
        if r.name:
            line = line.ljust(73) + r.name
        out.append(line)
    return "".join(s + "\n" for s in out)
