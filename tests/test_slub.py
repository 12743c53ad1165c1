"""SLUB as in 6.18: cache geometry against the reference kernel's /sys/kernel/slab and
/proc/slabinfo, the kmalloc table, the allocator's own behaviour, and real drgn's slab
helpers (and `crash kmem -s`) on a snapshot taken after a two-CPU workload: the objects drgn
finds allocated are exactly the simulator's live objects, which needs the hardened free
pointers, the CPU freelists and partial lists, and 6.18's sheaves and barns to be right."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from mmintro.arch.x86 import PAGE_SIZE
from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc as pa
from mmintro.kernel import slab_common as sc
from mmintro.kernel import slub
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save, snapshot_paths
from mmintro.types import get_types

T = get_types()
REF = Path(__file__).parent / "data" / "reference" / "procfs"
TSV_COLUMNS = (
    "object_size",
    "slab_size",
    "order",
    "objs_per_slab",
    "align",
    "cpu_partial",
    "min_partial",
    "sheaf_capacity",
    "aliases",
    "ctor",
    "destroy_by_rcu",
    "reclaim_account",
    "hwcache_align",
)


def _tsv() -> dict[str, dict]:
    lines = (REF / "sys" / "sys_kernel_slab.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    assert tuple(head[1:]) == TSV_COLUMNS
    rows = {}
    for line in lines[1:]:
        f = line.split("\t")
        rows[f[0]] = {c: (v if c == "ctor" else int(v)) for c, v in zip(TSV_COLUMNS, f[1:])}
    return rows


def _slabinfo() -> list[tuple[str, int, int, int]]:
    """(name, objsize, objperslab, pagesperslab), newest cache first."""
    out = []
    for line in (REF / "slabinfo").read_text().splitlines()[2:]:
        f = line.split()
        out.append((f[0], int(f[3]), int(f[4]), int(f[5])))
    return out


@pytest.fixture(scope="module")
def k1():
    """A freshly booted 1 GiB, 2-CPU, 1-node machine (the reference has 2 CPUs, 1 node)."""
    return boot(MachineConfig(ram=1 << 30, cpus=2))


@pytest.fixture()
def k():
    return boot(MachineConfig(ram=1 << 30, cpus=2))


def _ours(s: slub.KmemCache) -> dict:
    return {
        "object_size": s.object_size,
        "slab_size": s.size,
        "order": s.oo_order,
        "objs_per_slab": s.oo_objects,
        "align": s.align,
        "cpu_partial": s.cpu_partial,
        "min_partial": s.min_partial,
        "sheaf_capacity": s.sheaf_capacity,
        "aliases": max(s.refcount, 1) - 1,
        "ctor": f"{s.ctor.split('@')[0]}+0x0/{sc.CTORS[s.ctor][0]:#x}" if s.ctor else "-",  # %pS: the name
        "destroy_by_rcu": int(bool(s.flags & sc.SLAB_TYPESAFE_BY_RCU)),
        "reclaim_account": int(bool(s.flags & sc.SLAB_RECLAIM_ACCOUNT)),
        "hwcache_align": int(bool(s.flags & sc.SLAB_HWCACHE_ALIGN)),
    }


# Where our caches legitimately differ from the reference's /sys/kernel/slab: a mergeable
# cache's object_size grows and its alias count rises with every cache merged into it
# (__kmem_cache_alias), and the reference boot creates ~180 caches we do not.
def _merge_explained(s: slub.KmemCache, col: str, ref: dict) -> bool:
    if sc.slab_unmergeable(s):
        return False
    if col == "aliases":
        return ref["aliases"] >= len(s.aliases)
    if col == "object_size":
        return ref["aliases"] > len(s.aliases) and s.object_size <= ref["object_size"] <= s.size
    return False


def test_every_cache_matches_the_reference_sysfs_geometry(k1) -> None:
    tsv = _tsv()
    compared, unexplained = 0, []
    for s in k1.slab.caches:
        key = sc.sysfs_name(s)
        ref = tsv.get(key)
        assert ref is not None, f"{s.name}: the reference has no /sys/kernel/slab/{key}"
        ours = _ours(s)
        for col in TSV_COLUMNS:
            if ours[col] != ref[col] and not _merge_explained(s, col, ref):
                unexplained.append(f"{s.name} ({key}) {col}: ours {ours[col]} reference {ref[col]}")
        compared += 1
    assert compared >= 97 and not unexplained, "\n".join(unexplained)


def test_named_merge_targets_match_the_reference_slabinfo(k1) -> None:
    """/proc/slabinfo shows every real cache by the name of its first creator."""
    ref = {name: (objsize, per, pages) for name, objsize, per, pages in _slabinfo()}
    for s in k1.slab.caches:
        assert ref[s.name] == (s.size, s.oo_objects, 1 << s.oo_order), s.name
    # kmem_cache objects are sized for nr_node_ids node pointers: 224 + 8 on one node.
    kc_ = k1.slab.kmem_cache
    assert kc_.object_size == T.offsetof("kmem_cache", "node") + 8 and kc_.size == 256


def test_cache_order_is_the_reference_boot_order(k1) -> None:
    """slab_caches is newest first, like /proc/slabinfo; vmap_area is created by
    vmalloc_init(), which the simulated boot runs after all of kmem_cache_init()."""
    ours = [s.name for s in reversed(k1.slab.caches) if s.name != "vmap_area"]
    ref = [name for name, *_ in _slabinfo() if name in set(ours)]
    assert ours == ref


def test_merging_follows_find_mergeable(k) -> None:
    k1 = k
    avc = slub.find_cache(k1, "anon_vma_chain")
    assert slub.find_cache(k1, "fs_cache") is avc  # 56 bytes, HWCACHE_ALIGN -> 64, SLAB_ACCOUNT
    assert avc.refcount == 2 and avc.aliases == ["fs_cache"]
    assert sc.create_unique_id(avc) == ":A-0000064"
    # A new mergeable cache joins the oldest compatible one; flags in SLAB_MERGE_SAME must agree.
    s = slub.kmem_cache_create(k1, "test_merge_60", 60, flags=sc.SLAB_ACCOUNT)
    assert s is avc and avc.refcount == 3
    assert slub.kmem_cache_create(k1, "test_merge_rcl", 100, flags=sc.SLAB_RECLAIM_ACCOUNT).name == "buffer_head"
    # Constructors, RCU, usercopy regions and sheaves never merge.
    assert not slub.kmem_cache_create(
        k1, "test_nomerge_rcu", 60, flags=sc.SLAB_ACCOUNT | sc.SLAB_TYPESAFE_BY_RCU
    ).aliases
    assert (
        slub.kmem_cache_create(k1, "test_nomerge_user", 64, flags=sc.SLAB_ACCOUNT, usersize=8).name
        == "test_nomerge_user"
    )


def test_calculate_sizes_places_the_free_pointer_as_6_18(k1) -> None:
    c = {s.name: s for s in k1.slab.caches}
    assert c["kmalloc-64"].offset == 32 and c["kmalloc-8"].offset == 0  # mid-object
    assert c["mm_struct"].offset == 1568 // 2
    assert c["radix_tree_node"].offset == 576 and c["radix_tree_node"].size == 584  # ctor: after the object
    assert c["anon_vma"].offset == 96 and c["anon_vma"].size == 104  # ctor and RCU
    assert c["filp"].offset == T.offsetof("file", "f_freeptr") and c["filp"].size == 192  # RCU freeptr_offset
    assert c["vm_area_struct"].offset == T.offsetof("vm_area_struct", "vm_freeptr")
    assert c["sighand_cache"].offset == 2080 and c["sighand_cache"].size == 2112
    km = c["kmalloc-96"]
    assert (km.align, km.inuse, km.min_order, km.min_objects, km.allocflags) == (32, 96, 0, 42, G.__GFP_COMP)
    # kmalloc caches guarantee the largest power-of-two divisor of their size as alignment.
    assert [c[f"kmalloc-{n}"].align for n in ("8", "16", "192", "1k", "8k")] == [8, 16, 64, 1024, 8192]
    assert c["dma-kmalloc-64"].allocflags == G.__GFP_COMP | G.GFP_DMA
    assert c["kmalloc-rcl-64"].allocflags == G.__GFP_COMP | G.FLAGS["__GFP_RECLAIMABLE"]
    assert all(s.flags & sc.__CMPXCHG_DOUBLE for s in c.values())
    # reciprocal_value(size) as lib/math/reciprocal_div.c computes it
    m, sh1, sh2 = slub.reciprocal_value(192)
    assert all(((x * m >> 32) + ((x - (x * m >> 32)) >> sh1)) >> sh2 == x // 192 for x in range(0, 4096, 7))


def test_kmalloc_table_is_6_18s(k1) -> None:
    t = k1.slab.kmalloc_caches
    pre = {
        sc.KMALLOC_NORMAL: "kmalloc-",
        sc.KMALLOC_RECLAIM: "kmalloc-rcl-",
        sc.KMALLOC_DMA: "dma-kmalloc-",
        sc.KMALLOC_CGROUP: "kmalloc-cg-",
    }
    short = ["", "96", "192", "8", "16", "32", "64", "128", "256", "512", "1k", "2k", "4k", "8k"]
    for type_, prefix in pre.items():
        assert t[type_][0] is None
        assert [s.name for s in t[type_][1:]] == [prefix + x for x in short[1:]]
    assert t[sc.KMALLOC_NO_OBJ_EXT] == t[sc.KMALLOC_NORMAL]  # aliases: no allocation profiling
    assert not any(s.name.startswith("kmalloc-rnd") for s in k1.slab.caches)  # RANDOM_KMALLOC_CACHES off

    def cache(size, gfp="GFP_KERNEL"):
        return slub.kmalloc_slab(k1, size, G.parse_gfp(gfp)).name

    assert [cache(n) for n in (1, 8, 9, 24, 64, 65, 72, 96, 97, 128, 129, 192, 193, 4096, 4097, 8192)] == [
        "kmalloc-8",
        "kmalloc-8",
        "kmalloc-16",
        "kmalloc-32",
        "kmalloc-64",
        "kmalloc-96",
        "kmalloc-96",
        "kmalloc-96",
        "kmalloc-128",
        "kmalloc-128",
        "kmalloc-192",
        "kmalloc-192",
        "kmalloc-256",
        "kmalloc-4k",
        "kmalloc-8k",
        "kmalloc-8k",
    ]
    assert cache(40, "GFP_KERNEL_ACCOUNT") == "kmalloc-cg-64"
    assert cache(40, "GFP_KERNEL|__GFP_RECLAIMABLE") == "kmalloc-rcl-64"
    assert cache(40, "GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_ACCOUNT") == "kmalloc-rcl-64"
    assert cache(40, "GFP_DMA|__GFP_RECLAIMABLE") == "dma-kmalloc-64"
    # the kmalloc_caches[][] global holds the same pointers
    base = k1.sym("kmalloc_caches")
    row = sc.KMALLOC_SHIFT_HIGH + 1
    for type_ in range(sc.NR_KMALLOC_TYPES):
        for i in range(row):
            got = int.from_bytes(k1.mem.read(k1.pa(base + 8 * (type_ * row + i)), 8), "little")
            assert got == (t[type_][i].addr if t[type_][i] else 0)
    # dedicated buckets (CONFIG_SLAB_BUCKETS): memdup_user-* and msg_msg-*, never merged
    b = slub.find_cache(k1, "msg_msg-64")
    assert b.flags & sc.SLAB_NO_MERGE and b.flags & sc.SLAB_ACCOUNT and b.usersize == 64 - 48


def test_cpu_partial_and_min_partial(k1) -> None:
    c = {s.name: s for s in k1.slab.caches}
    assert (c["kmalloc-8"].cpu_partial, c["kmalloc-8"].cpu_partial_slabs) == (120, 1)
    assert (c["kmalloc-256"].cpu_partial, c["kmalloc-256"].cpu_partial_slabs) == (52, 7)
    assert (c["kmalloc-4k"].cpu_partial, c["kmalloc-4k"].min_partial, c["kmalloc-4k"].cpu_partial_slabs) == (6, 6, 2)
    assert c["task_struct"].min_partial == 6 and c["task_struct"].cpu_partial_slabs == 3


# -- the allocator in the simulator -------------------------------------------------------------


def _slab_pages_bytes(k) -> dict[tuple[int, str], int]:
    out: dict[tuple[int, str], int] = {}
    for slab in set(k.slab.slab_of_pfn.values()):
        item = "NR_SLAB_RECLAIMABLE_B" if slab.cache.flags & sc.SLAB_RECLAIM_ACCOUNT else "NR_SLAB_UNRECLAIMABLE_B"
        out[(slab.nid, item)] = out.get((slab.nid, item), 0) + (PAGE_SIZE << slab.order)
    for pfn, order in k.slab.large.items():
        nid = pa.page_zone(k, pfn).nid
        out[(nid, "NR_SLAB_UNRECLAIMABLE_B")] = out.get((nid, "NR_SLAB_UNRECLAIMABLE_B"), 0) + (PAGE_SIZE << order)
    return out


def _check_stats(k) -> None:
    want = _slab_pages_bytes(k)
    for nid in range(k.config.nodes):
        for item in ("NR_SLAB_RECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE_B"):
            assert k.node_vm_stat[nid].get(item, 0) == want.get((nid, item), 0), (nid, item)


def test_struct_slab_and_struct_page_overlay(k) -> None:
    s = slub.find_cache(k, "task_struct")  # order-3 slabs
    obj = slub.kmem_cache_alloc(k, s, caller="dup_task_struct")
    slab = slub.virt_to_slab(k, obj)
    assert slab.order == 3 and slab.frozen and slab.inuse == slab.objects == 5
    mv64, mv32, w = pa.page_words(k, slab.pfn)
    assert mv32[2 * w + pa.D_PAGE_TYPE] == T.const("PGTY_slab") << 24
    assert mv32[2 * w + pa.D_REFCOUNT] == 0  # frozen pages
    assert mv64[w + slub.W_SLAB_CACHE] == s.addr and mv64[w + T.offsetof("slab", "obj_exts") // 8] == 0
    assert mv64[w] & (1 << T.const("PG_head"))
    for i in range(1, 8):
        assert mv64[w + 8 * i + pa.W_COMPOUND_HEAD] == slab.page | 1
        assert mv32[2 * (w + 8 * i) + pa.D_PAGE_TYPE] == 0xFFFFFFFF  # only the head is typed
    cnt = mv32[2 * w + slub.D_COUNTERS]
    assert (cnt & 0xFFFF, (cnt >> 16) & 0x7FFF, cnt >> 31) == (5, 5, 1)
    # the symbol of the call site exists for %pS
    assert k.image.symbols["dup_task_struct"].kind == "func"
    assert slub.live_objects(k, s)[obj] == "dup_task_struct"


def test_hardened_freelist_encoding_and_random_sequence(k) -> None:
    s = slub.find_cache(k, "kmalloc-512")
    assert sorted(s.random_seq) == [i * s.size for i in range(s.oo_objects)]
    objs = [slub.kmalloc(k, 500) for _ in range(40)]
    c = s.cpus[k.current_cpu]
    # Decode the CPU freelist from memory: next = *(obj + offset) ^ s->random ^ swab(obj + offset).
    it, offs = c.freelist, []
    while it:
        offs.append(it - c.slab.base)
        a = it + s.offset
        raw = int.from_bytes(k.mem.read(k.pa(a), 8), "little")
        it = raw ^ s.random ^ int.from_bytes(a.to_bytes(8, "little"), "big")
    assert offs
    # A new slab's freelist walks random_seq from a random start, wrapping (shuffle_freelist);
    # the CPU took objects from its head, so what is left continues that walk.
    seq = s.random_seq
    start = seq.index(offs[0])
    assert offs == [seq[(start + i) % len(seq)] for i in range(len(offs))]
    for o in objs:
        slub.kfree(k, o)


def test_early_boot_slabs_have_sequential_freelists(k) -> None:
    """Before random_seq exists (slab_state < UP) allocate_slab links objects in order."""
    s = k.slab.kmem_cache_node
    first = min((sl for sl in set(k.slab.slab_of_pfn.values()) if sl.cache is s), key=lambda sl: sl.pfn)
    objs = sorted(a for a in slub.live_objects(k, s) if first.base <= a < first.base + PAGE_SIZE)
    assert objs[:3] == [first.base, first.base + s.size, first.base + 2 * s.size]


def test_alloc_free_paths_lists_and_discard(k) -> None:
    s = slub.kmem_cache_create(k, "test_cache", 1000, flags=sc.SLAB_HWCACHE_ALIGN)
    assert (s.size, s.oo_order, s.oo_objects, s.min_partial) == (1024, 2, 16, 5)
    rng = np.random.default_rng(3)
    objs = []
    for i in range(16 * 40):
        k.on_cpu(i % 2)
        objs.append(slub.kmem_cache_alloc(k, s))
    n = s.nodes[0]
    assert n.nr_slabs == 40 and n.total_objects == 640 and not len(n.partial)
    order = rng.permutation(len(objs))
    for j, i in enumerate(order):
        k.on_cpu(j % 2)
        slub.kmem_cache_free(k, s, objs[i])
        if j == 200:
            # frees into full slabs put them on CPU partial lists (put_cpu_partial)
            assert any(c.partial is not None for c in s.cpus)
            for c in s.cpus:
                chain, p = [], c.partial
                while p is not None:
                    chain.append(p)
                    p = p.next
                assert [p.slabs for p in chain] == list(range(len(chain), 0, -1))
                assert len(chain) <= s.cpu_partial_slabs
                assert all(not p.frozen for p in chain)
    assert not slub.live_objects(k, s)
    # empty slabs beyond min_partial went back to the page allocator
    slabs = [sl for sl in set(k.slab.slab_of_pfn.values()) if sl.cache is s]
    on_cpu = sum(1 for c in s.cpus if c.slab is not None)
    cpu_partial = sum(c.partial.slabs for c in s.cpus if c.partial is not None)
    assert len(slabs) == n.nr_slabs <= s.min_partial + on_cpu + cpu_partial
    assert n.nr_partial == len(n.partial) <= s.min_partial
    _check_stats(k)
    # flush_all(): everything is on the node list or gone
    slub.flush_all(k, s)
    assert n.nr_slabs == n.nr_partial <= s.min_partial
    assert all(sl.inuse == 0 and not sl.frozen for sl in n.partial)


def test_min_order_fallback_when_the_cache_order_fails(k, monkeypatch) -> None:
    s = slub.find_cache(k, "kmalloc-512")  # oo order 1, min order 0
    real = type(k).alloc_pages

    def fail_order1(self, gfp, order=0, nid=None, nodemask=None):
        if order == 1:
            return None
        return real(self, gfp, order, nid, nodemask)

    monkeypatch.setattr(type(k), "alloc_pages", fail_order1)
    for c in s.cpus:
        c.freelist = 0
    slub.flush_all(k, s)
    for n in s.nodes:
        for sl in list(n.partial):
            slub.remove_partial(k, n, sl)  # (leak them: force a new slab)
    obj = slub.kmalloc(k, 300)
    slab = slub.virt_to_slab(k, obj)
    assert slab.order == 0 and slab.objects == s.min_objects == 8


def test_gfp_zero_double_free_wrong_cache_and_zero_size(k) -> None:
    a = slub.kmalloc(k, 100)
    k.kmem.write_bytes(a, b"\xab" * 128)
    slub.kfree(k, a)
    b = slub.kzalloc(k, 100)
    assert b == a  # LIFO on the CPU freelist
    assert k.mem.read(k.pa(b), 128) == bytes(128)  # object_size bytes cleared (the free pointer too)
    slub.kfree(k, b)
    with pytest.raises(slub.SlubError, match="double free"):
        slub.kfree(k, b)
    c = slub.kmem_cache_alloc(k, slub.find_cache(k, "dentry"))
    with pytest.raises(slub.SlubError, match="Wrong slab cache. filp"):
        slub.kmem_cache_free(k, slub.find_cache(k, "filp"), c)
    assert slub.kmalloc(k, 0) == sc.ZERO_SIZE_PTR
    slub.kfree(k, sc.ZERO_SIZE_PTR)
    slub.kfree(k, 0)
    assert slub.ksize(k, slub.kmalloc(k, 100)) == 128
    assert slub.ksize(k, c) == 192


def test_kmalloc_large_is_a_large_kmalloc_folio(k) -> None:
    before = dict(k.node_vm_stat[0])
    a = slub.kmalloc(k, 9000, "GFP_KERNEL|__GFP_ZERO", caller="big_buffer")
    pfn = k.pa(a) >> 12
    mv64, mv32, w = pa.page_words(k, pfn)
    assert k.slab.large[pfn] == 2 and mv32[2 * w + pa.D_PAGE_TYPE] == T.const("PGTY_large_kmalloc") << 24
    assert mv64[w] & (1 << T.const("PG_head"))
    assert k.node_vm_stat[0]["NR_SLAB_UNRECLAIMABLE_B"] - before.get("NR_SLAB_UNRECLAIMABLE_B", 0) == 4 * PAGE_SIZE
    assert slub.ksize(k, a) == 4 * PAGE_SIZE
    slub.kfree(k, a)
    assert mv32[2 * w + pa.D_PAGE_TYPE] == 0xFFFFFFFF and pfn not in k.allocations
    assert k.node_vm_stat[0]["NR_SLAB_UNRECLAIMABLE_B"] == before.get("NR_SLAB_UNRECLAIMABLE_B", 0)


def test_sheaves_and_barn(k) -> None:
    s = slub.find_cache(k, "vm_area_struct")
    assert s.sheaf_capacity == 32 and s.cpu_sheaves
    k.on_cpu(0)
    objs = [slub.kmem_cache_alloc(k, s) for _ in range(600)]
    pcs = s.pcs[0]
    barn = s.nodes[0].barn
    for o in objs:
        slub.kmem_cache_free(k, s, o)
    # Frees fill main, then spare, then full sheaves go to the barn up to MAX_FULL_SHEAVES,
    # after which a full spare is flushed back to the slabs (E2BIG).
    assert len(barn.full) == slub.MAX_FULL_SHEAVES
    assert all(sh.size == 32 for sh in barn.full)
    held = pcs.main.size + (pcs.spare.size if pcs.spare else 0) + 32 * len(barn.full)
    slabs = [sl for sl in set(k.slab.slab_of_pfn.values()) if sl.cache is s]
    assert sum(sl.objects for sl in slabs) == held + len(_free_on_slabs(k, s))
    # Allocations come back from the sheaves first.
    again = [slub.kmem_cache_alloc(k, s) for _ in range(100)]
    assert set(again) <= set(objs)
    _check_stats(k)


def _free_on_slabs(k, s) -> set[int]:
    """Objects free on the slabs themselves (CPU freelist, slab freelists)."""
    W = k.slab.W
    out = set()
    for sl in set(k.slab.slab_of_pfn.values()):
        if sl.cache is not s:
            continue
        it = sl.freelist
        while it:
            out.add(it)
            it = slub.get_freepointer(W, s, it)
    for c in s.cpus:
        it = c.freelist
        while it:
            out.add(it)
            it = slub.get_freepointer(W, s, it)
    return out


def test_numa_node_requests_and_per_node_structures() -> None:
    k = boot(MachineConfig(ram=2 << 30, nodes=2, cpus=2))
    s = slub.find_cache(k, "kmalloc-256")
    assert all(n is not None for n in s.nodes)
    for nid, n in enumerate(s.nodes):
        assert slub.virt_to_slab(k, n.addr).nid == nid  # kmem_cache_node objects on their node
    k.on_cpu(0)
    a = slub.kmalloc_node(k, 200, "GFP_KERNEL", 1)
    assert slub.virt_to_slab(k, a).nid == 1
    # NUMA_NO_NODE takes whatever the CPU slab is, even a remote one (node_match())
    b = slub.kmalloc(k, 200)
    assert slub.virt_to_slab(k, b) is slub.virt_to_slab(k, a)
    c = slub.kmalloc_node(k, 200, "GFP_KERNEL", 0)
    assert slub.virt_to_slab(k, c).nid == 0 and s.cpus[0].slab.nid == 0
    vma = slub.find_cache(k, "vm_area_struct")
    assert all(n.barn is not None for n in vma.nodes)
    _check_stats(k)


def test_deterministic_by_seed() -> None:
    def run(seed):
        k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=seed))
        rng = np.random.default_rng(0)
        live = []
        for i in range(500):
            k.on_cpu(i % 2)
            if live and rng.random() < 0.4:
                slub.kfree(k, live.pop(int(rng.integers(len(live)))))
            else:
                live.append(slub.kmalloc(k, int(rng.integers(1, 2000))))
        s = slub.find_cache(k, "kmalloc-64")
        return sorted(k.slab.live), s.random, s.random_seq, [c.freelist for c in s.cpus]

    assert run(5) == run(5)
    assert run(5)[1:3] != run(6)[1:3]


# -- real drgn on a snapshot ---------------------------------------------------------------------------
def _workload(k) -> dict:
    rng = np.random.default_rng(11)
    custom = slub.kmem_cache_create(
        k,
        "mmintro_test_ctor",
        200,
        flags=sc.SLAB_HWCACHE_ALIGN | sc.SLAB_ACCOUNT,
        ctor="mmintro_test_ctor",
        ctor_fn=lambda k_, o: k_.kmem.write_u64(o, 0x5EED),
    )
    named = [
        slub.find_cache(k, n)
        for n in (
            "task_struct",
            "vm_area_struct",
            "maple_node",
            "anon_vma",
            "radix_tree_node",
            "filp",
            "dentry",
            "inode_cache",
            "pid",
        )
    ]
    named.append(custom)
    gfps = ["GFP_KERNEL", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC", "GFP_KERNEL|__GFP_ZERO"]
    live: list[tuple[int, slub.KmemCache | None]] = []
    for _i in range(6000):
        k.on_cpu(int(rng.integers(2)))
        r = rng.random()
        if live and r < 0.42:
            a, s = live.pop(int(rng.integers(len(live))))
            if s is None:
                slub.kfree(k, a)
            else:
                slub.kmem_cache_free(k, s, a)
        elif r < 0.7:
            size = int(
                rng.choice(
                    [8, 16, 24, 40, 64, 96, 100, 150, 192, 256, 300, 512, 700, 1024, 2000, 4096, 8000, 9000, 20000]
                )
            )
            live.append((slub.kmalloc(k, size, gfps[int(rng.integers(len(gfps)))], caller="test_kmalloc"), None))
        else:
            s = named[int(rng.integers(len(named)))]
            live.append((slub.kmem_cache_alloc(k, s, caller="test_cache_alloc"), s))
    # enough vm_area_struct churn on one CPU to fill the barn
    vma = slub.find_cache(k, "vm_area_struct")
    k.on_cpu(1)
    vs = [slub.kmem_cache_alloc(k, vma, caller="vm_area_alloc") for _ in range(500)]
    for v in vs[:450]:
        slub.kmem_cache_free(k, vma, v)
    return {"dma": slub.kmalloc(k, 64, "GFP_DMA", caller="test_dma")}


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    drgn = pytest.importorskip("drgn")
    k = boot(MachineConfig(ram=1 << 30, cpus=2, seed=3))
    extra = _workload(k)
    d = tmp_path_factory.mktemp("slub")
    save(k, d / "slub")
    core, vmlinux = snapshot_paths(d / "slub")
    from mmintro.crosscheck import open_drgn

    prog = open_drgn(str(core), str(vmlinux))
    return k, prog, str(core), str(vmlinux), extra, drgn


def _drgn_caches(prog) -> dict:
    from drgn.helpers.linux.slab import for_each_slab_cache

    return {c.name.string_().decode(): c for c in for_each_slab_cache(prog)}


def test_drgn_for_each_slab_cache_is_slab_caches(snap) -> None:
    k, prog, *_ = snap
    from drgn.helpers.linux.slab import for_each_slab_cache

    assert [c.name.string_().decode() for c in for_each_slab_cache(prog)] == [s.name for s in reversed(k.slab.caches)]
    assert prog["kmem_cache"].value_() == k.slab.kmem_cache.addr
    assert prog["task_struct_cachep"].name.string_() == b"task_struct"
    assert prog["kmalloc_caches"][sc.KMALLOC_CGROUP][5].name.string_() == b"kmalloc-cg-32"


def test_drgn_reads_our_kmem_cache_fields(snap) -> None:
    k, prog, *_ = snap
    caches = _drgn_caches(prog)
    for s in k.slab.caches:
        c = caches[s.name]
        assert c.value_() == s.addr
        got = [
            c.member_(f).value_()
            for f in (
                "size",
                "object_size",
                "offset",
                "inuse",
                "align",
                "refcount",
                "flags",
                "random",
                "min_partial",
                "cpu_partial",
                "cpu_partial_slabs",
                "sheaf_capacity",
                "red_left_pad",
            )
        ]
        assert got == [
            s.size,
            s.object_size,
            s.offset,
            s.inuse,
            s.align,
            s.refcount,
            s.flags,
            s.random,
            s.min_partial,
            s.cpu_partial,
            s.cpu_partial_slabs,
            s.sheaf_capacity,
            0,
        ], s.name
        assert (c.oo.x.value_(), c.min.x.value_()) == (s.oo, (s.min_order << 16) + s.min_objects)
        n = c.node[0]
        assert (n.nr_partial.value_(), n.nr_slabs.counter.value_(), n.total_objects.counter.value_()) == (
            s.nodes[0].nr_partial,
            s.nodes[0].nr_slabs,
            s.nodes[0].total_objects,
        )
        if s.random_seq:
            assert [c.random_seq[i].value_() for i in range(len(s.random_seq))] == s.random_seq


def _expected_usage(k, s) -> tuple[int, int, int]:
    """slab_cache_usage() as drgn computes it, from the simulator's books: node counters;
    free = CPU freelists + CPU partial slabs + node partial slabs + sheaves (main, spare,
    the barn's full ones)."""
    W = k.slab.W
    num_slabs = sum(n.nr_slabs for n in s.nodes)
    num_objs = sum(n.total_objects for n in s.nodes)
    free = 0
    for c in s.cpus:
        if c.slab is not None:
            it = c.freelist
            while it:
                free += 1
                it = slub.get_freepointer(W, s, it)
        p = c.partial
        while p is not None:
            free += p.objects - p.inuse
            p = p.next
    for n in s.nodes:
        free += sum(sl.objects - sl.inuse for sl in n.partial)
        if n.barn is not None:
            free += sum(sh.size for sh in n.barn.full)
    for pcs in s.pcs:
        free += pcs.main.size + (pcs.spare.size if pcs.spare else 0)
    return num_slabs, num_objs, free


def test_drgn_slab_cache_usage_and_crash_kmem_s(snap) -> None:
    k, prog, *_ = snap
    from drgn.helpers.linux.slab import slab_cache_usage

    from mmintro.crosscheck import crash

    caches = _drgn_caches(prog)
    rows = {}
    for line in crash(prog, "kmem -s").splitlines()[1:]:
        f = line.split()
        rows[f[6]] = f[:6]
    for s in k.slab.caches:
        u = slab_cache_usage(caches[s.name])
        want = _expected_usage(k, s)
        assert (u.num_slabs, u.num_objs, u.free_objs) == want, s.name
        # drgn counts remote frees into a frozen CPU slab as allocated (it reads only the CPU
        # freelist of a CPU slab): active = live objects + those.
        remote = sum(c.slab.objects - c.slab.inuse for c in s.cpus if c.slab is not None)
        assert u.active_objs == len(slub.live_objects(k, s)) + remote, s.name
        assert rows[s.name] == [
            f"{s.addr:x}",
            str(s.object_size),
            str(u.active_objs),
            str(u.num_objs),
            str(u.num_slabs),
            f"{(PAGE_SIZE << s.oo_order) // 1024}k",
        ]


@pytest.mark.slow  # ~5 s
def test_drgn_finds_exactly_the_live_objects_of_every_cache(snap) -> None:
    """The crucial one.  drgn's slab_cache_for_each_allocated_object() is a for_each_page()
    census of PageSlab pages with a matching slab_cache, then per slab the objects on no
    freelist (decoded with s->random and swab) and in no per-CPU or sheaf set.  The census
    runs once here (drgn takes ~3 s per pass over 1 GiB); the per-slab part is drgn's own
    code; and the whole unmodified helper runs on two caches that exercise everything."""
    k, prog, *_ = snap
    from drgn import Object, cast
    from drgn.helpers.linux.mm import PageSlab, for_each_page
    from drgn.helpers.linux.slab import _get_slab_cache_helper, slab_cache_for_each_allocated_object

    census = {}
    for page in for_each_page(prog):
        if PageSlab(page):
            census[page.value_()] = cast("struct slab *", page).slab_cache.value_()
    slabs = {sl.page: sl for sl in k.slab.slab_of_pfn.values()}
    assert census == {p: sl.cache.addr for p, sl in slabs.items()}
    caches = _drgn_caches(prog)
    ptr = prog.pointer_type(prog.type("void"))
    remote_total = 0
    for s in k.slab.caches:
        h = _get_slab_cache_helper(caches[s.name])
        h._cache_free_objects = h._sheaves_full_objects() | h._per_cpu_info().free_objects
        got = set()
        for p, sl in slabs.items():
            if sl.cache is s:
                pg = Object(prog, "struct page", address=p).address_of_()
                got |= {o.value_() for o in h._page_objects(pg, cast("struct slab *", pg), ptr)}
        assert got == set(slub.live_objects(k, s)), s.name
        remote_total += sum(1 for c in s.cpus if c.slab is not None and c.slab.inuse < c.slab.objects)
    assert remote_total, "the workload should free remotely into some CPU slab"
    for name in ("kmalloc-192", "vm_area_struct"):
        s = slub.find_cache(k, name)
        got = {o.value_() for o in slab_cache_for_each_allocated_object(caches[name], "void")}
        assert got == set(slub.live_objects(k, s)), name
    assert len(slub.find_cache(k, "vm_area_struct").nodes[0].barn.full) > 0


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MMINTRO_SLOW"),
    reason="~1 s of drgn per cache (a for_each_page pass over 1 GiB each); MMINTRO_SLOW=1 runs it",
)
def test_drgn_unmodified_helper_on_every_cache(snap) -> None:
    k, prog, *_ = snap
    from drgn.helpers.linux.slab import slab_cache_for_each_allocated_object

    caches = _drgn_caches(prog)
    for s in k.slab.caches:
        got = {o.value_() for o in slab_cache_for_each_allocated_object(caches[s.name], "void")}
        assert got == set(slub.live_objects(k, s)), s.name


def test_drgn_slab_object_info_on_live_free_and_large_objects(snap) -> None:
    k, prog, _core, _vml, extra, _drgn = snap
    from drgn.helpers.linux.slab import find_containing_slab_cache, slab_object_info

    rng = np.random.default_rng(5)
    live = [(a, c) for a, (c, _who) in k.slab.live.items() if c is not None]
    for i in rng.choice(len(live), 60, replace=False):
        a, s = live[int(i)]
        info = slab_object_info(prog, a + int(rng.integers(s.object_size)))
        assert (info.address, info.allocated, info.slab_cache.value_()) == (a, True, s.addr)
        assert find_containing_slab_cache(prog, a).value_() == s.addr
    free = []
    for sl in set(k.slab.slab_of_pfn.values()):
        s = sl.cache
        for j in range(sl.objects):
            a = sl.base + j * s.size
            if a not in k.slab.live:
                free.append((a, s))
    for i in rng.choice(len(free), 60, replace=False):
        a, s = free[int(i)]
        info = slab_object_info(prog, a)
        assert (info.address, info.allocated, info.slab_cache.value_()) == (a, False, s.addr)
    large = next(a for a, (c, _w) in k.slab.live.items() if c is None)
    assert slab_object_info(prog, large) is None
    assert not find_containing_slab_cache(prog, large)
    dma = extra["dma"]
    assert slab_object_info(prog, dma).slab_cache.name.string_() == b"dma-kmalloc-64"


def test_drgn_slab_total_usage_is_the_slab_pages(snap) -> None:
    k, prog, *_ = snap
    from drgn.helpers.linux.slab import slab_total_usage

    want = _slab_pages_bytes(k)
    u = slab_total_usage(prog)
    assert u.reclaimable_pages == sum(v for (_n, i), v in want.items() if i == "NR_SLAB_RECLAIMABLE_B") // PAGE_SIZE
    assert u.unreclaimable_pages == sum(v for (_n, i), v in want.items() if i == "NR_SLAB_UNRECLAIMABLE_B") // PAGE_SIZE


def _file_offset(core: str, paddr: int) -> int:
    """Where physical address ``paddr`` is stored in an ELF core (PT_LOAD p_paddr)."""
    data = Path(core).read_bytes()[: 1 << 20]
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _fl, off, _va, pa_, filesz, _memsz, _al = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and pa_ <= paddr and paddr + 8 <= pa_ + filesz:
            return off + paddr - pa_
    raise LookupError(f"{paddr:#x} is not stored in {core}")


def test_a_corrupted_free_pointer_is_reported_with_its_cache(snap, tmp_path) -> None:
    k, _prog, core, vmlinux, *_ = snap
    from drgn.helpers.linux.slab import SlabCorruptionError, slab_cache_usage

    from mmintro.crosscheck import crash, open_drgn

    # Point the first object of a CPU freelist at itself (a cycle), in a copy of the core.
    s = next(s for s in k.slab.caches if any(c.freelist and c.slab for c in s.cpus) and s.name.startswith("kmalloc"))
    obj = next(c.freelist for c in s.cpus if c.freelist and c.slab)
    ptr_addr = obj + s.offset
    bad = obj ^ s.random ^ int.from_bytes(ptr_addr.to_bytes(8, "little"), "big")
    copy = tmp_path / "corrupt.vmcore"
    shutil.copy(core, copy)
    with open(copy, "r+b") as f:
        f.seek(_file_offset(str(copy), k.pa(ptr_addr)))
        f.write(bad.to_bytes(8, "little"))
    prog = open_drgn(str(copy), vmlinux)
    cache = _drgn_caches(prog)[s.name]
    with pytest.raises(SlabCorruptionError, match=f"{s.name} cpu [01] freelist contains cycle"):
        slab_cache_usage(cache)
    row = next(line for line in crash(prog, "kmem -s").splitlines() if line.endswith(f" {s.name}"))
    assert "[CORRUPTED]" in row
    # A slab's own freelist: drgn's per-slab walk names the cache too.
    sl = next(sl for sl in set(k.slab.slab_of_pfn.values()) if sl.freelist and sl.cache is not s)
    t = sl.cache
    ptr_addr = sl.freelist + t.offset
    bad = sl.freelist ^ t.random ^ int.from_bytes(ptr_addr.to_bytes(8, "little"), "big")
    with open(copy, "r+b") as f:
        f.seek(_file_offset(str(copy), k.pa(ptr_addr)))
        f.write(bad.to_bytes(8, "little"))
    prog = open_drgn(str(copy), vmlinux)
    from drgn import Object, cast
    from drgn.helpers.linux.slab import _get_slab_cache_helper

    h = _get_slab_cache_helper(_drgn_caches(prog)[t.name])
    h._cache_free_objects = set()
    pg = Object(prog, "struct page", address=sl.page).address_of_()
    with pytest.raises(SlabCorruptionError, match=f"{t.name} slab 0x{sl.page:x} freelist contains cycle"):
        list(h._page_objects(pg, cast("struct slab *", pg), prog.pointer_type(prog.type("void"))))
