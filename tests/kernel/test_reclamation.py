"""Reclamation: spawn/exit cycles (10,000 here, 100,000 with ``make test-slow``) and
the kernel's tables return to baseline.

Each cycle's child leaves something behind for the kernel to clean up: a
subscription and a registered name, a locked mutex and a fault, a receive
parked on a week-long timeout when it is killed, a call its callee never
answers, a detached child, an orphaned grandchild, a memory region.  The
drivers never delete their control capabilities (most code does not), so
every cycle also leaves a parent holding a capability to a reaped agent:
that capability must keep only the exit record, not the agent.

After a warm-up batch the table sizes and the number of live kernel objects
(counted by the garbage collector) are the baseline; after 100 more batches
they must be exactly that again.  On the kernel before this change every
reaped agent stayed reachable through its parent's control capability.
"""

from __future__ import annotations

import gc
from collections import Counter
from typing import Any

import pytest

from aios.abi.errors import AgentGone, TimedOut
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.sdk import Context
from aios.sdk import syscalls as sc

BATCH = 1000
TRACKED = ("Agent", "KObject", "Capability", "CapabilitySpace", "Mailbox", "Wait", "SchedEntity",
           "Charge", "AsyncOp", "Subscription", "PageTable", "Message")


async def quiet(ctx: Context) -> int:
    await ctx.sleep(0.001)
    return 0


async def child(ctx: Context) -> Any:
    kind = ctx.spec["kind"]
    if kind == 0:  # subscribe, register a name, allocate, exit
        await ctx.subscribe("app.reclaim.*")
        await ctx.publish("app.reclaim.x", n=1)
        await ctx.register(f"reclaim-{ctx.aid}")
        await ctx.alloc(4096)
        return "ok"
    if kind == 1:  # die holding a mutex
        m = await sc.mutex_create()
        await sc.mutex_lock(m)
        raise RuntimeError("fault while holding a mutex")
    if kind == 2:  # parked on a week-long timeout when killed
        await ctx.send(ctx.slots.parent, b"parked")
        await ctx.recv(timeout=7 * 24 * 3600)
        return "not reached"
    if kind == 3:  # a call the callee never answers, then killed
        await ctx.send(ctx.slots.parent, b"calling")
        await ctx.call(ctx.slots.parent, b"never answered", timeout=7 * 24 * 3600)
        return "not reached"
    if kind == 4:  # a detached grandchild that waits, and an orphan
        await ctx.spawn(quiet, detached=True)
        await ctx.spawn(quiet)
        return "orphaned two"
    await ctx.sleep(0.001)
    return "slept"


async def driver(ctx: Context) -> int:
    done = 0
    for i in range(BATCH):
        kind = i % 6
        h = await ctx.spawn(child, spec={"kind": kind})
        if kind in (2, 3):
            msg = await ctx.recv()
            assert msg.payload in (b"parked", b"calling")
            if kind == 3:
                await ctx.recv()  # the call itself; never answered
            await ctx.kill(h.ctl)
        await ctx.wait(h.aid)
        done += 1
    with pytest.raises(AgentGone):  # the handle names the exit record, not the agent
        await ctx.kill(h.ctl)
    try:
        await ctx.recv(timeout=0.001)
    except TimedOut:
        pass
    return done


def live_objects() -> Counter[str]:
    gc.collect()
    tracked = set(TRACKED)
    return Counter(n for o in gc.get_objects() if (n := type(o).__name__) in tracked)


def run_batches(k: Kernel, n: int) -> None:
    for _ in range(n):
        (r,) = run_sync(run_async(k, driver)).values()
        assert r["fault"] is None and r["exit"] == BATCH, r


@pytest.mark.parametrize("batches", [10, pytest.param(100, marks=pytest.mark.slow)], ids=["10k", "100k"])
def test_spawn_exit_cycles_return_the_kernel_to_baseline(batches: int) -> None:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26)
    try:
        run_batches(k, 1)  # warm-up: caches, lazily made objects, init's adopted orphans
        base_tables, base_objects = k.object_counts(), live_objects()
        first_id = k.agents._next
        run_batches(k, batches)
        assert k.agents._next - first_id > batches * BATCH  # ids count up; none is reused
        assert k.object_counts() == base_tables
        assert live_objects() == base_objects  # every Agent record included
    finally:
        k.close()


async def chain(ctx: Context) -> int:
    """Clone yourself, then exit: a chain of generations (the review's clone loop)."""
    gen = ctx.state.get("gen", 0)
    if gen < 2000:
        ctx.state["gen"] = gen + 1
        await ctx.clone()
    return gen


def test_a_clone_chain_under_a_small_quota_leaves_nothing_behind() -> None:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26)
    try:
        run_sync(run_async(k, quiet))  # warm-up
        base_tables, base_objects = k.object_counts(), live_objects()
        first_id = k.agents._next
        (r,) = run_sync(run_async(k, chain, quota={"agents": 4})).values()
        assert r["fault"] is None, r
        assert k.agents._next - first_id > 2000  # every generation ran
        assert k.object_counts() == base_tables
        assert live_objects() == base_objects
    finally:
        k.close()


def test_zombies_count_against_the_agents_quota_until_reaped(run_agents: Any) -> None:
    from aios.abi.errors import QuotaExceeded

    async def exits_at_once(ctx: Context) -> int:
        return 0

    async def never_waits(ctx: Context) -> dict[str, Any]:
        made, refused = 0, None
        for _ in range(100):
            try:
                await ctx.spawn(exits_at_once)
                made += 1
            except QuotaExceeded as e:
                refused = e.name
                break
            await ctx.yield_()  # let the child run and exit: a zombie nobody reaps
        reaped = 0
        while True:
            try:
                await ctx.wait(timeout=0)
                reaped += 1
            except Exception:
                break
        again = await ctx.spawn(exits_at_once)  # reaping gave the quota back
        await ctx.wait(again.aid)
        return {"made": made, "refused": refused, "reaped": reaped}

    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(never_waits, quota={"agents": 4})
        _, st = await ctx.wait(h.aid)
        return st

    (r,) = run_agents(main).values()
    out = r["exit"]["exit"]
    assert out == {"made": 4, "refused": "EDQUOT", "reaped": 4}, r


def test_a_clone_loop_stays_within_its_quota_after_its_cloners_die() -> None:
    """Each clone clones itself and dies: its clones must stay inside the 4-agent
    envelope it was given, not move up to the grandparent's larger limit."""
    from aios.abi.errors import QuotaExceeded

    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26)
    peak = [0]

    async def cloner(ctx: Context) -> None:
        peak[0] = max(peak[0], k.agents.live)
        for _ in range(20):
            try:
                await ctx.clone()
            except QuotaExceeded:
                await ctx.sleep(0.02)

    async def main(ctx: Context) -> int:
        await ctx.spawn(cloner, quota={"agents": 4})
        for _ in range(50):
            await ctx.sleep(0.1)
            peak[0] = max(peak[0], k.agents.live)
        return peak[0]

    try:
        base = k.agents.live
        (r,) = run_sync(run_async(k, main)).values()
        assert r["fault"] is None, r
        assert r["exit"] - base <= 1 + 1 + 4  # main, the first cloner, and at most 4 below it
        assert k.object_counts()["agents"] == 1
    finally:
        k.close()


def test_revoking_an_authority_ends_everything_built_from_it() -> None:
    """One revoke kills a whole forest of agents (whose exits delete more capabilities
    while the subtree is being invalidated), including clones orphaned to init.  The
    kernel before this change panicked ("CDT child missing from its parent")."""
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26)

    async def grandchild(ctx: Context) -> None:
        await ctx.recv()

    async def middle(ctx: Context) -> None:
        for _ in range(3):
            await ctx.spawn(grandchild)
        if ctx.spec.get("clone"):
            await ctx.clone(spec={})
            return  # dies: its clone and grandchildren are orphaned to init
        await ctx.recv()

    async def main(ctx: Context) -> int:
        kids = [await ctx.spawn(middle, spec={"clone": i % 2}) for i in range(40)]
        await ctx.sleep(0.01)
        # everything the children built dies, orphans included (their quota envelopes are
        # still below this authority); the children themselves are left without authority
        n = await ctx.revoke(ctx.slots.authority)
        for h in kids:
            try:
                await ctx.kill(h.ctl)
            except Exception:
                pass  # the clones' parents already ended
        while True:
            try:
                await ctx.wait(timeout=0)
            except Exception:
                break
        return n

    try:
        base = k.object_counts()
        (r,) = run_sync(run_async(k, main)).values()
        assert r["fault"] is None, r
        assert r["exit"] > 0 and k.stats["panics"] == 0
        assert k.agents.live == 1  # init alone
        assert k.object_counts() == base
    finally:
        k.close()
