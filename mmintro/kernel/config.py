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

    def usable_ram(self) -> int:
        if self.e820 is None:
            return self.ram
        from mmintro.kernel.e820 import E820_TYPE_RAM

        return sum(e.size for e in self.e820 if e.type == E820_TYPE_RAM)

    def validate(self) -> None:
        if self.e820 is None and (self.ram % (128 << 20) or not (256 << 20) <= self.ram <= (64 << 30)):
            raise ValueError("ram must be a multiple of 128M between 256M and 64G")
        if self.e820 is not None and self.usable_ram() > (64 << 30):
            raise ValueError("the e820 map has more than 64G of usable RAM (the simulator's limit for now)")
        if not 1 <= self.nodes <= 4:
            raise ValueError("nodes must be 1..4")
        if self.cpus < self.nodes:
            # CPUs are spread over the nodes in blocks (cpu * nodes // cpus): fewer CPUs than
            # nodes would leave a node without one
            raise ValueError(f"{self.nodes} nodes need at least {self.nodes} CPUs (each node has a CPU), not {self.cpus}")
        if self.node_ranges is not None and len(self.node_ranges) != self.nodes:
            raise ValueError(f"{len(self.node_ranges)} node ranges for {self.nodes} nodes")
        if self.node_ranges is None and self.usable_ram() // self.nodes < (256 << 20):
            raise ValueError("each node needs at least 256M of RAM")
        if not 1 <= self.cpus <= 64:
            raise ValueError("cpus must be 1..64")
        if self.cpu_nodes is not None and (len(self.cpu_nodes) != self.cpus or
                                           sorted(set(self.cpu_nodes)) != list(range(self.nodes))):
            raise ValueError(f"cpu_nodes {self.cpu_nodes} must give each of the {self.cpus} CPUs a node, "
                             f"every node 0..{self.nodes - 1} a CPU")
        if self.kernel_phys is not None and (self.kernel_phys % (2 << 20) or self.kernel_phys < (16 << 20)):
            raise ValueError(f"kernel_phys {self.kernel_phys:#x} must be 2 MiB aligned and at least 16 MiB")
        if self.initrd is not None and (self.initrd[0] % 4096 or self.initrd[1] <= 0):
            raise ValueError(f"initrd {self.initrd} must be a page-aligned (start, size)")
        if self.thp not in ("always", "madvise", "never"):
            raise ValueError("thp must be always, madvise or never")
        if self.hugepages_2m < 0 or self.hugepages_1g < 0:
            raise ValueError("hugepages counts must be >= 0")
