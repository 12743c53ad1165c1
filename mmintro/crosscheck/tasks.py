"""Crosscheck rows for processes (kernel/fork.c, mm/mmap.c): mmintro's reader and views
against real drgn's stock helpers and crash commands.  :mod:`mmintro.crosscheck` puts
:data:`TASK_CHECKS` in its CHECKS."""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Callable
from typing import Any

from mmintro.crosscheck.answers import Addr, as_addr
from mmintro.crosscheck.drgn import crash
from mmintro.reader.helpers.maple_tree import mt_for_each
from mmintro.reader.object import cast
from mmintro.reader.program import Program
from mmintro.views import ps as ps_view

__all__ = [
    "TASK_CHECKS",
    "c_crash_ps",
    "c_crash_ps_p",
    "c_crash_vm",
    "c_crash_vtop_c",
    "c_file_mappings",
    "c_find_task",
    "c_follow_user",
    "c_for_each_task",
    "c_for_each_vma",
    "c_hugetlb_usage",
    "c_page_cache",
    "c_page_cache_marks",
    "c_status_vm",
    "c_task_rss",
    "c_vma_find",
    "present_user_leaves",
]


def _my_tasks(p: Program) -> list[tuple[int, str, int]]:
    return sorted(
        (int(t.pid.value_()), t.comm.string_().decode(), int(t.value_()))
        for t in ps_view.for_each_task(p, idle=False)
        if int(t.pid.value_())
    )


def c_for_each_task(p: Program, d: Any) -> tuple:
    """drgn's for_each_task(idle=True) (the idle tasks, then init_pid_ns.idr + pid_task) =
    mmintro's idle tasks then init_task.tasks."""
    from drgn.helpers.linux.pid import for_each_task

    return (
        [(int(t.pid.value_()), t.comm.string_().decode(), int(t.value_())) for t in ps_view.for_each_task(p)],
        [(t.pid.value_(), t.comm.string_().decode(), t.value_()) for t in for_each_task(d, idle=True)],
    )


def c_find_task(p: Program, d: Any) -> tuple:
    """drgn's find_task(pid) (find_pid in the idr, pid_task) for every pid we list."""
    from drgn.helpers.linux.pid import find_task

    mine = [(pid, task) for pid, _c, task in _my_tasks(p)]
    mine.append((max([0] + [pid for pid, _t in mine]) + 1, 0))  # an unused pid: NULL
    return mine, [(pid, find_task(d, pid).value_()) for pid, _t in mine]


def c_for_each_vma(p: Program, d: Any) -> tuple:
    """drgn.helpers.linux.mm.for_each_vma(mm) = our maple-tree walk of mm->mm_mt, per process."""
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task

    mine: list = [("init_mm", [int(e.value_()) for _f, _l, e in mt_for_each(p["init_mm"].mm_mt.address_of_())])]
    theirs: list = [("init_mm", [v.value_() for v in for_each_vma(d["init_mm"].address_of_())])]
    for pid, _c, _t in _my_tasks(p):
        t = next(x for x in ps_view.for_each_task(p, idle=False) if int(x.pid.value_()) == pid)
        mine.append(
            (
                pid,
                [
                    (Addr(v.vm_start.value_()), Addr(v.vm_end.value_()), int(v.vm_flags.value_()))
                    for v in (cast("struct vm_area_struct *", e) for _f, _l, e in mt_for_each(t.mm.mm_mt.address_of_()))
                ]
                if t.mm.value_()
                else [],
            )
        )
        dt = find_task(d, pid)
        theirs.append(
            (
                pid,
                [(Addr(v.vm_start.value_()), Addr(v.vm_end.value_()), v.vm_flags.value_()) for v in for_each_vma(dt.mm)]
                if dt.mm
                else [],
            )
        )
    return mine, theirs


_PS_P = re.compile(r'PID:\s+(\d+)\s+TASK:\s+([0-9a-f]+)\s+CPU:\s+(\d+)\s+COMMAND:\s+"(.*)"')


def c_crash_ps_p(p: Program, d: Any) -> tuple:
    """``crash ps -p PID`` (the parent chain down from swapper/0) = the chain mmintro's ps
    rows give by following PPID, for every process.  (Plain ``crash ps`` needs
    ``task_state_array``, which the image does not have yet.)"""

    rows = ps_view.ps(p)
    boot = rows[0]  # swapper/0, init_task
    by_pid = {r.pid: r for r in rows if r.pid}

    def chain(r: ps_view.PsRow) -> list[tuple[int, int, int, str]]:
        out = []
        while True:
            out.append((r.pid, r.task, r.cpu, r.comm.strip("[]")))
            if r.task == boot.task:
                return out[::-1]
            r = by_pid.get(r.ppid, boot) if r.pid else boot

    # ps -p 0 gives one chain per idle task (init_task's, then init_task -> each other idle task)
    mine = [[t for r in rows if not r.pid for t in chain(r)]] + [chain(by_pid[pid]) for pid in sorted(by_pid)]
    theirs = [
        [
            (int(m[1]), int(m[2], 16), int(m[3]), m[4])
            for m in (_PS_P.search(line) for line in crash(d, f"ps -p {pid}").splitlines())
            if m
        ]
        for pid in [0] + sorted(by_pid)
    ]
    return mine, theirs


# -- user address spaces: translation, RSS, crash vm / vtop -c, page cache, hugetlb -------------
_PTE_PRESENT, _PTE_PSE = 0x1, 0x80
_PFN_MASK = 0x000FFFFFFFFFF000
# (shift, large leaf possible) of the x86-64 levels from the pgd: pgd, pud, pmd, pte, and with
# 5-level paging (NUMBER(pgtable_l5_enabled)=1 in VMCOREINFO) a p4d level under the pgd
_LEVELS = ((39, False), (30, True), (21, True), (12, False))
_LEVELS_5 = ((48, False), (39, False), (30, True), (21, True), (12, False))


def _tasks_with_mm(p: Program) -> list[tuple[int, Any]]:
    return sorted(
        (
            (int(t.pid.value_()), t)
            for t in ps_view.for_each_task(p, idle=False)
            if int(t.pid.value_()) and t.mm.value_()
        ),
        key=lambda x: x[0],
    )


def _pgd_phys(p: Program, mm: Any) -> int:
    return p.translate(int(mm.pgd.value_()))


def present_user_leaves(p: Program, pgd_phys: int, limit: int = 4096) -> list[tuple[int, int]]:
    """(user virtual address, leaf size) of present leaf entries in the user half of a pgd,
    in address order, at most ``limit`` (a bounded walk: tables read whole; an entry whose
    table is not in the dump stops that branch)."""
    import numpy as np

    from mmintro.reader.errors import FaultError as MyFault

    out: list[tuple[int, int]] = []
    levels = _LEVELS_5 if p.vmcoreinfo_number("NUMBER(pgtable_l5_enabled)", 0) else _LEVELS

    def table(pa: int) -> Any:
        try:
            return np.frombuffer(p.read_phys(pa, 4096), dtype="<u8")
        except MyFault:
            return None

    def walk(pa: int, level: int, base: int) -> None:
        shift, large = levels[level]
        t = table(pa)
        if t is None:
            return
        n = 256 if level == 0 else 512  # the pgd's lower half is the user half
        for i in np.nonzero(t[:n] & _PTE_PRESENT)[0]:
            if len(out) >= limit:
                return
            e = int(t[i])
            va = base + (int(i) << shift)
            if level == len(levels) - 1 or (large and e & _PTE_PSE):
                out.append((va, 1 << shift))
            else:
                walk(e & _PFN_MASK, level + 1, va)

    walk(pgd_phys, 0, 0)
    return out


def _sample_user_addrs(p: Program, pid: int, mm: Any, n: int = 24) -> list[int]:
    """A seeded sample of user addresses of one mm: half inside present leaves (when there
    are any), half anywhere inside its VMAs (mapped or not), plus one below the first VMA."""
    rng = random.Random(pid)
    vmas = [
        (int(v.vm_start.value_()), int(v.vm_end.value_()))
        for v in (cast("struct vm_area_struct *", e) for _f, _l, e in mt_for_each(mm.mm_mt.address_of_()))
    ]
    leaves = present_user_leaves(p, _pgd_phys(p, mm))
    out = []
    for _ in range(n // 2 if leaves else 0):
        va, size = leaves[rng.randrange(len(leaves))]
        out.append(va + (rng.randrange(size) & ~7))
    for _ in range(n - len(out)):
        s, e = vmas[rng.randrange(len(vmas))]
        out.append(s + (rng.randrange(e - s) & ~7))
    if vmas and vmas[0][0] > 0x1000:
        out.append(vmas[0][0] - 0x1000)
    return out


def c_follow_user(p: Program, d: Any) -> tuple:
    """drgn's follow_phys(mm, addr) and follow_page(mm, addr) (its own page-table walk from
    mm->pgd) = mmintro's on a seeded sample of user addresses of every process: the same
    physical address and struct page, or the same fault."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import follow_page, follow_phys
    from drgn.helpers.linux.pid import find_task

    from mmintro.reader.errors import FaultError as MyFault
    from mmintro.reader.helpers import mm as mmh

    mine: list = []
    theirs: list = []
    for pid, t in _tasks_with_mm(p):
        dmm = find_task(d, pid).mm
        for a in _sample_user_addrs(p, pid, t.mm):
            try:
                mine.append(
                    (pid, hex(a), Addr(mmh.follow_phys(t.mm, a).value_()), int(mmh.follow_page(t.mm, a).value_()))
                )
            except MyFault:
                mine.append((pid, hex(a), None, None))
            try:
                theirs.append((pid, hex(a), Addr(follow_phys(dmm, a).value_()), follow_page(dmm, a).value_()))
            except FaultError:
                theirs.append((pid, hex(a), None, None))
    return mine, theirs


def c_vma_find(p: Program, d: Any) -> tuple:
    """drgn's vma_find(mm, addr) (mtree_load on mm->mm_mt) = mmintro's vma_find at every VMA's
    first and last byte, the byte after it (a gap or the next VMA) and sampled addresses."""
    from drgn.helpers.linux.mm import vma_find
    from drgn.helpers.linux.pid import find_task

    from mmintro.reader.helpers import task as th

    mine, theirs = [], []
    for pid, t in _tasks_with_mm(p):
        addrs = []
        for _f, _l, e in mt_for_each(t.mm.mm_mt.address_of_()):
            v = cast("struct vm_area_struct *", e)
            s, end = int(v.vm_start.value_()), int(v.vm_end.value_())
            addrs += [s, end - 1, end]
        addrs += _sample_user_addrs(p, pid, t.mm, n=8)
        dmm = find_task(d, pid).mm
        for a in addrs:
            v = th.vma_find(t.mm, a)
            mine.append((pid, hex(a), int(v.value_()) if v is not None else 0))
            theirs.append((pid, hex(a), vma_find(dmm, a).value_()))
    return mine, theirs


_PS_ROW = re.compile(r"^\s*>?\s*(\d+)\s+(\d+)\s+(\d+)\s+([0-9a-f]+)\s+(\S+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(.*?)\s*$")
# drgn's crash ps prints task_state_to_char(); mmintro's ps prints crash's two-letter states
_STATE_CHAR = {"RU": "R", "IN": "S", "UN": "D", "ST": "T", "TR": "t", "ZO": "Z", "DE": "X", "ID": "I", "PA": "P"}


def c_crash_ps(p: Program, d: Any) -> tuple:
    """``crash ps`` (drgn's: every task with PID, PPID, CPU, TASK, state letter, %MEM, VSZ and
    RSS in kB, COMM) = mmintro's ps view, row by row (crash's two-letter state mapped to
    task_state_to_char's letter)."""

    # drgn's %MEM divides by totalram_pages; real crash (and mmintro's ps) by the page frames
    # below high_memory
    total = p["_totalram_pages"].counter.value_()
    mine = [
        (
            r.pid,
            r.ppid,
            r.cpu,
            r.task,
            _STATE_CHAR.get(r.state, r.state),
            f"{(r.rss // (p.page_size >> 10)) * 100 / total if total else 0.0:.1f}",
            r.vsz,
            r.rss,
            r.comm,
        )
        for r in ps_view.ps(p)
    ]
    theirs = [
        (int(m[1]), int(m[2]), int(m[3]), int(m[4], 16), m[5], m[6], int(m[7]), int(m[8]), m[9])
        for m in (_PS_ROW.match(line) for line in crash(d, "ps").splitlines()[1:])
        if m
    ]
    return mine, theirs


def _rss_counters(mm: Any) -> tuple[int, int, int, int]:
    """(file, anon, shmem, swap) pages: percpu_counter_sum() of mm->rss_stat[] (count plus
    every possible CPU's delta), read with mmintro's reader."""
    from mmintro.reader.helpers.percpu import per_cpu_ptr

    prog = mm.prog_
    nr = prog["nr_cpu_ids"].value_()
    out = []
    for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS"):
        c = mm.rss_stat[prog.constant(name).value_()]
        total = c.count.value_()
        if c.counters.value_():
            for cpu in range(nr):
                total += prog.read_s32(per_cpu_ptr(c.counters, cpu).value_())
        out.append(total)
    return tuple(out)  # type: ignore[return-value]


def c_task_rss(p: Program, d: Any) -> tuple:
    """drgn's task_rss(task) (percpu_counter_sum of each rss_stat counter) and task_vsize
    (mm->total_vm * PAGE_SIZE) = the same sums read by mmintro (the count plus every CPU's
    s32 delta through __per_cpu_offset), per process."""
    from drgn.helpers.linux.mm import task_rss, task_vsize
    from drgn.helpers.linux.pid import find_task

    mine, theirs = [], []
    for pid, t in _tasks_with_mm(p):
        mine.append((pid, *_rss_counters(t.mm), int(t.mm.total_vm.value_()) * p.page_size))
        dt = find_task(d, pid)
        r = task_rss(dt)
        theirs.append((pid, r.file, r.anon, r.shmem, r.swap, task_vsize(dt)))
    return mine, theirs


_STATUS_FIELDS = ("VmSize", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "VmPTE", "VmSwap", "HugetlbPages")


def c_status_vm(p: Program, d: Any) -> tuple:
    """mmintro's /proc/PID/status Vm*/Rss* lines = 6.18's task_mem() computed from what drgn
    reads: since "mm: fix the inaccurate memory statistics issue for users" (6.16) the Rss*
    and VmSwap lines use get_mm_counter_sum (= drgn's task_rss sums), VmRSS is their total,
    VmHWM max(total, mm->hiwater_rss); total_vm, pgtables_bytes, hugetlb_usage as read."""
    from drgn.helpers.linux.mm import task_rss
    from drgn.helpers.linux.pid import find_task

    from mmintro.views import status as status_view

    mine, theirs = [], []
    for pid, _t in _tasks_with_mm(p):
        lines = {line.name: line for line in status_view.status(p, pid)}
        mine.append((pid, *[_kb_value(lines.get(f)) for f in _STATUS_FIELDS]))
        task = find_task(d, pid)
        mm = task.mm
        r = task_rss(task)
        total = r.anon + r.file + r.shmem
        try:
            huge = mm.hugetlb_usage.counter.value_()
        except AttributeError:
            huge = 0
        theirs.append(
            (
                pid,
                mm.total_vm.value_() * 4,
                max(total, mm.hiwater_rss.value_()) * 4,
                total * 4,
                r.anon * 4,
                r.file * 4,
                r.shmem * 4,
                mm.pgtables_bytes.counter.value_() >> 10,
                r.swap * 4,
                huge * 4,
            )
        )
    return mine, theirs


def _kb_value(line: Any) -> int | None:
    """The number of a status line (``VmRSS:     1234 kB`` -> 1234); None if absent."""
    if line is None:
        return None
    if getattr(line, "kb", None) is not None:
        return line.kb
    v = getattr(line, "value", None)
    if isinstance(v, int):
        return v
    m = re.search(r"(\d+)", str(v if v is not None else line))
    return int(m.group(1)) if m else None


def c_crash_vm(p: Program, d: Any) -> tuple:
    """``crash vm PID`` (drgn's: MM, PGD, RSS from task_rss, TOTAL_VM, then VMA, START, END,
    FLAGS and vma_name per VMA) = mmintro's ``vm PID`` view, for every process.  drgn's FILE
    column also names anonymous VMAs ([heap], [stack], [vdso]); real crash prints only file
    paths there, as mmintro does, so drgn's bracketed names are compared as empty, except a
    pseudo file's "[hugetlbfs]", which is the kernel's simple_dname (:func:`_d_dname_of_vma`)."""
    from mmintro.views import vm as vm_view

    mine, theirs = [], []
    for pid, _t in _tasks_with_mm(p):
        v = vm_view.vm(p, pid)
        mine.append((pid, "mm", v["mm"], v["pgd"], v["rss_k"], v["total_vm_k"]))
        # drgn's FILE is the kernel's d_path (" (deleted)" and all); real crash's get_pathname,
        # which mmintro's vm prints, is checked against crash itself (mmintro.crosscheck.crash_utility)
        mine += [
            (
                pid,
                hex(r["vma"]),
                Addr(r["start"]),
                Addr(r["end"]),
                r["flags"],
                _kernel_path(p, r["vma"]) if r["file"] else "",
            )
            for r in v["vmas"]
        ]
        out = crash(d, f"vm {pid}").splitlines()
        head = next((i for i, line in enumerate(out) if line.split()[:4] == ["MM", "PGD", "RSS", "TOTAL_VM"]), None)
        if head is None:
            theirs.append((pid, "mm", " | ".join(out[:3])))
            continue
        h = out[head + 1].split()
        theirs.append((pid, "mm", int(h[0], 16), int(h[1], 16), int(h[2].rstrip("k")), int(h[3].rstrip("k"))))
        for line in out[head + 3 :]:
            f = line.split(None, 4)
            if len(f) >= 4:
                name = f[4].strip() if len(f) > 4 else ""
                if name.startswith("["):
                    name = _d_dname_of_vma(d, int(f[0], 16))
                theirs.append((pid, hex(int(f[0], 16)), Addr(int(f[1], 16)), Addr(int(f[2], 16)), int(f[3], 16), name))
    return mine, theirs


def _kernel_path(p: Program, vma: int) -> str:
    from mmintro.reader.helpers.task import d_path
    from mmintro.reader.object import Object

    return d_path(Object(p, p.type("struct vm_area_struct *"), vma).vm_file)


def _d_dname_of_vma(d: Any, vma: int) -> str:
    """drgn's d_path names a dentry with d_op->d_dname "[<fs type>]" (and vma_name other VMAs
    "[heap]" etc.); the kernel's d_path calls d_dname.  For d_alloc_pseudo's simple_dname (the
    MAP_HUGETLB pseudo file) that is "/<d_name> (deleted)", read from drgn's objects; any other
    bracketed name compares as empty (crash prints only file paths)."""
    import drgn

    f = drgn.Object(d, "struct vm_area_struct *", vma).vm_file
    if not f:
        return ""
    dentry = f.f_path.dentry
    if not dentry.d_op or not dentry.d_op.d_dname:
        return ""
    try:
        if d.symbol(dentry.d_op.d_dname.value_()).name != "simple_dname":
            return ""
    except LookupError:
        return ""
    return "/" + dentry.d_name.name.string_().decode(errors="replace") + " (deleted)"


def c_crash_vtop_c(p: Program, d: Any) -> tuple:
    """``crash vtop -c PID ADDR`` (drgn's follow_phys through the task's mm) = mmintro's
    ``vtop --pid PID ADDR`` view, on a few sampled addresses per process."""
    from mmintro.views import vm as vm_view

    mine, theirs = [], []
    for pid, t in _tasks_with_mm(p):
        addrs = _sample_user_addrs(p, pid, t.mm, n=6)
        mine += [(pid, Addr(a), as_addr(vm_view.vtop_pid(p, pid, a)["phys"])) for a in addrs]
        out = crash(d, f"vtop -c {pid} " + " ".join(f"{a:x}" for a in addrs))
        got = re.findall(r"^([0-9a-f]+)\s+(\(not accessible\)|[0-9a-f]+)\s*$", out, re.MULTILINE)
        theirs += [(pid, Addr(int(v, 16)), None if ph.startswith("(") else Addr(int(ph, 16))) for v, ph in got]
    return mine, theirs


# -- the page cache ------------------------------------------------------------------------------
PAGECACHE_TAG_DIRTY, PAGECACHE_TAG_WRITEBACK = 0, 1  # include/linux/fs.h (XA_MARK_0, XA_MARK_1)


def _my_inodes(p: Program) -> list[Any]:
    """Every inode of every super block (super_blocks -> s_list, sb->s_inodes -> i_sb_list),
    read with mmintro's checked list walks."""
    from mmintro.reader.helpers.list import list_for_each_entry

    if "super_blocks" not in p.symbols.by_name:
        return []
    return [
        i
        for sb in list_for_each_entry("struct super_block", p["super_blocks"].address_of_(), "s_list")
        for i in list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list")
    ]


def _d_inodes(d: Any) -> list[Any]:
    from drgn.helpers.linux.list import list_for_each_entry

    try:
        head = d["super_blocks"].address_of_()
    except KeyError:
        return []
    return [
        i
        for sb in list_for_each_entry("struct super_block", head, "s_list")
        for i in list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list")
    ]


def c_page_cache(p: Program, d: Any) -> tuple:
    """drgn's xa_for_each over every inode's i_pages (inodes from super_blocks and each
    sb->s_inodes) = mmintro's XArray walk: the same indices and folio pointers (multi-index
    entries once per folio), and nrpages = the pages those folios hold."""
    from drgn.helpers.linux.mm import compound_nr
    from drgn.helpers.linux.xarray import xa_for_each as d_xa_for_each

    from mmintro.reader.helpers.xarray import xa_for_each

    mine = []
    for inode in _my_inodes(p):
        m = inode.i_mapping
        mine.append(
            (
                int(inode.value_()),
                int(inode.i_ino.value_()),
                int(m.nrpages.value_()),
                [(int(i), int(e.value_())) for i, e in xa_for_each(m.i_pages.address_of_())],
            )
        )
    theirs = []
    for inode in _d_inodes(d):
        m = inode.i_mapping
        entries = [(i, e.value_()) for i, e in d_xa_for_each(m.i_pages.address_of_())]
        pages = sum(compound_nr(d_page(d, e)) for _i, e in entries if not e & 1)
        theirs.append((inode.value_(), inode.i_ino.value_(), pages, entries))
    return mine, theirs


def d_page(d: Any, addr: int) -> Any:
    from drgn import Object

    return Object(d, "struct page *", addr)


HUGETLBFS_MAGIC = 0x958458F6  # include/uapi/linux/magic.h
TMPFS_MAGIC = 0x01021994  # include/uapi/linux/magic.h


def c_page_cache_marks(p: Program, d: Any) -> tuple:
    """The i_pages DIRTY and WRITEBACK marks mmintro reads = drgn's PageDirty/PageWriteback of
    each cached folio (filemap_dirty_folio tags the folio as it sets PG_dirty;
    __folio_start_writeback / folio_end_writeback keep TAG_WRITEBACK with PG_writeback).
    hugetlbfs folios are dirty untagged (hugetlb_add_to_page_cache -> folio_mark_dirty ->
    hugetlbfs' noop_dirty_folio), and so are tmpfs/shmem folios (shmem_aops.dirty_folio =
    noop_dirty_folio): for them the DIRTY mark must be clear."""
    from drgn.helpers.linux.fs import address_space_for_each_page
    from drgn.helpers.linux.mm import PageDirty, PageWriteback

    from mmintro.reader.helpers.xarray import xa_for_each, xa_get_mark

    mine = []
    for inode in _my_inodes(p):
        xa = inode.i_mapping.i_pages.address_of_()
        # value entries (a workingset shadow, a shmem page's swap entry) are no folio: drgn's
        # address_space_for_each_page skips them
        mine += [
            (
                int(inode.i_ino.value_()),
                int(i),
                xa_get_mark(xa, i, PAGECACHE_TAG_DIRTY),
                xa_get_mark(xa, i, PAGECACHE_TAG_WRITEBACK),
            )
            for i, e in xa_for_each(xa)
            if not e.value_() & 1
        ]
    theirs = []
    for inode in _d_inodes(d):
        untagged = inode.i_sb.s_magic.value_() in (HUGETLBFS_MAGIC, TMPFS_MAGIC)
        theirs += [
            (inode.i_ino.value_(), i, PageDirty(pg) and not untagged, PageWriteback(pg))
            for i, pg in address_space_for_each_page(inode.i_mapping)
        ]
    return mine, theirs


def c_file_mappings(p: Program, d: Any) -> tuple:
    """Every present page of every file VMA: drgn's follow_page(mm, addr) is the folio drgn's
    xa_load finds in the file's i_pages at the page's index (vm_pgoff + offset) -- read(),
    write() and mmap share one set of folios -- and mmintro's page-table scan and XArray
    lookup give the same pair.  Pages whose index has no cache entry (hugetlb mappings of
    anonymous hugetlbfs files) are left out; a private mapping's CoW copy is an anonymous
    page, so its pair differs from the cache entry on both sides."""
    from drgn import FaultError
    from drgn.helpers.linux.mm import compound_head, follow_page, vma_find
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.xarray import xa_load as d_xa_load

    from mmintro.reader.helpers import mm as mmh
    from mmintro.reader.helpers.xarray import xa_load

    mine: list = []
    theirs: list = []
    for pid, t in _tasks_with_mm(p):
        leaves = present_user_leaves(p, _pgd_phys(p, t.mm), limit=1 << 16)  # in address order
        starts = [va for va, _size in leaves]
        dmm = find_task(d, pid).mm
        for v in (cast("struct vm_area_struct *", e) for _f, _l, e in mt_for_each(t.mm.mm_mt.address_of_())):
            if not v.vm_file.value_():
                continue
            s, e_ = int(v.vm_start.value_()), int(v.vm_end.value_())
            xa = v.vm_file.f_mapping.i_pages.address_of_()
            lo, hi = bisect.bisect_left(starts, s), bisect.bisect_left(starts, e_)
            for va, _size in leaves[lo:hi]:
                index = int(v.vm_pgoff.value_()) + ((va - s) >> 12)
                page = int(mmh.compound_head(mmh.follow_page(t.mm, va)).value_())
                cached = int(xa_load(xa, index).value_())
                if not cached:
                    continue
                mine.append((pid, hex(va), page, cached))
                dv = vma_find(dmm, va)
                try:
                    dpage = compound_head(follow_page(dmm, va)).value_()
                except FaultError:
                    dpage = None
                theirs.append(
                    (pid, hex(va), dpage, d_xa_load(dv.vm_file.f_mapping.i_pages.address_of_(), index).value_())
                )
    return mine, theirs


def c_hugetlb_usage(p: Program, d: Any) -> tuple:
    """drgn's hugetlb_total_usage() (pages of every hstate's pool, free ones) = meminfo's
    Hugetlb (kB) and the free pages of the hstates, read by mmintro."""
    from drgn.helpers.linux.hugetlb import hugetlb_total_usage

    from mmintro.views import meminfo as mi

    lines = {line.name: line.value for line in mi.meminfo(p)}
    hs = mi._hstates(p) if "hstates" in p.symbols.by_name else []
    free = sum(int(h.free_huge_pages.value_()) << int(h.order.value_()) for h in hs)
    u = hugetlb_total_usage(d)
    return (lines.get("Hugetlb", 0) * 1024 // p.page_size, free), (u.pages, u.free_pages)


# What a row needs in the snapshot to compare anything: on a snapshot without it (the plain
# boot has no user process and no cached file page) both answers are empty, and a test may
# skip the row there instead of counting two empty answers as agreement.
for _fn in (c_vma_find, c_follow_user, c_task_rss, c_status_vm, c_crash_vm, c_crash_vtop_c):
    _fn.needs = "user processes"  # type: ignore[attr-defined]
c_file_mappings.needs = "mapped file pages"  # type: ignore[attr-defined]
c_page_cache_marks.needs = "page-cache folios"  # type: ignore[attr-defined]

TASK_CHECKS: list[tuple[str, Callable[[Program, Any], tuple]]] = [
    ("for_each_task: pids, comms, tasks", c_for_each_task),
    ("find_task on every pid", c_find_task),
    ("for_each_vma per mm: start/end/flags", c_for_each_vma),
    ("crash ps -p = ps parent chains", c_crash_ps_p),
    ("crash ps = ps: pid, ppid, cpu, task, state, %MEM, VSZ, RSS, comm", c_crash_ps),
    ("vma_find at VMA edges and sampled addresses", c_vma_find),
    ("follow_phys/follow_page on user addresses of every task", c_follow_user),
    ("task_rss/task_vsize = rss_stat percpu sums, total_vm", c_task_rss),
    ("status Vm*/Rss* = 6.18 task_mem from drgn's task_rss and mm fields", c_status_vm),
    ("crash vm PID = mm, pgd, RSS, TOTAL_VM, VMAs", c_crash_vm),
    ("crash vtop -c PID ADDR = vtop --pid", c_crash_vtop_c),
    ("hugetlb_total_usage = meminfo Hugetlb", c_hugetlb_usage),
    ("xa_for_each over every inode's i_pages: indices, folios, nrpages", c_page_cache),
    ("i_pages DIRTY/WRITEBACK marks = PageDirty/PageWriteback", c_page_cache_marks),
    ("file VMAs: follow_page = the i_pages folio at the page's index", c_file_mappings),
]
