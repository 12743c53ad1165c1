"""Report views: pure functions from a snapshot :class:`~mmintro.reader.Program` to rows or
structures, with text renderers kept separate (STYLE.md: compute rows once, render as /proc
text, a table, or JSON).  Nothing here touches simulator objects."""
