"""Workload steps for processes, mappings and files (mmintro/workload/): the TOML schema is
checked before anything runs (one line naming FILE:LINE and the step), the steps drive the
simulator's own entry points, and the expectations read the kernel's books (mm_struct,
rss_stat) — checked here against real drgn on the saved snapshot where it matters."""

from __future__ import annotations

import itertools

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


@pytest.mark.parametrize(
    "body, line, words",
    [
        ('[[step]]\ntouch = "buf"\n', 9, "process 'db' has no mapping 'buf' (its mappings: heap, stack)"),
        ('[[step]]\nmmap = "buf"\nsize = "3K"\n', 10, "not a multiple of the page size"),
        ('[[step]]\nmmap = "buf"\nsize = "-8M"\n', 10, "size = '-8M' is not a size"),
        ('[[step]]\nspawn = "a\\u0000b"\n', 9, "holds a NUL byte"),
        ('[[step]]\nmmap = "buf"\nsize = "0"\n', 10, "size = 0: an empty range"),
        ('[[step]]\nmunmap = "heap"\nsize = 0\n', 10, "size = 0: an empty range"),
        ('[[step]]\nmmap = "buf"\nsize = "4M"\nkind = "shared"\n', 8, "a shared mapping maps a file: file = TAG"),
        ('[[step]]\nmmap = "buf"\nsize = "4M"\nprot = "rq"\n', 11, "not made of the letters r, w, x"),
        ('[[step]]\nmmap = "buf"\nsize = "3M"\nkind = "hugetlb"\n', 10, "multiple of its page size"),
        ('[[step]]\nmmap = "buf"\nsize = "4M"\nkind = "hugetlb"\npage_size = "4M"\n', 12, "not a huge page size"),
        ('[[step]]\nfork = "c"\n', 8, "fork needs parent = NAME"),
        ('[[step]]\nfork = "db"\nparent = "db"\n', 9, "process 'db' already exists"),
        ("[[step]]\nexpect = \"rss('nope') == 0\"\n", 9, "unknown process 'nope' (processes at this step: db)"),
        ('[[step]]\nexit = "db"\n[[step]]\nexpect = "rss(\'db\') == 0"\n', 11, "unknown process 'db'"),
        ('[[step]]\nsysctl = "vm.dirty_ratio"\nvalue = "x"\n', 10, "takes a non-negative integer"),
        ('[[step]]\nsysctl = "vm.vfs_cache_pressure"\nvalue = 1\n', 9, "unknown tunable 'vm.vfs_cache_pressure'"),
        ('[[step]]\nsysctl = "vm.dirty_ratio"\nvalue = 200\n', 10, "is a percentage (0..100), not 200"),
        ('[[step]]\nsysctl = "transparent_hugepage"\nvalue = "sometimes"\n', 10, "one of always, madvise, never"),
        ('[[step]]\ntouch = "heap"\nevery = 2\nfraction = 0.5\n', 8, "touch takes one of every, fraction, count"),
        ('[[step]]\ntouch = "heap"\naccess = "exec"\n', 10, 'is not "read" or "write"'),
        ('[[step]]\nread = "f"\n', 9, "unknown file 'f' (files so far: none)"),
        ('[[step]]\ncreate_file = "f"\npath = "log"\n', 10, "absolute path"),
        ('[[step]]\nmbind = "heap"\npolicy = "bind"\n', 8, "policy 'bind' needs nodes"),
        ('[[step]]\nmbind = "heap"\npolicy = "random"\n', 10, "policy 'random' is not one of default"),
        ("[[step]]\nwriteback = true\n", 9, 'writeback = "all"'),
        (
            '[[step]]\nspawn = "web"\n[[step]]\ntouch = "heap"\n',
            10,
            "touch needs process = NAME (processes so far: db, web)",
        ),
    ],
)
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
    sc = parse_scenario(
        BASE + '[[step]]\nspawn = "web"\nparent = "db"\ncomm = "nginx"\n\n'
        '[[step]]\nmmap = "buf"\nprocess = "web"\nsize = "4M"\n\n'
        "[[step]]\nexpect = \"rss('db') == 0 and total_vm('web') - total_vm('db') == 1024 - 2048\"\n",
        "x.toml",
    )
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


# -- every process step on a running kernel, checked with real drgn --------------------------
EVERY_STEP = """
[machine]
ram = "2G"
nodes = 2
cpus = 2

[[step]]
spawn = "app"
heap = "4M"

[[step]]
mmap = "buf"
size = "4M"

[[step]]
touch = "buf"
access = "write"

[[step]]
munmap = "buf"
start = "1M"
size = "1M"

[[step]]
mprotect = "buf"
prot = "r"
start = "3M"
size = "1M"

[[step]]
mmap = "local1"
size = "1M"

[[step]]
mbind = "local1"
policy = "bind"
nodes = [1]

[[step]]
touch = "local1"
access = "write"

[[step]]
set_mempolicy = "app"
policy = "interleave"
nodes = [0, 1]

[[step]]
mmap = "spread"
size = "64K"

[[step]]
touch = "spread"
access = "write"

[[step]]
fork = "child"
parent = "app"

[[step]]
spawn = "victim"
heap = "2M"

[[step]]
touch = "heap"
process = "victim"
access = "write"

[[step]]
exit = "victim"

[[step]]
sysctl = "vm.nr_hugepages"
value = 6

[[step]]
sysctl = "transparent_hugepage"
value = "never"

[[step]]
expect = "hugepages_total == 6 and hugepages_free == 6 and rss_anon('child') == rss_anon('app')"
"""


@pytest.fixture(scope="module")
def every_step(tmp_path_factory):
    pytest.importorskip("drgn")
    from mmintro.crosscheck import open_drgn
    from mmintro.snapshot.writer import save

    run = run_scenario(parse_scenario(EVERY_STEP, "every.toml"))
    path = tmp_path_factory.mktemp("every") / "every"
    save(run.kernel, path)
    return run, open_drgn(f"{path}.vmcore", f"{path}.vmlinux")


def _nid(d, page) -> int:
    from drgn.helpers.linux.mm import page_to_pfn
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    pfn = page_to_pfn(page).value_()
    for pg in for_each_online_pgdat(d):
        if pg.node_start_pfn.value_() <= pfn < pg.node_start_pfn.value_() + pg.node_spanned_pages.value_():
            return pg.node_id.value_()
    raise AssertionError(pfn)


def test_munmap_and_mprotect_steps_split_the_vma(every_step):
    """drgn's for_each_vma: the 4M buffer is two VMAs around the 1M hole, the last 1M of it a
    separate read-only VMA (VM_WRITE clear), the rest read-write."""
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task

    run, d = every_step
    start = run.workload.mappings["app"]["buf"].start
    mb = 1 << 20
    vmas = {
        (v.vm_start.value_(), v.vm_end.value_()): v.vm_flags.value_()
        for v in for_each_vma(find_task(d, run.workload.procs["app"].pid).mm)
    }
    local1 = run.workload.mappings["app"]["local1"]
    # the hole holds no part of buf (the next 1M mmap, top-down, may fill it)
    assert all(
        (s, e) == (local1.start, local1.start + local1.length) for s, e in vmas if s < start + 2 * mb and e > start + mb
    )

    def at(a: int) -> tuple[int, int, int]:
        return next((s, e, f) for (s, e), f in vmas.items() if s <= a < e)

    # mprotect split [3M, 4M) off: VM_READ without VM_WRITE; [2M, 3M) stays read-write
    assert at(start + 3 * mb) == (start + 3 * mb, start + 4 * mb, at(start + 3 * mb)[2])
    assert at(start + 3 * mb)[2] & 0x3 == 0x1
    assert at(start + 2 * mb)[:2] == (start + 2 * mb, start + 3 * mb) and at(start + 2 * mb)[2] & 0x3 == 0x3
    assert at(start)[1] == start + mb and at(start)[2] & 0x3 == 0x3  # (a later mmap may merge below it)


def test_mempolicy_steps_place_pages(every_step):
    """mbind(MPOL_BIND, node 1) puts every page of that range on node 1; the task's
    MPOL_INTERLEAVE over nodes 0 and 1 alternates the next mapping's pages between them."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_page
    from drgn.helpers.linux.pid import find_task

    run, d = every_step
    mm = find_task(d, run.workload.procs["app"].pid).mm

    def nids(tag: str) -> list[int]:
        m = run.workload.mappings["app"][tag]
        out = []
        for a in range(m.start, m.start + m.length, 4096):
            try:
                out.append(_nid(d, follow_page(mm, a)))
            except FaultError:
                out.append(-1)
        return out

    assert set(nids("local1")) == {1}
    spread = nids("spread")
    assert sorted(set(spread)) == [0, 1] and all(a != b for a, b in itertools.pairwise(spread))


def test_exit_fork_and_sysctl_steps(every_step):
    """The exited process is gone from drgn's task list (and its pid from the idr); the forked
    child has the parent's VMAs; the hugetlb pool is the 6 pages asked for; THP is "never"
    in transparent_hugepage_flags (neither the ALWAYS nor the MADVISE bit)."""
    from drgn.helpers.linux.hugetlb import hugetlb_total_usage
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task, for_each_task

    run, d = every_step
    pids = {t.pid.value_() for t in for_each_task(d)}
    assert run.workload.procs["app"].pid in pids and run.workload.procs["child"].pid in pids
    assert "victim" not in run.workload.procs and len(pids - {0}) == 2
    parent = [
        (v.vm_start.value_(), v.vm_end.value_()) for v in for_each_vma(find_task(d, run.workload.procs["app"].pid).mm)
    ]
    child = [
        (v.vm_start.value_(), v.vm_end.value_()) for v in for_each_vma(find_task(d, run.workload.procs["child"].pid).mm)
    ]
    assert parent == child
    u = hugetlb_total_usage(d)
    assert (u.pages, u.free_pages) == (6 * 512, 6 * 512)
    flags = d["transparent_hugepage_flags"].value_()
    always, madvise = (
        d.constant(c).value_() for c in ("TRANSPARENT_HUGEPAGE_FLAG", "TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG")
    )
    assert not flags >> always & 1 and not flags >> madvise & 1


def test_a_fault_the_kernel_refuses_is_a_failed_step() -> None:
    """A write to a read-only mapping is SIGSEGV (SEGV_ACCERR from the VMA's flags): the step
    fails with one line naming the file, line and step, and the address."""
    from mmintro.workload import ScenarioFailed

    sc = parse_scenario(
        BASE + '[[step]]\nmmap = "ro"\nsize = "64K"\nprot = "r"\n\n[[step]]\ntouch = "ro"\naccess = "write"\n', "x.toml"
    )
    with pytest.raises(ScenarioFailed) as e:
        run_scenario(sc)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("x.toml:14: step 3 (touch): touch ro in db: SIGSEGV at 0x"), msg


def test_a_whole_munmap_forgets_the_tag() -> None:
    msg = _err('[[step]]\nmunmap = "heap"\n\n[[step]]\ntouch = "heap"\n')
    assert "process 'db' has no mapping 'heap' (its mappings: stack)" in msg


def test_exec_replaces_the_mm_and_the_tags(tmp_path) -> None:
    """exec: a new mm (the old one torn down: its pages freed), the same pid; the heap tag
    names the new brk area; real drgn sees the new comm and mm."""
    pytest.importorskip("drgn")
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.snapshot.writer import save

    sc = parse_scenario(
        BASE + '[[step]]\ntouch = "heap"\naccess = "write"\n\n'
        '[[step]]\nexec = "db"\ncomm = "postgres"\nheap = "1M"\n\n'
        "[[step]]\nexpect = \"rss('db') == 0\"\n",
        "x.toml",
    )
    run = run_scenario(sc)
    w = run.workload
    p = w.procs["db"]
    assert p.comm == "postgres" and w.mappings["db"]["heap"].length >= 1 << 20
    save(run.kernel, tmp_path / "exec")
    d = open_drgn(str(tmp_path / "exec.vmcore"), str(tmp_path / "exec.vmlinux"))
    t = find_task(d, p.pid)
    assert t.comm.string_() == b"postgres" and t.mm.value_() == p.mm
    assert t.mm.brk.value_() - t.mm.start_brk.value_() >= 1 << 20


def test_exec_needs_a_program() -> None:
    assert "exec needs comm" in _err('[[step]]\nexec = "db"\n')


def test_brk_grows_and_shrinks_the_heap() -> None:
    """brk shrink unmaps the pages above the new break (their RSS goes), grow extends the
    VMA again; the heap tag follows the break."""
    sc = parse_scenario(
        BASE + '[[step]]\ntouch = "heap"\naccess = "write"\n\n'
        '[[step]]\nbrk = "db"\nshrink = "4M"\n\n'
        '[[step]]\nbrk = "db"\ngrow = "1M"\n',
        "x.toml",
    )
    run = run_scenario(sc)
    w = run.workload
    km = run.kernel.kmem
    mm = w.procs["db"].mm
    start_brk, brk = km.get(mm, "mm_struct", "start_brk"), km.get(mm, "mm_struct", "brk")
    assert w.mappings["db"]["heap"].length == -(-(brk - start_brk) // 4096) * 4096
    from mmintro.workload import _mm_counter

    before = (8 << 20) // 4096 + 0x12A  # the heap touched: exec's initial heap + 8M
    assert _mm_counter(w, "db", "MM_ANONPAGES") == before - (4 << 20) // 4096
    assert "brk takes grow = SIZE or shrink = SIZE" in _err('[[step]]\nbrk = "db"\n')


@pytest.mark.parametrize(
    "alloc, free",
    [('alloc = "b"\norder = 0\ncount = 2', 'free = "b"'), ('kmalloc = "o"\nsize = 64\ncount = 2', 'kfree = "o"')],
)
def test_freeing_a_tag_twice_is_a_one_line_error(tmp_path, alloc: str, free: str) -> None:
    """Once every block or object of a tag went back, freeing the tag again would be a double
    free: the run stops at that step with one line, and writes no snapshot."""
    import subprocess

    toml = tmp_path / "twice.toml"
    toml.write_text(
        f'[scenario]\nhelp = "x"\n[machine]\nram = "1G"\n[[step]]\n{alloc}\n[[step]]\n{free}\n[[step]]\n{free}\n'
    )
    p = subprocess.run(
        ["mmintro", "simulate", str(toml), "-o", str(tmp_path / "s")], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "were all freed already" in p.stderr
    assert not (tmp_path / "s.vmcore").exists()
