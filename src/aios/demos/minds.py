"""``aios demo`` part 3: several agents think with one embedded model at once.

The operator (ADMIN) opens the kernel's model ``llm0`` (SmolLM2-135M run by
llama.cpp in this process), derives a capability for each thinker (one with a
small token budget) and spawns them with different scheduling weights.  They
all call the model at once; the kernel's device queue shares its slots by
tokens, in proportion to the weights (there are twice as many thinkers as
slots, so some always wait).  While they think, the operator prints a
live line per agent from ``LLM_STATS``: tokens generated, share of the
model's service, mean queue wait.  At the end the budgeted agent's over-budget
call is refused before it reaches the model (EDQUOT).
"""

from __future__ import annotations

import sys
from typing import Any

from aios.abi.errors import AIOSError, QuotaExceeded
from aios.demos.thinkers import ponder
from aios.sdk import Context
from aios.sdk import syscalls as sc

THINKERS = (  # name, topic, scheduling weight: twice as many thinkers as the model has slots
    ("sailor", "the sea", 1024),
    ("gardener", "a garden in spring", 1024),
    ("astronomer", "the night sky", 2048),
    ("baker", "fresh bread", 512),
    ("poet", "the moon", 2048),
    ("miner", "deep caves", 512),
    ("pilot", "clouds", 1024),
    ("teacher", "a classroom", 1024),
)
MINDS_RIGHTS = ["ADMIN", "SPAWN_AGENT", "KILL_AGENT", "ALLOC_MEMORY"]


async def frugal(ctx: Context) -> str:
    """Holds a 120-token budget: one short call fits, a long one is refused unsent."""
    r = await ctx.llm.chat("Name a fruit.", max_tokens=8, seed=1)
    try:
        await ctx.llm.chat("Write a long poem.", max_tokens=200)
        return "the long call was sent (it should not have been)"
    except QuotaExceeded as e:
        return f"short call: {r.text.strip()!r}; long call refused: [{e.name}] {e.message}"


def _line(name: str, weight: int, s: dict[str, Any] | None) -> str:
    if s is None:
        return f"   {name:<11} weight {weight:>4}  waiting to start"
    n = max(1, s["completed"] + s["cancelled"])
    bar = "#" * round(30 * float(s["share"]))
    state = "thinking" if s["live"] else "done"
    return (f"   {name:<11} weight {weight:>4}  tokens {s['tokens_out']:>4}  "
            f"share {float(s['share']):6.1%} {bar:<30}  wait {s['queue_wait_ns'] / n / 1e6:6.0f} ms  "
            f"calls {s['completed']}/{s['requests']}  {state}")


async def main(ctx: Context) -> Any:
    say = print
    say("\n== Part 3: agents that think, sharing one language model fairly (device bus + LLM device) ==")
    try:
        dev = await sc.dev_open(ctx.slots.authority, "llm0")
    except AIOSError as e:
        say(f"   no embedded model on this machine ({e}); install it with `make setup`")
        return None
    info = await sc.llm_stats(dev)
    say(f"   llm0: {info['model']} ({info['slots']} slots), opened with ADMIN; "
        f"each thinker gets a derived capability")
    kids = {}
    for name, topic, weight in THINKERS:
        c = await ctx.spawn(ponder, name=name, caps=[[dev, ["READ", "WRITE"]]], weight=weight,
                            spec={"topic": topic, "rounds": 2, "max_tokens": 16})
        kids[c.aid] = (name, weight, c)
    budgeted = await sc.llm_budget(dev, 120, ["READ", "WRITE"])
    fr = await ctx.spawn(frugal, name="frugal", caps=[budgeted])
    live = sys.stdout.isatty()
    shown = 0
    lines = {aid: _line(name, w, None) for aid, (name, w, _c) in kids.items()}
    while True:
        s = await sc.llm_stats(dev)
        for aid, (name, w, _c) in kids.items():
            lines[aid] = _line(name, w, s["clients"].get(str(aid)))
        running = [aid for aid in kids if await _alive(aid)]
        if live:
            if shown:
                sys.stdout.write(f"\x1b[{shown}F")
            sys.stdout.write("\n".join(line + "\x1b[K" for line in lines.values()) + "\n")
            sys.stdout.flush()
            shown = len(lines)
        if not running:
            break
        await ctx.sleep(0.5)
    if not live:
        for line in lines.values():
            say(line)
    final = (await sc.llm_stats(dev))["clients"]
    by_weight: dict[int, list[float]] = {}
    for aid, (_name, w, _c) in kids.items():
        row = final.get(str(aid))
        if row is not None:
            by_weight.setdefault(w, []).append(row["queue_wait_ns"] / max(1, row["completed"]) / 1e6)
    say("   every thinker asked for the same work; the weights decide who waits: mean wait "
        + ", ".join(f"{sum(v) / len(v):.0f} ms at weight {w}" for w, v in sorted(by_weight.items())))
    for aid, (name, _w, _c) in kids.items():
        _a, st = await ctx.wait(aid)
        last = (st["exit"] or {}).get("last", "") if isinstance(st["exit"], dict) else st["fault"]
        say(f"   {name}: {str(last)[:90]!r}")
    _a, st = await ctx.wait(fr.aid)
    say(f"   frugal (budget 120 tokens): {st['exit']}")
    s = await sc.llm_stats(dev)
    say(f"   llm0 served {s['requests']} calls: {s['tokens_in']} prompt + {s['tokens_out']} generated "
        f"tokens; {s['decisions']} scheduling decisions")
    return None


async def _alive(aid: int) -> bool:
    rows = await sc.agent_list()
    return any(r["aid"] == aid and r["state"] not in ("dead", "zombie") for r in rows)
