"""``aios bench fairness``: real CPU-bound in-process agents under the EEVDF class.

Three agents with weights {1024, 820, 335} burn CPU in small chunks, trapping
between chunks (an in-process agent is preempted only at a trap).  After
``--seconds`` a controller reads each one's CPU time from the scheduler's
statistics.  Shares should be ``w_i / sum(w)`` = 0.4699 / 0.3763 / 0.1537;
``max_share_error`` is the largest absolute difference (target <= 0.02).
A second run with equal weights gives Jain's fairness index (target >= 0.99).
"""

from __future__ import annotations

import argparse
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.sdk import Context
from aios.sdk import syscalls as sc


async def _burner(ctx: Context) -> None:
    x = 0
    while True:
        for i in range(200):  # ~10-20 µs of work between traps
            x += i * i
        await sc.agent_self()


def _measure(weights: list[int], seconds: float) -> list[int]:
    runtimes: list[int] = []

    async def controller(ctx: Context) -> None:
        kids = [await ctx.spawn(_burner, weight=w) for w in weights]
        await ctx.sleep(seconds)
        for c in kids:
            (row,) = await sc.sched_stats(c.ctl)
            runtimes.append(int(row["runtime_ns"]))
        for c in kids:
            await ctx.kill(c.ctl)

    k = start_kernel(arena_bytes=1 << 24)
    try:
        run_sync(run_async(k, controller, weight=88761, rights=["SPAWN_AGENT", "KILL_AGENT"]))
    finally:
        k.close()
    return runtimes


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench fairness")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    weights = [1024, 820, 335]
    rt = _measure(weights, a.seconds)
    total = sum(rt)
    shares = [r / total for r in rt]
    ideal = [w / sum(weights) for w in weights]
    eq = _measure([1024, 1024, 1024], a.seconds)
    jain = sum(eq) ** 2 / (len(eq) * sum(x * x for x in eq))
    return {
        "share_0": round(shares[0], 4),
        "share_1": round(shares[1], 4),
        "share_2": round(shares[2], 4),
        "max_share_error": round(max(abs(s - i) for s, i in zip(shares, ideal, strict=True)), 4),
        "jain_equal": round(jain, 5),
        "seconds": a.seconds,
    }
