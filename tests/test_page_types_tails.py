"""page-types and ``mmintro page`` on tail pages: a tail's own flags word is folio metadata (the
first tail's low byte is the folio's order), so a tail reports its folio's flags and page type,
as /proc/kpageflags (stable_page_flags) does -- never PG_locked/PG_writeback made of an order."""

from __future__ import annotations

from mmintro.kernel import gfp as G
from mmintro.kernel.config import MachineConfig
from mmintro.kernel.machine import boot


def test_tails_report_their_folios_flags_as_drgn_sees_them(tmp_path) -> None:
    from collections import Counter

    import drgn
    from drgn.helpers.linux.mm import PageTail, compound_head, for_each_page

    from mmintro.crosscheck import open_drgn
    from mmintro.reader import open_snapshot
    from mmintro.snapshot.writer import save
    from mmintro.views.page import page_info
    from mmintro.views.page_types import page_types

    k = boot(MachineConfig(ram=256 << 20, hugepages_2m=2))
    heads = [k.alloc_pages(G.GFP_KERNEL | G.__GFP_COMP, order) for order in (1, 2, 3, 3, 5)]
    assert all(h is not None for h in heads)
    save(k, tmp_path / "t")
    prog = open_snapshot(str(tmp_path / "t"))
    ours = Counter()
    for r in page_types(prog):
        if r.tail:
            ours[(r.flags, r.page_type)] += r.page_count
    assert sum(ours.values()) >= 1 + 3 + 7 + 7 + 31 + 2 * 511
    dprog = open_drgn(f"{tmp_path}/t.vmcore", f"{tmp_path}/t.vmlinux")
    pg_head = 1 << dprog["PG_head"].value_()
    mask = (1 << dprog["__NR_PAGEFLAGS"].value_()) - 1
    theirs = Counter()
    for page in for_each_page(dprog):
        try:
            if not PageTail(page):
                continue
        except drgn.FaultError:  # a pfn without a struct page
            continue
        theirs[compound_head(page).flags.f.value_() & mask & ~pg_head] += 1
    by_flags = Counter()
    for (f, _t), n in ours.items():
        by_flags[f] += n
    assert by_flags == theirs
    # the order byte of the first tail is never decoded as flags
    first_tail = page_info(prog, heads[4] + 1)
    assert first_tail["flags"] & 0xFF == 5
    assert "PG_locked" not in first_tail["flag_names"] and "PG_head" not in first_tail["flag_names"]
