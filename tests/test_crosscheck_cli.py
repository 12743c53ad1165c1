"""``mmintro crosscheck`` reads well: a progress line per row, addresses in hex, the answers in
full in --json (abbreviated in the table, which says so), --only NAME / --only failed, and a
summary line.  Each test runs a few cheap drgn rows on the session's snapshots."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("drgn")

from cli_helpers import run

from mmintro import crosscheck as xc
from mmintro.crosscheck.answers import Addr, answer_json, answer_text
from mmintro.crosscheck.zones import _sample_vaddrs
from mmintro.reader import open_snapshot
from mmintro.reader.helpers import mm as mmh

KMEM_N = "crash kmem -n"
TOTALRAM = "totalram_pages"


def test_progress_lines_on_stderr(default_snapshot: str) -> None:
    """--progress: one line per row on stderr, in order, as each finishes; without it (stderr
    is not a terminal here) stderr stays empty."""
    r = run("crosscheck", default_snapshot, "--only", TOTALRAM, "--only", KMEM_N, "--progress")
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    for i, (line, name) in enumerate(zip(lines, [TOTALRAM, KMEM_N]), 1):
        assert re.fullmatch(rf"\[{i}/2\] {re.escape(name)} \.\.\. agree \(\d+\.\d s\)", line), line
    assert run("crosscheck", default_snapshot, "--only", TOTALRAM).stderr == ""


def test_json_addresses_in_hex(default_snapshot: str) -> None:
    """``crash kmem -n``'s sections (nr, mem_map address, pfn): the address a "0x..." string, the
    struct page of the section's first pfn as mmintro's reader finds it; the counts stay ints."""
    (row,) = json.loads(run("crosscheck", default_snapshot, "--only", KMEM_N, "--json").stdout)
    assert row["status"] == "agree" and row["mmintro"] == row["drgn"]
    prog = open_snapshot(default_snapshot)
    assert len(row["mmintro"]) >= 2
    for nr, mem_map, pfn in row["mmintro"]:
        assert isinstance(nr, int) and isinstance(pfn, int) and pfn == nr << 15
        assert mem_map == f"{mmh.pfn_to_page(prog, pfn).value_():#x}"


def test_json_in_full_table_abbreviated(default_snapshot: str) -> None:
    """follow_phys on ~70 addresses: --json has every one (the address and the physical address
    in hex); the table cuts the answer and says that --json has it in full."""
    (row,) = json.loads(run("crosscheck", default_snapshot, "--only", "follow_phys(init_mm)", "--json").stdout)
    addrs = _sample_vaddrs(open_snapshot(default_snapshot))
    assert [a for a, _phys in row["mmintro"]] == [hex(a) for a in addrs]
    assert all(phys.startswith("0x") for _a, phys in row["mmintro"]) and row["drgn"] == row["mmintro"]
    out = run("crosscheck", default_snapshot, "--only", "follow_phys(init_mm)").stdout
    assert f"'{hex(addrs[0])}'" in out and hex(addrs[-1]) not in out and "..." in out
    assert "(answers cut at 60 characters, differences at 120: --json prints them in full)" in out
    assert len(json.dumps(row["mmintro"])) > 20 * len(addrs)


def test_only_failed_prints_the_rows_that_disagree(default_snapshot: str, monkeypatch) -> None:
    """A reader helper off by one page makes totalram_pages disagree: --only failed prints that
    row alone (table and JSON), the summary still counts both rows, and the exit status is 1."""
    real = mmh.totalram_pages
    monkeypatch.setattr(mmh, "totalram_pages", lambda p: real(p) + 1)
    args = ("crosscheck", default_snapshot, "--only", TOTALRAM, "--only", KMEM_N, "--only", "failed")
    r = run(*args, ok=False)
    assert r.exit_code == 1
    assert TOTALRAM in r.stdout and KMEM_N not in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "2 rows: 1 agree, 1 disagree, 0 n/a"
    r = run(*args, "--json", ok=False)
    (row,) = json.loads(r.stdout)
    total = int(real(open_snapshot(default_snapshot)))
    assert (row["name"], row["status"], row["mmintro"], row["drgn"]) == (TOTALRAM, "disagree", total + 1, total)
    assert row["detail"] == f"{total + 1} != {total}"


@pytest.mark.parametrize("crash", [False, True], ids=["drgn", "crash"])
def test_only_an_unknown_name_is_a_usage_error(default_snapshot: str, crash: bool) -> None:
    """--only NAME that no row has: exit 2, one line naming every row of the mode (before drgn
    or crash is started)."""
    r = run(
        "crosscheck",
        default_snapshot,
        "--only",
        "kmem -i",  # a row of both modes
        "--only",
        "no such row",
        *(["--crash"] if crash else []),
        ok=False,
    )
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("mmintro: error: --only 'no such row' matches no ")
    names = [c.name for c in xc.CRASH_CHECKS] if crash else [n for n, _ in xc.CHECKS + xc.SLOW_CHECKS]
    assert all(n in line for n in names)


def test_summary_line(numa2_snapshot: str) -> None:
    """The last line counts the rows that agree, disagree and compared nothing (saying why)."""
    out = run("crosscheck", numa2_snapshot, "--only", "crash vm", "--only", "pgdat", "--only", TOTALRAM).stdout
    assert out.strip().splitlines()[-1] == "3 rows: 2 agree, 0 disagree, 1 n/a (no user processes in the snapshot)"


def test_answers_render_addresses() -> None:
    """Kernel-half integers, Addr-marked values and values under an address field are hex; counts
    are not; an Addr compares as its int."""
    v = {"start": 4096, "count": 4096, 0xFFFF888000000000: [Addr(0x1000), 7, (True, None)]}
    assert answer_json(v) == {"start": "0x1000", "count": 4096, "0xffff888000000000": ["0x1000", 7, [True, None]]}
    assert answer_text(v) == "{'start': 0x1000, 'count': 4096, 0xffff888000000000: [0x1000, 7, (True, None)]}"
    assert Addr(5) == 5 and [(1, Addr(2))] == [(1, 2)]
