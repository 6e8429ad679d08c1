"""The behavior monitor on out-of-process agents, from the real kernel path.

Two signals reach it: refused AIOS syscalls (a capability scanner) and host
network calls refused by the sandbox (seccomp's reports, for agents without
ACCESS_NET; see ``test_containment.py`` for the ``REVOKE ACCESS_NET`` it
draws).  The mutants switch off the monitor, or the seccomp filter that
produces the reports, and must see no response.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import WouldBlock
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.sdk import Context

pytestmark = pytest.mark.isolation
H = "aios.demos.hostile:"


def scan(home: Path, **boot: Any) -> tuple[Any, list[tuple[Any, Any]], dict[str, Any]]:
    async def main(ctx: Context):
        sid = await ctx.subscribe("security.**", depth=8192)
        s = await ctx.spawn(H + "scan_slots", executor="isolated")
        _, st = await ctx.wait(s.aid, timeout=120)
        responses = []
        while True:
            try:  # responses are executed on the kernel's next turn: all are queued by now
                ev = await ctx.next_event(sid, timeout=0)
            except WouldBlock:
                break
            if ev["topic"] == "security.response" and ev["data"].get("agent") == s.aid:
                responses.append((ev["data"].get("response"), ev["data"].get("result")))
        return st, responses, await ctx.stats()

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, home=home, **boot)
    try:
        res = run_sync(run_async(k, main))
    finally:
        k.close()
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    return r["exit"]  # type: ignore[no-any-return]


def test_isolated_scanner_is_handled_and_kernel_survives(tmp_path: Path) -> None:
    _st, responses, stats = scan(tmp_path / "home")
    assert responses, "the scanner drew no automated response"
    assert stats["panics"] == 0
    kinds = {kind for kind, _ in responses}
    assert kinds & {"throttle", "revoke", "suspend", "kill"}


@pytest.mark.security_mutant
def test_mutant_without_the_monitor_the_scanner_draws_nothing(tmp_path: Path) -> None:
    st, responses, _ = scan(tmp_path / "home", behavior=False)
    assert st["exit"] == 3000 - 6 and responses == []


@pytest.mark.security_mutant
def test_mutant_without_seccomp_reports_no_network_attempt_reaches_the_monitor(tmp_path: Path) -> None:
    from aios.kernel.confinement import weaken_for_tests

    async def main(ctx: Context) -> Any:
        sid = await ctx.subscribe("security.response", depth=1024)
        h = await ctx.spawn(H + "net_attempts", executor="isolated", caps=[[2, ["SPAWN_AGENT", "ACCESS_NET"]]],
                            spec={"auth": 6, "n": 8})
        await ctx.recv(timeout=60)  # "tried": with no seccomp filter no refusal exists to report
        await ctx.send(h.ep, b"go")
        _, st = await ctx.wait(h.aid, timeout=60)
        responses = []
        while True:
            try:
                responses.append((await ctx.next_event(sid, timeout=0))["data"])
            except WouldBlock:
                break
        return st["exit"], responses

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, home=tmp_path / "home")
    weaken_for_tests(k, "seccomp")
    try:
        res = run_sync(run_async(k, main, rights=["SPAWN_AGENT", "KILL_AGENT", "ACCESS_NET"]))
    finally:
        k.close()
    (r,) = res.values()
    got, responses = r["exit"]
    assert all(t["ok"] for t in got["tries"])  # the sockets were made: nothing refused them
    assert "ACCESS_NET" in got["after"] and not any(x["response"] == "revoke" for x in responses)
