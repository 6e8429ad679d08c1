"""Drive a WorkflowRun by hand: tasks complete when the test says (FIFO by
default), timers fire on a virtual clock, every command is kept."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Any

from aios.abi.errors import AIOSError
from aios.lib.orchestration.runtime import (
    ArmTimer,
    AwaitApproval,
    CancelApproval,
    CancelTask,
    Command,
    Finish,
    SaveCheckpoint,
    StartTask,
    WorkflowRun,
)

HANG = object()  # a handler result meaning "never answers"


class Sim:
    def __init__(self, run: WorkflowRun, handlers: dict[str, Callable[[dict[str, Any]], Any]]):
        self.run = run
        self.handlers = handlers
        self.now = 0
        self.pending: deque[StartTask] = deque()
        self.timers: list[tuple[int, int, str, int, str]] = []
        self.commands: list[Command] = []
        self.started: list[tuple[str, int]] = []
        self.cancelled: list[tuple[str, int]] = []
        self.approvals: list[str] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.finish: Finish | None = None
        self._n = 0

    def apply(self, cmds: list[Command]) -> None:
        for c in cmds:
            self.commands.append(c)
            if isinstance(c, StartTask):
                self.pending.append(c)
                self.started.append((c.key, c.attempt))
            elif isinstance(c, CancelTask):
                self.cancelled.append((c.key, c.attempt))
                self.pending = deque(p for p in self.pending
                                     if (p.key, p.attempt) != (c.key, c.attempt))
            elif isinstance(c, ArmTimer):
                self._n += 1
                heapq.heappush(self.timers, (self.now + c.delay_ns, self._n, c.key, c.attempt,
                                             c.purpose))
            elif isinstance(c, AwaitApproval):
                self.approvals.append(c.key)
            elif isinstance(c, CancelApproval):
                self.approvals.remove(c.key)
            elif isinstance(c, SaveCheckpoint):
                self.checkpoints.append(dict(c.state))
            elif isinstance(c, Finish):
                self.finish = c

    def start(self) -> Sim:
        self.apply(self.run.start())
        return self

    def complete(self, key: str | None = None) -> None:
        """Deliver one started task's outcome (the oldest, or the one named)."""
        st = self.pending[0] if key is None else next(p for p in self.pending if p.key == key)
        self.pending.remove(st)
        try:
            value = self.handlers[st.run](dict(st.args, _key=st.key, _attempt=st.attempt))
        except AIOSError as e:
            self.apply(self.run.task_failed(st.key, st.attempt, e))
            return
        if value is HANG:
            return
        self.apply(self.run.task_done(st.key, st.attempt, value))

    def fire_next_timer(self) -> None:
        t, _, key, attempt, purpose = heapq.heappop(self.timers)
        self.now = max(self.now, t)
        self.apply(self.run.timer(key, attempt, purpose))

    def run_to_end(self, limit: int = 100_000) -> Finish | None:
        for _ in range(limit):
            if self.finish is not None:
                break
            if self.pending:
                self.complete()
            elif self.timers:
                self.fire_next_timer()
            else:
                break
        return self.finish

    def kinds(self) -> list[tuple[str, str]]:
        return [(e.kind, e.key) for e in self.run.trace]
