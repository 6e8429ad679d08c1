"""User tests (SDK only): clone, merge, split, upgrade, specialize, suspend/resume, hooks."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import (
    AgentFault,
    IllegalTransition,
    InvalidArgument,
    PermissionDenied,
    Vetoed,
)
from aios.sdk import Agent, Context


class Counter(Agent):
    """Counts messages into state; a call returns 'v1:<count>'."""

    async def on_start(self) -> None:
        self.state.setdefault("count", 0)

    async def on_message(self, msg):
        if msg.call:
            return b"v1:%d" % self.state["count"]
        self.state["count"] += 1
        return None


class CounterV2(Counter):
    async def on_message(self, msg):
        if msg.call:
            return b"v2:%d" % self.state["count"]
        self.state["count"] += 10
        return None


async def cloner(ctx: Context):
    ctx.state["secret"] = 7
    slot = await ctx.copy(ctx.slots.mailbox)  # an extra capability, slot >= 6
    c = await ctx.clone(name="twin")
    return c.aid, slot


def test_clone_copies_state_attenuates_caps_and_gets_fresh_mailbox(kernel, run_agents) -> None:
    async def main(ctx: Context):
        if ctx.name == "twin":  # the clone runs the same code; it reports what it got
            return {c["slot"]: c["rights"] for c in await ctx.caps()}, dict(ctx.state)
        ctx.state["secret"] = 7
        extra = await ctx.copy(ctx.slots.mailbox)
        await ctx.send(ctx.slots.mailbox, b"pending")  # stays with the original
        c = await ctx.clone(name="twin")
        _, st = await ctx.wait(c.aid)
        caps, state = st["exit"]
        return extra, caps, state, len(await ctx.recv_many(10, timeout=0))

    extra, caps, state, pending = only(run_agents(main))
    assert state == {"secret": 7}
    assert "GRANT" not in caps[extra] and "WRITE" in caps[extra]
    assert pending == 1


def test_specialize_narrows(run_agents) -> None:
    async def special(ctx: Context):
        caps = {c["slot"]: c for c in await ctx.caps()}
        return ctx.spec, caps[2]["rights"]

    async def main(ctx: Context):
        c = await ctx.specialize({"task": "summarize"}, entry=special, rights_mask=["SPAWN_AGENT"])
        return (await ctx.wait(c.aid))[1]["exit"]

    spec, auth_rights = only(run_agents(main))
    assert spec == {"task": "summarize"}
    assert "SPAWN_AGENT" not in auth_rights and "ALLOC_MEMORY" in auth_rights


def test_split_partitions_state_and_mailbox(run_agents) -> None:
    async def main(ctx: Context):
        if ctx.name == "half":  # the split-off agent runs the same code
            msgs = await ctx.recv_many(10, timeout=0)
            return dict(ctx.state), [m.payload for m in msgs]
        ctx.state.update({"a": 1, "b": 2, "c": 3})
        for p in (b"keep1", b"move1", b"keep2", b"move2"):
            await ctx.send(ctx.slots.mailbox, p)
        c = await ctx.split({"keys": ["b", "c"]}, lambda m: m.payload.startswith(b"move"), name="half")
        mine = [m.payload for m in await ctx.recv_many(10, timeout=0)]
        theirs = (await ctx.wait(c.aid))[1]["exit"]
        with pytest.raises(AgentFault):
            await ctx.split(lambda s: 1 / 0)
        with pytest.raises(InvalidArgument):
            await ctx.split(42)
        return dict(ctx.state), mine, theirs

    mine_state, mine, (their_state, theirs) = only(run_agents(main))
    assert mine_state == {"a": 1} and their_state == {"b": 2, "c": 3}
    assert mine == [b"keep1", b"keep2"] and theirs == [b"move1", b"move2"]


def test_upgrade_between_messages_keeps_id_state_mailbox(run_agents) -> None:
    async def main(ctx: Context):
        c = await ctx.spawn(Counter)
        for _ in range(3):
            await ctx.send(c.ep, b"+")
        before = await ctx.call(c.ep, b"?")
        await ctx.upgrade(c.ctl, CounterV2)
        await ctx.send(c.ep, b"+")
        after = await ctx.call(c.ep, b"?")
        info = await ctx.info(c.ctl)
        await ctx.kill(c.ctl)
        return before, after, info["aid"] == c.aid

    assert only(run_agents(main)) == (b"v1:3", b"v2:13", True)


def test_upgrade_needs_supervisor_right(run_agents) -> None:
    async def main(ctx: Context):
        c = await ctx.spawn(Counter)
        weak = await ctx.mint(c.ctl, ["READ", "KILL_AGENT"])
        with pytest.raises(PermissionDenied):
            await ctx.upgrade(weak, CounterV2)
        with pytest.raises(InvalidArgument):
            await ctx.upgrade(c.ctl, "not a valid entry")
        await ctx.kill(c.ctl)
        return "ok"

    assert only(run_agents(main)) == "ok"


def test_merge_folds_state_mailbox_and_caps(run_agents) -> None:
    async def idle(ctx: Context):
        await ctx.sleep(3600)

    async def main(ctx: Context):
        ctx.state["mine"] = 1
        other = await ctx.spawn(idle, state={"theirs": 2, "mine": 99})
        await ctx.send(other.ep, b"for-other-1")
        await ctx.send(ctx.slots.mailbox, b"for-me")
        await ctx.send(other.ep, b"for-other-2")
        await ctx.merge(other.ctl)
        msgs = [m.payload for m in await ctx.recv_many(10, timeout=0)]
        _, st = await ctx.wait(other.aid)
        with pytest.raises(PermissionDenied):
            await ctx.merge(ctx.slots.self)  # our own slot 0 carries no KILL_AGENT
        return dict(ctx.state), msgs, st["exit"]

    state, msgs, status = only(run_agents(main))
    assert state == {"mine": 1, "theirs": 2}
    assert msgs == [b"for-other-1", b"for-me", b"for-other-2"]  # arrival order
    assert status == {"merged_into": 2}


def test_merge_with_custom_merger_and_failure_changes_nothing(run_agents) -> None:
    async def idle(ctx: Context):
        await ctx.sleep(3600)

    async def main(ctx: Context):
        ctx.state["n"] = 1
        other = await ctx.spawn(idle, state={"n": 5})
        with pytest.raises(AgentFault):
            await ctx.merge(other.ctl, lambda a, b: 1 / 0)
        still = (await ctx.info(other.ctl))["state"]
        await ctx.merge(other.ctl, lambda a, b: {"n": a["n"] + b["n"]})
        return still, dict(ctx.state)

    still, state = only(run_agents(main))
    assert still in ("ready", "blocked") and state == {"n": 6}


def test_suspend_and_resume(run_agents) -> None:
    async def ticker(ctx: Context):
        n = 0
        while True:
            await ctx.recv()
            n += 1
            await ctx.send(ctx.slots.parent, b"%d" % n)

    async def main(ctx: Context):
        t = await ctx.spawn(ticker)
        await ctx.send(t.ep, b"go")
        first = (await ctx.recv(timeout=1)).payload
        await ctx.suspend(t.ctl)
        await ctx.send(t.ep, b"go")
        from aios.abi.errors import TimedOut

        with pytest.raises(TimedOut):
            await ctx.recv(timeout=1)
        state = (await ctx.info(t.ctl))["state"]
        await ctx.resume(t.ctl)
        second = (await ctx.recv(timeout=1)).payload
        with pytest.raises(IllegalTransition):
            await ctx.resume(t.ctl)
        await ctx.kill(t.ctl)
        return first, state, second

    assert only(run_agents(main, rights=["SPAWN_AGENT", "KILL_AGENT", "SUPERVISOR"])) == (b"1", "suspended", b"2")


def test_pre_hook_veto_leaves_no_trace(kernel, run_agents) -> None:
    def no_evil(k, op, **info) -> None:
        if info.get("name") == "evil":
            raise Vetoed("no evil agents")

    kernel.hooks.add_pre("spawn", no_evil)
    seen: list[tuple[str, int]] = []
    kernel.hooks.add_post("spawn", lambda k, op, **info: seen.append((op, info["agent"])))

    async def main(ctx: Context):
        before = len(await ctx.caps())
        with pytest.raises(Vetoed):
            await ctx.spawn(Counter, name="evil")
        after = len(await ctx.caps())
        c = await ctx.spawn(Counter, name="good")
        await ctx.kill(c.ctl)
        return before == after, c.aid

    same, good = only(run_agents(main))
    assert same and seen[-1] == ("spawn", good) and len(seen) == 2  # main itself, then good
    assert all(a.name != "evil" for a in kernel.agents)


def test_kill_tree_and_orphans_to_init(kernel, run_agents) -> None:
    async def sleeper(ctx: Context):
        await ctx.recv()  # blocks with no timer: virtual time cannot end it

    async def parent(ctx: Context):
        await ctx.spawn(sleeper, name="orphan")
        await ctx.spawn(sleeper, name="orphan")
        await ctx.sleep(3600)

    async def main(ctx: Context):
        p1 = await ctx.spawn(parent)
        p2 = await ctx.spawn(parent)
        await ctx.sleep(0.1)
        await ctx.kill(p1.ctl, tree=True)
        await ctx.kill(p2.ctl)
        return "ok"

    only(run_agents(main))
    alive = sorted((a.name, a.parent) for a in kernel.agents if a.alive and a.aid != 1)
    assert alive == [("orphan", 1), ("orphan", 1)]
