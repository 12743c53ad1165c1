"""Time (kernel/time/jiffies.c, kernel/time/timekeeping.c, arch/x86/kernel/tsc.c).

The simulated machine's clock is its uptime: it has been up ``BOOT_UPTIME_S`` when the workload
starts, and :func:`tick` lets time pass (the flusher's and the dirty throttle's sleeps).  The
kernel keeps it in three places a debugger reads:

* ``jiffies_64`` (and ``jiffies``, the linker-script alias at the same address): INITIAL_JIFFIES
  plus the uptime in ticks; crash's UPTIME is ``(jiffies_64 - INITIAL_JIFFIES) / HZ``.
* ``tk_core.timekeeper``: ``xtime_sec`` (the wall clock, crash's DATE), ``ktime_sec`` (the
  monotonic seconds), ``wall_to_monotonic`` and ``offs_real`` between the two.  The machine was
  switched on at ``BOOT_WALL_TIME``.
* ``cpu_khz``: the TSC frequency, crash's "(N Mhz)".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

HZ = kc.HZ
INITIAL_JIFFIES = (-300 * HZ) & 0xFFFFFFFF  # include/linux/jiffies.h (unsigned int)(-300*HZ)
BOOT_UPTIME_S = 60  # the simulated machine has been up a minute when the workload starts
BOOT_WALL_TIME = 1767225600  # the machine was switched on at 2026-01-01 00:00:00 UTC
NSEC_PER_SEC = 1_000_000_000
MASK64 = (1 << 64) - 1


def jiffies(k: Kernel) -> int:
    """The simulated jiffies: INITIAL_JIFFIES + the machine's uptime in ticks."""
    return (INITIAL_JIFFIES + k.__dict__.setdefault("uptime_jiffies", BOOT_UPTIME_S * HZ)) & MASK64


def tick(k: Kernel, seconds: float) -> int:
    """Let ``seconds`` of simulated time pass; returns jiffies."""
    k.uptime_jiffies = k.__dict__.setdefault("uptime_jiffies", BOOT_UPTIME_S * HZ) + int(seconds * HZ)
    return jiffies(k)


def uptime_ns(k: Kernel) -> int:
    return k.__dict__.setdefault("uptime_jiffies", BOOT_UPTIME_S * HZ) * (NSEC_PER_SEC // HZ)


def wall_seconds(k: Kernel) -> int:
    """ktime_get_real_seconds(): what kdump writes as VMCOREINFO's CRASHTIME."""
    return BOOT_WALL_TIME + uptime_ns(k) // NSEC_PER_SEC


def place_globals(k: Kernel) -> None:
    """``jiffies_64``/``jiffies``, ``tk_core`` and ``cpu_khz``, kept current at every sync."""
    img = k.image
    addr = img.var("jiffies_64", "data")
    img.add("jiffies", addr, k.T.sizeof("unsigned long"), "object", k.T.var_type("jiffies"), "data")
    img.var("tk_core", "data", align=64)
    img.var("cpu_khz", "data")
    k.write_int("cpu_khz", kc.CPU_KHZ)
    k.sync_hooks.append(write_clocks)


def write_clocks(k: Kernel) -> None:
    km = k.kmem
    km.write_u64(k.sym("jiffies_64"), jiffies(k))
    tk = km.addr(k.sym("tk_core"), "tk_data", "timekeeper")
    now = uptime_ns(k)
    mono_sec = now // NSEC_PER_SEC
    km.set(tk, "timekeeper", "xtime_sec", wall_seconds(k))
    km.set(tk, "timekeeper", "ktime_sec", mono_sec)
    km.set(tk, "timekeeper", "wall_to_monotonic.tv_sec", -BOOT_WALL_TIME & MASK64)
    km.set(tk, "timekeeper", "offs_real", BOOT_WALL_TIME * NSEC_PER_SEC)
    km.set(tk, "timekeeper", "tkr_mono.base", now)
    km.set(tk, "timekeeper", "tkr_raw.base", now)
    km.set(tk, "timekeeper", "raw_sec", mono_sec)
