"""``aios bench syscall``: the cost of a null syscall (AgentSelf, like getpid).

In-process: an agent traps ``N`` times; batches of 1,000 traps are timed and
the median batch gives ``inproc_null_p50_ns``.  The baseline is a bare Python
method call timed the same way in the same run.  Whitepaper target: < 1 µs.
If the cross-process executor is installed, its figures (``xproc_*``) from
``aios.bench.xproc`` are added.
"""

from __future__ import annotations

import argparse
import statistics
import time
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


def _inproc(batches: int) -> float:
    samples: list[float] = []

    async def agent(ctx: Any) -> None:
        null = sc.agent_self
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in range(BATCH):
                await null()
            samples.append((time.perf_counter_ns() - t0) / BATCH)

    k = start_kernel(arena_bytes=1 << 24)
    try:
        run_sync(run_async(k, agent))
    finally:
        k.close()
    return statistics.median(samples)


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench syscall")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--no-xproc", action="store_true", help="skip the cross-process figures")
    args = ap.parse_args(argv)
    base = _baseline(args.batches)
    inproc = _inproc(args.batches)
    out: dict[str, Any] = {
        "inproc_null_p50_ns": round(inproc, 1),
        "baseline_call_p50_ns": round(base, 1),
        "inproc_ratio": round(inproc / base, 2),
    }
    if not args.no_xproc:
        try:
            from aios.bench import xproc
        except ImportError:
            return out
        out.update(xproc.run([]))
    return out
