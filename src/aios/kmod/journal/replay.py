"""Replay: fold journal records into a plain-data image of kernel state.

:class:`KernelImage` is what the kernel re-instantiates after a crash: the
agent table, the kernel objects, every valid capability with its place in
the derivation tree, quota charges, the name directory, durable mailboxes,
supervision records, units, and the durable streams and consumers (a
:class:`~aios.kmod.journal.durable.Broker` rebuilt from its own records).  It
holds ids and plain values only, never live objects, so it can be checked
against the journal, compared with the kernel's own tables in a test, or
turned back into records for compaction.

The capability rules are the kernel's (``kernel/capabilities.py``), applied to
rows instead of objects:

* revoking ``c`` invalidates every descendant of ``c`` (not ``c``); charges
  paid by an invalidated capability are refunded (dropped);
* deleting ``c`` hands its children and its charges to its parent; deleting a
  root revokes its subtree and refunds its own charges;
* except that deleting an authority (it has limits and a parent) that still
  has children or charges leaves it as a *ghost*: out of its slot, no longer
  keeping its object alive, but still in the tree with its limits, so a
  quota bounds everything built from it after its holder is gone; a ghost is
  dropped when its last child and charge are gone, and spliced out when its
  only child's limits are within its own;
* an object lives while a valid capability names it; its durable mailbox
  goes with it.

Usage (``used``) is not stored: it is the sum of the charges of an authority
and of its descendants, computed by :meth:`KernelImage.used` when asked.

A record that contradicts the image (a capability whose parent is gone, an
agent spawned twice) means the journal is not what this kernel wrote; it
raises :class:`~aios.errors.IntegrityError` naming the record, and the boot
stops.  Idempotent forms (deleting a deleted capability, refunding a refunded
charge) are accepted, because the kernel may journal a consequence that the
rule above has already applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aios.errors import IntegrityError
from aios.kmod.journal import records as R
from aios.kmod.journal.durable import Broker


@dataclass(frozen=True, slots=True)
class AgentRow:
    aid: int
    parent: int
    name: str
    entry: str
    executor: str
    opts: dict[str, Any]
    state: dict[str, Any]
    unit: str
    spawned_ns: int
    exited: bool = False
    status: Any = None
    fault: str = ""
    exited_ns: int = 0


@dataclass(frozen=True, slots=True)
class ObjectRow:
    oid: int
    kind: int
    ref: Any


@dataclass(slots=True)
class CapRow:
    cid: int
    holder: int
    slot: int
    oid: int
    rights: int
    badge: int
    parent: int  # 0: a root
    limits: tuple[int | None, ...] | None
    children: list[int] = field(default_factory=list)
    ghost: bool = False


@dataclass(frozen=True, slots=True)
class ChargeRow:
    chid: int
    cid: int
    res: int
    amount: int
    what: Any


@dataclass(frozen=True, slots=True)
class MailRow:
    seq: int
    sender: int
    badge: int
    payload: bytes


_MAILBOX_KIND = R.OBJ_ENDPOINT


def _within(child: tuple[int | None, ...] | None, ghost: tuple[int | None, ...] | None) -> bool:
    """Every limit of ``child`` is at most ``ghost``'s (None: unlimited)."""
    if child is None or ghost is None:
        return False
    return all(g is None or (c is not None and c <= g) for c, g in zip(child, ghost, strict=True))


class KernelImage:
    """Durable kernel state as plain data; :meth:`apply` is the fold."""

    def __init__(self, clock: Callable[[], int] = lambda: 0) -> None:
        self.agents: dict[int, AgentRow] = {}
        self.objects: dict[int, ObjectRow] = {}
        self.refs: dict[int, int] = {}  # oid -> valid capabilities naming it
        self.caps: dict[int, CapRow] = {}
        self.charges: dict[int, ChargeRow] = {}
        self.by_cap: dict[int, set[int]] = {}  # cid -> chids it pays
        self.directory: dict[str, int] = {}
        self.mailboxes: dict[int, dict[int, MailRow]] = {}
        self.supervision: dict[int, R.SupervisionSet] = {}
        self.units: dict[str, R.UnitSet] = {}
        self.boots: list[R.Booted] = []
        self.checkpoints: dict[int, int] = {}  # aid -> its latest checkpoint number
        self.broker = Broker(clock)
        self.high = {"aid": 0, "oid": 0, "cid": 0, "chid": 0}  # highest ids ever seen
        self.applied = 0

    # -- the fold ---------------------------------------------------------------------------------
    def apply(self, rec: R.Record) -> None:
        self.applied += 1
        fn = _APPLY.get(type(rec))
        if fn is not None:
            fn(self, rec)
        else:
            self.broker.apply(rec)

    def _spawned(self, r: R.AgentSpawned) -> None:
        if r.aid in self.agents:
            raise IntegrityError(f"agent {r.aid} spawned twice")
        self.agents[r.aid] = AgentRow(r.aid, r.parent, r.name, r.entry, r.executor, r.opts,
                                      r.state, r.unit, r.time_ns)  # fmt: skip
        self.high["aid"] = max(self.high["aid"], r.aid)

    def _exited(self, r: R.AgentExited) -> None:
        a = self._agent(r.aid)
        self.agents[r.aid] = AgentRow(a.aid, a.parent, a.name, a.entry, a.executor, a.opts,
                                      a.state, a.unit, a.spawned_ns, True, r.status, r.fault,
                                      r.time_ns)  # fmt: skip

    def _reaped(self, r: R.AgentReaped) -> None:
        self._agent(r.aid)
        del self.agents[r.aid]
        self.checkpoints.pop(r.aid, None)

    def _checkpointed(self, r: R.Checkpointed) -> None:
        if r.n == 0:  # forgotten
            self.checkpoints.pop(r.aid, None)
            return
        self._agent(r.aid)
        self.checkpoints[r.aid] = r.n

    def _agent(self, aid: int) -> AgentRow:
        a = self.agents.get(aid)
        if a is None:
            raise IntegrityError(f"no agent {aid} in the journal")
        return a

    def _object(self, r: R.ObjectCreated) -> None:
        if r.oid in self.objects:
            raise IntegrityError(f"object {r.oid} created twice")
        self.objects[r.oid] = ObjectRow(r.oid, r.kind, r.ref)
        self.refs[r.oid] = 0
        self.high["oid"] = max(self.high["oid"], r.oid)

    def _installed(self, r: R.CapInstalled) -> None:
        if r.cid in self.caps:
            raise IntegrityError(f"capability {r.cid} installed twice")
        if r.oid not in self.objects:
            raise IntegrityError(f"capability {r.cid} names object {r.oid}, which does not exist")
        parent = None
        if r.parent:
            parent = self.caps.get(r.parent)
            if parent is None:
                raise IntegrityError(f"capability {r.cid} derives from {r.parent}, which is gone")
        self.caps[r.cid] = CapRow(r.cid, r.holder, r.slot, r.oid, r.rights, r.badge, r.parent,
                                  r.limits)
        if parent is not None:
            parent.children.append(r.cid)
        self.refs[r.oid] += 1
        self.high["cid"] = max(self.high["cid"], r.cid)

    def _revoked(self, r: R.CapRevoked) -> None:
        cap = self.caps.get(r.cid)
        if cap is None:
            raise IntegrityError(f"revoke of capability {r.cid}, which is not valid")
        children, cap.children = cap.children, []
        for ch in children:
            self._invalidate_subtree(ch)

    def _invalidate_subtree(self, top: int) -> None:
        stack = [top]
        while stack:
            cid = stack.pop()
            cap = self.caps.pop(cid)
            stack.extend(cap.children)
            for chid in self.by_cap.pop(cid, ()):
                self.charges.pop(chid, None)
            if not cap.ghost:  # a ghost gave up its object when it became one
                self._drop_ref(cap.oid)

    def _deleted(self, r: R.CapDeleted) -> None:
        cap = self.caps.get(r.cid)
        if cap is None or cap.ghost:
            return  # the kernel's delete of an invalid capability (or a ghost) is a no-op too
        parent = self.caps.get(cap.parent) if cap.parent else None
        if parent is not None and cap.limits is not None and (cap.children or self.by_cap.get(cap.cid)):
            cap.ghost = True
            self._drop_ref(cap.oid)
            self._tidy(cap)
            return
        if parent is not None:
            parent.children.remove(cap.cid)
            for ch in cap.children:
                self.caps[ch].parent = parent.cid
                parent.children.append(ch)
            moved = self.by_cap.pop(cap.cid, set())
            for chid in moved:
                c = self.charges[chid]
                self.charges[chid] = ChargeRow(chid, parent.cid, c.res, c.amount, c.what)
            if moved:
                self.by_cap.setdefault(parent.cid, set()).update(moved)
        else:
            for ch in cap.children:
                self._invalidate_subtree(ch)
            for chid in self.by_cap.pop(cap.cid, ()):
                self.charges.pop(chid, None)
        del self.caps[cap.cid]
        self._drop_ref(cap.oid)
        if parent is not None and parent.ghost:
            self._tidy(parent)

    def _tidy(self, cap: CapRow | None) -> None:
        # the kernel's rule: drop a ghost with nothing left under it, splice out one whose only
        # child is within its limits; walk up while ghosts empty out
        while cap is not None and cap.ghost:
            if self.by_cap.get(cap.cid):
                return
            parent = self.caps.get(cap.parent)
            if parent is None or cap.cid not in parent.children:
                raise IntegrityError(f"ghost capability {cap.cid} is not under its parent")
            if not cap.children:
                parent.children.remove(cap.cid)
                del self.caps[cap.cid]
                self.by_cap.pop(cap.cid, None)
                cap = parent
                continue
            if len(cap.children) == 1 and _within(self.caps[cap.children[0]].limits, cap.limits):
                child = self.caps[cap.children[0]]
                child.parent = parent.cid
                parent.children[parent.children.index(cap.cid)] = child.cid
                del self.caps[cap.cid]
                self.by_cap.pop(cap.cid, None)
            return

    def _drop_ref(self, oid: int) -> None:
        self.refs[oid] -= 1
        if self.refs[oid] == 0:
            del self.refs[oid]
            del self.objects[oid]
            self.mailboxes.pop(oid, None)

    def _charged(self, r: R.Charged) -> None:
        cap = self.caps.get(r.cid)
        if cap is None or cap.limits is None:
            raise IntegrityError(f"charge {r.chid} to {r.cid}, which is not a valid authority")
        self.charges[r.chid] = ChargeRow(r.chid, r.cid, r.res, r.amount, r.what)
        self.by_cap.setdefault(r.cid, set()).add(r.chid)
        self.high["chid"] = max(self.high["chid"], r.chid)

    def _uncharged(self, r: R.Uncharged) -> None:
        c = self.charges.pop(r.chid, None)
        if c is not None:
            self.by_cap[c.cid].discard(r.chid)
            payer = self.caps.get(c.cid)
            if payer is not None and payer.ghost:
                self._tidy(payer)

    def _named(self, r: R.NameRegistered) -> None:
        if r.cid not in self.caps:
            raise IntegrityError(f"name {r.name!r} registered for capability {r.cid}, which is gone")
        self.directory[r.name] = r.cid

    def _unnamed(self, r: R.NameRemoved) -> None:
        self.directory.pop(r.name, None)

    def _put(self, r: R.MailboxPut) -> None:
        obj = self.objects.get(r.oid)
        if obj is None or obj.kind != _MAILBOX_KIND:
            raise IntegrityError(f"durable message {r.seq} for {r.oid}, which is not an endpoint")
        self.mailboxes.setdefault(r.oid, {})[r.seq] = MailRow(r.seq, r.sender, r.badge, r.payload)

    def _take(self, r: R.MailboxTake) -> None:
        box = self.mailboxes.get(r.oid)
        if box is not None:
            box.pop(r.seq, None)
            if not box:
                del self.mailboxes[r.oid]

    def _supervised(self, r: R.SupervisionSet) -> None:
        self.supervision[r.stable] = r

    def _unsupervised(self, r: R.SupervisionRemoved) -> None:
        self.supervision.pop(r.stable, None)

    def _unit(self, r: R.UnitSet) -> None:
        self.units[r.name] = r

    def _booted(self, r: R.Booted) -> None:
        self.boots.append(r)

    # -- views ----------------------------------------------------------------------------------------
    def used(self, cid: int) -> list[int]:
        """What authority ``cid`` and its descendants hold, per resource (the kernel's ``used``)."""
        out = [0] * R.N_RESOURCES
        stack = [cid]
        while stack:
            c = stack.pop()
            for chid in self.by_cap.get(c, ()):
                ch = self.charges[chid]
                out[ch.res] += ch.amount
            stack.extend(self.caps[c].children)
        return out

    def cspace(self, holder: int) -> dict[int, CapRow]:
        """``holder``'s capabilities by slot."""
        return {c.slot: c for c in self.caps.values() if c.holder == holder}

    def namespace_grants(self) -> list[tuple[int, str, int]]:
        """``(holder, namespace, rights)`` for every memory-namespace capability."""
        return sorted(
            (c.holder, str(self.objects[c.oid].ref), c.rights)
            for c in self.caps.values()
            if self.objects[c.oid].kind == R.OBJ_MEMNS
        )

    def endpoints(self) -> dict[int, int]:
        """Endpoint object id -> the agent whose mailbox it is."""
        return {o.oid: int(o.ref) for o in self.objects.values() if o.kind == R.OBJ_ENDPOINT}

    def descendants(self, cid: int) -> Iterator[int]:
        stack = list(self.caps[cid].children)
        while stack:
            c = stack.pop()
            yield c
            stack.extend(self.caps[c].children)

    # -- compaction -------------------------------------------------------------------------------------
    def records(self) -> list[R.Record]:
        """Records that rebuild this image from nothing, parents before children."""
        out: list[R.Record] = []
        for b in self.boots[-16:]:
            out.append(b)
        for a in self.agents.values():
            out.append(R.AgentSpawned(a.aid, a.parent, a.name, a.entry, a.executor, a.opts,
                                      a.state, a.unit, a.spawned_ns))  # fmt: skip
            if a.exited:
                out.append(R.AgentExited(a.aid, a.status, a.fault, a.exited_ns))
            if a.aid in self.checkpoints:
                out.append(R.Checkpointed(a.aid, self.checkpoints[a.aid]))
        for o in self.objects.values():
            out.append(R.ObjectCreated(o.oid, o.kind, o.ref))
        stack = sorted((c.cid for c in self.caps.values() if not c.parent), reverse=True)
        while stack:
            c = self.caps[stack.pop()]
            out.append(R.CapInstalled(c.cid, c.holder, c.slot, c.oid, c.rights, c.badge,
                                      c.parent, c.limits))  # fmt: skip
            stack.extend(reversed(c.children))
        for ch in self.charges.values():
            out.append(R.Charged(ch.chid, ch.cid, ch.res, ch.amount, ch.what))
        for name, cid in self.directory.items():
            if cid in self.caps:  # a name whose capability was revoked resolves to nothing
                out.append(R.NameRegistered(name, cid))
        for oid, box in self.mailboxes.items():
            for m in box.values():
                out.append(R.MailboxPut(oid, m.seq, m.sender, m.badge, m.payload))
        out.extend(self.supervision.values())
        out.extend(self.units.values())
        out.extend(self.broker.records())
        return out

    def summary(self) -> dict[str, int]:
        return {
            "agents": len(self.agents),
            "objects": len(self.objects),
            "capabilities": len(self.caps),
            "charges": len(self.charges),
            "names": len(self.directory),
            "durable_messages": sum(len(b) for b in self.mailboxes.values()),
            "streams": len(self.broker.streams),
            "supervised": len(self.supervision),
            "units": len(self.units),
        }


_APPLY: dict[type[R.Record], Callable[[KernelImage, Any], None]] = {
    R.AgentSpawned: KernelImage._spawned,
    R.AgentExited: KernelImage._exited,
    R.AgentReaped: KernelImage._reaped,
    R.Checkpointed: KernelImage._checkpointed,
    R.ObjectCreated: KernelImage._object,
    R.CapInstalled: KernelImage._installed,
    R.CapRevoked: KernelImage._revoked,
    R.CapDeleted: KernelImage._deleted,
    R.Charged: KernelImage._charged,
    R.Uncharged: KernelImage._uncharged,
    R.NameRegistered: KernelImage._named,
    R.NameRemoved: KernelImage._unnamed,
    R.MailboxPut: KernelImage._put,
    R.MailboxTake: KernelImage._take,
    R.SupervisionSet: KernelImage._supervised,
    R.SupervisionRemoved: KernelImage._unsupervised,
    R.UnitSet: KernelImage._unit,
    R.Booted: KernelImage._booted,
}
