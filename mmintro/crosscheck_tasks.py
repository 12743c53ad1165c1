"""Crosscheck rows for processes (kernel/fork.c, mm/mmap.c): mmintro's reader and views
against real drgn's stock helpers and crash commands.  :mod:`mmintro.crosscheck` appends
:data:`TASK_CHECKS` to its CHECKS."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mmintro.reader.helpers.maple_tree import mt_for_each
from mmintro.reader.object import cast
from mmintro.reader.program import Program
from mmintro.views import ps as ps_view

__all__ = ["TASK_CHECKS", "c_crash_ps_p", "c_find_task", "c_for_each_task", "c_for_each_vma"]


def _my_tasks(p: Program) -> list[tuple[int, str, int]]:
    return sorted((int(t.pid.value_()), t.comm.string_().decode(), int(t.value_()))
                  for t in ps_view.for_each_task(p, idle=False) if int(t.pid.value_()))


def c_for_each_task(p: Program, d: Any) -> tuple:
    """drgn's for_each_task(idle=True) (the idle tasks, then init_pid_ns.idr + pid_task) =
    mmintro's idle tasks then init_task.tasks."""
    from drgn.helpers.linux.pid import for_each_task

    return ([(int(t.pid.value_()), t.comm.string_().decode(), int(t.value_())) for t in ps_view.for_each_task(p)],
            [(t.pid.value_(), t.comm.string_().decode(), t.value_()) for t in for_each_task(d, idle=True)])


def c_find_task(p: Program, d: Any) -> tuple:
    """drgn's find_task(pid) (find_pid in the idr, pid_task) for every pid we list."""
    from drgn.helpers.linux.pid import find_task

    mine = [(pid, task) for pid, _c, task in _my_tasks(p)]
    mine.append((max([0] + [pid for pid, _t in mine]) + 1, 0))  # an unused pid: NULL
    return mine, [(pid, find_task(d, pid).value_()) for pid, _t in mine]


def c_for_each_vma(p: Program, d: Any) -> tuple:
    """drgn.helpers.linux.mm.for_each_vma(mm) = our maple-tree walk of mm->mm_mt, per process."""
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task

    mine: list = [("init_mm", [int(e.value_()) for _f, _l, e in mt_for_each(p["init_mm"].mm_mt.address_of_())])]
    theirs: list = [("init_mm", [v.value_() for v in for_each_vma(d["init_mm"].address_of_())])]
    for pid, _c, _t in _my_tasks(p):
        t = next(x for x in ps_view.for_each_task(p, idle=False) if int(x.pid.value_()) == pid)
        mine.append((pid, [(int(v.vm_start.value_()), int(v.vm_end.value_()), int(v.vm_flags.value_()))
                           for v in (cast("struct vm_area_struct *", e)
                                     for _f, _l, e in mt_for_each(t.mm.mm_mt.address_of_()))]
                     if t.mm.value_() else []))
        dt = find_task(d, pid)
        theirs.append((pid, [(v.vm_start.value_(), v.vm_end.value_(), v.vm_flags.value_())
                             for v in for_each_vma(dt.mm)] if dt.mm else []))
    return mine, theirs


_PS_P = re.compile(r'PID:\s+(\d+)\s+TASK:\s+([0-9a-f]+)\s+CPU:\s+(\d+)\s+COMMAND:\s+"(.*)"')


def c_crash_ps_p(p: Program, d: Any) -> tuple:
    """``crash ps -p PID`` (the parent chain down from swapper/0) = the chain mmintro's ps
    rows give by following PPID, for every process.  (Plain ``crash ps`` needs
    ``task_state_array``, which the image does not have yet.)"""
    from mmintro.crosscheck import crash

    rows = ps_view.ps(p)
    boot = rows[0]  # swapper/0, init_task
    by_pid = {r.pid: r for r in rows if r.pid}

    def chain(r: ps_view.PsRow) -> list[tuple[int, int, int, str]]:
        out = []
        while True:
            out.append((r.pid, r.task, r.cpu, r.comm.strip("[]")))
            if r.task == boot.task:
                return out[::-1]
            r = by_pid.get(r.ppid, boot) if r.pid else boot

    # ps -p 0 gives one chain per idle task (init_task's, then init_task -> each other idle task)
    mine = [[t for r in rows if not r.pid for t in chain(r)]] + [chain(by_pid[pid]) for pid in sorted(by_pid)]
    theirs = [[(int(m[1]), int(m[2], 16), int(m[3]), m[4])
               for m in (_PS_P.search(line) for line in crash(d, f"ps -p {pid}").splitlines()) if m]
              for pid in [0] + sorted(by_pid)]
    return mine, theirs


TASK_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_task: pids, comms, tasks", c_for_each_task),
    ("find_task on every pid", c_find_task),
    ("for_each_vma per mm: start/end/flags", c_for_each_vma),
    ("crash ps -p = ps parent chains", c_crash_ps_p),
]
