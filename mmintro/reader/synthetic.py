"""A tiny hand-built snapshot for reader tests and benchmarks (no simulator involved).

``build_synthetic(directory)`` lays out a 64 MiB x86-64 "machine" byte by byte using only the
type data, then writes NAME.vmcore (with :func:`~mmintro.snapshot.vmcore.write_vmcore`) and
NAME.vmlinux (with helper-1's :func:`~mmintro.snapshot.vmlinux.write_vmlinux`).  It exercises
every leaf size of the page-table walk:

* direct map at ``page_offset_base``: one 1 GiB PUD leaf over physical 0;
* kernel image at 0xffffffff81000000: two 2 MiB PMD leaves (phys 16 MiB), then a range of
  4 KiB PTE leaves at 0xffffffff81400000 (entry 3 not present);
* vmemmap: one 2 MiB PMD leaf holding section 0's 32768 struct pages;
* vmalloc: 4 KiB leaves onto scattered physical pages.

RAM is [0, 0x9f000) and [0x100000, 64 MiB); the hole is not RAM.  The returned
:class:`Synthetic` records every address a test needs to check.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from mmintro.reader.x86_pgtable import START_KERNEL_MAP
from mmintro.snapshot.vmcore import nonzero_runs, write_vmcore
from mmintro.types.typedata import TypeDB, get_types

__all__ = ["Synthetic", "build_synthetic"]

MiB = 1 << 20
PAGE_OFFSET = 0xFFFF888000000000
VMALLOC_START = 0xFFFFC90000000000
VMEMMAP_START = 0xFFFFEA0000000000
IMAGE_PHYS = 16 * MiB
IMAGE_VIRT = START_KERNEL_MAP + IMAGE_PHYS  # _text
PTE_RANGE_VIRT = IMAGE_VIRT + 4 * MiB  # 4 KiB leaves
MEM_SIZE = 64 * MiB
RAM = [(0, 0x9F000), (0x100000, MEM_SIZE)]
VMEMMAP_PHYS = 32 * MiB  # 2 MiB of struct pages for section 0
PT_PHYS = 40 * MiB  # page-table pages
DATA_PHYS = 44 * MiB  # kernel data structures reached through the direct map
# Entry bits (x86 pgtable_types.h): P RW A D = 0x63, + PSE = 0xe3, + NX for data.
TABLE = 0x63
LEAF_4K = 0x8000000000000063
LEAF_LARGE = 0x80000000000000E3


@dataclass
class Synthetic:
    """What :func:`build_synthetic` wrote, for tests to check against."""

    path: str  # NAME (no extension)
    build_id: bytes
    symbols: dict[str, int] = field(default_factory=dict)  # name -> vaddr
    phys: dict[str, int] = field(default_factory=dict)  # label -> physical address
    virt: dict[str, int] = field(default_factory=dict)  # label -> virtual address
    values: dict[str, object] = field(default_factory=dict)

    @property
    def vmcore(self) -> str:
        return self.path + ".vmcore"

    @property
    def vmlinux(self) -> str:
        return self.path + ".vmlinux"


class _Mem:
    def __init__(self, types: TypeDB) -> None:
        self.buf = np.zeros(MEM_SIZE, dtype=np.uint8)
        self.T = types
        self.next_pt = PT_PHYS
        self.next_data = DATA_PHYS

    def u64(self, phys: int, value: int) -> None:
        self.buf[phys : phys + 8] = np.frombuffer((value & (2**64 - 1)).to_bytes(8, "little"), np.uint8)

    def bytes_(self, phys: int, data: bytes) -> None:
        self.buf[phys : phys + len(data)] = np.frombuffer(data, np.uint8)

    def set(self, phys: int, struct: str, path: str, value: int | bytes) -> None:
        bit, bsize, t = self.T.struct(struct).walk(path)
        if bsize:
            raise ValueError("bitfields are written with set_bits")
        if isinstance(value, bytes):
            self.bytes_(phys + bit // 8, value)
            return
        size = t.size
        self.bytes_(phys + bit // 8, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))

    def set_bits(self, phys: int, struct: str, path: str, value: int) -> None:
        bit, bsize, t = self.T.struct(struct).walk(path)
        byte = phys + bit // 8
        n = (bit % 8 + bsize + 7) // 8
        word = int.from_bytes(bytes(self.buf[byte : byte + n]), "little")
        mask = ((1 << bsize) - 1) << (bit % 8)
        word = (word & ~mask) | ((value << (bit % 8)) & mask)
        self.bytes_(byte, word.to_bytes(n, "little"))

    def alloc_pt(self) -> int:
        p = self.next_pt
        self.next_pt += 4096
        return p

    def alloc(self, size: int, align: int = 64) -> int:
        p = -(-self.next_data // align) * align
        self.next_data = p + size
        return p


def _table(m: _Mem, table: int, index: int) -> int:
    """The next-level table under entry ``index`` of ``table``, allocated on demand."""
    e = int.from_bytes(bytes(m.buf[table + 8 * index : table + 8 * index + 8]), "little")
    if e & 1:
        return e & 0xFFFFFFFFFF000
    t = m.alloc_pt()
    m.u64(table + 8 * index, t | TABLE)
    return t


def _map(m: _Mem, pgd: int, vaddr: int, phys: int, size: int) -> None:
    idx = [(vaddr >> s) & 511 for s in (39, 30, 21, 12)]
    pud = _table(m, pgd, idx[0])
    if size == 1 << 30:
        m.u64(pud + 8 * idx[1], phys | LEAF_LARGE)
        return
    pmd = _table(m, pud, idx[1])
    if size == 2 * MiB:
        m.u64(pmd + 8 * idx[2], phys | LEAF_LARGE)
        return
    pte = _table(m, pmd, idx[2])
    m.u64(pte + 8 * idx[3], phys | LEAF_4K)


def build_synthetic(directory: str | os.PathLike, name: str = "synthetic", list_len: int = 3) -> Synthetic:
    """Write ``directory/NAME.vmcore`` and ``.vmlinux``; return what was written."""
    from mmintro.snapshot.vmlinux import Symbol, dump_types_section, write_vmlinux

    T = get_types()
    m = _Mem(T)
    path = os.path.join(os.fspath(directory), name)
    syn = Synthetic(path, hashlib.sha1(b"mmintro synthetic " + name.encode()).digest())

    # -- kernel image globals (virtual = IMAGE_VIRT + offset, physical = IMAGE_PHYS + offset)
    cursor = [0x1000]

    def glob(var: str, align: int = 64) -> tuple[int, int]:
        t = T.var_type(var)
        off = -(-cursor[0] // max(align, 8)) * max(align, 8)
        cursor[0] = off + t.size
        syn.symbols[var] = IMAGE_VIRT + off
        return IMAGE_VIRT + off, IMAGE_PHYS + off

    cursor[0] = 0x2000
    pgd_virt, pgd = glob("swapper_pg_dir", 4096)
    cursor[0] = 0x3000
    for var in (
        "page_offset_base",
        "vmalloc_base",
        "vmemmap_base",
        "phys_base",
        "max_pfn",
        "min_low_pfn",
        "mem_section",
        "__highest_present_section_nr",
        "nr_node_ids",
        "_totalram_pages",
        "node_states",
        "node_data",
        "init_mm",
        "slab_caches",
    ):
        glob(var)
    sym = syn.symbols
    ph = lambda v: v - START_KERNEL_MAP

    def g(var: str, path: str, value: int) -> None:
        t = T.var_type(var)
        if path:
            bit, _, _ = t.walk(path)
            off, size = bit // 8, t.walk(path)[2].size
        else:
            off, size = 0, t.size
        m.bytes_(ph(sym[var]) + off, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))

    # -- page tables
    _map(m, pgd, PAGE_OFFSET, 0, 1 << 30)  # direct map: 1 GiB leaf
    for i in range(2):  # kernel image: 2 MiB leaves
        _map(m, pgd, IMAGE_VIRT + i * 2 * MiB, IMAGE_PHYS + i * 2 * MiB, 2 * MiB)
    pte_pages = [m.alloc(4096, 4096) for _ in range(4)]
    for i, p in enumerate(pte_pages):
        if i != 3:  # entry 3 left not present
            _map(m, pgd, PTE_RANGE_VIRT + i * 4096, p, 4096)
            m.bytes_(p, f"pte-page-{i}".encode())
    syn.virt["pte_range"] = PTE_RANGE_VIRT
    syn.phys["pte_pages"] = pte_pages  # type: ignore[assignment]
    # page tables of the 4 KiB range live in the PMD at index 2 of the image PUD
    _map(m, pgd, VMEMMAP_START, VMEMMAP_PHYS, 2 * MiB)  # vmemmap: 2 MiB leaf
    vm_pages = [m.alloc(4096, 4096) for _ in range(3)][::-1]  # descending: not contiguous
    for i, p in enumerate(vm_pages):
        _map(m, pgd, VMALLOC_START + i * 4096, p, 4096)
        m.buf[p : p + 4096] = i + 1
    syn.virt["vmalloc"] = VMALLOC_START
    syn.phys["vmalloc_pages"] = vm_pages  # type: ignore[assignment]

    # -- scalar globals
    g("page_offset_base", "", PAGE_OFFSET)
    g("vmalloc_base", "", VMALLOC_START)
    g("vmemmap_base", "", VMEMMAP_START)
    g("phys_base", "", 0)
    g("max_pfn", "", MEM_SIZE >> 12)
    g("nr_node_ids", "", 1)
    g("__highest_present_section_nr", "", 0)
    nr_ram_pages = sum(e - s for s, e in RAM) >> 12
    g("_totalram_pages", "counter", nr_ram_pages)
    g("node_states", f"[{T.const('N_ONLINE')}].bits[0]", 1)
    g("node_states", f"[{T.const('N_MEMORY')}].bits[0]", 1)
    syn.values["totalram_pages"] = nr_ram_pages

    # -- init_mm.pgd, mm->mmlist as a one-entry-less list (points to itself)
    g("init_mm", "pgd", pgd_virt)

    # -- mem_section: a root array (2048 pointers) and one root page holding section 0
    ms = T.struct("mem_section")
    roots = m.alloc(8 * 2048, 4096)
    root0 = m.alloc(4096, 4096)
    m.u64(roots, PAGE_OFFSET + root0)
    present = 1 | 2 | 4 | 8  # MARKED_PRESENT | HAS_MEM_MAP | IS_ONLINE | IS_EARLY (mmzone.h)
    m.set(root0, "mem_section", "section_mem_map", VMEMMAP_START | present)
    g("mem_section", "", PAGE_OFFSET + roots)
    syn.phys["mem_section_roots"] = roots
    assert ms.size == 16

    # -- struct pages of RAM pfns
    page_t = T.struct("page")
    psz = page_t.size
    dt = T.dtype(
        "page",
        {
            "flags": "flags",
            "page_type": "page_type",
            "refcount": "_refcount",
            "private": "private",
            "compound_head": "compound_head",
        },
    )
    pages = m.buf[VMEMMAP_PHYS : VMEMMAP_PHYS + 32768 * psz].view(dt)
    ram_pfn = np.zeros(32768, dtype=bool)
    for s, e in RAM:
        ram_pfn[s >> 12 : e >> 12] = True
    pages["page_type"][ram_pfn] = 0xFFFFFFFF  # _mapcount -1: untyped
    pages["refcount"][ram_pfn] = 1
    reserved = 1 << T.const("PG_reserved")
    pages["flags"][:0x100] |= reserved
    pages["flags"][IMAGE_PHYS >> 12 : (IMAGE_PHYS >> 12) + 0x400] |= reserved
    buddy = 0x2800
    pages["page_type"][buddy] = T.const("PGTY_buddy") << 24
    pages["refcount"][buddy : buddy + 8] = 0
    pages["private"][buddy] = 3
    slab = 0x2900
    pages["page_type"][slab] = T.const("PGTY_slab") << 24
    head = 0x3000
    head_addr = VMEMMAP_START + head * psz
    pages["flags"][head] |= 1 << T.const("PG_head")
    pages["compound_head"][head + 1 : head + 4] = head_addr | 1
    pages["refcount"][head + 1 : head + 4] = 0
    m.set(VMEMMAP_PHYS + head * psz, "folio", "_flags_1", 2)  # order 2
    syn.values.update(buddy_pfn=buddy, slab_pfn=slab, head_pfn=head, head_order=2)

    # -- node 0's pglist_data with zones
    pgdat = m.alloc(T.struct("pglist_data").size, 64)
    g("node_data", "[0]", PAGE_OFFSET + pgdat)
    m.set(pgdat, "pglist_data", "node_id", 0)
    m.set(pgdat, "pglist_data", "node_start_pfn", 0)
    m.set(pgdat, "pglist_data", "node_present_pages", nr_ram_pages)
    m.set(pgdat, "pglist_data", "node_spanned_pages", MEM_SIZE >> 12)
    zsize = T.struct("zone").size
    zspans = [(0, 0x1000), (0x1000, MEM_SIZE >> 12)]  # DMA, DMA32
    for i, (lo, hi) in enumerate(zspans):
        z = pgdat + T.struct("pglist_data").offsetof(f"node_zones[{i}]")
        m.set(z, "zone", "zone_pgdat", PAGE_OFFSET + pgdat)
        m.set(z, "zone", "zone_start_pfn", lo)
        m.set(z, "zone", "spanned_pages", hi - lo)
        m.set(z, "zone", "present_pages", int(ram_pfn[lo:hi].sum()))
        name = m.alloc(16, 8)
        m.bytes_(name, [b"DMA", b"DMA32"][i] + b"\0")
        m.set(z, "zone", "name", PAGE_OFFSET + name)
    syn.phys["pgdat"] = pgdat
    assert zsize

    # -- slab_caches: a list of struct kmem_cache
    kc = T.struct("kmem_cache")
    list_off = kc.offsetof("list")
    head_phys = ph(sym["slab_caches"])
    caches = [m.alloc(kc.size, 64) for _ in range(list_len)]
    nodes = [head_phys] + [c + list_off for c in caches]
    virt = lambda p: sym["slab_caches"] if p == head_phys else PAGE_OFFSET + p
    for i, node in enumerate(nodes):
        nxt, prv = nodes[(i + 1) % len(nodes)], nodes[i - 1]
        m.set(node, "list_head", "next", virt(nxt))
        m.set(node, "list_head", "prev", virt(prv))
    names = []
    for i, c in enumerate(caches):
        nm = f"cache-{i}"
        sp = m.alloc(16, 8)
        m.bytes_(sp, nm.encode() + b"\0")
        m.set(c, "kmem_cache", "name", PAGE_OFFSET + sp)
        m.set(c, "kmem_cache", "size", 64 << i)
        m.set(c, "kmem_cache", "object_size", 60 << i)
        names.append(nm)
    syn.values["cache_names"] = names
    syn.virt["caches"] = [PAGE_OFFSET + c for c in caches]  # type: ignore[assignment]

    # -- VMCOREINFO and files
    syn.symbols["vmemmap_populate"] = IMAGE_VIRT + 0x100
    info = "\n".join(
        [
            "OSRELEASE=6.18.0-mmintro-synthetic",
            f"BUILD-ID={syn.build_id.hex()}",
            "PAGESIZE=4096",
            f"SYMBOL(swapper_pg_dir)={sym['swapper_pg_dir']:x}",
            f"SYMBOL(init_mm)={sym['init_mm']:x}",
            f"SYMBOL(mem_section)={sym['mem_section']:x}",
            "LENGTH(mem_section)=2048",
            f"SIZE(mem_section)={ms.size}",
            f"OFFSET(mem_section.section_mem_map)={ms.offsetof('section_mem_map')}",
            f"SIZE(page)={psz}",
            "NUMBER(SECTION_SIZE_BITS)=27",
            "NUMBER(MAX_PHYSMEM_BITS)=46",
            # vmcore_info.c: PAGE_SLAB_MAPCOUNT_VALUE = PGTY_slab << 24, an int, printed with %ld
            f"NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)={(T.const('PGTY_slab') << 24) - (1 << 32)}",
            "NUMBER(phys_base)=0",
            "KERNELOFFSET=0",
            "",
        ]
    )
    syn.values["vmcoreinfo"] = info
    runs = nonzero_runs(m.buf)
    # GDB alias for the kernel image (the reader must ignore it)
    write_vmcore(path + ".vmcore", runs, info, ram_ranges=RAM, aliases=[(IMAGE_VIRT, IMAGE_PHYS, 4 * MiB)])
    symbols = [
        Symbol(
            n,
            a,
            T.var_type(n).size if n != "vmemmap_populate" else 16,
            "func" if n == "vmemmap_populate" else "object",
            None if n == "vmemmap_populate" else T.var_type(n),
        )
        for n, a in syn.symbols.items()
    ]
    write_vmlinux(path + ".vmlinux", T, symbols, syn.build_id, sections={".mmintro.types": dump_types_section(T)})
    syn.phys["pgd"] = pgd
    return syn
