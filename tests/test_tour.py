"""docs/tour.md cannot go stale: every ``$ mmintro ...`` line of its console blocks runs on the
snapshot it names (``out/NAME``), exits 0 and prints something, and the output lines the tour
shows under a command are in its output, in order.

The tour's convention (its first section says so): in a console block, ``$ mmintro ...`` is a
command; the lines under it, up to the next ``$``, are an excerpt of its output -- each must
match a line of the output, in order, with runs of blanks compared as one space and ``...``
standing for any text (a line of just ``...`` skips lines).  ``mmintro simulate NAME --output
out/NAME`` makes the snapshot ``out/NAME``; the default machine's (no NAME) is the session's
``default_machine``, the rest are built by the tour's own simulate line (slow: 3-55 s each).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from cli_helpers import run
from conftest import on_scenario

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "docs" / "tour.md"


class Command:
    def __init__(self, line: int, argv: list[str], expect: list[str]) -> None:
        self.line, self.argv, self.expect = line, argv, expect

    def __repr__(self) -> str:
        return f"tour.md:{self.line}: mmintro {shlex.join(self.argv)}"

    @property
    def snapshot(self) -> str:
        names = [m.group(1) for w in self.argv if (m := re.fullmatch(r"out/([\w.-]+)", w))]
        assert len(names) == 1, f"{self}: names no snapshot out/NAME (or more than one)"
        return names[0]


def parse_tour(text: str) -> list[Command]:
    """The ``$ mmintro`` commands of the console blocks, with the output lines shown under them."""
    commands: list[Command] = []
    block = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            block = None if block is not None else line[3:].strip()
            continue
        if block != "console":
            continue
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[0] == "mmintro", f"tour.md:{n}: only mmintro commands are run: {line}"
            commands.append(Command(n, argv[1:], []))
        elif line.strip():
            assert commands, f"tour.md:{n}: output before any command"
            commands[-1].expect.append(line)
    return commands


def _pattern(line: str) -> re.Pattern:
    parts = [r"\s+".join(map(re.escape, p.split())) for p in line.strip().split("...")]
    return re.compile(r"\s*" + ".*".join(parts) + r"\s*")


def check_output(cmd: Command, output: str) -> None:
    """Every shown line matches an output line, in order (``...`` alone skips lines)."""
    lines = output.splitlines()
    i = 0
    for want in cmd.expect:
        if want.strip() == "...":
            continue
        pat = _pattern(want)
        while i < len(lines) and not pat.fullmatch(lines[i]):
            i += 1
        assert i < len(lines), f"{cmd}: no line (after the ones before it) matches {want!r}\n--- output:\n{output}"
        i += 1


def _simulated(commands: list[Command]) -> dict[str, Command]:
    out = {}
    for c in commands:
        if c.argv[0] == "simulate":
            args = [a for a in c.argv[1:] if not a.startswith("-") and not a.startswith("out/")]
            assert (args[0] if args else "default") == c.snapshot, f"{c}: out/NAME is not the scenario's name"
            out[c.snapshot] = c
    return out


COMMANDS = parse_tour(TOUR.read_text(encoding="utf-8")) if TOUR.is_file() else []
SIMULATED = _simulated(COMMANDS)
NAMES = sorted({c.snapshot for c in COMMANDS})


def test_the_tour_exists_and_covers_the_topics() -> None:
    text = TOUR.read_text(encoding="utf-8")
    topics = [m.group(1) for m in re.finditer(r"^## (.+)$", text, flags=re.M)]
    for want in (
        "e820 and memblock",
        "Sparse memory",
        "Zones and nodes",
        "struct page and folios",
        "The buddy allocator",
        "GFP flags and watermarks",
        "Per-CPU pages",
        "Slab",
        "vmalloc",
        "Page tables and the direct map",
        "Processes and VMAs",
        "Faults and copy-on-write",
        "The page cache and writeback",
        "THP and hugetlb",
        "Reclaim",
        "Swap",
        "Compaction",
        "OOM",
    ):
        assert any(t.startswith(want) for t in topics), want
    assert len(COMMANDS) >= 60 and "default" in NAMES
    assert set(SIMULATED) == set(NAMES), "every snapshot the tour reads is made by a simulate line in it"


def test_parse_and_match() -> None:
    cmds = parse_tour("x\n```console\n$ mmintro ps out/a\n  1  init\n...\n5 ... java\n```\n$ mmintro no\n")
    assert len(cmds) == 1 and cmds[0].argv == ["ps", "out/a"] and cmds[0].snapshot == "a"
    check_output(cmds[0], "PID COMM\n    1   init\n  2 x\n  5 0 0 java\n")
    with pytest.raises(AssertionError, match="java"):
        check_output(cmds[0], "5 java\n1 init\n")  # out of order


def _run_commands(name: str, snapshot: str) -> None:
    for c in COMMANDS:
        if c.snapshot != name or c.argv[0] == "simulate":
            continue
        argv = [snapshot if w == f"out/{name}" else str(ROOT / w) if w.startswith("docs/") else w for w in c.argv]
        r = run(*argv)
        assert r.stdout.strip(), f"{c}: no output"
        check_output(c, r.stdout)


def test_the_default_machines_commands(default_machine) -> None:
    _run_commands("default", default_machine)


@pytest.mark.slow  # each builds its scenario with the tour's simulate line (3-55 s)
@pytest.mark.parametrize("name", on_scenario([n for n in NAMES if n != "default"]))
def test_a_scenarios_commands(name: str, scenario_snapshot) -> None:
    sim = SIMULATED[name]
    assert sim.argv == ["simulate", name, "--output", f"out/{name}"], "the shared snapshot is made so"
    stem, stdout = scenario_snapshot(name)
    check_output(sim, stdout.replace(stem, f"out/{name}"))
    _run_commands(name, stem)
