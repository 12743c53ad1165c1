"""HugeTLB pages (mm/hugetlb.c, arch/x86/mm/hugetlbpage.c, fs/hugetlbfs/inode.c) of Linux 6.18.

The hstates
    The command line's ``hugepagesz=``/``default_hugepagesz=`` register theirs first, in order
    (hugetlb_parse_params() from setup_arch's hugetlb_bootmem_alloc, 6.15+); then x86's
    gigantic_pages_init() (arch_initcall) registers the 1 GiB hstate if they did not, and
    hugetlb_init() (subsys_initcall) adds HUGETLB_PAGE_ORDER (2 MiB) and makes it the default
    unless ``default_hugepagesz=`` chose one.  Without options ``hstates[0]`` is
    ``hugepages-1048576kB``, ``hstates[1]`` is ``hugepages-2048kB``, ``hugetlb_max_hstate`` 2 and
    ``default_hstate_idx`` 1, as drgn's for_each_hstate() docstring shows on a real x86 kernel.
    MachineConfig.hugepages_1g/hugepages_2m stand for ``hugepagesz=1G hugepages=N hugepagesz=2M
    hugepages=M``, which keeps that order.
    hugetlb_add_hstate() initialises the resize mutex, order, mask, the per-node free lists and
    the active list, and the name; hugetlb_init_hstates() sets demote_order (1 GiB -> 2 MiB:
    gigantic pages can be demoted at run time with CONTIG_ALLOC).

The pools
    * 1 GiB pages come from memblock before the buddy allocator exists (x86 setup_arch() ->
      hugetlb_bootmem_alloc() -> hugetlb_hstate_alloc_pages() -> alloc_bootmem_huge_page():
      memblock_alloc_try_nid_raw(1G, 1G, ...), interleaved over the nodes with
      h->next_nid_to_alloc); each page holds its ``struct huge_bootmem_page`` on the
      per-node ``huge_boot_pages`` list until hugetlb_init()'s gather_bootmem_prealloc() turns
      it into a folio (hugetlb_folio_init_vmemmap: PG_reserved cleared, compound head and
      tails, refcount frozen at 0), gives its pages back to totalram / zone managed pages
      (adjust_managed_page_count) and enqueues it.
    * 2 MiB pages come from the buddy allocator: alloc_pool_huge_folio() interleaves over the
      nodes (hstate_next_node_to_alloc) asking for ``htlb_alloc_mask(h) | __GFP_THISNODE`` =
      GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOWARN | __GFP_THISNODE, plus
      __GFP_RETRY_MAYFAIL (alloc_buddy_hugetlb_folio trying hard) -- at boot in
      hugetlb_init_hstates() (``hugepagesz=2M hugepages=N``, in the padata chunks of
      hugetlb_pages_alloc_boot(), each interleaving from the first node) and at run time by :func:`set_nr_hugepages` (the
      nr_hugepages sysctl: set_max_huge_pages()).  The folio is frozen (refcount 0),
      init_new_hugetlb_folio() makes it PGTY_hugetlb, and account_new_hugetlb_folio() /
      enqueue_hugetlb_folio() put it on ``h->hugepage_freelists[nid]`` (folio->lru, list head
      first) with HPG_freed in folio->private.
    * Shrinking (set_max_huge_pages() -> remove_pool_hugetlb_folio() with
      h->next_nid_to_free, update_and_free_hugetlb_folio()) gives free folios back to the buddy
      allocator (1 GiB ones as free_contig_range() would, in MAX_PAGE_ORDER blocks).

hugetlbfs and mappings
    init_hugetlbfs_fs() creates ``hugetlbfs_inode_cache`` and one internal mount per hstate;
    :func:`hugetlb_mmap` is MAP_HUGETLB (hugetlb_file_setup's unlinked "anon_hugepage" inode
    and pseudo file, a huge-page-aligned top-down area, VM_HUGETLB | VM_DONTEXPAND, the
    reservation: a private owner's resv_map, or the inode's for MAP_SHARED; surplus pages
    within nr_overcommit_hugepages).  :func:`hugetlb_fault` is hugetlb_no_page / hugetlb_wp
    (PMD leaf for 2 MiB, PUD leaf for 1 GiB; private pages anonymous, shared ones in the
    inode's page cache at ``idx << order``), with fork (:func:`copy_hugetlb_page_range`),
    unmap, free_huge_folio, the vm_ops open/close and inode eviction.

Counters live in Python (:class:`Hstate`) and are written into ``hstates[]`` with the lists
by a sync hook.  Not modelled: struct file_region entries and hugetlb_vma_lock (not in the
type data), subpools (no size= mounts), hugetlb cgroups, PMD sharing, vmemmap optimisation
(HVO is off by the sysctl), CMA, migration in alloc_contig_pages (only fully free ranges are
taken), demotion, and unmap_ref_private (an owner's CoW takes an unreserved page or fails).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.kernel.mm_init import memmap_update
from mmintro.kernel.sparse import PFN_SECTION_SHIFT
from mmintro.types import get_types

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "HUGETLB_PAGE_ORDER",
    "PUD_ORDER",
    "Hstate",
    "copy_hugetlb_page_range",
    "default_hstate",
    "free_huge_folio",
    "gather_bootmem_prealloc",
    "hstate_for_size",
    "hugetlb_add_hstate",
    "hugetlb_bootmem_alloc",
    "hugetlb_fault",
    "hugetlb_init",
    "hugetlb_mmap",
    "hugetlb_parse_params",
    "hugetlb_vm_op_close",
    "hugetlb_vm_op_open",
    "set_nr_hugepages",
    "set_nr_overcommit_hugepages",
    "unmap_hugepage_range",
]

_T = get_types()

# arch/x86/include/asm/page_types.h: HPAGE_SHIFT = PMD_SHIFT (21); HUGETLB_PAGE_ORDER =
# HPAGE_SHIFT - PAGE_SHIFT.  PUD_SHIFT = 30 (arch/x86/include/asm/pgtable_64_types.h).
HUGETLB_PAGE_ORDER = 21 - PAGE_SHIFT
PUD_ORDER = 30 - PAGE_SHIFT
HUGE_MAX_HSTATE = _T.var_type("hstates").resolved().nelems
MAX_NUMNODES = _T.struct("hstate").walk("hugepage_freelists")[2].resolved().nelems
# enum hugetlb_page_flags (include/linux/hugetlb.h): bits of the head page's folio->private.
HPG_restore_reserve = _T.const("HPG_restore_reserve")
HPG_migratable = _T.const("HPG_migratable")
HPG_freed = _T.const("HPG_freed")
PGTY_HUGETLB = _T.const("PGTY_hugetlb") << 24
HTLB_BUDDY_PGALLOC = _T.const("HTLB_BUDDY_PGALLOC")
HTLB_BUDDY_PGALLOC_FAIL = _T.const("HTLB_BUDDY_PGALLOC_FAIL")

_W = page_alloc


def htlb_alloc_mask(h: Hstate) -> int:
    """include/linux/hugetlb.h htlb_alloc_mask(): __GFP_COMP | __GFP_NOWARN, and
    GFP_HIGHUSER_MOVABLE when hugepage_movable_supported() (not for gigantic pages)."""
    gfp = G.FLAGS["__GFP_COMP"] | G.FLAGS["__GFP_NOWARN"]
    return gfp | (G.GFP_HIGHUSER if h.gigantic else G.GFP_HIGHUSER_MOVABLE)


@dataclass
class Hstate:
    """The books of one ``struct hstate`` (written into ``hstates[idx]`` at sync)."""

    idx: int
    addr: int
    order: int
    nodes: int
    demote_order: int = 0
    max_huge_pages: int = 0
    nr_huge_pages: int = 0
    free_huge_pages: int = 0
    resv_huge_pages: int = 0
    surplus_huge_pages: int = 0
    nr_overcommit_huge_pages: int = 0
    next_nid_to_alloc: int = 0
    next_nid_to_free: int = 0
    max_huge_pages_node: list[int] = field(default_factory=list)  # hugepages=NODE:N at boot
    nr_huge_pages_node: list[int] = field(default_factory=list)
    free_huge_pages_node: list[int] = field(default_factory=list)
    surplus_huge_pages_node: list[int] = field(default_factory=list)
    freelists: list[list[int]] = field(default_factory=list)  # per node, pfns from the list head
    activelist: list[int] = field(default_factory=list)  # pfns from the list head

    def __post_init__(self) -> None:
        n = self.nodes
        self.max_huge_pages_node = [0] * n
        self.nr_huge_pages_node = [0] * n
        self.free_huge_pages_node = [0] * n
        self.surplus_huge_pages_node = [0] * n
        self.freelists = [[] for _ in range(n)]

    @property
    def size(self) -> int:
        return PAGE_SIZE << self.order

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    @property
    def gigantic(self) -> bool:
        """hstate_is_gigantic(): order > MAX_PAGE_ORDER (the buddy cannot give it)."""
        return self.order > page_alloc.MAX_PAGE_ORDER

    @property
    def name(self) -> str:
        return f"hugepages-{self.size >> 10}kB"

    def persistent_huge_pages(self) -> int:
        return self.nr_huge_pages - self.surplus_huge_pages


# -- struct page words of a folio -------------------------------------------------------------
def _words(k: Kernel, pfn: int):
    mv64, mv32, base, _a = k.memmap_words[pfn >> PFN_SECTION_SHIFT]
    return mv64, mv32, base + pfn * 8


def folio_nid(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = _words(k, pfn)
    return mv64[w + _W.W_FLAGS] >> _W.kc.NODES_PGOFF


def folio_test_hugetlb(k: Kernel, pfn: int) -> bool:
    _mv64, mv32, w = _words(k, pfn)
    return mv32[2 * w + _W.D_PAGE_TYPE] >> 24 == PGTY_HUGETLB >> 24


def _set_private_bit(k: Kernel, pfn: int, bit: int, on: bool) -> None:
    mv64, _mv32, w = _words(k, pfn)
    if on:
        mv64[w + _W.W_PRIVATE] |= 1 << bit
    else:
        mv64[w + _W.W_PRIVATE] &= ~(1 << bit)


def folio_ref_count(k: Kernel, pfn: int) -> int:
    _mv64, mv32, w = _words(k, pfn)
    return mv32[2 * w + _W.D_REFCOUNT]


def _set_refcount(k: Kernel, pfn: int, v: int) -> None:
    _mv64, mv32, w = _words(k, pfn)
    mv32[2 * w + _W.D_REFCOUNT] = v


def init_new_hugetlb_folio(k: Kernel, h: Hstate, pfn: int) -> None:
    """init_new_hugetlb_folio(): __folio_set_hugetlb (page_type = PGTY_hugetlb << 24 on the
    head), INIT_LIST_HEAD(&folio->lru), no subpool, no hugetlb cgroups."""
    mv64, mv32, w = _words(k, pfn)
    mv32[2 * w + _W.D_PAGE_TYPE] = PGTY_HUGETLB
    head = k.pfn_to_page(pfn)
    mv64[w + _W.W_LRU_NEXT] = head + _W.LRU_OFF
    mv64[w + _W.W_LRU_PREV] = head + _W.LRU_OFF
    for f in ("_hugetlb_subpool", "_hugetlb_cgroup", "_hugetlb_cgroup_rsvd"):
        k.kmem.set(head, "folio", f, 0)


def prep_compound_gigantic(k: Kernel, pfn: int, order: int) -> None:
    """hugetlb_folio_init_vmemmap() / prep_compound_page() over a range that spans several
    memory sections: PG_reserved cleared, tails pointing at the head (compound_head | 1,
    mapping TAIL_MAPPING), refcounts 0, then prep_compound_head() on the head."""
    n = 1 << order
    head_addr = k.pfn_to_page(pfn)
    memmap_update(k, pfn, n, "flags", "and", ~(1 << _W.PG_reserved))
    memmap_update(k, pfn, n, "refcount", "set", 0)
    memmap_update(k, pfn + 1, n - 1, "mapping", "set", _W.TAIL_MAPPING)
    memmap_update(k, pfn + 1, n - 1, "lru_next", "set", head_addr | 1)  # compound_head
    memmap_update(k, pfn + 1, n - 1, "private", "set", 0)
    mv64, mv32, w = _words(k, pfn)
    mv64[w + _W.W_FLAGS] |= 1 << _W.PG_head
    mv64[w + _W.FW_FLAGS_1] = (mv64[w + _W.FW_FLAGS_1] & ~0xFF) | order
    mv32[2 * w + _W.FD_NR_PAGES] = n
    mv32[2 * w + _W.FD_LARGE_MAPCOUNT] = 0xFFFFFFFF
    mv32[2 * w + _W.FD_NR_PAGES_MAPPED] = 0
    mv64[w + _W.FW_MM_IDS] = 0
    mv32[2 * w + _W.FD_MM_ID_MAPCOUNT] = 0xFFFFFFFF
    mv32[2 * w + _W.FD_MM_ID_MAPCOUNT + 1] = 0xFFFFFFFF
    mv32[2 * w + _W.FD_PINCOUNT] = 0
    mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] = 0xFFFFFFFF
    dl = head_addr + _T.struct("folio").offsetof("_deferred_list")
    mv64[w + _W.FW_DEFERRED_LIST] = dl
    mv64[w + _W.FW_DEFERRED_LIST + 1] = dl


def destroy_compound_gigantic(k: Kernel, pfn: int, order: int) -> None:
    """What free_contig_range() needs of a dissolved gigantic folio: no compound head or
    tails, no type, refcount 1 on every page (each is then freed)."""
    n = 1 << order
    mv64, mv32, w = _words(k, pfn)
    mv64[w + _W.FW_FLAGS_1] &= ~_W.PAGE_FLAGS_SECOND
    mv32[2 * w + _W.FD_NR_PAGES] = 0
    for name in ("mapping", "lru_next", "lru_prev", "private"):
        memmap_update(k, pfn, n, name, "set", 0)
    memmap_update(k, pfn, n, "flags", "and", ~(1 << _W.PG_head))
    memmap_update(k, pfn, n, "page_type", "set", _W.PAGE_TYPE_NONE)


# -- the hstates ------------------------------------------------------------------------------
def _state(k: Kernel) -> list[Hstate]:
    return k.__dict__.setdefault("hstates", [])


def hugetlb_add_hstate(k: Kernel, order: int) -> Hstate:
    """mm/hugetlb.c hugetlb_add_hstate(): ``hstates[hugetlb_max_hstate++]`` with its resize
    mutex, order, mask, empty free lists (all MAX_NUMNODES of them) and active list, and
    its name ``hugepages-<size>kB``.  A size registered twice is kept once."""
    hs = _state(k)
    for h in hs:
        if h.order == order:
            return h
    if len(hs) >= HUGE_MAX_HSTATE:
        raise ValueError("hugetlb_add_hstate: HUGE_MAX_HSTATE reached")
    km = k.kmem
    stride = k.T.sizeof("struct hstate")
    addr = k.sym("hstates") + stride * len(hs)
    h = Hstate(len(hs), addr, order, k.config.nodes)
    hs.append(h)
    # __mutex_init(): owner 0, wait_lock unlocked, wait_list empty
    km.init_list_head(km.addr(addr, "hstate", "resize_lock.wait_list"))
    km.set(addr, "hstate", "order", order)
    km.set(addr, "hstate", "mask", ~(h.size - 1) & 0xFFFFFFFFFFFFFFFF)
    lh = k.T.sizeof("struct list_head")
    base = km.addr(addr, "hstate", "hugepage_freelists")
    for i in range(MAX_NUMNODES):
        km.init_list_head(base + i * lh)
    km.init_list_head(km.addr(addr, "hstate", "hugepage_activelist"))
    km.write_bytes(km.addr(addr, "hstate", "name"), h.name.encode() + b"\0")
    k.write_int("hugetlb_max_hstate", len(hs))
    return h


def hstate_for_size(k: Kernel, size: int) -> Hstate:
    """size_to_hstate(): the hstate of ``size`` bytes (2M or 1G)."""
    for h in _state(k):
        if h.size == size:
            return h
    raise ValueError(f"no hstate for huge page size {size:#x} (hstates: 2M, 1G)")


def _next_node(cur: int, nodes: list[int]) -> int:
    """next_node_allowed(): the next node of the mask after ``cur``, wrapping."""
    after = [n for n in nodes if n > cur]
    return after[0] if after else nodes[0]


def hstate_next_node_to_alloc(h: Hstate, nodes: list[int], attr: str = "next_nid_to_alloc") -> int:
    """hstate_next_node_to_alloc() (get_valid_node_allowed + next_node_allowed) on
    ``h.<attr>`` (or on a caller's cursor when ``attr`` names one of a dict)."""
    cur = getattr(h, attr)
    nid = cur if cur in nodes else _next_node(cur, nodes)
    setattr(h, attr, _next_node(nid, nodes))
    return nid


# -- boot: the command line's hstates, gigantic pages from memblock ------------------------------
def default_hstate(k: Kernel) -> Hstate:
    """``default_hstate``: hstates[default_hstate_idx]."""
    return _state(k)[k.__dict__.get("default_hstate_idx", 0)]


@dataclass
class _HugetlbCmdline:
    """mm/hugetlb.c's __initdata command-line state (parsed_hstate and friends)."""

    nodes: int
    parsed_hstate: Hstate | None = None
    parsed_valid_hugepagesz: bool = True
    parsed_default_hugepagesz: bool = False
    default_hstate_max_huge_pages: int = 0
    default_hugepages_in_node: list[int] = field(default_factory=list)
    last_mhp: object = None  # hugepages_setup()'s static last_mhp

    def __post_init__(self) -> None:
        self.default_hugepages_in_node = [0] * self.nodes


def _size_of(s: str) -> int:
    from mmintro.kernel.cmdline import memparse

    return memparse(s)[0]


def _size_to_hstate(k: Kernel, size: int) -> Hstate | None:
    return next((h for h in _state(k) if h.size == size), None)


def _add_hstate(k: Kernel, st: _HugetlbCmdline, order: int) -> None:
    """hugetlb_add_hstate(): a size already registered is left alone (parsed_hstate too)."""
    if _size_to_hstate(k, PAGE_SIZE << order) is None:
        st.parsed_hstate = hugetlb_add_hstate(k, order)


def hugepages_setup(k: Kernel, st: _HugetlbCmdline, s: str) -> None:
    """hugepages_setup(): ``hugepages=N`` (or ``NODE:N,...``) for the hstate of the last valid
    ``hugepagesz=``/``default_hugepagesz=``, or, before any, for the default size."""
    if not st.parsed_valid_hugepagesz:
        k.printk(4, f"HugeTLB: hugepages={s} does not follow a valid hugepagesz, ignoring")
        st.parsed_valid_hugepagesz = True
        return
    target = "default" if not _state(k) else st.parsed_hstate
    if target is st.last_mhp:
        k.printk(4, f"HugeTLB: hugepages= specified twice without interleaving hugepagesz=, ignoring hugepages={s}")
        return
    if ":" not in s:
        n = int(s)
        if target == "default":
            st.default_hstate_max_huge_pages = n
        else:
            target.max_huge_pages = n  # type: ignore[union-attr]
    else:
        for item in s.split(","):  # node format (the nodes were checked online by MachineConfig)
            node, n = (int(x) for x in item.split(":"))
            if target == "default":
                st.default_hugepages_in_node[node] = n
                st.default_hstate_max_huge_pages += n
            else:
                target.max_huge_pages_node[node] = n  # type: ignore[union-attr]
                target.max_huge_pages += n  # type: ignore[union-attr]
    st.last_mhp = target


def hugepagesz_setup(k: Kernel, st: _HugetlbCmdline, s: str) -> None:
    """hugepagesz_setup(): register the size; a size registered before is refused unless it is
    the default_hugepagesz= one with no count yet."""
    size = _size_of(s)
    st.parsed_valid_hugepagesz = False
    h = _size_to_hstate(k, size)
    if h is not None:
        d = default_hstate(k)
        if not st.parsed_default_hugepagesz or h is not d or d.max_huge_pages:
            k.printk(4, f"HugeTLB: hugepagesz={s} specified twice, ignoring")
            return
        st.parsed_hstate = h
        st.parsed_valid_hugepagesz = True
        return
    _add_hstate(k, st, size.bit_length() - 1 - PAGE_SHIFT)
    st.parsed_valid_hugepagesz = True


def default_hugepagesz_setup(k: Kernel, st: _HugetlbCmdline, s: str) -> None:
    """default_hugepagesz_setup(): register the size and make it the default; a count given
    before it by a bare ``hugepages=`` becomes the default hstate's."""
    st.parsed_valid_hugepagesz = False
    if st.parsed_default_hugepagesz:
        k.printk(3, f"HugeTLB: default_hugepagesz previously specified, ignoring {s}")
        return
    size = _size_of(s)
    _add_hstate(k, st, size.bit_length() - 1 - PAGE_SHIFT)
    st.parsed_valid_hugepagesz = True
    st.parsed_default_hugepagesz = True
    _set_default_hstate_idx(k, _state(k).index(_size_to_hstate(k, size)))  # type: ignore[arg-type]
    if st.default_hstate_max_huge_pages:
        d = default_hstate(k)
        d.max_huge_pages = st.default_hstate_max_huge_pages
        for i, n in enumerate(st.default_hugepages_in_node):
            if n:
                d.max_huge_pages_node[i] = n
        st.default_hstate_max_huge_pages = 0


def _set_default_hstate_idx(k: Kernel, idx: int) -> None:
    k.default_hstate_idx = idx
    if "default_hstate_idx" in k.image.symbols:
        k.write_int("default_hstate_idx", idx)


def hugetlb_parse_params(k: Kernel) -> None:
    """hugetlb_parse_params(): the stored ``hugepagesz=``/``hugepages=``/``default_hugepagesz=``
    parameters (hugetlb_add_param) run in command-line order, now that the nodes are known."""
    st = _HugetlbCmdline(k.config.nodes)
    k.hugetlb_cmdline = st
    setup = {
        "hugepages": hugepages_setup,
        "hugepagesz": hugepagesz_setup,
        "default_hugepagesz": default_hugepagesz_setup,
    }
    for name, value in k.config.huge_params():
        setup[name](k, st, value)


def memblock_alloc_exact_nid_raw(k: Kernel, size: int, align: int, nid: int) -> int | None:
    """memblock_alloc_exact_nid_raw(): the highest free aligned range on node ``nid`` only."""
    top = k.memblock.current_limit
    for start, end, _n in reversed(k.memblock.free_ranges(nid)):
        base = (min(end, top) - size) // align * align
        if base >= start:
            k.memblock.reserve(base, size)
            return base
    return None


def alloc_bootmem(k: Kernel, h: Hstate, nid: int, node_exact: bool) -> int | None:
    """alloc_bootmem(): a gigantic page from memblock (exactly on ``nid``, or trying it first),
    its huge_bootmem_page on the list of the node it came from."""
    from mmintro.kernel.memblock import MemblockError

    if node_exact:
        m = memblock_alloc_exact_nid_raw(k, h.size, h.size, nid)
    else:
        try:
            m = k.memblock.alloc(h.size, h.size, nid=nid)  # memblock_alloc_try_nid_raw
        except MemblockError:
            m = None
    if m is None:
        return None
    boot = k.__dict__.setdefault("huge_boot_pages", {})  # nid -> [(paddr of huge_bootmem_page, hstate idx)]
    boot.setdefault(k.memblock.node_of(m), []).insert(0, (m, h.idx))  # list_add(&m->list, &huge_boot_pages[node])
    return m


def hugetlb_hstate_alloc_pages_onenode(k: Kernel, h: Hstate, nid: int) -> None:
    """hugetlb_hstate_alloc_pages_onenode(): ``hugepages=NODE:N`` -- gigantic pages exactly on the
    node from memblock, others from the buddy with __GFP_THISNODE; a shortfall is logged and
    taken off max_huge_pages."""
    want = h.max_huge_pages_node[nid]
    folios: list[int] = []
    i = 0
    while i < want:
        if h.gigantic:
            if alloc_bootmem(k, h, nid, True) is None:
                break
        else:
            gfp = htlb_alloc_mask(h) | G.FLAGS["__GFP_THISNODE"]
            pfn = only_alloc_fresh_hugetlb_folio(k, h, gfp, nid, frozenset(range(k.config.nodes)), None)
            if pfn is None:
                break
            folios.insert(0, pfn)  # list_add(&folio->lru, &folio_list)
        i += 1
    if folios:
        prep_and_add_allocated_folios(k, h, folios)
    if i == want:
        return
    k.printk(
        4,
        f"HugeTLB: allocating {want} of page size {_string_get_size(h.size)} failed node{nid}.  "
        f"Only allocated {i} hugepages.",
    )
    h.max_huge_pages -= want - i
    h.max_huge_pages_node[nid] = i


def hugetlb_hstate_alloc_pages_errcheck(k: Kernel, allocated: int, h: Hstate) -> None:
    if allocated < h.max_huge_pages:
        k.printk(
            4,
            f"HugeTLB: allocating {h.max_huge_pages} of page size {_string_get_size(h.size)} failed.  "
            f"Only allocated {allocated} hugepages.",
        )
        h.max_huge_pages = allocated


def hugetlb_hstate_alloc_pages(k: Kernel, h: Hstate) -> None:
    """hugetlb_hstate_alloc_pages(): the boot pool -- node-specific counts if any were given,
    else interleaved over the nodes (gigantic: one memblock page after another from
    h->next_nid_to_alloc, stopping at the first node that has none; others:
    hugetlb_pages_alloc_boot)."""
    if not h.max_huge_pages:
        return
    specific = False
    for nid in range(k.config.nodes):  # hugetlb_hstate_alloc_pages_specific_nodes()
        if h.max_huge_pages_node[nid] > 0:
            hugetlb_hstate_alloc_pages_onenode(k, h, nid)
            specific = True
    if specific:
        return
    if h.gigantic:
        allocated = 0
        nodes = list(range(k.config.nodes))
        for _ in range(h.max_huge_pages):  # hugetlb_gigantic_pages_alloc_boot()
            nid = hstate_next_node_to_alloc(h, nodes)  # __alloc_bootmem_huge_page(h, NUMA_NO_NODE)
            if alloc_bootmem(k, h, nid, False) is None:
                break
            allocated += 1
    else:
        allocated = hugetlb_pages_alloc_boot(k, h)
    hugetlb_hstate_alloc_pages_errcheck(k, allocated, h)


def hugetlb_bootmem_alloc(k: Kernel) -> None:
    """x86 setup_arch() -> hugetlb_bootmem_alloc() (after the NUMA nodes are known, before
    paging_init/sparse_init): hugetlb_parse_params() registers the command line's hstates in
    order, then each gigantic one gets its ``hugepages=`` from memblock.  gigantic_pages_init()
    (arch_initcall) registers the 1 GiB hstate afterwards when the command line did not."""
    hugetlb_parse_params(k)
    for h in _state(k):
        h.next_nid_to_alloc = 0  # first_online_node
        if h.gigantic:
            hugetlb_hstate_alloc_pages(k, h)
    if _size_to_hstate(k, PAGE_SIZE << PUD_ORDER) is None:
        hugetlb_add_hstate(k, PUD_ORDER)  # gigantic_pages_init()


def _write_bootmem_pages(k: Kernel) -> None:
    """The struct huge_bootmem_page each boot page holds at its start (alloc_bootmem: m->flags,
    m->cma, then m->hstate); the bytes stay behind in the free page, which nothing zeroes
    before a fault.  Its list links pointed into huge_boot_pages[], __initdata freed after
    boot: not modelled (zero)."""
    km = k.kmem
    for entries in k.__dict__.get("huge_boot_pages", {}).values():
        for m, idx in entries:
            va = k.phys_to_virt(m)
            km.set(va, "huge_bootmem_page", "hstate", _state(k)[idx].addr)
            km.set(va, "huge_bootmem_page", "flags", 0)
            km.set(va, "huge_bootmem_page", "cma", 0)


def gather_bootmem_prealloc(k: Kernel) -> None:
    """gather_bootmem_prealloc() -> gather_bootmem_prealloc_node() for each node's list:
    hugetlb_folio_init_vmemmap() + init_new_hugetlb_folio(), adjust_managed_page_count()
    (the pages go back into totalram and the zone's managed pages), then
    prep_and_add_bootmem_folios(): account_new_hugetlb_folio() and enqueue_hugetlb_folio()."""
    _write_bootmem_pages(k)
    hs = _state(k)
    for nid in sorted(k.__dict__.get("huge_boot_pages", {})):
        folio_list: list[tuple[int, Hstate]] = []
        for m, idx in k.huge_boot_pages[nid]:  # list_for_each_entry(m, &huge_boot_pages[nid], list)
            h = hs[idx]
            pfn = m >> PAGE_SHIFT
            prep_compound_gigantic(k, pfn, h.order)
            init_new_hugetlb_folio(k, h, pfn)
            folio_list.insert(0, (pfn, h))  # list_add(&folio->lru, &folio_list)
            z = page_alloc.page_zone(k, pfn)
            z.managed += h.nr_pages  # adjust_managed_page_count()
            k.totalram_pages += h.nr_pages
        for pfn, h in folio_list:
            account_new_hugetlb_folio(k, h, pfn)
            enqueue_hugetlb_folio(k, h, pfn)
    k.kmem.write_u64(k.sym("_totalram_pages"), k.totalram_pages)


# -- the pools ----------------------------------------------------------------------------------
def account_new_hugetlb_folio(k: Kernel, h: Hstate, pfn: int) -> None:
    h.nr_huge_pages += 1
    h.nr_huge_pages_node[folio_nid(k, pfn)] += 1


def enqueue_hugetlb_folio(k: Kernel, h: Hstate, pfn: int) -> None:
    """enqueue_hugetlb_folio(): list_move(&folio->lru, &h->hugepage_freelists[nid]), the free
    counters, folio_set_hugetlb_freed()."""
    nid = folio_nid(k, pfn)
    if pfn in h.activelist:
        h.activelist.remove(pfn)
    h.freelists[nid].insert(0, pfn)
    h.free_huge_pages += 1
    h.free_huge_pages_node[nid] += 1
    _set_private_bit(k, pfn, HPG_freed, True)


def dequeue_hugetlb_folio_node_exact(k: Kernel, h: Hstate, nid: int) -> int | None:
    """The first folio of the node's free list: onto the active list, refcount unfrozen to 1,
    HPG_freed cleared, the free counters."""
    if not h.freelists[nid]:
        return None
    pfn = h.freelists[nid].pop(0)
    h.activelist.insert(0, pfn)
    _set_refcount(k, pfn, 1)
    _set_private_bit(k, pfn, HPG_freed, False)
    h.free_huge_pages -= 1
    h.free_huge_pages_node[nid] -= 1
    return pfn


def alloc_buddy_hugetlb_folio(
    k: Kernel, order: int, gfp: int, nid: int, nodemask, noretry: set[int] | None
) -> int | None:
    """alloc_buddy_hugetlb_folio(): __GFP_RETRY_MAYFAIL unless the node already failed,
    __alloc_frozen_pages(), HTLB_BUDDY_PGALLOC(_FAIL)."""
    try_hard = not (noretry is not None and nid in noretry)
    if try_hard:
        gfp |= G.FLAGS["__GFP_RETRY_MAYFAIL"]
    pfn = k.alloc_pages(gfp, order, nid, nodemask)
    if noretry is not None and pfn is None and try_hard:
        noretry.add(nid)
    if pfn is None:
        k.vm_events[k.current_cpu][HTLB_BUDDY_PGALLOC_FAIL] += 1
        return None
    _set_refcount(k, pfn, 0)  # a frozen allocation
    k.vm_events[k.current_cpu][HTLB_BUDDY_PGALLOC] += 1
    return pfn


def alloc_contig_pages(k: Kernel, order: int, nid: int) -> int | None:
    """folio_alloc_gigantic() -> alloc_contig_pages() without migration: the first naturally
    aligned range of the node's zones (zonelist order, highest zone first) whose pages are all
    free buddy pages; drain the per-CPU lists first, take the blocks off the free lists."""
    page_alloc.drain_all_pages(k)
    n = 1 << order
    for z in k.zonelist[nid][1]:
        if not z.spanned:
            continue
        start = -(-z.start_pfn // n) * n
        while start + n <= z.end_pfn:
            blocks = []
            p = start
            while p < start + n:
                mv64, mv32, w = _words(k, p) if (p >> PFN_SECTION_SHIFT) in k.memmap_words else (None, None, 0)
                if mv32 is None or mv32[2 * w + _W.D_PAGE_TYPE] != _W.PGTY_BUDDY:
                    break
                o = mv64[w + _W.W_PRIVATE]
                blocks.append((p, o))
                p += 1 << o
            if p >= start + n:
                for bp, o in blocks:
                    page_alloc._del_page_from_free_list(k, z, bp, o)
                    mt = page_alloc.get_pfnblock_migratetype(k, bp)
                    page_alloc.account_freepages(z, -(1 << o), mt)
                    mv64, mv32, w = _words(k, bp)
                    mv32[2 * w + _W.D_PAGE_TYPE] = _W.PAGE_TYPE_NONE
                    mv64[w + _W.W_PRIVATE] = 0
                k.allocations[start] = order
                return start
            start += n
    return None


def only_alloc_fresh_hugetlb_folio(
    k: Kernel, h: Hstate, gfp: int, nid: int, nodemask, noretry: set[int] | None
) -> int | None:
    if h.gigantic:
        pfn = alloc_contig_pages(k, h.order, nid)
        if pfn is not None:
            prep_compound_gigantic(k, pfn, h.order)
    else:
        pfn = alloc_buddy_hugetlb_folio(k, h.order, gfp, nid, nodemask, noretry)
    if pfn is not None:
        init_new_hugetlb_folio(k, h, pfn)
    return pfn


def alloc_pool_huge_folio(
    k: Kernel, h: Hstate, nodes: list[int], noretry: set[int] | None, cursor: dict | None = None
) -> int | None:
    """alloc_pool_huge_folio(): for_each_node_mask_to_alloc over ``nodes`` from the cursor
    (h->next_nid_to_alloc, or the boot thread's own next_node), gfp htlb_alloc_mask(h) |
    __GFP_THISNODE."""
    gfp = htlb_alloc_mask(h) | G.FLAGS["__GFP_THISNODE"]
    for _ in range(len(nodes)):
        if cursor is None:
            nid = hstate_next_node_to_alloc(h, nodes)
        else:
            cur = cursor["next"]
            nid = cur if cur in nodes else _next_node(cur, nodes)
            cursor["next"] = _next_node(nid, nodes)
        pfn = only_alloc_fresh_hugetlb_folio(k, h, gfp, nid, frozenset(nodes), noretry)
        if pfn is not None:
            return pfn
    return None


def prep_and_add_allocated_folios(k: Kernel, h: Hstate, folios: list[int]) -> None:
    """account + enqueue each folio of the list (list order: head first)."""
    for pfn in folios:
        account_new_hugetlb_folio(k, h, pfn)
        enqueue_hugetlb_folio(k, h, pfn)


def hugetlb_pages_alloc_boot(k: Kernel, h: Hstate) -> int:
    """hugetlb_pages_alloc_boot(): padata_do_multithreaded() over [0, max_huge_pages) with
    hugepage_allocation_threads = ``hugepage_alloc_threads=``, else max(num_online_cpus() / 4, 1),
    threads and min_chunk = max_huge_pages / threads; each chunk runs hugetlb_pages_alloc_boot_node() (its own next_node from the first online node, folios
    collected with list_move then added).  Chunks run here one after the other; the
    "allocation took" line reports 0 ms of simulated time."""
    size = h.max_huge_pages
    nodes = list(range(k.config.nodes))
    threads = k.config.hugepage_alloc_threads or max(k.config.cpus // 4, 1)  # hugepage_alloc_threads=
    min_chunk = size // threads
    # padata_do_multithreaded(): nworks, then chunks of size / (nworks * load_balance_factor 4)
    nworks = min(max(size // max(min_chunk, 1), 1), threads)
    if nworks == 1:
        chunks = [(0, size)]
    else:
        chunk = max(size // (nworks * 4), min_chunk, 1)
        chunks = [(s, min(s + chunk, size)) for s in range(0, size, chunk)]
    allocated = 0
    for start, end in chunks:
        cursor = {"next": nodes[0]}
        noretry: set[int] = set()
        folio_list: list[int] = []
        for _ in range(end - start):
            pfn = alloc_pool_huge_folio(k, h, nodes, noretry, cursor)
            if pfn is None:
                break
            folio_list.insert(0, pfn)  # list_move(&folio->lru, &folio_list)
        prep_and_add_allocated_folios(k, h, folio_list)
        allocated += len(folio_list)
    k.printk(6, f"HugeTLB: allocation took 0ms with hugepage_allocation_threads={threads}")
    return allocated


def _string_get_size(nbytes: int) -> str:
    """lib/string_helpers.c string_get_size(size, 1, STRING_UNITS_2) for powers of two."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while nbytes >= 1024 and i < len(units) - 1:
        nbytes /= 1024
        i += 1
    return f"{nbytes:.2f} {units[i]}"


def hugetlb_vmemmap_optimizable_size(k: Kernel, h: Hstate) -> int:
    """mm/hugetlb_vmemmap.h: the vmemmap of a huge page minus the one page HVO keeps
    (HUGETLB_VMEMMAP_RESERVE_SIZE), when struct page is a power of two in size."""
    size = h.nr_pages * k.struct_page_size - PAGE_SIZE
    return max(size, 0)


def report_hugepages(k: Kernel) -> None:
    for h in _state(k):
        buf = _string_get_size(h.size)
        k.printk(6, f"HugeTLB: registered {buf} page size, pre-allocated {h.free_huge_pages} pages")
        k.printk(
            6, f"HugeTLB: {hugetlb_vmemmap_optimizable_size(k, h) >> 10} KiB vmemmap can be freed for a {buf} page"
        )


def hugetlb_init(k: Kernel) -> None:
    """subsys_initcall(hugetlb_init): the 2 MiB hstate and default_hstate_idx (a bare
    ``hugepages=`` is the default size's count, overriding one given with its hugepagesz=),
    hugetlb_init_hstates() (the non-gigantic boot pools, next-nid cursors, demote orders),
    gather_bootmem_prealloc(), report_hugepages(); then fs_initcall(init_hugetlbfs_fs)."""
    k.image.var("default_hstate_idx", "bss")  # an uninitialised global of mm/hugetlb.c
    st = k.__dict__.get("hugetlb_cmdline") or _HugetlbCmdline(k.config.nodes)
    if _size_to_hstate(k, PAGE_SIZE << HUGETLB_PAGE_ORDER) is None:
        hugetlb_add_hstate(k, HUGETLB_PAGE_ORDER)
    if st.parsed_default_hugepagesz:
        _set_default_hstate_idx(k, k.__dict__.get("default_hstate_idx", 0))
    else:
        _set_default_hstate_idx(k, _state(k).index(_size_to_hstate(k, PAGE_SIZE << HUGETLB_PAGE_ORDER)))
        if st.default_hstate_max_huge_pages:
            d = default_hstate(k)
            if d.max_huge_pages:
                k.printk(
                    4,
                    f"HugeTLB: Ignoring hugepages={d.max_huge_pages} associated with "
                    f"{_string_get_size(d.size)} page size",
                )
                k.printk(
                    4, f"HugeTLB: Using hugepages={st.default_hstate_max_huge_pages} for number of default huge pages"
                )
            d.max_huge_pages = st.default_hstate_max_huge_pages
            d.max_huge_pages_node = list(st.default_hugepages_in_node)
    hs = _state(k)
    for h in hs:  # hugetlb_init_hstates()
        h.next_nid_to_alloc = h.next_nid_to_free = 0  # first_memory_node
        if not h.gigantic:
            hugetlb_hstate_alloc_pages(k, h)
        for h2 in hs:
            if h2 is not h and h.demote_order < h2.order < h.order:
                h.demote_order = h2.order
    gather_bootmem_prealloc(k)
    report_hugepages(k)
    k.sync_hooks.append(write_hstates)
    init_hugetlbfs_fs(k)


# -- the sysctl -------------------------------------------------------------------------------
def update_and_free_hugetlb_folio(k: Kernel, h: Hstate, pfn: int) -> None:
    """__update_and_free_hugetlb_folio(): clear the hugetlb type and give the pages back to
    the buddy allocator (gigantic: free_contig_range, page by page; here in MAX_PAGE_ORDER
    blocks, which is what the buddy merges them into)."""
    mv64, mv32, w = _words(k, pfn)
    mv32[2 * w + _W.D_PAGE_TYPE] = _W.PAGE_TYPE_NONE
    mv64[w + _W.W_PRIVATE] = 0
    for f in ("_hugetlb_subpool", "_hugetlb_cgroup", "_hugetlb_cgroup_rsvd"):
        k.kmem.set(k.pfn_to_page(pfn), "folio", f, 0)
    if h.gigantic:
        destroy_compound_gigantic(k, pfn, h.order)
        k.allocations.pop(pfn, None)
        step = 1 << page_alloc.MAX_PAGE_ORDER
        for p in range(pfn, pfn + h.nr_pages, step):
            page_alloc.__free_pages_ok(k, p, page_alloc.MAX_PAGE_ORDER, page_alloc.FPI_NONE)
    else:
        _set_refcount(k, pfn, 1)  # folio_ref_unfreeze(folio, 1) then __free_pages()
        k.free_pages(pfn, h.order)


def remove_pool_hugetlb_folio(k: Kernel, h: Hstate, nodes: list[int], acct_surplus: bool = False) -> int | None:
    """remove_pool_hugetlb_folio(): for_each_node_mask_to_free from h->next_nid_to_free, the
    first free folio of a node's list (with ``acct_surplus`` only on nodes with surplus
    pages); remove_hugetlb_folio() takes it off the lists and counters."""
    for _ in range(len(nodes)):
        nid = hstate_next_node_to_alloc(h, nodes, "next_nid_to_free")
        if (not acct_surplus or h.surplus_huge_pages_node[nid]) and h.freelists[nid]:
            pfn = h.freelists[nid].pop(0)
            h.free_huge_pages -= 1
            h.free_huge_pages_node[nid] -= 1
            h.nr_huge_pages -= 1
            h.nr_huge_pages_node[nid] -= 1
            if acct_surplus:
                h.surplus_huge_pages -= 1
                h.surplus_huge_pages_node[nid] -= 1
            _set_private_bit(k, pfn, HPG_freed, False)
            return pfn
    return None


def adjust_pool_surplus(h: Hstate, nodes: list[int], delta: int) -> bool:
    """adjust_pool_surplus(): turn one surplus page persistent (delta -1, from
    next_nid_to_alloc) or one persistent page surplus (delta +1, from next_nid_to_free)."""
    for _ in range(len(nodes)):
        if delta < 0:
            nid = hstate_next_node_to_alloc(h, nodes)
            ok = h.surplus_huge_pages_node[nid] > 0
        else:
            nid = hstate_next_node_to_alloc(h, nodes, "next_nid_to_free")
            ok = h.surplus_huge_pages_node[nid] < h.nr_huge_pages_node[nid]
        if ok:
            h.surplus_huge_pages += delta
            h.surplus_huge_pages_node[nid] += delta
            return True
    return False


def alloc_surplus_hugetlb_folio(k: Kernel, h: Hstate, nid: int, nodemask=None) -> int | None:
    """alloc_surplus_hugetlb_folio(): a fresh (frozen) folio beyond the persistent pool while
    surplus_huge_pages < nr_overcommit_hugepages (never gigantic), accounted as surplus."""
    if h.gigantic or h.surplus_huge_pages >= h.nr_overcommit_huge_pages:
        return None
    pfn = only_alloc_fresh_hugetlb_folio(k, h, htlb_alloc_mask(h), nid, nodemask, None)
    if pfn is None:
        return None
    account_new_hugetlb_folio(k, h, pfn)
    h.surplus_huge_pages += 1
    h.surplus_huge_pages_node[folio_nid(k, pfn)] += 1
    return pfn


def set_nr_overcommit_hugepages(k: Kernel, page_size: int, n: int) -> None:
    """``/proc/sys/vm/nr_overcommit_hugepages``: how many surplus pages may exist."""
    hstate_for_size(k, page_size).nr_overcommit_huge_pages = n


def set_nr_hugepages(k: Kernel, page_size: int, n: int, nid: int | None = None) -> int:
    """``echo n > /proc/sys/vm/nr_hugepages`` (hugepages-<size>kB/nr_hugepages), or with ``nid``
    the node's /sys/devices/system/node/nodeN/hugepages/.../nr_hugepages
    (__nr_hugepages_store_common: the count becomes n plus the other nodes' persistent pages):
    set_max_huge_pages().  Surplus pages turn persistent first (adjust_pool_surplus), then
    alloc_pool_huge_folio() grows the pool until the count or a failure; shrinking frees free
    folios (never below the reserved and in-use ones, remove_pool_hugetlb_folio from
    next_nid_to_free) and turns the rest surplus.  Returns max_huge_pages."""
    h = hstate_for_size(k, page_size)
    nodes = list(range(k.config.nodes)) if nid is None else [nid]
    count = n
    if nid is not None:
        count += h.persistent_huge_pages() - (h.nr_huge_pages_node[nid] - h.surplus_huge_pages_node[nid])
    while h.surplus_huge_pages and count > h.persistent_huge_pages():
        if not adjust_pool_surplus(h, nodes, -1):
            break
    noretry: set[int] = set()
    folio_list: list[int] = []
    while count > h.persistent_huge_pages() + len(folio_list):
        pfn = alloc_pool_huge_folio(k, h, nodes, noretry)
        if pfn is None:
            break
        folio_list.insert(0, pfn)
    prep_and_add_allocated_folios(k, h, folio_list)
    min_count = max(count, h.resv_huge_pages + h.nr_huge_pages - h.free_huge_pages)
    page_list = []
    while min_count < h.persistent_huge_pages():
        pfn = remove_pool_hugetlb_folio(k, h, nodes)
        if pfn is None:
            break
        page_list.insert(0, pfn)
    for pfn in page_list:
        update_and_free_hugetlb_folio(k, h, pfn)
    while count < h.persistent_huge_pages():
        if not adjust_pool_surplus(h, nodes, 1):
            break
    h.max_huge_pages = h.persistent_huge_pages()
    return h.max_huge_pages


# -- the books into memory --------------------------------------------------------------------
def write_hstates(k: Kernel) -> None:
    """Sync hook: every hstate's counters, its free lists and active list (folio->lru)."""
    km = k.kmem
    lh = k.T.sizeof("struct list_head")
    for h in _state(k):
        a = h.addr
        for f in (
            "next_nid_to_alloc",
            "next_nid_to_free",
            "demote_order",
            "max_huge_pages",
            "nr_huge_pages",
            "free_huge_pages",
            "resv_huge_pages",
            "surplus_huge_pages",
            "nr_overcommit_huge_pages",
        ):
            km.set(a, "hstate", f, getattr(h, f))
        for nid in range(h.nodes):
            for f in ("nr_huge_pages_node", "free_huge_pages_node", "surplus_huge_pages_node"):
                km.set(a, "hstate", f"{f}[{nid}]", getattr(h, f)[nid])
            km.set(a, "hstate", f"max_huge_pages_node[{nid}]", h.max_huge_pages_node[nid])
            km.write_list(
                km.addr(a, "hstate", "hugepage_freelists") + nid * lh,
                [k.pfn_to_page(p) + _W.LRU_OFF for p in h.freelists[nid]],
            )
        km.write_list(
            km.addr(a, "hstate", "hugepage_activelist"), [k.pfn_to_page(p) + _W.LRU_OFF for p in h.activelist]
        )


# -- hugetlbfs (fs/hugetlbfs/inode.c) -----------------------------------------------------------
# include/uapi/linux/stat.h, include/uapi/asm-generic/fcntl.h, include/uapi/linux/magic.h
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IRWXUGO = 0o777
HUGETLBFS_MAGIC = 0x958458F6
O_RDWR = 0o2
# include/uapi/linux/fcntl.h
F_SEAL_SEAL = 0x0001
# mm/hugetlb.c: the low bits of a private mapping's vm_private_data
HPAGE_RESV_OWNER = 1 << 0
HUGETLB_ANON_FILE = "anon_hugepage"
# include/linux/mm.h
VM_WRITE = 0x00000002
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_DONTEXPAND = 0x00040000
VM_HUGETLB = 0x00400000
FMODE_READ = 1 << 0
FMODE_WRITE = 1 << 1


@dataclass
class HugetlbfsMount:
    """One internal hugetlbfs mount (mount_one_hugetlbfs) of an hstate."""

    hstate: Hstate
    sb: int
    sbinfo: int
    mount: int
    root: int  # dentry
    next_ino: int = 1


def _kzalloc(k: Kernel, size: int, caller: str) -> int:
    from mmintro.kernel import slub

    a = slub.kzalloc(k, size, "GFP_KERNEL", caller=caller)
    if not a:
        raise MemoryError(f"{caller}: out of memory")
    return a


def hugetlbfs_alloc_inode(k: Kernel, sb: int) -> int:
    """hugetlbfs_alloc_inode() via new_inode(): a hugetlbfs_inode_info from
    hugetlbfs_inode_cachep (init_once ran), inode_init_always (i_sb, i_count, i_nlink,
    i_mapping = &i_data, mapping->host) and inode_sb_list_add."""
    from mmintro.kernel import slub

    km = k.kmem
    cache = slub.find_cache(k, "hugetlbfs_inode_cache")
    inode = slub.kmem_cache_alloc(k, cache, "GFP_KERNEL", caller="hugetlbfs_alloc_inode")
    if not inode:
        raise MemoryError("hugetlbfs_alloc_inode: out of memory")
    km.set(inode, "inode", "i_sb", sb)
    km.set(inode, "inode", "i_blkbits", km.get(sb, "super_block", "s_blocksize_bits"))
    km.set(inode, "inode", "i_count.counter", 1)
    km.set(inode, "inode", "i_nlink", 1)
    mapping = km.addr(inode, "inode", "i_data")
    km.set(inode, "inode", "i_mapping", mapping)
    km.set(mapping, "address_space", "host", inode)
    km.set(mapping, "address_space", "gfp_mask", G.GFP_HIGHUSER_MOVABLE)
    km.set(inode, "hugetlbfs_inode_info", "seals", F_SEAL_SEAL)
    k.kmem.list_add_tail(km.addr(inode, "inode", "i_sb_list"), km.addr(sb, "super_block", "s_inodes"))
    return inode


def resv_map_alloc(k: Kernel) -> int:
    """mm/hugetlb.c resv_map_alloc(): kmalloc'd, refs 1, empty region lists, the rw_sema.
    (The file_region placeholder it pre-allocates is not modelled: struct file_region is
    not in the type data, so region_cache stays empty with region_cache_count 0.)"""
    km = k.kmem
    rm = _kzalloc(k, k.T.sizeof("struct resv_map"), "resv_map_alloc")
    km.set(rm, "resv_map", "refs.refcount.refs.counter", 1)
    km.init_list_head(km.addr(rm, "resv_map", "regions"))
    km.init_list_head(km.addr(rm, "resv_map", "region_cache"))
    km.init_list_head(km.addr(rm, "resv_map", "rw_sema.wait_list"))
    return rm


def hugetlbfs_get_inode(k: Kernel, m: HugetlbfsMount, mode: int) -> int:
    """hugetlbfs_get_inode(): a new inode with i_ino, i_mode, a resv_map in
    i_mapping->i_private_data for regular files, an empty directory otherwise."""
    km = k.kmem
    inode = hugetlbfs_alloc_inode(k, m.sb)
    km.set(inode, "inode", "i_ino", m.next_ino)  # get_next_ino()
    m.next_ino += 1
    km.set(inode, "inode", "i_mode", mode)
    mapping = km.get(inode, "inode", "i_mapping")
    if mode & S_IFREG == S_IFREG and not mode & S_IFDIR:
        km.set(mapping, "address_space", "i_private_data", resv_map_alloc(k))
    else:
        km.set(inode, "inode", "i_nlink", 2)  # inc_nlink for "."
    return inode


def mount_one_hugetlbfs(k: Kernel, h: Hstate, fst: int) -> HugetlbfsMount:
    """mount_one_hugetlbfs() -> hugetlbfs_fill_super(): a super_block (alloc_super, on
    super_blocks and the type's fs_supers) with s_magic HUGETLBFS_MAGIC, the huge page
    size as block size, the hugetlbfs_sb_info (hstate, no subpool: no size= option), the root
    inode and dentry, and the struct mount."""
    km, T = k.kmem, k.T
    sb = _kzalloc(k, T.sizeof("struct super_block"), "alloc_super")
    for p in ("s_inodes", "s_inodes_wb"):
        km.init_list_head(km.addr(sb, "super_block", p))
    if "super_blocks" not in k.image.symbols:
        k.image.var("super_blocks", "data")
        km.init_list_head(k.sym("super_blocks"))
    k.kmem.list_add_tail(km.addr(sb, "super_block", "s_list"), k.sym("super_blocks"))
    fs_supers = km.addr(fst, "file_system_type", "fs_supers")
    node = km.addr(sb, "super_block", "s_instances")
    first = km.get(fs_supers, "hlist_head", "first")
    km.set(node, "hlist_node", "next", first)
    if first:
        km.set(first, "hlist_node", "pprev", node)
    km.set(fs_supers, "hlist_head", "first", node)
    km.set(node, "hlist_node", "pprev", fs_supers)
    km.set(sb, "super_block", "s_type", fst)
    km.set(sb, "super_block", "s_blocksize", h.size)
    km.set(sb, "super_block", "s_blocksize_bits", h.order + PAGE_SHIFT)
    km.set(sb, "super_block", "s_magic", HUGETLBFS_MAGIC)
    km.set(sb, "super_block", "s_maxbytes", 0x7FFFFFFFFFFFFFFF)
    km.set(sb, "super_block", "s_count", 1)
    km.set(sb, "super_block", "s_active.counter", 1)
    km.write_bytes(km.addr(sb, "super_block", "s_id"), b"hugetlbfs\0")
    sbinfo = _kzalloc(k, T.sizeof("struct hugetlbfs_sb_info"), "hugetlbfs_fill_super")
    km.set(sbinfo, "hugetlbfs_sb_info", "hstate", h.addr)
    km.set(sbinfo, "hugetlbfs_sb_info", "max_inodes", -1)
    km.set(sbinfo, "hugetlbfs_sb_info", "free_inodes", -1)
    km.set(sbinfo, "hugetlbfs_sb_info", "mode", 0o755)  # hugetlbfs_init_fs_context: ctx->mode = 0755
    km.set(sb, "super_block", "s_fs_info", sbinfo)
    m = HugetlbfsMount(h, sb, sbinfo, 0, 0)
    root_inode = hugetlbfs_get_inode(k, m, S_IFDIR | 0o755)
    root = _d_alloc(k, sb, 0, "/")
    _d_instantiate(k, root, root_inode)
    km.set(sb, "super_block", "s_root", root)
    m.root = root
    from mmintro.kernel import inode

    m.mount = inode.vfs_create_mount(k, sb, root, "none")
    return m


def _d_alloc(k: Kernel, sb: int, parent: int, name: str) -> int:
    """__d_alloc() (d_alloc_pseudo when there is no parent: the dentry is its own parent)."""
    from mmintro.kernel import slub

    km = k.kmem
    d = slub.kmem_cache_alloc(k, slub.find_cache(k, "dentry"), "GFP_KERNEL", caller="__d_alloc")
    if not d:
        raise MemoryError("__d_alloc: out of memory")
    km.write_bytes(d, bytes(k.T.sizeof("struct dentry")))
    raw = name.encode()
    nm = km.addr(d, "dentry", "d_shortname.string")
    km.write_bytes(nm, raw + b"\0")
    km.set(d, "dentry", "d_name.name", nm)
    km.set(d, "dentry", "d_name.len", len(raw))
    km.set(d, "dentry", "d_lockref.count", 1)
    km.set(d, "dentry", "d_sb", sb)
    km.set(d, "dentry", "d_parent", parent or d)
    return d


def _d_instantiate(k: Kernel, d: int, inode: int) -> None:
    km = k.kmem
    mode = km.get(inode, "inode", "i_mode")
    t = k.T.const("DCACHE_DIRECTORY_TYPE") if mode & S_IFDIR else k.T.const("DCACHE_REGULAR_TYPE")
    km.set(d, "dentry", "d_flags", km.get(d, "dentry", "d_flags") | t)
    km.set(d, "dentry", "d_inode", inode)
    alias = km.addr(d, "dentry", "d_u.d_alias")
    head = km.addr(inode, "inode", "i_dentry")
    first = km.get(head, "hlist_head", "first")
    km.set(alias, "hlist_node", "next", first)
    if first:
        km.set(first, "hlist_node", "pprev", alias)
    km.set(head, "hlist_head", "first", alias)
    km.set(alias, "hlist_node", "pprev", head)


def init_hugetlbfs_fs(k: Kernel) -> None:
    """fs_initcall(init_hugetlbfs_fs): hugetlbfs_inode_cachep ("hugetlbfs_inode_cache",
    sizeof(struct hugetlbfs_inode_info), SLAB_ACCOUNT, init_once), register_filesystem,
    then one internal mount per hstate (the default hstate's first)."""
    from mmintro.kernel import slab_common as sc

    km = k.kmem
    cache = sc.kmem_cache_create(
        k,
        "hugetlbfs_inode_cache",
        k.T.sizeof("struct hugetlbfs_inode_info"),
        flags=sc.SLAB_ACCOUNT,
        ctor="init_once",
        ctor_fn=sc.inode_init_once,
    )
    km.write_u64(
        k.image.var("hugetlbfs_inode_cachep", "bss")
        if "hugetlbfs_inode_cachep" not in k.image.symbols
        else k.sym("hugetlbfs_inode_cachep"),
        cache.addr,
    )
    fst = _kzalloc(k, k.T.sizeof("struct file_system_type"), "register_filesystem")
    km.set(fst, "file_system_type", "name", k.image.string("hugetlbfs"))
    k.image.string("none")
    hs = _state(k)
    mounts: dict[int, HugetlbfsMount] = {}
    didx = next(h.idx for h in hs if h.order == HUGETLB_PAGE_ORDER)
    for h in [hs[didx]] + [h for h in hs if h.idx != didx]:
        mounts[h.idx] = mount_one_hugetlbfs(k, h, fst)
    k.hugetlbfs_mounts = mounts
    k.hugetlbfs_fs_type = fst


# -- MAP_HUGETLB mmap --------------------------------------------------------------------------
def anon_ops(k: Kernel) -> int:
    """fs/dcache.c d_alloc_pseudo()'s ``static const struct dentry_operations anon_ops =
    { .d_dname = simple_dname }`` (in .rodata, placed on first use): d_path() of a pseudo
    dentry calls simple_dname -> "/<name> (deleted)", what /proc/PID/maps shows for a
    MAP_HUGETLB mapping ("/anon_hugepage (deleted)")."""
    img = k.image
    if "anon_ops" not in img.symbols:
        ops = img.var("anon_ops", "rodata")
        fn = k.sym("simple_dname") if "simple_dname" in img.symbols else img.func("simple_dname", 0x60)
        k.kmem.set(ops, "dentry_operations", "d_dname", fn)
    return k.sym("anon_ops")


def alloc_file_pseudo(k: Kernel, inode: int, m: HugetlbfsMount, name: str) -> int:
    """fs/file_table.c alloc_file_pseudo(): a pseudo dentry named ``name`` on the mount's
    super_block (d_alloc_pseudo), instantiated, and an O_RDWR struct file from filp."""
    from mmintro.kernel import slub

    km = k.kmem
    d = _d_alloc(k, m.sb, 0, name)
    # d_alloc_pseudo(): DCACHE_NORCU and, when __d_alloc found no default d_op
    # (sb->__s_d_op: hugetlbfs sets none), d_op = &anon_ops (d_op_flags(anon_ops) = 0: no
    # DCACHE_OP_* bit)
    k.kmem.set(d, "dentry", "d_flags", k.kmem.get(d, "dentry", "d_flags") | k.T.const("DCACHE_NORCU"))
    if not km.get(d, "dentry", "d_op"):
        km.set(d, "dentry", "d_op", anon_ops(k))
    _d_instantiate(k, d, inode)
    f = slub.kmem_cache_alloc(k, slub.find_cache(k, "filp"), "GFP_KERNEL", caller="alloc_empty_file")
    if not f:
        raise MemoryError("alloc_file_pseudo: out of memory")
    km.write_bytes(f, bytes(k.T.sizeof("struct file")))
    km.set(f, "file", "f_ref.refcnt.counter", 0)  # one reference
    km.set(f, "file", "f_flags", O_RDWR)
    km.set(f, "file", "f_mode", FMODE_READ | FMODE_WRITE)
    km.set(f, "file", "f_path.mnt", km.addr(m.mount, "mount", "mnt"))
    km.set(f, "file", "f_path.dentry", d)
    km.set(f, "file", "f_inode", inode)
    km.set(f, "file", "f_mapping", km.get(inode, "inode", "i_mapping"))
    return f


def hugetlb_file_setup(k: Kernel, h: Hstate, size: int) -> int:
    """hugetlb_file_setup(HUGETLB_ANON_FILE, size, VM_NORESERVE, HUGETLB_ANONHUGE_INODE, ...):
    an unlinked (i_nlink 0) regular inode of ``size`` on the hstate's internal mount and its
    pseudo file; VM_NORESERVE: the reservation is taken by the mmap instead."""
    km = k.kmem
    m = k.hugetlbfs_mounts[h.idx]
    inode = hugetlbfs_get_inode(k, m, S_IFREG | S_IRWXUGO)
    km.set(inode, "inode", "i_size", size)
    km.set(inode, "inode", "i_nlink", 0)  # clear_nlink()
    return alloc_file_pseudo(k, inode, m, HUGETLB_ANON_FILE)


def hugetlb_get_unmapped_area(k: Kernel, mm: int, h: Hstate, length: int) -> int:
    """hugetlb_get_unmapped_area() -> the top-down search with align_mask = the huge page
    mask (vm_unmapped_area: a gap of length + align_mask, the start aligned down from its
    top)."""
    from mmintro.kernel import mmap

    mask = h.size - 1
    top = k.kmem.get(mm, "mm_struct", "mmap_base")
    gap = mmap.unmapped_area_topdown(k, mm, length + mask - (PAGE_SIZE - 1), PAGE_SIZE, top)
    if not gap:
        return 0
    gap_end = gap + length + mask - (PAGE_SIZE - 1)
    return (gap_end - length) & ~mask


def hugetlb_acct_memory(k: Kernel, h: Hstate, delta: int) -> bool:
    """hugetlb_acct_memory(): delta > 0 is gather_surplus_pages() -- the free pages cover the
    reservations, or surplus pages are allocated (alloc_surplus_hugetlb_folio, the current
    nodes in order, within nr_overcommit_hugepages) and enqueued; -ENOMEM (False) frees them
    again -- then resv_huge_pages += delta; delta < 0 is return_unused_surplus_pages()."""
    if delta <= 0:
        unused = -delta
        h.resv_huge_pages -= unused
        page_list = []
        for _ in range(min(unused, h.surplus_huge_pages)):
            pfn = remove_pool_hugetlb_folio(k, h, list(range(k.config.nodes)), acct_surplus=True)
            if pfn is None:
                break
            page_list.insert(0, pfn)
        for pfn in page_list:
            update_and_free_hugetlb_folio(k, h, pfn)
        return True
    needed = h.resv_huge_pages + delta - h.free_huge_pages
    if needed <= 0:
        h.resv_huge_pages += delta
        return True
    surplus_list: list[int] = []
    for _ in range(needed):
        pfn = None
        for node in range(k.config.nodes):  # for_each_node_mask(node, cpuset_current_mems_allowed)
            pfn = alloc_surplus_hugetlb_folio(k, h, node)
            if pfn is not None:
                break
        if pfn is None:
            break
        surplus_list.insert(0, pfn)  # list_add
    if h.resv_huge_pages + delta - (h.free_huge_pages + len(surplus_list)) > 0:
        for pfn in surplus_list:  # free: back to the buddy (free_huge_folio of surplus pages)
            nid = folio_nid(k, pfn)
            h.nr_huge_pages -= 1
            h.nr_huge_pages_node[nid] -= 1
            h.surplus_huge_pages -= 1
            h.surplus_huge_pages_node[nid] -= 1
            update_and_free_hugetlb_folio(k, h, pfn)
        return False
    h.resv_huge_pages += delta
    for pfn in surplus_list:
        enqueue_hugetlb_folio(k, h, pfn)
    return True


def hugetlb_reserve_pages(k: Kernel, h: Hstate, vma: int, start: int, end: int) -> None:
    """hugetlb_reserve_pages() for a private mapping: a resv_map of the VMA's own
    (set_vma_resv_map + HPAGE_RESV_OWNER in vm_private_data), chg = to - from (the global
    reservation itself is hugetlb_acct_memory's, taken by the caller first)."""
    rm = resv_map_alloc(k)
    k.kmem.set(vma, "vm_area_struct", "vm_private_data", rm | HPAGE_RESV_OWNER)
    # the map's books, keyed by the resv_map (VMAs split from this one share it): the
    # reserved file indices [start, end) and those whose reservation a fault consumed
    k.__dict__.setdefault("hugetlb_vmas", {})[rm] = {"h": h.idx, "range": (start, end), "faulted": set()}


def hugetlb_mmap(k: Kernel, mm: int, length: int, page_size: int, prot: int, shared: bool = False) -> int:
    """mmap(NULL, length, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB [| MAP_HUGE_1GB]):
    ksys_mmap_pgoff's hugetlb_file_setup ("anon_hugepage", length aligned to the huge page),
    do_mmap: hugetlb_get_unmapped_area, the VMA (prot bits | VM_MAYREAD | VM_MAYWRITE |
    VM_MAYEXEC, no VM_ACCOUNT for hugetlb files), vm_file, then hugetlbfs_file_mmap:
    VM_HUGETLB | VM_DONTEXPAND and hugetlb_reserve_pages().  ``prot`` is VM_READ/WRITE/EXEC.
    ``shared`` is MAP_SHARED (VM_SHARED | VM_MAYSHARE): the reservation then belongs to the
    inode (region_chg/region_add over [0, n)) and faults go through its page cache.
    Returns the address, 0 for -ENOMEM (no address range, or not enough huge pages to
    reserve)."""
    from mmintro.kernel import mmap

    h = hstate_for_size(k, page_size)
    km = k.kmem
    length = -(-length // h.size) * h.size
    addr = hugetlb_get_unmapped_area(k, mm, h, length)
    if not addr:
        return 0
    n = length >> (h.order + PAGE_SHIFT)
    if not hugetlb_acct_memory(k, h, n):
        return 0  # hugetlb_reserve_pages() -> -ENOMEM: mmap_region unwinds the VMA
    f = hugetlb_file_setup(k, h, length)
    flags = (prot & 0x7) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_HUGETLB | VM_DONTEXPAND
    if shared:
        flags |= VM_SHARED | VM_MAYSHARE
    vma = mmap.vma_store(k, mm, addr, addr + length, flags, 0)
    km.set(vma, "vm_area_struct", "vm_file", f)
    try:
        from mmintro.kernel import rmap

        rmap.vma_interval_tree_insert(k, vma, km.get(f, "file", "f_mapping"))
    except (ImportError, AttributeError):
        pass
    if shared:
        # hugetlb_reserve_pages() for VM_MAYSHARE: the inode's resv_map gets [0, n) (region_chg
        # + region_add; the file_region entries are not in the type data) and the global
        # reservation (taken above); the hugetlb_vma_lock (vm_private_data) is not in the
        # type data either
        inode = km.get(f, "file", "f_inode")
        k.__dict__.setdefault("hugetlb_inode_resv", {})[inode] = {"h": h.idx, "resv": set(range(n))}
    else:
        hugetlb_reserve_pages(k, h, vma, 0, n)
    return addr


# -- faults --------------------------------------------------------------------------------------
def hstate_vma(k: Kernel, vma: int) -> Hstate:
    f = k.kmem.get(vma, "vm_area_struct", "vm_file")
    inode = k.kmem.get(f, "file", "f_inode")
    sb = k.kmem.get(inode, "inode", "i_sb")
    for m in k.hugetlbfs_mounts.values():
        if m.sb == sb:
            return m.hstate
    raise ValueError(f"vma {vma:#x} is not a hugetlbfs mapping")


def _huge_node(k: Kernel, vma: int, addr: int, h: Hstate) -> tuple[int, frozenset | None]:
    """huge_node(): the node and nodemask of the VMA/task policy (interleave by huge page
    index; bind's nodemask; preferred's node; default: the local node)."""
    from mmintro.kernel import mempolicy as mp

    pol, ilx = mp.get_vma_policy(k, vma, addr, h.order)
    mode, nodes = mp.policy_info(k, pol)
    nid = k.numa_node_id()
    if mode == getattr(mp, "MPOL_PREFERRED", -1):
        return nodes[0], None
    if mode == getattr(mp, "MPOL_BIND", -1) or mode == getattr(mp, "MPOL_PREFERRED_MANY", -1):
        return nid, frozenset(nodes)
    if mode in (getattr(mp, "MPOL_INTERLEAVE", -1), getattr(mp, "MPOL_WEIGHTED_INTERLEAVE", -1)):
        return mp.interleave_nid(nodes, ilx, nid), None
    return nid, None


def dequeue_hugetlb_folio_vma(k: Kernel, h: Hstate, vma: int, addr: int) -> int | None:
    """dequeue_hugetlb_folio_vma() -> dequeue_hugetlb_folio_nodemask(): the preferred node's
    free list, then the zonelist's other nodes in fallback order, within the nodemask."""
    nid, nodemask = _huge_node(k, vma, addr, h)
    seen = []
    for z in k.zonelist[nid][0]:
        if z.nid in seen or (nodemask is not None and z.nid not in nodemask):
            continue
        seen.append(z.nid)
        pfn = dequeue_hugetlb_folio_node_exact(k, h, z.nid)
        if pfn is not None:
            return pfn
    return None


def alloc_hugetlb_folio(k: Kernel, h: Hstate, vma: int, addr: int) -> int | None:
    """alloc_hugetlb_folio(): a private owner's page not yet faulted consumes one of the
    VMA's reservations (vma_needs_reservation = 0: resv_huge_pages--, HPG_restore_reserve),
    the folio dequeued (refcount 1, on the active list), NR_HUGETLB; the reservation
    committed (region_add of the page's index)."""
    info = _private_resv(k, vma)
    idx = vma_hugecache_offset(k, h, vma, addr)
    has_resv = info is not None and info["range"][0] <= idx < info["range"][1] and idx not in info["faulted"]
    f = k.kmem.get(vma, "vm_area_struct", "vm_file")
    iresv = k.__dict__.get("hugetlb_inode_resv", {}).get(k.kmem.get(f, "file", "f_inode") if f else 0)
    if iresv is not None:  # VM_MAYSHARE: the inode's reservation map
        has_resv = idx in iresv["resv"]
    pfn = None
    if has_resv or h.free_huge_pages - h.resv_huge_pages > 0:  # vma_has_reserves / available_huge_pages
        pfn = dequeue_hugetlb_folio_vma(k, h, vma, addr)
    if pfn is None:
        # alloc_buddy_hugetlb_folio_with_mpol(): a surplus page within nr_overcommit_hugepages
        nid, nodemask = _huge_node(k, vma, addr, h)
        pfn = alloc_surplus_hugetlb_folio(k, h, nid, nodemask)
        if pfn is None:
            return None
        h.activelist.insert(0, pfn)
        _set_refcount(k, pfn, 1)
    if has_resv:
        _set_private_bit(k, pfn, HPG_restore_reserve, True)
        h.resv_huge_pages -= 1
        if iresv is not None:
            iresv["resv"].discard(idx)
        else:
            info["faulted"].add(idx)
    k.mod_node_page_state(folio_nid(k, pfn), "NR_HUGETLB", h.nr_pages)
    return pfn


def _hugetlb_count(k: Kernel, mm: int, n: int) -> None:
    km = k.kmem
    km.set(mm, "mm_struct", "hugetlb_usage.counter", km.get(mm, "mm_struct", "hugetlb_usage.counter") + n)


def make_huge_pte(k: Kernel, vma: int, pfn: int, try_mkwrite: bool) -> int:
    """make_huge_pte(): folio_mk_pte(folio, vm_page_prot), writable+dirty when try_mkwrite
    in a VM_WRITE VMA else write-protected and clean, pte_mkyoung, arch_make_huge_pte
    (pte_mkhuge: _PAGE_PSE)."""
    from mmintro.arch.x86 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, _PAGE_RW, pfn_pte

    e = pfn_pte(pfn, k.kmem.get(vma, "vm_area_struct", "vm_page_prot"))  # mk_pte: inverted for PAGE_NONE
    if try_mkwrite and k.kmem.get(vma, "vm_area_struct", "vm_flags") & VM_WRITE:
        e |= _PAGE_RW | _PAGE_DIRTY
    else:
        e &= ~(_PAGE_RW | _PAGE_DIRTY)
    return e | _PAGE_ACCESSED | _PAGE_PSE


def huge_pte_alloc(k: Kernel, mm: int, addr: int, h: Hstate) -> int:
    """huge_pte_alloc(): the PUD slot for a 1 GiB page, the PMD slot for 2 MiB (no PMD
    sharing: private mappings never share)."""
    from mmintro.kernel import memory

    if h.order == PUD_ORDER:
        return memory.pud_alloc(k, mm, addr)
    return memory.pmd_alloc(k, mm, addr)


def hugetlb_add_new_anon_rmap(k: Kernel, pfn: int, vma: int, haddr: int) -> None:
    """hugetlb_add_new_anon_rmap(): _entire_mapcount and _large_mapcount 0 (one mapping),
    HPG_restore_reserve cleared, __folio_set_anon (exclusive), PageAnonExclusive."""
    from mmintro.kernel import rmap

    mv64, mv32, w = _words(k, pfn)
    mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] = 0
    mv32[2 * w + _W.FD_LARGE_MAPCOUNT] = 0
    _set_private_bit(k, pfn, HPG_restore_reserve, False)
    rmap.__folio_set_anon(k, pfn, vma, haddr, True)
    mv64[w + _W.W_FLAGS] |= 1 << _T.const("PG_anon_exclusive")


def hugetlb_fault(k: Kernel, mm: int, vma: int, addr: int, write: bool) -> int:
    """mm/hugetlb.c hugetlb_fault(): huge_pte_alloc, then hugetlb_no_page() for a none entry
    (private mappings: alloc_hugetlb_folio, folio_zero_user, uptodate, vmf_anon_prepare,
    hugetlb_add_new_anon_rmap, make_huge_pte(try_mkwrite = VM_SHARED), set_huge_pte_at,
    hugetlb_count_add -> mm->hugetlb_usage, HPG_migratable; a write then runs hugetlb_wp,
    which reuses the exclusive folio: writable + dirty), or the existing entry (write to a
    read-only one: hugetlb_wp's reuse).  Returns the head pfn; MemoryError is VM_FAULT_OOM."""
    from mmintro.arch.x86 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, PTE_PFN_MASK
    from mmintro.kernel import rmap

    km = k.kmem
    h = hstate_vma(k, vma)
    shared = bool(km.get(vma, "vm_area_struct", "vm_flags") & VM_MAYSHARE)
    haddr = addr & ~(h.size - 1)
    slot = huge_pte_alloc(k, mm, haddr, h)
    e = k.mem.read_u64(slot - k.page_offset_base)
    if e & _PAGE_PRESENT:
        pfn = (e & PTE_PFN_MASK) >> PAGE_SHIFT
        if write and not e & _PAGE_RW:
            # hugetlb_wp(): the mapping's only user reuses the folio, else a copy
            _mv64, mv32, w = _words(k, pfn)
            if mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] != 0:
                return hugetlb_wp_copy(k, mm, vma, h, slot, haddr, pfn)
            mv64 = _mv64
            mv64[w + _W.W_FLAGS] |= 1 << _T.const("PG_anon_exclusive")
            e |= _PAGE_RW | _PAGE_DIRTY
        k.mem.write_u64(slot - k.page_offset_base, e | _PAGE_ACCESSED)
        return pfn
    # hugetlb_no_page()
    f = km.get(vma, "vm_area_struct", "vm_file")
    size = km.get(km.get(f, "file", "f_inode"), "inode", "i_size") >> (h.order + PAGE_SHIFT)
    pgoff = ((haddr - km.get(vma, "vm_area_struct", "vm_start")) >> (h.order + PAGE_SHIFT)) + (
        km.get(vma, "vm_area_struct", "vm_pgoff") >> h.order
    )
    if pgoff >= size:
        from mmintro.kernel.memory import BusError

        raise BusError(f"{addr:#x}: beyond the hugetlbfs file (VM_FAULT_SIGBUS)")
    if shared:
        return hugetlb_no_page_shared(k, mm, vma, h, slot, haddr, pgoff)
    pfn = alloc_hugetlb_folio(k, h, vma, haddr)
    if pfn is None:
        raise MemoryError(f"{addr:#x}: no free {h.name} page (VM_FAULT_OOM)")
    k.mem.fill(pfn << PAGE_SHIFT, h.size, 0)  # folio_zero_user
    mv64, _mv32, w = _words(k, pfn)
    mv64[w + _W.W_FLAGS] |= 1 << _T.const("PG_uptodate")
    rmap.anon_vma_prepare(k, vma)
    hugetlb_add_new_anon_rmap(k, pfn, vma, haddr)
    e = make_huge_pte(k, vma, pfn, False)
    _hugetlb_count(k, mm, h.nr_pages)
    if write:
        e |= _PAGE_RW | _PAGE_DIRTY  # hugetlb_wp(): reuse of the exclusive folio
    k.mem.write_u64(slot - k.page_offset_base, e)
    _set_private_bit(k, pfn, HPG_migratable, True)
    return pfn


def free_huge_folio(k: Kernel, pfn: int) -> None:
    """free_huge_folio() (the last reference dropped): no subpool, PageAnonExclusive and
    mapping cleared, a consumed reservation restored (HPG_restore_reserve), HPG_migratable
    cleared, NR_HUGETLB; a surplus page leaves the pool, others are enqueued again with
    refcount 0."""
    h = next(h for h in _state(k) if h.order == _folio_order(k, pfn))
    nid = folio_nid(k, pfn)
    mv64, mv32, w = _words(k, pfn)
    mv64[w + _W.W_FLAGS] &= ~(1 << _T.const("PG_anon_exclusive"))
    mv64[w + _W.W_MAPPING] = 0
    restore = bool(mv64[w + _W.W_PRIVATE] >> HPG_restore_reserve & 1)
    _set_private_bit(k, pfn, HPG_restore_reserve, False)
    _set_private_bit(k, pfn, HPG_migratable, False)
    k.mod_node_page_state(nid, "NR_HUGETLB", -h.nr_pages)
    if restore:
        h.resv_huge_pages += 1
    mv32[2 * w + _W.D_REFCOUNT] = 0
    if h.surplus_huge_pages_node[nid]:
        if pfn in h.activelist:
            h.activelist.remove(pfn)
        h.nr_huge_pages -= 1
        h.nr_huge_pages_node[nid] -= 1
        h.surplus_huge_pages -= 1
        h.surplus_huge_pages_node[nid] -= 1
        update_and_free_hugetlb_folio(k, h, pfn)
    else:
        enqueue_hugetlb_folio(k, h, pfn)


def _folio_order(k: Kernel, pfn: int) -> int:
    mv64, _mv32, w = _words(k, pfn)
    return mv64[w + _W.FW_FLAGS_1] & 0xFF


def unmap_hugepage_range(k: Kernel, vma: int, start: int, end: int) -> None:
    """__unmap_hugepage_range(): each present huge entry cleared, hugetlb_count_sub,
    hugetlb_remove_rmap (_entire_mapcount and _large_mapcount down), the mapping's
    reference put (free_huge_folio on the last)."""
    from mmintro.kernel import memory

    km = k.kmem
    h = hstate_vma(k, vma)
    mm = km.get(vma, "vm_area_struct", "vm_mm")
    want = "PUD" if h.order == PUD_ORDER else "PMD"
    for a in range(start & ~(h.size - 1), end, h.size):
        level, slot, e = memory.walk(k, mm, a)  # huge_pte_offset(): no tables allocated
        # huge_pte_none / pte_present(): a PROT_NONE entry maps its page too
        if level != want or not memory.pte_present(e):
            continue
        k.mem.write_u64(slot - k.page_offset_base, 0)
        pfn = memory.pte_pfn(e)  # pte_page(huge_ptep_get()): the inversion undone
        _hugetlb_count(k, mm, -h.nr_pages)
        _mv64, mv32, w = _words(k, pfn)
        mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] = (mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] - 1) & 0xFFFFFFFF
        mv32[2 * w + _W.FD_LARGE_MAPCOUNT] = (mv32[2 * w + _W.FD_LARGE_MAPCOUNT] - 1) & 0xFFFFFFFF
        ref = mv32[2 * w + _W.D_REFCOUNT]
        if ref <= 1:
            free_huge_folio(k, pfn)
        else:
            mv32[2 * w + _W.D_REFCOUNT] = ref - 1


def vma_hugecache_offset(k: Kernel, h: Hstate, vma: int, addr: int) -> int:
    """vma_hugecache_offset(): the huge-page index of ``addr`` in the file."""
    km = k.kmem
    return ((addr - km.get(vma, "vm_area_struct", "vm_start")) >> (h.order + PAGE_SHIFT)) + (
        km.get(vma, "vm_area_struct", "vm_pgoff") >> h.order
    )


def _private_resv(k: Kernel, vma: int) -> dict | None:
    """vma_resv_map() of a private owner (HPAGE_RESV_OWNER in vm_private_data): its books."""
    pd = k.kmem.get(vma, "vm_area_struct", "vm_private_data")
    if not pd & HPAGE_RESV_OWNER:
        return None
    return k.__dict__.get("hugetlb_vmas", {}).get(pd & ~HPAGE_RESV_OWNER)


def hugetlb_vm_op_close(k: Kernel, vma: int) -> None:
    """hugetlb_vm_op_close(): a private owner gives back the reservations of its range it
    never used (reserve = pages - region_count: hugetlb_acct_memory(h, -reserve)) and drops
    its reference to the resv_map (kref_put: freed with the last VMA sharing it)."""
    km = k.kmem
    info = _private_resv(k, vma)
    if info is None:
        return
    h = _state(k)[info["h"]]
    start = vma_hugecache_offset(k, h, vma, km.get(vma, "vm_area_struct", "vm_start"))
    end = vma_hugecache_offset(k, h, vma, km.get(vma, "vm_area_struct", "vm_end"))
    s, e = max(start, info["range"][0]), min(end, info["range"][1])
    unused = sum(1 for i in range(s, e) if i not in info["faulted"])
    hugetlb_acct_memory(k, h, -unused)
    rm = km.get(vma, "vm_area_struct", "vm_private_data") & ~HPAGE_RESV_OWNER
    km.set(vma, "vm_area_struct", "vm_private_data", 0)
    refs = km.get(rm, "resv_map", "refs.refcount.refs.counter") - 1
    km.set(rm, "resv_map", "refs.refcount.refs.counter", refs)
    if refs <= 0:
        from mmintro.kernel import slub

        k.hugetlb_vmas.pop(rm, None)
        slub.kfree(k, rm)
    else:  # the rest of the map belongs to the VMAs still sharing it
        lo, hi = info["range"]
        info["range"] = (e, hi) if s <= lo else (lo, s)


def hugetlb_vm_op_open(k: Kernel, vma: int) -> None:
    """hugetlb_vm_op_open() (__split_vma's new VMA): a private owner's copy shares the
    resv_map (kref_get)."""
    if _private_resv(k, vma) is not None:
        rm = k.kmem.get(vma, "vm_area_struct", "vm_private_data") & ~HPAGE_RESV_OWNER
        k.kmem.set(
            rm, "resv_map", "refs.refcount.refs.counter", k.kmem.get(rm, "resv_map", "refs.refcount.refs.counter") + 1
        )


def copy_hugetlb_page_range(k: Kernel, dst_vma: int, src_vma: int) -> int:
    """fork of a private hugetlb VMA: dup_mmap's hugetlb_dup_vma_private() (the child owns
    no reservation: vm_private_data cleared), then copy_hugetlb_page_range(): each present
    entry shared -- hugetlb_try_dup_anon_rmap (PageAnonExclusive cleared, _entire_mapcount and
    _large_mapcount up), a reference, both entries write-protected (huge_ptep_set_wrprotect),
    hugetlb_count_add in the child."""
    from mmintro.arch.x86 import _PAGE_RW
    from mmintro.kernel import memory

    km = k.kmem
    km.set(dst_vma, "vm_area_struct", "vm_private_data", 0)
    h = hstate_vma(k, src_vma)
    src_mm, dst_mm = km.get(src_vma, "vm_area_struct", "vm_mm"), km.get(dst_vma, "vm_area_struct", "vm_mm")
    start, end = km.get(src_vma, "vm_area_struct", "vm_start"), km.get(src_vma, "vm_area_struct", "vm_end")
    cow = not km.get(src_vma, "vm_area_struct", "vm_flags") & VM_SHARED
    for a in range(start, end, h.size):
        level, slot, e = memory.walk(k, src_mm, a)
        if not memory.pte_present(e) or level not in ("PMD", "PUD"):
            continue  # huge_pte_none (swap/migration entries are not modelled)
        pfn = memory.pte_pfn(e)
        mv64, mv32, w = _words(k, pfn)
        mv64[w + _W.W_FLAGS] &= ~(1 << _T.const("PG_anon_exclusive"))
        mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] = (mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] + 1) & 0xFFFFFFFF
        mv32[2 * w + _W.FD_LARGE_MAPCOUNT] = (mv32[2 * w + _W.FD_LARGE_MAPCOUNT] + 1) & 0xFFFFFFFF
        mv32[2 * w + _W.D_REFCOUNT] += 1
        if cow:
            e &= ~_PAGE_RW
            k.mem.write_u64(slot - k.page_offset_base, e)
        dslot = huge_pte_alloc(k, dst_mm, a, h)
        k.mem.write_u64(dslot - k.page_offset_base, e)
        _hugetlb_count(k, dst_mm, h.nr_pages)
    return 0


def hugetlb_wp_copy(k: Kernel, mm: int, vma: int, h: Hstate, slot: int, haddr: int, old: int) -> int:
    """hugetlb_wp()'s copy: a new folio (alloc_hugetlb_folio: the owner's reservation or a
    free unreserved page), copy_user_large_folio, hugetlb_add_new_anon_rmap on it, the old
    one's mapping removed (hugetlb_remove_rmap) and its reference put, the entry writable."""
    from mmintro.arch.x86 import _PAGE_DIRTY, _PAGE_RW

    # the owner's reservation for this index went to ``old``: the copy needs an unreserved
    # free page (cow_from_owner; unmap_ref_private's stealing from children is not modelled)
    new = alloc_hugetlb_folio(k, h, vma, haddr)
    if new is None:
        raise MemoryError(f"{haddr:#x}: no huge page for the copy on write (VM_FAULT_OOM)")
    k.mem.write(new << PAGE_SHIFT, k.mem.read(old << PAGE_SHIFT, h.size))
    mv64, _mv32, w = _words(k, new)
    mv64[w + _W.W_FLAGS] |= 1 << _T.const("PG_uptodate")
    hugetlb_add_new_anon_rmap(k, new, vma, haddr)
    _set_private_bit(k, new, HPG_migratable, True)
    _omv64, omv32, ow = _words(k, old)
    omv32[2 * ow + _W.FD_ENTIRE_MAPCOUNT] = (omv32[2 * ow + _W.FD_ENTIRE_MAPCOUNT] - 1) & 0xFFFFFFFF
    omv32[2 * ow + _W.FD_LARGE_MAPCOUNT] = (omv32[2 * ow + _W.FD_LARGE_MAPCOUNT] - 1) & 0xFFFFFFFF
    ref = omv32[2 * ow + _W.D_REFCOUNT]
    if ref <= 1:
        free_huge_folio(k, old)
    else:
        omv32[2 * ow + _W.D_REFCOUNT] = ref - 1
    e = make_huge_pte(k, vma, new, False) | _PAGE_RW | _PAGE_DIRTY
    k.mem.write_u64(slot - k.page_offset_base, e)
    return new


def hugetlb_add_to_page_cache(k: Kernel, pfn: int, mapping: int, idx: int, h: Hstate) -> None:
    """mm/hugetlb.c hugetlb_add_to_page_cache(): __filemap_add_folio at the base-page index
    ``idx << huge_page_order`` (one multi-index XArray entry; nrpages, mapping, index, the
    cache's folio_nr_pages references; hugetlb folios are not NR_FILE_PAGES and not on the
    LRU), HPG_restore_reserve cleared, folio_mark_dirty (noop_dirty_folio: PG_dirty only),
    inode->i_blocks += blocks_per_huge_page."""
    from mmintro.kernel.inode import mapping_xa

    km = k.kmem
    mv64, mv32, w = _words(k, pfn)
    index = idx << h.order
    mv64[w + _W.W_MAPPING] = mapping
    km.set(k.pfn_to_page(pfn), "page", "__folio_index", index)
    mv32[2 * w + _W.D_REFCOUNT] += h.nr_pages
    mapping_xa(k, mapping).xa_store_order(index, h.order, k.pfn_to_page(pfn))
    km.set(mapping, "address_space", "nrpages", km.get(mapping, "address_space", "nrpages") + h.nr_pages)
    _set_private_bit(k, pfn, HPG_restore_reserve, False)
    mv64[w + _W.W_FLAGS] |= 1 << _T.const("PG_dirty")
    inode = km.get(mapping, "address_space", "host")
    km.set(inode, "inode", "i_blocks", km.get(inode, "inode", "i_blocks") + (h.size >> 9))


def hugetlb_no_page_shared(k: Kernel, mm: int, vma: int, h: Hstate, slot: int, haddr: int, pgoff: int) -> int:
    """hugetlb_no_page() for a VM_MAYSHARE mapping: filemap_lock_hugetlb_folio() finds the
    folio in the inode's page cache (a reference for the mapping) or alloc_hugetlb_folio()
    (the inode's reservation), folio_zero_user and hugetlb_add_to_page_cache; then
    hugetlb_add_file_rmap (_entire_mapcount, _large_mapcount), make_huge_pte(try_mkwrite):
    writable and dirty in a VM_WRITE VMA, hugetlb_count_add."""
    from mmintro.kernel.inode import mapping_xa

    km = k.kmem
    mapping = km.get(km.get(vma, "vm_area_struct", "vm_file"), "file", "f_mapping")
    cached = mapping_xa(k, mapping).xa_load(pgoff << h.order)
    if cached:
        pfn = (cached - k.vmemmap_base) // k.struct_page_size
        _mv64, mv32, w = _words(k, pfn)
        mv32[2 * w + _W.D_REFCOUNT] += 1
    else:
        pfn = alloc_hugetlb_folio(k, h, vma, haddr)
        if pfn is None:
            raise MemoryError(f"{haddr:#x}: no free {h.name} page (VM_FAULT_OOM)")
        k.mem.fill(pfn << PAGE_SHIFT, h.size, 0)
        mv64, _mv32, w = _words(k, pfn)
        mv64[w + _W.W_FLAGS] |= 1 << _T.const("PG_uptodate")
        hugetlb_add_to_page_cache(k, pfn, mapping, pgoff, h)
        _set_private_bit(k, pfn, HPG_migratable, True)
    _mv64, mv32, w = _words(k, pfn)
    mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] = (mv32[2 * w + _W.FD_ENTIRE_MAPCOUNT] + 1) & 0xFFFFFFFF
    mv32[2 * w + _W.FD_LARGE_MAPCOUNT] = (mv32[2 * w + _W.FD_LARGE_MAPCOUNT] + 1) & 0xFFFFFFFF
    k.mem.write_u64(slot - k.page_offset_base, make_huge_pte(k, vma, pfn, True))
    _hugetlb_count(k, mm, h.nr_pages)
    return pfn


def hugetlbfs_evict_inode(k: Kernel, inode: int) -> None:
    """hugetlbfs_evict_inode() when the last reference to a hugetlbfs inode goes (the anon
    hugetlb file's last fput -> dput -> iput): remove_inode_hugepages() takes every folio out
    of the page cache (the multi-index entry erased, nrpages, mapping cleared) and puts the
    cache's references (free_huge_folio on the last: back on the free list);
    hugetlb_unreserve_pages() gives back the reservations never instantiated; the resv_map
    is freed, the inode leaves its super_block's s_inodes and returns to
    hugetlbfs_inode_cache."""
    from mmintro.kernel import slub
    from mmintro.kernel.inode import mapping_xa

    km = k.kmem
    mapping = km.get(inode, "inode", "i_mapping")
    if km.get(mapping, "address_space", "nrpages"):
        xa = mapping_xa(k, mapping)
        for index, entry in list(xa.xa_for_each()):
            pfn = (entry - k.vmemmap_base) // k.struct_page_size
            order = _folio_order(k, pfn)
            xa.xa_erase(index)
            km.set(mapping, "address_space", "nrpages", km.get(mapping, "address_space", "nrpages") - (1 << order))
            mv64, mv32, w = _words(k, pfn)
            mv64[w + _W.W_MAPPING] = 0
            mv64[w + _W.W_FLAGS] &= ~(1 << _T.const("PG_dirty"))
            ref = mv32[2 * w + _W.D_REFCOUNT] - (1 << order)
            mv32[2 * w + _W.D_REFCOUNT] = max(ref, 0)
            if ref <= 0:
                free_huge_folio(k, pfn)
    info = k.__dict__.get("hugetlb_inode_resv", {}).pop(inode, None)
    if info is not None:
        hugetlb_acct_memory(k, _state(k)[info["h"]], -len(info["resv"]))
    rm = km.get(mapping, "address_space", "i_private_data")
    if rm:
        slub.kfree(k, rm)
        km.set(mapping, "address_space", "i_private_data", 0)
    sl = km.addr(inode, "inode", "i_sb_list")  # inode_sb_list_del
    nxt, prev = km.get(sl, "list_head", "next"), km.get(sl, "list_head", "prev")
    km.set(prev, "list_head", "next", nxt)
    km.set(nxt, "list_head", "prev", prev)
    km.init_list_head(sl)
    slub.kmem_cache_free(k, slub.find_cache(k, "hugetlbfs_inode_cache"), inode)
