"""/proc/iomem (kernel/resource.c: r_start, r_next, r_show), read from a snapshot.

The tree under ``iomem_resource`` is walked depth-first exactly like ``next_resource()``: a
resource's child first, else its sibling, else the nearest ancestor's sibling.  The walk is
bounded: a resource seen twice (a cycle) or a tree larger than :data:`MAX_RESOURCES` raises
:class:`~mmintro.reader.errors.ValidationError` instead of looping.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader.errors import ValidationError
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = ["MAX_IORES_LEVEL", "MAX_RESOURCES", "IomemRow", "iomem", "render"]

# kernel/resource.c: r_show() indents at most this many levels.
MAX_IORES_LEVEL = 5
# Far more than any real machine has; only there to turn corruption into an error.
MAX_RESOURCES = 1 << 16


class IomemRow(NamedTuple):
    """One line of /proc/iomem."""

    depth: int
    """Nesting level below the root (indent = 2 spaces per level, at most 5)."""
    start: int
    """First byte (physical address)."""
    end: int
    """Last byte, inclusive."""
    name: str
    """``resource->name`` (``<BAD>`` if NULL)."""
    address: int
    """Address of the ``struct resource``."""


def _name(r: Object) -> str:
    p = r.name
    if not p.value_():
        return "<BAD>"
    return p.string_().decode("utf-8", "replace")


def iomem(prog: Program, root_name: str = "iomem_resource") -> tuple[list[IomemRow], int]:
    """The resources under ``iomem_resource`` in /proc/iomem order, and the address width
    (``root->end < 0x10000 ? 4 : 8`` hex digits, as r_show chooses it)."""
    root = prog[root_name].address_of_()
    root_addr = int(root)
    width = 4 if root.end.value_() < 0x10000 else 8
    rows: list[IomemRow] = []
    seen = {root_addr}
    p = root.child
    while p.value_():
        addr = int(p)
        if addr in seen:
            raise ValidationError(f"{root_name}: resource {addr:#x} reached twice (a cycle in the tree)")
        seen.add(addr)
        if len(seen) > MAX_RESOURCES:
            raise ValidationError(f"{root_name}: more than {MAX_RESOURCES} resources")
        # r_show(): depth = number of parents before the root, capped at MAX_IORES_LEVEL.
        depth, q = 0, p
        while depth < MAX_IORES_LEVEL:
            parent = q.parent
            if int(parent) == root_addr or not parent.value_():
                break
            depth += 1
            q = parent
        rows.append(IomemRow(depth, p.start.value_(), p.end.value_(), _name(p), addr))
        # next_resource(p, skip_children=false)
        if p.child.value_():
            p = p.child
            continue
        hops = 0
        while not p.sibling.value_() and p.parent.value_() and int(p.parent) != root_addr:
            p = p.parent
            hops += 1
            if hops > MAX_RESOURCES:
                raise ValidationError(f"{root_name}: parent links of {addr:#x} do not reach the root")
        p = p.sibling
    return rows, width


def render(rows: list[IomemRow], width: int = 8) -> str:
    """``%*s%0*llx-%0*llx : %s`` per row."""
    return "".join(f"{'':{2 * r.depth}}{r.start:0{width}x}-{r.end:0{width}x} : {r.name}\n" for r in rows)
