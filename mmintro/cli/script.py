"""``mmintro run SCRIPT [SNAPSHOT]`` and ``mmintro shell [SNAPSHOT]``: Python with ``prog``
and every helper in scope, like ``drgn script.py`` and drgn's interactive mode.

The names come from one list, :mod:`mmintro.reader.helpers.registry`; ``helpers()`` prints it
by topic.  The shell shows results as drgn's does (its displayhook prints ``str(obj)`` of an
Object: ``(unsigned long)258016``), and completes names and members with Tab."""

from __future__ import annotations

import builtins
import code
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click

from mmintro.cli.snapshot import load, snapshot_argument

if TYPE_CHECKING:
    from mmintro.reader.program import Program

__all__ = ["helpers", "namespace", "run", "shell"]


def helpers(topic: str | None = None) -> None:
    """Print every helper in scope by topic, with its arguments and what it does
    (``helpers("slab")``: one topic)."""
    from mmintro.reader.helpers.registry import format_helpers

    print(format_helpers(topic), end="")


def namespace(prog: Program) -> dict[str, Any]:
    """``prog``, every helper of the registry (and the classes and constants of their
    modules), ``helpers()``, and ``np``."""
    import numpy as np

    from mmintro.reader.helpers.registry import namespace_names

    ns: dict[str, Any] = {"np": np}
    ns.update(namespace_names())
    ns["helpers"] = helpers
    ns["prog"] = prog
    return ns


def displayhook(value: Any) -> None:
    """drgn's interactive displayhook: an Object is shown as ``str(obj)``, anything else as
    ``repr``; ``_`` keeps the last value."""
    from mmintro.reader.object import Object

    if value is None:
        return
    builtins._ = None  # type: ignore[attr-defined]
    text = str(value) if isinstance(value, Object) else repr(value)
    sys.stdout.write(text + "\n")
    builtins._ = value  # type: ignore[attr-defined]


class Completer:
    """rlcompleter over the namespace that also completes an Object's members (and those of
    the struct a pointer points to): ``prog["init_task"].m<Tab>`` -> ``mm``, ``min_flt``, ..."""

    def __init__(self, ns: dict[str, Any]) -> None:
        import rlcompleter

        self.ns = ns
        self._inner = rlcompleter.Completer(ns)

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            self.matches = self._matches(text)
        return self.matches[state] if state < len(self.matches) else None

    def _matches(self, text: str) -> list[str]:
        if "." not in text:
            out, i = [], 0
            while (m := self._inner.complete(text, i)) is not None:
                out.append(m)
                i += 1
            return out
        expr, _, attr = text.rpartition(".")
        try:
            # evaluating the expression is what rlcompleter does too (attr_matches)
            obj = eval(expr, self.ns)
        except Exception:
            return []
        names = dir(obj)
        out = [f"{expr}.{n}" for n in names if n.startswith(attr) and (attr.startswith("_") or not n.startswith("_"))]
        return sorted(set(out))


def _readline(ns: dict[str, Any]) -> None:
    try:
        import readline
    except ImportError:  # no readline: no completion, the shell still works
        return
    readline.set_completer(Completer(ns).complete)
    # a completer that sees whole expressions like prog["init_task"].comm: only whitespace
    # and operators separate words
    readline.set_completer_delims(" \t\n`~!@#$%^&*()-=+{}\\|;:,<>/?")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")


@click.command("run")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@snapshot_argument
@click.argument("script_args", nargs=-1, metavar="[-- ARGS]")
def run(script: str, snapshot: str | None, script_args: tuple[str, ...]) -> None:
    """Execute SCRIPT with ``prog`` (the snapshot) and every helper as globals (``helpers()``
    lists them)."""
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
    """Interactive Python with ``prog`` and every helper in scope; Objects print as drgn
    prints them; Tab completes names and members; ``helpers()`` lists the helpers."""
    with load(snapshot) as prog:
        ns = namespace(prog)
        n = sum(1 for v in ns.values() if callable(v))
        banner = (
            f"mmintro shell: prog = {prog!r}\n"
            f"{n} helpers and types in scope (for_each_task, pfn_to_page, find_slab_cache, xa_load, ...):\n"
            'helpers() lists them by topic, helpers("slab") one topic; Tab completes names and members.'
        )
        _readline(ns)
        old_hook = sys.displayhook
        sys.displayhook = displayhook
        try:
            code.interact(banner=banner, local=ns, exitmsg="")
        finally:
            sys.displayhook = old_hook


COMMANDS = [run, shell]
