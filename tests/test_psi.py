"""Pressure stall information (kernel/sched/psi.c): the simulator's books, the reader's psi_show, a
real 6.18 kernel's /proc/pressure.

* The simulator (mmintro/kernel/psi.py): task counts and state masks after memstall sections
  against 6.18's test_states() rules written out here; stall times, the non-idle weighting in
  jiffies (a stall shorter than a tick on an otherwise idle machine adds nothing to the total,
  as in the kernel), and the running averages against calc_load/calc_load_n/fixed_power_int
  re-implemented here from include/linux/sched/loadavg.h.
* The reader (``mmintro pressure``) on a simulated snapshot: the text the simulator's own
  psi_show prints, the JSON, and the raw books read by real drgn and by crash.
* A real Debian 6.18 guest: ``mmintro pressure`` on its dump against the /proc/pressure files the
  guest printed just before the dump, and against the same numbers computed here from drgn's
  reading of psi_system.  The rule (see :func:`check_against_capture`): the capture's read ran
  psi_show, which aggregated; between it and the VM's stop the kernel ran on for well under a
  second (the capture waits a second before printing, and the harness stops the VM inside it),
  so every total the dump gives (stored, or aggregated at the dump's clock) is at least the
  captured one and at most one second more; the averages are the captured ones unless
  update_averages() ran after the capture's reads -- seen from the dump's avg_last_update
  against a CPU-clock time the capture recorded just before them (its own /proc/self/sched).
"""

from __future__ import annotations

import copy
import re

import pytest
from cli_helpers import run, run_json

from mmintro.kernel import psi, timekeeping
from mmintro.kernel.cmdline import CmdlineError, parse_cmdline
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.fork import spawn_process
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save
from mmintro.views import pressure as pressure_view

MS = 1_000_000
TICK = 4 * MS  # HZ = 250
PERIOD = 501 * TICK  # jiffies_to_nsecs(PSI_FREQ = 2 * HZ + 1)


# -- the kernel's fixed point, written out independently (include/linux/sched/loadavg.h) ----------
def k_calc_load(load: int, exp: int, active: int) -> int:
    newload = load * exp + active * (2048 - exp)
    if active >= load:
        newload += 2047
    return newload // 2048


def k_fixed_power_int(x: int, n: int) -> int:
    result = 2048
    while n:
        if n & 1:
            result = (result * x + 1024) >> 11
        n >>= 1
        if n:
            x = (x * x + 1024) >> 11
    return result


def k_decay(avgs: list[int], missed: int, time_ns: int, period: int) -> list[int]:
    """calc_avgs(): missed periods decay to 0, then one sample of whole percent * FIXED_1."""
    out = []
    for a, e in zip(avgs, (1677, 1981, 2034)):
        if missed:
            a = k_calc_load(a, k_fixed_power_int(e, missed), 0)
        out.append(k_calc_load(a, e, time_ns * 100 // period * 2048))
    return out


def fmt(x: int) -> str:
    return f"{x >> 11}.{((x & 2047) * 100) >> 11:02d}"


def expected_states(tasks: list[int], oncpu: bool, curr_in_memstall: bool) -> set[str]:
    """6.18 test_states() plus psi_group_change()'s cpu_curr(cpu)->in_memstall rule."""
    iowait, memstall, running, memstall_running = tasks
    out = set()
    if iowait:
        out.add("PSI_IO_SOME")
        if not running:
            out.add("PSI_IO_FULL")
    if memstall:
        out.add("PSI_MEM_SOME")
        if running == memstall_running:
            out.add("PSI_MEM_FULL")
    if running > oncpu:
        out.add("PSI_CPU_SOME")
    if running and not oncpu:
        out.add("PSI_CPU_FULL")
    if iowait or memstall or running:
        out.add("PSI_NONIDLE")
    if oncpu and curr_in_memstall:
        out.add("PSI_MEM_FULL")
    return out


def states_of(k, mask: int) -> set[str]:
    names = (
        "PSI_IO_SOME",
        "PSI_IO_FULL",
        "PSI_MEM_SOME",
        "PSI_MEM_FULL",
        "PSI_CPU_SOME",
        "PSI_CPU_FULL",
        "PSI_NONIDLE",
    )
    return {n for n in names if mask & (1 << k.T.const(n))}


def _machine(cmdline: str = "psi=1"):
    k = boot(MachineConfig(ram=1 << 30, cmdline=cmdline))
    return k, spawn_process(k, "stall-a"), spawn_process(k, "stall-b")


# -- the build and the command line ---------------------------------------------------------------
def test_psi_is_off_without_psi_1_and_hooks_do_nothing():
    k, a, _b = _machine("")
    assert psi.PSI_DEFAULT_DISABLED and not k.psi.enabled
    assert psi.psi_memstall_enter(k, a.task) == 0
    psi.advance(k, 10 * MS)
    psi.psi_memstall_leave(k, a.task, 0)
    assert all(c.tasks == [0, 0, 0, 0] and not any(c.times) for c in k.psi.group.pcpu)
    with pytest.raises(OSError, match="PSI is disabled"):
        psi.psi_show(k)


@pytest.mark.parametrize(
    "cmdline,on",
    [
        ("psi=1", True),
        ("psi=0", False),
        ("psi=on", True),
        ("psi=off", False),
        ("psi=y psi=n", False),
        ("", False),
        ("psi=0 psi=Yes", True),
    ],
)
def test_psi_on_the_command_line(cmdline, on):
    assert psi.psi_enable_of(cmdline) is on
    assert not any(u.startswith("psi") for u in parse_cmdline(cmdline).unknown)


def test_psi_bad_value_is_one_line():
    with pytest.raises(CmdlineError, match="psi=maybe: not a boolean"):
        parse_cmdline("psi=maybe")


# -- state changes ------------------------------------------------------------------------------
def test_memstall_on_an_idle_cpu_is_some_and_full():
    k, a, _b = _machine()
    g = k.psi.group
    flags = psi.psi_memstall_enter(k, a.task)
    c = g.pcpu[k.current_cpu]
    # TSK_RUNNING (woken), TSK_MEMSTALL, TSK_MEMSTALL_RUNNING; on the CPU (PSI_ONCPU)
    assert c.tasks == [0, 1, 1, 1]
    assert c.state_mask & (1 << k.T.const("NR_PSI_STATES"))
    assert (
        states_of(k, c.state_mask)
        == expected_states(c.tasks, True, True)
        == {"PSI_MEM_SOME", "PSI_MEM_FULL", "PSI_NONIDLE"}
    )
    assert psi.psi_memstall_enter(k, a.task) == 1  # nested: the section is already open
    psi.advance(k, 100 * MS)
    psi.psi_memstall_leave(k, a.task, 1)  # the nested leave changes nothing
    assert c.tasks == [0, 1, 1, 1]
    psi.psi_memstall_leave(k, a.task, flags)
    assert c.tasks == [0, 0, 0, 0] and c.state_mask == 0
    mem_some, mem_full, nonidle = (k.T.const(n) for n in ("PSI_MEM_SOME", "PSI_MEM_FULL", "PSI_NONIDLE"))
    assert c.times[mem_some] == c.times[mem_full] == c.times[nonidle] == 100 * MS
    assert g.pcpu[1 - k.current_cpu].times == [0] * 7


def test_memstall_beside_a_running_task_is_some_not_full():
    """B runs on the CPU; A stalls runnable beside it: SOME (and CPU SOME), not FULL (the
    running count exceeds the memstall-running count and the CPU's current task is not
    stalled).  Then B leaves: A alone -> FULL by the counts."""
    k, a, b = _machine()
    c = k.psi.group.pcpu[0]
    psi.psi_task_wakeup(k, b.task, 0)
    flags = psi.psi_memstall_enter(k, a.task)
    assert c.tasks == [0, 1, 2, 1]
    assert (
        states_of(k, c.state_mask)
        == expected_states(c.tasks, True, False)
        == {"PSI_MEM_SOME", "PSI_CPU_SOME", "PSI_NONIDLE"}
    )
    psi.advance(k, 30 * MS)
    psi.psi_task_sleep(k, b.task)
    assert c.tasks == [0, 1, 1, 1]
    assert states_of(k, c.state_mask) == expected_states(c.tasks, False, False)
    assert "PSI_MEM_FULL" in states_of(k, c.state_mask)
    psi.advance(k, 20 * MS)
    psi.psi_memstall_leave(k, a.task, flags)
    some, full = k.T.const("PSI_MEM_SOME"), k.T.const("PSI_MEM_FULL")
    assert (c.times[some], c.times[full]) == (50 * MS, 20 * MS)
    assert c.tasks == [0, 0, 0, 0]


def test_a_stall_inside_a_running_step_takes_current():
    """``with psi.running(k, task)``: the step's task is current; a stall deep inside (given no
    task, as an allocator's slow path would) is that task's; running 40 ms around a 10 ms
    stall is 50 ms non-idle, 10 ms SOME and FULL; outside any step nothing is counted."""
    k, a, _b = _machine()
    c = k.psi.group.pcpu[k.current_cpu]
    assert psi.current(k) is None and psi.psi_memstall_enter(k) == 0
    psi.psi_memstall_leave(k)
    with psi.running(k, a.task):
        assert psi.current(k) == a.task and c.tasks == [0, 0, 1, 0]
        psi.advance(k, 20 * MS)
        with psi.memstall(k, ns=10 * MS):
            assert c.tasks == [0, 1, 1, 1]
        psi.advance(k, 20 * MS)
    assert psi.current(k) is None and c.tasks == [0, 0, 0, 0] and not k.psi.psi_bug
    before = k.psi.group.total[0][:]
    assert psi.pressure(k)["full"]["total"] == 10000  # read on a copy: the books stay as they were
    assert k.psi.group.total[0] == before
    some, full, nonidle = (k.T.const(n) for n in ("PSI_MEM_SOME", "PSI_MEM_FULL", "PSI_NONIDLE"))
    assert (c.times[some], c.times[full], c.times[nonidle]) == (10 * MS, 10 * MS, 50 * MS)


def test_a_task_that_exits_running_leaves_no_counts():
    """do_exit of a task PSI sees running (a step's task killed inside it): its CPU's counts
    go back to zero; the survivor's psi_flags are in its task_struct at sync."""
    from mmintro.kernel.exit import do_exit

    k, _init, b = _machine()
    victim = spawn_process(k, "victim")
    with psi.running(k, victim.task):
        psi.advance(k, 10 * MS)
        with psi.memstall(k):
            psi.advance(k, 5 * MS)
            do_exit(k, victim)  # (the kernel's victim leaves the section first; psi closes it)
    psi.psi_task_wakeup(k, b.task)
    k.sync()
    assert (
        k.kmem.get(b.task, "task_struct", "psi_flags")
        == psi.psi_flags_of(k, b.task)
        == ((1 << k.T.const("NR_RUNNING")) | (1 << k.T.const("NR_PSI_TASK_COUNTS")))
    )
    psi.psi_task_sleep(k, b.task)
    k.sync()
    assert k.kmem.get(b.task, "task_struct", "psi_flags") == 0
    assert all(c.tasks == [0, 0, 0, 0] for c in k.psi.group.pcpu) and not k.psi.psi_bug


def test_totals_weight_cpus_by_nonidle_jiffies():
    """collect_percpu_times(): CPU 0 stalls 400 ms, CPU 1 runs 100 ms without stalling; the
    total is (400*400 + 0*100) / (400 + 100) ms of SOME (the non-idle weights in jiffies)."""
    k, a, b = _machine()
    k.on_cpu(0)
    flags = psi.psi_memstall_enter(k, a.task)
    psi.psi_task_wakeup(k, b.task, 1)
    psi.advance(k, 100 * MS)
    psi.psi_task_sleep(k, b.task)
    psi.advance(k, 300 * MS)
    psi.psi_memstall_leave(k, a.task, flags)
    total = pressure_view.parse(psi.psi_show(k), "memory")["memory"]
    nonidle0, nonidle1 = 400 * MS // TICK, 100 * MS // TICK
    want = (400 * MS * nonidle0) // (nonidle0 + nonidle1) // 1000
    assert total["some"]["total"] == total["full"]["total"] == want == 320000


def test_a_stall_shorter_than_a_tick_on_an_idle_machine_adds_nothing():
    """The kernel weights each CPU's stall by its non-idle time in whole jiffies: 3 ms of
    stall and nothing else (HZ=250: 4 ms ticks) gives a weight of 0, so the total stays 0."""
    k, a, _b = _machine()
    with psi.memstall(k, a.task, 3 * MS):
        pass
    assert pressure_view.parse(psi.psi_show(k), "m")["m"]["some"]["total"] == 0
    with psi.memstall(k, a.task, 5 * MS):
        pass  # now 8 ms unfolded on one CPU: two jiffies of weight, all of it stalled
    assert pressure_view.parse(psi.psi_show(k), "m")["m"]["some"]["total"] == 5000


def test_averages_follow_the_kernel_formulas():
    """A 1 s stall; the avgs work fires PSI_FREQ jiffies after it began and finds the
    averages' next update long past (psi_init at boot), so it catches up missed periods and
    samples the last one; it then stops (nothing runs).  Ten seconds later psi_show decays
    them over the missed periods.  Every number is recomputed here."""
    k, a, _b = _machine()
    g = k.psi.group
    init = g.avg_last_update
    t0 = psi.local_clock(k)
    assert t0 % TICK == 0
    with psi.memstall(k, a.task, 1000 * MS):
        pass
    assert g.work_due == t0 + PERIOD
    psi.advance(k, PERIOD)  # the work runs at its due time, inside this
    t1 = t0 + PERIOD
    assert g.work_due is None and g.avg_last_update == t1
    expires = init + PERIOD
    missed = (t1 - expires) // PERIOD
    period = t1 - (init + missed * PERIOD)
    want = k_decay([0, 0, 0], missed, 1000 * MS, period)
    mem_some = k.T.const("PSI_MEM_SOME")
    assert g.avg[mem_some] == want and want[0] > 0
    assert g.avg_next_update == expires + (1 + missed) * PERIOD
    timekeeping.tick(k, 10)
    text = psi.psi_show(k)
    t2 = psi.local_clock(k)
    expires = expires + (1 + missed) * PERIOD  # the avg_next_update the work left
    missed2 = (t2 - expires) // PERIOD
    period2 = t2 - (t1 + missed2 * PERIOD)
    want2 = k_decay(want, missed2, 0, period2)
    assert (
        text.splitlines()[0] == f"some avg10={fmt(want2[0])} avg60={fmt(want2[1])} avg300={fmt(want2[2])} total=1000000"
    )


def test_the_avgs_work_rearms_while_a_task_stalls():
    """A stall across three periods: the work re-arms itself after each run (its CPU has a
    task), nsecs_to_jiffies(avg_next_update - now) + 1 jiffies on; the timeline and the
    averages are replayed here."""
    k, a, _b = _machine()
    g = k.psi.group
    init = g.avg_last_update
    t0 = psi.local_clock(k)
    end = t0 + 3 * PERIOD
    with psi.memstall(k, a.task, 3 * PERIOD):
        pass
    last, nxt, avg, avg_total, runs = init, init + PERIOD, [0, 0, 0], 0, 0
    due = t0 + PERIOD  # schedule_delayed_work(PSI_FREQ) at the first change
    while due <= end:
        runs += 1
        total = due - t0  # one CPU, stalled all along: weight cancels
        if due >= nxt:
            missed = (due - nxt) // PERIOD if due - nxt >= PERIOD else 0
            period = due - (last + missed * PERIOD)
            sample = min(total - avg_total, period)
            avg_total += sample
            avg = k_decay(avg, missed, sample, period)
            nxt, last = nxt + (1 + missed) * PERIOD, due
        due = (due // TICK + (nxt - due) // TICK + 1) * TICK  # the task is still there: re-arm
    assert runs == 3
    assert g.work_due == due and g.avg_last_update == last and g.avg_next_update == nxt
    some, full = (g.avg[k.T.const(n)] for n in ("PSI_MEM_SOME", "PSI_MEM_FULL"))
    assert some == full == avg and avg[0] > avg[1] > avg[2] > 0


# -- the reader on a simulated snapshot ------------------------------------------------------------
@pytest.fixture(scope="module")
def stalled_snapshot(tmp_path_factory):
    k, a, b = _machine()
    with psi.memstall(k, a.task, 700 * MS):
        pass
    timekeeping.tick(k, 1)
    k.on_cpu(1)
    flags = psi.psi_memstall_enter(k, b.task)  # b reclaims on CPU 1: SOME and FULL
    psi.advance(k, 100 * MS)
    psi.psi_task_sleep(k, b.task)  # b waits for a refault's read inside the section
    psi.psi_task_wakeup(k, a.task, 1)  # a runs on CPU 1 meanwhile: SOME, not FULL
    psi.advance(k, 150 * MS)
    psi.psi_task_sleep(k, a.task)
    psi.psi_memstall_leave(k, b.task, flags)
    c1 = k.psi.group.pcpu[1]
    assert (c1.times[k.T.const("PSI_MEM_SOME")], c1.times[k.T.const("PSI_MEM_FULL")]) == (250 * MS, 100 * MS)
    assert not k.psi.psi_bug and all(c.tasks == [0, 0, 0, 0] for c in k.psi.group.pcpu)
    psi.advance(k, 5 * MS)
    k.sync()
    path = tmp_path_factory.mktemp("psi") / "stalled"
    save(k, path)
    return k, str(path), copy.deepcopy(k.psi)  # the books as saved (psi_show changes k's)


def test_mmintro_pressure_prints_the_simulators_psi_show(stalled_snapshot):
    k, path, _saved = stalled_snapshot
    stored = run("pressure", path, "--resource", "all", "--stored").stdout
    out = run("pressure", path, "--resource", "all").stdout
    text = {r: psi.psi_show(k, f"PSI_{r.upper()[:3]}") for r in ("memory", "cpu", "io")}
    assert out == "".join(f"# /proc/pressure/{r}\n{text[r]}" for r in ("memory", "cpu", "io"))
    assert run("pressure", path).stdout == text["memory"]
    mem = pressure_view.parse(text["memory"], "m")["m"]
    assert mem["some"]["total"] > mem["full"]["total"] > 0
    assert pressure_view.parse(stored, "")["memory"]["some"]["total"] <= mem["some"]["total"]
    assert run_json("pressure", path, "--resource", "memory")["memory"] == mem


def test_drgn_reads_the_simulators_books(stalled_snapshot):
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.percpu import per_cpu_ptr

    from mmintro.crosscheck import open_drgn

    _k, path, saved = stalled_snapshot
    dprog = open_drgn(path + ".vmcore", path + ".vmlinux")
    g = dprog["psi_system"]
    assert g.enabled.value_() and dprog["psi_disabled"].key.enabled.counter.value_() == 0
    assert dprog["psi_period"].value_() == PERIOD
    assert g.pcpu.value_() == dprog["system_group_pcpu"].address_
    nr = dprog.constant("NR_PSI_STATES").value_()
    flat = [int(x) for x in _flat(g.total)]
    assert flat == [v for row in saved.group.total for v in row]
    assert [int(x) for x in _flat(g.avg)] == [v for row in saved.group.avg for v in row]
    for cpu, mine in enumerate(saved.group.pcpu):
        c = per_cpu_ptr(g.pcpu, cpu)
        assert [int(x) for x in c.times] == mine.times
        assert c.state_start.value_() == mine.state_start
        assert [int(x) for x in _flat(c.times_prev)] == [v for row in mine.times_prev for v in row]
        assert int(per_cpu_ptr(dprog["psi_seq"].address_of_(), cpu).sequence) == saved.seq[cpu] > 0
        assert len(mine.times) == nr
    del drgn


def test_crash_reads_the_simulators_books(stalled_snapshot):
    """crash 9.0.2's ``p`` of psi_system and of each CPU's system_group_pcpu: the saved books."""
    from mmintro.realkernel.crash import fetch_crash, run_crash

    _k, path, saved = stalled_snapshot
    cmds = ["p psi_system.total", "p psi_system.avg"] + [f"p -d system_group_pcpu:{c}" for c in range(2)]
    r = run_crash(fetch_crash(), path + ".vmlinux", path + ".vmcore", cmds)
    assert r.error() is None, r.error()

    def ints(text: str, name: str) -> list[int]:
        m = re.search(rf"{name} = \{{([^}}]*)\}}", text)
        return [int(x) for x in m.group(1).split(",")]

    assert ints(r[cmds[0]], r"\$\d+") == [v for row in saved.group.total for v in row]
    assert ints(r[cmds[1]], r"\$\d+") == [v for row in saved.group.avg for v in row]
    for cpu, mine in enumerate(saved.group.pcpu):
        out = r[cmds[2 + cpu]]
        assert ints(out, "tasks") == mine.tasks and ints(out, "times") == mine.times
        assert ints(out, "times_prev") == [v for row in mine.times_prev for v in row]
        assert re.search(rf"state_start = {mine.state_start}\b", out)


def _flat(obj):
    """A drgn array, flattened when it is two-dimensional."""
    out = []
    for x in obj:
        if x.type_.kind.name == "ARRAY":
            out.extend(x)
        else:
            out.append(x)
    return out


def test_a_snapshot_taken_inside_a_stall(tmp_path):
    """The machine stops while a task reclaims: its CPU's state is live (state_mask set since
    state_start), and psi_show extrapolates it to the dump's clock (rq->clock)."""
    from mmintro.reader import open_snapshot
    from mmintro.reader.helpers.psi import psi_books

    k, a, _b = _machine()
    start = psi.local_clock(k)
    flags = psi.psi_memstall_enter(k, a.task)
    psi.advance(k, 300 * MS)
    save(k, tmp_path / "inside")
    with open_snapshot(str(tmp_path / "inside")) as prog:
        stop = psi_books(prog).now  # rq->clock as the sync wrote it (a printk or two after the stall)
    assert 0 <= stop - (start + 300 * MS) < MS
    got = run_json("pressure", str(tmp_path / "inside"))["memory"]
    stored = run_json("pressure", str(tmp_path / "inside"), "--stored")["memory"]
    assert got["some"]["total"] == got["full"]["total"] == (stop - start) // 1000
    assert stored["some"]["total"] == 0  # nothing was folded in before the stop
    psi.psi_memstall_leave(k, a.task, flags)


def test_pressure_on_a_snapshot_without_psi_is_one_line(tmp_path):
    k = boot(MachineConfig(ram=1 << 30))
    save(k, tmp_path / "nopsi")
    r = run("pressure", str(tmp_path / "nopsi"), ok=False)
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "PSI is disabled on this kernel" in r.stderr
    r = run("pressure", str(tmp_path / "nopsi"), "--resource", "swap", ok=False)
    assert r.exit_code == 2


# -- a real kernel -------------------------------------------------------------------------------------
def check_against_capture(ref, prog) -> dict:
    """The module's comparison rule, for every /proc/pressure file the guest printed.  Whether
    update_averages() ran after the capture's reads: the capture read its own /proc/self/sched
    just before the pressure files, and its ``se.exec_start`` (rq_clock_task: the CPU clock, this
    build having no IRQ time accounting) is a time at or before those reads; a group whose
    ``avg_last_update`` is not later than that has not updated since, and its averages must be
    the printed ones.  (Otherwise the update may be the capture's own or a later one, and only
    the totals are compared.)"""
    from mmintro.reader.helpers import psi as rpsi

    books = rpsi.psi_books(prog)
    stored = pressure_view.to_json(pressure_view.pressure(prog, pressure_view.RESOURCES, stored=True))
    now = pressure_view.to_json(pressure_view.pressure(prog, pressure_view.RESOURCES))
    captured = {r: pressure_view.parse(ref.proc(f"pressure/{r}"), r)[r] for r in pressure_view.RESOURCES}
    m = re.search(r"^se\.exec_start\s*:\s*(\d+)\.(\d{6})$", ref.proc("self/sched"), re.M)
    before_reads = int(m.group(1)) * 1_000_000 + int(m.group(2))  # SPLIT_NS: ms.nnnnnn
    assert before_reads <= books.now
    updated_after = books.avg_last_update + rpsi.sched_clock_offset(prog) > before_reads
    for r in pressure_view.RESOURCES:
        for kind in ("some", "full"):
            c, s, a = captured[r][kind], stored[r][kind], now[r][kind]
            assert c["total"] <= s["total"] <= a["total"] <= c["total"] + 1_000_000, (r, kind, c, s, a)
            avgs = ("avg10", "avg60", "avg300")
            if not updated_after:
                assert [s[x] for x in avgs] == [c[x] for x in avgs], (r, kind, c, s)
    return {
        "captured": captured,
        "stored": stored,
        "now": now,
        "updated_after": updated_after,
        "before_reads": before_reads,
        "avg_last_update": books.avg_last_update + rpsi.sched_clock_offset(prog),
        "now_ns": books.now,
    }


def drgn_psi_show(dprog, resource_index: int) -> list[tuple[list[int], int]]:
    """psi_show()'s numbers at the dump's clock, from drgn's objects, with the arithmetic of this
    module (not the reader's): [(avg[3], total_us)] for some and full."""
    from drgn import Object
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu, per_cpu_ptr

    g = dprog["psi_system"]
    nr = dprog.constant("NR_PSI_STATES").value_()
    nonidle_state = dprog.constant("PSI_NONIDLE").value_()
    total = [int(x) for x in _flat(g.total)]
    avg = [int(x) for x in _flat(g.avg)]
    avg_total = [int(x) for x in g.avg_total]
    cpus = list(for_each_possible_cpu(dprog))
    offset = 0  # kernel/sched/clock.c: cpu_clock() = sched_clock() + __sched_clock_offset when stable
    try:
        stable = Object(dprog, "struct static_key_false", address=dprog.symbol("__sched_clock_stable").address)
        if stable.key.enabled.counter.value_():
            offset = Object(dprog, "long", address=dprog.symbol("__sched_clock_offset").address).value_()
    except LookupError:
        pass
    pc = {cpu: per_cpu_ptr(g.pcpu, cpu) for cpu in cpus}
    now = max(
        [int(per_cpu(dprog["runqueues"], c).clock) for c in cpus]
        + [int(pc[c].state_start) for c in cpus]
        + [int(g.avg_last_update) + offset]
    )
    deltas, nonidle_total = [0] * (nr - 1), 0
    for cpu in cpus:
        c = pc[cpu]
        times = [int(x) for x in c.times]
        prev = [int(x) for x in _flat(c.times_prev)][:nr]  # times_prev[PSI_AVGS]
        for s in range(nr):
            if int(c.state_mask) & (1 << s):
                times[s] = (times[s] + now - int(c.state_start)) & 0xFFFFFFFF
            times[s] = (times[s] - prev[s]) & 0xFFFFFFFF
        nonidle = times[nonidle_state] // TICK
        nonidle_total += nonidle
        for s in range(nr - 1):
            deltas[s] += times[s] * nonidle
    for s in range(nr - 1):
        total[s] += deltas[s] // max(nonidle_total, 1)
    sched_now = now - offset
    if sched_now >= int(g.avg_next_update):
        expires = int(g.avg_next_update)
        missed = (sched_now - expires) // PERIOD if sched_now - expires >= PERIOD else 0
        period = sched_now - (int(g.avg_last_update) + missed * PERIOD)
        for s in range(nr - 1):
            sample = min((total[s] - avg_total[s]) & 0xFFFFFFFF, period)
            avg[s * 3 : s * 3 + 3] = k_decay(avg[s * 3 : s * 3 + 3], missed, sample, period)
    out = []
    for full in range(2):
        s = resource_index * 2 + full
        if resource_index == 2 and full:
            out.append(([0, 0, 0], 0))
        else:
            out.append((avg[s * 3 : s * 3 + 3], total[s] // 1000))
    return out


def _real(ref):
    from mmintro.reader.dump import open_dump

    return open_dump(ref.path("elf"), ref.vmlinuz)


@pytest.fixture(scope="module")
def real_default_prog(real_dump):
    with _real(real_dump) as prog:
        yield prog


def test_real_kernel_pressure_matches_its_proc(real_dump, real_default_prog):
    got = check_against_capture(real_dump, real_default_prog)
    # the guest booted and ran its workload: the CPU was contended at some point
    assert got["captured"]["cpu"]["some"]["total"] > 0


def test_mmintro_pressure_on_a_real_dump(real_dump, real_default_prog):
    r = run("pressure", str(real_dump.path("elf")), "--kernel", real_dump.vmlinuz, "--resource", "all")
    assert pressure_view.parse(r.stdout) == pressure_view.to_json(
        pressure_view.pressure(real_default_prog, pressure_view.RESOURCES)
    )
    from mmintro.reader.errors import SnapshotError

    with pytest.raises(SnapshotError, match="no /proc/pressure/irq"):  # Debian: no CONFIG_IRQ_TIME_ACCOUNTING
        pressure_view.pressure(real_default_prog, ("irq",))


def _drgn_check(ref, tmp_path_factory):
    pytest.importorskip("drgn")
    from mmintro.crosscheck import open_drgn_real

    vmcore = str(ref.path("elf"))
    debug = tmp_path_factory.mktemp("psi-debuginfo") / "kernel.debug"
    run("debuginfo", "--kernel", ref.vmlinuz, "-o", str(debug), vmcore)
    dprog = open_drgn_real(vmcore, str(debug))
    with _real(ref) as prog:
        mine = pressure_view.to_json(pressure_view.pressure(prog, pressure_view.RESOURCES))
    for i, r in enumerate(("io", "memory", "cpu")):
        assert dprog.constant(f"PSI_{r.upper()[:3]}").value_() == i
        for kind, (avg, total) in zip(("some", "full"), drgn_psi_show(dprog, i)):
            want = {
                "avg10": float(fmt(avg[0])),
                "avg60": float(fmt(avg[1])),
                "avg300": float(fmt(avg[2])),
                "total": total,
            }
            assert mine[r][kind] == want, (r, kind)
    return mine


@pytest.mark.slow
def test_real_kernel_pressure_agrees_with_drgn(real_dump, tmp_path_factory):
    _drgn_check(real_dump, tmp_path_factory)


PRESSURE_GUEST = dict(pressure_hugepages=600, formats=("elf",))


@pytest.fixture(scope="module")
def real_dump_pressure():
    """1 GiB, 2 CPUs, with hugetlb allocations squeezing memory before the capture."""
    from mmintro.realkernel.qemu import GuestConfig, cached_reference_dump

    return cached_reference_dump(GuestConfig(**PRESSURE_GUEST), "real-pressure")


@pytest.mark.slow
def test_real_kernel_memory_pressure(real_dump_pressure, tmp_path_factory):
    with _real(real_dump_pressure) as prog:
        got = check_against_capture(real_dump_pressure, prog)
    mem = got["captured"]["memory"]
    assert mem["some"]["total"] >= mem["full"]["total"] > 0
    _drgn_check(real_dump_pressure, tmp_path_factory)


PSI_OFF_GUEST = dict(append=("psi=0",), formats=("elf",))


@pytest.mark.slow
def test_real_kernel_booted_with_psi_0():
    """Debian's build has PSI on by default; booted with psi=0 it has no /proc/pressure (the
    capture could not open the files) and ``mmintro pressure`` says so in one line."""
    from mmintro.realkernel.qemu import GuestConfig, cached_reference_dump

    ref = cached_reference_dump(GuestConfig(**PSI_OFF_GUEST), "real-psi-off")
    assert "psi=0" in ref.proc("cmdline")
    assert all(ref.proc(f"pressure/{r}") == "" for r in pressure_view.RESOURCES)
    r = run("pressure", str(ref.path("elf")), "--kernel", ref.vmlinuz, ok=False)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("mmintro: error: PSI is disabled on this kernel")
