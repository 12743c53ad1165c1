"""Task and address-space helpers named after drgn's (``drgn.helpers.linux.pid``, ``.mm``,
``.fs``): find_task, for_each_vma, vma_find, vma_name, task_rss, task_vsize, get_mm_counter,
d_path.  Every walk is bounded; a corrupt structure raises a reader error in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.maple_tree import mt_for_each
from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr
from mmintro.reader.object import Object, cast
from mmintro.reader.program import Program

__all__ = [
    "TaskRss",
    "boot_cpu_has",
    "boot_cpu_has_bug",
    "d_path",
    "file_dev_ino",
    "find_task",
    "for_each_task",
    "for_each_vma",
    "get_mm_counter",
    "get_mm_counter_sum",
    "get_task_policy",
    "percpu_counter_sum",
    "task_rss",
    "task_vsize",
    "vma_find",
    "vma_is_anonymous",
    "vma_name",
]

# include/linux/mm.h (#defines)
VM_MAYSHARE = 0x80
VM_PFNMAP, VM_IO, VM_DONTEXPAND = 0x400, 0x4000, 0x40000
# include/linux/kdev_t.h: the kernel's dev_t is MAJOR << 20 | MINOR
MINORBITS = 20
_PATH_MAX_DEPTH = 256


def _x86_capability(prog: Program) -> list[int] | None:
    caps = prog.cache.get("task.x86_capability", False)
    if caps is False:
        try:
            caps = [w.value_() for w in prog["boot_cpu_data"].x86_capability]
        except (KeyError, LookupError, AttributeError, FaultError):
            caps = None
        prog.cache["task.x86_capability"] = caps
    return caps  # type: ignore[return-value]


def boot_cpu_has(prog: Program, bit: int) -> bool | None:
    """``boot_cpu_has(bit)``: ``bit`` of ``boot_cpu_data.x86_capability`` (an X86_FEATURE_*
    number of :mod:`mmintro.arch.x86`); None when the snapshot has no ``boot_cpu_data`` (the
    simulator does not model the CPU's features)."""
    caps = _x86_capability(prog)
    if caps is None:
        return None
    return bool(caps[bit // 32] >> (bit % 32) & 1)


def boot_cpu_has_bug(prog: Program, bug: int) -> bool | None:
    """``boot_cpu_has_bug(X86_BUG(bug))``: the bug words follow the NCAPINTS feature words
    (``NCAPINTS = len(x86_capability) - NBUGINTS``, arch/x86/include/asm/cpufeatures.h)."""
    from mmintro.arch.x86 import NBUGINTS

    caps = _x86_capability(prog)
    if caps is None:
        return None
    return boot_cpu_has(prog, (len(caps) - NBUGINTS) * 32 + bug)


def find_task(prog: Program, pid: int) -> Object | None:
    """The ``struct task_struct *`` of ``pid`` on init_task's list (None if there is none).

    Like drgn's ``find_task`` but walking ``init_task.tasks`` (thread-group leaders).
    """
    for t in for_each_task(prog, idle=False):
        if t.pid.value_() == pid:
            return t
    return None


def for_each_vma(mm: Object) -> Iterator[Object]:
    """The VMAs of ``mm`` in address order (``mm->mm_mt``; checked maple-tree walk).

    :param mm: ``struct mm_struct *``
    :return: Iterator of ``struct vm_area_struct *``
    """
    for _first, _last, v in mt_for_each(mm.mm_mt.address_of_()):
        yield cast("struct vm_area_struct *", v)


def vma_find(mm: Object, addr: int) -> Object | None:
    """The VMA containing ``addr`` (None if none)."""
    for v in for_each_vma(mm):
        if v.vm_start.value_() <= addr < v.vm_end.value_():
            return v
    return None


def get_mm_counter(mm: Object, member: str) -> int:
    """``get_mm_counter()``: ``percpu_counter_read_positive(&mm->rss_stat[member])``, i.e. the
    counter's ``count`` with negatives read as 0 (the per-CPU deltas are not folded in).

    :param member: ``"MM_FILEPAGES"``, ``"MM_ANONPAGES"``, ``"MM_SWAPENTS"``, ``"MM_SHMEMPAGES"``
    """
    return max(0, mm.rss_stat[mm.prog_.constant(member).value_()].count.value_())


def percpu_counter_sum(fbc: Object, positive: bool = False) -> int:
    """``__percpu_counter_sum()``: ``count`` plus every online CPU's delta in ``counters``
    (``percpu_counter_sum_positive`` with ``positive``: negatives as 0).

    :param fbc: ``struct percpu_counter *``
    """

    prog = fbc.prog_
    total = fbc.count.value_()
    counters = fbc.counters
    if counters.value_():
        for cpu in for_each_online_cpu(prog):
            total += per_cpu_ptr(counters, cpu)[0].value_()
    return max(0, total) if positive else total


def get_mm_counter_sum(mm: Object, member: str) -> int:
    """``get_mm_counter_sum()``: ``percpu_counter_sum_positive(&mm->rss_stat[member])``."""
    return percpu_counter_sum(mm.rss_stat[mm.prog_.constant(member).value_()].address_of_(), positive=True)


class TaskRss(NamedTuple):
    """Resident pages of a task, like drgn's ``TaskRss``."""

    file: int
    anon: int
    shmem: int
    swap: int

    @property
    def total(self) -> int:
        return self.file + self.anon + self.shmem


def task_rss(task: Object) -> TaskRss:
    """The task's rss counters (``get_mm_counter`` of each; 0 for kernel threads).

    :param task: ``struct task_struct *``
    """
    mm = task.mm
    if not mm.value_():
        return TaskRss(0, 0, 0, 0)
    return TaskRss(
        get_mm_counter(mm, "MM_FILEPAGES"),
        get_mm_counter(mm, "MM_ANONPAGES"),
        get_mm_counter(mm, "MM_SHMEMPAGES"),
        get_mm_counter(mm, "MM_SWAPENTS"),
    )


def task_vsize(task: Object) -> int:
    """``task_vsize()``: ``PAGE_SIZE * mm->total_vm`` (0 without an mm)."""
    mm = task.mm
    return mm.total_vm.value_() * 4096 if mm.value_() else 0


def vma_is_anonymous(vma: Object) -> bool:
    """``vma_is_anonymous()``: no ``vm_ops``.  The simulator may leave ``vm_ops`` NULL on file
    mappings, so a VMA with a ``vm_file`` is never anonymous here."""
    return not vma.vm_ops.value_() and not vma.vm_file.value_()


def _d_unlinked(dentry: Object) -> bool:
    """``d_unlinked()``: unhashed and not a root.  When the snapshot has no dcache hash table
    (``dentry_hashtable``), d_hash is not modelled and an inode without links
    (``i_nlink == 0``: unlinked files, and the pseudo files of shmem and hugetlb mappings,
    which clear_nlink) is what says the dentry is gone."""
    prog = dentry.prog_
    if dentry.d_parent.value_() == dentry.value_():
        return False
    if "dentry_hashtable" in prog.symbols.by_name:
        return not dentry.d_hash.pprev.value_()
    inode = dentry.d_inode
    if not inode.value_():
        return True
    try:
        return inode.__i_nlink.value_() == 0
    except AttributeError:
        return inode.i_nlink.value_() == 0


def _d_dname(dentry: Object, mnt: Object | None) -> str | None:
    """fs/d_path.c d_path()'s pseudo-file case: a dentry whose ``d_op->d_dname`` is set names
    itself unless it is the root of the mount it is seen through (``!IS_ROOT(dentry) ||
    dentry != mnt->mnt_root``).  ``simple_dname`` (d_alloc_pseudo's anon_ops: the files of
    MAP_HUGETLB and shared anonymous mappings) gives "/<name> (deleted)"; other d_dname
    functions (pipes, sockets, ...) are not modelled: None, the walk decides."""
    d_op = dentry.d_op
    if not d_op.value_():
        return None
    fn = d_op.d_dname.value_()
    if not fn:
        return None
    if (
        dentry.d_parent.value_() == dentry.value_()
        and mnt is not None
        and mnt.value_()
        and dentry.value_() == mnt.mnt_root.value_()
    ):
        return None
    try:
        name = dentry.prog_.symbol(fn).name
    except LookupError:
        return None
    if name != "simple_dname":
        return None
    return "/" + dentry.d_name.name.string_(limit=4096).decode(errors="replace") + " (deleted)"


def d_path(file_or_dentry: Object) -> str:
    """The path of a ``struct file *`` (or ``struct dentry *``): the dentry names up to the
    root of its file system, then up through the mounts (``real_mount(mnt)->mnt_mountpoint``),
    with `` (deleted)`` when :func:`_d_unlinked`, as ``d_path()`` prints it.  Bounded depth."""
    prog = file_or_dentry.prog_
    name = (
        file_or_dentry.type_.resolved().target.resolved().name if file_or_dentry.type_.resolved().kind == "ptr" else ""
    )
    if name == "file":
        dentry = file_or_dentry.f_path.dentry
        mnt = file_or_dentry.f_path.mnt
    else:
        dentry, mnt = file_or_dentry, None
    dname = _d_dname(dentry, mnt)
    if dname is not None:
        return dname
    parts: list[bytes] = []
    deleted = False
    d = dentry
    first = True
    mount = None
    if mnt is not None and mnt.value_():
        try:
            mount = Object(prog, prog.type("struct mount *"), mnt.value_() - prog.types.struct("mount").offsetof("mnt"))
        except LookupError:
            mount = None
    for _ in range(_PATH_MAX_DEPTH):
        if not d.value_():
            break
        parent = d.d_parent
        if first:
            deleted = _d_unlinked(d)
            first = False
        if parent.value_() == d.value_():  # the root of this file system: cross the mount
            if mount is None or not mount.value_() or mount.mnt_parent.value_() == mount.value_():
                break
            d = mount.mnt_mountpoint
            mount = mount.mnt_parent
            continue
        parts.append(d.d_name.name.string_(limit=4096))
        d = parent
    else:
        raise ValidationError(f"dentry {dentry.value_():#x}: path deeper than {_PATH_MAX_DEPTH} (a d_parent loop?)")
    path = "/" + "/".join(p.decode(errors="replace") for p in reversed(parts))
    return path + (" (deleted)" if deleted else "")


def file_dev_ino(file: Object) -> tuple[int, int, int]:
    """(major, minor, inode number) of ``file_inode(file)`` (``i_sb->s_dev``, ``i_ino``)."""
    inode = file.f_inode
    dev = inode.i_sb.s_dev.value_()
    return dev >> MINORBITS, dev & ((1 << MINORBITS) - 1), inode.i_ino.value_()


def vma_name(vma: Object, special: dict[int, str] | None = None) -> str:
    """The name /proc/PID/maps shows for ``vma`` (``show_map_vma`` / ``get_vma_name``): the file
    path, ``[vdso]``/``[vvar]``/``[vvar_vclock]`` (``special``: start → name), ``[heap]``,
    ``[stack]``, or ``""``."""
    f = vma.vm_file
    if f.value_():
        try:
            return d_path(f)
        except (FaultError, ValidationError, LookupError):
            return "?"
    start, end = vma.vm_start.value_(), vma.vm_end.value_()
    if special and start in special:
        return special[start]
    mm = vma.vm_mm
    if start <= mm.brk.value_() and end >= mm.start_brk.value_():
        return "[heap]"
    ss = mm.start_stack.value_()
    if start <= ss <= end:
        return "[stack]"
    return ""


def get_task_policy(task: Object) -> Object:
    """``get_task_policy()``: ``task->mempolicy``, else the node's ``preferred_node_policy``
    when its mode is set, else ``&default_policy``.

    :return: ``struct mempolicy *``
    """
    prog = task.prog_
    pol = task.mempolicy
    if pol.value_():
        return pol
    try:
        return prog["default_policy"].address_of_()
    except KeyError:
        return Object(prog, "struct mempolicy *", 0)


def for_each_task(prog: Program, idle: bool = True) -> Iterator[Object]:
    """Every task, as drgn's ``for_each_task`` orders them: the idle tasks (``rq->idle`` of
    each online CPU, pid 0) or ``init_task``, then each pid of ``init_pid_ns.idr`` in
    number order with its PIDTYPE_PID task (``pid_task``) — threads included, which
    ``init_task.tasks`` (thread-group leaders only) would miss.

    :return: Iterator of ``struct task_struct *``
    """
    init = prog["init_task"].address_of_()
    if idle:
        for cpu in for_each_online_cpu(prog):
            yield per_cpu_ptr(prog["runqueues"].address_of_(), cpu).idle
    else:
        yield init
    yield from _pid_tasks(prog)


def _pid_tasks(prog: Program) -> Iterator[Object]:
    """``idr_for_each(&init_pid_ns.idr)`` + ``pid_task(pid, PIDTYPE_PID)``."""
    from mmintro.reader.helpers.xarray import xa_for_each
    from mmintro.reader.object import cast

    task_ptr = prog.type("struct task_struct *")

    ns = prog["init_pid_ns"]
    pidtype = prog.types.const("PIDTYPE_PID")
    links = prog.types.offsetof("task_struct", f"pid_links[{pidtype}]")
    for _nr, entry in xa_for_each(ns.idr.idr_rt.address_of_()):
        pid = cast("struct pid *", entry)
        first = pid.tasks[pidtype].first.value_()
        if first:
            yield Object(prog, task_ptr, first - links)
