"""``mmintro dmesg`` on a snapshot: the simulated boot's log as drgn's get_dmesg() and crash's
``log`` print it."""

from __future__ import annotations

from cli_helpers import run


def test_dmesg_of_a_snapshot_is_drgns_and_crashs(cli_snapshot):
    from drgn.helpers.linux.printk import get_dmesg

    from mmintro.crosscheck import open_drgn
    from mmintro.realkernel.crash import fetch_crash, run_crash
    from mmintro.snapshot.writer import snapshot_paths

    core, vml = snapshot_paths(cli_snapshot)
    ours = run("dmesg", cli_snapshot).stdout
    assert "Memory: " in ours and ours.startswith("[    0.000000] Linux version")
    assert ours == get_dmesg(open_drgn(str(core), str(vml))).decode()
    log = run_crash(fetch_crash(), str(vml), str(core), ["log"]).outputs["log"]
    assert [line for line in log.splitlines() if line.startswith("[")] == ours.splitlines()
