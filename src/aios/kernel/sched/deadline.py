"""The deadline class: EDF with Constant Bandwidth Servers (SCHED_DEADLINE).

Parameters follow Linux's ``sched-deadline.rst``: runtime <= deadline <=
period, each >= 1024 ns.  Admission keeps ``sum(runtime / period) <= 0.95 *
ncpus`` exactly (in fractions, so no rounding lets one task too many in), else
``Busy``.

Each task is a Constant Bandwidth Server.  On wake, if its scheduling deadline
has passed or its remaining runtime would exceed its density (``q / (d - t) >
runtime / deadline``), it gets ``d = t + deadline, q = runtime``; constrained
tasks (deadline < period) use Linux's revised rule instead and keep ``d`` with
``q`` cut to the density, so a task that sleeps and wakes cannot claim more
than its bandwidth.  Running consumes ``q``; at ``q <= 0`` the task is
throttled until its next period (``d - deadline + period``), when ``d`` moves
on by periods and ``q`` is refilled.

Queued deadline entities sit in a binary heap keyed by their effective absolute
deadline, with lazy deletion: each entity carries a token, an entry whose token
is stale is skipped when it reaches the top, and the heap is rebuilt when dead
entries outnumber live ones.  Throttled entities sit in a second heap keyed by
replenishment time, whose top is the scheduler's next timer event.

This module keeps the heaps, the bandwidth and the CBS arithmetic.  It does not
decide classes: a fair entity boosted by a deadline donor (priority
inheritance, :mod:`aios.kernel.sched.core`) is queued here at the donor's
deadline, and :class:`~aios.kernel.sched.core.Scheduler` never throttles it.
"""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import TYPE_CHECKING, Final

from aios.abi.errors import Busy, InvalidArgument

if TYPE_CHECKING:
    from aios.kernel.sched.core import SchedEntity

DL_MIN_NS: Final = 1024  # Linux: 1 << DL_SCALE
DL_MAX_NS: Final = 1 << 62
DL_BW_LIMIT: Final = Fraction(95, 100)  # sched_rt_runtime_us / sched_rt_period_us


def check_params(runtime_ns: int, deadline_ns: int, period_ns: int) -> None:
    """Refuse parameters outside ``1024 <= runtime <= deadline <= period <= 2**62``."""
    if not DL_MIN_NS <= runtime_ns <= deadline_ns <= period_ns <= DL_MAX_NS:
        raise InvalidArgument(
            f"need {DL_MIN_NS} <= runtime <= deadline <= period <= 2**62 ns",
            runtime_ns=runtime_ns, deadline_ns=deadline_ns, period_ns=period_ns,
        )  # fmt: skip


def wake_rule(ent: SchedEntity, now: int) -> None:
    """CBS on wake: keep (d, q) unless using them would exceed the bandwidth."""
    d, q = ent.dl_abs, ent.dl_left
    if d > now and q * ent.dl_deadline <= (d - now) * ent.dl_runtime:
        return
    if d > now and ent.dl_deadline < ent.dl_period:
        # revised rule for constrained tasks: keep d, cut q to the density
        ent.dl_left = (d - now) * ent.dl_runtime // ent.dl_deadline
    else:
        ent.dl_abs = now + ent.dl_deadline
        ent.dl_left = ent.dl_runtime


def refill(ent: SchedEntity, now: int) -> None:
    """Move ``d`` on by periods until ``q > 0``; a stale ``d`` restarts at ``now``."""
    while ent.dl_left <= 0:
        ent.dl_abs += ent.dl_period
        ent.dl_left += ent.dl_runtime
    if ent.dl_abs <= now:
        ent.dl_abs = now + ent.dl_deadline
        ent.dl_left = ent.dl_runtime


def unthrottle(ent: SchedEntity, now: int) -> None:
    """End ``ent``'s throttling (its heap entry goes stale) and refill it."""
    ent._throttled = False
    ent._thr_token += 1
    refill(ent, now)


class DeadlineQueue:
    """The EDF heap, the throttled heap and the admitted bandwidth."""

    __slots__ = ("bw", "heap", "nr", "thr_heap")

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, int, SchedEntity]] = []
        self.nr = 0
        self.thr_heap: list[tuple[int, int, int, SchedEntity]] = []
        self.bw = Fraction(0)

    # -- the EDF queue -----------------------------------------------------------

    def push(self, ent: SchedEntity) -> None:
        ent._dl_token += 1
        heapq.heappush(self.heap, (ent._dkey, ent.key, ent._dl_token, ent))
        self.nr += 1

    def drop(self, ent: SchedEntity) -> None:
        ent._dl_token += 1
        self.nr -= 1
        if len(self.heap) > 2 * self.nr + 64:
            self.heap = [t for t in self.heap if t[3]._dl_token == t[2]]
            heapq.heapify(self.heap)

    def top(self) -> SchedEntity | None:
        h = self.heap
        while h:
            _, _, tok, e = h[0]
            if e._dl_token == tok:
                return e
            heapq.heappop(h)
        return None

    def pop(self) -> SchedEntity | None:
        """Remove and return the entity with the earliest deadline (None: empty)."""
        ent = self.top()
        if ent is not None:
            heapq.heappop(self.heap)
            ent._dl_token += 1
            self.nr -= 1
        return ent

    # -- throttling ----------------------------------------------------------------

    def throttle(self, ent: SchedEntity) -> None:
        ent._throttled = True
        ent.throttles += 1
        ent._thr_token += 1
        at = ent.dl_abs - ent.dl_deadline + ent.dl_period  # next period (dl_next_period)
        heapq.heappush(self.thr_heap, (at, ent.key, ent._thr_token, ent))

    def replenish_due(self, now: int) -> list[SchedEntity]:
        """Unthrottle every entity whose next period has begun by ``now``."""
        h = self.thr_heap
        out: list[SchedEntity] = []
        while h and h[0][0] <= now:
            _, _, tok, e = heapq.heappop(h)
            if e._thr_token != tok or not e._throttled:
                continue
            unthrottle(e, now)
            out.append(e)
        return out

    def next_event_ns(self) -> int | None:
        """When a throttled entity is next replenished (None: nothing pending)."""
        h = self.thr_heap
        while h:
            _, _, tok, e = h[0]
            if e._thr_token == tok and e._throttled:
                return h[0][0]
            heapq.heappop(h)
        return None

    # -- admission -------------------------------------------------------------------

    def admit(self, old: Fraction, runtime_ns: int, period_ns: int, ncpus: int) -> None:
        """Replace bandwidth ``old`` by ``runtime / period`` if the total stays <= 0.95 * ncpus."""
        total = self.bw - old + Fraction(runtime_ns, period_ns)
        if total > DL_BW_LIMIT * ncpus:
            raise Busy(
                f"deadline bandwidth {float(total):.4f} would exceed "
                f"{float(DL_BW_LIMIT * ncpus):.2f}",
            )
        self.bw = total

    def release(self, ent: SchedEntity) -> None:
        """Give back ``ent``'s admitted bandwidth."""
        self.bw -= Fraction(ent.dl_runtime, ent.dl_period)
