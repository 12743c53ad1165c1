"""Workload steps for processes, mappings and files (mmintro/workload.py): the TOML schema is
checked before anything runs (one line naming FILE:LINE and the step), the steps drive the
simulator's own entry points, and the expectations read the kernel's books (mm_struct,
rss_stat) — checked here against real drgn on the saved snapshot where it matters."""

from __future__ import annotations

import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.workload import ScenarioError, Workload, WorkloadError, parse_scenario, run_scenario

BASE = '[machine]\nram = "1G"\n\n[[step]]\nspawn = "db"\nheap = "8M"\n\n'


def _err(body: str) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(BASE + body, "x.toml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("x.toml:")
    return msg


@pytest.mark.parametrize("body, line, words", [
    ('[[step]]\ntouch = "buf"\n', 9, "process 'db' has no mapping 'buf' (its mappings: heap, stack)"),
    ('[[step]]\nmmap = "buf"\nsize = "3K"\n', 10, "not a multiple of the page size"),
    ('[[step]]\nmmap = "buf"\nsize = "4M"\nkind = "shared"\n', 8, "a shared mapping maps a file: file = TAG"),
    ('[[step]]\nmmap = "buf"\nsize = "4M"\nprot = "rq"\n', 11, "not made of the letters r, w, x"),
    ('[[step]]\nmmap = "buf"\nsize = "3M"\nkind = "hugetlb"\n', 10, "multiple of its page size"),
    ('[[step]]\nmmap = "buf"\nsize = "4M"\nkind = "hugetlb"\npage_size = "4M"\n', 12, "not a huge page size"),
    ('[[step]]\nfork = "c"\n', 8, "fork needs parent = NAME"),
    ('[[step]]\nfork = "db"\nparent = "db"\n', 9, "process 'db' already exists"),
    ('[[step]]\nexpect = "rss(\'nope\') == 0"\n', 9, "unknown process 'nope' (processes at this step: db)"),
    ('[[step]]\nexit = "db"\n[[step]]\nexpect = "rss(\'db\') == 0"\n', 11, "unknown process 'db'"),
    ('[[step]]\nsysctl = "vm.dirty_ratio"\nvalue = "x"\n', 10, "takes a non-negative integer"),
    ('[[step]]\nsysctl = "vm.swappiness"\nvalue = 1\n', 9, "unknown tunable 'vm.swappiness'"),
    ('[[step]]\nsysctl = "transparent_hugepage"\nvalue = "sometimes"\n', 10, "one of always, madvise, never"),
    ('[[step]]\ntouch = "heap"\nevery = 2\nfraction = 0.5\n', 8, "touch takes one of every, fraction, count"),
    ('[[step]]\ntouch = "heap"\naccess = "exec"\n', 10, "is not \"read\" or \"write\""),
    ('[[step]]\nread = "f"\n', 9, "unknown file 'f' (files so far: none)"),
    ('[[step]]\ncreate_file = "f"\npath = "log"\n', 10, "absolute path"),
    ('[[step]]\nmbind = "heap"\npolicy = "bind"\n', 8, "policy 'bind' needs nodes"),
    ('[[step]]\nmbind = "heap"\npolicy = "random"\n', 10, "policy 'random' is not one of default"),
    ('[[step]]\nwriteback = true\n', 9, "writeback = \"all\""),
    ('[[step]]\nspawn = "web"\n[[step]]\ntouch = "heap"\n', 10, "touch needs process = NAME (processes so far: db, web)"),
])
def test_bad_process_steps_are_one_line_errors_at_their_line(body: str, line: int, words: str) -> None:
    msg = _err(body)
    assert msg.startswith(f"x.toml:{line}: step "), msg
    assert words in msg, msg


def test_unknown_key_names_the_keys_a_step_takes() -> None:
    msg = _err('[[step]]\nmmap = "buf"\nsize = "4M"\nwrite = true\n')
    assert "the step has 2 actions (mmap, write)" in msg


def test_touch_takes_the_only_process_without_naming_it() -> None:
    sc = parse_scenario(BASE + '[[step]]\nmmap = "buf"\nsize = "4M"\n', "x.toml")
    assert [s.action for s in sc.steps] == ["spawn", "mmap"]


def test_spawn_and_expect_read_the_mm_books() -> None:
    """spawn's heap and mmap's VMA show in total_vm and map_count as mm/mmap.c accounts them:
    the expectation values are the mm_struct's fields, checked against the sizes asked for."""
    sc = parse_scenario(BASE + '[[step]]\nspawn = "web"\nparent = "db"\ncomm = "nginx"\n\n'
                        '[[step]]\nmmap = "buf"\nprocess = "web"\nsize = "4M"\n\n'
                        '[[step]]\nexpect = "rss(\'db\') == 0 and total_vm(\'web\') - total_vm(\'db\') == 1024 - 2048"\n',
                        "x.toml")
    run = run_scenario(sc)
    w = run.workload
    assert w.procs["web"].comm == "nginx"
    assert w.mappings["web"]["buf"].length == 4 << 20
    assert w.mappings["db"]["heap"].length >= 8 << 20
    km = run.kernel.kmem
    # the parent of web is db
    assert km.get(w.procs["web"].task, "task_struct", "real_parent") == w.procs["db"].task


def test_api_errors_are_workload_errors() -> None:
    w = Workload(boot(MachineConfig(ram=1 << 30, seed=2)))
    with pytest.raises(WorkloadError, match="unknown process 'x'"):
        w.mmap("x", "m", 4096)
    w.spawn("a")
    with pytest.raises(WorkloadError, match="process 'a' has no mapping 'm'"):
        w.touch("a", "m")
    with pytest.raises(WorkloadError, match="kind 'weird'"):
        w.mmap("a", "m", 4096, kind="weird")


def test_machine_table_takes_thp_and_hugetlb_pools() -> None:
    sc = parse_scenario('[machine]\nram = "1G"\nthp = "always"\nhugepages_2m = 8\nhugepages_1g = 0\n', "m.toml")
    cfg = sc.config()
    assert (cfg.thp, cfg.hugepages_2m, cfg.hugepages_1g) == ("always", 8, 0)
    with pytest.raises(ScenarioError, match=r"^m\.toml:2: \[machine\]: thp = 'sometimes' is not one of always"):
        parse_scenario('[machine]\nthp = "sometimes"\n', "m.toml")
