"""The per-process views print 6.18's formats: the real captures of /proc/PID/{smaps,
smaps_rollup,status,numa_maps} (tests/data/reference/procfs/pid/) are parsed into the views'
own rows and rendered back byte for byte, and the crash ``vm`` layout matches crash's
mkstring centring on a line from a real crash session."""

from __future__ import annotations

import re

from cli_helpers import REFERENCE, needs_reference

from mmintro.views import numa_maps as N
from mmintro.views import smaps as S
from mmintro.views import status as ST
from mmintro.views import vm as V
from mmintro.views.maps import MapsRow

PID = REFERENCE / "pid"
HEAD = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]{2}):([0-9a-f]{2}) (\d+) ?\s*(.*)$")
_BYTES = {
    "Rss": "resident",
    "Shared_Clean": "shared_clean",
    "Shared_Dirty": "shared_dirty",
    "Private_Clean": "private_clean",
    "Private_Dirty": "private_dirty",
    "Referenced": "referenced",
    "Anonymous": "anonymous",
    "KSM": "ksm",
    "LazyFree": "lazyfree",
    "AnonHugePages": "anonymous_thp",
    "ShmemPmdMapped": "shmem_thp",
    "FilePmdMapped": "file_thp",
    "Shared_Hugetlb": "shared_hugetlb",
    "Private_Hugetlb": "private_hugetlb",
    "Swap": "swap",
}
_PSS = {
    "Pss": "pss",
    "Pss_Dirty": "pss_dirty",
    "Pss_Anon": "pss_anon",
    "Pss_File": "pss_file",
    "Pss_Shmem": "pss_shmem",
    "SwapPss": "swap_pss",
    "Locked": "pss_locked",
}


def _flags_from(mnemonics: str) -> int:
    inv = {m: b for b, m in S.VM_MNEMONICS.items() if m}
    return sum(1 << inv[m] for m in mnemonics.split())


def _stats(fields: dict[str, int]) -> S.MemSizeStats:
    st = S.MemSizeStats()
    for label, kb in fields.items():
        if label in _BYTES:
            setattr(st, _BYTES[label], kb << 10)
        elif label in _PSS:
            setattr(st, _PSS[label], (kb << 10) << S.PSS_SHIFT)
    return st


def _header(line: str) -> MapsRow:
    m = HEAD.match(line)
    assert m, line
    return MapsRow(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16), int(m[5], 16), int(m[6], 16), int(m[7]), m[8], 0)


def _parse_smaps(text: str) -> list[S.SmapsVma]:
    out, cur, fields = [], None, {}
    for line in text.splitlines():
        if HEAD.match(line) and not line.startswith(("VmFlags", "THPeligible")) and "-" in line.split()[0]:
            cur, fields = _header(line), {}
            continue
        key, _, rest = line.partition(":")
        if key == "THPeligible":
            fields["THPeligible"] = int(rest)
        elif key == "VmFlags":
            out.append(
                S.SmapsVma(
                    cur,
                    fields["KernelPageSize"] << 10,
                    fields["MMUPageSize"] << 10,
                    _stats(fields),
                    fields["THPeligible"],
                    _flags_from(rest),
                )
            )
        else:
            fields[key] = int(rest.split()[0])
    return out


@needs_reference
def test_smaps_round_trips_the_capture_byte_for_byte() -> None:
    text = (PID / "self_smaps").read_text()
    vmas = _parse_smaps(text)
    assert len(vmas) == text.count("VmFlags:") == 73
    assert S.render(S.SmapsReport(0, vmas)) == text


@needs_reference
def test_vmflags_mnemonics_are_in_bit_order() -> None:
    # the THP region of the capture: rd wr mr mw me ac hg
    assert S.vm_flags_string(0x1 | 0x2 | 0x10 | 0x20 | 0x40 | 0x100000 | 0x20000000) == "rd wr mr mw me ac hg "
    assert S.vm_flags_string(1 << 11) == "?? "  # unused bit 11 prints ??
    assert S.vm_flags_string(1 << 32) == ""  # pkey bits print nothing (ProtectionKey line)


@needs_reference
def test_smaps_rollup_round_trips() -> None:
    text = (PID / "self_smaps_rollup").read_text()
    lines = text.splitlines()
    head = _header(lines[0])
    fields = {ln.split(":")[0]: int(ln.split()[1]) for ln in lines[1:]}
    assert S.render_rollup(head.start, head.end, _stats(fields)) == text


@needs_reference
def test_status_memory_lines_round_trip() -> None:
    text = (PID / "self_status").read_text()
    ref = dict(re.findall(r"^(\w+):\t(.*)$", text, re.MULTILINE))
    names = [
        "VmPeak",
        "VmSize",
        "VmLck",
        "VmPin",
        "VmHWM",
        "VmRSS",
        "RssAnon",
        "RssFile",
        "RssShmem",
        "VmData",
        "VmStk",
        "VmExe",
        "VmLib",
        "VmPTE",
        "VmSwap",
        "HugetlbPages",
    ]
    lines = [ST.StatusLine(n, f"{int(ref[n].split()[0]):>8} kB") for n in names]
    block = ST.render(lines)
    assert block in text
    assert block.startswith("VmPeak:\t   29268 kB\n")
    # the bitmaps: Cpus_allowed of 2 CPUs, Mems_allowed of MAX_NUMNODES = 1024 nodes
    assert ST.bitmap_string([3], 2) == ref["Cpus_allowed"] and ST.bitmap_list([3], 2) == ref["Cpus_allowed_list"]
    assert ST.bitmap_string([1] + [0] * 15, 1024) == ref["Mems_allowed"]
    assert ST.bitmap_list([1] + [0] * 15, 1024) == ref["Mems_allowed_list"]


_NUMA_KEYS = ("anon", "dirty", "mapped", "mapmax", "swapcache", "active", "writeback", "kernelpagesize_kB")


@needs_reference
def test_numa_maps_round_trip() -> None:
    text = (PID / "self_numa_maps").read_text()
    for line in text.splitlines():
        parts = line.split(" ")
        start, policy = int(parts[0], 16), parts[1]
        name, kv, nodes, huge = "", {}, {}, False
        for p in parts[2:]:
            if p.startswith("file=") or p in ("heap", "stack"):
                name = " " + p
            elif p == "huge":
                huge = True
            elif re.match(r"N\d+=", p):
                nodes[int(p[1:].split("=")[0])] = int(p.split("=")[1])
            else:
                k, _, v = p.partition("=")
                assert k in _NUMA_KEYS, line
                kv[k] = int(v)
        pages = kv.get("mapped") or max(kv.get("anon", 0), kv.get("dirty", 0))
        row = N.NumaMapsRow(
            start,
            policy,
            name,
            pages if kv else 0,
            kv.get("anon", 0),
            kv.get("dirty", 0),
            kv.get("mapmax", 1),
            kv.get("swapcache", 0),
            kv.get("active", pages),
            kv.get("writeback", 0),
            nodes,
            kv.get("kernelpagesize_kB", 4),
            huge,
        )
        assert N.render_row(row) == line


def test_crash_vm_layout_matches_a_real_crash_session() -> None:
    # crash 7.x on x86-64 (a published session): `vm 1106`
    head = V._vm_data(0xFFFF8BAC695BF700, 0xFFFF8BAC6CE42000, 9504, 309268)
    assert head == [
        "       MM               PGD          RSS    TOTAL_VM",
        "ffff8bac695bf700  ffff8bac6ce42000  9504k   309268k ",
    ]
    assert V._vma_header() == "      VMA           START       END     FLAGS FILE"
    row = {
        "vma": 0xFFFF8BAC71486A90,
        "start": 0x563C12926000,
        "end": 0x563C1292D000,
        "flags": 0x8000871,
        "file": "/usr/sbin/lightdm",
    }
    assert V._vma_line(row) == "ffff8bac71486a90 563c12926000 563c1292d000 8000871 /usr/sbin/lightdm"
    small = {"vma": 0xFFFF880424ECF368, "start": 0x400000, "end": 0x401000, "flags": 0x8001875, "file": "/x"}
    assert V._vma_line(small) == "ffff880424ecf368     400000     401000 8001875 /x"
    assert V._vm_data(1, 2, 16, 100)[1].endswith("   16k      100k  ")
