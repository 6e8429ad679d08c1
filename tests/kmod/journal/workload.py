"""A deterministic mixed workload of kernel operations, as journal records.

Used by the crash test's child (which journals it) and by the parent (which
regenerates it to know exactly what state any acknowledged prefix must
produce).  Each operation is the records the kernel would journal for it,
applied to a :class:`KernelImage` as it goes so the next operation sees the
state: spawns (agent and endpoint objects, their root capabilities, a child
authority charged to the parent's), grants, revokes, deletes, durable sends
and takes, exits and reaps, checkpoints, and durable-stream publishes,
fetches, acks and naks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from aios.abi.errors import WouldBlock
from aios.kmod.journal import records as R
from aios.kmod.journal.durable import ConsumerConfig, StreamConfig
from aios.kmod.journal.replay import KernelImage

ALL = (1 << 14) - 1
GRANT = 1 << 2
STREAM = "work"
CONSUMER = "worker"


@dataclass
class Op:
    name: str
    records: list[R.Record]
    checkpoint: tuple[int, Any] | None = None
    revoked: list[int] = field(default_factory=list)  # cids this op invalidated


class Workload:
    def __init__(self, image: KernelImage, seed: int) -> None:
        self.img = image
        self.rng = random.Random(seed)
        seen = [a.spawned_ns for a in image.agents.values()]
        for st in image.broker.streams.values():
            seen += [m.time_ns for m in st.msgs.values()] + [t for _s, t in st.dedup.values()]
        self.now = max([0, *seen]) + 1_000_000_000  # time goes on across restarts
        image.broker.clock = lambda: self.now
        self.ids = dict(image.high)
        self.mail_seq = max([0, *(s for b in image.mailboxes.values() for s in b)])

    def _id(self, what: str) -> int:
        self.ids[what] += 1
        return self.ids[what]

    def _emit(self, recs: list[R.Record]) -> list[R.Record]:
        for r in recs:
            self.img.apply(r)
        return recs

    # -- operations --------------------------------------------------------------------------------
    def bootstrap(self) -> Op:
        """init (agent 1) with a root authority, as the kernel boots."""
        aid = 1
        self.ids["aid"] = max(self.ids["aid"], 1)
        o_agent, o_ep, o_auth = self._id("oid"), self._id("oid"), self._id("oid")
        recs: list[R.Record] = [
            R.AgentSpawned(aid, 0, "init", "", "inproc", {}, {}, "", self.now),
            R.ObjectCreated(o_agent, R.OBJ_AGENT, aid),
            R.CapInstalled(self._id("cid"), aid, 0, o_agent, 1, 0, 0),
            R.ObjectCreated(o_ep, R.OBJ_ENDPOINT, aid),
            R.CapInstalled(self._id("cid"), aid, 1, o_ep, 7, 0, 0),
            R.ObjectCreated(o_auth, R.OBJ_AUTHORITY, None),
            R.CapInstalled(self._id("cid"), aid, 2, o_auth, ALL, 0, 0, (1 << 34, 1_000_000, None, 88761)),
        ]
        ops = self._emit(recs)
        ops += self._emit(self._stream_setup())
        return Op("boot", ops)

    def _stream_setup(self) -> list[R.Record]:
        b = self.img.broker
        b.add_stream(StreamConfig(STREAM, "jobs.**", max_msgs=500))
        b.add_consumer(STREAM, ConsumerConfig(CONSUMER, ack_wait_ns=5_000_000, max_deliver=3,
                                              max_ack_pending=20))
        return b.take_records()

    def step(self) -> Op:
        self.now += 1_000_000
        choices = [
            (self.spawn, 6), (self.grant, 8), (self.revoke, 3), (self.delete, 3),
            (self.send, 10), (self.take, 6), (self.exit_reap, 2), (self.checkpoint, 3),
            (self.publish, 8), (self.consume, 8),
        ]  # fmt: skip
        while True:
            fn = self.rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
            op = fn()
            if op is not None and op.records:
                return op

    def _live(self) -> list[int]:
        return sorted(a.aid for a in self.img.agents.values() if not a.exited)

    def _authority(self, aid: int) -> R.CapInstalled | None:
        for c in self.img.cspace(aid).values():
            if self.img.objects[c.oid].kind == R.OBJ_AUTHORITY and c.limits is not None:
                return R.CapInstalled(c.cid, c.holder, c.slot, c.oid, c.rights, c.badge, c.parent, c.limits)
        return None

    def _free_slot(self, aid: int) -> int:
        used = set(self.img.cspace(aid))
        s = 0
        while s in used:
            s += 1
        return s

    def spawn(self) -> Op | None:
        live = self._live()
        parent = self.rng.choice(live)
        pauth = self._authority(parent)
        if pauth is None or len(live) > 60:
            return None
        aid = self._id("aid")
        o_agent, o_ep = self._id("oid"), self._id("oid")
        recs: list[R.Record] = [
            R.AgentSpawned(aid, parent, f"a{aid}", f"pkg.mod{aid % 3}:main", "inproc",
                           {"restart": "on-failure"}, {"n": aid, "tags": ["x", aid]}, "", self.now),
            R.ObjectCreated(o_agent, R.OBJ_AGENT, aid),
        ]
        self_cap = self._id("cid")
        recs += [
            R.CapInstalled(self_cap, aid, 0, o_agent, 1, 0, 0),
            R.ObjectCreated(o_ep, R.OBJ_ENDPOINT, aid),
            R.CapInstalled(self._id("cid"), aid, 1, o_ep, 7, 0, 0),
            R.CapInstalled(self._id("cid"), aid, 2, pauth.oid, pauth.rights & 0b111000, 0, pauth.cid,
                           (1 << 26, 16, None, 1024)),
            R.Charged(self._id("chid"), pauth.cid, R.RES_AGENTS, 1, aid),
        ]
        self._emit(recs[:1])  # the agent must exist before its slots are counted
        self._emit(recs[1:6])
        ctl = R.CapInstalled(self._id("cid"), parent, self._free_slot(parent), o_agent, 0b11011,
                             0, self_cap)
        self._emit([recs[6], ctl])
        return Op("spawn", [*recs, ctl])

    def grant(self) -> Op | None:
        caps = [c for c in self.img.caps.values() if self.img.agents.get(c.holder) is not None
                and not self.img.agents[c.holder].exited]  # fmt: skip
        live = self._live()
        if not caps:
            return None
        src = self.rng.choice(sorted(caps, key=lambda c: c.cid))
        dest = self.rng.choice(live)
        rights = src.rights & self.rng.randrange(1, ALL + 1)
        limits = src.limits
        rec = R.CapInstalled(self._id("cid"), dest, self._free_slot(dest), src.oid, rights,
                             src.badge or self.rng.choice([0, 0, 7]), src.cid, limits)
        return Op("grant", self._emit([rec]))

    def revoke(self) -> Op | None:
        with_children = sorted(c.cid for c in self.img.caps.values() if c.children)
        if not with_children:
            return None
        cid = self.rng.choice(with_children)
        doomed = list(self.img.descendants(cid))
        return Op("revoke", self._emit([R.CapRevoked(cid)]), revoked=doomed)

    def delete(self) -> Op | None:
        cands = sorted(c.cid for c in self.img.caps.values() if c.slot > 2)
        if not cands:
            return None
        cid = self.rng.choice(cands)
        doomed = [] if self.img.caps[cid].parent else list(self.img.descendants(cid))
        return Op("delete", self._emit([R.CapDeleted(cid)]), revoked=[cid, *doomed])

    def send(self) -> Op | None:
        eps = sorted(self.img.endpoints())
        if not eps:
            return None
        self.mail_seq += 1
        payload = self.rng.randbytes(self.rng.randrange(0, 200))
        rec = R.MailboxPut(self.rng.choice(eps), self.mail_seq, self.rng.choice(self._live()), 0, payload)
        return Op("send", self._emit([rec]))

    def take(self) -> Op | None:
        boxes = sorted(oid for oid, b in self.img.mailboxes.items() if b)
        if not boxes:
            return None
        oid = self.rng.choice(boxes)
        seq = min(self.img.mailboxes[oid])
        return Op("take", self._emit([R.MailboxTake(oid, seq)]))

    def exit_reap(self) -> Op | None:
        live = [a for a in self._live() if a != 1]
        if len(live) < 5:
            return None
        aid = self.rng.choice(live)
        recs: list[R.Record] = [R.AgentExited(aid, 0, "", self.now)]
        self._emit(recs)
        for slot in sorted(self.img.cspace(aid), reverse=True):
            c = self.img.cspace(aid).get(slot)
            if c is None:
                continue  # went with a root deleted before it
            d = R.CapDeleted(c.cid)
            self._emit([d])
            recs.append(d)
        recs += self._emit([R.AgentReaped(aid)])
        return Op("exit", recs)

    def checkpoint(self) -> Op | None:
        live = self._live()
        aid = self.rng.choice(live)
        state = {"aid": aid, "t": self.now, "blob": self.rng.randbytes(32), "list": [1, 2, aid]}
        n = self.img.checkpoints.get(aid, 0) + 1
        return Op("checkpoint", self._emit([R.Checkpointed(aid, n)]), checkpoint=(aid, state))

    def publish(self) -> Op | None:
        key = self.rng.choice(["", "k1", "k2", "k3"])
        mid = f"m{self.rng.randrange(10_000)}"
        try:
            self.img.broker.publish(STREAM, f"jobs.{key or 'any'}", self.rng.randbytes(16), mid, key)
        except WouldBlock:
            return None
        return Op("publish", self.img.broker.take_records())

    def consume(self) -> Op | None:
        b = self.img.broker
        for d in b.fetch(STREAM, CONSUMER, self.rng.randrange(1, 4)):
            r = self.rng.random()
            if r < 0.6:
                b.ack(STREAM, CONSUMER, d.seq)
            elif r < 0.75:
                b.nak(STREAM, CONSUMER, d.seq, error="handler said no")
            elif r < 0.8:
                b.term(STREAM, CONSUMER, d.seq, "bad input")
        self.now += 6_000_000  # past ack_wait: unacked ones come back
        return Op("consume", b.take_records())


def fingerprint(image: KernelImage, now: int) -> list[tuple[int, bytes]]:
    """A comparable form of an image at time ``now``: its rebuilding records, encoded."""
    image.broker.clock = lambda: now
    return [R.encode(r) for r in image.records()]
