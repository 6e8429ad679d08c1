from __future__ import annotations

from aios.bench import load, names
from aios.bench.planner import make_goals

HEADLINE = ("speedup_vs_sequential", "tokens_ratio_vs_sequential", "plan_valid_rate")


def test_planner_bench_prints_its_headline_keys_at_top_level() -> None:
    assert "planner" in names()
    out = load("planner")(["--goals", "8", "--model-goals", "0"])
    for k in HEADLINE:
        assert k in out, k
    assert out["plan_valid_rate_source"].startswith("scripted")
    assert out["answers_agree"] is True
    goals = make_goals(8, 11)
    # ReAct: one call per step plus the final answer; the planner: plan and join
    assert out["sequential_llm_calls"] == sum(len(g.entities) + 2 for g in goals)
    assert out["planner_llm_calls"] == 2 * len(goals)
    assert out["speedup_vs_sequential"] > out["speedup_vs_sequential_whole_plan"] > 1.0
    assert 0.0 < out["tokens_ratio_vs_sequential"] < 1.0
    assert out["tokenizer"].startswith("gguf:")
