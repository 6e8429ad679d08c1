"""Calibration, lexical scoring, clarification feedback, hygiene and the re-rank seam."""

from __future__ import annotations

import numpy as np
import pytest

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.kmod.semantic_ipcd import calibration as C
from aios.kmod.semantic_ipcd.core import SemanticRouter
from aios.kmod.semantic_ipcd.hygiene import collisions, report
from aios.kmod.semantic_ipcd.lexical import LexicalIndex, terms
from aios.lib.vectors.embedding import HashingEmbedder


def test_terms_stem_and_pair() -> None:
    t = terms("Cancel my bookings for the flights")
    assert "cancel" in t and "book" in t and "flight" in t and "my" not in t
    assert "cancel_my" in t  # pairs keep the raw word order


def test_lexical_index_separates_operations() -> None:
    ix = LexicalIndex()
    ix.set("book", ["book a flight", "reserve a flight to rome"])
    ix.set("cancel", ["cancel my flight", "cancel the flight booking"])
    ix.ensure(["book", "cancel"])
    s = ix.scores(["please cancel the flight"])[0]
    assert s[1] > s[0] > 0
    assert ix.scores(["zebra"])[0].tolist() == [0.0, 0.0]
    assert ix.self_scores("book").shape == (2,)


def test_calibrated_scale_and_ranking() -> None:
    raw = np.asarray([[0.5, 0.3, 0.45], [0.1, 0.2, 0.0]], dtype=np.float32)
    mu = np.asarray([0.1, 0.2, 0.0], dtype=np.float32)
    scale = np.asarray([0.4, 0.1, 0.5], dtype=np.float32)
    z = C.calibrate(raw, mu, scale)
    assert z.argmax(1).tolist() == raw.argmax(1).tolist()  # raw ranking is kept
    assert z[0, 0] == pytest.approx(1.0)  # (0.5 - 0.1) / 0.4
    assert z[0, 0] - z[0, 2] == pytest.approx(0.05 / 0.4)  # gap in the best skill's units
    top, c1, c2 = C.top_two(z)
    assert top.tolist() == [0, 1] and (c1 >= c2).all()


def test_expected_is_leave_one_out() -> None:
    rows = np.eye(4, dtype=np.float32)[[0, 1, 1, 1]]  # description + three identical examples
    e = C.expected(rows, np.zeros(4, dtype=np.float32), 0.0)
    # each example against the normalised sum of the others (desc + two copies of itself)
    assert e == pytest.approx(2 / np.sqrt(5), rel=1e-5)
    assert C.expected(rows[:2], np.zeros(2, dtype=np.float32), 0.0) is None
    s = C.scales(np.asarray([0.1, 0.2]), [0.6, None], np.asarray([0.05, 0.05]))
    assert s.tolist() == pytest.approx([0.5, 0.2])


def test_decide_and_fit() -> None:
    cal = C.Calibration(0.5, 0.1, 0.25)
    assert C.decide(0.4, 0.0, cal) is C.Verdict.REFUSED
    assert C.decide(0.9, 0.85, cal) is C.Verdict.AMBIGUOUS
    assert C.decide(0.9, 0.5, cal) is C.Verdict.ROUTED
    rng = np.random.default_rng(0)
    # in-scope: gold column clearly best; out-of-scope: everything low
    zi = rng.uniform(0, 0.3, (200, 5)).astype(np.float32)
    gold = rng.integers(0, 5, 200)
    zi[np.arange(200), gold] += 0.9
    zo = rng.uniform(0, 0.4, (100, 5)).astype(np.float32)
    fitted, o = C.fit([zi], gold, [zo], [0.25])
    assert o.top1 > 0.95 and o.misrouted == 0 and o.oos_refused >= 0.85
    assert 0.4 <= fitted.threshold <= 0.9


@pytest.fixture
def router() -> SemanticRouter:
    r = SemanticRouter(HashingEmbedder(), scorer="centroid", threshold=0.3, margin=0.05)
    r.register("wx", "weather", "weather forecast rain temperature",
               ["will it rain tomorrow", "temperature in paris", "is it sunny in rome"])
    r.register("bank", "finance", "bank account balance transfer money",
               ["what is my balance", "transfer money to savings", "show my bank balance"])
    return r


def test_route_many_matches_route(router: SemanticRouter) -> None:
    texts = ["rain in paris tomorrow?", "balance of my savings", "zebra quartz"]
    many = router.route_many([("s", t, None) for t in texts], explain=True)
    one = [router.route("s", t, explain=True) for t in texts]
    assert [d.event() for d in many] == [d.event() for d in one]


def test_choose_learns_only_when_allowed() -> None:
    r = SemanticRouter(HashingEmbedder(), scorer="centroid", threshold=0.3, margin=0.05)
    r.register("a", "tables", "restaurant table booking", ["book a table", "reserve dinner"],
               learn=True)
    r.register("b", "tables", "restaurant table booking", ["book a table", "reserve dinner"])
    d, learnt = r.choose("s", "a table for six on sunday", "tables", loads={"a": 5, "b": 0})
    assert d.targets[0].agent == "b" and learnt == ["a"]  # least loaded gets it; a learns
    assert r.skills("a")[0].examples[-1] == "a table for six on sunday"
    assert len(r.skills("b")[0].examples) == 2
    _, again = r.choose("s", "a table for six on sunday", "tables")
    assert again == []  # already known: not added twice
    _, none = r.choose("s", "table for two", "tables", learn=False)
    assert none == []
    with pytest.raises(NoSuchObject):
        r.choose("s", "x", "nope")
    with pytest.raises(InvalidArgument):
        r.choose("s", " ", "tables")


def test_collision_is_named_and_report_lists_confusions() -> None:
    r = SemanticRouter(HashingEmbedder(), scorer="centroid", threshold=0.1, margin=0.2)
    ex = ["book a table for two", "reserve a dinner table", "table for four tonight"]
    r.register("1", "dining", "restaurant tables", ex)
    r.register("2", "weather", "weather forecast", ["will it rain", "sunny tomorrow?",
                                                     "temperature in oslo"])
    assert collisions(r, "2", "weather") == []
    r.register("3", "eatery", "restaurant tables", ex)
    (c,) = collisions(r, "3", "eatery")
    assert c.other == "dining" and c.other_agent == "1" and "dining" in c.message()
    rep = report(r, "1", "dining")
    assert rep.neighbours[0][1] == "eatery" and rep.confusions


def test_reranker_seam_decides_close_calls(router: SemanticRouter) -> None:
    class PickFinance:
        name = "pick-finance"

        def __init__(self) -> None:
            self.seen: list[list[str]] = []

        def rerank(self, intent, vector, candidates):
            self.seen.append([c.skill for c in candidates])
            return [20.0 if c.skill == "finance" else 0.0 for c in candidates]

    router.set_calibration(C.Calibration(0.0, 10.0, 0.25))  # everything is "close"
    d = router.route("s", "rain in paris", explain=True)
    assert d.ambiguous and not d.targets
    rr = PickFinance()
    router.reranker = rr
    d = router.route("s", "rain in paris", explain=True)
    assert not d.ambiguous and d.targets[0].skill == "finance" and "re-ranked" in d.reason
    assert sorted(rr.seen[0]) == ["finance", "weather"]


def test_contrastive_reranker_votes_on_distinguishing_words() -> None:
    from aios.kmod.semantic_ipcd.rerank import ContrastiveLexicalReranker, RerankCandidate

    rows = np.zeros((3, 4), dtype=np.float32)
    book = RerankCandidate("flight.book", "book a flight", ("book a flight to rome",
                                                            "reserve a seat on a plane"), 1.0, rows)
    cancel = RerankCandidate("flight.cancel", "cancel a flight", ("cancel my flight",
                                                                  "drop the plane ticket"), 0.95, rows)
    rr = ContrastiveLexicalReranker(scale=1.0, min_votes=0.2)
    out = rr.rerank("please cancel the flight", rows[0], [book, cancel])
    assert out is not None and out[1] > out[0]  # only the cancel skill uses "cancel"
    assert rr.rerank("the flight", rows[0], [book, cancel]) is None  # nothing distinguishes


def test_a_hidden_skill_does_not_shift_other_senders_decisions(router: SemanticRouter) -> None:
    router.set_calibration(C.Calibration(1.0, 0.05, 0.25))
    texts = ["rain in paris tomorrow?", "rain in paris", "paris rain tomorrow morning",
             "transfer money to savings now", "zebra quartz"]

    def verdicts(sender: str) -> list[tuple[str, list[str], list[str]]]:
        return [(d.verdict.value, [c.skill for c in d.targets], [c.skill for c in d.nearest])
                for d in router.route_many([(sender, t, None) for t in texts], explain=True)]

    before = verdicts("alice")
    assert [v[0] for v in before[:3]] == ["routed"] * 3
    # a restricted skill that matches the rain requests better than weather does, and whose
    # examples are tight (a very different calibration scale from weather's)
    router.register("vip", "storm", "rain in paris tomorrow",
                    ["rain in paris tomorrow", "rain in paris tomorrow!", "rain in paris tomorrow?"],
                    allowed_senders={"boss"})
    assert router.route("boss", "rain in paris tomorrow?", explain=True).targets[0].skill == "storm"
    # alice is judged on the scale of the best skill *she* can see; scores move a little
    # (TF-IDF counts every skill's words), verdicts must not
    assert verdicts("alice") == before
