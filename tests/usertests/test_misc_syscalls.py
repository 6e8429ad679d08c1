"""User tests (SDK only): yield, declared state, operator control, condition signal, shutdown."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import InvalidArgument, NoSuchAgent, PermissionDenied
from aios.sdk import Context
from aios.sdk import syscalls as sc


def test_yield_lets_others_run(run_agents) -> None:
    order: list[str] = []

    async def other(ctx: Context):
        order.append("other")

    async def main(ctx: Context):
        await ctx.spawn(other)
        order.append("main-before")
        await ctx.yield_()
        order.append("main-after")
        return order

    assert only(run_agents(main)) == ["main-before", "other", "main-after"]


def test_set_state_replaces_declared_state(run_agents) -> None:
    async def main(ctx: Context):
        await sc.agent_set_state({"a": 1})
        with pytest.raises(InvalidArgument):
            await sc.agent_set_state(["not", "a", "dict"])
        with pytest.raises(InvalidArgument):
            await sc.agent_set_state({"f": object()})
        return dict(ctx.state)

    assert only(run_agents(main)) == {"a": 1}


def test_agent_control_needs_admin(run_agents) -> None:
    async def idle(ctx: Context):
        await ctx.recv()

    async def operator(ctx: Context):
        target = int(ctx.spec["target"])
        ctl, ep = await sc.agent_control(2, target)
        await ctx.send(ep, b"hello")
        await ctx.kill(ctl)
        with pytest.raises(NoSuchAgent):
            await sc.agent_control(2, 999_999)
        return "controlled"

    async def main(ctx: Context):
        victim = await ctx.spawn(idle)
        with pytest.raises(PermissionDenied):
            await sc.agent_control(2, victim.aid)  # no ADMIN here
        return victim.aid

    res = run_agents(main)
    (r,) = res.values()
    assert r["fault"] is None

    # an ADMIN agent (the daemon's console has this authority) may take control of any agent
    res2 = run_agents(operator, rights=["ADMIN", "KILL_AGENT"], spec={"target": r["exit"]})
    assert only(res2) == "controlled"


def test_condition_signal_wakes_one(run_agents) -> None:
    async def waiter(ctx: Context):
        m = (await ctx.recv()).cap
        c = (await ctx.recv()).cap
        await sc.mutex_lock(m)
        await ctx.send(ctx.slots.parent, b"waiting")
        await sc.cond_wait(c, m)
        await sc.mutex_unlock(m)
        return "woken"

    async def main(ctx: Context):
        m, c = await sc.mutex_create(), await sc.cond_create()
        w = await ctx.spawn(waiter)
        await ctx.grant(m, w.ep)
        await ctx.grant(c, w.ep)
        await ctx.recv()
        await sc.mutex_lock(m)
        woke = await sc.cond_signal(c)
        await sc.mutex_unlock(m)
        return woke, (await ctx.wait(w.aid))[1]["exit"]

    woke, status = only(run_agents(main))
    assert status == "woken" and woke is None  # requeued onto the held mutex, woken at unlock


def test_kernel_shutdown_needs_admin(kernel, run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(PermissionDenied):
            await sc.kernel_shutdown(2)
        return "refused"

    assert only(run_agents(main)) == "refused"

    async def admin(ctx: Context):
        await sc.kernel_shutdown(2)
        await ctx.sleep(3600)  # the kernel stops before this returns

    run_agents(admin, rights=["ADMIN"])
    assert kernel.stopping
