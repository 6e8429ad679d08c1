from __future__ import annotations

from aios.bench import load


def test_semantic_bench() -> None:
    out = load("semantic")(["--routes", "40"])
    assert out["skills"] == 100
    assert out["routes_per_s"] > 0 and out["route_p50_us"] > 0
    assert out["accuracy"] >= 0.90 and out["utterances"] >= 300
    assert all(isinstance(v, int | float) for v in out.values())
