"""A kernel stand-in for model-only tests: its typed memory writes go nowhere."""

from __future__ import annotations


class NoMem:
    """Has the ``kmem`` writes the maple tree and XArray writers use, doing nothing."""

    class kmem:
        @staticmethod
        def write_bytes(addr: int, data: bytes) -> None:
            pass

        @staticmethod
        def write_u64(addr: int, value: int) -> None:
            pass

        @staticmethod
        def set(*args) -> None:
            pass
