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

On a real kernel's dump crash needs one namelist with both the kernel's text and data and its
debug data; Debian's image has no symbols and ``mmintro debuginfo`` no contents, so
:func:`real_dump_namelist` joins the two (``crash NAMELIST VMCORE``).  With the types
closure.REAL_KERNEL_ROOTS adds (tss_struct, cea_exception_stacks, ...) crash 9.0.2 starts on
Debian's 6.18 dumps; ``swap`` and ``vtop`` work there (``kmem -i`` does not yet: it stops at
"invalid kernel virtual address ... node_zones free_pages").
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

__all__ = [
    "CrashTool",
    "CrashRun",
    "fetch_crash",
    "run_crash",
    "real_kernel_namelist",
    "real_dump_namelist",
    "CRASH_SUITE",
    "CRASH_PACKAGES",
]

CRASH_SUITE = "forky"
#: crash and the libraries its forky build links (``apt-cache depends crash``), plus libc's loader.
CRASH_PACKAGES = (
    "crash",
    "libc6",
    "libstdc++6",
    "libgcc-s1",
    "libgmp10",
    "libmpfr6",
    "libncursesw6",
    "libtinfo6",
    "libzstd1",
    "libsnappy1v5",
    "liblzo2-2",
    "zlib1g",
    "liblzma5",
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
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TERM": "dumb", "LC_ALL": "C", "TZ": "UTC"}
        # crash runs in the temporary directory: the dump's paths must not be relative to ours
        argv = tool.argv(
            "-s", "--no_crashrc", *args, str(Path(vmlinux).resolve()), str(Path(vmcore).resolve()), "-i", str(script)
        )
        proc = subprocess.Popen(
            argv,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
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


def real_kernel_namelist(image: bytes, debug_file: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A namelist crash opens for a real kernel's dump: the decompressed kernel image (its
    sections with text and data, ``image``: an ELF) with the DWARF and symbols of ``debug_file``
    (``mmintro debuginfo``) added as sections.  crash needs text and data contents and debug
    data in one file; Debian's image has no symbol table and the debug file no contents.

    The debug file's symbols are re-indexed to the image's section holding their address
    (absolute when none does)."""
    import struct

    import numpy as np

    dbg = Path(debug_file).read_bytes()

    def sections(buf: bytes) -> list[tuple]:
        (shoff,) = struct.unpack_from("<Q", buf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", buf, 0x3A)
        rows = [struct.unpack_from("<IIQQQQIIQQ", buf, shoff + i * shentsize) for i in range(shnum)]
        names = rows[shstrndx]

        def name(off: int) -> str:
            start = names[4] + off
            return buf[start : buf.index(b"\0", start)].decode()

        return [(name(r[0]),) + r for r in rows]

    if image[:4] != b"\x7fELF" or dbg[:4] != b"\x7fELF":
        raise HarnessError("the kernel image and the debug file must both be ELF files")
    isecs, dsecs = sections(image), sections(dbg)
    keep = [r for r in isecs if r[0] != ".shstrtab"]
    add = {r[0]: r for r in dsecs if r[0] in (".debug_abbrev", ".debug_info", ".debug_str", ".symtab", ".strtab")}
    if ".symtab" not in add or ".debug_info" not in add:
        raise HarnessError(f"{debug_file} has no .symtab or .debug_info")
    body = bytearray(image[: max(r[5] + (r[6] if r[2] != 8 else 0) for r in keep)])  # up to the last contents
    new_rows = [list(r[1:]) for r in keep]
    names = bytearray(b"\0")

    def put_name(n: str) -> int:
        off = len(names)
        names.extend(n.encode() + b"\0")
        return off

    for row, r in zip(new_rows, keep):
        row[0] = put_name(r[0]) if r[0] else 0
    index = {}
    for n in (".debug_abbrev", ".debug_info", ".debug_str", ".strtab", ".symtab"):
        r = add[n]
        data = bytearray(dbg[r[5] : r[5] + r[6]])
        if n == ".symtab":
            syms = np.frombuffer(
                bytes(data),
                dtype=np.dtype(
                    [
                        ("name", "<u4"),
                        ("info", "u1"),
                        ("other", "u1"),
                        ("shndx", "<u2"),
                        ("value", "<u8"),
                        ("size", "<u8"),
                    ]
                ),
            ).copy()
            alloc = [(i, r2[4], r2[4] + r2[6]) for i, r2 in enumerate(keep) if r2[3] & 2 and r2[4]]  # SHF_ALLOC
            shndx = np.full(len(syms), 0xFFF1, dtype=np.uint16)  # SHN_ABS
            for i, lo, hi in alloc:
                shndx[(syms["value"] >= lo) & (syms["value"] < hi)] = i
            shndx[0] = 0
            syms["shndx"] = np.where(syms["shndx"] == 0, 0, shndx)
            data = bytearray(syms.tobytes())
        body.extend(b"\0" * (-len(body) % 8))
        off = len(body)
        body.extend(data)
        index[n] = len(new_rows)
        link = index.get(".strtab", 0) if n == ".symtab" else 0
        new_rows.append([put_name(n), r[2], r[3], 0, off, len(data), link, r[8], r[9], r[10]])
    shstr = put_name(".shstrtab")
    body.extend(b"\0" * (-len(body) % 8))
    new_rows.append([shstr, 3, 0, 0, len(body) + 0, len(names) + 0, 0, 0, 1, 0])
    new_rows[-1][4] = len(body)
    body.extend(names)
    body.extend(b"\0" * (-len(body) % 8))
    shoff = len(body)
    for row in new_rows:
        body.extend(struct.pack("<IIQQQQIIQQ", *row))
    struct.pack_into("<Q", body, 0x28, shoff)
    struct.pack_into("<HH", body, 0x3C, len(new_rows), len(new_rows) - 1)
    out = Path(out)
    out.write_bytes(bytes(body))
    return out


def real_dump_namelist(vmcore: str | os.PathLike, kernel: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The namelist for crash on a real kernel's dump (:func:`real_kernel_namelist` of the
    kernel image's decompressed ELF and the debug file ``mmintro debuginfo`` makes from the
    dump): ``crash OUT VMCORE``."""
    from mmintro.reader.dump import open_dump
    from mmintro.snapshot.debuginfo import cached_debuginfo
    from mmintro.types.kernel_image import read_kernel_image

    image = read_kernel_image(kernel)
    prog = open_dump(vmcore, kernel)
    try:
        debug = cached_debuginfo(prog)
    finally:
        prog.close()
    return real_kernel_namelist(image.elf_bytes, debug, out)


if __name__ == "__main__":  # python -m mmintro.realkernel.crash: fetch (or find cached) crash 9
    import sys

    try:
        t = fetch_crash()
        print(f"{t.version()}: {t.binary}")
    except HarnessError as e:
        print(f"mmintro: {e}", file=sys.stderr)
        sys.exit(1)
