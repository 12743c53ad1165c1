"""The kernel log as dmesg(1) prints it: every record of the printk ring (oldest first), each line
prefixed with the record's timestamp as ``[%5lu.%06lu] `` -- kernel/printk/printk.c print_time(),
what record_print_text() puts before every line of a record in syslog and console output."""

from __future__ import annotations

from typing import Any

from mmintro.reader import Program
from mmintro.reader.helpers.printk import PrintkRecord, dmesg_records

__all__ = ["dmesg", "render", "to_json"]


def dmesg(prog: Program) -> list[PrintkRecord]:
    return dmesg_records(prog)


def _prefix(ts_nsec: int) -> str:
    return f"[{ts_nsec // 1_000_000_000:5d}.{ts_nsec % 1_000_000_000 // 1000:06d}] "


def render(records: list[PrintkRecord]) -> str:
    out = []
    for r in records:
        prefix = _prefix(r.ts_nsec)
        out.extend(prefix + line + "\n" for line in r.text.split("\n"))
    return "".join(out)


def to_json(records: list[PrintkRecord]) -> list[dict[str, Any]]:
    return [r._asdict() for r in records]
