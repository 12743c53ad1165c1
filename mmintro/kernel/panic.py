"""The kernel's taint state and its panic (kernel/panic.c, drivers/tty/sysrq.c).

``tainted_mask`` is 0: nothing has tainted the simulated kernel.  ``taint_flags[]`` is the
table /proc/sys/kernel/tainted's letters and crash's ``sys -t`` read, as 6.18 defines it
(``TAINT_FLAG(name, c_true, c_false, module)``, ``desc`` the flag's name).

A snapshot is what kdump leaves after someone made the machine dump on purpose, the way it is
done on a real one: ``echo c > /proc/sysrq-trigger``.  :func:`sysrq_crash` writes what that
leaves in the log ("sysrq: Trigger a crash", then panic()'s "Kernel panic - not syncing: sysrq
triggered crash"), which crash's sys prints as PANIC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

# kernel/panic.c: taint_flags[TAINT_FLAGS_COUNT], in TAINT_* bit order (include/linux/panic.h)
TAINT_FLAGS = [
    ("PROPRIETARY_MODULE", "P", "G", True),
    ("FORCED_MODULE", "F", " ", True),
    ("CPU_OUT_OF_SPEC", "S", " ", False),
    ("FORCED_RMMOD", "R", " ", False),
    ("MACHINE_CHECK", "M", " ", False),
    ("BAD_PAGE", "B", " ", False),
    ("USER", "U", " ", False),
    ("DIE", "D", " ", False),
    ("OVERRIDDEN_ACPI_TABLE", "A", " ", False),
    ("WARN", "W", " ", False),
    ("CRAP", "C", " ", True),
    ("FIRMWARE_WORKAROUND", "I", " ", False),
    ("OOT_MODULE", "O", " ", True),
    ("UNSIGNED_MODULE", "E", " ", True),
    ("SOFTLOCKUP", "L", " ", False),
    ("LIVEPATCH", "K", " ", True),
    ("AUX", "X", " ", True),
    ("RANDSTRUCT", "T", " ", True),
    ("TEST", "N", " ", True),
    ("FWCTL", "J", " ", True),
]
KERN_EMERG, KERN_INFO = 0, 6


def place_globals(k: Kernel) -> None:
    img, km = k.image, k.kmem
    img.var("tainted_mask", "bss")
    table = img.var("taint_flags", "rodata")
    n = k.T.var_type("taint_flags").resolved().nelems
    if n != len(TAINT_FLAGS):
        raise ValueError(f"taint_flags[] has {n} entries in the type data, 6.18 defines {len(TAINT_FLAGS)}")
    size = k.T.sizeof("struct taint_flag")
    for i, (name, c_true, c_false, module) in enumerate(TAINT_FLAGS):
        e = table + i * size
        km.set(e, "taint_flag", "c_true", ord(c_true))
        km.set(e, "taint_flag", "c_false", ord(c_false))
        km.set(e, "taint_flag", "module", int(module))
        km.set(e, "taint_flag", "desc", img.string(name))


def sysrq_crash(k: Kernel) -> None:
    """``echo c > /proc/sysrq-trigger``: __handle_sysrq's message, then sysrq_handle_crash()'s
    panic("sysrq triggered crash\\n").  Once: a machine panics only once."""
    if k.__dict__.get("panicked"):
        return
    k.panicked = True
    k.printk(KERN_INFO, "sysrq: Trigger a crash")
    k.printk(KERN_EMERG, "Kernel panic - not syncing: sysrq triggered crash")
