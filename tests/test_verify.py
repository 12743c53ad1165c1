"""Validation as findings (mmintro.reader.validate) and ``mmintro verify`` (issue 14).

A small snapshot (256M, 2 CPUs, a swap file with slots in use, a process with anon and file
pages on the LRU, vmalloc areas, kmalloc objects) is saved once; each test copies it, pokes
one kernel value in the vmcore file's bytes (the offsets from the pinned type data), and
checks that the report that prints the value still prints it, adds a ``# finding:`` line
naming the kernel's rule, and exits 3 -- and that ``mmintro verify`` finds it.  The pristine
snapshot, every shipped scenario (slow) and every real 6.18 dump (slow) have no finding.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from cli_helpers import run

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.reader.helpers.mmzone import for_each_populated_zone
from mmintro.reader.helpers.slab import find_slab_cache
from mmintro.reader.helpers.swap import for_each_swap_info
from mmintro.reader.helpers.task import for_each_task
from mmintro.reader.helpers.vmalloc import for_each_vmap_area
from mmintro.reader.validate import TASK_SIZE_MAX, noted
from mmintro.snapshot.writer import save
from mmintro.workload import Workload

U64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def snap(tmp_path_factory) -> str:
    w = Workload(boot(MachineConfig(ram=256 << 20, nodes=1, cpus=2, seed=3)))
    w.swapon("/swapfile", 16 << 20)
    w.alloc("ballast", order=9, count=100)  # all but ~16M held: the touch below pushes anon pages to swap
    w.spawn("app", heap=1 << 20)
    w.mmap("app", "buf", 12 << 20)
    w.touch("app", "buf", write=True)
    w.create_file("log", "/var/log/app.log", 1 << 20)
    w.read("log")
    w.vmalloc("areas", 3 * 4096, count=4)
    w.kmalloc("objs", 64, count=100)
    w.kfree("objs", every=2)
    d = tmp_path_factory.mktemp("verify")
    save(w.k, d / "v")
    return str(d / "v")


@pytest.fixture
def copy(snap, tmp_path) -> str:
    name = str(tmp_path / "bad")
    shutil.copy(snap + ".vmcore", name + ".vmcore")
    shutil.copy(snap + ".vmlinux", name + ".vmlinux")
    return name


def _poke(prog, name: str, vaddr: int, value: int, size: int = 8) -> None:
    """Overwrite ``size`` bytes at kernel virtual ``vaddr`` in NAME.vmcore (the page must be stored)."""
    pa = prog.translate(vaddr)
    seg = prog.core.segment_at(pa)
    assert pa - seg.paddr + size <= seg.filesz, "the target page is not stored in the core"
    with open(name + ".vmcore", "r+b") as f:
        f.seek(seg.offset + pa - seg.paddr)
        f.write((value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))


def _finds(args: tuple[str, ...], *words: str, check: str | None = None) -> str:
    """The command prints its report, then ``# finding:`` lines with ``words``; exit 3."""
    r = run(*args, ok=False)
    assert r.exit_code == 3, (r.stdout[-800:], r.stderr, r.exception)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("# finding: ")]
    assert lines, r.stdout[-800:]
    assert r.stderr.startswith("mmintro: ") and "finding" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    text = "\n".join(lines)
    for w in words:
        assert w in text, text
    if check:
        assert any(ln.startswith(f"# finding: {check}: ") for ln in lines), text
    assert all("[" in ln and ln.endswith("]") for ln in lines), text  # every finding states its rule
    return r.stdout


def _verify_finds(name: str, check: str, *words: str) -> list[dict]:
    r = run("verify", name, "--json", ok=False)
    assert r.exit_code == 3, (r.stdout[-800:], r.stderr, r.exception)
    data = json.loads(r.stdout)
    got = [f for f in data["findings"] if f["check"] == check]
    assert got, data["findings"]
    text = json.dumps(got)
    for w in words:
        assert w in text, text
    assert all(f["rule"] for f in data["findings"])
    return data["findings"]


def _zone(prog, name: str = "DMA32"):
    return next(z for z in for_each_populated_zone(prog) if z.name.string_().decode() == name)


def _task(prog, comm: str = "app"):
    return next(t for t in for_each_task(prog, idle=False) if t.comm.string_().decode() == comm)


# -- the pristine snapshot ------------------------------------------------------------------------
def test_pristine_snapshot_has_no_finding(snap) -> None:
    r = run("verify", snap)
    assert r.stdout.startswith("no findings ("), r.stdout
    data = json.loads(run("verify", snap, "--json").stdout)
    assert data["findings"] == [] and "lru" in data["groups"]
    for cmd in (
        "buddyinfo",
        "zoneinfo",
        "fragmentation",
        "slabinfo",
        "vmallocinfo",
        "meminfo",
        "ps",
        "swaps",
        "kmem-s",
    ):
        r = run(cmd, snap)
        assert "# finding" not in r.stdout and not r.stderr, (cmd, r.stderr)
    with open_snapshot(snap) as prog:
        assert [si for si in for_each_swap_info(prog)], "the fixture has a swap device"
        assert noted(prog) == []


def test_verify_usage_and_errors(tmp_path) -> None:
    r = run("verify", ok=False)
    assert r.exit_code == 2 and r.stderr.startswith("mmintro: error: ")
    r = run("verify", str(tmp_path / "nothing"), ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("mmintro: error: ") and r.stderr.count("\n") == 1


# -- buddy free lists -----------------------------------------------------------------------------
def test_nr_free_against_the_free_lists(copy) -> None:
    """buddyinfo and the extfrag indexes print nr_free; 2^64-1 is printed as read, with the
    finding that the lists (which pagetypeinfo walks) hold a different count."""
    with open_snapshot(copy) as prog:
        z = _zone(prog)
        _poke(prog, copy, z.free_area[3].nr_free.address_, U64)
    out = _finds(
        ("buddyinfo", copy),
        "free_area[3].nr_free is 18446744073709551615",
        "nr_free counts the blocks",
        check="free_area",
    )
    assert "18446744073709551615" in out.splitlines()[1]  # the report itself is unchanged
    _finds(("fragmentation", copy), "free_area[3].nr_free", check="free_area")
    r = run("buddyinfo", copy, "--json", ok=False)
    assert r.exit_code == 3
    data = json.loads(r.stdout)
    assert data["report"][1]["nr_free"][3] == U64 and data["findings"][0]["check"] == "free_area"
    _verify_finds(copy, "free_area", "free_area[3].nr_free")
    with open_snapshot(copy) as prog:  # the views' API: the findings noted on the program
        from mmintro.views.buddyinfo import buddyinfo

        buddyinfo(prog)
        assert [f.check for f in noted(prog)] == ["free_area"]


def test_broken_free_list(copy) -> None:
    with open_snapshot(copy) as prog:
        z = _zone(prog)
        order, mt, head = next(
            (o, m, z.free_area[o].free_list[m])
            for o in range(10, -1, -1)
            for m in range(prog.types.const("MIGRATE_TYPES"))
            if z.free_area[o].free_list[m].next.value_() != z.free_area[o].free_list[m].address_
        )
        first = head.next.value_()
        _poke(prog, copy, first + prog.types.struct("list_head").offsetof("prev"), first)  # prev points at itself
    _finds(("buddyinfo", copy), f"free_area[{order}].free_list[{mt}] is broken", check="free_area")
    _verify_finds(copy, "free_area", "is broken")
    r = run("pagetypeinfo", copy, ok=False)  # pagetypeinfo prints the walk itself: it cannot go on
    assert r.exit_code == 1 and r.stderr.startswith("mmintro: error: ")


def test_pcp_count(copy) -> None:
    from mmintro.reader.helpers.percpu import per_cpu_ptr

    with open_snapshot(copy) as prog:
        pcp = per_cpu_ptr(_zone(prog).per_cpu_pageset, 0)
        _poke(prog, copy, pcp.count.address_, pcp.count.value_() + 7, size=prog.types.sizeof("int"))
    _finds(("zoneinfo", copy), "cpu 0 pcp->count", check="pcp")
    _verify_finds(copy, "pcp", "pcp->count")


# -- zones ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, words",
    [
        ("managed_pages", -1, "managed_pages -1 is not in 0..present_pages"),
        ("present_pages", 1 << 40, "> spanned_pages"),
        ("spanned_pages", 1 << 40, "outside node pfns"),
    ],
)
def test_zone_page_counts(copy, field, value, words) -> None:
    with open_snapshot(copy) as prog:
        z = _zone(prog)
        _poke(prog, copy, getattr(z, field).address_, value)
    out = _finds(("zoneinfo", copy), words, check="zone")
    if field == "managed_pages":
        assert "        managed  -1\n" in out  # zoneinfo prints what the bytes say
    _verify_finds(copy, "zone", words)


# -- processes ------------------------------------------------------------------------------------
def test_total_vm_beyond_the_user_address_space(copy) -> None:
    with open_snapshot(copy) as prog:
        t = _task(prog)
        _poke(prog, copy, t.mm.total_vm.address_, 1 << 40)
        limit = TASK_SIZE_MAX(prog) // 4096
    _finds(
        ("ps", copy), f"mm->total_vm is {1 << 40} pages, more than the {limit} pages below TASK_SIZE_MAX", check="mm"
    )
    _verify_finds(copy, "mm", "below TASK_SIZE_MAX")


def test_total_vm_against_the_vmas(copy) -> None:
    """The issue's VSZ of 17,179,869,180 kB: total_vm 2^32 - 1 pages (16 TiB, below
    TASK_SIZE_MAX) where the VMAs span a few MiB."""
    with open_snapshot(copy) as prog:
        t = _task(prog)
        pid = str(t.pid.value_())
        _poke(prog, copy, t.mm.total_vm.address_, (1 << 32) - 1)
    words = ("total_vm is 4294967295 pages but its VMAs span", "total_vm is the pages of every VMA")
    out = _finds(("ps", copy), *words, check="mm")
    assert " 17179869180 " in out  # VSZ as read
    _finds(("status", copy, pid), *words, check="mm")
    _finds(("vm", copy, pid), *words, check="mm")
    _verify_finds(copy, "mm", "total_vm is 4294967295 pages")


def test_oom_score_adj_out_of_range(copy) -> None:
    with open_snapshot(copy) as prog:
        t = _task(prog)
        pid = str(t.pid.value_())
        _poke(prog, copy, t.signal.oom_score_adj.address_, 5000, size=prog.types.sizeof("short"))
    _finds(("oom-score", copy, pid), "signal->oom_score_adj is 5000", "OOM_SCORE_ADJ_MAX (1000)", check="mm")
    _finds(("oom-scores", copy), "signal->oom_score_adj is 5000", check="mm")
    _verify_finds(copy, "mm", "oom_score_adj is 5000")


def test_page_table_loop(copy) -> None:
    """A PMD entry pointing at its own table: verify's bounded scan names it."""
    from mmintro.reader.helpers.pgtable import mm_pgd_phys

    with open_snapshot(copy) as prog:
        t = _task(prog)
        pid = str(t.pid.value_())
        pgd = mm_pgd_phys(t.mm)
        va = next(start for start, end in _vmas(t) if end - start >= 4 << 20)  # the touched mapping
        pa_pmd = _pmd_entry_phys(prog, pgd, va)
        entry = int.from_bytes(prog.core.read_phys(pa_pmd, 8), "little")
        seg = prog.core.segment_at(pa_pmd)
        with open(copy + ".vmcore", "r+b") as f:
            f.seek(seg.offset + pa_pmd - seg.paddr)
            f.write(struct.pack("<Q", (entry & 0xFFF) | (pa_pmd & ~0xFFF)))
    _verify_finds(copy, "page_tables")
    r = run("smaps", copy, pid, ok=False)  # smaps goes on past the loop: the finding after the report
    assert r.exit_code == 3 and "# finding: page_tables: pid " in r.stdout, (r.stdout[-500:], r.stderr)


def _vmas(task) -> list[tuple[int, int]]:
    from mmintro.reader.helpers.task import for_each_vma

    return [(v.vm_start.value_(), v.vm_end.value_()) for v in for_each_vma(task.mm)]


def _pmd_entry_phys(prog, pgd: int, va: int) -> int:
    """Physical address of the PMD entry mapping user address ``va`` (4-level paging)."""
    table = pgd
    for shift in (39, 30):
        e = int.from_bytes(prog.core.read_phys(table + 8 * ((va >> shift) & 511), 8), "little")
        assert e & 1
        table = e & 0x000FFFFFFFFFF000
    return table + 8 * ((va >> 21) & 511)


# -- slab caches ----------------------------------------------------------------------------------
def _kmalloc64_node(prog):
    from mmintro.reader.helpers.slab import for_each_kmem_cache_node

    s = find_slab_cache(prog, "kmalloc-64")
    return s, next(n for _nid, n in for_each_kmem_cache_node(s))


def test_slab_nr_partial_with_an_empty_list(copy) -> None:
    with open_snapshot(copy) as prog:
        _s, n = _kmalloc64_node(prog)
        _poke(prog, copy, n.nr_partial.address_, 1 << 31)
    _finds(("slabinfo", copy), "slab cache kmalloc-64", "nr_partial is 2147483648 but n->partial holds", check="slab")
    _finds(("kmem-s", copy), "nr_partial is 2147483648", check="slab")
    _verify_finds(copy, "slab", "nr_partial is 2147483648")


def test_slab_objects_minus_one(copy) -> None:
    with open_snapshot(copy) as prog:
        _s, n = _kmalloc64_node(prog)
        _poke(prog, copy, n.total_objects.address_, -1)
    out = _finds(("slabinfo", copy), "total_objects -1", check="slab")
    assert any(ln.startswith("kmalloc-64 ") and " -1 " in ln for ln in out.splitlines())
    _verify_finds(copy, "slab", "total_objects -1")


# -- vmalloc --------------------------------------------------------------------------------------
def _vmalloc_area(prog):
    return next(va for va in for_each_vmap_area(prog) if va.vm.value_() and va.vm.caller.value_())


def test_vmalloc_end_above_2_64(copy) -> None:
    with open_snapshot(copy) as prog:
        va = _vmalloc_area(prog)
        _poke(prog, copy, va.vm.size.address_, U64 - 0xFFF)
    out = _finds(("vmallocinfo", copy), "does not fit the area", "vm->addr = va->va_start", check="vmalloc")
    assert "-0x1" in out  # vmallocinfo prints the end as computed: above 2^64
    _verify_finds(copy, "vmalloc", "does not fit the area")


def test_vmalloc_area_outside_the_range(copy) -> None:
    from mmintro.reader.helpers.vmalloc import VMALLOC_END

    with open_snapshot(copy) as prog:
        last = list(for_each_vmap_area(prog))[-1]
        if last.va_start.value_() >= 0xFFFFFFFF80000000:
            pytest.skip("the last busy area is in the module area")
        _poke(prog, copy, last.va_end.address_, VMALLOC_END(prog) + (1 << 30))
    _finds(("vmallocinfo", copy), "not inside VMALLOC_START", check="vmalloc")
    _verify_finds(copy, "vmalloc", "not inside VMALLOC_START")


def test_vmalloc_va_end_below_va_start_is_an_error(copy) -> None:
    """An area out of address order cannot be listed (the busy list's order is what the
    report walks): one line, exit 1."""
    with open_snapshot(copy) as prog:
        va = _vmalloc_area(prog)
        _poke(prog, copy, va.va_end.address_, va.va_start.value_() - 0x1000)
    r = run("vmallocinfo", copy, ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("mmintro: error: ")
    _verify_finds(copy, "vmalloc", "cannot be walked")


# -- meminfo, swap, LRU ---------------------------------------------------------------------------
def test_meminfo_cached_above_memtotal(copy) -> None:
    with open_snapshot(copy) as prog:  # global_node_page_state(): the global vm_node_stat[]
        item = prog.types.const("NR_FILE_PAGES")
        _poke(prog, copy, prog["vm_node_stat"][item].address_, 1 << 40)
    _finds(("meminfo", copy), "Cached: ", "> MemTotal", check="meminfo")
    _verify_finds(copy, "meminfo", "> MemTotal")


def test_meminfo_memtotal_against_managed(copy) -> None:
    with open_snapshot(copy) as prog:
        tr = prog["_totalram_pages"]
        _poke(prog, copy, tr.address_, tr.counter.value_() + 100)
    _finds(("meminfo", copy), "MemTotal: ", "the zones manage", check="meminfo")


def test_swap_inuse_pages(copy) -> None:
    with open_snapshot(copy) as prog:
        si = next(iter(for_each_swap_info(prog)))
        _poke(prog, copy, si.inuse_pages.address_, 1000, size=prog.types.sizeof("atomic_long_t"))
    _finds(("swaps", copy), "inuse_pages is 1000 but swap_map has", check="swap")
    _verify_finds(copy, "swap", "inuse_pages is 1000")


def test_nr_swap_pages(copy) -> None:
    with open_snapshot(copy) as prog:
        nr = prog["nr_swap_pages"]
        _poke(prog, copy, nr.address_, nr.counter.value_() - 5)
    _verify_finds(copy, "swap", "nr_swap_pages")


def test_lru_counter_against_the_list(copy) -> None:
    with open_snapshot(copy) as prog:
        pgdat = _zone(prog).zone_pgdat
        item = prog.types.const("NR_LRU_BASE") + prog.types.const("LRU_INACTIVE_FILE")
        _poke(prog, copy, pgdat.vm_stat[item].address_, pgdat.vm_stat[item].counter.value_() + 5)
    _verify_finds(copy, "lru", "lruvec.lists[LRU_INACTIVE_FILE]", "update_lru_size")


# -- every shipped scenario and real dump: nothing --------------------------------------------------
SCENARIOS = sorted(p.stem for p in (Path(__file__).parent.parent / "mmintro" / "scenarios").glob("*.toml"))


@pytest.mark.slow
def test_the_boot_snapshot_verifies(tmp_path) -> None:
    """The plain boot; every shipped scenario file is verified where its snapshot is built
    once for all its checks (tests/test_scenarios_drgn.py)."""
    run("simulate", "boot", "-o", str(tmp_path / "boot"))
    r = run("verify", str(tmp_path / "boot"))
    assert r.stdout.startswith("no findings"), r.stdout


@pytest.mark.slow
def test_real_dumps_verify(any_real_dump) -> None:
    r = run("verify", str(any_real_dump.path("elf")), "--kernel", any_real_dump.vmlinuz)
    assert r.stdout.startswith("no findings"), r.stdout
