"""What changed between two snapshots A and B, both read through the reader.

* meminfo and vmstat: the lines whose value differs (a line only one snapshot has counts as
  changed from or to nothing);
* buddyinfo: the (node, zone) rows whose free block counts differ, per order;
* slab caches (slabinfo): caches added and removed, and for each cache in both the
  active_objs / num_objs / active_slabs / num_slabs that changed (caches are matched by name;
  a name several caches share is matched in list order);
* processes (every task but the idle tasks, matched by pid: an exec shows as a changed comm):
  new and exited ones, and for each thread-group leader in both with an mm, its RSS
  (get_mm_rss) delta and its VMAs added, removed and changed (matched by vm_start; end, permissions, name or Rss differ), from
  /proc/PID/smaps's columnar scan.
"""

from __future__ import annotations

from typing import Any

from mmintro.reader.program import Program

__all__ = ["diff", "render"]

_SLAB_FIELDS = ("active_objs", "num_objs", "active_slabs", "num_slabs")


def _changed(a: dict[str, int], b: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for name in list(a) + [n for n in b if n not in a]:
        va, vb = a.get(name), b.get(name)
        if va != vb:
            delta = vb - va if va is not None and vb is not None else None
            out.append({"name": name, "a": va, "b": vb, "delta": delta})
    return out


def _slabs(prog: Program) -> dict[str, dict[str, int]]:
    from mmintro.views.slabinfo import slabinfo

    out: dict[str, dict[str, int]] = {}
    for r in reversed(slabinfo(prog)):  # oldest first, so that a repeated name gets #2, #3 in creation order
        name = r.name
        i = 2
        while name in out:
            name, i = f"{r.name}#{i}", i + 1
        out[name] = {f: getattr(r, f) for f in _SLAB_FIELDS}
    return out


def _processes(prog: Program) -> dict[int, dict[str, Any]]:
    from mmintro.reader.helpers.task import for_each_task
    from mmintro.views.ps import get_mm_rss

    page_kb = prog.page_size >> 10
    out: dict[int, dict[str, Any]] = {}
    for t in for_each_task(prog, idle=False):
        pid = t.pid.value_()
        if pid == 0:
            continue
        mm = t.mm.value_()
        out[pid] = {
            "pid": pid,
            "tgid": t.tgid.value_(),
            "comm": t.comm.string_().decode(errors="replace"),
            "task": t.value_(),
            "mm": mm,
            "rss_kb": get_mm_rss(t.mm) * page_kb if mm else 0,
        }
    return out


def _vmas(prog: Program, pid: int) -> dict[int, dict[str, Any]]:
    from mmintro.views.smaps import smaps

    return {
        v.maps.start: {
            "start": v.maps.start,
            "end": v.maps.end,
            "perms": v.maps.perms,
            "name": v.maps.name,
            "rss_kb": v.stats.resident >> 10,
        }
        for v in smaps(prog, pid).vmas
    }


def _process_diff(a: Program, b: Program) -> dict[str, Any]:
    pa, pb = _processes(a), _processes(b)
    new = [pb[p] for p in sorted(pb) if p not in pa]
    exited = [pa[p] for p in sorted(pa) if p not in pb]
    changed = []
    for pid in sorted(set(pa) & set(pb)):
        x, y = pa[pid], pb[pid]
        if x["tgid"] != pid or not x["mm"] or not y["mm"]:
            continue  # threads share their leader's mm; kernel threads have none
        va, vb = _vmas(a, pid), _vmas(b, pid)
        added = [vb[s] for s in sorted(vb) if s not in va]
        removed = [va[s] for s in sorted(va) if s not in vb]
        vchanged = [{"start": s, "a": va[s], "b": vb[s]} for s in sorted(set(va) & set(vb)) if va[s] != vb[s]]
        if added or removed or vchanged or x["rss_kb"] != y["rss_kb"] or x["comm"] != y["comm"]:
            changed.append(
                {
                    "pid": pid,
                    "comm": y["comm"],
                    "comm_a": x["comm"],
                    "rss_kb": [x["rss_kb"], y["rss_kb"]],
                    "rss_delta_kb": y["rss_kb"] - x["rss_kb"],
                    "vmas_added": added,
                    "vmas_removed": removed,
                    "vmas_changed": vchanged,
                }
            )
    return {"new": new, "exited": exited, "changed": changed}


def diff(a: Program, b: Program) -> dict[str, Any]:
    """The differences from snapshot ``a`` to snapshot ``b`` (see the module's text)."""
    from mmintro.views.buddyinfo import buddyinfo
    from mmintro.views.meminfo import meminfo
    from mmintro.views.vmstat import vmstat

    mi = _changed(*({ln.name: ln.value for ln in meminfo(p)} for p in (a, b)))
    vs = _changed(vmstat(a), vmstat(b))
    ba = {(r.node, r.zone): r.nr_free for r in buddyinfo(a)}
    bb = {(r.node, r.zone): r.nr_free for r in buddyinfo(b)}
    buddy = []
    for key in list(ba) + [k for k in bb if k not in ba]:
        x, y = ba.get(key), bb.get(key)
        if x != y:
            delta = [q - p for p, q in zip(x, y)] if x is not None and y is not None else None
            buddy.append({"node": key[0], "zone": key[1], "a": x, "b": y, "delta": delta})
    sa, sb = _slabs(a), _slabs(b)
    slab_changed = []
    for name in sa:
        if name in sb and sa[name] != sb[name]:
            slab_changed.append(
                {"name": name}
                | {f: [sa[name][f], sb[name][f]] for f in _SLAB_FIELDS}
                | {f"{f}_delta": sb[name][f] - sa[name][f] for f in _SLAB_FIELDS}
            )
    slab = {
        "added": [n for n in sb if n not in sa],
        "removed": [n for n in sa if n not in sb],
        "changed": slab_changed,
    }
    return {"meminfo": mi, "vmstat": vs, "buddyinfo": buddy, "slab": slab, "processes": _process_diff(a, b)}


def _num(v: int | None) -> str:
    return "-" if v is None else str(v)


def _delta(v: int | None) -> str:
    return "" if v is None else f"({v:+d})"


def render(d: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    out = [f"--- {name_a}", f"+++ {name_b}"]
    w = out.append
    for section, unit in (("meminfo", " kB"), ("vmstat", "")):
        rows = d[section]
        w(f"{section}: {len(rows)} changed")
        width = max((len(r["name"]) for r in rows), default=0)
        for r in rows:
            u = "" if r["name"].startswith("HugePages_") else unit
            w(f"  {r['name'] + ':':<{width + 1}} {_num(r['a']):>12} -> {_num(r['b']):>12}{u} {_delta(r['delta'])}")
    w(f"buddyinfo: {len(d['buddyinfo'])} zones changed")
    for r in d["buddyinfo"]:
        w(f"  Node {r['node']}, zone {r['zone']:>8}")
        for label, row in (("a", r["a"]), ("b", r["b"]), ("delta", r["delta"])):
            if row is not None:
                fmt = "{:+6d} " if label == "delta" else "{:6d} "
                w(f"    {label:>5} " + "".join(fmt.format(n) for n in row))
    s = d["slab"]
    w(f"slab caches: {len(s['added'])} added, {len(s['removed'])} removed, {len(s['changed'])} changed")
    out += [f"  + {n}" for n in s["added"]]
    out += [f"  - {n}" for n in s["removed"]]
    for r in s["changed"]:
        w(
            f"  {r['name']:<24} "
            + "  ".join(f"{f} {r[f][0]} -> {r[f][1]} ({r[f + '_delta']:+d})" for f in _SLAB_FIELDS if r[f + "_delta"])
        )
    p = d["processes"]
    w(f"processes: {len(p['new'])} new, {len(p['exited'])} exited, {len(p['changed'])} changed")
    out += [f"  + pid {r['pid']} ({r['comm']}) rss {r['rss_kb']} kB" for r in p["new"]]
    out += [f"  - pid {r['pid']} ({r['comm']}) rss {r['rss_kb']} kB" for r in p["exited"]]
    for r in p["changed"]:
        comm = r["comm"] if r["comm"] == r["comm_a"] else f"{r['comm_a']} -> {r['comm']}"
        w(f"  pid {r['pid']} ({comm}): rss {r['rss_kb'][0]} -> {r['rss_kb'][1]} kB ({r['rss_delta_kb']:+d})")
        for sign, key in (("+", "vmas_added"), ("-", "vmas_removed")):
            for v in r[key]:
                w(f"    {sign} {v['start']:x}-{v['end']:x} {v['perms']} Rss {v['rss_kb']:>8} kB  {v['name']}")
        for c in r["vmas_changed"]:
            x, y = c["a"], c["b"]
            parts = [
                f"{k} {x[k] if k != 'end' else hex(x[k])} -> {y[k] if k != 'end' else hex(y[k])}"
                for k in ("end", "perms", "name", "rss_kb")
                if x[k] != y[k]
            ]
            w(f"    ~ {x['start']:x}-{x['end']:x} {x['name']}: " + ", ".join(parts))
    return "\n".join(out) + "\n"
