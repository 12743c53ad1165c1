"""How the command line reports failures: one line on stderr, exit status 1, no traceback."""

from __future__ import annotations

from typing import IO, Any

import click

from mmintro.reader.errors import FaultError, SnapshotError, ValidationError

__all__ = ["EXPECTED_ERRORS", "MmintroError", "one_line"]

# Errors that describe the input (files, addresses, arguments), not a bug in mmintro.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    SnapshotError, FaultError, ValidationError, ValueError, OSError,
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
