"""The printk ring buffer: what the simulated kernel logged, read back by real drgn."""

from __future__ import annotations

import pytest

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.printk import get_printk_records

from mmintro.crosscheck import open_drgn
from mmintro.kernel import printk
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save


def _records(k, tmp_path):
    core, vml = save(k, tmp_path / "log")
    return get_printk_records(open_drgn(str(core), str(vml)))


def test_boot_log_and_an_allocation_failure_reach_dmesg(tmp_path) -> None:
    k = boot(MachineConfig(ram=1 << 30))
    while k.alloc_pages("GFP_DMA", 10) is not None:
        pass
    recs = _records(k, tmp_path)
    texts = [r.text.decode() for r in recs]
    assert texts == k.log
    assert texts[0].startswith("Linux version 6.18.0-mmintro")
    assert any(t.startswith("BIOS-e820: [mem 0x0000000000100000-") for t in texts)
    fail = next(r for r in recs if b"page allocation failure: order:10, mode:0x1(GFP_DMA)" in r.text)
    assert fail.level == printk.KERN_WARNING
    assert [r.seq for r in recs] == list(range(len(recs)))
    assert all(a.timestamp < b.timestamp for a, b in zip(recs, recs[1:]))


def test_a_full_ring_keeps_the_newest_records(tmp_path) -> None:
    k = boot(MachineConfig(ram=512 << 20))
    for i in range(6000):  # more records than descriptors, and more text than the data ring holds
        k.printk(6, f"line {i:05d} " + "x" * (i % 50))
    recs = _records(k, tmp_path)
    # A block that would cross the end of the data ring is stored at its start, after its
    # id (printk_ringbuffer.c data_alloc/get_data).  drgn 0.3.0 reads such a block from the
    # ring start without skipping the id, so its text shows the 8-byte id first: a drgn
    # quirk (the kernel's get_data() returns &db->data[0]).  Our layout is the kernel's.
    ours = k.log[-len(recs) :]  # a contiguous run of the newest, in order
    wrapped = 0
    for r, x in zip(recs, ours):
        t = r.text
        if t != x.encode():  # the wrapped block, also cut short by the 8 id bytes
            assert int.from_bytes(t[:8], "little") and x.encode().startswith(t[8:])
            wrapped += 1
    assert wrapped == 1
    # the snapshot is taken by a sysrq crash: its two lines end the log (panic.sysrq_crash)
    assert [r.text for r in recs[-2:]] == [
        b"sysrq: Trigger a crash",
        b"Kernel panic - not syncing: sysrq triggered crash",
    ]
    assert recs[-3].text.startswith(b"line 05999") and len(recs) < 6000
    assert sum(len(x) + 8 for x in ours) <= printk.DATA_SIZE
