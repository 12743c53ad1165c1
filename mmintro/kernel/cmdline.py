"""The kernel command line of Linux 6.18 (init/main.c, kernel/params.c, lib/cmdline.c,
fs/proc/proc_sysctl.c) and the memory options users set on it.

The kernel reads ``boot_command_line`` in three passes, and so does :func:`parse_cmdline`:

* parse_early_param() in setup_arch(): the ``early_param`` handlers -- ``mem=`` and ``memmap=``
  (arch/x86/kernel/e820.c: edits of the e820 table, then e820__finish_early_params),
  ``kernelcore=`` and ``movablecore=`` (mm/mm_init.c: ZONE_MOVABLE), and, since 6.15,
  ``hugepages=``, ``hugepagesz=`` and ``default_hugepagesz=`` (mm/hugetlb.c's
  hugetlb_early_param: stored in order by hugetlb_add_param, applied by hugetlb_parse_params
  from hugetlb_bootmem_alloc once the NUMA nodes are known);
* parse_args("Booting kernel") in start_kernel(): the ``__setup`` handlers --
  ``transparent_hugepage=`` and ``hugepage_alloc_threads=``; a name with a dot is a module
  parameter (ignored here), ``sysctl.*`` waits for the third pass, and any other name the
  kernel does not know goes to init (argv without a value, envp with one) and is listed by
  print_unknown_bootoptions();
* do_sysctl_args() in kernel_init(), after every initcall: ``sysctl.vm.X=V`` (or
  ``sysctl/vm/X=V``) is a write of V to /proc/sys/vm/X through its handler, so
  ``sysctl.vm.min_free_kbytes=`` overrides what THP's set_recommended_min_free_kbytes() chose at
  subsys_initcall time, and sets user_min_free_kbytes.

Names compare with ``-`` and ``_`` equal (parameq), a value may be double-quoted (next_arg), and
``--`` ends the kernel's part (what follows goes to init).

Where mmintro is stricter: the kernel warns about a malformed value of an option it knows
("Malformed early option 'mem'", "HugeTLB: unsupported hugepagesz=3M", "transparent_hugepage=
cannot parse, ignored", "Failed to set sysctl parameter ...: invalid value") and boots on
without it; mmintro refuses it in one line naming the option (:class:`CmdlineError`), since a
silently dropped option simulates another machine than the one meant.  What the kernel resolves
with a warning from the *order* of valid options (``hugepages=`` twice without ``hugepagesz=``
between, a ``hugepagesz=`` repeated) is logged as the kernel logs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmintro.kernel import config as kc

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = [
    "BootParams",
    "CmdlineError",
    "check_config",
    "command_line_of_dump",
    "config_fields",
    "do_sysctl_args",
    "memparse",
    "next_arg",
    "parse_cmdline",
    "parse_early_param",
    "print_command_line",
    "saved_command_line",
    "setup_command_line",
    "simple_strtoull",
    "vm_sysctl",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
HUGE_SIZES = {2 << 20: "2M", 1 << 30: "1G"}  # x86 arch_hugetlb_valid_size(): PMD_SIZE, PUD_SIZE (GBPAGES)


class CmdlineError(ValueError):
    """A kernel command line mmintro will not boot (one line naming the option)."""


# -- lib/cmdline.c and lib/vsprintf.c ------------------------------------------------------------
def simple_strtoull(s: str, base: int = 0) -> tuple[int, str]:
    """simple_strtoull(): the number at the start of ``s`` (base 0: ``0x`` hex, a leading ``0``
    octal, else decimal; wrapping at 64 bits) and the rest of the string."""
    if base == 0:
        if s[:1] == "0" and s[1:2] in ("x", "X") and s[2:3] and s[2] in "0123456789abcdefABCDEF":
            base = 16
        elif s[:1] == "0":
            base = 8
        else:
            base = 10
    if base == 16 and s[:2].lower() == "0x":
        s = s[2:]
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    i, v = 0, 0
    while i < len(s) and s[i].lower() in digits:
        v = (v * base + digits.index(s[i].lower())) & ((1 << 64) - 1)
        i += 1
    return v, s[i:]


def memparse(s: str) -> tuple[int, str]:
    """memparse(): a number (simple_strtoull, base 0) with an optional K, M, G, T, P or E suffix
    (either case, powers of 1024); returns the value and the rest of the string."""
    v, rest = simple_strtoull(s, 0)
    shifts = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
    if rest[:1].lower() in shifts:
        v = (v << shifts[rest[0].lower()]) & ((1 << 64) - 1)
        rest = rest[1:]
    return v, rest


def next_arg(args: str) -> tuple[str, str | None, str]:
    """lib/cmdline.c next_arg(): the next ``param[=val]`` of ``args`` (whitespace-separated, double
    quotes protecting spaces and stripped from the value), and what follows it."""
    i, equals, in_quote, quoted = 0, -1, False, False
    if args[:1] == '"':
        args, in_quote, quoted = args[1:], True, True
    while i < len(args):
        c = args[i]
        if c.isspace() and not in_quote:
            break
        if equals < 0 and c == "=":
            equals = i
        if c == '"':
            in_quote = not in_quote
        i += 1
    word, rest = args[:i], args[i + 1 :] if i < len(args) else ""
    if quoted and word.endswith('"'):
        word = word[:-1]
    if equals < 0:
        return word, None, rest.lstrip()
    param, val = word[:equals], word[equals + 1 :]
    if val.startswith('"'):
        val = val[1:]
        if val.endswith('"'):
            val = val[:-1]
    return param, val, rest.lstrip()


def parameq(a: str, b: str) -> bool:
    """kernel/params.c parameq(): names equal with ``-`` and ``_`` the same."""
    return a.replace("-", "_") == b.replace("-", "_")


def _args(text: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """parse_args()'s walk: (param, val) pairs up to ``--``, and the words after it."""
    out: list[tuple[str, str | None]] = []
    rest = text.strip()
    while rest:
        param, val, rest = next_arg(rest)
        if val is None and param == "--":
            return out, rest.split()
        out.append((param, val))
    return out, []


# -- the options ----------------------------------------------------------------------------
# Parameters the 6.18 kernel handles itself that mmintro does not model: not passed to init, not
# listed as unknown (a selection of the common ones; an unlisted one is reported as unknown).
KNOWN_UNMODELLED = frozenset(
    """
    acpi apic apparmor audit earlycon earlyprintk console consoleblank crashkernel debug
    ignore_loglevel init initrd iommu intel_iommu amd_iommu isolcpus irqaffinity kaslr nokaslr
    loglevel log_buf_len lsm maxcpus mitigations nohz nohz_full noapic nohugeiomap nosmp nosmt
    nopti pti nr_cpus numa numa_balancing panic pci possible_cpus quiet rcu_nocbs rdinit resume
    ro root rootdelay rootflags rootfstype rootwait rw security selinux spectre_v2 swiotlb
    transparent_hugepage_shmem transparent_hugepage_tmpfs thp_anon thp_shmem tsc hugetlb_cma
    hugetlb_cma_only hugetlb_free_vmemmap cgroup_disable cgroup_enable hashdist hash_pointers
    page_alloc.shuffle page_owner page_poison init_on_alloc init_on_free slab_nomerge slub_debug
    movable_node memhp_default_state memory_hotplug.memmap_on_memory vsyscall vdso
    noexec nx_huge_pages efi noefi edd reboot printk.time clocksource hpet nmi_watchdog
    watchdog softlockup_panic hung_task_panic sysrq_always_enabled numa_zonelist_order
""".split()
)
SYSCTL_ALIASES = {  # kernel/sysctl.c sysctl_aliases[]
    "hardlockup_all_cpu_backtrace": "kernel.hardlockup_all_cpu_backtrace",
    "hung_task_panic": "kernel.hung_task_panic",
    "numa_zonelist_order": "vm.numa_zonelist_order",
    "softlockup_all_cpu_backtrace": "kernel.softlockup_all_cpu_backtrace",
}
# /proc/sys/vm of 6.18 (mm/*.c, fs/*.c sysctl tables); the ones in SYSCTL_HANDLERS are modelled.
VM_SYSCTLS = frozenset(
    """
    admin_reserve_kbytes compact_memory compact_unevictable_allowed compaction_proactiveness
    defrag_mode dirty_background_bytes dirty_background_ratio dirty_bytes dirty_expire_centisecs
    dirty_ratio dirty_writeback_centisecs dirtytime_expire_seconds drop_caches enable_soft_offline
    extfrag_threshold hugetlb_optimize_vmemmap hugetlb_shm_group laptop_mode legacy_va_layout
    lowmem_reserve_ratio max_map_count memfd_noexec memory_failure_early_kill
    memory_failure_recovery min_free_kbytes min_slab_ratio min_unmapped_ratio mmap_min_addr
    mmap_rnd_bits mmap_rnd_compat_bits nr_hugepages nr_hugepages_mempolicy
    nr_overcommit_hugepages numa_stat numa_zonelist_order oom_dump_tasks oom_kill_allocating_task
    overcommit_kbytes overcommit_memory overcommit_ratio page-cluster page_lock_unfairness
    panic_on_oom percpu_pagelist_high_fraction stat_interval stat_refresh swappiness
    unprivileged_userfaultfd user_reserve_kbytes vfs_cache_pressure vfs_cache_pressure_denom
    watermark_boost_factor watermark_scale_factor zone_reclaim_mode
""".split()
)


@dataclass(frozen=True)
class BootParams:
    """What a kernel command line sets, as :func:`parse_cmdline` finds it."""

    e820_params: tuple = ()
    """``(name, value)`` of every ``mem=`` and ``memmap=``, in order (they edit one table)."""
    kernelcore: str | None = None
    """The last ``kernelcore=`` value: ``nn[KMGTPE]``, ``nn%`` or ``mirror``."""
    movablecore: str | None = None
    """The last ``movablecore=`` value: ``nn[KMGTPE]`` or ``nn%``."""
    hugetlb_params: tuple = ()
    """``(name, value)`` of every ``hugepagesz=``, ``hugepages=``, ``default_hugepagesz=``, in order."""
    hugepage_alloc_threads: int = 0
    """``hugepage_alloc_threads=`` (0: a quarter of the CPUs)."""
    thp: str | None = None
    """``transparent_hugepage=``: always, madvise or never."""
    sysctl: tuple = ()
    """``(name, value)`` of every ``sysctl.`` parameter (``vm.min_free_kbytes``), in order."""
    unknown: tuple = ()
    """Parameters passed to init (print_unknown_bootoptions lists them)."""


def _bad(param: str, val: str | None, why: str) -> CmdlineError:
    shown = param if val is None else f"{param}={val}"
    return CmdlineError(f"kernel command line: {shown}: {why}")


def _size(param: str, val: str | None, what: str = "a size") -> int:
    """A memparse value that must be the whole of ``val``."""
    if not val:
        raise _bad(param, val, f"needs {what} (NUMBER[KMGTPE], e.g. 512M)")
    v, rest = memparse(val)
    if rest or val[:1] in "+-" or not val[:1].isdigit():
        raise _bad(param, val, f"malformed early option '{param}': not {what} (NUMBER[KMGTPE], e.g. 512M)")
    return v


def _check_memmap_item(val: str, item: str) -> None:
    """parse_memmap_one()'s syntax, strictly: exactmap, nn[KMGTPE][@#$!]ss[KMGTPE],
    nn[KMGTPE]%ss[KMGTPE][-old][+new], or nn[KMGTPE]."""
    num = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)[KMGTPEkmgtpe]?"
    if item.startswith("exactmap"):
        if item != "exactmap":
            raise _bad("memmap", val, f"'{item}': exactmap takes nothing after it")
        return
    if re.fullmatch(rf"{num}(?:[@#$!]{num})?", item):
        if memparse(item)[0] == 0:
            raise _bad("memmap", val, f"'{item}': a zero size")
        return
    m = re.fullmatch(rf"{num}%{num}(?:-([0-9]+))?(?:\+([0-9]+))?", item)
    if m:
        from mmintro.kernel.e820 import E820_TYPE_RAM, E820_TYPE_UNUSABLE

        for t in m.groups():
            if t is not None and int(t) not in range(E820_TYPE_RAM, E820_TYPE_UNUSABLE + 1):
                raise _bad("memmap", val, f"'{item}': e820 type {t} is not one the simulator models (1-5)")
        if m.group(1) and m.group(2) and m.group(1) == m.group(2):
            raise _bad("memmap", val, f"'{item}': retypes type {m.group(1)} to itself")
        return
    raise _bad("memmap", val, f"'{item}': not exactmap, nn@ss, nn#ss, nn$ss, nn!ss, nn%ss-old+new or nn")


def _check_e820_param(name: str, val: str | None) -> None:
    if name == "mem":
        if val == "nopentium":
            raise _bad(name, val, "mem=nopentium ignored! (only supported on x86_32)")
        if _size(name, val) == 0:
            raise _bad(name, val, "a zero size would remove all memory")
    elif name == "memmap":
        if not val:
            raise _bad(name, val, "needs a value")
        for item in val.split(","):
            _check_memmap_item(val, item)
    else:
        raise _bad(name, val, "not mem= or memmap=")


def _core(param: str, val: str | None) -> str:
    """cmdline_parse_core(): ``nn%`` (at most 100) or a memparse size (``kernelcore=mirror`` too)."""
    if param == "kernelcore" and val == "mirror":
        return val
    if val and re.fullmatch(r"[0-9]+%", val):
        if int(val[:-1]) > 100:
            raise _bad(param, val, "a percentage over 100")
        return val
    _size(param, val, "a size or a percentage")
    return val  # type: ignore[return-value]


def _hugepagesz(param: str, val: str | None) -> None:
    size = _size(param, val, "a huge page size")
    if size not in HUGE_SIZES:
        raise _bad(param, val, f"HugeTLB: unsupported {param}={val} (x86-64 has 2M and 1G)")


def _hugepages(val: str | None) -> None:
    """hugepages_setup()'s syntax: N, or NODE:N[,NODE:N...]."""
    if not val or not re.fullmatch(r"[0-9]+|[0-9]+:[0-9]+(?:,[0-9]+:[0-9]+)*", val):
        raise _bad("hugepages", val, "HugeTLB: Invalid hugepages parameter (N, or NODE:N,NODE:N...)")


def parse_cmdline(text: str) -> BootParams:
    """The options of a kernel command line, checked as :mod:`the module <mmintro.kernel.cmdline>`
    says.

    :raises CmdlineError: a malformed value of an option the simulator models
    """
    if "\n" in text or len(text) >= 2048:  # COMMAND_LINE_SIZE on x86
        raise CmdlineError("kernel command line: one line of fewer than 2048 characters (COMMAND_LINE_SIZE)")
    args, after_dashes = _args(text)
    e820: list[tuple[str, str]] = []
    hugetlb: list[tuple[str, str]] = []
    sysctl: list[tuple[str, str]] = []
    unknown: list[str] = []
    core: dict[str, str] = {}
    thp = None
    threads = 0
    for param, val in args:
        name = param.replace("-", "_")
        if name in ("mem", "memmap"):
            _check_e820_param(name, val)
            e820.append((name, val))  # type: ignore[arg-type]
        elif name in ("kernelcore", "movablecore"):
            core[name] = _core(name, val)
        elif name in ("hugepagesz", "default_hugepagesz"):
            _hugepagesz(name, val)
            hugetlb.append((name, val))  # type: ignore[arg-type]
        elif name == "hugepages":
            _hugepages(val)
            hugetlb.append((name, val))  # type: ignore[arg-type]
        elif name == "hugepage_alloc_threads":
            if val is None:  # __setup("hugepage_alloc_threads=") does not match the bare name
                unknown.append(param)
                continue
            n, rest = simple_strtoull(val, 0)
            if rest or not val or n == 0:
                raise _bad(param, val, "not a thread count (1 or more)")
            threads = n
        elif name == "transparent_hugepage":
            if val is None:
                unknown.append(param)
                continue
            if val not in ("always", "madvise", "never"):
                raise _bad(param, val, "transparent_hugepage= cannot parse (always, madvise or never)")
            thp = val
        elif name == "psi":  # kernel/sched/psi.c __setup("psi=", setup_psi): read by psi.psi_init
            if val is None:
                unknown.append(param)
                continue
            from mmintro.kernel.psi import kstrtobool

            if kstrtobool(val) is None:
                raise _bad(param, val, "not a boolean (kstrtobool: 1/0, y/n, on/off)")
        elif param.startswith("sysctl") and param[6:7] in (".", "/") or param in SYSCTL_ALIASES:
            path = SYSCTL_ALIASES.get(param) or param[7:].replace("/", ".")
            if not val:
                raise _bad(param, val, "Setting sysctl args: invalid (needs a value)")
            _check_sysctl(param, path, val)
            sysctl.append((path, val))
        elif "." in param or name in KNOWN_UNMODELLED or param.startswith("sysctl"):
            continue  # a module parameter, or an option mmintro does not model
        else:
            unknown.append(param if val is None else f"{param}={val}")
    return BootParams(
        tuple(e820),
        core.get("kernelcore"),
        core.get("movablecore"),
        tuple(hugetlb),
        threads,
        thp,
        tuple(sysctl),
        tuple(unknown + after_dashes),
    )


def check_config(cfg: Any) -> None:
    """The options of a :class:`~mmintro.kernel.config.MachineConfig` (from its command line or
    given directly) against its machine: each value well-formed, ``hugepages=NODE:N`` naming
    online nodes, the user-defined e820 map bootable.

    :raises CmdlineError: one line naming the option
    """
    for name, val in cfg.e820_params:
        _check_e820_param(name, val)
    for name in ("kernelcore", "movablecore"):
        if getattr(cfg, name) is not None:
            _core(name, getattr(cfg, name))
    for name, val in cfg.hugetlb_params:
        if name == "hugepages":
            _hugepages(val)
            for node in re.findall(r"([0-9]+):", val):
                if int(node) >= cfg.nodes:  # hugepages_setup(): !node_online(tmp)
                    raise _bad(
                        name,
                        val,
                        f"HugeTLB: Invalid hugepages parameter: node {node} is not online "
                        f"(the machine has {cfg.nodes})",
                    )
        elif name in ("hugepagesz", "default_hugepagesz"):
            _hugepagesz(name, val)
        else:
            raise _bad(name, val, "not hugepagesz=, hugepages= or default_hugepagesz=")
    if cfg.hugepage_alloc_threads < 0:
        raise _bad("hugepage_alloc_threads", str(cfg.hugepage_alloc_threads), "not a thread count (1 or more)")
    for path, val in cfg.sysctl:
        _check_sysctl(f"sysctl.{path}", path, val)
    cfg.user_e820()


def config_fields(text: str) -> dict[str, Any]:
    """The :class:`~mmintro.kernel.config.MachineConfig` fields a command line sets (those it
    does not mention are left out)."""
    p = parse_cmdline(text)
    out: dict[str, Any] = {
        "e820_params": p.e820_params,
        "kernelcore": p.kernelcore,
        "movablecore": p.movablecore,
        "hugetlb_params": p.hugetlb_params,
        "hugepage_alloc_threads": p.hugepage_alloc_threads,
        "sysctl": p.sysctl,
        "thp": p.thp,
    }
    return {k: v for k, v in out.items() if v not in (None, (), 0)}


# -- parse_early_param(): the e820 edits ---------------------------------------------------------
def parse_early_param(k: Kernel) -> None:
    """setup_arch(): parse_early_param()'s ``mem=``/``memmap=`` edits of ``k.e820`` and
    e820__finish_early_params().  ``k.e820_firmware`` keeps the firmware's map (the
    "BIOS-e820:" lines, /sys/firmware/memmap: e820_table_firmware/_kexec); ``k.e820_user_lines``
    are the (level, text) lines of the edits and the "user-defined physical RAM map:" (none
    when no option touched the map)."""
    from mmintro.kernel.e820 import E820Error, e820_user_map

    k.e820_firmware = list(k.e820)
    k.e820_user_lines = []
    if not k.config.e820_params:
        return
    try:
        k.e820, k.e820_user_lines = e820_user_map(k.e820, k.config.e820_params)
    except E820Error as e:
        raise CmdlineError(f"kernel command line: {e}") from None


# -- start_kernel(): saved_command_line and the unknown options -------------------------------
def saved_command_line(k: Kernel) -> str:
    return k.config.cmdline


def setup_command_line(k: Kernel) -> None:
    """start_kernel() -> setup_command_line(): ``saved_command_line`` (kept; /proc/cmdline) and
    ``static_command_line`` (__initdata, what parse_args() cuts up) copied from
    boot_command_line into memblock, SMP_CACHE_BYTES-aligned, before setup_per_cpu_areas();
    ``saved_command_line_len`` is its strlen."""
    text = saved_command_line(k)
    data = text.encode() + b"\0"
    saved = k.phys_to_virt(k.memblock.alloc(len(data), 64))
    k.memblock.alloc(len(data), 64)  # static_command_line
    k.kmem.write_bytes(saved, data)
    k.kmem.write_u64(k.image.var("saved_command_line", "data"), saved)
    k.image.var("saved_command_line_len", "data")
    k.write_int("saved_command_line_len", len(data) - 1)


def print_command_line(k: Kernel) -> None:
    """start_kernel(): ``Kernel command line:`` and print_unknown_bootoptions()'s list of what
    parse_args() passes to init."""
    text = saved_command_line(k)
    k.printk(5, f"Kernel command line: {text}")
    unknown = parse_cmdline(text).unknown if text else ()
    if unknown:
        k.printk(5, f'Unknown kernel command line parameters "{" ".join(unknown)}", will be passed to user space.')


# -- do_sysctl_args(): /proc/sys/vm writes ----------------------------------------------------
def _ints(param: str, val: str, count: int, lo: int | None, hi: int | None, unsigned: bool = False) -> list[int]:
    """proc_dointvec_minmax()/proc_doulongvec_minmax() parsing: up to ``count`` whitespace-separated
    numbers (base 0, ``-`` allowed unless unsigned), each within [lo, hi]."""
    words = val.split()
    if not words or len(words) > count:
        raise _bad(
            param,
            val,
            f"Failed to set sysctl parameter: invalid value (expected "
            f"{'a number' if count == 1 else f'up to {count} numbers'})",
        )
    out = []
    for w in words:
        neg = w.startswith("-") and not unsigned
        body = w[1:] if neg else w
        v, rest = simple_strtoull(body, 0)
        if rest or not body[:1].isdigit():
            raise _bad(param, val, "Failed to set sysctl parameter: invalid value (not a number)")
        v = -v if neg else v
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise _bad(param, val, f"Failed to set sysctl parameter: invalid value (outside {bounds})")
        out.append(v)
    return out


INT_MAX = (1 << 31) - 1
ULONG_MAX = (1 << 64) - 1


def _checks() -> dict[str, Callable[[str, str], list[int]]]:
    from mmintro.types import get_types

    nr_zones = get_types().const("__MAX_NR_ZONES")

    def one(lo: int | None, hi: int | None, unsigned: bool = False) -> Callable[[str, str], list[int]]:
        return lambda p, v: _ints(p, v, 1, lo, hi, unsigned)

    def fraction(p: str, v: str) -> list[int]:
        out = _ints(p, v, 1, 0, INT_MAX)
        if out[0] and out[0] < MIN_PERCPU_PAGELIST_HIGH_FRACTION:  # the handler's "pcp imbalance" check
            raise _bad(
                p,
                v,
                f"Failed to set sysctl parameter: invalid value (0, or at least {MIN_PERCPU_PAGELIST_HIGH_FRACTION})",
            )
        return out

    return {
        "vm.min_free_kbytes": one(0, INT_MAX),
        "vm.watermark_scale_factor": one(1, 3000),
        "vm.watermark_boost_factor": one(0, INT_MAX),
        "vm.lowmem_reserve_ratio": lambda p, v: _ints(p, v, nr_zones, -INT_MAX - 1, INT_MAX),
        "vm.percpu_pagelist_high_fraction": fraction,
        "vm.overcommit_memory": one(0, 2),
        "vm.overcommit_ratio": one(-INT_MAX - 1, INT_MAX),
        "vm.overcommit_kbytes": one(0, ULONG_MAX, unsigned=True),
        "vm.dirty_ratio": one(0, 100),
        "vm.dirty_background_ratio": one(0, 100),
        "vm.dirty_bytes": one(2 * PAGE_SIZE, ULONG_MAX, unsigned=True),
        "vm.dirty_background_bytes": one(1, ULONG_MAX, unsigned=True),
        "vm.stat_interval": one(0, INT_MAX // kc.HZ),
        "vm.nr_hugepages": one(0, ULONG_MAX, unsigned=True),
        "vm.nr_overcommit_hugepages": one(0, ULONG_MAX, unsigned=True),
        # mm/compaction.c: compact_memory accepts only 1 (sysctl_compaction_handler's -EINVAL)
        "vm.compact_memory": one(1, 1),
        "vm.compaction_proactiveness": one(0, 100),
        "vm.extfrag_threshold": one(0, 1000),
        "vm.compact_unevictable_allowed": one(0, 1),
    }


MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8  # mm/page_alloc.c


def _check_sysctl(param: str, path: str, val: str) -> None:
    check = _checks().get(path)
    if check is not None:
        check(param, val)


VM_SYSCTL_DEFAULTS: dict[str, Any] = {
    "min_free_kbytes": None,  # calculate_min_free_kbytes() at boot
    "user_min_free_kbytes": -1,
    "watermark_scale_factor": kc.WATERMARK_SCALE_FACTOR,
    "watermark_boost_factor": kc.WATERMARK_BOOST_FACTOR,
    "lowmem_reserve_ratio": tuple(kc.LOWMEM_RESERVE_RATIO),
    "percpu_pagelist_high_fraction": 0,
    "overcommit_memory": 0,
    "overcommit_ratio": kc.OVERCOMMIT_RATIO,
    "overcommit_kbytes": 0,
    "dirty_ratio": kc.DIRTY_RATIO,
    "dirty_background_ratio": kc.DIRTY_BACKGROUND_RATIO,
    "dirty_bytes": 0,
    "dirty_background_bytes": 0,
}


def vm_sysctl(k: Kernel, name: str) -> Any:
    """The current value of /proc/sys/vm/``name`` for the formulas that read it (the built-in
    default until a ``sysctl.vm.`` boot parameter wrote it)."""
    return k.__dict__.get("vm_sysctl", {}).get(name, VM_SYSCTL_DEFAULTS[name])


def _set(k: Kernel, name: str, value: Any) -> None:
    k.__dict__.setdefault("vm_sysctl", {})[name] = value


def _zones(k: Kernel) -> list:
    return [z for zs in k.zones for z in zs]


def _wmarks(k: Kernel) -> None:
    """setup_per_zone_wmarks(): the watermarks, the pagesets (zone_pcp_update) and
    calculate_totalreserve_pages()."""
    from mmintro.kernel import page_alloc

    page_alloc.setup_per_zone_wmarks(k)
    page_alloc.calculate_totalreserve_pages(k)


def _min_free_kbytes(k: Kernel, v: list[int]) -> None:
    # min_free_kbytes_sysctl_handler(): user_min_free_kbytes = min_free_kbytes; setup_per_zone_wmarks()
    k.min_free_kbytes = v[0]
    _set(k, "user_min_free_kbytes", v[0])
    k.write_int("min_free_kbytes", v[0])
    k.write_int("user_min_free_kbytes", v[0])
    _wmarks(k)


def _watermark_scale_factor(k: Kernel, v: list[int]) -> None:
    _set(k, "watermark_scale_factor", v[0])  # watermark_scale_factor_sysctl_handler
    k.write_int("watermark_scale_factor", v[0])
    _wmarks(k)


def _watermark_boost_factor(k: Kernel, v: list[int]) -> None:
    _set(k, "watermark_boost_factor", v[0])  # proc_dointvec_minmax, no handler
    k.write_int("watermark_boost_factor", v[0])


def _lowmem_reserve_ratio(k: Kernel, v: list[int]) -> None:
    # lowmem_reserve_ratio_sysctl_handler(): the values written (the rest keep theirs), < 1 -> 0,
    # setup_per_zone_lowmem_reserve()
    from mmintro.kernel import page_alloc

    ratio = list(vm_sysctl(k, "lowmem_reserve_ratio"))
    ratio[: len(v)] = v
    ratio = [r if r >= 1 else 0 for r in ratio]
    _set(k, "lowmem_reserve_ratio", tuple(ratio))
    base = k.sym("sysctl_lowmem_reserve_ratio")
    for i, r in enumerate(ratio):
        k.mem.write(k.pa(base + 4 * i), r.to_bytes(4, "little", signed=True))
    page_alloc.setup_per_zone_lowmem_reserve(k)


def _percpu_pagelist_high_fraction(k: Kernel, v: list[int]) -> None:
    # percpu_pagelist_high_fraction_sysctl_handler(): on a change, every populated zone's
    # zone_set_pageset_high_and_batch(zone, 0)
    from mmintro.kernel import page_alloc

    if v[0] == vm_sysctl(k, "percpu_pagelist_high_fraction"):
        return
    _set(k, "percpu_pagelist_high_fraction", v[0])
    for z in _zones(k):
        if z.populated:
            page_alloc.zone_pcp_update(k, z)


def _overcommit_memory(k: Kernel, v: list[int]) -> None:
    # overcommit_policy_handler(): mm_compute_batch(new_policy), then the policy
    from mmintro.kernel import mmap

    mmap.mm_compute_batch(k, v[0])
    _set(k, "overcommit_memory", v[0])
    k.write_int("sysctl_overcommit_memory", v[0])


def _overcommit_ratio(k: Kernel, v: list[int]) -> None:
    _set(k, "overcommit_ratio", v[0])  # overcommit_ratio_handler: overcommit_kbytes = 0
    _set(k, "overcommit_kbytes", 0)
    k.write_int("sysctl_overcommit_ratio", v[0])
    k.write_int("sysctl_overcommit_kbytes", 0)


def _overcommit_kbytes(k: Kernel, v: list[int]) -> None:
    _set(k, "overcommit_kbytes", v[0])  # overcommit_kbytes_handler: overcommit_ratio = 0
    _set(k, "overcommit_ratio", 0)
    k.write_int("sysctl_overcommit_kbytes", v[0])
    k.write_int("sysctl_overcommit_ratio", 0)


def _dirty(
    ratio_name: str, ratio_var: str, bytes_name: str, bytes_var: str, set_ratio: bool, only_on_change: bool
) -> Callable[[Kernel, list[int]], None]:
    """dirty_ratio_handler / dirty_bytes_handler (the ratio and the bytes exclude each other,
    cleared only when the value changed) and dirty_background_*_handler (cleared on any write)."""

    def handler(k: Kernel, v: list[int]) -> None:
        name, var, other, other_var = (
            (ratio_name, ratio_var, bytes_name, bytes_var)
            if set_ratio
            else (bytes_name, bytes_var, ratio_name, ratio_var)
        )
        changed = v[0] != vm_sysctl(k, name)
        _set(k, name, v[0])
        k.write_int(var, v[0])
        if changed or not only_on_change:
            _set(k, other, 0)
            k.write_int(other_var, 0)

    return handler


def _stat_interval(k: Kernel, v: list[int]) -> None:
    k.write_int("sysctl_stat_interval", v[0] * kc.HZ)  # proc_dointvec_jiffies: seconds in, jiffies kept


def _nr_hugepages(k: Kernel, v: list[int]) -> None:
    # hugetlb_sysctl_handler() -> __nr_hugepages_store_common(false, &default_hstate, NUMA_NO_NODE)
    from mmintro.kernel import hugetlb

    hugetlb.set_nr_hugepages(k, hugetlb.default_hstate(k).size, v[0])


def _nr_overcommit_hugepages(k: Kernel, v: list[int]) -> None:
    # hugetlb_overcommit_handler(): no surplus gigantic pages (-EINVAL, which do_sysctl_args logs)
    from mmintro.kernel import hugetlb

    h = hugetlb.default_hstate(k)
    if h.gigantic:
        k.printk(3, f"Failed to set sysctl parameter 'vm.nr_overcommit_hugepages={v[0]}': invalid value")
        return
    hugetlb.set_nr_overcommit_hugepages(k, h.size, v[0])


SYSCTL_HANDLERS: dict[str, Callable[[Kernel, list[int]], None]] = {
    "min_free_kbytes": _min_free_kbytes,
    "watermark_scale_factor": _watermark_scale_factor,
    "watermark_boost_factor": _watermark_boost_factor,
    "lowmem_reserve_ratio": _lowmem_reserve_ratio,
    "percpu_pagelist_high_fraction": _percpu_pagelist_high_fraction,
    "overcommit_memory": _overcommit_memory,
    "overcommit_ratio": _overcommit_ratio,
    "overcommit_kbytes": _overcommit_kbytes,
    "dirty_ratio": _dirty("dirty_ratio", "vm_dirty_ratio", "dirty_bytes", "vm_dirty_bytes", True, True),
    "dirty_bytes": _dirty("dirty_ratio", "vm_dirty_ratio", "dirty_bytes", "vm_dirty_bytes", False, True),
    "dirty_background_ratio": _dirty(
        "dirty_background_ratio",
        "dirty_background_ratio",
        "dirty_background_bytes",
        "dirty_background_bytes",
        True,
        False,
    ),
    "dirty_background_bytes": _dirty(
        "dirty_background_ratio",
        "dirty_background_ratio",
        "dirty_background_bytes",
        "dirty_background_bytes",
        False,
        False,
    ),
    "stat_interval": _stat_interval,
    "nr_hugepages": _nr_hugepages,
    "nr_overcommit_hugepages": _nr_overcommit_hugepages,
    # mm/compaction.c: vm.compact_memory runs compact_nodes(); the others are the
    # compaction tunables (mmintro.kernel.compaction)
    "compact_memory": lambda k, v: _compaction().sysctl_compaction_handler(k, v[0]),
    "compaction_proactiveness": lambda k, v: _compaction().set_compaction_sysctl(k, "compaction_proactiveness", v[0]),
    "extfrag_threshold": lambda k, v: _compaction().set_compaction_sysctl(k, "extfrag_threshold", v[0]),
    "compact_unevictable_allowed": lambda k, v: _compaction().set_compaction_sysctl(
        k, "compact_unevictable_allowed", v[0]
    ),
}


def _compaction():
    from mmintro.kernel import compaction

    return compaction


def do_sysctl_args(k: Kernel) -> None:
    """kernel_init() -> do_sysctl_args(): each ``sysctl.`` parameter, in order, written to its
    /proc/sys file.  The modelled vm sysctls run their handlers; a vm name 6.18 does not have is
    the kernel's "parameter not found" error in the log; other sysctls are not modelled."""
    checks = _checks()
    for path, val in k.config.sysctl:
        if not path.startswith("vm."):
            continue
        name = path[3:]
        handler = SYSCTL_HANDLERS.get(name)
        if handler is not None:
            handler(k, checks[path](f"sysctl.{path}", val))
        elif name not in VM_SYSCTLS:
            k.printk(3, f"Failed to set sysctl parameter '{path}={val}': parameter not found")


# -- a real kernel's command line ------------------------------------------------------------
def command_line_of_dump(prog: Any) -> str:
    """The command line a real kernel booted with, from its dump (a reader Program):
    ``saved_command_line``, the string /proc/cmdline shows.

    :raises CmdlineError: the dump has no readable saved_command_line
    """
    from mmintro.reader.errors import FaultError

    try:
        text = prog["saved_command_line"].string_(4096)
    except (KeyError, LookupError, FaultError) as e:
        raise CmdlineError(f"the dump's saved_command_line cannot be read ({e})") from None
    return text.decode("utf-8", errors="replace")
