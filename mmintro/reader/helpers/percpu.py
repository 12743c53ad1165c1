"""Per-CPU data (include/linux/percpu-defs.h, include/linux/cpumask.h).

Named after the kernel API like drgn's ``drgn.helpers.linux.percpu``/``cpumask``.
"""

from __future__ import annotations

from collections.abc import Iterator

from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = ["for_each_online_cpu", "per_cpu_ptr"]


def for_each_online_cpu(prog: Program) -> Iterator[int]:
    """CPU numbers set in ``__cpu_online_mask`` (below ``nr_cpu_ids``)."""
    nr = prog["nr_cpu_ids"].value_()
    words = prog["__cpu_online_mask"].bits.value_()
    for cpu in range(min(nr, 64 * len(words))):
        if words[cpu // 64] >> (cpu % 64) & 1:
            yield cpu


def per_cpu_ptr(ptr: Object, cpu: int) -> Object:
    """``per_cpu_ptr()``: the CPU's copy of a percpu pointer (``ptr + __per_cpu_offset[cpu]``).

    :param ptr: a percpu ``T *``
    :return: ``T *``
    """
    prog = ptr.prog_
    offset = prog["__per_cpu_offset"][cpu].value_()
    return Object(prog, ptr.type_, (ptr.value_() + offset) & 0xFFFFFFFFFFFFFFFF)
