"""BTF → type data: the closure of the types mmintro uses, as the JSON doc :class:`TypeDB` reads.

Two users:

* ``tools/gen_typedata.py`` builds the pinned data shipped with the package from the reference
  kernel's BTF (strict: every global of ``globals.h`` must resolve).
* :func:`typedb_from_btf` builds the types of a *real* kernel from its own ``.BTF`` (e.g. the
  one inside a dump's vmlinuz), skipping what that build lacks, and caches the result on disk.

The doc holds the closure of :data:`ROOTS`, every enum, the types of the kernel globals declared
in ``data/globals.h`` and of the per-CPU variables in :data:`PERCPU_VARS`.  Types reached by
value are kept whole; structs and unions reached only through a pointer and not in the roots are
reduced to declarations, as a C header would forward-declare them.  Layouts are kept exactly as
the BTF has them, vendor fields included.

Array bounds in ``globals.h`` may be symbolic (``unsigned long __per_cpu_offset[NR_CPUS];``).
A symbol resolves, in order, to an enumerator of that name in the BTF, a constant derived from
the BTF's layouts (:func:`derived_constants`), or the ``constants`` argument (default
:data:`ARCH_DEFAULTS`, the x86-64 values only the kernel configuration knows).
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from mmintro.cache import cache_dir as _cache_dir
from mmintro.types.btf import BtfType, parse_btf
from mmintro.types.typedata import TypeDB

__all__ = [
    "ClosureError",
    "ROOTS",
    "REAL_KERNEL_ROOTS",
    "PERCPU_VARS",
    "ARCH_DEFAULTS",
    "THREAD_SIZE",
    "globals_text",
    "derived_constants",
    "build_typedoc",
    "typedb_from_btf",
    "cache_dir",
]

# Bump when the closure's output for the same inputs changes (invalidates the on-disk cache).
CLOSURE_VERSION = 4


class ClosureError(Exception):
    """globals.h or the BTF cannot produce the type data (strict mode), one line."""


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
taint_flag tk_data timekeeper uts_namespace new_utsname module module_memory net_device net sock sock_common inet_sock socket
neighbour neigh_table neigh_hash_table in_device in_ifaddr inet6_dev inet6_ifaddr in6_addr
user_regs_struct pt_regs inactive_task_frame fork_frame
io_tlb_slot io_tlb_area io_tlb_mem hlist_bl_head pcpu_alloc_info pcpu_group_info
dev_pagemap dev_pagemap_ops vmem_altmap range percpu_ref percpu_ref_data bdev_inode
swap_sequential_cluster swap_table swap_extent plist_head plist_node percpu_swap_cluster scan_control
psi_group psi_group_cpu static_key_false delayed_work work_struct
""".split()

# Kept whole in a *real* kernel's type data only (typedb_from_btf): what the crash utility needs
# to start on a real dump besides what the reader uses -- x86_64_ist_init() reads the per-CPU
# tss_struct's IST pointers and sizes the exception stacks from cea_exception_stacks (without it
# it guesses and reads guard pages), and the module code checks kernel_symbol's layout.  Not in
# the pinned data: the simulator has no cpu_tss_rw or exception stacks for crash to read.
REAL_KERNEL_ROOTS = """
tss_struct kernel_symbol cea_exception_stacks exception_stacks
""".split()

# Per-CPU variables (their types and offsets come from the BTF's .data..percpu DATASEC).
PERCPU_VARS = """
runqueues vm_event_states boot_pageset boot_zonestats boot_nodestats this_cpu_off
current_task cpu_number irq_stack_backing_store hardirq_stack_ptr ne_fit_preload_node
vmap_block_queue cached_stacks system_group_pcpu psi_seq
""".split()

# union thread_union is not in the BTF (no variable of that type is emitted), but drgn derives
# THREAD_SIZE from it.  x86-64: PAGE_SIZE << (2 + KASAN_STACK_ORDER) = 16 KiB without KASAN
# (32 KiB with CONFIG_KASAN): may differ per build.
THREAD_SIZE = 16384

# PRB_AVGBITS in kernel/printk/printk.c: the static printk ring buffer has
# 1 << (CONFIG_LOG_BUF_SHIFT - PRB_AVGBITS) descriptors.
PRB_AVGBITS = 5

# Bounds that only the kernel configuration knows (not visible in the BTF): the x86-64 values,
# which are those of the reference build.  Any of them may differ per build; callers who know
# better pass ``constants``.
ARCH_DEFAULTS: dict[str, int] = {
    # CONFIG_LOG_BUF_SHIFT (17 in the reference and in Debian's build); gives __LOG_BUF_LEN and
    # PRB_DESCS_COUNT below.  Per build.
    "LOG_BUF_SHIFT": 17,
    # arch/x86/include/asm/page.h: HUGE_MAX_HSTATE 2 (2 MiB and 1 GiB pages).  Per arch.
    "HUGE_MAX_HSTATE": 2,
    # 1 << MAX_SWAPFILES_SHIFT (the 5 swap type bits of a swap entry).  The kernel's
    # MAX_SWAPFILES subtracts the special swap types (SWP_DEVICE_NUM, SWP_MIGRATION_NUM,
    # SWP_HWPOISON_NUM, SWP_PTE_MARKER_NUM: config-dependent), so this is an upper bound of
    # swap_info[]; readers only index [0, nr_swapfiles).  Kept so the pinned data is unchanged.
    "MAX_SWAPFILES": 32,
}

C_ALIASES = {
    "unsigned long": "long unsigned int",
    "unsigned int": "unsigned int",
    "long": "long int",
    "unsigned char": "unsigned char",
    "char": "char",
    "int": "int",
}

_DECL = re.compile(r"(.+?)\s*(\**)\s*(\w+)((?:\[\w*\])*);")
_COMMENT = re.compile(r"/\*.*?\*/")


def globals_text() -> str:
    """The shipped ``data/globals.h``."""
    return resources.files("mmintro.types").joinpath("data", "globals.h").read_text()


def _type_index(btf: list) -> dict[tuple[str, str], int]:
    by_name: dict[tuple[str, str], int] = {}
    for t in btf[1:]:
        if t.name and t.kind in ("struct", "union", "enum", "enum64", "typedef", "int", "float"):
            by_name.setdefault((t.kind, t.name), t.id)
    return by_name


def _btf_size(btf: list, tid: int) -> int:
    """sizeof a BTF type (typedefs and qualifiers followed)."""
    for _ in range(64):
        t = btf[tid]
        if t.kind in ("typedef", "const", "volatile", "restrict", "type_tag"):
            tid = t.type
        elif t.kind == "array":
            return t.nelems * _btf_size(btf, t.type)
        elif t.kind == "ptr":
            return 8
        else:
            return t.size
    raise ClosureError(f"BTF type {tid}: typedef chain too long")


def derived_constants(btf: list, by_name: dict | None = None) -> dict[str, int]:
    """Configuration constants visible in the BTF's layouts.

    NR_CPUS = 8 * sizeof(struct cpumask) (DECLARE_BITMAP(bits, NR_CPUS));
    MAX_NUMNODES = 8 * sizeof(nodemask_t); MAX_NR_ZONES = __MAX_NR_ZONES (enum zone_type,
    include/generated/bounds.h).
    """
    by_name = by_name if by_name is not None else _type_index(btf)
    out: dict[str, int] = {}
    if ("struct", "cpumask") in by_name:
        out["NR_CPUS"] = 8 * _btf_size(btf, by_name[("struct", "cpumask")])
    if ("typedef", "nodemask_t") in by_name:
        out["MAX_NUMNODES"] = 8 * _btf_size(btf, by_name[("typedef", "nodemask_t")])
    for t in btf[1:]:
        if t.kind in ("enum", "enum64"):
            for n, v in t.values:
                if n == "__MAX_NR_ZONES":
                    out.setdefault("MAX_NR_ZONES", v)
    return out


def _config_bounds(constants: Mapping[str, int]) -> dict[str, int]:
    """Bounds computed from the configuration constants."""
    out = dict(constants)
    shift = out.get("LOG_BUF_SHIFT")
    if shift is not None:
        out.setdefault("__LOG_BUF_LEN", 1 << shift)  # kernel/printk/printk.c
        # _DEFINE_PRINTKRB(printk_rb_static, CONFIG_LOG_BUF_SHIFT - PRB_AVGBITS, ...):
        # _printk_rb_static_descs[_DESCS_COUNT(descbits)] and _printk_rb_static_infos[same].
        out.setdefault("PRB_DESCS_COUNT", 1 << (shift - PRB_AVGBITS))
    return out


def build_typedoc(
    btf_types: list,
    globals_h: str | None = None,
    percpu_vars: Iterable[str] = PERCPU_VARS,
    roots: Iterable[str] = ROOTS,
    constants: Mapping[str, int] | None = None,
    *,
    kernel: str = "6.18 x86_64",
    source: str = "",
    strict: bool = True,
) -> dict:
    """The type-data doc :class:`TypeDB` consumes, from parsed BTF (:func:`parse_btf`).

    ``constants`` adds to / overrides :data:`ARCH_DEFAULTS` for symbolic bounds no enumerator or
    BTF layout gives.  ``strict``: a global whose type or bound cannot be resolved raises
    :class:`ClosureError`; otherwise it is left out.  Anything left out (globals with the reason,
    per-CPU variables absent from the BTF's .data..percpu, roots absent from the BTF) is listed in
    ``doc["skipped"]`` = ``{"globals": {name: reason}, "percpu": [...], "roots": [...]}``, a key
    present only when something was skipped (TypeDB ignores it).
    """
    btf = btf_types
    if globals_h is None:
        globals_h = globals_text()
    by_name = _type_index(btf)
    skipped_globals: dict[str, str] = {}
    skipped_percpu: list[str] = []
    missing_roots: list[str] = []

    enumerators: dict[str, int] = {}
    for t in btf[1:]:
        if t.kind in ("enum", "enum64"):
            for n, v in t.values:
                enumerators.setdefault(n, v)
    derived = derived_constants(btf, by_name)
    config = _config_bounds({**ARCH_DEFAULTS, **(constants or {})})

    def bound(sym: str) -> int:
        if sym == "":
            return 0
        if sym.isdigit():
            return int(sym)
        for table in (enumerators, derived, config):
            if sym in table:
                return table[sym]
        raise ClosureError(f"unknown array bound {sym}")

    def find(kind: str, name: str) -> int:
        if (kind, name) in by_name:
            return by_name[(kind, name)]
        raise ClosureError(f"type {kind} {name} not in BTF")

    root_ids = set()
    for n in roots:
        if ("struct", n) in by_name:
            root_ids.add(by_name[("struct", n)])
        elif ("union", n) in by_name:
            root_ids.add(by_name[("union", n)])
        elif ("typedef", n) in by_name:
            root_ids.add(by_name[("typedef", n)])
        else:
            missing_roots.append(n)

    # New entries (for global declarations: pointer/array types absent from BTF).
    # Output ids: BTF ids kept (sparse), synthetic ids above the BTF range.
    synth: dict[int, dict] = {}
    synth_keys: dict[str, int] = {}
    next_id = [len(btf)]

    def mk(entry: dict) -> int:
        key = json.dumps(entry, sort_keys=True)
        i = synth_keys.get(key)
        if i is not None:
            return i
        i = next_id[0]
        next_id[0] += 1
        synth[i] = entry
        synth_keys[key] = i
        return i

    def base_type(spec: str) -> int:
        spec = spec.strip()
        if spec.startswith("const "):
            return mk({"kind": "const", "type": base_type(spec[6:])})
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
        raise ClosureError(f"unknown type {spec!r}")

    # union thread_union (include/linux/sched.h): { struct task_struct task;
    # unsigned long stack[THREAD_SIZE/sizeof(long)]; }.
    thread_size = config.get("THREAD_SIZE", THREAD_SIZE)
    if ("struct", "task_struct") in by_name and ("int", "long unsigned int") in by_name:
        ulong = by_name[("int", "long unsigned int")]
        stack = mk({"kind": "array", "type": ulong, "nelems": thread_size // 8})
        thread_union = mk(
            {
                "kind": "union",
                "name": "thread_union",
                "size": thread_size,
                "members": [["task", by_name[("struct", "task_struct")], 0, 0], ["stack", stack, 0, 0]],
            }
        )
        by_name[("union", "thread_union")] = thread_union
        root_ids.add(thread_union)
    elif strict:
        raise ClosureError("BTF has no struct task_struct / unsigned long for union thread_union")

    variables = []
    for line in globals_h.splitlines():
        line = _COMMENT.sub("", line).strip()
        if not line or line.startswith(("/*", "*")):
            continue
        m = _DECL.fullmatch(line)
        if not m:
            raise ClosureError(f"globals.h: cannot parse {line!r}")
        name = m.group(3)
        try:
            tid = base_type(m.group(1))
            dims = [bound(d) for d in re.findall(r"\[(\w*)\]", m.group(4))]
        except ClosureError as e:
            if strict:
                raise ClosureError(f"globals.h: {name}: {e}") from None
            skipped_globals[name] = str(e)
            continue
        for _ in m.group(2):
            tid = mk({"kind": "ptr", "type": tid})
        for d in reversed(dims):
            tid = mk({"kind": "array", "type": tid, "nelems": d})
        variables.append({"name": name, "type": tid, "percpu": False})

    datasec = next((t for t in btf[1:] if t.kind == "datasec" and t.name == ".data..percpu"), None)
    pcpu = {btf[vt].name: (btf[vt].type, off) for (_n, vt, off, _s) in datasec.members} if datasec else {}
    for n in percpu_vars:
        if n in pcpu:
            variables.append({"name": n, "type": pcpu[n][0], "percpu": True, "offset": pcpu[n][1]})
        else:
            skipped_percpu.append(n)

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

    def refs_of(tid: int) -> list[tuple[int, bool | None]]:
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
        t: BtfType = btf[tid]
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

    types: list = [None]
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

    doc: dict = {
        "format": 1,
        "kernel": kernel,
        "source": source,
        "types": types,
        "variables": variables,
        # Size of the static per-CPU section (.data..percpu) and where its variables sit:
        # x86-64 links per-CPU variables at offsets from 0.
        "percpu_static_size": datasec.size if datasec else 0,
    }
    if skipped_globals or skipped_percpu or missing_roots:
        doc["skipped"] = {"globals": skipped_globals, "percpu": skipped_percpu, "roots": missing_roots}
    return doc


# -- real kernels: TypeDB from a build's own BTF, cached on disk ------------------------------------


def cache_dir() -> Path:
    """``cache_dir()/typedata`` (see :mod:`mmintro.cache`)."""
    return _cache_dir() / "typedata"


def _recipe_key(globals_h: str, percpu_vars: list[str], roots: list[str], constants: Mapping[str, int]) -> str:
    recipe = json.dumps(
        [CLOSURE_VERSION, THREAD_SIZE, globals_h, percpu_vars, roots, sorted(constants.items())], separators=(",", ":")
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _read_cache(path: Path) -> dict | None:
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError, gzip.BadGzipFile):
        return None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("types"), list)
        or not isinstance(doc.get("variables"), list)
    ):
        return None
    return doc


def _write_cache(path: Path, doc: dict) -> None:
    """Atomically (temp file + rename); a cache that cannot be written is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=6, mtime=0)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        pass


@contextlib.contextmanager
def _gc_paused():
    """Building a TypeDB makes ~10^6 objects and no cyclic garbage: skip the collector's passes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def typedb_from_btf(
    btf_bytes: bytes,
    *,
    constants: Mapping[str, int] | None = None,
    kernel: str = "",
    source: str = "",
    cache: bool | str | os.PathLike = True,
) -> TypeDB:
    """The :class:`TypeDB` of a real kernel build, from its raw ``.BTF`` section.

    Same globals.h, roots and per-CPU list as the pinned data, but nothing is required: a global
    whose type (or symbolic bound) this BTF lacks is skipped, and so is a per-CPU variable absent
    from its ``.data..percpu``.  The result carries ``skipped_globals`` ({name: reason}),
    ``skipped_percpu`` and ``missing_roots`` lists, ``btf_sha256`` and ``from_cache``.

    ``cache``: True = :func:`cache_dir`, a path = that directory, False = no cache.  The cached
    doc is keyed by the sha256 of the BTF bytes (plus a hash of the recipe: globals.h, roots,
    per-CPU list, constants); a corrupt cache file is ignored and rewritten.
    Raises :class:`mmintro.types.btf.BtfError` for a malformed BTF blob.
    """
    gtext = globals_text()
    consts = dict(constants or {})
    sha = hashlib.sha256(btf_bytes).hexdigest()
    path: Path | None = None
    if cache:
        d = cache_dir() if cache is True else Path(cache)
        path = d / f"{sha}-{_recipe_key(gtext, PERCPU_VARS, ROOTS + REAL_KERNEL_ROOTS, consts)}.json.gz"
    with _gc_paused():
        db: TypeDB | None = None
        doc = _read_cache(path) if path is not None and path.exists() else None
        if doc is not None:
            try:
                db = TypeDB(doc)
            except (KeyError, IndexError, TypeError, ValueError):  # well-formed JSON, wrong content
                db = None
        from_cache = db is not None
        if db is None:
            btf = parse_btf(btf_bytes)
            doc = build_typedoc(
                btf,
                gtext,
                PERCPU_VARS,
                ROOTS + REAL_KERNEL_ROOTS,
                consts,
                kernel=kernel or "x86_64",
                source=source or f"BTF sha256:{sha[:16]}",
                strict=False,
            )
            db = TypeDB(doc)
            if path is not None:
                _write_cache(path, doc)
    assert doc is not None
    skipped = doc.get("skipped", {})
    db.skipped_globals = dict(skipped.get("globals", {}))  # type: ignore[attr-defined]
    db.skipped_percpu = list(skipped.get("percpu", []))  # type: ignore[attr-defined]
    db.missing_roots = list(skipped.get("roots", []))  # type: ignore[attr-defined]
    db.btf_sha256 = sha  # type: ignore[attr-defined]
    db.from_cache = from_cache  # type: ignore[attr-defined]
    return db
