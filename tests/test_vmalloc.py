"""vmalloc as 6.18 keeps it, starting with the red-black trees it is built on (lib/rbtree.c on
simulated memory)."""

from __future__ import annotations

import random

from mmintro.arch import x86
from mmintro.kernel import init_64
from mmintro.kernel import rbtree as rb
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.types import get_types

T = get_types()


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


# -- init_mm's page tables after boot ---------------------------------------------------------
def test_mem_init_preallocates_vmalloc_puds_as_accounted_kernel_page_tables() -> None:
    """After mem_init() (after_bootmem), init_mm's tables come from the page allocator typed
    PGTY_table with PT_kernel and counted in NR_PAGETABLE; preallocate_vmalloc_pages() fills
    PGD slots 402..465 (the 32 TiB vmalloc range) with PUD pages, each counted in
    init_mm.pgtables_bytes; lookup_address() finds leaves of every size."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    if not getattr(k, "after_bootmem", False):
        init_64.mem_init(k)
    pgd = k.pt.pgd
    slots = [i for i in range(402, 466) if k.pt.entry(pgd, i) & x86._PAGE_PRESENT]
    assert slots == list(range(402, 466))
    for i in slots:
        t = k.pt.entry(pgd, i) & x86.PTE_PFN_MASK
        assert k.pt.entry(pgd, i) & 0xFFF == x86._PAGE_TABLE
        page = k.pfn_to_page(t >> x86.PAGE_SHIFT)
        assert k.kmem.get(page, "ptdesc", "__page_type") == T.const("PGTY_table") << 24
        assert k.kmem.get(page, "page", "flags") >> T.const("PT_kernel") & 1
    assert sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat) >= 64
    assert k.kmem.get(k.sym("init_mm"), "mm_struct", "pgtables_bytes") >= 64 * x86.PAGE_SIZE
    assert init_64.preallocate_vmalloc_pages(k) == 0  # nothing left to allocate
    # A PMD and a PTE table for a fresh address (GFP_PGTABLE_KERNEL zeroes them), then the
    # PTE table freed again (pagetable_dtor_free).
    before = sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat)
    va = k.vmalloc_base + (1 << 40)
    pud, _ = k.pt.populate(pgd, (va >> 39) & 511, 0)
    pmd, new_pmd = k.pt.populate(pud, (va >> 30) & 511, 0)
    pte, new_pte = k.pt.populate(pmd, (va >> 21) & 511, 0)
    assert new_pmd and new_pte and k.mem.read(pte, x86.PAGE_SIZE) == bytes(x86.PAGE_SIZE)
    k.pt.set_entry(pte, (va >> 12) & 511, 0x5000 | x86.PAGE_KERNEL)
    assert k.pt.lookup_address(va + 0x123)[2] == init_64.PG_LEVEL_4K
    assert k.pt.virt_to_phys(va + 0x123) == 0x5123
    assert sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat) == before + 2
    k.pt.set_entry(pmd, (va >> 21) & 511, 0)
    init_64.pagetable_dtor_free(k, pte)
    assert sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat) == before + 1
    assert k.kmem.get(k.pfn_to_page(pte >> x86.PAGE_SHIFT), "ptdesc", "__page_type") == 0xFFFFFFFF
    assert k.pt.lookup_address(va) is None
    # The direct map: a 2 MiB or 1 GiB leaf.
    assert k.pt.lookup_address(k.page_offset_base + (64 << 20))[2] in (init_64.PG_LEVEL_2M, init_64.PG_LEVEL_1G)
