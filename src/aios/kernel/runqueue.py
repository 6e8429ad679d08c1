"""The simplest scheduler behind the kernel's scheduling interface: FIFO.

The kernel loop talks to a scheduler only through the methods below (the
same interface the EEVDF/EDF :mod:`aios.kernel.scheduler` implements), so
either drops in.  This one is round-robin with a fixed slice: an agent runs
until it blocks, yields or uses ``params.SLICE_NS``, then goes to the back.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aios.errors import InvalidArgument
from aios.kernel import params
from aios.kernel.clock import Clock


class FifoEntity:
    __slots__ = ("key", "owner", "queued", "ran", "runtime", "slice_ns", "waits", "weight")

    def __init__(self, key: int, owner: object, weight: int) -> None:
        self.key = key
        self.owner = owner
        self.weight = weight
        self.slice_ns = params.SLICE_NS
        self.ran = 0
        self.runtime = 0
        self.waits = 0
        self.queued = False


class RunQueue:
    """Round-robin run queue with the scheduler interface."""

    def __init__(self, clock: Clock, ncpus: int = 1) -> None:
        self.clock = clock
        self._q: deque[FifoEntity] = deque()

    def new_entity(self, key: int, owner: object, *, weight: int = 1024) -> FifoEntity:
        return FifoEntity(key, owner, weight)

    def wake(self, ent: FifoEntity) -> None:
        if not ent.queued:
            ent.queued = True
            ent.waits += 1
            self._q.append(ent)

    put_prev = wake

    def block(self, ent: FifoEntity) -> None:
        self._drop(ent)

    def remove(self, ent: FifoEntity) -> None:
        self._drop(ent)

    def _drop(self, ent: FifoEntity) -> None:
        if ent.queued:
            ent.queued = False
            try:
                self._q.remove(ent)
            except ValueError:
                pass

    def pick(self) -> FifoEntity | None:
        q = self._q
        if not q:
            return None
        ent = q.popleft()
        ent.queued = False
        ent.ran = 0
        return ent

    def charge(self, ent: FifoEntity, delta_ns: int) -> bool:
        ent.ran += delta_ns
        ent.runtime += delta_ns
        return ent.ran >= ent.slice_ns

    def yield_(self, ent: FifoEntity) -> None:
        ent.ran = ent.slice_ns

    def set_fair(self, ent: FifoEntity, *, weight: int | None = None, nice: int | None = None,
                 slice_ns: int | None = None, hint: str | None = None) -> None:
        if weight is not None:
            if type(weight) is not int or not 1 <= weight <= params.ROOT_QUOTA_CPU_WEIGHT:
                raise InvalidArgument("weight out of range")
            ent.weight = weight
        if slice_ns is not None:
            ent.slice_ns = max(100_000, min(100_000_000, int(slice_ns)))

    def set_deadline(self, ent: FifoEntity, *, runtime_ns: int, deadline_ns: int, period_ns: int) -> None:
        raise InvalidArgument("the FIFO run queue has no real-time class")

    def set_fair_class(self, ent: FifoEntity) -> None:
        return None

    def stats(self, ent: FifoEntity) -> dict[str, Any]:
        return {"class": "fifo", "weight": ent.weight, "runtime_ns": ent.runtime, "waits": ent.waits}

    def next_event_ns(self) -> int | None:
        return None

    def __len__(self) -> int:
        return len(self._q)
