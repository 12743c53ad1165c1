"""The real crash utility (crash 9.0.2, Debian forky, run through forky's own loader) opens the
snapshots and its commands print what mmintro's reports print (mmintro.crosscheck.crash_utility).

crash is fetched with apt on first use and cached (~10 MB); a failure to fetch it is a failure,
not a skip.  The scenarios and the 8 GiB two-node machine run in the slow pass."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from conftest import on_scenario

from mmintro.crosscheck.crash_utility import CRASH_CHECKS, run_crash_crosscheck
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.realkernel.crash import fetch_crash, run_crash
from mmintro.snapshot.writer import save
from mmintro.workload import load_scenario, run_scenario, shipped_scenarios

SCENARIOS = [n for n in shipped_scenarios() if n != "boot"]
# crash on every scenario but the three long pressure runs (a crash session over swap-storm's
# 320M of swapped processes alone takes ~70 s): crash's swap rows compare on the default
# machine's swap file in the default pass, and drgn checks those three (test_scenarios_drgn)
CRASH_SCENARIOS = [n for n in SCENARIOS if n not in ("swap-storm", "thrashing", "page-cache-pressure")]


@pytest.fixture(scope="session")
def crash_tool():
    return fetch_crash()


def _agree(path: str) -> list:
    """Every row agrees; the only rows allowed to compare nothing are the per-process ones on a
    snapshot without processes (or whose processes map no page)."""
    rows = run_crash_crosscheck(path)
    assert len(rows) == len(CRASH_CHECKS)
    bad = [f"{r.name}: {r.detail}" for r in rows if not r.ok]
    assert not bad, "\n".join(bad)
    assert all(r.skipped in ("no user processes", "no mapped page") for r in rows if r.skipped), [
        r.skipped for r in rows
    ]
    return rows


def test_crash_is_crash_9(crash_tool) -> None:
    assert crash_tool.version().startswith("crash 9.")


def test_crash_opens_a_snapshot_quietly(crash_tool, any_snapshot: str) -> None:
    """No start-up message at all (no WARNING, no "cannot ..."), every command answers."""
    cmds = ["sys", "kmem -i", "ps", "log"]
    r = run_crash(crash_tool, any_snapshot + ".vmlinux", any_snapshot + ".vmcore", cmds, timeout=120)
    assert r.error() is None and r.returncode == 0, r.error()
    assert r.preamble.strip() == "" and r.stderr.strip() == "", r.preamble + r.stderr
    assert all(r[c].strip() for c in cmds)
    sys_lines = dict(line.strip().split(": ", 1) for line in r["sys"].splitlines() if ": " in line)
    assert sys_lines["PANIC"] == '"Kernel panic - not syncing: sysrq triggered crash"'
    assert sys_lines["RELEASE"] == "6.18.0-mmintro" and sys_lines["UPTIME"] == "00:01:00"


@pytest.mark.slow  # the bare boot (the default machine with processes runs in the default pass)
def test_crash_agrees_on_the_default_machine(default_snapshot: str) -> None:
    _agree(default_snapshot)


def test_crash_agrees_on_the_default_machines_processes(default_machine: str) -> None:
    """The CLI's default machine: every row, the per-process ones too, compares something."""
    rows = _agree(default_machine)
    assert not any(r.skipped for r in rows), [r.name for r in rows if r.skipped]


@pytest.mark.slow
def test_crash_agrees_on_a_two_node_machine(numa2_snapshot: str) -> None:
    _agree(numa2_snapshot)


@pytest.mark.slow  # a scenario and a crash session: ~6 s (the default machine's processes: below)
def test_crash_agrees_with_processes(tmp_path) -> None:
    """A machine with processes: ps, vm, vm -p, vtop -c, files and mount have something to compare."""
    from mmintro.kernel import inode

    run = run_scenario(load_scenario(shipped_scenarios()["shared-memory"]))
    k = run.kernel
    first = min(k.processes, key=lambda p: p.pid)
    for path in ("/var/log/app.log", "/srv/data/table.db"):  # open files in its fd table
        inode.create_file(k, path, 3 * 4096, task=first.task)
    save(k, tmp_path / "shm")
    rows = _agree(str(tmp_path / "shm"))
    assert not any(r.skipped for r in rows), [r.name for r in rows if r.skipped]
    files = next(r for r in rows if "files PID" in r.name).mmintro  # {pid: [(fd, file, dentry, inode, path)]}
    assert list(files)[0] == first.pid and files[first.pid][0][0] == 0
    assert {"/var/log/app.log", "/srv/data/table.db"} <= {f[4] for f in files[first.pid]}
    out = run_crash(fetch_crash(), tmp_path / "shm.vmlinux", tmp_path / "shm.vmcore", [f"files {first.pid}"])
    assert "/var/log/app.log" in out[f"files {first.pid}"] and "/srv/data/table.db" in out[f"files {first.pid}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", on_scenario(CRASH_SCENARIOS))
def test_crash_agrees_on_every_scenario(scenario_snapshot, name: str) -> None:
    _agree(scenario_snapshot(name)[0])


@pytest.mark.slow
def test_crash_agrees_on_an_8_gib_two_node_machine(tmp_path) -> None:
    k = boot(MachineConfig(ram=8 << 30, nodes=2, cpus=4))
    save(k, tmp_path / "big")
    rows = _agree(str(tmp_path / "big"))
    kmem_n = next(r for r in rows if "kmem -n" in r.name)
    assert kmem_n.ok


def test_vmlinux_without_contents_is_crash_own_error(tmp_path, default_snapshot: str) -> None:
    """A vmlinux without the image's bytes (what snapshots were before crash could read them):
    crash refuses it; every row reports crash's own line, and the CLI says it in one line."""
    from mmintro.snapshot.vmlinux import read_build_id

    core = tmp_path / "bare.vmcore"
    shutil.copy(default_snapshot + ".vmcore", core)
    _rewrite_without_image(default_snapshot + ".vmlinux", tmp_path / "bare.vmlinux")
    assert read_build_id(tmp_path / "bare.vmlinux") == read_build_id(default_snapshot + ".vmlinux")
    rows = run_crash_crosscheck(str(tmp_path / "bare"))
    assert rows and all(not r.ok and "no text and data contents" in r.detail for r in rows), rows[0]
    p = subprocess.run(
        ["mmintro", "crosscheck", str(tmp_path / "bare"), "--crash"], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "no text and data contents" in p.stderr


def _rewrite_without_image(src: str, dst) -> None:
    """The same types, symbols and build ID, without the image sections (NOBITS spans)."""
    from elftools.elf.elffile import ELFFile

    from mmintro.snapshot.vmlinux import Symbol, read_build_id, write_vmlinux
    from mmintro.types import get_types

    syms = []
    with open(src, "rb") as f:
        elf = ELFFile(f)
        for s in elf.get_section_by_name(".symtab").iter_symbols():
            if s.name:
                syms.append(
                    Symbol(
                        s.name, s["st_value"], s["st_size"], "func" if s["st_info"]["type"] == "STT_FUNC" else "object"
                    )
                )
    write_vmlinux(dst, get_types(), syms, read_build_id(src))


def test_a_crash_that_does_not_finish_is_reported_not_waited_on(default_snapshot: str) -> None:
    t = time.monotonic()
    rows = run_crash_crosscheck(default_snapshot, only=["kmem -p"], timeout=0.2)
    assert time.monotonic() - t < 60
    assert rows and not rows[0].ok and "did not finish" in rows[0].detail


def test_vmlinux_carries_the_image_bytes(default_snapshot: str) -> None:
    """Each image section's file bytes are the memory at its load address in the vmcore (pyelftools
    vs mmintro's reader), PT_LOADs have file size = memory size except .bss, and llvm-dwarfdump
    --verify is clean."""
    from elftools.elf.elffile import ELFFile

    from mmintro.reader import open_snapshot

    prog = open_snapshot(default_snapshot)
    with open(default_snapshot + ".vmlinux", "rb") as f:
        elf = ELFFile(f)
        names = [s.name for s in elf.iter_sections() if s["sh_flags"] & 2]  # SHF_ALLOC
        assert {".text", ".rodata", ".data", ".init.text", ".data..percpu", ".bss"} <= set(names)
        for name in (".rodata", ".data", ".data..percpu"):
            sec = elf.get_section_by_name(name)
            assert sec["sh_type"] == "SHT_PROGBITS" and sec.data_size == sec["sh_size"]
            assert sec.data() == prog.read(sec["sh_addr"], sec["sh_size"]), name
        loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        assert all(seg["p_filesz"] in (seg["p_memsz"], 0) for seg in loads)
        assert all(seg["p_offset"] % 4096 == seg["p_vaddr"] % 4096 for seg in loads)
        banner = elf.get_section_by_name(".rodata")
        sym = prog.symbol("linux_banner")
        text = banner.data()[sym.address - banner["sh_addr"] :][: sym.size]
        assert text.startswith(b"Linux version 6.18.0-mmintro ") and text.endswith(b"\n\0")
    exe = shutil.which("llvm-dwarfdump")
    assert exe, "llvm-dwarfdump is one of the project's oracles"
    r = subprocess.run([exe, "--verify", default_snapshot + ".vmlinux"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "No errors." in r.stdout, r.stdout[-2000:]


@pytest.mark.slow
def test_crosscheck_crash_takes_a_relative_path(tmp_path, default_snapshot: str) -> None:
    """``mmintro crosscheck out/NAME --crash`` from the directory holding out/ (crash itself runs
    elsewhere)."""
    (tmp_path / "out").mkdir()
    for suffix in (".vmcore", ".vmlinux"):
        shutil.copy(default_snapshot + suffix, tmp_path / "out" / ("m" + suffix))
    p = subprocess.run(
        ["mmintro", "crosscheck", "out/m", "--crash", "--only", "kmem -i"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert p.stdout.strip().splitlines()[-1] == "1 row: 1 agree, 0 disagree, 0 n/a"
