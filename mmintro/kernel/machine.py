"""A simulated x86-64 PC booting Linux 6.18's memory manager (init/main.c, arch/x86/kernel/setup.c).

``boot(config)`` runs the early-boot sequence on simulated physical memory:

    setup_arch      e820 map, memblock, kernel image, NUMA node ranges
    init_mem_mapping  the direct map in swapper_pg_dir
    setup_per_cpu_areas   the embedded first per-CPU chunk
    alloc_node_data  a pglist_data per node
    sparse_init      mem_section, usage maps, memory maps in the vmemmap
    free_area_init   zones, memmap_init (every struct page)
    mem_init         memblock_free_all: free memory to the buddy lists
    init_per_zone_wmark_min, pagesets, e820__reserve_resources (/proc/iomem)

and leaves a :class:`Kernel` whose memory a snapshot writer can store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from mmintro.arch import x86
from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE, START_KERNEL_MAP
from mmintro.kernel import config as kc
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.e820 import E820_NAMES, E820_TYPE_ACPI, E820_TYPE_RAM, build_e820
from mmintro.kernel.init_64 import (
    PG_LEVEL_1G,
    PG_LEVEL_2M,
    DirectMapper,
    PageTables,
    init_direct_map,
    map_kernel_image,
    pagetable_alloc_kernel,
    write_direct_pages_count,
)
from mmintro.kernel.kimage import LOAD_PHYSICAL_ADDR, KernelImage
from mmintro.kernel.kobj import KMem
from mmintro.kernel.memblock import Memblock
from mmintro.kernel.physmem import PhysMem
from mmintro.types import TypeDB, get_types

Progress = Callable[[str, float], None]

ZONE_NAMES = ["DMA", "DMA32", "Normal", "Movable", "Device"]
# getattr: a dunder name written inside a class body would be name-mangled.
_ALLOC_PAGES = getattr(page_alloc, "__alloc_pages")
_FREE_PAGES = getattr(page_alloc, "__free_pages")
MAX_DMA_PFN = (16 << 20) >> PAGE_SHIFT
MAX_DMA32_PFN = (4 << 30) >> PAGE_SHIFT


class Kernel:
    """The state of a booted simulated kernel: memory, symbols and the allocator's books."""

    x86 = x86

    def __init__(self, config: MachineConfig, types: TypeDB | None = None) -> None:
        config.validate()
        self.config = config
        self.T = types or get_types()
        self.mem = PhysMem()
        self.memblock = Memblock()
        # Where the image was loaded (a relocated kernel's phys_base: _text's physical address
        # minus the link-time one); the build's section layout.
        self.phys_base = (config.kernel_phys - LOAD_PHYSICAL_ADDR) if config.kernel_phys is not None else 0
        self.page_offset_base = x86.PAGE_OFFSET_BASE_L4
        self.vmalloc_base = x86.VMALLOC_BASE_L4
        self.vmemmap_base = x86.VMEMMAP_BASE_L4
        self.image = KernelImage(self.T, self.phys_base, config.kernel_layout)
        self.kmem = KMem(self.T, self.mem, self.pa)
        self.struct_page_size = self.T.sizeof("struct page")
        self.pageblock_nr_pages = 1 << kc.PAGEBLOCK_ORDER
        self.NR_PAGEBLOCK_BITS = kc.NR_PAGEBLOCK_BITS
        # The memory map, per present section (sparse.populate_section_memmap): its storage,
        # runs of identical struct pages until written in bulk (compact_memmap; False: numpy
        # arrays from the start, the same bytes), and its word views for the allocator.
        self.compact_memmap = True
        self.memmap_store: dict = {}  # section nr -> memmap_store.SectionMemmap
        self.memmap_words: dict[int, tuple] = {}  # section nr -> (u64 words, u32 words, base, array)
        self.section_usage: dict[int, int] = {}
        self.present_sections: dict[int, int] = {}
        self.zones: list[list] = []  # [nid][zone_idx] -> ZoneState
        self.pgdat: list[int] = []
        self.node_order: dict[int, list[int]] = {}  # nid -> fallback node order
        self.zonelist: dict[int, list[list]] = {}  # nid -> [ZONELIST_FALLBACK, ZONELIST_NOFALLBACK] zones
        self.node_stats_ptr: dict[int, int] = {}  # nid -> __percpu per_cpu_nodestat
        self.node_vm_stat: list[dict[str, int]] = [{} for _ in range(config.nodes)]  # node_stat_item books
        self.log: list[str] = []  # the kernel log's text, line by line (printk)
        self.printk_records: list = []  # printk.Record: written into the printk ring buffer at sync
        self.clock_ns = 0  # the simulated clock (local_clock), advanced by each printk
        # The page allocator's run-time books (mmintro.kernel.page_alloc).
        self.current_cpu = 0
        self.vm_events = [[0] * self.T.const("NR_VM_EVENT_ITEMS") for _ in range(config.cpus)]
        self.allocations: dict[int, int] = {}  # first pfn -> order of every block handed out
        self.alloc_failures: list = []  # page_alloc.AllocFailure, in order
        self.alloc_context_cache: dict = {}
        self.sync_hooks: list[Callable[[Kernel], None]] = []  # subsystems' book writers, run by sync()
        self.il_prev: dict[int, int] = {}  # mempolicy interleave position, per CPU's task
        self.extfrag_events = 0  # fallbacks into another migratetype's block (mm_page_alloc_extfrag)
        self.rng = np.random.default_rng(config.seed)

    # -- address translation (the simulator knows its own mappings) ---------------------
    def pa(self, vaddr: int) -> int:
        if vaddr >= START_KERNEL_MAP:
            return vaddr - START_KERNEL_MAP + self.phys_base
        if self.vmemmap_base <= vaddr < self.vmemmap_base + (1 << 40):
            off = vaddr - self.vmemmap_base
            pfn = off // self.struct_page_size
            nr = pfn >> (27 - PAGE_SHIFT)
            return self.section_memmap[nr] + off - (nr << (27 - PAGE_SHIFT)) * self.struct_page_size
        if self.page_offset_base <= vaddr < self.page_offset_base + (1 << 46):
            return vaddr - self.page_offset_base
        if self.vmalloc_base <= vaddr < self.vmalloc_base + (32 << 40) and getattr(self, "after_bootmem", False):
            return self.pt.virt_to_phys(vaddr)  # vmalloc/ioremap space: through init_mm's tables
        raise ValueError(f"simulator: no mapping for {vaddr:#x}")

    def phys_to_virt(self, paddr: int) -> int:
        return paddr + self.page_offset_base

    def sym(self, name: str) -> int:
        return self.image.symbols[name].address

    def pfn_to_page(self, pfn: int) -> int:
        return self.vmemmap_base + pfn * self.struct_page_size

    # -- the running kernel ---------------------------------------------------------------
    def numa_node_id(self) -> int:
        return self.cpu_to_node(self.current_cpu)

    def current_comm(self) -> str:
        """The comm of the task on the current CPU: its idle task until tasks exist."""
        return f"swapper/{self.current_cpu}"

    def mod_node_page_state(self, nid: int, item: str, delta: int) -> None:
        """mod_node_page_state(NODE_DATA(nid), item, delta): ``item`` a node_stat_item name
        (e.g. "NR_SLAB_UNRECLAIMABLE_B", in bytes for the _B items, else pages)."""
        d = self.node_vm_stat[nid]
        d[item] = d.get(item, 0) + delta

    def mod_zone_page_state(self, zone, item: str, delta: int) -> None:
        """mod_zone_page_state(zone, item, delta) for the zone_stat_items the allocator does
        not keep itself (NR_FREE_PAGES is kept by page_alloc)."""
        zone.vm_stat[item] = zone.vm_stat.get(item, 0) + delta

    def current_pid(self) -> int:
        """The pid of the task on the current CPU (its idle task: 0)."""
        return 0

    def printk(self, level: int, text: str) -> None:
        """printk() at ``level`` (KERN_WARNING = 4, KERN_INFO = 6): into the log and, at
        sync, the snapshot's printk ring buffer (drgn's get_dmesg, crash's log)."""
        from mmintro.kernel import printk

        printk.printk(self, level, text)
        self.log.extend(text.splitlines())

    def on_cpu(self, cpu: int) -> None:
        """Run what follows on ``cpu`` (its pagesets, its node, its vm events)."""
        if not 0 <= cpu < self.config.cpus:
            raise ValueError(f"cpu {cpu} is not online (the machine has {self.config.cpus})")
        self.current_cpu = cpu

    def alloc_pages(
        self, gfp: int | str, order: int = 0, nid: int | None = None, nodemask: frozenset[int] | None = None
    ) -> int | None:
        """__alloc_pages(gfp, order, nid or numa_node_id(), nodemask): the first pfn, or
        None after a warn_alloc report in ``self.alloc_failures`` (and the log)."""
        mask = gfp if type(gfp) is int else G.parse_gfp(gfp)
        if not 0 <= order <= page_alloc.MAX_PAGE_ORDER:
            raise ValueError(f"order {order} is outside 0..{page_alloc.MAX_PAGE_ORDER}")
        if nid is not None and not 0 <= nid < self.config.nodes:
            raise ValueError(f"node {nid} does not exist (the machine has {self.config.nodes})")
        return _ALLOC_PAGES(self, mask, order, nid, nodemask)

    def alloc_pages_interleave(
        self, gfp: int | str, order: int = 0, nodes: tuple[int, ...] | None = None
    ) -> int | None:
        """alloc_pages_mpol() under MPOL_INTERLEAVE over ``nodes`` (default: every node)."""
        from mmintro.kernel import mempolicy

        mask = gfp if type(gfp) is int else G.parse_gfp(gfp)
        nodes = tuple(range(self.config.nodes)) if nodes is None else tuple(nodes)
        if not nodes or any(not 0 <= n < self.config.nodes for n in nodes):
            raise ValueError(f"interleave nodes {nodes} are not all nodes of this machine")
        return mempolicy.alloc_pages_interleave(self, mask, order, nodes)

    def free_pages(self, pfn: int, order: int = 0) -> None:
        """__free_pages(pfn_to_page(pfn), order)."""
        _FREE_PAGES(self, pfn, order)

    # -- boot ------------------------------------------------------------------------------
    def boot(self, progress: Progress | None = None) -> Kernel:
        from mmintro.kernel import mm_init, page_alloc, resource, sparse

        step = progress or (lambda _msg, _frac: None)
        step("setup_arch: e820, memblock, kernel image", 0.0)
        self.setup_arch()
        self.boot_messages_setup_arch()
        step("init_mem_mapping: direct map", 0.1)
        self.init_mem_mapping()
        self.reserve_initrd()
        step("initmem_init: node data", 0.15)
        self.alloc_node_data()
        from mmintro.kernel import hugetlb

        hugetlb.hugetlb_bootmem_alloc(self)  # setup_arch(): 1 GiB hugetlb pages from memblock
        from mmintro.kernel import vsyscall

        vsyscall.map_vsyscall(self)  # setup_arch(): the gate VMA ([vsyscall], vsyscall=xonly)
        step("sparse_init: mem_section and the vmemmap", 0.25)
        sparse.sparse_init(self)  # paging_init()
        step("free_area_init: zones and struct pages", 0.35)
        mm_init.free_area_init(self)
        mm_init.calc_nr_kernel_pages(self)
        # start_kernel() after setup_arch(): the per-CPU areas, then the early hash tables.
        step("setup_per_cpu_areas", 0.45)
        from mmintro.kernel import cmdline

        cmdline.setup_command_line(self)  # saved_command_line, from memblock
        self.setup_per_cpu_areas()
        cmdline.print_command_line(self)  # "Kernel command line:", print_unknown_bootoptions()
        mm_init.vfs_caches_init_early(self)
        step("init_task and the idle tasks", 0.5)
        from mmintro.kernel import init_task

        init_task.init_tasks(self)
        from mmintro.kernel import psi

        psi.psi_init(self)  # sched_init() ends with psi_init()
        step("e820__reserve_resources: /proc/iomem", 0.55)
        resource.e820_reserve_resources(self)
        from mmintro.kernel import init_64, slub, swiotlb, vmalloc

        swiotlb.swiotlb_init(self)  # mm_core_init() -> arch_mm_preinit() -> pci_iommu_alloc()
        step("mem_init: memblock_free_all to the buddy allocator", 0.6)
        page_alloc.memblock_free_all(self)
        self.boot_messages_mem_init()
        step("watermarks, lowmem_reserve, pagesets", 0.8)
        page_alloc.init_per_zone_wmark_min(self)
        page_alloc.setup_zone_pagesets(self)
        with slub.boot_pagesets(self):  # start_kernel() -> arch_cpu_finalize_init()
            init_64.alternative_instructions(self)
        step("kmem_cache_init: SLUB and the kmalloc caches", 0.85)
        with slub.boot_pagesets(self):  # x86 mem_init() right after memblock_free_all()
            init_64.mem_init(self)
        slub.kmem_cache_init(self)
        init_task.fork_init_max_threads(self)  # start_kernel() -> fork_init()
        from mmintro.kernel import mmap

        mmap.mmap_init(self)  # mm_core_init(); mm_compute_batch_init() (core_initcall)
        step("vmalloc_init", 0.88)
        with slub.boot_pagesets(self):  # mm_core_init() runs before setup_per_cpu_pageset()
            vmalloc.vmalloc_init(self)
        from mmintro.kernel import bdev

        bdev.bdev_cache_init(self)  # vfs_caches_init()
        from mmintro.kernel import huge_memory

        hugetlb.hugetlb_init(self)  # subsys_initcall(hugetlb_init), fs_initcall(init_hugetlbfs_fs)
        huge_memory.hugepage_init(self)  # subsys_initcall(hugepage_init)
        from mmintro.kernel import compaction

        compaction.kcompactd_init(self)  # subsys_initcall(kcompactd_init)
        swiotlb.swiotlb_print_info(self)  # rootfs_initcall(pci_iommu_init)
        init_64.free_initrd_mem(self)  # rootfs_initcall(populate_rootfs)
        from mmintro.kernel import memremap

        memremap.e820_pmem_probe(self)  # device_initcall(register_e820_pmem), nd_e820, nd_pmem
        from mmintro.kernel import inode

        inode.vfs_root(self)  # kernel_init() -> prepare_namespace(): mount_root
        step("free_initmem, mark_rodata_ro", 0.89)
        init_64.free_initmem(self)  # kernel_init(), after the initcalls
        init_64.mark_rodata_ro(self)
        cmdline.do_sysctl_args(self)  # kernel_init(): sysctl.vm.*= boot parameters
        step("vmstat", 0.9)
        self.sync()
        self.booted = True
        step("booted", 1.0)
        return self

    def sync(self) -> None:
        """Write the allocator's books (free lists, counters) into simulated memory."""
        from mmintro.kernel import page_alloc, vmstat

        for text, addr in self.image.strings().items():
            self.kmem.write_bytes(addr, text.encode() + b"\0")
        for hook in self.sync_hooks:
            hook(self)
        page_alloc.write_free_lists(self)
        vmstat.refresh(self)

    def boot_messages_setup_arch(self) -> None:
        """The first lines of a boot log: the banner, the command line, the firmware memory map
        and the one mem=/memmap= made (init/main.c linux_banner, arch/x86/kernel/setup.c,
        arch/x86/kernel/e820.c e820__print_table)."""
        from mmintro.kernel.e820 import e820_print_table
        from mmintro.kernel.version import linux_banner

        self.printk(5, linux_banner().rstrip("\n"))
        self.printk(6, f"Command line: {self.config.cmdline}")
        lines = ["BIOS-provided physical RAM map:"] + e820_print_table(self.e820_firmware, "BIOS-e820")
        self.printk(6, "\n".join(lines))
        for level, line in self.e820_user_lines:
            self.printk(level, line)

    def boot_messages_mem_init(self) -> None:
        """build_all_zonelists()'s and mem_init_print_info()'s lines."""
        total = sum(z.present for zs in self.zones for z in zs)
        self.printk(6, f"Built {self.config.nodes} zonelists, mobility grouping on.  Total pages: {total}")
        free = sum(z.free_pages for zs in self.zones for z in zs)
        kb = lambda pages: pages << (PAGE_SHIFT - 10)
        # mm/mm_init.c mem_init_print_info(): the image's section sizes from the linker symbols
        # (no section is embedded in another here, so adj_init_size() changes nothing), and
        # "reserved" = physpages - totalram_pages - totalcma_pages
        sym = lambda a, b: (self.sym(b) - self.sym(a)) >> 10
        totalram = sum(z.managed for zs in self.zones for z in zs)
        self.printk(
            6,
            f"Memory: {kb(free)}K/{kb(total)}K available ({sym('_stext', '_etext')}K kernel code, "
            f"{sym('_sdata', '_edata')}K rwdata, {sym('__start_rodata', '__end_rodata')}K rodata, "
            f"{sym('__init_begin', '__init_end')}K init, {sym('__bss_start', '__bss_stop')}K bss, "
            f"{kb(total - totalram)}K reserved, 0K cma-reserved)",
        )

    def setup_arch(self) -> None:
        cfg = self.config
        self.e820 = list(cfg.e820) if cfg.e820 is not None else build_e820(cfg.ram)
        from mmintro.kernel import cmdline

        cmdline.parse_early_param(self)  # mem=, memmap=: the user-defined map
        ram = [(e.addr, e.end) for e in self.e820 if e.type == E820_TYPE_RAM]
        if cfg.node_ranges is not None:  # the machine's own nodes (SRAT): RAM cut at their bounds
            for a, b in ram:
                for nid, (ns, ne) in enumerate(cfg.node_ranges):
                    lo, hi = max(a, ns), min(b, ne)
                    if lo < hi:
                        self.memblock.add(lo, hi - lo, nid)
            self.reserve_early()
            return
        # NUMA: RAM split evenly between nodes on section (128 MiB) boundaries.
        total = sum(b - a for a, b in ram)
        per_node = total // cfg.nodes
        bounds = []
        acc = 0
        for a, b in ram:
            bounds.append((a, b, acc))
            acc += b - a
        for a, b, before in bounds:
            cut = a
            while cut < b:
                nid = min((before + cut - a) // per_node, cfg.nodes - 1)
                node_end_off = (nid + 1) * per_node
                nxt = b if nid == cfg.nodes - 1 else min(b, a + (node_end_off - before))
                nxt = min(b, -(-nxt // (128 << 20)) * (128 << 20)) if nxt < b else b
                self.memblock.add(cut, nxt - cut, nid)
                cut = nxt
        self.reserve_early()

    def reserve_early(self) -> None:
        # Early reservations (arch/x86/kernel/setup.c): the first 1 MiB (BIOS, trampoline),
        # the kernel image (_text to __end_of_kernel_reserve, then reserve_brk()'s used .brk),
        # and early_reserve_initrd()'s initrd.
        self.memblock.reserve(0, 1 << 20)
        self.memblock.reserve(self.image.start, self.image.end - self.image.start)
        self.initrd_range = self.config.initrd
        if self.initrd_range is not None:
            start, size = self.initrd_range
            self.memblock.reserve(start, -(-size // PAGE_SIZE) * PAGE_SIZE)
        self.max_pfn = max(r.end for r in self.memblock.memory) >> PAGE_SHIFT
        self.place_globals()
        self.place_percpu_section()

    def reserve_initrd(self) -> None:
        """arch/x86/kernel/setup.c reserve_initrd() (after init_mem_mapping): an initrd outside
        the direct map (mem=/memmap= took its memory) is moved into it -- relocate_initrd():
        memblock_phys_alloc_range() below max_pfn_mapped -- and its old range given back."""
        if self.initrd_range is None:
            return
        start, size = self.initrd_range
        area = -(-size // PAGE_SIZE) * PAGE_SIZE
        self.printk(6, f"RAMDISK: [mem {start:#010x}-{start + area - 1:#010x}]")
        if self.memblock.is_memory(start, start + area):
            return
        new = self.memblock.alloc(area, PAGE_SIZE, limit=self.max_pfn << PAGE_SHIFT)
        self.printk(6, f"Allocated new RAMDISK: [mem {new:#010x}-{new + size - 1:#010x}]")
        self.printk(
            6,
            f"Move RAMDISK from [mem {start:#010x}-{start + size - 1:#010x}] to "
            f"[mem {new:#010x}-{new + size - 1:#010x}]",
        )
        self.memblock.free(start, area)
        self.initrd_range = (new, size)

    def place_globals(self) -> None:
        img = self.image
        for name in ("swapper_pg_dir", "level3_kernel_pgt", "level2_kernel_pgt"):
            img.var(name, "data", PAGE_SIZE)
        img.add("init_top_pgt", img.symbols["swapper_pg_dir"].address, PAGE_SIZE, "object", section="data")
        for name in (
            "page_offset_base",
            "vmalloc_base",
            "vmemmap_base",
            "phys_base",
            "max_pfn",
            "max_low_pfn",
            "min_low_pfn",
            "_totalram_pages",
            "node_data",
            "node_states",
            "nr_node_ids",
            "nr_cpu_ids",
            "__cpu_online_mask",
            "__cpu_possible_mask",
            "__cpu_present_mask",
            "__cpu_active_mask",
            "__per_cpu_offset",
            "init_mm",
            "iomem_resource",
            "ioport_resource",
            "min_free_kbytes",
            "user_min_free_kbytes",
            "watermark_scale_factor",
            "watermark_boost_factor",
            "sysctl_lowmem_reserve_ratio",
            "sysctl_overcommit_memory",
            "sysctl_overcommit_ratio",
            "sysctl_overcommit_kbytes",
            "pageblock_order",
            "e820_table",
            "init_task",
            "panic_cpu",
            "crashing_cpu",
            "hstates",
            "hugetlb_max_hstate",
            "swap_info",
            "nr_swapfiles",
            "total_swap_pages",
            "nr_swap_pages",
            "swap_active_head",
            "vm_swappiness",
            "slab_caches",
            "vmap_nodes",
            "nr_vmap_nodes",
            "vmap_zone_size",
            "init_pid_ns",
            "blockdev_superblock",
            "high_memory",
            "numa_distance",
            "numa_distance_cnt",
            "vm_dirty_ratio",
            "dirty_background_ratio",
            "vm_dirty_bytes",
            "dirty_background_bytes",
            "sysctl_stat_interval",
            "pcpu_nr_units",
        ):
            img.var(name, "data")
        img.var("init_thread_union", "data", x86.PAGE_SIZE * 4)
        for name in (
            "mem_section",
            "__highest_present_section_nr",
            "vm_zone_stat",
            "vm_node_stat",
            "vm_numa_event",
            "totalreserve_pages",
            "totalcma_pages",
            "nr_kernel_pages",
            "nr_all_pages",
            "vm_committed_as",
            "vm_committed_as_batch",
            "page_group_by_mobility_disabled",
            "direct_pages_count",
            "pcpu_nr_populated",
            "nr_threads",
            "total_forks",
        ):
            img.var(name, "bss")
        for marker, section, at_end in (
            ("_etext", "text", True),
            ("__start_rodata", "rodata", False),
            ("__end_rodata", "rodata", True),
            ("_sdata", "data", False),
            ("_edata", "data", True),
            ("__bss_start", "bss", False),
            ("__bss_stop", "bss", True),
            ("_end", "bss", True),
        ):
            img.marker(marker, section, at_end)
        k = self.kmem
        k.write_u64(self.sym("page_offset_base"), self.page_offset_base)
        k.write_u64(self.sym("vmalloc_base"), self.vmalloc_base)
        k.write_u64(self.sym("vmemmap_base"), self.vmemmap_base)
        k.write_u64(self.sym("phys_base"), self.phys_base)
        k.write_u64(self.sym("max_pfn"), self.max_pfn)
        # x86-64 init_mem_mapping(): "can we preserve max_low_pfn?" -- max_low_pfn = max_pfn.
        k.write_u64(self.sym("max_low_pfn"), self.max_pfn)
        self.write_int("pageblock_order", kc.PAGEBLOCK_ORDER)
        self.write_int("nr_node_ids", self.config.nodes)
        self.write_int("nr_cpu_ids", self.config.cpus)
        self.write_int("watermark_scale_factor", kc.WATERMARK_SCALE_FACTOR)
        self.write_int("watermark_boost_factor", kc.WATERMARK_BOOST_FACTOR)
        self.write_int("sysctl_overcommit_ratio", kc.OVERCOMMIT_RATIO)
        self.write_int("vm_dirty_ratio", kc.DIRTY_RATIO)
        self.write_int("vm_swappiness", 60)  # mm/vmscan.c: int vm_swappiness = 60
        self.kmem.init_list_head(
            self.kmem.addr(self.sym("swap_active_head"), "plist_head", "node_list")
        )  # PLIST_HEAD_INIT
        self.write_int("dirty_background_ratio", kc.DIRTY_BACKGROUND_RATIO)
        self.write_int("sysctl_stat_interval", kc.HZ)  # vm.stat_interval = 1 s, in jiffies
        k.write_u64(self.sym("high_memory"), self.phys_to_virt(self.max_pfn << PAGE_SHIFT))
        self.kmem.set(self.sym("panic_cpu"), "atomic_t", "counter", 0)  # the snapshot is taken as CPU 0 panics
        self.write_int("crashing_cpu", 0)
        ratio = self.sym("sysctl_lowmem_reserve_ratio")
        for i, r in enumerate(kc.LOWMEM_RESERVE_RATIO):
            self.mem.write(self.pa(ratio + 4 * i), r.to_bytes(4, "little"))
        mask = ((1 << self.config.cpus) - 1).to_bytes(self.T.sizeof("struct cpumask"), "little")  # NR_CPUS bits
        for name in ("__cpu_online_mask", "__cpu_possible_mask", "__cpu_present_mask", "__cpu_active_mask"):
            self.kmem.write_bytes(self.sym(name), mask)
        k.init_list_head(self.sym("slab_caches"))
        img.var("modules", "data")  # kernel/module/main.c LIST_HEAD(modules): no module is loaded
        k.init_list_head(self.sym("modules"))
        from mmintro.kernel import printk

        printk.place_globals(self)
        from mmintro.kernel import version

        version.place_globals(self)
        from mmintro.kernel import maple_tree

        maple_tree.place_globals(self)
        from mmintro.kernel import memremap

        memremap.place_text(self)
        from mmintro.kernel import sched

        sched.place_text(self)
        from mmintro.kernel import kexec_core

        kexec_core.place_text(self)
        from mmintro.kernel import panic, timekeeping

        panic.place_globals(self)
        from mmintro.kernel import configs

        configs.place_globals(self)
        timekeeping.place_globals(self)
        from mmintro.kernel import psi

        psi.place_globals(self)
        img.var("avenrun", "bss")  # kernel/sched/loadavg.c: no task runs, so the load is 0
        # fs/proc/array.c task_state_array[]: the state letters /proc/PID/status, ps and
        # drgn's task_state_to_char() read.
        img.var("task_state_array", "rodata")
        for i, name in enumerate(
            (
                "R (running)",
                "S (sleeping)",
                "D (disk sleep)",
                "T (stopped)",
                "t (tracing stop)",
                "X (dead)",
                "Z (zombie)",
                "P (parked)",
                "I (idle)",
            )
        ):
            k.write_u64(self.sym("task_state_array") + 8 * i, img.string(name))
        # head_64.S: empty_zero_page in .bss..page_aligned; mm/memory.c init_zero_pfn():
        # zero_pfn = page_to_pfn(ZERO_PAGE(0)), the pfn read faults map (do_anonymous_page).
        img.var("empty_zero_page", "bss")
        k.write_u64(img.var("zero_pfn", "data"), self.pa(self.sym("empty_zero_page")) >> PAGE_SHIFT)
        self.zero_pfn = self.pa(self.sym("empty_zero_page")) >> PAGE_SHIFT

    def write_int(self, name: str, value: int) -> None:
        s = self.image.symbols[name]
        t = s.type.resolved() if s.type else None
        size = t.size if t is not None else 8
        self.mem.write(self.pa(s.address), (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))

    def init_mem_mapping(self) -> None:
        """The kernel page tables: static ones in the image, the rest from memblock."""
        pgd = self.pa(self.sym("swapper_pg_dir"))

        def alloc_table(nid: int) -> int:
            # alloc_low_pages(): until mem_init() sets after_bootmem, page-table pages come
            # from memblock (top-down), zeroed and unaccounted; after it, from the page
            # allocator with the ptdesc constructor (PGTY_table, NR_PAGETABLE).
            if getattr(self, "after_bootmem", False):
                return pagetable_alloc_kernel(self)
            return self.memblock.alloc(PAGE_SIZE, PAGE_SIZE, nid=nid)

        self.pt = PageTables(self.mem, pgd, alloc_table)
        map_kernel_image(
            self.pt,
            self.pa(self.sym("level3_kernel_pgt")),
            self.pa(self.sym("level2_kernel_pgt")),
            START_KERNEL_MAP,
            self.phys_base,
            self.image.start,
            self.image.end,
        )
        e820_mapped = [(e.addr, e.end) for e in self.e820 if e.type in (E820_TYPE_RAM, E820_TYPE_ACPI)]

        def e820_mapped_any(start: int, end: int) -> bool:
            return any(a < end and start < b for a, b in e820_mapped)

        # alloc_low_pages(): the brk's pgt_buf first (early_alloc_pgt_buf(): INIT_PGT_BUF_SIZE,
        # 6 pages at __brk_base, where the build's layout has a used .brk), then memblock.
        brk = self.image.sections["bss"][1]
        pgt_buf = [brk + i * PAGE_SIZE for i in range(6)] if self.image.end - brk >= 6 * PAGE_SIZE else []
        pgt_buf.reverse()

        def alloc_low_page() -> int:
            if pgt_buf:
                t = pgt_buf.pop()
                self.mem.write(t, bytes(PAGE_SIZE))
                return t
            return self.memblock.alloc(PAGE_SIZE, PAGE_SIZE)

        mapper = DirectMapper(self.pt, self.page_offset_base, e820_mapped_any, alloc_low_page)
        init_direct_map(self, mapper, (1 << PG_LEVEL_2M) | (1 << PG_LEVEL_1G))  # "Using GB pages for direct mapping"
        # arch_report_meminfo()'s DirectMap lines read direct_pages_count[PG_LEVEL_*].
        write_direct_pages_count(self)
        # init_mm uses swapper_pg_dir.
        self.kmem.set(self.sym("init_mm"), "mm_struct", "pgd", self.sym("swapper_pg_dir"))

    def place_percpu_section(self) -> None:
        """The image's .data..percpu (link time): the per-CPU template and its symbols."""
        self.pcpu_static_size = self.T.doc.get("percpu_static_size", 0)
        self.per_cpu_start = self.image.percpu_section(self.pcpu_static_size)
        offsets = {v["name"]: v["offset"] for v in self.T.doc["variables"] if v.get("percpu")}
        for name, (t, is_percpu) in self.T.variables.items():
            if is_percpu:
                self.image.add(name, self.per_cpu_start + offsets[name], t.size, "object", t, section="percpu")

    def setup_per_cpu_areas(self) -> None:
        """x86-64 setup_per_cpu_areas(): pcpu_embed_first_chunk() (:mod:`mmintro.kernel.percpu`),
        each CPU's unit in the direct map on its node, ``size_sum`` bytes of it kept.

        Per-CPU symbols live in the image's .data..percpu at their link addresses (6.15+), so
        ``__per_cpu_offset[cpu]`` = the unit's address - ``__per_cpu_start`` (setup_per_cpu_areas's
        ``delta = pcpu_base_addr - __per_cpu_start``), and a ``__percpu`` pointer from the first
        chunk is ``__per_cpu_start`` + its offset in the unit (``__addr_to_pcpu_ptr``)."""
        from mmintro.kernel import percpu

        ai, unit_of, base = percpu.pcpu_embed_first_chunk(self, self.pcpu_static_size)
        percpu.pcpu_dump_alloc_info(self, ai)
        self.pcpu_alloc_info = ai
        self.pcpu_unit_size = ai.size_sum  # what alloc_percpu() may use of a unit (the first chunk)
        self.pcpu_reserved = ai.reserved_size
        self.pcpu_dyn_next = -(-(self.pcpu_static_size + self.pcpu_reserved) // 64) * 64
        self.per_cpu_offset = []
        for cpu in range(self.config.cpus):
            off = self.phys_to_virt(unit_of[cpu]) - self.per_cpu_start
            self.per_cpu_offset.append(off)
            self.kmem.write_u64(self.sym("__per_cpu_offset") + 8 * cpu, off)
        self.pcpu_base = base
        # pcpu_setup_first_chunk(): every page of the first chunk is populated, counted once
        # per unit; Percpu in /proc/meminfo is pcpu_nr_populated * pcpu_nr_units pages.
        self.write_int("pcpu_nr_units", sum(len(g) for g in ai.groups))
        self.kmem.write_u64(self.sym("pcpu_nr_populated"), ai.size_sum >> PAGE_SHIFT)

    def alloc_percpu(self, size: int, align: int = 8) -> int:
        """pcpu_alloc() from the first chunk's dynamic area; returns the __percpu pointer.
        (The kernel then creates more chunks in vmalloc space; the simulator does not, and
        says so.)"""
        off = -(-self.pcpu_dyn_next // align) * align
        if off + size > self.pcpu_unit_size:
            raise MemoryError(
                f"per-CPU first chunk is full ({self.pcpu_unit_size - self.pcpu_dyn_next} bytes left, "
                f"{size} asked; further chunks are not simulated)"
            )
        self.pcpu_dyn_next = off + size
        return self.per_cpu_start + off

    def cpu_to_node(self, cpu: int) -> int:
        """The machine's own CPU-to-node map (``--like``), else CPUs spread over the nodes in
        blocks: cpu * nodes // cpus."""
        if self.config.cpu_nodes is not None:
            return self.config.cpu_nodes[cpu]
        return cpu * self.config.nodes // self.config.cpus

    def numa_distance_of(self, a: int, b: int) -> int:
        """node_distance(a, b) of a SLIT-less machine: LOCAL_DISTANCE 10, else REMOTE_DISTANCE 20."""
        return 10 if a == b else 20

    def per_cpu_ptr(self, ptr: int, cpu: int) -> int:
        return ptr + self.per_cpu_offset[cpu]

    def alloc_node_data(self) -> None:
        size = self.T.sizeof("struct pglist_data")
        node_data = self.sym("node_data")
        states = self.sym("node_states")
        nm = self.T.sizeof("nodemask_t")
        for nid in range(self.config.nodes):
            p = self.memblock.alloc(-(-size // 64) * 64, 64, nid=nid)
            va = self.phys_to_virt(p)
            self.pgdat.append(va)
            self.kmem.write_u64(node_data + 8 * nid, va)
            self.kmem.set(va, "pglist_data", "node_id", nid)
        mask = (1 << self.config.nodes) - 1
        for st in ("N_POSSIBLE", "N_ONLINE"):
            self.kmem.write_u64(states + nm * self.T.const(st), mask)
        # node_set_state(N_MEMORY) for nodes with memory (a memory-less node has CPUs only);
        # without highmem N_NORMAL_MEMORY is the same set
        with_memory = 0
        for r in self.memblock.memory:
            with_memory |= 1 << r.nid
        for st in ("N_NORMAL_MEMORY", "N_MEMORY"):
            self.kmem.write_u64(states + nm * self.T.const(st), with_memory)
        cpu_nodes = 0
        for cpu in range(self.config.cpus):
            cpu_nodes |= 1 << self.cpu_to_node(cpu)
        self.kmem.write_u64(states + nm * self.T.const("N_CPU"), cpu_nodes)
        # numa_alloc_distance()/numa_set_distance(): a SLIT-less machine has LOCAL_DISTANCE 10
        # to itself and REMOTE_DISTANCE 20 elsewhere; a single node keeps no table.
        n = self.config.nodes
        self.numa_distance = [[self.numa_distance_of(a, b) for b in range(n)] for a in range(n)]
        if n > 1:
            table = self.phys_to_virt(self.memblock.alloc(n * n, PAGE_SIZE))
            self.kmem.write_bytes(table, bytes(d for row in self.numa_distance for d in row))
            self.kmem.write_u64(self.sym("numa_distance"), table)
            self.write_int("numa_distance_cnt", n)

    # -- identity ---------------------------------------------------------------------------
    def build_id(self) -> bytes:
        h = hashlib.sha1()
        h.update(repr((self.config, kc.OSRELEASE)).encode())
        h.update(repr(sorted((s.name, s.address, s.size) for s in self.image.symbols.values())).encode())
        return h.digest()

    def e820_name(self, t: int) -> str:
        return E820_NAMES.get(t, "Unknown E820 type")


def boot(config: MachineConfig | None = None, progress: Progress | None = None) -> Kernel:
    """Boot a simulated machine and return its kernel."""
    return Kernel(config or MachineConfig()).boot(progress)
