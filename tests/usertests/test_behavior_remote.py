"""The behavior monitor's responses on an out-of-process agent never hurt the kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.sdk import Context

pytestmark = pytest.mark.isolation


def test_isolated_scanner_is_handled_and_kernel_survives(tmp_path: Path) -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("security.**", depth=8192)
        s = await ctx.spawn("aios.demos.hostile:scan_slots", executor="isolated")
        _, st = await ctx.wait(s.aid, timeout=120)
        responses = []
        while True:
            try:
                ev = await ctx.next_event(sid, timeout=0.2)
            except Exception:
                break
            if ev["topic"] == "security.response" and ev["data"].get("agent") == s.aid:
                responses.append((ev["data"].get("response"), ev["data"].get("result")))
        return st, responses, await ctx.stats()

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, home=tmp_path / "home")
    try:
        res = run_sync(run_async(k, main))
    finally:
        k.close()
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    _st, responses, stats = r["exit"]
    assert responses, "the scanner drew no automated response"
    assert stats["panics"] == 0
    kinds = {kind for kind, _ in responses}
    assert kinds & {"throttle", "revoke", "suspend", "kill"}
