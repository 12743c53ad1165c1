"""Bigger machines (issue 12): the compact memory map and what it must not change.

A section's struct pages are stored as runs of identical pages plus exception pages until the
simulator writes them in bulk (mmintro.kernel.memmap_store).  The bytes are the truth: the
store must generate exactly what a numpy array given the same writes holds, a machine booted
with compact sections must write the same vmcore as one booted with arrays, and drgn must read
a compacted snapshot as the same machine mmintro reads.  The 256 GiB / 8-node machine (boot,
peak memory, kdump snapshot, drgn) is in the slow pass; 1 TiB is measured by
benchmarks/bench_big_machine.py.
"""

from __future__ import annotations

import bisect
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import Kernel
from mmintro.kernel.memmap_store import EXCEPTION_LIMIT, CompactWords32, CompactWords64, SectionMemmap
from mmintro.kernel.mm_init import page_field
from mmintro.kernel.sparse import PAGES_PER_SECTION
from mmintro.snapshot.writer import save
from mmintro.types import get_types

T = get_types()
M64 = (1 << 64) - 1


def _fields() -> dict[str, tuple[int, int | None]]:
    """struct page members as (64-bit word, 32-bit half or None), from the type data."""

    class K:  # what page_field reads of a kernel
        page_dtype = T.dtype(
            "page",
            {
                "flags": "flags",
                "lru_next": "lru.next",
                "lru_prev": "lru.prev",
                "mapping": "mapping",
                "private": "private",
                "page_type": "page_type",
                "refcount": "_refcount",
            },
        )

    return {name: page_field(K, name) for name in K.page_dtype.names}


def _reference_update(ref: np.ndarray, lo: int, hi: int, j: int, lane: int | None, op: str, value: int) -> None:
    col = ref[lo:hi, j] if lane is None else ref.view(np.uint32).reshape(len(ref), 16)[lo:hi, 2 * j + lane]
    v = col.dtype.type(value & (M64 if lane is None else 0xFFFFFFFF))
    if op == "set":
        col[...] = v
    elif op == "and":
        col &= v
    else:
        col |= v


def test_section_store_generates_what_an_array_given_the_same_writes_holds() -> None:
    """Random word writes (through the memoryview-like proxies) and member updates over page
    ranges -- set/and/or on 64-bit and 32-bit members, address words included -- applied to a
    compact section and to a numpy array: the section's bytes equal the array's after every
    step, before and after the section materializes, and reading never materializes it."""
    rng = np.random.default_rng(12)
    n, addr0 = 4096, 0xFFFFEA0000000000 + 0x40000 * 64
    fields = _fields()
    lru = T.struct("page").offsetof("lru")
    lru_words = (fields["lru_next"][0], fields["lru_prev"][0])
    s = SectionMemmap(7, n, addr0)
    ref = np.zeros((n, 8), dtype=np.uint64)
    # memmap_init's shape: three runs, lru pointing at the page itself
    runs = []
    for start, flags in ((0, 0x1234), (1000, 0x1234 | 1 << 10), (3000, 0x99)):
        words = [flags, lru, lru, 0, 0, 0, 0xFFFFFFFF | 1 << 32, 0]
        runs.append((start, words, (1 << lru_words[0]) | (1 << lru_words[1])))
    s.set_runs(runs)
    ends = [1000, 3000, n]
    for (start, words, _selfs), end in zip(runs, ends):
        ref[start:end] = words
        for j in lru_words:
            ref[start:end, j] += np.uint64(addr0) + np.arange(start, end, dtype=np.uint64) * np.uint64(64)
    assert (s.generate(0, n) == ref).all()
    w64, w32 = CompactWords64(s), CompactWords32(s)
    for step in range(600):
        kind = rng.integers(4)
        if kind == 0:  # a word written through the u64 proxy
            i, j = int(rng.integers(n)), int(rng.integers(8))
            v = int(rng.integers(1 << 62)) * 3
            w64[i * 8 + j] = v
            ref[i, j] = v
        elif kind == 1:  # a 32-bit member through the u32 proxy
            i, name = int(rng.integers(n)), ("page_type", "refcount")[int(rng.integers(2))]
            j, lane = fields[name]
            v = int(rng.integers(1 << 32))
            w32[2 * (i * 8 + j) + lane] = v
            ref.view(np.uint32).reshape(n, 16)[i, 2 * j + lane] = v
        else:  # a member over a range of pages
            lo = int(rng.integers(n))
            hi = min(n, lo + int(rng.integers(1, 1200)))
            name = list(fields)[int(rng.integers(len(fields)))]
            j, lane = fields[name]
            op = ("set", "and", "or")[int(rng.integers(3))]
            if j in lru_words and op != "set" and rng.integers(4):
                op = "set"  # keep most address words compact
            value = int(rng.integers(1 << 62)) if lane is None else int(rng.integers(1 << 32))
            s.update(lo, hi, j, lane, op, ~value if op == "and" else value)
            _reference_update(ref, lo, hi, j, lane, op, ~value if op == "and" else value)
        if step % 50 == 0:
            i = int(rng.integers(n))
            assert w64[i * 8 + 0] == int(ref[i, 0])
            assert s.read(i * 64 + 8, 24) == ref[i].tobytes()[8:32]
        assert (s.generate(0, n) == ref).all(), f"step {step}"
    was_compact = s.materialized is None
    arr = s.materialize()
    assert (arr.view(np.uint64).reshape(n, 8) == ref).all()
    w64[5] = 77  # the proxies write into the array now
    assert arr.view(np.uint64)[5] == 77
    assert was_compact or len(s.exc) == 0


def test_many_written_pages_make_a_section_an_array() -> None:
    """More than EXCEPTION_LIMIT pages written one by one: the section becomes an array, the
    owner is told (k.memmap_words switches to memoryviews), nothing written is lost."""
    told = []
    s = SectionMemmap(3, 2048, 1 << 40, told.append)
    w64 = CompactWords64(s)
    for i in range(EXCEPTION_LIMIT + 1):
        w64[i * 8 + 2] = i + 1
    assert told == [s] and s.materialized is not None
    assert [w64[i * 8 + 2] for i in range(EXCEPTION_LIMIT + 1)] == list(range(1, EXCEPTION_LIMIT + 2))
    with pytest.raises(ValueError):
        w64[0] = -1  # as a memoryview refuses it


@pytest.fixture(scope="module")
def compact_kdump(tmp_path_factory) -> tuple[str, Kernel]:
    """A 4 GiB 2-node machine booted with the compact memory map, saved kdump-compressed."""
    k = Kernel(MachineConfig(ram=4 << 30, nodes=2, cpus=4)).boot()
    stem = tmp_path_factory.mktemp("big") / "m4g"
    save(k, stem, core_format="kdump")
    return str(stem), k


@pytest.fixture(scope="module")
def booted(compact_kdump) -> Kernel:
    return compact_kdump[1]


def test_a_booted_machine_keeps_its_memory_map_compact(booted: Kernel) -> None:
    """4 GiB over 2 nodes: 32 sections, 64 MiB of struct pages; after
    boot and a snapshot (which reads every struct page) only the sections the boot wrote page
    by page are arrays, the rest a few runs each."""
    k = booted
    arrays = [s for s in k.memmap_store.values() if s.materialized is not None]
    assert len(k.memmap_store) == 32
    assert len(arrays) <= 4, [s.nr for s in arrays]
    compact = [s for s in k.memmap_store.values() if s.materialized is None]
    assert max(len(s.starts) for s in compact) <= 8
    # a section of free memory: one run of free pages, an exception per order-10 block head
    free = [s for s in compact if len(s.starts) == 1 and sorted(s.exc) == list(range(0, PAGES_PER_SECTION, 1024))]
    assert len(free) >= 0.8 * len(compact)


def test_lru_of_each_struct_page_points_at_itself(booted: Kernel) -> None:
    """INIT_LIST_HEAD(&page->lru) per page: in a compact section every page but a free-list
    member reads lru.next == lru.prev == its own lru, page by page (read through PhysMem,
    offsets from the type data); a free block's head links to its list neighbours."""
    k = booted
    lru_off = k.T.struct("page").offsetof("lru")
    nr = next(nr for nr, s in k.memmap_store.items() if s.materialized is None and nr > 10)
    base = nr * PAGES_PER_SECTION
    raw = k.mem.read(k.section_memmap[nr], PAGES_PER_SECTION * 64)
    pages = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 8)
    own = np.uint64(k.vmemmap_base + lru_off) + np.arange(base, base + PAGES_PER_SECTION, dtype=np.uint64) * 64
    nxt, prv = pages[:, lru_off // 8], pages[:, lru_off // 8 + 1]
    heads = np.arange(0, PAGES_PER_SECTION, 1024)
    tails = np.setdiff1d(np.arange(PAGES_PER_SECTION), heads)
    assert (nxt[tails] == own[tails]).all() and (prv[tails] == own[tails]).all()
    assert (nxt[heads] != own[heads]).all()
    assert k.memmap_store[nr].materialized is None  # reading did not make it an array


def _boot_with_workload(compact: bool) -> Kernel:
    k = Kernel(MachineConfig(ram=4 << 30, nodes=2, cpus=4, hugepages_1g=1, hugepages_2m=8, cmdline="movablecore=600M"))
    k.compact_memmap = compact
    k.boot()
    got = [k.alloc_pages("GFP_KERNEL", o) for o in (0, 3, 9, 10, 0, 2)]
    got.append(k.alloc_pages("GFP_TRANSHUGE", 9, nid=1))
    for pfn, o in zip(got[::2], (0, 9, 0, 9)):
        k.free_pages(pfn, o)
    return k


@pytest.mark.parametrize("core_format", ["elf", pytest.param("kdump", marks=pytest.mark.slow)])
def test_compact_and_array_memory_maps_write_the_same_vmcore(tmp_path, core_format: str) -> None:
    """A 4 GiB 2-node machine with ZONE_MOVABLE (zone boundaries inside sections), hugetlb
    pools (a gigantic page) and a few allocations, booted once with compact sections and once
    with arrays: byte-identical vmcores."""
    paths = []
    for compact in (True, False):
        k = _boot_with_workload(compact)
        assert any(s.materialized is None for s in k.memmap_store.values()) == compact
        paths.append(save(k, tmp_path / f"m{int(compact)}", core_format=core_format)[0])
    assert filecmp.cmp(*paths, shallow=False)


def _agree(stem: str, names: tuple[str, ...]) -> None:
    from mmintro import crosscheck as xc

    for r in xc.run_crosscheck(stem, only=list(names)):
        assert r.ok and not r.skipped, f"{r.name}: {r.detail}"


def test_drgn_reads_a_compacted_kdump_snapshot_as_mmintro_does(compact_kdump) -> None:
    """A kdump snapshot of a 4 GiB 2-node machine whose memory map was compact: real drgn
    agrees with mmintro on the zones (start, spanned, present, managed), totalram, the free
    lists and counts (crash kmem -f/-z), the per-CPU lists and pfn_to_page per section."""
    pytest.importorskip("drgn")
    _agree(
        compact_kdump[0],
        ("zones:", "totalram", "crash kmem -f", "crash kmem -z", "free_area lists", "per-CPU lists", "pfn_to_page"),
    )


def test_drgn_reads_generated_struct_pages_as_the_simulator_wrote_them(compact_kdump) -> None:
    """A sample of struct pages from compact sections (free block heads, their tails, hole
    and reserved pages): drgn's bytes at pfn_to_page() are the simulator's, and drgn decodes
    them as the kernel left them (PageBuddy and order on a head, _refcount 0 and lru to
    itself on a tail)."""
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.mm import pfn_to_page

    from mmintro import crosscheck as xc

    stem, k = compact_kdump
    d = xc.open_drgn(stem + ".vmcore", stem + ".vmlinux")
    size = k.struct_page_size
    buddy = k.T.const("PGTY_buddy")
    blocks = sorted((h, h + (1 << o)) for zs in k.zones for z in zs for h, o in z.free_order.items())
    heads = [h for h, _e in blocks]

    def free_tail(pfn: int) -> bool:  # inside a free buddy block, not its head
        i = bisect.bisect_right(heads, pfn) - 1
        return i >= 0 and heads[i] < pfn < blocks[i][1]

    checked = tails = 0
    for nr, s in list(k.memmap_store.items())[::3]:
        if s.materialized is not None:
            continue
        for i in (0, 1, 513, 1024, 5000, PAGES_PER_SECTION - 1):
            pfn = nr * PAGES_PER_SECTION + i
            page = pfn_to_page(d, pfn)
            assert d.read(page.value_(), size) == k.mem.read(k.pa(k.pfn_to_page(pfn)), size)
            if i % 1024 == 0 and page.page_type.value_() >> 24 == buddy:
                assert page.private.value_() == 10
            elif free_tail(pfn):
                assert page._refcount.counter.value_() == 0
                assert page.lru.next.value_() == drgn.cast("unsigned long", page.lru.address_of_()).value_()
                tails += 1
            checked += 1
    assert checked >= 40 and tails >= 20


def test_kdump_without_free_pages_is_read_as_the_same_machine(compact_kdump, tmp_path) -> None:
    """``save(exclude_free=True)``: the free buddy blocks are out of the 2nd bitmap (dump level
    17), the file is a fraction of the full one, reading a free page fails as filtered, and
    drgn still reads the machine as mmintro does (zones, free lists, per-CPU lists, meminfo)."""
    pytest.importorskip("drgn")
    from mmintro.reader import open_snapshot
    from mmintro.reader.diskdump import DiskDumpFile
    from mmintro.reader.errors import FaultError
    from mmintro.snapshot.writer import free_pfn_ranges

    full, k = compact_kdump
    stem = tmp_path / "nofree"
    core, _ = save(k, stem, core_format="kdump", exclude_free=True)
    free = free_pfn_ranges(k)
    with DiskDumpFile(core) as dd, DiskDumpFile(full + ".vmcore") as whole:
        assert dd.dump_level == 17
        pages = lambda ranges: sum(b - a for a, b in ranges)
        # the byte ranges of what is dumped, in pfns: RAM less the free blocks
        assert pages([(a >> 12, b >> 12) for a, b in dd.dumped_ranges]) == (
            pages([(a >> 12, b >> 12) for a, b in whole.dumped_ranges]) - pages(free)
        )
    assert os.path.getsize(core) < os.path.getsize(full + ".vmcore") / 3
    prog = open_snapshot(str(stem))
    with pytest.raises(FaultError, match="filtered"):
        prog.core.read_phys((free[-1][0] + 1) << 12, 8)
    prog.close()
    _agree(
        str(stem),
        ("zones:", "totalram", "crash kmem -f", "crash kmem -z", "free_area lists", "per-CPU lists", "crash kmem -i"),
    )


def test_exclude_free_needs_the_kdump_format(tmp_path) -> None:
    from cli_helpers import run

    r = run("simulate", "-o", str(tmp_path / "x"), "--exclude-free", ok=False)
    assert r.exit_code == 2 and "--exclude-free needs --format kdump" in r.stderr


@pytest.mark.slow
def test_makedumpfile_filters_the_free_pages_save_leaves_out(compact_kdump, tmp_path) -> None:
    """makedumpfile 1.7.2 given the full kdump snapshot and ``-d 16`` (it finds free pages by
    PageBuddy and the order in their struct pages) dumps exactly the pages that
    ``save(exclude_free=True)`` dumps."""
    import shutil

    from mmintro.reader.diskdump import DiskDumpFile

    assert shutil.which("makedumpfile"), "makedumpfile is not installed (.ci/run installs it)"
    full, k = compact_kdump
    ours, _ = save(k, tmp_path / "nofree", core_format="kdump", exclude_free=True)
    theirs = tmp_path / "mdf.vmcore"
    p = subprocess.run(
        ["makedumpfile", "-c", "-d", "16", "-x", full + ".vmlinux", full + ".vmcore", str(theirs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    with DiskDumpFile(ours) as a, DiskDumpFile(theirs) as b:
        assert list(a.dumped_ranges) == list(b.dumped_ranges)


@pytest.mark.slow
def test_256_cpus_are_all_online_for_drgn(tmp_path) -> None:
    """NR_CPUS CPUs (256, more than a 64-bit word of the cpumasks): drgn finds every one online
    and possible, and the per-CPU rows (pagesets of every CPU, vm stats) agree with mmintro."""
    pytest.importorskip("drgn")
    from drgn.helpers.linux.cpumask import for_each_online_cpu, for_each_possible_cpu

    from mmintro import crosscheck as xc
    from mmintro.kernel.machine import boot

    k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=256))
    stem = str(tmp_path / "c256")
    save(k, stem)
    d = xc.open_drgn(stem + ".vmcore", stem + ".vmlinux")
    assert len(list(for_each_online_cpu(d))) == len(list(for_each_possible_cpu(d))) == 256
    _agree(stem, ("per-CPU lists", "nr_free_pages", "crash kmem -z", "crash kmem -i"))


def _measure_in_child(ram_gib: int, nodes: int, cpus: int, stem: str) -> dict:
    """Boot and write a kdump snapshot in a fresh process: its peak RSS is the machine's."""
    code = f"""
import json, time
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save
t = time.perf_counter()
k = boot(MachineConfig(ram={ram_gib} << 30, nodes={nodes}, cpus={cpus}))
t_boot = time.perf_counter() - t
save(k, {stem!r}, core_format="kdump", threads=2)
# VmHWM, the peak of this process's own memory: ru_maxrss would also count the peak of the
# parent it was exec'd from (Linux keeps signal->maxrss across execve), a big pytest worker
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps(dict(boot=t_boot, maxrss_kib=hwm,
                      arrays=sum(s.materialized is not None for s in k.memmap_store.values()),
                      sections=len(k.memmap_store))))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.slow
def test_256g_8_nodes_boots_in_little_memory_and_drgn_agrees(tmp_path) -> None:
    """256 GiB over 8 nodes, 64 CPUs (4 GiB of struct pages): boot and a kdump snapshot in
    under 1 GiB of peak memory, and real drgn reads it as mmintro does -- zones, totalram,
    the free lists and their counts, watermarks and vm stats, meminfo totals, pfn_to_page."""
    pytest.importorskip("drgn")
    stem = str(tmp_path / "m256g")
    m = _measure_in_child(256, 8, 64, stem)
    assert m["sections"] == 2048 and m["arrays"] < 32, m
    assert m["maxrss_kib"] < 1 << 20, m
    _agree(
        stem,
        (
            "for_each_online_pgdat",
            "zones:",
            "totalram",
            "pfn_to_page",
            "crash kmem -z",
            "crash kmem -f",
            "crash kmem -n",
            "MIN/LOW/HIGH",
            "crash kmem -i",
            "nr_free_pages",
            "min/low/high_wmark",
            "free_area lists",
            "per-CPU lists",
            "for_each_slab_cache",
        ),
    )
