"""Executing plans: parallel where the DAG allows (on virtual time against the
simulated engine, and with asyncio), $N substitution following dependencies,
refusals that never run, failures that halt, cancellation, reuse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aios.abi.errors import AgentFault, Cancelled, DeviceError, PermissionDenied
from aios.lib.cognitive.dagrun import PlanRun, StartStep, StepState, execute
from aios.lib.cognitive.plan import Plan, Step, validate
from aios.lib.cognitive.recipes import combine
from aios.lib.cognitive.simexec import LlmWork, ToolWork, VirtualLoop, run_plan
from aios.lib.llm.simengine import EngineConfig, SimEngine

from .domain import ALL, CATALOGUE, Runner, fact, htn

GOAL = "What is the total population of Paris, Rome, Oslo and Berlin?"


def plan(held: frozenset[str] = ALL) -> Plan:
    return validate(htn().plan(GOAL, CATALOGUE, held), CATALOGUE, held)


def held_of(s: frozenset[str]) -> Any:
    return lambda: s


def test_substitution_follows_dependencies() -> None:
    r = Runner()
    res = asyncio.run(execute(PlanRun(plan(), CATALOGUE, held_of(ALL)), r))
    assert res.ok and res.answer == pytest.approx(2.1 + 2.8 + 0.7 + 3.6)
    combine_call = next(c for c in r.calls if c[1] == "combine")
    # combine started only after all four lookups finished, with their results in place
    assert r.calls.index(combine_call) == 4 and set(r.finished[:4]) == {1, 2, 3, 4}
    assert combine_call[2]["values"] == [res.results[i] for i in (1, 2, 3, 4)]
    assert combine_call[2]["values"][0] == fact("Paris", "population")


def test_independent_steps_run_concurrently() -> None:
    r = Runner(yields=5)
    asyncio.run(execute(PlanRun(plan(), CATALOGUE, held_of(ALL)), r))
    assert r.max_inflight == 4  # the four lookups were all in flight at once
    r1 = Runner(yields=5)
    asyncio.run(execute(PlanRun(plan(), CATALOGUE, held_of(ALL), max_parallel=1), r1))
    assert r1.max_inflight == 1 and r1.skills() == r.skills()


def llm_work(st: StartStep) -> LlmWork:
    if st.skill == "combine":
        return LlmWork(300, 40, combine(st.args["values"], st.args["op"]))
    return LlmWork(200, 120, fact(st.args["entity"], st.args["attribute"]))


def test_wall_time_is_close_to_the_longest_path_on_virtual_time() -> None:
    """Each step is a model call on the simulated engine: the four lookups overlap
    (continuous batching), so the plan takes about as long as lookup + combine."""
    cfg = EngineConfig(slots=8, step_tokens=512)
    alone: dict[str, int] = {}
    for skill, w in (("lookup", LlmWork(200, 120, 0)), ("combine", LlmWork(300, 40, 0))):
        loop = VirtualLoop(SimEngine(cfg))
        loop.llm(w.prompt_tokens, w.output_tokens, lambda: None)
        alone[skill] = loop.run()
    longest_path = alone["lookup"] + alone["combine"]
    sequential = 4 * alone["lookup"] + alone["combine"]
    loop = VirtualLoop(SimEngine(cfg))
    run = PlanRun(plan(), CATALOGUE, held_of(ALL))
    t = run_plan(loop, run, llm_work)
    assert run.ok and run.answer == pytest.approx(9.2)
    assert loop.llm_calls == 5
    assert longest_path <= t <= 1.2 * longest_path
    assert t < 0.5 * sequential
    # with one step at a time it is the sequential sum
    loop2 = VirtualLoop(SimEngine(cfg))
    t2 = run_plan(loop2, PlanRun(plan(), CATALOGUE, held_of(ALL), max_parallel=1), llm_work)
    assert t2 == sequential


def test_tools_overlap_on_virtual_time() -> None:
    lat = {"Paris": 3, "Rome": 5, "Oslo": 2, "Berlin": 4}

    def work(st: StartStep) -> ToolWork:
        if st.skill == "combine":
            return ToolWork(1 * SECOND, combine(st.args["values"], st.args["op"]))
        return ToolWork(lat[st.args["entity"]] * SECOND, fact(st.args["entity"],
                                                               st.args["attribute"]))

    loop = VirtualLoop(SimEngine())
    run = PlanRun(plan(), CATALOGUE, held_of(ALL))
    assert run_plan(loop, run, work) == 6 * SECOND  # the slowest lookup, then combine
    assert run.ok


SECOND = 1_000_000_000


def test_a_step_needing_an_unheld_capability_is_refused_never_run() -> None:
    p = plan()  # planned with web_search while "net" was held
    r = Runner()
    held = {"now": ALL}
    res = asyncio.run(execute(PlanRun(p, CATALOGUE, lambda: held["now"] - {"net"}), r))
    assert not res.ok and isinstance(res.error, PermissionDenied)
    assert "needs capability net" in res.error.message and res.failed_step == 1
    assert r.calls == []  # nothing ran
    assert res.states[1] is StepState.REFUSED and res.states[5] is StepState.SKIPPED


def test_capability_revoked_mid_plan_refuses_what_has_not_started() -> None:
    p = Plan("g", (Step(1, "kb_lookup", {"entity": "Paris", "attribute": "population"}),
                   Step(2, "web_search", {"entity": "Rome", "attribute": "population"}, (1,)),
                   Step(3, "combine", {"values": ["$1", "$2"], "op": "sum"})), 3)
    p = validate(p, CATALOGUE, ALL)
    held = {"caps": ALL}
    r = Runner()

    async def runner(skill: str, args: Any, step: int) -> Any:
        out = await r(skill, args, step)
        held["caps"] = ALL - {"net"}  # revoked while step 1 ran
        return out

    run = PlanRun(p, CATALOGUE, lambda: held["caps"])
    res = asyncio.run(execute(run, runner))
    assert r.skills() == ["kb_lookup"]
    assert res.states[2] is StepState.REFUSED and isinstance(res.error, PermissionDenied)
    kinds = run.log.kinds()
    assert "plan.step.refused" in kinds and kinds[-1] == "plan.failed"


def test_a_failure_halts_lets_running_steps_finish_and_skips_the_rest() -> None:
    r = Runner(fail={"web_search": DeviceError("search backend down")})
    p = validate(Plan("g", (
        Step(1, "kb_lookup", {"entity": "Paris", "attribute": "population"}),
        Step(2, "web_search", {"entity": "Rome", "attribute": "population"}),
        Step(3, "combine", {"values": ["$1", "$2"], "op": "sum"})), 3), CATALOGUE, ALL)
    memo: dict[str, Any] = {}
    res = asyncio.run(execute(PlanRun(p, CATALOGUE, held_of(ALL), memo=memo), r))
    assert not res.ok and res.failed_step == 2 and isinstance(res.error, DeviceError)
    assert res.states == {1: StepState.DONE, 2: StepState.FAILED, 3: StepState.SKIPPED}
    assert len(memo) == 1  # step 1's result is kept for a replan
    # a rerun with the memo reuses it
    r2 = Runner()
    res2 = asyncio.run(execute(PlanRun(p, CATALOGUE, held_of(ALL), memo=memo), r2))
    assert res2.ok and r2.skills() == ["web_search", "combine"]


def test_bad_results_are_faults() -> None:
    p = validate(Plan("g", (Step(1, "kb_lookup", {"entity": "Paris", "attribute": "x"}),), 1),
                 CATALOGUE, ALL)
    for bad in ({"entity": "Paris"}, {"entity": "P", "value": object()}, float("nan")):
        async def runner(skill: str, args: Any, step: int, bad: Any = bad) -> Any:
            return bad

        res = asyncio.run(execute(PlanRun(p, CATALOGUE, held_of(ALL)), runner))
        assert isinstance(res.error, AgentFault)


def test_arguments_invalid_after_substitution_are_not_run() -> None:
    p = validate(Plan("g", (Step(1, "kb_lookup", {"entity": "Paris", "attribute": "population"}),
                            Step(2, "kb_lookup", {"entity": "$1", "attribute": "population"})),
                      2), CATALOGUE, ALL)
    r = Runner()
    res = asyncio.run(execute(PlanRun(p, CATALOGUE, held_of(ALL)), r))
    assert r.skills() == ["kb_lookup"] and res.failed_step == 2
    assert "after substitution" in str(res.error)


def test_cancelling_the_execution_cancels_every_running_step() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    gate = asyncio.Event()

    async def runner(skill: str, args: Any, step: int) -> Any:
        started.append(step)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.append(step)
            raise
        return fact(args["entity"], args["attribute"])

    async def go() -> PlanRun:
        run = PlanRun(plan(), CATALOGUE, held_of(ALL))
        task = asyncio.create_task(execute(run, runner))
        while len(started) < 4:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return run

    run = asyncio.run(go())
    assert sorted(started) == sorted(cancelled) == [1, 2, 3, 4]
    assert all(isinstance(run.errors[s], Cancelled) for s in (1, 2, 3, 4))
    assert run.state[5] is StepState.SKIPPED and run.log.kinds()[-1] == "plan.failed"


def test_events_record_every_step() -> None:
    run = PlanRun(plan(), CATALOGUE, held_of(ALL))
    asyncio.run(execute(run, Runner()))
    kinds = run.log.kinds()
    assert kinds[0] == "plan.started" and kinds[-1] == "plan.finished"
    assert kinds.count("plan.step.started") == 5 == kinds.count("plan.step.finished")
    ev = run.log.events[1].event()
    assert ev["plan"] == run.id and ev["step"] == 1 and ev["skill"] == "web_search"
