"""The pictures of :mod:`mmintro.views.picture` as PNG files, drawn with matplotlib (imported
here only, with the Agg backend: no display needed)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mmintro.views.picture import (
    CATEGORIES,
    FREE_BASE,
    MIGRATETYPE_COLOURS,
    AddressSpace,
    MemoryMap,
    MigratetypeMap,
    code_names,
    downsample,
)

__all__ = ["write_png"]

_WIDTH = 512  # cells per row of a map


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def _map_image(plt: Any, cells: np.ndarray, table: list[tuple[str, str, str]], width: int) -> tuple[Any, Any, int]:
    rows = -(-len(cells) // width)
    grid = np.zeros(rows * width, dtype=np.int64)
    grid[: len(cells)] = cells
    lut = np.array([_rgb(c) for _n, _l, c in table])
    img = lut[grid.reshape(rows, width)]
    fig, ax = plt.subplots(figsize=(12, max(3.0, 10 * rows / width + 2.5)), dpi=100)
    ax.imshow(img, interpolation="nearest", aspect="auto")
    return fig, ax, rows


def _legend(ax: Any, entries: list[tuple[str, str]]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, edgecolor="black", linewidth=0.3, label=label) for label, c in entries]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _memory(plt: Any, m: MemoryMap) -> Any:
    table = code_names(m.max_order)
    per_cell = max(1, -(-len(m.codes) // (_WIDTH * _WIDTH)))
    cells = downsample(m.codes, per_cell, len(table))
    fig, ax, rows = _map_image(plt, cells, table, _WIDTH)
    pages_per_row = per_cell * _WIDTH
    ticks: list[float] = []
    labels: list[str] = []
    for z in m.zones:
        y = z.start_pfn / pages_per_row - 0.5
        ax.axhline(y, color="white", linewidth=0.8)
        label = f"N{z.node} {z.name} {z.start_pfn:#x}"
        if ticks and y - ticks[-1] < rows / 40:  # zones too close to label apart (DMA, DMA32)
            labels[-1] += f"\n{label}"
        else:
            ticks.append(max(y, 0))
            labels.append(label)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xticks([])
    ax.set_title(
        f"physical memory: pfn 0-{len(m.codes):#x}, {per_cell} page(s) per pixel, {pages_per_row} pages per row",
        fontsize=10,
    )
    pages = m.pages()
    by_order = np.bincount(m.codes[m.codes >= FREE_BASE] - FREE_BASE, minlength=m.max_order + 1)
    entries = [(f"{n}: {pages[n]} pages", c) for n, _l, c in CATEGORIES if pages.get(n)]
    entries += [
        (f"free order {o}: {int(by_order[o]) >> o} blocks", table[FREE_BASE + o][2])
        for o in range(m.max_order + 1)
        if by_order[o]
    ]
    _legend(ax, entries)
    return fig


def _migratetype(plt: Any, mm: MigratetypeMap) -> Any:
    table = [("no memory map", " ", "#202020")] + [
        (nm, nm[0], MIGRATETYPE_COLOURS.get(nm, "#7f7f7f")) for nm in mm.names
    ]
    codes = (mm.types + 1).astype(np.int64)
    width = 64 if len(codes) <= 64 * 64 else 128
    per_cell = max(1, -(-len(codes) // (width * width)))
    cells = downsample(codes, per_cell, len(table))
    fig, ax, rows = _map_image(plt, cells, table, width)
    ax.set_xticks(np.arange(-0.5, width, 8), minor=False, labels=[])
    ax.set_yticks(
        range(0, rows, max(1, rows // 16)),
        [f"{(r * width * per_cell) << mm.pageblock_order:#x}" for r in range(0, rows, max(1, rows // 16))],
        fontsize=7,
    )
    ax.set_title(
        f"pageblock migratetypes: {len(codes)} pageblocks of {1 << mm.pageblock_order} pages, "
        f"{per_cell} per cell (y: first pfn of the row)",
        fontsize=10,
    )
    counts = np.bincount(codes, minlength=len(table))
    entries = [(f"{table[i][0]}: {int(counts[i])}", table[i][2]) for i in range(1, len(table)) if counts[i]]
    for (nid, zn), b in mm.blocks.items():
        entries.append((f"node {nid} {zn}: " + ", ".join(f"{c}" for c in b), "#ffffff"))
    _legend(ax, entries)
    return fig


def _fragmentation(plt: Any, rows: list[Any]) -> Any:
    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n + 0.8), dpi=100, squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        orders = np.arange(len(r.unusable_index))
        u = np.array(r.unusable_index) / 1000
        e = np.array(r.extfrag_index, dtype=float) / 1000
        ax.bar(orders - 0.2, u, width=0.4, color="#d62728", label="unusable index")
        fails = e >= 0
        ax.bar(orders[fails] + 0.2, e[fails], width=0.4, color="#1f77b4", label="extfrag index (allocation fails)")
        for o in orders[~fails]:
            ax.text(o + 0.2, 0.02, "ok", ha="center", fontsize=7, color="#2ca02c")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(orders)
        ax.set_ylabel("index")
        ax.set_title(f"node {r.node}, zone {r.zone}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("order")
    fig.suptitle("fragmentation per order (debugfs extfrag/unusable_index, extfrag_index)", fontsize=11)
    fig.tight_layout()
    return fig


MAX_VMAS = 100  # rows of an address-space picture: the VMAs with the most Rss beyond that


def _address_space(plt: Any, a: AddressSpace) -> Any:
    total = len(a.vmas)
    if total > MAX_VMAS:
        keep = sorted(sorted(range(total), key=lambda i: -a.vmas[i]["rss_kb"])[:MAX_VMAS])
        a = AddressSpace(a.pid, a.comm, [a.vmas[i] for i in keep])
    n = len(a.vmas)
    fig, ax = plt.subplots(figsize=(12, 0.28 * n + 1.6), dpi=100)
    y = np.arange(n)
    size = np.array([max(v["size_kb"], 1) for v in a.vmas], dtype=float)
    rss = np.array([v["rss_kb"] for v in a.vmas], dtype=float)
    anon = np.array([v["anon_kb"] for v in a.vmas], dtype=float)
    ax.barh(y, size, color="#dddddd", edgecolor="#999999", label="size (kB)")
    ax.barh(y, rss, color="#1f77b4", label="Rss (kB)")
    ax.barh(y, anon, color="#ff7f0e", height=0.4, label="Anonymous (kB)")
    ax.set_xscale("log")
    ax.set_yticks(y, [f"{v['start']:012x} {v['perms']} {v['name'] or '(anon)'}"[:60] for v in a.vmas], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("kB (log)")
    shown = f"{n} VMAs" if n == total else f"the {n} of {total} VMAs with the most Rss"
    ax.set_title(f"pid {a.pid} ({a.comm}): {shown}, size and Rss of each (from /proc/PID/smaps)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def write_png(kind: str, data: Any, path: str | os.PathLike) -> None:
    """Draw the picture of ``kind`` (see :data:`mmintro.views.picture.KINDS`) into ``path``."""
    plt = _pyplot()
    draw = {
        "memory": _memory,
        "migratetype": _migratetype,
        "fragmentation": _fragmentation,
        "address-space": _address_space,
    }[kind]
    fig = draw(plt, data)
    try:
        fig.savefig(path, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
