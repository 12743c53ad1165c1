"""``mmintro picture`` and ``mmintro diff``.

Pictures: every kind is written as a valid, non-blank PNG, and the numbers a picture paints
are the kernel's: the free blocks the memory map paints per zone and order are drgn's
``zone->free_area[order].nr_free`` (and buddyinfo's), its buddy pages are drgn's
NR_FREE_PAGES, the pageblocks per migratetype are pagetypeinfo's "Number of blocks type", the
VMAs of the address space are drgn's for_each_vma and their Rss adds up to drgn's task_rss.

Diff: a before/after pair made with the workload API on one machine (the same kernel saved
twice) lists exactly the changes drgn sees between the two dumps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import on_scenario

from mmintro.cli.main import cli
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.snapshot.writer import save, snapshot_paths
from mmintro.views import picture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _drgn(stem: str):
    pytest.importorskip("drgn")
    from mmintro.crosscheck import open_drgn

    core, vmlinux = snapshot_paths(stem)
    return open_drgn(str(core), str(vmlinux))


def _run(*args: str):
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r


def _check_png(path: Path, min_colours: int) -> None:
    """A PNG of sensible size that is not blank: at least ``min_colours`` distinct colours."""
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert 300 <= w <= 5000 and 150 <= h <= 8000, (w, h)
    rgb = (img[..., :3] * 255).astype(np.uint32)
    colours = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
    assert len(colours) >= min_colours, len(colours)


def _drgn_free_areas(dprog) -> dict[tuple[int, str], list[int]]:
    out = {}
    nodes = dprog["node_data"]
    for nid in range(dprog["nr_node_ids"].value_()):
        if not nodes[nid]:
            continue
        zones = nodes[nid].node_zones
        for i in range(len(zones)):
            z = zones[i]
            if z.present_pages.value_():
                fa = z.free_area
                out[(nid, z.name.string_().decode())] = [fa[o].nr_free.value_() for o in range(len(fa))]
    return out


# -- pictures, fast: the default machine ----------------------------------------------------
def test_memory_picture_paints_the_free_blocks_drgn_counts(default_snapshot, tmp_path):
    png = tmp_path / "memory.png"
    _run("picture", default_snapshot, "memory", "--png", str(png))
    _check_png(png, min_colours=6)
    with open_snapshot(default_snapshot) as prog:
        m = picture.memory_map(prog)
        from mmintro.views.buddyinfo import buddyinfo

        assert m.free_blocks == {(r.node, r.zone): r.nr_free for r in buddyinfo(prog)}
    dprog = _drgn(default_snapshot)
    assert m.free_blocks == _drgn_free_areas(dprog)
    nr_free = dprog["vm_zone_stat"][dprog.constant("NR_FREE_PAGES").value_()].counter.value_()
    assert m.pages()["free (buddy)"] == nr_free
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr

    pcp = 0
    for zones in (dprog["node_data"][nid].node_zones for nid in range(dprog["nr_node_ids"].value_())):
        for i in range(len(zones)):
            if zones[i].present_pages:
                pcp += sum(per_cpu_ptr(zones[i].per_cpu_pageset, c).count.value_() for c in for_each_online_cpu(dprog))
    assert m.pages()["free (per-cpu list)"] == pcp
    # every page of each free block is painted with the block's order
    painted = np.bincount(m.codes[m.codes >= picture.FREE_BASE] - picture.FREE_BASE, minlength=m.max_order + 1)
    total = np.sum([b for b in m.free_blocks.values()], axis=0)
    assert painted.tolist() == [int(n) << o for o, n in enumerate(total)]
    assert m.pages()["hole"] > 0 and m.pages()["reserved"] > 0  # the PCI hole, the kernel image


def test_migratetype_picture_counts_equal_pagetypeinfo(default_snapshot, tmp_path):
    png = tmp_path / "mt.png"
    _run("picture", default_snapshot, "migratetype", "--png", str(png))
    _check_png(png, min_colours=3)
    from mmintro.views.pagetypeinfo import pagetypeinfo, render

    with open_snapshot(default_snapshot) as prog:
        mt = picture.migratetype_map(prog)
        text = render(pagetypeinfo(prog))
    want = {}  # the report's "Number of blocks type" table
    for line in text.split("Number of blocks type")[1].splitlines()[1:]:
        if line.startswith("Node "):
            words = line.split()
            want[(int(words[1].rstrip(",")), words[3])] = [int(x) for x in words[4:]]
    assert mt.blocks == want and want
    assert sum(map(sum, want.values())) == int((mt.types >= 0).sum())
    lines = [str(t) for t in picture.terminal_lines("migratetype", mt)]
    assert "pageblocks of 512 pages" in lines[0] and any("Movable" in ln for ln in lines)


def test_memory_picture_in_the_terminal(default_snapshot):
    out = _run("picture", default_snapshot, "memory").output
    assert "node 0 Normal" in out and " reserved: " in out and "free order 10: " in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchkind"], "unknown KIND 'nosuchkind'"),
        (["address-space"], "--pid PID goes with address-space"),
        (["memory", "--pid", "1"], "--pid PID goes with address-space"),
    ],
)
def test_picture_usage_errors_are_one_line(default_snapshot, args, message):
    r = CliRunner().invoke(cli, ["picture", default_snapshot, *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_address_space_of_a_missing_pid_is_one_line(default_snapshot, tmp_path):
    r = CliRunner().invoke(cli, ["picture", default_snapshot, "address-space", "--pid", "4242"])
    assert r.exit_code == 1 and "no process 4242" in r.output


# -- a before/after pair ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """One machine saved twice: before and after a few steps of the workload API, with the
    pids of what the steps did."""
    from mmintro.workload import Workload

    d = tmp_path_factory.mktemp("pair")
    w = Workload(boot(MachineConfig(ram=1 << 30, cpus=2)))
    w.spawn("db", heap=4 << 20)
    w.touch("db", "heap", write=True, size=1 << 20)
    w.spawn("old", heap=1 << 20)
    w.touch("old", "heap", write=True)
    w.spawn("idle", heap=1 << 20)
    save(w.k, d / "before")
    pids = {name: w.proc(name).pid for name in ("db", "old", "idle")}
    w.spawn("web", heap=2 << 20)
    w.touch("web", "heap", write=True)
    pids["web"] = w.proc("web").pid
    w.exit("old")
    w.mmap("db", "buf", 2 << 20)
    w.touch("db", "buf", write=True, size=1 << 20)
    w.touch("db", "heap", write=True, start=1 << 20, size=1 << 20)
    w.kmalloc("leak", size=168, count=500)
    save(w.k, d / "after")
    return str(d / "before"), str(d / "after"), pids


def _drgn_tasks(dprog) -> dict[int, object]:
    from drgn.helpers.linux.pid import for_each_task

    return {t.pid.value_(): t for t in for_each_task(dprog) if t.pid.value_()}


def check_diff_against_drgn(before: str, after: str) -> tuple[dict, dict, tuple]:
    """``mmintro diff BEFORE AFTER --json`` lists exactly what real drgn reads as changed between
    the two dumps: the processes that came and went, each remaining process's VMAs and Rss, the
    buddy free counts per zone and order, every zone and node vmstat counter, and the objects and
    slabs of every slab cache.  Returns the diff, its changed processes by pid and drgn's
    slab_cache_usage of every cache before and after."""
    from drgn.helpers.linux.mm import for_each_vma, task_rss
    from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage

    d = json.loads(_run("diff", before, after, "--json").output)
    da, db = _drgn(before), _drgn(after)
    ta, tb = _drgn_tasks(da), _drgn_tasks(db)
    assert sorted(p["pid"] for p in d["processes"]["new"]) == sorted(set(tb) - set(ta))
    assert sorted(p["pid"] for p in d["processes"]["exited"]) == sorted(set(ta) - set(tb))
    changed = {p["pid"]: p for p in d["processes"]["changed"]}
    page_kb = 4
    for pid in set(ta) & set(tb):
        x, y = ta[pid], tb[pid]
        if not x.mm or x.tgid.value_() != pid:
            continue
        va = {v.vm_start.value_(): (v.vm_end.value_(),) for v in for_each_vma(x.mm)}
        vb = {v.vm_start.value_(): (v.vm_end.value_(),) for v in for_each_vma(y.mm)}
        rss_a, rss_b = task_rss(da, x).total * page_kb, task_rss(db, y).total * page_kb
        if va == vb and rss_a == rss_b:
            assert pid not in changed or not (changed[pid]["vmas_added"] or changed[pid]["vmas_removed"])
            continue
        c = changed[pid]
        assert c["rss_kb"] == [rss_a, rss_b]
        assert {int(v["start"], 16) for v in c["vmas_added"]} == set(vb) - set(va)
        assert {int(v["start"], 16) for v in c["vmas_removed"]} == set(va) - set(vb)
    # buddyinfo rows: exactly the zones whose free_area counts drgn sees change
    fa, fb = _drgn_free_areas(da), _drgn_free_areas(db)
    want = {k: [q - p for p, q in zip(fa[k], fb[k])] for k in fa if fa[k] != fb[k]}
    assert {(r["node"], r["zone"]): r["delta"] for r in d["buddyinfo"]} == want
    # vmstat: every zone and node counter drgn reads, under its /proc/vmstat name
    text_name = {
        "NR_ANON_MAPPED": "nr_anon_pages",
        "NR_FILE_MAPPED": "nr_mapped",
        "NR_PAGETABLE": "nr_page_table_pages",
        "NR_KERNEL_STACK_KB": "nr_kernel_stack",
        "NR_SLAB_RECLAIMABLE_B": "nr_slab_reclaimable",
        "NR_SLAB_UNRECLAIMABLE_B": "nr_slab_unreclaimable",
    }
    vm_deltas = {r["name"]: r["delta"] for r in d["vmstat"]}
    names_a = json.loads(_run("vmstat", before, "--json").output)
    compared = 0
    for array, enum in (("vm_zone_stat", "zone_stat_item"), ("vm_node_stat", "node_stat_item")):
        for name, value in da.type(f"enum {enum}").enumerators:
            text = text_name.get(name, name.lower())
            if name.startswith("NR_VM_") or text not in names_a:
                continue
            delta = db[array][value].counter.value_() - da[array][value].counter.value_()
            assert vm_deltas.get(text, 0) == delta, text
            compared += 1
    assert compared > 20
    # slab caches: objects and slabs as drgn's slab_cache_usage counts them
    ua = {c.name.string_().decode(): slab_cache_usage(c) for c in for_each_slab_cache(da)}
    ub = {c.name.string_().decode(): slab_cache_usage(c) for c in for_each_slab_cache(db)}
    assert d["slab"]["added"] == [n for n in ub if n not in ua] and not d["slab"]["removed"]
    slab = {r["name"]: r for r in d["slab"]["changed"]}
    for name in ua:
        want = (ub[name].num_objs - ua[name].num_objs, ub[name].num_slabs - ua[name].num_slabs)
        got = (slab[name]["num_objs_delta"], slab[name]["num_slabs_delta"]) if name in slab else (0, 0)
        assert got == want, name
    return d, changed, (ua, ub)


def test_diff_lists_exactly_the_changes_drgn_sees(pair):
    before, after, pids = pair
    d, changed, (ua, ub) = check_diff_against_drgn(before, after)
    assert [p["pid"] for p in d["processes"]["new"]] == [pids["web"]]
    assert [p["pid"] for p in d["processes"]["exited"]] == [pids["old"]]
    assert set(changed) == {pids["db"]}  # idle did nothing; web is new, old exited
    db_change = changed[pids["db"]]
    assert len(db_change["vmas_added"]) == 1 and db_change["vmas_added"][0]["rss_kb"] == 1024
    assert db_change["rss_delta_kb"] == 2048
    assert [(c["b"]["name"], c["b"]["rss_kb"] - c["a"]["rss_kb"]) for c in db_change["vmas_changed"]] == [
        ("[heap]", 1024)
    ]
    assert d["buddyinfo"]
    vm_deltas = {r["name"]: r["delta"] for r in d["vmstat"]}
    assert vm_deltas["nr_anon_pages"] == (2048 + 2048 - 1024) // 4
    # the 500 leaked objects (and what spawning "web" took) are in use: drgn walks every freelist
    in_use = {n: ub[n].num_objs - ub[n].free_objs - (ua[n].num_objs - ua[n].free_objs) for n in ua}
    assert in_use["kmalloc-192"] >= 500
    slab = {r["name"]: r for r in d["slab"]["changed"]}
    assert slab["kmalloc-192"]["active_objs_delta"] >= 500
    # meminfo: the lines that changed include what the steps did
    mi = {r["name"]: r["delta"] for r in d["meminfo"]}
    assert mi["AnonPages"] == 2048 + 2048 - 1024 and "MemTotal" not in mi


@pytest.mark.slow  # the fork-cow scenario (shared) and drgn on both of its snapshots
def test_diff_of_a_scenarios_part_way_snapshot_is_what_drgn_sees(scenario_snapshot):
    """fork-cow's snapshot step writes the machine right after the forks; what its last steps
    (the workers' copy-on-write writes) changed is exactly what drgn reads as changed: anonymous
    pages and page faults up by the pages copied, no process added or gone, and no Rss changed
    (a copy replaces a shared page in the writer's page table)."""
    stem = scenario_snapshot("fork-cow")[0]
    d, changed, _usage = check_diff_against_drgn(stem + "-before-cow", stem)
    assert not d["processes"]["new"] and not d["processes"]["exited"] and not changed
    vm = {r["name"]: r["delta"] for r in d["vmstat"]}
    assert vm["nr_anon_pages"] > 0 and vm["pgfault"] == vm["nr_anon_pages"]
    assert {r["name"]: r["delta"] for r in d["meminfo"]}["AnonPages"] == vm["nr_anon_pages"] * 4


def test_diff_text_and_identical_snapshots(pair):
    before, after, pids = pair
    out = _run("diff", before, after).output
    assert f"+ pid {pids['web']} (web)" in out and f"- pid {pids['old']} (old)" in out
    assert "[heap]" in out and "kmalloc-192" in out
    same = _run("diff", before, before).output
    assert "meminfo: 0 changed" in same and "processes: 0 new, 0 exited, 0 changed" in same


def test_address_space_picture_is_drgns_vmas_and_rss(pair):
    from drgn.helpers.linux.mm import for_each_vma, task_rss

    _before, after, pids = pair
    with open_snapshot(after) as prog:
        a = picture.address_space(prog, pids["db"])
    dprog = _drgn(after)
    task = _drgn_tasks(dprog)[pids["db"]]
    own = [v for v in a.vmas if v["name"] != "[vsyscall]"]
    assert [(v["start"], v["end"]) for v in own] == [
        (v.vm_start.value_(), v.vm_end.value_()) for v in for_each_vma(task.mm)
    ]
    assert sum(v["rss_kb"] for v in own) == task_rss(dprog, task).total * 4
    out = _run("picture", after, "address-space", "--pid", str(pids["db"])).output
    assert "[heap]" in out and "Rss" in out


# -- every shipped scenario (slow) --------------------------------------------------------------
def _shipped() -> list[str]:
    from mmintro.workload import shipped_scenarios

    return sorted(shipped_scenarios())


@pytest.mark.slow
@pytest.mark.parametrize("name", on_scenario(_shipped()))
def test_every_picture_of_every_shipped_scenario(name, tmp_path, scenario_snapshot):
    from mmintro.views.buddyinfo import buddyinfo
    from mmintro.views.pagetypeinfo import pagetypeinfo
    from mmintro.views.picture_png import write_png
    from mmintro.views.ps import ps

    stem = scenario_snapshot(name)[0]
    with open_snapshot(stem) as prog:
        m = picture.memory_map(prog)
        assert m.free_blocks == {(b.node, b.zone): b.nr_free for b in buddyinfo(prog)}
        mt = picture.migratetype_map(prog)
        assert mt.blocks == {(b.node, b.zone): b.counts for nd in pagetypeinfo(prog) for b in nd.blocks}
        kinds = {"memory": m, "migratetype": mt, "fragmentation": picture.fragmentation_picture(prog)}
        users = [row.pid for row in ps(prog) if row.pid and row.vsz]
        if users:
            kinds["address-space"] = picture.address_space(prog, users[0])
    for kind, data in kinds.items():
        png = tmp_path / f"{kind}.png"
        write_png(kind, data, png)
        _check_png(png, min_colours=3 if kind == "migratetype" else 4)


# -- a real 6.18 kernel's dump: the guest's own /proc is the oracle -------------------------------
def _guest_blocks(text: str) -> dict[tuple[int, str], list[int]]:
    out = {}
    for line in text.split("Number of blocks type")[1].splitlines()[1:]:
        if line.startswith("Node "):
            words = line.split()
            out[(int(words[1].rstrip(",")), words[3])] = [int(x) for x in words[4:]]
    return out


@pytest.mark.slow  # opens the real dump twice (its BTF and kallsyms): about 20 s
def test_pictures_of_a_real_kernels_dump(real_dump, tmp_path):
    from mmintro.reader.dump import open_dump
    from mmintro.views.buddyinfo import buddyinfo

    ref = real_dump
    with open_dump(str(ref.path("elf")), ref.vmlinuz, None) as prog:
        m = picture.memory_map(prog)
        mt = picture.migratetype_map(prog)
        pid = ref.pids["parent"]
        a = picture.address_space(prog, pid)
        assert m.free_blocks == {(r.node, r.zone): r.nr_free for r in buddyinfo(prog)}
    # the guest printed these just before it stopped: free pages may drift by a few per-CPU
    # list drains (see test_realkernel_proc), pageblocks and a sleeping process's smaps do not
    vmstat = dict(line.split() for line in ref.proc("vmstat").splitlines())
    assert abs(m.pages()["free (buddy)"] - int(vmstat["nr_free_pages"])) <= 512
    assert mt.blocks == _guest_blocks(ref.proc("pagetypeinfo"))
    rss = [int(line.split()[1]) for line in ref.proc("smaps", pid).splitlines() if line.startswith("Rss:")]
    assert [v["rss_kb"] for v in a.vmas] == rss
    assert m.pages()["slab"] > 0 and m.pages()["anon"] > 0 and m.pages()["page table"] > 0
    png = tmp_path / "real-memory.png"
    _run("picture", str(ref.path("elf")), "memory", "--kernel", ref.vmlinuz, "--png", str(png))
    _check_png(png, min_colours=8)
