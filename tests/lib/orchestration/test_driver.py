"""Workflows under asyncio: real concurrency, cancellation that stops every running
step and releases its device requests (streams from the simulated endpoint over
loopback), approvals, timeouts on a virtual clock, and resume after a crash from
the kernel journal (in process, and after SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import DeviceError, NoSuchObject
from aios.kmod.journal.store import Journal
from aios.lib.llm.chat import ChatRequest, user
from aios.lib.llm.http import HttpDriver
from aios.lib.llm.simserver import SimServer
from aios.lib.orchestration.driver import MemoryCheckpoints, StepContext, WorkflowDriver
from aios.lib.orchestration.runtime import Status
from aios.lib.orchestration.workflow import (
    approval,
    par,
    parse,
    seq,
    task,
    workflow,
)

from .crash_child import AID, WF, JournalCheckpoints, handlers

HERE = Path(__file__).parent


def test_parallel_steps_really_overlap() -> None:
    inflight = {"now": 0, "max": 0}

    async def work(ctx: StepContext, args: dict[str, Any]) -> Any:
        inflight["now"] += 1
        inflight["max"] = max(inflight["max"], inflight["now"])
        for _ in range(5):
            await asyncio.sleep(0)
        inflight["now"] -= 1
        return args["n"] * 10

    wf = parse(workflow("w", seq("s", par("p", *[task(f"t{i}", "work", {"n": i})
                                                 for i in range(4)]),
                                 task("sum", "total", {"xs": "${p}"}))))

    async def total(ctx: StepContext, args: dict[str, Any]) -> Any:
        return sum(args["xs"].values())

    ck = MemoryCheckpoints()
    res = asyncio.run(WorkflowDriver({"work": work, "total": total}, checkpoints=ck)
                      .run(wf, run_id="r"))
    assert res.status is Status.DONE and res.output == 60 and inflight["max"] == 4
    assert ck.saves == 6 and ck.load("r") is not None  # after each step, and at the end
    assert ck.states["r"]["status"] == "done"


class Device:
    """Device requests as the kernel will count them (a slot per streaming request)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.taken = 0

    def take(self) -> None:
        self.in_flight += 1
        self.taken += 1

    def give_back(self) -> None:
        self.in_flight -= 1


def test_cancellation_stops_every_running_step_and_releases_its_device_requests() -> None:
    device = Device()
    seen: dict[str, Any] = {"chunks": {}, "cancelled": [], "finally": []}

    async def go() -> tuple[Any, SimServer, WorkflowDriver]:
        async with SimServer(seed=4, time_scale=0.5, natural_max=100_000) as srv:
            llm = HttpDriver(srv.url, "sim-1")

            async def think(ctx: StepContext, args: dict[str, Any]) -> Any:
                device.take()
                ctx.hold("llm", device.give_back)  # the driver releases it however we end
                req = ChatRequest((user(f"think about {args['topic']}"),), max_tokens=5000)
                stream = llm.stream(req)
                try:
                    async with contextlib.aclosing(stream):
                        async for _ch in stream:
                            seen["chunks"][ctx.key] = seen["chunks"].get(ctx.key, 0) + 1
                except asyncio.CancelledError:
                    seen["cancelled"].append(ctx.key)
                    raise
                finally:
                    seen["finally"].append(ctx.key)
                return "done"

            wf = parse(workflow("team", seq("s", par("p", *[
                task(f"agent{i}", "think", {"topic": f"part {i}"}) for i in range(3)]),
                task("after", "think", {"topic": "never"}))))
            d = WorkflowDriver({"think": think})
            run = asyncio.create_task(d.run(wf, run_id="r1"))
            deadline = time.monotonic() + 60
            while len([k for k, n in seen["chunks"].items() if n >= 2]) < 3:
                assert time.monotonic() < deadline, "the steps never started streaming"
                await asyncio.sleep(0.01)
            assert device.in_flight == 3 and srv.engine.running == 3
            d.cancel("r1", "the user changed their mind")
            res = await run
            deadline = time.monotonic() + 30
            while srv.engine.busy:  # the server notices the closed connections
                assert time.monotonic() < deadline, "generation went on after cancellation"
                await asyncio.sleep(0.01)
            await llm.aclose()
            return res, srv, d

    res, srv, d = asyncio.run(go())
    assert res.status is Status.CANCELLED
    assert sorted(seen["cancelled"]) == sorted(seen["finally"]) == ["agent0", "agent1",
                                                                    "agent2"]
    assert device.in_flight == 0 and device.taken == 3  # "after" never started
    assert sorted(d.released) == [(f"agent{i}", "llm", True) for i in range(3)]
    assert not srv.engine.busy
    assert [e.kind for e in res.trace].count("task.cancelled") == 3


def test_a_handler_that_releases_its_own_lease_is_not_released_twice() -> None:
    device = Device()

    async def tidy(ctx: StepContext, args: dict[str, Any]) -> Any:
        device.take()
        lease = ctx.hold("llm", device.give_back)
        await ctx.release(lease)
        return 1

    async def broken(ctx: StepContext, args: dict[str, Any]) -> Any:
        device.take()
        ctx.hold("llm", device.give_back)
        raise DeviceError("the model device went away")

    d = WorkflowDriver({"tidy": tidy, "broken": broken})
    ok = asyncio.run(d.run(parse(workflow("w", task("t", "tidy"))), run_id="a"))
    bad = asyncio.run(d.run(parse(workflow("w", task("t", "broken", retries=1))), run_id="b"))
    assert ok.status is Status.DONE and bad.status is Status.FAILED
    assert device.in_flight == 0 and device.taken == 3
    assert d.released == [("t", "llm", False), ("t", "llm", True), ("t", "llm", True)]


def test_approvals_through_the_driver() -> None:
    async def go() -> Any:
        def on_trace(run_id: str, e: Any) -> None:
            if e.kind == "approval.requested":
                assert d.pending_approvals(run_id) == {"ok": "Send the report?"}
                d.approve(run_id, e.key, True, by="dana")

        async def work(ctx: StepContext, args: dict[str, Any]) -> Any:
            return args

        d = WorkflowDriver({"work": work}, on_trace=on_trace)
        wf = parse(workflow("w", seq("s", task("draft", "work", {"x": 1}),
                                     approval("ok", "Send the report?"),
                                     task("send", "work", {"by": "${ok.by}"}))))
        with pytest.raises(NoSuchObject):
            d.approve("nope", "ok", True)
        return await d.run(wf, run_id="r")

    res = asyncio.run(go())
    assert res.status is Status.DONE and res.output == {"by": "dana"}


class VirtualClock:
    """Sleeps that end when the test advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waiting: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(self, s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((self.now + s, fut))
        await fut

    def advance(self, s: float) -> None:
        self.now += s
        for t, fut in list(self.waiting):
            if t <= self.now and not fut.done():
                fut.set_result(None)
                self.waiting.remove((t, fut))


def test_a_step_timeout_on_a_virtual_clock_cancels_and_retries() -> None:
    clock = VirtualClock()
    calls: list[int] = []
    cancelled: list[int] = []

    async def slow_first(ctx: StepContext, args: dict[str, Any]) -> Any:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(ctx.attempt)
                raise
        return ctx.attempt

    async def go() -> Any:
        d = WorkflowDriver({"w": slow_first}, sleep=clock.sleep)
        run = asyncio.create_task(d.run(parse(workflow("w", task("t", "w", retries=1,
                                                                 timeout_s=30))), run_id="r"))
        while calls != [1] or not clock.waiting:
            await asyncio.sleep(0)
        clock.advance(29)
        for _ in range(20):
            await asyncio.sleep(0)
        assert calls == [1]  # not yet
        clock.advance(1)
        return await run

    res = asyncio.run(go())
    assert res.status is Status.DONE and res.output == 2
    assert calls == [1, 2] and cancelled == [1]


def test_unknown_handlers_are_refused_before_anything_runs() -> None:
    with pytest.raises(NoSuchObject) as ei:
        asyncio.run(WorkflowDriver({}).run(parse(workflow("w", task("t", "nobody"))),
                                           run_id="r"))
    assert "nobody" in str(ei.value)


def expected_output(log: Path) -> Any:
    async def go() -> Any:
        d = WorkflowDriver(handlers(log, False))
        return await d.run(parse(WF), {}, run_id="ref")

    res = asyncio.run(go())
    assert res.status is Status.DONE
    return res.output


def started(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [ln.split(" ", 1)[1] for ln in log.read_text().splitlines() if ln.startswith("START")]


def test_resume_from_the_kernel_journal_after_the_process_is_killed(tmp_path: Path) -> None:
    jpath, log1, log2 = tmp_path / "journal.db", tmp_path / "run1.log", tmp_path / "run2.log"
    err = tmp_path / "child.err"
    with err.open("wb") as ef:
        proc = subprocess.Popen([sys.executable, str(HERE / "crash_child.py"), str(jpath),
                                 str(log1)], stdout=subprocess.DEVNULL, stderr=ef)
        try:
            deadline = time.monotonic() + 120
            while "block" not in started(log1):
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "the child never reached the blocking step"
                time.sleep(0.05)
        finally:
            proc.kill()  # SIGKILL: no cleanup, no last commit
            proc.wait()
    j = Journal(jpath)
    try:
        sink = JournalCheckpoints(j, AID)
        state = sink.load("r1")
        assert state is not None and state["status"] == "running"
        finished = set(state["results"])
        assert {"a", "b", "c", "l[3]/step"} <= finished and "block" not in finished

        d = WorkflowDriver(handlers(log2, False), checkpoints=sink)
        res = asyncio.run(d.run(parse(WF), {}, run_id="r1", resume=True))
    finally:
        j.close()
    assert res.status is Status.DONE and res.output == expected_output(tmp_path / "ref.log")
    again = started(log2)
    assert not (set(again) & finished)  # nothing that had finished ran again
    assert again == ["block", "final"]  # the step in flight at the crash ran again
    restored = {e.key for e in res.trace if e.kind == "task.restored"}
    assert restored == finished
    j2 = Journal(jpath)
    try:
        cp = j2.latest_checkpoint(AID)
        assert cp is not None and cp.state["state"]["status"] == "done"
    finally:
        j2.close()
