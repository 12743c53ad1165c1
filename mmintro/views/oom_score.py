"""/proc/PID/oom_score and /proc/PID/oom_score_adj (fs/proc/base.c, mm/oom_kill.c of 6.18).

``proc_oom_score()``: totalpages = totalram_pages() + total_swap_pages; badness =
oom_badness(task, totalpages); the file shows 0 for a task the OOM killer may not choose
(LONG_MIN), else ``(1000 + badness * 1000 / (long)totalpages) * 2 / 3`` (C's signed division,
truncating toward zero).  ``oom_badness()``: kernel threads and the global init (tgid 1) are
unkillable; the thread group's first thread with an mm counts; oom_score_adj ==
OOM_SCORE_ADJ_MIN, an mm with MMF_OOM_SKIP and a task in vfork are not candidates; otherwise
get_mm_rss() + get_mm_counter(MM_SWAPENTS) + mm_pgtables_bytes() / PAGE_SIZE, plus
oom_score_adj * (totalpages / 1000).  get_mm_counter() reads each rss counter's ``count``
(percpu_counter_read_positive), as 6.18 does.  ``oom_score_adj`` is ``signal->oom_score_adj``.

Everything is read from the dump (simulated or real): the task list, the signal_structs, the
mm's rss_stat and pgtables_bytes, _totalram_pages and total_swap_pages.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.helpers.task import find_task, for_each_task, get_mm_counter
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = ["OomScore", "oom_badness", "oom_score", "oom_scores", "proc_oom_score", "render", "render_table"]

PAGE_SIZE = 4096
LONG_MIN = -(1 << 63)
OOM_SCORE_ADJ_MIN = -1000  # include/uapi/linux/oom.h
PF_KTHREAD = 0x00200000  # include/linux/sched.h
MMF_OOM_SKIP = 21  # include/linux/mm_types.h


class OomScore(NamedTuple):
    """One process's OOM-killer standing."""

    pid: int
    """The task's pid."""
    comm: str
    """Its comm."""
    oom_score: int
    """/proc/PID/oom_score."""
    oom_score_adj: int
    """/proc/PID/oom_score_adj (signal->oom_score_adj)."""
    badness: int | None
    """oom_badness() in pages (None: not a candidate, LONG_MIN in the kernel)."""
    totalpages: int
    """totalram_pages() + total_swap_pages."""


def _threads(task: Object) -> list[Object]:
    """for_each_thread(): the tasks on task->signal->thread_head (bounded)."""
    from mmintro.reader.object import cast

    prog = task.prog_
    sig = task.signal
    if not sig.value_():
        return [task]
    head = sig.thread_head.address_of_().value_()
    off = prog.types.offsetof("task_struct", "thread_node")
    out, p = [], sig.thread_head.next.value_()
    while p != head and len(out) < 1 << 16:
        out.append(cast("struct task_struct *", Object(prog, "unsigned long", p - off)))
        p = prog.read_u64(p)
    return out or [task]


def _mm_flags(mm: Object) -> int:
    f = mm.flags
    try:
        return f.__mm_flags[0].value_()  # 6.18: mm_flags_t (a bitmap)
    except (AttributeError, KeyError, LookupError):
        return f.value_()


def _in_vfork(task: Object) -> bool:
    """in_vfork(): vfork_done set and the parent's mm is the task's."""
    try:
        vd = task.vfork_done.value_()
    except (AttributeError, KeyError, LookupError):
        return False
    return bool(vd) and task.real_parent.mm.value_() == task.mm.value_()


def totalpages(prog: Program) -> int:
    """totalram_pages() + total_swap_pages (ValidationError if that is not a positive count of
    pages a machine can have: the kernel divides by it)."""
    from mmintro.reader.errors import ValidationError

    ram = prog["_totalram_pages"].counter.value_()
    swap = prog["total_swap_pages"].value_()
    if not 0 < ram <= 1 << 52 or not 0 <= swap <= 1 << 52:
        raise ValidationError(f"_totalram_pages {ram} and total_swap_pages {swap}: not counts of pages")
    return ram + swap


def oom_badness(task: Object, total: int) -> int:
    """mm/oom_kill.c oom_badness() (LONG_MIN: not a candidate).

    :param task: ``struct task_struct *``
    """
    if task.tgid.value_() == 1 or task.flags.value_() & PF_KTHREAD:  # oom_unkillable_task()
        return LONG_MIN
    t = next((th for th in _threads(task) if th.mm.value_()), None)  # find_lock_task_mm()
    if t is None:
        return LONG_MIN
    adj = t.signal.oom_score_adj.value_()
    mm = t.mm
    if adj == OOM_SCORE_ADJ_MIN or _mm_flags(mm) >> MMF_OOM_SKIP & 1 or _in_vfork(t):
        return LONG_MIN
    points = (
        sum(get_mm_counter(mm, m) for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES"))
        + get_mm_counter(mm, "MM_SWAPENTS")
        + mm.pgtables_bytes.counter.value_() // PAGE_SIZE
    )
    return points + adj * (total // 1000)


def proc_oom_score(badness: int, total: int) -> int:
    """fs/proc/base.c proc_oom_score()'s arithmetic."""
    if badness == LONG_MIN:
        return 0
    q = abs(badness) * 1000 // total  # badness * 1000 / (long)totalpages, truncated toward zero
    x = 1000 + (q if badness >= 0 else -q)  # >= 1: badness >= -999 * (totalpages / 1000)
    return x * 2 // 3


def oom_score(prog: Program, pid: int) -> OomScore:
    """/proc/PID/oom_score and oom_score_adj of ``pid``; LookupError if there is none."""
    task = find_task(prog, pid)
    if task is None:
        raise LookupError(f"no process {pid} in this dump")
    return _row(task, totalpages(prog))


def _row(task: Object, total: int) -> OomScore:
    from mmintro.reader.validate import check_mm, check_oom_score_adj, note

    note(task.prog_, check_mm(task) + check_oom_score_adj(task))  # the counters and the adj it weighs
    b = oom_badness(task, total)
    sig = task.signal
    adj = sig.oom_score_adj.value_() if sig.value_() else 0
    return OomScore(
        task.pid.value_(),
        task.comm.string_().decode(errors="replace"),
        proc_oom_score(b, total),
        adj,
        None if b == LONG_MIN else b,
        total,
    )


def oom_scores(prog: Program) -> list[OomScore]:
    """Every task of the dump but the idle task (pid order)."""
    total = totalpages(prog)
    return [_row(t, total) for t in for_each_task(prog, idle=False) if t.pid.value_()]


def render(row: OomScore) -> str:
    """cat /proc/PID/oom_score; cat /proc/PID/oom_score_adj"""
    return f"oom_score: {row.oom_score}\noom_score_adj: {row.oom_score_adj}\n"


def render_table(rows: list[OomScore]) -> str:
    out = [f"{'PID':>7} {'OOM_SCORE':>9} {'OOM_SCORE_ADJ':>13} {'BADNESS':>10}  COMM"]
    for r in rows:
        b = "-" if r.badness is None else str(r.badness)
        out.append(f"{r.pid:>7} {r.oom_score:>9} {r.oom_score_adj:>13} {b:>10}  {r.comm}")
    return "\n".join(out) + "\n"
