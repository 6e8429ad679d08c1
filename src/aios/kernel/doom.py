"""Agents a revoke has sentenced, killed a slice at a time.

Revoking an authority kills every agent whose authority descends from it.  One
revoke can reach thousands of agents (a colony, a fork-bomb's family), and each
kill is real work: the agent's capability space is dropped, its calls fail, its
subscriptions and timers go, its parent is told.  Done inside the revoking
syscall, all of it is one kernel step of seconds, and every other agent waits
behind that step.

So a revoke *sentences* the agents instead.  Sentencing is immediate and cheap:
the agent's id goes into :class:`DoomQueue`, and from then on it cannot act.
The in-process executor kills a doomed agent it picks instead of running it; a
remote agent's next syscall kills it instead of being served; a doomed agent
that is the current one (it revoked its own ancestry) is killed on the spot.
The kernel then kills :data:`~aios.abi.limits.DOOM_BATCH` of them per step: one
slice in the revoking syscall itself (so a small revoke is over when the
syscall returns, as before) and one after every dispatch, so other agents run
between slices while a large subtree is torn down.

This module is the queue only: it keeps the order of sentences and the reason
for each, does no killing and knows nothing of the kernel.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aios.kernel.agents import Agent


class DoomQueue:
    """Sentenced agents, first sentenced first killed; each with its kill reason."""

    __slots__ = ("_order", "_reason")

    def __init__(self) -> None:
        self._order: deque[Agent] = deque()
        self._reason: dict[int, str] = {}

    def __len__(self) -> int:
        """Agents sentenced and not yet dead."""
        return len(self._reason)

    def __contains__(self, aid: object) -> bool:
        return aid in self._reason

    def sentence(self, a: Agent, reason: str) -> bool:
        """Doom ``a``; False if it already was (the first reason stands)."""
        if a.aid in self._reason:
            return False
        self._reason[a.aid] = reason
        self._order.append(a)
        return True

    def reason(self, aid: int) -> str:
        return self._reason[aid]

    def discard(self, aid: int) -> None:
        """``aid`` died (by its sentence or another way): it is no longer doomed."""
        self._reason.pop(aid, None)
        if not self._reason:
            self._order.clear()

    def take(self, n: int) -> list[tuple[Agent, str]]:
        """Up to ``n`` of the oldest sentences still pending, removed from the queue."""
        out: list[tuple[Agent, str]] = []
        order, reasons = self._order, self._reason
        while order and len(out) < n:
            a = order.popleft()
            r = reasons.pop(a.aid, None)
            if r is not None:
                out.append((a, r))
        return out
