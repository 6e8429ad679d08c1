"""Kernel time.

The kernel never calls ``time`` directly: it asks a :class:`Clock`.  The real
one is monotonic nanoseconds; :class:`VirtualClock` is advanced by hand (or
jumps to the next timer when everything is idle), so scheduler and timeout
tests run with no real sleeps, like trio's ``MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...

    @property
    def virtual(self) -> bool: ...


class MonotonicClock:
    """Wall-clock monotonic time in nanoseconds."""

    virtual = False

    def now_ns(self) -> int:
        return time.monotonic_ns()


class VirtualClock:
    """Time that only moves when told to (or, with ``autojump``, when idle)."""

    virtual = True

    def __init__(self, start_ns: int = 0, autojump: bool = True) -> None:
        self._now = start_ns
        self.autojump = autojump

    def now_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("time does not go backwards")
        self._now += ns

    def jump_to(self, t_ns: int) -> None:
        if t_ns > self._now:
            self._now = t_ns
