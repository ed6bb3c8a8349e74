"""Statistics the decision rules use: Wilson bounds, histogram percentiles, RSS growth.

The evidence rule: an error-rate rule only fires on a window with at least ``min_samples``
requests, and an *immediate* rollback needs the Wilson score interval's lower bound (at the
spec's confidence) above the threshold — so a handful of unlucky requests never rolls back.
Promotion needs the point estimate below the step's threshold on at least ``min_samples``
requests of each side. Anything short of that is inconclusive and holds the step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any


def wilson_bounds(errors: int, total: int, confidence: float) -> tuple[float, float]:
    """One-sided Wilson score bounds (lower, upper) of a proportion; (0, 1) without data."""
    if total <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(confidence)
    p = errors / total
    denom = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, (centre - spread) / denom), min(1.0, (centre + spread) / denom)


def growth_per_hour(history: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(fractional RSS growth per hour, span in seconds) by least squares; None if too short."""
    if len(history) < 3:
        return None
    t0 = history[0][0]
    xs = [t - t0 for t, _ in history]
    ys = [v for _, v in history]
    span = xs[-1] - xs[0]
    if span <= 0:
        return None
    mx = sum(xs) / len(xs)
    my = sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0 or my <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    start = my - slope * mx
    if start <= 0:
        return None
    return slope * 3600.0 / start, span


@dataclass(frozen=True)
class SideWindow:
    """One side's traffic over a window."""

    requests: int = 0
    errors: int = 0
    p99: float | None = None
    """Seconds; None when there were no requests."""

    @property
    def error_rate(self) -> float | None:
        """Point estimate, or None without requests."""
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class TraceWindow:
    """The candidate's OpenTelemetry span counts for the trace-gap rule.

    ``spans_ended`` runs from the window's start until ``triggers.trace_export_lag`` seconds
    ago; ``spans_exported`` and ``export_failures`` from the window's start until now.
    """

    spans_ended: int
    spans_exported: int
    export_failures: int


def describe_difference(item: Mapping[str, Any]) -> str:
    """One line for a mirrored answer that differed from the baseline's (the router's difference
    record): what the decision log and the stored event say, at most 400 characters."""
    text = (
        f"{item.get('method', '')} {item.get('path', '?')} (request "
        f"{item.get('request_id')}): {', '.join(item.get('differs', []))} differ"
        + (
            f" at byte {item['offset']}: baseline {item.get('baseline_bytes')!r}, candidate "
            f"{item.get('candidate_bytes')!r}"
            if item.get("offset") is not None
            else ""
        )
    )
    return text[:400]
