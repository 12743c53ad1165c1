"""The reader's reverse-map walk (mmintro/reader/helpers/rmap.py) and ``mmintro whatis``'s
mappers, against an independent forward scan in real drgn: on a snapshot with a forked
process (CoW-shared and CoW-broken heap pages), a PMD-mapped THP shared by the fork, private
and shared hugetlb pages and a shared file mapping, every mapped user page's set of (pid, address) from the anon_vma /
i_mmap interval trees equals the set drgn finds by following every task's every VMA page
(follow_pfn), and a page's 6.18 page_mapcount() (read by drgn) is its number of mappers.
A corrupt anon_vma tree is a one-line finding, exit status 1."""

from __future__ import annotations

from collections import Counter

import pytest

drgn = pytest.importorskip("drgn")

from drgn import FaultError, cast
from drgn.helpers.linux.mm import (
    compound_head,
    compound_order,
    follow_pfn,
    for_each_vma,
    pfn_to_page,
)
from drgn.helpers.linux.pid import for_each_task

from mmintro.crosscheck import open_drgn
from mmintro.reader import open_snapshot
from mmintro.reader.helpers.rmap import rmap_walk_pfn
from mmintro.snapshot.writer import save
from mmintro.workload import parse_scenario, run_scenario
from tests.cli_helpers import run, run_json

WORKLOAD = """
[machine]
ram = "1G"
hugepages_2m = 4

[[step]]
spawn = "db"
heap = "256K"

[[step]]
touch = "heap"
access = "write"

[[step]]
mmap = "thp"
kind = "anon"
size = "4M"
hugepage = true

[[step]]
touch = "thp"
access = "write"
size = "2M"

[[step]]
create_file = "data"
path = "/srv/data.bin"
size = "256K"

[[step]]
write = "data"
size = "128K"

[[step]]
mmap = "view"
kind = "shared"
file = "data"
size = "256K"

[[step]]
touch = "view"
size = "128K"

[[step]]
mmap = "huge"
kind = "hugetlb"
size = "4M"

[[step]]
touch = "huge"
access = "write"

[[step]]
mmap = "hshared"
kind = "hugetlb"
shared = true
size = "2M"

[[step]]
touch = "hshared"
access = "write"

[[step]]
fork = "child"
parent = "db"

[[step]]
touch = "heap"
process = "child"
access = "write"
every = 2

[[step]]
touch = "view"
process = "child"
size = "64K"
"""

FOLIO_MAPPING_ANON = 0x1  # include/linux/page-flags.h


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    wl = run_scenario(parse_scenario(WORKLOAD, "rmap.toml"))
    path = tmp_path_factory.mktemp("rmap") / "s"
    save(wl.kernel, path)
    p = open_snapshot(str(path))
    d = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    yield p, d, wl, path
    p.close()


def _forward(d) -> dict[int, set[tuple[int, int]]]:
    """pfn -> {(pid, address)} by following every page of every VMA of every task (drgn)."""
    out: dict[int, set[tuple[int, int]]] = {}
    for t in for_each_task(d):
        mm = t.mm
        if not mm:
            continue
        pid = t.pid.value_()
        for v in for_each_vma(mm):
            for a in range(v.vm_start.value_(), v.vm_end.value_(), 4096):
                try:
                    pfn = follow_pfn(mm, a).value_()
                except FaultError:
                    continue
                out.setdefault(pfn, set()).add((pid, a))
    return out


@pytest.fixture(scope="module")
def forward(snap):
    _p, d, _wl, _path = snap
    fwd = _forward(d)
    # only user folios (folio->mapping set) have an rmap; the zero page / special pages not
    return {pfn: s for pfn, s in fwd.items() if compound_head(pfn_to_page(d, pfn)).mapping.value_()}


def _mine(p, pfn: int) -> set[tuple[int, int]]:
    return {(pid, h.address) for h in rmap_walk_pfn(p, pfn) for pid in h.pids}


def test_rmap_walk_equals_drgn_forward_scan(snap, forward):
    p, d, _wl, _path = snap
    assert len(forward) > 900
    bad = {pfn: (_mine(p, pfn), want) for pfn, want in forward.items() if _mine(p, pfn) != want}
    assert not bad, list(bad.items())[:3]
    # material: CoW-shared and private anon pages, file pages in both processes, the shared THP
    kinds = Counter()
    for pfn, want in forward.items():
        head = compound_head(pfn_to_page(d, pfn))
        anon = bool(head.mapping.value_() & FOLIO_MAPPING_ANON)
        kinds[(anon, compound_order(head).value_(), len(want))] += 1
    assert kinds[(True, 9, 2)] == 3 * 512  # the THP and 2 private hugetlb pages, in parent and child
    assert kinds[(False, 9, 1)] == 512, kinds  # the MAP_SHARED hugetlb page: only db has faulted it in
    assert kinds[(True, 0, 1)] > 30 and kinds[(True, 0, 2)] > 30  # CoW-broken / still shared heap
    assert kinds[(False, 0, 2)] == 16 and kinds[(False, 0, 1)] >= 16  # data.bin: 64K by both, 128K by db


def test_mappers_equal_page_mapcount(snap, forward):
    """6.18 folio_precise_page_mapcount() (fs/proc/internal.h, CONFIG_PAGE_MAPCOUNT):
    _mapcount + 1 -- 0 when that word holds a page type (page_mapcount_is_type: a hugetlb
    folio's head page has PGTY_hugetlb there, not a mapcount) -- plus the folio's
    _entire_mapcount + 1 for a page of a large folio; read by drgn.  The sample: every 7th
    mapped pfn and every large folio's head page, so the page-type case is always checked
    (not only when the sampling stride happens to land on a hugetlb head)."""
    p, d, _wl, _path = snap
    # page_type_has_type(): (int)page_type < PGTY_mapcount_underflow << 24
    reserve = (d.constant("PGTY_mapcount_underflow").value_() << 24) - (1 << 32)
    seen = Counter()
    pfns = sorted(forward)
    heads = [pf for pf in pfns if compound_order(pfn_to_page(d, pf)).value_()]  # 0 for a tail
    assert len(heads) == 4  # the THP's and the three hugetlb folios' head pages
    for pfn in sorted(set(pfns[::7]) | set(heads)):
        page = pfn_to_page(d, pfn)
        k = page._mapcount.counter.value_() + 1
        if k - 1 < reserve:  # page_mapcount_is_type(k)
            k = 0
        if compound_order(compound_head(page)):
            k += cast("struct folio *", compound_head(page))._entire_mapcount.counter.value_() + 1
        assert len(rmap_walk_pfn(p, pfn)) == k, hex(pfn)
        seen[k] += 1
    assert seen[1] and seen[2]


def test_whatis_prints_the_mappers(snap, forward):
    _p, d, _wl, path = snap
    pfn = next(
        pf
        for pf, s in sorted(forward.items())
        if len(s) == 2 and not compound_head(pfn_to_page(d, pf)).mapping.value_() & FOLIO_MAPPING_ANON
    )
    out = run("whatis", str(path), "--pfn", str(pfn)).stdout
    lines = [ln for ln in out.splitlines() if "mapped by pid" in ln]
    assert len(lines) == 2 and all("/srv/data.bin" in ln for ln in lines), out
    want = {(pid, a) for pid, a in forward[pfn]}
    pob = d["page_offset_base"].value_()
    w = run_json("whatis", str(path), hex(pob + (pfn << 12)))  # its direct-map address
    assert w["kind"] == "page"
    assert {(pid, int(m["address"], 16)) for m in w["mappers"] for pid in m["pids"]} == want
    for pid, a in want:
        comm = next(t.comm.string_().decode() for t in for_each_task(d) if t.pid.value_() == pid)
        assert any(f"mapped by pid {pid} ({comm}) at {a:#x} in VMA" in ln for ln in lines), out


@pytest.mark.parametrize("how", ["unreadable", "cycle"])
def test_corrupt_anon_vma_tree_is_a_finding(snap, forward, tmp_path, how):
    _p, d, wl, _path = snap
    pfn = next(
        pf
        for pf, s in sorted(forward.items())
        if len(s) == 2 and compound_head(pfn_to_page(d, pf)).mapping.value_() & FOLIO_MAPPING_ANON
    )
    av = compound_head(pfn_to_page(d, pfn)).mapping.value_() & ~3
    km = wl.kernel.kmem
    root = km.get(av, "anon_vma", "rb_root.rb_root.rb_node")
    if how == "unreadable":
        saved = [(av, "anon_vma", "rb_root.rb_root.rb_node", root)]
        km.set(av, "anon_vma", "rb_root.rb_root.rb_node", 0xFFFFC9FFFFFF0000)  # unmapped vmalloc space
    else:  # the root's left child is itself, its subtree claims every pgoff
        saved = [(root, "rb_node", "rb_left", km.get(root, "rb_node", "rb_left"))]
        km.set(root, "rb_node", "rb_left", root)
    try:
        bad = tmp_path / "bad"
        save(wl.kernel, bad)
    finally:
        for a, s, f, v in saved:
            km.set(a, s, f, v)
    r = run("whatis", str(bad), "--pfn", str(pfn), ok=False)
    assert r.exit_code == 1, r.output
    err = r.stderr.strip()
    assert "\n" not in err and f"anon_vma {av:#x}" in err, err
    assert ("unreadable" if how == "unreadable" else "did not end") in err, err
