"""Page cache and writeback steps (mm/filemap.c, mm/page-writeback.c): ``create_file``, ``read``,
``write``, ``writeback``; the values expectations read (file_pages, dirty limits, throttling)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmintro.workload.core import WorkloadError, _kmod

if TYPE_CHECKING:
    from mmintro.workload.api import Workload


class PageCacheSteps:
    """Files (``files``: tag -> struct file *), read and written through the page cache."""

    def file(self, tag: str) -> int:
        """The ``struct file *`` the workload created under ``tag``."""
        try:
            return self.files[tag]
        except KeyError:
            raise WorkloadError(f"unknown file {tag!r} (files so far: {', '.join(self.files) or 'none'})") from None

    def create_file(self, tag: str, path: str, size: int = 0) -> int:
        """A regular file ``path`` of ``size`` bytes (``inode.create_file``: inode, dentry,
        struct file; no page cached yet)."""
        inode = _kmod("inode", "FILE", "create_file")
        if tag in self.files:
            raise WorkloadError(f"file {tag!r} already exists")
        self.files[tag] = inode.create_file(self.k, path, size)
        return self.files[tag]

    def read(self, tag: str, start: int = 0, size: int | None = None, proc: str | None = None) -> Any:
        """read(2) of [start, start+size) of a file (``filemap.filemap_read``: the page cache
        fills on a miss), by process ``proc`` when given (else by the idle task)."""
        filemap = _kmod("filemap", "FILE", "filemap_read")
        f = self.file(tag)
        task = self.proc(proc).task if proc else None
        return filemap.filemap_read(self.k, f, start, self._file_len(f, start, size), task=task)

    def write(self, tag: str, start: int = 0, size: int | None = None, proc: str | None = None) -> Any:
        """write(2) of [start, start+size) of a file (``filemap.filemap_write``:
        generic_perform_write dirties the folios; balance_dirty_pages may throttle ``proc``,
        whose nr_dirtied and throttle records it is)."""
        filemap = _kmod("filemap", "FILE", "filemap_write")
        f = self.file(tag)
        task = self.proc(proc).task if proc else None
        return filemap.filemap_write(self.k, f, start, self._file_len(f, start, size), task=task)

    def _file_len(self, f: int, start: int, size: int | None) -> int:
        if size is not None:
            return size
        isize = self.k.kmem.get(self.k.kmem.get(f, "file", "f_inode"), "inode", "i_size")
        if isize <= start:
            raise WorkloadError(f"the file is {isize} bytes: nothing to read or write from {start}")
        return isize - start

    def writeback(self, everything: bool = True, complete: float = 1.0) -> int:
        """The flusher: ``wb_writeback`` for WB_REASON_SYNC (every dirty page), or
        ``wb_workfn`` (background writeback down to the background threshold, then the
        periodic flush of expired inodes).  ``complete``: the share of the folios whose I/O
        completes (the rest stay under writeback in the snapshot).  Returns pages written."""
        pw = _kmod("page_writeback", "FILE", "wb_writeback")
        done: bool | float = True if complete >= 1 else (False if complete <= 0 else complete)
        if everything:
            return pw.wb_writeback(self.k, "sync", None, done)
        return pw.wb_workfn(self.k, done)


def _dirty_limits(w: Workload) -> tuple[int, int]:
    """(background threshold, dirty threshold) in pages, as global_dirty_limits() computes them."""
    pw = _kmod("page_writeback", "FILE")
    fn = getattr(pw, "global_dirty_limits", None)
    if fn is None:
        raise WorkloadError("mmintro.kernel.page_writeback has no global_dirty_limits yet")
    bg, thresh = fn(w.k)
    return int(bg), int(thresh)


def _file_pages(w: Workload, tag: str) -> int:
    """mapping->nrpages of the file's address_space (its pages in the page cache)."""
    km = w.k.kmem
    inode = km.get(w.file(tag), "file", "f_inode")
    return km.get(km.get(inode, "inode", "i_mapping"), "address_space", "nrpages")


def _throttled(w: Workload) -> int:
    """balance_dirty_pages() throttling events recorded by the simulator."""
    log = getattr(w.k, "dirty_throttle_log", None)
    if log is None:
        log = getattr(w.k, "throttle_log", [])
    return len(log)
