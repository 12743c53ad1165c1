"""The CPU's speculation bugs and their mitigations (arch/x86/kernel/cpu/common.c
cpu_set_bug_bits, arch/x86/kernel/cpu/bugs.c cpu_select_mitigations), as far as
/proc/PID/status shows them (task_seccomp(): arch_prctl_spec_ctrl_get()).

The simulated CPU is the reference guest's: QEMU's TCG ``qemu64`` model (AuthenticAMD, family
15).  cpu_set_bug_bits() gives it X86_BUG_SPECTRE_V1 and X86_BUG_SPECTRE_V2 (no CPU is
whitelisted NO_SPECTRE_V1; family 15 AMD is not NO_SPECTRE_V2) but not
X86_BUG_SPEC_STORE_BYPASS (cpu_vuln_whitelist: VULNWL_AMD(0x0f, ... NO_SSB ...)).  It has no
SSBD, IBPB or STIBP, so ssb_select_mitigation() leaves ``ssb_mode`` at
SPEC_STORE_BYPASS_NONE and spectre_v2_user_select_mitigation() leaves ``spectre_v2_user_ibpb``
and ``spectre_v2_user_stibp`` at SPECTRE_V2_USER_NONE: every task's status reads
"Speculation_Store_Bypass: not vulnerable" and "SpeculationIndirectBranch: always enabled",
as the guest's do.  The other bugs (MDS, RETBleed, ...) and their mitigations are not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmintro.arch.x86 import NBUGINTS, X86_BUG_SPECTRE_V2

if TYPE_CHECKING:
    from mmintro.kernel.machine import Kernel

__all__ = ["cpu_select_mitigations", "setup_force_cpu_bug"]

X86_BUG_SPECTRE_V1 = 15  # arch/x86/include/asm/cpufeatures.h: X86_BUG(15)


def setup_force_cpu_bug(k: Kernel, bug: int) -> None:
    """Set X86_BUG(bug) in boot_cpu_data.x86_capability (the bug words follow the NCAPINTS
    feature words)."""
    caps = k.T.struct("cpuinfo_x86").walk("x86_capability")[2]
    bit = (caps.nelems - NBUGINTS) * 32 + bug
    addr = k.kmem.addr(k.sym("boot_cpu_data"), "cpuinfo_x86", f"x86_capability[{bit // 32}]")
    word = int.from_bytes(k.mem.read(k.pa(addr), 4), "little") | 1 << (bit % 32)
    k.kmem.write_bytes(addr, word.to_bytes(4, "little"))


def cpu_select_mitigations(k: Kernel) -> None:
    """The bug bits and the mitigation globals of the simulated CPU (see the module text), and
    the functions whose presence tells a reader that the kernel has them
    (arch_prctl_spec_ctrl_get, CONFIG_X86_USER_SHADOW_STACK's arch_proc_pid_thread_features)."""
    for name in ("boot_cpu_data", "ssb_mode", "spectre_v2_user_ibpb", "spectre_v2_user_stibp"):
        if name not in k.image.symbols:
            k.image.var(name, "data")
    for bug in (X86_BUG_SPECTRE_V1, X86_BUG_SPECTRE_V2):
        setup_force_cpu_bug(k, bug)
    for name, value in (
        ("ssb_mode", "SPEC_STORE_BYPASS_NONE"),
        ("spectre_v2_user_ibpb", "SPECTRE_V2_USER_NONE"),
        ("spectre_v2_user_stibp", "SPECTRE_V2_USER_NONE"),
    ):
        k.kmem.write_bytes(k.sym(name), k.T.const(value).to_bytes(4, "little"))
    for fn, size in (("arch_prctl_spec_ctrl_get", 0x60), ("arch_proc_pid_thread_features", 0x60)):
        if fn == "arch_proc_pid_thread_features" and not k.T.struct("thread_struct").has_member("features"):
            continue
        if fn not in k.image.symbols:
            k.image.func(fn, size)
