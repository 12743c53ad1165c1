"""Renderers shared by the report commands: text as-is, or JSON.

JSON has one rule for addresses in every report: a field that holds an address -- a kernel
virtual address (a struct's, an object's, a symbol's), a physical address or a user virtual
address -- or a raw page-table entry is a ``"0x..."`` string (lower-case hex, ``"0x0"`` for
NULL), never a decimal integer; counts, sizes, offsets, pfns, indexes and ids stay integers.
Which fields hold addresses is decided by their name, the same way in every report
(:data:`ADDRESS_FIELDS`); :func:`hex_addresses` applies it to the data a view built.
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["ADDRESS_FIELDS", "FINDINGS_META", "PROGRAMS_META", "emit", "hex_addresses", "json_option"]

#: The names of JSON fields that hold addresses (or raw page-table entries), in any report.
ADDRESS_FIELDS = frozenset(
    {
        # generic
        "address",
        "addr",
        "vaddr",
        "paddr",
        "phys",
        "phys_addr",
        "start",
        "end",
        "object",
        # struct pointers: tasks, mms, page tables, VMAs
        "task",
        "mm",
        "pgd",
        "vma",
        "vm_start",
        "vm_end",
        # pages and slabs
        "page",
        "mapping",
        "compound_head",
        "slab",
        "memory",
        "cache",
        "kmem_cache_node",
        "freelist",
        "sheaf_main",
        "sheaf_spare",
        # page-table walks: the table, the entry's address and the entry itself
        "table",
        "entry_addr",
        "entry",
        "leaf_entry",
        "slot",
        # vmalloc areas, swap devices
        "vm_struct",
        "vmap_area",
        "si",
    }
)


def _hex(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int):
        return v
    return f"{v & (1 << 64) - 1:#x}" if v < 0 else f"{v:#x}"


def hex_addresses(data: Any) -> Any:
    """``data`` with every integer held by an :data:`ADDRESS_FIELDS` key (or a list under one)
    as a ``"0x..."`` string; NamedTuples become dicts, other values are unchanged."""
    if isinstance(data, tuple) and hasattr(data, "_asdict"):
        data = data._asdict()
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ADDRESS_FIELDS:
                if isinstance(v, list):
                    v = [_hex(x) if not isinstance(x, (dict, list)) else hex_addresses(x) for x in v]
                elif not isinstance(v, dict):
                    v = _hex(v)
                else:
                    v = hex_addresses(v)
            else:
                v = hex_addresses(v)
            out[k] = v
        return out
    if isinstance(data, (list, tuple)):
        return [hex_addresses(x) for x in data]
    return data


PROGRAMS_META = "mmintro.programs"
"""``ctx.meta`` key: the programs :func:`mmintro.cli.snapshot.load` opened for this command."""
FINDINGS_META = "mmintro.findings"
"""``ctx.meta`` key: how many findings :func:`emit` printed (the command then exits 3)."""


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")(f)


def _findings() -> list[Any]:
    """The findings (mmintro.reader.validate) the views noted on this command's programs."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get(PROGRAMS_META):
        return []
    from mmintro.reader.validate import noted

    out: list[Any] = []
    for prog in ctx.meta[PROGRAMS_META]:
        out += noted(prog)
    ctx.meta[FINDINGS_META] = ctx.meta.get(FINDINGS_META, 0) + len(out)
    return out


def emit(text: str | None = None, data: Any = None, as_json: bool = False) -> None:
    """Print the text rendering, or ``data`` as JSON (addresses as hex strings, see
    :func:`hex_addresses`) when ``--json`` was given.

    With findings (values the kernel does not allow, noted by the views): the text is
    followed by one ``# finding: ...`` line each, the JSON is ``{"report": data, "findings":
    [...]}``, a line on stderr says so, and the command exits 3 (mmintro.cli.main)."""
    found = _findings()
    if as_json:
        if found:
            data = {"report": data, "findings": [f.to_json() for f in found]}
        click.echo(json.dumps(hex_addresses(data), indent=2))
    else:
        click.echo(text, nl=False)
        for f in found:
            click.echo(f"# finding: {f.check}: {f}")
    if found:
        n = len(found)
        click.echo(
            f"mmintro: {n} finding{'s' if n > 1 else ''}: the snapshot holds values the kernel does not "
            "allow (exit status 3)",
            err=True,
        )
