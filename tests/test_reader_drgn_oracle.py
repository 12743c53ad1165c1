"""drgn 0.3.0 as the oracle: it opens the same files and must see the same memory.

On the synthetic image (always) and on a snapshot of the simulator (when it is importable).
"""

from __future__ import annotations

import numpy as np
import pytest

drgn = pytest.importorskip("drgn")

from mmintro.reader import FaultError, open_snapshot
from mmintro.reader.columns import page_array
from mmintro.reader.helpers import mm, mmzone
from mmintro.reader.synthetic import PAGE_OFFSET, VMEMMAP_START, build_synthetic


def _drgn(vmcore: str, vmlinux: str):
    prog = drgn.Program()
    prog.set_core_dump(vmcore)
    prog.load_debug_info([vmlinux])
    return prog


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    syn = build_synthetic(tmp_path_factory.mktemp("syn"))
    ours = open_snapshot(syn.path)
    yield syn, ours, _drgn(syn.vmcore, syn.vmlinux)
    ours.close()


def test_drgn_reads_the_same_bytes_at_every_leaf_size(pair):
    syn, ours, theirs = pair
    addrs = [
        PAGE_OFFSET + 0x2C00000,
        syn.symbols["init_mm"],
        VMEMMAP_START + 64 * 0x3000,
        syn.virt["pte_range"] + 4096,
        syn.virt["vmalloc"] + 4090,
    ]
    for a in addrs:
        assert ours.read(a, 16) == theirs.read(a, 16), hex(a)
        assert ours.translate(a) == drgn.helpers.linux.mm.follow_phys(theirs["init_mm"].address_of_(), a).value_()


def test_drgn_faults_where_we_fault(pair):
    syn, ours, theirs = pair
    bad = syn.virt["pte_range"] + 3 * 4096
    with pytest.raises(FaultError):
        ours.read(bad, 8)
    with pytest.raises(drgn.FaultError):
        theirs.read(bad, 8)


def test_drgn_walks_the_same_list(pair):
    syn, ours, theirs = pair
    from drgn.helpers.linux.list import list_for_each_entry as drgn_lfe

    from mmintro.reader.helpers.list import list_for_each_entry

    a = [c.value_() for c in list_for_each_entry("struct kmem_cache", ours["slab_caches"], "list")]
    b = [c.value_() for c in drgn_lfe("struct kmem_cache", theirs["slab_caches"].address_of_(), "list")]
    assert a == b


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    machine = pytest.importorskip("mmintro.kernel.machine")
    config = pytest.importorskip("mmintro.kernel.config")
    writer = pytest.importorskip("mmintro.snapshot.writer")
    k = machine.boot(config.MachineConfig(ram=512 << 20))
    name = tmp_path_factory.mktemp("sim") / "boot"
    vmcore, vmlinux = writer.save(k, name)
    ours = open_snapshot(name)
    theirs = _drgn(str(vmcore), str(vmlinux))
    yield ours, theirs
    ours.close()


def test_simulated_snapshot_agrees_with_drgn(simulated):
    ours, theirs = simulated
    from drgn.helpers.linux import mm as dmm

    assert mm.totalram_pages(ours) == dmm.totalram_pages(theirs)
    for pfn in (0, 0x1000, 0x10000, 0x1FFFF):
        assert mm.pfn_to_page(ours, pfn).value_() == dmm.pfn_to_page(theirs, pfn).value_()
    for sym in ("init_mm", "node_data", "mem_section", "_totalram_pages"):
        a = ours[sym].address_
        assert ours.read(a, 64) == theirs.read(a, 64)
        assert ours.translate(a) == dmm.follow_phys(theirs["init_mm"].address_of_(), a).value_()
    zones_ours = [(z.name.string_(), z.present_pages.value_()) for z in mmzone.for_each_zone(ours)]
    pgdat = theirs["node_data"][0]
    zones_drgn = [(z.name.string_(), z.present_pages.value_()) for z in pgdat.node_zones]
    assert zones_ours == zones_drgn


def test_simulated_page_array_matches_drgn_page_objects(simulated):
    ours, theirs = simulated
    from drgn.helpers.linux import mm as dmm

    arr = page_array(ours)
    rng = np.random.default_rng(1)
    for pfn in rng.integers(0, len(arr), 300):
        page = dmm.pfn_to_page(theirs, int(pfn))
        assert arr["flags"][pfn] == page.flags.f.value_()
        assert arr["page_type"][pfn] == page.page_type.value_()
        assert arr["private"][pfn] == page.private.value_()
        assert arr["refcount"][pfn] == page._refcount.counter.value_()
