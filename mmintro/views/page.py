"""One struct page, decoded (``mmintro page PFN``): flags by name, zone and node from the
flags word, counts, page type, private and compound head."""

from __future__ import annotations

from typing import Any

from mmintro.reader.errors import FaultError
from mmintro.reader.helpers.mm import get_page_flags, pfn_to_page, vmemmap
from mmintro.reader.helpers.mmzone import NODE_DATA, nr_to_section, section_geometry
from mmintro.reader.object import Object
from mmintro.reader.program import Program
from mmintro.views.pageflags import flag_names, flags_layout, page_type_name

__all__ = ["check_pfn", "page_info", "render"]


def check_pfn(prog: Program, pfn: int) -> None:
    """Raise ValueError unless ``pfn`` lies in a present memory section (has a struct page)."""
    g = section_geometry(prog)
    if pfn < 0:
        raise ValueError(f"pfn {pfn} is negative")
    nr = pfn >> g.pfn_section_shift
    highest = prog["__highest_present_section_nr"].value_()
    if nr > highest:
        raise ValueError(f"pfn {pfn:#x} is out of range (beyond the last present section, {highest})")
    ms = nr_to_section(prog, nr)
    if ms is None or not ms.section_mem_map.value_() & g.present:
        raise ValueError(f"pfn {pfn:#x} is in memory section {nr}, which is not present (no struct page)")


def _index(page: Object) -> int:
    try:  # 6.18 names the union member __folio_index; older kernels call it index
        return page.member_("__folio_index").value_()
    except AttributeError:
        return page.index.value_()


def page_info(prog: Program, pfn: int) -> dict[str, Any]:
    """The decoded ``struct page`` of a pfn, as a dict (JSON-ready)."""
    check_pfn(prog, pfn)
    page = pfn_to_page(prog, pfn)
    lay = flags_layout(prog)
    flags = get_page_flags(page)
    zid, nid = lay.zone(flags), lay.node(flags)
    try:
        zone_name = NODE_DATA(prog, nid).node_zones[zid].name.string_().decode()
    except (LookupError, AttributeError, FaultError, UnicodeDecodeError):  # node not online: index only
        zone_name = None
    word = page.page_type.value_()
    ptype = page_type_name(prog, word)
    head = page.compound_head.value_()
    size = prog.types.struct("page").size
    info: dict[str, Any] = {
        "pfn": pfn,
        "page": int(page),
        "phys": pfn << 12,
        "flags": flags,
        "flag_names": flag_names(prog, flags),
        "node": nid,
        "zone": zid,
        "zone_name": zone_name,
        "refcount": page._refcount.counter.value_(),
        "page_type": word,
        "page_type_name": ptype,
        # page_mapcount() is _mapcount + 1; the word is a mapcount only when the page has no type.
        "mapcount": None if ptype is not None else page._mapcount.counter.value_() + 1,
        "private": page.private.value_(),
        "mapping": page.mapping.value_(),
        "index": _index(page),
        "compound_head": None,
        "compound_head_pfn": None,
    }
    if head & 1:
        info["compound_head"] = head - 1
        info["compound_head_pfn"] = (head - 1 - vmemmap(prog).value_()) // size
        # A tail page's flags word is folio metadata (the first tail's low byte is the folio's
        # order), not page flags: report the folio's flags, as /proc/kpageflags and dump_page do.
        info["flag_names"] = []
        info["folio_flags"] = None
        hp = info["compound_head_pfn"]
        if (head - 1 - vmemmap(prog).value_()) % size == 0 and 0 <= hp < (1 << 52):
            try:
                # (PG_head is the head page's own, as KPF_COMPOUND_HEAD/TAIL go)
                info["folio_flags"] = get_page_flags(pfn_to_page(prog, hp)) & ~(1 << prog.types.const("PG_head"))
                info["flag_names"] = flag_names(prog, info["folio_flags"])
            except FaultError:
                pass
    return info


def render(i: dict[str, Any]) -> str:
    def h(v: int | None) -> str:
        return "-" if v is None else f"{v:#x}"

    zone = f"{i['zone']} ({i['zone_name']})" if i["zone_name"] else str(i["zone"])
    ptype = f"{i['page_type']:#010x}" + (f" ({i['page_type_name']})" if i["page_type_name"] else " (none)")
    lines = [
        f"PFN            {i['pfn']:#x} ({i['pfn']})",
        f"struct page    {i['page']:#x}",
        f"physical       {i['phys']:#x}",
        (
            f"flags          {i['flags']:#018x}  {'|'.join(i['flag_names']) or '0'}"
            if i["compound_head"] is None
            else f"flags          {i['flags']:#018x}  (a tail page: its folio's flags are "
            f"{'|'.join(i['flag_names']) or '0' if i.get('folio_flags') is not None else 'unreadable'})"
        ),
        f"node           {i['node']}",
        f"zone           {zone}",
        f"refcount       {i['refcount']}",
        f"mapcount       {'-' if i['mapcount'] is None else i['mapcount']}",
        f"page_type      {ptype}",
        f"private        {i['private']:#x}",
        f"mapping        {i['mapping']:#x}",
        f"index          {i['index']:#x}",
        f"compound_head  {h(i['compound_head'])}"
        + (f" (pfn {i['compound_head_pfn']:#x})" if i["compound_head_pfn"] is not None else ""),
    ]
    return "\n".join(lines) + "\n"
