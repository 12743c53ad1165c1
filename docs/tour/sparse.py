"""The sparse memory model of a snapshot: ``mmintro run docs/tour/sparse.py SNAPSHOT``.

SPARSEMEM_VMEMMAP: physical memory is cut into sections of 128 MiB; each present section has
its struct pages in the virtual memory map (vmemmap), so pfn_to_page(pfn) is vmemmap + pfn.
"""

# ruff: noqa: F821 -- mmintro run puts prog and the helpers in the globals

geo = section_geometry(prog)
sections = list(for_each_present_section(prog))
print(f"section size        {1 << geo.section_size_bits >> 20} MiB ({geo.pages_per_section} pages)")
print(f"sections per root   {geo.sections_per_root} (mem_section[{geo.nr_section_roots}] roots)")
print(f"present sections    {len(sections)}: {sections[0].nr}..{sections[-1].nr}")
missing = [nr for nr in range(sections[0].nr, sections[-1].nr + 1) if nr not in {s.nr for s in sections}]
print(f"holes               {len(missing)} sections not present" + (f": {missing[0]}..{missing[-1]}" if missing else ""))
print(f"vmemmap             {prog['vmemmap_base'].value_():#x}")
page = pfn_to_page(prog, 0x100000)
print(f"pfn 0x100000        struct page {page.value_():#x} = vmemmap + 0x100000 * {prog.type('struct page').size}")
