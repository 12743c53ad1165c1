"""The vsyscall gate VMA (arch/x86/entry/vsyscall/vsyscall_64.c).

``gate_vma`` is a static ``struct vm_area_struct`` of the kernel image, not in any mm's
maple tree: get_gate_vma() returns it and /proc/PID/maps, smaps and numa_maps show it after
the mm's own VMAs as ``[vsyscall]`` (arch_vma_name / gate_vma_ops.name = gate_vma_name).
Its static initialiser::

    static struct vm_area_struct gate_vma __ro_after_init = {
        .vm_start = VSYSCALL_ADDR, .vm_end = VSYSCALL_ADDR + PAGE_SIZE,
        .vm_page_prot = PAGE_READONLY_EXEC, .vm_flags = VM_READ | VM_EXEC,
        .vm_ops = &gate_vma_ops,
    };

and setup_arch()'s ``map_vsyscall()`` for the default ``vsyscall=xonly``
(CONFIG_LEGACY_VSYSCALL_XONLY, the mode of the reference capture: ``--xp``) sets vm_flags to
VM_EXEC alone and installs no PTE (only EMULATE maps the page through the fixmap).  Not
modelled: the EMULATE/NONE modes, mm->context.flags' MM_CONTEXT_HAS_VSYSCALL (get_gate_vma's
CONFIG_COMPAT test: every simulated process is a 64-bit one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SIZE

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = ["VSYSCALL_ADDR", "VSYSCALL_MODE", "map_vsyscall"]

# arch/x86/include/uapi/asm/vsyscall.h: VSYSCALL_ADDR = -10UL << 20
VSYSCALL_ADDR = (-10 << 20) & ((1 << 64) - 1)
VSYSCALL_MODE = "xonly"  # CONFIG_LEGACY_VSYSCALL_XONLY (x86_64 default since 5.x)


def _place_gate_vma(k: Kernel) -> int:
    """The image's gate_vma_ops (.name = gate_vma_name) and gate_vma with its static
    initialiser (in .rodata: __ro_after_init data sits in RO_DATA)."""
    from mmintro.kernel import mmap as M

    img, km = k.image, k.kmem
    if "gate_vma" in img.symbols:
        return k.sym("gate_vma")
    ops = img.var("gate_vma_ops", "rodata")
    km.set(ops, "vm_operations_struct", "name", img.func("gate_vma_name", 0x20))
    vma = img.var("gate_vma", "rodata")
    km.set(vma, "vm_area_struct", "vm_start", VSYSCALL_ADDR)
    km.set(vma, "vm_area_struct", "vm_end", VSYSCALL_ADDR + PAGE_SIZE)
    km.set(vma, "vm_area_struct", "vm_page_prot", M.PAGE_READONLY_EXEC)
    km.set(vma, "vm_area_struct", "vm_flags", M.VM_READ | M.VM_EXEC)
    km.set(vma, "vm_area_struct", "vm_ops", ops)
    return vma


def map_vsyscall(k: Kernel) -> int:
    """arch/x86/entry/vsyscall/vsyscall_64.c map_vsyscall() (called at the end of
    setup_arch): in XONLY mode ``vm_flags_init(&gate_vma, VM_EXEC)`` and no page-table
    entry.  Returns &gate_vma."""
    from mmintro.kernel import mmap as M

    vma = _place_gate_vma(k)
    if VSYSCALL_MODE == "xonly":
        k.kmem.set(vma, "vm_area_struct", "vm_flags", M.VM_EXEC)
    return vma
