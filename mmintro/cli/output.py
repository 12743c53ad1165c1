"""Renderers shared by the report commands: text as-is, or JSON."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["emit", "json_option"]


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")(f)


def emit(text: str | None = None, data: Any = None, as_json: bool = False) -> None:
    """Print the text rendering, or ``data`` as JSON when ``--json`` was given."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(text, nl=False)
