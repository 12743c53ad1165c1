"""Boot Debian's 6.18 kernel under QEMU (TCG), run the workload, capture /proc, dump memory.

The guest's console goes to ``console.log``; its second serial port carries the /proc capture
(``capture.raw``).  Once the capture's end marker arrives, QMP stops the VM and
``dump-guest-memory`` writes the dump in each format asked for (ELF, and QEMU's kdump-compressed
formats, which QEMU 7.2 writes in makedumpfile's flattened layout).  Everything the harness learnt
is in ``manifest.json`` beside them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmintro.realkernel.debian import HarnessError, KernelPackage, cache_dir, fetch_kernel
from mmintro.realkernel.initramfs import PROC_FILES, PROCESS_FILES, build_initramfs

__all__ = [
    "GuestConfig",
    "ReferenceDump",
    "make_reference_dump",
    "load_reference_dump",
    "cached_reference_dump",
    "harness_key",
    "DUMP_FORMATS",
]

# dump-guest-memory formats QEMU 7.2 offers, and the file each one is written to.
DUMP_FORMATS = {
    "elf": "vmcore",
    "kdump-zlib": "vmcore.kdump-zlib",
    "kdump-lzo": "vmcore.kdump-lzo",
    "kdump-snappy": "vmcore.kdump-snappy",
}


@dataclass
class GuestConfig:
    """The machine the reference kernel boots on."""

    mem_mib: int = 1024
    cpus: int = 2
    nodes: int = 1
    kaslr: bool = True
    paging_levels: int = 4  # 4 (-cpu max,la57=off) or 5 (-cpu max)
    anon_mib: int = 16
    formats: tuple[str, ...] = ("elf", "kdump-zlib")
    kernel_release: str | None = None  # 6.18.N+deb13; None = newest cached, else newest in the archive
    timeout_s: float = 600.0
    # More of the kernel's command line (``memmap=256M!1G``), and modules the guest's init loads
    # before the workload, in order (their dependencies first, from each module's modinfo)
    append: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    # Memory pressure after the workload is ready and before the capture (0: none): init fills N
    # MiB of a tmpfs, frees every other MiB, asks for N 2 MiB hugetlb pages (vm.nr_hugepages)
    # and gives everything back; compaction and reclaim move PSI's memory books
    # (initramfs._pressure_step)
    pressure_hugepages: int = 0
    # A swap device: a raw disk image of this many MiB on virtio-blk (/dev/vda, the virtio_blk
    # module loaded by init), made swap with busybox mkswap and switched on with swapon; the
    # workload then pushes a region of anonymous memory out to it with MADV_PAGEOUT.  0 = none.
    swap_mib: int = 0

    def check(self) -> None:
        if self.paging_levels not in (4, 5):
            raise HarnessError(f"paging levels must be 4 or 5, not {self.paging_levels}")
        if not 1 <= self.nodes <= 8 or not 1 <= self.cpus <= 16:
            raise HarnessError("the harness boots 1-8 nodes and 1-16 CPUs")
        if not 0 <= self.pressure_hugepages <= 1 << 20:
            raise HarnessError(f"pressure_hugepages {self.pressure_hugepages}: 0 to 1048576 huge pages")
        if self.mem_mib < 256 or self.mem_mib % (2 * self.nodes):
            raise HarnessError(f"memory must be at least 256 MiB and split evenly over {self.nodes} node(s)")
        for a in self.append:
            if not a or any(c in a for c in " \t\n\"'"):
                raise HarnessError(f"kernel command-line option {a!r}: one option, no spaces or quotes")
        for m in self.modules:
            if not m.replace("_", "").replace("-", "").isalnum():
                raise HarnessError(f"module name {m!r} is not a module name")
        if self.swap_mib and not 1 <= self.swap_mib <= 4096:
            raise HarnessError(f"the swap device must be 1-4096 MiB, not {self.swap_mib}")
        bad = [f for f in self.formats if f not in DUMP_FORMATS]
        if bad:
            raise HarnessError(f"unknown dump format {bad[0]!r} (have {', '.join(DUMP_FORMATS)})")


@dataclass
class ReferenceDump:
    """A dump directory written by :func:`make_reference_dump`."""

    dir: Path
    config: GuestConfig
    kernel_release: str
    vmlinuz: str
    system_map: str
    kernel_config: str
    pids: dict[str, int] = field(default_factory=dict)  # role (parent, child) -> pid
    dumps: dict[str, str] = field(default_factory=dict)  # format -> file name in dir
    timings: dict[str, float] = field(default_factory=dict)

    def path(self, fmt: str = "elf") -> Path:
        return self.dir / self.dumps[fmt]

    def proc(self, name: str, pid: int | None = None) -> str:
        """The guest's own text of /proc/NAME (or /proc/PID/NAME) captured before the stop."""
        p = self.dir / "proc" / (f"{pid}/{name}" if pid is not None else name)
        return p.read_text()


def _qemu_command(cfg: GuestConfig, kernel: KernelPackage, initrd: Path, out: Path, qmp: Path) -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise HarnessError("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
    append = ["console=ttyS0", "panic=-1", "loglevel=4", "rdinit=/init"]
    if not cfg.kaslr:
        append.append("nokaslr")
    append += list(cfg.append)
    cpu = "max" if cfg.paging_levels == 5 else "max,la57=off"
    cmd = [
        qemu,
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-cpu",
        cpu,
        "-smp",
        str(cfg.cpus),
        "-m",
        f"{cfg.mem_mib}M",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(initrd),
        "-append",
        " ".join(append),
        "-chardev",
        f"file,id=con,path={out / 'console.log'}",
        "-serial",
        "chardev:con",
        "-chardev",
        f"file,id=cap,path={out / 'capture.raw'}",
        "-serial",
        "chardev:cap",
        "-device",
        "vmcoreinfo",
        "-qmp",
        f"unix:{qmp},server=on,wait=off",
        "-monitor",
        "none",
    ]
    per_node = cfg.mem_mib // cfg.nodes
    for n in range(cfg.nodes):
        cmd += ["-object", f"memory-backend-ram,id=mem{n},size={per_node}M"]
        cpus = [c for c in range(cfg.cpus) if c % cfg.nodes == n]
        spec = f"node,nodeid={n},memdev=mem{n}"
        if cpus:
            spec += "".join(f",cpus={c}" for c in cpus)
        cmd += ["-numa", spec]
    if cfg.swap_mib:
        # A sparse raw image: only what the guest writes to it takes space.
        with open(out / SWAP_IMAGE, "wb") as f:
            f.truncate(cfg.swap_mib << 20)
        cmd += [
            "-drive",
            f"file={out / SWAP_IMAGE},if=none,id=swap0,format=raw,cache=unsafe",
            "-device",
            "virtio-blk-pci,drive=swap0",
        ]
    return cmd


# The swap device's disk image, deleted once the VM is dumped (its contents are not needed).
SWAP_IMAGE = "swap.img"


class _Qmp:
    """A minimal QMP client (one command at a time, bounded waits)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise HarnessError(f"QEMU's QMP socket {path} never answered") from None
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.buf = b""
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HarnessError("QEMU closed its QMP socket")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def execute(self, cmd: str, timeout: float = 60.0, **args: object) -> dict:
        self.sock.settimeout(timeout)
        msg: dict = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise HarnessError(f"QMP {cmd}: {r['error'].get('desc', r['error'])}")

    def close(self) -> None:
        self.sock.close()


def _parse_capture(raw: bytes, dest: Path) -> list[str]:
    """Split the capture stream into files under ``dest`` (proc/NAME, proc/PID/NAME)."""
    names = []
    pos = 0
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise HarnessError("the /proc capture ended early (no END marker)")
        header = raw[pos:nl].decode(errors="replace")
        if header in ("==> BEGIN <==", "==> READ <=="):
            pos = nl + 1
            continue
        if header == "==> END <==":
            return names
        if not (header.startswith("==> /proc/") and " <== " in header):
            raise HarnessError(f"the /proc capture is garbled at byte {pos}: {header[:60]!r}")
        path, _, n = header[4:].partition(" <== ")
        size = int(n)
        body = raw[nl + 1 : nl + 1 + size]
        rel = path.removeprefix("/proc/")
        f = dest / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body)
        names.append(rel)
        pos = nl + 1 + size + 1


def _has_marker(cap: Path, marker: bytes) -> bool:
    """Whether the capture stream has ``marker`` yet: READ comes right after BEGIN at its
    start, END at its end (reads only the file's first and last 64 bytes)."""
    try:
        with open(cap, "rb") as f:
            head = f.read(64)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
            return marker in head or f.read().endswith(marker)
    except FileNotFoundError:
        return False


def _wait_for(proc: subprocess.Popen, cap: Path, marker: bytes, deadline: float, out: Path, what: str) -> None:
    """Poll the capture stream for ``marker`` (every 2 ms: the guest runs on until QMP stops it)."""
    while not _has_marker(cap, marker):
        if proc.poll() is not None:
            tail = (out / "console.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise GuestCrashed(f"QEMU exited ({proc.returncode}) before {what}: {' | '.join(tail)}")
        if time.monotonic() > deadline:
            raise HarnessError(f"the guest did not finish {what} in time (see {out / 'console.log'})")
        time.sleep(0.002)


def make_reference_dump(cfg: GuestConfig, out: Path, log=None) -> ReferenceDump:
    """Boot, run, capture and dump; return what was written to ``out`` (created afresh)."""
    cfg.check()
    say = log or (lambda msg: None)
    t0 = time.monotonic()
    kernel = fetch_kernel(cfg.kernel_release)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    initrd = build_initramfs(
        kernel, out / "initramfs.cpio", cfg.anon_mib, cfg.modules, cfg.pressure_hugepages, cfg.swap_mib
    )
    t_prep = time.monotonic()
    qmp_path = Path(f"/tmp/mmintro-qmp-{os.getpid()}-{int(t0 * 1000) % 100000}.sock")
    cmd = _qemu_command(cfg, kernel, initrd, out, qmp_path)
    (out / "qemu-command.txt").write_text(" ".join(cmd) + "\n")
    say(
        f"booting {kernel.release}: {cfg.mem_mib} MiB, {cfg.cpus} CPU(s), {cfg.nodes} node(s), "
        f"{cfg.paging_levels}-level paging, KASLR {'on' if cfg.kaslr else 'off'}"
    )
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    qmp = None
    try:
        qmp = _Qmp(qmp_path)
        cap = out / "capture.raw"
        deadline = time.monotonic() + cfg.timeout_s
        # The capture says READ once every file is in its memory, then waits a second before
        # printing: the VM is stopped and dumped inside that second, and resumed afterwards to
        # print what it read.
        _wait_for(proc, cap, b"==> READ <==\n", deadline, out, "reading /proc")
        qmp.execute("stop")
        t_run = time.monotonic()
        say(f"captured /proc and stopped the VM after {t_run - t_prep:.1f} s")
        have = {f for f in qmp.execute("query-dump-guest-memory-capability").get("formats", [])}
        missing = [f for f in cfg.formats if f not in have]
        if missing:
            raise HarnessError(f"this QEMU cannot write {', '.join(missing)} dumps (it has: {', '.join(sorted(have))})")
        dumps = {}
        for fmt in cfg.formats:
            name = DUMP_FORMATS[fmt]
            qmp.execute("dump-guest-memory", timeout=600, paging=False, protocol=f"file:{out / name}", format=fmt)
            dumps[fmt] = name
        t_dump = time.monotonic()
        qmp.execute("cont")
        _wait_for(proc, cap, b"==> END <==\n", time.monotonic() + cfg.timeout_s, out, "printing the capture")
        qmp.execute("quit")
    finally:
        if qmp is not None:
            qmp.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        qmp_path.unlink(missing_ok=True)
        (out / SWAP_IMAGE).unlink(missing_ok=True)
    names = _parse_capture((out / "capture.raw").read_bytes(), out / "proc")
    pids = {}
    ready = (out / "console.log").read_text(errors="replace")
    for line in ready.splitlines():
        if "mmintro: workload ready:" in line:
            toks = line.split("ready:", 1)[1].split()
            pids = {toks[i]: int(toks[i + 1]) for i in range(0, len(toks) - 1, 2)}
    if not pids:
        raise HarnessError("the console never said which processes the workload started")
    missing = [f for f in PROC_FILES if f not in names]
    missing += [f"{p}/{f}" for p in pids.values() for f in PROCESS_FILES if f"{p}/{f}" not in names]
    if missing:
        raise HarnessError(f"the capture lacks {', '.join(missing)}")
    ref = ReferenceDump(
        out,
        cfg,
        kernel.release,
        str(kernel.vmlinuz),
        str(kernel.system_map),
        str(kernel.config),
        pids,
        dumps,
        {"prepare": round(t_prep - t0, 2), "boot_and_run": round(t_run - t_prep, 2), "dump": round(t_dump - t_run, 2)},
    )
    (out / "manifest.json").write_text(json.dumps(_manifest(ref), indent=2) + "\n")
    (out / "capture.raw").unlink()
    return ref


# realkernel modules that make no dump (their changes must not invalidate the cached dumps)
_NOT_HARNESS = frozenset({"crash.py"})


class GuestCrashed(HarnessError):
    """The guest kernel died (QEMU exited) before the capture finished."""


def harness_key(cfg: GuestConfig) -> str:
    """A key for a dump made by this version of the harness with ``cfg``: the hash of the
    harness's sources (guest programs included) and the configuration."""
    h = hashlib.sha256(repr(sorted(asdict(cfg).items())).encode())
    root = Path(__file__).resolve().parent
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".c") and f.name not in _NOT_HARNESS:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def cached_reference_dump(cfg: GuestConfig, name: str, log=None) -> ReferenceDump:
    """The dump of ``cfg`` made by this harness version, from the cache or made now.

    Concurrent callers (pytest-xdist workers) wait on a lock file: the dump is made once.
    """
    root = cache_dir() / "refdumps"
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{name}-{harness_key(cfg)}"
    with open(root / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "manifest.json").exists():
            return load_reference_dump(out)
        for old in root.glob(f"{name}-*"):  # an older harness's dump of the same name
            if old.is_dir() and old != out:
                shutil.rmtree(old, ignore_errors=True)
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            try:
                return make_reference_dump(cfg, out, log)
            except GuestCrashed:
                # Multi-threaded TCG occasionally traps in the kernel's live code patching
                # ("Oops: int3" at a text_poke_bp site during an initcall, then a panic) on a
                # multi-CPU guest: a host-emulation flake, not the workload; boot again.
                if attempt == BOOT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")


BOOT_ATTEMPTS = 3


def _manifest(ref: ReferenceDump) -> dict:
    d = asdict(ref)
    d["dir"] = str(ref.dir)
    d["config"]["formats"] = list(ref.config.formats)
    return d


def load_reference_dump(directory: Path) -> ReferenceDump:
    """A dump directory made earlier (its manifest.json)."""
    directory = Path(directory)
    try:
        m = json.loads((directory / "manifest.json").read_text())
        cfg = GuestConfig(
            **{
                **m["config"],
                "formats": tuple(m["config"]["formats"]),
                "append": tuple(m["config"].get("append", ())),
                "modules": tuple(m["config"].get("modules", ())),
            }
        )
        return ReferenceDump(
            directory,
            cfg,
            m["kernel_release"],
            m["vmlinuz"],
            m["system_map"],
            m["kernel_config"],
            m["pids"],
            m["dumps"],
            m["timings"],
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HarnessError(f"{directory} is not a reference dump directory ({e})") from None
