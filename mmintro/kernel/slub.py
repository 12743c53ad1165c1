"""SLUB (mm/slub.c, mm/slab_common.c) — being written for the slab issue."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel


def kmem_cache_init(k: "Kernel") -> None:
    """mm_core_init() -> kmem_cache_init(): not yet modelled (no slab caches exist)."""
