"""NAME.vmlinux: the DWARF/ELF writer checked against pyelftools, llvm-dwarfdump, GDB and drgn."""

from __future__ import annotations

import copy
import shutil
import struct
import subprocess

import pytest

from mmintro.snapshot.vmlinux import Symbol, dump_types_section, read_build_id, write_vmlinux
from mmintro.types import get_types
from mmintro.types.typedata import TypeDB, load_types

BUILD_ID = bytes.fromhex("6d6d696e74726f2d7465737400112233445566778899")[:20]
NODE_DATA = 0xFFFFFFFF82A00000
INIT_MM = 0xFFFFFFFF82A10000
SWAPPER_PG_DIR = 0xFFFFFFFF82A20000
MEM_SECTION = 0xFFFFFFFF82A30000
VMEMMAP_POPULATE = 0xFFFFFFFF81100000
KMALLOC_CALLER = 0xFFFFFFFF81100200
RUNQUEUES = 0x34000  # a per-CPU offset


def make_symbols(T: TypeDB) -> list[Symbol]:
    return [
        Symbol("node_data", NODE_DATA, T.var_type("node_data").size, "object", T.var_type("node_data")),
        Symbol("init_mm", INIT_MM, T.var_type("init_mm").size, "object", T.var_type("init_mm")),
        Symbol("swapper_pg_dir", SWAPPER_PG_DIR, 4096, "object", T.var_type("swapper_pg_dir")),
        Symbol("mem_section", MEM_SECTION, 8, "object", T.var_type("mem_section")),
        # a type built outside T.types (id -1) gets its own DIEs
        Symbol("example_page_pp", MEM_SECTION + 8, 8, "object", T.pointer_to(T.pointer_to(T.lookup("struct page")))),
        Symbol("runqueues", RUNQUEUES, 4096, "object"),  # symtab only
        Symbol("vmemmap_populate", VMEMMAP_POPULATE, 0x200, "func"),
        Symbol("kmalloc_caller_example", KMALLOC_CALLER, 0x100, "func"),
    ]


@pytest.fixture(scope="module")
def T() -> TypeDB:
    return get_types()


@pytest.fixture(scope="module")
def vmlinux(T, tmp_path_factory):
    path = tmp_path_factory.mktemp("vmlinux") / "snap.vmlinux"
    write_vmlinux(path, T, make_symbols(T), BUILD_ID, {".mmintro.types": dump_types_section(T)})
    return path


# --- a minimal kernel core (VMCOREINFO only) so drgn takes its real Linux-kernel path ----------------------
def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    n = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def write_min_core(path, build_id: bytes) -> None:
    info = (
        f"OSRELEASE=6.18.0-mmintro\nPAGESIZE=4096\nBUILD-ID={build_id.hex()}\n"
        f"SYMBOL(swapper_pg_dir)={SWAPPER_PG_DIR:x}\nKERNELOFFSET=0\n"
    ).encode()
    notes = _note(b"VMCOREINFO", 0, info)
    note_off = 64 + 2 * 56
    data_off = (note_off + len(notes) + 4095) & ~4095
    hdr = struct.pack(
        "<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0
    )
    ph = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), len(notes), 4)
    ph += struct.pack("<IIQQQQQQ", 1, 7, data_off, 0, 0, 4096, 4096, 4096)
    buf = bytearray(hdr + ph + notes)
    buf += bytes(data_off - len(buf)) + bytes(4096)
    path.write_bytes(bytes(buf))


# --- 1. pyelftools: every type written equals the type data ------------------------------------------------
TAGS = {
    "int": "DW_TAG_base_type",
    "float": "DW_TAG_base_type",
    "ptr": "DW_TAG_pointer_type",
    "array": "DW_TAG_array_type",
    "struct": "DW_TAG_structure_type",
    "fwd": "DW_TAG_structure_type",
    "union": "DW_TAG_union_type",
    "enum": "DW_TAG_enumeration_type",
    "typedef": "DW_TAG_typedef",
    "const": "DW_TAG_const_type",
    "volatile": "DW_TAG_volatile_type",
    "restrict": "DW_TAG_restrict_type",
    "func_proto": "DW_TAG_subroutine_type",
}


def _written(T: TypeDB) -> list:
    """The types that get a DIE, in the writer's (id) order."""
    return [
        t
        for t in T.types[1:]
        if t.kind not in ("void", "typedef_transparent") and not (t.kind == "typedef" and t.name == "freelist_idx_t")
    ]


def _name(die) -> str:
    a = die.attributes.get("DW_AT_name")
    return a.value.decode() if a else ""


def test_pyelftools_layouts_equal_type_data(T, vmlinux):
    from elftools.elf.elffile import ELFFile

    with open(vmlinux, "rb") as f:
        elf = ELFFile(f)
        assert elf.has_dwarf_info()
        dwarf = elf.get_dwarf_info()
        cus = list(dwarf.iter_CUs())
        assert len(cus) == 1
        cu = cus[0]
        assert cu.header["version"] == 4
        top = cu.get_top_DIE()
        assert top.tag == "DW_TAG_compile_unit"
        assert top.attributes["DW_AT_producer"].value == b"mmintro"
        children = list(top.iter_children())
        variables = {_name(d): d for d in children if d.tag == "DW_TAG_variable"}
        subprograms = {_name(d): d for d in children if d.tag == "DW_TAG_subprogram"}
        type_dies = [d for d in children if d.tag not in ("DW_TAG_variable", "DW_TAG_subprogram")]

    written = _written(T)
    assert len(type_dies) >= len(written)
    # after the type data's own types come only the writer's extras (pointer_to() types)
    assert {d.tag for d in type_dies[len(written) :]} <= {"DW_TAG_pointer_type", "DW_TAG_base_type"}
    by_offset = {}  # CU-relative DIE offset → Type
    for die, t in zip(type_dies, written):
        by_offset[die.offset - cu.cu_offset] = t

    def resolve(t):
        while t is not None and (
            t.kind == "typedef_transparent" or (t.kind == "typedef" and t.name == "freelist_idx_t")
        ):
            t = t.target
        return None if t is None or t.kind == "void" else t

    def ref(die) -> object:
        a = die.attributes.get("DW_AT_type")
        if a is None:
            return None
        return by_offset.get(a.value, ("extra", a.value))

    def same_type(die, expected) -> bool:
        got = ref(die)
        exp = resolve(expected)
        if exp is None:
            return got is None
        if exp.id < 0:  # pointer_to() types have their own DIEs
            return isinstance(got, tuple)
        return got is exp

    n_struct = 0
    for die, t in zip(type_dies, written):
        where = f"type #{t.id} {t.spelling()!r}"
        assert die.tag == TAGS[t.kind], where
        attrs = die.attributes
        if t.kind not in ("ptr", "array", "const", "volatile", "restrict", "func_proto"):
            assert _name(die) == t.name, where
        if t.kind in ("ptr", "const", "volatile", "restrict", "typedef", "array"):
            assert same_type(die, t.target), where
        if t.kind == "ptr":
            assert attrs["DW_AT_byte_size"].value == 8
        elif t.kind in ("int", "float"):
            assert attrs["DW_AT_byte_size"].value == t.size_, where
        elif t.kind in ("struct", "union", "fwd"):
            if t.is_decl or t.kind == "fwd":
                assert attrs["DW_AT_declaration"].value, where
                assert "DW_AT_byte_size" not in attrs, where
                continue
            n_struct += 1
            assert attrs["DW_AT_byte_size"].value == t.size == t.size_, where
            members = list(die.iter_children())
            assert len(members) == len(t.members), where
            for md, m in zip(members, t.members):
                mw = f"{where}.{m.name or '<anon>'}"
                assert md.tag == "DW_TAG_member", mw
                assert _name(md) == m.name, mw
                assert same_type(md, m.type), mw
                ma = md.attributes
                if m.bit_size:
                    assert ma["DW_AT_bit_size"].value == m.bit_size, mw
                    assert ma["DW_AT_data_bit_offset"].value == m.bit_offset, mw
                    assert "DW_AT_data_member_location" not in ma, mw
                else:
                    assert ma["DW_AT_data_member_location"].value * 8 == m.bit_offset, mw
                    assert "DW_AT_bit_size" not in ma, mw
        elif t.kind == "enum":
            assert attrs["DW_AT_byte_size"].value == t.size_, where
            vals = [(_name(e), e.attributes["DW_AT_const_value"].value) for e in die.iter_children()]
            assert vals == list(t.values), where
        elif t.kind == "array":
            (sub,) = list(die.iter_children())
            assert sub.tag == "DW_TAG_subrange_type"
            if t.nelems:
                assert sub.attributes["DW_AT_count"].value == t.nelems, where
            else:  # flexible array: no bound at all
                assert "DW_AT_count" not in sub.attributes, where
                assert "DW_AT_upper_bound" not in sub.attributes, where
        elif t.kind == "func_proto":
            assert same_type(die, t.target), where
            params = list(die.iter_children())
            assert len(params) == len(t.params), where
            for pd, (pn, pt) in zip(params, t.params):
                if pd.tag == "DW_TAG_unspecified_parameters":
                    assert resolve(pt) is None
                else:
                    assert _name(pd) == pn and same_type(pd, pt), where
    assert n_struct == sum(1 for t in T.types if t.kind in ("struct", "union") and not t.is_decl)
    assert "freelist_idx_t" not in {_name(d) for d in type_dies if d.tag == "DW_TAG_typedef"}

    # variables and subprograms
    for name, addr in (
        ("node_data", NODE_DATA),
        ("init_mm", INIT_MM),
        ("swapper_pg_dir", SWAPPER_PG_DIR),
        ("mem_section", MEM_SECTION),
    ):
        v = variables[name]
        loc = v.attributes["DW_AT_location"].value
        assert loc == [0x03] + list(struct.pack("<Q", addr)), name
        assert same_type(v, T.var_type(name)), name
    assert "runqueues" not in variables
    sp = subprograms["vmemmap_populate"]
    assert sp.attributes["DW_AT_low_pc"].value == VMEMMAP_POPULATE
    assert sp.attributes["DW_AT_high_pc"].value == 0x200
    assert "kmalloc_caller_example" in subprograms


def test_elf_symtab_sections_and_build_id(T, vmlinux):
    from elftools.elf.elffile import ELFFile

    with open(vmlinux, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_EXEC" and elf["e_machine"] == "EM_X86_64"
        syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name}
        assert set(syms) == {s.name for s in make_symbols(T)}
        text = elf.get_section_by_name(".text")
        assert text["sh_type"] == "SHT_NOBITS"
        assert text["sh_addr"] <= VMEMMAP_POPULATE
        assert KMALLOC_CALLER + 0x100 <= text["sh_addr"] + text["sh_size"]
        s = syms["vmemmap_populate"]
        assert s["st_info"]["type"] == "STT_FUNC" and s["st_info"]["bind"] == "STB_GLOBAL"
        assert s["st_value"] == VMEMMAP_POPULATE and s["st_size"] == 0x200
        assert elf.get_section(s["st_shndx"]).name == ".text"
        s = syms["init_mm"]
        assert s["st_info"]["type"] == "STT_OBJECT" and s["st_size"] == T.sizeof("struct mm_struct")
        assert elf.get_section(s["st_shndx"]).name == ".data"
        assert elf.get_section(syms["runqueues"]["st_shndx"]).name == ".data..percpu"
        values = [s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()][1:]
        assert values == sorted(values)
        notes = list(elf.get_section_by_name(".note.gnu.build-id").iter_notes())
        assert notes[0]["n_type"] == "NT_GNU_BUILD_ID" and notes[0]["n_desc"] == BUILD_ID.hex()
        assert any(seg["p_type"] == "PT_NOTE" for seg in elf.iter_segments())
        loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        assert loads and all(seg["p_filesz"] == 0 for seg in loads)
        blob = elf.get_section_by_name(".mmintro.types").data()
    assert read_build_id(vmlinux) == BUILD_ID
    T2 = load_types(blob)
    assert T2.sizeof("struct page") == 64 and len(T2.types) == len(T.types)


def test_read_build_id_errors(tmp_path, T):
    p = tmp_path / "not-elf"
    p.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an ELF"):
        read_build_id(p)
    p = tmp_path / "no-note.core"
    write_min_core(p, BUILD_ID)  # an ELF without a GNU build-ID note
    with pytest.raises(ValueError, match="build ID"):
        read_build_id(p)


# --- 2. llvm-dwarfdump --verify ----------------------------------------------------------------------------
def test_llvm_dwarfdump_verify(vmlinux):
    exe = shutil.which("llvm-dwarfdump") or pytest.skip("llvm-dwarfdump not installed")
    r = subprocess.run([exe, "--verify", str(vmlinux)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No errors." in r.stdout, r.stdout


# --- 3. GDB ------------------------------------------------------------------------------------------------
def test_gdb_reads_types_and_variables(T, vmlinux):
    exe = shutil.which("gdb") or pytest.skip("gdb not installed")
    cmds = [
        "print sizeof(struct zone)",
        "print sizeof(struct page)",
        "print sizeof(struct inode)",
        "print sizeof(union thread_union)",
        "print (unsigned long)&((struct page *)0)->_refcount",
        "print (unsigned long)&((struct zone *)0)->free_area",
        "print (unsigned long)&((struct pglist_data *)0)->node_zones[1]",
        "print &node_data",
        "print (unsigned long)&init_mm",
        "ptype struct page",
        "info symbol 0xffffffff81100210",
    ]
    args = [exe, "-batch", "-nx"]
    for c in cmds:
        args += ["-ex", c]
    r = subprocess.run(args + [str(vmlinux)], capture_output=True, text=True, timeout=60)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    vals = {}
    for line in out.splitlines():
        if line.startswith("$"):
            n, v = line.split(" = ", 1)
            vals[int(n[1:])] = v
    assert int(vals[1]) == T.sizeof("struct zone"), out
    assert int(vals[2]) == T.sizeof("struct page") == 64, out
    assert int(vals[3]) == T.sizeof("struct inode"), out
    assert int(vals[4]) == T.sizeof("union thread_union"), out
    assert int(vals[5]) == T.offsetof("page", "_refcount"), out
    assert int(vals[6]) == T.offsetof("zone", "free_area"), out
    assert int(vals[7]) == T.offsetof("pglist_data", "node_zones[1]"), out
    assert f"{NODE_DATA:#x} <node_data>" in vals[8], out
    assert int(vals[9]) == INIT_MM, out
    assert "type = struct page {" in out and "_refcount;" in out, out
    assert "kmalloc_caller_example + 16 in section .text" in out, out


# --- 4. drgn -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prog(vmlinux):
    drgn = pytest.importorskip("drgn")
    core = vmlinux.with_suffix(".vmcore")
    write_min_core(core, BUILD_ID)
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(vmlinux)])  # matched to the kernel by VMCOREINFO's BUILD-ID
    return prog


def test_drgn_uses_the_file(prog, vmlinux):
    main = prog.main_module()
    assert main.debug_file_path == str(vmlinux)
    assert main.build_id == BUILD_ID == read_build_id(vmlinux)
    lo, hi = main.address_range  # taken from the PT_LOAD segments
    assert lo <= VMEMMAP_POPULATE and MEM_SECTION + 16 <= hi


def test_drgn_types_and_layouts(T, prog):
    import drgn

    page = prog.type("struct page")
    assert page.size == 64
    for struct_name, path in [
        ("page", "_refcount"),
        ("page", "compound_head"),
        ("page", "flags"),
        ("zone", "free_area"),
        ("zone", "_watermark"),
        ("pglist_data", "node_zones"),
        ("mm_struct", "pgd"),
        ("kmem_cache", "offset"),
    ]:
        full = T.struct(struct_name)
        assert drgn.offsetof(prog.type(f"{full.kind} {struct_name}"), path) == T.offsetof(struct_name, path)
    for name in (
        "struct zone",
        "struct pglist_data",
        "struct mm_struct",
        "struct inode",
        "union thread_union",
        "struct task_struct",
        "struct kmem_cache",
        "struct slab",
    ):
        assert drgn.sizeof(prog.type(name)) == T.sizeof(name), name
    # packed enums keep their size (the reason DWARF is not produced by compiling C)
    packed = [t for t in T.types if t.kind == "enum" and t.name and t.size_ != 4][:3]
    for t in packed:
        assert drgn.sizeof(prog.type(f"enum {t.name}")) == t.size_, t.name
    assert prog.type("enum rpm_status").enumerators[0].value == -1
    assert not prog.type("char").is_signed  # x86-64 Linux builds with -funsigned-char
    with pytest.raises(LookupError):
        prog.type("freelist_idx_t")
    # a flexible array member is an incomplete array
    numbers = [m for m in prog.type("struct pid").members if m.name == "numbers"][0]
    assert numbers.type.kind == drgn.TypeKind.ARRAY and not numbers.type.is_complete()


def test_drgn_variables_and_symbols(T, prog):
    import drgn

    assert prog["node_data"].address_ == NODE_DATA
    assert prog["node_data"].type_.length == T.var_type("node_data").nelems
    assert prog["init_mm"].address_ == INIT_MM
    assert prog["mem_section"].type_.type_name() == "struct mem_section **"
    assert prog["example_page_pp"].type_.type_name() == "struct page **"
    sym = prog.symbol("vmemmap_populate")
    assert sym.address == VMEMMAP_POPULATE and sym.size == 0x200 and sym.kind == drgn.SymbolKind.FUNC
    assert prog.symbol(KMALLOC_CALLER + 0x10).name == "kmalloc_caller_example"
    assert prog.symbol(INIT_MM + 0x10).name == "init_mm"
    # SPARSEMEM_VMEMMAP detection needs a subprogram DIE named vmemmap_populate
    assert prog.function("vmemmap_populate").address_ == VMEMMAP_POPULATE
    with pytest.raises(LookupError):
        prog.variable("runqueues")  # symtab-only symbol: no DW_TAG_variable


# --- 5. determinism, edge cases ----------------------------------------------------------------------------
def test_deterministic(T, vmlinux, tmp_path):
    other = tmp_path / "again.vmlinux"
    write_vmlinux(other, T, make_symbols(T), BUILD_ID, {".mmintro.types": dump_types_section(T)})
    assert other.read_bytes() == vmlinux.read_bytes()
    assert dump_types_section(T) == dump_types_section(T)


def test_freelist_idx_t_skipped_and_big_enum_values(T, tmp_path):
    from elftools.elf.elffile import ELFFile

    doc = copy.deepcopy(T.doc)
    uint = T.lookup("unsigned int").id
    ulong = T.lookup("unsigned long").id
    n = len(doc["types"])
    doc["types"].append({"kind": "typedef", "name": "freelist_idx_t", "type": uint})
    doc["types"].append({"kind": "typedef_transparent", "type": uint})  # n + 1: a BTF type tag
    doc["types"].append(
        {"kind": "struct", "name": "mmintro_test_s", "size": 8, "members": [["idx", n, 0, 0], ["tagged", n + 1, 32, 0]]}
    )
    doc["types"].append({"kind": "func_proto", "type": uint, "params": [["a", ulong], ["", 0]]})  # variadic
    doc["types"].append({"kind": "typedef", "name": "mmintro_test_fn", "type": n + 3})
    doc["types"].append(
        {
            "kind": "enum",
            "name": "mmintro_test_big",
            "size": 8,
            "signed": False,
            "values": [["BIG_A", 1], ["BIG_B", 2**63 + 5], ["BIG_C", 2**64 - 1]],
        }
    )
    T2 = TypeDB(doc)
    path = tmp_path / "edge.vmlinux"
    write_vmlinux(path, T2, [], b"\x01" * 20)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert b"freelist_idx_t" not in elf.get_section_by_name(".debug_str").data()
        cu = next(elf.get_dwarf_info().iter_CUs())
        dies = {(_name(d), d.tag): d for d in cu.get_top_DIE().iter_children()}
        s = dies[("mmintro_test_s", "DW_TAG_structure_type")]
        # both members refer straight to unsigned int (skipped typedef, transparent type tag)
        for m in s.iter_children():
            target = cu.get_DIE_from_refaddr(m.attributes["DW_AT_type"].value + cu.cu_offset)
            assert _name(target) == "unsigned int"
        fn = dies[("mmintro_test_fn", "DW_TAG_typedef")]
        proto = cu.get_DIE_from_refaddr(fn.attributes["DW_AT_type"].value + cu.cu_offset)
        assert proto.tag == "DW_TAG_subroutine_type"
        tags = [c.tag for c in proto.iter_children()]
        assert tags == ["DW_TAG_formal_parameter", "DW_TAG_unspecified_parameters"]
        e = dies[("mmintro_test_big", "DW_TAG_enumeration_type")]
        vals = [c.attributes["DW_AT_const_value"].value for c in e.iter_children()]
        assert vals == [1, 2**63 + 5, 2**64 - 1]
    exe = shutil.which("llvm-dwarfdump")
    if exe:
        r = subprocess.run([exe, "--verify", str(path)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    assert read_build_id(path) == b"\x01" * 20
