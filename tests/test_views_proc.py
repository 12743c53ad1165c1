"""The /proc-style reports pagetypeinfo, vmstat, meminfo, zoneinfo and the debugfs extfrag files:
their text against real 6.18 captures (reference/procfs), their numbers against real drgn
reading the same snapshot and against independent recomputations, and snapshots with
hand-edited counters and lists (so that each check is seen to fail when the data is wrong)."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from mmintro.crosscheck import open_drgn as xc_open_drgn
from mmintro.reader import open_snapshot
from mmintro.reader.helpers.mmzone import for_each_present_section, nr_to_section, section_geometry
from mmintro.snapshot.vmcore import write_vmcore
from mmintro.views import fragmentation as frag_view
from mmintro.views import meminfo as meminfo_view
from mmintro.views import pagetypeinfo as pti_view
from mmintro.views import vmstat as vmstat_view
from mmintro.views import zoneinfo as zoneinfo_view

drgn = pytest.importorskip("drgn")
from cli_helpers import REFERENCE, needs_reference, run, run_json
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.list import list_for_each
from drgn.helpers.linux.mm import totalram_pages, vm_commit_limit, vm_memory_committed
from drgn.helpers.linux.mmzone import (
    for_each_online_pgdat,
    high_wmark_pages,
    low_wmark_pages,
    min_wmark_pages,
    online_section,
    pfn_to_section,
)
from drgn.helpers.linux.percpu import per_cpu, per_cpu_ptr
from drgn.helpers.linux.vmstat import (
    global_node_page_state,
    global_vm_event_state,
    global_zone_page_state,
    nr_free_pages,
    zone_page_state,
)

# -- helpers ------------------------------------------------------------------------------------


def reference(name: str) -> str:
    return (REFERENCE / name).read_text()


def shapes(text: str) -> list[str]:
    """Each line with its numbers replaced by N: what the format alone decides."""
    return [re.sub(r"\d+", "N", line) for line in text.splitlines()]


def column_shapes(text: str) -> list[str]:
    """Each line with every right-aligned number (and the spaces and '>' before it) replaced by
    as many '#': equal when the columns have the same widths, whatever the values."""
    return [re.sub(r"[ >]*\d+", lambda m: "#" * len(m.group(0)), line) for line in text.splitlines()]


def open_drgn(path: str):
    return xc_open_drgn(path + ".vmcore", path + ".vmlinux")


def patched_copy(snapshot: str, out: Path, edits: list[tuple[int, bytes]]) -> str:
    """A copy of ``snapshot`` with bytes replaced at kernel virtual addresses.

    The vmcore stores only non-zero pages, so an edit may land on a page the file does not
    hold; the copy is therefore rewritten with the snapshot writer's ``write_vmcore`` from the
    original's stored bytes plus the edited pages (same RAM ranges, notes and vmlinux).
    """
    with open_snapshot(snapshot) as prog:
        core = prog.core
        pages: dict[int, bytearray] = {}
        for vaddr, data in edits:
            paddr = prog.translate(vaddr)
            page, off = paddr & ~0xFFF, paddr & 0xFFF
            assert off + len(data) <= 0x1000, "an edit must stay inside one page"
            if page not in pages:
                pages[page] = bytearray(core.read_phys(page, 0x1000))
            pages[page][off : off + len(data)] = data
        runs: list[tuple[int, bytes]] = []
        for s in core.segments:
            if s.filesz:
                stored = bytes(core.buf[s.offset : s.offset + s.filesz])
                runs.append((s.paddr, stored + bytes(-len(stored) % 0x1000)))
        out_runs: list[tuple[int, bytes]] = []
        covered = set()
        for paddr, data in runs:
            buf = bytearray(data)
            for page, content in pages.items():
                if paddr <= page < paddr + len(buf):
                    buf[page - paddr : page - paddr + 0x1000] = content
                    covered.add(page)
            out_runs.append((paddr, bytes(buf)))
        out_runs += [(page, bytes(content)) for page, content in pages.items() if page not in covered]
        out_runs.sort()
        prstatus = [desc for name, ntype, desc in core.notes if name == "CORE" and ntype == 1]
        write_vmcore(
            str(out) + ".vmcore", out_runs, core.vmcoreinfo_text, ram_ranges=core.ram_ranges, prstatus=prstatus
        )
    shutil.copy(snapshot + ".vmlinux", str(out) + ".vmlinux")
    return str(out)


def s64(v: int) -> bytes:
    """A 64-bit word (a signed counter or a pointer), little-endian."""
    return (v % (1 << 64)).to_bytes(8, "little")


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stderr.startswith("mmintro: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in result.stderr


@pytest.fixture(scope="module")
def churned_snapshot(tmp_path_factory):
    """A 1 GiB machine after 3000 allocations of mixed orders and migratetypes, every other one
    freed again: fragmented free lists of every migratetype, claimed pageblocks, pcp lists in
    use, NUMA and vm events counted.  Skipped if the simulator has no run-time allocator."""
    from mmintro.kernel import gfp as G
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save

    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    if not hasattr(k, "alloc_pages"):
        pytest.skip("the simulator has no alloc_pages")
    rnd = random.Random(1)
    held = []
    for _ in range(3000):
        gfp = rnd.choice([G.GFP_KERNEL, G.GFP_HIGHUSER_MOVABLE, G.GFP_KERNEL | G.__GFP_RECLAIMABLE])
        order = rnd.choice([0, 0, 0, 0, 1, 2, 3, 5, 9])
        held.append((k.alloc_pages(gfp, order), order))
    for pfn, order in held[::2]:
        k.free_pages(pfn, order)
    name = tmp_path_factory.mktemp("churned") / "churned"
    save(k, name)
    return str(name)


# -- pagetypeinfo -------------------------------------------------------------------------------
@needs_reference
def test_pagetypeinfo_has_the_reference_layout(cli_snapshot):
    text = run("pagetypeinfo", cli_snapshot).stdout
    ours, ref = pti_view.parse(text), pti_view.parse(reference("pagetypeinfo"))
    for key in ("pageblock_order", "pages_per_block", "orders", "types"):
        assert ours[key] == ref[key], key
    # same populated zones as the reference machine (DMA, DMA32, Normal on node 0)
    assert [(f["node"], f["zone"], f["type"]) for f in ours["free"]] == [
        (f["node"], f["zone"], f["type"]) for f in ref["free"]
    ]
    assert [(b["node"], b["zone"]) for b in ours["blocks"]] == [(b["node"], b["zone"]) for b in ref["blocks"]]
    assert column_shapes(text) == column_shapes(reference("pagetypeinfo"))  # line by line, trailing spaces too


def test_pagetypeinfo_overflow_prints_and_parses_like_the_kernel():
    row = pti_view.FreeCounts(0, "Normal", "Movable", [3, 100000], [False, True])
    nd = pti_view.NodePageTypes(0, 9, 512, ["Movable"], [row], [pti_view.BlockCounts(0, "Normal", [7])])
    text = pti_view.render([nd])
    assert "Node    0, zone   Normal, type      Movable      3 >100000 \n" in text
    back = pti_view.parse(text)
    assert back["free"][0]["counts"] == [3, 100000] and back["free"][0]["overflow"] == [False, True]


def test_pagetypeinfo_walk_stops_at_the_cap(cli_snapshot):
    with open_snapshot(cli_snapshot) as prog:
        zone = prog["node_data"][0].node_zones[prog.types.const("ZONE_DMA32")]
        head = int(zone.free_area[10].free_list[prog.types.const("MIGRATE_MOVABLE")].address_of_())
        n, cut = pti_view.count_free_list(prog, head)
        assert n > 3 and not cut
        assert pti_view.count_free_list(prog, head, cap=3) == (3, True)
        assert pti_view.count_free_list(prog, head, cap=n + 1) == (n, False)


def _free_sums_match_buddyinfo(snapshot: str) -> list[str]:
    """The check itself: for every zone and order, Σ over migratetypes of the pagetypeinfo
    free counts equals buddyinfo's nr_free.  Returns the mismatches."""
    free = pti_view.parse(run("pagetypeinfo", snapshot).stdout)["free"]
    sums: dict[tuple[int, str], list[int]] = {}
    for f in free:
        acc = sums.setdefault((f["node"], f["zone"]), [0] * len(f["counts"]))
        for o, n in enumerate(f["counts"]):
            acc[o] += n
    bad = []
    r = run("buddyinfo", snapshot, "--json", ok=False)
    assert r.exit_code in (0, 3), r.stderr  # 3: findings (nr_free against the lists: the same check)
    buddy = json.loads(r.stdout)["report"] if r.exit_code == 3 else json.loads(r.stdout)
    assert {(b["node"], b["zone"]) for b in buddy} == set(sums)
    for b in buddy:
        if sums[(b["node"], b["zone"])] != b["nr_free"]:
            bad.append(f"node {b['node']} {b['zone']}: lists {sums[(b['node'], b['zone'])]} nr_free {b['nr_free']}")
    return bad


@pytest.mark.parametrize("which", ["default", "numa2", "churned"])
def test_pagetypeinfo_free_counts_sum_to_buddyinfo(which, request):
    assert _free_sums_match_buddyinfo(request.getfixturevalue(f"{which}_snapshot")) == []


@pytest.mark.parametrize("which", ["numa2", "churned"])
def test_pagetypeinfo_free_counts_equal_drgns_list_walks(which, request):
    snap = request.getfixturevalue(f"{which}_snapshot")
    ours = run_json("pagetypeinfo", snap)
    theirs = open_drgn(snap)
    got = {(f["node"], f["zone"], f["type"]): f["counts"] for nd in ours for f in nd["free"]}
    want = {}
    names = ours[0]["types"]
    for pgdat in for_each_online_pgdat(theirs):
        for zone in pgdat.node_zones:
            if not zone.present_pages:
                continue
            for mt, name in enumerate(names):
                want[(pgdat.node_id.value_(), zone.name.string_().decode(), name)] = [
                    sum(1 for _ in list_for_each(zone.free_area[o].free_list[mt].address_of_()))
                    for o in range(len(zone.free_area))
                ]
    assert got == want


@pytest.mark.parametrize("which", ["default", "numa2", "churned"])
def test_pagetypeinfo_free_pages_are_the_zone_counters(which, request):
    """Σ count << order over the free lists of every migratetype but Isolate (whose pages
    account_freepages() leaves out) is the zone's nr_free_pages in zoneinfo, and the part in
    blocks of at least a pageblock is nr_free_pages_blocks."""
    snap = request.getfixturevalue(f"{which}_snapshot")
    pti = pti_view.parse(run("pagetypeinfo", snap).stdout)
    zones = {(z["node"], z["zone"]): z for z in zoneinfo_view.parse(run("zoneinfo", snap).stdout)}
    pages: dict[tuple[int, str], list[int]] = {}
    for f in pti["free"]:
        if f["type"] == "Isolate":
            continue
        acc = pages.setdefault((f["node"], f["zone"]), [0, 0])
        for order, n in enumerate(f["counts"]):
            acc[0] += n << order
            acc[1] += n << order if order >= pti["pageblock_order"] else 0
    for key, (free, in_blocks) in pages.items():
        assert (free, in_blocks) == (zones[key]["pages"]["free"], zones[key]["stats"]["nr_free_pages_blocks"]), key


def _drgn_block_counts(path: str, nr_types: int) -> dict[tuple[int, str], list[int]]:
    """pagetypeinfo_showblockcount_print() written again over drgn objects, with the kernel's
    get_pfnblock_flags_mask() arithmetic on mem_section->usage->pageblock_flags."""
    prog = open_drgn(path)
    order = 9
    nbits = 8  # NR_PAGEBLOCK_BITS = roundup_pow_of_two(__NR_PAGEBLOCK_BITS = 5)
    assert prog["__NR_PAGEBLOCK_BITS"].value_() == 5
    isolate_bit, isolate = prog["PB_migrate_isolate"].value_(), prog["MIGRATE_ISOLATE"].value_()
    out = {}
    for pgdat in for_each_online_pgdat(prog):
        for zone in pgdat.node_zones:
            if not zone.present_pages:
                continue
            counts = [0] * nr_types
            start = zone.zone_start_pfn.value_()
            for pfn in range(start, start + zone.spanned_pages.value_(), 1 << order):
                ms = pfn_to_section(prog, pfn)
                if not ms or not online_section(ms):
                    continue
                bitidx = ((pfn & ((1 << 15) - 1)) >> order) * nbits
                word = ms.usage.pageblock_flags[bitidx // 64].value_()
                flags = word >> (bitidx % 64) & ((1 << nbits) - 1)
                mt = isolate if flags >> isolate_bit & 1 else flags & 7
                if mt < nr_types:
                    counts[mt] += 1
            out[(pgdat.node_id.value_(), zone.name.string_().decode())] = counts
    return out


@pytest.mark.parametrize("which", ["numa2", "churned"])
def test_pagetypeinfo_block_counts_equal_drgn_and_the_pageblocks(which, request):
    snap = request.getfixturevalue(f"{which}_snapshot")
    ours = run_json("pagetypeinfo", snap)
    got = {(b["node"], b["zone"]): b["counts"] for nd in ours for b in nd["blocks"]}
    assert got == _drgn_block_counts(snap, len(ours[0]["types"]))
    # each zone's row sums to its pageblocks that lie in present sections
    with open_snapshot(snap) as prog:
        shift = section_geometry(prog).pfn_section_shift
        present = {s.nr for s in for_each_present_section(prog)}
        for (nid, name), counts in got.items():
            zone = next(z for z in prog["node_data"][nid].node_zones if z.name.string_().decode() == name)
            start = zone.zone_start_pfn.value_()
            pfns = range(start, start + zone.spanned_pages.value_(), 512)
            assert sum(counts) == sum(1 for p in pfns if p >> shift in present), name


def _pageblock_byte(prog, g, pfn: int) -> int:
    usage = nr_to_section(prog, pfn >> g.pfn_section_shift).usage.value_()
    where = usage + prog.types.offsetof("mem_section_usage", "pageblock_flags")
    return prog.read(where + ((pfn & (g.pages_per_section - 1)) >> 9), 1)[0]


def test_pagetypeinfo_reads_changed_pageblock_types(cli_snapshot, tmp_path):
    """Two Movable pageblocks rewritten (one Unmovable, one Movable+isolated) move the counts."""
    with open_snapshot(cli_snapshot) as prog:
        zone = prog["node_data"][0].node_zones[prog.types.const("ZONE_NORMAL")]
        g = section_geometry(prog)
        start = zone.zone_start_pfn.value_()
        edits = []
        # two pageblocks that boot left Movable (MIGRATE_MOVABLE = 1 in the low bits)
        movable = [
            pfn for pfn in range(start + 512 * 3, start + 512 * 200, 512) if _pageblock_byte(prog, g, pfn) & 0x7 == 1
        ][:2]
        for pfn, value in zip(movable, (0x00, 0x11)):
            usage = nr_to_section(prog, pfn >> g.pfn_section_shift).usage.value_()
            where = usage + prog.types.offsetof("mem_section_usage", "pageblock_flags")
            edits.append((where + ((pfn & (g.pages_per_section - 1)) >> 9), bytes([value])))
    before = {b["zone"]: b["counts"] for b in run_json("pagetypeinfo", cli_snapshot)[0]["blocks"]}
    bad = patched_copy(cli_snapshot, tmp_path / "pb", edits)
    after = {b["zone"]: b["counts"] for b in run_json("pagetypeinfo", bad)[0]["blocks"]}
    unmov, mov, isol = 0, 1, 4
    assert after["Normal"][unmov] == before["Normal"][unmov] + 1
    assert after["Normal"][isol] == before["Normal"][isol] + 1
    assert after["Normal"][mov] == before["Normal"][mov] - 2
    assert after["DMA32"] == before["DMA32"]
    types = run_json("pagetypeinfo", bad)[0]["types"]
    assert {(0, z): c for z, c in after.items()} == _drgn_block_counts(bad, len(types))


def test_pagetypeinfo_counts_only_the_zones_own_pageblocks_where_spans_overlap(numa2_snapshot, tmp_path):
    """Node 1's DMA32 made to start where node 0's does (interleaved nodes): the pageblocks of
    node 0 inside its span are skipped (page_zone(page) != zone), so its row stays the same."""
    before = {
        (b["node"], b["zone"]): b["counts"] for nd in run_json("pagetypeinfo", numa2_snapshot) for b in nd["blocks"]
    }
    with open_snapshot(numa2_snapshot) as prog:
        dma32 = prog.types.const("ZONE_DMA32")
        zone0, zone1 = (prog["node_data"][n].node_zones[dma32] for n in (0, 1))
        start0 = zone0.zone_start_pfn.value_()
        end1 = zone1.zone_start_pfn.value_() + zone1.spanned_pages.value_()
        assert zone0.zone_start_pfn.value_() + zone0.spanned_pages.value_() <= zone1.zone_start_pfn.value_()
        edits = [
            (int(zone1.zone_start_pfn.address_of_()), s64(start0)),
            (int(zone1.spanned_pages.address_of_()), s64(end1 - start0)),
        ]
    bad = patched_copy(numa2_snapshot, tmp_path / "overlap", edits)
    after = {(b["node"], b["zone"]): b["counts"] for nd in run_json("pagetypeinfo", bad) for b in nd["blocks"]}
    assert after == before
    # (the same walk without the page_zone() check would count node 0's pageblocks too)
    assert sum(_drgn_block_counts(bad, 5)[(1, "DMA32")]) == sum(before[(1, "DMA32")]) + sum(before[(0, "DMA32")])


def test_pagetypeinfo_broken_free_list_is_a_one_line_error(cli_snapshot, tmp_path):
    with open_snapshot(cli_snapshot) as prog:
        zone = prog["node_data"][0].node_zones[prog.types.const("ZONE_DMA32")]
        head = zone.free_area[10].free_list[prog.types.const("MIGRATE_MOVABLE")]
        second = head.next.next.value_()
        where = second + prog.types.offsetof("list_head", "prev")
    bad = patched_copy(cli_snapshot, tmp_path / "list", [(where, s64(second))])  # second->prev = second
    one_line_error(run("pagetypeinfo", bad, ok=False), "broken link", "DMA32", "free_list[Movable]")
    r = run("buddyinfo", bad, ok=False)  # nr_free is printed as read, the broken list is a finding
    assert r.exit_code == 3 and "# finding: free_area: node 0 zone DMA32: free_area[10].free_list[" in r.stdout


def test_free_sum_check_catches_a_wrong_nr_free(cli_snapshot, tmp_path):
    """The buddyinfo/pagetypeinfo agreement check does fail on a snapshot where they disagree."""
    with open_snapshot(cli_snapshot) as prog:
        fa = prog["node_data"][0].node_zones[prog.types.const("ZONE_NORMAL")].free_area[10]
        where, value = int(fa.nr_free.address_of_()), fa.nr_free.value_() + 1
    bad = patched_copy(cli_snapshot, tmp_path / "nr_free", [(where, s64(value))])
    mismatches = _free_sums_match_buddyinfo(bad)
    assert len(mismatches) == 1 and "Normal" in mismatches[0]
    r = run("buddyinfo", bad, ok=False)  # and buddyinfo says so itself (mmintro.reader.validate)
    assert r.exit_code == 3 and f"zone Normal: free_area[10].nr_free is {value} but its free lists hold" in r.stdout


# -- vmstat -------------------------------------------------------------------------------------
# Items the reference kernel prints that this snapshot's configuration lacks, with the reason.
# Empty: the snapshot's enums come from the reference kernel's own BTF, so the same #ifdefs
# hold (no NR_UNACCEPTED, no CMA events, no DEBUG_TLBFLUSH/PER_VMA_LOCK_STATS/DEBUG_STACK_USAGE).
VMSTAT_ABSENT_HERE: dict[str, str] = {}


@needs_reference
def test_vmstat_prints_the_reference_names_in_order(cli_snapshot):
    ours = list(vmstat_view.parse(run("vmstat", cli_snapshot).stdout))
    ref = list(vmstat_view.parse(reference("vmstat")))
    missing = [n for n in ref if n not in ours]
    extra = [n for n in ours if n not in ref]
    assert missing == list(VMSTAT_ABSENT_HERE), f"absent here without a reason: {missing}"
    assert extra == [], f"printed here but not by the reference kernel: {extra}"
    assert ours == [n for n in ref if n not in VMSTAT_ABSENT_HERE]  # and in the same order
    assert ours[-1] == "nr_unstable"


def test_dirty_limits_reproduce_the_reference_capture():
    """Reference: vm.dirty_ratio 20, dirty_background_ratio 10, bytes 0 (sys/proc_sys_vm.txt);
    free 6082303 pages (MemFree), totalreserve 30765, file LRU 28829 + 20496 pages."""
    avail = vmstat_view.global_dirtyable_memory(6082303, 30765, 28829 + 20496)
    assert vmstat_view.domain_dirty_limits(avail, 20, 10, 0, 0) == (609192, 1219874)
    # vm.dirty_bytes wins over the ratio; a background above the limit is halved
    assert vmstat_view.domain_dirty_limits(avail, 20, 10, 4096 * 1000 + 1, 0).dirty == 1001
    assert vmstat_view.domain_dirty_limits(avail, 20, 10, 4096 * 1000, 4096 * 5000) == (500, 1000)


@pytest.mark.parametrize("which", ["default", "churned"])
def test_vmstat_values_equal_drgns(which, request):
    snap = request.getfixturevalue(f"{which}_snapshot")
    _assert_vmstat_like_drgn(snap, vmstat_view.parse(run("vmstat", snap).stdout))


def _assert_vmstat_like_drgn(path: str, ours: dict[str, int]) -> None:
    prog = open_drgn(path)
    names = list(ours)
    nz = prog["NR_VM_ZONE_STAT_ITEMS"].value_()
    nn = prog["NR_VM_NUMA_EVENT_ITEMS"].value_()
    nd = prog["NR_VM_NODE_STAT_ITEMS"].value_()
    ne = prog["NR_VM_EVENT_ITEMS"].value_()
    thp = {
        prog[e].value_()
        for e in ("NR_ANON_THPS", "NR_FILE_THPS", "NR_SHMEM_THPS", "NR_SHMEM_PMDMAPPED", "NR_FILE_PMDMAPPED")
    }
    assert [ours[n] for n in names[:nz]] == [global_zone_page_state(prog, i) for i in range(nz)]
    assert [ours[n] for n in names[nz + nn : nz + nn + nd]] == [
        global_node_page_state(prog, i) // (512 if i in thp else 1) for i in range(nd)
    ]
    first_event = nz + nn + nd + prog["NR_VM_STAT_ITEMS"].value_()
    pgpg = {prog["PGPGIN"].value_(), prog["PGPGOUT"].value_()}
    assert [ours[n] for n in names[first_event : first_event + ne]] == [
        global_vm_event_state(prog, i) // (2 if i in pgpg else 1) for i in range(ne)
    ]
    assert ours["nr_free_pages"] == nr_free_pages(prog)


# -- a snapshot with busy counters ---------------------------------------------------------------
@pytest.fixture(scope="module")
def busy_snapshot(default_snapshot, tmp_path_factory):
    """The default snapshot with counters set by hand (addresses found by drgn): file LRU, slab,
    THPs (one page more than 2 THPs, to see the division truncate), a negative LRU counter
    (read as 0), per-CPU vm events, a pending per-CPU NUMA event, committed memory, swap and a
    2 MiB hugetlb pool of 3 pages."""
    prog = open_drgn(default_snapshot)
    node = {
        "NR_ACTIVE_FILE": 3000,
        "NR_INACTIVE_FILE": 5000,
        "NR_SLAB_RECLAIMABLE_B": 700,
        "NR_SLAB_UNRECLAIMABLE_B": 300,
        "NR_KERNEL_MISC_RECLAIMABLE": 10,
        "NR_ANON_THPS": 1025,
        "NR_FILE_PAGES": 9000,
        "NR_SWAPCACHE": 100,
        "NR_SHMEM": 50,
        "NR_KERNEL_STACK_KB": 1408,
        "NR_PAGETABLE": 77,
        "NR_ACTIVE_ANON": -5,
        "NR_FILE_DIRTY": 12,
    }
    edits = [(prog["vm_node_stat"][prog[k]].address_, s64(v)) for k, v in node.items()]
    edits.append((prog["vm_zone_stat"][prog["NR_MLOCK"]].address_, s64(12)))
    hit = prog["NUMA_HIT"].value_()
    normal = prog["node_data"][0].node_zones[prog["ZONE_NORMAL"]]
    edits.append((prog["vm_numa_event"][hit].address_, s64(1000)))
    edits.append((normal.vm_numa_event[hit].address_, s64(1000)))
    edits.append((per_cpu_ptr(normal.per_cpu_zonestats, 1).vm_numa_event[hit].address_, s64(7)))
    for cpu, (pgpgin, pgfree) in enumerate(((10, 5), (11, 6))):
        ev = per_cpu(prog["vm_event_states"], cpu).event
        edits += [(ev[prog["PGPGIN"]].address_, s64(pgpgin)), (ev[prog["PGFREE"]].address_, s64(pgfree))]
    edits.append((prog["vm_committed_as"].count.address_, s64(777)))
    edits += [(prog["total_swap_pages"].address_, s64(1000)), (prog["nr_swap_pages"].address_, s64(400))]
    h = prog["hstates"][prog["default_hstate_idx"]]  # the 2 MiB hstate hugetlb_init made the default
    assert h.order.value_() == 9
    edits += [
        (getattr(h, f).address_, s64(v))
        for f, v in (("nr_huge_pages", 3), ("free_huge_pages", 2), ("resv_huge_pages", 1), ("surplus_huge_pages", 0))
    ]
    return patched_copy(default_snapshot, tmp_path_factory.mktemp("busy") / "busy", edits)


def test_busy_vmstat_equals_drgn_and_the_kernels_rules(busy_snapshot):
    ours = vmstat_view.parse(run("vmstat", busy_snapshot).stdout)
    _assert_vmstat_like_drgn(busy_snapshot, ours)
    assert ours["nr_anon_transparent_hugepages"] == 2  # 1025 pages // HPAGE_PMD_NR
    assert ours["nr_active_anon"] == 0  # a negative counter reads as 0
    assert ours["pgpgin"] == (10 + 11) // 2 and ours["pgfree"] == 11
    assert ours["numa_hit"] == 1007  # fold_vm_numa_events() adds the CPU's pending 7
    zones = zoneinfo_view.parse(run("zoneinfo", busy_snapshot).stdout)
    assert next(z for z in zones if z["zone"] == "Normal")["stats"]["numa_hit"] == 1007
    prog = open_drgn(busy_snapshot)
    file_lru = global_node_page_state(prog, prog["NR_ACTIVE_FILE"]) + global_node_page_state(
        prog, prog["NR_INACTIVE_FILE"]
    )
    avail = nr_free_pages(prog) - min(nr_free_pages(prog), prog["totalreserve_pages"].value_()) + file_lru + 1
    assert ours["nr_dirty_threshold"] == avail * (20 * 4096 // 100) // 4096
    assert ours["nr_dirty_background_threshold"] == avail * (10 * 4096 // 100) // 4096


def test_busy_meminfo_equals_drgn(busy_snapshot):
    ours = meminfo_view.parse(run("meminfo", busy_snapshot).stdout)
    prog = open_drgn(busy_snapshot)

    def node(name: str) -> int:
        return global_node_page_state(prog, prog[name])

    free = nr_free_pages(prog)
    wmark_low = sum(low_wmark_pages(z.address_of_()) for pgdat in for_each_online_pgdat(prog) for z in pgdat.node_zones)
    file_lru = node("NR_ACTIVE_FILE") + node("NR_INACTIVE_FILE")
    reclaimable = node("NR_SLAB_RECLAIMABLE_B") + node("NR_KERNEL_MISC_RECLAIMABLE")
    available = (
        free
        - prog["totalreserve_pages"].value_()
        + file_lru
        - min(file_lru // 2, wmark_low)
        + reclaimable
        - min(reclaimable // 2, wmark_low)
    )
    want = {
        "MemTotal": totalram_pages(prog) * 4,
        "MemFree": free * 4,
        "MemAvailable": max(0, available) * 4,
        "Buffers": 0,
        "Cached": (node("NR_FILE_PAGES") - node("NR_SWAPCACHE")) * 4,
        "SwapCached": node("NR_SWAPCACHE") * 4,
        "Active": (node("NR_ACTIVE_ANON") + node("NR_ACTIVE_FILE")) * 4,
        "Inactive(file)": node("NR_INACTIVE_FILE") * 4,
        "Mlocked": global_zone_page_state(prog, prog["NR_MLOCK"]) * 4,
        "SwapTotal": 4000,
        "SwapFree": 1600,
        "Dirty": 48,
        "Shmem": 200,
        "KReclaimable": reclaimable * 4,
        "Slab": (node("NR_SLAB_RECLAIMABLE_B") + node("NR_SLAB_UNRECLAIMABLE_B")) * 4,
        "SReclaimable": 2800,
        "SUnreclaim": 1200,
        "KernelStack": 1408,
        "PageTables": 308,
        "CommitLimit": vm_commit_limit(prog) * 4,
        "Committed_AS": vm_memory_committed(prog) * 4,
        "VmallocTotal": 34359738367,
        "Percpu": prog["pcpu_nr_populated"].value_() * prog["pcpu_nr_units"].value_() * 4,
        "AnonHugePages": 4100,
        "HugePages_Total": 3,
        "HugePages_Free": 2,
        "HugePages_Rsvd": 1,
        "HugePages_Surp": 0,
        "Hugepagesize": 2048,
        "Hugetlb": 3 * 2048,
    }
    count = prog["direct_pages_count"]
    want |= {
        "DirectMap4k": count[prog["PG_LEVEL_4K"]].value_() << 2,
        "DirectMap2M": count[prog["PG_LEVEL_2M"]].value_() << 11,
        "DirectMap1G": count[prog["PG_LEVEL_1G"]].value_() << 20,
    }
    assert {k: ours[k] for k in want} == want
    assert want["Committed_AS"] == 777 * 4
    assert want["CommitLimit"] == ((totalram_pages(prog) - 3 * 512) * 50 // 100 + 1000) * 4


# -- meminfo ------------------------------------------------------------------------------------
@needs_reference
def test_meminfo_has_the_reference_lines_in_order(cli_snapshot):
    text = run("meminfo", cli_snapshot).stdout
    assert list(meminfo_view.parse(text)) == list(meminfo_view.parse(reference("meminfo")))
    assert column_shapes(text) == column_shapes(reference("meminfo"))


@needs_reference
def test_meminfo_renders_the_reference_byte_for_byte():
    """Our renderer given the reference's values gives the reference file (alignment of every
    line, including the 11-digit VmallocTotal and the unit-less HugePages_* counts)."""
    ref = reference("meminfo")
    lines = [
        meminfo_view.MeminfoLine(k, v, "" if k.startswith("HugePages_") else "kB")
        for k, v in meminfo_view.parse(ref).items()
    ]
    assert meminfo_view.render(lines) == ref


def test_mem_available_reproduces_the_reference_capture():
    """Reference: MemFree 24329212 kB, totalreserve 30765 pages, file LRU (81984 + 115316) kB,
    SReclaimable 58336 kB, Σ low watermarks 66 + 13571 + 7480 + 32 + 0 (zoneinfo) → 24348024 kB."""
    pages = meminfo_view.si_mem_available(
        24329212 // 4, 30765, (81984 + 115316) // 4, 58336 // 4, 66 + 13571 + 7480 + 32 + 0
    )
    assert pages * 4 == 24348024
    assert meminfo_view.si_mem_available(10, 100, 0, 0, 0) == 0  # never negative


def test_meminfo_free_is_nr_free_pages(any_snapshot):
    mem = meminfo_view.parse(run("meminfo", any_snapshot).stdout)
    vm = vmstat_view.parse(run("vmstat", any_snapshot).stdout)
    prog = open_drgn(any_snapshot)
    assert mem["MemFree"] == vm["nr_free_pages"] * 4 == nr_free_pages(prog) * 4
    assert mem["MemTotal"] == totalram_pages(prog) * 4
    assert mem["Hugepagesize"] == 2048


# -- fragmentation ------------------------------------------------------------------------------
def _indices_from_buddyinfo(nr_free: list[int]) -> tuple[list[int], list[int]]:
    """Both debugfs indexes in thousandths, written from the definitions in
    Documentation/ and mm/vmstat.c's comments rather than from the view's code."""
    unusable, extfrag = [], []
    free_pages = sum(n << k for k, n in enumerate(nr_free))
    blocks = sum(nr_free)
    for order in range(len(nr_free)):
        big = sum(n << (k - order) for k, n in enumerate(nr_free) if k >= order)  # blocks of 2^order
        unusable.append(1000 if not free_pages else (free_pages - (big << order)) * 1000 // free_pages)
        if not blocks:
            extfrag.append(0)
        elif big:
            extfrag.append(-1000)
        else:
            extfrag.append(1000 - (1000 + free_pages * 1000 // 2**order) // blocks)
    return unusable, extfrag


@pytest.mark.parametrize("which", ["default", "numa2", "churned"])
def test_fragmentation_recomputed_from_buddyinfo(which, request):
    snap = request.getfixturevalue(f"{which}_snapshot")
    buddy = run_json("buddyinfo", snap)
    parsed = frag_view.parse(run("fragmentation", snap).stdout)
    assert set(parsed) == {"unusable_index", "extfrag_index"}
    for name, col in (("unusable_index", 0), ("extfrag_index", 1)):
        assert [(r["node"], r["zone"]) for r in parsed[name]] == [(b["node"], b["zone"]) for b in buddy]
        assert [r["index"] for r in parsed[name]] == [_indices_from_buddyinfo(b["nr_free"])[col] for b in buddy]
    # --index prints just that debugfs file, without a header
    only = run("fragmentation", snap, "--index", "extfrag").stdout
    assert not only.startswith("#") and frag_view.parse(only)[""] == parsed["extfrag_index"]


@needs_reference
def test_fragmentation_of_the_reference_buddyinfo():
    rows = []
    for line in reference("buddyinfo").splitlines():
        m = re.match(r"Node (\d+), zone +(\S+)((?: +\d+)+) *$", line)
        rows.append(
            frag_view.FragRow(
                int(m.group(1)),
                m.group(2),
                *[
                    [f(o, frag_view.fill_contig_page_info([int(v) for v in m.group(3).split()], o)) for o in range(11)]
                    for f in (frag_view.unusable_free_index, frag_view.fragmentation_index)
                ],
            )
        )
    text = frag_view.render(rows, "unusable_index")
    assert text.splitlines()[0] == "Node 0, zone      DMA " + "0.000 " * 9 + "0.066 0.200 "
    assert frag_view.render(rows, "extfrag_index").splitlines()[2] == "Node 0, zone   Normal " + "-1.000 " * 11


def test_fragmentation_index_quirks_match_the_kernels_c():
    one_small = [1] + [0] * 10  # a single free page, an order-1 request fails
    info = frag_view.fill_contig_page_info(one_small, 1)
    assert frag_view.fragmentation_index(1, info) == -500  # unsigned math, returned as int
    row = frag_view.FragRow(
        0,
        "DMA",
        [1000] * 11,
        [frag_view.fragmentation_index(o, frag_view.fill_contig_page_info(one_small, o)) for o in range(11)],
    )
    ext = frag_view.render([row], "extfrag_index")
    # 1000 - (1000 + 1000 / 2^order): -500, -250, ... printed "%2d.%03d" of (index / 1000, index % 1000)
    assert ext == (
        "Node 0, zone      DMA -1.000  0.-500  0.-250  0.-125  0.-62  0.-31  0.-15  0.-07  0.-03  0.-01  0.000 \n"
    )
    assert frag_view.parse(ext)[""][0]["index"] == row.extfrag_index
    empty = frag_view.fill_contig_page_info([0] * 11, 3)
    assert (frag_view.unusable_free_index(3, empty), frag_view.fragmentation_index(3, empty)) == (1000, 0)


# -- zoneinfo -----------------------------------------------------------------------------------
@needs_reference
def test_zoneinfo_lines_are_the_references_line_by_line(cli_snapshot):
    """Same machine shape as the reference (1 node, 2 CPUs, 3 populated zones of 5): every line,
    numbers aside, is the reference's line in the same place."""
    assert shapes(run("zoneinfo", cli_snapshot).stdout) == shapes(reference("zoneinfo"))


@pytest.mark.parametrize("which", ["numa2", "churned"])
def test_zoneinfo_values_equal_drgns(which, request):
    snap = request.getfixturevalue(f"{which}_snapshot")
    zones = zoneinfo_view.parse(run("zoneinfo", snap).stdout)
    prog = open_drgn(snap)
    want = []
    for pgdat in for_each_online_pgdat(prog):
        for z in pgdat.node_zones:
            zp = z.address_of_()
            entry = {
                "node": pgdat.node_id.value_(),
                "zone": z.name.string_().decode(),
                "free": zone_page_state(zp, prog["NR_FREE_PAGES"]),
                "min": min_wmark_pages(zp),
                "low": low_wmark_pages(zp),
                "high": high_wmark_pages(zp),
                "protection": [v.value_() for v in z.lowmem_reserve],
            }
            if z.present_pages:
                entry["pagesets"] = {
                    cpu: (
                        per_cpu_ptr(z.per_cpu_pageset, cpu).count.value_(),
                        per_cpu_ptr(z.per_cpu_pageset, cpu).high.value_(),
                        per_cpu_ptr(z.per_cpu_pageset, cpu).batch.value_(),
                        per_cpu_ptr(z.per_cpu_zonestats, cpu).stat_threshold.value_(),
                    )
                    for cpu in for_each_online_cpu(prog)
                }
                entry["start_pfn"] = z.zone_start_pfn.value_()
            want.append(entry)
    got = []
    for z in zones:
        entry = {
            "node": z["node"],
            "zone": z["zone"],
            "free": z["pages"]["free"],
            "min": z["pages"]["min"],
            "low": z["pages"]["low"],
            "high": z["pages"]["high"],
            "protection": z["protection"],
        }
        if "pagesets" in z:
            entry["pagesets"] = {
                cpu: (p["count"], p["high"], p["batch"], p["vm stats threshold"]) for cpu, p in z["pagesets"].items()
            }
            entry["start_pfn"] = z["start_pfn"]
        got.append(entry)
    assert got == want


# -- the commands -------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["pagetypeinfo", "vmstat", "meminfo", "fragmentation", "zoneinfo"])
def test_commands_give_json_and_a_one_line_error_for_a_missing_snapshot(command, cli_snapshot, tmp_path):
    assert run_json(command, cli_snapshot)
    one_line_error(run(command, str(tmp_path / "nothing"), ok=False), "does not exist")
