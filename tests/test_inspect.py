"""crash's inspection commands (mmintro struct, p, rd, sym) against real drgn 0.3.0 on the same
snapshot -- values, offsets, words and symbols, for addresses given in every accepted form --
and against real crash 9.0.2: the same text, line for line, for one session of commands."""

from __future__ import annotations

import re

import pytest
from cli_helpers import run

from mmintro.reader import open_snapshot
from mmintro.views.inspect import AddressError, parse_address

drgn = pytest.importorskip("drgn")


@pytest.fixture(scope="module")
def progs(default_snapshot: str):
    d = drgn.Program()
    d.set_core_dump(default_snapshot + ".vmcore")
    d.load_debug_info([default_snapshot + ".vmlinux"])
    with open_snapshot(default_snapshot) as ours:
        yield ours, d


def _forms(d, name: str, off: int = 0) -> list[str]:
    """Every spelling of the address of ``name`` + ``off``: symbol(+off), hex with and without
    0x, decimal with 0d, and symbol+0dOFF."""
    a = d.symbol(name).address + off
    forms = [f"{a:#x}", f"{a:x}", f"0d{a}", f"0X{a:X}"]
    forms += [f"{name}+{off:#x}", f"{name}+{off:x}", f"{name}+0d{off}"] if off else [name, f"{name}+0"]
    return forms


def test_address_forms_agree_with_drgn_symbols(progs) -> None:
    ours, d = progs
    for name, off in (("init_mm", 0), ("init_mm", 0x40), ("jiffies", 0), ("init_task", 0x10)):
        want = d.symbol(name).address + off
        for form in _forms(d, name, off):
            assert parse_address(ours, form) == want, form
    a = d.symbol("init_task").address
    assert parse_address(ours, "init_task-0x10") == a - 0x10
    with pytest.raises(AddressError, match="no symbol"):
        parse_address(ours, "no_such_symbol_at_all")
    for bad in ("0x", "12g", "init_mm+", "0d12a", "0x1ffffffffffffffff"):
        with pytest.raises(AddressError):
            parse_address(ours, bad)


def _top_level_values(text: str) -> dict[str, str]:
    """``name = value`` of the scalar members printed at the structure's own level (its
    anonymous unions and structs included) in a gdb-style struct print."""
    out: dict[str, str] = {}
    stack: list[str] = []
    for line in text.splitlines()[1:-1]:
        body = line.strip().rstrip(",")
        while body.startswith("}"):
            stack.pop()
            body = body[1:].lstrip(", ")
        m = re.match(r"(\w+) = (.*)$", body)
        name, value = (m.group(1), m.group(2)) if m else ("", body)
        opens = 2 if value.endswith("{{") else 1 if value.endswith("{") else 0
        if not opens and m and not any(stack):
            out.setdefault(name, value)
        stack += [name] + [""] * (opens - 1) if opens else []
    return out


def _scalars(obj, prefix=()):  # type: ignore[no-untyped-def]
    """(name, drgn object) of the scalar members at obj's own level, through anonymous members."""
    for m in obj.type_.members:
        if m.name:
            yield m.name, obj.member_(m.name)
        else:
            t = m.type
            while t.kind == drgn.TypeKind.TYPEDEF:
                t = t.type
            if t.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION):
                for name, _ in _scalars(drgn.Object(obj.prog_, m.type, address=obj.address_ + m.bit_offset // 8)):
                    yield name, obj.member_(name)


def _drgn_scalar_text(o) -> str | None:
    t = o.type_
    while t.kind == drgn.TypeKind.TYPEDEF:
        t = t.type
    if t.kind == drgn.TypeKind.POINTER:
        return f"{o.value_():#x}"
    if t.kind == drgn.TypeKind.INT and t.name not in ("char", "unsigned char", "signed char"):
        return str(o.value_())
    if t.kind == drgn.TypeKind.BOOL:
        return "true" if o.value_() else "false"
    return None


@pytest.mark.parametrize(
    ("type_name", "where"),
    [("struct zone", "zone"), ("struct mm_struct", "init_mm"), ("struct task_struct", "init_task")],
)
def test_struct_members_agree_with_drgn(progs, default_snapshot: str, type_name: str, where: str) -> None:
    """Every scalar member at the top level prints drgn's value (pointers as their hex, with a
    symbol after it when they point into one); -o gives each member's address."""
    _ours, d = progs
    if where == "zone":
        obj = d["node_data"][0].node_zones[1]
        forms = [f"{obj.address_:#x}", f"{obj.address_:x}", f"0d{obj.address_}"]
    else:
        obj = d[where]
        forms = _forms(d, where)
    for form in forms:
        text = run("struct", default_snapshot, type_name.split()[1], form).stdout
        assert text.startswith(f"{type_name} {{\n")
        vals = _top_level_values(text)
        checked, seen = 0, set()
        for name, member in _scalars(obj):
            want = _drgn_scalar_text(member)
            if want is None or name in seen:
                continue
            seen.add(name)
            got = vals[name]
            assert got == want or got.startswith(want + " "), (name, got, want)
            checked += 1
        assert checked >= 10
    text = run("struct", default_snapshot, type_name.split()[1], forms[0], "-o").stdout
    for line in text.splitlines()[1:]:
        m = re.match(r"\s*\[([0-9a-f]+)\]\s.*?(\w+)(?:\[\d*\])*;$", line)
        if m and " : " not in line:
            member = m.group(2)
            assert int(m.group(1), 16) == obj.member_(member).address_, line


@pytest.mark.parametrize("type_name", ["page", "zone", "task_struct", "mm_struct", "kmem_cache", "list_head"])
def test_struct_layout_offsets_agree_with_drgn(progs, default_snapshot: str, type_name: str) -> None:
    _ours, d = progs
    t = d.type(f"struct {type_name}")
    text = run("struct", default_snapshot, type_name, "-o").stdout
    assert text.splitlines()[-1] == f"SIZE: {t.size}"
    seen = 0
    for line in text.splitlines():
        m = re.match(r"\s*\[(\d+)\]\s.*?\(?\*?(\w+)\)?(?:\[\d*\])*(?:\(.*\))?(?: : \d+)?;$", line)
        if m:
            assert int(m.group(1)) == t.member(m.group(2)).bit_offset // 8, line
            seen += 1
    assert seen >= len([m for m in t.members if m.name])
    plain = run("struct", default_snapshot, f"struct {type_name}").stdout
    assert plain.splitlines()[-1] == f"SIZE: {t.size}" and "[" not in plain.splitlines()[1][:8]


def test_p_agrees_with_drgn(progs, default_snapshot: str) -> None:
    """Globals, members, array elements, ->, & and per-CPU symbols print drgn's values."""
    _ours, d = progs

    def p(expr: str, *opts: str) -> str:
        return run("p", *opts, default_snapshot, expr).stdout

    assert p("jiffies") == f"jiffies = $1 = {d['jiffies'].value_()}\n"
    assert p("jiffies", "-x") == f"jiffies = $1 = {d['jiffies'].value_():#x}\n"
    pgd = d["init_mm"].pgd.value_()
    assert p("init_mm.pgd").startswith(f"$1 = (pgd_t *) {pgd:#x}")
    assert p("init_task.mm") == f"$1 = (struct mm_struct *) {d['init_task'].mm.value_():#x}\n"
    assert p("&init_mm") == f"$1 = (struct mm_struct *) {d['init_mm'].address_:#x} <init_mm>\n"
    comm = d["init_task"].comm.string_().decode()
    assert p("init_task.comm").startswith(f'$1 = "{comm}\\000')
    z = d["node_data"][0].node_zones[1]
    name = p("node_data[0]->node_zones[1].name")
    assert name == f'$1 = {z.name.value_():#x} "{z.name.string_().decode()}"\n'
    assert p("node_data[0]->node_zones[1].managed_pages.counter") == f"$1 = {z.managed_pages.counter.value_()}\n"
    assert p("node_data[0]->node_zones[1].spanned_pages") == f"$1 = {z.spanned_pages.value_()}\n"
    assert p("node_data[0]") == f"$1 = (struct pglist_data *) {d['node_data'][0].value_():#x}\n"  # as crash
    wm = ", ".join(str(v) for v in z._watermark.value_())
    assert p("node_data[0]->node_zones[1]._watermark") == f"$1 = {{{wm}}}\n"
    assert p("node_data[0]->node_zones[1]._watermark[2]") == f"$1 = {z._watermark[2].value_()}\n"
    assert p("*(struct list_head *)slab_caches.next").startswith("$1 = {\n  next = ")
    from drgn.helpers.linux.percpu import per_cpu

    for cpu in (0, 1):
        events = per_cpu(d["vm_event_states"], cpu).event.value_()
        text = p(f"vm_event_states:{cpu}")
        assert text.startswith(f"per_cpu(vm_event_states, {cpu}) = $1 = {{\n  event = {{")
        assert re.search(r"event = \{(.*)\}", text).group(1) == ", ".join(map(str, events))
        addr = per_cpu(d["vm_event_states"], cpu).address_
        assert f"  [{cpu}]: {addr:x}\n" in p("vm_event_states")


def test_rd_agrees_with_drgn(progs, default_snapshot: str) -> None:
    _ours, d = progs
    for name, off in (("init_task", 0), ("init_mm", 0x28), ("jiffies", 0)):
        a = d.symbol(name).address + off
        for form in _forms(d, name, off):
            lines = run("rd", default_snapshot, form, "6").stdout.splitlines()
            assert [int(x.split(":")[0], 16) for x in lines] == [a, a + 16, a + 32]
            words = [int(w, 16) for line in lines for w in line.split(":  ")[1].split("   ")[0].split()]
            assert words == [d.read_u64(a + 8 * i) for i in range(6)], form
        for flag, size, read in (("-32", 4, d.read_u32), ("-16", 2, d.read_u16), ("-8", 1, d.read_u8)):
            lines = run("rd", flag, default_snapshot, name, "20").stdout.splitlines()
            words = [int(w, 16) for line in lines for w in line.split(":  ")[1].split("   ")[0].split()]
            base = d.symbol(name).address
            assert words == [read(base + size * i) for i in range(20)], flag
    # -p: physical memory, the same words drgn reads physically
    pa = 0x100000
    lines = run("rd", "-p", default_snapshot, hex(pa), "4").stdout.splitlines()
    assert [int(w, 16) for line in lines for w in line.split(":  ")[1].split("   ")[0].split()] == [
        int.from_bytes(d.read(pa + 8 * i, 8, True), "little") for i in range(4)
    ]
    # -s: a word inside a symbol as name+offset (init_task.stack: init_thread_union)
    a = d["init_task"].stack.address_
    cell = run("rd", "-s", default_snapshot, f"{a:x}").stdout.split(":  ")[1].split()[0]
    s = d.symbol(d.read_u64(a))
    assert cell == s.name if d.read_u64(a) == s.address else cell == f"{s.name}+{d.read_u64(a) - s.address}"


def test_sym_agrees_with_drgn(progs, default_snapshot: str) -> None:
    _ours, d = progs
    # (not swapper_pg_dir: _sdata and init_top_pgt share its address, and which of them an
    # address names is the tool's choice -- crash's even varies with its hash table)
    for name in ("init_mm", "jiffies", "node_data", "slab_caches", "init_task"):
        s = d.symbol(name)
        line = run("sym", default_snapshot, name).stdout
        assert line.startswith(f"{s.address:x} (") and line.split(")")[1].strip() == name
        for off in (0, 8, s.size - 1) if s.size > 8 else (0,):
            a = s.address + off
            for form in (f"{a:x}", f"{a:#x}"):
                got = run("sym", default_snapshot, form).stdout.split()
                sym_at = d.symbol(a)
                want = sym_at.name if a == sym_at.address else f"{sym_at.name}+{a - sym_at.address}"
                assert got[0] == f"{a:x}" and got[2] == want, (form, got)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("struct", "no_such_struct_type"), "invalid data structure reference"),
        (("struct", "mm_struct.no_such_member"), "no member"),
        (("struct", "list_head", "0x1000"), "0x1000"),
        (("struct", "list_head", "no_such_symbol"), "no symbol"),
        (("p", "no_such_symbol"), "No symbol"),
        (("p", "init_mm.no_such_member"), "no_such_member"),
        (("p", "init_mm->pgd"), "not a pointer"),
        (("p", "init_mm.pgd["), "expected"),
        (("p", "jiffies:1"), "not percpu"),
        (("p", "vm_event_states:99"), "CPU"),
        (("p", "*(struct list_head *)0x1000"), "0x1000"),
        (("rd", "0x1000"), "0x1000"),
        (("rd", "no_such_symbol"), "no symbol"),
        (("sym", "no_such_symbol"), "symbol not found"),
        (("sym", "10"), "invalid address"),
    ],
)
def test_bad_input_is_one_line_exit_1(default_snapshot: str, args: tuple[str, ...], needle: str) -> None:
    r = run(args[0], default_snapshot, *args[1:], ok=False)
    assert r.exit_code == 1, (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmintro: error: ") and needle in lines[0], lines
    assert r.stdout == ""


def test_bad_address_form_is_a_usage_error(default_snapshot: str) -> None:
    for cmd in ("rd", "struct list_head", "whatis", "vtop"):
        r = run(*cmd.split()[:1], default_snapshot, *cmd.split()[1:], "0x1ffffffffffffffff", ok=False)
        assert r.exit_code == 2 and "wider than 64 bits" in r.stderr, cmd


def test_whatis_and_vtop_take_every_address_form(progs, default_snapshot: str) -> None:
    _ours, d = progs
    a = d.symbol("init_mm").address + 0x40
    want_whatis = run("whatis", default_snapshot, hex(a)).stdout
    want_vtop = run("vtop", default_snapshot, hex(a)).stdout
    assert "init_mm+0x40" in want_whatis
    for form in _forms(d, "init_mm", 0x40):
        assert run("whatis", default_snapshot, form).stdout == want_whatis, form
        assert run("vtop", default_snapshot, form).stdout == want_vtop, form


# -- real crash ----------------------------------------------------------------------------------
def test_sym_rd_struct_p_print_what_crash_prints(default_snapshot: str) -> None:
    """One crash 9.0.2 session: its text for sym, rd, struct and p, line for line (gdb's value
    history number aside: crash counts $1, $2, ... through the session, mmintro prints $1).  No
    address here is shared by two symbols (which one crash names depends on its hash table)."""
    from mmintro.realkernel.crash import fetch_crash, run_crash

    with open_snapshot(default_snapshot) as prog:
        zone = prog["node_data"][0].node_zones[1].address_
        cache = prog["slab_caches"].next.value_()
        text_addr = prog.symbols.lookup("_stext").address + 0x1234
    cmds = [
        "sym jiffies",
        "sym init_mm",
        "sym swapper_pg_dir",
        f"sym {text_addr:x}",
        f"sym {prog.symbols.lookup('swapper_pg_dir').address + 8:x}",
        "rd jiffies",
        "rd init_task 5",
        "rd -s init_mm 8",
        "rd -s slab_caches 2",
        "rd -s init_task 80",
        "rd -32 init_task 5",
        "rd -16 init_mm 9",
        "rd -8 init_mm 20",
        "rd -p 100000 6",
        f"rd {zone:x} 12",
        "struct list_head",
        "struct page -o",
        "struct zone -o",
        "struct mm_struct",
        "struct mm_struct.pgd",
        f"struct zone {zone:x}",
        f"struct zone -o {zone:x}",
        f"struct list_head {cache:x} 2",
        "struct mm_struct.pgd,mm_count init_mm",
        "struct task_struct init_task",
        "struct task_struct -x init_task",
        "p jiffies",
        "p -x jiffies",
        "p init_mm.pgd",
        "p init_task.comm",
        "p init_task.mm",
        "p node_data[0]->node_zones[1]",
        "p node_data[0]->node_zones[1].name",
        "p &init_mm",
        "p node_data",
        "p vm_event_states",
        "p vm_event_states:1",
        "p vm_event_states:a",
        "p jiffies + 1",
    ]
    cmds = [c for c in cmds if c]
    r = run_crash(fetch_crash(), default_snapshot + ".vmlinux", default_snapshot + ".vmcore", cmds, timeout=120)
    assert r.error() is None, r.error()
    bad = []
    for c in cmds:
        words = c.split()
        opts = [w for w in words[1:] if w.startswith("-")]
        rest = [w for w in words[1:] if not w.startswith("-")]
        if words[0] == "p":
            rest = [" ".join(rest)]
        mine = run(words[0], *opts, default_snapshot, *rest).stdout
        theirs = r[c]
        if re.sub(r"\$\d+ = ", "$1 = ", theirs).rstrip("\n") != mine.rstrip("\n"):
            bad.append(f"{c}:\n{theirs}---\n{mine}")
    assert not bad, "\n".join(bad)
