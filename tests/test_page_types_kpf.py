"""page-types --kpf: the KPF_* bits of /proc/kpageflags (fs/proc/page.c stable_page_flags) for
every pfn page-types walks, against an independent per-page port of stable_page_flags() that
reads each struct page and its folio with real drgn.  The scenario has what the bits
distinguish: THPs (a MADV_HUGEPAGE region), a hugetlb pool and a hugetlbfs mapping, anonymous
CoW-shared pages, a page-cache file mapped shared, slab and page-table pages, the zero page,
free buddy blocks and reserved memory."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from mmintro.cli.main import cli
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save
from mmintro.views import page_types as V
from mmintro.workload import parse_scenario, run_scenario

SCENARIO = """
[machine]
ram = "640M"  # THP needs 512M (hugepage_init)
cpus = 2
thp = "madvise"
hugepages_2m = 4

[[step]]
create_file = "db"
path = "/var/lib/db/table.dat"
size = "1M"

[[step]]
spawn = "java"

[[step]]
mmap = "young"
process = "java"
size = "16M"
hugepage = true

[[step]]
touch = "young"
process = "java"
access = "write"

[[step]]
mmap = "meta"
process = "java"
size = "1M"

[[step]]
touch = "meta"
process = "java"
access = "write"

[[step]]
mmap = "table"
process = "java"
kind = "shared"
file = "db"
size = "1M"

[[step]]
touch = "table"
process = "java"

[[step]]
mmap = "shared"
process = "java"
kind = "hugetlb"
shared = true
size = "4M"

[[step]]
touch = "shared"
process = "java"
access = "write"

[[step]]
fork = "child"
parent = "java"
"""


@pytest.fixture(scope="module")
def snap(tmp_path_factory):  # type: ignore[no-untyped-def]
    run = run_scenario(parse_scenario(SCENARIO, "kpf.toml"))
    path = tmp_path_factory.mktemp("kpf") / "s"
    save(run.kernel, path)
    return str(path)


def _stable_page_flags_drgn(path: str) -> Counter:
    """stable_page_flags() of every pfn below round_up(max_pfn, PAGES_PER_SECTION), one page at
    a time through drgn Objects (no code shared with mmintro.views.page_types)."""
    from drgn import cast
    from drgn.helpers.linux.mm import compound_head, pfn_to_page

    from mmintro.crosscheck import open_drgn

    d = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    c = {
        n: d[n].value_()
        for n in (
            "PG_head",
            "PG_locked",
            "PG_dirty",
            "PG_uptodate",
            "PG_writeback",
            "PG_lru",
            "PG_referenced",
            "PG_active",
            "PG_reclaim",
            "PG_swapbacked",
            "PG_unevictable",
            "PG_mlocked",
            "PG_reserved",
            "PG_owner_2",
            "PG_private",
            "PG_private_2",
            "PG_owner_priv_1",
            "PG_arch_1",
            "PG_idle",
            "PG_large_rmappable",
            "PG_swapcache",
            "PGTY_buddy",
            "PGTY_offline",
            "PGTY_table",
            "PGTY_hugetlb",
            "PGTY_slab",
        )
    }
    pages_per_section = 1 << (d["SECTION_SIZE_BITS"].value_() - 12) if "SECTION_SIZE_BITS" in d else 1 << 15
    max_pfn = d["max_pfn"].value_()
    max_dump_pfn = -(-max_pfn // pages_per_section) * pages_per_section
    zero_pfn = d["zero_pfn"].value_()
    bit = {
        "LOCKED": 0,
        "REFERENCED": 2,
        "UPTODATE": 3,
        "DIRTY": 4,
        "LRU": 5,
        "ACTIVE": 6,
        "SLAB": 7,
        "WRITEBACK": 8,
        "RECLAIM": 9,
        "BUDDY": 10,
        "MMAP": 11,
        "ANON": 12,
        "SWAPCACHE": 13,
        "SWAPBACKED": 14,
        "COMPOUND_HEAD": 15,
        "COMPOUND_TAIL": 16,
        "HUGE": 17,
        "UNEVICTABLE": 18,
        "NOPAGE": 20,
        "KSM": 21,
        "THP": 22,
        "OFFLINE": 23,
        "ZERO_PAGE": 24,
        "IDLE": 25,
        "PGTABLE": 26,
        "RESERVED": 32,
        "MLOCKED": 33,
        "OWNER_2": 34,
        "PRIVATE": 35,
        "PRIVATE_2": 36,
        "OWNER_PRIVATE": 37,
        "ARCH": 38,
    }
    copies = [
        ("LOCKED", "PG_locked"),
        ("DIRTY", "PG_dirty"),
        ("UPTODATE", "PG_uptodate"),
        ("WRITEBACK", "PG_writeback"),
        ("LRU", "PG_lru"),
        ("REFERENCED", "PG_referenced"),
        ("ACTIVE", "PG_active"),
        ("RECLAIM", "PG_reclaim"),
        ("SWAPBACKED", "PG_swapbacked"),
        ("UNEVICTABLE", "PG_unevictable"),
        ("MLOCKED", "PG_mlocked"),
        ("RESERVED", "PG_reserved"),
        ("OWNER_2", "PG_owner_2"),
        ("PRIVATE", "PG_private"),
        ("PRIVATE_2", "PG_private_2"),
        ("OWNER_PRIVATE", "PG_owner_priv_1"),
        ("ARCH", "PG_arch_1"),
        ("IDLE", "PG_idle"),
    ]
    folio_t = d.type("struct folio *")

    def ptype(page) -> int:  # type: ignore[no-untyped-def]
        t = page.page_type.value_() & 0xFFFFFFFF
        return t >> 24 if (t ^ 0x80000000) - 0x80000000 < -(1 << 24) else 0

    def is_free_buddy_page(page, pfn: int) -> bool:  # type: ignore[no-untyped-def]
        for order in range(11):
            head = pfn_to_page(d, pfn & ~((1 << order) - 1))
            if ptype(head) == c["PGTY_buddy"] and head.private.value_() >= order:
                return True
        return False

    out: Counter = Counter()
    present = set()
    from drgn import FaultError

    for pfn in range(0, max_dump_pfn, pages_per_section):
        try:
            pfn_to_page(d, pfn).flags.f.value_()
        except FaultError:  # no memory map here: KPF_NOPAGE
            continue
        present.add(pfn // pages_per_section)
    for pfn in range(max_dump_pfn):
        if pfn // pages_per_section not in present:
            out[1 << bit["NOPAGE"]] += 1
            continue
        page = pfn_to_page(d, pfn)
        head = compound_head(page)
        folio = cast(folio_t, head)
        k = folio.flags.f.value_()
        mapping = folio.mapping.value_()
        u = 0
        large = bool(k >> c["PG_head"] & 1)
        mapped = (
            (folio._large_mapcount.counter.value_() >= 0)
            if large
            else (ptype(head) == 0 and head._mapcount.counter.value_() >= 0)
        )
        u |= mapped << bit["MMAP"]
        if mapping & 1:
            u |= 1 << bit["ANON"]
            if mapping & 3 == 3:
                u |= 1 << bit["KSM"]
        if head.value_() == page.value_():
            u |= (k >> c["PG_head"] & 1) << bit["COMPOUND_HEAD"]
        else:
            u |= 1 << bit["COMPOUND_TAIL"]
        if ptype(head) == c["PGTY_hugetlb"]:
            u |= 1 << bit["HUGE"]
        elif large and folio._flags_1.value_() >> c["PG_large_rmappable"] & 1:
            u |= 1 << bit["THP"]
        elif head.value_() == pfn_to_page(d, zero_pfn).value_():
            u |= 1 << bit["ZERO_PAGE"]
        if ptype(page) == c["PGTY_buddy"] or head._refcount.counter.value_() == 0 and is_free_buddy_page(page, pfn):
            u |= 1 << bit["BUDDY"]
        if ptype(page) == c["PGTY_offline"]:
            u |= 1 << bit["OFFLINE"]
        if ptype(page) == c["PGTY_table"]:
            u |= 1 << bit["PGTABLE"]
        if ptype(head) == c["PGTY_slab"]:
            u |= 1 << bit["SLAB"]
        for name, pg in copies:
            u |= (k >> c[pg] & 1) << bit[name]
        sc = 1 << c["PG_swapcache"] | 1 << c["PG_swapbacked"]
        if k & sc == sc:
            u |= 1 << bit["SWAPCACHE"]
        out[u] += 1
    return out


@pytest.mark.slow
def test_kpf_flags_of_every_pfn_equal_a_per_page_port_through_drgn(snap) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("drgn")
    theirs = _stable_page_flags_drgn(snap)
    prog = open_snapshot(snap)
    raw = {r.flags: r.page_count for r in V.page_types(prog, kpf=True, raw=True)}
    want_raw = Counter()
    for f, n in theirs.items():
        want_raw[V.expand_overloaded_flags(f)] += n
    assert raw == dict(want_raw)
    known = {r.flags: r.page_count for r in V.page_types(prog, kpf=True)}
    want = Counter()
    for f, n in theirs.items():
        want[V.well_known_flags(f)] += n
    assert known == dict(want)
    # what the scenario put there is seen: THP heads and tails, hugetlb, anon mmap, file, zero page, slab
    for b in ("THP", "HUGE", "ANONYMOUS", "MMAP", "ZERO_PAGE", "SLAB", "BUDDY", "PGTABLE", "COMPOUND_TAIL"):
        assert any(f >> V.KPF[b] & 1 for f in raw), b


def test_kpf_cli_table_and_json(snap) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(cli, ["page-types", snap, "--kpf"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "             flags\tpage-count       MB  symbolic-flags\t\t\tlong-symbolic-flags"
    thp = next(ln for ln in lines if ln.endswith("thp") or ",thp" in ln)
    short = thp.split("  ")[-1].split("\t")[0]
    assert len(short) == len(V.KPF_NAMES) and short[sorted(V.KPF_NAMES).index(V.KPF["THP"])] == "t"
    rows = V.page_types(open_snapshot(snap), kpf=True)
    total = sum(x.page_count for x in rows)
    assert lines[-1].split() == ["total", str(total), str(total * 4096 >> 20)]
    # well-known flags: no kernel-hacker bits, compound bits only with huge
    for x in rows:
        assert not x.flags & V.KPF_HACKERS_BITS
        assert not x.flags & V.BITS_COMPOUND or x.flags >> V.KPF["HUGE"] & 1
    js = CliRunner().invoke(cli, ["page-types", snap, "--kpf", "--raw", "--json"])
    assert js.exit_code == 0
    import json

    data = json.loads(js.stdout)
    assert sum(d["page-count"] for d in data) == total
    assert any(d["flags"] >> V.KPF["RESERVED"] & 1 for d in data)  # -r shows the kernel-hacker bits
    bad = CliRunner().invoke(cli, ["page-types", snap, "--raw"])
    assert bad.exit_code == 2
