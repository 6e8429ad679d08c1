"""initd wired: the engine's actions carried out on a real kernel, its events fed back.

:class:`~aios.kmod.initd.core.Engine` decides; this module does.  At boot
(:func:`install`) initd loads the shipped units and ``$AIOS_HOME/units/*.toml`` (a local
unit overrides a shipped one of the same name; a cycle or a bad file stops the boot, naming
it) and starts ``operational.target``, whose requirements are whitepaper 4.1's stages.  Then:

* ``StartUnit`` spawns the unit's agent as a child of init (entry or ``image:``, executor,
  rights and quota from the unit; kernel supervision off: ``Restart=`` is initd's) and reports
  ``Started``, or ``StartFailed`` when the spawn is refused;
* ``StopUnit`` ends the agent as SIGTERM would, ``KillUnit`` as SIGKILL would;
* ``ArmTimer`` becomes a kernel timer that reports ``TimerFired`` (a stale token is ignored
  by the engine, so timers are never cancelled exactly);
* ``Changed`` and ``JobDone`` are published (``initd.unit.changed``, ``initd.job.done``) and
  kept as progress lines;
* an agent that ends is reported as ``Exited``: an ``exit(n)`` with its status (``None`` is
  0, anything else not an int 1), an uncaught exception as SIGABRT (an agent's abort), a kill
  initd asked for as SIGTERM or SIGKILL, any other kill as SIGKILL;
* the unit's agent makes its ready call and pets its watchdog with ``UNIT_NOTIFY``
  (sd_notify's ``READY=1`` and ``WATCHDOG=1``).

Exits are fed back through ``kernel.post`` (after the exit has finished), never from inside
the kernel's exit path, so the engine is never re-entered.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.abi.errors import AIOSError, InvalidArgument, NoSuchObject
from aios.abi.rights import ObjKind, Rights
from aios.abi.sysno import Sys
from aios.kernel.lifecycle import SpawnPlan, spawn
from aios.kernel.registry import Key
from aios.kmod.initd import core
from aios.kmod.initd.restart import ExitKind
from aios.kmod.initd.units import INFINITY, Unit, load_dir, merge_units, shipped_units

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel

PROGRESS_MAX = 512


class InitService:
    """One kernel's initd: the engine, the units' agents, and the progress lines."""

    def __init__(self, k: Kernel, units: list[Unit]) -> None:
        self.k = k
        self.engine = core.Engine(units, k.now)  # a cycle stops the boot, naming it
        self.units = {u.name: u for u in units}
        self.agent: dict[str, int] = {}  # unit -> its agent
        self.unit_of: dict[int, str] = {}
        self.asked: dict[int, int] = {}  # agent -> the signal initd ended it with
        self.progress: deque[tuple[int, str]] = deque(maxlen=PROGRESS_MAX)
        self.logs: dict[str, deque[tuple[int, str]]] = {}

    # -- carrying out ----------------------------------------------------------------------------
    def do(self, actions: list[core.Action]) -> None:
        todo = deque(actions)
        while todo:
            todo.extend(self._carry_out(todo.popleft()))

    def _carry_out(self, act: core.Action) -> list[core.Action]:
        if isinstance(act, core.StartUnit):
            return self._start(act.unit)
        if isinstance(act, core.StopUnit | core.KillUnit):
            sig = signal.SIGTERM if isinstance(act, core.StopUnit) else signal.SIGKILL
            aid = self.agent.get(act.unit)
            a = self.k.find(aid) if aid is not None else None
            if a is not None and a.alive:
                self.asked[a.aid] = int(sig)
                self._line(act.unit, f"{sig.name}: {act.reason}")
                self.k.kill(a, reason=f"initd: {act.reason}")
            return []
        if isinstance(act, core.ArmTimer):
            self.k.call_at(act.at_ns, self._timer, act.unit, act.timer, act.token)
            return []
        if isinstance(act, core.Changed):
            self._line(act.unit, f"{act.state.value} ({act.sub}) result {act.result.value}")
            self.k.publish("initd.unit.changed", 0, unit=act.unit, state=act.state.value, sub=act.sub,
                           result=act.result.value)  # fmt: skip
            return []
        if isinstance(act, core.JobDone):
            self._line(act.unit, f"{act.job.value} job {act.result}")
            self.k.publish("initd.job.done", 0, unit=act.unit, job=act.job.value, result=act.result)
            return []
        return []  # CancelTimer: the engine ignores stale tokens

    def _start(self, u: Unit) -> list[core.Action]:
        k = self.k
        entry = u.entry if u.entry is not None else f"image:{u.image}"
        opts: dict[str, Any] = {"name": u.name[:128], "executor": u.executor,
                                "quota": u.quota.to_dict(),
                                "spec": {"unit": u.name, "watchdog_s": None if u.watchdog_ns == INFINITY
                                         else u.watchdog_ns / 1e9}}  # fmt: skip
        if u.rights:
            opts["rights"] = list(u.rights)
        try:
            plan = SpawnPlan(k.init, k.root_authority, opts)
            a, _ctl, _ep = spawn(k, k.init, k.root_authority, entry, plan)
        except AIOSError as e:
            self._line(u.name, f"start failed: {e.message}")
            return self.engine.handle(core.StartFailed(u.name, e.message))
        self.agent[u.name] = a.aid
        self.unit_of[a.aid] = u.name
        self._line(u.name, f"started as agent {a.aid}")
        return self.engine.handle(core.Started(u.name))

    def _timer(self, unit: str, timer: core.TimerKind, token: int) -> None:
        self.do(self.engine.handle(core.TimerFired(unit, timer, token)))

    def _line(self, unit: str, text: str) -> None:
        t = time.time_ns()
        self.progress.append((t, f"{unit}: {text}"))
        self.logs.setdefault(unit, deque(maxlen=256)).append((t, text))

    # -- what the kernel reports -----------------------------------------------------------------
    def exited(self, a: Agent) -> None:
        unit = self.unit_of.pop(a.aid, None)
        if unit is None or self.k.stopping:
            return
        if self.agent.get(unit) == a.aid:
            del self.agent[unit]
        sig = self.asked.pop(a.aid, None)
        if sig is not None:
            kind, status = ExitKind.SIGNALED, sig
        elif a.how == "exited":
            st = a.exit_status
            kind, status = ExitKind.EXITED, 0 if st is None else st if type(st) is int else 1
        elif a.how == "faulted":
            kind, status = ExitKind.SIGNALED, int(signal.SIGABRT)
        else:
            kind, status = ExitKind.SIGNALED, int(signal.SIGKILL)
        self._line(unit, f"agent {a.aid} ended: {a.how} {kind.value} {status}" + (f" ({a.fault})" if a.fault else ""))
        self.k.post(self._feed, core.Exited(unit, kind, status))

    def _feed(self, ev: core.Event) -> None:
        self.do(self.engine.handle(ev))

    def notify(self, a: Agent, state: str) -> None:
        unit = self.unit_of.get(a.aid)
        if unit is None:
            raise NoSuchObject(f"agent {a.aid} is not the agent of a unit")
        for line in state.split("\n"):
            if line == "READY=1":
                self.do(self.engine.handle(core.Ready(unit)))
            elif line == "WATCHDOG=1":
                self.do(self.engine.handle(core.Pet(unit)))
            elif line:
                raise InvalidArgument(f"unknown notify assignment {line!r} (READY=1, WATCHDOG=1)")

    # -- operator commands ------------------------------------------------------------------------
    def command(self, op: str, name: str | None) -> list[dict[str, Any]]:
        e = self.engine
        if op == "reset-failed":
            self.do(e.reset_failed(name))
            return [self.row(n) for n in ([name] if name else e.units())]
        if name is None:
            raise InvalidArgument(f"unit {op} needs a unit name")
        verbs: dict[str, Callable[[str], list[core.Action]]] = {
            "start": e.start, "stop": e.stop, "restart": e.restart}  # fmt: skip
        fn = verbs.get(op)
        if fn is None:
            raise InvalidArgument(f"unknown unit operation {op!r} (start, stop, restart, reset-failed)")
        self.do(fn(name))
        return [self.row(name)]

    def row(self, name: str) -> dict[str, Any]:
        st = self.engine.status(name)
        u = self.units[name]
        return {"unit": name, "state": st.state.value, "sub": st.sub, "result": st.result.value,
                "job": st.job.value if st.job is not None else "", "restarts": st.restarts,
                "agent": self.agent.get(name, 0), "description": u.description,
                "source": u.source, "since_ns": st.since_ns,
                "watchdog_s": None if u.watchdog_ns == INFINITY else u.watchdog_ns / 1e9}  # fmt: skip


INITD: Key[InitService] = Key("initd")


def _ctl_rights(k: Kernel, a: Agent, auth_slot: Any) -> None:
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.SUPERVISOR)


def sys_unit_notify(k: Kernel, a: Agent, state: Any) -> None:
    """sd_notify: ``READY=1`` and/or ``WATCHDOG=1``, one per line, from a unit's agent."""
    if type(state) is not str or len(state) > 4096:
        raise InvalidArgument("notify state must be a str such as 'READY=1'")
    k.ext[INITD].notify(a, state)


def sys_unit_list(k: Kernel, a: Agent, name: Any = None) -> list[dict[str, Any]]:
    """Every unit's status, or one unit's with its recent log lines."""
    svc = k.ext[INITD]
    if name is None:
        return [svc.row(n) for n in svc.engine.units()]
    if type(name) is not str:
        raise InvalidArgument("unit name must be a str")
    row = svc.row(name)
    row["log"] = [[t, line] for t, line in svc.logs.get(name, ())]
    return [row]


def sys_unit_ctl(k: Kernel, a: Agent, auth_slot: Any, op: Any, name: Any = None) -> list[dict[str, Any]]:
    """start, stop, restart, reset-failed (needs SUPERVISOR on the authority)."""
    _ctl_rights(k, a, auth_slot)
    if type(op) is not str or (name is not None and type(name) is not str):
        raise InvalidArgument("op and unit name must be strs")
    return k.ext[INITD].command(op, name)


def sys_unit_cat(k: Kernel, a: Agent, name: Any) -> dict[str, Any]:
    """The unit's file (its source and text)."""
    svc = k.ext[INITD]
    if type(name) is not str or name not in svc.units:
        raise NoSuchObject(f"no unit named {name!r}")
    u = svc.units[name]
    text = ""
    if u.source.startswith("<shipped>/"):
        from importlib import resources

        text = (resources.files("aios.kmod.initd") / "shipped" / u.source.split("/", 1)[1]).read_text()
    elif Path(u.source).is_file():
        text = Path(u.source).read_text()
    return {"unit": name, "source": u.source, "text": text}


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.UNIT_NOTIFY: sys_unit_notify,
    Sys.UNIT_LIST: sys_unit_list,
    Sys.UNIT_CTL: sys_unit_ctl,
    Sys.UNIT_CAT: sys_unit_cat,
}


def install(k: Kernel, cfg: Any) -> InitService | None:
    """Register the block; with ``cfg.initd``, load the units and boot ``operational.target``."""
    k.registry.syscalls.block("initd").add_all(HANDLERS)
    if not getattr(cfg, "initd", False):
        return None
    home = getattr(cfg, "home", None)
    local = load_dir(Path(home) / "units") if home is not None else []
    svc = InitService(k, merge_units(shipped_units(), local))
    k.ext[INITD] = svc
    k.registry.on_agent_exit(svc.exited)
    svc.do(svc.engine.boot())
    return svc
