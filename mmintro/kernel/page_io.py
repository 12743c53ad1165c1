"""Swap I/O (mm/page_io.c): writing a swap-cache folio to its slot and reading it back.

The simulated swap device completes I/O at once: ``swap_writeout`` starts writeback, stores
the page's bytes in the device's book (mmintro.kernel.swapfile.SwapDevice.data) and ends the
writeback (``end_swap_bio_write`` -> ``folio_end_writeback``); ``swap_read_folio`` copies the
bytes back and marks the folio uptodate (``end_swap_bio_read``).  The counters are the
kernel's: PSWPOUT/PSWPIN (pages) and PGPGOUT/PGPGIN (512-byte sectors, counted by
submit_bio), and the node's NR_WRITTEN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import PAGE_SHIFT, PAGE_SIZE
from mmintro.kernel import swap
from mmintro.kernel import swapfile as sf

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = ["READ_NS", "SWAP_READ_NS", "SWAP_WRITE_NS", "swap_read_folio", "swap_writeout"]

# The simulator's cost model for I/O time (what PSI counts while a task waits on it): a 4 KiB
# read from the file or swap device 100 us, a swap write 50 us (a SATA SSD's order of magnitude).
READ_NS = 100_000
SWAP_READ_NS = 100_000
SWAP_WRITE_NS = 50_000


def _ev(k: Kernel, item: str, n: int) -> None:
    k.vm_events[k.current_cpu][swap._EV[item]] += n


def swap_writeout(k: Kernel, pfn: int) -> None:
    """swap_writeout() -> __swap_writepage(): the folio's bytes to its slot."""
    from mmintro.kernel import swap_state

    entry = swap_state.folio_swap_entry(k, pfn)
    d = sf._device(k, entry)
    nr = swap.folio_nr_pages(k, pfn)
    swap.folio_set_flag(k, pfn, swap.PG_writeback)  # folio_start_writeback()
    d.data[sf.swp_offset(entry)] = k.mem.read(pfn << PAGE_SHIFT, PAGE_SIZE)
    _ev(k, "PSWPOUT", nr)
    _ev(k, "PGPGOUT", nr * (PAGE_SIZE >> 9))
    # end_swap_bio_write() -> folio_end_writeback(): PG_reclaim cleared (the folio is
    # isolated, so folio_rotate_reclaimable has nothing to move)
    swap.folio_clear_flag(k, pfn, swap.PG_writeback)
    swap.folio_clear_flag(k, pfn, swap.PG_reclaim)
    k.mod_node_page_state(swap.folio_nid(k, pfn), "NR_WRITTEN", nr)


def swap_read_folio(k: Kernel, pfn: int, entry: int) -> None:
    """swap_read_folio(): the slot's bytes into the folio (zeroes for a slot never written,
    as a zeroed swap area reads), uptodate and unlocked."""
    d = sf._device(k, entry)
    data = d.data.get(sf.swp_offset(entry), bytes(PAGE_SIZE))
    k.mem.write(pfn << PAGE_SHIFT, data)
    nr = swap.folio_nr_pages(k, pfn)
    _ev(k, "PSWPIN", nr)
    _ev(k, "PGPGIN", nr * (PAGE_SIZE >> 9))
    swap.folio_set_flag(k, pfn, swap.PG_uptodate)
    swap.folio_clear_flag(k, pfn, swap.PG_locked)
