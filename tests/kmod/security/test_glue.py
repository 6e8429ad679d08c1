"""The security layer wired into a real kernel: policy hooks, audit, behavior, boot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import PolicyDenied
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.kmod.security.glue import security_of
from aios.lib.audit.log import LogReader
from aios.lib.behavior import BehaviorConfig, ResponseKind, Rung
from aios.lib.identity import read_node_public
from aios.lib.paths import audit_db_path
from aios.sdk import Context
from aios.sdk import syscalls as sc

DENY_WORKERS = """
@id("no-crawlers")
forbid(principal, action == Action::"spawn", resource)
when { context.child_type == "crawler" };
"""


def boot(home: Path | None = None, **kw: Any) -> Kernel:
    return start_kernel(clock=VirtualClock(), arena_bytes=1 << 24, home=home, **kw)


def run(k: Kernel, *targets: Any, **opts: Any) -> dict[int, dict[str, Any]]:
    return run_sync(run_async(k, *targets, **opts))  # type: ignore[no-any-return]


def records(home: Path) -> list[tuple[str, bytes]]:
    r = LogReader.open(audit_db_path(home))
    return [(e.kind, e.record) for e in r.entries(limit=100_000)]


async def idle(ctx: Context) -> None:
    await ctx.recv(timeout=0.01)


def test_security_is_off_by_default() -> None:
    k = boot()
    try:
        assert security_of(k) is None and k.observer is None and not k.guards
    finally:
        k.close()


def test_denied_spawn_never_creates_an_agent(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "policy").mkdir(parents=True)
    (home / "policy" / "deny.cedar").write_text(DENY_WORKERS)
    k = boot(home)
    seen: dict[str, Any] = {}

    async def main(ctx: Context) -> None:
        before = (await ctx.stats())["agents_total"]
        caps_before = len(await ctx.caps())
        with pytest.raises(PolicyDenied):
            await ctx.spawn(idle, spec={"type": "crawler"})
        seen["after"] = (await ctx.stats())["agents_total"] - before
        seen["caps"] = len(await ctx.caps()) - caps_before
        seen["used"] = (await ctx.inspect(ctx.slots.authority))["used"]["agents"]
        h = await ctx.spawn(idle, spec={"type": "worker"})
        await ctx.wait(h.aid)

    try:
        res = run(k, main)
        assert all(r["fault"] is None for r in res.values()), res
        assert seen == {"after": 0, "caps": 0, "used": 0}
    finally:
        k.close()
    kinds = [(kind, rec) for kind, rec in records(home) if kind == "policy.decision"]
    denied = [rec for _, rec in kinds if b'"decision":"deny"' in rec]
    assert len(denied) == 1 and b"no-crawlers" in denied[0]
    assert any(b'"decision":"allow"' in rec for _, rec in kinds)


def test_resource_and_scheduling_policy_by_type(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "policy").mkdir(parents=True)
    (home / "policy" / "batch.cedar").write_text(
        '@id("batch-q") @priority("10") @quota_memory("8MiB") @quota_agents("2")\n'
        'permit(principal, action == Action::"quota", resource == AgentType::"batch");\n'
        '@id("batch-s") @priority("10") @sched_weight("335")\n'
        'permit(principal, action == Action::"schedule", resource == AgentType::"batch");\n'
    )
    k = boot(home)
    out: dict[str, Any] = {}

    async def child(ctx: Context) -> Any:
        info = await ctx.inspect(ctx.slots.authority)
        st = (await sc.sched_stats(0))[0]
        return info["quota"], st["weight"]

    async def main(ctx: Context) -> None:
        for t in ("batch", "other"):
            h = await ctx.spawn(child, spec={"type": t})
            _, st = await ctx.wait(h.aid)
            out[t] = st["exit"]

    try:
        run(k, main)
    finally:
        k.close()
    (q, w) = out["batch"]
    assert q["memory"] == 8 << 20 and q["agents"] == 2 and w == 335
    (q2, w2) = out["other"]
    assert q2["memory"] == 256 << 20 and q2["agents"] == 64 and w2 == 1024


def test_grant_guard_denies_admin_to_untrusted(tmp_path: Path) -> None:
    k = boot(policy=True)
    got: dict[str, Any] = {}

    async def holder(ctx: Context) -> None:
        await ctx.recv(timeout=1)

    async def main(ctx: Context) -> None:
        h = await ctx.spawn(holder, spec={"trust": "untrusted"})
        adm = await ctx.mint(ctx.slots.mailbox, ["WRITE", "GRANT"])
        mine = await ctx.caps()
        with pytest.raises(PolicyDenied):
            await ctx.grant(ctx.slots.authority, h.ep, ["ADMIN"])
        got["caps_unchanged"] = len(await ctx.caps()) == len(mine)
        got["ok"] = await ctx.grant(adm, h.ep, ["WRITE"])
        await ctx.wait(h.aid)

    try:
        res = run(k, main, rights=["SPAWN_AGENT", "GRANT", "ADMIN"])
        assert all(r["fault"] is None for r in res.values()), res
        assert got["caps_unchanged"] and isinstance(got["ok"], int)
        assert security_of(k).policy.denied == 1  # type: ignore[union-attr]
    finally:
        k.close()


FAST = BehaviorConfig(
    window_ns=10_000_000, warmup_windows=5, warmup_calls=50,
    ladder=(Rung(1.0, ResponseKind.THROTTLE, weight_factor=0.25), Rung(3.0, ResponseKind.SUSPEND)),
)


def test_flood_is_throttled_suspended_and_released(tmp_path: Path) -> None:
    home = tmp_path / "h"
    k = boot(home, behavior=FAST)
    out: dict[str, Any] = {}

    async def flooder(ctx: Context) -> None:
        for _ in range(30):  # normal: a few calls per 10 ms window
            for _ in range(5):
                await sc.agent_self()
            await ctx.sleep(0.01)
        for i in range(5000):  # flood
            await sc.agent_self()
            if i % 500 == 499:
                await ctx.sleep(0.001)
        out["flood_done"] = True

    async def normal(ctx: Context) -> int:
        for _ in range(60):
            for _ in range(5):
                await sc.agent_self()
            await ctx.sleep(0.01)
        return (await sc.behavior_status(0))["alerts_raised"]

    async def main(ctx: Context) -> None:
        f = await ctx.spawn(flooder)
        n = await ctx.spawn(normal)
        await ctx.sleep(0.7)
        st = await sc.behavior_status(f.ctl)
        out["active"] = sorted(r["response"] for r in st["active"])
        out["state"] = (await ctx.info(f.ctl))["state"]
        out["weight"] = (await sc.sched_stats(f.ctl))[0]["weight"]
        out["normal_status"] = await sc.behavior_status(n.ctl)
        out["released"] = [r["response"] for r in await sc.agent_release(f.ctl)]
        out["weight_after"] = (await sc.sched_stats(f.ctl))[0]["weight"]
        await ctx.wait(f.aid)
        await ctx.wait(n.aid)

    try:
        res = run(k, main)
        assert all(r["fault"] is None for r in res.values()), res
    finally:
        k.close()
    assert out["active"] == ["suspend", "throttle"]
    assert out["state"] == "suspended" and out["weight"] == 256
    assert out["normal_status"]["active"] == [] and out["normal_status"]["score"] < 1
    assert sorted(out["released"]) == ["resume", "unthrottle"] and out["weight_after"] == 1024
    assert out["flood_done"]
    kinds = [kind for kind, _ in records(home)]
    assert "security.anomaly" in kinds and kinds.count("security.response") == 4


def test_close_flushes_and_log_verifies_with_node_key(tmp_path: Path) -> None:
    home = tmp_path / "h"
    k = boot(home)

    async def main(ctx: Context) -> None:
        for _ in range(20):
            h = await ctx.spawn(idle)
            await ctx.wait(h.aid)
            try:
                await ctx.send(77, b"x")
            except Exception:
                pass

    run(k, main)
    k.close()
    assert security_of(k).closed  # type: ignore[union-attr]
    r = LogReader.open(audit_db_path(home))
    _, keys = read_node_public(home)
    rep = r.verify(keys)
    assert rep.ok and rep.size == r.size() and rep.checkpoints >= 1
    kinds = [kind for kind, _ in records(home)]
    assert kinds.count("security.violation") == 20 and kinds.count("agent.lifecycle.spawned") == 21
    assert kinds[0] == "security.boot"


def test_broken_policy_stops_boot_and_reload_keeps_old(tmp_path: Path) -> None:
    from aios.abi.errors import InvalidArgument

    home = tmp_path / "h"
    (home / "policy").mkdir(parents=True)
    bad = home / "policy" / "bad.cedar"
    bad.write_text("permit(principal, action, resource) when { principal.tpye == 1 };")
    with pytest.raises(InvalidArgument):
        boot(home)
    bad.write_text(DENY_WORKERS)
    k = boot(home)
    out: dict[str, Any] = {}

    async def main(ctx: Context) -> None:
        bad.write_text("this is not cedar")
        with pytest.raises(InvalidArgument):
            await sc.policy_reload(ctx.slots.authority)
        with pytest.raises(PolicyDenied):  # the old set is still in force
            await ctx.spawn(idle, spec={"type": "crawler"})
        bad.write_text("")
        out["reload"] = await sc.policy_reload(ctx.slots.authority)
        h = await ctx.spawn(idle, spec={"type": "crawler"})
        await ctx.wait(h.aid)

    try:
        res = run(k, main, rights=["SPAWN_AGENT", "ADMIN"])
        assert all(r["fault"] is None for r in res.values()), res
        assert out["reload"]["ok"] and out["reload"]["changed"]
    finally:
        k.close()
