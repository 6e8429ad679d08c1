"""Which scheduling group a new agent joins (kernel/lifecycle.py with kernel/sched/core.py).

A clone, and a child spawned inside its parent's quota, share the parent's
group (one CPU share for the family); a child spawned with its own quota is
not in its parent's group.
"""

from __future__ import annotations

from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.sdk import Context


def test_clones_and_quota_less_children_share_their_parents_group() -> None:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 24)
    seen: dict[str, Any] = {}

    def group_of(aid: int) -> Any:
        a = k.find(aid)
        assert a is not None and a.sched is not None
        return k.sched.stats(a.sched).get("group")

    async def idle(ctx: Context) -> None:
        await ctx.recv(timeout=1.0)

    async def parent(ctx: Context) -> None:
        if ctx.state.get("clone"):
            await ctx.recv(timeout=1.0)
            return
        inside = await ctx.spawn(idle)
        own = await ctx.spawn(idle, quota={"agents": 2, "memory": 1 << 20})
        ctx.state["clone"] = True
        twin = await ctx.clone()
        seen.update(me=group_of(ctx.aid), inside=group_of(inside.aid), own=group_of(own.aid),
                    twin=group_of(twin.aid))
        for h in (inside, own, twin):
            await ctx.wait(h.aid)

    try:
        (r,) = run_sync(run_async(k, parent, quota={"agents": 16})).values()
        assert r["fault"] is None, r
    finally:
        k.close()
    assert seen["me"] is not None
    assert seen["inside"] == seen["me"] and seen["twin"] == seen["me"]
    assert seen["own"] != seen["me"]
