"""The per-CPU first chunk (mm/percpu.c, arch/x86/kernel/setup_percpu.c).

x86-64's setup_per_cpu_areas() embeds the first chunk in the direct map:
pcpu_embed_first_chunk(PERCPU_FIRST_CHUNK_RESERVE, PERCPU_DYNAMIC_RESERVE, PMD_SIZE, ...).
pcpu_build_alloc_info() sizes a unit (the static template + the module reserve + the dynamic
reserve, page aligned: ``size_sum``), groups the CPUs by node (LOCAL_DISTANCE), and picks how
many units share one PMD-sized allocation so that at most a third of the units are wasted.
Each group's units come from memblock on the group's node; the part of each unit past
``size_sum``, and every unit no CPU uses, goes straight back to memblock.  So the first chunk
keeps ``size_sum`` bytes per CPU ("percpu: Embedded N pages/cpu s.. r.. d.. u..").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SIZE

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

PERCPU_MODULE_RESERVE = 8 << 10  # include/linux/percpu.h, CONFIG_MODULES
PERCPU_FIRST_CHUNK_RESERVE = PERCPU_MODULE_RESERVE
PERCPU_DYNAMIC_EARLY_SIZE = 20 << 10
PERCPU_DYNAMIC_RESERVE = 28 << 10  # 64-bit
PCPU_MIN_UNIT_SIZE = 32 << 10
PMD_SIZE = 2 << 20
MAX_DMA_ADDRESS = 16 << 20  # pcpu_fc_alloc()'s goal: __pa(MAX_DMA_ADDRESS)
LOCAL_DISTANCE = 10


def _pfn_align(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


@dataclass
class AllocInfo:
    """struct pcpu_alloc_info: sizes, and per group its CPUs (None: an unused unit)."""

    static_size: int
    reserved_size: int
    dyn_size: int
    unit_size: int
    atom_size: int
    alloc_size: int
    groups: list[list[int | None]] = field(default_factory=list)

    @property
    def size_sum(self) -> int:
        return self.static_size + self.reserved_size + self.dyn_size


def pcpu_build_alloc_info(
    static_size: int, reserved_size: int, dyn_size: int, atom_size: int, distance
) -> tuple[AllocInfo, int]:
    """pcpu_build_alloc_info(): the first chunk's geometry for CPUs 0..n-1, grouped by
    ``distance(a, b) == LOCAL_DISTANCE`` (``distance``: a list of CPU distance rows).
    Returns the info and units per allocation (upa)."""
    size_sum = _pfn_align(static_size + reserved_size + max(dyn_size, PERCPU_DYNAMIC_EARLY_SIZE))
    dyn_size = size_sum - static_size - reserved_size
    min_unit_size = max(size_sum, PCPU_MIN_UNIT_SIZE)
    alloc_size = -(-min_unit_size // atom_size) * atom_size
    upa = alloc_size // min_unit_size
    while alloc_size % upa or (alloc_size // upa) % PAGE_SIZE:
        upa -= 1
    max_upa = upa
    ncpus = len(distance)
    group_of: dict[int, int] = {}
    members: list[list[int]] = []
    for cpu in range(ncpus):  # group cpus according to their proximity
        if cpu in group_of:
            continue
        g = len(members)
        group_of[cpu] = g
        members.append([cpu])
        for tcpu in range(cpu + 1, ncpus):
            if tcpu not in group_of and distance[cpu][tcpu] == LOCAL_DISTANCE == distance[tcpu][cpu]:
                group_of[tcpu] = g
                members[g].append(tcpu)
    last_allocs, best_upa = None, 0
    for upa in range(max_upa, 0, -1):
        if alloc_size % upa or (alloc_size // upa) % PAGE_SIZE:
            continue
        allocs = sum(-(-len(m) // upa) for m in members)
        wasted = sum(-(-len(m) // upa) * upa - len(m) for m in members)
        if wasted > ncpus // 3:  # don't accept if wastage is over 1/3
            continue
        if last_allocs is not None and allocs > last_allocs:  # and then don't consume more memory
            break
        last_allocs, best_upa = allocs, upa
    ai = AllocInfo(static_size, reserved_size, dyn_size, alloc_size // best_upa, atom_size, alloc_size)
    for m in members:
        n = -(-len(m) // best_upa) * best_upa
        ai.groups.append(list(m) + [None] * (n - len(m)))
    return ai, best_upa


def pcpu_embed_first_chunk(k: Kernel, static_size: int) -> tuple[AllocInfo, dict[int, int], int]:
    """pcpu_embed_first_chunk(PERCPU_FIRST_CHUNK_RESERVE, PERCPU_DYNAMIC_RESERVE, PMD_SIZE,
    pcpu_cpu_distance, pcpu_cpu_to_node): each group's units from memblock on the node of its
    first CPU, then the unused parts freed.  Returns the info, each CPU's unit (physical
    address) and the base (the lowest group's address)."""
    cpus = k.config.cpus
    nodes = [k.cpu_to_node(c) for c in range(cpus)]
    dist = [[k.numa_distance_of(nodes[a], nodes[b]) for b in range(cpus)] for a in range(cpus)]
    ai, _upa = pcpu_build_alloc_info(static_size, PERCPU_FIRST_CHUNK_RESERVE, PERCPU_DYNAMIC_RESERVE, PMD_SIZE, dist)
    areas = []
    for units in ai.groups:
        first = next(c for c in units if c is not None)
        areas.append(
            k.memblock.alloc(len(units) * ai.unit_size, ai.atom_size, nid=nodes[first], min_addr=MAX_DMA_ADDRESS)
        )
    unit_of: dict[int, int] = {}
    for units, area in zip(ai.groups, areas):
        for i, cpu in enumerate(units):
            ptr = area + i * ai.unit_size
            if cpu is None:  # unused unit, free whole
                k.memblock.free(ptr, ai.unit_size)
                continue
            unit_of[cpu] = ptr  # copy (the template is placed later) and return the unused part
            k.memblock.free(ptr + ai.size_sum, ai.unit_size - ai.size_sum)
    return ai, unit_of, min(areas)


def pcpu_dump_alloc_info(k: Kernel, ai: AllocInfo) -> None:
    """The boot log's lines: pcpu_embed_first_chunk()'s "percpu: Embedded ..." and
    pcpu_dump_alloc_info()'s (groups and their units, ``-`` for an unused one; one line for
    up to 60 columns' worth of allocations)."""
    k.printk(
        6,
        f"percpu: Embedded {ai.size_sum >> 12} pages/cpu s{ai.static_size} r{ai.reserved_size} "
        f"d{ai.dyn_size} u{ai.unit_size}",
    )
    upa = ai.alloc_size // ai.unit_size
    cpu_width = len(str(k.config.cpus))
    group_width = len(str(len(ai.groups)))
    width = upa * (cpu_width + 1) + group_width + 3
    apl = 1 << (max(60 // width, 1).bit_length() - 1)  # rounddown_pow_of_two
    lines = [
        f"pcpu-alloc: s{ai.static_size} r{ai.reserved_size} d{ai.dyn_size} u{ai.unit_size} "
        f"alloc={ai.alloc_size // ai.atom_size}*{ai.atom_size}"
    ]
    alloc = 0
    for g, units in enumerate(ai.groups):
        for start in range(0, len(units), upa):
            if alloc % apl == 0:
                lines.append("pcpu-alloc: ")
            lines[-1] += f"[{g:0{group_width}}] "
            for c in units[start : start + upa]:
                lines[-1] += ("-" * cpu_width if c is None else f"{c:0{cpu_width}}") + " "
            alloc += 1
    k.printk(6, "\n".join(lines))
