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
VMALLOC_SIZE_TB_L5 = 12800  # 5-level paging (pgtable_64_types.h)
VMEMMAP_BASE_L4 = 0xFFFFEA0000000000
MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE
MODULES_END = 0xFFFFFFFFFF000000  # arch/x86/include/asm/pgtable_64_types.h
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
# _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL: only on non-present user entries (PROT_NONE)
_PAGE_PROTNONE = _PAGE_GLOBAL
# x86-64: _PAGE_BIT_SAVED_DIRTY = _PAGE_BIT_SOFTW5 (since 6.6, for shadow stacks): pte_wrprotect()
# moves a clear-RW entry's Dirty into SavedDirty (mksaveddirty_shift), and pte_dirty() /
# pmd_dirty() test both: _PAGE_DIRTY_BITS = _PAGE_DIRTY | _PAGE_SAVED_DIRTY.
_PAGE_BIT_SAVED_DIRTY = _PAGE_BIT_SOFTW5
_PAGE_SAVED_DIRTY = 1 << _PAGE_BIT_SAVED_DIRTY
_PAGE_DIRTY_BITS = _PAGE_DIRTY | _PAGE_SAVED_DIRTY

# arch/x86/include/asm/page_types.h: PHYSICAL_PMD_PAGE_MASK / PHYSICAL_PUD_PAGE_MASK
# (PMD_MASK / PUD_MASK & __PHYSICAL_MASK, __PHYSICAL_MASK_SHIFT 52)
PHYSICAL_PMD_PAGE_MASK = ((1 << 52) - 1) & ~((1 << PMD_SHIFT) - 1)
PHYSICAL_PUD_PAGE_MASK = ((1 << 52) - 1) & ~((1 << PUD_SHIFT) - 1)


# arch/x86/include/asm/pgtable-invert.h (L1TF): a non-zero entry without _PAGE_PRESENT
# (PROT_NONE, swap, migration) holds its PFN bits inverted.
def __pte_needs_invert(val: int) -> bool:
    return bool(val) and not val & _PAGE_PRESENT


def protnone_mask(val: int) -> int:
    """The mask to xor with an entry to get the correct pfn (~0 for an inverted one)."""
    return (1 << 64) - 1 if __pte_needs_invert(val) else 0


def flip_protnone_guard(oldval: int, val: int, mask: int) -> int:
    """Invert the PFN part (``mask``) when an entry turns PROT_NONE or back."""
    if __pte_needs_invert(oldval) != __pte_needs_invert(val):
        val = (val & ~mask) | (~val & mask)
    return val


# arch/x86/include/asm/pgtable.h: pte_pfn / pmd_pfn / pud_pfn undo the inversion;
# pmd_pfn_mask / pud_pfn_mask (pgtable_types.h) are the PHYSICAL_P?D_PAGE_MASK of a leaf.
def pte_pfn(e: int) -> int:
    return ((e ^ protnone_mask(e)) & PTE_PFN_MASK) >> PAGE_SHIFT


def pmd_pfn(e: int) -> int:
    mask = PHYSICAL_PMD_PAGE_MASK if e & _PAGE_PSE else PTE_PFN_MASK
    return ((e ^ protnone_mask(e)) & mask) >> PAGE_SHIFT


def pud_pfn(e: int) -> int:
    mask = PHYSICAL_PUD_PAGE_MASK if e & _PAGE_PSE else PTE_PFN_MASK
    return ((e ^ protnone_mask(e)) & mask) >> PAGE_SHIFT


def pfn_pte(pfn: int, prot: int) -> int:
    """pfn_pte(): the pfn inverted when ``prot`` is a PROT_NONE protection."""
    return (((pfn << PAGE_SHIFT) ^ protnone_mask(prot)) & PTE_PFN_MASK) | prot


def pfn_pmd(pfn: int, prot: int) -> int:
    """pfn_pmd(): as pfn_pte with PHYSICAL_PMD_PAGE_MASK."""
    return (((pfn << PAGE_SHIFT) ^ protnone_mask(prot)) & PHYSICAL_PMD_PAGE_MASK) | prot


# Names of the entry bits as crash's vtop prints them, lowest bit first.
PTE_BIT_NAMES = [
    (_PAGE_PRESENT, "PRESENT"),
    (_PAGE_RW, "RW"),
    (_PAGE_USER, "USER"),
    (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"),
    (_PAGE_ACCESSED, "ACCESSED"),
    (_PAGE_DIRTY, "DIRTY"),
    (_PAGE_PSE, "PSE"),
    (_PAGE_GLOBAL, "GLOBAL"),
    (_PAGE_NX, "NX"),
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


# arch/x86/include/asm/cpufeatures.h: feature bits of boot_cpu_data.x86_capability[]
# (word * 32 + bit); the X86_BUG_* bits follow the NCAPINTS feature words:
# X86_BUG(x) = NCAPINTS * 32 + x, NCAPINTS = len(x86_capability) - NBUGINTS.
X86_FEATURE_OSPKE = 16 * 32 + 4  # "OS Protection Keys Enable" (arch_pkeys_enabled())
NBUGINTS = 2  # arch/x86/include/asm/cpufeatures.h
X86_BUG_SPECTRE_V2 = 16  # X86_BUG(16)
X86_BUG_SPEC_STORE_BYPASS = 17  # X86_BUG(17)

# arch/x86/include/asm/pkeys.h / include/linux/mm.h: the pkey of a VMA is vm_flags'
# VM_PKEY_BIT0..3 (VM_HIGH_ARCH_0..3, CONFIG_ARCH_PKEY_BITS=4): vma_pkey() = (vm_flags &
# vma_pkey_mask) >> VM_PKEY_SHIFT.
VM_PKEY_SHIFT = 32
ARCH_PKEY_BITS = 4
VMA_PKEY_MASK = ((1 << ARCH_PKEY_BITS) - 1) << VM_PKEY_SHIFT

# arch/x86/include/uapi/asm/prctl.h: task->thread.features bits (x86_Thread_features)
ARCH_SHSTK_SHSTK = 1 << 0
ARCH_SHSTK_WRSS = 1 << 1
