"""x86-64 constants that are #defines in the kernel, not types, so BTF does not carry them.

Everything here is restated from the 6.18 sources named beside it; struct layouts and enum
values never appear here (they come from the pinned type data).
"""

from __future__ import annotations

# arch/x86/include/asm/page_types.h, page_64_types.h
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SHIFT = 21
PUD_SHIFT = 30
PGDIR_SHIFT = 39
PTRS_PER_TABLE = 512
__START_KERNEL_map = 0xFFFFFFFF80000000
KERNEL_IMAGE_SIZE = 1 << 30
PHYSICAL_START = 0x1000000  # CONFIG_PHYSICAL_START
# Default (non-randomised) bases, 4-level paging (arch/x86/include/asm/pgtable_64_types.h).
PAGE_OFFSET_BASE_L4 = 0xFFFF888000000000
VMALLOC_BASE_L4 = 0xFFFFC90000000000
VMALLOC_SIZE_TB_L4 = 32
VMEMMAP_BASE_L4 = 0xFFFFEA0000000000
MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE
MAX_PHYSMEM_BITS = 46  # 4-level (arch/x86/include/asm/sparsemem.h)
SECTION_SIZE_BITS = 27
PTE_PFN_MASK = ((1 << 52) - 1) & ~(PAGE_SIZE - 1)

# arch/x86/include/asm/pgtable_types.h: _PAGE_BIT_*
_PAGE_BIT_PRESENT = 0
_PAGE_BIT_RW = 1
_PAGE_BIT_USER = 2
_PAGE_BIT_PWT = 3
_PAGE_BIT_PCD = 4
_PAGE_BIT_ACCESSED = 5
_PAGE_BIT_DIRTY = 6
_PAGE_BIT_PSE = 7
_PAGE_BIT_PAT = 7
_PAGE_BIT_GLOBAL = 8
_PAGE_BIT_SOFTW1 = 9
_PAGE_BIT_SOFTW2 = 10
_PAGE_BIT_SOFTW3 = 11
_PAGE_BIT_PAT_LARGE = 12
_PAGE_BIT_SOFTW4 = 57
_PAGE_BIT_SOFTW5 = 58
_PAGE_BIT_PKEY_BIT0 = 59
_PAGE_BIT_NX = 63

_PAGE_PRESENT = 1 << _PAGE_BIT_PRESENT
_PAGE_RW = 1 << _PAGE_BIT_RW
_PAGE_USER = 1 << _PAGE_BIT_USER
_PAGE_PWT = 1 << _PAGE_BIT_PWT
_PAGE_PCD = 1 << _PAGE_BIT_PCD
_PAGE_ACCESSED = 1 << _PAGE_BIT_ACCESSED
_PAGE_DIRTY = 1 << _PAGE_BIT_DIRTY
_PAGE_PSE = 1 << _PAGE_BIT_PSE
_PAGE_GLOBAL = 1 << _PAGE_BIT_GLOBAL
_PAGE_SPECIAL = 1 << _PAGE_BIT_SOFTW1
_PAGE_NX = 1 << _PAGE_BIT_NX

# Names of the entry bits as crash's vtop prints them, lowest bit first.
PTE_BIT_NAMES = [
    (_PAGE_PRESENT, "PRESENT"), (_PAGE_RW, "RW"), (_PAGE_USER, "USER"), (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "ACCESSED"), (_PAGE_DIRTY, "DIRTY"), (_PAGE_PSE, "PSE"),
    (_PAGE_GLOBAL, "GLOBAL"), (_PAGE_NX, "NX"),
]

# Composite protections (pgtable_types.h): __PAGE_KERNEL and friends, as the direct map,
# vmemmap and kernel image use them.
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY
_PAGE_TABLE = _KERNPG_TABLE | _PAGE_USER
__PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL | _PAGE_NX
__PAGE_KERNEL_EXEC = __PAGE_KERNEL & ~_PAGE_NX
__PAGE_KERNEL_LARGE = __PAGE_KERNEL | _PAGE_PSE
__PAGE_KERNEL_LARGE_EXEC = __PAGE_KERNEL_EXEC | _PAGE_PSE

# Paging levels as data (volatility3's style): name, shift of the address bits it indexes.
LEVELS_4 = [("PGD", PGDIR_SHIFT), ("PUD", PUD_SHIFT), ("PMD", PMD_SHIFT), ("PTE", PAGE_SHIFT)]

# Spellings without leading double underscores (Python mangles those inside classes).
START_KERNEL_MAP = __START_KERNEL_map
PAGE_KERNEL = __PAGE_KERNEL
PAGE_KERNEL_LARGE = __PAGE_KERNEL_LARGE
PAGE_KERNEL_LARGE_EXEC = __PAGE_KERNEL_LARGE_EXEC
