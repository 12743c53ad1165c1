"""Nodes, zones and memory sections (include/linux/mmzone.h, include/linux/nodemask.h).

Section geometry comes from VMCOREINFO (``NUMBER(SECTION_SIZE_BITS)``, ``LENGTH(mem_section)``)
when the snapshot has it, and from the type data for layouts.  The SECTION_* state bits are an
anonymous enum in include/linux/mmzone.h; they are taken from the type data when present, with
the 6.18 values as fallback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from mmintro.reader.errors import SnapshotError
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = [
    "NODE_DATA",
    "for_each_online_node",
    "for_each_node_state",
    "for_each_online_pgdat",
    "for_each_zone",
    "for_each_populated_zone",
    "zone_idx",
    "nr_to_section",
    "for_each_present_section",
    "present_section_nr",
    "SectionInfo",
    "section_geometry",
    "SectionGeometry",
]

# arch/x86/include/asm/sparsemem.h (x86-64): SECTION_SIZE_BITS 27, MAX_PHYSMEM_BITS 46 (4-level).
_DEFAULT_SECTION_SIZE_BITS = 27
# include/linux/mmzone.h, enum { SECTION_MARKED_PRESENT_BIT, SECTION_HAS_MEM_MAP_BIT,
# SECTION_IS_ONLINE_BIT, SECTION_IS_EARLY_BIT, [SECTION_TAINT_ZONE_DEVICE_BIT,]
# [SECTION_IS_VMEMMAP_PREINIT_BIT,] SECTION_MAP_LAST_BIT }.  The mem_map pointer is encoded in
# the bits above; a struct page pointer is 64-byte aligned, so masking the low 6 bits is safe
# whichever optional bits are configured.
_SECTION_BITS = {"MARKED_PRESENT": 0, "HAS_MEM_MAP": 1, "IS_ONLINE": 2, "IS_EARLY": 3}
_SECTION_MAP_MASK = ~0x3F & 0xFFFFFFFFFFFFFFFF


class SectionGeometry(NamedTuple):
    """Sparse memory model constants of a snapshot."""

    section_size_bits: int
    """``SECTION_SIZE_BITS``: log2 of the bytes per section."""
    pfn_section_shift: int
    """``PFN_SECTION_SHIFT``: log2 of the pages per section."""
    pages_per_section: int
    """``PAGES_PER_SECTION``."""
    sections_per_root: int
    """``SECTIONS_PER_ROOT``: struct mem_section per root page."""
    nr_section_roots: int
    """``NR_SECTION_ROOTS``: length of the mem_section root array."""
    present: int
    """``SECTION_MARKED_PRESENT`` mask."""
    has_mem_map: int
    """``SECTION_HAS_MEM_MAP`` mask."""
    map_mask: int
    """Mask that extracts the encoded mem_map from ``section_mem_map``."""


def section_geometry(prog: Program) -> SectionGeometry:
    """The snapshot's sparse-memory constants (cached)."""
    g = prog.cache.get("section_geometry")
    if g is not None:
        return g
    bits = prog.vmcoreinfo_number("NUMBER(SECTION_SIZE_BITS)", _DEFAULT_SECTION_SIZE_BITS)
    shift = bits - (prog.page_size.bit_length() - 1)
    ms_size = prog.vmcoreinfo_number("SIZE(mem_section)", prog.types.struct("mem_section").size)
    if not prog.page_size.bit_length() - 1 <= bits <= 52 or not 0 < ms_size <= prog.page_size:
        raise SnapshotError(f"impossible VMCOREINFO: SECTION_SIZE_BITS {bits}, SIZE(mem_section) {ms_size}")
    per_root = prog.page_size // ms_size
    try:
        roots = prog.vmcoreinfo_number("LENGTH(mem_section)")
    except KeyError:
        roots = (1 << (46 - bits)) // per_root  # NR_MEM_SECTIONS / SECTIONS_PER_ROOT
    if not 0 < roots <= 1 << (52 - bits):
        raise SnapshotError(f"impossible VMCOREINFO: LENGTH(mem_section) {roots} with SECTION_SIZE_BITS {bits}")
    flag = {}
    for name, default in _SECTION_BITS.items():
        try:
            flag[name] = 1 << prog.types.const(f"SECTION_{name}_BIT")
        except LookupError:
            flag[name] = 1 << default
    g = SectionGeometry(
        bits, shift, 1 << shift, per_root, roots, flag["MARKED_PRESENT"], flag["HAS_MEM_MAP"], _SECTION_MAP_MASK
    )
    prog.cache["section_geometry"] = g
    return g


def nr_to_section(prog: Program, nr: int) -> Object | None:
    """``__nr_to_section()``: the ``struct mem_section *`` of a section, or None if its root
    is not allocated."""
    g = section_geometry(prog)
    root_nr = nr // g.sections_per_root
    if root_nr >= g.nr_section_roots:
        return None
    roots = prog["mem_section"]
    root = roots[root_nr]
    if not root.value_():
        return None
    return root + nr % g.sections_per_root


class SectionInfo(NamedTuple):
    """A present memory section."""

    nr: int
    """Section number."""
    section: Object
    """``struct mem_section *``."""
    mem_map: int
    """Decoded mem_map: the ``struct page *`` of pfn 0 as seen from this section (vmemmap)."""
    start_pfn: int
    """First pfn of the section."""


def for_each_present_section(prog: Program) -> Iterator[SectionInfo]:
    """Every section with ``SECTION_MARKED_PRESENT``, up to ``__highest_present_section_nr``.

    Reads each root page once.
    """
    g = section_geometry(prog)
    highest = prog["__highest_present_section_nr"].value_()
    roots_addr = prog["mem_section"].value_()
    if not roots_addr:
        return
    nroots = min(g.nr_section_roots, highest // g.sections_per_root + 1)
    roots = prog.read(roots_addr, 8 * nroots)
    ms_t = prog.types.struct("mem_section")
    ms_ptr = prog.types.pointer_to(ms_t)
    ms_size = ms_t.size
    off_map = ms_t.offsetof("section_mem_map")
    for r in range(nroots):
        root = int.from_bytes(roots[8 * r : 8 * r + 8], "little")
        if not root:
            continue
        first = r * g.sections_per_root
        count = min(g.sections_per_root, highest + 1 - first)
        if count <= 0:
            break
        page = prog.read(root, count * ms_size)
        for i in range(count):
            smm = int.from_bytes(page[i * ms_size + off_map : i * ms_size + off_map + 8], "little")
            if smm & g.present:
                nr = first + i
                yield SectionInfo(
                    nr, Object(prog, ms_ptr, root + i * ms_size), smm & g.map_mask, nr << g.pfn_section_shift
                )


def present_section_nr(prog: Program) -> list[int]:
    """Numbers of the present sections."""
    return [s.nr for s in for_each_present_section(prog)]


def for_each_node_state(prog: Program, state: str | int) -> Iterator[int]:
    """Node ids set in ``node_states[state]`` (e.g. ``N_ONLINE``, ``N_MEMORY``)."""
    idx = prog.constant(state).value_() if isinstance(state, str) else int(state)
    mask = prog["node_states"][idx].bits
    nr_node_ids = prog["nr_node_ids"].value_()
    words = mask.value_()
    for nid in range(min(nr_node_ids, 64 * len(words))):  # (a corrupt count stays within the mask)
        if words[nid // 64] >> (nid % 64) & 1:
            yield nid


def for_each_online_node(prog: Program) -> Iterator[int]:
    """Online node ids (``node_states[N_ONLINE]``)."""
    return for_each_node_state(prog, "N_ONLINE")


def NODE_DATA(prog: Program, nid: int) -> Object:
    """The ``struct pglist_data *`` of a node.

    :return: ``struct pglist_data *``
    """
    return prog["node_data"][nid].read_()


def for_each_online_pgdat(prog: Program) -> Iterator[Object]:
    """``struct pglist_data *`` of every online node."""
    for nid in for_each_online_node(prog):
        yield NODE_DATA(prog, nid)


def for_each_zone(prog: Program) -> Iterator[Object]:
    """Every ``struct zone *`` of every online node (populated or not), like the kernel's
    ``for_each_zone``."""
    for pgdat in for_each_online_pgdat(prog):
        zones = pgdat.node_zones
        for i in range(len(zones)):
            yield zones[i].address_of_()


def for_each_populated_zone(prog: Program) -> Iterator[Object]:
    """Zones with ``present_pages`` > 0."""
    for zone in for_each_zone(prog):
        if zone.present_pages.value_():
            yield zone


def zone_idx(zone: Object) -> int:
    """Index of a zone in its node (``zone_idx()``, enum zone_type).

    :param zone: ``struct zone *``
    """
    pgdat = zone.zone_pgdat
    return (int(zone) - int(pgdat.node_zones.address_of_())) // zone.type_.resolved().target.size
