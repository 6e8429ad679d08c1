"""The hostile-agent suite, against the real kernel (SDK only).

Isolated agents try to read outside their directory, write into the code
directory, use the network without ACCESS_NET, fork-bomb, allocate past their
quota, spin forever, ptrace/signal/read the kernel, use a slot they do not
hold and send malformed frames.  Each attempt is denied or contained and
leaves a security event; a well-behaved agent keeps being served throughout,
and its syscall latency during the attacks is reported.
"""

from __future__ import annotations

import os

import pytest

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.sdk import Context

pytestmark = pytest.mark.isolation
H = "aios.demos.hostile:"


def test_hostile_agents_are_contained_and_the_kernel_keeps_serving(capsys: pytest.CaptureFixture[str]) -> None:
    kernel_pid = os.getpid()

    async def main(ctx: Context):
        sid = await ctx.subscribe("security.**", depth=4096)
        good = await ctx.spawn(H + "steady", executor="isolated", spec={"n": 4000})
        attacks = {}
        for name in ("read_outside", "write_code", "network", "fork_bomb", "hog_memory", "attack_kernel",
                     "forged_slot", "malformed_frames"):
            attacks[name] = await ctx.spawn(H + name, executor="isolated", quota={"memory": 256 << 20},
                                            spec={"kernel_pid": kernel_pid})
        spinner = await ctx.spawn(H + "spin", executor="isolated")
        await ctx.recv(timeout=60)  # it is spinning now
        results = {}
        for name, child in attacks.items():
            _, st = await ctx.wait(child.aid, timeout=60)
            results[name] = st
        _, good_st = await ctx.wait(good.aid, timeout=120)
        await ctx.kill(spinner.ctl)
        _, spin_st = await ctx.wait(spinner.aid, timeout=60)
        events = []
        while True:
            try:
                events.append(await ctx.next_event(sid, timeout=0.5))
            except Exception:
                break
        return results, good_st, spin_st, events

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24)
    try:
        res = run_sync(run_async(k, main, rights=["SPAWN_AGENT", "KILL_AGENT", "ALLOC_MEMORY"]))
    finally:
        k.close()
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    results, good, spin, events = r["exit"]

    assert results["read_outside"]["exit"].startswith("denied")
    assert results["write_code"]["exit"].startswith("denied")
    assert all(x.startswith("denied") for x in results["network"]["exit"])
    fb = results["fork_bomb"]["exit"]
    assert fb["stopped_by"].startswith("denied") and fb["forked"] < 500
    mem = results["hog_memory"]
    assert (mem["exit"] or "").startswith("denied") or mem["fault"]  # MemoryError or killed at the limit
    ak = results["attack_kernel"]["exit"]
    assert not ak["ptrace"].startswith("0:") and ak["signal"].startswith("denied") and ak["read_mem"].startswith("denied")
    assert results["forged_slot"]["exit"] == "denied:EBADCAP"
    assert results["malformed_frames"]["fault"] and "protocol" in results["malformed_frames"]["fault"].lower()
    assert spin["fault"] and "killed" in spin["fault"]

    assert good["fault"] is None and good["exit"]["calls"] == 4000
    kinds = {(e["topic"], e["data"].get("kind") or e["data"].get("error")) for e in events}
    assert any(t == "security.sandbox" for t, _ in kinds)  # syscalls denied by seccomp are reported
    assert ("security.violation", "EBADCAP") in kinds
    with capsys.disabled():
        print(f"\nwell-behaved isolated agent during the attacks: p50 {good['exit']['p50_ns'] / 1000:.1f} µs, "
              f"p99 {good['exit']['p99_ns'] / 1000:.1f} µs per syscall; {len(events)} security events")
