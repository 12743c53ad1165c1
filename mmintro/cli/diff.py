"""``mmintro diff A B``: what changed between two snapshots (mmintro.views.diff)."""

from __future__ import annotations

import click

from mmintro.cli.output import emit, json_option
from mmintro.cli.snapshot import load

__all__ = ["command"]


@click.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@json_option
def command(a: str, b: str, as_json: bool) -> None:
    """What changed from snapshot A to snapshot B: meminfo and vmstat lines, free blocks per
    zone and order (buddyinfo), slab caches (added, removed, objects and slabs), and processes
    (new, exited, and per process RSS and VMAs added, removed or changed)."""
    from mmintro.views import diff as diff_view

    with load(a) as pa, load(b) as pb:
        d = diff_view.diff(pa, pb)
        emit(diff_view.render(d, a, b), d, as_json)
