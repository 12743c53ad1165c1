"""Report commands: each reads one snapshot (or the default machine's) through the reader,
computes rows with a view (mmintro.views) and renders them as /proc-like text or JSON."""

from __future__ import annotations

import os

import click

from mmintro.cli.errors import MmintroError
from mmintro.cli.output import emit, json_option
from mmintro.cli.snapshot import load, snapshot_argument
from mmintro.reader.errors import FaultError, SnapshotError


class _lazy:
    """A view module imported when a command first uses it (start-up loads none of them)."""

    def __init__(self, name: str) -> None:
        self._name, self._mod = name, None

    def __getattr__(self, attr: str):
        if self._mod is None:
            import importlib

            self._mod = importlib.import_module(self._name)
        return getattr(self._mod, attr)


buddyinfo_view = _lazy("mmintro.views.buddyinfo")
compaction_view = _lazy("mmintro.views.compaction")
dmesg_view = _lazy("mmintro.views.dmesg")
fragmentation_view = _lazy("mmintro.views.fragmentation")
iomem_view = _lazy("mmintro.views.iomem")
kmem_s_view = _lazy("mmintro.views.kmem_s")
meminfo_view = _lazy("mmintro.views.meminfo")
page_view = _lazy("mmintro.views.page")
page_types_view = _lazy("mmintro.views.page_types")
pagetypeinfo_view = _lazy("mmintro.views.pagetypeinfo")
pressure_view = _lazy("mmintro.views.pressure")
slabinfo_view = _lazy("mmintro.views.slabinfo")
swaps_view = _lazy("mmintro.views.swaps")
vmallocinfo_view = _lazy("mmintro.views.vmallocinfo")
vmstat_view = _lazy("mmintro.views.vmstat")
vtop_view = _lazy("mmintro.views.vtop")
whatis_view = _lazy("mmintro.views.whatis")
zoneinfo_view = _lazy("mmintro.views.zoneinfo")

__all__ = ["COMMANDS"]


def _int(text: str, what: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        msg = f"{text!r} is not a number (decimal, or 0x... hex)"
        raise click.BadParameter(msg, param_hint=what) from None
    if not 0 <= v < 1 << 64:  # not an address or pfn of a 64-bit kernel (never truncated)
        raise click.BadParameter(f"{text!r} is wider than 64 bits", param_hint=what)
    return v


def _check_address(text: str, what: str = "ADDR") -> None:
    """An address argument's form (mmintro.views.inspect.parse_address), before the snapshot
    is opened: a usage error (exit 2) when it is none."""
    from mmintro.views.inspect import check_address

    try:
        check_address(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=what) from None


def _address(prog, text: str) -> int:  # type: ignore[no-untyped-def]
    """ADDR as crash reads it: hex with or without 0x, 0dNNN, a symbol or symbol+offset."""
    from mmintro.views.inspect import parse_address

    return parse_address(prog, text)


def _snapshot_and(args: tuple[str, ...], what: str) -> tuple[str | None, str]:
    """``[SNAPSHOT] VALUE`` for commands whose last argument is required."""
    if len(args) == 1:
        return None, args[0]
    if len(args) == 2:
        return args[0], args[1]
    raise click.UsageError(f"expected [SNAPSHOT] {what}, got {len(args)} arguments")


@click.command("iomem")
@snapshot_argument
@json_option
def iomem(snapshot: str | None, as_json: bool) -> None:
    """/proc/iomem: the iomem_resource tree."""
    with load(snapshot) as prog:
        rows, width = iomem_view.iomem(prog)
        emit(iomem_view.render(rows, width), [r._asdict() for r in rows], as_json)


@click.command("zoneinfo")
@snapshot_argument
@json_option
def zoneinfo(snapshot: str | None, as_json: bool) -> None:
    """/proc/zoneinfo: watermarks, counters and pagesets of every zone."""
    with load(snapshot) as prog:
        zones = zoneinfo_view.zoneinfo(prog)
        emit(zoneinfo_view.render(zones), zoneinfo_view.to_json(zones), as_json)


@click.command("buddyinfo")
@snapshot_argument
@json_option
def buddyinfo(snapshot: str | None, as_json: bool) -> None:
    """/proc/buddyinfo: free blocks per order in each populated zone."""
    with load(snapshot) as prog:
        rows = buddyinfo_view.buddyinfo(prog)
        emit(buddyinfo_view.render(rows), [r._asdict() for r in rows], as_json)


@click.command("page")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] PFN")
@json_option
def page(args: tuple[str, ...], as_json: bool) -> None:
    """Decode the struct page of PFN (decimal or 0x hex)."""
    snapshot, value = _snapshot_and(args, "PFN")
    pfn = _int(value, "PFN")
    with load(snapshot) as prog:
        info = page_view.page_info(prog, pfn)
        emit(page_view.render(info), info, as_json)


@click.command("page-types")
@snapshot_argument
@click.option(
    "--kpf",
    is_flag=True,
    help="the kernel tool's KPF_* bits, as /proc/kpageflags exports them "
    "(stable_page_flags), and its table with long-symbolic-flags",
)
@click.option(
    "-r",
    "--raw",
    is_flag=True,
    help="with --kpf: page-types -r (the kernel-hacker bits, overloaded "
    "flags expanded) instead of its well-known flags",
)
@json_option
def page_types(snapshot: str | None, kpf: bool, raw: bool, as_json: bool) -> None:
    """Pages per combination of flags and page type (like tools/mm/page-types)."""
    if raw and not kpf:
        raise click.UsageError("--raw needs --kpf")
    with load(snapshot) as prog:
        rows = page_types_view.page_types(prog, kpf=kpf, raw=raw)
        if kpf:
            data = [{col: getattr(r, field) for col, field in page_types_view.KPF_COLUMNS.items()} for r in rows]
        else:
            data = [
                {col: getattr(r, field) for col, field in page_types_view.COLUMNS.items()} | {"tail": r.tail}
                for r in rows
            ]
        emit(page_types_view.render(rows, kpf=kpf), data, as_json)


@click.command("vtop")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] ADDR")
@click.option("--pid", "pid", default=None, help="translate through this process's page tables (crash vtop -c PID)")
@json_option
def vtop(args: tuple[str, ...], pid: str | None, as_json: bool) -> None:
    """Translate the virtual address ADDR level by level (like crash's vtop); with --pid, a
    user address through that task's pgd (PUD and PMD leaves included).  ADDR is hex with or
    without 0x, decimal as 0dNNN, a symbol or symbol+offset."""
    snapshot, value = _snapshot_and(args, "ADDR")
    _check_address(value)
    pid_n = None if pid is None else _int(pid, "--pid")
    with load(snapshot) as prog:
        addr = _address(prog, value)
        if pid_n is not None and addr < 1 << 47:  # a user address (crash: below mm->task_size); kernel ones below
            vm_view = _lazy("mmintro.views.vm")
            try:
                v = vm_view.vtop_pid(prog, pid_n, addr)
            except LookupError as e:
                raise click.ClickException(str(e)) from None
            emit(vm_view.render_vtop(v), v, as_json)
            return
        try:
            v = vtop_view.vtop(prog, addr)
        except FaultError as e:
            raise FaultError(addr, f"vtop: not mapped, {e.message}") from None
        emit(vtop_view.render(v), v, as_json)


@click.command("pagetypeinfo")
@snapshot_argument
@json_option
def pagetypeinfo(snapshot: str | None, as_json: bool) -> None:
    """/proc/pagetypeinfo: free blocks per migratetype and order, pageblocks per migratetype."""
    with load(snapshot) as prog:
        nodes = pagetypeinfo_view.pagetypeinfo(prog)
        emit(pagetypeinfo_view.render(nodes), pagetypeinfo_view.to_json(nodes), as_json)


@click.command("vmstat")
@snapshot_argument
@json_option
def vmstat(snapshot: str | None, as_json: bool) -> None:
    """/proc/vmstat: global counters, dirty thresholds and vm events."""
    with load(snapshot) as prog:
        stats = vmstat_view.vmstat(prog)
        emit(vmstat_view.render(stats), stats, as_json)


@click.command("meminfo")
@snapshot_argument
@json_option
def meminfo(snapshot: str | None, as_json: bool) -> None:
    """/proc/meminfo: memory totals in kB (HugePages_* as counts)."""
    with load(snapshot) as prog:
        lines = meminfo_view.meminfo(prog)
        emit(meminfo_view.render(lines), {ln.name: ln.value for ln in lines}, as_json)


@click.command("fragmentation")
@snapshot_argument
@click.option(
    "--index",
    "which",
    type=click.Choice(["unusable", "extfrag"]),
    default=None,
    help="print only this debugfs file (default: both, each after a '# path' line)",
)
@json_option
def fragmentation(snapshot: str | None, which: str | None, as_json: bool) -> None:
    """debugfs extfrag/unusable_index and extfrag/extfrag_index per zone and order."""
    name = f"{which}_index" if which else None
    with load(snapshot) as prog:
        rows = fragmentation_view.fragmentation(prog)
        emit(fragmentation_view.render(rows, name), fragmentation_view.to_json(rows, name), as_json)


@click.command("pressure")
@snapshot_argument
@click.option(
    "--resource",
    "resource",
    type=click.Choice(["memory", "cpu", "io", "irq", "all"]),
    default="memory",
    show_default=True,
    help="which /proc/pressure file (all: memory, cpu and io, each after a '# path' line)",
)
@click.option(
    "--stored",
    is_flag=True,
    help="the averages and totals as the last aggregation left them (psi_show first folds in the "
    "per-CPU times at the dump's latest clock)",
)
@json_option
def pressure(snapshot: str | None, resource: str, stored: bool, as_json: bool) -> None:
    """/proc/pressure/memory (or cpu, io): PSI stall averages and totals, as psi_show prints them."""
    names = pressure_view.RESOURCES if resource == "all" else (resource,)
    with load(snapshot) as prog:
        lines = pressure_view.pressure(prog, names, stored)
        emit(pressure_view.render(lines), pressure_view.to_json(lines), as_json)


@click.command("compaction")
@snapshot_argument
@json_option
def compaction(snapshot: str | None, as_json: bool) -> None:
    """Compaction state: each zone's cached scanner pfns, deferral and skip hints, kcompactd's
    request per node, fragmentation scores, and the compact_* / pgmigrate_* events."""
    with load(snapshot) as prog:
        nodes, zones, events = compaction_view.compaction(prog)
        emit(compaction_view.render(nodes, zones, events), compaction_view.to_json(nodes, zones, events), as_json)


COMMANDS = [
    iomem,
    zoneinfo,
    buddyinfo,
    page,
    page_types,
    vtop,
    pagetypeinfo,
    vmstat,
    meminfo,
    fragmentation,
    pressure,
    compaction,
]


@click.command("slabinfo")
@snapshot_argument
@json_option
def slabinfo(snapshot: str | None, as_json: bool) -> None:
    """/proc/slabinfo (version 2.1): every slab cache, newest first, from SLUB's counters."""
    with load(snapshot) as prog:
        rows = slabinfo_view.slabinfo(prog)
        emit(slabinfo_view.render(rows), slabinfo_view.to_json(rows), as_json)


def _is_snapshot(arg: str) -> bool:
    return any(os.path.exists(arg + ext) for ext in ("", ".vmcore")) and not os.path.isdir(arg)


@click.command("kmem-s")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] [CACHE]")
@json_option
def kmem_s(args: tuple[str, ...], as_json: bool) -> None:
    """Slab caches like crash's kmem -s; with CACHE, its CPU slabs, freelists and partial
    lists like kmem -S (ALLOCATED counts come from an exact census of every freelist)."""
    if len(args) > 2:
        raise click.UsageError(f"expected [SNAPSHOT] [CACHE], got {len(args)} arguments")
    if (
        len(args) == 1
        and not _is_snapshot(args[0])
        and (os.sep in args[0] or args[0].endswith((".vmcore", ".vmlinux")))
    ):
        # a cache name has no "/": this was meant as a snapshot (a typo must not read the default machine)
        raise SnapshotError(
            f"vmcore '{args[0] if args[0].endswith('.vmcore') else args[0] + '.vmcore'}' does not "
            "exist (a cache name has no '/')"
        )
    snapshot, cache = (
        (args + (None, None))[:2] if len(args) != 1 else ((args[0], None) if _is_snapshot(args[0]) else (None, args[0]))
    )
    with load(snapshot) as prog:
        if cache is None:
            rows = kmem_s_view.kmem_s(prog)
            emit(kmem_s_view.render(rows), [r._asdict() for r in rows], as_json)
        else:
            detail = kmem_s_view.cache_detail(prog, cache)
            emit(kmem_s_view.render_detail(detail), detail, as_json)


@click.command("vmallocinfo")
@snapshot_argument
@json_option
def vmallocinfo(snapshot: str | None, as_json: bool) -> None:
    """/proc/vmallocinfo: busy vmap areas node by node, then unpurged ones (raw addresses)."""
    with load(snapshot) as prog:
        rows = vmallocinfo_view.vmallocinfo(prog)
        emit(vmallocinfo_view.render(rows), vmallocinfo_view.to_json(rows), as_json)


@click.command("whatis")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] ADDR")
@click.option("--pfn", "is_pfn", is_flag=True, help="ADDR is a page frame number (its struct page).")
@json_option
def whatis(args: tuple[str, ...], is_pfn: bool, as_json: bool) -> None:
    """What the kernel address ADDR is, like crash's kmem ADDR: a slab object, a free or
    per-CPU-list page, a vmalloc area, a direct-map page, a struct page, a page table, a
    symbol, a per-CPU variable, or unmapped.  For a user page (its direct-map address, its
    struct page, or --pfn) also who maps it: the rmap walk (anon_vma / i_mmap trees).  ADDR is
    hex with or without 0x, decimal as 0dNNN, a symbol or symbol+offset; PFN is decimal or 0x hex."""
    snapshot, value = _snapshot_and(args, "PFN" if is_pfn else "ADDR")
    if is_pfn:
        addr = _int(value, "PFN")
    else:
        _check_address(value)
    with load(snapshot) as prog:
        if not is_pfn:
            addr = _address(prog, value)
        if is_pfn:
            from mmintro.reader.helpers.mm import pfn_to_page

            page_view.check_pfn(prog, addr)  # a pfn with no struct page: one line, exit 1, as `page` does
            addr = pfn_to_page(prog, addr).value_()
        w = whatis_view.whatis(prog, addr)
        emit(whatis_view.render(w), w, as_json)


COMMANDS += [slabinfo, kmem_s, vmallocinfo, whatis]


@click.command("dmesg")
@snapshot_argument
@json_option
def dmesg(snapshot: str | None, as_json: bool) -> None:
    """The kernel log (dmesg): every printk record in the ring, oldest first, each line after
    its [seconds.microseconds] timestamp."""
    with load(snapshot) as prog:
        records = dmesg_view.dmesg(prog)
        emit(dmesg_view.render(records), dmesg_view.to_json(records), as_json)


COMMANDS += [dmesg]


@click.command("swaps")
@snapshot_argument
@click.option(
    "--crash",
    "crash_style",
    is_flag=True,
    help="crash's swap table (SWAP_INFO_STRUCT, TYPE, SIZE, USED, PCT, PRI, FILENAME) instead of /proc/swaps",
)
@json_option
def swaps(snapshot: str | None, crash_style: bool, as_json: bool) -> None:
    """/proc/swaps: each swap device or file switched on (path, type, size, used, priority)."""
    with load(snapshot) as prog:
        rows = swaps_view.swaps(prog)
        text = swaps_view.render_crash(rows) if crash_style else swaps_view.render(rows)
        emit(text, [r._asdict() for r in rows], as_json)


COMMANDS += [swaps]


# -- processes (mmintro.views.ps, mmintro.views.maps) ---------------------------------------------
maps_view = _lazy("mmintro.views.maps")
ps_view = _lazy("mmintro.views.ps")


@click.command("ps")
@snapshot_argument
@json_option
def ps(snapshot: str | None, as_json: bool) -> None:
    """Processes like crash's ps: idle tasks, then init_task.tasks (PID, PPID, CPU, TASK, ST,
    %MEM, VSZ, RSS, COMM)."""
    with load(snapshot) as prog:
        rows = ps_view.ps(prog)
        emit(ps_view.render(rows), [r._asdict() for r in rows], as_json)


@click.command("maps")
@click.argument("args", nargs=-1, metavar="[SNAPSHOT] PID")
@json_option
def maps(args: tuple[str, ...], as_json: bool) -> None:
    """/proc/PID/maps of the process PID, from its mm->mm_mt."""
    snapshot, value = _snapshot_and(args, "PID")
    pid = _int(value, "PID")
    with load(snapshot) as prog:
        try:
            rows = maps_view.maps(prog, pid)
        except LookupError as e:
            raise click.ClickException(str(e)) from None
        emit(maps_view.render(rows), [r._asdict() for r in rows], as_json)


COMMANDS += [ps, maps]


# -- per-process memory views (mmintro.views.smaps, status, numa_maps, vm) -------------------------
numa_maps_view = _lazy("mmintro.views.numa_maps")
smaps_view = _lazy("mmintro.views.smaps")
status_view = _lazy("mmintro.views.status")
vm_view = _lazy("mmintro.views.vm")


def _pid_command(name: str, doc: str):  # type: ignore[no-untyped-def]
    def deco(fn):  # type: ignore[no-untyped-def]
        @click.command(name, help=doc)
        @click.argument("args", nargs=-1, metavar="[SNAPSHOT] PID")
        @json_option
        def cmd(args: tuple[str, ...], as_json: bool) -> None:
            snapshot, value = _snapshot_and(args, "PID")
            pid = _int(value, "PID")
            if pid == 0:  # the idle task is on no pid list: /proc has no 0
                raise MmintroError("no process 0: PID 0 is the idle task (swapper), which /proc does not list")
            with load(snapshot) as prog:
                try:
                    text, data, findings = fn(prog, pid)
                except LookupError as e:
                    raise MmintroError(str(e)) from None
                if findings:  # a corrupt page table: the report as far as it goes, then the findings (exit 3)
                    from mmintro.reader.validate import Finding, note

                    note(
                        prog,
                        [
                            Finding(
                                "page_tables",
                                f"pid {pid}",
                                f,
                                "arch/x86: each page table is a page of RAM with one parent entry at the level above",
                            )
                            for f in findings
                        ],
                    )
                emit(text, data, as_json)

        return cmd

    return deco


@_pid_command(
    "smaps", "/proc/PID/smaps (6.18 format): every VMA with Rss, Pss, ... VmFlags, from one columnar page-table scan."
)
def smaps(prog, pid):  # type: ignore[no-untyped-def]
    rep = smaps_view.smaps(prog, pid)
    return smaps_view.render(rep), [v.to_json() for v in rep.vmas], rep.findings


@_pid_command("smaps-rollup", "/proc/PID/smaps_rollup: the smaps fields summed over every VMA.")
def smaps_rollup(prog, pid):  # type: ignore[no-untyped-def]
    from mmintro.reader.helpers.task import find_task

    task = find_task(prog, pid)
    if task is not None and not task.mm.value_():  # show_smaps_rollup(): no mm, -ESRCH
        comm = task.comm.string_().decode(errors="replace")
        raise LookupError(
            f"pid {pid} ({comm}) is a kernel thread: it has no mm, and reading its smaps_rollup fails (ESRCH)"
        )
    start, end, st, findings = smaps_view.smaps_rollup(prog, pid)
    data = {"start": start, "end": end} | {k: v for k, v in st.fields_kb(rollup=True)}
    return smaps_view.render_rollup(start, end, st), data, findings


@_pid_command(
    "status",
    "/proc/PID/status as 6.18's proc_pid_status prints it: Name, Umask, State, ids, creds, "
    "FDSize, Groups, NS*, the Vm*/Rss* lines of task_mem(), signals, capabilities, seccomp, "
    "speculation, cpus and mems allowed, context switches (a line whose structure the snapshot lacks is "
    "left out).",
)
def status(prog, pid):  # type: ignore[no-untyped-def]
    lines = status_view.status(prog, pid)
    return status_view.render(lines), {ln.name: (ln.kb if ln.kb is not None else ln.value) for ln in lines}, []


@_pid_command(
    "numa-maps",
    "/proc/PID/numa_maps: policy, file/heap/stack, anon/dirty/mapped/mapmax/active and pages per node of every VMA.",
)
def numa_maps(prog, pid):  # type: ignore[no-untyped-def]
    rows = numa_maps_view.numa_maps(prog, pid)
    return numa_maps_view.render(rows), numa_maps_view.to_json(rows), []


@_pid_command("vm", "crash's vm PID: the mm, pgd, RSS and TOTAL_VM, then every VMA (address, start, end, flags, file).")
def vm(prog, pid):  # type: ignore[no-untyped-def]
    v = vm_view.vm(prog, pid)
    return vm_view.render(v), v, []


oom_score_view = _lazy("mmintro.views.oom_score")


@_pid_command(
    "oom-score",
    "/proc/PID/oom_score and /proc/PID/oom_score_adj: proc_oom_score() from oom_badness() "
    "(rss + swap entries + page tables, oom_score_adj * totalpages / 1000).",
)
def oom_score(prog, pid):  # type: ignore[no-untyped-def]
    row = oom_score_view.oom_score(prog, pid)
    return oom_score_view.render(row), row._asdict(), []


@click.command("oom-scores")
@snapshot_argument
@json_option
def oom_scores(snapshot: str | None, as_json: bool) -> None:
    """Every process's /proc/PID/oom_score and oom_score_adj, with its oom_badness() in pages
    (- for a task the OOM killer may not choose: init, kernel threads, oom_score_adj -1000)."""
    with load(snapshot) as prog:
        rows = oom_score_view.oom_scores(prog)
        emit(oom_score_view.render_table(rows), [r._asdict() for r in rows], as_json)


COMMANDS += [smaps, smaps_rollup, status, numa_maps, vm, oom_score, oom_scores]
