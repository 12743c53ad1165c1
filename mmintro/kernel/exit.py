"""Process exit (kernel/exit.c, kernel/fork.c, mm/mmap.c, kernel/pid.c; 6.18).

:func:`do_exit` runs what ``exit(2)`` and the parent's ``wait`` leave behind, in order:

* ``exit_mm``: ``mmgrab_lazy_tlb`` (mm_count + 1), ``tsk->mm = NULL``, :func:`mmput`: the last
  user runs ``__mmput`` -> :func:`exit_mmap` (``unmap_vmas`` over everything through MEM's
  ``zap_page_range``, ``free_pgtables(FIRST_USER_ADDRESS, USER_PGTABLES_CEILING)`` with its
  ``unlink_anon_vmas``/``unlink_file_vma``, each VMA detached and ``remove_vma``'d,
  ``__mt_destroy`` of ``mm_mt`` (its nodes back to ``maple_node``), ``vm_unacct_memory``),
  ``mm_put_huge_zero_folio`` (HUGE's, when it has it), ``set_mm_exe_file(NULL)``, then
  ``mmdrop``; the lazy-TLB reference goes at the final context switch
  (``mmdrop_lazy_tlb_sched``), so the mm is freed here too: ``__mmdrop`` -> ``pgd_free``
  (the pgd page back to the buddy allocator, NR_PAGETABLE - 1), ``percpu_counter_destroy_many``
  of rss_stat (the per-CPU block freed), ``free_mm``;
* ``exit_notify`` -> ``forget_original_parent``: children move to the child reaper
  (``init_pid_ns.child_reaper``, else pid 1's task); the task becomes EXIT_ZOMBIE, EXIT_DEAD
  when reaped;
* ``release_task`` -> ``__exit_signal`` -> ``__unhash_process``: ``nr_threads--``,
  ``detach_pid`` for PIDTYPE_PID and (group leader) PIDTYPE_TGID, off ``init_task.tasks``
  and the parent's ``children``, off the signal's ``thread_head``; ``free_pid`` (``idr_remove``,
  ``pid_allocated--``) and the last ``put_pid`` (the ``pid`` cache); then
  ``put_task_struct`` -> ``__put_task_struct``: ``put_signal_struct`` (``signal_cache``),
  ``put_task_stack`` -> ``release_task_stack`` (``account_kernel_stack(tsk, -1)``: NR_KERNEL_STACK_KB
  down, ``free_thread_stack``: a per-CPU cached stack slot or ``vfree``), ``free_task_struct``.

``exit_files`` (the fd table's last reference: every open file fput, the files_struct freed)
and ``exit_fs`` (the fs_struct's last user: root/pwd dentries put, freed) run after exit_mm.

Not modelled: zombies left unreaped (a leader waits for nobody: its threads go first), exit codes and
SIGCHLD, ptrace, credentials, sighand; the task's ``mempolicy`` goes through MEM's
``mpol_put``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import fork, slub
from mmintro.kernel import init_task as it
from mmintro.kernel import mmap as M
from mmintro.kernel import vma as V

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "do_exit",
    "exit_files",
    "exit_fs",
    "exit_task_namespaces",
    "exit_mm",
    "exit_mmap",
    "mmdrop",
    "mmput",
    "release_task",
]

ULONG_MAX = (1 << 64) - 1
# include/linux/sched.h
EXIT_DEAD = 0x0010
EXIT_ZOMBIE = 0x0020
TASK_DEAD = 0x0080
MMF_OOM_SKIP = 21  # include/linux/mm_types.h


def exit_mmap(k: Kernel, mm: int) -> None:
    """mm/mmap.c exit_mmap()."""
    km = k.kmem
    tree = M.mm_tree(k, mm)
    vmas = [e for _f, _l, e in tree.mt_for_each()]
    nr_accounted = 0
    if vmas:
        V.unmap_vmas(k, vmas, 0, ULONG_MAX)
        # Set MMF_OOM_SKIP to hide this task from the oom killer/reaper: the memory is freed
        km.set(
            mm, "mm_struct", "flags.__mm_flags[0]", km.get(mm, "mm_struct", "flags.__mm_flags[0]") | 1 << MMF_OOM_SKIP
        )
        tree.mt_clear_in_rcu()
        V.free_pgtables(k, mm, vmas, V.FIRST_USER_ADDRESS, V.USER_PGTABLES_CEILING)
        for vma in vmas:
            if km.get(vma, "vm_area_struct", "vm_flags") & M.VM_ACCOUNT:
                nr_accounted += V.vma_pages(k, vma)
            V.vma_mark_detached(k, vma)
            V.remove_vma(k, vma)
        if len(vmas) != km.get(mm, "mm_struct", "map_count"):
            raise AssertionError(f"exit_mmap: {len(vmas)} VMAs but map_count {km.get(mm, 'mm_struct', 'map_count')}")
    tree.mtree_destroy()  # __mt_destroy(&mm->mm_mt)
    V.vm_unacct_memory(k, nr_accounted)


def pgd_free(k: Kernel, mm: int) -> None:
    """arch/x86/mm/pgtable.c pgd_free() -> _pgd_free(): pagetable_dtor_free of the pgd page
    (__ClearPageTable, NR_PAGETABLE - 1, back to the buddy allocator)."""
    km = k.kmem
    pgd = km.get(mm, "mm_struct", "pgd")
    pfn = k.pa(pgd) >> 12
    page = k.pfn_to_page(pfn)
    km.set(page, "ptdesc", "__page_type", 0xFFFFFFFF)
    k.mod_node_page_state(km.get(page, "page", "flags") >> it.kc.NODES_PGOFF, "NR_PAGETABLE", -1)
    k.free_pages(pfn, 0)
    km.set(mm, "mm_struct", "pgd", 0)


def __mmdrop(k: Kernel, mm: int) -> None:
    """kernel/fork.c __mmdrop(): mm_free_pgd, destroy_context, check_mm, the rss_stat per-CPU
    block freed (percpu_counter_destroy_many), free_mm."""
    km = k.kmem
    pgd_free(k, mm)
    free_id = V._opt("rmap", "mm_free_id")
    if free_id is not None:
        free_id(k, mm)
    block = km.get(km.addr(mm, "mm_struct", "rss_stat"), "percpu_counter", "counters")
    free_percpu = getattr(k, "free_percpu", None)
    if block and free_percpu is not None:
        free_percpu(block)
    k.__dict__.get("mm_trees", {}).pop(mm, None)
    slub.kmem_cache_free(k, slub.find_cache(k, "mm_struct"), mm)


def mmdrop(k: Kernel, mm: int) -> None:
    """include/linux/sched/mm.h mmdrop(): the last mm_count reference frees the mm_struct."""
    km = k.kmem
    c = km.get(mm, "mm_struct", "mm_count.counter") - 1
    km.set(mm, "mm_struct", "mm_count.counter", c)
    if c == 0:
        __mmdrop(k, mm)


def mmput(k: Kernel, mm: int) -> None:
    """kernel/fork.c mmput() -> __mmput() for the last user: exit_mmap, the huge zero folio's
    mm reference, exe_file dropped, off mmlist, mmdrop."""
    km = k.kmem
    u = km.get(mm, "mm_struct", "mm_users.counter") - 1
    km.set(mm, "mm_struct", "mm_users.counter", u)
    if u:
        return
    exit_mmap(k, mm)
    put_hzf = V._opt("huge_memory", "mm_put_huge_zero_folio")
    if put_hzf is not None:
        put_hzf(k, mm)
    exe = km.get(mm, "mm_struct", "exe_file")
    if exe:
        V.fput(k, exe)
        km.set(mm, "mm_struct", "exe_file", 0)
    mmdrop(k, mm)


def exit_mm(k: Kernel, tsk: int) -> None:
    """kernel/exit.c exit_mm(): mmgrab_lazy_tlb, current->mm = NULL, mmput; the lazy
    reference is dropped when the dead task is switched away (finish_task_switch)."""
    km = k.kmem
    mm = km.get(tsk, "task_struct", "mm")
    if not mm:
        return
    km.set(mm, "mm_struct", "mm_count.counter", km.get(mm, "mm_struct", "mm_count.counter") + 1)
    km.set(tsk, "task_struct", "mm", 0)
    mmput(k, mm)
    km.set(tsk, "task_struct", "active_mm", 0)
    mmdrop(k, mm)  # mmdrop_lazy_tlb_sched() at the switch away from the dead task


def exit_files(k: Kernel, tsk: int) -> None:
    """kernel/exit.c exit_files() -> put_files_struct(): the last reference closes every open
    file (close_files: fput) and frees the files_struct to files_cache."""
    km = k.kmem
    if not k.T.struct("task_struct").has_member("files"):
        return
    files = km.get(tsk, "task_struct", "files")
    if not files:
        return
    km.set(tsk, "task_struct", "files", 0)
    c = km.get(files, "files_struct", "count.counter") - 1
    km.set(files, "files_struct", "count.counter", c)
    if c:
        return
    fdt = km.get(files, "files_struct", "fdt")
    fds = km.get(fdt, "fdtable", "fd")
    for i in range(km.get(fdt, "fdtable", "max_fds")):
        f = k.mem.read_u64(k.pa(fds + 8 * i))
        if f:
            km.write_u64(fds + 8 * i, 0)
            V.fput(k, f)
    slub.kmem_cache_free(k, slub.find_cache(k, "files_cache"), files)


def exit_task_namespaces(k: Kernel, tsk: int) -> None:
    """kernel/nsproxy.c exit_task_namespaces() -> switch_task_namespaces(p, NULL): put_nsproxy
    (init_nsproxy is static: its count never reaches 0)."""
    km = k.kmem
    nsp = km.get(tsk, "task_struct", "nsproxy")
    if nsp:
        km.set(tsk, "task_struct", "nsproxy", 0)
        km.set(nsp, "nsproxy", "count.refs.counter", km.get(nsp, "nsproxy", "count.refs.counter") - 1)


def exit_fs(k: Kernel, tsk: int) -> None:
    """fs/fs_struct.c exit_fs(): the last user frees the fs_struct (free_fs_struct: path_put
    of root and pwd, back to fs_cache)."""
    km = k.kmem
    if not k.T.struct("task_struct").has_member("fs"):
        return
    fs = km.get(tsk, "task_struct", "fs")
    if not fs:
        return
    km.set(tsk, "task_struct", "fs", 0)
    users = km.get(fs, "fs_struct", "users") - 1
    km.set(fs, "fs_struct", "users", users)
    if users:
        return
    for p in ("root", "pwd"):
        d = km.get(fs, "fs_struct", f"{p}.dentry")
        if d:
            km.set(d, "dentry", "d_lockref.count", km.get(d, "dentry", "d_lockref.count") - 1)
    slub.kmem_cache_free(k, slub.find_cache(k, "fs_cache"), fs)


def _child_reaper(k: Kernel, exiting: int) -> int:
    km = k.kmem
    ns = k.sym("init_pid_ns")
    r = km.get(ns, "pid_namespace", "child_reaper")
    if r and r != exiting:
        return r
    for p in k.__dict__.get("processes", []):
        if p.pid == 1 and p.task != exiting:
            return p.task
    return k.sym("init_task")


def forget_original_parent(k: Kernel, tsk: int) -> None:
    """kernel/exit.c forget_original_parent() -> find_new_reaper + reparent: every child
    moves to the reaper's children list (another live thread of the group, else the child
    reaper) with real_parent = parent = the reaper."""
    km = k.kmem
    head = km.addr(tsk, "task_struct", "children")
    off = k.T.struct("task_struct").offsetof("sibling")
    # find_new_reaper(): a live thread of the same group first (find_alive_thread), else the
    # namespace's child reaper
    alive = [t for t in _thread_group(k, tsk) if t != tsk and not km.get(t, "task_struct", "exit_state")]
    reaper = alive[0] if alive else _child_reaper(k, tsk)
    rhead = km.addr(reaper, "task_struct", "children")
    p = km.get(head, "list_head", "next")
    n = 0
    while p != head:
        nxt = km.get(p, "list_head", "next")
        child = p - off
        km.set(child, "task_struct", "real_parent", reaper)
        km.set(child, "task_struct", "parent", reaper)
        k.kmem.list_del_init(p)
        k.kmem.list_add_tail(p, rhead)  # list_splice_tail_init(&father->children, &reaper->children)
        p = nxt
        n += 1
        if n > 1 << 22:
            raise RuntimeError("children list does not end")


def detach_pid(k: Kernel, tsk: int, pid: int, type_: str) -> int:
    """kernel/pid.c __change_pid(task, type, NULL): hlist_del_rcu of task->pid_links[type];
    returns the pid when no task uses it any more (for free_pid)."""
    km = k.kmem
    T = k.T
    t = T.const(type_)
    node = km.addr(tsk, "task_struct", f"pid_links[{t}]")
    nxt, pprev = km.get(node, "hlist_node", "next"), km.get(node, "hlist_node", "pprev")
    if not pprev:
        return 0
    km.write_u64(pprev, nxt)
    if nxt:
        km.set(nxt, "hlist_node", "pprev", pprev)
    km.set(node, "hlist_node", "pprev", 0xDEAD000000000122)  # LIST_POISON2
    if type_ == "PIDTYPE_PID":
        km.set(tsk, "task_struct", "thread_pid", 0)
    for other in ("PIDTYPE_PID", "PIDTYPE_TGID", "PIDTYPE_PGID", "PIDTYPE_SID"):
        if km.get(km.addr(pid, "pid", f"tasks[{T.const(other)}]"), "hlist_head", "first"):
            return 0
    return pid


def free_pid(k: Kernel, pid: int) -> None:
    """kernel/pid.c free_pid(): idr_remove of its number, --pid_allocated, then (after the RCU
    grace period) put_pid: the last reference frees it to the pid cache."""
    km = k.kmem
    ns = k.sym("init_pid_ns")
    upid = pid + k.T.struct("pid").offsetof("numbers")
    nr = km.get(upid, "upid", "nr")
    fork._pid_idr(k).xa_erase(nr)
    km.set(ns, "pid_namespace", "pid_allocated", km.get(ns, "pid_namespace", "pid_allocated") - 1)
    c = km.get(pid, "pid", "count.refs.counter") - 1
    km.set(pid, "pid", "count.refs.counter", c)
    if c <= 0:
        slub.kmem_cache_free(k, slub.find_cache(k, "pid"), pid)


def release_task(k: Kernel, tsk: int) -> None:
    """kernel/exit.c release_task(): __exit_signal -> __unhash_process, free_pids, then
    put_task_struct (signal, stack, task)."""
    km = k.kmem
    sig = km.get(tsk, "task_struct", "signal")
    km.set(sig, "signal_struct", "nr_threads", km.get(sig, "signal_struct", "nr_threads") - 1)
    # __unhash_process()
    fork._add_global(k, "nr_threads", -1, 4)
    pid = km.get(tsk, "task_struct", "thread_pid")
    pids = [detach_pid(k, tsk, pid, "PIDTYPE_PID"), detach_pid(k, tsk, pid, "PIDTYPE_TGID")]
    if km.get(tsk, "task_struct", "group_leader") == tsk:  # its process group and session (not freed here)
        for t in ("PIDTYPE_PGID", "PIDTYPE_SID"):
            grp = km.get(sig, "signal_struct", f"pids[{k.T.const(t)}]")
            if grp:
                detach_pid(k, tsk, grp, t)
    sh = km.get(tsk, "task_struct", "sighand")  # __exit_signal() -> __cleanup_sighand()
    if sh:
        km.set(tsk, "task_struct", "sighand", 0)
        c = km.get(sh, "sighand_struct", "count.refs.counter") - 1
        km.set(sh, "sighand_struct", "count.refs.counter", c)
        if c <= 0 and sh != k.sym("init_sighand"):
            slub.kmem_cache_free(k, slub.find_cache(k, "sighand_cache"), sh)
    k.kmem.list_del_rcu(km.addr(tsk, "task_struct", "tasks"))
    k.kmem.list_del_init(km.addr(tsk, "task_struct", "sibling"))
    k.kmem.list_del_rcu(km.addr(tsk, "task_struct", "thread_node"))
    for pid in dict.fromkeys(p for p in pids if p):
        free_pid(k, pid)
    km.set(tsk, "task_struct", "exit_state", EXIT_DEAD)
    # put_task_struct -> __put_task_struct
    pol = km.get(tsk, "task_struct", "mempolicy") if k.T.struct("task_struct").has_member("mempolicy") else 0
    if pol:
        V._mpol_put(k, pol)
    c = km.get(sig, "signal_struct", "sigcnt.refs.counter") - 1
    km.set(sig, "signal_struct", "sigcnt.refs.counter", c)
    if c <= 0:
        oom_mm = km.get(sig, "signal_struct", "oom_mm")
        if oom_mm:  # free_signal_struct(): an OOM victim's mm reference (mark_oom_victim's mmgrab)
            km.set(sig, "signal_struct", "oom_mm", 0)
            mmdrop(k, oom_mm)
        slub.kmem_cache_free(k, slub.find_cache(k, "signal_cache"), sig)  # free_signal_struct
    # put_task_stack -> release_task_stack
    if km.get(tsk, "task_struct", "stack"):
        it.account_kernel_stack(k, tsk, -1)
        it.free_thread_stack(k, tsk)
        km.set(tsk, "task_struct", "stack_refcount.refs.counter", 0)
    from mmintro.kernel import cred

    cred.exit_creds(k, tsk)
    slub.kmem_cache_free(k, slub.find_cache(k, "task_struct"), tsk)  # free_task_struct


def _thread_group(k: Kernel, tsk: int) -> list[int]:
    """The tasks on tsk->signal->thread_head (for_each_thread), in order."""
    km = k.kmem
    head = km.addr(km.get(tsk, "task_struct", "signal"), "signal_struct", "thread_head")
    off = k.T.struct("task_struct").offsetof("thread_node")
    out, p = [], km.get(head, "list_head", "next")
    while p != head and len(out) < 1 << 16:
        out.append(p - off)
        p = km.get(p, "list_head", "next")
    return out


def do_exit(k: Kernel, proc: fork.Process) -> None:
    """kernel/exit.c do_exit() and the reaping of the task: exit_mm, exit_files, exit_fs,
    exit_notify (children to the reaper, EXIT_ZOMBIE), TASK_DEAD, release_task; all on the
    task's CPU (thread_info.cpu).  A thread group leader with other threads exits as
    exit_group(2) does: the other threads first (zap_other_threads), then the leader; a
    thread (CLONE_THREAD) leaves the mm, files and fs to the group and only its own pid,
    stack and task_struct go."""
    km = k.kmem
    tsk = proc.task
    procs = k.__dict__.get("processes", [])
    tgid = km.get(tsk, "task_struct", "tgid")
    if (
        tgid == 1
        and km.get(tsk, "task_struct", "group_leader") == tsk
        and any(km.get(p.task, "task_struct", "tgid") != 1 for p in procs)
    ):
        raise ValueError("do_exit: init (pid 1) exiting with other processes alive would panic")
    if km.get(tsk, "task_struct", "group_leader") == tsk:
        for t in _thread_group(k, tsk):
            if t != tsk:
                other = next((p for p in procs if p.task == t), None) or fork.Process(
                    km.get(t, "task_struct", "pid"), proc.comm, t, proc.mm, 0, proc.layout
                )
                do_exit(k, other)
    cpu = km.get(tsk, "task_struct", "thread_info.cpu")
    old_cpu = k.current_cpu
    k.on_cpu(cpu)  # the task exits on its own CPU (its pagesets, slab CPU caches, cached stacks)
    try:
        sig = km.get(tsk, "task_struct", "signal")
        km.set(sig, "signal_struct", "live.counter", km.get(sig, "signal_struct", "live.counter") - 1)
        exit_mm(k, tsk)
        exit_files(k, tsk)
        exit_fs(k, tsk)
        exit_task_namespaces(k, tsk)
        forget_original_parent(k, tsk)
        km.set(tsk, "task_struct", "exit_state", EXIT_ZOMBIE)
        km.set(tsk, "task_struct", "__state", TASK_DEAD)
        from mmintro.kernel import psi

        psi.psi_task_exit(k, tsk)  # do_task_dead() -> __schedule(): psi_sched_switch(sleep)
        release_task(k, tsk)
    finally:
        k.on_cpu(old_cpu)
    if proc in procs:
        procs.remove(proc)
