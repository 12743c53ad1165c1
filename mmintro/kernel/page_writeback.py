"""Dirty pages and writeback (mm/page-writeback.c, fs/fs-writeback.c, mm/backing-dev.c).

* The disk's ``backing_dev_info`` (``bdi_alloc`` + ``bdi_init`` + ``bdi_register``): on
  ``bdi_list``, with its embedded ``bdi_writeback`` (``wb_init``: ``b_dirty``/``b_io``/
  ``b_more_io``/``b_dirty_time`` lists, ``WB_registered``, INIT_BW bandwidths and dirty
  ratelimit, the four ``stat`` percpu_counters), ``ra_pages`` = VM_READAHEAD_PAGES,
  ``capabilities`` BDI_CAP_WRITEBACK|BDI_CAP_WRITEBACK_ACCT, ``max_ratio`` 100 %.
* Dirtying (``filemap_dirty_folio`` -> ``__folio_mark_dirty`` -> ``folio_account_dirtied``,
  then ``__mark_inode_dirty(I_DIRTY_PAGES)``): PG_dirty, PAGECACHE_TAG_DIRTY, NR_FILE_DIRTY,
  NR_ZONE_WRITE_PENDING, NR_DIRTIED, WB_RECLAIMABLE, WB_DIRTIED, ``current->nr_dirtied``,
  ``bdp_ratelimits``; the inode gets ``i_wb`` (``inode_attach_wb``: the bdi's root wb, no
  cgroup writeback), I_DIRTY_PAGES, ``dirtied_when`` and moves to the head of ``wb->b_dirty``
  (``inode_io_list_move_locked``; WB_has_dirty_io).  No buffer heads: the filesystem's
  ``dirty_folio`` is ``filemap_dirty_folio``.
* Limits exactly as 6.18: ``global_dirtyable_memory`` (free - totalreserve + file LRU, +1),
  ``domain_dirty_limits`` (ratios scaled per PAGE_SIZE, or the _bytes sysctls; bg >= thresh
  halves), ``global_dirty_limits``, ``dirty_freerun_ceiling``, ``hard_dirty_limit`` /
  ``update_dirty_limit`` of ``global_wb_domain``, ``writeback_set_ratelimit``.
* ``balance_dirty_pages_ratelimited`` -> ``balance_dirty_pages`` (one pass of its loop):
  above ``bg_thresh`` the flusher is woken (``wb_start_background_writeback``); at or below
  the freerun ceiling the task runs free (``nr_dirtied_pause = dirty_poll_interval``);
  above it a throttle event is logged in ``k.dirty_throttle_log`` with the kernel's
  position-ratio control: ``wb_position_ratio`` (global ``pos_ratio_polynom`` and the wb
  control line; ``wb_thresh`` = ``__wb_calc_thresh``: thresh times the wb's fraction of the
  domain's writeback completions -- 0 until the disk completed writeback, then all of it,
  the fprop period decay aside), ``hard_dirty_limit`` with ``update_dirty_limit`` once per
  BANDWIDTH_INTERVAL, ``task_ratelimit =
  dirty_ratelimit * pos_ratio >> RATELIMIT_CALC_SHIFT``, ``period = HZ * pages_dirtied /
  task_ratelimit`` less the think time since ``dirty_paused_when``; below ``wb_min_pause`` no
  sleep (the time is credited or nr_dirtied_pause grows), above ``wb_max_pause`` capped; a
  sleep advances the simulated jiffies by the pause.  The flusher runs only when a workload
  calls it (no concurrent writeback during a write), so a writer past the hard limit is paused
  max_pause per page, as the kernel's would be until writeback caught up.  Simplifications: the bandwidth estimates
  (write_bandwidth, dirty_ratelimit) stay at INIT_BW (no wb_update_bandwidth), the
  BANDWIDTH_INTERVAL of update_dirty_limit is not waited for, one pass of the loop.
* The flusher (``wb_writeback`` for one work item): ``queue_io`` splices ``b_more_io`` and
  moves inodes dirtied before the cutoff (now for background/sync, ``now -
  dirty_expire_interval`` for periodic) from ``b_dirty`` to ``b_io``; each inode writes up
  to ``writeback_chunk_size`` (so background writeback overshoots bg_thresh by up to a
  chunk, as the kernel does) and ``requeue_inode`` puts it on b_more_io / b_dirty / nowhere; ``writeback_sb_inodes`` -> ``do_writepages`` -> ``writeback_iter``
  over PAGECACHE_TAG_DIRTY (PAGECACHE_TAG_TOWRITE after ``tag_pages_for_writeback`` for
  WB_REASON_SYNC): ``folio_clear_dirty_for_io`` then ``__folio_start_writeback``
  (PG_writeback, TAG_WRITEBACK set, TAG_DIRTY/TOWRITE cleared, NR_WRITEBACK, WB_WRITEBACK,
  ``s_inodes_wb``), and ``folio_end_writeback`` when the "I/O" completes (NR_WRITTEN,
  WB_WRITTEN, marks cleared) -- ``complete`` lets a caller leave folios under writeback for a
  snapshot.  ``requeue_inode``: clean inodes leave the io lists.  The fprop completion
  fractions and bandwidth updates are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import config as kc
from mmintro.kernel import page_alloc as pa
from mmintro.kernel import slub, swap
from mmintro.kernel.timekeeping import jiffies, tick
from mmintro.kernel.xarray import PAGECACHE_TAG_DIRTY, PAGECACHE_TAG_TOWRITE, PAGECACHE_TAG_WRITEBACK

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "DirtyThrottle",
    "balance_dirty_pages",
    "balance_dirty_pages_ratelimited",
    "bdi_register_disk",
    "domain_dirty_limits",
    "folio_clear_dirty_for_io",
    "folio_end_writeback",
    "folio_mark_dirty",
    "folio_start_writeback",
    "global_dirty_limits",
    "global_dirtyable_memory",
    "jiffies",
    "tick",
    "wb_workfn",
    "wb_writeback",
]

HZ = kc.HZ
# include/linux/backing-dev-defs.h / backing-dev.h (#defines)
BDI_CAP_WRITEBACK = 1 << 0
BDI_CAP_WRITEBACK_ACCT = 1 << 1
BDI_CAP_STRICTLIMIT = 1 << 2
BDI_RATIO_SCALE = 10000
FPROP_FRAC_BASE = 1 << 10  # include/linux/flex_proportions.h FPROP_FRAC_SHIFT 10
VM_READAHEAD_PAGES = (128 * 1024) // PAGE_SIZE  # include/linux/mm.h SZ_128K / PAGE_SIZE
INIT_BW = 100 << (20 - PAGE_SHIFT)  # mm/backing-dev.c: 100 MB/s in pages
RATELIMIT_CALC_SHIFT = 10  # mm/page-writeback.c
BANDWIDTH_INTERVAL = max(HZ // 5, 1)
DIRTY_POLL_THRESH = 128 >> (PAGE_SHIFT - 10)
MAX_PAUSE = max(HZ // 5, 1)  # mm/page-writeback.c: 200 ms
DIRTY_WRITEBACK_CENTISECS = 5 * 100  # mm/page-writeback.c defaults
DIRTY_EXPIRE_CENTISECS = 30 * 100
UINT_MAX = 0xFFFFFFFF

_T = swap._T
WB_RECLAIMABLE = _T.const("WB_RECLAIMABLE")
WB_WRITEBACK = _T.const("WB_WRITEBACK")
WB_DIRTIED = _T.const("WB_DIRTIED")
WB_WRITTEN = _T.const("WB_WRITTEN")
WB_registered = _T.const("WB_registered")
WB_writeback_running = _T.const("WB_writeback_running")
WB_has_dirty_io = _T.const("WB_has_dirty_io")
WB_start_all = _T.const("WB_start_all")
I_DIRTY_SYNC = _T.const("I_DIRTY_SYNC")
I_DIRTY_DATASYNC = _T.const("I_DIRTY_DATASYNC")
I_DIRTY_PAGES = _T.const("I_DIRTY_PAGES")
I_DIRTY_INODE = I_DIRTY_SYNC | I_DIRTY_DATASYNC
I_DIRTY = I_DIRTY_INODE | I_DIRTY_PAGES
WB_REASONS = {n[len("WB_REASON_") :].lower(): v for n, v in _T.enum("wb_reason").items() if n != "WB_REASON_MAX"}
PCPU_COUNTER_SIZE = 4  # s32 per CPU


@dataclass
class DirtyThrottle:
    """One balance_dirty_pages() decision above the freerun ceiling (what the
    ``balance_dirty_pages`` tracepoint reports)."""

    pid: int
    comm: str
    jiffies: int
    nr_dirty: int  # NR_FILE_DIRTY + NR_WRITEBACK (dtc->dirty)
    thresh: int
    bg_thresh: int
    limit: int  # hard_dirty_limit
    setpoint: int
    pos_ratio: int  # << RATELIMIT_CALC_SHIFT
    task_ratelimit: int  # pages per second
    pages_dirtied: int
    period: int  # jiffies
    pause: int  # jiffies (period capped by wb_max_pause)


@dataclass
class _TaskDirty:
    nr_dirtied: int = 0
    nr_dirtied_pause: int = 128 >> (PAGE_SHIFT - 10)  # kernel/fork.c dup_task_struct
    dirty_paused_when: int = 0


# -- the disk's backing_dev_info ----------------------------------------------------------------
def _write_int_global(k: Kernel, name: str, value: int) -> None:
    if name not in k.image.symbols:
        k.image.var(name, "data")
    k.write_int(name, value)


def page_writeback_init(k: Kernel) -> None:
    """mm/page-writeback.c page_writeback_init() and the sysctl defaults: dirty_ratio and
    dirty_background_ratio (already written at boot), the writeback/expire intervals in
    centiseconds, global_wb_domain (wb_domain_init) and writeback_set_ratelimit()."""
    if k.__dict__.get("wb_inited"):
        return
    k.wb_inited = True
    _write_int_global(k, "dirty_writeback_interval", DIRTY_WRITEBACK_CENTISECS)
    _write_int_global(k, "dirty_expire_interval", DIRTY_EXPIRE_CENTISECS)
    if "global_wb_domain" not in k.image.symbols:
        k.image.var("global_wb_domain", "data")
    dom = k.sym("global_wb_domain")
    k.kmem.write_bytes(dom, bytes(k.T.sizeof("struct wb_domain")))
    k.kmem.set(dom, "wb_domain", "dirty_limit_tstamp", jiffies(k))
    c = k.kmem.addr(dom, "wb_domain", "completions.events")  # fprop_global_init
    k.kmem.init_list_head(k.kmem.addr(c, "percpu_counter", "list"))
    k.kmem.set(c, "percpu_counter", "counters", k.alloc_percpu(PCPU_COUNTER_SIZE, 4))
    k.kmem.set(dom, "wb_domain", "completions.period", 0)
    k.dirty_throttle_log = k.__dict__.get("dirty_throttle_log", [])
    k.flusher_wakeups = k.__dict__.get("flusher_wakeups", [])
    k.bdp_ratelimits = [0] * k.config.cpus
    k.task_dirty = {}
    writeback_set_ratelimit(k)
    k.sync_hooks.append(_write_task_dirty)


def writeback_set_ratelimit(k: Kernel) -> None:
    """mm/page-writeback.c writeback_set_ratelimit()."""
    _bg, thresh = global_dirty_limits(k)
    k.kmem.set(k.sym("global_wb_domain"), "wb_domain", "dirty_limit", thresh)
    k.ratelimit_pages = max(thresh // (k.config.cpus * 32), 16)


def bdi_register_disk(k: Kernel, name: str) -> int:
    """A disk's backing_dev_info (bdi_alloc/bdi_init/bdi_register), on bdi_list."""
    from mmintro.kernel.inode import _ensure_global

    page_writeback_init(k)
    km, T = k.kmem, k.T
    bdi = slub.kzalloc(k, T.sizeof("struct backing_dev_info"), "GFP_KERNEL", caller="bdi_alloc")
    ids = k.__dict__.setdefault("bdi_ids", [1])
    km.set(bdi, "backing_dev_info", "id", ids[0])
    ids[0] += 1
    km.set(bdi, "backing_dev_info", "ra_pages", VM_READAHEAD_PAGES)
    km.set(bdi, "backing_dev_info", "io_pages", VM_READAHEAD_PAGES)
    km.set(bdi, "backing_dev_info", "refcnt.refcount.refs.counter", 1)
    km.set(bdi, "backing_dev_info", "capabilities", BDI_CAP_WRITEBACK | BDI_CAP_WRITEBACK_ACCT)
    km.set(bdi, "backing_dev_info", "min_ratio", 0)
    km.set(bdi, "backing_dev_info", "max_ratio", 100 * BDI_RATIO_SCALE)
    km.set(bdi, "backing_dev_info", "max_prop_frac", FPROP_FRAC_BASE)
    km.set(bdi, "backing_dev_info", "tot_write_bandwidth.counter", 0)
    km.write_bytes(km.addr(bdi, "backing_dev_info", "dev_name"), name.encode() + b"\0")
    km.init_list_head(km.addr(bdi, "backing_dev_info", "wb_list"))
    km.init_list_head(km.addr(bdi, "backing_dev_info", "wb_waitq.head"))
    # wb_init(&bdi->wb, bdi): lists, bandwidths, the stat counters
    wb = km.addr(bdi, "backing_dev_info", "wb")
    km.set(wb, "bdi_writeback", "bdi", bdi)
    km.set(wb, "bdi_writeback", "last_old_flush", jiffies(k))
    for p in ("b_dirty", "b_io", "b_more_io", "b_dirty_time", "work_list", "b_attached"):
        km.init_list_head(km.addr(wb, "bdi_writeback", p))
    km.set(wb, "bdi_writeback", "bw_time_stamp", jiffies(k))
    for p in ("write_bandwidth", "avg_write_bandwidth", "dirty_ratelimit", "balanced_dirty_ratelimit"):
        km.set(wb, "bdi_writeback", p, INIT_BW)
    for i in range(T.const("NR_WB_STAT_ITEMS")):
        c = km.addr(wb, "bdi_writeback", f"stat[{i}]")
        km.init_list_head(km.addr(c, "percpu_counter", "list"))
        km.set(c, "percpu_counter", "counters", k.alloc_percpu(PCPU_COUNTER_SIZE, 4))
    c = km.addr(wb, "bdi_writeback", "completions.events")  # fprop_local_init_percpu
    km.init_list_head(km.addr(c, "percpu_counter", "list"))
    km.set(c, "percpu_counter", "counters", k.alloc_percpu(PCPU_COUNTER_SIZE, 4))
    km.set(wb, "bdi_writeback", "state", 1 << WB_registered)  # bdi_register: WB_registered
    k.kmem.list_add_tail(km.addr(wb, "bdi_writeback", "bdi_node"), km.addr(bdi, "backing_dev_info", "wb_list"))
    k.kmem.list_add_tail(km.addr(bdi, "backing_dev_info", "bdi_list"), _ensure_global(k, "bdi_list"))
    return bdi


def _wb_stat_mod(k: Kernel, wb: int, item: int, nr: int) -> None:
    """wb_stat_mod(): the percpu_counter, held folded in ``count``."""
    c = k.kmem.addr(wb, "bdi_writeback", f"stat[{item}]")
    k.kmem.set(c, "percpu_counter", "count", k.kmem.get(c, "percpu_counter", "count") + nr)


def wb_stat(k: Kernel, wb: int, item: int) -> int:
    return k.kmem.get(k.kmem.addr(wb, "bdi_writeback", f"stat[{item}]"), "percpu_counter", "count")


def _inode_bdi(k: Kernel, inode: int) -> int:
    return k.kmem.get(k.kmem.get(inode, "inode", "i_sb"), "super_block", "s_bdi")


def inode_to_wb(k: Kernel, inode: int) -> int:
    """inode_attach_wb() + inode_to_wb(): the bdi's root wb (no cgroup writeback)."""
    wb = k.kmem.get(inode, "inode", "i_wb")
    if not wb:
        wb = k.kmem.addr(_inode_bdi(k, inode), "backing_dev_info", "wb")
        k.kmem.set(inode, "inode", "i_wb", wb)
    return wb


def current_task(k: Kernel) -> int:
    """The task_struct the simulated code runs for: ``k.current_task`` when a workload set it
    (filemap_read/filemap_write take ``task=``), else 0 (a kernel thread / the idle task)."""
    return k.__dict__.get("current_task") or 0


def task_pid_comm(k: Kernel, task: int) -> tuple[int, str]:
    if not task:
        return k.current_pid(), k.current_comm()
    comm = k.mem.read(k.pa(k.kmem.addr(task, "task_struct", "comm")), 16).split(b"\0")[0].decode()
    return k.kmem.get(task, "task_struct", "pid"), comm


def _write_task_dirty(k: Kernel) -> None:
    """The tasks' dirty-throttling state into their task_structs (nr_dirtied,
    nr_dirtied_pause, dirty_paused_when)."""
    for task, t in k.__dict__.get("task_dirty", {}).items():
        if task:
            k.kmem.set(task, "task_struct", "nr_dirtied", t.nr_dirtied)
            k.kmem.set(task, "task_struct", "nr_dirtied_pause", t.nr_dirtied_pause)
            k.kmem.set(task, "task_struct", "dirty_paused_when", t.dirty_paused_when)


def _task(k: Kernel) -> _TaskDirty:
    page_writeback_init(k)
    return k.task_dirty.setdefault(current_task(k), _TaskDirty())


def _node_stat(k: Kernel, pfn: int, item: str, nr: int) -> None:
    k.mod_node_page_state(swap.folio_nid(k, pfn), item, nr)


def _zone_stat(k: Kernel, pfn: int, item: str, nr: int) -> None:
    k.mod_zone_page_state(pa.page_zone(k, pfn), item, nr)


# -- dirtying -------------------------------------------------------------------------------------
def folio_account_dirtied(k: Kernel, pfn: int, mapping: int) -> None:
    """mm/page-writeback.c folio_account_dirtied()."""
    inode = k.kmem.get(mapping, "address_space", "host")
    nr = swap.folio_nr_pages(k, pfn)
    wb = inode_to_wb(k, inode)
    _node_stat(k, pfn, "NR_FILE_DIRTY", nr)
    _zone_stat(k, pfn, "NR_ZONE_WRITE_PENDING", nr)
    _node_stat(k, pfn, "NR_DIRTIED", nr)
    _wb_stat_mod(k, wb, WB_RECLAIMABLE, nr)
    _wb_stat_mod(k, wb, WB_DIRTIED, nr)
    _task(k).nr_dirtied += nr
    task = current_task(k)
    if task:  # task_io_account_write()
        k.kmem.set(
            task,
            "task_struct",
            "ioac.write_bytes",
            k.kmem.get(task, "task_struct", "ioac.write_bytes") + nr * PAGE_SIZE,
        )
    k.bdp_ratelimits[k.current_cpu] += nr


def __mark_inode_dirty(k: Kernel, inode: int, flags: int) -> None:
    """fs/fs-writeback.c __mark_inode_dirty() for I_DIRTY_PAGES: a newly dirty inode gets
    dirtied_when and moves to the head of wb->b_dirty (inode_io_list_move_locked;
    wb_io_lists_populated sets WB_has_dirty_io and adds the wb's bandwidth to the bdi's)."""
    km = k.kmem
    state = km.get(inode, "inode", "i_state")
    if state & flags == flags:
        return
    wb = inode_to_wb(k, inode)
    was_dirty = state & I_DIRTY
    km.set(inode, "inode", "i_state", state | flags)
    if not was_dirty:
        km.set(inode, "inode", "dirtied_when", jiffies(k))
        io = km.addr(inode, "inode", "i_io_list")
        k.kmem.list_del_init(io)
        k.kmem.list_add(io, km.addr(wb, "bdi_writeback", "b_dirty"))
        st = km.get(wb, "bdi_writeback", "state")
        if not st & (1 << WB_has_dirty_io):
            km.set(wb, "bdi_writeback", "state", st | 1 << WB_has_dirty_io)
            bdi = km.get(wb, "bdi_writeback", "bdi")
            km.set(
                bdi,
                "backing_dev_info",
                "tot_write_bandwidth.counter",
                km.get(bdi, "backing_dev_info", "tot_write_bandwidth.counter")
                + km.get(wb, "bdi_writeback", "avg_write_bandwidth"),
            )
            _wb_wakeup(k, "wb_wakeup_delayed")


def folio_mark_dirty(k: Kernel, pfn: int) -> bool:
    """mm/page-writeback.c folio_mark_dirty() -> filemap_dirty_folio() (PG_reclaim, which is
    also PG_readahead, cleared first); an anonymous folio just gets PG_dirty
    (noop_dirty_folio).  False when the folio was already dirty."""
    from mmintro.kernel.inode import mapping_xa, vfs_root

    mapping = k.kmem.get(k.pfn_to_page(pfn), "page", "mapping")
    # folio_mapping() NULL (anon, no swap cache), or a mapping of another filesystem
    # (hugetlbfs: noop_dirty_folio, no writeback): only PG_dirty
    if not mapping or mapping & 1 or k.kmem.get(mapping, "address_space", "host") not in vfs_root(k).inodes:
        if swap.folio_test(k, pfn, swap.PG_dirty):
            return False
        swap.folio_set_flag(k, pfn, swap.PG_dirty)
        return True
    swap.folio_clear_flag(k, pfn, swap.PG_reclaim)  # PG_reclaim/PG_readahead reset on redirty
    if swap.folio_test(k, pfn, swap.PG_dirty):
        return False
    swap.folio_set_flag(k, pfn, swap.PG_dirty)
    folio_account_dirtied(k, pfn, mapping)
    index = k.kmem.get(k.pfn_to_page(pfn), "page", "__folio_index")
    mapping_xa(k, mapping).xa_set_mark(index, PAGECACHE_TAG_DIRTY)
    __mark_inode_dirty(k, k.kmem.get(mapping, "address_space", "host"), I_DIRTY_PAGES)
    return True


# -- limits ---------------------------------------------------------------------------------------
def _global_node(k: Kernel, item: str) -> int:
    return sum(d.get(item, 0) for d in k.node_vm_stat)


def global_dirtyable_memory(k: Kernel) -> int:
    """mm/page-writeback.c global_dirtyable_memory() (no highmem on x86-64)."""
    x = sum(z.free_pages for zs in k.zones for z in zs)  # global_zone_page_state(NR_FREE_PAGES)
    x -= min(x, k.totalreserve_pages)
    x += _global_node(k, "NR_INACTIVE_FILE")
    x += _global_node(k, "NR_ACTIVE_FILE")
    return x + 1


def _read_global(k: Kernel, name: str) -> int:
    s = k.image.symbols[name]
    size = s.type.resolved().size if s.type else 8
    v = int.from_bytes(k.mem.read(k.pa(s.address), size), "little")
    if name in ("vm_dirty_ratio", "dirty_background_ratio") and v >> (8 * size - 1):
        v -= 1 << (8 * size)
    return v


def domain_dirty_limits(k: Kernel, avail: int) -> tuple[int, int]:
    """mm/page-writeback.c domain_dirty_limits() for the global domain and a normal (not
    rt/dl) task: (thresh, bg_thresh)."""
    page_writeback_init(k)
    nbytes = _read_global(k, "vm_dirty_bytes")
    bg_bytes = _read_global(k, "dirty_background_bytes")
    ratio = (_read_global(k, "vm_dirty_ratio") * PAGE_SIZE) // 100
    bg_ratio = (_read_global(k, "dirty_background_ratio") * PAGE_SIZE) // 100
    thresh = -(-nbytes // PAGE_SIZE) if nbytes else (ratio * avail) // PAGE_SIZE
    bg_thresh = -(-bg_bytes // PAGE_SIZE) if bg_bytes else (bg_ratio * avail) // PAGE_SIZE
    thresh = min(thresh, UINT_MAX)
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    return thresh, bg_thresh


def global_dirty_limits(k: Kernel) -> tuple[int, int]:
    """global_dirty_limits(&background, &dirty): returns (background, dirty) in pages."""
    thresh, bg = domain_dirty_limits(k, global_dirtyable_memory(k))
    return bg, thresh


def dirty_freerun_ceiling(thresh: int, bg_thresh: int) -> int:
    return (thresh + bg_thresh) // 2


def dirty_poll_interval(dirty: int, thresh: int) -> int:
    if thresh > dirty:
        return 1 << ((thresh - dirty).bit_length() - 1 >> 1)
    return 1


def update_dirty_limit(k: Kernel, thresh: int, dirty: int) -> None:
    """mm/page-writeback.c update_dirty_limit(): follow a rising thresh at once, decay
    towards a falling one (or the dirty count) by 1/32 of the gap."""
    dom = k.sym("global_wb_domain")
    limit = k.kmem.get(dom, "wb_domain", "dirty_limit")
    if limit < thresh:
        limit = thresh
    else:
        thresh = max(thresh, dirty)
        if limit <= thresh:
            return
        limit -= (limit - thresh) >> 5
    k.kmem.set(dom, "wb_domain", "dirty_limit", limit)


def wb_update_bandwidth_stamps(k: Kernel, wb: int, thresh: int, dirty: int) -> None:
    """The part of __wb_update_bandwidth() that runs when BANDWIDTH_INTERVAL passed since
    wb->bw_time_stamp: domain_update_dirty_limit() (itself once per interval) and the new
    stamps.  The bandwidth and dirty-ratelimit estimates are not modelled (INIT_BW)."""
    km = k.kmem
    now = jiffies(k)
    if not _time_before(km.get(wb, "bdi_writeback", "bw_time_stamp") + BANDWIDTH_INTERVAL, now):
        return
    dom = k.sym("global_wb_domain")
    if not _time_before(now, km.get(dom, "wb_domain", "dirty_limit_tstamp") + BANDWIDTH_INTERVAL):
        update_dirty_limit(k, thresh, dirty)
        km.set(dom, "wb_domain", "dirty_limit_tstamp", now)
    km.set(wb, "bdi_writeback", "dirtied_stamp", wb_stat(k, wb, WB_DIRTIED))
    km.set(wb, "bdi_writeback", "written_stamp", wb_stat(k, wb, WB_WRITTEN))
    km.set(wb, "bdi_writeback", "bw_time_stamp", now)


def hard_dirty_limit(k: Kernel, thresh: int) -> int:
    return max(thresh, k.kmem.get(k.sym("global_wb_domain"), "wb_domain", "dirty_limit"))


def fprop_fraction(k: Kernel, wb: int) -> tuple[int, int]:
    """lib/flex_proportions.c fprop_fraction_percpu() of wb->completions in
    global_wb_domain.completions (period decay aside: with one wb both decay alike)."""
    num = k.kmem.get(k.kmem.addr(wb, "bdi_writeback", "completions.events"), "percpu_counter", "count")
    den = k.kmem.get(
        k.kmem.addr(k.sym("global_wb_domain"), "wb_domain", "completions.events"), "percpu_counter", "count"
    )
    if den <= num:
        den = num if num else 1
    return num, den


def wb_calc_thresh(k: Kernel, wb: int, thresh: int) -> int:
    """mm/page-writeback.c __wb_calc_thresh(): the wb's share of ``thresh`` by its fraction of
    the domain's writeback completions (0 for a disk that never completed any), bounded by
    the bdi's min/max ratio (bdi_min_ratio = 0)."""
    num, den = fprop_fraction(k, wb)
    wb_thresh = thresh * (100 * BDI_RATIO_SCALE) // (100 * BDI_RATIO_SCALE)
    wb_thresh = wb_thresh * num // den
    bdi = k.kmem.get(wb, "bdi_writeback", "bdi")
    wb_thresh += thresh * k.kmem.get(bdi, "backing_dev_info", "min_ratio") // (100 * BDI_RATIO_SCALE)
    cap = thresh * k.kmem.get(bdi, "backing_dev_info", "max_ratio") // (100 * BDI_RATIO_SCALE)
    return min(wb_thresh, cap)


def pos_ratio_polynom(setpoint: int, dirty: int, limit: int) -> int:
    """mm/page-writeback.c pos_ratio_polynom(): 1 + ((setpoint - dirty)/(limit - setpoint))^3."""
    num = (setpoint - dirty) << RATELIMIT_CALC_SHIFT
    den = (limit - setpoint) | 1
    x = abs(num) // den * (1 if num >= 0 else -1)  # div64_s64 truncates towards zero
    pos = x
    pos = pos * x >> RATELIMIT_CALC_SHIFT
    pos = pos * x >> RATELIMIT_CALC_SHIFT
    pos += 1 << RATELIMIT_CALC_SHIFT
    return min(max(pos, 0), 2 << RATELIMIT_CALC_SHIFT)


def wb_position_ratio(
    thresh: int, bg_thresh: int, dirty: int, limit: int, wb_thresh: int, wb_dirty: int, write_bw: int
) -> tuple[int, int]:
    """mm/page-writeback.c wb_position_ratio() (no strictlimit): (pos_ratio, setpoint)."""
    freerun = dirty_freerun_ceiling(thresh, bg_thresh)
    if dirty >= limit:
        return 0, (freerun + limit) // 2
    setpoint = (freerun + limit) // 2
    pos_ratio = pos_ratio_polynom(setpoint, dirty, limit)
    wb_thresh = min(wb_thresh, thresh)
    wb_thresh = max(wb_thresh, (limit - dirty) // 8)
    x = (wb_thresh << 16) // (thresh | 1)
    wb_setpoint = setpoint * x >> 16
    span = (thresh - wb_thresh + 8 * write_bw) * x >> 16
    x_intercept = wb_setpoint + span
    if wb_dirty < x_intercept - span // 4:
        pos_ratio = pos_ratio * (x_intercept - wb_dirty) // ((x_intercept - wb_setpoint) | 1)
    else:
        pos_ratio //= 4
    x_intercept = wb_thresh // 2
    if wb_dirty < x_intercept:
        if wb_dirty > x_intercept // 8:
            pos_ratio = pos_ratio * x_intercept // wb_dirty
        else:
            pos_ratio *= 8
    return pos_ratio, setpoint


def wb_max_pause(wb_dirty: int, bw: int) -> int:
    """mm/page-writeback.c wb_max_pause()."""
    t = wb_dirty // (1 + bw // (1 << (HZ // 8).bit_length()))  # roundup_pow_of_two(1 + HZ/8)
    return min(t + 1, MAX_PAUSE)


def writeback_in_progress(k: Kernel, wb: int) -> bool:
    return bool(k.kmem.get(wb, "bdi_writeback", "state") >> WB_writeback_running & 1)


def wb_start_background_writeback(k: Kernel, wb: int) -> None:
    """wb_start_background_writeback() -> wb_wakeup(): the flusher is due (recorded; a
    workload runs it with :func:`wb_workfn`).  Like mod_delayed_work on an already queued
    dwork, a wakeup while one is pending adds nothing."""
    _wb_wakeup(k, "background")


def _wb_wakeup(k: Kernel, why: str) -> None:
    if not k.__dict__.get("flusher_pending"):
        k.flusher_pending = True
        k.flusher_wakeups.append((jiffies(k), why))


def balance_dirty_pages(k: Kernel, wb: int, pages_dirtied: int) -> DirtyThrottle | None:
    """One pass of mm/page-writeback.c balance_dirty_pages() for the global domain."""
    km = k.kmem
    t = _task(k)
    now = jiffies(k)
    nr_dirty = _global_node(k, "NR_FILE_DIRTY")
    dirty = nr_dirty + _global_node(k, "NR_WRITEBACK")  # domain_dirty_avail(): dirty + writeback
    avail = global_dirtyable_memory(k)
    thresh, bg_thresh = domain_dirty_limits(k, avail)
    if nr_dirty > bg_thresh and not writeback_in_progress(k, wb):
        wb_start_background_writeback(k, wb)
    if dirty <= dirty_freerun_ceiling(thresh, bg_thresh):  # domain_dirty_freerun()
        t.dirty_paused_when = now
        t.nr_dirtied = 0
        t.nr_dirtied_pause = dirty_poll_interval(dirty, thresh)
        return None
    wb_thresh = wb_calc_thresh(k, wb, thresh)  # wb_dirty_limits()
    wb_dirty = wb_stat(k, wb, WB_RECLAIMABLE) + wb_stat(k, wb, WB_WRITEBACK)
    wb_update_bandwidth_stamps(k, wb, thresh, dirty)
    limit = hard_dirty_limit(k, thresh)
    write_bw = km.get(wb, "bdi_writeback", "avg_write_bandwidth")
    pos_ratio, setpoint = wb_position_ratio(thresh, bg_thresh, dirty, limit, wb_thresh, wb_dirty, write_bw)
    dirty_ratelimit = km.get(wb, "bdi_writeback", "dirty_ratelimit")
    task_ratelimit = dirty_ratelimit * pos_ratio >> RATELIMIT_CALC_SHIFT
    max_pause = wb_max_pause(wb_dirty, write_bw)
    min_pause, nr_dirtied_pause = wb_min_pause(max_pause, task_ratelimit, dirty_ratelimit, write_bw)
    # wb->dirty_exceeded: (wb_dirty > wb_thresh) && (dirty > thresh)
    km.set(wb, "bdi_writeback", "dirty_exceeded", 1 if wb_dirty > wb_thresh and dirty > thresh else 0)

    def record(period: int, pause: int) -> DirtyThrottle:  # trace_balance_dirty_pages
        ev = DirtyThrottle(
            *task_pid_comm(k, current_task(k)),
            now,
            dirty,
            thresh,
            bg_thresh,
            limit,
            setpoint,
            pos_ratio,
            task_ratelimit,
            pages_dirtied,
            period,
            pause,
        )
        k.dirty_throttle_log.append(ev)
        return ev

    if task_ratelimit == 0:
        period = pause = max_pause
    else:
        period = HZ * pages_dirtied // task_ratelimit
        pause = period
        if t.dirty_paused_when:
            pause -= now - t.dirty_paused_when
        if pause < min_pause:  # no sleep: credit the time, or batch more pages
            ev = record(period, min(pause, 0))
            if pause < -HZ:
                t.dirty_paused_when = now
                t.nr_dirtied = 0
            elif period:
                t.dirty_paused_when += period
                t.nr_dirtied = 0
            elif t.nr_dirtied_pause <= pages_dirtied:
                t.nr_dirtied_pause += pages_dirtied
            return ev
        if pause > max_pause:
            now += min(pause - max_pause, max_pause)
            pause = max_pause
    ev = record(period, pause)
    bdi = km.get(wb, "bdi_writeback", "bdi")
    km.set(bdi, "backing_dev_info", "last_bdp_sleep", jiffies(k))
    tick(k, pause / HZ)  # io_schedule_timeout(pause): the writer sleeps, time passes
    t.dirty_paused_when = now + pause
    t.nr_dirtied = 0
    t.nr_dirtied_pause = nr_dirtied_pause
    return ev


def wb_min_pause(max_pause: int, task_ratelimit: int, dirty_ratelimit: int, write_bw: int) -> tuple[int, int]:
    """mm/page-writeback.c wb_min_pause(): (min_pause, nr_dirtied_pause)."""
    hi = write_bw.bit_length() - 1  # ilog2
    lo = dirty_ratelimit.bit_length() - 1
    t = max(1, HZ // 100)
    if hi > lo:
        t += (hi - lo) * (10 * HZ) // 1024
    t = min(t, 1 + max_pause // 2)
    hz_pow2 = 1 << (HZ - 1).bit_length()  # roundup_pow_of_two(HZ)
    pages = dirty_ratelimit * t // hz_pow2
    if pages < DIRTY_POLL_THRESH:
        t = max_pause
        pages = dirty_ratelimit * t // hz_pow2
        if pages > DIRTY_POLL_THRESH:
            pages = DIRTY_POLL_THRESH
            t = HZ * DIRTY_POLL_THRESH // dirty_ratelimit
    pause = HZ * pages // (task_ratelimit + 1)
    if pause > max_pause:
        t = max_pause
        pages = task_ratelimit * t // hz_pow2
    return (1 + t // 2 if pages >= DIRTY_POLL_THRESH else t), pages


def balance_dirty_pages_ratelimited(k: Kernel, mapping: int) -> DirtyThrottle | None:
    """mm/page-writeback.c balance_dirty_pages_ratelimited_flags(): call balance_dirty_pages
    when the task dirtied nr_dirtied_pause pages or this CPU's bdp_ratelimits passed
    ratelimit_pages."""
    km = k.kmem
    inode = km.get(mapping, "address_space", "host")
    bdi = _inode_bdi(k, inode)
    if not bdi or not km.get(bdi, "backing_dev_info", "capabilities") & BDI_CAP_WRITEBACK:
        return None
    wb = inode_to_wb(k, inode)
    t = _task(k)
    ratelimit = t.nr_dirtied_pause
    if km.get(wb, "bdi_writeback", "dirty_exceeded"):
        ratelimit = min(ratelimit, 32 >> (PAGE_SHIFT - 10))
    cpu = k.current_cpu
    if t.nr_dirtied >= ratelimit:
        k.bdp_ratelimits[cpu] = 0
    elif k.bdp_ratelimits[cpu] >= k.ratelimit_pages:
        k.bdp_ratelimits[cpu] = 0
        ratelimit = 0
    if t.nr_dirtied >= ratelimit:
        return balance_dirty_pages(k, wb, t.nr_dirtied)
    return None


# -- writeback ------------------------------------------------------------------------------------
def folio_clear_dirty_for_io(k: Kernel, pfn: int, wb: int) -> bool:
    """mm/page-writeback.c folio_clear_dirty_for_io() for a mapping that can write back:
    folio_mkclean (rmap: the shared mappings' PTEs write-protected and cleaned, so the next
    write faults and dirties the folio again) and folio_mark_dirty when it cleaned any, then
    folio_test_clear_dirty with NR_FILE_DIRTY, NR_ZONE_WRITE_PENDING and WB_RECLAIMABLE."""
    from mmintro.kernel import rmap

    if rmap.folio_mkclean(k, pfn):
        folio_mark_dirty(k, pfn)
    if not swap.folio_clear_flag(k, pfn, swap.PG_dirty):
        return False
    nr = swap.folio_nr_pages(k, pfn)
    _node_stat(k, pfn, "NR_FILE_DIRTY", -nr)
    _zone_stat(k, pfn, "NR_ZONE_WRITE_PENDING", -nr)
    _wb_stat_mod(k, wb, WB_RECLAIMABLE, -nr)
    return True


def _folio_index(k: Kernel, pfn: int) -> int:
    return k.kmem.get(k.pfn_to_page(pfn), "page", "__folio_index")


def folio_start_writeback(k: Kernel, pfn: int, mapping: int, wb: int, keep_write: bool = False) -> None:
    """mm/page-writeback.c __folio_start_writeback()."""
    from mmintro.kernel.inode import mapping_xa

    km = k.kmem
    xa = mapping_xa(k, mapping)
    idx = _folio_index(k, pfn)
    nr = swap.folio_nr_pages(k, pfn)
    inode = km.get(mapping, "address_space", "host")
    swap.folio_set_flag(k, pfn, swap.PG_writeback)
    on_wblist = xa.xa_marked(PAGECACHE_TAG_WRITEBACK)
    xa.xa_set_mark(idx, PAGECACHE_TAG_WRITEBACK)
    _wb_stat_mod(k, wb, WB_WRITEBACK, nr)
    if not on_wblist:
        km.set(
            wb, "bdi_writeback", "writeback_inodes.counter", km.get(wb, "bdi_writeback", "writeback_inodes.counter") + 1
        )
        wbl = km.addr(inode, "inode", "i_wb_list")
        if k.kmem.list_empty(wbl):  # sb_mark_inode_writeback()
            k.kmem.list_add_tail(wbl, km.addr(km.get(inode, "inode", "i_sb"), "super_block", "s_inodes_wb"))
    if not swap.folio_test(k, pfn, swap.PG_dirty):
        xa.xa_clear_mark(idx, PAGECACHE_TAG_DIRTY)
    if not keep_write:
        xa.xa_clear_mark(idx, PAGECACHE_TAG_TOWRITE)
    _node_stat(k, pfn, "NR_WRITEBACK", nr)
    _zone_stat(k, pfn, "NR_ZONE_WRITE_PENDING", nr)
    k.vm_events[k.current_cpu][_T.const("PGPGOUT")] += nr << (PAGE_SHIFT - 9)  # submit_bio: sectors


def folio_end_writeback(k: Kernel, pfn: int) -> None:
    """mm/filemap.c folio_end_writeback() -> __folio_end_writeback()."""
    from mmintro.kernel.inode import mapping_xa

    km = k.kmem
    if not swap.folio_test(k, pfn, swap.PG_writeback):
        raise ValueError(f"folio_end_writeback: pfn {pfn:#x} is not under writeback")
    mapping = km.get(k.pfn_to_page(pfn), "page", "mapping")
    inode = km.get(mapping, "address_space", "host")
    wb = inode_to_wb(k, inode)
    xa = mapping_xa(k, mapping)
    nr = swap.folio_nr_pages(k, pfn)
    swap.folio_clear_flag(k, pfn, swap.PG_writeback)
    xa.xa_clear_mark(_folio_index(k, pfn), PAGECACHE_TAG_WRITEBACK)
    _wb_stat_mod(k, wb, WB_WRITEBACK, -nr)
    _wb_stat_mod(k, wb, WB_WRITTEN, nr)  # __wb_writeout_add(): WB_WRITTEN, then the completions
    for c in (
        km.addr(wb, "bdi_writeback", "completions.events"),
        km.addr(k.sym("global_wb_domain"), "wb_domain", "completions.events"),
    ):
        km.set(c, "percpu_counter", "count", km.get(c, "percpu_counter", "count") + nr)
    if not xa.xa_marked(PAGECACHE_TAG_WRITEBACK):
        km.set(
            wb, "bdi_writeback", "writeback_inodes.counter", km.get(wb, "bdi_writeback", "writeback_inodes.counter") - 1
        )
        wbl = km.addr(inode, "inode", "i_wb_list")
        if not k.kmem.list_empty(wbl):  # sb_clear_inode_writeback()
            k.kmem.list_del_init(wbl)
    _node_stat(k, pfn, "NR_WRITEBACK", -nr)
    _zone_stat(k, pfn, "NR_ZONE_WRITE_PENDING", -nr)
    _node_stat(k, pfn, "NR_WRITTEN", nr)
    k.__dict__.setdefault("under_writeback", set()).discard(pfn)


def wb_over_bg_thresh(k: Kernel, wb: int) -> bool:
    """mm/page-writeback.c wb_over_bg_thresh() for the global domain: NR_FILE_DIRTY above
    bg_thresh, or the wb's reclaimable pages above its share of it (wb_calc_thresh)."""
    bg, _thresh = global_dirty_limits(k)
    return _global_node(k, "NR_FILE_DIRTY") > bg or wb_stat(k, wb, WB_RECLAIMABLE) > wb_calc_thresh(k, wb, bg)


def _io_list(k: Kernel, wb: int, name: str) -> list[int]:
    """The inodes on wb->``name`` (head to tail)."""
    km = k.kmem
    head = km.addr(wb, "bdi_writeback", name)
    off = k.T.offsetof("inode", "i_io_list")
    out = []
    pos = km.get(head, "list_head", "next")
    while pos != head:
        out.append(pos - off)
        pos = km.get(pos, "list_head", "next")
    return out


def _time_before(a: int, b: int) -> bool:
    return ((a - b) & (1 << 63)) != 0


LONG_MAX = (1 << 63) - 1
MIN_WRITEBACK_PAGES = 4096 >> (PAGE_SHIFT - 10)  # fs/fs-writeback.c
DIRTY_SCOPE = 8  # mm/page-writeback.c / include/linux/writeback.h


def writeback_chunk_size(k: Kernel, wb: int, sync_all: bool, nr_pages: int) -> int:
    """fs/fs-writeback.c writeback_chunk_size(): the pages one inode may write per turn."""
    if sync_all:
        return LONG_MAX
    pages = min(
        k.kmem.get(wb, "bdi_writeback", "avg_write_bandwidth") // 2,
        k.kmem.get(k.sym("global_wb_domain"), "wb_domain", "dirty_limit") // DIRTY_SCOPE,
    )
    pages = min(pages, nr_pages)
    return (pages + MIN_WRITEBACK_PAGES) // MIN_WRITEBACK_PAGES * MIN_WRITEBACK_PAGES


def _move_to(k: Kernel, inode: int, wb: int, lst: str) -> None:
    io = k.kmem.addr(inode, "inode", "i_io_list")
    k.kmem.list_del_init(io)
    k.kmem.list_add(io, k.kmem.addr(wb, "bdi_writeback", lst))


def redirty_tail(k: Kernel, inode: int, wb: int) -> None:
    """fs/fs-writeback.c redirty_tail_locked(): back to b_dirty's head, dirtied_when no older
    than the newest dirty inode's."""
    dirty = _io_list(k, wb, "b_dirty")
    if dirty:
        tail = dirty[0]
        if _time_before(k.kmem.get(inode, "inode", "dirtied_when"), k.kmem.get(tail, "inode", "dirtied_when")):
            k.kmem.set(inode, "inode", "dirtied_when", jiffies(k))
    _move_to(k, inode, wb, "b_dirty")


def queue_io(k: Kernel, wb: int, dirtied_before: int) -> None:
    """fs/fs-writeback.c queue_io(): b_more_io spliced onto b_io, then move_expired_inodes
    from b_dirty's tail (oldest first) while dirtied_when is before the cutoff."""
    km = k.kmem
    for inode in reversed(_io_list(k, wb, "b_more_io")):
        _move_to(k, inode, wb, "b_io")
    for inode in reversed(_io_list(k, wb, "b_dirty")):
        if _time_before(dirtied_before, km.get(inode, "inode", "dirtied_when")):  # inode_dirtied_after
            break
        _move_to(k, inode, wb, "b_io")


def writeback_single_inode_pages(k: Kernel, inode: int, wb: int, tagged: bool, chunk: int) -> tuple[list[int], int]:
    """__writeback_single_inode() -> do_writepages() -> writeback_iter(): the folios started
    and the chunk left (wbc->nr_to_write)."""
    from mmintro.kernel.inode import mapping_xa

    km = k.kmem
    mapping = km.get(inode, "inode", "i_mapping")
    xa = mapping_xa(k, mapping)
    if tagged:  # tag_pages_for_writeback()
        for idx, _e in list(xa.xa_for_each(PAGECACHE_TAG_DIRTY)):
            xa.xa_set_mark(idx, PAGECACHE_TAG_TOWRITE)
    tag = PAGECACHE_TAG_TOWRITE if tagged else PAGECACHE_TAG_DIRTY
    start = 0 if tagged else km.get(mapping, "address_space", "writeback_index")  # range_cyclic
    entries = sorted(xa.xa_for_each(tag))
    entries = [e for e in entries if e[0] >= start] + [e for e in entries if e[0] < start]
    started = []
    last = start
    for idx, entry in entries:
        if chunk <= 0:
            break
        pfn = (entry - k.vmemmap_base) // k.struct_page_size
        if swap.folio_test(k, pfn, swap.PG_writeback) or not folio_clear_dirty_for_io(k, pfn, wb):
            continue
        folio_start_writeback(k, pfn, mapping, wb)
        started.append(pfn)
        nr = swap.folio_nr_pages(k, pfn)
        chunk -= nr
        last = idx + nr
    if not tagged:
        km.set(mapping, "address_space", "writeback_index", last)
    # the inode's dirty state: cleared, I_DIRTY_PAGES again while pages are tagged dirty
    state = km.get(inode, "inode", "i_state") & ~I_DIRTY
    if xa.xa_marked(PAGECACHE_TAG_DIRTY) and any(True for _ in xa.xa_for_each(PAGECACHE_TAG_DIRTY)):
        state |= I_DIRTY_PAGES
    km.set(inode, "inode", "i_state", state)
    return started, chunk


def _complete_io(k: Kernel, started: list[int], complete: bool | float) -> None:
    """End the writeback of ``started`` folios: all (True), none (False), or a seeded
    fraction; the others stay PG_writeback (I/O in flight at the snapshot)."""
    frac = 1.0 if complete is True else 0.0 if complete is False else float(complete)
    n_done = len(started) if frac >= 1 else round(len(started) * frac)
    if n_done >= len(started):
        done_set = set(started)
    elif n_done:
        done_set = {int(p) for p in k.rng.choice(started, size=n_done, replace=False)}
    else:
        done_set = set()
    for pfn in started:
        if pfn in done_set:
            folio_end_writeback(k, pfn)
        else:
            k.__dict__.setdefault("under_writeback", set()).add(pfn)


def wb_writeback(
    k: Kernel,
    reason: str = "background",
    nr_pages: int | None = None,
    complete: bool | float = True,
    wb: int | None = None,
) -> int:
    """fs/fs-writeback.c wb_writeback() for one work item on the disk's wb.  ``reason``:
    "background" (for_background: while wb_over_bg_thresh, every dirty inode), "periodic"
    (for_kupdate: inodes dirtied more than dirty_expire_interval ago), "sync"
    (sync_inodes_sb: WB_SYNC_ALL, tagged TOWRITE first, no chunk limit), or another
    WB_REASON_* name (WB_SYNC_NONE, inodes dirtied before now).  ``nr_pages``: the work's
    budget (LONG_MAX when None), checked between inodes as writeback_sb_inodes does; each
    inode writes up to writeback_chunk_size and is requeued on b_more_io when it used its
    chunk.  ``complete``: True ends every folio's writeback (the I/O completed), False leaves
    them all under writeback, a fraction f completes that share (seeded).  Returns the pages
    written."""
    from mmintro.kernel.inode import mapping_xa, vfs_root

    km = k.kmem
    if wb is None:
        wb = km.addr(vfs_root(k).bdi, "backing_dev_info", "wb")
    if reason not in WB_REASONS:
        raise ValueError(f"wb_writeback: unknown reason {reason!r} (one of {sorted(WB_REASONS)})")
    now = jiffies(k)
    km.set(wb, "bdi_writeback", "state", km.get(wb, "bdi_writeback", "state") | 1 << WB_writeback_running)
    k.flusher_pending = False  # the queued work runs
    work = LONG_MAX if nr_pages is None else nr_pages
    sync_all = tagged = reason == "sync"
    dirtied_before = now
    if reason == "periodic":
        dirtied_before = now - msecs_to_jiffies(_read_global(k, "dirty_expire_interval") * 10)
        km.set(wb, "bdi_writeback", "last_old_flush", now)
    started: list[int] = []
    while work > 0:
        if reason == "background" and not wb_over_bg_thresh(k, wb):
            break
        if not _io_list(k, wb, "b_io"):
            queue_io(k, wb, dirtied_before)
        progress = 0
        # __writeback_inodes_wb -> writeback_sb_inodes: inodes from b_io's tail
        while _io_list(k, wb, "b_io"):
            inode = _io_list(k, wb, "b_io")[-1]
            chunk = writeback_chunk_size(k, wb, sync_all, work)
            with mapping_xa(k, km.get(inode, "inode", "i_mapping")).batch():
                done, left = writeback_single_inode_pages(k, inode, wb, tagged, chunk)
                started += done
                _complete_io(k, done, complete)  # the block layer completes (part of) the chunk
            wrote = chunk - left
            work -= wrote
            progress += wrote
            # requeue_inode()
            state = km.get(inode, "inode", "i_state")
            if state & I_DIRTY and sync_all:
                km.set(inode, "inode", "dirtied_when", jiffies(k))
            if state & I_DIRTY_PAGES:
                if left <= 0 and _time_before(km.get(inode, "inode", "dirtied_when"), dirtied_before + 1):
                    _move_to(k, inode, wb, "b_more_io")  # requeue_io: slice used up
                else:
                    redirty_tail(k, inode, wb)
            elif state & I_DIRTY:
                redirty_tail(k, inode, wb)
            else:
                k.kmem.list_del_init(km.addr(inode, "inode", "i_io_list"))  # clean: off the lists
            if wrote and work <= 0:
                break
        if progress:
            continue
        break
    if not _io_list(k, wb, "b_dirty") and not _io_list(k, wb, "b_io") and not _io_list(k, wb, "b_more_io"):
        st = km.get(wb, "bdi_writeback", "state")
        if st & (1 << WB_has_dirty_io):  # wb_io_lists_depopulated()
            km.set(wb, "bdi_writeback", "state", st & ~(1 << WB_has_dirty_io))
            bdi = km.get(wb, "bdi_writeback", "bdi")
            km.set(
                bdi,
                "backing_dev_info",
                "tot_write_bandwidth.counter",
                km.get(bdi, "backing_dev_info", "tot_write_bandwidth.counter")
                - km.get(wb, "bdi_writeback", "avg_write_bandwidth"),
            )
    km.set(wb, "bdi_writeback", "state", km.get(wb, "bdi_writeback", "state") & ~(1 << WB_writeback_running))
    return sum(swap.folio_nr_pages(k, p) for p in started)


def wb_workfn(k: Kernel, complete: bool | float = True) -> int:
    """fs/fs-writeback.c wb_workfn() -> wb_do_writeback() with no queued works:
    wb_check_background_flush() then wb_check_old_data_flush() (when dirty_writeback_interval
    has passed since last_old_flush).  Returns pages written."""
    from mmintro.kernel.inode import vfs_root

    wb = k.kmem.addr(vfs_root(k).bdi, "backing_dev_info", "wb")
    n = wb_writeback(k, "background", None, complete, wb)  # wb_check_background_flush: LONG_MAX
    interval = _read_global(k, "dirty_writeback_interval")
    last = k.kmem.get(wb, "bdi_writeback", "last_old_flush")
    if interval and not _time_before(jiffies(k), last + msecs_to_jiffies(interval * 10)):
        nr = get_nr_dirty_pages(k)  # wb_check_old_data_flush()
        k.kmem.set(wb, "bdi_writeback", "last_old_flush", jiffies(k))
        if nr:
            n += wb_writeback(k, "periodic", nr, complete, wb)
    return n


def get_nr_dirty_pages(k: Kernel) -> int:
    """fs/fs-writeback.c get_nr_dirty_pages(): NR_FILE_DIRTY + get_nr_dirty_inodes() (the
    inodes in use)."""
    from mmintro.kernel.inode import vfs_root

    return _global_node(k, "NR_FILE_DIRTY") + len(vfs_root(k).inodes)


def msecs_to_jiffies(m: int) -> int:
    """include/linux/jiffies.h msecs_to_jiffies() for HZ dividing 1000: rounded up."""
    return -(-m * HZ // 1000)


flush = wb_workfn
