"""drgn's `crash ps` runs on a snapshot with processes (it needs task_state_array)."""

from __future__ import annotations

import pytest

pytest.importorskip("drgn")

from mmintro.crosscheck import crash, open_drgn
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.fork import spawn_process
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save


def test_crash_ps_lists_idle_tasks_and_processes(tmp_path) -> None:
    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    procs = [spawn_process(k, comm) for comm in ("bash", "sshd")]
    core, vml = save(k, tmp_path / "ps")
    lines = crash(open_drgn(str(core), str(vml)), "ps").splitlines()
    assert lines[0].split()[:4] == ["PID", "PPID", "CPU", "TASK"]
    rows = {line.split()[-1]: line.split() for line in lines[1:]}
    assert "[swapper/0]" in rows and "[swapper/1]" in rows
    for p in procs:
        assert rows[p.comm][0] == str(p.pid) and rows[p.comm][4] in "RSDI"
