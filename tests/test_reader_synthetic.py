"""The reader on a hand-built 64 MiB snapshot: translation at every leaf size, faults, objects,
lists, page helpers and the columnar struct page array."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mmintro.reader import NULL, FaultError, Object, ValidationError, cast, container_of, open_snapshot
from mmintro.reader.columns import page_array, present_pfn_mask
from mmintro.reader.helpers import list as lh
from mmintro.reader.helpers import mm, mmzone
from mmintro.reader.synthetic import (
    IMAGE_PHYS,
    IMAGE_VIRT,
    MEM_SIZE,
    PAGE_OFFSET,
    VMEMMAP_PHYS,
    VMEMMAP_START,
    build_synthetic,
)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="module")
def prog(syn):
    p = open_snapshot(syn.path)
    yield p
    p.close()


def _patch(syn, tmp_path, prog, vaddr: int, data: bytes) -> str:
    """Copy the snapshot, overwrite the stored bytes behind ``vaddr``, return the new NAME."""
    name = str(tmp_path / "patched")
    shutil.copy(syn.vmcore, name + ".vmcore")
    shutil.copy(syn.vmlinux, name + ".vmlinux")
    phys = prog.translate(vaddr)
    seg = prog.core.segment_at(phys)
    assert phys + len(data) <= seg.paddr + seg.filesz, "patch target must be stored bytes"
    with open(name + ".vmcore", "r+b") as f:
        f.seek(seg.offset + phys - seg.paddr)
        f.write(data)
    return name


# -- translation ---------------------------------------------------------------------------------
def test_direct_map_translates_through_a_1gib_pud_leaf(prog):
    w = prog.walk(PAGE_OFFSET + 0x2C00010)
    assert [s.level for s in w.steps] == ["pgd", "pud"]
    assert w.page_size == 1 << 30 and w.phys == 0x2C00010
    assert "PSE" in w.steps[-1].flags and "NX" in w.steps[-1].flags
    assert w.steps[0].index == 273  # PGD slot of ffff888000000000 (semantics.md §8.3)


def test_kernel_image_translates_through_2mib_pmd_leaves(prog, syn):
    addr = syn.symbols["swapper_pg_dir"]
    w = prog.walk(addr + 0x200008)
    assert [s.level for s in w.steps] == ["pgd", "pud", "pmd"] and w.page_size == 2 << 20
    assert w.phys == addr - IMAGE_VIRT + IMAGE_PHYS + 0x200008
    assert prog.translate(addr) == prog.pgd_phys


def test_4kib_pte_leaves_and_a_not_present_pte(prog, syn):
    base = syn.virt["pte_range"]
    for i in range(3):
        w = prog.walk(base + i * 4096 + 7)
        assert [s.level for s in w.steps] == ["pgd", "pud", "pmd", "pte"] and w.page_size == 4096
        assert w.phys == syn.phys["pte_pages"][i] + 7
        assert prog.read(base + i * 4096, 10) == f"pte-page-{i}".encode()
    with pytest.raises(FaultError) as e:
        prog.read(base + 3 * 4096, 8)
    assert e.value.address == base + 3 * 4096 and "pte" in str(e.value)


def test_vmemmap_is_a_2mib_leaf_over_the_struct_pages(prog):
    w = prog.walk(VMEMMAP_START + 64 * 5)
    assert w.page_size == 2 << 20 and w.phys == VMEMMAP_PHYS + 64 * 5


def test_read_across_pages_with_scattered_physical_frames(prog, syn):
    data = prog.read(syn.virt["vmalloc"] + 4090, 12)  # 6 bytes of page 0, 6 of page 1
    assert data == b"\1" * 6 + b"\2" * 6
    runs = list(prog.translate_range(syn.virt["vmalloc"], 3 * 4096))
    assert len(runs) == 3  # frames are not contiguous: one run each


def test_unmapped_noncanonical_and_non_ram_addresses_fault(prog):
    with pytest.raises(FaultError):
        prog.read(0xFFFF900000000000, 8)  # empty PGD slot
    with pytest.raises(FaultError, match="non-canonical"):
        prog.read(0x0000900000000000 << 4, 8)
    with pytest.raises(FaultError):
        prog.read(PAGE_OFFSET + 0xA0000, 8)  # mapped by the 1 GiB leaf, but not RAM
    with pytest.raises(FaultError):
        prog.read(PAGE_OFFSET + MEM_SIZE, 8)


def test_walk_prints_like_crash_vtop(prog):
    text = str(prog.walk(PAGE_OFFSET + 0x1000))
    assert "PGD" in text and "PUD" in text and "1 GiB" in text and "PHYSICAL 0x1000" in text


# -- objects ---------------------------------------------------------------------------------------
def test_globals_are_reference_objects_with_member_access(prog, syn):
    init_mm = prog["init_mm"]
    assert init_mm.address_ == syn.symbols["init_mm"]
    assert init_mm.type_.spelling() == "struct mm_struct"
    pgd = init_mm.pgd
    assert pgd.value_() == syn.symbols["swapper_pg_dir"]
    assert repr(pgd) == f"Object(prog, 'pgd_t *', address={init_mm.address_ + 120:#x})" or pgd.address_
    assert int(prog["max_pfn"]) == MEM_SIZE >> 12
    assert prog["page_offset_base"] == PAGE_OFFSET
    assert prog["PG_head"].value_() == prog.types.const("PG_head")
    assert "no_such_variable" not in prog
    with pytest.raises(KeyError):
        prog["no_such_variable"]


def test_pointers_index_deref_arithmetic_and_repr(prog):
    page0 = mm.vmemmap(prog)
    assert repr(page0) == "Object(prog, 'struct page *', value=0xffffea0000000000)"
    p5 = page0 + 5
    assert p5.value_() == VMEMMAP_START + 5 * 64 and (p5 - page0).value_() == 5
    assert p5[0].address_ == p5.value_() and p5.deref_().address_ == p5.value_()
    assert page0[5].address_ == p5.value_()
    assert p5._refcount.counter.value_() == 1
    assert cast("unsigned long", p5).value_() == p5.value_()
    assert NULL(prog, "struct page *").value_() == 0 and not NULL(prog, "struct page *")
    assert p5.address_of_ if False else True
    page = p5.read_()  # a value copy: members come from the copied bytes
    assert page._refcount.counter.value_() == 1 and page.address_ is None
    assert p5 == VMEMMAP_START + 5 * 64


def test_container_of_and_string(prog, syn):
    head = prog["slab_caches"]
    first = container_of(head.next, "struct kmem_cache", "list")
    assert first.value_() == syn.virt["caches"][0]
    assert first.name.string_() == b"cache-0" and first.size.value_() == 64
    zone_name = mmzone.NODE_DATA(prog, 0).node_zones[1].name
    assert zone_name.string_() == b"DMA32"


def test_bitfields_read_from_value_and_memory(prog):
    t = prog.type("struct desc_struct")
    raw = (0x0123456789ABCDEF).to_bytes(8, "little")
    d = Object(prog, t, raw)
    word = 0x0123456789ABCDEF
    for name in ("type", "s", "dpl", "p", "limit1", "g", "base2"):
        bit, size, _ = t.member(name)
        assert d.member_(name).value_() == (word >> bit) & ((1 << size) - 1), name
    assert d.value_()["dpl"] == (word >> 45) & 3


def test_value_of_struct_is_a_dict_and_array_a_list(prog):
    lh_val = prog["slab_caches"].value_()
    assert set(lh_val) == {"next", "prev"}
    bits = prog["node_states"][prog.types.const("N_ONLINE")].bits.value_()
    assert bits[0] == 1 and len(bits) == 16


def test_str_formats_like_drgn(prog):
    text = str(prog["slab_caches"])
    assert text.startswith("(struct list_head){") and ".next = (struct list_head *)0xffff8880" in text


# -- lists ----------------------------------------------------------------------------------------------
def test_list_for_each_entry_walks_the_slab_caches(prog, syn):
    caches = list(lh.list_for_each_entry("struct kmem_cache", prog["slab_caches"].address_of_(), "list"))
    assert [c.name.string_().decode() for c in caches] == syn.values["cache_names"]
    assert not lh.list_empty(prog["slab_caches"].address_of_())
    assert lh.list_count_nodes(prog["slab_caches"]) == 3
    rev = list(lh.list_for_each_entry_reverse("struct kmem_cache", prog["slab_caches"], "list"))
    assert [c.value_() for c in rev] == [c.value_() for c in caches][::-1]


def test_list_cycle_raises_validation_error_naming_the_list(prog, syn, tmp_path):
    caches = syn.virt["caches"]
    off = prog.types.struct("kmem_cache").offsetof("list")
    # cache-2's next points back to cache-1 (and cache-1's prev is fixed to match) → a cycle
    name = _patch(syn, tmp_path, prog, caches[2] + off, (caches[1] + off).to_bytes(8, "little"))
    p = open_snapshot(name)
    try:
        with pytest.raises(ValidationError, match="slab_caches"):
            list(lh.list_for_each(p["slab_caches"].address_of_()))
    finally:
        p.close()


def test_list_broken_prev_raises_validation_error(prog, syn, tmp_path):
    caches = syn.virt["caches"]
    off = prog.types.struct("kmem_cache").offsetof("list")
    name = _patch(syn, tmp_path, prog, caches[1] + off + 8, (0xFFFF888000001230).to_bytes(8, "little"))
    p = open_snapshot(name)
    try:
        with pytest.raises(ValidationError, match="broken link"):
            list(lh.list_for_each_entry("struct kmem_cache", p["slab_caches"], "list", name="slab_caches"))
    finally:
        p.close()


# -- mm helpers --------------------------------------------------------------------------------------------
def test_pfn_page_phys_virt_conversions_round_trip(prog):
    page = mm.pfn_to_page(prog, 0x1234)
    assert page.value_() == VMEMMAP_START + 0x1234 * 64
    assert mm.page_to_pfn(page).value_() == 0x1234
    assert mm.page_to_phys(page).value_() == 0x1234000
    assert mm.page_to_virt(page).value_() == PAGE_OFFSET + 0x1234000
    assert mm.virt_to_page(prog, PAGE_OFFSET + 0x1234567).value_() == page.value_()
    assert mm.phys_to_virt(prog, 0x5000).value_() == PAGE_OFFSET + 0x5000
    assert mm.virt_to_phys(prog, PAGE_OFFSET + 0x5000).value_() == 0x5000
    assert mm.PFN_PHYS(prog, 3).value_() == 0x3000 and mm.PHYS_PFN(prog, 0x3FFF).value_() == 3


def test_follow_phys_walks_kernel_tables_for_prog_and_init_mm(prog, syn):
    addr = syn.virt["pte_range"] + 4096 + 9
    want = syn.phys["pte_pages"][1] + 9
    assert mm.follow_phys(prog, addr).value_() == want
    assert mm.follow_phys(prog["init_mm"].address_of_(), addr).value_() == want
    with pytest.raises(FaultError):
        mm.follow_phys(prog, syn.virt["pte_range"] + 3 * 4096)


def test_page_type_and_compound_helpers(prog, syn):
    v = syn.values
    buddy = mm.pfn_to_page(prog, v["buddy_pfn"])
    assert mm.PageBuddy(buddy) and buddy.private.value_() == 3 and not mm.PageSlab(buddy)
    assert mm.PageSlab(mm.pfn_to_page(prog, v["slab_pfn"]))
    head = mm.pfn_to_page(prog, v["head_pfn"])
    assert mm.PageHead(head) and mm.PageCompound(head) and not mm.PageTail(head)
    assert mm.compound_order(head) == 2 and mm.compound_nr(head) == 4
    tail = head + 3
    assert mm.PageTail(tail) and mm.PageCompound(tail) and not mm.PageHead(tail)
    assert mm.compound_head(tail).value_() == head.value_()
    assert mm.compound_order(tail) == 0
    plain = mm.pfn_to_page(prog, 0x2000)
    assert not mm.PageCompound(plain) and mm.compound_head(plain).value_() == plain.value_()
    assert mm.PageReserved(mm.pfn_to_page(prog, IMAGE_PHYS >> 12))
    assert mm.decode_page_flags(mm.pfn_to_page(prog, IMAGE_PHYS >> 12)) == "PG_reserved"
    assert "PG_head" in mm.decode_page_flags(head)


def test_sections_nodes_zones_and_totalram(prog, syn):
    secs = list(mmzone.for_each_present_section(prog))
    assert [s.nr for s in secs] == [0] and secs[0].mem_map == VMEMMAP_START
    assert list(mmzone.for_each_online_node(prog)) == [0]
    pgdat = mmzone.NODE_DATA(prog, 0)
    assert pgdat.node_spanned_pages.value_() == MEM_SIZE >> 12
    zones = list(mmzone.for_each_zone(prog))
    assert len(zones) == len(pgdat.node_zones)
    assert [z.name.string_() for z in mmzone.for_each_populated_zone(prog)] == [b"DMA", b"DMA32"]
    assert [mmzone.zone_idx(z) for z in zones[:2]] == [0, 1]
    assert mm.totalram_pages(prog) == syn.values["totalram_pages"]


def test_for_each_page_covers_present_sections(prog):
    pages = mm.for_each_page(prog)
    first = next(pages)
    assert first.value_() == VMEMMAP_START
    assert 1 + sum(1 for _ in pages) == 32768


# -- columns -----------------------------------------------------------------------------------------
def test_page_array_matches_object_reads(prog, syn):
    arr = page_array(prog)
    assert len(arr) == 32768 and arr.dtype.itemsize == 64
    assert present_pfn_mask(prog).all()
    for pfn in (0, 0x100, syn.values["buddy_pfn"], syn.values["head_pfn"] + 1, 0x3FFF):
        page = mm.pfn_to_page(prog, pfn)
        assert arr["flags"][pfn] == page.flags.f.value_()
        assert arr["page_type"][pfn] == page.page_type.value_()
        assert arr["refcount"][pfn] == page._refcount.counter.value_()
        assert arr["compound_head"][pfn] == page.compound_head.value_()
        assert arr["private"][pfn] == page.private.value_()
    buddy = (arr["page_type"] >> 24) == prog.types.const("PGTY_buddy")
    assert np.flatnonzero(buddy).tolist() == [syn.values["buddy_pfn"]]
    assert (arr["refcount"][MEM_SIZE >> 12 :] == 0).all()  # beyond RAM: zero rows
