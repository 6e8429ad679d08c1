"""The worker executor: N processes, each driving many trusted agents (SMP).

The kernel process runs on one core.  To use the others, trusted agents can
be placed in *worker* processes (default: one per core), each of which runs
the same driver the kernel uses in-process - a loop that ``send``s a syscall
result into an agent's coroutine and takes back its next trap - for hundreds
or thousands of agents at once.  All of a worker's agents share one socket:
frames carry the agent id (``[agent, seq, sysno, args]``, see
:mod:`aios.abi.wire`), and a worker batches every trap produced in one
pass over its ready agents into a single write.

Placement is the pure :class:`Placement`: a new agent goes to the worker with
the fewest agents.  Moving agents is limited by what Python can move: a
coroutine that has started cannot be serialised, so only *records* of agents
that have not yet begun executing migrate.  Workers start agents lazily, at
most ``START_BATCH`` per pass, so after a burst of spawns the queues are
where rebalancing has something to move: :meth:`WorkerExecutor.rebalance`
asks overloaded workers to hand back queued records (``EVICT`` ->
``RECORD``) and re-places them.  An agent already running stays where it is
until it exits.

Workers are trusted code (they host trusted agents), but the kernel still
checks that every frame from worker *i* names an agent placed on *i*; a
worker that breaks protocol is killed and its agents reported as faulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import os
import select
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aios.abi import wire
from aios.abi.errors import AIOSError, NoSuchAgent, ProtocolError, from_code
from aios.abi.faults import ExecutorKind, ExitRecord, FaultCause, SecurityEvent, Sink, fault_text
from aios.abi.wire import FrameDecoder, Kind
from aios.sandbox.channel import MuxChannel
from aios.sandbox.process import AgentSpec, Protections

START_BATCH = 256


# -- placement (pure) ---------------------------------------------------------------------


@dataclass(slots=True)
class Placement:
    """Which worker hosts which agent; least-loaded placement and rebalance plans."""

    n: int
    where: dict[int, int] = field(default_factory=dict)
    load: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("need at least one worker")
        self.load = [0] * self.n

    def place(self, agent: int, exclude: int | None = None) -> int:
        best = min(
            (i for i in range(self.n) if i != exclude), key=lambda i: (self.load[i], i), default=0
        )
        self.where[agent] = best
        self.load[best] += 1
        return best

    def remove(self, agent: int) -> int | None:
        w = self.where.pop(agent, None)
        if w is not None:
            self.load[w] -= 1
        return w

    def plan(self, movable: dict[int, list[int]], tolerance: int = 1) -> list[tuple[int, int]]:
        """Agents to evict, as (agent, from_worker), so loads end within ``tolerance``."""
        load = list(self.load)
        out: list[tuple[int, int]] = []
        queues = {w: list(a) for w, a in movable.items()}
        while True:
            hi = max(range(self.n), key=lambda i: load[i])
            lo = min(range(self.n), key=lambda i: load[i])
            if load[hi] - load[lo] <= tolerance or not queues.get(hi):
                return out
            agent = queues[hi].pop()
            out.append((agent, hi))
            load[hi] -= 1
            load[lo] += 1


# -- inside a worker process -----------------------------------------------------------------


class _WorkerLoop:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(Kind.REPLY, mux=True)
        self.coros: dict[int, Coroutine[Any, Any, Any]] = {}
        self.seqs: dict[int, int] = {}
        self.queued: deque[tuple[int, str, tuple[Any, ...]]] = deque()
        self.queued_ids: set[int] = set()
        self.out: list[bytes] = []
        self.rbuf = bytearray(1 << 20)  # reused: recv(n) would allocate n bytes per call
        self.rview = memoryview(self.rbuf)

    def emit_exit(self, aid: int, status: int, cause: str, message: str) -> None:
        self.coros.pop(aid, None)
        self.seqs.pop(aid, None)
        self.decoder.forget(aid)
        self.out.append(
            wire.encode_frame((aid, 0, int(wire.Control.EXIT), (status, cause, message[:2048])))
        )

    def step(self, aid: int, value: Any = None, error: BaseException | None = None) -> None:
        coro = self.coros[aid]
        while True:
            try:
                trap = coro.send(value) if error is None else coro.throw(error)
            except StopIteration:
                self.emit_exit(aid, 0, "ok", "")
                return
            except AIOSError as exc:
                self.emit_exit(aid, 1, "error", fault_text(exc, f"{exc.name}: {exc.message}"))
                return
            except Exception as exc:
                self.emit_exit(aid, 1, "exception", fault_text(exc))
                return
            if type(trap) is not tuple or len(trap) != 2 or type(trap[0]) is not int:
                from aios.abi.errors import InvalidArgument

                value, error = (
                    None,
                    InvalidArgument(f"agent yielded {type(trap).__name__}, not a trap"),
                )
                continue
            seq = self.seqs.get(aid, 0) + 1
            try:
                frame = wire.encode_mux_request(aid, seq, trap[0], trap[1])
            except ProtocolError as exc:
                value, error = None, exc
                continue
            self.seqs[aid] = seq
            self.decoder.expect(seq, aid)
            self.out.append(frame)
            return

    def start_some(self) -> None:
        for _ in range(min(START_BATCH, len(self.queued))):
            aid, entry, args = self.queued.popleft()
            self.queued_ids.discard(aid)
            mod, _, fn = entry.partition(":")
            try:
                coro = getattr(importlib.import_module(mod), fn)(*args)
            except Exception as exc:
                self.emit_exit(aid, 1, "exception", f"cannot start {entry}: {exc}")
                continue
            self.coros[aid] = coro
            self.step(aid)

    def control(self, aid: int, op: int, args: Any) -> None:
        if op == wire.Control.SPAWN:
            entry, cargs, paths = args
            for p in paths:
                if p not in sys.path:
                    sys.path.insert(0, p)
            self.queued.append((aid, entry, tuple(cargs)))
            self.queued_ids.add(aid)
        elif op == wire.Control.KILL:
            if aid in self.queued_ids:
                self.queued_ids.discard(aid)
                self.queued = deque(q for q in self.queued if q[0] != aid)
                self.emit_exit(aid, 1, "killed", "killed before start")
            elif aid in self.coros:
                self.coros[aid].close()
                self.emit_exit(aid, 1, "killed", "killed")
        elif op == wire.Control.EVICT:
            rec: Any = None
            if aid in self.queued_ids:
                for q in self.queued:
                    if q[0] == aid:
                        rec = [q[1], list(q[2])]
                self.queued_ids.discard(aid)
                self.queued = deque(q for q in self.queued if q[0] != aid)
            self.out.append(wire.encode_frame((aid, 0, int(wire.Control.RECORD), (rec,))))

    def run(self) -> None:
        while True:
            if self.queued:
                self.start_some()
            if self.out:
                data, self.out = b"".join(self.out), []
                self.sock.sendall(data)
            if self.queued:
                r, _, _ = select.select([self.sock], [], [], 0)
                if not r:
                    continue
            n = self.sock.recv_into(self.rbuf)
            if not n:
                return
            for f in self.decoder.feed(self.rview[:n]):
                aid, seq, code, payload = f
                if seq == 0:
                    self.control(aid, code, payload)
                elif aid in self.coros:
                    if code:
                        self.step(aid, error=from_code(code, payload))
                    else:
                        self.step(aid, payload)


def worker_main(fd: int) -> None:
    import gc

    sock = socket.socket(fileno=fd)
    gc.freeze()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        _WorkerLoop(sock).run()


# -- kernel side ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    channel: MuxChannel


class WorkerExecutor:
    kind = ExecutorKind.WORKER

    def __init__(self, sink: Sink, *, workers: int | None = None, scrub_env: bool = True) -> None:
        self.sink = sink
        self.scrub_env = scrub_env  # False only for the security mutants (confinement.weaken_for_tests)
        self.n = workers or os.cpu_count() or 1
        self.placement = Placement(self.n)
        self.workers: list[_Worker] = []
        self.specs: dict[int, AgentSpec] = {}
        self.started: set[int] = set()
        self._evicting: dict[int, asyncio.Future[Any]] = {}

    async def start(self) -> None:
        from aios.sandbox.environment import agent_environment

        env = agent_environment(scrub=self.scrub_env)  # empty plus the allowlist: no secrets
        for i in range(self.n):
            ours, theirs = socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-m", "aios.sandbox.worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, close_fds=True,
            )  # fmt: skip
            theirs.close()
            chan = await MuxChannel.open(ours, functools.partial(self._on_trap, i),
                on_control=functools.partial(self._on_control, i),
                on_error=functools.partial(self._on_worker_error, i),
                on_close=functools.partial(self._on_worker_error, i, ProtocolError("worker exited")),
            )  # fmt: skip
            self.workers.append(_Worker(i, proc, chan))

    async def spawn(self, spec: AgentSpec, *, pin: int | None = None) -> int:
        """Place on the least-loaded worker (or on worker ``pin``); returns the worker index."""
        if spec.agent_id in self.specs:
            raise AIOSError(f"agent {spec.agent_id} already placed")
        if pin is not None:
            if not 0 <= pin < self.n:
                raise NoSuchAgent(f"no worker {pin}")
            self.placement.where[spec.agent_id] = pin
            self.placement.load[pin] += 1
            w = pin
        else:
            w = self.placement.place(spec.agent_id)
        self.specs[spec.agent_id] = spec
        self._send_spawn(w, spec)
        return w

    def _send_spawn(self, w: int, spec: AgentSpec) -> None:
        self.workers[w].channel.control(
            spec.agent_id, wire.Control.SPAWN, (spec.entry, list(spec.args), list(spec.code_paths))
        )

    def worker_of(self, agent_id: int) -> int | None:
        return self.placement.where.get(agent_id)

    def deliver(self, agent_id: int, seq: int, errno: int, result: Any) -> None:
        w = self.placement.where.get(agent_id)
        if w is not None:
            self.workers[w].channel.reply(agent_id, seq, errno, result)

    def kill(self, agent_id: int, cause: FaultCause = FaultCause.KILLED) -> None:
        w = self.placement.where.get(agent_id)
        if w is None:
            raise NoSuchAgent(f"no worker agent {agent_id}")
        self.workers[w].channel.control(agent_id, wire.Control.KILL, ())

    def protections(self, agent_id: int) -> Protections | None:
        return Protections(missing=("trusted",)) if agent_id in self.specs else None

    async def rebalance(self, tolerance: int = 1) -> list[tuple[int, int, int]]:
        """Move not-yet-started agents off overloaded workers. Returns (agent, from, to) moves."""
        movable: dict[int, list[int]] = {}
        for aid, w in self.placement.where.items():
            if aid not in self.started:
                movable.setdefault(w, []).append(aid)
        moves: list[tuple[int, int, int]] = []
        loop = asyncio.get_running_loop()
        plan = self.placement.plan(movable, tolerance)
        futs: dict[int, asyncio.Future[Any]] = {}
        for aid, src in plan:  # all evictions go out in one batch
            futs[aid] = self._evicting[aid] = loop.create_future()
            self.workers[src].channel.control(aid, wire.Control.EVICT, ())
        for aid, src in plan:
            rec = await futs[aid]
            if rec is None:
                continue  # it started meanwhile: stays
            self.placement.remove(aid)
            self.workers[src].channel.forget(aid)
            dst = self.placement.place(aid, exclude=src)
            self._send_spawn(dst, self.specs[aid])
            moves.append((aid, src, dst))
        return moves

    async def close(self) -> None:
        for w in self.workers:
            w.channel._on_close = None
            w.channel.close()
        for w in self.workers:
            try:
                await asyncio.wait_for(asyncio.to_thread(w.proc.wait), 5)
            except TimeoutError:
                w.proc.kill()
                w.proc.wait()

    # -- callbacks ---------------------------------------------------------------------------
    def _on_trap(self, w: int, aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        if self.placement.where.get(aid) != w:
            self._on_worker_error(
                w, ProtocolError(f"worker {w} sent a trap for agent {aid} it does not host")
            )
            return
        self.started.add(aid)
        self.sink.trap(aid, seq, sysno, args)

    def _on_control(self, w: int, aid: int, op: int, args: tuple[Any, ...]) -> None:
        if op == wire.Control.RECORD:
            fut = self._evicting.pop(aid, None)
            if fut is not None and not fut.done():
                fut.set_result(args[0] if args else None)
            return
        if op == wire.Control.EXIT and self.placement.where.get(aid) == w:
            status, cause, message = args
            self.placement.remove(aid)
            self.specs.pop(aid, None)
            self.started.discard(aid)
            self.workers[w].channel.forget(aid)
            fc = {"ok": FaultCause.EXITED, "killed": FaultCause.KILLED}.get(
                str(cause), FaultCause.EXCEPTION
            )
            self.sink.exited(ExitRecord(aid, fc, int(status), 0, str(message)))
            return
        self._on_worker_error(w, ProtocolError(f"unexpected control op {op} for agent {aid}"))

    def _on_worker_error(self, w: int, exc: ProtocolError) -> None:
        victims = [aid for aid, where in self.placement.where.items() if where == w]
        if not victims and exc.message == "worker exited":
            return
        self.sink.security(SecurityEvent(-1, "protocol", f"worker {w}: {exc.message}", self.kind))
        with contextlib.suppress(Exception):
            self.workers[w].proc.kill()
        for aid in victims:
            self.placement.remove(aid)
            self.specs.pop(aid, None)
            self.sink.exited(ExitRecord(aid, FaultCause.PROTOCOL, 1, 0, exc.message))


if __name__ == "__main__":
    worker_main(int(sys.argv[1]))
