"""Red-black trees in simulated memory (lib/rbtree.c, include/linux/rbtree*.h of 6.18).

The kernel's rbtree is intrusive: a ``struct rb_node`` (``__rb_parent_color``, ``rb_right``,
``rb_left``) sits inside each object and a ``struct rb_root`` holds the top node.  The
colour lives in bit 0 of the parent word (RB_RED 0, RB_BLACK 1).  Every function here reads
and writes those words in simulated memory, in the order the kernel's does, so a tree built
by the simulator is the tree the kernel would have built from the same operations: same
shape, same colours, and the same stale words where the kernel leaves them stale (an
erased node keeps its old links until someone overwrites them).

Addresses are kernel virtual addresses of ``struct rb_node`` / ``struct rb_root``; a
"link" (the kernel's ``struct rb_node **``) is the address of the pointer word to fill
(``&root->rb_node`` or ``&parent->rb_left`` / ``&parent->rb_right``).  The augmented
variants take an :class:`RbAugment` with the ``propagate``/``copy``/``rotate`` callbacks
RB_DECLARE_CALLBACKS would generate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mmintro.types import get_types

__all__ = [
    "RB_BLACK",
    "RB_CLEAR_NODE",
    "RB_EMPTY_NODE",
    "RB_EMPTY_ROOT",
    "RB_RED",
    "RbAugment",
    "RbMem",
    "rb_color",
    "rb_erase",
    "rb_erase_augmented",
    "rb_first",
    "rb_inorder",
    "rb_insert_augmented",
    "rb_insert_color",
    "rb_is_black",
    "rb_is_red",
    "rb_last",
    "rb_link_node",
    "rb_next",
    "rb_parent",
    "rb_prev",
]

_T = get_types()
# struct rb_node / struct rb_root member offsets, from the type data.
PC = _T.struct("rb_node").offsetof("__rb_parent_color")
RIGHT = _T.struct("rb_node").offsetof("rb_right")
LEFT = _T.struct("rb_node").offsetof("rb_left")
ROOT_NODE = _T.struct("rb_root").offsetof("rb_node")

# include/linux/rbtree_augmented.h (#defines)
RB_RED = 0
RB_BLACK = 1


class RbMem:
    """The u64 accessors the tree code uses: ``read(vaddr)`` and ``write(vaddr, value)``."""

    def __init__(self, read: Callable[[int], int], write: Callable[[int, int], None]) -> None:
        self.read = read
        self.write = write


class RbAugment(Protocol):
    """struct rb_augment_callbacks."""

    def propagate(self, node: int, stop: int) -> None: ...

    def copy(self, old: int, new: int) -> None: ...

    def rotate(self, old: int, new: int) -> None: ...


# -- accessors (rbtree.h / rbtree_augmented.h) ----------------------------------------------
def rb_parent(m: RbMem, node: int) -> int:
    return m.read(node + PC) & ~3


def rb_color(m: RbMem, node: int) -> int:
    return m.read(node + PC) & 1


def rb_is_red(m: RbMem, node: int) -> bool:
    return not m.read(node + PC) & 1


def rb_is_black(m: RbMem, node: int) -> bool:
    return bool(m.read(node + PC) & 1)


def _left(m: RbMem, node: int) -> int:
    return m.read(node + LEFT)


def _right(m: RbMem, node: int) -> int:
    return m.read(node + RIGHT)


def rb_set_parent(m: RbMem, node: int, parent: int) -> None:
    m.write(node + PC, (m.read(node + PC) & 1) + parent)


def rb_set_parent_color(m: RbMem, node: int, parent: int, color: int) -> None:
    m.write(node + PC, parent + color)


def rb_set_black(m: RbMem, node: int) -> None:
    m.write(node + PC, m.read(node + PC) + RB_BLACK)


def RB_CLEAR_NODE(m: RbMem, node: int) -> None:
    m.write(node + PC, node)


def RB_EMPTY_NODE(m: RbMem, node: int) -> bool:
    return m.read(node + PC) == node


def RB_EMPTY_ROOT(m: RbMem, root: int) -> bool:
    return m.read(root + ROOT_NODE) == 0


def rb_link_node(m: RbMem, node: int, parent: int, link: int) -> None:
    """node->__rb_parent_color = parent; node->rb_left = node->rb_right = NULL; *link = node."""
    m.write(node + PC, parent)
    m.write(node + LEFT, 0)
    m.write(node + RIGHT, 0)
    m.write(link, node)


def __rb_change_child(m: RbMem, old: int, new: int, parent: int, root: int) -> None:
    if parent:
        if _left(m, parent) == old:
            m.write(parent + LEFT, new)
        else:
            m.write(parent + RIGHT, new)
    else:
        m.write(root + ROOT_NODE, new)


def __rb_rotate_set_parents(m: RbMem, old: int, new: int, root: int, color: int) -> None:
    parent = rb_parent(m, old)
    m.write(new + PC, m.read(old + PC))
    rb_set_parent_color(m, old, new, color)
    __rb_change_child(m, old, new, parent, root)


def _dummy(_old: int, _new: int) -> None:
    pass


# -- insertion (lib/rbtree.c __rb_insert) ---------------------------------------------------
def __rb_insert(m: RbMem, node: int, root: int, augment_rotate: Callable[[int, int], None]) -> None:
    parent = m.read(node + PC)  # rb_red_parent(): node is red, so the word is the pointer
    while True:
        # Loop invariant: node is red.
        if not parent:
            rb_set_parent_color(m, node, 0, RB_BLACK)
            break
        if rb_is_black(m, parent):
            break
        gparent = m.read(parent + PC)  # rb_red_parent(parent)
        tmp = _right(m, gparent)
        if parent != tmp:  # parent == gparent->rb_left
            if tmp and rb_is_red(m, tmp):
                # Case 1 - node's uncle is red (color flips).
                rb_set_parent_color(m, tmp, gparent, RB_BLACK)
                rb_set_parent_color(m, parent, gparent, RB_BLACK)
                node = gparent
                parent = rb_parent(m, node)
                rb_set_parent_color(m, node, parent, RB_RED)
                continue
            tmp = _right(m, parent)
            if node == tmp:
                # Case 2 - left rotate at parent.
                tmp = _left(m, node)
                m.write(parent + RIGHT, tmp)
                m.write(node + LEFT, parent)
                if tmp:
                    rb_set_parent_color(m, tmp, parent, RB_BLACK)
                rb_set_parent_color(m, parent, node, RB_RED)
                augment_rotate(parent, node)
                parent = node
                tmp = _right(m, node)
            # Case 3 - right rotate at gparent.
            m.write(gparent + LEFT, tmp)
            m.write(parent + RIGHT, gparent)
            if tmp:
                rb_set_parent_color(m, tmp, gparent, RB_BLACK)
            __rb_rotate_set_parents(m, gparent, parent, root, RB_RED)
            augment_rotate(gparent, parent)
            break
        else:
            tmp = _left(m, gparent)
            if tmp and rb_is_red(m, tmp):
                # Case 1 - color flips.
                rb_set_parent_color(m, tmp, gparent, RB_BLACK)
                rb_set_parent_color(m, parent, gparent, RB_BLACK)
                node = gparent
                parent = rb_parent(m, node)
                rb_set_parent_color(m, node, parent, RB_RED)
                continue
            tmp = _left(m, parent)
            if node == tmp:
                # Case 2 - right rotate at parent.
                tmp = _right(m, node)
                m.write(parent + LEFT, tmp)
                m.write(node + RIGHT, parent)
                if tmp:
                    rb_set_parent_color(m, tmp, parent, RB_BLACK)
                rb_set_parent_color(m, parent, node, RB_RED)
                augment_rotate(parent, node)
                parent = node
                tmp = _left(m, node)
            # Case 3 - left rotate at gparent.
            m.write(gparent + RIGHT, tmp)
            m.write(parent + LEFT, gparent)
            if tmp:
                rb_set_parent_color(m, tmp, gparent, RB_BLACK)
            __rb_rotate_set_parents(m, gparent, parent, root, RB_RED)
            augment_rotate(gparent, parent)
            break


# -- erase rebalancing (lib/rbtree.c ____rb_erase_color) -------------------------------------
def ____rb_erase_color(m: RbMem, parent: int, root: int, augment_rotate: Callable[[int, int], None]) -> None:
    node = 0
    while True:
        # Loop invariants: node is black (or NULL on the first iteration), node is not the
        # root, and every leaf path through parent and node is one black node short.
        sibling = _right(m, parent)
        if node != sibling:  # node == parent->rb_left
            if rb_is_red(m, sibling):
                # Case 1 - left rotate at parent.
                tmp1 = _left(m, sibling)
                m.write(parent + RIGHT, tmp1)
                m.write(sibling + LEFT, parent)
                rb_set_parent_color(m, tmp1, parent, RB_BLACK)
                __rb_rotate_set_parents(m, parent, sibling, root, RB_RED)
                augment_rotate(parent, sibling)
                sibling = tmp1
            tmp1 = _right(m, sibling)
            if not tmp1 or rb_is_black(m, tmp1):
                tmp2 = _left(m, sibling)
                if not tmp2 or rb_is_black(m, tmp2):
                    # Case 2 - sibling color flip.
                    rb_set_parent_color(m, sibling, parent, RB_RED)
                    if rb_is_red(m, parent):
                        rb_set_black(m, parent)
                    else:
                        node = parent
                        parent = rb_parent(m, node)
                        if parent:
                            continue
                    break
                # Case 3 - right rotate at sibling.
                tmp1 = _right(m, tmp2)
                m.write(sibling + LEFT, tmp1)
                m.write(tmp2 + RIGHT, sibling)
                m.write(parent + RIGHT, tmp2)
                if tmp1:
                    rb_set_parent_color(m, tmp1, sibling, RB_BLACK)
                augment_rotate(sibling, tmp2)
                tmp1 = sibling
                sibling = tmp2
            # Case 4 - left rotate at parent + color flips.
            tmp2 = _left(m, sibling)
            m.write(parent + RIGHT, tmp2)
            m.write(sibling + LEFT, parent)
            rb_set_parent_color(m, tmp1, sibling, RB_BLACK)
            if tmp2:
                rb_set_parent(m, tmp2, parent)
            __rb_rotate_set_parents(m, parent, sibling, root, RB_BLACK)
            augment_rotate(parent, sibling)
            break
        else:
            sibling = _left(m, parent)
            if rb_is_red(m, sibling):
                # Case 1 - right rotate at parent.
                tmp1 = _right(m, sibling)
                m.write(parent + LEFT, tmp1)
                m.write(sibling + RIGHT, parent)
                rb_set_parent_color(m, tmp1, parent, RB_BLACK)
                __rb_rotate_set_parents(m, parent, sibling, root, RB_RED)
                augment_rotate(parent, sibling)
                sibling = tmp1
            tmp1 = _left(m, sibling)
            if not tmp1 or rb_is_black(m, tmp1):
                tmp2 = _right(m, sibling)
                if not tmp2 or rb_is_black(m, tmp2):
                    # Case 2 - sibling color flip.
                    rb_set_parent_color(m, sibling, parent, RB_RED)
                    if rb_is_red(m, parent):
                        rb_set_black(m, parent)
                    else:
                        node = parent
                        parent = rb_parent(m, node)
                        if parent:
                            continue
                    break
                # Case 3 - left rotate at sibling.
                tmp1 = _left(m, tmp2)
                m.write(sibling + RIGHT, tmp1)
                m.write(tmp2 + LEFT, sibling)
                m.write(parent + LEFT, tmp2)
                if tmp1:
                    rb_set_parent_color(m, tmp1, sibling, RB_BLACK)
                augment_rotate(sibling, tmp2)
                tmp1 = sibling
                sibling = tmp2
            # Case 4 - right rotate at parent + color flips.
            tmp2 = _right(m, sibling)
            m.write(parent + LEFT, tmp2)
            m.write(sibling + RIGHT, parent)
            rb_set_parent_color(m, tmp1, sibling, RB_BLACK)
            if tmp2:
                rb_set_parent(m, tmp2, parent)
            __rb_rotate_set_parents(m, parent, sibling, root, RB_BLACK)
            augment_rotate(parent, sibling)
            break


# -- erase (include/linux/rbtree_augmented.h __rb_erase_augmented) --------------------------
def __rb_erase_augmented(m: RbMem, node: int, root: int, augment: RbAugment | None) -> int:
    child = _right(m, node)
    tmp = _left(m, node)
    if not tmp:
        # Case 1: node to erase has no more than 1 child (easy!).
        pc = m.read(node + PC)
        parent = pc & ~3
        __rb_change_child(m, node, child, parent, root)
        if child:
            m.write(child + PC, pc)
            rebalance = 0
        else:
            rebalance = parent if pc & 1 else 0
        tmp = parent
    elif not child:
        # Still case 1, but this time the child is node->rb_left.
        pc = m.read(node + PC)
        m.write(tmp + PC, pc)
        parent = pc & ~3
        __rb_change_child(m, node, tmp, parent, root)
        rebalance = 0
        tmp = parent
    else:
        successor = child
        tmp = _left(m, child)
        if not tmp:
            # Case 2: node's successor is its right child.
            parent = successor
            child2 = _right(m, successor)
            if augment:
                augment.copy(node, successor)
        else:
            # Case 3: node's successor is leftmost under node's right child subtree.
            while True:
                parent = successor
                successor = tmp
                tmp = _left(m, tmp)
                if not tmp:
                    break
            child2 = _right(m, successor)
            m.write(parent + LEFT, child2)
            m.write(successor + RIGHT, child)
            rb_set_parent(m, child, successor)
            if augment:
                augment.copy(node, successor)
                augment.propagate(parent, successor)
        tmp = _left(m, node)
        m.write(successor + LEFT, tmp)
        rb_set_parent(m, tmp, successor)
        pc = m.read(node + PC)
        tmp = pc & ~3
        __rb_change_child(m, node, successor, tmp, root)
        if child2:
            rb_set_parent_color(m, child2, parent, RB_BLACK)
            rebalance = 0
        else:
            rebalance = parent if rb_is_black(m, successor) else 0
        m.write(successor + PC, pc)
        tmp = successor
    if augment:
        augment.propagate(tmp, 0)
    return rebalance


# -- public entry points -------------------------------------------------------------------
def rb_insert_color(m: RbMem, node: int, root: int) -> None:
    __rb_insert(m, node, root, _dummy)


def rb_erase(m: RbMem, node: int, root: int) -> None:
    rebalance = __rb_erase_augmented(m, node, root, None)
    if rebalance:
        ____rb_erase_color(m, rebalance, root, _dummy)


def rb_insert_augmented(m: RbMem, node: int, root: int, augment: RbAugment) -> None:
    __rb_insert(m, node, root, augment.rotate)


def rb_erase_augmented(m: RbMem, node: int, root: int, augment: RbAugment) -> None:
    rebalance = __rb_erase_augmented(m, node, root, augment)
    if rebalance:
        ____rb_erase_color(m, rebalance, root, augment.rotate)


def rb_first(m: RbMem, root: int) -> int:
    n = m.read(root + ROOT_NODE)
    if not n:
        return 0
    while _left(m, n):
        n = _left(m, n)
    return n


def rb_last(m: RbMem, root: int) -> int:
    n = m.read(root + ROOT_NODE)
    if not n:
        return 0
    while _right(m, n):
        n = _right(m, n)
    return n


def rb_next(m: RbMem, node: int) -> int:
    if RB_EMPTY_NODE(m, node):
        return 0
    if _right(m, node):
        node = _right(m, node)
        while _left(m, node):
            node = _left(m, node)
        return node
    while True:
        parent = rb_parent(m, node)
        if parent and node == _right(m, parent):
            node = parent
            continue
        return parent


def rb_prev(m: RbMem, node: int) -> int:
    if RB_EMPTY_NODE(m, node):
        return 0
    if _left(m, node):
        node = _left(m, node)
        while _right(m, node):
            node = _right(m, node)
        return node
    while True:
        parent = rb_parent(m, node)
        if parent and node == _left(m, parent):
            node = parent
            continue
        return parent


def rb_inorder(m: RbMem, root: int) -> list[int]:
    """Every node of the tree, in order (for checks and reports, not a kernel function)."""
    out = []
    n = rb_first(m, root)
    while n:
        out.append(n)
        n = rb_next(m, n)
    return out
