"""The one definition of a percentile in Tandem: nearest rank.

``tandem replay``, ``tandem verify``, the rollout router, the rollout analysis and the dashboard
all report percentiles; they all use this module, so a P99 means the same everywhere.

- From samples: the value at rank ``ceil(q * n)`` of the sorted samples (1-based), so the P99 is
  a latency some request really had, and at least 99 % of requests took no longer.
- From a histogram (bucket upper bounds and counts): the upper bound of the bucket that holds
  that same rank, so it is never below the sample P99 and exceeds it by at most the bucket's
  width. The overflow bucket reports the last bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(q: float, n: int) -> int:
    """1-based rank of the ``q`` quantile (0 < q <= 1) among ``n`` values."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {q}")
    # Rounded first: 0.07 * 100 is 7.000000000000001 in floating point, and its rank is 7.
    return max(1, math.ceil(round(q * n, 9)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of ``values`` by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(nearest_rank(q, len(ordered)), len(ordered)) - 1]


def histogram_quantile(counts: Sequence[int], q: float, bounds: Sequence[float]) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of a histogram as its bucket's upper bound.

    ``counts`` has one entry per bound plus, optionally, an overflow bucket (reported as the
    last bound). None when the histogram is empty.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = nearest_rank(q, total)
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return float(bounds[min(i, len(bounds) - 1)])
    return float(bounds[-1])
