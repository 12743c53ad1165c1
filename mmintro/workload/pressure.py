"""Memory pressure (mm/swapfile.c, mm/vmscan.c, mm/compaction.c, mm/migrate.c, mm/oom_kill.c,
kernel/sched/psi.c): ``swapon``, the OOM killer's victims, compaction's tunables, and the values
expectations read (swap, vm events, PSI, OOM scores, compaction's fragindex and migrations)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmintro.arch.x86 import _PAGE_PRESENT
from mmintro.kernel import page_alloc
from mmintro.workload.core import PAGE_SIZE, WorkloadError, _kmod

if TYPE_CHECKING:
    from mmintro.workload.api import Workload


class PressureSteps:
    """Swap devices and the OOM killer's victims (``killed``)."""

    def _sync_oom_kills(self) -> None:
        """Forget the processes the OOM killer killed (their exit ran inside the kernel): they
        move from ``procs`` to ``killed``."""
        st = self.k.__dict__.get("oom")
        if st is None or not st.kills:
            return
        live = {id(p) for p in self.k.__dict__.get("processes", [])}
        for name, p in list(self.procs.items()):
            if id(p) not in live and any(kill.task == p.task for kill in st.kills):
                self.killed[name] = p.pid
                del self.procs[name]
                self.mappings.pop(name, None)
                self.threads.pop(name, None)

    def set_oom_score_adj(self, proc: str, value: int) -> None:
        """echo VALUE > /proc/PID/oom_score_adj (as root): the thread group's signal_struct."""
        try:
            _kmod("oom_kill", "OOM").set_oom_score_adj(self.k, self.proc(proc).task, value)
        except ValueError as e:
            raise WorkloadError(str(e)) from None

    def swapon(self, path: str, size: int, priority: int | None = None) -> Any:
        """swapon(2) of a new swap file of ``size`` bytes at ``path`` (priority: the default
        --least_priority unless given, -1 meaning the default as swapon(8) has it)."""
        swapfile = _kmod("swapfile", "SWAP", "sys_swapon")
        try:
            return swapfile.sys_swapon(self.k, path, size, None if priority in (None, -1) else priority)
        except ValueError as e:
            raise WorkloadError(str(e)) from None


def _killed(w: Workload, proc: str) -> int:
    """1 if the OOM killer killed the workload's process ``proc``, else 0 (a live process)."""
    w._sync_oom_kills()
    if proc in w.killed:
        return 1
    w.proc(proc)
    return 0


def _oom_score(w: Workload, proc: str) -> int:
    """fs/proc/base.c proc_oom_score() for the process (the reader's formula, on the live
    kernel's books)."""
    oom = _kmod("oom_kill", "OOM")
    k = w.k
    totalpages = oom.totalram_pages(k) + oom.total_swap_pages(k)
    badness = oom.oom_badness(k, w.proc(proc).task, totalpages)
    if badness == oom.LONG_MIN:
        return 0
    q = abs(badness * 1000) // totalpages  # C division truncates toward zero
    return (1000 + (q if badness >= 0 else -q)) * 2 // 3


def _psi_total(w: Workload, line: str) -> int:
    from mmintro.kernel import psi

    st = w.k.__dict__.get("psi")
    if st is None or not st.enabled:
        raise WorkloadError("PSI is disabled on this machine (psi=1 on its command line enables it: [machine] cmdline)")
    return int(psi.pressure(w.k)[line]["total"])


def _swap(w: Workload) -> tuple[int, int]:
    from mmintro.kernel import swapfile

    return swapfile.total_swap_pages(w.k), swapfile.get_nr_swap_pages(w.k)


def _vm_event(w: Workload, item: str) -> int:
    """The vm event ``item`` (enum vm_event_item, e.g. 'PSWPOUT') summed over CPUs."""
    ev = w.k.T.enum("vm_event_item")
    if item not in ev or item == "NR_VM_EVENT_ITEMS":
        raise WorkloadError(f"vm_event({item!r}): the kernel has no vm_event_item {item} (e.g. 'PGSCAN_KSWAPD')")
    return sum(c[ev[item]] for c in w.k.vm_events)


# -- compaction and migration (mmintro.kernel.compaction, migrate) ---------------------------
COMPACTION_SYSCTLS = ("vm.compact_memory", "vm.compaction_proactiveness", "vm.extfrag_threshold")


def _compaction_mod() -> Any:
    return _kmod("compaction", "COMPACTION", "compact_zone")


def _compaction_sysctl(w: Workload, name: str, value: int) -> None:
    """vm.compact_memory (1: compact_nodes), vm.compaction_proactiveness (non-zero wakes each
    node's kcompactd for proactive compaction), vm.extfrag_threshold (0..1000)."""
    C = _compaction_mod()
    try:
        if name == "vm.compact_memory":
            C.sysctl_compaction_handler(w.k, value)
        else:
            C.set_compaction_sysctl(w.k, name[3:], value)
    except ValueError as e:
        raise WorkloadError(str(e)) from None


def _migrated_anon(w: Workload) -> int:
    """How many of the folios compaction migrated are anonymous (the rest: page cache)."""
    from mmintro.kernel import rmap

    return sum(1 for _old, new in w.k.__dict__.get("migrations", ()) if rmap.folio_test_anon(w.k, new))


def _user_ptes(w: Workload, proc: str) -> dict[int, int]:
    """{user address: pfn} of every present 4 KiB PTE of the process (the page-table walk an
    MMU does, over simulated memory)."""
    import numpy as np

    k = w.k
    mm = w.proc(proc).mm
    pfn_mask = np.uint64(0x000FFFFFFFFFF000)
    out: dict[int, int] = {}

    def table(e: int) -> Any:
        return np.frombuffer(bytes(k.mem.read(int(e) & 0x000FFFFFFFFFF000, PAGE_SIZE)), dtype="<u8")

    pgd = np.frombuffer(bytes(k.mem.read(k.pa(k.kmem.get(mm, "mm_struct", "pgd")), PAGE_SIZE)), dtype="<u8")
    for i1 in np.nonzero(pgd[:256] & np.uint64(_PAGE_PRESENT))[0]:
        pud = table(pgd[i1])
        for i2 in np.nonzero(pud & np.uint64(_PAGE_PRESENT))[0]:
            if pud[i2] & np.uint64(0x80):
                continue
            pmd = table(pud[i2])
            for i3 in np.nonzero(pmd & np.uint64(_PAGE_PRESENT))[0]:
                if pmd[i3] & np.uint64(0x80):
                    continue
                pte = table(pmd[i3])
                idx = np.nonzero(pte & np.uint64(_PAGE_PRESENT))[0]
                base = (int(i1) << 39) | (int(i2) << 30) | (int(i3) << 21)
                for i4, pfn in zip(idx.tolist(), ((pte[idx] & pfn_mask) >> np.uint64(12)).tolist()):
                    out[base | (i4 << 12)] = pfn
    return out


def _mapping_errors(w: Workload, proc: str) -> tuple[int, int]:
    """(errors, migrated pages checked) over the process's mappings after migration: a
    present PTE whose page is free (PageBuddy or _refcount 0) or unmapped (_mapcount < 0) is
    an error (an old frame left mapped after its folio moved is one: it was freed); for every
    page compaction migrated to (``k.migrations``) that the process maps, rmap_walk of the
    new page must find the process's VMA at that address, and a page-cache page must hold
    its file's bytes at its index."""
    from mmintro.kernel import inode as I
    from mmintro.kernel import rmap

    k = w.k
    km = k.kmem
    ptes = _user_ptes(w, proc)
    zero = getattr(k, "zero_pfn", None)
    mapped = set(ptes.values())
    errors = 0
    for pfn in mapped:
        if pfn == zero or pfn >= getattr(k, "max_pfn", 1 << 40):
            continue
        z = page_alloc.page_zone(k, pfn)
        if (
            pfn in z.free_order
            or rmap.folio_ref_count(k, rmap.page_folio(k, pfn)) <= 0
            or rmap.page_mapcount(k, pfn) <= 0
        ):
            errors += 1
    moved = dict(k.__dict__.get("migrations", ()))
    new_pfns = set(moved.values())
    by_pfn: dict[int, list[int]] = {}
    for addr, pfn in ptes.items():
        if pfn in new_pfns:
            by_pfn.setdefault(pfn, []).append(addr)
    mm = w.proc(proc).mm
    for pfn, addrs in by_pfn.items():
        found = {a for vma, a in rmap.rmap_walk(k, pfn) if km.get(vma, "vm_area_struct", "vm_mm") == mm}
        errors += sum(1 for a in addrs if a not in found)
        mapping = km.get(k.pfn_to_page(pfn), "page", "mapping")
        if mapping and not mapping & 1:
            path = I.vfs_root(k).paths.get(km.get(mapping, "address_space", "host"))
            index = km.get(k.pfn_to_page(pfn), "page", "__folio_index")
            if path is not None and bytes(k.mem.read(pfn << 12, PAGE_SIZE)) != I.file_bytes(
                path, index << 12, PAGE_SIZE
            ):
                errors += 1
    return errors, sum(len(a) for a in by_pfn.values())
