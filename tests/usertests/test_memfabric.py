"""User tests (SDK only): memoryd namespaces as capabilities, tiers, quotas."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidCapability,
    PermissionDenied,
    QuotaExceeded,
)
from aios.sdk import Context
from aios.sdk import syscalls as sc
from aios.sdk.fabric import Memory


async def peer(ctx: Context):
    """Receive a namespace capability, then run commands on it and report what happened."""
    ns = Memory.adopt((await ctx.recv()).cap)
    results = []
    while True:
        m = await ctx.recv()
        cmd = m.payload.decode()
        if cmd == "done":
            return results
        try:
            if cmd == "search":
                hits = await ns.search("a city in France", k=1)
                results.append(("search", hits[0]["text"] if hits else None))
            elif cmd == "put":
                await ns.put("written by the peer")
                results.append(("put", "ok"))
        except (InvalidCapability, PermissionDenied) as e:
            results.append((cmd, e.name))


async def stranger(ctx: Context):
    """Holds no namespace capability: every slot it can name fails."""
    out = []
    for slot in range(0, 12):
        try:
            await sc.memd_search([slot], "anything")
            out.append("read")
        except (InvalidCapability, PermissionDenied) as e:
            out.append(e.name)
        try:
            await sc.memd_get(slot, 1)
            out.append("read")
        except (InvalidCapability, PermissionDenied) as e:
            out.append(e.name)
    return out


def test_no_capability_no_access(run_agents) -> None:
    async def main(ctx: Context):
        ns = await Memory().create("private")
        await ns.put("the secret is 42")
        s = await ctx.spawn(stranger)
        _, st = await ctx.wait(s.aid)
        return st["exit"]

    out = only(run_agents(main))
    assert out and "read" not in out and set(out) <= {"EBADCAP", "EPERM"}


def test_read_only_share_then_revoke(run_agents) -> None:
    async def main(ctx: Context):
        ns = await Memory().create("shared/notes")
        await ns.put("Paris is the capital of France", meta={"by": "owner"})
        await ns.put("Bananas are yellow")
        p = await ctx.spawn(peer)
        share = await ns.share(p.ep, ["READ"])
        for cmd in (b"search", b"put"):
            await ctx.send(p.ep, cmd)
        await ctx.sleep(0.05)
        revoked = await share.revoke()
        await ctx.send(p.ep, b"search")
        await ctx.send(p.ep, b"done")
        _, st = await ctx.wait(p.aid)
        mine = await ns.search("a city in France", k=1)  # the owner is unaffected
        return revoked, st["exit"], mine[0]["text"]

    revoked, results, mine = only(run_agents(main))
    assert revoked == 1
    assert results == [("search", "Paris is the capital of France"), ("put", "EPERM"),
                       ("search", "EBADCAP")]
    assert mine == "Paris is the capital of France"


def test_write_share_and_multi_namespace_search(run_agents) -> None:
    async def main(ctx: Context):
        mem = Memory()
        a = await mem.create("team/a")
        b = await mem.create("team/b")
        p = await ctx.spawn(peer)
        await a.share(p.ep, ["READ", "WRITE"])
        await ctx.send(p.ep, b"put")
        await ctx.send(p.ep, b"done")
        _, st = await ctx.wait(p.aid)
        await b.put("Lyon is a city in France", meta={"lang": "en"})
        hits = await Memory.search([a, b], "a city in France", k=2)
        filtered = await b.search("a city in France", filters={"lang": "de"})
        return st["exit"], [(h["namespace"], h["text"]) for h in hits], filtered

    results, hits, filtered = only(run_agents(main))
    assert results == [("put", "ok")]
    assert hits[0] == ("team/b", "Lyon is a city in France")
    assert ("team/a", "written by the peer") in hits
    assert filtered == []


def test_tiers(run_agents) -> None:
    async def main(ctx: Context):
        ns = await Memory().create("tiers")
        await ns.core_set("persona", "I am a careful travel planner.")
        await ns.core_append("persona", "I prefer trains.")
        await ns.core_replace("persona", "trains", "night trains")
        blk = await ns.core_get("persona")
        hist = await ns.core_history("persona")
        await ns.recall_append("user", "book me a trip to Vienna")
        await ns.recall_append("assistant", "which dates suit you?")
        words = await ns.recall_search("Vienna")
        recent = await ns.recall_search(k=1)
        r = await ns.put("Vienna has a famous opera house", meta={"city": "vienna"})
        got = await ns.get(r["id"])
        await ns.delete(r["id"])
        gone = await ns.search("opera", k=5)
        st = await ns.stats()
        return blk, len(hist), [w["text"] for w in words], recent[0]["role"], got["meta"], gone, st

    blk, nhist, words, recent_role, meta, gone, st = only(run_agents(main))
    assert blk["value"] == "I am a careful travel planner.\nI prefer night trains." and blk["version"] == 3
    assert nhist == 3
    assert words == ["book me a trip to Vienna"]
    assert recent_role == "assistant"
    assert meta == {"city": "vienna"} and gone == []
    assert st["by_tier"] == {"core": 1, "recall": 2, "archival": 0} and st["namespace"] == "tiers"


def test_quotas_and_bad_input(run_agents) -> None:
    async def main(ctx: Context):
        mem = Memory()
        ns = await mem.create("small", quota_items=2)
        await ns.put("one")
        await ns.put("two")
        with pytest.raises(QuotaExceeded):
            await ns.put("three")
        with pytest.raises(AlreadyExists):
            await mem.create("small")
        with pytest.raises(InvalidArgument):
            await ns.put("x", tier="core")
        with pytest.raises(InvalidArgument):
            await mem.create("big", quota_items=10**9)
        with pytest.raises(InvalidArgument):
            await sc.memd_put(ns.slot, "x", {"colour": "red"})
        with pytest.raises(PermissionDenied):  # not ADMIN
            await mem.open("small")
        st = await ns.stats()
        # the byte quota is charged to the authority's memory quota
        child_quota = (await ctx.inspect(ctx.slots.authority))["used"]["memory"]
        return st["items"], child_quota

    items, used = only(run_agents(main))
    assert items == 2 and used >= 16 << 20


def test_byte_quota_is_charged_to_the_authority(run_agents) -> None:
    async def small(ctx: Context):
        mem = Memory()
        ok = await mem.create("fits", quota_bytes=1 << 20)
        try:
            await mem.create("too-big", quota_bytes=8 << 20)
            big = "created"
        except QuotaExceeded as e:
            big = e.name
        await sc.cap_delete(ok.slot)  # the last capability: the charge is refunded
        again = await mem.create("fits-again", quota_bytes=3 << 20)
        return big, again.slot > 0

    async def main(ctx: Context):
        c = await ctx.spawn(small, quota={"memory": 4 << 20})
        _, st = await ctx.wait(c.aid)
        return st["exit"], st["fault"]

    assert only(run_agents(main)) == (("EDQUOT", True), None)


def test_admin_opens_and_lists(run_agents) -> None:
    async def main(ctx: Context):
        mem = Memory()
        ns = await mem.create("ops")
        await ns.put("admins can see this")
        again = await mem.open("ops", ["READ"])
        hits = await again.search("who can see this", k=1)
        with pytest.raises(PermissionDenied):
            await again.put("no write through a read-only open")
        rows = await mem.list()
        status = await Memory.stats()
        return hits[0]["text"], [r["namespace"] for r in rows], status["embedder"]

    text, names, embedder = only(run_agents(main, rights=["SPAWN_AGENT", "ALLOC_MEMORY", "ADMIN"]))
    assert text == "admins can see this" and "ops" in names and embedder
