"""The scheduler's entry points as machine code (kernel/sched/core.c, arch/x86/entry/entry_64.S,
arch/x86/kernel/process_64.c).

The simulated kernel runs no code, but a debugger reads some: crash finds where a blocked task
resumes ("thread_return") by disassembling ``schedule`` and ``__schedule`` and looking for the
call of ``__switch_to_asm``/``__switch_to``, and uses that address as the saved RIP when it
backtraces a task that is not running.  These four functions therefore get real x86-64
instructions in .text, in the shape the kernel's have: ``schedule`` calls ``__schedule``, which
calls ``__switch_to_asm`` (the context switch), which tail-jumps to ``__switch_to``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

PUSH_RBP = b"\x55"
MOV_RBP_RSP = b"\x48\x89\xe5"
POP_RBP = b"\x5d"
RET = b"\xc3"
INT3 = b"\xcc"


def rel32(opcode: bytes, at: int, target: int) -> bytes:
    """A call (e8) or jmp (e9) at ``at`` to ``target``."""
    return opcode + struct.pack("<i", target - (at + 5))


def stack_top(k: Kernel, task: int) -> int:
    """The top of ``task``'s kernel stack (``task->stack + THREAD_SIZE``)."""
    return k.kmem.get(task, "task_struct", "stack") + kc.THREAD_SIZE


def place_text(k: Kernel) -> None:
    """The four functions with their code; the switch frames of sleeping tasks at every sync."""
    k.sync_hooks.append(switch_frames)
    img = k.image
    funcs = {
        name: img.func(name, size)
        for name, size in (("__switch_to", 0x2E0), ("__switch_to_asm", 0x60), ("__schedule", 0xCF0), ("schedule", 0xD0))
    }
    code = {
        "__switch_to": PUSH_RBP + MOV_RBP_RSP + POP_RBP + RET,
        "__switch_to_asm": rel32(b"\xe9", funcs["__switch_to_asm"], funcs["__switch_to"]),
        "schedule": PUSH_RBP + MOV_RBP_RSP + rel32(b"\xe8", funcs["schedule"] + 4, funcs["__schedule"]) + POP_RBP + RET,
    }
    sched = funcs["__schedule"]
    # __schedule: context_switch() -> switch_to() -> call __switch_to_asm; a task switched
    # out resumes at the next instruction (crash's thread_return).
    code["__schedule"] = PUSH_RBP + MOV_RBP_RSP + rel32(b"\xe8", sched + 4, funcs["__switch_to_asm"]) + POP_RBP + RET
    for name, body in code.items():
        size = img.symbols[name].size
        k.kmem.write_bytes(funcs[name], body + INT3 * (size - len(body)))


def thread_return(k: Kernel) -> int:
    """The address a switched-out task resumes at: after __schedule's call of __switch_to_asm."""
    return k.sym("__schedule") + len(PUSH_RBP + MOV_RBP_RSP) + 5


def switch_frames(k: Kernel) -> None:
    """The kernel stack of every task that is not running, as __switch_to_asm left it.

    A task switched out sleeps in ``__schedule`` (called from ``schedule``): below the user
    registers at the top of its stack (``struct pt_regs``, the syscall entry: :func:`_user_regs`)
    are schedule()'s
    and __schedule()'s frames (saved rbp, return address), then the ``struct
    inactive_task_frame`` __switch_to_asm pushed (callee-saved registers, rbp chaining to
    __schedule's frame, ``ret_addr`` = :func:`thread_return`); ``thread.sp`` points at it.  crash's
    ``bt PID`` starts there.  Tasks running on a CPU (the idle tasks) keep their NT_PRSTATUS
    registers instead.  Written at each sync (a sync hook), for the processes alive."""
    from mmintro.kernel import vmalloc
    from mmintro.kernel.init_task import TASK_RUNNING

    T, km = k.T, k.kmem
    regs = T.sizeof("struct pt_regs")
    frame_t = T.struct("inactive_task_frame")
    schedule_ret = k.sym("schedule") + len(PUSH_RBP + MOV_RBP_RSP) + 5  # after its call of __schedule
    for proc in k.__dict__.get("processes", []):
        tsk = proc.task
        stack = km.get(tsk, "task_struct", "stack")
        if not stack or km.get(tsk, "task_struct", "__state") == TASK_RUNNING:
            continue
        sched_frame = stack_top(k, tsk) - regs - 16  # schedule(): saved rbp (the end of the chain), return address 0
        inner = sched_frame - 16  # __schedule(): saved rbp -> schedule's frame, return into schedule
        frame = inner - frame_t.size
        body = bytearray(frame_t.size)
        body[frame_t.offsetof("bp") : frame_t.offsetof("bp") + 8] = inner.to_bytes(8, "little")
        body[frame_t.offsetof("ret_addr") : frame_t.offsetof("ret_addr") + 8] = thread_return(k).to_bytes(8, "little")
        data = (
            bytes(body)
            + sched_frame.to_bytes(8, "little")
            + schedule_ret.to_bytes(8, "little")
            + bytes(16)
            + _user_regs(k, tsk)
        )
        if vmalloc.is_vmalloc_addr(k, stack):
            vmalloc.vmalloc_write(k, frame, data)
        else:
            km.write_bytes(frame, data)
        km.set(tsk, "task_struct", "thread.sp", frame)


# arch/x86/include/asm/segment.h: __USER_CS = GDT_ENTRY_DEFAULT_USER_CS (6) * 8 + 3, __USER_DS 5 * 8 + 3
__USER_CS = 6 * 8 + 3
__USER_DS = 5 * 8 + 3
X86_EFLAGS_USER = 0x246  # IF, ZF, PF and the fixed bit
__NR_pause = 34  # arch/x86/entry/syscalls/syscall_64.tbl
ENOSYS = 38


def _user_regs(k: Kernel, tsk: int) -> bytes:
    """The ``struct pt_regs`` the syscall entry saved at the top of the stack: the process waits
    in pause(2), entered from its own code (``mm->start_code``) on its stack (``mm->start_stack``).
    A task without an mm gets zeros."""
    T, km = k.T, k.kmem
    st = T.struct("pt_regs")
    b = bytearray(st.size)
    mm = km.get(tsk, "task_struct", "mm")
    if mm:
        for name, value in (
            ("ip", km.get(mm, "mm_struct", "start_code")),
            ("cs", __USER_CS),
            ("flags", X86_EFLAGS_USER),
            ("sp", km.get(mm, "mm_struct", "start_stack")),
            ("ss", __USER_DS),
            ("orig_ax", __NR_pause),
            ("ax", -ENOSYS & ((1 << 64) - 1)),
        ):
            o = st.offsetof(name)
            b[o : o + 8] = value.to_bytes(8, "little")
    return bytes(b)
