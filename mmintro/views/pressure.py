"""/proc/pressure/{memory,cpu,io} (kernel/sched/psi.c psi_show), from a snapshot or a real dump.

:func:`pressure` reads ``psi_system`` with :mod:`mmintro.reader.helpers.psi`: by default it
aggregates as psi_show() does before printing (the per-CPU stall times not yet folded in, at the
latest CPU clock the dump holds; the averages updated if their 2 s period has passed), else
(``stored``) it prints the group as the last aggregation left it.  :func:`render` prints the
lines exactly as psi_show's ``"%s avg10=%lu.%02lu avg60=%lu.%02lu avg300=%lu.%02lu total=%llu"``
(LOAD_INT/LOAD_FRAC of the FSHIFT fixed-point averages; the total in microseconds), one file or
several each after a ``# /proc/pressure/NAME`` line; :func:`parse` reads such text (ours or a real
kernel's) back.
"""

from __future__ import annotations

import re
from typing import Any

from mmintro.reader.helpers.psi import PressureLine, aggregate, load_text, psi_books, psi_show
from mmintro.reader.program import Program

__all__ = ["RESOURCES", "parse", "pressure", "render", "to_json"]

RESOURCES = ("memory", "cpu", "io")
"""The files every PSI build has, in the order :func:`render` prints them (``irq`` exists only
with CONFIG_IRQ_TIME_ACCOUNTING)."""


def pressure(prog: Program, resources: tuple[str, ...] = ("memory",), stored: bool = False) -> list[PressureLine]:
    """The lines of /proc/pressure/R for each R in ``resources`` (one aggregation for all, as
    reads of the files at one moment would give).

    :raises SnapshotError: no PSI in this build, PSI disabled at boot, or an unknown resource
    """
    books = psi_books(prog)
    if not stored:
        books = aggregate(prog, books)
    out: list[PressureLine] = []
    for r in resources:
        out += psi_show(prog, r, books=books)
    return out


def _line(ln: PressureLine) -> str:
    return (
        f"{ln.kind} avg10={load_text(ln.avg10)} avg60={load_text(ln.avg60)} "
        f"avg300={load_text(ln.avg300)} total={ln.total_us}\n"
    )


def render(lines: list[PressureLine]) -> str:
    """psi_show()'s text: one file as is, several each after ``# /proc/pressure/NAME``."""
    names = list(dict.fromkeys(ln.resource for ln in lines))
    if len(names) == 1:
        return "".join(_line(ln) for ln in lines)
    return "".join(f"# /proc/pressure/{n}\n" + "".join(_line(ln) for ln in lines if ln.resource == n) for n in names)


def to_json(lines: list[PressureLine]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{resource: {some|full: {avg10, avg60, avg300 (percent, as printed), total (us)}}}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ln in lines:
        out.setdefault(ln.resource, {})[ln.kind] = {
            "avg10": float(load_text(ln.avg10)),
            "avg60": float(load_text(ln.avg60)),
            "avg300": float(load_text(ln.avg300)),
            "total": ln.total_us,
        }
    return out


_LINE = re.compile(r"^(some|full) avg10=(\d+\.\d\d) avg60=(\d+\.\d\d) avg300=(\d+\.\d\d) total=(\d+)$")


def parse(text: str, resource: str = "") -> dict[str, dict[str, dict[str, Any]]]:
    """/proc/pressure text (one file, or several after ``# /proc/pressure/NAME`` lines) → the
    :func:`to_json` shape; a file without a header goes under ``resource``.

    :raises ValueError: a line that is neither a header nor a psi_show line
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if raw.startswith("# "):
            resource = raw[2:].strip().rsplit("/", 1)[-1]
            continue
        m = _LINE.match(raw)
        if m is None:
            raise ValueError(f"not a /proc/pressure line: {raw!r}")
        out.setdefault(resource, {})[m.group(1)] = {
            "avg10": float(m.group(2)),
            "avg60": float(m.group(3)),
            "avg300": float(m.group(4)),
            "total": int(m.group(5)),
        }
    return out
