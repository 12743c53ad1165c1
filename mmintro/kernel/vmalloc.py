"""vmalloc (mm/vmalloc.c) — being written for the slab/vmalloc issue."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def vmalloc_init(k: "Kernel") -> None:
    """mm_core_init() -> vmalloc_init(): not yet modelled (no vmap areas exist)."""
