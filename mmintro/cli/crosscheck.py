"""``mmintro crosscheck``: the snapshot in real drgn vs mmintro's reader, as a table."""

from __future__ import annotations

import dataclasses
import sys

import click
from rich.console import Console
from rich.table import Table

from mmintro.cli.output import emit, json_option
from mmintro.cli.snapshot import default_snapshot, snapshot_argument


@click.command("crosscheck")
@snapshot_argument
@click.option("--only", multiple=True, help="run only checks whose name contains this text")
@json_option
def command(snapshot: str | None, only: tuple[str, ...], as_json: bool) -> None:
    """Open SNAPSHOT in real drgn, run drgn's stock helpers and crash commands, and compare
    each answer with mmintro's reader. Exits 1 if any check disagrees."""
    try:
        import drgn  # noqa: F401
    except ImportError:
        raise click.ClickException("crosscheck needs drgn: pip install 'mmintro[drgn]'") from None
    from mmintro.crosscheck import run_crosscheck

    meta = click.get_current_context().meta
    kernel, system_map = meta.get("mmintro.kernel"), meta.get("mmintro.system_map")
    if kernel is None and system_map is not None:
        raise click.UsageError("--system-map goes with --kernel (a real kernel's dump)")
    if kernel is not None and not snapshot:
        raise click.UsageError("--kernel needs the dump to read: mmintro crosscheck VMCORE --kernel VMLINUZ")
    path = snapshot or str(default_snapshot())
    rows = run_crosscheck(path, list(only) or None, kernel=kernel, system_map=system_map)
    if as_json:
        emit(data=[dataclasses.asdict(r) for r in rows], as_json=True)
    else:
        t = Table(title=f"mmintro vs drgn on {path}")
        for col in ("check", "mmintro", "drgn", "agree"):
            t.add_column(col, overflow="fold")
        for r in rows:
            verdict = (f"[yellow]n/a[/] ({r.skipped})" if r.skipped else "[green]yes[/]") if r.ok \
                else f"[red]NO[/] {r.detail}"
            t.add_row(r.name, r.mmintro, r.drgn, verdict)
        Console(width=160).print(t)
        n_na = sum(bool(r.skipped) for r in rows)
        n_ok = sum(r.ok for r in rows) - n_na
        na = f", {n_na} not applicable (nothing to compare)" if n_na else ""
        click.echo(f"crosscheck: {n_ok} passed{na}, {len(rows) - n_ok - n_na} failed")
    if not all(r.ok for r in rows):
        sys.exit(1)
