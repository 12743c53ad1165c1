"""drgn as the oracle: the snapshot (or a real kernel's dump) opened in real drgn, drgn's crash
commands, and the runner that compares each row's two answers (:class:`CheckResult`).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmintro.crosscheck.answers import answer_text
from mmintro.reader import Program, open_snapshot

__all__ = [
    "CheckResult",
    "NotApplicable",
    "Progress",
    "crash",
    "open_drgn",
    "open_drgn_real",
    "run_crosscheck",
    "select_checks",
]


@dataclass
class CheckResult:
    """One row of ``mmintro crosscheck``."""

    name: str  #: what is compared
    #: mmintro's answer, in full (None where the row compared nothing or could not run)
    mmintro: Any
    drgn: Any  #: the oracle's answer, in full (crash's where :attr:`oracle` is "crash")
    ok: bool  #: whether they agree
    detail: str = ""  #: the first difference, if any, or why the row could not run
    #: why the row compared nothing (both answers empty on a snapshot without what it needs,
    #: e.g. "no user processes"); such a row is reported as not applicable, not as passed
    skipped: str = ""
    #: the tool the row compares with ("drgn", or "crash": then :attr:`drgn` holds crash's answer)
    oracle: str = "drgn"
    error: bool = False  #: the row could not run (:attr:`detail` says why); it counts as disagreeing
    seconds: float = 0.0  #: how long the row took

    @property
    def status(self) -> str:
        """ "agree", "disagree", "n/a" (compared nothing) or "error" (could not run)."""
        if self.skipped:
            return "n/a"
        if self.ok:
            return "agree"
        return "error" if self.error else "disagree"


#: Called after each row: (rows done, rows in all, the row's result).
Progress = Callable[[int, int, CheckResult], None]


class NotApplicable(Exception):
    """Raised by a check that cannot compare anything on this dump; the message says why."""


def open_drgn(vmcore: str, vmlinux: str) -> Any:
    """The snapshot in real drgn, with its crash commands loaded."""
    import logging

    import drgn
    import drgn.commands._crash

    from mmintro.reader.errors import SnapshotError

    prog = drgn.Program()
    log = logging.getLogger("drgn")
    level = log.level
    log.setLevel(logging.ERROR)  # (its warnings, e.g. "can't find kernel modules", are not our stderr's)
    try:
        prog.set_core_dump(vmcore)
        prog.load_debug_info([vmlinux])
    except Exception as e:  # damaged DWARF or core: drgn's BadDataError, MissingDebugInfoError, ...
        raise SnapshotError(
            f"drgn {drgn.__version__} cannot read the snapshot ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
    finally:
        log.setLevel(level)
    return prog


def crash(dprog: Any, cmd: str) -> str:
    from drgn.commands import run_command

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_command(dprog, f"crash {cmd}")
    except SystemExit:  # the command's argparse gave up on what it read (a corrupt snapshot): a failed row
        lines = err.getvalue().strip().splitlines()
        raise RuntimeError(f"drgn's crash {cmd} failed: {lines[-1] if lines else 'exit'}") from None
    return out.getvalue()


def _diff(a: Any, b: Any) -> str:
    """The first difference of two answers, in full (addresses in hex)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"[{i}]: {answer_text(x)} != {answer_text(y)}"
    return f"{answer_text(a)} != {answer_text(b)}"


def _set_core_dump(prog: Any, vmcore: str, flattened: bool, core: Any) -> None:
    import tempfile

    if not flattened:
        prog.set_core_dump(vmcore)
        return
    from mmintro.reader.diskdump import open_core

    mine = core if core is not None else open_core(vmcore)
    try:
        with tempfile.NamedTemporaryFile(prefix="mmintro-drgn-", suffix=".kdump") as tmp:
            tmp.write(mine.buf)
            tmp.flush()
            prog.set_core_dump(tmp.name)  # drgn keeps its own descriptor open
    finally:
        if core is None:
            mine.close()


def open_drgn_real(vmcore: str, debug_file: str, core: Any = None) -> Any:
    """A real kernel's dump in real drgn with a debug file made by
    :func:`mmintro.snapshot.debuginfo.write_debuginfo` (forced onto the main module: no debug
    package is looked for), crash commands loaded.

    drgn's libkdumpfile does not read makedumpfile's *flattened* layout (what QEMU before 8.2
    writes for ``dump-guest-memory -z``): such a file is given to drgn reassembled
    (``makedumpfile -R``), from mmintro's reading of it (``core``, else opened here), in an
    unlinked temporary file.  (drgn 0.3.0's libkdumpfile still rejects QEMU 7.2's kdump files
    reassembled: "KDUMP_ATTR_ARCH_NAME: Key has no value"; that is one line, SnapshotError.)"""
    import logging

    import drgn
    import drgn.commands._crash

    from mmintro.reader.errors import SnapshotError

    prog = drgn.Program()
    with open(vmcore, "rb") as f:
        head = f.read(12)
    flattened = head == b"makedumpfile"
    try:
        _set_core_dump(prog, vmcore, flattened, core)
    except SnapshotError:
        raise
    except Exception as e:  # drgn raises plain Exception for libkdumpfile's errors
        kind = "kdump-compressed " if flattened or head[:8] == b"KDUMP   " else ""
        raise SnapshotError(
            f"drgn {drgn.__version__} cannot open the {kind}dump {vmcore!r} "
            f"({' '.join(str(e).split())}); give drgn the ELF dump"
        ) from None
    log = logging.getLogger("drgn")
    level = log.level
    log.setLevel(logging.ERROR)  # "can't find loaded modules without kernel debug info"
    try:
        prog.create_loaded_modules()
    finally:
        log.setLevel(level)
    prog.main_module().try_file(debug_file, force=True)
    panic_cpu = prog["panic_cpu"].value_()
    if isinstance(panic_cpu, dict):  # atomic_t
        panic_cpu = panic_cpu["counter"]
    if panic_cpu < 0:
        # A dump taken from outside (QEMU's dump-guest-memory, virsh dump) has no panicking
        # task; crash then takes the task current on CPU 0 as its context (its ``set -c 0``).
        from drgn.helpers.linux.sched import cpu_curr

        prog.config["crash_context"] = cpu_curr(prog, 0)
    return prog


def run_crosscheck(
    path: str,
    only: list[str] | None = None,
    kernel: str | None = None,
    system_map: str | None = None,
    progress: Progress | None = None,
) -> list[CheckResult]:
    """Run the checks on a snapshot, or with ``kernel`` on a real kernel's dump: its debug info
    for drgn is generated from the image's BTF and the dump's symbols
    (:func:`mmintro.snapshot.debuginfo.cached_debuginfo`).  ``only``: the rows whose name
    contains one of these texts (the slow rows run only so); ``progress`` is called after each row."""
    if kernel is not None:
        from mmintro.reader.dump import open_dump
        from mmintro.snapshot.debuginfo import cached_debuginfo

        prog = open_dump(path, kernel, system_map)
        dprog = open_drgn_real(path, str(cached_debuginfo(prog)), core=prog.core)
    else:
        from mmintro.snapshot.writer import snapshot_paths

        prog = open_snapshot(path)
        core, vmlinux = snapshot_paths(path)
        dprog = open_drgn(str(core), str(vmlinux))
    results = []
    checks = select_checks(only)
    for name, fn in checks:
        results.append(_run_row(name, fn, prog, dprog))
        if progress is not None:
            progress(len(results), len(checks), results[-1])
    return results


def select_checks(only: list[str] | None = None) -> list[tuple[str, Callable[[Program, Any], tuple]]]:
    """The rows :func:`run_crosscheck` runs: every row of CHECKS, or with ``only`` those whose
    name contains one of its texts, and then the SLOW_CHECKS ``only`` names."""
    from mmintro.crosscheck import CHECKS, SLOW_CHECKS  # the package's (tests may replace them)

    checks = [c for c in CHECKS if not only or any(o in c[0] for o in only)]
    return checks + [c for c in SLOW_CHECKS if only and any(o in c[0] for o in only)]


def _run_row(name: str, fn: Callable[[Program, Any], tuple], prog: Program, dprog: Any) -> CheckResult:
    t0 = time.monotonic()
    try:
        a, b = fn(prog, dprog)
        ok = a == b
        needs = getattr(fn, "needs", None)
        skipped = f"no {needs} in the snapshot" if ok and needs and a in ([], ()) else ""
        r = CheckResult(name, a, b, ok, "" if ok else _diff(a, b), skipped)
    except NotApplicable as e:
        r = CheckResult(name, None, None, True, "", str(e))
    except Exception as e:  # a check that cannot run is a failed check, not a crash
        r = CheckResult(name, None, None, False, f"{type(e).__name__}: {e}", error=True)
    r.seconds = time.monotonic() - t0
    return r
