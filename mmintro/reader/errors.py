"""Errors raised by the snapshot reader.

Three kinds, kept apart because callers react differently:

* :class:`SnapshotError` -- the files themselves are unusable (missing, truncated, not the
  right kind of ELF, a vmcore and vmlinux that do not belong together).  One clear line.
* :class:`FaultError` -- an address that does not translate or is not backed by RAM, like
  drgn's ``FaultError``.  Normal while exploring; it carries the address.
* :class:`ValidationError` -- the files are fine, but a kernel structure walked through them
  is corrupt (a list cycle, a broken ``prev`` link).  A finding about the snapshot's state.
"""

from __future__ import annotations

__all__ = ["SnapshotError", "FaultError", "ValidationError", "SymbolNotFoundError"]


class SnapshotError(Exception):
    """A snapshot file is missing, malformed, truncated or does not match its partner."""


class FaultError(Exception):
    """Reading ``address`` failed: not mapped by the page tables, or not RAM."""

    def __init__(self, address: int, msg: str = "could not read memory") -> None:
        self.address = address
        self.message = msg
        super().__init__(f"{msg}: {address:#x}")


class ValidationError(Exception):
    """A kernel data structure read from the snapshot is inconsistent."""


class SymbolNotFoundError(SnapshotError, KeyError):
    """``prog[name]`` of a name that is neither a symbol of the snapshot nor a constant.  A
    KeyError, as drgn raises (callers that probe for an optional global catch KeyError), and a
    SnapshotError, so that a report needing the global says so in one line (a missing or
    damaged ``.symtab``) instead of a traceback."""

    __str__ = Exception.__str__
