"""The embedded model's throughput called directly (no kernel in the path).

``aios bench llm-embedded`` compares the kernel's device path against this, in
the same run and on the same loaded model: N concurrent requests (1, 4, 16) on
one llama.cpp server with as many slots, each asking for ``max_tokens``
tokens; tokens/s is completion tokens over wall time.  ``aios bench llm
--embedded`` prints it alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aios.lib.llm.chat import ChatRequest, user
from aios.lib.llm.embedded import EmbeddedDriver

PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works, step by step.",
    "Describe a walk through a forest in autumn.",
    "List ideas for a science fair project and explain each.",
)


def prompt(i: int) -> str:
    return PROMPTS[i % len(PROMPTS)]


async def direct_once(d: EmbeddedDriver, n: int, max_tokens: int) -> tuple[int, float]:
    """``n`` concurrent requests straight to the driver: (completion tokens, seconds)."""
    reqs = [ChatRequest((user(prompt(i)),), max_tokens=max_tokens, seed=i + 1, temperature=0.0)
            for i in range(n)]
    t0 = time.perf_counter()
    res = await asyncio.gather(*(d.chat(r) for r in reqs))
    dt = time.perf_counter() - t0
    return sum(r.usage.completion_tokens for r in res), dt


async def _measure(concurrency: Sequence[int], max_tokens: int) -> dict[str, float]:
    slots = max(concurrency)
    d = EmbeddedDriver(slots=slots, context_tokens=512 * slots)
    t0 = time.perf_counter()
    await d.start()
    out: dict[str, float] = {"load_s": round(time.perf_counter() - t0, 3)}
    try:
        for n in concurrency:
            toks, dt = await direct_once(d, n, max_tokens)
            out[f"direct_tokens_per_s_{n}"] = round(toks / dt, 1)
            out[f"direct_tokens_{n}"] = toks
    finally:
        await d.aclose()
    out["threads"] = d.threads
    return out


def direct_throughput(concurrency: Sequence[int] = (1, 4, 16),
                      max_tokens: int = 64) -> dict[str, float]:
    return asyncio.run(_measure(concurrency, max_tokens))
