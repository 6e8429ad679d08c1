"""``aios bench memory``: the vector index against numpy brute force, same run.

Data: ``--n`` clustered unit vectors (384-d by default).  Each cluster is a
random centre plus a random low-dimensional subspace (``--intrinsic`` 16
dimensions) plus a little isotropic jitter, which is how sentence
embeddings look (a topic, and a few directions of variation inside it); a
query is a fresh point from the same generator, and its nearest neighbours
sit at cosine 0.6 to 0.8 as they do for real text.  Pure isotropic noise in
384-d would make every point of a cluster equidistant, a case no approximate
index (nor any user) cares about.

Measures: build time of :class:`~aios.lib.vectors.index.VectorIndex` in HNSW
mode; single-query QPS through the index's public ``search`` and recall@10
against exact answers for efSearch 64/128/256/512 (``qps_efN``,
``recall_efN``); the headline ``qps`` and ``recall_at_10`` are at the
smallest efSearch whose recall reaches ``--target-recall`` (0.95); numpy brute-force single-query QPS over the same
matrix (the baseline), their ratio, and resident bytes per vector
(our float32 copy plus faiss's graph and its own copy of the vectors).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np


def clustered_vectors(n: int, dim: int = 384, clusters: int = 100, seed: int = 0,
                      intrinsic: int = 16, spread: float = 0.5,
                      jitter: float = 0.02) -> np.ndarray:
    """``n`` unit vectors in ``clusters`` low-dimensional clusters (see module doc)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = (rng.standard_normal((clusters, intrinsic, dim)) / np.sqrt(dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 50_000
    for s in range(0, n, step):
        m = min(step, n - s)
        lab = rng.integers(0, clusters, m)
        z = (rng.standard_normal((m, intrinsic)) * spread).astype(np.float32)
        x = centres[lab] + np.einsum("ni,nid->nd", z, basis[lab])
        x += (jitter / np.sqrt(dim)) * rng.standard_normal((m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    return out


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for s in range(0, queries.shape[0], 64):
        scores = queries[s : s + 64] @ data.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for j in range(top.shape[0]):
            out[s + j] = top[j][np.argsort(-scores[j, top[j]])]
    return out


def run(argv: list[str]) -> dict[str, Any]:
    from aios.lib.vectors.index import VectorIndex

    p = argparse.ArgumentParser(prog="aios bench memory")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--brute-queries", type=int, default=20)
    p.add_argument("--m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--ef-search", type=int, default=96, help="also measured in the sweep")
    p.add_argument("--target-recall", type=float, default=0.95,
                   help="headline qps is at the smallest efSearch reaching this recall")
    p.add_argument("--intrinsic", type=int, default=16)
    a = p.parse_args(argv)

    pool = clustered_vectors(a.n + a.queries, a.dim, clusters=max(10, a.n // 1000),
                             intrinsic=a.intrinsic)
    data, queries = pool[: a.n], pool[a.n :]
    del pool
    index = VectorIndex(a.dim, exact_threshold=1, hnsw_m=a.m, ef_search=a.ef_search)
    t0 = time.perf_counter()
    index.add(range(a.n), data)
    build_s = time.perf_counter() - t0

    truth = exact_top_k(data, queries, 10)
    sweep: dict[str, float] = {}
    chosen: tuple[int, float, float] | None = None
    for ef in sorted({64, 128, 256, 512, a.ef_search}):
        index.ef_search = ef
        t0 = time.perf_counter()
        got = [index.search(q, 10) for q in queries]
        qps_ef = len(queries) / (time.perf_counter() - t0)
        hits = sum(len({h.id for h in g} & set(t.tolist()))
                   for g, t in zip(got, truth, strict=True))
        rec = hits / (10 * len(queries))
        sweep[f"qps_ef{ef}"] = round(qps_ef, 1)
        sweep[f"recall_ef{ef}"] = round(rec, 4)
        if chosen is None and (rec >= a.target_recall or ef == 512):
            chosen = (ef, qps_ef, rec)
    assert chosen is not None
    ef_used, qps, recall = chosen

    nb = min(a.brute_queries, len(queries))
    t0 = time.perf_counter()
    for q in queries[:nb]:
        scores = data @ q
        top = np.argpartition(-scores, 9)[:10]
        top[np.argsort(-scores[top])]
    brute_qps = nb / (time.perf_counter() - t0)

    st = index.stats()
    return {
        "n": a.n,
        "dim": a.dim,
        "build_s": round(build_s, 3),
        "qps": round(qps, 1),
        "recall_at_10": round(recall, 4),
        "brute_force_qps": round(brute_qps, 1),
        "speedup": round(qps / brute_qps, 2),
        "bytes_per_vector": round(st.memory_bytes / a.n, 1),
        "hnsw_m": a.m,
        "ef_search": ef_used,
        **sweep,
    }
