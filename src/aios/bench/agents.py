"""``aios bench agents``: how fast agents spawn and how much memory each costs.

A parent spawns ``--count`` agents that each park in ``recv``; spawn rate is
count over wall time, and ``bytes_per_agent`` is the growth of this process's
resident set divided by the count.  Whitepaper target: 10,000+ agents at
under 10 MB each; the goal here is 50 KB.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.sdk import Context


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _idle(ctx: Context) -> None:
    await ctx.recv()


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench agents")
    ap.add_argument("--count", type=int, default=10_000)
    a = ap.parse_args(argv)
    out: dict[str, Any] = {}

    async def parent(ctx: Context) -> None:
        gc.collect()
        before = _rss()
        t0 = time.perf_counter_ns()
        for _ in range(a.count):
            await ctx.spawn(_idle)
        await ctx.yield_()
        dt = time.perf_counter_ns() - t0
        for _ in range(3):
            await ctx.yield_()  # let every child run up to its first recv
        gc.collect()
        out["spawn_per_s"] = round(a.count / (dt / 1e9))
        out["bytes_per_agent"] = round((_rss() - before) / a.count)
        out["live_agents"] = (await ctx.stats())["agents_live"]

    k = start_kernel(arena_bytes=1 << 24)
    try:
        run_sync(run_async(k, parent, quota={"agents": a.count + 1, "memory": 1 << 20}))
    finally:
        k.close()
    return {"count": a.count, **out}
