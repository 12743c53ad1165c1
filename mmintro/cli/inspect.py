"""crash's inspection commands: ``struct``, ``p``, ``rd`` and ``sym`` (mmintro.views.inspect).

Like the reports, each takes the snapshot first and optional: ``mmintro struct [SNAPSHOT] TYPE
[ADDR]``; with two arguments the first is the snapshot when such a file exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from mmintro.cli.errors import MmintroError
from mmintro.cli.reports import _check_address, _is_snapshot
from mmintro.cli.snapshot import load

__all__ = ["COMMANDS"]

_ADDR_HELP = (
    "ADDR is hex with or without 0x, decimal only as 0dNNN, a symbol, or symbol+offset (the offset hex, or 0dNNN)."
)


def _view():  # type: ignore[no-untyped-def]
    from mmintro.views import inspect

    return inspect


def _split(args: tuple[str, ...], least: int, most: int, usage: str) -> tuple[str | None, list[str]]:
    """``[SNAPSHOT] ARG...``: the snapshot when there is room for it and it exists (or there
    are more arguments than the command takes without one)."""
    if not least <= len(args) <= most + 1:
        raise click.UsageError(f"expected {usage}, got {len(args)} arguments")
    if len(args) == most + 1 or (len(args) > least and _is_snapshot(args[0])):
        return args[0], list(args[1:])
    return None, list(args)


@contextmanager
def _errors() -> Iterator[None]:
    """A type, member or symbol the dump does not have: one line, exit 1."""
    try:
        yield
    except LookupError as e:
        msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        raise MmintroError(msg) from None


@click.command("struct")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] TYPE[.MEMBER[,MEMBER]] [ADDR] [COUNT]")
@click.option("-o", "offsets", is_flag=True, help="member offsets (with ADDR: each member's address), like struct -o")
@click.option("-x", "hex_output", is_flag=True, help="values in hexadecimal (crash's struct -x)")
def struct(args: tuple[str, ...], offsets: bool, hex_output: bool) -> None:
    """crash's struct: without ADDR the layout of TYPE (with -o its member offsets) and its
    SIZE; with ADDR the structure there, member by member with values; with .MEMBER only
    those members; with COUNT that many structures of an array."""
    snapshot, rest = _split(args, 1, 3, "[SNAPSHOT] TYPE [ADDR] [COUNT]")
    spec, addr_text, count_text = (rest + [None, None])[:3]
    assert spec is not None
    if addr_text is not None:
        _check_address(addr_text, "ADDR")
    count = 1
    if count_text is not None:
        try:
            count = int(count_text, 0)
        except ValueError:
            raise click.BadParameter(f"{count_text!r} is not a count", param_hint="COUNT") from None
        if not 1 <= count <= 1 << 16:
            raise click.BadParameter(f"{count_text!r}: give 1 to 65536 structures", param_hint="COUNT")
    v = _view()
    with load(snapshot) as prog, _errors():
        if addr_text is None:
            if hex_output:
                raise click.UsageError("-x needs ADDR")
            click.echo(v.struct_layout(prog, spec, offsets=offsets), nl=False)
            return
        addr = v.parse_address(prog, addr_text)
        click.echo(v.struct_value(prog, spec, addr, offsets=offsets, hex_output=hex_output, count=count), nl=False)


struct.help = (struct.help or "").rstrip() + "  " + _ADDR_HELP


@click.command("p")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] EXPR")
@click.option("-x", "hex_output", is_flag=True, help="print in hexadecimal (crash's p -x)")
def p(args: tuple[str, ...], hex_output: bool) -> None:
    """crash's p (gdb's print): EXPR is a global (jiffies), members (init_task.mm,
    node_data[0]->node_zones[1].name), array elements, *, &, casts ((struct page *)0x...), + and
    -; a per-CPU symbol takes :CPU, :N-M or :a (vm_event_states:1), and alone lists its per-CPU
    addresses.  Numbers in EXPR are C's (0x for hex).  Quote EXPR for the shell."""
    if not args:
        raise click.UsageError("expected [SNAPSHOT] EXPR")
    if len(args) >= 2 and _is_snapshot(args[0]):
        snapshot, expr = args[0], " ".join(args[1:])
    else:
        snapshot, expr = None, " ".join(args)
    with load(snapshot) as prog, _errors():
        click.echo(_view().print_expression(prog, expr, hex_output=hex_output), nl=False)


@click.command("rd")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] ADDR [COUNT]")
@click.option("-8", "size", flag_value=1, help="8-bit values")
@click.option("-16", "size", flag_value=2, help="16-bit values")
@click.option("-32", "size", flag_value=4, help="32-bit values")
@click.option("-64", "size", flag_value=8, default=True, help="64-bit values (the default)")
@click.option("-p", "physical", is_flag=True, help="ADDR is a physical address")
@click.option("-s", "symbols", is_flag=True, help="show values inside kernel symbols as name+offset (crash's rd -s)")
def rd(args: tuple[str, ...], size: int, physical: bool, symbols: bool) -> None:
    """crash's rd: COUNT (default 1) values from ADDR, hex with their ASCII."""
    snapshot, rest = _split(args, 1, 2, "[SNAPSHOT] ADDR [COUNT]")
    addr_text = rest[0]
    _check_address(addr_text, "ADDR")
    count = 1
    if len(rest) > 1:
        try:
            count = int(rest[1], 0)
        except ValueError:
            raise click.BadParameter(f"{rest[1]!r} is not a count", param_hint="COUNT") from None
        if not 1 <= count <= 1 << 20:
            raise click.BadParameter(f"{rest[1]!r}: give 1 to {1 << 20} values", param_hint="COUNT")
    v = _view()
    with load(snapshot) as prog, _errors():
        addr = v.parse_address(prog, addr_text)
        click.echo(v.rd(prog, addr, count, int(size), physical=physical, symbols=symbols), nl=False)


rd.help = (rd.help or "").rstrip() + "  " + _ADDR_HELP


@click.command("sym")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] NAME|ADDR")
def sym(args: tuple[str, ...]) -> None:
    """crash's sym: a symbol's address, nm type letter and name (every symbol of that name),
    or for an address the symbol at or before it as name+offset (decimal, as crash prints it).
    ADDR is hex with or without 0x, or 0dNNN."""
    snapshot, rest = _split(args, 1, 1, "[SNAPSHOT] NAME|ADDR")
    with load(snapshot) as prog, _errors():
        click.echo(_view().sym(prog, rest[0]), nl=False)


COMMANDS = [struct, p, rd, sym]
