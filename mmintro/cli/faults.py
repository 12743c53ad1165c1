"""The simulator's fault trace, kept beside a snapshot for post-mortems.

``k.fault_log`` (``memory.FaultRecord(pid, comm, addr, pfn, kind)``, one record per page fault
the workload took) exists only in the simulator: a real kernel keeps no such log, so it is
not part of the snapshot and the reader never needs it.  Like a ``perf trace`` captured
beside a crash dump, ``mmintro simulate ... --output NAME`` writes it as ``NAME.faults.tsv``
when any fault happened: one header line, then one line per fault in the order taken::

    seq	pid	comm	addr	pfn	kind
    0	1	db	0x7f5a3c000000	183296	thp

``mmintro faults NAME [--pid PID] [--kind K] [--json]`` reads it back.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import click

from mmintro.cli.output import emit, json_option

__all__ = ["HEADER", "FaultLine", "command", "read_fault_trace", "trace_path", "write_fault_trace"]

HEADER = ("seq", "pid", "comm", "addr", "pfn", "kind")
SUFFIX = ".faults.tsv"


class FaultLine(NamedTuple):
    seq: int
    pid: int
    comm: str
    addr: int
    pfn: int
    kind: str


def trace_path(name: str | os.PathLike) -> Path:
    """NAME.faults.tsv for a snapshot NAME (also given as NAME.vmcore / NAME.vmlinux, or the
    trace file itself)."""
    s = os.fspath(name)
    for suffix in (".vmcore", ".vmlinux", SUFFIX):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
            break
    return Path(s + SUFFIX)


def _field(text: str) -> str:
    """A comm as one TSV field (a task can name itself anything but tab and newline here)."""
    return " ".join(text.replace("\t", " ").splitlines())


def write_fault_trace(kernel: Any, name: str | os.PathLike) -> Path | None:
    """Write ``kernel.fault_log`` to NAME.faults.tsv; None (and no file) when no fault
    happened."""
    log = getattr(kernel, "fault_log", None) or []
    if not log:
        return None
    path = trace_path(name)
    lines = ["\t".join(HEADER)]
    for i, r in enumerate(log):
        lines.append(f"{i}\t{int(r.pid)}\t{_field(str(r.comm))}\t{int(r.addr):#x}\t{int(r.pfn)}\t{r.kind}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_fault_trace(name: str | os.PathLike) -> list[FaultLine]:
    """The records of NAME.faults.tsv.  A missing file or a malformed line raises ValueError
    (one line naming the file and line)."""
    path = trace_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(
            f"no fault trace {os.fspath(path)!r} (mmintro simulate writes it beside "
            f"the snapshot when the scenario took page faults)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{os.fspath(path)}: cannot read the fault trace ({e})") from None
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise ValueError(f"{os.fspath(path)}:1: not a fault trace (expected the header {' '.join(HEADER)!r})")
    out = []
    for n, line in enumerate(lines[1:], 2):
        f = line.split("\t")
        if len(f) != len(HEADER):
            raise ValueError(f"{os.fspath(path)}:{n}: expected {len(HEADER)} tab-separated fields, got {len(f)}")
        try:
            out.append(FaultLine(int(f[0]), int(f[1]), f[2], int(f[3], 0), int(f[4], 0), f[5]))
        except ValueError:
            raise ValueError(f"{os.fspath(path)}:{n}: a field is not a number: {line!r}") from None
    return out


def render(rows: list[FaultLine], total: int) -> str:
    """A table (crash-style columns) and a summary line by kind."""
    out = [f"{'SEQ':>6}  {'PID':>6}  {'COMM':<16} {'ADDRESS':>16}  {'PFN':>10}  KIND"]
    out += [f"{r.seq:>6}  {r.pid:>6}  {r.comm:<16} {r.addr:>16x}  {r.pfn:>10}  {r.kind}" for r in rows]
    kinds = Counter(r.kind for r in rows)
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    out.append(f"{len(rows)} of {total} faults" + (f" ({by_kind})" if by_kind else ""))
    return "\n".join(out) + "\n"


@click.command("faults")
@click.argument("name", metavar="NAME")
@click.option("--pid", type=int, default=None, help="only the faults of this pid")
@click.option(
    "--kind",
    default=None,
    help="only faults of this kind (anon, anon-zero, cow-copy, cow-reuse, file, file-shared, thp, hugetlb)",
)
@json_option
def command(name: str, pid: int | None, kind: str | None, as_json: bool) -> None:
    """The page faults a simulation took (NAME.faults.tsv, written by simulate beside the
    snapshot NAME): sequence, pid, comm, address, pfn and kind.  The simulator's trace, not
    part of the snapshot."""
    from mmintro.kernel.memory import FAULT_KINDS  # (not at start-up: the simulator is a heavy import)

    if kind is not None and kind not in FAULT_KINDS:
        raise click.BadParameter(f"{kind!r} is not a fault kind ({', '.join(FAULT_KINDS)})", param_hint="--kind")
    rows = read_fault_trace(name)
    total = len(rows)
    rows = [r for r in rows if (pid is None or r.pid == pid) and (kind is None or r.kind == kind)]
    emit(render(rows, total), [r._asdict() for r in rows], as_json)
