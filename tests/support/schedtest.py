"""A run queue on a virtual clock with some entities already woken, for the scheduler tests."""

from __future__ import annotations

from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import SchedEntity, Scheduler


def make(n_weights: list[int], ncpus: int = 1) -> tuple[VirtualClock, Scheduler, list[SchedEntity]]:
    """A scheduler with one woken fair entity per weight in ``n_weights`` (keys 0..n-1)."""
    clock = VirtualClock()
    sched = Scheduler(clock, ncpus)
    ents = [sched.new_entity(i, f"agent{i}", weight=w) for i, w in enumerate(n_weights)]
    for e in ents:
        sched.wake(e)
    return clock, sched, ents
