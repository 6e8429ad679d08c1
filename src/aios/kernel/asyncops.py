"""Asynchronous operations: results an agent collects later with ``GET_ASYNC_RESULT``.

``AGENT_SPAWN``, ``PQC_OPERATION`` and the memory-fabric calls return a
handle at once; the work finishes later and completes the operation, and
whoever waits on it (``GET_ASYNC_RESULT`` with a timeout) is woken.  A
pending result is a kernel buffer charged to its owner's memory quota
(``ASYNC_COST``) until it is taken or its owner ends, and an owner may have
at most ``ASYNC_OPS_PER_AGENT`` outstanding.  This table is pure state: the
kernel wakes the waiters (:meth:`aios.kernel.kernel.Kernel.complete_async`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import AIOSError, QuotaExceeded
from aios.kernel.waits import WaitQueue

if TYPE_CHECKING:
    from aios.kernel.accounts import Ledger


class AsyncOp:
    """A pending result for GetAsyncResult (AgentSpawn, PQCOperation)."""

    __slots__ = ("done", "error", "handle", "owner", "value", "waiters")

    def __init__(self, handle: int, owner: int) -> None:
        self.handle = handle
        self.owner = owner
        self.done = False
        self.value: Any = None
        self.error: AIOSError | None = None
        self.waiters = WaitQueue()


class AsyncOps:
    """Every outstanding operation, by handle and by owner."""

    __slots__ = ("by_owner", "ledger", "ops", "seq")

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.ops: dict[int, AsyncOp] = {}
        self.by_owner: dict[int, set[int]] = {}  # aid -> its outstanding handles
        self.seq = itertools.count(1)

    def get(self, handle: int) -> AsyncOp | None:
        return self.ops.get(handle)

    def __len__(self) -> int:
        return len(self.ops)

    def new(self, owner: int) -> AsyncOp:
        mine = self.by_owner.get(owner)
        if mine is not None and len(mine) >= limits.ASYNC_OPS_PER_AGENT:
            raise QuotaExceeded("too many outstanding async operations")
        self.ledger.take(owner, limits.ASYNC_COST)  # its pending result is a kernel buffer
        if mine is None:
            mine = self.by_owner[owner] = set()
        op = AsyncOp(next(self.seq), owner)
        self.ops[op.handle] = op
        mine.add(op.handle)
        return op

    def drop(self, handle: int) -> AsyncOp | None:
        """Forget an operation (its result was taken, or nobody can take it)."""
        op = self.ops.pop(handle, None)
        if op is not None:
            self.ledger.give(op.owner, limits.ASYNC_COST)
            mine = self.by_owner.get(op.owner)
            if mine is not None:
                mine.discard(handle)
                if not mine:
                    del self.by_owner[op.owner]
        return op

    def of(self, owner: int) -> list[int]:
        return list(self.by_owner.get(owner, ()))
