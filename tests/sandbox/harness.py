"""A stand-in kernel for executor tests: a function answering trap frames.

sysno 20 returns the agent id, 21 echoes its arguments, 22 uses a capability
slot (only slot 0 is held; others raise InvalidCapability and record a
security event), 25 is never answered (parks the agent); anything else
raises NoSuchSyscall.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aios.abi.errors import AIOSError, InvalidCapability, NoSuchSyscall
from aios.abi.faults import ExecutorKind, ExitRecord, SecurityEvent, Sink

HERE = os.path.dirname(os.path.abspath(__file__))
HELD_SLOTS = frozenset({0})


@dataclass
class StandInKernel:
    executor: Any = None
    kind: ExecutorKind = ExecutorKind.ISOLATED
    echoes: dict[int, list[tuple[Any, ...]]] = field(default_factory=lambda: defaultdict(list))
    events: list[SecurityEvent] = field(default_factory=list)
    exits: dict[int, ExitRecord] = field(default_factory=dict)
    traps: int = 0
    waiters: dict[int, asyncio.Future[ExitRecord]] = field(default_factory=dict)
    echo_waiters: dict[int, asyncio.Future[None]] = field(default_factory=dict)

    def answer(self, aid: int, sysno: int, args: tuple[Any, ...]) -> Any:
        if sysno == 20:
            return aid
        if sysno == 21:
            self.echoes[aid].append(args)
            fut = self.echo_waiters.pop(aid, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return list(args)
        if sysno == 22:
            if args and args[0] in HELD_SLOTS:
                return 0
            self.events.append(
                SecurityEvent(aid, "capability", f"slot {args[:1]} not held", self.kind)
            )
            raise InvalidCapability(f"slot {args[:1]} is empty")
        raise NoSuchSyscall(f"syscall {sysno}")

    def trap(self, aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        self.traps += 1
        if sysno == 25:
            return
        try:
            result = self.answer(aid, sysno, args)
        except AIOSError as exc:
            self.executor.deliver(aid, seq, exc.code, exc.message)
        else:
            self.executor.deliver(aid, seq, 0, result)

    def exited(self, rec: ExitRecord) -> None:
        self.exits[rec.agent_id] = rec
        fut = self.waiters.get(rec.agent_id)
        if fut is not None and not fut.done():
            fut.set_result(rec)

    def security(self, ev: SecurityEvent) -> None:
        self.events.append(ev)

    def sink(self) -> Sink:
        return Sink(self.trap, self.exited, self.security)

    async def wait_exit(self, aid: int, timeout: float = 20.0) -> ExitRecord:
        if aid in self.exits:
            return self.exits[aid]
        fut = self.waiters.setdefault(aid, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(fut, timeout)

    async def wait_echo(self, aid: int, n: int = 1, timeout: float = 20.0) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while len(self.echoes[aid]) < n:
            fut = self.echo_waiters.setdefault(aid, asyncio.get_running_loop().create_future())
            await asyncio.wait_for(fut, max(0.01, deadline - time.monotonic()))
        return self.echoes[aid]

    def events_for(self, aid: int) -> list[SecurityEvent]:
        return [e for e in self.events if e.agent_id == aid]
