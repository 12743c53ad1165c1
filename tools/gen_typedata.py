#!/usr/bin/env python3
"""Generate mmintro's pinned Linux 6.18 x86-64 type data from the reference kernel's BTF.

    python tools/gen_typedata.py [../shared/reference/vmlinux-6.18.btf] [--out FILE]

Writes mmintro/types/data/linux-6.18-x86_64.json.gz: the closure of the types mmintro
uses (closure.ROOTS, every enum, and the types of the globals in globals.h), built by
mmintro.types.closure.build_typedoc -- the same code that builds the types of a real kernel
from its own BTF.  Types reached by value are kept whole; structs and unions reached only
through a pointer and not in the roots are reduced to declarations, as a C header would
forward-declare them.  Layouts are kept exactly as the BTF has them, vendor fields included
(see README: "Type data").  Symbolic array bounds of globals.h resolve from this BTF; the
configuration-only ones use closure.ARCH_DEFAULTS, the reference build's values.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmintro.types.btf import parse_btf  # noqa: E402
from mmintro.types.closure import PERCPU_VARS, ROOTS, ClosureError, build_typedoc  # noqa: E402

DEFAULT_BTF = ROOT.parent / "shared" / "reference" / "vmlinux-6.18.btf"
OUT = ROOT / "mmintro" / "types" / "data" / "linux-6.18-x86_64.json.gz"
GLOBALS = ROOT / "mmintro" / "types" / "data" / "globals.h"


def main() -> None:
    args = sys.argv[1:]
    out = OUT
    if "--out" in args:
        i = args.index("--out")
        out = Path(args[i + 1]).resolve()
        del args[i : i + 2]
    btf_path = Path(args[0]) if args else DEFAULT_BTF
    btf = parse_btf(btf_path.read_bytes())
    try:
        doc = build_typedoc(
            btf, GLOBALS.read_text(), PERCPU_VARS, ROOTS, kernel="6.18 x86_64", source=btf_path.name, strict=True
        )
    except ClosureError as e:
        raise SystemExit(str(e)) from None
    skipped = doc.pop("skipped", {})
    for n in skipped.get("roots", []):
        print(f"warning: root {n} not in BTF", file=sys.stderr)
    for n in skipped.get("percpu", []):
        print(f"warning: percpu var {n} not in BTF", file=sys.stderr)

    types, variables = doc["types"], doc["variables"]
    raw = json.dumps(doc, separators=(",", ":")).encode()
    blob = gzip.compress(raw, mtime=0)
    if out.exists() and out.read_bytes() == blob:
        print(f"{out}: unchanged")
    else:
        out.write_bytes(blob)
    nfull = sum(1 for t in types[1:] if t["kind"] in ("struct", "union") and not t.get("decl"))
    ndecl = sum(1 for t in types[1:] if t.get("decl"))
    print(
        f"{out}: {len(types) - 1} types ({nfull} structs/unions whole, "
        f"{ndecl} declarations), {len(variables)} variables, {len(blob)} bytes"
    )


if __name__ == "__main__":
    main()
