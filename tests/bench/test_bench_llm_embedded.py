"""``aios bench llm-embedded``: both paths run the same work on the same model."""

from __future__ import annotations

import pytest

from aios.bench import load, names

pytestmark = [pytest.mark.llm, pytest.mark.slow]  # 16 agents on the real model


def test_the_kernel_path_generates_what_the_direct_path_does() -> None:
    assert "llm-embedded" in names()
    r = load("llm-embedded")(["--agents", "1,16", "--max-tokens", "4", "--rounds", "1"])
    assert r["kernel_overhead_ratio"] > 0 and r["tokens_per_s_16_agents"] > 0
    assert r["kernel_tokens_16"] == r["direct_tokens_16"] == 64
    assert r["kernel_tokens_1"] == r["direct_tokens_1"] == 4
