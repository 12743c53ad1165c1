"""/proc/PID/status (fs/proc/array.c proc_pid_status, fs/proc/task_mmu.c task_mem, 6.18).

The memory lines are task_mem()'s: VmPeak = max(total_vm, hiwater_vm), VmSize = total_vm,
VmLck = locked_vm, VmPin = pinned_vm, VmHWM = max(rss, hiwater_rss), VmRSS = anon + file +
shmem (``get_mm_counter_sum``: each percpu counter summed with every CPU's delta, positive —
since "mm: fix the inaccurate memory statistics issue for users", 6.16), RssAnon/RssFile/RssShmem, VmData =
data_vm, VmStk = stack_vm, VmExe = min(PAGE_ALIGN(end_code) - (start_code & PAGE_MASK),
exec_vm << PAGE_SHIFT), VmLib = exec_vm pages minus that, VmPTE = pgtables_bytes >> 10, VmSwap
= MM_SWAPENTS (also summed), then hugetlb_report_usage()'s HugetlbPages (mm->hugetlb_usage), each
``seq_put_decimal_ull_width(.., 8)`` in kB.

Besides memory, the lines whose data the snapshot holds: Name, Umask (when ``task->fs`` is
set), State (task_state_array by __task_state_index), Tgid, Ngid, Pid, PPid, TracerPid, NStgid, NSpid, Kthread, CoreDumping,
THP_enabled, untag_mask, Threads, Cpus_allowed(_list), Mems_allowed(_list) and the context
switch counts.  Credentials, files, signals, capabilities and seccomp are not modelled, so
Uid, Gid, FDSize, Groups, NSpgid, NSsid, Sig*, Cap*, NoNewPrivs, Seccomp and
Speculation lines are left out rather than invented.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.errors import FaultError
from mmintro.reader.helpers.task import find_task, get_mm_counter_sum
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = ["StatusLine", "bitmap_list", "bitmap_string", "render", "status", "task_mem"]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
# include/linux/sched.h (#defines): TASK_REPORT and TASK_REPORT_IDLE of __task_state_index()
TASK_REPORT = 0x7F
TASK_IDLE = 0x0002 | 0x0400
TASK_RTLOCK_WAIT = 0x1000
TASK_UNINTERRUPTIBLE = 0x0002
PF_KTHREAD = 0x00200000
MMF_DISABLE_THP = 24  # include/linux/mm_types.h
# fs/proc/array.c task_state_array (used when the snapshot has no .rodata copy)
TASK_STATE_ARRAY = ("R (running)", "S (sleeping)", "D (disk sleep)", "T (stopped)", "t (tracing stop)",
                    "X (dead)", "Z (zombie)", "P (parked)", "I (idle)")


class StatusLine(NamedTuple):
    name: str
    value: str
    """The text after ``Name:\\t``."""
    kb: int | None = None
    """The number for ``kB`` lines."""


def _kb(name: str, kb: int) -> StatusLine:
    return StatusLine(name, f"{kb:>8} kB", kb)


def task_mem(mm: Object) -> list[StatusLine]:
    """task_mem() and hugetlb_report_usage() for ``struct mm_struct *mm``."""
    anon = get_mm_counter_sum(mm, "MM_ANONPAGES")
    file = get_mm_counter_sum(mm, "MM_FILEPAGES")
    shmem = get_mm_counter_sum(mm, "MM_SHMEMPAGES")
    total_vm = mm.total_vm.value_()
    hiwater_vm = max(total_vm, mm.hiwater_vm.value_())
    total_rss = anon + file + shmem
    hiwater_rss = max(total_rss, mm.hiwater_rss.value_())
    text = ((mm.end_code.value_() + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) - (mm.start_code.value_() & ~(PAGE_SIZE - 1))
    exec_vm = mm.exec_vm.value_()
    text = min(text, exec_vm << PAGE_SHIFT)
    lib = (exec_vm << PAGE_SHIFT) - text
    swap = get_mm_counter_sum(mm, "MM_SWAPENTS")
    k = PAGE_SHIFT - 10
    lines = [
        _kb("VmPeak", hiwater_vm << k), _kb("VmSize", total_vm << k), _kb("VmLck", mm.locked_vm.value_() << k),
        _kb("VmPin", mm.pinned_vm.counter.value_() << k), _kb("VmHWM", hiwater_rss << k), _kb("VmRSS", total_rss << k),
        _kb("RssAnon", anon << k), _kb("RssFile", file << k), _kb("RssShmem", shmem << k),
        _kb("VmData", mm.data_vm.value_() << k), _kb("VmStk", mm.stack_vm.value_() << k),
        _kb("VmExe", text >> 10), _kb("VmLib", lib >> 10), _kb("VmPTE", mm.pgtables_bytes.counter.value_() >> 10),
        _kb("VmSwap", swap << k),
    ]
    try:
        usage = mm.hugetlb_usage.counter.value_()
    except AttributeError:
        usage = 0
    lines.append(_kb("HugetlbPages", usage << k))
    return lines


def bitmap_string(words: list[int], nbits: int) -> str:
    """``%*pb``: 32-bit hex chunks, most significant first, comma separated; the first chunk
    as wide as its bits need (lib/vsprintf.c bitmap_string)."""
    value = 0
    for i, w in enumerate(words):
        value |= w << (64 * i)
    value &= (1 << nbits) - 1
    chunks = []
    top = nbits % 32 or 32
    pos = nbits - top
    chunks.append(f"{value >> pos & ((1 << top) - 1):0{(top + 3) // 4}x}")
    while pos > 0:
        pos -= 32
        chunks.append(f"{value >> pos & 0xFFFFFFFF:08x}")
    return ",".join(chunks)


def bitmap_list(words: list[int], nbits: int) -> str:
    """``%*pbl``: ranges like ``0-1,4``."""
    bits = [i for i in range(nbits) if words[i // 64] >> (i % 64) & 1]
    out, i = [], 0
    while i < len(bits):
        j = i
        while j + 1 < len(bits) and bits[j + 1] == bits[j] + 1:
            j += 1
        out.append(str(bits[i]) if i == j else f"{bits[i]}-{bits[j]}")
        i = j + 1
    return ",".join(out)


def _state(task: Object) -> str:
    state = task.__state.value_() & 0xFFFFFFFF
    exit_state = task.exit_state.value_()
    s = (state | exit_state) & TASK_REPORT
    if state & TASK_IDLE == TASK_IDLE:
        s = TASK_REPORT + 1
    if state & TASK_RTLOCK_WAIT:
        s = TASK_UNINTERRUPTIBLE
    idx = s.bit_length()
    prog = task.prog_
    try:
        return prog["task_state_array"][idx].string_().decode()
    except (KeyError, FaultError, IndexError, LookupError):
        return TASK_STATE_ARRAY[idx] if idx < len(TASK_STATE_ARRAY) else "?"


def status(prog: Program, pid: int) -> list[StatusLine]:
    """The /proc/PID/status lines the snapshot can fill (LookupError if there is no such pid)."""
    task = find_task(prog, pid)
    if task is None:
        raise LookupError(f"no task with pid {pid}")
    comm = task.comm.string_().decode(errors="replace")
    tgid = task.tgid.value_()
    ppid = task.real_parent.tgid.value_() if task.real_parent.value_() else 0  # pid_alive -> real_parent's tgid
    lines = [StatusLine("Name", comm)]
    try:  # task_state(): "Umask:\t%#04o" only when the task has an fs_struct
        if task.fs.value_():
            lines.append(StatusLine("Umask", f"{task.fs.umask.value_():#05o}".replace("0o", "0")))
    except AttributeError:
        pass
    lines += [StatusLine("State", _state(task)), StatusLine("Tgid", str(tgid)),
             StatusLine("Ngid", "0"), StatusLine("Pid", str(task.pid.value_())), StatusLine("PPid", str(ppid)),
             StatusLine("TracerPid", "0"), StatusLine("NStgid", str(tgid)),
             StatusLine("NSpid", str(task.pid.value_())),
             StatusLine("Kthread", "1" if task.flags.value_() & PF_KTHREAD else "0")]
    mm = task.mm
    if mm.value_():
        lines += task_mem(mm)
        try:
            core = 1 if task.signal.core_state.value_() else 0
        except AttributeError:
            core = 0
        lines.append(StatusLine("CoreDumping", str(core)))
        try:
            mmf = mm.flags.__mm_flags[0].value_()
        except (AttributeError, LookupError):
            mmf = 0
        lines.append(StatusLine("THP_enabled", "0" if mmf >> MMF_DISABLE_THP & 1 else "1"))
        try:  # CONFIG_ADDRESS_MASKING: mm->context.untag_mask; without it mm_untag_mask() is -1UL
            untag = mm.context.untag_mask.value_()
        except AttributeError:
            untag = (1 << 64) - 1
        lines.append(StatusLine("untag_mask", f"{untag:#x}"))
    lines.append(StatusLine("Threads", str(task.signal.nr_threads.value_())))
    try:
        nr_cpu = prog["nr_cpu_ids"].value_()
    except KeyError:
        nr_cpu = 1
    cpus = [w.value_() for w in task.cpus_mask.bits]
    lines.append(StatusLine("Cpus_allowed", bitmap_string(cpus, nr_cpu)))
    lines.append(StatusLine("Cpus_allowed_list", bitmap_list(cpus, nr_cpu)))
    mems = [w.value_() for w in task.mems_allowed.bits]
    nbits = 64 * len(mems)
    lines.append(StatusLine("Mems_allowed", bitmap_string(mems, nbits)))
    lines.append(StatusLine("Mems_allowed_list", bitmap_list(mems, nbits)))
    lines.append(StatusLine("voluntary_ctxt_switches", str(task.nvcsw.value_())))
    lines.append(StatusLine("nonvoluntary_ctxt_switches", str(task.nivcsw.value_())))
    return lines


def render(lines: list[StatusLine]) -> str:
    return "".join(f"{ln.name}:\t{ln.value}\n" for ln in lines)
