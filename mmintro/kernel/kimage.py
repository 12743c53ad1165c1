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
LOAD_PHYSICAL_ADDR = 0x01000000  # CONFIG_PHYSICAL_START: where _text is linked (and loaded without KASLR)


@dataclass(frozen=True)
class ImageLayout:
    """Where the linker put the parts of vmlinux the boot frees or reserves, as offsets of its
    linker symbols from ``_text``.  The reference build's by default (from its /proc/iomem);
    ``--like`` takes a real kernel's from its dump (:func:`layout_of_dump`), so that the
    simulated boot reserves and frees what that kernel did.

    ``init_end`` None: the end of .data..percpu decides it (the reference build's iomem does
    not show it).  ``brk_end``: ``_brk_end`` at the end of setup_arch (what reserve_brk()
    keeps of .brk).  ``smp_locks``, ``bss_decrypted_unused``: the ranges
    alternative_instructions() and mem_encrypt_free_decrypted_mem() free, where the build has
    them."""

    etext: int = SECTIONS["text"][1] - LOAD_PHYSICAL_ADDR
    start_rodata: int = SECTIONS["rodata"][0] - LOAD_PHYSICAL_ADDR
    end_rodata: int = SECTIONS["rodata"][1] - LOAD_PHYSICAL_ADDR
    sdata: int = SECTIONS["data"][0] - LOAD_PHYSICAL_ADDR
    edata: int = SECTIONS["data"][1] - LOAD_PHYSICAL_ADDR
    init_begin: int = SECTIONS["init_text"][0] - LOAD_PHYSICAL_ADDR
    init_end: int | None = None
    bss_start: int = SECTIONS["bss"][0] - LOAD_PHYSICAL_ADDR
    bss_stop: int = SECTIONS["bss"][1] - LOAD_PHYSICAL_ADDR
    brk_end: int = SECTIONS["bss"][1] - LOAD_PHYSICAL_ADDR
    smp_locks: tuple[int, int] | None = None
    bss_decrypted_unused: tuple[int, int] | None = None

    def check(self) -> None:
        order = [
            ("_etext", self.etext),
            ("__start_rodata", self.start_rodata),
            ("__end_rodata", self.end_rodata),
            ("_sdata", self.sdata),
            ("_edata", self.edata),
            ("__init_begin", self.init_begin),
            ("__init_end", self.init_end if self.init_end is not None else self.init_begin),
            ("__bss_start", self.bss_start),
            ("__bss_stop", self.bss_stop),
            ("_brk_end", self.brk_end),
        ]
        for (na, a), (nb, b) in zip(order, order[1:]):
            if not 0 < a <= b:
                raise ValueError(f"kernel image layout: {nb} ({b:#x}) is not after {na} ({a:#x})")
        if self.start_rodata % PAGE_SIZE or self.sdata % PAGE_SIZE or self.init_begin % PAGE_SIZE:
            raise ValueError("kernel image layout: __start_rodata, _sdata and __init_begin are page aligned")
        if self.bss_stop > 1 << 30:
            raise ValueError("kernel image layout: the image is larger than 1 GiB")
        for name, r in (("__smp_locks", self.smp_locks), ("__start_bss_decrypted_unused", self.bss_decrypted_unused)):
            if r is not None and not 0 < r[0] <= r[1] <= self.brk_end:
                raise ValueError(f"kernel image layout: {name} is outside the image")

    @property
    def end_rodata_hpage_align(self) -> int:
        """__end_rodata_hpage_align: rodata's end rounded up to 2 MiB (vmlinux.lds.S)."""
        return -(-self.end_rodata // (2 << 20)) * (2 << 20)


def layout_of_dump(prog) -> tuple[ImageLayout, int]:
    """A real kernel's image layout and the physical address it was loaded at (``_text``),
    from its dump's symbols (kallsyms) and ``phys_base``."""
    by_name = prog.symbols.by_name

    def off(name: str) -> int:
        return by_name[name].address - text

    def u64(name: str) -> int:
        return int.from_bytes(prog.read(by_name[name].address, 8), "little")

    text = by_name["_text"].address
    smp = (off("__smp_locks"), off("__smp_locks_end")) if "__smp_locks" in by_name else None
    dec = (
        (off("__start_bss_decrypted_unused"), off("__end_bss_decrypted"))
        if "__start_bss_decrypted_unused" in by_name
        else None
    )
    brk_end = u64("_brk_end") - text if "_brk_end" in by_name else off("__bss_stop")
    layout = ImageLayout(
        etext=off("_etext"),
        start_rodata=off("__start_rodata"),
        end_rodata=off("__end_rodata"),
        sdata=off("_sdata"),
        edata=off("_edata"),
        init_begin=off("__init_begin"),
        init_end=off("__init_end"),
        bss_start=off("__bss_start"),
        bss_stop=off("__bss_stop"),
        brk_end=max(brk_end, off("__bss_stop")),
        smp_locks=smp,
        bss_decrypted_unused=dec,
    )
    load = (text - START_KERNEL_MAP + u64("phys_base")) & 0xFFFFFFFFFFFFFFFF  # phys_base wraps below the link address
    return layout, load


# Functions the simulated kernel "has": drgn keys SPARSEMEM_VMEMMAP on vmemmap_populate;
# later subsystems name their allocation call sites after real functions.  The __init ones
# are in .init.text, as the kernel links them.
FUNCTIONS = [("vmemmap_populate", 0x1A0), ("kernel_clone", 0x3E0)]
INIT_FUNCTIONS = [
    ("start_kernel", 0x6C0),
    ("setup_arch", 0x1200),
    ("memblock_alloc_try_nid", 0xE0),
    ("sparse_init", 0x3A0),
    ("free_area_init", 0x5C0),
    ("memblock_free_all", 0x140),
    ("mem_init", 0x80),
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
    def __init__(self, types: TypeDB, phys_base: int = 0, layout: ImageLayout | None = None) -> None:
        self.T = types
        self.phys_base = phys_base
        self.layout = layout = layout or ImageLayout()
        layout.check()
        load = LOAD_PHYSICAL_ADDR + phys_base
        # The sections' physical extents where the image sits (the reference build's at 16 MiB
        # without KASLR; phys_base moves them as a relocated kernel's).
        self.sections = {
            "text": (load, load + layout.etext),
            "rodata": (load + layout.start_rodata, load + layout.end_rodata),
            "data": (load + layout.sdata, load + layout.edata),
            "init_text": (load + layout.init_begin, load + layout.init_begin + 0x10000),
            "bss": (load + layout.bss_start, load + layout.bss_stop),
        }
        self.symbols: dict[str, KSymbol] = {}
        self.percpu: tuple[int, int] | None = None  # physical extent of .data..percpu, once placed
        self._cursor = {name: self.virt(start) for name, (start, _end) in self.sections.items()}
        self._strings: dict[str, int] = {}
        self.add("_text", self.virt(load), 0, "func", section="text")
        self.add("_stext", self.virt(load), 0, "func", section="text")
        self._cursor["text"] += 0x1000  # head code
        for fname, size in FUNCTIONS:
            self.func(fname, size)
        self.add("__init_begin", self.virt(self.sections["init_text"][0]), 0, "object", section="init_text")
        for fname, size in INIT_FUNCTIONS:
            self.func(fname, size, "init_text")

    # -- addresses ----------------------------------------------------------------------
    def virt(self, paddr: int) -> int:
        return paddr - self.phys_base + START_KERNEL_MAP

    def pa(self, vaddr: int) -> int:
        return vaddr - START_KERNEL_MAP + self.phys_base

    def contains(self, vaddr: int) -> bool:
        return self.virt(self.start) <= vaddr < self.virt(self.end)

    @property
    def start(self) -> int:
        """Physical address of _text."""
        return LOAD_PHYSICAL_ADDR + self.phys_base

    @property
    def end(self) -> int:
        """Physical end of what setup_arch() reserves for the image: _text up to
        __end_of_kernel_reserve (the bss's end), then reserve_brk()'s part of .brk."""
        return self.start + self.layout.brk_end

    def percpu_section(self, static_size: int) -> int:
        """Place .data..percpu (the per-CPU template, ``static_size`` bytes) and return
        ``__per_cpu_start``.

        Since 6.15 x86-64 per-CPU symbols are not linked at 0: the section sits in the init
        part of the image at its own address, and ``__per_cpu_offset[cpu]`` is the CPU's unit
        minus ``__per_cpu_start``.  As in 6.18's vmlinux.lds, it is the last thing before
        ``__init_end`` (which is one page short of the bss, the page-aligned .data_nosave,
        where the layout does not say)."""
        if self.layout.init_end is not None:
            end = self.start + self.layout.init_end - PAGE_SIZE
        else:
            end = self.sections["bss"][0] - 2 * PAGE_SIZE
        start = (end - static_size) & ~(PAGE_SIZE - 1)
        if start < self.sections["init_text"][1]:
            raise ValueError(f"the image's init part has no room for {static_size} bytes of per-CPU data")
        self.percpu = (start, start + static_size)
        self.add("__per_cpu_start", self.virt(start), 0, "object", section="percpu")
        self.add("__per_cpu_end", self.virt(start + static_size), 0, "object", section="percpu")
        self.add("__init_end", self.virt(end + PAGE_SIZE), 0, "object", section="percpu")
        return self.virt(start)

    @property
    def init_end(self) -> int:
        """Physical address of __init_end (placed with .data..percpu)."""
        return self.pa(self.symbols["__init_end"].address)

    # -- placement ----------------------------------------------------------------------
    def add(
        self,
        name: str,
        address: int,
        size: int,
        kind: str,
        type_: Type | None = None,
        section: str = "data",
        key: str | None = None,
    ) -> KSymbol:
        """Define symbol ``name``.  ``key``: how the simulator names it when the image has
        another of the same name (a file's static function, e.g. bdev.c's and inode.c's
        init_once(), which kallsyms lists twice)."""
        key = key or name
        if key in self.symbols:
            raise ValueError(f"symbol {key} defined twice")
        s = KSymbol(name, address, size, kind, type_, section)
        self.symbols[key] = s
        return s

    def _place(self, section: str, size: int, align: int) -> int:
        addr = -(-self._cursor[section] // align) * align
        limit = self.virt(self.sections[section][1])
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
        addr = self.virt(self.sections[section][1] if at_end else self.sections[section][0])
        t = self.T.variables.get(name)
        self.add(name, addr, 0, "object", t[0] if t else None, section)
        return addr

    def func(self, name: str, size: int, section: str = "text", key: str | None = None) -> int:
        addr = self._place(section, size, 16)
        self.add(name, addr, size, "func", section=section, key=key)
        return addr

    def string(self, s: str) -> int:
        """A NUL-terminated string in .rodata (deduplicated), e.g. a resource name."""
        if s not in self._strings:
            self._strings[s] = self._place("rodata", len(s.encode()) + 1, 1)
        return self._strings[s]

    def strings(self) -> dict[str, int]:
        return dict(self._strings)
