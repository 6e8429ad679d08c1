"""The executor interface every way of running agents shares.

An *executor* runs agents somewhere - in the kernel's own loop (``inproc``),
in worker processes (``worker``), one sandboxed process each (``isolated``),
in Wasmtime stores (``wasm``) - and speaks one contract with the kernel:

* the kernel calls ``spawn(spec)``, ``deliver(agent, seq, errno, result)``
  (the answer to a trap, now or later), ``kill(agent, cause)``, ``close()``;
* the executor calls back into a :class:`Sink`: ``trap(agent, seq, sysno,
  args)`` for each syscall, ``exited(ExitRecord)`` once per agent, and
  ``security(SecurityEvent)`` for every attempt it denied or contained.

That is the whole adapter point for a microVM executor: a Firecracker
backend would boot a guest with a vsock, run the same agent-side driver
(:func:`aios.sandbox.channel.drive`) inside, and forward frames exactly as
the isolated executor does.  Firecracker (and /dev/kvm) is not available on
these hosts, so no such executor ships; see docs/sandbox.md.

Exit causes are one enum so supervision can decide restarts from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from aios.sandbox.process import AgentSpec, Protections


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


@dataclass(slots=True)
class Sink:
    """What the kernel hands an executor."""

    trap: Callable[[int, int, int, tuple[Any, ...]], None]
    exited: Callable[[ExitRecord], None]
    security: Callable[[SecurityEvent], None]


@runtime_checkable
class Executor(Protocol):
    kind: ExecutorKind

    async def start(self) -> None: ...

    async def spawn(self, spec: AgentSpec) -> int:
        """Start the agent; returns an executor-specific handle (pid, worker index, ...)."""
        ...

    def deliver(self, agent_id: int, seq: int, errno: int, result: Any) -> None: ...

    def kill(self, agent_id: int, cause: FaultCause = FaultCause.KILLED) -> None: ...

    def protections(self, agent_id: int) -> Protections | None: ...

    async def close(self) -> None: ...


__all__ = [
    "AgentSpec",
    "Executor",
    "ExecutorKind",
    "ExitRecord",
    "FaultCause",
    "Protections",
    "SecurityEvent",
    "Sink",
]
