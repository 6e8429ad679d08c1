"""A fake kernel around initd's engine: a virtual clock, timers, and agents that obey.

``Sim`` carries out the engine's actions the way the kernel module will: a
``StartUnit`` spawns (reported as ``Started``; a notify unit also makes its
ready call unless told to stay silent), a ``StopUnit`` ends the agent with
SIGTERM, a ``KillUnit`` with SIGKILL.  Timers fire when ``advance`` moves the
clock past them.  Every action is logged so tests can read the order.
"""

from __future__ import annotations

import heapq
import signal
from typing import Any

from aios.kmod.initd import core
from aios.kmod.initd.restart import ExitKind
from aios.kmod.initd.units import Unit, parse_unit

SEC = 1_000_000_000


def unit(name: str, **sections: dict[str, Any]) -> Unit:
    """``unit("a.service", Unit={...}, Service={...})``; a service gets an Entry by default."""
    data: dict[str, Any] = {k: dict(v) for k, v in sections.items()}
    if name.endswith(".service"):
        data.setdefault("Service", {}).setdefault("Entry", "tests.agents:main")
    return parse_unit(name, data, f"{name}.toml")


class Sim:
    def __init__(self, units: list[Unit], *, silent: set[str] | None = None,
                 stubborn: set[str] | None = None, spawn_fails: set[str] | None = None) -> None:
        self.now = 0
        self.engine = core.Engine(units, lambda: self.now)
        self.silent = silent or set()  # notify units that never make the ready call
        self.stubborn = stubborn or set()  # units that ignore StopUnit
        self.spawn_fails = spawn_fails or set()
        self.timers: list[tuple[int, int, str, core.TimerKind]] = []
        self.log: list[core.Action] = []
        self.alive: set[str] = set()
        self._pending: list[core.Event] = []

    # -- driving ----------------------------------------------------------------------------
    def do(self, actions: list[core.Action]) -> list[core.Action]:
        """Carry out ``actions`` and everything they lead to; returns all actions seen."""
        seen: list[core.Action] = []
        todo = list(actions)
        while todo or self._pending:
            if not todo:
                todo = self.engine.handle(self._pending.pop(0))
                continue
            act = todo.pop(0)
            seen.append(act)
            self.log.append(act)
            self._carry_out(act)
        return seen

    def _carry_out(self, act: core.Action) -> None:
        if isinstance(act, core.StartUnit):
            name = act.unit.name
            if name in self.spawn_fails:
                self._pending.append(core.StartFailed(name, "spawn failed"))
                return
            self.alive.add(name)
            self._pending.append(core.Started(name))
            if act.unit.type is core.ServiceType.NOTIFY and name not in self.silent:
                self._pending.append(core.Ready(name))
        elif isinstance(act, core.StopUnit):
            if act.unit not in self.stubborn:
                self.exit(act.unit, ExitKind.SIGNALED, int(signal.SIGTERM), now=False)
        elif isinstance(act, core.KillUnit):
            self.exit(act.unit, ExitKind.SIGNALED, int(signal.SIGKILL), now=False)
        elif isinstance(act, core.ArmTimer):
            heapq.heappush(self.timers, (act.at_ns, act.token, act.unit, act.timer))

    def exit(self, name: str, kind: ExitKind, status: int, now: bool = True) -> list[core.Action]:
        self.alive.discard(name)
        ev = core.Exited(name, kind, status)
        if now:
            return self.do(self.engine.handle(ev))
        self._pending.append(ev)
        return []

    def crash(self, name: str, code: int = 1) -> list[core.Action]:
        return self.exit(name, ExitKind.EXITED, code)

    def advance(self, dt_ns: int) -> list[core.Action]:
        """Move the clock, firing due timers in deadline order."""
        end = self.now + dt_ns
        seen: list[core.Action] = []
        while self.timers and self.timers[0][0] <= end:
            at, token, name, kind = heapq.heappop(self.timers)
            self.now = max(self.now, at)
            seen += self.do(self.engine.handle(core.TimerFired(name, kind, token)))
        self.now = end
        return seen

    def pet(self, name: str) -> list[core.Action]:
        return self.do(self.engine.handle(core.Pet(name)))

    # -- reading ----------------------------------------------------------------------------
    def state(self, name: str) -> str:
        st = self.engine.status(name)
        return f"{st.state.value}/{st.sub}"

    def started(self, log: list[core.Action] | None = None) -> list[str]:
        return [a.unit.name for a in (self.log if log is None else log)
                if isinstance(a, core.StartUnit)]

    def stopped(self, log: list[core.Action] | None = None) -> list[str]:
        return [a.unit for a in (self.log if log is None else log) if isinstance(a, core.StopUnit)]

    def killed(self, log: list[core.Action] | None = None) -> list[str]:
        return [a.unit for a in (self.log if log is None else log) if isinstance(a, core.KillUnit)]

    def jobs(self, log: list[core.Action] | None = None) -> dict[str, str]:
        return {a.unit: a.result for a in (self.log if log is None else log)
                if isinstance(a, core.JobDone)}
