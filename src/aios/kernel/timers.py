"""Kernel timers: one heap of ``[time, seq, fn, args]`` entries on kernel time.

The heap belongs to the kernel thread.  Cancelling a timer does not search
the heap: the entry stays, inert (its function becomes a no-op and it lets
go of its arguments, a wait and through it an agent), and is skipped when it
reaches the top; once cancelled entries are more than half of a large heap
the heap is compacted.  Firing calls each due function in time order; one
that raises is reported through ``on_error`` and the rest still fire.

Waking the loop is the kernel's part (:meth:`aios.kernel.kernel.Kernel.call_at`):
a timer armed from another thread is posted to the kernel thread, and one
earlier than the deadline the idle loop sleeps until wakes it, so a timer
fires on an idle kernel too.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

COMPACT_MIN = 1024  # cancelled entries before compaction is considered


def noop(*_args: Any) -> None:
    """What a cancelled or fired entry's function becomes."""


class Timers:
    __slots__ = ("cancelled", "heap", "seq")

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []  # [time, seq, fn, args]; fn -> noop when cancelled
        self.cancelled = 0  # cancelled entries still in the heap
        self.seq = itertools.count()

    def __len__(self) -> int:
        return len(self.heap)

    def entry(self, t_ns: int, fn: Callable[..., None], args: tuple[Any, ...]) -> list[Any]:
        return [t_ns, next(self.seq), fn, args]

    def push(self, entry: list[Any]) -> None:
        heapq.heappush(self.heap, entry)

    def cancel(self, entry: list[Any] | None, compact: bool) -> None:
        """Make ``entry`` inert; with ``compact`` (on the kernel thread) maybe compact the heap."""
        if entry is not None and entry[2] is not noop:
            entry[2] = noop
            entry[3] = ()
            self.cancelled += 1
            if compact and self.cancelled > COMPACT_MIN and self.cancelled * 2 > len(self.heap):
                self.heap = [e for e in self.heap if e[2] is not noop]
                heapq.heapify(self.heap)
                self.cancelled = 0

    def due(self, now: int) -> bool:
        heap = self.heap
        return bool(heap) and heap[0][0] <= now

    def fire(self, now: int, on_error: Callable[[Callable[..., None], Exception], None]) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            _, _, fn, args = entry
            if fn is noop:
                self.cancelled -= 1
                continue
            entry[2] = noop  # fired: a later cancel must not count it
            entry[3] = ()
            try:
                fn(*args)
            except Exception as e:
                on_error(fn, e)
            heap = self.heap  # a callback may have compacted the heap

    def next_ns(self) -> int | None:
        heap = self.heap
        while heap and heap[0][2] is noop:
            heapq.heappop(heap)
            self.cancelled -= 1
        return heap[0][0] if heap else None
