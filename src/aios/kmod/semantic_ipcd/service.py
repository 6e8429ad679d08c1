"""semantic-ipcd inside a running kernel: skills, routing, delivery as calls.

Whitepaper 3.1: *Agent A -> kernel (binary) -> semantic-ipcd (interpret) ->
Agent B*.  The pure :class:`~aios.kmod.semantic_ipcd.core.SemanticRouter`
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

**Concurrent intents are batched.**  Stage (2) does not run one job per
intent: intents queue in a :class:`_IntentBatch`, and one worker job drains
everything queued by the time it starts and routes it with one
``route_many`` call (one embedding batch, one matrix product), then hands
each decision back to the kernel thread.  Under load that is what turns
one MiniLM call per intent into one call per batch.

**Ask instead of guessing.**  When the router cannot separate the two best
skills, nothing is delivered: the sender's call completes with
``{"ambiguous": true, "candidates": [...]}`` and a ``semantic.ambiguous``
event is published.  The sender answers by sending the same intent again
with the option ``choose`` naming the skill; that is delivered to it
(``semantic.route`` with ``chosen``) and, if the skill's owner registered it
with ``learn``, remembered as a new example of that skill
(``semantic.feedback``, audited like every ``semantic.`` event).

**Skill hygiene.**  Registration answers with the collisions the new skill
has with skills already registered (:mod:`~aios.kmod.semantic_ipcd.hygiene`):
``warnings`` name the other skill, and each collision is also a
``semantic.skill.collision`` event.  SEMANTIC_STATUS with ``{"skill": name}``
explains one skill: expected score, nearest neighbours, confused examples.

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
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from aios.abi import limits
from aios.abi.errors import (
    AgentGone,
    AIOSError,
    Busy,
    InvalidArgument,
    InvalidCapability,
    MessageTooLarge,
    NoSuchObject,
    QuotaExceeded,
)
from aios.abi.message import Message
from aios.abi.rights import ObjKind, Rights
from aios.kernel.agents import AgentState
from aios.kernel.args import as_bool, as_opts, as_str, copy_plain
from aios.kernel.waits import Wait
from aios.kmod.memoryd.service import fabric

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel
    from aios.kmod.semantic_ipcd.core import RouteDecision

SERVICE_NAME = "semantic-ipcd"
MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_EXAMPLE = 512
MAX_PAYLOAD_BYTES = limits.IPC_MAX_PAYLOAD - 8192  # room for the intent and the envelope
SEND_OPTS = frozenset({"broadcast", "explain", "timeout", "choose"})
REGISTER_OPTS = frozenset({"schema", "allowed_senders", "learn"})
STATUS_OPTS = frozenset({"skill", "agent"})


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
    learn = as_bool(o.get("learn", False), "learn")
    fab = fabric(k)
    examples_t = tuple(ex)

    def job() -> list[Any]:
        from aios.kmod.semantic_ipcd.hygiene import collisions

        r = fab.router()
        r.register(str(a.aid), nm, desc, examples_t, schema=schema, allowed_senders=senders,
                   learn=learn)
        return collisions(r, str(a.aid), nm)

    def then(found: list[Any]) -> dict[str, Any]:
        if not a.alive:
            fab.detach(lambda: fab.router().unregister(str(a.aid)))
            raise AgentGone(f"agent {a.aid} exited while registering")
        fab.skills.setdefault(a.aid, set()).add(nm)
        k.publish("semantic.skill.registered", a.aid, agent=a.aid, skill=nm,
                  examples=len(examples_t), restricted=senders is not None, learn=learn)
        for c in found:
            k.publish("semantic.skill.collision", a.aid, agent=a.aid, skill=nm,
                      other=c.other, other_agent=int(c.other_agent), share=round(c.share, 3))
        return {"agent": a.aid, "skill": nm, "examples": len(examples_t), "learn": learn,
                "warnings": [c.message() for c in found],
                "collisions": [{"skill": c.other, "agent": int(c.other_agent),
                                "share": round(c.share, 3)} for c in found]}

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


def status(k: Kernel, a: Agent, opts: Any = None) -> int:
    o = as_opts(opts, STATUS_OPTS)
    one = o.get("skill")
    if one is not None:
        one = as_str(one, "skill", MAX_NAME)
    owner = o.get("agent")
    if owner is not None and (type(owner) is not int or owner <= 0):
        raise InvalidArgument("agent must be an agent id")
    fab = fabric(k)
    me = str(a.aid)

    def visible(s: Any) -> bool:
        return s.allowed_senders is None or me in s.allowed_senders or s.agent == me

    def job() -> dict[str, Any]:
        from aios.kmod.semantic_ipcd.hygiene import report

        r = fab.router()
        ch = fab.choice
        out: dict[str, Any] = {
            "service": SERVICE_NAME, "embedder": ch.name if ch else None,
            "dim": ch.dim if ch else None, "embedder_reason": ch.reason if ch else None,
            "threshold": r.threshold, "margin": r.margin,
            "lexical_weight": r.calibration.lexical_weight,
            "reranker": r.reranker.name if r.reranker else None,
            "skills": [{"agent": int(s.agent), "skill": s.name, "description": s.description,
                        "examples": len(s.examples), "restricted": s.allowed_senders is not None,
                        "learn": s.learn,
                        **dict(zip(("background", "expected"),
                                   (round(v, 3) for v in r.stats(s.agent, s.name)),
                                   strict=True))}
                       for s in r.skills() if visible(s)],
        }
        if one is not None:
            regs_all = {(s.agent, s.name): s for s in r.skills()}
            regs = [s for s in r.skills() if s.name == one and visible(s)
                    and (owner is None or s.agent == str(owner))]
            if not regs:
                raise NoSuchObject(f"no skill {one!r}")
            out["explain"] = []
            for s in regs:
                rep = report(r, s.agent, s.name)
                out["explain"].append({
                    "agent": int(s.agent), "skill": s.name, "description": s.description,
                    "background": round(r.stats(s.agent, s.name)[0], 3),
                    "expected": round(r.stats(s.agent, s.name)[1], 3),
                    "loo_calibrated": round(rep.expected, 2),
                    "neighbours": [{"agent": int(ag), "skill": sk, "similarity": round(v, 3)}
                                   for ag, sk, v in rep.neighbours if visible(regs_all[ag, sk])],
                    "confusions": [{"example": c.example, "own": round(c.own, 2),
                                    "other": c.other, "other_score": round(c.other_score, 2)}
                                   for c in rep.confusions],
                })
        return out

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
        "verdict": d.verdict.value, "ambiguous": bool(d.ambiguous),
        "candidates": [cand(c) for c in d.ambiguous],
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
    choose = o.get("choose")
    if choose is not None:
        choose = as_str(choose, "choose", MAX_NAME)
        if broadcast:
            raise InvalidArgument("choose and broadcast exclude each other")
    if not explain:
        from aios.kernel.sys_ipc import charge_ipc

        charge_ipc(k, a, 1)
    fab = fabric(k)
    loads: dict[str, int] = {}
    for aid in fab.skills:
        ag = k.find(aid)
        if ag is not None and ag.alive and ag.mailbox is not None:
            loads[str(aid)] = len(ag.mailbox)
    op = k.new_async(a)
    sender = a.aid
    probe = k.registry.ipc_probe
    route = probe.route(a, text) if probe is not None else None

    def decided(d: Any, err: AIOSError | None) -> None:
        if err is not None:
            if probe is not None:
                probe.routed(route, "error", 0)
            k.complete_async(op, error=err)
            return
        if choose is not None:
            d, learnt = d
            if learnt:
                k.publish("semantic.feedback", sender, agent=sender, intent=text, skill=choose,
                          learnt=[int(x) for x in learnt])
        if probe is not None:
            probe.routed(route, route_outcome(d, explain), len(d.targets))
        delivering = d.error is None and not explain and bool(d.targets)
        k.publish("semantic.route", sender, agent=sender, delivered=delivering,
                  chosen=choose is not None, **d.event())
        view = decision_view(d)
        if d.ambiguous:
            k.publish("semantic.ambiguous", sender, agent=sender, intent=text,
                      candidates=[[int(c.agent), c.skill, round(c.score, 4)] for c in d.ambiguous])
        if explain or d.ambiguous:
            k.complete_async(op, view)
        elif d.error is not None:
            if not d.targets:
                k.complete_async(op, error=NoSuchObject(
                    d.error, nearest=[[int(c.agent), c.skill, round(c.score, 4)] for c in d.nearest]))
            else:
                k.complete_async(op, error=InvalidArgument(d.error))
        else:
            _deliver(k, a, d, view, timeout, lambda v, e: k.complete_async(op, v, e), route)

    try:
        nbytes = len(text) + len(json.dumps(payload))
        if choose is not None:
            def job() -> Any:
                return fab.router().choose(str(sender), text, choose, payload, loads=loads,
                                           learn=not explain)

            fab.run(job, (), decided, agent=a, nbytes=nbytes)
        else:
            # an intent waiting in the batch is a kernel buffer charged to its sender
            from aios.abi.limits import JOB_COST

            cost = JOB_COST + nbytes
            k.ledger.take(sender, cost)

            def decided_and_refund(d: Any, err: AIOSError | None) -> None:
                k.ledger.give(sender, cost)
                decided(d, err)

            try:
                _batch(fab).add(k, fab, (str(sender), text, payload, broadcast, loads, decided_and_refund))
            except AIOSError:
                k.ledger.give(sender, cost)
                raise
    except AIOSError:
        k.drop_async(op.handle)
        if probe is not None:
            probe.routed(route, "refused", 0)
        raise
    return op.handle


def route_outcome(d: Any, explain: bool) -> str:
    """One word for how a routing decision ended (the ``outcome`` label of route metrics)."""
    if explain:
        return "explained"
    if d.ambiguous:
        return "ambiguous"
    if d.error is not None:
        return "no_match" if not d.targets else "refused"
    return "delivered"


class _IntentBatch:
    """Intents waiting for the worker; one job routes all that queued (see the essay)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Any, ...]] = []
        self._scheduled = False
        self.batches = 0
        self.routed = 0

    def add(self, k: Kernel, fab: Any, item: tuple[Any, ...]) -> None:
        with self._lock:
            self._items.append(item)
            need = not self._scheduled
            self._scheduled = True
        if need:
            try:
                fab.run(self._drain, (fab,), lambda res, err: self._done(fab, res, err))
            except AIOSError:
                with self._lock:
                    self._scheduled = False
                    self._items.remove(item)
                raise

    def _drain(self, fab: Any) -> list[tuple[Any, Any, BaseException | None]]:
        """Worker thread: route everything queued, grouped by broadcast flag."""
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        out: list[tuple[Any, Any, BaseException | None]] = []
        try:
            r = fab.router()
        except Exception as exc:  # e.g. no embedder: every sender gets the error
            return [(it[5], None, exc) for it in items]
        for flag in (False, True):
            group = [it for it in items if it[3] is flag]
            if not group:
                continue
            loads: dict[str, int] = {}
            for it in group:
                loads.update(it[4])
            try:
                ds = r.route_many([(it[0], it[1], it[2]) for it in group], broadcast=flag,
                                  explain=True, loads=loads)
                out += [(it[5], d, None) for it, d in zip(group, ds, strict=True)]
            except Exception:
                for it in group:  # one bad item must not fail the others
                    try:
                        d = r.route(it[0], it[1], it[2], broadcast=flag, explain=True,
                                    loads=it[4])
                        out.append((it[5], d, None))
                    except Exception as exc:
                        out.append((it[5], None, exc))
        self.batches += 1
        self.routed += len(items)
        return out

    def _done(self, fab: Any, results: Any, err: AIOSError | None) -> None:
        """Kernel thread: hand each decision (or error) to its sender's continuation."""
        if err is not None or results is None:
            # _drain catches everything; only a job cancelled before it ran lands here,
            # and then the queued items were never taken: fail them now
            with self._lock:
                stranded, self._items = self._items, []
                self._scheduled = False
            for it in stranded:
                it[5](None, err or Busy("semantic routing job did not run"))
            return
        for decided, d, e in results:
            decided(d, None if e is None else fab._as_error(e))


def _batch(fab: Any) -> _IntentBatch:
    b: _IntentBatch | None = getattr(fab, "intent_batch", None)
    if b is None:
        b = _IntentBatch()
        fab.intent_batch = b
    return b


def _deliver(k: Kernel, a: Agent, d: RouteDecision, view: dict[str, Any], timeout: Any,
             done: Callable[[Any, AIOSError | None], None], route: Any = None) -> None:
    """Put one call per target in its mailbox; ``done`` gets the reply (broadcast: all)."""
    from aios.kernel.sys_ipc import hand_off

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
        if len(body) > limits.IPC_MAX_PAYLOAD:
            got(i, None, MessageTooLarge(f"semantic message of {len(body)} bytes", size=len(body)))
            continue
        cid = next(k.call_seq)
        def reply(v: Any, e: AIOSError | None, i: int = i) -> None:
            got(i, v, e)

        w = Wait(_ReplySink(reply), None, ("call", cid))
        k.calls[cid] = (w, 0)
        k.call_received(cid, aid)  # its death fails the call
        probe = k.registry.ipc_probe
        if probe is not None:
            probe.call(a, cid, aid, len(body), route)
        if deadline is not None:
            w.timer = k.call_at(deadline, k.time_out, w)
        refused: AIOSError = Busy(f"mailbox of agent {aid} is full")
        try:
            queued = hand_off(k, mb, Message(next(k.msg_seq), a.aid, 0, body, cid))
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


def install(k: Kernel, cfg: Any = None) -> None:
    """The semantic-ipcd kernel module: its syscall block (120-139) and the exit hook
    that forgets a dead agent's skills (it lives on memoryd's fabric, installed first)."""
    from aios.kmod.semantic_ipcd.syscalls import HANDLERS

    fab = fabric(k)
    k.registry.syscalls.block("semantic_ipcd").add_all(HANDLERS)

    def on_exit(a: Any) -> None:
        aid = a.aid
        if aid in fab.skills:
            del fab.skills[aid]
            fab.detach(lambda: fab.router().unregister(str(aid)))

    k.registry.on_agent_exit(on_exit)
