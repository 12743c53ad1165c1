"""Finding the snapshot a report reads: the one named on the command line, or the built-in
default machine, booted once and cached on disk.

The default machine is the ``default`` scenario (``mmintro/scenarios/default.toml``: a 4 GiB
machine with a few processes, page cache, slab, vmalloc, huge pages and swap), what
``mmintro simulate --output NAME`` writes without a SCENARIO.  The cache lives in
``$MMINTRO_CACHE`` (else ``$XDG_CACHE_HOME/mmintro``, else ``~/.cache/mmintro``) as
``default-<key>.vmcore``/``.vmlinux``, where the key hashes the package version, the default
MachineConfig, the scenario file and the source of everything that shapes the snapshot's
bytes (simulator, workload driver, snapshot writer, type data), so a changed simulator or
scenario boots anew.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mmintro.cache import cache_dir

if TYPE_CHECKING:  # (imported when used: `mmintro --help` must not load numpy, rich and the reader)
    from rich.console import Console

    from mmintro.reader import Program

__all__ = ["boot_and_save", "cache_dir", "default_snapshot", "kernel_options", "load", "snapshot_argument"]

_SHAPING_PACKAGES = ("kernel", "snapshot", "types", "arch", "workload")  # a package or a module

# The default machine's scenario (mmintro.workload.SCENARIO_DIR, without importing it).
DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "default.toml"


def _version() -> str:
    try:
        from importlib import metadata

        return metadata.version("mmintro")
    except metadata.PackageNotFoundError:
        return "unknown"


def _cache_key(config: Any) -> str:
    h = hashlib.sha256()
    h.update(_version().encode())
    h.update(repr(config).encode())
    root = Path(__file__).resolve().parent.parent
    for pkg in _SHAPING_PACKAGES:
        module = root / f"{pkg}.py"
        files = [module] if module.is_file() else []
        for f in files + sorted((root / pkg).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".gz", ".h", ".json"):
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    h.update(DEFAULT_SCENARIO.read_bytes())
    return h.hexdigest()[:16]


def boot_and_save(
    config: Any,
    name: str | os.PathLike,
    scenario: Callable[..., Any] | None = None,
    gdb_aliases: bool = False,
    console: Console | None = None,
    core_format: str = "elf",
    exclude_free: bool = False,
) -> tuple[Path, Path]:
    """Boot (or run ``scenario(config, progress)``) with a progress bar on stderr and save the
    snapshot as NAME.vmcore + NAME.vmlinux (``exclude_free``: a kdump file without the free
    pages)."""
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save

    run = scenario or (lambda cfg, progress: boot(cfg, progress=progress))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<52}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("boot", total=1.0)

        def progress(msg: str, fraction: float) -> None:
            bar.update(task, description=msg, completed=0.8 * fraction)

        kernel = run(config, progress)
        bar.update(task, description=f"save {os.fspath(name)}.vmcore/.vmlinux", completed=0.8)
        paths = save(kernel, name, gdb_aliases=gdb_aliases, core_format=core_format, exclude_free=exclude_free)
        bar.update(task, completed=1.0)
    return paths


def run_default(config: Any, progress: Callable[[str, float], None] | None = None) -> Any:
    """Run the default scenario on ``config``; returns the kernel."""
    from mmintro.workload import load_scenario, run_scenario

    return run_scenario(load_scenario(DEFAULT_SCENARIO), config, progress).kernel


def default_snapshot() -> Path:
    """The default machine's snapshot stem (runs the default scenario and saves it on first
    use)."""
    from mmintro.kernel.config import MachineConfig

    config = MachineConfig()
    d = cache_dir()
    stem = d / f"default-{_cache_key(config)}"
    core, vml = stem.with_name(stem.name + ".vmcore"), stem.with_name(stem.name + ".vmlinux")
    if core.exists() and vml.exists():
        return stem
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=d))
    try:
        click.echo(f"mmintro: booting the default machine into {stem} (once)", err=True)
        tcore, tvml = boot_and_save(config, tmp / "default", scenario=run_default)
        os.replace(tvml, vml)  # vmlinux first: a vmcore is never visible without its partner
        os.replace(tcore, core)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stem


_KERNEL_META = "mmintro.kernel"
_SYSTEM_MAP_META = "mmintro.system_map"


def load(snapshot: str | None) -> Program:
    """Open the named snapshot, or the default machine's; with ``--kernel`` (see
    :func:`kernel_options`) SNAPSHOT is a real kernel's dump (ELF or kdump-compressed).
    The program is remembered in ``ctx.meta`` so that the report's findings are printed."""
    prog = _load(snapshot)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        from mmintro.cli.output import PROGRAMS_META

        ctx.meta.setdefault(PROGRAMS_META, []).append(prog)
    return prog


def _load(snapshot: str | None) -> Program:
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    kernel = meta.get(_KERNEL_META)
    system_map = meta.get(_SYSTEM_MAP_META)
    if kernel is None:
        if system_map is not None:
            raise click.UsageError("--system-map goes with --kernel (a real kernel's dump)")
        from mmintro.reader import open_snapshot

        return open_snapshot(snapshot if snapshot else default_snapshot())
    if not snapshot:
        raise click.UsageError("--kernel needs the dump to read: mmintro COMMAND VMCORE --kernel VMLINUZ")
    from mmintro.reader.dump import open_dump

    return open_dump(snapshot, kernel, system_map)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta[key] = value
        return value

    return callback


def kernel_options(cmd: click.Command) -> click.Command:
    """Add ``--kernel VMLINUZ`` and ``--system-map FILE`` to a command that reads a dump: with
    them, its SNAPSHOT argument is a real kernel's vmcore, read with that kernel's types."""
    cmd.params.append(
        click.Option(
            ["--kernel"],
            metavar="VMLINUZ",
            expose_value=False,
            is_eager=True,
            callback=_remember(_KERNEL_META),
            help="SNAPSHOT is a real kernel's dump; this is its kernel image (bzImage or vmlinux with .BTF)",
        )
    )
    cmd.params.append(
        click.Option(
            ["--system-map"],
            metavar="FILE",
            expose_value=False,
            is_eager=True,
            callback=_remember(_SYSTEM_MAP_META),
            help="symbols from this System.map instead of the dump's own kallsyms",
        )
    )
    return cmd


def snapshot_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    """``[SNAPSHOT]``: NAME, NAME.vmcore or NAME.vmlinux; the default machine if omitted."""
    return click.argument("snapshot", required=False, metavar="[SNAPSHOT]")(f)
