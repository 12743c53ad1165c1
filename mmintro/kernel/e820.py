"""The BIOS e820 memory map of a simulated PC (arch/x86/kernel/e820.c).

The map has the holes every PC has: the real-mode IVT page, the EBDA and option/BIOS ROMs
below 1 MiB, ACPI tables at the top of low RAM, the 32-bit PCI/MMIO hole below 4 GiB
(IOAPIC, local APIC, BIOS flash) and the rest of RAM above 4 GiB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GiB = 1 << 30
MiB = 1 << 20

# enum e820_type (arch/x86/include/asm/e820/types.h); values are fixed by the BIOS interface.
E820_TYPE_RAM = 1
E820_TYPE_RESERVED = 2
E820_TYPE_ACPI = 3
E820_TYPE_NVS = 4

E820_NAMES = {
    E820_TYPE_RAM: "System RAM",
    E820_TYPE_RESERVED: "Reserved",
    E820_TYPE_ACPI: "ACPI Tables",
    E820_TYPE_NVS: "ACPI Non-volatile Storage",
    5: "Unusable memory",
    7: "Persistent Memory",
    12: "Persistent Memory (legacy)",
    0xEFFFFFFF: "Soft Reserved",
}

LOWMEM_TOP = 3 * GiB  # where the 32-bit PCI hole starts on this simulated chipset
ACPI_SIZE = 128 * 1024


@dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int

    @property
    def end(self) -> int:
        return self.addr + self.size


def build_e820(ram: int) -> list[E820Entry]:
    """The firmware map for ``ram`` bytes of installed memory (a multiple of 128 MiB)."""
    low = min(ram, LOWMEM_TOP)
    high = ram - low
    m = [
        E820Entry(0, 0x1000, E820_TYPE_RESERVED),
        E820Entry(0x1000, 0x9FC00 - 0x1000, E820_TYPE_RAM),
        E820Entry(0x9FC00, 0xA0000 - 0x9FC00, E820_TYPE_RESERVED),
        E820Entry(0xF0000, 0x10000, E820_TYPE_RESERVED),
        E820Entry(0x100000, low - ACPI_SIZE - 0x100000, E820_TYPE_RAM),
        E820Entry(low - ACPI_SIZE, ACPI_SIZE // 2, E820_TYPE_ACPI),
        E820Entry(low - ACPI_SIZE // 2, ACPI_SIZE // 2, E820_TYPE_NVS),
        E820Entry(0xFEC00000, 0x1000, E820_TYPE_RESERVED),
        E820Entry(0xFEE00000, 0x1000, E820_TYPE_RESERVED),
        E820Entry(0xFFFC0000, 0x40000, E820_TYPE_RESERVED),
    ]
    if high:
        m.append(E820Entry(4 * GiB, high, E820_TYPE_RAM))
    return m


def ram_ranges(e820: list[E820Entry]) -> list[tuple[int, int]]:
    return [(e.addr, e.end) for e in e820 if e.type == E820_TYPE_RAM]


# -- a machine's own map ------------------------------------------------------------------------
E820_TYPE_UNUSABLE = 5
E820_TYPE_PMEM = 7  # "Persistent Memory" (e820_type_to_string)
E820_TYPE_PRAM = 12  # "Persistent Memory (legacy)"; dmesg: "persistent (type 12)"
E820_TYPE_SOFT_RESERVED = 0xEFFFFFFF

# e820_print_type() (the dmesg "BIOS-e820:" lines) and e820_type_to_string() (/sys/firmware/memmap)
_TYPE_NAMES = {
    "usable": E820_TYPE_RAM,
    "reserved": E820_TYPE_RESERVED,
    "ACPI data": E820_TYPE_ACPI,
    "ACPI NVS": E820_TYPE_NVS,
    "unusable": E820_TYPE_UNUSABLE,
    "persistent (type 12)": E820_TYPE_PRAM,
    "soft reserved": E820_TYPE_SOFT_RESERVED,
    "System RAM": E820_TYPE_RAM,
    "Reserved": E820_TYPE_RESERVED,
    "ACPI Tables": E820_TYPE_ACPI,
    "ACPI Non-volatile Storage": E820_TYPE_NVS,
    "Unusable memory": E820_TYPE_UNUSABLE,
    "Persistent Memory (legacy)": E820_TYPE_PRAM,
    "Persistent Memory": E820_TYPE_PMEM,
    "Soft Reserved": E820_TYPE_SOFT_RESERVED,
}
# (type 12, legacy persistent memory, becomes ZONE_DEVICE memory: mmintro.kernel.memremap)
_MODELLED = {E820_TYPE_RAM, E820_TYPE_RESERVED, E820_TYPE_ACPI, E820_TYPE_NVS, E820_TYPE_UNUSABLE, E820_TYPE_PRAM}
MAX_PHYS = 1 << 46  # MAX_PHYSMEM_BITS with 4-level paging
BIOS_BEGIN, BIOS_END = 0xA0000, 0x100000


class E820Error(ValueError):
    """A memory map that cannot be booted (one line naming the line at fault)."""


def parse_e820(text: str, source: str = "e820") -> list[E820Entry]:
    """A machine's firmware memory map, as the kernel prints it at boot (dmesg's
    ``BIOS-e820: [mem 0xSTART-0xEND] TYPE`` lines, other lines ignored) or as
    /sys/firmware/memmap lists it (``START END TYPE`` per line, e.g. from
    ``for d in /sys/firmware/memmap/*; do echo $(cat $d/start $d/end $d/type); done``).

    :raises E820Error: a line that is neither, an unknown or unmodelled type, overlapping
        entries, no usable RAM, or memory beyond the 46-bit physical address space
    """
    import re

    dmesg = re.compile(r"BIOS-e820: \[mem (0x[0-9a-fA-F]+)-(0x[0-9a-fA-F]+)\] (.+?)\s*$")
    sysfs = re.compile(r"^\s*(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)\s+(\S.*?)\s*$")
    found: list[tuple[int, E820Entry]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = dmesg.search(line) or (sysfs.match(line) if "BIOS-e820" not in line else None)
        if m is None:
            if "e820" in line or re.match(r"^\s*0x", line):
                raise E820Error(f"{source}:{n}: not an e820 entry: {line.strip()!r}")
            continue  # other dmesg lines
        start, end, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        t = _TYPE_NAMES.get(name)
        if t is None and (tm := re.fullmatch(r"type (\d+)", name)):
            t = int(tm.group(1))
        if t is None:
            raise E820Error(f"{source}:{n}: unknown e820 type {name!r}")
        if t not in _MODELLED:
            raise E820Error(
                f"{source}:{n}: e820 type {name!r} ({t}) is not modelled (persistent and soft-reserved "
                "memory other than legacy pmem, type 12, is not simulated)"
            )
        if end < start:
            raise E820Error(f"{source}:{n}: the range ends before it starts")
        if end >= MAX_PHYS:
            raise E820Error(f"{source}:{n}: memory beyond the 46-bit physical address space (4-level paging)")
        found.append((n, E820Entry(start, end + 1 - start, t)))
    if not found:
        raise E820Error(f"{source}: no e820 entry (dmesg 'BIOS-e820:' lines or /sys/firmware/memmap 'START END TYPE')")
    found.sort(key=lambda x: x[1].addr)
    for (na, a), (nb, b) in zip(found, found[1:]):
        if b.addr < a.end:
            raise E820Error(f"{source}:{nb}: overlaps line {na} ({a.addr:#x}-{a.end - 1:#x})")
    return trim_bios_range([e for _n, e in found], source)


def trim_bios_range(entries: list[E820Entry], source: str = "e820") -> list[E820Entry]:
    """arch/x86/kernel/e820.c e820__memory_setup() -> trim_bios_range(): the first page is
    reserved (the BIOS data area's page) and no RAM is left in the legacy BIOS region
    0xa0000-0x100000; then there must be usable RAM."""
    out: list[E820Entry] = []
    for e in entries:
        pieces = [(e.addr, e.end)]
        if e.type == E820_TYPE_RAM:
            cut = []
            for a, b in pieces:
                for lo, hi in ((0, 0x1000), (BIOS_BEGIN, BIOS_END)):
                    if a < hi and lo < b:
                        if a < lo:
                            cut.append((a, lo))
                        a = max(a, hi)
                if a < b:
                    cut.append((a, b))
            if e.addr < 0x1000:
                out.append(E820Entry(e.addr, min(e.end, 0x1000) - e.addr, E820_TYPE_RESERVED))
            pieces = cut
        out += [E820Entry(a, b - a, e.type) for a, b in pieces if b > a]
    out.sort(key=lambda e: e.addr)
    if not any(e.type == E820_TYPE_RAM and e.size >= (1 << 20) for e in out):
        raise E820Error(f"{source}: no usable RAM (at least 1 MiB of 'usable' above the BIOS area)")
    return out


def machine_of_dump(prog) -> dict:
    """What ``mmintro simulate --like DUMP`` takes from a real kernel's dump (a reader Program):
    the e820 table the kernel kept (``e820_table``, already through e820__memory_setup), the
    online CPUs, and each online node's physical range (node_start_pfn, node_spanned_pages).

    :raises E820Error: the dump's table is empty or out of range
    """
    t = prog["e820_table"]
    n = t.nr_entries.value_()
    cap = len(t.entries)
    if not 0 < n <= cap:
        raise E820Error(f"the dump's e820_table has {n} entries (0 < n <= {cap} expected)")
    lines = []
    for i in range(n):
        e = t.entries[i]
        typ = e.type.value_()
        name = next((k for k, v in _TYPE_NAMES.items() if v == typ), f"type {typ}")
        lines.append(f"{e.addr.value_():#x} {e.addr.value_() + e.size.value_() - 1:#x} {name}")
    entries = parse_e820("\n".join(lines), "the dump's e820_table")
    from mmintro.reader.helpers.mmzone import for_each_online_pgdat
    from mmintro.reader.helpers.percpu import for_each_online_cpu

    nodes = [
        (pg.node_start_pfn.value_() << 12, (pg.node_start_pfn.value_() + pg.node_spanned_pages.value_()) << 12)
        for pg in for_each_online_pgdat(prog)
    ]
    cpus = list(for_each_online_cpu(prog))
    from mmintro.kernel.kimage import layout_of_dump

    layout, load = layout_of_dump(prog)
    return {
        "e820": tuple(entries),
        "cpus": len(cpus),
        "nodes": len(nodes),
        "node_ranges": tuple(nodes) if len(nodes) > 1 else None,
        "cpu_nodes": _cpu_nodes(prog, cpus, len(nodes)),
        "kernel_layout": layout,
        "kernel_phys": load,
        "initrd": _initrd_of_dump(prog),
        "platform_iomem": _platform_iomem(prog, entries),
    }


_KERNEL_RESOURCES = {"Kernel code", "Kernel rodata", "Kernel data", "Kernel bss"}
_NAMESPACE = re.compile(r"namespace\d+\.\d+")


def _platform_iomem(prog, entries: list[E820Entry]) -> tuple:
    """The dump's iomem resources that are neither its e820 entries (same range and type
    name) nor the kernel image's: the machine's devices, at any depth (bounded walk), in the
    tree's pre-order, each (name, start, end, flags, desc, under_e820): whether an e820
    resource of the same range holds it (it was claimed after e820__reserve_resources_late())."""
    e820 = {(e.addr, e.end - 1, name) for e in entries for name, t in _TYPE_NAMES.items() if t == e.type}
    out = []
    budget = 100_000

    def walk(p, held: frozenset, depth: int) -> None:
        nonlocal budget
        if depth > 32:
            raise E820Error("the dump's iomem_resource tree is more than 32 levels deep")
        while p.value_():
            budget -= 1
            if budget < 0:
                raise E820Error("the dump's iomem_resource tree does not end (more than 100000 resources)")
            r = p[0]
            start, end = r.start.value_(), r.end.value_()
            name = r.name.string_().decode(errors="replace") if r.name.value_() else ""
            ours = (start, end, name) in e820
            # (nd_pmem's claims on persistent memory, "namespaceN.M", the simulated boot makes itself)
            if not ours and name not in _KERNEL_RESOURCES and not _NAMESPACE.fullmatch(name):
                out.append((name, start, end, r.flags.value_(), r.desc.value_(), (start, end) in held))
            walk(r.child, held | {(start, end)} if ours else held, depth + 1)
            p = r.sibling

    walk(prog["iomem_resource"].child, frozenset(), 0)
    return tuple(out)


def _cpu_nodes(prog, cpus: list[int], nodes: int) -> tuple | None:
    """Each online CPU's node: the per-CPU ``numa_node`` (x86 set_cpu_numa_node()), read
    through ``__per_cpu_offset``; None on one node."""
    if nodes < 2:
        return None
    addr = prog.symbols.by_name["numa_node"].address
    out = []
    for cpu in cpus:
        off = prog["__per_cpu_offset"][cpu].value_()
        nid = int.from_bytes(prog.read((addr + off) & 0xFFFFFFFFFFFFFFFF, 4), "little", signed=True)
        if not 0 <= nid < nodes:
            raise E820Error(f"CPU {cpu}'s numa_node is {nid}, not one of the {nodes} online nodes")
        out.append(nid)
    return tuple(out)


_RAMDISK = re.compile(r"^RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]")


def _initrd_of_dump(prog) -> tuple | None:
    """The initrd's physical range as setup_arch() -> early_reserve_initrd() logged it
    ("RAMDISK: [mem START-END]"), if the dump's log still has the line."""
    from mmintro.reader.errors import FaultError, ValidationError
    from mmintro.reader.helpers.printk import dmesg_records

    try:
        records = list(dmesg_records(prog))
    except (FaultError, ValidationError, KeyError):  # a log the reader cannot walk leaves the initrd out
        return None
    for r in records:
        m = _RAMDISK.match(r.text)
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16) + 1
            return (start & ~0xFFF, (-(-end // 4096) * 4096) - (start & ~0xFFF))
    return None


# -- the user-defined map: mem= and memmap= (arch/x86/kernel/e820.c) --------------------------
def _max_entries() -> int:
    """E820_MAX_ENTRIES: the capacity of struct e820_table's entries[] in the type data."""
    from mmintro.types import get_types

    return get_types().struct("e820_table").walk("entries")[2].resolved().nelems


ULLONG_MAX = (1 << 64) - 1


class E820Table:
    """struct e820_table while boot parameters edit it: ``entries`` are [addr, size, type]
    triples in table order (not sorted, possibly overlapping) until :meth:`update_table`
    sanitizes them, as the kernel's array is; an entry e820__range_remove() covers entirely
    is zeroed in place (memset), which update_table then drops."""

    def __init__(self, entries: list[E820Entry] | tuple) -> None:
        self.entries: list[list[int]] = [[e.addr, e.size, e.type] for e in entries]
        self.log: list[tuple[int, str]] = []  # (printk level, text) the kernel prints while editing

    def range_add(self, start: int, size: int, type_: int) -> None:
        """__e820__range_add(): one more entry, unless the table is full."""
        if len(self.entries) >= _max_entries():
            self.log.append((3, f"too many entries; ignoring [mem {start:#010x}-{start + size - 1:#010x}]"))
            return
        self.entries.append([start, size, type_])

    def range_remove(self, start: int, size: int, old_type: int, check_type: bool) -> int:
        """e820__range_remove(): cut [start, start + size) out of every entry (of ``old_type``
        when ``check_type``); returns the bytes removed."""
        size = min(size, ULLONG_MAX - start)
        end = start + size
        self.log.append(
            (
                7,
                f"e820: remove [mem {start:#010x}-{end - 1:#010x}] "
                + (e820_print_type(old_type) if check_type else ""),
            )
        )
        removed = 0
        for entry in list(self.entries):  # range_add() appends to the array being walked
            if check_type and entry[2] != old_type:
                continue
            e_start, e_end = entry[0], entry[0] + entry[1]
            if e_start >= start and e_end <= end:  # completely covered
                removed += entry[1]
                entry[:] = [0, 0, 0]
                continue
            if e_start < start and e_end > end:  # the range is inside the entry
                self.range_add(end, e_end - end, entry[2])
                entry[1] = start - e_start
                removed += size
                continue
            final_start, final_end = max(start, e_start), min(end, e_end)
            if final_start >= final_end:
                continue
            removed += final_end - final_start
            entry[1] -= final_end - final_start
            if e_start < final_start:
                continue
            entry[0] = final_end
        return removed

    def range_update(self, start: int, size: int, old_type: int, new_type: int) -> int:
        """__e820__range_update(): retype the ``old_type`` parts of [start, start + size)."""
        if old_type == new_type:
            raise E820Error(f"e820__range_update from type {old_type} to itself")  # the kernel's BUG_ON
        size = min(size, ULLONG_MAX - start)
        end = start + size
        self.log.append(
            (
                7,
                f"e820: update [mem {start:#010x}-{end - 1:#010x}] {e820_print_type(old_type)} ==> "
                f"{e820_print_type(new_type)}",
            )
        )
        updated = 0
        for entry in list(self.entries):
            if entry[2] != old_type:
                continue
            e_start, e_end = entry[0], entry[0] + entry[1]
            if e_start >= start and e_end <= end:
                entry[2] = new_type
                updated += entry[1]
                continue
            if e_start < start and e_end > end:
                self.range_add(start, size, new_type)
                self.range_add(end, e_end - end, entry[2])
                entry[1] = start - e_start
                updated += size
                continue
            final_start, final_end = max(start, e_start), min(end, e_end)
            if final_start >= final_end:
                continue
            self.range_add(final_start, final_end - final_start, new_type)
            updated += final_end - final_start
            entry[1] -= final_end - final_start
            if e_start < final_start:
                continue
            entry[0] = final_end
        return updated

    def update_table(self) -> bool:
        """e820__update_table(): sort and merge, resolving overlaps in favour of the highest
        type number (1 = usable loses to everything); adjacent entries of one type merge
        except persistent (type 12) and soft-reserved ones (e820_nomerge).  False, the table
        untouched, when it has fewer than two entries or one wraps around (the kernel's -1)."""
        from mmintro.types import get_types

        T = get_types()
        nomerge = {T.const("E820_TYPE_PRAM"), T.const("E820_TYPE_SOFT_RESERVED")}
        entries = self.entries
        if len(entries) < 2:
            return False
        if any(a + s > ULLONG_MAX for a, s, _t in entries):
            return False
        # change points: (addr, is_end, index); cpcompare puts a region's start before
        # another's end at the same address
        points = []
        for i, (a, s, _t) in enumerate(entries):
            if s:
                points += [(a, 0, i), (a + s, 1, i)]
        points.sort(key=lambda p: (p[0], p[1]))
        overlap: list[int] = []
        new: list[list[int]] = []
        last_type, last_addr = 0, 0
        for addr, is_end, i in points:
            if not is_end:
                overlap.append(i)
            else:
                overlap.remove(i)
            current = max((entries[j][2] for j in overlap), default=0)
            if current != last_type or current in nomerge:
                if last_type and addr - last_addr:
                    new[-1][1] = addr - last_addr
                elif last_type:
                    new.pop()  # a zero-sized entry is overwritten by the next one
                if current:
                    new.append([addr, 0, current])
                    last_addr = addr
                last_type = current
        if new and new[-1][1] == 0:
            new.pop()
        self.entries = new[: _max_entries()]
        return True

    def result(self) -> list[E820Entry]:
        return [E820Entry(a, s, t) for a, s, t in self.entries if s]


def e820_print_type(type_: int) -> str:
    """e820_print_type(): the type as the boot log's "BIOS-e820:" and "user:" lines name it."""
    from mmintro.types import get_types

    T = get_types()
    names = {
        E820_TYPE_RAM: "usable",
        E820_TYPE_RESERVED: "reserved",
        T.const("E820_TYPE_SOFT_RESERVED"): "soft reserved",
        E820_TYPE_ACPI: "ACPI data",
        E820_TYPE_NVS: "ACPI NVS",
        E820_TYPE_UNUSABLE: "unusable",
    }
    if type_ in (T.const("E820_TYPE_PMEM"), T.const("E820_TYPE_PRAM")):
        return f"persistent (type {type_})"
    return names.get(type_, f"type {type_}")


def e820_print_table(entries: list[E820Entry], who: str) -> list[str]:
    """e820__print_table(who): one line per entry."""
    return [f"{who}: [mem {e.addr:#018x}-{e.end - 1:#018x}] {e820_print_type(e.type)}" for e in entries]


def parse_memopt(table: E820Table, p: str | None) -> bool:
    """parse_memopt() (``mem=``): drop the usable RAM at and above the size given; ``mem=nopentium``
    is refused on 64-bit.  False where the kernel returns -EINVAL (no value, a zero size)."""
    from mmintro.kernel.cmdline import memparse

    if p is None:
        return False
    if p == "nopentium":
        table.log.append((4, "mem=nopentium ignored! (only supported on x86_32)"))
        return False
    mem_size, _rest = memparse(p)
    if mem_size == 0:  # "Don't remove all memory when getting "mem={invalid}" parameter"
        return False
    table.range_remove(mem_size, ULLONG_MAX - mem_size, E820_TYPE_RAM, True)
    return True


def parse_memmap_one(table: E820Table, p: str) -> bool:
    """parse_memmap_one(), one comma-separated item of ``memmap=``: ``exactmap`` (forget the
    firmware's map), ``nn@ss`` usable RAM, ``nn#ss`` ACPI data, ``nn$ss`` reserved, ``nn!ss``
    persistent memory (type 12), ``nn%ss-old+new`` retype (or add/remove), bare ``nn`` as
    ``mem=nn``.  False where the kernel returns -EINVAL (the item is then partly applied
    or not at all, as in the kernel)."""
    from mmintro.kernel.cmdline import memparse
    from mmintro.types import get_types

    T = get_types()
    if p.startswith("exactmap"):
        table.entries.clear()
        return True
    mem_size, rest = memparse(p)
    if rest == p:
        return False
    kinds = {"@": E820_TYPE_RAM, "#": E820_TYPE_ACPI, "$": E820_TYPE_RESERVED, "!": T.const("E820_TYPE_PRAM")}
    sep = rest[:1]
    if sep in kinds:
        start_at, rest = memparse(rest[1:])
        table.range_add(start_at, mem_size, kinds[sep])
    elif sep == "%":
        from mmintro.kernel.cmdline import simple_strtoull

        start_at, rest = memparse(rest[1:])
        old = new = 0
        if rest[:1] == "-":
            old, rest = simple_strtoull(rest[1:], 0)
        if rest[:1] == "+":
            new, rest = simple_strtoull(rest[1:], 0)
        if rest:
            return False
        if old and new:
            table.range_update(start_at, mem_size, old, new)
        elif new:
            table.range_add(start_at, mem_size, new)
        elif old:
            table.range_remove(start_at, mem_size, old, True)
        else:
            table.range_remove(start_at, mem_size, 0, False)
    else:
        table.range_remove(mem_size, ULLONG_MAX - mem_size, E820_TYPE_RAM, True)
    return rest == ""


def e820_user_map(entries: list[E820Entry] | tuple, params: tuple) -> tuple[list[E820Entry], list[tuple[int, str]]]:
    """The map after parse_early_param()'s ``mem=`` and ``memmap=`` edits (``params``: their
    ``(name, value)`` pairs in command-line order) and e820__finish_early_params(): sanitized by
    e820__update_table when any option touched it (``userdef``), with the boot log's lines as
    (printk level, text): the KERN_DEBUG "e820: remove/update" ones and the "user-defined
    physical RAM map:"; the map unchanged and no lines otherwise.

    :raises E820Error: what the kernel panics on: "Invalid user supplied memory map" (an
        ``exactmap`` leaving fewer than two entries), or no usable RAM left
    """
    table = E820Table(entries)
    userdef = False
    for name, value in params:
        if name == "mem":
            userdef |= parse_memopt(table, value)
            continue
        for item in value.split(","):  # parse_memmap_opt()
            parse_memmap_one(table, item)
            userdef = True  # memparse consumed something, or exactmap
    if not userdef:
        return list(entries), table.log
    if not table.update_table():
        raise E820Error(
            "Invalid user supplied memory map (e820__finish_early_params: fewer than two entries after memmap=exactmap)"
        )
    out = table.result()
    if not any(e.type == E820_TYPE_RAM for e in out):
        raise E820Error("the user-defined memory map (mem=/memmap=) leaves no usable RAM")
    return out, table.log + [(6, line) for line in ["user-defined physical RAM map:"] + e820_print_table(out, "user")]
