"""Task credentials (kernel/cred.c, kernel/ucount.c): ``init_cred`` and what fork does with it.

The boot task runs with ``init_cred`` (kernel/cred.c): usage 4, every id 0 (GLOBAL_ROOT_UID /
GLOBAL_ROOT_GID), no securebits, the capability sets of a fully privileged root
(``cap_permitted = cap_effective = cap_bset = CAP_FULL_SET``, ``cap_inheritable`` and
``cap_ambient`` empty), ``group_info = &init_groups`` (no supplementary groups, usage 2) and
``ucounts = &init_ucounts`` (uid 0's counters, count 1).  ``cred_init()`` makes the ``cred``
cache (KMEM_CACHE(cred, SLAB_HWCACHE_ALIGN | SLAB_PANIC | SLAB_ACCOUNT), ``cred_jar``).

:func:`copy_creds` is copy_process()'s: a thread (CLONE_THREAD) shares its creator's
credentials (``get_cred_many(p->cred, 2)``: real_cred and cred are the same object); anything
else gets ``prepare_creds()``'s copy from cred_jar (usage 1, the group_info and ucounts
references taken) installed as both ``cred`` and ``real_cred`` (``get_cred``: usage 2).
Either way ``inc_rlimit_ucounts(UCOUNT_RLIMIT_NPROC)``.  :func:`exit_creds` is
__put_task_struct()'s: two ``put_cred`` and the free to cred_jar at zero; release_task()'s
``dec_rlimit_ucounts(UCOUNT_RLIMIT_NPROC)``.

Simplified: ``user`` (root_user), ``user_ns`` (init_user_ns), keyrings and the LSM blob are
left NULL (the simulated kernel has no user namespaces, keys or LSMs); an exec keeps the
credentials (no set-id programs, so commit_creds would install an equal copy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.kernel import slub

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = ["CAP_FULL_SET", "copy_creds", "exit_creds", "init_cred"]

# include/uapi/linux/capability.h (#define): CAP_LAST_CAP = CAP_CHECKPOINT_RESTORE (40);
# include/linux/capability.h: CAP_FULL_SET = BIT_ULL(CAP_LAST_CAP + 1) - 1
CAP_LAST_CAP = 40
CAP_FULL_SET = (1 << (CAP_LAST_CAP + 1)) - 1
_IDS = ("uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid")


def init_cred(k: Kernel) -> int:
    """kernel/cred.c ``init_cred``, ``init_groups`` and kernel/ucount.c ``init_ucounts`` in
    .data; init_task's ``real_cred`` and ``cred`` point at init_cred (INIT_TASK)."""
    km = k.kmem
    for name in ("init_cred", "init_groups", "init_ucounts"):
        if name not in k.image.symbols:
            k.image.var(name, "data")
    cred, groups, uc = k.sym("init_cred"), k.sym("init_groups"), k.sym("init_ucounts")
    km.set(groups, "group_info", "usage.refs.counter", 2)  # REFCOUNT_INIT(2)
    # init_ucounts.count = RCUREF_INIT(1): an rcuref_t holds count - 1, i.e. 0 (the bytes as they are)
    km.set(cred, "cred", "usage.counter", 4)  # ATOMIC_INIT(4)
    for f in _IDS:
        km.set(cred, "cred", f"{f}.val", 0)
    for f in ("cap_permitted", "cap_effective", "cap_bset"):
        km.set(cred, "cred", f"{f}.val", CAP_FULL_SET)
    km.set(cred, "cred", "group_info", groups)
    km.set(cred, "cred", "ucounts", uc)
    it = k.sym("init_task")
    km.set(it, "task_struct", "real_cred", cred)
    km.set(it, "task_struct", "cred", cred)
    return cred


def _add(k: Kernel, addr: int, struct: str, path: str, delta: int) -> int:
    v = k.kmem.get(addr, struct, path) + delta
    k.kmem.set(addr, struct, path, v)
    return v


def _ucount_nproc(k: Kernel, tsk: int, delta: int) -> None:
    """inc_rlimit_ucounts / dec_rlimit_ucounts(task_ucounts(p), UCOUNT_RLIMIT_NPROC, delta)."""
    cred = k.kmem.get(tsk, "task_struct", "real_cred")
    uc = k.kmem.get(cred, "cred", "ucounts") if cred else 0
    if uc:
        _add(k, uc, "ucounts", f"rlimit[{k.T.const('UCOUNT_RLIMIT_NPROC')}].counter", delta)


def prepare_creds(k: Kernel, old: int) -> int:
    """kernel/cred.c prepare_creds(): a copy of ``old`` from cred_jar with usage 1, taking
    references on its group_info and ucounts."""
    km = k.kmem
    new = slub.kmem_cache_alloc(k, slub.find_cache(k, "cred"), "GFP_KERNEL", caller="prepare_creds")
    km.write_bytes(new, k.mem.read(k.pa(old), k.T.sizeof("struct cred")))
    km.set(new, "cred", "usage.counter", 1)
    gi = km.get(new, "cred", "group_info")
    if gi:
        _add(k, gi, "group_info", "usage.refs.counter", 1)  # get_group_info
    return new


def copy_creds(k: Kernel, tsk: int, clone_thread: bool = False) -> None:
    """kernel/cred.c copy_creds() for ``tsk``, whose ``cred`` / ``real_cred`` were copied from
    its creator by dup_task_struct (a task made from nothing takes init_cred's)."""
    km = k.kmem
    cred = km.get(tsk, "task_struct", "cred") or k.sym("init_cred")
    if clone_thread:
        _add(k, cred, "cred", "usage.counter", 2)  # get_cred_many(p->cred, 2)
        km.set(tsk, "task_struct", "real_cred", cred)
    else:
        new = prepare_creds(k, cred)
        km.set(new, "cred", "usage.counter", 2)  # p->cred = p->real_cred = get_cred(new)
        km.set(tsk, "task_struct", "cred", new)
        km.set(tsk, "task_struct", "real_cred", new)
    _ucount_nproc(k, tsk, 1)


def exit_creds(k: Kernel, tsk: int) -> None:
    """release_task()'s dec_rlimit_ucounts(UCOUNT_RLIMIT_NPROC) and __put_task_struct() ->
    exit_creds(): put_cred of real_cred and cred; the last put frees it (put_group_info)."""
    km = k.kmem
    _ucount_nproc(k, tsk, -1)
    for f in ("real_cred", "cred"):
        cred = km.get(tsk, "task_struct", f)
        km.set(tsk, "task_struct", f, 0)
        if not cred or _add(k, cred, "cred", "usage.counter", -1) > 0 or cred == k.sym("init_cred"):
            continue
        gi = km.get(cred, "cred", "group_info")
        if gi:
            _add(k, gi, "group_info", "usage.refs.counter", -1)
        slub.kmem_cache_free(k, slub.find_cache(k, "cred"), cred)
