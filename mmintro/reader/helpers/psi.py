"""Pressure stall information read from a dump (kernel/sched/psi.c of 6.18).

``/proc/pressure/{io,memory,cpu}`` are printed by ``psi_show()``, which first *aggregates*: it
runs ``collect_percpu_times(group, PSI_AVGS)`` (each CPU's state times since the last look,
the live state extrapolated to ``cpu_clock(cpu)``, weighted by the CPU's non-idle jiffies and
added to ``group->total[PSI_AVGS][]``) and, when ``sched_clock()`` has passed
``avg_next_update``, ``update_averages()`` (the decaying averages over the periods since).  A
dump cannot run that code, but it holds every input, so :func:`psi_show` repeats it on a copy of
the books, at :func:`dump_clock`: the latest CPU clock the dump records (each CPU's
``rq->clock``, the ``state_start`` of its PSI books, the group's ``avg_last_update``) -- a
lower bound of the moment the machine stopped.  ``stored=True`` instead prints the group as the
last aggregation left it (what a ``psi_show`` at that moment printed).

The build decides what exists: no ``psi_system`` symbol means no CONFIG_PSI; the
``psi_disabled`` static key set means PSI was off at boot (CONFIG_PSI_DEFAULT_DISABLED without
``psi=1``, or ``psi=0``) and /proc/pressure does not exist.  Enumerators (``NR_PSI_STATES``,
``enum psi_res`` with PSI_IRQ under CONFIG_IRQ_TIME_ACCOUNTING) come from the dump's own types,
HZ from ``psi_period`` = jiffies_to_nsecs(2*HZ+1).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mmintro.reader.errors import SnapshotError
from mmintro.reader.helpers.percpu import per_cpu_ptr
from mmintro.reader.program import Program

__all__ = [
    "PsiBooks",
    "PressureLine",
    "aggregate",
    "calc_load",
    "calc_load_n",
    "dump_clock",
    "fixed_power_int",
    "for_each_possible_cpu",
    "psi_books",
    "psi_show",
]

# include/linux/sched/loadavg.h; kernel/sched/psi.c
FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP_10s, EXP_60s, EXP_300s = 1677, 1981, 2034
NSEC_PER_SEC = 1_000_000_000
NSEC_PER_USEC = 1000
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
RESOURCES = {"io": "PSI_IO", "memory": "PSI_MEM", "cpu": "PSI_CPU", "irq": "PSI_IRQ"}


class PressureLine(NamedTuple):
    """One line of /proc/pressure/RESOURCE."""

    resource: str
    """``io``, ``memory``, ``cpu`` (or ``irq``)"""
    kind: str
    """``some`` or ``full``"""
    avg10: int
    """the 10 s running average, FSHIFT fixed point (LOAD_INT/LOAD_FRAC print it)"""
    avg60: int
    """the 60 s average"""
    avg300: int
    """the 300 s average"""
    total_us: int
    """the cumulative stall time, microseconds"""


class PsiBooks(NamedTuple):
    """``psi_system`` and its per-CPU books as plain numbers (copies: psi_show mutates them)."""

    total: list[list[int]]
    avg: list[list[int]]
    avg_total: list[int]
    avg_last_update: int
    avg_next_update: int
    pcpu: dict[int, dict[str, Any]]
    psi_period: int
    nr_states: int
    now: int


# -- fixed point (include/linux/sched/loadavg.h, include/linux/math.h, kernel/sched/loadavg.c) ---
def calc_load(load: int, exp: int, active: int) -> int:
    """include/linux/sched/loadavg.h ``calc_load()``: one step of a fixed-point exponential average."""
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return (newload & U64) // FIXED_1


def fixed_power_int(x: int, frac_bits: int, n: int) -> int:
    """kernel/sched/loadavg.c ``fixed_power_int()``: ``x ** n`` in fixed point with ``frac_bits``."""
    result = 1 << frac_bits
    while n:
        if n & 1:
            result = ((result * x + (1 << (frac_bits - 1))) & U64) >> frac_bits
        n >>= 1
        if n:
            x = ((x * x + (1 << (frac_bits - 1))) & U64) >> frac_bits
    return result


def calc_load_n(load: int, exp: int, active: int, n: int) -> int:
    """kernel/sched/loadavg.c ``calc_load_n()``: ``n`` steps of :func:`calc_load` at once."""
    return calc_load(load, fixed_power_int(exp, FSHIFT, n), active)


def load_text(x: int) -> str:
    """``%lu.%02lu`` of LOAD_INT(x), LOAD_FRAC(x)."""
    return f"{x >> FSHIFT}.{((x & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


# -- reading the books ------------------------------------------------------------------------
def for_each_possible_cpu(prog: Program) -> list[int]:
    """CPU numbers set in ``__cpu_possible_mask`` (below ``nr_cpu_ids``)."""
    nr = prog["nr_cpu_ids"].value_()
    words = prog["__cpu_possible_mask"].bits.value_()
    return [c for c in range(min(nr, 64 * len(words))) if words[c // 64] >> (c % 64) & 1]


def _check_psi(prog: Program) -> None:
    if "psi_system" not in prog:
        raise SnapshotError("this kernel has no PSI (CONFIG_PSI is not set): no psi_system, no /proc/pressure")
    try:
        disabled = prog["psi_disabled"].key.enabled.counter.value_()
    except (KeyError, LookupError, AttributeError):
        disabled = 0
    if disabled or not prog["psi_system"].enabled.value_():
        raise SnapshotError(
            "PSI is disabled on this kernel (CONFIG_PSI_DEFAULT_DISABLED without psi=1 on the "
            "command line, or psi=0): /proc/pressure does not exist"
        )


def sched_clock_offset(prog: Program) -> int:
    """``cpu_clock(cpu) - sched_clock()``: ``__sched_clock_offset`` while the ``__sched_clock_stable``
    static key is set (kernel/sched/clock.c, a stable TSC: sched_clock_cpu() returns
    sched_clock() + __sched_clock_offset), else 0 (no such symbols: one clock, as the simulator's)."""
    try:
        stable = prog.object("struct static_key_false", address=prog.symbol("__sched_clock_stable").address)
        if not stable.key.enabled.counter.value_():
            return 0
        return prog.object("long", address=prog.symbol("__sched_clock_offset").address).value_()
    except LookupError:
        return 0


def dump_clock(prog: Program, books_pcpu: dict[int, dict[str, Any]] | None = None, avg_last_update: int = 0) -> int:
    """The latest ``cpu_clock()`` reading (ns) the dump holds: max of each possible CPU's
    ``rq->clock``, the ``state_start`` of its PSI books and the group's ``avg_last_update``
    (a sched_clock() reading, moved to cpu_clock by :func:`sched_clock_offset`)."""
    now = avg_last_update + sched_clock_offset(prog)
    rq = prog["runqueues"].address_of_()
    for cpu in for_each_possible_cpu(prog):
        now = max(now, per_cpu_ptr(rq, cpu).deref_().clock.value_())
        if books_pcpu and cpu in books_pcpu:
            now = max(now, books_pcpu[cpu]["state_start"])
    return now


def _rows(values: list, width: int) -> list[list[int]]:
    """A two-dimensional array member (``total[NR_PSI_AGGREGATORS][NR_PSI_STATES - 1]``) as
    rows, whether the value comes flat or nested."""
    flat: list[int] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return [flat[i : i + width] for i in range(0, len(flat), width)]


def psi_books(prog: Program) -> PsiBooks:
    """psi_system and every possible CPU's ``psi_group_cpu``, read once.

    :raises SnapshotError: no PSI in this build, or PSI disabled
    """
    _check_psi(prog)
    g = prog["psi_system"]
    gv = g.read_()
    nr = prog.constant("NR_PSI_STATES").value_()
    pcpu = {}
    for cpu in for_each_possible_cpu(prog):
        c = per_cpu_ptr(gv.pcpu, cpu).deref_().value_()
        c["times_prev"] = _rows(c["times_prev"], nr)
        pcpu[cpu] = c
    try:
        period = prog["psi_period"].value_()
    except KeyError:
        raise SnapshotError("this dump has no psi_period symbol (kallsyms without CONFIG_KALLSYMS_ALL?)") from None
    if not period:
        raise SnapshotError("psi_period is 0: psi_init() never ran on this kernel")
    last = gv.avg_last_update.value_()
    return PsiBooks(
        total=_rows(gv.total.value_(), nr - 1),
        avg=_rows(gv.avg.value_(), 3),
        avg_total=list(gv.avg_total.value_()),
        avg_last_update=last,
        avg_next_update=gv.avg_next_update.value_(),
        pcpu=pcpu,
        psi_period=period,
        nr_states=nr,
        now=dump_clock(prog, pcpu, last),
    )


# -- psi_show(), on the copy --------------------------------------------------------------------
def _tick_nsec(b: PsiBooks) -> int:
    """NSEC_PER_SEC / HZ from psi_period = jiffies_to_nsecs(2 * HZ + 1)."""
    tick = b.psi_period - 2 * NSEC_PER_SEC
    if tick <= 0 or NSEC_PER_SEC % tick:
        raise SnapshotError(f"psi_period {b.psi_period} is not jiffies_to_nsecs(2*HZ+1) of an HZ dividing 1e9")
    return tick


def collect_percpu_times(prog: Program, b: PsiBooks, aggregator: int, now: int) -> None:
    """collect_percpu_times() with get_recent_times() per CPU (u32 buckets as the kernel's),
    every CPU read at ``now``."""
    ni = prog.constant("PSI_NONIDLE").value_()
    tick = _tick_nsec(b)
    nr = b.nr_states
    deltas = [0] * (nr - 1)
    nonidle_total = 0
    for _cpu, c in b.pcpu.items():
        times = list(c["times"])
        for s in range(nr):
            if c["state_mask"] & (1 << s):
                times[s] = (times[s] + now - c["state_start"]) & U32
            delta = (times[s] - c["times_prev"][aggregator][s]) & U32
            c["times_prev"][aggregator][s] = times[s]
            times[s] = delta
        nonidle = times[ni] // tick  # nsecs_to_jiffies()
        nonidle_total += nonidle
        for s in range(nr - 1):
            deltas[s] += times[s] * nonidle
    for s in range(nr - 1):
        b.total[aggregator][s] = (b.total[aggregator][s] + deltas[s] // max(nonidle_total, 1)) & U64


def update_averages(prog: Program, b: PsiBooks, now: int) -> PsiBooks:
    """update_averages() and calc_avgs(); returns the books with the new update times."""
    avgs = prog.constant("PSI_AVGS").value_()
    period_ns = b.psi_period
    expires = b.avg_next_update
    missed = (now - expires) // period_ns if now - expires >= period_ns else 0
    next_update = expires + (1 + missed) * period_ns
    period = now - (b.avg_last_update + missed * period_ns)
    for s in range(b.nr_states - 1):
        sample = (b.total[avgs][s] - b.avg_total[s]) & U32
        sample = min(sample, period)
        b.avg_total[s] = (b.avg_total[s] + sample) & U64
        avg = b.avg[s]
        if missed:
            for w, e in enumerate((EXP_10s, EXP_60s, EXP_300s)):
                avg[w] = calc_load_n(avg[w], e, 0, missed)
        pct = (sample * 100) // period * FIXED_1
        for w, e in enumerate((EXP_10s, EXP_60s, EXP_300s)):
            avg[w] = calc_load(avg[w], e, pct)
    return b._replace(avg_last_update=now, avg_next_update=next_update)


def aggregate(prog: Program, b: PsiBooks) -> PsiBooks:
    """psi_show()'s first step at the dump's clock: collect_percpu_times(PSI_AVGS), then
    update_averages() if ``avg_next_update`` has passed.  (A second call at the same clock
    changes nothing, as a second read of another /proc/pressure file at once would not.)"""
    collect_percpu_times(prog, b, prog.constant("PSI_AVGS").value_(), b.now)
    sched_now = b.now - sched_clock_offset(prog)
    if sched_now >= b.avg_next_update:
        b = update_averages(prog, b, sched_now)
    return b


def psi_show(
    prog: Program, resource: str = "memory", stored: bool = False, books: PsiBooks | None = None
) -> list[PressureLine]:
    """The lines of /proc/pressure/RESOURCE as psi_show() prints them for ``psi_system``.

    :param resource: ``io``, ``memory``, ``cpu`` (``irq`` where the build has PSI_IRQ)
    :param stored: print the group as the last aggregation left it instead of aggregating at
        :func:`dump_clock` first
    :param books: books from :func:`psi_books` (and :func:`aggregate`), printed as they are;
        None: read them, and aggregate unless ``stored``
    :raises SnapshotError: no PSI, PSI disabled, or a resource this build does not have
    """
    if resource not in RESOURCES:
        raise SnapshotError(f"no /proc/pressure/{resource} (have: {', '.join(RESOURCES)})")
    b = books
    if b is None:
        b = psi_books(prog)
        if not stored:
            b = aggregate(prog, b)
    try:
        res = prog.constant(RESOURCES[resource]).value_()
    except LookupError:
        raise SnapshotError(
            f"this kernel has no /proc/pressure/{resource} ({RESOURCES[resource]} is not in its enum psi_res)"
        ) from None
    avgs = prog.constant("PSI_AVGS").value_()
    only_full = resource == "irq"
    out = []
    for full in range(2 - only_full):
        avg, total = [0, 0, 0], 0
        if not (resource == "cpu" and full):  # CPU FULL is undefined at the system level
            s = res * 2 + full
            avg, total = b.avg[s], b.total[avgs][s] // NSEC_PER_USEC
        out.append(PressureLine(resource, "full" if full or only_full else "some", avg[0], avg[1], avg[2], total))
    return out
