"""The iomem resource tree behind /proc/iomem (kernel/resource.c, arch/x86/kernel/e820.c).

e820__reserve_resources() inserts one ``struct resource`` per e820 entry under
iomem_resource; the kernel image's code/rodata/data/bss become children of the System RAM
entry that holds them; the chipset's PCI window and APICs sit in the hole below 4 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.kernel.e820 import (
    E820_TYPE_PMEM,
    E820_TYPE_PRAM,
    E820_TYPE_RAM,
    E820_TYPE_RESERVED,
    E820_TYPE_SOFT_RESERVED,
)
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

# include/linux/ioport.h (#defines, not in BTF)
IORESOURCE_MEM = 0x00000200
IORESOURCE_SYSRAM = 0x01000000
IORESOURCE_BUSY = 0x80000000
IORESOURCE_SYSTEM_RAM = IORESOURCE_MEM | IORESOURCE_SYSRAM
# enum { IORES_DESC_* } (include/linux/ioport.h), from the type data
_T = get_types()
IORES_DESC_NONE = _T.const("IORES_DESC_NONE")
IORES_DESC_ACPI_TABLES = _T.const("IORES_DESC_ACPI_TABLES")
IORES_DESC_ACPI_NV_STORAGE = _T.const("IORES_DESC_ACPI_NV_STORAGE")
IORES_DESC_PERSISTENT_MEMORY = _T.const("IORES_DESC_PERSISTENT_MEMORY")
IORES_DESC_PERSISTENT_MEMORY_LEGACY = _T.const("IORES_DESC_PERSISTENT_MEMORY_LEGACY")
IORES_DESC_RESERVED = _T.const("IORES_DESC_RESERVED")


@dataclass
class Res:
    name: str
    start: int
    end: int  # inclusive
    flags: int
    desc: int = IORES_DESC_NONE
    children: list[Res] = field(default_factory=list)

    def insert(self, r: Res) -> Res | None:
        """kernel/resource.c __insert_resource(): ``r`` goes into the child that holds it (one
        with exactly its range included), or takes the children it covers as its own.
        Returns the resource it conflicts with (a partial overlap), None when inserted."""
        parent = self
        while True:
            over = [c for c in parent.children if c.start <= r.end and r.start <= c.end]
            if not over:
                break
            first = over[0]
            if first.start <= r.start and r.end <= first.end:
                parent = first  # the new one fits inside (or has the same range): descend
                continue
            if any(c.start < r.start or c.end > r.end for c in over):
                return next(c for c in over if c.start < r.start or c.end > r.end)
            r.children = sorted(r.children + over, key=lambda x: x.start)  # the new one takes them
            parent.children = [c for c in parent.children if c not in over]
            break
        parent.children.append(r)
        parent.children.sort(key=lambda x: x.start)
        return None

    def insert_expand_to_fit(self, r: Res) -> None:
        """insert_resource_expand_to_fit(): grow ``r`` over whatever it partly overlaps until
        it can be inserted."""
        while True:
            conflict = self.insert(r)
            if conflict is None:
                return
            r.start, r.end = min(r.start, conflict.start), max(r.end, conflict.end)


# e820__reserve_resources() -> do_mark_busy(): what is inserted at boot; the rest (reserved,
# soft-reserved and persistent memory above 1 MiB) waits for e820__reserve_resources_late()
# (pcibios_resource_survey), so that PCI resources claimed in between can take it.
_LATE_TYPES = {E820_TYPE_RESERVED, E820_TYPE_SOFT_RESERVED, E820_TYPE_PRAM, E820_TYPE_PMEM}


def build_tree(k: Kernel) -> Res:
    root = Res("PCI mem", 0, (1 << 46) - 1, IORESOURCE_MEM)
    desc = {
        1: IORES_DESC_NONE,
        2: IORES_DESC_RESERVED,
        3: IORES_DESC_ACPI_TABLES,
        4: IORES_DESC_ACPI_NV_STORAGE,
        E820_TYPE_PMEM: IORES_DESC_PERSISTENT_MEMORY,
        E820_TYPE_PRAM: IORES_DESC_PERSISTENT_MEMORY_LEGACY,
    }
    late = []
    for e in k.e820:
        if e.type in _LATE_TYPES and e.addr >= 1 << 20:
            late.append(Res(k.e820_name(e.type), e.addr, e.end - 1, IORESOURCE_MEM, desc.get(e.type, 0)))
            continue
        flags = IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY if e.type == E820_TYPE_RAM else IORESOURCE_MEM | IORESOURCE_BUSY
        root.insert(Res(k.e820_name(e.type), e.addr, e.end - 1, flags, desc.get(e.type, 0)))
    img = k.image
    for name, (s, e) in (
        ("Kernel code", ("_text", "_etext")),
        ("Kernel rodata", ("__start_rodata", "__end_rodata")),
        ("Kernel data", ("_sdata", "_edata")),
        ("Kernel bss", ("__bss_start", "__bss_stop")),
    ):
        root.insert(Res(name, img.pa(k.sym(s)), img.pa(k.sym(e)) - 1, IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY))
    platform = k.config.platform_iomem
    if platform is None:  # the reference machine's chipset
        # the host bridge's window is the chipset's, whatever mem=/memmap= made of the map
        firmware = getattr(k, "e820_firmware", k.e820)
        low_top = max(e.end for e in firmware if e.type != E820_TYPE_RAM and e.end <= 3 << 30)
        platform = (
            ("PCI Bus 0000:00", -(-low_top // (1 << 20)) * (1 << 20), 0xFEBFFFFF, IORESOURCE_MEM, 0),
            ("IOAPIC 0", 0xFEC00000, 0xFEC003FF, IORESOURCE_MEM | IORESOURCE_BUSY, 0),
            ("Local APIC", 0xFEE00000, 0xFEE00FFF, IORESOURCE_MEM | IORESOURCE_BUSY, 0),
            ("System ROM", 0xF0000, 0xFFFFF, IORESOURCE_MEM | IORESOURCE_BUSY, 0),
        )
    # Devices (ACPI/PCI probing) before the late e820 ranges; those a late range holds
    # (claimed by PNP system devices after pcibios_resource_survey) after them.
    for d in platform:
        if not (len(d) > 5 and d[5]):
            root.insert(Res(*d[:5]))
    for r in late:
        root.insert_expand_to_fit(r)
    for d in platform:
        if len(d) > 5 and d[5]:
            root.insert(Res(*d[:5]))
    return root


def e820_reserve_resources(k: Kernel) -> None:
    root = build_tree(k)
    size = k.T.sizeof("struct resource")
    nodes: list[Res] = []

    def collect(r: Res) -> None:
        for c in r.children:
            nodes.append(c)
            collect(c)

    collect(root)
    base = k.phys_to_virt(k.memblock.alloc(size * len(nodes), 64))
    k.iomem_addr = {id(r): base + i * size for i, r in enumerate(nodes)}
    k.iomem_addr[id(root)] = k.sym("iomem_resource")
    _write(k, root, None)
    km = k.kmem
    io = k.sym("ioport_resource")
    km.set(io, "resource", "name", k.image.string("PCI IO"))
    km.set(io, "resource", "end", 0xFFFF)
    km.set(io, "resource", "flags", 0x100)  # IORESOURCE_IO
    k.iomem = root


def _write(k: Kernel, r: Res, parent: Res | None) -> None:
    """Write ``r`` and its subtree (start, end, name, flags, desc and the parent/child/sibling
    links) into its struct resources."""
    km, addr = k.kmem, k.iomem_addr
    a = addr[id(r)]
    km.set(a, "resource", "start", r.start)
    km.set(a, "resource", "end", r.end)
    km.set(a, "resource", "name", k.image.string(r.name))
    km.set(a, "resource", "flags", r.flags)
    km.set(a, "resource", "desc", r.desc)
    km.set(a, "resource", "parent", addr[id(parent)] if parent else 0)
    km.set(a, "resource", "child", addr[id(r.children[0])] if r.children else 0)
    for i, c in enumerate(r.children):
        km.set(addr[id(c)], "resource", "sibling", addr[id(r.children[i + 1])] if i + 1 < len(r.children) else 0)
        _write(k, c, r)


def request_mem_region(k: Kernel, start: int, end: int, name: str) -> None:
    """__request_region() after boot (a driver claiming its range, e.g. nd_pmem's namespace):
    a struct resource from kmalloc, IORESOURCE_MEM | IORESOURCE_BUSY, inserted under the
    resource that holds it."""
    from mmintro.kernel import slub

    holder = k.iomem
    while True:  # the innermost resource that holds the range: its desc is the new one's
        inner = next((c for c in holder.children if c.start <= start and end <= c.end), None)
        if inner is None:
            break
        holder = inner
    r = Res(name, start, end, IORESOURCE_MEM | IORESOURCE_BUSY, holder.desc)
    if k.iomem.insert(r) is not None:
        raise ValueError(f"request_mem_region: [{start:#x}-{end:#x}] {name} conflicts with a resource")
    k.iomem_addr[id(r)] = slub.kzalloc(k, k.T.sizeof("struct resource"), "GFP_KERNEL", caller="__request_region")
    _write(k, k.iomem, None)
