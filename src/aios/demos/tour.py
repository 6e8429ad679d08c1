"""The kernel tour: a small multi-agent workload that shows what AIOS does.

Every step prints what happened and why, so a newcomer can read the output
top to bottom: spawning with least authority, binary IPC and calls, a denied
syscall, a capability grant and its revocation taking effect, shared memory
between agents, each lifecycle operation, and the event stream the kernel
published meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aios.abi.errors import AIOSError
from aios.sdk import Agent, Context

Say = Callable[[str], None]


class Librarian(Agent):
    """Keeps a key-value store in its declared state; answers calls."""

    async def on_start(self) -> None:
        self.state.setdefault("books", {})
        self.state.setdefault("served", 0)

    async def on_message(self, msg: Any) -> bytes | None:
        self.state["served"] += 1
        cmd, _, arg = msg.payload.partition(b" ")
        if cmd == b"put":
            k, _, v = arg.partition(b"=")
            self.state["books"][k.decode()] = v.decode()
            return b"ok"
        if cmd == b"get":
            book: str = self.state["books"].get(arg.decode(), "?")
            return book.encode()
        return b"v1 served %d" % self.state["served"]


class LibrarianV2(Librarian):
    async def on_message(self, msg: Any) -> bytes | None:
        out = await super().on_message(msg)
        return (out or b"").replace(b"v1", b"v2")


async def intruder(ctx: Context) -> str:
    """Spawned with only ALLOC_MEMORY: everything else must be refused."""
    try:
        await ctx.spawn(intruder)
        return "spawned (should not happen)"
    except AIOSError as e:
        return f"spawn refused: {e}"


async def reader(ctx: Context) -> str:
    """Maps memory shared with it read-only and tries to write it."""
    msg = await ctx.recv()
    va = await ctx.map(msg.cap)
    text = (await ctx.read(va, 32)).rstrip(b"\0").decode()
    try:
        await ctx.write(va, b"overwritten")
        wrote = "write succeeded (should not happen)"
    except AIOSError as e:
        wrote = f"write refused: {e.name}"
    return f"read {text!r}; {wrote}"


async def courier(ctx: Context) -> list[str]:
    """Holds a capability granted to it and uses it on request."""
    granted = (await ctx.recv()).cap
    log: list[str] = []
    while True:
        m = await ctx.recv()
        if m.payload == b"stop":
            return log
        try:
            out = await ctx.call(granted, b"get dune", timeout=1)
            log.append(f"call through granted capability -> {out.decode()}")
        except AIOSError as e:
            log.append(f"call refused: {e}")
        await ctx.send(ctx.slots.parent, log[-1].encode())


async def worker(ctx: Context) -> dict[str, Any]:
    """A specialized child: reports the spec and state it was given."""
    return {"state": dict(ctx.state), "spec": ctx.spec}


async def tour(ctx: Context, say: Say) -> None:
    say("== 1. spawn: a librarian agent, with the default (least) authority")
    lib = await ctx.spawn(Librarian, name="librarian")
    say(f"   spawned agent {lib.aid}; we hold control slot {lib.ctl} and a send endpoint in slot {lib.ep}")

    say("== 2. binary IPC: calls go through the kernel, one message at a time")
    print_reply = await ctx.call(lib.ep, b"put dune=Frank Herbert")
    say(f"   put -> {print_reply.decode()};  get -> {(await ctx.call(lib.ep, b'get dune')).decode()}")

    say("== 3. a denied syscall: an agent spawned without SPAWN_AGENT tries to spawn")
    bad = await ctx.spawn(intruder, name="intruder", rights=["ALLOC_MEMORY"])
    _, st = await ctx.wait(bad.aid)
    say(f"   {st['exit']}")

    say("== 4. capabilities: grant a narrowed endpoint to a courier, then revoke it")
    courier_c = await ctx.spawn(courier, name="courier")
    badged = await ctx.mint(lib.ep, ["WRITE", "GRANT"])  # a child of our endpoint in the CDT
    await ctx.grant(badged, courier_c.ep, ["WRITE"])
    await ctx.send(courier_c.ep, b"go")
    say(f"   courier: {(await ctx.recv()).payload.decode()}")
    n = await ctx.revoke(badged)
    say(f"   revoked: {n} derived capability invalidated in the courier's space")
    await ctx.send(courier_c.ep, b"go")
    say(f"   courier: {(await ctx.recv()).payload.decode()}")
    await ctx.send(courier_c.ep, b"stop")
    await ctx.wait(courier_c.aid)

    say("== 5. shared memory: allocate, write, share read-only with another agent")
    slot, va = await ctx.alloc(4096)
    await ctx.write(va, b"the spice must flow")
    r = await ctx.spawn(reader, name="reader")
    await ctx.share(slot, r.ep, ["READ"])
    _, st = await ctx.wait(r.aid)
    say(f"   reader: {st['exit']}")

    say("== 6. lifecycle: specialize, clone, split, upgrade, merge, kill")
    ctx.state.update({"topic": "novels", "shelf": 3})
    sp = await ctx.specialize({"role": "archivist"}, entry=worker, name="specialist",
                              rights_mask=["SPAWN_AGENT"])
    _, st = await ctx.wait(sp.aid)
    say(f"   specialize -> child got spec {st['exit']['spec']} and a copy of our state {st['exit']['state']}")
    cl = await ctx.clone(name="tour-clone")
    _, st = await ctx.wait(cl.aid)
    say(f"   clone -> same code, copied state {st['exit']['state']}, capabilities: {st['exit']['caps']}")
    for p in (b"keep", b"move", b"keep", b"move"):
        await ctx.send(ctx.slots.mailbox, p)
    half = await ctx.split({"keys": ["shelf"]}, lambda m: m.payload == b"move", name="tour-split")
    _, st = await ctx.wait(half.aid)
    kept = [m.payload.decode() for m in await ctx.recv_many(16, timeout=0)]
    say(f"   split -> new agent got state {st['exit']['state']} and messages {st['exit']['mailbox']};")
    say(f"            we kept state {dict(ctx.state)} and messages {kept}")
    before = (await ctx.call(lib.ep, b"stats")).decode()
    await ctx.upgrade(lib.ctl, LibrarianV2)
    after = (await ctx.call(lib.ep, b"stats")).decode()
    say(f"   upgrade the librarian between two messages: {before!r} -> {after!r} (same id, state kept)")
    other = await ctx.spawn(Librarian, name="librarian-2", state={"books": {"emma": "Jane Austen"}, "served": 0})
    await ctx.merge(other.ctl, lambda a, b: {"books": {**b["books"], **a["books"]},
                                              "served": a["served"] + b["served"]}, survivor=lib.ctl)
    say(f"   merge librarian-2 into the librarian -> get emma: {(await ctx.call(lib.ep, b'get emma')).decode()}")
    await ctx.kill(lib.ctl)
    _, st = await ctx.wait(lib.aid)
    say(f"   kill -> the librarian is reaped: {st['fault']}")


async def _report(ctx: Context) -> dict[str, Any]:
    """What a clone or split-off half of the tour reports instead of touring."""
    msgs = await ctx.recv_many(16, timeout=0) if ctx.name == "tour-split" else []
    caps = sorted({c["kind"] for c in await ctx.caps()})
    return {"state": dict(ctx.state), "mailbox": [m.payload.decode() for m in msgs], "caps": caps}


async def main(ctx: Context) -> Any:
    """Entry point used by ``aios demo`` (prints with ``print``)."""
    if ctx.name in ("tour-clone", "tour-split"):
        return await _report(ctx)
    sid = await ctx.subscribe("**", depth=4096)
    await tour(ctx, print)
    print("== 7. the event stream the kernel published meanwhile")
    counts: dict[str, int] = {}
    while True:
        try:
            ev = await ctx.next_event(sid, timeout=0)
        except AIOSError:
            break
        counts[ev["topic"]] = counts.get(ev["topic"], 0) + 1
    for topic, n in sorted(counts.items()):
        print(f"   {n:3d}  {topic}")
    return None
