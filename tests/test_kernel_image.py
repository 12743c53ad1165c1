"""Types of a real kernel from its own image: bzImage/vmlinux reading, BTF closure, cache.

The real kernel is Debian's 6.18.15+deb13-amd64 (vmlinuz unpacked from the
linux-image-6.18.15+deb13-amd64 package, its config beside it).  Oracles not written by us:
pyelftools (build ID), ``bpftool btf dump ... format raw`` (every layout), the kernel config
(NR_CPUS, MAX_NUMNODES).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from mmintro.reader.errors import SnapshotError
from mmintro.types.btf import parse_btf
from mmintro.types.closure import build_typedoc, typedb_from_btf
from mmintro.types.kernel_image import read_kernel_image
from mmintro.types.typedata import DATA_FILE

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_BTF = ROOT.parent / "shared" / "reference" / "vmlinux-6.18.btf"

# A sample of MM structs whose every member is compared with bpftool's dump.
MM_STRUCTS = """page folio slab zone pglist_data free_area per_cpu_pages kmem_cache kmem_cache_node
mm_struct vm_area_struct maple_node xa_node address_space inode file hstate swap_info_struct
task_struct vmap_area""".split()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def debian_kernel() -> Path:
    """Debian's vmlinuz-6.18.*+deb13-amd64, fetched (and cached) by the real-kernel harness."""
    from mmintro.realkernel.debian import fetch_kernel

    return fetch_kernel().vmlinuz


@pytest.fixture(scope="session")
def debian_image(debian_kernel):
    return read_kernel_image(debian_kernel)


@pytest.fixture(scope="session")
def debian_vmlinux(debian_image, tmp_path_factory) -> Path:
    """The decompressed vmlinux ELF, as a file (for pyelftools, bpftool and objcopy)."""
    p = tmp_path_factory.mktemp("deb") / "vmlinux"
    p.write_bytes(debian_image.elf_bytes)
    return p


@pytest.fixture(scope="session")
def debian_db(debian_image, tmp_path_factory):
    return typedb_from_btf(debian_image.btf, cache=tmp_path_factory.mktemp("typecache"))


@pytest.fixture(scope="session")
def bpftool_types(debian_vmlinux) -> dict[int, dict]:
    """``bpftool btf dump file VMLINUX format raw``, parsed: id -> {kind, name, attrs, members}."""
    if shutil.which("bpftool") is None:
        pytest.fail("bpftool not installed (apt-get install bpftool; .ci/run installs it)")
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(debian_vmlinux), "format", "raw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    types: dict[int, dict] = {}
    cur: dict | None = None
    rec = re.compile(r"\[(\d+)\] (\w+) '([^']*)'(.*)")
    for line in out.splitlines():
        m = rec.match(line)
        if m:
            cur = {"kind": m.group(2), "name": m.group(3), "attrs": _attrs(m.group(4)), "members": []}
            types[int(m.group(1))] = cur
        elif line.startswith("\t") and cur is not None:
            m = re.match(r"\t'([^']*)'(.*)", line)
            if m:  # members of a struct/union, enumerators, params
                cur["members"].append((m.group(1), _attrs(m.group(2))))
    return types


def _attrs(s: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", s))


def _by_name(types: dict, kind: str, name: str) -> dict:
    """The first (lowest id) type of that kind and name, as the closure picks it."""
    return next(types[i] for i in sorted(types) if types[i]["kind"] == kind and types[i]["name"] == name)


def _bt_size(types: dict, tid: int) -> int:
    t = types[tid]
    k = t["kind"]
    if k in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
        return _bt_size(types, int(t["attrs"]["type_id"]))
    if k == "PTR":
        return 8
    if k == "ARRAY":
        return int(t["attrs"]["nr_elems"]) * _bt_size(types, int(t["attrs"]["type_id"]))
    return int(t["attrs"]["size"])


def _enumerator(types: dict, name: str) -> int:
    for t in types.values():
        if t["kind"] in ("ENUM", "ENUM64"):
            for n, a in t["members"]:
                if n == name:
                    return int(a["val"])
    raise KeyError(name)


def _config(debian_kernel: Path, key: str) -> int:
    cfg = debian_kernel.with_name(debian_kernel.name.replace("vmlinuz", "config"))
    if not cfg.is_file():
        pytest.fail(f"{cfg} not available")
    m = re.search(rf"^{key}=(\d+)$", cfg.read_text(), re.M)
    assert m, key
    return int(m.group(1))


# -- the image --------------------------------------------------------------------------------


def test_debian_image(debian_image, debian_kernel):
    ki = debian_image
    assert ki.compression == "zstd"
    assert ki.elf_bytes[:4] == b"\x7fELF"
    assert ki.btf[:2] == b"\x9f\xeb"
    release = debian_kernel.name.removeprefix("vmlinuz-")
    assert ki.osrelease == release
    assert ki.banner.startswith(f"Linux version {release} (debian-kernel@lists.debian.org)")
    assert ki.symbols == []  # Debian's vmlinuz is stripped


def test_build_id_matches_pyelftools_and_readelf(debian_image, debian_vmlinux):
    elftools = pytest.importorskip("elftools.elf.elffile")
    with open(debian_vmlinux, "rb") as f:
        elf = elftools.ELFFile(f)
        ids = [
            n["n_desc"]
            for s in elf.iter_sections()
            if s["sh_type"] == "SHT_NOTE"
            for n in s.iter_notes()
            if n["n_name"] == "GNU" and n["n_type"] == "NT_GNU_BUILD_ID"
        ]
    assert ids and debian_image.build_id.hex() == ids[0]
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-n", str(debian_vmlinux)], capture_output=True, text=True).stdout
        assert f"Build ID: {debian_image.build_id.hex()}" in out


def test_vmlinux_elf_reads_the_same(debian_image, debian_vmlinux):
    ki = read_kernel_image(debian_vmlinux)
    assert ki.compression == "none"
    assert (ki.btf, ki.build_id, ki.osrelease) == (debian_image.btf, debian_image.build_id, debian_image.osrelease)


# -- the types of the Debian build --------------------------------------------------------------


def test_debian_layouts(debian_db):
    db = debian_db
    sizes = {"zone": 1600, "free_area": 88, "task_struct": 5888, "inode": 608, "page": 64}
    assert {n: db.struct(n).size for n in sizes} == sizes
    assert db.var_type("__per_cpu_offset").resolved().nelems == 8192
    assert db.var_type("node_data").resolved().nelems == 1024
    assert db.skipped_globals == {} and db.skipped_percpu == [] and db.missing_roots == []


def test_debian_bounds_from_config_and_btf(debian_kernel, debian_db, bpftool_types):
    db, bt = debian_db, bpftool_types
    n = lambda v: db.var_type(v).resolved().nelems
    assert n("__per_cpu_offset") == _config(debian_kernel, "CONFIG_NR_CPUS")
    assert n("node_data") == 1 << _config(debian_kernel, "CONFIG_NODES_SHIFT")
    assert n("__log_buf") == 1 << _config(debian_kernel, "CONFIG_LOG_BUF_SHIFT")
    for var, enumerator in [
        ("vm_zone_stat", "NR_VM_ZONE_STAT_ITEMS"),
        ("vm_node_stat", "NR_VM_NODE_STAT_ITEMS"),
        ("vm_numa_event", "NR_VM_NUMA_EVENT_ITEMS"),
        ("kmalloc_caches", "NR_KMALLOC_TYPES"),
        ("node_states", "NR_NODE_STATES"),
        ("sysctl_lowmem_reserve_ratio", "__MAX_NR_ZONES"),
    ]:
        assert n(var) == _enumerator(bt, enumerator), var
    # differs from the reference build (11 zone stat items, 5 kmalloc types): really per build
    assert (n("vm_zone_stat"), n("kmalloc_caches")) == (12, 4)


@pytest.mark.parametrize("name", MM_STRUCTS)
def test_layout_equals_bpftool(debian_db, bpftool_types, name):
    bt = bpftool_types
    ref = _by_name(bt, "STRUCT", name)
    _compare(debian_db.struct(name), ref, bt, name)


def _compare(t, ref: dict, bt: dict, where: str) -> None:
    r = t.resolved()
    assert r.size == int(ref["attrs"]["size"]), where
    assert len(r.members) == len(ref["members"]), where
    for m, (rname, a) in zip(r.members, ref["members"]):
        at = f"{where}.{m.name or '(anon)'}"
        assert (m.name or "(anon)") == rname, at
        assert m.bit_offset == int(a["bits_offset"]), at
        assert m.bit_size == int(a.get("bitfield_size", 0)), at
        rt = bt[int(a["type_id"])]
        assert m.type.size == _bt_size(bt, int(a["type_id"])), at
        if rt["kind"] in ("STRUCT", "UNION") and rt["name"] == "(anon)":
            assert m.type.kind == rt["kind"].lower(), at
            _compare(m.type, rt, bt, at)


def test_every_struct_size_equals_bpftool(debian_db, bpftool_types):
    """Every whole struct/union of the TypeDB has the size bpftool gives the same-named one."""
    sizes: dict[tuple[str, str], set[int]] = {}
    for t in bpftool_types.values():
        if t["kind"] in ("STRUCT", "UNION") and t["name"] != "(anon)":
            sizes.setdefault((t["kind"].lower(), t["name"]), set()).add(int(t["attrs"]["size"]))
    n = 0
    for t in debian_db.iter_types():
        if t.kind in ("struct", "union") and t.name and not t.is_decl and t.name != "thread_union":
            assert t.size in sizes[(t.kind, t.name)], t
            n += 1
    assert n > 200


# -- the cache ----------------------------------------------------------------------------------


@pytest.mark.slow  # ~2 s
def test_cache_warm_and_corrupt(debian_image, tmp_path):
    cold = typedb_from_btf(debian_image.btf, cache=tmp_path)
    assert not cold.from_cache
    (f,) = tmp_path.iterdir()
    assert f.name.startswith(cold.btf_sha256)
    warm = typedb_from_btf(debian_image.btf, cache=tmp_path)
    assert warm.from_cache and warm.doc == cold.doc
    f.write_bytes(b"\x1f\x8b garbage")
    again = typedb_from_btf(debian_image.btf, cache=tmp_path)
    assert not again.from_cache and again.doc == cold.doc
    assert json.loads(gzip.decompress(f.read_bytes())) == cold.doc
    assert [p.name for p in tmp_path.iterdir()] == [f.name]  # no temp files left


def test_cache_dir_follows_xdg(debian_image, tmp_path, monkeypatch, debian_kernel):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    db = debian_image.typedb()
    assert list((tmp_path / "mmintro" / "typedata").glob(f"{db.btf_sha256}-*.json.gz"))
    assert db.doc["kernel"] == debian_kernel.name.removeprefix("vmlinuz-") + " x86_64"


# -- the pinned data ----------------------------------------------------------------------------


def test_pinned_data_reproduces():
    """build_typedoc over the reference BTF gives exactly the shipped data (symbolic bounds)."""
    if not REFERENCE_BTF.is_file():
        pytest.skip(f"{REFERENCE_BTF} not available")
    doc = build_typedoc(parse_btf(REFERENCE_BTF.read_bytes()), source=REFERENCE_BTF.name)
    assert "skipped" not in doc
    shipped = gzip.decompress((ROOT / "mmintro" / "types" / "data" / DATA_FILE).read_bytes())
    assert json.dumps(doc, separators=(",", ":")).encode() == shipped


# -- other compressions (a small ELF with the same .BTF, wrapped in Debian's setup code) ------------


@pytest.fixture(scope="session")
def small_elf(debian_vmlinux, tmp_path_factory) -> bytes:
    if shutil.which("objcopy") is None:
        pytest.fail("objcopy not installed (binutils; .ci/run installs it)")
    out = tmp_path_factory.mktemp("small") / "vmlinux"
    subprocess.run(
        ["objcopy", "--only-section=.BTF", "--only-section=.notes", str(debian_vmlinux), str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def _bzimage(setup_from: Path, payload: bytes) -> bytes:
    """Debian's setup code followed by ``payload`` as the protected-mode code's payload."""
    d = bytearray(setup_from.read_bytes()[:0x10000])
    setup_sects = d[0x1F1] or 4
    pm = (setup_sects + 1) * 512
    body = bytes(16) + payload
    struct.pack_into("<II", d, 0x248, 16, len(payload))
    struct.pack_into("<I", d, 0x1F4, (len(body) + 15) // 16)  # syssize
    return bytes(d[:pm]) + body + bytes(-len(body) % 16)


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1)
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=0)
    if kind == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE, preset=0)
    if kind == "bzip2":
        return bz2.compress(data, 1)
    import zstandard

    return zstandard.ZstdCompressor(level=1).compress(data)


@pytest.mark.parametrize("kind", ["gzip", "xz", "lzma", "bzip2", "zstd"])
def test_compressions(debian_kernel, debian_image, small_elf, tmp_path, kind):
    p = tmp_path / "vmlinuz"
    p.write_bytes(_bzimage(debian_kernel, _compress(kind, small_elf) + struct.pack("<I", len(small_elf))))
    ki = read_kernel_image(p)
    assert ki.compression == kind
    assert ki.elf_bytes == small_elf
    assert (ki.btf, ki.build_id) == (debian_image.btf, debian_image.build_id)
    assert ki.osrelease == debian_kernel.name.removeprefix("vmlinuz-")  # from the setup header (no .rodata here)


# -- bad input: one-line SnapshotError ------------------------------------------------------------


def _error(path) -> str:
    with pytest.raises(SnapshotError) as ei:
        read_kernel_image(path)
    msg = str(ei.value)
    assert "\n" not in msg and ei.value.__cause__ is None
    return msg


def test_not_a_kernel(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_bytes(b"hello, this is not a kernel\n" * 100)
    assert "is not a bzImage or an ELF vmlinux" in _error(p)
    assert "does not exist" in _error(tmp_path / "missing")
    (tmp_path / "empty").write_bytes(b"")
    assert "is empty" in _error(tmp_path / "empty")


def test_elf_without_btf(debian_vmlinux, tmp_path):
    if shutil.which("objcopy") is None:
        pytest.fail("objcopy not installed (binutils; .ci/run installs it)")
    out = tmp_path / "vmlinux-nobtf"
    subprocess.run(["objcopy", "--remove-section=.BTF", str(debian_vmlinux), str(out)], check=True, capture_output=True)
    msg = _error(out)
    assert msg == (f"kernel image {out} has no .BTF section (build the kernel with CONFIG_DEBUG_INFO_BTF)")


@pytest.mark.parametrize("keep", [100, 0x300, 1 << 20, 13_600_000])
def test_truncated_bzimage(debian_kernel, tmp_path, keep):
    data = debian_kernel.read_bytes()
    p = tmp_path / "vmlinuz"
    p.write_bytes(data[:keep])
    assert "truncated" in _error(p)


def test_corrupt_payloads(debian_kernel, small_elf, tmp_path):
    data = bytearray(debian_kernel.read_bytes())
    setup_sects = data[0x1F1] or 4
    off, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + off
    data[start + length // 2 : start + length // 2 + 64] = bytes(64)
    p = tmp_path / "vmlinuz"
    p.write_bytes(data)
    assert "corrupt zstd payload" in _error(p)
    raw = zlib.compress(small_elf)  # zlib stream, not gzip: unknown magic
    p.write_bytes(_bzimage(debian_kernel, raw + struct.pack("<I", len(small_elf))))
    assert "unknown payload compression" in _error(p)
    p.write_bytes(_bzimage(debian_kernel, b"\x02\x21\x4c\x18" + bytes(100)))
    assert "lz4-compressed payload is not supported" in _error(p)
    gz = gzip.compress(small_elf, compresslevel=1)
    p.write_bytes(_bzimage(debian_kernel, gz[: len(gz) // 2] + struct.pack("<I", len(small_elf))))
    assert "corrupt gzip payload" in _error(p)
    p.write_bytes(_bzimage(debian_kernel, gzip.compress(b"not an elf" * 10) + struct.pack("<I", 100)))
    assert "is not an ELF vmlinux" in _error(p)
