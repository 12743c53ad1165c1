"""crash utility rows for the system as a whole: ``sys``, ``log``, ``rd``."""

from __future__ import annotations

import re

from mmintro.crosscheck.crash_context import _Ctx
from mmintro.reader import Program


# -- the rows ----------------------------------------------------------------------------------
def sys_cmds(c: _Ctx) -> list[str]:
    return ["sys"]


def sys_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """RELEASE, VERSION, NODENAME, CPUS, TASKS, UPTIME, MACHINE MHz and PANIC = the kernel's own
    (init_uts_ns, online CPUs, the task list, jiffies_64, cpu_khz, the log)."""
    from mmintro.reader.helpers.percpu import for_each_online_cpu
    from mmintro.views.ps import ps

    p = c.prog
    f = dict(re.findall(r"^\s*([A-Z ]+): (.*)$", out["sys"], re.M))
    uts = p["init_uts_ns"].name
    hz = _config_hz(p)
    jif = p["jiffies_64"].value_() - ((-300 * hz) & 0xFFFFFFFF)  # INITIAL_JIFFIES
    secs = jif // hz
    uptime = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    panic = next((t for t in reversed(_dmesg(p)) if "Kernel panic - " in t), "")
    ours = {
        "RELEASE": uts.release.string_().decode(),
        "VERSION": uts.version.string_().decode(),
        "NODENAME": uts.nodename.string_().decode(),
        "CPUS": str(len(list(for_each_online_cpu(p)))),
        "TASKS": str(len(ps(p))),
        "UPTIME": uptime,
        "MACHINE": f"{uts.machine.string_().decode()}  ({p['cpu_khz'].value_() // 1000} Mhz)",
        "PANIC": f'"{panic}"',
    }
    return ours, {k: f.get(k, "").strip() for k in ours}


def _config_hz(p: Program) -> int:
    """CONFIG_HZ from the kernel's own IKCONFIG blob (kernel_config_data), as crash reads it."""
    import gzip

    start = p.symbol("kernel_config_data")
    end = p.symbol("kernel_config_data_end")
    text = gzip.decompress(p.read(start.address, end.address - start.address)).decode()
    m = re.search(r"^CONFIG_HZ=(\d+)$", text, re.M)
    if not m:
        raise ValueError("the IKCONFIG blob has no CONFIG_HZ")
    return int(m.group(1))


def _dmesg(p: Program) -> list[str]:
    from mmintro.reader.helpers.printk import dmesg_records

    return [r.text for r in dmesg_records(p)]


def log_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``log``: every record's text = the kernel log (printk ring buffer) as mmintro reads it."""
    theirs = [re.sub(r"^\[\s*\d+\.\d+\] ", "", line) for line in out["log"].splitlines() if line]
    return _dmesg(c.prog), theirs


def rd_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``rd linux_banner 8``: the 8 words at the banner = memory as mmintro reads it."""
    p = c.prog
    a = p.symbol("linux_banner").address
    data = p.read(a, 64)
    ours = [int.from_bytes(data[i : i + 8], "little") for i in range(0, 64, 8)]
    theirs = [
        int(w, 16)
        for line in out["rd linux_banner 8"].splitlines()
        for w in line.split(":", 1)[1].split()[:2]
        if ":" in line
    ]
    return ours, theirs
