"""Addresses in every report's --json are "0x..." strings (mmintro.cli.output.ADDRESS_FIELDS),
counts and sizes integers: every report is run on a scenario snapshot with processes, a
thread, shared memory, a file and a swap device, and its JSON is walked field by field.

Two checks, so a report that adds an address under a new name cannot slip through: every
field named in ADDRESS_FIELDS holds a hex string (or null), and no integer anywhere else looks
like a kernel address (the direct map, vmalloc, vmemmap and kernel image all lie at or above
0xffff800000000000, which no count, size, pfn or offset of these reports reaches; only page
flags words, whose top bits hold the node and zone, are exempt by name)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from mmintro.cli.main import cli
from mmintro.cli.output import ADDRESS_FIELDS, hex_addresses
from mmintro.snapshot.writer import save
from mmintro.workload import parse_scenario, run_scenario

SCENARIO = """
[machine]
ram = "256M"
cpus = 2

[[step]]
create_file = "db"
path = "/var/lib/db/table.dat"
size = "1M"

[[step]]
read = "db"

[[step]]
spawn = "postgres"
heap = "1M"

[[step]]
touch = "heap"
process = "postgres"
access = "write"
populate = true

[[step]]
mmap = "shm"
process = "postgres"
kind = "shmem"
size = "1M"

[[step]]
touch = "shm"
process = "postgres"
access = "write"
populate = true

[[step]]
mmap = "table"
process = "postgres"
kind = "shared"
file = "db"
size = "1M"

[[step]]
fork = "backend"
parent = "postgres"

[[step]]
thread = "walwriter"
process = "postgres"
"""

HEX = re.compile(r"0x[0-9a-f]+")
KERNEL_SPACE = 0xFFFF800000000000


@pytest.fixture(scope="module")
def snap(tmp_path_factory):  # type: ignore[no-untyped-def]
    run = run_scenario(parse_scenario(SCENARIO, "json.toml"))
    path = tmp_path_factory.mktemp("json") / "s"
    save(run.kernel, path)
    k = run.kernel
    slab_obj = next(a for a, (c, _w) in k.slab.live.items() if c is not None)
    vm_area = next(a for a in k.vmap.areas.values() if len(a.pfns) > 1)
    return str(path), {
        "slab": slab_obj,
        "vmalloc": vm_area.addr + 4096,
        "page": k.vmemmap_base + 0x1234 * 64,
        "direct": k.page_offset_base + (0x1234 << 12),
    }


def _reports(addrs: dict[str, int]) -> list[list[str]]:
    per_pid = ["maps", "smaps", "smaps-rollup", "status", "numa-maps", "vm", "oom-score"]
    return (
        [
            ["iomem"],
            ["zoneinfo"],
            ["buddyinfo"],
            ["page", "0x1234"],
            ["page-types"],
            ["pagetypeinfo"],
            ["vmstat"],
            ["meminfo"],
            ["fragmentation"],
            ["slabinfo"],
            ["kmem-s"],
            ["kmem-s", "task_struct"],
            ["vmallocinfo"],
            ["dmesg"],
            ["swaps"],
            ["ps"],
            ["oom-scores"],
            ["vtop", hex(addrs["direct"])],
            ["vtop", "--pid", "1", "0x400000"],
            ["whatis", "--pfn", "0x1234"],
        ]
        + [["whatis", hex(a)] for a in addrs.values()]
        + [[c, pid] for c in per_pid for pid in ("1", "2")]
    )


def _walk(o, key: str, where: str, bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    if isinstance(o, dict):
        for k, v in o.items():
            _walk(v, k, f"{where}.{k}", bad)
    elif isinstance(o, list):
        for i, v in enumerate(o):
            _walk(v, key, f"{where}[{i}]", bad)
    elif key in ADDRESS_FIELDS:
        if not (o is None or (isinstance(o, str) and HEX.fullmatch(o))):
            bad.append(f"{where} = {o!r}: an address field that is not a 0x... string")
    elif isinstance(o, int) and not isinstance(o, bool) and o >= KERNEL_SPACE and not key.endswith("flags"):
        bad.append(f"{where} = {o}: a kernel address as a decimal integer (add its name to ADDRESS_FIELDS)")


def test_every_reports_json_gives_addresses_as_hex_strings(snap) -> None:  # type: ignore[no-untyped-def]
    path, addrs = snap
    runner = CliRunner()
    bad: list[str] = []
    seen: set[str] = set()
    for argv in _reports(addrs):
        cmd = [argv[0], path, *argv[1:], "--json"]
        r = runner.invoke(cli, cmd)
        assert r.exit_code == 0, (cmd, r.output)
        data = json.loads(r.stdout)
        _walk(data, "", " ".join(argv), bad)
        seen |= {m for m in re.findall(r'"([a-z_]+)": "0x', r.stdout)}
    assert bad == []
    # the rule was exercised: kernel, user and physical addresses of many kinds came out in hex
    assert {
        "task",
        "mm",
        "pgd",
        "vma",
        "start",
        "end",
        "page",
        "phys",
        "cache",
        "slab",
        "object",
        "address",
        "vm_struct",
        "entry",
    } <= seen


def test_hex_addresses_keeps_counts_and_converts_addresses() -> None:
    data = {
        "start": 4096,
        "end": None,
        "size": 8192,
        "pfn": 16,
        "vmas": [{"vma": 0xFFFF888000001000, "pages": 3}],
        "freelist": [0xFFFF888000002000, 0],
        "flags": 0x8000,
        "nested": {"mm": 0, "ok": True},
    }
    assert hex_addresses(data) == {
        "start": "0x1000",
        "end": None,
        "size": 8192,
        "pfn": 16,
        "vmas": [{"vma": "0xffff888000001000", "pages": 3}],
        "freelist": ["0xffff888000002000", "0x0"],
        "flags": 0x8000,
        "nested": {"mm": "0x0", "ok": True},
    }
