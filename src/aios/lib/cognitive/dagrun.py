"""Executing a plan: independent steps in parallel, results substituted, refusals.

:class:`PlanRun` is the sans-IO state of one plan's execution.  The caller
asks it which steps may start (:meth:`~PlanRun.ready`), runs them however it
likes (an asyncio task per step in :func:`execute`; the benchmark's virtual
clock), and reports each result (:meth:`~PlanRun.finished`) or failure
(:meth:`~PlanRun.failed`).  A step is ready when every step it depends on (its
``deps`` and every ``$N`` in its arguments) has finished; its arguments are
then substituted with those results.

Before a step is handed out it is checked, at that moment, not at planning
time, because capabilities can be revoked in between:

* every capability its skill needs must be held (``held()`` is asked then):
  otherwise the step is **refused**: it fails with ``PermissionDenied`` and the
  runner is never called;
* its substituted arguments must satisfy the skill's schema
  (``InvalidArgument``, never run).

A finished step's result must be plain data and satisfy the skill's
``returns`` schema if it has one.  A result of a call made before (same skill,
same resolved arguments, in ``memo``) is reused without running it again:
that is what makes replanning after a failure cheap.

When a step fails the run **halts**: nothing new starts, steps already
running finish (their results go to the memo for the replan), and the run
ends failed with the first failure.  Every transition is a
:class:`PlanEvent` (``plan.step.*``), for the kernel module to publish and
audit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aios.abi.errors import (
    AgentFault,
    AIOSError,
    Cancelled,
    IllegalTransition,
    InvalidArgument,
    PermissionDenied,
)
from aios.lib.cognitive.plan import (
    Catalogue,
    Plan,
    Step,
    schema_message,
    step_key,
    substitute,
)


class StepState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    SKIPPED = "skipped"  # never started because the run halted


@dataclass(frozen=True, slots=True)
class PlanEvent:
    """One event of a plan's life (the kernel module publishes ``plan.<kind>``)."""

    seq: int
    kind: str
    plan: str  # the plan's digest
    step: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "plan": self.plan, "step": self.step,
                **self.data}


class EventLog:
    """Numbered events, handed to an optional sink as they happen."""

    def __init__(self, sink: Callable[[PlanEvent], None] | None = None) -> None:
        self.events: list[PlanEvent] = []
        self.sink = sink

    def emit(self, kind: str, plan: str, step: int | None = None, **data: Any) -> PlanEvent:
        e = PlanEvent(len(self.events) + 1, kind, plan, step, data)
        self.events.append(e)
        if self.sink is not None:
            self.sink(e)
        return e

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@dataclass(frozen=True, slots=True)
class StartStep:
    step: int
    skill: str
    args: Mapping[str, Any]


class PlanRun:
    """One execution of a valid plan; see the module essay."""

    def __init__(self, plan: Plan, catalogue: Catalogue, held: Callable[[], frozenset[str]],
                 *, memo: dict[str, Any] | None = None, log: EventLog | None = None,
                 max_parallel: int | None = None) -> None:
        self.plan = plan
        self.cat = catalogue
        self.held = held
        self.memo = memo if memo is not None else {}
        self.log = log or EventLog()
        self.max_parallel = max_parallel
        self.id = plan.digest
        self.steps: dict[int, Step] = {}
        self.deps: dict[int, frozenset[int]] = {}
        self.state: dict[int, StepState] = {}
        self.results: dict[int, Any] = {}
        self.errors: dict[int, AIOSError] = {}
        self.plan_error: AIOSError | None = None  # a streamed plan found invalid
        self.keys: dict[int, str] = {}
        self.halted = False
        self.sealed = False
        self.order: list[int] = []  # steps in the order they started
        self.reused: set[int] = set()
        self.log.emit("plan.started", self.id, steps=len(plan.steps), source=plan.source)
        for st in plan.steps:
            self.add(st)
        self.sealed = bool(plan.steps)

    @classmethod
    def streaming(cls, goal: str, catalogue: Catalogue, held: Callable[[], frozenset[str]],
                  **kw: Any) -> PlanRun:
        """A run whose steps arrive one by one (:meth:`add`) while the plan is written."""
        return cls(Plan(goal, (), 0, "model"), catalogue, held, **kw)

    def add(self, step: Step) -> None:
        """A step that arrived (it may refer only to steps already added)."""
        if self.sealed:
            raise IllegalTransition("the plan is sealed")
        deps = frozenset(step.deps) | step.refs()
        if step.id in self.steps or not deps <= set(self.steps):
            raise IllegalTransition(f"plan step {step.id} does not extend the plan")
        self.steps[step.id] = step
        self.deps[step.id] = deps
        self.state[step.id] = StepState.WAITING

    def seal(self, plan: Plan) -> None:
        """The whole plan has arrived (and validated): nothing more will be added."""
        if set(self.steps) != {s.id for s in plan.steps}:
            raise IllegalTransition("the sealed plan is not the plan that arrived")
        self.plan = plan
        self.sealed = True
        self.log.emit("plan.sealed", self.id, steps=len(plan.steps), digest=plan.digest)

    def abort(self, error: AIOSError) -> None:
        """The plan itself is bad (found while it streamed): start nothing more."""
        self.plan_error = error
        self.log.emit("plan.invalid", self.id, error=error.name, message=error.message)
        self._halt()

    # -- what may start -------------------------------------------------------------------

    @property
    def running(self) -> list[int]:
        return [s for s, st in self.state.items() if st is StepState.RUNNING]

    def ready(self) -> list[StartStep]:
        """Steps to start now (marked running); refused or reused steps are settled here."""
        out: list[StartStep] = []
        progress = True
        while progress and not self.halted:
            progress = False
            for s in list(self.steps.values()):
                if self.halted:
                    break
                if self.state[s.id] is not StepState.WAITING:
                    continue
                if not all(self.state[d] is StepState.DONE for d in self.deps[s.id]):
                    continue
                if self.max_parallel is not None and \
                        len(self.running) >= self.max_parallel:
                    return out
                start = self._admit(s.id)
                if start is not None:
                    out.append(start)
                progress = True  # a reuse or refusal may make more ready
        return out

    def _admit(self, sid: int) -> StartStep | None:
        s = self.steps[sid]
        spec = self.cat[s.skill]
        missing = spec.capabilities - self.held()
        if missing:
            err = PermissionDenied(f"plan step {sid} ({s.skill}) needs capability "
                                   f"{', '.join(sorted(missing))}, not held: refused",
                                   step=sid, missing=sorted(missing))
            self.state[sid] = StepState.REFUSED
            self.errors[sid] = err
            self.log.emit("plan.step.refused", self.id, sid, skill=s.skill,
                          missing=sorted(missing))
            self._halt()
            return None
        try:
            args = substitute(s.args, self.results)
        except KeyError as e:  # a validated plan cannot get here
            raise IllegalTransition(f"step {sid} refers to a result not yet there: {e}") \
                from None
        _, full = self.cat.validators(s.skill)
        errs = list(full.iter_errors(args))
        if errs:
            self._fail(sid, InvalidArgument(
                f"plan step {sid} ({s.skill}): arguments after substitution: "
                f"{schema_message(errs[0])}", step=sid))
            return None
        key = step_key(s.skill, args)
        self.keys[sid] = key
        self.order.append(sid)
        if key in self.memo:
            self.state[sid] = StepState.DONE
            self.results[sid] = self.memo[key]
            self.reused.add(sid)
            self.log.emit("plan.step.reused", self.id, sid, skill=s.skill)
            return None
        self.state[sid] = StepState.RUNNING
        self.log.emit("plan.step.started", self.id, sid, skill=s.skill,
                      deps=sorted(self.deps[sid]))
        return StartStep(sid, s.skill, args)

    # -- what happened -----------------------------------------------------------------------

    def finished(self, sid: int, value: Any) -> None:
        self._running(sid)
        spec = self.cat[self.steps[sid].skill]
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            self._fail(sid, AgentFault(f"plan step {sid} ({spec.name}) returned something that "
                                       "is not plain data", step=sid))
            return
        if spec.returns is not None:
            import jsonschema

            try:
                jsonschema.validate(value, spec.returns)
            except jsonschema.ValidationError as e:
                self._fail(sid, AgentFault(f"plan step {sid} ({spec.name}) returned "
                                           f"{value!r}: {e.message}", step=sid))
                return
        self.state[sid] = StepState.DONE
        self.results[sid] = value
        self.memo[self.keys[sid]] = value
        self.log.emit("plan.step.finished", self.id, sid, skill=spec.name)

    def failed(self, sid: int, error: AIOSError) -> None:
        self._running(sid)
        self._fail(sid, error)

    def _running(self, sid: int) -> None:
        if self.state.get(sid) is not StepState.RUNNING:
            raise IllegalTransition(f"plan step {sid} is not running")

    def _fail(self, sid: int, err: AIOSError) -> None:
        self.state[sid] = StepState.FAILED
        self.errors[sid] = err
        self.log.emit("plan.step.failed", self.id, sid, skill=self.steps[sid].skill,
                      error=err.name, message=err.message)
        self._halt()

    def _halt(self) -> None:
        if not self.halted:
            self.halted = True
            self.log.emit("plan.halted", self.id)

    # -- outcome -------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        if self.running:
            return False
        if self.halted:
            return True
        return self.sealed and all(st is StepState.DONE for st in self.state.values())

    @property
    def ok(self) -> bool:
        return self.done and not self.halted

    @property
    def answer(self) -> Any:
        return self.results.get(self.plan.answer)

    def first_error(self) -> tuple[int | None, AIOSError] | None:
        for sid in sorted(self.errors):
            return sid, self.errors[sid]
        if self.plan_error is not None:
            return None, self.plan_error
        return None

    def close(self) -> None:
        """Mark what never started and record the outcome."""
        for sid, st in self.state.items():
            if st is StepState.WAITING:
                self.state[sid] = StepState.SKIPPED
        if self.ok:
            self.log.emit("plan.finished", self.id, answer_step=self.plan.answer)
        else:
            fe = self.first_error()
            self.log.emit("plan.failed", self.id, fe[0] if fe else None,
                          error=fe[1].name if fe else "ECANCELED")


StepRunner = Callable[[str, Mapping[str, Any], int], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ExecResult:
    ok: bool
    answer: Any
    results: Mapping[int, Any]
    states: Mapping[int, StepState]
    error: AIOSError | None
    failed_step: int | None
    order: tuple[int, ...]


async def execute(run: PlanRun, runner: StepRunner) -> ExecResult:
    """Run a plan with ``runner(skill, args, step)`` for each step, in parallel where
    the DAG allows.  Cancelling the caller cancels every running step."""
    tasks: dict[asyncio.Task[Any], int] = {}
    try:
        while True:
            for st in run.ready():
                t = asyncio.ensure_future(runner(st.skill, st.args, st.step))
                tasks[t] = st.step
            if not tasks:
                break
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                sid = tasks.pop(t)
                exc = t.exception()
                if exc is None:
                    run.finished(sid, t.result())
                elif isinstance(exc, AIOSError):
                    run.failed(sid, exc)
                else:
                    run.failed(sid, AgentFault(f"plan step {sid} raised {exc!r}", step=sid))
    except asyncio.CancelledError:  # cancelled from outside: stop every running step
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sid in tasks.values():
            run.failed(sid, Cancelled(f"plan step {sid} was cancelled", step=sid))
        run.close()
        raise
    run.close()
    return result(run)


def result(run: PlanRun) -> ExecResult:
    fe = run.first_error()
    return ExecResult(run.ok, run.answer, dict(run.results), dict(run.state),
                      fe[1] if fe else None, fe[0] if fe else None, tuple(run.order))
