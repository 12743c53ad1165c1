"""The software IO TLB (kernel/dma/swiotlb.c, arch/x86/kernel/pci-dma.c).

x86's pci_swiotlb_detect() turns swiotlb on when memory reaches past 4 GiB (max_pfn >
MAX_DMA32_PFN) and no IOMMU is set up; mm_core_init() -> arch_mm_preinit() ->
pci_iommu_alloc() -> swiotlb_init() then takes the bounce buffer (IO_TLB_DEFAULT_SIZE, 64 MiB)
from memblock below 4 GiB (memblock_alloc_low), and its slot array and areas from memblock
anywhere.  All of it stays reserved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

IO_TLB_SHIFT = 11
IO_TLB_SIZE = 1 << IO_TLB_SHIFT
IO_TLB_DEFAULT_SIZE = 64 << 20
MAX_DMA32_PFN = 1 << (32 - PAGE_SHIFT)
ARCH_LOW_ADDRESS_LIMIT = 1 << 32  # memblock_alloc_low(): below 4 GiB


def swiotlb_init(k: Kernel) -> None:
    if k.max_pfn <= MAX_DMA32_PFN:
        return
    nslabs = IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT
    # swiotlb_adjust_nareas(num_possible_cpus()): a power of two, at most one per 2^? slabs
    nareas = 1 << (max(k.config.cpus, 1) - 1).bit_length()
    k.printk(6, f"software IO TLB: area num {nareas}.")
    tlb = k.memblock.alloc(IO_TLB_DEFAULT_SIZE, PAGE_SIZE, limit=ARCH_LOW_ADDRESS_LIMIT)
    slot = k.T.sizeof("struct io_tlb_slot")
    k.memblock.alloc(-(-nslabs * slot // PAGE_SIZE) * PAGE_SIZE, PAGE_SIZE)  # mem->slots
    k.memblock.alloc(k.T.sizeof("struct io_tlb_area") * nareas, 64)  # mem->areas
    k.swiotlb = (tlb, IO_TLB_DEFAULT_SIZE)


def swiotlb_print_info(k: Kernel) -> None:
    """swiotlb_print_info() (pci_iommu_init, a rootfs initcall)."""
    if getattr(k, "swiotlb", None):
        start, size = k.swiotlb
        k.printk(6, f"software IO TLB: mapped [mem {start:#018x}-{start + size:#018x}] ({size >> 20}MB)")
