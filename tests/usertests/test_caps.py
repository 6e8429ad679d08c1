"""User tests (SDK only): capabilities."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import InvalidArgument, InvalidCapability, PermissionDenied
from aios.sdk import Context


async def holder(ctx: Context):
    """Receive a capability, use it when told, report the result."""
    msg = await ctx.recv()
    slot = msg.cap
    results = []
    while True:
        m = await ctx.recv()
        if m.payload == b"use":
            try:
                await ctx.send(slot, b"ping")
                results.append("ok")
            except (InvalidCapability, PermissionDenied) as e:
                results.append(e.name)
        elif m.payload == b"done":
            return results


def test_grant_then_revoke_takes_effect(run_agents) -> None:
    async def main(ctx: Context):
        h = await ctx.spawn(holder)
        mine = await ctx.mint(ctx.slots.mailbox, ["WRITE", "GRANT"])
        await ctx.grant(mine, h.ep, ["WRITE"])
        await ctx.send(h.ep, b"use")
        await ctx.sleep(0.01)
        n = await ctx.revoke(mine)
        await ctx.send(h.ep, b"use")
        await ctx.send(h.ep, b"done")
        _, st = await ctx.wait(h.aid)
        # the pings that got through are in our mailbox
        return n, st["exit"]

    assert only(run_agents(main)) == (1, ["ok", "EBADCAP"])


def test_mint_narrows_and_badges(run_agents) -> None:
    async def main(ctx: Context):
        s = await ctx.mint(ctx.slots.mailbox, ["READ", "ADMIN"])
        info = await ctx.inspect(s)
        b = await ctx.mint(ctx.slots.mailbox, ["WRITE"], badge=42)
        c = await ctx.copy(b)
        with pytest.raises(InvalidArgument):
            await ctx.mint(b, ["WRITE"], badge=43)
        await ctx.send(c, b"x")
        m = await ctx.recv()
        return info["rights"], (await ctx.inspect(c))["badge"], m.badge

    assert only(run_agents(main)) == (["READ"], 42, 42)


def test_grant_requires_grant_right(run_agents) -> None:
    async def main(ctx: Context):
        h = await ctx.spawn(holder)
        no_grant = await ctx.mint(ctx.slots.mailbox, ["WRITE"])
        with pytest.raises(PermissionDenied):
            await ctx.grant(no_grant, h.ep)
        plain_ep = await ctx.mint(h.ep, ["WRITE"])
        with pytest.raises(PermissionDenied):
            await ctx.grant(ctx.slots.mailbox, plain_ep)  # endpoint without GRANT
        await ctx.kill(h.ctl)
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_delete_and_bad_slots(run_agents) -> None:
    async def main(ctx: Context):
        s = await ctx.copy(ctx.slots.mailbox)
        await ctx.delete(s)
        with pytest.raises(InvalidCapability):
            await ctx.inspect(s)
        for bad in (-1, 4096, "1", None, 3.0):
            with pytest.raises(InvalidCapability):
                await ctx.inspect(bad)  # type: ignore[arg-type]
        kinds = sorted({c["kind"] for c in await ctx.caps()})
        return kinds

    assert only(run_agents(main)) == ["AGENT", "AUTHORITY", "DIRECTORY", "ENDPOINT", "TOPIC"]


def test_wrong_kind_is_refused(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(InvalidCapability):
            await ctx.send(ctx.slots.authority, b"x")
        with pytest.raises(InvalidCapability):
            await ctx.map(ctx.slots.mailbox)  # an endpoint is not memory
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_quota_mint_is_capped_by_parent(run_agents) -> None:
    async def main(ctx: Context):
        s = await ctx.mint(ctx.slots.authority, ["ALLOC_MEMORY"], quota={"memory": 1 << 40})
        info = await ctx.inspect(s)
        mine = await ctx.inspect(ctx.slots.authority)
        with pytest.raises(InvalidArgument):
            await ctx.mint(ctx.slots.mailbox, ["READ"], quota={"memory": 1})
        return info["quota"]["memory"] == mine["quota"]["memory"]

    assert only(run_agents(main)) is True
