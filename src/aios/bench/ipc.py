"""``aios bench ipc``: binary IPC throughput, many senders to many receivers.

``S`` senders each push ``M`` 64-byte messages to one of ``R`` receivers
with batched sends; receivers take batches.  The baseline moves the same
number of 64-byte objects between the same number of coroutines through
plain ``collections.deque`` objects under a minimal round-robin driver, in
the same run.  Whitepaper target: 1M+ messages per second.
"""

from __future__ import annotations

import argparse
import time
import types
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.sdk import Context

PAYLOAD = b"x" * 64


def _kernel_run(senders: int, receivers: int, per_sender: int, batch: int,
                kw: dict[str, Any] | None = None, clock: Callable[[], int] = time.perf_counter_ns) -> float:
    """Messages per second (``clock``: wall time, or ``time.thread_time_ns``: the kernel
    thread's CPU time)."""
    total = senders * per_sender
    per_receiver = total // receivers

    async def receiver(ctx: Context) -> int:
        got = 0
        while got < per_receiver:
            got += len(await ctx.recv_many(4096))
        return got

    async def sender(ctx: Context) -> None:
        ep = ctx.spec["ep"]
        chunk = [PAYLOAD] * batch
        left = per_sender
        while left:
            n = min(batch, left)
            await ctx.send_many(ep, chunk[:n])
            left -= n

    times: dict[str, int] = {}

    async def main(ctx: Context) -> None:
        rs = [await ctx.spawn(receiver) for _ in range(receivers)]
        eps = [r.ep for r in rs]
        caps = []
        for i in range(senders):
            caps.append(eps[i % receivers])
        t0 = clock()
        for i in range(senders):
            # each sender gets the endpoint of its receiver in its slot 6
            await ctx.spawn(sender, caps=[[caps[i], ["WRITE"]]], spec={"ep": 6})
        for r in rs:
            await ctx.wait(r.aid)
        times["elapsed"] = clock() - t0

    k = start_kernel(arena_bytes=1 << 24, **(kw or {}))
    try:
        run_sync(run_async(k, main, quota={"agents": senders + receivers + 1}))
    finally:
        k.close()
    return total / (times["elapsed"] / 1e9)


@types.coroutine
def _switch() -> Generator[None, None, None]:
    yield


def _baseline(senders: int, receivers: int, per_sender: int, batch: int) -> float:
    total = senders * per_sender
    per_receiver = total // receivers
    queues = [deque() for _ in range(receivers)]  # type: ignore[var-annotated]

    async def sender(q: deque[bytes]) -> None:
        left = per_sender
        while left:
            n = min(batch, left)
            q.extend([PAYLOAD] * n)
            left -= n
            await _switch()

    async def receiver(q: deque[bytes]) -> None:
        got = 0
        while got < per_receiver:
            n = min(len(q), 4096)
            for _ in range(n):
                q.popleft()
            got += n
            await _switch()

    coros: deque[Any] = deque()
    for i in range(receivers):
        coros.append(receiver(queues[i]))
    for i in range(senders):
        coros.append(sender(queues[i % receivers]))
    t0 = time.perf_counter_ns()
    while coros:
        c = coros.popleft()
        try:
            c.send(None)
            coros.append(c)
        except StopIteration:
            pass
    return total / ((time.perf_counter_ns() - t0) / 1e9)


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench ipc")
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--receivers", type=int, default=8)
    ap.add_argument("--messages", type=int, default=250_000, help="per sender")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--no-observe", action="store_true",
                    help="skip the metrics/tracing overhead ratios (aios bench observe has the detail)")
    a = ap.parse_args(argv)
    kern = _kernel_run(a.senders, a.receivers, a.messages, a.batch)
    base = _baseline(a.senders, a.receivers, a.messages, a.batch)
    out: dict[str, Any] = {
        "inproc_msgs_per_s": round(kern),
        "baseline_queue_msgs_per_s": round(base),
        "inproc_ratio": round(kern / base, 3),
        "messages": a.senders * a.messages,
    }
    if not a.no_observe:  # the same traffic (a fifth of it) with metrics / tracing (1 %) on vs off
        from aios.bench.observe import overhead_ratios

        per = max(a.batch, a.messages // 5)
        out.update(overhead_ratios(
            lambda kw: [1.0 / _kernel_run(a.senders, a.receivers, per, a.batch, kw, time.thread_time_ns)]))
    return out
