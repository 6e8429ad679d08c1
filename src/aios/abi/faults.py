"""The executor contract's shared records: why an agent stopped, what was denied.

Exit causes are one enum so supervision can decide restarts from them; every
executor, wherever it runs agents, reports exactly one :class:`ExitRecord`
per agent and a :class:`SecurityEvent` for each attempt it denied, to the
:class:`Sink` the kernel handed it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from aios.abi.limits import DEFAULT_CHILD_CPU_WEIGHT, DEFAULT_CHILD_MEMORY


class ExecutorKind(StrEnum):
    INPROC = "inproc"
    WORKER = "worker"
    ISOLATED = "isolated"
    WASM = "wasm"
    MICROVM = "microvm"


class FaultCause(StrEnum):
    """Why an agent stopped."""

    EXITED = "exited"  # returned normally
    EXCEPTION = "exception"  # its code raised
    SIGNAL = "signal"  # killed by a signal it was not sent by us
    OUT_OF_FUEL = "out-of-fuel"  # Wasm fuel (CPU budget) spent
    KILLED_FOR_LIMIT = "killed-for-limit"  # CPU seconds, memory, epoch deadline
    PROTOCOL = "protocol"  # broke the trap protocol; stopped by the kernel
    SANDBOX = "sandbox"  # a required protection could not be applied
    KILLED = "killed"  # the kernel (or an operator) killed it


@dataclass(frozen=True, slots=True)
class ExitRecord:
    agent_id: int
    cause: FaultCause
    status: int = 0
    signal: int = 0
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.cause is not FaultCause.EXITED or self.status != 0


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """An attempt that was denied or contained.

    ``trusted`` is False for reports that come from inside the agent's own
    process (the in-agent audit hook): useful, but the agent could forge or
    suppress them.  Enforcement never depends on them.
    """

    agent_id: int
    kind: str  # syscall | fs | net | signal | protocol | limit | capability | sandbox
    detail: str
    executor: ExecutorKind
    trusted: bool = True
    time_ns: int = 0


@dataclass(frozen=True, slots=True)
class ProcessQuota:
    """What one agent process may use.  ``0`` means "no limit of this kind"."""

    memory_bytes: int = DEFAULT_CHILD_MEMORY
    processes: int = 16
    open_files: int = 256
    cpu_seconds: int = 0
    cpu_weight: int = DEFAULT_CHILD_CPU_WEIGHT

    def to_wire(self) -> tuple[int, int, int, int, int]:
        return (
            self.memory_bytes,
            self.processes,
            self.open_files,
            self.cpu_seconds,
            self.cpu_weight,
        )

    @classmethod
    def from_wire(cls, t: tuple[int, ...] | list[int]) -> ProcessQuota:
        m, p, f, c, w = (int(x) for x in t)
        return cls(m, p, f, c, w)



@dataclass(slots=True)
class Sink:
    """What the kernel hands an executor: where it reports traps, exits and denials."""

    trap: Callable[[int, int, int, tuple[Any, ...]], None]
    exited: Callable[[ExitRecord], None]
    security: Callable[[SecurityEvent], None]


# sandbox mechanisms a security test may switch off (kernel/confinement.weaken_for_tests)
SANDBOX_SWITCHES: Final = ("landlock", "seccomp", "namespaces", "rlimits", "cgroup", "uid", "env")


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # .../aios/


def fault_site(err: BaseException) -> str:
    """Where ``err`` was raised in the agent's own code: ``file:line in function`` of the
    innermost frame outside the aios package (the innermost frame if all are inside it)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    own = [f for f in frames if not os.path.abspath(f.filename).startswith(_PACKAGE)]
    f = (own or frames)[-1]
    return f"{f.filename}:{f.lineno} in {f.name}"


def fault_text(err: BaseException, text: str | None = None) -> str:
    """An agent's fault for people: ``Type: message at file:line in function``."""
    site = fault_site(err)
    head = text if text is not None else f"{type(err).__name__}: {err}"
    return f"{head} at {site}" if site else head
