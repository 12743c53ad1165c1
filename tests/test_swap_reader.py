"""The swap reader's pure parts (fast, default run): x86-64's swap PTE encoding against the
kernel's own formula and a PTE the real kernel wrote, /proc/swaps's line format (swap_show's
printf), and a snapshot without swap.  The real-kernel oracles are in test_realkernel_swap.py."""

from __future__ import annotations

import numpy as np
from cli_helpers import run

from mmintro.reader.helpers.swap import pte_to_swp_entry, swp_entries
from mmintro.views.swaps import HEADER, SwapRow, mangle_path, render, render_crash

M64 = (1 << 64) - 1


def swp_entry_to_pte(type_: int, offset: int) -> int:
    """arch/x86/include/asm/pgtable_64.h ``__swp_entry(type, offset)``, written out:
    ``(~(unsigned long)offset << SWP_OFFSET_SHIFT >> SWP_TYPE_BITS) | (type << (64 - SWP_TYPE_BITS))``
    with SWP_TYPE_BITS 5 and SWP_OFFSET_SHIFT = (_PAGE_BIT_PROTNONE + 1) + 5 = 14."""
    return ((((~offset) << 14) & M64) >> 5) | (type_ << 59)


def test_swap_pte_decoding_inverts_the_kernels_encoding() -> None:
    cases = [(0, 1), (0, 0x400), (1, 12345), (23, (1 << 50) - 1), (31, 0)]
    for t, off in cases:
        pte = swp_entry_to_pte(t, off)
        assert not pte & 1  # never present
        assert pte_to_swp_entry(pte) == (t, off)
        # the flag bits pte_to_swp_entry clears first (soft-dirty = bit 1, uffd-wp = bit 2,
        # exclusive = bit 7) do not disturb the entry
        assert pte_to_swp_entry(pte | 0x86) == (t, off)
    ptes = np.array([swp_entry_to_pte(t, o) for t, o in cases], dtype=np.uint64)
    types, offsets = swp_entries(ptes)
    assert list(zip(types.tolist(), offsets.tolist())) == cases


def test_a_pte_the_real_kernel_wrote() -> None:
    """0x7fffffffffffc02 was the PTE of the first page of a real-swap guest's swap region
    (Debian's 6.18, soft-dirty set) and 0x7fffffffffdfc02 the child's first swapped page; the
    guest's /proc/self/pagemap said type 0, offsets 1 and 257."""
    assert pte_to_swp_entry(0x7FFFFFFFFFFFC02) == (0, 1)
    assert pte_to_swp_entry(0x7FFFFFFFFFDFC02) == (0, 257)


def test_proc_swaps_lines_follow_swap_show() -> None:
    """``%*s%s\\t%lu\\t%s%lu\\t%s%d\\n``: the path padded to 40 columns (at least one space),
    "partition" or "file\\t", and a second tab after a number below 10000000."""
    rows = [
        SwapRow(1, 0, "/dev/vda", True, 65532, 7168, -2, 0),
        SwapRow(2, 1, "/srv/a swap file with spaces and a long name", False, 16777212, 0, 5, 0),
    ]
    assert render(rows) == (
        HEADER
        + "/dev/vda"
        + " " * 32
        + "partition\t65532\t\t7168\t\t-2\n"
        + "/srv/a\\040swap\\040file\\040with\\040spaces\\040and\\040a\\040long\\040name"
        + " "
        + "file\t\t16777212\t0\t\t5\n"
    )
    assert mangle_path("a\tb\nc\\d e") == "a\\011b\\012c\\134d\\040e"


def test_crash_swap_layout() -> None:
    rows = [SwapRow(0xFFFF8C724232DC00, 0, "/dev/vda", True, 65532, 7168, -2, 0)]
    assert render_crash(rows).splitlines() == [
        "SWAP_INFO_STRUCT    TYPE       SIZE       USED     PCT  PRI  FILENAME",
        "ffff8c724232dc00  PARTITION   65532k      7168k    10%   -2  /dev/vda",
    ]


def test_a_snapshot_without_swap(cli_snapshot: str) -> None:
    assert run("swaps", cli_snapshot).stdout == HEADER
    assert run("swaps", cli_snapshot, "--json").stdout.strip() == "[]"


def test_bad_snapshot_is_one_line() -> None:
    r = run("swaps", "/nonexistent/dump", ok=False)
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
