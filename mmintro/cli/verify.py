"""``mmintro verify SNAPSHOT``: run every consistency check the reports use and list the
findings (mmintro.views.verify); exit 0 when there are none, 3 when there are."""

from __future__ import annotations

import time

import click

from mmintro.cli.output import json_option
from mmintro.cli.snapshot import load

__all__ = ["command"]


@click.command("verify")
@click.argument("snapshot", metavar="SNAPSHOT")
@json_option
def command(snapshot: str, as_json: bool) -> None:
    """Check SNAPSHOT against the kernel's rules: zones and their free and per-CPU lists,
    /proc/meminfo's bounds, the LRU lists against their counters, the swap devices' books,
    slab caches, vmap areas, every process's mm, VMAs and page tables (bounded walks).  Prints
    one line per finding; exit status 0 when there is none, 3 when there are."""
    import json

    from mmintro.views import verify as verify_view

    t0 = time.monotonic()
    with load(snapshot) as prog:
        findings = verify_view.verify(prog)
    secs = time.monotonic() - t0
    if as_json:
        click.echo(json.dumps(verify_view.to_json(findings) | {"groups": list(verify_view.GROUPS)}, indent=2))
    else:
        click.echo(verify_view.render(findings), nl=False)
        n = len(findings)
        click.echo(
            f"{n or 'no'} finding{'' if n == 1 else 's'} ({', '.join(verify_view.GROUPS)} checked in {secs:.1f} s)"
        )
    if findings:
        raise click.exceptions.Exit(3)
