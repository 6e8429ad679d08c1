"""A seccomp-BPF filter written by hand, and the supervisor side of user notification.

The filter is a classic-BPF program over ``struct seccomp_data``::

    offset 0   int   nr        syscall number
    offset 4   u32   arch      AUDIT_ARCH_* of the calling convention
    offset 8   u64   ip
    offset 16  u64   args[6]   (the low 32 bits of args[0] at 16 on little-endian)

Program shape (every jump goes forward, as BPF requires)::

    ld  arch;  jeq NATIVE ? next : KILL       # a foreign ABI (i386 via int 0x80) dies
    ld  nr;    jge X32_BIT ? KILL             # x86_64 only: the x32 ABI aliases numbers
    jeq clone3 ? ENOSYS                       # args live in memory we cannot inspect;
                                              # libc falls back to clone(2)
    jeq clone  ? check flags                  # namespace-creating clone flags -> DENY
    jeq socket ? check domain                 # without ACCESS_NET: only AF_UNIX
    jeq socketpair ? check domain
    jeq <each denied nr> ? DENY
    ret ALLOW

DENY is either ``SECCOMP_RET_ERRNO | EPERM`` or ``SECCOMP_RET_USER_NOTIF``.
With user notification the filter is installed with
``SECCOMP_FILTER_FLAG_NEW_LISTENER`` and returns a listener fd; the agent
child hands that fd to its zygote, which answers every notification with
EPERM *and* records a security event naming the syscall.  That is the only
trustworthy way for the outside to learn of a denied attempt: the agent's
own process is hostile by assumption and cannot be asked.  If the listener
goes away the kernel fails the notified syscalls with ENOSYS, so denial
never turns into permission.

Denied: the classic kernel-escape and introspection calls (ptrace,
process_vm_*, the mount family, pivot_root/chroot, module loading, kexec,
bpf, perf_event_open, the keyring, userfaultfd, handle-based opens,
setns/unshare, io_uring, reboot/swap/clock changes, and a few more).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
import struct
from dataclasses import dataclass
from typing import Final

# -- constants from linux/seccomp.h, linux/filter.h, linux/audit.h -----------------
SECCOMP_SET_MODE_FILTER: Final = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER: Final = 1 << 3
SECCOMP_RET_KILL_PROCESS: Final = 0x80000000
SECCOMP_RET_ERRNO: Final = 0x00050000
SECCOMP_RET_USER_NOTIF: Final = 0x7FC00000
SECCOMP_RET_ALLOW: Final = 0x7FFF0000
PR_SET_NO_NEW_PRIVS: Final = 38
PR_SET_SECCOMP: Final = 22

BPF_LD_W_ABS: Final = 0x20
BPF_JMP_JEQ_K: Final = 0x15
BPF_JMP_JGE_K: Final = 0x35
BPF_JMP_JSET_K: Final = 0x45
BPF_RET_K: Final = 0x06

X32_SYSCALL_BIT: Final = 0x40000000
CLONE_NS_FLAGS: Final = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_UNIX: Final = 1

SECCOMP_IOCTL_NOTIF_RECV: Final = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND: Final = 0xC0182101
_NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, nr, arch, ip, args[6]  (80 bytes)
_RESP = struct.Struct("=QqiI")  # id, val, error, flags  (24 bytes)

DENIED_NAMES: Final = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
    "open_by_handle_at", "name_to_handle_at", "setns", "unshare", "io_uring_setup",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname",
    "setdomainname", "lookup_dcookie",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Arch:
    name: str
    audit: int
    x32_check: bool
    numbers: dict[str, int]


X86_64: Final = Arch(
    "x86_64",
    0xC000003E,
    True,
    {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "pidfd_getfd": 438, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433, "move_mount": 429,
        "open_tree": 428, "mount_setattr": 442, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "bpf": 321,
        "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
        "userfaultfd": 323, "open_by_handle_at": 304, "name_to_handle_at": 303, "setns": 308,
        "unshare": 272, "io_uring_setup": 425, "reboot": 169, "swapon": 167, "swapoff": 168,
        "acct": 163, "quotactl": 179, "syslog": 103, "vhangup": 153, "settimeofday": 164,
        "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "sethostname": 170,
        "setdomainname": 171, "lookup_dcookie": 212,
        "socket": 41, "socketpair": 53, "clone": 56, "clone3": 435,
    },
)  # fmt: skip

# asm-generic/unistd.h numbering
AARCH64: Final = Arch(
    "aarch64",
    0xC00000B7,
    False,
    {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "pidfd_getfd": 438, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433, "move_mount": 429,
        "open_tree": 428, "mount_setattr": 442, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294, "bpf": 280,
        "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282, "open_by_handle_at": 265, "name_to_handle_at": 264, "setns": 268,
        "unshare": 97, "io_uring_setup": 425, "reboot": 142, "swapon": 224, "swapoff": 225,
        "acct": 89, "quotactl": 60, "syslog": 116, "vhangup": 58, "settimeofday": 170,
        "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266, "sethostname": 161,
        "setdomainname": 162, "lookup_dcookie": 18,
        "socket": 198, "socketpair": 199, "clone": 220, "clone3": 435,
    },
)  # fmt: skip

ARCHES: Final = {"x86_64": X86_64, "aarch64": AARCH64}


def native_arch() -> Arch | None:
    return ARCHES.get(platform.machine())


def syscall_name(nr: int, arch: Arch | None = None) -> str:
    a = arch or native_arch()
    if a is not None:
        for k, v in a.numbers.items():
            if v == nr:
                return k
    return f"syscall_{nr}"


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def build_program(arch: Arch, *, allow_net: bool, notify: bool) -> bytes:
    """The BPF program (``struct sock_filter[]`` bytes) for one agent."""
    deny = SECCOMP_RET_USER_NOTIF if notify else (SECCOMP_RET_ERRNO | _errno.EPERM)
    # Instructions are assembled as (code, jt, jf, k) with symbolic targets resolved below.
    ALLOW, DENY, KILL, ENOSYS = "ALLOW", "DENY", "KILL", "ENOSYS"
    prog: list[tuple[int, object, object, int]] = []
    labels: dict[str, int] = {}

    def emit(code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        prog.append((code, jt, jf, k))

    def label(name: str) -> None:
        labels[name] = len(prog)

    emit(BPF_LD_W_ABS, 4)
    emit(BPF_JMP_JEQ_K, arch.audit, 0, KILL)
    emit(BPF_LD_W_ABS, 0)
    if arch.x32_check:
        emit(BPF_JMP_JGE_K, X32_SYSCALL_BIT, KILL, 0)
    n = arch.numbers
    emit(BPF_JMP_JEQ_K, n["clone3"], ENOSYS, 0)
    emit(BPF_JMP_JEQ_K, n["clone"], "CLONE", 0)
    if not allow_net:
        emit(BPF_JMP_JEQ_K, n["socket"], "DOMAIN", 0)
        emit(BPF_JMP_JEQ_K, n["socketpair"], "DOMAIN", 0)
    for name in DENIED_NAMES:
        emit(BPF_JMP_JEQ_K, n[name], DENY, 0)
    emit(BPF_RET_K, SECCOMP_RET_ALLOW)
    label("CLONE")
    emit(BPF_LD_W_ABS, 16)
    emit(BPF_JMP_JSET_K, CLONE_NS_FLAGS, DENY, ALLOW)
    if not allow_net:
        label("DOMAIN")
        emit(BPF_LD_W_ABS, 16)
        emit(BPF_JMP_JEQ_K, AF_UNIX, ALLOW, DENY)
    label(ALLOW)
    emit(BPF_RET_K, SECCOMP_RET_ALLOW)
    label(DENY)
    emit(BPF_RET_K, deny)
    label(KILL)
    emit(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
    label(ENOSYS)
    emit(BPF_RET_K, SECCOMP_RET_ERRNO | _errno.ENOSYS)

    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):

        def rel(t: object, i: int = i) -> int:
            if isinstance(t, str):
                off = labels[t] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"jump to {t} out of range")
                return off
            assert isinstance(t, int)
            return t

        out += _ins(code, rel(jt), rel(jf), k)
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.ioctl.restype = ctypes.c_int


def set_no_new_privs() -> None:
    if (
        _libc.prctl(
            PR_SET_NO_NEW_PRIVS,
            ctypes.c_ulong(1),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        != 0
    ):
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(e)}")


SYS_SECCOMP_X86_64: Final = 317
SYS_SECCOMP_AARCH64: Final = 277


def install(program: bytes, *, listener: bool) -> int | None:
    """Load the filter into this process; with ``listener`` return the notify fd."""
    arch = native_arch()
    if arch is None:
        raise OSError(_errno.ENOSYS, f"no seccomp syscall table for {platform.machine()}")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    nr = SYS_SECCOMP_X86_64 if arch is X86_64 else SYS_SECCOMP_AARCH64
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0
    r = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
        ctypes.c_uint(flags),
        ctypes.byref(fprog),
    )
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp(SET_MODE_FILTER): {os.strerror(e)}")
    return int(r) if listener else None


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, ...]


def receive(listener_fd: int) -> Notification:
    """Read one pending notification (blocks if none; use select first)."""
    buf = ctypes.create_string_buffer(_NOTIF.size)
    if _libc.ioctl(ctypes.c_int(listener_fd), ctypes.c_ulong(SECCOMP_IOCTL_NOTIF_RECV), buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"SECCOMP_IOCTL_NOTIF_RECV: {os.strerror(e)}")
    nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf.raw)
    return Notification(nid, pid, nr, arch, tuple(args))


def respond(listener_fd: int, notif_id: int, error: int = _errno.EPERM) -> None:
    """Fail the notified syscall with ``-error`` (ENOENT if the caller already died)."""
    buf = ctypes.create_string_buffer(_RESP.pack(notif_id, 0, -error, 0), _RESP.size)
    if _libc.ioctl(ctypes.c_int(listener_fd), ctypes.c_ulong(SECCOMP_IOCTL_NOTIF_SEND), buf) != 0:
        e = ctypes.get_errno()
        if e != _errno.ENOENT:
            raise OSError(e, f"SECCOMP_IOCTL_NOTIF_SEND: {os.strerror(e)}")
