"""The VMCOREINFO note text (kernel/vmcore_info.c: crash_save_vmcoreinfo_init, and
arch/x86/kernel/machine_kexec_64.c: arch_crash_save_vmcoreinfo), with the formats of the
VMCOREINFO_* macros.  Sizes, offsets and numbers come from the type data.

Left out, because the simulated kernel has no such data: init_uts_ns, the printk ring
buffer (log_buf_vmcoreinfo_setup) and the kallsyms tables (symbols live in NAME.vmlinux).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch import x86
from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def vmcoreinfo(k: Kernel, build_id: bytes, crashtime: int = 0) -> str:
    T = k.T
    lines: list[str] = []
    add = lines.append

    def symbol(name: str, value: int | None = None) -> None:
        add(f"SYMBOL({name})={value if value is not None else k.sym(name):x}")

    def size(name: str, tname: str) -> None:
        add(f"SIZE({name})={T.sizeof(tname)}")

    def offset(st: str, member: str) -> None:
        add(f"OFFSET({st}.{member})={T.struct(st).offsetof(member)}")

    def number(name: str, v: int) -> None:
        add(f"NUMBER({name})={v}")

    def int_number(name: str, v: int) -> None:
        # (PGTY_x << 24) is an int expression: it wraps negative before %ld prints it.
        v &= 0xFFFFFFFF
        number(name, v - (1 << 32) if v >> 31 else v)

    add(f"OSRELEASE={kc.OSRELEASE}")
    add(f"BUILD-ID={build_id.hex()}")
    add(f"PAGESIZE={x86.PAGE_SIZE}")
    symbol("node_online_map", k.sym("node_states") + T.sizeof("nodemask_t") * T.const("N_ONLINE"))
    symbol("swapper_pg_dir")
    symbol("_stext")
    add(f"NUMBER(VMALLOC_START)=0x{k.vmalloc_base:x}")
    symbol("vmemmap", k.vmemmap_base)
    symbol("mem_section", k.mem_section_roots)
    add(f"LENGTH(mem_section)={k.nr_section_roots}")
    size("mem_section", "struct mem_section")
    offset("mem_section", "section_mem_map")
    number("SECTION_SIZE_BITS", x86.SECTION_SIZE_BITS)
    number("MAX_PHYSMEM_BITS", x86.MAX_PHYSMEM_BITS)
    for st in ("page", "pglist_data", "zone", "free_area", "list_head"):
        size(st, f"struct {st}")
    size("nodemask_t", "nodemask_t")
    for m in ("flags", "_refcount", "mapping", "lru", "_mapcount", "private", "compound_head"):
        offset("page", m)
    for m in ("node_zones", "nr_zones", "node_start_pfn", "node_spanned_pages", "node_id"):
        offset("pglist_data", m)
    for m in ("free_area", "vm_stat", "spanned_pages"):
        offset("zone", m)
    offset("free_area", "free_list")
    offset("list_head", "next")
    offset("list_head", "prev")
    add(f"LENGTH(zone.free_area)={kc.NR_PAGE_ORDERS}")
    add(f"LENGTH(free_area.free_list)={T.const('MIGRATE_TYPES')}")
    number("NR_FREE_PAGES", T.const("NR_FREE_PAGES"))
    for f in ("PG_lru", "PG_private", "PG_swapcache", "PG_swapbacked"):
        number(f, T.const(f))
    int_number("PAGE_SLAB_MAPCOUNT_VALUE", T.const("PGTY_slab") << 24)
    number("PG_head_mask", 1 << T.const("PG_head"))
    int_number("PAGE_BUDDY_MAPCOUNT_VALUE", T.const("PGTY_buddy") << 24)
    int_number("PAGE_HUGETLB_MAPCOUNT_VALUE", T.const("PGTY_hugetlb") << 24)
    int_number("PAGE_OFFLINE_MAPCOUNT_VALUE", T.const("PGTY_offline") << 24)
    # arch_crash_save_vmcoreinfo()
    number("phys_base", k.phys_base)
    symbol("init_top_pgt")
    number("pgtable_l5_enabled", 0)
    symbol("node_data")
    add(f"LENGTH(node_data)={kc.MAX_NUMNODES}")
    add("KERNELOFFSET=0")
    number("KERNEL_IMAGE_SIZE", x86.KERNEL_IMAGE_SIZE)
    add(f"CRASHTIME={crashtime}")
    return "\n".join(lines) + "\n"
