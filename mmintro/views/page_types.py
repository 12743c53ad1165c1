"""Page counts per combination of flags and page type (tools/mm/page-types), columnar.

Two ways to name a page's flags:

* the default: the ``PG_*`` bits below ``__NR_PAGEFLAGS`` plus the page type and whether the
  page is a compound tail.  As stable_page_flags() does, a tail page reports its folio's flags
  and page type (the head page's, but PG_head): a tail's own flags word holds folio metadata
  (the first tail's low byte is the folio's order), not page flags.  A tail whose
  compound_head does not point at a struct page in the map reports no flags;
* ``kpf=True``: the kernel tool's own bits, ``KPF_*`` as /proc/kpageflags exports them
  (fs/proc/page.c stable_page_flags(), include/uapi/linux/kernel-page-flags.h), for every pfn
  page-types walks (0 to round_up(max_pfn, PAGES_PER_SECTION); a pfn without an online
  section is KPF_NOPAGE), then page-types' well_known_flags() (the kernel-hacker bits 32-47
  hidden, compound head/tail hidden unless KPF_HUGE) or, with ``raw=True``, its -r mode's
  expand_overloaded_flags() (no pagemap, so no soft-dirty/file/swap/exclusive bits).

Speed: one vectorised pass per memory section over its struct pages, read in place from the
snapshot (a zero-copy view of the mapped core file where the vmemmap is stored contiguously),
run-length counted; tails whose head lies in another section (1 GiB folios) are resolved by
reading each such head once.  No Python code runs per page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from mmintro.reader.errors import FaultError
from mmintro.reader.helpers.mm import vmemmap
from mmintro.reader.helpers.mmzone import for_each_present_section, section_geometry
from mmintro.reader.program import Program
from mmintro.views.pageflags import PAGE_TYPE_LIMIT, flag_names, flags_layout, page_type_name

__all__ = ["COLUMNS", "KPF_NAMES", "PageTypesRow", "kpf_symbolic", "page_types", "render"]

_TYPE_SHIFT = 32  # key bits 32..39: page type byte (0 = untyped)
_TAIL_BIT = 40  # key bit 40: compound tail

# include/uapi/linux/kernel-page-flags.h (KPF_* bits 0-26), include/linux/kernel-page-flags.h
# (32-42), tools/mm/page-types.c (47-63, the tool's own) and its page_flag_names[] table.
KPF_NAMES: dict[int, str] = {
    0: "L:locked",
    1: "E:error",
    2: "R:referenced",
    3: "U:uptodate",
    4: "D:dirty",
    5: "l:lru",
    6: "A:active",
    7: "S:slab",
    8: "W:writeback",
    9: "I:reclaim",
    10: "B:buddy",
    11: "M:mmap",
    12: "a:anonymous",
    13: "s:swapcache",
    14: "b:swapbacked",
    15: "H:compound_head",
    16: "T:compound_tail",
    17: "G:huge",
    18: "u:unevictable",
    19: "X:hwpoison",
    20: "n:nopage",
    21: "x:ksm",
    22: "t:thp",
    23: "o:offline",
    24: "z:zero_page",
    25: "i:idle_page",
    26: "g:pgtable",
    32: "r:reserved",
    33: "m:mlocked",
    34: "d:owner_2",
    35: "P:private",
    36: "p:private_2",
    37: "O:owner_private",
    38: "h:arch",
    39: "c:uncached",
    40: "f:softdirty",
    41: "H:arch_2",
    47: "d:anon_exclusive",
    48: "I:readahead",
    50: "A:slub_frozen",
    51: "E:slub_debug",
    61: "F:file",
    62: "w:swap",
    63: "1:mmap_exclusive",
}
KPF = {v.split(":")[1].upper(): k for k, v in KPF_NAMES.items()}
KPF_HACKERS_BITS = 0xFFFF << 32
BITS_COMPOUND = 1 << KPF["COMPOUND_HEAD"] | 1 << KPF["COMPOUND_TAIL"]
# stable_page_flags(): kpf_copy_bit(k, KPF_x, PG_y) for these (PG names from the dump's enum)
_COPY = (
    ("LOCKED", "PG_locked"),
    ("DIRTY", "PG_dirty"),
    ("UPTODATE", "PG_uptodate"),
    ("WRITEBACK", "PG_writeback"),
    ("LRU", "PG_lru"),
    ("REFERENCED", "PG_referenced"),
    ("ACTIVE", "PG_active"),
    ("RECLAIM", "PG_reclaim"),
    ("SWAPBACKED", "PG_swapbacked"),
    ("UNEVICTABLE", "PG_unevictable"),
    ("MLOCKED", "PG_mlocked"),
    ("UNCACHED", "PG_uncached"),
    ("RESERVED", "PG_reserved"),
    ("OWNER_2", "PG_owner_2"),
    ("PRIVATE", "PG_private"),
    ("PRIVATE_2", "PG_private_2"),
    ("OWNER_PRIVATE", "PG_owner_priv_1"),
    ("ARCH", "PG_arch_1"),
    ("IDLE_PAGE", "PG_idle"),
)
MAX_PAGE_ORDER = 10  # include/linux/mmzone.h (x86-64 default)
_CHUNK = 8192  # struct pages per vectorised step (512 KiB: the passes after the first stay in L2)


class PageTypesRow(NamedTuple):
    """One combination of flags (and, by default, page type and tail-ness)."""

    flags: int
    """The ``PG_*`` bits (below ``__NR_PAGEFLAGS``), or with ``kpf`` the ``KPF_*`` bits."""
    page_type: str
    """``PGTY_*`` name without the prefix, or empty if the page has no type (or ``kpf``)."""
    tail: bool
    """Tail page of a compound page (``compound_head & 1``; with ``kpf``: KPF_COMPOUND_TAIL)."""
    page_count: int
    """Number of pages with this combination."""
    mb: int
    """``page_count`` in MiB (rounded down, as page-types prints it)."""
    symbolic_flags: str
    """Flag names, lower case without ``PG_``, then the type and ``tail``, comma separated; with
    ``kpf``: page-types' one letter per KPF bit (``_`` when clear)."""
    long_symbolic_flags: str = ""
    """With ``kpf``: page-types' long names of the set bits, comma separated."""


# column name (as printed and as JSON key) -> row field
COLUMNS: dict[str, str] = {
    "flags": "flags",
    "page-count": "page_count",
    "MB": "mb",
    "symbolic-flags": "symbolic_flags",
    "page-type": "page_type",
}
KPF_COLUMNS: dict[str, str] = {
    "flags": "flags",
    "page-count": "page_count",
    "MB": "mb",
    "symbolic-flags": "symbolic_flags",
    "long-symbolic-flags": "long_symbolic_flags",
}


class _Layout(NamedTuple):
    size: int  # sizeof(struct page), a multiple of 8
    words: int
    w_flags: int
    w_ch: int
    w_mapping: int
    w_private: int
    w_type: int  # the word holding page_type / _mapcount (a u32)
    type_shift: int
    refcount_shift: int  # _refcount: the other half of that word (6.18: offset 52)
    w_large_mapcount: int  # folio->_large_mapcount: its word in page[1]
    large_mapcount_shift: int
    w_flags_1: int  # folio->_flags_1: its word in page[1] (page[1].flags)


def _layout(prog: Program) -> _Layout:
    T = prog.types
    size = T.struct("page").size
    if size % 8:
        raise ValueError(f"struct page is {size} bytes, not a multiple of 8")
    t_off, r_off = T.offsetof("page", "page_type"), T.offsetof("page", "_refcount")
    if t_off // 8 != r_off // 8:
        raise ValueError("page_type and _refcount are not in one word of struct page")
    try:
        lm = T.offsetof("folio", "_large_mapcount")
        f1 = T.offsetof("folio", "_flags_1")
    except (LookupError, AttributeError):
        lm, f1 = size + t_off, size
    return _Layout(
        size,
        size // 8,
        T.offsetof("page", "flags") // 8,
        T.offsetof("page", "compound_head") // 8,
        T.offsetof("page", "mapping") // 8,
        T.offsetof("page", "private") // 8,
        t_off // 8,
        8 * (t_off % 8),
        8 * (r_off % 8),
        (lm - size) // 8,
        8 * (lm % 8),
        (f1 - size) // 8,
    )


def _section_words(prog: Program, lay: _Layout, kpf: bool) -> Iterator[tuple[int, np.ndarray | None]]:
    """(start_pfn, the section's struct pages as a (pages, words) uint64 array), each present
    section in order (with ``kpf``: ``None`` for a section that is not online); reads each
    section's vmemmap in place when it is stored contiguously, else into a reused buffer
    (unmapped parts left zero)."""
    g = section_geometry(prog)
    n = g.pages_per_section
    span = n * lay.size
    if span > 1 << 30:
        raise ValueError(
            f"{n} struct pages per memory section (SECTION_SIZE_BITS {g.section_size_bits}): "
            "not a section size of x86-64"
        )
    base = vmemmap(prog).value_()
    try:
        online = 1 << prog.types.const("SECTION_IS_ONLINE_BIT")
    except LookupError:
        online = 0
    buf = np.empty(span, dtype=np.uint8)
    off_map = prog.types.struct("mem_section").offsetof("section_mem_map")
    for sec in for_each_present_section(prog):
        if kpf and online:
            smm = int.from_bytes(prog.read(sec.section.value_() + off_map, 8), "little")
            if not smm & online:
                yield sec.start_pfn, None
                continue
        vaddr = base + sec.start_pfn * lay.size
        runs: list[tuple[int, int, int]] = []
        pos = 0
        while pos < span:
            try:
                for v, p, length in prog.translate_range(vaddr + pos, span - pos):
                    runs.append((v - vaddr, p, length))
                    pos = v - vaddr + length
            except FaultError:
                runs.append((pos, -1, 4096 - (vaddr + pos) % 4096))
                pos += 4096 - (vaddr + pos) % 4096
        if len(runs) == 1 and runs[0][1] >= 0:
            raw = prog.core.read_phys_array(runs[0][1], span)
        else:
            raw = buf
            for off, p, length in runs:
                if p < 0:
                    raw[off : off + length] = 0
                else:
                    prog.core.read_phys_into(raw[off : off + length], p)
        yield sec.start_pfn, raw.view(np.uint64).reshape(n, lay.words)


class _Counter:
    """Run-length counts of a key per section, summed at the end."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []

    def add(self, key: np.ndarray) -> None:
        if len(key) == 0:
            return
        starts = np.flatnonzero(key[1:] != key[:-1])
        starts += 1
        run_keys = key[np.concatenate(([0], starts))]
        lengths = np.diff(np.concatenate(([0], starts, [len(key)])))
        if len(run_keys) > 64:
            run_keys, inv = np.unique(run_keys, return_inverse=True)
            lengths = np.bincount(inv, weights=lengths).astype(np.int64)
        self.keys.append(run_keys.astype(np.uint64))
        self.counts.append(lengths.astype(np.int64))

    def add_const(self, key: int, count: int) -> None:
        if count:
            self.keys.append(np.array([key], dtype=np.uint64))
            self.counts.append(np.array([count], dtype=np.int64))

    def result(self) -> list[tuple[int, int]]:
        if not self.keys:
            return []
        keys, inv = np.unique(np.concatenate(self.keys), return_inverse=True)
        counts = np.bincount(inv, weights=np.concatenate(self.counts))
        return [(k, int(c)) for k, c in zip(keys.tolist(), counts.tolist())]


def _heads(
    prog: Program, lay: _Layout, w: np.ndarray, start_pfn: int, base: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each page of the section: is it a tail, and its head's index in this section (-1
    when the head is elsewhere or not a struct page), plus the compound_head words."""
    ch = w[:, lay.w_ch]
    tail = (w.view(np.uint8)[:, 8 * lay.w_ch] & 1).astype(bool)
    hidx = np.full(len(w), -1, dtype=np.int64)
    ti = np.flatnonzero(tail)
    if len(ti):
        off = ch[ti] - np.uint64(1) - np.uint64(base + start_pfn * lay.size)  # wraps below the section
        local = (off < np.uint64(len(w) * lay.size)) & (off % np.uint64(lay.size) == 0)
        hidx[ti[local]] = (off[local] // np.uint64(lay.size)).astype(np.int64)
    return tail, hidx, ch


def _remote_heads(
    prog: Program,
    lay: _Layout,
    ch: np.ndarray,
    base: int,
    nr_pfns: int,
    present: dict[int, bool],
    cache: dict[int, np.ndarray | None],
) -> dict[int, np.ndarray | None]:
    """The two struct pages (head and first tail) of each head outside the section, read once:
    None when ``compound_head - 1`` is not a struct page of a present section."""
    g = section_geometry(prog)
    for h in np.unique(ch).tolist():
        h -= 1
        if h in cache:
            continue
        off = h - base
        pfn = off // lay.size
        if off < 0 or off % lay.size or pfn >= nr_pfns:
            cache[h] = None
        elif not present.get(pfn >> g.pfn_section_shift, False):
            cache[h] = np.zeros((2, lay.words), dtype=np.uint64)  # a section without a map reads as zeros
        else:
            try:
                cache[h] = np.frombuffer(prog.read(h, 2 * lay.size), dtype=np.uint64).reshape(2, lay.words).copy()
            except FaultError:
                cache[h] = None
    return cache


def page_types(prog: Program, kpf: bool = False, raw: bool = False) -> list[PageTypesRow]:
    """Rows sorted by flags, covering every struct page of every present section (with
    ``kpf``, every pfn below round_up(max_pfn, PAGES_PER_SECTION), as page-types reads
    /proc/kpageflags)."""
    if kpf:
        return _kpf_page_types(prog, raw)
    fl = flags_layout(prog)
    lay = _layout(prog)
    g = section_geometry(prog)
    base = vmemmap(prog).value_()
    mask = np.uint64(fl.flag_mask)
    not_head = ~np.uint64(1 << prog.types.const("PG_head"))
    tail_bit = np.uint64(1 << _TAIL_BIT)
    sections = list(for_each_present_section(prog))
    present = {s.nr: True for s in sections}
    nr_pfns = (sections[-1].nr + 1) * g.pages_per_section if sections else 0
    counter = _Counter()
    cache: dict[int, np.ndarray | None] = {}

    def key_of(words: np.ndarray) -> np.ndarray:  # for a few struct pages (remote heads)
        pt = (words[:, lay.w_type] >> np.uint64(lay.type_shift)).astype(np.uint32)
        typed = pt.view(np.int32) < PAGE_TYPE_LIMIT
        return (words[:, lay.w_flags] & mask) | np.where(
            typed, (pt >> np.uint32(24)).astype(np.uint64) << np.uint64(_TYPE_SHIFT), np.uint64(0)
        )

    # one pass per section, into buffers allocated once (fresh temporaries of this size would
    # each be mmap'ed and page-faulted by malloc); the key is built as two u32 halves: the
    # flags (every PG_* bit is below bit 32) and the page type byte -- typed when
    # (int)page_type < PAGE_TYPE_LIMIT, i.e. its top byte is 0x80 .. 0xfe
    n = g.pages_per_section
    if fl.flag_mask >> 32 or lay.type_shift not in (0, 32):
        raise ValueError("page flags above bit 31 or a misaligned page_type: not a 6.18 struct page")
    key = np.empty(n, dtype=np.uint64)
    key32 = key.view(np.uint32).reshape(n, 2)
    mask32 = np.uint32(fl.flag_mask)
    top_rel = np.empty(n, dtype=np.uint8)
    typed = np.empty(n, dtype=bool)
    tail8 = np.empty(n, dtype=np.uint8)
    flags_col = 2 * lay.w_flags  # the low u32 of page->flags
    top_byte = 8 * lay.w_type + lay.type_shift // 8 + 3  # page_type's top byte (little-endian)
    chunk = min(n, _CHUNK)
    for start_pfn, w in _section_words(prog, lay, False):
        assert w is not None
        for o in range(0, n, chunk):  # chunks small enough that the later passes hit the L2 cache
            e = o + chunk
            w8 = w[o:e].view(np.uint8)
            np.bitwise_and(w[o:e].view(np.uint32)[:, flags_col], mask32, out=key32[o:e, 0])
            top = w8[:, top_byte]
            np.subtract(top, np.uint8(0x80), out=top_rel[o:e])
            np.less(top_rel[o:e], np.uint8(0x7F), out=typed[o:e])
            np.multiply(top, typed[o:e], out=key32[o:e, 1], casting="unsafe")
            np.bitwise_and(w8[:, 8 * lay.w_ch], 1, out=tail8[o:e])
        if tail8.any():
            tail, hidx, ch = _heads(prog, lay, w, start_pfn, base)
            own = key.copy()
            ti = np.flatnonzero(tail)
            local = hidx[ti] >= 0
            li = ti[local]
            key[li] = (own[hidx[li]] & not_head) | tail_bit
            far = ti[~local]
            # a tail whose compound_head is no struct page: no flags, its own page type
            key[far] = (own[far] & ~mask) | tail_bit
            if len(far):
                _remote_heads(prog, lay, ch[far], base, nr_pfns, present, cache)
                heads = ch[far] - np.uint64(1)
                for h in np.unique(heads).tolist():
                    hw = cache.get(h)
                    if hw is not None:
                        key[far[heads == np.uint64(h)]] = (key_of(hw[:1])[0] & not_head) | tail_bit
        counter.add(key)
    rows = []
    for k, n in counter.result():
        flags = k & fl.flag_mask
        byte = k >> _TYPE_SHIFT & 0xFF
        pt = (page_type_name(prog, byte << 24) or "") if byte else ""
        is_tail = bool(k >> _TAIL_BIT & 1)
        names = [nm.removeprefix("PG_").lower() for nm in flag_names(prog, flags)]
        names += [pt] if pt else []
        names += ["tail"] if is_tail else []
        rows.append(PageTypesRow(flags, pt, is_tail, n, n * prog.page_size >> 20, ",".join(names)))
    return rows


# -- KPF_* (stable_page_flags) ------------------------------------------------------------------------
def _const(prog: Program, name: str) -> int | None:
    try:
        return prog.types.const(name)
    except LookupError:
        return None


def _symbol_value(prog: Program, name: str) -> int | None:
    try:
        return prog[name].value_()
    except (KeyError, LookupError, FaultError):
        return None


def expand_overloaded_flags(flags: int) -> int:
    """tools/mm/page-types.c expand_overloaded_flags() without a pagemap entry."""
    b = 1 << KPF["ANONYMOUS"], 1 << KPF["OWNER_2"], 1 << KPF["ANON_EXCLUSIVE"]
    if flags & b[0] and flags & b[1]:
        flags ^= b[1] | b[2]
    if flags & 1 << KPF["SLAB"]:
        if flags & 1 << KPF["ACTIVE"]:
            flags ^= 1 << KPF["ACTIVE"] | 1 << KPF["SLUB_FROZEN"]
        if flags & 1 << KPF["ERROR"]:
            flags ^= 1 << KPF["ERROR"] | 1 << KPF["SLUB_DEBUG"]
    if flags & (1 << KPF["RECLAIM"] | 1 << KPF["WRITEBACK"]) == 1 << KPF["RECLAIM"]:
        flags ^= 1 << KPF["RECLAIM"] | 1 << KPF["READAHEAD"]
    return flags


def well_known_flags(flags: int) -> int:
    """tools/mm/page-types.c well_known_flags(): hide the kernel-hacker bits and the compound
    bits of pages that are not hugetlb."""
    flags &= ~KPF_HACKERS_BITS
    if flags & BITS_COMPOUND and not flags & 1 << KPF["HUGE"]:
        flags &= ~BITS_COMPOUND
    return flags


def kpf_symbolic(flags: int) -> tuple[str, str]:
    """page_flag_name() and page_flag_longname(): one letter per named bit (``_`` when clear),
    and the long names of the set bits."""
    short = "".join(v[0] if flags >> b & 1 else "_" for b, v in sorted(KPF_NAMES.items()))
    long = ",".join(v[2:] for b, v in sorted(KPF_NAMES.items()) if flags >> b & 1)
    return short, long


def _kpf_page_types(prog: Program, raw: bool) -> list[PageTypesRow]:
    lay = _layout(prog)
    g = section_geometry(prog)
    base = vmemmap(prog).value_()
    c = {
        n: _const(prog, n)
        for n in (
            "PG_head",
            "PG_swapcache",
            "PG_swapbacked",
            "PG_large_rmappable",
            "PGTY_buddy",
            "PGTY_offline",
            "PGTY_table",
            "PGTY_hugetlb",
            "PGTY_slab",
        )
    }
    copies = [(KPF[u], pg) for u, name in _COPY if (pg := _const(prog, name)) is not None]
    sections = list(for_each_present_section(prog))
    present = {s.nr: True for s in sections}
    nr_pfns = (sections[-1].nr + 1) * g.pages_per_section if sections else 0
    max_pfn = _symbol_value(prog, "max_pfn") or nr_pfns
    if max_pfn > nr_pfns:
        raise ValueError(f"max_pfn {max_pfn:#x} is beyond the last present memory section (pfn {nr_pfns:#x})")
    max_dump_pfn = -(-max_pfn // g.pages_per_section) * g.pages_per_section  # get_max_dump_pfn()
    zero_pfn = _symbol_value(prog, "zero_pfn")
    huge_zero = _symbol_value(prog, "huge_zero_folio") or None
    huge_zero_pfn = (
        (huge_zero - base) // lay.size if huge_zero is not None and (huge_zero - base) % lay.size == 0 else None
    )
    u64 = np.uint64
    counter = _Counter()
    cache: dict[int, np.ndarray | None] = {}
    seen = 0

    def bit(words: np.ndarray, b: int | None) -> np.ndarray:
        return (words >> u64(b)) & u64(1) if b is not None else np.zeros(len(words), dtype=np.uint64)

    def top(words: np.ndarray) -> np.ndarray:  # the page type byte, 0 when untyped
        pt = (words >> u64(lay.type_shift)).astype(np.uint32)
        return np.where(pt.view(np.int32) < PAGE_TYPE_LIMIT, pt >> np.uint32(24), np.uint32(0))

    # kpf_copy_bit(k, KPF_x, PG_y) for every copied flag, as one table per byte of the flags word
    copy_lut = np.zeros((max((pg for _, pg in copies), default=0) // 8 + 1, 256), dtype=np.uint64)
    values = np.arange(256)
    for kb, pg in copies:
        copy_lut[pg // 8] |= (values >> (pg % 8) & 1).astype(np.uint64) << np.uint64(kb)
    chunk = min(g.pages_per_section, _CHUNK)
    no_type = 0x100  # a page type byte no page has (for a PGTY_* the dump does not define)

    def _kpf_chunk(
        w: np.ndarray,
        o: int,
        e: int,
        start_pfn: int,
        tail: np.ndarray,
        ti: np.ndarray,
        hidx: np.ndarray,
        remote: dict[int, np.ndarray | None],
    ) -> np.ndarray:
        """stable_page_flags() of the pages [o, e) of one section's struct pages ``w``."""
        c_ = e - o
        li = ti[hidx[ti] >= 0]
        far = ti[hidx[ti] < 0]
        hl = hidx[li]

        def folio_col(word: int, nxt: bool = False) -> np.ndarray:
            """A column of page_folio(page) (``nxt``: of its first tail, page[1] of the folio)."""
            if nxt:
                out = np.zeros(c_, dtype=np.uint64)
                top_ = min(e + 1, len(w))
                out[: top_ - o - 1] = w[o + 1 : top_, word]
                if len(li):
                    out[li - o] = w[np.minimum(hl + 1, len(w) - 1), word]
            else:
                out = w[o:e, word].copy()
                if len(li):
                    out[li - o] = w[hl, word]
            for i in far.tolist():
                hw = remote.get(i)
                if hw is not None:
                    out[i - o] = hw[1 if nxt else 0, word]
            return out

        k = folio_col(lay.w_flags)
        mapping = folio_col(lay.w_mapping)
        ftw = folio_col(lay.w_type)
        f1_flags = folio_col(lay.w_flags_1, nxt=True)
        f1_lm = folio_col(lay.w_large_mapcount, nxt=True)
        ftop = top(ftw)
        own_top = top(w[o:e, lay.w_type])
        large = bit(k, c["PG_head"]).astype(bool)
        u = np.zeros(c_, dtype=np.uint64)
        # page_mapped(): folio_mapped -- _mapcount >= 0 of a small folio, _large_mapcount >= 0 of a large one
        mc_small = (ftw >> u64(lay.type_shift)).astype(np.uint32).view(np.int32)
        mc_large = (f1_lm >> u64(lay.large_mapcount_shift)).astype(np.uint32).view(np.int32)
        mapped = np.where(large, mc_large >= 0, (mc_small >= 0) & (ftop == 0))
        u |= mapped.astype(np.uint64) << u64(KPF["MMAP"])
        u |= (mapping & u64(1)) << u64(KPF["ANONYMOUS"])
        u |= ((mapping & u64(3)) == u64(3)).astype(np.uint64) << u64(KPF["KSM"])
        u |= np.where(tail, u64(1 << KPF["COMPOUND_TAIL"]), bit(k, c["PG_head"]) << u64(KPF["COMPOUND_HEAD"]))
        huge = ftop == np.uint32(c["PGTY_hugetlb"] or no_type)
        thp = ~huge & large & bit(f1_flags, c["PG_large_rmappable"]).astype(bool)
        u |= huge.astype(np.uint64) << u64(KPF["HUGE"])
        u |= thp.astype(np.uint64) << u64(KPF["THP"])
        lo_, hi_ = start_pfn + o, start_pfn + e
        if (zero_pfn is not None and lo_ <= zero_pfn < hi_) or (
            huge_zero_pfn is not None and (lo_ <= huge_zero_pfn < hi_ or len(li) or len(far))
        ):
            folio_pfn = np.arange(start_pfn + o, start_pfn + e, dtype=np.int64)
            folio_pfn[li - o] = start_pfn + hl
            folio_pfn[far - o] = -1
            if huge_zero_pfn is not None:  # is_huge_zero_folio()
                hz = ~huge & ~thp & (folio_pfn == huge_zero_pfn)
                u |= hz.astype(np.uint64) * u64(1 << KPF["ZERO_PAGE"] | 1 << KPF["THP"])
                thp |= hz
            if zero_pfn is not None:  # is_zero_folio()
                u |= (~huge & ~thp & (folio_pfn == zero_pfn)).astype(np.uint64) << u64(KPF["ZERO_PAGE"])
        # PageBuddy(page), or a page inside a free block: page_count 0 and is_free_buddy_page()
        buddy = own_top == np.uint32(c["PGTY_buddy"] or no_type)
        heads = np.flatnonzero(buddy)
        if len(heads):
            in_block = np.zeros(c_ + 1, dtype=np.int32)
            order = w[heads + o, lay.w_private]
            ok = order <= u64(MAX_PAGE_ORDER)
            hs = heads[ok]
            np.add.at(in_block, hs, 1)
            np.add.at(in_block, np.minimum(hs + (1 << order[ok].astype(np.int64)), c_), -1)
            refcount = (ftw >> u64(lay.refcount_shift)).astype(np.uint32)
            buddy |= (np.cumsum(in_block[:c_]) > 0) & (refcount == 0)
        u |= buddy.astype(np.uint64) << u64(KPF["BUDDY"])
        u |= (own_top == np.uint32(c["PGTY_offline"] or no_type)).astype(np.uint64) << u64(KPF["OFFLINE"])
        u |= (own_top == np.uint32(c["PGTY_table"] or no_type)).astype(np.uint64) << u64(KPF["PGTABLE"])
        u |= (ftop == np.uint32(c["PGTY_slab"] or no_type)).astype(np.uint64) << u64(KPF["SLAB"])
        k8 = k.view(np.uint8).reshape(c_, 8)
        for byte, table in enumerate(copy_lut):  # the kpf_copy_bit()s, one table lookup per flags byte
            u |= table[k8[:, byte]]
        if c["PG_swapcache"] is not None and c["PG_swapbacked"] is not None:
            sc = u64(1 << c["PG_swapcache"] | 1 << c["PG_swapbacked"])
            u |= ((k & sc) == sc).astype(np.uint64) << u64(KPF["SWAPCACHE"])
        for i in far.tolist():
            if remote.get(i) is None:  # stable_page_flags() of a folio it cannot find: the tail bit alone
                u[i - o] = u64(1 << KPF["COMPOUND_TAIL"])
        return u

    for start_pfn, w in _section_words(prog, lay, True):
        n = g.pages_per_section
        if start_pfn >= max_dump_pfn:
            break
        counter.add_const(1 << KPF["NOPAGE"], start_pfn - seen)  # pfns of sections without a memory map
        seen = start_pfn + n
        if w is None:  # not online (ZONE_DEVICE): pfn_to_online_page() is NULL
            counter.add_const(1 << KPF["NOPAGE"], min(n, max_dump_pfn - start_pfn))
            continue
        tail, hidx, ch = _heads(prog, lay, w, start_pfn, base)
        ti = np.flatnonzero(tail)
        remote: dict[int, np.ndarray | None] = {}
        far_all = ti[hidx[ti] < 0]
        if len(far_all):
            _remote_heads(prog, lay, ch[far_all], base, nr_pfns, present, cache)
            remote = {i: cache.get(int(ch[i]) - 1) for i in far_all.tolist()}
        m = min(n, max_dump_pfn - start_pfn)
        for o in range(0, m, chunk):  # buddy blocks (<= MAX_PAGE_ORDER) never straddle a chunk
            e = min(o + chunk, m)
            counter.add(_kpf_chunk(w, o, e, start_pfn, tail[o:e], ti[(ti >= o) & (ti < e)], hidx, remote))
    counter.add_const(1 << KPF["NOPAGE"], max(0, max_dump_pfn - seen))
    totals: dict[int, int] = {}
    for flags, count in counter.result():
        f = expand_overloaded_flags(flags) if raw else well_known_flags(flags)
        totals[f] = totals.get(f, 0) + count
    rows = []
    for f, count in sorted(totals.items()):
        short, long = kpf_symbolic(f)
        rows.append(
            PageTypesRow(f, "", bool(f >> KPF["COMPOUND_TAIL"] & 1), count, count * prog.page_size >> 20, short, long)
        )
    return rows


def render(rows: list[PageTypesRow], kpf: bool = False) -> str:
    """page-types' layout: ``flags page-count MB symbolic-flags`` (with ``kpf`` also
    ``long-symbolic-flags``, as show_summary() prints them) and a total line."""
    if kpf:
        out = [f"{'flags':>18}\t{'page-count':>10} {'MB':>8}  symbolic-flags\t\t\tlong-symbolic-flags"]
        out += [
            f"{r.flags:#018x}\t{r.page_count:>10} {r.mb:>8}  {r.symbolic_flags}\t{r.long_symbolic_flags}" for r in rows
        ]
    else:
        out = [f"{'flags':>18}\t{'page-count':>10} {'MB':>8}  symbolic-flags"]
        out += [f"{r.flags:#018x}\t{r.page_count:>10} {r.mb:>8}  {r.symbolic_flags or '-'}" for r in rows]
    total = sum(r.page_count for r in rows)
    mb = total * 4096 >> 20
    out.append(f"{'total':>18}\t{total:>10} {mb:>8}")
    return "\n".join(out) + "\n"
