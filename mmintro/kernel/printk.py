"""The kernel log (kernel/printk/printk.c, printk_ringbuffer.c of 6.18).

``printk(k, level, text)`` records a message with the simulated clock; ``write_log(k)``
(a sync hook) lays the records out in ``printk_rb_static`` exactly as prb_reserve() and
prb_final_commit() leave them: descriptors in ``_printk_rb_static_descs`` finalized with
their ids, ``printk_info`` records (seq, ts_nsec, text_len, level, LOG_NEWLINE, caller id),
and data blocks ``{unsigned long id; char text[]}`` in ``__log_buf`` at their logical
positions, blocks that would wrap stored at the start of the ring as the kernel does.  When
the records outgrow the ring the oldest are dropped (the tail pushed), as a full log
would.  drgn's ``get_dmesg`` and crash's ``log`` read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

_T = get_types()
LOG_BUF_SHIFT = 17  # CONFIG_LOG_BUF_SHIFT (Kconfig default)
PRB_AVGBITS = 5  # printk.c: 32 character average length
DESCBITS = LOG_BUF_SHIFT - PRB_AVGBITS
DESCS_COUNT = 1 << DESCBITS
DATA_SIZE = 1 << LOG_BUF_SHIFT
# kernel/printk/printk_ringbuffer.h
DESC_SV_BITS = 64
DESC_FLAGS_SHIFT = DESC_SV_BITS - 2
DESC_FLAGS_MASK = 3 << DESC_FLAGS_SHIFT
DESC_ID_MASK = ~DESC_FLAGS_MASK & ((1 << 64) - 1)
FAILED_LPOS = 0x1
MASK64 = (1 << 64) - 1

KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = 4, 5, 6, 7


class Record(NamedTuple):
    ts_nsec: int
    level: int
    text: str
    caller_id: int


def desc_sv(id_: int, state: int) -> int:
    return ((state << DESC_FLAGS_SHIFT) | id_) & MASK64


def desc0_id() -> int:
    return (-(DESCS_COUNT + 1)) & DESC_ID_MASK


def printk(k: Kernel, level: int, text: str) -> None:
    """printk(KERN_<level> "text\\n") at the simulated time; one record per line.

    The boot's messages come at the local clock, advanced a microsecond a record; once the
    machine has booted, no record is older than its uptime (the workload runs from
    timekeeping.BOOT_UPTIME_S on, and the final sysrq crash at the snapshot's uptime)."""
    if k.__dict__.get("booted"):
        from mmintro.kernel.timekeeping import uptime_ns

        k.clock_ns = max(k.clock_ns, uptime_ns(k))
    for line in text.splitlines() or [""]:
        k.printk_records.append(Record(k.clock_ns, level, line, k.current_pid()))
        k.clock_ns += 1000


def place_globals(k: Kernel) -> None:
    img = k.image
    img.var("__log_buf", "bss", 8)
    img.var("_printk_rb_static_descs", "data", 8)
    img.var("_printk_rb_static_infos", "data", 8)
    img.var("printk_rb_static", "data", 8)
    img.var("prb", "data", 8)
    k.kmem.write_u64(k.sym("prb"), k.sym("printk_rb_static"))
    k.sync_hooks.append(write_log)


def write_log(k: Kernel) -> None:
    T = k.T
    km = k.kmem
    rb = k.sym("printk_rb_static")
    descs = k.sym("_printk_rb_static_descs")
    infos = k.sym("_printk_rb_static_infos")
    data = k.sym("__log_buf")
    dsize = T.sizeof("struct prb_desc")
    isize = T.sizeof("struct printk_info")
    finalized = T.const("desc_finalized")
    reusable = T.const("desc_reusable")
    log_newline = T.const("LOG_NEWLINE")
    records = k.printk_records

    # Lay every record out from the start, then keep the newest that fit (descs and data).
    lpos = (-DATA_SIZE) & MASK64  # BLK0_LPOS
    blocks = []
    for r in records:
        text = r.text.encode()[:0xFFFF]
        size = -(-(8 + len(text)) // 8) * 8
        begin = lpos
        if (begin // DATA_SIZE) != ((begin + size) // DATA_SIZE):  # get_next_lpos(): DATA_WRAPS differ
            nxt = ((begin + size) // DATA_SIZE) * DATA_SIZE + size  # wraps: the block at the ring start
            at = 0
        else:
            nxt = begin + size
            at = begin % DATA_SIZE
        blocks.append((begin & MASK64, nxt & MASK64, at, text))
        lpos = nxt
    keep = len(blocks)
    first = 0
    while keep - first > DESCS_COUNT - 1 or (
        keep > first and (blocks[keep - 1][1] - blocks[first][0]) & MASK64 > DATA_SIZE
    ):
        first += 1
    # Clear the rings, then write the initial reusable descriptor and the kept records.
    km.write_bytes(descs, bytes(dsize * DESCS_COUNT))
    km.write_bytes(infos, bytes(isize * DESCS_COUNT))
    km.write_bytes(data, bytes(DATA_SIZE))
    d0 = desc0_id()
    last = descs + (DESCS_COUNT - 1) * dsize
    km.set(last, "prb_desc", "state_var", desc_sv(d0, reusable))
    km.set(last, "prb_desc", "text_blk_lpos.begin", FAILED_LPOS)
    km.set(last, "prb_desc", "text_blk_lpos.next", FAILED_LPOS)
    km.set(infos, "printk_info", "seq", (-DESCS_COUNT) & MASK64)
    tail_id = d0
    head_id = d0
    for n in range(len(blocks)):
        id_ = (d0 + 1 + n) & DESC_ID_MASK
        if n < first:
            tail_id = id_  # pushed out: the tail moved past it
            continue
        begin, nxt, at, text = blocks[n]
        r = records[n]
        idx = id_ & (DESCS_COUNT - 1)
        da = descs + idx * dsize
        ia = infos + idx * isize
        km.set(da, "prb_desc", "state_var", desc_sv(id_, finalized))
        km.set(da, "prb_desc", "text_blk_lpos.begin", begin)
        km.set(da, "prb_desc", "text_blk_lpos.next", nxt)
        km.write_u64(data + at, id_)
        km.write_bytes(data + at + 8, text)
        km.set(ia, "printk_info", "seq", n)
        km.set(ia, "printk_info", "ts_nsec", r.ts_nsec)
        km.set(ia, "printk_info", "text_len", len(text))
        km.set(ia, "printk_info", "level", r.level)
        km.set(ia, "printk_info", "flags", log_newline)
        km.set(ia, "printk_info", "caller_id", r.caller_id)
        head_id = id_
    if first:
        tail_id = (d0 + 1 + first) & DESC_ID_MASK
    km.set(rb, "printk_ringbuffer", "desc_ring.count_bits", DESCBITS)
    km.set(rb, "printk_ringbuffer", "desc_ring.descs", descs)
    km.set(rb, "printk_ringbuffer", "desc_ring.infos", infos)
    km.set(rb, "printk_ringbuffer", "desc_ring.head_id", head_id)
    km.set(rb, "printk_ringbuffer", "desc_ring.tail_id", tail_id)
    km.set(rb, "printk_ringbuffer", "desc_ring.last_finalized_seq", max(0, len(blocks) - 1))
    km.set(rb, "printk_ringbuffer", "text_data_ring.size_bits", LOG_BUF_SHIFT)
    km.set(rb, "printk_ringbuffer", "text_data_ring.data", data)
    km.set(rb, "printk_ringbuffer", "text_data_ring.head_lpos", lpos & MASK64)
    km.set(
        rb,
        "printk_ringbuffer",
        "text_data_ring.tail_lpos",
        blocks[first][0] if first < len(blocks) and first else (-DATA_SIZE) & MASK64,
    )
