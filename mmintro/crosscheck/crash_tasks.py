"""crash utility rows for processes: ``ps``, ``vm``, ``vm -p``, ``files``, ``mount``."""

from __future__ import annotations

import re
from typing import Any

from mmintro.crosscheck.answers import Addr, as_addr
from mmintro.crosscheck.crash_context import _NA, _Ctx
from mmintro.reader import Object, Program


def ps_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """Every task: PID, PPID, CPU, TASK, ST, %MEM, VSZ, RSS, COMM = ``mmintro ps`` (byte for byte)."""
    from mmintro.views.ps import ps, render

    return render(ps(c.prog)).splitlines(), out["ps"].splitlines()


def _need_pid(c: _Ctx) -> int:
    if not c.pids:
        raise _NA("no user processes")
    return c.pids[0]


def vm_cmds(c: _Ctx) -> list[str]:
    return [f"vm {c.pids[0]}", f"vm -p {c.pids[0]}"] if c.pids else []


def vm_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``vm PID``: MM, PGD, RSS, TOTAL_VM and every VMA = ``mmintro vm`` (byte for byte)."""
    from mmintro.views.vm import render, vm

    pid = _need_pid(c)
    return render(vm(c.prog, pid)).splitlines(), out[f"vm {pid}"].splitlines()


def vm_p_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``vm -p PID``: each mapped page's physical address = ``mmintro vtop --pid`` of it."""
    from mmintro.views.vm import vtop_pid

    pid = _need_pid(c)
    theirs = {
        Addr(int(m.group(1), 16)): Addr(int(m.group(2), 16))
        for m in re.finditer(r"^([0-9a-f]+)\s+([0-9a-f]+)$", out[f"vm -p {pid}"], re.M)
    }
    ours = {}
    for va in theirs:
        ours[va] = as_addr(vtop_pid(c.prog, pid, va)["phys"])
    if not theirs:
        raise _NA("no mapped page")
    return ours, theirs


def files_cmds(c: _Ctx) -> list[str]:
    return [f"files {pid}" for pid in c.pids[:3]]


def files_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``files PID``: every open fd with its FILE, DENTRY, INODE and path = the task's fd table
    (files->fdt->fd[], d_path)."""
    from mmintro.reader.helpers.task import d_path, find_task

    _need_pid(c)
    ours, theirs = {}, {}
    for pid in c.pids[:3]:
        t = find_task(c.prog, pid)
        rows = []
        if t.files.value_():
            fdt = t.files.fdt
            for fd in range(fdt.max_fds.value_()):
                f = fdt.fd[fd]
                if f.value_():
                    rows.append((fd, f.value_(), f.f_path.dentry.value_(), f.f_inode.value_(), d_path(f)))
        ours[pid] = rows
        theirs[pid] = [
            (int(m.group(1)), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16), m.group(5))
            for m in re.finditer(
                r"^\s*(\d+)\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+\S+\s+(.*)$", out[f"files {pid}"], re.M
            )
        ]
    return ours, theirs


def mount_cmds(c: _Ctx) -> list[str]:
    return ["mount"] if c.pids else []


def mount_cmp(c: _Ctx, out: dict[str, str]) -> tuple:
    """``mount``: MOUNT, SUPERBLK, TYPE, DEVNAME and DIRNAME of each mount of init's namespace =
    the namespace's mounts rbtree."""
    from mmintro.reader.helpers.task import find_task

    _need_pid(c)
    p = c.prog
    ns = find_task(p, c.pids[0]).nsproxy.mnt_ns
    off = p.types.struct("mount").offsetof("mnt_node")
    ours = []
    node = _rb_first(ns.mounts.rb_node.value_(), p)
    for _ in range(ns.nr_mounts.value_()):
        if not node:
            break
        mnt = Object(p, p.type("struct mount *"), node - off)
        sb = mnt.mnt.mnt_sb
        ours.append(
            (
                mnt.value_(),
                sb.value_(),
                sb.s_type.name.string_().decode(),
                mnt.mnt_devname.string_().decode(),
                _mount_dir(mnt),
            )
        )
        node = _rb_next(node, p)
    theirs = [
        (int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4), m.group(5))
        for m in re.finditer(r"^([0-9a-f]{16}) ([0-9a-f]{16}) (\S+)\s+(\S+)\s+(\S+)\s*$", out["mount"], re.M)
    ]
    return ours, theirs


def _mount_dir(mnt: Any) -> str:
    """Where the mount is mounted: "/" for the namespace's root, else its mountpoint's path."""
    from mmintro.reader.helpers.task import d_path

    if mnt.mnt_parent.value_() == mnt.value_():
        return "/"
    return d_path(mnt.mnt_mountpoint)


def _rb_node(p: Program, addr: int) -> Any:
    return Object(p, p.type("struct rb_node *"), addr)


def _rb_first(node: int, p: Program) -> int:
    while node:
        left = _rb_node(p, node).rb_left.value_()
        if not left:
            return node
        node = left
    return 0


def _rb_next(node: int, p: Program) -> int:
    n = _rb_node(p, node)
    if n.rb_right.value_():
        return _rb_first(n.rb_right.value_(), p)
    while True:
        parent = n.__rb_parent_color.value_() & ~3
        if not parent:
            return 0
        pn = _rb_node(p, parent)
        if pn.rb_left.value_() == n.value_():
            return parent
        n = pn
