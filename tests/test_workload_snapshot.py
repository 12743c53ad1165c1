"""``snapshot = NAME`` steps: a scenario writes the machine part-way (OUTPUT-NAME.vmcore/.vmlinux)
and goes on unchanged.  The part-way snapshot is opened with real drgn and with mmintro's reader
and differs from the final one as the steps between say (a fork, the child's copy-on-write
writes); the final snapshot is byte-identical to the run's without the step."""

from __future__ import annotations

import filecmp

import pytest
from cli_helpers import run

from mmintro.snapshot.writer import save_unchanged
from mmintro.workload import ScenarioError, parse_scenario, run_scenario

SCENARIO = """\
[machine]
ram = "256M"
cpus = 1

[[step]]
spawn = "parent"
heap = "4M"

[[step]]
touch = "heap"
access = "write"
populate = true
{snapshot}
[[step]]
fork = "child"
parent = "parent"

[[step]]
touch = "heap"
process = "child"
access = "write"
note = "every heap page the child writes is copied (wp_page_copy): one more anonymous page each"

[[step]]
alloc = "rest"
order = 10
until = "exhausted"
note = "the refused request's warn_alloc lines go to the log after the part-way snapshot's crash"
"""
STEP = '\n[[step]]\nsnapshot = "before-fork"\n'


def _drgn_counts(vmcore: str, vmlinux: str) -> tuple[list[str], int, int]:
    """(comm of every task with an mm, NR_ANON_MAPPED, the child's heap pages or 0), read by real drgn."""
    import drgn
    from drgn.helpers.linux.pid import for_each_task

    prog = drgn.Program()
    prog.set_core_dump(vmcore)
    prog.load_debug_info([vmlinux])
    users = [t for t in for_each_task(prog) if t.mm]
    anon = prog["vm_node_stat"][prog.constant("NR_ANON_MAPPED")].counter.value_()
    heap = 0
    if len(users) == 2:
        mm = users[-1].mm
        heap = -(-(mm.brk.value_() - mm.start_brk.value_()) // 4096)
    return [t.comm.string_().decode() for t in users], anon, heap


def _mmintro_counts(stem: str) -> tuple[list[str], int]:
    """(comm of every user process, AnonPages in kB), read by mmintro's reader from the dump alone."""
    from mmintro.reader import open_snapshot
    from mmintro.views import meminfo, ps

    prog = open_snapshot(stem)
    users = [r.comm for r in ps.ps(prog) if not r.comm.startswith("[")]
    return users, {line.name: line.value for line in meminfo.meminfo(prog)}["AnonPages"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """(directory, OUTPUT stem, mmintro simulate's result) of the scenario with its snapshot step."""
    d = tmp_path_factory.mktemp("partway")
    (d / "with.toml").write_text(SCENARIO.format(snapshot=STEP))
    return d, d / "x", run("simulate", str(d / "with.toml"), "-o", str(d / "x"))


def test_a_part_way_snapshot_is_the_machine_before_the_fork(simulated) -> None:
    d, out, r = simulated
    before = d / "x-before-fork"
    assert r.stdout.split()[:4] == [f"{before}.vmcore", f"{before}.vmlinux", f"{out}.vmcore", f"{out}.vmlinux"]
    assert f"snapshot before-fork: {before}.vmcore, {before}.vmlinux" in r.stderr

    comms0, anon0, _ = _drgn_counts(f"{before}.vmcore", f"{before}.vmlinux")
    comms1, anon1, heap = _drgn_counts(f"{out}.vmcore", f"{out}.vmlinux")
    assert comms0 == ["parent"] and comms1 == ["parent", "parent"]  # fork keeps the comm
    assert heap >= 1024 and anon1 - anon0 == heap  # the child's copies, one per heap page
    assert _mmintro_counts(str(before)) == (["parent"], anon0 * 4)
    assert _mmintro_counts(str(out)) == (["parent", "parent"], anon1 * 4)


def test_the_final_snapshot_is_the_one_the_run_without_the_step_leaves(simulated) -> None:
    """The step writes from a forked copy of the simulator: the run goes on from the state before
    the copy's crash, and its final snapshot is byte for byte the one without the step."""
    d, out, _r = simulated
    (d / "without.toml").write_text(SCENARIO.format(snapshot=""))
    run("simulate", str(d / "without.toml"), "-o", str(d / "y"))
    assert filecmp.cmp(f"{out}.vmcore", d / "y.vmcore", shallow=False)
    assert filecmp.cmp(f"{out}.vmlinux", d / "y.vmlinux", shallow=False)
    assert not (d / "y-before-fork.vmcore").exists()


@pytest.mark.slow
def test_a_part_way_snapshot_takes_the_final_ones_format(tmp_path) -> None:
    """--format kdump: the part-way snapshot is makedumpfile's format too, and drgn reads it."""
    (tmp_path / "with.toml").write_text(SCENARIO.format(snapshot=STEP))
    run("simulate", str(tmp_path / "with.toml"), "-o", str(tmp_path / "k"), "--format", "kdump")
    for stem in ("k-before-fork", "k"):
        assert (tmp_path / f"{stem}.vmcore").read_bytes()[:8] == b"KDUMP   "
    comms, anon, _ = _drgn_counts(str(tmp_path / "k-before-fork.vmcore"), str(tmp_path / "k-before-fork.vmlinux"))
    assert comms == ["parent"] and anon >= 1024


@pytest.mark.slow
def test_a_failed_run_leaves_no_part_way_snapshot(tmp_path) -> None:
    path = tmp_path / "fails.toml"
    path.write_text(SCENARIO.format(snapshot=STEP) + "\n[[step]]\nexpect = \"rss('child') == 0\"\n")
    r = run("simulate", str(path), "-o", str(tmp_path / "x"), ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("mmintro: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "step 7 (expect)" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fails.toml"]


def test_without_a_writer_the_step_writes_nothing_and_says_so(tmp_path) -> None:
    only = parse_scenario('[machine]\nram = "256M"\ncpus = 1\n\n[[step]]\nsnapshot = "now"\n', "t.toml")
    assert [r.text for r in run_scenario(only).reports] == [
        "snapshot now: not written (this run has no snapshot writer: no output)"
    ]
    # the real writer, where it cannot write: its OSError (raised in the forked copy) names the step
    (tmp_path / "file").write_text("")
    with pytest.raises(ScenarioError, match=r"^t.toml:6: step 1 \(snapshot\): writing snapshot 'now': Not a directory"):
        run_scenario(only, snapshot=lambda name, k: save_unchanged(k, tmp_path / "file" / "sub" / name))

    seen = []

    def writer(name, kernel):  # called at the step, with the running kernel: before the fork
        seen.append((name, kernel, sorted(p.comm for p in kernel.processes)))
        return ["/nowhere/a", "/nowhere/b"]

    run_ = run_scenario(parse_scenario(SCENARIO.format(snapshot=STEP), "t.toml"), snapshot=writer)
    assert seen == [("before-fork", run_.kernel, ["parent"])]
    assert "snapshot before-fork: /nowhere/a, /nowhere/b" in [r.text for r in run_.reports]


@pytest.mark.parametrize(
    "value, words",
    [
        ('""', "is not a file-name part"),
        ('"a/b"', "is not a file-name part"),
        ('"../up"', "is not a file-name part"),
        ('".hidden"', "is not a file-name part"),
        ('"x.vmcore"', "is not a file-name part"),
        ('"' + "n" * 65 + '"', "is not a file-name part"),
        ("3", "is not a file-name part"),
        ('"before-fork"\n\n[[step]]\nsnapshot = "before-fork"', "already written by step 3"),
    ],
)
def test_snapshot_names_are_checked_before_anything_runs(value: str, words: str) -> None:
    text = SCENARIO.format(snapshot=f"\n[[step]]\nsnapshot = {value}\n")
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "t.toml")
    msg = str(e.value)
    assert "\n" not in msg and words in msg and msg.startswith("t.toml:") and "(snapshot)" in msg, msg
