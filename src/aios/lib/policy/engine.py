"""The system-wide policy engine (whitepaper #17), on Cedar.

Capabilities say *what an agent holds*; policy says *what the operator allows
anyone to do with it*.  The kernel checks the capability first (a slot lookup,
microseconds) and asks this engine second, and only for the actions a policy
*marks*: a syscall nobody wrote a policy about never pays for Cedar.

Entity model
------------
Every request is ``principal --action--> resource`` plus a typed context:

* ``Agent::"<key>"``  attributes ``type``, ``publisher``, ``image``, ``trust``
  (``system`` | ``trusted`` | ``untrusted``) and ``name``; its parents are
  ``AgentType::"<type>"`` and ``Publisher::"<publisher>"``, so a policy can say
  ``principal in AgentType::"crawler"`` and it holds for every crawler ever
  spawned, including ones that do not exist yet.
* ``Image::"<name>"`` (``publisher``, ``signed``; parent ``Publisher``),
  ``Host::"<name>"`` (``name`` and, for literal addresses, ``addr`` as a Cedar
  ``ipaddr``), ``Right::"<RIGHT>"``, ``Namespace::"<name>"`` (``owner``) and
  ``AgentType::"<type>"``.
* Actions, each with its context shape in :data:`SCHEMA`: ``spawn``, ``grant``,
  ``net_connect``, ``mem_share``, ``kill``, ``ipc_send``, ``namespace_access``
  (security) and the two *settings* actions ``quota`` (resource) and
  ``schedule`` (scheduling), asked with ``resource == AgentType::"<type>"``.

Resource and scheduling policies are ordinary ``permit`` policies on the
settings actions whose *annotations* carry the values::

    @id("crawler-quota") @priority("10")
    @quota_memory("512MiB") @quota_agents("4")
    permit(principal, action == Action::"quota", resource == AgentType::"crawler");

For an agent the engine evaluates the settings action once and merges the
annotations of every satisfied permit: per key the highest ``@priority`` wins,
ties go to the most restrictive value (the smaller number, ``fair`` over
``rt``).  The settings are therefore computed by Cedar too, and the deciding
policy ids travel with them.

Files and ids
-------------
Policies are ``*.cedar`` files: the defaults shipped in
``aios/lib/policy/policies/`` and the operator's ``$AIOS_HOME/policy/``; an
operator file with the name of a shipped one replaces it (systemd's
``/etc`` over ``/usr/lib``).  Each policy's id is ``<file>:<@id>`` (or
``<file>:policy<N>`` without an ``@id``), and those ids are what a
:class:`Decision` reports as deciding.  A set is parsed, validated against the
schema (so ``principal.tpye`` is an error, not a silently false condition)
and turned into one pre-parsed ``cedarpy.PolicySet`` exactly once per
(re)load.  A reload that fails parsing or validation changes nothing: the
previous set stays in force and the errors come back in the
:class:`ReloadResult`.

Marking
-------
An action is *marked* when some policy names it in its action scope
(``action == Action::"x"`` or ``action in [...]``).  A policy with an
unconstrained action scope still applies to every marked action, but marks
none by itself, otherwise one careless ``forbid(principal, action, resource)
when {...}`` would put Cedar on every syscall.

Sans-IO
-------
The engine does no I/O: it is handed policy *sources* (a name to text mapping)
by a loader callable and emits decision records through a callback; the
directory loader lives in :mod:`aios.lib.policy.files`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cedarpy

from aios.abi.errors import InvalidArgument, PolicyDenied
from aios.abi.rights import RIGHT_NAMES

# -- vocabulary --------------------------------------------------------------

RIGHTS: Final = frozenset(RIGHT_NAMES)  # the kernel's rights, by name
TRUST_LEVELS: Final = ("system", "trusted", "untrusted")
SECURITY_ACTIONS: Final = (
    "spawn",
    "grant",
    "net_connect",
    "mem_share",
    "kill",
    "ipc_send",
    "namespace_access",
)
SETTINGS_ACTIONS: Final = ("quota", "schedule")
ACTIONS: Final = SECURITY_ACTIONS + SETTINGS_ACTIONS

SCHEMA: Final = """
entity AgentType, Publisher;
entity Agent in [AgentType, Publisher] {
  type: String, publisher: String, image: String, trust: String, name: String
};
entity Image in [Publisher] { publisher: String, signed: Bool };
entity Host { name: String, addr?: ipaddr };
entity Right;
entity Namespace { owner: String };

action spawn appliesTo {
  principal: Agent, resource: Image,
  context: { child_type: String, child_publisher: String, rights: Set<String> }
};
action grant appliesTo {
  principal: Agent, resource: Right, context: { recipient: Agent, object: String }
};
action net_connect appliesTo {
  principal: Agent, resource: Host, context: { port: Long, protocol: String }
};
action mem_share appliesTo {
  principal: Agent, resource: Agent, context: { bytes: Long, writable: Bool }
};
action kill appliesTo { principal: Agent, resource: Agent, context: {} };
action ipc_send appliesTo { principal: Agent, resource: Agent, context: { bytes: Long } };
action namespace_access appliesTo {
  principal: Agent, resource: Namespace, context: { write: Bool }
};
action quota appliesTo { principal: Agent, resource: AgentType, context: {} };
action schedule appliesTo { principal: Agent, resource: AgentType, context: {} };
"""

DECISION_TOPIC: Final = "policy.decision"
ENTITY_CACHE_SIZE: Final = 4096  # pre-parsed entity sets kept per engine

Emit = Callable[[str, Mapping[str, Any]], None]
SourceLoader = Callable[[], Mapping[str, str]]

# -- entities ---------------------------------------------------------------


def _uid(type_: str, id_: str) -> dict[str, str]:
    return {"type": type_, "id": id_}


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What the policy engine knows about an agent (principal or resource)."""

    key: int
    type: str = "default"
    publisher: str = "local"
    image: str = ""
    trust: str = "trusted"
    name: str = ""

    def uid(self) -> dict[str, str]:
        return _uid("Agent", str(self.key))

    def entities(self) -> list[dict[str, Any]]:
        return [
            {
                "uid": self.uid(),
                "attrs": {
                    "type": self.type,
                    "publisher": self.publisher,
                    "image": self.image,
                    "trust": self.trust,
                    "name": self.name,
                },
                "parents": [_uid("AgentType", self.type), _uid("Publisher", self.publisher)],
            }
        ]


@dataclass(frozen=True, slots=True)
class ImageRef:
    name: str
    publisher: str = "local"
    signed: bool = True

    def uid(self) -> dict[str, str]:
        return _uid("Image", self.name)

    def entities(self) -> list[dict[str, Any]]:
        return [
            {
                "uid": self.uid(),
                "attrs": {"publisher": self.publisher, "signed": self.signed},
                "parents": [_uid("Publisher", self.publisher)],
            }
        ]


@dataclass(frozen=True, slots=True)
class HostRef:
    """A network destination; a literal IP address also gets an ``addr`` attribute."""

    name: str

    def uid(self) -> dict[str, str]:
        return _uid("Host", self.name)

    def entities(self) -> list[dict[str, Any]]:
        attrs: dict[str, Any] = {"name": self.name}
        try:
            ipaddress.ip_address(self.name)
        except ValueError:
            pass
        else:
            attrs["addr"] = {"__extn": {"fn": "ip", "arg": self.name}}
        return [{"uid": self.uid(), "attrs": attrs, "parents": []}]


@dataclass(frozen=True, slots=True)
class RightRef:
    name: str

    def uid(self) -> dict[str, str]:
        return _uid("Right", self.name)

    def entities(self) -> list[dict[str, Any]]:
        return [{"uid": self.uid(), "attrs": {}, "parents": []}]


@dataclass(frozen=True, slots=True)
class NamespaceRef:
    name: str
    owner: str = ""

    def uid(self) -> dict[str, str]:
        return _uid("Namespace", self.name)

    def entities(self) -> list[dict[str, Any]]:
        return [{"uid": self.uid(), "attrs": {"owner": self.owner}, "parents": []}]


@dataclass(frozen=True, slots=True)
class AgentTypeRef:
    name: str

    def uid(self) -> dict[str, str]:
        return _uid("AgentType", self.name)

    def entities(self) -> list[dict[str, Any]]:
        return [{"uid": self.uid(), "attrs": {}, "parents": []}]


Resource = AgentInfo | ImageRef | HostRef | RightRef | NamespaceRef | AgentTypeRef

# -- records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer of the engine.  ``policies`` are the deciding policy ids."""

    allowed: bool
    action: str
    principal: int
    resource: str
    policies: tuple[str, ...]
    errors: tuple[str, ...] = ()
    generation: int = 0

    def record(self) -> dict[str, Any]:
        """The audit record emitted on ``policy.decision``."""
        return {
            "kind": DECISION_TOPIC,
            "allowed": self.allowed,
            "action": self.action,
            "principal": self.principal,
            "resource": self.resource,
            "policies": list(self.policies),
            "errors": list(self.errors),
            "generation": self.generation,
        }

    def enforce(self) -> None:
        """Raise :class:`PolicyDenied` unless the decision allows."""
        if not self.allowed:
            why = ", ".join(self.policies) or "no permit matched"
            raise PolicyDenied(
                f"policy denies {self.action} on {self.resource} ({why})",
                policies=self.policies,
            )


@dataclass(frozen=True, slots=True)
class Settings:
    """Quotas (``kind == "quota"``) or scheduling parameters for one agent."""

    kind: str
    values: tuple[tuple[str, int | str], ...]
    policies: tuple[str, ...]

    def get(self, key: str, default: int | str | None = None) -> int | str | None:
        for k, v in self.values:
            if k == key:
                return v
        return default

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.values)


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    id: str
    file: str
    effect: str
    actions: tuple[str, ...]  # empty: unconstrained scope
    annotations: tuple[tuple[str, str], ...]
    text: str = ""


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    changed: bool
    generation: int
    files: tuple[str, ...]
    policies: int
    errors: tuple[str, ...] = ()
    # What the change that made ``generation`` did, by policy id: new ids, ids
    # gone, and ids whose text, effect, scope or annotations differ.  When this
    # reload changed nothing (the file watcher got there first, or nothing was
    # edited) they still describe the set in force; empty at the first generation.
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()


def diff_policies(old: Mapping[str, PolicyInfo], new: Mapping[str, PolicyInfo]
                  ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(added, removed, modified)`` policy ids between two compiled sets, each sorted."""
    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    modified = tuple(sorted(i for i in old.keys() & new.keys() if old[i] != new[i]))
    return added, removed, modified


@dataclass(frozen=True, slots=True)
class CompiledPolicies:
    """The product of :func:`compile_policies`: parsed once, immutable."""

    policy_set: Any  # cedarpy.PolicySet (untyped library)
    infos: tuple[PolicyInfo, ...]
    marked: frozenset[str]
    files: tuple[str, ...]
    digest: str
    by_id: Mapping[str, PolicyInfo] = field(default_factory=dict)


# -- settings annotations --------------------------------------------------------

_UNITS: Final = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_QTY = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
SCHED_CLASSES: Final = ("fair", "rt")
QUOTA_KEYS: Final = ("memory", "agents", "ipc_rate")
SCHED_KEYS: Final = ("class", "weight", "runtime_us", "deadline_us", "period_us")
WEIGHT_MAX: Final = 88761


def parse_quantity(text: str) -> int:
    """``"512MiB"`` -> 536870912; plain integers pass through."""
    m = _QTY.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidArgument(f"not a quantity: {text!r} (use e.g. 64, 512MiB, 2GiB, 10k)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _settings_value(name: str, text: str) -> tuple[str, str, int | str]:
    """Parse one settings annotation into ``(kind, key, value)``."""
    if name.startswith("quota_"):
        key = name[len("quota_") :]
        if key not in QUOTA_KEYS:
            raise InvalidArgument(f"unknown quota annotation @{name} (have {QUOTA_KEYS})")
        return ("quota", key, parse_quantity(text))
    key = name[len("sched_") :]
    if key not in SCHED_KEYS:
        raise InvalidArgument(f"unknown scheduling annotation @{name} (have {SCHED_KEYS})")
    if key == "class":
        if text not in SCHED_CLASSES:
            raise InvalidArgument(f"@sched_class must be one of {SCHED_CLASSES}, not {text!r}")
        return ("schedule", key, text)
    value = parse_quantity(text)
    if key == "weight" and not 1 <= value <= WEIGHT_MAX:
        raise InvalidArgument(f"@sched_weight must be in 1..{WEIGHT_MAX}, not {value}")
    return ("schedule", key, value)


def _is_settings_annotation(name: str) -> bool:
    return name.startswith(("quota_", "sched_"))


# -- compilation ------------------------------------------------------------------


def _scope_actions(scope: Mapping[str, Any]) -> tuple[str, ...]:
    op = scope.get("op")
    if op == "All":
        return ()
    ents: list[Mapping[str, str]] = []
    if "entity" in scope:
        ents.append(scope["entity"])
    ents.extend(scope.get("entities", ()))
    return tuple(str(e["id"]) for e in ents)


def _policy_text(body: Mapping[str, Any]) -> str:
    doc = {"staticPolicies": {"p": body}, "templates": {}, "templateLinks": []}
    try:
        return str(cedarpy.PolicySet.from_json_str(json.dumps(doc))).strip()
    except ValueError:
        return ""


def compile_policies(sources: Mapping[str, str]) -> CompiledPolicies:
    """Parse, check and validate ``sources`` (file name -> Cedar text).

    Raises :class:`InvalidArgument` whose ``detail["errors"]`` lists every
    problem found (all files are checked, not just the first bad one).
    """
    errors: list[str] = []
    static: dict[str, Any] = {}
    infos: list[PolicyInfo] = []
    for fname in sorted(sources):
        text = sources[fname]
        try:
            est = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            errors.append(f"{fname}: parse error: {exc}")
            continue
        if est.get("templates"):
            errors.append(f"{fname}: templates (?principal/?resource slots) are not supported")
        schema_check = cedarpy.validate_policies(text, SCHEMA)
        if not schema_check.validation_passed:
            names = schema_check.id_annotations_by_policy_id
            for err in schema_check.errors:
                where = names.get(err.policy_id, err.policy_id)
                errors.append(f"{fname}: {where}: {err.error}")
        for pid, body in est.get("staticPolicies", {}).items():
            ann: dict[str, str] = dict(body.get("annotations", {}))
            local = ann.get("id") or pid
            full = f"{fname}:{local}"
            if full in static:
                errors.append(f"{fname}: duplicate policy id @id({local!r})")
                continue
            actions = _scope_actions(body.get("action", {"op": "All"}))
            for a in actions:
                if a not in ACTIONS:
                    errors.append(f"{full}: unknown action {a!r}")
            for name, value in ann.items():
                if name == "priority":
                    try:
                        int(value)
                    except ValueError:
                        errors.append(f"{full}: @priority must be an integer, not {value!r}")
                elif _is_settings_annotation(name):
                    try:
                        kind, _, _ = _settings_value(name, value)
                    except InvalidArgument as exc:
                        errors.append(f"{full}: {exc.message}")
                        continue
                    if body.get("effect") != "permit" or kind not in actions:
                        errors.append(
                            f'{full}: @{name} belongs on a permit naming Action::"{kind}"'
                        )
            static[full] = body
            infos.append(
                PolicyInfo(
                    id=full,
                    file=fname,
                    effect=str(body.get("effect")),
                    actions=actions,
                    annotations=tuple(sorted(ann.items())),
                    text=_policy_text(body),
                )
            )
    if errors:
        raise InvalidArgument("invalid policy set: " + "; ".join(errors), errors=tuple(errors))
    doc = {"staticPolicies": static, "templates": {}, "templateLinks": []}
    try:
        policy_set = cedarpy.PolicySet.from_json_str(json.dumps(doc))
    except ValueError as exc:  # pragma: no cover - every file parsed above
        raise InvalidArgument("invalid policy set", errors=(str(exc),)) from exc
    marked = frozenset(a for p in infos for a in p.actions)
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    digest = h.hexdigest()
    return CompiledPolicies(
        policy_set=policy_set,
        infos=tuple(infos),
        marked=marked,
        files=tuple(sorted(sources)),
        digest=digest,
        by_id={p.id: p for p in infos},
    )


# -- the engine ----------------------------------------------------------------------


def _sched_order(key: str, value: int | str) -> tuple[int, int | str]:
    """Sort key of a settings value: smaller means more restrictive."""
    if key == "class":
        return (0, SCHED_CLASSES.index(str(value)))
    return (0, value)


class PolicyEngine:
    """Cached Cedar evaluation with safe reload and an audit callback."""

    def __init__(
        self,
        loader: SourceLoader,
        *,
        emit: Emit | None = None,
        audit_allows: bool = True,
    ) -> None:
        self._loader = loader
        self._emit = emit
        self._audit_allows = audit_allows
        self._generation = 0
        self._entity_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._compiled = compile_policies(loader())
        self._generation = 1
        self._last_diff: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((), (), ())

    @classmethod
    def from_sources(cls, sources: Mapping[str, str], *, emit: Emit | None = None) -> PolicyEngine:
        frozen = dict(sources)
        return cls(lambda: frozen, emit=emit)

    # -- introspection -----------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def compiled(self) -> CompiledPolicies:
        return self._compiled

    def marks(self, action: str) -> bool:
        """True when some policy names ``action``: the kernel must ask :meth:`decide`."""
        return action in self._compiled.marked

    def policies(self) -> tuple[PolicyInfo, ...]:
        return self._compiled.infos

    # -- reload ------------------------------------------------------------

    def reload(self, sources: Mapping[str, str] | None = None) -> ReloadResult:
        """Re-read the sources; keep the previous set when the new one is invalid."""
        try:
            new_sources = dict(self._loader() if sources is None else sources)
            compiled = compile_policies(new_sources)
        except InvalidArgument as exc:
            errs = tuple(exc.detail.get("errors", (exc.message,)))
            return self._reload_result(ok=False, changed=False, errors=errs)
        except OSError as exc:
            return self._reload_result(ok=False, changed=False, errors=(f"read error: {exc}",))
        changed = compiled.digest != self._compiled.digest
        if changed:
            self._last_diff = diff_policies(self._compiled.by_id, compiled.by_id)
            self._compiled = compiled
            self._generation += 1
            self._entity_cache.clear()
        return self._reload_result(ok=True, changed=changed)

    def _reload_result(
        self, *, ok: bool, changed: bool, errors: tuple[str, ...] = ()
    ) -> ReloadResult:
        c = self._compiled
        result = ReloadResult(ok, changed, self._generation, c.files, len(c.infos), errors,
                              *self._last_diff)
        if self._emit is not None and (changed or not ok):
            self._emit(
                DECISION_TOPIC,
                {
                    "kind": "policy.reload",
                    "ok": ok,
                    "generation": self._generation,
                    "files": list(c.files),
                    "errors": list(errors),
                },
            )
        return result

    # -- evaluation --------------------------------------------------------

    def _entities(self, parts: tuple[Any, ...]) -> Any:
        cached = self._entity_cache.get(parts)
        if cached is not None:
            self._entity_cache.move_to_end(parts)
            return cached
        seen: set[tuple[str, str]] = set()
        docs: list[dict[str, Any]] = []
        for p in parts:
            for doc in p.entities():
                key = (doc["uid"]["type"], doc["uid"]["id"])
                if key not in seen:
                    seen.add(key)
                    docs.append(doc)
        try:
            handle = cedarpy.Entities.from_json_str(json.dumps(docs))
        except ValueError as exc:
            raise InvalidArgument(f"bad policy entities: {exc}") from exc
        self._entity_cache[parts] = handle
        if len(self._entity_cache) > ENTITY_CACHE_SIZE:
            self._entity_cache.popitem(last=False)
        return handle

    def _request(
        self, principal: AgentInfo, action: str, resource: Resource, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        if action not in ACTIONS:
            raise InvalidArgument(f"unknown policy action {action!r} (have {ACTIONS})")
        return {
            "principal": principal.uid(),
            "action": _uid("Action", action),
            "resource": resource.uid(),
            "context": dict(context),
        }

    def _finish(self, principal: AgentInfo, action: str, resource: Resource, r: Any) -> Decision:
        diag = r.diagnostics
        d = Decision(
            allowed=bool(r.allowed),
            action=action,
            principal=principal.key,
            resource=f'{resource.uid()["type"]}::"{resource.uid()["id"]}"',
            policies=tuple(sorted(diag.reasons)),
            errors=tuple(diag.errors),
            generation=self._generation,
        )
        if self._emit is not None and (self._audit_allows or not d.allowed):
            self._emit(DECISION_TOPIC, d.record())
        return d

    def decide(
        self,
        principal: AgentInfo,
        action: str,
        resource: Resource,
        context: Mapping[str, Any] | None = None,
        *,
        extra: Iterable[Resource] = (),
    ) -> Decision:
        """Evaluate one request against the cached policy set (default deny)."""
        ctx = context or {}
        req = self._request(principal, action, resource, ctx)
        ents = self._entities((principal, resource, *extra))
        r = cedarpy.is_authorized(req, self._compiled.policy_set, ents)
        return self._finish(principal, action, resource, r)

    # -- the security actions, spelled out ---------------------------------

    def check_spawn(
        self,
        parent: AgentInfo,
        image: ImageRef,
        *,
        child_type: str,
        child_publisher: str = "local",
        rights: Iterable[str] = (),
    ) -> Decision:
        ctx = {
            "child_type": child_type,
            "child_publisher": child_publisher,
            "rights": sorted(_check_rights(rights)),
        }
        return self.decide(parent, "spawn", image, ctx)

    def check_grant(
        self, granter: AgentInfo, recipient: AgentInfo, rights: Iterable[str], *, obj: str = ""
    ) -> Decision:
        """One decision per right (a batch); allowed only if every right is."""
        names = sorted(_check_rights(rights))
        if not names:
            raise InvalidArgument("grant of no rights")
        ctx = {"recipient": {"__entity": recipient.uid()}, "object": obj}
        reqs = [self._request(granter, "grant", RightRef(n), ctx) for n in names]
        parts = (granter, recipient, *(RightRef(n) for n in names))
        results = cedarpy.is_authorized_batch(
            reqs, self._compiled.policy_set, self._entities(parts)
        )
        allowed = all(r.allowed for r in results)
        deciding = sorted(
            {p for r in results if bool(r.allowed) == allowed for p in r.diagnostics.reasons}
        )
        d = Decision(
            allowed=allowed,
            action="grant",
            principal=granter.key,
            resource="Right::" + "|".join(names) + f' -> Agent::"{recipient.key}"',
            policies=tuple(deciding),
            errors=tuple(e for r in results for e in r.diagnostics.errors),
            generation=self._generation,
        )
        if self._emit is not None and (self._audit_allows or not allowed):
            self._emit(DECISION_TOPIC, d.record())
        return d

    def check_net(self, agent: AgentInfo, host: str, port: int, protocol: str = "tcp") -> Decision:
        if not 0 <= port <= 65535:
            raise InvalidArgument(f"port out of range: {port}")
        return self.decide(
            agent, "net_connect", HostRef(host), {"port": port, "protocol": protocol}
        )

    def check_mem_share(
        self, owner: AgentInfo, peer: AgentInfo, nbytes: int, *, writable: bool
    ) -> Decision:
        return self.decide(owner, "mem_share", peer, {"bytes": nbytes, "writable": writable})

    # -- resource and scheduling settings -------------------------------------

    def quotas(self, agent: AgentInfo) -> Settings:
        return self._settings(agent, "quota")

    def schedule(self, agent: AgentInfo) -> Settings:
        return self._settings(agent, "schedule")

    def _settings(self, agent: AgentInfo, kind: str) -> Settings:
        resource = AgentTypeRef(agent.type)
        req = self._request(agent, kind, resource, {})
        r = cedarpy.is_authorized(req, self._compiled.policy_set, self._entities((agent, resource)))
        best: dict[str, tuple[int, tuple[int, int | str], int | str]] = {}
        used: set[str] = set()
        if r.allowed:
            for pid in r.diagnostics.reasons:
                info = self._compiled.by_id[pid]
                ann = dict(info.annotations)
                prio = int(ann.get("priority", "0"))
                for name, text in ann.items():
                    if not _is_settings_annotation(name):
                        continue
                    k, key, value = _settings_value(name, text)
                    if k != kind:
                        continue
                    cand = (prio, _sched_order(key, value), value)
                    cur = best.get(key)
                    # higher priority wins; at equal priority the smaller (stricter) value
                    if cur is None or cand[0] > cur[0] or (cand[0] == cur[0] and cand[1] < cur[1]):
                        best[key] = cand
                used.add(pid)
        deciding = tuple(
            sorted(
                pid
                for pid in used
                if any(
                    _is_settings_annotation(n) and _settings_value(n, t)[0] == kind
                    for n, t in self._compiled.by_id[pid].annotations
                )
            )
        )
        return Settings(
            kind=kind,
            values=tuple(sorted((k, v[2]) for k, v in best.items())),
            policies=deciding,
        )


def _check_rights(rights: Iterable[str]) -> set[str]:
    names = set(rights)
    unknown = names - RIGHTS
    if unknown:
        raise InvalidArgument(f"unknown rights {sorted(unknown)} (have {sorted(RIGHTS)})")
    return names
