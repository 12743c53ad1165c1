"""PROT_NONE entries as x86-64 6.18 keeps them (arch/x86/include/asm/pgtable-invert.h).

A non-zero entry without _PAGE_PRESENT holds its PFN inverted (L1TF): pte_modify /
pmd_modify flip it (flip_protnone_guard, PTE_PFN_MASK for a PTE, PHYSICAL_PMD_PAGE_MASK for a
PMD leaf) as an entry turns PROT_NONE and back, and pte_pfn / pmd_pfn undo it.  Such an entry
is still pte_present / pmd_present: it maps its page (smaps counts it, fork copies it, munmap
and exit zap it), but the hardware walker -- and drgn's follow_phys -- see no page.

Expectations are independent of the model: the raw entries are read with real drgn's
physical reads and compared with the pfns the pages had before mprotect, inverted by hand;
drgn's follow_phys raising FaultError is drgn's own x86-64 walker; the counts after exit are
the booted machine's, read with drgn.
"""

from __future__ import annotations

import pytest

from mmintro.kernel import exit as E
from mmintro.kernel import fork, hugetlb, memory
from mmintro.kernel import mmap as M
from mmintro.kernel import mprotect as P
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

drgn = pytest.importorskip("drgn")

R, W = M.VM_READ, M.VM_WRITE
PG = 0x1000
NPAGES = 16
PFN_MASK = ((1 << 52) - 1) & ~0xFFF  # PTE_PFN_MASK
PMD_PFN_MASK = ((1 << 52) - 1) & ~((1 << 21) - 1)  # PHYSICAL_PMD_PAGE_MASK
PRESENT, PSE, PROTNONE = 0x1, 0x80, 0x100


def _drgn_leaf(prog, mm, addr: int) -> tuple[str, int]:
    """The leaf entry for ``addr``, walked with drgn's physical reads (4-level x86-64)."""
    table = prog.read_u64(mm.pgd.value_() + 8 * ((addr >> 39) & 511)) & PFN_MASK  # the PGD is in the direct map
    for name, shift in (("PUD", 30), ("PMD", 21), ("PTE", 12)):
        e = int.from_bytes(prog.read(table + 8 * ((addr >> shift) & 511), 8, True), "little")
        if name == "PTE" or e & PSE or not e & PRESENT:
            return name, e
        table = e & PFN_MASK
    raise AssertionError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmintro.crosscheck import open_drgn
    from mmintro.reader import open_snapshot

    d = tmp_path_factory.mktemp("protnone")
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=31, thp="always", hugepages_2m=4))
    save(k, d / "boot")
    p = fork.spawn_process(k, "pn")
    a = M.do_mmap(k, p.mm, NPAGES * PG, R | W)  # too small for a THP: 16 PTEs
    memory.mm_populate(k, p.mm, a, NPAGES * PG, True)
    ptes = [memory.walk(k, p.mm, a + i * PG)[2] for i in range(NPAGES)]
    b = M.do_mmap(k, p.mm, 8 << 20, R | W)
    thp = -(-b // (2 << 20)) * (2 << 20)
    memory.handle_mm_fault(k, p.mm, thp, True)
    lvl, _s, pmd = memory.walk(k, p.mm, thp)
    assert lvl == "PMD" and pmd & PSE and pmd & PRESENT
    h = hugetlb.hugetlb_mmap(k, p.mm, 2 << 20, 2 << 20, R | W)
    memory.handle_mm_fault(k, p.mm, h, True)
    hpmd = memory.walk(k, p.mm, h)[2]
    assert [P.do_mprotect(k, p.mm, x, n, 0) for x, n in ((a, NPAGES * PG), (thp, 2 << 20), (h, 2 << 20))] == [0] * 3
    child = fork.do_fork(k, p)  # copies the PROT_NONE entries (pte_present / pmd_trans_huge)
    assert not memory.check_mapcounts(k, [p.mm, child.mm])
    assert not memory.check_mm(k, p.mm) and not memory.check_mm(k, child.mm)
    save(k, d / "pn")
    world = {
        "k": k,
        "p": p,
        "child": child,
        "a": a,
        "thp": thp,
        "h": h,
        "ptes": ptes,
        "pmd": pmd,
        "hpmd": hpmd,
        "dir": d,
        "drgn": open_drgn(str(d / "pn.vmcore"), str(d / "pn.vmlinux")),
        "mine": open_snapshot(str(d / "pn")),
    }
    return world


def test_prot_none_ptes_hold_the_inverted_pfn_in_drgn(world) -> None:
    prog = world["drgn"]
    from drgn.helpers.linux.pid import find_task

    for task in (find_task(prog, world["p"].pid), find_task(prog, world["child"].pid)):
        for i, before in enumerate(world["ptes"]):
            lvl, e = _drgn_leaf(prog, task.mm, world["a"] + i * PG)
            assert lvl == "PTE" and e & (PRESENT | PROTNONE) == PROTNONE, hex(e)
            assert (e & PFN_MASK) == (~before & PFN_MASK), (hex(e), hex(before))  # flip_protnone_guard
            assert ((e ^ ((1 << 64) - 1)) & PFN_MASK) >> 12 == memory.pte_pfn(before)  # pte_pfn undoes it


def test_prot_none_thp_pmd_inverts_only_the_pmd_pfn_bits(world) -> None:
    from drgn.helpers.linux.pid import find_task

    prog = world["drgn"]
    for task in (find_task(prog, world["p"].pid), find_task(prog, world["child"].pid)):
        lvl, e = _drgn_leaf(prog, task.mm, world["thp"])
        assert lvl == "PMD" and e & (PRESENT | PSE | PROTNONE) == PSE | PROTNONE, hex(e)
        # pmd_modify flips PHYSICAL_PMD_PAGE_MASK: bits 12..20 (PAT_LARGE and below) stay clear
        assert e & PMD_PFN_MASK == ~world["pmd"] & PMD_PFN_MASK and e & 0x1FF000 == 0, hex(e)
        # a hugetlb leaf goes through huge_pte_modify = pte_modify: PTE_PFN_MASK flipped
        lvl, e = _drgn_leaf(prog, task.mm, world["h"])
        assert lvl == "PMD" and e & (PRESENT | PROTNONE) == PROTNONE and e & PFN_MASK == ~world["hpmd"] & PFN_MASK


def test_follow_phys_of_a_prot_none_page_faults_like_drgn(world) -> None:
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    from mmintro.reader.errors import FaultError as MyFaultError
    from mmintro.reader.helpers.mm import follow_phys as my_follow_phys
    from mmintro.reader.helpers.task import find_task as my_find_task

    prog, mine = world["drgn"], world["mine"]
    mm, my_mm = find_task(prog, world["p"].pid).mm, my_find_task(mine, world["p"].pid).mm
    for addr in (world["a"], world["a"] + 5 * PG, world["thp"] + 7 * PG, world["h"]):
        with pytest.raises(FaultError):
            follow_phys(mm, addr)
        with pytest.raises(MyFaultError):
            my_follow_phys(my_mm, addr)


def test_smaps_counts_prot_none_pages_with_their_real_pfns(world) -> None:
    """6.18 smaps_pte_entry / smaps_pmd_entry / smaps_hugetlb_range take pte_present /
    pmd_present entries (PROT_NONE included) through vm_normal_page(pte_pfn()): Rss of the
    PROT_NONE ranges is their pages; the parent and the child share them (Pss halves)."""
    from drgn.helpers.linux.mm import pfn_to_page

    from mmintro.views import numa_maps as N
    from mmintro.views import smaps as S

    prog, mine = world["drgn"], world["mine"]
    for pid in (world["p"].pid, world["child"].pid):
        rep = {v.maps.start: v for v in S.smaps(mine, pid).vmas}
        st = rep[world["a"]].stats
        assert (st.resident, st.anonymous, st.pss >> S.PSS_SHIFT) == (NPAGES * PG, NPAGES * PG, NPAGES * PG // 2)
        thp = next(v for v in rep.values() if v.maps.start <= world["thp"] < v.maps.end).stats
        assert (thp.resident, thp.anonymous_thp) == (2 << 20, 2 << 20)
        assert rep[world["h"]].stats.shared_hugetlb == 2 << 20  # mapped by both: folio_maybe_mapped_shared
        rows = {r.start: r for r in N.numa_maps(mine, pid)}
        assert (rows[world["a"]].anon, rows[world["a"]].mapcount_max) == (NPAGES, 2)
    # the un-inverted pfns are the mapped pages: drgn sees each mapped twice (parent + child)
    for before in world["ptes"]:
        assert pfn_to_page(prog, memory.pte_pfn(before))._mapcount.counter.value_() == 1


def test_rmap_walk_finds_prot_none_mappings(world) -> None:
    """rmap_walk's page_vma_mapped_walk checks pte_present entries by pte_pfn / pmd_pfn: the
    PROT_NONE PTEs and the PROT_NONE THP of the parent and the child are found."""
    from mmintro.kernel import rmap

    k, a, thp = world["k"], world["a"], world["thp"]
    for i in (0, 7, NPAGES - 1):
        got = rmap.rmap_walk(k, memory.pte_pfn(world["ptes"][i]))
        assert sorted(addr for _v, addr in got) == [a + i * PG] * 2
    got = rmap.rmap_walk(k, memory.pmd_pfn(world["pmd"]))
    assert sorted(addr for _v, addr in got) == [thp] * 2


def test_back_to_read_write_restores_the_entries_and_exit_frees_everything(world) -> None:
    """mprotect(R|W) flips the pfns back (the PTEs equal the pre-PROT_NONE ones but for the
    write bit: the pages are shared with the child now), then both exits give back every
    page, table and huge page (drgn: the booted machine's counts)."""
    from mmintro.crosscheck import open_drgn

    k, p, a, thp = world["k"], world["p"], world["a"], world["thp"]
    assert P.do_mprotect(k, p.mm, a, NPAGES * PG, R | W) == 0
    assert P.do_mprotect(k, p.mm, thp, 2 << 20, R | W) == 0
    for i, before in enumerate(world["ptes"]):
        lvl, _s, e = memory.walk(k, p.mm, a + i * PG)
        assert e & PFN_MASK == before & PFN_MASK and e & PRESENT, (hex(e), hex(before))
    lvl, _s, e = memory.walk(k, p.mm, thp)
    assert lvl == "PMD" and e & PRESENT and e & PFN_MASK == world["pmd"] & PFN_MASK
    assert not memory.check_mapcounts(k, [p.mm, world["child"].mm])
    E.do_exit(k, world["child"])
    E.do_exit(k, p)
    d = world["dir"]
    save(k, d / "end")
    b, e = (open_drgn(str(d / f"{n}.vmcore"), str(d / f"{n}.vmlinux")) for n in ("boot", "end"))
    for item in ("NR_PAGETABLE", "NR_ANON_MAPPED", "NR_ANON_THPS"):
        assert (
            e["vm_node_stat"][e.constant(item).value_()].counter.value_()
            == b["vm_node_stat"][b.constant(item).value_()].counter.value_()
        ), item
    hs = e["hstates"][e["default_hstate_idx"]]
    assert (hs.free_huge_pages.value_(), hs.resv_huge_pages.value_()) == (4, 0)


def test_prot_none_hugetlb_round_trip() -> None:
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=32, hugepages_2m=4))
    p = fork.spawn_process(k, "h")
    h = hugetlb.hugetlb_mmap(k, p.mm, 2 << 20, 2 << 20, R | W)
    memory.handle_mm_fault(k, p.mm, h, True)
    before = memory.walk(k, p.mm, h)[2]
    assert P.do_mprotect(k, p.mm, h, 2 << 20, 0) == 0
    assert P.do_mprotect(k, p.mm, h, 2 << 20, R | W) == 0
    e = memory.walk(k, p.mm, h)[2]
    assert e & PRESENT and e & PFN_MASK == before & PFN_MASK, hex(e)


def test_partial_munmap_of_a_prot_none_thp_splits_it_into_prot_none_ptes() -> None:
    """munmap of half a PROT_NONE THP: __split_huge_pmd takes the pmd_present leaf and fills
    the deposited table with mk_pte(page + i, vm_page_prot = PAGE_NONE) entries (pfn_pte:
    inverted); the other half is zapped; mapcounts and rss stay consistent, and mprotect
    back to R|W (no write: the folio is exclusive, so writable again) restores the pfns."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=33, thp="always"))
    ns = k.node_vm_stat[0]
    before = {n: ns.get(n, 0) for n in ("NR_PAGETABLE", "NR_ANON_MAPPED", "NR_ANON_THPS")}
    p = fork.spawn_process(k, "s")
    b = M.do_mmap(k, p.mm, 8 << 20, R | W)
    base = -(-b // (2 << 20)) * (2 << 20)
    memory.handle_mm_fault(k, p.mm, base, True)
    head = memory.pmd_pfn(memory.walk(k, p.mm, base)[2])
    assert P.do_mprotect(k, p.mm, base, 2 << 20, 0) == 0
    assert M.do_munmap(k, p.mm, base, 1 << 20) == 0
    for i in range(256, 512, 51):
        lvl, _s, e = memory.walk(k, p.mm, base + i * PG)
        assert lvl == "PTE" and e & (PRESENT | PROTNONE) == PROTNONE, hex(e)
        assert e & PFN_MASK == ~((head + i) << 12) & PFN_MASK, hex(e)
    assert memory.walk(k, p.mm, base)[2] == 0
    assert not memory.check_mapcounts(k, [p.mm]) and not memory.check_mm(k, p.mm)
    assert P.do_mprotect(k, p.mm, base + (1 << 20), 1 << 20, R | W) == 0
    e = memory.walk(k, p.mm, base + 300 * PG)[2]
    assert e & PRESENT and e & PFN_MASK == (head + 300) << 12, hex(e)
    E.do_exit(k, p)
    assert {n: ns.get(n, 0) for n in before} == before
