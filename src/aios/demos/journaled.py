"""Agents that show what the kernel journal keeps across a crash.

Named ``aios.demos.journaled:<name>`` so a restarted kernel can start them again from their
entry (an anonymous coroutine cannot come back).
"""

from __future__ import annotations

from aios.sdk import Context


async def keeper(ctx: Context) -> None:
    """Holds what it is given and reads nothing: capabilities granted to it and durable
    messages sent to it stay where a crash test can count them."""
    while True:
        await ctx.sleep(3600)


async def counter(ctx: Context) -> None:
    """Counts the messages it receives in ``ctx.state["n"]`` and checkpoints after each one;
    a call is answered with the count.  Restarted after a crash, it counts on from its
    latest checkpoint."""
    n = int(ctx.state.get("n", 0))
    while True:
        msg = await ctx.recv()
        if msg.payload == b"get":
            if msg.call:
                await ctx.reply(msg, str(n).encode())
            continue
        n += 1
        await ctx.checkpoint({"n": n})
        if msg.call:
            await ctx.reply(msg, str(n).encode())
