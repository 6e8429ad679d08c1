"""Smoke test: ``aios bench journal`` runs small and reports its headline keys at the top level."""

from __future__ import annotations

from aios.bench import load, names


def test_bench_journal_small() -> None:
    assert "journal" in names()
    out = load("journal")(["--spawns", "200", "--grants", "500", "--sends", "2000",
                           "--unbatched", "20", "--agents", "300", "--caps", "2000"])  # fmt: skip
    for key in ("durable_sends_per_s", "journal_ratio", "recovery_s_10k_agents",
                "journal_bytes_per_agent", "durable_sends_memory_per_s", "spawn_per_s",
                "grant_per_s", "durable_sends_unbatched_per_s", "recovery_compacted_s"):  # fmt: skip
        assert isinstance(out[key], int | float) and out[key] > 0, key
    assert list(out)[:4] == ["durable_sends_per_s", "journal_ratio", "recovery_s_10k_agents",
                             "journal_bytes_per_agent"]  # fmt: skip
    assert out["agents"] == 300 and out["capabilities"] >= 2000
