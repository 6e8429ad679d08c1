"""OpenTelemetry spans for IPC calls and semantic routes, followed across agents.

Design
------
**The kernel propagates, not the agents.**  Every call crosses the kernel
as a message carrying a call id (``Message.call``), and the kernel sees the
three moments that matter: the caller makes the call (``IPC_CALL``, or
semantic-ipcd delivering an intent), the receiver takes the message out of
its mailbox (whichever receive syscall, whichever executor), and the
receiver answers (``IPC_REPLY``) or the call ends otherwise (timeout, a
party gone).  So the trace context travels with the message, keyed by its
call id, and agents in any executor (in-process coroutines, isolated
processes, Wasm) are followed without a line of tracing code in them:

* ``IPC_CALL`` opens a **client** span ``"{receiver}/call"`` whose parent is
  the caller's current context: the server span of the call it is serving,
  if any (the most recent one taken), else nothing (a new trace);
* taking the message opens a **server** span under the client span, and
  makes it the receiver's current context until it answers;
* ``IPC_REPLY`` ends both with status OK; an unanswered end ends both with
  status ERROR naming why.

An agent serving a call that itself calls another agent therefore produces
client -> server -> client -> server ..., one tree per request across any
number of agents.  A semantic route is a span ``"semantic-ipcd/route"``
under the sender's context, carrying the outcome; the calls it delivers are
its children.

Attributes follow OpenTelemetry's RPC semantic conventions
(``rpc.system`` ``aios``, ``rpc.service`` the receiver's name, ``rpc.method``
``call`` or ``route``) plus ``aios.*`` ids and payload sizes.

**API only.**  This module imports ``opentelemetry-api`` alone; what is done
with the spans (sampling beyond ours, processors, exporters) is the
provider's business: the SDK and an OTLP exporter are the ``otel`` extra,
configured by ``aios up --trace`` (:mod:`aios.kmod.observe.otel`).  Without a
configured provider the API hands out non-recording spans.

**Sampling at the root, decided once per request.**  A request that starts
a trace (a call or route with no current context) is sampled with
probability ``ratio``; the decision is remembered with the call (an
unsampled call is recorded as :data:`UNSAMPLED`, not as a span), so every
call made while serving it follows the same decision and traces are never
fragments.  At ratio 0 no span is ever created.

**Cost.**  Tracing off: this module is not imported and the IPC paths pay
one attribute test (``registry.ipc_probe is None``).  Tracing on: a few dict
operations per call, plus span creation for sampled requests
(``aios bench observe``).  Open calls are bounded (:data:`MAX_OPEN_CALLS`):
past that the oldest is ended as an error, which only happens when calls
leak, never in normal operation.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel

MAX_OPEN_CALLS = 65536
UNSAMPLED = None  # a call (or route) in a request that was not sampled
_ROOT = Context()
FAILED_OUTCOMES = frozenset({"error", "refused", "no_match"})


# an open call: [client span or UNSAMPLED, server span or None, receiver aid] (a list: cheaper
# to make than an object, and this is made once per call)
CLIENT, SERVER, RECEIVER = 0, 1, 2


class IpcTracer:
    """Spans for calls and routes of one kernel (the tracing half of the IPC probe)."""

    def __init__(self, k: Kernel, ratio: float, provider: Any = None) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            from aios.abi.errors import InvalidArgument

            raise InvalidArgument(f"trace sample ratio must be a number in [0, 1], got {ratio!r}")
        self.k = k
        self.ratio = float(ratio)
        self.tracer = trace.get_tracer("aios.kernel", tracer_provider=provider)
        self.random = random.random
        self.calls: dict[int, list[Any]] = {}  # call id -> [client, server, receiver]
        self.serving: dict[int, list[tuple[int, Any]]] = {}  # aid -> (call id, server span) taken

    # -- context ------------------------------------------------------------------

    def _current(self, aid: int) -> tuple[bool, Any]:
        """``(inside a request, its span or UNSAMPLED)`` for agent ``aid``."""
        mine = self.serving.get(aid)
        if mine:
            return True, mine[-1][1]
        return False, UNSAMPLED

    def _start(self, name: str, parent: Any, inside: bool, kind: SpanKind, attrs: dict[str, Any]) -> Any:
        if inside:
            if parent is UNSAMPLED:
                return UNSAMPLED
            ctx = set_span_in_context(parent)
        else:
            if self.random() >= self.ratio:
                return UNSAMPLED
            ctx = _ROOT
        return self.tracer.start_span(name, context=ctx, kind=kind, attributes=attrs)

    def _name(self, aid: int) -> str:
        a = self.k.find(aid)
        return a.name if a is not None else str(aid)

    # -- calls ----------------------------------------------------------------------

    def sent(self, a: Agent, n: int, nbytes: int) -> None:
        pass  # plain messages carry no call to follow

    def call(self, a: Agent, cid: int, receiver: int, nbytes: int, parent: Any = None) -> None:
        if parent is not None:  # a route token: (t0, span or UNSAMPLED)
            inside, span = True, parent[1]
        else:
            mine = self.serving.get(a.aid)
            inside, span = (True, mine[-1][1]) if mine else (False, UNSAMPLED)
        if (inside and span is UNSAMPLED) or (not inside and self.random() >= self.ratio):
            client = UNSAMPLED
        else:
            service = self._name(receiver)
            client = self.tracer.start_span(
                f"{service}/call", context=set_span_in_context(span) if inside else _ROOT,
                kind=SpanKind.CLIENT, attributes={
                    "rpc.system": "aios", "rpc.service": service, "rpc.method": "call",
                    "aios.call.id": cid, "aios.agent.id": a.aid, "aios.agent.name": a.name,
                    "aios.peer.id": receiver, "aios.request.size": nbytes,
                })
        calls = self.calls  # unsampled calls too: what their receivers call follows the decision
        if len(calls) >= MAX_OPEN_CALLS:
            self._end(next(iter(calls)), "call leaked: too many open calls")
        calls[cid] = [client, None, receiver]

    def received(self, cid: int, receiver: Agent) -> None:
        c = self.calls.get(cid)
        if c is None:
            return
        client = c[CLIENT]
        server = None
        if client is not UNSAMPLED:
            server = c[SERVER] = self.tracer.start_span(
                f"{receiver.name}/call", context=set_span_in_context(client), kind=SpanKind.SERVER, attributes={
                    "rpc.system": "aios", "rpc.service": receiver.name, "rpc.method": "call",
                    "aios.call.id": cid, "aios.agent.id": receiver.aid, "aios.agent.name": receiver.name,
                })
        aid = c[RECEIVER] = receiver.aid
        mine = self.serving.get(aid)
        if mine is None:
            self.serving[aid] = [(cid, server)]
        else:
            mine.append((cid, server))

    def replied(self, a: Agent, cid: int, nbytes: int) -> None:
        c = self.calls.pop(cid, None)
        if c is None:
            return
        aid = c[RECEIVER]
        mine = self.serving.get(aid)
        if mine and mine[-1][0] == cid:  # the usual case, inlined: this runs once per call
            mine.pop()
            if not mine:
                del self.serving[aid]
        else:
            self._unserve(aid, cid)
        client, server = c[CLIENT], c[SERVER]
        if server is not None:
            server.set_attribute("aios.response.size", nbytes)
            server.set_status(Status(StatusCode.OK))
            server.end()
        if client is not UNSAMPLED:
            client.set_attribute("aios.response.size", nbytes)
            client.set_status(Status(StatusCode.OK))
            client.end()

    def ended(self, cid: int) -> None:
        if cid in self.calls:
            self._end(cid, "call ended without a reply (timed out, or a party is gone)")

    def _end(self, cid: int, why: str) -> None:
        c = self.calls.pop(cid)
        self._unserve(c[RECEIVER], cid)
        for span in (c[SERVER], c[CLIENT]):
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, why))
                span.end()

    def _unserve(self, aid: int, cid: int) -> None:
        mine = self.serving.get(aid)
        if not mine:
            return
        if mine[-1][0] == cid:  # the usual case: the call taken last is answered first
            mine.pop()
        else:
            for i in range(len(mine) - 2, -1, -1):
                if mine[i][0] == cid:
                    del mine[i]
                    break
        if not mine:
            del self.serving[aid]

    # -- semantic routes ------------------------------------------------------------------

    def route(self, a: Agent, intent: str) -> tuple[int, Any]:
        """A route token ``(0, span or UNSAMPLED)``; the calls it delivers are its children."""
        inside, span = self._current(a.aid)
        return 0, self._start("semantic-ipcd/route", span, inside, SpanKind.CLIENT, {
            "rpc.system": "aios", "rpc.service": "semantic-ipcd", "rpc.method": "route",
            "aios.agent.id": a.aid, "aios.agent.name": a.name, "aios.intent.size": len(intent),
        })

    def routed(self, token: tuple[int, Any], outcome: str, targets: int) -> None:
        span = token[1]
        if span is UNSAMPLED:
            return
        span.set_attribute("aios.route.outcome", outcome)
        span.set_attribute("aios.route.targets", targets)
        if outcome in FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    def close(self) -> None:
        """Kernel shutdown: end what is still open (as errors), so no span is lost."""
        for cid in list(self.calls):
            self._end(cid, "kernel shut down")
