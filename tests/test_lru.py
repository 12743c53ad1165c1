"""The LRU lists (mmintro/kernel/swap.py) as real drgn walks them: every folio the simulator
put on ``NODE_DATA(nid)->__lruvec.lists[lru]`` is found by drgn's list_for_each_entry through
``folio->lru``, with the flags 6.18's folio_lru_list() derives the list from, and the node
counters NR_{IN,}ACTIVE_{ANON,FILE} equal the list lengths in pages (large folios count
folio_nr_pages)."""

from __future__ import annotations

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import swap
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.list import list_for_each_entry


@pytest.fixture(scope="module")
def lru_snapshot(tmp_path_factory):
    k = boot(MachineConfig(ram=1 << 30, nodes=2, cpus=2, seed=3))
    made = {}
    # anon (swapbacked) and file folios, small and order-2, on both nodes; promotions by
    # folio_mark_accessed (two calls: referenced, then active) and folio_activate.
    for nid in (0, 1):
        for i in range(12):
            order = 2 if i % 5 == 4 else 0
            pfn = k.alloc_pages("GFP_HIGHUSER_MOVABLE" + ("|__GFP_COMP" if order else ""), order, nid=nid)
            anon = i % 2 == 0
            if anon:
                swap.folio_set_flag(k, pfn, swap.PG_swapbacked)
            swap.folio_add_lru(k, pfn)
            made[pfn] = (nid, anon, order)
    pfns = list(made)
    for p in pfns[1:6]:
        swap.folio_mark_accessed(k, p)  # referenced only
    for p in pfns[6:12]:
        swap.folio_mark_accessed(k, p)
        swap.folio_mark_accessed(k, p)  # -> active
    swap.folio_activate(k, pfns[14])
    swap.lruvec_del_folio(k, pfns[15])
    del made[pfns[15]]
    d = tmp_path_factory.mktemp("lru")
    save(k, d / "lru")
    events = sum(c[k.T.const("PGACTIVATE")] for c in k.vm_events)
    return str(d / "lru"), k, made, pfns, events


def _expected_list(k, pfn):
    return swap.folio_lru_list(k, pfn)


def test_drgn_walks_the_lru_lists(lru_snapshot):
    path, _k, made, _pfns, _ev = lru_snapshot
    prog = open_drgn(path + ".vmcore", path + ".vmlinux")
    vmemmap = prog["vmemmap_base"].value_()
    size = prog.type("struct page").size
    PG = {
        n: prog.constant(n).value_()
        for n in ("PG_lru", "PG_active", "PG_swapbacked", "PG_unevictable", "PG_referenced")
    }
    seen = {}
    for nid in (0, 1):
        lruvec = prog["node_data"][nid].__lruvec
        counted = {}
        for lru in range(prog.constant("NR_LRU_LISTS").value_()):
            pages = 0
            for folio in list_for_each_entry("struct folio", lruvec.lists[lru].address_of_(), "lru"):
                pfn = (folio.value_() - vmemmap) // size
                flags = folio.flags.f.value_()
                assert flags >> PG["PG_lru"] & 1
                # folio_lru_list() recomputed from drgn's view of the flags
                want = 0 if flags >> PG["PG_swapbacked"] & 1 else 2
                want += flags >> PG["PG_active"] & 1
                assert want == lru
                seen[pfn] = (nid, lru)
                pages += 1 << (folio._flags_1.value_() & 0xFF) if flags >> 6 & 1 else 1
            counted[lru] = pages
        names = ["NR_INACTIVE_ANON", "NR_ACTIVE_ANON", "NR_INACTIVE_FILE", "NR_ACTIVE_FILE"]
        for lru, name in enumerate(names):
            assert prog["node_data"][nid].vm_stat[prog.constant(name)].counter.value_() == counted[lru]
            # __update_lru_size: the zones' NR_ZONE_* twins sum to the node's
            zsum = sum(
                z.vm_stat[prog.constant("NR_ZONE_" + name[3:])].counter.value_()
                for z in prog["node_data"][nid].node_zones
            )
            assert zsum == counted[lru]
    assert set(seen) == set(made)
    for pfn, (nid, anon, _order) in made.items():
        assert seen[pfn][0] == nid and (seen[pfn][1] < 2) == anon


def test_promotion_follows_folio_mark_accessed(lru_snapshot):
    path, _k, made, pfns, events = lru_snapshot
    prog = open_drgn(path + ".vmcore", path + ".vmlinux")
    page = lambda p: prog.read_u64(prog["vmemmap_base"].value_() + p * 64)
    ref, act = 1 << prog.constant("PG_referenced").value_(), 1 << prog.constant("PG_active").value_()
    for p in pfns[1:6]:
        assert page(p) & (ref | act) == ref
    for p in pfns[6:12]:
        assert page(p) & (ref | act) == act
    assert page(pfns[14]) & act and not page(pfns[15]) & (1 << prog.constant("PG_lru").value_())
    # PGACTIVATE counts pages: six promoted folios + one folio_activate, large ones by their size
    want = sum(1 << made[p][2] for p in pfns[6:12] + [pfns[14]])
    assert events == want


def test_mlocked_vma_folios_are_counted_unevictable_not_linked(tmp_path):
    """folio_add_lru_vma in a VM_LOCKED VMA: mlock_new_folio -> PG_mlocked|PG_unevictable,
    mlock_count 1, NR_UNEVICTABLE / NR_MLOCK counted, and (6.18) no link on LRU_UNEVICTABLE."""
    from mmintro.kernel import fork
    from mmintro.kernel import mmap as M

    k = boot(MachineConfig(ram=1 << 30, seed=5))
    proc = fork.spawn_process(k, "locker")
    addr = M.do_mmap(k, proc.mm, 4 << 12, M.VM_READ | M.VM_WRITE)
    vma = M.find_vma(k, proc.mm, addr)
    k.kmem.set(vma, "vm_area_struct", "vm_flags", k.kmem.get(vma, "vm_area_struct", "vm_flags") | swap.VM_LOCKED)
    pfns = [k.alloc_pages("GFP_HIGHUSER_MOVABLE", 0) for _ in range(3)]
    for p in pfns:
        swap.folio_set_flag(k, p, swap.PG_swapbacked)
        swap.folio_add_lru_vma(k, p, vma)
    swap.folio_mark_accessed(k, pfns[0])
    swap.folio_mark_accessed(k, pfns[0])  # the unevictable list is never rotated: no promotion
    save(k, tmp_path / "ml")
    prog = open_drgn(str(tmp_path / "ml.vmcore"), str(tmp_path / "ml.vmlinux"))
    lruvec = prog["node_data"][0].__lruvec
    unev = prog.constant("LRU_UNEVICTABLE")
    assert list(list_for_each_entry("struct folio", lruvec.lists[unev].address_of_(), "lru")) == []
    stat = prog["node_data"][0].vm_stat
    assert stat[prog.constant("NR_UNEVICTABLE")].counter.value_() == 3
    assert stat[prog.constant("NR_INACTIVE_ANON")].counter.value_() == 0
    mlock = sum(z.vm_stat[prog.constant("NR_MLOCK")].counter.value_() for z in prog["node_data"][0].node_zones)
    assert mlock == 3
    for p in pfns:
        folio = drgn.Object(prog, "struct folio *", prog["vmemmap_base"].value_() + 64 * p)
        f = folio.flags.f.value_()
        for bit in ("PG_lru", "PG_unevictable", "PG_mlocked", "PG_swapbacked"):
            assert f >> prog.constant(bit).value_() & 1, bit
        assert not f >> prog.constant("PG_active").value_() & 1
        assert folio.mlock_count.value_() == 1
