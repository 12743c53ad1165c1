"""The OOM killer (mm/oom_kill.c of 6.18) and the page allocator's entry to it.

:func:`__alloc_pages_may_oom` is page_alloc.c's: the last high-watermark attempt, then the
rules under which the OOM killer must not run (order > PAGE_ALLOC_COSTLY_ORDER,
__GFP_RETRY_MAYFAIL / __GFP_THISNODE, a request below ZONE_NORMAL), then
:func:`out_of_memory` with a ``struct oom_control`` (:class:`OomControl`); __GFP_NOFAIL
requests get the no-watermark fallback.  :func:`out_of_memory` follows 6.18: current already
dying (task_will_free_mem) is marked and queued without a kill; a request without __GFP_FS
returns "progress" without killing; :func:`constrained_alloc` (CONSTRAINT_NONE, or
CONSTRAINT_MEMORY_POLICY for a nodemask that misses a node with memory; totalpages =
totalram_pages + total_swap_pages, or the nodemask's present pages + swap);
:func:`select_bad_process` over for_each_process with :func:`oom_evaluate_task` and
:func:`oom_badness` (get_mm_rss + MM_SWAPENTS + pgtables_bytes / PAGE_SIZE, plus
oom_score_adj * (totalpages / 1000); OOM_SCORE_ADJ_MIN, MMF_OOM_SKIP, kernel threads and init
unkillable; an earlier victim still alive aborts the scan); no candidate is "Out of memory and
no killable processes..." and panic("System is deadlocked on memory") (:class:`OomPanic`).
:func:`oom_kill_process` prints the report (:func:`dump_header`: the "invoked oom-killer"
line, show_mem, the task table; :func:`dump_oom_victim`: "oom-kill:constraint=...") under
oom_kill_process's ratelimit (10 reports per 5 s of simulated time) and
:func:`__oom_kill_process` counts OOM_KILL, sends SIGKILL (do_send_sig_info for the thread
group: shared_pending, SIGNAL_GROUP_EXIT, each thread's pending SIGKILL), marks the victim
(:func:`mark_oom_victim`: signal->oom_mm with an mm_count reference, oom_victims), prints
"Out of memory: Killed process ..." and queues the oom_reaper (MMF_OOM_REAP_QUEUED).

Time.  The kernel is concurrent and the simulator is not, so the victim runs at two
well-defined points (:func:`oom_victims_run`): right after out_of_memory() killed someone
other than the allocating task (in the kernel the victim runs on another CPU while the
allocator retries), and when a workload step's task returns to user mode (a victim that is
``current`` dies there: the fault completes from the ALLOC_OOM reserves first, as in the
kernel).  At each point the oom_reaper's timer is taken to have expired first
(OOM_REAPER_DELAY = 2 s of simulated time pass, timekeeping.tick): :func:`oom_reap_task`
unmaps the victim's private and anonymous VMAs (:func:`__oom_reap_task_mm`, MMF_UNSTABLE),
prints "oom_reaper: reaped process ..." and sets MMF_OOM_SKIP; then the victim takes its
SIGKILL (get_signal -> do_group_exit -> do_exit: the rest of its mm, its task, its
signal_struct with the oom_mm reference).  A real victim that exits in less than 2 s is never
reaped (exit_mmap sets MMF_OOM_SKIP and wake_oom_reaper finds it): the simulator always shows
the reaper's work, as a victim whose exit takes longer (a large one, or one blocked in the
kernel) does.

A machine without user processes (allocator-only workloads) never calls out_of_memory(): its
requests fail as before, where a real kernel would panic for want of a victim.

Not modelled: memory cgroups (no memcg OOM, task_memcg is always "/"), cpusets (every task's
mems_allowed is every node), vfork (in_vfork false), sysctl_oom_kill_allocating_task and
panic_on_oom (both 0, their defaults), oom notifiers, the sysrq OOM, dump_unreclaimable_slab
(should_dump_unreclaim_slab is evaluated and reported in :class:`OomReport`, the slab list is
not printed), and dump_stack(): the "CPU: ... Comm: ..." / "Hardware name:" / "Call Trace:"
lines of the header are left out (the simulator has no stack to unwind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SIZE
from mmintro.kernel import gfp as G

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "CONSTRAINT_MEMORY_POLICY",
    "CONSTRAINT_NONE",
    "FatalSignalPending",
    "OOM_SCORE_ADJ_MAX",
    "OOM_SCORE_ADJ_MIN",
    "OomControl",
    "OomKill",
    "OomPanic",
    "__alloc_pages_may_oom",
    "__oom_reap_task_mm",
    "constrained_alloc",
    "fatal_signal_pending",
    "for_each_process",
    "mark_oom_victim",
    "oom_badness",
    "oom_kill_process",
    "oom_reap_task",
    "oom_reserves_allowed",
    "oom_victims_run",
    "out_of_memory",
    "pagefault_out_of_memory",
    "select_bad_process",
    "set_oom_score_adj",
    "tsk_is_oom_victim",
]

# include/uapi/linux/oom.h
OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
# include/linux/oom.h enum oom_constraint (not in the BTF: the enum has no user there)
CONSTRAINT_NONE, CONSTRAINT_CPUSET, CONSTRAINT_MEMORY_POLICY, CONSTRAINT_MEMCG = range(4)
OOM_CONSTRAINT_TEXT = ["CONSTRAINT_NONE", "CONSTRAINT_CPUSET", "CONSTRAINT_MEMORY_POLICY", "CONSTRAINT_MEMCG"]
# include/linux/mm_types.h (#defines: bits of mm->flags)
MMF_OOM_SKIP = 21
MMF_UNSTABLE = 22
MMF_OOM_REAP_QUEUED = 25
# include/linux/sched.h, include/linux/sched/signal.h, include/uapi/asm-generic/signal.h
PF_EXITING = 0x00000004
PF_DUMPCORE = 0x00000200
PF_KTHREAD = 0x00200000
SIGNAL_GROUP_EXIT = 0x00000004
SIGKILL = 9
OOM_REAPER_DELAY_S = 2  # mm/oom_kill.c OOM_REAPER_DELAY (2*HZ)
MAX_OOM_REAP_RETRIES = 10
# lib/ratelimit: DEFAULT_RATELIMIT_INTERVAL (5*HZ), DEFAULT_RATELIMIT_BURST
RATELIMIT_INTERVAL_NS = 5 * 10**9
RATELIMIT_BURST = 10
LONG_MIN = -(1 << 63)
# printk levels
KERN_ERR, KERN_WARNING, KERN_INFO = 3, 4, 6


class OomPanic(RuntimeError):
    """panic() from the OOM killer: "System is deadlocked on memory" (no killable task)."""


class FatalSignalPending(MemoryError):
    """A page fault that failed with VM_FAULT_OOM in a task the OOM killer killed:
    pagefault_out_of_memory() returns and the task dies on its way back to user mode."""


@dataclass
class OomControl:
    """struct oom_control."""

    nodemask: frozenset[int] | None
    gfp_mask: int
    order: int
    zonelist: list | None = None
    totalpages: int = 0
    chosen: int | None = None  # task_struct *; -1 for "abort: a victim is already dying"
    chosen_points: int = LONG_MIN
    constraint: int = CONSTRAINT_NONE


@dataclass
class OomKill:
    """One OOM kill (what __oom_kill_process did), kept for workloads and tests."""

    pid: int
    comm: str
    task: int
    mm: int
    points: int
    """The victim's oom_badness() when it was chosen."""
    totalpages: int
    constraint: str
    invoker: str
    """current->comm of the allocation that invoked the OOM killer."""
    gfp_mask: int
    order: int
    reaped: bool = False
    exited: bool = False


@dataclass
class _OomState:
    victims: list[int] = field(default_factory=list)  # tasks with TIF_MEMDIE (oom_victims)
    reaper_queue: list[int] = field(default_factory=list)  # oom_reaper_list (tasks), oldest first
    kills: list[OomKill] = field(default_factory=list)
    reports: list[float] = field(default_factory=list)  # ratelimit: times of printed reports (ns)
    dying: list[int] = field(default_factory=list)  # tasks with a pending SIGKILL, not yet exited


def _state(k: Kernel) -> _OomState:
    st = k.__dict__.get("oom")
    if st is None:
        st = k.__dict__["oom"] = _OomState()
    return st


def kills(k: Kernel) -> list[OomKill]:
    """Every OOM kill so far, oldest first."""
    return list(_state(k).kills)


# -- tasks, as the kernel reaches them ----------------------------------------------------------
def current(k: Kernel) -> int:
    """``current``: the task a workload runs as (k.current_task), else the idle task of the
    current CPU (per-CPU current_task)."""
    t = k.__dict__.get("current_task")
    if t:
        return t
    return k.kmem.mem.read_u64(k.pa(k.per_cpu_ptr(k.sym("current_task"), k.current_cpu)))


def task_comm(k: Kernel, tsk: int) -> str:
    raw = k.mem.read(k.pa(k.kmem.addr(tsk, "task_struct", "comm")), 16)
    return raw.split(b"\0")[0].decode(errors="replace")


def _tget(k: Kernel, tsk: int, f: str) -> int:
    return k.kmem.get(tsk, "task_struct", f)


def for_each_process(k: Kernel) -> list[int]:
    """for_each_process(): the thread group leaders on init_task.tasks, in list order."""
    km = k.kmem
    head = km.addr(k.sym("init_task"), "task_struct", "tasks")
    off = k.T.struct("task_struct").offsetof("tasks")
    out, p = [], km.get(head, "list_head", "next")
    while p != head and len(out) < 1 << 20:
        out.append(p - off)
        p = km.get(p, "list_head", "next")
    return out


def for_each_thread(k: Kernel, p: int) -> list[int]:
    from mmintro.kernel import exit as E

    return E._thread_group(k, p) or [p]


def find_lock_task_mm(k: Kernel, p: int) -> int | None:
    """find_lock_task_mm(): p or a thread of its group that still has an mm."""
    for t in for_each_thread(k, p):
        if _tget(k, t, "mm"):
            return t
    return None


def is_global_init(k: Kernel, p: int) -> bool:
    return _tget(k, p, "tgid") == 1


def oom_unkillable_task(k: Kernel, p: int) -> bool:
    return is_global_init(k, p) or bool(_tget(k, p, "flags") & PF_KTHREAD)


def _signal(k: Kernel, p: int) -> int:
    return _tget(k, p, "signal")


def oom_score_adj(k: Kernel, p: int) -> int:
    """task->signal->oom_score_adj (short; 0 for the simulator's idle tasks, which have no
    signal_struct of their own)."""
    sig = _signal(k, p)
    return k.kmem.get(sig, "signal_struct", "oom_score_adj") if sig else 0


def set_oom_score_adj(k: Kernel, p: int, value: int) -> None:
    """fs/proc/base.c __set_oom_adj() for a write to /proc/PID/oom_score_adj by root: the
    value (-1000..1000) into the signal_struct of p's thread group (and of every other process
    sharing its mm, as __set_oom_adj does for CLONE_VM users)."""
    if not OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX:
        raise ValueError(f"oom_score_adj {value} is outside {OOM_SCORE_ADJ_MIN}..{OOM_SCORE_ADJ_MAX} (EINVAL)")
    km = k.kmem
    mm = _tget(k, p, "mm")
    targets = [p]
    if mm and km.get(mm, "mm_struct", "mm_users.counter") > 1:
        targets += [
            q
            for q in for_each_process(k)
            if q != p
            and _signal(k, q) != _signal(k, p)
            and any(_tget(k, t, "mm") == mm for t in for_each_thread(k, q))
            and not oom_unkillable_task(k, q)
        ]
    for t in targets:
        km.set(_signal(k, t), "signal_struct", "oom_score_adj", value & 0xFFFF)


def _mm_flags(k: Kernel, mm: int) -> int:
    return k.kmem.get(mm, "mm_struct", "flags.__mm_flags[0]")


def mm_flags_test(k: Kernel, bit: int, mm: int) -> bool:
    return bool(_mm_flags(k, mm) >> bit & 1)


def mm_flags_set(k: Kernel, bit: int, mm: int) -> bool:
    """mm_flags_test_and_set(): sets ``bit``, returns whether it was set before."""
    f = _mm_flags(k, mm)
    k.kmem.set(mm, "mm_struct", "flags.__mm_flags[0]", f | 1 << bit)
    return bool(f >> bit & 1)


def tsk_is_oom_victim(k: Kernel, tsk: int) -> bool:
    """tsk->signal->oom_mm != NULL."""
    sig = _signal(k, tsk)
    return bool(sig and k.kmem.get(sig, "signal_struct", "oom_mm"))


def oom_reserves_allowed(k: Kernel, tsk: int | None = None) -> bool:
    """page_alloc.c oom_reserves_allowed(): an OOM victim may use the ALLOC_OOM reserves."""
    return tsk_is_oom_victim(k, current(k) if tsk is None else tsk)


def fatal_signal_pending(k: Kernel, tsk: int) -> bool:
    """__fatal_signal_pending(): SIGKILL in the task's own pending set."""
    a = k.kmem.addr(tsk, "task_struct", "pending.signal.sig[0]")
    return bool(k.kmem.mem.read_u64(k.pa(a)) >> (SIGKILL - 1) & 1)


def do_send_sig_info_sigkill(k: Kernel, p: int) -> None:
    """kernel/signal.c do_send_sig_info(SIGKILL, SEND_SIG_PRIV, p, PIDTYPE_TGID): SIGKILL
    into signal->shared_pending (no sigqueue for SIGKILL), then complete_signal()'s group
    exit -- signal->flags = SIGNAL_GROUP_EXIT, group_exit_code = SIGKILL, group_stop_count 0,
    and every thread's pending set gets SIGKILL (signal_wake_up)."""
    km = k.kmem
    sig = _signal(k, p)
    bit = 1 << (SIGKILL - 1)
    for a in [
        km.addr(sig, "signal_struct", "shared_pending.signal.sig[0]"),
        *(km.addr(t, "task_struct", "pending.signal.sig[0]") for t in for_each_thread(k, p)),
    ]:
        km.mem.write_u64(k.pa(a), km.mem.read_u64(k.pa(a)) | bit)
    km.set(sig, "signal_struct", "flags", SIGNAL_GROUP_EXIT)
    km.set(sig, "signal_struct", "group_exit_code", SIGKILL)
    km.set(sig, "signal_struct", "group_stop_count", 0)
    st = _state(k)
    if p not in st.dying:
        st.dying.append(p)


# -- counters ------------------------------------------------------------------------------
def _mem():
    from mmintro.kernel import memory

    return memory


def get_mm_counter(k: Kernel, mm: int, member: str) -> int:
    return _mem().get_mm_counter(k, mm, member)


def mm_pgtables_bytes(k: Kernel, mm: int) -> int:
    return k.kmem.get(mm, "mm_struct", "pgtables_bytes.counter")


def totalram_pages(k: Kernel) -> int:
    return k.kmem.mem.read_u64(k.pa(k.sym("_totalram_pages")))


def total_swap_pages(k: Kernel) -> int:
    return int.from_bytes(k.mem.read(k.pa(k.sym("total_swap_pages")), 8), "little", signed=True)


def count_vm_event(k: Kernel, item: str) -> None:
    k.vm_events[k.current_cpu][k.T.const(item)] += 1


# -- choosing --------------------------------------------------------------------------------
def oom_badness(k: Kernel, p: int, totalpages: int) -> int:
    """mm/oom_kill.c oom_badness(): LONG_MIN for a task that must not be chosen, else its
    rss + swap entries + page tables (pages), plus oom_score_adj * (totalpages / 1000)."""
    if oom_unkillable_task(k, p):
        return LONG_MIN
    t = find_lock_task_mm(k, p)
    if t is None:
        return LONG_MIN
    adj = oom_score_adj(k, t)
    mm = _tget(k, t, "mm")
    if adj == OOM_SCORE_ADJ_MIN or mm_flags_test(k, MMF_OOM_SKIP, mm):  # in_vfork(p): no vfork here
        return LONG_MIN
    points = _mem().get_mm_rss(k, mm) + get_mm_counter(k, mm, "MM_SWAPENTS") + mm_pgtables_bytes(k, mm) // PAGE_SIZE
    adj *= totalpages // 1000  # Normalize to oom_score_adj units
    return points + adj


def constrained_alloc(k: Kernel, oc: OomControl) -> int:
    """mm/oom_kill.c constrained_alloc() (no memcg, no cpusets): totalpages and the type of
    limit on the request."""
    oc.totalpages = totalram_pages(k) + total_swap_pages(k)
    if oc.zonelist is None:
        return CONSTRAINT_NONE
    if oc.gfp_mask & G.__GFP_THISNODE:
        return CONSTRAINT_NONE
    n_memory = {nid for nid, zs in enumerate(k.zones) if any(z.present for z in zs)}
    if oc.nodemask is not None and not n_memory <= set(oc.nodemask):
        oc.totalpages = total_swap_pages(k)
        for nid in sorted(oc.nodemask):
            if nid < len(k.zones):
                oc.totalpages += sum(z.present for z in k.zones[nid])  # node_present_pages()
        return CONSTRAINT_MEMORY_POLICY
    return CONSTRAINT_NONE  # cpuset_zone_allowed() allows every zone: no cpusets


def _mempolicy_in_oom_domain(k: Kernel, tsk: int, mask: frozenset[int]) -> bool:
    """mempolicy_in_oom_domain(): a task without an MPOL_BIND policy, or whose bind nodes
    intersect ``mask``."""
    try:
        from mmintro.kernel import mempolicy
    except ImportError:
        return True
    pol = _tget(k, tsk, "mempolicy") if k.T.struct("task_struct").has_member("mempolicy") else 0
    if not pol:
        return True
    km = k.kmem
    mode = km.get(pol, "mempolicy", "mode")
    if mode != getattr(mempolicy, "MPOL_BIND", k.T.const("MPOL_BIND")):
        return True
    bits = km.get(pol, "mempolicy", "nodes.bits[0]")
    return any(bits >> n & 1 for n in mask)


def oom_cpuset_eligible(k: Kernel, start: int, oc: OomControl) -> bool:
    """oom_cpuset_eligible(): with a mempolicy nodemask, a thread whose policy can use those
    nodes; otherwise cpuset_mems_allowed_intersects (always true without cpusets)."""
    for t in for_each_thread(k, start):
        if oc.nodemask is not None:
            if _mempolicy_in_oom_domain(k, t, oc.nodemask):
                return True
        else:
            return True
    return False


def oom_evaluate_task(k: Kernel, task: int, oc: OomControl) -> bool:
    """mm/oom_kill.c oom_evaluate_task(); True stops the scan (abort)."""
    if oom_unkillable_task(k, task):
        return False
    if not oom_cpuset_eligible(k, task, oc):
        return False
    if tsk_is_oom_victim(k, task):
        oom_mm = k.kmem.get(_signal(k, task), "signal_struct", "oom_mm")
        if mm_flags_test(k, MMF_OOM_SKIP, oom_mm):
            return False
        oc.chosen = -1  # abort: this victim has not released its memory yet
        return True
    if k.kmem.get(_signal(k, task), "signal_struct", "oom_flag_origin"):  # oom_task_origin()
        points = (1 << 63) - 1
    else:
        points = oom_badness(k, task, oc.totalpages)
        if points == LONG_MIN or points < oc.chosen_points:
            return False
    oc.chosen = task
    oc.chosen_points = points
    return False


def select_bad_process(k: Kernel, oc: OomControl) -> None:
    """mm/oom_kill.c select_bad_process(): the highest oom_badness over for_each_process
    (a later task wins a tie)."""
    oc.chosen_points = LONG_MIN
    for p in for_each_process(k):
        if oom_evaluate_task(k, p, oc):
            break


# -- the report ---------------------------------------------------------------------------
def _nodelist(nodes) -> str:
    from mmintro.kernel.page_alloc import _nodelist as nl

    return nl(nodes)


def dump_task_lines(k: Kernel, oc: OomControl) -> list[str]:
    """dump_tasks(): the header and one line per eligible process that has an mm."""
    lines = [
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
        "oom_score_adj name",
    ]
    for p in for_each_process(k):
        if oom_unkillable_task(k, p) or not oom_cpuset_eligible(k, p, oc):
            continue
        t = find_lock_task_mm(k, p)
        if t is None:
            continue
        mm = _tget(k, t, "mm")
        c = {m: get_mm_counter(k, mm, m) for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS")}
        lines.append(
            f"[{_tget(k, t, 'pid'):7d}] {0:5d} {_tget(k, t, 'tgid'):5d} "
            f"{k.kmem.get(mm, 'mm_struct', 'total_vm'):8d} {_mem().get_mm_rss(k, mm):8d} "
            f"{c['MM_ANONPAGES']:8d} {c['MM_FILEPAGES']:8d} {c['MM_SHMEMPAGES']:9d} "
            f"{mm_pgtables_bytes(k, mm):8d} {c['MM_SWAPENTS']:8d}         {oom_score_adj(k, t):5d} "
            f"{task_comm(k, t)}"
        )
    return lines


def should_dump_unreclaim_slab(k: Kernel) -> bool:
    """should_dump_unreclaim_slab(): unreclaimable slab larger than every LRU page together."""
    g = lambda item: sum(d.get(item, 0) for d in k.node_vm_stat)
    nr_lru = sum(
        g(i)
        for i in (
            "NR_ACTIVE_ANON",
            "NR_INACTIVE_ANON",
            "NR_ACTIVE_FILE",
            "NR_INACTIVE_FILE",
            "NR_ISOLATED_ANON",
            "NR_ISOLATED_FILE",
            "NR_UNEVICTABLE",
        )
    )
    return g("NR_SLAB_UNRECLAIMABLE_B") // PAGE_SIZE > nr_lru


def dump_header_lines(k: Kernel, oc: OomControl) -> list[tuple[int, str]]:
    """mm/oom_kill.c dump_header() as (level, line) pairs; dump_stack() is left out."""
    from mmintro.kernel import show_mem

    cur = current(k)
    out = [
        (
            KERN_WARNING,
            f"{task_comm(k, cur)} invoked oom-killer: gfp_mask={oc.gfp_mask:#x}"
            f"({G.format_gfp(oc.gfp_mask)}), order={oc.order}, oom_score_adj={oom_score_adj(k, cur)}",
        )
    ]
    out += show_mem.show_mem_lines(k, show_mem.SHOW_MEM_FILTER_NODES, oc.nodemask, G.gfp_zone(oc.gfp_mask))
    out += [(KERN_INFO, line) for line in dump_task_lines(k, oc)]  # sysctl_oom_dump_tasks = 1
    return out


def dump_oom_victim_line(k: Kernel, oc: OomControl, victim: int) -> str:
    """dump_oom_victim(): the one-line summary (cpuset_print_current_mems_allowed and
    mem_cgroup_print_oom_context for a global OOM)."""
    nodemask = "(null)" if oc.nodemask is None else _nodelist(oc.nodemask)
    mems = _nodelist(nid for nid, zs in enumerate(k.zones) if any(z.present for z in zs))
    return (
        f"oom-kill:constraint={OOM_CONSTRAINT_TEXT[oc.constraint]},nodemask={nodemask},cpuset=/,"
        f"mems_allowed={mems},global_oom,task_memcg=/,task={task_comm(k, victim)},"
        f"pid={_tget(k, victim, 'pid')},uid=0"
    )


def _ratelimit(k: Kernel) -> bool:
    """__ratelimit(&oom_rs): at most RATELIMIT_BURST reports per RATELIMIT_INTERVAL."""
    st = _state(k)
    now = max(k.clock_ns, _uptime_ns(k))
    st.reports = [t for t in st.reports if now - t < RATELIMIT_INTERVAL_NS]
    if len(st.reports) >= RATELIMIT_BURST:
        return False
    st.reports.append(now)
    return True


def _uptime_ns(k: Kernel) -> int:
    from mmintro.kernel.timekeeping import uptime_ns

    return uptime_ns(k) if k.__dict__.get("booted") else 0


def _printk_lines(k: Kernel, lines: list[tuple[int, str]]) -> None:
    for level, line in lines:
        k.printk(level, line)


# -- killing -------------------------------------------------------------------------------
def mark_oom_victim(k: Kernel, tsk: int) -> None:
    """mm/oom_kill.c mark_oom_victim(): TIF_MEMDIE (kept as oom_victims' list), signal->oom_mm
    = the task's mm with an mm_count reference (mmgrab), oom_victims + 1."""
    st = _state(k)
    if tsk in st.victims:  # test_and_set_tsk_thread_flag(tsk, TIF_MEMDIE)
        return
    km = k.kmem
    mm = _tget(k, tsk, "mm")
    sig = _signal(k, tsk)
    if not km.get(sig, "signal_struct", "oom_mm"):
        km.set(sig, "signal_struct", "oom_mm", mm)
        km.set(mm, "mm_struct", "mm_count.counter", km.get(mm, "mm_struct", "mm_count.counter") + 1)
    st.victims.append(tsk)


def queue_oom_reaper(k: Kernel, tsk: int) -> None:
    """queue_oom_reaper(): once per mm (MMF_OOM_REAP_QUEUED); the timer fires after
    OOM_REAPER_DELAY."""
    oom_mm = k.kmem.get(_signal(k, tsk), "signal_struct", "oom_mm")
    if mm_flags_set(k, MMF_OOM_REAP_QUEUED, oom_mm):
        return
    _state(k).reaper_queue.append(tsk)


def __task_will_free_mem(k: Kernel, task: int) -> bool:
    km = k.kmem
    sig = _signal(k, task)
    if km.get(sig, "signal_struct", "core_state"):
        return False
    if km.get(sig, "signal_struct", "flags") & SIGNAL_GROUP_EXIT:
        return True
    return len(for_each_thread(k, task)) <= 1 and bool(_tget(k, task, "flags") & PF_EXITING)


def task_will_free_mem(k: Kernel, task: int) -> bool:
    """task_will_free_mem(): the task is dying and so is every other user of its mm."""
    mm = _tget(k, task, "mm")
    if not mm or not __task_will_free_mem(k, task) or mm_flags_test(k, MMF_OOM_SKIP, mm):
        return False
    if k.kmem.get(mm, "mm_struct", "mm_users.counter") <= 1:
        return True
    for p in for_each_process(k):
        if _signal(k, p) == _signal(k, task) or not any(_tget(k, t, "mm") == mm for t in for_each_thread(k, p)):
            continue
        if not __task_will_free_mem(k, p):
            return False
    return True


def __oom_kill_process(k: Kernel, victim: int, message: str, oc: OomControl) -> None:
    """mm/oom_kill.c __oom_kill_process()."""
    km = k.kmem
    p = find_lock_task_mm(k, victim)
    if p is None:
        k.printk(
            KERN_INFO,
            f"{message}: OOM victim {_tget(k, victim, 'pid')} ({task_comm(k, victim)}) "
            "is already exiting. Skip killing the task",
        )
        return
    victim = p
    mm = _tget(k, victim, "mm")
    count_vm_event(k, "OOM_KILL")  # Raise event before sending signal: task reaper must see this
    do_send_sig_info_sigkill(k, victim)
    mark_oom_victim(k, victim)
    K = PAGE_SIZE >> 10
    k.printk(
        KERN_ERR,
        f"{message}: Killed process {_tget(k, victim, 'pid')} ({task_comm(k, victim)}) "
        f"total-vm:{km.get(mm, 'mm_struct', 'total_vm') * K}kB, "
        f"anon-rss:{get_mm_counter(k, mm, 'MM_ANONPAGES') * K}kB, "
        f"file-rss:{get_mm_counter(k, mm, 'MM_FILEPAGES') * K}kB, "
        f"shmem-rss:{get_mm_counter(k, mm, 'MM_SHMEMPAGES') * K}kB, UID:0 "
        f"pgtables:{mm_pgtables_bytes(k, mm) >> 10}kB oom_score_adj:{oom_score_adj(k, victim)}",
    )
    can_oom_reap = True
    # Kill all user processes sharing victim->mm in other thread groups
    for q in for_each_process(k):
        if _signal(k, q) == _signal(k, victim) or not any(_tget(k, t, "mm") == mm for t in for_each_thread(k, q)):
            continue
        if is_global_init(k, q):
            can_oom_reap = False
            mm_flags_set(k, MMF_OOM_SKIP, mm)
            k.printk(
                KERN_INFO,
                f"oom killer {_tget(k, victim, 'pid')} ({task_comm(k, victim)}) has mm pinned by "
                f"{_tget(k, q, 'pid')} ({task_comm(k, q)})",
            )
            continue
        if _tget(k, q, "flags") & PF_KTHREAD:
            continue
        do_send_sig_info_sigkill(k, q)
    if can_oom_reap:
        queue_oom_reaper(k, victim)
    _state(k).kills.append(
        OomKill(
            _tget(k, victim, "pid"),
            task_comm(k, victim),
            victim,
            mm,
            oc.chosen_points,
            oc.totalpages,
            OOM_CONSTRAINT_TEXT[oc.constraint],
            task_comm(k, current(k)),
            oc.gfp_mask,
            oc.order,
        )
    )


def oom_kill_process(k: Kernel, oc: OomControl, message: str) -> None:
    """mm/oom_kill.c oom_kill_process(): a victim already dying only gets the reserves and
    the reaper; otherwise the report (ratelimited) and __oom_kill_process."""
    victim = oc.chosen
    assert victim is not None and victim != -1
    if task_will_free_mem(k, victim):
        mark_oom_victim(k, victim)
        queue_oom_reaper(k, victim)
        return
    if _ratelimit(k):
        _printk_lines(k, dump_header_lines(k, oc))
        k.printk(KERN_INFO, dump_oom_victim_line(k, oc, victim))
    __oom_kill_process(k, victim, message, oc)


def out_of_memory(k: Kernel, oc: OomControl) -> bool:
    """mm/oom_kill.c out_of_memory(): True when the caller should retry (something was
    killed, a victim is on its way out, or a !__GFP_FS request that the OOM killer does not
    serve)."""
    cur = current(k)
    if _tget(k, cur, "mm") and task_will_free_mem(k, cur):
        mark_oom_victim(k, cur)
        queue_oom_reaper(k, cur)
        return True
    if not oc.gfp_mask & G.FLAGS["__GFP_FS"]:
        return True
    oc.constraint = constrained_alloc(k, oc)
    if oc.constraint != CONSTRAINT_MEMORY_POLICY:
        oc.nodemask = None
    # check_panic_on_oom(): sysctl_panic_on_oom is 0; sysctl_oom_kill_allocating_task is 0
    select_bad_process(k, oc)
    if oc.chosen is None:
        _printk_lines(k, dump_header_lines(k, oc))
        k.printk(KERN_WARNING, "Out of memory and no killable processes...")
        k.printk(0, "Kernel panic - not syncing: System is deadlocked on memory")
        raise OomPanic("Out of memory and no killable processes... (panic: System is deadlocked on memory)")
    if oc.chosen != -1:
        oom_kill_process(k, oc, "Out of memory")
    return True


# -- the oom_reaper and the victims' exit -----------------------------------------------------
def __oom_reap_task_mm(k: Kernel, mm: int) -> bool:
    """mm/oom_kill.c __oom_reap_task_mm(): MMF_UNSTABLE, then from the top of the address space
    down every VMA that is anonymous or private (not hugetlb, not PFN-mapped) unmapped
    (unmap_page_range with no zap_details: anonymous pages and private file pages go)."""
    from mmintro.kernel import mmap as M

    memory = _mem()
    mm_flags_set(k, MMF_UNSTABLE, mm)
    km = k.kmem
    vmas = [e for _f, _l, e in M.mm_tree(k, mm).mt_for_each()]
    for vma in reversed(vmas):  # mas_for_each_rev
        flags = km.get(vma, "vm_area_struct", "vm_flags")
        if flags & (memory.VM_HUGETLB | M.VM_PFNMAP):
            continue
        if memory.vma_is_anonymous(k, vma) or not flags & M.VM_SHARED:
            memory.zap_page_range(
                k, vma, km.get(vma, "vm_area_struct", "vm_start"), km.get(vma, "vm_area_struct", "vm_end")
            )
    return True


def oom_reap_task_mm(k: Kernel, tsk: int, mm: int) -> bool:
    """oom_reap_task_mm(): nothing to do once MMF_OOM_SKIP is set (exit_mmap has run), else
    reap and report.  (mmap_read_trylock always succeeds: no lock is ever held here.)"""
    if mm_flags_test(k, MMF_OOM_SKIP, mm):
        return True
    ret = __oom_reap_task_mm(k, mm)
    if ret:
        K = PAGE_SIZE >> 10
        k.printk(
            KERN_INFO,
            f"oom_reaper: reaped process {_tget(k, tsk, 'pid')} ({task_comm(k, tsk)}), now "
            f"anon-rss:{get_mm_counter(k, mm, 'MM_ANONPAGES') * K}kB, "
            f"file-rss:{get_mm_counter(k, mm, 'MM_FILEPAGES') * K}kB, "
            f"shmem-rss:{get_mm_counter(k, mm, 'MM_SHMEMPAGES') * K}kB",
        )
        for kill in _state(k).kills:
            if kill.task == tsk and kill.mm == mm:
                kill.reaped = True
    return ret


def oom_reap_task(k: Kernel, tsk: int) -> None:
    """mm/oom_kill.c oom_reap_task(): reap (first attempt succeeds), then MMF_OOM_SKIP hides
    the mm from the OOM killer."""
    mm = k.kmem.get(_signal(k, tsk), "signal_struct", "oom_mm")
    attempts = 0
    while attempts < MAX_OOM_REAP_RETRIES and not oom_reap_task_mm(k, tsk, mm):
        attempts += 1
    mm_flags_set(k, MMF_OOM_SKIP, mm)


def oom_reaper(k: Kernel) -> int:
    """The oom_reaper kthread after OOM_REAPER_DELAY: every queued victim whose mm is not
    MMF_OOM_SKIP yet (wake_oom_reaper) is reaped, oldest first.  Returns how many."""
    st = _state(k)
    n = 0
    if st.reaper_queue:
        from mmintro.kernel import timekeeping

        timekeeping.tick(k, OOM_REAPER_DELAY_S)
    while st.reaper_queue:
        tsk = st.reaper_queue.pop(0)
        mm = k.kmem.get(_signal(k, tsk), "signal_struct", "oom_mm")
        if mm_flags_test(k, MMF_OOM_SKIP, mm):  # the victim terminated on its own
            continue
        oom_reap_task(k, tsk)
        n += 1
    return n


def exit_oom_victim(k: Kernel, tsk: int) -> None:
    """exit_oom_victim(): TIF_MEMDIE cleared, oom_victims - 1 (exit_mm of a victim)."""
    st = _state(k)
    if tsk in st.victims:
        st.victims.remove(tsk)


def oom_victims_run(k: Kernel, keep_current: bool = True) -> list[int]:
    """Let the OOM victims run (see the module's "Time"): the oom_reaper first, then every
    task with a pending SIGKILL except ``current`` (when ``keep_current``) takes it
    (get_signal -> do_group_exit -> do_exit).  Returns the pids that exited."""
    from mmintro.kernel import exit as E
    from mmintro.kernel import fork

    st = _state(k)
    if not st.dying:
        return []
    oom_reaper(k)
    cur = current(k) if keep_current else 0
    gone = []
    procs = k.__dict__.get("processes", [])
    for tsk in list(st.dying):
        if tsk == cur or any(t == cur for t in for_each_thread(k, tsk)):
            continue
        st.dying.remove(tsk)
        proc = next((p for p in procs if p.task == tsk), None)
        pid = _tget(k, tsk, "pid")
        if proc is None:
            proc = fork.Process(pid, task_comm(k, tsk), tsk, _tget(k, tsk, "mm"), 0, None)  # type: ignore[arg-type]
        threads = for_each_thread(k, tsk)
        E.do_exit(k, proc)
        for t in threads:
            exit_oom_victim(k, t)
        for kill in st.kills:
            if kill.task in threads:
                kill.exited = True
        gone.append(pid)
    return gone


# -- the page allocator's side ------------------------------------------------------------------
def __alloc_pages_may_oom(k: Kernel, gfp: int, order: int, ac) -> tuple[int | None, bool]:
    """mm/page_alloc.c __alloc_pages_may_oom(): (pfn or None, did_some_progress)."""
    from mmintro.kernel import page_alloc as PA

    did_some_progress = False
    # mutex_trylock(&oom_lock) always succeeds: nothing runs concurrently.
    # One more attempt at the high watermark catches a parallel OOM kill's memory.
    pfn = (
        PA.get_page_from_freelist(
            k,
            (gfp | G.FLAGS["__GFP_HARDWALL"]) & ~G.__GFP_DIRECT_RECLAIM,
            order,
            PA.ALLOC_WMARK_HIGH | PA.ALLOC_CPUSET,
            ac,
        )
        if ac.preferred is not None
        else None
    )
    if pfn is not None:
        return pfn, False
    cur = current(k)
    if _tget(k, cur, "flags") & PF_DUMPCORE:
        return None, False
    if order > PA.PAGE_ALLOC_COSTLY_ORDER:  # The OOM killer will not help higher order allocs
        return None, False
    if gfp & (G.FLAGS["__GFP_RETRY_MAYFAIL"] | G.__GFP_THISNODE):
        return None, False
    if ac.highest_zoneidx < PA.NR_ZONE_IDX["Normal"]:  # does not needlessly kill tasks for lowmem
        return None, False
    if not k.__dict__.get("processes"):
        # mmintro: a machine without any user process (the allocator-only workloads, which
        # stand in for a kernel module's allocations) has nobody to kill; the request fails
        # as it did before the OOM killer existed here.  A real kernel would print the report
        # and panic ("System is deadlocked on memory").
        return None, False
    oc = OomControl(nodemask=ac.nodemask, gfp_mask=gfp, order=order, zonelist=ac.zones)
    nofail = gfp & G.FLAGS["__GFP_NOFAIL"]
    if out_of_memory(k, oc) or nofail:
        did_some_progress = True
        # the victims run while the allocator gets ready to retry (see the module's "Time")
        oom_victims_run(k, keep_current=True)
        if nofail:  # __alloc_pages_cpuset_fallback(ALLOC_NO_WATERMARKS)
            pfn = PA.get_page_from_freelist(k, gfp, order, PA.ALLOC_NO_WATERMARKS | PA.ALLOC_CPUSET, ac)
            if pfn is None:
                pfn = PA.get_page_from_freelist(k, gfp, order, PA.ALLOC_NO_WATERMARKS, ac)
    return pfn, did_some_progress


def pagefault_out_of_memory(k: Kernel) -> bool:
    """mm/oom_kill.c pagefault_out_of_memory() for a fault that returned VM_FAULT_OOM: a task
    with a fatal signal pending just dies (:class:`FatalSignalPending`); otherwise the
    "Huh VM_FAULT_OOM leaked out" warning and the fault is retried (returns True)."""
    cur = current(k)
    if fatal_signal_pending(k, cur):
        raise FatalSignalPending(
            f"{task_comm(k, cur)} (pid {_tget(k, cur, 'pid')}) was killed by the OOM killer during the fault"
        )
    k.printk(KERN_WARNING, "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF")
    return True
