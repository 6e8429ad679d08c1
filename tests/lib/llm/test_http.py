"""The OpenAI-compatible HTTP driver: against the simulated endpoint on loopback,
and (logic only, no sockets) against httpx's MockTransport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jsonschema
import pytest

from aios.abi.errors import Busy, DeviceError, InvalidArgument, PermissionDenied, TimedOut
from aios.lib.llm.chat import ChatRequest, Message, ToolSpec, collect, user
from aios.lib.llm.http import (
    CircuitBreaker,
    HttpDriver,
    RetryPolicy,
    Secret,
    load_api_key,
)
from aios.lib.llm.simserver import SimServer, sim_tokens

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


class Sleeps:
    """A sleep that records and does not wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, s: float) -> None:
        self.calls.append(s)


REQ = ChatRequest((Message("system", "You are terse."), user("Tell me about the plan.")),
                  max_tokens=200, seed=42)


def expected_prompt_tokens(req: ChatRequest) -> int:
    return sum(sim_tokens(m.content) + 4 for m in req.messages) + 4


def test_streams_with_exact_usage() -> None:
    async def go() -> tuple[list[str], Any]:
        async with SimServer(seed=1) as srv:
            d = HttpDriver(srv.url, "sim-1")
            texts, final = [], None
            async for ch in d.stream(REQ):
                if ch.text:
                    texts.append(ch.text)
                if ch.final:
                    final = ch
            await d.aclose()
            return texts, final

    texts, final = run(go)
    assert len(texts) > 1 and final is not None and final.finish_reason == "stop"
    assert final.usage.prompt_tokens == expected_prompt_tokens(REQ)
    assert final.usage.completion_tokens == len(texts) == sim_tokens("".join(texts))


def test_retries_a_429_honouring_retry_after() -> None:
    sleeps = Sleeps()

    async def go() -> tuple[str, int]:
        async with SimServer(seed=1) as srv:
            srv.fail_next(429, retry_after=0.25)
            d = HttpDriver(srv.url, "sim-1", sleep=sleeps)
            r = await d.chat(REQ)
            await d.aclose()
            return r.text, srv.requests

    text, requests = run(go)
    assert text and requests == 2 and sleeps.calls == [0.25]


def test_survives_a_dropped_stream_without_counting_twice() -> None:
    async def go() -> tuple[Any, Any, int]:
        async with SimServer(seed=1) as srv:
            d = HttpDriver(srv.url, "sim-1", sleep=Sleeps())
            ref = await d.chat(REQ)
            srv.drop_after(5)
            broken = await d.chat(REQ)
            await d.aclose()
            return ref, broken, d.resumes

    ref, broken, resumes = run(go)
    assert resumes == 1
    assert broken.text == ref.text and broken.finish_reason == ref.finish_reason
    assert (broken.usage.prompt_tokens, broken.usage.completion_tokens) == (
        ref.usage.prompt_tokens, ref.usage.completion_tokens)
    assert broken.usage.recomputed_tokens == ref.usage.prompt_tokens + 5


def test_circuit_opens_after_repeated_failures() -> None:
    now = [0.0]

    async def go() -> tuple[int, int]:
        async with SimServer(seed=1) as srv:
            srv.fail_next(503, n=10)
            d = HttpDriver(srv.url, "sim-1", sleep=Sleeps(), retry=RetryPolicy(attempts=2),
                           breaker=CircuitBreaker(threshold=2, cooldown_s=30,
                                                  clock=lambda: now[0]))
            with pytest.raises(DeviceError):
                await d.chat(REQ)
            seen = srv.requests
            with pytest.raises(Busy, match="circuit is open"):
                await d.chat(REQ)
            assert srv.requests == seen  # refused without touching the endpoint
            now[0] = 31.0  # cooldown over: one trial call (half-open) hits a 503 again
            with pytest.raises(DeviceError):
                await d.chat(REQ)
            await d.aclose()
            return seen, d.breaker.trips

    seen, trips = run(go)
    assert seen == 2 and trips == 2


def test_json_schema_and_tool_calls() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "days": {"type": "integer", "minimum": 1}},
              "required": ["city", "days"]}
    tool = ToolSpec("get_weather", "weather for a city",
                    {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]})

    async def go() -> tuple[Any, Any]:
        async with SimServer(seed=1) as srv:
            d = HttpDriver(srv.url, "sim-1")
            a = await d.chat(ChatRequest((user("plan a trip"),), response_schema=schema))
            b = await d.chat(ChatRequest((user("weather?"),), tools=(tool,),
                                         tool_choice="get_weather"))
            await d.aclose()
            return a, b

    a, b = run(go)
    jsonschema.validate(a.json(), schema)
    assert b.finish_reason == "tool_calls" and b.tool_calls[0].name == "get_weather"
    jsonschema.validate(b.tool_calls[0].parsed(), dict(tool.parameters))


def test_abandoned_stream_stops_generation() -> None:
    async def go() -> tuple[int, int]:
        async with SimServer(seed=1, natural_max=5000, time_scale=0.01) as srv:
            d = HttpDriver(srv.url, "sim-1")
            req = ChatRequest((user("go on and on"),), max_tokens=4000, seed=5)
            n = 0
            async with contextlib.aclosing(d.stream(req)) as chunks:
                async for ch in chunks:
                    n += bool(ch.text)
                    if n == 3:
                        break  # the agent abandons the call
            await d.aclose()
            for _ in range(2000):  # poll with a deadline: the server notices the close
                if not srv.engine.busy:
                    break
                await asyncio.sleep(0.005)
            return srv.engine.decode_tokens, int(srv.engine.busy)

    decoded, busy = run(go)
    assert busy == 0 and decoded < 4000


# -- logic tests on a mock transport (no sockets) ---------------------------------------


def sse(*events: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + \
        b"data: [DONE]\n\n"


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    d = dict(delta)
    if content is not None:
        d["content"] = content
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def test_sse_split_at_every_byte_and_tool_call_fragments() -> None:
    body = sse(
        chunk(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"a": '}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}]),
        chunk(finish="tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    )

    class OneByte(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for i in range(len(body)):
                yield body[i:i + 1]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=OneByte())

    async def go() -> Any:
        d = HttpDriver("http://model.test", "m", transport=httpx.MockTransport(handler))
        try:
            return await d.chat(REQ)
        finally:
            await d.aclose()

    r = run(go)
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].parsed() == {"a": 1}
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 3)


def test_client_errors_are_not_retried_and_map_to_the_taxonomy() -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(400 if len(seen) == 1 else 401, json={"error": {"message": "no"}})

    async def go() -> None:
        d = HttpDriver("http://model.test", "m", transport=httpx.MockTransport(handler),
                       sleep=Sleeps())
        with pytest.raises(InvalidArgument, match="400"):
            await d.chat(REQ)
        with pytest.raises(PermissionDenied, match="401"):
            await d.chat(REQ)
        await d.aclose()

    run(go)
    assert len(seen) == 2


def test_timeouts_are_retried_then_reported() -> None:
    sleeps = Sleeps()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async def go() -> None:
        d = HttpDriver("http://model.test", "m", transport=httpx.MockTransport(handler),
                       sleep=sleeps, retry=RetryPolicy(attempts=3, base_s=1.0, jitter=0.0))
        with pytest.raises(TimedOut):
            await d.chat(REQ)
        await d.aclose()

    run(go)
    assert sleeps.calls == [1.0, 2.0]  # exponential backoff, no jitter


def test_key_goes_only_into_the_authorization_header(caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-test-0123456789abcdef"
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, content=sse(chunk("hi"), chunk(finish="stop")))

    async def go() -> str:
        d = HttpDriver("http://model.test", "m", api_key=Secret(key),
                       transport=httpx.MockTransport(handler))
        r = await d.chat(REQ)
        text = repr(d) + repr(d.__dict__)
        await d.aclose()
        return r.text + text

    caplog.set_level(logging.DEBUG)
    out = run(go)
    assert seen == [f"Bearer {key}"]
    assert key not in out and key not in caplog.text
    assert str(Secret(key)) == repr(Secret(key)) == "Secret('***')"


def test_keys_from_env_or_a_private_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOS_LLM_API_KEY", raising=False)
    assert load_api_key() is None
    monkeypatch.setenv("AIOS_LLM_API_KEY", "from-env")
    key = load_api_key(name="x", home=tmp_path)
    assert key is not None and key.reveal() == "from-env"
    monkeypatch.delenv("AIOS_LLM_API_KEY")
    f = tmp_path / "keys" / "vllm.key"
    f.parent.mkdir()
    f.write_text("sk-file\n")
    os.chmod(f, 0o600)
    key = load_api_key(name="vllm", home=tmp_path)
    assert key is not None and key.reveal() == "sk-file"
    os.chmod(f, 0o644)  # the mechanism: a key others can read is refused
    with pytest.raises(PermissionDenied, match="0600"):
        load_api_key(name="vllm", home=tmp_path)


def test_collect_needs_a_final_chunk() -> None:
    async def empty() -> Any:
        if False:
            yield None

    with pytest.raises(InvalidArgument):
        run(lambda: collect(empty()))
