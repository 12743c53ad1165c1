"""Real drgn 0.3.0 reads the page allocator's state from a snapshot taken *after a workload*:
thousands of mixed allocations and frees on a 1 GiB 2-node machine, with compound pages,
high-order blocks and pages left on the per-CPU lists.

Three sources are compared: the simulator's books (what the allocator did), mmintro's reader
and views (what the snapshot says, read our way), and drgn's stock helpers and crash
commands (what the snapshot says, read drgn's way).  The crosscheck rows compare the last
two; the tests here also tie both to the first.
"""

from __future__ import annotations

import random
import shutil
import struct
from dataclasses import dataclass

import pytest

drgn = pytest.importorskip("drgn")

from test_drgn_crosscheck import row_params  # the rows' known gaps live there

from mmintro import crosscheck as xc
from mmintro.crosscheck.answers import answer_text
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import Kernel, boot
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save, snapshot_paths

GFPS = [
    "GFP_KERNEL",
    "GFP_KERNEL|__GFP_COMP",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO",
    "GFP_ATOMIC",
    "GFP_NOWAIT|__GFP_ZERO",
    "GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_COMP",
    "GFP_KERNEL|GFP_DMA32",
    "GFP_TRANSHUGE",
]


@dataclass
class Workload:
    path: str
    k: Kernel
    live: dict  # pfn -> (order, compound)


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    """4000 operations: 60% allocations (orders mostly 0-3, some pageblock-sized and
    order-10, GFP types of every migratetype, compound or not, on either CPU, preferring
    either node or the local one), 40% frees of a random live block; no final drain, so
    the pcp lists keep what the frees left there."""
    k = boot(MachineConfig(ram=1 << 30, nodes=2, cpus=2, seed=7))
    rng = random.Random(7)
    live: dict[int, tuple[int, bool]] = {}
    for _ in range(4000):
        k.on_cpu(rng.randrange(2))
        if live and rng.random() < 0.4:
            pfn = rng.choice(list(live))
            k.free_pages(pfn, live.pop(pfn)[0])
            continue
        order = rng.choice([0, 0, 0, 0, 1, 2, 3, 4, 9, 10]) if rng.random() < 0.9 else rng.randrange(11)
        gfp = G.parse_gfp(rng.choice(GFPS))
        pfn = k.alloc_pages(gfp, order, nid=rng.choice([None, 0, 1]))
        if pfn is not None:
            live[pfn] = (order, bool(order and gfp & G.__GFP_COMP))
    assert sum(pc.count for zs in k.zones for z in zs for pc in z.pcp) > 0, "the workload left no pcp pages"
    assert sum(o > 0 and c for o, c in live.values()) > 50, "too few compound pages"
    d = tmp_path_factory.mktemp("workload")
    save(k, d / "w")
    return Workload(str(d / "w"), k, live)


@pytest.fixture(scope="module")
def progs(workload: Workload):
    core, vmlinux = snapshot_paths(workload.path)
    return open_snapshot(workload.path), xc.open_drgn(str(core), str(vmlinux))


@pytest.mark.parametrize(
    "name,check",
    row_params(xc.CHECKS)
    + [pytest.param(*p.values, marks=[*p.marks, pytest.mark.slow], id=p.id) for p in row_params(xc.SLOW_CHECKS)],
)
def test_crosscheck_row_agrees_after_a_workload(progs, name: str, check) -> None:
    prog, dprog = progs
    mine, theirs = check(prog, dprog)
    assert mine == theirs, xc._diff(mine, theirs)


def _zones(k: Kernel):
    return [z for zs in k.zones for z in zs if z.present]


def test_drgn_free_lists_are_the_simulators(workload: Workload, progs) -> None:
    """The (node, zone, order, migratetype, pfn) entries drgn walks are exactly the
    allocator's free lists, each a PageBuddy head of its order; kmem -f verifies them
    against NR_FREE_PAGES and counts the allocator's nr_free per order."""
    prog, dprog = progs
    _mine, (entries, verdict) = xc.c_free_lists(prog, dprog)
    assert verdict == xc.FREE_LIST_OK
    books = sorted(
        (z.nid, z.idx, o, mt, pfn)
        for z in _zones(workload.k)
        for o in range(11)
        for mt in range(5)
        for pfn in page_alloc.list_pfns(z, page_alloc.free_list_head(o, mt))
    )
    assert sorted(e[:5] for e in entries) == books
    assert len(books) > 100
    (_m, _v), (orders, kmem_verdict) = xc.c_kmem_f_orders(prog, dprog)
    assert kmem_verdict == "verified"
    assert orders == [(z.nid, z.name, z.nr_free) for z in _zones(workload.k)]


def test_free_blocks_sit_in_pageblocks_of_their_list_type(workload: Workload, progs) -> None:
    """Every free block drgn finds on free_list[mt] lies in a pageblock whose migratetype
    bits (drgn reading ``mem_section->usage->pageblock_flags``: 8 bits a pageblock, low 3 the
    type, reference/semantics.md §4) are mt -- and those bits are the simulator's and the
    reader's (pagetypeinfo)."""
    from drgn.helpers.linux.mmzone import nr_to_section

    from mmintro.views.pagetypeinfo import pageblock_migratetypes

    prog, d = progs
    _mine, (entries, _verdict) = xc.c_free_lists(prog, d)
    reader = pageblock_migratetypes(prog).migratetype
    pb_order = d["pageblock_order"].value_()
    per_section = (1 << 15) >> pb_order  # 128 MiB sections of 4 KiB pages
    for _nid, _i, order, mt, pfn, _t, _p in entries:
        for pb in range(pfn >> pb_order, ((pfn + (1 << order) - 1) >> pb_order) + 1):
            nr, i = divmod(pb, per_section)
            word = nr_to_section(d, nr).usage.pageblock_flags[i * 8 // 64].value_()
            assert (word >> (i * 8 % 64)) & 7 == mt == workload.k.pageblock_flags[pb] & 7 == reader[nr, i]
    assert len({e[3] for e in entries}) > 1, "the workload left free blocks of one migratetype only"


def test_drgn_counters_and_watermarks_are_the_simulators(workload: Workload, progs) -> None:
    from drgn.helpers.linux.mmzone import high_wmark_pages, low_wmark_pages, min_wmark_pages
    from drgn.helpers.linux.vmstat import nr_free_pages, zone_page_state

    _prog, d = progs
    zones = _zones(workload.k)
    assert nr_free_pages(d) == sum(z.free_pages for z in zones)
    for z in zones:
        dz = d["node_data"][z.nid].node_zones[z.idx].address_of_()
        assert zone_page_state(dz, d["NR_FREE_PAGES"]) == z.free_pages
        assert [min_wmark_pages(dz), low_wmark_pages(dz), high_wmark_pages(dz)] == [
            w + z.watermark_boost for w in z.watermark[:3]
        ]


def test_drgn_pcp_lists_are_the_simulators(workload: Workload, progs) -> None:
    """drgn's walk of every CPU's per_cpu_pages lists finds the allocator's pcp pages: page
    counts equal each pageset's count, list lengths equal the simulator's lists."""
    prog, d = progs
    (_c, _l, _ok), (counts, lists, verdict) = xc.c_pcp_lists(prog, d)
    assert verdict == xc.PCP_OK
    zones = _zones(workload.k)
    assert counts == [(z.nid, z.idx, pc.cpu, pc.count) for z in zones for pc in z.pcp]
    assert lists == [
        (z.nid, z.idx, pc.cpu, [len(page_alloc.list_pfns(z, h)) for h in pc.heads]) for z in zones for pc in z.pcp
    ]
    assert any(n for _n, _i, _c, n in counts)


def test_drgn_compound_order_is_the_allocated_order(workload: Workload, progs) -> None:
    """For every block the workload still holds: drgn's compound_order is the order it was
    allocated with (__GFP_COMP) or 0 (not compound), and compound_head of its tails is the
    head."""
    from drgn.helpers.linux.mm import PageHead, PageTail, compound_head, compound_order, pfn_to_page

    _prog, d = progs
    n = 0
    for pfn, (order, compound) in sorted(workload.live.items()):
        page = pfn_to_page(d, pfn)
        assert compound_order(page).value_() == (order if compound else 0), f"pfn {pfn:#x}"
        assert PageHead(page) == compound
        for tail in {1, (1 << order) - 1} if order else ():
            tp = pfn_to_page(d, pfn + tail)
            assert PageTail(tp) == compound
            assert compound_head(tp).value_() == (page if compound else tp).value_()
        n += compound
    assert n > 50


# -- a row can fail -----------------------------------------------------------------------------
def _file_offset(core: str, paddr: int) -> int:
    """Where physical address ``paddr`` is stored in an ELF64 core file (its PT_LOAD)."""
    with open(core, "rb") as f:
        ehdr = f.read(64)
        (phoff,) = struct.unpack_from("<Q", ehdr, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 0x36)
        f.seek(phoff)
        for _ in range(phnum):
            p_type, _fl, off, _va, pa, filesz, _ms, _al = struct.unpack("<IIQQQQQQ", f.read(phentsize)[:56])
            if p_type == 1 and pa <= paddr < pa + filesz:
                return off + paddr - pa
    raise LookupError(f"{paddr:#x} is not stored in {core}")


def test_a_corrupt_free_list_head_fails_rows_not_the_run(workload: Workload, tmp_path) -> None:
    """One flipped byte in a free-list head's ``next`` (struct zone, in a copy of the
    snapshot): drgn's kmem -f no longer verifies, the per-order row sees [CORRUPTED], the
    free-list row reports the broken link; run_crosscheck returns failed rows, it does not
    raise, and the rows that do not read free lists still agree."""
    z = next(z for z in _zones(workload.k) if z.nr_free[10] > 1)
    src_core, src_vmlinux = snapshot_paths(workload.path)
    copy = tmp_path / "corrupt"
    core, vmlinux = snapshot_paths(str(copy))
    shutil.copy(src_core, core)
    shutil.copy(src_vmlinux, vmlinux)
    prog = open_snapshot(workload.path)
    head = prog["node_data"][z.nid].node_zones[z.idx].free_area[10].free_list[1].address_of_()
    paddr = int(head) - int(prog["page_offset_base"].value_())
    with open(core, "r+b") as f:
        f.seek(_file_offset(str(core), paddr) + 1)  # byte 1 of the next pointer: another struct page
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    rows = {r.name: r for r in xc.run_crosscheck(str(copy), ["kmem -f", "free_area", "totalram", "kmem -n"])}
    assert not rows["crash kmem -f"].ok and "found" in rows["crash kmem -f"].detail
    assert not rows["crash kmem -f per order = buddyinfo"].ok
    per_order = rows["crash kmem -f per order = buddyinfo"]
    assert "CORRUPTED" in answer_text(per_order.drgn) + per_order.detail
    lists = rows["free_area lists: entries, PageBuddy, order"]
    assert not lists.ok and "broken link" in lists.detail
    assert rows["totalram_pages"].ok and rows["crash kmem -n"].ok
