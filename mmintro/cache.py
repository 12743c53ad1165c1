"""Where mmintro keeps what it makes once and reuses: the default machine's snapshot, fetched
kernels and reference dumps, type data and symbols of real kernels, generated debug info."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$MMINTRO_CACHE``, else ``$XDG_CACHE_HOME/mmintro``, else ``~/.cache/mmintro``."""
    env = os.environ.get("MMINTRO_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mmintro"
