"""Audit backpressure in a running kernel: a violation storm against a stalled disk.

The commit thread is gated (an Event stands in for a disk that stopped
answering), so nothing is acknowledged.  Four agents flood the bus with
capability violations and one *bystander* makes a handful.  The kernel must
hold the violators at their share of the bounded buffer (their syscalls wait;
no record is dropped) while the bystander, far below its fair share, finishes;
when the disk answers again, every violator is released and completes, and
every record is in the log.  On a kernel without backpressure the pending
buffer simply grows (the review saw 72,537 pending against 2,277 acknowledged).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.kmod.security.glue import security_of
from aios.lib.audit.backpressure import Backpressure
from aios.sdk import Context
from aios.sdk import syscalls as sc

STORM = 3000  # violations per violator


def test_a_violation_storm_is_held_at_its_share_and_loses_nothing(tmp_path: Path) -> None:
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, home=tmp_path / "h", behavior=False)
    ks = security_of(k)
    assert ks is not None and ks.audit is not None
    pump = ks.audit
    pump.pressure = Backpressure(capacity=512, share=256, floor=8)
    disk = threading.Event()
    flush = pump.recorder.flush

    def stalled_flush() -> int:
        disk.wait()
        return flush()

    pump.recorder.flush = stalled_flush  # type: ignore[method-assign]
    seen: dict[str, Any] = {}

    async def violator(ctx: Context) -> int:
        for _ in range(STORM):
            try:
                await ctx.send(999, b"x")  # an empty slot: security.violation, audited
            except Exception:
                pass
        return STORM

    async def bystander(ctx: Context) -> str:
        for _ in range(5):
            try:
                await ctx.send(998, b"x")
            except Exception:
                pass
        return "done"

    async def referee(ctx: Context) -> dict[str, Any]:
        kids = [await ctx.spawn(violator) for _ in range(4)]
        b = await ctx.spawn(bystander)
        _, st = await ctx.wait(b.aid, timeout=60)  # finishes while nothing is acknowledged
        seen["bystander"] = st["exit"]
        for _ in range(600):  # the violators fill their shares and are held
            status = await sc.audit_status()
            if status["held"] == 4:
                break
            await ctx.sleep(0.05)
        seen["while_stalled"] = status
        seen["acknowledged_while_stalled"] = status["acknowledged"]
        disk.set()  # the disk answers again
        return [(await ctx.wait(c.aid, timeout=120))[1]["exit"] for c in kids]

    try:
        (r,) = run_sync(run_async(k, referee)).values()
        status = pump.status()
    finally:
        disk.set()
        k.close()
    assert r["fault"] is None, r["fault"]
    assert r["exit"] == [STORM] * 4
    assert seen["bystander"] == "done"
    stalled = seen["while_stalled"]
    assert stalled["held"] == 4, stalled
    # bounded: held at their shares of the 512-record buffer (at most twice its capacity)
    assert stalled["pending"] <= 2 * 512, stalled
    assert status["pending_max"] <= 2 * 512, status
    assert status["holds"] >= 4
    # nothing was dropped: every violation is in the log once the disk answered
    assert status["recorded"] >= 4 * STORM + 5
