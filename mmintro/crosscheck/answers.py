"""How ``mmintro crosscheck`` shows a row's answers: in full as JSON, abbreviated in the table,
addresses in hex in both.

The answers are what the rows return (ints, strings, tuples, lists, dicts, sets).  An integer is
shown as ``0x...`` (a ``"0x..."`` string in JSON, the convention of :mod:`mmintro.cli.output`)
when it is an address:

* any integer in the kernel's half of the x86-64 address space (at or above
  :data:`KERNEL_HALF`, 5-level paging's start of it): no count, pfn, size or flag word a row
  compares comes near it, while every struct pointer, symbol, slab object and vmalloc address does;
* a value a row marks :class:`Addr` (user virtual and physical addresses, which their value alone
  does not tell from a count);
* a value held in a dict under one of :data:`mmintro.cli.output.ADDRESS_FIELDS` (``"start"``,
  ``"phys"``, ``"vma"`` ...), as in every other report's JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mmintro.cli.output import ADDRESS_FIELDS

__all__ = ["KERNEL_HALF", "TEXT_WIDTH", "Addr", "abbreviate", "as_addr", "answer_json", "answer_text", "is_address"]

#: Where the kernel's half of the address space starts under 5-level paging (4-level paging's
#: 0xffff800000000000 is above it).
KERNEL_HALF = 0xFF00000000000000

#: How many characters of an answer the table shows.
TEXT_WIDTH = 60


class Addr(int):
    """An integer that is an address (compares equal to the plain int), shown in hex."""

    def __repr__(self) -> str:
        return f"{int(self):#x}"

    __str__ = __repr__


def as_addr(v: int | None) -> Addr | None:
    """``v`` marked an address (None stays None)."""
    return None if v is None else Addr(v)


def is_address(v: Any) -> bool:
    """Whether ``v`` is an integer shown as an address (see the module's docstring)."""
    if isinstance(v, bool) or not _is_int(v):
        return False
    return isinstance(v, Addr) or KERNEL_HALF <= int(v) < 1 << 64


def _is_int(v: Any) -> bool:
    if isinstance(v, int):
        return True
    return type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind in "iu"


def _hex(v: Any) -> str:
    return f"{int(v) & (1 << 64) - 1:#x}"


def answer_json(v: Any, address: bool = False) -> Any:
    """``v`` as JSON data, in full: tuples and sets as lists (sets sorted), dict keys as strings
    (a tuple key as its text), addresses as ``"0x..."`` strings (``address``: ``v`` is held
    under an address field)."""
    if v is None or isinstance(v, (bool, str, float)):
        return v
    if _is_int(v):
        return _hex(v) if address or is_address(v) else int(v)
    if isinstance(v, dict):
        return {_key(k): answer_json(x, isinstance(k, str) and k in ADDRESS_FIELDS) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        v = sorted(v, key=repr)
    if isinstance(v, (list, tuple)):
        return [answer_json(x, address) for x in v]
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return str(v)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if _is_int(k) and not isinstance(k, bool):
        return _hex(k) if is_address(k) else str(int(k))
    return answer_text(k)


def answer_text(v: Any, address: bool = False) -> str:
    """``v`` as Python-like text, in full, addresses in hex."""
    return "".join(_text_parts(v, address))


def _text_parts(v: Any, address: bool = False) -> Iterator[str]:
    if v is None or isinstance(v, (bool, float, str)):
        yield repr(v)
    elif _is_int(v):
        yield _hex(v) if address or is_address(v) else str(int(v))
    elif isinstance(v, dict):
        yield "{"
        for i, (k, x) in enumerate(v.items()):
            yield ", " if i else ""
            yield from _text_parts(k)
            yield ": "
            yield from _text_parts(x, isinstance(k, str) and k in ADDRESS_FIELDS)
        yield "}"
    elif isinstance(v, (list, tuple, set, frozenset)):
        if isinstance(v, (set, frozenset)) and not v:
            yield "set()"
            return
        opening, closing = "[]" if isinstance(v, list) else "()" if isinstance(v, tuple) else "{}"
        yield opening
        for i, x in enumerate(sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v):
            yield ", " if i else ""
            yield from _text_parts(x, address)
        yield "," + closing if isinstance(v, tuple) and len(v) == 1 else closing
    else:
        yield repr(v)


def abbreviate(v: Any, width: int = TEXT_WIDTH, is_text: bool = False) -> tuple[str, bool]:
    """An answer (or with ``is_text`` a text, as it is) cut to ``width`` characters (ending in
    "..."), and whether it was cut; a long answer is rendered only as far as the cut."""
    parts = [v] if is_text else _text_parts(v)
    out, n = [], 0
    for s in parts:
        out.append(s)
        n += len(s)
        if n > width:
            return "".join(out)[: width - 3] + "...", True
    return "".join(out), False
