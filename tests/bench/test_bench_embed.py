from __future__ import annotations

from aios.bench import load


def test_embed_bench_reports_each_backend() -> None:
    out = load("embed")(["--n", "48"])
    assert out["minilm_sentences_per_s"] > 0 and out["hashing_sentences_per_s"] > 0
    assert out["minilm_numpy_sentences_per_s"] > 0
    assert out["minilm_cosine_to_reference_min"] >= 0.9999
    assert all(isinstance(v, int | float) for v in out.values())
