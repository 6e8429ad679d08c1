"""The planner service's core: a model plans, validation judges, HTN falls back.

:class:`ModelPlanner` asks a language model (any
:class:`~aios.lib.llm.chat.ChatDriver`: the embedded SmolLM2, an
OpenAI-compatible endpoint, the simulated engine; in the kernel, the agent's
handle on the LLM device, so planning is charged to the agent) for a plan as
JSON constrained by :func:`~aios.lib.cognitive.plan.plan_schema`.  The prompt
lists the skills, explains ``$N`` and dependencies, and may carry worked
examples (few-shot, as LLMCompiler's planner prompt does).

:class:`Planner` decides which plan runs:

1. the model's plan, if it parses and :func:`~aios.lib.cognitive.plan.check`
   finds nothing wrong (acyclic, known skills, capabilities held, within
   budget, not a plan that already failed);
2. otherwise, up to ``repairs`` more model attempts with the problems as
   feedback ("plan step 3 (combine): refers to $7, which is not a step");
3. otherwise, or with no model at all, the deterministic
   :class:`~aios.lib.cognitive.htn.HtnPlanner`.  Same DAG form, same
   validation; the same goal without a model always gives the same DAG.

:meth:`Planner.solve` plans, executes (:mod:`~aios.lib.cognitive.dagrun`),
checks the result with an optional ``accept`` validator (schema and content
rules of the caller), and **replans** on failure, at most ``max_replans``
times: the failed step and its error become feedback for the model; the skill
that failed (refused for a capability, a device error, a fault) is avoided,
which makes the HTN planner backtrack to another method; results of steps
that succeeded are reused through the memo.  A plan identical to one that
already failed is never run again.

Every decision is an event in the :class:`~aios.lib.cognitive.dagrun.EventLog`
(``plan.requested``, ``plan.proposed``, ``plan.rejected``, ``plan.fallback``,
``plan.accepted``, then the execution's ``plan.step.*``, ``plan.replanning``,
``plan.solved`` / ``plan.unsolved``) for the kernel module to publish and
audit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aios.abi.errors import (
    AgentFault,
    AIOSError,
    Busy,
    DeviceError,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    QuotaExceeded,
    TimedOut,
)
from aios.lib.cognitive.dagrun import EventLog, ExecResult, PlanRun, StepRunner, execute
from aios.lib.cognitive.htn import HtnPlanner
from aios.lib.cognitive.plan import (
    Catalogue,
    Plan,
    check,
    parse_plan,
    plan_schema,
    validate,
)
from aios.lib.cognitive.planstream import StreamValidator, execute_stream
from aios.lib.llm.chat import ChatDriver, ChatRequest, Message, Usage

SYSTEM: Final = (
    "You are a planner. Break the goal into steps that call the skills listed below. "
    "Each step has an id (1, 2, 3, ...), a skill, its args, and deps: the ids of the steps "
    'whose results it needs. Write "$N" in args to use the result of step N. Steps that do '
    "not need each other have no deps, so they run in parallel. \"answer\" is \"$N\" for the "
    "step whose result answers the goal. Reply with the JSON plan only.\nSkills:\n")
# errors that say the skill itself cannot do it (avoid it when replanning)
SKILL_FAULTS: Final = (PermissionDenied, DeviceError, TimedOut, AgentFault, Busy, QuotaExceeded)


@dataclass(frozen=True, slots=True)
class Attempt:
    source: str  # "model" | "htn"
    ok: bool
    issues: tuple[str, ...]
    usage: Usage
    plan: Plan | None = None
    text: str = ""  # what the model wrote


@dataclass(frozen=True, slots=True)
class PlanDecision:
    plan: Plan
    attempts: tuple[Attempt, ...]

    @property
    def source(self) -> str:
        return self.plan.source

    @property
    def fell_back(self) -> bool:
        return any(a.source == "model" for a in self.attempts) and self.plan.source == "htn"

    @property
    def usage(self) -> Usage:
        u = Usage()
        for a in self.attempts:
            u = u + a.usage
        return u


class ModelPlanner:
    """Plans written by a language model as schema-constrained JSON."""

    def __init__(self, driver: ChatDriver, *, max_steps: int = 8, max_tokens: int | None = None,
                 seed: int | None = 0, temperature: float = 0.0,
                 examples: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        if not 1 <= max_steps <= 32:
            raise InvalidArgument("max_steps must be in [1, 32]")
        self.driver = driver
        self.max_steps = max_steps
        self.max_tokens = max_tokens or 48 + 56 * max_steps
        self.seed = seed
        self.temperature = temperature
        self.examples = tuple(examples)

    def request(self, goal: str, catalogue: Catalogue,
                feedback: Sequence[str] = ()) -> ChatRequest:
        msgs = [Message("system", SYSTEM + catalogue.describe())]
        for g, p in self.examples:
            msgs.append(Message("user", f"Goal: {g}"))
            msgs.append(Message("assistant", json.dumps(p, separators=(", ", ": "))))
        text = f"Goal: {goal}"
        if feedback:
            text += ("\nYour last plan was rejected:\n- " + "\n- ".join(feedback[:6])
                     + "\nWrite a corrected plan.")
        msgs.append(Message("user", text))
        return ChatRequest(tuple(msgs), max_tokens=self.max_tokens,
                           temperature=self.temperature, seed=self.seed,
                           response_schema=plan_schema(catalogue, self.max_steps))

    async def propose(self, goal: str, catalogue: Catalogue,
                      feedback: Sequence[str] = ()) -> tuple[Plan | None, str, Usage, str]:
        """(plan or None, the model's text, usage, why it did not parse)."""
        result = await self.driver.chat(self.request(goal, catalogue, feedback))
        try:
            return parse_plan(json.loads(result.text), goal, "model"), result.text, \
                result.usage, ""
        except (json.JSONDecodeError, InvalidArgument) as e:
            why = e.message if isinstance(e, AIOSError) else f"not JSON ({e.msg})"
            return None, result.text, result.usage, why


@dataclass(frozen=True, slots=True)
class Solution:
    ok: bool
    answer: Any
    plan: Plan | None
    decisions: tuple[PlanDecision, ...]
    executions: tuple[ExecResult, ...]
    error: AIOSError | None = None

    @property
    def source(self) -> str:
        return self.plan.source if self.plan else ""

    @property
    def replans(self) -> int:
        return max(0, len(self.executions) - 1)

    @property
    def planning_usage(self) -> Usage:
        u = Usage()
        for d in self.decisions:
            u = u + d.usage
        return u


Accept = Callable[[Any, Plan, ExecResult], Sequence[str]]


class Planner:
    """Model first, validation always, HTN as the fallback (see the module essay)."""

    def __init__(self, catalogue: Catalogue, *, model: ModelPlanner | None = None,
                 fallback: HtnPlanner | None = None, log: EventLog | None = None,
                 repairs: int = 1, show_unheld: bool = False) -> None:
        if model is None and fallback is None:
            raise InvalidArgument("a planner needs a model, a fallback, or both")
        self.cat = catalogue
        self.model = model
        self.fallback = fallback
        self.log = log or EventLog()
        self.repairs = repairs
        self.show_unheld = show_unheld

    def _judge(self, plan: Plan, held: frozenset[str], budget: int | None,
               avoid: frozenset[str], exclude: frozenset[str]) -> tuple[Plan | None, list[str]]:
        """The plan to run (normalised, without dead steps), or the problems."""
        issues = [x.message for x in check(plan, self.cat, held, None)]
        issues += [f"plan step {s.id} ({s.skill}): this skill failed before; use another"
                   for s in plan.steps if s.skill in avoid]
        if issues:
            return None, issues
        ok, dropped = validate(plan, self.cat, held).pruned()
        if dropped:
            self.log.emit("plan.pruned", ok.digest, dropped=list(dropped),
                          reason="the answer does not depend on them")
        issues = [x.message for x in check(ok, self.cat, held, budget)]
        if ok.digest in exclude:
            issues.append("this plan already failed")
        return (None, issues) if issues else (ok, [])

    async def plan(self, goal: str, held: frozenset[str], *, budget: int | None = None,
                   feedback: Sequence[str] = (), avoid: frozenset[str] = frozenset(),
                   exclude: frozenset[str] = frozenset()) -> PlanDecision:
        """The plan to run for ``goal``, or ``NoSuchObject`` when none is valid."""
        if not isinstance(goal, str) or not goal.strip():
            raise InvalidArgument("a goal is a non-empty string")
        tag = "goal"
        self.log.emit("plan.requested", tag, goal=goal, held=sorted(held), budget=budget)
        attempts: list[Attempt] = []
        fb = list(feedback)
        if self.model is not None:
            shown = self.cat if self.show_unheld else self.cat.usable(held)
            shown = Catalogue(s for s in shown if s.name not in avoid)
            for i in range(1 + self.repairs):
                if not len(shown):
                    break
                try:
                    plan, text, usage, why = await self.model.propose(goal, shown, fb)
                except (DeviceError, Busy, TimedOut, QuotaExceeded) as e:
                    attempts.append(Attempt("model", False, (e.message,), Usage()))
                    self.log.emit("plan.rejected", tag, attempt=i + 1, source="model",
                                  issues=[e.message])
                    break
                self.log.emit("plan.proposed", tag, attempt=i + 1, source="model",
                              prompt_tokens=usage.prompt_tokens,
                              completion_tokens=usage.completion_tokens)
                if plan is None:
                    ok, issues = None, [f"the answer is not a plan: {why}"]
                else:
                    ok, issues = self._judge(plan, held, budget, avoid, exclude)
                if ok is not None:
                    attempts.append(Attempt("model", True, (), usage, ok, text))
                    return self._accept(ok, attempts)
                attempts.append(Attempt("model", False, tuple(issues), usage, plan, text))
                self.log.emit("plan.rejected", tag, attempt=i + 1, source="model",
                              issues=issues[:8])
                fb = issues
        if self.fallback is None:
            raise NoSuchObject("no valid plan: " + ("; ".join(
                x for a in attempts for x in a.issues[:2]) or "the model gave none"))
        self.log.emit("plan.fallback", tag, source="htn",
                      reason="no model" if self.model is None else "model plan invalid")
        try:
            plan = self.fallback.plan(goal, self.cat, held, avoid)
        except NoSuchObject as e:
            attempts.append(Attempt("htn", False, (e.message,), Usage()))
            self.log.emit("plan.rejected", tag, source="htn", issues=[e.message])
            raise
        ok, issues = self._judge(plan, held, budget, avoid, exclude)
        if ok is None:
            attempts.append(Attempt("htn", False, tuple(issues), Usage(), plan))
            self.log.emit("plan.rejected", tag, source="htn", issues=issues[:8])
            raise NoSuchObject(f"no valid plan for {goal!r}: {issues[0]}")
        attempts.append(Attempt("htn", True, (), Usage(), ok))
        return self._accept(ok, attempts)

    def _accept(self, plan: Plan, attempts: list[Attempt]) -> PlanDecision:
        self.log.emit("plan.accepted", plan.digest, source=plan.source, steps=len(plan.steps),
                      est_tokens=sum(self.cat[s.skill].est_tokens for s in plan.steps))
        return PlanDecision(plan, tuple(attempts))

    async def _streamed(self, goal: str, held: Callable[[], frozenset[str]],
                        runner: StepRunner, budget: int | None, memo: dict[str, Any],
                        max_parallel: int | None) -> tuple[PlanDecision, ExecResult]:
        """The model writes the plan while its first steps already run."""
        assert self.model is not None
        caps = held()
        self.log.emit("plan.requested", "goal", goal=goal, held=sorted(caps), budget=budget,
                      streaming=True)
        shown = self.cat if self.show_unheld else self.cat.usable(caps)
        req = self.model.request(goal, shown)
        validator = StreamValidator(goal, self.cat, caps, budget)
        run = PlanRun.streaming(goal, self.cat, held, memo=memo, log=self.log,
                                max_parallel=max_parallel)
        res, text, usage = await execute_stream(run, validator, self.model.driver.stream(req),
                                                runner)
        plan = run.plan if run.sealed else Plan(goal, tuple(run.steps.values()), 0, "model")
        issues = (run.plan_error.message,) if run.plan_error is not None else ()
        self.log.emit("plan.proposed", "goal", attempt=1, source="model", streaming=True,
                      prompt_tokens=usage.prompt_tokens,
                      completion_tokens=usage.completion_tokens)
        if issues:
            self.log.emit("plan.rejected", "goal", attempt=1, source="model", issues=list(issues))
        return PlanDecision(plan, (Attempt("model", run.sealed, issues, usage, plan, text),)), res

    async def solve(self, goal: str, held: Callable[[], frozenset[str]], runner: StepRunner, *,
                    budget: int | None = None, accept: Accept | None = None,
                    max_replans: int = 2, max_parallel: int | None = None,
                    stream: bool = False) -> Solution:
        """Plan, execute, check, and replan on failure (at most ``max_replans`` times).
        With ``stream`` (and a model) the first plan's steps start as the model writes
        them (:mod:`~aios.lib.cognitive.planstream`); replans are whole plans."""
        memo: dict[str, Any] = {}
        decisions: list[PlanDecision] = []
        runs: list[ExecResult] = []
        feedback: list[str] = []
        avoid: set[str] = set()
        tried: set[str] = set()
        spent = 0
        error: AIOSError | None = None
        for round_ in range(max_replans + 1):
            left = None if budget is None else max(0, budget - spent)
            if stream and round_ == 0 and self.model is not None:
                d, res = await self._streamed(goal, held, runner, left, memo, max_parallel)
            else:
                try:
                    d = await self.plan(goal, held(), budget=left, feedback=feedback,
                                        avoid=frozenset(avoid), exclude=frozenset(tried))
                except NoSuchObject as e:
                    error = e
                    break
                run = PlanRun(d.plan, self.cat, held, memo=memo, log=self.log,
                              max_parallel=max_parallel)
                res = await execute(run, runner)
            decisions.append(d)
            spent += d.usage.total_tokens
            tried.add(d.plan.digest)
            runs.append(res)
            if res.ok:
                problems = list(accept(res.answer, d.plan, res)) if accept else []
                if not problems:
                    self.log.emit("plan.solved", d.plan.digest, source=d.plan.source,
                                  rounds=len(runs))
                    return Solution(True, res.answer, d.plan, tuple(decisions), tuple(runs))
                self.log.emit("plan.result_rejected", d.plan.digest, problems=list(problems))
                feedback = [f"the result {res.answer!r} was rejected: {p}" for p in problems]
                error = InvalidArgument(f"the result was rejected: {problems[0]}")
            elif res.failed_step is None:  # the streamed plan itself was invalid
                assert res.error is not None
                feedback = [res.error.message]
                error = res.error
            else:
                assert res.error is not None
                skill = d.plan.step(res.failed_step).skill
                feedback = [f"step {res.failed_step} ({skill}) failed: {res.error.message}"]
                if isinstance(res.error, SKILL_FAULTS):
                    avoid.add(skill)
                error = res.error
            self.log.emit("plan.replanning", d.plan.digest, feedback=feedback,
                          avoid=sorted(avoid))
        self.log.emit("plan.unsolved", "goal", error=error.name if error else None)
        last = decisions[-1].plan if decisions else None
        return Solution(False, None, last, tuple(decisions), tuple(runs), error)
