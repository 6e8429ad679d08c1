"""User tests (SDK only): binary IPC."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi import limits
from aios.abi.errors import (
    AgentGone,
    InvalidArgument,
    InvalidCapability,
    MessageTooLarge,
    NoSuchObject,
    TimedOut,
    WouldBlock,
)
from aios.sdk import Agent, Context


class Collector(Agent):
    """Replies to a call with everything received so far (after draining)."""

    async def on_start(self) -> None:
        self.state["got"] = []

    async def on_message(self, msg):
        if msg.call:
            return b",".join(self.state["got"])
        self.state["got"].append(msg.payload)
        return None


def test_send_recv_fifo_and_badges(run_agents) -> None:
    async def main(ctx: Context):
        c = await ctx.spawn(Collector)
        for i in range(50):
            await ctx.send(c.ep, b"%d" % i)
        got = await ctx.call(c.ep, b"?")
        await ctx.kill(c.ctl)
        return got

    assert only(run_agents(main)) == b",".join(b"%d" % i for i in range(50))


def test_receiver_sees_sender_and_badge(run_agents) -> None:
    async def child(ctx: Context):
        await ctx.send(ctx.slots.parent, b"hi")

    async def main(ctx: Context):
        c = await ctx.spawn(child)
        msg = await ctx.recv(timeout=5)
        return msg.sender == c.aid, msg.badge == c.aid, msg.payload

    assert only(run_agents(main)) == (True, True, b"hi")


def test_payload_limit_and_types(run_agents) -> None:
    async def main(ctx: Context):
        await ctx.send(ctx.slots.mailbox, b"x" * limits.IPC_MAX_PAYLOAD)
        with pytest.raises(MessageTooLarge):
            await ctx.send(ctx.slots.mailbox, b"x" * (limits.IPC_MAX_PAYLOAD + 1))
        with pytest.raises(InvalidArgument):
            await ctx.send(ctx.slots.mailbox, "not bytes")  # type: ignore[arg-type]
        m = await ctx.recv()
        return len(m.payload)

    assert only(run_agents(main)) == limits.IPC_MAX_PAYLOAD


def test_nowait_forms_and_timeout(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(WouldBlock):
            await ctx.recv_nowait()
        with pytest.raises(TimedOut):
            await ctx.recv(timeout=0.5)
        for _ in range(limits.MAILBOX_DEPTH):
            await ctx.send_nowait(ctx.slots.mailbox, b".")
        with pytest.raises(WouldBlock):
            await ctx.send_nowait(ctx.slots.mailbox, b".")
        return len(await ctx.recv_many(limits.MAILBOX_DEPTH))

    assert only(run_agents(main)) == limits.MAILBOX_DEPTH


def test_backpressure_blocks_sender_until_room(run_agents) -> None:
    async def slow(ctx: Context):
        await ctx.sleep(1)
        n = 0
        while n < limits.MAILBOX_DEPTH + 10:
            n += len(await ctx.recv_many(64))
        return n

    async def main(ctx: Context):
        c = await ctx.spawn(slow)
        t0 = await ctx.now_ns()
        for _ in range(limits.MAILBOX_DEPTH + 10):
            await ctx.send(c.ep, b"x")  # the last ten wait for the receiver
        waited = await ctx.now_ns() - t0
        _, st = await ctx.wait(c.aid)
        return waited >= 1_000_000_000, st["exit"]

    assert only(run_agents(main)) == (True, limits.MAILBOX_DEPTH + 10)


def test_batches(run_agents) -> None:
    async def sink(ctx: Context):
        total = 0
        while total < 10_000:
            total += len(await ctx.recv_many(4096))
        return total

    async def main(ctx: Context):
        c = await ctx.spawn(sink)
        await ctx.send_many(c.ep, [b"m"] * 10_000)
        with pytest.raises(InvalidArgument):
            await ctx.send_many(c.ep, ["str"])  # type: ignore[list-item]
        return (await ctx.wait(c.aid))[1]["exit"]

    assert only(run_agents(main)) == 10_000


def test_call_reply_rules(run_agents) -> None:
    class Doubler(Agent):
        async def on_message(self, msg):
            return msg.payload * 2

    async def main(ctx: Context):
        d = await ctx.spawn(Doubler)
        r = await ctx.call(d.ep, b"ab")
        from aios.sdk import syscalls as sc

        with pytest.raises(NoSuchObject):
            await sc.ipc_reply(12345, b"forged")
        await ctx.kill(d.ctl)
        await ctx.wait(d.aid)
        with pytest.raises((AgentGone, InvalidCapability)):
            await ctx.call(d.ep, b"x", timeout=1)
        return r

    assert only(run_agents(main)) == b"abab"


def test_call_to_agent_that_dies_gets_epipe(run_agents) -> None:
    async def dies_on_message(ctx: Context):
        await ctx.recv()
        raise RuntimeError("no reply for you")

    async def main(ctx: Context):
        c = await ctx.spawn(dies_on_message)
        with pytest.raises(AgentGone):
            await ctx.call(c.ep, b"hello?")
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_blocked_sender_gets_epipe_when_receiver_dies(run_agents) -> None:
    async def never_reads(ctx: Context):
        await ctx.sleep(2)

    async def main(ctx: Context):
        c = await ctx.spawn(never_reads)
        for _ in range(limits.MAILBOX_DEPTH):
            await ctx.send(c.ep, b"x")
        with pytest.raises(AgentGone):
            await ctx.send(c.ep, b"one too many")
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_rate_quota(run_agents) -> None:
    from aios.abi.errors import QuotaExceeded

    async def chatty(ctx: Context):
        sent = 0
        try:
            for _ in range(100):
                await ctx.send_nowait(ctx.slots.mailbox, b"x")
                sent += 1
        except QuotaExceeded:
            return sent
        return -1

    async def main(ctx: Context):
        c = await ctx.spawn(chatty, quota={"ipc_rate": 10})
        return (await ctx.wait(c.aid))[1]["exit"]

    assert only(run_agents(main)) == 10
