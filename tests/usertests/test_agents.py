"""User tests (SDK only): spawning, killing, waiting, names, supervision, faults."""

from __future__ import annotations

import asyncio

import pytest
from runs import only

from aios.abi.errors import (
    AgentGone,
    AlreadyExists,
    InvalidArgument,
    InvalidCapability,
    NoSuchAgent,
    NoSuchObject,
    PermissionDenied,
    QuotaExceeded,
    TimedOut,
)
from aios.sdk import Agent, Context


async def sleeper(ctx: Context) -> str:
    await ctx.sleep(3600)
    return "woke"


async def returns_spec(ctx: Context) -> dict:
    return {"spec": ctx.spec, "state": dict(ctx.state), "name": ctx.name}


def test_spawn_wait_and_exit_status(run_agents) -> None:
    async def main(ctx: Context):
        child = await ctx.spawn(returns_spec, name="kid", spec={"role": "r"}, state={"n": 1})
        aid, status = await ctx.wait(child.aid)
        return aid == child.aid, status["exit"]

    ok, status = only(run_agents(main))
    assert ok and status == {"spec": {"role": "r"}, "state": {"n": 1}, "name": "kid"}


def test_spawn_needs_spawn_right(run_agents) -> None:
    async def worker(ctx: Context):
        with pytest.raises(PermissionDenied):
            await ctx.spawn(returns_spec)
        return "refused"

    async def main(ctx: Context):
        child = await ctx.spawn(worker, rights=["ALLOC_MEMORY"])
        return (await ctx.wait(child.aid))[1]["exit"]

    assert only(run_agents(main)) == "refused"


def test_spawn_quota_counts_agents_up_the_chain(run_agents) -> None:
    async def parent(ctx: Context):
        kids = [await ctx.spawn(sleeper) for _ in range(2)]
        with pytest.raises(QuotaExceeded):
            await ctx.spawn(sleeper)
        await ctx.kill(kids[0].ctl)
        await ctx.wait(kids[0].aid)
        again = await ctx.spawn(sleeper)  # the refund made room
        for c in (kids[1], again):
            await ctx.kill(c.ctl)
        return "ok"

    async def main(ctx: Context):
        p = await ctx.spawn(parent, quota={"agents": 2})
        return (await ctx.wait(p.aid))[1]["exit"]

    assert only(run_agents(main)) == "ok"


def test_spawn_bad_options(run_agents) -> None:
    async def main(ctx: Context):
        for bad in ({"bogus": 1}, {"quota": {"memory": -1}}, {"rights": ["FLY"]}, {"state": {"f": object()}}):
            with pytest.raises(InvalidArgument):
                await ctx.spawn(returns_spec, **bad)
        with pytest.raises(InvalidArgument):
            await ctx.spawn("no_such_module_xyz:main")
        with pytest.raises(InvalidCapability):
            await ctx.spawn(returns_spec, authority=99)
        return len(await ctx.caps())

    assert only(run_agents(main)) >= 6


def test_kill_needs_kill_right_and_target(run_agents) -> None:
    async def main(ctx: Context):
        c = await ctx.spawn(sleeper)
        weak = await ctx.mint(c.ctl, ["READ"])
        with pytest.raises(PermissionDenied):
            await ctx.kill(weak)
        await ctx.kill(c.ctl)
        _aid, st = await ctx.wait(c.aid)
        with pytest.raises((AgentGone, InvalidCapability)):
            await ctx.kill(c.ctl)
        return st["fault"]

    assert only(run_agents(main)).startswith("killed by")


def test_wait_child_failures(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(NoSuchAgent):
            await ctx.wait()
        c = await ctx.spawn(sleeper)
        with pytest.raises(NoSuchAgent):
            await ctx.wait(c.aid + 100)
        with pytest.raises(TimedOut):
            await ctx.wait(c.aid, timeout=1.0)
        await ctx.kill(c.ctl)
        return (await ctx.wait())[0] == c.aid

    assert only(run_agents(main)) is True


def test_info_and_self(run_agents) -> None:
    async def main(ctx: Context):
        me = await ctx.info()
        c = await ctx.spawn(sleeper, name="zz")
        info = await ctx.info(c.ctl)
        await ctx.kill(c.ctl)
        from aios.sdk import syscalls as sc

        return me["aid"] == ctx.aid == await sc.agent_self(), info["name"], info["parent"] == ctx.aid

    assert only(run_agents(main)) == (True, "zz", True)


def test_register_and_lookup(run_agents) -> None:
    class Greeter(Agent):
        async def on_start(self) -> None:
            await self.ctx.register("greeter")

        async def on_message(self, msg):
            return b"hello " + msg.payload

    async def main(ctx: Context):
        g = await ctx.spawn(Greeter, directory=["READ", "WRITE"])
        await ctx.sleep(0.01)
        slot = await ctx.lookup("greeter")
        out = await ctx.call(slot, b"you")
        with pytest.raises(NoSuchObject):
            await ctx.lookup("nobody")
        await ctx.kill(g.ctl)
        return out

    assert only(run_agents(main, directory=["READ", "WRITE"])) == b"hello you"


def test_register_needs_directory_write(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(PermissionDenied):
            await ctx.register("mine")  # the default directory capability is READ only
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_register_twice_is_refused(run_agents) -> None:
    async def a(ctx: Context):
        await ctx.register("dup")
        with pytest.raises(AlreadyExists):
            await ctx.register("dup")
        return "ok"

    assert only(run_agents(a, directory=["READ", "WRITE"])) == "ok"


def test_supervisor_adopts_orphans(run_agents) -> None:
    async def middle(ctx: Context):
        await ctx.spawn(sleeper, name="grandchild")
        return "middle done"

    async def main(ctx: Context):
        await ctx.become_supervisor()
        m = await ctx.spawn(middle)
        await ctx.wait(m.aid)
        kids = [r for r in await __import__("aios.sdk.syscalls", fromlist=["x"]).agent_list(2)]
        return sorted(r["name"] for r in kids if r["state"] != "dead")

    res = run_agents(main, rights=["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT", "SUPERVISOR"])
    assert only(res) == ["grandchild"]


def test_supervisor_register_needs_right(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(PermissionDenied):
            await ctx.become_supervisor()
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_crash_becomes_zombie_with_fault_event(kernel, run_agents) -> None:
    async def crasher(ctx: Context):
        raise ValueError("boom")

    async def main(ctx: Context):
        sid = await ctx.subscribe("agent.fault")
        c = await ctx.spawn(crasher)
        ev = await ctx.next_event(sid, timeout=5)
        _aid, st = await ctx.wait(c.aid)
        return ev["data"]["agent"] == c.aid, st["fault"]

    ok, fault = only(run_agents(main))
    assert ok and fault.startswith("ValueError: boom at ") and fault.endswith(" in crasher")  # where it was raised
    assert kernel.stats["faults"] == 1


def test_system_exit_in_agent_does_not_stop_kernel(run_agents) -> None:
    async def quitter(ctx: Context):
        raise SystemExit(3)

    async def main(ctx: Context):
        c = await ctx.spawn(quitter)
        return (await ctx.wait(c.aid))[1]["fault"]

    assert "SystemExit" in only(run_agents(main))


def test_agent_may_await_asyncio_futures(run_agents) -> None:
    async def io_agent(ctx: Context):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 41)
        v = await fut
        return v + 1

    assert only(run_agents(io_agent)) == 42


def test_exit_syscall(run_agents) -> None:
    async def main(ctx: Context):
        await ctx.exit({"code": 7})
        return "unreachable"

    assert only(run_agents(main)) == {"code": 7}
