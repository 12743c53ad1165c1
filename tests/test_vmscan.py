"""Reclaim, swap and workingset (mmintro.kernel.vmscan, swapfile, swap_state, workingset).

The machines are small on purpose: a 256M machine with most of its memory held by kernel
"ballast" blocks, so that a few thousand pages of anonymous memory or page cache already run
it into kswapd, direct reclaim and swap.  Every check reads the simulator's memory (the
struct pages, the LRU list_heads, the swap map and swap tables, the page tables) the way a
debugger would, and compares it with what the kernel's own books say.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import memory, rmap, swap, swap_state, swapfile, vmscan, workingset
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.kernel.xarray import xa_is_value
from mmintro.workload import Workload

LRUS = (swap.LRU_INACTIVE_ANON, swap.LRU_ACTIVE_ANON, swap.LRU_INACTIVE_FILE, swap.LRU_ACTIVE_FILE)


def _small(seed: int = 1, ballast_blocks: int = 90) -> Workload:
    """256M, 1 CPU, all but ~36M of it held by order-9 kernel blocks."""
    w = Workload(boot(MachineConfig(ram=256 << 20, nodes=1, cpus=1, seed=seed)))
    w.alloc("ballast", order=9, count=ballast_blocks)
    return w


def _events(k, name: str) -> int:
    return sum(c[swap._EV[name]] for c in k.vm_events)


# -- the encodings, against the kernel's formulas written out again ---------------------------------
def test_swap_pte_is_6_18_x86_encoding() -> None:
    """arch/x86/include/asm/pgtable_64.h: type in bits 59..63, ~offset from bit 9 (so the
    non-present entry never looks like a valid PFN: L1TF), _PAGE_PSE = exclusive."""
    for type_, offset in ((0, 1), (0, 0x1234), (3, 0xFFFFF), (31, (1 << 40) + 5)):
        entry = swapfile.swp_entry(type_, offset)
        pte = memory.swp_entry_to_pte(entry)
        want = ((~offset << 14) & ((1 << 64) - 1)) >> 5 | (type_ << 59)
        assert pte == want
        assert not pte & 1 and memory.is_swap_pte(pte)  # not _PAGE_PRESENT
        assert memory.pte_to_swp_entry(pte) == entry
        assert memory.pte_to_swp_entry(memory.swp_entry_to_pte(entry, exclusive=True)) == entry
        assert memory.swp_entry_to_pte(entry, exclusive=True) & (1 << 7)
        assert entry == (type_ << 58) | offset  # swapops.h: SWP_TYPE_SHIFT = 63 - 5


def test_shadow_entry_packs_as_pack_shadow() -> None:
    """mm/workingset.c pack_shadow: eviction | memcgid (16) | node (NODES_SHIFT) | workingset (1),
    shifted up one more and tagged as an XArray value entry (bit 0)."""
    from mmintro.kernel import config as kc

    shadow = workingset.pack_shadow(0, 1, 123456, True)
    assert xa_is_value(shadow)
    raw = ((((123456 << 16) | 0) << kc.NODES_SHIFT | 1) << 1 | 1) << 1 | 1
    assert shadow == raw
    assert workingset.unpack_shadow(shadow) == (0, 1, 123456, True)
    assert workingset.EVICTION_SHIFT == 1 + 1 + kc.NODES_SHIFT + 16


# -- page cache reclaim ------------------------------------------------------------------------
def _lru_books(k) -> None:
    """Counters equal list lengths, every listed folio has PG_lru and the list's flags, none
    is free, and no folio sits on two lists."""
    seen = set()
    for lru in LRUS:
        pfns = swap.lru_pfns(k, 0, lru)
        assert len(set(pfns)) == len(pfns)
        assert not seen & set(pfns)
        seen |= set(pfns)
        assert sum(swap.folio_nr_pages(k, p) for p in pfns) == k.node_vm_stat[0].get(swap.NODE_LRU_ITEM[lru], 0)
        zone_sum = sum(z.vm_stat.get(swap.ZONE_LRU_ITEM[lru], 0) for z in k.zones[0])
        assert zone_sum == k.node_vm_stat[0].get(swap.NODE_LRU_ITEM[lru], 0)
        for p in pfns:
            assert swap.folio_test(k, p, swap.PG_lru)
            assert swap.folio_lru_list(k, p) == lru
            assert p not in k.allocations or k.allocations[p] is not None
            assert rmap.folio_ref_count(k, p) > 0, f"pfn {p:#x} is on an LRU with no reference"
    for z in k.zones[0]:
        assert not seen & set(z.free_order), "a free block is on an LRU list"
    for name in ("NR_ISOLATED_ANON", "NR_ISOLATED_FILE"):
        assert k.node_vm_stat[0].get(name, 0) == 0


@pytest.mark.slow  # ~4 s
def test_kswapd_drops_clean_page_cache_and_leaves_shadows() -> None:
    w = _small()
    k = w.k
    w.create_file("log", "/var/log/big", 48 << 20)
    w.read("log")
    mapping = k.kmem.get(w.file("log"), "file", "f_mapping")
    from mmintro.kernel.inode import mapping_xa

    entries = dict(mapping_xa(k, mapping).xa_for_each())
    folios = [i for i, e in entries.items() if not xa_is_value(e)]
    shadows = [i for i, e in entries.items() if xa_is_value(e)]
    assert _events(k, "PAGEOUTRUN") > 0 and _events(k, "PGSTEAL_KSWAPD") > 0
    assert shadows and folios and len(folios) + len(shadows) == 48 << 20 >> PAGE_SHIFT
    # the oldest pages went first, the newest are cached (kswapd woken for one zone skips the
    # others' folios, so what goes is the oldest of that zone, not of the file)
    assert 0 in shadows and (48 << 20 >> PAGE_SHIFT) - 1 in folios
    assert k.kmem.get(mapping, "address_space", "nrpages") == len(folios)
    assert _events(k, "PGSTEAL_FILE") == len(shadows) == _events(k, "PGSTEAL_KSWAPD") + _events(k, "PGSTEAL_DIRECT")
    # every shadow names node 0 and an eviction time before now
    now = workingset.nonresident_age(k, 0)
    for i in shadows:
        memcg, nid, ev, _ws = workingset.unpack_shadow(entries[i])
        assert (memcg, nid) == (0, 0) and ev < now
    _lru_books(k)
    assert vmscan.pgdat_balanced(k, 0, 0, 1)  # kswapd stopped where the node was balanced


@pytest.mark.slow  # ~4 s
def test_reclaim_wakes_the_flusher_for_unqueued_dirty_page_cache() -> None:
    """A file written past free memory with the dirty limits out of the way: reclaim meets only
    dirty, unqueued file folios (shrink_node: nr_unqueued_dirty == nr_file_taken), marks them
    PG_reclaim and activates them (NR_VMSCAN_IMMEDIATE), and wakes the flusher
    (wakeup_flusher_threads(WB_REASON_VMSCAN) -> wb_check_start_all), whose writeback lets the
    next pass drop them.  Without the wakeup the write runs the machine out of memory."""
    from mmintro.kernel import page_writeback as pw
    from mmintro.kernel.inode import vfs_root

    w = _small(ballast_blocks=100)
    k = w.k
    w.sysctl("vm.dirty_background_ratio", 90)
    w.sysctl("vm.dirty_ratio", 95)
    w.create_file("db", "/var/lib/db", 24 << 20)
    w.write("db")
    assert [why for _t, why in k.flusher_wakeups].count("vmscan") >= 1
    stat = k.node_vm_stat[0]
    assert stat.get("NR_VMSCAN_IMMEDIATE", 0) > 0
    written = stat.get("NR_WRITTEN", 0)
    assert written > 0 and stat.get("NR_WRITEBACK", 0) == 0
    # the written pages were what reclaim could then take: file pages only, as no swap is on
    assert _events(k, "PGSTEAL_FILE") > 0 and _events(k, "PGSTEAL_ANON") == 0
    assert _events(k, "PGSTEAL_FILE") <= written
    # the page cache holds what the dirty counter and the written pages account for
    pages = 24 << 20 >> PAGE_SHIFT
    assert stat["NR_FILE_PAGES"] + _events(k, "PGSTEAL_FILE") == pages
    wb = k.kmem.addr(vfs_root(k).bdi, "backing_dev_info", "wb")
    state = k.kmem.get(wb, "bdi_writeback", "state")
    assert not state >> pw.WB_start_all & 1  # wb_check_start_all cleared it
    assert k.kmem.get(wb, "bdi_writeback", "start_all_reason") == pw.WB_REASONS["vmscan"]
    _lru_books(k)


@pytest.mark.slow  # ~5 s
def test_refault_of_a_file_page_checks_its_shadow() -> None:
    w = _small()
    k = w.k
    w.create_file("log", "/var/log/big", 48 << 20)
    w.read("log")
    before = k.node_vm_stat[0].get("WORKINGSET_REFAULT_FILE", 0)
    w.read("log", 0, 1 << 20)  # the evicted head of the file, again
    assert k.node_vm_stat[0].get("WORKINGSET_REFAULT_FILE", 0) - before >= 256 >> 1
    _lru_books(k)


@pytest.mark.slow  # ~5 s
def test_hot_file_survives_a_stream() -> None:
    """Two reads activate a file; a stream through the inactive list does not evict it."""
    w = _small()
    k = w.k
    w.create_file("hot", "/srv/hot", 4 << 20)
    w.create_file("log", "/var/log/big", 64 << 20)
    w.read("hot")
    w.read("hot")
    w.read("log")
    mapping = k.kmem.get(w.file("hot"), "file", "f_mapping")
    assert k.kmem.get(mapping, "address_space", "nrpages") == 1024
    _lru_books(k)


# -- anonymous memory and swap ---------------------------------------------------------------------
def _swap_books(w: Workload) -> None:
    """Every swap PTE has a swap_map count; each slot's count is its swap PTEs; SWAP_HAS_CACHE
    exactly where the swap table holds a folio; NR_SWAPCACHE = those folios; inuse = used slots."""
    k = w.k
    (d,) = swapfile.swap_info(k)
    ptes: dict[int, int] = {}
    for p in w.procs.values():
        if not getattr(p, "mm", None):
            continue
        for m in w.mappings[next(n for n, q in w.procs.items() if q is p)].values():
            for a in range(m.start, m.start + m.length, PAGE_SIZE):
                level, _slot, e = memory.walk(k, p.mm, a)
                if level == "PTE" and memory.is_swap_pte(e) and not e & memory._PAGE_PROTNONE:
                    entry = memory.pte_to_swp_entry(e)
                    ptes[swapfile.swp_offset(entry)] = ptes.get(swapfile.swp_offset(entry), 0) + 1
    from mmintro.kernel import vmalloc

    swap_map = vmalloc.vmalloc_read(k, d.swap_map, d.max)  # the bytes in memory, not the book
    cached = 0
    for off in range(1, d.max):
        v = swap_map[off]
        assert v == d.counts[off]
        count = v & ~swapfile.SWAP_HAS_CACHE
        assert count == ptes.get(off, 0), f"slot {off}: swap_map count {count}, swap PTEs {ptes.get(off, 0)}"
        folio = swap_state.swap_cache_get_folio(k, swapfile.swp_entry(d.type, off))
        assert bool(v & swapfile.SWAP_HAS_CACHE) == (folio is not None), off
        if folio is not None:
            cached += 1
            assert swap_state.folio_test_swapcache(k, folio)
            assert swap_state.folio_swap_entry(k, folio) == swapfile.swp_entry(d.type, off)
    assert cached == k.node_vm_stat[0].get("NR_SWAPCACHE", 0)
    used = sum(1 for off in range(1, d.max) if swap_map[off])
    assert used == d.inuse == k.kmem.get(d.si, "swap_info_struct", "inuse_pages.counter") & ((1 << 63) - 1)
    assert swapfile.get_nr_swap_pages(k) == k.kmem.get(k.sym("nr_swap_pages"), "atomic_long_t", "counter")


@pytest.mark.slow  # a swap storm in miniature: ~5 s
def test_swap_out_keeps_every_page_and_its_books() -> None:
    w = _small()
    k = w.k
    swapfile.sys_swapon(k, "/swapfile", 64 << 20)
    w.spawn("hog")
    w.mmap("hog", "buf", 24 << 20)
    w.touch("hog", "buf", write=True)
    m = w.mapping("hog", "buf")
    mm = w.proc("hog").mm
    # a distinct pattern in every resident page, by its address
    pattern = {}
    for a in range(m.start, m.start + m.length, PAGE_SIZE * 61):
        level, _s, e = memory.walk(k, mm, a)
        if level == "PTE" and memory.pte_present(e):
            data = a.to_bytes(8, "little") * (PAGE_SIZE // 8)
            k.mem.write(memory.pte_pfn(e) << PAGE_SHIFT, data)
            pattern[a] = data
    w.mmap("hog", "more", 16 << 20)
    w.touch("hog", "more", write=True)  # pushes the first mapping out
    assert _events(k, "PSWPOUT") > 0
    out = [a for a in pattern if memory.is_swap_pte(memory.walk(k, mm, a)[2])]
    assert out, "nothing of the patterned pages went to swap"
    _swap_books(w)
    _lru_books(k)
    assert (
        memory.get_mm_counter_sum(k, mm, "MM_SWAPENTS") + memory.get_mm_counter_sum(k, mm, "MM_ANONPAGES")
        == (40 << 20) >> PAGE_SHIFT
    )
    w.touch("hog", "buf", write=False)  # everything back
    assert _events(k, "PSWPIN") > 0 and _events(k, "PGMAJFAULT") > 0
    for a, data in pattern.items():
        level, _s, e = memory.walk(k, mm, a)
        if memory.pte_present(e):
            assert k.mem.read(memory.pte_pfn(e) << PAGE_SHIFT, PAGE_SIZE) == data, f"{a:#x} lost its contents"
    _swap_books(w)
    _lru_books(k)


@pytest.mark.slow  # a swap storm in miniature: ~5 s
def test_exit_returns_swap_and_memory() -> None:
    # 88 blocks of ballast, not 90: a process's cred, sighand, files and fs (their slabs) take a few
    # pages more, and with 90 the swap tables (GFP_HIGH, no reclaim) find no page and the machine OOMs
    w = _small(ballast_blocks=88)
    k = w.k
    swapfile.sys_swapon(k, "/swapfile", 64 << 20)
    w.drain()
    free0 = sum(z.free_pages for z in k.zones[0])
    w.spawn("hog")
    w.mmap("hog", "buf", 40 << 20)
    w.touch("hog", "buf", write=True)
    w.touch("hog", "buf", write=False, size=4 << 20)
    w.fork("child", "hog")  # the child shares swap entries (swap_duplicate)
    _swap_books(w)
    w.exit("child")
    w.exit("hog")
    (d,) = swapfile.swap_info(k)
    assert d.inuse == 0 and k.node_vm_stat[0].get("NR_SWAPCACHE", 0) == 0
    for name in ("NR_ANON_MAPPED", "NR_INACTIVE_ANON", "NR_ACTIVE_ANON"):
        assert k.node_vm_stat[0].get(name, 0) == 0, name
    # only the clusters holding bad slots (the header, the tail past the end) keep a table
    bad = {0, (d.max - 1) // swapfile.SWAPFILE_CLUSTER} if d.max % swapfile.SWAPFILE_CLUSTER else {0}
    assert set(d.tables) <= bad, "a free cluster kept its swap table"
    # page tables, task structs and the like come and go; what is left is within a few pages
    w.drain()
    assert abs(sum(z.free_pages for z in k.zones[0]) - free0) < 64


@pytest.mark.slow  # a swap storm in miniature: ~5 s
def test_shmem_stays_resident_under_pressure() -> None:
    """shmem_writeout is not modelled: reclaim keeps shmem folios (activates them) while it
    swaps private anonymous memory out around them; the shmem data stays readable."""
    w = _small()
    k = w.k
    swapfile.sys_swapon(k, "/swapfile", 64 << 20)
    w.spawn("db")
    w.mmap("db", "shm", 12 << 20, kind="shmem")
    w.touch("db", "shm", write=True)
    w.mmap("db", "buf", 40 << 20)
    w.touch("db", "buf", write=True)
    w.touch("db", "shm", write=False)
    assert _events(k, "PSWPOUT") > 0
    assert memory.get_mm_counter_sum(k, w.proc("db").mm, "MM_SHMEMPAGES") == (12 << 20) >> PAGE_SHIFT
    _lru_books(k)
    _swap_books(w)


@pytest.mark.slow  # ~5 s
def test_no_swap_means_no_anon_scanning() -> None:
    w = _small()
    k = w.k
    w.spawn("hog")
    w.mmap("hog", "buf", 8 << 20)
    w.touch("hog", "buf", write=True)
    w.create_file("log", "/var/log/big", 48 << 20)
    w.read("log")
    assert _events(k, "PGSCAN_ANON") == 0 and _events(k, "PGSCAN_FILE") > 0
    assert vmscan.get_scan_count(k, 0, vmscan.ScanControl())[swap.LRU_INACTIVE_ANON] == 0


def test_get_scan_count_follows_swappiness() -> None:
    """SCAN_FRACT: anon's share grows with vm.swappiness (the kernel's ap/fp arithmetic)."""
    w = _small()
    k = w.k
    swapfile.sys_swapon(k, "/swapfile", 64 << 20)
    w.spawn("hog")
    w.mmap("hog", "buf", 8 << 20)
    w.touch("hog", "buf", write=True)
    w.create_file("f", "/f", 8 << 20)
    w.read("f")
    shares = []
    for swappiness in (0, 60, 100, 200):
        w.sysctl("vm.swappiness", swappiness)
        sc = vmscan.ScanControl(priority=0)
        vmscan.prepare_scan_control(k, 0, sc)
        sc.cache_trim_mode = sc.file_is_tiny = False
        sc.priority = 1  # not 0: priority 0 with swappiness scans equally
        nr = vmscan.get_scan_count(k, 0, sc)
        shares.append(nr[swap.LRU_INACTIVE_ANON])
    assert shares[0] == 0 and shares == sorted(shares) and shares[-1] > shares[1]


@pytest.mark.slow  # ~30 random steps with swap on a small machine: ~20 s
def test_random_runs_keep_the_books() -> None:
    """Seeded random mixes of the old steps and the new ones: the invariants after each."""
    for seed in (3, 7):
        w = _small(seed=seed)
        k = w.k
        rng = np.random.default_rng(seed)
        swapfile.sys_swapon(k, "/swapfile", 64 << 20)
        w.create_file("f", "/data/f", 24 << 20)
        alive: list[str] = []
        n = 0
        for _step in range(16):
            op = rng.choice(["spawn", "touch", "read", "fork", "exit", "munmap"])
            if op == "spawn" or not alive:
                name = f"p{n}"
                n += 1
                w.spawn(name)
                w.mmap(name, "buf", int(rng.integers(2, 12)) << 20)
                alive.append(name)
            elif op == "touch":
                p = str(rng.choice(alive))
                if "buf" in w.mappings[p]:
                    w.touch(p, "buf", write=bool(rng.integers(2)), fraction=float(rng.uniform(0.2, 1.0)))
            elif op == "read":
                w.read("f", int(rng.integers(0, 16)) << 20, 8 << 20)
            elif op == "fork":
                c = f"p{n}"
                n += 1
                w.fork(c, str(rng.choice(alive)))
                alive.append(c)
            elif op == "exit" and len(alive) > 1:
                p = alive.pop(int(rng.integers(1, len(alive))))  # never p0: pid 1 exits last
                w.exit(p)
            elif op == "munmap":
                p = str(rng.choice(alive))
                if "buf" in w.mappings[p]:
                    w.munmap(p, "buf")
            _lru_books(k)
            _swap_books(w)
        for p in reversed(alive):
            w.exit(p)
        (d,) = swapfile.swap_info(k)
        assert d.inuse == 0 and k.node_vm_stat[0].get("NR_SWAPCACHE", 0) == 0


@pytest.mark.slow  # a snapshot and drgn over it (~10 s)
def test_drgn_sees_swap_entries_and_shadows(tmp_path) -> None:
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.xarray import xa_for_each

    from mmintro.crosscheck import open_drgn
    from mmintro.snapshot.writer import save, snapshot_paths

    w = _small()
    k = w.k
    swapfile.sys_swapon(k, "/swapfile", 64 << 20)
    w.create_file("log", "/var/log/big", 48 << 20)
    w.read("log")
    w.spawn("hog")
    w.mmap("hog", "buf", 40 << 20)
    w.touch("hog", "buf", write=True)
    m = w.mapping("hog", "buf")
    mm = w.proc("hog").mm
    swapped = {
        a: memory.pte_to_swp_entry(e)
        for a in range(m.start, m.start + m.length, PAGE_SIZE)
        for _l, _s, e in [memory.walk(k, mm, a)]
        if memory.is_swap_pte(e)
    }
    assert swapped
    from mmintro.kernel.inode import mapping_xa

    mapping = k.kmem.get(w.file("log"), "file", "f_mapping")
    ours = {i: e for i, e in mapping_xa(k, mapping).xa_for_each()}
    save(k, tmp_path / "s")
    core, vmlinux = snapshot_paths(tmp_path / "s")
    prog = open_drgn(str(core), str(vmlinux))
    dmm = drgn.Object(prog, "struct mm_struct *", mm)
    for a, entry in list(swapped.items())[:64]:
        with pytest.raises(drgn.FaultError):  # no present PTE: drgn's walk stops
            follow_phys(dmm, a)
        # the PTE drgn reads is the swap entry
        pte = prog.read_u64(_pte_addr(prog, mm, a))
        assert memory.pte_to_swp_entry(pte) == entry
    theirs = {
        int(i): e.value_()
        for i, e in xa_for_each(drgn.Object(prog, "struct address_space *", mapping).i_pages.address_of_())
    }
    assert theirs == ours and any(v & 1 for v in theirs.values())


def _pte_addr(prog, mm: int, addr: int) -> int:
    """The kernel virtual address of the PTE for ``addr`` (a 4-level walk with drgn's reads)."""
    table = prog.read_u64(mm + prog.type("struct mm_struct").member("pgd").offset)
    page_offset = prog["page_offset_base"].value_()
    for shift in (39, 30, 21):
        e = prog.read_u64(table + 8 * ((addr >> shift) & 511))
        table = (e & 0x000FFFFFFFFFF000) + page_offset
    return table + 8 * ((addr >> 12) & 511)
