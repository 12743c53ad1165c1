"""No traceback, ever, on any input (issue 14): seeded mutations of a snapshot pair -- kernel
structures found through the reader (page tables, struct pages, slabs, maple nodes, tasks,
zones, free lists, LRU lists, swap, vmap areas, globals), the ELF core (truncation, program
headers, notes), VMCOREINFO values, the vmlinux's ``.mmintro.types`` (bytes and JSON), DWARF and
``.symtab`` -- each read by the report commands and ``crosscheck``, in-process with a per-run
alarm.  Every run must end as ok, a one-line error (exit 1/2), or a finding (exit 3): never a
traceback, never a timeout.  The long run (>= 10,000 runs, its table) is
``python tools/fuzz_snapshots.py``; this is its seeded sample."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import fuzz_snapshots as F


def _simulate(tmp_path_factory: pytest.TempPathFactory, scenario: str) -> tuple[str, str]:
    """(pristine stem, private copy stem) of a scenario's snapshot."""
    d = tmp_path_factory.mktemp(f"fuzz-{scenario}")
    run("simulate", scenario, "-o", str(d / scenario))
    F.private_copy(str(d / scenario), str(d / "work"))
    return str(d / scenario), str(d / "work")


@pytest.fixture(scope="module")
def fork_cow(tmp_path_factory):
    return _simulate(tmp_path_factory, "fork-cow")


def _fuzz(
    scenario: str,
    pair: tuple[str, str],
    seeds: range,
    max_commands: int | None,
    crosscheck_every: int,
    dwarf_crosschecks: int,
) -> tuple[dict[str, Counter], list[str]]:
    table: dict[str, Counter] = {}
    bad: list[str] = []
    for seed in seeds:
        pool = F.KDUMP_CLASSES if "kdump" in scenario else F.CLASSES
        dwarf = pool[seed % len(pool)] == "dwarf"
        m, results = F.fuzz_one(
            scenario,
            pair[0],
            pair[1],
            seed,
            crosscheck=seed % crosscheck_every == 0,
            timeout=20.0,
            max_commands=max_commands,
            dwarf_crosscheck=dwarf and (seed - seeds.start) < dwarf_crosschecks * len(F.CLASSES),
        )
        for argv, o in results:
            table.setdefault(m.cls, Counter())[o.outcome] += 1
            if o.outcome in ("traceback", "timeout"):
                bad.append(f"{scenario}:{seed} {m.cls} [{m.desc}] {' '.join(argv[:1] + argv[2:])}: {o.detail}")
    return table, bad


def test_fuzz_sample(fork_cow):
    """Three mutations of every class of the fork-cow snapshot (93), three commands each (all
    the reports over the sample) and crosscheck on two and on one with damaged DWARF: no
    traceback, no timeout (the slow pass runs thousands: test_fuzz_every_report)."""
    n = len(F.CLASSES)
    table, bad = _fuzz("fork-cow", fork_cow, range(3 * n), max_commands=3, crosscheck_every=2 * n, dwarf_crosschecks=1)
    assert not bad, "\n".join(bad)
    assert set(table) == set(F.CLASSES)
    # a truncated file can never be read: every run of the class is a one-line error
    assert set(table["elf-truncate"]) == {"error"}, table["elf-truncate"]
    assert sum(c["ok"] for c in table.values()) > 0  # (an alarm or a fixture that breaks every run)


@pytest.fixture(scope="module")
def fork_cow_kdump(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-kdump")
    run("simulate", "fork-cow", "--format", "kdump", "-o", str(d / "kd"))
    F.private_copy(str(d / "kd"), str(d / "work"))
    return str(d / "kd"), str(d / "work")


def test_fuzz_kdump_sample(fork_cow_kdump):
    """A kdump-compressed NAME.vmcore: its headers, bitmaps, page descriptors and compressed
    data damaged or truncated (and the vmlinux classes), four mutations of each class."""
    n = len(F.KDUMP_CLASSES)
    table, bad = _fuzz(
        "fork-cow-kdump",
        fork_cow_kdump,
        range(4 * n),
        max_commands=3,
        crosscheck_every=10**6,
        dwarf_crosschecks=0,
    )
    assert not bad, "\n".join(bad)
    assert set(table) == set(F.KDUMP_CLASSES)
    assert set(table["kdump-truncate"]) == {"error"}, table["kdump-truncate"]


@pytest.mark.slow
def test_fuzz_every_report(fork_cow, tmp_path_factory):
    """Two mutations of every class of fork-cow and one of slab-leak, every report on each
    (about 3,500 runs), crosscheck on a sixth of them."""
    n = len(F.CLASSES)
    bad = []
    for scenario, pair, per_class in (
        ("fork-cow", fork_cow, 2),
        ("slab-leak", _simulate(tmp_path_factory, "slab-leak"), 1),
    ):
        table, b = _fuzz(
            scenario,
            pair,
            range(1000, 1000 + per_class * n),
            max_commands=None,
            crosscheck_every=6,
            dwarf_crosschecks=per_class,
        )
        bad += b
        assert sum(sum(c.values()) for c in table.values()) > per_class * n * 40
    assert not bad, "\n".join(bad)


def _runs(pair: tuple[str, str], m: F.Mutation, cmds: tuple[tuple[str, ...], ...]) -> dict[str, F.Outcome]:
    out = {}
    with F.applied(m, pair[1]):
        for c in cmds:
            out[" ".join(c)] = F.run_cli([c[0], pair[1], *c[1:]], timeout=20.0)
    bad = {k: o.detail for k, o in out.items() if o.outcome in ("traceback", "timeout")}
    assert not bad, f"{m.desc}: {bad}"
    return out


_EVERYWHERE = (
    ("meminfo",),
    ("page-types",),
    ("pagetypeinfo",),
    ("buddyinfo",),
    ("page", "300"),
    ("whatis", "--pfn", "300"),
    ("ps",),
    ("vtop", "0xffff888000100000"),
    ("slabinfo",),
)


@pytest.mark.parametrize(
    "key, value",
    [
        ("SIZE(mem_section)", "0"),
        ("NUMBER(SECTION_SIZE_BITS)", "64"),
        ("NUMBER(SECTION_SIZE_BITS)", "0"),
        ("LENGTH(mem_section)", "0"),
        ("LENGTH(mem_section)", str(1 << 60)),
        ("LENGTH(node_data)", str(1 << 70)),
        ("LENGTH(node_data)", "0"),
        ("KERNELOFFSET", "ffffffffffffffff"),
        ("NUMBER(phys_base)", str(1 << 64)),
        ("PAGESIZE", "0"),
        ("SYMBOL(swapper_pg_dir)", "zz"),
        ("NUMBER(pgtable_l5_enabled)", "1"),
        ("SIZE(mem_section)", "1" * 5000),
    ],
    ids=lambda v: v[:24],
)
def test_impossible_vmcoreinfo(fork_cow, key, value):
    """The issue's VMCOREINFO values (SIZE(mem_section) 0: ZeroDivisionError; SECTION_SIZE_BITS
    64: exabytes; a huge LENGTH(node_data) or KERNELOFFSET: OverflowError) are one line, exit 1."""
    _, info = F.prepare(fork_cow[0])
    m = F.Mutation("fork-cow", 0, "vmcoreinfo", "")
    F.vmcoreinfo_mutation(m, info, key, value)
    m.desc = f"{key}={value[:20]}"
    out = _runs(fork_cow, m, _EVERYWHERE)
    if key != "NUMBER(pgtable_l5_enabled)":  # (a 5-level walk of 4-level tables may or may not fault)
        assert out["page-types"].outcome == "error", (m.desc, out["page-types"])


def test_kernel_page_table_entries_pointing_elsewhere(fork_cow):
    """swapper's PMDs and PTEs (the vmemmap's, the direct map's) pointing at another table,
    at their own table or outside RAM: pagetypeinfo, page-types, page, whatis go on or stop
    in one line (the issue's IndexError in pagetypeinfo)."""
    targets, info = F.prepare(fork_cow[0])
    entries = [t for t in targets.by_class["pgtable"] if t.label.startswith("swapper p")]
    tables = sorted({t.pa & ~0xFFF for t in targets.by_class["pgtable"]})
    assert len(entries) > 10 and len(tables) > 3
    for i, t in enumerate(entries[:: max(1, len(entries) // 6)]):
        old = F.field_value(info, t)
        for new, how in (
            ((tables[i % len(tables)] | (old & 0xFFF)), "another table"),
            ((t.pa & ~0xFFF) | (old & 0xFFF), "its own table"),
            (old ^ 0x80, "PSE flipped"),
            ((1 << 45) | (old & 0xFFF), "outside RAM"),
        ):
            m = F.field_mutation(F.Mutation("fork-cow", i, "pgtable", ""), info, t, new, how)
            _runs(
                fork_cow,
                m,
                (
                    ("pagetypeinfo",),
                    ("page-types",),
                    ("page", "4000"),
                    ("meminfo",),
                    ("whatis", hex(t.focus.get("vaddr", 0xFFFF888000000000))),
                ),
            )


@pytest.mark.parametrize("field", ["spanned_pages", "zone_start_pfn", "present_pages", "managed_pages"])
def test_impossible_zone_spans(fork_cow, field):
    """A zone whose span or page counts are 2^63-scale (pagetypeinfo once tried to allocate
    215 PiB for its pageblocks): every zone report goes on or stops in one line."""
    targets, info = F.prepare(fork_cow[0])
    zone_fields = [
        t for t in targets.by_class["zone"] if t.label.endswith(f".{field}") or t.label.endswith(f".{field}.counter")
    ]
    assert zone_fields, field
    for t in zone_fields[:3]:
        for new in (0xD6FD1CBD9F542D78, 1 << 63, (1 << 64) - 1, 1 << 40):
            m = F.field_mutation(F.Mutation("fork-cow", 0, "zone", ""), info, t, new)
            _runs(
                fork_cow,
                m,
                (
                    ("pagetypeinfo",),
                    ("zoneinfo",),
                    ("buddyinfo",),
                    ("page-types",),
                    ("meminfo",),
                    ("fragmentation",),
                    ("compaction",),
                    ("page", "300"),
                    ("whatis", "--pfn", "300"),
                ),
            )


@pytest.mark.parametrize("name", ["nr_node_ids", "nr_cpu_ids", "pageblock_order", "vmap_zone_size", "nr_vmap_nodes"])
def test_impossible_node_and_cpu_counts(fork_cow, name):
    """nr_node_ids 0x2001 (a flipped bit: IndexError past node_states' mask) or 2^32 (a walk of
    four billion s->node[] slots), nr_cpu_ids 2^32 (status printed four billion bits),
    pageblock_order 2^31 (IndexError in pagetypeinfo), vmap_zone_size or nr_vmap_nodes 0
    (ZeroDivisionError): one line or a report, never a traceback or a hang."""
    targets, info = F.prepare(fork_cow[0])
    with __import__("mmintro.reader", fromlist=["open_snapshot"]).open_snapshot(fork_cow[0]) as prog:
        v = prog[name]
        t = F.Target(prog.translate(v.address_), v.type_.size, name, va=v.address_)
    for new in (0, 0x2001, 1 << 31, (1 << 8 * t.size) - 1):
        m = F.field_mutation(F.Mutation("fork-cow", 0, "global", ""), info, t, new)
        _runs(
            fork_cow,
            m,
            (
                ("meminfo",),
                ("zoneinfo",),
                ("buddyinfo",),
                ("slabinfo",),
                ("kmem-s", "kmalloc-64"),
                ("vmallocinfo",),
                ("ps",),
                ("pagetypeinfo",),
                ("vmstat",),
                ("whatis", "--pfn", "300"),
                ("status", "1"),
                ("pressure",),
                ("numa-maps", "1"),
            ),
        )


def test_classify():
    """The classes themselves: what counts as a one-line error and what as a traceback."""
    assert F.classify(["meminfo"], 0, "").outcome == "ok"
    assert F.classify(["meminfo"], 3, "").outcome == "finding"
    assert F.classify(["meminfo"], 1, "mmintro: error: bad\n").outcome == "error"
    assert F.classify(["meminfo"], 1, "Error: bad\n").outcome == "traceback"
    assert F.classify(["meminfo"], 1, "mmintro: error: a\nmmintro: error: b\n").outcome == "traceback"
    assert F.classify(["meminfo"], 1, "Traceback (most recent call last):\n  ...\n").outcome == "traceback"
    assert F.classify(["meminfo"], -11, "").outcome == "traceback"
    try:
        raise ZeroDivisionError("x")
    except ZeroDivisionError:
        assert F.classify(["meminfo"], 1, "", sys.exc_info()).outcome == "traceback"


def test_alarm_stops_a_hang():
    """A run that does not answer is a timeout (the alarm reaches Python code)."""
    import signal

    import click

    from mmintro.cli.main import cli

    @click.command("fuzz-hang")
    def hang() -> None:
        while True:
            pass

    cli.add_command(hang)
    try:
        assert F.run_cli(["fuzz-hang"], timeout=0.3).outcome == "timeout"
    finally:
        cli.commands.pop("fuzz-hang")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize(
    "text, words",
    [  # (ids: the texts are long)
        ("[scenario]\nhelp = 'x'\n[machine]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (
            "[scenario]\nhelp = 'x'\n[machine]\nram = '256M'\n[[step]]\nexpect = \""
            + " + ".join(["nr_free_pages"] * 20000)
            + ' > 0"\n',
            "nested too deeply",
        ),
        (
            "[scenario]\nhelp = 'x'\n[machine]\nram = '256M'\n[[step]]\nexpect = \""
            + "(" * 150
            + "1"
            + ")" * 150
            + " > 0 and "
            + "-" * 300
            + '1 < 0"\n',
            "nested too deeply",
        ),
        ("[scenario\n", "not valid TOML"),
        ("\x00\xff", "not valid TOML"),
    ],
    ids=["deep-array", "long-expect", "deep-expect", "bad-toml", "binary"],
)
def test_scenario_files_that_would_recurse(tmp_path, text, words):
    """A 5,000-deep TOML array or a 20,000-term expect is one line, exit 1 (not RecursionError)."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    r = run("simulate", str(path), "-o", str(tmp_path / "out"), ok=False)
    assert r.exit_code == 1, (r.stderr, r.exception)
    assert r.stderr.startswith("mmintro: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert words in r.stderr
