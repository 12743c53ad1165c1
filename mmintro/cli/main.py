"""The ``mmintro`` command: a click group of subcommands, and :func:`main`, which turns
expected errors into ``mmintro: error: <one line>`` and exit status 1 (2: a usage error; 3: the
report went on past findings, values the kernel does not allow -- mmintro.reader.validate).

Commands are listed in :data:`COMMAND_MODULES`; a module listed in
:data:`OPTIONAL_COMMAND_MODULES` (``mmintro/cli/crosscheck.py``) is added when it exists.  A
command module exposes ``command`` (one click command) or ``COMMANDS`` (a list).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from mmintro.cli.errors import EXPECTED_ERRORS, MmintroError, install_one_line_errors, one_line
from mmintro.cli.output import FINDINGS_META
from mmintro.cli.snapshot import kernel_options

install_one_line_errors()

__all__ = ["cli", "main"]

COMMAND_MODULES = (
    "simulate",
    "scenarios",
    "reports",
    "script",
    "faults",
    "qemu_dump",
    "debuginfo",
    "verify",
    "inspect",
    "picture",
    "diff",
)
OPTIONAL_COMMAND_MODULES = ("crosscheck",)


class MmintroGroup(click.Group):
    """A group whose subcommands report expected errors in one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            rv = super().invoke(ctx)
        except EXPECTED_ERRORS as e:
            raise MmintroError(one_line(e)) from None
        if ctx.meta.get(FINDINGS_META):  # the report went on past findings (mmintro.cli.output.emit)
            ctx.exit(3)
        return rv


EXAMPLES = """\b
Examples:
  mmintro simulate --output out/default     the default machine (a few processes, page cache, swap ...)
  mmintro crosscheck out/default            the same snapshot read by real drgn: every row agrees
  mmintro meminfo out/default               /proc/meminfo of the snapshot
  mmintro ps                                the processes of the default machine (simulated once, cached)
  mmintro scenarios                         the shipped scenarios; `scenarios show NAME` says what each shows
  mmintro simulate fork-cow -o out/fork-cow && mmintro smaps-rollup out/fork-cow 2
  drgn -c out/default.vmcore -s out/default.vmlinux   the snapshot in drgn itself

\b
docs/tour.md (in the repository) walks the memory manager topic by topic with these commands.
"""


@click.group(cls=MmintroGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.version_option(package_name="mmintro", prog_name="mmintro")
def cli() -> None:
    """mmintro: a simulated Linux 6.18 x86-64 memory manager and its crash-dump snapshots.

    Report commands read SNAPSHOT (NAME, NAME.vmcore or NAME.vmlinux); without it they read
    the built-in default machine (4 GiB, 1 node, 2 CPUs, running the default scenario: a few
    processes, page cache, slab, huge pages and swap), simulated once and cached.
    """


# Commands that read a dump take --kernel/--system-map (a real kernel's dump).
_READS_A_DUMP = ("reports", "script", "crosscheck", "verify", "inspect", "picture", "diff")


def _add(module: Any, name: str) -> None:
    cmds = getattr(module, "COMMANDS", None) or [module.command]
    for c in cmds:
        if name in _READS_A_DUMP:
            kernel_options(c)
        cli.add_command(c)


for _name in COMMAND_MODULES:
    _add(importlib.import_module(f"mmintro.cli.{_name}"), _name)
for _name in OPTIONAL_COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"mmintro.cli.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"mmintro.cli.{_name}":
            raise
    else:
        _add(_mod, _name)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``mmintro`` script."""
    try:
        return cli.main(args=argv, prog_name="mmintro")
    except EXPECTED_ERRORS as e:  # raised outside a subcommand (e.g. while parsing)
        click.echo(f"mmintro: error: {one_line(e)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
