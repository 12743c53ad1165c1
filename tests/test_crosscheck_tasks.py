"""The process crosscheck rows (mmintro/crosscheck/tasks.py) compare something and can fail:
on a small workload with anonymous, file-backed, CoW-shared and hugetlb memory, each row has
real material on both sides (mapped pages, cached folios, dirty and writeback marks, file
paths, RSS), and a row whose mmintro side is made wrong by one page or one flag disagrees
with drgn."""

from __future__ import annotations

import pytest

drgn = pytest.importorskip("drgn")

from mmintro.crosscheck import open_drgn
from mmintro.crosscheck import tasks as ct
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save
from mmintro.views import ps as ps_view
from mmintro.workload import parse_scenario, run_scenario

WORKLOAD = """
[machine]
ram = "1G"
hugepages_2m = 4

[[step]]
spawn = "db"
heap = "1M"

[[step]]
touch = "heap"
access = "write"

[[step]]
create_file = "data"
path = "/srv/data.bin"
size = "1M"

[[step]]
write = "data"
size = "256K"

[[step]]
mmap = "view"
kind = "shared"
file = "data"
size = "1M"

[[step]]
touch = "view"
size = "512K"

[[step]]
mmap = "huge"
kind = "hugetlb"
size = "4M"

[[step]]
touch = "huge"
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
writeback = "all"
complete = 0.5
"""


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    run = run_scenario(parse_scenario(WORKLOAD, "small.toml"))
    path = tmp_path_factory.mktemp("xtasks") / "small"
    save(run.kernel, path)
    p = open_snapshot(str(path))
    d = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    yield p, d, run
    p.close()


ROWS = {name: fn for name, fn in ct.TASK_CHECKS}


@pytest.mark.parametrize("name", list(ROWS))
def test_row_agrees(progs, name):
    p, d, _run = progs
    mine, theirs = ROWS[name](p, d)
    assert mine == theirs


def test_rows_have_material(progs):
    """No row passes by comparing two empty answers."""
    p, d, _run = progs
    follow = ct.c_follow_user(p, d)[0]
    assert sum(1 for r in follow if r[2] is not None) >= 24  # half of each process' sample is mapped
    assert sum(1 for r in follow if r[2] is None) >= 2
    cache = [r for r in ct.c_page_cache(p, d)[0] if r[3]]
    assert any(r[2] >= 128 and len(r[3]) > 16 for r in cache)  # the data file: written + read through the mapping
    marks = ct.c_page_cache_marks(p, d)[0]
    assert any(r[3] for r in marks) and not any(r[2] for r in marks)  # in flight; nothing dirty after sync
    files = ct.c_file_mappings(p, d)[0]
    assert len(files) >= 128 and all(page == cached for _pid, _a, page, cached in files)
    vm = ct.c_crash_vm(p, d)[0]
    assert any(r[-1] == "/srv/data.bin" for r in vm)
    vtop = ct.c_crash_vtop_c(p, d)[0]
    assert any(r[2] is not None for r in vtop) and any(r[2] is None for r in vtop)
    rss = ct.c_task_rss(p, d)[0]
    assert all(r[2] > 256 for r in rss)  # anon pages of the heap in both processes
    huge = ct.c_hugetlb_usage(p, d)[0]
    assert huge == (4 * 512, 2 * 512)


def test_rows_catch_a_wrong_page(progs, monkeypatch):
    """A reader that is off by one page in translation, or that reads the DIRTY mark as
    WRITEBACK, is caught by the rows that depend on it."""
    from mmintro.reader.helpers import mm as mmh
    from mmintro.views import vm as vm_view

    p, d, _run = progs
    real = mmh.follow_phys

    def off_by_a_page(mm, addr):
        v = real(mm, addr)
        return drgn_like(v, v.value_() + 4096)

    def drgn_like(obj, value):
        from mmintro.reader.object import Object

        return Object(obj.prog_, obj.type_, value)

    monkeypatch.setattr(mmh, "follow_phys", off_by_a_page)
    mine, theirs = ct.c_follow_user(p, d)
    assert mine != theirs
    monkeypatch.undo()
    real_vtop = vm_view.vtop_pid
    monkeypatch.setattr(vm_view, "vtop_pid", lambda prog, pid, a: {**real_vtop(prog, pid, a), "phys": 0})
    mine, theirs = ct.c_crash_vtop_c(p, d)
    assert mine != theirs
    monkeypatch.setattr(ct, "PAGECACHE_TAG_DIRTY", ct.PAGECACHE_TAG_WRITEBACK)
    mine, theirs = ct.c_page_cache_marks(p, d)
    assert mine != theirs


def test_rows_agree_with_threads(tmp_path):
    """Threads are not on init_task.tasks (only group leaders are): mmintro's task walk goes
    through init_pid_ns's IDR as drgn's for_each_task does, so a thread whose pid sorts
    between two processes is found, in drgn's order, by every row."""
    from mmintro.kernel import fork, memory
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot

    k = boot(MachineConfig(ram=512 << 20, cpus=2, seed=3))
    a = fork.spawn_process(k, "web")
    b = fork.spawn_process(k, "cron")
    t = fork.do_clone_thread(k, a, cpu=1)
    heap = k.kmem.get(a.mm, "mm_struct", "start_brk")
    memory.handle_mm_fault(k, a.mm, heap, True)
    path = tmp_path / "thr"
    save(k, path)
    p = open_snapshot(str(path))
    d = open_drgn(f"{path}.vmcore", f"{path}.vmlinux")
    mine = [int(x.pid.value_()) for x in ps_view.for_each_task(p, idle=False)]
    assert mine == [0, a.pid, b.pid, t.pid] and t.pid > b.pid
    for name, fn in ct.TASK_CHECKS:
        m, th = fn(p, d)
        assert m == th, name
    p.close()
