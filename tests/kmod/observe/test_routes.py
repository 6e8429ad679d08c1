"""Semantic routes under observation: counted by outcome, traced as a route span whose
delivered call is its child; sandbox reports counted by mechanism with a bounded label set."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aios.abi.errors import NoSuchObject
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.kmod.observe.service import OBSERVE
from aios.kmod.observe.tally import MAX_MECHANISMS, Tally
from aios.sdk import Context
from aios.sdk.semantic import Request, Skill, SkillAgent, ask, explain, open_service

SEND = ["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT", "SEMANTIC_SEND"]


class Weather(SkillAgent):
    SKILLS = (Skill("weather", "Weather forecasts: rain, temperature and wind for a city and day",
                    ("will it rain in Paris tomorrow", "how warm is it in Rome today",
                     "is it windy at the coast this weekend")),)

    async def on_ready(self) -> None:
        await self.ctx.send(self.ctx.slots.parent, b"ready")

    async def handle(self, req: Request) -> Any:
        return {"who": "weather"}


def test_routes_counted_by_outcome_and_traced() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, metrics="127.0.0.1:0", trace=1.0,
                     trace_provider=provider)

    async def main(ctx: Context):
        await ctx.spawn(Weather, name="weather")
        assert (await ctx.recv()).payload == b"ready"
        svc = await open_service()
        a = await ask(svc, "Do I need an umbrella in London tomorrow?")
        await explain(svc, "will it snow in Oslo on Friday?")
        with pytest.raises(NoSuchObject):
            await ask(svc, "Who painted the Mona Lisa?")
        return a.reply

    try:
        res = run_sync(run_async(k, main, rights=SEND))
        tally = k.ext[OBSERVE].tally
        routes = dict(tally.routes)
    finally:
        k.close()
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    assert r["exit"] == {"who": "weather"}
    assert routes == {"delivered": 1, "explained": 1, "no_match": 1}
    assert tally.route_seconds.count == 3
    spans = exporter.get_finished_spans()
    route_spans = [s for s in spans if s.name == "semantic-ipcd/route"]
    assert sorted(s.attributes["aios.route.outcome"] for s in route_spans) == ["delivered", "explained", "no_match"]
    delivered = next(s for s in route_spans if s.attributes["aios.route.outcome"] == "delivered")
    failed = next(s for s in route_spans if s.attributes["aios.route.outcome"] == "no_match")
    assert failed.status.status_code is StatusCode.ERROR
    client = next(s for s in spans if s.kind is SpanKind.CLIENT and s.name == "weather/call")
    server = next(s for s in spans if s.kind is SpanKind.SERVER and s.name == "weather/call")
    assert client.parent.span_id == delivered.context.span_id  # the delivery is the route's child
    assert server.parent.span_id == client.context.span_id
    assert len({delivered.context.trace_id, client.context.trace_id, server.context.trace_id}) == 1


def test_sandbox_mechanisms_are_bounded() -> None:
    k = SimpleNamespace(now=lambda: 0, registry=SimpleNamespace(count_syscalls=lambda: ([0] * 8, {})))
    t = Tally(k)  # type: ignore[arg-type]

    def ev(kind: Any) -> Any:
        return SimpleNamespace(data={"kind": kind})

    t.on_sandbox(ev("syscall"))
    t.on_sandbox(ev("syscall"))
    t.on_sandbox(ev("Bad Kind!"))
    for i in range(3 * MAX_MECHANISMS):
        t.on_sandbox(ev(f"kind{i}"))
    assert t.denials["seccomp"] == 2 and t.denials["other"] >= 1
    assert len(t.denials) <= MAX_MECHANISMS + 1
