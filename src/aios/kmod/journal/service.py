"""The kernel journal, wired: what the kernel writes down as it runs, and when it answers.

Design
------
:class:`JournalService` is the kernel module around :class:`~aios.kmod.journal.store.Journal`.
It learns of every durable change through public seams only:

* the capability derivation tree's observer (``kernel.cdt.observer``): every capability
  installed (root or derived), every revoke and delete, before their consequences run, so the
  fold (:mod:`aios.kmod.journal.replay`) sees them in the kernel's order;
* the lifecycle post-hooks of spawn, clone, split and specialize (``AgentSpawned``, with the
  entry as it was named and the spawn options, restart policy included) and
  ``registry.on_agent_exit`` (``AgentExited``; exited agents are kept for ``aios ps -a``, the
  last :data:`HISTORY_MAX`, older ones reaped from the journal with their checkpoints);
* its own syscalls: durable sends (``MailboxPut``) and checkpoints.

Objects are journaled (``ObjectCreated``) the first time a capability names them; capability
ids (``Capability.cid``) are given here.  Quota charges are not journaled: they are rebuilt by
the operations that restore what paid for them.

**Acknowledgement.**  Appending does no I/O.  A record appended while an agent is in a syscall
holds that agent (``kernel.throttle(aid, "journal")``) until the commit that covers it: the
syscall's answer, whatever it is (a spawn's handle, a grant's slot, "revoked", "sent"), is
delivered only once what it did is on disk.  A flusher thread commits whatever is buffered,
one frame and one fsync per commit; while it waits for the disk the kernel goes on and the
next commit takes everything that arrived meanwhile (group commit).  After the commit it
posts the sequence it made durable to the kernel thread, which releases the agents it covers.

**Durable mailboxes.**  A durable send queues the message like any send, journals
``MailboxPut`` and answers once committed.  When the receiver takes it (noticed after each
commit and at shutdown by looking at the queue), ``MailboxTake`` is journaled.  A take not
yet journaled at a crash means the message is delivered again after it: durable mailboxes are
at-least-once, and receivers that care use an idempotency key in the payload.

**Compaction.**  At boot, and whenever a million records were committed since the last
snapshot, the live state is written as a new snapshot (:meth:`live_records`, fresh capability
ids) and the frames it covers are deleted, so the journal's size follows the state, not its
history.

**Shutdown.**  Once the kernel is stopping, only records made inside an agent's syscall are
journaled: the kills of shutdown itself are not exits, so agents whose restart policy says so
come back at the next boot exactly as after a crash.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aios.abi.message import Message
from aios.abi.rights import ObjKind
from aios.kernel.capabilities import Capability, KObject
from aios.kernel.registry import Key
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage
from aios.kmod.journal.store import Journal

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.ipc import Mailbox
    from aios.kernel.kernel import Kernel

HISTORY_MAX: Final = 1000  # exited agents kept for `aios ps -a`
COMPACT_EVERY: Final = 1 << 20  # records committed since the last snapshot before a new one
HOLD: Final = "journal"
SPAWN_OPS: Final = ("spawn", "clone", "split", "specialize")


def plain(v: Any, depth: int = 0) -> Any:
    """``v`` as msgpack-able plain data (exit statuses can be anything)."""
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return v if not isinstance(v, int) or -(1 << 63) <= v < 1 << 64 else str(v)
    if depth > 8:
        return repr(v)[:256]
    if isinstance(v, (list, tuple)):
        return [plain(x, depth + 1) for x in v[:256]]
    if isinstance(v, dict):
        return {str(k): plain(x, depth + 1) for k, x in list(v.items())[:256]}
    return repr(v)[:256]


def _unit_of(a: Agent) -> str:
    """The initd unit an agent runs (initd puts it in the spawn spec), or ""."""
    unit = (a.spec or {}).get("unit", "")
    return unit if type(unit) is str else ""


def object_ref(obj: KObject) -> Any:
    """What a kernel object stands for, as the journal names it."""
    kind = obj.kind
    p = obj.payload
    if kind is ObjKind.AGENT:
        return getattr(p, "aid", None)
    if kind is ObjKind.ENDPOINT:
        return getattr(p, "owner", None)
    if kind is ObjKind.MEMNS:
        return getattr(p, "name", None)
    return None


class JournalService:
    """One kernel's journal: the observer, the hooks, the flusher and the live snapshot."""

    def __init__(self, k: Kernel, journal: Journal, history_max: int = HISTORY_MAX) -> None:
        self.k = k
        self.j = journal
        self.history_max = history_max
        self.oids: set[int] = set()  # objects journaled and not known destroyed
        self.next_cid = 0
        self.rows: dict[int, R.AgentSpawned] = {}  # live agents as journaled
        self.history: OrderedDict[int, tuple[R.AgentSpawned, R.AgentExited]] = OrderedDict()
        self.ckpt: dict[int, int] = {}  # aid -> latest checkpoint number
        self.pending: dict[int, tuple[Mailbox, dict[int, Message], int]] = {}  # durable, untaken
        self.waiting: dict[int, int] = {}  # agent held -> the sequence it waits for
        self.recovered: dict[str, Any] = {}
        self.boot = 0
        self.stats = {"commits": 0, "records": 0, "durable_sends": 0, "holds": 0, "compactions": 0}
        self._due = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None
        self.compact_every = COMPACT_EVERY
        self.compacted_at = 0  # the sequence the last snapshot covers
        self._compacting = False

    # -- appending ---------------------------------------------------------------------------
    def append(self, rec: R.Record) -> int:
        return self.append_many((rec,))

    def append_many(self, recs: tuple[R.Record, ...] | list[R.Record]) -> int:
        """Journal the records of one operation; the agent in a syscall waits for them."""
        k = self.k
        cur = k.current
        if k.stopping and cur is None:
            return self.j.last_seq  # shutdown's own kills are not journaled (see the docstring)
        seq = self.j.append_many(recs)
        self.stats["records"] += len(recs)
        if cur is not None:
            self.hold(cur.aid, seq)
        elif not self._due.is_set():
            self._due.set()
        return seq

    def hold(self, aid: int, seq: int) -> None:
        """Answer agent ``aid``'s current syscall only once ``seq`` is committed."""
        if aid not in self.waiting:
            self.k.throttle(aid, HOLD)
            self.stats["holds"] += 1
        self.waiting[aid] = seq
        if not self._due.is_set():
            self._due.set()

    # -- the capability tree's observer --------------------------------------------------------
    def _object(self, obj: KObject) -> None:
        self.oids.add(obj.oid)
        self.append(R.ObjectCreated(obj.oid, int(obj.kind), object_ref(obj)))

    def installed(self, cap: Capability) -> None:
        obj = cap.obj
        if obj.oid not in self.oids:
            self._object(obj)
        self.next_cid += 1
        cap.cid = self.next_cid
        parent = cap.parent.cid if cap.parent is not None else 0
        lim = tuple(cap.limits) if cap.limits is not None else None
        self.append(R.CapInstalled(cap.cid, cap.holder, cap.slot, obj.oid, int(cap.rights), cap.badge,
                                   parent, lim))  # fmt: skip

    def revoked(self, cap: Capability) -> None:
        if cap.cid:
            self.append(R.CapRevoked(cap.cid))

    def deleted(self, cap: Capability) -> None:
        if cap.cid:
            self.append(R.CapDeleted(cap.cid))

    # -- agents ----------------------------------------------------------------------------------
    def spawned(self, k: Kernel, op: str, **info: Any) -> None:
        a = k.find(info["agent"])
        if a is None:
            return
        conf = a.confinement
        row = R.AgentSpawned(a.aid, a.parent, a.name, str(info.get("entry", "")),
                             getattr(conf, "executor", "inproc") or "inproc", plain(info.get("opts") or {}),
                             plain(a.state or {}), _unit_of(a), time.time_ns())  # fmt: skip
        self.rows[a.aid] = row
        self.append(row)

    def exited(self, a: Agent) -> None:
        row = self.rows.pop(a.aid, None)
        if row is None or (self.k.stopping and self.k.current is None):
            return
        ex = R.AgentExited(a.aid, plain(a.exit_status), (a.how or "ended") + (f": {a.fault}" if a.fault else ""),
                           time.time_ns())  # fmt: skip
        self.append(ex)
        self.remember(row, ex)

    def remember(self, row: R.AgentSpawned, ex: R.AgentExited) -> None:
        """Keep an exited agent for ``aios ps -a``; reap the oldest beyond the limit."""
        self.history[row.aid] = (row, ex)
        while len(self.history) > self.history_max:
            old, _ = self.history.popitem(last=False)
            self.append(R.AgentReaped(old))
            if self.ckpt.pop(old, None) is not None:
                self.j.forget_checkpoints(old)

    # -- durable mailboxes -------------------------------------------------------------------------
    def durable_put(self, obj: KObject, mb: Mailbox, sent: list[tuple[Message, bool]]) -> None:
        """Messages just handed to ``mb``: ``(message, queued)``, queued False when a waiting
        receiver took it at once."""
        if not sent:
            return
        recs: list[R.Record] = []
        box = None
        oid = obj.oid
        for msg, queued in sent:
            recs.append(R.MailboxPut(oid, msg.seq, msg.sender, msg.badge, msg.payload))
            if queued:
                if box is None:
                    box = self.pending.get(oid)
                    if box is None:
                        box = self.pending[oid] = (mb, {}, -1)
                box[1][msg.seq] = msg
            else:
                recs.append(R.MailboxTake(oid, msg.seq))
        self.stats["durable_sends"] += len(sent)
        self.append_many(recs)

    def requeue(self, obj: KObject, mb: Mailbox, msg: Message) -> None:
        """A durable message restored after a crash (journaled by the boot snapshot)."""
        mb.q.append(msg)
        box = self.pending.get(obj.oid)
        if box is None:
            box = self.pending[obj.oid] = (mb, {}, -1)
        box[1][msg.seq] = msg

    def reconcile(self) -> None:
        """Journal the takes of durable messages that left their queues.  A mailbox is FIFO and
        durable messages never wait outside it, so those still queued are a suffix of the
        pending ones: find the first still there, and everything before it was taken."""
        for oid, (mb, msgs, seen) in list(self.pending.items()):
            if mb.closed:  # the endpoint is gone, and its durable messages with it
                del self.pending[oid]
                continue
            if mb.delivered == seen:
                continue
            first = None
            for m in mb.q:
                if msgs.get(m.seq) is m:
                    first = m.seq
                    break
            taken: list[R.Record] = []
            for seq in list(msgs):
                if seq == first:
                    break
                del msgs[seq]
                taken.append(R.MailboxTake(oid, seq))
            if taken:
                self.append_many(taken)
            if msgs:
                self.pending[oid] = (mb, msgs, mb.delivered)
            else:
                del self.pending[oid]

    # -- checkpoints ----------------------------------------------------------------------------------
    def checkpoint(self, a: Agent, state: Any) -> int:
        n = self.j.checkpoint(a.aid, state)
        self.ckpt[a.aid] = n
        self.stats["records"] += 1
        self.hold(a.aid, self.j.last_seq)
        return n

    # -- committing --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._flush_loop, name="aios-journal-commit", daemon=True)
        self._thread.start()

    def _flush_loop(self) -> None:
        due = self._due
        while True:
            due.wait()
            due.clear()
            if self._closed:
                return
            try:
                upto = self.j.commit()
            except BaseException as e:  # the journal is unusable: the kernel must stop
                self.failed = e
                self.k.post(self._failed, e)
                return
            self.stats["commits"] += 1
            self.k.post(self._acked, upto)

    def _acked(self, upto: int) -> None:
        if self.pending:
            self.reconcile()
        waiting = self.waiting
        done = [aid for aid, seq in waiting.items() if seq <= upto]
        for aid in done:
            del waiting[aid]
            self.k.unthrottle(aid, HOLD)
        if upto - self.compacted_at > self.compact_every and not self._compacting and self.failed is None:
            self._compacting = True  # the frames outgrew the snapshot: fold them into a new one
            try:
                self.compact()
            finally:
                self._compacting = False
            self._acked(self.j.acknowledged)

    def _failed(self, e: BaseException) -> None:
        self.k.publish("kernel.panic", 0, handler="journal", error=repr(e))
        self.k.stop()

    def flush(self) -> int:
        """Commit now on the calling thread and release whom it covers (tests, shutdown)."""
        if self.pending:
            self.reconcile()
        upto = self.j.commit()
        self._acked(upto)
        return upto

    def close(self) -> None:
        if self._closed:
            return
        if self.failed is None:
            self.reconcile()
        self._closed = True
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.k.cdt.observer is self:
            self.k.cdt.observer = None
        if self.failed is None:
            self.j.close()
        else:
            self.j.abandon()

    def abandon(self) -> None:
        """Stop journaling and drop what is not committed, as a crash would (tests)."""
        self._closed = True
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.k.cdt.observer is self:
            self.k.cdt.observer = None
        self.j.abandon()

    # -- the live state as records (boot and compaction) ------------------------------------------------
    def live_records(self) -> list[R.Record]:
        """Records that rebuild what the kernel holds now: agents (and the exited ones kept),
        objects, every capability in the derivation tree (ghosts included) with fresh ids,
        and the durable messages still queued.  Gives every capability its ``cid``."""
        k = self.k
        out: list[R.Record] = []
        now = time.time_ns()
        live: set[int] = set()
        for a in k.agents:
            if not a.alive:
                continue
            live.add(a.aid)
            row = self.rows.get(a.aid)
            if row is None:
                conf = a.confinement
                row = R.AgentSpawned(a.aid, a.parent, a.name, "", getattr(conf, "executor", "inproc") or "inproc",
                                     {}, plain(a.state or {}), "", now)  # fmt: skip
                self.rows[a.aid] = row
            elif row.parent != a.parent:  # adopted
                row = R.AgentSpawned(row.aid, a.parent, row.name, row.entry, row.executor, row.opts, row.state,
                                     row.unit, row.time_ns)  # fmt: skip
                self.rows[a.aid] = row
            out.append(row)
        for aid, (row, ex) in self.history.items():
            if aid not in live:
                out.append(row)
                out.append(ex)
        for aid, n in self.ckpt.items():
            if aid in live or aid in self.history:
                out.append(R.Checkpointed(aid, n))
        caps: dict[int, Capability] = {}
        for cs in k.cdt.spaces():
            for cap in cs.caps():
                c: Capability | None = cap
                while c is not None and id(c) not in caps:
                    caps[id(c)] = c
                    c = c.parent
        ordered = sorted(caps.values(), key=Capability.depth)
        self.oids.clear()
        self.next_cid = 0
        ghosts: list[int] = []
        for cap in ordered:
            obj = cap.obj
            if obj.oid not in self.oids:
                self.oids.add(obj.oid)
                out.append(R.ObjectCreated(obj.oid, int(obj.kind), object_ref(obj)))
            self.next_cid += 1
            cap.cid = self.next_cid
            parent = cap.parent.cid if cap.parent is not None else 0
            lim = tuple(cap.limits) if cap.limits is not None else None
            out.append(R.CapInstalled(cap.cid, cap.holder, cap.slot, obj.oid, int(cap.rights), cap.badge,
                                      parent, lim))  # fmt: skip
            if cap.ghost:
                ghosts.append(cap.cid)
        out.extend(R.CapDeleted(cid) for cid in reversed(ghosts))
        for oid, (mb, msgs, _seen) in list(self.pending.items()):
            if mb.closed or oid not in self.oids:
                del self.pending[oid]
                continue
            present = {m.seq for m in mb.q}
            for seq, m in list(msgs.items()):
                if seq in present:
                    out.append(R.MailboxPut(oid, seq, m.sender, m.badge, m.payload))
                else:
                    del msgs[seq]
        return out

    def compact(self) -> int:
        """Rewrite the journal as one snapshot of the live state (kernel thread only)."""
        self.j.commit()
        image = KernelImage()
        for rec in self.live_records():
            image.apply(rec)
        self.compacted_at = self.j.compact(image)
        self.stats["compactions"] += 1
        return self.compacted_at

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.j.path),
            "acknowledged": self.j.acknowledged,
            "last_seq": self.j.last_seq,
            "pending": self.j.pending,
            "size": self.j.size_bytes(),
            "boot": self.boot,
            "held": len(self.waiting),
            "durable_pending": sum(len(m) for _mb, m, _s in self.pending.values()),
            "recovered": self.recovered,
            **self.stats,
        }


JOURNAL: Key[JournalService] = Key("journal")


def journal_path(home: Path) -> Path:
    return Path(home) / "journal" / "journal.db"
