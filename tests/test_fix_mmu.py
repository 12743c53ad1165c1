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
    for ln in lines[i + 1 :]:
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


# -- write notification on a shared file mapping (mm/mmap.c vma_wants_writenotify) ----------------
_PAGE_USER = 1 << 2
_PAGE_NX = 1 << 63
PAGE_COPY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX  # arch/x86 pgtable_types.h


@pytest.fixture(scope="module")
def writenotify(tmp_path_factory):
    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=7)))
    w.spawn("p", heap=0x10000)
    w.create_file("f", "/data/db", 8 * PAGE)
    a = w.mmap("p", "fm", 8 * PAGE, kind="shared", file="f")
    reads = w.touch("p", "fm", write=False)
    after_read = [memory.walk(w.k, w.proc("p").mm, a + i * PAGE)[2] for i in range(8)]
    dirty_after_read = sum(s.get("NR_FILE_DIRTY", 0) for s in w.k.node_vm_stat)
    writes = w.touch("p", "fm", write=True, size=4 * PAGE)
    d = tmp_path_factory.mktemp("fix_writenotify")
    save(w.k, d / "s")
    path = str(d / "s")
    return (
        open_drgn(path + ".vmcore", path + ".vmlinux"),
        w.proc("p").pid,
        a,
        reads,
        after_read,
        dirty_after_read,
        writes,
        w.files["f"],
    )


def test_a_shared_writable_file_vma_is_mapped_read_only_first(writenotify) -> None:
    from drgn.helpers.linux.mm import vma_find
    from drgn.helpers.linux.pid import find_task

    d, pid, a, reads, after_read, dirty_after_read, _writes, _f = writenotify
    vma = vma_find(find_task(d, pid).mm, a)
    assert vma.vm_page_prot.pgprot.value_() == PAGE_COPY  # vm_flags & ~VM_SHARED
    assert reads and all(f.kind == "file" for f in reads)  # do_read_fault (with fault-around)
    assert all(e & _PAGE_PRESENT and not e & _PAGE_RW and not e & _PAGE_DIRTY for e in after_read)
    assert dirty_after_read == 0


def test_the_first_write_faults_and_dirties_the_folio(writenotify) -> None:
    import drgn as D
    from drgn.helpers.linux.mm import follow_pfn, pfn_to_page
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.vmstat import global_node_page_state
    from test_writeback import xa_get_mark  # drgn has no mark helper

    d, pid, a, _reads, _after_read, _dirty, writes, f = writenotify
    mm = find_task(d, pid).mm
    assert [(w.kind, w.pfn) for w in writes] == [
        ("file-shared", follow_pfn(mm, a + i * PAGE).value_()) for i in range(4)
    ]  # do_wp_page -> wp_page_shared
    xa = D.Object(d, "struct file *", f).f_mapping.i_pages
    pg_dirty = d.constant("PG_dirty").value_()
    for i in range(8):
        e = _drgn_leaf(d, mm, a + i * PAGE)[1]
        page = pfn_to_page(d, follow_pfn(mm, a + i * PAGE))
        written = i < 4
        assert bool(e & _PAGE_DIRTY) == bool(e & _PAGE_RW) == written, i
        assert bool(page.flags.f.value_() >> pg_dirty & 1) == written, i
        assert xa_get_mark(xa, page.__folio_index.value_(), 0) == written, i  # TAG_DIRTY
    assert global_node_page_state(d.constant("NR_FILE_DIRTY")) == 4


# -- MAP_HUGETLB's pseudo file (fs/dcache.c d_alloc_pseudo, fs/d_path.c d_path) -------------------
def _kernel_d_path(d, path) -> bytes:
    """6.18 d_path() on drgn objects, for the dentries this test meets: a d_dname dentry that
    is not its mount's root names itself through simple_dname; else drgn's walk."""
    from drgn.helpers.linux.fs import d_path

    dentry, mnt = path.dentry, path.mnt
    is_root = dentry.d_parent.value_() == dentry.value_()
    if dentry.d_op and dentry.d_op.d_dname and (not is_root or dentry.value_() != mnt.mnt_root.value_()):
        assert d.symbol(dentry.d_op.d_dname.value_()).name == "simple_dname"
        return b"/" + dentry.d_name.name.string_() + b" (deleted)"
    return d_path(path)


def test_map_hugetlb_files_show_as_anon_hugepage_deleted(tmp_path) -> None:
    from drgn.helpers.linux.fs import d_path
    from drgn.helpers.linux.mm import vma_find
    from drgn.helpers.linux.pid import find_task

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import hugetlb
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=7)))
    hugetlb.set_nr_hugepages(w.k, 2 << 20, 4)
    w.spawn("p", heap=0x10000)
    priv = w.mmap("p", "h", 4 << 20, kind="hugetlb")
    shared = w.mmap("p", "hs", 2 << 20, kind="hugetlb", shared=True)
    w.touch("p", "h", write=True)
    save(w.k, tmp_path / "s")
    path = str(tmp_path / "s")
    d = open_drgn(path + ".vmcore", path + ".vmlinux")
    mm = find_task(d, w.proc("p").pid).mm
    maps = run("maps", path, str(w.proc("p").pid)).stdout.splitlines()
    numa = run("numa-maps", path, str(w.proc("p").pid)).stdout.splitlines()
    for a in (priv, shared):
        f = vma_find(mm, a).vm_file
        dentry = f.f_path.dentry
        # alloc_file_pseudo: an unlinked inode under a d_alloc_pseudo dentry on hugetlbfs
        assert dentry.d_name.name.string_() == b"anon_hugepage" and f.f_inode.__i_nlink.value_() == 0
        assert d_path(f.f_path) == b"[hugetlbfs]"  # drgn's rendering of a d_dname dentry
        want = _kernel_d_path(d, f.f_path).decode()
        assert want == "/anon_hugepage (deleted)"
        line = next(ln for ln in maps if ln.startswith(f"{a:08x}-"))
        assert line.split(None, 5)[5] == want
        nl = next(ln for ln in numa if ln.startswith(f"{a:08x} "))
        assert " file=" + want.replace(" ", "\\040") + " huge" in nl


# -- the vsyscall gate VMA (arch/x86/entry/vsyscall/vsyscall_64.c) --------------------------------
@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=7)))
    w.spawn("p", heap=0x10000)
    d = tmp_path_factory.mktemp("fix_gate")
    save(w.k, d / "s")
    path = str(d / "s")
    return path, open_drgn(path + ".vmcore", path + ".vmlinux"), w.proc("p").pid


def test_gate_vma_is_the_static_initialiser_after_map_vsyscall_xonly(gate) -> None:
    _path, d, _pid = gate
    g = d["gate_vma"]
    assert g.vm_start.value_() == 0xFFFFFFFFFF600000 and g.vm_end.value_() == 0xFFFFFFFFFF601000
    assert g.vm_flags.value_() == 0x4  # vsyscall=xonly: vm_flags_init(&gate_vma, VM_EXEC)
    assert g.vm_page_prot.pgprot.value_() == _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED  # PAGE_READONLY_EXEC
    assert not g.vm_mm and not g.vm_file
    assert g.vm_ops.value_() == d["gate_vma_ops"].address_
    assert d.symbol(g.vm_ops.name.value_()).name == "gate_vma_name"


def _reference(name: str) -> list[str]:
    from cli_helpers import REFERENCE

    p = REFERENCE / "pid" / name
    if not p.is_file():
        pytest.skip("reference /proc captures not available")
    return p.read_text().splitlines()


def test_maps_and_smaps_end_with_the_reference_vsyscall_entry(gate) -> None:
    path, _d, pid = gate
    ref_maps = _reference("self_maps")
    assert run("maps", path, str(pid)).stdout.splitlines()[-1] == ref_maps[-1]
    assert ref_maps[-1].endswith("[vsyscall]")
    ref_smaps = _reference("self_smaps")
    i = next(n for n, ln in enumerate(ref_smaps) if ln.endswith("[vsyscall]"))
    block = ref_smaps[i:]
    mine = run("smaps", path, str(pid)).stdout.splitlines()
    assert mine[-len(block) :] == block
    # smaps_rollup covers the mm's own VMAs only (show_smaps_rollup stops before the gate)
    assert not run("smaps-rollup", path, str(pid)).stdout.splitlines()[0].startswith("00400000-ffffffffff601000")


# -- CPU / memory-node affinity of tasks (status' Cpus_allowed, Mems_allowed) ----------------------
@pytest.fixture(scope="module")
def affinity(tmp_path_factory):
    from mmintro.crosscheck import open_drgn
    from mmintro.kernel import init_task
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, nodes=1, seed=7)))
    w.spawn("p", heap=0x10000)
    w.spawn("q", heap=0x10000)
    init_task.user_task_affinity(w.k, w.proc("q").task)  # what copy_process should do (VMA)
    d = tmp_path_factory.mktemp("fix_affinity")
    save(w.k, d / "s")
    path = str(d / "s")
    return path, open_drgn(path + ".vmcore", path + ".vmlinux"), w.proc("p").pid, w.proc("q").pid


def test_idle_tasks_are_bound_to_their_cpu_and_allow_every_node(affinity) -> None:
    from drgn.helpers.linux.cpumask import cpumask_to_cpulist
    from drgn.helpers.linux.percpu import per_cpu

    _path, d, _p, _q = affinity
    for cpu in (0, 1):
        t = per_cpu(d["runqueues"], cpu).idle
        assert cpumask_to_cpulist(t.cpus_ptr) == str(cpu)  # init_idle: cpumask_of(cpu)
        assert t.cpus_ptr.value_() == t.cpus_mask.address_ and t.nr_cpus_allowed.value_() == 1
        assert all(w.value_() == (1 << 64) - 1 for w in t.mems_allowed.bits)  # nodes_setall
    assert per_cpu(d["runqueues"], 0).idle.value_() == d["init_task"].address_


def _status(path: str, pid: int) -> dict[str, str]:
    lines = run("status", path, str(pid)).stdout.splitlines()
    return dict(ln.split(":\t", 1) for ln in lines if ":\t" in ln)


_AFFINITY = ("Cpus_allowed", "Cpus_allowed_list", "Mems_allowed", "Mems_allowed_list")


def test_a_user_task_has_inits_affinity_like_the_reference(affinity) -> None:
    from drgn.helpers.linux.cpumask import cpumask_to_cpulist
    from drgn.helpers.linux.pid import find_task

    path, d, _p, q = affinity
    t = find_task(d, q)
    assert cpumask_to_cpulist(t.cpus_ptr) == "0-1" and t.nr_cpus_allowed.value_() == 2
    ref = dict(ln.split(":\t", 1) for ln in _reference("self_status") if ":\t" in ln)  # 2 CPUs, 1 node
    mine = _status(path, q)
    assert [mine[f] for f in _AFFINITY] == [ref[f] for f in _AFFINITY]


def test_a_spawned_task_gets_the_affinity_from_copy_process(affinity) -> None:
    path, _d, p, _q = affinity
    assert _status(path, p)["Cpus_allowed_list"] == "0-1"


def test_writeback_write_protects_the_shared_ptes_so_the_next_write_redirties(tmp_path) -> None:
    """folio_clear_dirty_for_io -> folio_mkclean: after writeback the PTEs are clean and
    read-only again; the next write takes wp_page_shared and dirties the folio (6.18)."""
    from drgn.helpers.linux.mm import follow_pfn, pfn_to_page
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.vmstat import global_node_page_state

    from mmintro.crosscheck import open_drgn
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.snapshot.writer import save
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=7)))
    w.spawn("p", heap=0x10000)
    w.create_file("f", "/data/db", 8 * PAGE)
    a = w.mmap("p", "fm", 8 * PAGE, kind="shared", file="f")
    assert len(w.touch("p", "fm", write=True, size=4 * PAGE)) == 4
    w.writeback(everything=True, complete=1.0)
    mm = w.proc("p").mm
    after_wb = [memory.walk(w.k, mm, a + i * PAGE)[2] for i in range(4)]
    assert all(e & _PAGE_PRESENT and not e & (_PAGE_RW | _PAGE_DIRTY) for e in after_wb)
    assert sum(s.get("NR_FILE_DIRTY", 0) for s in w.k.node_vm_stat) == 0
    again = w.touch("p", "fm", write=True, size=2 * PAGE)
    assert [f.kind for f in again] == ["file-shared"] * 2
    save(w.k, tmp_path / "s")
    d = open_drgn(str(tmp_path / "s.vmcore"), str(tmp_path / "s.vmlinux"))
    dmm = find_task(d, w.proc("p").pid).mm
    pg_dirty = d.constant("PG_dirty").value_()
    for i in range(4):
        e = _drgn_leaf(d, dmm, a + i * PAGE)[1]
        page = pfn_to_page(d, follow_pfn(dmm, a + i * PAGE))
        assert bool(e & _PAGE_DIRTY) == bool(e & _PAGE_RW) == bool(page.flags.f.value_() >> pg_dirty & 1) == (i < 2)
    assert global_node_page_state(d.constant("NR_FILE_DIRTY")) == 2


def test_mprotect_keeps_write_notification_on_a_shared_file_mapping() -> None:
    """mprotect_fixup -> vma_set_page_prot: a shared file mapping made read-only and then
    writable again keeps vm_page_prot without write and its PTEs read-only, so the next
    write still faults and dirties the folio (6.18).  No PTE is upgraded, not even the dirty
    one: mprotect_fixup asks vma_wants_manual_pte_write_upgrade before vma_set_page_prot,
    and against the old read-only vm_page_prot vma_wants_writenotify says no."""
    from mmintro.kernel import mprotect
    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot
    from mmintro.kernel.mmap import find_vma
    from mmintro.workload import Workload

    w = Workload(boot(MachineConfig(ram=512 << 20, cpus=2, seed=8)))
    w.spawn("p", heap=0x10000)
    w.create_file("f", "/data/db", 8 * PAGE)
    a = w.mmap("p", "fm", 8 * PAGE, kind="shared", file="f")
    mm = w.proc("p").mm
    w.touch("p", "fm", write=False, size=2 * PAGE)  # two clean, read-only PTEs
    w.touch("p", "fm", write=True, size=PAGE, start=2 * PAGE)  # one dirty, writable PTE
    assert mprotect.do_mprotect(w.k, mm, a, 8 * PAGE, 1) == 0  # PROT_READ
    assert mprotect.do_mprotect(w.k, mm, a, 8 * PAGE, 3) == 0  # PROT_READ | PROT_WRITE
    vma = find_vma(w.k, mm, a)
    assert not w.k.kmem.get(vma, "vm_area_struct", "vm_page_prot") & _PAGE_RW
    ents = [memory.walk(w.k, mm, a + i * PAGE)[2] for i in range(3)]
    assert [bool(e & _PAGE_RW) for e in ents] == [False, False, False]
    dirty0 = sum(s.get("NR_FILE_DIRTY", 0) for s in w.k.node_vm_stat)
    assert [f.kind for f in w.touch("p", "fm", write=True, size=PAGE)] == ["file-shared"]
    assert sum(s.get("NR_FILE_DIRTY", 0) for s in w.k.node_vm_stat) == dirty0 + 1
