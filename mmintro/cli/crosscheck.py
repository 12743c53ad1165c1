"""``mmintro crosscheck``: the snapshot in real drgn vs mmintro's reader, as a table."""

from __future__ import annotations

import dataclasses
import sys

import click

from mmintro.cli.output import emit, json_option
from mmintro.cli.snapshot import default_snapshot, snapshot_argument


@click.command("crosscheck")
@snapshot_argument
@click.option("--only", multiple=True, help="run only checks whose name contains this text")
@click.option(
    "--crash",
    "use_crash",
    is_flag=True,
    help="compare with the real crash utility (crash 9, fetched from Debian and cached) instead of drgn",
)
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="with --crash: seconds the crash session may run"
)
@json_option
def command(snapshot: str | None, only: tuple[str, ...], use_crash: bool, timeout: float, as_json: bool) -> None:
    """Open SNAPSHOT in real drgn, run drgn's stock helpers and crash commands, and compare
    each answer with mmintro's reader; with --crash, run the real crash 9 in batch mode on it
    and compare its commands' numbers with mmintro's reports. Exits 1 if any check disagrees."""
    meta = click.get_current_context().meta
    kernel, system_map = meta.get("mmintro.kernel"), meta.get("mmintro.system_map")
    if kernel is None and system_map is not None:
        raise click.UsageError("--system-map goes with --kernel (a real kernel's dump)")
    if kernel is not None and not snapshot:
        raise click.UsageError("--kernel needs the dump to read: mmintro crosscheck VMCORE --kernel VMLINUZ")
    path = snapshot or str(default_snapshot())
    if use_crash:
        if kernel is not None:
            raise click.UsageError(
                "--crash compares mmintro's snapshots (NAME.vmlinux + NAME.vmcore); "
                "a real kernel's dump needs its debuginfo vmlinux"
            )
        from mmintro.crosscheck.crash_utility import CrashStartError, run_crash_crosscheck
        from mmintro.realkernel.debian import HarnessError

        try:
            rows = run_crash_crosscheck(path, list(only) or None, timeout=timeout, raise_on_start=True)
        except (HarnessError, CrashStartError) as e:
            click.echo(f"mmintro: {e}", err=True)
            sys.exit(1)
        _report(rows, path, "crash", as_json)
        return
    try:
        import drgn  # noqa: F401
    except ImportError:
        raise click.ClickException("crosscheck needs drgn: pip install 'mmintro[drgn]'") from None
    from mmintro.crosscheck import run_crosscheck

    rows = run_crosscheck(path, list(only) or None, kernel=kernel, system_map=system_map)
    _report(rows, path, "drgn", as_json)


def _report(rows: list, path: str, oracle: str, as_json: bool) -> None:
    if as_json:
        emit(data=[dataclasses.asdict(r) for r in rows], as_json=True)
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"mmintro vs {oracle} on {path}")
        for col in ("check", "mmintro", oracle, "agree"):
            t.add_column(col, overflow="fold")
        for r in rows:
            verdict = (
                (f"[yellow]n/a[/] ({r.skipped})" if r.skipped else "[green]yes[/]")
                if r.ok
                else f"[red]NO[/] {r.detail}"
            )
            t.add_row(r.name, r.mmintro, r.drgn, verdict)
        Console(width=160).print(t)
        n_na = sum(bool(r.skipped) for r in rows)
        n_ok = sum(r.ok for r in rows) - n_na
        na = f", {n_na} not applicable (nothing to compare)" if n_na else ""
        click.echo(f"crosscheck: {n_ok} passed{na}, {len(rows) - n_ok - n_na} failed")
    if not all(r.ok for r in rows):
        sys.exit(1)
