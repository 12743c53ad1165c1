"""``mmintro simulate [SCENARIO] --output NAME``: run a scenario and save its snapshot.

Scenarios are registered by name in :data:`SCENARIOS`; a scenario is a function
``(MachineConfig, progress) -> Kernel`` where ``progress(msg, fraction)`` reports 0..1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import click

from mmintro.cli.snapshot import boot_and_save

__all__ = ["SCENARIOS", "Scenario", "command", "register_scenario"]


class Scenario(NamedTuple):
    name: str
    help: str
    run: Callable  # (MachineConfig, progress) -> Kernel


SCENARIOS: dict[str, Scenario] = {}


def register_scenario(name: str, help: str) -> Callable[[Callable], Callable]:
    """Decorator: make a ``(config, progress) -> Kernel`` function available to ``simulate``."""

    def deco(fn: Callable) -> Callable:
        SCENARIOS[name] = Scenario(name, help, fn)
        return fn

    return deco


@register_scenario("boot", "boot the machine to the buddy allocator (no user activity)")
def _boot(config, progress):
    from mmintro.kernel.machine import boot

    return boot(config, progress=progress)


def _scenario_help() -> str:
    return "\n".join(f"  {s.name:<12} {s.help}" for s in SCENARIOS.values())


@click.command("simulate")
@click.argument("scenario", required=False, default="boot")
@click.option("-o", "--output", required=True, metavar="NAME", help="write NAME.vmcore and NAME.vmlinux")
@click.option("--ram", default="4G", show_default=True, help="RAM size (e.g. 512M, 4G)")
@click.option("--nodes", default=1, show_default=True, type=int, help="NUMA nodes")
@click.option("--cpus", default=2, show_default=True, type=int, help="CPUs")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the simulation's randomness")
@click.option("--gdb-aliases", is_flag=True, help="add virtual-address PT_LOADs so GDB can read globals")
def command(
    scenario: str, output: str, ram: str, nodes: int, cpus: int, seed: int, gdb_aliases: bool
) -> None:
    """Run SCENARIO (default: boot) on a simulated machine and save the snapshot."""
    from mmintro.kernel.config import MachineConfig, parse_size

    sc = SCENARIOS.get(scenario)
    if sc is None:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))}")
    try:
        ram_bytes = parse_size(ram)
    except ValueError:
        raise click.BadParameter(f"{ram!r} is not a size (e.g. 512M, 4G)", param_hint="--ram") from None
    config = MachineConfig(ram=ram_bytes, nodes=nodes, cpus=cpus, seed=seed)
    config.validate()
    core, vml = boot_and_save(config, output, scenario=sc.run, gdb_aliases=gdb_aliases)
    click.echo(f"{core}\n{vml}")


command.help = (command.help or "") + "\n\n\b\nScenarios:\n" + _scenario_help()
