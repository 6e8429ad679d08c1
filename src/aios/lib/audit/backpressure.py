"""Backpressure for the audit log: a bounded pending buffer and fair throttling.

Design
------
Records are appended on the kernel thread and acknowledged (committed with
``synchronous=FULL``) by the commit thread.  If agents produce records faster
than the disk commits them, something has to give.  Dropping records is not
an option (the log is the evidence), and letting the buffer grow without
bound turns a violation storm into unbounded kernel memory and acknowledgement
latency: the review measured 72,537 records pending against 2,277 committed.
So the *producers* wait: an agent that has too many records pending is
**held** at the end of its current syscall (its result is kept and delivered
when it is released), exactly as a writer blocks on a full pipe.

Who is charged.  Each record belongs to the agent whose syscall caused it
(the kernel's current agent when the event was published), or to the kernel
(owner 0) when no agent was running, e.g. a timer.  The kernel is never held.

Fairness.  While the buffer holds fewer than ``capacity`` records an agent may
have up to ``share`` of them pending.  Once the buffer is full, the limit for
each agent drops to its fair share, ``capacity // producers`` (never below
``floor``), so the agents that hold the most of the buffer are the ones that
wait, and an agent that produces a few records is not held behind a violator:
acknowledgement is in log order, and since no agent may keep more than its
share queued, everyone's records are committed within one buffer's worth of
commits.  A held agent is released once its pending count has fallen to half
its current limit (hysteresis: it does not flap on every commit).

The bound.  When the buffer first reaches ``capacity``, the producers then
above their fair share wait, and those below it may still grow *up to* it;
the fair shares sum to ``capacity``, so the buffer never holds more than about
``2 * capacity`` records (plus ``floor`` per producer when there are more
producers than ``capacity // floor``, and one syscall's records per producer,
since an agent is held when its syscall ends).

This module is sans-IO: :meth:`Backpressure.appended` and
:meth:`Backpressure.acknowledged` are called by the kernel glue on the kernel
thread, and tests call them directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

DEFAULT_CAPACITY: Final = 8192  # records pending before fair shares apply
DEFAULT_SHARE: Final = 1024  # records one agent may have pending below capacity
DEFAULT_FLOOR: Final = 16  # the least any producer may have pending


@dataclass(frozen=True, slots=True)
class PressureStatus:
    pending: int
    pending_max: int
    producers: int
    held: int
    holds: int  # agents held so far (counting every hold)
    capacity: int


class Backpressure:
    """Pending audit records per owner, and which owners must wait."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, share: int = DEFAULT_SHARE,
                 floor: int = DEFAULT_FLOOR) -> None:
        if not 1 <= floor <= share <= capacity:
            raise ValueError("need 1 <= floor <= share <= capacity")
        self.capacity = capacity
        self.share = share
        self.floor = floor
        self.total = 0
        self.max_total = 0
        self.holds = 0
        self.by_owner: dict[int, int] = {}
        self.held: set[int] = set()
        self._order: deque[tuple[int, int]] = deque()  # (log index, owner), in log order

    def limit(self) -> int:
        """How many pending records an owner may have right now."""
        if self.total < self.capacity:
            return self.share
        return max(self.floor, self.capacity // max(1, len(self.by_owner)))

    def appended(self, index: int, owner: int) -> bool:
        """Record ``index`` is pending for ``owner``; True when ``owner`` must now wait
        (it is added to :attr:`held`; the caller holds it at the end of its syscall)."""
        self._order.append((index, owner))
        self.total += 1
        if self.total > self.max_total:
            self.max_total = self.total
        n = self.by_owner.get(owner, 0) + 1
        self.by_owner[owner] = n
        if owner == 0 or owner in self.held or n <= self.limit():
            return False
        self.held.add(owner)
        self.holds += 1
        return True

    def acknowledged(self, size: int) -> list[int]:
        """Records below ``size`` are durable; returns the owners to release now."""
        order = self._order
        by = self.by_owner
        while order and order[0][0] < size:
            _, owner = order.popleft()
            self.total -= 1
            n = by[owner] - 1
            if n:
                by[owner] = n
            else:
                del by[owner]
        return self.releasable()

    def releasable(self) -> list[int]:
        """Held owners whose backlog has drained far enough; they leave :attr:`held`."""
        if not self.held:
            return []
        resume = self.limit() // 2
        out = [o for o in self.held if self.by_owner.get(o, 0) <= resume]
        for o in out:
            self.held.discard(o)
        return sorted(out)

    def forget(self, owner: int) -> None:
        """``owner`` is gone: it no longer waits (its pending records stay counted)."""
        self.held.discard(owner)

    def status(self) -> PressureStatus:
        return PressureStatus(self.total, self.max_total, len(self.by_owner), len(self.held),
                              self.holds, self.capacity)
