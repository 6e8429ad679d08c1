"""A trained router: softmax regression over the skills and an explicit "none" class.

The centroid scorer (:mod:`~aios.kmod.semantic_ipcd.calibration`) asks each
skill on its own how much an intent resembles it.  That is a *generative*
view: it never looks at what separates "reschedule a meeting" from
"schedule a meeting", and it has no notion of text meant for no one beyond
a per-skill background mean.  This module asks the registry as a whole
instead: a multinomial logistic regression whose classes are the skill
*names* plus one class for "none of them", trained on what the owners
registered (each skill's description and examples) and on generic
utterances (:mod:`~aios.kmod.semantic_ipcd.background`) as the none class.
A direction in embedding space that tells two near-duplicate skills apart
gets weight because it reduces the training loss, not because anyone chose
it; and the none class competes for every intent, so probability that no
skill can claim goes to "none" instead of to the least bad skill.

**Features.**  ``x`` is the sentence embedding joined with a hashed bag
of the text's words, word pairs and character trigrams
(:class:`~aios.lib.vectors.embedding.HashingEmbedder`, 256 buckets,
weighted ``LEXICAL_SHARE``), the whole normalised (:class:`Features`).
Embeddings are good at topic and blur the operation ("cancel", "change",
"status" of the same flight); the hashed words keep it, and the
regression learns per skill which of them matter.  On the benchmark's
validation split this took top-1 at the fitted operating point from 0.535
(embedding alone) to 0.59, for about 0.1 ms more per intent.

**Model.**  ``logits = scale * (x @ W) + b + blend * raw``: one weight
column and one bias per skill name and for "none"; ``raw`` is the
centroid scorer's raw score (dense cosine plus weighted TF-IDF cosine,
zero for "none"), added with a weight that the validation fit chooses
(zero once the hashed words are in the features).
Probabilities are the softmax over all of it, so each skill's score means
the same thing in every registry: the share of belief that the intent is
for that skill and not for another or for no one.

**Training.**  Full-batch Nesterov gradient descent on the cross-entropy
with an L2 penalty, in numpy (two matrix products per step, the step size
from a bound on the loss's curvature so the descent cannot oscillate), started from
the centroid classifier (each column the skill's normalised centroid, the
none column the background's), so even the first steps route as well as
cosine does and the descent only adds what separates.  Each class's rows
are weighted so every skill counts the same however many examples it has,
and the none class counts as one skill.  A background sentence that some
registered skill claims (its calibrated centroid score for that skill,
:mod:`~aios.kmod.semantic_ipcd.calibration`, reaches ``CLAIMED``: what the
skill's own examples score) is left out of the none class: "is it raining
outside?" is generic text until someone registers a weather skill.  Every refit starts from the
centroids again, so the weights are a function of the registry alone, not
of the order in which skills came and went (the kernel, registering one
agent at a time, and a test registering all at once decide alike).  The
number of steps shrinks as the registry grows (the work per step is rows x
classes) within fixed bounds; above ``MAX_SKILLS`` names the router does
not train at all and uses the centroid scorer (measured at 1,000 skills:
30 steps left the softmax spread over 1,000 classes, so nothing cleared the
threshold and top-1 fell to 0.04).

**Gate.**  Probabilities say which skill is likeliest *among those
registered*; in a small registry a request for a skill nobody registered
still gives most of its mass to the nearest one.  So a route also needs
the chosen skill's own calibrated centroid score (what the centroid scorer
measures, skill by skill) to reach ``GATE``.

**Decision.**  With ``p1 >= p2`` the probabilities of the two best
*different* skills: routed if ``p1 >= threshold`` and ``p1 - p2 >=
margin``; ambiguous (the sender is asked to choose) if ``p1 - p2 <
margin`` and ``p1 + p2 >= threshold``; refused otherwise (the none class,
or a belief spread over many skills, holds the rest).  The pooled test for
a close pair matters because two near-duplicate skills *split* one belief:
a request surely meant for one of them gives each about half, and judging
each half alone against the threshold would refuse what should be asked.
The three numbers of :class:`ClassifierCalibration` are fit on the
benchmark's validation split (``aios bench semantic``, with
:func:`calibration.fit` and ``pooled=True``); the weights are fit on the
registered examples only, never on any benchmark split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aios.lib.vectors.embedding import HashingEmbedder

SCALE = 10.0
L2 = 1e-3
MAX_STEPS = 150
MIN_STEPS = 30
STEP_WORK = 1.6e10  # rows x classes x dims x steps: the budget before the step count shrinks
_LR = 0.5
_MOMENTUM = 0.9
#: Above this many skill names the router uses the centroid scorer instead: a full-batch
#: refit costs rows x classes per step (both grow with the registry), and at 1,000 skills
#: the step budget left the model untrained (it refused everything on the benchmark)
MAX_SKILLS = 400
#: The classifier's choice must also score this on its own calibrated centroid scale
#: (0: generic text, 1: its own examples): probabilities shared among 15 skills hand a
#: request for an unregistered skill to the nearest registered one; the gate, chosen on
#: validation, refuses it (15 skills: out-of-scope refused 0.88 -> 0.96, requests for the
#: 141 unregistered skills refused 0.35 -> 0.76; 150 skills: top-1 0.591 -> 0.588)
GATE = 0.6
CLAIMED = 1.0  # a background sentence scoring this (calibrated) for a skill is that skill's
LEXICAL_DIM = 256
LEXICAL_SHARE = 0.5  # weight of the hashed words against the unit sentence embedding


class Features:
    """The classifier's input: sentence embedding + hashed words, normalised together."""

    def __init__(self, dim: int = LEXICAL_DIM, share: float = LEXICAL_SHARE) -> None:
        self.share = share
        self._hash = HashingEmbedder(dim=dim, cache_size=50_000) if share else None

    def __call__(self, dense: np.ndarray, texts: list[str]) -> np.ndarray:
        if self._hash is None or not len(texts):
            return dense.astype(np.float32, copy=False)
        x = np.concatenate([dense.astype(np.float32, copy=False),
                            self.share * self._hash.embed(texts)], axis=1)
        out: np.ndarray = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
                           ).astype(np.float32)
        return out


@dataclass(frozen=True, slots=True)
class ClassifierCalibration:
    """Decision settings on the probability scale (see the module essay)."""

    threshold: float
    margin: float
    blend: float  # weight of the centroid scorer's raw score in the logits

    def as_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "margin": self.margin, "blend": self.blend}


#: Fit on the routing benchmark's validation split (156 skills, MiniLM) by
#: ``aios bench semantic``, which prints the fit it made in the same run.
DEFAULT = ClassifierCalibration(threshold=0.375, margin=0.15, blend=0.0)


@dataclass(frozen=True, slots=True)
class SoftmaxModel:
    """Trained weights: ``classes`` names, then the none class last."""

    classes: tuple[str, ...]
    weights: np.ndarray  # (dim, len(classes) + 1)
    bias: np.ndarray  # (len(classes) + 1,)
    scale: float
    steps: int

    def logits(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = (self.scale * (x.astype(np.float32, copy=False) @ self.weights)
                           + self.bias).astype(np.float32)
        return out

    def none_index(self) -> int:
        return len(self.classes)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def steps_for(rows: int, classes: int, dim: int) -> int:
    """Fewer steps for bigger problems, within ``[MIN_STEPS, MAX_STEPS]``."""
    work = max(rows * classes * dim, 1)
    return int(min(MAX_STEPS, max(MIN_STEPS, STEP_WORK // work)))


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
    return out


def fit(classes: Sequence[str], rows: Sequence[np.ndarray], background: np.ndarray, *,
        scale: float = SCALE, l2: float = L2, steps: int | None = None) -> SoftmaxModel:
    """Train on ``rows[i]`` (unit vectors of class ``classes[i]``) and the background rows."""
    if len(classes) != len(rows):
        raise ValueError("one block of rows per class")
    k = len(classes)
    dim = background.shape[1] if len(background) else (rows[0].shape[1] if rows else 0)
    blocks = [np.asarray(r, dtype=np.float32).reshape(-1, dim) for r in rows]
    bg = np.asarray(background, dtype=np.float32).reshape(-1, dim)
    x = np.concatenate([*blocks, bg]) if blocks or len(bg) else np.zeros((0, dim), np.float32)
    y = np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in enumerate(blocks)]
                       + [np.full(len(bg), k, dtype=np.int64)])
    counts = np.bincount(y, minlength=k + 1).astype(np.float32)
    present = counts > 0
    # every class with rows weighs the same in the loss, whatever its number of rows
    sw = (1.0 / np.maximum(counts, 1.0))[y] / max(int(present.sum()), 1)

    w = np.zeros((dim, k + 1), dtype=np.float32)
    b = np.zeros(k + 1, dtype=np.float32)
    for i, blk in enumerate(blocks):
        if len(blk):
            w[:, i] = _unit(blk.mean(axis=0))
    if len(bg):
        w[:, k] = _unit(bg.mean(axis=0))
    if not present[k]:
        b[k] = -1e4  # no background: the none class never wins
    b[:k][~present[:k]] = -1e4  # a skill without any text cannot be routed to
    n_steps = steps_for(len(x), k + 1, dim) if steps is None else steps
    if len(x) == 0:
        return SoftmaxModel(tuple(classes), w, b, scale, 0)

    onehot = np.zeros((len(x), k + 1), dtype=np.float32)
    onehot[np.arange(len(x)), y] = 1.0
    xs = (scale * x).astype(np.float32)
    # step 1/L, L bounding the loss's curvature (softmax Hessian <= 1/2 times the weighted
    # second moment of the inputs): a bigger step oscillates, and on two skills with the
    # same texts would blow float noise up into a preference for one of them
    curv = 0.5 * float(np.linalg.eigvalsh((xs * sw[:, None]).T @ xs)[-1])
    lr = min(_LR, 1.0 / max(curv, 1e-6))
    vw = np.zeros_like(w)
    vb = np.zeros_like(b)
    trainable = present.astype(np.float32)
    for _ in range(n_steps):
        lw = w + _MOMENTUM * vw
        lb = b + _MOMENTUM * vb
        resid = (softmax(xs @ lw + lb) - onehot) * sw[:, None]
        gw = xs.T @ resid + l2 * lw
        gb = resid.sum(axis=0)
        vw = (_MOMENTUM * vw - lr * gw * trainable).astype(np.float32)
        vb = (_MOMENTUM * vb - lr * gb * trainable).astype(np.float32)
        w += vw
        b += vb
    return SoftmaxModel(tuple(classes), w, b, scale, n_steps)


def probabilities(model: SoftmaxModel, x: np.ndarray, raw: np.ndarray | None = None,
                  blend: float = 0.0) -> np.ndarray:
    """``(len(x), classes + 1)`` probabilities; ``raw`` (n, classes) is blended in."""
    z = model.logits(x)
    if raw is not None and blend:
        z[:, :-1] += blend * raw
    return softmax(z)
