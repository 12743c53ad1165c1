"""Running a scenario: :func:`run_scenario` boots the machine and runs the steps, one report line
each."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig
from mmintro.workload.api import Workload
from mmintro.workload.core import (
    ExpectationFailed,
    ScenarioError,
    ScenarioFailed,
    WorkloadError,
    _node_stat,
    _show,
    zone_label,
)
from mmintro.workload.files import _file_pages
from mmintro.workload.pages import WATERMARKS, Block, _reasons
from mmintro.workload.scenario import PROC_ACTIONS, Scenario, Step, _size

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


class StepReport(NamedTuple):
    """One line of a scenario run's log."""

    index: int
    """1-based step number."""
    action: str
    """The step's action (``alloc``, ``free``, ...)."""
    text: str
    """What happened, with the numbers measured."""


def _proc_of(w: Workload, a: dict[str, Any]) -> str:
    if "process" in a:
        return a["process"]
    if len(w.procs) == 1:
        return next(iter(w.procs))
    raise WorkloadError(f"say which process (processes: {', '.join(w.procs) or 'none'})")


def _human(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}"


def _run_proc_step(w: Workload, s: Step) -> str:
    a = s.args
    act = s.action
    sz = {k: _size(a[k]) for k in ("size", "start", "heap", "offset", "page_size", "grow", "shrink") if k in a}
    if act == "spawn":
        p = w.spawn(
            a["spawn"],
            comm=a.get("comm"),
            parent=a.get("parent"),
            heap=sz.get("heap", 0),
            cpu=a.get("cpu"),
            oom_score_adj=a.get("oom_score_adj"),
        )
        adj = f", oom_score_adj {a['oom_score_adj']}" if "oom_score_adj" in a else ""
        return f"spawn {a['spawn']}: pid {p.pid} comm {p.comm!r}, heap {_human(sz.get('heap', 0))}{adj}"
    if act == "fork":
        c = w.fork(a["fork"], a["parent"], cpu=a.get("cpu"))
        return f"fork {a['parent']} -> {a['fork']}: pid {c.pid}"
    if act == "thread":
        leader = _proc_of(w, a)
        t = w.thread(a["thread"], leader, cpu=a.get("cpu"))
        return f"thread {a['thread']} of {leader}: pid {t.pid}"
    if act == "brk":
        new = w.brk(a["brk"], sz["grow"] if "grow" in a else -sz["shrink"])
        heap = w.mappings[a["brk"]].get("heap")
        return f"brk {a['brk']}: break at {new:#x}, heap {_human(heap.length) if heap else 'empty'}"
    if act == "exec":
        p = w.exec(a["exec"], a["comm"], sz.get("heap", 0))
        return f"exec {a['comm']} by {a['exec']} (pid {p.pid}): a new mm, heap {_human(sz.get('heap', 0))}"
    if act == "exit":
        pid = w.proc(a["exit"]).pid
        w.exit(a["exit"])
        return f"exit {a['exit']} (pid {pid})"
    if act == "mmap":
        p = _proc_of(w, a)
        addr = w.mmap(
            p,
            a["mmap"],
            sz["size"],
            a.get("prot", "rw"),
            a.get("kind", "anon"),
            a.get("file"),
            sz.get("offset", 0),
            a.get("hugepage", False),
            sz.get("page_size"),
            a.get("shared", False),
        )
        extra = " MADV_HUGEPAGE" if a.get("hugepage") else ""
        return f"mmap {a['mmap']} in {p}: {a.get('kind', 'anon')} {_human(sz['size'])} {a.get('prot', 'rw')} at {addr:#x}{extra}"
    if act == "touch":
        p = _proc_of(w, a)
        faults = w.touch(
            p,
            a["touch"],
            a.get("access") == "write",
            sz.get("start", 0),
            sz.get("size"),
            a.get("every"),
            a.get("offset", 0),
            a.get("fraction"),
            a.get("count"),
            cpu=a.get("cpu"),
            populate=a.get("populate", False),
            until=a.get("until"),
        )
        kinds: dict[str, int] = {}
        for f in faults:
            kind = str(getattr(f, "kind", "populate"))
            kinds[kind] = kinds.get(kind, 0) + 1
        how = ", ".join(f"{k} {n}" for k, n in kinds.items()) or "none"
        end = f"; killed by the OOM killer (pid {w.killed[p]})" if p in w.killed else ""
        return f"touch {a['touch']} in {p} ({a.get('access', 'read')}): {len(faults)} faults ({how}){end}"
    if act == "munmap":
        p = _proc_of(w, a)
        w.munmap(p, a["munmap"], sz.get("start", 0), sz.get("size"))
        return f"munmap {a['munmap']} in {p}"
    if act == "mprotect":
        p = _proc_of(w, a)
        w.mprotect(p, a["mprotect"], a["prot"], sz.get("start", 0), sz.get("size"))
        return f"mprotect {a['mprotect']} in {p}: {a['prot'] or 'none'}"
    if act == "mbind":
        p = _proc_of(w, a)
        w.mbind(p, a["mbind"], a["policy"], a.get("nodes", []), sz.get("start", 0), sz.get("size"))
        return f"mbind {a['mbind']} in {p}: {a['policy']} {a.get('nodes', [])}"
    if act == "set_mempolicy":
        w.set_mempolicy(a["set_mempolicy"], a["policy"], a.get("nodes", []))
        return f"set_mempolicy {a['set_mempolicy']}: {a['policy']} {a.get('nodes', [])}"
    if act == "swapon":
        d = w.swapon(a["swapon"], sz["size"], a.get("priority"))
        return f"swapon {d.path}: {d.pages} pages, priority {d.prio}"
    if act == "create_file":
        w.create_file(a["create_file"], a["path"], sz.get("size", 0))
        return f"create_file {a['create_file']}: {a['path']} ({_human(sz.get('size', 0))})"
    if act in ("read", "write"):
        fn = w.read if act == "read" else w.write
        fn(a[act], sz.get("start", 0), sz.get("size"), proc=a.get("process"))
        return f"{act} {a[act]}: {_file_pages(w, a[act])} pages cached, nr_dirty {_node_stat(w, 'NR_FILE_DIRTY')}"
    if act == "writeback":
        before = _node_stat(w, "NR_FILE_DIRTY")
        n = w.writeback(a["writeback"] == "all", a.get("complete", 1.0))
        return (
            f"writeback ({a['writeback']}): {n} pages written, nr_dirty {before} -> "
            f"{_node_stat(w, 'NR_FILE_DIRTY')}, nr_writeback {_node_stat(w, 'NR_WRITEBACK')}"
        )
    if act == "sysctl":
        w.sysctl(a["sysctl"], a["value"])
        return f"sysctl {a['sysctl']} = {a['value']}"
    raise AssertionError(act)


# -- running -------------------------------------------------------------------------------
class ScenarioRun(NamedTuple):
    """A finished scenario run."""

    kernel: Kernel
    """The simulated kernel, ready for :func:`mmintro.snapshot.writer.save`."""
    workload: Workload
    """The workload, with its live tagged blocks."""
    reports: list[StepReport]
    """One line per step, with what it measured."""


def _running_as(w: Workload, s: Step) -> Any:
    """The step's process is ``current`` while the step runs (psi.running): a memory stall
    deep inside it (direct reclaim, a thrashing refault) stalls that process, as PSI sees it."""
    import contextlib

    a = s.args
    name = a.get("process") if s.action in ("touch", "read", "write", "mmap", "munmap", "mprotect") else None
    if name is None and s.action in ("touch", "mmap") and len(w.procs) == 1:
        name = next(iter(w.procs))
    p = w.procs.get(name) if name else None
    psi = None
    try:
        from mmintro.kernel import psi
    except ImportError:
        pass
    if p is None or psi is None or not getattr(p, "task", None):
        return contextlib.nullcontext()
    return psi.running(w.k, p.task)


#: ``(name, kernel) -> the files written``: what a ``snapshot = NAME`` step calls to write the
#: kernel as it is at that step (``mmintro simulate`` writes OUTPUT-NAME.vmcore/.vmlinux with
#: :func:`mmintro.snapshot.writer.save_unchanged`); it must leave the kernel as it was.
SnapshotWriter = Callable[[str, "Kernel"], Sequence["str | os.PathLike[str]"]]


def _snapshot_step(w: Workload, s: Step, write: SnapshotWriter | None) -> str:
    """A part-way snapshot: the caller's writer, else nothing written (said in the report)."""
    name = s.args["snapshot"]
    if write is None:
        return f"snapshot {name}: not written (this run has no snapshot writer: no output)"
    try:
        paths = write(name, w.k)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        raise WorkloadError(f"writing snapshot {name!r}: {e.strerror or e}{where}") from None
    return f"snapshot {name}: {', '.join(os.fspath(p) for p in paths)}"


def _run_step(w: Workload, s: Step, snapshot: SnapshotWriter | None = None) -> str:
    a = s.args
    if s.action == "snapshot":
        return _snapshot_step(w, s, snapshot)
    if s.action in PROC_ACTIONS:
        with _running_as(w, s):
            return _run_proc_step(w, s)
    flags = a.get("flags", "GFP_KERNEL")
    order = a.get("order", 0)
    common = {
        "node": a.get("node"),
        "nodemask": a.get("nodemask"),
        "interleave": a.get("interleave"),
        "cpu": a.get("cpu"),
    }
    if s.action == "alloc":
        r = w.alloc(a["alloc"], order, flags, count=a.get("count"), until=a.get("until"), zone=a.get("zone"), **common)
        where: dict[str, int] = {}
        for b in r.blocks:
            key = f"Node {b.nid} {b.zone}"
            where[key] = where.get(key, 0) + 1
        spread = ", ".join(f"{k} {n}" for k, n in where.items()) or "none"
        stop = "" if r.stop == "count" else f"; stopped: {r.stop}"
        if r.stop == "failed":
            stop += f" ({_reasons(r.failure)})"
        if r.stop in WATERMARKS:
            z = w.zone(a["zone"], a.get("node"))
            stop += (
                f" ({zone_label(z)} free {z.free_pages} <= {r.stop} {page_alloc.wmark_pages(z, WATERMARKS[r.stop])})"
            )
        return f"alloc {a['alloc']}: {len(r.blocks)} blocks of order {order} {flags} ({spread}){stop}"
    if s.action == "free":
        freed = w.free(
            a["free"],
            every=a.get("every"),
            offset=a.get("offset", 0),
            fraction=a.get("fraction"),
            count=a.get("count"),
            cpu=a.get("cpu"),
        )
        return (
            f"free {a['free']}: {len(freed)} blocks ({sum(1 << b.order for b in freed)} pages), "
            f"{len(w.tags[a['free']])} left"
        )
    if s.action == "kmalloc":
        what = f"kmem_cache_alloc({a['cache']})" if "cache" in a else f"kmalloc({a['size']})"
        got = w.kmalloc(
            a["kmalloc"],
            size=a.get("size"),
            cache=a.get("cache"),
            gfp=flags,
            count=a.get("count", 1),
            node=a.get("node"),
            cpu=a.get("cpu"),
            caller=a.get("caller", "mmintro_workload_kmalloc"),
        )
        return f"kmalloc {a['kmalloc']}: {len(got)} x {what} {flags}, {len(w.objects[a['kmalloc']])} live"
    if s.action == "vmalloc":
        got = w.vmalloc(
            a["vmalloc"],
            a["size"],
            count=a.get("count", 1),
            node=a.get("node"),
            zero=a.get("zero", False),
            cpu=a.get("cpu"),
            caller=a.get("caller", "mmintro_workload_vmalloc"),
        )
        return f"vmalloc {a['vmalloc']}: {len(got)} areas of {a['size']} bytes, {len(w.objects[a['vmalloc']])} live"
    if s.action in ("kfree", "vfree"):
        fn = w.kfree if s.action == "kfree" else w.vfree
        n = fn(
            a[s.action],
            every=a.get("every"),
            offset=a.get("offset", 0),
            fraction=a.get("fraction"),
            count=a.get("count"),
            cpu=a.get("cpu"),
        )
        return f"{s.action} {a[s.action]}: {n} freed, {len(w.objects[a[s.action]])} left"
    if s.action == "on_cpu":
        w.on_cpu(a["on_cpu"])
        return f"on_cpu {a['on_cpu']} (node {w.k.numa_node_id()})"
    if s.action == "drain":
        before = sum(p.count for zs in w.k.zones for z in zs for p in z.pcp)
        w.drain()
        return f"drain: {before} pages from the pcp lists to the buddy lists"
    if s.action == "expect_alloc":
        succeeds = a["expect_alloc"] == "succeeds"
        res = w.expect_alloc(
            succeeds, order, flags, reason=a.get("reason"), zone=a.get("zone"), tag=a.get("tag", "expect"), **common
        )
        if isinstance(res, Block):
            return f"expect order-{order} {flags} succeeds: pfn {res.pfn:#x} from Node {res.nid} {res.zone}: ok"
        return f"expect order-{order} {flags} fails: {_reasons(res)}: ok"
    if s.action == "expect":
        seen = w.expect(s.condition or a["expect"], zone=a.get("zone"), node=a.get("node"))
        where = f" on {zone_label(w.zone(a['zone'], a.get('node')))}" if "zone" in a else ""
        return f"expect {a['expect']}{where}: {_show(seen)}: ok"
    raise AssertionError(s.action)


def run_scenario(
    sc: Scenario,
    config: MachineConfig | None = None,
    progress: Callable[[str, float], None] | None = None,
    snapshot: SnapshotWriter | None = None,
) -> ScenarioRun:
    """Boot ``config`` (default: the scenario's machine) and run every step.  Raises
    :class:`ScenarioFailed` when an expectation does not hold, :class:`ScenarioError` when a
    step cannot run; both name the file, line and step.  A ``snapshot = NAME`` step calls
    ``snapshot(NAME, kernel)``, which writes the snapshot and returns the files; without it the
    step writes nothing and its report says so."""
    from mmintro.kernel.machine import boot

    step_progress = progress or (lambda _m, _f: None)
    config = config or sc.config()
    config.validate()
    sc.check(config)
    k = boot(config, progress=lambda m, f: step_progress(m, 0.5 * f))
    w = Workload(k)
    reports = []
    n = max(1, len(sc.steps))
    for s in sc.steps:
        step_progress(f"{sc.name}: step {s.index}/{len(sc.steps)} {s.action}", 0.5 + 0.5 * (s.index - 1) / n)
        try:
            text = _run_step(w, s, snapshot)
            if s.args.get("note"):
                text += f"  -- {s.args['note']}"
        except ExpectationFailed as e:
            raise ScenarioFailed(f"{sc.where(s, s.action)}: {e}") from None
        except WorkloadError as e:
            raise ScenarioError(f"{sc.where(s, s.action)}: {e}") from None
        reports.append(StepReport(s.index, s.action, text))
    step_progress(f"{sc.name}: done", 1.0)
    return ScenarioRun(k, w, reports)
