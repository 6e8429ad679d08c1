"""User tests (SDK only): memory allocation, frames, mapping, pools, sharing."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi import limits
from aios.abi.errors import (
    InvalidArgument,
    InvalidCapability,
    OutOfMemory,
    PermissionDenied,
    QuotaExceeded,
)
from aios.sdk import Context
from aios.sdk import syscalls as sc


def test_alloc_write_read_free(run_agents) -> None:
    async def main(ctx: Context):
        slot, va = await ctx.alloc(10_000)
        await ctx.write(va + 5000, b"hello")
        got = await ctx.read(va + 5000, 5)
        zero = await ctx.read(va, 4)
        stat = await sc.mem_stat()
        await ctx.free(slot)
        with pytest.raises(PermissionDenied):
            await ctx.read(va, 1)
        after = await sc.mem_stat()
        return got, zero, stat["quota_used"], after["quota_used"]

    assert only(run_agents(main)) == (b"hello", b"\0" * 4, 3 * limits.PAGE_SIZE, 0)


def test_alloc_limits_and_quota(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(InvalidArgument):
            await ctx.alloc(limits.AGENT_MEM_ALLOC_MAX + 1)
        with pytest.raises(InvalidArgument):
            await ctx.alloc(0)
        await ctx.alloc(1 << 20)
        with pytest.raises(QuotaExceeded):
            await ctx.alloc(1 << 20)
        return "ok"

    assert only(run_agents(main, quota={"memory": (1 << 20) + 4096})) == "ok"


def test_alloc_needs_alloc_right(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(PermissionDenied):
            await ctx.alloc(100)
        return "ok"

    assert only(run_agents(main, rights=["SPAWN_AGENT"])) == "ok"


def test_out_of_bounds_and_bad_args(run_agents) -> None:
    async def main(ctx: Context):
        _slot, va = await ctx.alloc(100)
        with pytest.raises(PermissionDenied):
            await ctx.read(va + 90, 20)
        with pytest.raises(PermissionDenied):
            await ctx.write(0, b"x")
        with pytest.raises(InvalidArgument):
            await ctx.write(va, "str")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await ctx.read(va, -1)
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_frames_and_page_map(run_agents) -> None:
    async def main(ctx: Context):
        slot = await sc.frame_alloc(ctx.slots.authority, 2)
        va = await ctx.map(slot, 1 << 30)
        await ctx.write(va + 4096, b"frame")
        ro = await ctx.mint(slot, ["READ"])
        va2 = await ctx.map(ro)
        with pytest.raises(PermissionDenied):
            await ctx.write(va2, b"x")
        with pytest.raises(PermissionDenied):
            await ctx.map(ro, None, ["READ", "WRITE"])
        with pytest.raises(InvalidArgument):
            await ctx.map(slot, (1 << 30) + 4096)  # overlaps
        with pytest.raises(InvalidArgument):
            await ctx.map(slot, 12345)  # not aligned
        await ctx.unmap(va)
        return await ctx.read(va2 + 4096, 5)

    assert only(run_agents(main)) == b"frame"


def test_share_read_only_and_revoke(run_agents) -> None:
    async def reader(ctx: Context):
        msg = await ctx.recv()
        va = await ctx.map(msg.cap)
        seen = await ctx.read(va, 6)
        try:
            await ctx.write(va, b"evil")
            wrote = True
        except PermissionDenied:
            wrote = False
        await ctx.send(ctx.slots.parent, b"read")
        await ctx.recv()  # wait until revoked
        try:
            await ctx.read(va, 1)
            after = "still mapped"
        except PermissionDenied:
            after = "unmapped"
        return seen, wrote, after

    async def main(ctx: Context):
        slot, va = await ctx.alloc(4096)
        await ctx.write(va, b"shared")
        r = await ctx.spawn(reader)
        await ctx.share(slot, r.ep, ["READ"])
        await ctx.recv()
        await ctx.revoke(slot)
        await ctx.send(r.ep, b"go")
        return (await ctx.wait(r.aid))[1]["exit"]

    assert only(run_agents(main)) == (b"shared", False, "unmapped")


def test_share_read_write(run_agents) -> None:
    async def writer(ctx: Context):
        msg = await ctx.recv()
        va = await ctx.map(msg.cap)
        await ctx.write(va, b"from child")

    async def main(ctx: Context):
        slot, va = await ctx.alloc(4096)
        w = await ctx.spawn(writer)
        await ctx.share(slot, w.ep, ["READ", "WRITE"])
        await ctx.wait(w.aid)
        view = await ctx.view(va, 10)
        return bytes(view)

    assert only(run_agents(main)) == b"from child"


def test_pools(run_agents) -> None:
    async def main(ctx: Context):
        pslot, base = await sc.pool_create(ctx.slots.authority, 64, 3)
        offs = [await sc.agent_pool_alloc(pslot) for _ in range(3)]
        with pytest.raises(OutOfMemory):
            await sc.agent_pool_alloc(pslot)
        await ctx.write(base + offs[1], b"obj")
        await sc.pool_free(pslot, offs[1])
        with pytest.raises(InvalidArgument):
            await sc.pool_free(pslot, offs[1])
        with pytest.raises(InvalidArgument):
            await sc.pool_free(pslot, 3)
        with pytest.raises(InvalidCapability):
            await sc.agent_pool_alloc(ctx.slots.mailbox)
        again = await sc.agent_pool_alloc(pslot)
        return sorted(offs), again == offs[1]

    assert only(run_agents(main)) == ([0, 64, 128], True)


def test_view_is_read_only_for_read_only_mapping(run_agents) -> None:
    async def main(ctx: Context):
        slot, _va = await ctx.alloc(4096)
        ro = await ctx.mint(slot, ["READ"])
        va2 = await ctx.map(ro)
        v = await ctx.view(va2, 16)
        return v.readonly

    assert only(run_agents(main)) is True
