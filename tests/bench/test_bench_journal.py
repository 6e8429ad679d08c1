"""Smoke test: ``aios bench journal`` runs small on the wired path and reports its headline keys
at the top level."""

from __future__ import annotations

from aios.bench import load, names


def test_bench_journal_small() -> None:
    assert "journal" in names()
    out = load("journal")(["--spawns", "32", "--grants", "64", "--sends", "1024", "--single-sends", "64",
                           "--parallel", "16", "--batch", "16", "--agents", "64", "--caps", "640"])  # fmt: skip
    for key in ("durable_sends_per_s", "journal_ratio", "recovery_s_10k_agents",
                "journal_bytes_per_agent", "durable_sends_memory_per_s", "spawn_per_s",
                "grant_per_s", "durable_sends_single_per_s", "replay_s", "restore_s"):  # fmt: skip
        assert isinstance(out[key], int | float) and out[key] > 0, key
    assert list(out)[:4] == ["durable_sends_per_s", "journal_ratio", "recovery_s_10k_agents",
                             "journal_bytes_per_agent"]  # fmt: skip
    assert out["agents"] == 64 and out["capabilities"] >= 640
