"""crash's ``vm PID`` (memory.c vm_area_dump) and ``vtop -c PID ADDR`` (memory.c do_vtop,
x86_64.c x86_64_uvtop_level4), from the snapshot.

``vm``: the task header (``PID: %-7ld  TASK: %lx  CPU: %-3s  COMMAND: "%s"``), the
PRINT_VM_DATA table — MM and PGD centred in 16 columns, RSS (get_task_mem_usage:
``percpu_counter_sum_positive`` of the file, anon and shmem counters, in k) centred in 6,
TOTAL_VM (k) centred in 8, each pair separated by two spaces — and then one
line per VMA as PRINT_VMA_DATA prints it: the vm_area_struct address centred in 16, START and
END right-justified in UVADDR_PRLEN (10 on x86-64), ``vm_flags`` as ``%6llx`` and the file's
path (anonymous VMAs have an empty FILE column, like crash; [heap] etc. are not printed).

``vtop -c PID ADDR``: the VIRTUAL/PHYSICAL line, then each level as crash prints it
(``   PGD: <physical slot> => <entry>`` .. ``   PTE: ...``; a PUD or PMD leaf ends the walk
with ``  PAGE: <base>  (1GB)`` / ``(2MB)``), the PTE/PHYSICAL/FLAGS table of the leaf entry,
the VMA holding the address, and the page line.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, NamedTuple

from mmintro.reader.errors import FaultError
from mmintro.reader.helpers.pgtable import mm_pgd_phys
from mmintro.reader.helpers.task import d_path, find_task, percpu_counter_sum
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.views.page import page_info

__all__ = ["VmRow", "crash_task_header", "mkstring", "render", "render_vtop", "vm", "vtop_pid"]

PAGE_SIZE = 4096
VADDR_PRLEN = 16
UVADDR_PRLEN = 10  # crash defs.h, X86_64
# arch/x86/include/asm/pgtable_types.h (#defines), in crash's x86_64_translate_pte order
_FLAG_BITS = (
    (0x1, "PRESENT"),
    (0x2, "RW"),
    (0x4, "USER"),
    (0x8, "PWT"),
    (0x10, "PCD"),
    (0x20, "ACCESSED"),
    (0x40, "DIRTY"),
)
_PSE, _PROTNONE, _GLOBAL, _NX = 0x80, 0x100, 0x100, 1 << 63
PTE_PFN_MASK = ((1 << 52) - 1) & ~0xFFF


def mkstring(s: str, size: int, center: bool = False, rjust: bool = False) -> str:
    """crash's tools.c mkstring(): CENTER puts the odd space on the right (LJUST) or the left
    (RJUST); otherwise LJUST/RJUST pad to ``size``."""
    extra = size - len(s)
    if extra <= 0:
        return s
    if center:
        if extra % 2:
            left, right = (extra // 2 + 1, extra // 2) if rjust else (extra // 2, extra // 2 + 1)
        else:
            left = right = extra // 2
        return " " * left + s + " " * right
    return " " * extra + s if rjust else s + " " * extra


def crash_task_header(task: Object) -> str:
    """crash's print_task_header() (task.c): ``PID: %-7ld  TASK: %s  CPU: %-3s  COMMAND: "%s"``
    with the task address left-justified in 16 columns."""
    return (
        f"PID: {task.pid.value_():<7}  TASK: {task.value_():<16x}  CPU: {task.thread_info.cpu.value_():<3}  "
        f'COMMAND: "{task.comm.string_().decode(errors="replace")}"'
    )


class VmRow(NamedTuple):
    vma: int
    start: int
    end: int
    flags: int
    file: str


_PATH_MAX_DEPTH = 256


def crash_pathname(file: Object) -> str:
    """The FILE column of crash's ``vm``: its get_pathname() of the file's dentry and mount.

    crash joins the dentry names up to the root of each file system, crossing mounts through
    ``mnt_mountpoint``; unlike the kernel's d_path() it adds no `` (deleted)``, and a pseudo
    dentry (its own parent, as shmem's "dev/zero" for a shared anonymous mapping) is printed by
    its bare name."""
    prog = file.prog_
    dentry = file.f_path.dentry
    mount = None
    mnt = file.f_path.mnt
    if mnt.value_():
        mount = Object(prog, prog.type("struct mount *"), mnt.value_() - prog.types.struct("mount").offsetof("mnt"))
    path = ""
    d = dentry
    first = True
    for _ in range(_PATH_MAX_DEPTH):
        if not d.value_() or not d.d_name.len.value_():
            break
        name = d.d_name.name.string_(limit=4096).decode(errors="replace")
        if first:
            path, first = name, False
        elif (len(name) > 1 or name != "/") and not path.startswith("/"):
            path = f"{name}/{path}"
        else:
            path = name + path
        parent = d.d_parent
        if parent.value_() == d.value_():
            if mount is None or mount.mnt_parent.value_() == mount.value_():
                break
            if path.startswith("//"):
                path = path[1:]
            d = mount.mnt_mountpoint
            mount = mount.mnt_parent
            continue
        d = parent
    return path[1:] if path.startswith("//") else path


def vm(prog: Program, pid: int) -> dict[str, Any]:
    """The data of crash's ``vm PID`` (LookupError if there is no such task)."""
    task = find_task(prog, pid)
    if task is None:
        raise LookupError(f"no task with pid {pid}")
    mm = task.mm
    out: dict[str, Any] = {
        "header": crash_task_header(task),
        "pid": pid,
        "task": task.value_(),
        "mm": mm.value_(),
        "pgd": 0,
        "rss_k": 0,
        "total_vm_k": 0,
        "vmas": [],
    }
    if not mm.value_():
        return out
    from mmintro.reader.helpers.task import for_each_vma

    out["pgd"] = mm.pgd.value_()
    prog_ = mm.prog_
    from mmintro.reader.validate import check_mm, note

    note(prog_, check_mm(task))  # TOTAL_VM within the user address space, RSS counters
    rss = sum(
        percpu_counter_sum(mm.rss_stat[prog_.constant(m).value_()].address_of_(), positive=True)
        for m in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES")
    )
    out["rss_k"] = rss * PAGE_SIZE // 1024
    out["total_vm_k"] = mm.total_vm.value_() * PAGE_SIZE // 1024
    rows = []
    for v in for_each_vma(mm):
        f = v.vm_file
        name = ""
        if f.value_():
            try:
                name = crash_pathname(f)
            except (FaultError, LookupError):
                name = "?"
        rows.append(VmRow(v.value_(), v.vm_start.value_(), v.vm_end.value_(), v.vm_flags.value_(), name)._asdict())
    out["vmas"] = rows
    return out


def _vm_data(mm: int, pgd: int, rss_k: int, total_k: int) -> list[str]:
    head = (
        mkstring("MM", VADDR_PRLEN, center=True)
        + "  "
        + mkstring("PGD", VADDR_PRLEN, center=True)
        + "  "
        + mkstring("RSS", 6, center=True)
        + "  "
        + mkstring("TOTAL_VM", 8, center=True)
    )
    vals = (
        mkstring(f"{mm:x}", VADDR_PRLEN, center=True)
        + "  "
        + mkstring(f"{pgd:x}", VADDR_PRLEN, center=True)
        + "  "
        + mkstring(f"{rss_k}k", 6, center=True)
        + "  "
        + mkstring(f"{total_k}k", 8, center=True)
    )
    return [head, vals]


def _vma_header() -> str:
    return (
        mkstring("VMA", VADDR_PRLEN, center=True)
        + " "
        + mkstring("START", UVADDR_PRLEN, center=True, rjust=True)
        + " "
        + mkstring("END", UVADDR_PRLEN, center=True, rjust=True)
        + " "
        + " FLAGS FILE"
    )


def _vma_line(r: dict[str, Any]) -> str:
    return (
        mkstring(f"{r['vma']:x}", VADDR_PRLEN, center=True)
        + " "
        + mkstring(f"{r['start']:x}", UVADDR_PRLEN, rjust=True)
        + " "
        + mkstring(f"{r['end']:x}", UVADDR_PRLEN, rjust=True)
        + f" {r['flags']:6x} {r['file']}"
    )


def render(v: dict[str, Any]) -> str:
    lines = [v["header"]]
    lines += _vm_data(v["mm"], v["pgd"], v["rss_k"], v["total_vm_k"])
    if v["mm"]:
        lines.append(_vma_header())
        lines += [_vma_line(r) for r in v["vmas"]]
    return "\n".join(lines) + "\n"


# -- vtop -c PID ADDR ---------------------------------------------------------------------------
def vtop_pid(prog: Program, pid: int, vaddr: int) -> dict[str, Any]:
    """Walk ``vaddr`` through the page tables of ``pid``'s mm (crash ``vtop -c PID ADDR``).

    :raises LookupError: no such task, or a kernel thread (no mm)
    :raises FaultError: a table on the walk is not RAM (a corrupt entry: one line)
    :return: levels (name, physical slot, entry), phys (None if not mapped), page size, the
        VMA holding the address (or None) and the page (``mmintro page`` fields)
    """
    task = find_task(prog, pid)
    if task is None:
        raise LookupError(f"no task with pid {pid}")
    mm = task.mm
    if not mm.value_():
        raise LookupError(f"pid {pid} is a kernel thread (no mm)")
    pgd = mm_pgd_phys(mm)
    levels = []
    phys = None
    size = PAGE_SIZE
    table = pgd
    names = tuple((lv.name.upper(), lv.shift) for lv in prog.levels)  # 4- or 5-level, as the dump ran
    leaf_entry = 0
    for _i, (name, shift) in enumerate(names):
        slot = table + 8 * ((vaddr >> shift) & 511)
        try:
            entry = int.from_bytes(prog.read_phys(slot, 8), "little")
        except FaultError:
            above = levels[-1]["level"] if levels else "mm->pgd"
            raise FaultError(
                vaddr, f"pid {pid}: the {name} table at physical {table:#x} (from the {above} entry) is not RAM"
            ) from None
        levels.append({"level": name, "slot": slot, "entry": entry})
        leaf_entry = entry
        present = entry & 1 if name in ("PGD", "P4D", "PUD") else entry & (1 | _PROTNONE)
        if not present:
            break
        if name == "PTE" or (name in ("PUD", "PMD") and entry & _PSE):
            size = 1 << shift
            phys = (entry & PTE_PFN_MASK & ~(size - 1)) | (vaddr & (size - 1))
            break
        table = entry & PTE_PFN_MASK
    vma = None
    from mmintro.reader.helpers.task import for_each_vma

    for v in for_each_vma(mm):
        if v.vm_start.value_() <= vaddr < v.vm_end.value_():
            f = v.vm_file
            vma = VmRow(
                v.value_(), v.vm_start.value_(), v.vm_end.value_(), v.vm_flags.value_(), d_path(f) if f.value_() else ""
            )._asdict()
            break
    page = None
    if phys is not None:
        try:
            page = page_info(prog, phys >> 12)
        except ValueError:
            page = None
    try:  # crash's PADDR_PRLEN: the width of the highest physical address in hex
        paddr_prlen = len(f"{prog['max_pfn'].value_() << 12:x}")
    except KeyError:
        paddr_prlen = 8
    swap = None
    if phys is None and levels and levels[-1]["level"] == "PTE" and leaf_entry:
        # a swap PTE: pte_to_swp_entry() -- the device, offset, swap count and swap cache folio
        from mmintro.reader.helpers.swap import swap_entry_info

        swap = asdict(swap_entry_info(prog, leaf_entry))
    return {
        "pid": pid,
        "vaddr": vaddr,
        "phys": phys,
        "page_size": size,
        "levels": levels,
        "leaf_entry": leaf_entry,
        "vma": vma,
        "page": page,
        "paddr_prlen": paddr_prlen,
        "swap": swap,
    }


def _pte_flags(pte: int) -> str:
    names = [n for bit, n in _FLAG_BITS if pte & bit]
    if pte & _PSE and pte & 1:
        names.append("PSE")
    if pte & _PROTNONE and not pte & 1:
        names.append("PROTNONE")
    if pte & _GLOBAL and pte & 1:
        names.append("GLOBAL")
    if pte & _NX:
        names.append("NX")
    return "(" + ("|".join(names) if pte & (1 | _PROTNONE) else "no mapping") + ")"


def _swap_dev(sw: dict[str, Any]) -> str:
    """crash's get_swapdev(): the device's path, or "(unknown swap location)"."""
    return sw["path"] if sw["path"] is not None else "(unknown swap location)"


def render_vtop(v: dict[str, Any]) -> str:
    lines = [mkstring("VIRTUAL", UVADDR_PRLEN) + "  " + mkstring("PHYSICAL", VADDR_PRLEN)]
    if v["vma"] is None:
        lines.append(mkstring(f"{v['vaddr']:x}", UVADDR_PRLEN) + "  (not accessible)")
        return "\n".join(lines) + "\n\n"
    if v["phys"] is None:
        lines.append(mkstring(f"{v['vaddr']:x}", UVADDR_PRLEN) + "  (not mapped)")
    else:
        lines.append(mkstring(f"{v['vaddr']:x}", UVADDR_PRLEN) + "  " + mkstring(f"{v['phys']:x}", VADDR_PRLEN))
    lines.append("")
    for lv in v["levels"]:
        if lv["entry"] is None:
            lines.append(f"   {lv['level']}: {lv['slot']:x} => ({lv.get('error', 'unreadable')})")
            continue
        lines.append(f"   {lv['level']}: {lv['slot']:x} => {lv['entry']:x}")
    if v["phys"] is not None:
        size = v["page_size"]
        base = v["phys"] & ~(size - 1)
        suffix = {1 << 30: "  (1GB)", 1 << 21: "  (2MB)"}.get(size, "  ")
        lines.append(f"  PAGE: {base:x}{suffix}")
        lines.append("")
        pte = v["leaf_entry"]
        ptebuf, physbuf = f"{pte:x}", f"{pte & PTE_PFN_MASK & ~(size - 1):x}"
        l1, l2 = max(len(ptebuf), 3), max(len(physbuf), 8)
        lines.append(mkstring("PTE", l1, center=True) + "  " + mkstring("PHYSICAL", l2, center=True) + "  FLAGS")
        lines.append(
            mkstring(ptebuf, l1, center=True, rjust=True)
            + "  "
            + mkstring(physbuf, l2, center=True, rjust=True)
            + "  "
            + _pte_flags(pte)
        )
    sw = v.get("swap")
    if sw is not None:  # x86_64_translate_pte() of a swap PTE: PTE, SWAP (device), OFFSET
        dev, off = _swap_dev(sw), str(sw["offset"])
        ptebuf = f"{v['leaf_entry']:x}"
        l1, l2, l3 = max(len(ptebuf), 3), max(len(dev), 4), max(len(off), 6)
        lines.append("")
        lines.append(
            mkstring("PTE", l1, center=True)
            + "  "
            + mkstring("SWAP", l2, center=True)
            + "  "
            + mkstring("OFFSET", l3, center=True)
        )
        lines.append(
            mkstring(ptebuf, l1, center=True, rjust=True)
            + "  "
            + mkstring(dev, l2, center=True, rjust=True)
            + "  "
            + mkstring(off, l3, center=True, rjust=True)
        )
    lines.append("")
    lines.append(_vma_header())
    lines.append(_vma_line(v["vma"]))
    if sw is not None:  # do_vtop(): swap_location() of the not-present PTE
        lines.append("")
        lines.append(f"SWAP: {_swap_dev(sw)}  OFFSET: {sw['offset']}")
        lines.append("")  # do_vtop's closing newline
    p = v["page"]
    if p is not None:  # dump_mem_map() for the physical address (memory.c)
        plen = max(v.get("paddr_prlen", 8), 8)
        lines.append("")
        lines.append(
            mkstring("PAGE", VADDR_PRLEN, center=True)
            + " "
            + mkstring("PHYSICAL", plen, rjust=True)
            + " "
            + mkstring("MAPPING", VADDR_PRLEN, center=True, rjust=True)
            + " "
            + mkstring("INDEX", 8, center=True, rjust=True)
            + "CNT FLAGS"
        )
        names = ",".join(n.removeprefix("PG_") for n in p.get("flag_names", []))  # translate_page_flags
        lines.append(
            f"{p['page']:<16x} {p['phys']:>{plen}x} {p['mapping']:<16x} {p['index']:>8x} {p['refcount']:>2} "
            f"{p['flags']:x}" + (f" {names}" if names else "")
        )
    return "\n".join(lines) + "\n"
