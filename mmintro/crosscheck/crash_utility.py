"""Cross-check mmintro's reports against the real crash utility (crash 9) on the same snapshot.

Each row names the crash commands it needs; every command of every row runs in one crash session
in batch mode (:func:`mmintro.realkernel.crash.run_crash`, under a timeout), and each row compares
the numbers crash printed with mmintro's report of the same thing (meminfo, buddyinfo, zoneinfo,
slabinfo, kmem-s, vmallocinfo, vmstat, ps, vm, vtop, whatis, page, swaps).  crash knows nothing of the
simulator: it reads the vmlinux and the vmcore as it reads a kernel's.

Where crash 9.0.2 and the kernel's own /proc legitimately differ, the row compares what crash
computes and says so in its name:

* ``kmem -i`` COMMITTED is ``vm_committed_as.count`` (percpu_counter_read); /proc/meminfo's
  Committed_AS sums the per-CPU deltas (vm_memory_committed).
* ``kmem -s`` ALLOCATED counts every object not on a slab's freelist, so objects held in the
  per-CPU sheaves of 6.18 (vm_area_struct, maple_node) count as allocated, as /proc/slabinfo's
  active_objs does; ``mmintro kmem-s`` counts them exactly, as free.
* ``sys`` DATE: crash 9.0.2 looks for ``timekeeper``/``shadow_timekeeper``, which 6.13 folded into
  ``tk_core``; it prints the epoch on any 6.13+ kernel (fixed after 9.0.2).
* ``mount`` searches pid 1, 2, ... for a task to take the mount namespace from, without end: on a
  snapshot with no process the row is not applicable and the command is not run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mmintro.crosscheck.answers import answer_text
from mmintro.crosscheck.crash_context import _NA, CrashCheck, _context, _Ctx
from mmintro.crosscheck.crash_mm import (
    kmem_addr_cmds,
    kmem_addr_cmp,
    kmem_f_cmp,
    kmem_h_cmp,
    kmem_i_cmp,
    kmem_n_cmp,
    kmem_p_cmp,
    kmem_S_cmds,
    kmem_S_cmp,
    kmem_s_cmp,
    kmem_V_cmp,
    kmem_v_cmp,
    kmem_z_cmp,
    node_data_cmp,
    struct_page_cmds,
    struct_page_cmp,
    swap_cmp,
    vtop_cmds,
    vtop_cmp,
)
from mmintro.crosscheck.crash_system import log_cmp, rd_cmp, sys_cmds, sys_cmp
from mmintro.crosscheck.crash_tasks import (
    files_cmds,
    files_cmp,
    mount_cmds,
    mount_cmp,
    ps_cmp,
    vm_cmds,
    vm_cmp,
    vm_p_cmp,
)
from mmintro.crosscheck.drgn import CheckResult, Progress
from mmintro.crosscheck.drgn import _diff as _list_diff
from mmintro.reader import open_snapshot

__all__ = [
    "CRASH_CHECKS",
    "CrashCheck",
    "CrashStartError",
    "crash_commands",
    "run_crash_crosscheck",
    "select_crash_checks",
]


def _diff(a: Any, b: Any) -> str:
    """The first difference: of a key for dicts (missing on one side, or unequal values)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in b:
                return f"{answer_text(key)}: only in mmintro ({answer_text(a[key])})"
            if key not in a:
                return f"{answer_text(key)}: only in crash ({answer_text(b[key])})"
            if a[key] != b[key]:
                return f"{answer_text(key)}: " + _diff(a[key], b[key])
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"part {i}: " + _diff(x, y)
    return _list_diff(a, b)


CRASH_CHECKS: list[CrashCheck] = [
    CrashCheck("crash sys = uname, CPUs, tasks, uptime, panic message", sys_cmds, sys_cmp),
    CrashCheck("crash kmem -i = meminfo (COMMITTED = vm_committed_as.count)", lambda c: ["kmem -i"], kmem_i_cmp),
    CrashCheck("crash kmem -f = buddyinfo, zone free pages", lambda c: ["kmem -f"], kmem_f_cmp),
    CrashCheck("crash kmem -z = zoneinfo", lambda c: ["kmem -z"], kmem_z_cmp),
    CrashCheck("crash kmem -n = nodes, zones, memory sections", lambda c: ["kmem -n"], kmem_n_cmp),
    CrashCheck("crash kmem -s = kmem-s (ALLOCATED + objects in sheaves)", lambda c: ["kmem -s"], kmem_s_cmp),
    CrashCheck("crash kmem -S CACHE = allocated objects", kmem_S_cmds, kmem_S_cmp),
    CrashCheck("crash kmem -v = vmallocinfo areas", lambda c: ["kmem -v"], kmem_v_cmp),
    CrashCheck("crash kmem -V = vmstat", lambda c: ["kmem -V"], kmem_V_cmp),
    CrashCheck("crash kmem -p = page (count, samples)", lambda c: ["kmem -p"], kmem_p_cmp),
    CrashCheck("crash kmem -h = hstates", lambda c: ["kmem -h"], kmem_h_cmp),
    CrashCheck("crash kmem ADDR = whatis (page, slab object)", kmem_addr_cmds, kmem_addr_cmp),
    CrashCheck("crash ps = mmintro ps", lambda c: ["ps"], ps_cmp),
    CrashCheck("crash vm PID = mmintro vm", vm_cmds, vm_cmp),
    CrashCheck("crash vm -p PID = vtop of each page", vm_cmds, vm_p_cmp),
    CrashCheck("crash vtop / vtop -c PID = mmintro vtop", vtop_cmds, vtop_cmp),
    CrashCheck("crash files PID = fd tables", files_cmds, files_cmp),
    CrashCheck("crash mount = mount namespace", mount_cmds, mount_cmp),
    CrashCheck("crash log = dmesg", lambda c: ["log"], log_cmp),
    CrashCheck("crash rd linux_banner = memory", lambda c: ["rd linux_banner 8"], rd_cmp),
    CrashCheck("crash struct page ADDR = mmintro page", struct_page_cmds, struct_page_cmp),
    CrashCheck("crash swap = mmintro swaps --crash", lambda c: ["swap"], swap_cmp),
    CrashCheck("crash p node_data = node_data[]", lambda c: ["p node_data"], node_data_cmp),
]


def crash_commands(ctx: _Ctx, checks: list[CrashCheck]) -> list[str]:
    out: list[str] = []
    for ch in checks:
        for cmd in ch.commands(ctx):
            if cmd not in out:
                out.append(cmd)
    return out


class CrashStartError(Exception):
    """crash did not get to run a command on the snapshot (its own first error line)."""


def run_crash_crosscheck(
    path: str,
    only: list[str] | None = None,
    timeout: float = 300.0,
    raise_on_start: bool = False,
    progress: Progress | None = None,
    note: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Run every row (or with ``only`` those whose name contains one of its texts) on the
    snapshot at ``path`` in one crash 9 session.

    If crash cannot open the snapshot, every row fails with crash's own first error line (or,
    with ``raise_on_start``, :class:`CrashStartError` says it); if it does not finish within
    ``timeout`` seconds, the rows whose commands did not finish say so.  ``note`` is told how the
    crash session went, ``progress`` is called after each row's comparison."""
    from mmintro.realkernel.crash import fetch_crash, run_crash
    from mmintro.snapshot.writer import snapshot_paths

    prog = open_snapshot(path)
    core, vmlinux = snapshot_paths(path)
    ctx = _context(prog)
    checks = select_crash_checks(only)
    cmds = crash_commands(ctx, checks)
    t0 = time.monotonic()
    run = run_crash(fetch_crash(), vmlinux, core, cmds, timeout=timeout)
    if note is not None:
        n = len(cmds)
        note(f"crash 9: {n} command{'s' if n != 1 else ''} in one session ({time.monotonic() - t0:.1f} s)")
    err = run.error()
    if err and not run.outputs and raise_on_start and not run.timed_out:
        raise CrashStartError(f"crash 9 cannot open {path}: {err}")
    results = []
    for ch in checks:
        results.append(_run_row(ch, ctx, run, err, timeout))
        if progress is not None:
            progress(len(results), len(checks), results[-1])
    return results


def select_crash_checks(only: list[str] | None = None) -> list[CrashCheck]:
    """The rows :func:`run_crash_crosscheck` runs: all, or those whose name contains a text of ``only``."""
    return [c for c in CRASH_CHECKS if not only or any(o in c.name for o in only)]


def _run_row(ch: CrashCheck, ctx: _Ctx, run: Any, err: str | None, timeout: float) -> CheckResult:
    missing = [c for c in ch.commands(ctx) if c not in run.outputs]
    if err and not run.outputs:
        return CheckResult(ch.name, None, None, False, err, oracle="crash", error=True)
    if missing:
        why = (
            f"crash did not finish {missing[0]!r} within {timeout:g} s"
            if run.timed_out
            else f"crash printed nothing for {missing[0]!r} ({err or 'it exited'})"
        )
        return CheckResult(ch.name, None, None, False, why, oracle="crash", error=True)
    t0 = time.monotonic()
    try:
        a, b = ch.compare(ctx, run.outputs)
        r = CheckResult(ch.name, a, b, a == b, "" if a == b else _diff(a, b), oracle="crash")
    except _NA as e:
        r = CheckResult(ch.name, None, None, True, "", str(e), oracle="crash")
    except Exception as e:  # a row that cannot run is a failed row, not a crash of ours
        r = CheckResult(ch.name, None, None, False, f"{type(e).__name__}: {e}", oracle="crash", error=True)
    r.seconds = time.monotonic() - t0
    return r
