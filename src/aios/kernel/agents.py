"""The agent table: AIOS's process table.

An agent is AIOS's process.  Its record (:class:`Agent`) holds what the
kernel knows about it: id, parent, children, lifecycle state, capability
space, mailbox, page table, scheduling entity, the coroutine or remote
channel that runs its code, and the *declared state*: a plain, msgpack-able
dict the agent keeps in ``ctx.state``.  The declared state is what lifecycle
operations act on (clone copies it, merge folds it, split partitions it,
upgrade keeps it): a coroutine's stack cannot be copied, so, as with a Unix
process image, the kernel works on the data the agent exposes to it.

The lifecycle is a state machine written as a transition table
(h11-style): :data:`TRANSITIONS` maps ``(state, event)`` to the next state.
:meth:`AgentTable.transition` raises :class:`~aios.abi.errors.IllegalTransition`
for any pair not in the table and then nothing has changed.

    EMBRYO --start--> READY --dispatch--> RUNNING --block--> BLOCKED
                        ^  <---preempt---    |  <---wake----'   |
                        |                    v                  |
                        '---resume--- SUSPENDED <---suspend-----'
    (any live state) --exit--> ZOMBIE --reap--> DEAD
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aios.abi import limits
from aios.abi.errors import (
    AgentGone,
    IllegalTransition,
    InvalidArgument,
    NoSuchAgent,
    QuotaExceeded,
)


class AgentState(Enum):
    EMBRYO = "embryo"
    READY = "ready"
    RUNNING = "running"
    BLOCKED = "blocked"
    SUSPENDED = "suspended"
    ZOMBIE = "zombie"
    DEAD = "dead"


S = AgentState
LIVE = frozenset({S.EMBRYO, S.READY, S.RUNNING, S.BLOCKED, S.SUSPENDED})

TRANSITIONS: dict[tuple[AgentState, str], AgentState] = {
    (S.EMBRYO, "start"): S.READY,
    (S.READY, "dispatch"): S.RUNNING,
    (S.RUNNING, "preempt"): S.READY,
    (S.RUNNING, "block"): S.BLOCKED,
    (S.BLOCKED, "wake"): S.READY,
    (S.READY, "suspend"): S.SUSPENDED,
    (S.RUNNING, "suspend"): S.SUSPENDED,
    (S.BLOCKED, "suspend"): S.SUSPENDED,
    (S.SUSPENDED, "wake"): S.SUSPENDED,  # the wake is remembered; resume makes it READY
    (S.SUSPENDED, "resume"): S.READY,
    (S.SUSPENDED, "resume_blocked"): S.BLOCKED,
    **{(s, "exit"): S.ZOMBIE for s in LIVE},
    (S.ZOMBIE, "reap"): S.DEAD,
}


class Agent:
    """One agent's kernel record.  Slotted: 10,000+ of these must stay small."""

    __slots__ = (
        "aid",
        "auth_charge",
        "behavior",
        "children",
        "confinement",
        "controls",
        "coro",
        "cspace",
        "detached",
        "entry",
        "executor",
        "exit_status",
        "fault",
        "how",
        "kind",
        "mailbox",
        "name",
        "obj",
        "parent",
        "pending",
        "pending_exc",
        "pt",
        "reply_wait",
        "sched",
        "spec",
        "state",
        "status",
        "subs",
        "supervisor",
        "syscalls",
        "trace",
        "upgrade_to",
        "wait",
    )

    def __init__(self, aid: int, parent: int, name: str) -> None:
        self.aid = aid
        self.parent = parent
        self.name = name
        self.status: AgentState = AgentState.EMBRYO
        self.children: set[int] = set()
        self.controls: Any = ()  # control capabilities made for others at spawn
        self.cspace: Any = None
        self.obj: Any = None  # its AGENT kernel object (what control capabilities name)
        self.mailbox: Any = None
        self.pt: Any = None
        self.sched: Any = None
        self.coro: Any = None
        self.confinement: Any = None  # aios.kernel.confinement.Confinement, set by spawn
        self.executor: Any = None
        self.entry: Any = None
        self.behavior: Any = None
        self.pending: Any = None  # value to send into the coroutine when it next runs
        self.pending_exc: BaseException | None = None
        self.wait: Any = None  # the wait it is parked on (for timeouts and kill)
        self.reply_wait: Any = None
        self.state: dict[str, Any] = {}  # the declared state (ctx.state)
        self.spec: dict[str, Any] = {}
        self.subs: Any = None
        self.exit_status: Any = None
        self.fault: str | None = None
        self.how = ""  # how it ended: exited, faulted or killed
        self.trace: str | None = None  # the traceback of a fault (its last TRACE_MAX characters)
        self.kind = "inproc"
        self.supervisor = False
        self.detached = False
        self.upgrade_to: Any = None
        self.auth_charge: Any = None
        self.syscalls = 0

    @property
    def alive(self) -> bool:
        return self.status in LIVE

    def __repr__(self) -> str:
        return f"<Agent {self.aid} {self.name!r} {self.status.value}>"


@dataclass(frozen=True, slots=True)
class DeadAgent:
    """What a capability to a reaped agent still names: its exit record.

    When an agent is reaped its AGENT object's payload becomes this record, so
    the :class:`Agent` (its capability space, mailbox, coroutine, ...) is freed
    even while a parent still holds a control capability; using one answers
    :class:`~aios.abi.errors.AgentGone` with the record attached."""

    aid: int
    name: str
    how: str
    exit: Any
    fault: str | None
    usage: dict[str, Any] | None = None  # final resource use (Wasm fuel), for SCHED_STATS

    def record(self) -> dict[str, Any]:
        return {"agent": self.aid, "name": self.name, "how": self.how, "exit": self.exit,
                "fault": self.fault}

    def sched_row(self) -> dict[str, Any]:
        return {"aid": self.aid, "name": self.name, "agent_state": AgentState.DEAD.value,
                **(self.usage or {})}


def agent_of(payload: Any) -> Agent:
    """The live or zombie agent an AGENT object names; AgentGone once it was reaped."""
    if type(payload) is Agent:
        return payload
    if type(payload) is DeadAgent:
        raise AgentGone(f"agent {payload.aid} has ended ({payload.how}) and was reaped",
                        **payload.record())
    raise AgentGone("the agent this capability named is gone")


class AgentTable:
    """Agents by id, the parent/child tree, and the state machine."""

    def __init__(self) -> None:
        self._agents: dict[int, Agent] = {}
        self._next = 1
        self.live = 0

    @property
    def next_id(self) -> int:
        """The id the next agent will get (ids are never reused)."""
        return self._next

    def resume_above(self, aid: int) -> None:
        """Ids up to ``aid`` were used by an earlier boot (the journal): never reuse them."""
        self._next = max(self._next, aid + 1)

    def create(self, parent: int, name: str, aid: int | None = None) -> Agent:
        """A new agent; ``aid``: the id it had before a crash (the journal restores it),
        which must be free and below :attr:`next_id`."""
        if not isinstance(name, str) or len(name) > limits.AGENT_NAME_MAX:
            raise InvalidArgument(f"agent name must be a str of at most {limits.AGENT_NAME_MAX}")
        if self.live >= limits.MAX_AGENTS:
            raise QuotaExceeded("agent table is full")
        if aid is None:
            aid = self._next
            self._next += 1
        elif type(aid) is not int or aid <= 0 or aid >= self._next or aid in self._agents:
            raise InvalidArgument(f"agent id {aid!r} cannot be restored")
        a = Agent(aid, parent, name or f"agent-{aid}")
        self._agents[aid] = a
        self.live += 1
        p = self._agents.get(parent)
        if p is not None:
            p.children.add(aid)
        return a

    def get(self, aid: Any) -> Agent:
        if type(aid) is not int:
            raise InvalidArgument("agent id must be an int")
        a = self._agents.get(aid)
        if a is None:
            raise NoSuchAgent(f"no agent {aid}")
        return a

    def get_live(self, aid: Any) -> Agent:
        a = self.get(aid)
        if not a.alive:
            raise AgentGone(f"agent {aid} is {a.status.value}")
        return a

    def transition(self, a: Agent, event: str) -> AgentState:
        new = TRANSITIONS.get((a.status, event))
        if new is None:
            raise IllegalTransition(f"agent {a.aid}: no '{event}' from {a.status.value}")
        if a.status in LIVE and new not in LIVE:
            self.live -= 1
        a.status = new
        return new

    def reparent(self, a: Agent, new_parent: int) -> None:
        old = self._agents.get(a.parent)
        if old is not None:
            old.children.discard(a.aid)
        a.parent = new_parent
        np = self._agents.get(new_parent)
        if np is not None:
            np.children.add(a.aid)

    def forget(self, a: Agent) -> None:
        """Drop a DEAD agent's record."""
        if a.status is not AgentState.DEAD:
            raise IllegalTransition(f"agent {a.aid} is {a.status.value}, not dead")
        p = self._agents.get(a.parent)
        if p is not None:
            p.children.discard(a.aid)
        self._agents.pop(a.aid, None)

    def __iter__(self) -> Iterator[Agent]:
        return iter(list(self._agents.values()))

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, aid: object) -> bool:
        return aid in self._agents
