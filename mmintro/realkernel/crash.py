"""The real crash utility, 9.0.x, as an oracle: fetched from Debian, run in batch mode.

Debian ships crash 9.0.2 in *forky*, built against a newer glibc than these machines have.  It runs
unchanged when started through the dynamic loader of forky's own libc with forky's libraries beside
it (``LIB/ld-linux-x86-64.so.2 --library-path LIB crash ...``).  The packages come from the archive
this machine's apt already uses, through a private sources list naming forky (``apt-get download``,
``dpkg-deb -x``), and are cached in :func:`~mmintro.cache.cache_dir`; nothing is installed and
nothing enters the repository.

:func:`run_crash` runs a list of commands on a dump in one crash session (``-s -i FILE``), each
command's output framed by ``echo`` markers so it can be told apart, under a timeout: a crash that
spins is killed and reported, never waited on.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mmintro.cache import cache_dir
from mmintro.realkernel.debian import HarnessError, PrivateApt, unpack_deb

__all__ = ["CrashTool", "CrashRun", "fetch_crash", "run_crash", "CRASH_SUITE", "CRASH_PACKAGES"]

CRASH_SUITE = "forky"
#: crash and the libraries its forky build links (``apt-cache depends crash``), plus libc's loader.
CRASH_PACKAGES = (
    "crash", "libc6", "libstdc++6", "libgcc-s1", "libgmp10", "libmpfr6", "libncursesw6",
    "libtinfo6", "libzstd1", "libsnappy1v5", "liblzo2-2", "zlib1g", "liblzma5",
)


@dataclass(frozen=True)
class CrashTool:
    """An unpacked crash 9 with the libraries it runs on."""

    root: Path

    @property
    def lib(self) -> Path:
        return self.root / "usr" / "lib" / "x86_64-linux-gnu"

    @property
    def binary(self) -> Path:
        return self.root / "usr" / "bin" / "crash"

    def argv(self, *args: str) -> list[str]:
        return [str(self.lib / "ld-linux-x86-64.so.2"), "--library-path", str(self.lib), str(self.binary), *args]

    def version(self) -> str:
        """``crash 9.0.2``: the first line of ``crash --version``."""
        p = subprocess.run(self.argv("--version"), capture_output=True, text=True, timeout=60)
        for line in p.stdout.splitlines():
            if line.startswith("crash "):
                return line.strip()
        raise HarnessError(f"{self.binary} --version printed no version: {(p.stderr or p.stdout).strip()[:200]}")


def fetch_crash(*, refresh: bool = False) -> CrashTool:
    """crash 9 and its forky libraries, unpacked in the cache (downloaded the first time; one
    process fetches while the others wait on a lock)."""
    root = cache_dir()
    dest = root / "crash" / CRASH_SUITE
    if (dest / ".complete").exists() and not refresh:
        return CrashTool(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / ".complete").exists() and not refresh:
            return CrashTool(dest)
        return _fetch(root, dest)


def _fetch(root: Path, dest: Path) -> CrashTool:
    apt = PrivateApt(root / "apt-crash", CRASH_SUITE)
    apt.update()
    debs = root / "debs" / CRASH_SUITE
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob("*.deb"):
        old.unlink()
    apt.run("apt-get", "download", "-qq", *CRASH_PACKAGES, cwd=debs)
    found = sorted(debs.glob("*.deb"))
    missing = [p for p in CRASH_PACKAGES if not any(d.name.startswith(p + "_") for d in found)]
    if missing:
        raise HarnessError(f"apt-get download left no .deb for {', '.join(missing)} in {debs}")
    unpack_deb(found, dest)
    tool = CrashTool(dest)
    if not tool.version().startswith("crash 9."):
        raise HarnessError(f"{CRASH_SUITE}'s crash is {tool.version()}, not crash 9")
    return tool


@dataclass
class CrashRun:
    """What one crash session printed: each command's output, and how the session ended."""

    outputs: dict[str, str] = field(default_factory=dict)
    preamble: str = ""  # what crash printed before the first command (its start-up errors)
    stderr: str = ""
    returncode: int | None = None
    timed_out: bool = False

    def error(self) -> str | None:
        """One line saying why the session failed, or None if crash started and ran every command."""
        if self.timed_out:
            return "crash did not finish (killed at the timeout)"
        if not self.outputs:
            text = (self.stderr + "\n" + self.preamble).strip().splitlines()
            msgs = [l.strip() for l in text if l.strip().startswith("crash:")] or [l.strip() for l in text if l.strip()]
            return msgs[0] if msgs else f"crash exited {self.returncode} before running a command"
        return None

    def __getitem__(self, command: str) -> str:
        return self.outputs[command]


def run_crash(
    tool: CrashTool,
    vmlinux: str | os.PathLike,
    vmcore: str | os.PathLike,
    commands: list[str],
    *,
    timeout: float = 120.0,
    args: tuple[str, ...] = (),
) -> CrashRun:
    """Run ``commands`` in one batch session of crash on ``vmlinux`` + ``vmcore``.

    Each command's output is ``run[command]``.  A command that makes crash spin ends the session
    at ``timeout`` seconds; the commands that finished before it keep their output.
    """
    with tempfile.TemporaryDirectory(prefix="mmintro-crash-") as tmp:
        script = Path(tmp) / "commands"
        lines = []
        for i, cmd in enumerate(commands):
            # each command's output into its own file: crash writes some output through other
            # streams than stdout (tmpfiles), which interleave on a pipe
            lines.append(f"{cmd} > {tmp}/{i}.out")
        lines.append("exit")
        script.write_text("\n".join(lines) + "\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TERM": "dumb", "LC_ALL": "C",
               "TZ": "UTC"}
        # crash runs in the temporary directory: the dump's paths must not be relative to ours
        argv = tool.argv("-s", "--no_crashrc", *args, str(Path(vmlinux).resolve()), str(Path(vmcore).resolve()),
                         "-i", str(script))
        proc = subprocess.Popen(
            argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
        )
        run = CrashRun()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            run.timed_out = True
        run.returncode = proc.returncode
        run.stderr = err
        run.preamble = out
        done = [i for i in range(len(commands)) if (Path(tmp) / f"{i}.out").exists()]
        if done and (run.timed_out or run.returncode != 0):
            done.pop()  # the command crash was running when it was killed or died: cut short
        for i in done:
            run.outputs[commands[i]] = (Path(tmp) / f"{i}.out").read_text(errors="replace")
        return run


if __name__ == "__main__":  # python -m mmintro.realkernel.crash: fetch (or find cached) crash 9
    import sys

    try:
        t = fetch_crash()
        print(f"{t.version()}: {t.binary}")
    except HarnessError as e:
        print(f"mmintro: {e}", file=sys.stderr)
        sys.exit(1)
