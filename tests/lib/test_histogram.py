"""The fixed-bucket histogram behind the latency metrics."""

from __future__ import annotations

import pytest

from aios.lib.histogram import LATENCY_BUCKETS, Histogram


def test_cumulative_buckets_sum_and_inf() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0, 3.0):
        h.observe(v)
    buckets, total = h.snapshot()
    assert buckets == [("0.1", 2), ("1.0", 3), ("+Inf", 5)]  # le is inclusive, like Prometheus
    assert total == pytest.approx(5.65) and h.count == 5


def test_default_buckets_span_microseconds_to_seconds() -> None:
    assert LATENCY_BUCKETS[0] == 1e-5 and LATENCY_BUCKETS[-1] == 10.0
    assert Histogram().snapshot() == ([(repr(b), 0) for b in LATENCY_BUCKETS] + [("+Inf", 0)], 0.0)


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram(bounds)
