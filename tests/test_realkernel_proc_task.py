"""The per-process views against a real Linux 6.18 kernel: for both workload processes (the
parent and its CoW child, mmintro/realkernel/guest/workload.c), mmintro's maps, smaps,
smaps_rollup, status and numa_maps read from the dump equal, byte for byte, the text the guest
itself printed for /proc/PID/... just before the VM stopped.

Every line is compared exactly: no field gets an allowance.  The workload is asleep (its
threads parked) when the guest captures /proc and the VM stops a few milliseconds later, so
nothing these files show (page tables, counters, context switches) moves in between; if a
value ever does, the fix is a documented per-field allowance here, never a looser comparison.

What this pins (each was a difference once):

* maps/smaps: no ``[vsyscall]`` gate VMA — Debian's CONFIG_LEGACY_VSYSCALL_NONE leaves
  ``vsyscall_mode`` (read from the dump) at NONE, so get_gate_vma() is NULL;
* smaps: ``ProtectionKey:`` lines (boot_cpu_data has X86_FEATURE_OSPKE) and ``sd``
  (VM_SOFTDIRTY) in VmFlags;
* smaps/smaps_rollup/numa_maps dirty accounting: x86's pte_dirty()/pmd_dirty() count the
  SavedDirty bit the fork's CoW write-protection moved Dirty into;
* status: Uid, Gid, FDSize, Groups, NSpgid, NSsid, SigQ, Sig*, Cap*, NoNewPrivs, Seccomp*,
  the speculation lines and x86_Thread_features*, from the dump's structures.
"""

from __future__ import annotations

import pytest

from mmintro.reader.dump import open_dump
from mmintro.views import maps as maps_view
from mmintro.views import numa_maps as numa_maps_view
from mmintro.views import smaps as smaps_view
from mmintro.views import status as status_view

ROLES = ("parent", "child")


def _rollup(prog, pid: int) -> str:  # type: ignore[no-untyped-def]
    start, end, st, findings = smaps_view.smaps_rollup(prog, pid)
    assert not findings
    return smaps_view.render_rollup(start, end, st)


def _smaps(prog, pid: int) -> str:  # type: ignore[no-untyped-def]
    rep = smaps_view.smaps(prog, pid)
    assert not rep.findings
    return smaps_view.render(rep)


VIEWS = {
    "maps": lambda prog, pid: maps_view.render(maps_view.maps(prog, pid)),
    "smaps": _smaps,
    "smaps_rollup": _rollup,
    "status": lambda prog, pid: status_view.render(status_view.status(prog, pid)),
    "numa_maps": lambda prog, pid: numa_maps_view.render(numa_maps_view.numa_maps(prog, pid)),
}


@pytest.fixture(scope="module")
def real_prog(real_dump):  # type: ignore[no-untyped-def]
    prog = open_dump(str(real_dump.path("elf")), real_dump.vmlinuz)
    yield prog
    prog.close()


def _check(dump, prog, role: str, view: str) -> None:  # type: ignore[no-untyped-def]
    pid = dump.pids[role]
    want = dump.proc(view, pid)
    got = VIEWS[view](prog, pid)
    assert got.splitlines() == want.splitlines()  # line by line first: a readable diff
    assert got == want


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("role", ROLES)
def test_view_equals_the_guests_text(real_dump, real_prog, role: str, view: str) -> None:
    _check(real_dump, real_prog, role, view)


@pytest.mark.parametrize("role", ROLES)
def test_views_on_a_5_level_numa_dump(real_dump_numa2_l5, role: str) -> None:
    """The same on 2 nodes, 4 CPUs, KASLR off and 5-level paging (the page-table scan walks
    the P4D level; addresses sign-extend from bit 56)."""
    prog = open_dump(str(real_dump_numa2_l5.path("elf")), real_dump_numa2_l5.vmlinuz)
    try:
        for view in sorted(VIEWS):
            _check(real_dump_numa2_l5, prog, role, view)
    finally:
        prog.close()


def test_the_real_kernel_has_no_gate_vma(real_prog) -> None:  # type: ignore[no-untyped-def]
    """vsyscall_mode is NONE (CONFIG_LEGACY_VSYSCALL_NONE): no [vsyscall], though gate_vma exists."""
    assert maps_view.vsyscall_mode(real_prog) == real_prog.types.const("NONE")
    assert "gate_vma" in real_prog.symbols.by_name
    assert maps_view.get_gate_vma(real_prog) is None
