"""The guest's initramfs: busybox-static, the workload, the /proc capture and qemu_fw_cfg.

The archive is written here in the kernel's ``newc`` cpio format (usr/gen_init_cpio.c), so no
cpio tool is needed; the guest programs are compiled static with the system C compiler and
cached by the hash of their source.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from mmintro.realkernel.debian import HarnessError, KernelPackage, cache_dir

__all__ = ["build_initramfs", "guest_program", "INIT_SCRIPT", "PROC_FILES", "PROCESS_FILES"]

# What the capture reads, in this order (the system files, then each workload process's).
PROC_FILES = [
    "meminfo",
    "zoneinfo",
    "buddyinfo",
    "pagetypeinfo",
    "vmstat",
    "slabinfo",
    "vmallocinfo",
    "iomem",
    "version",
    "cmdline",
    "swaps",
    "self/sched",
    "pressure/memory",
    "pressure/cpu",
    "pressure/io",
]
# (self/sched, the capture's own, just before the pressure files: its se.exec_start is a CPU-clock
# time at or before their reads, which tells whether psi's averages moved after them.)
PROCESS_FILES = ["maps", "smaps", "smaps_rollup", "status", "numa_maps", "oom_score", "oom_score_adj"]

INIT_SCRIPT = r"""#!/bin/busybox sh
# PID 1 of the mmintro reference guest: mount, load qemu_fw_cfg (VMCOREINFO for the dump),
# start the workload, wait for it, then become the /proc capture (which idles until the dump).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /mnt/tmpfs
mount -t tmpfs -o size=64m tmpfs /mnt/tmpfs
insmod /lib/modules/qemu_fw_cfg.ko || echo "mmintro: insmod qemu_fw_cfg failed"
@MODULES@@SWAP@echo "mmintro: starting workload"
/bin/workload /ready /mnt/tmpfs @ANON_MIB@ @SWAP_MIB@ &
i=0
while [ ! -f /ready ] || [ "$(wc -l < /ready)" -lt 2 ]; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then echo "mmintro: workload never became ready"; exec sleep 100000; fi
    sleep 0.1
done
sleep 1
# The child gives itself up first to the OOM killer (a non-zero oom_score_adj, as /proc shows it).
while read role pid; do [ "$role" = child ] && echo 300 > /proc/$pid/oom_score_adj; done < /ready
files="@PROC_FILES@"
for pid in $(cut -d' ' -f2 /ready); do
    for f in @PROCESS_FILES@; do files="$files /proc/$pid/$f"; done
done
echo "mmintro: workload ready: $(tr '\n' ' ' < /ready)"
@PRESSURE@# Real addresses in %pK output (vmallocinfo's ranges) for root, as on a debugging box;
# with the default 0 they print hashed and could not be compared.
echo 1 > /proc/sys/kernel/kptr_restrict
exec /bin/capture /dev/ttyS1 $files
"""


# With a swap device (GuestConfig.swap_mib): virtio_blk's disk made swap and switched on, and
# swap readahead off (page-cluster 0: a swap-in fault reads only its own page), so that which
# pages are in the swap cache depends only on what the workload touches.
SWAP_SETUP = r"""i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
mkswap /dev/vda > /dev/null && swapon /dev/vda || echo "mmintro: swapon /dev/vda failed"
echo 0 > /proc/sys/vm/page-cluster
"""


def guest_program(name: str) -> Path:
    """The static binary of ``guest/NAME.c``, compiled once per source version."""
    src = resources.files("mmintro.realkernel").joinpath("guest", f"{name}.c").read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out = cache_dir() / "guest" / f"{name}-{digest}"
    if out.exists():
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise HarnessError("no C compiler (cc) to build the guest programs")
    out.parent.mkdir(parents=True, exist_ok=True)
    srcfile = out.with_suffix(".c")
    srcfile.write_bytes(src)
    tmp = out.with_name(out.name + ".tmp")
    p = subprocess.run(
        [cc, "-static", "-O2", "-Wall", "-pthread", "-o", str(tmp), str(srcfile)], capture_output=True, text=True
    )
    if p.returncode:
        first = (p.stderr.strip().splitlines() or ["?"])[0]
        raise HarnessError(f"cannot build the static guest program {name}: {first}")
    tmp.rename(out)
    return out


def _pressure_step(nr: int) -> str:
    """Memory pressure before the capture (GuestConfig.pressure_hugepages = N): fill N MiB of a
    tmpfs in 1 MiB files and delete every other one (the free memory is then in 1 MiB holes
    between movable shmem pages), ask for N 2 MiB hugetlb pages (more than there is) and give
    everything back.  The order-9 allocations compact -- migrating the shmem pages -- and reclaim
    in the slow path (__alloc_pages_direct_compact, __perform_reclaim) and wake kswapd and
    kcompactd, all inside psi_memstall_enter/leave: the memory PSI books move.  (Without the
    holes there is little to do on the swapless guest: a stall of a millisecond or so, below the
    1% of a 2 s period that psi's averages count, as calc_avgs() takes whole percents.)"""
    if not nr:
        return ""
    n = int(nr)
    return (
        f"mkdir -p /mnt/pressure && mount -t tmpfs -o size={n}m tmpfs /mnt/pressure\n"
        f"i=0; while [ $i -lt {n} ]; do dd if=/dev/zero of=/mnt/pressure/f$i bs=1M count=1 2>/dev/null; "
        "i=$((i + 1)); done\n"
        f"i=0; while [ $i -lt {n} ]; do rm /mnt/pressure/f$i; i=$((i + 2)); done\n"
        f"echo {n} > /proc/sys/vm/nr_hugepages; got=$(cat /proc/sys/vm/nr_hugepages)\n"
        "echo 0 > /proc/sys/vm/nr_hugepages; rm -f /mnt/pressure/*; umount /mnt/pressure\n"
        f'echo "mmintro: pressure: got $got of {n} huge pages"\n'
    )


class _Cpio:
    """newc cpio writer (the kernel's initramfs format, usr/gen_init_cpio.c)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        nm = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nm), 0)
        )
        self.ino += 1
        blob = hdr.encode() + nm
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self.parts.append(blob)

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o755) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        out = b"".join(self.parts)
        return out + b"\0" * (-len(out) % 512)


def _module_bytes(kernel: KernelPackage, name: str) -> bytes:
    ko = kernel.module(name)
    return lzma.decompress(ko.read_bytes()) if ko.suffix == ".xz" else ko.read_bytes()


def _with_dependencies(kernel: KernelPackage, names: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """``names`` and what they need (each module's modinfo ``depends=``), dependencies first."""
    out: dict[str, bytes] = {}

    def add(name: str, chain: tuple[str, ...]) -> None:
        if name in out:
            return
        if name in chain or len(chain) > 16:
            raise HarnessError(f"module dependencies loop at {name}")
        data = _module_bytes(kernel, name)
        m = re.search(rb"(?:^|\0)depends=([^\0]*)", data)
        for dep in m.group(1).decode().split(",") if m and m.group(1) else []:
            add(dep.strip(), chain + (name,))
        out[name] = data

    for n in names:
        add(n, ())
    return list(out.items())


def build_initramfs(
    kernel: KernelPackage,
    dest: Path,
    anon_mib: int = 16,
    modules: tuple[str, ...] = (),
    pressure_hugepages: int = 0,
    swap_mib: int = 0,
) -> Path:
    """Write the guest's initramfs for ``kernel`` to ``dest`` (with ``modules`` loaded by init;
    ``pressure_hugepages``: see GuestConfig; with ``swap_mib`` the swap device on /dev/vda
    switched on and a swap region in the workload)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise HarnessError("busybox is not installed (Debian package busybox-static)")
    bb = Path(busybox).read_bytes()
    if b"GLIBC_2." in bb[:4096] or b"/lib64/ld-linux" in bb[:8192]:
        raise HarnessError(f"{busybox} is dynamically linked: install busybox-static")
    ko = kernel.module("qemu_fw_cfg")
    ko_bytes = lzma.decompress(ko.read_bytes()) if ko.suffix == ".xz" else ko.read_bytes()
    if swap_mib and "virtio_blk" not in modules:
        modules = tuple(modules) + ("virtio_blk",)
    extra = _with_dependencies(kernel, tuple(modules))
    loads = "".join(f'insmod /lib/modules/{n}.ko || echo "mmintro: insmod {n} failed"\n' for n, _b in extra)
    swap_region = min(int(swap_mib) // 2, 8) if swap_mib else 0  # MiB the workload swaps out
    init = (
        INIT_SCRIPT.replace("@ANON_MIB@", str(int(anon_mib)))
        .replace("@MODULES@", loads)
        .replace("@PRESSURE@", _pressure_step(pressure_hugepages))
        .replace("@SWAP@", SWAP_SETUP if swap_mib else "")
        .replace("@SWAP_MIB@", str(swap_region))
        .replace("@PROC_FILES@", " ".join(f"/proc/{f}" for f in PROC_FILES))
        .replace("@PROCESS_FILES@", " ".join(PROCESS_FILES))
    )
    c = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "mnt", "lib", "lib/modules", "tmp"):
        c.dir(d)
    c.file("bin/busybox", bb)
    c.symlink("bin/sh", "busybox")
    c.file("bin/workload", guest_program("workload").read_bytes())
    c.file("bin/capture", guest_program("capture").read_bytes())
    c.file("lib/modules/qemu_fw_cfg.ko", ko_bytes, 0o644)
    for n, data in extra:
        c.file(f"lib/modules/{n}.ko", data, 0o644)
    c.file("init", init.encode())
    dest.write_bytes(c.finish())
    return dest
