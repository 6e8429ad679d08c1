"""Device queues: fair and deadline ordering of requests to a scarce device.

Design
------
An LLM endpoint with K concurrent slots, or a GPU, is shared by many agents.
A :class:`DeviceQueue` decides which queued request takes the next free slot
with the same policy that decides which agent takes the CPU.  Every client is a
:class:`~aios.kernel.scheduler.SchedEntity` of a private
:class:`~aios.kernel.scheduler.Scheduler` (with ``ncpus = K``, so deadline
admission allows 0.95 x K of the device).  A request's *cost* (1 per request,
its token count, or a price: the driver decides) plays the part of CPU time:
a cost unit stands for ``unit_ns`` of one slot's time (the driver's nominal
figure).  When a request is dispatched its client is picked, charged the cost and put
back, so clients get device service in proportion to their weights (EEVDF),
and deadline clients (runtime = cost units per period) are served first by
EDF and throttled by CBS when they overrun.  When the driver reports the
actual cost at completion, the difference is charged with the client's next
dispatch, so estimates cannot be gamed.

Budgets come from capability quotas: a client may spend at most ``limit`` cost
units per ``window_ns``.  A client whose next request would exceed its budget
sleeps in the private scheduler until its window ends (``next_event_ns``
tells the kernel when), and its requests stay queued.  Backpressure: each
client has at most ``max_queued`` requests waiting; :meth:`submit` raises
``WouldBlock`` beyond that (the nowait form; the kernel's blocking form parks
the agent until :meth:`has_room` turns true).

Pure: no I/O, no threads; the device driver calls :meth:`dispatch` when a
slot may be free and :meth:`complete` when a request finishes.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from aios.errors import InvalidArgument, NoSuchObject, WouldBlock
from aios.kernel.clock import Clock
from aios.kernel.scheduler import NICE_0_LOAD, SchedEntity, Scheduler

DEFAULT_MAX_QUEUED: Final = 64
DEFAULT_UNIT_NS: Final = 1_000_000  # nominal device time of one cost unit on one slot
MAX_SLOTS: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class Request:
    rid: int
    key: int
    cost: int
    payload: object
    submitted_ns: int


@dataclass(slots=True)
class _Client:
    ent: SchedEntity
    queue: deque[Request] = field(default_factory=deque)
    max_queued: int = DEFAULT_MAX_QUEUED
    limit: int | None = None  # budget: cost units per window
    window_ns: int = 0
    window_start: int = 0
    used: int = 0
    parked_until: int | None = None  # budget exhausted until then
    debt: int = 0  # actual - estimated cost, charged with the next dispatch
    served: int = 0  # cost dispatched
    completed: int = 0
    waits: int = 0  # times parked on its budget


class DeviceQueue:
    """Orders requests from many agents onto ``slots`` concurrent device slots."""

    def __init__(
        self,
        clock: Clock,
        slots: int,
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        unit_ns: int = DEFAULT_UNIT_NS,
    ) -> None:
        if not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise InvalidArgument(f"slots must be in [1, {MAX_SLOTS}]")
        if not isinstance(max_queued, int) or max_queued < 1:
            raise InvalidArgument("max_queued must be >= 1")
        if not isinstance(unit_ns, int) or unit_ns < 1:
            raise InvalidArgument("unit_ns must be >= 1")
        self.unit_ns = unit_ns
        self._clock = clock
        self.slots = slots
        self.max_queued = max_queued
        self._sched = Scheduler(clock, ncpus=slots)
        self._clients: dict[int, _Client] = {}
        self._inflight: dict[int, Request] = {}
        self._rids = itertools.count(1)
        self._parked: list[tuple[int, int]] = []  # (window end, key)

    # -- clients ------------------------------------------------------------------

    def _client(self, key: int) -> _Client:
        c = self._clients.get(key)
        if c is None:
            c = _Client(self._sched.new_entity(key, None), max_queued=self.max_queued)
            self._clients[key] = c
        return c

    def _known(self, key: int) -> _Client:
        c = self._clients.get(key)
        if c is None:
            raise NoSuchObject(f"no client {key} on this device", key=key)
        return c

    def set_weight(self, key: int, weight: int = NICE_0_LOAD) -> None:
        self._sched.set_fair(self._client(key).ent, weight=weight)

    def set_deadline(self, key: int, *, runtime: int, deadline_ns: int, period_ns: int) -> None:
        """Reserve ``runtime`` cost units every ``period_ns`` (EDF, admission-checked).

        The reservation is converted to device time (``runtime * unit_ns``), which
        must fit in ``deadline_ns``; admission allows 0.95 x slots of the device."""
        if not isinstance(runtime, int) or runtime < 1:
            raise InvalidArgument("runtime must be >= 1 cost unit")
        self._sched.set_deadline(
            self._client(key).ent,
            runtime_ns=runtime * self.unit_ns,
            deadline_ns=deadline_ns,
            period_ns=period_ns,
        )

    def set_budget(self, key: int, limit: int | None, window_ns: int = 0) -> None:
        """At most ``limit`` cost units per ``window_ns`` (None: unlimited)."""
        if limit is not None:
            if not isinstance(limit, int) or limit < 1:
                raise InvalidArgument("budget limit must be >= 1")
            if not isinstance(window_ns, int) or window_ns < 1:
                raise InvalidArgument("budget window must be >= 1 ns")
        c = self._client(key)
        c.limit = limit
        c.window_ns = window_ns
        c.window_start = self._clock.now_ns()
        c.used = 0
        self._unpark(c)

    def set_max_queued(self, key: int, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise InvalidArgument("max_queued must be >= 1")
        self._client(key).max_queued = n

    def remove_client(self, key: int) -> list[Request]:
        """Forget ``key``; returns its queued requests (dropped).  In-flight ones finish."""
        c = self._clients.pop(key, None)
        if c is None:
            return []
        self._sched.remove(c.ent)
        return list(c.queue)

    # -- requests ------------------------------------------------------------------

    def has_room(self, key: int) -> bool:
        c = self._clients.get(key)
        return c is None or len(c.queue) < c.max_queued

    def submit(self, key: int, cost: int = 1, payload: object = None) -> int:
        """Queue a request; returns its id.  ``WouldBlock`` when the client's queue is full."""
        if not isinstance(cost, int) or isinstance(cost, bool) or cost < 1:
            raise InvalidArgument("cost must be an int >= 1", cost=cost)
        c = self._client(key)
        if c.limit is not None and cost > c.limit:
            raise InvalidArgument("cost exceeds the whole budget of one window", cost=cost)
        if len(c.queue) >= c.max_queued:
            raise WouldBlock("device queue full for this agent", key=key)
        req = Request(next(self._rids), key, cost, payload, self._clock.now_ns())
        c.queue.append(req)
        if len(c.queue) == 1 and c.parked_until is None:
            self._sched.wake(c.ent)
        return req.rid

    def cancel(self, rid: int) -> bool:
        """Drop a queued (not yet dispatched) request."""
        for c in self._clients.values():
            for r in c.queue:
                if r.rid == rid:
                    c.queue.remove(r)
                    if not c.queue:
                        self._sched.block(c.ent)
                    return True
        return False

    def _unpark(self, c: _Client) -> None:
        if c.parked_until is not None:
            c.parked_until = None
            if c.queue:
                self._sched.wake(c.ent)

    def _roll_window(self, c: _Client, now: int) -> None:
        if c.limit is not None and now >= c.window_start + c.window_ns:
            c.window_start += (now - c.window_start) // c.window_ns * c.window_ns
            c.used = 0

    def dispatch(self) -> list[Request]:
        """Fill free slots; returns the requests to start now, in order."""
        now = self._clock.now_ns()
        while self._parked and self._parked[0][0] <= now:
            _, key = heapq.heappop(self._parked)
            c = self._clients.get(key)
            if c is not None and c.parked_until is not None and c.parked_until <= now:
                self._roll_window(c, now)
                self._unpark(c)
        out: list[Request] = []
        sched = self._sched
        while len(self._inflight) < self.slots:
            ent = sched.pick()
            if ent is None:
                break
            c = self._clients[ent.key]
            req = c.queue[0]
            self._roll_window(c, now)
            if c.limit is not None and c.used + req.cost > c.limit:
                sched.put_prev(ent)
                sched.block(ent)
                c.parked_until = c.window_start + c.window_ns
                c.waits += 1
                heapq.heappush(self._parked, (c.parked_until, ent.key))
                continue
            c.queue.popleft()
            c.used += req.cost
            c.served += req.cost
            charge = max(0, req.cost + c.debt)
            c.debt = min(0, req.cost + c.debt)
            sched.charge(ent, charge * self.unit_ns)
            sched.put_prev(ent)
            if not c.queue:
                sched.block(ent)
            self._inflight[req.rid] = req
            out.append(req)
        return out

    def complete(self, rid: int, actual_cost: int | None = None) -> Request:
        """A dispatched request finished; ``actual_cost`` corrects the estimate."""
        req = self._inflight.pop(rid, None)
        if req is None:
            raise NoSuchObject(f"request {rid} is not in flight", rid=rid)
        c = self._clients.get(req.key)
        if c is not None:
            c.completed += 1
            if actual_cost is not None:
                if not isinstance(actual_cost, int) or actual_cost < 0:
                    raise InvalidArgument("actual_cost must be an int >= 0")
                c.debt += actual_cost - req.cost
                c.used += actual_cost - req.cost
                c.served += actual_cost - req.cost
        return req

    # -- observation ------------------------------------------------------------------

    def next_event_ns(self) -> int | None:
        """When a budget window or a deadline replenishment next frees a client."""
        h = self._parked
        while h:
            t, k = h[0]
            c = self._clients.get(k)
            if c is not None and c.parked_until == t:
                break
            heapq.heappop(h)
        times = [h[0][0]] if h else []
        ev = self._sched.next_event_ns()
        if ev is not None:
            times.append(ev)
        return min(times) if times else None

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def queued(self, key: int | None = None) -> int:
        if key is None:
            return sum(len(c.queue) for c in self._clients.values())
        c = self._clients.get(key)
        return len(c.queue) if c is not None else 0

    def stats(self, key: int) -> dict[str, int | float | str]:
        c = self._known(key)
        out = self._sched.stats(c.ent)
        out.update(
            queued=len(c.queue),
            served=c.served,
            completed=c.completed,
            budget_limit=c.limit if c.limit is not None else -1,
            budget_used=c.used,
            budget_waits=c.waits,
        )
        return out
