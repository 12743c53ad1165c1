"""What the MMU does on an access that takes no fault, read back by real drgn.

x86's page walker sets _PAGE_ACCESSED in the leaf entry on every access and _PAGE_DIRTY on a
write through a writable entry; the kernel only sees the bits later (smaps' Referenced and
Private/Shared_Dirty, page reclaim).  A forked child's PTEs/PMDs are old (copy_present_pte:
pte_mkold; copy_huge_pmd: pmd_mkold), so a read in the child that takes no fault must make
exactly the read pages young.
"""

from __future__ import annotations

import pytest
from cli_helpers import run

drgn = pytest.importorskip("drgn")
memory = pytest.importorskip("mmintro.kernel.memory")

PAGE = 4096
_PAGE_PRESENT = 1 << 0  # arch/x86/include/asm/pgtable_types.h
_PAGE_RW = 1 << 1
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
PFN_MASK = ((1 << 52) - 1) & ~(PAGE - 1)


def _drgn_leaf(d, mm, addr: int) -> tuple[int, int]:
    """(leaf size, entry) of ``addr`` by reading mm->pgd's tables with drgn (4 levels)."""
    base = d["page_offset_base"].value_()
    table = mm.pgd.value_()
    for shift in (39, 30, 21, 12):
        e = d.read_u64(table + 8 * ((addr >> shift) & 511))
        if not e & _PAGE_PRESENT or shift == 12 or e & _PAGE_PSE:
            return 1 << shift, e
        table = base + (e & PFN_MASK)
    raise AssertionError


def _smaps_field(text: str, start: int, field: str) -> int:
    """``field`` (kB) of the VMA starting at ``start`` in smaps text."""
    lines = text.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith(f"{start:08x}-"))
    for ln in lines[i + 1:]:
        if ln.startswith(field + ":"):
            return int(ln.split()[1])
    raise AssertionError(field)


@pytest.fixture(scope="module")
def accessed(tmp_path_factory):
    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=7)))
    w.spawn("p", heap=0x10000)
    a = w.mmap("p", "a", 64 * PAGE)
    w.touch("p", "a", write=True)
    w.fork("c", "p")
    before = len(w.k.fault_log)
    faults = w.touch("c", "a", write=False, size=16 * PAGE)  # no fault: the PTEs are present
    assert faults == [] and len(w.k.fault_log) == before
    d = tmp_path_factory.mktemp("fix_mmu")
    save(w.k, d / "s")
    path = str(d / "s")
    return path, open_drgn(path + ".vmcore", path + ".vmlinux"), w.proc("p").pid, w.proc("c").pid, a


def test_a_read_without_fault_sets_the_accessed_bit_in_the_childs_ptes(accessed) -> None:
    from drgn.helpers.linux.pid import find_task

    _path, d, _ppid, cpid, a = accessed
    mm = find_task(d, cpid).mm
    bits = [_drgn_leaf(d, mm, a + i * PAGE)[1] for i in range(64)]
    assert all(e & _PAGE_PRESENT and not e & _PAGE_RW for e in bits)  # CoW-protected by fork
    assert [bool(e & _PAGE_ACCESSED) for e in bits] == [True] * 16 + [False] * 48
    assert all(e & _PAGE_DIRTY for e in bits)  # copy_present_pte cleans only VM_SHARED entries


def test_smaps_referenced_counts_the_young_ptes(accessed) -> None:
    from drgn.helpers.linux.mm import follow_pfn, pfn_to_page
    from drgn.helpers.linux.pid import find_task

    path, d, _ppid, cpid, a = accessed
    mm = find_task(d, cpid).mm
    # no folio of the mapping is PG_referenced, so Referenced comes from the PTEs alone
    ref = d["PG_referenced"].value_()
    assert not any(pfn_to_page(d, follow_pfn(mm, a + i * PAGE)).flags.f.value_() >> ref & 1 for i in range(64))
    young = sum(1 for i in range(64) if _drgn_leaf(d, mm, a + i * PAGE)[1] & _PAGE_ACCESSED)
    assert young == 16
    assert _smaps_field(run("smaps", path, str(cpid)).stdout, a, "Referenced") == young * 4


@pytest.fixture(scope="module")
def shared_write(tmp_path_factory):
    """A shared file mapping read, then written: the write goes through a writable PTE (no
    writenotify) or takes the write-protect fault (writenotify); either way the PTE ends
    dirty and writable."""
    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=7)))
    w.spawn("p", heap=0x10000)
    w.create_file("f", "/data/log", 8 * PAGE)
    a = w.mmap("p", "fm", 8 * PAGE, kind="shared", file="f")
    w.touch("p", "fm", write=False)
    w.touch("p", "fm", write=True, size=4 * PAGE)
    d = tmp_path_factory.mktemp("fix_mmu_shared")
    save(w.k, d / "s")
    path = str(d / "s")
    return path, open_drgn(path + ".vmcore", path + ".vmlinux"), w.proc("p").pid, a, w


def test_a_write_to_a_shared_file_page_dirties_the_pte_and_smaps(shared_write) -> None:
    from drgn.helpers.linux.pid import find_task

    path, d, pid, a, _w = shared_write
    mm = find_task(d, pid).mm
    bits = [_drgn_leaf(d, mm, a + i * PAGE)[1] for i in range(8)]
    assert [bool(e & _PAGE_DIRTY) for e in bits] == [True] * 4 + [False] * 4
    assert all(e & _PAGE_RW for e in bits[:4]) and all(e & _PAGE_ACCESSED for e in bits)
    text = run("smaps", path, str(pid)).stdout
    # one mapper, the page cache holds its own reference: shared (refcount 2, mapcount 1 -> private)
    dirty = _smaps_field(text, a, "Private_Dirty") + _smaps_field(text, a, "Shared_Dirty")
    assert dirty == 4 * 4
