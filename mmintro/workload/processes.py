"""Process, mapping and fault steps (kernel/fork.c, kernel/exit.c, mm/mmap.c, mm/memory.c,
mm/mprotect.c, mm/mempolicy.c): ``spawn``, ``fork``, ``thread``, ``exit``, ``exec``, ``brk``, ``mmap``,
``touch``, ``munmap``, ``mprotect``, ``mbind``, ``set_mempolicy``; and the values expectations read
from a process's books (rss_stat, the fault log, Pss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from mmintro.arch.x86 import _PAGE_PRESENT
from mmintro.workload.core import PAGE_SIZE, ExpectationFailed, WorkloadError, _kmod, _optional_kmod, _page_up

if TYPE_CHECKING:
    from mmintro.workload.api import Workload


MAP_KINDS = ("anon", "private", "shared", "hugetlb", "shmem")
# mempolicy modes a step may name (include/uapi/linux/mempolicy.h enum, values from the BTF)
MPOL_MODES = {
    "default": "MPOL_DEFAULT",
    "preferred": "MPOL_PREFERRED",
    "bind": "MPOL_BIND",
    "interleave": "MPOL_INTERLEAVE",
    "local": "MPOL_LOCAL",
    "preferred_many": "MPOL_PREFERRED_MANY",
    "weighted_interleave": "MPOL_WEIGHTED_INTERLEAVE",
}


class Mapping(NamedTuple):
    """A mapping a workload process made (or inherited), by tag."""

    start: int
    """First address."""
    length: int
    """Bytes (whole pages)."""
    kind: str
    """``anon``, ``private`` / ``shared`` (a file mapping), ``hugetlb``, ``shmem`` (shared
    anonymous)."""
    file: str | None = None
    """The file tag of a file mapping."""
    page_size: int = PAGE_SIZE
    """Its page size: 4096, or the hugetlb page size."""


def _prot(prot: str) -> int:
    """``"rw"`` -> VM_READ | VM_WRITE (the r/w/x letters of PROT_*, in any order; "" = PROT_NONE)."""
    from mmintro.kernel import mmap as M

    if not isinstance(prot, str) or set(prot) - set("rwx") or len(set(prot)) != len(prot):
        raise WorkloadError(f'prot {prot!r} is not made of the letters r, w, x (e.g. "rw")')
    return (M.VM_READ if "r" in prot else 0) | (M.VM_WRITE if "w" in prot else 0) | (M.VM_EXEC if "x" in prot else 0)


def _mpol(policy: str) -> str:
    if policy not in MPOL_MODES:
        raise WorkloadError(f"policy {policy!r} is not one of {', '.join(MPOL_MODES)}")
    return MPOL_MODES[policy]


class ProcessSteps:
    """Processes (``procs``) and their tagged mappings (``mappings``, ``threads``)."""

    def proc(self, name: str) -> Any:
        """The live process the workload named ``name`` (a :class:`mmintro.kernel.fork.Process`)."""
        self._sync_oom_kills()
        if name in self.killed:
            raise WorkloadError(
                f"process {name!r} (pid {self.killed[name]}) was killed by the OOM killer: no later step can use it"
            )
        try:
            return self.procs[name]
        except KeyError:
            raise WorkloadError(
                f"unknown process {name!r} (processes so far: {', '.join(self.procs) or 'none'})"
            ) from None

    def mapping(self, proc: str, tag: str) -> Mapping:
        """The mapping ``tag`` of process ``proc`` (its own or inherited through fork)."""
        self.proc(proc)
        try:
            return self.mappings[proc][tag]
        except KeyError:
            raise WorkloadError(
                f"process {proc!r} has no mapping {tag!r} (its mappings: {', '.join(self.mappings[proc]) or 'none'})"
            ) from None

    def spawn(
        self,
        name: str,
        comm: str | None = None,
        parent: str | None = None,
        heap: int = 0,
        cpu: int | None = None,
        oom_score_adj: int | None = None,
    ) -> Any:
        """fork + exec of a program: a process ``name`` (``comm`` defaults to the name) with
        the exec'd layout, its heap grown by ``heap`` bytes (brk), child of ``parent`` (a
        workload process) or of init_task.  Its mappings ``heap`` (when grown) and ``stack``
        are tagged."""
        from mmintro.kernel import fork

        if name in self.procs:
            raise WorkloadError(f"process {name!r} already exists")
        with self._cpu(cpu):
            try:
                p = fork.spawn_process(
                    self.k,
                    comm or name,
                    brk_grow=heap,
                    parent=self.proc(parent).task if parent else None,
                    cpu=self.k.current_cpu,
                )
            except MemoryError as e:
                raise ExpectationFailed(f"spawn {name}: {e}") from None
        self.procs[name] = p
        self.mappings[name] = self._exec_mappings(p)
        if oom_score_adj is not None:
            self.set_oom_score_adj(name, oom_score_adj)
        return p

    def _exec_mappings(self, p: Any) -> dict[str, Mapping]:
        """The tags an exec'd image starts with: ``heap`` (when the brk area is not empty) and
        ``stack``."""
        from mmintro.kernel import mmap as M

        km = self.k.kmem
        maps: dict[str, Mapping] = {}
        start_brk, brk = km.get(p.mm, "mm_struct", "start_brk"), km.get(p.mm, "mm_struct", "brk")
        if brk > start_brk:
            maps["heap"] = Mapping(start_brk, _page_up(brk) - start_brk, "anon")
        stack = M.find_vma(self.k, p.mm, p.layout.start_stack)
        if stack:
            s, e = km.get(stack, "vm_area_struct", "vm_start"), km.get(stack, "vm_area_struct", "vm_end")
            maps["stack"] = Mapping(s, e - s, "anon")
        return maps

    def brk(self, proc: str, delta: int) -> int:
        """brk(2) moving ``proc``'s break by ``delta`` bytes (``mmap.do_brk_flags``: growing
        expands the brk VMA, shrinking unmaps the pages above the new break); the ``heap`` tag
        follows.  Returns the new break."""
        from mmintro.kernel import mmap as M

        p = self.proc(proc)
        km = self.k.kmem
        start_brk, brk = km.get(p.mm, "mm_struct", "start_brk"), km.get(p.mm, "mm_struct", "brk")
        new = brk + delta
        if new < start_brk:
            raise WorkloadError(f"brk of {proc}: {-delta:#x} bytes is more than the heap's {brk - start_brk:#x}")
        try:
            M.do_brk_flags(self.k, p.mm, new)
        except MemoryError as e:
            raise ExpectationFailed(f"brk of {proc}: {e}") from None
        if new > start_brk:
            self.mappings[proc]["heap"] = Mapping(start_brk, _page_up(new) - start_brk, "anon")
        else:
            self.mappings[proc].pop("heap", None)
        return new

    def exec(self, proc: str, comm: str, heap: int = 0) -> Any:
        """execve(2) of program ``comm`` by ``proc`` (``fork.do_execve``: a new mm with the
        exec'd layout, the old one torn down; pid and parent stay), its heap then grown by
        ``heap`` bytes.  The process' mapping tags start again (``heap``, ``stack``)."""
        fork = _kmod("fork", "VMA", "do_execve")
        from mmintro.kernel import mmap as M

        p = self.proc(proc)
        if proc in self.threads or proc in self.threads.values():
            raise WorkloadError(f"exec by {proc}: a thread group's exec (de_thread) is not modelled")
        try:
            fork.do_execve(self.k, p, comm)
            if heap:
                M.do_brk_flags(self.k, p.mm, self.k.kmem.get(p.mm, "mm_struct", "brk") + heap)
        except MemoryError as e:
            raise ExpectationFailed(f"exec of {comm} by {proc}: {e}") from None
        self.mappings[proc] = self._exec_mappings(p)
        return p

    def mmap(
        self,
        proc: str,
        tag: str,
        size: int,
        prot: str = "rw",
        kind: str = "anon",
        file: str | None = None,
        offset: int = 0,
        hugepage: bool = False,
        page_size: int | None = None,
        shared: bool = False,
    ) -> int:
        """mmap(2) in process ``proc``, kept as mapping ``tag``: ``kind`` "anon" (MAP_PRIVATE |
        MAP_ANONYMOUS), "shared" (MAP_SHARED of ``file``; "private" maps it MAP_PRIVATE),
        "hugetlb" (MAP_HUGETLB from the ``page_size`` pool; MAP_SHARED with ``shared``, as a
        database's shared buffers are) or "shmem" (MAP_SHARED | MAP_ANONYMOUS:
        ``shmem.shmem_mmap``); ``hugepage`` then madvise(MADV_HUGEPAGE).  Returns the
        address."""
        p = self.proc(proc)
        if tag in self.mappings[proc]:
            raise WorkloadError(f"process {proc!r} already has a mapping {tag!r}")
        if kind not in MAP_KINDS:
            raise WorkloadError(f"kind {kind!r} is not one of {', '.join(MAP_KINDS)}")
        flags = _prot(prot)
        size = _page_up(size)
        if kind == "anon":
            from mmintro.kernel import mmap as M

            addr = M.do_mmap(self.k, p.mm, size, flags)
        elif kind == "shmem":
            addr = _kmod("shmem", "SHMEM", "shmem_mmap").shmem_mmap(self.k, p.mm, size, flags)
        elif kind == "hugetlb":
            hugetlb = _kmod("hugetlb", "HUGE")
            if shared:
                addr = hugetlb.hugetlb_mmap(self.k, p.mm, size, page_size or 2 << 20, flags, shared=True)
            else:
                addr = hugetlb.hugetlb_mmap(self.k, p.mm, size, page_size or 2 << 20, flags)
        else:
            filemap = _kmod("filemap", "FILE")
            if file is None:
                raise WorkloadError(f"a {kind} file mapping needs file = TAG")
            addr = filemap.mmap_file(self.k, p.mm, self.file(file), size, flags, kind == "shared", offset)
        if not addr:
            raise ExpectationFailed(f"mmap {tag} of {size:#x} bytes in {proc} failed (-ENOMEM)")
        if hugepage:
            _kmod("huge_memory", "HUGE").madvise_hugepage(self.k, p.mm, addr, size)
        self.mappings[proc][tag] = Mapping(
            addr, size, kind, file, page_size or (2 << 20 if kind == "hugetlb" else 4096)
        )
        return addr

    def _range(self, proc: str, tag: str, start: int, size: int | None) -> tuple[Mapping, int, int]:
        m = self.mapping(proc, tag)
        size = m.length - start if size is None else size
        if start % PAGE_SIZE or size % PAGE_SIZE or start < 0 or size <= 0 or start + size > m.length:
            raise WorkloadError(
                f"range start={start:#x} size={size:#x} is not a page-aligned part of "
                f"{proc}'s {tag} ({m.length:#x} bytes)"
            )
        return m, m.start + start, size

    def touch(
        self,
        proc: str,
        tag: str,
        write: bool = False,
        start: int = 0,
        size: int | None = None,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
        populate: bool = False,
        until: str | None = None,
    ) -> list[Any]:
        """Access pages of a mapping as the process would: each chosen page of [start,
        start+size) — all, every n-th from ``offset``, or a seeded random ``fraction``/``count``
        — is read or written through ``memory.access``, as the MMU does: an access faults
        (``memory.handle_mm_fault``) only when the page-table walk ends at a non-present entry,
        or at a read-only one for a write; otherwise it takes no fault and the hardware sets
        _PAGE_ACCESSED (and _PAGE_DIRTY on a write) in the leaf entry.  A hugetlb mapping is touched
        once per huge page.  ``populate``: the whole range through ``memory.mm_populate``
        (MAP_POPULATE / MADV_POPULATE_*: __get_user_pages faults where follow_page finds no
        suitable entry; anonymous VMAs take MEM's batched path).  Returns the faults taken
        (the fault log's records for ``populate``).

        The OOM killer may run in any fault.  A process it kills (another one) dies there; if it
        kills ``proc`` itself, the step fails -- unless ``until = "oom"``: then touching stops
        at the fault after which ``proc`` was killed (the step fails if every page was touched
        and it was not)."""
        if until not in (None, "oom"):
            raise WorkloadError(f'touch until {until!r}: the only condition is "oom"')
        if until is not None and populate:
            raise WorkloadError('touch until = "oom" faults page by page: not with populate')
        p = self.proc(proc)
        m, addr, size = self._range(proc, tag, start, size)
        memory = _kmod("memory", "MEM", "access")
        if populate:
            if every is not None or fraction is not None or count is not None:
                raise WorkloadError("populate faults in the whole range: no every, fraction or count with it")
            log = getattr(self.k, "fault_log", [])
            before = len(log)
            with self._cpu(cpu):
                try:
                    n = memory.mm_populate(self.k, p.mm, addr, size, write, task=p.task)
                except (memory.SegmentationFault, memory.BusError) as e:
                    raise ExpectationFailed(f"touch {tag} in {proc}: populate failed: {e}") from None
                except MemoryError as e:
                    raise ExpectationFailed(f"touch {tag} in {proc}: out of memory: {e}") from None
            log = getattr(self.k, "fault_log", [])
            return list(log[before:]) if len(log) - before == n else [None] * n
        step = m.page_size if m.kind == "hugetlb" else PAGE_SIZE
        n = size // step
        chosen = sorted(self._choose(n, every, offset, fraction, count))
        faults: list[Any] = []
        oom = _optional_kmod("oom_kill")
        killed = False
        with self._cpu(cpu):
            for i in chosen:
                a = addr + i * step
                try:
                    # the MMU: a present leaf that allows the access gets Accessed (and
                    # Dirty on a write) set, no fault (None); else handle_mm_fault
                    f = memory.access(self.k, p.mm, a, write, task=p.task)
                except (memory.SegmentationFault, memory.BusError) as e:
                    sig = "SIGSEGV" if isinstance(e, memory.SegmentationFault) else "SIGBUS"
                    raise ExpectationFailed(f"touch {tag} in {proc}: {sig} at {a:#x}: {e}") from None
                except MemoryError as e:
                    if oom is None or not isinstance(e, oom.FatalSignalPending):
                        raise ExpectationFailed(f"touch {tag} in {proc}: out of memory at {a:#x}: {e}") from None
                    f = None  # VM_FAULT_OOM in a task the OOM killer killed: it dies on the way out
                except RuntimeError as e:
                    if oom is not None and isinstance(e, oom.OomPanic):
                        raise ExpectationFailed(f"touch {tag} in {proc}: kernel panic at {a:#x}: {e}") from None
                    raise
                if oom is not None and self.k.__dict__.get("oom") is not None and self.k.oom.dying:
                    # back to user mode: the OOM victims (this process too) take their SIGKILL
                    killed = oom.fatal_signal_pending(self.k, p.task)
                    oom.oom_victims_run(self.k, keep_current=False)
                    self._sync_oom_kills()
                    if killed:
                        if f is not None and getattr(f, "pfn", 0) is not None:
                            faults.append(f)
                        break
                if f is None:
                    continue
                if getattr(f, "pfn", 0) is None:
                    raise ExpectationFailed(f"touch {tag} in {proc}: the fault at {a:#x} failed ({f})")
                faults.append(f)
        if killed and until != "oom":
            raise ExpectationFailed(
                f"touch {tag} in {proc}: the OOM killer killed {proc} (pid {p.pid}) after "
                f'{len(faults)} faults (until = "oom" lets a process grow until it is killed)'
            )
        if until == "oom" and not killed:
            raise ExpectationFailed(
                f"touch {tag} in {proc} until oom: {len(faults)} faults and the OOM killer did not kill {proc}"
            )
        return faults

    def fork(self, child: str, parent: str, cpu: int | None = None) -> Any:
        """fork(2) of ``parent`` (``fork.do_fork``: dup_mmap copies the VMAs, anon_vma_fork,
        copy_page_range write-protects private pages on both sides); the child is ``child``
        and inherits the parent's mapping tags."""
        fork = _kmod("fork", "VMA", "do_fork")
        if child in self.procs:
            raise WorkloadError(f"process {child!r} already exists")
        pp = self.proc(parent)
        with self._cpu(cpu):
            try:
                c = fork.do_fork(self.k, pp)
            except MemoryError as e:
                raise ExpectationFailed(f"fork of {parent}: {e}") from None
        self.procs[child] = c
        self.mappings[child] = dict(self.mappings[parent])
        return c

    def thread(self, name: str, leader: str, cpu: int | None = None) -> Any:
        """pthread_create in ``leader`` (``fork.do_clone_thread``: a task of its own that
        shares the leader's mm, files and fs); the thread ``name`` shares the leader's mapping
        tags (one table: a mapping either makes is the other's)."""
        fork = _kmod("fork", "VMA", "do_clone_thread")
        if name in self.procs:
            raise WorkloadError(f"process {name!r} already exists")
        lp = self.proc(leader)
        leader = self.threads.get(leader, leader)  # a thread's thread joins the same group
        lp = self.proc(leader)
        with self._cpu(cpu):
            try:
                t = fork.do_clone_thread(self.k, lp)
            except MemoryError as e:
                raise ExpectationFailed(f"thread of {leader}: {e}") from None
        self.procs[name] = t
        self.mappings[name] = self.mappings[leader]
        self.threads[name] = leader
        return t

    def exit(self, proc: str) -> None:
        """exit(2): ``exit.do_exit`` (exit_mmap zaps the pages and frees the page tables and
        VMAs, the task is released).  A thread exits alone; a leader's exit (exit_group)
        ends its threads first."""
        exit_ = _kmod("exit", "VMA", "do_exit")
        exit_.do_exit(self.k, self.proc(proc))
        gone = [proc] if proc in self.threads else [proc, *(t for t, ld in self.threads.items() if ld == proc)]
        for name in gone:
            del self.procs[name]
            del self.mappings[name]
            self.threads.pop(name, None)

    def munmap(self, proc: str, tag: str, start: int = 0, size: int | None = None) -> None:
        """munmap(2) of [start, start+size) of a mapping (all of it by default)."""
        mmap = _kmod("mmap", "VMA", "do_munmap")
        m, addr, size = self._range(proc, tag, start, size)
        if mmap.do_munmap(self.k, self.proc(proc).mm, addr, size):
            raise ExpectationFailed(f"munmap of {proc}'s {tag} failed")
        if size == m.length:
            del self.mappings[proc][tag]

    def mprotect(self, proc: str, tag: str, prot: str, start: int = 0, size: int | None = None) -> None:
        """mprotect(2) of [start, start+size) of a mapping to ``prot`` ("r", "rw", "rx", "" ...)."""
        mprotect = _kmod("mprotect", "VMA", "do_mprotect")
        _m, addr, size = self._range(proc, tag, start, size)
        if mprotect.do_mprotect(self.k, self.proc(proc).mm, addr, size, _prot(prot)):
            raise ExpectationFailed(f"mprotect of {proc}'s {tag} failed")

    def mbind(
        self, proc: str, tag: str, policy: str, nodes: Sequence[int], start: int = 0, size: int | None = None
    ) -> None:
        """mbind(2): a VMA policy (``default``, ``bind``, ``preferred``, ``interleave``) on
        [start, start+size) of a mapping."""
        mempolicy = _kmod("mempolicy", "MEM", "do_mbind")
        _m, addr, size = self._range(proc, tag, start, size)
        self._check_nodes(nodes)
        mempolicy.do_mbind(self.k, self.proc(proc).mm, addr, size, _mpol(policy), list(nodes))

    def set_mempolicy(self, proc: str, policy: str, nodes: Sequence[int]) -> None:
        """set_mempolicy(2): the task policy of ``proc``."""
        mempolicy = _kmod("mempolicy", "MEM", "do_set_mempolicy")
        self._check_nodes(nodes)
        mempolicy.do_set_mempolicy(self.k, self.proc(proc).task, _mpol(policy), list(nodes))

    def _check_nodes(self, nodes: Sequence[int]) -> None:
        for nid in nodes:
            if not 0 <= nid < len(self.k.zones):
                raise WorkloadError(f"node {nid} does not exist (the machine has {len(self.k.zones)})")


def _mm_counter(w: Workload, proc: str, member: str) -> int:
    """get_mm_counter_sum(mm, member): the percpu counter's exact sum (count plus every CPU's
    delta, as drgn's task_rss adds them; /proc/PID/status shows only the count)."""
    p = w.proc(proc)
    try:
        from mmintro.kernel import memory

        return int(memory.get_mm_counter_sum(w.k, p.mm, member))
    except (ImportError, AttributeError):
        pass
    k = w.k
    km = k.kmem
    idx = k.T.const(member)
    base = km.addr(p.mm, "mm_struct", f"rss_stat[{idx}]")
    total = km.get(base, "percpu_counter", "count")
    counters = km.get(base, "percpu_counter", "counters")
    if counters:
        for cpu in range(k.config.cpus):
            total += int.from_bytes(km.mem.read(k.pa(k.per_cpu_ptr(counters, cpu)), 4), "little", signed=True)
    return total


PSS_SHIFT = 12  # fs/proc/task_mmu.c


def _pss(w: Workload, proc: str) -> int:
    """Pss of a process in kB as smaps_rollup adds it (fs/proc/task_mmu.c smaps_account, 6.18
    with CONFIG_PAGE_MAPCOUNT): every present leaf of the user page tables whose page
    vm_normal_page() would return (not the zero pages, not hugetlb -- Pss leaves hugetlb out);
    a folio with one reference counts whole, else each page PAGE_SIZE << PSS_SHIFT divided by
    its precise mapcount (the page's _mapcount + 1, plus the folio's entire mapcount when
    large) when that is 2 or more."""
    import numpy as np

    rmap = _kmod("rmap", "MEM", "page_mapcount")
    k = w.k
    km = k.kmem
    mm = w.proc(proc).mm
    zero_pfn = getattr(k, "zero_pfn", None)
    huge_zero = k.__dict__.get("huge_zero_pfn")
    pfn_mask = 0x000FFFFFFFFFF000
    total = 0

    def table(pa: int) -> Any:
        return np.frombuffer(bytes(k.mem.read(pa, PAGE_SIZE)), dtype="<u8")

    def present(t: Any) -> list[int]:
        return [int(e) for e in t[(t & _PAGE_PRESENT) != 0]]

    def account(pfn: int, nr: int) -> None:
        nonlocal total
        head = rmap.page_folio(k, pfn)
        if rmap.folio_ref_count(k, head) == 1:
            total += (nr * PAGE_SIZE) << PSS_SHIFT
            return
        large = rmap.folio_test_large(k, head)
        entire = km.get(k.pfn_to_page(head), "folio", "_entire_mapcount.counter") + 1 if large else 0
        for i in range(nr):
            mc = rmap.page_mapcount(k, pfn + i) + entire
            total += (PAGE_SIZE << PSS_SHIFT) // mc if mc >= 2 else PAGE_SIZE << PSS_SHIFT

    pgd = table(k.pa(km.get(mm, "mm_struct", "pgd")))
    for e1 in present(pgd[:256]):  # the user half
        for e2 in present(table(e1 & pfn_mask)):
            if e2 & 0x80:  # _PAGE_PSE: a 1 GiB leaf is hugetlb, which Pss leaves out
                continue
            for e3 in present(table(e2 & pfn_mask)):
                if e3 & 0x80:  # a PMD leaf: a THP, the huge zero folio, or hugetlb
                    pfn = (e3 & pfn_mask & ~((2 << 20) - 1)) >> 12
                    if pfn != huge_zero and not rmap.folio_test_hugetlb(k, pfn):
                        account(pfn, 512)
                    continue
                for e4 in present(table(e3 & pfn_mask)):
                    pfn = (e4 & pfn_mask) >> 12
                    if pfn != zero_pfn and pfn < k.max_pfn:  # vm_normal_page: no zero page, no PFN map
                        account(pfn, 1)
    return total >> PSS_SHIFT >> 10


def _faults(w: Workload, proc: str) -> int:
    p = w.proc(proc)
    return sum(1 for f in getattr(w.k, "fault_log", ()) if getattr(f, "pid", None) == p.pid)
