"""The simulated boot: deterministic, and its books agree with the bytes it wrote."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mmintro.kernel.config import MachineConfig
from mmintro.kernel.e820 import build_e820
from mmintro.kernel.init_64 import PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, split_mem_range
from mmintro.kernel.machine import boot
from mmintro.reader import open_snapshot
from mmintro.reader.columns import page_array
from mmintro.reader.helpers import mmzone as mz
from mmintro.snapshot.writer import save


def test_same_config_and_seed_give_identical_snapshots(tmp_path) -> None:
    digests = []
    for i in range(2):
        core, vmlinux = save(boot(MachineConfig(ram=512 << 20)), tmp_path / f"s{i}")
        digests.append(
            (hashlib.sha256(core.read_bytes()).hexdigest(), hashlib.sha256(vmlinux.read_bytes()).hexdigest())
        )
    assert digests[0] == digests[1]


def test_e820_has_pc_holes_and_ram_above_4g() -> None:
    m = build_e820(4 << 30)
    ram = [(e.addr, e.end) for e in m if e.type == 1]
    assert ram[0] == (0x1000, 0x9FC00)
    assert all(not (a < 4 << 30 and b > 3 << 30) for a, b in ram)  # PCI hole
    assert ram[-1] == (4 << 30, 5 << 30)
    assert sum(b - a for a, b in ram) < 4 << 30


def test_split_mem_range_uses_the_kernels_page_sizes() -> None:
    # [1M, 3G-128K): 4K head to 2M, 2M pages to 1G, 1G pages, 2M tail, 4K tail.
    r = split_mem_range(1 << 20, (3 << 30) - (128 << 10))
    assert r[0] == (1 << 20, 2 << 20, PG_LEVEL_4K)
    assert r[1] == (2 << 20, 1 << 30, PG_LEVEL_2M)
    assert r[2] == (1 << 30, 2 << 30, PG_LEVEL_1G)
    assert r[-1][2] == PG_LEVEL_4K


@pytest.fixture(scope="module")
def kernel():
    return boot(MachineConfig())


def test_free_lists_equal_nr_free_and_counters(kernel, default_snapshot) -> None:
    """Walk every free list in the snapshot: each entry is a PGTY_buddy head of that order,
    list lengths equal nr_free, and their sum equals NR_FREE_PAGES."""
    from mmintro.reader.helpers.list import list_for_each_entry
    from mmintro.reader.helpers.mm import page_to_pfn

    prog = open_snapshot(default_snapshot)
    T = prog.types
    buddy = T.const("PGTY_buddy")
    total = 0
    for zone in mz.for_each_populated_zone(prog):
        zone_free = 0
        for order in range(len(zone.free_area)):
            fa = zone.free_area[order]
            n = 0
            for mt in range(len(fa.free_list)):
                for page in list_for_each_entry("struct page", fa.free_list[mt].address_of_(), "buddy_list"):
                    assert page.page_type.value_() >> 24 == buddy
                    assert page.private.value_() == order
                    assert page._refcount.counter.value_() == 0
                    assert page_to_pfn(page).value_() % (1 << order) == 0
                    n += 1
            assert n == fa.nr_free.value_()
            zone_free += n << order
        assert zone_free == zone.vm_stat[T.const("NR_FREE_PAGES")].counter.value_()
        total += zone_free
    assert total == prog["vm_zone_stat"][T.const("NR_FREE_PAGES")].counter.value_()


def test_every_present_page_has_its_zone_node_and_state(default_snapshot) -> None:
    prog = open_snapshot(default_snapshot)
    T = prog.types
    from mmintro.reader.columns import present_pfn_mask

    pages = page_array(prog)
    present = present_pfn_mask(prog)
    flags = pages["flags"]
    zone = (flags >> np.uint64(51)) & np.uint64(7)
    reserved = (flags >> np.uint64(T.const("PG_reserved"))) & np.uint64(1)
    is_buddy = (pages["page_type"] >> 24) == T.const("PGTY_buddy")
    for z in mz.for_each_populated_zone(prog):
        lo = z.zone_start_pfn.value_()
        hi = lo + z.spanned_pages.value_()
        idx = mz.zone_idx(z)
        assert (zone[lo:hi][present[lo:hi]] == idx).all()
        managed = z.managed_pages.counter.value_()
        # managed = pages freed to the buddy allocator = not reserved
        assert int(((reserved[lo:hi] == 0) & present[lo:hi]).sum()) == managed
    # reserved pages hold a reference; free pages none
    assert (pages["refcount"][reserved == 1] == 1).all()
    assert (pages["refcount"][is_buddy] == 0).all()


def test_memmap_is_mapped_with_2m_pages_and_direct_map_with_1g(kernel) -> None:
    assert kernel.pt.direct_pages_count[PG_LEVEL_1G] >= 1
    assert kernel.pt.direct_pages_count[PG_LEVEL_2M] > 0


def test_numa_nodes_split_memory_on_section_boundaries() -> None:
    k = boot(MachineConfig(ram=4 << 30, nodes=4, cpus=4))
    assert sorted({r.nid for r in k.memblock.memory}) == [0, 1, 2, 3]
    for r in k.memblock.memory:
        if r.base > 1 << 20:
            assert r.base % (128 << 20) == 0 or r.base in (4 << 30,)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        boot(MachineConfig(ram=100 << 20))
    with pytest.raises(ValueError):
        boot(MachineConfig(nodes=9))


def test_memory_line_has_the_format_and_numbers_of_6_18() -> None:
    """mem_init_print_info(): free/physpages, then the image's code, rwdata, rodata, init and bss
    sizes from its linker symbols, and physpages - totalram_pages as reserved."""
    import re

    from mmintro.kernel.config import MachineConfig
    from mmintro.kernel.machine import boot

    k = boot(MachineConfig(ram=1 << 30))
    line = next(r.text for r in k.printk_records if r.text.startswith("Memory: "))
    m = re.fullmatch(
        r"Memory: (\d+)K/(\d+)K available \((\d+)K kernel code, (\d+)K rwdata, (\d+)K rodata, "
        r"(\d+)K init, (\d+)K bss, (\d+)K reserved, 0K cma-reserved\)",
        line,
    )
    assert m, line
    free, total, code, rw, ro, init, bss, reserved = map(int, m.groups())
    present = sum(z.present for zs in k.zones for z in zs)
    assert total == present * 4 and 0 < free < total
    size = lambda a, b: (k.sym(b) - k.sym(a)) >> 10
    assert (code, rw, ro, init, bss) == (
        size("_stext", "_etext"),
        size("_sdata", "_edata"),
        size("__start_rodata", "__end_rodata"),
        size("__init_begin", "__init_end"),
        size("__bss_start", "__bss_stop"),
    )
    assert reserved == total - free  # right after memblock_free_all every managed page is free
