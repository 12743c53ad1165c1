"""Fuzz the snapshot reader: one seeded mutation of a snapshot pair at a time, every report on it.

A *mutation* changes the bytes of a snapshot pair (NAME.vmcore + NAME.vmlinux written by
``mmintro simulate``) in one place of one *class*: a field of a real kernel structure found through
the reader on the pristine pair (page-table entries, struct pages, slabs, maple nodes, tasks and
their mm, zones and nodes, buddy free lists, LRU list_heads, swap_info and swap_map, vmap areas,
globals), the ELF core itself (truncation, program headers, overlapping segments, notes), a
VMCOREINFO value, or the vmlinux (the ``.mmintro.types`` section's bytes or its JSON, the DWARF,
``.symtab``, section headers).  Each mutation is applied in place to a private copy of the pair
and undone afterwards, so thousands fit in minutes.

Each mutated pair is read by every report command (and, for some mutations, ``crosscheck``),
in-process through click's CliRunner with a per-run alarm, and each run is classified:

* ``ok`` -- exit 0;
* ``error`` -- exit 1 or 2 with one line on stderr starting ``mmintro: error:`` (``crosscheck``'s
  exit 1 with its table of disagreements counts here too);
* ``finding`` -- exit 3 (the report went on and named what is impossible);
* ``traceback`` -- an exception escaped the CLI, any other exit status, or stderr not one
  ``mmintro: error:`` line;
* ``timeout`` -- no answer within the per-run limit.

The suite's tests/test_fuzz.py uses :func:`fuzz` in-process.  From the command line this is the
long fuzzer: worker processes (each with its own copies of the pairs) run mutations under a
watchdog that kills a worker stuck where the alarm cannot reach and counts that run as a
timeout::

    python tools/fuzz_snapshots.py --snapshots DIR --mutations 400 --workers 2

DIR holds pairs made by ``mmintro simulate SCENARIO -o DIR/SCENARIO`` (``--make`` makes the
small scenarios' pairs there first).  It prints the table of runs per mutation class and outcome,
and each distinct traceback with a mutation that reproduces it (``--replay SCENARIO:SEED``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SMALL_SCENARIOS = (
    "boot",
    "fork-cow",
    "page-cache",
    "slab-leak",
    "fragmented",
    "vmalloc-heavy",
    "shared-memory",
    "thp-vs-hugetlb",
)
OUTCOMES = ("ok", "error", "finding", "traceback", "timeout")

# -- mutation classes --------------------------------------------------------------------------
STRUCT_CLASSES = (
    "pgtable",
    "page",
    "slab",
    "maple",
    "task",
    "zone",
    "freelist",
    "lru",
    "swap",
    "vmalloc",
    "global",
)
# combo: two to five structure fields of any classes at once
FILE_CLASSES = (
    "combo",
    "elf-truncate",
    "elf-phdr",
    "elf-header",
    "elf-note",
    "vmcoreinfo",
    "types-bytes",
    "types-json",
    "dwarf",
    "symtab",
    "vmlinux-shdr",
)
CLASSES = STRUCT_CLASSES + FILE_CLASSES
VMLINUX_CLASSES = ("types-bytes", "types-json", "dwarf", "symtab", "vmlinux-shdr")
# a kdump-compressed NAME.vmcore (``simulate --format kdump``): its own file classes
KDUMP_CLASSES = (
    "kdump-header",
    "kdump-bitmap",
    "kdump-desc",
    "kdump-data",
    "kdump-truncate",
) + VMLINUX_CLASSES

_U64 = struct.Struct("<Q")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
DIRECT_MAP = 0xFFFF888000000000
LIST_POISON1 = 0xDEAD000000000100


@dataclass
class Target:
    """A field of a kernel structure in the pristine snapshot: ``size`` bytes at physical
    ``pa`` (kernel virtual ``va``), ``ptr`` when it holds a pointer (or page-table entry)."""

    pa: int
    size: int
    label: str
    ptr: bool = False
    va: int = 0
    focus: dict = field(default_factory=dict)  # pid / pfn / addr / cache the commands should look at


@dataclass
class Mutation:
    scenario: str
    seed: int
    cls: str
    desc: str
    patches: list[tuple[str, int, bytes]] = field(default_factory=list)  # (vmcore|vmlinux, offset, bytes)
    truncate: tuple[str, int] | None = None
    focus: dict = field(default_factory=dict)


# -- the pristine snapshot's structures ----------------------------------------------------------
def _leaf_fields(t: Any, base: int = 0, prefix: str = "", depth: int = 0) -> Iterator[tuple[int, int, str, bool]]:
    """(byte offset, size, name, is_pointer) of every scalar member of type ``t`` (arrays: their
    first two and last elements; bitfields: the bytes holding them)."""
    r = t.resolved()
    if depth > 8:
        return
    if r.kind in ("struct", "union"):
        for m in r.members:
            yield from _leaf_fields(
                m.type, base + m.bit_offset // 8, f"{prefix}.{m.name}" if m.name else prefix, depth + 1
            )
    elif r.kind == "array":
        if not r.nelems or r.target is None:
            return
        es = r.target.size
        for i in sorted({0, 1, r.nelems - 1} & set(range(r.nelems))):
            yield from _leaf_fields(r.target, base + i * es, f"{prefix}[{i}]", depth + 1)
    elif r.kind in ("int", "enum", "ptr"):
        size = r.size if r.kind != "ptr" else 8
        if size in (1, 2, 4, 8):
            yield base, size, prefix, r.kind == "ptr"


def _first(it: Iterator[Any], n: int) -> list[Any]:
    """Up to ``n`` items of ``it`` (fewer if walking it fails)."""
    out: list[Any] = []
    try:
        for x in it:
            if len(out) >= n:
                break
            out.append(x)
    except Exception:
        pass
    return out


COUNT_GLOBALS = (
    "nr_node_ids",
    "nr_cpu_ids",
    "max_pfn",
    "min_low_pfn",
    "max_low_pfn",
    "nr_swapfiles",
    "__highest_present_section_nr",
    "nr_vmap_nodes",
    "vmap_zone_size",
    "hugetlb_max_hstate",
    "_totalram_pages",
    "totalreserve_pages",
    "nr_online_nodes",
    "page_offset_base",
    "vmemmap_base",
    "vmalloc_base",
    "high_memory",
    "__cpu_online_mask",
    "node_states",
    "__per_cpu_offset",
)


class Targets:
    """Where the kernel structures of one pristine snapshot are (found once, through the reader)."""

    def __init__(self, stem: str, cap: int = 400, read_words: Any = None) -> None:
        from mmintro.reader import open_snapshot

        self.stem = stem
        self.by_class: dict[str, list[Target]] = defaultdict(list)
        self.rng = random.Random(os.path.basename(stem))  # the same targets wherever the snapshot lies
        self.cap = cap
        self.pids: list[int] = []
        self.caches: list[str] = []
        with open_snapshot(stem) as prog:
            self.prog = prog
            self.max_pfn = prog["max_pfn"].value_()
            self.segments = list(prog.core.segments)
            self.vmcoreinfo = dict(prog.vmcoreinfo)
            for name in ("tasks", "zones", "pages", "slabs", "vmalloc", "swap", "globals"):
                try:
                    getattr(self, f"_find_{name}")(prog)
                except Exception as e:  # a scenario without that structure: no targets of its class
                    print(f"fuzz: {stem}: no {name} targets ({type(e).__name__}: {e})", file=sys.stderr)
            del self.prog
        if read_words is not None and len(read_words):
            # prefer the fields the reports read: 3 of 4 targets of each class are such fields
            for cls, ts in self.by_class.items():
                hit = [t for t in ts if _was_read(read_words, t.pa, t.size)]
                miss = [t for t in ts if not _was_read(read_words, t.pa, t.size)]
                self.by_class[cls] = hit * 3 + miss if hit else miss

    # helpers
    def _stored(self, pa: int, size: int) -> bool:
        for s in self.segments:
            if s.paddr <= pa and pa + size <= s.paddr + s.filesz:
                return True
        return False

    def add(
        self, cls: str, va: int, size: int, label: str, ptr: bool = False, pa: int | None = None, **focus: Any
    ) -> None:
        if len(self.by_class[cls]) >= self.cap * 4:
            return
        if pa is None:
            try:
                pa = self.prog.translate(va)
            except Exception:
                return
        if self._stored(pa, size):
            self.by_class[cls].append(Target(pa, size, label, ptr, va, focus))

    def add_struct(
        self, cls: str, obj: Any, label: str, limit: int | None = None, keep: tuple = (), **focus: Any
    ) -> None:
        """Every scalar field of the object ``obj`` (a reference), or ``limit`` of them at random
        and the fields named in ``keep`` (a member and its sub-fields) always."""
        fields = list(_leaf_fields(obj.type_))
        if limit is not None and len(fields) > limit:
            kept = [f for f in fields if f[2].lstrip(".").split(".")[0].split("[")[0] in keep]
            rest = [f for f in fields if f not in kept]
            fields = kept + self.rng.sample(rest, min(limit, len(rest)))
        for off, size, name, ptr in fields:
            self.add(cls, obj.address_ + off, size, f"{label}{name}", ptr, **focus)

    def _find_tasks(self, prog: Any) -> None:
        from mmintro.reader.helpers.task import for_each_task

        important = (
            "tasks",
            "mm",
            "active_mm",
            "pid",
            "tgid",
            "comm",
            "signal",
            "real_parent",
            "parent",
            "stack",
            "thread_pid",
            "pid_links",
            "flags",
            "__state",
            "cpus_ptr",
            "children",
            "sibling",
            "group_leader",
            "thread_node",
            "mempolicy",
            "oom_reaper_list",
            "se",
            "cred",
            "files",
        )
        for task in list(for_each_task(prog))[:40]:
            pid = task.pid.value_()
            t = task[0] if hasattr(task, "__getitem__") else task
            tt = t.type_.resolved()
            for name in important:
                if tt.has_member(name):
                    sub = getattr(t, name)
                    for off, size, fname, ptr in _leaf_fields(sub.type_):
                        self.add("task", sub.address_ + off, size, f"task[{pid}].{name}{fname}", ptr, pid=pid)
            self.add_struct("task", t, f"task[{pid}]", limit=20, pid=pid)
            mm = task.mm
            if not mm.value_():
                continue
            self.pids.append(pid)
            self.add_struct("task", mm[0], f"mm[{pid}]", pid=pid)
            self._find_maple(prog, mm, pid)
            self._find_pgtables(prog, mm.pgd.value_(), pid)

    def _find_maple(self, prog: Any, mm: Any, pid: int) -> None:
        root = mm.mm_mt.ma_root.value_()
        self.add("maple", mm.mm_mt.ma_root.address_, 8, f"mm[{pid}].mm_mt.ma_root", True, pid=pid)
        todo, seen = [root], set()
        while todo and len(seen) < 16:
            enode = todo.pop()
            if enode & 3 != 2 or enode < 4096:  # xa_is_node
                continue
            node = enode & ~0xFF
            if node in seen:
                continue
            seen.add(node)
            mtype = (enode >> 3) & 0xF
            for i in range(32):
                self.add("maple", node + 8 * i, 8, f"maple_node {node:#x} word {i} (type {mtype})", True, pid=pid)
            if mtype in (2, 3):  # maple_range_64 / maple_arange_64: slots hold child nodes
                n = prog.object("struct maple_node", address=node)
                slots = n.ma64.slot if mtype == 3 else n.mr64.slot
                for i in range(len(slots)):
                    v = slots[i].value_()
                    if v:
                        todo.append(v)

    def _find_pgtables(self, prog: Any, pgd_va: int, pid: int | None) -> None:
        """Present entries of the page tables under ``pgd_va``: user half for a task."""
        try:
            pgd = prog.translate(pgd_va)
        except Exception:
            return
        label = f"pid {pid}" if pid is not None else "swapper"
        first, last = (0, 256) if pid is not None else (256, 512)
        mask = 0x000FFFFFFFFFF000

        def present(table: int, lo: int, hi: int) -> list[tuple[int, int]]:
            raw = prog.core.read_phys(table, 4096)
            out = []
            for i in range(lo, hi):
                e = _U64.unpack_from(raw, 8 * i)[0]
                if e & 1:
                    out.append((i, e))
            return out

        count = 0
        top = present(pgd, first, last)
        # entries over tables that map something first (the vmalloc area's PUDs are mostly empty)
        full = [(i, e) for i, e in top if prog.core.is_ram(e & mask) and present(e & mask, 0, 512)]
        top = self.rng.sample(full, min(4, len(full))) + self.rng.sample(top, min(2, len(top)))
        for i, e in top:
            self.add("pgtable", 0, 8, f"{label} pgd[{i}]", True, pa=pgd + 8 * i, pid=pid or 1)
            pud = e & mask
            if not prog.core.is_ram(pud):
                continue
            for j, e2 in self.rng.sample(present(pud, 0, 512), min(4, len(present(pud, 0, 512)))):
                self.add("pgtable", 0, 8, f"{label} pud[{i}][{j}]", True, pa=pud + 8 * j, pid=pid or 1)
                if e2 & 0x80:
                    continue
                pmd = e2 & mask
                if not prog.core.is_ram(pmd):
                    continue
                for k, e3 in self.rng.sample(present(pmd, 0, 512), min(4, len(present(pmd, 0, 512)))):
                    va = (i << 39) | (j << 30) | (k << 21)
                    self.add(
                        "pgtable",
                        0,
                        8,
                        f"{label} pmd[{i}][{j}][{k}]",
                        True,
                        pa=pmd + 8 * k,
                        pid=pid or 1,
                        vaddr=va if pid is not None else va | 0xFFFF000000000000,
                    )
                    if e3 & 0x80:
                        continue
                    pte = e3 & mask
                    if not prog.core.is_ram(pte):
                        continue
                    for m, _ in self.rng.sample(present(pte, 0, 512), min(4, len(present(pte, 0, 512)))):
                        va = (i << 39) | (j << 30) | (k << 21) | (m << 12)
                        self.add(
                            "pgtable",
                            0,
                            8,
                            f"{label} pte[{i}][{j}][{k}][{m}]",
                            True,
                            pa=pte + 8 * m,
                            pid=pid or 1,
                            vaddr=va if pid is not None else va | 0xFFFF000000000000,
                        )
                        count += 1
                        if count > 60:
                            return

    def _find_zones(self, prog: Any) -> None:
        from mmintro.reader.helpers.list import list_for_each
        from mmintro.reader.helpers.mmzone import for_each_online_pgdat

        for pgdat in for_each_online_pgdat(prog):
            nid = pgdat.node_id.value_()
            p = pgdat[0]
            for name in (
                "node_start_pfn",
                "node_present_pages",
                "node_spanned_pages",
                "node_id",
                "nr_zones",
                "totalreserve_pages",
                "vm_stat",
                "kswapd_order",
                "kswapd_highest_zoneidx",
                "kswapd_failures",
                "flags",
            ):
                if p.type_.resolved().has_member(name):
                    sub = getattr(p, name)
                    for off, size, fname, ptr in _leaf_fields(sub.type_):
                        self.add("zone", sub.address_ + off, size, f"node{nid}.{name}{fname}", ptr)
            lists = getattr(p, "__lruvec").lists
            for i in range(len(lists)):
                head = lists[i]
                self.add("lru", head.address_, 8, f"node{nid} lruvec.lists[{i}].next", True)
                self.add("lru", head.address_ + 8, 8, f"node{nid} lruvec.lists[{i}].prev", True)
                for n, node in enumerate(_first(list_for_each(head.address_of_(), limit=100000), 3)):
                    self.add("lru", node.value_(), 8, f"node{nid} lru[{i}] entry {n}.next", True)
                    self.add("lru", node.value_() + 8, 8, f"node{nid} lru[{i}] entry {n}.prev", True)
                    self.add("lru", node.value_() - 8, 8, f"node{nid} lru[{i}] entry {n} page.flags")
            for z in range(p.nr_zones.value_()):
                zone = p.node_zones[z]
                self.add_struct(
                    "zone",
                    zone,
                    f"node{nid}.zone{z}",
                    limit=60,
                    keep=("zone_start_pfn", "spanned_pages", "present_pages", "managed_pages"),
                )
                for o in (0, 1, 3, len(zone.free_area) - 1):
                    fa = zone.free_area[o]
                    self.add("freelist", fa.nr_free.address_, 8, f"node{nid}.zone{z}.free_area[{o}].nr_free")
                    for mt in range(len(fa.free_list)):
                        head = fa.free_list[mt]
                        if head.next.value_() == head.address_:
                            continue
                        self.add("freelist", head.address_, 8, f"zone{z}.free_area[{o}].free_list[{mt}].next", True)
                        self.add(
                            "freelist",
                            head.address_ + 8,
                            8,
                            f"zone{z}.free_area[{o}].free_list[{mt}].prev",
                            True,
                        )
                        for n, node in enumerate(_first(list_for_each(head.address_of_(), limit=100000), 2)):
                            va = node.value_()
                            self.add("freelist", va, 8, f"zone{z} order {o} mt {mt} buddy {n} lru.next", True)
                            self.add("freelist", va + 8, 8, f"zone{z} order {o} mt {mt} buddy {n} lru.prev", True)
                            self.add("freelist", va + 32, 8, f"zone{z} order {o} mt {mt} buddy {n} private")
                            self.add("freelist", va + 40, 4, f"zone{z} order {o} mt {mt} buddy {n} page_type")

    def _find_pages(self, prog: Any) -> None:
        from mmintro.reader.helpers.mm import pfn_to_page

        T = prog.types
        page = T.struct("page")
        fields = list(_leaf_fields(page))
        slab = T.struct("slab")
        slab_fields = list(_leaf_fields(slab))
        pfns = sorted(self.rng.sample(range(self.max_pfn), min(400, self.max_pfn)))
        for pfn in pfns:
            try:
                pg = pfn_to_page(prog, pfn)
                va = pg.value_()
                flags = prog.read_u64(va)
                ptype = prog.read_u32(va + page.offsetof("page_type"))
            except Exception:
                continue
            for off, size, name, ptr in self.rng.sample(fields, 3):
                self.add("page", va + off, size, f"page[{pfn}]{name}", ptr, pfn=pfn, addr=va)
            head = flags & (1 << T.const("PG_head"))
            if head and len(self.by_class["page"]) < self.cap * 4:  # a folio's first tail pages
                for k in (1, 2):
                    for off, size, name, ptr in self.rng.sample(fields, 3):
                        self.add(
                            "page",
                            va + 64 * k + off,
                            size,
                            f"page[{pfn + k}] (tail){name}",
                            ptr,
                            pfn=pfn + k,
                            addr=va + 64 * k,
                        )
            if ptype >> 24 == 0xF5 or (ptype >> 24) == (T.const("PGTY_slab") if "PGTY_slab" in T.enumerators else -1):
                for off, size, name, ptr in slab_fields:
                    self.add("slab", va + off, size, f"slab(pfn {pfn}){name}", ptr, pfn=pfn, addr=va)

    def _find_slabs(self, prog: Any) -> None:
        from mmintro.reader.helpers.list import list_for_each
        from mmintro.reader.helpers.slab import for_each_kmem_cache_node, for_each_slab_cache, slab_cache_name

        caches = list(for_each_slab_cache(prog))
        self.caches = [slab_cache_name(c) for c in caches]
        slab_t = prog.types.struct("slab")
        for c in self.rng.sample(caches, min(12, len(caches))):
            name = slab_cache_name(c)
            self.add_struct("slab", c[0], f"kmem_cache {name}", limit=25, cache=name)
            for nid, n in for_each_kmem_cache_node(c):
                self.add_struct("slab", n[0], f"kmem_cache_node {name}[{nid}]", cache=name)
                for _k, node in enumerate(_first(list_for_each(n.partial.address_of_(), limit=100000), 2)):
                    s = node.value_() - slab_t.offsetof("slab_list")
                    for off, size, fname, ptr in _leaf_fields(slab_t):
                        self.add("slab", s + off, size, f"partial slab of {name}{fname}", ptr, cache=name, addr=s)
                    fl = prog.read_u64(s + slab_t.offsetof("freelist"))
                    off = c.offset.value_()
                    if fl:
                        self.add(
                            "slab",
                            fl + off,
                            8,
                            f"free pointer of a free {name} object",
                            True,
                            cache=name,
                            addr=fl,
                        )

    def _find_vmalloc(self, prog: Any) -> None:
        from mmintro.reader.helpers.vmalloc import for_each_vmap_area

        areas = list(for_each_vmap_area(prog))
        for va in self.rng.sample(areas, min(15, len(areas))):
            start = va.va_start.value_()
            self.add_struct("vmalloc", va[0], f"vmap_area {start:#x}", addr=start)
            vm = va.vm
            if vm.value_():
                self.add_struct("vmalloc", vm[0], f"vm_struct {start:#x}", addr=start)

    def _find_swap(self, prog: Any) -> None:
        for name in ("nr_swapfiles", "total_swap_pages", "nr_swap_pages"):
            try:
                v = prog[name]
            except KeyError:
                continue
            self.add("swap", v.address_, v.type_.size, name)
        si_arr = prog["swap_info"]
        for i in range(min(2, len(si_arr))):
            si = si_arr[i]
            self.add("swap", si.address_, 8, f"swap_info[{i}]", True)
            if not si.value_():
                continue
            self.add_struct("swap", si[0], f"swap_info[{i}]")
            m = si.swap_map.value_()
            n = si.max.value_()
            if m and n:
                for off in self.rng.sample(range(n), min(20, n)):
                    self.add("swap", m + off, 1, f"swap_info[{i}].swap_map[{off}]")

    def _find_globals(self, prog: Any) -> None:
        names = sorted(n for n, (t, percpu) in prog.types.variables.items() if not percpu and n in prog.symbols.by_name)
        # the counts and bounds every walk relies on, always; then 80 others
        counts = [n for n in COUNT_GLOBALS if n in names]
        for n in counts + self.rng.sample(names, min(80, len(names))):
            try:
                v = prog[n]
            except (KeyError, LookupError):
                continue
            try:
                fields = list(_leaf_fields(v.type_))
            except Exception:
                continue
            for off, size, fname, ptr in self.rng.sample(fields, min(4, len(fields))):
                self.add("global", v.address_ + off, size, f"{n}{fname}", ptr)
        self._find_pgtables(prog, prog["init_mm"].pgd.value_(), None)


def _was_read(words: Any, pa: int, size: int) -> bool:
    import numpy as np

    w = pa & ~7
    i = int(np.searchsorted(words, w))
    return i < len(words) and int(words[i]) <= pa + size - 1


def words_read(stem: str, pids: list[int], pfn: int) -> Any:
    """The 8-byte-aligned physical words the report commands read on the pristine pair (a
    sorted numpy array): the fields worth mutating."""
    import numpy as np

    from mmintro.reader.core import CoreFile

    seen: list[Any] = []
    small: set[int] = set()
    orig = {n: getattr(CoreFile, n) for n in ("read_phys", "read_phys_into", "read_phys_array", "gather_u64")}

    def span(paddr: int, size: int) -> None:
        if size <= 1 << 16:
            small.update(range(paddr & ~7, paddr + size, 8))

    def read_phys(self, paddr, size):  # type: ignore[no-untyped-def]
        span(paddr, size)
        return orig["read_phys"](self, paddr, size)

    def read_phys_into(self, out, paddr):  # type: ignore[no-untyped-def]
        span(paddr, len(out))
        return orig["read_phys_into"](self, out, paddr)

    def read_phys_array(self, paddr, size):  # type: ignore[no-untyped-def]
        span(paddr, size)
        return orig["read_phys_array"](self, paddr, size)

    def gather_u64(self, paddrs):  # type: ignore[no-untyped-def]
        a = np.asarray(paddrs, dtype=np.uint64)
        if len(a) <= 1 << 20:
            seen.append(a & ~np.uint64(7))
        return orig["gather_u64"](self, paddrs)

    for n, f in (
        ("read_phys", read_phys),
        ("read_phys_into", read_phys_into),
        ("read_phys_array", read_phys_array),
        ("gather_u64", gather_u64),
    ):
        setattr(CoreFile, n, f)
    try:
        pid = pids[0] if pids else 1
        for argv in (
            [[c, stem] for c in REPORTS]
            + [[c, stem, str(pid)] for c in PID_REPORTS]
            + [["page", stem, str(pfn)], ["kmem-s", stem, "kmalloc-64"]]
        ):
            run_cli(argv, 60.0)
    finally:
        for n, f in orig.items():
            setattr(CoreFile, n, f)
    arrays = seen + [np.fromiter(small, dtype=np.uint64, count=len(small))]
    return np.unique(np.concatenate(arrays)) if arrays else np.zeros(0, dtype=np.uint64)


# -- choosing a mutation ---------------------------------------------------------------------------
def _bad_values(rng: random.Random, old: int, size: int, t: Target, targets: Targets, ptr: bool) -> tuple[int, str]:
    bits = 8 * size
    mask = (1 << bits) - 1
    choices: list[tuple[int, str]] = [
        (old ^ (1 << rng.randrange(bits)), "bit flip"),
        (0, "zero"),
        (mask, "all ones"),
        (old ^ (rng.getrandbits(bits) & mask), "random bits"),
    ]
    if size >= 4:
        choices += [
            (1 << (bits - 1), "top bit"),
            (0x7FFFFFFF, "2^31-1"),
            (1 << 31, "2^31"),
            ((old + 1) & mask, "off by one"),
            ((old * 1000 + 7) & mask, "huge"),
        ]
    if ptr and size == 8:
        other = rng.choice(rng.choice([v for v in targets.by_class.values() if v]))
        end = targets.max_pfn << 12
        choices += [
            (DIRECT_MAP + end + (rng.randrange(1, 1 << 20) << 12), "pointer past RAM"),
            (LIST_POISON1, "LIST_POISON1"),
            (t.va, "pointer to itself") if t.va else (t.pa, "its own physical address"),
            ((t.va or 0) - 8 & mask, "pointer 8 bytes before itself"),
            (other.va or other.pa, f"pointer to another structure ({other.label})"),
            ((old + 8 * rng.randrange(1, 64)) & mask, "pointer moved"),
            (0x00007F0000001000, "user address"),
            (0x8000000000000000 | rng.getrandbits(40), "non-canonical"),
            (old | 1, "odd pointer"),
        ]
        if any(f"{lv}[" in t.label for lv in ("pgd", "pud", "pmd", "pte")):
            flags = old & 0xFFF
            choices = [] if rng.random() < 0.6 else choices
            choices += [
                (old ^ 0x80, "PSE bit flipped"),
                (old ^ 1, "present bit flipped"),
                ((other.pa & ~0xFFF) | flags, "entry pointing at another table"),
                ((t.pa & ~0xFFF) | flags, "entry pointing at its own table"),
                (((1 << 45) + (rng.randrange(1 << 20) << 12)) | flags, "entry pointing outside RAM"),
                (old | (1 << 63), "NX bit set"),
                ((old & ~0xFFF) | 0x9F, "huge leaf flags on a table entry"),
                (old ^ (1 << rng.randrange(12, 52)), "pfn bit flipped"),
            ]
    return rng.choice(choices)


def make_mutation(
    scenario: str, seed: int, targets: Targets, files: dict[str, bytes], cls: str | None = None
) -> Mutation:
    """The seeded mutation number ``seed`` of ``scenario``: its class is ``cls`` or chosen by
    the seed; ``files`` gives the pristine pair's head bytes (see :func:`_file_info`)."""
    rng = random.Random(f"{scenario}:{seed}")
    if cls is None:
        pool = KDUMP_CLASSES if files.get("kdump") else CLASSES
        cls = pool[seed % len(pool)] if seed >= 0 else rng.choice(pool)
    m = Mutation(scenario, seed, cls, "")
    if cls in STRUCT_CLASSES:
        pool = targets.by_class.get(cls) or targets.by_class.get("global") or []
        t = rng.choice(pool)
        old = field_value(files, t)
        new, how = _bad_values(rng, old, t.size, t, targets, t.ptr)
        return field_mutation(m, files, t, new, how)
    if cls == "combo":
        descs = []
        for _ in range(rng.randint(2, 5)):
            pool = targets.by_class.get(rng.choice(STRUCT_CLASSES)) or targets.by_class["global"]
            t = rng.choice(pool)
            new, how = _bad_values(rng, field_value(files, t), t.size, t, targets, t.ptr)
            field_mutation(m, files, t, new, how)
            descs.append(m.desc)
        m.desc = "; ".join(descs)
        return m
    getattr(sys.modules[__name__], "_mut_" + cls.replace("-", "_"))(m, rng, files, targets)
    return m


def _file_offset(files: dict, t: Target) -> int:
    return next(s.offset + t.pa - s.paddr for s in files["core_segments"] if s.paddr <= t.pa < s.paddr + s.filesz)


def field_value(files: dict, t: Target) -> int:
    """The pristine value of the field ``t``."""
    return int.from_bytes(files["read_core"](_file_offset(files, t), t.size), "little")


def field_mutation(m: Mutation, files: dict, t: Target, new: int, how: str = "") -> Mutation:
    """The field ``t`` set to ``new`` in the core."""
    new &= (1 << 8 * t.size) - 1
    m.patches.append(("vmcore", _file_offset(files, t), new.to_bytes(t.size, "little")))
    m.desc = f"{t.label}: {field_value(files, t):#x} -> {new:#x} ({how})"
    m.focus = dict(t.focus)
    return m


def _mut_elf_truncate(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    size = f["core_size"]
    where = rng.choice(["header", "phdrs", "notes", "data", "end"])
    cut = {
        "header": rng.randrange(1, 64),
        "phdrs": rng.randrange(64, f["phdr_end"] + 1),
        "notes": rng.randrange(f["note_off"], f["note_off"] + f["note_size"] + 1),
        "data": rng.randrange(f["phdr_end"], size),
        "end": size - rng.randrange(1, 8192),
    }[where]
    which = "vmcore" if rng.random() < 0.8 else "vmlinux"
    if which == "vmlinux":
        cut = rng.randrange(1, f["vml_size"])
    m.truncate = (which, cut)
    m.desc = f"{which} truncated to {cut:#x} bytes ({where})"


def _mut_elf_phdr(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    phdrs = f["phdrs"]
    i = rng.randrange(len(phdrs))
    p = list(phdrs[i])
    names = ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_align")
    loads = [j for j, q in enumerate(phdrs) if q[0] == 1]
    how = rng.choice(
        [
            "overlap",
            "end past 2^64",
            "offset past EOF",
            "field bit flip",
            "huge memsz",
            "filesz > memsz",
            "type",
        ]
    )
    if how == "overlap" and len(loads) > 1:
        i, j = rng.sample(loads, 2)
        p = list(phdrs[i])
        p[4] = phdrs[j][4] + rng.choice([0, 0x1000, phdrs[j][6] // 2 & ~0xFFF])
    elif how == "end past 2^64":
        i = rng.choice(loads)
        p = list(phdrs[i])
        p[4] = (1 << 64) - rng.choice([0x1000, 0x200000, 8])
    elif how == "offset past EOF":
        p[2] = f["core_size"] + rng.randrange(1, 1 << 40)
    elif how == "huge memsz":
        i = rng.choice(loads)
        p = list(phdrs[i])
        p[6] = rng.choice([1 << 63, (1 << 64) - 1, 1 << 50])
    elif how == "filesz > memsz":
        i = rng.choice(loads)
        p = list(phdrs[i])
        p[5] = p[6] + 0x1000
    elif how == "type":
        p[0] = rng.choice([0, 1, 4, 0x6474E550])
    else:
        k = rng.randrange(8)
        bits = 32 if k < 2 else 64
        p[k] ^= 1 << rng.randrange(bits)
    m.patches.append(("vmcore", f["phoff"] + i * PHDR.size, PHDR.pack(*p)))
    changed = [f"{n}={v:#x}" for n, v, o in zip(names, p, phdrs[i]) if v != o]
    m.desc = f"program header {i} ({how}): {', '.join(changed) or 'unchanged'}"


def _mut_elf_header(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    which = rng.choice(["vmcore", "vmlinux"])
    fields = {
        "e_phoff": (32, 8),
        "e_shoff": (40, 8),
        "e_phentsize": (54, 2),
        "e_phnum": (56, 2),
        "e_shentsize": (58, 2),
        "e_shnum": (60, 2),
        "e_shstrndx": (62, 2),
        "e_type": (16, 2),
        "e_ehsize": (52, 2),
        "ei_class": (4, 1),
        "e_machine": (18, 2),
    }
    name = rng.choice(sorted(fields))
    off, size = fields[name]
    old = int.from_bytes(f["head_" + which][off : off + size], "little")
    new = rng.choice([old ^ (1 << rng.randrange(8 * size)), 0, (1 << 8 * size) - 1, old + 1])
    new &= (1 << 8 * size) - 1
    m.patches.append((which, off, new.to_bytes(size, "little")))
    m.desc = f"{which} ELF header {name}: {old:#x} -> {new:#x}"


def _mut_elf_note(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    off = f["note_off"] + rng.choice([0, 4, 8])
    old = struct.unpack_from("<I", f["notes"], off - f["note_off"])[0]
    new = rng.choice([0, 0xFFFFFFFF, old ^ (1 << rng.randrange(32)), old + 4, f["note_size"] + 1])
    m.patches.append(("vmcore", off, struct.pack("<I", new & 0xFFFFFFFF)))
    m.desc = f"note header word at {off:#x}: {old:#x} -> {new:#x}"


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


# the keys the reader reads (the others are for drgn, crash and makedumpfile)
READER_KEYS = (
    "SIZE(mem_section)",
    "LENGTH(mem_section)",
    "NUMBER(SECTION_SIZE_BITS)",
    "KERNELOFFSET",
    "NUMBER(phys_base)",
    "PAGESIZE",
    "NUMBER(pgtable_l5_enabled)",
    "LENGTH(node_data)",
    "SYMBOL(swapper_pg_dir)",
    "BUILD-ID",
    "OSRELEASE",
    "SYMBOL(mem_section)",
    "NUMBER(MAX_PHYSMEM_BITS)",
)


def _mut_vmcoreinfo(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    info = tg.vmcoreinfo
    keys = sorted(info)
    prefer = [
        k
        for k in keys
        if k.startswith(
            (
                "SIZE(",
                "OFFSET(",
                "LENGTH(",
                "NUMBER(SECTION_SIZE_BITS",
                "KERNELOFFSET",
                "SYMBOL(",
                "NUMBER(",
                "PAGESIZE",
            )
        )
    ]
    used = [k for k in READER_KEYS if k in info]
    r = rng.random()
    key = rng.choice(used) if r < 0.5 and used else rng.choice(prefer if r < 0.9 else keys)
    old = info[key]
    hexy = key.startswith("SYMBOL(") or key == "KERNELOFFSET"
    candidates = [
        "0",
        "-1",
        "1",
        "64",
        "4096",
        str(1 << 63),
        str(1 << 64),
        str((1 << 70) + 3),
        "zz",
        "",
        "0x",
        "-9223372036854775808",
        "99999999999999999999999999",
        "7fffffffffffffff",
        "ffffffffffffffff",
        "10000000000000000",
        "1e3",
        "1" * 5000,
    ]
    if hexy:
        try:
            v = int(old, 16)
            candidates += [f"{v ^ (1 << rng.randrange(64)):x}", f"{v + 0x1000:x}", "ffffffffffff0000"]
        except ValueError:
            pass
    else:
        try:
            v = int(old, 0)
            candidates += [str(v ^ (1 << rng.randrange(16))), str(v + 1), str(-v), str(v * 1000)]
        except ValueError:
            pass
    new = rng.choice(candidates + ["<deleted>"])
    vmcoreinfo_mutation(m, f, key, new)
    m.desc = f"VMCOREINFO {key}={old} -> {new[:40]}"


def vmcoreinfo_mutation(m: Mutation, f: dict, key: str, new: str) -> None:
    """VMCOREINFO's ``key`` set to ``new`` (deleted if ``<deleted>``; added if absent): the
    notes rewritten at the end of the core, the PT_NOTE header pointing there."""
    lines = [ln for ln in f["vmcoreinfo_text"].splitlines()]
    if not any(ln.partition("=")[0] == key for ln in lines):
        lines.append(f"{key}=")
    out = []
    for ln in lines:
        k, sep, _ = ln.partition("=")
        if sep and k == key:
            if new != "<deleted>":
                out.append(f"{key}={new}")
        else:
            out.append(ln)
    text = ("\n".join(out) + "\n").encode()
    notes = b"".join(_note(n.encode() + b"\0", t, text if n == "VMCOREINFO" else d) for n, t, d in f["note_list"])
    # the rewritten notes at the end of the file; the PT_NOTE header points there
    at = f["core_size"] + (-f["core_size"] % 8)
    p = list(f["phdrs"][f["note_index"]])
    p[2], p[5], p[6] = at, len(notes), len(notes)
    m.patches.append(("vmcore", at, notes))
    m.patches.append(("vmcore", f["phoff"] + f["note_index"] * PHDR.size, PHDR.pack(*p)))


def _section_patch(m: Mutation, f: dict, name: str, data: bytes) -> None:
    """Put ``data`` at the end of the vmlinux and point section ``name`` there."""
    i, sh = f["sections"][name]
    at = f["vml_size"] + (-f["vml_size"] % 8)
    s = list(sh)
    s[4], s[5] = at, len(data)
    m.patches.append(("vmlinux", at, data))
    m.patches.append(("vmlinux", f["shoff"] + i * SHDR.size, SHDR.pack(*s)))


def _mut_types_bytes(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    i, sh = f["sections"][".mmintro.types"]
    n = rng.choice([1, 1, 1, 2, 8])
    where = rng.choice(["header", "body", "trailer"])
    size = sh[5]
    for _ in range(n):
        pos = {
            "header": rng.randrange(min(16, size)),
            "trailer": size - 1 - rng.randrange(min(8, size)),
            "body": rng.randrange(size),
        }[where]
        b = f["read_vml"](sh[4] + pos, 1)[0]
        m.patches.append(("vmlinux", sh[4] + pos, bytes([b ^ (1 << rng.randrange(8))])))
    m.desc = f".mmintro.types: {n} bit(s) flipped in the gzip {where}"


def _mut_types_json(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    doc = json.loads(f["types_json"])
    types = doc["types"]
    how = rng.choice(
        [
            "bad type index",
            "bad member index",
            "negative size",
            "missing key",
            "bad kind",
            "deep nesting",
            "variable type",
            "string index",
            "huge nelems",
            "cycle",
            "not json",
            "truncated json",
        ]
    )
    i = rng.randrange(1, len(types))
    e = types[i]
    blob: bytes | None = None
    if how == "bad type index":
        cand = [k for k, t in enumerate(types) if isinstance(t, dict) and "type" in t]
        i = rng.choice(cand)
        types[i]["type"] = rng.choice([len(types) + 5, -7, 1 << 40])
    elif how == "bad member index":
        cand = [k for k, t in enumerate(types) if isinstance(t, dict) and t.get("members")]
        i = rng.choice(cand)
        mem = types[i]["members"]
        j = rng.randrange(len(mem))
        mem[j] = [mem[j][0], rng.choice([len(types) + 1, -1, "x", None]), mem[j][2], mem[j][3]][: rng.choice([4, 4, 2])]
    elif how == "negative size":
        cand = [k for k, t in enumerate(types) if isinstance(t, dict) and "size" in t]
        i = rng.choice(cand)
        types[i]["size"] = rng.choice([-1, -4096, 1 << 62, 0])
    elif how == "missing key":
        if rng.random() < 0.3:
            del doc[rng.choice(sorted(doc))]
        else:
            k = rng.choice(sorted(e)) if e else "kind"
            e.pop(k, None)
    elif how == "bad kind":
        e["kind"] = rng.choice(["bogus", 7, None, "ptr"])
    elif how == "deep nesting":
        depth = rng.choice([5000, 100000])
        blob = gzip.compress(b'{"types": ' + b"[" * depth + b"]" * depth + b', "variables": []}')
    elif how == "variable type":
        v = rng.choice(doc["variables"])
        v["type"] = rng.choice([len(types) + 3, -2, "page"])
    elif how == "string index":
        cand = [k for k, t in enumerate(types) if isinstance(t, dict) and "type" in t]
        types[rng.choice(cand)]["type"] = "1"
    elif how == "huge nelems":
        cand = [k for k, t in enumerate(types) if isinstance(t, dict) and t.get("kind") == "array"]
        i = rng.choice(cand)
        types[i]["nelems"] = rng.choice([1 << 62, -1, 10**30])
    elif how == "cycle":
        cand = [k for k, t in enumerate(types) if isinstance(t, dict) and t.get("kind") in ("typedef", "const")]
        i = rng.choice(cand)
        types[i]["type"] = i
    elif how == "not json":
        blob = gzip.compress(b"\x00\xffnot json at all")
    elif how == "truncated json":
        raw = f["types_json"]
        blob = gzip.compress(raw[: rng.randrange(len(raw))])
    if blob is None:
        blob = gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=1)
    _section_patch(m, f, ".mmintro.types", blob)
    m.desc = f".mmintro.types JSON: {how} (type {i})"


def _mut_dwarf(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    name = rng.choice([".debug_info", ".debug_info", ".debug_abbrev", ".debug_str"])
    i, sh = f["sections"][name]
    how = rng.choice(["bit flips", "zeroed run", "truncated"])
    if how == "truncated":
        s = list(sh)
        s[5] = rng.randrange(sh[5])
        m.patches.append(("vmlinux", f["shoff"] + i * SHDR.size, SHDR.pack(*s)))
    elif how == "zeroed run":
        pos = rng.randrange(sh[5])
        n = min(rng.choice([4, 64, 1024]), sh[5] - pos)
        m.patches.append(("vmlinux", sh[4] + pos, bytes(n)))
    else:
        for _ in range(rng.choice([1, 4, 32])):
            pos = rng.randrange(sh[5])
            b = f["read_vml"](sh[4] + pos, 1)[0]
            m.patches.append(("vmlinux", sh[4] + pos, bytes([b ^ (1 << rng.randrange(8))])))
    m.desc = f"{name}: {how}"


def _mut_symtab(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    i, sh = f["sections"][".symtab"]
    how = rng.choice(["missing", "missing", "renamed", "bad link", "symbol value", "symbol name", "size"])
    s = list(sh)
    if how == "missing":
        s[1] = 0  # SHT_NULL
    elif how == "renamed":
        s[0] = f["sections"][".strtab"][1][0]  # named .strtab: no .symtab by name
        s[1] = 0
    elif how == "bad link":
        s[6] = rng.choice([999, 0, 1])
    elif how == "size":
        s[5] = rng.choice([0, 7, sh[5] + 24 * 1000, 1 << 40])
    if how in ("symbol value", "symbol name"):
        n = sh[5] // 24
        k = rng.randrange(1, n)
        off = sh[4] + 24 * k + (8 if how == "symbol value" else 0)
        size = 8 if how == "symbol value" else 4
        old = int.from_bytes(f["read_vml"](off, size), "little")
        new = rng.choice([0, (1 << 8 * size) - 1, old ^ (1 << rng.randrange(8 * size))])
        m.patches.append(("vmlinux", off, new.to_bytes(size, "little")))
    else:
        m.patches.append(("vmlinux", f["shoff"] + i * SHDR.size, SHDR.pack(*s)))
    m.desc = f".symtab: {how}"


def _mut_vmlinux_shdr(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    name = rng.choice(sorted(f["sections"]))
    i, sh = f["sections"][name]
    s = list(sh)
    k = rng.choice([0, 1, 4, 5, 6])
    s[k] = rng.choice(
        [0, (1 << (32 if k in (0, 1, 6) else 64)) - 1, s[k] ^ (1 << rng.randrange(32)), f["vml_size"] + 1]
    )
    m.patches.append(("vmlinux", f["shoff"] + i * SHDR.size, SHDR.pack(*s)))
    field_name = ("sh_name", "sh_type", "", "", "sh_offset", "sh_size", "sh_link")[k]
    m.desc = f"section header {name!r}: field {field_name} {sh[k]:#x} -> {s[k]:#x}"


# (offsets of mmintro.reader.diskdump's _DH "<8si390s6xqqIiiIIIIIIi")
_DH_FIELDS = {
    "header_version": (8, 4),
    "status": (424, 4),
    "block_size": (428, 4),
    "sub_hdr_size": (432, 4),
    "bitmap_blocks": (436, 4),
    "max_mapnr": (440, 4),
    "total_ram_blocks": (444, 4),
    "nr_cpus": (460, 4),
    "signature": (0, 8),
}
_SUB_FIELDS = {
    "phys_base": (0, 8),
    "dump_level": (8, 4),
    "split": (12, 4),
    "start_pfn": (16, 8),
    "end_pfn": (24, 8),
    "offset_vmcoreinfo": (32, 8),
    "size_vmcoreinfo": (40, 8),
    "offset_note": (48, 8),
    "size_note": (56, 8),
    "offset_eraseinfo": (64, 8),
    "size_eraseinfo": (72, 8),
    "start_pfn_64": (80, 8),
    "end_pfn_64": (88, 8),
    "max_mapnr_64": (96, 8),
}


def _word(m: Mutation, rng: random.Random, f: dict, off: int, size: int, label: str) -> None:
    old = int.from_bytes(f["read_core"](off, size), "little")
    bits = 8 * size
    new = rng.choice(
        [
            old ^ (1 << rng.randrange(bits)),
            0,
            (1 << bits) - 1,
            1 << (bits - 1),
            old + 1,
            old * 4096 + 1,
            f["core_size"] + 8,
            (1 << (bits - 1)) - 1,
        ]
    ) & ((1 << bits) - 1)
    m.patches.append(("vmcore", off, new.to_bytes(size, "little")))
    m.desc = f"{label}: {old:#x} -> {new:#x}"


def _mut_kdump_header(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    if rng.random() < 0.5:
        name = rng.choice(sorted(_DH_FIELDS))
        off, size = _DH_FIELDS[name]
        _word(m, rng, f, off, size, f"disk_dump_header.{name}")
    else:
        name = rng.choice(sorted(_SUB_FIELDS))
        off, size = _SUB_FIELDS[name]
        _word(m, rng, f, f["block_size"] + off, size, f"kdump_sub_header.{name}")


def _mut_kdump_bitmap(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    lo, hi = f["bitmap_area"]
    which = rng.choice(["1st", "2nd"])
    half = (hi - lo) // 2
    base = lo if which == "1st" else lo + half
    n = rng.choice([1, 1, 8])
    for _ in range(n):
        pos = base + rng.randrange(max(1, min(half, (tg.max_pfn + 7) // 8 + 16)))
        b = f["read_core"](pos, 1)[0]
        m.patches.append(("vmcore", pos, bytes([b ^ (1 << rng.randrange(8))])))
    m.desc = f"{which} bitmap: {n} bit(s) flipped"


def _mut_kdump_desc(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    k = rng.randrange(f["ndesc"])
    field_, (off, size) = rng.choice(
        [("offset", (0, 8)), ("size", (8, 4)), ("flags", (12, 4)), ("page_flags", (16, 8))]
    )
    _word(m, rng, f, f["desc_off"] + 24 * k + off, size, f"page_desc[{k}].{field_}")


def _mut_kdump_data(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    lo = f["data_off"]
    n = rng.choice([1, 4, 64])
    for _ in range(n):
        pos = rng.randrange(lo, f["core_size"])
        b = f["read_core"](pos, 1)[0]
        m.patches.append(("vmcore", pos, bytes([b ^ (1 << rng.randrange(8))])))
    m.desc = f"page data: {n} bit(s) flipped"


def _mut_kdump_truncate(m: Mutation, rng: random.Random, f: dict, tg: Targets) -> None:
    where = rng.choice(["header", "bitmaps", "descriptors", "data"])
    lo, hi = {
        "header": (1, f["bitmap_area"][0]),
        "bitmaps": f["bitmap_area"],
        "descriptors": (f["desc_off"], f["data_off"]),
        "data": (f["data_off"], f["core_size"]),
    }[where]
    cut = rng.randrange(lo, max(lo + 1, hi))
    m.truncate = ("vmcore", cut)
    m.desc = f"kdump vmcore truncated to {cut:#x} bytes ({where})"


# -- files: pristine info, applying and undoing --------------------------------------------------
def file_info(stem: str) -> dict:
    """What the mutators need from a pristine pair (headers, notes, sections)."""
    core_path, vml_path = stem + ".vmcore", stem + ".vmlinux"
    f: dict[str, Any] = {}
    with open(core_path, "rb") as fh:
        head = fh.read(1 << 16)
    f["head_vmcore"] = head
    f["core_size"] = os.path.getsize(core_path)
    f["vml_size"] = os.path.getsize(vml_path)
    if head.startswith(b"KDUMP   "):
        _kdump_info(f, core_path)
    else:
        _elf_core_info(f, core_path)
    _vmlinux_info(f, vml_path)
    return f


def _kdump_info(f: dict, core_path: str) -> None:
    from mmintro.reader.diskdump import DiskDumpFile

    d = DiskDumpFile(core_path)
    bs = d.block_size
    sub_blocks, bitmap_blocks = struct.unpack_from("<iI", f["head_vmcore"], 432)
    f["kdump"] = True
    f["block_size"] = bs
    f["bitmap_area"] = ((1 + sub_blocks) * bs, (1 + sub_blocks + bitmap_blocks) * bs)
    f["desc_off"] = f["bitmap_area"][1]
    f["ndesc"] = int(d._ndesc)
    f["data_off"] = f["desc_off"] + 24 * f["ndesc"]
    f["core_segments"] = []
    d.close()
    f["read_core"] = _reader(core_path)


def _reader(path: str):
    def read(off: int, n: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(off)
            return fh.read(n)

    return read


def _elf_core_info(f: dict, core_path: str) -> None:
    from mmintro.reader.core import CoreFile
    from mmintro.reader.elf import iter_notes

    head = f["head_vmcore"]
    phoff, phnum = struct.unpack_from("<Q", head, 32)[0], struct.unpack_from("<H", head, 56)[0]
    f["phoff"] = phoff
    f["phdr_end"] = phoff + phnum * PHDR.size
    with open(core_path, "rb") as fh:
        fh.seek(phoff)
        raw = fh.read(phnum * PHDR.size)
    f["phdrs"] = [PHDR.unpack_from(raw, i * PHDR.size) for i in range(phnum)]
    f["note_index"] = next(i for i, p in enumerate(f["phdrs"]) if p[0] == 4)
    note = f["phdrs"][f["note_index"]]
    f["note_off"], f["note_size"] = note[2], note[5]
    with open(core_path, "rb") as fh:
        fh.seek(note[2])
        f["notes"] = fh.read(note[5])
    f["note_list"] = list(iter_notes(f["notes"], 0, len(f["notes"]), "notes"))
    f["vmcoreinfo_text"] = next(d for n, t, d in f["note_list"] if n == "VMCOREINFO").rstrip(b"\0").decode()
    core = CoreFile(core_path)
    f["core_segments"] = list(core.segments)
    core.close()
    f["read_core"] = _reader(core_path)


def _vmlinux_info(f: dict, vml_path: str) -> None:
    from mmintro.reader.elf import ElfFile

    elf = ElfFile(vml_path)
    f["head_vmlinux"] = bytes(elf.buf[:64])
    f["shoff"] = elf.header.e_shoff
    f["sections"] = {}
    for i, s in enumerate(elf.sections):
        if s.name:
            f["sections"][s.name] = (i, SHDR.unpack_from(elf.buf, elf.header.e_shoff + i * SHDR.size))
    f["types_json"] = gzip.decompress(elf.section(".mmintro.types"))
    elf.buf.close()
    f["read_vml"] = _reader(vml_path)  # (the pristine files: the private copies may be mutated)


@contextlib.contextmanager
def applied(m: Mutation, stem: str) -> Iterator[None]:
    """The mutation applied to the pair at ``stem`` (a private copy) and undone on exit."""
    paths = {"vmcore": stem + ".vmcore", "vmlinux": stem + ".vmlinux"}
    sizes = {k: os.path.getsize(p) for k, p in paths.items()}
    undo: list[tuple[str, int, bytes]] = []
    tail: tuple[str, int, bytes] | None = None
    Path(stem + ".dirty").touch()
    try:
        for which, off, data in m.patches:
            with open(paths[which], "r+b") as fh:
                fh.seek(off)
                undo.append((which, off, fh.read(len(data))))
                fh.seek(off)
                fh.write(data)
        if m.truncate is not None:
            which, cut = m.truncate
            with open(paths[which], "r+b") as fh:
                fh.seek(cut)
                tail = (which, cut, fh.read())
                fh.truncate(cut)
        yield
    finally:
        if tail is not None:
            with open(paths[tail[0]], "r+b") as fh:
                fh.seek(tail[1])
                fh.write(tail[2])
        for which, off, data in reversed(undo):
            with open(paths[which], "r+b") as fh:
                fh.seek(off)
                fh.write(data)
        for k, p in paths.items():
            os.truncate(p, sizes[k])
        os.unlink(stem + ".dirty")


def private_copy(src_stem: str, dst_stem: str) -> None:
    """A private copy of the pair (remade when a previous worker died with it mutated)."""
    dirty = Path(dst_stem + ".dirty")
    for ext in (".vmcore", ".vmlinux"):
        s, d = src_stem + ext, dst_stem + ext
        if dirty.exists() or not os.path.exists(d) or os.path.getsize(d) != os.path.getsize(s):
            shutil.copyfile(s, d)
    dirty.unlink(missing_ok=True)


# -- running the CLI -----------------------------------------------------------------------------
class RunTimeout(BaseException):
    """Raised by the alarm (a BaseException: ``except Exception`` in the code under test
    must not swallow it)."""


@dataclass
class Outcome:
    outcome: str
    exit_code: int | None
    detail: str = ""


def _on_alarm(signum: int, frame: Any) -> None:
    raise RunTimeout()


def run_cli(argv: list[str], timeout: float = 10.0) -> Outcome:
    """Run ``mmintro ARGV`` in-process and classify it."""
    from click.testing import CliRunner

    from mmintro.cli.main import cli

    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        r = CliRunner().invoke(cli, argv, catch_exceptions=True)
    except RunTimeout:
        return Outcome("timeout", None, f"no answer within {timeout:g} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return classify(argv, r.exit_code, r.stderr, r.exc_info)


def classify(argv: list[str], code: int | None, stderr: str, exc_info: Any = None) -> Outcome:
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, RunTimeout):
        return Outcome("timeout", None, "no answer in time")
    if exc is not None and not isinstance(exc, SystemExit):
        tb = traceback.extract_tb(exc_info[2])
        where = next(
            (f"{Path(fr.filename).name}:{fr.lineno} in {fr.name}" for fr in reversed(tb) if "/mmintro/" in fr.filename),
            "",
        )
        text = " ".join(str(exc).split())[:160]
        return Outcome("traceback", code, f"{type(exc).__name__}: {text} [{where}]")
    if "Traceback (most recent call last)" in stderr:
        return Outcome("traceback", code, stderr.strip().splitlines()[-1][:200])
    if code == 0:
        return Outcome("ok", 0)
    if code == 3:
        return Outcome("finding", 3)
    if code in (1, 2):
        lines = stderr.strip("\n").splitlines()
        if argv and argv[0] == "crosscheck" and not lines:
            return Outcome("error", code, "crosscheck: disagreements")
        if len(lines) == 1 and lines[0].startswith("mmintro: error:"):
            return Outcome("error", code, lines[0][:200])
        return Outcome("traceback", code, "untidy error output: " + " | ".join(lines)[:200])
    return Outcome("traceback", code, f"exit status {code}: {stderr.strip()[:200]}")


REPORTS = (
    "meminfo",
    "zoneinfo",
    "buddyinfo",
    "pagetypeinfo",
    "vmstat",
    "slabinfo",
    "vmallocinfo",
    "ps",
    "page-types",
    "kmem-s",
    "swaps",
    "pressure",
    "dmesg",
    "oom-scores",
    "iomem",
    "fragmentation",
    "compaction",
    "verify",
)
PID_REPORTS = ("status", "smaps", "smaps-rollup", "maps", "vm", "numa-maps", "oom-score")


def _takes_json(command: str) -> bool:
    from mmintro.cli.main import cli

    return any(p.name == "as_json" for p in cli.commands[command].params)


def commands(stem: str, focus: dict, targets: Targets, rng: random.Random, crosscheck: bool) -> list[list[str]]:
    """Every report command on the pair, pointed at what the mutation changed when it says."""
    pid = focus.get("pid") or (rng.choice(targets.pids) if targets.pids else 1)
    pfn = focus.get("pfn", rng.randrange(max(targets.max_pfn, 1)))
    addr = focus.get("addr") or focus.get("vaddr") or DIRECT_MAP + (pfn << 12)
    cache = focus.get("cache") or (rng.choice(targets.caches) if targets.caches else "kmalloc-64")
    cmds = [[c, stem] for c in REPORTS]
    cmds += [[c, stem, str(pid)] for c in PID_REPORTS]
    cmds += [
        ["page", stem, str(pfn)],
        ["whatis", stem, hex(addr)],
        ["whatis", stem, "--pfn", str(pfn)],
        ["vtop", stem, hex(addr)],
        ["kmem-s", stem, cache],
        ["pressure", stem, "--resource", "all"],
        ["page-types", stem, "--kpf"],
        # crash-style inspection, the pictures and diff
        ["struct", stem, "mm_struct", "init_mm"],
        ["p", stem, "init_task.comm"],
        ["rd", stem, hex(addr), "4"],
        ["sym", stem, "jiffies"],
        ["picture", stem, "memory"],
        ["picture", stem, "migratetype"],
        ["picture", stem, "fragmentation"],
        ["picture", stem, "address-space", "--pid", str(pid)],
        ["diff", stem, stem],
    ]
    if "vaddr" in focus and focus["vaddr"] < 1 << 47:
        cmds.append(["vtop", stem, "--pid", str(pid), hex(focus["vaddr"])])
    for c in cmds:
        if rng.random() < 0.3 and _takes_json(c[0]):
            c.append("--json")
    if crosscheck:
        cmds.append(["crosscheck", stem])
    return cmds


# -- the in-process fuzzer (the suite's test and the workers) ---------------------------------------
_CACHE: dict[str, tuple[Targets, dict]] = {}


def prepare(pristine_stem: str) -> tuple[Targets, dict]:
    """The pristine pair's targets (biased to the words the reports read) and file info."""
    if pristine_stem not in _CACHE:
        info = file_info(pristine_stem)
        words = None
        if not info.get("kdump"):
            t = Targets(pristine_stem, cap=1)
            words = words_read(pristine_stem, t.pids, t.max_pfn // 2)
        _CACHE[pristine_stem] = (Targets(pristine_stem, read_words=words), info)
    return _CACHE[pristine_stem]


def fuzz_one(
    scenario: str,
    pristine: str,
    work: str,
    seed: int,
    crosscheck: bool,
    timeout: float = 10.0,
    cls: str | None = None,
    max_commands: int | None = None,
    report: Any = None,
    dwarf_crosscheck: bool = True,
) -> tuple[Mutation, list[tuple[list[str], Outcome]]]:
    """Mutation ``seed`` of the pair ``pristine`` applied to the private copy ``work``, every
    command run on it (``crosscheck`` too when asked, and on damaged DWARF unless not
    ``dwarf_crosscheck``); ``report(argv, outcome)`` is called after each run."""
    targets, info = prepare(pristine)
    m = make_mutation(scenario, seed, targets, info, cls)
    rng = random.Random(f"cmds:{scenario}:{seed}")
    cmds = commands(work, m.focus, targets, rng, crosscheck or (dwarf_crosscheck and m.cls == "dwarf"))
    if max_commands is not None and len(cmds) > max_commands:
        keep = [c for c in cmds if c[0] == "crosscheck"]
        cmds = rng.sample([c for c in cmds if c[0] != "crosscheck"], max_commands - len(keep)) + keep
    results = []
    with applied(m, work):
        for argv in cmds:
            o = run_cli(argv, timeout if argv[0] != "crosscheck" else 6 * timeout)
            results.append((argv, o))
            if report is not None:
                report(argv, o)
    return m, results


# -- the long fuzzer: workers under a watchdog --------------------------------------------------------
def worker_main(snapdir: str, workdir: str, timeout: float) -> None:
    """Read jobs (JSON lines: scenario, seed, crosscheck) on stdin; write one JSON line per run."""
    os.makedirs(workdir, exist_ok=True)
    out = sys.stdout
    sys.stdout = sys.stderr  # the code under test prints nothing to our channel
    for line in sys.stdin:
        job = json.loads(line)
        sc = job["scenario"]
        pristine, work = os.path.join(snapdir, sc), os.path.join(workdir, sc)
        private_copy(pristine, work)

        def report(argv: list[str], o: Outcome) -> None:
            out.write(
                json.dumps(
                    {
                        "argv": argv[:1] + argv[2:],
                        "outcome": o.outcome,
                        "exit": o.exit_code,
                        "detail": o.detail,
                    }
                )
                + "\n"
            )
            out.flush()

        try:
            m, _ = fuzz_one(sc, pristine, work, job["seed"], job["crosscheck"], timeout, report=report)
            out.write(json.dumps({"done": True, "cls": m.cls, "desc": m.desc}) + "\n")
        except Exception as e:  # the fuzzer itself failed on this mutation: say so, go on
            out.write(
                json.dumps(
                    {
                        "done": True,
                        "cls": "?",
                        "desc": f"fuzzer error: {type(e).__name__}: {e}",
                        "fuzzer_error": traceback.format_exc(),
                    }
                )
                + "\n"
            )
        out.flush()


class Worker:
    def __init__(self, n: int, args: argparse.Namespace) -> None:
        self.n, self.args = n, args
        self.start()

    def start(self) -> None:
        a = self.args
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--snapshots",
                a.snapshots,
                "--workdir",
                os.path.join(a.workdir, f"w{self.n}"),
                "--timeout",
                str(a.timeout),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf = ""
        self.job: dict | None = None
        self.last = time.monotonic()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()

    def lines(self) -> list[str]:
        try:
            chunk = self.proc.stdout.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            self.buf += chunk
            self.last = time.monotonic()
        *done, self.buf = self.buf.split("\n")
        return done


def long_fuzz(args: argparse.Namespace) -> int:
    import select

    scenarios = args.scenarios or sorted({p.stem for p in Path(args.snapshots).glob("*.vmcore")})
    jobs = [
        {"scenario": sc, "seed": seed, "crosscheck": seed % args.crosscheck_every == 0}
        for seed in range(args.first_seed, args.first_seed + args.mutations)
        for sc in scenarios
    ]
    random.Random(0).shuffle(jobs)
    table: dict[str, Counter] = defaultdict(Counter)
    by_cmd: dict[str, Counter] = defaultdict(Counter)
    bad: dict[str, list[str]] = defaultdict(list)
    workers = [Worker(n, args) for n in range(args.workers)]
    pending = list(jobs)
    started = time.monotonic()
    done_mut = shown = 0
    # the class of a mutation is known when it is done: keep each run until then
    runs_of: dict[int, list[dict]] = defaultdict(list)
    while pending or any(w.job for w in workers):
        for w in workers:
            if w.job is None and pending:
                w.job = pending.pop()
                runs_of[w.n] = []
                w.proc.stdin.write(json.dumps(w.job) + "\n")
                w.proc.stdin.flush()
                w.last = time.monotonic()
        select.select([w.proc.stdout for w in workers if w.job], [], [], 1.0)
        for w in workers:
            if w.job is None:
                continue
            for line in w.lines():
                msg = json.loads(line)
                if "done" not in msg:
                    runs_of[w.n].append(msg)
                    continue
                cls = msg["cls"]
                if "fuzzer_error" in msg:
                    print(f"fuzzer error on {w.job}: {msg['fuzzer_error']}", file=sys.stderr)
                for r in runs_of[w.n]:
                    table[cls][r["outcome"]] += 1
                    by_cmd[r["argv"][0]][r["outcome"]] += 1
                    if r["outcome"] in ("traceback", "timeout"):
                        bad[r["detail"]].append(
                            f"{w.job['scenario']}:{w.job['seed']} {cls} [{msg['desc']}] {' '.join(r['argv'])}"
                        )
                done_mut += 1
                w.job = None
                break
            if w.job is not None and (w.proc.poll() is not None or time.monotonic() - w.last > args.hard_timeout):
                # stuck where the alarm cannot reach (or died): the run in progress is a timeout
                died = w.proc.poll() is not None
                w.kill()
                outcome = "traceback" if died else "timeout"
                detail = f"worker died (exit {w.proc.returncode})" if died else "watchdog: no answer"
                table["?"][outcome] += 1
                bad[detail].append(f"{w.job['scenario']}:{w.job['seed']} after {len(runs_of[w.n])} runs")
                for r in runs_of[w.n]:
                    table["?"][r["outcome"]] += 1
                w.job = None
                done_mut += 1
                w.start()
        if args.progress and done_mut and done_mut % 50 == 0 and done_mut != shown:
            shown = done_mut
            n = sum(sum(c.values()) for c in table.values())
            print(
                f"... {done_mut}/{len(jobs)} mutations, {n} runs, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    for w in workers:
        w.proc.stdin.close()
        w.kill()
    print_table(table, by_cmd, bad, done_mut, time.monotonic() - started)
    return 1 if any(c["traceback"] or c["timeout"] for c in table.values()) else 0


def print_table(
    table: dict[str, Counter],
    by_cmd: dict[str, Counter],
    bad: dict[str, list[str]],
    mutations: int,
    seconds: float,
) -> None:
    def rows(title: str, t: dict[str, Counter]) -> None:
        print(f"| {title:<14} | " + " | ".join(f"{o:>9}" for o in OUTCOMES) + " |     runs |")
        print("|" + "-" * 16 + "|" + "|".join("-" * 11 for _ in OUTCOMES) + "|" + "-" * 10 + "|")
        total: Counter = Counter()
        for k in sorted(t):
            total.update(t[k])
            print(f"| {k:<14} | " + " | ".join(f"{t[k][o]:>9}" for o in OUTCOMES) + f" | {sum(t[k].values()):>8} |")
        print(f"| {'total':<14} | " + " | ".join(f"{total[o]:>9}" for o in OUTCOMES) + f" | {sum(total.values()):>8} |")

    n = sum(sum(c.values()) for c in table.values())
    print(f"{mutations} mutations, {n} runs in {seconds:.0f} s")
    print()
    rows("class", table)
    print()
    rows("command", by_cmd)
    if bad:
        print()
        print(f"{len(bad)} distinct traceback/timeout causes:")
        for detail, where in sorted(bad.items(), key=lambda kv: -len(kv[1])):
            print(f"  {len(where):>4} x {detail}")
            for w in where[:2]:
                print(f"         e.g. {w}")


def make_snapshots(snapdir: str, scenarios: tuple[str, ...]) -> None:
    os.makedirs(snapdir, exist_ok=True)
    for sc in scenarios:
        stem = os.path.join(snapdir, sc)
        if not os.path.exists(stem + ".vmcore"):
            print(f"simulate {sc}", file=sys.stderr)
            subprocess.run(
                [sys.executable, "-m", "mmintro.cli.main", "simulate", sc, "-o", stem],
                check=True,
                env=os.environ | {"PYTHONPATH": str(ROOT)},
            )


def replay(args: argparse.Namespace) -> int:
    sc, _, seed = args.replay.partition(":")
    pristine = os.path.join(args.snapshots, sc)
    work = os.path.join(args.workdir, "replay", sc)
    os.makedirs(os.path.dirname(work), exist_ok=True)
    private_copy(pristine, work)
    m, results = fuzz_one(sc, pristine, work, int(seed), True, args.timeout)
    print(f"{sc}:{seed} {m.cls}: {m.desc}")
    for argv, o in results:
        print(f"  {o.outcome:<9} {' '.join(argv[:1] + argv[2:])}  {o.detail}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snapshots", default="/tmp/mmintro-fuzz/snaps", help="directory of NAME.vmcore/.vmlinux pairs")
    ap.add_argument("--workdir", default=None, help="where workers keep their private copies")
    ap.add_argument("--make", action="store_true", help="simulate the small scenarios into --snapshots first")
    ap.add_argument("--scenarios", nargs="*", help="only these pairs of --snapshots")
    ap.add_argument("--mutations", type=int, default=50, help="mutations per scenario")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per run (crosscheck: six times that)")
    ap.add_argument("--hard-timeout", type=float, default=120.0, help="seconds of silence before a worker is killed")
    ap.add_argument("--crosscheck-every", type=int, default=4, help="run crosscheck on every Nth mutation")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--replay", metavar="SCENARIO:SEED", help="run one mutation and print each command's outcome")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir = args.workdir or os.path.join(os.path.dirname(os.path.abspath(args.snapshots)), "work")
    if args.worker:
        worker_main(args.snapshots, args.workdir, args.timeout)
        return 0
    if args.make:
        make_snapshots(args.snapshots, tuple(args.scenarios or SMALL_SCENARIOS))
    if args.replay:
        return replay(args)
    return long_fuzz(args)


if __name__ == "__main__":
    sys.exit(main())
