"""``mmintro qemu-dump``: a real dump of a real kernel doing a known workload.

Boots Debian's Linux 6.18 kernel (fetched with apt, cached) under QEMU with the workload
initramfs, captures the guest's own /proc, stops the VM and writes the dump (see
:mod:`mmintro.realkernel.qemu`).
"""

from __future__ import annotations

from pathlib import Path

import click

from mmintro.cli.errors import MmintroError
from mmintro.realkernel.debian import HarnessError
from mmintro.realkernel.qemu import DUMP_FORMATS, GuestConfig, make_reference_dump

__all__ = ["command"]


def _mib(text: str) -> int:
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1 / 1024, "M": 1, "G": 1024}.get(t[-1:], None)
    try:
        return int(float(t[:-1]) * mult) if mult else int(t)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size (like 1G or 1536M)", param_hint="--mem") from None


@click.command("qemu-dump")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--mem", "mem", default="1G", show_default=True, help="guest RAM (split evenly over the nodes)")
@click.option("--cpus", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--nodes", default=1, show_default=True, type=click.IntRange(1, 8), help="NUMA nodes (-numa)")
@click.option("--kaslr/--no-kaslr", default=True, show_default=True)
@click.option(
    "--paging",
    "paging",
    type=click.Choice(["4", "5"]),
    default="4",
    show_default=True,
    help="4-level (-cpu max,la57=off) or 5-level (-cpu max) paging",
)
@click.option(
    "--format",
    "formats",
    default="elf,kdump-zlib",
    show_default=True,
    help=f"comma-separated dump formats: {', '.join(DUMP_FORMATS)}",
)
@click.option("--anon", "anon_mib", default=16, show_default=True, help="MiB of anonymous memory the workload writes")
@click.option(
    "--swap",
    "swap",
    default="0",
    show_default=True,
    help="a swap device of this size (a virtio disk, /dev/vda; e.g. 64M): the workload swaps out "
    "a region of anonymous memory with MADV_PAGEOUT",
)
@click.option(
    "--kernel-release",
    default=None,
    metavar="6.18.N+deb13",
    help="which linux-image-6.18.*+deb13-amd64 (default: newest cached, else newest in the archive)",
)
def command(
    outdir: Path,
    mem: str,
    cpus: int,
    nodes: int,
    kaslr: bool,
    paging: str,
    formats: str,
    anon_mib: int,
    swap: str,
    kernel_release: str | None,
) -> None:
    """Boot Debian's Linux 6.18 under QEMU, run the workload, capture /proc and dump memory.

    OUTDIR gets the dump(s) (vmcore = ELF, vmcore.kdump-* = QEMU's kdump-compressed output),
    proc/ (the guest's own /proc text, read just before the VM stopped), console.log and
    manifest.json (the kernel image's path, the workload's pids).  Then, for example:

    \b
      mmintro meminfo OUTDIR/vmcore --kernel VMLINUZ
      mmintro smaps OUTDIR/vmcore PID --kernel VMLINUZ
      mmintro debuginfo --kernel VMLINUZ -o OUTDIR/vmlinux.debug OUTDIR/vmcore
    """
    cfg = GuestConfig(
        mem_mib=_mib(mem),
        cpus=cpus,
        nodes=nodes,
        kaslr=kaslr,
        paging_levels=int(paging),
        anon_mib=anon_mib,
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()),
        kernel_release=kernel_release,
        swap_mib=_mib(swap) if swap.strip() != "0" else 0,
    )
    try:
        ref = make_reference_dump(cfg, outdir, log=lambda m: click.echo(f"mmintro: {m}", err=True))
    except HarnessError as e:
        raise MmintroError(str(e)) from None
    for fmt, name in ref.dumps.items():
        click.echo(f"{fmt:<13} {ref.dir / name}")
    click.echo(f"{'kernel':<13} {ref.vmlinuz}")
    click.echo(f"{'proc':<13} {ref.dir / 'proc'}")
    click.echo(f"{'pids':<13} " + " ".join(f"{k}={v}" for k, v in ref.pids.items()))
