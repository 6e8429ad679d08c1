"""Running workflows under asyncio: handlers, timers, approvals, resources, checkpoints.

:class:`WorkflowDriver` carries out what a
:class:`~aios.lib.orchestration.runtime.WorkflowRun` commands:

* a task attempt becomes an asyncio task running the named **handler**
  ``handler(ctx, args)`` (in the kernel: a call to a skill agent, a tool, the
  LLM device); what it returns, or the :mod:`aios.abi.errors` error it raises, goes
  back to the core;
* a step that takes a **resource** (a device request, a slot, a lock)
  registers its release with ``ctx.hold(name, release)``.  Whatever way the
  step ends (result, error, timeout, cancellation), the driver releases every
  lease the handler did not release itself, so a cancelled workflow leaves no
  device request behind.  Cancelling a step cancels its asyncio task first:
  a handler streaming from a model device closes the stream, which stops
  generation on the device (the llm library's cancellation);
* timers sleep with an injected ``sleep`` (asyncio's by default; a virtual
  clock's in tests and in the kernel);
* approvals wait for :meth:`WorkflowDriver.approve` (``aios approve``);
* checkpoints go to a :class:`CheckpointSink`.  The kernel module will back it
  with the kernel journal's agent checkpoints (``Journal.checkpoint(aid,
  state)`` and ``commit()``); :class:`MemoryCheckpoints` keeps them in memory.

``run(..., resume=True)`` loads the run's last checkpoint and continues it.
If the driver itself is cancelled (the process is going down), its steps are
stopped and their leases released but the run is *not* marked cancelled: the
last checkpoint stays resumable.  :meth:`WorkflowDriver.cancel` is the
deliberate cancellation that ends a run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aios.abi.errors import AgentFault, AIOSError, AlreadyExists, InvalidArgument, NoSuchObject
from aios.lib.orchestration.runtime import (
    NS,
    ArmTimer,
    AwaitApproval,
    CancelApproval,
    CancelTask,
    Command,
    Finish,
    SaveCheckpoint,
    StartTask,
    Status,
    TraceEntry,
    WorkflowRun,
)
from aios.lib.orchestration.workflow import Workflow


class CheckpointSink(Protocol):
    def save(self, run_id: str, state: Mapping[str, Any]) -> Any: ...

    def load(self, run_id: str) -> Mapping[str, Any] | None: ...


class MemoryCheckpoints:
    """Checkpoints in a dictionary (the last one per run, and how many were saved)."""

    def __init__(self) -> None:
        self.states: dict[str, Mapping[str, Any]] = {}
        self.saves = 0

    def save(self, run_id: str, state: Mapping[str, Any]) -> None:
        self.states[run_id] = state
        self.saves += 1

    def load(self, run_id: str) -> Mapping[str, Any] | None:
        return self.states.get(run_id)


@dataclass(slots=True)
class Lease:
    name: str
    release: Callable[[], Any]
    released: bool = False
    by_driver: bool = False


class StepContext:
    """What a handler gets: who it is, and where to register what it holds."""

    def __init__(self, run_id: str, key: str, node: str, attempt: int) -> None:
        self.run_id, self.key, self.node, self.attempt = run_id, key, node, attempt
        self.leases: list[Lease] = []

    def hold(self, name: str, release: Callable[[], Any]) -> Lease:
        """Register a resource; ``release()`` (sync or async) runs when the step ends."""
        lease = Lease(name, release)
        self.leases.append(lease)
        return lease

    async def release(self, lease: Lease, by_driver: bool = False) -> None:
        if lease.released:
            return
        lease.released = True
        lease.by_driver = by_driver
        out = lease.release()
        if inspect.isawaitable(out):
            await out

    async def release_all(self) -> None:
        for lease in self.leases:
            await self.release(lease, by_driver=True)


Handler = Callable[[StepContext, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    run_id: str
    status: Status
    output: Any
    error: AIOSError | None
    trace: tuple[TraceEntry, ...]
    state: Mapping[str, Any]


@dataclass(slots=True, eq=False)
class _Active:
    core: WorkflowRun
    queue: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    tasks: dict[str, tuple[int, asyncio.Task[None], StepContext]] = field(default_factory=dict)
    timers: set[asyncio.Task[None]] = field(default_factory=set)
    finish: Finish | None = None
    traced: int = 0


class WorkflowDriver:
    """Runs workflows with named handlers (see the module essay)."""

    def __init__(self, handlers: Mapping[str, Handler], *,
                 checkpoints: CheckpointSink | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 on_trace: Callable[[str, TraceEntry], None] | None = None) -> None:
        self.handlers = dict(handlers)
        self.checkpoints = checkpoints
        self.sleep = sleep
        self.on_trace = on_trace
        self.runs: dict[str, _Active] = {}
        self.released: list[tuple[str, str, bool]] = []  # (step key, lease, by the driver)

    # -- outside control ------------------------------------------------------------------

    def approve(self, run_id: str, key: str, approved: bool, by: str = "",
                note: str = "") -> None:
        act = self._active(run_id)
        if key not in act.core.pending_approvals:
            raise NoSuchObject(f"run {run_id!r} has no pending approval {key!r}")
        act.queue.put_nowait(("approve", key, approved, by, note))

    def cancel(self, run_id: str, reason: str = "cancelled") -> None:
        self._active(run_id).queue.put_nowait(("cancel", reason))

    def pending_approvals(self, run_id: str) -> dict[str, str]:
        return self._active(run_id).core.pending_approvals

    def running(self, run_id: str) -> list[str]:
        return sorted(self._active(run_id).tasks)

    def _active(self, run_id: str) -> _Active:
        act = self.runs.get(run_id)
        if act is None:
            raise NoSuchObject(f"no workflow run {run_id!r} is active")
        return act

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, wf: Workflow, inputs: Mapping[str, Any] | None = None, *,
                  run_id: str, resume: bool = False) -> WorkflowResult:
        missing = sorted({n.run for n in wf.nodes().values() if n.kind == "task"}
                         - set(self.handlers))
        if missing:
            raise NoSuchObject(f"workflow {wf.name!r} runs handlers nobody provides: "
                               f"{', '.join(missing)}")
        if run_id in self.runs:
            raise AlreadyExists(f"workflow run {run_id!r} is already active")
        ckpt = None
        if resume:
            if self.checkpoints is None:
                raise InvalidArgument("resuming needs a checkpoint sink")
            ckpt = self.checkpoints.load(run_id)
            if ckpt is None:
                raise NoSuchObject(f"no checkpoint for workflow run {run_id!r}")
        core = WorkflowRun(wf, inputs, checkpoint=ckpt)
        act = _Active(core)
        self.runs[run_id] = act
        try:
            await self._apply(run_id, act, core.start())
            while act.finish is None:
                ev = await act.queue.get()
                await self._apply(run_id, act, self._deliver(act.core, ev))
        except asyncio.CancelledError:
            await self._stop_all(act)  # a crash or shutdown: the checkpoint stays resumable
            raise
        finally:
            for t in act.timers:
                t.cancel()
            self.runs.pop(run_id, None)
        assert act.finish is not None
        return WorkflowResult(run_id, act.finish.status, act.finish.output, act.finish.error,
                              tuple(core.trace), core.state())

    @staticmethod
    def _deliver(core: WorkflowRun, ev: tuple[Any, ...]) -> list[Command]:
        kind = ev[0]
        if kind == "done":
            return core.task_done(ev[1], ev[2], ev[3])
        if kind == "failed":
            return core.task_failed(ev[1], ev[2], ev[3])
        if kind == "timer":
            return core.timer(ev[1], ev[2], ev[3])
        if kind == "approve":
            try:
                return core.approve(ev[1], ev[2], ev[3], ev[4])
            except NoSuchObject:
                return []  # decided twice, or cancelled meanwhile
        return core.cancel(ev[1])

    async def _apply(self, run_id: str, act: _Active, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, StartTask):
                ctx = StepContext(run_id, c.key, c.node, c.attempt)
                t = asyncio.create_task(self._task(act, c, ctx))
                act.tasks[c.key] = (c.attempt, t, ctx)
            elif isinstance(c, CancelTask):
                entry = act.tasks.get(c.key)
                if entry is not None and entry[0] == c.attempt:
                    await self._stop(act, c.key)
            elif isinstance(c, ArmTimer):
                act.timers.add(asyncio.create_task(self._timer(act, c)))
            elif isinstance(c, SaveCheckpoint):
                if self.checkpoints is not None:
                    out = self.checkpoints.save(run_id, c.state)
                    if inspect.isawaitable(out):
                        await out
            elif isinstance(c, Finish):
                act.finish = c
                await self._stop_all(act)
            elif isinstance(c, AwaitApproval | CancelApproval):
                pass  # visible through pending_approvals and the trace
        if self.on_trace is not None:
            for e in act.core.trace[act.traced:]:
                self.on_trace(run_id, e)
        act.traced = len(act.core.trace)

    async def _task(self, act: _Active, c: StartTask, ctx: StepContext) -> None:
        handler = self.handlers[c.run]
        try:
            value = await handler(ctx, dict(c.args))
        except asyncio.CancelledError:
            raise
        except AIOSError as e:
            act.queue.put_nowait(("failed", c.key, c.attempt, e))
        except Exception as e:  # the handler's own bug: a fault of that step
            act.queue.put_nowait(("failed", c.key, c.attempt,
                                  AgentFault(f"handler {c.run!r} raised {e!r}")))
        else:
            act.queue.put_nowait(("done", c.key, c.attempt, value))
        finally:
            await asyncio.shield(self._release(ctx))
            entry = act.tasks.get(c.key)
            if entry is not None and entry[2] is ctx:
                del act.tasks[c.key]

    async def _release(self, ctx: StepContext) -> None:
        for lease in ctx.leases:
            if not lease.released:
                await ctx.release(lease, by_driver=True)
            self.released.append((ctx.key, lease.name, lease.by_driver))

    async def _stop(self, act: _Active, key: str) -> None:
        entry = act.tasks.pop(key, None)
        if entry is None:
            return
        _, t, _ = entry
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)  # its finally releases the leases

    async def _stop_all(self, act: _Active) -> None:
        for key in list(act.tasks):
            await self._stop(act, key)

    async def _timer(self, act: _Active, c: ArmTimer) -> None:
        await self.sleep(c.delay_ns / NS)
        act.queue.put_nowait(("timer", c.key, c.attempt, c.purpose))
