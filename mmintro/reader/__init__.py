"""mmintro's snapshot reader: opens NAME.vmcore + NAME.vmlinux with no simulator objects.

>>> from mmintro.reader import open_snapshot
>>> prog = open_snapshot("snapshots/boot")
>>> prog["init_mm"].pgd
"""

from mmintro.reader.errors import FaultError, SnapshotError, ValidationError

# The rest is loaded when first used (PEP 562): importing the package for its errors (the
# command line does, at start-up) must not import numpy and the type data.
_LAZY = {
    "NULL": "object",
    "Object": "object",
    "cast": "object",
    "container_of": "object",
    "reinterpret": "object",
    "Program": "program",
    "open_snapshot": "program",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"mmintro.reader.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmintro.reader' has no attribute {name!r}")


__all__ = [
    "FaultError",
    "NULL",
    "Object",
    "Program",
    "SnapshotError",
    "ValidationError",
    "cast",
    "container_of",
    "open_snapshot",
    "reinterpret",
]
