"""Supervision: restart policies, backoff, start limits and fault domains (sans-IO).

Semantics follow systemd units and Erlang/OTP supervisors, the two designs
that have been run in anger longest:

* **Restart policy** per agent (systemd ``Restart=``): ``no`` never
  restarts; ``on-failure`` restarts unless the agent returned normally with
  status 0; ``always`` restarts whatever the reason.  An agent the operator
  asked to stop (:class:`Stop`) is never restarted.
* **Backoff**: consecutive failures wait ``base * 2**(n-1)`` up to ``max``;
  an agent that stayed up for ``stable_ns`` has its count reset.
* **Start limit** (systemd ``StartLimitBurst=``/``StartLimitIntervalSec=``,
  default 5 in 10 s): a start that would be the sixth within the window is
  refused and the agent becomes ``failed`` until :class:`Reset`.
* **Fault domains** (OTP supervision trees): each agent lives in a domain;
  a domain has a strategy (``one_for_one``: restart only the faulty agent;
  ``one_for_all``: stop and restart every agent of the domain) and a restart
  intensity (at most ``max_restarts`` within ``within_ns``).  Exceeding it
  stops the whole domain and escalates to the parent domain, which counts it
  as one failure of its own.  Other domains are not touched.

Input is events (:class:`Started`, :class:`Exited`, :class:`Tick`,
:class:`Stop`, :class:`Reset`); output is actions (:class:`Fault` - the
event record naming the cause -, :class:`RestartAt`, :class:`Start`,
:class:`StopAgent`, :class:`MarkFailed`, :class:`Escalate`).  Time is
passed in; nothing here sleeps or does I/O.  Child states move only along
:data:`TRANSITIONS`; an illegal move raises and changes nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from aios.abi.errors import (
    AlreadyExists,
    IllegalTransition,
    InvalidArgument,
    NoSuchAgent,
    NoSuchObject,
)
from aios.abi.faults import FaultCause

SECOND = 1_000_000_000


class RestartPolicy(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"


class State(Enum):
    STARTING = "starting"  # a Start was issued, Started not yet seen
    RUNNING = "running"
    BACKOFF = "backoff"  # waiting for its restart time
    STOPPED = "stopped"  # exited, no restart
    FAILED = "failed"  # start limit hit or domain gave up; needs Reset


TRANSITIONS: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.RUNNING, State.STOPPED, State.FAILED, State.BACKOFF}),
    State.RUNNING: frozenset({State.BACKOFF, State.STOPPED, State.FAILED}),
    State.BACKOFF: frozenset({State.STARTING, State.STOPPED, State.FAILED}),
    State.STOPPED: frozenset({State.STARTING}),
    State.FAILED: frozenset({State.STARTING, State.STOPPED}),
}


@dataclass(frozen=True, slots=True)
class ChildSpec:
    agent: int
    policy: RestartPolicy = RestartPolicy.ON_FAILURE
    domain: str = "root"
    backoff_base_ns: int = SECOND // 10
    backoff_max_ns: int = 30 * SECOND
    stable_ns: int = 10 * SECOND
    start_limit_burst: int = 5
    start_limit_interval_ns: int = 10 * SECOND


@dataclass(frozen=True, slots=True)
class DomainSpec:
    name: str
    parent: str | None = "root"
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 10
    within_ns: int = 60 * SECOND


# -- events -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Started:
    agent: int
    now_ns: int


@dataclass(frozen=True, slots=True)
class Exited:
    agent: int
    now_ns: int
    cause: FaultCause
    status: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class Tick:
    now_ns: int


@dataclass(frozen=True, slots=True)
class Stop:
    agent: int


@dataclass(frozen=True, slots=True)
class Reset:
    agent: int


Event = Started | Exited | Tick | Stop | Reset


# -- actions ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fault:
    """The event record of an agent fault, naming its cause."""

    agent: int
    domain: str
    cause: FaultCause
    status: int
    message: str
    now_ns: int


@dataclass(frozen=True, slots=True)
class RestartAt:
    agent: int
    at_ns: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Start:
    agent: int


@dataclass(frozen=True, slots=True)
class StopAgent:
    agent: int
    reason: str


@dataclass(frozen=True, slots=True)
class MarkFailed:
    agent: int
    reason: str


@dataclass(frozen=True, slots=True)
class Escalate:
    domain: str
    parent: str | None
    reason: str


Action = Fault | RestartAt | Start | StopAgent | MarkFailed | Escalate


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    state: State = State.STOPPED
    started_ns: int = 0
    failures: int = 0  # consecutive, for backoff
    starts: deque[int] = field(default_factory=deque)
    restart_at: int = 0
    stop_requested: bool = False


@dataclass(slots=True)
class _Domain:
    spec: DomainSpec
    restarts: deque[int] = field(default_factory=deque)
    failed: bool = False


class Supervisor:
    """The sans-IO supervision state machine for a whole tree of fault domains."""

    def __init__(self) -> None:
        self.children: dict[int, _Child] = {}
        self.domains: dict[str, _Domain] = {"root": _Domain(DomainSpec("root", None))}

    # -- configuration ----------------------------------------------------------------
    def add_domain(self, spec: DomainSpec) -> None:
        if spec.name in self.domains:
            raise AlreadyExists(f"domain {spec.name} exists")
        if spec.parent is not None and spec.parent not in self.domains:
            raise NoSuchObject(f"parent domain {spec.parent} does not exist")
        if spec.max_restarts < 0 or spec.within_ns <= 0:
            raise InvalidArgument("restart intensity must be >= 0 within a positive window")
        self.domains[spec.name] = _Domain(spec)

    def add_child(self, spec: ChildSpec) -> list[Action]:
        """Register an agent and ask for its first start."""
        if spec.agent in self.children:
            raise AlreadyExists(f"agent {spec.agent} already supervised")
        if spec.domain not in self.domains:
            raise NoSuchObject(f"domain {spec.domain} does not exist")
        if spec.start_limit_burst < 1 or spec.backoff_base_ns < 0:
            raise InvalidArgument("start limit burst must be >= 1 and backoff >= 0")
        self.children[spec.agent] = _Child(spec)
        return []

    def remove_child(self, agent: int) -> None:
        """Forget a child that will never start again (stopped, or its parent is gone)."""
        self.children.pop(agent, None)

    def state(self, agent: int) -> State:
        return self._child(agent).state

    def _child(self, agent: int) -> _Child:
        c = self.children.get(agent)
        if c is None:
            raise NoSuchAgent(f"agent {agent} is not supervised")
        return c

    @staticmethod
    def _move(c: _Child, new: State) -> None:
        if new not in TRANSITIONS[c.state]:
            raise IllegalTransition(f"agent {c.spec.agent}: {c.state.value} -> {new.value}")
        c.state = new

    # -- the one entry point ------------------------------------------------------------
    def handle(self, event: Event, now_ns: int | None = None) -> list[Action]:
        if isinstance(event, Started):
            c = self._child(event.agent)
            self._move(c, State.RUNNING)
            c.started_ns = event.now_ns
            return []
        if isinstance(event, Exited):
            return self._exited(event)
        if isinstance(event, Tick):
            return self._tick(event.now_ns)
        if isinstance(event, Stop):
            c = self._child(event.agent)
            c.stop_requested = True
            if c.state in (State.BACKOFF, State.FAILED):
                self._move(c, State.STOPPED)
                return []
            return (
                [StopAgent(event.agent, "stop requested")] if c.state is not State.STOPPED else []
            )
        if isinstance(event, Reset):
            c = self._child(event.agent)
            if c.state is not State.FAILED:
                raise IllegalTransition(f"agent {event.agent} is {c.state.value}, not failed")
            c.starts.clear()
            c.failures = 0
            c.stop_requested = False
            return self._try_start(c, now_ns if now_ns is not None else 0)
        raise InvalidArgument(f"unknown event {event!r}")

    def start(self, agent: int, now_ns: int) -> list[Action]:
        """Explicit (first or manual) start, subject to the start limit."""
        c = self._child(agent)
        c.stop_requested = False
        return self._try_start(c, now_ns)

    def _try_start(self, c: _Child, now_ns: int) -> list[Action]:
        window = c.spec.start_limit_interval_ns
        while c.starts and c.starts[0] <= now_ns - window:
            c.starts.popleft()
        if len(c.starts) >= c.spec.start_limit_burst:
            self._move(c, State.FAILED)
            return [
                MarkFailed(
                    c.spec.agent,
                    f"start limit hit: {len(c.starts)} starts within {window / SECOND:g}s",
                )
            ]
        self._move(c, State.STARTING)
        c.starts.append(now_ns)
        return [Start(c.spec.agent)]

    def _exited(self, ev: Exited) -> list[Action]:
        c = self._child(ev.agent)
        if c.state in (State.BACKOFF, State.FAILED):
            return []  # the exit we asked for (one_for_all sibling, domain stop)
        if c.state is not State.RUNNING and c.state is not State.STARTING:
            raise IllegalTransition(f"agent {ev.agent} exited while {c.state.value}")
        failed = (ev.cause is not FaultCause.EXITED or ev.status != 0) and not c.stop_requested
        out: list[Action] = []
        if failed:
            out.append(Fault(ev.agent, c.spec.domain, ev.cause, ev.status, ev.message, ev.now_ns))
        if c.state is State.RUNNING and ev.now_ns - c.started_ns >= c.spec.stable_ns:
            c.failures = 0
        policy = c.spec.policy
        restart = not c.stop_requested and (
            policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and failed)
        )
        dom = self.domains[c.spec.domain]
        if dom.failed:
            restart = False
        if not restart:
            self._move(c, State.STOPPED)
            return out
        # the domain's restart intensity
        d = dom.spec
        while dom.restarts and dom.restarts[0] <= ev.now_ns - d.within_ns:
            dom.restarts.popleft()
        if len(dom.restarts) >= d.max_restarts:
            self._move(c, State.FAILED)
            out.extend(
                self._give_up_domain(
                    dom,
                    ev.now_ns,
                    f"more than {d.max_restarts} restarts within {d.within_ns / SECOND:g}s",
                )
            )
            return out
        dom.restarts.append(ev.now_ns)
        c.failures = c.failures + 1 if failed else c.failures
        delay = (
            0
            if c.failures == 0
            else min(c.spec.backoff_max_ns, c.spec.backoff_base_ns << (c.failures - 1))
        )
        self._move(c, State.BACKOFF)
        c.restart_at = ev.now_ns + delay
        out.append(RestartAt(ev.agent, c.restart_at, c.failures))
        if d.strategy is Strategy.ONE_FOR_ALL:
            for sib in self._members(d.name):
                if sib is not c and sib.state in (State.RUNNING, State.STARTING):
                    out.append(StopAgent(sib.spec.agent, f"one_for_all: sibling {ev.agent} failed"))
                    sib.restart_at = c.restart_at
                    self._move(sib, State.BACKOFF)
                    out.append(RestartAt(sib.spec.agent, c.restart_at, sib.failures))
        return out

    def _members(self, domain: str) -> list[_Child]:
        return [c for c in self.children.values() if c.spec.domain == domain]

    def _subdomains(self, name: str) -> list[_Domain]:
        return [d for d in self.domains.values() if d.spec.parent == name]

    def _give_up_domain(self, dom: _Domain, now_ns: int, reason: str) -> list[Action]:
        out: list[Action] = []
        stack = [dom]
        while stack:
            d = stack.pop()
            d.failed = True
            for c in self._members(d.spec.name):
                if c.state in (State.RUNNING, State.STARTING):
                    out.append(StopAgent(c.spec.agent, f"domain {dom.spec.name} gave up"))
                if c.state is not State.FAILED and State.FAILED in TRANSITIONS[c.state]:
                    self._move(c, State.FAILED)
                    out.append(
                        MarkFailed(c.spec.agent, f"domain {dom.spec.name} gave up: {reason}")
                    )
            stack.extend(self._subdomains(d.spec.name))
        out.append(Escalate(dom.spec.name, dom.spec.parent, reason))
        parent = self.domains.get(dom.spec.parent) if dom.spec.parent else None
        if parent is not None and not parent.failed:
            p = parent.spec
            while parent.restarts and parent.restarts[0] <= now_ns - p.within_ns:
                parent.restarts.popleft()
            parent.restarts.append(now_ns)
            if len(parent.restarts) > p.max_restarts:
                out.extend(
                    self._give_up_domain(
                        parent, now_ns, f"child domain {dom.spec.name} failed too often"
                    )
                )
        return out

    def _tick(self, now_ns: int) -> list[Action]:
        out: list[Action] = []
        for c in self.children.values():
            if c.state is State.BACKOFF and c.restart_at <= now_ns:
                out.extend(self._try_start(c, now_ns))
        return out

    def reset_domain(self, name: str) -> None:
        """Operator reset of a failed domain (its agents stay failed until Reset)."""
        d = self.domains.get(name)
        if d is None:
            raise NoSuchObject(f"domain {name} does not exist")
        d.failed = False
        d.restarts.clear()
