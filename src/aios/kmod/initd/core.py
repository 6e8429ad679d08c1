"""initd's engine: systemd's job and unit state machines, sans-IO, on an injected clock.

The engine never starts a process, sleeps or reads a file.  It is given the
units (already parsed and checked, :mod:`aios.kmod.initd.units` and
:mod:`aios.kmod.initd.graph`) and a clock, and it is driven two ways:

* **commands** (:meth:`Engine.start`, :meth:`~Engine.stop`,
  :meth:`~Engine.restart`, :meth:`~Engine.reset_failed`,
  :meth:`~Engine.boot`, :meth:`~Engine.shutdown`), what ``aios unit ...`` asks;
* **events** (:meth:`Engine.handle`): what the kernel saw happen to a unit's
  agent: :class:`Started`, :class:`StartFailed`, :class:`Ready` (the
  ``notify`` ready call, sd_notify's ``READY=1``), :class:`Pet` (``WATCHDOG=1``),
  :class:`Exited` (with the exit kind and status) and :class:`TimerFired`.

Each returns the list of *actions* the kernel module must carry out, in
order: :class:`StartUnit`, :class:`StopUnit` (a polite stop, SIGTERM's
place), :class:`KillUnit` (SIGKILL's), :class:`ArmTimer`/:class:`CancelTimer`,
and the notifications :class:`Changed` and :class:`JobDone` that become
events and ``aios up``'s progress.

**Jobs.**  As in systemd, a command becomes a *transaction* of jobs
(start, stop, or restart = stop then start) computed from the graph before
anything changes: a start pulls in ``Wants``/``Requires``/``BindsTo`` (and
``WantedBy``/``RequiredBy`` members of targets), adds stop jobs for units it
``Conflicts`` with (and fails, changing nothing, if the conflict is inside the
transaction); a stop reaches the units that ``Requires``/``BindsTo``/``PartOf``
it.  A start job runs when no unit it is ordered ``After`` still has a start
job or is activating, so independent units start together and a chain starts
in order; a stop job runs when no unit ordered after it is still running or
stopping, so stop order is the exact reverse.  When a start job runs, every
``Requires``/``BindsTo`` unit it is also ordered after must be active, else
the job fails with result ``dependency`` and the unit is never started
(``Wants`` never fails anyone).  AIOS also orders a start after the stop of a
unit it conflicts with, so the two never run at once.

**Units.**  A unit's active state is systemd's (inactive, activating, active,
deactivating, failed) with a sub-state.  A ``simple`` service is active once
started; a ``notify`` service once it makes its ready call, and if that does
not come within ``TimeoutStartSec`` it is killed and its result is
``timeout``.  With ``WatchdogSec`` an active service must pet the watchdog
within that interval or be killed with result ``watchdog``.  When a run ends
by itself its result (see :mod:`aios.kmod.initd.restart`) decides, through
systemd's ``Restart=`` table, between an automatic restart after
``RestartSec`` (state activating, sub-state ``auto-restart``) and settling in
inactive (result ``success``) or failed.  A unit that auto-restarts takes the
units that require, bind to or are part of it along: they are restarted
after it.  A unit that goes down for good stops the units bound to it
(``BindsTo``); ``Requires`` dependents keep running (systemd propagates only
explicit stops along ``Requires``).  Every start counts against
``StartLimitBurst`` within ``StartLimitIntervalSec``; a start over the limit
is refused, the unit becomes failed with result ``start-limit-hit`` and stays
so until :meth:`Engine.reset_failed`.

**Timers.**  The engine asks for timers with :class:`ArmTimer` (unit, kind,
deadline, token) and is told with :class:`TimerFired`; a token that is not the
current one for that unit and kind is stale and ignored, so the kernel never
has to cancel a timer exactly.

Events that make no sense in the unit's state (an exit from a unit with no
agent) raise :class:`~aios.abi.errors.IllegalTransition` and change nothing;
harmless repeats (a second ready call, a pet while not active) are ignored,
as systemd ignores them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from aios.abi.errors import IllegalTransition, InvalidArgument, NoSuchObject
from aios.kmod.initd.graph import UnitGraph
from aios.kmod.initd.restart import ExitKind, Result, classify, restart_wanted
from aios.kmod.initd.units import INFINITY, ServiceType, Unit, UnitKind

BOOT_TARGETS = (
    "kernel-measured.target",
    "init.target",
    "services.target",
    "agentsupervisor.target",
    "operational.target",
)
DEFAULT_TARGET = "operational.target"


class ActiveState(StrEnum):
    INACTIVE = "inactive"
    ACTIVATING = "activating"
    ACTIVE = "active"
    DEACTIVATING = "deactivating"
    FAILED = "failed"


class JobType(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"


class TimerKind(StrEnum):
    START_TIMEOUT = "start-timeout"
    STOP_TIMEOUT = "stop-timeout"
    WATCHDOG = "watchdog"
    RESTART = "restart"


# -- events (input) -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Started:
    """The unit's agent exists (spawned)."""

    unit: str


@dataclass(frozen=True, slots=True)
class StartFailed:
    """The unit's agent could not be spawned at all."""

    unit: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ready:
    """The unit made its ready call (sd_notify READY=1)."""

    unit: str


@dataclass(frozen=True, slots=True)
class Pet:
    """The unit petted its watchdog (sd_notify WATCHDOG=1)."""

    unit: str


@dataclass(frozen=True, slots=True)
class Exited:
    """The unit's agent ended: an exit code or a signal number."""

    unit: str
    kind: ExitKind
    status: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    unit: str
    timer: TimerKind
    token: int


Event = Started | StartFailed | Ready | Pet | Exited | TimerFired


# -- actions (output) -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StartUnit:
    """Spawn the unit's agent (entry or image, executor, rights, quota from ``unit``)."""

    unit: Unit


@dataclass(frozen=True, slots=True)
class StopUnit:
    """Ask the unit's agent to stop (SIGTERM's place); it must end by itself."""

    unit: str
    reason: str


@dataclass(frozen=True, slots=True)
class KillUnit:
    """End the unit's agent now (SIGKILL's place)."""

    unit: str
    reason: str


@dataclass(frozen=True, slots=True)
class ArmTimer:
    unit: str
    timer: TimerKind
    at_ns: int
    token: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    unit: str
    timer: TimerKind


@dataclass(frozen=True, slots=True)
class Changed:
    """A unit's state changed (an event and a line of ``aios up`` progress)."""

    unit: str
    state: ActiveState
    sub: str
    result: Result


@dataclass(frozen=True, slots=True)
class JobDone:
    """A job finished: ``done``, ``failed``, ``dependency`` or ``canceled``."""

    unit: str
    job: JobType
    result: str


Action = StartUnit | StopUnit | KillUnit | ArmTimer | CancelTimer | Changed | JobDone


@dataclass(frozen=True, slots=True)
class UnitStatus:
    """What ``aios unit status`` shows and the journal keeps."""

    name: str
    state: ActiveState
    sub: str
    result: Result
    job: JobType | None
    restarts: int
    starts_in_window: int
    since_ns: int


@dataclass(slots=True)
class _Run:
    unit: Unit
    state: ActiveState = ActiveState.INACTIVE
    sub: str = "dead"
    result: Result = Result.SUCCESS
    job: JobType | None = None  # RESTART is the stop half; it becomes START once stopped
    running: bool = False  # an agent exists (StartUnit issued, not yet exited)
    stopping: bool = False  # the current agent was asked to stop
    kill_reason: Result | None = None  # we killed it for a timeout or the watchdog
    restart_due: bool = False  # its RestartSec has passed: the start job may run
    restarts: int = 0
    starts: deque[int] = field(default_factory=deque)
    timers: dict[TimerKind, int] = field(default_factory=dict)
    since_ns: int = 0


class Engine:
    """The unit manager.  Every public method returns the actions to carry out."""

    def __init__(
        self, units: Iterable[Unit], clock: Callable[[], int], disabled: Iterable[str] = ()
    ) -> None:
        self.graph = UnitGraph(units, disabled)
        self.clock = clock
        self._runs = {n: _Run(u) for n, u in self.graph.units.items()}
        self._token = 0

    # -- reading --------------------------------------------------------------------------
    def status(self, name: str) -> UnitStatus:
        r = self._run(name)
        now = self.clock()
        window = r.unit.start_limit_interval_ns
        n = sum(1 for t in r.starts if window == INFINITY or t > now - window)
        return UnitStatus(name, r.state, r.sub, r.result, r.job, r.restarts, n, r.since_ns)

    def state(self, name: str) -> ActiveState:
        return self._run(name).state

    def units(self) -> list[str]:
        return sorted(self._runs)

    def snapshot(self) -> list[UnitStatus]:
        """Every unit's status (what the journal keeps about units)."""
        return [self.status(n) for n in sorted(self._runs)]

    def _run(self, name: str) -> _Run:
        r = self._runs.get(name)
        if r is None:
            raise NoSuchObject(f"no unit named {name!r}")
        return r

    # -- commands ---------------------------------------------------------------------------
    def boot(self, target: str = DEFAULT_TARGET) -> list[Action]:
        """Start the boot target (whitepaper 4.1's stages are targets ordered one after another)."""
        return self.start(target)

    def start(self, name: str) -> list[Action]:
        self._run(name)
        closure = self.graph.start_closure(name)
        # conflicts: inside the transaction they cannot be resolved; outside, they are stopped
        to_stop: set[str] = set()
        for n in sorted(closure):
            for c in sorted(self.graph.conflicts[n]):
                if c in closure:
                    raise InvalidArgument(
                        f"cannot start {name}: {n} conflicts with {c} and both are needed"
                    )
                rc = self._runs[c]
                if rc.state not in (ActiveState.INACTIVE, ActiveState.FAILED) or rc.job is not None:
                    to_stop |= self.graph.stop_closure(c)
        if to_stop & closure:
            bad = sorted(to_stop & closure)
            raise InvalidArgument(f"cannot start {name}: it would have to stop {', '.join(bad)}")
        out: list[Action] = []
        for n in sorted(to_stop):
            self._add_stop(n, out)
        for n in sorted(closure):
            r = self._runs[n]
            if r.job is JobType.STOP:
                out.append(JobDone(n, JobType.STOP, "canceled"))
                # a stop that has not run yet is superseded; one under way is finished first
                r.job = JobType.RESTART if r.stopping else None
            settled = r.state is ActiveState.ACTIVE or r.sub == "auto-restart"
            if r.job is None and not settled and not (r.state is ActiveState.ACTIVATING and r.running):
                r.job = JobType.START
        self._dispatch(out)
        return out

    def stop(self, name: str) -> list[Action]:
        self._run(name)
        out: list[Action] = []
        for n in sorted(self.graph.stop_closure(name)):
            self._add_stop(n, out)
        self._dispatch(out)
        return out

    def restart(self, name: str) -> list[Action]:
        """Stop ``name`` and the units its stop reaches, then start them again."""
        self._run(name)
        out: list[Action] = []
        for n in sorted(self.graph.stop_closure(name)):
            r = self._runs[n]
            if n == name or r.running or r.state in (ActiveState.ACTIVE, ActiveState.ACTIVATING):
                self._add_restart(n, out)
        self._dispatch(out)
        return out

    def shutdown(self) -> list[Action]:
        """Stop every unit, in the exact reverse of the start order."""
        out: list[Action] = []
        for n in sorted(self._runs):
            self._add_stop(n, out)
        self._dispatch(out)
        return out

    def reset_failed(self, name: str | None = None) -> list[Action]:
        """Forget a failure and the start-limit count (``systemctl reset-failed``)."""
        out: list[Action] = []
        for n in [name] if name is not None else sorted(self._runs):
            r = self._run(n)
            r.starts.clear()
            r.restarts = 0
            if r.state is ActiveState.FAILED:
                r.result = Result.SUCCESS
                self._set(r, ActiveState.INACTIVE, "dead", out)
        return out

    # -- events ------------------------------------------------------------------------------
    def handle(self, ev: Event) -> list[Action]:
        r = self._run(ev.unit)
        out: list[Action] = []
        if isinstance(ev, Started):
            if not r.running or r.state not in (ActiveState.ACTIVATING, ActiveState.DEACTIVATING):
                raise IllegalTransition(f"{ev.unit}: started while {r.state.value}/{r.sub}")
            if r.state is ActiveState.ACTIVATING and r.unit.type is ServiceType.SIMPLE:
                self._became_active(r, out)
        elif isinstance(ev, Ready):
            if (r.state is ActiveState.ACTIVATING and r.sub == "start" and r.running
                    and r.unit.type is ServiceType.NOTIFY):  # fmt: skip
                self._became_active(r, out)
        elif isinstance(ev, Pet):
            if r.state is ActiveState.ACTIVE and r.unit.watchdog_ns != INFINITY and r.running:
                self._arm(r, TimerKind.WATCHDOG, r.unit.watchdog_ns, out)
        elif isinstance(ev, StartFailed | Exited):
            if not r.running:
                raise IllegalTransition(f"{ev.unit}: exit reported but it has no agent")
            r.running = False
            for kind in (TimerKind.START_TIMEOUT, TimerKind.STOP_TIMEOUT, TimerKind.WATCHDOG):
                self._cancel(r, kind, out)
            if isinstance(ev, StartFailed):
                kind_, status, result = None, 0, Result.RESOURCES
            else:
                kind_, status = ev.kind, ev.status
                result = classify(ev.kind, ev.status, r.unit.success_exit_status)
            if r.kill_reason is not None:
                result, r.kill_reason = r.kill_reason, None
            if r.stopping:
                self._stopped(r, result, out)
            else:
                self._run_ended(r, result, kind_, status, out)
        elif isinstance(ev, TimerFired):
            if r.timers.get(ev.timer) != ev.token:
                return out  # stale: re-armed or cancelled since
            del r.timers[ev.timer]
            self._timer(r, ev.timer, out)
        else:
            raise InvalidArgument(f"unknown initd event {ev!r}")
        self._dispatch(out)
        return out

    # -- jobs ----------------------------------------------------------------------------------
    def _add_stop(self, n: str, out: list[Action]) -> None:
        r = self._runs[n]
        if r.job is JobType.START:
            r.job = None
            out.append(JobDone(n, JobType.START, "canceled"))
        if r.state in (ActiveState.INACTIVE, ActiveState.FAILED) and not r.running:
            return
        r.job = JobType.STOP

    def _add_restart(self, n: str, out: list[Action]) -> None:
        r = self._runs[n]
        if r.job is JobType.START:
            return  # not running yet: the start is the restart
        r.job = JobType.RESTART
        self._stop_conflicts(n, out)

    def _stop_conflicts(self, n: str, out: list[Action]) -> None:
        """A start outside a transaction (a restart) stops what ``n`` conflicts with."""
        for c in sorted(self.graph.conflicts[n]):
            rc = self._runs[c]
            if rc.running or rc.state in (ActiveState.ACTIVE, ActiveState.ACTIVATING) or rc.job in (
                JobType.START, JobType.RESTART
            ):
                for m in sorted(self.graph.stop_closure(c) - {n}):
                    self._add_stop(m, out)

    def _dispatch(self, out: list[Action]) -> None:
        """Run every runnable job, in waves: a wave is what is runnable now, by name."""
        while True:
            wave = [
                r for _, r in sorted(self._runs.items())
                if (r.job is JobType.START and self._start_runnable(r))
                or (r.job in (JobType.STOP, JobType.RESTART) and not r.stopping
                    and self._stop_runnable(r))
            ]  # fmt: skip
            if not wave:
                return
            for r in wave:
                if r.job is JobType.START:
                    self._run_start(r, out)
                elif r.job in (JobType.STOP, JobType.RESTART) and not r.stopping:
                    self._run_stop(r, out)

    def _start_runnable(self, r: _Run) -> bool:
        if r.running:
            return False
        if r.state not in (ActiveState.INACTIVE, ActiveState.FAILED) and not r.restart_due:
            return False
        for p in self.graph.after[r.unit.name]:
            rp = self._runs[p]
            if rp.job in (JobType.START, JobType.RESTART) or rp.state is ActiveState.ACTIVATING:
                return False
        for c in self.graph.conflicts[r.unit.name]:
            rc = self._runs[c]
            if rc.job is not None or rc.state is ActiveState.DEACTIVATING or rc.running:
                return False
        return True

    def _stop_runnable(self, r: _Run) -> bool:
        for q in self.graph.before[r.unit.name]:
            rq = self._runs[q]
            if rq.state is ActiveState.DEACTIVATING or (
                rq.job in (JobType.STOP, JobType.RESTART)
                and (rq.running or rq.state is ActiveState.ACTIVE)
            ):
                return False
        return True

    def _run_start(self, r: _Run, out: list[Action]) -> None:
        name = r.unit.name
        for d in sorted(self.graph.needs[name] & self.graph.after[name]):
            if self._runs[d].state is not ActiveState.ACTIVE:
                r.job = None
                out.append(JobDone(name, JobType.START, "dependency"))
                if r.restart_due:  # an automatic restart that cannot happen: down for good
                    r.restart_due = False
                    self._set(r, ActiveState.FAILED, "failed", out)
                    self._settled_down(r, out)
                return
        if r.unit.kind is UnitKind.TARGET:
            r.result = Result.SUCCESS
            r.job = None
            self._set(r, ActiveState.ACTIVE, "active", out)
            out.append(JobDone(name, JobType.START, "done"))
            return
        self._spawn(r, out)

    def _spawn(self, r: _Run, out: list[Action]) -> None:
        """One start of a service, counted against its start limit."""
        u = r.unit
        now = self.clock()
        window = u.start_limit_interval_ns
        if window != INFINITY:
            while r.starts and r.starts[0] <= now - window:
                r.starts.popleft()
        if u.start_limit_burst > 0 and len(r.starts) >= u.start_limit_burst:
            r.result = Result.START_LIMIT_HIT
            self._set(r, ActiveState.FAILED, "failed", out)
            self._settled_down(r, out)
            return
        r.starts.append(now)
        r.restart_due = False
        r.result = Result.SUCCESS
        r.running = True
        r.stopping = False
        self._set(r, ActiveState.ACTIVATING, "start", out)
        out.append(StartUnit(u))
        if u.type is ServiceType.NOTIFY and u.timeout_start_ns != INFINITY:
            self._arm(r, TimerKind.START_TIMEOUT, u.timeout_start_ns, out)

    def _became_active(self, r: _Run, out: list[Action]) -> None:
        self._cancel(r, TimerKind.START_TIMEOUT, out)
        self._set(r, ActiveState.ACTIVE, "running", out)
        if r.unit.watchdog_ns != INFINITY:
            self._arm(r, TimerKind.WATCHDOG, r.unit.watchdog_ns, out)
        if r.job is JobType.START:
            r.job = None
            out.append(JobDone(r.unit.name, JobType.START, "done"))

    def _run_stop(self, r: _Run, out: list[Action]) -> None:
        name = r.unit.name
        if r.sub == "auto-restart":
            r.restart_due = False
            self._cancel(r, TimerKind.RESTART, out)
            self._set(r, ActiveState.INACTIVE if r.result is Result.SUCCESS else ActiveState.FAILED,
                      "dead" if r.result is Result.SUCCESS else "failed", out)  # fmt: skip
            self._stop_done(r, out)
        elif not r.running:
            if r.state is ActiveState.ACTIVE:  # a target
                self._set(r, ActiveState.INACTIVE, "dead", out)
            self._stop_done(r, out)
        else:
            r.stopping = True
            self._cancel(r, TimerKind.START_TIMEOUT, out)
            self._cancel(r, TimerKind.WATCHDOG, out)
            self._set(r, ActiveState.DEACTIVATING, "stop", out)
            out.append(StopUnit(name, "restart" if r.job is JobType.RESTART else "stop"))
            if r.unit.timeout_stop_ns != INFINITY:
                self._arm(r, TimerKind.STOP_TIMEOUT, r.unit.timeout_stop_ns, out)

    def _stopped(self, r: _Run, result: Result, out: list[Action]) -> None:
        """The agent we asked to stop has ended."""
        r.stopping = False
        r.result = result
        if result is Result.SUCCESS:
            self._set(r, ActiveState.INACTIVE, "dead", out)
        else:
            self._set(r, ActiveState.FAILED, "failed", out)
        self._stop_done(r, out)
        if r.job is None:
            self._settled_down(r, out, stopped=True)

    def _stop_done(self, r: _Run, out: list[Action]) -> None:
        if r.job is JobType.RESTART:
            r.job = JobType.START  # the start half; JobDone when it is active
        elif r.job is JobType.STOP:
            r.job = None
            out.append(JobDone(r.unit.name, JobType.STOP, "done"))

    def _run_ended(
        self, r: _Run, result: Result, kind: ExitKind | None, status: int, out: list[Action]
    ) -> None:
        """The agent ended without being asked to: restart per Restart=, or settle."""
        u = r.unit
        r.result = result
        if restart_wanted(u.restart, result, kind, status, u.restart_prevent_exit_status,
                          u.restart_prevent_signals):  # fmt: skip
            delay = u.restart_delay_ns(r.restarts)
            r.restarts += 1
            self._set(r, ActiveState.ACTIVATING, "auto-restart", out)
            self._arm(r, TimerKind.RESTART, delay, out)
            # what requires, binds to or is part of it is restarted after it
            reached: set[str] = set()
            for d in self.graph.propagates_to[u.name]:
                reached |= self.graph.stop_closure(d)
            for d in sorted(reached - {u.name}):
                rd = self._runs[d]
                if rd.job is None and (rd.running or rd.state is ActiveState.ACTIVE):
                    self._add_restart(d, out)
            return
        if result is Result.SUCCESS:
            self._set(r, ActiveState.INACTIVE, "dead", out)
        else:
            self._set(r, ActiveState.FAILED, "failed", out)
        self._settled_down(r, out)

    def _settled_down(self, r: _Run, out: list[Action], stopped: bool = False) -> None:
        """The unit is down for good: finish its start job and stop what is bound to it."""
        if r.job is JobType.START:
            r.job = None
            out.append(JobDone(r.unit.name, JobType.START, "failed"))
        if stopped:
            return
        for d in sorted(self.graph.bound_by[r.unit.name]):
            for n in sorted(self.graph.stop_closure(d)):
                self._add_stop(n, out)

    def _timer(self, r: _Run, kind: TimerKind, out: list[Action]) -> None:
        name = r.unit.name
        if kind is TimerKind.RESTART and r.sub == "auto-restart":
            # an automatic restart is a start: ordered, and stopping what it conflicts with
            r.restart_due = True
            if r.job is None:
                r.job = JobType.START
            self._stop_conflicts(name, out)
        elif kind is TimerKind.START_TIMEOUT and r.running and r.sub == "start":
            r.kill_reason = Result.TIMEOUT
            self._set(r, ActiveState.DEACTIVATING, "start-timeout", out)
            out.append(KillUnit(name, "start timeout: no ready call within TimeoutStartSec"))
        elif kind is TimerKind.WATCHDOG and r.running and r.state is ActiveState.ACTIVE:
            r.kill_reason = Result.WATCHDOG
            self._set(r, ActiveState.DEACTIVATING, "watchdog", out)
            out.append(KillUnit(name, "watchdog timeout: not petted within WatchdogSec"))
        elif kind is TimerKind.STOP_TIMEOUT and r.running and r.stopping:
            r.kill_reason = Result.TIMEOUT
            self._set(r, ActiveState.DEACTIVATING, "stop-sigkill", out)
            out.append(KillUnit(name, "stop timeout: still running after TimeoutStopSec"))

    # -- helpers -------------------------------------------------------------------------------
    def _set(self, r: _Run, state: ActiveState, sub: str, out: list[Action]) -> None:
        if (r.state, r.sub) != (state, sub):
            r.state, r.sub = state, sub
            r.since_ns = self.clock()
            out.append(Changed(r.unit.name, state, sub, r.result))

    def _arm(self, r: _Run, kind: TimerKind, delay_ns: int, out: list[Action]) -> None:
        self._token += 1
        r.timers[kind] = self._token
        out.append(ArmTimer(r.unit.name, kind, self.clock() + delay_ns, self._token))

    def _cancel(self, r: _Run, kind: TimerKind, out: list[Action]) -> None:
        if r.timers.pop(kind, None) is not None:
            out.append(CancelTimer(r.unit.name, kind))
