"""drgn's `crash ps` runs on a snapshot with processes (it needs task_state_array)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest

drgn = pytest.importorskip("drgn")
import drgn.commands._crash  # noqa: E402,F401

from mmintro.kernel.config import MachineConfig  # noqa: E402
from mmintro.kernel.fork import spawn_process  # noqa: E402
from mmintro.kernel.machine import boot  # noqa: E402
from mmintro.snapshot.writer import save  # noqa: E402


def test_crash_ps_lists_idle_tasks_and_processes(tmp_path) -> None:
    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    procs = [spawn_process(k, comm) for comm in ("bash", "sshd")]
    core, vml = save(k, tmp_path / "ps")
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(vml)])
    out = io.StringIO()
    with redirect_stdout(out):
        drgn.commands.run_command(prog, "crash ps")
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["PID", "PPID", "CPU", "TASK"]
    rows = {line.split()[-1]: line.split() for line in lines[1:]}
    assert "[swapper/0]" in rows and "[swapper/1]" in rows
    for p in procs:
        assert rows[p.comm][0] == str(p.pid) and rows[p.comm][4] in "RSDI"
