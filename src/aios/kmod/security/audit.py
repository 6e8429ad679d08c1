"""The audit log, measured boot and agent identities, wired into a running kernel.

Design
------
**Recording through the bus.**  The kernel's handlers never call the audit
log.  They publish events (``agent.lifecycle.*``, ``agent.fault``,
``security.violation`` for every capability error, ``cap.granted`` /
``cap.revoked``, ``kernel.panic``, ``sched.changed``) and the policy and
behavior glue publishes its own (``policy.decision``, ``security.anomaly``,
``security.response``, ``token.*``, ``identity.issued``).  :class:`AuditPump`
is one in-kernel subscriber per pattern in :data:`AUDIT_PATTERNS`, at the
highest priority, so a record is appended before any other subscriber can
act on the event.  :func:`normalize` gives every record the same shape:
*who* (the acting agent; the event source when the data names none), *what*
(the topic), *which capability* (kind, object, rights, or the slot named by
a capability error), *decision* (allow / deny, response kind), *result*
(error name, exit status) and *time* (wall clock, plus the kernel clock and
bus sequence number in the detail).

**Group commit off the kernel thread.**  ``append`` on the kernel thread only
hashes the leaf and buffers it (the log's ``autocommit`` is switched off, so
the kernel thread never waits for ``fsync``).  A dedicated thread commits the
buffer every ``flush_ms`` (5 ms by default) in one ``synchronous=FULL``
transaction; an entry is *acknowledged* when that transaction returns, and
``AuditLog.on_commit`` callbacks hear of it.  A SIGKILL loses at most the
last few milliseconds of unacknowledged entries, never an acknowledged one,
and the log on disk is always a prefix ending at a batch boundary.  At kernel
close the pump stops the thread, commits what is left, signs a final
checkpoint and closes the database.

**Backpressure.**  The pending buffer is bounded
(:mod:`aios.lib.audit.backpressure`): every record is charged to the
agent whose syscall caused it, and an agent with too many records pending is
held at the end of its syscall until the commit thread has caught up; once the
buffer is full each producer may keep only its fair share queued, so a
violation storm from one agent holds that agent, not everyone's
acknowledgements.  The commit thread commits at once (not at the next tick)
when the buffer passes :data:`COMMIT_HINT` records, and hands every
acknowledged size back to the kernel thread, which releases held agents.

**Measured boot.**  :func:`open_node_security` extends PCR 0 with the kernel
code; this module adds the boot configuration (PCR 1) and the policy set in
force (PCR 2: the digest the engine computed over every file it loaded), and
each distinct agent image the first time it is spawned (PCR 4).  The event
log under ``$AIOS_HOME/attest`` is rewritten after each extension, so
``aios attest quote`` replays exactly the kernel's registers.

**Agent identities: lazy.**  An ML-DSA-65 key pair plus a node signature over
the binding costs about 0.3 ms, which would triple the cost of spawning an
in-process agent.  So at spawn the post-hook only computes the agent's image
hash (cached per code object) and remembers it; the key pair and the
node-signed binding are made on first use (``AGENT_IDENTITY``, a token
export) and kept in memory (``persist=False``).  ``agent_identity="eager"``
issues at spawn instead; ``"off"`` does neither.  Every issued identity is
announced as ``identity.issued`` and so audited.

The *image* of an in-process agent is its code: the entry point's qualified
name and the marshalled code objects of the agent function (or of every
function of an ``Agent`` class).  Isolated and Wasm executors will pass the
real image bytes instead.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import re
import threading
import types
from typing import TYPE_CHECKING, Any, Final

from aios.abi.topics import AUDIT_PATTERNS
from aios.kmod.security.node import NodeSecurity
from aios.lib import attest
from aios.lib.audit.backpressure import Backpressure
from aios.lib.identity import AgentIdentity
from aios.lib.paths import event_log_path

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.events import Event
    from aios.kernel.kernel import Kernel

log = logging.getLogger("aios.lib.audit")

_SLOT_RE: Final = re.compile(r"slot (\d+)")
IDENTITY_MODES: Final = ("lazy", "eager", "off")
COMMIT_HINT: Final = 512  # pending records that make the commit thread commit now


def normalize(topic: str, data: dict[str, Any], source: int, seq: int, time_ns: int) -> dict[str, Any]:
    """The record fields for one kernel event: who, what, which capability, decision, result."""
    out = dict(data)
    who = out.pop("agent", None)
    if who is None:
        who = out.pop("principal", None)
    out["agent"] = who if who is not None else source
    cap: Any = None
    if topic.startswith("cap."):
        cap = {
            "kind": out.pop("kind", None),
            "object": out.pop("object", None),
            "rights": out.pop("rights", None),
        }
    elif topic == "security.violation":
        m = _SLOT_RE.search(str(out.get("message", "")))
        cap = {"syscall": out.get("syscall"), "slot": int(m.group(1)) if m else None}
        out["result"] = out.pop("error", None)
    elif topic == "policy.decision":
        if "allowed" in out:
            out["decision"] = "allow" if out.pop("allowed") else "deny"
        else:
            out["decision"] = "reload-ok" if out.get("ok") else "reload-rejected"
        cap = out.pop("resource", None)
    elif topic == "security.response":
        out["decision"] = out.pop("response", None)
        cap = out.get("rights") or None
    elif topic.startswith("token."):
        cap = out.pop("object", None)
    elif topic == "agent.lifecycle.exited":
        out["result"] = {"how": out.pop("how", None), "status": out.pop("status", None),
                         "fault": out.pop("fault", None)}
    out.pop("kind", None)
    if cap is not None:
        out["cap"] = cap
    out["seq"] = seq
    out["source"] = source
    out["kernel_ns"] = time_ns
    return out


class AuditPump:
    """Bus subscriber that appends records, and the thread that commits them."""

    def __init__(self, k: Kernel, sec: NodeSecurity, flush_ms: float = 5.0) -> None:
        self.k = k
        self.sec = sec
        self.recorder = sec.recorder
        sec.log.autocommit = False  # the kernel thread never waits for fsync
        self.interval = max(flush_ms, 0.1) / 1000.0
        self.errors = 0
        self.pressure = Backpressure()
        self._stop = threading.Event()
        self._due = threading.Event()  # commit now: the buffer is filling, or we are stopping
        self._thread: threading.Thread | None = None
        self._subs: list[int] = []
        sec.log.on_commit.append(self._committed)

    def attach(self) -> None:
        for pattern in AUDIT_PATTERNS:
            sub = self.k.bus.subscribe(pattern, priority=1000, callback=self.on_event)
            self._subs.append(sub.sid)

    def on_event(self, ev: Event) -> None:
        rec = normalize(ev.topic, ev.data, ev.source, ev.seq, ev.time_ns)
        try:
            idx = self.recorder.on_event(ev.topic, rec)
        except Exception:  # the audit must not take the publisher down with it
            self.errors += 1
            log.exception("audit append failed for %s", ev.topic)
            return
        if idx is None:
            return
        cur = self.k.current
        owner = cur.aid if cur is not None else 0
        bp = self.pressure
        if bp.appended(idx, owner):
            self.k.throttle(owner)
        if bp.total >= COMMIT_HINT and not self._due.is_set():
            self._due.set()

    def _committed(self, size: int) -> None:
        """``AuditLog.on_commit`` (the committing thread): release on the kernel thread."""
        self.k.post(self._acknowledged, size)

    def _acknowledged(self, size: int) -> None:
        for aid in self.pressure.acknowledged(size):
            self.k.unthrottle(aid)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="aios-audit-commit", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._due.wait(self.interval)
            self._due.clear()
            if self._stop.is_set():
                return
            self.flush()

    def flush(self) -> int:
        try:
            return self.recorder.flush()
        except Exception:
            self.errors += 1
            log.exception("audit commit failed; the rows stay buffered for the next attempt")
            return self.sec.log.acknowledged_size

    def close(self) -> None:
        """Stop the commit thread; commit, checkpoint and close the log."""
        for sid in self._subs:
            self.k.bus.unsubscribe(sid)
        self._subs.clear()
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sec.close()

    def status(self) -> dict[str, Any]:
        lg = self.sec.log
        bp = self.pressure.status()
        return {
            "origin": lg.origin,
            "size": self.recorder.log._edge.size,
            "acknowledged": lg.acknowledged_size,
            "pending": lg.pending,
            "pending_max": bp.pending_max,
            "pending_capacity": bp.capacity,
            "held": bp.held,
            "holds": bp.holds,
            "recorded": self.recorder.recorded,
            "errors": self.errors,
            "flush_ms": self.interval * 1000.0,
        }


# -- images and identities ------------------------------------------------------


def _code_bytes(obj: Any, depth: int = 0) -> bytes:
    if isinstance(obj, types.FunctionType):
        return marshal.dumps(obj.__code__)
    if isinstance(obj, type) and depth == 0:
        return b"".join(
            _code_bytes(v, 1) for _, v in sorted(vars(obj).items()) if isinstance(v, types.FunctionType)
        )
    return b""


def _target_of(entry: Any) -> Any:
    """The agent function or class behind an SDK start function."""
    for cell in getattr(entry, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if isinstance(v, types.FunctionType | type):
            return v
    return entry


class AgentIdentities:
    """Image hashes at spawn; ML-DSA identities issued at spawn or on first use."""

    def __init__(self, k: Kernel, sec: NodeSecurity, mode: str = "lazy") -> None:
        if mode not in IDENTITY_MODES:
            from aios.abi.errors import InvalidArgument

            raise InvalidArgument(f"agent_identity must be one of {IDENTITY_MODES}")
        self.k = k
        self.sec = sec
        self.mode = mode
        self.images: dict[int, bytes] = {}
        self.issued: dict[int, AgentIdentity] = {}
        self._image_cache: dict[int, tuple[Any, bytes]] = {}
        self._measured: set[bytes] = set()

    def image_of(self, a: Agent) -> bytes:
        target = _target_of(a.entry)
        hit = self._image_cache.get(id(target))
        if hit is not None and hit[0] is target:
            return hit[1]
        name = getattr(a.entry, "__qualname__", None) or repr(target)
        digest = hashlib.sha256(name.encode() + b"\0" + _code_bytes(target)).digest()
        if len(self._image_cache) >= 4096:
            self._image_cache.clear()
        self._image_cache[id(target)] = (target, digest)
        if digest not in self._measured:
            self._measured.add(digest)
            self.sec.pcrs.extend(attest.PCR_AGENTS, digest, f"agent image {name}")
            self.sec.pcrs.save_log(event_log_path(self.sec.home))
        return digest

    def on_spawn(self, k: Kernel, op: str, **info: Any) -> None:
        """Post-hook of spawn, clone, split and specialize."""
        a = k.find(info["agent"])
        if a is None:
            return
        self.images[a.aid] = self.image_of(a)
        if self.mode == "eager":
            self.identity(a.aid)

    def identity(self, aid: int) -> AgentIdentity:
        ident = self.issued.get(aid)
        if ident is not None:
            return ident
        img = self.images.get(aid)
        if img is None:
            from aios.abi.errors import NoSuchObject

            raise NoSuchObject(f"agent {aid} has no recorded image (spawned before security was on?)")
        ident = self.sec.keystore.issue_agent_identity(aid, img, persist=False)
        self.issued[aid] = ident
        self.k.publish(
            "identity.issued", 0, agent=aid, image=img.hex(),
            key=hashlib.sha256(ident.public_key).hexdigest()[:32],
        )
        return ident

    def forget(self, aid: int) -> None:
        self.images.pop(aid, None)
        self.issued.pop(aid, None)

    def describe(self, aid: int) -> dict[str, Any]:
        ident = self.identity(aid)
        return {
            "agent": aid,
            "alg": "mldsa65",
            "image": ident.image_hash.hex(),
            "public_key": ident.public_key,
            "statement": ident.statement,
            "node_signature": ident.node_signature,
            "node_public_key": self.sec.node.public_key,
        }


def measure_boot_steps(config: bytes, policy_digest: str | None) -> list[tuple[int, str, bytes]]:
    """The boot-time measurements beyond kernel code: configuration and policies."""
    steps = [(attest.PCR_CONFIG, "kernel boot configuration", config)]
    if policy_digest is not None:
        steps.append((attest.PCR_POLICY, f"policy set {policy_digest[:16]}", policy_digest.encode()))
    return steps


