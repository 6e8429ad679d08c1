"""The Cedar engine and the behavior monitor, wired into a running kernel.

Design
------
**Where policy runs.**  Capabilities are checked first, by the syscall
handler (a slot index and a mask).  Policy is asked second, and only on the
operations a policy *marks* (``engine.marks(action)``: a set lookup):

* ``spawn`` (also clone, split, specialize): a lifecycle *pre-hook*.  It runs
  before the spawner's quota is charged and before anything is created, so a
  denied spawn raises :class:`~aios.abi.errors.PolicyDenied` in the spawner and
  leaves no agent, no slot and no charge behind;
* ``kill``: a pre-hook on kill;
* ``grant`` and ``mem_share``: kernel *guards* called by the grant path after
  the capability checks and before the derivation.

**Who the agents are to Cedar.**  Each agent gets an
:class:`~aios.lib.policy.engine.AgentInfo` at spawn: ``type`` and
``publisher`` from its spec (``spec["type"]``, ``spec["publisher"]``,
inheriting the parent's publisher), ``image`` its entry point, and a
``trust`` level that only ever goes *down* the tree: a spec may ask for a
lower trust than the parent's, never a higher one.  Children of init start at
``trusted`` unless their spec says ``system`` (the host that starts root
agents is the operator).  In-process images count as signed: they are code
the operator installed; the isolated and Wasm executors will pass a real
signature check here.

**Settings.**  Resource policies give quotas, scheduling policies a class
and weight, by agent type, trust or publisher.  They are applied by the spawn
post-hook, before the child first runs: quota values *replace the kernel's
built-in defaults* when the spawner asked for none, never exceeding the
spawner's own authority (an explicit quota stands: the spawner holds that
authority and chose to give it); a weight replaces the default 1024 (an
explicit weight stands) and is capped by the CPU-weight quota.  ``rt`` asks for the deadline class, which
admission control may refuse (the refusal is audited and the agent stays
fair).  Settings are cached per (policy generation, type, publisher, image,
trust): settings policies must not condition on an agent's id or name.
Decisions are cached too, keyed by the policy generation and the complete
request (principal and resource entities with all their attributes, and the
context): Cedar is a pure function of the request, the entities and the
policy set, so a repeat is answered from the cache; it is still published
on ``policy.decision`` (with ``cached: true``), so every decision is audited.

**Audit.**  The engine's emit callback publishes every decision (allow and
deny, with the deciding policy ids and the generation) and every reload on
``policy.decision``; the applied settings go out as ``policy.settings``.  The
audit pump records both.

**Reload.**  ``POLICY_RELOAD`` (and ``aios policy reload`` through the
daemon, see :func:`aios.kmod.security.glue.reload_policy`) reloads now; in
addition, at most once a second, the next marked decision polls the policy
files' fingerprint (:class:`~aios.lib.policy.files.PolicyWatcher`), so
an edit takes effect without a command.  An invalid set is rejected with its
errors and the previous set stays in force.  Each reload that changed the set
extends PCR 2 with the new digest.  No kernel timer is used: a periodic timer
would keep ``run(until_idle=True)`` from ever finding the kernel idle.

**Behavior.**  :class:`BehaviorResponder` is the kernel's ``observer``: one
call per syscall into :meth:`BehaviorMonitor.observe` (a few dict updates).
Alerts go out on ``security.anomaly``.  Responses are executed by the kernel
on a timer at "now", i.e. as soon as the offending agent's dispatch ends, so
an agent is never suspended or killed in the middle of its own syscall:

* throttle: the fair weight times the rung's factor (the original weight is
  remembered);
* suspend: :func:`aios.kernel.lifecycle.suspend`;
* revoke: the named rights are cleared from every capability in the agent's
  space (in place, O(1) for later checks; descendants it granted keep theirs),
  and the cleared bits are remembered for regrant;
* kill.

Each execution is published on ``security.response`` with its result, hence
audited.  ``AGENT_RELEASE`` (an operator or supervisor holding SUPERVISOR on
the agent) asks the monitor for the reversals and executes them: the weight
is restored, the agent resumed and the rights given back, each audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aios.abi.errors import AIOSError, InvalidArgument, PermissionDenied
from aios.abi.rights import Rights, rights_from_names, rights_names
from aios.abi.slots import SLOT_AUTHORITY
from aios.kernel.capabilities import Capability
from aios.kernel.sched.fair import WEIGHT_MIN
from aios.lib.behavior import (
    ANOMALY_TOPIC,
    NET_ATTEMPT,
    NET_SYSCALL_NAMES,
    RESPONSE_TOPIC,
    Alert,
    BehaviorMonitor,
    Finding,
    Response,
    ResponseKind,
)
from aios.lib.policy.engine import (
    RIGHTS,
    AgentInfo,
    Decision,
    ImageRef,
    PolicyEngine,
    ReloadResult,
    Settings,
)
from aios.lib.policy.files import PolicyWatcher

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.events import Event
    from aios.kernel.kernel import Kernel

TRUST_RANK: Final = {"untrusted": 0, "trusted": 1, "system": 2}
SPAWN_OPS: Final = ("spawn", "clone", "split", "specialize")
POLL_NS: Final = 1_000_000_000
SPEC_STR_MAX: Final = 128
DEFAULT_WEIGHT: Final = 1024
DECISION_CACHE: Final = 8192


def _spec_str(spec: dict[str, Any], key: str, default: str) -> str:
    v = spec.get(key, default)
    if not isinstance(v, str) or not v or len(v) > SPEC_STR_MAX:
        raise InvalidArgument(f"spec[{key!r}] must be a non-empty str of at most {SPEC_STR_MAX} chars")
    return v


# (bit, name) of every right the policy vocabulary knows; plain ints, because
# iterating an IntFlag costs tens of microseconds per call
_RIGHT_BITS: Final = tuple(
    (int(getattr(Rights, n)), n) for n in rights_names(Rights(-1 & ((1 << 14) - 1))) if n in RIGHTS
)


def _policy_rights(r: int) -> list[str]:
    r = int(r)
    return [n for bit, n in _RIGHT_BITS if r & bit]


class PolicyGate:
    """Spawn/kill pre-hooks, grant/mem_share guards, settings at spawn, reload."""

    def __init__(
        self,
        k: Kernel,
        engine: PolicyEngine,
        dirs: list[Path] | None = None,
        on_reload: Callable[[ReloadResult], None] | None = None,
    ) -> None:
        self.k = k
        self.engine = engine
        self.watcher = PolicyWatcher(engine, dirs) if dirs else None
        self.on_reload = on_reload
        self.infos: dict[int, AgentInfo] = {}
        self._settings: dict[tuple[Any, ...], tuple[Settings, Settings]] = {}
        self._next_poll = time.monotonic_ns() + POLL_NS
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self.denied = 0
        self.cache_hits = 0

    def attach(self) -> None:
        for op in SPAWN_OPS:
            self.k.hooks.add_pre(op, self.pre_spawn)
            self.k.hooks.add_post(op, self.post_spawn)
        self.k.hooks.add_pre("kill", self.pre_kill)
        self.k.add_guard("grant", self.guard_grant)
        self.k.add_guard("mem_share", self.guard_mem_share)

    # -- who is who ---------------------------------------------------------

    def info(self, aid: int) -> AgentInfo:
        got = self.infos.get(aid)
        if got is not None:
            return got
        if aid in (0, self.k.init.aid):
            info = AgentInfo(aid, type="init", trust="system", name="init", image="kernel")
        else:
            a = self.k.find(aid)
            spec = a.spec if a is not None and isinstance(a.spec, dict) else {}
            info = self._child_info(self.info(a.parent) if a is not None else None, aid, spec,
                                    a.name if a is not None else "", "")
        self.infos[aid] = info
        return info

    def _child_info(self, parent: AgentInfo | None, aid: int, spec: dict[str, Any],
                    name: str, image: str) -> AgentInfo:
        ptrust = "trusted" if parent is None or parent.type == "init" else parent.trust
        cap_rank = TRUST_RANK["system"] if parent is not None and parent.type == "init" else TRUST_RANK[ptrust]
        want = _spec_str(spec, "trust", ptrust)
        if want not in TRUST_RANK:
            raise InvalidArgument(f"spec['trust'] must be one of {sorted(TRUST_RANK)}")
        trust = want if TRUST_RANK[want] <= cap_rank else ptrust
        return AgentInfo(
            aid,
            type=_spec_str(spec, "type", "default"),
            publisher=_spec_str(spec, "publisher", parent.publisher if parent is not None else "local"),
            image=image,
            trust=trust,
            name=name,
        )

    # -- hooks and guards ----------------------------------------------------

    def maybe_poll(self) -> None:
        if self.watcher is None:
            return
        now = time.monotonic_ns()
        if now < self._next_poll:
            return
        self._next_poll = now + POLL_NS
        res = self.watcher.poll()
        if res is not None:
            self._reloaded(res)

    def reload(self) -> ReloadResult:
        res = self.engine.reload()
        if self.watcher is not None:
            from aios.lib.policy.files import fingerprint

            self.watcher._seen = fingerprint(self.watcher.dirs)
        self._reloaded(res)
        return res

    def _decide(self, key: tuple[Any, ...], compute: Callable[[], Decision]) -> Decision:
        """A cached decision (same generation, same entities, same context), audited every time."""
        key = (self.engine.generation, *key)
        d = self._decisions.get(key)
        if d is None:
            d = compute()  # the engine emits the policy.decision record itself
            if len(self._decisions) >= DECISION_CACHE:
                self._decisions.clear()
            self._decisions[key] = d
        else:
            self.cache_hits += 1
            self.k.publish("policy.decision", 0, **d.record(), cached=True)
        if not d.allowed:
            self.denied += 1
        return d

    def _reloaded(self, res: ReloadResult) -> None:
        if res.changed:
            self._settings.clear()
            self._decisions.clear()
        if self.on_reload is not None:
            self.on_reload(res)

    def pre_spawn(self, k: Kernel, op: str, **info: Any) -> None:
        spec = info.get("spec") or {}
        parent = self.info(info["parent"])
        child = self._child_info(parent, 0, spec, info.get("name", ""), info.get("entry", ""))
        self.maybe_poll()
        if not self.engine.marks("spawn"):
            return
        image = ImageRef(child.image or "?", publisher=child.publisher, signed=True)
        rights = tuple(_policy_rights(info.get("rights", 0)))
        d = self._decide(
            ("spawn", parent, image, child.type, child.publisher, rights),
            lambda: self.engine.check_spawn(parent, image, child_type=child.type,
                                            child_publisher=child.publisher, rights=rights),
        )
        d.enforce()

    def post_spawn(self, k: Kernel, op: str, **info: Any) -> None:
        a = k.find(info["agent"])
        if a is None:
            return
        parent = self.info(a.parent)
        entry = a.entry
        image = getattr(entry, "__qualname__", "") if not isinstance(entry, str) else entry
        me = self._child_info(parent, a.aid, a.spec if isinstance(a.spec, dict) else {}, a.name, image)
        self.infos[a.aid] = me
        self._apply_settings(a, me)

    def pre_kill(self, k: Kernel, op: str, **info: Any) -> None:
        if not self.engine.marks("kill"):
            return
        self.maybe_poll()
        by, target = self.info(info["by"]), self.info(info["agent"])
        d = self._decide(("kill", by, target), lambda: self.engine.decide(by, "kill", target))
        d.enforce()

    def guard_grant(self, k: Kernel, action: str, a: Agent, **info: Any) -> None:
        if not self.engine.marks("grant"):
            return
        names = _policy_rights(info.get("rights", 0))
        if not names:
            return
        self.maybe_poll()
        me, to, obj = self.info(a.aid), self.info(info["to"]), str(info.get("kind", ""))
        d = self._decide(("grant", me, to, tuple(names), obj),
                         lambda: self.engine.check_grant(me, to, names, obj=obj))
        d.enforce()

    def guard_mem_share(self, k: Kernel, action: str, a: Agent, **info: Any) -> None:
        if not self.engine.marks("mem_share"):
            return
        self.maybe_poll()
        writable = bool(info.get("rights", 0) & Rights.WRITE)
        me, to = self.info(a.aid), self.info(info["to"])
        d = self._decide(("mem_share", me, to, writable),
                         lambda: self.engine.check_mem_share(me, to, 0, writable=writable))
        d.enforce()

    # -- settings ------------------------------------------------------------------

    def settings_for(self, me: AgentInfo) -> tuple[Settings, Settings]:
        key = (self.engine.generation, me.type, me.publisher, me.image, me.trust)
        got = self._settings.get(key)
        if got is None:
            empty_q = Settings("quota", (), ())
            empty_s = Settings("schedule", (), ())
            got = (
                self.engine.quotas(me) if self.engine.marks("quota") else empty_q,
                self.engine.schedule(me) if self.engine.marks("schedule") else empty_s,
            )
            if len(self._settings) > 4096:
                self._settings.clear()
            self._settings[key] = got
        return got

    def _apply_settings(self, a: Agent, me: AgentInfo) -> None:
        from aios.abi import limits
        from aios.kernel.quotas import Resource

        quota, sched = self.settings_for(me)
        if not quota.values and not sched.values:
            return
        applied: dict[str, Any] = {}
        auth: Capability | None = None
        try:
            auth = a.cspace.get(SLOT_AUTHORITY)
        except AIOSError:
            auth = None
        if auth is not None and auth.limits is not None and quota.values:
            lim = auth.limits
            builtin = (lim[Resource.MEMORY] == limits.DEFAULT_CHILD_MEMORY
                       and lim[Resource.AGENTS] == limits.DEFAULT_CHILD_AGENTS)
            parent_lim = auth.parent.limits if auth.parent is not None else None
            for key, res in (("memory", Resource.MEMORY), ("agents", Resource.AGENTS),
                             ("ipc_rate", Resource.IPC_RATE)):
                v = quota.get(key)
                if not builtin or not isinstance(v, int):
                    continue  # an explicit quota from the spawner stands
                ceiling = parent_lim[res] if parent_lim is not None else None
                new = v if ceiling is None else min(v, ceiling)
                lim[res] = new
                if res is Resource.IPC_RATE:
                    auth.bucket = min(auth.bucket, float(new)) if auth.bucket else float(new)
                applied[key] = new
        ent = a.sched
        if ent is not None and sched.values:
            w = sched.get("weight")
            if isinstance(w, int):
                ceiling_w = auth.limits[Resource.CPU_WEIGHT] if auth is not None and auth.limits else None
                if ent.weight == DEFAULT_WEIGHT:  # an explicit weight from the spawner stands
                    new_w = w if ceiling_w is None else min(w, ceiling_w)
                    new_w = max(WEIGHT_MIN, new_w)
                    self.k.sched.set_fair(ent, weight=new_w)
                    applied["weight"] = new_w
            if sched.get("class") == "rt":
                rt = [sched.get(n) for n in ("runtime_us", "deadline_us", "period_us")]
                if all(isinstance(x, int) for x in rt):
                    try:
                        self.k.sched.set_deadline(ent, runtime_ns=int(rt[0] or 0) * 1000,
                                                  deadline_ns=int(rt[1] or 0) * 1000,
                                                  period_ns=int(rt[2] or 0) * 1000)
                        applied["class"] = "deadline"
                    except AIOSError as e:
                        applied["class_refused"] = e.name
        self.k.publish("policy.settings", a.aid, agent=a.aid, type=me.type, trust=me.trust,
                       applied=applied, policies=list(quota.policies + sched.policies),
                       generation=self.engine.generation)

    def forget(self, aid: int) -> None:
        self.infos.pop(aid, None)


class BehaviorResponder:
    """The kernel's per-syscall observer and the executor of automated responses."""

    def __init__(self, k: Kernel, monitor: BehaviorMonitor) -> None:
        self.k = k
        self.monitor = monitor
        self.saved_weight: dict[int, int] = {}
        self.narrowed: dict[int, list[tuple[Capability, Rights]]] = {}
        self.executed: list[dict[str, Any]] = []

    def observer(self) -> Callable[[Agent, int, int], None]:
        observe = self.monitor.observe
        now = self.k.now
        handle = self._handle

        def observe_syscall(a: Agent, sysno: int, errno: int) -> None:
            found = observe(a.aid, sysno, errno, now())
            if found:
                handle(found)

        return observe_syscall

    def attach_sandbox(self) -> None:
        """Feed the sandboxes' network refusals to the monitor (``security.sandbox`` events)."""
        self.k.bus.subscribe("security.sandbox", priority=-900, callback=self.on_sandbox_event)

    def on_sandbox_event(self, ev: Event) -> None:
        """A trusted report that an agent reached for the host network without ACCESS_NET.

        Only the executor's own reports count (the zygote's seccomp listener):
        the in-agent audit hook's are ``trusted=False`` and could be forged."""
        d = ev.data
        aid = d.get("agent")
        if (d.get("trusted") and d.get("kind") == "syscall" and d.get("detail") in NET_SYSCALL_NAMES
                and type(aid) is int):
            found = self.monitor.observe(aid, NET_ATTEMPT, PermissionDenied.code, self.k.now())
            if found:
                self._handle(found)

    def _handle(self, found: list[Finding]) -> None:
        k = self.k
        for f in found:
            if isinstance(f, Alert):
                k.publish(ANOMALY_TOPIC, f.agent_key, **f.record())
            else:
                k.call_at(k.now(), self._execute_later, f)

    def _execute_later(self, r: Response) -> None:
        self.execute(r)

    def execute(self, r: Response) -> dict[str, Any]:
        """Carry out one response (or reversal) and publish it with its result."""
        from aios.kernel import lifecycle
        from aios.kernel.agents import AgentState

        k = self.k
        a = k.find(r.agent_key)
        result = "ok"
        extra: dict[str, Any] = {}
        try:
            if a is None or not a.alive:
                result = "agent gone"
            elif r.kind is ResponseKind.THROTTLE and a.sched is None:
                result = "not on the kernel's run queue (out-of-process agent)"
            elif r.kind is ResponseKind.THROTTLE:
                ent = a.sched
                self.saved_weight.setdefault(a.aid, ent.weight)
                new_w = max(WEIGHT_MIN, int(ent.weight * r.weight_factor))
                k.sched.set_fair(ent, weight=new_w)
                extra["weight"] = new_w
            elif r.kind is ResponseKind.UNTHROTTLE:
                w = self.saved_weight.pop(a.aid, None)
                if w is not None and a.sched is not None:
                    k.sched.set_fair(a.sched, weight=w)
                    extra["weight"] = w
            elif r.kind is ResponseKind.SUSPEND:
                if a.status in (AgentState.READY, AgentState.RUNNING, AgentState.BLOCKED):
                    lifecycle.suspend(k, a)
                else:
                    result = f"not suspendable ({a.status.value})"
            elif r.kind is ResponseKind.RESUME:
                if a.status is AgentState.SUSPENDED:
                    lifecycle.resume(k, a)
                else:
                    result = f"not suspended ({a.status.value})"
            elif r.kind is ResponseKind.REVOKE:
                mask = rights_from_names(list(r.rights))
                taken = self.narrowed.setdefault(a.aid, [])
                n = 0
                for cap in list(a.cspace.caps()):
                    if not cap.rights & mask:
                        continue
                    # narrow the capability and everything derived from it, so no
                    # descendant keeps a right its parent lost
                    stack = [cap]
                    while stack:
                        c = stack.pop()
                        stack.extend(c.children)
                        hit = Rights(c.rights & mask)
                        if hit:
                            c.rights = Rights(c.rights & ~mask)
                            taken.append((c, hit))
                    n += 1
                extra["capabilities"] = n
            elif r.kind is ResponseKind.REGRANT:
                n = 0
                for cap, hit in self.narrowed.pop(a.aid, []):
                    if cap.valid:
                        cap.rights = Rights(cap.rights | hit)
                        n += 1
                extra["capabilities"] = n
            elif r.kind is ResponseKind.KILL:
                k.kill(a, reason=f"behavior response: {r.reason}")
        except AIOSError as e:
            result = e.name
        rec = {**r.record(), **extra, "result": result}
        k.publish(RESPONSE_TOPIC, r.agent_key, **rec)
        self.executed.append(rec)
        if len(self.executed) > 1024:
            del self.executed[:512]
        return rec

    def release(self, aid: int) -> list[dict[str, Any]]:
        """Operator release: execute the reversal of every response in force."""
        back = self.monitor.release(aid, self.k.now())
        return [self.execute(r) for r in back]

    def status(self, aid: int) -> dict[str, Any]:
        score, comps = self.monitor.score(aid, self.k.now())
        return {
            "agent": aid,
            "score": round(score, 4),
            "components": {k: round(v, 4) for k, v in comps.items()},
            "active": [r.record() for r in self.monitor.active_responses(aid)],
            "alerts_raised": self.monitor.alerts_raised,
        }

    def forget(self, aid: int) -> None:
        self.monitor.forget(aid)
        self.saved_weight.pop(aid, None)
        self.narrowed.pop(aid, None)
