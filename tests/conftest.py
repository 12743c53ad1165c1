"""Shared fixtures: simulated snapshots, built once per test session."""

from __future__ import annotations

import sys

# This machine's environment sets PYTHONDONTWRITEBYTECODE: every test run (each xdist worker, each
# CLI subprocess) would then compile the package and rewrite every test module's asserts again,
# ~7 s per worker.  The suite keeps its bytecode (in the git-ignored __pycache__ directories).
sys.dont_write_bytecode = False

import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save


def _make(tmp_path_factory: pytest.TempPathFactory, name: str, cfg: MachineConfig, **kw) -> str:
    d = tmp_path_factory.mktemp(name)
    k = boot(cfg)
    save(k, d / name, **kw)
    return str(d / name)


@pytest.fixture(scope="session")
def default_snapshot(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bare boot of the default machine: 4 GiB, 1 node, 2 CPUs, seed 0, no user activity (the
    ``boot`` scenario; path without suffix).  The CLI's default machine runs the default
    scenario on it: :func:`default_machine`."""
    return _make(tmp_path_factory, "default", MachineConfig())


@pytest.fixture(scope="session")
def default_machine(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CLI's built-in default machine: the default scenario (mmintro/scenarios/default.toml)
    on MachineConfig(), what `mmintro simulate --output NAME` writes and reports read without a
    SNAPSHOT (path without suffix)."""
    from mmintro.cli.faults import write_fault_trace
    from mmintro.cli.snapshot import run_default

    d = tmp_path_factory.mktemp("default-machine")
    kernel = run_default(MachineConfig())
    save(kernel, d / "default")
    write_fault_trace(kernel, d / "default")  # NAME.faults.tsv, as simulate writes it
    return str(d / "default")


def on_scenario(names) -> list:
    """Parameters NAME for tests that read ``scenario_snapshot(NAME)``, each in the xdist group of
    its scenario: with ``--dist loadgroup`` (the slow pass) one worker simulates a scenario and
    runs every test of it while the other goes on with the rest, instead of waiting for the
    build on the scenario's lock."""
    return [pytest.param(n, marks=pytest.mark.xdist_group(f"scenario-{n}")) for n in names]


@pytest.fixture(scope="session")
def scenario_snapshot(tmp_path_factory: pytest.TempPathFactory):
    """NAME -> (stem, stdout) of ``mmintro simulate NAME --output STEM``: each shipped scenario
    simulated once per test run however many tests read it, shared by the xdist workers (they
    have one base directory above their own; a lock file per scenario makes the others wait
    while one builds).  The part-way snapshots of its ``snapshot`` steps lie beside it."""
    import fcntl
    import os

    from cli_helpers import run

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    root = root / "scenario-snapshots"
    root.mkdir(exist_ok=True)

    def get(name: str) -> tuple[str, str]:
        d = root / name
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = d / "stdout"
            if not done.exists():
                d.mkdir(exist_ok=True)
                r = run("simulate", name, "--output", str(d / name))
                done.write_text(r.stdout)
            return str(d / name), done.read_text()

    return get


@pytest.fixture(scope="session")
def numa2_snapshot(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-node machine: 4 GiB split over nodes 0 and 1."""
    return _make(tmp_path_factory, "numa2", MachineConfig(ram=4 << 30, nodes=2, cpus=4))


@pytest.fixture(scope="session")
def gdb_snapshot(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default machine with GDB alias segments (virtual PT_LOADs)."""
    return _make(tmp_path_factory, "gdb", MachineConfig(ram=1 << 30), gdb_aliases=True)


@pytest.fixture(scope="session", params=["default", "numa2"])
def any_snapshot(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_snapshot")


@pytest.fixture(scope="session")
def cli_snapshot(default_snapshot: str) -> str:
    """The snapshot the CLI tests read: the default machine's (booted once per session)."""
    return default_snapshot


# -- real kernels -------------------------------------------------------------------------------
# Dumps of Debian's Linux 6.18 kernel made by the harness (mmintro.realkernel) under QEMU and
# cached by harness version (~20 s each the first time).  .ci/run installs QEMU, busybox-static
# and makedumpfile; the kernel package is fetched with apt on first use.  These tests never skip
# for a missing tool: a missing tool is a failure to set up, reported as such.

REAL_CONFIGS = {
    # 1 GiB, 1 node, 2 CPUs, KASLR on, 4-level paging; ELF and kdump-compressed (zlib).
    "real-default": dict(),
    # 2 GiB over 2 nodes, 4 CPUs, KASLR off, 5-level paging; ELF and kdump-compressed (zlib:
    # Debian's QEMU 7.2 is built without lzo and snappy).
    "real-numa2-l5": dict(mem_mib=2048, cpus=4, nodes=2, kaslr=False, paging_levels=5),
    # The same-machine comparison's other two machines (issue 12): 2 GiB over 2 nodes with 3
    # CPUs (node 0 has two, node 1 one) and 4 GiB, 1 node, 4 CPUs; KASLR on, 4-level paging.
    "real-numa2-3cpu": dict(mem_mib=2048, cpus=3, nodes=2, formats=("elf",)),
    "real-4g": dict(mem_mib=4096, cpus=4, formats=("elf",)),
    # Persistent memory: 256 MiB of RAM at 1 GiB made legacy pmem (memmap=nn!ss, e820 type 12),
    # which nd_e820 and nd_pmem turn into /dev/pmem0 with memremap_pages(): ZONE_DEVICE pages.
    "real-pmem": dict(
        mem_mib=2048, append=("memmap=256M!0x40000000",), modules=("nd_e820", "nd_pmem"), formats=("elf",)
    ),
    # Swap: 512 MiB, 1 node, 2 CPUs, a 64 MiB swap disk on virtio-blk (/dev/vda) switched on, and
    # the workload's 8 MiB swap region pushed out with MADV_PAGEOUT (part read or written back,
    # part shared with the child); ELF only.
    "real-swap": dict(mem_mib=512, swap_mib=64, formats=("elf",)),
}


def pytest_collection_modifyitems(config, items) -> None:
    """Every real-kernel configuration but the default (one more QEMU boot and dump each) is slow."""
    others = [n for n in REAL_CONFIGS if n != "real-default"]
    slow_fixtures = {f"real_dump_{n[5:].replace('-', '_')}" for n in others}
    # a test parametrised over configurations names one in its id: by name ("[real-swap]"), by
    # fixture name ("[real_dump_swap]", a fixture looked up by name), or the older tests'
    # "numa2-l5" without the prefix
    slow_ids = {v for n in others for v in (n, n.replace("-", "_"))} | slow_fixtures
    slow_ids |= {"numa2-l5", "numa2_l5", "numa2-3cpu", "numa2_3cpu"}
    for item in items:
        if slow_fixtures & set(getattr(item, "fixturenames", ())) or any(v in item.nodeid for v in slow_ids):
            item.add_marker(pytest.mark.slow)


def _real_dump(name: str):
    from mmintro.realkernel.qemu import GuestConfig, cached_reference_dump

    return cached_reference_dump(GuestConfig(**REAL_CONFIGS[name]), name)


@pytest.fixture(scope="session")
def real_dump():
    """The default real-kernel dump (:class:`mmintro.realkernel.qemu.ReferenceDump`)."""
    return _real_dump("real-default")


@pytest.fixture(scope="session")
def real_dump_numa2_l5():
    """A 2-node, 4-CPU, 5-level-paging, KASLR-off real-kernel dump."""
    return _real_dump("real-numa2-l5")


@pytest.fixture(scope="session")
def real_dump_numa2_3cpu():
    """2 GiB over 2 nodes, 3 CPUs (two on node 0), KASLR on, 4-level paging; ELF only."""
    return _real_dump("real-numa2-3cpu")


@pytest.fixture(scope="session")
def real_dump_pmem():
    """2 GiB, 1 node, 2 CPUs, with 256 MiB of legacy persistent memory under nd_pmem; ELF only."""
    return _real_dump("real-pmem")


@pytest.fixture(scope="session")
def real_dump_4g():
    """4 GiB, 1 node, 4 CPUs, KASLR on, 4-level paging; ELF only."""
    return _real_dump("real-4g")


@pytest.fixture(scope="session")
def real_dump_swap():
    """512 MiB, 1 node, 2 CPUs, a 64 MiB swap device (/dev/vda) with part of the workload
    swapped out; ELF only."""
    return _real_dump("real-swap")


@pytest.fixture(scope="session", params=sorted(REAL_CONFIGS))
def any_real_dump(request: pytest.FixtureRequest):
    return _real_dump(request.param)
