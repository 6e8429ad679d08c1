"""The trained first stage: softmax regression over skill names with a none class."""

from __future__ import annotations

import numpy as np
import pytest

from aios.kmod.semantic_ipcd import calibration as C
from aios.kmod.semantic_ipcd import classifier as clf
from aios.kmod.semantic_ipcd.calibration import Verdict
from aios.kmod.semantic_ipcd.core import Scorer, SemanticRouter
from aios.lib.vectors.embedding import HashingEmbedder


def _unit(m: np.ndarray) -> np.ndarray:
    out: np.ndarray = (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)
    return out


def _twins(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes on one strong shared topic, told apart by one weak, noisy direction."""
    topic = np.zeros(16, dtype=np.float32)
    topic[0] = 1.0
    a = topic + 0.15 * np.eye(16, dtype=np.float32)[1] + 0.25 * rng.normal(size=(n, 16))
    b = topic - 0.15 * np.eye(16, dtype=np.float32)[1] + 0.25 * rng.normal(size=(n, 16))
    a[:, 1] = 0.15 + 0.03 * rng.normal(size=n)
    b[:, 1] = -0.15 + 0.03 * rng.normal(size=n)
    return _unit(a.astype(np.float32)), _unit(b.astype(np.float32))


def test_training_finds_the_direction_that_separates_near_duplicates() -> None:
    rng = np.random.default_rng(7)
    a, b = _twins(rng, 60)
    bg = _unit(rng.normal(size=(30, 16)).astype(np.float32))
    bg[:, 0] = -np.abs(bg[:, 0])  # generic text: away from the shared topic
    model = clf.fit(["a", "b"], [a[:30], b[:30]], _unit(bg))
    p = clf.probabilities(model, np.concatenate([a[30:], b[30:]]))
    gold = np.repeat([0, 1], 30)
    trained = float((p[:, :2].argmax(1) == gold).mean())
    # the centroid classifier (what training starts from) on the same held-out rows
    cent = _unit(np.stack([a[:30].mean(0), b[:30].mean(0)]))
    cosine = float(((np.concatenate([a[30:], b[30:]]) @ cent.T).argmax(1) == gold).mean())
    assert trained >= 0.95 and trained > cosine
    # generic rows go to the none class
    far = _unit(rng.normal(size=(20, 16)).astype(np.float32))
    far[:, 0] = -np.abs(far[:, 0]) - 0.5
    assert (clf.probabilities(model, _unit(far)).argmax(1) == model.none_index()).mean() >= 0.9


def test_fit_edge_cases() -> None:
    rows = [_unit(np.eye(4, dtype=np.float32)[:1]), np.zeros((0, 4), dtype=np.float32)]
    m = clf.fit(["x", "empty"], rows, np.zeros((0, 4), dtype=np.float32), steps=5)
    p = clf.probabilities(m, _unit(np.ones((3, 4), dtype=np.float32)))
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p.argmax(1) == 0).all()  # no rows: "empty" never wins; no background: nor "none"
    assert p[:, 1].max() < 1e-6 and p[:, 2].max() < 1e-6
    with pytest.raises(ValueError):
        clf.fit(["x"], [], np.zeros((0, 4), dtype=np.float32))


def test_steps_shrink_with_the_registry_within_bounds() -> None:
    assert clf.steps_for(1_500, 157, 384) == clf.MAX_STEPS
    assert clf.steps_for(11_000, 1_001, 384) == clf.MIN_STEPS
    mid = clf.steps_for(4_000, 400, 384)
    assert clf.MIN_STEPS <= mid <= clf.MAX_STEPS


def _skills(r: SemanticRouter, order: list[int] | None = None) -> SemanticRouter:
    specs = [
        ("wx", "weather", "weather forecast rain temperature",
         ["will it rain tomorrow", "temperature in paris", "forecast for the weekend"]),
        ("bank", "finance", "bank account balance transfer money",
         ["what is my balance", "transfer money to savings", "send money to my landlord"]),
        ("trips", "travel", "book flight hotel travel",
         ["book a flight to rome", "find a hotel in paris", "reserve a hotel room in oslo"]),
    ]
    for i in order or range(len(specs)):
        a, n, d, ex = specs[i]
        r.register(a, n, d, ex)
    return r


def test_classifier_is_the_default_and_refuses_what_the_background_claims() -> None:
    r = _skills(SemanticRouter(HashingEmbedder()))
    assert r.scorer is Scorer.CLASSIFIER and r.threshold == clf.DEFAULT.threshold
    d = r.route("alice", "transfer money from my account to savings", explain=True)
    assert d.verdict is Verdict.ROUTED and d.targets[0].skill == "finance"
    small_talk = "what is the tallest mountain in Africa?"  # a background sentence
    assert r.route("alice", small_talk, explain=True).verdict is Verdict.REFUSED
    # the mechanism: without the none class the same intent is all the skills' to share
    bare = _skills(SemanticRouter(HashingEmbedder(), background=()))
    assert sum(s for _, s in bare.score(small_talk)) == pytest.approx(1.0, abs=1e-4)
    assert sum(s for _, s in r.score(small_talk)) < 0.5


def test_the_fit_depends_on_the_registry_not_its_history() -> None:
    a = _skills(SemanticRouter(HashingEmbedder()))
    b = SemanticRouter(HashingEmbedder())
    b.register("tmp", "scratch", "temporary skill", ["nothing to see"])
    b.route("s", "warm up the first fit", explain=True)
    _skills(b, [2, 0, 1])
    b.unregister("tmp")
    intents = ["book me a hotel", "rain in oslo", "my balance please"]
    assert np.allclose(a.score_matrix(intents)[1], b.score_matrix(intents)[1], atol=1e-5)


def test_equivalent_agents_share_their_skills_probability() -> None:
    r = _skills(SemanticRouter(HashingEmbedder()))
    r.register("wx2", "weather", "weather forecast rain temperature",
               ["will it rain tomorrow", "temperature in paris", "forecast for the weekend"])
    order, z = r.score_matrix(["will it rain in paris"])
    got = {k: float(v) for k, v in zip(order, z[0], strict=True)}
    assert got[("wx", "weather")] == got[("wx2", "weather")]
    d = r.route("alice", "will it rain in paris", loads={"wx": 3, "wx2": 0}, explain=True)
    assert d.targets[0].agent == "wx2"  # no margin lost to an equivalent agent


def test_a_hidden_skill_takes_no_probability_from_those_who_cannot_see_it() -> None:
    r = _skills(SemanticRouter(HashingEmbedder(), threshold=0.0, margin=0.0))
    r.register("vault", "secrets", "read secret keys from the vault",
               ["read the api key", "show the database password"], allowed_senders=["ops"])
    intent = "show the database password for finance"
    order, z = r.score_matrix([intent])
    p = dict(zip(order, z[0].tolist(), strict=True))
    hidden = p[("vault", "secrets")]
    assert hidden > 0.05
    d = r.route("mallory", intent, explain=True)
    assert all(c.skill != "secrets" for c in d.nearest)
    seen = {(c.agent, c.skill): c.score for c in d.nearest}
    for k, v in seen.items():
        assert v == pytest.approx(p[k] / (1.0 - hidden), rel=1e-4)
    ops = {(c.agent, c.skill): c.score for c in r.route("ops", intent, explain=True).nearest}
    assert ops[("vault", "secrets")] == pytest.approx(hidden, rel=1e-4)


def test_scorer_is_checked_and_settings_apply_to_the_active_one() -> None:
    from aios.abi.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        SemanticRouter(HashingEmbedder(), scorer="oracle")
    with pytest.raises(InvalidArgument):
        SemanticRouter(HashingEmbedder(), margin=-1.0)
    c = SemanticRouter(HashingEmbedder(), scorer="centroid", threshold=0.3)
    assert c.threshold == 0.3 and c.classifier_calibration == clf.DEFAULT
    k = SemanticRouter(HashingEmbedder(), threshold=0.3)
    assert k.threshold == 0.3 and k.calibration.threshold != 0.3
    assert k.model is None  # nothing registered, nothing trained
    k.set_calibration(clf.ClassifierCalibration(0.9, 0.1, 0.0))
    assert (k.threshold, k.margin) == (0.9, 0.1)


def test_a_close_pair_is_asked_about_on_its_pooled_probability() -> None:
    r = SemanticRouter(HashingEmbedder(), threshold=0.6, margin=0.3)
    for agent, name in (("a", "dining"), ("b", "eatery")):
        r.register(agent, name, "restaurant table reservations",
                   ["book a table for two tonight", "reserve dinner for four on friday"])
    intent = "book us a table for dinner"
    (_, p1), (_, p2) = r.score(intent)
    assert p1 < 0.6 and p1 + p2 >= 0.6  # each half alone would be refused
    d = r.route("s", intent, explain=True)
    assert d.verdict is Verdict.AMBIGUOUS and {c.skill for c in d.ambiguous} == {"dining", "eatery"}
    # the centroid scorer's rule (the best alone against the threshold) would refuse it
    top = np.asarray([0])
    rows = (top, np.asarray([p1]), np.asarray([p2]), top, np.asarray([0.0]), np.asarray([0.0]))
    cal = C.Calibration(0.6, 0.3, 0.0)
    assert C.outcome(*rows, cal).refused_in == 1.0
    assert C.outcome(*rows, cal, pooled=True).ambiguous == 1.0


def test_above_the_size_limit_the_router_falls_back_to_the_centroid_scorer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    r = _skills(SemanticRouter(HashingEmbedder()))
    assert r.active_scorer is Scorer.CLASSIFIER and r.model is not None
    monkeypatch.setattr(clf, "MAX_SKILLS", 3)
    r.register("x", "extra", "an extra skill", ["do the extra thing"])
    assert r.active_scorer is Scorer.CENTROID and r.model is None
    assert r.threshold == r.calibration.threshold
    d = r.route("alice", "what is my balance", explain=True)
    assert d.threshold == r.calibration.threshold and d.targets[0].skill == "finance"
    r.unregister("x")
    assert r.active_scorer is Scorer.CLASSIFIER and r.threshold == clf.DEFAULT.threshold


def test_the_gate_refuses_what_the_chosen_skill_does_not_resemble_on_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    r = _skills(SemanticRouter(HashingEmbedder()))
    intent = "transfer money from my account to savings"
    monkeypatch.setattr(clf, "GATE", 0.0)
    assert r.route("alice", intent, explain=True).verdict is Verdict.ROUTED
    monkeypatch.setattr(clf, "GATE", 50.0)  # nothing resembles anything that much
    d = r.route("alice", intent, explain=True)
    assert d.verdict is Verdict.REFUSED and "own scale" in d.reason
    assert r.route("alice", intent, broadcast=True, explain=True).targets  # not for broadcasts
