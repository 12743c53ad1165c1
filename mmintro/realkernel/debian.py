"""Debian's Linux 6.18 kernel package, fetched with apt from the archive this machine already uses.

Debian ships 6.18 in the *trixie-backports* suite as ``linux-image-6.18.N+deb13-amd64``: a bzImage
with ``.BTF``, its System.map and config, and its modules.  We never install it: a private sources
list (the machine's own archive URI, the backports suite) feeds ``apt-get download``, and
``dpkg-deb -x`` unpacks the package into the cache.  Nothing fetched enters the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mmintro.cache import cache_dir

__all__ = ["HarnessError", "KernelPackage", "PrivateApt", "cache_dir", "fetch_kernel", "archive_source", "unpack_deb"]

SUITE = "trixie-backports"
FLAVOUR = "amd64"
_PKG_RE = re.compile(r"^linux-image-(6\.18\.\d+\+deb13)-amd64$")


class HarnessError(Exception):
    """The harness cannot go on (one line saying why)."""


@dataclass(frozen=True)
class KernelPackage:
    """An unpacked ``linux-image-6.18.*+deb13-amd64``."""

    release: str  # "6.18.15+deb13-amd64" (= uname -r = VMCOREINFO OSRELEASE)
    root: Path  # the unpacked package

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def system_map(self) -> Path:
        return self.root / "boot" / f"System.map-{self.release}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    def module(self, name: str) -> Path:
        """The path of module ``name`` (``qemu_fw_cfg``), compressed as Debian ships it."""
        base = self.root / "usr" / "lib" / "modules" / self.release / "kernel"
        for p in base.rglob(f"{name}.ko*"):
            return p
        raise HarnessError(f"kernel package {self.release} has no module {name}")


def archive_source() -> tuple[str, str | None]:
    """(URI, Signed-By keyring or None) of the Debian archive this machine's apt uses.

    Read from deb822 ``.sources`` files and one-line ``sources.list`` entries; the first
    source whose suites are a Debian release (not -security) wins.
    """
    etc = Path("/etc/apt")
    files = sorted((etc / "sources.list.d").glob("*.sources")) if (etc / "sources.list.d").is_dir() else []
    for f in files:
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            uris = fields.get("uris", "").split()
            suites = fields.get("suites", "").split()
            if (
                uris
                and suites
                and fields.get("types", "deb").split()[0] == "deb"
                and not any("security" in s for s in suites)
                and "debian" in uris[0]
            ):
                return uris[0], fields.get("signed-by")
    lists = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list"))
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
            if m and "security" not in m.group(3) and "debian" in m.group(2):
                opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
                return m.group(2), opts.get("signed-by")
    raise HarnessError("no Debian archive in this machine's apt sources (/etc/apt)")


class PrivateApt:
    """apt-get/apt-cache over a private sources list naming one suite of the machine's archive."""

    def __init__(self, root: Path, suite: str = SUITE) -> None:
        self.root = root
        for d in ("lists/partial", "cache/archives/partial"):
            (root / d).mkdir(parents=True, exist_ok=True)
        uri, signed_by = archive_source()
        opts = f"[signed-by={signed_by}] " if signed_by else ""
        (root / "sources.list").write_text(f"deb {opts}{uri} {suite} main\n")
        self.opts = [
            f"-o=Dir::Etc::sourcelist={root / 'sources.list'}",
            "-o=Dir::Etc::sourceparts=-",
            f"-o=Dir::State::Lists={root / 'lists'}",
            f"-o=Dir::Cache={root / 'cache'}",
            "-o=APT::Sandbox::User=root",
            "-o=Debug::NoLocking=1",
        ]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} is not installed (the harness needs Debian's apt)")
        p = subprocess.run([tool, *self.opts, *args], capture_output=True, text=True, cwd=cwd, timeout=900)
        if p.returncode:
            last = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise HarnessError(f"{tool} {' '.join(args)} failed: {last}")
        return p.stdout

    def update(self) -> None:
        self.run("apt-get", "update", "-qq")

    def releases(self) -> list[str]:
        out = self.run("apt-cache", "pkgnames", "linux-image-6.18.")
        found = [m.group(1) for n in out.split() if (m := _PKG_RE.match(n))]
        return sorted(found, key=_release_key)


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release))


def _cached_releases(kroot: Path) -> list[str]:
    if not kroot.is_dir():
        return []
    out = [p.name.removesuffix(f"-{FLAVOUR}") for p in kroot.iterdir() if (p / ".complete").exists()]
    return sorted(out, key=_release_key)


def fetch_kernel(release: str | None = None, *, refresh: bool = False) -> KernelPackage:
    """The unpacked kernel package ``linux-image-RELEASE-amd64`` (``release`` like ``6.18.15+deb13``).

    Without ``release``: the newest one already in the cache, else the newest in the archive.
    Downloads happen only when the cache does not have what is asked for (or ``refresh``).
    """
    root = cache_dir()
    kroot = root / "kernels"
    if release is None and not refresh:
        have = _cached_releases(kroot)
        if have:
            return KernelPackage(f"{have[-1]}-{FLAVOUR}", kroot / f"{have[-1]}-{FLAVOUR}")
    if release is not None:
        release = release.removesuffix(f"-{FLAVOUR}")
        dest = kroot / f"{release}-{FLAVOUR}"
        if (dest / ".complete").exists():
            return KernelPackage(f"{release}-{FLAVOUR}", dest)
    apt = PrivateApt(root / "apt")
    apt.update()
    available = apt.releases()
    if not available:
        raise HarnessError(f"the archive's {SUITE} suite has no linux-image-6.18.*+deb13-{FLAVOUR}")
    if release is None:
        release = available[-1]
    elif release not in available:
        raise HarnessError(f"linux-image-{release}-{FLAVOUR} is not in {SUITE} (have: {', '.join(available)})")
    dest = kroot / f"{release}-{FLAVOUR}"
    if (dest / ".complete").exists():
        return KernelPackage(f"{release}-{FLAVOUR}", dest)
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    pkg = f"linux-image-{release}-{FLAVOUR}"
    if not any(debs.glob(f"{pkg}_*.deb")):
        apt.run("apt-get", "download", "-qq", pkg, cwd=debs)
    deb = next(debs.glob(f"{pkg}_*.deb"), None)
    if deb is None:
        raise HarnessError(f"apt-get download {pkg} left no .deb in {debs}")
    unpack_deb([deb], dest)
    return KernelPackage(f"{release}-{FLAVOUR}", dest)


def unpack_deb(debs: list[Path], dest: Path) -> None:
    """``dpkg-deb -x`` every package into ``dest``, made whole or not at all (``dest/.complete``)."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        p = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if p.returncode:
            raise HarnessError(f"dpkg-deb -x {deb.name} failed: {p.stderr.strip()}")
    (tmp / ".complete").write_text("".join(d.name + "\n" for d in debs))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
