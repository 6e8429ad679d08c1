"""User tests (SDK only): a dead callee fails at once, with its fault, never like a slow one.

Finding 8 of the robustness review: ``ctx.spawn("mymod:Echo", executor="isolated")``
then ``ctx.call(child.ep, b"hi", timeout=5)`` waited the whole timeout and said
ETIMEDOUT; the cause (the sandbox refused to read the module) showed only
through ``ctx.wait``.  Every call here has a 60 s timeout; the assertions are
about *which* error comes back, which on the old kernel was ETIMEDOUT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runs import run_real

from aios.abi.errors import AgentGone, TimedOut
from aios.sdk import Context

ECHO = '''
async def main(ctx):
    while True:
        msg = await ctx.recv()
        if msg.call:
            await ctx.reply(msg, b"echo:" + msg.payload)
'''


async def call_outcome(ctx: Context, ep: int) -> str:
    try:
        await ctx.call(ep, b"hi", timeout=60)
    except AgentGone as e:
        return "gone: " + e.message
    except TimedOut:
        return "timed out"
    return "replied"


@pytest.mark.isolation
def test_call_to_an_isolated_agent_that_cannot_load_its_module(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # the agent's uid may reach the file (traverse every directory down to it) and DAC
    # allows reading it, but it is outside what the sandbox (Landlock) lets the agent read
    for p in [tmp_path, *tmp_path.parents]:
        if str(p) in ("/", "/tmp"):
            break
        p.chmod(p.stat().st_mode | 0o011)
    (tmp_path / "unreadable_echo_q.py").write_text(ECHO)
    (tmp_path / "unreadable_echo_q.py").chmod(0o644)
    monkeypatch.syspath_prepend(str(tmp_path))  # the kernel can import it; the sandbox may not read it

    async def main(ctx: Context) -> Any:
        sid = await ctx.subscribe("security.violation")
        h = await ctx.spawn("unreadable_echo_q:main", executor="isolated")
        first = await call_outcome(ctx, h.ep)
        _, st = await ctx.wait(h.aid, timeout=60)
        after = await call_outcome(ctx, h.ep)  # the endpoint's slot now names a reaped agent
        try:
            await ctx.next_event(sid, timeout=0)
            violations = 1
        except Exception:
            violations = 0
        return first, after, st["fault"], violations

    (r,) = run_real(main).values()
    assert r["fault"] is None, r["fault"]
    first, after, fault, violations = r["exit"]
    assert first.startswith("gone: ") and "faulted" in first, first
    assert "unreadable_echo_q" in first and "refused" in first and "image" in first, first
    assert after.startswith("gone: ") and "faulted" in after, after
    assert fault and "refused" in fault
    assert violations == 0  # calling a dead peer is not a security violation


def test_call_to_an_isolated_agent_whose_module_is_missing() -> None:
    async def main(ctx: Context) -> Any:
        h = await ctx.spawn("no_such_module_for_aios_q:main", executor="isolated")
        return await call_outcome(ctx, h.ep)

    (r,) = run_real(main).values()
    out = r["exit"]
    assert out.startswith("gone: ") and "No module named" in out and "aios image build" in out, out


def test_in_process_callee_that_faults_carries_its_traceback(run_agents: Any) -> None:
    async def doomed(ctx: Context) -> None:
        raise RuntimeError("doomed before its first receive")

    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(doomed)
        try:
            await ctx.call(h.ep, b"hi", timeout=60)
        except AgentGone as e:
            return e.message, e.detail.get("how"), e.detail.get("traceback") or ""
        return "no error"

    (r,) = run_agents(main).values()
    msg, how, trace = r["exit"]
    assert "doomed before its first receive" in msg and how == "faulted"
    assert "Traceback" in trace and "RuntimeError" in trace
