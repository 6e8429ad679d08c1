"""A revoke that dooms thousands of agents kills them a slice at a time.

The colony's authority is revoked with 3,000 agents below it.  A bystander that
only yields must run between the slices (it sees the number still sentenced
fall in steps of about :data:`~aios.abi.limits.DOOM_BATCH`, never all at once),
and a sentenced agent that is woken after its sentence never runs again.  With
the kills done inside the revoking step (the kernel before this change) the
bystander never sees a sentence pending.
"""

from __future__ import annotations

from aios.abi import limits
from aios.abi.errors import AIOSError
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.agents import Agent
from aios.kernel.clock import MonotonicClock
from aios.kernel.doom import DoomQueue
from aios.sdk import Context

N = 3000


def test_doom_queue_keeps_order_and_first_reason() -> None:
    q = DoomQueue()
    a, b, c = Agent(1, 0, "a"), Agent(2, 0, "b"), Agent(3, 0, "c")
    assert q.sentence(a, "first") and q.sentence(b, "x") and q.sentence(c, "y")
    assert not q.sentence(a, "second")
    assert q.reason(1) == "first" and len(q) == 3 and 2 in q
    q.discard(2)  # died another way
    assert [(x.aid, r) for x, r in q.take(5)] == [(1, "first"), (3, "y")]
    assert len(q) == 0 and not q.take(1)


def test_a_revoke_of_3000_descendants_lets_a_bystander_run_between_slices() -> None:
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 26)  # EEVDF needs time to pass
    ran_after_sentence: list[int] = []
    seen: list[int] = []

    async def sleeper(ctx: Context) -> None:
        await ctx.recv()
        ran_after_sentence.append(ctx.aid)  # only a message sent after the revoke wakes it

    async def colony(ctx: Context) -> int:
        handles = [await ctx.spawn(sleeper) for _ in range(N)]
        await ctx.send(ctx.slots.parent, b"ready")
        await ctx.recv()  # the authority their quota charges sit on is revoked
        for h in handles[::300]:  # wake some of the sentenced: they must not run
            try:
                await ctx.send(h.ep, b"wake")
            except AIOSError:
                pass  # already killed
        for _ in range(N):
            await ctx.wait(timeout=60)
        return N

    async def bystander(ctx: Context) -> None:
        await ctx.send(ctx.slots.parent, b"running")
        await ctx.recv()  # sent right after the revoke
        while k.doomed:
            seen.append(len(k.doomed))
            await ctx.yield_()

    async def main(ctx: Context) -> None:
        c = await ctx.spawn(colony, quota={"agents": N + 8})
        assert (await ctx.recv()).payload == b"ready"
        b = await ctx.spawn(bystander)
        assert (await ctx.recv()).payload == b"running"
        # the colony's authority derives from this one and pays for the 3,000
        assert await ctx.revoke(ctx.slots.authority) >= N
        await ctx.send(c.ep, b"revoked")
        await ctx.send(b.ep, b"revoked")
        _, st = await ctx.wait(c.aid)
        assert st["fault"] is None and st["exit"] >= N, st
        _, st = await ctx.wait(b.aid)
        assert st["fault"] is None, st

    try:
        (r,) = run_sync(run_async(k, main, quota={"agents": N + 64})).values()
        assert r["fault"] is None, r
        assert not ran_after_sentence
        # it ran between slices, seeing the sentences carried out a few slices at a time
        assert len(set(seen)) >= N // limits.DOOM_BATCH // 4, seen
        assert k.agents.live == 1 and not k.doomed  # init only: every sentence carried out
    finally:
        k.close()
