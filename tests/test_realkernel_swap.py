"""Swap as the reader sees it, against a real Linux 6.18 kernel that has swapped (conftest's
``real-swap``: a 64 MiB virtio disk switched on as swap, the workload's 8 MiB region pushed out
with MADV_PAGEOUT, part of it read or written back, part shared with the forked child; and a
helper's 4 swapped-out pages shared by 80 forked children, so their swap counts go on in
swap_map's continuation pages; and shmem in swap -- a shared anonymous region and a tmpfs file
mapped partially and privately -- which leaves no swap PTE; see
mmintro/realkernel/guest/workload.c).

The oracles, each independent of mmintro:

* the guest's own /proc text, captured just before the VM stopped: /proc/swaps, meminfo's
  Swap lines, smaps / smaps_rollup (Swap, SwapPss), status (VmSwap) and numa_maps
  (swapcache=) of both processes, byte for byte (swap state does not move between the capture
  and the stop: nothing reclaims, nothing faults);
* the guest's own /proc/self/pagemap of the swap region, printed by the workload ("mmintro:
  swapmap PID VADDR NPAGES TYPE OFFSET" runs on the console): the kernel's word on which swap
  entry each address holds, against the reader's decoding of the swap PTEs (every page);
* real drgn 0.3.0 on the same dump: its swap helpers (for_each_swap_info, swap_file_path,
  swap_usage_in_pages, swap_total_usage, total_swapcache_pages), task_rss's swap count, its
  ``crash swap`` command, and follow_page failing on exactly the swapped-out addresses.

* crash 9.0.2 on the same dump (its namelist: the kernel image's text and data with the DWARF
  and symbols ``mmintro debuginfo`` makes, mmintro.realkernel.crash.real_dump_namelist): its
  ``swap`` table and ``vtop -c PID ADDR`` of swapped-out pages, text for text.
"""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import numpy as np
import pytest
from cli_helpers import run

from mmintro.reader.dump import open_dump
from mmintro.reader.helpers import swap as S
from mmintro.views import meminfo as meminfo_view
from mmintro.views import numa_maps as numa_maps_view
from mmintro.views import smaps as smaps_view
from mmintro.views import status as status_view
from mmintro.views import swaps as swaps_view
from mmintro.views import vm as vm_view

ROLES = ("parent", "child")
SWAP_LINES = ("SwapCached:", "SwapTotal:", "SwapFree:", "Zswap:", "Zswapped:")


@pytest.fixture(scope="module")
def ref(real_dump_swap):  # type: ignore[no-untyped-def]
    return real_dump_swap


@pytest.fixture(scope="module")
def prog(ref):  # type: ignore[no-untyped-def]
    p = open_dump(str(ref.path("elf")), ref.vmlinuz)
    yield p
    p.close()


def _console(ref) -> str:  # type: ignore[no-untyped-def]
    return (ref.dir / "console.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def pagemap(ref) -> dict[int, dict[int, tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """pid -> {vaddr: (type, offset)} of every swapped page of the swap region, from the
    guest's /proc/self/pagemap."""
    out: dict[int, dict[int, tuple[int, int]]] = {}
    for m in re.finditer(r"mmintro: swapmap (\d+) ([0-9a-f]+) (\d+) (\d+) ([0-9a-f]+)", _console(ref)):
        pid, va, n, t, off = int(m[1]), int(m[2], 16), int(m[3]), int(m[4]), int(m[5], 16)
        d = out.setdefault(pid, {})
        for i in range(n):
            d[va + i * 4096] = (t, off + i)
    return out


@pytest.fixture(scope="module")
def region(ref) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    m = re.search(r"mmintro: swapregion (\d+) ([0-9a-f]+) (\d+)", _console(ref))
    assert m, "the workload printed no swap region"
    return int(m[2], 16), int(m[3])


# -- /proc/swaps and meminfo -----------------------------------------------------------------------
def test_proc_swaps_equals_the_guests(ref, prog) -> None:
    rows = swaps_view.swaps(prog)
    assert swaps_view.render(rows) == ref.proc("swaps")
    assert [(r.path, r.partition, r.prio) for r in rows] == [("/dev/vda", True, -2)]


def test_cli_swaps(ref) -> None:
    out = run("swaps", "--kernel", ref.vmlinuz, str(ref.path("elf"))).stdout
    assert out == ref.proc("swaps")
    crash_style = run("swaps", "--crash", "--kernel", ref.vmlinuz, str(ref.path("elf"))).stdout
    assert crash_style.splitlines()[0].split() == ["SWAP_INFO_STRUCT", "TYPE", "SIZE", "USED", "PCT", "PRI", "FILENAME"]
    path, kind, size, used, prio = ref.proc("swaps").splitlines()[1].split()
    assert crash_style.splitlines()[1].split()[1:] == [
        kind.upper(),
        f"{size}k",
        f"{used}k",
        f"{int(used) * 100 // int(size)}%",
        prio,
        path,
    ]


def test_meminfo_swap_lines_equal_the_guests(ref, prog) -> None:
    """SwapCached (NR_SWAPCACHE = total_swapcache_pages()), SwapTotal/SwapFree (si_swapinfo)
    and Zswap, exactly; and the swapped-out pages are really there (not a guest without swap)."""
    want = {ln.split()[0]: ln for ln in ref.proc("meminfo").splitlines() if ln.startswith(SWAP_LINES)}
    got = {
        ln.split()[0]: ln
        for ln in meminfo_view.render(meminfo_view.meminfo(prog)).splitlines()
        if ln.startswith(SWAP_LINES)
    }
    assert got == want
    total, free = (int(want[k].split()[1]) for k in ("SwapTotal:", "SwapFree:"))
    # anonymous: 2048 - 256 freed by the write + 4 shared pages; shmem: 192 + 448 pages
    assert total == 65532 and total - free == (2048 - 256 + 4 + 192 + 448) * 4
    # 512 anonymous pages read back (the swap cache keeps them); the shmem pages whose write was
    # still in flight when reclaim looked at them stay in the swap cache too (timing: 0-640)
    assert 2048 <= int(want["SwapCached:"].split()[1]) <= 2048 + 640 * 4


# -- per-process views ----------------------------------------------------------------------------
def _text(prog, view: str, pid: int) -> str:  # type: ignore[no-untyped-def]
    if view == "smaps":
        rep = smaps_view.smaps(prog, pid)
        assert not rep.findings
        return smaps_view.render(rep)
    if view == "smaps_rollup":
        start, end, st, findings = smaps_view.smaps_rollup(prog, pid)
        assert not findings
        return smaps_view.render_rollup(start, end, st)
    if view == "status":
        return status_view.render(status_view.status(prog, pid))
    return numa_maps_view.render(numa_maps_view.numa_maps(prog, pid))


@pytest.mark.parametrize("view", ["smaps", "smaps_rollup", "status", "numa_maps"])
@pytest.mark.parametrize("role", ROLES)
def test_process_views_equal_the_guests(ref, prog, role: str, view: str) -> None:
    """Byte for byte, so Swap, SwapPss (swp_swapcount from swap_map: the child's shared entries
    count half), VmSwap and swapcache= are the kernel's."""
    pid = ref.pids[role]
    got, want = _text(prog, view, pid), ref.proc(view, pid)
    assert got.splitlines() == want.splitlines()
    assert got == want


def test_the_guest_really_swapped(ref) -> None:
    """The numbers the workload's layout implies (8 MiB region, eighths): a guard that the
    comparisons above compare swap, not zeros."""
    parent, child = ref.pids["parent"], ref.pids["child"]
    rp, rc = ref.proc("smaps_rollup", parent), ref.proc("smaps_rollup", child)
    field = lambda text, name: int(re.search(rf"^{name}:\s+(\d+) kB", text, re.M)[1])
    shmem = 768 + 768 + 1792  # shared anonymous, the file's partial mapping, its private holes
    assert field(rp, "Swap") == 6144 + shmem and field(rp, "SwapPss") == 1024 + 5120 // 2
    assert field(rc, "Swap") == 5120 + shmem and field(rc, "SwapPss") == 2560  # shmem: no SwapPss
    assert "swapcache=256" in ref.proc("numa_maps", parent) and "swapcache=512" in ref.proc("numa_maps", child)


@pytest.mark.parametrize("role", ROLES)
def test_shmem_swap_per_vma(ref, prog, role: str) -> None:
    """The three shmem VMAs (no swap PTE in any): Swap through shmem_swap_usage -- the whole
    object's ``info->swapped`` for the shared anonymous region, shmem_partial_swap_usage of the
    file's indices [256, 512) for its middle mapping, and of every hole of the private one."""
    m = re.search(r"mmintro: shmemswap (\d+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)", _console(ref))
    assert m, "the workload printed no shmem regions"
    starts = {int(m[2], 16): 768, int(m[3], 16): 768, int(m[4], 16): 1792}
    rep = smaps_view.smaps(prog, ref.pids[role])
    got = {v.maps.start: v.stats.swap >> 10 for v in rep.vmas if v.maps.start in starts}
    text = ref.proc("smaps", ref.pids[role])
    kernel = {}
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        start = int(block.split("-", 1)[0], 16)
        if start in starts:
            kernel[start] = int(re.search(r"^Swap:\s+(\d+) kB", block, re.M)[1])
    assert kernel == starts and got == starts


# -- swap entries: the kernel's pagemap -----------------------------------------------------------
def _swap_ptes(prog, pid: int, lo: int, hi: int) -> dict[int, int]:  # type: ignore[no-untyped-def]
    from mmintro.reader.helpers.pgtable import LEVEL_PTE, scan_mm
    from mmintro.reader.helpers.task import find_task

    scan = scan_mm(find_task(prog, pid).mm)
    sel = ~scan.present & (scan.level == LEVEL_PTE) & (scan.vaddr >= lo) & (scan.vaddr < hi)
    return dict(zip(scan.vaddr[sel].tolist(), scan.entry[sel].tolist()))


@pytest.mark.parametrize("role", ROLES)
def test_swap_entries_equal_the_kernels_pagemap(ref, prog, pagemap, region, role: str) -> None:
    """Every swapped page of the region, and only those: the reader's pte_to_swp_entry of
    each swap PTE = the (type, offset) the guest's /proc/self/pagemap gave for that address."""
    pid = ref.pids[role]
    base, size = region
    want = pagemap[pid]
    ptes = _swap_ptes(prog, pid, base, base + size)
    types, offsets = S.swp_entries(np.array(list(ptes.values()), dtype=np.uint64))
    got = {va: (int(t), int(o)) for va, t, o in zip(ptes, types.tolist(), offsets.tolist())}
    assert got == want
    assert len(want) == {"parent": 1536, "child": 1280}[role]


def test_vtop_of_swapped_addresses(ref, prog, pagemap) -> None:
    """``vtop --pid`` of the first page of every pagemap run: not mapped, the swap entry of the
    kernel's pagemap, the device /dev/vda, and crash's "SWAP: DEV  OFFSET: N" line."""
    for pid, pages in pagemap.items():
        runs = [va for va in sorted(pages) if va - 4096 not in pages]
        for va in runs:
            v = vm_view.vtop_pid(prog, pid, va)
            assert v["phys"] is None and v["swap"] is not None
            assert (v["swap"]["type"], v["swap"]["offset"]) == pages[va]
            assert v["swap"]["path"] == "/dev/vda"
            text = vm_view.render_vtop(v)
            assert f"SWAP: /dev/vda  OFFSET: {pages[va][1]}\n" in text


def test_swap_counts_and_the_swap_cache(ref, prog, pagemap) -> None:
    """Invariants of the dump, checked against what the kernel told: every swap entry in a PTE
    of any process has a swap_map count equal to the number of PTEs holding it; the swap table
    (6.18's swap cache) holds exactly SwapCached's pages, each a folio with PG_swapcache whose
    ``folio->swap`` is its slot, and SWAP_HAS_CACHE is set in swap_map for exactly those slots."""
    from mmintro.reader.helpers.task import for_each_task

    refs: dict[tuple[int, int], int] = {}
    for task in for_each_task(prog):
        if not task.mm.value_() or task.pid.value_() != task.tgid.value_():
            continue
        for e in _swap_ptes(prog, task.pid.value_(), 0, 1 << 47).values():
            k = S.pte_to_swp_entry(e)
            refs[k] = refs.get(k, 0) + 1
    assert refs, "no swap PTE in any process"
    assert {k: S.swp_swapcount(prog, *k) for k in refs} == refs
    # the helper's 4 entries: 81 PTEs each, beyond SWAP_MAP_MAX: read through COUNT_CONTINUED
    shared = sorted(k for k, n in refs.items() if n > S.SWAP_MAP_MAX)
    assert len(shared) == 4 and all(refs[k] == 81 for k in shared)
    assert all(S.swap_map(next(S.for_each_swap_info(prog)))[off] & S.COUNT_CONTINUED for _t, off in shared)
    # ... and with the shmem objects' swap entries (xa_values in i_pages, swp_entry_t.val =
    # type << 58 | offset) every slot in use is accounted for: swap_map's count of each slot =
    # its PTEs + its shmem references
    from mmintro.reader.helpers.shmem import shmem_mapping
    from mmintro.reader.helpers.task import for_each_vma
    from mmintro.reader.helpers.xarray import xa_for_each

    users = dict(refs)
    mappings = set()
    for task in for_each_task(prog):
        if task.mm.value_() and task.pid.value_() == task.tgid.value_():
            for v in for_each_vma(task.mm):
                f = v.vm_file
                if f.value_() and shmem_mapping(f.f_mapping) and f.f_mapping.value_() not in mappings:
                    mappings.add(f.f_mapping.value_())
                    for _idx, e in xa_for_each(f.f_mapping.i_pages.address_of_()):
                        if e.value_() & 1:
                            val = e.value_() >> 1
                            k = (val >> (63 - S.MAX_SWAPFILES_SHIFT), val & ((1 << (63 - S.MAX_SWAPFILES_SHIFT)) - 1))
                            users[k] = users.get(k, 0) + 1
    assert len(users) - len(refs) == 192 + 448  # the shmem pages in swap
    m0 = S.swap_map(next(S.for_each_swap_info(prog)))
    in_use = {
        (0, off): S.swp_swapcount(prog, 0, off)
        for off in np.nonzero(m0)[0].tolist()
        if int(m0[off]) != S.SWAP_MAP_BAD and int(m0[off]) & ~S.SWAP_HAS_CACHE
    }
    assert in_use == users
    kernel = {}
    for pages in pagemap.values():
        for k in pages.values():
            kernel[k] = kernel.get(k, 0) + 1
    assert {k: refs[k] for k in kernel} == kernel  # the region's counts = the pagemaps' sharing
    (si,) = list(S.for_each_swap_info(prog))
    cache = S.swap_cache_folios(si)
    swapcached_kb = int(re.search(r"^SwapCached:\s+(\d+) kB", ref.proc("meminfo"), re.M)[1])
    assert len(cache) * 4 == swapcached_kb
    m = S.swap_map(si)
    assert set(np.nonzero(m & S.SWAP_HAS_CACHE)[0].tolist()) == set(cache)
    T = prog.types
    swapcache, swapbacked = 1 << T.const("PG_swapcache"), 1 << T.const("PG_swapbacked")
    for off, folio_addr in cache.items():
        folio = prog.object("struct folio *", value=folio_addr)
        flags = folio.flags.f.value_()  # 6.18: memdesc_flags_t
        assert flags & swapcache and flags & swapbacked, hex(folio_addr)
        assert folio.swap.val.value_() == (si.type.value_() << (63 - S.MAX_SWAPFILES_SHIFT)) | off


# -- drgn on the same dump ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dprog(ref, tmp_path_factory):  # type: ignore[no-untyped-def]
    pytest.importorskip("drgn")
    from mmintro.crosscheck import open_drgn_real

    out = tmp_path_factory.mktemp("swapdebug") / "kernel.debug"
    run("debuginfo", "--kernel", ref.vmlinuz, "-o", str(out), str(ref.path("elf")))
    return open_drgn_real(str(ref.path("elf")), str(out))


def test_drgn_swap_helpers_agree(prog, dprog) -> None:
    from drgn.helpers.linux.swap import (
        for_each_swap_info,
        swap_file_path,
        swap_is_file,
        swap_total_usage,
        swap_usage_in_pages,
        total_swapcache_pages,
    )

    theirs = [
        (
            si.value_(),
            swap_file_path(si).decode(),
            not swap_is_file(si),
            si.pages.value_() * 4,
            swap_usage_in_pages(si) * 4,
            si.prio.value_(),
        )
        for si in for_each_swap_info(dprog)
    ]
    ours = [(r.si, r.path, r.partition, r.size_kb, r.used_kb, r.prio) for r in swaps_view.swaps(prog)]
    assert ours == theirs and ours
    usage = swap_total_usage(dprog)
    assert meminfo_view.si_swapinfo(prog) == (usage.pages, usage.free_pages)
    lines = {ln.split()[0]: int(ln.split()[1]) for ln in meminfo_view.render(meminfo_view.meminfo(prog)).splitlines()}
    assert lines["SwapCached:"] == total_swapcache_pages(dprog) * 4
    (si,) = list(S.for_each_swap_info(prog))
    assert len(S.swap_cache_folios(si)) == total_swapcache_pages(dprog)


def test_drgn_crash_swap_command_agrees(prog, dprog) -> None:
    """drgn's ``%crash swap``: the same row (its PCT is rounded, crash's truncated: not compared)."""
    import drgn.commands

    f = io.StringIO()
    with redirect_stdout(f):
        drgn.commands.run_command(dprog, "crash swap")
    rows = [ln.split() for ln in f.getvalue().splitlines()[1:] if ln.strip()]
    ours = [ln.split() for ln in swaps_view.render_crash(swaps_view.swaps(prog)).splitlines()[1:]]
    assert [r[:4] + r[5:] for r in rows] == [r[:4] + r[5:] for r in ours] and rows


@pytest.mark.parametrize("role", ROLES)
def test_drgn_task_rss_swap_equals_vmswap(ref, prog, dprog, role: str) -> None:
    from drgn.helpers.linux.mm import task_rss
    from drgn.helpers.linux.pid import find_task

    pid = ref.pids[role]
    vmswap = int(re.search(r"^VmSwap:\s+(\d+) kB", status_view.render(status_view.status(prog, pid)), re.M)[1])
    assert task_rss(find_task(dprog, pid)).swap * 4 == vmswap == {"parent": 6144, "child": 5120}[role]


def test_drgn_follow_page_fails_on_exactly_the_swapped_pages(ref, dprog, pagemap, region) -> None:
    """drgn 0.3.0 has no swap-entry decoding: its follow_page raises FaultError ("not mapped")
    on a swap PTE.  It does so on every page the kernel's pagemap says is swapped, and on no
    other page of the region."""
    import drgn
    from drgn.helpers.linux.mm import follow_page
    from drgn.helpers.linux.pid import find_task

    base, size = region
    for role in ROLES:
        pid = ref.pids[role]
        mm = find_task(dprog, pid).mm
        faulted = set()
        for va in range(base, base + size, 4096):
            try:
                follow_page(mm, va)
            except drgn.FaultError:
                faulted.add(va)
        assert faulted == set(pagemap[pid])


# -- crash 9.0.2 on the same dump -----------------------------------------------------------------
@pytest.fixture(scope="module")
def swapped_samples(pagemap) -> list[tuple[int, int]]:
    """(pid, vaddr) of the first page of every pagemap run of swapped pages."""
    return [(pid, va) for pid, pages in sorted(pagemap.items()) for va in sorted(pages) if va - 4096 not in pages]


@pytest.fixture(scope="module")
def crash_run(ref, swapped_samples, tmp_path_factory):  # type: ignore[no-untyped-def]
    from mmintro.realkernel.crash import fetch_crash, real_dump_namelist, run_crash

    namelist = real_dump_namelist(ref.path("elf"), ref.vmlinuz, tmp_path_factory.mktemp("crash") / "vmlinux")
    cmds = ["swap"] + [f"vtop -c {pid} {va:x}" for pid, va in swapped_samples]
    r = run_crash(fetch_crash(), namelist, ref.path("elf"), cmds, timeout=300)
    assert r.error() is None, r.error()
    return r


def test_crash_swap_equals_mmintro(prog, crash_run) -> None:
    """crash's ``swap`` (memory.c dump_swap_info) = ``mmintro swaps --crash``, character for
    character."""
    assert crash_run["swap"] == swaps_view.render_crash(swaps_view.swaps(prog))
    assert "/dev/vda" in crash_run["swap"]


def test_crash_vtop_of_swapped_pages_equals_mmintro(prog, crash_run, swapped_samples, pagemap) -> None:
    """crash's ``vtop -c PID ADDR`` of a swapped-out page: the walk, the PTE / SWAP / OFFSET
    table (x86_64_translate_pte) and do_vtop's "SWAP: /dev/vda  OFFSET: N" line = ``mmintro
    vtop --pid``, character for character, and N is the offset of the guest's pagemap."""
    assert len(swapped_samples) >= 4
    for pid, va in swapped_samples:
        theirs = crash_run[f"vtop -c {pid} {va:x}"]
        assert vm_view.render_vtop(vm_view.vtop_pid(prog, pid, va)) == theirs
        assert f"SWAP: /dev/vda  OFFSET: {pagemap[pid][va][1]}\n" in theirs
