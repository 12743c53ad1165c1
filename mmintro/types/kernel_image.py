"""Read a real kernel image: a bzImage (``vmlinuz``) or an uncompressed ``vmlinux`` ELF.

What a dump of a real kernel needs from its image: the ``.BTF`` section (the layouts of *that*
build; :func:`mmintro.types.closure.typedb_from_btf` turns it into a :class:`TypeDB`), the
GNU build ID (to pair the image with a vmcore), the release string and, when the ELF has one,
its ``.symtab`` (distribution vmlinuz images are stripped: no symbols).

bzImage: the x86 boot protocol (Documentation/arch/x86/boot.rst).  The setup header carries
"HdrS" at 0x202, ``setup_sects`` at 0x1f1 (0 means 4), and from protocol 2.08 ``payload_offset``
(0x248) and ``payload_length`` (0x24c), relative to the protected-mode code that starts at
``(setup_sects + 1) * 512``.  The payload is the compressed vmlinux ELF; the kernel build
appends its uncompressed size as a little-endian u32 (scripts/Makefile.lib ``size_append``).
Supported: zstd (the ``zstandard`` package), gzip, xz, lzma and bzip2 (standard library).
Not supported: lz4 and lzo.

Every problem is a one-line :class:`~mmintro.reader.errors.SnapshotError`.
"""

from __future__ import annotations

import bz2
import lzma
import os
import re
import struct
import zlib
from dataclasses import dataclass, field

from mmintro.reader.elf import (
    ET_DYN,
    ET_EXEC,
    PHDR,
    PT_NOTE,
    SHDR,
    Symbol,
    iter_notes,
    map_file,
    parse_header,
    parse_symtab,
)
from mmintro.reader.errors import SnapshotError

__all__ = ["KernelImage", "read_kernel_image", "decompress_bzimage"]

SHT_SYMTAB, SHT_NOTE, SHT_NOBITS = 2, 7, 8
NT_GNU_BUILD_ID = 3

# Largest vmlinux we accept (a corrupt size trailer must not make us allocate gigabytes).
MAX_VMLINUX = 1 << 30

_BANNER = re.compile(rb"Linux version (\d[^\s\x00]*) [^\x00\n]*")


@dataclass
class KernelImage:
    """A kernel image, decompressed.  ``elf_bytes`` is the vmlinux ELF."""

    path: str
    elf_bytes: bytes
    btf: bytes
    build_id: bytes | None
    osrelease: str | None  # "6.18.15+deb13-amd64"
    banner: str | None  # "Linux version 6.18.15+deb13-amd64 (...) #1 SMP ..."
    compression: str  # "zstd", "gzip", "xz", "lzma", "bzip2"; "none" for a vmlinux ELF
    symbols: list[Symbol] = field(default_factory=list)  # .symtab, sorted by address; [] if stripped

    def __repr__(self) -> str:
        bid = self.build_id.hex() if self.build_id else None
        return (
            f"<KernelImage {self.path!r} {self.osrelease} build-id {bid} "
            f"({len(self.elf_bytes)} bytes ELF, {len(self.btf)} bytes BTF, {len(self.symbols)} symbols)>"
        )

    def typedb(self, cache=True):  # -> TypeDB
        """The :class:`TypeDB` of this build, from its ``.BTF`` (cached on disk, see
        :func:`mmintro.types.closure.typedb_from_btf`)."""
        from mmintro.types.btf import BtfError
        from mmintro.types.closure import ClosureError, typedb_from_btf

        kernel = f"{self.osrelease} x86_64" if self.osrelease else ""
        try:
            return typedb_from_btf(self.btf, kernel=kernel, source=os.path.basename(self.path), cache=cache)
        except (BtfError, ClosureError) as e:
            raise SnapshotError(f"kernel image {self.path}: unusable .BTF ({_one_line(e)})") from None


def read_kernel_image(path: str | os.PathLike) -> KernelImage:
    """Open a bzImage or a vmlinux ELF; decompress it and pull out .BTF, build ID and release."""
    spath = os.fspath(path)
    what = f"kernel image {spath}"
    buf = map_file(spath, "kernel image")
    try:
        head = bytes(buf[:4])
        if head == b"\x7fELF":
            elf = bytes(buf)
            compression = "none"
            setup_release = None
        elif len(buf) >= 0x206 and bytes(buf[0x202:0x206]) == b"HdrS":
            elf, compression, setup_release = decompress_bzimage(buf, what)
        elif len(buf) < 0x250 and head[:2] == b"MZ":
            raise SnapshotError(f"{what} is truncated ({len(buf)} bytes): no complete bzImage setup header")
        else:
            raise SnapshotError(f"{spath} is not a bzImage or an ELF vmlinux (starts with {head!r})")
    finally:
        buf.close()
    return _from_elf(spath, what, elf, compression, setup_release)


def decompress_bzimage(buf, what: str) -> tuple[bytes, str, str | None]:
    """(vmlinux ELF bytes, compression name, release from the setup header) of a bzImage."""
    size = len(buf)
    if size < 0x250:
        raise SnapshotError(f"{what} is truncated ({size} bytes): the bzImage setup header is cut off")
    version = struct.unpack_from("<H", buf, 0x206)[0]
    if version < 0x208:
        raise SnapshotError(
            f"{what}: boot protocol {version >> 8}.{version & 0xFF:02d} has no payload fields (need 2.08+)"
        )
    setup_sects = buf[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    # syssize: the protected-mode code's size in 16-byte units (a signed image has more after it).
    syssize = struct.unpack_from("<I", buf, 0x1F4)[0] * 16
    if pm_start + syssize > size:
        raise SnapshotError(f"{what} is truncated: {size:#x} bytes, its boot header says {pm_start + syssize:#x}")
    payload_offset, payload_length = struct.unpack_from("<II", buf, 0x248)
    start = pm_start + payload_offset
    end = start + payload_length
    if payload_length < 8 or end > size:
        raise SnapshotError(
            f"{what} is truncated: its payload needs bytes {start:#x}..{end:#x}, the file has {size:#x}"
        )
    payload = bytes(buf[start:end])
    release = _setup_release(buf)
    # The build appends the uncompressed size as a little-endian u32 (size_append).
    usize = struct.unpack_from("<I", payload, len(payload) - 4)[0]
    magic = payload[:6]
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        elf, comp = _zstd(payload[:-4], usize, what), "zstd"
    elif magic[:2] == b"\x1f\x8b":
        elf, comp = _stream(zlib.decompressobj(16 + zlib.MAX_WBITS), payload, "gzip", what, zlib.error), "gzip"
    elif magic == b"\xfd7zXZ\x00":
        elf, comp = _stream(lzma.LZMADecompressor(lzma.FORMAT_XZ), payload, "xz", what, lzma.LZMAError), "xz"
    elif magic[:3] == b"\x5d\x00\x00":
        elf, comp = _stream(lzma.LZMADecompressor(lzma.FORMAT_ALONE), payload, "lzma", what, lzma.LZMAError), "lzma"
    elif magic[:3] == b"BZh":
        elf, comp = _stream(bz2.BZ2Decompressor(), payload, "bzip2", what, OSError), "bzip2"
    elif magic[:4] in (b"\x02\x21\x4c\x18", b"\x04\x22\x4d\x18"):
        raise SnapshotError(f"{what}: lz4-compressed payload is not supported (supported: zstd, gzip, xz, lzma, bzip2)")
    elif magic[:4] == b"\x89LZO":
        raise SnapshotError(f"{what}: lzo-compressed payload is not supported (supported: zstd, gzip, xz, lzma, bzip2)")
    else:
        raise SnapshotError(f"{what}: unknown payload compression (magic {magic[:4].hex()})")
    if comp != "zstd" and len(elf) != usize:
        raise SnapshotError(f"{what}: corrupt {comp} payload (decompressed {len(elf)} bytes, the image says {usize})")
    if elf[:4] != b"\x7fELF":
        raise SnapshotError(f"{what}: the decompressed {comp} payload is not an ELF vmlinux")
    return elf, comp, release


def _setup_release(buf) -> str | None:
    """The release in the setup header's kernel_version string (what ``file`` prints)."""
    ptr = struct.unpack_from("<H", buf, 0x20E)[0]
    if not ptr:
        return None
    off = ptr + 0x200
    raw = bytes(buf[off : off + 256])
    s = raw.split(b"\0", 1)[0].split(b" ", 1)[0]
    try:
        return s.decode("ascii") or None
    except UnicodeDecodeError:
        return None


def _zstd(frame: bytes, usize: int, what: str) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise SnapshotError(
            f"{what}: its payload is zstd-compressed; install the 'zstandard' package to read it"
        ) from None
    try:
        dctx = zstandard.ZstdDecompressor()
        if 0 < usize <= MAX_VMLINUX:
            out = dctx.decompress(frame, max_output_size=usize)
        else:
            out = dctx.decompressobj().decompress(frame)
    except zstandard.ZstdError as e:
        raise SnapshotError(f"{what}: corrupt zstd payload ({_one_line(e)})") from None
    if len(out) != usize:
        raise SnapshotError(f"{what}: corrupt zstd payload (decompressed {len(out)} bytes, the image says {usize})")
    return out


def _stream(dec, payload: bytes, comp: str, what: str, err) -> bytes:
    try:
        out = dec.decompress(payload)
    except (err, EOFError, ValueError) as e:
        raise SnapshotError(f"{what}: corrupt {comp} payload ({_one_line(e)})") from None
    if not getattr(dec, "eof", True):
        raise SnapshotError(f"{what}: corrupt {comp} payload (the compressed stream ends early)")
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# -- the ELF -------------------------------------------------------------------------------------


def _from_elf(path: str, what: str, elf: bytes, compression: str, setup_release: str | None) -> KernelImage:
    ewhat = what if compression == "none" else f"{what} (decompressed vmlinux)"
    h = parse_header(elf, ewhat, (ET_EXEC, ET_DYN))
    size = len(elf)
    raw = [SHDR.unpack_from(elf, h.e_shoff + i * SHDR.size) for i in range(h.e_shnum)]
    for i, s in enumerate(raw):
        if s[1] not in (0, SHT_NOBITS) and s[4] + s[5] > size:
            raise SnapshotError(
                f"{ewhat} is truncated: section {i} needs bytes up to {s[4] + s[5]:#x}, the ELF has {size:#x}"
            )
    names: list[str] = []
    if raw:
        if h.e_shstrndx >= len(raw):
            raise SnapshotError(f"{ewhat}: section name table index {h.e_shstrndx} out of range")
        st = raw[h.e_shstrndx]
        strtab = elf[st[4] : st[4] + st[5]]
        for s in raw:
            if s[0] >= len(strtab) and s[0]:
                raise SnapshotError(f"{ewhat}: section name offset {s[0]:#x} out of range")
            names.append(strtab[s[0] : strtab.find(b"\0", s[0])].decode("latin-1"))
    by_name = {n: i for i, n in reversed(list(enumerate(names)))}

    i = by_name.get(".BTF")
    if i is None or raw[i][1] == SHT_NOBITS or raw[i][5] == 0:
        raise SnapshotError(f"{what} has no .BTF section (build the kernel with CONFIG_DEBUG_INFO_BTF)")
    btf = elf[raw[i][4] : raw[i][4] + raw[i][5]]
    if len(btf) < 24 or btf[:2] != b"\x9f\xeb":
        raise SnapshotError(f"{what}: its .BTF section is not BTF (magic {btf[:2].hex()})")

    build_id = None
    note_ranges = [(s[4], s[4] + s[5]) for s in raw if s[1] == SHT_NOTE]
    for j in range(h.e_phnum):
        p = PHDR.unpack_from(elf, h.e_phoff + j * PHDR.size)
        if p[0] == PT_NOTE:
            if p[2] + p[5] > size:
                raise SnapshotError(f"{ewhat} is truncated: PT_NOTE at {p[2]:#x} ends beyond {size:#x}")
            note_ranges.append((p[2], p[2] + p[5]))
    for start, end in note_ranges:
        for name, ntype, desc in iter_notes(elf, start, end, ewhat):
            if name == "GNU" and ntype == NT_GNU_BUILD_ID:
                build_id = desc
                break
        if build_id is not None:
            break

    # linux_banner lives in .rodata; search the whole ELF if the sections are unnamed.
    ro = by_name.get(".rodata")
    lo, hi = (raw[ro][4], raw[ro][4] + raw[ro][5]) if ro is not None else (0, size)
    m = _BANNER.search(elf, lo, hi)
    banner = m.group(0).decode("latin-1").strip() if m else None
    osrelease = m.group(1).decode("latin-1") if m else setup_release

    symbols: list[Symbol] = []
    k = next((j for j, s in enumerate(raw) if s[1] == SHT_SYMTAB), None)
    if k is not None:
        link = raw[k][6]
        if link >= len(raw):
            raise SnapshotError(f"{ewhat}: .symtab string table index {link} out of range")
        strs = bytes(elf[raw[link][4] : raw[link][4] + raw[link][5]])
        symbols = parse_symtab(elf, raw[k][4], raw[k][5], strs)

    return KernelImage(path, elf, btf, build_id, osrelease, banner, compression, symbols)
