"""The kernel's own configuration, built in (kernel/configs.c, CONFIG_IKCONFIG).

The reference 6.18 build has CONFIG_IKCONFIG (and /proc/config.gz): its .config, gzipped, sits in
.rodata between the markers "IKCFG_ST" and "IKCFG_ED", at ``kernel_config_data`` ..
``kernel_config_data_end``.  crash reads CONFIG_HZ, CONFIG_NR_CPUS and a few more from it (without
it crash assumes HZ=1000 and gets the uptime wrong).

The simulated kernel's configuration is the set of options this package models, with the values of
:mod:`mmintro.kernel.config` and the type data; options it does not model are not listed.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

from mmintro.kernel import config as kc
from mmintro.kernel import printk

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

MAGIC_START = b"IKCFG_ST"
MAGIC_END = b"IKCFG_ED"


def config_text(k: Kernel) -> str:
    """The .config of the simulated kernel (the options it models)."""
    nr_cpus = k.T.sizeof("struct cpumask") * 8
    options = [
        ("CONFIG_64BIT", "y"),
        ("CONFIG_X86_64", "y"),
        ("CONFIG_X86", "y"),
        ("CONFIG_LOCALVERSION", f'"{kc.OSRELEASE.split("-", 1)[1] if "-" in kc.OSRELEASE else ""}"'),
        ("CONFIG_LOG_BUF_SHIFT", str(printk.LOG_BUF_SHIFT)),
        ("CONFIG_IKCONFIG", "y"),
        ("CONFIG_IKCONFIG_PROC", "y"),
        ("CONFIG_SMP", "y"),
        ("CONFIG_NR_CPUS", str(nr_cpus)),
        ("CONFIG_NUMA", "y"),
        ("CONFIG_NODES_SHIFT", str(kc.NODES_SHIFT)),
        (f"CONFIG_HZ_{kc.HZ}", "y"),
        ("CONFIG_HZ", str(kc.HZ)),
        ("CONFIG_PREEMPT_DYNAMIC", "y"),
        ("CONFIG_PHYSICAL_START", "0x1000000"),
        ("CONFIG_PGTABLE_LEVELS", "5"),
        ("CONFIG_KEXEC_CORE", "y"),
        ("CONFIG_CRASH_DUMP", "y"),
        ("CONFIG_VMAP_STACK", "y"),
        ("CONFIG_SPARSEMEM", "y"),
        ("CONFIG_SPARSEMEM_EXTREME", "y"),
        ("CONFIG_SPARSEMEM_VMEMMAP", "y"),
        ("CONFIG_SLUB", "y"),
        ("CONFIG_TRANSPARENT_HUGEPAGE", "y"),
        ("CONFIG_HUGETLBFS", "y"),
        ("CONFIG_HUGETLB_PAGE", "y"),
        ("CONFIG_SHMEM", "y"),
        ("CONFIG_TMPFS", "y"),
        ("CONFIG_PRINTK", "y"),
        ("CONFIG_KALLSYMS", "y"),
        ("CONFIG_DEBUG_INFO_BTF", "y"),
    ]
    head = (
        "#\n# Automatically generated file; DO NOT EDIT.\n"
        f"# Linux/x86 {kc.OSRELEASE.split('-')[0]} Kernel Configuration\n#\n"
    )
    return head + "".join(f"{name}={value}\n" for name, value in options)


def place_globals(k: Kernel) -> None:
    """ "IKCFG_ST", kernel_config_data (the gzipped .config), kernel_config_data_end, "IKCFG_ED"
    in .rodata."""
    img = k.image
    data = gzip.compress(config_text(k).encode(), mtime=0)
    start = img.reserve("rodata", len(MAGIC_START) + len(data) + len(MAGIC_END), 8)
    k.kmem.write_bytes(start, MAGIC_START + data + MAGIC_END)
    img.add("kernel_config_data", start + len(MAGIC_START), len(data), "object", section="rodata")
    img.add("kernel_config_data_end", start + len(MAGIC_START) + len(data), 0, "object", section="rodata")
