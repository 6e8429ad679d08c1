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

Exit causes, exit records and security events are :mod:`aios.abi.faults`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from aios.abi.faults import ExecutorKind, FaultCause
from aios.sandbox.process import AgentSpec, Protections


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
    "Protections",
]
