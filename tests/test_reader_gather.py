"""CoreFile.gather_u64: the vectorised physical read the columnar scans build on."""

from __future__ import annotations

import numpy as np
import pytest

from mmintro.reader import open_snapshot
from mmintro.reader.errors import FaultError


def test_gather_equals_scalar_reads(default_snapshot: str) -> None:
    prog = open_snapshot(default_snapshot)
    pgd = (
        prog.symbol("swapper_pg_dir").address
        - prog.symbol("_text").address
        + prog.kernel_image_phys(prog.symbol("_text").address)
    )
    addrs = np.arange(pgd, pgd + 4096, 8, dtype=np.uint64)
    got = prog.core.gather_u64(addrs)
    assert np.count_nonzero(got) > 0
    assert got.tolist() == [prog.read_u64(int(a), physical=True) for a in addrs]
    # Shuffled and repeated addresses come back in the caller's order.
    idx = np.random.default_rng(0).integers(0, len(addrs), 1000)
    assert (prog.core.gather_u64(addrs[idx]) == got[idx]).all()


def test_gather_outside_ram_faults(default_snapshot: str) -> None:
    prog = open_snapshot(default_snapshot)
    hole = 0xF0000000  # the PCI hole below 4 GiB is not RAM
    with pytest.raises(FaultError):
        prog.core.gather_u64(np.array([0x1000000, hole], dtype=np.uint64))
