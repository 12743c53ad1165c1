"""Kconfig and boot-parameter facts of the simulated kernel (the reference 6.18 build).

These are configuration choices, not layouts (which always come from the type data); each
is as measured in ../shared/reference/config.txt of the reference kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

NR_CPUS = 256
NODES_SHIFT = 10
MAX_NUMNODES = 1 << NODES_SHIFT
MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
NR_PAGEBLOCK_BITS = 8
PAGE_ALLOC_COSTLY_ORDER = 3
THREAD_SIZE = 16384
HZ = 250
CPU_KHZ = 2_400_000  # the simulated machine's TSC: 2.4 GHz
OSRELEASE = "6.18.0-mmintro"
UTS_VERSION = "#1 SMP PREEMPT_DYNAMIC"
# page->flags layout (include/linux/page-flags-layout.h): SECTIONS_WIDTH = 0 with VMEMMAP,
# NODES_SHIFT 10, ZONES_SHIFT 3 (5 zones), LAST_CPUPID = LAST__PID_SHIFT 8 + NR_CPUS_BITS 8.
ZONES_SHIFT = 3
LAST_CPUPID_SHIFT = 16
NODES_PGOFF = 64 - NODES_SHIFT
ZONES_PGOFF = NODES_PGOFF - ZONES_SHIFT
LAST_CPUPID_PGOFF = ZONES_PGOFF - LAST_CPUPID_SHIFT
# sysctl vm.* defaults (procfs/sys/proc_sys_vm.txt)
WATERMARK_SCALE_FACTOR = 10
WATERMARK_BOOST_FACTOR = 15000
LOWMEM_RESERVE_RATIO = [256, 256, 32, 0, 0]
OVERCOMMIT_RATIO = 50
DIRTY_RATIO = 20
DIRTY_BACKGROUND_RATIO = 10
SWAP_CLUSTER_MAX = 32


# The simulator's limits (MachineConfig.validate): what fits this project's 24 GiB machines with
# the compact memory map (mmintro.kernel.sparse); CPUs up to the build's NR_CPUS.
MAX_RAM = 1 << 40
MAX_NODES = 8


def parse_size(s: str | int) -> int:
    """'4G', '512M', '65536K' or a byte count."""
    if isinstance(s, int):
        return s
    t = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


@dataclass(frozen=True)
class MachineConfig:
    """What the simulated PC has: RAM, NUMA nodes, CPUs, and the seed of its randomness."""

    ram: int = 4 << 30
    nodes: int = 1
    cpus: int = 2
    seed: int = 0
    # Huge pages (HUGE): the THP mode as transparent_hugepage= sets it (CONFIG_TRANSPARENT_HUGEPAGE_MADVISE
    # default), and the hugetlb pools reserved at boot as hugepagesz=2M hugepages=N and
    # hugepagesz=1G hugepages=N would (1 GiB pages from memblock, 2 MiB pages from the buddy).
    thp: str = "madvise"
    hugepages_2m: int = 0
    hugepages_1g: int = 0
    # The kernel command line, verbatim (saved_command_line, the boot log's "Command line:"), and
    # the options on it that the simulator models (mmintro.kernel.cmdline.parse_cmdline fills
    # them from ``cmdline``; each may also be given directly, as the command line would set it):
    # ``mem=``/``memmap=`` edits of the e820 map in order, ``kernelcore=``/``movablecore=``
    # (ZONE_MOVABLE), the ``hugepagesz=``/``hugepages=``/``default_hugepagesz=`` sequence
    # (instead of hugepages_2m/hugepages_1g), ``hugepage_alloc_threads=`` and the
    # ``sysctl.vm.*`` writes, (name, value) pairs in order.
    cmdline: str = ""
    e820_params: tuple = ()
    kernelcore: str | None = None
    movablecore: str | None = None
    hugetlb_params: tuple = ()
    hugepage_alloc_threads: int = 0
    sysctl: tuple = ()
    # A machine's own firmware map (mmintro.kernel.e820.parse_e820, or a real dump's e820_table)
    # instead of the generic PC's for ``ram``; and its nodes' physical ranges [start, end) instead
    # of RAM split evenly on section boundaries.
    e820: tuple | None = None
    node_ranges: tuple | None = None
    # The rest of a real machine's boot (``--like``): the node of each CPU (else CPUs in blocks,
    # cpu * nodes // cpus), the kernel build's image layout (kimage.ImageLayout, else the
    # reference build's) and the physical address it was loaded at (KASLR; else 16 MiB), and
    # the initrd the boot loader put in memory, (start, size): reserved by setup_arch, freed by
    # populate_rootfs.
    cpu_nodes: tuple | None = None
    kernel_layout: object | None = None
    kernel_phys: int | None = None
    initrd: tuple | None = None
    # The machine's device resources in /proc/iomem, (name, start, end, flags, desc) each (PCI
    # windows, ROMs, HPET, IOAPIC, ...; from a real dump's iomem_resource tree), instead of the
    # reference machine's chipset.
    platform_iomem: tuple | None = None

    def __post_init__(self) -> None:
        """The options ``cmdline`` sets become the fields above (a field given directly must
        agree with the command line)."""
        if not self.cmdline:
            return
        from dataclasses import fields

        from mmintro.kernel.cmdline import config_fields

        defaults = {f.name: f.default for f in fields(self)}
        for name, value in config_fields(self.cmdline).items():
            current = getattr(self, name)
            if current == defaults[name]:
                object.__setattr__(self, name, value)
            elif current != value:
                raise ValueError(f"{name} is {current!r} but the kernel command line sets {value!r}")

    def firmware_e820(self) -> list:
        """The firmware's map: the machine's own, else the generic PC's for ``ram``."""
        from mmintro.kernel.e820 import build_e820

        return list(self.e820) if self.e820 is not None else build_e820(self.ram)

    def user_e820(self) -> list:
        """The map the kernel boots on: the firmware's after ``mem=``/``memmap=``."""
        if not self.e820_params:
            return self.firmware_e820()
        from mmintro.kernel.cmdline import CmdlineError
        from mmintro.kernel.e820 import E820Error, e820_user_map

        try:
            return e820_user_map(self.firmware_e820(), self.e820_params)[0]
        except E820Error as e:
            raise CmdlineError(f"kernel command line: mem=/memmap=: {e}") from None

    def huge_params(self) -> tuple:
        """The hugetlb boot parameters in order: ``hugetlb_params``, or hugepages_1g/hugepages_2m
        as ``hugepagesz=1G hugepages=N hugepagesz=2M hugepages=M`` (the 1 GiB hstate first, 2 MiB
        the default, as the simulator has always registered them)."""
        if self.hugetlb_params or not (self.hugepages_1g or self.hugepages_2m):
            return self.hugetlb_params
        return (
            ("hugepagesz", "1G"),
            ("hugepages", str(self.hugepages_1g)),
            ("hugepagesz", "2M"),
            ("hugepages", str(self.hugepages_2m)),
        )

    def usable_ram(self) -> int:
        if self.e820 is None and not self.e820_params:
            return self.ram
        from mmintro.kernel.e820 import E820_TYPE_RAM

        return sum(e.size for e in self.user_e820() if e.type == E820_TYPE_RAM)

    def validate(self) -> None:
        if self.e820 is None and (self.ram % (128 << 20) or not (256 << 20) <= self.ram <= MAX_RAM):
            raise ValueError("ram must be a multiple of 128M between 256M and 1T")
        if self.e820 is not None and self.usable_ram() > MAX_RAM:
            raise ValueError("the e820 map has more than 1T of usable RAM (the simulator's limit)")
        if not 1 <= self.nodes <= MAX_NODES:
            raise ValueError(f"nodes must be 1..{MAX_NODES}")
        if self.cpus < self.nodes:
            # CPUs are spread over the nodes in blocks (cpu * nodes // cpus): fewer CPUs than
            # nodes would leave a node without one
            raise ValueError(
                f"{self.nodes} nodes need at least {self.nodes} CPUs (each node has a CPU), not {self.cpus}"
            )
        if self.node_ranges is not None and len(self.node_ranges) != self.nodes:
            raise ValueError(f"{len(self.node_ranges)} node ranges for {self.nodes} nodes")
        if self.node_ranges is None and self.usable_ram() // self.nodes < (256 << 20):
            raise ValueError("each node needs at least 256M of RAM")
        if not 1 <= self.cpus <= NR_CPUS:
            raise ValueError(f"cpus must be 1..{NR_CPUS}")
        if self.cpu_nodes is not None and (
            len(self.cpu_nodes) != self.cpus or sorted(set(self.cpu_nodes)) != list(range(self.nodes))
        ):
            raise ValueError(
                f"cpu_nodes {self.cpu_nodes} must give each of the {self.cpus} CPUs a node, "
                f"every node 0..{self.nodes - 1} a CPU"
            )
        if self.kernel_phys is not None and (self.kernel_phys % (2 << 20) or self.kernel_phys < (16 << 20)):
            raise ValueError(f"kernel_phys {self.kernel_phys:#x} must be 2 MiB aligned and at least 16 MiB")
        if self.initrd is not None and (self.initrd[0] % 4096 or self.initrd[1] <= 0):
            raise ValueError(f"initrd {self.initrd} must be a page-aligned (start, size)")
        if self.thp not in ("always", "madvise", "never"):
            raise ValueError("thp must be always, madvise or never")
        if self.hugepages_2m < 0 or self.hugepages_1g < 0:
            raise ValueError("hugepages counts must be >= 0")
        self.validate_boot_params()

    def validate_boot_params(self) -> None:
        """The command-line options against this machine (one line naming the option)."""
        from mmintro.kernel.cmdline import CmdlineError, check_config

        if self.hugetlb_params and (self.hugepages_1g or self.hugepages_2m):
            raise CmdlineError(
                "huge pages are given both as hugepages_1g/hugepages_2m and as hugepagesz=/hugepages=: use one"
            )
        check_config(self)
        if self.e820 is not None or self.e820_params:  # persistent memory memremap_pages() can map
            from mmintro.kernel.e820 import E820_TYPE_PRAM
            from mmintro.kernel.memremap import check_pmem_ranges

            check_pmem_ranges([(e.addr, e.end) for e in self.user_e820() if e.type == E820_TYPE_PRAM])
