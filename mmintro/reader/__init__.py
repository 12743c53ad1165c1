"""mmintro's snapshot reader: opens NAME.vmcore + NAME.vmlinux with no simulator objects.

>>> from mmintro.reader import open_snapshot
>>> prog = open_snapshot("snapshots/boot")
>>> prog["init_mm"].pgd
"""

from mmintro.reader.errors import FaultError, SnapshotError, ValidationError
from mmintro.reader.object import NULL, Object, cast, container_of, reinterpret
from mmintro.reader.program import Program, open_snapshot

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
