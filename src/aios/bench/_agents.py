"""Agents used by the spawn and xproc benchmarks (run inside sandboxes and workers)."""

from __future__ import annotations

import time
import types
from typing import Any

NULL, REPORT, PARK = 0, 1, 2


@types.coroutine
def trap(sysno: int, *args: Any) -> Any:
    return (yield (sysno, args))


async def idle() -> None:
    await trap(NULL)
    await trap(PARK)  # never answered: an idle agent


async def hello() -> None:
    await trap(NULL)


async def null_loop(n: int, warmup: int) -> None:
    for _ in range(warmup):
        await trap(NULL)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await trap(NULL)
        samples.append(clock() - t0)
    samples.sort()
    await trap(REPORT, samples[len(samples) // 2], samples[len(samples) * 99 // 100])


async def pipelined(total: int, window: int) -> None:
    """Pipelined null syscalls through the agent-side client (many seqs in flight)."""
    from aios.sandbox.channel import current_client

    client = current_client()
    assert client is not None
    calls = [(NULL, ())] * window
    t0 = time.perf_counter_ns()
    done = 0
    while done < total:
        client.call_many(calls)
        done += window
    await trap(REPORT, done, time.perf_counter_ns() - t0)
