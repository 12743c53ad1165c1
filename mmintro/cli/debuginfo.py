"""``mmintro debuginfo``: DWARF and symbols for a real kernel, from its BTF and a dump's kallsyms.

    mmintro debuginfo --kernel VMLINUZ -o FILE VMCORE
    mmintro debuginfo --kernel VMLINUZ --system-map System.map -o FILE

FILE is an ELF debug file for drgn (``drgn -c VMCORE -s FILE``) and GDB: the types of the
kernel's BTF as DWARF-4, its globals as variables, its symbols, its build ID.  Addresses are
link-time addresses (drgn adds the dump's KERNELOFFSET), so one file serves every boot of
that build when it is made from a System.map; made from a dump, it has that dump's symbols.
"""

from __future__ import annotations

import os

import click

from mmintro.reader.errors import SnapshotError

__all__ = ["command"]


@click.command("debuginfo")
@click.argument("vmcore", required=False, metavar="[VMCORE]")
@click.option(
    "--kernel",
    "kernel",
    required=True,
    metavar="VMLINUZ",
    help="the dumped kernel's image (bzImage or vmlinux with .BTF)",
)
@click.option(
    "--system-map", "system_map", metavar="FILE", help="symbols from this System.map instead of the dump's own kallsyms"
)
@click.option("-o", "--output", "output", required=True, metavar="FILE", help="the debug file to write")
def command(vmcore: str | None, kernel: str, system_map: str | None, output: str) -> None:
    """Write FILE: DWARF types (from the kernel image's .BTF), variables and symbols (from
    VMCORE's kallsyms or a System.map) with link-time addresses and the image's build ID, so
    that drgn opens VMCORE with no debug package: drgn -c VMCORE -s FILE."""
    from mmintro.snapshot.debuginfo import write_debuginfo, write_debuginfo_for_dump

    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise SnapshotError(f"output directory {out_dir!r} does not exist")
    if vmcore is not None:
        from mmintro.reader.dump import open_dump

        prog = open_dump(vmcore, kernel, system_map)
        try:
            path = write_debuginfo_for_dump(output, prog)
            nsyms, nvars = len(prog.symbols.symbols), len(prog.types.variables)
        finally:
            prog.close()
    else:
        if system_map is None:
            raise SnapshotError("the symbols come from a dump or a System.map: give VMCORE or --system-map")
        from pathlib import Path

        from mmintro.reader.kallsyms import parse_system_map
        from mmintro.types.kernel_image import read_kernel_image

        if not os.path.exists(kernel):
            raise SnapshotError(f"kernel image {kernel!r} does not exist")
        image = read_kernel_image(kernel)
        try:
            text = Path(system_map).read_text(errors="replace")
        except OSError as e:
            raise SnapshotError(f"System.map {system_map!r}: {e.strerror}") from None
        syms = parse_system_map(text, 0, f"System.map {system_map!r}")
        types = image.typedb()
        path = write_debuginfo(output, types, syms, image.build_id or b"", 0)
        nsyms, nvars = len(syms), len(types.variables)
    click.echo(f"wrote {path}: {nsyms} symbols, {nvars} typed globals; use: drgn -c VMCORE -s {path}", err=True)
