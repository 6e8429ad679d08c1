"""Fair sharing of one model through the kernel path: agents make calls with
syscalls, the device queue orders them, the HTTP driver streams them from the
simulated OpenAI-compatible endpoint on loopback (one slot, so the order in
which calls finish is the order the kernel dispatched them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.devqueue import Pricing
from aios.kernel.kernel import Kernel
from aios.kmod.devices.table import table
from aios.kmod.llm.service import service
from aios.lib.llm.simserver import SimServer
from aios.sdk import syscalls as sc

OPERATOR = {"rights": ["ADMIN", "SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT"]}
PRICE = Pricing()


@pytest.fixture
def k() -> Iterator[Kernel]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26, llm="off")
    yield k
    k.close()


def backlogged(k: Kernel, weights: tuple[int, int], calls: int) -> list[tuple[int, int]]:
    """Agent A submits ``calls`` calls, then B does; returns (agent, cost) in dispatch order."""
    order: list[tuple[int, int]] = []
    k.bus.subscribe("llm.usage", callback=lambda ev: order.append(
        (ev.data["agent"], PRICE.cost(ev.data["prompt_tokens"], ev.data["completion_tokens"]))))

    async def worker(ctx: Any) -> Any:
        dev = 6
        hs = [await sc.llm_chat(dev, [{"role": "user", "content": f"{ctx.name} call {i}"}],
                                {"max_tokens": 8, "seed": i}) for i in range(calls)]
        return [(await sc.llm_recv(h, None, True))["usage"]["completion_tokens"] for h in hs]

    async def operator(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "sim0")
        a = await ctx.spawn(worker, caps=[dev], weight=weights[0], name="A")
        q = service(k).devices["sim0"].queue
        while q.queued() + q.in_flight < calls:  # A's calls are all in before B starts
            await sc.yield_()
        b = await ctx.spawn(worker, caps=[dev], weight=weights[1], name="B")
        await ctx.wait(a.aid)
        await ctx.wait(b.aid)
        return a.aid, b.aid

    async def main() -> Any:
        async with SimServer(seed=7, natural_max=48) as srv:
            table(k).plug("llm-http", {"base_url": srv.url, "model": "sim-1", "slots": 1},
                          device_id="sim0")
            return await run_async(k, operator, **OPERATOR)

    (r,) = run_sync(main()).values()
    assert r["fault"] is None, r["fault"]
    aid_a, _aid_b = r["exit"]
    assert len(order) == 2 * calls
    return [(0 if agent == aid_a else 1, cost) for agent, cost in order]


def max_gap(order: list[tuple[int, int]], weights: tuple[int, int]) -> float:
    """The largest difference in weighted service while both agents still had calls."""
    served = [0, 0]
    left = [sum(1 for who, _ in order if who == i) for i in (0, 1)]
    gap = 0.0
    for who, cost in order:
        served[who] += cost
        left[who] -= 1
        if not all(left):
            break
        gap = max(gap, abs(served[0] * 1024 / weights[0] - served[1] * 1024 / weights[1]))
    return gap


def test_two_equal_agents_share_the_model_within_twice_the_largest_call(k: Kernel) -> None:
    order = backlogged(k, (1024, 1024), 8)
    biggest = max(c for _, c in order)
    assert max_gap(order, (1024, 1024)) <= 2 * biggest
    # FIFO would have served all of A's calls first: B got in among them
    assert [who for who, _ in order[:8]].count(1) >= 3


def test_weights_from_the_scheduler_give_proportional_shares(k: Kernel) -> None:
    order = backlogged(k, (1024, 2048), 12)
    biggest = max(c for _, c in order)
    assert max_gap(order, (1024, 2048)) <= 2 * biggest
    first = [who for who, _ in order[1:13]]  # after A's head start: B gets about two in three
    assert 7 <= first.count(1) <= 9
