"""Dirty pages and writeback (mmintro/kernel/page_writeback.py) checked from the snapshot.

* The dirty thresholds are recomputed here from the snapshot's own counters, read by real
  drgn (vm_zone_stat, totalreserve_pages, vm_node_stat, the vm_dirty_* sysctls), with 6.18's
  global_dirtyable_memory / domain_dirty_limits arithmetic written out independently.
* The XArray marks (PAGECACHE_TAG_DIRTY / WRITEBACK, read node by node from drgn objects as
  xa_get_mark does) sit exactly on the PG_dirty / PG_writeback folios, and NR_FILE_DIRTY,
  NR_WRITEBACK, NR_ZONE_WRITE_PENDING and the wb's stat counters count them; the dirty inode
  is on its bdi_writeback's b_dirty list (found from bdi_list).
* A writer crossing the freerun ceiling ((thresh + bg_thresh) / 2) is throttled: every logged
  balance_dirty_pages decision is above the ceiling, none before it, the position ratio falls
  as dirty pages grow, and the background flusher brings NR_FILE_DIRTY to bg_thresh.
"""

from __future__ import annotations

import itertools

import pytest

from mmintro.crosscheck import open_drgn
from mmintro.kernel import filemap, fork, inode, swap
from mmintro.kernel import page_writeback as pw
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot
from mmintro.snapshot.writer import save

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.xarray import xa_for_each

PAGE = 4096


def xa_get_mark(xa, index: int, mark: int) -> bool:
    """include/linux/xarray.h xa_get_mark() on drgn objects (drgn has no mark helper)."""
    prog = xa.prog_
    gfp_bits = prog.constant("___GFP_LAST_BIT").value_()  # __GFP_BITS_SHIFT: XA_FLAGS_MARK()
    entry = xa.xa_head.value_()
    if not (entry & 3 == 2 and entry > 4096):
        return bool(xa.xa_flags.value_() >> (gfp_bits + mark) & 1) and entry != 0
    while entry & 3 == 2 and entry > 4096:
        node = drgn.Object(prog, "struct xa_node *", entry - 2)
        off = (index >> node.shift.value_()) & 63
        word = node.marks[mark]  # unsigned long marks[XA_MAX_MARKS][XA_MARK_LONGS] (1 long)
        if word.type_.unaliased_kind() == drgn.TypeKind.ARRAY:
            word = word[off // 64]
        if not word.value_() >> (off % 64) & 1:
            return False
        entry = node.slots[off].value_()
    return True


def _drgn(path):
    return open_drgn(path + ".vmcore", path + ".vmlinux")


@pytest.fixture(scope="module")
def ratio_snap(tmp_path_factory):
    """Default sysctls (dirty_ratio 20, dirty_background_ratio 10): two files written, one
    partly written back with half of its I/O still in flight at the snapshot."""
    k = boot(MachineConfig(ram=1 << 30, seed=11))
    a = inode.create_file(k, "/srv/a.dat", 64 * PAGE)
    b = inode.create_file(k, "/srv/b.dat", 0)
    filemap.filemap_read(k, a, 0, 64 * PAGE)
    filemap.filemap_write(k, a, 10 * PAGE, 20 * PAGE)
    filemap.filemap_write(k, b, 0, 30 * PAGE + 100)
    pw.tick(k, 40)  # both inodes expire (dirty_expire_interval = 30 s)
    filemap.filemap_write(k, b, 0, 10)  # already dirty: no new dirtying, dirtied_when stays
    written = pw.wb_writeback(k, "periodic", 12, complete=0.5)
    d = tmp_path_factory.mktemp("wb")
    save(k, d / "ratio")
    return k, {"a": a, "b": b}, written, str(d / "ratio")


def test_dirty_limits_from_the_snapshot_counters(ratio_snap):
    k, _files, _written, path = ratio_snap
    prog = _drgn(path)
    free = prog["vm_zone_stat"][prog.constant("NR_FREE_PAGES")].counter.value_()
    reserve = prog["totalreserve_pages"].value_()
    node = prog["vm_node_stat"]
    avail = free - min(free, reserve)
    avail += node[prog.constant("NR_INACTIVE_FILE")].counter.value_()
    avail += node[prog.constant("NR_ACTIVE_FILE")].counter.value_()
    avail += 1
    assert prog["vm_dirty_ratio"].value_() == 20 and prog["dirty_background_ratio"].value_() == 10
    assert prog["vm_dirty_bytes"].value_() == 0 and prog["dirty_background_bytes"].value_() == 0
    thresh = (20 * PAGE // 100) * avail // PAGE
    bg = (10 * PAGE // 100) * avail // PAGE
    assert pw.global_dirtyable_memory(k) == avail
    assert pw.global_dirty_limits(k) == (bg, thresh)
    assert prog["dirty_expire_interval"].value_() == 3000 and prog["dirty_writeback_interval"].value_() == 500


def test_marks_flags_and_counters_agree(ratio_snap):
    _k, files, written, path = ratio_snap
    prog = _drgn(path)
    PG = {n: 1 << prog.constant(n).value_() for n in ("PG_dirty", "PG_writeback")}
    n_dirty = n_wb = 0
    for f in files.values():
        mapping = drgn.Object(prog, "struct file *", f).f_mapping
        xa = mapping.i_pages
        for idx, e in xa_for_each(xa.address_of_()):
            flags = drgn.Object(prog, "struct page *", e.value_()).flags.f.value_()
            assert xa_get_mark(xa, idx, 0) == bool(flags & PG["PG_dirty"]), idx  # PAGECACHE_TAG_DIRTY
            assert xa_get_mark(xa, idx, 1) == bool(flags & PG["PG_writeback"]), idx  # TAG_WRITEBACK
            assert not xa_get_mark(xa, idx, 2)  # no TOWRITE left (untagged writeback)
            n_dirty += bool(flags & PG["PG_dirty"])
            n_wb += bool(flags & PG["PG_writeback"])
    # periodic work of 12 pages: writeback_chunk_size = round_down(12 + MIN_WRITEBACK_PAGES,
    # MIN_WRITEBACK_PAGES) = 1024 for the oldest inode (a: pages 10..29), so all 20 of a's dirty
    # pages go and the work's budget is spent before b (31 pages) is reached
    assert written == 20 and n_wb == 10  # half of the I/O still in flight
    assert n_dirty == 31
    stat = prog["node_data"][0].vm_stat
    assert stat[prog.constant("NR_FILE_DIRTY")].counter.value_() == n_dirty
    assert stat[prog.constant("NR_WRITEBACK")].counter.value_() == n_wb
    assert stat[prog.constant("NR_WRITTEN")].counter.value_() == 20 - n_wb
    assert stat[prog.constant("NR_DIRTIED")].counter.value_() == 51
    pending = sum(
        z.vm_stat[prog.constant("NR_ZONE_WRITE_PENDING")].counter.value_() for z in prog["node_data"][0].node_zones
    )
    assert pending == n_dirty + n_wb
    # the bdi on bdi_list, its wb's counters and b_dirty list
    bdis = list(list_for_each_entry("struct backing_dev_info", prog["bdi_list"].address_of_(), "bdi_list"))
    assert len(bdis) == 1 and bdis[0].dev_name.string_() == b"253:0"
    wb = bdis[0].wb
    stat_n = {
        n: wb.stat[prog.constant(n)].count.value_()
        for n in ("WB_RECLAIMABLE", "WB_WRITEBACK", "WB_DIRTIED", "WB_WRITTEN")
    }
    assert stat_n == {"WB_RECLAIMABLE": n_dirty, "WB_WRITEBACK": n_wb, "WB_DIRTIED": 51, "WB_WRITTEN": 20 - n_wb}
    # __wb_writeout_add: each completed folio counts in the wb's and the domain's completions
    # (the fprop fraction that gives the wb its share of the dirty threshold)
    assert wb.completions.events.count.value_() == 20 - n_wb
    assert prog["global_wb_domain"].completions.events.count.value_() == 20 - n_wb
    # a is clean: off the io lists; b was queued (queue_io) and waits on b_io for the next work
    inode_of = {t: drgn.Object(prog, "struct file *", f).f_inode for t, f in files.items()}
    io = {
        n: [i.value_() for i in list_for_each_entry("struct inode", getattr(wb, n).address_of_(), "i_io_list")]
        for n in ("b_dirty", "b_io", "b_more_io")
    }
    assert io == {"b_dirty": [], "b_io": [inode_of["b"].value_()], "b_more_io": []}
    assert inode_of["b"].i_state.value_() & prog.constant("I_DIRTY_PAGES").value_()
    assert not inode_of["a"].i_state.value_() & prog.constant("I_DIRTY_PAGES").value_()
    assert inode_of["a"].i_wb == inode_of["b"].i_wb == wb.address_of_()
    assert wb.writeback_inodes.counter.value_() == (1 if n_wb else 0)


@pytest.fixture(scope="module")
def throttle(tmp_path_factory):
    """vm.dirty_bytes = 8 MiB, dirty_background_bytes = 4 MiB: thresh 2048 pages, bg 1024,
    freerun ceiling 1536; one writer dirties 2400 pages, then the flusher runs."""
    k = boot(MachineConfig(ram=1 << 30, seed=12))
    pw.page_writeback_init(k)
    k.write_int("vm_dirty_bytes", 8 << 20)
    k.write_int("dirty_background_bytes", 4 << 20)
    pw.writeback_set_ratelimit(k)
    f = inode.create_file(k, "/var/tmp/stream", 0)
    writer = fork.spawn_process(k, "streamer")
    for _ in range(24):
        filemap.filemap_write(k, f, k.kmem.get(f, "file", "f_pos"), 100 * PAGE, task=writer.task)
    before = sum(d.get("NR_FILE_DIRTY", 0) for d in k.node_vm_stat)
    n = pw.wb_workfn(k, complete=1.0)
    after = sum(d.get("NR_FILE_DIRTY", 0) for d in k.node_vm_stat)
    d = tmp_path_factory.mktemp("thr")
    save(k, d / "thr")
    k.writer = writer.task
    return k, before, n, after, str(d / "thr")


def test_throttle_events_above_the_freerun_ceiling(throttle):
    k, _before, _n, _after, _path = throttle
    log = k.dirty_throttle_log
    assert log, "no balance_dirty_pages decision recorded"
    for ev in log:
        assert (ev.thresh, ev.bg_thresh) == (2048, 1024)  # DIV_ROUND_UP(bytes, PAGE_SIZE)
        assert ev.nr_dirty > (ev.thresh + ev.bg_thresh) // 2
        assert ev.limit >= ev.thresh
        assert 0 <= ev.pause <= max(250 // 5, 1)  # MAX_PAUSE = HZ/5
    # pos_ratio_polynom falls through 1.0 (1024) at the setpoint as dirty pages grow
    ratios = [(ev.nr_dirty, ev.pos_ratio) for ev in log]
    assert all(r1 >= r2 for (_d1, r1), (_d2, r2) in itertools.pairwise(ratios))
    # the first decision came once dirty pages passed the ceiling, not before
    assert 1536 < log[0].nr_dirty <= 1536 + 160


def test_background_flush_stops_below_bg_thresh(throttle):
    _k, before, n, after, path = throttle
    assert before == 2400
    # wb_over_bg_thresh is checked between passes; each pass writes one chunk of the single
    # inode: writeback_chunk_size = round_down(min(INIT_BW / 2, dirty_limit 2048 / DIRTY_SCOPE)
    # + 1024, 1024) = 1024 pages; 2400 -> 1376 (still > 1024) -> 352
    assert n == 2048 and after == 352
    prog = _drgn(path)
    assert prog["vm_dirty_bytes"].value_() == 8 << 20
    assert prog["global_wb_domain"].dirty_limit.value_() == 2048
    stat = prog["node_data"][0].vm_stat
    assert stat[prog.constant("NR_FILE_DIRTY")].counter.value_() == 352
    assert stat[prog.constant("NR_WRITTEN")].counter.value_() == n
    assert stat[prog.constant("NR_WRITEBACK")].counter.value_() == 0


def test_lru_counts_the_written_file(throttle):
    k = throttle[0]
    total = sum(d.get("NR_FILE_PAGES", 0) for d in k.node_vm_stat)
    assert total == 2400
    assert len(swap.lru_pfns(k, 0, swap.LRU_INACTIVE_FILE)) == 2400


def test_sync_writeback_tags_towrite_and_starts_every_dirty_folio(tmp_path):
    """sync_inodes_sb-style work (WB_SYNC_ALL): tag_pages_for_writeback puts TOWRITE on every
    dirty folio, each is started (TOWRITE and DIRTY cleared, WRITEBACK set); with no I/O
    completed every folio is still PG_writeback in the snapshot."""
    k = boot(MachineConfig(ram=1 << 30, seed=13))
    f = inode.create_file(k, "/home/u/notes.txt", 0)
    filemap.filemap_write(k, f, 0, 40 * PAGE)
    n = pw.wb_writeback(k, "sync", None, complete=False)
    assert n == 40
    save(k, tmp_path / "sync")
    prog = _drgn(str(tmp_path / "sync"))
    xa = drgn.Object(prog, "struct file *", f).f_mapping.i_pages
    wbit = 1 << prog.constant("PG_writeback").value_()
    entries = list(xa_for_each(xa.address_of_()))
    assert len(entries) == 40
    for idx, e in entries:
        assert drgn.Object(prog, "struct page *", e.value_()).flags.f.value_() & wbit
        assert [xa_get_mark(xa, idx, m) for m in (0, 1, 2)] == [False, True, False]
    stat = prog["node_data"][0].vm_stat
    assert stat[prog.constant("NR_WRITEBACK")].counter.value_() == 40
    assert stat[prog.constant("NR_FILE_DIRTY")].counter.value_() == 0
    sb_wb = list(
        list_for_each_entry(
            "struct inode", drgn.Object(prog, "struct file *", f).f_inode.i_sb.s_inodes_wb.address_of_(), "i_wb_list"
        )
    )
    assert [i.value_() for i in sb_wb] == [drgn.Object(prog, "struct file *", f).f_inode.value_()]


def test_the_throttled_task_is_named_and_its_books_written(throttle):
    k, _before, _n, _after, path = throttle
    prog = _drgn(path)
    task = drgn.Object(prog, "struct task_struct *", k.writer)
    assert {(ev.pid, ev.comm) for ev in k.dirty_throttle_log} == {(task.pid.value_(), "streamer")}
    assert task.ioac.write_bytes.value_() == 2400 * PAGE  # task_io_account_write
    assert (task.ioac.wchar.value_(), task.ioac.syscw.value_()) == (2400 * PAGE, 24)  # 24 write(2)s
    assert task.ioac.read_bytes.value_() == 0  # whole-page writes read nothing
    t = k.task_dirty[k.writer]
    assert (task.nr_dirtied.value_(), task.nr_dirtied_pause.value_()) == (t.nr_dirtied, t.nr_dirtied_pause)
    # the pauses it slept moved the clock: jiffies in the snapshot = boot + the sum of pauses
    slept = sum(ev.pause for ev in k.dirty_throttle_log if ev.pause > 0)
    assert prog["jiffies"].value_() == pw.jiffies(k) and slept > 0
    assert pw.jiffies(k) - ((-300 * 250) & 0xFFFFFFFF) == 60 * 250 + slept


def test_wb_thresh_is_zero_until_the_disk_completes_writeback():
    """__wb_calc_thresh: a bdi that never completed writeback has no share of the threshold
    (fprop fraction 0/1); after its first completions it holds the whole domain's."""
    k = boot(MachineConfig(ram=1 << 30, seed=14))
    f = inode.create_file(k, "/opt/x", 0)
    filemap.filemap_write(k, f, 0, 8 * PAGE)
    wb = k.kmem.addr(inode.vfs_root(k).bdi, "backing_dev_info", "wb")
    bg, thresh = pw.global_dirty_limits(k)
    assert pw.wb_calc_thresh(k, wb, thresh) == 0
    pw.wb_writeback(k, "sync", None, complete=True)
    assert pw.wb_calc_thresh(k, wb, thresh) == thresh and pw.wb_calc_thresh(k, wb, bg) == bg


def test_meminfo_cached_dirty_writeback_from_the_page_cache(ratio_snap):
    """`mmintro meminfo` on the snapshot: Cached = the pages drgn finds in every inode's
    i_pages on super_blocks (no swap cache, no block-device Buffers), Dirty / Writeback = the
    folios with PG_dirty / PG_writeback among them, Inactive(file) + Active(file) = Cached."""
    from mmintro.views.meminfo import parse
    from tests.cli_helpers import run

    _k, _files, _written, path = ratio_snap
    prog = _drgn(path)
    cached = dirty = wb = 0
    PG = {n: 1 << prog.constant(n).value_() for n in ("PG_dirty", "PG_writeback")}
    for sb in list_for_each_entry("struct super_block", prog["super_blocks"].address_of_(), "s_list"):
        for ino in list_for_each_entry("struct inode", sb.s_inodes.address_of_(), "i_sb_list"):
            for _i, e in xa_for_each(ino.i_mapping.i_pages.address_of_()):
                flags = drgn.Object(prog, "struct page *", e.value_()).flags.f.value_()
                cached += 1
                dirty += bool(flags & PG["PG_dirty"])
                wb += bool(flags & PG["PG_writeback"])
    m = parse(run("meminfo", path).stdout)
    assert m["Buffers"] == 0 and m["SwapCached"] == 0
    assert m["Cached"] == cached * 4 and cached == 64 + 31
    assert m["Dirty"] == dirty * 4 and m["Writeback"] == wb * 4
    assert m["Inactive(file)"] + m["Active(file)"] == cached * 4
