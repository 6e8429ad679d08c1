"""Device queues: who gets the next slot of a language model (or any token device).

Design
------
A model endpoint with K concurrent slots is the scarce device of an agent OS, as
the CPU is of a classical one.  A :class:`DeviceQueue` holds the requests that
agents (*clients*, by key) have made of one device and decides, whenever the
driver says a slot may be free, which of them start.  It is pure: no I/O, no
threads, time from an injected clock.  The driver tells it what happened
(:meth:`progress` as tokens are generated, :meth:`complete`, :meth:`suspend`)
and it answers with decisions (:meth:`dispatch`).

**Token fairness (VTC).**  Each client has a *virtual token counter*: every
token it is served is priced (``Pricing``: prompt tokens cost less than
generated ones, as they do in GPU time and on every price list) and added to
the counter scaled by ``1024 / weight``, where the weight comes from the CPU
scheduler's table (nice 0 = 1024), with the integer remainder carried so no
fraction is lost.  Prompts are charged at dispatch, generated tokens as they
are reported.  The next slot goes to the client with the smallest counter
(Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024).  A client
that comes back from idle has its counter *lifted* to the smallest counter of
the clients still waiting (or to the counter of the last client that left, when
none waits), so idling banks no credit and a returning client gets no burst.
Two backlogged clients of equal weight then differ in priced service by at
most twice the largest request's cost.

**Latency without share: classes, programs, a lag window.**  Among clients
whose counters are within ``lag_window`` of the smallest, the request picked
is the one with the best ``(class, program level, counter, arrival)``.  The
class (``INTERACTIVE`` < ``NORMAL`` < ``BATCH``) and the program level change
*who goes first*, never the long-run share: a client that jumps ahead is
charged, and after ``lag_window`` cost units it waits its turn (as the CPU
scheduler's semantic hints shorten slices, not raise weights).  The *program
level* is least-attained-service for multi-call agent programs (after Autellix,
2025): a request that belongs to a program (a DAG of calls) is ranked by the
size known of its whole program, the service it has had plus the calls it has
queued, in log2 buckets of ``program_quantum``; within a level, the older
program goes first.  So a one-call program is not stuck behind the rest of a
20-call fan-out, while an agent's programs of similar size finish one after
another instead of all advancing together (least attained service at a fine
grain is processor sharing, which stretches every program of a batch of equal
ones: the benchmark measured 54 s against 39 s mean completion at overload).
**Anti-starvation**: a request that has waited
``starve_factor`` times its estimated service time (or ``starve_ns`` without a
service model) is promoted above every class, so no request waits unboundedly
behind a stream of short programs.

**Deadlines (EDF with admission control).**  A request may carry an absolute
deadline.  It is admitted only if the device's :class:`ServiceModel` says it
can finish in time alone *and* the deadline work already admitted, taken in
deadline order, fits in ``deadline_share`` of the device up to each deadline
(a demand-bound test); otherwise ``Busy`` at once, with the reason.  Admitted
deadline requests go before every fair request, earliest deadline first; when
no slot is free, the weakest fair request in flight is *preempted* (the
driver takes it off the device and hands back a :class:`Snapshot`).

**Snapshot and resume.**  :meth:`suspend` puts an in-flight request back at
the head of its client's queue with the text generated so far.  Charges are a
high-water mark per request (prompt once; generated tokens up to the highest
count reported), so the prompt and snapshot the device re-reads to resume are
never charged again: they are the device's cost, counted as ``recomputed``.

**Hard budgets.**  ``set_budget(key, tokens=, cost=)`` (what the kernel
derives from the client's capability chain): a request reserves its worst case
(prompt + ``max_tokens``) at :meth:`submit`; if that would exceed what is left
the request is refused with ``QuotaExceeded`` before it is ever sent, and
nothing changes.  Reservations turn into charges as tokens arrive and the rest
is released at completion, so a budget can never be overrun.

**Backpressure and work conservation.**  At most ``max_queued`` requests per
client and ``max_total`` per device wait; :meth:`submit` raises ``WouldBlock``
beyond (the kernel's blocking form parks the agent until :meth:`has_room`).
:meth:`dispatch` fills every free slot while any queued request *fits* (the
driver's predicate: KV room, context length): a client whose request does not
fit is passed over, not waited for.

**Priority inheritance.**  :meth:`lend` records that a client waits on another
(for a reply); the waiter's class is lent to the owner's requests (and on,
transitively, to whom the owner waits on) until :meth:`unlend`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Final

from aios.abi.errors import Busy, InvalidArgument, NoSuchObject, QuotaExceeded, WouldBlock
from aios.kernel.clock import Clock
from aios.kernel.sched.fair import NICE_0_LOAD, WEIGHT_MAX, WEIGHT_MIN

DEFAULT_MAX_QUEUED: Final = 64
DEFAULT_MAX_TOTAL: Final = 1 << 16
MAX_SLOTS: Final = 1 << 16
MAX_LEND_DEPTH: Final = 16
CANCELLED_MEMORY: Final = 4096  # late reports for this many cancelled requests are ignored
AGED: Final = -1  # effective class of a starving request: above every class


class Priority(IntEnum):
    """A request's class; smaller is stronger.  Changes latency, not share."""

    INTERACTIVE = 0
    NORMAL = 1
    BATCH = 2


@dataclass(frozen=True, slots=True)
class Pricing:
    """Cost units per token: what counters and cost budgets are charged."""

    input: int = 1
    output: int = 2

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and v >= 0 for v in (self.input, self.output)):
            raise InvalidArgument("token prices must be ints >= 0")
        if self.input + self.output == 0:
            raise InvalidArgument("at least one token price must be > 0")

    def cost(self, prompt: int, output: int) -> int:
        return self.input * prompt + self.output * output


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """The device's nominal speed (the driver's figures), for deadlines and aging."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float  # one sequence, in a full batch (the slow case)
    device_tokens_per_s: float  # all slots together
    deadline_share: float = 0.5  # at most this much of the device for deadline work

    def __post_init__(self) -> None:
        rates = (self.prefill_tokens_per_s, self.decode_tokens_per_s, self.device_tokens_per_s)
        if not all(r > 0 for r in rates):
            raise InvalidArgument("service rates must be > 0")
        if not 0.0 < self.deadline_share <= 0.95:
            raise InvalidArgument("deadline_share must be in (0, 0.95]")

    def latency_ns(self, prompt: int, output: int) -> int:
        """Time for one request alone: its prompt, then its tokens one by one."""
        return int(1e9 * (prompt / self.prefill_tokens_per_s + output / self.decode_tokens_per_s))

    def work_ns(self, prompt: int, output: int) -> int:
        """Device time the request occupies, shared among all slots."""
        return int(1e9 * (prompt / self.prefill_tokens_per_s + output / self.device_tokens_per_s))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An interrupted generation: the text so far and how many tokens it took."""

    text: str
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Request:
    rid: int
    key: int
    prompt_tokens: int
    max_tokens: int
    priority: Priority
    deadline_ns: int | None
    program: int | None
    payload: object
    submitted_ns: int
    seq: int  # arrival order (ties)
    starve_at: int  # from then on it is promoted above every class (anti-starvation)
    resume: Snapshot | None = None

    @property
    def remaining_tokens(self) -> int:
        """Tokens still to generate (max_tokens less what a snapshot holds)."""
        return self.max_tokens - (self.resume.output_tokens if self.resume else 0)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What the driver must do now: preempt these first, then start these."""

    start: tuple[Request, ...] = ()
    preempt: tuple[int, ...] = ()


Fits = Callable[[Request], bool]


@dataclass(slots=True)
class _Flight:
    req: Request
    prompt_charged: bool = False
    out_charged: int = 0  # generated tokens charged (high-water mark)
    started_ns: int = 0


class _ClientQueue:
    """A client's waiting fair requests: one FIFO per (class, program), so the
    candidates for its next dispatch are the few heads, not the whole queue."""

    __slots__ = ("_n", "_subs")

    def __init__(self) -> None:
        self._subs: dict[tuple[int, int], deque[Request]] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[Request]:
        for q in self._subs.values():
            yield from q

    @staticmethod
    def _sub(r: Request) -> tuple[int, int]:
        return (int(r.priority), -1 if r.program is None else r.program)

    def push(self, r: Request, front: bool = False) -> None:
        q = self._subs.setdefault(self._sub(r), deque())
        if front:
            q.appendleft(r)
        else:
            q.append(r)
        self._n += 1

    def remove(self, r: Request) -> None:
        k = self._sub(r)
        q = self._subs[k]
        if q[0] is r:
            q.popleft()
        else:
            q.remove(r)
        if not q:
            del self._subs[k]
        self._n -= 1

    def heads(self) -> list[Request]:
        return [q[0] for q in self._subs.values()]


@dataclass(slots=True)
class _Client:
    key: int
    weight: int = NICE_0_LOAD
    base: Priority = Priority.NORMAL
    counter: int = 0
    rem: int = 0
    queue: _ClientQueue = field(default_factory=_ClientQueue)  # fair requests waiting
    n_deadline: int = 0  # deadline requests waiting (in the EDF heap)
    max_queued: int = DEFAULT_MAX_QUEUED
    token_limit: int | None = None
    cost_limit: int | None = None
    tokens_used: int = 0
    cost_used: int = 0
    tokens_reserved: int = 0
    cost_reserved: int = 0
    donors: set[int] = field(default_factory=set)  # clients waiting on this one
    heap_token: int = 0
    # statistics
    served_cost: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    dispatched: int = 0
    completed: int = 0
    refused: int = 0
    preempted: int = 0
    wait_ns: int = 0


class DeviceQueue:
    """Orders requests from many clients onto ``slots`` concurrent device slots."""

    def __init__(
        self,
        clock: Clock,
        slots: int,
        *,
        pricing: Pricing | None = None,
        service: ServiceModel | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_total: int = DEFAULT_MAX_TOTAL,
        lag_window: int = 2048,
        program_quantum: int = 16_384,
        starve_factor: float = 8.0,
        starve_ns: int = 30_000_000_000,
        preempt: bool = True,
        preempt_margin_ns: int = 1_000_000_000,
    ) -> None:
        if not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise InvalidArgument(f"slots must be in [1, {MAX_SLOTS}]")
        for name, v in (("max_queued", max_queued), ("max_total", max_total),
                        ("program_quantum", program_quantum), ("starve_ns", starve_ns)):
            if not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"{name} must be an int >= 1")
        if not isinstance(lag_window, int) or lag_window < 0:
            raise InvalidArgument("lag_window must be an int >= 0")
        if not starve_factor > 0:
            raise InvalidArgument("starve_factor must be > 0")
        self._clock = clock
        self.slots = slots
        self.pricing = pricing or Pricing()
        self.service = service
        self.max_queued = max_queued
        self.max_total = max_total
        self.lag_window = lag_window
        self.program_quantum = program_quantum
        self.starve_factor = starve_factor
        self.starve_ns = starve_ns
        self.preempt_enabled = preempt
        self.preempt_margin_ns = preempt_margin_ns
        self._clients: dict[int, _Client] = {}
        self._flight: dict[int, _Flight] = {}
        self._ready: list[tuple[int, int, int]] = []  # (counter, token, key): lazy heap
        self._edf: list[tuple[int, int, Request]] = []  # (deadline, seq, request)
        self._edf_live: dict[int, Request] = {}
        self._preempting: dict[int, _Flight] = {}  # victims the driver has yet to suspend
        self._queued: dict[int, Request] = {}  # fair requests waiting, by id
        self._programs: dict[tuple[int, int], int] = {}  # (key, program) -> attained cost
        self._program_seq: dict[tuple[int, int], int] = {}  # (key, program) -> first arrival
        self._pending: dict[tuple[int, int], int] = {}  # (key, program) -> cost of calls queued
        self._cancelled: deque[int] = deque(maxlen=CANCELLED_MEMORY)
        self._cancelled_set: set[int] = set()
        self._rids = itertools.count(1)
        self._seqs = itertools.count()
        self._tokens = itertools.count()
        self._last_left = 0  # counter of the last client whose queue emptied
        self._queued_total = 0
        self.decisions = 0
        self.preemptions = 0
        self.recomputed_tokens = 0

    # -- clients -------------------------------------------------------------------

    def _client(self, key: int) -> _Client:
        c = self._clients.get(key)
        if c is None:
            c = _Client(key, max_queued=self.max_queued)
            self._clients[key] = c
        return c

    def _known(self, key: int) -> _Client:
        c = self._clients.get(key)
        if c is None:
            raise NoSuchObject(f"no client {key} on this device", key=key)
        return c

    def set_weight(self, key: int, weight: int = NICE_0_LOAD) -> None:
        if not isinstance(weight, int) or isinstance(weight, bool) or not (
            WEIGHT_MIN <= weight <= WEIGHT_MAX
        ):
            raise InvalidArgument(f"weight must be an int in [{WEIGHT_MIN}, {WEIGHT_MAX}]")
        self._client(key).weight = weight

    def set_class(self, key: int, priority: Priority) -> None:
        """The class of ``key``'s requests that name none (and what it lends)."""
        self._client(key).base = Priority(priority)

    def set_budget(self, key: int, *, tokens: int | None = None, cost: int | None = None) -> None:
        """Hard limits from now on (None: unlimited); reservations in flight are kept."""
        for name, v in (("tokens", tokens), ("cost", cost)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidArgument(f"budget {name} must be an int >= 0 or None")
        c = self._client(key)
        c.token_limit, c.cost_limit = tokens, cost
        c.tokens_used = c.cost_used = 0

    def set_max_queued(self, key: int, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise InvalidArgument("max_queued must be >= 1")
        self._client(key).max_queued = n

    def remove_client(self, key: int) -> list[Request]:
        """Forget ``key``: its queued requests are returned (dropped) and its
        requests in flight cancelled (later reports for them are ignored)."""
        c = self._clients.get(key)
        if c is None:
            return []
        dropped = list(c.queue) + [r for r in self._edf_live.values() if r.key == key]
        for r in dropped:
            self._drop_queued(r)
        for rid in [rid for rid, f in self._flight.items() if f.req.key == key]:
            self.cancel(rid)
        for other in self._clients.values():
            other.donors.discard(key)
        for pk in [pk for pk in self._program_seq if pk[0] == key]:
            self._programs.pop(pk, None)
            del self._program_seq[pk]
        del self._clients[key]
        return dropped

    # -- priority inheritance --------------------------------------------------------

    def lend(self, waiter: int, owner: int) -> None:
        """``waiter`` waits on ``owner``: lend it the waiter's class."""
        if waiter == owner:
            raise InvalidArgument("a client cannot wait on itself")
        self._client(waiter)
        self._client(owner).donors.add(waiter)

    def unlend(self, waiter: int, owner: int) -> None:
        c = self._clients.get(owner)
        if c is not None:
            c.donors.discard(waiter)

    def effective_class(self, key: int) -> Priority:
        """The strongest of ``key``'s own class and those lent to it (transitively)."""
        c = self._known(key)
        best = c.base
        seen = {key}
        frontier = list(c.donors)
        depth = 0
        while frontier and depth < MAX_LEND_DEPTH:
            nxt: list[int] = []
            for k in frontier:
                if k in seen:
                    continue
                seen.add(k)
                d = self._clients.get(k)
                if d is None:
                    continue
                best = min(best, d.base)
                nxt.extend(d.donors)
            frontier = nxt
            depth += 1
        return best

    # -- submission ------------------------------------------------------------------

    def has_room(self, key: int) -> bool:
        c = self._clients.get(key)
        queued = (len(c.queue) + c.n_deadline) if c else 0
        limit = c.max_queued if c else self.max_queued
        return queued < limit and self._queued_total < self.max_total

    def submit(
        self,
        key: int,
        prompt_tokens: int,
        max_tokens: int,
        *,
        priority: int | None = None,
        deadline_ns: int | None = None,
        program: int | None = None,
        payload: object = None,
    ) -> int:
        """Queue a request; returns its id.

        Refused, with nothing changed: ``InvalidArgument`` (bad numbers),
        ``QuotaExceeded`` (the budget cannot cover prompt + max_tokens),
        ``Busy`` (the deadline cannot be met), ``WouldBlock`` (queue full)."""
        for name, v in (("prompt_tokens", prompt_tokens), ("max_tokens", max_tokens)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidArgument(f"{name} must be an int >= 0", **{name: v})
        if priority is not None and priority not in tuple(Priority):
            raise InvalidArgument("priority must be a Priority class", priority=priority)
        if prompt_tokens + max_tokens < 1:
            raise InvalidArgument("a request must process at least one token")
        now = self._clock.now_ns()
        c = self._client(key)
        if not self.has_room(key):
            raise WouldBlock("device queue full for this agent", key=key)
        self._check_budget(c, prompt_tokens, max_tokens)
        if deadline_ns is not None:
            self._admit_deadline(c, prompt_tokens, max_tokens, deadline_ns, now)
        prio = c.base if priority is None else Priority(priority)
        sm = self.service
        patience = (int(self.starve_factor * sm.latency_ns(prompt_tokens, max_tokens))
                    if sm is not None else self.starve_ns)
        req = Request(next(self._rids), key, prompt_tokens, max_tokens, prio, deadline_ns,
                      program, payload, now, next(self._seqs), now + patience)
        if program is not None:
            self._program_seq.setdefault((key, program), req.seq)
        c.tokens_reserved += prompt_tokens + max_tokens
        c.cost_reserved += self.pricing.cost(prompt_tokens, max_tokens)
        self._enqueue(c, req)
        return req.rid

    def _check_budget(self, c: _Client, prompt: int, out: int) -> None:
        if c.token_limit is not None:
            left = c.token_limit - c.tokens_used - c.tokens_reserved
            if prompt + out > left:
                c.refused += 1
                raise QuotaExceeded(
                    f"LLM token budget: this request may take {prompt + out} tokens "
                    f"(prompt {prompt} + max_tokens {out}) but only {max(left, 0)} of "
                    f"{c.token_limit} remain",
                    need=prompt + out, left=max(left, 0),
                )
        if c.cost_limit is not None:
            need = self.pricing.cost(prompt, out)
            left = c.cost_limit - c.cost_used - c.cost_reserved
            if need > left:
                c.refused += 1
                raise QuotaExceeded(
                    f"LLM cost budget: this request may cost {need} units "
                    f"(prompt {prompt} + max_tokens {out} tokens) but only {max(left, 0)} of "
                    f"{c.cost_limit} remain",
                    need=need, left=max(left, 0),
                )

    def _admit_deadline(self, c: _Client, prompt: int, out: int, deadline: int, now: int) -> None:
        sm = self.service
        if sm is None:
            raise InvalidArgument("this device has no service model: it cannot take deadlines")
        if not isinstance(deadline, int) or isinstance(deadline, bool):
            raise InvalidArgument("deadline_ns must be an int (absolute, kernel clock)")
        alone = sm.latency_ns(prompt, out)
        if now + alone > deadline:
            c.refused += 1
            raise Busy(
                f"deadline cannot be met: the request needs about {alone / 1e6:.0f} ms alone "
                f"and has {max(0, deadline - now) / 1e6:.0f} ms",
                need_ns=alone,
            )
        work = [(r.deadline_ns or 0, sm.work_ns(r.prompt_tokens, r.remaining_tokens))
                for r in self._edf_live.values()]
        work += [(f.req.deadline_ns or 0,
                  sm.work_ns(0 if f.prompt_charged else f.req.prompt_tokens,
                             max(0, f.req.max_tokens - f.out_charged)))
                 for f in self._flight.values() if f.req.deadline_ns is not None]
        work.append((deadline, sm.work_ns(prompt, out)))
        work.sort()
        total = 0
        for d, w in work:
            total += w
            if total > sm.deadline_share * max(0, d - now):
                c.refused += 1
                raise Busy(
                    "deadline admission refused: the deadline work already admitted on this "
                    f"device would exceed {sm.deadline_share:.0%} of it",
                )

    def _enqueue(self, c: _Client, req: Request, *, front: bool = False) -> None:
        self._queued_total += 1
        if req.deadline_ns is not None:
            c.n_deadline += 1
            self._edf_live[req.rid] = req
            heapq.heappush(self._edf, (req.deadline_ns, req.seq, req))
            return
        self._queued[req.rid] = req
        if req.program is not None:
            pk = (c.key, req.program)
            self._pending[pk] = self._pending.get(pk, 0) + self._size(req)
        if not c.queue:
            self._lift(c)
            c.queue.push(req)
            self._push_ready(c)
        else:
            c.queue.push(req, front)

    def _lift(self, c: _Client) -> None:
        """VTC: a client back from idle starts at the smallest waiting counter."""
        top = self._ready_top()
        floor = self._last_left if top is None else top[0]
        if c.counter < floor:
            c.counter, c.rem = floor, 0

    def _ready_top(self) -> tuple[int, int, int] | None:
        """The valid, up-to-date head of the ready heap.  Entries go stale when a
        client's queue empties (its token changes) or its counter grows (counters
        only grow, so a stale entry is a lower bound: re-push it with the truth)."""
        h = self._ready
        while h:
            counter, token, key = h[0]
            cl = self._clients.get(key)
            if cl is None or not cl.queue or cl.heap_token != token:
                heapq.heappop(h)
            elif cl.counter != counter:
                heapq.heapreplace(h, (cl.counter, token, key))
            else:
                return h[0]
        return None

    def _push_ready(self, c: _Client) -> None:
        c.heap_token = next(self._tokens)
        heapq.heappush(self._ready, (c.counter, c.heap_token, c.key))
        if len(self._ready) > 64 and len(self._ready) > 4 * len(self._clients):
            self._ready = [(cl.counter, cl.heap_token, cl.key)
                           for cl in self._clients.values() if cl.queue]
            heapq.heapify(self._ready)

    def _drop_queued(self, r: Request) -> None:
        c = self._clients[r.key]
        self._queued_total -= 1
        if r.deadline_ns is not None:
            c.n_deadline -= 1
            del self._edf_live[r.rid]  # its heap entry is skipped lazily
        else:
            del self._queued[r.rid]
            self._unpend(r)
            c.queue.remove(r)
            if not c.queue:
                self._last_left = c.counter
        self._release(c, r, r.prompt_tokens if r.resume is None else 0, r.remaining_tokens)

    def _release(self, c: _Client, r: Request, prompt_left: int, out_left: int) -> None:
        c.tokens_reserved -= prompt_left + out_left
        c.cost_reserved -= self.pricing.cost(prompt_left, out_left)

    def cancel(self, rid: int) -> bool:
        """Drop a queued request, or stop charging one in flight (the driver stops it)."""
        f = self._flight.pop(rid, None)
        if f is not None:
            c = self._clients.get(f.req.key)
            if c is not None:
                self._release(c, f.req, 0 if f.prompt_charged else f.req.prompt_tokens,
                              f.req.max_tokens - f.out_charged)
            self._remember_cancelled(rid)
            return True
        r = self._edf_live.get(rid) or self._queued.get(rid)
        if r is None:
            return False
        self._drop_queued(r)
        self._remember_cancelled(rid)
        return True

    def _remember_cancelled(self, rid: int) -> None:
        if len(self._cancelled) == self._cancelled.maxlen:
            self._cancelled_set.discard(self._cancelled[0])
        self._cancelled.append(rid)
        self._cancelled_set.add(rid)

    def end_program(self, key: int, program: int) -> None:
        """Forget a finished program's attained service."""
        self._programs.pop((key, program), None)
        self._program_seq.pop((key, program), None)

    # -- dispatch --------------------------------------------------------------------

    def _size(self, r: Request) -> int:
        return self.pricing.cost(0 if r.resume else r.prompt_tokens, r.remaining_tokens)

    def _unpend(self, r: Request) -> None:
        if r.program is not None:
            pk = (r.key, r.program)
            left = self._pending.get(pk, 0) - self._size(r)
            if left > 0:
                self._pending[pk] = left
            else:
                self._pending.pop(pk, None)

    def _rank(self, c: _Client, r: Request, now: int, lent: dict[int, Priority]) -> tuple[int, int]:
        """(class, program level) of a queued request; smaller goes first."""
        if now >= r.starve_at:
            return (AGED, 0)
        cls = lent.get(c.key)
        if cls is None:
            cls = lent[c.key] = self.effective_class(c.key) if c.donors else c.base
        level = 0
        if r.program is not None:
            pk = (c.key, r.program)
            size = self._programs.get(pk, 0) + self._pending.get(pk, 0)
            level = (size // self.program_quantum).bit_length()
        return (min(int(r.priority), int(cls)), level)

    def _pick_fair(
        self, fits: Fits, now: int, lent: dict[int, Priority]
    ) -> tuple[_Client, Request] | None:
        popped: list[tuple[int, int, int]] = []
        best: tuple[tuple[int, int, int, int], _Client, Request] | None = None
        bound: int | None = None
        h = self._ready
        while self._ready_top() is not None:
            cnt, _, key = h[0]
            if bound is not None and cnt > bound:
                break
            popped.append(heapq.heappop(h))
            c = self._clients[key]
            choice = self._best_of(c, c.queue.heads(), fits, now, lent)
            if choice is None and len(c.queue) > len(c.queue.heads()):
                choice = self._best_of(c, list(c.queue), fits, now, lent)
            if choice is None:
                continue
            if bound is None:
                bound = cnt + self.lag_window
            k = (choice[0][0], choice[0][1], cnt, choice[1])
            if best is None or k < best[0]:
                best = (k, c, choice[2])
        for e in popped:
            heapq.heappush(h, e)
        return None if best is None else (best[1], best[2])

    def _best_of(
        self, c: _Client, reqs: list[Request], fits: Fits, now: int, lent: dict[int, Priority]
    ) -> tuple[tuple[int, int], int, Request] | None:
        # within a level, the older program first (then arrival): programs of one
        # level finish one after another instead of all advancing together
        ps = self._program_seq
        ranked = sorted(((self._rank(c, r, now, lent),
                          r.seq if r.program is None else ps.get((c.key, r.program), r.seq), r)
                         for r in reqs), key=lambda t: (t[0], t[1], t[2].seq))
        for t in ranked:
            if fits(t[2]):
                return t
        return None

    def _pop_edf(self, fits: Fits) -> Request | None:
        skipped: list[tuple[int, int, Request]] = []
        got: Request | None = None
        while self._edf:
            e = heapq.heappop(self._edf)
            r = e[2]
            if self._edf_live.get(r.rid) is not r:
                continue  # cancelled or dispatched: a stale entry
            if fits(r):
                got = r
                break
            skipped.append(e)
        for e in skipped:
            heapq.heappush(self._edf, e)
        return got

    def dispatch(self, fits: Fits | None = None, limit: int | None = None) -> Dispatch:
        """Fill free slots: deadline requests (EDF) first, then fair ones.

        ``fits(request)`` is the driver's word on whether a request could start
        now (KV room, context length); requests that do not fit are passed over.
        When a deadline request waits and no slot can take it, the weakest fair
        request in flight is returned in ``preempt``: the driver takes it off the
        device, calls :meth:`suspend` with its snapshot, and dispatches again.
        ``limit`` caps how many start in this call (a driver whose ``fits`` only
        sees the device as it was before this call starts one at a time)."""
        ok: Fits = fits if fits is not None else _always
        now = self._clock.now_ns()
        lent: dict[int, Priority] = {}
        started: list[Request] = []
        cap = self.slots if limit is None else min(self.slots, len(self._flight) + limit)
        while len(self._flight) < cap:
            r = self._pop_edf(ok)
            if r is None:
                picked = self._pick_fair(ok, now, lent)
                if picked is None:
                    break
                c, r = picked
                c.queue.remove(r)
                del self._queued[r.rid]
                self._unpend(r)
                if not c.queue:
                    self._last_left = c.counter
            self._start(r, now)
            started.append(r)
        preempt: tuple[int, ...] = ()
        urgent = self._urgent_at()
        if self.preempt_enabled and urgent is not None and urgent <= now and not self._preempting:
            v = self._victim(now, lent)
            if v is not None:
                self._preempting[v] = self._flight.pop(v)
                self.preemptions += 1
                preempt = (v,)
        self.decisions += len(started)
        return Dispatch(tuple(started), preempt)

    def _urgent_at(self) -> int | None:
        """When the most urgent waiting deadline request must start or miss its
        deadline (its latency alone plus ``preempt_margin_ns`` before it)."""
        sm = self.service
        if sm is None or not self._edf_live:
            return None
        return min((r.deadline_ns or 0) - sm.latency_ns(r.prompt_tokens, r.remaining_tokens)
                   - self.preempt_margin_ns for r in self._edf_live.values())

    def _victim(self, now: int, lent: dict[int, Priority]) -> int | None:
        best: tuple[tuple[int, int, int], int] | None = None
        for rid, f in self._flight.items():
            r = f.req
            if r.deadline_ns is not None:
                continue
            c = self._clients.get(r.key)
            if c is None:
                continue
            cls = min(int(r.priority), int(self.effective_class(r.key) if c.donors else c.base))
            k = (-cls, -c.counter, -f.started_ns)  # weakest class, most served, newest
            if best is None or k < best[0]:
                best = (k, rid)
        return None if best is None else best[1]

    def _start(self, r: Request, now: int) -> None:
        c = self._clients[r.key]
        self._queued_total -= 1
        if r.deadline_ns is not None:
            c.n_deadline -= 1
            del self._edf_live[r.rid]
        f = _Flight(r, started_ns=now)
        if r.resume is not None:
            f.prompt_charged = True
            f.out_charged = r.resume.output_tokens
            self.recomputed_tokens += r.prompt_tokens + r.resume.output_tokens
        else:
            self._charge(c, r, r.prompt_tokens, 0)
            f.prompt_charged = True
            c.wait_ns += now - r.submitted_ns
        c.dispatched += 1
        self._flight[r.rid] = f

    def _charge(self, c: _Client, r: Request, prompt: int, out: int) -> None:
        cost = self.pricing.cost(prompt, out)
        scaled = cost * NICE_0_LOAD + c.rem
        c.counter += scaled // c.weight
        c.rem = scaled % c.weight
        c.served_cost += cost
        c.tokens_in += prompt
        c.tokens_out += out
        c.tokens_used += prompt + out
        c.cost_used += cost
        c.tokens_reserved -= prompt + out
        c.cost_reserved -= cost
        if r.program is not None:
            pk = (c.key, r.program)
            self._programs[pk] = self._programs.get(pk, 0) + cost

    # -- reports from the driver -------------------------------------------------------

    def _flight_of(self, rid: int) -> _Flight | None:
        f = self._flight.get(rid) or self._preempting.get(rid)
        if f is None and rid not in self._cancelled_set:
            raise NoSuchObject(f"request {rid} is not in flight", rid=rid)
        return f

    def progress(self, rid: int, output_tokens: int) -> int:
        """``output_tokens`` generated so far (a running total); returns tokens newly
        charged.  Reports are idempotent: a count already charged charges nothing."""
        if not isinstance(output_tokens, int) or output_tokens < 0:
            raise InvalidArgument("output_tokens must be an int >= 0")
        f = self._flight_of(rid)
        if f is None:
            return 0  # cancelled: its tokens are no longer charged
        total = min(output_tokens, f.req.max_tokens)
        delta = total - f.out_charged
        if delta <= 0:
            return 0
        c = self._clients.get(f.req.key)
        if c is not None:
            self._charge(c, f.req, 0, delta)
        f.out_charged = total
        return delta

    def complete(
        self, rid: int, output_tokens: int | None = None, prompt_tokens: int | None = None
    ) -> Request | None:
        """A request finished.  ``prompt_tokens`` (the model's own count) corrects
        the estimate made at submit; None when the request had been cancelled."""
        if output_tokens is not None:
            self.progress(rid, output_tokens)
        f = self._flight.pop(rid, None) or self._preempting.pop(rid, None)
        if f is None:
            if rid in self._cancelled_set:
                return None
            raise NoSuchObject(f"request {rid} is not in flight", rid=rid)
        r = f.req
        c = self._clients.get(r.key)
        if c is None:
            return r
        if prompt_tokens is not None and r.resume is None:
            if not isinstance(prompt_tokens, int) or prompt_tokens < 0:
                raise InvalidArgument("prompt_tokens must be an int >= 0")
            diff = prompt_tokens - r.prompt_tokens
            if diff > 0:  # the estimate was low: charge the rest (not reserved)
                c.tokens_reserved += diff
                c.cost_reserved += self.pricing.cost(diff, 0)
                self._charge(c, r, diff, 0)
            elif diff < 0:  # refund the budget (counters never go back)
                c.tokens_used += diff
                c.cost_used -= self.pricing.cost(-diff, 0)
        self._release(c, r, 0, r.max_tokens - f.out_charged)
        c.completed += 1
        return r

    def suspend(self, rid: int, output_tokens: int, text: str = "") -> Request:
        """Take a request off the device and queue it again to resume from its
        snapshot (``text``, ``output_tokens`` generated): the driver preempted it,
        its agent was suspended, the device went away.  Nothing already charged is
        charged again; the device re-reading prompt and snapshot is ``recomputed``."""
        f = self._flight.pop(rid, None) or self._preempting.pop(rid, None)
        if f is None:
            raise NoSuchObject(f"request {rid} is not in flight", rid=rid)
        if not isinstance(output_tokens, int) or output_tokens < 0 or not isinstance(text, str):
            raise InvalidArgument("suspend needs output_tokens >= 0 and the snapshot text")
        self._flight[rid] = f  # so that progress() charges it
        self.progress(rid, output_tokens)
        del self._flight[rid]
        r = replace(f.req, resume=Snapshot(text, f.out_charged))
        c = self._clients.get(r.key)
        if c is None:
            return r
        if r.remaining_tokens <= 0:  # nothing left to generate: it is complete
            c.completed += 1
            return r
        c.preempted += 1
        self._enqueue(c, r, front=True)
        return r

    def next_event_ns(self) -> int | None:
        """When a waiting deadline request becomes urgent enough to preempt for
        (the driver should dispatch then, even if no slot has freed)."""
        if not self.preempt_enabled or self._preempting:
            return None
        return self._urgent_at()

    # -- observation ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    def in_flight_ids(self) -> list[int]:
        return list(self._flight)

    def queued(self, key: int | None = None) -> int:
        if key is None:
            return self._queued_total
        c = self._clients.get(key)
        return len(c.queue) + c.n_deadline if c is not None else 0

    def queued_requests(self) -> list[Request]:
        return list(self._queued.values()) + list(self._edf_live.values())

    def clients(self) -> list[int]:
        """The keys of every client the queue knows, in order."""
        return sorted(self._clients)

    def counter(self, key: int) -> int:
        return self._known(key).counter

    def attained(self, key: int, program: int) -> int:
        return self._programs.get((key, program), 0)

    def stats(self, key: int) -> dict[str, int | str]:
        c = self._known(key)
        return {
            "weight": c.weight,
            "class": c.base.name.lower(),
            "effective_class": self.effective_class(key).name.lower(),
            "counter": c.counter,
            "queued": len(c.queue) + c.n_deadline,
            "in_flight": sum(1 for f in self._flight.values() if f.req.key == key),
            "served_cost": c.served_cost,
            "tokens_in": c.tokens_in,
            "tokens_out": c.tokens_out,
            "dispatched": c.dispatched,
            "completed": c.completed,
            "refused": c.refused,
            "preempted": c.preempted,
            "wait_ns": c.wait_ns,
            "budget_tokens": -1 if c.token_limit is None else c.token_limit,
            "budget_cost": -1 if c.cost_limit is None else c.cost_limit,
            "tokens_used": c.tokens_used,
            "cost_used": c.cost_used,
            "tokens_reserved": c.tokens_reserved,
            "cost_reserved": c.cost_reserved,
        }


def _always(_: Request) -> bool:
    return True
