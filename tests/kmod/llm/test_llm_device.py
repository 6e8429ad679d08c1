"""The LLM device through the kernel: capabilities, budgets, kill, streaming, hotplug."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.kmod.llm.fakes import SPEC, ScriptedDriver

from aios.abi.errors import InvalidCapability, PermissionDenied, QuotaExceeded
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.kmod.devices.table import table
from aios.kmod.llm.service import service
from aios.sdk import syscalls as sc

OPERATOR = {"rights": ["ADMIN", "SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT"]}
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def k() -> Iterator[Kernel]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26, llm="off")
    table(k).register_driver(SPEC)
    yield k
    k.close()


def plug(k: Kernel, drv: ScriptedDriver, did: str = "llm7") -> None:
    table(k).plug(SPEC.name, device_id=did, backend=drv)


def run(k: Kernel, fn: Any, **opts: Any) -> dict[str, Any]:
    (r,) = run_sync(run_async(k, fn, **{**OPERATOR, **opts})).values()
    assert r["fault"] is None, r["fault"]
    return r


async def _until(pred: Any, what: str, timeout_s: float = 10.0) -> None:
    """Poll (yielding to the kernel, which lets the event loop run the device's
    tasks) until ``pred()``; the deadline is a wall-clock guard."""
    end = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await sc.yield_()


def test_a_call_streams_and_reports_usage(k: Kernel) -> None:
    drv = ScriptedDriver()
    plug(k, drv)

    async def agent(ctx: Any) -> Any:
        await sc.dev_open(ctx.slots.authority, "llm7")
        whole = await ctx.llm.chat(HELLO, max_tokens=5, seed=3)
        pieces = [p async for p in ctx.llm.chat("count", max_tokens=4, stream=True)]
        return whole.text, whole.usage, whole.finish_reason, pieces

    text, usage, fin, pieces = run(k, agent)["exit"]
    assert text == " t1 t2 t3 t4 t5" and fin == "length"
    assert usage["prompt_tokens"] == 10 and usage["completion_tokens"] == 5
    assert "".join(pieces) == " t1 t2 t3 t4"
    assert drv.requests[0].seed == 3 and drv.requests[0].max_tokens == 5
    assert service(k).usage[2]["completion_tokens"] == 9


def no_capability_attempts(k: Kernel) -> tuple[list[str], ScriptedDriver]:
    """A worker holding a READ-only device capability tries to open the device
    (no ADMIN), to chat through a non-device slot, and through its READ-only one."""
    drv = ScriptedDriver()
    plug(k, drv)

    async def worker(ctx: Any) -> Any:
        seen = []
        for attempt in (lambda: sc.dev_open(ctx.slots.authority, "llm7"),
                        lambda: sc.llm_chat(ctx.slots.authority, HELLO, {"max_tokens": 2}),
                        lambda: sc.llm_chat(6, HELLO, {"max_tokens": 2})):
            try:
                h = await attempt()
                if isinstance(h, int) and h < 6:
                    await sc.llm_recv(h, None, True)
                seen.append("sent")
            except (PermissionDenied, InvalidCapability) as e:
                seen.append(e.name)
        return seen

    async def parent(ctx: Any) -> Any:
        ro = await sc.dev_open(ctx.slots.authority, "llm7", ["READ"])
        child = await ctx.spawn(worker, caps=[[ro, ["READ"]]])  # lands in the child's slot 6
        _aid, status = await ctx.wait(child.aid)
        return status["exit"]

    return run(k, parent)["exit"], drv


def test_an_agent_without_the_capability_is_refused(k: Kernel) -> None:
    """No DEVICE capability, a READ-only one, no ADMIN to open: all refused, nothing sent."""
    seen, drv = no_capability_attempts(k)
    assert seen == ["EPERM", "EBADCAP", "EPERM"]
    assert drv.requests == []


@pytest.mark.security_mutant
def test_mutant_use_right_unchecked_lets_a_reader_use_the_model(
        k: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    from aios.abi.rights import Rights
    from aios.kmod.llm import syscalls

    monkeypatch.setattr(syscalls, "DEV_USE", Rights.NONE)
    seen, drv = no_capability_attempts(k)
    assert seen == ["EPERM", "EBADCAP", "sent"] and len(drv.requests) == 1


def over_budget(k: Kernel) -> tuple[Any, ScriptedDriver]:
    drv = ScriptedDriver(prompt_tokens=10)
    plug(k, drv)

    async def worker(ctx: Any) -> Any:
        out = []
        r = await ctx.llm.chat(HELLO, max_tokens=20)
        out.append(r.usage["charged_tokens"])
        try:
            await ctx.llm.chat(HELLO, max_tokens=60)
            out.append("sent")
        except QuotaExceeded as e:
            out.append((e.code, e.message))
        out.append(await ctx.llm.stats())
        return out

    async def parent(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        budgeted = await sc.llm_budget(dev, 100, ["READ", "WRITE"])
        child = await ctx.spawn(worker, caps=[budgeted])
        _aid, status = await ctx.wait(child.aid)
        return status["exit"], await sc.llm_stats(budgeted)

    return run(k, parent)["exit"], drv


def test_budget_exhaustion_is_refused_before_sending(k: Kernel) -> None:
    ((charged, (code, msg), stats), mine), drv = over_budget(k)
    assert charged == 30  # 10 prompt + 20 generated, as the model counted
    assert code == 122 and "LLM token budget" in msg and "70 of 100 remain" in msg
    assert len(drv.requests) == 1  # the refused call never reached the device
    assert stats["budgets"][0] == {"limit": 100, "used": 30, "reserved": 0, "left": 70}
    assert mine["budgets"][0]["used"] == 30


@pytest.mark.security_mutant
def test_mutant_no_reservation_sends_the_over_budget_call(
        k: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    from aios.kmod.llm.budget import Budgets

    monkeypatch.setattr(Budgets, "reserve", staticmethod(lambda chain, tokens: None))
    ((_charged, second, _stats), _mine), drv = over_budget(k)
    assert second == "sent" and len(drv.requests) == 2


def test_budgets_are_charged_up_the_chain(k: Kernel) -> None:
    """A grandchild's own budget is large, its parent's small: the parent's refuses."""
    drv = ScriptedDriver(prompt_tokens=10)
    plug(k, drv)

    async def agent(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        small = await sc.llm_budget(dev, 80)
        large = await sc.llm_budget(small, 10_000)  # derived: cannot widen
        a = await sc.llm_chat(large, HELLO, {"max_tokens": 20})
        await sc.llm_recv(a, None, True)
        try:
            await sc.llm_chat(large, HELLO, {"max_tokens": 40})
            return "sent"
        except QuotaExceeded as e:
            return e.detail.get("level"), (await sc.llm_stats(large))["budgets"]

    level, budgets = run(k, agent)["exit"]
    assert level == 1
    assert [b["used"] for b in budgets] == [30, 30]
    assert len(drv.requests) == 1


def kill_mid_call(k: Kernel) -> tuple[Any, ScriptedDriver]:
    drv = ScriptedDriver(free=3)  # three tokens, then one per release()
    plug(k, drv)
    svc = service(k)

    async def worker(ctx: Any) -> Any:
        await ctx.llm.chat(HELLO, max_tokens=50)
        return "finished"

    async def parent(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        child = await ctx.spawn(worker, caps=[dev])
        await _until(lambda: svc.devices["llm7"].queue.in_flight == 1 and drv.tokens_sent == 3,
                     "three tokens in flight")
        before = (await sc.llm_stats(dev))["clients"][str(child.aid)]["tokens_out"]
        await ctx.kill(child.ctl)
        await ctx.wait(child.aid)
        drv.release(10)  # a generation still running now produces ten more tokens
        await _until(lambda: drv.closed_early == 1 or drv.tokens_sent == 13,
                     "the stream closed, or ten more tokens")
        q = svc.devices["llm7"].queue
        after = (await sc.llm_stats(dev))["clients"][str(child.aid)], (
            q.stats(child.aid)["tokens_out"] if child.aid in q.clients() else None)
        drv.release(100)  # let a call that was not stopped finish, so the kernel goes idle
        return before, after, child.aid

    return run(k, parent)["exit"], drv


def test_kill_cancels_the_call_in_flight_and_stops_charging(k: Kernel) -> None:
    (before, after, aid), drv = kill_mid_call(k)
    svc = service(k)
    assert before == 3
    row, queued_tokens = after
    assert queued_tokens is None  # the dead agent's client is gone from the queue
    assert not row["live"] and row["cancelled"] == 1 and row["tokens_out"] == 3
    assert drv.closed_early == 1 and drv.tokens_sent == 3  # the generation stopped on the device
    u = svc.usage[aid]
    assert u["cancelled"] == 1 and u["completion_tokens"] == 3
    assert svc.devices["llm7"].tokens_out == 3
    assert k.external == 0


@pytest.mark.security_mutant
def test_mutant_no_exit_hook_keeps_generating_and_charging(k: Kernel) -> None:
    svc = service(k)
    k.registry.exit_hooks.remove(svc.agent_exit)
    (before, after, _aid), drv = kill_mid_call(k)
    assert before == 3
    row, queued_tokens = after
    assert queued_tokens == 13 and row["tokens_out"] == 13  # charged for tokens nobody reads
    assert drv.tokens_sent > 3


def test_hotplug_emits_events_and_stale_capabilities_fail(k: Kernel) -> None:
    from aios.abi.errors import NoSuchObject

    events: list[tuple[str, str]] = []
    k.bus.subscribe("dev.*", callback=lambda ev: events.append((ev.topic, ev.data["device"])))
    drv = ScriptedDriver()
    table(k).register_driver(SPEC.__class__("scripted-factory", "llm", "1.0.0",
                                            lambda **cfg: drv))

    async def agent(ctx: Any) -> Any:
        added = await sc.dev_add(ctx.slots.authority, "scripted-factory", {}, {"device_id": "hot0"})
        dev = await sc.dev_open(ctx.slots.authority, "hot0")
        r = await ctx.llm.chat(HELLO, max_tokens=2)
        await sc.dev_health(ctx.slots.authority, "hot0", "degraded", "test")
        gone = await sc.dev_remove(ctx.slots.authority, "hot0")
        try:
            await sc.llm_chat(dev, HELLO, {"max_tokens": 2})
            stale = "sent"
        except NoSuchObject as e:
            stale = e.name
        listed = await sc.dev_list()
        return added, r.text, gone["health"], stale, [d["id"] for d in listed["devices"]]

    added, text, health, stale, ids = run(k, agent)["exit"]
    assert added["capabilities"]["model"] == "scripted" and added["health"] == "ok"
    assert text == " t1 t2" and health == "removed" and stale == "ENOENT" and "hot0" not in ids
    assert [e for e in events if e[0] != "dev.opened"] == [
        ("dev.added", "hot0"), ("dev.health", "hot0"), ("dev.removed", "hot0")]


def test_an_isolated_agent_thinks_through_the_same_syscalls() -> None:
    """The SDK is traps only: an agent in its own sandboxed process streams a call."""
    from aios.kernel.clock import MonotonicClock

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 26, llm="off")
    try:
        table(k).register_driver(SPEC)
        drv = ScriptedDriver()
        plug(k, drv)

        async def parent(ctx: Any) -> Any:
            dev = await sc.dev_open(ctx.slots.authority, "llm7")
            child = await ctx.spawn("aios.demos.thinkers:think", caps=[[dev, ["READ", "WRITE"]]],
                                    executor="isolated", spec={"question": "hi", "max_tokens": 6})
            info = next(r for r in await sc.agent_list() if r["aid"] == child.aid)
            _aid, status = await ctx.wait(child.aid)
            return info, status

        info, status = run(k, parent)["exit"]
    finally:
        k.close()
    assert info["kind"] == "isolated", info
    out = status["exit"]
    assert out["text"] == " t1 t2 t3 t4 t5 t6" and out["pieces"] >= 1
    assert out["usage"]["completion_tokens"] == 6 and len(drv.requests) == 1


def test_bad_requests_and_unmeetable_deadlines_change_nothing(k: Kernel) -> None:
    from aios.abi.errors import Busy, InvalidArgument

    drv = ScriptedDriver()
    plug(k, drv)

    async def agent(ctx: Any) -> Any:
        dev = await sc.dev_open(ctx.slots.authority, "llm7")
        small = await sc.llm_budget(dev, 1000)
        seen = []
        for messages, opts in (
            ([], {}),
            ([{"role": "wizard", "content": "x"}], {}),
            (HELLO, {"max_tokens": 0}),
            (HELLO, {"temperature": 9}),
            (HELLO, {"priority": "urgent"}),
            (HELLO, {"json_schema": "not a schema"}),
            (HELLO, {"bogus": 1}),
            (HELLO, {"max_tokens": 100, "deadline_s": 0.5}),  # 100 tokens cannot take 0.5 s
        ):
            try:
                await sc.llm_chat(small, messages, opts)
                seen.append("sent")
            except (InvalidArgument, Busy) as e:
                seen.append(e.name)
        ok = await sc.llm_chat(small, HELLO, {"max_tokens": 3, "deadline_s": 60, "priority": "interactive"})
        r = await sc.llm_recv(ok, None, True)
        return seen, r["text"], (await sc.llm_stats(small))["budgets"][0]

    seen, text, budget = run(k, agent)["exit"]
    assert seen == ["EINVAL"] * 7 + ["EBUSY"]
    assert text == " t1 t2 t3" and len(drv.requests) == 1
    assert budget["used"] == 13 and budget["reserved"] == 0  # only the call that ran was charged
