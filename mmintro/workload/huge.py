"""THP and hugetlb (mm/huge_memory.c, mm/hugetlb.c): the THP modes a step may set and the hstate
values expectations read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.workload.core import PAGE_SIZE

if TYPE_CHECKING:
    from mmintro.workload.api import Workload


THP_MODES = ("always", "madvise", "never")


def _hstate_value(w: Workload, field: str, page_size: int = 2 << 20) -> int:
    """A field of the hstate of ``page_size`` (nr_huge_pages, free_huge_pages, resv_huge_pages,
    surplus_huge_pages): the hugetlb books (mm/hugetlb.c's struct hstate, which the simulator
    writes into ``hstates[]`` at sync), 0 for a size without an hstate."""
    try:
        from mmintro.kernel import hugetlb

        return int(getattr(hugetlb.hstate_for_size(w.k, page_size), field))
    except ImportError:
        pass
    except (LookupError, ValueError):
        return 0
    k = w.k
    km = k.kmem
    order = (page_size // PAGE_SIZE).bit_length() - 1
    n = k.T.sizeof("struct hstate")
    hs = k.sym("hstates")
    for i in range(2):
        h = hs + i * n
        if km.get(h, "hstate", "order") == order:
            return km.get(h, "hstate", field)
    return 0
