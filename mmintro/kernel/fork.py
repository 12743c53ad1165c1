"""Creating user processes (kernel/fork.c, kernel/pid.c, arch/x86/mm/pgtable.c).

:func:`copy_process` makes what a fork + exec leaves behind, in simulated memory:

* a ``task_struct`` from the ``task_struct`` cache (``dup_task_struct``) with a vmapped kernel
  stack (``alloc_thread_stack_node``, the end magic, NR_KERNEL_STACK_KB), ``comm``, ``pid`` /
  ``tgid``, ``__state``, ``flags``, ``prio``, ``real_parent`` / ``parent`` / ``group_leader``,
  linked on the parent's ``children`` (``sibling``) and on ``init_task.tasks``
  (``list_add_tail_rcu``);
* a ``signal_struct`` from ``signal_cache`` whose ``thread_head`` holds the task's
  ``thread_node`` (what drgn's ``for_each_task_in_group`` walks);
* a ``struct pid`` from the ``pid`` cache (``alloc_pid``): ``numbers[0] = {nr, &init_pid_ns}``,
  stored in ``init_pid_ns.idr`` (an IDR: an XArray with ``IDR_RT_MARKER`` = XA_FLAGS_ALLOC,
  nodes from ``radix_tree_node``), and ``attach_pid`` for PIDTYPE_PID and PIDTYPE_TGID
  (``pid->tasks[type]`` hlist holding ``task->pid_links[type]``, ``task->thread_pid``) — what
  drgn's ``find_pid`` / ``find_task`` / ``for_each_task`` (idr_for_each + pid_task) read;
* an ``mm_struct`` from ``mm_struct`` (``mm_alloc`` -> ``mm_init``): ``mm_users`` = ``mm_count``
  = 1, ``mm_mt`` with MM_MT_FLAGS, ``mmlist`` empty, ``owner``, per-CPU ``rss_stat`` counters
  (one percpu block for the NR_MM_COUNTERS counters, all 0), and ``pgd`` from ``pgd_alloc``:
  a page-table page whose kernel half (entries 256-511, KERNEL_PGD_BOUNDARY on) is
  swapper_pg_dir's (``pgd_ctor`` -> ``clone_pgd_range``); then the exec'd layout of
  :func:`mmintro.kernel.mmap.setup_new_exec_layout`.

:func:`do_fork` is fork(2) of a live process: ``dup_task_struct`` copies the parent's task
(PF_FORKNOEXEC), a new pid and signal_struct, and ``copy_mm`` -> :func:`dup_mm` (memcpy of
the parent's mm_struct, :func:`mm_init`, :func:`dup_mmap`: ``__mt_dup`` of the VMA tree,
``vm_area_dup`` + ``anon_vma_fork`` + i_mmap ``insert_after`` + ``copy_page_range`` per VMA,
the commitment charged, hiwater marks set).  Every copy_process counts ``nr_threads`` and
``total_forks``; pid 1 becomes ``init_pid_ns.child_reaper``.  Exit is :mod:`mmintro.kernel.exit`.

Every task shares init_nsproxy (copy_namespaces: get_nsproxy; no CLONE_NEW* namespaces).
Credentials (:mod:`mmintro.kernel.cred`), sighand (copy_sighand), the rlimits and the pgid/sid pids
of copy_signal are modelled; not modelled: cgroups; the pgd is not on ``pgd_list``.  ``init_pid_ns.pid_allocated``
and ``idr_next`` are kept as alloc_pid and free_pid keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SIZE, PTRS_PER_TABLE
from mmintro.kernel import cred, mmap, slub
from mmintro.kernel import gfp as G
from mmintro.kernel import init_task as it
from mmintro.kernel.init_64 import GFP_PGTABLE_KERNEL, PGTY_TABLE
from mmintro.kernel.xarray import XA_FLAGS_ALLOC, XArray, radix_tree_node_xarray

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "PIDNS_ADDING",
    "Process",
    "alloc_pid",
    "copy_process",
    "do_clone_thread",
    "do_execve",
    "do_fork",
    "dup_mm",
    "dup_mmap",
    "mm_alloc",
    "mm_init",
    "pgd_alloc",
    "spawn_process",
]

# include/linux/pid_namespace.h (#define)
PIDNS_ADDING = 1 << 31
# arch/x86/include/asm/pgtable_64_types.h / pgtable.h: KERNEL_PGD_BOUNDARY = pgd_index(PAGE_OFFSET)
# for the 4-level map = 256 (the kernel half of the PGD).
KERNEL_PGD_BOUNDARY = PTRS_PER_TABLE // 2
# include/linux/sched.h (#define)
PF_IDLE = 0x00000002
PF_FORKNOEXEC = 0x00000040
PF_SUPERPRIV = 0x00000100
PF_WQ_WORKER = 0x00000020
PF_NO_SETAFFINITY = 0x04000000
PF_RANDOMIZE = 0x00400000
TASK_INTERRUPTIBLE = 0x00000001
SIGNAL_UNKILLABLE = 0x00000040  # include/linux/sched/signal.h
# include/linux/mm.h (#defines)
VM_DONTCOPY = 0x00020000
VM_WIPEONFORK = 0x02000000
VM_LOCKED_MASK = 0x00002000 | 0x00080000  # VM_LOCKED | VM_LOCKONFAULT
# include/asm-generic/pgalloc.h: GFP_PGTABLE_USER = GFP_PGTABLE_KERNEL | __GFP_ACCOUNT
GFP_PGTABLE_USER = GFP_PGTABLE_KERNEL | G.FLAGS["__GFP_ACCOUNT"]


@dataclass
class Process:
    """A process the simulator created (addresses in simulated memory)."""

    pid: int
    comm: str
    task: int
    mm: int
    pid_struct: int
    layout: mmap.ExecLayout


def _pid_idr(k: Kernel) -> XArray:
    """init_pid_ns.idr.idr_rt: IDR_INIT(init_pid_ns.idr), flags IDR_RT_MARKER (= XA_FLAGS_ALLOC)."""
    xa = k.__dict__.get("pid_idr")
    if xa is None:
        addr = k.kmem.addr(k.sym("init_pid_ns"), "pid_namespace", "idr.idr_rt")
        xa = radix_tree_node_xarray(k, addr, XA_FLAGS_ALLOC)
        k.kmem.set(addr, "xarray", "xa_flags", XA_FLAGS_ALLOC)
        k.pid_idr = xa
        ns = k.sym("init_pid_ns")
        if not k.kmem.get(ns, "pid_namespace", "pid_allocated"):
            k.kmem.set(ns, "pid_namespace", "pid_allocated", PIDNS_ADDING)  # pid_idr_init()
    return xa


def alloc_pid(k: Kernel, nr: int | None = None) -> tuple[int, int]:
    """kernel/pid.c alloc_pid() in init_pid_ns: the next free number from idr_next upwards
    (idr_alloc_cyclic, pids start at 1), a ``struct pid`` from ns->pid_cachep (the ``pid``
    cache), count 1, level 0, empty task lists; returns (struct pid *, nr)."""
    km = k.kmem
    ns = k.sym("init_pid_ns")
    xa = _pid_idr(k)
    if nr is None:
        nr = max(1, km.get(ns, "pid_namespace", "idr.idr_next"))
        while xa.xa_load(nr) is not None:
            nr += 1
    pid = slub.kmem_cache_alloc(k, slub.find_cache(k, "pid"), "GFP_KERNEL", caller="alloc_pid")
    km.write_bytes(pid, bytes(k.T.sizeof("struct pid") + k.T.sizeof("struct upid")))
    km.set(pid, "pid", "count.refs.counter", 1)
    km.set(pid, "pid", "level", 0)
    upid = pid + k.T.struct("pid").offsetof("numbers")
    km.set(upid, "upid", "nr", nr)
    km.set(upid, "upid", "ns", ns)
    km.init_list_head(km.addr(pid, "pid", "wait_pidfd.head"))
    xa.xa_store(nr, pid)  # idr_replace(&ns->idr, pid, nr)
    km.set(ns, "pid_namespace", "idr.idr_next", nr + 1)
    km.set(ns, "pid_namespace", "pid_allocated", km.get(ns, "pid_namespace", "pid_allocated") + 1)
    return pid, nr


def attach_pid(k: Kernel, task: int, pid: int, type_: str) -> None:
    """kernel/pid.c attach_pid(): hlist_add_head_rcu(&task->pid_links[type], &pid->tasks[type])."""
    km = k.kmem
    t = k.T.const(type_)
    head = km.addr(pid, "pid", f"tasks[{t}]")
    node = km.addr(task, "task_struct", f"pid_links[{t}]")
    first = km.get(head, "hlist_head", "first")
    km.set(node, "hlist_node", "next", first)
    if first:
        km.set(first, "hlist_node", "pprev", node)
    km.set(head, "hlist_head", "first", node)
    km.set(node, "hlist_node", "pprev", head)


def pgd_alloc(k: Kernel, mm: int) -> int:
    """arch/x86/mm/pgtable.c pgd_alloc(): _pgd_alloc() = pagetable_alloc(GFP_PGTABLE_USER, 0)
    (no PTI), the table ctor (PGTY_table, NR_PAGETABLE), then pgd_ctor(): clone_pgd_range() of
    swapper_pg_dir's kernel half.  Returns the pgd's kernel virtual address."""
    pfn = k.alloc_pages((GFP_PGTABLE_USER | G.FLAGS["__GFP_COMP"]) & ~G.FLAGS["__GFP_HIGHMEM"], 0)
    if pfn is None:
        raise MemoryError("pgd_alloc: out of memory")
    km = k.kmem
    page = k.pfn_to_page(pfn)
    km.set(page, "ptdesc", "__page_type", PGTY_TABLE)
    k.mod_node_page_state(km.get(page, "page", "flags") >> it.kc.NODES_PGOFF, "NR_PAGETABLE", 1)
    pgd = k.phys_to_virt(pfn << 12)
    km.write_bytes(pgd, bytes(PAGE_SIZE))
    swapper = k.pa(k.sym("swapper_pg_dir"))
    half = k.mem.read(swapper + KERNEL_PGD_BOUNDARY * 8, (PTRS_PER_TABLE - KERNEL_PGD_BOUNDARY) * 8)
    km.write_bytes(pgd + KERNEL_PGD_BOUNDARY * 8, half)
    return pgd


def mm_init(k: Kernel, mm: int, owner: int) -> int:
    """kernel/fork.c mm_init(): mt_init_flags(&mm->mm_mt, MM_MT_FLAGS), mm_users = mm_count = 1,
    mmap_init_lock, an empty mmlist, pgtables_bytes/map_count/locked_vm/pinned_vm 0, rss_stat
    cleared, the owner, exe_file NULL, mm_alloc_pgd (pgd_alloc), mm_alloc_id (CONFIG_MM_ID: MEM's
    rmap keeps the ids), and percpu_counter_init_many
    of rss_stat (one per-CPU block for the NR_MM_COUNTERS counters).  The fields dup_mm()'s
    memcpy brought from the parent and mm_init() does not reset stay (total_vm, mmap_base,
    start_code, ..., hiwater marks until dup_mm sets them)."""
    km = k.kmem
    # mm->flags: mmf_init_legacy_flags(current->mm's) when dup_mm copied them, else the
    # default_dump_filter (a fresh exec'd mm: begin_new_exec then sets SUID_DUMP_USER)
    f = km.get(mm, "mm_struct", "flags.__mm_flags[0]")
    km.set(
        mm,
        "mm_struct",
        "flags.__mm_flags[0]",
        f & mmap.MMF_INIT_LEGACY_MASK
        if f
        else mmap.MMF_DUMP_FILTER_DEFAULT << mmap.MMF_DUMP_FILTER_SHIFT | mmap.SUID_DUMP_USER,
    )
    km.set(mm, "mm_struct", "mm_mt.ma_root", 0)
    km.set(mm, "mm_struct", "mm_mt.ma_flags", it.MM_MT_FLAGS)  # mt_init_flags(&mm->mm_mt, MM_MT_FLAGS)
    km.set(mm, "mm_struct", "mm_users.counter", 1)
    km.set(mm, "mm_struct", "mm_count.counter", 1)
    km.write_bytes(km.addr(mm, "mm_struct", "mmap_lock"), bytes(k.T.sizeof("struct rw_semaphore")))
    km.init_list_head(km.addr(mm, "mm_struct", "mmlist"))
    km.init_list_head(km.addr(mm, "mm_struct", "mmap_lock.wait_list"))  # mmap_init_lock(): init_rwsem
    for f in ("pgtables_bytes.counter", "map_count", "locked_vm", "pinned_vm.counter", "exe_file"):
        km.set(mm, "mm_struct", f, 0)
    if k.T.struct("mm_struct").has_member("owner"):
        km.set(mm, "mm_struct", "owner", owner)  # mm_init_owner()
    n = k.T.const("NR_MM_COUNTERS")
    psz = k.T.sizeof("struct percpu_counter")
    km.write_bytes(km.addr(mm, "mm_struct", "rss_stat"), bytes(n * psz))  # memset(&mm->rss_stat, 0, ...)
    km.set(mm, "mm_struct", "pgd", pgd_alloc(k, mm))
    from mmintro.kernel.vma import _opt

    alloc_id = _opt("rmap", "mm_alloc_id")  # mm_alloc_id(): ida_alloc_range(&mm_ida, ...)
    if alloc_id is not None and k.T.struct("mm_struct").has_member("mm_id"):
        alloc_id(k, mm)
    # percpu_counter_init_many(mm->rss_stat, 0, GFP_KERNEL_ACCOUNT, NR_MM_COUNTERS): one block
    block = k.alloc_percpu(4 * n, 4)
    for i in range(n):
        c = km.addr(mm, "mm_struct", "rss_stat") + i * psz
        km.set(c, "percpu_counter", "counters", block + 4 * i)
        if k.T.struct("percpu_counter").has_member("list"):  # CONFIG_HOTPLUG_CPU: percpu_counters list
            km.init_list_head(km.addr(c, "percpu_counter", "list"))
    k.__dict__.setdefault("mm_trees", {}).pop(mm, None)
    return mm


def mm_alloc(k: Kernel, owner: int) -> int:
    """kernel/fork.c mm_alloc() -> mm_init(): an mm_struct from mm_cachep, zeroed."""
    km = k.kmem
    mm = slub.kmem_cache_alloc(k, slub.find_cache(k, "mm_struct"), "GFP_KERNEL", caller="mm_alloc")
    km.write_bytes(mm, bytes(k.T.sizeof("struct mm_struct")))
    mm_init(k, mm, owner)
    mmap.mm_tree(k, mm)
    return mm


def _dup_task_struct(
    k: Kernel, comm: str, parent: int, pid: int | None, cpu: int, state: int, src: int = 0, leader: int = 0
) -> tuple[int, int, int]:
    """The task half of copy_process(): dup_task_struct() (a task_struct from its cache, a copy
    of ``src`` when given — arch_dup_task_struct's memcpy — and a vmapped kernel stack on the
    CPU's node), comm, state, flags, prio, alloc_pid, parent links and copy_signal.  Returns
    (task, struct pid *, nr); the caller gives it an mm and links it."""
    km = k.kmem
    T = k.T
    tsk = slub.kmem_cache_alloc(k, slub.find_cache(k, "task_struct"), "GFP_KERNEL", caller="dup_task_struct")
    size = T.sizeof("struct task_struct")
    km.write_bytes(tsk, k.mem.read(k.pa(src), size) if src else bytes(size))
    if src:
        it.dup_task_cpus_ptr(k, tsk, src)  # cpus_ptr back to the copy's own cpus_mask
    else:  # a new program: the affinity and mems every user task inherits from init
        it.user_task_affinity(k, tsk)
    if it.alloc_thread_stack_node(k, tsk, k.cpu_to_node(cpu), "kernel_clone"):
        raise MemoryError("copy_process: no kernel stack")
    km.set(tsk, "task_struct", "stack_refcount.refs.counter", 1)
    it.account_kernel_stack(k, tsk, 1)
    it.set_task_stack_end_magic(k, tsk)
    km.set(tsk, "task_struct", "usage.refs.counter", 1)
    km.write_bytes(km.addr(tsk, "task_struct", "comm"), comm.encode()[:15].ljust(16, b"\0"))  # __set_task_comm
    km.set(tsk, "task_struct", "__state", state)
    if src:  # copy_process(): p->flags &= ~(PF_SUPERPRIV | PF_WQ_WORKER | PF_IDLE | PF_NO_SETAFFINITY)
        km.set(
            tsk,
            "task_struct",
            "flags",
            (km.get(src, "task_struct", "flags") & ~(PF_SUPERPRIV | PF_WQ_WORKER | PF_IDLE | PF_NO_SETAFFINITY))
            | PF_FORKNOEXEC,
        )
    else:
        km.set(tsk, "task_struct", "flags", PF_RANDOMIZE)  # exec cleared PF_FORKNOEXEC
    for f in ("prio", "static_prio", "normal_prio"):
        km.set(tsk, "task_struct", f, 120)
    km.set(tsk, "task_struct", "thread_info.cpu", cpu)  # task_cpu(): thread_info.cpu in 6.18
    copy_namespaces(k, tsk)
    km.set(tsk, "task_struct", "wake_cpu", cpu)
    for lst in ("children", "sibling", "thread_node", "ptraced", "ptrace_entry", "tasks"):
        if T.struct("task_struct").has_member(lst):
            km.init_list_head(km.addr(tsk, "task_struct", lst))
    for t in ("PIDTYPE_PID", "PIDTYPE_TGID", "PIDTYPE_PGID", "PIDTYPE_SID"):
        node = km.addr(tsk, "task_struct", f"pid_links[{T.const(t)}]")
        km.set(node, "hlist_node", "next", 0)
        km.set(node, "hlist_node", "pprev", 0)
    if src:  # copy_mm(): tsk->min_flt = tsk->maj_flt = 0, tsk->nvcsw = tsk->nivcsw = 0; utime/stime/gtime 0
        for f in (
            "min_flt",
            "maj_flt",
            "nvcsw",
            "nivcsw",
            "utime",
            "stime",
            "gtime",
            "nr_dirtied",
            "dirty_paused_when",
        ):
            km.set(tsk, "task_struct", f, 0)
    km.set(tsk, "task_struct", "nr_dirtied_pause", 128 >> (12 - 10))  # copy_process(): 128 KiB in pages
    if src and T.struct("task_struct").has_member("mempolicy") and km.get(tsk, "task_struct", "mempolicy"):
        from mmintro.kernel.vma import _opt

        dup = _opt("mempolicy", "mpol_dup")  # p->mempolicy = mpol_dup(p->mempolicy)
        if dup is not None:
            km.set(tsk, "task_struct", "mempolicy", dup(k, km.get(tsk, "task_struct", "mempolicy")) or 0)
    # alloc_pid + the task's numbers
    pid_struct, nr = alloc_pid(k, pid)
    km.set(tsk, "task_struct", "pid", nr)
    km.set(tsk, "task_struct", "exit_state", 0)
    if leader:  # CLONE_THREAD: the leader's tgid, parent and signal_struct (no copy_signal)
        km.set(tsk, "task_struct", "tgid", km.get(leader, "task_struct", "tgid"))
        for f in ("real_parent", "parent"):
            km.set(tsk, "task_struct", f, km.get(leader, "task_struct", f))
        km.set(tsk, "task_struct", "group_leader", leader)
        km.set(tsk, "task_struct", "exit_signal", -1 & 0xFFFFFFFF)
        sig = km.get(leader, "task_struct", "signal")
        km.set(sig, "signal_struct", "nr_threads", km.get(sig, "signal_struct", "nr_threads") + 1)
        km.set(sig, "signal_struct", "live.counter", km.get(sig, "signal_struct", "live.counter") + 1)
        km.set(sig, "signal_struct", "sigcnt.refs.counter", km.get(sig, "signal_struct", "sigcnt.refs.counter") + 1)
        k.kmem.list_add_tail(km.addr(tsk, "task_struct", "thread_node"), km.addr(sig, "signal_struct", "thread_head"))
        km.set(tsk, "task_struct", "signal", sig)
        copy_sighand(k, tsk, leader, share=True)
        cred.copy_creds(k, tsk, clone_thread=True)
        return tsk, pid_struct, nr
    km.set(tsk, "task_struct", "tgid", nr)
    km.set(tsk, "task_struct", "real_parent", parent)
    km.set(tsk, "task_struct", "parent", parent)
    km.set(tsk, "task_struct", "group_leader", tsk)
    km.set(tsk, "task_struct", "exit_signal", 17)  # SIGCHLD
    # copy_signal(): a signal_struct whose thread_head holds this thread
    sig = slub.kmem_cache_alloc(k, slub.find_cache(k, "signal_cache"), "GFP_KERNEL", caller="copy_process")
    km.write_bytes(sig, bytes(T.sizeof("struct signal_struct")))
    km.set(sig, "signal_struct", "nr_threads", 1)
    km.set(sig, "signal_struct", "sigcnt.refs.counter", 1)
    km.set(sig, "signal_struct", "live.counter", 1)
    km.write_list(km.addr(sig, "signal_struct", "thread_head"), [km.addr(tsk, "task_struct", "thread_node")])
    psig = km.get(parent, "task_struct", "signal") if parent else 0
    if psig:  # copy_signal(): oom_score_adj and oom_score_adj_min from the forking task
        for f in ("oom_score_adj", "oom_score_adj_min"):
            km.set(sig, "signal_struct", f, km.get(psig, "signal_struct", f))
    copy_signal_rlim_pids(k, sig, psig, pid_struct)
    km.set(tsk, "task_struct", "signal", sig)
    copy_sighand(k, tsk, parent if src else 0)
    cred.copy_creds(k, tsk)
    return tsk, pid_struct, nr


def copy_signal_rlim_pids(k: Kernel, sig: int, psig: int, pid_struct: int) -> None:
    """copy_signal(): ``memcpy(sig->rlim, current->signal->rlim)``; copy_process()'s
    init_task_pid() for a group leader: pids[PIDTYPE_TGID] = its pid, pids[PIDTYPE_PGID] /
    [PIDTYPE_SID] = the forking task's process group and session (task_pgrp / task_session:
    init_struct_pid for every descendant of init_task that never called setsid)."""
    km = k.kmem
    T = k.T
    src = psig or (k.sym("init_signals") if "init_signals" in k.image.symbols else 0)
    if src:
        off, size = T.struct("signal_struct").offsetof("rlim"), T.struct("signal_struct").walk("rlim")[2].size
        km.write_bytes(sig + off, k.mem.read(k.pa(src + off), size))
    km.set(sig, "signal_struct", f"pids[{T.const('PIDTYPE_TGID')}]", pid_struct)
    for t in ("PIDTYPE_PGID", "PIDTYPE_SID"):
        km.set(
            sig,
            "signal_struct",
            f"pids[{T.const(t)}]",
            km.get(src, "signal_struct", f"pids[{T.const(t)}]") if src else 0,
        )


def copy_sighand(k: Kernel, tsk: int, parent: int, share: bool = False) -> None:
    """kernel/fork.c copy_sighand(): with CLONE_SIGHAND (threads) the creator's sighand_struct
    with its count up; otherwise one from sighand_cache (constructed by sighand_ctor) with
    count 1 and the parent's actions copied (a new program: exec's flush_signal_handlers()
    leaves every handler SIG_DFL, as init_sighand has them)."""
    km = k.kmem
    if share:
        sh = km.get(parent, "task_struct", "sighand")
        if sh:
            km.set(sh, "sighand_struct", "count.refs.counter", km.get(sh, "sighand_struct", "count.refs.counter") + 1)
        return
    sh = slub.kmem_cache_alloc(k, slub.find_cache(k, "sighand_cache"), "GFP_KERNEL", caller="copy_process")
    km.set(sh, "sighand_struct", "count.refs.counter", 1)
    off = k.T.struct("sighand_struct").offsetof("action")
    size = k.T.struct("sighand_struct").walk("action")[2].size
    old = km.get(parent, "task_struct", "sighand") if parent else 0
    km.write_bytes(sh + off, k.mem.read(k.pa(old + off), size) if old else bytes(size))
    km.set(tsk, "task_struct", "sighand", sh)


def _link_task(k: Kernel, tsk: int, pid_struct: int, parent: int) -> None:
    """The links copy_process() makes under tasklist_lock (init_task_pid, attach_pid for
    PIDTYPE_PID/TGID, the parent's children, init_task.tasks), nr_threads++ and total_forks++;
    pid 1 becomes init_pid_ns.child_reaper (SIGNAL_UNKILLABLE)."""
    km = k.kmem
    km.set(tsk, "task_struct", "thread_pid", pid_struct)
    attach_pid(k, tsk, pid_struct, "PIDTYPE_PID")
    attach_pid(k, tsk, pid_struct, "PIDTYPE_TGID")
    sig = km.get(tsk, "task_struct", "signal")
    for t in ("PIDTYPE_PGID", "PIDTYPE_SID"):  # the process group and session it joined
        grp = km.get(sig, "signal_struct", f"pids[{k.T.const(t)}]")
        if grp:
            attach_pid(k, tsk, grp, t)
    k.kmem.list_add_tail(km.addr(tsk, "task_struct", "sibling"), km.addr(parent, "task_struct", "children"))
    k.kmem.list_add_tail(km.addr(tsk, "task_struct", "tasks"), km.addr(k.sym("init_task"), "task_struct", "tasks"))
    _add_global(k, "nr_threads", 1, 4)
    _add_global(k, "total_forks", 1, 8)
    upid = pid_struct + k.T.struct("pid").offsetof("numbers")
    if km.get(upid, "upid", "nr") == 1:  # is_child_reaper(pid): the namespace's init
        km.set(k.sym("init_pid_ns"), "pid_namespace", "child_reaper", tsk)
        sig = km.get(tsk, "task_struct", "signal")
        km.set(sig, "signal_struct", "flags", km.get(sig, "signal_struct", "flags") | SIGNAL_UNKILLABLE)


def _add_global(k: Kernel, name: str, delta: int, size: int) -> None:
    try:
        addr = k.sym(name)
    except KeyError:
        return  # the image does not place it
    v = int.from_bytes(k.mem.read(k.pa(addr), size), "little", signed=True) + delta
    k.kmem.write_bytes(addr, (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


def copy_process(
    k: Kernel,
    comm: str,
    parent: int | None = None,
    pid: int | None = None,
    cpu: int = 0,
    state: int = TASK_INTERRUPTIBLE,
    **layout: int,
) -> Process:
    """A new user process (fork + exec of a program called ``comm``), child of ``parent``
    (default init_task).  ``layout`` is passed to setup_new_exec_layout."""
    km = k.kmem
    parent = parent or k.sym("init_task")
    tsk, pid_struct, nr = _dup_task_struct(k, comm, parent, pid, cpu, state)
    # the mm (exec's mm_alloc + setup_new_exec)
    mm = mm_alloc(k, tsk)
    km.set(tsk, "task_struct", "mm", mm)
    km.set(tsk, "task_struct", "active_mm", mm)
    lay = mmap.setup_new_exec_layout(k, mm, comm=comm, **layout)
    if k.__dict__.get("vfs") is not None:  # copy_fs() / copy_files() from init's (the root mount exists)
        from mmintro.kernel import inode

        inode.task_fs(k, tsk)
        inode._files_struct(k, tsk)
    _link_task(k, tsk, pid_struct, parent)
    proc = Process(nr, comm[:15], tsk, mm, pid_struct, lay)
    k.__dict__.setdefault("processes", []).append(proc)
    return proc


NR_OPEN_DEFAULT = 64  # include/linux/fdtable.h: BITS_PER_LONG


def _dget(k: Kernel, dentry: int) -> None:
    if dentry:
        k.kmem.set(dentry, "dentry", "d_lockref.count", k.kmem.get(dentry, "dentry", "d_lockref.count") + 1)


def dup_fd(k: Kernel, oldf: int) -> int:
    """fs/file.c dup_fd() for the embedded table: a files_struct from files_cache (count 1,
    next_fd 0, fdtab over the embedded fd_array and *_init bitmaps), the open_fds /
    close_on_exec / full_fds_bits words copied, and each open file's reference taken
    (get_file).  Tables grown past NR_OPEN_DEFAULT are not modelled."""
    from mmintro.kernel import vma as V

    km = k.kmem
    newf = slub.kmem_cache_alloc(k, slub.find_cache(k, "files_cache"), "GFP_KERNEL", caller="dup_fd")
    km.write_bytes(newf, bytes(k.T.sizeof("struct files_struct")))
    km.set(newf, "files_struct", "count.counter", 1)
    km.init_list_head(km.addr(newf, "files_struct", "resize_wait.head"))
    fdt = km.addr(newf, "files_struct", "fdtab")
    km.set(newf, "files_struct", "fdt", fdt)
    km.set(fdt, "fdtable", "max_fds", NR_OPEN_DEFAULT)
    km.set(fdt, "fdtable", "fd", km.addr(newf, "files_struct", "fd_array"))
    old_fdt = km.get(oldf, "files_struct", "fdt")
    for field, init in (
        ("close_on_exec", "close_on_exec_init"),
        ("open_fds", "open_fds_init"),
        ("full_fds_bits", "full_fds_bits_init"),
    ):
        dst = km.addr(newf, "files_struct", init)
        km.set(fdt, "fdtable", field, dst)
        km.write_u64(dst, k.mem.read_u64(k.pa(km.get(old_fdt, "fdtable", field))))  # copy_fd_bitmaps
    old_fds, new_fds = km.get(old_fdt, "fdtable", "fd"), km.get(fdt, "fdtable", "fd")
    for i in range(NR_OPEN_DEFAULT):
        f = k.mem.read_u64(k.pa(old_fds + 8 * i))
        if f:
            V.get_file(k, f)
            km.write_u64(new_fds + 8 * i, f)
    return newf


def copy_fs_struct(k: Kernel, old: int) -> int:
    """fs/fs_struct.c copy_fs_struct(): users 1, the umask, root and pwd with path_get (the
    dentries' references; mount counts are not modelled)."""
    km = k.kmem
    fs = slub.kmem_cache_alloc(k, slub.find_cache(k, "fs_cache"), "GFP_KERNEL", caller="copy_fs_struct")
    km.write_bytes(fs, bytes(k.T.sizeof("struct fs_struct")))
    km.set(fs, "fs_struct", "users", 1)
    km.set(fs, "fs_struct", "umask", km.get(old, "fs_struct", "umask"))
    for p in ("root", "pwd"):
        km.set(fs, "fs_struct", f"{p}.mnt", km.get(old, "fs_struct", f"{p}.mnt"))
        d = km.get(old, "fs_struct", f"{p}.dentry")
        km.set(fs, "fs_struct", f"{p}.dentry", d)
        _dget(k, d)
    return fs


def copy_namespaces(k: Kernel, tsk: int) -> None:
    """kernel/nsproxy.c copy_namespaces() without CLONE_NEW*: get_nsproxy() of the parent's
    (a task made from nothing descends from init_task: init_nsproxy)."""
    km = k.kmem
    nsp = km.get(tsk, "task_struct", "nsproxy") or k.sym("init_nsproxy")
    km.set(tsk, "task_struct", "nsproxy", nsp)
    km.set(nsp, "nsproxy", "count.refs.counter", km.get(nsp, "nsproxy", "count.refs.counter") + 1)


def copy_files_and_fs(k: Kernel, tsk: int) -> None:
    """copy_process(): copy_files() (dup_fd of the parent's table, no CLONE_FILES) and
    copy_fs() (copy_fs_struct, no CLONE_FS) for the child whose task_struct was copied from
    its parent; a parent without them (FILE makes them on first use) leaves them NULL."""
    km = k.kmem
    for field, dup in (("files", dup_fd), ("fs", copy_fs_struct)):
        if k.T.struct("task_struct").has_member(field):
            old = km.get(tsk, "task_struct", field)
            km.set(tsk, "task_struct", field, dup(k, old) if old else 0)


def vma_needs_copy(k: Kernel, dst_vma: int, src_vma: int) -> bool:
    """mm/memory.c vma_needs_copy(): page tables are copied for VM_PFNMAP/VM_MIXEDMAP and for
    VMAs with an anon_vma (no uffd-wp modelled); the rest refill by faulting."""
    km = k.kmem
    if km.get(src_vma, "vm_area_struct", "vm_flags") & (mmap.VM_PFNMAP | mmap.VM_MIXEDMAP):
        return True
    return bool(km.get(src_vma, "vm_area_struct", "anon_vma"))


def dup_mmap(k: Kernel, mm: int, oldmm: int) -> int:
    """mm/mmap.c dup_mmap(): the counters total_vm/data_vm/exec_vm/stack_vm, the parent's tree
    copied node for node (__mt_dup), then, out of RCU mode, each VMA of the copy replaced by a
    vm_area_dup of the parent's (VM_DONTCOPY ones cleared out and unaccounted): its commitment
    charged (VM_ACCOUNT), vma_dup_policy, vm_mm, anon_vma_fork (none for VM_WIPEONFORK),
    VM_LOCKED_MASK cleared, vma_iter_bulk_store (an exact fit), map_count++, the file's
    reference and i_mmap link right after the parent's VMA, and copy_page_range when
    vma_needs_copy.  Returns 0."""
    from mmintro.kernel import maple_tree as MT
    from mmintro.kernel import vma as V

    km = k.kmem
    exe = km.get(oldmm, "mm_struct", "exe_file")  # dup_mm_exe_file(): get_mm_exe_file(oldmm)
    if exe:
        V.get_file(k, exe)
    km.set(mm, "mm_struct", "exe_file", exe)
    for f in ("total_vm", "data_vm", "exec_vm", "stack_vm"):
        km.set(mm, "mm_struct", f, km.get(oldmm, "mm_struct", f))
    src = mmap.mm_tree(k, oldmm)
    tree = MT.__mt_dup(
        src, km.addr(mm, "mm_struct", "mm_mt"), lambda: mmap._node_alloc(k), lambda a: mmap._node_free(k, a)
    )
    k.__dict__.setdefault("mm_trees", {})[mm] = tree
    anon_vma_fork = V._opt("rmap", "anon_vma_fork")
    insert_after = V._opt("rmap", "vma_interval_tree_insert_after")
    insert = V._opt("rmap", "vma_interval_tree_insert")
    copy_page_range = V._opt("memory", "copy_page_range")
    tree.mt_clear_in_rcu()
    with tree.batch():
        for start, last, mpnt in list(src.mt_for_each()):
            flags = km.get(mpnt, "vm_area_struct", "vm_flags")
            if flags & VM_DONTCOPY:
                tree.mtree_store_range(start, last, None)  # vma_iter_clear_gfp
                mmap.vm_stat_account(k, mm, flags, -((last + 1 - start) >> mmap.PAGE_SHIFT))
                continue
            if flags & mmap.VM_ACCOUNT:
                V.vm_acct_memory(k, (last + 1 - start) >> mmap.PAGE_SHIFT)  # security_vm_enough_memory_mm
            tmp = V.vm_area_dup(k, mpnt)
            V._vma_dup_policy(k, mpnt, tmp)
            km.set(tmp, "vm_area_struct", "vm_mm", mm)
            if flags & VM_WIPEONFORK:
                km.set(tmp, "vm_area_struct", "anon_vma", 0)
            elif anon_vma_fork is not None and anon_vma_fork(k, tmp, mpnt):
                raise MemoryError("dup_mmap: anon_vma_fork failed")
            km.set(tmp, "vm_area_struct", "vm_flags", flags & ~VM_LOCKED_MASK)
            if flags & V.VM_HUGETLB and not flags & mmap.VM_MAYSHARE:
                km.set(tmp, "vm_area_struct", "vm_private_data", 0)  # hugetlb_dup_vma_private
            tree.mtree_store_range(start, last, tmp)  # vma_iter_bulk_store
            V.vma_mark_attached(k, tmp)
            km.set(mm, "mm_struct", "map_count", km.get(mm, "mm_struct", "map_count") + 1)
            V.vma_open(k, tmp)  # tmp->vm_ops->open
            file = km.get(tmp, "vm_area_struct", "vm_file")
            if file:
                V.get_file(k, file)
                mapping = km.get(file, "file", "f_mapping")
                V._i_mmap_writable(k, tmp, 1)  # mapping_allow_writable for a shared writable VMA
                if insert_after is not None:
                    insert_after(k, tmp, mpnt, mapping)
                elif insert is not None:
                    insert(k, tmp, mapping)
            if not flags & VM_WIPEONFORK and copy_page_range is not None and vma_needs_copy(k, tmp, mpnt):
                copy_page_range(k, tmp, mpnt)
    tree.mt_set_in_rcu()
    return 0


def dup_mm(k: Kernel, tsk: int, oldmm: int) -> int:
    """kernel/fork.c dup_mm(): allocate_mm, memcpy(mm, oldmm, sizeof(*mm)), mm_init, dup_mmap,
    then hiwater_rss = get_mm_rss(mm) and hiwater_vm = total_vm."""
    from mmintro.kernel import vma as V

    km = k.kmem
    mm = slub.kmem_cache_alloc(k, slub.find_cache(k, "mm_struct"), "GFP_KERNEL", caller="dup_mm")
    km.write_bytes(mm, k.mem.read(k.pa(oldmm), k.T.sizeof("struct mm_struct")))
    mm_init(k, mm, tsk)
    dup_mmap(k, mm, oldmm)
    km.set(mm, "mm_struct", "hiwater_rss", V.get_mm_rss(k, mm))
    km.set(mm, "mm_struct", "hiwater_vm", km.get(mm, "mm_struct", "total_vm"))
    return mm


def do_fork(k: Kernel, parent: Process, cpu: int | None = None, state: int = TASK_INTERRUPTIBLE) -> Process:
    """kernel/fork.c kernel_clone() -> copy_process() for fork(2) by ``parent``: a task copied
    from the parent's (same comm, PF_FORKNOEXEC), a new pid, a child on the parent's children,
    its own signal_struct, and copy_mm -> dup_mm (the address space duplicated, private pages
    shared copy-on-write by MEM's copy_page_range).  Returns the child."""
    km = k.kmem
    if cpu is None:
        cpu = km.get(parent.task, "task_struct", "thread_info.cpu")
    tsk, pid_struct, nr = _dup_task_struct(k, parent.comm, parent.task, None, cpu, state, src=parent.task)
    copy_files_and_fs(k, tsk)
    mm = dup_mm(k, tsk, parent.mm)
    km.set(tsk, "task_struct", "mm", mm)
    km.set(tsk, "task_struct", "active_mm", mm)
    _link_task(k, tsk, pid_struct, parent.task)
    proc = Process(nr, parent.comm, tsk, mm, pid_struct, parent.layout)
    k.__dict__.setdefault("processes", []).append(proc)
    return proc


def do_clone_thread(k: Kernel, leader: Process, cpu: int | None = None, state: int = TASK_INTERRUPTIBLE) -> Process:
    """kernel/fork.c copy_process() for pthread_create's clone (CLONE_VM | CLONE_FS |
    CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM ...): a task copied from the
    leader with its own pid and kernel stack, the leader's tgid, parent, signal_struct
    (nr_threads, live, sigcnt up; on its thread_head) and mm (mmget: mm_users up), the files
    and fs shared (count / users up); attach_pid(PIDTYPE_PID) only -- threads are not on
    init_task.tasks nor on a children list.  Returns the thread (its ``pid`` is the tid)."""
    km = k.kmem
    lt = leader.task
    if cpu is None:
        cpu = km.get(lt, "task_struct", "thread_info.cpu")
    tsk, pid_struct, nr = _dup_task_struct(
        k, leader.comm, km.get(lt, "task_struct", "real_parent"), None, cpu, state, src=lt, leader=lt
    )
    for field, count in (("files", "files_struct.count.counter"), ("fs", "fs_struct.users")):
        obj = km.get(tsk, "task_struct", field) if k.T.struct("task_struct").has_member(field) else 0
        if obj:
            st, path = count.split(".", 1)
            km.set(obj, st, path, km.get(obj, st, path) + 1)
    mm = leader.mm
    km.set(mm, "mm_struct", "mm_users.counter", km.get(mm, "mm_struct", "mm_users.counter") + 1)  # mmget
    km.set(tsk, "task_struct", "mm", mm)
    km.set(tsk, "task_struct", "active_mm", mm)
    km.set(tsk, "task_struct", "thread_pid", pid_struct)
    attach_pid(k, tsk, pid_struct, "PIDTYPE_PID")
    _add_global(k, "nr_threads", 1, 4)
    _add_global(k, "total_forks", 1, 8)
    proc = Process(nr, leader.comm, tsk, mm, pid_struct, leader.layout)
    k.__dict__.setdefault("processes", []).append(proc)
    return proc


def do_execve(k: Kernel, proc: Process, comm: str, **layout: int) -> Process:
    """fs/exec.c execve(2) of program ``comm`` by ``proc`` (a group leader: de_thread reaps
    its other threads first): bprm_mm_init's mm_alloc, the new
    layout (setup_new_exec_layout: segments from /usr/bin/<comm>, interpreter, libc, stack,
    vDSO), begin_new_exec -> exec_mmap (tsk->mm = tsk->active_mm = the new mm, then mmput of
    the old one: exit_mmap and __mmdrop, as at exit), __set_task_comm, PF_FORKNOEXEC cleared.
    The pid, task and parent stay.  Returns ``proc`` updated."""
    from mmintro.kernel import exit as E

    km = k.kmem
    tsk = proc.task
    if km.get(tsk, "task_struct", "group_leader") != tsk:
        raise NotImplementedError("execve by a non-leader thread (de_thread taking over the leader's pid)")
    for t in E._thread_group(k, tsk):  # de_thread(): the other threads are killed and reaped first
        if t != tsk:
            other = next((p for p in k.__dict__.get("processes", []) if p.task == t), None) or Process(
                km.get(t, "task_struct", "pid"), proc.comm, t, proc.mm, 0, proc.layout
            )
            E.do_exit(k, other)
    old = km.get(tsk, "task_struct", "mm")
    mm = mm_alloc(k, tsk)
    lay = mmap.setup_new_exec_layout(k, mm, comm=comm, **layout)
    km.set(tsk, "task_struct", "mm", mm)
    km.set(tsk, "task_struct", "active_mm", mm)
    if old:
        E.mmput(k, old)  # exec_mmap(): mmput(old_mm) (the lazy active_mm reference is the same mm)
    km.write_bytes(km.addr(tsk, "task_struct", "comm"), comm.encode()[:15].ljust(16, b"\0"))
    km.set(tsk, "task_struct", "flags", (km.get(tsk, "task_struct", "flags") & ~PF_FORKNOEXEC) | PF_RANDOMIZE)
    proc.mm, proc.comm, proc.layout = mm, comm[:15], lay
    return proc


def spawn_process(
    k: Kernel,
    comm: str,
    mmaps: list[tuple[int, int]] | None = None,
    brk_grow: int = 0,
    parent: int | None = None,
    **kw: int,
) -> Process:
    """The workload hook: fork+exec ``comm``, then its anonymous mmaps ``(length, VM_READ|...)``
    top-down and a heap grown by ``brk_grow`` bytes.  No pages are touched (RSS stays 0)."""
    p = copy_process(k, comm, parent=parent, **kw)
    for length, prot in mmaps or ():
        if not mmap.do_mmap(k, p.mm, length, prot):
            raise MemoryError(f"{comm}: mmap of {length:#x} failed")
    if brk_grow:
        mmap.do_brk_flags(k, p.mm, k.kmem.get(p.mm, "mm_struct", "brk") + brk_grow)
    return p
