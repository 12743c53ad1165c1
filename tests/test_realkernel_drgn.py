"""Real drgn 0.3.0 on a real Linux 6.18 dump, with debug info mmintro generates: no debug package.

``mmintro debuginfo`` turns the kernel image's .BTF and the dump's kallsyms into an ELF with
DWARF-4 types, variables (link-time addresses: drgn adds KERNELOFFSET) and symbols.  drgn opens
the dump with it, and its stock helpers must agree with mmintro's reader on the same dump:
totalram, free lists, slab caches, tasks, VMAs; ``mmintro crosscheck`` runs every drgn row.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run

drgn = pytest.importorskip("drgn")

REFDUMP = Path.home() / ".cache" / "mmintro" / "refdumps" / "default"


@pytest.fixture(scope="session")
def _local_real_dump():
    """Fallback for a tree without tests/conftest.py's ``real_dump``: the harness's
    ``refdumps/default`` directory (skips if it was never made)."""
    from mmintro.realkernel.qemu import load_reference_dump

    if not (REFDUMP / "manifest.json").exists():
        pytest.skip(f"no reference dump in {REFDUMP}")
    return load_reference_dump(REFDUMP)


# The dumps: conftest.py's shared fixtures (1 node, KASLR, 4-level paging; 2 nodes, no KASLR,
# 5-level paging).  Without them the default one falls back to _local_real_dump.
DUMPS = ["real_dump", "real_dump_numa2_l5", "real_dump_swap"]

# Crosscheck rows known to fail on a dump because of a bug in a view (mmintro/views, fixed
# elsewhere): (dump fixture, row) -> the bug.  The test xfails while exactly these fail.
KNOWN_VIEW_BUGS: dict[tuple[str, str], str] = {}  # (dump fixture, row) -> the view bug, while one is open


@pytest.fixture(scope="module", params=DUMPS)
def ref(request):
    """A reference dump (:class:`mmintro.realkernel.qemu.ReferenceDump`)."""
    try:
        dump = request.getfixturevalue(request.param)
    except pytest.FixtureLookupError:
        if request.param != "real_dump":
            pytest.skip(f"conftest.py has no {request.param} fixture")
        dump = request.getfixturevalue("_local_real_dump")
    dump.fixture_name = request.param
    return dump


@pytest.fixture(scope="module")
def vmcore(ref) -> str:
    return str(ref.path("elf"))


@pytest.fixture(scope="module")
def debug_file(ref, vmcore, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("debuginfo") / "kernel.debug"
    run("debuginfo", "--kernel", ref.vmlinuz, "-o", str(out), vmcore)
    return str(out)


@pytest.fixture(scope="module")
def prog(ref, vmcore):
    from mmintro.reader.dump import open_dump

    p = open_dump(vmcore, ref.vmlinuz)
    yield p
    p.close()


@pytest.fixture(scope="module")
def dprog(vmcore, debug_file):
    from mmintro.crosscheck import open_drgn_real

    return open_drgn_real(vmcore, debug_file)


# -- the debug file ------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("llvm-dwarfdump") is None, reason="llvm-dwarfdump not installed")
def test_debuginfo_verifies(debug_file):
    r = subprocess.run(["llvm-dwarfdump", "--verify", debug_file], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "No errors." in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


def test_debuginfo_build_id_and_link_time_addresses(prog, debug_file):
    from mmintro.reader.elf import ElfFile
    from mmintro.snapshot.vmlinux import read_build_id

    assert read_build_id(debug_file) == prog.kernel_image.build_id
    assert read_build_id(debug_file).hex() == prog.vmcoreinfo["BUILD-ID"].lower()
    syms = {s.name: s for s in ElfFile(debug_file).symbols}
    for name in ("init_mm", "node_data", "_totalram_pages", "runqueues", "vmemmap_populate"):
        assert syms[name].address == prog.symbol(name).address - prog.kernel_offset, name
    assert syms["vmemmap_populate"].kind == "func" and syms["init_mm"].kind == "object"


def test_drgn_cli_opens_the_dump(vmcore, debug_file, tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "from drgn.helpers.linux.mm import totalram_pages\nprint(totalram_pages(prog), prog['init_mm'].pgd.value_())\n"
    )
    exe = shutil.which("drgn")
    if exe is None:
        pytest.skip("the drgn command is not on PATH")
    r = subprocess.run(
        [exe, "-q", "-c", vmcore, "-s", debug_file, str(script)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    total, pgd = map(int, r.stdout.split()[-2:])
    assert total > 0 and pgd >= 0xFFFF800000000000


# -- drgn = mmintro --------------------------------------------------------------------------------
def test_globals(prog, dprog, ref):
    """Variables through DW_OP_addr + KERNELOFFSET, on a KASLR dump."""
    assert bool(prog.kernel_offset) == ref.config.kaslr
    assert dprog["init_mm"].pgd.value_() == prog["init_mm"].pgd.value_()
    assert dprog["init_mm"].address_of_().value_() == prog.symbol("init_mm").address
    assert dprog["node_data"][0].node_spanned_pages.value_() == prog["node_data"][0].node_spanned_pages.value_()
    assert dprog["_totalram_pages"].counter.value_() == prog["_totalram_pages"].counter.value_()
    from drgn.helpers.linux.percpu import per_cpu

    # a per-CPU variable (kernel addresses since 6.15) through __per_cpu_offset
    assert per_cpu(dprog["runqueues"], 0).cpu.value_() == 0
    assert per_cpu(dprog["runqueues"], 1).cpu.value_() == 1
    assert dprog.symbol(prog.symbol("init_mm").address + 8).name == "init_mm"


def test_totalram(prog, dprog):
    from drgn.helpers.linux.mm import totalram_pages

    from mmintro.reader.helpers import mm as mmh

    assert totalram_pages(dprog) == int(mmh.totalram_pages(prog)) > 0


def _free_area_counts_drgn(d):
    from drgn.helpers.linux.list import list_count_nodes
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    out = {}
    for pg in for_each_online_pgdat(d):
        for i in range(len(pg.node_zones)):
            z = pg.node_zones[i]
            if not z.present_pages:
                continue
            walked, nr_free = [], []
            for o in range(len(z.free_area)):
                fa = z.free_area[o]
                lists = [fa.free_list[mt].address_of_() for mt in range(len(fa.free_list))]
                walked.append(sum(list_count_nodes(head) for head in lists))
                nr_free.append(fa.nr_free.value_())
            out[(pg.node_id.value_(), z.name.string_().decode())] = (walked, nr_free)
    return out


def test_free_area_counts(prog, dprog):
    """Every populated zone's free lists walked by drgn = mmintro's /proc/buddyinfo counts and
    each free_area.nr_free."""
    from mmintro.views.buddyinfo import buddyinfo

    theirs = _free_area_counts_drgn(dprog)
    mine = {(r.node, r.zone): list(r.nr_free) for r in buddyinfo(prog)}
    assert set(mine) == set(theirs)
    for key, (walked, nr_free) in theirs.items():
        assert walked == nr_free, key
        assert mine[key] == walked, key
    assert sum(sum(c << o for o, c in enumerate(w)) for w, _ in theirs.values()) > 0


def test_slab_caches(prog, dprog):
    """slab_cache_usage() per cache (num_slabs, num_objs, free_objs): drgn = mmintro."""
    from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage

    from mmintro.reader.helpers import slab as sh

    mine = [(sh.slab_cache_name(c), tuple(sh.slab_cache_usage(c))) for c in sh.for_each_slab_cache(prog)]
    theirs = [(c.name.string_().decode(), tuple(slab_cache_usage(c))) for c in for_each_slab_cache(dprog)]
    assert mine == theirs
    assert len(mine) > 50 and sum(u[1] for _n, u in mine) > 10000


def test_tasks_pid_comm_rss(prog, dprog, ref):
    """Every task: pid, comm and RSS (kB, drgn's task_rss) = mmintro's ps rows."""
    from drgn.helpers.linux.mm import task_rss
    from drgn.helpers.linux.pid import for_each_task

    from mmintro.views.ps import ps

    mine = sorted((r.pid, r.comm.strip("[]"), r.rss) for r in ps(prog) if r.pid)
    theirs = []
    for t in for_each_task(dprog):
        rss = 0
        if t.mm:
            r = task_rss(t)
            rss = (r.file + r.anon + r.shmem) * 4
        theirs.append((t.pid.value_(), t.comm.string_().decode(), rss))
    assert mine == sorted(theirs)
    assert {ref.pids["parent"], ref.pids["child"]} <= {pid for pid, _c, _r in mine}


def _drgn_maps(d, pid):
    from drgn.helpers.linux.fs import d_path
    from drgn.helpers.linux.mm import for_each_vma
    from drgn.helpers.linux.pid import find_task

    out = []
    for v in for_each_vma(find_task(d, pid).mm):
        f = v.vm_flags.value_()
        perms = "".join(c if f & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
        perms += "s" if f & 0x80 else "p"
        if v.vm_file:
            inode = v.vm_file.f_inode
            path = d_path(v.vm_file.f_path).decode(errors="replace")
            if path.startswith("["):
                # drgn's d_path names a d_dname dentry "[<fs type>]"; the kernel calls d_dname
                # (simple_dname for shmem_zero_setup's "dev/zero": "/dev/zero (deleted)")
                from mmintro.crosscheck.tasks import _d_dname_of_vma

                path = _d_dname_of_vma(d, v.value_()) or path
            out.append(
                (v.vm_start.value_(), v.vm_end.value_(), perms, v.vm_pgoff.value_() << 12, inode.i_ino.value_(), path)
            )
        else:
            out.append((v.vm_start.value_(), v.vm_end.value_(), perms, 0, 0, None))
    return out


@pytest.mark.parametrize("role", ["parent", "child"])
def test_workload_vmas(prog, dprog, ref, role):
    """The workload's VMAs: drgn's for_each_vma (start, end, perms, offset, inode, d_path of
    file mappings) = mmintro's /proc/PID/maps rows."""
    from mmintro.views.maps import maps

    pid = ref.pids[role]
    theirs = _drgn_maps(dprog, pid)
    mine = [(r.start, r.end, r.perms, r.offset, r.inode, r.name if r.inode else None) for r in maps(prog, pid)]
    assert mine == theirs
    assert len(mine) >= 5


# -- mmintro crosscheck --------------------------------------------------------------------------------
@pytest.mark.slow  # ~12 s: every drgn row on the real dump (the rows above check the core ones by default)
def test_crosscheck_real_dump(ref, vmcore):
    rows = json.loads(run("crosscheck", vmcore, "--kernel", ref.vmlinuz, "--json", ok=False).stdout)
    failed = [(r["name"], r["detail"]) for r in rows if not r["ok"]]
    known = {name: bug for (dump, name), bug in KNOWN_VIEW_BUGS.items() if dump == ref.fixture_name}
    assert [f for f in failed if f[0] not in known] == []
    assert sum(r["ok"] and not r["skipped"] for r in rows) >= 40 - len(known)
    if failed:
        pytest.xfail("known view bugs: " + "; ".join(f"{n}: {known[n]}" for n, _d in failed))


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.slow  # ~7 s: BTF of a second kernel image
def test_debuginfo_bad_kernel(vmcore, tmp_path):
    """Not a kernel image (the vmcore itself, a text file): one line, exit 1, no file."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for other in (str(text), vmcore):
        r = run("debuginfo", "--kernel", other, "-o", str(tmp_path / "k.debug"), vmcore, ok=False)
        assert r.exit_code == 1, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmintro: error: "), r.stderr
        assert not (tmp_path / "k.debug").exists()


def test_debuginfo_needs_symbols(ref, tmp_path):
    r = run("debuginfo", "--kernel", ref.vmlinuz, "-o", str(tmp_path / "k.debug"), ok=False)
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert re.search(r"VMCORE or --system-map", r.stderr)


def test_dmesg_is_drgns(prog, dprog):
    """``mmintro dmesg``: the kernel's log with dmesg's timestamps, as drgn's get_dmesg() prints
    it -- but for a record of several lines, whose later lines mmintro prefixes too, as the
    kernel's own syslog output (record_print_text) does and drgn does not."""
    from drgn.helpers.linux.printk import get_dmesg

    from mmintro.views.dmesg import dmesg, render

    records = dmesg(prog)
    assert len(records) > 100
    want, prefix = [], ""
    for line in get_dmesg(dprog).decode(errors="replace").splitlines():
        if line.startswith("["):
            prefix = line[: line.index("] ") + 2]
            want.append(line)
        else:
            want.append(prefix + line)
    assert render(records).splitlines() == want
