"""Skill hygiene: collisions at registration, neighbours and confusions for ``aios skills``.

Everything here uses the router's own measure (calibrated scores, the same
margin), so a warning means "the router will have trouble telling these
apart", not some other notion of similarity.

* **Leave-one-out view of a skill.**  Each example is scored against every
  skill, with its *own* skill's dense centroid recomputed without it (an
  example always resembles a centroid it is part of).  ``expected`` is the
  mean of those own scores: what a fresh request for the skill should
  score.  An example is a *confusion* when another skill scores within the
  margin of it, or above it.
* **Collision.**  Registering a skill whose examples collide with another
  skill (at least ``share`` of them confused with it, in either direction)
  yields a :class:`Collision` naming the other skill; the service returns
  it to the registering agent and publishes ``semantic.skill.collision``.
* **Neighbours.**  The skills whose centroids are closest (dense cosine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from aios.kmod.semantic_ipcd.core import SemanticRouter

COLLISION_SHARE = 0.3


@dataclass(frozen=True, slots=True)
class Confusion:
    example: str
    own: float
    other: str
    other_score: float


@dataclass(frozen=True, slots=True)
class Collision:
    skill: str
    agent: str
    other: str
    other_agent: str
    share: float  # fraction of examples (either side) confused between the two

    def message(self) -> str:
        return (f"skill {self.skill!r} collides with {self.other!r} (agent {self.other_agent}): "
                f"{self.share:.0%} of their examples are within the routing margin of each other")


@dataclass(frozen=True, slots=True)
class SkillReport:
    agent: str
    skill: str
    expected: float
    neighbours: tuple[tuple[str, str, float], ...]  # (agent, skill, centroid cosine)
    confusions: tuple[Confusion, ...]


def _loo(router: SemanticRouter, agent: str, name: str
         ) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Examples of a skill, their own leave-one-out scores and everyone's scores.

    Both are on the skill's own calibrated scale (``(raw - mu) / scale``, see
    :mod:`~aios.kmod.semantic_ipcd.calibration`), so "within the margin"
    means what it means when routing to this skill.
    """
    skill = next(s for s in router.skills(agent) if s.name == name)
    rows = router.rows(agent, name)
    texts = list(skill.examples)
    router.score_matrix([])  # refresh
    order = list(router._order)
    if not texts:
        return [], np.zeros(0), np.zeros((0, len(order))), order
    vecs = rows[1:]
    me = order.index((agent, name))
    raw = router._raw(vecs, texts)
    mu, sd = float(router._mu[me]), float(router._sd[me])
    w = router.calibration.lexical_weight
    lex = router._lex.scores(texts)[:, me] if w else np.zeros(len(texts))
    total = rows.sum(axis=0)
    own = np.empty(len(texts), dtype=np.float32)
    for i, v in enumerate(vecs):
        c = total - v
        c = c / max(float(np.linalg.norm(c)), 1e-12)
        own[i] = (float(v @ c) + w * float(lex[i]) - mu) / sd
    return texts, own, (raw - mu) / sd, order


def report(router: SemanticRouter, agent: str, name: str, k: int = 3) -> SkillReport:
    texts, own, z, order = _loo(router, agent, name)
    key = (agent, name)
    confusions: list[Confusion] = []
    for i, t in enumerate(texts):
        for j in np.argsort(-z[i]):
            if order[j][1] == name:
                continue
            if z[i, j] >= own[i] - router.calibration.margin:
                confusions.append(Confusion(t, float(own[i]), order[j][1], float(z[i, j])))
            break
    order_all = order
    cent = router._cent
    me = order_all.index(key)
    sims = cent @ cent[me]
    neigh = [(order_all[j][0], order_all[j][1], float(sims[j])) for j in np.argsort(-sims)
             if order_all[j][1] != name][:k]
    expected = float(own.mean()) if len(own) else float("nan")
    return SkillReport(agent, name, expected, tuple(neigh), tuple(confusions))


def collisions(router: SemanticRouter, agent: str, name: str,
               share: float = COLLISION_SHARE) -> list[Collision]:
    """Skills that collide with ``agent``'s skill ``name`` (see the module essay)."""
    texts, own, z, order = _loo(router, agent, name)
    if not texts:
        return []
    counts: dict[tuple[str, str], int] = {}
    totals: dict[tuple[str, str], int] = {}
    for j, other in enumerate(order):
        if other[1] == name:
            continue
        hit = int(np.sum(z[:, j] >= own - router.calibration.margin))
        if hit:
            counts[other] = counts.get(other, 0) + hit
            totals[other] = len(texts)
    # the other direction, for the few skills this one already resembles
    for other in sorted(counts, key=lambda o: -counts[o])[:5]:
        o_texts, o_own, o_z, o_order = _loo(router, *other)
        if not o_texts:
            continue
        me = o_order.index((agent, name))
        counts[other] += int(np.sum(o_z[:, me] >= o_own - router.calibration.margin))
        totals[other] += len(o_texts)
    out = [Collision(name, agent, o[1], o[0], counts[o] / totals[o]) for o in counts
           if counts[o] / totals[o] >= share]
    return sorted(out, key=lambda c: -c.share)


__all__ = ["Collision", "Confusion", "SkillReport", "collisions", "report"]
