"""Resource limits for agent processes: rlimits and cgroups.

Two mechanisms, layered.  **rlimits** are per process and always available:
``RLIMIT_AS`` bounds the address space (a Python ``MemoryError`` rather than
the host's OOM killer), ``RLIMIT_NPROC`` bounds processes per user (so each
agent runs under its own host uid, see :mod:`aios.sandbox.process`),
``RLIMIT_NOFILE`` bounds descriptors, and ``RLIMIT_CPU`` bounds CPU seconds
(soft limit: SIGXCPU, hard limit one second later: SIGKILL).

**cgroups** bound the whole process tree and count what rlimits cannot
(page cache, the sum over a fork bomb).  This host has cgroup v1 with
separate ``cpu``, ``memory`` and ``pids`` hierarchies; v2 (one unified tree
with ``cpu.weight``, ``memory.max``, ``pids.max``) is handled too.  Agent
groups are created *beneath the cgroup this process already lives in* for
each controller, never at a hierarchy root, so an agent can never escape a
limit that applies to the kernel itself.  A tree that is not writable makes
:func:`cgroup_available` false; the caller then decides, by policy, whether
the agent may start without it.

The CPU weight scale is the kernel scheduler's (1024 = nice 0); v1
``cpu.shares`` takes it directly, v2 ``cpu.weight`` (1..10000, 100 = nice 0)
is scaled.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from aios.abi.faults import ProcessQuota as Quota

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "aios"
NPROC_SLACK = 2


def apply_rlimits(q: Quota) -> list[str]:
    """Set the rlimits of the calling process; returns the names set."""
    done: list[str] = []

    def lower(res: int, value: int, hard: int | None = None) -> None:
        _, cur_hard = resource.getrlimit(res)
        h = value if hard is None else hard
        if cur_hard != resource.RLIM_INFINITY:
            h = min(h, cur_hard)
            value = min(value, h)
        resource.setrlimit(res, (value, h))

    if q.memory_bytes > 0:
        lower(resource.RLIMIT_AS, q.memory_bytes)
        done.append("as")
    if q.processes > 0:
        # the cgroup's pids.max is the primary bound (it counts its refusals in
        # pids.events); the rlimit, a little looser, is the backstop without it
        lower(resource.RLIMIT_NPROC, q.processes + NPROC_SLACK)
        done.append("nproc")
    if q.open_files > 0:
        lower(resource.RLIMIT_NOFILE, q.open_files)
        done.append("nofile")
    if q.cpu_seconds > 0:
        lower(resource.RLIMIT_CPU, q.cpu_seconds, q.cpu_seconds + 1)
        done.append("cpu")
    lower(resource.RLIMIT_CORE, 0)
    return done


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path (v1), or {"": path} for v2."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        for c in ctrls.split(","):
            out[c] = path
    return out


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    version: int  # 1 or 2
    dirs: dict[str, Path]  # controller ("cpu", "memory", "pids") -> parent dir for agent groups


def detect_layout() -> CgroupLayout | None:
    """Where agent cgroups go, if the tree is writable; None otherwise."""
    own = _own_paths()
    v1 = {c: CGROUP_ROOT / c for c in ("cpu", "memory", "pids")}
    if all((p / "tasks").exists() for p in v1.values()):
        dirs = {c: v1[c] / own.get(c, "/").lstrip("/") / GROUP_PREFIX for c in v1}
        version = 1
    elif (CGROUP_ROOT / "cgroup.controllers").exists():
        base = CGROUP_ROOT / own.get("", "/").lstrip("/") / GROUP_PREFIX
        dirs = {c: base for c in ("cpu", "memory", "pids")}
        version = 2
    else:
        return None
    try:
        for d in set(dirs.values()):
            d.mkdir(parents=True, exist_ok=True)
            if version == 2:
                try:
                    (d / "cgroup.subtree_control").write_text("+cpu +memory +pids")
                except OSError:
                    return None
    except OSError:
        return None
    return CgroupLayout(version, dirs)


_layout_cache: list[CgroupLayout | None] = []


def cgroup_layout() -> CgroupLayout | None:
    if not _layout_cache:
        _layout_cache.append(detect_layout())
    return _layout_cache[0]


def cgroup_available() -> bool:
    return cgroup_layout() is not None


def join_cgroup(name: str, q: Quota, pid: int = 0) -> list[str]:
    """Create the agent's groups, write its limits, move ``pid`` (0 = self) in.

    Returns the limits written.  Raises OSError when the tree refuses.
    """
    layout = cgroup_layout()
    if layout is None:
        raise OSError(30, "cgroup tree not writable")
    pid = pid or os.getpid()
    done: list[str] = []
    if layout.version == 1:
        files = {
            "cpu": ("cpu.shares", str(max(2, q.cpu_weight))),
            "memory": ("memory.limit_in_bytes", str(q.memory_bytes) if q.memory_bytes else "-1"),
            "pids": ("pids.max", str(q.processes) if q.processes else "max"),
        }
        for ctrl, (fname, value) in files.items():
            d = layout.dirs[ctrl] / name
            d.mkdir(exist_ok=True)
            (d / fname).write_text(value)
            (d / "cgroup.procs").write_text(str(pid))
            done.append(fname)
    else:
        d = layout.dirs["cpu"] / name
        d.mkdir(exist_ok=True)
        weight = max(1, min(10000, q.cpu_weight * 100 // 1024))
        for fname, value in (
            ("cpu.weight", str(weight)),
            ("memory.max", str(q.memory_bytes) if q.memory_bytes else "max"),
            ("pids.max", str(q.processes) if q.processes else "max"),
        ):
            (d / fname).write_text(value)
            done.append(fname)
        (d / "cgroup.procs").write_text(str(pid))
    return done


def remove_cgroup(name: str) -> bool:
    """Remove the agent's (empty) groups; True when none is left."""
    layout = cgroup_layout()
    if layout is None:
        return True
    clean = True
    for d in {p / name for p in layout.dirs.values()}:
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            clean = False  # still populated (descendants dying): retry later
    return clean


def cgroup_stat(name: str, ctrl: str, fname: str) -> str | None:
    layout = cgroup_layout()
    if layout is None:
        return None
    try:
        return (layout.dirs[ctrl] / name / fname).read_text().strip()
    except OSError:
        return None
