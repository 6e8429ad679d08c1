"""Calibrated scores and the routing decision: one setting from 10 skills to 1,000.

A raw similarity means different things for different skills.  A skill whose
examples use everyday words ("show my ...", "check the ...") scores 0.4
against almost any request; a skill about "TLS certificates" scores 0.1
against most and 0.6 against its own.  One global cosine threshold either
lets the first take what is not its own or refuses the second's real
requests, and it drifts as the registry grows.  So the router calibrates
every skill separately, in three steps.

**Raw score.**  ``raw = dense + w * lexical``: the cosine of the intent's
embedding with the skill's centroid (the normalised mean of its
description and example vectors) plus ``w`` times the cosine of their
TF-IDF vectors (:mod:`~aios.kmod.semantic_ipcd.lexical`), which sees the
operation words that embeddings blur.

**Background ("none") model.**  Each skill is scored against a fixed set of
generic utterances (:mod:`~aios.kmod.semantic_ipcd.background`); their
mean ``mu`` says how high that skill scores for text not meant for it.
Skills are still *ranked* by raw score (rescaling each skill by its own
background reorders them by how unusual a request is for each, which cost
11 points of top-1 on the benchmark); the other candidates are shown on
the best skill's scale (:func:`calibrate`), so the margin below is a raw gap
measured in units of the best skill's scale.

**Spread of the examples.**  ``expected`` is the mean raw score of the
skill's own examples against its centroid with the example left out
(:func:`expected`): what a real request for it should score.  A broad
skill (one that covers booking, moving and cancelling) has spread-out
examples and a low expected score; a narrow one a high score.  The
calibrated score is ``c = (raw - mu) / (expected - mu)``: 0 is what generic
text scores for this skill, 1 is what its own examples score.  It depends on
the skill and the generic set, not on how many other skills are registered.
(An earlier version divided by the background's standard deviation
instead; on the benchmark that refused 78 % of the in-scope requests of the
original 12 broad skills at the setting fit for 156 narrow ones, against
36 % with the example spread.)

**Decision** (:func:`decide`), with ``c1 >= c2`` the two best calibrated
scores of *different* skills:

* ``c1 < threshold``: refused (no skill means it);
* ``c1 - c2 < margin``: ambiguous; the sender gets a clarification listing
  every skill within the margin of the best (``semantic.ambiguous``), or
  a re-ranker decides (see :mod:`~aios.kmod.semantic_ipcd.rerank`);
* otherwise routed to the best.

The margin is *relative to the runner-up*, so a larger registry, where the
runner-up is closer, asks more often instead of guessing.  ``threshold``,
``margin`` and ``w`` are fit on the benchmark's validation split only
(:func:`fit`, run by ``aios bench semantic``); :data:`DEFAULT` holds the
values that fit produced, and the test split is scored with them once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

SD_FLOOR = 0.02
SCALE_FLOOR = 0.05


class Verdict(StrEnum):
    ROUTED = "routed"
    AMBIGUOUS = "ambiguous"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Calibration:
    """The three fitted numbers (see the module essay)."""

    threshold: float
    margin: float
    lexical_weight: float

    def as_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "margin": self.margin,
                "lexical_weight": self.lexical_weight}


#: Fit on the routing benchmark's validation split (150+ skills, MiniLM):
#: ``aios bench semantic --json`` prints the fit it made in the same run.
DEFAULT = Calibration(threshold=0.775, margin=0.12, lexical_weight=0.25)


def background_stats(bg_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-skill mean and spread (floored) of background raw scores ``(texts, skills)``."""
    if bg_raw.shape[0] == 0:
        n = bg_raw.shape[1]
        return np.zeros(n, dtype=np.float32), np.full(n, SD_FLOOR * 5, dtype=np.float32)
    mu = bg_raw.mean(axis=0).astype(np.float32)
    sd = np.maximum(bg_raw.std(axis=0), SD_FLOOR).astype(np.float32)
    return mu, sd


def expected(rows: np.ndarray, lex_self: np.ndarray, w: float) -> float | None:
    """Leave-one-out raw score of a skill's examples (``rows[0]`` is the description).

    The dense part leaves each example out of the centroid; the lexical part
    (``lex_self``: each text's cosine with the skill's TF-IDF centroid) does
    not, a small optimism that keeps this O(examples).  None without examples.
    """
    ex = rows[1:]
    if len(ex) < 2:
        return None
    tot = rows.sum(axis=0)
    dots = ex @ tot
    norms = np.sqrt(np.maximum(float(tot @ tot) - 2 * dots + 1.0, 1e-12))
    dense = (dots - 1.0) / norms
    return float(np.mean(dense + w * lex_self[1:]))


def scales(mu: np.ndarray, exp: list[float | None], sd: np.ndarray) -> np.ndarray:
    """``expected - mu`` per skill, floored; without examples, 4 background spreads."""
    out = np.asarray([(e - m) if e is not None else 4 * s for e, m, s in zip(exp, mu, sd,
                                                                             strict=True)],
                     dtype=np.float32)
    return np.maximum(out, SCALE_FLOOR).astype(np.float32)


def calibrate(raw: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Each row on the scale of its best skill: ``(raw - mu[top]) / sd[top]``.

    ``sd`` here is the skill's *scale* (:func:`scales`): 0 is the background,
    1 is what the skill's own examples typically score.

    Ranking stays the raw ranking (a per-skill rescaling would reorder skills
    by how *unusual* a request is for each, which measurably hurts top-1),
    the best score is that skill's own calibrated score, and the gap to any
    other skill is the raw gap in units of the best skill's background spread.
    """
    if raw.shape[1] == 0:
        return raw.astype(np.float32)
    top = np.argmax(raw, axis=1)
    out: np.ndarray = ((raw - mu[top][:, None]) / sd[top][:, None]).astype(np.float32)
    return out


def decide(c1: float, c2: float | None, cal: Calibration) -> Verdict:
    if c1 < cal.threshold:
        return Verdict.REFUSED
    if c2 is not None and c1 - c2 < cal.margin:
        return Verdict.AMBIGUOUS
    return Verdict.ROUTED


@dataclass(frozen=True, slots=True)
class Outcome:
    """Rates over a labelled set (fractions of in-scope and out-of-scope utterances)."""

    top1: float
    misrouted: float
    ambiguous: float
    refused_in: float
    oos_refused: float  # refused outright (a clarification is not a refusal)
    oos_ambiguous: float


def _answered(c1: np.ndarray, c2: np.ndarray, cal: Calibration, pooled: bool) -> np.ndarray:
    """Not refused: the best clears the threshold (or, pooled, a close pair does together)."""
    ok: np.ndarray = c1 >= cal.threshold
    if pooled:
        ok = ok | ((c1 - c2 < cal.margin) & (c1 + c2 >= cal.threshold))
    return ok


def outcome(top: np.ndarray, c1: np.ndarray, c2: np.ndarray, gold: np.ndarray,
            oos_c1: np.ndarray, oos_c2: np.ndarray, cal: Calibration, *,
            pooled: bool = False) -> Outcome:
    """Vectorised :func:`decide` over in-scope rows (with gold labels) and out-of-scope rows.

    ``pooled``: the classifier's rule, where a close pair is refused only if
    their probabilities *together* stay under the threshold.
    """
    ans = _answered(c1, c2, cal, pooled)
    routed = ans & (c1 - c2 >= cal.margin)
    amb = ans & (c1 - c2 < cal.margin)
    o_ans = _answered(oos_c1, oos_c2, cal, pooled)
    n = max(len(c1), 1)
    m = max(len(oos_c1), 1)
    return Outcome(
        top1=float((routed & (top == gold)).sum() / n),
        misrouted=float((routed & (top != gold)).sum() / n),
        ambiguous=float(amb.sum() / n),
        refused_in=float((~ans).sum() / n),
        oos_refused=float((~o_ans).sum() / m),
        oos_ambiguous=float((o_ans & (oos_c1 - oos_c2 < cal.margin)).sum() / m),
    )


def top_two(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the best column, its value and the second best value, per row."""
    if z.shape[1] == 1:
        top = np.zeros(z.shape[0], dtype=np.int64)
        return top, z[:, 0], np.full(z.shape[0], -np.inf, dtype=z.dtype)
    part = np.argpartition(-z, 1, axis=1)[:, :2]
    rows = np.arange(z.shape[0])
    a, b = z[rows, part[:, 0]], z[rows, part[:, 1]]
    swap = b > a
    top = np.where(swap, part[:, 1], part[:, 0])
    return top, np.maximum(a, b), np.minimum(a, b)


def fit(in_z: Sequence[np.ndarray], gold: np.ndarray, oos_z: Sequence[np.ndarray],
        weights: Sequence[float], *, max_misrouted: float = 0.05,
        min_oos_refused: float = 0.85, pooled: bool = False,
        clarify_value: float = 0.0) -> tuple[Calibration, Outcome]:
    """Choose ``(threshold, margin, w)`` on validation data.

    ``in_z[i]`` / ``oos_z[i]`` are calibrated score matrices computed with
    lexical weight ``weights[i]``.  Among the settings that keep misrouting
    at or below ``max_misrouted`` and refuse at least ``min_oos_refused`` of
    the out-of-scope rows, the one with the best top-1 wins; if none does,
    the one with the best ``top1 + oos_refused - 2 * misrouted`` (misrouting
    costs twice what a refusal does).  ``clarify_value`` counts an in-scope
    clarification as that fraction of a right route (the sender answers one
    question, and usually the right skill is among those offered), so that
    of two settings with about the same top-1 the one that asks wins.
    """
    best: tuple[tuple[int, float], Calibration, Outcome] | None = None
    for w, zi, zo in zip(weights, in_z, oos_z, strict=True):
        top, c1, c2 = top_two(zi)
        _, o1, o2 = top_two(zo)
        for t in np.round(np.arange(0.0, 1.501, 0.025), 3):
            for mg in np.round(np.arange(0.0, 0.601, 0.01), 3):
                cal = Calibration(float(t), float(mg), float(w))
                o = outcome(top, c1, c2, gold, o1, o2, cal, pooled=pooled)
                ok = o.misrouted <= max_misrouted and o.oos_refused >= min_oos_refused
                won = o.top1 + clarify_value * o.ambiguous
                key = (1, won) if ok else (0, won + o.oos_refused - 2 * o.misrouted)
                if best is None or key > best[0]:
                    best = (key, cal, o)
    assert best is not None
    return best[1], best[2]
