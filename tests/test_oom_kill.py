"""The OOM killer (mmintro.kernel.oom_kill): victim selection by oom_badness, the report's
lines against 6.18's format strings, the oom_reaper, the oom-kill scenario's expectations,
drgn on its snapshot, and /proc/PID/oom_score against a real 6.18 kernel's."""

from __future__ import annotations

import re

_PCPU_SLACK = 2 * 64  # percpu_counter_batch (max(32, 2 * nr_cpus)) times the CPUs: pages

import pytest

from mmintro.kernel import oom_kill
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.workload import ScenarioError, ScenarioFailed, Workload, parse_scenario, run_scenario

# The format strings of 6.18 (mm/oom_kill.c, mm/show_mem.c), written here as the kernel has
# them, turned into regular expressions: each printed line must match one.
FORMATS = {
    "header": "%s invoked oom-killer: gfp_mask=%#x(%pGg), order=%d, oom_score_adj=%hd",
    "tasks": "Tasks state (memory values in pages):",
    "tasks_head": "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
    "oom_score_adj name",
    "task": "[%7d] %5d %5d %8lu %8lu %8lu %8lu %9lu %8ld %8lu         %5hd %s",
    "victim": "oom-kill:constraint=%s,nodemask=%*pbl,cpuset=%s,mems_allowed=%*pbl,global_oom,task_memcg=%s,"
    "task=%s,pid=%d,uid=%d",
    "killed": "%s: Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB, "
    "UID:%u pgtables:%lukB oom_score_adj:%hd",
    "reaped": "oom_reaper: reaped process %d (%s), now anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB",
    "meminfo": "Mem-Info:",
    "pagecache": "%lu total pagecache pages",
    "ram": "%lu pages RAM",
    "highmem": "%lu pages HighMem/MovableOnly",
    "reserved": "%lu pages reserved",
    "node": "Node %d active_anon:%lukB inactive_anon:%lukB active_file:%lukB inactive_file:%lukB "
    "unevictable:%lukB isolated(anon):%lukB isolated(file):%lukB mapped:%lukB dirty:%lukB "
    "writeback:%lukB shmem:%lukB shmem_thp:%lukB shmem_pmdmapped:%lukB anon_thp:%lukB "
    "kernel_stack:%lukB pagetables:%lukB sec_pagetables:%lukB all_unreclaimable? %s Balloon:%lukB",
}


def _regex(fmt: str) -> re.Pattern[str]:
    """A printf format as a regular expression (widths become right-aligned fields)."""
    out, i = "", 0
    spec = re.compile(r"%(\*?)(-?)(\d*)(hd|ld|lu|d|u|s|#x|pGg|pbl)")
    for m in spec.finditer(fmt):
        out += re.escape(fmt[i : m.start()])
        star, _minus, width, conv = m.groups()
        if conv in ("d", "hd", "ld"):
            body = r"-?\d+"
        elif conv in ("lu", "u"):
            body = r"\d+"
        elif conv == "#x":
            body = r"0x[0-9a-f]+"
        elif conv == "pGg":
            body = r"[A-Z_|a-z0-9]+"
        elif conv == "pbl":
            body = r"(?:\(null\)|[0-9,-]+)"
        else:
            body = r".+?"
        out += (r" *" if width else "") + body
        i = m.end()
    return re.compile(out + re.escape(fmt[i:]) + "$")


def _boot(ram: str = "256M") -> Workload:
    from mmintro.kernel.config import parse_size

    return Workload(boot(MachineConfig(ram=parse_size(ram), nodes=1, cpus=2)))


def _grow(w: Workload, name: str, heap: str, adj: int = 0) -> None:
    from mmintro.kernel.config import parse_size

    w.spawn(name, heap=parse_size(heap), oom_score_adj=adj)
    w.touch(name, "heap", write=True, populate=True)


# -- oom_badness and the choice --------------------------------------------------------------
def test_oom_badness_is_rss_plus_pgtables_plus_scaled_adj() -> None:
    from mmintro.kernel import memory

    w = _boot()
    w.spawn("init")
    _grow(w, "a", "8M")
    k = w.k
    p = w.proc("a")
    total = oom_kill.totalram_pages(k) + oom_kill.total_swap_pages(k)
    rss = memory.get_mm_rss(k, p.mm)
    pt = k.kmem.get(p.mm, "mm_struct", "pgtables_bytes.counter")
    assert rss >= 2048 and pt > 0
    assert oom_kill.oom_badness(k, p.task, total) == rss + pt // 4096
    w.set_oom_score_adj("a", 250)
    assert oom_kill.oom_badness(k, p.task, total) == rss + pt // 4096 + 250 * (total // 1000)
    w.set_oom_score_adj("a", -1000)  # OOM_SCORE_ADJ_MIN: never a candidate
    assert oom_kill.oom_badness(k, p.task, total) == oom_kill.LONG_MIN
    # init (tgid 1) is unkillable whatever it holds
    assert oom_kill.oom_badness(k, w.proc("init").task, total) == oom_kill.LONG_MIN


def test_select_bad_process_prefers_the_highest_badness_and_honours_adj() -> None:
    w = _boot()
    w.spawn("init")
    _grow(w, "big", "32M", adj=0)
    _grow(w, "small", "8M", adj=0)
    k = w.k
    oc = oom_kill.OomControl(nodemask=None, gfp_mask=0, order=0, zonelist=[])
    oc.totalpages = oom_kill.totalram_pages(k)
    oom_kill.select_bad_process(k, oc)
    assert oc.chosen == w.proc("big").task
    w.set_oom_score_adj("big", -500)  # -500 * totalpages/1000 outweighs 8192 pages
    oc = oom_kill.OomControl(nodemask=None, gfp_mask=0, order=0, zonelist=[])
    oc.totalpages = oom_kill.totalram_pages(k)
    oom_kill.select_bad_process(k, oc)
    assert oc.chosen == w.proc("small").task


def test_no_killable_process_panics() -> None:
    w = _boot()
    w.spawn("init")
    _grow(w, "db", "8M", adj=-1000)
    with pytest.raises(oom_kill.OomPanic, match="no killable processes"):
        oom_kill.out_of_memory(w.k, oom_kill.OomControl(nodemask=None, gfp_mask=0xCC0, order=0, zonelist=[]))
    assert "Out of memory and no killable processes..." in w.k.log


# -- the scenario, its report, the reaper ------------------------------------------------------
@pytest.fixture(scope="module")
def oom_run():  # type: ignore[no-untyped-def]
    from mmintro.workload import SCENARIO_DIR, load_scenario

    return run_scenario(load_scenario(SCENARIO_DIR / "oom-kill.toml"))


@pytest.mark.slow
def test_scenario_expectations_hold(oom_run) -> None:  # type: ignore[no-untyped-def]
    text = "\n".join(r.text for r in oom_run.reports)
    assert "killed by the OOM killer" in text
    assert oom_run.workload.killed == {"leaky": 3}
    assert set(oom_run.workload.procs) == {"init", "db"}


@pytest.mark.slow
def test_report_lines_match_the_kernels_format_strings(oom_run) -> None:  # type: ignore[no-untyped-def]
    log = oom_run.kernel.log
    start = next(i for i, ln in enumerate(log) if "invoked oom-killer" in ln)
    end = next(i for i, ln in enumerate(log) if ln.startswith("oom_reaper: reaped"))
    lines = log[start : end + 1]
    regs = {n: _regex(f) for n, f in FORMATS.items()}
    assert regs["header"].match(lines[0]), lines[0]
    assert lines[0].startswith(
        "leaky invoked oom-killer: gfp_mask=0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), order=0, oom_score_adj=0"
    )
    assert lines[1] == "Mem-Info:"
    for name in (
        "tasks",
        "tasks_head",
        "victim",
        "killed",
        "reaped",
        "pagecache",
        "ram",
        "highmem",
        "reserved",
        "node",
    ):
        assert any(regs[name].match(ln) for ln in lines), name
    rows = [ln for ln in lines if regs["task"].match(ln)]
    assert [r.split()[-1] for r in rows] == ["db", "leaky"]  # init (pid 1) is not listed
    # the columns are where the widths put them: "[%7d]" then " %5d %5d"
    assert all(r[0] == "[" and r[8] == "]" for r in rows)
    db = rows[0].split()
    assert db[-2] == "-900"
    victim = next(ln for ln in lines if ln.startswith("oom-kill:"))
    assert victim == (
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,"
        "task_memcg=/,task=leaky,pid=3,uid=0"
    )
    killed = next(ln for ln in lines if "Killed process" in ln)
    assert killed.startswith("Out of memory: Killed process 3 (leaky) total-vm:")
    kb = int(re.search(r"anon-rss:(\d+)kB", killed).group(1))
    leaky_row = rows[1].split()
    assert kb == int(leaky_row[5]) * 4  # rss_anon pages at the report = anon-rss kB at the kill
    # get_mm_counter() reads the percpu counters' count without the CPUs' deltas, as the kernel
    # prints it: what the reaper unmapped may still sit in a CPU's delta (< batch pages a CPU)
    m = re.fullmatch(
        r"oom_reaper: reaped process 3 \(leaky\), now anon-rss:(\d+)kB, file-rss:0kB, shmem-rss:0kB", lines[-1]
    )
    assert m and int(m.group(1)) < 4 * _PCPU_SLACK


@pytest.mark.slow
def test_the_victim_is_gone_and_its_memory_back(oom_run) -> None:  # type: ignore[no-untyped-def]
    k = oom_run.kernel
    kill = oom_kill.kills(k)[0]
    assert (kill.pid, kill.comm, kill.reaped, kill.exited) == (3, "leaky", True, True)
    assert all(t != kill.task for t in oom_kill.for_each_process(k))
    assert oom_kill.kills(k)[0].invoker == "leaky"
    assert sum(c[k.T.const("OOM_KILL")] for c in k.vm_events) == 1
    assert not k.oom.victims and not k.oom.dying and not k.oom.reaper_queue


def test_the_reaper_unmaps_private_anonymous_memory_and_sets_oom_skip() -> None:
    from mmintro.kernel import memory

    w = _boot()
    w.spawn("init")
    _grow(w, "v", "8M")
    k = w.k
    p = w.proc("v")

    def free() -> int:  # buddy + per-CPU lists
        return sum(z.free_pages + sum(c.count for c in z.pcp) for zs in k.zones for z in zs)

    free_before = free()
    anon = memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES")
    oom_kill.do_send_sig_info_sigkill(k, p.task)
    oom_kill.mark_oom_victim(k, p.task)
    oom_kill.queue_oom_reaper(k, p.task)
    assert oom_kill.fatal_signal_pending(k, p.task)
    assert oom_kill.oom_reaper(k) == 1
    assert oom_kill.mm_flags_test(k, oom_kill.MMF_OOM_SKIP, p.mm)
    assert oom_kill.mm_flags_test(k, oom_kill.MMF_UNSTABLE, p.mm)
    assert memory.get_mm_counter_sum(k, p.mm, "MM_ANONPAGES") == 0
    assert free() >= free_before + anon
    assert k.log[-1].startswith(f"oom_reaper: reaped process {p.pid} (v), now anon-rss:0kB")
    # the victim then exits; its mm_struct outlives exit_mmap until the signal_struct goes
    assert oom_kill.oom_victims_run(k, keep_current=False) == [p.pid]
    w._sync_oom_kills()


# -- the workload's steps ------------------------------------------------------------------
def test_a_step_on_a_killed_process_fails_at_load_time() -> None:
    text = (
        '[[step]]\nspawn = "init"\n[[step]]\nspawn = "p"\nheap = "1M"\n[[step]]\ntouch = "heap"\n'
        'process = "p"\nuntil = "oom"\n[[step]]\ntouch = "heap"\nprocess = "p"\n'
    )
    with pytest.raises(ScenarioError, match=r"step 4 \(touch\): process 'p' was killed by the OOM killer at step 3"):
        parse_scenario(text, "bad.toml")
    with pytest.raises(ScenarioError, match="oom_score_adj = 2000 is not an integer in -1000..1000"):
        parse_scenario('[[step]]\nspawn = "p"\noom_score_adj = 2000\n', "bad.toml")
    with pytest.raises(ScenarioError, match="touch's only condition"):
        parse_scenario('[[step]]\nspawn = "p"\n[[step]]\ntouch = "heap"\nuntil = "full"\n', "bad.toml")


def test_touch_until_oom_fails_when_nobody_is_killed() -> None:
    sc = parse_scenario(
        '[machine]\nram = "256M"\n[[step]]\nspawn = "init"\n[[step]]\nspawn = "p"\nheap = "1M"\n'
        '[[step]]\ntouch = "heap"\nprocess = "p"\naccess = "write"\nuntil = "oom"\n',
        "x.toml",
    )
    with pytest.raises(ScenarioFailed, match="did not kill p"):
        run_scenario(sc)


# -- drgn on the scenario's snapshot -------------------------------------------------------------
@pytest.mark.slow
def test_drgn_sees_the_victim_gone_and_the_report(oom_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("drgn")
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.printk import get_dmesg

    from mmintro.crosscheck import open_drgn
    from mmintro.snapshot.writer import save

    base = tmp_path / "oom"
    save(oom_run.kernel, base)
    prog = open_drgn(f"{base}.vmcore", f"{base}.vmlinux")
    comms = {t.comm.string_().decode() for t in for_each_task(prog)}
    assert "db" in comms and "leaky" not in comms
    dmesg = get_dmesg(prog).decode()
    assert "Out of memory: Killed process 3 (leaky)" in dmesg
    assert re.search(r"oom_reaper: reaped process 3 \(leaky\), now anon-rss:\d+kB", dmesg)
    ev = prog["vm_event_states"]
    assert sum(per_cpu(ev, c).event[prog.constant("OOM_KILL")].value_() for c in for_each_online_cpu(prog)) == 1
    # the reader's oom_score of db from the snapshot equals the simulator's
    from mmintro.reader import open_snapshot
    from mmintro.views import oom_score as view

    with open_snapshot(str(base)) as rp:
        row = view.oom_score(rp, 2)
    assert (row.comm, row.oom_score_adj) == ("db", -900)
    assert row.oom_score == oom_run.workload.expect("oom_score('db') >= 0")["oom_score('db')"]


# -- the reader against a real 6.18 kernel -----------------------------------------------------
def test_oom_score_equals_the_real_kernels(real_dump) -> None:  # type: ignore[no-untyped-def]
    """/proc/PID/oom_score and oom_score_adj of each workload process of the real guest (the
    child wrote 300 to its oom_score_adj) equal what mmintro computes from the dump."""
    from mmintro.reader.dump import open_dump
    from mmintro.views import oom_score as view

    prog = open_dump(str(real_dump.path("elf")), real_dump.vmlinuz)
    try:
        adjs = set()
        for role, pid in real_dump.pids.items():
            row = view.oom_score(prog, pid)
            assert f"{row.oom_score}\n" == real_dump.proc("oom_score", pid), role
            assert f"{row.oom_score_adj}\n" == real_dump.proc("oom_score_adj", pid), role
            adjs.add(row.oom_score_adj)
        assert adjs == {0, 300}
    finally:
        prog.close()
