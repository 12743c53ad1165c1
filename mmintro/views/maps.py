"""/proc/PID/maps (fs/proc/task_mmu.c show_map_vma) from the snapshot.

Each VMA of ``task->mm`` in address order (``mm->mm_mt``, read with the checked maple-tree
walk): ``%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu `` — start, end, r/w/x from vm_flags, ``s``
for VM_MAYSHARE else ``p``, the file offset (``vm_pgoff << PAGE_SHIFT`` for a file mapping, 0
for anonymous), device and inode (00:00 0 without a file) — then, when the VMA has a name,
spaces up to column 74 and the name.  Names as get_vma_name() gives them for anonymous VMAs:
the vDSO pages by ``mm->context.vdso`` (arch_vma_name / the special mappings' names:
``[vdso]`` at it, ``[vvar_vclock]`` and ``[vvar]`` the special VMAs just below it),
``[heap]`` for a VMA over [start_brk, brk], ``[stack]`` for the one holding start_stack.
File-backed VMAs show ``file_inode(vm_file)->i_sb->s_dev`` (major:minor), ``i_ino`` and the
path (``d_path``: dentry names up through the mounts, `` (deleted)`` when unhashed).
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.maple_tree import mt_for_each
from mmintro.reader.helpers.task import d_path, file_dev_ino, for_each_task
from mmintro.reader.object import Object, cast
from mmintro.reader.program import Program

__all__ = ["MapsRow", "get_gate_vma", "maps", "render", "render_line", "task_vmas", "vma_name", "vsyscall_mode"]

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
    if vma.vm_file.value_():
        try:
            return d_path(vma.vm_file)
        except (FaultError, ValidationError, LookupError, AttributeError):
            return "?"
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


def task_vmas(prog: Program, pid: int) -> tuple[Object, Object | None, list[tuple[MapsRow, Object]]]:
    """(task, mm or None, [(maps row, ``struct vm_area_struct *``)]) of the process ``pid``:
    the VMAs of ``mm->mm_mt`` then the gate VMA (``[vsyscall]``) when the snapshot has one.

    :raises LookupError: no such pid on the task list
    """
    task = _find_task(prog, pid)
    mm = task.mm
    if not mm.value_():
        return task, None, []
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
        perms = (
            ("r" if f & VM_READ else "-")
            + ("w" if f & VM_WRITE else "-")
            + ("x" if f & VM_EXEC else "-")
            + ("s" if f & VM_MAYSHARE else "p")
        )
        has_file = bool(v.vm_file.value_())
        major = minor = ino = 0
        if has_file:
            try:
                major, minor, ino = file_dev_ino(v.vm_file)
            except (FaultError, LookupError, AttributeError):
                pass
        rows.append(
            (
                MapsRow(
                    v.vm_start.value_(),
                    v.vm_end.value_(),
                    perms,
                    v.vm_pgoff.value_() << PAGE_SHIFT if has_file else 0,
                    major,
                    minor,
                    ino,
                    vma_name(v, mm, special),
                    v.value_(),
                ),
                v,
            )
        )
    gate = get_gate_vma(prog)
    if gate is not None:
        f = gate.vm_flags.value_()
        perms = (
            ("r" if f & VM_READ else "-")
            + ("w" if f & VM_WRITE else "-")
            + ("x" if f & VM_EXEC else "-")
            + ("s" if f & VM_MAYSHARE else "p")
        )
        rows.append(
            (
                MapsRow(gate.vm_start.value_(), gate.vm_end.value_(), perms, 0, 0, 0, 0, "[vsyscall]", gate.value_()),
                gate,
            )
        )
    return task, mm, rows


def vsyscall_mode(prog: Program) -> int | None:
    """``vsyscall_mode`` (arch/x86/entry/vsyscall/vsyscall_64.c: ``static enum { EMULATE,
    XONLY, NONE } vsyscall_mode``, 4 bytes, a kallsyms symbol of a real kernel), None when the
    snapshot has no such symbol."""
    return prog.read_symbol_u32("vsyscall_mode")


def get_gate_vma(prog: Program) -> Object | None:
    """``get_gate_vma()``: ``&gate_vma`` (arch/x86/entry/vsyscall/vsyscall_64.c), the tail VMA
    m_next() shows after the mm's own (``[vsyscall]``, arch_vma_name), unless ``vsyscall_mode``
    is NONE (CONFIG_LEGACY_VSYSCALL_NONE or ``vsyscall=none``: no gate VMA at all).  A snapshot
    without the ``vsyscall_mode`` symbol (the simulator's) shows the gate when it has it set up
    (vm_start non-zero); None otherwise."""
    if "gate_vma" not in prog.symbols.by_name:
        return None
    mode = vsyscall_mode(prog)
    if mode is not None and mode == prog.types.const("NONE"):  # the anonymous enum's NONE (BTF)
        return None
    try:
        gate = prog["gate_vma"].address_of_()
        return gate if gate.vm_start.value_() else None
    except (KeyError, LookupError, FaultError):
        return None


def maps(prog: Program, pid: int) -> list[MapsRow]:
    """The maps lines of the process ``pid`` (empty for a task without an mm).

    :raises LookupError: no such pid on the task list
    """
    return [r for r, _v in task_vmas(prog, pid)[2]]


def render_line(r: MapsRow) -> str:
    """``show_map_vma``: the header line of one VMA (no newline)."""
    line = f"{r.start:08x}-{r.end:08x} {r.perms} {r.offset:08x} {r.dev_major:02x}:{r.dev_minor:02x} {r.inode} "
    if r.name:
        line = line.ljust(73) + r.name
    return line


def render(rows: list[MapsRow]) -> str:
    return "".join(render_line(r) + "\n" for r in rows)
