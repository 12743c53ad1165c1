"""Per-CPU data for the views: the reader's helpers (mmintro.reader.helpers.percpu)."""

from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr

__all__ = ["for_each_online_cpu", "per_cpu_ptr"]
