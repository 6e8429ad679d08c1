"""The workflow runtime's core: a sans-IO interpreter of workflow trees.

:class:`WorkflowRun` is told what happened (a task finished or failed, a timer
fired, a person approved, someone cancelled) and answers with **commands**
for whoever drives it: start this task attempt, cancel that one, arm a timer,
ask for an approval, save a checkpoint, finish.  It never awaits, sleeps or
reads a clock, so every rule below is tested by calling it, and the same core
runs under asyncio (:mod:`~aios.lib.orchestration.driver`), on a virtual clock,
or inside the kernel's loop.

**Instances.**  A node runs as a frame whose *key* is its id prefixed by the
iteration of every loop around it (``refine[2]/grade``), so each task attempt
and each checkpointed result is named without ambiguity.  Scheduling uses an
explicit agenda, not recursion: a resumed workflow with ten thousand finished
loop iterations replays in a loop, not a ten-thousand-deep call stack.

**Tasks.**  An attempt gets its arguments resolved against the outputs so far
(``${node.path}``, ``${input...}``, ``${iteration}``), and a timer when it has
``timeout_s``.  A failure (or a timeout, which also cancels the attempt)
retries after ``backoff_s * 2**(attempt-1)`` while attempts remain
(``retries`` + 1 in all), then **surfaces**: the error keeps its class and
says which task failed after how many attempts.  Results and failures of an
attempt that is no longer current (timed out, cancelled) are ignored.

**Composition.**  A sequence runs its steps in order; a parallel node fans
out to all its branches and joins when all have finished; when one fails, the
others are cancelled and the parallel node fails.  A branch evaluates its
cases in order against the outputs so far.  A loop runs its body, checks
``until`` after each iteration, and stops at ``max_iterations`` (failing with
``QuotaExceeded``, or exiting with the last output when ``on_exhausted`` is
``exit``).  An approval waits for :meth:`WorkflowRun.approve`; a rejection
fails it with ``Vetoed``.

**Cancellation** cancels every running task attempt and pending approval (the
driver stops them and releases what they hold) and ends the run.

**Checkpoints.**  After every step (a task's result or failed attempt, an
approval), a :class:`SaveCheckpoint` carries the run's state as plain data:
the results by key, approvals, attempts used, status.  A run created from
that state **replays** the tree: a task or approval whose key has a result
completes at once with it (no handler runs again), conditions see the same
outputs (the definition's reference rule guarantees it), and execution
continues where the crash stopped it.  A task that was running when the
process died runs again: delivery is at least once, as in every durable
workflow engine; handlers make that harmless with the task key as an
idempotency key.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from aios.abi.errors import (
    AgentFault,
    AIOSError,
    Cancelled,
    IllegalTransition,
    InvalidArgument,
    NoSuchObject,
    QuotaExceeded,
    TimedOut,
    Vetoed,
    from_code,
)
from aios.lib.orchestration.workflow import Node, Workflow, evaluate, resolve

FORMAT: Final = "aios-workflow/1"
NS: Final = 1_000_000_000


class Status(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTask:
    key: str
    node: str
    run: str
    args: Mapping[str, Any]
    attempt: int


@dataclass(frozen=True, slots=True)
class CancelTask:
    key: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ArmTimer:
    key: str
    attempt: int
    purpose: str  # timeout | retry
    delay_ns: int


@dataclass(frozen=True, slots=True)
class AwaitApproval:
    key: str
    node: str
    prompt: str


@dataclass(frozen=True, slots=True)
class CancelApproval:
    key: str


@dataclass(frozen=True, slots=True)
class SaveCheckpoint:
    state: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Finish:
    status: Status
    output: Any = None
    error: AIOSError | None = None


Command = StartTask | CancelTask | ArmTimer | AwaitApproval | CancelApproval | SaveCheckpoint | \
    Finish


@dataclass(frozen=True, slots=True)
class TraceEntry:
    seq: int
    kind: str  # workflow.* task.* branch.chosen loop.* parallel.* approval.*
    key: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "key": self.key, **self.data}


# -- frames ---------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Frame:
    node: Node
    key: str
    parent: _Frame | None
    prefix: str  # what keys of nodes inside it start with
    iteration: int | None  # the innermost loop's iteration
    state: str = "running"  # running | done | failed | cancelled
    output: Any = None
    idx: int = 0  # sequence position / loop iteration
    kids: list[_Frame] = field(default_factory=list)
    attempt: int = 0
    waiting_retry: bool = False

    def inside(self, other: _Frame) -> bool:
        f: _Frame | None = self
        while f is not None:
            if f is other:
                return True
            f = f.parent
        return False


def _plain(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise AgentFault(f"{what} is not plain data: {e}") from None


class WorkflowRun:
    """One run of a workflow; see the module essay."""

    def __init__(self, wf: Workflow, inputs: Mapping[str, Any] | None = None, *,
                 checkpoint: Mapping[str, Any] | None = None) -> None:
        self.wf = wf
        self.inputs = _plain(dict(inputs or {}), "the workflow's input")
        self.status = Status.RUNNING
        self.output: Any = None
        self.error: AIOSError | None = None
        self.results: dict[str, Any] = {}  # task/approval key -> output (checkpointed)
        self.decisions: dict[str, Any] = {}  # approval key -> decision
        self.attempts: dict[str, int] = {}
        self.latest: dict[str, Any] = {}  # node id -> its latest output
        self.trace: list[TraceEntry] = []
        self._restored: dict[str, Any] = {}
        self._restored_decisions: dict[str, Any] = {}
        self._tasks: dict[str, _Frame] = {}
        self._approvals: dict[str, _Frame] = {}
        self._timed: dict[str, _Frame] = {}
        self._agenda: deque[tuple[str, _Frame, _Frame | None]] = deque()
        self._out: list[Command] = []
        self._started = False
        self.root: _Frame | None = None
        if checkpoint is not None:
            self._load(checkpoint)

    # -- checkpoint state ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        err = None if self.error is None else [self.error.code, self.error.message]
        return {"format": FORMAT, "workflow": self.wf.name, "digest": self.wf.digest,
                "inputs": self.inputs, "status": self.status.value,
                "results": dict(self.results), "approvals": dict(self.decisions),
                "attempts": dict(self.attempts), "output": self.output, "error": err}

    def _load(self, st: Mapping[str, Any]) -> None:
        if not isinstance(st, Mapping) or st.get("format") != FORMAT:
            raise InvalidArgument("not a workflow checkpoint")
        if st.get("digest") != self.wf.digest:
            raise InvalidArgument(f"the checkpoint is of another definition of "
                                  f"{st.get('workflow')!r}; resume it with the one it ran")
        if st.get("inputs") != self.inputs:
            raise InvalidArgument("the checkpoint was made with other inputs")
        status = st.get("status")
        if status in (Status.FAILED, Status.CANCELLED):
            raise IllegalTransition(f"the workflow run already ended: {status}")
        self._restored = dict(st.get("results") or {})
        self._restored_decisions = dict(st.get("approvals") or {})
        self.attempts = {str(k): int(v) for k, v in (st.get("attempts") or {}).items()}

    # -- helpers ------------------------------------------------------------------------------

    def _trace(self, kind: str, key: str, **data: Any) -> None:
        self.trace.append(TraceEntry(len(self.trace) + 1, kind, key, data))

    def _scope(self, f: _Frame) -> dict[str, Any]:
        scope: dict[str, Any] = dict(self.latest)
        scope["input"] = self.inputs
        if f.iteration is not None:
            scope["iteration"] = f.iteration
        return scope

    def _checkpoint(self) -> None:
        self._out.append(SaveCheckpoint(self.state()))

    def _flush(self) -> list[Command]:
        while self._agenda:
            what, f, child = self._agenda.popleft()
            if f.state != "running":
                continue
            if what == "enter":
                self._enter(f)
            else:
                assert child is not None
                self._child_done(f, child)
        out, self._out = self._out, []
        return out

    def _child(self, parent: _Frame, node: Node, prefix: str | None = None,
               iteration: int | None = None) -> _Frame:
        pre = parent.prefix if prefix is None else prefix
        it = parent.iteration if iteration is None else iteration
        f = _Frame(node, pre + node.id, parent, pre, it)
        parent.kids.append(f)
        self._agenda.append(("enter", f, None))
        return f

    # -- entry points ---------------------------------------------------------------------------

    def start(self) -> list[Command]:
        if self._started:
            raise IllegalTransition("the run has started")
        self._started = True
        self._trace("workflow.started", self.wf.name, resumed=bool(self._restored))
        self.root = _Frame(self.wf.root, self.wf.root.id, None, "", None)
        self._agenda.append(("enter", self.root, None))
        return self._flush()

    def task_done(self, key: str, attempt: int, output: Any) -> list[Command]:
        f = self._current(key, attempt)
        if f is None:
            return []
        del self._tasks[key]
        try:
            value = _plain(output, f"the output of task {f.node.id!r}")
        except AgentFault as e:
            return self._task_error(f, e)
        self.results[key] = value
        self._trace("task.finished", key, attempt=attempt)
        self._complete(f, value)
        self._checkpoint()
        return self._flush()

    def task_failed(self, key: str, attempt: int, error: AIOSError) -> list[Command]:
        f = self._current(key, attempt)
        if f is None:
            return []
        del self._tasks[key]
        return self._task_error(f, error)

    def timer(self, key: str, attempt: int, purpose: str) -> list[Command]:
        if purpose == "retry":
            f = self._tasks.get(key)
            if f is not None and f.waiting_retry and f.attempt == attempt and \
                    self.status is Status.RUNNING:
                f.waiting_retry = False
                del self._tasks[key]
                self._launch(f)
            return self._flush()
        if purpose != "timeout":
            raise InvalidArgument(f"unknown timer purpose {purpose!r}")
        f = self._timed.get(key)
        if f is None or f.state != "running" or self.status is not Status.RUNNING:
            return []
        secs = f.node.timeout_s
        if f.node.kind == "task":
            if f.attempt != attempt or f.waiting_retry:
                return []
            self._out.append(CancelTask(key, attempt))
            del self._tasks[key]
            self._trace("task.timed_out", key, attempt=attempt, timeout_s=secs)
            return self._task_error(f, TimedOut(
                f"task {f.node.id!r} attempt {attempt} took longer than {secs} s", key=key))
        self._trace(f"{f.node.kind}.timed_out", key, timeout_s=secs)
        self._cancel_inside(f)
        self._fail(f, TimedOut(f"{f.node.kind} {f.node.id!r} took longer than {secs} s",
                               key=key))
        return self._flush()

    def approve(self, key: str, approved: bool, by: str = "", note: str = "") -> list[Command]:
        f = self._approvals.pop(key, None)
        if f is None or self.status is not Status.RUNNING:
            raise NoSuchObject(f"no approval {key!r} is pending")
        decision = {"approved": bool(approved), "by": str(by)[:200], "note": str(note)[:2000]}
        self.decisions[key] = decision
        self._timed.pop(key, None)
        if approved:
            self.results[key] = decision
            self._trace("approval.approved", key, by=decision["by"])
            self._complete(f, decision)
        else:
            self._trace("approval.rejected", key, by=decision["by"])
            self._fail(f, Vetoed(f"approval {f.node.id!r} was rejected"
                                 + (f" by {by}" if by else "") + (f": {note}" if note else ""),
                                 key=key))
        self._checkpoint()
        return self._flush()

    def cancel(self, reason: str = "cancelled") -> list[Command]:
        if self.status is not Status.RUNNING:
            return []
        if self.root is not None:
            self._cancel_inside(self.root)
        self.status = Status.CANCELLED
        self.error = Cancelled(f"workflow {self.wf.name!r}: {reason}")
        self._trace("workflow.cancelled", self.wf.name, reason=reason)
        self._agenda.clear()
        self._checkpoint()
        self._out.append(Finish(Status.CANCELLED, None, self.error))
        return self._flush()

    @property
    def running_tasks(self) -> list[str]:
        return sorted(k for k, f in self._tasks.items() if not f.waiting_retry)

    @property
    def pending_approvals(self) -> dict[str, str]:
        return {k: f.node.prompt for k, f in sorted(self._approvals.items())}

    # -- the interpreter ------------------------------------------------------------------------

    def _current(self, key: str, attempt: int) -> _Frame | None:
        f = self._tasks.get(key)
        if f is None or f.attempt != attempt or f.waiting_retry or \
                self.status is not Status.RUNNING:
            return None  # a stale report: that attempt timed out or was cancelled
        return f

    def _arm(self, f: _Frame, attempt: int = 0) -> None:
        if f.node.timeout_s is not None:
            self._timed[f.key] = f
            self._out.append(ArmTimer(f.key, attempt, "timeout", int(f.node.timeout_s * NS)))

    def _enter(self, f: _Frame) -> None:
        n = f.node
        if n.kind == "task":
            if f.key in self._restored:
                value = self._restored[f.key]
                self.results[f.key] = value
                self._trace("task.restored", f.key)
                self._complete(f, value)
                return
            f.attempt = self.attempts.get(f.key, 0)
            self._launch(f)
            return
        if n.kind == "approval":
            if f.key in self._restored_decisions:
                d = self._restored_decisions[f.key]
                self.decisions[f.key] = d
                if d.get("approved"):
                    self.results[f.key] = d
                    self._trace("approval.restored", f.key)
                    self._complete(f, d)
                else:
                    self._fail(f, Vetoed(f"approval {n.id!r} was rejected", key=f.key))
                return
            self._approvals[f.key] = f
            self._arm(f)
            self._trace("approval.requested", f.key, prompt=n.prompt)
            self._out.append(AwaitApproval(f.key, n.id, n.prompt))
            return
        self._arm(f)
        if n.kind == "sequence":
            self._child(f, n.children[0])
        elif n.kind == "parallel":
            self._trace("parallel.fanout", f.key, branches=[c.id for c in n.children])
            for c in n.children:
                self._child(f, c)
        elif n.kind == "branch":
            scope = self._scope(f)
            try:
                for i, (cond, node) in enumerate(n.cases):
                    if evaluate(cond, scope):
                        self._trace("branch.chosen", f.key, case=i, node=node.id)
                        self._child(f, node)
                        return
            except InvalidArgument as e:
                self._fail(f, InvalidArgument(f"branch {n.id!r}: {e.message}", key=f.key))
                return
            if n.otherwise is not None:
                self._trace("branch.chosen", f.key, case="else", node=n.otherwise.id)
                self._child(f, n.otherwise)
            else:
                self._trace("branch.chosen", f.key, case=None, node=None)
                self._complete(f, None)
        elif n.kind == "loop":
            self._iterate(f)

    def _iterate(self, f: _Frame) -> None:
        self._trace("loop.iteration", f.key, iteration=f.idx)
        self._child(f, f.node.children[0], prefix=f"{f.key}[{f.idx}]/", iteration=f.idx)

    def _launch(self, f: _Frame) -> None:
        try:
            args = resolve(f.node.args, self._scope(f))
        except InvalidArgument as e:
            self._fail(f, InvalidArgument(f"task {f.node.id!r}: {e.message}", key=f.key))
            return
        f.attempt += 1
        self.attempts[f.key] = f.attempt
        self._tasks[f.key] = f
        self._trace("task.started", f.key, attempt=f.attempt, run=f.node.run)
        self._out.append(StartTask(f.key, f.node.id, f.node.run, args, f.attempt))
        self._arm(f, f.attempt)

    def _task_error(self, f: _Frame, error: AIOSError) -> list[Command]:
        n = f.node
        self._trace("task.failed", f.key, attempt=f.attempt, error=error.name,
                    message=error.message[:300])
        if f.attempt <= n.retries:
            delay = n.backoff_s * (2 ** (f.attempt - 1))
            self._trace("task.retrying", f.key, attempt=f.attempt + 1, after_s=delay)
            if delay > 0:
                f.waiting_retry = True
                self._tasks[f.key] = f
                self._out.append(ArmTimer(f.key, f.attempt, "retry", int(delay * NS)))
            else:
                self._launch(f)
            self._checkpoint()
            return self._flush()
        cls = type(error) if isinstance(error, AIOSError) else AgentFault
        surfaced = cls(f"task {n.id!r} failed after {f.attempt} attempt"
                       f"{'s' if f.attempt != 1 else ''}: {error.message}", key=f.key,
                       attempts=f.attempt)
        self._fail(f, surfaced)
        self._checkpoint()
        return self._flush()

    def _complete(self, f: _Frame, output: Any) -> None:
        f.state = "done"
        f.output = output
        self._timed.pop(f.key, None)
        self.latest[f.node.id] = output
        if f.parent is None:
            self._finish_ok()
        else:
            self._agenda.append(("done", f.parent, f))

    def _child_done(self, p: _Frame, c: _Frame) -> None:
        n = p.node
        if n.kind == "sequence":
            p.idx += 1
            if p.idx < len(n.children):
                self._child(p, n.children[p.idx])
            else:
                self._complete(p, c.output)
        elif n.kind == "parallel":
            if all(k.state == "done" for k in p.kids):
                self._trace("parallel.joined", p.key)
                self._complete(p, {k.node.id: k.output for k in p.kids})
        elif n.kind == "branch":
            self._complete(p, c.output)
        elif n.kind == "loop":
            try:
                stop = evaluate(n.until, self._scope(c))
            except InvalidArgument as e:
                self._fail(p, InvalidArgument(f"loop {n.id!r}: {e.message}", key=p.key))
                return
            if stop:
                self._trace("loop.exited", p.key, iterations=p.idx + 1, reason="until")
                self._complete(p, c.output)
            elif p.idx + 1 >= n.max_iterations:
                self._trace("loop.exhausted", p.key, iterations=p.idx + 1)
                if n.on_exhausted == "exit":
                    self._complete(p, c.output)
                else:
                    self._fail(p, QuotaExceeded(
                        f"loop {n.id!r} did not meet its exit condition within "
                        f"{n.max_iterations} iterations", key=p.key))
            else:
                p.idx += 1
                self._iterate(p)

    def _fail(self, f: _Frame, error: AIOSError) -> None:
        f.state = "failed"
        self._timed.pop(f.key, None)
        self._trace(f"{f.node.kind}.failed" if f.node.kind != "task" else "task.surfaced",
                    f.key, error=error.name)
        p = f.parent
        if p is None:
            self.status = Status.FAILED
            self.error = error
            self._trace("workflow.failed", self.wf.name, error=error.name,
                        message=error.message[:300])
            self._agenda.clear()
            self._checkpoint()
            self._out.append(Finish(Status.FAILED, None, error))
            return
        if p.node.kind == "parallel":
            for k in p.kids:
                if k is not f and k.state == "running":
                    self._cancel_inside(k)
        self._fail(p, error)

    def _cancel_inside(self, f: _Frame) -> None:
        for key, t in sorted(self._tasks.items()):
            if t.inside(f):
                if not t.waiting_retry:
                    self._out.append(CancelTask(key, t.attempt))
                self._trace("task.cancelled", key, attempt=t.attempt)
                t.state = "cancelled"
                del self._tasks[key]
        for key, a in sorted(self._approvals.items()):
            if a.inside(f):
                self._out.append(CancelApproval(key))
                self._trace("approval.cancelled", key)
                a.state = "cancelled"
                del self._approvals[key]
        stack = [f]
        while stack:
            g = stack.pop()
            if g.state == "running":
                g.state = "cancelled"
            self._timed.pop(g.key, None)
            stack.extend(g.kids)

    def _finish_ok(self) -> None:
        assert self.root is not None
        try:
            out = self.root.output if self.wf.output is None else resolve(
                self.wf.output, self._scope(self.root))
        except InvalidArgument as e:
            self.status = Status.FAILED
            self.error = e
            self._trace("workflow.failed", self.wf.name, error=e.name)
            self._checkpoint()
            self._out.append(Finish(Status.FAILED, None, e))
            return
        self.status = Status.DONE
        self.output = out
        self._trace("workflow.finished", self.wf.name)
        self._checkpoint()
        self._out.append(Finish(Status.DONE, out))


def error_from_state(st: Mapping[str, Any]) -> AIOSError | None:
    """The error a checkpointed run ended with."""
    e = st.get("error")
    return None if not e else from_code(int(e[0]), str(e[1]))
