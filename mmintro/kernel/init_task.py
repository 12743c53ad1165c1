"""The boot task and the per-CPU idle tasks (init/init_task.c, kernel/sched/core.c).

Until the process model exists (fork/exec/exit come with the process issue), the machine
has the tasks every booted kernel has at minimum: ``init_task`` ("swapper/0", pid 0, the
idle task of CPU 0, running on ``init_thread_union``'s stack with ``active_mm =
&init_mm``) and one idle task per other CPU.  Each CPU's runqueue has ``curr`` and
``idle`` pointing at its idle task, and ``current_task`` says the same; the snapshot is
taken as CPU 0 panics, so crash's and drgn's panic context is swapper/0.

Kernel stacks are virtually mapped (CONFIG_VMAP_STACK): the idle tasks of CPUs >= 1 get
theirs when fork_idle() runs, once vmalloc is up (:func:`fork_idle_stacks`), from
kernel/fork.c's :func:`alloc_thread_stack_node` — a THREAD_SIZE vmalloc area aligned to
THREAD_SIZE, plus its guard page — which the process model will share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SIZE
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

# include/linux/sched.h (#defines)
PF_IDLE = 0x00000002
PF_KTHREAD = 0x00200000
TASK_RUNNING = 0
# include/linux/maple_tree.h: MM_MT_FLAGS = ALLOC_RANGE | USE_RCU | LOCK_EXTERN
MM_MT_FLAGS = 0x01 | 0x02 | 0x300
# include/uapi/linux/magic.h
STACK_END_MAGIC = 0x57AC6E9D
# include/linux/thread_info.h: THREAD_ALIGN defaults to THREAD_SIZE (x86 does not override it).
THREAD_SIZE = kc.THREAD_SIZE
THREAD_ALIGN = THREAD_SIZE
# include/linux/sched/task.h (#define): THREADINFO_GFP = GFP_KERNEL_ACCOUNT | __GFP_ZERO.
THREADINFO_GFP = G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO


def init_tasks(k: Kernel) -> None:
    """INIT_TASK and sched_init()'s init_idle(current, 0): the boot CPU's idle task.  The other
    CPUs' idle tasks come later, from the task_struct cache (:func:`fork_idle`)."""
    T = k.T
    km = k.kmem
    init_task = k.sym("init_task")
    init_mm = k.sym("init_mm")
    tasks = [init_task]
    tasks_off = T.struct("task_struct").offsetof("tasks")
    for cpu, t in enumerate(tasks):
        km.write_bytes(km.addr(t, "task_struct", "comm"), f"swapper/{cpu}".encode().ljust(16, b"\0"))
        km.set(t, "task_struct", "pid", 0)
        km.set(t, "task_struct", "tgid", 0)
        km.set(t, "task_struct", "__state", TASK_RUNNING)
        km.set(t, "task_struct", "flags", PF_IDLE | PF_KTHREAD)
        km.set(t, "task_struct", "mm", 0)
        km.set(t, "task_struct", "active_mm", init_mm)
        km.set(t, "task_struct", "usage.refs.counter", 2)
        km.set(t, "task_struct", "prio", 120)
        km.set(t, "task_struct", "static_prio", 120)
        km.set(t, "task_struct", "normal_prio", 120)
        # task_cpu(): x86 has THREAD_INFO_IN_TASK, so 6.18 keeps the CPU in thread_info.cpu.
        km.set(
            t,
            "task_struct",
            "thread_info.cpu"
            if T.struct("task_struct").has_member("thread_info") and not T.struct("task_struct").has_member("cpu")
            else "cpu",
            cpu,
        )
        km.set(t, "task_struct", "real_parent", init_task)
        km.set(t, "task_struct", "parent", init_task)
        init_idle_affinity(k, t, cpu)
        km.set(t, "task_struct", "group_leader", t)
        for lst in ("children", "sibling", "thread_node", "ptraced", "ptrace_entry"):
            if T.struct("task_struct").has_member(lst):
                km.init_list_head(km.addr(t, "task_struct", lst))
        _init_idle_rq(k, t, cpu)
    for cpu in range(1, k.config.cpus):  # the per-CPU bookkeeping start_kernel sets up for every CPU
        k.mem.write(k.pa(k.per_cpu_ptr(k.sym("cpu_number"), cpu)), cpu.to_bytes(4, "little"))
        km.write_u64(k.per_cpu_ptr(k.sym("this_cpu_off"), cpu), k.per_cpu_offset[cpu])
    init_nsproxy(k, tasks)
    init_signals(k, init_task)
    from mmintro.kernel import bugs, cred

    cred.init_cred(k)
    bugs.cpu_select_mitigations(k)
    # init_task.stack is init_thread_union; the tasks list holds only init_task (idle
    # tasks of other CPUs are not on it, as in the kernel).
    km.set(init_task, "task_struct", "stack", k.sym("init_thread_union"))
    km.set(init_task, "task_struct", "stack_refcount.refs.counter", 1)  # REFCOUNT_INIT(1)
    set_task_stack_end_magic(k, init_task)  # start_kernel()
    km.write_list(init_task + tasks_off, [])
    # init_mm: the kernel's own mm.
    km.set(init_mm, "mm_struct", "pgd", k.sym("swapper_pg_dir"))
    km.set(init_mm, "mm_struct", "mm_users.counter", 2)
    km.set(init_mm, "mm_struct", "mm_count.counter", 1)
    km.set(init_mm, "mm_struct", "mm_mt.ma_flags", MM_MT_FLAGS)
    k.idle_tasks = tasks


def _init_idle_rq(k: Kernel, t: int, cpu: int) -> None:
    """init_idle()'s runqueue half: rq->curr = rq->idle = the idle task; per-CPU current_task,
    cpu_number and this_cpu_off."""
    km = k.kmem
    rq = k.per_cpu_ptr(k.sym("runqueues"), cpu)
    km.set(rq, "rq", "curr", t)
    km.set(rq, "rq", "idle", t)
    km.set(rq, "rq", "cpu", cpu)
    km.write_u64(k.per_cpu_ptr(k.sym("current_task"), cpu), t)
    k.mem.write(k.pa(k.per_cpu_ptr(k.sym("cpu_number"), cpu)), cpu.to_bytes(4, "little"))
    km.write_u64(k.per_cpu_ptr(k.sym("this_cpu_off"), cpu), k.per_cpu_offset[cpu])


# include/uapi/asm-generic/resource.h (#defines) and include/asm-generic/resource.h INIT_RLIMITS
RLIM_INFINITY = (1 << 64) - 1
_STK_LIM = 8 << 20
MLOCK_LIMIT = 8 << 20
INR_OPEN_CUR, INR_OPEN_MAX = 1024, 4096
MQ_BYTES_MAX = 819200
INIT_RLIMITS = [  # RLIMIT_CPU ... RLIMIT_RTTIME
    (RLIM_INFINITY, RLIM_INFINITY),
    (RLIM_INFINITY, RLIM_INFINITY),
    (RLIM_INFINITY, RLIM_INFINITY),
    (_STK_LIM, RLIM_INFINITY),
    (0, RLIM_INFINITY),
    (RLIM_INFINITY, RLIM_INFINITY),
    (0, 0),
    (INR_OPEN_CUR, INR_OPEN_MAX),
    (MLOCK_LIMIT, MLOCK_LIMIT),
    (RLIM_INFINITY, RLIM_INFINITY),
    (RLIM_INFINITY, RLIM_INFINITY),
    (0, 0),
    (MQ_BYTES_MAX, MQ_BYTES_MAX),
    (0, 0),
    (0, 0),
    (RLIM_INFINITY, RLIM_INFINITY),
]


def init_signals(k: Kernel, init_task: int) -> None:
    """init/init_task.c ``init_signals`` (nr_threads 1, live 1, sigcnt 1, thread_head holding
    init_task, INIT_RLIMITS, every pids[] = &init_struct_pid) and ``init_sighand`` (count 1,
    every action SIG_DFL); kernel/pid.c ``init_struct_pid`` (count 1, level 0, number 0 in
    init_pid_ns); INIT_TASK's ``.signal``, ``.sighand`` and ``.thread_pid``."""
    km = k.kmem
    T = k.T
    for name in ("init_signals", "init_sighand", "init_struct_pid"):
        if name not in k.image.symbols:
            k.image.var(name, "data")
    sig, sighand, pid0 = k.sym("init_signals"), k.sym("init_sighand"), k.sym("init_struct_pid")
    km.set(pid0, "pid", "count.refs.counter", 1)
    km.set(pid0, "pid", "numbers[0].ns", k.sym("init_pid_ns"))
    km.init_list_head(km.addr(pid0, "pid", "wait_pidfd.head"))
    km.set(sig, "signal_struct", "nr_threads", 1)
    km.set(sig, "signal_struct", "live.counter", 1)
    km.set(sig, "signal_struct", "sigcnt.refs.counter", 1)
    km.write_list(km.addr(sig, "signal_struct", "thread_head"), [km.addr(init_task, "task_struct", "thread_node")])
    km.init_list_head(km.addr(sig, "signal_struct", "shared_pending.list"))
    km.init_list_head(km.addr(sig, "signal_struct", "wait_chldexit.head"))
    for i, (cur, mx) in enumerate(INIT_RLIMITS[: T.struct("signal_struct").walk("rlim")[2].nelems]):
        km.set(sig, "signal_struct", f"rlim[{i}].rlim_cur", cur)
        km.set(sig, "signal_struct", f"rlim[{i}].rlim_max", mx)
    for t in ("PIDTYPE_PID", "PIDTYPE_TGID", "PIDTYPE_PGID", "PIDTYPE_SID"):
        km.set(sig, "signal_struct", f"pids[{T.const(t)}]", pid0)
    km.set(sighand, "sighand_struct", "count.refs.counter", 1)
    km.init_list_head(km.addr(sighand, "sighand_struct", "signalfd_wqh.head"))
    km.init_list_head(km.addr(init_task, "task_struct", "pending.list"))
    km.set(init_task, "task_struct", "signal", sig)
    km.set(init_task, "task_struct", "sighand", sighand)
    km.set(init_task, "task_struct", "thread_pid", pid0)


def fork_init_max_threads(k: Kernel) -> None:
    """kernel/fork.c fork_init(): set_max_threads(MAX_THREADS) -- memblock_estimated_nr_free_pages()
    (memory minus reserved, in pages) * PAGE_SIZE / (THREAD_SIZE * 8), clamped to [MIN_THREADS,
    MAX_THREADS] -- then init_task.signal->rlim[RLIMIT_NPROC] and [RLIMIT_SIGPENDING] = max_threads / 2."""
    km = k.kmem
    mb = k.memblock
    nr_pages = (sum(r.size for r in mb.memory) - sum(r.size for r in mb.reserved)) >> 12
    threads = nr_pages * PAGE_SIZE // (THREAD_SIZE * 8)
    max_threads = max(20, min(threads, 0x3FFFFFFF))  # MIN_THREADS, FUTEX_TID_MASK
    if "max_threads" not in k.image.symbols:
        k.image.var("max_threads", "data")
    k.kmem.write_bytes(k.sym("max_threads"), max_threads.to_bytes(4, "little"))
    sig = k.sym("init_signals")
    for r in (6, 11):  # RLIMIT_NPROC, RLIMIT_SIGPENDING (include/uapi/asm-generic/resource.h)
        km.set(sig, "signal_struct", f"rlim[{r}].rlim_cur", max_threads // 2)
        km.set(sig, "signal_struct", f"rlim[{r}].rlim_max", max_threads // 2)


# -- CPU and memory-node affinity (kernel/sched/core.c, kernel/cgroup/cpuset.c, init/main.c) ------
def _mask_words(k: Kernel, typ: str) -> int:
    return k.T.sizeof(typ) // 8


def _set_cpus_allowed_common(k: Kernel, tsk: int, words: list[int]) -> None:
    """kernel/sched/core.c set_cpus_allowed_common(): cpus_mask = new_mask, nr_cpus_allowed =
    its weight (and cpus_ptr = &cpus_mask: no migrate_disable in flight)."""
    km = k.kmem
    n = _mask_words(k, "struct cpumask")
    words = (words + [0] * n)[:n]
    for i, w in enumerate(words):
        km.set(tsk, "task_struct", f"cpus_mask.bits[{i}]", w)
    km.set(tsk, "task_struct", "cpus_ptr", km.addr(tsk, "task_struct", "cpus_mask"))
    km.set(tsk, "task_struct", "nr_cpus_allowed", sum(w.bit_count() for w in words))


def init_idle_affinity(k: Kernel, tsk: int, cpu: int) -> None:
    """The idle task of ``cpu``: mems_allowed all set (build_all_zonelists_init ->
    cpuset_init_current_mems_allowed: nodes_setall(init_task.mems_allowed); fork_idle copies
    init_task), and init_idle()'s set_cpus_allowed_common(idle, cpumask_of(cpu))."""
    km = k.kmem
    for i in range(_mask_words(k, "nodemask_t")):
        km.set(tsk, "task_struct", f"mems_allowed.bits[{i}]", (1 << 64) - 1)
    words = [0] * _mask_words(k, "struct cpumask")
    words[cpu // 64] = 1 << (cpu % 64)
    _set_cpus_allowed_common(k, tsk, words)


def user_task_affinity(k: Kernel, tsk: int) -> None:
    """What every user task inherits from init (pid 1, kernel_init): sched_init_smp()'s
    set_cpus_allowed_ptr(current, housekeeping_cpumask(HK_TYPE_DOMAIN)) (no isolcpus: the
    possible CPUs) and kernel_init_freeable()'s set_mems_allowed(node_states[N_MEMORY]).
    For processes the simulator creates without a parent to copy (copy_process of a new
    program); fork copies its parent's (dup_task_struct) and then needs
    :func:`dup_task_cpus_ptr`."""
    km = k.kmem
    n = _mask_words(k, "struct cpumask")
    possible = k.sym("__cpu_possible_mask")
    _set_cpus_allowed_common(k, tsk, [km.get(possible, "cpumask", f"bits[{i}]") for i in range(n)])
    mem = k.sym("node_states") + k.T.const("N_MEMORY") * k.T.sizeof("nodemask_t")
    for i in range(_mask_words(k, "nodemask_t")):
        km.set(tsk, "task_struct", f"mems_allowed.bits[{i}]", km.get(mem, "nodemask_t", f"bits[{i}]"))


def dup_task_cpus_ptr(k: Kernel, tsk: int, orig: int) -> None:
    """kernel/fork.c dup_task_struct(): after the memcpy, ``if (orig->cpus_ptr ==
    &orig->cpus_mask) tsk->cpus_ptr = &tsk->cpus_mask``."""
    km = k.kmem
    if km.get(orig, "task_struct", "cpus_ptr") == km.addr(orig, "task_struct", "cpus_mask"):
        km.set(tsk, "task_struct", "cpus_ptr", km.addr(tsk, "task_struct", "cpus_mask"))


def set_task_stack_end_magic(k: Kernel, tsk: int) -> None:
    """STACK_END_MAGIC in the lowest word of the stack (end_of_stack(): the stack grows down)."""
    from mmintro.kernel import vmalloc

    stack = k.kmem.get(tsk, "task_struct", "stack")
    magic = STACK_END_MAGIC.to_bytes(8, "little")
    if vmalloc.is_vmalloc_addr(k, stack):
        vmalloc.vmalloc_write(k, stack, magic)
    else:
        k.kmem.write_bytes(stack, magic)


def account_kernel_stack(k: Kernel, tsk: int, account: int) -> None:
    """NR_KERNEL_STACK_KB += account * PAGE_SIZE / 1024 for each page of a vmapped stack, on
    the page's node."""
    from mmintro.kernel import vmalloc

    vm = k.kmem.get(tsk, "task_struct", "stack_vm_area")
    pages = k.kmem.get(vm, "vm_struct", "pages")
    for pfn in vmalloc._read_pfns(k, pages, THREAD_SIZE // PAGE_SIZE):
        nid = k.kmem.get(k.pfn_to_page(pfn), "page", "flags") >> kc.NODES_PGOFF
        k.mod_node_page_state(nid, "NR_KERNEL_STACK_KB", account * (PAGE_SIZE // 1024))


def alloc_thread_stack_node(k: Kernel, tsk: int, node: int, caller: str | int) -> int:
    """kernel/fork.c (CONFIG_VMAP_STACK): reuse one of this CPU's cached stacks (zeroed), else
    __vmalloc_node(THREAD_SIZE, THREAD_ALIGN, THREADINFO_GFP & ~__GFP_ACCOUNT, node); sets
    ``tsk->stack_vm_area`` and ``tsk->stack``.  ``caller`` is the function copy_process() was
    inlined into (kernel_clone, fork_idle): __builtin_return_address(0).  0 or -ENOMEM."""
    from mmintro.kernel import vmalloc

    km = k.kmem
    cache = k.per_cpu_ptr(k.sym("cached_stacks"), k.current_cpu)
    for i in range(k.T.variables["cached_stacks"][0].resolved().nelems):
        s = km.mem.read_u64(k.pa(cache + 8 * i))
        if not s:
            continue
        km.write_u64(cache + 8 * i, 0)  # this_cpu_xchg(cached_stacks[i], NULL)
        stack = km.get(s, "vm_struct", "addr")
        vmalloc.vmalloc_write(k, stack, bytes(THREAD_SIZE))  # clear stale pointers
        km.set(tsk, "task_struct", "stack_vm_area", s)
        km.set(tsk, "task_struct", "stack", stack)
        return 0
    stack = vmalloc.__vmalloc_node(k, THREAD_SIZE, THREAD_ALIGN, THREADINFO_GFP & ~G.__GFP_ACCOUNT, node, caller)
    if not stack:
        return -12
    km.set(tsk, "task_struct", "stack_vm_area", vmalloc.find_vm_area(k, stack))
    km.set(tsk, "task_struct", "stack", stack)
    return 0


def free_thread_stack(k: Kernel, tsk: int) -> None:
    """Keep the stack in a free slot of this CPU's cached_stacks, else vfree it (the kernel
    defers that vfree past an RCU grace period)."""
    from mmintro.kernel import vmalloc

    km = k.kmem
    vm = km.get(tsk, "task_struct", "stack_vm_area")
    cache = k.per_cpu_ptr(k.sym("cached_stacks"), k.current_cpu)
    for i in range(k.T.variables["cached_stacks"][0].resolved().nelems):
        if not km.mem.read_u64(k.pa(cache + 8 * i)):
            km.write_u64(cache + 8 * i, vm)
            break
    else:
        vmalloc.vfree(k, km.get(vm, "vm_struct", "addr"))
    km.set(tsk, "task_struct", "stack", 0)
    km.set(tsk, "task_struct", "stack_vm_area", 0)


def fork_idle(k: Kernel, cpu: int) -> int:
    """kernel/fork.c fork_idle(cpu) -> copy_process(&init_struct_pid, ...): dup_task_struct()
    takes a task_struct from the task_struct cache on cpu_to_node(cpu) (alloc_task_struct_node)
    and copies the forking task, init_task, into it (arch_dup_task_struct); its stack on that
    node (alloc_thread_stack_node, stack_refcount 1, account_kernel_stack, the end magic);
    copy_creds (its own cred from cred_jar); get_nsproxy; then init_idle(task, cpu): swapper/N,
    pid 0, PF_IDLE | PF_KTHREAD, TASK_RUNNING, the CPU's affinity and the runqueue's idle and
    curr.  Not on init_task.tasks, as in the kernel.  Simplified: the copy keeps init_task's
    signal_struct, sighand and fs pointers (copy_process gives an idle task its own copies)."""
    from mmintro.kernel import cred, slub

    km = k.kmem
    T = k.T
    init_task = k.sym("init_task")
    t = slub.kmem_cache_alloc_node(
        k, slub.find_cache(k, "task_struct"), "GFP_KERNEL", k.cpu_to_node(cpu), caller="dup_task_struct"
    )
    if not t:
        raise MemoryError(f"fork_idle: no task_struct for CPU {cpu}")
    km.write_bytes(t, k.mem.read(k.pa(init_task), T.sizeof("struct task_struct")))
    km.set(t, "task_struct", "stack", 0)
    km.set(t, "task_struct", "usage.refs.counter", 2)
    km.write_bytes(km.addr(t, "task_struct", "comm"), f"swapper/{cpu}".encode().ljust(16, b"\0"))
    km.set(
        t,
        "task_struct",
        "thread_info.cpu"
        if T.struct("task_struct").has_member("thread_info") and not T.struct("task_struct").has_member("cpu")
        else "cpu",
        cpu,
    )
    init_idle_affinity(k, t, cpu)
    km.set(t, "task_struct", "group_leader", t)
    for lst in ("children", "sibling", "thread_node", "ptraced", "ptrace_entry", "tasks"):
        if T.struct("task_struct").has_member(lst):
            km.init_list_head(km.addr(t, "task_struct", lst))
    cred.copy_creds(k, t)
    nsp = km.get(t, "task_struct", "nsproxy")
    km.set(nsp, "nsproxy", "count.refs.counter", km.get(nsp, "nsproxy", "count.refs.counter") + 1)
    if alloc_thread_stack_node(k, t, k.cpu_to_node(cpu), "fork_idle"):
        raise MemoryError(f"fork_idle: no stack for CPU {cpu}")
    km.set(t, "task_struct", "stack_refcount.refs.counter", 1)
    account_kernel_stack(k, t, 1)
    set_task_stack_end_magic(k, t)
    _init_idle_rq(k, t, cpu)
    k.idle_tasks.append(t)
    return t


def fork_idle_stacks(k: Kernel) -> None:
    """idle_threads_init(): :func:`fork_idle` for every CPU but the boot one."""
    for cpu in range(1, k.config.cpus):
        fork_idle(k, cpu)


def init_nsproxy(k: Kernel, idle_tasks: list[int]) -> None:
    """kernel/nsproxy.c ``init_nsproxy`` (count REFCOUNT_INIT(1), uts_ns = &init_uts_ns,
    pid_ns_for_children = &init_pid_ns; mnt_ns set by init_mount_tree; the ipc/net/time/cgroup
    namespaces are not modelled) and INIT_TASK's ``.nsproxy = &init_nsproxy``; each other idle
    task is a fork of init_task (fork_idle: get_nsproxy)."""
    km = k.kmem
    if "init_nsproxy" not in k.image.symbols:
        k.image.var("init_nsproxy", "data")
    nsp = k.sym("init_nsproxy")
    km.set(nsp, "nsproxy", "count.refs.counter", len(idle_tasks))
    km.set(nsp, "nsproxy", "uts_ns", k.sym("init_uts_ns"))
    km.set(nsp, "nsproxy", "pid_ns_for_children", k.sym("init_pid_ns"))
    for t in idle_tasks:
        km.set(t, "task_struct", "nsproxy", nsp)
