"""Workloads: drive the simulated kernel through events, deterministically by seed.

Two layers, one above the other:

* :class:`Workload` — a Python API over a booted :class:`~mmintro.kernel.machine.Kernel`:
  ``alloc`` blocks under a tag (a count, or *until* the allocator refuses / a zone reaches a
  watermark / a block lands off its preferred node), ``free`` all, every n-th or a random
  fraction of a tag, ``on_cpu``, ``drain``, slab and vmalloc objects, processes (``spawn``,
  ``fork``, ``exit``) with tagged mappings (``mmap``, ``touch``, ``munmap``, ``mprotect``,
  ``mbind``), files (``create_file``, ``read``, ``write``, ``writeback``), ``sysctl``, and
  ``expect_alloc`` / ``expect`` checks that raise :class:`ExpectationFailed` when the kernel
  does not behave as claimed.  Every random choice comes from ``kernel.rng`` (seeded from
  ``MachineConfig.seed``).
* Scenario files (TOML, read with :mod:`tomllib`): a ``[machine]`` table and an ordered list
  of ``[[step]]`` tables, each naming one action with its arguments::

      [machine]
      ram = "4G"

      [[step]]
      alloc = "slabs"            # the tag
      order = 3
      flags = "GFP_KERNEL"
      until = "exhausted"

      [[step]]
      free = "slabs"
      every = 2

      [[step]]
      expect_alloc = "fails"
      order = 4
      reason = "fragmentation"
      zone = "Normal"

  :func:`load_scenario` checks the whole file before anything runs, and every error is one
  line naming the file, the line and the step: ``fragmented.toml:41: step 3 (alloc): order
  11 is outside 0..10``.  :func:`run_scenario` boots the machine and runs the steps.

Step reference (every step may also have ``note = "..."``, shown in the run's log):

=================  ==================================================================
``alloc = TAG``    ``order`` (0), ``flags`` ("GFP_KERNEL"), ``count`` (1) or ``until`` =
                   "exhausted" | "miss" | "min"/"low"/"high" (with ``zone``); ``node``
                   (preferred node), ``nodemask`` ([0, 1]), ``interleave`` (true or
                   [nodes]), ``cpu``.  A ``count`` without ``until`` must all succeed.
``free = TAG``     all blocks; or ``every`` (+ ``offset``) in allocation order; or a
                   random ``fraction`` / ``count`` (seeded); ``cpu``.
``on_cpu = N``     run the following steps on CPU N.
``drain = true``   drain_all_pages(): every pcp list back to the buddy lists.
``expect_alloc``   "fails" | "succeeds", with the ``alloc`` request keys; ``reason`` =
                   "watermark" | "fragmentation" and ``zone`` (whose verdict, or where
                   the block must come from); ``tag`` keeps a block ("expect").
``expect = EXPR``  an expression on ``zone`` (+ ``node``): comparisons, and/or/not,
                   + - * / // %, and the names free_pages managed present spanned min
                   low high boost nr_free[o] lowmem_reserve[z] nr_reserved_highatomic
                   nr_free_highatomic pcp_count numa_hit numa_miss numa_foreign
                   numa_interleave_hit numa_local numa_other failures, free_blocks(o)
                   (free blocks of order >= o), blocks('tag') pages('tag')
                   blocks_here('tag') pages_here('tag') missed('tag') (blocks off
                   their preferred node).
=================  ==================================================================

Processes, mappings and files (sizes are bytes or strings such as ``"16M"``; a step that
names a mapping takes ``process = NAME`` unless only one process exists):

===================  ================================================================
``spawn = NAME``     fork+exec a process: ``comm`` (NAME), ``parent`` (a process, else
                     init), ``heap`` (brk growth), ``cpu``, ``oom_score_adj``
                     (-1000..1000, as written to /proc/PID/oom_score_adj).  Mappings
                     ``heap`` (the brk area: the exec'd program's initial heap +
                     growth) and ``stack`` are tagged.
``mmap = TAG``       ``size``, ``prot`` ("rw"), ``kind`` = "anon" | "private" |
                     "shared" (a ``file`` mapping, at ``offset``) | "hugetlb"
                     (``page_size`` "2M"/"1G", ``shared = true`` for MAP_SHARED) |
                     "shmem" (MAP_SHARED|MAP_ANONYMOUS: a "/dev/zero (deleted)"
                     tmpfs file); ``hugepage = true`` madvises MADV_HUGEPAGE.
``touch = TAG``      page faults on the mapping: ``access`` = "read" | "write";
                     [``start``, ``start+size``) of it, all pages, ``every`` n-th
                     (+ ``offset``), or a seeded ``fraction`` / ``count``;
                     ``populate = true``: the whole range by mm_populate;
                     ``until = "oom"``: page by page until the OOM killer kills the
                     process (it fails if it is not killed).  A process the OOM
                     killer kills is gone: a later step naming it is an error.
``fork = NAME``      ``parent`` forks; the child inherits the mapping tags.
``thread = NAME``    ``process`` (the thread group's leader) clones a thread
                     (pthread_create): it shares the leader's mm and mapping tags;
                     the leader's exit ends its threads too.
``exit = NAME``      the process exits (its mm is torn down).
``brk = NAME``       ``grow`` or ``shrink`` = SIZE: brk(2) (the ``heap`` tag follows).
``exec = NAME``      execve(2) of ``comm`` (``heap`` grown after): a new mm; the
                     mapping tags start again (``heap``, ``stack``).
``munmap = TAG``     ``start``/``size`` (default: all of it); ``mprotect = TAG`` with
                     ``prot``; ``mbind = TAG`` with ``policy`` and ``nodes``.
``set_mempolicy``    ``= NAME`` with ``policy`` (default, bind, preferred, interleave,
                     local) and ``nodes``.
``create_file``      ``= TAG`` with ``path`` ("/data/log") and ``size``.
``read``/``write``   ``= TAG`` (a file): ``start``, ``size`` (default: to i_size),
                     ``process`` (the task doing it; default the idle task).
``writeback``        "all" | "background": the flusher writes dirty pages back.
``sysctl = NAME``    ``value``: vm.nr_hugepages, hugepages-1048576kB, vm.dirty_ratio,
                     vm.dirty_background_ratio, vm.dirty_bytes,
                     vm.dirty_background_bytes, transparent_hugepage ("always" ...),
                     vm.swappiness, vm.compact_memory (1: compact every zone), vm.compaction_proactiveness
                     (0..100; non-zero runs kcompactd's proactive compaction),
                     vm.extfrag_threshold (0..1000).
===================  ================================================================

Expectations on processes and files (pages unless said): rss('p') rss_anon('p')
rss_file('p') rss_shmem('p') (the exact sum of the percpu rss counters), total_vm('p') map_count('p')
pgtables_bytes('p') faults('p') (the fault log), pss('p') (kB, as smaps_rollup's Pss), file_pages('f') (mapping->nrpages),
node_stat('NR_...') (summed over nodes), nr_dirty nr_writeback nr_file_pages dirty_thresh
bg_thresh throttled flusher_wakeups hugepages_total hugepages_free hugepages_rsvd hugepages_surp
hugepages_1g_total hugepages_1g_free anon_thp; the OOM killer: killed('p') (1 once the OOM killer
killed p), oom_score('p') and oom_score_adj('p') (as /proc/PID/... print them), oom_kills (the
vm event oom_kill).  Compaction: fragindex(o) (a zone's fragmentation index,
-1000..1000), migrated (folios compaction moved; migrated_anon: the anonymous ones),
mapping_errors('p') (present PTEs of p onto free or unmapped pages, migrated pages rmap does
not find where p maps them, or whose file bytes differ) and migrated_mapped('p') (how many of
p's pages were migrated).

A zone is ``"Normal"`` (on the step's ``node``, else the current CPU's node) or
``"Node 1 Normal"``.  Watermarks read as /proc/zoneinfo prints them (boost included).

This module is a driver above the kernel model (like a test module loaded into a running
kernel), not a mechanism of mm/, so it lives beside ``mmintro/kernel`` rather than in it (whose
source also keys the default machine's snapshot cache, which a workload does not shape); it
uses only the kernel model's entry points -- the allocator's (``alloc_pages``,
``alloc_pages_interleave``, ``free_pages``, ``drain_all_pages``), SLUB's and vmalloc's, and for
processes ``fork.spawn_process`` / ``do_fork``, ``exit.do_exit``, ``mmap.do_mmap`` /
``do_munmap``, ``mprotect.do_mprotect``, ``mempolicy.do_mbind`` / ``do_set_mempolicy``,
``memory.handle_mm_fault`` / ``mm_populate`` (a page is faulted only where ``memory.walk``
finds no suitable entry, as the MMU would), ``filemap.mmap_file`` / ``filemap_read`` /
``filemap_write``, ``page_writeback.wb_writeback`` / ``wb_workfn``, ``hugetlb.hugetlb_mmap`` /
``set_nr_hugepages``, ``huge_memory.madvise_hugepage`` / ``set_thp_mode`` -- and reads the
kernel's books (zones, mm_struct, rss_stat, node counters, hstates, the fault and throttle
logs).
"""

from __future__ import annotations

import ast
import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mmintro.arch.x86 import _PAGE_PRESENT
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig, parse_size

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel
    from mmintro.kernel.mm_init import ZoneState

__all__ = [
    "SCENARIO_DIR",
    "AllocResult",
    "Block",
    "ExpectationFailed",
    "Scenario",
    "ScenarioError",
    "ScenarioFailed",
    "ScenarioRun",
    "Step",
    "StepReport",
    "Workload",
    "WorkloadError",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
    "shipped_scenarios",
]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
WATERMARKS = {"min": 0, "low": 1, "high": 2}
UNTIL = ("exhausted", "miss", *WATERMARKS)
REASONS = ("watermark", "fragmentation")
NUMA_EVENTS = {
    "numa_hit": page_alloc.NUMA_HIT,
    "numa_miss": page_alloc.NUMA_MISS,
    "numa_foreign": page_alloc.NUMA_FOREIGN,
    "numa_interleave_hit": page_alloc.NUMA_INTERLEAVE_HIT,
    "numa_local": page_alloc.NUMA_LOCAL,
    "numa_other": page_alloc.NUMA_OTHER,
}


# -- errors --------------------------------------------------------------------------------
class WorkloadError(ValueError):
    """A request the workload cannot carry out: an unknown tag or zone, a bad argument."""


class ExpectationFailed(WorkloadError):
    """The simulated kernel did not behave as an expectation claims."""


class ScenarioError(ValueError):
    """A scenario that cannot be read or run; its message is one line,
    ``FILE[:LINE]: step N (action): what is wrong``."""


class ScenarioFailed(ScenarioError):
    """A scenario whose expectation did not hold (or whose counted allocation failed)."""


# -- results -------------------------------------------------------------------------------
class Block(NamedTuple):
    """One live block the workload allocated."""

    pfn: int
    """First page frame number of the block (``page_to_pfn()`` of the head)."""
    order: int
    """Its order: the block is ``1 << order`` pages."""
    nid: int
    """Node of the zone the block came from."""
    zone: str
    """Name of that zone (``DMA``, ``DMA32``, ``Normal``)."""
    preferred: int
    """The node the request preferred (for an interleaved one, the node interleave chose)."""


class AllocResult(NamedTuple):
    """What one :meth:`Workload.alloc` call did."""

    blocks: list[Block]
    """The blocks allocated, in allocation order."""
    stop: str
    """Why it stopped: ``count`` (all allocated), ``failed`` (the allocator refused),
    ``min``/``low``/``high`` (the zone reached that watermark), ``miss`` (a block landed off
    its preferred node) or ``bound`` (the loop's bound was reached first)."""
    failure: page_alloc.AllocFailure | None
    """The allocator's report of the refused request, when ``stop == 'failed'``."""


class StepReport(NamedTuple):
    """One line of a scenario run's log."""

    index: int
    """1-based step number."""
    action: str
    """The step's action (``alloc``, ``free``, ...)."""
    text: str
    """What happened, with the numbers measured."""


# -- zone naming ---------------------------------------------------------------------------
_ZONE_RE = re.compile(r"^(?:node\s*(\d+)\s*,?\s*(?:zone\s+)?)?(\w+)$", re.IGNORECASE)


def _parse_zone(spec: str) -> tuple[int | None, str]:
    """``"Normal"`` or ``"Node 1 Normal"`` (also zoneinfo's ``"Node 1, zone Normal"``) ->
    (node or None, canonical zone name)."""
    m = _ZONE_RE.match(spec.strip())
    names = {n.lower(): n for n in ZONE_NAMES}
    if not m or m.group(2).lower() not in names:
        raise WorkloadError(f"unknown zone {spec!r} (zones: {', '.join(ZONE_NAMES)}; a node as 'Node 1 Normal')")
    return (int(m.group(1)) if m.group(1) is not None else None), names[m.group(2).lower()]


def zone_label(z: ZoneState) -> str:
    """``Node 0 Normal``, as warn_alloc and show_free_areas() name a zone."""
    return f"Node {z.nid} {z.name}"


# -- expressions of expect steps -----------------------------------------------------------
# Names an expect expression may use, evaluated on one zone (``zone``) of the running kernel.
_ZONE_VALUES: dict[str, Callable[[Workload, ZoneState], Any]] = {
    "free_pages": lambda w, z: z.free_pages,
    "managed": lambda w, z: z.managed,
    "present": lambda w, z: z.present,
    "spanned": lambda w, z: z.spanned,
    "min": lambda w, z: page_alloc.wmark_pages(z, 0),
    "low": lambda w, z: page_alloc.wmark_pages(z, 1),
    "high": lambda w, z: page_alloc.wmark_pages(z, 2),
    "boost": lambda w, z: z.watermark_boost,
    "nr_free": lambda w, z: list(z.nr_free),
    "lowmem_reserve": lambda w, z: list(z.lowmem_reserve),
    "nr_reserved_highatomic": lambda w, z: z.nr_reserved_highatomic,
    "nr_free_highatomic": lambda w, z: z.nr_free_highatomic,
    "pcp_count": lambda w, z: sum(p.count for p in z.pcp),
    **{name: functools.partial(lambda i, w, z: z.numa_events[i], i) for name, i in NUMA_EVENTS.items()},
}
# Functions: (number of arguments, needs a zone, implementation).
_FUNCS: dict[str, tuple[int, bool, Callable[..., int]]] = {
    "free_blocks": (1, True, lambda w, z, order: sum(z.nr_free[order:])),
    "blocks": (1, False, lambda w, z, tag: len(w.blocks(tag))),
    "pages": (1, False, lambda w, z, tag: sum(1 << b.order for b in w.blocks(tag))),
    "blocks_here": (1, True, lambda w, z, tag: sum(1 for b in w.blocks(tag) if (b.nid, b.zone) == (z.nid, z.name))),
    "pages_here": (
        1,
        True,
        lambda w, z, tag: sum(1 << b.order for b in w.blocks(tag) if (b.nid, b.zone) == (z.nid, z.name)),
    ),
    "missed": (1, False, lambda w, z, tag: sum(1 for b in w.blocks(tag) if b.nid != b.preferred)),
    "objects": (1, False, lambda w, z, tag: len(w.object_list(tag))),
    "cache_objects": (1, False, lambda w, z, name: _cache_objects(w, name)),
    # processes (pages, from the mm's books: get_mm_counter, total_vm, map_count)
    "rss": (
        1,
        False,
        lambda w, z, p: sum(_mm_counter(w, p, m) for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES")),
    ),
    "rss_anon": (1, False, lambda w, z, p: _mm_counter(w, p, "MM_ANONPAGES")),
    "rss_file": (1, False, lambda w, z, p: _mm_counter(w, p, "MM_FILEPAGES")),
    "rss_shmem": (1, False, lambda w, z, p: _mm_counter(w, p, "MM_SHMEMPAGES")),
    "total_vm": (1, False, lambda w, z, p: w.k.kmem.get(w.proc(p).mm, "mm_struct", "total_vm")),
    "map_count": (1, False, lambda w, z, p: w.k.kmem.get(w.proc(p).mm, "mm_struct", "map_count")),
    "pgtables_bytes": (1, False, lambda w, z, p: w.k.kmem.get(w.proc(p).mm, "mm_struct", "pgtables_bytes.counter")),
    "faults": (1, False, lambda w, z, p: _faults(w, p)),
    "pss": (1, False, lambda w, z, p: _pss(w, p)),
    # the OOM killer: killed('p') is 1 once the OOM killer killed p; oom_score /
    # oom_score_adj as /proc/PID/oom_score and oom_score_adj print them
    "killed": (1, False, lambda w, z, p: _killed(w, p)),
    "oom_score": (1, False, lambda w, z, p: _oom_score(w, p)),
    "oom_score_adj": (1, False, lambda w, z, p: _kmod("oom_kill", "OOM").oom_score_adj(w.k, w.proc(p).task)),
    # files and the node counters
    "file_pages": (1, False, lambda w, z, f: _file_pages(w, f)),
    "node_stat": (1, False, lambda w, z, item: _node_stat(w, item)),
    "vm_event": (1, False, lambda w, z, item: _vm_event(w, item)),
    "rss_swap": (1, False, lambda w, z, p: _mm_counter(w, p, "MM_SWAPENTS")),
    # compaction and migration (mmintro.kernel.compaction / migrate)
    "fragindex": (1, True, lambda w, z, order: _compaction_mod().fragmentation_index(z, order)),
    "mapping_errors": (1, False, lambda w, z, p: _mapping_errors(w, p)[0]),
    "migrated_mapped": (1, False, lambda w, z, p: _mapping_errors(w, p)[1]),
}
# What a function's quoted argument names (default: a block or object tag).
_ARG_KINDS = {
    "cache_objects": "cache",
    "node_stat": "item",
    "vm_event": "item",
    "file_pages": "file",
    **{
        f: "process"
        for f in (
            "rss",
            "rss_anon",
            "rss_file",
            "rss_shmem",
            "rss_swap",
            "total_vm",
            "map_count",
            "pgtables_bytes",
            "faults",
            "pss",
            "oom_score",
            "oom_score_adj",
            "mapping_errors",
            "migrated_mapped",
        )
    },
    "killed": "any_process",
}


def _cache_objects(w: Workload, name: str) -> int:
    """Allocated objects in the slab cache ``name`` (every caller, boot's included)."""
    from mmintro.kernel import slub

    try:
        s = slub.find_cache(w.k, name)
    except Exception:
        raise WorkloadError(f"no slab cache named {name!r}") from None
    return len(slub.live_objects(w.k, s))


_GLOBAL_VALUES: dict[str, Callable[[Workload], Any]] = {
    "failures": lambda w: len(w.k.alloc_failures),
    "oom_kills": lambda w: sum(c[w.k.T.const("OOM_KILL")] for c in w.k.vm_events),  # vm event oom_kill
    # the page cache and writeback (pages)
    "nr_dirty": lambda w: _node_stat(w, "NR_FILE_DIRTY"),
    "nr_writeback": lambda w: _node_stat(w, "NR_WRITEBACK"),
    "nr_file_pages": lambda w: _node_stat(w, "NR_FILE_PAGES"),
    "dirty_thresh": lambda w: _dirty_limits(w)[1],
    "bg_thresh": lambda w: _dirty_limits(w)[0],
    "throttled": lambda w: _throttled(w),
    "flusher_wakeups": lambda w: len(getattr(w.k, "flusher_wakeups", ())),
    # hugetlb pools (the default 2 MiB hstate; hugepages_1g_* for 1 GiB) and THP
    "hugepages_total": lambda w: _hstate_value(w, "nr_huge_pages"),
    "hugepages_free": lambda w: _hstate_value(w, "free_huge_pages"),
    "hugepages_rsvd": lambda w: _hstate_value(w, "resv_huge_pages"),
    "hugepages_surp": lambda w: _hstate_value(w, "surplus_huge_pages"),
    "hugepages_1g_total": lambda w: _hstate_value(w, "nr_huge_pages", 1 << 30),
    "hugepages_1g_free": lambda w: _hstate_value(w, "free_huge_pages", 1 << 30),
    "anon_thp": lambda w: _node_stat(w, "NR_ANON_THPS"),
    # swap (pages): si_swapinfo's total and free, slots in use, the swap cache
    "swap_total": lambda w: _swap(w)[0],
    "swap_free": lambda w: _swap(w)[1],
    "swap_used": lambda w: _swap(w)[0] - _swap(w)[1],
    "nr_swapcache": lambda w: _node_stat(w, "NR_SWAPCACHE"),
    # PSI: /proc/pressure/memory's totals (us), as psi_show computes them now
    "psi_some": lambda w: _psi_total(w, "some"),
    "psi_full": lambda w: _psi_total(w, "full"),
    "migrated": lambda w: len(w.k.__dict__.get("migrations", ())),
    "migrated_anon": lambda w: _migrated_anon(w),
}
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


_MAX_EXPECT_DEPTH = 200


class Condition:
    """An expect expression (``free_pages > managed / 4``, ``numa_miss == blocks("spill")``):
    comparisons, ``and``/``or``/``not``, arithmetic, ``nr_free[4]``, and the functions of
    :data:`_FUNCS`; parsed once, checked for unknown names, evaluated without ``eval``."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self.tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as e:
            raise WorkloadError(f"expect {text!r} is not an expression: {e.msg}") from None
        except (RecursionError, MemoryError):
            raise WorkloadError(f"expect {text[:60]!r}... is nested too deeply") from None
        depth, todo = 0, [(self.tree, 1)]  # (checking and evaluating recurse: bound the nesting)
        while todo:
            node, d = todo.pop()
            depth = max(depth, d)
            todo.extend((c, d + 1) for c in ast.iter_child_nodes(node))
        if depth > _MAX_EXPECT_DEPTH:
            raise WorkloadError(
                f"expect {text[:60]!r}... is nested too deeply ({depth} levels, at most {_MAX_EXPECT_DEPTH})"
            )
        self.needs_zone = False
        self.tags: list[str] = []
        self.processes: list[str] = []
        self.any_processes: list[str] = []  # live or killed (killed())
        self.files: list[str] = []
        self.names: list[str] = []
        self._check(self.tree)

    def _check(self, n: ast.AST) -> None:
        if isinstance(n, ast.Constant):
            if type(n.value) not in (int, float, str):
                raise WorkloadError(f"expect {self.text!r}: constant {n.value!r} is not a number")
        elif isinstance(n, ast.Name):
            if n.id in _ZONE_VALUES:
                self.needs_zone = True
            elif n.id not in _GLOBAL_VALUES:
                known = ", ".join(sorted([*_ZONE_VALUES, *_GLOBAL_VALUES]))
                raise WorkloadError(f"expect {self.text!r}: unknown name {n.id!r} (known: {known})")
            if n.id not in self.names:
                self.names.append(n.id)
        elif isinstance(n, ast.Call):
            name = n.func.id if isinstance(n.func, ast.Name) else None
            if name not in _FUNCS:
                raise WorkloadError(f"expect {self.text!r}: unknown function (known: {', '.join(sorted(_FUNCS))})")
            nargs, needs_zone, _f = _FUNCS[name]
            if len(n.args) != nargs or n.keywords:
                raise WorkloadError(f"expect {self.text!r}: {name}() takes {nargs} argument")
            self.needs_zone |= needs_zone
            arg = n.args[0]
            if name in ("free_blocks", "fragindex"):
                if not (isinstance(arg, ast.Constant) and type(arg.value) is int):
                    raise WorkloadError(f"expect {self.text!r}: {name}() takes an order")
            elif not (isinstance(arg, ast.Constant) and type(arg.value) is str):
                raise WorkloadError(f"expect {self.text!r}: {name}() takes a tag in quotes")
            else:
                kind = _ARG_KINDS.get(name, "tag")  # a slab cache or a node_stat_item is no tag
                {
                    "tag": self.tags,
                    "process": self.processes,
                    "file": self.files,
                    "any_process": self.any_processes,
                }.get(kind, []).append(arg.value)
        elif isinstance(n, ast.Compare):
            for op in n.ops:
                if type(op) not in _CMPOPS:
                    raise WorkloadError(f"expect {self.text!r}: comparison {type(op).__name__} is not supported")
            for c in (n.left, *n.comparators):
                self._check(c)
        elif isinstance(n, ast.BoolOp):
            for v in n.values:
                self._check(v)
        elif isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.Not, ast.USub)):
            self._check(n.operand)
        elif isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
            self._check(n.left)
            self._check(n.right)
        elif isinstance(n, ast.Subscript):
            self._check(n.value)
            self._check(n.slice)
        else:
            raise WorkloadError(f"expect {self.text!r}: {type(n).__name__} is not allowed in an expectation")

    def evaluate(self, w: Workload, z: ZoneState | None) -> tuple[Any, dict[str, Any]]:
        """(value, {name: value} of every name it read) on zone ``z``."""
        seen: dict[str, Any] = {}

        def ev(n: ast.AST) -> Any:
            if isinstance(n, ast.Constant):
                return n.value
            if isinstance(n, ast.Name):
                v = _GLOBAL_VALUES[n.id](w) if n.id in _GLOBAL_VALUES else _ZONE_VALUES[n.id](w, z)
                seen[n.id] = v
                return v
            if isinstance(n, ast.Call):
                name = n.func.id  # type: ignore[attr-defined]
                arg = ev(n.args[0])
                v = _FUNCS[name][2](w, z, arg)
                seen[f"{name}({arg!r})"] = v
                return v
            if isinstance(n, ast.Compare):
                left = ev(n.left)
                for op, c in zip(n.ops, n.comparators):
                    right = ev(c)
                    if not _CMPOPS[type(op)](left, right):
                        return False
                    left = right
                return True
            if isinstance(n, ast.BoolOp):
                vals = (ev(v) for v in n.values)
                return all(vals) if isinstance(n.op, ast.And) else any(vals)
            if isinstance(n, ast.UnaryOp):
                v = ev(n.operand)
                return (not v) if isinstance(n.op, ast.Not) else -v
            if isinstance(n, ast.BinOp):
                return _BINOPS[type(n.op)](ev(n.left), ev(n.right))
            if isinstance(n, ast.Subscript):
                seq, i = ev(n.value), ev(n.slice)
                if type(i) is not int or not -len(seq) <= i < len(seq):
                    raise WorkloadError(f"expect {self.text!r}: index {i!r} is out of range")
                return seq[i]
            raise AssertionError(n)  # _check refused every other node

        return ev(self.tree), seen


# -- the Python API ------------------------------------------------------------------------
class Workload:
    """Events on a booted kernel: ``alloc``/``free`` under tags, CPU switches, pcp drains,
    slab/vmalloc objects, processes and their mappings, files, tunables, and expectations.
    ``Workload(boot(MachineConfig(ram=2 << 30))).alloc("x", order=3, count=10)``; blocks stay
    in ``tags[tag]`` (allocation order) until freed; processes in ``procs`` (by name), their
    mappings in ``mappings[name][tag]``, files in ``files[tag]``.

    ``w.spawn("db", heap=32 << 20); w.touch("db", "heap", write=True); w.fork("w1", "db")``"""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.rng = kernel.rng
        self.tags: dict[str, list[Block]] = {}
        self.objects: dict[str, list[tuple[int, str]]] = {}  # tag -> [(address, "kmalloc"|"cache:NAME"|"vmalloc")]
        self.procs: dict[str, Any] = {}  # name -> fork.Process
        self.mappings: dict[str, dict[str, Mapping]] = {}  # process name -> tag -> Mapping
        self.files: dict[str, int] = {}  # tag -> struct file *
        self.threads: dict[str, str] = {}  # thread name -> its leader's name
        self.killed: dict[str, int] = {}  # process name -> pid, for the processes the OOM killer killed

    # -- where ---------------------------------------------------------------------------
    def zone(self, spec: str, node: int | None = None) -> ZoneState:
        """The populated zone named ``spec`` (``"Normal"``, ``"Node 1 DMA32"``); a bare name is
        on ``node``, else on the current CPU's node."""
        nid, name = _parse_zone(spec)
        nid = nid if nid is not None else (node if node is not None else self.k.numa_node_id())
        if not 0 <= nid < len(self.k.zones):
            raise WorkloadError(f"zone {spec!r}: node {nid} does not exist (the machine has {len(self.k.zones)})")
        z = self.k.zones[nid][ZONE_NAMES.index(name)]
        if not z.populated:
            raise WorkloadError(
                f"{zone_label(z)} has no memory on this machine "
                f"(ram {self.k.config.ram >> 20}M, {self.k.config.nodes} node(s))"
            )
        return z

    def blocks(self, tag: str) -> list[Block]:
        """The live blocks of ``tag``."""
        try:
            return self.tags[tag]
        except KeyError:
            raise WorkloadError(f"unknown tag {tag!r} (tags so far: {', '.join(self.tags) or 'none'})") from None

    @contextmanager
    def _cpu(self, cpu: int | None) -> Iterator[None]:
        if cpu is None:
            yield
            return
        old = self.k.current_cpu
        self.on_cpu(cpu)
        try:
            yield
        finally:
            self.k.on_cpu(old)

    # -- events --------------------------------------------------------------------------
    def on_cpu(self, cpu: int) -> None:
        """Run what follows on ``cpu`` (its pcp lists, its node)."""
        try:
            self.k.on_cpu(cpu)
        except ValueError as e:
            raise WorkloadError(str(e)) from None

    def drain(self) -> None:
        """drain_all_pages(NULL): every CPU's pcp pages back to the buddy lists."""
        page_alloc.drain_all_pages(self.k)

    def try_alloc(
        self,
        order: int = 0,
        gfp: int | str = "GFP_KERNEL",
        node: int | None = None,
        nodemask: Sequence[int] | None = None,
        interleave: bool | Sequence[int] | None = None,
    ) -> tuple[Block | None, page_alloc.AllocFailure | None]:
        """One ``alloc_pages`` (or MPOL_INTERLEAVE ``alloc_pages_mpol``) request: the block, or
        None and the allocator's failure report."""
        k = self.k
        mask = _gfp(gfp)
        _check_order(order)
        n_failures = len(k.alloc_failures)
        try:
            if interleave is not None and interleave is not False:
                if node is not None or nodemask is not None:
                    raise WorkloadError("interleave chooses the node itself: no node or nodemask with it")
                nodes = None if interleave is True else tuple(interleave)  # type: ignore[arg-type]
                pfn = k.alloc_pages_interleave(mask, order, nodes)
                preferred = k.il_prev.get(k.current_cpu, -1)
            else:
                nm = frozenset(nodemask) if nodemask is not None else None
                pfn = k.alloc_pages(mask, order, nid=node, nodemask=nm)
                preferred = node if node is not None else k.numa_node_id()
        except G.GfpError as e:
            raise WorkloadError(str(e)) from None
        if pfn is None:
            failure = k.alloc_failures[-1] if len(k.alloc_failures) > n_failures else None
            return None, failure
        z = page_alloc.page_zone(k, pfn)
        return Block(pfn, order, z.nid, z.name, preferred), None

    def alloc(
        self,
        tag: str,
        order: int = 0,
        gfp: int | str = "GFP_KERNEL",
        count: int | None = None,
        until: str | None = None,
        zone: str | None = None,
        node: int | None = None,
        nodemask: Sequence[int] | None = None,
        interleave: bool | Sequence[int] | None = None,
        cpu: int | None = None,
    ) -> AllocResult:
        """Allocate blocks of ``order`` with ``gfp`` and keep them under ``tag``.

        Without ``until``: exactly ``count`` blocks (default 1); a refusal raises
        :class:`ExpectationFailed`.  With ``until``, allocate while the condition does not
        hold, at most ``count`` blocks (default: as many as could exist):

        * ``"exhausted"``: until the allocator refuses a request;
        * ``"min"``/``"low"``/``"high"``: until ``zone`` has no more free pages than that
          watermark (or the allocator refuses);
        * ``"miss"``: until a block comes from a node other than the preferred one (that block
          is kept: it is the first of the spill).

        The refused request that ends an ``until`` loop is a real failure: warn_alloc records it
        in ``kernel.alloc_failures`` and, without ``__GFP_NOWARN``, in ``kernel.log``.
        """
        mask = _gfp(gfp)
        _check_order(order)
        if until is not None and until not in UNTIL:
            raise WorkloadError(f"until {until!r} is not one of {', '.join(UNTIL)}")
        if count is not None and (type(count) is not int or count < 1):
            raise WorkloadError(f"count {count!r} is not a positive integer")
        target = None
        if until in WATERMARKS:
            if zone is None:
                raise WorkloadError(f'until {until!r} needs the zone whose watermark it means (zone = "Normal")')
            target = self.zone(zone, node)
        elif zone is not None:
            raise WorkloadError('zone is only meaningful with until = "min", "low" or "high"')
        # No loop can allocate more blocks of this order than the machine manages.
        most = sum(z.managed for zs in self.k.zones for z in zs) >> order
        bound = count if count is not None else (1 if until is None else most + 1)
        out: list[Block] = []
        stop, failure = "bound", None
        with self._cpu(cpu):
            for _ in range(bound):
                if target is not None and target.free_pages <= page_alloc.wmark_pages(target, WATERMARKS[until]):
                    stop = until  # type: ignore[assignment]
                    break
                b, failure = self.try_alloc(order, mask, node, nodemask, interleave)
                if b is None:
                    stop = "failed"
                    break
                out.append(b)
                if until == "miss" and b.nid != b.preferred:
                    stop = "miss"
                    break
            else:
                if until is None:
                    stop = "count"
        self.tags.setdefault(tag, []).extend(out)
        if until is None and stop == "failed":
            raise ExpectationFailed(
                f"block {len(out) + 1} of {bound} (order {order}, {G.format_gfp(mask)}) "
                f"was refused: {_reasons(failure)}"
            )
        return AllocResult(out, stop, failure)

    def free(
        self,
        tag: str,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
    ) -> list[Block]:
        """``__free_pages`` blocks of ``tag``: all of them; or ``every`` n-th in allocation
        order starting at index ``offset``; or a random ``fraction`` / ``count`` of them (in a
        random order drawn from the kernel's seeded rng).  Returns the freed blocks."""
        blocks = self.blocks(tag)
        if not blocks:  # everything of the tag went back already: another free is a double free
            raise WorkloadError(f"tag {tag!r} has no live blocks: they were all freed already")
        if sum(x is not None for x in (every, fraction, count)) > 1:
            raise WorkloadError("free takes one of every, fraction, count")
        n = len(blocks)
        if every is not None:
            if type(every) is not int or every < 1 or not 0 <= offset < every:
                raise WorkloadError(f"every = {every!r}, offset = {offset!r}: need every >= 1 and 0 <= offset < every")
            chosen = list(range(offset, n, every))
        elif fraction is not None or count is not None:
            if fraction is not None:
                if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
                    raise WorkloadError(f"fraction {fraction!r} is not in (0, 1]")
                want = round(fraction * n)
            else:
                if type(count) is not int or count < 1:
                    raise WorkloadError(f"count {count!r} is not a positive integer")
                want = min(count, n)
            chosen = [int(i) for i in self.rng.permutation(n)[:want]]
        else:
            chosen = list(range(n))
        with self._cpu(cpu):
            for i in chosen:
                b = blocks[i]
                self.k.free_pages(b.pfn, b.order)
        gone = set(chosen)
        self.tags[tag] = [b for i, b in enumerate(blocks) if i not in gone]
        return [blocks[i] for i in chosen]

    # -- slab and vmalloc objects ------------------------------------------------------
    def _choose(self, n: int, every: int | None, offset: int, fraction: float | None, count: int | None) -> list[int]:
        if sum(x is not None for x in (every, fraction, count)) > 1:
            raise WorkloadError("free takes one of every, fraction, count")
        if every is not None:
            if type(every) is not int or every < 1 or not 0 <= offset < every:
                raise WorkloadError(f"every = {every!r}, offset = {offset!r}: need every >= 1 and 0 <= offset < every")
            return list(range(offset, n, every))
        if fraction is not None or count is not None:
            want = round(fraction * n) if fraction is not None else min(count, n)
            return [int(i) for i in self.rng.permutation(n)[:want]]
        return list(range(n))

    def object_list(self, tag: str) -> list[tuple[int, str]]:
        try:
            return self.objects[tag]
        except KeyError:
            raise WorkloadError(
                f"unknown object tag {tag!r} (tags so far: {', '.join(self.objects) or 'none'})"
            ) from None

    def kmalloc(
        self,
        tag: str,
        size: int | None = None,
        gfp: int | str = "GFP_KERNEL",
        count: int = 1,
        cache: str | None = None,
        node: int | None = None,
        cpu: int | None = None,
        caller: str = "mmintro_workload_kmalloc",
    ) -> list[int]:
        """``count`` kmalloc(size, gfp) (or kmem_cache_alloc from the named ``cache``),
        from the call site ``caller`` (a function symbol in the snapshot)."""
        from mmintro.kernel import slub

        mask = _gfp(gfp)
        if (size is None) == (cache is None):
            raise WorkloadError("kmalloc takes a size or a cache")
        s = None
        if cache is not None:
            try:
                s = slub.find_cache(self.k, cache)
            except Exception:
                raise WorkloadError(f"no slab cache named {cache!r}") from None
        out = []
        with self._cpu(cpu):
            for _ in range(count):
                if s is not None:
                    a = (
                        slub.kmem_cache_alloc_node(self.k, s, mask, node, caller=caller)
                        if node is not None
                        else slub.kmem_cache_alloc(self.k, s, mask, caller=caller)
                    )
                else:
                    a = (
                        slub.kmalloc_node(self.k, size, mask, node, caller=caller)
                        if node is not None
                        else slub.kmalloc(self.k, size, mask, caller=caller)
                    )
                if not a:
                    raise ExpectationFailed(f"kmalloc {tag}: allocation {len(out) + 1} of {count} failed")
                out.append(a)
        kind = f"cache:{cache}" if cache is not None else "kmalloc"
        self.objects.setdefault(tag, []).extend((a, kind) for a in out)
        return out

    def kfree(
        self,
        tag: str,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
    ) -> int:
        """kfree()/kmem_cache_free() objects of ``tag`` (all, every n-th, or a seeded random
        fraction/count); returns how many."""
        from mmintro.kernel import slub

        objs = self.object_list(tag)
        if not objs:  # all freed already: another free is a double free
            raise WorkloadError(f"tag {tag!r} has no live objects: they were all freed already")
        chosen = self._choose(len(objs), every, offset, fraction, count)
        with self._cpu(cpu):
            for i in chosen:
                a, kind = objs[i]
                if kind == "vmalloc":
                    raise WorkloadError(f"tag {tag!r} holds vmalloc areas: use vfree")
                if kind.startswith("cache:"):
                    slub.kmem_cache_free(self.k, slub.find_cache(self.k, kind[6:]), a)
                else:
                    slub.kfree(self.k, a)
        gone = set(chosen)
        self.objects[tag] = [o for i, o in enumerate(objs) if i not in gone]
        return len(chosen)

    def vmalloc(
        self,
        tag: str,
        size: int,
        count: int = 1,
        node: int | None = None,
        zero: bool = False,
        cpu: int | None = None,
        caller: str = "mmintro_workload_vmalloc",
    ) -> list[int]:
        """``count`` vmalloc(size) (vzalloc with ``zero``; _node variants with ``node``)."""
        from mmintro.kernel import vmalloc as vm

        out = []
        with self._cpu(cpu):
            for _ in range(count):
                if node is not None:
                    a = (vm.vzalloc_node if zero else vm.vmalloc_node)(self.k, size, node, caller)
                else:
                    a = (vm.vzalloc if zero else vm.vmalloc)(self.k, size, caller)
                if not a:
                    raise ExpectationFailed(f"vmalloc {tag}: allocation {len(out) + 1} of {count} failed")
                out.append(a)
        self.objects.setdefault(tag, []).extend((a, "vmalloc") for a in out)
        return out

    def vfree(
        self,
        tag: str,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
    ) -> int:
        from mmintro.kernel import vmalloc as vm

        objs = self.object_list(tag)
        if not objs:  # all freed already: another free is a double free
            raise WorkloadError(f"tag {tag!r} has no live objects: they were all freed already")
        chosen = self._choose(len(objs), every, offset, fraction, count)
        with self._cpu(cpu):
            for i in chosen:
                a, kind = objs[i]
                if kind != "vmalloc":
                    raise WorkloadError(f"tag {tag!r} holds slab objects: use kfree")
                vm.vfree(self.k, a)
        gone = set(chosen)
        self.objects[tag] = [o for i, o in enumerate(objs) if i not in gone]
        return len(chosen)

    # -- processes, mappings, files (mm/memory.c, kernel/fork.c, mm/filemap.c ...) ------------
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

    def mapping(self, proc: str, tag: str) -> Mapping:
        """The mapping ``tag`` of process ``proc`` (its own or inherited through fork)."""
        self.proc(proc)
        try:
            return self.mappings[proc][tag]
        except KeyError:
            raise WorkloadError(
                f"process {proc!r} has no mapping {tag!r} (its mappings: {', '.join(self.mappings[proc]) or 'none'})"
            ) from None

    def file(self, tag: str) -> int:
        """The ``struct file *`` the workload created under ``tag``."""
        try:
            return self.files[tag]
        except KeyError:
            raise WorkloadError(f"unknown file {tag!r} (files so far: {', '.join(self.files) or 'none'})") from None

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

    def swapon(self, path: str, size: int, priority: int | None = None) -> Any:
        """swapon(2) of a new swap file of ``size`` bytes at ``path`` (priority: the default
        --least_priority unless given, -1 meaning the default as swapon(8) has it)."""
        swapfile = _kmod("swapfile", "SWAP", "sys_swapon")
        try:
            return swapfile.sys_swapon(self.k, path, size, None if priority in (None, -1) else priority)
        except ValueError as e:
            raise WorkloadError(str(e)) from None

    def create_file(self, tag: str, path: str, size: int = 0) -> int:
        """A regular file ``path`` of ``size`` bytes (``inode.create_file``: inode, dentry,
        struct file; no page cached yet)."""
        inode = _kmod("inode", "FILE", "create_file")
        if tag in self.files:
            raise WorkloadError(f"file {tag!r} already exists")
        self.files[tag] = inode.create_file(self.k, path, size)
        return self.files[tag]

    def read(self, tag: str, start: int = 0, size: int | None = None, proc: str | None = None) -> Any:
        """read(2) of [start, start+size) of a file (``filemap.filemap_read``: the page cache
        fills on a miss), by process ``proc`` when given (else by the idle task)."""
        filemap = _kmod("filemap", "FILE", "filemap_read")
        f = self.file(tag)
        task = self.proc(proc).task if proc else None
        return filemap.filemap_read(self.k, f, start, self._file_len(f, start, size), task=task)

    def write(self, tag: str, start: int = 0, size: int | None = None, proc: str | None = None) -> Any:
        """write(2) of [start, start+size) of a file (``filemap.filemap_write``:
        generic_perform_write dirties the folios; balance_dirty_pages may throttle ``proc``,
        whose nr_dirtied and throttle records it is)."""
        filemap = _kmod("filemap", "FILE", "filemap_write")
        f = self.file(tag)
        task = self.proc(proc).task if proc else None
        return filemap.filemap_write(self.k, f, start, self._file_len(f, start, size), task=task)

    def _file_len(self, f: int, start: int, size: int | None) -> int:
        if size is not None:
            return size
        isize = self.k.kmem.get(self.k.kmem.get(f, "file", "f_inode"), "inode", "i_size")
        if isize <= start:
            raise WorkloadError(f"the file is {isize} bytes: nothing to read or write from {start}")
        return isize - start

    def writeback(self, everything: bool = True, complete: float = 1.0) -> int:
        """The flusher: ``wb_writeback`` for WB_REASON_SYNC (every dirty page), or
        ``wb_workfn`` (background writeback down to the background threshold, then the
        periodic flush of expired inodes).  ``complete``: the share of the folios whose I/O
        completes (the rest stay under writeback in the snapshot).  Returns pages written."""
        pw = _kmod("page_writeback", "FILE", "wb_writeback")
        done: bool | float = True if complete >= 1 else (False if complete <= 0 else complete)
        if everything:
            return pw.wb_writeback(self.k, "sync", None, done)
        return pw.wb_workfn(self.k, done)

    def sysctl(self, name: str, value: int | str) -> None:
        """Set a tunable: ``vm.nr_hugepages`` (the default 2 MiB pool),
        ``hugepages-1048576kB`` (the 1 GiB pool), ``vm.dirty_ratio``,
        ``vm.dirty_background_ratio``, ``vm.dirty_bytes``, ``vm.dirty_background_bytes``,
        ``transparent_hugepage`` ("always" | "madvise" | "never")."""
        if name not in SYSCTLS:
            raise WorkloadError(f"unknown tunable {name!r} (known: {', '.join(SYSCTLS)})")
        if name in ("vm.nr_hugepages", "hugepages-1048576kB"):
            hugetlb = _kmod("hugetlb", "HUGE", "set_nr_hugepages")
            hugetlb.set_nr_hugepages(self.k, 2 << 20 if name == "vm.nr_hugepages" else 1 << 30, int(value))
        elif name in COMPACTION_SYSCTLS:
            _compaction_sysctl(self, name, int(value))
        elif name == "vm.swappiness":
            self.k.write_int("vm_swappiness", int(value))  # proc_dointvec_minmax, 0..MAX_SWAPPINESS
        elif name == "transparent_hugepage":
            hm = _kmod("huge_memory", "HUGE")
            fn = getattr(hm, "set_thp_mode", None) or getattr(hm, "enabled_store", None)
            if fn is None:
                raise WorkloadError("mmintro.kernel.huge_memory has no set_thp_mode yet")
            fn(self.k, str(value))
        else:
            # mm/page-writeback.c dirty_ratio_handler / dirty_bytes_handler and the background
            # pair: writing one of a ratio/bytes pair zeroes the other, then
            # writeback_set_ratelimit() (for the foreground pair).
            pw = _kmod("page_writeback", "FILE", "writeback_set_ratelimit")
            pw.page_writeback_init(self.k)
            glob, other = {
                "vm.dirty_ratio": ("vm_dirty_ratio", "vm_dirty_bytes"),
                "vm.dirty_bytes": ("vm_dirty_bytes", "vm_dirty_ratio"),
                "vm.dirty_background_ratio": ("dirty_background_ratio", "dirty_background_bytes"),
                "vm.dirty_background_bytes": ("dirty_background_bytes", "dirty_background_ratio"),
            }[name]
            self.k.write_int(glob, int(value))
            self.k.write_int(other, 0)
            if glob in ("vm_dirty_ratio", "vm_dirty_bytes"):
                pw.writeback_set_ratelimit(self.k)

    # -- expectations ----------------------------------------------------------------------
    def expect_alloc(
        self,
        succeeds: bool,
        order: int = 0,
        gfp: int | str = "GFP_KERNEL",
        node: int | None = None,
        nodemask: Sequence[int] | None = None,
        interleave: bool | Sequence[int] | None = None,
        reason: str | None = None,
        zone: str | None = None,
        tag: str = "expect",
        cpu: int | None = None,
    ) -> Block | page_alloc.AllocFailure:
        """Make one request and check its outcome.  ``succeeds``: the block (kept under
        ``tag``) must come from ``zone`` if given.  Otherwise the request must fail, and if
        ``reason`` is given, ``zone`` (default: the first zone tried) must have refused for
        that reason ('watermark': below the watermark even for order 0; 'fragmentation':
        enough free pages, but no free block of the order)."""
        if reason is not None and reason not in REASONS:
            raise WorkloadError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
        if reason is not None and succeeds:
            raise WorkloadError("reason is only meaningful for an allocation expected to fail")
        mask = _gfp(gfp)
        want = self.zone(zone, node) if zone is not None else None
        with self._cpu(cpu):
            b, failure = self.try_alloc(order, mask, node, nodemask, interleave)
        what = f"order-{order} {G.format_gfp(mask)} allocation"
        if b is not None:
            self.tags.setdefault(tag, []).append(b)
            if not succeeds:
                raise ExpectationFailed(
                    f"{what} succeeded (pfn {b.pfn:#x} from Node {b.nid} {b.zone}), expected it to fail"
                )
            if want is not None and (b.nid, b.zone) != (want.nid, want.name):
                raise ExpectationFailed(f"{what} came from Node {b.nid} {b.zone}, expected {zone_label(want)}")
            return b
        if succeeds:
            raise ExpectationFailed(f"{what} failed: {_reasons(failure)}")
        if failure is None:
            raise ExpectationFailed(f"{what} failed without a warn_alloc report")
        if reason is not None:
            verdicts = dict(failure.zones)
            label = zone_label(want) if want is not None else (failure.zones[0][0] if failure.zones else None)
            if label is None or label not in verdicts:
                raise ExpectationFailed(f"{what} failed but {label or 'no zone'} was not tried ({_reasons(failure)})")
            if verdicts[label] != reason:
                raise ExpectationFailed(
                    f"{what} failed, but {label} refused for {verdicts[label]}, not {reason} ({_reasons(failure)})"
                )
        return failure

    def expect(self, condition: str | Condition, zone: str | None = None, node: int | None = None) -> dict[str, Any]:
        """Check an expression on ``zone`` (see :class:`Condition`); returns the values it
        read, or raises :class:`ExpectationFailed` showing them."""
        cond = condition if isinstance(condition, Condition) else Condition(condition)
        if cond.needs_zone and zone is None:
            raise WorkloadError(f'expect {cond.text!r} reads a zone: say which (zone = "Normal")')
        z = self.zone(zone, node) if zone is not None else None
        for t in cond.tags:
            if t not in self.objects:
                self.blocks(t)
        value, seen = cond.evaluate(self, z)
        if not value:
            where = f" on {zone_label(z)}" if z is not None else ""
            raise ExpectationFailed(f"expect {cond.text}{where} does not hold: {_show(seen)}")
        return seen


def _gfp(gfp: int | str) -> int:
    try:
        mask = G.parse_gfp(gfp)
        G.gfp_zone(mask)
        G.gfp_migratetype(mask)
    except G.GfpError as e:
        raise WorkloadError(str(e)) from None
    return mask


def _check_order(order: Any) -> None:
    if type(order) is not int or not 0 <= order <= page_alloc.MAX_PAGE_ORDER:
        raise WorkloadError(f"order {order!r} is outside 0..{page_alloc.MAX_PAGE_ORDER} (MAX_PAGE_ORDER)")


def _reasons(failure: page_alloc.AllocFailure | None) -> str:
    if failure is None:
        return "no report"
    if not failure.zones:
        return "no zone was eligible"
    return ", ".join(f"{z} {why}" for z, why in failure.zones)


def _show(seen: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in seen.items()) or "(no values)"


# -- processes: names and values -----------------------------------------------------------
PAGE_SIZE = 4096
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
SYSCTLS = (
    "vm.nr_hugepages",
    "hugepages-1048576kB",
    "vm.dirty_ratio",
    "vm.dirty_background_ratio",
    "vm.dirty_bytes",
    "vm.dirty_background_bytes",
    "transparent_hugepage",
    "vm.swappiness",
    "vm.compact_memory",
    "vm.compaction_proactiveness",
    "vm.extfrag_threshold",
)
THP_MODES = ("always", "madvise", "never")
# kernel/sysctl.c and mm/page-writeback.c: the ratio tunables are percentages
# (proc_dointvec_minmax with extra2 = one_hundred); a write outside is EINVAL.
SYSCTL_MAX = {
    "vm.dirty_ratio": 100,
    "vm.dirty_background_ratio": 100,
    "vm.swappiness": 200,
    "vm.compaction_proactiveness": 100,
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


def _page_up(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


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


def _kmod(name: str, owner: str, func: str | None = None) -> Any:
    """``mmintro.kernel.NAME`` (a mechanism another part of the simulator provides), or a
    one-line WorkloadError saying it is not there yet."""
    import importlib

    try:
        mod = importlib.import_module(f"mmintro.kernel.{name}")
    except ModuleNotFoundError:
        raise WorkloadError(f"this step needs mmintro.kernel.{name}, which the simulator does not have yet") from None
    except ImportError as e:
        raise WorkloadError(f"this step needs mmintro.kernel.{name}, which cannot be imported ({e})") from None
    if func is not None and not hasattr(mod, func):
        raise WorkloadError(f"this step needs mmintro.kernel.{name}.{func}, which the simulator does not have yet")
    return mod


def _optional_kmod(name: str) -> Any:
    try:
        import importlib

        return importlib.import_module(f"mmintro.kernel.{name}")
    except ImportError:
        return None


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


def _node_stat(w: Workload, item: str) -> int:
    """global_node_page_state(item): the sum over nodes of the simulator's node counters."""
    if not re.fullmatch(r"(NR|WORKINGSET|PG)[A-Z0-9_]+", item):
        raise WorkloadError(f"node_stat({item!r}): not a node_stat_item name (e.g. 'NR_FILE_DIRTY')")
    try:
        w.k.T.const(item)
    except LookupError:
        raise WorkloadError(f"node_stat({item!r}): the kernel has no node_stat_item {item}") from None
    return sum(d.get(item, 0) for d in w.k.node_vm_stat)


def _dirty_limits(w: Workload) -> tuple[int, int]:
    """(background threshold, dirty threshold) in pages, as global_dirty_limits() computes them."""
    pw = _kmod("page_writeback", "FILE")
    fn = getattr(pw, "global_dirty_limits", None)
    if fn is None:
        raise WorkloadError("mmintro.kernel.page_writeback has no global_dirty_limits yet")
    bg, thresh = fn(w.k)
    return int(bg), int(thresh)


def _hstate_value(w: Workload, field: str, page_size: int = 2 << 20) -> int:
    """A field of the hstate of ``page_size`` (nr_huge_pages, free_huge_pages, resv_huge_pages,
    surplus_huge_pages): the hugetlb books (mm/hugetlb.c's struct hstate, which the simulator
    writes into ``hstates[]`` at sync), 0 for a size without an hstate."""
    try:
        from mmintro.kernel import hugetlb

        return int(getattr(hugetlb.hstate_for_size(w.k, page_size), field))
    except ImportError:
        pass
    except (LookupError, ValueError):
        return 0
    k = w.k
    km = k.kmem
    order = (page_size // PAGE_SIZE).bit_length() - 1
    n = k.T.sizeof("struct hstate")
    hs = k.sym("hstates")
    for i in range(2):
        h = hs + i * n
        if km.get(h, "hstate", "order") == order:
            return km.get(h, "hstate", field)
    return 0


def _faults(w: Workload, proc: str) -> int:
    p = w.proc(proc)
    return sum(1 for f in getattr(w.k, "fault_log", ()) if getattr(f, "pid", None) == p.pid)


def _file_pages(w: Workload, tag: str) -> int:
    """mapping->nrpages of the file's address_space (its pages in the page cache)."""
    km = w.k.kmem
    inode = km.get(w.file(tag), "file", "f_inode")
    return km.get(km.get(inode, "inode", "i_mapping"), "address_space", "nrpages")


def _throttled(w: Workload) -> int:
    """balance_dirty_pages() throttling events recorded by the simulator."""
    log = getattr(w.k, "dirty_throttle_log", None)
    if log is None:
        log = getattr(w.k, "throttle_log", [])
    return len(log)


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


# -- scenario files ------------------------------------------------------------------------
_COMMON = {"note", "cpu"}
ACTIONS: dict[str, set[str]] = {
    "alloc": {"order", "flags", "count", "until", "zone", "node", "nodemask", "interleave"} | _COMMON,
    "free": {"every", "offset", "fraction", "count"} | _COMMON,
    "on_cpu": {"note"},
    "drain": {"note"},
    "expect_alloc": {"order", "flags", "node", "nodemask", "interleave", "reason", "zone", "tag"} | _COMMON,
    "expect": {"zone", "node", "note"},
    "kmalloc": {"size", "cache", "flags", "count", "node", "caller"} | _COMMON,
    "kfree": {"every", "offset", "fraction", "count"} | _COMMON,
    "vmalloc": {"size", "count", "node", "zero", "caller"} | _COMMON,
    "vfree": {"every", "offset", "fraction", "count"} | _COMMON,
    # processes, mappings, files
    "spawn": {"comm", "parent", "heap", "oom_score_adj"} | _COMMON,
    "fork": {"parent"} | _COMMON,
    "thread": {"process"} | _COMMON,
    "exit": {"note"},
    "exec": {"comm", "heap", "note"},
    "brk": {"grow", "shrink", "note"},
    "mmap": {"process", "size", "prot", "kind", "file", "offset", "hugepage", "page_size", "shared", "note"},
    "touch": {"process", "access", "start", "size", "every", "offset", "fraction", "count", "populate", "until"}
    | _COMMON,
    "munmap": {"process", "start", "size", "note"},
    "mprotect": {"process", "prot", "start", "size", "note"},
    "mbind": {"process", "policy", "nodes", "start", "size", "note"},
    "set_mempolicy": {"policy", "nodes", "note"},
    "create_file": {"path", "size", "note"},
    "swapon": {"size", "priority", "note"},
    "read": {"process", "start", "size", "note"},
    "write": {"process", "start", "size", "note"},
    "writeback": {"complete", "note"},
    "sysctl": {"value", "note"},
}
PROC_ACTIONS = (
    "spawn",
    "fork",
    "thread",
    "exit",
    "exec",
    "brk",
    "mmap",
    "touch",
    "munmap",
    "mprotect",
    "mbind",
    "set_mempolicy",
    "create_file",
    "swapon",
    "read",
    "write",
    "writeback",
    "sysctl",
)
MAPPING_ACTIONS = ("mmap", "touch", "munmap", "mprotect", "mbind")
MACHINE_KEYS = ("ram", "nodes", "cpus", "seed", "thp", "hugepages_2m", "hugepages_1g", "cmdline")
SECTIONS = ("scenario", "machine", "step")


class Step(NamedTuple):
    """One ``[[step]]`` of a scenario file."""

    index: int
    """1-based position in the file."""
    action: str
    """The action key (``alloc``, ``free``, ``on_cpu``, ``drain``, ``expect_alloc``, ``expect``)."""
    args: dict[str, Any]
    """Every key of the step (the action key holds its tag, CPU, outcome or expression)."""
    line: int | None
    """Line of the step's ``[[step]]`` header, if it could be found."""
    key_lines: dict[str, int]
    """Line of each key, where it could be found."""
    condition: Condition | None = None
    """An expect step's parsed expression."""


class Scenario(NamedTuple):
    """A parsed, checked scenario file."""

    name: str
    """The file's stem: the name ``mmintro simulate`` knows it by."""
    help: str
    """One-line description (``[scenario] help``)."""
    path: str
    """The file, as named when loaded (error messages start with it)."""
    machine: dict[str, int]
    """``[machine]`` values given (``ram`` in bytes, ``nodes``, ``cpus``, ``seed``)."""
    steps: list[Step]
    """The steps in order."""

    def config(self, **overrides: Any) -> MachineConfig:
        """MachineConfig defaults, then the file's ``[machine]``, then ``overrides`` not None."""
        values = {**self.machine, **{k: v for k, v in overrides.items() if v is not None}}
        return MachineConfig(**values)

    def where(self, step: Step, key: str | None = None) -> str:
        line = (step.key_lines.get(key) if key else None) or step.line
        return f"{_at(self.path, line)}: step {step.index} ({step.action})"

    def check(self, config: MachineConfig) -> None:
        """Refuse nodes and CPUs the machine does not have, before booting it."""
        for s in self.steps:
            a = s.args
            cpus = [a["cpu"]] if "cpu" in a else []
            if s.action == "on_cpu":
                cpus.append(a["on_cpu"])
            for cpu in cpus:
                if not 0 <= cpu < config.cpus:
                    key = "on_cpu" if s.action == "on_cpu" else "cpu"
                    raise ScenarioError(
                        f"{self.where(s, key)}: cpu {cpu} is not online (the machine has {config.cpus} CPUs)"
                    )
            for key in ("node", "nodemask", "interleave", "zone", "nodes"):
                if key not in a:
                    continue
                v = a[key]
                if key == "zone":
                    nid = _parse_zone(v)[0]
                    nodes = [] if nid is None else [nid]
                else:
                    nodes = [v] if type(v) is int else (list(v) if isinstance(v, list) else [])
                for nid in nodes:
                    if not 0 <= nid < config.nodes:
                        raise ScenarioError(
                            f"{self.where(s, key)}: node {nid} does not exist "
                            f"(the machine has {config.nodes} node{'s' if config.nodes > 1 else ''})"
                        )


def _tomllib() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ScenarioError("reading scenario files needs Python >= 3.11 (tomllib) or the tomli package") from None
    return tomllib


def _step_lines(text: str) -> list[tuple[int, dict[str, int]]]:
    """(header line, {key: line}) of every ``[[step]]`` table, by scanning the text."""
    out: list[tuple[int, dict[str, int]]] = []
    section = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("["):
            section = "step" if re.match(r"^\[\[\s*step\s*\]\]", line) else "other"
            if section == "step":
                out.append((no, {}))
            continue
        m = re.match(r'^"?([A-Za-z_][\w-]*)"?\s*=', line)
        if m and section == "step" and m.group(1) not in out[-1][1]:
            out[-1][1][m.group(1)] = no
    return out


def _at(path: str, line: int | None) -> str:
    """``FILE:LINE``, or ``FILE`` when the line is unknown."""
    return f"{path}:{line}" if line else path


def _section_line(text: str, name: str, key: str | None = None) -> int | None:
    inside = False
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("["):
            if inside and key:
                return None
            inside = bool(re.match(rf"^\[\s*{name}\s*\]", line))
            if inside and not key:
                return no
            continue
        if inside and key and re.match(rf'^"?{re.escape(key)}"?\s*=', line):
            return no
    return None


def parse_scenario(text: str, path: str | os.PathLike = "<scenario>", name: str | None = None) -> Scenario:
    """Parse and check scenario text; every problem is a one-line :class:`ScenarioError`."""
    path = os.fspath(path)
    name = name or Path(path).stem
    try:
        doc = _tomllib().loads(text)
    except RecursionError:
        raise ScenarioError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as e:  # tomllib.TOMLDecodeError: "... (at line 3, column 5)"
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        raise ScenarioError(f"{_at(path, int(m.group(1)) if m else None)}: not valid TOML: {e}") from None
    for key in doc:
        if key not in SECTIONS:
            hint = " (each step is a [[step]] table)" if key in ("steps", "stage") else ""
            raise ScenarioError(f"{path}: unknown table or key {key!r}{hint} (known: {', '.join(SECTIONS)})")
    meta = doc.get("scenario", {})
    if not isinstance(meta, dict) or set(meta) - {"help"}:
        bad = sorted(set(meta) - {"help"}) if isinstance(meta, dict) else meta
        raise ScenarioError(f"{_at(path, _section_line(text, 'scenario'))}: [scenario] takes only help, not {bad}")
    machine: dict[str, Any] = {}
    mt = doc.get("machine", {})
    if not isinstance(mt, dict):
        raise ScenarioError(f"{path}: machine must be a table ([machine])")
    for key, v in mt.items():
        at = _at(path, _section_line(text, "machine", key))
        if key not in MACHINE_KEYS:
            raise ScenarioError(f"{at}: [machine]: unknown key {key!r} (known: {', '.join(MACHINE_KEYS)})")
        try:
            if key == "ram":
                machine[key] = parse_size(v) if type(v) in (str, int) else _raise(v)
            elif key == "thp":
                machine[key] = v if v in THP_MODES else _raise(v)
            elif key == "cmdline":
                machine[key] = v if isinstance(v, str) else _raise(v)
            elif type(v) is not int:
                _raise(v)
            else:
                machine[key] = v
        except ValueError:
            raise ScenarioError(
                f"{at}: [machine]: {key} = {v!r} is not "
                f"{'a size (e.g. 4G)' if key == 'ram' else 'one of always, madvise, never' if key == 'thp' else 'a string (the kernel command line)' if key == 'cmdline' else 'an integer'}"
            ) from None
    try:
        MachineConfig(**machine).validate()
    except ValueError as e:
        raise ScenarioError(f"{_at(path, _section_line(text, 'machine'))}: [machine]: {e}") from None
    raw_steps = doc.get("step", [])
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        raise ScenarioError(f"{path}: steps must be [[step]] tables")
    lines = _step_lines(text)
    if len(lines) != len(raw_steps):
        lines = [(0, {})] * len(raw_steps)  # written some other way: no line numbers
    sc = Scenario(name, str(meta.get("help", "")), path, machine, [])
    defined = _Defined()
    for i, (raw, (line, key_lines)) in enumerate(zip(raw_steps, lines), 1):
        actions = [k for k in raw if k in ACTIONS]
        step = Step(i, actions[0] if actions else "?", dict(raw), line or None, key_lines)
        where = sc.where(step)
        if len(actions) != 1:
            what = "no action" if not actions else f"{len(actions)} actions ({', '.join(actions)})"
            raise ScenarioError(f"{where}: the step has {what}; it needs exactly one of {', '.join(ACTIONS)}")
        sc.steps.append(step._replace(condition=_check_step(sc, step, defined)))
    return sc


def _raise(v: Any) -> Any:
    raise ValueError(v)


def _check_step(sc: Scenario, s: Step, defined: set[str]) -> Condition | None:
    """Check one step's keys and values statically (tags known so far in ``defined``);
    returns an expect step's parsed expression."""
    a = s.args

    def fail(key: str | None, msg: str) -> None:
        raise ScenarioError(f"{sc.where(s, key)}: {msg}")

    allowed = ACTIONS[s.action]
    for key in a:
        if key != s.action and key not in allowed:
            fail(key, f"unknown key {key!r} for {s.action} (known: {', '.join(sorted(allowed))})")

    def want(key: str, ok: Callable[[Any], bool], what: str) -> None:
        if key in a and not ok(a[key]):
            fail(key, f"{key} = {a[key]!r} is not {what}")

    def is_int(v: Any) -> bool:
        return type(v) is int

    want("note", lambda v: isinstance(v, str), "a string")
    want("cpu", lambda v: is_int(v) and v >= 0, "a CPU number")
    want("node", lambda v: is_int(v) and v >= 0, "a node number")
    want(
        "nodemask",
        lambda v: isinstance(v, list) and v and all(is_int(n) and n >= 0 for n in v),
        "a list of node numbers",
    )
    want(
        "interleave",
        lambda v: v is True or (isinstance(v, list) and v and all(is_int(n) and n >= 0 for n in v)),
        "true or a list of node numbers",
    )
    want("count", lambda v: is_int(v) and v >= 1, "a positive integer")
    want("order", is_int, "an integer")
    if "order" in a and not 0 <= a["order"] <= page_alloc.MAX_PAGE_ORDER:
        fail("order", f"order {a['order']} is outside 0..{page_alloc.MAX_PAGE_ORDER} (MAX_PAGE_ORDER)")
    want("flags", lambda v: isinstance(v, str), 'a string of GFP flags ("GFP_KERNEL|__GFP_ZERO")')
    if "flags" in a:
        try:
            _gfp(a["flags"])
        except WorkloadError as e:
            fail("flags", str(e))
    if "zone" in a:
        want("zone", lambda v: isinstance(v, str), "a zone name")
        try:
            _parse_zone(a["zone"])
        except WorkloadError as e:
            fail("zone", str(e))
    if "interleave" in a and ("node" in a or "nodemask" in a):
        fail("interleave", "interleave chooses the node itself: no node or nodemask with it")
    if s.action in PROC_ACTIONS:
        _check_proc_step(sc, s, defined)  # type: ignore[arg-type]
        return None
    tagged = ("alloc", "free", "kmalloc", "kfree", "vmalloc", "vfree")
    tag = a[s.action] if s.action in tagged else a.get("tag")
    if (s.action in tagged or "tag" in a) and (not isinstance(tag, str) or not tag):
        fail(s.action if s.action in tagged else "tag", f"the tag must be a non-empty string, not {tag!r}")
    if s.action in ("kmalloc", "vmalloc"):
        want("size", lambda v: is_int(v) and v >= 1, "a size in bytes")
        want("caller", lambda v: isinstance(v, str) and v.isidentifier(), "a function name")
        if s.action == "kmalloc":
            want("cache", lambda v: isinstance(v, str) and v, "a slab cache name")
            if ("size" in a) == ("cache" in a):
                fail(None, "kmalloc takes a size (kmalloc) or a cache (kmem_cache_alloc)")
        else:
            want("zero", lambda v: isinstance(v, bool), "true or false")
            if "size" not in a:
                fail(None, "vmalloc needs a size")
        defined.add(tag)
    elif s.action in ("kfree", "vfree"):
        if tag not in defined:
            fail(
                s.action,
                f"unknown tag {tag!r} (tags allocated before this step: {', '.join(sorted(defined)) or 'none'})",
            )
        if sum(k in a for k in ("every", "fraction", "count")) > 1:
            fail(None, f"{s.action} takes one of every, fraction, count (none frees every object)")
        want("every", lambda v: is_int(v) and v >= 1, "a positive integer")
        want(
            "fraction",
            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
            "a fraction in (0, 1]",
        )

    if s.action == "alloc":
        want("until", lambda v: v in UNTIL, f"one of {', '.join(map(repr, UNTIL))}")
        until = a.get("until")
        if until in WATERMARKS and "zone" not in a:
            fail("until", f'until = {until!r} needs the zone whose watermark it means (zone = "Normal")')
        if "zone" in a and until not in WATERMARKS:
            fail("zone", 'zone is only meaningful with until = "min", "low" or "high"')
        defined.add(tag)
    elif s.action == "free":
        if tag not in defined:
            fail(
                "free", f"unknown tag {tag!r} (tags allocated before this step: {', '.join(sorted(defined)) or 'none'})"
            )
        if sum(k in a for k in ("every", "fraction", "count")) > 1:
            fail(None, "free takes one of every, fraction, count (none frees every block)")
        want("every", lambda v: is_int(v) and v >= 1, "a positive integer")
        want("offset", lambda v: is_int(v) and 0 <= v < a.get("every", 1), "an index below every")
        if "offset" in a and "every" not in a:
            fail("offset", "offset goes with every")
        want(
            "fraction",
            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
            "a fraction in (0, 1]",
        )
    elif s.action == "on_cpu":
        want("on_cpu", lambda v: is_int(v) and v >= 0, "a CPU number")
    elif s.action == "drain":
        want("drain", lambda v: v is True, "true")
    elif s.action == "expect_alloc":
        want("expect_alloc", lambda v: v in ("fails", "succeeds"), '"fails" or "succeeds"')
        want("reason", lambda v: v in REASONS, f"one of {', '.join(map(repr, REASONS))}")
        if "reason" in a and a["expect_alloc"] != "fails":
            fail("reason", 'reason is only meaningful with expect_alloc = "fails"')
        if tag is not None:
            defined.add(tag)
        elif a["expect_alloc"] == "succeeds":
            defined.add("expect")
    elif s.action == "expect":
        want("expect", lambda v: isinstance(v, str), "an expression in quotes")
        try:
            cond = Condition(a["expect"])
        except WorkloadError as e:
            fail("expect", str(e))
        if cond.needs_zone and "zone" not in a:
            fail("expect", f'{a["expect"]!r} reads a zone: say which (zone = "Normal")')
        for t in cond.tags:
            if t not in defined:
                fail(
                    "expect",
                    f"unknown tag {t!r} (tags allocated before this step: {', '.join(sorted(defined)) or 'none'})",
                )
        procs = getattr(defined, "procs", {})
        for p in cond.processes:
            if p not in procs:
                killed = getattr(defined, "killed", {})
                why = f" (killed by the OOM killer at step {killed[p]})" if p in killed else ""
                fail("expect", f"unknown process {p!r}{why} (processes at this step: {', '.join(procs) or 'none'})")
        for p in cond.any_processes:
            if p not in procs and p not in getattr(defined, "killed", {}):
                fail("expect", f"unknown process {p!r} (processes at this step: {', '.join(procs) or 'none'})")
        files = getattr(defined, "files", set())
        for f in cond.files:
            if f not in files:
                fail("expect", f"unknown file {f!r} (files so far: {', '.join(sorted(files)) or 'none'})")
        return cond
    return None


# -- process steps: checking and running ---------------------------------------------------
class _Defined(set):
    """The tags a scenario has defined before a step: blocks and objects (the set itself),
    processes with their mapping tags, and files."""

    def __init__(self) -> None:
        super().__init__()
        self.procs: dict[str, set[str]] = {}
        self.files: set[str] = set()
        self.threads: dict[str, str] = {}  # thread -> leader (they share one set of mapping tags)
        self.killed: dict[str, int] = {}  # process -> the step (touch until "oom") that ended it


def _size(v: Any) -> int | None:
    """A size in bytes: an integer or a string such as "16M"; None if it is neither."""
    if type(v) is int and v >= 0:
        return v
    if isinstance(v, str):
        try:
            n = parse_size(v)
        except ValueError:
            return None
        return n if n >= 0 else None
    return None


def _check_proc_step(sc: Scenario, s: Step, defined: _Defined) -> None:
    """Static checks of the process, mapping and file steps."""
    a = s.args
    act = s.action

    def fail(key: str | None, msg: str) -> None:
        raise ScenarioError(f"{sc.where(s, key)}: {msg}")

    def name_of(key: str) -> str:
        v = a[key]
        if not isinstance(v, str) or not v:
            fail(key, f"{key} must be a non-empty string, not {v!r}")
        if "\0" in v:  # a task's comm and a file's name are C strings
            fail(key, f"{key} = {v!r} holds a NUL byte")
        return v

    def known_proc(key: str) -> str:
        if key not in a:
            if len(defined.procs) == 1:
                return next(iter(defined.procs))
            fail(None, f"{act} needs process = NAME (processes so far: {', '.join(defined.procs) or 'none'})")
        p = name_of(key)
        if p not in defined.procs:
            if p in defined.killed:
                fail(key, f"process {p!r} was killed by the OOM killer at step {defined.killed[p]}")
            fail(key, f"unknown process {p!r} (processes so far: {', '.join(defined.procs) or 'none'})")
        return p

    def known_file(key: str) -> str:
        f = name_of(key)
        if f not in defined.files:
            fail(key, f"unknown file {f!r} (files so far: {', '.join(sorted(defined.files)) or 'none'})")
        return f

    for key in ("size", "start", "heap", "offset" if act == "mmap" else "", "page_size", "grow", "shrink"):
        if key and key in a and _size(a[key]) is None:
            fail(key, f'{key} = {a[key]!r} is not a size (bytes, or a string such as "16M")')
    if act in MAPPING_ACTIONS and "size" in a and _size(a["size"]) == 0:
        fail("size", "size = 0: an empty range (mmap(2), munmap(2) and mprotect(2) refuse a length of 0)")
    for key in ("size", "start", "offset" if act == "mmap" else ""):
        if act in MAPPING_ACTIONS and key and key in a and _size(a[key]) % PAGE_SIZE:  # type: ignore[operator]
            fail(key, f"{key} = {a[key]!r} is not a multiple of the page size (4K)")
    if "prot" in a:
        try:
            _prot(a["prot"])
        except WorkloadError as e:
            fail("prot", str(e))
    if "policy" in a:
        try:
            _mpol(a["policy"])
        except WorkloadError as e:
            fail("policy", str(e))
    if "nodes" in a and not (isinstance(a["nodes"], list) and all(type(n) is int and n >= 0 for n in a["nodes"])):
        fail("nodes", f"nodes = {a['nodes']!r} is not a list of node numbers")
    if act in ("mbind", "set_mempolicy"):
        if "policy" not in a:
            fail(None, f"{act} needs a policy ({', '.join(MPOL_MODES)})")
        if a["policy"] not in ("default", "local") and not a.get("nodes"):
            fail(None, f"policy {a['policy']!r} needs nodes = [...]")
    if act in ("touch",):
        if sum(k in a for k in ("every", "fraction", "count")) > 1:
            fail(None, "touch takes one of every, fraction, count (none touches every page)")
        for key in ("every", "count"):
            if key in a and not (type(a[key]) is int and a[key] >= 1):
                fail(key, f"{key} = {a[key]!r} is not a positive integer")
        if "offset" in a and not (type(a["offset"]) is int and 0 <= a["offset"] < a.get("every", 1)):
            fail("offset", "offset goes with every and is an index below it")
        if "fraction" in a and not (
            isinstance(a["fraction"], (int, float)) and not isinstance(a["fraction"], bool) and 0 < a["fraction"] <= 1
        ):
            fail("fraction", f"fraction = {a['fraction']!r} is not a fraction in (0, 1]")
        if "populate" in a and not isinstance(a["populate"], bool):
            fail("populate", "populate is true or false")
        if a.get("populate") and any(k in a for k in ("every", "fraction", "count")):
            fail("populate", "populate faults in the whole range: no every, fraction or count with it")
        if "access" in a and a["access"] not in ("read", "write"):
            fail("access", f'access = {a["access"]!r} is not "read" or "write"')
        if "until" in a and a["until"] != "oom":
            fail(
                "until",
                f'until = {a["until"]!r}: touch\'s only condition is "oom" (until the OOM killer kills the process)',
            )
        if "until" in a and a.get("populate"):
            fail("until", 'until = "oom" faults page by page: not with populate')

    if act == "spawn":
        p = name_of("spawn")
        if p in defined.procs:
            fail("spawn", f"process {p!r} already exists")
        if "parent" in a:
            known_proc("parent")
        if "comm" in a and not (isinstance(a["comm"], str) and a["comm"]):
            fail("comm", "comm must be a non-empty string")
        if "oom_score_adj" in a and not (type(a["oom_score_adj"]) is int and -1000 <= a["oom_score_adj"] <= 1000):
            fail("oom_score_adj", f"oom_score_adj = {a['oom_score_adj']!r} is not an integer in -1000..1000")
        defined.procs[p] = {"stack", "heap"}  # the exec layout always has a brk area
        defined.killed.pop(p, None)
    elif act == "fork":
        c = name_of("fork")
        if c in defined.procs:
            fail("fork", f"process {c!r} already exists")
        if "parent" not in a:
            fail(None, "fork needs parent = NAME (the process that forks)")
        defined.procs[c] = set(defined.procs[known_proc("parent")])
    elif act == "thread":
        t = name_of("thread")
        if t in defined.procs:
            fail("thread", f"process {t!r} already exists")
        leader = known_proc("process")
        leader = defined.threads.get(leader, leader)
        defined.procs[t] = defined.procs[leader]  # one mm: the same mapping tags
        defined.threads[t] = leader
    elif act == "exit":
        p = known_proc("exit")
        gone = [p] if p in defined.threads else [p, *(t for t, ld in defined.threads.items() if ld == p)]
        for name in gone:
            defined.procs.pop(name)
            defined.threads.pop(name, None)
    elif act == "brk":
        known_proc("brk")
        if ("grow" in a) == ("shrink" in a):
            fail(None, "brk takes grow = SIZE or shrink = SIZE")
    elif act == "exec":
        p = known_proc("exec")
        if p in defined.threads or p in defined.threads.values():
            fail("exec", f"{p!r} is in a thread group: exec there (de_thread) is not modelled")
        if not (isinstance(a.get("comm"), str) and a["comm"]):
            fail("comm" if "comm" in a else None, 'exec needs comm = "program" (the program it runs)')
        defined.procs[p] = {"stack", "heap"}  # the exec layout always has a brk area
    elif act == "set_mempolicy":
        known_proc("set_mempolicy")
    elif act == "mmap":
        tag = name_of("mmap")
        p = known_proc("process")
        if tag in defined.procs[p]:
            fail("mmap", f"process {p!r} already has a mapping {tag!r}")
        if "size" not in a:
            fail(None, "mmap needs a size")
        kind = a.get("kind", "anon")
        if kind not in MAP_KINDS:
            fail("kind", f"kind = {kind!r} is not one of {', '.join(MAP_KINDS)}")
        if kind in ("private", "shared"):
            if "file" not in a:
                fail(None, f"a {kind} mapping maps a file: file = TAG")
            known_file("file")
        elif "file" in a or "offset" in a:
            fail("file" if "file" in a else "offset", 'file and offset go with kind = "private" or "shared"')
        if "page_size" in a:
            if kind != "hugetlb":
                fail("page_size", 'page_size goes with kind = "hugetlb"')
            if _size(a["page_size"]) not in (2 << 20, 1 << 30):
                fail("page_size", f'page_size = {a["page_size"]!r} is not a huge page size ("2M" or "1G")')
        if "shared" in a and (kind != "hugetlb" or not isinstance(a["shared"], bool)):
            fail(
                "shared",
                'shared = true goes with kind = "hugetlb" (MAP_SHARED|MAP_HUGETLB); a shared file '
                'mapping is kind = "shared"',
            )
        if "hugepage" in a and not isinstance(a["hugepage"], bool):
            fail("hugepage", "hugepage is true or false (madvise(MADV_HUGEPAGE))")
        if kind == "hugetlb" and _size(a["size"]) % _size(a.get("page_size", "2M")):  # type: ignore[operator]
            fail("size", f"a hugetlb mapping is a multiple of its page size ({a.get('page_size', '2M')})")
        defined.procs[p].add(tag)
    elif act in ("touch", "munmap", "mprotect", "mbind"):
        tag = name_of(act)
        p = known_proc("process")
        if tag not in defined.procs[p]:
            fail(act, f"process {p!r} has no mapping {tag!r} (its mappings: {', '.join(sorted(defined.procs[p]))})")
        if act == "mprotect" and "prot" not in a:
            fail(None, 'mprotect needs prot ("r", "rw", ...)')
        if act == "munmap" and "start" not in a and "size" not in a:
            defined.procs[p].discard(tag)
        if act == "touch" and a.get("until") == "oom":  # the process does not outlive this step
            gone = [p] if p in defined.threads else [p, *(t for t, ld in defined.threads.items() if ld == p)]
            for name in gone:
                defined.procs.pop(name, None)
                defined.threads.pop(name, None)
                defined.killed[name] = s.index
    elif act == "swapon":
        if not (isinstance(a["swapon"], str) and a["swapon"].startswith("/")):
            fail("swapon", 'swapon = "/swapfile": the absolute path of the swap file to make')
        if "size" not in a:
            fail(None, 'swapon needs the swap file\'s size ("512M")')
        if "priority" in a and not (type(a["priority"]) is int and -1 <= a["priority"] <= 32767):
            fail("priority", f"priority = {a['priority']!r}: swapon -p takes 0..32767 (or -1, the default)")
    elif act == "create_file":
        tag = name_of("create_file")
        if tag in defined.files:
            fail("create_file", f"file {tag!r} already exists")
        if "path" not in a or not (isinstance(a["path"], str) and a["path"].startswith("/")):
            fail("path" if "path" in a else None, 'file needs an absolute path = "/dir/name"')
        defined.files.add(tag)
    elif act in ("read", "write"):
        known_file(act)
        if "process" in a:
            known_proc("process")
    elif act == "writeback":
        if a["writeback"] not in ("all", "background"):
            fail("writeback", 'writeback = "all" (every dirty page) or "background" (down to the background threshold)')
        if "complete" in a and not (
            isinstance(a["complete"], (int, float)) and not isinstance(a["complete"], bool) and 0 <= a["complete"] <= 1
        ):
            fail("complete", f"complete = {a['complete']!r} is not a fraction in [0, 1] (of the I/O that completes)")
    elif act == "sysctl":
        if a["sysctl"] not in SYSCTLS:
            fail("sysctl", f"unknown tunable {a['sysctl']!r} (known: {', '.join(SYSCTLS)})")
        if "value" not in a:
            fail(None, "sysctl needs a value")
        v = a["value"]
        if a["sysctl"] == "transparent_hugepage":
            if v not in THP_MODES:
                fail("value", f"transparent_hugepage is one of {', '.join(THP_MODES)}, not {v!r}")
        elif not (type(v) is int and v >= 0):
            fail("value", f"{a['sysctl']} takes a non-negative integer, not {v!r}")
        elif v > SYSCTL_MAX.get(a["sysctl"], v):
            fail(
                "value",
                f"{a['sysctl']} is a percentage (0..{SYSCTL_MAX[a['sysctl']]}), not {v}: the kernel's "
                "write fails with EINVAL",
            )


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


def load_scenario(path: str | os.PathLike) -> Scenario:
    """Read and check a scenario file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{os.fspath(path)}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{os.fspath(path)}: not UTF-8 text ({e.reason})") from None
    return parse_scenario(text, path)


def shipped_scenarios() -> dict[str, Path]:
    """The scenario files that come with mmintro (``mmintro/scenarios/*.toml``), by name."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


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


def _run_step(w: Workload, s: Step) -> str:
    a = s.args
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
    sc: Scenario, config: MachineConfig | None = None, progress: Callable[[str, float], None] | None = None
) -> ScenarioRun:
    """Boot ``config`` (default: the scenario's machine) and run every step.  Raises
    :class:`ScenarioFailed` when an expectation does not hold, :class:`ScenarioError` when a
    step cannot run; both name the file, line and step."""
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
            text = _run_step(w, s)
            if s.args.get("note"):
                text += f"  -- {s.args['note']}"
        except ExpectationFailed as e:
            raise ScenarioFailed(f"{sc.where(s, s.action)}: {e}") from None
        except WorkloadError as e:
            raise ScenarioError(f"{sc.where(s, s.action)}: {e}") from None
        reports.append(StepReport(s.index, s.action, text))
    step_progress(f"{sc.name}: done", 1.0)
    return ScenarioRun(k, w, reports)
