"""User tests (SDK only): restart policies, the start limit and fault domains."""

from __future__ import annotations

from runs import only

from aios.abi.errors import WouldBlock
from aios.sdk import Context


async def crashes_until_third(ctx: Context):
    """Crashes on its first two lives (it counts lives in a named shared mailbox)."""
    await ctx.send(ctx.slots.parent, b"started")
    lives = int(ctx.spec.get("lives", 2))
    slot = await ctx.lookup("lifecounter") if lives else 0
    n = await ctx.call(slot, b"+") if lives else b"0"
    if int(n) <= lives:
        raise RuntimeError(f"crash #{int(n)}")
    return "stable"


async def always_crash(ctx: Context):
    await ctx.send(ctx.slots.parent, b"started")
    raise RuntimeError("always")


async def steady(ctx: Context):
    await ctx.recv()


async def counter(ctx: Context):
    await ctx.register("lifecounter")
    n = 0
    while True:
        m = await ctx.recv()
        n += 1
        await ctx.reply(m, b"%d" % n)


async def drain(ctx: Context, sid: int) -> list[dict]:
    out = []
    while True:
        try:
            out.append(await ctx.next_event(sid, timeout=0))
        except WouldBlock:
            return out


def test_on_failure_restarts_with_backoff_until_success(run_agents) -> None:
    async def main(ctx: Context):
        await ctx.spawn(counter, directory=["READ", "WRITE"])
        sid = await ctx.subscribe("agent.**")
        c = await ctx.spawn(crashes_until_third, restart="on-failure", spec={"lives": 2})
        for _ in range(3):
            await ctx.recv(timeout=60)  # each life says it started
        await ctx.sleep(1)
        evs = await drain(ctx, sid)
        restarted = [e["data"] for e in evs if e["topic"] == "agent.lifecycle.restarted"]
        faults = [e for e in evs if e["topic"] == "agent.supervision.fault"]
        return c.aid, [r["stable"] for r in restarted], len(faults)

    aid, stables, faults = only(run_agents(main, directory=["READ", "WRITE"]))
    assert stables == [aid, aid] and faults == 2


def test_start_limit_marks_failed(run_agents) -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("agent.supervision.*")
        await ctx.spawn(always_crash, restart="always", domain="flaky")
        await ctx.sleep(120)
        evs = await drain(ctx, sid)
        starts = 0
        while True:
            try:
                await ctx.recv_nowait()
                starts += 1
            except WouldBlock:
                break
        return starts, [e["topic"] for e in evs][-1]

    starts, last = only(run_agents(main))
    assert starts == 5 and last == "agent.supervision.failed"


def test_no_policy_and_explicit_kill_do_not_restart(run_agents) -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("agent.lifecycle.restarted")
        a = await ctx.spawn(always_crash)  # restart="no"
        b = await ctx.spawn(steady, restart="always")
        await ctx.sleep(1)
        await ctx.kill(b.ctl)
        await ctx.sleep(5)
        return a.aid, len(await drain(ctx, sid))

    _, restarts = only(run_agents(main))
    assert restarts == 0


def test_crash_in_one_domain_leaves_others_running(run_agents) -> None:
    async def main(ctx: Context):
        good = await ctx.spawn(steady, restart="on-failure", domain="good")
        await ctx.spawn(always_crash, restart="always", domain="bad")
        await ctx.sleep(60)
        return (await ctx.info(good.ctl))["state"]

    assert only(run_agents(main)) == "blocked"
