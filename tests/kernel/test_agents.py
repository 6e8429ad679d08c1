"""The lifecycle state machine: every legal transition, and illegal ones change nothing."""

from __future__ import annotations

import pytest

from aios.abi.errors import IllegalTransition, InvalidArgument, NoSuchAgent
from aios.kernel.agents import LIVE, TRANSITIONS, AgentState, AgentTable

EVENTS = sorted({e for _, e in TRANSITIONS})


@pytest.mark.parametrize("state", list(AgentState))
@pytest.mark.parametrize("event", EVENTS)
def test_transition_table_is_the_only_truth(state: AgentState, event: str) -> None:
    t = AgentTable()
    a = t.create(0, "x")
    a.status = state
    live_before = t.live
    expected = TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            t.transition(a, event)
        assert a.status is state and t.live == live_before
    else:
        assert t.transition(a, event) is expected
        assert a.status is expected


def test_live_count_follows_exit() -> None:
    t = AgentTable()
    a = t.create(0, "x")
    assert t.live == 1 and a.status in LIVE
    t.transition(a, "exit")
    assert t.live == 0
    t.transition(a, "reap")
    t.forget(a)
    with pytest.raises(NoSuchAgent):
        t.get(a.aid)


def test_children_follow_parents() -> None:
    t = AgentTable()
    p = t.create(0, "p")
    c = t.create(p.aid, "c")
    q = t.create(0, "q")
    assert c.aid in p.children
    t.reparent(c, q.aid)
    assert c.aid in q.children and c.aid not in p.children


def test_bad_ids_and_names() -> None:
    t = AgentTable()
    with pytest.raises(InvalidArgument):
        t.get("1")
    with pytest.raises(InvalidArgument):
        t.create(0, "x" * 500)
    with pytest.raises(IllegalTransition):
        t.forget(t.create(0, "alive"))


def test_a_faulted_childs_row_carries_the_file_and_line(run_agents) -> None:  # type: ignore[no-untyped-def]
    from aios.sdk import Context, syscalls

    async def boom(ctx: Context) -> None:
        raise RuntimeError("no luck")

    async def parent(ctx: Context) -> list[dict[str, object]]:
        child = await ctx.spawn(boom, name="boom")
        while True:  # a zombie until reaped: listed with its fault
            rows = [r for r in await syscalls.agent_list() if r["aid"] == child.aid]
            if rows and rows[0]["state"] != "running" and "fault" in rows[0]:
                return rows
            await ctx.yield_()

    [result] = run_agents(parent).values()
    [row] = result["exit"]
    assert row["fault"].startswith("RuntimeError: no luck at ") and f"{__file__}:" in row["fault"]
    assert row["fault"].endswith(" in boom")
