"""The Python API: :class:`Workload`, the subsystems' steps over one booted kernel, with
``sysctl`` and ``expect``."""

from __future__ import annotations

from typing import Any

from mmintro.workload.conditions import Condition
from mmintro.workload.core import ExpectationFailed, WorkloadCore, WorkloadError, _kmod, _show, zone_label
from mmintro.workload.files import PageCacheSteps
from mmintro.workload.objects import SlabSteps
from mmintro.workload.pages import PageAllocSteps
from mmintro.workload.pressure import COMPACTION_SYSCTLS, PressureSteps, _compaction_sysctl
from mmintro.workload.processes import ProcessSteps

SYSCTLS = (
    "vm.nr_hugepages",
    "hugepages-1048576kB",
    "vm.dirty_ratio",
    "vm.dirty_background_ratio",
    "vm.dirty_bytes",
    "vm.dirty_background_bytes",
    "transparent_hugepage",
    "vm.swappiness",
    "vm.compact_memory",
    "vm.compaction_proactiveness",
    "vm.extfrag_threshold",
)


# kernel/sysctl.c and mm/page-writeback.c: the ratio tunables are percentages
# (proc_dointvec_minmax with extra2 = one_hundred); a write outside is EINVAL.
SYSCTL_MAX = {
    "vm.dirty_ratio": 100,
    "vm.dirty_background_ratio": 100,
    "vm.swappiness": 200,
    "vm.compaction_proactiveness": 100,
}


# -- the Python API ------------------------------------------------------------------------
class Workload(PageAllocSteps, SlabSteps, ProcessSteps, PageCacheSteps, PressureSteps, WorkloadCore):
    """Events on a booted kernel: ``alloc``/``free`` under tags, CPU switches, pcp drains,
    slab/vmalloc objects, processes and their mappings, files, tunables, and expectations.
    ``Workload(boot(MachineConfig(ram=2 << 30))).alloc("x", order=3, count=10)``; blocks stay
    in ``tags[tag]`` (allocation order) until freed; processes in ``procs`` (by name), their
    mappings in ``mappings[name][tag]``, files in ``files[tag]``.

    ``w.spawn("db", heap=32 << 20); w.touch("db", "heap", write=True); w.fork("w1", "db")``"""

    def sysctl(self, name: str, value: int | str) -> None:
        """Set a tunable: ``vm.nr_hugepages`` (the default 2 MiB pool),
        ``hugepages-1048576kB`` (the 1 GiB pool), ``vm.dirty_ratio``,
        ``vm.dirty_background_ratio``, ``vm.dirty_bytes``, ``vm.dirty_background_bytes``,
        ``transparent_hugepage`` ("always" | "madvise" | "never")."""
        if name not in SYSCTLS:
            raise WorkloadError(f"unknown tunable {name!r} (known: {', '.join(SYSCTLS)})")
        if name in ("vm.nr_hugepages", "hugepages-1048576kB"):
            hugetlb = _kmod("hugetlb", "HUGE", "set_nr_hugepages")
            hugetlb.set_nr_hugepages(self.k, 2 << 20 if name == "vm.nr_hugepages" else 1 << 30, int(value))
        elif name in COMPACTION_SYSCTLS:
            _compaction_sysctl(self, name, int(value))
        elif name == "vm.swappiness":
            self.k.write_int("vm_swappiness", int(value))  # proc_dointvec_minmax, 0..MAX_SWAPPINESS
        elif name == "transparent_hugepage":
            hm = _kmod("huge_memory", "HUGE")
            fn = getattr(hm, "set_thp_mode", None) or getattr(hm, "enabled_store", None)
            if fn is None:
                raise WorkloadError("mmintro.kernel.huge_memory has no set_thp_mode yet")
            fn(self.k, str(value))
        else:
            # mm/page-writeback.c dirty_ratio_handler / dirty_bytes_handler and the background
            # pair: writing one of a ratio/bytes pair zeroes the other, then
            # writeback_set_ratelimit() (for the foreground pair).
            pw = _kmod("page_writeback", "FILE", "writeback_set_ratelimit")
            pw.page_writeback_init(self.k)
            glob, other = {
                "vm.dirty_ratio": ("vm_dirty_ratio", "vm_dirty_bytes"),
                "vm.dirty_bytes": ("vm_dirty_bytes", "vm_dirty_ratio"),
                "vm.dirty_background_ratio": ("dirty_background_ratio", "dirty_background_bytes"),
                "vm.dirty_background_bytes": ("dirty_background_bytes", "dirty_background_ratio"),
            }[name]
            self.k.write_int(glob, int(value))
            self.k.write_int(other, 0)
            if glob in ("vm_dirty_ratio", "vm_dirty_bytes"):
                pw.writeback_set_ratelimit(self.k)

    def expect(self, condition: str | Condition, zone: str | None = None, node: int | None = None) -> dict[str, Any]:
        """Check an expression on ``zone`` (see :class:`Condition`); returns the values it
        read, or raises :class:`ExpectationFailed` showing them."""
        cond = condition if isinstance(condition, Condition) else Condition(condition)
        if cond.needs_zone and zone is None:
            raise WorkloadError(f'expect {cond.text!r} reads a zone: say which (zone = "Normal")')
        z = self.zone(zone, node) if zone is not None else None
        for t in cond.tags:
            if t not in self.objects:
                self.blocks(t)
        value, seen = cond.evaluate(self, z)
        if not value:
            where = f" on {zone_label(z)}" if z is not None else ""
            raise ExpectationFailed(f"expect {cond.text}{where} does not hold: {_show(seen)}")
        return seen
