"""Agents that think with the kernel's language model (``ctx.llm``).

They run in any executor (in-process, worker, isolated): the SDK is traps
only.  Entry points: ``aios.demos.thinkers:<name>``.
"""

from __future__ import annotations

from typing import Any

from aios.sdk import Context


async def think(ctx: Context) -> dict[str, Any]:
    """Asks the model ``spec["question"]`` (``spec["max_tokens"]``, default 64),
    streaming the answer; returns it with its usage and how many pieces came."""
    q = str(ctx.spec.get("question", "Say hello."))
    call = ctx.llm.chat(q, max_tokens=int(ctx.spec.get("max_tokens", 64)),
                        seed=int(ctx.spec.get("seed", 1)), stream=True)
    pieces = 0
    async for _piece in call:
        pieces += 1
    assert call.reply is not None
    return {"text": call.reply.text, "usage": call.reply.usage, "pieces": pieces,
            "finish_reason": call.reply.finish_reason}


async def ponder(ctx: Context) -> dict[str, Any]:
    """Thinks ``spec["rounds"]`` times, each round continuing the last answer:
    an agent that keeps the model busy (the demo's fair-sharing part)."""
    topic = str(ctx.spec.get("topic", "the sea"))
    rounds = int(ctx.spec.get("rounds", 3))
    max_tokens = int(ctx.spec.get("max_tokens", 48))
    text = ""
    tokens = 0
    for i in range(rounds):
        prompt = f"Write one sentence about {topic}." if not text else \
            f"Continue this in one sentence: {text[-200:]}"
        r = await ctx.llm.chat(prompt, max_tokens=max_tokens, seed=i + 1,
                               priority=ctx.spec.get("priority"))
        text = r.text.strip() or text
        tokens += int(r.usage["completion_tokens"])
    return {"topic": topic, "tokens": tokens, "last": text}
