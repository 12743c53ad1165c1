"""``mmintro scenarios`` and the scenario headers it reads; the default machine (the default
scenario): what the CLI's default is, and that every command a header lists runs on its
scenario's snapshot (the default machine's in the default run, the others marked slow)."""

from __future__ import annotations

import filecmp
import shlex

import pytest
from cli_helpers import run
from conftest import on_scenario

from mmintro.cli.main import cli
from mmintro.cli.scenarios import parse_header, read_header
from mmintro.cli.simulate import SCENARIOS
from mmintro.cli.simulate import command as simulate
from mmintro.cli.snapshot import DEFAULT_SCENARIO, default_snapshot
from mmintro.kernel.config import MachineConfig
from mmintro.workload import load_scenario, shipped_scenarios

SHIPPED = shipped_scenarios()
# Scenarios whose run takes more than a few seconds (measured on 2 busy cores: 3-55 s); the
# default machine's (about a second) is the one the default test run builds.
FAST = ("default",)


def test_the_default_scenario_is_the_default_machine() -> None:
    """`mmintro simulate` without a SCENARIO runs scenarios/default.toml, on the machine the
    cached default snapshot is keyed by (MachineConfig's defaults: 4 GiB, 1 node, 2 CPUs)."""
    param = next(p for p in simulate.params if p.name == "scenario")
    assert param.default == "default" and SCENARIOS["default"].path == DEFAULT_SCENARIO == SHIPPED["default"]
    assert load_scenario(DEFAULT_SCENARIO).config() == MachineConfig()


def test_the_cached_default_machine_is_the_default_scenario(tmp_path, monkeypatch, default_machine) -> None:
    """A report without SNAPSHOT reads the default scenario's snapshot, byte for byte the one
    the scenario writes (the simulation is deterministic by seed)."""
    monkeypatch.setenv("MMINTRO_CACHE", str(tmp_path))
    stem = default_snapshot()
    for suffix in (".vmcore", ".vmlinux"):
        assert filecmp.cmp(f"{stem}{suffix}", default_machine + suffix, shallow=False), suffix
    ps = run("ps").stdout
    assert [line.split()[-1] for line in ps.splitlines()[3:]] == ["init", "backup", "postgres", "postgres", "java"]


@pytest.mark.slow  # one more run of the default scenario (~3 s)
def test_simulate_without_a_scenario_writes_the_default_machine(tmp_path, default_machine) -> None:
    run("simulate", "--output", str(tmp_path / "d"))
    for suffix in (".vmcore", ".vmlinux"):
        assert filecmp.cmp(f"{tmp_path / 'd'}{suffix}", default_machine + suffix, shallow=False), suffix


def test_the_default_machine_has_something_to_see(default_machine) -> None:
    """Every kind of memory the README promises: processes with anonymous, file-backed, shmem,
    THP and hugetlb memory, CoW, page cache (dirty too), slab, vmalloc, and swapped-out pages."""
    meminfo = dict(line.split(":", 1) for line in run("meminfo", default_machine).stdout.splitlines())
    kb = {k: int(v.split()[0]) for k, v in meminfo.items()}
    assert kb["AnonHugePages"] == 4096 and kb["HugePages_Total"] == 4 and kb["HugePages_Free"] == 2
    assert kb["SwapTotal"] - kb["SwapFree"] > 0 and kb["SwapCached"] > 0
    assert kb["Shmem"] == 1024 and kb["Dirty"] == 256 and kb["Cached"] > kb["Shmem"] and kb["Mapped"] > 0
    assert kb["AnonPages"] > 0 and kb["VmallocUsed"] > 0 and kb["SUnreclaim"] > 0
    status = dict(line.split(":", 1) for line in run("status", default_machine, "2").stdout.splitlines())
    assert int(status["VmSwap"].split()[0]) > 0
    rollup = dict(line.split(":", 1) for line in run("smaps-rollup", default_machine, "4").stdout.splitlines()[1:])
    assert int(rollup["Pss_Anon"].split()[0]) < int(rollup["Anonymous"].split()[0])  # the CoW-shared heap
    assert "dentry" in run("slabinfo", default_machine).stdout


@pytest.mark.slow  # real drgn over every row (~10-25 s)
def test_crosscheck_has_nothing_not_applicable_on_the_default_machine(default_machine) -> None:
    """Every drgn row compares something on the default machine (none "n/a"), and agrees."""
    pytest.importorskip("drgn")
    from mmintro.crosscheck import run_crosscheck

    results = run_crosscheck(default_machine)
    assert all(r.ok for r in results), [f"{r.name}: {r.detail}" for r in results if not r.ok]
    assert not [r.name for r in results if r.skipped]


# -- headers ---------------------------------------------------------------------------------
def test_parse_header_convention() -> None:
    h = parse_header(
        "# demo: what it shows.\n#\n# More text.\n#\n# Look at:\n"
        "#   mmintro ps SNAP          the processes\n"
        "#   mmintro vtop SNAP --pid 1 0x1000\n"
        "#                            a PMD leaf,\n"
        "#                            continued\n"
        "#   drgn: for_each_task(prog)\n"
        "#         continued hint\n"
        "#\n# After the list.\n\n[scenario]\n# not the header\n"
    )
    assert h.name == "demo" and h.text == "demo: what it shows.\n\nMore text.\n\nAfter the list."
    assert [tuple(e) for e in h.look_at] == [
        ("mmintro ps SNAP", "the processes"),
        ("mmintro vtop SNAP --pid 1 0x1000", "a PMD leaf, continued"),
        (None, "drgn: for_each_task(prog) continued hint"),
    ]
    assert h.look_at[1].argv("out/x y") == ["vtop", "out/x y", "--pid", "1", "0x1000"]
    with pytest.raises(ValueError):
        h.look_at[2].argv("x")
    assert parse_header("[machine]\n") == ("", "", [])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_scenario_has_a_header_with_commands(name: str) -> None:
    """Its name, a description, and commands (of mmintro, on SNAP) to look at its snapshot with."""
    h = read_header(SHIPPED[name])
    assert h.name == name and len(h.text.splitlines()) >= 3
    commands = [e for e in h.look_at if e.command]
    assert len(commands) >= 3, h.look_at
    for e in commands:
        argv = e.argv("SNAPSHOT")
        snap = [w for w in argv if w == "SNAPSHOT" or w.startswith("SNAPSHOT-")]  # SNAP-NAME: a part-way one
        assert argv[0] in cli.commands and snap, e.command
        assert e.notice, f"{e.command}: nothing said about what to notice"
        ctx = cli.commands[argv[0]].make_context(argv[0], argv[1:])  # the arguments parse
        values = [w for v in ctx.params.values() for w in (v if isinstance(v, tuple) else (v,))]
        assert set(snap) <= set(values), e.command
    assert all(e.notice.split(":")[0] in ("drgn", "crash") for e in h.look_at if e.command is None)


# -- mmintro scenarios -----------------------------------------------------------------------
def test_scenarios_lists_every_scenario_with_its_summary() -> None:
    out = run("scenarios").stdout.splitlines()
    assert [line.split()[0] for line in out] == list(SCENARIOS)
    for line in out:
        name, summary = line.split(None, 1)
        assert summary == SCENARIOS[name].help
    assert set(SHIPPED) | {"boot"} == set(SCENARIOS)


def test_scenarios_show_prints_the_header_and_runnable_commands() -> None:
    out = run("scenarios", "show", "fork-cow").stdout
    h = read_header(SHIPPED["fork-cow"])
    assert out.startswith(
        f"{SHIPPED['fork-cow']}\n\n{h.text}\n\nRun it:\n  mmintro simulate fork-cow --output out/fork-cow\n"
    )
    listed = " ".join(out.split("\nLook at:\n", 1)[1].split())  # wrapped to 100 columns
    entries = [shlex.join(["mmintro", *e.argv("out/fork-cow")]) + " " + e.notice for e in h.look_at if e.command]
    entries += [e.notice for e in h.look_at if e.command is None]
    assert listed == " ".join(" ".join(entries).split())
    assert "mmintro smaps-rollup /tmp/f 1 " in run("scenarios", "show", "fork-cow", "-o", "/tmp/f").stdout


def test_scenarios_show_a_file_boot_and_an_unknown_name(tmp_path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text("# mine: a test.\n#\n# Look at:\n#   mmintro meminfo SNAP   MemFree\n\n[machine]\nram = '1G'\n")
    out = run("scenarios", "show", str(f)).stdout
    assert f"mmintro simulate {f} --output out/mine" in out and "  mmintro meminfo out/mine  MemFree" in out
    assert "no scenario file" in run("scenarios", "show", "boot").stdout
    r = run("scenarios", "show", "nope", ok=False)
    assert r.exit_code == 2 and "unknown scenario 'nope'" in r.stderr and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    f.write_bytes(b"# \xff\n")
    r = run("scenarios", "show", str(f), ok=False)
    assert r.exit_code == 1 and r.stderr.startswith("mmintro: error: ") and "UTF-8" in r.stderr


def test_help_has_examples() -> None:
    for args in ([], ["scenarios"], ["scenarios", "show"]):
        out = run(*args, "--help").stdout
        assert "Examples:" in out and "mmintro scenarios" in out, args


# -- the listed commands run --------------------------------------------------------------------
def _run_look_at(name: str, snapshot: str) -> None:
    for e in read_header(SHIPPED[name]).look_at:
        if e.command:
            r = run(*e.argv(snapshot))
            assert r.stdout.strip(), e.command


def test_the_default_machines_commands_run(default_machine) -> None:
    _run_look_at("default", default_machine)


@pytest.mark.slow  # each builds its scenario (3-55 s) and runs its commands
@pytest.mark.parametrize("name", on_scenario(sorted(n for n in SHIPPED if n not in FAST)))
def test_every_scenarios_commands_run(name: str, scenario_snapshot) -> None:
    _run_look_at(name, scenario_snapshot(name)[0])


@pytest.mark.slow  # two runs of the default scenario on other machines (~3 s each)
def test_the_default_scenario_runs_on_the_machine_the_options_describe(tmp_path) -> None:
    """--nodes/--cpus/--ram and --cmdline change the machine the default scenario runs on; its
    expectations (swapped-out pages, a pool of 4 hugetlb pages -- vm.nr_hugepages = 4 overrides
    the command line's hugepages=8 -- 2 of them used, dirty page cache) hold on each."""
    run("simulate", "-o", str(tmp_path / "n2"), "--nodes", "2", "--cpus", "2", "--ram", "1G")
    assert run("zoneinfo", str(tmp_path / "n2")).stdout.count("Node 1, zone") == 5
    run("simulate", "-o", str(tmp_path / "h8"), "--cmdline", "hugepages=8")
    meminfo = run("meminfo", str(tmp_path / "h8")).stdout
    assert "HugePages_Total:       4\n" in meminfo and "HugePages_Free:        2\n" in meminfo
