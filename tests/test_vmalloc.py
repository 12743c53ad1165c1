"""vmalloc as 6.18 keeps it, starting with the red-black trees it is built on (lib/rbtree.c on
simulated memory)."""

from __future__ import annotations

import random

from mmintro.kernel import rbtree as rb


# -- the red-black tree on its own -----------------------------------------------------------------
class _DictMem(rb.RbMem):
    def __init__(self) -> None:
        self.d: dict[int, int] = {}
        super().__init__(lambda a: self.d.get(a, 0), lambda a, v: self.d.__setitem__(a, v))


def _check_rb(m: rb.RbMem, root: int) -> int:
    """Assert the red-black properties from the words alone; return the black height."""
    top = m.read(root)
    if not top:
        return 0
    assert rb.rb_is_black(m, top) and rb.rb_parent(m, top) == 0

    def bh(n: int, parent: int) -> int:
        if not n:
            return 1
        assert rb.rb_parent(m, n) == parent
        left, right = m.read(n + rb.LEFT), m.read(n + rb.RIGHT)
        if rb.rb_is_red(m, n):
            assert not (left and rb.rb_is_red(m, left)) and not (right and rb.rb_is_red(m, right))
        a, b = bh(left, n), bh(right, n)
        assert a == b, "unequal black heights"
        return a + rb.rb_is_black(m, n)

    return bh(top, 0)


def test_rbtree_insert_and_erase_keep_the_red_black_properties() -> None:
    m = _DictMem()
    root = 0x1000
    keys: dict[int, int] = {}
    live: set[int] = set()
    rng = random.Random(7)
    for step in range(3000):
        if live and rng.random() < 0.45:
            n = rng.choice(sorted(live))
            live.remove(n)
            rb.rb_erase(m, n, root)
        else:
            n = 0x100000 + 0x40 * rng.randrange(1 << 16)
            if n in live:
                continue
            keys[n] = rng.random()
            live.add(n)
            link, parent = root, 0
            while m.read(link):
                parent = m.read(link)
                link = parent + (rb.LEFT if keys[n] < keys[parent] else rb.RIGHT)
            rb.rb_link_node(m, n, parent, link)
            rb.rb_insert_color(m, n, root)
        if step % 100 == 0:
            _check_rb(m, root)
    order = [keys[n] for n in rb.rb_inorder(m, root)]
    assert order == sorted(keys[n] for n in live)
    back, n = [], rb.rb_last(m, root)
    while n:
        back.append(keys[n])
        n = rb.rb_prev(m, n)
    assert back == order[::-1]
