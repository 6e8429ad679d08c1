"""A fixed-bucket latency histogram, cheap to observe and safe to read from another thread.

Prometheus histograms are cumulative bucket counts plus a sum and a count.  This
is that shape without a dependency: :meth:`Histogram.observe` is one bisect and
two additions; :meth:`Histogram.snapshot` copies the counts so a scrape on
another thread sees one consistent-enough picture (CPython's GIL makes each
update atomic; a scrape may miss an observation in flight, never corrupt one).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise

# seconds: 10 µs to 10 s, roughly x2.5 per step
LATENCY_BUCKETS: tuple[float, ...] = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Histogram:
    """Counts of observations per upper bound (the last bucket is +Inf)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        b = tuple(float(x) for x in bounds)
        if not b or any(x >= y for x, y in pairwise(b)):
            raise ValueError("histogram bounds must be a non-empty increasing sequence")
        self.bounds = b
        self.counts = [0] * (len(b) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        out: list[tuple[str, int]] = []
        acc = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            out.append((repr(bound), acc))
        acc += self.counts[-1]
        out.append(("+Inf", acc))
        return out, self.sum
