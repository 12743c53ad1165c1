"""Shared fixtures: simulated snapshots, built once per test session."""

from __future__ import annotations

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
    """The built-in default machine: 4 GiB, 1 node, 2 CPUs, seed 0 (path without suffix)."""
    return _make(tmp_path_factory, "default", MachineConfig())


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
