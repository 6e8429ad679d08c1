"""Wait queues: where a blocked agent is parked (xv6 ``sleep``/``wakeup``).

A blocking syscall parks its agent on a :class:`WaitQueue` with a
:class:`Wait` record and returns the ``BLOCK`` sentinel; whoever makes the
condition true pops the wait and hands the kernel a value (or an error) to
deliver.  A wait can also end by timeout or by the agent being killed; the
record knows its queue, so either path removes it in O(1) amortised.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class Block:
    """The sentinel a handler returns when it parked the caller."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "BLOCK"


BLOCK: Any = Block()


class Wait:
    __slots__ = ("agent", "data", "done", "queue", "timer")

    def __init__(self, agent: Any, queue: WaitQueue | None, data: Any = None) -> None:
        self.agent = agent
        self.queue = queue
        self.data = data
        self.timer: Any = None
        self.done = False


class WaitQueue:
    """FIFO of waits; cancelled waits are skipped lazily."""

    __slots__ = ("_dead", "_q")

    def __init__(self) -> None:
        self._q: deque[Wait] = deque()
        self._dead = 0

    def push(self, w: Wait) -> None:
        self._q.append(w)

    def pop(self) -> Wait | None:
        q = self._q
        while q:
            w = q.popleft()
            if not w.done:
                return w
        return None

    def remove(self, w: Wait) -> None:
        """Forget a wait that ended another way (timeout, kill); ``w.done`` is set."""
        q = self._q
        if q and q[-1] is w:
            q.pop()
            return
        self._dead += 1
        if self._dead > 32 and self._dead * 2 > len(q):
            self._q = deque(x for x in q if not x.done)
            self._dead = 0

    def drain(self) -> list[Wait]:
        out = [w for w in self._q if not w.done]
        self._q.clear()
        return out

    def __bool__(self) -> bool:
        q = self._q
        while q and q[0].done:
            q.popleft()
        return bool(q)

    def __len__(self) -> int:
        return sum(1 for w in self._q if not w.done)
