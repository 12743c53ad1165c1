"""``mmintro simulate [SCENARIO] --output NAME``: run a scenario and save its snapshot.

Scenarios are registered by name in :data:`SCENARIOS`; a scenario is a function
``(MachineConfig, progress) -> Kernel`` where ``progress(msg, fraction)`` reports 0..1.
The scenario files shipped in ``mmintro/scenarios/*.toml`` are registered by file name
(see :mod:`mmintro.workload`), and ``SCENARIO`` may also be the path of a scenario file.
A file's ``[machine]`` values apply unless ``--ram``/``--nodes``/``--cpus``/``--seed`` say
otherwise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import click

from mmintro.cli.snapshot import boot_and_save

__all__ = ["SCENARIOS", "Scenario", "command", "register_scenario"]

# Where the shipped scenario files live (mmintro.workload.SCENARIO_DIR, without importing it:
# that module loads the type data, which every mmintro command would then pay for).
_SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class Scenario(NamedTuple):
    name: str
    help: str
    run: Callable  # (MachineConfig, progress) -> Kernel
    path: Path | None = None  # the scenario file, for file scenarios


SCENARIOS: dict[str, Scenario] = {}


def register_scenario(name: str, help: str) -> Callable[[Callable], Callable]:
    """Decorator: make a ``(config, progress) -> Kernel`` function available to ``simulate``."""

    def deco(fn: Callable) -> Callable:
        SCENARIOS[name] = Scenario(name, help, fn)
        return fn

    return deco


def _run_file(path: Path, config: Any, progress: Callable[[str, float], None]) -> Any:
    """Run a scenario file on ``config`` as given; returns the kernel."""
    from mmintro.workload import load_scenario, run_scenario

    return run_scenario(load_scenario(path), config, progress).kernel


def register_scenario_file(path: Path) -> None:
    """Register a scenario file under its stem, with its ``[scenario] help``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli, else no help text (running it says why)
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            tomllib = None  # type: ignore[assignment]
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8")) if tomllib else {}
        help_text = str(doc.get("scenario", {}).get("help", ""))
    except (OSError, ValueError, AttributeError) as e:  # reported in full when it is run
        help_text = f"(unreadable: {type(e).__name__})"
    SCENARIOS[path.stem] = Scenario(path.stem, help_text, functools.partial(_run_file, path), path)


@register_scenario("boot", "boot the machine to the buddy allocator (no user activity)")
def _boot(config, progress):
    from mmintro.kernel.machine import boot

    return boot(config, progress=progress)


for _path in sorted(_SCENARIO_DIR.glob("*.toml")):
    register_scenario_file(_path)


def _console() -> Any:
    """stderr for the progress bar; quiet when stderr is not a terminal, where a transient
    bar would leave an empty line before any error message."""
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, quiet=True)


def _scenario_help() -> str:
    return "\n".join(f"  {s.name:<15} {s.help}" for s in SCENARIOS.values())


@click.command("simulate")
@click.argument("scenario", required=False, default="default")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="NAME",
    help="write NAME.vmcore and NAME.vmlinux (and NAME.faults.tsv, the fault trace, when faults happened; "
    "NAME-STEP.vmcore/.vmlinux for each snapshot = STEP step of the scenario)",
)
@click.option("--ram", default=None, help="RAM size (e.g. 512M, 4G)  [default: the scenario's, else 4G]")
@click.option("--nodes", default=None, type=int, help="NUMA nodes  [default: the scenario's, else 1]")
@click.option("--cpus", default=None, type=int, help="CPUs  [default: the scenario's, else 2]")
@click.option(
    "--seed", default=None, type=int, help="seed of the simulation's randomness  [default: the scenario's, else 0]"
)
@click.option("--gdb-aliases", is_flag=True, help="add virtual-address PT_LOADs so GDB can read globals")
@click.option(
    "--format",
    "core_format",
    type=click.Choice(["elf", "kdump"]),
    default="elf",
    show_default=True,
    help="NAME.vmcore as an ELF core or makedumpfile's kdump-compressed file (zlib; crash and drgn read both)",
)
@click.option(
    "--exclude-free",
    is_flag=True,
    help="with --format kdump: leave the free pages out, as makedumpfile -d 17 does (a big machine's "
    "snapshot then no longer grows with free memory; reading a free page's contents fails)",
)
@click.option(
    "--e820",
    "e820_file",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="the machine's memory map: dmesg's 'BIOS-e820:' lines or /sys/firmware/memmap's 'START END TYPE'",
)
@click.option(
    "--like",
    "like",
    default=None,
    metavar="DUMP",
    type=click.Path(dir_okay=False),
    help="the machine of a real kernel's dump (its e820 table, CPUs and nodes); needs --kernel",
)
@click.option("--kernel", "like_kernel", default=None, metavar="VMLINUZ", help="with --like: the dump's kernel image")
@click.option(
    "--cmdline",
    default=None,
    metavar="TEXT",
    help="the kernel command line: mem=, memmap=, kernelcore=, movablecore=, hugepagesz=, hugepages=, "
    "default_hugepagesz=, transparent_hugepage=, sysctl.vm.X=  [default: with --like, the dump's]",
)
def command(
    scenario: str,
    output: str,
    ram: str | None,
    nodes: int | None,
    cpus: int | None,
    seed: int | None,
    gdb_aliases: bool,
    core_format: str,
    e820_file: str | None,
    like: str | None,
    like_kernel: str | None,
    cmdline: str | None,
    exclude_free: bool = False,
) -> None:
    """Run SCENARIO (default: default, the built-in default machine) on a simulated machine and
    save the snapshot.

    SCENARIO is a name below or the path of a scenario file (TOML, see mmintro/scenarios/);
    ``mmintro scenarios`` lists them and ``mmintro scenarios show NAME`` says what each shows.
    A scenario whose expectation does not hold exits 1 with one line naming the step, and
    writes no snapshot (nor the NAME-STEP pairs of its ``snapshot = STEP`` steps: they are
    removed).  When the run took page faults, the simulator's fault log is written beside the
    snapshot as NAME.faults.tsv (read it with ``mmintro faults NAME``)."""
    from mmintro.kernel.config import parse_size

    if gdb_aliases and core_format != "elf":
        raise click.UsageError("--gdb-aliases needs --format elf: GDB cannot read a kdump-compressed vmcore")
    if exclude_free and core_format != "kdump":
        raise click.UsageError("--exclude-free needs --format kdump: an ELF core cannot mark pages filtered")
    if os.path.isdir(output):  # NAME.vmcore would land beside the directory, not in it
        raise click.BadParameter(
            f"{output!r} is a directory; NAME names the files NAME.vmcore and NAME.vmlinux "
            f"(e.g. {os.path.join(output, 'snap')})",
            param_hint="--output",
        )
    sc = SCENARIOS.get(scenario)
    path = sc.path if sc is not None else None
    if sc is None:
        if not (scenario.endswith(".toml") or os.sep in scenario or os.path.exists(scenario)):
            raise ValueError(
                f"unknown scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))} (or the path of a scenario file)"
            )
        path = Path(scenario)
    try:
        ram_bytes = parse_size(ram) if ram is not None else None
    except ValueError:
        raise click.BadParameter(f"{ram!r} is not a size (e.g. 512M, 4G)", param_hint="--ram") from None
    overrides = {"ram": ram_bytes, "nodes": nodes, "cpus": cpus, "seed": seed, **_machine(e820_file, like, like_kernel)}
    if cmdline is not None:
        overrides["cmdline"] = cmdline
    if (e820_file or like) and ram is not None:
        raise click.UsageError("--ram goes without --e820/--like: the memory map says how much RAM there is")
    if path is None:  # a Python scenario
        from mmintro.kernel.config import MachineConfig

        config = MachineConfig(**{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        kernels: list[Any] = []

        def run_py(cfg: Any, progress: Callable[[str, float], None]) -> Any:
            kernels.append(sc.run(cfg, progress))
            return kernels[-1]

        core, vml = boot_and_save(
            config,
            output,
            scenario=run_py,
            gdb_aliases=gdb_aliases,
            core_format=core_format,
            console=_console(),
            exclude_free=exclude_free,
        )
        click.echo(f"{core}\n{vml}")
        _write_trace(kernels, output)
        return
    from mmintro.workload import load_scenario, run_scenario

    wsc = load_scenario(path)
    config = wsc.config(**overrides)
    config.validate()
    wsc.check(config)
    reports = []
    kernels = []
    partway: list[Path] = []

    def snapshot(name: str, kernel: Any) -> tuple[Path, Path]:
        """A ``snapshot = NAME`` step: OUTPUT-NAME.vmcore/.vmlinux, written as the final pair
        is, from a copy of the machine (the run goes on from the state before the crash)."""
        from mmintro.snapshot.writer import save_unchanged, snapshot_paths

        stem = snapshot_paths(output)[0].with_suffix("")
        paths = save_unchanged(
            kernel,
            stem.with_name(f"{stem.name}-{name}"),
            gdb_aliases=gdb_aliases,
            core_format=core_format,
            exclude_free=exclude_free,
        )
        partway.extend(paths)
        return paths

    def run(cfg: Any, progress: Callable[[str, float], None]) -> Any:
        r = run_scenario(wsc, cfg, progress, snapshot=snapshot)
        reports.extend(r.reports)
        kernels.append(r.kernel)
        return r.kernel

    try:
        core, vml = boot_and_save(
            config,
            output,
            scenario=run,
            gdb_aliases=gdb_aliases,
            core_format=core_format,
            console=_console(),
            exclude_free=exclude_free,
        )
    except BaseException:  # a failed run leaves no snapshot, not even the part-way ones
        for p in partway:
            p.unlink(missing_ok=True)
        raise
    for rep in reports:
        click.echo(f"{wsc.name}: {rep.index:>2} {rep.text}", err=True)
    for p in partway:  # the part-way snapshots (snapshot = NAME steps), in the order written
        click.echo(str(p))
    click.echo(f"{core}\n{vml}")
    _write_trace(kernels, output)


def _machine(e820_file: str | None, like: str | None, like_kernel: str | None) -> dict[str, Any]:
    """MachineConfig fields from --e820 FILE or --like DUMP --kernel VMLINUZ (one line on error)."""
    from mmintro.kernel.e820 import E820Error, machine_of_dump, parse_e820

    if e820_file and like:
        raise click.UsageError("--e820 and --like both give the memory map: use one")
    if like_kernel and not like:
        raise click.UsageError("--kernel goes with --like DUMP")
    if e820_file:
        try:
            text = Path(e820_file).read_text(errors="replace")
        except OSError as e:
            raise click.BadParameter(f"{e820_file}: {e.strerror}", param_hint="--e820") from None
        try:
            return {"e820": tuple(parse_e820(text, e820_file))}
        except E820Error as e:
            raise click.ClickException(str(e)) from None
    if like:
        if not like_kernel:
            raise click.UsageError("--like DUMP needs --kernel VMLINUZ (the dump's kernel image, for its types)")
        from mmintro.kernel.cmdline import command_line_of_dump
        from mmintro.reader.dump import open_dump

        try:
            prog = open_dump(like, like_kernel)
            found = {**machine_of_dump(prog), "cmdline": command_line_of_dump(prog)}
        except (E820Error, ValueError) as e:
            raise click.ClickException(f"{like}: {e}") from None
        return {k: v for k, v in found.items() if v is not None}
    return {}


def _write_trace(kernels: list[Any], output: str) -> None:
    """NAME.faults.tsv beside the snapshot when the run took page faults (the simulator's
    fault log, not part of the snapshot; ``mmintro faults NAME`` reads it); a stale trace
    of an earlier run under the same NAME is removed."""
    from mmintro.cli.faults import trace_path, write_fault_trace

    path = write_fault_trace(kernels[-1], output) if kernels else None
    if path is not None:
        click.echo(str(path))
    else:
        trace_path(output).unlink(missing_ok=True)


command.help = (command.help or "") + "\n\n\b\nScenarios:\n" + _scenario_help()
