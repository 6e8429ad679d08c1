"""The global error taxonomy (whitepaper subsystem #12).

Every failure that crosses the syscall boundary is one of the classes below.
Each carries a stable numeric ``code`` (errno-like: where Linux has a number
for the same idea we reuse it, AIOS-specific conditions live at 1000 and up)
and a ``category``.  The code is what travels on the wire; :func:`from_code`
turns it back into the same class on the other side, so an agent in an
isolated process catches exactly the exception an in-process agent would.

The tree::

    AIOSError
    ├── CapabilityError                      (category: capability)
    │   ├── PermissionDenied        EPERM      1  right missing on a valid capability
    │   ├── InvalidCapability       EBADCAP 1001  empty, revoked or wrong-kind slot
    │   └── QuotaExceeded           EDQUOT   122  a quota up the derivation chain is spent
    ├── ArgumentError                        (category: argument)
    │   ├── InvalidArgument         EINVAL    22  malformed or out-of-range argument
    │   ├── MessageTooLarge         EMSGSIZE  90  payload over the IPC limit
    │   └── NoSuchSyscall           ENOSYS    38  unknown syscall number
    ├── LookupFailure                        (category: lookup)
    │   ├── NoSuchAgent             ESRCH      3  agent id not in the agent table
    │   ├── NoSuchObject            ENOENT     2  name, handle or object not found
    │   └── AlreadyExists           EEXIST    17  name or object already present
    ├── ResourceError                        (category: resource)
    │   ├── WouldBlock              EAGAIN    11  the _nowait form of a call that would block
    │   ├── Busy                    EBUSY     16  admission refused, resource in use
    │   ├── OutOfMemory             ENOMEM    12  arena or pool exhausted
    │   └── DeviceError             EIO        5  a device or its driver failed
    ├── TimingError                          (category: timing)
    │   ├── TimedOut                ETIMEDOUT 110 a blocking call's timeout expired
    │   └── Deadlock                EDEADLK   35  a wait would close a cycle
    ├── StateError                           (category: state)
    │   ├── IllegalTransition       EILLSTATE 1003 lifecycle state machine refused
    │   ├── AgentGone               EPIPE     32  peer or target is a zombie or dead
    │   ├── Vetoed                  EVETO   1004  a lifecycle pre-hook refused
    │   └── Cancelled               ECANCELED 125 operation cancelled (kill, shutdown)
    ├── ProtocolError               EPROTO    71  (category: protocol) bad frame on the trap ABI
    ├── SecurityError                        (category: security)
    │   ├── PolicyDenied            EACCES    13  policy engine said no
    │   ├── IntegrityError          EBADMSG   74  bad signature, hash or proof
    │   ├── TokenExpired            EKEYEXPIRED 127 bearer token past its expiry
    │   └── TokenRevoked            EKEYREVOKED 128 bearer token (or an ancestor) revoked
    ├── StorageError                EIO        5  (category: storage) a file or database the kernel
    │                                                keeps is unreadable, corrupt or full
    ├── AgentFault                  EFAULT    14  (category: fault) the agent's own code failed
    └── KernelPanic                 ENOTRECOVERABLE 131 (category: panic) a kernel invariant broke

``KernelPanic`` is never raised for anything an agent can cause; it exists so
that a broken invariant is loud.  Bad input from an agent always maps to one
of the other classes and leaves kernel state unchanged.

``StorageError`` is what a broken disk or a damaged file becomes: every place
that reads or writes state (the audit log, the keystore, the revocation list,
the memory store) turns the foreign exceptions of its library (``sqlite3``,
``json``, ``OSError``) into it in one place (:func:`aios.lib.storage.storage_edge`),
naming the file and what to do; its ``detail`` carries ``path`` and ``hint``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class Category(StrEnum):
    STORAGE = "storage"
    CAPABILITY = "capability"
    ARGUMENT = "argument"
    LOOKUP = "lookup"
    RESOURCE = "resource"
    TIMING = "timing"
    STATE = "state"
    PROTOCOL = "protocol"
    SECURITY = "security"
    FAULT = "fault"
    PANIC = "panic"


class AIOSError(Exception):
    """Root of the taxonomy.  ``code`` is stable across versions and the wire."""

    code: ClassVar[int] = 1000
    name: ClassVar[str] = "EAIOS"
    category: ClassVar[Category] = Category.FAULT

    def __init__(self, message: str = "", **detail: Any) -> None:
        super().__init__(message or self.__class__.__doc__ or self.name)
        self.message = message or (self.__class__.__doc__ or self.name).strip()
        self.detail = detail

    def __str__(self) -> str:
        return f"[{self.name}] {self.message}"

    def to_wire(self) -> tuple[int, str]:
        """What crosses a process boundary: ``(code, message)``."""
        return (self.code, self.message)


# -- capability ------------------------------------------------------------


class CapabilityError(AIOSError):
    category = Category.CAPABILITY
    code = 1100
    name = "ECAP"


class PermissionDenied(CapabilityError):
    """The capability is valid but lacks a right the call needs."""

    code = 1
    name = "EPERM"


class InvalidCapability(CapabilityError):
    """The slot is empty, revoked, out of range, or names the wrong kind of object."""

    code = 1001
    name = "EBADCAP"


class QuotaExceeded(CapabilityError):
    """A quota somewhere up the capability derivation chain would be exceeded."""

    code = 122
    name = "EDQUOT"


# -- argument --------------------------------------------------------------


class ArgumentError(AIOSError):
    category = Category.ARGUMENT
    code = 1101
    name = "EARG"


class InvalidArgument(ArgumentError):
    """An argument has the wrong type, size or value."""

    code = 22
    name = "EINVAL"


class MessageTooLarge(ArgumentError):
    """A payload exceeds the limit for its channel (binary IPC: 64 KiB)."""

    code = 90
    name = "EMSGSIZE"


class NoSuchSyscall(ArgumentError):
    """The syscall number is not in the syscall table."""

    code = 38
    name = "ENOSYS"


# -- lookup ----------------------------------------------------------------


class LookupFailure(AIOSError):
    category = Category.LOOKUP
    code = 1102
    name = "ELOOKUP"


class NoSuchAgent(LookupFailure):
    """No live agent has this id."""

    code = 3
    name = "ESRCH"


class NoSuchObject(LookupFailure):
    """A name, handle, region or other object was not found."""

    code = 2
    name = "ENOENT"


class AlreadyExists(LookupFailure):
    """A name or object with this identity already exists."""

    code = 17
    name = "EEXIST"


# -- resource --------------------------------------------------------------


class ResourceError(AIOSError):
    category = Category.RESOURCE
    code = 1103
    name = "ERESOURCE"


class WouldBlock(ResourceError):
    """The ``_nowait`` form of a call found that it would have to wait."""

    code = 11
    name = "EAGAIN"


class Busy(ResourceError):
    """Admission control refused, or the resource is in use."""

    code = 16
    name = "EBUSY"


class OutOfMemory(ResourceError):
    """The shared arena or a pool has no room left."""

    code = 12
    name = "ENOMEM"


class DeviceError(ResourceError):
    """A device or its driver failed: an endpoint kept answering 5xx, a stream broke
    and could not be resumed, a model could not be loaded."""

    code = 5
    name = "EIO"


# -- timing ----------------------------------------------------------------


class TimingError(AIOSError):
    category = Category.TIMING
    code = 1104
    name = "ETIMING"


class TimedOut(TimingError):
    """A blocking call's timeout expired before it could complete."""

    code = 110
    name = "ETIMEDOUT"


class Deadlock(TimingError):
    """Waiting would close a cycle of waiters (or the chain is too long to check)."""

    code = 35
    name = "EDEADLK"


# -- state -----------------------------------------------------------------


class StateError(AIOSError):
    category = Category.STATE
    code = 1105
    name = "ESTATE"


class IllegalTransition(StateError):
    """The lifecycle state machine has no such transition from the current state."""

    code = 1003
    name = "EILLSTATE"


class AgentGone(StateError):
    """The target agent is a zombie or dead."""

    code = 32
    name = "EPIPE"


class Vetoed(StateError):
    """A lifecycle pre-hook refused the operation."""

    code = 1004
    name = "EVETO"


class Cancelled(StateError):
    """The operation was cancelled (the agent was killed or the kernel is stopping)."""

    code = 125
    name = "ECANCELED"


# -- protocol --------------------------------------------------------------


class ProtocolError(AIOSError):
    """A frame on the trap ABI was malformed, oversized or out of order."""

    category = Category.PROTOCOL
    code = 71
    name = "EPROTO"


# -- security --------------------------------------------------------------


class SecurityError(AIOSError):
    category = Category.SECURITY
    code = 1106
    name = "ESECURITY"


class PolicyDenied(SecurityError):
    """The policy engine denied the request."""

    code = 13
    name = "EACCES"


class IntegrityError(SecurityError):
    """A signature, content hash or proof did not verify."""

    code = 74
    name = "EBADMSG"


class TokenExpired(SecurityError):
    """A bearer token is past its expiry."""

    code = 127
    name = "EKEYEXPIRED"


class TokenRevoked(SecurityError):
    """A bearer token, or one it was derived from, has been revoked."""

    code = 128
    name = "EKEYREVOKED"


# -- storage ---------------------------------------------------------------


class StorageError(AIOSError):
    """A file or database the kernel keeps could not be read or written."""

    category = Category.STORAGE
    code = 5
    name = "EIO"


# -- fault / panic ---------------------------------------------------------


class AgentFault(AIOSError):
    """The agent's own code raised, was killed by a signal, or ran out of fuel."""

    category = Category.FAULT
    code = 14
    name = "EFAULT"


class KernelPanic(AIOSError):
    """A kernel invariant is broken.  Never caused by agent input."""

    category = Category.PANIC
    code = 131
    name = "ENOTRECOVERABLE"


def _all_errors() -> list[type[AIOSError]]:
    out: list[type[AIOSError]] = []
    stack: list[type[AIOSError]] = [AIOSError]
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


BY_CODE: dict[int, type[AIOSError]] = {cls.code: cls for cls in _all_errors()}


def from_code(code: int, message: str = "") -> AIOSError:
    """Rebuild the error for ``code`` (unknown codes become a plain ``AIOSError``)."""
    cls = BY_CODE.get(code, AIOSError)
    return cls(message)
