"""The page cache (mm/filemap.c, mm/readahead.c) and file mappings (mm/mmap.c do_mmap).

Every cached folio of a file is in ``mapping->i_pages`` (the XArray of
:mod:`mmintro.kernel.xarray`, its nodes from ``radix_tree_node``) at its index, with
``folio->mapping``/``index``, ``mapping->nrpages``, NR_FILE_PAGES, one page-cache reference
per page and a place on the file LRU (:mod:`mmintro.kernel.swap`).  The mapping supports no
large folios (``mapping_large_folio_support`` false: the filesystem never called
``mapping_set_large_folios``), so every folio is order 0 and ``page_cache_ra_order`` takes
its fallback, ``do_page_cache_ra``.

* ``filemap_add_folio``: __folio_set_locked, ``__filemap_add_folio`` (folio_ref_add(nr),
  mapping/index, xas_store, nrpages, NR_FILE_PAGES), then folio_add_lru.  No memcg charge,
  no shadow entries (nothing is ever evicted), so no workingset_refault.
* Reads complete at once: the "disk" (:func:`mmintro.kernel.inode.file_bytes`) fills the
  folio's memory, then ``folio_end_read`` (PG_uptodate, unlock).  PGPGIN counts sectors.
* ``filemap_read`` = ``filemap_read`` + ``filemap_get_pages`` + ``filemap_get_read_batch``
  (PAGEVEC_SIZE batches that stop at a hole, a !uptodate folio or a PG_readahead one),
  ``page_cache_sync_ra`` (initial window ``get_init_ra_size``, the sequential-miss and
  ``page_cache_prev_miss`` history cases), ``page_cache_async_ra`` on a PG_readahead folio
  (``get_next_ra_size`` ramp-up), ``folio_mark_accessed`` on each batch's first folio unless
  the read continues in the folio the last one ended in, and on every other folio of the
  batch; ``file->f_ra`` (start, size, async_size, prev_pos)
  holds the state as the kernel leaves it.  ``last_pos`` starts at ``ra->prev_pos``.
* ``filemap_write`` = ``generic_perform_write`` (per page: write_begin = ``__filemap_get_folio(FGP_WRITEBEGIN)`` reading the page first when the write
  covers part of an uncached page inside i_size, the copy, write_end = mark uptodate,
  i_size update, ``folio_mark_dirty``, unlock, put; then balance_dirty_pages_ratelimited).
* ``filemap_fault``: ``filemap_get_folio`` (+ ``do_async_mmap_readahead``) or, on a miss,
  PGMAJFAULT and ``do_sync_mmap_readahead`` (mmap_miss accounting, the read-around window
  ``ra_pages`` centred on the fault) then ``__filemap_get_folio(FGP_CREAT|FGP_FOR_MMAP)``;
  the returned folio carries the reference the PTE keeps.  VM_EXEC's preferred exec folio
  order and fault-around (``filemap_map_pages``) are not modelled.
* ``mmap_file``: ``do_mmap`` for a file: get_unmapped_area, VM_SHARED|VM_MAYSHARE for
  MAP_SHARED (i_mmap_writable for writable shared), VM_ACCOUNT for writable private,
  ``vm_file = get_file(file)``, ``vm_pgoff``, ``vma_set_page_prot`` (a shared writable
  mapping of a file whose bdi can write back wants write notification: vm_page_prot without
  _PAGE_RW, so the first write to each page faults and dirties the folio), then
  ``vma_interval_tree_insert`` into ``mapping->i_mmap`` (MEM's rmap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import gfp as G
from mmintro.kernel import inode as I
from mmintro.kernel import page_alloc as pa
from mmintro.kernel import page_writeback as pw
from mmintro.kernel import swap
from mmintro.kernel.xarray import xa_is_value

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "PAGEVEC_SIZE",
    "fault_dirty_shared_page",
    "filemap_add_folio",
    "filemap_fault",
    "filemap_get_folio",
    "filemap_read",
    "filemap_write",
    "get_init_ra_size",
    "get_next_ra_size",
    "mmap_file",
    "page_cache_async_ra",
    "page_cache_sync_ra",
    "vm_pgprot_modify",
    "vma_set_page_prot",
    "vma_wants_writenotify",
]

PAGEVEC_SIZE = 31  # include/linux/pagevec.h
MMAP_LOTSAMISS = 100  # mm/filemap.c
FMODE_RANDOM = 1 << 12  # include/linux/fs.h
VM_SEQ_READ = 0x00008000  # include/linux/mm.h
VM_RAND_READ = 0x00010000
ULONG_MAX = (1 << 64) - 1


# -- small helpers --------------------------------------------------------------------------------
def _page(k: Kernel, pfn: int) -> int:
    return k.pfn_to_page(pfn)


def _pfn(k: Kernel, page: int) -> int:
    return (page - k.vmemmap_base) // k.struct_page_size


def _ref_add(k: Kernel, pfn: int, nr: int) -> None:
    _mv64, mv32, w = pa.page_words(k, pfn)
    mv32[2 * w + pa.D_REFCOUNT] = int(mv32[2 * w + pa.D_REFCOUNT]) + nr


def _ra_get(k: Kernel, file: int, f: str) -> int:
    return k.kmem.get(file, "file", f"f_ra.{f}")


def _ra_set(k: Kernel, file: int, f: str, v: int) -> None:
    k.kmem.set(file, "file", f"f_ra.{f}", v)


def _mapping(k: Kernel, file: int) -> int:
    return k.kmem.get(file, "file", "f_mapping")


def _host(k: Kernel, mapping: int) -> int:
    return k.kmem.get(mapping, "address_space", "host")


def _isize(k: Kernel, mapping: int) -> int:
    return k.kmem.get(_host(k, mapping), "inode", "i_size")


def _lookup(k: Kernel, mapping: int, index: int) -> int | None:
    """xa_load on i_pages: the folio's pfn, or None (nothing, or a workingset shadow)."""
    e = I.mapping_xa(k, mapping).xa_load(index)
    return _pfn(k, e) if e and not xa_is_value(e) else None


# -- adding folios --------------------------------------------------------------------------------
def filemap_alloc_folio(k: Kernel, mapping: int, gfp: int | None = None) -> int | None:
    """filemap_alloc_folio(gfp, 0) with the mapping's gfp mask (readahead_gfp_mask adds
    __GFP_NORETRY | __GFP_NOWARN)."""
    if gfp is None:
        gfp = k.kmem.get(mapping, "address_space", "gfp_mask")
    return k.alloc_pages(gfp, 0)


def filemap_add_folio(k: Kernel, mapping: int, pfn: int, index: int) -> None:
    """mm/filemap.c filemap_add_folio(): locked, in the cache with its references, on the LRU."""
    nr = swap.folio_nr_pages(k, pfn)
    swap.folio_set_flag(k, pfn, swap.PG_locked)  # __folio_set_locked
    _ref_add(k, pfn, nr)  # folio_ref_add(folio, nr): the page cache's references
    page = _page(k, pfn)
    k.kmem.set(page, "page", "mapping", mapping)
    k.kmem.set(page, "page", "__folio_index", index)
    xa = I.mapping_xa(k, mapping)
    shadow = xa.xa_load(index)
    if shadow and not xa_is_value(shadow):
        raise ValueError(f"filemap_add_folio: index {index} is already cached (-EEXIST)")
    xa.xa_store(index, page)
    k.kmem.set(mapping, "address_space", "nrpages", k.kmem.get(mapping, "address_space", "nrpages") + nr)
    k.mod_node_page_state(swap.folio_nid(k, pfn), "NR_FILE_PAGES", nr)  # __lruvec_stat_mod_folio
    if shadow:
        # workingset_refault(): a folio evicted recently enough goes straight to the active
        # list, and a workingset one's read counts as a memory stall (thrashing)
        from mmintro.kernel import workingset

        workingset.workingset_refault(k, pfn, shadow)
    swap.folio_add_lru(k, pfn)


def __filemap_remove_folio(k: Kernel, pfn: int, shadow: int = 0) -> None:
    """mm/filemap.c __filemap_remove_folio() (page_cache_delete + filemap_unaccount_folio)
    and the cache's references (folio_put_refs in __remove_mapping's caller): the
    folio's index holds ``shadow`` (a workingset value entry) or nothing, ``nrpages`` and
    NR_FILE_PAGES (NR_SHMEM) go down, ``folio->mapping`` is cleared."""
    from mmintro.kernel import rmap

    nr = swap.folio_nr_pages(k, pfn)
    page = _page(k, pfn)
    mapping = k.kmem.get(page, "page", "mapping")
    index = k.kmem.get(page, "page", "__folio_index")
    xa = I.mapping_xa(k, mapping)
    if shadow:
        xa.xa_store(index, shadow)
    else:
        xa.xa_erase(index)
    k.kmem.set(mapping, "address_space", "nrpages", k.kmem.get(mapping, "address_space", "nrpages") - nr)
    nid = swap.folio_nid(k, pfn)
    k.mod_node_page_state(nid, "NR_FILE_PAGES", -nr)
    if swap.folio_test(k, pfn, swap.PG_swapbacked):
        k.mod_node_page_state(nid, "NR_SHMEM", -nr)
    k.kmem.set(page, "page", "mapping", 0)
    rmap.folio_put(k, pfn, nr)


def _fill_from_disk(k: Kernel, mapping: int, pfn: int, index: int) -> None:
    """The read I/O of one folio and its completion (folio_end_read: uptodate + unlock)."""
    path = I.vfs_root(k).paths.get(_host(k, mapping), "?")
    isize = _isize(k, mapping)
    pos = index << PAGE_SHIFT
    n = max(0, min(PAGE_SIZE, isize - pos))
    data = I.file_bytes(path, pos, n) + bytes(PAGE_SIZE - n)  # beyond EOF: zeroes
    k.mem.write(pfn << PAGE_SHIFT, data)
    k.vm_events[k.current_cpu][k.T.const("PGPGIN")] += PAGE_SIZE >> 9  # submit_bio(): sectors
    _ioac_add(k, {"read_bytes": PAGE_SIZE})  # submit_bio(): task_io_account_read
    swap.folio_set_flag(k, pfn, swap.PG_uptodate)
    swap.folio_clear_flag(k, pfn, swap.PG_locked)


def _folio_put(k: Kernel, pfn: int, nr: int = 1) -> None:
    from mmintro.kernel import rmap

    rmap.folio_put(k, pfn, nr)


# -- readahead (mm/readahead.c) -------------------------------------------------------------------
def get_init_ra_size(size: int, max_pages: int) -> int:
    """mm/readahead.c get_init_ra_size()."""
    newsize = 1 << (size - 1).bit_length() if size > 1 else 1  # roundup_pow_of_two
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(cur: int, max_pages: int) -> int:
    """mm/readahead.c get_next_ra_size()."""
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def ractl_max_pages(k: Kernel, file: int, req_size: int) -> int:
    mapping = _mapping(k, file)
    bdi = k.kmem.get(k.kmem.get(_host(k, mapping), "inode", "i_sb"), "super_block", "s_bdi")
    max_pages = _ra_get(k, file, "ra_pages")
    io_pages = k.kmem.get(bdi, "backing_dev_info", "io_pages")
    if req_size > max_pages and io_pages > max_pages:
        max_pages = min(req_size, io_pages)
    return max_pages


def page_cache_ra_unbounded(k: Kernel, mapping: int, index: int, nr_to_read: int, lookahead_size: int) -> int:
    """mm/readahead.c page_cache_ra_unbounded(): allocate and add the missing folios, mark
    the one at ``nr_to_read - lookahead_size`` PG_readahead, read them (read_pages; the
    batch's allocation references are dropped by readahead_folio)."""
    gfp = k.kmem.get(mapping, "address_space", "gfp_mask") | G.parse_gfp("__GFP_NORETRY|__GFP_NOWARN")
    mark = nr_to_read - lookahead_size
    added = []
    with I.mapping_xa(k, mapping).batch():  # the xa_nodes' bytes written once
        _ra_alloc_range(k, mapping, index, nr_to_read, mark, gfp, added)
    # read_pages(): a batch holding a workingset folio (one that refaulted while in the
    # workingset) is thrashing, and its read a memory stall (psi_memstall_enter in the ractl)
    ws = sum(1 for pfn, _idx in added if swap.folio_test(k, pfn, swap.PG_workingset))
    if ws:
        from mmintro.kernel import page_io, psi

        flags = psi.psi_memstall_enter(k)
        psi.advance(k, len(added) * page_io.READ_NS)
    for pfn, idx in added:
        _fill_from_disk(k, mapping, pfn, idx)
        _folio_put(k, pfn)  # readahead_folio(): the caller's reference goes
    if ws:
        psi.psi_memstall_leave(k, None, flags)
    return len(added)


def _ra_alloc_range(
    k: Kernel, mapping: int, index: int, nr_to_read: int, mark: int, gfp: int, added: list[tuple[int, int]]
) -> None:
    for i in range(nr_to_read):
        if _lookup(k, mapping, index + i) is not None:
            continue  # already cached: read_pages() what we have, skip it
        pfn = filemap_alloc_folio(k, mapping, gfp)
        if pfn is None:
            break
        filemap_add_folio(k, mapping, pfn, index + i)
        if i == mark:
            swap.folio_set_flag(k, pfn, swap.PG_reclaim)  # PG_readahead
        added.append((pfn, index + i))


def do_page_cache_ra(k: Kernel, mapping: int, index: int, nr_to_read: int, lookahead_size: int) -> int:
    """mm/readahead.c do_page_cache_ra(): clamp to the page holding EOF."""
    isize = _isize(k, mapping)
    if isize == 0:
        return 0
    end_index = (isize - 1) >> PAGE_SHIFT
    if index > end_index:
        return 0
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    return page_cache_ra_unbounded(k, mapping, index, nr_to_read, lookahead_size)


def page_cache_ra_order(k: Kernel, file: int) -> int:
    """mm/readahead.c page_cache_ra_order() without large-folio support: the fallback."""
    _ra_set(k, file, "order", 0)
    return do_page_cache_ra(
        k, _mapping(k, file), _ra_get(k, file, "start"), _ra_get(k, file, "size"), _ra_get(k, file, "async_size")
    )


def page_cache_prev_miss(k: Kernel, mapping: int, index: int, max_scan: int) -> int:
    """mm/filemap.c page_cache_prev_miss(): the first hole at or below ``index`` within
    ``max_scan`` (ULONG_MAX when index 0 was reached with no hole)."""
    while max_scan:
        if _lookup(k, mapping, index) is None:
            return index
        if index == 0:
            return ULONG_MAX
        index -= 1
        max_scan -= 1
    return index


def page_cache_next_miss(k: Kernel, mapping: int, index: int, max_scan: int) -> int:
    while max_scan:
        if _lookup(k, mapping, index) is None:
            return index
        index += 1
        max_scan -= 1
    return index


def page_cache_sync_ra(k: Kernel, file: int, index: int, req_count: int) -> int:
    """mm/readahead.c page_cache_sync_ra()."""
    mapping = _mapping(k, file)
    do_forced_ra = bool(k.kmem.get(file, "file", "f_mode") & FMODE_RANDOM)
    if not _ra_get(k, file, "ra_pages"):
        req_count = 1
        do_forced_ra = True
    if do_forced_ra:  # force_page_cache_ra: the request as is, no lookahead
        return do_page_cache_ra(k, mapping, index, req_count, 0)
    max_pages = ractl_max_pages(k, file, req_count)
    prev_pos = _ra_get(k, file, "prev_pos")
    prev_index = (prev_pos & ULONG_MAX) >> PAGE_SHIFT
    if not index or req_count > max_pages or ((index - prev_index) & ULONG_MAX) <= 1:
        size = get_init_ra_size(req_count, max_pages)
        _ra_set(k, file, "start", index)
        _ra_set(k, file, "size", size)
        _ra_set(k, file, "async_size", size - req_count if size > req_count else size >> 1)
    else:
        miss = page_cache_prev_miss(k, mapping, index - 1, max_pages)
        contig_count = (index - miss - 1) & ULONG_MAX
        if contig_count <= req_count:  # a standalone small random read
            return do_page_cache_ra(k, mapping, index, req_count, 0)
        if miss == ULONG_MAX:
            contig_count *= 2
        _ra_set(k, file, "start", index)
        _ra_set(k, file, "size", min(contig_count + req_count, max_pages))
        _ra_set(k, file, "async_size", 1)
    return page_cache_ra_order(k, file)


def page_cache_async_ra(k: Kernel, file: int, pfn: int, req_count: int) -> int:
    """mm/readahead.c page_cache_async_ra() for the PG_readahead folio ``pfn``."""
    mapping = _mapping(k, file)
    if not _ra_get(k, file, "ra_pages"):
        return 0
    if swap.folio_test(k, pfn, swap.PG_writeback):
        return 0  # PG_readahead is PG_reclaim there
    swap.folio_clear_flag(k, pfn, swap.PG_reclaim)
    index = k.kmem.get(_page(k, pfn), "page", "__folio_index")
    max_pages = ractl_max_pages(k, file, req_count)
    start, size, async_size = (_ra_get(k, file, f) for f in ("start", "size", "async_size"))
    if index == start + size - async_size:  # round_down(..., folio_nr_pages = 1)
        _ra_set(k, file, "start", start + size)
        size = max(size, get_next_ra_size(size, max_pages))
        _ra_set(k, file, "size", size)
        _ra_set(k, file, "async_size", size)
    else:
        start = page_cache_next_miss(k, mapping, index + 1, max_pages)
        if not start or start - index > max_pages:
            return 0
        size = get_next_ra_size(start - index + req_count, max_pages)
        _ra_set(k, file, "start", start)
        _ra_set(k, file, "size", size)
        _ra_set(k, file, "async_size", size)
    return page_cache_ra_order(k, file)


# -- read(2) ----------------------------------------------------------------------------------
def filemap_get_read_batch(k: Kernel, mapping: int, index: int, max_index: int) -> list[int]:
    """mm/filemap.c filemap_get_read_batch(): consecutive cached folios from ``index``
    (references are taken and dropped by the caller's folio_batch: not written here)."""
    batch = []
    while index <= max_index and len(batch) < PAGEVEC_SIZE:
        pfn = _lookup(k, mapping, index)
        if pfn is None:
            break
        batch.append(pfn)
        if not swap.folio_test(k, pfn, swap.PG_uptodate) or swap.folio_test(k, pfn, swap.PG_reclaim):
            break
        index += swap.folio_nr_pages(k, pfn)
    return batch


def filemap_get_pages(k: Kernel, file: int, pos: int, count: int) -> list[int]:
    """mm/filemap.c filemap_get_pages()."""
    mapping = _mapping(k, file)
    index = pos >> PAGE_SHIFT
    last_index = -(-(pos + count) // PAGE_SIZE)
    batch = filemap_get_read_batch(k, mapping, index, last_index - 1)
    if not batch:
        page_cache_sync_ra(k, file, index, last_index - index)
        batch = filemap_get_read_batch(k, mapping, index, last_index - 1)
    if not batch:  # filemap_create_folio()
        pfn = filemap_alloc_folio(k, mapping)
        if pfn is None:
            return []
        filemap_add_folio(k, mapping, pfn, index)
        _fill_from_disk(k, mapping, pfn, index)
        _folio_put(k, pfn)
        batch = [pfn]
    last = batch[-1]
    if swap.folio_test(k, last, swap.PG_reclaim):  # filemap_readahead()
        idx = k.kmem.get(_page(k, last), "page", "__folio_index")
        page_cache_async_ra(k, file, last, last_index - idx)
    return batch


class _Current:
    """Run as ``task`` (a task_struct address) for the duration (``current``)."""

    def __init__(self, k: Kernel, task: int | None) -> None:
        self.k, self.task = k, task

    def __enter__(self) -> None:
        self.old = self.k.__dict__.get("current_task")
        if self.task:
            self.k.current_task = self.task

    def __exit__(self, *exc: object) -> None:
        self.k.current_task = self.old


def filemap_read(k: Kernel, file: int, pos: int, length: int, task: int | None = None) -> int:
    """mm/filemap.c filemap_read() of [pos, pos+length) (by ``task`` when given): returns
    the bytes read."""
    with _Current(k, task):
        n = _filemap_read(k, file, pos, length)
        _ioac_add(k, {"rchar": n, "syscr": 1})  # vfs_read(): add_rchar, inc_syscr
        return n


def _filemap_read(k: Kernel, file: int, pos: int, length: int) -> int:
    mapping = _mapping(k, file)
    end = pos + length
    last_pos = _ra_get(k, file, "prev_pos")
    done = 0
    while pos < end:
        isize = _isize(k, mapping)
        if pos >= isize:
            break
        batch = filemap_get_pages(k, file, pos, end - pos)
        if not batch:
            break
        end_offset = min(isize, end)
        # pos_same_folio(ki_pos, last_pos - 1, folios[0]): only the first access marks it
        if pos >> PAGE_SHIFT != (last_pos - 1) >> PAGE_SHIFT:
            swap.folio_mark_accessed(k, batch[0])
        for i, pfn in enumerate(batch):
            idx = k.kmem.get(_page(k, pfn), "page", "__folio_index")
            if end_offset < idx << PAGE_SHIFT:
                break
            if i > 0:
                swap.folio_mark_accessed(k, pfn)
            fend = (idx + swap.folio_nr_pages(k, pfn)) << PAGE_SHIFT
            n = min(end_offset - pos, fend - pos)
            pos += n
            done += n
            last_pos = pos
        if pos >= isize:
            break
    _ra_set(k, file, "prev_pos", last_pos)
    k.kmem.set(file, "file", "f_pos", pos)
    return done


# -- write(2) ---------------------------------------------------------------------------------
def _written_bytes(path: str, pos: int, n: int) -> bytes:
    return I.file_bytes(path + " (written)", pos, n)


def filemap_write(k: Kernel, file: int, pos: int, length: int, task: int | None = None) -> int:
    """mm/filemap.c generic_perform_write() of ``length`` bytes at ``pos`` (by ``task`` when
    given: its nr_dirtied, ioac.write_bytes and throttle records); returns bytes written."""
    with _Current(k, task), I.mapping_xa(k, _mapping(k, file)).batch():
        n = _generic_perform_write(k, file, pos, length)
        _ioac_add(k, {"wchar": n, "syscw": 1})  # vfs_write(): add_wchar, inc_syscw
        return n


def _ioac_add(k: Kernel, fields: dict[str, int]) -> None:
    """include/linux/task_io_accounting_ops.h: the current task's ioac counters."""
    task = pw.current_task(k)
    if task:
        for f, v in fields.items():
            k.kmem.set(task, "task_struct", f"ioac.{f}", k.kmem.get(task, "task_struct", f"ioac.{f}") + v)


def _generic_perform_write(k: Kernel, file: int, pos: int, length: int) -> int:
    mapping = _mapping(k, file)
    inode = _host(k, mapping)
    path = I.vfs_root(k).paths.get(inode, "?")
    written = 0
    while written < length:
        offset = pos & (PAGE_SIZE - 1)
        n = min(PAGE_SIZE - offset, length - written)
        index = pos >> PAGE_SHIFT
        # write_begin: __filemap_get_folio(FGP_WRITEBEGIN) -- FGP_LOCK|FGP_WRITE|FGP_CREAT|FGP_STABLE
        pfn = _lookup(k, mapping, index)
        if pfn is None:
            pfn = filemap_alloc_folio(
                k, mapping, k.kmem.get(mapping, "address_space", "gfp_mask") | G.parse_gfp("__GFP_WRITE")
            )
            if pfn is None:
                break
            filemap_add_folio(k, mapping, pfn, index)  # locked; our reference is the allocation's
            if n < PAGE_SIZE and index << PAGE_SHIFT < _isize(k, mapping):
                _fill_from_disk(k, mapping, pfn, index)  # a partial write reads the page first
                swap.folio_set_flag(k, pfn, swap.PG_locked)
            elif n < PAGE_SIZE:
                k.mem.fill(pfn << PAGE_SHIFT, PAGE_SIZE, 0)  # simple_write_begin: folio_zero_segments
        else:
            _ref_add(k, pfn, 1)
            swap.folio_set_flag(k, pfn, swap.PG_locked)
        # the copy (copy_folio_from_iter_atomic)
        k.mem.write((pfn << PAGE_SHIFT) + offset, _written_bytes(path, pos, n))
        # write_end (simple_write_end / generic_write_end)
        swap.folio_set_flag(k, pfn, swap.PG_uptodate)
        if pos + n > k.kmem.get(inode, "inode", "i_size"):
            k.kmem.set(inode, "inode", "i_size", pos + n)
        pw.folio_mark_dirty(k, pfn)
        swap.folio_clear_flag(k, pfn, swap.PG_locked)
        _folio_put(k, pfn)
        pos += n
        written += n
        pw.balance_dirty_pages_ratelimited(k, mapping)  # at the end of each iteration
    k.kmem.set(file, "file", "f_pos", pos)
    return written


# -- mmap and faults --------------------------------------------------------------------------
def filemap_get_folio(k: Kernel, mapping: int, index: int) -> int | None:
    """filemap_get_folio(): the cached folio with a reference taken, or None."""
    pfn = _lookup(k, mapping, index)
    if pfn is not None:
        _ref_add(k, pfn, 1)
    return pfn


def do_sync_mmap_readahead(k: Kernel, vma: int, file: int, pgoff: int) -> None:
    """mm/filemap.c do_sync_mmap_readahead() (no VM_HUGEPAGE / VM_EXEC special cases)."""
    flags = k.kmem.get(vma, "vm_area_struct", "vm_flags")
    if flags & VM_RAND_READ or not _ra_get(k, file, "ra_pages"):
        return
    if flags & VM_SEQ_READ:
        page_cache_sync_ra(k, file, pgoff, _ra_get(k, file, "ra_pages"))
        return
    mmap_miss = _ra_get(k, file, "mmap_miss")
    if mmap_miss < MMAP_LOTSAMISS * 10:
        mmap_miss += 1
        _ra_set(k, file, "mmap_miss", mmap_miss)
    if mmap_miss > MMAP_LOTSAMISS:
        return
    ra_pages = _ra_get(k, file, "ra_pages")
    _ra_set(k, file, "start", max(0, pgoff - ra_pages // 2))
    _ra_set(k, file, "size", ra_pages)
    _ra_set(k, file, "async_size", ra_pages // 4)
    page_cache_ra_order(k, file)


def do_async_mmap_readahead(k: Kernel, vma: int, file: int, pfn: int) -> None:
    """mm/filemap.c do_async_mmap_readahead()."""
    if k.kmem.get(vma, "vm_area_struct", "vm_flags") & VM_RAND_READ or not _ra_get(k, file, "ra_pages"):
        return
    if not swap.folio_test(k, pfn, swap.PG_locked):
        mm = _ra_get(k, file, "mmap_miss")
        if mm:
            _ra_set(k, file, "mmap_miss", mm - 1)
    if swap.folio_test(k, pfn, swap.PG_reclaim):
        page_cache_async_ra(k, file, pfn, _ra_get(k, file, "ra_pages"))


def filemap_fault(k: Kernel, vma: int, pgoff: int, write: bool) -> int:
    """mm/filemap.c filemap_fault() for page ``pgoff`` of the VMA's file: the folio, cached
    and uptodate, with one reference for the mapping the caller installs.  PGMAJFAULT when it
    had to be read (``k.last_fault_major`` says so).  Raises ValueError beyond EOF (SIGBUS).
    Dirtying on a shared write is the caller's (do_shared_fault: fault_dirty_shared_page)."""
    km = k.kmem
    file = km.get(vma, "vm_area_struct", "vm_file")
    mapping = _mapping(k, file)
    if pgoff >= -(-_isize(k, mapping) // PAGE_SIZE):
        raise ValueError(f"filemap_fault: page {pgoff} is beyond EOF (SIGBUS)")
    pfn = filemap_get_folio(k, mapping, pgoff)
    k.last_fault_major = pfn is None
    if pfn is not None:
        do_async_mmap_readahead(k, vma, file, pfn)
        return pfn
    k.vm_events[k.current_cpu][k.T.const("PGMAJFAULT")] += 1
    do_sync_mmap_readahead(k, vma, file, pgoff)
    pfn = filemap_get_folio(k, mapping, pgoff)
    if pfn is None:  # __filemap_get_folio(FGP_CREAT|FGP_FOR_MMAP) + filemap_read_folio
        pfn = filemap_alloc_folio(k, mapping)
        if pfn is None:
            raise MemoryError("filemap_fault: no memory (VM_FAULT_OOM)")
        filemap_add_folio(k, mapping, pfn, pgoff)
        _fill_from_disk(k, mapping, pfn, pgoff)
    return pfn


def fault_dirty_shared_page(k: Kernel, vma: int, pfn: int) -> None:
    """A write fault on a shared file mapping (do_shared_fault -> filemap_page_mkwrite's
    folio_mark_dirty, then fault_dirty_shared_page's balance_dirty_pages_ratelimited)."""
    mapping = k.kmem.get(_page(k, pfn), "page", "mapping")
    pw.folio_mark_dirty(k, pfn)
    pw.balance_dirty_pages_ratelimited(k, mapping)


# -- write notification (mm/mmap.c) ---------------------------------------------------------------
def vm_pgprot_modify(oldprot: int, vm_flags: int) -> int:
    """mm/mmap.c vm_pgprot_modify() = arch/x86 pgprot_modify(oldprot, vm_get_page_prot(vm_flags)):
    the _PAGE_CHG_MASK bits of ``oldprot`` kept, the rest from the new protection."""
    from mmintro.kernel import mmap as M
    from mmintro.kernel.mprotect import _PAGE_CHG_MASK

    return (oldprot & _PAGE_CHG_MASK) | (M.vm_get_page_prot(vm_flags) & ~_PAGE_CHG_MASK)


def vma_fs_can_writeback(k: Kernel, vma: int) -> bool:
    """mm/mmap.c vma_fs_can_writeback(): vm_file's mapping_can_writeback (the inode's bdi has
    BDI_CAP_WRITEBACK: dirty accounting; not tmpfs/hugetlbfs on noop_backing_dev_info)."""
    km = k.kmem
    file = km.get(vma, "vm_area_struct", "vm_file")
    if not file:
        return False
    mapping = _mapping(k, file)
    if not mapping:
        return False
    bdi = pw._inode_bdi(k, _host(k, mapping))
    return bool(bdi) and bool(km.get(bdi, "backing_dev_info", "capabilities") & pw.BDI_CAP_WRITEBACK)


def vma_wants_writenotify(k: Kernel, vma: int, vm_page_prot: int) -> bool:
    """mm/mmap.c vma_wants_writenotify(): a shared writable VMA whose first write to each
    page must fault.  vm_ops->page_mkwrite is not modelled (vm_ops NULL); the VMA's
    protection equals vm_pgprot_modify's (no driver changed it); soft-dirty tracking is off
    for a new VMA (mmap_region sets VM_SOFTDIRTY); no userfaultfd: so it is
    vma_fs_can_writeback."""
    from mmintro.kernel import mmap as M

    flags = k.kmem.get(vma, "vm_area_struct", "vm_flags")
    if flags & (M.VM_WRITE | M.VM_SHARED) != M.VM_WRITE | M.VM_SHARED:  # vma_is_shared_writable
        return False
    if vm_page_prot != vm_pgprot_modify(vm_page_prot, flags):
        return False
    return vma_fs_can_writeback(k, vma)


def vma_set_page_prot(k: Kernel, vma: int) -> None:
    """mm/mmap.c vma_set_page_prot(): vm_page_prot from vm_flags, without the write bit
    (vm_flags & ~VM_SHARED: the private protection) when the VMA wants write notification,
    so a read fault maps the page read-only and the first write takes do_wp_page ->
    wp_page_shared -> fault_dirty_shared_page (folio_mark_dirty)."""
    from mmintro.kernel import mmap as M

    km = k.kmem
    flags = km.get(vma, "vm_area_struct", "vm_flags")
    prot = vm_pgprot_modify(km.get(vma, "vm_area_struct", "vm_page_prot"), flags)
    if vma_wants_writenotify(k, vma, prot):
        prot = vm_pgprot_modify(prot, flags & ~M.VM_SHARED)
    km.set(vma, "vm_area_struct", "vm_page_prot", prot)


def mmap_file(
    k: Kernel, mm: int, file: int, length: int, prot: int, shared: bool, offset: int = 0, addr: int = 0
) -> int:
    """do_mmap() of ``file`` (MAP_SHARED when ``shared``, else MAP_PRIVATE) over ``length``
    bytes from ``offset``; ``prot`` the VM_READ/WRITE/EXEC bits.  Returns the address (0 on
    -ENOMEM)."""
    from mmintro.kernel import mmap as M

    km = k.kmem
    if offset % PAGE_SIZE:
        raise ValueError("mmap_file: offset must be page aligned (-EINVAL)")
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    flags = prot | M.VM_MAYREAD | M.VM_MAYWRITE | M.VM_MAYEXEC
    if shared:
        flags |= M.VM_SHARED | M.VM_MAYSHARE
    elif flags & M.VM_WRITE:
        flags |= M.VM_ACCOUNT  # accountable_mapping()
    if not addr:
        addr = M.unmapped_area_topdown(k, mm, length, PAGE_SIZE, km.get(mm, "mm_struct", "mmap_base"))
        if not addr:
            return 0
    vma = M.vma_store(k, mm, addr, addr + length, flags, offset >> PAGE_SHIFT)
    km.set(vma, "vm_area_struct", "vm_file", I.get_file(k, file))
    vma_set_page_prot(k, vma)  # __mmap_new_vma -> vma_set_page_prot (vm_file set first)
    mapping = _mapping(k, file)
    if flags & M.VM_SHARED and flags & M.VM_MAYWRITE:  # mapping_map_writable()
        km.set(
            mapping,
            "address_space",
            "i_mmap_writable.counter",
            km.get(mapping, "address_space", "i_mmap_writable.counter") + 1,
        )
    try:
        from mmintro.kernel import rmap
    except ImportError:
        rmap = None
    if rmap is not None and hasattr(rmap, "vma_interval_tree_insert"):
        rmap.vma_interval_tree_insert(k, vma, mapping)
    return addr
