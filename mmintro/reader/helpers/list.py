"""Doubly-linked lists (``struct list_head``, include/linux/list.h).

Walks are bounded and checked: every node's ``next->prev`` must point back at it, and a node
seen twice (a cycle that does not return to the head) is an error.  Both raise
:class:`~mmintro.reader.errors.ValidationError` naming the list, like drgn's
``validate_list_for_each``.
"""

from __future__ import annotations

from collections.abc import Iterator

from mmintro.reader.errors import ValidationError
from mmintro.reader.object import Object, container_of
from mmintro.types.typedata import Type

__all__ = [
    "list_empty",
    "list_is_singular",
    "list_count_nodes",
    "list_first_entry",
    "list_for_each",
    "list_for_each_entry",
    "list_for_each_reverse",
    "list_for_each_entry_reverse",
    "validate_list_for_each",
    "validate_list_for_each_entry",
]


def _name(head: Object, name: str | None) -> str:
    if name:
        return name
    addr = int(head)
    return f"list {head.prog_.symbols.describe(addr)} ({addr:#x})"


def _ptr(head: Object) -> Object:
    return head if head.type_.resolved().kind == "ptr" else head.address_of_()


def list_empty(head: Object) -> bool:
    """Whether a list is empty.

    :param head: ``struct list_head *``
    """
    head = _ptr(head)
    return int(head.next) == int(head)


def list_is_singular(head: Object) -> bool:
    """Whether a list has exactly one entry.

    :param head: ``struct list_head *``
    """
    head = _ptr(head)
    nxt = int(head.next)
    return nxt != int(head) and nxt == int(head.prev)


def _walk(head: Object, direction: str, name: str | None, limit: int | None) -> Iterator[Object]:
    head = _ptr(head)
    back = "prev" if direction == "next" else "next"
    prog = head.prog_
    t = head.type_
    head_addr = int(head)
    seen: set[int] = {head_addr}
    pos = head_addr
    while True:
        nxt = int(Object(prog, t, pos).member_(direction))
        node = Object(prog, t, nxt)
        if int(node.member_(back)) != pos:
            raise ValidationError(
                f"{_name(head, name)}: {direction} of {pos:#x} is {nxt:#x}, whose {back} is "
                f"{int(node.member_(back)):#x} (broken link)"
            )
        if nxt == head_addr:
            return
        if nxt in seen:
            raise ValidationError(f"{_name(head, name)}: cycle at {nxt:#x} that does not return to the head")
        seen.add(nxt)
        if limit is not None and len(seen) > limit:
            raise ValidationError(f"{_name(head, name)}: more than {limit} entries")
        yield node
        pos = nxt


def list_for_each(head: Object, name: str | None = None, limit: int | None = None) -> Iterator[Object]:
    """Iterate over the nodes of a list (validated, see the module docstring).

    :param head: ``struct list_head *``
    :param name: what to call the list in errors (default: its symbol or address)
    :return: Iterator of ``struct list_head *`` objects.
    """
    return _walk(head, "next", name, limit)


def list_for_each_reverse(head: Object, name: str | None = None, limit: int | None = None) -> Iterator[Object]:
    """Iterate over the nodes of a list backwards.

    :param head: ``struct list_head *``
    :return: Iterator of ``struct list_head *`` objects.
    """
    return _walk(head, "prev", name, limit)


def list_for_each_entry(
    type: Type | str, head: Object, member: str, name: str | None = None, limit: int | None = None
) -> Iterator[Object]:
    """Iterate over the entries of a list.

    :param type: entry type, e.g. ``"struct kmem_cache"``
    :param head: ``struct list_head *``
    :param member: name of the list node member in the entry
    :return: Iterator of ``type *`` objects.
    """
    for node in list_for_each(head, name, limit):
        yield container_of(node, type, member)


def list_for_each_entry_reverse(
    type: Type | str, head: Object, member: str, name: str | None = None, limit: int | None = None
) -> Iterator[Object]:
    """Iterate over the entries of a list backwards.

    :return: Iterator of ``type *`` objects.
    """
    for node in list_for_each_reverse(head, name, limit):
        yield container_of(node, type, member)


def list_first_entry(head: Object, type: Type | str, member: str) -> Object:
    """The first entry of a non-empty list.

    :param head: ``struct list_head *``
    :return: ``type *``
    """
    return container_of(_ptr(head).next, type, member)


def list_count_nodes(head: Object, name: str | None = None) -> int:
    """Number of nodes in a list (validated).

    :param head: ``struct list_head *``
    """
    return sum(1 for _ in list_for_each(head, name))


# drgn spells the checked walks validate_*; ours always validate.
validate_list_for_each = list_for_each
validate_list_for_each_entry = list_for_each_entry
