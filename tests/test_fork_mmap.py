"""Processes as kernel/fork.c and mm/mmap.c leave them (mmintro/kernel/fork.py, mmap.py):
real drgn's stock helpers (for_each_task, find_task, for_each_vma) and its crash ``ps -p``
find exactly the processes and VMAs the simulator made, and the maps view prints them in
6.18's /proc/PID/maps format (checked against the reference capture's line shapes).

This slice has no page faults: the user half of each pgd is empty and RSS is 0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmintro.kernel import fork
from mmintro.kernel import mmap as M
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.reader.helpers.maple_tree import mt_validate
from mmintro.snapshot.writer import save
from mmintro.views import maps as maps_view
from mmintro.views import ps as ps_view

drgn = pytest.importorskip("drgn")

REF_MAPS = Path(__file__).parent / "data" / "reference" / "procfs" / "pid" / "self_maps"
R, W, X = M.VM_READ, M.VM_WRITE, M.VM_EXEC
# fs/proc/task_mmu.c show_map_vma(): "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu " then the name at column 74
MAPS_LINE = re.compile(
    r"^([0-9a-f]{8,16})-([0-9a-f]{8,16}) ([r-][w-][x-][ps]) ([0-9a-f]{8,}) "
    r"([0-9a-f]{2}):([0-9a-f]{2}) (\d+) (?:$| {0,72}(\S.*)$)"
)


def _nameless_or_col74(line: str) -> bool:
    head = MAPS_LINE.match(line)
    assert head, line
    return head.group(8) is None or (len(line) - len(head.group(8)) == 73 or line[:73].endswith(" "))


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=7))
    procs = [
        fork.spawn_process(k, "systemd", mmaps=[(0x21000, R | W), (0x1000, R), (0x400000, R | W)], brk_grow=0x5000)
    ]
    procs.append(fork.spawn_process(k, "bash", parent=procs[0].task, mmaps=[(0x800000, R | W), (0x3000, R)]))
    # two equal anonymous mmaps in a row merge into one VMA (vma_merge_new_range)
    procs.append(
        fork.spawn_process(
            k,
            "python3.11",
            parent=procs[1].task,
            mmaps=[(0x400000, R | W), (0x400000, R | W), (0x100000, R | X)],
            brk_grow=0x100000,
        )
    )
    procs.append(fork.spawn_process(k, "a-very-long-command-name", parent=procs[1].task, cpu=1))
    procs.append(fork.spawn_process(k, "sleep", parent=procs[0].task, mmaps=[(0x2000, R)]))
    d = tmp_path_factory.mktemp("fork")
    save(k, d / "procs")
    return k, procs, str(d / "procs")


@pytest.fixture(scope="module")
def progs(machine):
    from mmintro.crosscheck import open_drgn

    _k, _p, path = machine
    return open_drgn(path + ".vmcore", path + ".vmlinux"), open_snapshot(path)


def _vmas(k, mm):
    return [(f, l_ + 1, e) for f, l_, e in M.mm_tree(k, mm).mt_for_each()]


def test_pids_start_at_1_and_tree_links(machine) -> None:
    k, procs, _ = machine
    assert [p.pid for p in procs] == [1, 2, 3, 4, 5]
    assert procs[3].comm == "a-very-long-com"  # TASK_COMM_LEN 16 with the NUL
    km = k.kmem
    assert km.get(procs[2].task, "task_struct", "real_parent") == procs[1].task
    assert km.get(procs[0].task, "task_struct", "parent") == k.sym("init_task")


def test_mm_accounting_matches_the_vmas(machine) -> None:
    k, procs, _ = machine
    km = k.kmem
    for p in procs:
        vmas = _vmas(k, p.mm)
        assert km.get(p.mm, "mm_struct", "map_count") == len(vmas)
        pages = {"total_vm": 0, "exec_vm": 0, "stack_vm": 0, "data_vm": 0}
        for s, e, v in vmas:
            f = km.get(v, "vm_area_struct", "vm_flags")
            n = (e - s) >> 12
            pages["total_vm"] += n
            if f & (X | W | M.VM_GROWSDOWN) == X:
                pages["exec_vm"] += n
            elif f & M.VM_GROWSDOWN:
                pages["stack_vm"] += n
            elif f & (W | M.VM_SHARED) == W:
                pages["data_vm"] += n
            assert km.get(v, "vm_area_struct", "vm_page_prot") == M.protection_map[f & 0xF]
            assert km.get(v, "vm_area_struct", "vm_mm") == p.mm
        for field, n in pages.items():
            assert km.get(p.mm, "mm_struct", field) == n, field
        assert km.get(p.mm, "mm_struct", "mm_users.counter") == 1
        assert km.get(p.mm, "mm_struct", "mm_count.counter") == 1


def test_top_down_mmaps_and_merge(machine) -> None:
    k, procs, _ = machine
    km = k.kmem
    py = procs[2]
    vmas = _vmas(k, py.mm)
    vdso = km.get(py.mm, "mm_struct", "context.vdso")
    below = [
        (s, e)
        for s, e, v in vmas
        if e <= vdso - 0x6000 and s >= 0x7F0000000000 and not km.get(v, "vm_area_struct", "vm_file")
    ]
    # under the vDSO: libc (file VMAs, skipped) and its anonymous bss (0xd pages), then the
    # program's mmaps: the r-x mmap went in last, lowest; the two rw- mmaps merged into one
    # 8 MiB VMA above it.  Their length is a multiple of PMD_SIZE, so 6.18 placed them
    # PMD-aligned (thp_get_unmapped_area): the VMA ends at the last 2 MiB boundary below libc
    assert [e - s for s, e in below] == [0x100000, 0x800000, 0xD000]
    libc = min(s for s, _e, v in vmas if km.get(v, "vm_area_struct", "vm_file") and s > below[0][0])
    pmd = 2 << 20
    assert below[0][1] == below[1][0] and below[1][1] == libc & ~(pmd - 1) and below[1][0] % pmd == 0
    assert all(e <= km.get(py.mm, "mm_struct", "mmap_base") for s, e, _v in vmas if s < (1 << 47) - (1 << 35))


def test_pgd_kernel_half_is_swappers_user_half_empty(machine) -> None:
    k, procs, _ = machine
    swapper = k.mem.read(k.pa(k.sym("swapper_pg_dir")), 4096)
    for p in procs:
        pgd = k.mem.read(k.pa(k.kmem.get(p.mm, "mm_struct", "pgd")), 4096)
        assert pgd[2048:] == swapper[2048:]
        assert pgd[:2048] == bytes(2048)


def test_drgn_for_each_task_and_find_task(machine, progs) -> None:
    from drgn.helpers.linux.pid import find_pid, find_task, for_each_task

    _k, procs, _ = machine
    d, _p = progs
    assert sorted((t.pid.value_(), t.comm.string_().decode(), t.value_()) for t in for_each_task(d)) == [
        (p.pid, p.comm, p.task) for p in procs
    ]
    for p in procs:
        assert find_task(d, p.pid).value_() == p.task
        assert find_pid(d, p.pid).value_() == p.pid_struct
    assert not find_task(d, 99)


def test_drgn_for_each_vma_is_ours(machine, progs) -> None:
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task

    k, procs, _ = machine
    d, p = progs
    for proc in procs:
        mine = [(s, e, v) for s, e, v in _vmas(k, proc.mm)]
        theirs = [(v.vm_start.value_(), v.vm_end.value_(), v.value_()) for v in for_each_vma(find_task(d, proc.pid).mm)]
        assert theirs == mine and len(mine) >= 10
        assert mt_validate(p.object("struct mm_struct", proc.mm).mm_mt.address_of_()) == len(mine)


def test_maps_view_equals_the_vmas_and_parses_like_the_reference(machine, progs) -> None:
    k, procs, _ = machine
    _d, p = progs
    for line in REF_MAPS.read_text().splitlines():  # the pattern fits the real capture
        assert _nameless_or_col74(line), line
    for proc in procs:
        rows = maps_view.maps(p, proc.pid)
        # the mm's VMAs, then get_gate_vma()'s [vsyscall] (the image's gate_vma)
        assert [(r.start, r.end, r.vma) for r in rows[:-1]] == _vmas(k, proc.mm)
        assert (rows[-1].name, rows[-1].vma) == ("[vsyscall]", k.sym("gate_vma"))
        text = maps_view.render(rows)
        lines = text.splitlines()
        for line in lines:
            assert _nameless_or_col74(line), line
            m = MAPS_LINE.match(line)
            if m.group(8):
                assert line.index(m.group(8)) == 73, line
        names = [r.name for r in rows if r.name]
        full = {"a-very-long-com": "a-very-long-command-name"}.get(proc.comm, proc.comm)
        exe, libc, ld = f"/usr/bin/{full}", M.LIBC_PATH, M.INTERP_PATH
        # the program's four segments, libc's five (relro split off), ld.so's five
        assert names == [exe] * 4 + ["[heap]"] + [libc] * 5 + ["[vvar]", "[vvar_vclock]", "[vdso]"] + [ld] * 5 + [
            "[stack]",
            "[vsyscall]",
        ], names
        heap = next(r for r in rows if r.name == "[heap]")
        assert heap.start >= k.kmem.get(proc.mm, "mm_struct", "start_brk")
        assert next(r for r in rows if r.name == "[vdso]").perms == "r-xp"
        assert next(r for r in rows if r.name == "[stack]").perms == "rw-p"
        assert rows[0].start == 0x400000 and rows[1].perms == "r-xp"
    with pytest.raises(LookupError):
        maps_view.maps(p, 99)


def test_ps_view_and_crash_ps_p(machine, progs) -> None:
    from mmintro.crosscheck.tasks import TASK_CHECKS

    k, procs, _ = machine
    d, p = progs
    rows = ps_view.ps(p)
    assert [r.comm for r in rows] == ["[swapper/0]", "[swapper/1]"] + [pr.comm for pr in procs]
    user = rows[2:]
    assert [r.ppid for r in user] == [0, 1, 2, 2, 1]
    assert [r.cpu for r in user] == [0, 0, 0, 1, 0]
    assert all(r.state == "IN" and r.rss == 0 for r in user)
    assert [r.vsz for r in user] == [k.kmem.get(pr.mm, "mm_struct", "total_vm") * 4 for pr in procs]
    assert rows[0].active and not user[0].active
    for name, fn in TASK_CHECKS:
        a, b = fn(p, d)
        assert a == b, name
