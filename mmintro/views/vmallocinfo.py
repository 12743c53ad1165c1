"""/proc/vmallocinfo (mm/vmalloc.c vmalloc_info_show of 6.18), read from a snapshot.

For each vmap node in turn, its busy list in address order: an area without a vm_struct
prints ``vm_map_ram`` if it is one (VMAP_RAM) and nothing otherwise; a vm_struct still
VM_UNINITIALIZED is skipped; the others print ``0x%pK-0x%pK %7ld`` (``vm->addr``, ``addr +
size`` with the guard page, ``size``), `` %pS`` of the caller (``symbol+0xoff/0xsize`` from
the vmlinux symbols), `` pages=%d``, `` phys=%pa``, the flag words ``ioremap``, ``sparse``,
``vmalloc``, ``vmap``, ``user``, ``dma-coherent``, `` vpages`` when the pages array is itself
vmalloc'd, and `` N<nid>=<pages>`` per node of the pages (show_numa_info).  Then every node's
lazily freed areas as ``unpurged vm_area`` (show_purge_info).

Addresses are printed raw: a real kernel hashes %pK unless kptr_restrict lets root see them.
With several vmap nodes the output is sorted per node, not globally, as 6.18 prints it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mmintro.reader.helpers import vmalloc as vh
from mmintro.reader.program import Program
from mmintro.reader.validate import check_vmap_area, note

__all__ = ["VmallocRow", "parse", "render", "vmallocinfo"]


class VmallocRow(NamedTuple):
    """One /proc/vmallocinfo line."""

    start: int
    end: int
    size: int
    caller: str | None
    """``%pS`` of ``vm->caller`` (``name+0xoff/0xsize``, or the hex address)."""
    pages: int
    phys: int
    words: list[str]
    """``ioremap``, ``vmalloc``, ``vmap``, ``user``, ``vpages``, ..., or ``vm_map_ram`` /
    ``unpurged vm_area`` for areas without a vm_struct."""
    nodes: dict[int, int]
    """Pages per node id (show_numa_info)."""
    vmap_area: int
    vm_struct: int
    node: int
    """vmap node whose busy (or lazy) list holds the area."""


_WORDS = (
    (vh.VM_IOREMAP, "ioremap"),
    (vh.VM_SPARSE, "sparse"),
    (vh.VM_ALLOC, "vmalloc"),
    (vh.VM_MAP, "vmap"),
    (vh.VM_USERMAP, "user"),
    (vh.VM_DMA_COHERENT, "dma-coherent"),
)


def _high_memory_nodes(prog: Program) -> list[int]:
    from mmintro.reader.helpers.mmzone import for_each_node_state

    try:
        return list(for_each_node_state(prog, "N_HIGH_MEMORY"))
    except (KeyError, LookupError):
        return list(range(prog["nr_node_ids"].value_()))


def vmallocinfo(prog: Program) -> list[VmallocRow]:
    from mmintro.views.pageflags import flags_layout

    lay = flags_layout(prog)
    node_order = _high_memory_nodes(prog)
    rows = []
    for va in vh.for_each_vmap_area(prog):
        note(prog, check_vmap_area(va))  # inside the vmalloc range, vm_struct inside its area
        start, end = va.va_start.value_(), va.va_end.value_()
        node = vh.addr_to_node_id(prog, start)
        vm = va.vm
        if not vm.value_():
            if va.flags.value_() & vh.VMAP_RAM:
                rows.append(VmallocRow(start, end, end - start, None, 0, 0, ["vm_map_ram"], {}, va.value_(), 0, node))
            continue
        v = vm.deref_().read_()
        flags = v.flags.value_()
        if flags & vh.VM_UNINITIALIZED:
            continue
        addr, size = v.addr.value_(), v.size.value_()
        caller_addr = v.caller.value_()
        caller = prog.symbols.describe(caller_addr) if caller_addr else None
        words = [w for bit, w in _WORDS if flags & bit]
        if vh.is_vmalloc_addr(prog, v.pages.value_()):
            words.append("vpages")
        counts = vh.vm_area_page_nids(prog, vm, lay.nodes_pgoff, lay.nodes_shift)
        nodes = {n: counts[n] for n in node_order if counts.get(n)}
        rows.append(
            VmallocRow(
                addr,
                addr + size,
                size,
                caller,
                v.nr_pages.value_(),
                v.phys_addr.value_(),
                words,
                nodes,
                va.value_(),
                vm.value_(),
                node,
            )
        )
    for va in vh.for_each_lazy_vmap_area(prog):
        start, end = va.va_start.value_(), va.va_end.value_()
        rows.append(
            VmallocRow(
                start,
                end,
                end - start,
                None,
                0,
                0,
                ["unpurged vm_area"],
                {},
                va.value_(),
                0,
                vh.addr_to_node_id(prog, start),
            )
        )
    return rows


def _line(r: VmallocRow) -> str:
    s = f"0x{r.start:016x}-0x{r.end:016x} {r.size:7}"
    if r.words and r.words[0] in ("vm_map_ram", "unpurged vm_area"):
        return f"{s} {r.words[0]}\n"
    if r.caller:
        s += f" {r.caller}"
    if r.pages:
        s += f" pages={r.pages}"
    if r.phys:
        s += f" phys=0x{r.phys:016x}"
    s += "".join(f" {w}" for w in r.words)
    s += "".join(f" N{n}={c}" for n, c in r.nodes.items())
    return s + "\n"


def render(rows: list[VmallocRow]) -> str:
    return "".join(_line(r) for r in rows)


def to_json(rows: list[VmallocRow]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = r._asdict()
        for k in ("start", "end", "vmap_area", "vm_struct", "phys"):
            d[k] = f"{d[k]:#x}"
        d["nodes"] = {str(n): c for n, c in r.nodes.items()}
        out.append(d)
    return out


def parse(text: str) -> list[dict[str, Any]]:
    """/proc/vmallocinfo text (ours or a real kernel's) → one dict per line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split()
        if len(f) < 2 or "-" not in f[0] or not f[1].isdigit():
            raise ValueError(f"vmallocinfo: line {n} is not 'START-END SIZE ...': {line!r}")
        a, _, b = f[0].partition("-")
        d: dict[str, Any] = {
            "start": int(a, 16),
            "end": int(b, 16),
            "size": int(f[1]),
            "caller": None,
            "pages": 0,
            "phys": 0,
            "words": [],
            "nodes": {},
        }
        rest = f[2:]
        if rest == ["unpurged", "vm_area"] or rest == ["vm_map_ram"]:
            d["words"] = [" ".join(rest)]
            out.append(d)
            continue
        for tok in rest:
            if tok.startswith("pages="):
                d["pages"] = int(tok[6:])
            elif tok.startswith("phys="):
                d["phys"] = int(tok[5:], 16)
            elif tok[0] == "N" and "=" in tok and tok[1:].split("=")[0].isdigit():
                nid, _, c = tok[1:].partition("=")
                d["nodes"][int(nid)] = int(c)
            elif "+" in tok and "/" in tok or tok.startswith("0x"):
                d["caller"] = tok
            else:
                d["words"].append(tok)
        out.append(d)
    return out
