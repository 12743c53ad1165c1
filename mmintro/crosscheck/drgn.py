"""drgn as the oracle: the snapshot (or a real kernel's dump) opened in real drgn, drgn's crash
commands, and the runner that compares each row's two answers (:class:`CheckResult`).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

from mmintro.reader import open_snapshot

__all__ = ["CheckResult", "NotApplicable", "crash", "open_drgn", "open_drgn_real", "run_crosscheck"]


@dataclass
class CheckResult:
    """One row of ``mmintro crosscheck``."""

    name: str  #: what is compared
    mmintro: str  #: mmintro's answer (abbreviated)
    drgn: str  #: drgn's answer (abbreviated)
    ok: bool  #: whether they agree
    detail: str = ""  #: the first difference, if any
    #: why the row compared nothing (both answers empty on a snapshot without what it needs,
    #: e.g. "no user processes"); such a row is reported as not applicable, not as passed
    skipped: str = ""
    #: the tool the row compares with ("drgn", or "crash": then :attr:`drgn` holds crash's answer)
    oracle: str = "drgn"


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


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _diff(a: Any, b: Any) -> str:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"[{i}]: {x!r} != {y!r}"
    return f"{a!r} != {b!r}"


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
    path: str, only: list[str] | None = None, kernel: str | None = None, system_map: str | None = None
) -> list[CheckResult]:
    """Run the checks on a snapshot, or with ``kernel`` on a real kernel's dump: its debug info
    for drgn is generated from the image's BTF and the dump's symbols
    (:func:`mmintro.snapshot.debuginfo.cached_debuginfo`)."""
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
    from mmintro.crosscheck import CHECKS, SLOW_CHECKS  # the package's (tests may replace them)

    results = []
    checks = [c for c in CHECKS if not only or any(o in c[0] for o in only)]
    checks += [c for c in SLOW_CHECKS if only and any(o in c[0] for o in only)]
    for name, fn in checks:
        try:
            a, b = fn(prog, dprog)
            ok = a == b
            needs = getattr(fn, "needs", None)
            skipped = f"no {needs} in the snapshot" if ok and needs and a in ([], ()) else ""
            results.append(CheckResult(name, _short(a), _short(b), ok, "" if ok else _diff(a, b), skipped))
        except NotApplicable as e:
            results.append(CheckResult(name, "-", "-", True, "", str(e)))
        except Exception as e:  # a check that cannot run is a failed check, not a crash
            results.append(CheckResult(name, "error", "error", False, f"{type(e).__name__}: {e}"))
    return results
