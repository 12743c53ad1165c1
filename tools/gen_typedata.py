#!/usr/bin/env python3
"""Generate mmintro's pinned Linux 6.18 x86-64 type data from the reference kernel's BTF.

    python tools/gen_typedata.py [../shared/reference/vmlinux-6.18.btf]

Writes mmintro/types/data/linux-6.18-x86_64.json.gz: the closure of the types mmintro
uses (ROOTS below, every enum, and the types of the globals in globals.h).  Types reached
by value are kept whole; structs and unions reached only through a pointer and not in the
roots are reduced to declarations, as a C header would forward-declare them.  Layouts are
kept exactly as the BTF has them, vendor fields included (see README: "Type data").
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmintro.types.btf import parse_btf  # noqa: E402

DEFAULT_BTF = ROOT.parent / "shared" / "reference" / "vmlinux-6.18.btf"
OUT = ROOT / "mmintro" / "types" / "data" / "linux-6.18-x86_64.json.gz"
GLOBALS = ROOT / "mmintro" / "types" / "data" / "globals.h"

# Structs/unions kept whole even when only reached through pointers.
ROOTS = """
page folio slab ptdesc zpdesc list_head hlist_head hlist_node free_area zone pglist_data
per_cpu_pages per_cpu_zonestat per_cpu_nodestat lruvec mem_section mem_section_usage
kmem_cache kmem_cache_cpu kmem_cache_node kmem_cache_order_objects slab_sheaf
slub_percpu_sheaves node_barn vmap_area vmap_node vm_struct vmap_pool rb_list rb_root
rb_node rb_root_cached mm_struct vm_area_struct maple_tree maple_node maple_range_64
maple_arange_64 maple_metadata maple_alloc ma_state xarray xa_node address_space
inode file hstate resource anon_vma anon_vma_chain swap_info_struct zonelist zoneref
task_struct pid pid_namespace idr upid rq cfs_rq memblock memblock_type
memblock_region e820_table e820_entry super_block dentry qstr path vfsmount mount external_name
nsproxy mnt_namespace
percpu_counter cpumask nodemask_t vm_userfaultfd_ctx mempolicy
address_space_operations files_struct fs_struct signal_struct mm_cid
pcpu_chunk pcpu_block_md vm_event_state kernel_stat seqcount raw_spinlock
spinlock rw_semaphore mutex atomic_t atomic64_t refcount_struct kref
swap_cluster_info blk_plug backing_dev_info bdi_writeback wb_domain
dirty_throttle_control fprop_global page_counter mem_cgroup obj_cgroup
shrinker list_lru list_lru_node list_lru_one callback_head llist_node
vm_fault vm_operations_struct hugetlbfs_sb_info hugepage_subpool resv_map
elf_prstatus elf_prstatus_common
sighand_struct buffer_head fpu fpregs_state backing_file msg_msg
printk_ringbuffer prb_desc printk_info dev_printk_info prb_data_blk_lpos
deferred_split shmem_inode_info hugetlbfs_inode_info writeback_control file_system_type
shared_policy sp_node vm_special_mapping huge_bootmem_page file_ra_state fown_struct
anon_vma_name wb_completion wb_writeback_work
""".split()

THREAD_SIZE = 16384

C_ALIASES = {
    "unsigned long": "long unsigned int", "unsigned int": "unsigned int", "long": "long int",
    "unsigned char": "unsigned char", "char": "char", "int": "int",
}

PERCPU_VARS = """
runqueues vm_event_states boot_pageset boot_zonestats boot_nodestats this_cpu_off
current_task cpu_number irq_stack_backing_store hardirq_stack_ptr ne_fit_preload_node
vmap_block_queue cached_stacks
""".split()


def main() -> None:
    btf_path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BTF
    btf = parse_btf(btf_path.read_bytes())

    by_name: dict[tuple[str, str], int] = {}
    for t in btf[1:]:
        if t.name and t.kind in ("struct", "union", "enum", "enum64", "typedef", "int", "float"):
            by_name.setdefault((t.kind, t.name), t.id)

    def find(kind: str, name: str) -> int:
        if (kind, name) in by_name:
            return by_name[(kind, name)]
        raise SystemExit(f"type {kind} {name} not in BTF")

    root_ids = set()
    for n in ROOTS:
        if ("struct", n) in by_name:
            root_ids.add(by_name[("struct", n)])
        elif ("union", n) in by_name:
            root_ids.add(by_name[("union", n)])
        elif ("typedef", n) in by_name:
            root_ids.add(by_name[("typedef", n)])
        else:
            print(f"warning: root {n} not in BTF", file=sys.stderr)

    # New entries (for global declarations: pointer/array types absent from BTF).
    # Output ids: BTF ids kept (sparse), synthetic ids above the BTF range.
    synth: dict[int, dict] = {}
    next_id = [len(btf)]

    def mk(entry: dict) -> int:
        key = json.dumps(entry, sort_keys=True)
        for i, e in synth.items():
            if json.dumps(e, sort_keys=True) == key:
                return i
        i = next_id[0]
        next_id[0] += 1
        synth[i] = entry
        return i

    def base_type(spec: str) -> int:
        spec = spec.strip()
        if spec == "void":
            return 0  # BTF type id 0 is void
        m = re.fullmatch(r"(struct|union|enum)\s+(\w+)", spec)
        if m:
            return find(m.group(1), m.group(2))
        if ("typedef", spec) in by_name:
            return by_name[("typedef", spec)]
        spec = C_ALIASES.get(spec, spec)
        if ("int", spec) in by_name:
            return by_name[("int", spec)]
        raise SystemExit(f"globals.h: unknown type {spec!r}")

    # union thread_union is not in the BTF (no variable of that type is emitted), but drgn
    # derives THREAD_SIZE from it.  include/linux/sched.h: { struct task_struct task;
    # unsigned long stack[THREAD_SIZE/sizeof(long)]; } with THREAD_SIZE = 16 KiB (config.txt).
    ulong = by_name[("int", "long unsigned int")]
    stack = mk({"kind": "array", "type": ulong, "nelems": THREAD_SIZE // 8})
    thread_union = mk({"kind": "union", "name": "thread_union", "size": THREAD_SIZE,
                       "members": [["task", find("struct", "task_struct"), 0, 0],
                                   ["stack", stack, 0, 0]]})
    by_name[("union", "thread_union")] = thread_union
    root_ids.add(thread_union)

    variables = []
    for line in GLOBALS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("/*", "*")):
            continue
        m = re.fullmatch(r"(.+?)\s*(\**)\s*(\w+)((?:\[\d*\])*);", line)
        if not m:
            raise SystemExit(f"globals.h: cannot parse {line!r}")
        tid = base_type(m.group(1))
        for _ in m.group(2):
            tid = mk({"kind": "ptr", "type": tid})
        dims = re.findall(r"\[(\d*)\]", m.group(4))
        for d in reversed(dims):
            tid = mk({"kind": "array", "type": tid, "nelems": int(d) if d else 0})
        variables.append({"name": m.group(3), "type": tid, "percpu": False})

    datasec = next(t for t in btf[1:] if t.kind == "datasec" and t.name == ".data..percpu")
    pcpu = {btf[vt].name: (btf[vt].type, off) for (_n, vt, off, _s) in datasec.members}
    for n in PERCPU_VARS:
        if n in pcpu:
            variables.append({"name": n, "type": pcpu[n][0], "percpu": True, "offset": pcpu[n][1]})
        else:
            print(f"warning: percpu var {n} not in BTF", file=sys.stderr)

    full: set[int] = set()
    decl: set[int] = set()
    seen: set[tuple[int, bool]] = set()
    work: list[tuple[int, bool]] = []  # (id, by_value)

    for t in btf[1:]:
        if t.kind in ("enum", "enum64"):
            work.append((t.id, True))
    for r in root_ids:
        work.append((r, True))
    for v in variables:
        work.append((v["type"], True))
    # drgn detects SPARSEMEM_VMEMMAP, SLUB etc. through names; keep the kmem_cache typedefs.

    def refs_of(tid: int) -> list[tuple[int, bool]]:
        if tid in synth:
            e = synth[tid]
            if e["kind"] in ("struct", "union"):
                return [(m[1], True) for m in e["members"]]
            return [(e["type"], e["kind"] == "array")]
        t = btf[tid]
        k = t.kind
        if k in ("struct", "union"):
            return [(m[1], True) for m in t.members]
        if k == "array":
            return [(t.type, True)]
        if k in ("typedef", "const", "volatile", "restrict", "type_tag"):
            return [(t.type, None)]  # transparent: inherit mode
        if k == "ptr":
            return [(t.type, False)]
        if k == "func_proto":
            return [(t.type, False)] + [(p[1], False) for p in t.params]
        return []

    while work:
        tid, by_value = work.pop()
        if tid == 0:
            continue
        if (tid, by_value) in seen:
            continue
        seen.add((tid, by_value))
        kind = synth[tid]["kind"] if tid in synth else btf[tid].kind
        if kind in ("struct", "union"):
            if by_value or tid in root_ids:
                if tid in full:
                    continue
                full.add(tid)
                decl.discard(tid)
            else:
                if tid not in full:
                    decl.add(tid)
                continue
        else:
            full.add(tid)
        for rid, mode in refs_of(tid):
            work.append((rid, by_value if mode is None else mode))

    def enc(tid: int) -> dict:
        if tid in synth:
            return dict(synth[tid])
        t = btf[tid]
        e: dict = {"kind": t.kind}
        if t.name:
            e["name"] = t.name
        if t.kind == "int":
            e.update(size=t.size, encoding=t.encoding, bits=t.bits)
        elif t.kind == "float":
            e.update(size=t.size)
        elif t.kind in ("ptr", "typedef", "const", "volatile", "restrict"):
            e["type"] = t.type
        elif t.kind == "type_tag":
            e = {"kind": "typedef_transparent", "type": t.type}
        elif t.kind == "array":
            e.update(type=t.type, nelems=t.nelems)
        elif t.kind in ("struct", "union"):
            if tid in decl:
                e["decl"] = True
            else:
                e["size"] = t.size
                e["members"] = [[n, mt, off, bs] for (n, mt, off, bs) in t.members]
        elif t.kind in ("enum", "enum64"):
            e["kind"] = "enum"
            e.update(size=t.size, signed=t.kind_flag, values=[[n, v] for n, v in t.values])
        elif t.kind == "func_proto":
            e.update(type=t.type, params=[[n, p] for n, p in t.params])
        return e

    keep = sorted(full | decl)
    # Renumber densely: id 0 = void.
    remap = {old: new for new, old in enumerate(keep, start=1)}
    remap[0] = 0

    types = [None]
    for old in keep:
        e = enc(old)
        if e["kind"] == "typedef_transparent":  # BTF type tags do not exist in DWARF
            e = {"kind": "typedef_transparent", "type": remap[e["type"]]}
        if "type" in e:
            e["type"] = remap[e["type"]]
        if "members" in e:
            e["members"] = [[n, remap[mt], off, bs] for (n, mt, off, bs) in e["members"]]
        if "params" in e:
            e["params"] = [[n, remap[p]] for (n, p) in e["params"]]
        types.append(e)
    for v in variables:
        v["type"] = remap[v["type"]]

    doc = {
        "format": 1,
        "kernel": "6.18 x86_64",
        "source": btf_path.name,
        "types": types,
        "variables": variables,
        # Size of the static per-CPU section (.data..percpu) and where its variables sit:
        # x86-64 links per-CPU variables at offsets from 0.
        "percpu_static_size": datasec.size,
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(raw, mtime=0))
    nfull = sum(1 for t in types[1:] if t["kind"] in ("struct", "union") and not t.get("decl"))
    ndecl = sum(1 for t in types[1:] if t.get("decl"))
    print(f"{OUT.relative_to(ROOT)}: {len(types)-1} types ({nfull} structs/unions whole, "
          f"{ndecl} declarations), {len(variables)} variables, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
