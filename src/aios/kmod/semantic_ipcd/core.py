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

**Scoring.**  By default a skill's score is a *probability* from a
classifier trained on the registry (:mod:`~aios.kmod.semantic_ipcd.classifier`):
softmax regression over the skill names plus a "none" class learnt from
generic utterances, refit (lazily, at the next route) whenever a skill
comes or goes.  Scores of different skills then compete: what one gains
another loses, and what none can claim goes to "none".  The earlier
scorer (``scorer="centroid"``), still used for broadcasts and for skill
hygiene, works skill by skill: a skill's score is *calibrated*
(:mod:`~aios.kmod.semantic_ipcd.calibration`): the cosine with the
skill's centroid plus a weighted TF-IDF cosine
(:mod:`~aios.kmod.semantic_ipcd.lexical`), placed on a scale where 0 is
what the skill scores for generic text (the background model,
:mod:`~aios.kmod.semantic_ipcd.background`) and 1 what its own examples
score (leave-one-out).  Scores therefore
mean the same for every skill and do not drift with the registry's size.
Many intents can be scored at once (:meth:`SemanticRouter.route_many`): one
embedding batch and one matrix product for all of them.

**Decision.**  Registrations are grouped by skill *name*: agents that
register the same name are *equivalent* (one class of the classifier).
In the default mode the best skill wins when its score clears
``threshold`` *and* beats the best *different* skill by ``margin``
(equivalent agents never cost margin; with the classifier, a close pair is
refused only if their probabilities together stay under ``threshold``);
among its agents the least loaded one (loads come from the kernel, e.g.
mailbox depth) receives the message, ties going to the higher score, then
the smaller agent id.  Within the margin, an optional re-ranker
(:mod:`~aios.kmod.semantic_ipcd.rerank`) looks closer; if the skills
still do not separate the decision is *ambiguous*: nothing is delivered and
the sender gets the candidates to choose from.  The sender's choice
(:meth:`SemanticRouter.choose`) is delivered and, if the chosen skill's
owner registered it with ``learn=True``, remembered as a new example.  In
broadcast mode every agent with a skill above the threshold receives it
once.  Nothing clearing the bar is :class:`~aios.abi.errors.NoSuchObject`
whose message lists the nearest skills and their scores, so a sender (or a
person at ``aios ask``) sees how close it came.  A payload is validated against each receiving skill's schema
(:class:`~aios.abi.errors.InvalidArgument` on failure), and typed slots
(numbers, dates, emails, ...) are extracted for the receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.kmod.semantic_ipcd import calibration, classifier
from aios.kmod.semantic_ipcd.background import BACKGROUND
from aios.kmod.semantic_ipcd.calibration import Calibration, Verdict
from aios.kmod.semantic_ipcd.classifier import ClassifierCalibration, SoftmaxModel
from aios.kmod.semantic_ipcd.lexical import LexicalIndex
from aios.kmod.semantic_ipcd.rerank import RerankCandidate, Reranker
from aios.kmod.semantic_ipcd.slots import extract_slots
from aios.lib.vectors.embedding import Embedder

DEFAULT_THRESHOLD = classifier.DEFAULT.threshold
DEFAULT_MARGIN = classifier.DEFAULT.margin
MAX_INTENT = 4096
MAX_EXAMPLES = 64
NEAREST_SHOWN = 3


class Scorer(StrEnum):
    CLASSIFIER = "classifier"  # softmax regression with a none class (classifier.py)
    CENTROID = "centroid"  # calibrated centroid + TF-IDF cosine (calibration.py)


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
    learn: bool = False  # may the router add senders' clarified intents as examples?


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
    ambiguous: tuple[Candidate, ...] = ()  # clarification: the close skills, best first

    @property
    def delivered(self) -> bool:
        return bool(self.targets) and not self.explain and self.error is None

    @property
    def verdict(self) -> Verdict:
        if self.ambiguous:
            return Verdict.AMBIGUOUS
        return Verdict.ROUTED if self.targets else Verdict.REFUSED

    def event(self) -> dict[str, Any]:
        """A JSON-ready summary for the event bus and the audit log."""
        return {
            "sender": self.sender, "intent": self.intent, "mode": self.mode.value,
            "targets": [[c.agent, c.skill, round(c.score, 4)] for c in self.targets],
            "nearest": [[c.agent, c.skill, round(c.score, 4)] for c in self.nearest],
            "threshold": self.threshold, "margin": self.margin, "explain": self.explain,
            "reason": self.reason, "error": self.error, "verdict": self.verdict.value,
            "ambiguous": [[c.agent, c.skill, round(c.score, 4)] for c in self.ambiguous],
        }


def _validator(schema: Mapping[str, Any]) -> Any:
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidArgument(f"invalid JSON schema: {exc.message}") from exc
    return cls(schema)


_Key = tuple[str, str]
_CANDIDATES = 16


class SemanticRouter:
    """Skill registry and router; see the module essay."""

    def __init__(self, embedder: Embedder, *, threshold: float | None = None,
                 margin: float | None = None, lexical_weight: float | None = None,
                 calibration_: Calibration | None = None,
                 background: tuple[str, ...] = BACKGROUND,
                 reranker: Reranker | None = None,
                 scorer: Scorer | str = Scorer.CLASSIFIER,
                 classifier_calibration: ClassifierCalibration | None = None) -> None:
        try:
            self.scorer = Scorer(scorer)
        except ValueError:
            raise InvalidArgument(f"unknown scorer {scorer!r}") from None
        base = calibration_ or calibration.DEFAULT
        cbase = classifier_calibration or classifier.DEFAULT
        centroid = self.scorer is Scorer.CENTROID
        cal = Calibration(base.threshold if threshold is None or not centroid else threshold,
                          base.margin if margin is None or not centroid else margin,
                          base.lexical_weight if lexical_weight is None else lexical_weight)
        ccal = ClassifierCalibration(
            cbase.threshold if threshold is None or centroid else threshold,
            cbase.margin if margin is None or centroid else margin, cbase.blend)
        if cal.margin < 0 or cal.lexical_weight < 0 or ccal.margin < 0 or ccal.blend < 0:
            raise InvalidArgument("margin, lexical_weight and blend must be >= 0")
        self.embedder = embedder
        self.calibration = cal
        self.classifier_calibration = ccal
        self._model: SoftmaxModel | None = None
        self._features = classifier.Features()
        self._cls_of = np.zeros(0, dtype=np.int64)  # registration -> class of its name
        self._cls_first = np.zeros(0, dtype=np.int64)  # class -> its first registration
        self.reranker = reranker
        self._background_texts = tuple(background)
        self._bg_vecs: np.ndarray | None = None
        self._skills: dict[_Key, Skill] = {}
        self._validators: dict[_Key, Any] = {}
        self._vecs: dict[_Key, np.ndarray] = {}
        self._lex = LexicalIndex()
        self._order: list[_Key] = []
        self._names: list[str] = []
        self._by_name: dict[str, list[int]] = {}
        self._cent = np.zeros((0, embedder.dim), dtype=np.float32)
        self._mu = np.zeros(0, dtype=np.float32)
        self._sd = np.ones(0, dtype=np.float32)
        self._stale = False
        self._restricted = False  # does any skill restrict its senders? (set by _refresh)

    @property
    def active_scorer(self) -> Scorer:
        """The scorer in use: the classifier falls back to the centroid scorer above
        :data:`classifier.MAX_SKILLS` names (its training cost grows with their square)."""
        if self.scorer is Scorer.CLASSIFIER:
            self._refresh()
            if self._model is not None or not self._skills:
                return Scorer.CLASSIFIER
        return Scorer.CENTROID

    @property
    def threshold(self) -> float:
        if self.active_scorer is Scorer.CLASSIFIER:
            return self.classifier_calibration.threshold
        return self.calibration.threshold

    @property
    def margin(self) -> float:
        if self.active_scorer is Scorer.CLASSIFIER:
            return self.classifier_calibration.margin
        return self.calibration.margin

    def set_calibration(self, cal: Calibration | ClassifierCalibration) -> None:
        """Replace the centroid scorer's or the classifier's decision settings."""
        if isinstance(cal, ClassifierCalibration):
            self.classifier_calibration = cal
            return
        if cal.lexical_weight != self.calibration.lexical_weight:
            self._stale = True
        self.calibration = cal
        self._stale = True

    @property
    def model(self) -> SoftmaxModel | None:
        """The trained classifier (None until the first route, or with the centroid scorer)."""
        self._refresh()
        return self._model

    # -- registry ------------------------------------------------------------

    def register(self, agent: str, name: str, description: str,
                 examples: Iterable[str] = (), *, schema: Mapping[str, Any] | None = None,
                 allowed_senders: Iterable[str] | None = None, learn: bool = False) -> Skill:
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
        skill = Skill(agent, name, description, ex, dict(schema) if schema else None, senders,
                      bool(learn))
        vecs = self.embedder.embed([description, *ex])
        key = (agent, name)
        self._skills[key] = skill
        self._vecs[key] = vecs
        self._lex.set(key, [description, *ex])
        if validator is not None:
            self._validators[key] = validator
        else:
            self._validators.pop(key, None)
        self._stale = True
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
            self._lex.remove(k)
        if keys:
            self._stale = True
        return len(keys)

    def skills(self, agent: str | None = None) -> list[Skill]:
        return [s for k, s in sorted(self._skills.items()) if agent is None or k[0] == agent]

    def stats(self, agent: str, name: str) -> tuple[float, float]:
        """A registration's raw background mean and expected (own-example) score."""
        self._refresh()
        i = self._order.index((agent, name))
        return float(self._mu[i]), float(self._mu[i] + self._sd[i])

    def rows(self, agent: str, name: str) -> np.ndarray:
        """The dense vectors of a registration (description first, then examples)."""
        return self._vecs[(agent, name)]

    def _refresh(self) -> None:
        if not self._stale:
            return
        self._order = sorted(self._skills)
        self._restricted = any(s.allowed_senders is not None for s in self._skills.values())
        self._names = [k[1] for k in self._order]
        self._by_name = {}
        for i, k in enumerate(self._order):
            self._by_name.setdefault(k[1], []).append(i)
        if self._order:
            cent = np.stack([self._vecs[k].mean(axis=0) for k in self._order])
            self._cent = (cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
                          ).astype(np.float32)
        else:
            self._cent = np.zeros((0, self.embedder.dim), dtype=np.float32)
        self._lex.ensure(self._order)
        if self._bg_vecs is None:
            self._bg_vecs = (self.embedder.embed(list(self._background_texts))
                             if self._background_texts
                             else np.zeros((0, self.embedder.dim), dtype=np.float32))
        bg_raw = self._raw(self._bg_vecs, list(self._background_texts))
        self._mu, sd = calibration.background_stats(bg_raw)
        w = self.calibration.lexical_weight
        exp = [calibration.expected(self._vecs[k], self._lex.self_scores(k), w)
               for k in self._order]
        self._sd = calibration.scales(self._mu, exp, sd)
        self._model = None
        if self.scorer is Scorer.CLASSIFIER and len(self._by_name) <= classifier.MAX_SKILLS:
            claimed = (calibration.calibrate(bg_raw, self._mu, self._sd).max(axis=1)
                       >= classifier.CLAIMED if self._order else
                       np.zeros(len(self._background_texts), dtype=bool))
            self._fit_classifier(~claimed)
        self._stale = False

    def _fit_classifier(self, generic: np.ndarray) -> None:
        """Refit the softmax over skill names (+ none from the ``generic`` background rows)."""
        names = sorted(self._by_name)
        index = {n: i for i, n in enumerate(names)}
        rows = []
        for n in names:
            keys = [self._order[i] for i in self._by_name[n]]
            texts = [t for k in keys for t in self._texts(k)]
            rows.append(self._features(np.concatenate([self._vecs[k] for k in keys]), texts))
        assert self._bg_vecs is not None
        texts = [t for t, keep in zip(self._background_texts, generic, strict=True) if keep]
        bg = self._features(self._bg_vecs[generic], texts)
        self._model = classifier.fit(names, rows, bg)
        self._cls_of = np.asarray([index[k[1]] for k in self._order], dtype=np.int64)
        self._cls_first = np.asarray([self._by_name[n][0] for n in names], dtype=np.int64)

    # -- scoring ---------------------------------------------------------------

    def _raw(self, vecs: np.ndarray, texts: list[str]) -> np.ndarray:
        dense: np.ndarray = vecs.astype(np.float32, copy=False) @ self._cent.T
        w = self.calibration.lexical_weight
        if w and texts:
            dense = dense + w * self._lex.scores(texts)
        return dense

    def score_matrix(self, texts: list[str], vecs: np.ndarray | None = None, *,
                     scorer: Scorer | None = None) -> tuple[list[_Key], np.ndarray]:
        """Scores ``(len(texts), registrations)`` and the registration order.

        Classifier probabilities or calibrated centroid scores, by ``scorer``
        (default: the router's own).
        """
        self._refresh()
        if not self._order or not texts:
            return list(self._order), np.zeros((len(texts), len(self._order)), dtype=np.float32)
        q = self.embedder.embed(texts) if vecs is None else vecs
        if (scorer or self.active_scorer) is Scorer.CLASSIFIER:
            return list(self._order), self._probabilities(q, texts)[:, self._cls_of]
        z = calibration.calibrate(self._raw(q, texts), self._mu, self._sd)
        return list(self._order), z

    def _probabilities(self, q: np.ndarray, texts: list[str]) -> np.ndarray:
        """``(len(texts), names + 1)`` classifier probabilities, the none class last."""
        assert self._model is not None
        blend = self.classifier_calibration.blend
        raw = self._raw(q, texts)[:, self._cls_first] if blend else None
        return classifier.probabilities(self._model, self._features(q, texts), raw, blend)

    def _texts(self, key: _Key) -> list[str]:
        """A registration's texts in the order of its vectors (description, then examples)."""
        s = self._skills[key]
        return [s.description, *s.examples]

    def raw_matrix(self, texts: list[str]) -> tuple[list[_Key], np.ndarray]:
        """Uncalibrated scores (dense + weighted lexical), for diagnostics and tests."""
        self._refresh()
        if not self._order or not texts:
            return list(self._order), np.zeros((len(texts), len(self._order)), dtype=np.float32)
        return list(self._order), self._raw(self.embedder.embed(texts), texts)

    def score(self, intent: str) -> list[tuple[_Key, float]]:
        """Every registration's calibrated score for ``intent``, best first."""
        order, z = self.score_matrix([intent])
        if not order:
            return []
        idx = np.argsort(-z[0], kind="stable")
        return [(order[i], float(z[0, i])) for i in idx]

    # -- routing -----------------------------------------------------------------

    def _check(self, intent: Any, payload: Any) -> None:
        if not isinstance(intent, str) or not intent.strip():
            raise InvalidArgument("intent must be a non-empty string")
        if len(intent) > MAX_INTENT:
            raise InvalidArgument(f"intent is over {MAX_INTENT} characters")
        if payload is not None:
            try:
                json.dumps(payload)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"payload is not JSON-serialisable: {exc}") from exc

    def route(self, sender: str, intent: str, payload: Any = None, *,
              broadcast: bool = False, explain: bool = False,
              loads: Mapping[str, int] | None = None) -> RouteDecision:
        """Decide where ``intent`` goes.  Raises NoSuchObject / InvalidArgument unless ``explain``."""
        return self.route_many([(sender, intent, payload)], broadcast=broadcast,
                               explain=explain, loads=loads)[0]

    def route_many(self, items: list[tuple[str, str, Any]], *, broadcast: bool = False,
                   explain: bool = False, loads: Mapping[str, int] | None = None
                   ) -> list[RouteDecision]:
        """Route several ``(sender, intent, payload)`` at once: one embedding batch.

        With ``explain=False`` the first failing item raises (as :meth:`route`);
        the service always batches in explain mode and turns errors into replies.
        """
        for _, intent, payload in items:
            self._check(intent, payload)
        # a broadcast asks every skill on its own whether it matches: the centroid scorer's
        # per-skill calibrated scores, not probabilities that all skills share
        scorer = Scorer.CENTROID if broadcast else self.active_scorer
        texts = [it[1] for it in items]
        order, z = self.score_matrix(texts, scorer=scorer)
        gated = scorer is Scorer.CLASSIFIER and classifier.GATE > 0 and bool(order)
        vecs = self.embedder.embed(texts) if self.reranker or gated else None
        # the classifier's choice must also resemble the skill on its own (centroid) scale
        own = (self._raw(vecs, texts) - self._mu) / self._sd if gated and vecs is not None \
            else None
        return [self._decide(sender, intent, payload, order, z[i] if order else None,
                             None if vecs is None else vecs[i], broadcast, explain, loads or {},
                             None if own is None else own[i])
                for i, (sender, intent, payload) in enumerate(items)]

    def _decide(self, sender: str, intent: str, payload: Any, order: list[_Key],
                z: np.ndarray | None, vec: np.ndarray | None, broadcast: bool, explain: bool,
                loads: Mapping[str, int], own: np.ndarray | None = None) -> RouteDecision:
        cands: list[Candidate] = []
        threshold = self.calibration.threshold if broadcast else self.threshold
        if z is not None:
            z = self._rescale_for(sender, order, z,
                                  Scorer.CENTROID if broadcast else self.active_scorer)
            # Candidates are built for the best few visible registrations only (all of them
            # above the threshold in broadcast mode), plus every equivalent of the best.
            first: str | None = None
            taken: set[int] = set()
            if broadcast or self._restricted or len(z) <= _CANDIDATES:
                ranked = np.argsort(-z, kind="stable")
            else:  # everyone visible: only the best few need sorting
                part = np.argpartition(-z, _CANDIDATES - 1)[:_CANDIDATES]
                ranked = part[np.lexsort((part, -z[part]))]
            for i in ranked:
                k = order[i]
                if len(cands) >= _CANDIDATES and not (broadcast and z[i] >= threshold):
                    break
                if self._may_reach(sender, k):
                    first = first or k[1]
                    taken.add(int(i))
                    cands.append(Candidate(k[0], k[1], float(z[i]), int(loads.get(k[0], 0))))
            for i in self._by_name.get(first or "", ()):
                k = order[i]
                if i not in taken and self._may_reach(sender, k):
                    cands.append(Candidate(k[0], k[1], float(z[i]), int(loads.get(k[0], 0))))
        nearest = tuple(cands[:NEAREST_SHOWN])
        mode = RouteMode.BROADCAST if broadcast else RouteMode.BEST
        ambiguous: tuple[Candidate, ...] = ()
        if broadcast:
            targets, reason = self._broadcast(cands, threshold)
        else:
            own_top = (float(own[order.index((cands[0].agent, cands[0].skill))])
                       if own is not None and cands else None)
            targets, reason, ambiguous = self._best(intent, vec, cands, own_top)
        slots = extract_slots(intent)
        error: str | None = None
        if not targets and not ambiguous:
            near = ", ".join(f"{c.skill}@{c.agent} {c.score:.2f}" for c in nearest) or "none"
            error = f"no skill matches {intent!r} ({reason}); nearest: {near}"
        elif targets:
            error = self._validate(targets, payload)
        decision = RouteDecision(sender, intent, mode, targets, nearest, slots, payload,
                                 threshold, self.margin, explain, reason, error,
                                 ambiguous=ambiguous)
        if error is not None and not explain:
            if not targets:
                raise NoSuchObject(error, nearest=[(c.agent, c.skill, c.score) for c in nearest])
            raise InvalidArgument(error)
        return decision

    def _rescale_for(self, sender: str, order: list[_Key], z: np.ndarray,
                     scorer: Scorer) -> np.ndarray:
        """Put a row on the scale of the best skill *this sender can see*.

        Rows come calibrated on the best skill overall; if that one is
        restricted and invisible to the sender, deciding on its scale would let
        a hidden skill shift the sender's verdicts (a side channel on its
        existence), so the row is moved to the best visible skill's scale.
        """
        if not self._restricted:
            return z
        visible = np.fromiter((self._may_reach(sender, k) for k in order), dtype=bool,
                              count=len(order))
        if scorer is Scorer.CLASSIFIER:
            # the probability of names this sender cannot reach at all is taken out and
            # the rest renormalised (the none class keeps its share)
            seen = np.zeros(len(self._cls_first), dtype=bool)
            seen[self._cls_of[visible]] = True
            hidden = float(z[self._cls_first[~seen]].sum())
            if hidden <= 0.0:
                return z
            scaled: np.ndarray = np.where(seen[self._cls_of], z / max(1.0 - hidden, 1e-12),
                                          0.0).astype(np.float32)
            return scaled
        t = int(np.argmax(z))
        if visible[t] or not visible.any():
            return z
        raw = z * self._sd[t] + self._mu[t]
        v = int(np.argmax(np.where(visible, raw, -np.inf)))
        out: np.ndarray = ((raw - self._mu[v]) / self._sd[v]).astype(np.float32)
        return out

    def _may_reach(self, sender: str, key: _Key) -> bool:
        allowed = self._skills[key].allowed_senders
        return allowed is None or sender in allowed

    def _pick(self, cands: list[Candidate], skill: str) -> tuple[Candidate, int]:
        equivalent = [c for c in cands if c.skill == skill]
        return min(equivalent, key=lambda c: (c.load, -c.score, c.agent)), len(equivalent)

    def _best(self, intent: str, vec: np.ndarray | None, cands: list[Candidate],
              own_top: float | None = None
              ) -> tuple[tuple[Candidate, ...], str, tuple[Candidate, ...]]:
        if not cands:
            return (), "no skills registered", ()
        top = cands[0]
        rival = next((c for c in cands if c.skill != top.skill), None)
        close_call = rival is not None and top.score - rival.score < self.margin
        # probabilities: two close skills split one belief, so a close call is judged on their
        # pooled share (asking beats refusing when the request is surely for one of them)
        pooled = top.score + (rival.score if close_call and rival is not None and
                              self.active_scorer is Scorer.CLASSIFIER else 0.0)
        if pooled < self.threshold:
            return (), f"best score {top.score:.2f} is below the threshold {self.threshold:.2f}", ()
        if own_top is not None and own_top < classifier.GATE:
            return (), (f"best match {top.skill} {top.score:.2f} scores {own_top:.2f} on its own "
                        f"scale, under {classifier.GATE:.2f}"), ()
        why = ""
        if close_call:
            close = self._close(cands, top.score)
            reranked = self._rerank(intent, vec, close)
            if reranked is None:
                names = " vs ".join(f"{c.skill} {c.score:.2f}" for c in close)
                return (), f"ambiguous: {names} (margin {self.margin:.2f})", tuple(close)
            top, rival, why = reranked
        pick, n = self._pick(cands, top.skill)
        why = why or f"best match {top.skill} {top.score:.2f}"
        if rival is not None and "re-ranked" not in why:
            why += f", next {rival.skill} {rival.score:.2f}"
        if n > 1:
            why += f"; least loaded of {n} equivalent agents"
        return (pick,), why, ()

    def _close(self, cands: list[Candidate], best: float) -> list[Candidate]:
        """One candidate per skill name within the margin of the best (at most 4)."""
        out: list[Candidate] = []
        seen: set[str] = set()
        for c in cands:
            if c.score < best - self.margin or len(out) == 4:
                break
            if c.skill not in seen:
                seen.add(c.skill)
                out.append(c)
        return out

    def _rerank(self, intent: str, vec: np.ndarray | None, close: list[Candidate]
                ) -> tuple[Candidate, Candidate, str] | None:
        if self.reranker is None or vec is None or len(close) < 2:
            return None
        rc = [RerankCandidate(c.skill, self._skills[(c.agent, c.skill)].description,
                              self._skills[(c.agent, c.skill)].examples, c.score,
                              self._vecs[(c.agent, c.skill)]) for c in close]
        new = self.reranker.rerank(intent, vec, rc)
        if new is None or len(new) != len(close):
            return None
        ranked = sorted(zip(new, close, strict=True), key=lambda t: -t[0])
        (s1, c1), (s2, c2) = ranked[0], ranked[1]
        if s1 - s2 < self.margin:
            return None
        return (c1, c2, f"re-ranked by {self.reranker.name}: {c1.skill} over {c2.skill} "
                        f"(first stage {c1.score:.2f} vs {c2.score:.2f})")

    def _broadcast(self, cands: list[Candidate], threshold: float
                   ) -> tuple[tuple[Candidate, ...], str]:
        seen: set[str] = set()
        out: list[Candidate] = []
        for c in cands:
            if c.score >= threshold and c.agent not in seen:
                seen.add(c.agent)
                out.append(c)
        if not out:
            top = f"best score {cands[0].score:.2f}" if cands else "no skills registered"
            return (), f"{top}; nothing above the threshold {threshold:.2f}"
        return tuple(out), f"{len(out)} agents above the threshold {threshold:.2f}"

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

    # -- clarification feedback ------------------------------------------------------

    def choose(self, sender: str, intent: str, skill: str, payload: Any = None, *,
               loads: Mapping[str, int] | None = None, learn: bool = True
               ) -> tuple[RouteDecision, list[str]]:
        """Deliver ``intent`` to the skill the sender picked after a clarification.

        Returns the decision and the agents whose registration learnt the
        intent as a new example (only those registered with ``learn=True``,
        only if ``learn``, and never beyond :data:`MAX_EXAMPLES`).  A skill the
        sender may not reach does not exist for it (NoSuchObject).
        """
        self._check(intent, payload)
        loads = loads or {}
        keys = [k for k in sorted(self._skills) if k[1] == skill and self._may_reach(sender, k)]
        if not keys:
            raise NoSuchObject(f"no skill {skill!r} to choose")
        order, z = self.score_matrix([intent])
        zi = {k: float(z[0, order.index(k)]) for k in keys}
        cands = [Candidate(k[0], k[1], zi[k], int(loads.get(k[0], 0))) for k in keys]
        pick, n = self._pick(cands, skill)
        error = self._validate((pick,), payload)
        if error is not None:
            raise InvalidArgument(error)
        learnt: list[str] = []
        if learn:
            for k in keys:
                s = self._skills[k]
                if s.learn and intent not in s.examples and len(s.examples) < MAX_EXAMPLES:
                    self._add_example(k, intent)
                    learnt.append(k[0])
        reason = f"chosen by the sender after a clarification: {skill}"
        if n > 1:
            reason += f"; least loaded of {n} equivalent agents"
        d = RouteDecision(sender, intent, RouteMode.BEST, (pick,), (pick,), extract_slots(intent),
                          payload, self.threshold, self.margin, False, reason, None,
                          extra={"chosen": True, "learnt": learnt})
        return d, learnt

    def _add_example(self, key: _Key, text: str) -> None:
        s = self._skills[key]
        self._skills[key] = Skill(s.agent, s.name, s.description, (*s.examples, text), s.schema,
                                  s.allowed_senders, s.learn)
        self._vecs[key] = np.concatenate([self._vecs[key], self.embedder.embed([text])])
        self._lex.set(key, [s.description, *s.examples, text])
        self._stale = True
