"""The per-process views against real drgn on a faulted, forked process.

A process writes half of a 4 MiB anonymous mapping, reads a quarter (the shared zero page),
maps a file and reads/writes it, then forks; the child writes an eighth (copy-on-write).  Then:

* the columnar page-table scan finds exactly the present user pages drgn's ``follow_page``
  finds, with the same pfns (and on the kernel's own tables, ``follow_phys`` through PMD and
  PUD leaves);
* smaps' Rss of every VMA is drgn's count of ``follow_page`` hits outside the zero page
  (smaps_pte_entry's vm_normal_page skips it), and Pss / Shared / Private / Anonymous follow
  6.18's rules computed independently from drgn's struct pages;
* status' Vm/Rss lines are the mm fields and drgn's ``task_rss`` sums (6.18 task_mem uses
  get_mm_counter_sum), and smaps_rollup's Rss is the same (the counters agree with the page
  tables);
* ``vtop --pid`` gives drgn's ``follow_phys``; ``vm`` gives the VMAs and header of drgn's crash
  ``vm``; a page-table entry pointing outside RAM or at its own table is a finding.
"""

from __future__ import annotations

import re
import shutil
import struct

import numpy as np
import pytest
from cli_helpers import run

from mmintro.reader import open_snapshot
from mmintro.reader.helpers import pgtable as pt
from mmintro.reader.helpers.task import find_task as my_find_task
from mmintro.reader.helpers.task import for_each_vma as my_for_each_vma
from mmintro.views import numa_maps as N
from mmintro.views import smaps as S
from mmintro.views import status as ST
from mmintro.views import vm as V

drgn = pytest.importorskip("drgn")
memory = pytest.importorskip("mmintro.kernel.memory")

MB = 1 << 20


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=1 << 30, cpus=2, seed=5)))
    w.spawn("p", heap=0x10000)
    w.mmap("p", "a", 4 * MB)
    w.touch("p", "a", write=True, size=2 * MB)
    w.touch("p", "a", write=False, start=2 * MB, size=1 * MB)  # the shared zero page
    try:
        w.create_file("f", "/data/log", 0x10000)
        w.mmap("p", "fm", 0x10000, kind="shared", file="f")
        w.touch("p", "fm", write=False)
        w.touch("p", "fm", write=True, size=0x4000)
    except Exception as e:
        print(f"no file mapping: {e}")
    w.fork("c", "p")
    w.touch("c", "a", write=True, size=MB // 2)
    d = tmp_path_factory.mktemp("views_task")
    save(w.k, d / "t")
    return str(d / "t"), w.proc("p").pid, w.proc("c").pid


@pytest.fixture(scope="module")
def progs(snap):
    from mmintro.crosscheck import open_drgn

    path = snap[0]
    return open_snapshot(path), open_drgn(path + ".vmcore", path + ".vmlinux")


def _drgn_pages(d, pid):
    """{vaddr: pfn} of every present user page of ``pid`` by drgn's follow_page per address."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_pfn, for_each_vma
    from drgn.helpers.linux.pid import find_task

    mm = find_task(d, pid).mm
    out = {}
    for v in for_each_vma(mm):
        for a in range(v.vm_start.value_(), v.vm_end.value_(), 4096):
            try:
                out[a] = follow_pfn(mm, a).value_()
            except FaultError:
                pass
    return out


def test_kernel_tables_scan_equals_drgn_follow_phys(progs) -> None:
    from drgn.helpers.linux.mm import follow_phys

    p, d = progs
    scan = pt.scan_page_tables(p, p.pgd_phys, 256, 511)
    assert not scan.findings
    levels = set(scan.level.tolist())
    assert pt.LEVEL_PMD in levels and pt.LEVEL_PTE in levels  # direct map / vmemmap leaves and 4 KiB ones
    init_mm = d["init_mm"].address_of_()
    rng = np.random.default_rng(1)
    for i in rng.choice(len(scan), 300, replace=False).tolist():
        if not scan.present[i]:
            continue
        off = int(rng.integers(0, int(scan.size[i])))
        va = int(scan.vaddr[i]) + off
        assert follow_phys(init_mm, va).value_() == (int(scan.pfn[i]) << 12) + off, hex(va)


@pytest.mark.parametrize("who", [1, 2])
def test_user_scan_finds_drgns_pages(snap, progs, who) -> None:
    p, d = progs
    pid = snap[who]
    scan = pt.scan_mm(my_find_task(p, pid).mm)
    assert not scan.findings
    s = scan.select(scan.present)
    assert set(s.level.tolist()) <= {pt.LEVEL_PTE, pt.LEVEL_PMD, pt.LEVEL_PUD}
    mine = {}
    for va, pfn, lvl in zip(s.vaddr.tolist(), s.pfn.tolist(), s.level.tolist()):
        for j in range(pt.LEAF_SIZE[lvl] // 4096):
            mine[va + 4096 * j] = pfn + j
    assert mine == _drgn_pages(d, pid)


def _zero_pfn(d) -> int:
    return d["zero_pfn"].value_()


@pytest.mark.parametrize("who", [1, 2])
def test_smaps_equals_6_18_rules_on_drgns_struct_pages(snap, progs, who) -> None:
    """Per VMA: Rss = drgn's follow_page hits minus the zero page; Pss, Shared and Private
    from each page's _mapcount and the folio's _refcount read by drgn (order-0 folios)."""
    from drgn.helpers.linux.mm import for_each_vma, pfn_to_page
    from drgn.helpers.linux.pid import find_task

    p, d = progs
    pid = snap[who]
    rep = S.smaps(p, pid)
    assert not rep.findings
    zero = _zero_pfn(d)
    pages = _drgn_pages(d, pid)
    vmas = list(for_each_vma(find_task(d, pid).mm))
    # the mm's VMAs, then the gate VMA (get_gate_vma: [vsyscall], not in the maple tree)
    assert [v.maps.start for v in rep.vmas] == [v.vm_start.value_() for v in vmas] + [d["gate_vma"].vm_start.value_()]
    assert rep.vmas[-1].maps.name == "[vsyscall]" and rep.vmas[-1].stats.resident == 0
    total_rss = 0
    for v in rep.vmas[:-1]:
        hits = [pfn for a, pfn in pages.items() if v.maps.start <= a < v.maps.end and pfn != zero]
        st = v.stats
        assert st.resident == 4096 * len(hits), hex(v.maps.start)
        pss = shared = private = anon = 0
        for pfn in hits:
            page = pfn_to_page(d, pfn)
            mapcount = page._mapcount.counter.value_() + 1
            ref = page._refcount.counter.value_()
            mapping = page.mapping.value_()
            assert not page.compound_head.value_() & 1 and not page.flags.f.value_() & (1 << d["PG_head"].value_())
            if ref == 1 or mapcount < 2:
                pss += 4096 << S.PSS_SHIFT
                private += 4096
            else:
                pss += (4096 << S.PSS_SHIFT) // mapcount
                shared += 4096
            anon += 4096 if mapping & 1 else 0
        assert (st.pss, st.shared_clean + st.shared_dirty, st.private_clean + st.private_dirty, st.anonymous) == (
            pss,
            shared,
            private,
            anon,
        ), hex(v.maps.start)
        total_rss += st.resident
    assert total_rss > 0


def test_cow_pss_after_fork(snap, progs) -> None:
    """The parent wrote 512 pages and forked; the child rewrote 128: the parent's anonymous
    VMA has 384 pages shared by two (Pss 384 * 2 KiB) and 128 private again."""
    p, _d = progs
    parent = S.smaps(p, snap[1])
    child = S.smaps(p, snap[2])
    big = next(v for v in parent.vmas if v.maps.end - v.maps.start == 4 * MB)
    cbig = next(v for v in child.vmas if v.maps.start == big.maps.start)
    assert big.stats.resident == 2 * MB and cbig.stats.resident == 2 * MB
    assert big.stats.pss >> S.PSS_SHIFT == 384 * 2048 + 128 * 4096
    assert cbig.stats.pss >> S.PSS_SHIFT == 384 * 2048 + 128 * 4096
    assert big.stats.shared_dirty == cbig.stats.shared_dirty == 384 * 4096
    # the child's copied PTEs are old (copy_present_pte: pte_mkold); its own writes are young
    assert cbig.stats.referenced == 128 * 4096 < big.stats.referenced


@pytest.mark.parametrize("who", [1, 2])
def test_status_equals_drgns_mm_fields_and_counters(snap, progs, who) -> None:
    from drgn.helpers.linux.mm import task_rss, task_vsize
    from drgn.helpers.linux.pid import find_task

    p, d = progs
    pid = snap[who]
    t = find_task(d, pid)
    lines = {ln.name: ln for ln in ST.status(p, pid)}
    assert lines["VmSize"].kb * 1024 == task_vsize(t)
    # 6.18 task_mem: get_mm_counter_sum (percpu_counter_sum_positive) = drgn's task_rss sums
    rss = task_rss(d, t)
    assert (lines["RssAnon"].kb, lines["RssFile"].kb, lines["RssShmem"].kb, lines["VmSwap"].kb) == (
        4 * rss.anon,
        4 * rss.file,
        4 * rss.shmem,
        4 * rss.swap,
    )
    assert lines["VmRSS"].kb == 4 * rss.total
    assert lines["VmPTE"].kb == t.mm.pgtables_bytes.counter.value_() >> 10 > 0
    assert lines["Pid"].value == str(pid) and lines["Name"].value == t.comm.string_().decode()
    # the counters (summed with their per-CPU deltas, as drgn's task_rss does) agree with the
    # page tables: smaps_rollup's Rss
    _s, _e, roll, findings = S.smaps_rollup(p, pid)
    assert not findings
    assert roll.resident == 4096 * task_rss(d, t).total


@pytest.mark.parametrize("who", [1, 2])
def test_vtop_pid_equals_drgn_follow_phys(snap, progs, who) -> None:
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    p, d = progs
    pid = snap[who]
    mm = find_task(d, pid).mm
    pages = sorted(_drgn_pages(d, pid))
    for a in pages[:: max(1, len(pages) // 25)]:
        va = a + 0x123
        v = V.vtop_pid(p, pid, va)
        assert v["phys"] == follow_phys(mm, va).value_()
        assert [lv["level"] for lv in v["levels"]][-1] in ("PTE", "PMD", "PUD")
    from mmintro.crosscheck import crash

    out = crash(d, f"vtop -c {pid} {pages[-1] + 8:x}").split()
    assert out[:2] == ["VIRTUAL", "PHYSICAL"] and int(out[3], 16) == V.vtop_pid(p, pid, pages[-1] + 8)["phys"]
    text = run("vtop", snap[0], "--pid", str(pid), hex(pages[0])).stdout
    assert text.splitlines()[1].split()[1] == f"{follow_phys(mm, pages[0]).value_():x}"
    assert re.search(r"^   PGD: [0-9a-f]+ => [0-9a-f]+$", text, re.MULTILINE)


def test_vm_equals_drgns_crash_vm(snap, progs) -> None:
    from mmintro.crosscheck import crash

    p, d = progs
    for pid in snap[1:]:
        out = crash(d, f"vm {pid}").splitlines()
        mine = V.vm(p, pid)
        mm, pgd, rss, total = out[2].split()
        assert (int(mm, 16), int(pgd, 16), rss, total) == (
            mine["mm"],
            mine["pgd"],
            f"{mine['rss_k']}k",
            f"{mine['total_vm_k']}k",
        )
        rows = [ln.split() for ln in out[4:] if ln.strip()]
        assert [(int(r[0], 16), int(r[1], 16), int(r[2], 16), int(r[3], 16)) for r in rows] == [
            (r["vma"], r["start"], r["end"], r["flags"]) for r in mine["vmas"]
        ]
        # FILE: crash prints the file's path (drgn's vma_name also names [heap] and [stack])
        files = [(r["file"], row[4] if len(row) > 4 else "") for r, row in zip(mine["vmas"], rows) if r["file"]]
        assert files and all(a == b for a, b in files), files
        text = V.render(mine)
        assert text.splitlines()[2].split() == out[2].split()


def test_numa_maps_counts(snap, progs) -> None:
    p, d = progs
    rows = N.numa_maps(p, snap[1])
    zero = _zero_pfn(d)
    pages = _drgn_pages(d, snap[1])
    for r in rows:
        end = next(v.maps.end for v in S.smaps(p, snap[1]).vmas if v.maps.start == r.start)
        n = sum(1 for a, pfn in pages.items() if r.start <= a < end and pfn != zero)
        assert r.pages == n and sum(r.nodes.values()) == n
        assert r.policy == "default"
    big = next(r for r in rows if r.anon)
    assert big.mapcount_max == 2 and big.anon == big.dirty == 512
    assert "N0=512" in N.render_row(big)


def test_cli_commands_print_the_6_18_formats(snap) -> None:
    path, pid, _c = snap
    sm = run("smaps", path, str(pid)).stdout
    assert sm.count("VmFlags: ") == sm.count("THPeligible:") == len(run("maps", path, str(pid)).stdout.splitlines())
    assert re.search(r"^Pss_Dirty: +\d+ kB$", sm, re.MULTILINE) and re.search(
        r"^Private_Hugetlb: +\d+ kB$", sm, re.MULTILINE
    )
    roll = run("smaps-rollup", path, str(pid)).stdout
    assert roll.splitlines()[0].endswith("[rollup]") and "Pss_Anon:" in roll
    st = run("status", path, str(pid)).stdout
    assert re.search(r"^VmRSS:\t +\d+ kB$", st, re.MULTILINE)
    assert run("numa-maps", path, str(pid)).stdout.startswith("00400000 default")
    assert run("vm", path, str(pid)).stdout.startswith(f"PID: {pid:<7}  TASK: ")
    assert run("smaps", path, "9999", ok=False).exit_code == 1


# -- corrupted page tables ---------------------------------------------------------------------------
def _poke(prog, name: str, pa: int, value: int) -> None:
    seg = prog.core.segment_at(pa)
    with open(name + ".vmcore", "r+b") as f:
        f.seek(seg.offset + pa - seg.paddr)
        f.write(struct.pack("<Q", value))


@pytest.mark.parametrize("how", ["outside-ram", "own-table", "shared-table"])
def test_corrupt_page_tables_are_findings(snap, tmp_path, how) -> None:
    path, pid, _c = snap
    bad = str(tmp_path / "bad")
    shutil.copy(path + ".vmcore", bad + ".vmcore")
    shutil.copy(path + ".vmlinux", bad + ".vmlinux")
    with open_snapshot(path) as p:
        scan = pt.scan_mm(my_find_task(p, pid).mm)
        leaf = int(np.nonzero(scan.present & (scan.level == pt.LEVEL_PTE))[0][0])
        va = int(scan.vaddr[leaf])
        w = p.walk(va, pt.mm_pgd_phys(my_find_task(p, pid).mm))
        pmd = w.steps[2]
        slot = pmd.table + 8 * pmd.index
        new = (pmd.entry & 0xFFF) | (0x40_0000_0000 if how == "outside-ram" else pmd.table)
        if how == "shared-table":  # a second, empty PMD slot pointing at the same PTE table
            free = next(i for i in range(512) if not p.read_u64(pmd.table + 8 * i, physical=True))
            slot, new = pmd.table + 8 * free, pmd.entry
        _poke(p, bad, slot, new)
    with open_snapshot(bad) as p:
        rep = S.smaps(p, pid)
        # (a shared table is descended once, from its first slot: when that is the poked one,
        # its leaves also fall outside every VMA, a second finding)
        assert len(rep.findings) == 1 or how == "shared-table", rep.findings
        assert {"outside-ram": "not RAM", "own-table": "page-table loop", "shared-table": "referenced 2 times"}[
            how
        ] in rep.findings[0]
    r = run("smaps", bad, str(pid), ok=False)  # the report as far as it goes, then the findings, exit 3
    assert r.exit_code == 3 and r.stdout.count("VmFlags:") == len(rep.vmas) and "Traceback" not in r.stderr
    assert f"# finding: page_tables: pid {pid}: {rep.findings[0]} [" in r.stdout
    assert r.stderr.startswith("mmintro: ") and r.stderr.count("\n") == 1


# -- THP and hugetlb ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """A process with a MADV_HUGEPAGE mapping written through (PMD-mapped THPs where 2 MiB
    fits, PTEs elsewhere) and a MAP_HUGETLB mapping of two 2 MiB pages, both written."""
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    try:
        w = Workload(boot(MachineConfig(ram=1 << 30, cpus=2, seed=3, thp="madvise", hugepages_2m=4)))
        w.spawn("p", heap=0x10000)
        w.mmap("p", "t", 6 * MB, hugepage=True)
        w.touch("p", "t", write=True)
        w.mmap("p", "h", 4 * MB, kind="hugetlb", page_size=2 * MB)
        w.touch("p", "h", write=True)
    except Exception as e:
        pytest.skip(f"THP/hugetlb faults not available: {type(e).__name__}: {e}")
    d = tmp_path_factory.mktemp("views_huge")
    save(w.k, d / "h")
    return str(d / "h"), w.proc("p").pid, w.mapping("p", "t").start, w.mapping("p", "h").start


def _drgn_leaves(d, pid):
    """{vaddr: (level, entry)} of every present leaf, walked with drgn reading the physical
    entries itself (no mmintro code): an independent PMD/PUD-aware walk."""
    from drgn.helpers.linux.mm import for_each_vma, virt_to_phys
    from drgn.helpers.linux.pid import find_task

    mm = find_task(d, pid).mm
    mask = ((1 << 52) - 1) & ~0xFFF
    out = {}

    def rd(pa):
        return int.from_bytes(d.read(pa, 8, True), "little")

    pgd = virt_to_phys(mm.pgd).value_()
    for v in for_each_vma(mm):
        a, end = v.vm_start.value_(), v.vm_end.value_()
        while a < end:
            table, step = pgd, None
            for lvl, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
                e = rd(table + 8 * ((a >> shift) & 511))
                if not e & 1:
                    step = 1 << shift
                    break
                if lvl == 1 or (lvl in (2, 3) and e & 0x80):
                    out[a & ~((1 << shift) - 1)] = (lvl, e)
                    step = 1 << shift
                    break
                table = e & mask
            a = (a & ~(step - 1)) + step
    return out


def test_thp_and_hugetlb_leaves_equal_an_independent_drgn_walk(huge) -> None:
    from mmintro.crosscheck import open_drgn

    path, pid, _t, _h = huge
    d = open_drgn(path + ".vmcore", path + ".vmlinux")
    with open_snapshot(path) as p:
        scan = pt.scan_mm(my_find_task(p, pid).mm)
        s = scan.select(scan.present)
        mine = {va: (lvl, e) for va, lvl, e in zip(s.vaddr.tolist(), s.level.tolist(), s.entry.tolist())}
    assert mine == _drgn_leaves(d, pid)
    assert sum(1 for lvl, _e in mine.values() if lvl == pt.LEVEL_PMD) >= 3  # THPs and hugetlb pages


def test_smaps_of_thp_and_hugetlb(huge) -> None:
    from drgn.helpers.linux.mm import compound_order, pfn_to_page

    from mmintro.crosscheck import open_drgn

    path, pid, t_addr, h_addr = huge
    d = open_drgn(path + ".vmcore", path + ".vmlinux")
    leaves = _drgn_leaves(d, pid)
    with open_snapshot(path) as p:
        rep = S.smaps(p, pid)
        numa = {r.start: r for r in N.numa_maps(p, pid)}
        status = {ln.name: ln for ln in ST.status(p, pid)}
    thp = next(v for v in rep.vmas if v.maps.start <= t_addr < v.maps.end)
    hug = next(v for v in rep.vmas if v.maps.start == h_addr)
    in_thp = {va: le for va, le in leaves.items() if thp.maps.start <= va < thp.maps.end}
    pmds = [va for va, (lvl, _e) in in_thp.items() if lvl == 2]
    ptes = [va for va, (lvl, _e) in in_thp.items() if lvl == 1]
    for va in pmds:  # each PMD leaf maps the head of an order-9 folio
        assert compound_order(pfn_to_page(d, (in_thp[va][1] & ((1 << 52) - 1)) >> 12)).value_() == 9
    assert thp.stats.anonymous_thp == len(pmds) * 2 * MB
    assert thp.stats.resident == len(pmds) * 2 * MB + len(ptes) * 4096 == thp.stats.anonymous
    assert thp.stats.pss >> S.PSS_SHIFT == thp.stats.resident == thp.stats.private_dirty  # refcount 1: private
    assert thp.kernel_page_size == 4096 and thp.thp_eligible == 1 and "hg" in S.vm_flags_string(thp.vm_flags)
    # hugetlb: no Rss, the huge pages are Private_Hugetlb; KernelPageSize is the hstate's
    in_h = [va for va, (lvl, _e) in leaves.items() if hug.maps.start <= va < hug.maps.end]
    assert hug.kernel_page_size == hug.mmu_page_size == 2 * MB
    assert hug.stats.resident == 0 and hug.stats.private_hugetlb == len(in_h) * 2 * MB > 0
    assert "ht" in S.vm_flags_string(hug.vm_flags) and hug.thp_eligible == 0
    # numa_maps: a THP counts 512 pages, a hugetlb page 1; status: HugetlbPages = hugetlb_usage
    assert numa[thp.maps.start].anon == len(pmds) * 512 + len(ptes)
    assert numa[h_addr].hugetlb and numa[h_addr].pages == len(in_h) and numa[h_addr].kernelpagesize_kb == 2048
    from drgn.helpers.linux.pid import find_task as drgn_find_task

    usage = drgn_find_task(d, pid).mm.hugetlb_usage.counter.value_()
    assert status["HugetlbPages"].kb == 4 * usage == len(in_h) * 2048
    # vtop --pid through a PMD leaf
    from drgn.helpers.linux.mm import follow_phys

    va = pmds[0] + 0x1234
    with open_snapshot(path) as p:
        vt = V.vtop_pid(p, pid, va)
    assert vt["levels"][-1]["level"] == "PMD" and vt["page_size"] == 2 * MB
    assert vt["phys"] == follow_phys(drgn_find_task(d, pid).mm, va).value_()
    assert "(2MB)" in V.render_vtop(vt)


def _census(p):
    """Distinct pfns mapped by every process, from the columnar scans: (anon 4 KiB pfns incl.
    THP subpages, file pfns, anon PMD-mapped THP heads)."""
    from mmintro.views.ps import for_each_task

    anon, file, thp = set(), set(), set()
    zero = p["zero_pfn"].value_()
    for t in for_each_task(p, idle=False):
        if not t.mm.value_():
            continue
        scan = pt.scan_mm(t.mm)
        s = scan.select(scan.present & (scan.level != pt.LEVEL_PUD))
        huge_vmas = [
            (v.vm_start.value_(), v.vm_end.value_())
            for v in my_for_each_vma(t.mm)
            if v.vm_flags.value_() & S.VM_HUGETLB
        ]
        keep = np.array([not any(a <= va < b for a, b in huge_vmas) for va in s.vaddr.tolist()], dtype=bool)
        s = s.select(keep & (s.pfn != np.uint64(zero)))
        cols = pt.page_columns(p, s.pfn)
        for pfn, lvl, mapping in zip(s.pfn.tolist(), s.level.tolist(), cols.head_mapping.tolist()):
            pfns = range(pfn, pfn + (512 if lvl == pt.LEVEL_PMD else 1))
            if mapping & 1:
                anon.update(pfns)
                if lvl == pt.LEVEL_PMD:
                    thp.add(pfn)
            else:
                file.update(pfns)
    return anon, file, thp


@pytest.mark.parametrize("which", ["snap", "huge"])
def test_meminfo_counters_equal_the_page_table_census(which, request) -> None:
    """AnonPages (NR_ANON_MAPPED), Mapped (NR_FILE_MAPPED) and AnonHugePages (NR_ANON_THPS)
    equal the distinct pages the page tables of all processes map."""
    from mmintro.views import meminfo as M

    path = request.getfixturevalue(which)[0]
    with open_snapshot(path) as p:
        anon, file, thp = _census(p)
        mi = {ln.name: ln.value for ln in M.meminfo(p)}
    assert anon and mi["AnonPages"] == 4 * len(anon)
    assert mi["Mapped"] == 4 * len(file)
    assert mi["AnonHugePages"] == 2048 * len(thp)


def test_page_columns_dense_and_gathered_agree_with_drgn(snap, progs, monkeypatch) -> None:
    from drgn.helpers.linux.mm import pfn_to_page

    p, d = progs
    pfns = np.arange(0x1000, 0x1000 + 40000, dtype=np.uint64)
    dense = pt.page_columns(p, pfns)
    monkeypatch.setattr(pt, "_DENSE_MIN", 1 << 40)
    gathered = pt.page_columns(p, pfns)
    for name in pt.PageColumns._fields:
        assert (getattr(dense, name) == getattr(gathered, name)).all(), name
    for i in range(0, len(pfns), 997):
        page = pfn_to_page(d, int(pfns[i]))
        assert (int(dense.flags[i]), int(dense.refcount[i]), int(dense.mapcount[i]), int(dense.mapping[i])) == (
            page.flags.f.value_(),
            page._refcount.counter.value_(),
            page._mapcount.counter.value_(),
            page.mapping.value_(),
        )


def test_numa_maps_policies_and_nodes_on_two_nodes(tmp_path) -> None:
    """mbind policies print as mpol_to_str does; N<nid>= counts equal the nodes whose pfn
    span (drgn's pglist_data) holds each page drgn's follow_pfn finds."""
    from drgn.helpers.linux.mm import follow_pfn
    from drgn.helpers.linux.mmzone import for_each_online_pgdat
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=2 << 30, cpus=2, nodes=2, seed=3)))
    w.spawn("p", heap=0x10000)
    want = {}
    for tag, mode, nodes, text in (
        ("a", "interleave", [0, 1], "interleave:0-1"),
        ("b", "bind", [1], "bind:1"),
        ("c", "preferred", [0], "prefer:0"),
    ):
        w.mmap("p", tag, MB)
        w.mbind("p", tag, mode, nodes)
        w.touch("p", tag, write=True)
        want[w.mapping("p", tag).start] = text
    save(w.k, tmp_path / "n")
    d = open_drgn(str(tmp_path / "n.vmcore"), str(tmp_path / "n.vmlinux"))
    mm = find_task(d, 1).mm
    spans = [
        (pg.node_id.value_(), pg.node_start_pfn.value_(), pg.node_start_pfn.value_() + pg.node_spanned_pages.value_())
        for pg in for_each_online_pgdat(d)
    ]
    with open_snapshot(tmp_path / "n") as p:
        rows = {r.start: r for r in N.numa_maps(p, 1)}
    for start, text in want.items():
        r = rows[start]
        assert r.policy == text
        nodes: dict[int, int] = {}
        for a in range(start, start + MB, 4096):
            pfn = follow_pfn(mm, a).value_()
            nid = next(n for n, lo, hi in spans if lo <= pfn < hi)
            nodes[nid] = nodes.get(nid, 0) + 1
        assert r.nodes == nodes and r.anon == 256
    assert rows[next(s for s, t in want.items() if t == "interleave:0-1")].nodes == {0: 128, 1: 128}


def test_status_lines_come_in_the_captures_order(snap) -> None:
    """Every line status prints exists in the real 6.18 capture, in the same order (lines the
    snapshot does not model are left out, never reordered or invented)."""
    from cli_helpers import REFERENCE

    ref = [ln.split(":")[0] for ln in (REFERENCE / "pid" / "self_status").read_text().splitlines()]
    with open_snapshot(snap[0]) as p:
        ours = [ln.name for ln in ST.status(p, snap[1])]
    it = iter(ref)
    assert all(name in it for name in ours), ours  # a subsequence of the capture's names
    assert {"Name", "State", "Pid", "VmRSS", "RssAnon", "HugetlbPages", "Threads"} <= set(ours)


def test_a_1gib_hugetlb_page_is_a_pud_leaf_everywhere(tmp_path) -> None:
    """A MAP_HUGETLB mapping from the 1 GiB pool: the scan's PUD leaf, KernelPageSize and
    Private_Hugetlb of 1048576 kB, numa_maps ``huge`` with one page, vtop --pid ending at the
    PUD (1GB) = drgn's follow_phys."""
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    try:
        w = Workload(boot(MachineConfig(ram=3 << 30, cpus=2, seed=3, hugepages_1g=1)))
        w.spawn("p", heap=0x10000)
        w.mmap("p", "g", 1 << 30, kind="hugetlb", page_size=1 << 30)
        w.touch("p", "g", write=True)
    except Exception as e:
        pytest.skip(f"no 1 GiB hugetlb pages: {type(e).__name__}: {e}")
    start = w.mapping("p", "g").start
    save(w.k, tmp_path / "g")
    d = open_drgn(str(tmp_path / "g.vmcore"), str(tmp_path / "g.vmlinux"))
    va = start + 0x12345678
    with open_snapshot(tmp_path / "g") as p:
        scan = pt.scan_mm(my_find_task(p, 1).mm)
        assert [(int(v), int(lv)) for v, lv in zip(scan.vaddr, scan.level) if lv == pt.LEVEL_PUD] == [
            (start, pt.LEVEL_PUD)
        ]
        v = next(v for v in S.smaps(p, 1).vmas if v.maps.start == start)
        row = next(r for r in N.numa_maps(p, 1) if r.start == start)
        vt = V.vtop_pid(p, 1, va)
    assert v.kernel_page_size == v.mmu_page_size == 1 << 30
    assert v.stats.private_hugetlb == 1 << 30 and v.stats.resident == 0
    assert "KernelPageSize:  1048576 kB" in S.render(S.SmapsReport(1, [v]))
    assert row.hugetlb and row.pages == 1 and row.kernelpagesize_kb == 1 << 20
    assert vt["levels"][-1]["level"] == "PUD" and vt["page_size"] == 1 << 30
    assert vt["phys"] == follow_phys(find_task(d, 1).mm, va).value_()
    assert "(1GB)" in V.render_vtop(vt)


def test_pss_of_thps_shared_by_fork_equals_drgns_folio_mapcounts(tmp_path) -> None:
    """THP=always, a written 8 MiB mapping (PMD-mapped THPs where 2 MiB fits), fork (both map
    the same folios), the child writes one page: each VMA's Pss is, page by page, PAGE_SIZE <<
    PSS_SHIFT divided by _mapcount + 1 + (_entire_mapcount + 1 of its large folio), whole when
    the folio's refcount is 1 — computed here from drgn's follow_page and folio reads."""
    from drgn import cast
    from drgn.helpers.linux.mm import compound_head, follow_page
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    try:
        w = Workload(boot(MachineConfig(ram=1 << 30, cpus=2, seed=3, thp="always")))
        w.spawn("p", heap=0x10000)
        w.mmap("p", "t", 8 * MB)
        w.touch("p", "t", write=True)
        w.fork("c", "p")
        w.touch("c", "t", write=True, size=0x1000)
    except Exception as e:
        pytest.skip(f"THP fork not available: {type(e).__name__}: {e}")
    start = w.mapping("p", "t").start
    save(w.k, tmp_path / "f")
    d = open_drgn(str(tmp_path / "f.vmcore"), str(tmp_path / "f.vmlinux"))
    pg_head = d["PG_head"].value_()
    with open_snapshot(tmp_path / "f") as p:
        for pid in (w.proc("p").pid, w.proc("c").pid):
            v = next(v for v in S.smaps(p, pid).vmas if v.maps.start == start)
            mm = find_task(d, pid).mm
            pss = 0
            for a in range(start, start + 8 * MB, 4096):
                page = follow_page(mm, a)
                head = compound_head(page)
                mapcount = page._mapcount.counter.value_() + 1
                if head.value_() != page.value_() or head.flags.f.value_() >> pg_head & 1:
                    mapcount += cast("struct folio *", head)._entire_mapcount.counter.value_() + 1
                ref = head._refcount.counter.value_()
                pss += 4096 << S.PSS_SHIFT if ref == 1 or mapcount < 2 else (4096 << S.PSS_SHIFT) // mapcount
            assert v.stats.pss == pss and v.stats.resident == 8 * MB
            assert v.stats.anonymous_thp >= 2 * MB
