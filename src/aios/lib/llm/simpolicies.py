"""Baseline request schedulers for a model device, to measure the kernel's against.

Each has the interface the simulation harness (:mod:`aios.lib.llm.simrun`)
drives and the kernel's ``DeviceQueue`` has: ``submit``, ``dispatch(fits)``
returning what to start (and to preempt), ``progress``, ``complete``,
``suspend``, ``set_weight``, ``set_budget``, ``next_event_ns``.

* :class:`FifoPolicy`: every request goes to the engine at once, which serves
  them first come, first served with continuous batching (vLLM's default; what
  an agent framework that calls an endpoint directly gets).
* :class:`BatchedFifoPolicy`: Rutgers AIOS's scheduler: requests are collected
  for an interval (1 s) and the batch is then handed to the engine in arrival
  order.
* :class:`RoundRobinPolicy`: one request per client in turn, whenever the
  engine can take one (request-level fairness: a client of long requests gets
  more tokens).
* :class:`VtcPolicy`: the Virtual Token Counter (Sheng et al., OSDI 2024),
  weighted: least counter first, prompts charged at dispatch, generated tokens
  as reported, counters lifted on return from idle.  No deadlines, budgets,
  classes or programs: the published algorithm alone.

None of them enforces budgets: ``set_budget`` is recorded and ignored, so the
harness can count the overruns they allow.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aios.abi.errors import NoSuchObject


@dataclass(frozen=True, slots=True)
class Queued:
    rid: int
    key: int
    prompt_tokens: int
    max_tokens: int
    seq: int


@dataclass(frozen=True, slots=True)
class Decision:
    start: tuple[Queued, ...] = ()
    preempt: tuple[int, ...] = ()


Fits = Callable[[Any], bool]


class _Base:
    name = "base"

    def __init__(self) -> None:
        self._rids = itertools.count(1)
        self._seq = itertools.count()
        self.decisions = 0

    def _new(self, key: int, prompt_tokens: int, max_tokens: int) -> Queued:
        return Queued(next(self._rids), key, prompt_tokens, max_tokens, next(self._seq))

    def set_weight(self, key: int, weight: int = 1024) -> None:
        pass

    def set_budget(self, key: int, *, tokens: int | None = None, cost: int | None = None) -> None:
        pass

    def progress(self, rid: int, output_tokens: int) -> int:
        return 0

    def complete(
        self, rid: int, output_tokens: int | None = None, prompt_tokens: int | None = None
    ) -> object:
        return None

    def suspend(self, rid: int, output_tokens: int, text: str = "") -> object:
        raise NoSuchObject("this policy never preempts")

    def next_event_ns(self) -> int | None:
        return None


class FifoPolicy(_Base):
    """Straight to the engine: its FCFS queue and continuous batching decide."""

    name = "fifo"

    def __init__(self) -> None:
        super().__init__()
        self._q: list[Queued] = []

    def submit(self, key: int, prompt_tokens: int, max_tokens: int, **_: Any) -> int:
        q = self._new(key, prompt_tokens, max_tokens)
        self._q.append(q)
        return q.rid

    def dispatch(self, fits: Fits | None = None, limit: int | None = None) -> Decision:
        out, self._q = tuple(self._q), []
        self.decisions += len(out)
        return Decision(out)


class BatchedFifoPolicy(FifoPolicy):
    """Collect for ``interval_ns``, then hand the batch to the engine in order."""

    name = "batched_fifo"

    def __init__(self, now: Callable[[], int], interval_ns: int = 1_000_000_000) -> None:
        super().__init__()
        self._now = now
        self.interval_ns = interval_ns
        self._next = interval_ns

    def dispatch(self, fits: Fits | None = None, limit: int | None = None) -> Decision:
        t = self._now()
        if t < self._next:
            return Decision()
        self._next = (t // self.interval_ns + 1) * self.interval_ns
        return super().dispatch(fits)

    def next_event_ns(self) -> int | None:
        return self._next if self._q else None


class RoundRobinPolicy(_Base):
    """One request per client in turn, when the engine has room."""

    name = "round_robin"

    def __init__(self) -> None:
        super().__init__()
        self._queues: dict[int, deque[Queued]] = {}
        self._ring: deque[int] = deque()

    def submit(self, key: int, prompt_tokens: int, max_tokens: int, **_: Any) -> int:
        q = self._new(key, prompt_tokens, max_tokens)
        dq = self._queues.setdefault(key, deque())
        if not dq:
            self._ring.append(key)
        dq.append(q)
        return q.rid

    def dispatch(self, fits: Fits | None = None, limit: int | None = None) -> Decision:
        out: list[Queued] = []
        tried = 0
        while self._ring and tried < len(self._ring) and (limit is None or len(out) < limit):
            key = self._ring[0]
            head = self._queues[key][0]
            if fits is not None and not fits(head):
                self._ring.rotate(-1)
                tried += 1
                continue
            self._queues[key].popleft()
            out.append(head)
            tried = 0
            self._ring.popleft()
            if self._queues[key]:
                self._ring.append(key)
        self.decisions += len(out)
        return Decision(tuple(out))


@dataclass(slots=True)
class _VtcClient:
    weight: int = 1024
    counter: float = 0.0
    queue: deque[Queued] = field(default_factory=deque)


class VtcPolicy(_Base):
    """Weighted Virtual Token Counter: least counter first, lifted on return."""

    name = "vtc"

    def __init__(self, input_price: int = 1, output_price: int = 2) -> None:
        super().__init__()
        self.wp, self.wq = input_price, output_price
        self._c: dict[int, _VtcClient] = {}
        self._flight: dict[int, tuple[int, int]] = {}  # rid -> (key, output charged)
        self._last_left = 0.0

    def _cl(self, key: int) -> _VtcClient:
        return self._c.setdefault(key, _VtcClient())

    def set_weight(self, key: int, weight: int = 1024) -> None:
        self._cl(key).weight = weight

    def submit(self, key: int, prompt_tokens: int, max_tokens: int, **_: Any) -> int:
        c = self._cl(key)
        if not c.queue:
            waiting = [o.counter for k, o in self._c.items() if o.queue and k != key]
            c.counter = max(c.counter, min(waiting) if waiting else self._last_left)
        q = self._new(key, prompt_tokens, max_tokens)
        c.queue.append(q)
        return q.rid

    def dispatch(self, fits: Fits | None = None, limit: int | None = None) -> Decision:
        out: list[Queued] = []
        while limit is None or len(out) < limit:
            cands = sorted((o.counter, k) for k, o in self._c.items() if o.queue)
            pick: Queued | None = None
            for _, k in cands:
                head = self._c[k].queue[0]
                if fits is None or fits(head):
                    pick = head
                    break
            if pick is None:
                break
            c = self._c[pick.key]
            c.queue.popleft()
            if not c.queue:
                self._last_left = c.counter
            c.counter += self.wp * pick.prompt_tokens * 1024 / c.weight
            self._flight[pick.rid] = (pick.key, 0)
            out.append(pick)
        self.decisions += len(out)
        return Decision(tuple(out))

    def progress(self, rid: int, output_tokens: int) -> int:
        f = self._flight.get(rid)
        if f is None:
            return 0
        key, done = f
        delta = output_tokens - done
        if delta > 0:
            c = self._c[key]
            c.counter += self.wq * delta * 1024 / c.weight
            self._flight[rid] = (key, output_tokens)
        return max(delta, 0)

    def complete(
        self, rid: int, output_tokens: int | None = None, prompt_tokens: int | None = None
    ) -> object:
        if output_tokens is not None:
            self.progress(rid, output_tokens)
        self._flight.pop(rid, None)
        return None
