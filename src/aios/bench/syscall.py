"""``aios bench syscall``: the cost of a null syscall (AgentSelf, like getpid).

In-process: an agent traps ``N`` times; batches of 1,000 traps are timed and
the median batch gives ``inproc_null_p50_ns``.  The baseline is a bare Python
method call timed the same way in the same run.  Whitepaper target: < 1 µs.
Cross-process figures are added: ``xproc_*`` from :mod:`aios.bench.xproc`
(an isolated agent against a minimal kernel-side channel, and the raw
socketpair echo baseline), and ``kernel_xproc_*``, the same null syscall from
an isolated agent served by this kernel's full remote dispatch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.sdk import syscalls as sc

BATCH = 1000


def _baseline(batches: int) -> float:
    class Obj:
        def m(self) -> int:
            return 1

    o = Obj()
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(BATCH):
            o.m()
        samples.append((time.perf_counter_ns() - t0) / BATCH)
    return statistics.median(samples)


def _inproc(batches: int, kw: dict[str, Any] | None = None) -> float:
    return statistics.median(_inproc_samples(batches, kw))


def _inproc_samples(batches: int, kw: dict[str, Any] | None = None,
                    clock: Callable[[], int] = time.perf_counter_ns) -> list[float]:
    """Nanoseconds per null syscall, one sample per batch of 1,000 (``clock``: wall time,
    or ``time.thread_time_ns`` for the kernel thread's CPU time)."""
    samples: list[float] = []

    async def agent(ctx: Any) -> None:
        null = sc.agent_self
        for _ in range(batches):
            t0 = clock()
            for _ in range(BATCH):
                await null()
            samples.append((clock() - t0) / BATCH)

    k = start_kernel(arena_bytes=1 << 24, **(kw or {}))
    try:
        run_sync(run_async(k, agent))
    finally:
        k.close()
    return samples


def _kernel_xproc() -> dict[str, float]:
    """The same null syscall from an isolated agent, through this kernel's remote dispatch."""
    from aios.kernel.clock import MonotonicClock

    out: dict[str, float] = {}

    async def main(ctx: Any) -> None:
        c = await ctx.spawn("aios.demos.remote_agents:null_timing", executor="isolated", spec={"n": 5000})
        _, st = await ctx.wait(c.aid, timeout=300)
        out.update(st["exit"] or {})

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24)
    try:
        run_sync(run_async(k, main))
    finally:
        k.close()
    return out


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench syscall")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--no-xproc", action="store_true", help="skip the cross-process figures")
    ap.add_argument("--no-observe", action="store_true",
                    help="skip the metrics/tracing overhead ratios (aios bench observe has the detail)")
    args = ap.parse_args(argv)
    base = _baseline(args.batches)
    inproc = _inproc(args.batches)
    out: dict[str, Any] = {
        "inproc_null_p50_ns": round(inproc, 1),
        "baseline_call_p50_ns": round(base, 1),
        "inproc_ratio": round(inproc / base, 2),
    }
    if not args.no_observe:  # the null syscall with metrics / tracing (1 %) on vs off
        from aios.bench.observe import overhead_ratios

        out.update(overhead_ratios(lambda kw: _inproc_samples(max(10, args.batches // 10), kw, time.thread_time_ns),
                                   rounds=10))
    if not args.no_xproc:
        try:
            from aios.bench import xproc
        except ImportError:
            return out
        x = xproc.measure()
        out.update(x)
        kx = _kernel_xproc()
        if kx:
            out["kernel_xproc_null_p50_ns"] = kx["p50"]
            out["kernel_xproc_null_p99_ns"] = kx["p99"]
            out["kernel_xproc_ratio"] = round(kx["p50"] / x["raw_socketpair_rtt_p50_ns"], 3)
            out["kernel_xproc_pipelined_per_s"] = round(kx["pipelined"])
    return out
