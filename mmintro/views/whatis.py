"""What a kernel address is, like crash's ``kmem ADDR`` (and drgn's identify_address).

The address is placed by the x86-64 layout (kernel image, vmemmap, vmalloc, direct map) and
then by what owns the memory:

==================  ============================================================================
kind                meaning
==================  ============================================================================
``symbol``          in the kernel image: ``symbol+0xoff/0xsize`` from the vmlinux symbols
``struct_page``     inside the vmemmap: the struct page of a pfn (and that page's type)
``vmalloc``         in a busy vmap area: range, caller, flags, the page and pfn behind it
``vmalloc_lazy``    in a lazily freed area waiting for the purge (unmapped)
``vmalloc_hole``    in the vmalloc range but in no area
``percpu``          in a CPU's unit of the embedded first per-CPU chunk (with the static symbol)
``slab``            in a slab object: cache, object start, offset, allocated or free
``slab_padding``    in a slab page past its last object
``large_kmalloc``   in a kmalloc_large() folio (PGTY_large_kmalloc)
``buddy``           in a free buddy block: its head pfn and order
``pcp``             in a free block on a CPU's per-CPU page list
``pagetable``       in a page-table page (PGTY_table)
``page``            any other direct-map page: its struct page, type and flags
``unmapped``        not mapped by the kernel page tables
==================  ============================================================================

For a ``page`` or ``struct_page`` of a user folio (``folio->mapping`` set), ``mappers`` lists
who maps it: the reverse-map walk of mm/rmap.c (``mmintro.reader.helpers.rmap.rmap_walk``);
a corrupt anon_vma or i_mmap tree raises ValidationError (one line).
"""

from __future__ import annotations

from typing import Any

from mmintro.arch.x86 import MODULES_END, MODULES_VADDR
from mmintro.reader.errors import FaultError, ValidationError
from mmintro.reader.helpers import vmalloc as vh
from mmintro.reader.helpers.list import list_for_each_entry
from mmintro.reader.helpers.mm import (
    PageBuddy,
    compound_head,
    compound_order,
    get_page_flags,
    page_to_pfn,
    pfn_to_page,
    vmemmap,
)
from mmintro.reader.helpers.mmzone import for_each_populated_zone, section_geometry
from mmintro.reader.helpers.percpu import for_each_online_cpu, per_cpu_ptr
from mmintro.reader.helpers.rmap import rmap_walk
from mmintro.reader.helpers.slab import slab_address, slab_cache_name, slab_object_info
from mmintro.reader.helpers.task import vma_name
from mmintro.reader.program import Program
from mmintro.views.pageflags import flag_names, flags_layout, page_type_name

__all__ = ["KINDS", "render", "whatis"]

KINDS = (
    "symbol",
    "struct_page",
    "vmalloc",
    "vmalloc_lazy",
    "vmalloc_hole",
    "percpu",
    "slab",
    "slab_padding",
    "large_kmalloc",
    "buddy",
    "pcp",
    "pagetable",
    "page",
    "unmapped",
)

_M64 = (1 << 64) - 1


def _present(prog: Program, pfn: int) -> bool:
    from mmintro.views.page import check_pfn

    try:
        check_pfn(prog, pfn)
    except (ValueError, KeyError, FaultError):
        return False
    return True


def _page_summary(prog: Program, pfn: int) -> dict[str, Any]:
    page = pfn_to_page(prog, pfn)
    flags = get_page_flags(page)
    word = page.page_type.value_()
    return {
        "pfn": pfn,
        "page": page.value_(),
        "phys": pfn << 12,
        "node": flags_layout(prog).node(flags),
        "flags": flag_names(prog, flags),
        "page_type": page_type_name(prog, word),
        "refcount": page._refcount.counter.value_(),
    }


def _image_range(prog: Program) -> tuple[int, int]:
    s = prog.symbols.by_name
    return s["_text"].address, s["_end"].address if "_end" in s else s["_text"].address + (1 << 30)


def _percpu_units(prog: Program) -> list[tuple[int, int, int]]:
    """(cpu, unit start, unit size) of each online CPU's unit in the first chunk."""
    got = prog.cache.get("whatis.percpu")
    if got is None:
        cpus = list(for_each_online_cpu(prog))
        base = _per_cpu_start(prog)
        offs = {cpu: (base + prog["__per_cpu_offset"][cpu].value_()) & 0xFFFF_FFFF_FFFF_FFFF for cpu in cpus}
        gaps = sorted({b - a for a, b in zip(sorted(offs.values()), sorted(offs.values())[1:]) if b > a})
        try:  # every page of the first chunk is populated, counted once per unit
            populated = prog["pcpu_nr_populated"].value_() << 12
        except KeyError:
            populated = 0
        # A unit's pages past the first chunk were given back (pcpu_embed_first_chunk frees
        # unit_size - size_sum of each), so a unit spans its populated pages, not the gap to
        # the next one; later chunks' pages, which pcpu_nr_populated also counts, live in
        # vmalloc space and can make the span a few pages too long on a real dump.
        size = min(gaps[0], populated) if gaps and populated else (gaps[0] if gaps else populated)
        got = [(cpu, off, size) for cpu, off in offs.items() if size]
        prog.cache["whatis.percpu"] = got
    return got


def _per_cpu_start(prog: Program) -> int:
    """``__per_cpu_start``: 0 where per-CPU symbols are linked at 0 (before 6.15), else the
    template's address in the image; a unit's address is ``__per_cpu_offset[cpu]`` past it."""
    sym = prog.symbols.by_name.get("__per_cpu_start")
    return sym.address if sym is not None else 0


def _percpu_symbol(prog: Program, off: int) -> str | None:
    """The static per-CPU variable at ``off`` into a unit, or None in the dynamic area."""
    start = _per_cpu_start(prog)
    end = prog.symbols.by_name.get("__per_cpu_end")
    addr = start + off
    if end is not None and addr >= end.address:
        return None
    try:
        sym = prog.symbol(addr)
    except LookupError:
        return None
    if sym.address < start or sym.name in ("__per_cpu_start", "__per_cpu_end"):
        return None
    return f"{sym.name}+{addr - sym.address:#x}/{sym.size:#x}"


def _pcp_blocks(prog: Program) -> dict[int, tuple[int, int, str, int]]:
    """head pfn -> (order, cpu, zone name, node) of every block on a per-CPU page list."""
    got = prog.cache.get("whatis.pcp")
    if got is not None:
        return got
    from mmintro.views.pagetypeinfo import pageblock_order

    got = {}
    nr = prog.types.struct("per_cpu_pages").walk("lists")[2].resolved().nelems
    pcptypes = prog.types.const("MIGRATE_PCPTYPES")
    orders = [i // pcptypes if i < nr - 2 else pageblock_order(prog) for i in range(nr)]  # pindex_to_order()
    lay = flags_layout(prog)
    for z in for_each_populated_zone(prog):
        zname = z.name.string_().decode()
        for cpu in for_each_online_cpu(prog):
            pcp = per_cpu_ptr(z.per_cpu_pageset, cpu)
            for i in range(nr):
                for page in list_for_each_entry(
                    "struct page",
                    pcp.lists[i].address_of_(),
                    "pcp_list",
                    name=f"{zname} cpu {cpu} pcp list {i}",
                    limit=1 << 22,
                ):
                    got[page_to_pfn(page).value_()] = (orders[i], cpu, zname, lay.node(get_page_flags(page)))
    prog.cache["whatis.pcp"] = got
    return got


def _free_buddy(prog: Program, pfn: int) -> tuple[int, int] | None:
    """mm/page_alloc.c is_free_buddy_page(): (head pfn, order) of the free block holding pfn."""
    nr_orders = prog.types.struct("zone").walk("free_area")[2].resolved().nelems  # NR_PAGE_ORDERS (from the type:
    # a corrupt node_data may leave no populated zone to look at)
    for order in range(nr_orders):
        head = pfn & ~((1 << order) - 1)
        if not _present(prog, head):
            break
        page = pfn_to_page(prog, head)
        if PageBuddy(page):
            bo = page.private.value_()
            if bo >= order:
                return (head, bo) if head + (1 << bo) > pfn else None
    return None


def _direct_map(prog: Program, addr: int, out: dict[str, Any]) -> None:
    pob = prog["page_offset_base"].value_()
    pfn = (addr - pob) >> 12
    out["pfn"] = pfn
    for cpu, start, size in _percpu_units(prog):
        if start <= addr < start + size:
            off = addr - start
            sym = _percpu_symbol(prog, off)
            out.update(kind="percpu", cpu=cpu, offset=off, symbol=sym, page=pfn_to_page(prog, pfn).value_())
            out["summary"] = f"per-CPU area of cpu {cpu} +{off:#x}" + (f": {sym}" if sym else " (dynamic)")
            return
    page = pfn_to_page(prog, pfn)
    out["page"] = page.value_()
    head = compound_head(page)
    head_pfn = page_to_pfn(head).value_()
    pt = page_type_name(prog, head.page_type.value_())
    if pt == "slab":
        info = slab_object_info(prog, addr)
        if info is None:  # a slab page outside min_low_pfn..max_pfn: not possible in a sane snapshot
            raise ValidationError(f"{addr:#x}: slab page pfn {head_pfn:#x} is outside the direct map of RAM")
        slab = info.slab
        nobj = slab.objects.value_()
        name = slab_cache_name(info.slab_cache)
        size = info.slab_cache.size.value_()
        first = slab_address(slab) + info.slab_cache.red_left_pad.value_()
        common = {
            "cache": info.slab_cache.value_(),
            "cache_name": name,
            "slab": slab.value_(),
            "slab_pfn": head_pfn,
            "object_size": info.slab_cache.object_size.value_(),
            "slot_size": size,
        }
        if (info.address - first) // size >= nobj:
            out.update(kind="slab_padding", **common)
            out["summary"] = f"in slab {slab.value_():#x} of {name} past its {nobj} objects (padding)"
            return
        state = {True: "allocated", False: "free", None: "state unknown (corrupt freelist)"}[info.allocated]
        out.update(kind="slab", object=info.address, offset=addr - info.address, allocated=info.allocated, **common)
        out["summary"] = (
            f"{'' if info.allocated else 'free '}slab object {name}+{addr - info.address:#x}: object "
            f"{info.address:#x} ({state}) in slab {slab.value_():#x} (pfn {head_pfn:#x})"
        )
        return
    if pt == "large_kmalloc":
        order = compound_order(head)
        start = pob + (head_pfn << 12)
        out.update(kind="large_kmalloc", head_pfn=head_pfn, order=order, object=start, offset=addr - start)
        out["summary"] = f"kmalloc_large() object {start:#x}+{addr - start:#x} (order-{order} folio, pfn {head_pfn:#x})"
        return
    buddy = _free_buddy(prog, pfn)
    if buddy is not None:
        out.update(kind="buddy", head_pfn=buddy[0], order=buddy[1])
        out["summary"] = f"free page in a buddy block: pfn {buddy[0]:#x} order {buddy[1]} ({1 << buddy[1]} pages)"
        return
    try:
        blocks = _pcp_blocks(prog)
    except ValidationError:
        blocks = {}
    for order in range(20):
        hp = pfn & ~((1 << order) - 1)
        got = blocks.get(hp)
        if got is not None and hp + (1 << got[0]) > pfn:
            out.update(kind="pcp", head_pfn=hp, order=got[0], cpu=got[1], zone=got[2])
            out["summary"] = f"free page on cpu {got[1]}'s per-CPU list of zone {got[2]}: pfn {hp:#x} order {got[0]}"
            return
    p = _page_summary(prog, pfn)
    out["page_info"] = p
    if pt == "table":
        out.update(kind="pagetable")
        out["summary"] = f"page-table page, pfn {pfn:#x} (PGTY_table)"
        return
    out.update(kind="page")
    desc = f"type {pt}" if pt else "no page type"
    if head_pfn != pfn:
        desc += f", tail of compound page pfn {head_pfn:#x} order {compound_order(head)}"
    out["summary"] = f"direct-map page pfn {pfn:#x}: {desc}, flags {'|'.join(p['flags']) or '0'}"


def _vmalloc(prog: Program, addr: int, out: dict[str, Any]) -> None:
    va = vh.find_vmap_area(prog, addr)
    if not va.value_():
        for lz in vh.for_each_lazy_vmap_area(prog):
            if lz.va_start.value_() <= addr < lz.va_end.value_():
                out.update(
                    kind="vmalloc_lazy", vmap_area=lz.value_(), start=lz.va_start.value_(), end=lz.va_end.value_()
                )
                out["summary"] = f"lazily freed vmap area {out['start']:#x}-{out['end']:#x} (unpurged, unmapped)"
                return
        out.update(kind="vmalloc_hole")
        out["summary"] = "vmalloc range, in no vmap area (unmapped)"
        return
    start, end = va.va_start.value_(), va.va_end.value_()
    vm = va.vm
    out.update(kind="vmalloc", vmap_area=va.value_(), vm_struct=vm.value_(), start=start, end=end)
    if vm.value_():
        v = vm.deref_().read_()
        flags = v.flags.value_()
        caller = v.caller.value_()
        out["caller"] = prog.symbols.describe(caller) if caller else None
        out["vm_flags"] = [
            w
            for bit, w in (
                (vh.VM_IOREMAP, "ioremap"),
                (vh.VM_ALLOC, "vmalloc"),
                (vh.VM_MAP, "vmap"),
                (vh.VM_USERMAP, "user"),
                (vh.VM_SPARSE, "sparse"),
            )
            if flags & bit
        ]
        out["nr_pages"] = v.nr_pages.value_()
        out["phys_addr"] = v.phys_addr.value_()
    what = f"vmap area {start:#x}-{end:#x} ({end - start} bytes)"
    if out.get("caller"):
        what += f" {out['caller']}"
    if out.get("vm_flags"):
        what += " " + " ".join(out["vm_flags"])
    try:
        phys = prog.translate(addr)
    except FaultError:
        out["mapped"] = False
        out["summary"] = what + (", guard page (unmapped)" if end - 4096 <= addr else ", unmapped")
        return
    pfn = phys >> 12
    out.update(mapped=True, phys=phys, pfn=pfn, index=(addr - start) >> 12)
    if _present(prog, pfn):
        out["page"] = pfn_to_page(prog, pfn).value_()
    out["summary"] = (
        what
        + f", page {(addr - start) >> 12}: pfn {pfn:#x}"
        + (f" (struct page {out['page']:#x})" if "page" in out else " (not RAM)")
    )


def _mappers(prog: Program, out: dict[str, Any]) -> None:
    """``out["mappers"]``: who maps the user page ``out["pfn"]`` (rmap_walk), if it has a mapping."""
    if out.get("kind") not in ("page", "struct_page") or "pfn" not in out or not _present(prog, out["pfn"]):
        return
    page = pfn_to_page(prog, out["pfn"])
    head = compound_head(page)
    if page_type_name(prog, head.page_type.value_()) not in (None, "hugetlb") or not head.mapping.value_():
        return
    rows = []
    for h in rmap_walk(page):
        v = h.vma
        rows.append(
            {
                "pids": list(h.pids),
                "comms": list(h.comms),
                "mm": h.mm.value_(),
                "vma": v.value_(),
                "address": h.address,
                "vm_start": v.vm_start.value_(),
                "vm_end": v.vm_end.value_(),
                "name": vma_name(v),
            }
        )
    out["mappers"] = rows


def whatis(prog: Program, addr: int) -> dict[str, Any]:
    """What ``addr`` is (JSON-ready dict with ``kind``, ``summary`` and kind-specific fields)."""
    out = _whatis(prog, addr)
    _mappers(prog, out)
    return out


def _whatis(prog: Program, addr: int) -> dict[str, Any]:
    addr &= _M64
    out: dict[str, Any] = {"address": addr}
    pob = prog["page_offset_base"].value_()
    vmemmap_base = vmemmap(prog).value_()
    g = section_geometry(prog)
    max_pfn = (prog["__highest_present_section_nr"].value_() + 1) << g.pfn_section_shift
    psize = prog.types.struct("page").size
    text, end = _image_range(prog)
    if text <= addr < end:
        try:
            sym = prog.symbol(addr)
        except LookupError:
            out.update(kind="symbol", symbol=None)
            out["summary"] = "kernel image, no symbol"
        else:
            out.update(kind="symbol", symbol=sym.name, offset=addr - sym.address, size=sym.size, symbol_kind=sym.kind)
            out["summary"] = f"kernel {sym.kind} symbol {sym.name}+{addr - sym.address:#x}/{sym.size:#x}"
        try:
            pfn = prog.translate(addr) >> 12
            out.update(pfn=pfn, page=pfn_to_page(prog, pfn).value_())
        except FaultError:
            pass
        return out
    if vmemmap_base <= addr < vmemmap_base + max_pfn * psize:
        pfn = (addr - vmemmap_base) // psize
        page = vmemmap_base + pfn * psize
        if _present(prog, pfn):
            p = _page_summary(prog, pfn)
            out.update(kind="struct_page", pfn=pfn, page=page, offset=addr - page, page_info=p)
            out["summary"] = (
                f"struct page of pfn {pfn:#x} +{addr - page:#x} ({'type ' + p['page_type'] if p['page_type'] else 'no page type'})"
            )
            return out
    elif vh.is_vmalloc_addr(prog, addr):
        _vmalloc(prog, addr, out)
        return out
    elif MODULES_VADDR <= addr < MODULES_END and vh.find_vmap_area(prog, addr).value_():
        # The module area (execmem: module text, BPF programs) is not is_vmalloc_addr(), but
        # its allocations are vmap areas in the same busy tree.
        _vmalloc(prog, addr, out)
        return out
    elif pob <= addr < pob + (max_pfn << 12) and _present(prog, (addr - pob) >> 12):
        try:
            prog.translate(addr)
        except FaultError:
            pass
        else:
            _direct_map(prog, addr, out)
            return out
    try:
        phys = prog.translate(addr)
    except FaultError:
        out.update(kind="unmapped")
        out["summary"] = "not mapped by the kernel page tables"
    else:
        out.update(kind="page", phys=phys, pfn=phys >> 12)
        out["summary"] = f"mapped kernel address, physical {phys:#x}"
    return out


def render(w: dict[str, Any]) -> str:
    lines = [f"{w['address']:016x}: {w['summary']}"]
    skip = {"address", "summary", "kind", "page_info", "mappers"}
    details = [(k, v) for k, v in w.items() if k not in skip]
    for k, v in details:
        if (
            isinstance(v, int)
            and not isinstance(v, bool)
            and k not in ("order", "cpu", "offset", "nr_pages", "index", "object_size", "slot_size", "size", "node")
        ):
            v = f"{v:#x}"
        lines.append(f"  {k:<12} {v}")
    p = w.get("page_info")
    if p:
        lines.append(f"  {'page_type':<12} {p['page_type'] or '-'}")
        lines.append(f"  {'flags':<12} {'|'.join(p['flags']) or '0'}")
        lines.append(f"  {'refcount':<12} {p['refcount']}")
        lines.append(f"  {'node':<12} {p['node']}")
    if "mappers" in w:
        if not w["mappers"]:
            lines.append("  mapped by no process (rmap found no page-table entry)")
        for m in w["mappers"]:
            who = ",".join(map(str, m["pids"])) or "no task"
            comm = ",".join(dict.fromkeys(m["comms"]))
            name = f" {m['name']}" if m["name"] else ""  # vma_name() brackets [heap] etc. itself
            comm = f" ({comm})" if comm else ""
            lines.append(
                f"  mapped by pid {who}{comm} at {m['address']:#x} in VMA {m['vm_start']:#x}-{m['vm_end']:#x}{name}"
            )
    return "\n".join(lines) + "\n"
