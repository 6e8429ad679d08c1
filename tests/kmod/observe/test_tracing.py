"""Traces: one request across three agents (two executors) forms one tree of RPC spans;
unanswered calls end as errors; unsampled requests make no span at all."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aios.abi.errors import InvalidArgument, TimedOut
from aios.host import run_async, run_sync, spawn_root, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.kmod.observe.service import OBSERVE
from aios.sdk import Agent, Context


def traced(ratio: float) -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, trace=ratio, trace_provider=provider)
    return k, exporter


def run(k: Any, *targets: Any) -> dict[int, dict[str, Any]]:
    try:
        return run_sync(run_async(k, *targets, directory=["READ", "WRITE"]))  # type: ignore[no-any-return]
    finally:
        k.close()


class Middle(Agent):
    """Answers a call by calling the agent registered as "leaf" and passing its answer on."""

    async def on_message(self, msg):
        leaf = await self.ctx.lookup("leaf")
        return b"mid>" + await self.ctx.call(leaf, msg.payload, timeout=60)


def three_agents(executor: str):
    async def main(ctx: Context):
        leaf = await ctx.spawn("aios.demos.remote_agents:echo", name="leaf", **(
            {"executor": executor} if executor != "inproc" else {}))
        await ctx.register("leaf", leaf.ep)
        mid = await ctx.spawn(Middle, name="middle")
        out = [await ctx.call(mid.ep, b"q%d" % i, timeout=60) for i in range(2)]
        await ctx.send(leaf.ep, b"quit")
        await ctx.kill(mid.ctl)
        await ctx.wait(leaf.aid, timeout=60)
        return out

    return main


@pytest.mark.parametrize("executor", ["inproc", "worker"])
def test_request_across_three_agents_is_one_tree(executor: str) -> None:
    k, exporter = traced(1.0)
    res = run(k, three_agents(executor))
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    assert all(x.startswith(b"mid>") and x.endswith(b":q%d" % i) for i, x in enumerate(r["exit"]))
    spans = exporter.get_finished_spans()
    by_trace: dict[int, list[Any]] = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    assert len(by_trace) == 2  # one trace per request
    for tree in by_trace.values():
        assert len(tree) == 4
        ids = {s.context.span_id: s for s in tree}
        (root,) = [s for s in tree if s.parent is None]
        chain = [root]
        while len(chain) < 4:
            (child,) = [s for s in tree if s.parent is not None and s.parent.span_id == chain[-1].context.span_id]
            chain.append(child)
        assert [s.kind for s in chain] == [SpanKind.CLIENT, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.SERVER]
        assert [s.attributes["rpc.service"] for s in chain] == ["middle", "middle", "leaf", "leaf"]
        assert [s.name for s in chain] == ["middle/call", "middle/call", "leaf/call", "leaf/call"]
        assert all(s.attributes["rpc.system"] == "aios" and s.status.status_code is StatusCode.OK for s in chain)
        assert chain[0].attributes["aios.request.size"] == 2 and set(ids) == {s.context.span_id for s in chain}


def test_unanswered_call_ends_as_error() -> None:
    async def silent(ctx: Context):
        await ctx.recv()
        await ctx.sleep(60)

    async def main(ctx: Context):
        s = await ctx.spawn(silent, name="silent")
        with pytest.raises(TimedOut):
            await ctx.call(s.ep, b"?", timeout=0.05)
        await ctx.kill(s.ctl)

    k, exporter = traced(1.0)
    (r,) = run(k, main).values()
    assert r["fault"] is None, r["fault"]
    spans = exporter.get_finished_spans()
    assert {s.kind for s in spans} == {SpanKind.CLIENT, SpanKind.SERVER}
    assert all(s.status.status_code is StatusCode.ERROR and "without a reply" in s.status.description for s in spans)
    assert not k.ext[OBSERVE].tracer.calls and not k.ext[OBSERVE].tracer.serving


def test_unsampled_requests_make_no_span_and_leave_nothing_behind() -> None:
    k, exporter = traced(0.0)
    (r,) = run(k, three_agents("inproc")).values()
    assert r["fault"] is None, r["fault"]
    assert exporter.get_finished_spans() == ()
    tracer = k.ext[OBSERVE].tracer
    assert not tracer.calls and not tracer.serving


def test_sampling_is_decided_once_per_request() -> None:
    k, exporter = traced(0.5)
    tracer = k.ext[OBSERVE].tracer
    decisions = iter([0.9, 0.1])  # first request not sampled, second sampled; nothing else draws
    tracer.random = lambda: next(decisions)
    (r,) = run(k, three_agents("inproc")).values()
    assert r["fault"] is None, r["fault"]
    spans = exporter.get_finished_spans()
    assert len(spans) == 4 and len({s.context.trace_id for s in spans}) == 1


def test_bad_ratio_refused() -> None:
    for bad in (-0.1, 1.5, True, "1"):
        with pytest.raises(InvalidArgument, match="ratio"):
            start_kernel(trace=bad)


def test_tracing_off_installs_no_probe() -> None:
    k = start_kernel()
    try:
        a = spawn_root(k, three_agents("inproc"))
        del a
        assert k.registry.ipc_probe is None and OBSERVE not in k.ext
    finally:
        k.close()
