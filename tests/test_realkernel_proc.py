"""A real Linux 6.18 kernel is the oracle: mmintro's /proc text, printed from the dump of Debian's
6.18 kernel (types from its own .BTF, symbols from the dump's kallsyms), equals the text the
guest printed itself just before the VM stopped.

Between the capture and the stop the kernel runs on for a few milliseconds (timer work: per-CPU
page lists drained to the buddy lists, a few allocations and frees).  Every line must match in
its words and order; a number may differ only in the fields that housekeeping moves (the free
lists and their counters, the per-CPU lists, allocation events), each within
:data:`DRIFT_PAGES` — and every such difference is reported in the test output.
"""

from __future__ import annotations

import re

import pytest
from cli_helpers import run

SYSTEM_FILES = [
    "meminfo",
    "zoneinfo",
    "buddyinfo",
    "pagetypeinfo",
    "vmstat",
    "slabinfo",
    "vmallocinfo",
    "iomem",
    "swaps",
]
# Lines whose numbers the running kernel may change between the capture and the stop: free
# pages (the buddy lists, per-CPU lists drained back to them), a per-CPU list's current
# ``high`` (which frees raise and vmstat's decay_pcp_high() lowers) and allocation events.
VOLATILE = {
    "meminfo": {"MemFree:", "MemAvailable:"},
    "zoneinfo": {
        "pages free",
        "nr_free_pages",
        "count:",
        "high:",
        "numa_hit",
        "numa_local",
        "numa_other",
        "numa_foreign",
        "numa_miss",
        "nr_free_pages_blocks",
    },
    "vmstat": {
        "nr_free_pages",
        "nr_free_pages_blocks",
        "nr_dirty_threshold",
        "nr_dirty_background_threshold",
        "numa_hit",
        "numa_local",
        "numa_other",
        "pgalloc_dma",
        "pgalloc_dma32",
        "pgalloc_normal",
        "pgfree",
        "pgfault",
        "pglazyfree",
        "pgactivate",
        "pgdeactivate",
        "nr_foll_pin_acquired",
        "nr_foll_pin_released",
    },
    "buddyinfo": {"Node"},  # free counts per order
    "pagetypeinfo": {"Node"},  # free counts per order and migratetype
}
DRIFT_PAGES = 512  # 2 MiB; kB fields are converted


def _key(name: str, line: str) -> str:
    if name == "zoneinfo":
        s = line.strip()
        return "pages free" if s.startswith("pages free") else s.split(" ")[0] if s else ""
    return line.split()[0] if line.split() else ""


def compare_proc(name: str, want: str, got: str) -> list[str]:
    """Differences that are not allowed; allowed drift is appended as 'drift:' lines."""
    problems, drift = [], []
    wl, gl = want.splitlines(), got.splitlines()
    if len(wl) != len(gl):
        return [f"{name}: {len(gl)} lines, the kernel printed {len(wl)}"]
    volatile = VOLATILE.get(name, set())
    for i, (w, g) in enumerate(zip(wl, gl)):
        if w == g:
            continue
        wt, gt = re.split(r"(\d+)", w), re.split(r"(\d+)", g)
        same_shape = len(wt) == len(gt) and all(a == b for a, b in zip(wt[::2], gt[::2]))
        key = _key(name, w)
        if not same_shape or key not in volatile:
            problems.append(f"{name}:{i + 1}: kernel {w!r}\n{' ' * (len(name) + len(str(i + 1)) + 2)}mmintro {g!r}")
            continue
        scale = 4 if w.rstrip().endswith("kB") else 1
        for a, b in zip(wt[1::2], gt[1::2]):
            if abs(int(a) - int(b)) > DRIFT_PAGES * scale:
                problems.append(f"{name}:{i + 1}: {key} moved {int(b) - int(a):+d}, more than drift: {w!r} / {g!r}")
        drift.append(f"drift: {name}:{i + 1} {w.strip()!r} -> {g.strip()!r}")
    for d in drift:
        print(d)
    return problems


@pytest.mark.parametrize("name", SYSTEM_FILES)
def test_system_proc_file_equals_the_kernels_own(any_real_dump, name: str) -> None:
    ref = any_real_dump
    out = run(name.replace("_", "-"), str(ref.path("elf")), "--kernel", ref.vmlinuz).stdout
    assert compare_proc(name, ref.proc(name), out) == []


@pytest.mark.slow  # ~5 s each; the kdump reader's own tests (test_diskdump) run by default
@pytest.mark.parametrize("name", ["meminfo", "buddyinfo", "slabinfo", "vmallocinfo"])
def test_kdump_compressed_dump_reads_as_the_elf_one(real_dump, name: str) -> None:
    """QEMU's kdump-compressed (flattened, zlib) dump of the same stopped VM prints the same."""
    elf = run(name, str(real_dump.path("elf")), "--kernel", real_dump.vmlinuz).stdout
    kdump = run(name, str(real_dump.path("kdump-zlib")), "--kernel", real_dump.vmlinuz).stdout
    assert kdump == elf


def test_every_configuration_is_what_was_asked(any_real_dump) -> None:
    """The dump's own VMCOREINFO says the paging mode and KASLR state the harness asked for, and
    zoneinfo shows the nodes."""
    from mmintro.reader.dump import open_dump

    ref = any_real_dump
    with open_dump(ref.path("elf"), ref.vmlinuz) as prog:
        assert len(prog.levels) == ref.config.paging_levels
        assert (prog.kernel_offset != 0) == ref.config.kaslr
        assert prog["nr_node_ids"].value_() == ref.config.nodes
        assert prog["nr_cpu_ids"].value_() == ref.config.cpus
        assert prog.vmcoreinfo["OSRELEASE"] == ref.kernel_release
    nodes = {int(m) for m in re.findall(r"^Node (\d+), zone", ref.proc("zoneinfo"), re.M)}
    assert nodes == set(range(ref.config.nodes))


@pytest.fixture(scope="module")
def filtered_dump(real_dump, tmp_path_factory):
    """makedumpfile's own output from the real dump: lzo, dump level 16 (free pages filtered out),
    as a kdump service would write it.  (Debian 12's makedumpfile 1.7.2 predates 6.18's page_type
    layout: at levels with "user pages" (8) it drops slab pages too, which mmintro then reports
    as filtered — correctly, but the comparison below needs them.)"""
    import shutil
    import subprocess

    from test_diskdump import _makedumpfile_elf

    out = real_dump.dir / "vmcore.d16-lzo"
    if not out.exists():
        work = tmp_path_factory.mktemp("filtered")
        elf = work / "fixed.elf"
        _makedumpfile_elf(real_dump.path("elf"), elf)
        assert shutil.which("makedumpfile"), "makedumpfile is not installed (.ci/run installs it)"
        subprocess.run(["makedumpfile", "-l", "-d", "16", str(elf), str(work / "d16")], check=True, capture_output=True)
        (work / "d16").replace(out)
        elf.unlink()
    return out


@pytest.mark.slow  # ~8 s: makedumpfile over the whole dump
def test_filtered_dump_reads_kernel_data_and_refuses_free_pages(real_dump, filtered_dump) -> None:
    """Kernel data survives makedumpfile -d 16 (the reports print as the kernel did); a free page
    it filtered out is a clear 'filtered' error, never zeros."""
    from mmintro.reader.dump import open_dump
    from mmintro.reader.errors import FaultError
    from mmintro.reader.helpers.mm import page_to_pfn

    for name in ("meminfo", "slabinfo", "vmallocinfo", "buddyinfo"):
        assert run(name, str(filtered_dump), "--kernel", real_dump.vmlinuz).stdout == real_dump.proc(name)
    with open_dump(filtered_dump, real_dump.vmlinuz) as prog:
        zone = prog["node_data"][0].node_zones[1]  # DMA32: buddyinfo shows order-10 blocks
        head = zone.free_area[10].free_list[prog.constant("MIGRATE_MOVABLE").value_()]
        lru = prog.type("struct page").offsetof("lru")
        page = prog.object("struct page *", value=head.next.value_() - lru)
        pfn = page_to_pfn(page).value_()
        with pytest.raises(FaultError, match="filtered"):
            prog.read(pfn << 12, 8, physical=True)
