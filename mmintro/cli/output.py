"""Renderers shared by the report commands: text as-is, or JSON."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["FINDINGS_META", "PROGRAMS_META", "emit", "json_option"]

PROGRAMS_META = "mmintro.programs"
"""``ctx.meta`` key: the programs :func:`mmintro.cli.snapshot.load` opened for this command."""
FINDINGS_META = "mmintro.findings"
"""``ctx.meta`` key: how many findings :func:`emit` printed (the command then exits 3)."""


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")(f)


def _findings() -> list[Any]:
    """The findings (mmintro.reader.validate) the views noted on this command's programs."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get(PROGRAMS_META):
        return []
    from mmintro.reader.validate import noted

    out: list[Any] = []
    for prog in ctx.meta[PROGRAMS_META]:
        out += noted(prog)
    ctx.meta[FINDINGS_META] = ctx.meta.get(FINDINGS_META, 0) + len(out)
    return out


def emit(text: str | None = None, data: Any = None, as_json: bool = False) -> None:
    """Print the text rendering, or ``data`` as JSON when ``--json`` was given.

    With findings (values the kernel does not allow, noted by the views): the text is
    followed by one ``# finding: ...`` line each, the JSON is ``{"report": data, "findings":
    [...]}``, a line on stderr says so, and the command exits 3 (mmintro.cli.main)."""
    found = _findings()
    if as_json:
        if found:
            data = {"report": data, "findings": [f.to_json() for f in found]}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(text, nl=False)
        for f in found:
            click.echo(f"# finding: {f.check}: {f}")
    if found:
        n = len(found)
        click.echo(f"mmintro: {n} finding{'s' if n > 1 else ''}: the snapshot holds values the kernel does not "
                   "allow (exit status 3)", err=True)
