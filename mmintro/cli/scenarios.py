"""``mmintro scenarios``: the shipped scenarios, and for one of them what it shows.

Every scenario file starts with a header comment, read here (the TOML parser never sees
comments, so the convention lives in this module and nowhere else)::

    # NAME: what the scenario is about, in a sentence or two.
    #
    # How the kernel gets there: paragraphs of explanation ...
    #
    # Look at:
    #   mmintro meminfo SNAP               Dirty, Writeback
    #   mmintro smaps SNAP 3               the file VMA: Rss = Shared_Clean + Shared_Dirty,
    #                                      continued on a deeper-indented line
    #   drgn: prog["global_wb_domain"], ... (a hint for another tool: shown, not run)

The header is the file's leading ``#`` lines.  ``Look at:`` starts the list of what to look
at; it ends at an empty ``#`` line or with the header.  An entry starts at the first entry's
indentation: ``mmintro ...`` is a command, up to the first run of two or more spaces, and what
to notice in its output after them; any other entry (``drgn: ...``, ``crash: ...``) is a hint
for another tool.  A deeper-indented line continues the entry above it.  In a command ``SNAP``
stands for the scenario's snapshot (``mmintro simulate NAME --output SNAP``); everything else
is literal (PIDs and addresses are the scenario's own, the same on every run of its machine),
so each command can be run as it stands -- tests/test_scenarios_cli.py runs them all.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path
from typing import NamedTuple

import click

from mmintro.cli.simulate import SCENARIOS

__all__ = ["Header", "LookAt", "command", "read_header", "parse_header"]

SNAP = "SNAP"
_WIDTH = 100  # `show` wraps what to notice at this width ...
_COMMAND_COLUMN = 44  # ... in a column after commands up to this long


class LookAt(NamedTuple):
    """One entry of a header's ``Look at:`` list."""

    command: str | None
    """``mmintro ...`` with ``SNAP`` for the snapshot; None for a hint (``drgn: ...``)."""
    notice: str
    """What to notice in the command's output (or the whole hint)."""

    def argv(self, snapshot: str) -> list[str]:
        """The command's arguments after ``mmintro``, ``SNAP`` replaced by ``snapshot`` (also
        in ``SNAP-NAME``, the part-way snapshot a ``snapshot = "NAME"`` step writes)."""
        if self.command is None:
            raise ValueError(f"{self.notice!r} is a hint, not a command")
        return [
            snapshot + w[len(SNAP) :] if w == SNAP or w.startswith(SNAP + "-") else w
            for w in shlex.split(self.command)[1:]
        ]


class Header(NamedTuple):
    """A scenario file's header comment."""

    name: str
    """The name its first line gives (``# NAME: ...``); '' when it does not start so."""
    text: str
    """The header without its ``Look at:`` list, comment marks removed."""
    look_at: list[LookAt]


def parse_header(source: str) -> Header:
    """The header of scenario text ``source`` (see the module's docstring)."""
    lines: list[str] = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    m = re.match(r"([\w.-]+):", lines[0]) if lines else None
    text: list[str] = []
    look: list[LookAt] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "Look at:":
            text.append(lines[i])
            i += 1
            continue
        i += 1
        while text and not text[-1].strip():  # the list's own blank line before it
            text.pop()
        indent = None
        while i < len(lines) and lines[i].strip():
            body = lines[i].strip()
            depth = len(lines[i]) - len(lines[i].lstrip())
            if indent is None:
                indent = depth
            if depth > indent and look:  # a continuation of the entry above
                cmd, notice = look[-1]
                look[-1] = LookAt(cmd, f"{notice} {body}".strip())
            elif depth < indent:
                break
            elif body.startswith("mmintro "):
                cmd, *notice = re.split(r"\s{2,}", body, maxsplit=1)
                look.append(LookAt(cmd, notice[0] if notice else ""))
            else:
                look.append(LookAt(None, body))
            i += 1
    while text and not text[-1].strip():
        text.pop()
    return Header(m.group(1) if m else "", "\n".join(text), look)


def read_header(path: str | Path) -> Header:
    """The header of the scenario file ``path`` (one line on error: OSError, UnicodeDecodeError)."""
    return parse_header(Path(path).read_text(encoding="utf-8"))


def _list() -> None:
    width = max(len(n) for n in SCENARIOS) + 2
    for sc in SCENARIOS.values():
        click.echo(f"{sc.name:<{width}}{sc.help}")


@click.group(
    "scenarios",
    invoke_without_command=True,
    epilog="""\b
Examples:
  mmintro scenarios                       every shipped scenario, one line each
  mmintro scenarios show fork-cow         what fork-cow does and the commands that show it
  mmintro simulate fork-cow --output out/fork-cow && mmintro smaps-rollup out/fork-cow 2
""",
)
@click.pass_context
def command(ctx: click.Context) -> None:
    """The shipped scenarios: each one's name and what it is about.

    A scenario is a TOML file in mmintro/scenarios/ that `mmintro simulate NAME --output SNAP`
    runs; `mmintro scenarios show NAME` prints its header: what happens, and the commands to run
    on its snapshot with what to notice in their output."""
    if ctx.invoked_subcommand is None:
        _list()


@command.command(
    "show",
    epilog="""\b
Examples:
  mmintro scenarios show default          the default machine (what reports read without SNAPSHOT)
  mmintro scenarios show swap-storm -o /tmp/swap
  mmintro scenarios show my-scenario.toml a scenario file of your own
""",
)
@click.argument("name")
@click.option(
    "-o",
    "--output",
    metavar="SNAP",
    default=None,
    help="the snapshot name the commands use  [default: out/NAME]",
)
def show(name: str, output: str | None) -> None:
    """What scenario NAME (or the scenario file NAME) does, and the commands that show it."""
    sc = SCENARIOS.get(name)
    path = sc.path if sc is not None else None
    if sc is None:
        if not Path(name).is_file():
            raise click.BadParameter(
                f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)} (or the path of a scenario file)",
                param_hint="NAME",
            )
        path = Path(name)
    stem = path.stem if path is not None else name
    snap = output or f"out/{stem}"
    if path is None:  # a Python scenario: its help is all there is
        click.echo(f"{name}: {sc.help}\n\n(built in: no scenario file, nothing to look at beyond the boot)")
        click.echo(f"\nRun it:\n  mmintro simulate {name} --output {snap}")
        return
    try:
        header = read_header(path)
    except OSError as e:
        raise click.ClickException(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise click.ClickException(f"{path}: not UTF-8 text ({e.reason})") from None
    click.echo(f"{path}\n")
    click.echo(header.text)
    run_name = name if sc is not None else str(path)
    click.echo(f"\nRun it:\n  mmintro simulate {shlex.quote(run_name)} --output {shlex.quote(snap)}")
    if not header.look_at:
        click.echo("\n(the header has no 'Look at:' list)")
        return
    click.echo("\nLook at:")
    commands = [(shlex.join(["mmintro", *e.argv(snap)]), e.notice) for e in header.look_at if e.command]
    width = max((len(c) for c, _ in commands if len(c) <= _COMMAND_COLUMN), default=0) + 2
    for c, notice in commands:
        lines = textwrap.wrap(notice, _WIDTH - 2 - width) or [""]
        if len(c) > width - 2:  # a long command: what to notice goes under it
            click.echo(f"  {c}")
            lines = [f"  {' ' * width}{line}" for line in lines]
        else:
            lines = [f"  {c:<{width}}{lines[0]}"] + [f"  {' ' * width}{line}" for line in lines[1:]]
        click.echo("\n".join(line.rstrip() for line in lines))
    for e in header.look_at:
        if e.command is None:
            click.echo("\n".join(textwrap.wrap(e.notice, _WIDTH, initial_indent="  ", subsequent_indent="        ")))
