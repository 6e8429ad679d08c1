from __future__ import annotations

import time

import numpy as np
import pytest

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.bench.memory import clustered_vectors
from aios.lib.vectors.index import VectorIndex


def clustered(n: int, dim: int = 384, clusters: int = 100, seed: int = 0) -> np.ndarray:
    return clustered_vectors(n, dim, clusters=clusters, seed=seed)


def recall_at_10(index: VectorIndex, data: np.ndarray, queries: np.ndarray) -> float:
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    got = index.search_batch(queries, 10)
    hits = sum(len({h.id for h in g} & set(t.tolist())) for g, t in zip(got, truth, strict=True))
    return hits / (10 * len(queries))


def test_exact_mode_finds_itself_and_scores_are_cosine() -> None:
    x = clustered(500, 32)
    idx = VectorIndex(32)
    idx.add(range(500), x)
    assert idx.mode == "exact" and len(idx) == 500
    hits = idx.search(x[7], 3)
    assert hits[0].id == 7 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_switches_to_hnsw_and_keeps_recall() -> None:
    x = clustered(6100, 64, clusters=40)[:6000]
    idx = VectorIndex(64, exact_threshold=5000)
    idx.add(range(4000), x[:4000])
    assert idx.mode == "exact"
    idx.add(range(4000, 6000), x[4000:])
    assert idx.mode == "hnsw"
    q = clustered(6100, 64, clusters=40)[6000:]
    assert recall_at_10(idx, x, q) >= 0.95


def test_recall_at_10_on_100k_clustered() -> None:
    pool = clustered(100_200)
    x, q = pool[:100_000], pool[100_000:]
    idx = VectorIndex(384)
    t0 = time.perf_counter()
    idx.add(range(len(x)), x)
    assert idx.mode == "hnsw"
    r = recall_at_10(idx, x, q)
    assert r >= 0.95, (r, time.perf_counter() - t0)


def test_recall_at_10_on_25k_clustered() -> None:
    pool = clustered(25_100, 128)
    x, q = pool[:25_000], pool[25_000:]
    idx = VectorIndex(128, exact_threshold=10_000, hnsw_m=16)
    idx.add(range(len(x)), x)
    assert idx.mode == "hnsw"
    assert recall_at_10(idx, x, q) >= 0.95


@pytest.mark.parametrize("threshold", [10**9, 100])
def test_delete_and_update_are_honoured(threshold: int) -> None:
    x = clustered(1000, 32)
    idx = VectorIndex(32, exact_threshold=threshold, compact_ratio=0.9)
    idx.add(range(1000), x, [{"n": i} for i in range(1000)])
    assert idx.delete([5, 6, 999_999]) == 2
    assert 5 not in idx and len(idx) == 998
    for h in idx.search_batch(x[[5, 6]], 10):
        assert {5, 6}.isdisjoint(hh.id for hh in h)
    idx.update(7, vector=x[8], meta={"n": "moved"})
    top = idx.search(x[8], 2)
    assert {h.id for h in top} == {7, 8}
    assert idx.get(7)[1] == {"n": "moved"}
    with pytest.raises(NoSuchObject):
        idx.get(5)
    with pytest.raises(NoSuchObject):
        idx.update(5, meta={})


def test_compaction_after_many_deletes_keeps_answers() -> None:
    x = clustered(2000, 32)
    idx = VectorIndex(32, exact_threshold=500, compact_ratio=0.25)
    idx.add(range(2000), x)
    idx.delete(range(0, 2000, 2))
    s = idx.stats()
    assert s.live == 1000 and s.dead < 0.25 * s.rows
    assert idx.search(x[3], 1)[0].id == 3
    assert all(h.id % 2 == 1 for h in idx.search(x[4], 10))


@pytest.mark.parametrize("threshold", [10**9, 200])
def test_metadata_filters(threshold: int) -> None:
    x = clustered(1000, 32)
    idx = VectorIndex(32, exact_threshold=threshold)
    metas = [{"kind": "a" if i % 3 else "b", "t": i, "tag": i % 5} for i in range(1000)]
    idx.add(range(1000), x, metas)
    hits = idx.search(x[0], 20, filters={"kind": "b"})
    assert len(hits) == 20 and all(h.meta["kind"] == "b" for h in hits)
    hits = idx.search(x[0], 50, filters={"tag": [1, 2], "t": {"$gte": 100, "$lt": 200}})
    assert hits and all(h.meta["tag"] in (1, 2) and 100 <= h.meta["t"] < 200 for h in hits)
    assert idx.search(x[0], 5, filters={"kind": "zzz"}) == []
    hits = idx.search(x[0], 5, restrict=[10, 11, 12])
    assert {h.id for h in hits} == {10, 11, 12}
    with pytest.raises(InvalidArgument):
        idx.search(x[0], 5, filters={"t": {"$regex": "x"}})


def test_bad_input_changes_nothing() -> None:
    idx = VectorIndex(8)
    idx.add([1], np.ones((1, 8)))
    with pytest.raises(InvalidArgument):
        idx.add([2], np.ones((1, 7)))
    with pytest.raises(InvalidArgument):
        idx.add([1], np.ones((1, 8)))
    with pytest.raises(InvalidArgument):
        idx.add([3], np.full((1, 8), np.nan))
    with pytest.raises(InvalidArgument):
        idx.add([4], np.ones((1, 8)), [{"x": object()}])
    with pytest.raises(InvalidArgument):
        idx.search(np.ones(8), 0)
    assert idx.ids() == [1]
