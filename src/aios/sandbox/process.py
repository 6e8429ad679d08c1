"""Turning a freshly forked child into a sandboxed agent process.

The zygote forks; the child calls :func:`confine` and then runs the agent.
Order matters, because each step takes away authority the next ones need:

1. ``PR_SET_PDEATHSIG``: the agent dies with its zygote, never orphaned.
2. cgroup: create the agent's groups and move in (needs host root, so first).
3. rlimits: address space, processes, files, CPU seconds, no core dumps.
4. Drop to the agent's own host uid/gid (no supplementary groups).  One uid
   per agent makes ``RLIMIT_NPROC`` count per agent, and makes the kernel's
   own permission checks refuse signals, ptrace and ``/proc/PID/mem`` across
   agents and toward the kernel process (root).
5. ``unshare(CLONE_NEWUSER | CLONE_NEWNS [| CLONE_NEWNET])``: a user
   namespace mapping only the agent's uid, a private mount namespace, and -
   unless the agent holds ACCESS_NET - a network namespace with nothing but a
   down loopback.  (Python 3.11 has no ``os.unshare``: ctypes.)
6. Mount propagation made private, then every capability dropped (the
   creator of a user namespace holds all capabilities inside it).
7. ``no_new_privs``, required for the next two without CAP_SYS_ADMIN.
8. Landlock: read-write on the agent's directory, read-only on the code paths
   (the Python install, site-packages, the aios package, the agent's code)
   and a few device files; signals and abstract sockets scoped to the domain.
   With ACCESS_FS the whole tree is readable (write stays confined).
9. seccomp, last, since it forbids ``unshare`` and ``mount`` used above.
   Denied calls are sent to the zygote's user-notification monitor, which
   answers EPERM and records a security event.

Each step's success goes into a frozen :class:`Protections` record, sent to
the kernel in the HELLO frame *before any agent code runs* (so it is still
trustworthy) and shown by ``aios status``.  A step that fails is fatal unless
the policy (:attr:`AgentSpec.allow_missing`) names it: no silent downgrade.

:attr:`AgentSpec.test_disable` skips steps outright (``cgroup``, ``rlimits``,
``uid``, ``namespaces``, ``landlock``, ``seccomp``): the security tests use it
to show that each attack they expect a mechanism to stop succeeds without
it.  Only the executor's constructor sets it (from
:func:`aios.kernel.confinement.weaken_for_tests`); it travels on the
kernel-to-zygote control channel, which no agent can reach, and every
skipped step is listed in :attr:`Protections.disabled`.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import signal
import socket
import sys
import sysconfig
from dataclasses import dataclass, field, fields
from typing import Any

from aios.abi.faults import ProcessQuota as Quota
from aios.sandbox import importer, landlock, limits, seccomp

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

MECHANISMS = (
    "uid",
    "userns",
    "mountns",
    "netns",
    "caps",
    "no_new_privs",
    "landlock",
    "seccomp",
    "rlimits",
    "cgroup",
)
EXIT_SANDBOX_FAILED = 78  # EX_CONFIG
# what a security test may switch off (AgentSpec.test_disable; "env" acts on the zygote)
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxSetupError(Exception):
    """A required protection could not be applied (the child exits with EX_CONFIG)."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """Everything the zygote needs to start one isolated agent (msgpack-able via to_wire)."""

    agent_id: int
    entry: str  # "package.module:function"
    args: tuple[Any, ...] = ()
    home: str = ""  # the agent's own directory (read-write); "" = none
    code_paths: tuple[str, ...] = ()  # extra read-only dirs, added to sys.path
    quota: Quota = field(default_factory=Quota)
    access_net: bool = False
    access_fs: bool = False
    access_fs_write: bool = False
    host_uid: int = 0  # 0 = keep the zygote's uid
    allow_missing: frozenset[str] = frozenset()
    test_disable: frozenset[str] = frozenset()  # steps skipped (security tests only)

    def to_wire(self) -> tuple[Any, ...]:
        return (
            self.agent_id, self.entry, list(self.args), self.home, list(self.code_paths),
            list(self.quota.to_wire()), self.access_net, self.access_fs, self.access_fs_write, self.host_uid,
            sorted(self.allow_missing), sorted(self.test_disable),
        )  # fmt: skip

    @classmethod
    def from_wire(cls, t: Any) -> AgentSpec:
        aid, entry, args, home, code, quota, net, fs, fsw, uid, allow, off = t
        return cls(
            int(aid), str(entry), tuple(args), str(home), tuple(code), Quota.from_wire(quota),
            bool(net), bool(fs), bool(fsw), int(uid), frozenset(allow), frozenset(off),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Protections:
    """Which protections are active for one agent process."""

    uid: int = -1  # host uid the agent runs as, -1 if not switched
    userns: bool = False
    mountns: bool = False
    netns: bool = False
    caps_dropped: bool = False
    no_new_privs: bool = False
    landlock_abi: int = 0  # 0 = not applied
    seccomp: bool = False
    seccomp_notify: bool = False
    rlimits: tuple[str, ...] = ()
    cgroup: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # mechanisms that failed but policy allowed
    disabled: tuple[str, ...] = ()  # mechanisms switched off by a security test

    def to_wire(self) -> list[Any]:
        return [
            list(v) if isinstance(v, tuple) else v
            for v in (getattr(self, f.name) for f in fields(self))
        ]

    @classmethod
    def from_wire(cls, t: Any) -> Protections:
        vals: list[Any] = [tuple(v) if isinstance(v, (list, tuple)) else v for v in t]
        return cls(*vals)

    def summary(self) -> str:
        on = [
            name
            for name, active in (
                ("uid", self.uid >= 0), ("userns", self.userns), ("mountns", self.mountns),
                ("netns", self.netns), ("caps", self.caps_dropped), ("nnp", self.no_new_privs),
                (f"landlock{self.landlock_abi}", self.landlock_abi > 0), ("seccomp", self.seccomp),
                ("rlimits", bool(self.rlimits)), ("cgroup", bool(self.cgroup)),
            )
            if active
        ]  # fmt: skip
        return (" ".join(on) + (f" (missing: {', '.join(self.missing)})" if self.missing else "")
                + (f" (DISABLED FOR TESTS: {', '.join(self.disabled)})" if self.disabled else ""))


def code_paths(extra: tuple[str, ...] = ()) -> list[str]:
    """Read-only paths an agent needs: the interpreter, its libraries, aios, its own code."""
    paths = set(_base_code_paths())
    paths.update(extra)
    paths.update(os.path.realpath(p) for p in extra)
    return sorted(p for p in paths if p and os.path.exists(p))


@functools.lru_cache(maxsize=1)
def _base_code_paths() -> tuple[str, ...]:
    import aios

    paths = {
        sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(os.path.dirname(os.path.abspath(aios.__file__))),
    }  # fmt: skip
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(p)
    for p in ("/usr/lib", "/lib", "/lib64", "/usr/lib64", "/etc/ld.so.cache", "/etc/localtime"):
        paths.add(p)
    paths.update(os.path.realpath(p) for p in list(paths))
    return tuple(sorted(p for p in paths if p and os.path.exists(p)))


DEVICE_FILES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unshare: {os.strerror(e)}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    hdr = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def confine(spec: AgentSpec, notify_sock: socket.socket | None) -> Protections:
    """Apply every protection to the calling (child) process, in order.

    ``notify_sock`` receives the seccomp listener fd (SCM_RIGHTS) when given.
    Raises SandboxSetupError when a mechanism fails and the policy does not
    allow running without it.
    """
    missing: list[str] = []
    p: dict[str, Any] = {}
    off = spec.test_disable

    def attempt(name: str, fn: Any) -> Any:
        if name in off or (name in ("userns", "mountns") and "namespaces" in off):
            return None
        try:
            return fn()
        except (OSError, ValueError) as exc:
            if name not in spec.allow_missing:
                raise SandboxSetupError(f"{name}: {exc}") from None
            missing.append(name)
            return None

    _libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
    name = f"agent-{spec.agent_id}-{os.getpid()}"
    p["cgroup"] = tuple(attempt("cgroup", lambda: limits.join_cgroup(name, spec.quota)) or ())
    p["rlimits"] = tuple(attempt("rlimits", lambda: limits.apply_rlimits(spec.quota)) or ())

    # descriptors for code the agent uid may not reach by path (see importer.py),
    # and for the Landlock rules, opened while still privileged
    roots = importer.open_roots([p for p in [*spec.code_paths, *sys.path] if p])
    rw = [spec.home] if spec.home else []
    rw += ["/dev/null"]
    ro = list(code_paths(spec.code_paths)) + list(DEVICE_FILES)
    if spec.access_fs:
        ro.append("/")
    rw_fds, ro_fds = landlock.open_paths(rw), landlock.open_paths(ro)
    uid = spec.host_uid
    if "uid" in off:
        p["uid"] = -1
    elif uid > 0:

        def switch() -> int:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            return uid

        p["uid"] = attempt("uid", switch)
        if p["uid"] is None:
            p["uid"] = -1
    else:
        if "uid" not in spec.allow_missing:
            raise SandboxSetupError("uid: no host uid assigned to the agent")
        missing.append("uid")
        p["uid"] = -1

    euid, egid = os.geteuid(), os.getegid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | (0 if spec.access_net else CLONE_NEWNET)

    def userns() -> bool:
        # changing uid cleared "dumpable", which makes /proc/self/*_map root-owned
        _libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(1), 0, 0, 0)
        _unshare(flags)
        _write("/proc/self/uid_map", f"{euid} {euid} 1\n")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/gid_map", f"{egid} {egid} 1\n")
        return True

    ok = attempt("userns", userns)
    p["userns"] = bool(ok)
    p["netns"] = bool(ok) and not spec.access_net
    if not spec.access_net and not ok and "namespaces" not in off:
        missing.append("netns") if "netns" not in missing else None

    def private_mounts() -> bool:
        if _libc.mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount(MS_PRIVATE): {os.strerror(e)}")
        return True

    p["mountns"] = bool(ok) and bool(attempt("mountns", private_mounts))
    _libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0)  # no ptrace / /proc/PID/mem by peers

    def caps() -> bool:
        drop_capabilities()
        return True

    def nnp() -> bool:
        seccomp.set_no_new_privs()
        return True

    p["caps_dropped"] = bool(attempt("caps", caps))
    p["no_new_privs"] = bool(attempt("no_new_privs", nnp))

    ll = attempt(
        "landlock", lambda: landlock.restrict_fds(rw_fds, ro_fds, restrict_net=not spec.access_net)
    )
    p["landlock_abi"] = ll.abi if ll is not None else 0

    def install_seccomp() -> tuple[bool, bool]:
        arch = seccomp.native_arch()
        if arch is None:
            raise OSError(_errno.ENOSYS, "no seccomp table for this architecture")
        notify = notify_sock is not None
        prog = seccomp.build_program(arch, allow_net=spec.access_net, notify=notify)
        fd = seccomp.install(prog, listener=notify)
        if fd is not None and notify_sock is not None:
            socket.send_fds(notify_sock, [b"L"], [fd])
            os.close(fd)
        return True, notify

    sc = attempt("seccomp", install_seccomp)
    p["seccomp"], p["seccomp_notify"] = sc if sc else (False, False)
    importer.install(roots)
    return Protections(
        uid=p["uid"], userns=p["userns"], mountns=p["mountns"], netns=p["netns"],
        caps_dropped=p["caps_dropped"], no_new_privs=p["no_new_privs"],
        landlock_abi=p["landlock_abi"], seccomp=p["seccomp"], seccomp_notify=p["seccomp_notify"],
        rlimits=p["rlimits"], cgroup=p["cgroup"], missing=tuple(missing), disabled=tuple(sorted(off)),
    )  # fmt: skip


def install_audit_hook(spec: AgentSpec, report: Any) -> None:
    """Advisory: report file opens outside the allowed tree (Landlock enforces).

    The allowed roots are not filtered by existence: this runs after the agent
    dropped to its own uid, which may not traverse to its code (a checkout under
    a 0700 directory) and imports it through descriptors instead
    (``importer.DirFdFinder``); those opens are skipped, their paths being
    relative to a descriptor."""
    roots = {x for x in [spec.home, *_base_code_paths(), *spec.code_paths, *DEVICE_FILES] if x}
    allowed = tuple({os.path.realpath(x) for x in roots} | {os.path.abspath(x) for x in roots})
    allowed_dirs = tuple(a.rstrip(os.sep) + os.sep for a in allowed)
    if spec.access_fs:
        return
    busy = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if busy[0]:
            return
        if event == "open" and args and isinstance(args[0], str):
            if importer.trusted_open():
                return
            path = os.path.abspath(args[0])
            if path not in allowed and not path.startswith(allowed_dirs):
                busy[0] = True
                try:
                    report("fs", path)
                finally:
                    busy[0] = False
        elif (
            event == "socket.__new__"
            and len(args) > 1
            and args[1] not in (socket.AF_UNIX,)
            and not spec.access_net
        ):
            busy[0] = True
            try:
                report("net", f"socket family {args[1]}")
            finally:
                busy[0] = False

    sys.addaudithook(hook)
