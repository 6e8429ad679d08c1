"""The planner: a model's plan when it validates, repair with feedback, the HTN
fallback when it does not (or with no model), replanning on failure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from aios.abi.errors import DeviceError, NoSuchObject
from aios.lib.cognitive.dagrun import EventLog
from aios.lib.cognitive.planner import ModelPlanner, Planner
from aios.lib.llm.chat import (
    FEATURES,
    ChatChunk,
    ChatRequest,
    ChatResult,
    DriverInfo,
    Usage,
    collect,
)
from aios.lib.llm.http import HttpDriver
from aios.lib.llm.simserver import SimServer

from .domain import ALL, CATALOGUE, Runner, htn

GOAL = "What is the total population of Paris, Rome and Oslo?"


class ScriptedModel:
    """A model that answers with the given texts in turn (a test double for the
    planner's decision logic; the real model is in test_planner_embedded)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = [a if isinstance(a, str) else json.dumps(a) for a in answers]
        self.requests: list[ChatRequest] = []

    def info(self) -> DriverInfo:
        return DriverInfo("scripted", "1", "scripted", 1, 4096, FEATURES)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        text = self.answers.pop(0)
        yield ChatChunk(text)
        yield ChatChunk("", "stop", Usage(100, 50))

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await collect(self.stream(request))

    async def aclose(self) -> None:
        pass


def step(i: int, skill: str, args: dict[str, Any], deps: Sequence[int] = ()) -> dict[str, Any]:
    return {"id": i, "skill": skill, "args": args, "deps": list(deps)}


def lookups(skill: str = "kb_lookup") -> list[dict[str, Any]]:
    return [step(i + 1, skill, {"entity": c, "attribute": "population"})
            for i, c in enumerate(("Paris", "Rome", "Oslo"))]


GOOD = {"steps": [*lookups(), step(4, "combine", {"values": ["$1", "$2", "$3"], "op": "sum"})],
        "answer": "$4"}
CYCLIC = {"steps": [step(1, "kb_lookup", {"entity": "Paris", "attribute": "$2"}),
                    step(2, "kb_lookup", {"entity": "$1", "attribute": "population"})],
          "answer": "$2"}
UNKNOWN = {"steps": [step(1, "teleport", {}), step(2, "combine", {"values": ["$1"], "op": "sum"})],
           "answer": "$2"}


def planner(model: Any = None, **kw: Any) -> Planner:
    mp = ModelPlanner(model) if model is not None else None
    return Planner(CATALOGUE, model=mp, fallback=htn(), **kw)


def test_a_valid_model_plan_is_used() -> None:
    m = ScriptedModel(GOOD)
    d = asyncio.run(planner(m).plan(GOAL, ALL))
    assert d.source == "model" and not d.fell_back and len(d.attempts) == 1
    assert d.plan.step(4).deps == (1, 2, 3)
    req = m.requests[0]
    assert req.response_schema is not None and req.temperature == 0.0
    assert "kb_lookup(entity: string, attribute: string)" in req.messages[0].content
    assert d.usage.total_tokens == 150


@pytest.mark.parametrize(("bad", "words"), [(CYCLIC, "form a cycle"), (UNKNOWN, "no skill")])
def test_an_invalid_model_plan_is_repaired_then_falls_back(bad: Any, words: str) -> None:
    m = ScriptedModel(bad, bad)
    log = EventLog()
    d = asyncio.run(planner(m, log=log).plan(GOAL, ALL))
    assert d.source == "htn" and d.fell_back
    assert [a.source for a in d.attempts] == ["model", "model", "htn"]
    assert any(words in i for i in d.attempts[0].issues)
    # the repair attempt was told what was wrong
    assert words in m.requests[1].messages[-1].content
    assert d.plan.digest == htn().plan(GOAL, CATALOGUE, ALL).normalised().digest
    kinds = log.kinds()
    assert kinds.count("plan.rejected") == 2 and "plan.fallback" in kinds
    assert kinds[-1] == "plan.accepted"


def test_a_repaired_plan_is_accepted() -> None:
    m = ScriptedModel("{not json", GOOD)
    d = asyncio.run(planner(m).plan(GOAL, ALL))
    assert d.source == "model" and [a.ok for a in d.attempts] == [False, True]
    assert "not JSON" in d.attempts[0].issues[0]


def test_no_model_gives_the_same_dag_every_time() -> None:
    a = asyncio.run(planner().plan(GOAL, ALL))
    b = asyncio.run(planner().plan(GOAL, ALL))
    assert a.source == b.source == "htn" and a.plan.canonical() == b.plan.canonical()
    assert not a.fell_back and a.attempts[0].source == "htn"


def test_a_model_plan_needing_an_unheld_capability_is_refused_and_replanned() -> None:
    """The team may see skills it cannot use (show_unheld): a plan that uses one is
    refused before anything runs and the model is told why."""
    web = {"steps": [*lookups("web_search"),
                     step(4, "combine", {"values": ["$1", "$2", "$3"], "op": "sum"})],
           "answer": "$4"}
    m = ScriptedModel(web, GOOD)
    held = frozenset({"kb.read"})
    d = asyncio.run(planner(m, show_unheld=True).plan(GOAL, held))
    assert d.source == "model" and [a.ok for a in d.attempts] == [False, True]
    assert d.attempts[0].issues[0] == ("plan step 1 (web_search): needs capability net, "
                                       "not held")
    assert "needs capability net" in m.requests[1].messages[-1].content
    assert {s.skill for s in d.plan.steps} == {"kb_lookup", "combine"}


def test_the_model_does_not_see_unheld_skills_by_default() -> None:
    m = ScriptedModel(GOOD)
    asyncio.run(planner(m).plan(GOAL, frozenset({"kb.read"})))
    sysmsg = m.requests[0].messages[0].content
    assert "kb_lookup" in sysmsg and "web_search" not in sysmsg


def test_a_model_device_error_falls_back() -> None:
    class Down(ScriptedModel):
        async def chat(self, request: ChatRequest) -> ChatResult:
            raise DeviceError("no model device")

    d = asyncio.run(planner(Down()).plan(GOAL, ALL))
    assert d.source == "htn" and d.attempts[0].issues == ("no model device",)


def test_the_simulated_endpoints_plans_are_judged_like_any_other() -> None:
    """The simulated endpoint answers a schema with an arbitrary instance of it (its
    strings ignore patterns, so a "$N" answer is rarely one): parsing and validation
    decide, and the fallback plans."""
    async def go() -> Any:
        async with SimServer(seed=9) as srv:
            d = HttpDriver(srv.url, "sim-1")
            try:
                return await planner(d).plan(GOAL, ALL), srv.requests
            finally:
                await d.aclose()

    d, requests = asyncio.run(go())
    assert requests == len([a for a in d.attempts if a.source == "model"]) >= 1
    model = [a for a in d.attempts if a.source == "model"]
    assert all(a.text.startswith("{") for a in model)  # JSON, shaped by the schema
    assert d.plan is not None and (d.source == "model") == (not d.fell_back)
    if d.fell_back:
        assert all(not a.ok and a.issues for a in model)


def test_no_plan_at_all_is_a_clear_error() -> None:
    with pytest.raises(NoSuchObject) as ei:
        asyncio.run(planner().plan("Sing a song", frozenset()))
    assert "no method decomposes" in str(ei.value)
    with pytest.raises(NoSuchObject):
        asyncio.run(Planner(CATALOGUE, model=ModelPlanner(ScriptedModel(UNKNOWN, UNKNOWN)))
                    .plan(GOAL, ALL))


# -- solve: execute and replan ------------------------------------------------------------------


def test_solve_replans_around_a_failing_skill_and_reuses_results() -> None:
    r = Runner(fail={"web_search": DeviceError("search backend down")})
    p = planner(log=EventLog())
    sol = asyncio.run(p.solve(GOAL, lambda: ALL, r))
    assert sol.ok and sol.answer == pytest.approx(5.6) and sol.replans == 1
    assert sol.source == "htn"
    assert [s.skill for s in sol.plan.steps if s.skill != "combine"] == ["kb_lookup"] * 3
    kinds = p.log.kinds()
    assert "plan.replanning" in kinds and kinds[-1] == "plan.solved"


def test_solve_checks_the_result_and_replans_within_the_bound() -> None:
    wrong = {"steps": [*lookups(), step(4, "combine", {"values": ["$1", "$2", "$3"],
                                                       "op": "max"})], "answer": "$4"}
    m = ScriptedModel(wrong, wrong, wrong, wrong)
    calls = []

    def accept(answer: Any, plan: Any, res: Any) -> list[str]:
        calls.append(answer)
        return [] if answer == pytest.approx(5.6) else [f"{answer} is not the total"]

    r = Runner()
    sol = asyncio.run(planner(m, repairs=0).solve(GOAL, lambda: ALL, r, accept=accept))
    # round 1: the model's max plan runs, its result is rejected; round 2: the model
    # repeats it (refused: it already failed), the HTN plan runs and is accepted
    assert sol.ok and sol.source == "htn" and calls == [2.8, pytest.approx(5.6)]
    assert r.skills().count("combine") == 2
    assert r.skills().count("kb_lookup") == 3  # the lookups ran once, then were reused
    bad = asyncio.run(planner(repairs=0).solve(GOAL, lambda: ALL, Runner(),
                                               accept=lambda a, p, r: ["never"],
                                               max_replans=2))
    # without a model the second plan would be the same one: it is not run again
    assert not bad.ok and len(bad.executions) == 1 and "already failed" in str(bad.error)


def test_solve_refuses_a_capability_revoked_after_planning_then_replans() -> None:
    asked = []

    def held() -> frozenset[str]:  # "net" is revoked right after the first plan is made
        asked.append(1)
        return ALL if len(asked) == 1 else ALL - {"net"}

    r = Runner()
    p = planner()
    sol = asyncio.run(p.solve(GOAL, held, r))
    assert sol.ok and sol.answer == pytest.approx(5.6) and sol.replans == 1
    assert sol.decisions[0].plan.step(1).skill == "web_search"
    assert "web_search" not in r.skills()  # refused, never run
    assert r.skills().count("kb_lookup") == 3
    kinds = p.log.kinds()
    assert "plan.step.refused" in kinds and "plan.replanning" in kinds


def test_steps_the_answer_does_not_need_are_pruned() -> None:
    extra = {"steps": [*GOOD["steps"],  # type: ignore[list-item]
                       step(5, "combine", {"values": ["$4", "$1"], "op": "max"}),
                       step(6, "kb_lookup", {"entity": "Oslo", "attribute": "height"})],
             "answer": "$4"}
    log = EventLog()
    d = asyncio.run(planner(ScriptedModel(extra), log=log).plan(GOAL, ALL))
    assert d.source == "model" and [s.id for s in d.plan.steps] == [1, 2, 3, 4]
    pruned = [e for e in log.events if e.kind == "plan.pruned"]
    assert pruned and pruned[0].data["dropped"] == [5, 6]
