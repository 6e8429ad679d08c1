"""semantic-ipcd inside a running kernel: skills, routing, delivery as calls.

Whitepaper 3.1: *Agent A -> kernel (binary) -> semantic-ipcd (interpret) ->
Agent B*.  The pure :class:`~aios.services.semantic_ipcd.core.SemanticRouter`
decides; this module is the wiring around it.

**Who may send.**  Sending by meaning reaches agents the sender holds no
endpoint for, so it is a right of its own: INTENT_SEND needs a SERVICE
capability for semantic-ipcd carrying ``SEMANTIC_SEND``.  An agent gets one
with SEMANTIC_OPEN from an authority capability that carries
``SEMANTIC_SEND`` (the console's and init's do; children get it only if
their parent spawns them with that right, or passes the service capability
with the spawn option ``caps`` or CAP_GRANT, possibly narrowed).  There is
no new well-known slot.  Receivers decide who reaches them: a skill
registered with ``allowed_senders`` (agent ids) is invisible to everyone
else, not even listed among the nearest skills.

**One intent, three stages.**  (1) On the kernel thread INTENT_SEND checks
the capability, the arguments and the sender's IPC rate, snapshots the
load (mailbox depth) of every agent with a skill, and queues a job.  (2) On
the fabric's worker thread the router embeds the intent and scores the
skills (always in explain mode, so every decision comes back as a value).
(3) Back on the kernel thread the decision is published as a
``semantic.route`` event (audited) and then, unless the sender asked to
``explain`` or nothing matched, delivered: each target gets a *call* in its
mailbox whose payload is msgpack ``{intent, skill, score, slots, payload,
sender}``.  The receiver answers with the ordinary IPC_REPLY.  The reply
completes the sender's async op (broadcast: when every target answered,
failed or timed out), which the SDK wrapper is waiting on.

**Replies without a parked caller.**  A kernel call is an entry in
``kernel.calls`` mapping the call id to the caller's :class:`Wait`; IPC_REPLY,
a timeout and the death of the receiver all end that wait through
``Kernel.wake`` -> ``Kernel.deliver``, which stores the value and the error
on the waiting agent.  Here nobody is parked (the sender waits on its async
op, possibly in another process), so the wait's "agent" is a
:class:`_ReplySink` whose ``pending`` / ``pending_exc`` attributes forward
the outcome to a callback.  It is never runnable, so ``deliver`` does
nothing else with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from aios.errors import (
    AgentGone,
    AIOSError,
    Busy,
    InvalidArgument,
    InvalidCapability,
    MessageTooLarge,
    NoSuchObject,
    QuotaExceeded,
)
from aios.kernel import params
from aios.kernel.agents import AgentState
from aios.kernel.args import as_bool, as_opts, as_str, copy_plain
from aios.kernel.capabilities import ObjKind, Rights
from aios.kernel.ipc import Message
from aios.kernel.waits import Wait
from aios.services.memoryd.service import fabric

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel
    from aios.services.semantic_ipcd.core import RouteDecision

SERVICE_NAME = "semantic-ipcd"
MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_EXAMPLE = 512
MAX_PAYLOAD_BYTES = params.IPC_MAX_PAYLOAD - 8192  # room for the intent and the envelope
SEND_OPTS = frozenset({"broadcast", "explain", "timeout"})
REGISTER_OPTS = frozenset({"schema", "allowed_senders"})


class _ReplySink:
    """Stands in for the caller in a kernel call's :class:`Wait` (see the module essay)."""

    __slots__ = ("_got", "_n", "_on_reply", "_value", "executor", "status", "wait")

    def __init__(self, on_reply: Callable[[Any, AIOSError | None], None]) -> None:
        self.executor = None
        self.status = AgentState.READY  # never BLOCKED or SUSPENDED: deliver only stores
        self.wait = None
        self._on_reply = on_reply
        self._value: Any = None
        self._got: AIOSError | None = None
        self._n = 0

    def _arrived(self) -> None:
        self._n += 1
        if self._n == 2:  # both the value and the error were stored
            self._on_reply(self._value, self._got)

    @property
    def pending(self) -> Any:
        return self._value

    @pending.setter
    def pending(self, v: Any) -> None:
        self._value = v
        self._arrived()

    @property
    def pending_exc(self) -> AIOSError | None:
        return self._got

    @pending_exc.setter
    def pending_exc(self, e: AIOSError | None) -> None:
        self._got = e
        self._arrived()


def _service_object(k: Kernel) -> Any:
    fab = fabric(k)
    if fab.service_obj is None or fab.service_obj.destroyed:
        fab.service_obj = k.cdt.new_object(ObjKind.SERVICE, SERVICE_NAME)
    return fab.service_obj


def open_service(k: Kernel, a: Agent, auth_slot: Any) -> int:
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.SEMANTIC_SEND)
    cap = k.cdt.root(a.cspace, _service_object(k), Rights.SEMANTIC_SEND | Rights.GRANT)
    return cap.slot


def _sender_cap(a: Agent, slot: Any) -> None:
    cap = a.cspace.lookup(slot, ObjKind.SERVICE, Rights.SEMANTIC_SEND)
    if cap.obj.payload != SERVICE_NAME:
        raise InvalidCapability(f"slot {slot} is not a semantic-ipcd capability")


# -- registration ---------------------------------------------------------------------


def register(k: Kernel, a: Agent, name: Any, description: Any, examples: Any, opts: Any) -> int:
    nm = as_str(name, "name", MAX_NAME)
    desc = as_str(description, "description", MAX_DESCRIPTION)
    if not nm.strip() or not desc.strip():
        raise InvalidArgument("name and description must be non-empty")
    ex = [] if examples is None else examples
    if type(ex) is tuple:  # lists may arrive as tuples over the trap wire
        ex = list(ex)
    if type(ex) not in (list, tuple) or len(ex) > 64:
        raise InvalidArgument("examples must be a list of up to 64 strings")
    for e in ex:
        as_str(e, "example", MAX_EXAMPLE)
    o = as_opts(opts, REGISTER_OPTS)
    schema = o.get("schema")
    if schema is not None:
        if type(schema) is not dict:
            raise InvalidArgument("schema must be a JSON schema object")
        schema = copy_plain(schema, "schema", 16 * 1024)
    senders = o.get("allowed_senders")
    if senders is not None:
        if type(senders) is tuple:
            senders = list(senders)
        if type(senders) not in (list, tuple) or not all(type(s) is int and s > 0 for s in senders):
            raise InvalidArgument("allowed_senders must be a list of agent ids")
        senders = [str(s) for s in senders]
    fab = fabric(k)
    examples_t = tuple(ex)

    def job() -> None:
        fab.router().register(str(a.aid), nm, desc, examples_t, schema=schema,
                              allowed_senders=senders)

    def then(_v: Any) -> dict[str, Any]:
        if not a.alive:
            fab.detach(lambda: fab.router().unregister(str(a.aid)))
            raise AgentGone(f"agent {a.aid} exited while registering")
        fab.skills.setdefault(a.aid, set()).add(nm)
        k.publish("semantic.skill.registered", a.aid, agent=a.aid, skill=nm,
                  examples=len(examples_t), restricted=senders is not None)
        return {"agent": a.aid, "skill": nm, "examples": len(examples_t)}

    h: int = fab.submit(a, job, then=then)
    return h


def unregister(k: Kernel, a: Agent, name: Any) -> int:
    nm = None if name is None else as_str(name, "name", MAX_NAME)
    fab = fabric(k)

    def then(n: int) -> int:
        names = fab.skills.get(a.aid, set())
        if nm is None:
            names.clear()
        else:
            names.discard(nm)
        if not names:
            fab.skills.pop(a.aid, None)
        k.publish("semantic.skill.unregistered", a.aid, agent=a.aid, skill=nm, removed=n)
        return n

    h: int = fab.submit(a, lambda: fab.router().unregister(str(a.aid), nm), then=then)
    return h


def status(k: Kernel, a: Agent) -> int:
    fab = fabric(k)

    def job() -> dict[str, Any]:
        r = fab.router()
        ch = fab.choice
        return {
            "service": SERVICE_NAME, "embedder": ch.name if ch else None,
            "dim": ch.dim if ch else None, "embedder_reason": ch.reason if ch else None,
            "threshold": r.threshold, "margin": r.margin,
            "skills": [{"agent": int(s.agent), "skill": s.name, "description": s.description,
                        "examples": len(s.examples), "restricted": s.allowed_senders is not None}
                       for s in r.skills()],
        }

    h: int = fab.submit(a, job)
    return h


# -- routing ------------------------------------------------------------------------


def decision_view(d: RouteDecision) -> dict[str, Any]:
    def cand(c: Any) -> dict[str, Any]:
        return {"agent": int(c.agent), "skill": c.skill, "score": round(c.score, 4), "load": c.load}

    return {
        "intent": d.intent, "mode": d.mode.value, "explain": d.explain,
        "targets": [cand(c) for c in d.targets], "nearest": [cand(c) for c in d.nearest],
        "slots": json.loads(json.dumps(d.slots, default=str)), "reason": d.reason,
        "error": d.error, "threshold": d.threshold, "margin": d.margin,
    }


def send_intent(k: Kernel, a: Agent, svc_slot: Any, intent: Any, payload: Any, opts: Any) -> int:
    _sender_cap(a, svc_slot)
    text = as_str(intent, "intent", 4096)
    if not text.strip():
        raise InvalidArgument("intent must be a non-empty string")
    o = as_opts(opts, SEND_OPTS)
    broadcast = as_bool(o.get("broadcast", False), "broadcast")
    explain = as_bool(o.get("explain", False), "explain")
    timeout = o.get("timeout")
    k.deadline(timeout)  # validate now
    if payload is not None:
        payload = copy_plain(payload, "payload", MAX_PAYLOAD_BYTES)
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"payload must be JSON data: {e}") from None
    if not explain:
        from aios.kernel.sys_ipc import _rate

        _rate(k, a, 1)
    fab = fabric(k)
    loads: dict[str, int] = {}
    for aid in fab.skills:
        ag = k.find(aid)
        if ag is not None and ag.alive and ag.mailbox is not None:
            loads[str(aid)] = len(ag.mailbox)
    op = k.new_async(a)
    sender = a.aid

    def job() -> RouteDecision:
        return fab.router().route(str(sender), text, payload, broadcast=broadcast, explain=True,
                                  loads=loads)

    def decided(d: Any, err: AIOSError | None) -> None:
        if err is not None:
            k.complete_async(op, error=err)
            return
        delivering = d.error is None and not explain and bool(d.targets)
        k.publish("semantic.route", sender, agent=sender, delivered=delivering, **d.event())
        view = decision_view(d)
        if explain:
            k.complete_async(op, view)
        elif d.error is not None:
            if not d.targets:
                k.complete_async(op, error=NoSuchObject(
                    d.error, nearest=[[int(c.agent), c.skill, round(c.score, 4)] for c in d.nearest]))
            else:
                k.complete_async(op, error=InvalidArgument(d.error))
        else:
            _deliver(k, a, d, view, timeout, lambda v, e: k.complete_async(op, v, e))

    try:
        fab.run(job, (), decided, agent=a, nbytes=len(text) + len(json.dumps(payload)))
    except AIOSError:
        k.drop_async(op.handle)
        raise
    return op.handle


def _deliver(k: Kernel, a: Agent, d: RouteDecision, view: dict[str, Any], timeout: Any,
             done: Callable[[Any, AIOSError | None], None]) -> None:
    """Put one call per target in its mailbox; ``done`` gets the reply (broadcast: all)."""
    from aios.kernel.sys_ipc import _hand_off

    targets = list(d.targets)
    outcome: list[tuple[Any, AIOSError | None] | None] = [None] * len(targets)
    left = [len(targets)]

    def got(i: int, value: Any, err: AIOSError | None) -> None:
        if outcome[i] is not None:
            return
        outcome[i] = (value, err)
        left[0] -= 1
        if left[0] == 0:
            _finish(d, view, targets, outcome, done)

    deadline = k.deadline(timeout)
    for i, c in enumerate(targets):
        aid = int(c.agent)
        ag = k.find(aid)
        mb = ag.mailbox if ag is not None and ag.alive else None
        if mb is None or mb.closed:
            got(i, None, AgentGone(f"agent {aid} ({c.skill}) is gone"))
            continue
        body = msgpack.packb({"intent": d.intent, "skill": c.skill, "score": round(c.score, 4),
                              "slots": view["slots"], "payload": d.payload, "sender": a.aid},
                             use_bin_type=True)
        if len(body) > params.IPC_MAX_PAYLOAD:
            got(i, None, MessageTooLarge(f"semantic message of {len(body)} bytes", size=len(body)))
            continue
        cid = next(k._call_seq)
        w = Wait(_ReplySink(lambda v, e, i=i: got(i, v, e)), None, ("call", cid))
        k.calls[cid] = (w, 0)
        k.call_received(cid, aid)  # its death fails the call
        if deadline is not None:
            w.timer = k.call_at(deadline, k._timeout, w)
        refused: AIOSError = Busy(f"mailbox of agent {aid} is full")
        try:
            queued = _hand_off(k, mb, Message(next(k._msg_seq), a.aid, 0, body, cid))
        except QuotaExceeded as e:  # queued messages are charged to the sender
            queued, refused = False, e
        if not queued:
            w.done = True
            k.cancel_timer(w.timer)
            k.end_call(cid)
            got(i, None, refused)


def _finish(d: RouteDecision, view: dict[str, Any], targets: list[Any],
            outcome: list[tuple[Any, AIOSError | None] | None],
            done: Callable[[Any, AIOSError | None], None]) -> None:
    replies = []
    for c, res in zip(targets, outcome, strict=True):
        value, err = res if res is not None else (None, None)
        row: dict[str, Any] = {"agent": int(c.agent), "skill": c.skill, "score": round(c.score, 4)}
        if err is not None:
            row["error"] = f"[{err.name}] {err.message}"
        else:
            row["reply"] = value
        replies.append(row)
    if d.mode.value == "broadcast":
        done({**view, "replies": replies}, None)
        return
    only = outcome[0]
    if only is not None and only[1] is not None:
        done(None, only[1])
        return
    done({**view, "agent": replies[0]["agent"], "skill": replies[0]["skill"],
          "score": replies[0]["score"], "reply": replies[0]["reply"]}, None)
