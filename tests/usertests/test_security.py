"""User tests (SDK only): the security syscalls 150-158, success and failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import (
    IntegrityError,
    InvalidArgument,
    InvalidCapability,
    NoSuchObject,
    PermissionDenied,
    TokenExpired,
    TokenRevoked,
)
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.sdk import Context
from aios.sdk import syscalls as sc

ADMIN = ["SPAWN_AGENT", "GRANT", "ADMIN", "SUPERVISOR", "KILL_AGENT"]


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Kernel]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 24, home=tmp_path / "h")
    yield k
    k.close()


def run(k: Kernel, fn: Any, **opts: Any) -> Any:
    res = run_sync(run_async(k, fn, **opts))
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    return r["exit"]


async def quiet(ctx: Context) -> None:
    await ctx.recv(timeout=0.05)


def test_security_syscalls_without_security(kernel: Kernel, run_agents: Any) -> None:
    async def main(ctx: Context) -> int:
        n = 0
        for call in (sc.audit_status(), sc.attest_quote(b"n"), sc.token_import(b"x"),
                     sc.behavior_status(0), sc.agent_identity(0)):
            with pytest.raises(NoSuchObject):
                await call
            n += 1
        return n

    (r,) = run_agents(main).values()
    assert r["exit"] == 5


def test_token_export_import_roundtrip_and_failures(secure: Kernel) -> None:
    async def main(ctx: Context) -> Any:
        tok = await sc.token_export(ctx.slots.mailbox, ["WRITE"], {"expires_in": 3600})
        slot = await sc.token_import(tok)
        await ctx.send(slot, b"via token")
        got = (await ctx.recv()).payload
        info = await ctx.inspect(slot)
        with pytest.raises(PermissionDenied):  # slot 3 (directory) holds no GRANT
            await sc.token_export(ctx.slots.directory, ["READ"])
        with pytest.raises(InvalidArgument):
            await sc.token_export(ctx.slots.mailbox, [], None)
        with pytest.raises(InvalidCapability):
            await sc.token_export(99)
        bad = bytearray(tok)
        bad[len(bad) // 2] ^= 1
        with pytest.raises((IntegrityError, InvalidArgument)):
            await sc.token_import(bytes(bad))
        with pytest.raises(PermissionDenied):  # for another audience
            await sc.token_import(await sc.token_export(ctx.slots.mailbox, ["WRITE"],
                                                        {"audience": "node-elsewhere"}))
        return got, info["rights"]

    assert run(secure, main) == (b"via token", ["WRITE"])


def test_token_expiry_and_revocation(secure: Kernel) -> None:
    from aios.lib import tokens

    async def main(ctx: Context) -> Any:
        tok = await sc.token_export(ctx.slots.mailbox, ["WRITE"], {"expires_in": 1})
        slot = await sc.token_import(tok)
        await ctx.sleep(2)
        with pytest.raises(InvalidCapability):  # the installed capability expired
            await ctx.send(slot, b"late")
        old = await sc.token_export(ctx.slots.mailbox, ["WRITE"], {"expiry": 1000})
        with pytest.raises(TokenExpired):  # expiry is wall-clock unix time
            await sc.token_import(old)
        t2 = await sc.token_export(ctx.slots.mailbox, ["WRITE"])
        s2 = await sc.token_import(t2)
        rid = tokens.inspect(t2)[0][0].revocation_id
        with pytest.raises(InvalidArgument):
            await sc.token_revoke(ctx.slots.authority, "not-an-id")
        n = await sc.token_revoke(ctx.slots.authority, rid, "test")
        with pytest.raises(InvalidCapability):
            await ctx.send(s2, b"x")
        with pytest.raises(TokenRevoked):
            await sc.token_import(t2)
        return n

    assert run(secure, main, rights=ADMIN) == 1


def test_token_revoke_needs_admin(secure: Kernel) -> None:
    async def main(ctx: Context) -> str:
        with pytest.raises(PermissionDenied):
            await sc.token_revoke(ctx.slots.authority, "0" * 32)
        with pytest.raises(PermissionDenied):
            await sc.policy_reload(ctx.slots.authority)
        return "ok"

    assert run(secure, main) == "ok"


def test_policy_reload(secure: Kernel) -> None:
    async def main(ctx: Context) -> Any:
        r = await sc.policy_reload(ctx.slots.authority)
        return r["ok"], r["policies"] > 0

    assert run(secure, main, rights=ADMIN) == (True, True)


def test_identity_quote_and_audit_status(secure: Kernel) -> None:
    from aios.lib.identity import AgentIdentity

    async def main(ctx: Context) -> Any:
        me = await sc.agent_identity(0)
        h = await ctx.spawn(quiet)
        child = await sc.agent_identity(h.ctl)
        with pytest.raises(InvalidCapability):
            await sc.agent_identity(77)
        q = await sc.attest_quote(b"fresh-nonce")
        with pytest.raises(InvalidArgument):
            await sc.attest_quote("text")
        with pytest.raises(InvalidArgument):
            await sc.attest_quote(b"x" * 65)
        st = await sc.audit_status()
        await ctx.wait(h.aid)
        return me, child, q, st

    me, child, q, st = run(secure, main)
    ident = AgentIdentity(me["agent"], bytes.fromhex(me["image"]), me["public_key"],
                          me["statement"], me["node_signature"])
    assert ident.binding_valid(me["node_public_key"])
    assert child["agent"] != me["agent"] and child["public_key"] != me["public_key"]
    from aios.lib.attest import LogEvent, Quote, verify_quote

    quote = Quote.from_json({k: v for k, v in q.items() if k != "event_log"})
    verify_quote(quote, [LogEvent.from_json(e) for e in q["event_log"]], me["node_public_key"],
                 b"fresh-nonce")
    with pytest.raises(IntegrityError):
        verify_quote(quote, [LogEvent.from_json(e) for e in q["event_log"]],
                     me["node_public_key"], b"stale")
    assert st["size"] >= st["acknowledged"] and st["errors"] == 0


def test_behavior_status_and_release(secure: Kernel) -> None:
    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(quiet)
        st = await sc.behavior_status(h.ctl)
        released = await sc.agent_release(h.ctl)  # nothing in force: nothing to reverse
        with pytest.raises(PermissionDenied):
            await sc.agent_release(ctx.slots.self)  # slot 0 lacks SUPERVISOR
        with pytest.raises(InvalidCapability):
            await sc.behavior_status(55)
        await ctx.wait(h.aid)
        return st["active"], released

    assert run(secure, main) == ([], [])
