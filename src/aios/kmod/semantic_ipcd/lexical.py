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
score recomputes the IDF and the centroids with numpy over term ids
assigned when each text was added (tens of milliseconds at 150 skills,
about a second at 1,000 on a loaded 2-core host).  Centroids are kept as
postings (term -> skills, weights), so scoring a query touches only the
postings of its own terms.
"""

from __future__ import annotations

import itertools
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
    """TF-IDF centroids per key; ``scores(texts)`` gives one cosine per key.

    Terms get ids once, when a text is added (the id table only grows), so a
    rebuild is numpy work per key, and the centroids are kept as postings
    (term -> keys, weights): memory and query cost follow the terms a query
    actually has, not the vocabulary times the registry.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        # per key: term ids, term frequencies, text index of each, #texts, unique ids, inverse
        self._texts: dict[Hashable, tuple[np.ndarray, np.ndarray, np.ndarray, int,
                                          np.ndarray, np.ndarray]] = {}
        self._stale = True
        self._order: list[Hashable] = []
        self._idf = np.zeros(0, dtype=np.float32)
        self._indptr = np.zeros(1, dtype=np.int64)
        self._post_key = np.zeros(0, dtype=np.int64)
        self._post_val = np.zeros(0, dtype=np.float32)
        self._self: dict[Hashable, np.ndarray] = {}

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(terms(text))
        ids = np.fromiter((self._ids.setdefault(t, len(self._ids)) for t in counts),
                          dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        return ids, tf

    def set(self, key: Hashable, texts: Iterable[str]) -> None:
        enc = [self._encode(t) for t in texts]
        if enc:
            ids = np.concatenate([i for i, _ in enc])
            tf = np.concatenate([t for _, t in enc])
            row = np.repeat(np.arange(len(enc)), [len(i) for i, _ in enc])
        else:
            ids, tf, row = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32),
                            np.zeros(0, dtype=np.int64))
        uniq, inv = np.unique(ids, return_inverse=True)
        self._texts[key] = (ids, tf, row, len(enc), uniq, inv)
        self._stale = True

    def remove(self, key: Hashable) -> None:
        if self._texts.pop(key, None) is not None:
            self._stale = True

    def rebuild(self, order: Sequence[Hashable]) -> None:
        n_terms = len(self._ids)
        df = np.zeros(n_terms, dtype=np.float32)
        for k in order:
            df[self._texts[k][4]] += 1.0
        n = max(len(order), 1)
        idf = (np.log((n + 1) / (df + 1.0)) + 1.0).astype(np.float32)
        idf[df == 0] = 0.0  # terms of removed keys only
        p_term: list[np.ndarray] = []
        p_key: list[np.ndarray] = []
        p_val: list[np.ndarray] = []
        self._self = {}
        for ki, k in enumerate(order):
            ids, tf, row, n_texts, uniq, inv = self._texts[k]
            if not n_texts:
                self._self[k] = np.zeros(0, dtype=np.float32)
                continue
            w = (1.0 + np.log(np.maximum(tf, 1.0))) * idf[ids]
            norms = np.sqrt(np.bincount(row, w * w, minlength=n_texts))
            w = w / np.where(norms > 0, norms, 1.0)[row]
            cent = np.bincount(inv, w, minlength=len(uniq)).astype(np.float32)
            c_norm = float(np.linalg.norm(cent))
            if c_norm > 0:
                cent /= c_norm
            self._self[k] = np.bincount(row, w * cent[inv], minlength=n_texts).astype(np.float32)
            p_term.append(uniq)
            p_key.append(np.full(len(uniq), ki, dtype=np.int64))
            p_val.append(cent)
        if p_term:
            term = np.concatenate(p_term)
            srt = np.argsort(term, kind="stable")
            self._post_key = np.concatenate(p_key)[srt]
            self._post_val = np.concatenate(p_val)[srt].astype(np.float32)
            self._indptr = np.concatenate([[0], np.cumsum(np.bincount(term, minlength=n_terms))])
        else:
            self._post_key = np.zeros(0, dtype=np.int64)
            self._post_val = np.zeros(0, dtype=np.float32)
            self._indptr = np.zeros(n_terms + 1, dtype=np.int64)
        self._idf = idf
        self._order = list(order)
        self._stale = False

    def ensure(self, order: Sequence[Hashable]) -> None:
        if self._stale or list(order) != self._order:
            self.rebuild(order)

    def self_scores(self, key: Hashable) -> np.ndarray:
        """Cosines of a key's own texts (in registration order) with its centroid."""
        return self._self[key]

    def scores(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), keys)`` cosines of each text's TF-IDF vector with each centroid.

        One pass of Python per text (its terms); the postings of all texts'
        terms are then gathered and summed in a few numpy calls.
        """
        n_keys = len(self._order)
        n_idf = len(self._idf)
        rows: list[int] = []
        ids: list[int] = []
        tfs: list[float] = []
        for r, t in enumerate(texts):
            for x, c in Counter(terms(t)).items():
                j = self._ids.get(x)
                if j is not None and j < n_idf:
                    rows.append(r)
                    ids.append(j)
                    tfs.append(c)
        if not rows or not n_keys:
            return np.zeros((len(texts), n_keys), dtype=np.float32)
        row = np.asarray(rows, dtype=np.int64)
        term = np.asarray(ids, dtype=np.int64)
        w = (1.0 + np.log(np.asarray(tfs, dtype=np.float32))) * self._idf[term]
        norms = np.sqrt(np.bincount(row, w * w, minlength=len(texts)))
        w = w / np.where(norms > 0, norms, 1.0)[row]
        start = self._indptr[term]
        lens = self._indptr[term + 1] - start
        total = int(lens.sum())
        if total == 0:
            return np.zeros((len(texts), n_keys), dtype=np.float32)
        # positions of every posting of every (text, term) pair, flattened
        first = np.repeat(start - (np.cumsum(lens) - lens), lens)
        pos = np.arange(total, dtype=np.int64) + first
        flat = np.repeat(row, lens) * n_keys + self._post_key[pos]
        vals = np.repeat(w, lens) * self._post_val[pos]
        out = np.bincount(flat, vals, minlength=len(texts) * n_keys)
        return out.reshape(len(texts), n_keys).astype(np.float32)
