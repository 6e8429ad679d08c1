"""Unit agents that misbehave on purpose, for initd's tests and demonstrations."""

from __future__ import annotations

from aios.sdk import Context


async def fail(ctx: Context) -> int:
    """Exits with status 1 at once (``Restart=on-failure`` restarts it)."""
    return 1


async def silent(ctx: Context) -> None:
    """Never makes its ready call nor pets its watchdog (a start timeout, a watchdog kill)."""
    while True:
        await ctx.sleep(3600)
