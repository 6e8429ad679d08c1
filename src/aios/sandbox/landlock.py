"""Landlock through raw syscalls (ctypes), no helper library.

Landlock lets an unprivileged process drop file-system (and TCP port, and
signal / abstract-socket) authority for itself and all its descendants.  The
kernel API is three syscalls: ``landlock_create_ruleset`` declares which
access rights the new ruleset *handles* (everything handled is denied unless
a rule allows it), ``landlock_add_rule`` allows rights beneath an open
directory (or on a file), and ``landlock_restrict_self`` enforces the ruleset
on the calling thread, irrevocably (``no_new_privs`` must be set first).

The ABI grew over time; we ask the kernel for its version and handle exactly
the rights that version knows (asking for an unknown bit is EINVAL):

=====  ===========================================================
ABI    adds
=====  ===========================================================
1      the 13 basic file rights
2      REFER (link/rename across directories)
3      TRUNCATE
4      TCP bind/connect (``handled_access_net``)
5      IOCTL_DEV
6      ``scoped``: abstract UNIX sockets and signals stay in-domain
=====  ===========================================================

A file-system rule on a non-directory may only carry file rights, so
:func:`restrict` masks them per path.  Missing paths are skipped (a Python
install without some directory is not an error), and the rights granted are
returned so the caller can report them.  Nothing here is called in the kernel
process: these functions run in a freshly forked agent child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

SYS_CREATE_RULESET = 444  # same number on x86_64 and aarch64 (unified table)
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446

CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15

NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ_ONLY = EXECUTE | READ_FILE | READ_DIR


def fs_rights(abi: int) -> int:
    """Every file-system right the given ABI knows."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def abi_version() -> int:
    """The running kernel's Landlock ABI, or 0 when Landlock is unavailable."""
    v = _syscall(
        SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)
    )
    return int(v) if v > 0 else 0


@dataclass(frozen=True, slots=True)
class LandlockResult:
    abi: int
    read_write: tuple[str, ...]
    read_only: tuple[str, ...]
    net_restricted: bool
    scoped: bool


def _oserror(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def open_paths(paths: Iterable[str]) -> list[tuple[str, int]]:
    """``O_PATH`` descriptors for rule paths; missing or unreachable paths are skipped.

    Open them while still privileged: a rule needs only the descriptor, so a
    read-only tree below a directory the agent's uid cannot traverse can
    still be granted.
    """
    out = []
    for p in paths:
        try:
            out.append((p, os.open(p, os.O_PATH | os.O_CLOEXEC)))
        except OSError:
            continue
    return out


def restrict(
    read_write: Iterable[str],
    read_only: Iterable[str],
    *,
    restrict_net: bool = False,
    scope: bool = True,
) -> LandlockResult:
    """Confine this process (and its future children) to the listed paths."""
    return restrict_fds(
        open_paths(read_write), open_paths(read_only), restrict_net=restrict_net, scope=scope
    )


def restrict_fds(
    read_write: list[tuple[str, int]],
    read_only: list[tuple[str, int]],
    *,
    restrict_net: bool = False,
    scope: bool = True,
) -> LandlockResult:
    """Confine this process to the trees of the given ``O_PATH`` descriptors (closed here).

    ``restrict_net`` additionally denies every TCP bind/connect (ABI >= 4);
    ``scope`` keeps signals and abstract UNIX sockets inside the domain (ABI
    >= 6).  Raises OSError if Landlock is unavailable or a syscall fails.
    """
    try:
        return _restrict(read_write, read_only, restrict_net, scope)
    finally:
        for _, fd in (*read_write, *read_only):
            with contextlib.suppress(OSError):
                os.close(fd)


def _restrict(
    read_write: list[tuple[str, int]],
    read_only: list[tuple[str, int]],
    restrict_net: bool,
    scope: bool,
) -> LandlockResult:
    abi = abi_version()
    if abi <= 0:
        raise OSError(38, "Landlock is not supported by this kernel")
    handled = fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled)
    size = 8
    if abi >= 4:
        size = 16
        if restrict_net:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
    if abi >= 6:
        size = 24
        if scope:
            attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    fd = _syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise _oserror("landlock_create_ruleset")
    fd = int(fd)
    rw_done: list[str] = []
    ro_done: list[str] = []
    try:
        for paths, rights, done in (
            (read_write, handled, rw_done),
            (read_only, READ_ONLY, ro_done),
        ):
            for p, pfd in paths:
                allowed = rights & handled
                if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                    allowed &= FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=allowed, parent_fd=pfd)
                r = _syscall(
                    SYS_ADD_RULE,
                    ctypes.c_int(fd),
                    ctypes.c_int(RULE_PATH_BENEATH),
                    ctypes.byref(rule),
                    ctypes.c_uint32(0),
                )
                if r < 0:
                    raise _oserror(f"landlock_add_rule({p})")
                done.append(p)
        if _syscall(SYS_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) < 0:
            raise _oserror("landlock_restrict_self")
    finally:
        os.close(fd)
    return LandlockResult(
        abi=abi,
        read_write=tuple(rw_done),
        read_only=tuple(ro_done),
        net_restricted=bool(attr.handled_access_net),
        scoped=bool(attr.scoped),
    )
