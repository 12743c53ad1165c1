"""Bad input around real dumps: one line on stderr, exit status 1, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert err.startswith("mmintro: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in result.output
    for n in needles:
        assert n in err, err
    return err


def test_a_dump_of_another_kernel(real_dump, default_snapshot: str) -> None:
    """The simulator's own 6.18 vmcore with Debian's image: the build IDs differ."""
    r = run("meminfo", default_snapshot + ".vmcore", "--kernel", real_dump.vmlinuz, ok=False)
    _one_line_error(r, "is not the dumped kernel", "build ID")


def test_an_image_that_is_not_a_kernel(real_dump, tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"\x7fELF" + b"\0" * 100)
    _one_line_error(run("meminfo", str(real_dump.path("elf")), "--kernel", str(bogus), ok=False))
    bogus.write_text("hello\n")
    _one_line_error(run("buddyinfo", str(real_dump.path("elf")), "--kernel", str(bogus), ok=False))


def test_an_image_without_btf(real_dump, tmp_path: Path) -> None:
    """The same kernel, decompressed, with its .BTF section stripped."""
    from mmintro.types.kernel_image import read_kernel_image

    elf = tmp_path / "vmlinux"
    elf.write_bytes(read_kernel_image(real_dump.vmlinuz).elf_bytes)
    stripped = tmp_path / "vmlinux.nobtf"
    objcopy = shutil.which("objcopy")
    assert objcopy, "objcopy (binutils) is not installed"
    subprocess.run([objcopy, "--remove-section=.BTF", str(elf), str(stripped)], check=True)
    r = run("meminfo", str(real_dump.path("elf")), "--kernel", str(stripped), ok=False)
    _one_line_error(r, ".BTF")
    # the uncompressed ELF with its .BTF is a kernel image too
    assert run("buddyinfo", str(real_dump.path("elf")), "--kernel", str(elf)).stdout == real_dump.proc("buddyinfo")


@pytest.mark.parametrize("fraction", [0.0001, 0.5])
def test_a_truncated_kdump_file(real_dump, tmp_path: Path, fraction: float) -> None:
    src = real_dump.path("kdump-zlib")
    cut = tmp_path / "vmcore.kdump"
    with open(src, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(int(src.stat().st_size * fraction)))
    _one_line_error(run("meminfo", str(cut), "--kernel", real_dump.vmlinuz, ok=False), "truncated")


def test_a_corrupt_compressed_page(real_dump, tmp_path: Path) -> None:
    """QEMU's kdump-zlib dump, reassembled, with the compressed bytes of the page holding
    kallsyms_num_syms (read while opening) overwritten."""
    from mmintro.reader.diskdump import DiskDumpFile

    src = DiskDumpFile(real_dump.path("kdump-zlib"))
    info = src.vmcoreinfo
    paddr = int(info["SYMBOL(kallsyms_num_syms)"], 16) - 0xFFFFFFFF80000000 + int(info["NUMBER(phys_base)"])
    pfn = paddr >> 12
    offset, size, flags, _ = src._desc[src._rank2(pfn) - src._desc_base].item()
    assert flags, "expected a compressed page"
    flat = src.flattened
    src.close()
    plain = tmp_path / "vmcore.kdump"
    if flat:
        with open(real_dump.path("kdump-zlib"), "rb") as f:
            p = subprocess.run(["makedumpfile", "-R", str(plain)], stdin=f, capture_output=True, text=True)
            assert p.returncode == 0, p.stdout + p.stderr
    else:
        shutil.copyfile(real_dump.path("kdump-zlib"), plain)
    with open(plain, "r+b") as f:
        f.seek(offset + 2)
        f.write(b"\xff" * (size - 4))
    _one_line_error(run("meminfo", str(plain), "--kernel", real_dump.vmlinuz, ok=False), "corrupt", f"{pfn:#x}")
