"""A lexical view of the skills: TF-IDF over words and word pairs.

Sentence embeddings are good at *topic* and weak at *operation*: to MiniLM,
"cancel my flight", "change my flight" and "is my flight on time" are all
mostly "flight".  The words that tell them apart ("cancel", "change",
"status", "on time") are exactly the ones a bag of words sees.  So each skill
also gets a lexical centroid: the mean of the TF-IDF vectors of its
description and examples (words and adjacent word pairs, lower-cased, with
a light suffix stripping so "booking"/"booked"/"book" meet), where a term's
IDF counts the *skills* that use it.  A term every skill uses weighs
nothing; a term only one skill uses weighs most.

The index is rebuilt lazily: registration marks it stale, and the next
score rebuilds the vocabulary, the IDF and the centroid matrix in one pass
over the registered texts (milliseconds at 150 skills, well under a second
at 1,000).  Scoring a query gathers the few vocabulary columns its terms
hit, so it costs O(terms x skills), not O(vocabulary).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ings", "ing", "ed", "es", "s")
_STOP = frozenset(
    ["a", "an", "the", "to", "of", "for", "in", "on", "at", "by", "is", "are", "be", "it", "my", "me", "i", "you", "your", "we", "our", "us", "and", "or", "please", "can", "could", "would", "will", "do", "does", "this", "that", "with", "from"])


def _stem(w: str) -> str:
    for suf in _SUFFIXES:
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def terms(text: str) -> list[str]:
    """Stemmed words (stop words dropped) and adjacent pairs of the raw word sequence."""
    words = [_stem(w) for w in _WORD.findall(text.lower())]
    out = [w for w in words if w not in _STOP]
    out += [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    return out


class LexicalIndex:
    """TF-IDF centroids per key; ``scores(text, order)`` gives one cosine per key."""

    def __init__(self) -> None:
        self._texts: dict[Hashable, list[Counter[str]]] = {}
        self._stale = True
        self._vocab: dict[str, int] = {}
        self._idf = np.zeros(0, dtype=np.float32)
        self._cent = np.zeros((0, 0), dtype=np.float32)
        self._order: list[Hashable] = []
        self._self: dict[Hashable, np.ndarray] = {}

    def set(self, key: Hashable, texts: Iterable[str]) -> None:
        self._texts[key] = [Counter(terms(t)) for t in texts]
        self._stale = True

    def remove(self, key: Hashable) -> None:
        if self._texts.pop(key, None) is not None:
            self._stale = True

    def _weights(self, counts: Counter[str]) -> tuple[list[int], np.ndarray]:
        idx, w = [], []
        for t, c in counts.items():
            j = self._vocab.get(t)
            if j is not None:
                idx.append(j)
                w.append((1.0 + math.log(c)) * self._idf[j])
        v = np.asarray(w, dtype=np.float32)
        n = float(np.linalg.norm(v))
        return idx, (v / n if n > 0 else v)

    def rebuild(self, order: Sequence[Hashable]) -> None:
        df: Counter[str] = Counter()
        for k in order:
            df.update({t for c in self._texts[k] for t in c})
        self._vocab = {t: i for i, t in enumerate(sorted(df))}
        n = max(len(order), 1)
        self._idf = np.asarray([math.log((n + 1) / (df[t] + 1)) + 1.0 for t in sorted(df)],
                               dtype=np.float32)
        cent = np.zeros((len(order), len(self._vocab)), dtype=np.float32)
        vecs: list[list[tuple[list[int], np.ndarray]]] = []
        for i, k in enumerate(order):
            vecs.append([self._weights(c) for c in self._texts[k]])
            for idx, w in vecs[-1]:
                cent[i, idx] += w
            nrm = float(np.linalg.norm(cent[i]))
            if nrm > 0:
                cent[i] /= nrm
        self._cent = cent
        self._self = {k: np.asarray([float(cent[i, idx] @ w) if idx else 0.0 for idx, w in vecs[i]],
                                    dtype=np.float32) for i, k in enumerate(order)}
        self._order = list(order)
        self._stale = False

    def ensure(self, order: Sequence[Hashable]) -> None:
        if self._stale or list(order) != self._order:
            self.rebuild(order)

    def self_scores(self, key: Hashable) -> np.ndarray:
        """Cosines of a key's own texts (in registration order) with its centroid."""
        return self._self[key]

    def scores(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), keys)`` cosines of each text's TF-IDF vector with each centroid."""
        out = np.zeros((len(texts), len(self._order)), dtype=np.float32)
        for r, t in enumerate(texts):
            idx, w = self._weights(Counter(terms(t)))
            if idx:
                out[r] = self._cent[:, idx] @ w
        return out
