"""User tests (SDK only): the event bus."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import InvalidArgument, NoSuchObject, PermissionDenied, TimedOut, WouldBlock
from aios.sdk import Context


async def quick(ctx: Context):
    return 1


def test_lifecycle_events_are_published(run_agents) -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("agent.lifecycle.*")
        c = await ctx.spawn(quick, name="q")
        await ctx.wait(c.aid)
        topics = []
        while True:
            try:
                ev = await ctx.next_event(sid, timeout=0)
            except WouldBlock:
                break
            if ev["data"].get("agent") == c.aid:
                topics.append(ev["topic"])
        return topics

    assert only(run_agents(main)) == ["agent.lifecycle.spawned", "agent.lifecycle.exited"]


def test_publish_subscribe_filters_and_kernel_topics(run_agents) -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("app.**", filter={"color": "red"}, priority=5)
        await ctx.publish("app.paint", color="blue")
        await ctx.publish("app.paint", color="red", n=1)
        ev = await ctx.next_event(sid, timeout=1)
        with pytest.raises(TimedOut):
            await ctx.next_event(sid, timeout=0.1)
        with pytest.raises(PermissionDenied):
            await ctx.publish("security.violation", fake=True)
        with pytest.raises(InvalidArgument):
            await ctx.publish("app.x", blob=object())
        with pytest.raises(InvalidArgument):
            await ctx.subscribe("bad..pattern")
        stats = await ctx.unsubscribe(sid)
        with pytest.raises(NoSuchObject):
            await ctx.next_event(sid)
        return ev["data"], ev["source"] == ctx.aid, stats["delivered"]

    assert only(run_agents(main)) == ({"color": "red", "n": 1}, True, 1)


def test_overflow_counts_drops(run_agents) -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("app.tick", depth=4)
        for i in range(10):
            await ctx.publish("app.tick", i=i)
        first = await ctx.next_event(sid)
        stats = await ctx.unsubscribe(sid)
        return first["data"]["i"], stats["dropped"]

    assert only(run_agents(main)) == (6, 6)


def test_security_violation_event_on_capability_error(run_agents) -> None:
    async def intruder(ctx: Context):
        try:
            await ctx.send(77, b"x")
        except Exception:
            pass

    async def main(ctx: Context):
        sid = await ctx.subscribe("security.**")
        c = await ctx.spawn(intruder)
        await ctx.wait(c.aid)
        ev = await ctx.next_event(sid, timeout=1)
        return ev["topic"], ev["data"]["agent"] == c.aid, ev["data"]["error"]

    assert only(run_agents(main)) == ("security.violation", True, "EBADCAP")
