"""NUMA memory policies (mm/mempolicy.c of 6.18).

``struct mempolicy`` objects come from the ``numa_policy`` cache (policy_cache, made by
numa_policy_init): ``mpol_new`` sets refcnt 1, mode, flags, home_node NUMA_NO_NODE and
``mpol_set_nodemask`` the nodes (``w.cpuset_mems_allowed`` = the memory nodes: no cpusets).
A task's policy is ``task->mempolicy`` (do_set_mempolicy), a VMA's ``vma->vm_policy``
(do_mbind -> mbind_range -> vma_replace_policy, one mpol_dup per VMA).

Allocation: ``vma_alloc_folio`` = get_vma_policy (the VMA's, else the task's, else
preferred_node_policy[numa_node_id()] = local) with the interleave index ``ilx = vm_pgoff
+ ((addr - vm_start) >> (PAGE_SHIFT + order))``, then alloc_pages_mpol: policy_nodemask
picks the node (PREFERRED: its node; BIND: the local node restricted to the mask;
INTERLEAVE: interleave_nid(ilx) = the (ilx % nnodes)-th node of the mask) and
NUMA_INTERLEAVE_HIT is counted when an interleaved page lands on the chosen node.

``interleave_nodes`` / ``alloc_pages_interleave`` are the task-level (no index)
interleave the allocator workloads use (il_prev per CPU's task).

do_mbind supports ranges that cover whole VMAs, and splits VMAs at the range ends through
the VMA helper's ``vma.split_vma`` when it is there (else a partial VMA raises
NotImplementedError).  Not modelled: MPOL_F_STATIC/RELATIVE_NODES remapping on cpuset
changes, MPOL_MF_MOVE page migration, weighted interleave, shared (shmem) policies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT
from mmintro.kernel import page_alloc, slub
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

_alloc = getattr(page_alloc, "__alloc_pages")
_T = get_types()

MPOL_DEFAULT = _T.const("MPOL_DEFAULT")
MPOL_PREFERRED = _T.const("MPOL_PREFERRED")
MPOL_BIND = _T.const("MPOL_BIND")
MPOL_INTERLEAVE = _T.const("MPOL_INTERLEAVE")
MPOL_LOCAL = _T.const("MPOL_LOCAL")
MPOL_PREFERRED_MANY = _T.const("MPOL_PREFERRED_MANY")
MPOL_WEIGHTED_INTERLEAVE = _T.const("MPOL_WEIGHTED_INTERLEAVE")
NUMA_NO_NODE = -1
MAX_NUMNODES = 1 << 10  # CONFIG_NODES_SHIFT=10
NO_INTERLEAVE_INDEX = (1 << 64) - 1  # include/linux/mempolicy.h: (-1UL)
# include/uapi/linux/mempolicy.h internal flags (#defines)
MPOL_F_SHARED = 1 << 0
MPOL_F_MOF = 1 << 3
MPOL_F_MORON = 1 << 4


def _mode(mode: int | str) -> int:
    return _T.const(mode) if isinstance(mode, str) else int(mode)


def _node_mask(k: Kernel, nodes) -> int:
    m = 0
    for n in nodes:
        if not 0 <= n < k.config.nodes:
            raise ValueError(f"node {n} does not exist (the machine has {k.config.nodes})")
        m |= 1 << n
    return m


def _write_nodemask(k: Kernel, addr: int, mask: int) -> None:
    k.kmem.write_bytes(addr, mask.to_bytes(_T.sizeof("nodemask_t"), "little"))


def _read_nodes(k: Kernel, pol: int) -> list[int]:
    raw = int.from_bytes(k.mem.read(k.pa(k.kmem.addr(pol, "mempolicy", "nodes")), 16), "little")
    return [n for n in range(min(128, MAX_NUMNODES)) if raw >> n & 1]


def mpol_new(k: Kernel, mode: int | str, nodes) -> int:
    """mm/mempolicy.c mpol_new() + mpol_set_nodemask(): 0 (NULL) for MPOL_DEFAULT; an empty
    MPOL_PREFERRED becomes MPOL_LOCAL; PREFERRED keeps only the first node."""
    mode = _mode(mode)
    nodes = sorted(set(nodes))
    if mode == MPOL_DEFAULT:
        if nodes:
            raise ValueError("MPOL_DEFAULT takes no nodes (-EINVAL)")
        return 0
    if not nodes:
        if mode == MPOL_PREFERRED:
            mode = MPOL_LOCAL
        elif mode != MPOL_LOCAL:
            raise ValueError("an empty nodemask (-EINVAL)")
    elif mode == MPOL_LOCAL:
        raise ValueError("MPOL_LOCAL takes no nodes (-EINVAL)")
    km = k.kmem
    pol = slub.kmem_cache_alloc(k, slub.find_cache(k, "numa_policy"), "GFP_KERNEL", caller="mpol_new")
    if not pol:
        raise MemoryError("mpol_new: out of memory")
    km.write_bytes(pol, bytes(_T.sizeof("struct mempolicy")))
    km.set(pol, "mempolicy", "refcnt.counter", 1)
    km.set(pol, "mempolicy", "mode", mode)
    km.set(pol, "mempolicy", "flags", 0)
    km.set(pol, "mempolicy", "home_node", NUMA_NO_NODE)
    mems = (1 << k.config.nodes) - 1  # cpuset_current_mems_allowed & node_states[N_MEMORY]
    if nodes:
        want = _node_mask(k, nodes) & mems
        if mode == MPOL_PREFERRED:  # mpol_new_preferred(): nodes_clear + node_set(first_node)
            want &= -want
        _write_nodemask(k, km.addr(pol, "mempolicy", "nodes"), want)
    _write_nodemask(k, km.addr(pol, "mempolicy", "w"), mems)  # w.cpuset_mems_allowed
    return pol


def mpol_get(k: Kernel, pol: int) -> None:
    if pol:
        k.kmem.set(pol, "mempolicy", "refcnt.counter", k.kmem.get(pol, "mempolicy", "refcnt.counter") + 1)


def mpol_put(k: Kernel, pol: int) -> None:
    """mpol_put() -> __mpol_put(): kmem_cache_free at the last reference."""
    if not pol:
        return
    ref = k.kmem.get(pol, "mempolicy", "refcnt.counter") - 1
    k.kmem.set(pol, "mempolicy", "refcnt.counter", ref)
    if ref == 0:
        slub.kmem_cache_free(k, slub.find_cache(k, "numa_policy"), pol)


def mpol_dup(k: Kernel, old: int) -> int:
    """__mpol_dup(): a copy with refcnt 1."""
    if not old:
        return 0
    size = _T.sizeof("struct mempolicy")
    new = slub.kmem_cache_alloc(k, slub.find_cache(k, "numa_policy"), "GFP_KERNEL", caller="__mpol_dup")
    k.kmem.write_bytes(new, k.mem.read(k.pa(old), size))
    k.kmem.set(new, "mempolicy", "refcnt.counter", 1)
    k.kmem.set(new, "mempolicy", "rcu.next", 0)
    k.kmem.set(new, "mempolicy", "rcu.func", 0)
    return new


def vma_dup_policy(k: Kernel, src: int, dst: int) -> int:
    """mm/mempolicy.c vma_dup_policy(): dst->vm_policy = mpol_dup(src->vm_policy)."""
    k.kmem.set(dst, "vm_area_struct", "vm_policy", mpol_dup(k, k.kmem.get(src, "vm_area_struct", "vm_policy")))
    return 0


def policy_info(k: Kernel, pol: int) -> tuple[int, list[int]]:
    """(mode, nodes) of a struct mempolicy (0 = the default policy)."""
    if not pol:
        return MPOL_DEFAULT, []
    return k.kmem.get(pol, "mempolicy", "mode"), _read_nodes(k, pol)


def do_set_mempolicy(k: Kernel, task: int, mode: int | str, nodes) -> int:
    """mm/mempolicy.c do_set_mempolicy(): task->mempolicy = the new policy (NULL for
    MPOL_DEFAULT), the old one put; an interleave policy restarts il_prev at
    MAX_NUMNODES - 1 and il_weight at 0."""
    km = k.kmem
    new = mpol_new(k, mode, nodes)
    old = km.get(task, "task_struct", "mempolicy")
    km.set(task, "task_struct", "mempolicy", new)
    if new and km.get(new, "mempolicy", "mode") in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):
        km.set(task, "task_struct", "il_prev", MAX_NUMNODES - 1)
        km.set(task, "task_struct", "il_weight", 0)
    mpol_put(k, old)
    return 0


def vma_replace_policy(k: Kernel, vma: int, pol: int) -> None:
    """mm/mempolicy.c vma_replace_policy(): new = mpol_dup(pol); vm_ops->set_policy(vma, new)
    when the VMA has one (shmem_set_policy: the file's shared policy); vma->vm_policy = new,
    old put."""
    km = k.kmem
    new = mpol_dup(k, pol)
    ops = km.get(vma, "vm_area_struct", "vm_ops")
    if ops and km.get(ops, "vm_operations_struct", "set_policy"):
        from mmintro.kernel import shmem

        if shmem.is_shmem_vma(k, vma):
            shmem.shmem_set_policy(k, vma, new)
    old = km.get(vma, "vm_area_struct", "vm_policy")
    km.set(vma, "vm_area_struct", "vm_policy", new)
    mpol_put(k, old)


def do_mbind(k: Kernel, mm: int, start: int, length: int, mode: int | str, nodes) -> int:
    """mm/mempolicy.c do_mbind() -> mbind_range(): every VMA in [start, start+len) gets the
    policy (split at the range ends first).  MPOL_MF_MOVE is not modelled (pages already
    faulted stay where they are, as without the flag)."""
    from mmintro.kernel import mmap

    if start & 0xFFF:
        raise ValueError("mbind: start is not page aligned (-EINVAL)")
    end = start + ((length + 0xFFF) & ~0xFFF)
    new = mpol_new(k, mode, nodes)
    km = k.kmem
    vmas = []
    for _f, _l, vma in mmap.mm_tree(k, mm).mt_for_each(start):
        if km.get(vma, "vm_area_struct", "vm_start") >= end:
            break
        vmas.append(vma)
    if not vmas:
        mpol_put(k, new)
        raise ValueError("mbind: no VMA in the range (-EFAULT)")
    for vma in vmas:
        vs, ve = km.get(vma, "vm_area_struct", "vm_start"), km.get(vma, "vm_area_struct", "vm_end")
        if vs < start or ve > end:
            vma = _split_to(k, mm, vma, max(vs, start), min(ve, end))
        vma_replace_policy(k, vma, new)
    mpol_put(k, new)
    return 0


def _split_to(k: Kernel, mm: int, vma: int, start: int, end: int) -> int:
    """vma_modify_policy(): split ``vma`` so that a VMA covers exactly [start, end)."""
    try:
        from mmintro.kernel import vma as vmamod
    except ImportError:
        vmamod = None
    if vmamod is None or not hasattr(vmamod, "split_vma"):
        raise NotImplementedError("mbind of part of a VMA needs vma.split_vma")
    from mmintro.kernel import mmap

    km = k.kmem
    if km.get(vma, "vm_area_struct", "vm_start") < start:
        vmamod.split_vma(k, mm, vma, start, 1)
        vma = mmap.find_vma(k, mm, start)
    if km.get(vma, "vm_area_struct", "vm_end") > end:
        vmamod.split_vma(k, mm, vma, end, 0)
        vma = mmap.find_vma(k, mm, start)
    return vma


# -- allocation --------------------------------------------------------------------------------
def interleave_nodes(k: Kernel, nodes: tuple[int, ...]) -> int:
    """next_node_in(current->il_prev, pol->nodes), remembered per CPU's current task."""
    prev = k.il_prev.get(k.current_cpu, -1)
    ordered = sorted(nodes)
    nxt = next((n for n in ordered if n > prev), ordered[0])
    k.il_prev[k.current_cpu] = nxt
    return nxt


def alloc_pages_interleave(k: Kernel, gfp: int, order: int, nodes: tuple[int, ...]) -> int | None:
    nid = interleave_nodes(k, nodes)
    pfn = _alloc(k, gfp, order, nid, None)
    if pfn is not None:
        z = page_alloc.page_zone(k, pfn)
        if z.nid == nid:
            z.numa_events[page_alloc.NUMA_INTERLEAVE_HIT] += 1
    return pfn


def interleave_nid(nodes: list[int], ilx: int, local: int) -> int:
    """mm/mempolicy.c interleave_nid(): the (ilx % nnodes)-th node of the policy's mask."""
    if not nodes:
        return local
    return nodes[ilx % len(nodes)]


def get_vma_policy(k: Kernel, vma: int, addr: int, order: int) -> tuple[int, int]:
    """mm/mempolicy.c get_vma_policy(): (struct mempolicy * or 0 for the default, ilx)."""
    km = k.kmem
    pol = km.get(vma, "vm_area_struct", "vm_policy")
    if not pol:
        mm = km.get(vma, "vm_area_struct", "vm_mm")
        task = km.get(mm, "mm_struct", "owner") if mm else 0
        pol = km.get(task, "task_struct", "mempolicy") if task else 0
    ilx = NO_INTERLEAVE_INDEX
    if pol and km.get(pol, "mempolicy", "mode") in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):
        ilx = (km.get(vma, "vm_area_struct", "vm_pgoff") >> order) + (
            (addr - km.get(vma, "vm_area_struct", "vm_start")) >> (PAGE_SHIFT + order)
        )
    return pol, ilx


def task_interleave_node(k: Kernel, task: int, nodes: list[int]) -> int:
    """mm/mempolicy.c interleave_nodes(): next_node_in(current->il_prev, pol->nodes), stored
    back in task->il_prev."""
    km = k.kmem
    prev = km.get(task, "task_struct", "il_prev")
    nxt = next((n for n in nodes if n > prev), nodes[0])
    km.set(task, "task_struct", "il_prev", nxt)
    return nxt


def alloc_pages_task(k: Kernel, task: int, gfp: int, order: int = 0) -> int | None:
    """mm/mempolicy.c alloc_frozen_pages_noprof() / alloc_pages_noprof() for an allocation
    made by ``task`` outside a VMA (the page cache's folio_alloc, for one): the task's policy
    (get_task_policy: task->mempolicy, else local), interleaving through task->il_prev."""
    thisnode = gfp & page_alloc.G.FLAGS["__GFP_THISNODE"]
    pol = k.kmem.get(task, "task_struct", "mempolicy") if task and not thisnode else 0
    return alloc_pages_mpol(k, gfp, order, pol, NO_INTERLEAVE_INDEX, k.numa_node_id(), task=task)


def alloc_pages_mpol(k: Kernel, gfp: int, order: int, pol: int, ilx: int, nid: int, task: int = 0) -> int | None:
    """mm/mempolicy.c alloc_pages_mpol() with policy_nodemask()."""
    mode, nodes = policy_info(k, pol)
    nodemask = None
    if mode == MPOL_PREFERRED:
        nid = nodes[0]
    elif mode == MPOL_BIND:
        nodemask = frozenset(nodes)
    elif mode == MPOL_PREFERRED_MANY:
        nodemask = frozenset(nodes)
        pfn = _alloc(k, gfp | page_alloc.G.FLAGS["__GFP_NOWARN"], order, nid, nodemask)
        return pfn if pfn is not None else _alloc(k, gfp, order, nid, None)
    elif mode in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):
        if ilx == NO_INTERLEAVE_INDEX:
            nid = task_interleave_node(k, task, nodes) if task else interleave_nodes(k, tuple(nodes))
        else:
            nid = interleave_nid(nodes, ilx, nid)
    pfn = _alloc(k, gfp, order, nid, nodemask)
    if pfn is not None and mode in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):
        z = page_alloc.page_zone(k, pfn)
        if z.nid == nid:
            z.numa_events[page_alloc.NUMA_INTERLEAVE_HIT] += 1
    return pfn


def vma_alloc_folio(k: Kernel, gfp: int, order: int, vma: int, addr: int) -> int | None:
    """mm/mempolicy.c vma_alloc_folio_noprof() -> folio_alloc_mpol(gfp | __GFP_COMP): a
    folio for ``addr`` under the VMA/task policy; large folios are marked
    PG_large_rmappable (folio_prep_large_rmappable).  Returns the head pfn or None."""
    pol, ilx = get_vma_policy(k, vma, addr, order)
    if order:
        gfp |= page_alloc.G.FLAGS["__GFP_COMP"]
    pfn = alloc_pages_mpol(k, gfp, order, pol, ilx, k.numa_node_id())
    if pfn is not None and order:
        mv64, _mv32, w = page_alloc.page_words(k, pfn)
        mv64[w + page_alloc.FW_FLAGS_1] |= 1 << page_alloc.PG_large_rmappable
    return pfn


def vma_folio_allocator(k: Kernel, vma: int, gfp: int):
    """vma_alloc_folio(gfp, 0, vma, addr) as a function of ``addr`` with the policy looked
    up once (for populating a range: the policy cannot change during the call)."""
    km = k.kmem
    pol, _ilx = get_vma_policy(k, vma, km.get(vma, "vm_area_struct", "vm_start"), 0)
    mode, nodes = policy_info(k, pol)
    local = k.numa_node_id()
    pgoff = km.get(vma, "vm_area_struct", "vm_pgoff")
    vstart = km.get(vma, "vm_area_struct", "vm_start")
    if mode in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):

        def alloc(addr: int) -> int | None:
            nid = interleave_nid(nodes, pgoff + ((addr - vstart) >> PAGE_SHIFT), local)
            pfn = _alloc(k, gfp, 0, nid, None)
            if pfn is not None:
                z = page_alloc.page_zone(k, pfn)
                if z.nid == nid:
                    z.numa_events[page_alloc.NUMA_INTERLEAVE_HIT] += 1
            return pfn

        return alloc
    if mode == MPOL_PREFERRED_MANY:
        return lambda addr: alloc_pages_mpol(k, gfp, 0, pol, NO_INTERLEAVE_INDEX, local)
    nid = nodes[0] if mode == MPOL_PREFERRED else local
    mask = frozenset(nodes) if mode == MPOL_BIND else None
    return lambda addr: _alloc(k, gfp, 0, nid, mask)
