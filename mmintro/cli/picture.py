"""``mmintro picture [SNAPSHOT] KIND``: a snapshot drawn in the terminal, or as a PNG file."""

from __future__ import annotations

import click

from mmintro.cli.errors import MmintroError
from mmintro.cli.snapshot import load

__all__ = ["command"]

KINDS = ("memory", "migratetype", "fragmentation", "address-space")


@click.command("picture")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] KIND")
@click.option("--png", "png", metavar="FILE", default=None, help="write a PNG file instead of drawing in the terminal")
@click.option("--pid", "pid", type=int, default=None, help="the process (address-space)")
def command(args: tuple[str, ...], png: str | None, pid: int | None) -> None:
    """Draw KIND: memory (every pfn's use: holes, reserved, free blocks by order, slab, page
    tables, page cache, anon, ... with zone spans), migratetype (every pageblock's
    migratetype), fragmentation (the unusable and extfrag indices per zone and order) or
    address-space (the VMAs of --pid PID with their size and Rss).  In the terminal one
    coloured letter per cell; with --png FILE, a PNG image (matplotlib)."""
    if len(args) == 1:
        snapshot, kind = None, args[0]
    elif len(args) == 2:
        snapshot, kind = args
    else:
        raise click.UsageError(f"expected [SNAPSHOT] KIND, got {len(args)} arguments")
    if kind not in KINDS:
        raise click.UsageError(f"unknown KIND {kind!r}: one of {', '.join(KINDS)}")
    if (kind == "address-space") != (pid is not None):
        raise click.UsageError("--pid PID goes with address-space (and address-space needs it)")
    from mmintro.views import picture

    with load(snapshot) as prog:
        if kind == "memory":
            data = picture.memory_map(prog)
        elif kind == "migratetype":
            data = picture.migratetype_map(prog)
        elif kind == "fragmentation":
            data = picture.fragmentation_picture(prog)
        else:
            assert pid is not None
            try:
                data = picture.address_space(prog, pid)
            except LookupError as e:
                raise MmintroError(str(e)) from None
    if png is None:
        picture.render_terminal(kind, data)
        return
    from mmintro.views.picture_png import write_png

    try:
        write_png(kind, data, png)
    except OSError as e:
        raise MmintroError(f"cannot write {png}: {e.strerror or e}") from None
    click.echo(f"wrote {png}")
