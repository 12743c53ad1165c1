"""vmalloc as 6.18 keeps it: vmap areas in per-node busy rb-trees, lazy freeing and the purge,
ioremap, vmapped kernel and IRQ stacks, accounted page tables.  Real drgn is the oracle: its
stock helpers and crash commands read the snapshot's bytes and walk its page tables."""

from __future__ import annotations

import itertools
import random

import pytest

from mmintro.arch import x86
from mmintro.kernel import gfp as G
from mmintro.kernel import init_64, init_task
from mmintro.kernel import rbtree as rb
from mmintro.kernel import vmalloc as V
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save, snapshot_paths
from mmintro.types import get_types

drgn = pytest.importorskip("drgn")

from drgn.helpers.linux.mm import find_vmap_area, for_each_vmap_area, page_to_pfn, vmalloc_to_page

from mmintro import crosscheck as xc

T = get_types()
PAGE = x86.PAGE_SIZE
SIZES = [1, 100, PAGE, PAGE + 1, 3 * PAGE, 20000, 64 << 10, 200 << 10, 1 << 20, 2 << 20, 3 << 20 | 5]
CALLERS = [
    "n_tty_open",
    "htab_map_alloc",
    "bpf_prog_alloc_no_stats",
    "queue_stack_map_alloc",
    "bpf_prog_pack_alloc",
    "arch_ftrace_update_trampoline",
]


# -- the red-black tree on its own -----------------------------------------------------------------
class _DictMem(rb.RbMem):
    def __init__(self) -> None:
        self.d: dict[int, int] = {}
        super().__init__(lambda a: self.d.get(a, 0), lambda a, v: self.d.__setitem__(a, v))


def _check_rb(m: rb.RbMem, root: int) -> int:
    """Assert the red-black properties from the words alone; return the black height."""
    top = m.read(root)
    if not top:
        return 0
    assert rb.rb_is_black(m, top) and rb.rb_parent(m, top) == 0

    def bh(n: int, parent: int) -> int:
        if not n:
            return 1
        assert rb.rb_parent(m, n) == parent
        left, right = m.read(n + rb.LEFT), m.read(n + rb.RIGHT)
        if rb.rb_is_red(m, n):
            assert not (left and rb.rb_is_red(m, left)) and not (right and rb.rb_is_red(m, right))
        a, b = bh(left, n), bh(right, n)
        assert a == b, "unequal black heights"
        return a + rb.rb_is_black(m, n)

    return bh(top, 0)


def test_rbtree_insert_and_erase_keep_the_red_black_properties() -> None:
    m = _DictMem()
    root = 0x1000
    keys: dict[int, int] = {}
    live: set[int] = set()
    rng = random.Random(7)
    for step in range(3000):
        if live and rng.random() < 0.45:
            n = rng.choice(sorted(live))
            live.remove(n)
            rb.rb_erase(m, n, root)
        else:
            n = 0x100000 + 0x40 * rng.randrange(1 << 16)
            if n in live:
                continue
            keys[n] = rng.random()
            live.add(n)
            link, parent = root, 0
            while m.read(link):
                parent = m.read(link)
                link = parent + (rb.LEFT if keys[n] < keys[parent] else rb.RIGHT)
            rb.rb_link_node(m, n, parent, link)
            rb.rb_insert_color(m, n, root)
        if step % 100 == 0:
            _check_rb(m, root)
    order = [keys[n] for n in rb.rb_inorder(m, root)]
    assert order == sorted(keys[n] for n in live)
    back, n = [], rb.rb_last(m, root)
    while n:
        back.append(keys[n])
        n = rb.rb_prev(m, n)
    assert back == order[::-1]


# -- init_mm's page tables after boot ---------------------------------------------------------
def test_mem_init_preallocates_vmalloc_puds_as_accounted_kernel_page_tables() -> None:
    """After mem_init() (after_bootmem), init_mm's tables come from the page allocator typed
    PGTY_table with PT_kernel and counted in NR_PAGETABLE; preallocate_vmalloc_pages() fills
    PGD slots 402..465 (the 32 TiB vmalloc range) with PUD pages, each counted in
    init_mm.pgtables_bytes; lookup_address() finds leaves of every size."""
    k = boot(MachineConfig(ram=1 << 30, cpus=2))
    if not getattr(k, "after_bootmem", False):
        init_64.mem_init(k)
    pgd = k.pt.pgd
    slots = [i for i in range(402, 466) if k.pt.entry(pgd, i) & x86._PAGE_PRESENT]
    assert slots == list(range(402, 466))
    for i in slots:
        t = k.pt.entry(pgd, i) & x86.PTE_PFN_MASK
        assert k.pt.entry(pgd, i) & 0xFFF == x86._PAGE_TABLE
        page = k.pfn_to_page(t >> x86.PAGE_SHIFT)
        assert k.kmem.get(page, "ptdesc", "__page_type") == T.const("PGTY_table") << 24
        assert k.kmem.get(page, "page", "flags") >> T.const("PT_kernel") & 1
    assert sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat) >= 64
    assert k.kmem.get(k.sym("init_mm"), "mm_struct", "pgtables_bytes") >= 64 * x86.PAGE_SIZE
    assert init_64.preallocate_vmalloc_pages(k) == 0  # nothing left to allocate
    # A PMD and a PTE table for a fresh address (GFP_PGTABLE_KERNEL zeroes them), then the
    # PTE table freed again (pagetable_dtor_free).
    before = sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat)
    va = k.vmalloc_base + (1 << 40)
    pud, _ = k.pt.populate(pgd, (va >> 39) & 511, 0)
    pmd, new_pmd = k.pt.populate(pud, (va >> 30) & 511, 0)
    pte, new_pte = k.pt.populate(pmd, (va >> 21) & 511, 0)
    assert new_pmd and new_pte and k.mem.read(pte, x86.PAGE_SIZE) == bytes(x86.PAGE_SIZE)
    k.pt.set_entry(pte, (va >> 12) & 511, 0x5000 | x86.PAGE_KERNEL)
    assert k.pt.lookup_address(va + 0x123)[2] == init_64.PG_LEVEL_4K
    assert k.pt.virt_to_phys(va + 0x123) == 0x5123
    assert sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat) == before + 2
    k.pt.set_entry(pmd, (va >> 21) & 511, 0)
    init_64.pagetable_dtor_free(k, pte)
    assert sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat) == before + 1
    assert k.kmem.get(k.pfn_to_page(pte >> x86.PAGE_SHIFT), "ptdesc", "__page_type") == 0xFFFFFFFF
    assert k.pt.lookup_address(va) is None
    # The direct map: a 2 MiB or 1 GiB leaf.
    assert k.pt.lookup_address(k.page_offset_base + (64 << 20))[2] in (init_64.PG_LEVEL_2M, init_64.PG_LEVEL_1G)


# -- a booted machine with a vmalloc workload -------------------------------------------------------
class Run:
    """A 2 GiB, 2-node, 2-CPU machine after a vmalloc/vfree/ioremap workload, and its snapshot."""

    def __init__(self, tmp: str) -> None:
        k = self.k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=2, seed=3))
        self.boot_areas = {a: (r.size, r.flags, r.caller, r.phys_addr) for a, r in k.vmap.areas.items()}
        self.boot_pagetables = sum(d.get("NR_PAGETABLE", 0) for d in k.node_vm_stat)
        rng = random.Random(11)
        self.data: dict[int, bytes] = {}
        live: list[int] = []
        for i in range(360):
            k.on_cpu(rng.randrange(2))
            size = rng.choice(SIZES)
            node = rng.choice([V.NUMA_NO_NODE, 0, 1])
            caller = rng.choice(CALLERS)
            if rng.random() < 0.3:
                a = V.vzalloc_node(k, size, node, caller) if node >= 0 else V.vzalloc(k, size, caller)
            else:
                a = V.vmalloc_node(k, size, node, caller) if node >= 0 else V.vmalloc(k, size, caller)
            assert a and a % PAGE == 0
            blob = (f"area {i} at {a:#x} ".encode() * 8)[: min(size, 200)]
            V.vmalloc_write(k, a, blob)
            self.data[a] = blob
            live.append(a)
            if i % 3 == 2:  # free as we go: lazily freed areas pile up, then get purged
                victim = live.pop(rng.randrange(len(live)))
                V.vfree(k, victim)
                del self.data[victim]
        self.purges_during_workload = k.vmap.purges
        # Reuse of pooled areas: the same size on the same CPU right after a purge.
        k.on_cpu(0)
        # ioremaps: the IOAPIC/LAPIC pages (UC-), a 4 MiB MMIO window in the PCI hole (2 MiB
        # leaves), and one that is unmapped again.
        self.ioapic = V.ioremap(k, 0xFEC00000, 0x400, "__pci_enable_msix_range")
        self.lapic = V.ioremap(k, 0xFEE00000, PAGE, "vp_modern_map_capability")
        self.mmio = V.ioremap(k, 0xE0000000, 4 << 20, "pci_mmcfg_arch_map")
        tmp_io = V.ioremap(k, 0xFFFC0000, 0x40000, "memremap")
        V.iounmap(k, tmp_io)
        self.ram_refused = V.ioremap(k, 64 << 20, PAGE, "memremap")
        self.lazy = V.lazy_areas(k)
        self.path = f"{tmp}/vm"
        save(k, self.path)
        core, vmlinux = snapshot_paths(self.path)
        self.d = xc.open_drgn(str(core), str(vmlinux))

    def expected_order(self) -> list[int]:
        """va_start of every live area in for_each_vmap_area() order: node by node, by address."""
        s = self.k.vmap
        return sorted(self.k.vmap.areas, key=lambda a: (V.addr_to_node_id(s, a), a))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(str(tmp_path_factory.mktemp("vmalloc")))


def test_boot_maps_irq_stacks_acpi_tables_and_the_idle_stack(run: Run) -> None:
    k = run.k
    start = k.vmalloc_base
    names = {a: k.image.symbols for a in run.boot_areas}
    got = []
    for a, (size, flags, caller, phys) in sorted(run.boot_areas.items()):
        sym = next(s for s in names[a].values() if s.kind == "func" and s.address <= caller < s.address + s.size)
        got.append((a - start, size, flags, f"{sym.name}+{caller - sym.address:#x}/{sym.size:#x}", phys))
    acpi = next(e for e in k.e820 if e.type == 3)
    nvs = next(e for e in k.e820 if e.type == 4)
    assert got == [
        (0x0, 0x5000, V.VM_MAP, "irq_init_percpu_irqstack+0xca/0x100", 0),
        (0x5000, 0x2000, V.VM_IOREMAP, "acpi_os_map_iomem+0x1bc/0x1e0", nvs.addr),
        (0x8000, 0x5000, V.VM_ALLOC, "fork_idle+0x74/0x120", 0),
        (0x10000, acpi.size + PAGE, V.VM_IOREMAP, "acpi_os_map_iomem+0x1bc/0x1e0", acpi.addr),
        (0x21000, 0x5000, V.VM_MAP, "irq_init_percpu_irqstack+0xca/0x100", 0),
    ]


def test_idle_task_of_cpu1_runs_on_a_vmapped_stack(run: Run) -> None:
    from drgn.helpers.common.memory import identify_address
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.sched import idle_task

    d = run.d
    idle = idle_task(d, 1)
    stack = idle.stack.value_()
    assert stack == run.k.vmalloc_base + 0x8000 and stack % init_task.THREAD_SIZE == 0
    vm = idle.stack_vm_area
    assert vm.addr.value_() == stack and vm.nr_pages.value_() == 4 and vm.flags.value_() == V.VM_ALLOC
    assert d.read_u64(stack) == init_task.STACK_END_MAGIC  # end_of_stack()
    assert idle.stack_refcount.refs.counter.value_() == 1
    assert d["init_task"].stack.value_() == d["init_thread_union"].address_
    assert d.read_u64(d["init_thread_union"].address_) == init_task.STACK_END_MAGIC
    # drgn finds the task from an address inside its stack.
    assert identify_address(d, stack + 100).startswith("task stack: 0 (swapper/1)")
    # account_kernel_stack(): 16 kB on the node of the stack's pages.
    node = run.k.cpu_to_node(1)
    assert d["node_data"][node].vm_stat[T.const("NR_KERNEL_STACK_KB")].counter.value_() == 16
    # hardirq_stack_ptr points 8 bytes below the top of each CPU's vmapped IRQ stack.
    for cpu, off in ((0, 0), (1, 0x21000)):
        assert per_cpu(d["hardirq_stack_ptr"], cpu).value_() == run.k.vmalloc_base + off + 0x4000 - 8


def test_for_each_vmap_area_yields_exactly_our_areas_in_order(run: Run) -> None:
    got = [va.va_start.value_() for va in for_each_vmap_area(run.d)]
    assert got == run.expected_order()
    assert len(got) > 200
    for va in for_each_vmap_area(run.d):
        r = run.k.vmap.areas[va.va_start.value_()]
        assert va.value_() == r.va and va.vm.value_() == r.vm
        assert va.va_end.value_() == r.end and va.vm.size.value_() == r.size
        assert va.vm.flags.value_() == r.flags and va.vm.caller.value_() == r.caller


def test_callers_resolve_to_their_symbols(run: Run) -> None:
    for va in for_each_vmap_area(run.d):
        caller = va.vm.caller.value_()
        sym = run.d.symbol(caller)
        assert sym.name in CALLERS + list(V.KNOWN_CALLERS)
        assert 0 < caller - sym.address < sym.size
        if sym.name in V.KNOWN_CALLERS:
            assert (caller - sym.address, sym.size) == V.KNOWN_CALLERS[sym.name]
    # drgn's identify_address() names the area and its caller (what `kmem ADDR` builds on).
    from drgn.helpers.common.memory import identify_address

    r = next(
        r
        for r in run.k.vmap.areas.values()
        if r.flags & V.VM_ALLOC and r.size > 2 * PAGE and run.d.symbol(r.caller).name in CALLERS
    )
    sym = run.d.symbol(r.caller)
    assert identify_address(run.d, r.addr + PAGE + 8) == (
        f"vmap: {r.addr:#x}-{r.end:#x} caller {sym.name}+{r.caller - sym.address:#x}"
    )


def test_find_vmap_area_and_vmalloc_to_page_agree_with_the_simulator(run: Run) -> None:
    k, d = run.k, run.d
    rng = random.Random(5)
    areas = list(k.vmap.areas.values())
    probes = [r.addr + rng.randrange(r.size) for r in rng.sample(areas, 60)]
    probes += [a for a, _b in run.lazy[:10]]  # lazily freed: no longer found
    probes += [k.vmalloc_base + rng.randrange(1 << 36) for _ in range(20)]  # mostly holes
    for addr in probes:
        va = find_vmap_area(d, addr)
        mine = V.find_vmap_area(k, addr)
        assert va.value_() == mine, hex(addr)
        if not mine:
            continue
        r = k.vmap.areas[va.va_start.value_()]
        page = (addr - r.addr) // PAGE
        if r.pfns and page < len(r.pfns):
            assert page_to_pfn(vmalloc_to_page(d, addr)).value_() == r.pfns[page] == V.vmalloc_to_pfn(k, addr)
        elif r.flags & V.VM_IOREMAP and addr < r.end - PAGE:
            assert V.vmalloc_to_pfn(k, addr) == (r.phys_addr >> 12) + page
        else:  # the guard page is never mapped
            with pytest.raises(drgn.FaultError):
                d.read(addr, 1)


def test_drgn_reads_what_we_wrote_through_the_page_tables(run: Run) -> None:
    for addr, blob in run.data.items():
        assert run.d.read(addr, len(blob)) == blob
    # vzalloc'd and vmalloc'd memory past the written bytes reads as the pages' contents.
    some = next(iter(run.data))
    assert len(run.d.read(some, 4096)) == 4096


def test_crash_kmem_v_lists_the_same_areas(run: Run) -> None:
    out = xc.crash(run.d, "kmem -v").splitlines()
    rows = [line.split() for line in out[1:] if line.strip()]
    got = [(int(r[0], 16), int(r[1], 16), int(r[2], 16), int(r[4], 16), int(r[5])) for r in rows]
    exp = []
    for a in run.expected_order():
        r = run.k.vmap.areas[a]
        exp.append((r.va, r.vm, r.addr, r.end, r.size))
    assert got == exp


def _vmallocinfo(d) -> list[str]:
    """mm/vmalloc.c vmalloc_info_show() from the snapshot (raw addresses, %pS callers)."""
    lines = []
    for va in for_each_vmap_area(d):
        v = va.vm
        sym = d.symbol(v.caller.value_())
        line = f"{v.addr.value_():#018x}-{v.addr.value_() + v.size.value_():#018x} {v.size.value_():7d}"
        line += f" {sym.name}+{v.caller.value_() - sym.address:#x}/{sym.size:#x}"
        if v.nr_pages:
            line += f" pages={v.nr_pages.value_()}"
        if v.phys_addr:
            line += f" phys={v.phys_addr.value_():#018x}"
        flags = v.flags.value_()
        for bit, word in (
            (V.VM_IOREMAP, "ioremap"),
            (V.VM_SPARSE, "sparse"),
            (V.VM_ALLOC, "vmalloc"),
            (V.VM_MAP, "vmap"),
            (V.VM_USERMAP, "user"),
            (V.VM_DMA_COHERENT, "dma-coherent"),
        ):
            if flags & bit:
                line += f" {word}"
        pages = v.pages.value_()
        if d["vmalloc_base"].value_() <= pages:
            line += " vpages"
        if v.nr_pages:
            counts: dict[int, int] = {}
            for i in range(v.nr_pages.value_()):
                nid = v.pages[i].flags.f.value_() >> (64 - 10)
                counts[nid] = counts.get(nid, 0) + 1
            line += "".join(f" N{n}={c}" for n, c in sorted(counts.items()))
        lines.append(line)
    for vn_i in range(d["nr_vmap_nodes"].value_()):
        vn = d["vmap_nodes"][vn_i]
        from drgn.helpers.linux.list import list_for_each_entry

        for va in list_for_each_entry("struct vmap_area", vn.lazy.head.address_of_(), "list"):
            a, b = va.va_start.value_(), va.va_end.value_()
            lines.append(f"{a:#018x}-{b:#018x} {b - a:7d} unpurged vm_area")
    return lines


def test_vmallocinfo_from_the_snapshot_has_the_reference_shape(run: Run) -> None:
    lines = _vmallocinfo(run.d)
    k = run.k
    assert lines[0].endswith("irq_init_percpu_irqstack+0xca/0x100 vmap")
    assert any(f" fork_idle+0x74/0x120 pages=4 vmalloc N{k.cpu_to_node(1)}=4" in line for line in lines)
    assert any(" acpi_os_map_iomem+0x1bc/0x1e0 phys=" in line and line.endswith(" ioremap") for line in lines)
    assert any(" vpages " in line for line in lines)  # > 2 MiB: the pages array is vmalloc'd itself
    assert any(" N0=" in line for line in lines) and any(" N1=" in line for line in lines)
    unpurged = [line for line in lines if line.endswith("unpurged vm_area")]
    assert len(unpurged) == len(run.lazy) > 0
    # VmallocUsed: the pages behind vmalloc (not vmap/ioremap) areas.
    used = sum(r.nr_pages for r in k.vmap.areas.values() if r.flags & V.VM_ALLOC)
    assert run.d["nr_vmalloc_pages"].counter.value_() == used == V.vmalloc_nr_pages(k)
    from mmintro.reader import open_snapshot
    from mmintro.views import meminfo

    assert meminfo.vmalloc_nr_pages(open_snapshot(run.path)) == used


def _tree(d, root: int) -> list[int]:
    """In-order rb_node addresses of the tree at ``root``, checking the red-black properties
    from the snapshot's bytes (drgn reads them through the page tables)."""
    m = rb.RbMem(d.read_u64, lambda a, v: None)
    _check_rb(m, root)
    return rb.rb_inorder(m, root)


def test_busy_lazy_and_free_trees_are_valid_red_black_trees(run: Run) -> None:
    d = run.d
    off = T.struct("vmap_area").offsetof("rb_node")
    total = 0
    for i in range(d["nr_vmap_nodes"].value_()):
        vn = d["vmap_nodes"][i]
        busy = _tree(d, vn.busy.root.address_)
        lst = [
            va.value_() + off
            for va in __import__("drgn.helpers.linux.list", fromlist=["x"]).list_for_each_entry(
                "struct vmap_area", vn.busy.head.address_of_(), "list"
            )
        ]
        assert busy == lst  # the list is the tree in order
        total += len(busy)
        _tree(d, vn.lazy.root.address_)
    assert total == len(run.k.vmap.areas)
    # The free tree: augmented with the largest free block of each subtree.
    free = _tree(d, d["free_vmap_area_root"].address_)
    va_t = d.type("struct vmap_area")

    def size(n: int) -> int:
        va = drgn.Object(d, va_t, address=n - off)
        return va.va_end.value_() - va.va_start.value_()

    for n in free:
        va = drgn.Object(d, va_t, address=n - off)
        best = size(n)
        for child in (va.rb_node.rb_left.value_(), va.rb_node.rb_right.value_()):
            if child:
                best = max(best, drgn.Object(d, va_t, address=child - off).subtree_max_size.value_())
        assert va.subtree_max_size.value_() == best


def test_free_busy_lazy_and_pooled_areas_partition_the_address_space(run: Run) -> None:
    k = run.k
    s = k.vmap
    spans = [(a, b) for _va, a, b in V.busy_areas(k)] + V.lazy_areas(k)
    spans += [(V.va_start(s, va), V.va_end(s, va)) for va in V._list_entries(s, s.free_list)]
    for i in range(s.nr_nodes):
        vn = s.nodes + i * V.VN_SIZE
        for p in range(V.MAX_VA_SIZE_PAGES):
            for va in V._list_entries(s, vn + V.VN_POOL + p * V.VP_SIZE + V.VP_HEAD):
                spans.append((V.va_start(s, va), V.va_end(s, va)))
    spans.sort()
    assert spans[0][0] == 1 and spans[-1][1] == V.ULONG_MAX
    for (_a0, b0), (a1, _b1) in itertools.pairwise(spans):
        assert b0 == a1, f"gap or overlap at {b0:#x}/{a1:#x}"


def test_lazy_freeing_purges_past_lazy_max_pages_and_pools_reuse_areas(run: Run) -> None:
    k = run.k
    assert V.lazy_max_pages(k) == 2 * (32 << 20) // PAGE  # fls(2 CPUs) * 32 MiB
    assert run.purges_during_workload >= 1
    lazy_pages = sum((b - a) // PAGE for a, b in run.lazy)
    assert run.d["vmap_lazy_nr"].counter.value_() == lazy_pages == k.vmap.lazy_nr
    assert lazy_pages <= V.lazy_max_pages(k)
    # Freed but unpurged areas keep their addresses; after a purge their range is reusable,
    # small areas straight from their node's pool.
    k2 = boot(MachineConfig(ram=1 << 30, nodes=1, cpus=2, seed=1))
    a = V.vmalloc(k2, 3 * PAGE, "n_tty_open")
    V.vfree(k2, a)
    assert V.lazy_areas(k2) == [(a, a + 4 * PAGE)]
    assert V.vmalloc(k2, 3 * PAGE, "n_tty_open") != a  # still lazily held
    V.vm_unmap_aliases(k2)
    assert V.lazy_areas(k2) == [] and k2.vmap.lazy_nr == 0
    assert V.vmalloc(k2, 3 * PAGE, "n_tty_open") == a  # node_alloc(): from the CPU's pool


def test_alloc_vmap_area_is_lowest_fit(run: Run) -> None:
    """One CPU, one vmap node (no pools).  A page-aligned area lands at the lowest address
    free of busy and lazy areas.  A more aligned one (a kernel stack) may skip a lower hole
    too small for size + align - 1 (find_vmap_lowest_match() prunes subtrees by that length),
    but never one at least that large."""
    k = boot(MachineConfig(ram=1 << 30, nodes=1, cpus=1, seed=2))
    rng = random.Random(3)
    live: list[int] = []
    skipped = 0
    for _ in range(200):
        if live and rng.random() < 0.4:
            V.vfree(k, live.pop(rng.randrange(len(live))))
            if rng.random() < 0.2:
                V.vm_unmap_aliases(k)
            continue
        size = rng.choice([PAGE, 3 * PAGE, 16 << 10, 100 << 10])
        taken = sorted([(a, b) for _va, a, b in V.busy_areas(k)] + V.lazy_areas(k))
        holes, cur = [], k.vmalloc_base
        for lo, hi in taken:
            if lo > cur:
                holes.append((cur, lo))
            cur = max(cur, hi)
        holes.append((cur, V.VMALLOC_END(k)))
        align = rng.choice([PAGE, init_task.THREAD_SIZE])
        a = V.__vmalloc_node(k, size, align, G.GFP_KERNEL, V.NUMA_NO_NODE, "kernel_clone")
        span = -(-size // PAGE) * PAGE + PAGE
        fits = [(-(-lo // align) * align, hi - lo) for lo, hi in holes if -(-lo // align) * align + span <= hi]
        assert a % align == 0 and any(f == a for f, _n in fits)
        if align == PAGE:
            assert a == fits[0][0]
        else:
            assert a <= next(f for f, n in fits if n >= span + align - 1)
            skipped += a != fits[0][0]
        live.append(a)
    assert skipped  # the pruning did happen in this sequence


def test_ioremap_maps_uncached_with_huge_leaves_where_aligned(run: Run) -> None:
    k, d = run.k, run.d
    r = k.vmap.areas[run.ioapic & ~(PAGE - 1)]
    assert r.flags == V.VM_IOREMAP and r.phys_addr == 0xFEC00000 and r.size == 2 * PAGE
    entry, _at, level = k.pt.lookup_address(run.ioapic)
    assert level == 1 and entry & x86._PAGE_PCD and not entry & x86._PAGE_PWT and entry & x86._PAGE_NX
    assert entry & x86.PTE_PFN_MASK == 0xFEC00000
    # 4 MiB at a 2 MiB-aligned physical address: 4 MiB-aligned virtual, two PMD leaves.
    assert run.mmio % (4 << 20) == 0
    for off in (0, 2 << 20):
        entry, _at, level = k.pt.lookup_address(run.mmio + off)
        assert level == 2 and entry & x86._PAGE_PSE and entry & x86.PTE_PFN_MASK == 0xE0000000 + off
    from drgn.helpers.linux.mm import follow_phys

    assert follow_phys(d["init_mm"].address_of_(), run.mmio + 0x201234).value_() == 0xE0201234
    # the first MiB's reserved RAM may be mapped; ordinary RAM may not.
    assert run.ram_refused == 0 and any("ioremap on RAM" in line for line in k.log)
    # the ACPI tables are mapped write-back (ioremap_cache).
    acpi = next(r for r in k.vmap.areas.values() if r.flags & V.VM_IOREMAP and r.size > 0x10000)
    entry, _at, _level = k.pt.lookup_address(acpi.addr)
    assert not entry & (x86._PAGE_PCD | x86._PAGE_PWT)


def test_page_tables_are_typed_accounted_and_preallocated(run: Run) -> None:
    k, d = run.k, run.d
    # preallocate_vmalloc_pages(): PGD slots 402..465 all point to a PUD page.
    slots = [i for i in range(512) if k.pt.entry(k.pt.pgd, i) & 1]
    assert set(range(402, 466)) <= set(slots)
    from mmintro.reader import open_snapshot
    from mmintro.reader.columns import page_array

    pages = page_array(open_snapshot(run.path), {"page_type": "page_type", "flags": "flags"})
    typed = pages["page_type"] == T.const("PGTY_table") << 24
    nr = int(typed.sum())
    stat = d["vm_node_stat"][T.const("NR_PAGETABLE")].counter.value_()
    assert nr == stat == sum(x.get("NR_PAGETABLE", 0) for x in k.node_vm_stat)
    assert run.boot_pagetables >= 64 and nr > run.boot_pagetables
    assert ((pages["flags"][typed] >> T.const("PT_kernel")) & 1).all()  # ptdesc_set_kernel()
    # __pud_alloc()/__pmd_alloc() count in init_mm.pgtables_bytes; PTE tables do not.
    pmds = puds = 0
    for i in range(402, 466):
        pud = k.pt.entry(k.pt.pgd, i) & x86.PTE_PFN_MASK
        puds += 1
        pmds += sum(1 for j in range(512) if k.pt.entry(pud, j) & 1)
    assert d["init_mm"].pgtables_bytes.counter.value_() == (puds + pmds) * PAGE
