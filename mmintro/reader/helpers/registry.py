"""Every public helper, by topic: the one list that ``mmintro shell`` / ``mmintro run`` put in
scope, that ``helpers()`` prints, and that the tests run (each entry's example is a real call,
evaluated on a snapshot after :data:`EXAMPLE_SETUP`).

A helper named like one of drgn's (``drgn.helpers.linux.*``) takes the same arguments in the
same order; :attr:`Helper.differs` says where ours does not behave the same.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["EXAMPLE_SETUP", "HELPERS", "MODULES", "TOPICS", "Helper", "format_helpers", "namespace_names"]

#: The modules whose ``__all__`` the console puts in scope (helpers, their classes and constants).
MODULES = (
    "mmintro.reader",
    "mmintro.reader.columns",
    "mmintro.reader.helpers.list",
    "mmintro.reader.helpers.maple_tree",
    "mmintro.reader.helpers.mm",
    "mmintro.reader.helpers.mmzone",
    "mmintro.reader.helpers.percpu",
    "mmintro.reader.helpers.pgtable",
    "mmintro.reader.helpers.printk",
    "mmintro.reader.helpers.psi",
    "mmintro.reader.helpers.rmap",
    "mmintro.reader.helpers.shmem",
    "mmintro.reader.helpers.slab",
    "mmintro.reader.helpers.swap",
    "mmintro.reader.helpers.task",
    "mmintro.reader.helpers.vmalloc",
    "mmintro.reader.helpers.xarray",
)

#: Topic -> one line saying what it covers, in the order ``helpers()`` prints them.
TOPICS = {
    "mm": "pages, pfns and addresses (drgn.helpers.linux.mm)",
    "mmzone": "nodes, zones and memory sections",
    "percpu": "CPUs and per-CPU variables",
    "task": "tasks, their mms, VMAs and files",
    "list": "struct list_head",
    "maple_tree": "maple trees (mm->mm_mt)",
    "xarray": "XArrays (the page cache, the swap cache)",
    "rmap": "reverse mapping: who maps a page",
    "slab": "SLUB caches and objects",
    "vmalloc": "vmalloc areas",
    "swap": "swap devices and entries",
    "shmem": "shmem/tmpfs",
    "pgtable": "page-table scans (numpy)",
    "columns": "struct page fields for every pfn (numpy)",
    "psi": "pressure stall information",
    "printk": "the kernel log",
}

#: Names the examples use, each bound in order in the console's namespace before they run.
EXAMPLE_SETUP = (
    ("task", "find_task(prog, 1)"),
    ("mm", "task.mm"),
    ("heap", "mm.start_brk.value_()"),
    ("vma", "vma_find(mm, heap)"),
    ("page", "follow_page(mm, heap)"),
    (
        "file_vma",
        "next(v for v in for_each_vma(mm) if v.vm_file and v.vm_file.f_mapping.nrpages"
        " and not shmem_mapping(v.vm_file.f_mapping))",
    ),
    ("shm_vma", "next(v for v in for_each_vma(mm) if v.vm_file and shmem_mapping(v.vm_file.f_mapping))"),
    ("xa", "file_vma.vm_file.f_mapping.i_pages.address_of_()"),
    ("cache", 'find_slab_cache(prog, "kmalloc-192")'),
    ("obj", 'next(slab_cache_for_each_allocated_object(cache, "void"))'),
    ("slab", 'cast("struct slab *", virt_to_page(prog, obj))'),
    ("va", "next(for_each_vmap_area(prog)).va_start.value_()"),
    ("si", "swap_type_to_info(prog, 0)"),
    ("swap_pte", "0x7FFFFFFFFFFFC00"),
)


@dataclass(frozen=True)
class Helper:
    """One public helper."""

    name: str
    module: str  #: the module that defines it, e.g. ``mmintro.reader.helpers.mm``
    topic: str  #: a key of :data:`TOPICS`
    example: str  #: a call, evaluated after :data:`EXAMPLE_SETUP`
    drgn: str = ""  #: drgn's module with a helper of this name and signature, if any
    differs: str = ""  #: how ours differs from drgn's helper of the same name

    @property
    def function(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.name)

    @property
    def doc(self) -> str:
        """The first sentence of the docstring on one line (at most 100 characters), its
        reST markup (````x````, ``:func:`x```) left out."""
        text = " ".join((inspect.getdoc(self.function) or "").split())
        text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "")
        m = re.search(r"(?<!i\.e)(?<!e\.g)\.(\s+[A-Z(:]|$)|\s:param|\s:return", text)
        if m:
            text = text[: m.start() + (1 if text[m.start()] == "." else 0)]
        if len(text) > 100:
            text = text[: text.rfind(" ", 0, 97)] + " ..."
        return text

    @property
    def signature(self) -> str:
        sig = inspect.signature(self.function)
        params = []
        for p in sig.parameters.values():
            s = p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            if p.kind is inspect.Parameter.KEYWORD_ONLY and not any(x.startswith("*") for x in params):
                params.append("*")
            params.append(s)
        return f"{self.name}({', '.join(params)})"


_H = "mmintro.reader.helpers."
_D = "drgn.helpers.linux."


def _group(module: str, topic: str, drgn: str, rows: list[tuple]) -> list[Helper]:
    out = []
    for row in rows:
        name, example, *rest = row
        same = rest[0] if rest else True
        differs = rest[1] if len(rest) > 1 else ""
        out.append(
            Helper(
                name,
                module if "." in module else _H + module,
                topic,
                example,
                (drgn if same is True else same) if same else "",
                differs,
            )
        )
    return out


HELPERS: list[Helper] = [
    *_group(
        "mm",
        "mm",
        _D + "mm",
        [
            ("pfn_to_page", "pfn_to_page(prog, 0x1000)"),
            ("page_to_pfn", "page_to_pfn(page)"),
            ("page_to_phys", "page_to_phys(page)"),
            ("page_to_virt", "page_to_virt(page)"),
            ("pfn_to_virt", "pfn_to_virt(prog, 0x1000)"),
            ("phys_to_page", "phys_to_page(prog, 0x1000000)"),
            ("phys_to_virt", "phys_to_virt(prog, 0x1000000)"),
            ("virt_to_page", "virt_to_page(prog, phys_to_virt(prog, 0x1000000))"),
            ("virt_to_pfn", "virt_to_pfn(prog, phys_to_virt(prog, 0x1000000))"),
            ("virt_to_phys", "virt_to_phys(prog, phys_to_virt(prog, 0x1000000))"),
            ("PFN_PHYS", "PFN_PHYS(prog, 0x1000)"),
            ("PHYS_PFN", "PHYS_PFN(prog, 0x1000000)"),
            ("vmemmap", "vmemmap(prog)", False),
            ("for_each_page", "for_each_page(prog)"),
            ("totalram_pages", "totalram_pages(prog)"),
            ("follow_page", "follow_page(mm, heap)", True, "also takes prog for the kernel's page tables"),
            ("follow_pfn", "follow_pfn(mm, heap)", True, "also takes prog for the kernel's page tables"),
            ("follow_phys", "follow_phys(mm, heap)", True, "also takes prog for the kernel's page tables"),
            ("compound_head", "compound_head(page)"),
            ("compound_nr", "compound_nr(page)", True, "returns int (drgn: an unsigned long Object)"),
            ("compound_order", "compound_order(page)", True, "returns int (drgn: an unsigned int Object)"),
            ("get_page_flags", "get_page_flags(page)", False),
            ("decode_page_flags", "decode_page_flags(page)"),
            ("page_has_type", 'page_has_type(pfn_to_page(prog, 0x1000), "buddy")', False),
            ("PageBuddy", "PageBuddy(page)", False),
            ("PageCompound", "PageCompound(page)"),
            ("PageHead", "PageHead(page)"),
            ("PageLRU", "PageLRU(page)"),
            ("PageReserved", "PageReserved(pfn_to_page(prog, 0))"),
            ("PageSlab", "PageSlab(virt_to_page(prog, obj))"),
            ("PageTable", "PageTable(page)", False),
            ("PageTail", "PageTail(page)"),
        ],
    ),
    *_group(
        "mmzone",
        "mmzone",
        _D + "mmzone",
        [
            ("NODE_DATA", "NODE_DATA(prog, 0)"),
            ("for_each_online_node", "for_each_online_node(prog)", _D + "nodemask"),
            ("for_each_node_state", 'for_each_node_state(prog, prog["N_MEMORY"])', _D + "nodemask"),
            ("for_each_online_pgdat", "for_each_online_pgdat(prog)"),
            ("for_each_zone", "for_each_zone(prog)", False),
            ("for_each_populated_zone", "for_each_populated_zone(prog)", False),
            ("zone_idx", "zone_idx(next(for_each_populated_zone(prog)))", False),
            ("nr_to_section", "nr_to_section(prog, 0)"),
            ("for_each_present_section", "for_each_present_section(prog)", True, "yields SectionInfo, not Objects"),
            (
                "present_section_nr",
                "present_section_nr(prog)",
                True,
                "drgn's present_section_nr(prog, nr) tests one section; ours lists them all",
            ),
            ("section_geometry", "section_geometry(prog)", False),
        ],
    ),
    *_group(
        "percpu",
        "percpu",
        _D + "percpu",
        [
            ("for_each_online_cpu", "for_each_online_cpu(prog)", _D + "cpumask"),
            ("per_cpu_ptr", "per_cpu_ptr(NODE_DATA(prog, 0).node_zones[1].per_cpu_pageset, 0)"),
        ],
    )
    + _group("psi", "percpu", _D + "cpumask", [("for_each_possible_cpu", "for_each_possible_cpu(prog)")]),
    *_group(
        "task",
        "task",
        _D + "mm",
        [
            ("find_task", "find_task(prog, 1)", _D + "pid"),
            (
                "for_each_task",
                "for_each_task(prog)",
                _D + "pid",
                "idle=True by default (drgn: False): the idle tasks come first",
            ),
            ("for_each_vma", "for_each_vma(mm)"),
            ("vma_find", "vma_find(mm, heap)"),
            ("vma_name", "vma_name(file_vma)", True, "returns str (drgn: bytes)"),
            ("vma_is_anonymous", "vma_is_anonymous(vma)", False),
            ("task_rss", "task_rss(task)", True, "task_rss(task) (drgn: task_rss(prog, task))"),
            ("task_vsize", "task_vsize(task)"),
            ("get_mm_counter", 'get_mm_counter(mm, "MM_ANONPAGES")', False),
            ("get_mm_counter_sum", 'get_mm_counter_sum(mm, "MM_ANONPAGES")', False),
            ("percpu_counter_sum", "percpu_counter_sum(mm.rss_stat[0].address_of_())", _D + "percpu"),
            ("get_task_policy", "get_task_policy(task)", False),
            (
                "d_path",
                "d_path(file_vma.vm_file)",
                _D + "fs",
                "takes a struct file * or dentry * and returns str (drgn: a path or (vfsmount, dentry), bytes)",
            ),
            ("file_dev_ino", "file_dev_ino(file_vma.vm_file)", False),
            ("boot_cpu_has", "boot_cpu_has(prog, 0)", False),
            ("boot_cpu_has_bug", "boot_cpu_has_bug(prog, 0)", False),
        ],
    ),
    *_group(
        "list",
        "list",
        _D + "list",
        [
            ("list_empty", 'list_empty(prog["init_task"].tasks.address_of_())'),
            ("list_is_singular", 'list_is_singular(prog["init_task"].tasks.address_of_())'),
            ("list_count_nodes", 'list_count_nodes(prog["init_task"].tasks.address_of_())'),
            (
                "list_first_entry",
                'list_first_entry(prog["init_task"].tasks.address_of_(), "struct task_struct", "tasks")',
            ),
            ("list_for_each", 'list_for_each(prog["init_task"].tasks.address_of_())'),
            ("list_for_each_reverse", 'list_for_each_reverse(prog["init_task"].tasks.address_of_())'),
            (
                "list_for_each_entry",
                'list_for_each_entry("struct task_struct", prog["init_task"].tasks.address_of_(), "tasks")',
            ),
            (
                "list_for_each_entry_reverse",
                'list_for_each_entry_reverse("struct task_struct", prog["init_task"].tasks.address_of_(), "tasks")',
            ),
            ("validate_list_for_each", 'validate_list_for_each(prog["init_task"].tasks.address_of_())'),
            (
                "validate_list_for_each_entry",
                'validate_list_for_each_entry("struct task_struct", prog["init_task"].tasks.address_of_(), "tasks")',
            ),
        ],
    ),
    *_group(
        "maple_tree",
        "maple_tree",
        _D + "mapletree",
        [
            ("mt_for_each", "mt_for_each(mm.mm_mt.address_of_())"),
            ("mtree_load", "mtree_load(mm.mm_mt.address_of_(), heap)"),
            ("mt_height", "mt_height(mm.mm_mt.address_of_())", False),
            ("mt_validate", "mt_validate(mm.mm_mt.address_of_())", False),
        ],
    ),
    *_group(
        "xarray",
        "xarray",
        _D + "xarray",
        [
            ("xa_load", "xa_load(xa, 0)"),
            ("xa_for_each", "xa_for_each(xa)"),
            ("xa_for_each_marked", "list(xa_for_each_marked(xa, 0))", False),
            ("xa_get_mark", "xa_get_mark(xa, 0, 0)", False),
            ("xa_is_value", "xa_is_value(xa_load(xa, 0))"),
            ("xa_to_value", "xa_to_value(xa_load(xa, 0))"),
            ("xa_is_zero", "xa_is_zero(xa_load(xa, 0))"),
            ("xa_is_internal", "xa_is_internal(xa_load(xa, 0))", False),
            ("xa_is_sibling", "xa_is_sibling(xa_load(xa, 0))", False),
        ],
    ),
    *_group(
        "rmap",
        "rmap",
        "",
        [
            ("rmap_walk", "rmap_walk(page)", False),
            ("rmap_walk_pfn", "rmap_walk_pfn(prog, page_to_pfn(page))", False),
            ("mm_tasks", "mm_tasks(prog)", False),
        ],
    ),
    *_group(
        "slab",
        "slab",
        _D + "slab",
        [
            ("for_each_slab_cache", "for_each_slab_cache(prog)"),
            ("find_slab_cache", 'find_slab_cache(prog, "kmalloc-192")'),
            ("slab_cache_for_each_allocated_object", 'slab_cache_for_each_allocated_object(cache, "void")'),
            ("find_containing_slab_cache", "find_containing_slab_cache(prog, obj)"),
            ("slab_object_info", "slab_object_info(prog, obj)", True, "returns mmintro's SlabObjectInfo"),
            ("slab_cache_is_merged", "slab_cache_is_merged(cache)"),
            ("slab_cache_usage", "slab_cache_usage(cache)"),
            ("slab_total_usage", "slab_total_usage(prog)"),
            ("slab_cache_objects_per_slab", "slab_cache_objects_per_slab(cache)"),
            ("slab_cache_order", "slab_cache_order(cache)"),
            ("slab_cache_pages_per_slab", "slab_cache_pages_per_slab(cache)"),
            ("in_direct_map", "in_direct_map(prog, obj)", _D + "mm"),
            ("slab_cache_name", "slab_cache_name(cache)", False),
            ("get_slabinfo", "get_slabinfo(cache)", False),
            ("slab_cache_cpu_info", "slab_cache_cpu_info(cache)", False),
            ("slab_cache_node_info", "slab_cache_node_info(cache)", False),
            ("for_each_kmem_cache_node", "for_each_kmem_cache_node(cache)", False),
            ("slab_census", "slab_census(prog)", False),
            ("slab_address", "slab_address(slab)", False),
            ("slab_pfn", "slab_pfn(slab)", False),
        ],
    ),
    *_group(
        "vmalloc",
        "vmalloc",
        _D + "mm",
        [
            ("for_each_vmap_area", "for_each_vmap_area(prog)"),
            ("find_vmap_area", "find_vmap_area(prog, va)"),
            ("vmalloc_to_page", "vmalloc_to_page(prog, va)"),
            ("vmalloc_to_pfn", "vmalloc_to_pfn(prog, va)"),
            ("find_vm_area", "find_vm_area(prog, va)", False),
            ("for_each_lazy_vmap_area", "list(for_each_lazy_vmap_area(prog))", False),
            ("is_vmalloc_addr", "is_vmalloc_addr(prog, va)", False),
            ("VMALLOC_START", "VMALLOC_START(prog)", False),
            ("VMALLOC_END", "VMALLOC_END(prog)", False),
            ("addr_to_node_id", "addr_to_node_id(prog, va)", False),
            ("nr_vmap_nodes", "nr_vmap_nodes(prog)", False),
            ("vmap_node", "vmap_node(prog, 0)", False),
            ("vmalloc_nr_pages", "vmalloc_nr_pages(prog)", False),
            ("gather_virt_u64", "gather_virt_u64(prog, np.array([va], dtype=np.uint64))", False),
        ],
    ),
    *_group(
        "swap",
        "swap",
        _D + "swap",
        [
            ("for_each_swap_info", "for_each_swap_info(prog)"),
            ("swap_usage_in_pages", "swap_usage_in_pages(si)"),
            ("swap_file_path", "swap_file_path(si)", True, "returns str (drgn: bytes)"),
            ("swap_type_to_info", "swap_type_to_info(prog, 0)", False),
            ("swap_is_blkdev", "swap_is_blkdev(si)", False),
            ("max_swapfiles", "max_swapfiles(prog)", False),
            ("swapfile_cluster", "swapfile_cluster(prog)", False),
            ("swap_map", "swap_map(si)", False),
            ("swap_cache_folios", "swap_cache_folios(si)", False),
            ("is_swap_pte", "is_swap_pte(swap_pte)", False),
            ("pte_to_swp_entry", "pte_to_swp_entry(swap_pte)", False),
            ("swp_entries", "swp_entries(np.array([swap_pte], dtype=np.uint64))", False),
            ("swp_swapcount", "swp_swapcount(prog, 0, 1)", False),
            ("swp_swapcounts", "swp_swapcounts(prog, np.array([0]), np.array([1]))", False),
            ("swap_entry_info", "swap_entry_info(prog, swap_pte)", False),
        ],
    ),
    *_group(
        "shmem",
        "shmem",
        "",
        [
            ("shmem_mapping", "shmem_mapping(shm_vma.vm_file.f_mapping)", False),
            ("SHMEM_I", "SHMEM_I(shm_vma.vm_file.f_inode)", False),
            ("shmem_swap_usage", "shmem_swap_usage(shm_vma)", False),
            ("shmem_partial_swap_usage", "shmem_partial_swap_usage(shm_vma.vm_file.f_mapping, 0, 64)", False),
            ("shmem_swap_indices", "shmem_swap_indices(shm_vma.vm_file.f_mapping)", False),
        ],
    ),
    *_group(
        "pgtable",
        "pgtable",
        "",
        [
            ("scan_mm", "scan_mm(mm)", False),
            ("mm_pgd_phys", "mm_pgd_phys(mm)", False),
            ("scan_page_tables", "scan_page_tables(prog, mm_pgd_phys(mm))", False),
            ("page_columns", "page_columns(prog, np.arange(16))", False),
            ("vmemmap_translator", "vmemmap_translator(prog)", False),
            ("entry_dirty", "entry_dirty(scan_mm(mm).entry)", False),
            ("entry_young", "entry_young(scan_mm(mm).entry)", False),
        ],
    ),
    *_group(
        "mmintro.reader.columns",
        "columns",
        "",
        [
            ("page_array", "page_array(prog)", False),
            ("page_dtype", "page_dtype(prog)", False),
            ("present_pfn_mask", "present_pfn_mask(prog)", False),
        ],
    ),
    *_group(
        "psi",
        "psi",
        "",
        [
            ("psi_show", "psi_show(prog)", False),
            ("psi_books", "psi_books(prog)", False),
            ("aggregate", "aggregate(prog, psi_books(prog))", False),
            ("dump_clock", "dump_clock(prog)", False),
            ("calc_load", "calc_load(0, 1884, 2048)", False),
            ("calc_load_n", "calc_load_n(0, 1884, 2048, 3)", False),
            ("fixed_power_int", "fixed_power_int(1884, 11, 3)", False),
        ],
    ),
    *_group("printk", "printk", "", [("dmesg_records", "dmesg_records(prog)", False)]),
]


def namespace_names() -> dict[str, Any]:
    """Every public name of :data:`MODULES` (helpers, their classes and constants)."""
    ns: dict[str, Any] = {}
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        ns.update({name: getattr(mod, name) for name in mod.__all__})
    return ns


def format_helpers(topic: str | None = None, *, markdown: bool = False) -> str:
    """The helpers by topic, each with its signature and the first sentence of its docstring
    (``markdown``: a list for the documentation, with the examples)."""
    lines: list[str] = []
    topics = [topic] if topic else list(TOPICS)
    if topic and topic not in TOPICS:
        raise ValueError(f"no topic {topic!r}; topics: {', '.join(TOPICS)}")
    for t in topics:
        rows = [h for h in HELPERS if h.topic == t]
        if markdown:
            lines.append(f"### {t}: {TOPICS[t]}\n")
            for h in rows:
                note = f" (drgn: `{h.drgn}`{'; ' + h.differs if h.differs else ''})" if h.drgn else ""
                lines.append(f"- `{h.signature}`: {h.doc}{note} Example: `{h.example}`")
            lines.append("")
        else:
            lines.append(f"{t}: {TOPICS[t]}")
            for h in rows:
                lines.append(f"  {h.signature}")
                if h.doc:
                    lines.append(f"      {h.doc}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # python -m mmintro.reader.helpers.registry: the list for the documentation
    print(format_helpers(markdown=True), end="")
