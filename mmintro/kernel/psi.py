"""Pressure stall information (kernel/sched/psi.c of 6.18), on the simulated clock.

The system-wide group ``psi_system`` (``struct psi_group``) and its per-CPU books
``system_group_pcpu`` (``struct psi_group_cpu``: ``tasks[NR_PSI_TASK_COUNTS]``, ``state_mask``,
``times[NR_PSI_STATES]``, ``state_start``, ``times_prev[NR_PSI_AGGREGATORS][NR_PSI_STATES]``),
kept as the kernel keeps them and written into the snapshot at every sync, so that
``/proc/pressure/memory`` (psi_show), drgn and crash read 6.18's bytes:

* task state changes go through :func:`psi_task_change` / :func:`psi_task_switch` ->
  ``psi_group_change`` (the task counts, ``test_states``, the ``cpu_curr(cpu)->in_memstall`` rule
  that makes a reclaiming CPU FULL, ``record_times``) under the per-CPU ``psi_seq`` seqcount;
* :func:`psi_memstall_enter` / :func:`psi_memstall_leave` mark the stall sections of reclaim,
  compaction and refaults (``task->in_memstall``, ``TSK_MEMSTALL | TSK_MEMSTALL_RUNNING``);
* the aggregation (``get_recent_times``, ``collect_percpu_times``: every CPU's deltas weighted by
  its non-idle time in *jiffies*, as the kernel does) and the running averages (``update_averages``,
  ``calc_avgs``, ``calc_load``/``calc_load_n`` with FSHIFT 11 fixed point and EXP_10s 1677,
  EXP_60s 1981, EXP_300s 2034) run in ``psi_avgs_work``, the delayed work that
  ``psi_group_change`` arms PSI_FREQ = 2*HZ+1 jiffies ahead and that re-arms itself while
  there is activity.  The totals are in ns (``psi_show`` prints them in us).

**The clock.**  PSI reads ``cpu_clock(cpu)`` / ``sched_clock()``; the simulator has one CPU
clock for all CPUs, :func:`local_clock`: the printk clock ``k.clock_ns``, never behind the
machine's uptime (``timekeeping.uptime_ns``).  Time passes either through
``timekeeping.tick(k, seconds)`` (whole jiffies) or through :func:`advance` (nanoseconds: a
caller that models how long its work takes, e.g. reclaim, calls ``advance(k, ns)`` inside the
stall section; jiffies follow).  The delayed work has no thread of its own: each work instance
that fell due runs at its due time whenever PSI is next touched (a state change, :func:`advance`,
or the sync before a snapshot) -- exact, since no PSI state changes between two touches.

**Tasks.**  The simulator runs no scheduler: a task is "running" for PSI only while the simulator
does something on its behalf.  :func:`psi_memstall_enter` on a task that PSI sees asleep first
wakes it on the current CPU (psi_enqueue: ``TSK_RUNNING``; psi_task_switch from the idle task:
``TSK_ONCPU``), and the matching :func:`psi_memstall_leave` puts it back to sleep
(psi_task_switch with sleep: ``TSK_RUNNING | TSK_ONCPU`` cleared); so a stall on an otherwise
idle CPU counts as SOME and FULL, as a lone reclaimer does in the kernel.  A caller that keeps a
task running around a stall (a thrashing process that computes between refaults) uses
:func:`running` (``with psi.running(k, proc.task):`` the task is on the CPU and is
:func:`current`, which psi_memstall_enter/leave take when given no task) or
:func:`psi_task_wakeup` / :func:`psi_task_sleep`.  The idle tasks (pid 0) are ignored, as
psi_task_change ignores them, so a stall must name a task with a pid.

Simplified, and said so: one group (no cgroups: every task is in the root cgroup, whose group is
``psi_system``); no IO or CPU states other than what the tasks above produce; the avgs worker's
own run (microseconds of a kworker) is not a task -- its CPU is re-armed when other tasks are
there (the kernel's ``tasks[] > 1`` with the worker counted); no triggers (``rtpoll_*`` as
group_init leaves them); ``avgs_work`` is written with its list head only (no function pointer,
no timer); kthreads (kswapd, kcompactd) stall only if the caller gives them a task_struct.
``task->psi_flags`` and ``task->in_memstall`` are written at sync for the processes PSI has seen.

**Callers** (direct reclaim's __perform_reclaim, kswapd's balance_pgdat, compaction's
__alloc_pages_direct_compact and kcompactd, a workingset refault's folio wait)::

    flags = psi.psi_memstall_enter(k, task)   # task: struct task_struct *; None: psi.current(k)
    ...                                        # the work; psi.advance(k, ns) for its duration
    psi.psi_memstall_leave(k, task, flags)

    with psi.memstall(k, task, ns): ...        # the same, ns of time passing at the end
    with psi.running(k, proc.task): ...        # a workload step on behalf of proc (it is current)
    psi.pressure(k)["full"]["total"]           # what /proc/pressure/memory would say now (us)

**The build.**  The reference build has CONFIG_PSI with PSI disabled by default
(CONFIG_PSI_DEFAULT_DISABLED, :data:`PSI_DEFAULT_DISABLED`; its /proc/pressure exists because it
booted with ``psi=1``): ``psi=`` on the command line (kstrtobool) decides, and when PSI is off
psi_init enables the ``psi_disabled`` static key, leaves the group as its static initializer
(``.pcpu = &system_group_pcpu``) and every hook returns at once, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "PSI_DEFAULT_DISABLED",
    "advance",
    "calc_load",
    "calc_load_n",
    "fixed_power_int",
    "local_clock",
    "memstall",
    "place_globals",
    "psi_init",
    "psi_memstall_enter",
    "psi_memstall_leave",
    "psi_show",
    "psi_task_sleep",
    "psi_flags_of",
    "psi_task_exit",
    "psi_task_wakeup",
    "pressure",
    "current",
    "running",
]

# CONFIG_PSI_DEFAULT_DISABLED of the reference build: /work/shared/reference/semantics.md
# ("/proc/pressure/memory ... Requires PSI (enabled here with psi=1)").  Debian's 6.18 build has
# it unset (PSI on unless psi=0).
PSI_DEFAULT_DISABLED = True

HZ = kc.HZ
NSEC_PER_SEC = 1_000_000_000
NSEC_PER_USEC = 1000
TICK_NSEC = NSEC_PER_SEC // HZ
# include/linux/sched/loadavg.h
FSHIFT = 11
FIXED_1 = 1 << FSHIFT
# kernel/sched/psi.c
PSI_FREQ = 2 * HZ + 1  # jiffies: 2 s intervals
EXP_10s = 1677  # 1/exp(2s/10s) as fixed-point
EXP_60s = 1981  # 1/exp(2s/60s)
EXP_300s = 2034  # 1/exp(2s/300s)
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
ULONG = U64


def _c(k: Kernel, name: str) -> int:
    return k.T.const(name)


# -- fixed-point arithmetic (include/linux/sched/loadavg.h, include/linux/math.h, loadavg.c) ----
def calc_load(load: int, exp: int, active: int) -> int:
    """calc_load(): ``(load * exp + active * (FIXED_1 - exp)) / FIXED_1``, rounded up while
    the load grows."""
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return (newload & ULONG) // FIXED_1


def fixed_power_int(x: int, frac_bits: int, n: int) -> int:
    """fixed_power_int(): ``x**n`` in fixed point with ``frac_bits``, rounding each product."""
    result = 1 << frac_bits
    if n:
        while True:
            if n & 1:
                result = ((result * x + (1 << (frac_bits - 1))) & ULONG) >> frac_bits
            n >>= 1
            if not n:
                break
            x = ((x * x + (1 << (frac_bits - 1))) & ULONG) >> frac_bits
    return result


def calc_load_n(load: int, exp: int, active: int, n: int) -> int:
    """kernel/sched/loadavg.c calc_load_n(): ``n`` periods of calc_load at once."""
    return calc_load(load, fixed_power_int(exp, FSHIFT, n), active)


def LOAD_INT(x: int) -> int:
    return x >> FSHIFT


def LOAD_FRAC(x: int) -> int:
    return LOAD_INT((x & (FIXED_1 - 1)) * 100)


def nsecs_to_jiffies(n: int) -> int:
    """kernel/time/time.c nsecs_to_jiffies64() for HZ dividing NSEC_PER_SEC."""
    return n // TICK_NSEC


# -- the books -------------------------------------------------------------------------------
@dataclass
class PsiGroupCpu:
    """struct psi_group_cpu."""

    tasks: list[int]
    times: list[int]
    times_prev: list[list[int]]
    state_mask: int = 0
    state_start: int = 0


@dataclass
class PsiGroup:
    """struct psi_group (the parts psi.c keeps for the averages), and the avgs work's timer."""

    pcpu: list[PsiGroupCpu]
    avg_total: list[int]
    total: list[list[int]]
    avg: list[list[int]]
    enabled: bool = False
    avg_last_update: int = 0
    avg_next_update: int = 0
    work_due: int | None = None  # avgs_work pending: when its timer fires (ns on local_clock)
    work_cpu: int = 0  # the CPU it was queued on (system_percpu_wq: the scheduling CPU)


@dataclass
class PsiState:
    """psi.c's globals and the task fields it owns (``psi_flags``, ``in_memstall``), per task."""

    enabled: bool
    group: PsiGroup
    psi_period: int = 0
    seq: list[int] = field(default_factory=list)  # psi_seq per CPU (seqcount_t.sequence)
    psi_flags: dict[int, int] = field(default_factory=dict)  # task -> psi_flags
    in_memstall: dict[int, int] = field(default_factory=dict)  # task -> in_memstall
    task_cpu: dict[int, int] = field(default_factory=dict)  # task -> its CPU
    curr: dict[int, int] = field(default_factory=dict)  # cpu -> the task on it (absent: idle)
    woken_for_stall: set[int] = field(default_factory=set)  # tasks psi_memstall_enter woke
    psi_bug: bool = False


def _psi(k: Kernel) -> PsiState:
    st = k.__dict__.get("psi")
    if st is None:
        raise RuntimeError("psi_init() has not run")
    return st


# -- the clock -------------------------------------------------------------------------------
def local_clock(k: Kernel) -> int:
    """local_clock() / cpu_clock(cpu) / sched_clock() of the simulated machine, in ns: the printk
    clock, never behind the uptime (timekeeping.tick moves the uptime)."""
    from mmintro.kernel.timekeeping import uptime_ns

    if k.__dict__.get("booted"):
        k.clock_ns = max(k.clock_ns, uptime_ns(k))
    return k.clock_ns


def advance(k: Kernel, ns: int) -> int:
    """Let ``ns`` nanoseconds of simulated time pass (the modelled duration of work such as a
    reclaim pass); jiffies (the uptime) follow the CPU clock.  Runs the psi_avgs_work that fell
    due.  Returns the new local_clock."""
    from mmintro.kernel.timekeeping import BOOT_UPTIME_S

    if ns < 0:
        raise ValueError(f"time cannot run backwards ({ns} ns)")
    now = local_clock(k) + int(ns)
    k.clock_ns = now
    if k.__dict__.get("booted"):
        jif = now // TICK_NSEC
        if jif > k.__dict__.setdefault("uptime_jiffies", BOOT_UPTIME_S * HZ):
            k.uptime_jiffies = jif
    st = k.__dict__.get("psi")
    if st is not None and st.enabled:
        _run_due_work(k, now)
    return now


# -- psi_group_change and friends ----------------------------------------------------------------
def test_states(k: Kernel, tasks: list[int], state_mask: int) -> int:
    """test_states(): the states the task counts put this CPU in (``state_mask`` carries PSI_ONCPU)."""
    oncpu = bool(state_mask & (1 << _c(k, "NR_PSI_STATES")))
    NR_IOWAIT, NR_MEMSTALL, NR_RUNNING, NR_MEMSTALL_RUNNING = (
        _c(k, n) for n in ("NR_IOWAIT", "NR_MEMSTALL", "NR_RUNNING", "NR_MEMSTALL_RUNNING")
    )
    if tasks[NR_IOWAIT]:
        state_mask |= 1 << _c(k, "PSI_IO_SOME")
        if not tasks[NR_RUNNING]:
            state_mask |= 1 << _c(k, "PSI_IO_FULL")
    if tasks[NR_MEMSTALL]:
        state_mask |= 1 << _c(k, "PSI_MEM_SOME")
        if tasks[NR_RUNNING] == tasks[NR_MEMSTALL_RUNNING]:
            state_mask |= 1 << _c(k, "PSI_MEM_FULL")
    if tasks[NR_RUNNING] > oncpu:
        state_mask |= 1 << _c(k, "PSI_CPU_SOME")
    if tasks[NR_RUNNING] and not oncpu:
        state_mask |= 1 << _c(k, "PSI_CPU_FULL")
    if tasks[NR_IOWAIT] or tasks[NR_MEMSTALL] or tasks[NR_RUNNING]:
        state_mask |= 1 << _c(k, "PSI_NONIDLE")
    return state_mask


def record_times(k: Kernel, groupc: PsiGroupCpu, now: int) -> None:
    """record_times(): charge the time since ``state_start`` to the states in ``state_mask``
    (u32 deltas and buckets, as the kernel keeps them)."""
    delta = (now - groupc.state_start) & U32
    groupc.state_start = now
    m = groupc.state_mask
    for some, full in (
        ("PSI_IO_SOME", "PSI_IO_FULL"),
        ("PSI_MEM_SOME", "PSI_MEM_FULL"),
        ("PSI_CPU_SOME", "PSI_CPU_FULL"),
    ):
        s, f = _c(k, some), _c(k, full)
        if m & (1 << s):
            groupc.times[s] = (groupc.times[s] + delta) & U32
            if m & (1 << f):
                groupc.times[f] = (groupc.times[f] + delta) & U32
    ni = _c(k, "PSI_NONIDLE")
    if m & (1 << ni):
        groupc.times[ni] = (groupc.times[ni] + delta) & U32


def psi_group_change(k: Kernel, cpu: int, clear: int, set_: int, now: int, wake_clock: bool) -> None:
    """psi_group_change() on psi_system: task counts, then the CPU's new state mask."""
    st = _psi(k)
    group = st.group
    groupc = group.pcpu[cpu]
    nr_states = _c(k, "NR_PSI_STATES")
    TSK_ONCPU = 1 << _c(k, "NR_PSI_TASK_COUNTS")
    PSI_ONCPU = 1 << nr_states
    if clear & TSK_ONCPU:
        state_mask = 0
        clear &= ~TSK_ONCPU
    elif set_ & TSK_ONCPU:
        state_mask = PSI_ONCPU
        set_ &= ~TSK_ONCPU
    else:
        state_mask = groupc.state_mask & PSI_ONCPU
    for t in range(TSK_ONCPU.bit_length()):
        if clear & (1 << t):
            if groupc.tasks[t]:
                groupc.tasks[t] -= 1
            elif not st.psi_bug:
                k.printk(
                    3,
                    f"psi: task underflow! cpu={cpu} t={t} tasks=[{' '.join(map(str, groupc.tasks))}] "
                    f"clear={clear:x} set={set_:x}",
                )
                st.psi_bug = True
    for t in range(TSK_ONCPU.bit_length()):
        if set_ & (1 << t):
            groupc.tasks[t] += 1
    if not group.enabled:
        if groupc.state_mask & (1 << _c(k, "PSI_NONIDLE")):
            record_times(k, groupc, now)
        groupc.state_mask = state_mask
        return
    state_mask = test_states(k, groupc.tasks, state_mask)
    # A memstall is FULL when the CPU is busy reclaiming even if other tasks could run.
    curr = st.curr.get(cpu)
    if state_mask & PSI_ONCPU and curr is not None and st.in_memstall.get(curr):
        state_mask |= 1 << _c(k, "PSI_MEM_FULL")
    record_times(k, groupc, now)
    groupc.state_mask = state_mask
    if wake_clock and group.work_due is None:  # schedule_delayed_work(&group->avgs_work, PSI_FREQ)
        group.work_due = (now // TICK_NSEC + PSI_FREQ) * TICK_NSEC
        group.work_cpu = cpu


def _task_pid(k: Kernel, task: int) -> int:
    return k.kmem.get(task, "task_struct", "pid")


def psi_flags_change(k: Kernel, task: int, clear: int, set_: int) -> None:
    st = _psi(k)
    flags = st.psi_flags.get(task, 0)
    if ((flags & set_) or (flags & clear) != clear) and not st.psi_bug:
        comm_at = k.pa(k.kmem.addr(task, "task_struct", "comm"))
        comm = k.mem.read(comm_at, 16).split(b"\0")[0].decode(errors="replace")
        k.printk(
            3,
            f"psi: inconsistent task state! task={_task_pid(k, task)}:{comm} cpu={st.task_cpu.get(task, 0)} "
            f"psi_flags={flags:x} clear={clear:x} set={set_:x}",
        )
        st.psi_bug = True
    st.psi_flags[task] = (flags & ~clear) | set_


def _write_begin(k: Kernel, cpu: int) -> None:
    _psi(k).seq[cpu] += 1


def _write_end(k: Kernel, cpu: int) -> None:
    _psi(k).seq[cpu] += 1


def psi_task_change(k: Kernel, task: int, clear: int, set_: int) -> None:
    """psi_task_change(): the task's flags, then its CPU's group counts, at cpu_clock(cpu)."""
    st = _psi(k)
    if not _task_pid(k, task):
        return
    cpu = st.task_cpu.setdefault(task, k.current_cpu)
    psi_flags_change(k, task, clear, set_)
    now = local_clock(k)
    _run_due_work(k, now)
    _write_begin(k, cpu)
    psi_group_change(k, cpu, clear, set_, now, True)
    _write_end(k, cpu)


def psi_task_switch(k: Kernel, prev: int | None, next_: int | None, cpu: int, sleep: bool) -> None:
    """psi_task_switch(): ``prev`` leaves ``cpu`` (going to sleep if ``sleep``), ``next_`` gets
    it; None is the CPU's idle task (pid 0, which PSI ignores)."""
    st = _psi(k)
    TSK_ONCPU = 1 << _c(k, "NR_PSI_TASK_COUNTS")
    TSK_RUNNING = 1 << _c(k, "NR_RUNNING")
    TSK_MEMSTALL_RUNNING = 1 << _c(k, "NR_MEMSTALL_RUNNING")
    now = local_clock(k)
    _run_due_work(k, now)
    _write_begin(k, cpu)
    common = False
    if next_ is not None and _task_pid(k, next_):
        psi_flags_change(k, next_, 0, TSK_ONCPU)
        if st.group.pcpu[cpu].state_mask & (1 << _c(k, "NR_PSI_STATES")):
            common = True  # psi_system already has prev's TSK_ONCPU
        else:
            psi_group_change(k, cpu, 0, TSK_ONCPU, now, True)
    if next_ is not None:
        st.curr[cpu] = next_
        st.task_cpu[next_] = cpu
    else:
        st.curr.pop(cpu, None)
    if prev is not None and _task_pid(k, prev):
        clear, set_ = TSK_ONCPU, 0
        if sleep:
            clear |= TSK_RUNNING
            if st.in_memstall.get(prev):
                clear |= TSK_MEMSTALL_RUNNING
            # (prev->in_iowait would set TSK_IOWAIT: the simulator's tasks never sleep in io_schedule)
        psi_flags_change(k, prev, clear, set_)
        if not common:
            psi_group_change(k, cpu, clear, set_, now, True)
        next_flags = st.psi_flags.get(next_, 0) if next_ is not None else 0
        if common and (st.psi_flags[prev] ^ next_flags) & ~TSK_ONCPU:
            psi_group_change(k, cpu, clear & ~TSK_ONCPU, set_, now, True)
    _write_end(k, cpu)


def psi_task_wakeup(k: Kernel, task: int, cpu: int | None = None) -> None:
    """The task wakes on ``cpu`` (default: the current CPU) and runs there: psi_enqueue()
    (``TSK_RUNNING``, and ``TSK_MEMSTALL_RUNNING`` if it sleeps inside a stall section), then,
    if the CPU is idle, psi_task_switch() from the idle task (``TSK_ONCPU``)."""
    st = _psi(k)
    if not st.enabled or not _task_pid(k, task):
        return
    TSK_RUNNING = 1 << _c(k, "NR_RUNNING")
    if st.psi_flags.get(task, 0) & TSK_RUNNING:
        return
    cpu = k.current_cpu if cpu is None else cpu
    st.task_cpu[task] = cpu
    set_ = TSK_RUNNING
    if st.in_memstall.get(task):
        set_ |= 1 << _c(k, "NR_MEMSTALL_RUNNING")
    psi_task_change(k, task, 0, set_)
    if st.curr.get(cpu) is None:
        psi_task_switch(k, None, task, cpu, False)


def psi_task_sleep(k: Kernel, task: int) -> None:
    """The task goes to sleep: psi_task_switch(task, idle, sleep=true) if it is on its CPU (the
    deferred dequeue clears ``TSK_RUNNING``/``TSK_ONCPU``), else psi_dequeue's
    psi_task_change."""
    st = _psi(k)
    if not st.enabled or not _task_pid(k, task):
        return
    TSK_RUNNING = 1 << _c(k, "NR_RUNNING")
    if not st.psi_flags.get(task, 0) & TSK_RUNNING:
        return
    cpu = st.task_cpu.get(task, k.current_cpu)
    if st.curr.get(cpu) == task:
        psi_task_switch(k, task, None, cpu, True)
    else:
        clear = TSK_RUNNING
        if st.in_memstall.get(task):
            clear |= 1 << _c(k, "NR_MEMSTALL_RUNNING")
        psi_task_change(k, task, clear, 0)
    st.woken_for_stall.discard(task)


def current(k: Kernel) -> int | None:
    """``current`` for PSI: the task :func:`running` put on the CPU, else None (the idle task)."""
    return k.__dict__.get("psi_current", {}).get(k.current_cpu)


@contextmanager
def running(k: Kernel, task: int, cpu: int | None = None) -> Iterator[None]:
    """``with running(k, task):`` the task runs on ``cpu`` (default: the current CPU) for the body
    and is ``current`` there (what :func:`psi_memstall_enter` without a task takes): woken
    (:func:`psi_task_wakeup`) at the start, asleep again (:func:`psi_task_sleep`) at the end.  A
    workload step done on behalf of a process is wrapped in it, so that the reclaim or compaction
    deep inside an allocation stalls that process.  Time that passes in the body counts as the
    task running (non-idle)."""
    cpu = k.current_cpu if cpu is None else cpu
    cur = k.__dict__.setdefault("psi_current", {})
    prev = cur.get(cpu)
    cur[cpu] = task
    st = k.__dict__.get("psi")
    woke = st is not None and st.enabled and not st.psi_flags.get(task, 0) & (1 << _c(k, "NR_RUNNING"))
    if woke:
        psi_task_wakeup(k, task, cpu)
    try:
        yield
    finally:
        if woke:
            psi_task_sleep(k, task)
        if prev is None:
            cur.pop(cpu, None)
        else:
            cur[cpu] = prev


def psi_memstall_enter(k: Kernel, task: int | None = None) -> int:
    """psi_memstall_enter(&flags) by ``task`` (a ``struct task_struct *``; None: :func:`current`,
    and nothing is counted when that is the idle task): the start of a memory stall (reclaim,
    compaction, a thrashing refault).  Returns the flags the matching :func:`psi_memstall_leave`
    takes (the task's previous ``in_memstall``: sections nest).  A task PSI sees asleep is woken on
    the current CPU first (see the module's "Tasks")."""
    st = k.__dict__.get("psi")
    if st is None or not st.enabled:  # static_branch_likely(&psi_disabled)
        return 0
    task = current(k) if task is None else task
    if task is None:
        return 0
    flags = st.in_memstall.get(task, 0)
    if flags:
        return flags
    if _task_pid(k, task) and not st.psi_flags.get(task, 0) & (1 << _c(k, "NR_RUNNING")):
        psi_task_wakeup(k, task)
        st.woken_for_stall.add(task)
    st.in_memstall[task] = 1
    psi_task_change(k, task, 0, (1 << _c(k, "NR_MEMSTALL")) | (1 << _c(k, "NR_MEMSTALL_RUNNING")))
    return 0


def psi_memstall_leave(k: Kernel, task: int | None = None, flags: int = 0) -> None:
    """psi_memstall_leave(&flags): the end of the stall section (nothing for a nested one); a
    task that psi_memstall_enter woke goes back to sleep, and a task that slept inside the
    section (:func:`psi_task_sleep`: still TSK_MEMSTALL, no longer running) is woken to leave it
    and sleeps again."""
    st = k.__dict__.get("psi")
    if st is None or not st.enabled or flags:
        return
    task = current(k) if task is None else task
    if task is None or task not in st.in_memstall:  # never entered, or exited since (psi_task_exit)
        return
    if _task_pid(k, task) and not st.psi_flags.get(task, 0) & (1 << _c(k, "NR_RUNNING")):
        # it slept inside the section (e.g. waiting for a refault's read): the kernel's caller
        # is current, so it was woken first (psi_enqueue sets TSK_MEMSTALL_RUNNING again)
        psi_task_wakeup(k, task)
        st.woken_for_stall.add(task)
    st.in_memstall[task] = 0
    psi_task_change(k, task, (1 << _c(k, "NR_MEMSTALL")) | (1 << _c(k, "NR_MEMSTALL_RUNNING")), 0)
    if task in st.woken_for_stall:
        psi_task_sleep(k, task)


def psi_flags_of(k: Kernel, task: int) -> int:
    """``task->psi_flags`` as PSI keeps it (TSK_* bits)."""
    st = k.__dict__.get("psi")
    return st.psi_flags.get(task, 0) if st is not None else 0


def psi_task_exit(k: Kernel, task: int) -> None:
    """The task exits (do_exit's last __schedule: psi_sched_switch with sleep): if PSI sees it
    running it leaves its CPU; PSI forgets it.  A stall section still open (a caller that did not
    leave it; the kernel always does) is closed first, so the CPU's counts do not leak."""
    st = k.__dict__.get("psi")
    if st is None:
        return
    if st.enabled and _task_pid(k, task):
        if st.in_memstall.get(task):
            psi_memstall_leave(k, task, 0)
        psi_task_sleep(k, task)
    for d in (st.psi_flags, st.in_memstall, st.task_cpu):
        d.pop(task, None)
    st.woken_for_stall.discard(task)
    for cpu, t in list(st.curr.items()):
        if t == task:
            del st.curr[cpu]
    cur = k.__dict__.get("psi_current", {})
    for cpu, t in list(cur.items()):
        if t == task:
            del cur[cpu]


@contextmanager
def memstall(k: Kernel, task: int | None = None, ns: int = 0) -> Iterator[None]:
    """``with memstall(k, task, ns):`` psi_memstall_enter, the body, ``ns`` more of simulated time
    (:func:`advance`: the modelled duration of the stalled work), psi_memstall_leave."""
    task = current(k) if task is None else task
    flags = psi_memstall_enter(k, task)
    try:
        yield
        if ns:
            advance(k, ns)
    finally:
        psi_memstall_leave(k, task, flags)


# -- aggregation and averages ----------------------------------------------------------------------
def get_recent_times(
    k: Kernel, cpu: int, aggregator: int, now: int, current_cpu: int, in_avgs_work: bool
) -> tuple[list[int], int]:
    """get_recent_times(): the CPU's state times since this aggregator's last look (the live
    state extrapolated to ``now``), and the states that changed (PSI_STATE_RESCHEDULE for the
    avgs work when the CPU has other tasks)."""
    group = _psi(k).group
    groupc = group.pcpu[cpu]
    nr = _c(k, "NR_PSI_STATES")
    times = list(groupc.times)
    changed = 0
    for s in range(nr):
        if groupc.state_mask & (1 << s):
            times[s] = (times[s] + now - groupc.state_start) & U32
        delta = (times[s] - groupc.times_prev[aggregator][s]) & U32
        groupc.times_prev[aggregator][s] = times[s]
        times[s] = delta
        if delta:
            changed |= 1 << s
    if in_avgs_work:
        if cpu == current_cpu:
            t = groupc.tasks
            # the kernel counts the worker itself and asks for > 1; it is not a task here
            reschedule = t[_c(k, "NR_RUNNING")] + t[_c(k, "NR_IOWAIT")] + t[_c(k, "NR_MEMSTALL")] > 0
        else:
            reschedule = bool(changed & (1 << _c(k, "PSI_NONIDLE")))
        if reschedule:
            changed |= 1 << (nr + 1)  # PSI_STATE_RESCHEDULE
    return times, changed


def collect_percpu_times(k: Kernel, aggregator: int, now: int, current_cpu: int = 0, in_avgs_work: bool = False) -> int:
    """collect_percpu_times(): each CPU's deltas weighted by its non-idle jiffies, folded into
    ``total[aggregator]``.  Returns the changed states."""
    group = _psi(k).group
    nr = _c(k, "NR_PSI_STATES")
    ni = _c(k, "PSI_NONIDLE")
    deltas = [0] * (nr - 1)
    nonidle_total = 0
    changed = 0
    for cpu in range(len(group.pcpu)):
        times, c = get_recent_times(k, cpu, aggregator, now, current_cpu, in_avgs_work)
        changed |= c
        nonidle = nsecs_to_jiffies(times[ni])
        nonidle_total += nonidle
        for s in range(nr - 1):
            deltas[s] += times[s] * nonidle
    for s in range(nr - 1):
        group.total[aggregator][s] = (group.total[aggregator][s] + deltas[s] // max(nonidle_total, 1)) & U64
    return changed


def calc_avgs(avg: list[int], missed_periods: int, time: int, period: int) -> None:
    """calc_avgs(): decay over the missed periods, then sample the last one."""
    if missed_periods:
        avg[0] = calc_load_n(avg[0], EXP_10s, 0, missed_periods)
        avg[1] = calc_load_n(avg[1], EXP_60s, 0, missed_periods)
        avg[2] = calc_load_n(avg[2], EXP_300s, 0, missed_periods)
    pct = (time * 100) // period * FIXED_1
    avg[0] = calc_load(avg[0], EXP_10s, pct)
    avg[1] = calc_load(avg[1], EXP_60s, pct)
    avg[2] = calc_load(avg[2], EXP_300s, pct)


def update_averages(k: Kernel, now: int) -> int:
    """update_averages(): the averages over the periods since the last update; returns the
    next update's time."""
    st = _psi(k)
    group = st.group
    psi_period = st.psi_period
    missed_periods = 0
    expires = group.avg_next_update
    if now - expires >= psi_period:
        missed_periods = (now - expires) // psi_period
    avg_next_update = expires + (1 + missed_periods) * psi_period
    period = now - (group.avg_last_update + missed_periods * psi_period)
    group.avg_last_update = now
    for s in range(_c(k, "NR_PSI_STATES") - 1):
        sample = (group.total[_c(k, "PSI_AVGS")][s] - group.avg_total[s]) & U32
        if sample > period:
            sample = period
        group.avg_total[s] = (group.avg_total[s] + sample) & U64
        calc_avgs(group.avg[s], missed_periods, sample, period)
    return avg_next_update


def psi_avgs_work(k: Kernel, now: int) -> None:
    """psi_avgs_work() at ``now`` (its timer's expiry) on the CPU it was queued on."""
    group = _psi(k).group
    changed = collect_percpu_times(k, _c(k, "PSI_AVGS"), now, group.work_cpu, True)
    if now >= group.avg_next_update:
        group.avg_next_update = update_averages(k, now)
    if changed & (1 << (_c(k, "NR_PSI_STATES") + 1)):
        group.work_due = (now // TICK_NSEC + nsecs_to_jiffies(group.avg_next_update - now) + 1) * TICK_NSEC


def _run_due_work(k: Kernel, now: int) -> None:
    """Run, at their due times, the psi_avgs_work instances that fell due by ``now``."""
    st = k.__dict__.get("psi")
    if st is None or not st.enabled:
        return
    group = st.group
    for _ in range(1 << 24):  # bounded: one work per ~2 s of simulated time
        due = group.work_due
        if due is None or due > now:
            return
        group.work_due = None
        psi_avgs_work(k, due)
    raise RuntimeError("psi: the avgs work did not catch up")


def psi_show(k: Kernel, res: str = "PSI_MEM") -> str:
    """psi_show(): the text of /proc/pressure/<res> read now (it aggregates first, as the
    kernel's does; so reading changes the books, as in the kernel)."""
    st = _psi(k)
    if not st.enabled:
        raise OSError(95, "Operation not supported (PSI is disabled: boot with psi=1)")
    now = local_clock(k)
    _run_due_work(k, now)
    group = st.group
    collect_percpu_times(k, _c(k, "PSI_AVGS"), now)
    if now >= group.avg_next_update:
        group.avg_next_update = update_averages(k, now)
    r = _c(k, res)
    out = []
    for full in range(2):
        avg, total = [0, 0, 0], 0
        if not (res == "PSI_CPU" and full):
            avg = group.avg[r * 2 + full]
            total = group.total[_c(k, "PSI_AVGS")][r * 2 + full] // NSEC_PER_USEC
        out.append(
            f"{'full' if full else 'some'} avg10={LOAD_INT(avg[0])}.{LOAD_FRAC(avg[0]):02d} "
            f"avg60={LOAD_INT(avg[1])}.{LOAD_FRAC(avg[1]):02d} "
            f"avg300={LOAD_INT(avg[2])}.{LOAD_FRAC(avg[2]):02d} total={total}\n"
        )
    return "".join(out)


def pressure(k: Kernel, resource: str = "memory") -> dict[str, dict[str, float | int]]:
    """What reading /proc/pressure/RESOURCE now would print, as numbers, without touching the
    books (psi_show on a copy): ``{"some": {"avg10", "avg60", "avg300" (percent as printed),
    "total" (us)}, "full": {...}}``.  For a scenario's expectations (``full total > 0``)."""
    import copy

    res = {"io": "PSI_IO", "memory": "PSI_MEM", "cpu": "PSI_CPU"}[resource]
    saved = _psi(k)
    k.psi = copy.deepcopy(saved)
    try:
        text = psi_show(k, res)
    finally:
        k.psi = saved
    out: dict[str, dict[str, float | int]] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        vals = dict(f.split("=") for f in fields)
        out[kind] = {n: float(vals[n]) for n in ("avg10", "avg60", "avg300")} | {"total": int(vals["total"])}
    return out


# -- boot and the snapshot ---------------------------------------------------------------------------
def psi_enable_of(cmdline: str) -> bool:
    """setup_psi(): the last ``psi=`` on the command line (kstrtobool), else the build's default."""
    from mmintro.kernel.cmdline import _args, parameq

    enable = not PSI_DEFAULT_DISABLED
    for param, val in _args(cmdline)[0]:
        if parameq(param, "psi") and val is not None:
            b = kstrtobool(val)
            if b is not None:
                enable = b
    return enable


def kstrtobool(s: str) -> bool | None:
    """lib/kstrtox.c kstrtobool(): 1/y/Y/t/T/on, 0/n/N/f/F/off; None when it fails."""
    if not s:
        return None
    c = s[0]
    if c in "yYtT1":
        return True
    if c in "nNfF0":
        return False
    if c in "oO" and len(s) > 1:
        if s[1] in "nN":
            return True
        if s[1] in "fF":
            return False
    return None


def place_globals(k: Kernel) -> None:
    """``psi_system`` (with its static ``.pcpu = &system_group_pcpu``), ``psi_disabled``,
    ``psi_period``; the books are written at every sync."""
    img = k.image
    img.var("psi_system", "data")
    img.var("psi_disabled", "data")
    img.var("psi_period", "data")
    k.sync_hooks.append(write_psi)


def psi_init(k: Kernel) -> None:
    """psi_init() (from sched_init()): with PSI enabled, psi_period = jiffies_to_nsecs(PSI_FREQ)
    and group_init(&psi_system) (avg_last_update = sched_clock(), avg_next_update one period on);
    else the psi_disabled static key."""
    nr = _c(k, "NR_PSI_STATES")
    naggr = _c(k, "NR_PSI_AGGREGATORS")
    ncounts = _c(k, "NR_PSI_TASK_COUNTS")
    cpus = k.config.cpus
    group = PsiGroup(
        pcpu=[PsiGroupCpu([0] * ncounts, [0] * nr, [[0] * nr for _ in range(naggr)]) for _ in range(cpus)],
        avg_total=[0] * (nr - 1),
        total=[[0] * (nr - 1) for _ in range(naggr)],
        avg=[[0, 0, 0] for _ in range(nr - 1)],
    )
    st = PsiState(enabled=psi_enable_of(k.config.cmdline), group=group, seq=[0] * cpus)
    k.psi = st
    if not st.enabled:
        return
    st.psi_period = PSI_FREQ * TICK_NSEC  # jiffies_to_nsecs(PSI_FREQ)
    group.enabled = True
    group.avg_last_update = local_clock(k)
    group.avg_next_update = group.avg_last_update + st.psi_period


def write_psi(k: Kernel) -> None:
    """The sync hook: catch the avgs work up to now, then write psi_system, system_group_pcpu and
    psi_seq of every CPU, psi_period and psi_disabled; and each CPU's ``rq->clock`` (what
    update_rq_clock() last read: the snapshot's now), which a reader of the dump takes as the
    moment of the dump."""
    st = k.__dict__.get("psi")
    if st is None:
        return
    km = k.kmem
    now = local_clock(k)
    if st.enabled:
        _run_due_work(k, now)
    g = k.sym("psi_system")
    group = st.group
    km.set(k.sym("psi_disabled"), "static_key_false", "key.enabled.counter", 0 if st.enabled else 1)
    km.write_u64(k.sym("psi_period"), st.psi_period)
    km.set(g, "psi_group", "pcpu", k.sym("system_group_pcpu"))
    for path in (
        "avg_triggers",
        "rtpoll_triggers",
        "avgs_lock.wait_list",
        "rtpoll_trigger_lock.wait_list",
        "rtpoll_wait.head",
        "avgs_work.work.entry",
    ):
        km.init_list_head(km.addr(g, "psi_group", path))
    for cpu in range(k.config.cpus):
        km.set(k.per_cpu_ptr(k.sym("runqueues"), cpu), "rq", "clock", now)
    if not st.enabled:
        return
    # the task fields psi.c owns, for the tasks alive (0 for one asleep outside any stall)
    for proc in k.__dict__.get("processes", []):
        t = proc.task
        if t in st.psi_flags or t in st.in_memstall:
            km.set(t, "task_struct", "psi_flags", st.psi_flags.get(t, 0))
            km.set(t, "task_struct", "in_memstall", st.in_memstall.get(t, 0))
    km.set(g, "psi_group", "enabled", 1)
    km.set(g, "psi_group", "avg_last_update", group.avg_last_update)
    km.set(g, "psi_group", "avg_next_update", group.avg_next_update)
    km.set(g, "psi_group", "rtpoll_min_period", U32)
    km.set(g, "psi_group", "rtpoll_next_update", U64)
    # Two-dimensional members (total[NR_PSI_AGGREGATORS][NR_PSI_STATES - 1], avg[..][3],
    # times_prev[NR_PSI_AGGREGATORS][NR_PSI_STATES]) are one flat array in the type data.
    nr = _c(k, "NR_PSI_STATES")
    for s in range(nr - 1):
        km.set(g, "psi_group", f"avg_total[{s}]", group.avg_total[s])
        for a in range(len(group.total)):
            km.set(g, "psi_group", f"total[{a * (nr - 1) + s}]", group.total[a][s])
        for w in range(3):
            km.set(g, "psi_group", f"avg[{s * 3 + w}]", group.avg[s][w])
    for cpu, groupc in enumerate(group.pcpu):
        pc = k.per_cpu_ptr(k.sym("system_group_pcpu"), cpu)
        for t, n in enumerate(groupc.tasks):
            km.set(pc, "psi_group_cpu", f"tasks[{t}]", n)
        km.set(pc, "psi_group_cpu", "state_mask", groupc.state_mask)
        for s in range(nr):
            km.set(pc, "psi_group_cpu", f"times[{s}]", groupc.times[s])
            for a in range(len(groupc.times_prev)):
                km.set(pc, "psi_group_cpu", f"times_prev[{a * nr + s}]", groupc.times_prev[a][s])
        km.set(pc, "psi_group_cpu", "state_start", groupc.state_start)
        km.set(k.per_cpu_ptr(k.sym("psi_seq"), cpu), "seqcount", "sequence", st.seq[cpu])
