"""``mmintro crosscheck``: the snapshot in real drgn (or the real crash 9) vs mmintro's reader, as a table."""

from __future__ import annotations

import importlib.util
import json
import sys

import click

from mmintro.cli.snapshot import default_snapshot, snapshot_argument

#: ``--only failed``: print only the rows that disagree (not a row name).
FAILED = "failed"


@click.command("crosscheck")
@snapshot_argument
@click.option(
    "--only",
    multiple=True,
    metavar="NAME|failed",
    help="run only the rows whose name contains NAME (repeatable; a NAME no row has is a usage error that "
    "lists the rows; the slow census row runs only when named); --only failed prints only the rows that "
    "disagree (all selected rows still run and count in the summary)",
)
@click.option(
    "--crash",
    "use_crash",
    is_flag=True,
    help="compare with the real crash utility (crash 9, fetched from Debian and cached) instead of drgn",
)
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="with --crash: seconds the crash session may run"
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="a line on stderr as each row finishes ([ 7/45] NAME ... agree (0.4 s)); default: when stderr is a terminal",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='print JSON instead of the table: every row with both answers in full (addresses as "0x..." strings), '
    "status, detail and seconds",
)
def command(
    snapshot: str | None, only: tuple[str, ...], use_crash: bool, timeout: float, progress: bool | None, as_json: bool
) -> None:
    """Open SNAPSHOT in real drgn, run drgn's stock helpers and crash commands, and compare
    each answer with mmintro's reader; with --crash, run the real crash 9 in batch mode on it
    and compare its commands' numbers with mmintro's reports.

    The table shows the answers abbreviated (--json prints them in full), addresses in hex; a
    summary line ends it.  Exits 1 if any row disagrees (or could not run)."""
    meta = click.get_current_context().meta
    kernel, system_map = meta.get("mmintro.kernel"), meta.get("mmintro.system_map")
    if kernel is None and system_map is not None:
        raise click.UsageError("--system-map goes with --kernel (a real kernel's dump)")
    if kernel is not None and not snapshot:
        raise click.UsageError("--kernel needs the dump to read: mmintro crosscheck VMCORE --kernel VMLINUZ")
    if use_crash and kernel is not None:
        raise click.UsageError(
            "--crash compares mmintro's snapshots (NAME.vmlinux + NAME.vmcore); "
            "a real kernel's dump needs its debuginfo vmlinux"
        )
    failed_only = any(o.lower() == FAILED for o in only)
    names = [o for o in only if o.lower() != FAILED]
    _check_names(names, use_crash)
    path = snapshot or str(default_snapshot())
    if progress is None:
        progress = sys.stderr.isatty()
    show = _show_progress if progress else None
    if use_crash:
        from mmintro.crosscheck.crash_utility import CrashStartError, run_crash_crosscheck
        from mmintro.realkernel.debian import HarnessError

        note = (lambda text: click.echo(text, err=True)) if progress else None
        try:
            rows = run_crash_crosscheck(
                path, names or None, timeout=timeout, raise_on_start=True, progress=show, note=note
            )
        except (HarnessError, CrashStartError) as e:
            click.echo(f"mmintro: {e}", err=True)
            sys.exit(1)
        _report(rows, path, "crash", as_json, failed_only)
        return
    if importlib.util.find_spec("drgn") is None:
        raise click.ClickException("crosscheck needs drgn: pip install 'mmintro[drgn]'")
    from mmintro.crosscheck import run_crosscheck

    rows = run_crosscheck(path, names or None, kernel=kernel, system_map=system_map, progress=show)
    _report(rows, path, "drgn", as_json, failed_only)


def _check_names(names: list[str], use_crash: bool) -> None:
    """Every --only NAME must be part of some row's name (of the rows of this mode)."""
    if use_crash:
        from mmintro.crosscheck.crash_utility import CRASH_CHECKS

        rows = [c.name for c in CRASH_CHECKS]
    else:
        from mmintro.crosscheck import CHECKS, SLOW_CHECKS

        rows = [n for n, _ in CHECKS + SLOW_CHECKS]
    unknown = [o for o in names if not any(o in r for r in rows)]
    if unknown:
        which = "crash" if use_crash else "drgn"
        raise click.UsageError(
            f"--only {unknown[0]!r} matches no {which} row; the rows are: " + "; ".join(rows) + f"; or --only {FAILED}"
        )


def _show_progress(done: int, total: int, r) -> None:
    w = len(str(total))
    click.echo(f"[{done:{w}d}/{total}] {r.name} ... {r.status} ({r.seconds:.1f} s)", err=True)


def _summary(rows: list) -> str:
    n = len(rows)
    agree = sum(r.status == "agree" for r in rows)
    na = [r.skipped for r in rows if r.status == "n/a"]
    errors = sum(r.status == "error" for r in rows)
    s = f"{n} row{'s' if n != 1 else ''}: {agree} agree, {n - agree - len(na)} disagree"
    if errors:
        s += f" ({errors} could not run)"
    s += f", {len(na)} n/a"
    if na:
        s += " (" + "; ".join(dict.fromkeys(na)) + ")"
    return s


def _row_json(r, oracle: str) -> dict:
    from mmintro.crosscheck.answers import answer_json

    return {
        "name": r.name,
        "status": r.status,
        "ok": r.ok,
        "mmintro": answer_json(r.mmintro),
        oracle: answer_json(r.drgn),
        "oracle": r.oracle,
        "detail": r.detail,
        "skipped": r.skipped,
        "seconds": round(r.seconds, 3),
    }


def _report(rows: list, path: str, oracle: str, as_json: bool, failed_only: bool) -> None:
    shown = [r for r in rows if not r.ok] if failed_only else rows
    if as_json:
        click.echo(json.dumps([_row_json(r, oracle) for r in shown], indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from mmintro.crosscheck.answers import TEXT_WIDTH, abbreviate

        cut = False

        def cell(v, width: int = TEXT_WIDTH, is_text: bool = False) -> str:
            nonlocal cut
            text, was_cut = abbreviate(v, width, is_text)
            cut |= was_cut
            return escape(text)

        if shown:
            title = f"mmintro vs {oracle} on {path}" + (" (the rows that disagree)" if failed_only else "")
            t = Table(title=title)
            for col in ("check", "mmintro", oracle, "agree"):
                t.add_column(col, overflow="fold")
            for r in shown:
                if r.status == "n/a":
                    t.add_row(escape(r.name), "-", "-", f"[yellow]n/a[/] ({escape(r.skipped)})")
                elif r.status == "error":
                    t.add_row(escape(r.name), "-", "-", f"[red]ERROR[/] {cell(r.detail, 2 * TEXT_WIDTH, is_text=True)}")
                else:
                    verdict = "[green]yes[/]" if r.ok else f"[red]NO[/] {cell(r.detail, 2 * TEXT_WIDTH, is_text=True)}"
                    t.add_row(escape(r.name), cell(r.mmintro), cell(r.drgn), verdict)
            Console(width=160).print(t)
        if cut:
            click.echo(
                f"(answers cut at {TEXT_WIDTH} characters, differences at {2 * TEXT_WIDTH}: --json prints them in full)"
            )
        click.echo(_summary(rows))
    if not all(r.ok for r in rows):
        sys.exit(1)
