"""``mmintro run SCRIPT [SNAPSHOT]`` and ``mmintro shell [SNAPSHOT]``: Python with ``prog``
and the reader's helpers in scope, like ``drgn script.py`` and drgn's interactive mode."""

from __future__ import annotations

import code
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click

from mmintro.cli.snapshot import load, snapshot_argument

if TYPE_CHECKING:
    from mmintro.reader.program import Program

__all__ = ["namespace", "run", "shell"]


def namespace(prog: Program) -> dict[str, Any]:
    """``prog`` plus every public name of the reader, its helpers and the views' percpu helpers."""
    import numpy as np

    from mmintro import reader
    from mmintro.reader import columns
    from mmintro.reader.helpers import list as list_helpers
    from mmintro.reader.helpers import mm, mmzone
    from mmintro.views import percpu

    ns: dict[str, Any] = {"np": np}
    for mod in (reader, list_helpers, mm, mmzone, columns, percpu):
        ns.update({name: getattr(mod, name) for name in mod.__all__})
    ns["prog"] = prog
    return ns


@click.command("run")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@snapshot_argument
@click.argument("script_args", nargs=-1, metavar="[-- ARGS]")
def run(script: str, snapshot: str | None, script_args: tuple[str, ...]) -> None:
    """Execute SCRIPT with ``prog`` (the snapshot) and the helpers as globals."""
    with open(script, encoding="utf-8") as f:
        source = f.read()
    with load(snapshot) as prog:
        ns = namespace(prog)
        ns.update({"__name__": "__main__", "__file__": os.path.abspath(script)})
        old_argv = sys.argv
        sys.argv = [script, *script_args]
        try:
            exec(compile(source, script, "exec"), ns)
        except SystemExit:
            raise
        except Exception:
            etype, value, tb = sys.exc_info()
            tb = tb.tb_next if tb is not None else None  # drop this exec() frame
            traceback.print_exception(etype, value, tb)
            sys.exit(1)
        finally:
            sys.argv = old_argv


@click.command("shell")
@snapshot_argument
def shell(snapshot: str | None) -> None:
    """Interactive Python with ``prog`` and the helpers in scope."""
    with load(snapshot) as prog:
        ns = namespace(prog)
        banner = f"mmintro shell: prog = {prog!r}\nhelpers: pfn_to_page, for_each_zone, page_array, ..."
        code.interact(banner=banner, local=ns, exitmsg="")


COMMANDS = [run, shell]
