from __future__ import annotations

from aios.bench import load, names


def test_memory_bench_small() -> None:
    out = load("memory")(["--n", "20000", "--queries", "100", "--brute-queries", "5"])
    for key in ("n", "build_s", "qps", "recall_at_10", "brute_force_qps", "speedup",
                "bytes_per_vector"):
        assert isinstance(out[key], int | float), key
    assert out["n"] == 20000 and out["recall_at_10"] >= 0.95
    # one float32 copy (faiss holds it; the index keeps a view) plus graph links
    assert 384 * 4 <= out["bytes_per_vector"] < 2 * 384 * 4
    assert "memory" in names()
