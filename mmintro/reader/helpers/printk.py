"""The kernel log, read from the printk ring buffer (kernel/printk/printk_ringbuffer.c, 6.18).

``prb`` points at the ring: a descriptor ring (``desc_ring``: ``count_bits``, ``descs[]``,
``infos[]``, ``head_id``/``tail_id``) and a text data ring (``text_data_ring``: ``size_bits``,
``data``).  Each finalized or committed descriptor's ``text_blk_lpos`` gives the logical begin and
next positions of its data block ``{unsigned long id; char text[]}``; a block that would cross the
end of the ring is stored at its start (``get_data()``).  The records are read from the tail to the
head, at most ``1 << count_bits`` of them, like drgn's ``get_dmesg`` and crash's ``log``.
"""

from __future__ import annotations

from typing import NamedTuple

from mmintro.reader import Program
from mmintro.reader.errors import ValidationError

__all__ = ["PrintkRecord", "dmesg_records"]

# kernel/printk/printk_ringbuffer.h
DESC_SV_BITS = 64
DESC_FLAGS_SHIFT = DESC_SV_BITS - 2
DESC_FLAGS_MASK = 3 << DESC_FLAGS_SHIFT
DESC_ID_MASK = ~DESC_FLAGS_MASK & ((1 << 64) - 1)
DESC_COMMITTED, DESC_FINALIZED = 1, 2  # enum desc_state: desc_miss=-1, reserved, committed, finalized, reusable
FAILED_LPOS = 0x1
NO_LPOS = 0x3


class PrintkRecord(NamedTuple):
    seq: int
    ts_nsec: int
    level: int
    caller_id: int
    text: str


def dmesg_records(prog: Program) -> list[PrintkRecord]:
    """Every committed or finalized record in the ring, oldest first."""
    prb = prog["prb"]
    dr = prb.desc_ring
    count_bits = dr.count_bits.value_()
    if not 0 < count_bits <= 32:
        raise ValidationError(f"printk ring: desc_ring.count_bits {count_bits} is out of range")
    ndescs = 1 << count_bits
    tr = prb.text_data_ring
    size_bits = tr.size_bits.value_()
    if not 0 < size_bits <= 40:
        raise ValidationError(f"printk ring: text_data_ring.size_bits {size_bits} is out of range")
    size = 1 << size_bits
    data_addr = tr.data.value_()
    data = prog.read(data_addr, size)
    descs = dr.descs.value_()
    infos = dr.infos.value_()
    desc_t = prog.types.struct("prb_desc")
    info_t = prog.types.struct("printk_info")
    off_sv = desc_t.offsetof("state_var")
    off_begin = desc_t.offsetof("text_blk_lpos.begin")
    off_next = desc_t.offsetof("text_blk_lpos.next")
    off_seq, off_ts = info_t.offsetof("seq"), info_t.offsetof("ts_nsec")
    off_len = info_t.offsetof("text_len")
    level_bit, level_bits, _t = info_t.walk("level")  # u8 level:3, after flags:5
    off_caller = info_t.offsetof("caller_id")
    dbytes = prog.read(descs, desc_t.size * ndescs)
    ibytes = prog.read(infos, info_t.size * ndescs)

    def u(buf: bytes, off: int, n: int) -> int:
        return int.from_bytes(buf[off : off + n], "little")

    tail = dr.tail_id.counter.value_() & DESC_ID_MASK
    head = dr.head_id.counter.value_() & DESC_ID_MASK
    out = []
    rid = tail
    for _ in range(ndescs):
        i = rid % ndescs
        d = i * desc_t.size
        sv = u(dbytes, d + off_sv, 8)
        state = sv >> DESC_FLAGS_SHIFT
        if (sv & DESC_ID_MASK) == rid and state in (DESC_COMMITTED, DESC_FINALIZED):
            info = i * info_t.size
            begin, nxt = u(dbytes, d + off_begin, 8), u(dbytes, d + off_next, 8)
            text_len = u(ibytes, info + off_len, 2)
            text = b""
            if not (begin & 1) and not (nxt & 1) and begin != nxt:
                b, n = begin % size, nxt % size
                if n <= b:  # wrapped: the block is at the start of the ring
                    b = 0
                blk = data[b + 8 : b + 8 + text_len] if b + 8 <= size else b""
                text = blk
            level = (u(ibytes, info + level_bit // 8, 1) >> (level_bit % 8)) & ((1 << level_bits) - 1)
            out.append(
                PrintkRecord(
                    u(ibytes, info + off_seq, 8),
                    u(ibytes, info + off_ts, 8),
                    level,
                    u(ibytes, info + off_caller, 4),
                    text.decode(errors="replace"),
                )
            )
        if rid == head:
            break
        rid = (rid + 1) & DESC_ID_MASK
    out.sort(key=lambda r: r.seq)
    return out
