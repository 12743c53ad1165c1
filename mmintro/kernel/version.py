"""The kernel's name for itself (init/version.c, include/generated/compile.h).

``init_uts_ns`` holds what ``uname(2)`` returns (``INIT_NEW_UTSNAME``: "Linux", "(none)",
UTS_RELEASE, UTS_VERSION, "x86_64", "(none)"), and ``linux_banner`` the "Linux version"
line the boot log starts with and /proc/version prints.  crash reads the utsname at start-up
and requires the banner, in memory and in the vmlinux file, to begin with "Linux version";
``sys`` prints them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

UTS_SYSNAME = "Linux"
UTS_NODENAME = "(none)"  # CONFIG_DEFAULT_HOSTNAME
UTS_MACHINE = "x86_64"
UTS_DOMAINNAME = "(none)"
LINUX_COMPILE_BY = "mmintro"
LINUX_COMPILE_HOST = "simulator"
LINUX_COMPILER = "mmintro simulated kernel, no compiler"
# include/linux/proc_ns.h
PROC_UTS_INIT_INO = 0xEFFFFFFE


def linux_banner() -> str:
    """init/version.c: ``"Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY "@" LINUX_COMPILE_HOST
    ") (" LINUX_COMPILER ") " UTS_VERSION "\\n"``."""
    return (
        f"Linux version {kc.OSRELEASE} ({LINUX_COMPILE_BY}@{LINUX_COMPILE_HOST}) ({LINUX_COMPILER}) {kc.UTS_VERSION}\n"
    )


def place_globals(k: Kernel) -> None:
    """``init_uts_ns`` in .data and ``linux_banner`` in .rodata, with their values."""
    img, km = k.image, k.kmem
    banner = linux_banner().encode() + b"\0"
    img.var("linux_banner", "rodata", size=len(banner))
    km.write_bytes(k.sym("linux_banner"), banner)
    ns = img.var("init_uts_ns", "data")
    name = km.addr(ns, "uts_namespace", "name")
    for field, text in (
        ("sysname", UTS_SYSNAME),
        ("nodename", UTS_NODENAME),
        ("release", kc.OSRELEASE),
        ("version", kc.UTS_VERSION),
        ("machine", UTS_MACHINE),
        ("domainname", UTS_DOMAINNAME),
    ):
        km.write_bytes(km.addr(name, "new_utsname", field), text.encode() + b"\0")
    ns_common = k.T.struct("ns_common")
    if ns_common.has_member("inum"):
        km.set(ns, "uts_namespace", "ns.inum", PROC_UTS_INIT_INO)
    if ns_common.has_member("__ns_ref"):
        km.set(ns, "uts_namespace", "ns.__ns_ref.refs.counter", 2)  # REFCOUNT_INIT(2)
