"""The simulated kernel image: where vmlinux's sections and globals live.

The image sits where an x86-64 kernel without KASLR sits: linked at START_KERNEL_MAP +
CONFIG_PHYSICAL_START (``_text`` = 0xffffffff81000000), loaded at physical 16 MiB.  Section
sizes follow the reference kernel's /proc/iomem (Kernel code/rodata/data/bss).  Globals are
placed in .data/.bss with their types' sizes; function symbols (for call sites and for
drgn's feature detection) in .text; strings in .rodata.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmintro.arch.x86 import PAGE_SIZE, START_KERNEL_MAP
from mmintro.types import Type, TypeDB

# Physical extents of the sections, from the reference kernel's /proc/iomem.
SECTIONS = {
    "text": (0x01000000, 0x0220BB08),
    "rodata": (0x02400000, 0x02E0A000),
    "data": (0x03000000, 0x0327C140),
    # The init part (__init_begin..__init_end) lies between _edata and the bss, which iomem
    # does not show: .init.text from the next 2 MiB boundary; .data..percpu at its end
    # (:meth:`KernelImage.percpu_section`).
    "init_text": (0x03400000, 0x03410000),
    "bss": (0x03B34000, 0x03C58000),
}

# Functions the simulated kernel "has": drgn keys SPARSEMEM_VMEMMAP on vmemmap_populate;
# later subsystems name their allocation call sites after real functions.  The __init ones
# are in .init.text, as the kernel links them.
FUNCTIONS = [("vmemmap_populate", 0x1A0), ("kernel_clone", 0x3E0)]
INIT_FUNCTIONS = [
    ("start_kernel", 0x6C0), ("setup_arch", 0x1200), ("memblock_alloc_try_nid", 0xE0),
    ("sparse_init", 0x3A0), ("free_area_init", 0x5C0), ("memblock_free_all", 0x140), ("mem_init", 0x80),
]


@dataclass
class KSymbol:
    name: str
    address: int
    size: int
    kind: str  # "object" or "func"
    type: Type | None = None
    section: str = "data"


class KernelImage:
    def __init__(self, types: TypeDB, phys_base: int = 0) -> None:
        self.T = types
        self.phys_base = phys_base
        self.symbols: dict[str, KSymbol] = {}
        self.percpu: tuple[int, int] | None = None  # physical extent of .data..percpu, once placed
        self._cursor = {name: self.virt(start) for name, (start, _end) in SECTIONS.items()}
        self._strings: dict[str, int] = {}
        self.add("_text", self.virt(SECTIONS["text"][0]), 0, "func", section="text")
        self.add("_stext", self.virt(SECTIONS["text"][0]), 0, "func", section="text")
        self._cursor["text"] += 0x1000  # head code
        for fname, size in FUNCTIONS:
            self.func(fname, size)
        self.add("__init_begin", self.virt(SECTIONS["init_text"][0]), 0, "object", section="init_text")
        for fname, size in INIT_FUNCTIONS:
            self.func(fname, size, "init_text")

    # -- addresses ----------------------------------------------------------------------
    def virt(self, paddr: int) -> int:
        return paddr - self.phys_base + START_KERNEL_MAP

    def pa(self, vaddr: int) -> int:
        return vaddr - START_KERNEL_MAP + self.phys_base

    def contains(self, vaddr: int) -> bool:
        return self.virt(SECTIONS["text"][0]) <= vaddr < self.virt(SECTIONS["bss"][1])

    @property
    def start(self) -> int:
        return SECTIONS["text"][0]

    @property
    def end(self) -> int:
        return SECTIONS["bss"][1]

    def percpu_section(self, static_size: int) -> int:
        """Place .data..percpu (the per-CPU template, ``static_size`` bytes) and return
        ``__per_cpu_start``.

        Since 6.15 x86-64 per-CPU symbols are not linked at 0: the section sits in the init
        part of the image at its own address, and ``__per_cpu_offset[cpu]`` is the CPU's unit
        minus ``__per_cpu_start``.  As in 6.18's vmlinux.lds, it is the last thing before
        ``__init_end``, which is one page short of the bss (the page-aligned .data_nosave)."""
        end = SECTIONS["bss"][0] - 2 * PAGE_SIZE
        start = (end - static_size) & ~(PAGE_SIZE - 1)
        self.percpu = (start, start + static_size)
        self.add("__per_cpu_start", self.virt(start), 0, "object", section="percpu")
        self.add("__per_cpu_end", self.virt(start + static_size), 0, "object", section="percpu")
        self.add("__init_end", self.virt(end + PAGE_SIZE), 0, "object", section="percpu")
        return self.virt(start)

    # -- placement ----------------------------------------------------------------------
    def add(self, name: str, address: int, size: int, kind: str, type_: Type | None = None, section: str = "data") -> KSymbol:
        if name in self.symbols:
            raise ValueError(f"symbol {name} defined twice")
        s = KSymbol(name, address, size, kind, type_, section)
        self.symbols[name] = s
        return s

    def _place(self, section: str, size: int, align: int) -> int:
        addr = -(-self._cursor[section] // align) * align
        limit = self.virt(SECTIONS[section][1])
        if addr + size > limit:
            raise MemoryError(f"kernel .{section} is full")
        self._cursor[section] = addr + size
        return addr

    def reserve(self, section: str, size: int, align: int = 8) -> int:
        """Room for bytes with no type of their own (assembler data such as the IKCONFIG blob)."""
        return self._place(section, size, align)

    def var(self, name: str, section: str = "data", align: int | None = None, size: int | None = None) -> int:
        """Place the global ``name`` (declared in the type data) and return its address.

        ``size``: the object's size where its type does not say (``const char linux_banner[]``)."""
        t = self.T.var_type(name)
        r = t.resolved()
        if size is None:
            size = t.size if not (r.kind == "array" and r.nelems == 0) else 0
        if align is None:
            align = PAGE_SIZE if size >= PAGE_SIZE else min(64, max(8, 1 << max(size - 1, 0).bit_length()))
        addr = self._place(section, size, align)
        self.add(name, addr, size, "object", t, section)
        return addr

    def marker(self, name: str, section: str, at_end: bool = False) -> int:
        """A linker-script symbol marking a section's start or end, such as _sdata or _etext
        (no type, zero size)."""
        addr = self.virt(SECTIONS[section][1] if at_end else SECTIONS[section][0])
        t = self.T.variables.get(name)
        self.add(name, addr, 0, "object", t[0] if t else None, section)
        return addr

    def func(self, name: str, size: int, section: str = "text") -> int:
        addr = self._place(section, size, 16)
        self.add(name, addr, size, "func", section=section)
        return addr

    def string(self, s: str) -> int:
        """A NUL-terminated string in .rodata (deduplicated), e.g. a resource name."""
        if s not in self._strings:
            self._strings[s] = self._place("rodata", len(s.encode()) + 1, 1)
        return self._strings[s]

    def strings(self) -> dict[str, int]:
        return dict(self._strings)
