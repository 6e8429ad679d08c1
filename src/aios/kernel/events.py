"""The kernel event bus (whitepaper subsystem #11, section 4.4).

Topics are dotted paths: ``agent.lifecycle.spawned``, ``security.violation``,
``perf.alert``.  A subscription names a pattern in which ``*`` matches one
segment and a trailing ``**`` matches any number (``agent.**``), plus an
optional filter (field equality on the event's data) and a priority.

Delivery never blocks the publisher.  In-kernel subscribers (the audit
recorder, services) give a callback and are called synchronously, highest
priority first.  Agent subscribers get a bounded queue; when it is full the
*oldest* event is dropped and the subscription's ``dropped`` counter goes up
(``overflow="drop_oldest"``, the default: a slow reader sees the most recent
history), or, with ``overflow="drop_newest"``, the new event is refused
(a reader that must see a prefix without gaps can detect the first loss).
Either way the loss is counted and visible in ``statistics()``.  A queue is
also bounded by its subscriber's memory quota: each queued event is charged
to the subscription's ``account`` (kernel/accounts.py), and an event that
does not fit is treated exactly like one that finds the queue full.

Every event has a bus-wide sequence number.  That is the hook for durable
subscriptions: a durable subscriber will persist its cursor (the last
sequence it acknowledged) in the kernel journal and be replayed from there;
nothing in the in-memory path needs to change for it.

A kernel may also keep a bounded *history* of recent events
(:class:`EventHistory`, installed by the daemon under :data:`EVENT_HISTORY`):
an in-kernel subscriber of every topic, at the lowest priority, whose ring a
new agent subscription can ask to be back-filled from (``backlog``,
``since_s``), so an operator who starts watching sees what just happened.
The back-fill goes through the same queue, depth and quota as live events and
happens in the subscribe call itself, so history and live delivery neither
overlap nor leave a gap.

Matching is cached per topic: the first publish on a topic computes its
subscriber list, later ones reuse it, and :meth:`EventBus.wants` lets hot
paths (IPC) skip building an event nobody listens to.  Subscriptions to an
exact topic (no wildcard) are indexed by topic and only invalidate that
topic's entry; a wildcard subscription invalidates the whole cache.  So a
colony of agents subscribing and unsubscribing to their own topics all the
time does not make every publish rescan every subscription.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aios.abi import limits
from aios.abi.errors import InvalidArgument
from aios.kernel.registry import Key


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    topic: str
    time_ns: int
    source: int  # agent id, 0 for the kernel
    data: dict[str, Any] = field(default_factory=dict)
    size: int = limits.EVENT_COST  # what queueing it costs a subscriber (bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "topic": self.topic,
            "time_ns": self.time_ns,
            "source": self.source,
            "data": self.data,
        }


def check_topic(topic: Any, pattern: bool = False) -> str:
    if not isinstance(topic, str) or not topic or len(topic) > limits.EVENT_TOPIC_MAX:
        raise InvalidArgument("topic must be a non-empty str of at most 256 characters")
    parts = topic.split(".")
    for i, p in enumerate(parts):
        if not p:
            raise InvalidArgument(f"empty segment in topic {topic!r}")
        if pattern:
            if p == "**" and i != len(parts) - 1:
                raise InvalidArgument("'**' may only end a pattern")
            if ("*" in p) and p not in ("*", "**"):
                raise InvalidArgument("'*' must be a whole segment")
        elif "*" in p:
            raise InvalidArgument("wildcards are for patterns, not topics")
    return topic


def matches(pattern: str, topic: str) -> bool:
    pp = pattern.split(".")
    tp = topic.split(".")
    for i, p in enumerate(pp):
        if p == "**":
            return len(tp) >= i
        if i >= len(tp):
            return False
        if p != "*" and p != tp[i]:
            return False
    return len(pp) == len(tp)


class Subscription:
    __slots__ = (
        "account",
        "callback",
        "delivered",
        "depth",
        "dropped",
        "filter",
        "final",
        "overflow",
        "owner",
        "pattern",
        "priority",
        "queue",
        "sid",
        "waiters",
    )

    def __init__(
        self,
        sid: int,
        pattern: str,
        owner: int,
        priority: int,
        depth: int,
        overflow: str,
        flt: dict[str, Any] | None,
        callback: Callable[[Event], None] | None,
    ) -> None:
        self.sid = sid
        self.pattern = pattern
        self.owner = owner
        self.priority = priority
        self.depth = depth
        self.overflow = overflow
        self.filter = flt
        self.callback = callback
        self.queue: deque[Event] = deque()
        self.dropped = 0
        self.delivered = 0
        self.waiters: Any = None  # the kernel parks EventRecv callers here
        self.account: Any = None  # charged per queued event: take(n) -> bool, give(n)
        self.final: dict[str, Any] | None = None  # statistics at unsubscribe

    def pop(self) -> Event:
        """Take the oldest queued event (its charge is refunded)."""
        ev = self.queue.popleft()
        if self.account is not None:
            self.account.give(ev.size)
        return ev

    def clear(self) -> None:
        """Drop every queued event (the subscription is closing)."""
        if self.account is not None and self.queue:
            self.account.give(sum(ev.size for ev in self.queue))
        self.queue.clear()

    def accepts(self, ev: Event) -> bool:
        f = self.filter
        if not f:
            return True
        data = ev.data
        return all(data.get(k) == v for k, v in f.items())

    def statistics(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "pattern": self.pattern,
            "priority": self.priority,
            "queued": len(self.queue),
            "depth": self.depth,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "overflow": self.overflow,
        }


OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")


class EventBus:
    def __init__(self, clock: Callable[[], int], on_queue: Callable[[Subscription], None] | None = None) -> None:
        self._clock = clock
        self._subs: dict[int, Subscription] = {}
        self._exact: dict[str, list[Subscription]] = {}  # topic -> subscriptions without wildcards
        self._wild: dict[int, Subscription] = {}  # sid -> subscriptions with a wildcard
        self._by_owner: dict[int, dict[int, Subscription]] = {}
        self._cache: dict[str, list[Subscription]] = {}
        self._next_sid = 1
        self.seq = 0
        self.published = 0
        # called after an event lands in an agent subscriber's queue (the kernel wakes readers)
        self.on_queue = on_queue

    def subscribe(
        self,
        pattern: str,
        *,
        owner: int = 0,
        priority: int = 0,
        depth: int = limits.EVENT_QUEUE_DEPTH,
        overflow: str = "drop_oldest",
        filter: dict[str, Any] | None = None,
        callback: Callable[[Event], None] | None = None,
    ) -> Subscription:
        check_topic(pattern, pattern=True)
        if type(priority) is not int or not -1000 <= priority <= 1000:
            raise InvalidArgument("priority must be an int in [-1000, 1000]")
        if type(depth) is not int or not 1 <= depth <= limits.EVENT_QUEUE_MAX:
            raise InvalidArgument(f"depth must be an int in [1, {limits.EVENT_QUEUE_MAX}]")
        if overflow not in OVERFLOW_POLICIES:
            raise InvalidArgument(f"overflow must be one of {OVERFLOW_POLICIES}")
        if filter is not None and (
            not isinstance(filter, dict) or not all(isinstance(k, str) for k in filter)
        ):
            raise InvalidArgument("filter must be a dict with str keys")
        sid = self._next_sid
        self._next_sid += 1
        sub = Subscription(sid, pattern, owner, priority, depth, overflow, filter, callback)
        self._subs[sid] = sub
        self._by_owner.setdefault(owner, {})[sid] = sub
        if "*" in pattern:
            self._wild[sid] = sub
            self._cache.clear()
        else:
            self._exact.setdefault(pattern, []).append(sub)
            self._cache.pop(pattern, None)
        return sub

    def unsubscribe(self, sid: int) -> Subscription | None:
        sub = self._subs.pop(sid, None)
        if sub is not None:
            mine = self._by_owner.get(sub.owner)
            if mine is not None:
                mine.pop(sid, None)
                if not mine:
                    del self._by_owner[sub.owner]
            if self._wild.pop(sid, None) is not None:
                self._cache.clear()
            else:
                same = self._exact[sub.pattern]
                same.remove(sub)
                if not same:
                    del self._exact[sub.pattern]
                self._cache.pop(sub.pattern, None)
            stats = sub.statistics()  # what it had queued, before the queue is dropped
            sub.clear()
            sub.final = stats
        return sub

    def get(self, sid: int) -> Subscription | None:
        return self._subs.get(sid)

    def _match(self, topic: str) -> list[Subscription]:
        subs = self._cache.get(topic)
        if subs is None:
            subs = [s for s in self._wild.values() if matches(s.pattern, topic)]
            subs += self._exact.get(topic, ())
            subs.sort(key=lambda s: (-s.priority, s.sid))  # ties: in subscription order
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[topic] = subs
        return subs

    def wants(self, topic: str) -> bool:
        return bool(self._match(topic))

    def publish(self, topic: str, data: dict[str, Any] | None = None, source: int = 0,
                extra: int = 0) -> Event | None:
        """Deliver to every matching subscriber; returns the event (None if nobody listens).
        ``extra``: bytes beyond the fixed cost that queueing it should charge."""
        subs = self._match(topic)
        self.seq += 1
        self.published += 1
        if not subs:
            return None
        ev = Event(self.seq, topic, self._clock(), source, data or {}, limits.EVENT_COST + extra)
        for s in subs:
            if not s.accepts(ev):
                continue
            if s.callback is not None:
                s.delivered += 1
                s.callback(ev)
                continue
            q = s.queue
            if len(q) >= s.depth:
                s.dropped += 1
                if s.overflow == "drop_newest":
                    continue
                s.pop()
            acct = s.account
            if acct is not None and not acct.take(ev.size) and not self._make_room(s, ev):
                continue
            q.append(ev)
            s.delivered += 1
            if self.on_queue is not None:
                self.on_queue(s)
        return ev

    @staticmethod
    def _make_room(s: Subscription, ev: Event) -> bool:
        """``ev`` is over the subscriber's quota: its overflow policy decides, as for a
        full queue.  True once ``ev`` is charged (older events dropped to pay for it)."""
        s.dropped += 1
        if s.overflow == "drop_newest":
            return False
        while s.queue:
            s.pop()  # the oldest goes (counted: ev itself is then not lost after all)
            if s.account.take(ev.size):
                return True
            s.dropped += 1
        return False

    def subscriptions(self, owner: int | None = None) -> list[Subscription]:
        if owner is None:
            return list(self._subs.values())
        return list(self._by_owner.get(owner, {}).values())

    def statistics(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "subscriptions": len(self._subs),
            "dropped": sum(s.dropped for s in self._subs.values()),
        }

    def backfill(self, s: Subscription, events: list[Event]) -> int:
        """Queue past ``events`` on a new agent subscription, as publish would have
        (its filter, depth and quota apply); returns how many were queued."""
        queued = 0
        for ev in events[-s.depth:]:
            if not matches(s.pattern, ev.topic) or not s.accepts(ev):
                continue
            if s.account is not None and not s.account.take(ev.size):
                s.dropped += 1
                continue
            s.queue.append(ev)
            s.delivered += 1
            queued += 1
        if queued and self.on_queue is not None:
            self.on_queue(s)
        return queued


class EventHistory:
    """The most recent events of a kernel (every topic), oldest first."""

    __slots__ = ("_now", "ring", "sub")

    def __init__(self, bus: EventBus, depth: int = limits.EVENT_HISTORY_DEPTH) -> None:
        self.ring: deque[Event] = deque(maxlen=depth)
        self._now = bus._clock
        self.sub = bus.subscribe("**", priority=-1000, callback=self.ring.append)

    def recent(self, since_s: float | None, backlog: int | None) -> list[Event]:
        """Events of the last ``since_s`` seconds (None: all kept), at most the last ``backlog``."""
        evs = list(self.ring)
        if since_s is not None:
            cutoff = self._now() - int(since_s * 1e9)
            evs = [e for e in evs if e.time_ns >= cutoff]
        if backlog is not None:
            evs = evs[len(evs) - backlog:] if backlog < len(evs) else evs
        return evs


EVENT_HISTORY: Key[EventHistory] = Key("event_history")
