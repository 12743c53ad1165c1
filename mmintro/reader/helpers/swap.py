"""Swap devices, swap entries and the swap cache as Linux 6.18 keeps them (read side).

Named after the kernel's functions (mm/swapfile.c, mm/swap_table.h, include/linux/swapops.h,
arch/x86/include/asm/pgtable_64.h) and drgn's ``drgn.helpers.linux.swap``:

* :func:`for_each_swap_info` -- ``swap_info[0 .. nr_swapfiles)`` with ``SWP_USED`` (drgn's),
  :func:`swap_type_to_info` -- ``swap_info[type]`` if ``type < MAX_SWAPFILES``;
* :func:`swap_usage_in_pages` -- ``inuse_pages`` without 6.12+'s ``SWAP_USAGE_OFFLIST_BIT``
  (bit ``BITS_PER_TYPE(atomic_t) - 2`` = 30, not 62 as drgn 0.3.0 masks);
* :func:`swap_file_path` / :func:`swap_is_blkdev` -- ``d_path(si->swap_file)`` and
  ``S_ISBLK(file_inode(si->swap_file)->i_mode)`` (swap_show's "partition" / "file");
* :func:`pte_to_swp_entry` / :func:`swp_entries` -- x86-64's swap PTE: the type in the top
  ``SWP_TYPE_BITS`` bits, the offset stored *inverted* (L1TF) from bit
  ``SWP_OFFSET_FIRST_BIT`` = ``_PAGE_BIT_PROTNONE + 1``: ``__swp_type(x) = x >> (64 - 5)``,
  ``__swp_offset(x) = ~x << 5 >> 14``; :func:`max_swapfiles` -- MAX_SWAPFILES of *this* build;
* :func:`swap_map` / :func:`swp_swapcount` -- the device's ``swap_map`` bytes (one bulk read
  of the vmalloc'd array) and 6.18's ``swp_swapcount()`` (``_swap_info_get`` checks, then
  ``swap_count(map[offset])`` plus the ``COUNT_CONTINUED`` continuation pages);
* :func:`swap_cache_folios` -- the 6.18 swap cache: each cluster's ``swap_cluster_info.table``
  (``struct swap_table``: ``SWAPFILE_CLUSTER`` atomic_long_t, each NULL, a folio pointer or an
  xa_value shadow); :func:`swapfile_cluster` -- SWAPFILE_CLUSTER from the dump's BTF.

Everything comes from the dump's bytes and its own types; the numbers below are ``#define``s
(not in BTF), each with the header it comes from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mmintro.arch import x86 as _x86
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.object import Object
from mmintro.reader.program import Program

__all__ = [
    "SWAP_HAS_CACHE",
    "COUNT_CONTINUED",
    "SWAP_MAP_MAX",
    "SWAP_MAP_BAD",
    "SWAP_CONT_MAX",
    "SWAP_MAP_SHMEM",
    "SwapEntry",
    "for_each_swap_info",
    "swap_type_to_info",
    "swap_usage_in_pages",
    "swap_file_path",
    "swap_is_blkdev",
    "max_swapfiles",
    "pte_to_swp_entry",
    "swp_entries",
    "is_swap_pte",
    "swap_map",
    "swp_swapcount",
    "swp_swapcounts",
    "swapfile_cluster",
    "swap_cache_folios",
    "swap_entry_info",
]

# include/linux/swap.h: the swap_map byte
SWAP_HAS_CACHE = 0x40  # a folio for this slot is in the swap cache
COUNT_CONTINUED = 0x80  # the count goes on in a continuation page
SWAP_MAP_MAX = 0x3E  # the largest count kept in swap_map itself
SWAP_MAP_BAD = 0x3F  # a bad (or the header) slot
SWAP_CONT_MAX = 0x7F  # the largest count in a continuation byte
SWAP_MAP_SHMEM = 0xBF  # the slot belongs to a shmem object (one reference, its i_pages entry)
MAX_SWAPFILES_SHIFT = 5
# include/linux/swap.h (6.18): the swap types taken by special entries
SWP_MIGRATION_NUM = 3  # CONFIG_MIGRATION (every x86-64 NUMA build, the reference and Debian's)
SWP_DEVICE_NUM = 3  # CONFIG_DEVICE_PRIVATE: SWP_DEVICE_WRITE, _READ, _EXCLUSIVE (6.15-6.18)
SWP_HWPOISON_NUM = 1  # CONFIG_MEMORY_FAILURE
SWP_PTE_MARKER_NUM = 1
# arch/x86/include/asm/pgtable_64.h
SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = _x86._PAGE_BIT_GLOBAL + 1  # _PAGE_BIT_PROTNONE + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
# include/uapi/linux/stat.h
S_IFMT, S_IFBLK = 0o170000, 0o060000
_MASK64 = (1 << 64) - 1
_MAX_CONTINUATIONS = 8  # a count above 0x3e * 0x80**8 would be absurd: a corrupt chain


@dataclass(frozen=True)
class SwapEntry:
    """A decoded swap entry (``swp_entry_t``) and where it points."""

    type: int
    offset: int
    path: str | None = None  # swap_file_path of its device, None if no such device
    count: int = 0  # swp_swapcount()
    has_cache: bool = False  # SWAP_HAS_CACHE in swap_map
    folio: int = 0  # the swap cache folio (swap_table entry), 0 if none


def swap_type_to_info(prog: Program, type_: int) -> Object | None:
    """mm/swapfile.c ``swap_type_to_info()``: ``swap_info[type]`` (None when ``type >=
    MAX_SWAPFILES`` or the slot is NULL)."""
    if type_ < 0 or type_ >= max_swapfiles(prog):
        return None
    arr = prog["swap_info"]
    if type_ >= len(arr):
        return None
    si = arr[type_]
    return si if si.value_() else None


def for_each_swap_info(prog: Program) -> Iterator[Object]:
    """Every ``struct swap_info_struct *`` in ``swap_info[0 .. nr_swapfiles)`` with ``SWP_USED``
    (drgn's helper; swap_start/swap_next of /proc/swaps also need ``swap_map``)."""
    if "nr_swapfiles" not in prog.symbols.by_name:
        return
    nr = prog["nr_swapfiles"].value_()
    arr = prog["swap_info"]
    if nr > len(arr):
        raise ValidationError(f"nr_swapfiles is {nr}, beyond swap_info[{len(arr)}]")
    used = prog.types.const("SWP_USED")
    for t in range(nr):
        si = arr[t]
        if si.value_() and si.flags.value_() & used:
            yield si


def swap_usage_in_pages(si: Object) -> int:
    """mm/swapfile.c ``swap_usage_in_pages()``: ``inuse_pages`` & ``SWAP_USAGE_COUNTER_MASK``
    (``SWAP_USAGE_OFFLIST_BIT`` = 1 << (BITS_PER_TYPE(atomic_t) - 2) marks a device off the
    avail list)."""
    inuse = si.inuse_pages
    try:
        v = inuse.counter.value_()
    except AttributeError:  # before 6.12: a plain unsigned int
        return inuse.value_()
    offlist = 1 << (si.prog_.types.sizeof("atomic_t") * 8 - 2)
    return v & ~offlist & _MASK64


def swap_file_path(si: Object) -> str:
    """``d_path(&si->swap_file->f_path)``: the swap file or block device (``/dev/vda``)."""
    from mmintro.reader.helpers.task import d_path

    f = si.swap_file
    if not f.value_():
        raise ValidationError(f"swap_info_struct {si.value_():#x} has no swap_file")
    return d_path(f)


def swap_is_blkdev(si: Object) -> bool:
    """``S_ISBLK(file_inode(si->swap_file)->i_mode)``: swap_show's "partition" (else "file")."""
    return si.swap_file.f_inode.i_mode.value_() & S_IFMT == S_IFBLK


def max_swapfiles(prog: Program) -> int:
    """include/linux/swap.h ``MAX_SWAPFILES`` of the dumped build: 32 less the types of the
    special entries its configuration has.  CONFIG_MEMORY_FAILURE shows as the ``PG_hwpoison``
    enumerator, CONFIG_DEVICE_PRIVATE as mm/rmap.c's ``make_device_exclusive`` in the symbols;
    CONFIG_MIGRATION is taken as set (x86-64 NUMA builds).  Debian's 6.18: 24; the reference
    build (neither option): 28."""
    v = prog.cache.get("swap.max_swapfiles")
    if v is None:
        hwpoison = SWP_HWPOISON_NUM if "PG_hwpoison" in prog.types.enumerators else 0
        device = SWP_DEVICE_NUM if "make_device_exclusive" in prog.symbols.by_name else 0
        v = prog.cache["swap.max_swapfiles"] = (
            (1 << MAX_SWAPFILES_SHIFT) - device - SWP_MIGRATION_NUM - hwpoison - SWP_PTE_MARKER_NUM
        )
    return v


def is_swap_pte(pte: int) -> bool:
    """include/linux/swapops.h ``is_swap_pte()``: not ``pte_none`` and not ``pte_present``
    (x86: present means _PAGE_PRESENT or _PAGE_PROTNONE)."""
    return pte != 0 and not pte & (_x86._PAGE_PRESENT | _x86._PAGE_PROTNONE)


def pte_to_swp_entry(pte: int) -> tuple[int, int]:
    """include/linux/swapops.h ``pte_to_swp_entry()`` on x86-64: (type, offset).  The flag
    bits it clears first (soft-dirty, uffd-wp, exclusive) lie below the offset."""
    pte &= _MASK64
    return pte >> (64 - SWP_TYPE_BITS), ((~pte << SWP_TYPE_BITS) & _MASK64) >> SWP_OFFSET_SHIFT


def swp_entries(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pte_to_swp_entry` over an array of PTE values: (types, offsets)."""
    e = entries.astype(np.uint64)
    types = (e >> np.uint64(64 - SWP_TYPE_BITS)).astype(np.int64)
    offsets = ((~e) << np.uint64(SWP_TYPE_BITS)) >> np.uint64(SWP_OFFSET_SHIFT)
    return types, offsets.astype(np.int64)


def swap_map(si: Object) -> np.ndarray:
    """``si->swap_map[0 .. si->max)`` as bytes (one read of the vmalloc'd array; cached)."""
    prog = si.prog_
    key = ("swap.map", si.value_())
    m = prog.cache.get(key)
    if m is None:
        n = si.max.value_()
        addr = si.swap_map.value_()
        if not addr or not n:
            m = np.zeros(0, dtype=np.uint8)
        else:
            if n > 1 << 32:
                raise ValidationError(f"swap_info_struct {si.value_():#x}: max {n} is not a swap device's")
            try:
                m = np.frombuffer(prog.read(addr, n), dtype=np.uint8)
            except FaultError as e:
                raise ValidationError(
                    f"swap_info_struct {si.value_():#x}: swap_map at {addr:#x} is not in the dump ({e})"
                ) from None
        prog.cache[key] = m
    return m


def _swap_info_get(prog: Program, type_: int, offset: int) -> Object | None:
    """mm/swapfile.c ``_swap_info_get()``: the device of a swap entry in use, else None
    (no such type, not SWP_USED, offset beyond ``max``, or a free slot)."""
    si = swap_type_to_info(prog, type_)
    if si is None or not si.flags.value_() & prog.types.const("SWP_USED"):
        return None
    m = swap_map(si)
    if offset >= min(si.max.value_(), len(m)) or not m[offset]:
        return None
    return si


def _continued(si: Object, offset: int, count: int) -> int:
    """The continuation-page part of ``swp_swapcount()``: the page holding ``swap_map[offset]``
    heads a list (``page->lru``) of pages whose byte at the same in-page offset carries the next
    digits of the count (base ``SWAP_MAP_MAX + 1``, then ``SWAP_CONT_MAX + 1``)."""
    from mmintro.reader.helpers.mm import page_to_virt, phys_to_page

    prog = si.prog_
    addr = si.swap_map.value_() + offset
    page = phys_to_page(prog, prog.translate(addr))
    if page.private.value_() != prog.types.const("SWP_CONTINUED"):  # the kernel's VM_BUG_ON
        raise ValidationError(
            f"swap entry {si.type.value_()}:{offset:#x}: swap_map says COUNT_CONTINUED but "
            f"its page has no continuation list (page_private != SWP_CONTINUED)"
        )
    in_page = addr & (prog.page_size - 1)
    head = page.lru.address_of_().value_()
    lru_off = prog.types.struct("page").offsetof("lru")
    n = SWAP_MAP_MAX + 1
    count &= ~COUNT_CONTINUED
    node = page.lru.next.value_()
    for _ in range(_MAX_CONTINUATIONS):
        if node == head or not node:
            break
        cont = Object(prog, prog.type("struct page *"), node - lru_off)
        tmp = prog.read_u8(page_to_virt(cont).value_() + in_page)
        count += (tmp & ~COUNT_CONTINUED) * n
        n *= SWAP_CONT_MAX + 1
        if not tmp & COUNT_CONTINUED:
            return count
        node = cont.lru.next.value_()
    raise ValidationError(
        f"swap entry {si.type.value_()}:{offset:#x}: swap count continuation list "
        f"longer than {_MAX_CONTINUATIONS} pages or broken"
    )


def swp_swapcount(prog: Program, type_: int, offset: int) -> int:
    """mm/swapfile.c ``swp_swapcount()``: how many references (PTEs) the swap entry has,
    ``SWAP_HAS_CACHE`` not counted; 0 for an entry not in use.  A shmem slot
    (``SWAP_MAP_SHMEM``, which the kernel never passes here: it is in no PTE) counts 1."""
    si = _swap_info_get(prog, type_, offset)
    if si is None:
        return 0
    count = int(swap_map(si)[offset]) & ~SWAP_HAS_CACHE
    if count == SWAP_MAP_SHMEM:
        return 1
    if count & COUNT_CONTINUED:
        return _continued(si, offset, count)
    return count


def swp_swapcounts(prog: Program, types: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`swp_swapcount` for arrays of entries (one bulk swap_map read per device)."""
    out = np.zeros(len(types), dtype=np.int64)
    used = prog.types.const("SWP_USED")
    for t in np.unique(types).tolist():
        si = swap_type_to_info(prog, t)
        if si is None or not si.flags.value_() & used:
            continue
        sel = np.nonzero(types == t)[0]
        m = swap_map(si)
        lim = min(si.max.value_(), len(m))
        off = offsets[sel]
        ok = (off >= 0) & (off < lim)
        vals = np.zeros(len(sel), dtype=np.int64)
        vals[ok] = m[off[ok]].astype(np.int64) & ~SWAP_HAS_CACHE
        vals[vals == SWAP_MAP_SHMEM] = 1
        for i in np.nonzero(vals & COUNT_CONTINUED)[0].tolist():
            vals[i] = _continued(si, int(off[i]), int(vals[i]))
        out[sel] = vals
    return out


def swapfile_cluster(prog: Program) -> int:
    """mm/swap.h ``SWAPFILE_CLUSTER``: ``HPAGE_PMD_NR`` with CONFIG_THP_SWAP, else 256.  The
    dump's BTF tells which: ``swap_info_struct.nonfull_clusters`` has ``SWAP_NR_ORDERS`` =
    ``PMD_ORDER + 1`` elements with THP_SWAP, 1 without."""
    arr = prog.types.struct("swap_info_struct").member("nonfull_clusters")[2].resolved()
    orders = arr.nelems
    return 1 << (orders - 1) if orders > 1 else 256


def swap_cache_folios(si: Object) -> dict[int, int]:
    """The 6.18 swap cache of one device: ``{offset: struct folio address}`` from every
    cluster's swap table (``swap_cluster_info.table``, ``SWAPFILE_CLUSTER`` atomic_long_t
    each: 0 = empty, an xa_value (bit 0 set) = a shadow, else a folio pointer).  A folio of
    ``n`` pages fills ``n`` consecutive slots with the same pointer."""
    prog = si.prog_
    key = ("swap.cache", si.value_())
    got = prog.cache.get(key)
    if got is not None:
        return got
    out: dict[int, int] = {}
    ci = si.cluster_info.value_()
    maxp = si.max.value_()
    per = swapfile_cluster(prog)
    if ci and maxp:
        T = prog.types
        size = T.sizeof("struct swap_cluster_info")
        toff = T.struct("swap_cluster_info").offsetof("table")
        nr = -(-maxp // per)
        try:
            raw = np.frombuffer(prog.read(ci, nr * size), dtype=np.uint8).reshape(nr, size)
        except FaultError as e:
            raise ValidationError(
                f"swap_info_struct {si.value_():#x}: cluster_info at {ci:#x} is not in the dump ({e})"
            ) from None
        tables = raw[:, toff : toff + 8].copy().view("<u8").ravel()
        for c in np.nonzero(tables)[0].tolist():
            try:
                tb = np.frombuffer(prog.read(int(tables[c]), per * 8), dtype="<u8")
            except FaultError as e:
                raise ValidationError(
                    f"swap cluster {c} of {swap_file_path(si)}: its swap table at "
                    f"{int(tables[c]):#x} is not in the dump ({e})"
                ) from None
            folio = (tb != 0) & ((tb & np.uint64(1)) == 0)  # swp_tb_is_folio: not null, not xa_value
            for i in np.nonzero(folio)[0].tolist():
                out[c * per + i] = int(tb[i])
    prog.cache[key] = out
    return out


def swap_entry_info(prog: Program, pte: int) -> SwapEntry:
    """What a swap PTE holds: its (type, offset), the device's path, ``swp_swapcount``,
    ``SWAP_HAS_CACHE`` and the swap cache folio of that slot."""
    t, off = pte_to_swp_entry(pte)
    si = swap_type_to_info(prog, t)
    if si is None:
        return SwapEntry(t, off)
    m = swap_map(si)
    has_cache = bool(off < len(m) and m[off] & SWAP_HAS_CACHE)
    return SwapEntry(
        t, off, swap_file_path(si), swp_swapcount(prog, t, off), has_cache, swap_cache_folios(si).get(off, 0)
    )
