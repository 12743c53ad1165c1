#!/usr/bin/env python3
"""mmintro against real drgn on a real Linux 6.18 dump (Debian's kernel under QEMU), with the
debug info ``mmintro debuginfo`` generates from the image's BTF and the dump's kallsyms.

    python benchmarks/bench_realdump.py [DUMP_DIR] [--repeat N]

DUMP_DIR is a reference-dump directory made by ``mmintro.realkernel.qemu`` (default: the
harness's ``real-default`` dump, made on first use, ~20 s).  Every census runs on the same dump
in both tools, both warm (the vmcore in the OS page cache; mmintro's ``prog.cache`` cleared
before each timed pass, so nothing it computed before is reused):

* open: ``open_dump(vmcore, vmlinuz)`` (BTF closure and kallsyms from their on-disk caches),
  and drgn's ``set_core_dump`` + ``try_file(debug file)``;
* page census: mmintro's columnar scan (``page_array`` over the vmemmap: flags, page_type,
  compound_head of every present pfn, then counts in numpy) against drgn's ``for_each_page``
  with ``page.flags`` (and the same counts);
* slab census: mmintro's ``slab_census`` (every object of every cache, allocated or free)
  against drgn's allocated-object walk of every cache (``slab_cache_for_each_allocated_object``'s
  per-slab walk, with its per-cache ``for_each_page`` scan done once for all caches, as
  ``mmintro crosscheck`` does; the stock helper would scan every struct page per cache);
  drgn's ``slab_cache_usage`` of every cache is timed too;
* smaps of the workload's parent process: mmintro's ``views.smaps`` against drgn's
  ``follow_page`` on every page of every VMA, with the struct page fields smaps_account reads.

Each census must agree between the tools; the script prints times and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dump_dir", nargs="?", help="a reference dump directory (default: real-default)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes of each mmintro census (best taken)")
    args = ap.parse_args()

    import drgn
    from drgn.helpers.linux.mm import follow_page, for_each_page, for_each_vma
    from drgn.helpers.linux.pid import find_task
    from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage

    from mmintro.crosscheck import open_drgn_real
    from mmintro.reader.columns import page_array, present_pfn_mask
    from mmintro.reader.dump import open_dump
    from mmintro.reader.helpers import slab as sh
    from mmintro.realkernel.qemu import GuestConfig, cached_reference_dump, load_reference_dump
    from mmintro.snapshot.debuginfo import cached_debuginfo
    from mmintro.views import smaps as S

    ref = (
        load_reference_dump(Path(args.dump_dir))
        if args.dump_dir
        else cached_reference_dump(GuestConfig(), "real-default")
    )
    vmcore, vmlinuz = str(ref.path("elf")), ref.vmlinuz
    pid = ref.pids["parent"]
    print(
        f"dump {vmcore} ({ref.kernel_release}, {ref.config.mem_mib} MiB, {ref.config.cpus} CPUs); "
        f"workload parent pid {pid}"
    )

    # -- open ----------------------------------------------------------------------------------
    open_dump(vmcore, vmlinuz).close()  # warm: BTF closure and kallsyms caches, the file in the page cache
    t_open, t_open_med, prog = best(lambda: open_dump(vmcore, vmlinuz), args.repeat)
    debug = str(cached_debuginfo(prog))
    t_dopen = best(lambda: open_drgn_real(vmcore, debug, core=prog.core), 1)[0]
    dprog = open_drgn_real(vmcore, debug, core=prog.core)
    print(f"open_dump (warm)                         {t_open:8.3f} s (median {t_open_med:.3f} s)")
    print(f"drgn set_core_dump + generated debuginfo {t_dopen:8.3f} s")

    # -- page census -----------------------------------------------------------------------------
    pg_head, pg_lru = (1 << prog.types.const(n) for n in ("PG_head", "PG_lru"))
    buddy = prog.types.const("PGTY_buddy")

    def mine_pages():
        prog.cache.clear()
        arr = page_array(prog, {"flags": "flags", "page_type": "page_type", "compound_head": "compound_head"})
        present = present_pfn_mask(prog)
        flags = arr["flags"][present]
        return {
            "pages": int(present.sum()),
            "head": int(np.count_nonzero(flags & np.uint64(pg_head))),
            "tail": int(np.count_nonzero(arr["compound_head"][present] & np.uint64(1))),
            "lru": int(np.count_nonzero(flags & np.uint64(pg_lru))),
            "buddy": int(np.count_nonzero((arr["page_type"][present] >> np.uint32(24)) == buddy)),
        }

    # 6.18: page->flags is memdesc_flags_t { unsigned long f; }
    wrapped = dprog.type("struct page").member("flags").type.unqualified().kind == drgn.TypeKind.TYPEDEF

    def drgn_pages():
        c = dict.fromkeys(("pages", "head", "tail", "lru", "buddy"), 0)
        for page in for_each_page(dprog):
            f = (page.flags.f if wrapped else page.flags).value_()
            c["pages"] += 1
            c["head"] += bool(f & pg_head)
            c["tail"] += page.compound_head.value_() & 1
            c["lru"] += bool(f & pg_lru)
            c["buddy"] += page.page_type.value_() >> 24 == buddy
        return c

    t_mp, _m, mine = best(mine_pages, args.repeat)
    t_dp, _m, theirs = best(drgn_pages, 1)
    assert mine == theirs, (mine, theirs)
    print(f"page census ({mine['pages']:,} pages: flags, page_type, compound_head)")
    n = mine["pages"]
    print(f"  mmintro columnar page_array            {t_mp:8.3f} s  ({n / t_mp / 1e6:,.1f} M pages/s)")
    print(f"  drgn for_each_page + page fields       {t_dp:8.3f} s  ({n / t_dp / 1e6:,.2f} M pages/s)")
    print(f"  ratio {t_dp / t_mp:,.0f}x; identical counts {mine}")

    # -- slab census ------------------------------------------------------------------------------
    def mine_slab():
        prog.cache.clear()
        census = sh.slab_census(prog)
        return {c.name: set(c.objects[c.allocated].tolist()) for c in census.values()}

    def drgn_slab():
        # drgn's slab_cache_for_each_allocated_object() scans every struct page once per cache;
        # as in mmintro.crosscheck.c_slab_objects, one for_each_page census of the slab pages
        # is shared and its per-slab walk (freelists, per-CPU freelists, sheaves) runs per cache
        from mmintro.crosscheck import d_allocated_objects

        dprog.cache.pop("mmintro.slab_pages", None)  # timed from scratch each run
        return {c.name.string_().decode(): got for c, got in d_allocated_objects(dprog)}

    def drgn_usage():
        return {c.name.string_().decode(): tuple(slab_cache_usage(c)) for c in for_each_slab_cache(dprog)}

    t_ms, _m, mine_s = best(mine_slab, args.repeat)
    t_ds, _m, theirs_s = best(drgn_slab, 1)
    t_du, _m, _usage = best(drgn_usage, 1)
    bad = {n: (len(mine_s.get(n, ())), len(v)) for n, v in theirs_s.items() if mine_s.get(n) != v}
    assert not bad, list(bad.items())[:5]
    nobj = sum(len(v) for v in mine_s.values())
    print(f"slab census ({len(mine_s)} caches, {nobj:,} allocated objects)")
    print(f"  mmintro slab_census (every object)     {t_ms:8.3f} s")
    print(
        f"  drgn page census + per-slab walk       {t_ds:8.3f} s  (slab_cache_usage of every cache alone: {t_du:.3f} s)"
    )
    print(f"  ratio {t_ds / t_ms:,.0f}x; identical allocated objects in every cache")

    # -- smaps of the workload parent --------------------------------------------------------
    def mine_smaps():
        prog.cache.clear()
        rep = S.smaps(prog, pid)
        return {v.maps.start: v.stats.resident // 4096 for v in rep.vmas if v.maps.start < 1 << 47}

    def drgn_smaps():
        mm = find_task(dprog, pid).mm
        out = {}
        for vma in for_each_vma(mm):
            n = 0
            for addr in range(vma.vm_start.value_(), vma.vm_end.value_(), 4096):
                try:
                    page = follow_page(mm, addr)
                except drgn.FaultError:
                    continue
                if page:
                    (page.flags.f if wrapped else page.flags).value_()
                    page._mapcount.counter.value_(), page._refcount.counter.value_()
                    n += 1
            out[vma.vm_start.value_()] = n
        return out

    t_mm, _m, mine_m = best(mine_smaps, args.repeat)
    t_dm, _m, theirs_m = best(drgn_smaps, 1)
    diff = [(hex(k), mine_m.get(k), v) for k, v in theirs_m.items() if mine_m.get(k) != v]
    assert mine_m == theirs_m, diff[:5]
    print(f"smaps of pid {pid} ({len(mine_m)} VMAs, {sum(mine_m.values()):,} resident pages)")
    print(f"  mmintro smaps                          {t_mm:8.3f} s")
    print(f"  drgn follow_page per page + fields     {t_dm:8.3f} s")
    print(f"  ratio {t_dm / t_mm:,.0f}x; identical Rss per VMA")
    prog.close()


if __name__ == "__main__":
    main()
