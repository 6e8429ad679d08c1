"""semantic-ipcd's core: route an intent to the agent whose skill it means.

Whitepaper 3.1: *Agent A -> kernel (binary) -> semantic-ipcd (interpret) ->
Agent B*.  The kernel hands this core a sender, an intent (free text) and an
optional payload; the core answers with a frozen :class:`RouteDecision`
that the kernel turns into mailbox deliveries and one event.  The core
never delivers anything itself, so "explain" is simply a decision the
kernel does not act on.

**Skills.**  An agent registers a skill: a name, a one-sentence
description, a few example utterances, optionally a JSON schema for the
payload and the set of senders allowed to reach it (``None``: anyone the
kernel lets send).  The description and each example are embedded once at
registration into one row each of a matrix; routing costs one embedding of
the intent (cached for repeated intents) plus one matrix-vector product.

**Scoring.**  A skill's score is a blend of its best-matching row and the
mean of its rows: ``score = (1 - w) * max + w * mean`` with ``w =
mean_weight``.  The max alone rewards one lucky example; the mean alone
punishes a skill for covering several kinds of request; the blend was the
best on the routing set (tests/data/routing_set.json, see docs/memory.md).

**Decision.**  Registrations are grouped by skill *name*: agents that
register the same name are *equivalent*.  In the default mode the best
skill wins when its score clears ``threshold`` *and* beats the best
*different* skill by ``margin`` (equivalent agents never cost margin);
among its agents the least loaded one (loads come from the kernel, e.g.
mailbox depth) receives the message, ties going to the higher score, then
the smaller agent id.  In broadcast mode every agent with a skill above the
threshold receives it once.  Nothing clearing the bar is
:class:`~aios.errors.NoSuchObject` whose message lists the nearest skills
and their scores, so a sender (or a person at ``aios ask``) sees how close
it came.  A payload is validated against each receiving skill's schema
(:class:`~aios.errors.InvalidArgument` on failure), and typed slots
(numbers, dates, emails, ...) are extracted for the receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from aios.errors import InvalidArgument, NoSuchObject
from aios.memory.embedding import Embedder
from aios.services.semantic_ipcd.slots import extract_slots

DEFAULT_THRESHOLD = 0.21
DEFAULT_MARGIN = 0.01
DEFAULT_MEAN_WEIGHT = 0.5
MAX_INTENT = 4096
MAX_EXAMPLES = 64
NEAREST_SHOWN = 3


class RouteMode(StrEnum):
    BEST = "best"
    BROADCAST = "broadcast"


@dataclass(frozen=True, slots=True)
class Skill:
    agent: str
    name: str
    description: str
    examples: tuple[str, ...]
    schema: Mapping[str, Any] | None = None
    allowed_senders: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    agent: str
    skill: str
    score: float
    load: int = 0


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """What the kernel delivers (``targets``) and publishes as an event."""

    sender: str
    intent: str
    mode: RouteMode
    targets: tuple[Candidate, ...]
    nearest: tuple[Candidate, ...]
    slots: Mapping[str, list[Any]]
    payload: Any
    threshold: float
    margin: float
    explain: bool
    reason: str
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return bool(self.targets) and not self.explain and self.error is None

    def event(self) -> dict[str, Any]:
        """A JSON-ready summary for the event bus and the audit log."""
        return {
            "sender": self.sender, "intent": self.intent, "mode": self.mode.value,
            "targets": [[c.agent, c.skill, round(c.score, 4)] for c in self.targets],
            "nearest": [[c.agent, c.skill, round(c.score, 4)] for c in self.nearest],
            "threshold": self.threshold, "margin": self.margin, "explain": self.explain,
            "reason": self.reason, "error": self.error,
        }


def _validator(schema: Mapping[str, Any]) -> Any:
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidArgument(f"invalid JSON schema: {exc.message}") from exc
    return cls(schema)


class SemanticRouter:
    """Skill registry and router; see the module essay."""

    def __init__(self, embedder: Embedder, *, threshold: float = DEFAULT_THRESHOLD,
                 margin: float = DEFAULT_MARGIN,
                 mean_weight: float = DEFAULT_MEAN_WEIGHT) -> None:
        if not -1.0 <= threshold <= 1.0 or margin < 0 or not 0.0 <= mean_weight <= 1.0:
            raise InvalidArgument("threshold in [-1, 1], margin >= 0, mean_weight in [0, 1]")
        self.embedder = embedder
        self.threshold = threshold
        self.margin = margin
        self.mean_weight = mean_weight
        self._skills: dict[tuple[str, str], Skill] = {}
        self._validators: dict[tuple[str, str], Any] = {}
        self._vecs: dict[tuple[str, str], np.ndarray] = {}
        self._matrix = np.zeros((0, embedder.dim), dtype=np.float32)
        self._owner = np.zeros(0, dtype=np.int64)
        self._order: list[tuple[str, str]] = []
        self._counts = np.zeros(0, dtype=np.int64)
        self._starts = np.zeros(0, dtype=np.int64)

    # -- registry ------------------------------------------------------------

    def register(self, agent: str, name: str, description: str,
                 examples: Iterable[str] = (), *, schema: Mapping[str, Any] | None = None,
                 allowed_senders: Iterable[str] | None = None) -> Skill:
        """Add (or replace) ``agent``'s skill ``name``."""
        for what, v in (("agent", agent), ("skill name", name), ("description", description)):
            if not isinstance(v, str) or not v.strip():
                raise InvalidArgument(f"{what} must be a non-empty string")
        ex = tuple(examples)
        if len(ex) > MAX_EXAMPLES or not all(isinstance(e, str) and e.strip() for e in ex):
            raise InvalidArgument(f"examples must be up to {MAX_EXAMPLES} non-empty strings")
        validator = None
        if schema is not None:
            if not isinstance(schema, Mapping):
                raise InvalidArgument("schema must be a JSON object")
            validator = _validator(schema)
        senders = frozenset(allowed_senders) if allowed_senders is not None else None
        skill = Skill(agent, name, description, ex, dict(schema) if schema else None, senders)
        vecs = self.embedder.embed([description, *ex])
        key = (agent, name)
        self._skills[key] = skill
        self._vecs[key] = vecs
        if validator is not None:
            self._validators[key] = validator
        else:
            self._validators.pop(key, None)
        self._rebuild()
        return skill

    def unregister(self, agent: str, name: str | None = None) -> int:
        """Remove one skill, or all of ``agent``'s skills when ``name`` is None."""
        keys = [k for k in self._skills if k[0] == agent and (name is None or k[1] == name)]
        if name is not None and not keys:
            raise NoSuchObject(f"agent {agent!r} has no skill {name!r}")
        for k in keys:
            del self._skills[k]
            del self._vecs[k]
            self._validators.pop(k, None)
        if keys:
            self._rebuild()
        return len(keys)

    def skills(self, agent: str | None = None) -> list[Skill]:
        return [s for k, s in sorted(self._skills.items()) if agent is None or k[0] == agent]

    def _rebuild(self) -> None:
        self._order = sorted(self._skills)
        mats = [self._vecs[k] for k in self._order]
        self._counts = np.asarray([m.shape[0] for m in mats], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64) \
            if mats else np.zeros(0, dtype=np.int64)
        self._matrix = (np.concatenate(mats) if mats
                        else np.zeros((0, self.embedder.dim), dtype=np.float32))

    # -- scoring ---------------------------------------------------------------

    def score(self, intent: str | np.ndarray) -> list[tuple[tuple[str, str], float]]:
        """Every registration's score for ``intent``, best first."""
        if not self._order:
            return []
        q = self.embedder.embed([intent])[0] if isinstance(intent, str) else np.asarray(intent)
        sims = self._matrix @ q.astype(np.float32)
        best = np.maximum.reduceat(sims, self._starts)
        mean = np.add.reduceat(sims, self._starts) / self._counts
        scores = (1.0 - self.mean_weight) * best + self.mean_weight * mean
        order = np.argsort(-scores, kind="stable")
        return [(self._order[i], float(scores[i])) for i in order]

    # -- routing -----------------------------------------------------------------

    def route(self, sender: str, intent: str, payload: Any = None, *,
              broadcast: bool = False, explain: bool = False,
              loads: Mapping[str, int] | None = None) -> RouteDecision:
        """Decide where ``intent`` goes.  Raises NoSuchObject / InvalidArgument unless ``explain``."""
        if not isinstance(intent, str) or not intent.strip():
            raise InvalidArgument("intent must be a non-empty string")
        if len(intent) > MAX_INTENT:
            raise InvalidArgument(f"intent is over {MAX_INTENT} characters")
        if payload is not None:
            try:
                json.dumps(payload)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"payload is not JSON-serialisable: {exc}") from exc
        loads = loads or {}
        scored = [(k, s) for k, s in self.score(intent) if self._may_reach(sender, k)]
        cands = [Candidate(k[0], k[1], s, int(loads.get(k[0], 0))) for k, s in scored]
        nearest = tuple(cands[:NEAREST_SHOWN])
        mode = RouteMode.BROADCAST if broadcast else RouteMode.BEST
        targets, reason = (self._broadcast(cands) if broadcast else self._best(cands))
        slots = extract_slots(intent)
        error: str | None = None
        if not targets:
            near = ", ".join(f"{c.skill}@{c.agent} {c.score:.3f}" for c in nearest) or "none"
            error = f"no skill matches {intent!r} ({reason}); nearest: {near}"
        else:
            error = self._validate(targets, payload)
        decision = RouteDecision(sender, intent, mode, targets, nearest, slots, payload,
                                 self.threshold, self.margin, explain, reason, error)
        if error is not None and not explain:
            if not targets:
                raise NoSuchObject(error, nearest=[(c.agent, c.skill, c.score) for c in nearest])
            raise InvalidArgument(error)
        return decision

    def _may_reach(self, sender: str, key: tuple[str, str]) -> bool:
        allowed = self._skills[key].allowed_senders
        return allowed is None or sender in allowed

    def _best(self, cands: list[Candidate]) -> tuple[tuple[Candidate, ...], str]:
        if not cands:
            return (), "no skills registered"
        top = cands[0]
        if top.score < self.threshold:
            return (), f"best score {top.score:.3f} is below the threshold {self.threshold:.2f}"
        rival = next((c for c in cands if c.skill != top.skill), None)
        if rival is not None and top.score - rival.score < self.margin:
            return (), (f"ambiguous: {top.skill} {top.score:.3f} vs {rival.skill} "
                        f"{rival.score:.3f} (margin {self.margin:.2f})")
        equivalent = [c for c in cands if c.skill == top.skill and c.score >= self.threshold]
        pick = min(equivalent, key=lambda c: (c.load, -c.score, c.agent))
        why = f"best match {top.skill} {top.score:.3f}"
        if rival is not None:
            why += f", next {rival.skill} {rival.score:.3f}"
        if len(equivalent) > 1:
            why += f"; least loaded of {len(equivalent)} equivalent agents"
        return (pick,), why

    def _broadcast(self, cands: list[Candidate]) -> tuple[tuple[Candidate, ...], str]:
        seen: set[str] = set()
        out: list[Candidate] = []
        for c in cands:
            if c.score >= self.threshold and c.agent not in seen:
                seen.add(c.agent)
                out.append(c)
        if not out:
            top = f"best score {cands[0].score:.3f}" if cands else "no skills registered"
            return (), f"{top}; nothing above the threshold {self.threshold:.2f}"
        return tuple(out), f"{len(out)} agents above the threshold {self.threshold:.2f}"

    def _validate(self, targets: tuple[Candidate, ...], payload: Any) -> str | None:
        from jsonschema.exceptions import best_match

        for c in targets:
            v = self._validators.get((c.agent, c.skill))
            if v is None:
                continue
            err = best_match(v.iter_errors(payload if payload is not None else {}))
            if err is not None:
                where = "/".join(str(p) for p in err.absolute_path) or "payload"
                return f"payload for {c.skill}@{c.agent} is invalid at {where}: {err.message}"
        return None
