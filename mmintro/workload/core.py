"""What every part of the workload shares: its errors, zone naming, the kernel modules it
drives, and the state of a :class:`~mmintro.workload.api.Workload` (tags, processes, files, the CPU)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel
    from mmintro.kernel.mm_init import ZoneState
    from mmintro.workload.api import Workload
    from mmintro.workload.pages import Block
    from mmintro.workload.processes import Mapping


ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")


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


# -- helpers ------------------------------------------------------------------------------
PAGE_SIZE = 4096


def _page_up(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


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


def _show(seen: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in seen.items()) or "(no values)"


def _node_stat(w: Workload, item: str) -> int:
    """global_node_page_state(item): the sum over nodes of the simulator's node counters."""
    if not re.fullmatch(r"(NR|WORKINGSET|PG)[A-Z0-9_]+", item):
        raise WorkloadError(f"node_stat({item!r}): not a node_stat_item name (e.g. 'NR_FILE_DIRTY')")
    try:
        w.k.T.const(item)
    except LookupError:
        raise WorkloadError(f"node_stat({item!r}): the kernel has no node_stat_item {item}") from None
    return sum(d.get(item, 0) for d in w.k.node_vm_stat)


# -- the state every step works on --------------------------------------------------------
class WorkloadCore:
    """The booted kernel a workload drives, the tags and names it keeps, and where (which
    CPU, which zone) a step runs; the subsystems' steps are mixins over it."""

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
