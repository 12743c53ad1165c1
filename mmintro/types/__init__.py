"""Linux 6.18 x86-64 type data: the one source of layouts for simulator, reader and DWARF."""

from mmintro.types.typedata import Member, Type, TypeDB, TypeError_, get_types

__all__ = ["Member", "Type", "TypeDB", "TypeError_", "get_types"]
