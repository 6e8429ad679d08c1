"""User tests (SDK only): scheduling parameters, statistics, mutexes, semaphores, conditions."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import Deadlock, InvalidArgument, PermissionDenied, TimedOut, WouldBlock
from aios.sdk import Context
from aios.sdk import syscalls as sc


async def idle(ctx: Context):
    await ctx.recv()


def test_weight_is_capped_by_quota_and_others_need_supervisor(run_agents) -> None:
    async def main(ctx: Context):
        me = await sc.sched_set(0, {"weight": 88761})
        child = await ctx.spawn(idle, quota={"cpu_weight": 512})
        capped = await sc.sched_set(child.ctl, {"nice": -20})
        weak = await ctx.mint(child.ctl, ["READ"])
        with pytest.raises(PermissionDenied):
            await sc.sched_set(weak, {"weight": 100})
        with pytest.raises(InvalidArgument):
            await sc.sched_set(0, {"weight": 0})
        with pytest.raises(InvalidArgument):
            await sc.sched_set(0, {"class": "realtime"})
        await ctx.kill(child.ctl)
        selfish = await ctx.spawn(wants_deadline)  # default rights: no SUPERVISOR
        return me["weight"], capped["weight"], (await ctx.wait(selfish.aid))[1]["exit"]

    # the root agent's ceiling is 2048: it asks for 88761 and gets 2048
    res = run_agents(main, quota={"cpu_weight": 2048}, rights=["SPAWN_AGENT", "KILL_AGENT", "SUPERVISOR"])
    assert only(res) == (2048, 512, "refused")


async def wants_deadline(ctx: Context):
    try:
        await sc.sched_set(0, {"class": "deadline", "runtime_ns": 10_000, "deadline_ns": 100_000,
                               "period_ns": 100_000})
    except PermissionDenied:
        return "refused"
    return "admitted"


def test_deadline_class_and_stats(run_agents) -> None:
    async def main(ctx: Context):
        row = await sc.sched_set(0, {"class": "deadline", "runtime_ns": 100_000, "deadline_ns": 1_000_000,
                                     "period_ns": 1_000_000})
        from aios.abi.errors import Busy

        c = await ctx.spawn(idle)
        with pytest.raises(Busy):  # admission: 0.1 + 0.9 > 0.95
            await sc.sched_set(c.ctl, {"class": "deadline", "runtime_ns": 900_000,
                                       "deadline_ns": 1_000_000, "period_ns": 1_000_000})
        with pytest.raises(InvalidArgument):  # runtime > deadline
            await sc.sched_set(c.ctl, {"class": "deadline", "runtime_ns": 2_000_000,
                                       "deadline_ns": 1_000_000, "period_ns": 1_000_000})
        rows = await sc.sched_stats()
        await ctx.kill(c.ctl)
        return row["class"], sorted(r["aid"] for r in rows) == sorted([ctx.aid, c.aid])

    res = run_agents(main, rights=["SPAWN_AGENT", "KILL_AGENT", "SUPERVISOR"])
    assert only(res) == ("deadline", True)


def test_mutex_handoff_timeout_and_deadlock(run_agents) -> None:
    async def holder(ctx: Context):
        m = (await ctx.recv()).cap
        await sc.mutex_lock(m)
        await ctx.send(ctx.slots.parent, b"locked")
        await ctx.sleep(1)
        await sc.mutex_unlock(m)

    async def main(ctx: Context):
        m = await sc.mutex_create()
        h = await ctx.spawn(holder)
        await ctx.grant(m, h.ep)
        await ctx.recv()
        with pytest.raises(WouldBlock):
            await sc.mutex_lock(m, 0)
        with pytest.raises(TimedOut):
            await sc.mutex_lock(m, 0.5)
        t0 = await ctx.now_ns()
        await sc.mutex_lock(m)  # handed over at the holder's unlock
        waited = await ctx.now_ns() - t0
        with pytest.raises(Deadlock):
            await sc.mutex_lock(m)  # relocking your own mutex is a cycle of one
        await sc.mutex_unlock(m)
        return waited >= 400_000_000

    assert only(run_agents(main)) is True


def test_abba_deadlock_is_detected(run_agents) -> None:
    async def other(ctx: Context):
        a_slot = (await ctx.recv()).cap
        b_slot = (await ctx.recv()).cap
        await sc.mutex_lock(b_slot)
        await ctx.send(ctx.slots.parent, b"have B")
        try:
            await sc.mutex_lock(a_slot)
            return "got A"
        except Deadlock:
            return "deadlock"

    async def main(ctx: Context):
        ma, mb = await sc.mutex_create(), await sc.mutex_create()
        o = await ctx.spawn(other)
        await ctx.grant(ma, o.ep)
        await ctx.grant(mb, o.ep)
        await sc.mutex_lock(ma)
        await ctx.recv()
        try:
            await sc.mutex_lock(mb, 5)  # o holds B and waits for A: this closes the cycle
            mine = "got B"
        except Deadlock:
            mine = "deadlock"
        await sc.mutex_unlock(ma)
        return mine, (await ctx.wait(o.aid))[1]["exit"]

    mine, theirs = only(run_agents(main))
    assert "deadlock" in (mine, theirs)


def test_semaphore_and_condition(run_agents) -> None:
    async def consumer(ctx: Context):
        m = (await ctx.recv()).cap
        c = (await ctx.recv()).cap
        s = (await ctx.recv()).cap
        await sc.sem_up(s)  # tell the parent we are about to wait
        await sc.mutex_lock(m)
        await sc.cond_wait(c, m)
        await sc.mutex_unlock(m)  # we hold it again after the signal
        return "signalled"

    async def main(ctx: Context):
        m, c, s = await sc.mutex_create(), await sc.cond_create(), await sc.sem_create(0)
        k = await ctx.spawn(consumer)
        for slot in (m, c, s):
            await ctx.grant(slot, k.ep)
        await sc.sem_down(s)
        await ctx.sleep(0.1)
        await sc.mutex_lock(m)
        woken = await sc.cond_broadcast(c)
        await sc.mutex_unlock(m)
        with pytest.raises(WouldBlock):
            await sc.sem_down(s, 0)
        return woken, (await ctx.wait(k.aid))[1]["exit"]

    assert only(run_agents(main)) == (0, "signalled")  # requeued onto the held mutex


def test_dead_owner_hands_mutex_on(run_agents) -> None:
    async def dies_holding(ctx: Context):
        m = (await ctx.recv()).cap
        await sc.mutex_lock(m)
        await ctx.send(ctx.slots.parent, b"locked")
        raise RuntimeError("crash while holding the lock")

    async def main(ctx: Context):
        m = await sc.mutex_create()
        d = await ctx.spawn(dies_holding)
        await ctx.grant(m, d.ep)
        await ctx.recv()
        await sc.mutex_lock(m, 5)
        return "acquired"

    assert only(run_agents(main)) == "acquired"
