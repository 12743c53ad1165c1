"""/proc/PID/status (fs/proc/array.c proc_pid_status, fs/proc/task_mmu.c task_mem, 6.18).

The memory lines are task_mem()'s: VmPeak = max(total_vm, hiwater_vm), VmSize = total_vm,
VmLck = locked_vm, VmPin = pinned_vm, VmHWM = max(rss, hiwater_rss), VmRSS = anon + file +
shmem (``get_mm_counter_sum``: each percpu counter summed with every CPU's delta, positive —
since "mm: fix the inaccurate memory statistics issue for users", 6.16), RssAnon/RssFile/RssShmem, VmData =
data_vm, VmStk = stack_vm, VmExe = min(PAGE_ALIGN(end_code) - (start_code & PAGE_MASK),
exec_vm << PAGE_SHIFT), VmLib = exec_vm pages minus that, VmPTE = pgtables_bytes >> 10, VmSwap
= MM_SWAPENTS (also summed), then hugetlb_report_usage()'s HugetlbPages (mm->hugetlb_usage), each
``seq_put_decimal_ull_width(.., 8)`` in kB.

Besides memory, in proc_pid_status()'s order: Name, Umask (when ``task->fs`` is set), State
(task_state_array by __task_state_index), Tgid, Ngid, Pid, PPid, TracerPid, Uid / Gid (the
``real_cred``'s ids, seen from the initial user namespace), FDSize (``files->fdt->max_fds``),
Groups (``group_info->gid[]``, each followed by a space), NStgid, NSpid, NSpgid / NSsid
(``signal->pids[PIDTYPE_PGID / PIDTYPE_SID]`` seen from each pid namespace level), Kthread,
CoreDumping, THP_enabled, untag_mask, Threads, task_sig()'s SigQ (``ucounts->
rlimit[UCOUNT_RLIMIT_SIGPENDING]`` / ``signal->rlim[RLIMIT_SIGPENDING].rlim_cur``) and the five
sigsets (``pending``, ``signal->shared_pending``, ``blocked``, and the ignored / caught signals
of ``sighand->action``), task_cap()'s Cap* (``real_cred``), task_seccomp()'s NoNewPrivs
(PFA_NO_NEW_PRIVS), Seccomp, Seccomp_filters and the two speculation lines
(arch/x86/kernel/cpu/bugs.c ssb_prctl_get / ib_prctl_get: the global ``ssb_mode``,
``spectre_v2_user_ibpb`` / ``_stibp``, the boot CPU's X86_BUG bits and the task's PFA_SPEC_*
flags), Cpus_allowed(_list), Mems_allowed(_list), the context switch counts, and
arch_proc_pid_thread_features()'s x86_Thread_features(_locked) (``thread.features``).

A line is printed when the snapshot holds what it is made of (a NULL ``real_cred``, ``sighand``
or pgrp pid, no ``ssb_mode`` or ``arch_proc_pid_thread_features`` symbol, no ``thread.features``
member: those lines are left out rather than invented).  The simulated kernel models them all
(mmintro.kernel.cred, init_task, fork, bugs) except x86_Thread_features: the pinned reference
build has no CONFIG_X86_USER_SHADOW_STACK.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.arch.x86 import ARCH_SHSTK_SHSTK, ARCH_SHSTK_WRSS, X86_BUG_SPEC_STORE_BYPASS, X86_BUG_SPECTRE_V2
from mmintro.reader.errors import FaultError
from mmintro.reader.helpers.task import boot_cpu_has_bug, find_task, get_mm_counter_sum
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
# include/linux/sched.h (#defines): task->atomic_flags bits (PFA_*)
PFA_NO_NEW_PRIVS = 0
PFA_SPEC_SSB_DISABLE = 3
PFA_SPEC_SSB_FORCE_DISABLE = 4
PFA_SPEC_IB_DISABLE = 5
PFA_SPEC_IB_FORCE_DISABLE = 6
PFA_SPEC_SSB_NOEXEC = 7
# include/uapi/linux/prctl.h (#defines): arch_prctl_spec_ctrl_get() results
PR_SPEC_NOT_AFFECTED = 0
PR_SPEC_PRCTL = 1 << 0
PR_SPEC_ENABLE = 1 << 1
PR_SPEC_DISABLE = 1 << 2
PR_SPEC_FORCE_DISABLE = 1 << 3
PR_SPEC_DISABLE_NOEXEC = 1 << 4
# include/uapi/asm-generic/resource.h (#define); include/uapi/asm-generic/signal.h: _NSIG,
# include/uapi/asm-generic/signal-defs.h: SIG_DFL, SIG_IGN
RLIMIT_SIGPENDING = 11
_NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
# fs/proc/array.c task_seccomp(): the texts of arch_prctl_spec_ctrl_get(PR_SPEC_STORE_BYPASS)
# and (PR_SPEC_INDIRECT_BRANCH); anything else is "vulnerable" / "unknown"
SSB_TEXT = {
    PR_SPEC_NOT_AFFECTED: "not vulnerable",
    PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE: "thread force mitigated",
    PR_SPEC_PRCTL | PR_SPEC_DISABLE: "thread mitigated",
    PR_SPEC_PRCTL | PR_SPEC_ENABLE: "thread vulnerable",
    PR_SPEC_DISABLE: "globally mitigated",
}
IB_TEXT = {
    PR_SPEC_NOT_AFFECTED: "not affected",
    PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE: "conditional force disabled",
    PR_SPEC_PRCTL | PR_SPEC_DISABLE: "conditional disabled",
    PR_SPEC_PRCTL | PR_SPEC_ENABLE: "conditional enabled",
    PR_SPEC_ENABLE: "always enabled",
    PR_SPEC_DISABLE: "always disabled",
}
# fs/proc/array.c task_state_array (used when the snapshot has no .rodata copy)
TASK_STATE_ARRAY = (
    "R (running)",
    "S (sleeping)",
    "D (disk sleep)",
    "T (stopped)",
    "t (tracing stop)",
    "X (dead)",
    "Z (zombie)",
    "P (parked)",
    "I (idle)",
)


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
        _kb("VmPeak", hiwater_vm << k),
        _kb("VmSize", total_vm << k),
        _kb("VmLck", mm.locked_vm.value_() << k),
        _kb("VmPin", mm.pinned_vm.counter.value_() << k),
        _kb("VmHWM", hiwater_rss << k),
        _kb("VmRSS", total_rss << k),
        _kb("RssAnon", anon << k),
        _kb("RssFile", file << k),
        _kb("RssShmem", shmem << k),
        _kb("VmData", mm.data_vm.value_() << k),
        _kb("VmStk", mm.stack_vm.value_() << k),
        _kb("VmExe", text >> 10),
        _kb("VmLib", lib >> 10),
        _kb("VmPTE", mm.pgtables_bytes.counter.value_() >> 10),
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


def _ptr(obj: Object) -> Object | None:
    """``obj`` (a pointer) when it is non-NULL and its target's members can be read, else None."""
    try:
        return obj if obj.value_() else None
    except (AttributeError, LookupError, FaultError):
        return None


def _cred_lines(task: Object) -> list[StatusLine]:
    """task_state()'s Uid and Gid (``__task_cred(p)`` = ``real_cred``; from_kuid_munged in the
    initial user namespace is the id itself)."""
    cred = _ptr(task.real_cred)
    if cred is None:
        return []
    try:
        uids = [cred.member_(f).val.value_() for f in ("uid", "euid", "suid", "fsuid")]
        gids = [cred.member_(f).val.value_() for f in ("gid", "egid", "sgid", "fsgid")]
    except (AttributeError, LookupError, FaultError):
        return []
    return [StatusLine("Uid", "\t".join(map(str, uids))), StatusLine("Gid", "\t".join(map(str, gids)))]


def _fdsize(task: Object) -> StatusLine | None:
    """``FDSize``: ``files_fdtable(p->files)->max_fds``, 0 without files (the line is left out
    when neither files nor credentials are in the snapshot)."""
    files = _ptr(task.files)
    try:
        if files is not None:
            return StatusLine("FDSize", str(files.fdt.max_fds.value_()))
    except (AttributeError, LookupError, FaultError):
        return None
    return StatusLine("FDSize", "0") if _ptr(task.real_cred) is not None else None


def _groups(task: Object) -> StatusLine | None:
    """``Groups``: every gid of ``cred->group_info``, space separated, then a trailing space."""
    cred = _ptr(task.real_cred)
    if cred is None:
        return None
    try:
        gi = cred.group_info
        gids = [
            str(gi.gid[g].val.value_()) for g in range(min(gi.ngroups.value_(), 1 << 16))
        ]  # NGROUPS_MAX if gi.value_() else []
    except (AttributeError, LookupError, FaultError):
        return None
    return StatusLine("Groups", " ".join(gids) + " ")


def _pid_nr_ns(pid: Object, ns: Object) -> int:
    """kernel/pid.c ``pid_nr_ns()``: the number of ``struct pid *pid`` in namespace ``ns``."""
    if pid.value_() and ns.level.value_() <= pid.level.value_():
        upid = pid.numbers[ns.level.value_()]
        if upid.ns.value_() == ns.value_():
            return upid.nr.value_()
    return 0


def _ns_group_lines(task: Object) -> list[StatusLine]:
    """task_state()'s NSpgid and NSsid: ``task_pgrp_nr_ns`` / ``task_session_nr_ns`` for every
    namespace level of the task's pid (from the initial namespace, level 0)."""
    prog = task.prog_
    try:
        pid = task.thread_pid
        if not pid.value_():
            return []
        out = []
        for name, typ in (("NSpgid", "PIDTYPE_PGID"), ("NSsid", "PIDTYPE_SID")):
            p = task.signal.pids[prog.types.const(typ)]
            if not p.value_():  # no process group modelled (simulated tasks)
                return []
            nrs = [_pid_nr_ns(p, pid.numbers[g].ns) for g in range(min(pid.level.value_(), 32) + 1)]  # MAX_PID_NS_LEVEL
            out.append(StatusLine(name, "\t".join(map(str, nrs))))
        return out
    except (AttributeError, LookupError, FaultError):
        return []


def _sigset(words: Object) -> str:
    """render_sigset_t(): _NSIG bits, 4 per hex digit, highest first."""
    v = 0
    for i, w in enumerate(words.sig):
        v |= w.value_() << (64 * i)
    return f"{v & ((1 << _NSIG) - 1):0{_NSIG // 4}x}"


def _sig_lines(task: Object) -> list[StatusLine]:
    """task_sig() after Threads: SigQ, SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt (left out when the
    snapshot has no ``sighand``)."""
    prog = task.prog_
    sighand = _ptr(task.sighand)
    if sighand is None:
        return []
    out = []
    try:
        cred = _ptr(task.real_cred)
        if cred is not None:
            ucounts = cred.ucounts
            qsize = (
                ucounts.rlimit[prog.types.const("UCOUNT_RLIMIT_SIGPENDING")].counter.value_() if ucounts.value_() else 0
            )
            qlim = task.signal.rlim[RLIMIT_SIGPENDING].rlim_cur.value_()
            out.append(StatusLine("SigQ", f"{qsize & (2**64 - 1)}/{qlim}"))
        ign = cgt = 0
        for i, k in enumerate(sighand.action):
            h = k.sa.sa_handler.value_()
            if h == SIG_IGN:
                ign |= 1 << i
            elif h != SIG_DFL:
                cgt |= 1 << i
        out += [
            StatusLine("SigPnd", _sigset(task.pending.signal)),
            StatusLine("ShdPnd", _sigset(task.signal.shared_pending.signal)),
            StatusLine("SigBlk", _sigset(task.blocked)),
            StatusLine("SigIgn", f"{ign:0{_NSIG // 4}x}"),
            StatusLine("SigCgt", f"{cgt:0{_NSIG // 4}x}"),
        ]
    except (AttributeError, LookupError, FaultError):
        return []
    return out


def _cap_lines(task: Object) -> list[StatusLine]:
    """task_cap(): the real_cred's capability sets, ``%016llx``."""
    cred = _ptr(task.real_cred)
    if cred is None:
        return []
    try:
        return [
            StatusLine(name, f"{cred.member_(f).val.value_():016x}")
            for name, f in (
                ("CapInh", "cap_inheritable"),
                ("CapPrm", "cap_permitted"),
                ("CapEff", "cap_effective"),
                ("CapBnd", "cap_bset"),
                ("CapAmb", "cap_ambient"),
            )
        ]
    except (AttributeError, LookupError, FaultError):
        return []


def _spec_ctrl(task: Object) -> tuple[int, int] | None:
    """arch_prctl_spec_ctrl_get(task, PR_SPEC_STORE_BYPASS) and (.., PR_SPEC_INDIRECT_BRANCH)
    (arch/x86/kernel/cpu/bugs.c ssb_prctl_get, ib_prctl_get), from the mitigation globals and
    the boot CPU's bug bits; None when the snapshot has neither (the simulator's)."""
    prog = task.prog_
    if "arch_prctl_spec_ctrl_get" not in prog.symbols.by_name:
        return None
    ssb_mode = prog.read_symbol_u32("ssb_mode")
    ibpb = prog.read_symbol_u32("spectre_v2_user_ibpb")
    stibp = prog.read_symbol_u32("spectre_v2_user_stibp")
    bug_ssb = boot_cpu_has_bug(prog, X86_BUG_SPEC_STORE_BYPASS)
    bug_v2 = boot_cpu_has_bug(prog, X86_BUG_SPECTRE_V2)
    if None in (ssb_mode, ibpb, stibp, bug_ssb, bug_v2):
        return None
    c = prog.types.const
    pfa = task.atomic_flags.value_()

    def flag(bit: int) -> bool:
        return bool(pfa >> bit & 1)

    if ssb_mode == c("SPEC_STORE_BYPASS_NONE"):
        ssb = PR_SPEC_ENABLE if bug_ssb else PR_SPEC_NOT_AFFECTED
    elif ssb_mode == c("SPEC_STORE_BYPASS_DISABLE"):
        ssb = PR_SPEC_DISABLE
    elif flag(PFA_SPEC_SSB_FORCE_DISABLE):
        ssb = PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE
    elif flag(PFA_SPEC_SSB_NOEXEC):
        ssb = PR_SPEC_PRCTL | PR_SPEC_DISABLE_NOEXEC
    elif flag(PFA_SPEC_SSB_DISABLE):
        ssb = PR_SPEC_PRCTL | PR_SPEC_DISABLE
    else:
        ssb = PR_SPEC_PRCTL | PR_SPEC_ENABLE
    none, strict = c("SPECTRE_V2_USER_NONE"), c("SPECTRE_V2_USER_STRICT")
    user_ctl = (c("SPECTRE_V2_USER_PRCTL"), c("SPECTRE_V2_USER_SECCOMP"))
    if not bug_v2:
        ib = PR_SPEC_NOT_AFFECTED
    elif ibpb == none and stibp == none:
        ib = PR_SPEC_ENABLE
    elif ibpb in user_ctl or stibp in user_ctl:  # is_spec_ib_user_controlled()
        if flag(PFA_SPEC_IB_FORCE_DISABLE):
            ib = PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE
        elif flag(PFA_SPEC_IB_DISABLE):
            ib = PR_SPEC_PRCTL | PR_SPEC_DISABLE
        else:
            ib = PR_SPEC_PRCTL | PR_SPEC_ENABLE
    elif ibpb == strict or stibp in (strict, c("SPECTRE_V2_USER_STRICT_PREFERRED")):
        ib = PR_SPEC_DISABLE
    else:
        ib = PR_SPEC_NOT_AFFECTED
    return ssb, ib


def _seccomp_lines(task: Object) -> list[StatusLine]:
    """task_seccomp(): NoNewPrivs, Seccomp, Seccomp_filters, then the speculation lines."""
    out = []
    try:
        out.append(StatusLine("NoNewPrivs", str(task.atomic_flags.value_() >> PFA_NO_NEW_PRIVS & 1)))
        out.append(StatusLine("Seccomp", str(task.seccomp.mode.value_())))
        out.append(StatusLine("Seccomp_filters", str(task.seccomp.filter_count.counter.value_())))
    except (AttributeError, LookupError, FaultError):
        return out
    try:
        spec = _spec_ctrl(task)
    except (AttributeError, LookupError, FaultError):
        spec = None
    if spec is not None:
        out.append(StatusLine("Speculation_Store_Bypass", SSB_TEXT.get(spec[0], "vulnerable")))
        out.append(StatusLine("SpeculationIndirectBranch", IB_TEXT.get(spec[1], "unknown")))
    return out


def _thread_features(task: Object) -> list[StatusLine]:
    """arch_proc_pid_thread_features() (CONFIG_X86_USER_SHADOW_STACK): ``thread.features`` and
    ``features_locked`` as ``shstk `` / ``wrss `` words."""
    if "arch_proc_pid_thread_features" not in task.prog_.symbols.by_name:
        return []
    try:
        vals = [task.thread.features.value_(), task.thread.features_locked.value_()]
    except (AttributeError, LookupError, FaultError):
        return []

    def words(f: int) -> str:
        return ("shstk " if f & ARCH_SHSTK_SHSTK else "") + ("wrss " if f & ARCH_SHSTK_WRSS else "")

    return [StatusLine("x86_Thread_features", words(vals[0])), StatusLine("x86_Thread_features_locked", words(vals[1]))]


def status(prog: Program, pid: int) -> list[StatusLine]:
    """The /proc/PID/status lines the snapshot can fill (LookupError if there is no such pid)."""
    task = find_task(prog, pid)
    if task is None:
        raise LookupError(f"no task with pid {pid}")
    from mmintro.reader.validate import check_mm, note

    note(prog, check_mm(task))  # the Vm*/Rss* counts within the user address space
    comm = task.comm.string_().decode(errors="replace")
    tgid = task.tgid.value_()
    ppid = task.real_parent.tgid.value_() if task.real_parent.value_() else 0  # pid_alive -> real_parent's tgid
    lines = [StatusLine("Name", comm)]
    try:  # task_state(): "Umask:\t%#04o" only when the task has an fs_struct
        if task.fs.value_():
            lines.append(StatusLine("Umask", f"{task.fs.umask.value_():#05o}".replace("0o", "0")))
    except AttributeError:
        pass
    lines += [
        StatusLine("State", _state(task)),
        StatusLine("Tgid", str(tgid)),
        StatusLine("Ngid", "0"),
        StatusLine("Pid", str(task.pid.value_())),
        StatusLine("PPid", str(ppid)),
        StatusLine("TracerPid", "0"),
    ]
    lines += _cred_lines(task)
    lines += [ln for ln in (_fdsize(task), _groups(task)) if ln is not None]
    lines += [StatusLine("NStgid", str(tgid)), StatusLine("NSpid", str(task.pid.value_()))]
    lines += _ns_group_lines(task)
    lines.append(StatusLine("Kthread", "1" if task.flags.value_() & PF_KTHREAD else "0"))
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
    lines += _sig_lines(task)
    lines += _cap_lines(task)
    lines += _seccomp_lines(task)
    try:
        nr_cpu = prog["nr_cpu_ids"].value_()
    except KeyError:
        nr_cpu = 1
    cpus = [w.value_() for w in task.cpus_mask.bits]
    nr_cpu = min(nr_cpu, 64 * len(cpus))  # (a corrupt nr_cpu_ids of 2^32 must not print four billion bits)
    lines.append(StatusLine("Cpus_allowed", bitmap_string(cpus, nr_cpu)))
    lines.append(StatusLine("Cpus_allowed_list", bitmap_list(cpus, nr_cpu)))
    mems = [w.value_() for w in task.mems_allowed.bits]
    nbits = 64 * len(mems)
    lines.append(StatusLine("Mems_allowed", bitmap_string(mems, nbits)))
    lines.append(StatusLine("Mems_allowed_list", bitmap_list(mems, nbits)))
    lines.append(StatusLine("voluntary_ctxt_switches", str(task.nvcsw.value_())))
    lines.append(StatusLine("nonvoluntary_ctxt_switches", str(task.nivcsw.value_())))
    lines += _thread_features(task)
    return lines


def render(lines: list[StatusLine]) -> str:
    return "".join(f"{ln.name}:\t{ln.value}\n" for ln in lines)
