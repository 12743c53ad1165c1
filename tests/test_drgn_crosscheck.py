"""Real drgn is the oracle: every crosscheck row must agree on the default and 2-node machines."""

from __future__ import annotations

import pytest

drgn = pytest.importorskip("drgn")

from mmintro import crosscheck as xc
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import snapshot_paths

# Rows that cannot pass on any mmintro snapshot yet, with the reason.  Their tests are
# strict xfails: once the cause is fixed they fail until the entry is removed.
KNOWN_GAPS: dict[str, str] = {}
# rows whose drgn side walks every page or object (~5 s): the slow pass runs them
SLOW_ROWS = {"allocated objects of every cache: columnar walk = drgn"}


def row_params(checks) -> list:
    """pytest params for crosscheck rows, the known gaps marked as strict xfails."""
    return [
        pytest.param(
            n,
            f,
            id=n,
            marks=([pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[n])] if n in KNOWN_GAPS else [])
            + ([pytest.mark.slow] if n in SLOW_ROWS else []),
        )
        for n, f in checks
    ]


@pytest.fixture(scope="module")
def progs(request: pytest.FixtureRequest):
    cache = {}

    def get(path: str):
        if path not in cache:
            core, vmlinux = snapshot_paths(path)
            cache[path] = (open_snapshot(path), xc.open_drgn(str(core), str(vmlinux)))
        return cache[path]

    return get


# the default machine (processes, page cache, swap: every row has something to compare) and, in
# the slow pass, a bare 2-node boot
SNAPSHOTS = [
    pytest.param("default_machine", id="default"),
    pytest.param("numa2_snapshot", id="numa2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("snapshot", SNAPSHOTS)
@pytest.mark.parametrize("name,check", row_params(xc.CHECKS))
def test_crosscheck_row_agrees_with_drgn(request, snapshot: str, progs, name: str, check) -> None:
    prog, dprog = progs(request.getfixturevalue(snapshot))
    mine, theirs = check(prog, dprog)
    assert mine == theirs, xc._diff(mine, theirs)
    if mine in ([], ()) and getattr(check, "needs", None):
        pytest.skip(f"the snapshot has no {check.needs}")  # the row runs on the process scenarios
    # A check comparing two empty answers proves nothing.
    assert mine not in ([], (), None, 0, ([], []))


def test_drgn_opens_pair_by_build_id(default_snapshot: str) -> None:
    """`drgn -c NAME.vmcore -s NAME.vmlinux`: the debug file matches the core's BUILD-ID."""
    core, vmlinux = snapshot_paths(default_snapshot)
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(vmlinux)])
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    assert prog["node_data"][0].node_zones[1].spanned_pages.value_() > 0
    assert prog.main_module().debug_file_path == str(vmlinux)


def test_drgn_walks_page_tables_not_segments(default_snapshot: str) -> None:
    """The core has physical-only segments, so drgn can read a direct-map address only by
    walking swapper_pg_dir: an address in a hole of the direct map must fault in drgn."""
    core, vmlinux = snapshot_paths(default_snapshot)
    dprog = xc.open_drgn(str(core), str(vmlinux))
    pob = dprog["page_offset_base"].value_()
    with pytest.raises(drgn.FaultError):
        dprog.read(pob + 0xC0000000 + 0x10000000, 8)  # inside the PCI hole: never mapped
    with pytest.raises(drgn.FaultError):
        dprog.read(pob, 8)  # pfn 0 is reserved e820: phys_pte_init leaves it unmapped


def test_crosscheck_detects_a_wrong_answer(default_snapshot: str, progs, monkeypatch) -> None:
    """The comparison can fail: a reader helper that is off by one page is caught."""
    from mmintro.reader.helpers import mm as mmh

    prog, dprog = progs(default_snapshot)
    real = mmh.pfn_to_page
    monkeypatch.setattr(mmh, "pfn_to_page", lambda p, pfn: real(p, pfn + 1))
    mine, theirs = xc.c_pfn_to_page(prog, dprog)
    assert mine != theirs


@pytest.mark.slow  # every row again in one run (~8 s); each row is also its own test below
def test_run_crosscheck_reports_every_row(numa2_snapshot: str) -> None:
    rows = xc.run_crosscheck(numa2_snapshot)
    assert [r.name for r in rows] == [n for n, _ in xc.CHECKS]
    assert all(r.ok for r in rows if r.name not in KNOWN_GAPS), [(r.name, r.detail) for r in rows if not r.ok]
    assert not any(r.ok for r in rows if r.name in KNOWN_GAPS), "a known gap passes: remove it from KNOWN_GAPS"


def test_slow_checks_run_only_when_named(default_snapshot: str, monkeypatch) -> None:
    """SLOW_CHECKS (a drgn loop over every struct page) stay out of the default run and run
    when ``only`` names them."""
    monkeypatch.setattr(xc, "SLOW_CHECKS", [("slow census stand-in", lambda p, d: (1, 1))])
    assert "slow census stand-in" not in [r.name for r in xc.run_crosscheck(default_snapshot, ["totalram"])]
    rows = xc.run_crosscheck(default_snapshot, ["census"])
    assert [(r.name, r.ok) for r in rows] == [("slow census stand-in", True)]


def test_rows_with_nothing_to_compare_are_not_counted_as_passed(numa2_snapshot: str) -> None:
    """On a boot snapshot (no user process, no cached file page) the process rows compare two
    empty answers: run_crosscheck marks them not applicable, saying what is missing, and the
    CLI's summary does not count them as passed."""
    from cli_helpers import run

    rows = xc.run_crosscheck(numa2_snapshot, ["crash vm", "follow_phys/follow_page on user", "for_each_task"])
    by = {r.name: r for r in rows}
    assert by["crash vm PID = mm, pgd, RSS, TOTAL_VM, VMAs"].skipped == "no user processes in the snapshot"
    assert not by["for_each_task: pids, comms, tasks"].skipped  # the idle tasks are something
    out = run("crosscheck", numa2_snapshot, "--only", "crash vm", "--only", "for_each_task").stdout
    assert "n/a" in out
    assert out.strip().splitlines()[-1] == "2 rows: 1 agree, 0 disagree, 1 n/a (no user processes in the snapshot)"
