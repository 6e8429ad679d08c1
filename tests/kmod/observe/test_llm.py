"""Language-model figures: exact token counts per device and per top agent after a known
workload on a scripted model, budget refusals, queue waits, device gauges; and one
GenAI span per LLM call, under the calling agent's request span."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.kmod.llm.fakes import SPEC, ScriptedDriver

from aios.abi.errors import Busy, QuotaExceeded
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.kmod.devices.table import table
from aios.kmod.observe.service import OBSERVE
from aios.sdk import Agent
from aios.sdk import syscalls as sc

OPERATOR = {"rights": ["ADMIN", "SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT"]}
HELLO = [{"role": "user", "content": "hello there"}]
PROMPT = 10  # what the scripted model reports for every prompt


def plugged(**opts: Any) -> tuple[Kernel, ScriptedDriver]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26, llm="off", **opts)
    table(k).register_driver(SPEC)
    drv = ScriptedDriver(prompt_tokens=PROMPT)
    table(k).plug(SPEC.name, device_id="llm7", backend=drv)
    return k, drv


def run(k: Kernel, fn: Any, **opts: Any) -> Any:
    try:
        (r,) = run_sync(run_async(k, fn, **OPERATOR, **opts)).values()
    finally:
        k.close()
    assert r["fault"] is None, r["fault"]
    return r["exit"]


def scrape(k: Kernel) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The registry's exposition, parsed (the kernel is not serving: read directly)."""
    body = generate_latest(k.ext[OBSERVE].registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def at(m: dict[str, Any], sample: str, **labels: str) -> float:
    return m[sample][tuple(sorted(labels.items()))]  # type: ignore[no-any-return]


async def chatter(ctx: Any) -> Any:
    """Two calls of 5 tokens; the agent with the most tokens."""
    for _ in range(2):
        await ctx.llm.chat(HELLO, max_tokens=5)
    return "ok"


async def quiet(ctx: Any) -> Any:
    """One call of 3 tokens, then one its budget (60: the estimate of a prompt is 44) refuses before sending."""
    await ctx.llm.chat(HELLO, max_tokens=3)
    try:
        await ctx.llm.chat(HELLO, max_tokens=30)
    except QuotaExceeded:
        return "refused"
    return "sent"


def workload(scrapes: list[Any], k: Kernel):
    async def main(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        big = await ctx.spawn(chatter, name="chatter", caps=[dev])
        await ctx.wait(big.aid)
        scrapes.append(scrape(k))
        small = await sc.llm_budget(dev, 60, ["READ", "WRITE"])
        little = await ctx.spawn(quiet, name="quiet", caps=[small])
        _aid, status = await ctx.wait(little.aid)
        scrapes.append(scrape(k))
        return big.aid, little.aid, status["exit"] if status.get("fault") is None else status

    return main


def test_llm_metrics_after_a_known_workload() -> None:
    k, drv = plugged(metrics="127.0.0.1:0", metrics_top=1)
    scrapes: list[Any] = []
    big, _little, refused = run(k, workload(scrapes, k))
    assert refused == "refused" and len(drv.requests) == 3
    first, m = scrapes
    # the device's totals: the model's own counts of 3 calls
    assert at(m, "aios_llm_tokens_total", device="llm7", kind="prompt") == 3 * PROMPT
    assert at(m, "aios_llm_tokens_total", device="llm7", kind="completion") == 5 + 5 + 3
    assert at(first, "aios_llm_tokens_total", device="llm7", kind="completion") == 10  # monotone
    # per agent, top 1 only: the chatter, not the quiet one
    per = m["aios_llm_agent_tokens_total"]
    assert {dict(lab)["aid"] for lab in per} == {str(big)}
    assert at(m, "aios_llm_agent_tokens_total", device="llm7", aid=str(big), name="chatter",
              kind="prompt") == 2 * PROMPT
    assert at(m, "aios_llm_agent_tokens_total", device="llm7", aid=str(big), name="chatter",
              kind="completion") == 10
    assert at(m, "aios_llm_requests_total", device="llm7") == 3
    assert at(m, "aios_llm_requests_ended_total", device="llm7", how="completed") == 3
    assert at(m, "aios_llm_requests_ended_total", device="llm7", how="cancelled") == 0
    assert at(first, "aios_llm_budget_refusals_total", device="llm7") == 0
    assert at(m, "aios_llm_budget_refusals_total", device="llm7") == 1
    assert at(m, "aios_llm_refusals_total", device="llm7") == 1
    assert at(m, "aios_llm_queue_wait_seconds_count", device="llm7") == 3
    assert at(m, "aios_llm_queue_wait_seconds_bucket", device="llm7", le="+Inf") == 3
    assert at(m, "aios_llm_queue_depth_requests", device="llm7") == 0
    assert at(m, "aios_llm_in_flight_requests", device="llm7") == 0
    assert at(m, "aios_llm_slots", device="llm7", model="scripted") == 2
    assert at(m, "aios_llm_device_health", device="llm7", state="ok") == 1
    assert sum(v for lab, v in m["aios_llm_device_health"].items()) == 1


def test_llm_gauges_see_a_queue() -> None:
    """Three calls on a two-slot model that answers only when released: two run, one waits;
    a fourth with a deadline it cannot meet is refused (a refusal, not a budget one)."""
    k, drv = plugged(metrics="127.0.0.1:0")
    drv.free = 0
    seen: list[Any] = []

    async def main(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        hs = [await sc.llm_chat(dev, HELLO, {"max_tokens": 1}) for _ in range(3)]
        with pytest.raises(Busy):
            await sc.llm_chat(dev, HELLO, {"max_tokens": 100, "deadline_s": 0.5})
        seen.append(scrape(k))
        drv.release(3)
        for h in hs:
            await sc.llm_recv(h, None, True)
        seen.append(scrape(k))
        return "ok"

    run(k, main)
    during, after = seen
    assert at(during, "aios_llm_in_flight_requests", device="llm7") == 2
    assert at(during, "aios_llm_queue_depth_requests", device="llm7") == 1
    assert at(during, "aios_llm_queue_wait_seconds_count", device="llm7") == 2  # started ones only
    assert at(during, "aios_llm_refusals_total", device="llm7") == 1
    assert at(during, "aios_llm_budget_refusals_total", device="llm7") == 0
    assert at(during, "aios_llm_requests_total", device="llm7") == 3
    assert at(after, "aios_llm_queue_depth_requests", device="llm7") == 0
    assert at(after, "aios_llm_queue_wait_seconds_count", device="llm7") == 3
    assert at(after, "aios_llm_tokens_total", device="llm7", kind="completion") == 3


class Asker(Agent):
    """Answers a call by asking the model."""

    async def on_message(self, msg: Any) -> Any:
        r = await self.ctx.llm.chat(msg.payload.decode(), max_tokens=4, temperature=0.5, seed=7)
        return r.text.encode()


class Middle(Agent):
    """Answers a call by calling the agent registered as "asker"."""

    async def on_message(self, msg: Any) -> Any:
        asker = await self.ctx.lookup("asker")
        return b"mid>" + await self.ctx.call(asker, msg.payload, timeout=60)


def traced() -> tuple[Kernel, ScriptedDriver, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    k, drv = plugged(trace=1.0, trace_provider=provider)
    return k, drv, exporter


def test_llm_call_is_a_genai_span_under_the_request() -> None:
    k, _drv, exporter = traced()

    async def main(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        asker = await ctx.spawn(Asker, name="asker", caps=[dev])
        await ctx.register("asker", asker.ep)
        mid = await ctx.spawn(Middle, name="middle")
        answer = await ctx.call(mid.ep, b"why?", timeout=60)
        direct = await ctx.llm.chat(HELLO, max_tokens=2)  # outside any request: its own trace
        await ctx.kill(mid.ctl)
        await ctx.kill(asker.ctl)
        return answer, direct.text

    answer, direct = run(k, main, directory=["READ", "WRITE"])
    assert answer == b"mid> t1 t2 t3 t4" and direct == " t1 t2"
    spans = exporter.get_finished_spans()
    chats = [s for s in spans if s.name == "chat scripted"]
    assert len(chats) == 2
    inner, outer = sorted(chats, key=lambda s: s.attributes["gen_ai.request.max_tokens"], reverse=True)
    for s, want in ((inner, 4), (outer, 2)):
        assert s.kind is SpanKind.CLIENT and s.status.status_code is StatusCode.OK
        a = s.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "scripted" and a["gen_ai.response.model"] == "scripted"
        assert a["gen_ai.request.max_tokens"] == want
        assert a["gen_ai.usage.input_tokens"] == PROMPT and a["gen_ai.usage.output_tokens"] == want
        assert a["gen_ai.response.finish_reasons"] == ("length",)
        assert a["aios.llm.device"] == "llm7"
    assert inner.attributes["gen_ai.request.temperature"] == 0.5
    assert inner.attributes["gen_ai.request.seed"] == 7
    assert inner.attributes["aios.agent.name"] == "asker"
    # one tree across three agents: root -> middle -> asker -> the model
    tree = [s for s in spans if s.context.trace_id == inner.context.trace_id]
    assert len(tree) == 5
    (root,) = [s for s in tree if s.parent is None]
    chain = [root]
    while len(chain) < 5:
        (child,) = [s for s in tree if s.parent is not None and s.parent.span_id == chain[-1].context.span_id]
        chain.append(child)
    assert [s.name for s in chain] == ["middle/call", "middle/call", "asker/call", "asker/call", "chat scripted"]
    assert [s.kind for s in chain] == [SpanKind.CLIENT, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.SERVER,
                                       SpanKind.CLIENT]
    assert outer.parent is None and outer.context.trace_id != root.context.trace_id


def test_refused_and_cancelled_llm_calls() -> None:
    """A call refused by its budget makes no span; a cancelled one ends as an error."""
    k, drv, exporter = traced()
    drv.free = 1

    async def main(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        small = await sc.llm_budget(dev, 20, ["READ", "WRITE"])
        with pytest.raises(QuotaExceeded):
            await sc.llm_chat(small, HELLO, {"max_tokens": 50})
        h = await sc.llm_chat(dev, HELLO, {"max_tokens": 9})
        first = await sc.llm_recv(h, None, False)
        await sc.llm_cancel(h)
        return first["text"]

    assert run(k, main) == " t1"
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "chat scripted"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "ECANCELED"
    assert span.attributes["gen_ai.usage.output_tokens"] == 1
    assert span.attributes["gen_ai.request.max_tokens"] == 9


def test_without_tracing_the_llm_module_has_no_probe() -> None:
    from aios.kmod.llm.service import service

    k, _drv = plugged()
    try:
        assert service(k).probe is None
    finally:
        k.close()
