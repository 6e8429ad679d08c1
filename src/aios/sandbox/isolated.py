"""The isolated executor: one untrusted agent per sandboxed process.

For each agent the executor makes a socketpair, wraps its end in a
:class:`~aios.sandbox.channel.RemoteAgentChannel`, gives the agent a host uid
of its own (from a range reserved for agents) and a home directory owned by
that uid, and asks the zygote to fork it with the other end.  From then on
the agent is, to the kernel, an id whose traps arrive through ``Sink.trap``
and whose answers go out through :meth:`deliver`.

Three sources tell the executor what happened to an agent, and it merges
them into one :class:`ExitRecord` once both the trap stream has closed and
the zygote has reaped the process:

* the agent runtime's control frames: HELLO (the protections record, sent
  before any agent code ran) and EXIT (how the coroutine ended);
* the zygote: exit status / signal, cgroup counters (pids.max hits, memory
  fail count), and seccomp user-notification reports;
* the channel itself: a protocol violation, after which the agent is killed.

Trusted security events come from the zygote, the cgroup counters, the
signal that ended the process and the channel; events from the in-agent
audit hook are forwarded with ``trusted=False``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any

from aios.abi import wire
from aios.abi.errors import AIOSError, NoSuchAgent, ProtocolError
from aios.abi.faults import SANDBOX_SWITCHES as SWITCHES
from aios.abi.faults import ExecutorKind, ExitRecord, FaultCause, SecurityEvent, Sink
from aios.sandbox.channel import RemoteAgentChannel
from aios.sandbox.process import EXIT_SANDBOX_FAILED, AgentSpec, Protections
from aios.sandbox.zygote import Zygote

UID_BASE = 200_000
UID_COUNT = 60_000
MAX_ADVISORIES = 256  # untrusted in-agent reports forwarded per agent


@dataclass(slots=True)
class _Agent:
    spec: AgentSpec
    channel: RemoteAgentChannel
    uid: int
    pid: int = 0
    protections: Protections | None = None
    outcome: tuple[int, str, str] | None = None
    reaped: tuple[int, int, dict[str, int]] | None = None
    stream_closed: bool = False
    kill_cause: FaultCause | None = None
    traps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class IsolatedExecutor:
    kind = ExecutorKind.ISOLATED

    def __init__(
        self,
        sink: Sink,
        *,
        uid_base: int = UID_BASE,
        uid_count: int = UID_COUNT,
        test_disable: frozenset[str] = frozenset(),
    ) -> None:
        """``test_disable``: mechanisms to switch off, for the security tests only
        (``landlock``, ``seccomp``, ``namespaces``, ``rlimits``, ``cgroup``, ``uid``,
        ``env``); the kernel passes what :func:`aios.kernel.confinement.weaken_for_tests`
        set, and nothing an agent sends can reach it."""
        unknown = set(test_disable) - set(SWITCHES)
        if unknown:
            raise ValueError(f"unknown mechanisms {sorted(unknown)}")
        self.sink = sink
        self.test_disable = frozenset(test_disable)
        self.zygote = Zygote(on_exit=self._on_reaped, on_security=self._on_zygote_security,
                             scrub_env="env" not in test_disable)
        self.agents: dict[int, _Agent] = {}
        self._free_uids = list(range(uid_base + uid_count - 1, uid_base - 1, -1))
        self._by_pid: dict[int, int] = {}

    async def start(self) -> None:
        await self.zygote.start()

    async def spawn(self, spec: AgentSpec) -> int:
        if spec.agent_id in self.agents:
            raise AIOSError(f"agent {spec.agent_id} already running")
        uid = self._free_uids.pop() if os.geteuid() == 0 and "uid" not in self.test_disable else 0
        if spec.home:
            os.makedirs(spec.home, mode=0o700, exist_ok=True)
            if uid:
                os.chown(spec.home, uid, uid)
        spec = replace(spec, host_uid=uid, test_disable=spec.test_disable | (self.test_disable - {"env"}))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        aid = spec.agent_id

        def on_trap(seq: int, sysno: int, args: tuple[Any, ...]) -> None:
            a.traps += 1
            self.sink.trap(aid, seq, sysno, args)

        channel = await RemoteAgentChannel.open(
            ours,
            on_trap,
            on_control=lambda op, args: self._on_control(aid, op, args),
            on_error=lambda exc: self._on_protocol_error(aid, exc),
            on_close=lambda: self._on_stream_closed(aid),
        )
        a = _Agent(spec, channel, uid)
        self.agents[aid] = a
        try:
            a.pid = await self.zygote.spawn(spec, theirs)
        except Exception:
            self.agents.pop(aid, None)
            channel.close()
            self._release_uid(uid)
            raise
        finally:
            theirs.close()
        self._by_pid[a.pid] = aid
        return a.pid

    def deliver(self, agent_id: int, seq: int, errno: int, result: Any) -> None:
        a = self.agents.get(agent_id)
        if a is None:
            return
        a.channel.reply(seq, errno, result)

    def deliver_error(self, agent_id: int, seq: int, exc: AIOSError) -> None:
        self.deliver(agent_id, seq, exc.code, exc.message)

    def kill(self, agent_id: int, cause: FaultCause = FaultCause.KILLED) -> None:
        a = self.agents.get(agent_id)
        if a is None:
            raise NoSuchAgent(f"no isolated agent {agent_id}")
        if a.kill_cause is None:
            a.kill_cause = cause
        self.zygote.kill(agent_id, signal.SIGKILL)

    def protections(self, agent_id: int) -> Protections | None:
        a = self.agents.get(agent_id)
        return a.protections if a is not None else None

    def pid(self, agent_id: int) -> int:
        a = self.agents.get(agent_id)
        return a.pid if a is not None else 0

    async def close(self) -> None:
        for a in self.agents.values():
            a.channel.close()
        await self.zygote.close()

    # -- events -------------------------------------------------------------------
    def _security(self, aid: int, kind: str, detail: str, trusted: bool = True) -> None:
        self.sink.security(
            SecurityEvent(aid, kind, detail, self.kind, trusted, time.monotonic_ns())
        )

    def _on_control(self, aid: int, op: int, args: tuple[Any, ...]) -> None:
        a = self.agents.get(aid)
        if a is None:
            return
        try:
            if op == wire.Control.HELLO and a.protections is None:
                a.protections = Protections.from_wire(args[2])
            elif op == wire.Control.EXIT and a.outcome is None:
                a.outcome = (int(args[0]), str(args[1]), str(args[2]))
            elif op == wire.Control.SECURITY:
                n = a.extra.get("advisories", 0) + 1
                a.extra["advisories"] = n
                if n <= MAX_ADVISORIES:  # an agent cannot flood the event bus with reports
                    self._security(aid, str(args[0])[:32], str(args[1])[:512], trusted=False)
            else:
                raise ProtocolError(f"unexpected control op {op}")
        except (IndexError, TypeError, ValueError) as exc:
            self._on_protocol_error(aid, ProtocolError(f"bad control frame: {exc}"))
        except ProtocolError as exc:
            self._on_protocol_error(aid, exc)

    def _on_protocol_error(self, aid: int, exc: ProtocolError) -> None:
        self._security(aid, "protocol", exc.message)
        a = self.agents.get(aid)
        if a is not None:
            a.channel.close()
            with contextlib.suppress(AIOSError):
                self.kill(aid, FaultCause.PROTOCOL)

    def _on_zygote_security(self, aid: int, pid: int, kind: str, detail: str) -> None:
        self._security(aid, kind, detail)

    def _on_stream_closed(self, aid: int) -> None:
        a = self.agents.get(aid)
        if a is not None:
            a.stream_closed = True
            self._maybe_finish(aid)

    def _on_reaped(
        self, aid: int, pid: int, code: int, signo: int, counters: dict[str, int]
    ) -> None:
        a = self.agents.get(aid)
        if a is None or a.pid not in (pid, 0):
            return
        a.reaped = (code, signo, counters)
        if not a.stream_closed:
            a.channel.close()
            a.stream_closed = True
        self._maybe_finish(aid)

    def _maybe_finish(self, aid: int) -> None:
        a = self.agents.get(aid)
        if a is None or a.reaped is None or not a.stream_closed:
            return
        del self.agents[aid]
        self._by_pid.pop(a.pid, None)
        self._release_uid(a.uid)
        code, signo, counters = a.reaped
        if counters.get("pids_max"):
            self._security(aid, "limit", f"process limit hit {counters['pids_max']} times")
        if counters.get("mem_failcnt"):
            self._security(aid, "limit", f"memory limit hit {counters['mem_failcnt']} times")
        self.sink.exited(self._exit_record(aid, a, code, signo))

    def _exit_record(self, aid: int, a: _Agent, code: int, signo: int) -> ExitRecord:
        msg = a.outcome[2] if a.outcome else ""
        if a.kill_cause is not None:
            return ExitRecord(aid, a.kill_cause, code, signo, msg or a.kill_cause.value)
        if signo in (signal.SIGXCPU,) or (
            signo == signal.SIGKILL and a.outcome is None and a.spec.quota.cpu_seconds
        ):
            self._security(aid, "limit", "CPU time limit")
            return ExitRecord(
                aid, FaultCause.KILLED_FOR_LIMIT, code, signo, "cpu seconds exhausted"
            )
        if signo == signal.SIGSYS:
            self._security(aid, "syscall", "killed by seccomp (foreign syscall ABI)")
        if signo:
            return ExitRecord(aid, FaultCause.SIGNAL, code, signo, signal.Signals(signo).name)
        if code == EXIT_SANDBOX_FAILED and a.outcome and a.outcome[1] == "sandbox":
            self._security(aid, "sandbox", msg)
            return ExitRecord(aid, FaultCause.SANDBOX, code, 0, msg)
        if a.outcome is None:
            return ExitRecord(aid, FaultCause.EXCEPTION, code, 0, "exited without a report")
        status, cause, msg = a.outcome
        if "MemoryError" in msg:
            self._security(aid, "limit", "address-space limit (MemoryError)")
            return ExitRecord(aid, FaultCause.KILLED_FOR_LIMIT, status, 0, msg)
        if status == 0 and cause == "ok":
            return ExitRecord(aid, FaultCause.EXITED, 0, 0, "")
        return ExitRecord(aid, FaultCause.EXCEPTION, status, 0, msg)

    def _release_uid(self, uid: int) -> None:
        if uid:
            self._free_uids.append(uid)
