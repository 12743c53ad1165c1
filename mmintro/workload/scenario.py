"""Scenario files: :func:`parse_scenario` / :func:`load_scenario` read a TOML file's ``[machine]``
and ``[[step]]`` tables and check every step before anything runs (one-line errors naming the file,
the line and the step)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig, parse_size
from mmintro.workload.api import SYSCTL_MAX, SYSCTLS
from mmintro.workload.conditions import Condition
from mmintro.workload.core import PAGE_SIZE, ScenarioError, WorkloadError, _parse_zone
from mmintro.workload.huge import THP_MODES
from mmintro.workload.pages import REASONS, UNTIL, WATERMARKS, _gfp
from mmintro.workload.processes import MAP_KINDS, MPOL_MODES, _mpol, _prot

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


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
    "snapshot": {"note"},
}
# A part-way snapshot's name: the NAME of OUTPUT-NAME.vmcore (no path, no dot: it cannot name
# another directory, a hidden file or a suffix the reader strips)
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
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
    if s.action == "snapshot":
        name = a["snapshot"]
        if not isinstance(name, str) or not SNAPSHOT_NAME.fullmatch(name):
            fail(
                "snapshot",
                f"snapshot = {name!r} is not a file-name part (1 to 64 letters, digits, '-' and '_', starting "
                "with a letter or digit): the step writes OUTPUT-NAME.vmcore and OUTPUT-NAME.vmlinux",
            )
        taken = getattr(defined, "snapshots", {})
        if name in taken:
            fail("snapshot", f"snapshot {name!r} is already written by step {taken[name]}: each needs its own name")
        taken[name] = s.index
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
        self.snapshots: dict[str, int] = {}  # snapshot name -> the step that writes it


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
