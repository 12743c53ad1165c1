"""GFP flags (include/linux/gfp_types.h, include/linux/gfp.h) of the reference 6.18 kernel.

The bit numbers come from the pinned type data (the anonymous ``___GFP_*_BIT`` enum);
the composite masks are built from them exactly as gfp_types.h builds them, so
``GFP_KERNEL == 0xcc0`` is derived, not typed.  :func:`parse_gfp` reads the
``GFP_KERNEL|__GFP_ZERO`` spelling scenarios use and :func:`format_gfp` prints a mask as
the kernel's ``%pGg`` does (include/trace/events/mmflags.h order).
"""

from __future__ import annotations

from mmintro.types import get_types

_T = get_types()


def _bits() -> dict[str, int]:
    out = {}
    for name in (
        "DMA",
        "HIGHMEM",
        "DMA32",
        "MOVABLE",
        "RECLAIMABLE",
        "HIGH",
        "IO",
        "FS",
        "ZERO",
        "DIRECT_RECLAIM",
        "KSWAPD_RECLAIM",
        "WRITE",
        "NOWARN",
        "RETRY_MAYFAIL",
        "NOFAIL",
        "NORETRY",
        "MEMALLOC",
        "COMP",
        "NOMEMALLOC",
        "HARDWALL",
        "THISNODE",
        "ACCOUNT",
        "ZEROTAGS",
        "NO_OBJ_EXT",
    ):
        out[f"__GFP_{name}"] = 1 << _T.const(f"___GFP_{name}_BIT")
    return out


FLAGS: dict[str, int] = _bits()
globals().update(FLAGS)
__GFP_BITS_SHIFT = _T.const("___GFP_LAST_BIT")
__GFP_BITS_MASK = (1 << __GFP_BITS_SHIFT) - 1

# The composites, as gfp_types.h defines them.
__GFP_RECLAIM = FLAGS["__GFP_DIRECT_RECLAIM"] | FLAGS["__GFP_KSWAPD_RECLAIM"]
GFP_ATOMIC = FLAGS["__GFP_HIGH"] | FLAGS["__GFP_KSWAPD_RECLAIM"]
GFP_KERNEL = __GFP_RECLAIM | FLAGS["__GFP_IO"] | FLAGS["__GFP_FS"]
GFP_KERNEL_ACCOUNT = GFP_KERNEL | FLAGS["__GFP_ACCOUNT"]
GFP_NOWAIT = FLAGS["__GFP_KSWAPD_RECLAIM"] | FLAGS["__GFP_NOWARN"]
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | FLAGS["__GFP_IO"]
GFP_USER = __GFP_RECLAIM | FLAGS["__GFP_IO"] | FLAGS["__GFP_FS"] | FLAGS["__GFP_HARDWALL"]
GFP_DMA = FLAGS["__GFP_DMA"]
GFP_DMA32 = FLAGS["__GFP_DMA32"]
GFP_HIGHUSER = GFP_USER | FLAGS["__GFP_HIGHMEM"]
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | FLAGS["__GFP_MOVABLE"]  # | __GFP_SKIP_KASAN, 0 without KASAN_HW_TAGS
GFP_TRANSHUGE_LIGHT = (
    GFP_HIGHUSER_MOVABLE | FLAGS["__GFP_COMP"] | FLAGS["__GFP_NOMEMALLOC"] | FLAGS["__GFP_NOWARN"]
) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | FLAGS["__GFP_DIRECT_RECLAIM"]
GFP_MOVABLE_MASK = FLAGS["__GFP_RECLAIMABLE"] | FLAGS["__GFP_MOVABLE"]
GFP_MOVABLE_SHIFT = _T.const("___GFP_MOVABLE_BIT")
GFP_ZONEMASK = FLAGS["__GFP_DMA"] | FLAGS["__GFP_HIGHMEM"] | FLAGS["__GFP_DMA32"] | FLAGS["__GFP_MOVABLE"]

COMPOSITES: dict[str, int] = {
    "__GFP_RECLAIM": __GFP_RECLAIM,
    "GFP_ATOMIC": GFP_ATOMIC,
    "GFP_KERNEL": GFP_KERNEL,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
    "GFP_NOWAIT": GFP_NOWAIT,
    "GFP_NOIO": GFP_NOIO,
    "GFP_NOFS": GFP_NOFS,
    "GFP_USER": GFP_USER,
    "GFP_DMA": GFP_DMA,
    "GFP_DMA32": GFP_DMA32,
    "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE,
    "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
}
NAMES: dict[str, int] = {**FLAGS, **COMPOSITES}

# include/trace/events/mmflags.h __def_gfpflag_names: the order %pGg tries names in.
_PRINT_ORDER = [
    "GFP_TRANSHUGE",
    "GFP_TRANSHUGE_LIGHT",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_HIGHUSER",
    "GFP_USER",
    "GFP_KERNEL_ACCOUNT",
    "GFP_KERNEL",
    "GFP_NOFS",
    "GFP_ATOMIC",
    "GFP_NOIO",
    "GFP_NOWAIT",
    "GFP_DMA",
    "__GFP_HIGHMEM",
    "GFP_DMA32",
    "__GFP_HIGH",
    "__GFP_IO",
    "__GFP_FS",
    "__GFP_NOWARN",
    "__GFP_RETRY_MAYFAIL",
    "__GFP_NOFAIL",
    "__GFP_NORETRY",
    "__GFP_COMP",
    "__GFP_ZERO",
    "__GFP_NOMEMALLOC",
    "__GFP_MEMALLOC",
    "__GFP_HARDWALL",
    "__GFP_THISNODE",
    "__GFP_RECLAIMABLE",
    "__GFP_MOVABLE",
    "__GFP_ACCOUNT",
    "__GFP_WRITE",
    "__GFP_RECLAIM",
    "__GFP_DIRECT_RECLAIM",
    "__GFP_KSWAPD_RECLAIM",
    "__GFP_ZEROTAGS",
    "__GFP_NO_OBJ_EXT",
]


class GfpError(ValueError):
    pass


def parse_gfp(text: str | int) -> int:
    """``"GFP_KERNEL|__GFP_ZERO"`` (names joined by ``|``, or a number) -> mask."""
    if isinstance(text, int):
        return text
    mask = 0
    for part in text.replace(" ", "").split("|"):
        if not part:
            raise GfpError(f"empty GFP flag in {text!r}")
        if part in NAMES:
            mask |= NAMES[part]
            continue
        try:
            mask |= int(part, 0)
        except ValueError:
            raise GfpError(f"unknown GFP flag {part!r}") from None
    if mask & ~__GFP_BITS_MASK:
        raise GfpError(f"GFP mask {mask:#x} has bits above __GFP_BITS_SHIFT ({__GFP_BITS_SHIFT})")
    return mask


def format_gfp(mask: int) -> str:
    """The kernel's ``%pGg``: known names first-match in mmflags.h order, then the rest in hex."""
    names = []
    for name in _PRINT_ORDER:
        m = NAMES[name]
        if m and mask & m == m:
            names.append(name)
            mask &= ~m
    if mask:
        names.append(f"{mask:#x}")
    return "|".join(names) if names else "none"


def gfp_zone(gfp: int) -> int:
    """include/linux/gfp.h gfp_zone() for x86-64 (no highmem: OPT_ZONE_HIGHMEM = ZONE_NORMAL).
    Returns the highest zone index the request may use."""
    zb = gfp & GFP_ZONEMASK
    dma, highmem, dma32, movable = (
        FLAGS["__GFP_DMA"],
        FLAGS["__GFP_HIGHMEM"],
        FLAGS["__GFP_DMA32"],
        FLAGS["__GFP_MOVABLE"],
    )
    zone_dma, zone_dma32, zone_normal, zone_movable = (
        _T.const("ZONE_DMA"),
        _T.const("ZONE_DMA32"),
        _T.const("ZONE_NORMAL"),
        _T.const("ZONE_MOVABLE"),
    )
    table = {
        0: zone_normal,
        dma: zone_dma,
        highmem: zone_normal,
        dma32: zone_dma32,
        movable: zone_normal,
        movable | dma: zone_dma,
        movable | highmem: zone_movable,
        movable | dma32: zone_dma32,
    }
    if zb not in table:  # GFP_ZONE_BAD: the kernel BUGs
        raise GfpError(f"invalid zone modifier combination {format_gfp(zb)}")
    return table[zb]


def gfp_migratetype(gfp: int) -> int:
    """include/linux/gfp.h gfp_migratetype(): MOVABLE -> MIGRATE_MOVABLE,
    RECLAIMABLE -> MIGRATE_RECLAIMABLE, neither -> MIGRATE_UNMOVABLE."""
    if gfp & GFP_MOVABLE_MASK == GFP_MOVABLE_MASK:
        raise GfpError("__GFP_MOVABLE and __GFP_RECLAIMABLE together are invalid")
    return (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT
