"""Processes like crash's ``ps``: the idle task of each CPU, then every task on
``init_task.tasks`` (kernel/fork.c links each new thread-group leader there), read only from
the snapshot.

Columns as crash prints them: PID, PPID (``task->parent->pid``), CPU (``task_cpu()`` = ``task->thread_info.cpu``), TASK,
ST (crash's two-letter state of ``__state``/``exit_state``), %MEM (RSS of total RAM), VSZ
(``mm->total_vm`` in KiB) and RSS (crash's get_task_mem_usage: ``percpu_counter_sum_positive``
of ``mm->rss_stat[MM_FILEPAGES..MM_SHMEMPAGES]``, in KiB); kernel threads (no mm) show
``[comm]``.  ``>`` marks a task that is ``rq->curr`` on its CPU.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr
from mmintro.reader.helpers.task import for_each_task
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.reader.validate import check_mm, note

__all__ = ["PsRow", "crash_task_rss", "for_each_task", "get_mm_rss", "ps", "render", "task_state"]

PAGE_SIZE = 4096
# include/linux/sched.h (#defines): the state bits crash's task_state_string() decodes
_STATES = (
    (0x0001, "IN"),
    (0x0002, "UN"),
    (0x0004, "ST"),
    (0x0008, "TR"),
    (0x0040, "DE"),
    (0x0080, "WA"),
    (0x0100, "WA"),
    (0x0200, "PA"),
    (0x0400, "NE"),
)
EXIT_DEAD = 0x0010
EXIT_ZOMBIE = 0x0020
TASK_NOLOAD = 0x0400
TASK_IDLE = 0x0002 | TASK_NOLOAD  # TASK_UNINTERRUPTIBLE | TASK_NOLOAD
PF_KTHREAD = 0x00200000


class PsRow(NamedTuple):
    """One task."""

    active: bool
    """``rq->curr`` of its CPU (crash's ``>``)."""
    pid: int
    ppid: int
    """``task->parent->pid``."""
    cpu: int
    task: int
    """``struct task_struct *``."""
    state: str
    """crash's state: RU, IN, UN, ST, TR, ZO, DE, ID, ..."""
    pmem: float
    """RSS as a percentage of the page frames below high_memory (crash's %MEM)."""
    vsz: int
    """``mm->total_vm`` in KiB."""
    rss: int
    """Resident pages in KiB."""
    comm: str
    """``task->comm``, in brackets for kernel threads."""


def task_state(task: Object) -> str:
    """crash's task_state_string(): exit_state first, then the lowest state bit."""
    exit_state = task.exit_state.value_()
    if exit_state & EXIT_ZOMBIE:
        return "ZO"
    if exit_state & EXIT_DEAD:
        return "DE"
    state = task.__state.value_()
    if state == 0:
        return "RU"
    if state & TASK_IDLE == TASK_IDLE:
        return "ID"
    for bit, name in _STATES:
        if state & bit:
            return name
    return "??"


def get_mm_rss(mm: Object) -> int:
    """get_mm_rss(): the sum of get_mm_counter() over MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES
    (percpu_counter_read_positive: the counter's ``count``, negatives as 0), in pages."""
    prog = mm.prog_
    rss = 0
    for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"):
        rss += max(0, mm.rss_stat[prog.constant(name).value_()].count.value_())
    return rss


def crash_task_rss(mm: Object) -> int:
    """crash's get_task_mem_usage() on 6.2+: ``percpu_counter_sum_positive`` of the file, anon
    and shmem rss counters (per-CPU deltas folded in), in pages."""
    from mmintro.reader.helpers.task import percpu_counter_sum

    prog = mm.prog_
    return sum(
        percpu_counter_sum(mm.rss_stat[prog.constant(m).value_()].address_of_(), positive=True)
        for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES")
    )


def ps(prog: Program) -> list[PsRow]:
    # crash's get_task_mem_usage(): %MEM = rss * 100 / vt->total_pages, the page frames below
    # high_memory (vm_init: BTOP(VTOP(high_memory))), not totalram_pages
    total = (prog["high_memory"].value_() - prog["page_offset_base"].value_()) // prog.page_size
    curr = {per_cpu_ptr(prog["runqueues"].address_of_(), c).curr.value_() for c in for_each_online_cpu(prog)}
    rows = []
    for t in for_each_task(prog):
        mm = t.mm
        comm = t.comm.string_().decode(errors="replace")
        if not mm.value_() or t.flags.value_() & PF_KTHREAD:
            comm, vsz, rss = f"[{comm}]", 0, 0
        else:
            vsz, rss = mm.total_vm.value_() * PAGE_SIZE // 1024, crash_task_rss(mm)
            note(prog, check_mm(t))  # total_vm within the user address space, RSS counters
        rows.append(
            PsRow(
                t.value_() in curr,
                t.pid.value_(),
                t.parent.pid.value_(),
                t.thread_info.cpu.value_(),
                t.value_(),
                task_state(t),
                rss * 100 / total if total else 0.0,
                vsz,
                rss * PAGE_SIZE // 1024,
                comm,
            )
        )
    return rows


def render(rows: list[PsRow]) -> str:
    """crash 9's show_ps() and show_ps_data(): ``"%7ld %7ld %3s  %s %3s"``, the state padded to 5,
    ``%.1f`` in 4 columns, ``"%8ld %8ld  "`` and the command."""
    out = ["      PID    PPID  CPU       TASK        ST  %MEM      VSZ      RSS  COMM"]
    for r in rows:
        pad = " " if len(r.state) > 3 else "  "
        out.append(
            f"{'> ' if r.active else '  '}{r.pid:7d} {r.ppid:7d} {r.cpu:>3}  {r.task:016x} {r.state:>3}{pad}"
            f"{f'{r.pmem:.1f}':>4} {r.vsz:8d} {r.rss:8d}  {r.comm}"
        )
    return "\n".join(out) + "\n"
