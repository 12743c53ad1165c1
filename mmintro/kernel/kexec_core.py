"""What kdump records of each CPU when the snapshot is taken (kernel/kexec_core.c
``__crash_kexec``, kernel/crash_core.c ``crash_save_cpu``, arch/x86/kernel/crash.c).

The snapshot is taken as CPU 0 panics: ``panic()`` calls ``__crash_kexec()``, which saves CPU 0's
registers (``crash_setup_regs``: the instruction pointer inside ``__crash_kexec``, the stack
pointer in its frame) and stops the other CPUs with an NMI, each saving the registers it was
interrupted with.  They were idle, halted in ``pv_native_safe_halt`` (``sti; hlt``) with
interrupts on.  Every CPU's registers go into one ``NT_PRSTATUS`` note, ``elf_prstatus.pr_reg``
laid out as ``struct user_regs_struct`` (``ELF_CORE_COPY_REGS``), with the pid of the task the CPU
ran; the stack pointer lies in that task's kernel stack.  crash starts its backtraces there and
tells the panic task from a kdump by ``crashing_cpu``.

These functions get real instructions in .text so that the saved instruction pointers are code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import sched

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

# arch/x86/include/asm/segment.h (64-bit): GDT_ENTRY_KERNEL_CS 2, GDT_ENTRY_KERNEL_DS 3
__KERNEL_CS = 2 * 8
__KERNEL_DS = 3 * 8
X86_EFLAGS_FIXED = 0x002  # bit 1 always reads 1
X86_EFLAGS_IF = 0x200
#: how far below the top of its stack a CPU's saved stack pointer is: the entry frame
#: (struct pt_regs) and the frames of the functions on the way
FRAME_DEPTH = 0x100

STI_HLT = b"\xfb\xf4"
NOP = b"\x90"


def place_text(k: Kernel) -> None:
    """``panic``, ``__crash_kexec`` and ``pv_native_safe_halt`` in .text, with code."""
    img = k.image
    funcs = {
        name: img.func(name, size)
        for name, size in (("panic", 0x2A0), ("__crash_kexec", 0x120), ("pv_native_safe_halt", 0x10))
    }
    crash_kexec = sched.PUSH_RBP + sched.MOV_RBP_RSP + NOP * 8 + sched.POP_RBP + sched.RET
    panic = (
        sched.PUSH_RBP
        + sched.MOV_RBP_RSP
        + sched.rel32(b"\xe8", funcs["panic"] + 4, funcs["__crash_kexec"])
        + sched.POP_RBP
        + sched.RET
    )
    code = {"panic": panic, "__crash_kexec": crash_kexec, "pv_native_safe_halt": STI_HLT + sched.RET}
    for name, body in code.items():
        k.kmem.write_bytes(funcs[name], body + sched.INT3 * (img.symbols[name].size - len(body)))


def cpu_regs(k: Kernel, cpu: int) -> dict[str, int]:
    """The registers CPU ``cpu`` saved, by ``user_regs_struct`` member name."""
    task = k.idle_tasks[cpu]
    sp = sched.stack_top(k, task) - FRAME_DEPTH
    if cpu == 0:  # crash_setup_regs() in __crash_kexec, interrupts off since panic()
        ip = k.sym("__crash_kexec") + len(sched.PUSH_RBP + sched.MOV_RBP_RSP)
        flags = X86_EFLAGS_FIXED
    else:  # the NMI came in after hlt
        ip = k.sym("pv_native_safe_halt") + len(STI_HLT)
        flags = X86_EFLAGS_FIXED | X86_EFLAGS_IF
    return {"ip": ip, "cs": __KERNEL_CS, "flags": flags, "sp": sp, "ss": __KERNEL_DS, "bp": sp + 0x10}


def prstatus_notes(k: Kernel) -> list[bytes]:
    """One NT_PRSTATUS descriptor (``struct elf_prstatus``) per CPU, as crash_save_cpu() fills it."""
    T = k.T
    st = T.struct("elf_prstatus")
    size = st.size
    off_pid = st.offsetof("common.pr_pid")
    off_reg = st.offsetof("pr_reg")
    regs_t = T.struct("user_regs_struct")
    out = []
    for cpu in range(k.config.cpus):
        b = bytearray(size)
        pid = k.kmem.get(k.idle_tasks[cpu], "task_struct", "pid")
        b[off_pid : off_pid + 4] = pid.to_bytes(4, "little")
        for name, value in cpu_regs(k, cpu).items():
            o = off_reg + regs_t.offsetof(name)
            b[o : o + 8] = value.to_bytes(8, "little")
        out.append(bytes(b))
    return out
