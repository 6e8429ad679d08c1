"""``aios bench soak``: the figures are reported at the top level, and nothing leaks.

The soak's goals (RSS growth <= 10 MB, bystander p99) are figures for people;
what is asserted is what does not depend on time: after the colony and the
hostile minority are torn down, every kernel table and every live kernel
object is back to its count before the soak, and no handler panicked.
"""

from __future__ import annotations

import pytest

from aios.bench import load, names

KEYS = ("rss_growth_mb", "bystander_p99_us", "audit_pending_max", "leaked_objects",
        "baseline_bystander_p99_us", "bystander_p99_ratio")


def check(out: dict[str, object]) -> None:
    for key in KEYS:
        assert isinstance(out[key], int | float), key
    assert out["leaked_objects"] == 0, out["leaked"]
    assert out["panics"] == 0
    assert isinstance(out["agents_spawned"], int) and out["agents_spawned"] > out["agents"]  # churn
    assert isinstance(out["audit_recorded"], int) and out["audit_recorded"] > 0
    assert isinstance(out["audit_pending_max"], int)
    assert out["audit_pending_max"] <= 2 * int(out["audit_pending_capacity"])  # bounded


def test_soak_smoke() -> None:
    assert "soak" in names()
    check(load("soak")(["--agents", "120", "--per-cell", "40", "--duration", "6", "--warmup", "2",
                        "--baseline", "1", "--period", "0.5", "--hostile", "0.05"]))


@pytest.mark.slow
def test_soak_a_minute_with_2000_agents() -> None:
    check(load("soak")(["--agents", "2000", "--duration", "60", "--warmup", "10", "--period", "2"]))
