"""The boot task and the per-CPU idle tasks (init/init_task.c, kernel/sched/core.c).

Until the process model exists (fork/exec/exit come with the process issue), the machine
has the tasks every booted kernel has at minimum: ``init_task`` ("swapper/0", pid 0, the
idle task of CPU 0, running on ``init_thread_union``'s stack with ``active_mm =
&init_mm``) and one idle task per other CPU.  Each CPU's runqueue has ``curr`` and
``idle`` pointing at its idle task, and ``current_task`` says the same; the snapshot is
taken as CPU 0 panics, so crash's and drgn's panic context is swapper/0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

# include/linux/sched.h (#defines)
PF_IDLE = 0x00000002
PF_KTHREAD = 0x00200000
TASK_RUNNING = 0
# include/linux/maple_tree.h: MM_MT_FLAGS = ALLOC_RANGE | USE_RCU | LOCK_EXTERN
MM_MT_FLAGS = 0x01 | 0x02 | 0x300


def init_tasks(k: "Kernel") -> None:
    T = k.T
    km = k.kmem
    init_task = k.sym("init_task")
    init_mm = k.sym("init_mm")
    tsize = T.sizeof("struct task_struct")
    tasks = [init_task]
    for cpu in range(1, k.config.cpus):
        # fork_idle(): a task_struct per secondary CPU (from memblock here: no slab yet).
        tasks.append(k.phys_to_virt(k.memblock.alloc(-(-tsize // 64) * 64, 64)))
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
        if T.struct("task_struct").has_member("cpu"):
            km.set(t, "task_struct", "cpu", cpu)
        km.set(t, "task_struct", "real_parent", init_task)
        km.set(t, "task_struct", "parent", init_task)
        km.set(t, "task_struct", "group_leader", t)
        for lst in ("children", "sibling", "thread_node", "ptraced", "ptrace_entry"):
            if T.struct("task_struct").has_member(lst):
                km.init_list_head(km.addr(t, "task_struct", lst))
        rq = k.per_cpu_ptr(k.sym("runqueues"), cpu)
        km.set(rq, "rq", "curr", t)
        km.set(rq, "rq", "idle", t)
        km.set(rq, "rq", "cpu", cpu)
        km.write_u64(k.per_cpu_ptr(k.sym("current_task"), cpu), t)
        k.mem.write(k.pa(k.per_cpu_ptr(k.sym("cpu_number"), cpu)), cpu.to_bytes(4, "little"))
        km.write_u64(k.per_cpu_ptr(k.sym("this_cpu_off"), cpu), k.per_cpu_offset[cpu])
    # init_task.stack is init_thread_union; the tasks list holds only init_task (idle
    # tasks of other CPUs are not on it, as in the kernel).
    km.set(init_task, "task_struct", "stack", k.sym("init_thread_union"))
    km.write_list(init_task + tasks_off, [])
    for t in tasks[1:]:
        km.set(t, "task_struct", "stack", 0)
        km.init_list_head(t + tasks_off)
    # init_mm: the kernel's own mm.
    km.set(init_mm, "mm_struct", "pgd", k.sym("swapper_pg_dir"))
    km.set(init_mm, "mm_struct", "mm_users.counter", 2)
    km.set(init_mm, "mm_struct", "mm_count.counter", 1)
    km.set(init_mm, "mm_struct", "mm_mt.ma_flags", MM_MT_FLAGS)
    k.idle_tasks = tasks


def prstatus_notes(k: "Kernel") -> list[bytes]:
    """One NT_PRSTATUS descriptor per CPU (what kdump's crash_save_cpu() records): the pid of
    the task that was running, which here is each CPU's idle task (pid 0)."""
    size = k.T.sizeof("struct elf_prstatus")
    off_pid = k.T.struct("elf_prstatus").offsetof("common.pr_pid")
    out = []
    for _cpu in range(k.config.cpus):
        b = bytearray(size)
        b[off_pid:off_pid + 4] = (0).to_bytes(4, "little")
        out.append(bytes(b))
    return out
