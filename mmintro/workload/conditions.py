"""The expressions of ``expect`` steps: :class:`Condition` parses one once, checks its names, and
evaluates it on the running kernel without ``eval``."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mmintro.kernel import page_alloc
from mmintro.workload.core import WorkloadError, _kmod, _node_stat
from mmintro.workload.files import _dirty_limits, _file_pages, _throttled
from mmintro.workload.huge import _hstate_value
from mmintro.workload.objects import _cache_objects
from mmintro.workload.pages import NUMA_EVENTS
from mmintro.workload.pressure import (
    _compaction_mod,
    _killed,
    _mapping_errors,
    _migrated_anon,
    _oom_score,
    _psi_total,
    _swap,
    _vm_event,
)
from mmintro.workload.processes import _faults, _mm_counter, _pss

if TYPE_CHECKING:
    from mmintro.kernel.mm_init import ZoneState
    from mmintro.workload.api import Workload


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
