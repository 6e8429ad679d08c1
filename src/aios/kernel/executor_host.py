"""Agents outside the kernel process: the kernel side of the trap protocol.

An out-of-process agent (isolated process, worker process, Wasm store, or a
console client on the kernel socket) traps exactly like an in-process one,
except that each trap arrives as a frame ``(seq, sysno, args)`` and the
answer leaves as ``(seq, errno, result)``.  This module turns frames into
the same handler calls the in-process executor makes:

* :meth:`RemoteAgents.trap` dispatches one frame for an agent.  If the
  handler completes, the reply goes out at once; if it parks the agent
  (``BLOCK``), the frame's ``seq`` is remembered and the reply goes out when
  the kernel wakes the agent (:meth:`Link.deliver`).
* One trap is in progress per agent: frames that arrive while the agent is
  blocked (pipelining) are queued in order and dispatched when it wakes, so
  results come back in request order.
* Results are plain data on the wire: a :class:`~aios.abi.message.Message`
  becomes ``{"__aios_message__": [...]}`` (the SDK turns it back), tuples
  become arrays; a memoryview is never sent (``MEM_VIEW`` refuses remote
  callers).

A remote agent is never on the kernel's run queue: its own process (or the
Wasm executor's slices) gives it CPU, under the host's cgroup CPU weight or
Wasm fuel.  In the state machine it is RUNNING while it computes and
BLOCKED while a syscall waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.errors import AIOSError, Category, InvalidArgument, KernelPanic, NoSuchSyscall
from aios.abi.faults import ProcessQuota, Sink
from aios.abi.message import to_wire
from aios.abi.rights import Rights
from aios.kernel.agents import Agent, AgentState
from aios.kernel.registry import ERRNO_SHIFT
from aios.kernel.waits import BLOCK

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

Reply = Callable[[int, int, Any], None]


class Link:
    """What the kernel keeps on ``agent.executor`` for a remote agent."""

    __slots__ = ("blocked_seq", "inbox", "on_terminate", "reply")

    def __init__(self, reply: Reply, on_terminate: Callable[[Agent], None]) -> None:
        self.reply = reply
        self.on_terminate = on_terminate
        self.blocked_seq = 0
        self.inbox: deque[tuple[int, int, tuple[Any, ...]]] = deque()

    # called by Kernel.deliver when a parked remote agent is woken
    def deliver(self, a: Agent, value: Any, exc: BaseException | None) -> None:
        seq, self.blocked_seq = self.blocked_seq, 0
        if not seq:
            return
        if exc is None:
            self.reply(seq, 0, to_wire(value))
        elif isinstance(exc, AIOSError):
            self.reply(seq, exc.code, exc.message)
        else:
            self.reply(seq, KernelPanic.code, repr(exc))

    # called by Kernel.terminate
    def terminate(self, a: Agent) -> None:
        self.inbox.clear()
        self.on_terminate(a)


class RemoteAgents:
    """Dispatches frames from remote agents into the syscall table."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel

    def attach(self, a: Agent, reply: Reply, on_terminate: Callable[[Agent], None], kind: str) -> Link:
        """Make ``a`` (an EMBRYO record with a capability space) a running remote agent."""
        link = Link(reply, on_terminate)
        a.executor = link
        a.kind = kind
        self.k.agents.transition(a, "start")
        self.k.agents.transition(a, "dispatch")
        return link

    def trap(self, a: Agent, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        link: Link = a.executor
        if a.status is not AgentState.RUNNING or link.blocked_seq:
            link.inbox.append((seq, sysno, args))
            return
        self._dispatch(a, link, seq, sysno, args)
        # the agent may have been woken by its own trap's side effects; drain in order
        while link.inbox and a.status is AgentState.RUNNING and not link.blocked_seq:
            self._dispatch(a, link, *link.inbox.popleft())

    def resume_inbox(self, a: Agent) -> None:
        link: Link = a.executor
        while link.inbox and a.status is AgentState.RUNNING and not link.blocked_seq:
            self._dispatch(a, link, *link.inbox.popleft())

    def _dispatch(self, a: Agent, link: Link, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        k = self.k
        table = k.table
        a.syscalls += 1
        k.stats["syscalls"] += 1
        if type(sysno) is not int or not 0 <= sysno < len(table) or table[sysno] is None:
            e: AIOSError = NoSuchSyscall(f"no syscall {sysno!r}")
            link.reply(seq, e.code, e.message)
            return
        h = table[sysno]
        assert h is not None
        k.current = a
        try:
            val = h(k, a, *args)
        except AIOSError as err:
            if err.category is Category.CAPABILITY:
                k.violation(a, sysno, err)
            self._observe(a, sysno, err.code)
            if not self._held(a, link, seq, None, err):
                link.reply(seq, err.code, err.message)
            return
        except Exception as err:
            panic = k.handler_failure(h, a, args, err)
            link.reply(seq, panic.code, panic.message)
            return
        finally:
            k.current = None
        self._observe(a, sysno, 0)
        if val is not BLOCK and self._held(a, link, seq, val, None):
            return
        if val is BLOCK:
            if a.status is AgentState.BLOCKED:
                link.blocked_seq = seq
            elif a.status is AgentState.READY:  # yield: nothing to wait for
                k.agents.transition(a, "dispatch")
                link.reply(seq, 0, None)
            # exited / killed itself: no reply; the stream is closed by terminate
            return
        link.reply(seq, 0, to_wire(val))

    def _held(self, a: Agent, link: Link, seq: int, val: Any, exc: AIOSError | None) -> bool:
        """Backpressure: hold the reply (and so the agent) while it is throttled.
        A Wasm host call cannot wait, so Wasm agents are never held."""
        k = self.k
        if not k.throttled or a.aid not in k.throttled or a.kind == "wasm" or a.status is not AgentState.RUNNING:
            return False
        link.blocked_seq = seq
        k.hold(a, val, exc)
        return True

    def _observe(self, a: Agent, sysno: int, errno: int) -> None:
        reg = self.k.registry
        counts = reg.syscall_counts
        if counts is not None:
            counts[sysno] += 1
            if errno and reg.syscall_errors is not None:
                key = errno << ERRNO_SHIFT | sysno
                reg.syscall_errors[key] = reg.syscall_errors.get(key, 0) + 1
        obs = self.k.observer
        if obs is not None:
            obs(a, sysno, errno)


class ExecutorHost:
    """Starts agents in the out-of-process executors and connects them to the kernel.

    Executors are created on first use (a zygote, worker processes or a Wasm
    engine costs something to start).  Each speaks the
    :class:`aios.sandbox.executor.Executor` contract; this class is the
    :class:`~aios.sandbox.executor.Sink` they report to.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.remote = RemoteAgents(kernel)
        self._execs: dict[str, Any] = {}
        self._starting: dict[str, Any] = {}
        self.live: set[int] = set()  # remote agents alive, and spawns in flight
        self._tasks: set[Any] = set()
        self._rebalancing = False
        self.fuel: dict[int, int] = {}  # Wasm agents: fuel consumed (their CPU time)
        # mechanisms switched off by aios.kernel.confinement.weaken_for_tests (tests only)
        self.test_disable: frozenset[str] = frozenset()

    def usage(self, aid: int) -> dict[str, Any] | None:
        """What a Wasm agent consumed (its fuel is its CPU time), for its exit record."""
        fuel = self.fuel.get(aid)
        if fuel is None or "wasm" not in self.k.registry.executors:
            return None
        return self.k.registry.executors["wasm"].usage(fuel)

    def forget(self, aid: int) -> None:
        """Agent ``aid`` was reaped: drop what the host kept about it."""
        self.live.discard(aid)
        self.fuel.pop(aid, None)

    def busy(self) -> int:
        """How many remote agents could still trap (the kernel is not idle while > 0)."""
        return len(self.live)

    def sink(self) -> Sink:
        return Sink(trap=self._trap, exited=self._exited, security=self._security)

    async def executor(self, kind: str) -> Any:
        ex = self._execs.get(kind)
        if ex is not None:
            return ex
        import asyncio

        fut = self._starting.get(kind)
        if fut is None:
            fut = asyncio.ensure_future(self._start(kind))
            self._starting[kind] = fut
        return await fut

    async def _start(self, kind: str) -> Any:
        ex = self.k.registry.executors[kind].create(self.sink(), self.test_disable)
        await ex.start()
        self._execs[kind] = ex
        return ex

    def start(self, a: Agent, done: Callable[[AIOSError | None], None]) -> None:
        """Start ``a`` (a record made by ``lifecycle.spawn``) in the executor its
        confinement names; ``done`` is called with None or the error."""
        import asyncio

        kind = a.confinement.executor
        spec_kw = self.spec_for(a)
        task = asyncio.ensure_future(self._spawn(a, kind, a.entry, self.k.boot_info(a), spec_kw, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spec_for(self, a: Agent) -> dict[str, Any]:
        """The sandbox an executor builds for ``a``: its confinement record, nothing else."""
        from aios.kernel.confinement import of

        c = of(self.k, a)  # narrowed to what its authority still holds
        home = str(self.k.home / "agents" / str(a.aid)) if self.k.home is not None else ""
        return {
            "home": home,
            "code_paths": c.code_paths,
            "quota": ProcessQuota(memory_bytes=c.memory, cpu_weight=min(c.cpu_weight, 10000),
                                  cpu_seconds=c.cpu_seconds, processes=c.processes),
            "access_net": c.network,
            "access_fs": c.fs_read,
            "access_fs_write": bool(c.rights & Rights.ACCESS_FS and c.rights & Rights.WRITE),
        }

    async def _spawn(self, a: Agent, kind: str, entry: str, info: dict[str, Any], spec_kw: dict[str, Any],
                     done: Callable[[AIOSError | None], None]) -> None:
        aid = a.aid
        self.live.add(aid)
        factory: Any = None
        try:
            factory = self.k.registry.executors[kind]
            ex = await self.executor(kind)
            spec = factory.spec(aid, entry, info, spec_kw)
            if not a.alive:
                raise InvalidArgument("agent was killed before it started")
            self.remote.attach(a, lambda seq, errno, res: ex.deliver(aid, seq, errno, res),
                               lambda _a: self._kill(ex, aid), kind)
            await ex.spawn(spec)
        except AIOSError as e:
            self._fail(a, e, done)
            return
        except Exception as e:
            self._fail(a, InvalidArgument(f"{kind} executor could not start the agent: {e}"), done)
            return
        done(None)
        if factory.sliced:
            self.k.call_at(self.k.now(), self._run_wasm, ex, aid)

    def _fail(self, a: Agent, e: AIOSError, done: Callable[[AIOSError | None], None]) -> None:
        self.live.discard(a.aid)
        if a.alive:
            a.fault = str(e)
            self.k.kill(a, reason=f"start failed: {e.message}")
        done(e)

    def _run_wasm(self, ex: Any, aid: int) -> None:
        """Run a Wasm agent's ``aios_main`` within one slice of fuel and wall time."""
        a = self.k.find(aid)
        if a is None or not a.alive:
            return
        res = ex.run_slice(aid)
        # Wasm agents are not on the run queue: fuel is their CPU accounting
        self.fuel[aid] = self.fuel.get(aid, 0) + int(res.fuel_used)

    def _kill(self, ex: Any, aid: int) -> None:
        self.live.discard(aid)
        try:
            ex.kill(aid)
        except AIOSError:
            pass
        if ex is self._execs.get("worker"):
            self._rebalance_soon()

    # -- the sink ------------------------------------------------------------------

    def _trap(self, aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        a = self.k.find(aid)
        if a is None or not a.alive or a.executor is None:
            return
        self.remote.trap(a, seq, sysno, args)
        if a.kind == "wasm" and a.status is AgentState.BLOCKED and a.wait is not None:
            # a Wasm host call cannot wait: the executor answers WouldBlock; drop the wait
            link: Link = a.executor
            link.blocked_seq = 0
            self.k.end_wait(a.wait)
            self.k.agents.transition(a, "wake")
            self.k.agents.transition(a, "dispatch")

    def _rebalance_soon(self) -> None:
        """Load changed on the workers: move agents that have not started yet (debounced)."""
        import asyncio

        ex = self._execs.get("worker")
        if ex is None or self._rebalancing:
            return
        self._rebalancing = True

        async def go() -> None:
            try:
                moves = await ex.rebalance()
                if moves:
                    self.k.publish("kernel.rebalanced", 0, moves=[list(m) for m in moves])
            except Exception as e:
                self.k.publish("kernel.rebalance_failed", 0, error=repr(e))
            finally:
                self._rebalancing = False

        task = asyncio.ensure_future(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _exited(self, rec: Any) -> None:
        self.live.discard(rec.agent_id)
        self.k.kick()
        a = self.k.find(rec.agent_id)
        if a is not None and a.kind == "worker":
            self._rebalance_soon()
        if a is None or not a.alive:
            return
        a.executor = None  # the process is gone; nothing to tell it
        if rec.failed:
            cause = getattr(rec.cause, "value", str(rec.cause))
            self.k.publish("agent.fault", a.aid, agent=a.aid, name=a.name, cause=cause,
                           error=rec.message, signal=rec.signal, status=rec.status)
            a.fault = f"{cause}: {rec.message}" if rec.message else cause
            self.k.terminate(a, "faulted")
        else:
            self.k.exit(a, rec.status)

    def _security(self, ev: Any) -> None:
        self.k.publish("security.sandbox", ev.agent_id, agent=ev.agent_id, kind=ev.kind, detail=ev.detail,
                       executor=str(ev.executor), trusted=ev.trusted)

    def protections(self, aid: int) -> Any:
        for ex in self._execs.values():
            p = ex.protections(aid)
            if p is not None:
                return p
        return None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for ex in list(self._execs.values()):
            try:
                await ex.close()
            except Exception:
                pass
        self._execs.clear()
