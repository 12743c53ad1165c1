"""A process whose mm is corrupted in the snapshot's bytes is a finding, not a crash or a hang
(issue 5's acceptance): the maple tree of mm->mm_mt with a node pointer that loops back or
points outside RAM, a VMA pointer outside RAM, a page-table entry pointing outside RAM or back
at its own table.  Each case pokes the saved vmcore file (the bytes drgn would read) and runs
the commands that walk that mm (maps, vtop through the task's pgd, smaps when present): one
line on stderr, exit status 1 (smaps, which goes on past a bad table: its findings after the
report, exit status 3), no traceback, within a time limit."""

from __future__ import annotations

import shutil
import signal
import struct
from contextlib import contextmanager

import pytest
from cli_helpers import run

from mmintro.kernel import fork
from mmintro.kernel import mmap as M
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers.maple_tree import mt_for_each
from mmintro.snapshot.writer import save
from mmintro.views import ps as ps_view

R, W = M.VM_READ, M.VM_WRITE
PID = 1  # the process with many VMAs: a two-level maple tree


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=11))
    # alternating protections do not merge: about 40 mmaps + the exec layout's 11 VMAs,
    # more than one maple_range_64 leaf holds, so the root is a maple_arange_64 node.
    fork.spawn_process(k, "many", mmaps=[(0x3000, R if i % 2 else R | W) for i in range(40)], brk_grow=0x4000)
    _fault_in(k)
    d = tmp_path_factory.mktemp("corrupt")
    save(k, d / "mm")
    return str(d / "mm")


def _fault_in(k) -> None:
    """Write-fault a page of the heap when the simulator has page faults (mm/memory.c), so the
    user page tables have entries to corrupt."""
    try:
        from mmintro.kernel import memory
    except ImportError:
        return
    p = k.processes[0]
    memory.handle_mm_fault(k, p.mm, k.kmem.get(p.mm, "mm_struct", "start_brk"), True, task=p.task)


@pytest.fixture
def copy(snap, tmp_path):
    name = str(tmp_path / "bad")
    shutil.copy(snap + ".vmcore", name + ".vmcore")
    shutil.copy(snap + ".vmlinux", name + ".vmlinux")
    return name


def _task(prog):
    return next(t for t in ps_view.for_each_task(prog, idle=False) if t.pid.value_() == PID)


def _poke_virt(name: str, vaddr: int, value: int, pgd_phys: int | None = None) -> None:
    """Overwrite the u64 at kernel virtual ``vaddr`` in the vmcore file NAME.vmcore (the page
    must be stored: mm structures, maple nodes and page tables are non-zero pages)."""
    with open_snapshot(name) as prog:
        pa = prog.translate(vaddr, pgd_phys)
        _poke_phys_in(prog, name, pa, value)


def _poke_phys_in(prog, name: str, pa: int, value: int) -> None:
    seg = prog.core.segment_at(pa)
    assert pa - seg.paddr + 8 <= seg.filesz, "the target page is not stored in the core"
    with open(name + ".vmcore", "r+b") as f:
        f.seek(seg.offset + pa - seg.paddr)
        f.write(struct.pack("<Q", value & (1 << 64) - 1))


@contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the suite) if the body takes longer than ``seconds``."""

    def boom(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a walk does not terminate")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _finding(*args: str, words: tuple[str, ...] = ()) -> str:
    with _deadline(20):
        r = run(*args, ok=False)
    assert r.exit_code == 1, (r.stdout[-500:], r.stderr, r.exception)
    assert r.stderr.startswith("mmintro: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    return r.stderr


def _root(prog) -> tuple[int, int]:
    """(address of mm->mm_mt.ma_root, its value) of the process."""
    mt = _task(prog).mm.mm_mt
    return mt.ma_root.address_, mt.ma_root.value_()


def _node_slots(prog, enode: int) -> int:
    """Address of slot[0] of a maple_arange_64 node (the root of a two-level mm tree)."""
    node = prog.object("struct maple_node", address=enode & ~0xFF)
    return node.ma64.slot.address_


def test_the_uncorrupted_snapshot_reads_cleanly(snap):
    with open_snapshot(snap) as prog:
        mm = _task(prog).mm
        n = mm.map_count.value_()
        assert n > 40 and len(list(mt_for_each(mm.mm_mt.address_of_()))) == n
        assert (_root(prog)[1] >> 3) & 0xF == 3  # maple_arange_64: the root is an internal node
    r = run("maps", snap, str(PID))
    assert len(r.stdout.splitlines()) == n + 1  # and the gate VMA, [vsyscall]
    assert r.stdout.splitlines()[-1].endswith("[vsyscall]")


def test_maple_root_pointing_outside_ram(copy):
    with open_snapshot(copy) as prog:
        where, root = _root(prog)
        outside = int(prog["page_offset_base"].value_()) + (64 << 30)  # the direct map beyond RAM
    _poke_virt(copy, where, outside | (root & 0xFF))
    msg = _finding("maps", copy, str(PID), words=("maple tree",))
    assert "cannot be read" in msg or "not in the core" in msg
    _finding(*_smaps(copy), words=("maple tree",))


def test_maple_child_pointing_back_at_the_root_is_a_cycle(copy):
    with open_snapshot(copy) as prog:
        _where, root = _root(prog)
        slot0 = _node_slots(prog, root)
        child = prog.read_u64(slot0)
        assert child and (child >> 3) & 0xF == 1  # a maple_range_64 leaf
    _poke_virt(copy, slot0, root)  # the first child is the root itself
    _finding("maps", copy, str(PID), words=("maple tree", "cycle"))
    _finding(*_smaps(copy), words=("maple tree", "cycle"))
    from mmintro.cli.main import cli

    for cmd in ("smaps-rollup", "numa-maps", "vm"):  # every other command that walks the VMAs
        if cmd in cli.commands:
            _finding(cmd, copy, str(PID), words=("maple tree", "cycle"))


def test_maple_child_pointing_at_its_sibling_is_found(copy):
    with open_snapshot(copy) as prog:
        _where, root = _root(prog)
        slot0 = _node_slots(prog, root)
        sibling = prog.read_u64(slot0 + 8)
    _poke_virt(copy, slot0, sibling)  # two slots share one node: its parent word cannot match both
    _finding("maps", copy, str(PID), words=("maple tree",))
    _finding(*_smaps(copy), words=("maple tree",))


def test_vma_pointer_outside_ram(copy):
    with open_snapshot(copy) as prog:
        _where, root = _root(prog)
        leaf = prog.read_u64(_node_slots(prog, root)) & ~0xFF
        vma_slot = prog.object("struct maple_node", address=leaf).mr64.slot.address_
        outside = int(prog["page_offset_base"].value_()) + (64 << 30)
    _poke_virt(copy, vma_slot, outside)
    _finding("maps", copy, str(PID))
    _finding(*_smaps(copy))


def test_task_mm_pointing_outside_ram(copy):
    with open_snapshot(copy) as prog:
        where = _task(prog).mm.address_
        outside = int(prog["page_offset_base"].value_()) + (64 << 30)
    _poke_virt(copy, where, outside)
    _finding("maps", copy, str(PID))
    _finding(*_smaps(copy))


# -- page tables ----------------------------------------------------------------------------
def _user_leaf(prog):
    """(address, [(level, entry address)]) of the first present user page of the process, or
    skip when the simulator has no page faults yet."""
    from mmintro.crosscheck.tasks import present_user_leaves

    mm = _task(prog).mm
    pgd = prog.translate(mm.pgd.value_())
    leaves = present_user_leaves(prog, pgd, limit=1)
    if not leaves:
        pytest.skip("no user page is mapped (the simulator has no page faults yet)")
    va = leaves[0][0]
    w = prog.walk(va, pgd)
    return va, pgd, [(s.level, s.table + 8 * s.index, s.entry) for s in w.steps]


def _smaps(copy: str) -> list[str]:
    """``smaps SNAP PID`` when the CLI has it."""
    from mmintro.cli.main import cli

    if "smaps" not in cli.commands:
        pytest.skip("the CLI has no smaps yet")
    return ["smaps", copy, str(PID)]


def _vtop_args(copy: str, va: int) -> list[str]:
    """``vtop --pid PID ADDR`` when the CLI has it."""
    from mmintro.cli.main import cli

    vtop = cli.commands.get("vtop")
    if vtop is None or not any("--pid" in p.opts for p in vtop.params):
        pytest.skip("the CLI has no vtop --pid yet")
    return ["vtop", copy, "--pid", str(PID), hex(va)]


@pytest.mark.parametrize("level", ["pgd", "pud", "pmd", "pte"])
def test_page_table_entry_pointing_outside_ram(copy, level):
    """An entry whose frame is at 256 GiB (no RAM there): a table below it cannot be read (the
    walk stops with a fault); a leaf translates, and reading the page faults."""
    from mmintro.reader.helpers.mm import follow_phys

    nowhere = 0x40_0000_0000
    with open_snapshot(copy) as prog:
        va, pgd, steps = _user_leaf(prog)
        lv = {name: (addr, entry) for name, addr, entry in steps}  # physical entry addresses
        if level not in lv:
            pytest.skip(f"no {level} level on this walk")
        addr, entry = lv[level]
        _poke_phys_in(prog, copy, addr, (entry & 0xFFF) | (entry & (1 << 63)) | nowhere)
    with open_snapshot(copy) as prog, _deadline(20):
        mm = _task(prog).mm
        if level == "pte":
            assert follow_phys(mm, va).value_() == nowhere | (va & 0xFFF)
            with pytest.raises(FaultError):
                prog.read(va, 8, pgd_phys=pgd)
        else:
            with pytest.raises((FaultError, ValidationError)):
                follow_phys(mm, va)
    if level != "pte":
        _finding(*_vtop_args(copy, va), words=(f"pid {PID}", "not RAM"))
        _smaps_finding(copy, f"pid {PID}", "not RAM")


def _smaps_finding(copy: str, *words: str) -> None:
    """smaps of an mm whose page tables are partly unreadable prints what it can read, then
    the findings (``# finding: page_tables: pid N: ...`` lines, mmintro.reader.validate) and
    exits 3; never a traceback."""
    with _deadline(20):
        r = run(*_smaps(copy), ok=False)
    assert r.exit_code == 3 and "Traceback" not in r.stderr, (r.stderr, r.exception)
    assert r.stderr.startswith("mmintro: ") and r.stderr.count("\n") == 1, r.stderr
    found = "\n".join(ln for ln in r.stdout.splitlines() if ln.startswith("# finding: page_tables: "))
    assert all(w in found for w in words), r.stdout[-800:]


def test_smaps_with_a_page_table_finding_exits_non_zero(copy):
    with open_snapshot(copy) as prog:
        _va, _pgd, steps = _user_leaf(prog)
        addr, entry = {name: (a, e) for name, a, e in steps}["pmd"]
        _poke_phys_in(prog, copy, addr, (entry & 0xFFF) | 0x40_0000_0000)
    with _deadline(20):
        r = run(*_smaps(copy), ok=False)
    assert r.exit_code != 0


def test_page_table_entry_pointing_at_its_own_table(copy):
    """A PMD entry pointing back at the PMD table: a walk reads the PMD table as a PTE table.
    vtop --pid ends (four levels at most) and shows the walk; smaps' columnar scan names the
    loop in one line."""
    with open_snapshot(copy) as prog:
        va, _pgd, steps = _user_leaf(prog)
        lv = {name: (addr, entry) for name, addr, entry in steps}
        if "pmd" not in lv or "pte" not in lv:
            pytest.skip("no 4 KiB leaf")
        addr, entry = lv["pmd"]
        table = addr & ~0xFFF
        _poke_phys_in(prog, copy, addr, (entry & 0xFFF) | table)
    args = _vtop_args(copy, va)
    with _deadline(20):
        r = run(*args, ok=False)
    assert "Traceback" not in r.stderr and r.exit_code in (0, 1)
    if r.exit_code:
        assert r.stderr.count("\n") == 1
    else:  # the walk is shown: its PTE slot is in the PMD table again
        import re

        pte = re.search(r"PTE: ([0-9a-f]+) =>", r.stdout)
        assert pte and int(pte.group(1), 16) & ~0xFFF == table, r.stdout
    _smaps_finding(copy, f"pid {PID}", "loop")
