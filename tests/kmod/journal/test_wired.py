"""The journal wired into a kernel: acknowledged operations survive a simulated crash.

A kernel journals while agents spawn, grant, revoke and send durably; the journal is then
abandoned (what a crash does: nothing more is committed) and a second kernel boots on it.
The agent comes back with its id, name and the capabilities it held; the revoked one does
not; the durable messages are in its mailbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import NoSuchObject, WouldBlock
from aios.abi.rights import ObjKind
from aios.host import start_kernel
from aios.kernel.kernel import Kernel
from aios.kmod.journal.service import JOURNAL
from aios.kmod.journal.store import Journal
from aios.kmod.journal.syscalls import open_journal
from aios.sdk import Context

KEEPER = "aios.demos.journaled:keeper"


def run_until(k: Kernel, done: Callable[[], bool], timeout: float = 60.0) -> None:
    async def main() -> None:
        task = asyncio.create_task(k.run())
        deadline = time.monotonic() + timeout
        while not done():
            if task.done() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        k.stop()
        await task
        await k.executors.close()

    asyncio.run(main())
    assert done(), "the agents did not finish in time"


def boot(path: Path) -> Kernel:
    k = start_kernel(arena_bytes=1 << 24)
    open_journal(k, Journal(path))
    return k


def crash(k: Kernel) -> None:
    k.ext[JOURNAL].abandon()
    k.close()


@pytest.mark.parametrize("compact_every", [1 << 20, 8], ids=["frames", "compacting"])
def test_acknowledged_operations_survive_and_revoked_capabilities_do_not(tmp_path: Path,
                                                                         compact_every: int) -> None:
    path = tmp_path / "journal" / "journal.db"
    k = boot(path)
    k.ext[JOURNAL].compact_every = compact_every  # "compacting": snapshots while it runs
    out: dict[str, Any] = {}

    async def driver(ctx: Context) -> None:
        keep = await ctx.spawn(KEEPER, name="keeper", restart="always")
        temp = await ctx.spawn(KEEPER, name="temp")  # restart "no": does not come back
        out["keeper"], out["temp"] = keep.aid, temp.aid
        # two grants of the events topic, one revoked: only the other may come back
        mine = await ctx.mint(4, ["READ", "GRANT"])
        out["kept_slot"] = await ctx.grant(4, keep.ep, ["READ"])
        out["revoked_slot"] = await ctx.grant(mine, keep.ep, ["READ"])
        await ctx.revoke(mine)
        for i in range(5):
            await ctx.send(keep.ep, b"durable %d" % i, durable=True)
        await ctx.send(keep.ep, b"not durable")
        out["done"] = True
        await ctx.sleep(3600)

    from aios.host import spawn_root

    spawn_root(k, driver, name="driver", events=["READ", "WRITE", "GRANT"])
    run_until(k, lambda: out.get("done", False))
    keeper = k.find(out["keeper"])
    assert keeper is not None
    if compact_every < 100:
        assert k.ext[JOURNAL].stats["compactions"] > 1
    before = {c.slot: (c.obj.kind, int(c.rights)) for c in keeper.cspace.caps()}
    assert out["revoked_slot"] not in before and out["kept_slot"] in before
    crash(k)

    k2 = boot(path)
    try:
        again = k2.find(out["keeper"])
        assert again is not None and again.alive and again.name == "keeper"
        after = {c.slot: (c.obj.kind, int(c.rights)) for c in again.cspace.caps()}
        assert after[out["kept_slot"]] == before[out["kept_slot"]] == (ObjKind.TOPIC, 1)
        assert out["revoked_slot"] not in after
        assert [m.payload for m in again.mailbox.q] == [b"durable %d" % i for i in range(5)]
        assert k2.find(out["temp"]) is None  # restart "no"
        svc = k2.ext[JOURNAL]
        lost = {r["aid"]: r["reason"] for r in svc.recovered["lost_agents"]}
        assert "restart policy 'no'" in lost[out["temp"]]
        assert out["temp"] in svc.history
        assert svc.recovered["messages"] == 5
        assert k2.agents.next_id > max(out["keeper"], out["temp"])  # ids are never reused
    finally:
        crash(k2)

    k3 = boot(path)  # and once more: the restored state was itself journaled
    try:
        a3 = k3.find(out["keeper"])
        assert a3 is not None and a3.alive
        assert out["revoked_slot"] not in {c.slot for c in a3.cspace.caps()}
        assert len(a3.mailbox.q) == 5
    finally:
        k3.ext[JOURNAL].close()
        k3.close()


def test_durable_send_needs_a_journal_and_room() -> None:
    k = start_kernel(arena_bytes=1 << 24)
    seen: list[type] = []

    async def a(ctx: Context) -> None:
        try:
            await ctx.send(1, b"x", durable=True)
        except NoSuchObject as e:
            seen.append(type(e))

    from aios.host import spawn_root

    spawn_root(k, a)
    run_until(k, lambda: bool(seen))
    k.close()
    assert seen == [NoSuchObject]


@pytest.mark.parametrize("n", [3])
def test_full_mailbox_refuses_a_durable_send_and_journals_nothing(tmp_path: Path, n: int) -> None:
    from aios.abi import limits

    k = boot(tmp_path / "j.db")
    svc = k.ext[JOURNAL]
    res: dict[str, Any] = {}

    async def a(ctx: Context) -> None:
        child = await ctx.spawn(KEEPER, name="full")
        for _ in range(limits.MAILBOX_DEPTH):
            await ctx.send(child.ep, b"x")
        before = svc.stats["durable_sends"]
        try:
            await ctx.send(child.ep, b"y", durable=True)
        except WouldBlock:
            res["refused"] = svc.stats["durable_sends"] == before
        res["done"] = True

    from aios.host import spawn_root

    spawn_root(k, a)
    run_until(k, lambda: res.get("done", False))
    svc.close()
    k.close()
    assert res["refused"]


def test_checkpoints_are_kept_last_n_and_restored_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    k = boot(path)
    out: dict[str, Any] = {}

    async def driver(ctx: Context) -> None:
        c = await ctx.spawn("aios.demos.journaled:counter", name="counter", restart="on-failure")
        out["aid"] = c.aid
        for _ in range(5):
            out["n"] = int(await ctx.call(c.ep, b"tick"))
        out["done"] = True
        await ctx.sleep(3600)

    from aios.host import spawn_root

    spawn_root(k, driver, name="driver")
    run_until(k, lambda: out.get("done", False))
    j = k.ext[JOURNAL].j
    assert out["n"] == 5
    assert [(c.n, c.state) for c in j.checkpoints(out["aid"])] == [(3, {"n": 3}), (4, {"n": 4}), (5, {"n": 5})]
    crash(k)

    k2 = boot(path)
    got: dict[str, Any] = {}

    async def asker(ctx: Context) -> None:
        from aios.sdk import syscalls as sc

        _ctl, ep = await sc.agent_control(2, out["aid"])
        got["n"] = int(await ctx.call(ep, b"get"))

    try:
        a = k2.find(out["aid"])
        assert a is not None and a.alive and a.state == {"n": 5}  # restarted from its checkpoint
        spawn_root(k2, asker, name="asker", rights=["ADMIN"])
        run_until(k2, lambda: "n" in got)
        assert got["n"] == 5
    finally:
        k2.ext[JOURNAL].close()
        k2.close()


def test_a_bad_checkpoint_is_refused_and_journals_nothing(tmp_path: Path) -> None:
    from aios.abi import limits
    from aios.abi.errors import InvalidArgument

    k = boot(tmp_path / "j.db")
    svc = k.ext[JOURNAL]
    seen: list[str] = []

    async def a(ctx: Context) -> None:
        for bad in ({"x": object()}, ["not", "a", "dict"], {"big": "x" * limits.SPEC_MAX_BYTES}):
            try:
                await ctx.checkpoint(bad)  # type: ignore[arg-type]
            except InvalidArgument as e:
                seen.append(e.code)

    from aios.host import spawn_root

    spawn_root(k, a)
    run_until(k, lambda: len(seen) == 3)
    assert svc.ckpt == {} and svc.j.checkpoints(2) == []
    svc.close()
    k.close()


def test_the_agents_of_units_are_left_to_initd(tmp_path: Path) -> None:
    from aios.host import spawn_root

    path = tmp_path / "j.db"
    k = boot(path)
    a = spawn_root(k, KEEPER, name="memoryd.service", restart="always", spec={"unit": "memoryd.service"})
    b = spawn_root(k, KEEPER, name="plain", restart="always")
    k.ext[JOURNAL].flush()
    crash(k)
    k2 = boot(path)
    try:
        lost = {r["aid"]: r["reason"] for r in k2.ext[JOURNAL].recovered["lost_agents"]}
        assert lost == {a.aid: "initd starts unit memoryd.service itself"}
        assert k2.find(b.aid) is not None and k2.find(a.aid) is None
    finally:
        crash(k2)
