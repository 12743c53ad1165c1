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

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

PUSH_RBP = b"\x55"
MOV_RBP_RSP = b"\x48\x89\xe5"
POP_RBP = b"\x5d"
RET = b"\xc3"
INT3 = b"\xcc"


def _rel32(opcode: bytes, at: int, target: int) -> bytes:
    """A call (e8) or jmp (e9) at ``at`` to ``target``."""
    return opcode + struct.pack("<i", target - (at + 5))


def place_text(k: "Kernel") -> None:
    img = k.image
    funcs = {name: img.func(name, size) for name, size in
             (("__switch_to", 0x2E0), ("__switch_to_asm", 0x60), ("__schedule", 0xCF0), ("schedule", 0xD0))}
    code = {
        "__switch_to": PUSH_RBP + MOV_RBP_RSP + POP_RBP + RET,
        "__switch_to_asm": _rel32(b"\xe9", funcs["__switch_to_asm"], funcs["__switch_to"]),
        "schedule": PUSH_RBP + MOV_RBP_RSP + _rel32(b"\xe8", funcs["schedule"] + 4, funcs["__schedule"])
        + POP_RBP + RET,
    }
    sched = funcs["__schedule"]
    # __schedule: context_switch() -> switch_to() -> call __switch_to_asm; a task switched
    # out resumes at the next instruction (crash's thread_return).
    code["__schedule"] = (PUSH_RBP + MOV_RBP_RSP + _rel32(b"\xe8", sched + 4, funcs["__switch_to_asm"])
                          + POP_RBP + RET)
    for name, body in code.items():
        size = img.symbols[name].size
        k.kmem.write_bytes(funcs[name], body + INT3 * (size - len(body)))


def thread_return(k: "Kernel") -> int:
    """The address a switched-out task resumes at: after __schedule's call of __switch_to_asm."""
    return k.sym("__schedule") + len(PUSH_RBP + MOV_RBP_RSP) + 5
