"""The second stage: re-rank the top candidates when the first stage cannot tell them apart.

The first stage (one embedding, one matrix product, a TF-IDF gather) is
cheap and coarse.  When its two best skills are within the margin, the
router does not guess: it asks a :class:`Reranker` to look at the intent and
the few close candidates more carefully.  A re-ranker returns one score per
candidate on the calibrated scale, or ``None`` to abstain; the router then
applies the same margin to the new scores.  If they still do not separate,
the sender gets a ``semantic.ambiguous`` clarification listing the
candidates.

Implementations:

* :class:`NearestExampleReranker` (shipped): scores each candidate by its
  single closest example (1-nearest-neighbour on the dense vectors plus the
  lexical overlap with that example), a finer view than the centroid the
  first stage uses.
* :class:`ContrastiveLexicalReranker` (shipped): words that only one of the
  close candidates uses decide; abstains when there are none.

  Measured on the benchmark's validation split (``val_rerank_tried`` in
  ``aios bench semantic``), both convert many clarifications into routes
  but pick right only about 60 % of the time among close candidates: top-1
  +3 to +9 points, misrouting +2.5 to +9 points.  Since misrouting hands a
  request to the wrong agent, the validation fit leaves them off; the
  router asks instead.
* A cross-encoder: none ships as weights inside a PyPI package usable
  offline here (see docs/memory.md), so none is wired.  It would implement
  this protocol by scoring ``(intent, description + examples)`` pairs.
* The LLM device's embedded model answering a constrained yes/no ("does
  this request ask for <skill description>?") per candidate: the seam is
  this protocol; the lead wires it once the LLM device lands.  Because the
  re-ranker runs on the semantic service's worker thread, a blocking call to
  the device is acceptable there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aios.kmod.semantic_ipcd.lexical import terms


@dataclass(frozen=True, slots=True)
class RerankCandidate:
    """A close candidate as the re-ranker sees it."""

    skill: str
    description: str
    examples: tuple[str, ...]
    score: float  # first-stage calibrated score
    rows: np.ndarray  # the skill's dense vectors (description first, then examples)


class Reranker(Protocol):
    name: str

    def rerank(self, intent: str, vector: np.ndarray,
               candidates: Sequence[RerankCandidate]) -> list[float] | None:
        """New calibrated-scale scores, one per candidate, or None to abstain."""
        ...


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


class NearestExampleReranker:
    """1-NN over the candidates' own examples (dense cosine + word overlap)."""

    name = "nearest-example"

    def __init__(self, scale: float = 10.0, lexical_weight: float = 0.5) -> None:
        self.scale = scale
        self.lexical_weight = lexical_weight

    def rerank(self, intent: str, vector: np.ndarray,
               candidates: Sequence[RerankCandidate]) -> list[float] | None:
        if len(candidates) < 2:
            return None
        q_terms = set(terms(intent))
        best: list[float] = []
        for c in candidates:
            sims = c.rows @ vector
            texts = (c.description, *c.examples)
            lex = np.asarray([_overlap(q_terms, set(terms(t))) for t in texts], dtype=np.float32)
            best.append(float(np.max(sims + self.lexical_weight * lex)))
        top = max(best)
        # same scale as the first stage: the best keeps its score, others fall behind by the gap
        return [candidates[int(np.argmax(best))].score - self.scale * (top - b) for b in best]


class ContrastiveLexicalReranker:
    """Words that only one of the close candidates uses decide between them.

    Among the few close skills, a query word (stemmed, or a word pair) that
    appears in exactly one candidate's description or examples is evidence
    for that candidate, weighted by the share of its texts that use it.
    "Cancel" says nothing across a whole registry (many skills cancel
    something) but everything between "flight_book" and "flight_cancel".
    With no distinguishing word the re-ranker abstains, so the router asks.
    """

    name = "contrastive-lexical"

    def __init__(self, scale: float = 1.0, min_votes: float = 0.2) -> None:
        self.scale = scale
        self.min_votes = min_votes

    def rerank(self, intent: str, vector: np.ndarray,
               candidates: Sequence[RerankCandidate]) -> list[float] | None:
        if len(candidates) < 2:
            return None
        shares: list[dict[str, float]] = []
        for c in candidates:
            texts = (c.description, *c.examples)
            counts: dict[str, int] = {}
            for t in texts:
                for term in set(terms(t)):
                    counts[term] = counts.get(term, 0) + 1
            shares.append({k: v / len(texts) for k, v in counts.items()})
        votes = [0.0] * len(candidates)
        for term in set(terms(intent)):
            owners = [i for i, s in enumerate(shares) if term in s]
            if len(owners) == 1:
                votes[owners[0]] += shares[owners[0]][term]
        order = sorted(range(len(votes)), key=lambda i: -votes[i])
        if votes[order[0]] < self.min_votes:
            return None
        top = candidates[order[0]].score
        return [top - self.scale * (votes[order[0]] - v) for v in votes]
