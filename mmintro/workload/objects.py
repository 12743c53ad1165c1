"""Slab and vmalloc steps (mm/slub.c, mm/vmalloc.c): ``kmalloc``/``kfree`` and
``vmalloc``/``vfree`` objects under tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.workload.core import ExpectationFailed, WorkloadError
from mmintro.workload.pages import _gfp

if TYPE_CHECKING:
    from mmintro.workload.api import Workload


def _cache_objects(w: Workload, name: str) -> int:
    """Allocated objects in the slab cache ``name`` (every caller, boot's included)."""
    from mmintro.kernel import slub

    try:
        s = slub.find_cache(w.k, name)
    except Exception:
        raise WorkloadError(f"no slab cache named {name!r}") from None
    return len(slub.live_objects(w.k, s))


class SlabSteps:
    """kmalloc / kmem_cache_alloc / vmalloc objects under tags (the Workload's ``objects``)."""

    def object_list(self, tag: str) -> list[tuple[int, str]]:
        try:
            return self.objects[tag]
        except KeyError:
            raise WorkloadError(
                f"unknown object tag {tag!r} (tags so far: {', '.join(self.objects) or 'none'})"
            ) from None

    def kmalloc(
        self,
        tag: str,
        size: int | None = None,
        gfp: int | str = "GFP_KERNEL",
        count: int = 1,
        cache: str | None = None,
        node: int | None = None,
        cpu: int | None = None,
        caller: str = "mmintro_workload_kmalloc",
    ) -> list[int]:
        """``count`` kmalloc(size, gfp) (or kmem_cache_alloc from the named ``cache``),
        from the call site ``caller`` (a function symbol in the snapshot)."""
        from mmintro.kernel import slub

        mask = _gfp(gfp)
        if (size is None) == (cache is None):
            raise WorkloadError("kmalloc takes a size or a cache")
        s = None
        if cache is not None:
            try:
                s = slub.find_cache(self.k, cache)
            except Exception:
                raise WorkloadError(f"no slab cache named {cache!r}") from None
        out = []
        with self._cpu(cpu):
            for _ in range(count):
                if s is not None:
                    a = (
                        slub.kmem_cache_alloc_node(self.k, s, mask, node, caller=caller)
                        if node is not None
                        else slub.kmem_cache_alloc(self.k, s, mask, caller=caller)
                    )
                else:
                    a = (
                        slub.kmalloc_node(self.k, size, mask, node, caller=caller)
                        if node is not None
                        else slub.kmalloc(self.k, size, mask, caller=caller)
                    )
                if not a:
                    raise ExpectationFailed(f"kmalloc {tag}: allocation {len(out) + 1} of {count} failed")
                out.append(a)
        kind = f"cache:{cache}" if cache is not None else "kmalloc"
        self.objects.setdefault(tag, []).extend((a, kind) for a in out)
        return out

    def kfree(
        self,
        tag: str,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
    ) -> int:
        """kfree()/kmem_cache_free() objects of ``tag`` (all, every n-th, or a seeded random
        fraction/count); returns how many."""
        from mmintro.kernel import slub

        objs = self.object_list(tag)
        if not objs:  # all freed already: another free is a double free
            raise WorkloadError(f"tag {tag!r} has no live objects: they were all freed already")
        chosen = self._choose(len(objs), every, offset, fraction, count)
        with self._cpu(cpu):
            for i in chosen:
                a, kind = objs[i]
                if kind == "vmalloc":
                    raise WorkloadError(f"tag {tag!r} holds vmalloc areas: use vfree")
                if kind.startswith("cache:"):
                    slub.kmem_cache_free(self.k, slub.find_cache(self.k, kind[6:]), a)
                else:
                    slub.kfree(self.k, a)
        gone = set(chosen)
        self.objects[tag] = [o for i, o in enumerate(objs) if i not in gone]
        return len(chosen)

    def vmalloc(
        self,
        tag: str,
        size: int,
        count: int = 1,
        node: int | None = None,
        zero: bool = False,
        cpu: int | None = None,
        caller: str = "mmintro_workload_vmalloc",
    ) -> list[int]:
        """``count`` vmalloc(size) (vzalloc with ``zero``; _node variants with ``node``)."""
        from mmintro.kernel import vmalloc as vm

        out = []
        with self._cpu(cpu):
            for _ in range(count):
                if node is not None:
                    a = (vm.vzalloc_node if zero else vm.vmalloc_node)(self.k, size, node, caller)
                else:
                    a = (vm.vzalloc if zero else vm.vmalloc)(self.k, size, caller)
                if not a:
                    raise ExpectationFailed(f"vmalloc {tag}: allocation {len(out) + 1} of {count} failed")
                out.append(a)
        self.objects.setdefault(tag, []).extend((a, "vmalloc") for a in out)
        return out

    def vfree(
        self,
        tag: str,
        every: int | None = None,
        offset: int = 0,
        fraction: float | None = None,
        count: int | None = None,
        cpu: int | None = None,
    ) -> int:
        from mmintro.kernel import vmalloc as vm

        objs = self.object_list(tag)
        if not objs:  # all freed already: another free is a double free
            raise WorkloadError(f"tag {tag!r} has no live objects: they were all freed already")
        chosen = self._choose(len(objs), every, offset, fraction, count)
        with self._cpu(cpu):
            for i in chosen:
                a, kind = objs[i]
                if kind != "vmalloc":
                    raise WorkloadError(f"tag {tag!r} holds slab objects: use kfree")
                vm.vfree(self.k, a)
        gone = set(chosen)
        self.objects[tag] = [o for i, o in enumerate(objs) if i not in gone]
        return len(chosen)
