"""Full /proc/PID/status for simulated tasks, against the real 6.18 guest's own text.

The simulator models what proc_pid_status() reads (mmintro.kernel.cred: init_cred and
copy_creds from the cred cache; init_task.py: init_signals / init_sighand / init_struct_pid,
INIT_RLIMITS and fork_init's max_threads; fork.py: copy_sighand, copy_signal's rlimits and
process group, fs and files; bugs.py: the CPU's speculation bugs and mitigations), so a
simulated process's status has every line the real guest printed for its workload process,
in the same order, and every line that does not depend on what the program did or on the
machine's size is byte-identical.  The lines that differ, and why:

* Name, Tgid, Pid, PPid, NStgid, NSpid: another program with other pids;
* Vm*, Rss*, HugetlbPages, Threads, voluntary/nonvoluntary_ctxt_switches: what each program
  mapped, touched, started and how often it slept;
* SigIgn, SigCgt: the guest's workload ignores SIGINT and SIGQUIT (inherited from busybox's
  shell) and its libc catches signal 33; the simulated program installs no handler;
* SigQ's limit: ``max_threads / 2`` (fork_init), from the free memblock memory at boot, which
  differs between the two kernels' boots (checked against the snapshot's own max_threads);
* x86_Thread_features(_locked): the guest's Debian build has CONFIG_X86_USER_SHADOW_STACK;
  the pinned reference build the simulator lays out (no ``thread.features``) does not.
"""

from __future__ import annotations

import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.cred import CAP_FULL_SET
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save
from mmintro.views import status as status_view
from mmintro.workload import Workload

# lines whose values depend on the program, its pids or the machine (see the module text)
DRIFTS = {
    "Name",
    "Tgid",
    "Pid",
    "PPid",
    "NStgid",
    "NSpid",
    "VmPeak",
    "VmSize",
    "VmLck",
    "VmPin",
    "VmHWM",
    "VmRSS",
    "RssAnon",
    "RssFile",
    "RssShmem",
    "VmData",
    "VmStk",
    "VmExe",
    "VmLib",
    "VmPTE",
    "VmSwap",
    "HugetlbPages",
    "Threads",
    "SigIgn",
    "SigCgt",
    "SigQ",
    "voluntary_ctxt_switches",
    "nonvoluntary_ctxt_switches",
}
CONFIG_ONLY_IN_GUEST = {"x86_Thread_features", "x86_Thread_features_locked"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The guest's machine shape (1 GiB, 2 CPUs): a process with a heap, its fork and a thread."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    w = Workload(k)
    w.spawn("workload", heap=0x100000)
    w.fork("child", "workload")
    w.thread("worker", "workload")
    path = tmp_path_factory.mktemp("status") / "s"
    save(k, path)
    prog = open_snapshot(str(path))
    yield k, w, prog, str(path)
    prog.close()


def _lines(text: str) -> list[tuple[str, str]]:
    return [tuple(ln.split(":\t", 1)) if ":\t" in ln else (ln.rstrip(":"), "") for ln in text.splitlines()]


@pytest.mark.parametrize("role", ["parent", "child"])
def test_simulated_status_has_the_guests_lines_and_values(sim, real_dump, role: str) -> None:  # type: ignore[no-untyped-def]
    _k, w, prog, _ = sim
    want = _lines(real_dump.proc("status", real_dump.pids[role]))
    pid = w.procs["workload" if role == "parent" else "child"].pid
    got = _lines(status_view.render(status_view.status(prog, pid)))
    assert [n for n, _ in got] == [n for n, _ in want if n not in CONFIG_ONLY_IN_GUEST]
    same = [(n, v) for n, v in want if n not in DRIFTS | CONFIG_ONLY_IN_GUEST]
    assert len(same) >= 27
    assert [(n, v) for n, v in got if n not in DRIFTS] == same
    assert dict(got)["SigQ"] == f"0/{prog.read_symbol_u32('max_threads') // 2}"


def test_status_lines_come_from_the_bytes_drgn_reads(sim) -> None:  # type: ignore[no-untyped-def]
    """The credentials, signal handlers and limits are where drgn finds them: each process's
    real_cred is an object of the cred cache, copied from init_cred; a thread shares its leader's
    cred and sighand; a forked process has its own."""
    pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.slab import slab_object_info

    from mmintro.crosscheck import open_drgn

    _k, w, _prog, path = sim
    d = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    init_cred = d["init_cred"]
    assert init_cred.cap_effective.val.value_() == CAP_FULL_SET and init_cred.uid.val.value_() == 0
    assert d["init_task"].real_cred.value_() == d["init_cred"].address_of_().value_()
    tasks = {name: find_task(d, p.pid) for name, p in w.procs.items()}
    for name, t in tasks.items():
        info = slab_object_info(t.real_cred)  # cred_jar (merged into a cache of its size, as SLUB does)
        assert info is not None and info.slab_cache.value_() == d["cred_jar"].value_() and info.allocated, name
        assert t.real_cred.cap_permitted.val.value_() == CAP_FULL_SET
        assert t.real_cred.group_info.value_() == d["init_groups"].address_of_().value_()
        assert t.signal.rlim[11].rlim_cur.value_() == d["max_threads"].value_() // 2  # RLIMIT_SIGPENDING
        assert t.signal.pids[2].value_() == d["init_struct_pid"].address_of_().value_()  # PIDTYPE_PGID
        assert t.fs.umask.value_() == 0o022 and t.files.fdt.max_fds.value_() == 64
    leader, thread, child = tasks["workload"], tasks["worker"], tasks["child"]
    assert thread.real_cred.value_() == leader.real_cred.value_() and thread.sighand.value_() == leader.sighand.value_()
    assert leader.real_cred.usage.counter.value_() == 4  # its own two references and the thread's two
    assert child.real_cred.value_() != leader.real_cred.value_() and child.sighand.value_() != leader.sighand.value_()
    assert leader.sighand.count.refs.counter.value_() == 2


def test_exit_returns_creds_and_sighand(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Exit gives back what fork took: the cred and sighand objects (counted in their caches,
    the cred one merged with others) and init_ucounts' NPROC count."""
    k = boot(MachineConfig(ram=256 << 20, cpus=1))
    w = Workload(k)
    w.spawn("p")
    from mmintro.kernel import slub

    caches = {n: slub.find_cache(k, n) for n in ("cred", "sighand_cache")}
    before = {n: len([a for a, (c, _) in k.slab.live.items() if c is s]) for n, s in caches.items()}
    nproc = k.kmem.get(k.sym("init_ucounts"), "ucounts", f"rlimit[{k.T.const('UCOUNT_RLIMIT_NPROC')}].counter")
    w.fork("c", "p")
    w.thread("t", "c")
    w.exit("c")
    after = {n: len([a for a, (c, _) in k.slab.live.items() if c is s]) for n, s in caches.items()}
    assert after == before
    assert k.kmem.get(k.sym("init_ucounts"), "ucounts", f"rlimit[{k.T.const('UCOUNT_RLIMIT_NPROC')}].counter") == nproc


def test_secondary_idle_tasks_are_task_struct_cache_objects(sim) -> None:  # type: ignore[no-untyped-def]
    """fork_idle: CPU 1's idle task is an object of the task_struct cache (drgn's
    slab_object_info), CPU 0's is init_task in .data; both are their runqueue's idle."""
    pytest.importorskip("drgn")
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.slab import slab_object_info

    from mmintro.crosscheck import open_drgn

    _k, _w, _prog, path = sim
    d = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    idle0 = per_cpu(d["runqueues"], 0).idle
    idle1 = per_cpu(d["runqueues"], 1).idle
    assert idle0.value_() == d["init_task"].address_of_().value_()
    assert slab_object_info(idle0) is None
    info = slab_object_info(idle1)
    assert info is not None and info.slab_cache.name.string_().decode() == "task_struct" and info.allocated
    assert idle1.comm.string_() == b"swapper/1" and idle1.pid.value_() == 0
    assert idle1.real_cred.uid.val.value_() == 0
