"""Streaming plans: start each step as soon as the model has written it.

LLMCompiler's task-fetching unit does not wait for the planner to finish: a
step whose dependencies are done starts as soon as it has been streamed.  For
a plan of five lookups and a combine, that turns "write six steps, then run"
into "run the first lookup after one step's worth of tokens", which is most
of what a planner gains over one step per model call when plans are long.

:class:`StepStream` finds the step objects of a plan as its JSON text
arrives in pieces (split anywhere): it follows strings, escapes and nesting,
and hands out each complete object of the top-level ``"steps"`` array.

:class:`StreamValidator` judges each step on arrival, with everything that can
be known then: a well-formed step, a fresh id, a known skill, capabilities
held, arguments that fit the skill's schema (references allowed), and
**dependencies and references only to steps already written**.  That last
rule makes a streamed plan acyclic by construction (a forward reference, the
only way to a cycle, is refused), and it is the order a model writes in
anyway.  The estimated cost is summed as steps arrive and refused past the
budget.  When the text ends, :meth:`StreamValidator.finish` parses the whole
answer and runs the full :func:`~aios.lib.cognitive.plan.check` on it (the
answer reference, and everything again): the plan is sealed only if it
passes.  A step that fails a check aborts the run (nothing more starts; steps
already running finish and their results stay in the memo for the replan).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aios.abi.errors import (
    AgentFault,
    AIOSError,
    Cancelled,
    InvalidArgument,
    PermissionDenied,
    QuotaExceeded,
)
from aios.lib.cognitive.dagrun import ExecResult, PlanRun, StepRunner, result
from aios.lib.cognitive.plan import Catalogue, Plan, Step, check, parse_plan, schema_message
from aios.lib.llm.chat import ChatChunk, Usage


class StepStream:
    """Complete step objects of a streamed ``{"steps": [...], ...}`` text, in order."""

    def __init__(self) -> None:
        self.text = ""
        self._i = 0
        self._stack: list[str] = []
        self._in_string = False
        self._escape = False
        self._string_start = -1
        self._last_key = ""
        self._steps_depth = -1
        self._obj_start = -1
        self.emitted = 0
        self.ends: list[int] = []  # where each step's text ends

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        out: list[dict[str, Any]] = []
        t = self.text
        while self._i < len(t):
            c = t[self._i]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif c == "\\":
                    self._escape = True
                elif c == '"':
                    self._in_string = False
                    if len(self._stack) == 1:  # a key or value of the top-level object
                        self._last_key = t[self._string_start + 1:self._i]
            elif c == '"':
                self._in_string = True
                self._string_start = self._i
            elif c in "{[":
                if c == "[" and len(self._stack) == 1 and self._last_key == "steps":
                    self._steps_depth = 2
                if c == "{" and self._steps_depth == len(self._stack) and \
                        self._stack and self._stack[-1] == "[":
                    self._obj_start = self._i
                self._stack.append(c)
            elif c in "}]":
                if self._stack:
                    self._stack.pop()
                if c == "}" and self._obj_start >= 0 and len(self._stack) == self._steps_depth:
                    raw = t[self._obj_start:self._i + 1]
                    self._obj_start = -1
                    try:
                        obj = json.loads(raw)
                    except json.JSONDecodeError:
                        obj = {"_malformed": raw}
                    out.append(obj if isinstance(obj, dict) else {"_malformed": raw})
                    self.emitted += 1
                    self.ends.append(self._i + 1)
                if c == "]" and len(self._stack) == 1:
                    self._steps_depth = -1
            self._i += 1
        return out


class StreamValidator:
    """Checks steps as they arrive (see the module essay)."""

    def __init__(self, goal: str, catalogue: Catalogue, held: frozenset[str],
                 budget: int | None = None) -> None:
        self.goal = goal
        self.cat = catalogue
        self.held = held
        self.budget = budget
        self.steps: list[Step] = []
        self.ids: set[int] = set()
        self.cost = 0

    def accept(self, obj: Mapping[str, Any]) -> Step:
        """The step, or the error that refuses the plan at this step."""
        n = len(self.steps) + 1
        sid, skill = obj.get("id"), obj.get("skill")
        args, deps = obj.get("args", {}), obj.get("deps", [])
        if type(sid) is not int or not isinstance(skill, str) or not isinstance(args, Mapping) \
                or not isinstance(deps, list) or not all(type(d) is int for d in deps):
            raise InvalidArgument(f"streamed plan step #{n} is not {{id, skill, args, deps}}")
        step = Step(sid, skill, dict(args), tuple(deps))
        label = f"plan step {sid} ({skill})"
        if sid in self.ids or sid < 1:
            raise InvalidArgument(f"{label}: the id {sid} is not new", step=sid)
        if skill not in self.cat:
            raise InvalidArgument(f"{label}: no skill {skill!r}", step=sid)
        spec = self.cat[skill]
        if not spec.capabilities <= self.held:
            missing = ", ".join(sorted(spec.capabilities - self.held))
            raise PermissionDenied(f"{label}: needs capability {missing}, not held", step=sid)
        ahead = sorted((set(deps) | step.refs()) - self.ids)
        if ahead:
            raise InvalidArgument(f"{label}: refers to step {ahead[0]}, which is not written "
                                  "yet (a streamed plan refers only to earlier steps)",
                                  step=sid)
        v, _ = self.cat.validators(skill)
        errs = list(v.iter_errors(dict(args)))
        if errs:
            raise InvalidArgument(f"{label}: {schema_message(errs[0])}", step=sid)
        self.cost += spec.est_tokens
        if self.budget is not None and self.cost > self.budget:
            raise QuotaExceeded(f"{label}: the plan's estimated cost reaches {self.cost} tokens "
                                f"here, over the budget of {self.budget}", step=sid)
        self.steps.append(step)
        self.ids.add(sid)
        return step

    def finish(self, text: str, source: str = "model") -> Plan:
        """The whole plan, checked again in full (``InvalidArgument`` etc. if not)."""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"the streamed plan is not JSON ({e.msg})") from None
        plan = parse_plan(obj, self.goal, source)
        if [s.id for s in plan.steps] != [s.id for s in self.steps]:
            raise InvalidArgument("the streamed plan's steps are not the ones that arrived")
        issues = check(plan, self.cat, self.held, self.budget)
        if issues:
            raise issues[0].error()
        return plan.normalised()


async def execute_stream(run: PlanRun, validator: StreamValidator,
                         chunks: AsyncIterator[ChatChunk],
                         runner: StepRunner) -> tuple[ExecResult, str, Usage]:
    """Run the steps of a plan while the model is still writing it.

    Returns the execution's result, the model's whole text and its usage.  A
    step that fails validation aborts the run and closes the model's stream
    (which stops the generation on the device)."""
    parser = StepStream()
    parts: list[str] = []
    usage = Usage()
    tasks: dict[asyncio.Future[Any], int] = {}
    it = chunks.__aiter__()
    nxt: asyncio.Future[Any] | None = asyncio.ensure_future(it.__anext__())

    async def stop_reading() -> None:
        nonlocal nxt
        if nxt is not None:
            nxt.cancel()
            await asyncio.gather(nxt, return_exceptions=True)
            nxt = None
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()

    try:
        while True:
            for st in run.ready():
                tasks[asyncio.ensure_future(runner(st.skill, st.args, st.step))] = st.step
            waiting: set[asyncio.Future[Any]] = set(tasks)
            if nxt is not None:
                waiting.add(nxt)
            if not waiting:
                break
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if nxt is not None and nxt in done:
                got, nxt = nxt, None
                try:
                    ch = got.result()
                except StopAsyncIteration:
                    ch = None
                except AIOSError as e:
                    run.abort(e)
                    ch = None
                if ch is not None:
                    if ch.text:
                        parts.append(ch.text)
                    if ch.usage is not None:
                        usage = ch.usage
                    try:
                        for obj in parser.feed(ch.text):
                            run.add(validator.accept(obj))
                    except AIOSError as e:
                        run.abort(e)
                        await stop_reading()
                    else:
                        nxt = asyncio.ensure_future(it.__anext__())
                elif not run.halted:
                    try:
                        run.seal(validator.finish("".join(parts)))
                    except AIOSError as e:
                        run.abort(e)
            for t in done:
                if t in tasks:
                    sid = tasks.pop(t)
                    exc = t.exception()
                    if exc is None:
                        run.finished(sid, t.result())
                    elif isinstance(exc, AIOSError):
                        run.failed(sid, exc)
                    else:
                        run.failed(sid, AgentFault(f"plan step {sid} raised {exc!r}", step=sid))
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sid in tasks.values():
            run.failed(sid, Cancelled(f"plan step {sid} was cancelled", step=sid))
        await stop_reading()
        run.close()
        raise
    run.close()
    return result(run), "".join(parts), usage
