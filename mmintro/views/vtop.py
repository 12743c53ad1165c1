"""Virtual-to-physical translation shown level by level (crash's ``vtop``).

:func:`vtop` walks a kernel address through swapper_pg_dir (or any pgd); for a user address
through a task's pgd, crash's ``vtop -c PID ADDR``, see :func:`vtop_pid` (in
:mod:`mmintro.views.vm`, with crash's layout: PUD and PMD leaves, the VMA, the page).
"""

from __future__ import annotations

from typing import Any

from mmintro.reader.program import Program
from mmintro.views.page import page_info
from mmintro.views.vm import render_vtop as render_pid
from mmintro.views.vm import vtop_pid

__all__ = ["render", "render_pid", "vtop", "vtop_pid"]


def vtop(prog: Program, vaddr: int, pgd_phys: int | None = None) -> dict[str, Any]:
    """Each level of the walk of ``vaddr`` (kernel page tables unless ``pgd_phys``), the
    physical address, and the struct page of the target if it has one.

    :raises FaultError: if the address is not mapped
    """
    w = prog.walk(vaddr, pgd_phys)
    levels = [
        {
            "level": s.level,
            "table": s.table,
            "index": s.index,
            "entry_addr": s.table + 8 * s.index,
            "entry": s.entry,
            "flags": list(s.flags),
        }
        for s in w.steps
    ]
    try:
        page = page_info(prog, w.phys >> 12)
    except ValueError:  # not covered by a present memory section (MMIO, hole): no struct page
        page = None
    return {"vaddr": w.vaddr, "phys": w.phys, "page_size": w.page_size, "levels": levels, "page": page}


def render(v: dict[str, Any]) -> str:
    size = {1 << 12: "4 KiB", 1 << 21: "2 MiB", 1 << 30: "1 GiB"}.get(v["page_size"], hex(v["page_size"]))
    lines = [f"{'VIRTUAL':<18}{'PHYSICAL'}", f"{v['vaddr']:<18x}{v['phys']:x}", ""]
    lines.append(f"{'LEVEL':<6}{'TABLE':>18}{'INDEX':>6}  {'ENTRY ADDR':<16}    {'ENTRY':<16}  FLAGS")
    for lv in v["levels"]:
        lines.append(
            f"{lv['level'].upper():<6}{lv['table']:>18x}{lv['index']:>6}  "
            f"{lv['entry_addr']:016x} => {lv['entry']:016x}  ({'|'.join(lv['flags'])})"
        )
    lines.append(f"{'PAGE':<6}{v['phys'] & ~(v['page_size'] - 1):>18x}  ({size})")
    lines.append("")
    p = v["page"]
    if p is None:
        lines.append("(no struct page: the physical address is not in a present memory section)")
    else:
        cnt = p["refcount"]
        flags = "|".join(p["flag_names"]) + (f" {p['page_type_name']}" if p["page_type_name"] else "")
        lines.append(f"{'PAGE':>16}  {'PHYSICAL':>12}  {'MAPPING':>16}  {'INDEX':>8} {'CNT':>3}  FLAGS")
        lines.append(
            f"{p['page']:016x}  {p['phys']:>12x}  {p['mapping']:>16x}  {p['index']:>8x} {cnt:>3}  "
            f"{p['flags']:x} {flags}"
        )
    return "\n".join(lines) + "\n"
