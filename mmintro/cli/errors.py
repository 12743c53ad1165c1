"""How the command line reports failures: one line on stderr, exit status 1, no traceback."""

from __future__ import annotations

from typing import IO, Any

import click

from mmintro.reader.errors import FaultError, SnapshotError, ValidationError

__all__ = ["EXPECTED_ERRORS", "MmintroError", "install_one_line_errors", "one_line"]

# Errors that describe the input (files, addresses, arguments), not a bug in mmintro.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    SnapshotError,
    FaultError,
    ValidationError,
    ValueError,
    OSError,
)


def one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        msg = f"{e.strerror}: {e.filename!r}" if e.filename else e.strerror
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


class MmintroError(click.ClickException):
    """``mmintro: error: <message>`` on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"mmintro: error: {self.format_message()}", err=True, file=file)


def _usage_show(self: click.UsageError, file: IO[Any] | None = None) -> None:
    """A usage error (a bad option or argument) as one line too, with the exit status 2 click
    gives it: ``mmintro: error: <message> (see --help)``."""
    click.echo(f"mmintro: error: {' '.join(self.format_message().split())} (see --help)", err=True, file=file)


def _plain_show(self: click.ClickException, file: IO[Any] | None = None) -> None:
    click.echo(f"mmintro: error: {' '.join(self.format_message().split())}", err=True, file=file)


def install_one_line_errors() -> None:
    """Every failure the CLI reports starts ``mmintro: error:`` and is one line: click's own
    usage errors and ClickExceptions included (they would print ``Usage: ...`` and ``Error:``)."""
    click.UsageError.show = _usage_show  # type: ignore[method-assign]
    click.ClickException.show = _plain_show  # type: ignore[method-assign]
