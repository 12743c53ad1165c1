"""Write a booted simulated kernel as a snapshot pair: NAME.vmcore + NAME.vmlinux."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmintro.kernel import panic, timekeeping
from mmintro.kernel.kexec_core import prstatus_notes
from mmintro.kernel.vmcoreinfo import vmcoreinfo
from mmintro.snapshot.kdump import DL_EXCLUDE_FREE, DUMP_LEVEL, write_kdump
from mmintro.snapshot.vmcore import merge_touching, write_vmcore
from mmintro.snapshot.vmlinux import ImageSection, Symbol, dump_types_section, write_vmlinux

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def snapshot_paths(name: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(name)
    if p.suffix in (".vmcore", ".vmlinux"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".vmcore"), p.with_name(p.name + ".vmlinux")


def image_sections(k: Kernel) -> list[ImageSection]:
    """The kernel image's sections with the bytes the image holds at the snapshot (a real
    vmlinux holds the link-time bytes; the simulated image has no other)."""
    out = []
    extents = {name: k.image.sections[name[1:].replace(".", "_")] for name in _IMAGE}
    if k.image.percpu is not None:
        extents[".data..percpu"] = k.image.percpu
    for name, (lo, hi) in extents.items():
        kind = _IMAGE.get(name, "data")
        data = None if kind == "bss" else k.mem.read(lo, hi - lo)
        out.append(ImageSection(name, kind, k.image.virt(lo), lo, hi - lo, data))
    return out


#: vmlinux section -> kind (and its extent in KernelImage.sections)
_IMAGE = {".text": "text", ".rodata": "rodata", ".data": "data", ".init.text": "text", ".bss": "bss"}


#: NAME.vmcore's formats: an ELF core (what /proc/vmcore is) or makedumpfile's kdump-compressed file
CORE_FORMATS = ("elf", "kdump")


def save(
    k: Kernel,
    name: str | os.PathLike,
    gdb_aliases: bool = False,
    core_format: str = "elf",
    threads: int = 1,
    exclude_free: bool = False,
) -> tuple[Path, Path]:
    """Store ``k`` as NAME.vmcore and NAME.vmlinux; returns both paths.

    ``core_format`` "elf": an ELF core whose RAM segments carry their direct-map address in
    ``p_vaddr``, as kdump's do.  ``gdb_aliases`` adds PT_LOADs with virtual addresses for the
    kernel image and the vmemmap, so that GDB (which cannot walk page tables) can print
    globals; drgn then uses those instead of the page tables, so they are off by default.

    ``core_format`` "kdump": makedumpfile's kdump-compressed format (zlib; zero pages share
    one page), with the same notes and VMCOREINFO; crash and drgn read it, GDB does not.
    ``threads`` compress pages in parallel.  ``exclude_free`` leaves the free buddy blocks out
    (makedumpfile ``-d 17``): the file no longer grows with free memory (except for its struct
    pages and the bitmaps), and reading a free page's contents fails as filtered.
    """
    if core_format not in CORE_FORMATS:
        raise ValueError(f"unknown vmcore format {core_format!r} (known: {', '.join(CORE_FORMATS)})")
    if exclude_free and core_format != "kdump":
        raise ValueError("excluding free pages needs the kdump format: an ELF core has no filtered pages")
    if gdb_aliases and core_format != "elf":
        raise ValueError("GDB alias segments need the ELF format: GDB cannot read a kdump-compressed vmcore")
    core_path, vmlinux_path = snapshot_paths(name)
    core_path.parent.mkdir(parents=True, exist_ok=True)
    panic.sysrq_crash(k)
    k.sync()
    build_id = k.build_id()
    symbols = [Symbol(s.name, s.address, s.size, s.kind, s.type) for s in k.image.symbols.values()]
    symbols.sort(key=lambda s: (s.address, s.name))
    write_vmlinux(
        vmlinux_path,
        k.T,
        symbols,
        build_id,
        sections={".mmintro.types": dump_types_section(k.T)},
        image=image_sections(k),
    )
    ram: list[tuple[int, int]] = []  # memblock.memory, touching regions (node boundaries) merged
    for r in k.memblock.memory:
        if ram and ram[-1][1] == r.base:
            ram[-1] = (ram[-1][0], r.end)
        else:
            ram.append((r.base, r.end))
    crashtime = timekeeping.wall_seconds(k)
    info = vmcoreinfo(k, build_id, crashtime=crashtime)
    if core_format == "kdump":
        write_kdump(
            core_path,
            k.mem.nonzero_runs(),
            info,
            ram_ranges=ram,
            prstatus=prstatus_notes(k),
            utsname=utsname(k),
            timestamp=crashtime,
            nr_cpus=k.config.cpus,
            phys_base=k.phys_base,
            threads=threads,
            exclude=free_pfn_ranges(k) if exclude_free else (),
            dump_level=DUMP_LEVEL | (DL_EXCLUDE_FREE if exclude_free else 0),
        )
        return core_path, vmlinux_path
    aliases = []
    if gdb_aliases:
        aliases.append((k.image.virt(k.image.start), k.image.start, k.image.end - k.image.start))
        for nr, phys in k.section_memmap.items():
            aliases.append((k.pfn_to_page(nr << 15), phys, 2 << 20))
    write_vmcore(
        core_path,
        k.mem.nonzero_runs(),
        info,
        ram_ranges=ram,
        aliases=aliases,
        prstatus=prstatus_notes(k),
        direct_map=k.page_offset_base,
    )
    return core_path, vmlinux_path


def save_unchanged(k: Kernel, name: str | os.PathLike, **options: Any) -> tuple[Path, Path]:
    """:func:`save` of ``k`` as it is now, leaving ``k`` exactly as it was, so that a scenario can
    write a snapshot part-way and go on.  Saving changes the machine -- it crashes it (sysrq's
    panic, with its log lines) and syncs the allocator's books into memory -- so the save runs
    in a forked copy of this process (the copy-on-write fork(2) the simulator models): the
    snapshot is the crash dump the machine would leave at this point, and ``k`` never saw the
    crash.  ``options`` are :func:`save`'s; an exception in the copy is raised here."""
    if not hasattr(os, "fork"):
        raise OSError("writing a snapshot part-way needs fork(2), which this platform does not have")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: save, report, and leave without running the parent's exit handlers
        code = 0
        try:
            os.close(rfd)
            save(k, name, **options)
            report = b""
        except BaseException as e:  # every failure goes back to the parent
            code = 1
            try:
                report = pickle.dumps(e)
            except Exception:
                report = pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
        try:
            with os.fdopen(wfd, "wb") as f:
                f.write(report)
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        report = f.read()
    _pid, status = os.waitpid(pid, 0)
    if report:
        try:
            e = pickle.loads(report)
        except Exception:
            e = RuntimeError(f"saving {os.fspath(name)} failed (an exception that cannot be passed back)")
        raise e
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"saving {os.fspath(name)} failed: the writer exited with status {status:#x}")
    return snapshot_paths(name)


def free_pfn_ranges(k: Kernel) -> list[tuple[int, int]]:
    """The pfn ranges of the free buddy blocks -- each PageBuddy head and the 2^order pages
    after it, what makedumpfile's ``-d 16`` excludes (per-CPU list pages are not PageBuddy
    and stay) -- merged, in address order."""
    return merge_touching(
        sorted((pfn, pfn + (1 << order)) for zones in k.zones for z in zones for pfn, order in z.free_order.items())
    )


def utsname(k: Kernel) -> bytes:
    """``init_uts_ns.name`` (struct new_utsname) as the snapshot's memory holds it: the bytes
    makedumpfile copies into the kdump header."""
    name = k.kmem.addr(k.sym("init_uts_ns"), "uts_namespace", "name")
    return k.mem.read(k.pa(name), k.T.sizeof("struct new_utsname"))
