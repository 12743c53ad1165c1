"""Kernel helpers over a snapshot :class:`~mmintro.reader.program.Program`, named like drgn's
``drgn.helpers.linux`` modules and the kernel APIs they mirror."""
