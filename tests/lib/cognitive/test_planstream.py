"""Streaming plans: steps found in JSON split anywhere, judged on arrival (forward
references refused, so streamed plans are acyclic), and run while the model is
still writing; a bad step aborts the run and closes the model's stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.abi.errors import InvalidArgument, PermissionDenied, QuotaExceeded
from aios.lib.cognitive.dagrun import EventLog, PlanRun, StepState
from aios.lib.cognitive.planner import ModelPlanner, Planner
from aios.lib.cognitive.planstream import StepStream, StreamValidator, execute_stream
from aios.lib.llm.chat import (
    FEATURES,
    ChatChunk,
    ChatRequest,
    ChatResult,
    DriverInfo,
    Usage,
    collect,
)

from .domain import ALL, CATALOGUE, Runner, htn
from .test_planner import GOAL, GOOD, step


class StreamingModel:
    """Streams a scripted answer a few characters at a time, yielding to the loop
    between pieces, and records whether the stream was closed early."""

    def __init__(self, text: str, piece: int = 7) -> None:
        self.text, self.piece = text, piece
        self.sent = 0
        self.closed_early = False
        self.requests: list[ChatRequest] = []

    def info(self) -> DriverInfo:
        return DriverInfo("scripted-stream", "1", "scripted", 1, 4096, FEATURES)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        finished = False
        try:
            for i in range(0, len(self.text), self.piece):
                await asyncio.sleep(0)
                self.sent = i + self.piece
                yield ChatChunk(self.text[i:i + self.piece])
            finished = True
            yield ChatChunk("", "stop", Usage(200, len(self.text) // 4))
        finally:
            if not finished:
                self.closed_early = True

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await collect(self.stream(request))

    async def aclose(self) -> None:
        pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=40))
def test_steps_are_found_whatever_the_chunking(cuts: list[int]) -> None:
    plan = {"steps": [*GOOD["steps"],
                      step(5, "combine", {"values": ["$4"], "op": "max",
                                          "note": 'tricky "} ] { [ \\" text'})],
            "answer": "$5"}
    text = json.dumps(plan)
    s, got, i = StepStream(), [], 0
    for c in cuts:
        got += s.feed(text[i:i + c])
        i += c
    got += s.feed(text[i:])
    assert got == plan["steps"]


def v(held: frozenset[str] = ALL, budget: int | None = None) -> StreamValidator:
    return StreamValidator(GOAL, CATALOGUE, held, budget)


def test_each_step_is_judged_on_arrival() -> None:
    val = v()
    for s in GOOD["steps"]:
        val.accept(s)
    with pytest.raises(InvalidArgument, match="not written yet"):
        v().accept(step(1, "combine", {"values": ["$2"], "op": "sum"}))
    with pytest.raises(InvalidArgument, match="not new"):
        val.accept(step(2, "combine", {"values": ["$1"], "op": "sum"}))
    with pytest.raises(InvalidArgument, match="no skill"):
        v().accept(step(1, "teleport", {}))
    with pytest.raises(PermissionDenied, match="needs capability net"):
        v(frozenset({"kb.read"})).accept(
            step(1, "web_search", {"entity": "Paris", "attribute": "population"}))
    with pytest.raises(QuotaExceeded):
        b = v(budget=200)
        for s in GOOD["steps"]:
            b.accept(s)
    with pytest.raises(InvalidArgument, match="required"):
        v().accept(step(1, "kb_lookup", {"entity": "Paris"}))
    with pytest.raises(InvalidArgument):
        v().accept({"id": "one", "skill": "kb_lookup"})
    assert val.finish(json.dumps(GOOD)).step(4).deps == (1, 2, 3)
    with pytest.raises(InvalidArgument, match="answer"):
        val.finish(json.dumps(dict(GOOD, answer="$9")))


def test_steps_start_before_the_plan_is_written() -> None:
    model = StreamingModel(json.dumps(GOOD))
    log = EventLog()
    r = Runner()

    async def go() -> Any:
        run = PlanRun.streaming(GOAL, CATALOGUE, lambda: ALL, log=log)
        return await execute_stream(run, v(), model.stream(ChatRequest(
            ModelPlanner(model).request(GOAL, CATALOGUE).messages)), r)

    res, text, usage = asyncio.run(go())
    assert res.ok and res.answer == pytest.approx(5.6) and text == json.dumps(GOOD)
    kinds = log.kinds()
    assert kinds.index("plan.step.started") < kinds.index("plan.sealed")
    # the first lookup started when only part of the plan had been written
    first_start = r.calls[0]
    assert first_start[0] == 1 and usage.prompt_tokens == 200


def test_a_bad_step_aborts_the_run_and_closes_the_stream() -> None:
    bad = {"steps": [*GOOD["steps"][:2],
                     step(3, "combine", {"values": ["$1", "$7"], "op": "sum"}),
                     step(4, "kb_lookup", {"entity": "Oslo", "attribute": "population"})],
           "answer": "$3"}
    text = json.dumps(bad)
    model = StreamingModel(text)
    r = Runner()

    async def go() -> Any:
        run = PlanRun.streaming(GOAL, CATALOGUE, lambda: ALL)
        res = await execute_stream(run, v(), model.stream(ChatRequest(
            ModelPlanner(model).request(GOAL, CATALOGUE).messages)), r)
        return run, res

    run, (res, _, _) = asyncio.run(go())
    assert not res.ok and res.failed_step is None and "not written yet" in str(res.error)
    assert model.closed_early and model.sent < len(text)  # generation stopped
    assert set(r.skills()) <= {"kb_lookup"}  # only steps that had been accepted ran
    assert run.state.get(4) is None  # never even added
    assert all(st is StepState.DONE for st in run.state.values())


def test_solve_streams_then_replans_reusing_results() -> None:
    bad = {"steps": [*GOOD["steps"][:3], step(4, "combine", {"values": ["$1", "$2", "$3"],
                                                             "op": "cube"})],
           "answer": "$4"}
    model = StreamingModel(json.dumps(bad))
    p = Planner(CATALOGUE, model=ModelPlanner(model), fallback=htn(), repairs=0)
    r = Runner()
    sol = asyncio.run(p.solve(GOAL, lambda: frozenset({"kb.read"}), r, stream=True))
    assert sol.ok and sol.answer == pytest.approx(5.6) and sol.source == "htn"
    assert sol.decisions[0].attempts[0].issues and not sol.decisions[0].attempts[0].ok
    assert r.skills().count("kb_lookup") == 3  # streamed lookups ran once, then were reused
    good = StreamingModel(json.dumps(GOOD))
    p2 = Planner(CATALOGUE, model=ModelPlanner(good), fallback=htn())
    sol2 = asyncio.run(p2.solve(GOAL, lambda: ALL, Runner(), stream=True))
    assert sol2.ok and sol2.source == "model" and sol2.replans == 0
