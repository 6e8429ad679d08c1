"""Re-instantiation: turn a replayed :class:`KernelImage` back into live kernel state.

After a crash (or a clean stop) the image says which agents were alive, which capabilities
they held and which durable messages waited in their mailboxes.  This module brings back
what its rules allow, through the kernel's ordinary operations (``lifecycle.spawn`` with the
agent's old id, ``cdt.derive``), so a restored agent is checked, charged and confined exactly
like a new one:

* **Agents**, in id order (parents before children): one whose restart policy is
  ``always`` or ``on-failure`` (a crash of the kernel is a failure from where the agent
  stands) and whose entry is named (``pkg.mod:fn`` or ``image:...``) is spawned again with
  its id, name and spawn options, as a child of its parent if that came back too, else of
  init; its state is its latest checkpoint, else the state it was spawned with.  Anonymous
  entries, restart policy ``no`` and operator consoles cannot come back, and the agents of
  initd's units are initd's to start: they are listed as lost, with the reason.
* **Capabilities** of the restored agents: the well-known slots (0-5), the parent's control
  and endpoint capabilities, are made by the spawn and matched to their rows; every other
  capability is derived again, with its rights, badge, quota and slot, from its nearest
  ancestor in the journal's derivation tree that is live again, provided that ancestor names
  the same object.  What was revoked is not in the image, so it cannot come back.  A
  memory-namespace capability without such an ancestor is made again from memoryd's object
  for the namespace.  Capabilities to objects that do not survive (memory regions, agents
  that did not come back) are counted as lost.
* **Durable messages** are requeued, in their order, in the restored owner's mailbox.

The caller (:mod:`aios.kmod.journal.syscalls`) then journals the live result as a snapshot and
publishes one ``kernel.recovered`` event with what came back and what did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aios.abi.errors import AIOSError
from aios.abi.message import Message
from aios.abi.rights import ObjKind, Rights
from aios.kernel.capabilities import Capability, KObject
from aios.kernel.lifecycle import SpawnPlan, spawn
from aios.kernel.quotas import Quota
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import AgentRow, CapRow, KernelImage

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel
    from aios.kmod.journal.store import Journal

RESTARTABLE = ("always", "on-failure")


@dataclass
class Restored:
    agents: list[int] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    caps: int = 0
    lost_caps: int = 0
    messages: int = 0
    lost_messages: int = 0
    rows: dict[int, R.AgentSpawned] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"agents": self.agents, "lost_agents": self.lost, "capabilities": self.caps,
                "lost_capabilities": self.lost_caps, "messages": self.messages,
                "lost_messages": self.lost_messages}  # fmt: skip


def why_not(row: AgentRow) -> str:
    """Why the agent cannot be restarted ("" if it can)."""
    if row.executor == "console":
        return "an operator console ends with its connection"
    if row.unit:
        return f"initd starts unit {row.unit} itself"
    policy = row.opts.get("restart", "no")
    if policy not in RESTARTABLE:
        return f"restart policy {policy!r}"
    if not row.entry:
        return "an anonymous entry cannot be restarted"
    return ""


class Reinstater:
    """One restore: the image, the live kernel, and the map between their capabilities."""

    def __init__(self, k: Kernel, image: KernelImage, journal: Journal | None,
                 namespaces: Any = None) -> None:
        self.k = k
        self.image = image
        self.journal = journal
        self.namespaces = namespaces  # memoryd (ns_object), when installed
        self.caps: dict[int, Capability] = {}  # journaled cid -> live capability
        self.agents: dict[int, Agent] = {}  # aid -> live agent (init included)
        self.out = Restored()
        self.entries: dict[str, Any] = {}  # named in-process entries, resolved once
        # the name directory and the event bus: one object each, init holds a root of both
        self.singletons: dict[ObjKind, KObject] = {}
        for slot in (3, 4):
            try:
                obj = k.init.cspace.get(slot).obj
            except AIOSError:
                continue
            self.singletons[obj.kind] = obj
        self.by_holder: dict[int, dict[int, CapRow]] = {}
        for c in image.caps.values():
            if not c.ghost:
                self.by_holder.setdefault(c.holder, {})[c.slot] = c

    def run(self) -> Restored:
        k, image = self.k, self.image
        k.agents.resume_above(max([image.high["aid"], *(b.high_aid for b in image.boots)]))
        self.agents[k.init.aid] = k.init
        self._match_slots(k.init)
        for aid in sorted(image.agents):
            row = image.agents[aid]
            if row.exited or aid == k.init.aid:
                continue
            reason = why_not(row)
            if not reason:
                reason = self._spawn(row)
            if reason:
                self.out.lost.append({"aid": aid, "name": row.name, "reason": reason})
        self._derive_the_rest()
        self._requeue()
        return self.out

    # -- agents ---------------------------------------------------------------------------------
    def _spawn(self, row: AgentRow) -> str:
        k = self.k
        parent = self.agents.get(row.parent, k.init)
        mine = self.by_holder.get(row.aid, {})
        auth = self._nearest(mine[2].parent) if 2 in mine else None
        if auth is None or auth.obj.kind is not ObjKind.AUTHORITY or not auth.valid:
            auth = k.root_authority
        opts = {key: v for key, v in row.opts.items() if key != "caps"}
        opts["name"] = row.name
        state = row.state
        if self.journal is not None and row.aid in self.image.checkpoints:
            cp = self.journal.latest_checkpoint(row.aid)
            if cp is not None and type(cp.state) is dict:
                state = cp.state
        opts["state"] = state
        entry: Any = row.entry
        try:
            if row.executor == "inproc" and not entry.startswith("image:"):
                entry = self.entries.get(row.entry)
                if entry is None:  # resolving a named entry imports and checks it: once per name
                    entry = self.entries[row.entry] = k.resolve_entry(row.entry)
            plan = SpawnPlan(parent, auth, opts)
            a, ctl, ep = spawn(k, parent, auth, entry, plan, aid=row.aid, entry_vetted=True)
        except AIOSError as e:
            return f"could not be restarted: {e}"
        self.agents[a.aid] = a
        self.out.agents.append(a.aid)
        self.out.rows[a.aid] = R.AgentSpawned(a.aid, a.parent, a.name, row.entry, row.executor, row.opts,
                                              row.state, row.unit, row.spawned_ns)  # fmt: skip
        self._match_slots(a)
        if parent.aid == row.parent:  # the control and endpoint capabilities the spawn gave it
            self._match_parent_caps(row, parent, ctl, ep)
        return ""

    def _match_slots(self, a: Agent) -> None:
        """The well-known slots the kernel made are the journal's rows for them."""
        rows = self.by_holder.get(a.aid, {})
        for slot in range(6):
            row = rows.get(slot)
            if row is None:
                continue
            try:
                cap = a.cspace.get(slot)
            except AIOSError:
                continue
            if int(cap.obj.kind) == self.image.objects[row.oid].kind:
                self.caps[row.cid] = cap

    def _match_parent_caps(self, row: AgentRow, parent: Agent, ctl: int, ep: int) -> None:
        image = self.image
        mailbox = self.by_holder.get(row.aid, {}).get(1)
        for c in self.by_holder.get(parent.aid, {}).values():
            if c.cid in self.caps:
                continue
            obj = image.objects[c.oid]
            if obj.kind == R.OBJ_AGENT and obj.ref == row.aid and not c.parent:
                self.caps[c.cid] = parent.cspace.get(ctl)
            elif mailbox is not None and c.parent == mailbox.cid and c.badge == parent.aid:
                self.caps[c.cid] = parent.cspace.get(ep)

    # -- capabilities ---------------------------------------------------------------------------------
    def _nearest(self, cid: int) -> Capability | None:
        """The live capability of ``cid`` or of its nearest ancestor that is live again."""
        caps = self.image.caps
        while cid:
            live = self.caps.get(cid)
            if live is not None and live.valid:
                return live
            row = caps.get(cid)
            if row is None:
                return None
            cid = row.parent
        return None

    def _object(self, oid: int) -> KObject | None:
        """The live object that journaled object ``oid`` is now."""
        o = self.image.objects.get(oid)
        if o is None:
            return None
        k = self.k
        if o.kind in (R.OBJ_AGENT, R.OBJ_ENDPOINT):
            a = self.agents.get(o.ref) if type(o.ref) is int else None
            if a is None or a.cspace is None:
                return None
            try:
                live: KObject = a.cspace.get(0 if o.kind == R.OBJ_AGENT else 1).obj
            except AIOSError:
                return None
            return live
        if o.kind == R.OBJ_AUTHORITY:
            return k.root_authority.obj
        if o.kind in (R.OBJ_DIRECTORY, R.OBJ_TOPIC):
            return self.singletons.get(ObjKind(o.kind))
        if o.kind == R.OBJ_MEMNS and self.namespaces is not None and type(o.ref) is str:
            obj: KObject = self.namespaces.ns_object(o.ref)
            return obj
        return None

    def _derive_the_rest(self) -> None:
        k = self.k
        for cid in sorted(self.image.caps):
            row = self.image.caps[cid]
            if row.ghost or cid in self.caps:
                continue
            a = self.agents.get(row.holder)
            if a is None or a is k.init or a.cspace is None:
                continue  # its holder did not come back (or is init, whose own slots matched)
            obj = self._object(row.oid)
            src = self._nearest(row.parent) if row.parent else None
            if obj is None or (src is not None and src.obj is not obj):
                self.out.lost_caps += 1
                continue
            slot = row.slot if self._free(a, row.slot) else None
            try:
                if src is not None:
                    quota = Quota(*row.limits) if row.limits is not None else None
                    cap = k.cdt.derive(src, a.cspace, Rights(row.rights), badge=row.badge or None,
                                       quota=quota, slot=slot)  # fmt: skip
                elif obj.kind is ObjKind.MEMNS:
                    cap = k.cdt.root(a.cspace, obj, Rights(row.rights), row.badge)
                else:
                    self.out.lost_caps += 1
                    continue
            except AIOSError:
                self.out.lost_caps += 1
                continue
            self.caps[cid] = cap
            self.out.caps += 1

    @staticmethod
    def _free(a: Agent, slot: int) -> bool:
        try:
            a.cspace.get(slot)
        except AIOSError:
            return True
        return False

    # -- durable messages -------------------------------------------------------------------------------
    def _requeue(self) -> None:
        self.requeued: list[tuple[KObject, Any, Message]] = []
        for oid, box in self.image.mailboxes.items():
            obj = self._object(oid)
            if obj is None or obj.kind is not ObjKind.ENDPOINT or obj.payload.closed:
                self.out.lost_messages += len(box)
                continue
            for seq in sorted(box):
                m = box[seq]
                msg = Message(next(self.k.msg_seq), m.sender, m.badge, m.payload)
                self.requeued.append((obj, obj.payload, msg))
                self.out.messages += 1

