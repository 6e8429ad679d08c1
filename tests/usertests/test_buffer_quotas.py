"""User tests (SDK only): what the kernel buffers for an agent counts against its quota.

Finding 3 of the robustness review: an agent with a 16 MiB memory quota grew
the kernel by 314 MB by hoarding event-queue entries, and children with full
mailboxes grew it by 64 MB, none of it charged.  Here the hoarder and the
flooder run with small memory quotas; every figure asserted is computed from
what the kernel reports (queue lengths, the authority's ``used`` memory),
never from time.
"""

from __future__ import annotations

from typing import Any

from aios.abi.errors import QuotaExceeded
from aios.sdk import Context

QUOTA = 1 << 20  # 1 MiB
BIG = b"x" * 16384
BLOB = b"y" * 8192  # an event's data is at most 16 KiB encoded


def used_memory(caps: list[dict[str, Any]]) -> int:
    auth = next(c for c in caps if c["slot"] == 2)
    return int(auth["used"]["memory"])


async def hoarder(ctx: Context) -> dict[str, Any]:
    sids = [await ctx.subscribe("app.flood.*", depth=65536) for _ in range(8)]
    await ctx.send(ctx.slots.parent, b"subscribed")
    await ctx.recv()  # the flood is over
    used = used_memory(await ctx.caps())
    newest = await ctx.next_event(sids[0], timeout=0)
    stats = [await ctx.unsubscribe(s) for s in sids]
    return {"used": used, "queued": sum(s["queued"] for s in stats),
            "dropped": sum(s["dropped"] for s in stats), "newest": newest["data"]["n"],
            "after": used_memory(await ctx.caps())}


def test_hoarded_events_are_charged_to_the_subscriber(run_agents: Any) -> None:
    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(hoarder, quota={"memory": QUOTA})
        assert (await ctx.recv()).payload == b"subscribed"
        for n in range(2000):  # 2000 events of 8 KiB into 8 queues: 128 MiB uncharged
            await ctx.publish("app.flood.x", n=n, blob=BLOB)
        await ctx.send(h.ep, b"stop")
        _, st = await ctx.wait(h.aid)
        return st

    (r,) = run_agents(main).values()
    st = r["exit"]
    assert st["fault"] is None, st
    out = st["exit"]
    assert out["used"] <= QUOTA  # what stayed queued fits the hoarder's quota
    assert out["queued"] * len(BLOB) <= QUOTA
    assert out["dropped"] > 0  # the rest was dropped (oldest first) and counted
    assert out["newest"] > 1000  # drop_oldest: the reader still sees recent history
    assert out["after"] == 0  # unsubscribing gave it all back


async def sink(ctx: Context) -> None:
    await ctx.recv(timeout=3600)  # takes one message ("go"), then reads nothing until told
    while True:
        msg = await ctx.recv()
        if msg.payload == b"drain":
            while True:
                try:
                    await ctx.recv_nowait()
                except Exception:
                    break
            await ctx.send(ctx.slots.parent, b"drained")
        elif msg.payload == b"quit":
            return


def test_queued_messages_are_charged_to_their_sender(run_agents: Any) -> None:
    async def flooder(ctx: Context) -> dict[str, Any]:
        kids = [await ctx.spawn(sink) for _ in range(8)]
        for k in kids:
            await ctx.send(k.ep, b"go")
        sent, refused = 0, None
        for i in range(8 * 1000):  # 8 mailboxes x 1000 messages x 16 KiB: 128 MiB uncharged
            try:
                await ctx.send_nowait(kids[i % 8].ep, BIG)
                sent += 1
            except QuotaExceeded as e:
                refused = e.name
                break
        peak = used_memory(await ctx.caps())
        await ctx.send(kids[0].ep, b"drain")
        assert (await ctx.recv()).payload == b"drained"
        after_drain = used_memory(await ctx.caps())
        await ctx.send_nowait(kids[0].ep, BIG)  # room again: the receiver took its messages
        for k in kids:
            await ctx.kill(k.ctl)
            await ctx.wait(k.aid)
        return {"sent": sent, "refused": refused, "peak": peak, "after_drain": after_drain,
                "end": used_memory(await ctx.caps())}

    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(flooder, quota={"memory": QUOTA * 4})
        _, st = await ctx.wait(h.aid)
        return st

    (r,) = run_agents(main).values()
    st = r["exit"]
    assert st["fault"] is None, st
    out = st["exit"]
    assert out["refused"] == "EDQUOT"
    assert out["sent"] * len(BIG) <= QUOTA * 4 < (out["sent"] + 8) * len(BIG)
    assert out["peak"] <= QUOTA * 4
    assert out["after_drain"] < out["peak"]
    assert out["end"] == 0  # dead receivers' queues were refunded to the sender


def test_pending_async_results_are_charged(run_agents: Any) -> None:
    n = 300
    from aios.sdk import syscalls as sc

    async def collector(ctx: Context) -> dict[str, Any]:
        handles, refused = [], None
        for _ in range(n):  # spawns whose results are never collected
            try:
                handles.append(await sc.agent_spawn(ctx.slots.authority, "aios.demos.remote_agents:null_loop",
                                                    {"spec": {"n": 0}}))
            except QuotaExceeded as e:
                refused = e.name
                break
            await ctx.wait()  # the child ends at once; only its spawn's result stays pending
        used = used_memory(await ctx.caps())
        for h in handles:
            await sc.get_async_result(h)
        return {"made": len(handles), "refused": refused, "used": used,
                "after": used_memory(await ctx.caps())}

    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(collector, quota={"memory": 64 * 1024})
        _, st = await ctx.wait(h.aid)
        return st

    (r,) = run_agents(main).values()
    out = r["exit"]["exit"]
    assert out["refused"] == "EDQUOT" and out["made"] < n
    assert out["used"] <= 64 * 1024
    assert out["after"] == 0
