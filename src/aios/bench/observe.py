"""``aios bench observe``: what metrics and tracing cost, against the same kernel without them.

Three kernels are measured in the same run, kept across short interleaved
rounds (the order reversed every other round) so drift on a shared machine
falls on all of them alike: **off** (nothing installed: the IPC
paths test one attribute), **metrics** (``--metrics``: the counting syscall
observer, the IPC probe and an idle HTTP server thread; one scrape per round
while the workload runs, from another thread, so the posted read is included),
and **tracing** (``--trace 0.01`` with the OpenTelemetry SDK and a batch
processor whose exporter drops spans, when the ``otel`` extra is installed;
the API's no-op provider otherwise, named in ``tracing_provider``).

Two workloads per kernel: a **null syscall** (``AGENT_SELF``, timed in
batches of 1,000) and a **call round trip** (IPC_CALL to an in-process echo
agent and its IPC_REPLY, batches of 200).  A batch is timed in the CPU time
of the thread that runs the kernel and its in-process agents
(``time.thread_time_ns``), not wall time: on a shared machine the time this
thread spends descheduled is other processes' work, not ours.  (The metrics
HTTP thread and the span exporter's thread are not in it; they work per
scrape and per exported batch, not per call.)  Batches of all rounds are
pooled per kernel; the ratios compare the lower deciles (``_p10_``), the
medians (``_p50_``, ``_ratio_median``) are reported beside them.

Headline keys: ``metrics_overhead_ratio`` and ``tracing_overhead_ratio``, the
larger of the two workloads' on/off ratios (the worse case, not an average).
``off_probe_test_ns`` is what the seams cost with everything off: the
attribute tests one call round trip makes, timed alone; ``off_probe_fraction``
is that over the call round trip.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.kmod.observe.service import OBSERVE
from aios.sdk import Agent, Context
from aios.sdk import syscalls as sc

NULL_BATCH = 1000
CALL_BATCH = 200
PROBE_TESTS_PER_CALL = 4  # call, received, replied, ended


class _Echo(Agent):
    async def on_message(self, msg: Any) -> bytes | None:
        return msg.payload if msg.call else None


def _provider() -> tuple[Any, str]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return None, "api-noop"

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    p = TracerProvider()
    p.add_span_processor(BatchSpanProcessor(Drop()))
    return p, "sdk-batch"


def _workload(nulls: list[float], calls: list[float], null_batches: int, call_batches: int,
              scraper: threading.Thread | None) -> Any:
    cpu = time.thread_time_ns  # the kernel thread's CPU time: other processes do not count

    async def main(ctx: Context) -> None:
        if scraper is not None:
            scraper.start()  # answered on the kernel thread while the workload runs
        null = sc.agent_self
        for _ in range(null_batches):
            t0 = cpu()
            for _ in range(NULL_BATCH):
                await null()
            nulls.append((cpu() - t0) / NULL_BATCH)
        e = await ctx.spawn(_Echo)
        ep = e.ep
        call = ctx.call
        for _ in range(call_batches):
            t0 = cpu()
            for _ in range(CALL_BATCH):
                await call(ep, b"ping")
            calls.append((cpu() - t0) / CALL_BATCH)
        await ctx.kill(e.ctl)
        await ctx.wait(e.aid)

    return main


class _Subject:
    """One kernel under measurement, kept across rounds; its batch times pooled."""

    def __init__(self, kw: dict[str, Any]) -> None:
        self.k = start_kernel(arena_bytes=1 << 24, **kw)
        obs = self.k.ext.get(OBSERVE)
        self.url = (f"http://{obs.address[0]}:{obs.address[1]}/metrics"
                    if obs is not None and obs.address is not None else None)
        self.nulls: list[float] = []
        self.calls: list[float] = []
        self.scrapes = 0

    def round(self, null_batches: int, call_batches: int) -> None:
        scraper = None
        if self.url is not None:
            url = self.url

            def scrape() -> None:
                urllib.request.urlopen(url, timeout=30).read()
                self.scrapes += 1

            scraper = threading.Thread(target=scrape, daemon=True)
        try:
            run_sync(run_async(self.k, _workload(self.nulls, self.calls, null_batches, call_batches, scraper)))
        finally:
            if scraper is not None and scraper.is_alive():
                scraper.join(30)


def _low(xs: list[float]) -> float:
    """The lower decile: interference on a shared machine only ever adds time."""
    return statistics.quantiles(xs, n=10)[0] if len(xs) >= 10 else min(xs)


def _probe_test_ns(n: int = 200_000) -> float:
    """The off path alone: ``registry.ipc_probe`` read and tested, as each seam does,
    less the same loop without it."""
    k = start_kernel(arena_bytes=1 << 22)
    try:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                p = k.registry.ipc_probe
                if p is not None:
                    raise AssertionError("probe installed on an unobserved kernel")
            t1 = time.perf_counter_ns()
            for _ in range(n):
                pass
            t2 = time.perf_counter_ns()
            best = min(best, max(0.0, ((t1 - t0) - (t2 - t1)) / n))
        return best
    finally:
        k.close()


def overhead_ratios(measure: Callable[[dict[str, Any]], list[float]], rounds: int = 5,
                    sample: float = 0.01) -> dict[str, Any]:
    """``metrics_overhead_ratio`` and ``tracing_overhead_ratio`` of another benchmark's
    workload: ``measure(kernel options)`` returns times (lower is better) for a kernel
    booted with those options; off, metrics and tracing run in ``rounds`` interleaved
    rounds (order reversed every other round), the times of each are pooled and their
    lower deciles compared (the minimum when there are fewer than ten)."""
    provider, _name = _provider()
    configs: dict[str, dict[str, Any]] = {
        "off": {},
        "metrics": {"metrics": "127.0.0.1:0"},
        "tracing": {"trace": sample, "trace_provider": provider},
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                times[name].extend(measure(configs[name]))
    finally:
        if provider is not None:
            provider.shutdown()
    low = {name: _low(v) for name, v in times.items()}
    return {"metrics_overhead_ratio": round(low["metrics"] / low["off"], 3),
            "tracing_overhead_ratio": round(low["tracing"] / low["off"], 3)}


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench observe")
    ap.add_argument("--rounds", type=int, default=40, help="interleaved rounds of off / metrics / tracing")
    ap.add_argument("--null-batches", type=int, default=8, help="batches of 1,000 null syscalls per round")
    ap.add_argument("--call-batches", type=int, default=3, help="batches of 200 call round trips per round")
    ap.add_argument("--sample", type=float, default=0.01, help="trace sample ratio")
    args = ap.parse_args(argv)
    provider, provider_name = _provider()
    configs: dict[str, dict[str, Any]] = {
        "off": {},
        "metrics": {"metrics": "127.0.0.1:0"},
        "tracing": {"trace": args.sample, "trace_provider": provider},
    }
    subjects = {name: _Subject(kw) for name, kw in configs.items()}
    try:
        order = list(subjects.values())
        for r in range(args.rounds):  # alternate the order: no kernel always runs first or last
            for subject in order if r % 2 == 0 else order[::-1]:
                subject.round(args.null_batches, args.call_batches)
    finally:
        for subject in subjects.values():
            subject.k.close()
        if provider is not None:
            provider.shutdown()
    got = {name: (sub.nulls, sub.calls) for name, sub in subjects.items()}
    low = {name: (_low(v[0]), _low(v[1])) for name, v in got.items()}
    med = {name: (statistics.median(v[0]), statistics.median(v[1])) for name, v in got.items()}
    out: dict[str, Any] = {}
    for name in ("metrics", "tracing"):
        n, c = low[name]
        out[f"{name}_overhead_ratio"] = round(max(n / low["off"][0], c / low["off"][1]), 3)
        out[f"{name}_null_ratio"] = round(n / low["off"][0], 3)
        out[f"{name}_call_ratio"] = round(c / low["off"][1], 3)
        mn, mc = med[name]
        out[f"{name}_null_ratio_median"] = round(mn / med["off"][0], 3)
        out[f"{name}_call_ratio_median"] = round(mc / med["off"][1], 3)
    for name in configs:
        out[f"{name}_null_p10_ns"] = round(low[name][0], 1)
        out[f"{name}_call_rtt_p10_ns"] = round(low[name][1], 1)
        out[f"{name}_null_p50_ns"] = round(med[name][0], 1)
        out[f"{name}_call_rtt_p50_ns"] = round(med[name][1], 1)
    off_call = low["off"][1]
    seam = _probe_test_ns() * PROBE_TESTS_PER_CALL
    out["off_probe_test_ns"] = round(seam, 1)
    out["off_probe_fraction"] = round(seam / off_call, 4)
    out["trace_sample_ratio"] = args.sample
    out["tracing_provider"] = provider_name
    out["rounds"] = args.rounds
    out["metrics_scrapes"] = subjects["metrics"].scrapes
    return out
