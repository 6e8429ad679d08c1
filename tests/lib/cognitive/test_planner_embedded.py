"""End to end with the real embedded model (SmolLM2-135M via llama.cpp, offline).

A three-step goal over two skill functions (a fact lookup and the combining
skill) is planned by the model as schema-constrained JSON, validated, run with
its lookups in parallel, and its answer checked by a validator: a JSON schema
and content rules (every entity the goal names was looked up, and the answer
is the goal's operation over what the lookups returned).  Not exact text.

The 135M model's plans are often wrong in content though always well-formed.
That is what validation and the fallback are for: whichever path produced the
answer (the model's plan, or the HTN plan after the model's failed), the test
checks which one it was, that the model really planned first, and that the
answer validates."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import jsonschema
import pytest

from aios.lib.cognitive.dagrun import EventLog, ExecResult
from aios.lib.cognitive.htn import HtnPlanner
from aios.lib.cognitive.plan import Catalogue, Plan, SkillSpec
from aios.lib.cognitive.planner import ModelPlanner, Planner
from aios.lib.cognitive.recipes import COMBINE, LOOKUP_PARAMS, combine, lookup_methods

from .domain import FACTS, fact

pytestmark = pytest.mark.llm

LOOKUP = SkillSpec("lookup", "look up one attribute (population, height, length) of one entity",
                   LOOKUP_PARAMS, frozenset({"kb.read"}), 120)
CATALOGUE = Catalogue([LOOKUP, COMBINE])
EXAMPLE = ("What is the total area of France and Spain?", {"steps": [
    {"id": 1, "skill": "lookup", "args": {"entity": "France", "attribute": "area"}, "deps": []},
    {"id": 2, "skill": "lookup", "args": {"entity": "Spain", "attribute": "area"}, "deps": []},
    {"id": 3, "skill": "combine", "args": {"values": ["$1", "$2"], "op": "sum"},
     "deps": [1, 2]}], "answer": "$3"})
GOAL = "What is the total population of Paris and Rome?"
ANSWER_SCHEMA = {"type": "number", "exclusiveMinimum": 0}


async def run_skill(skill: str, args: Any, step: int) -> Any:
    if skill == "lookup":
        return fact(args["entity"], args["attribute"])
    return combine(args["values"], args["op"])


def validator(answer: Any, plan: Plan, res: ExecResult) -> list[str]:
    """Schema and content rules for "the total <attribute> of <A> and <B>"."""
    problems = []
    try:
        jsonschema.validate(answer, ANSWER_SCHEMA)
    except jsonschema.ValidationError as e:
        return [f"the answer does not fit its schema: {e.message}"]
    m = re.match(r"What is the total (\w+) of (\w+) and (\w+)\?", plan.goal)
    assert m
    attr, names = m[1], {m[2].lower(), m[3].lower()}
    looked = {str(v["entity"]).lower(): v["value"] for v in res.results.values()
              if isinstance(v, dict) and v.get("attribute") == attr}
    if set(looked) != names:
        problems.append(f"looked up {sorted(looked)}, the goal names {sorted(names)}")
    truth = sum(FACTS[(n, attr)] for n in names)
    if abs(answer - truth) > 1e-9:
        problems.append(f"{answer} is not the total {attr} of the looked-up values ({truth})")
    return problems


@pytest.mark.parametrize("stream", [
    pytest.param(True, id="streamed"),
    pytest.param(False, id="whole", marks=pytest.mark.slow),
])
def test_a_three_step_plan_by_the_embedded_model_completes_and_validates(stream: bool) -> None:
    """Streamed: the lookups start while the model is still writing the plan."""
    from aios.lib.llm.embedded import EmbeddedDriver

    async def go() -> tuple[Any, EventLog]:
        d = EmbeddedDriver(slots=2, context_tokens=4096)
        log = EventLog()
        try:
            planner = Planner(CATALOGUE, model=ModelPlanner(d, max_steps=4, examples=[EXAMPLE],
                                                            seed=1),
                              fallback=HtnPlanner(lookup_methods(("lookup",))), log=log,
                              repairs=0)
            sol = await planner.solve(GOAL, lambda: frozenset({"kb.read"}), run_skill,
                                      accept=validator, max_replans=1, stream=stream)
            return sol, log
        finally:
            await d.aclose()

    sol, log = asyncio.run(go())
    first = sol.decisions[0].attempts[0]
    # the model really planned first: a schema-constrained JSON answer, tokens charged
    assert first.source == "model" and first.usage.completion_tokens > 0
    assert first.text.lstrip().startswith("{")
    assert sol.ok, sol.error
    assert validator(sol.answer, sol.plan, sol.executions[-1]) == []
    assert sol.answer == pytest.approx(2.1 + 2.8)
    # the goal's three steps: two lookups (one per city, in parallel) and a combine; a
    # model's plan may add combining steps of its own (SmolLM2 often does), never lookups
    lookups = [s for s in sol.plan.steps if s.skill == "lookup"]
    assert len(lookups) == 2 and all(not s.deps for s in lookups)
    assert len(sol.plan.steps) >= 3 and sol.plan.step(sol.plan.answer).skill == "combine"
    # which path ran, and why
    if sol.source == "model":
        assert first.ok and sol.replans == 0
    else:
        assert sol.source == "htn"
        reasons = [k for k in log.kinds() if k in ("plan.rejected", "plan.result_rejected",
                                                   "plan.step.failed")]
        assert reasons  # the model's plan failed validation, failed, or its result did
    print(f"path: {sol.source}; model attempts: "
          f"{[a.ok for d in sol.decisions for a in d.attempts if a.source == 'model']}")
