"""The embedded model (llama.cpp, SmolLM2-135M) as the kernel's llm0, for real."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from aios.host import run

pytestmark = pytest.mark.llm

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
OPERATOR = {"rights": ["ADMIN", "SPAWN_AGENT", "ALLOC_MEMORY"]}


def test_the_embedded_model_answers_through_the_kernel() -> None:
    from aios.sdk import syscalls as sc

    async def agent(ctx: Any) -> Any:
        listed = await sc.dev_list(ctx.slots.authority, "llm")
        await sc.dev_open(ctx.slots.authority, "llm0")
        plain = await ctx.llm.chat("What is the capital of France? Answer in one word.",
                                   max_tokens=12, seed=1)
        data = await ctx.llm.chat(
            [{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
            max_tokens=48, seed=2, json_schema=PERSON)
        return listed["devices"], plain.text, plain.usage, data.json()

    (r,) = run(agent, **OPERATOR).values()
    assert r["fault"] is None, r["fault"]
    devices, text, usage, person = r["exit"]
    assert [d["id"] for d in devices] == ["llm0"]
    assert devices[0]["capabilities"]["model"].startswith("SmolLM2")
    assert "paris" in text.lower()
    assert usage["completion_tokens"] >= 1 and usage["prompt_tokens"] > 5
    jsonschema.validate(person, PERSON)
