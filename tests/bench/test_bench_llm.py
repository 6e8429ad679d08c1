from __future__ import annotations

from aios.bench import load, names

HEADLINE = ("jain_overload", "throughput_vs_fifo", "program_speedup_vs_batched_fifo",
            "budget_overruns", "deadline_miss_rate")


def test_llm_bench_prints_its_headline_keys_at_top_level() -> None:
    assert "llm" in names()
    out = load("llm")(["--seconds", "40", "--warmup", "10",
                       "--policies", "fifo,batched_fifo,ours"])
    for k in HEADLINE:
        assert k in out, k
    assert out["budget_overruns"] == 0
    assert 0.0 < out["throughput_vs_fifo"] < 2.0
    assert set(out["policies"]) == {"fifo", "batched_fifo", "ours"}
    assert out["policies"]["fifo"]["1.5"]["budget_overruns"] > 0  # FIFO ignores budgets
