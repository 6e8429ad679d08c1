from __future__ import annotations

import pytest

from aios.bench import load

HEADLINE = ("top1_150", "oos_refused_150", "misrouted_150", "top1_15", "oos_refused_15",
            "routes_per_s_150", "route_p99_us_150")


@pytest.mark.slow
def test_semantic_bench_quick() -> None:
    out = load("semantic")(["--quick"])
    for k in HEADLINE:
        assert isinstance(out[k], int | float), k
    assert out["skills"] >= 150 and out["test_utterances"] >= 1500
    assert out["misrouted_150"] <= out["baseline_misrouted_150"]
    assert out["oos_refused_150"] > out["baseline_oos_refused_150"]
    assert out["routes_per_s_150"] > 0 and out["route_p50_us_150"] > 0
