"""Supervision in the kernel: restart policies, start limits and fault domains.

The decisions are made by the sans-IO :class:`aios.kmod.supervision.core.Supervisor`
(systemd's ``Restart=`` and start limits, OTP's supervision trees); this
module feeds it what the kernel sees and carries out what it decides.

An agent spawned with ``restart="on-failure"`` or ``"always"`` (and an
optional ``domain``) is registered under a *stable id*: the id it first got.
When it ends, the kernel reports the exit with its cause (``exited``,
``exception``, ``killed``, or an out-of-process executor's cause such as
``out-of-fuel``); the supervisor answers with a fault record, a restart time
(exponential backoff), a refusal when the start limit is hit (the agent is
then ``failed`` until reset), or a whole-domain restart or escalation.  A
restart spawns the same entry with the same options under the same parent and
authority, and is announced as ``agent.lifecycle.restarted`` with the old and
new ids.  A kill asked for by its parent or an operator is a stop, never
followed by a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aios.abi.errors import AIOSError, InvalidArgument
from aios.abi.faults import FaultCause
from aios.kernel.agents import Agent
from aios.kernel.capabilities import Capability
from aios.kernel.registry import SUPERVISOR

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel


@dataclass
class Supervised:
    stable: int
    parent: int
    auth: Capability
    entry: Any
    opts: dict[str, Any]
    current: int
    confinement: Any  # the first agent's: every restart is at least as strict
    restarts: int = 0


class Supervision:
    def __init__(self, k: Kernel) -> None:
        from aios.kmod.supervision.core import Supervisor

        self.k = k
        self.core = Supervisor()  # it has a "root" domain
        self.records: dict[int, Supervised] = {}
        self.by_aid: dict[int, int] = {}

    def register(self, a: Agent, parent: Agent, auth: Capability, entry: Any, opts: dict[str, Any],
                 policy: str, domain: str) -> None:
        from aios.kmod.supervision.core import ChildSpec, DomainSpec, RestartPolicy, Started

        try:
            pol = RestartPolicy(policy)
        except ValueError:
            raise InvalidArgument("restart must be 'no', 'on-failure' or 'always'") from None
        if domain not in self.core.domains:
            self.core.add_domain(DomainSpec(domain, parent="root"))
        now = self.k.now()
        self.core.add_child(ChildSpec(a.aid, pol, domain))
        self.core.start(a.aid, now)
        self.core.handle(Started(a.aid, now))
        self.records[a.aid] = Supervised(a.aid, parent.aid, auth, entry, dict(opts), a.aid, a.confinement)
        self.by_aid[a.aid] = a.aid

    def stop(self, a: Agent) -> None:
        """The parent or an operator is killing it: no restart."""
        from aios.kmod.supervision.core import Stop

        stable = self.by_aid.get(a.aid)
        if stable is not None:
            self._run(self.core.handle(Stop(stable)))

    def exited(self, a: Agent) -> None:
        from aios.kmod.supervision.core import Exited

        how = a.how
        stable = self.by_aid.pop(a.aid, None)
        if stable is None:
            return
        cause_text = (a.fault or "").split(":", 1)[0]
        if how == "exited":
            cause = FaultCause.EXITED
        elif how == "killed":
            cause = FaultCause.KILLED
        else:
            try:
                cause = FaultCause(cause_text)
            except ValueError:
                cause = FaultCause.EXCEPTION
        status = 0 if how == "exited" else 1
        self._run(self.core.handle(Exited(stable, self.k.now(), cause, status, a.fault or "")))
        self._forget_if_stopped(stable)

    def _forget_if_stopped(self, stable: int) -> None:
        """A supervised agent that will not be restarted leaves no record behind
        (a failed one stays until an operator resets it)."""
        from aios.kmod.supervision.core import State

        child = self.core.children.get(stable)
        if child is not None and child.state is State.STOPPED:
            self.core.remove_child(stable)
            self.records.pop(stable, None)

    def _run(self, actions: list[Any]) -> None:
        from aios.kmod.supervision import core as sv

        k = self.k
        for act in actions:
            if isinstance(act, sv.Fault):
                k.publish("agent.supervision.fault", act.agent, agent=act.agent, domain=act.domain,
                          cause=str(act.cause), status=act.status, message=act.message)
            elif isinstance(act, sv.RestartAt):
                k.publish("agent.supervision.restart_scheduled", act.agent, agent=act.agent,
                          at_ns=act.at_ns, attempt=act.attempt)
                k.call_at(act.at_ns, self._restart_due, act.agent)
            elif isinstance(act, sv.Start):
                self._respawn(act.agent)
            elif isinstance(act, sv.StopAgent):
                rec = self.records.get(act.agent)
                cur = k.find(rec.current) if rec is not None else None
                if cur is not None and cur.alive:
                    k.kill(cur, reason=act.reason)
            elif isinstance(act, sv.MarkFailed):
                k.publish("agent.supervision.failed", act.agent, agent=act.agent, reason=act.reason)
            elif isinstance(act, sv.Escalate):
                k.publish("agent.supervision.escalated", 0, domain=act.domain, parent=act.parent,
                          reason=act.reason)

    def _restart_due(self, stable: int) -> None:
        self._run(self.core.start(stable, self.k.now()))

    def _respawn(self, stable: int) -> None:
        from aios.kernel.lifecycle import SpawnPlan, spawn
        from aios.kmod.supervision.core import Started

        k = self.k
        rec = self.records.get(stable)
        parent = k.find(rec.parent) if rec is not None else None
        if rec is None or parent is None or not parent.alive or not rec.auth.valid:
            k.publish("agent.supervision.failed", stable, agent=stable, reason="parent or authority gone")
            self.core.remove_child(stable)  # nobody is left to restart it for
            self.records.pop(stable, None)
            return
        try:
            plan = SpawnPlan(parent, rec.auth, rec.opts)
            a, _ctl, _ep = spawn(k, parent, rec.auth, rec.entry, plan, source=rec.confinement,
                                 entry_vetted=True)
        except AIOSError as e:
            k.publish("agent.supervision.failed", stable, agent=stable, reason=f"restart failed: {e}")
            return
        old, rec.current = rec.current, a.aid
        rec.restarts += 1
        self.by_aid[a.aid] = stable
        self.core.handle(Started(stable, k.now()))
        k.publish("agent.lifecycle.restarted", a.aid, agent=a.aid, previous=old, stable=stable,
                  restarts=rec.restarts)


def install(k: Kernel, cfg: Any = None) -> Supervision:
    """The supervision kernel module: the kernel finds it as ``k.ext[SUPERVISOR]`` (spawn
    with ``restart=`` registers, a kill asked for stops) and tells it of every exit."""
    sup = Supervision(k)
    k.ext[SUPERVISOR] = sup
    k.registry.on_agent_exit(sup.exited, before_event=True)  # a restart is decided first
    return sup
