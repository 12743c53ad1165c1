"""``mmintro simulate --output NAME`` writes the simulator's fault log beside the snapshot as
NAME.faults.tsv (a trace for post-mortems, not part of the snapshot); ``mmintro faults NAME``
reads it.  Every traced fault's pfn is what real drgn finds mapped at that address in the
snapshot (when no later fault of the same task replaced it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run

drgn = pytest.importorskip("drgn")

SCENARIO = """
[scenario]
help = "8 anonymous write faults, a fork, 2 copy-on-write faults in the child"

[machine]
ram = "512M"
cpus = 2

[[step]]
spawn = "p"
heap = "64K"

[[step]]
mmap = "a"
process = "p"
size = "64K"

[[step]]
touch = "a"
process = "p"
access = "write"
size = "32K"

[[step]]
fork = "c"
parent = "p"

[[step]]
touch = "a"
process = "c"
access = "write"
size = "8K"

[[step]]
touch = "a"
process = "c"
access = "read"
size = "8K"
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    sc = d / "tiny.toml"
    sc.write_text(SCENARIO)
    name = str(d / "snap")
    r = run("simulate", str(sc), "-o", name)
    assert r.stdout.split() == [name + ".vmcore", name + ".vmlinux", name + ".faults.tsv"]
    return name


def test_the_trace_has_a_header_and_one_line_per_fault(traced) -> None:
    lines = Path(traced + ".faults.tsv").read_text().splitlines()
    assert lines[0] == "seq\tpid\tcomm\taddr\tpfn\tkind"
    rows = [ln.split("\t") for ln in lines[1:]]
    assert [r[0] for r in rows] == [str(i) for i in range(len(rows))]
    # 8 do_anonymous_page faults in the parent (pid 1), 2 wp_page_copy in the child (pid 2,
    # fork keeps comm); the child's reads of its copies and of the shared pages take no fault
    assert [(r[1], r[2], r[5]) for r in rows] == [("1", "p", "anon")] * 8 + [("2", "p", "cow-copy")] * 2


def test_every_traced_pfn_is_what_drgn_finds_mapped(traced) -> None:
    from drgn.helpers.linux.mm import follow_pfn
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn

    d = open_drgn(traced + ".vmcore", traced + ".vmlinux")
    rows = json.loads(run("faults", traced, "--json").stdout)
    assert len(rows) == 10 and all(r["addr"].startswith("0x") for r in rows)  # addresses: hex strings
    rows = [r | {"addr": int(r["addr"], 16)} for r in rows]
    for r in rows:
        assert follow_pfn(find_task(d, r["pid"]).mm, r["addr"]).value_() == r["pfn"], r
    parent = {r["addr"]: r["pfn"] for r in rows if r["pid"] == 1}
    child = [r for r in rows if r["pid"] == 2]
    assert all(parent[r["addr"]] != r["pfn"] for r in child)  # copies: new pages


def test_faults_filters_and_text(traced) -> None:
    assert [r["seq"] for r in json.loads(run("faults", traced, "--pid", "2", "--json").stdout)] == [8, 9]
    assert len(json.loads(run("faults", traced + ".vmcore", "--kind", "anon", "--json").stdout)) == 8
    text = run("faults", traced, "--kind", "cow-copy").stdout.splitlines()
    assert text[0].split() == ["SEQ", "PID", "COMM", "ADDRESS", "PFN", "KIND"]
    assert text[-1] == "2 of 10 faults (cow-copy 2)"
    bogus = run("faults", traced, "--kind", "bogus", ok=False)  # not "0 faults": a kind that cannot be
    assert bogus.exit_code == 2 and "is not a fault kind" in bogus.stderr


def _one_line_error(r, *words: str) -> None:
    assert r.exit_code == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmintro: error: "), r.stderr
    assert all(w in err[0] for w in words), err[0]


def test_no_trace_is_a_one_line_error_and_boot_writes_none(tmp_path) -> None:
    _one_line_error(run("faults", str(tmp_path / "nothing"), ok=False), "no fault trace", "nothing.faults.tsv")
    stale = tmp_path / "b.faults.tsv"
    stale.write_text("seq\tpid\tcomm\taddr\tpfn\tkind\n")
    r = run("simulate", "boot", "-o", str(tmp_path / "b"), "--ram", "512M")
    assert len(r.stdout.split()) == 2 and not stale.exists()  # no faults: no trace, the stale one gone
    bad = tmp_path / "x.faults.tsv"
    bad.write_text("seq\tpid\tcomm\taddr\tpfn\tkind\n0\t1\tp\tzz\t5\tanon\n")
    _one_line_error(run("faults", str(tmp_path / "x"), ok=False), "x.faults.tsv:2")
    bad.write_text("hello\n")
    _one_line_error(run("faults", str(tmp_path / "x"), ok=False), "not a fault trace")
