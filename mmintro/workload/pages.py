"""Page allocator steps (mm/page_alloc.c): ``alloc``/``free`` blocks under tags, ``drain`` the pcp
lists, ``expect_alloc``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from mmintro.kernel import gfp as G
from mmintro.kernel import page_alloc
from mmintro.workload.core import ExpectationFailed, WorkloadError, zone_label

WATERMARKS = {"min": 0, "low": 1, "high": 2}
UNTIL = ("exhausted", "miss", *WATERMARKS)
REASONS = ("watermark", "fragmentation")
NUMA_EVENTS = {
    "numa_hit": page_alloc.NUMA_HIT,
    "numa_miss": page_alloc.NUMA_MISS,
    "numa_foreign": page_alloc.NUMA_FOREIGN,
    "numa_interleave_hit": page_alloc.NUMA_INTERLEAVE_HIT,
    "numa_local": page_alloc.NUMA_LOCAL,
    "numa_other": page_alloc.NUMA_OTHER,
}


# -- results -------------------------------------------------------------------------------
class Block(NamedTuple):
    """One live block the workload allocated."""

    pfn: int
    """First page frame number of the block (``page_to_pfn()`` of the head)."""
    order: int
    """Its order: the block is ``1 << order`` pages."""
    nid: int
    """Node of the zone the block came from."""
    zone: str
    """Name of that zone (``DMA``, ``DMA32``, ``Normal``)."""
    preferred: int
    """The node the request preferred (for an interleaved one, the node interleave chose)."""


class AllocResult(NamedTuple):
    """What one :meth:`Workload.alloc` call did."""

    blocks: list[Block]
    """The blocks allocated, in allocation order."""
    stop: str
    """Why it stopped: ``count`` (all allocated), ``failed`` (the allocator refused),
    ``min``/``low``/``high`` (the zone reached that watermark), ``miss`` (a block landed off
    its preferred node) or ``bound`` (the loop's bound was reached first)."""
    failure: page_alloc.AllocFailure | None
    """The allocator's report of the refused request, when ``stop == 'failed'``."""


class PageAllocSteps:
    """alloc_pages / __free_pages under tags (the Workload's ``tags``)."""

    def blocks(self, tag: str) -> list[Block]:
        """The live blocks of ``tag``."""
        try:
            return self.tags[tag]
        except KeyError:
            raise WorkloadError(f"unknown tag {tag!r} (tags so far: {', '.join(self.tags) or 'none'})") from None

    def drain(self) -> None:
        """drain_all_pages(NULL): every CPU's pcp pages back to the buddy lists."""
        page_alloc.drain_all_pages(self.k)

    def try_alloc(
        self,
        order: int = 0,
        gfp: int | str = "GFP_KERNEL",
        node: int | None = None,
        nodemask: Sequence[int] | None = None,
        interleave: bool | Sequence[int] | None = None,
    ) -> tuple[Block | None, page_alloc.AllocFailure | None]:
        """One ``alloc_pages`` (or MPOL_INTERLEAVE ``alloc_pages_mpol``) request: the block, or
        None and the allocator's failure report."""
        k = self.k
        mask = _gfp(gfp)
        _check_order(order)
        n_failures = len(k.alloc_failures)
        try:
            if interleave is not None and interleave is not False:
                if node is not None or nodemask is not None:
                    raise WorkloadError("interleave chooses the node itself: no node or nodemask with it")
                nodes = None if interleave is True else tuple(interleave)  # type: ignore[arg-type]
                pfn = k.alloc_pages_interleave(mask, order, nodes)
                preferred = k.il_prev.get(k.current_cpu, -1)
            else:
                nm = frozenset(nodemask) if nodemask is not None else None
                pfn = k.alloc_pages(mask, order, nid=node, nodemask=nm)
                preferred = node if node is not None else k.numa_node_id()
        except G.GfpError as e:
            raise WorkloadError(str(e)) from None
        if pfn is None:
            failure = k.alloc_failures[-1] if len(k.alloc_failures) > n_failures else None
            return None, failure
        z = page_alloc.page_zone(k, pfn)
        return Block(pfn, order, z.nid, z.name, preferred), None

    def alloc(
        self,
        tag: str,
        order: int = 0,
        gfp: int | str = "GFP_KERNEL",
        count: int | None = None,
        until: str | None = None,
        zone: str | None = None,
        node: int | None = None,
        nodemask: Sequence[int] | None = None,
        interleave: bool | Sequence[int] | None = None,
        cpu: int | None = None,
    ) -> AllocResult:
        """Allocate blocks of ``order`` with ``gfp`` and keep them under ``tag``.

        Without ``until``: exactly ``count`` blocks (default 1); a refusal raises
        :class:`ExpectationFailed`.  With ``until``, allocate while the condition does not
        hold, at most ``count`` blocks (default: as many as could exist):

        * ``"exhausted"``: until the allocator refuses a request;
        * ``"min"``/``"low"``/``"high"``: until ``zone`` has no more free pages than that
          watermark (or the allocator refuses);
        * ``"miss"``: until a block comes from a node other than the preferred one (that block
          is kept: it is the first of the spill).

        The refused request that ends an ``until`` loop is a real failure: warn_alloc records it
        in ``kernel.alloc_failures`` and, without ``__GFP_NOWARN``, in ``kernel.log``.
        """
        mask = _gfp(gfp)
        _check_order(order)
        if until is not None and until not in UNTIL:
            raise WorkloadError(f"until {until!r} is not one of {', '.join(UNTIL)}")
        if count is not None and (type(count) is not int or count < 1):
            raise WorkloadError(f"count {count!r} is not a positive integer")
        target = None
        if until in WATERMARKS:
            if zone is None:
                raise WorkloadError(f'until {until!r} needs the zone whose watermark it means (zone = "Normal")')
            target = self.zone(zone, node)
        elif zone is not None:
            raise WorkloadError('zone is only meaningful with until = "min", "low" or "high"')
        # No loop can allocate more blocks of this order than the machine manages.
        most = sum(z.managed for zs in self.k.zones for z in zs) >> order
        bound = count if count is not None else (1 if until is None else most + 1)
        out: list[Block] = []
        stop, failure = "bound", None
        with self._cpu(cpu):
            for _ in range(bound):
                if target is not None and target.free_pages <= page_alloc.wmark_pages(target, WATERMARKS[until]):
                    stop = until  # type: ignore[assignment]
                    break
                b, failure = self.try_alloc(order, mask, node, nodemask, interleave)
                if b is None:
                    stop = "failed"
                    break
                out.append(b)
                if until == "miss" and b.nid != b.preferred:
                    stop = "miss"
                    break
            else:
                if until is None:
                    stop = "count"
        self.tags.setdefault(tag, []).extend(out)
        if until is None and stop == "failed":
            raise ExpectationFailed(
                f"block {len(out) + 1} of {bound} (order {order}, {G.format_gfp(mask)}) "
                f"was refused: {_reasons(failure)}"
            )
        return AllocResult(out, stop, failure)

    def free(
        self,
        tag: str,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
    ) -> list[Block]:
        """``__free_pages`` blocks of ``tag``: all of them; or ``every`` n-th in allocation
        order starting at index ``offset``; or a random ``fraction`` / ``count`` of them (in a
        random order drawn from the kernel's seeded rng).  Returns the freed blocks."""
        blocks = self.blocks(tag)
        if not blocks:  # everything of the tag went back already: another free is a double free
            raise WorkloadError(f"tag {tag!r} has no live blocks: they were all freed already")
        if sum(x is not None for x in (every, fraction, count)) > 1:
            raise WorkloadError("free takes one of every, fraction, count")
        n = len(blocks)
        if every is not None:
            if type(every) is not int or every < 1 or not 0 <= offset < every:
                raise WorkloadError(f"every = {every!r}, offset = {offset!r}: need every >= 1 and 0 <= offset < every")
            chosen = list(range(offset, n, every))
        elif fraction is not None or count is not None:
            if fraction is not None:
                if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
                    raise WorkloadError(f"fraction {fraction!r} is not in (0, 1]")
                want = round(fraction * n)
            else:
                if type(count) is not int or count < 1:
                    raise WorkloadError(f"count {count!r} is not a positive integer")
                want = min(count, n)
            chosen = [int(i) for i in self.rng.permutation(n)[:want]]
        else:
            chosen = list(range(n))
        with self._cpu(cpu):
            for i in chosen:
                b = blocks[i]
                self.k.free_pages(b.pfn, b.order)
        gone = set(chosen)
        self.tags[tag] = [b for i, b in enumerate(blocks) if i not in gone]
        return [blocks[i] for i in chosen]

    # -- expectations ----------------------------------------------------------------------
    def expect_alloc(
        self,
        succeeds: bool,
        order: int = 0,
        gfp: int | str = "GFP_KERNEL",
        node: int | None = None,
        nodemask: Sequence[int] | None = None,
        interleave: bool | Sequence[int] | None = None,
        reason: str | None = None,
        zone: str | None = None,
        tag: str = "expect",
        cpu: int | None = None,
    ) -> Block | page_alloc.AllocFailure:
        """Make one request and check its outcome.  ``succeeds``: the block (kept under
        ``tag``) must come from ``zone`` if given.  Otherwise the request must fail, and if
        ``reason`` is given, ``zone`` (default: the first zone tried) must have refused for
        that reason ('watermark': below the watermark even for order 0; 'fragmentation':
        enough free pages, but no free block of the order)."""
        if reason is not None and reason not in REASONS:
            raise WorkloadError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
        if reason is not None and succeeds:
            raise WorkloadError("reason is only meaningful for an allocation expected to fail")
        mask = _gfp(gfp)
        want = self.zone(zone, node) if zone is not None else None
        with self._cpu(cpu):
            b, failure = self.try_alloc(order, mask, node, nodemask, interleave)
        what = f"order-{order} {G.format_gfp(mask)} allocation"
        if b is not None:
            self.tags.setdefault(tag, []).append(b)
            if not succeeds:
                raise ExpectationFailed(
                    f"{what} succeeded (pfn {b.pfn:#x} from Node {b.nid} {b.zone}), expected it to fail"
                )
            if want is not None and (b.nid, b.zone) != (want.nid, want.name):
                raise ExpectationFailed(f"{what} came from Node {b.nid} {b.zone}, expected {zone_label(want)}")
            return b
        if succeeds:
            raise ExpectationFailed(f"{what} failed: {_reasons(failure)}")
        if failure is None:
            raise ExpectationFailed(f"{what} failed without a warn_alloc report")
        if reason is not None:
            verdicts = dict(failure.zones)
            label = zone_label(want) if want is not None else (failure.zones[0][0] if failure.zones else None)
            if label is None or label not in verdicts:
                raise ExpectationFailed(f"{what} failed but {label or 'no zone'} was not tried ({_reasons(failure)})")
            if verdicts[label] != reason:
                raise ExpectationFailed(
                    f"{what} failed, but {label} refused for {verdicts[label]}, not {reason} ({_reasons(failure)})"
                )
        return failure


def _gfp(gfp: int | str) -> int:
    try:
        mask = G.parse_gfp(gfp)
        G.gfp_zone(mask)
        G.gfp_migratetype(mask)
    except G.GfpError as e:
        raise WorkloadError(str(e)) from None
    return mask


def _check_order(order: Any) -> None:
    if type(order) is not int or not 0 <= order <= page_alloc.MAX_PAGE_ORDER:
        raise WorkloadError(f"order {order!r} is outside 0..{page_alloc.MAX_PAGE_ORDER} (MAX_PAGE_ORDER)")


def _reasons(failure: page_alloc.AllocFailure | None) -> str:
    if failure is None:
        return "no report"
    if not failure.zones:
        return "no zone was eligible"
    return ", ".join(f"{z} {why}" for z, why in failure.zones)
