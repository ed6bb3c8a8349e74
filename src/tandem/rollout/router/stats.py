"""The router's cumulative counters: latency histograms, per-side and mirroring statistics."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tandem.quantiles import histogram_quantile

MAX_DIFFERENCES = 20
"""How many mirror differences the router keeps (the newest)."""


def _latency_bounds() -> tuple[float, ...]:
    bounds = []
    i = 0
    while True:
        bound = 0.1 * 1.1**i
        bounds.append(float(f"{bound:.6g}"))
        if bound >= 120_000.0:
            return tuple(bounds)
        i += 1


LATENCY_BOUNDS_MS: tuple[float, ...] = _latency_bounds()
"""Upper bounds (ms) of the latency buckets: 0.1 ms × 1.1^i, up to the first at or over 120 s.
A value lands in the first bucket whose bound is >= it; values above the last bound land in an
extra overflow bucket, so a histogram has ``len(LATENCY_BOUNDS_MS) + 1`` counts."""


class LatencyHistogram:
    """Cumulative latency counts over :data:`LATENCY_BOUNDS_MS` (relative error <= 10 %)."""

    __slots__ = ("counts", "count", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.count = 0
        self.sum_ms = 0.0

    @staticmethod
    def bucket(ms: float) -> int:
        """Index of the bucket ``ms`` falls in."""
        return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)

    def observe(self, ms: float) -> None:
        """Count one latency in milliseconds."""
        self.counts[self.bucket(ms)] += 1
        self.count += 1
        self.sum_ms += ms

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of everything observed (see :func:`histogram_quantile`)."""
        return histogram_quantile(self.counts, q, LATENCY_BOUNDS_MS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"counts": list(self.counts), "count": self.count, "sum_ms": round(self.sum_ms, 3)}


def counts_delta(now: Sequence[int], before: Sequence[int]) -> list[int]:
    """Per-bucket difference of two cumulative snapshots (a window's histogram)."""
    if len(now) != len(before):
        raise ValueError("histograms have different bucket counts")
    return [a - b for a, b in zip(now, before, strict=True)]


@dataclass
class SideStats:
    """Cumulative counters of one side for one kind of traffic."""

    requests: int = 0
    errors: int = 0
    """Answers with status >= 500 plus connection failures."""
    connection_failures: int = 0
    status_5xx: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def answered(self, status: int, ms: float) -> None:
        """Count an answer."""
        self.requests += 1
        self.latency.observe(ms)
        if status >= 500:
            self.errors += 1
            self.status_5xx += 1

    def failed(self) -> None:
        """Count a connection failure (or timeout)."""
        self.requests += 1
        self.errors += 1
        self.connection_failures += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "connection_failures": self.connection_failures,
            "status_5xx": self.status_5xx,
            "latency": self.latency.to_dict(),
        }


@dataclass
class MirrorStats:
    """Cumulative mirroring counters and the last differences."""

    sampled: int = 0
    launched: int = 0
    compared: int = 0
    matched: int = 0
    differing: int = 0
    """Answers that differ where the candidate did not fail (wrong data: status < 500)."""
    candidate_failed: int = 0
    """Mirrors the candidate answered with 5xx while the baseline did not: errors, counted in
    the candidate's mirrored error figures, not as data differences."""
    dropped: int = 0
    skipped_candidate_down: int = 0
    skipped_too_large: int = 0
    failed: int = 0
    in_flight: int = 0
    differences: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_DIFFERENCES)
    )

    def to_dict(self, max_in_flight: int) -> dict[str, Any]:
        """JSON-able form."""
        doc = {k: v for k, v in self.__dict__.items() if k != "differences"}
        doc["max_in_flight"] = max_in_flight
        doc["differences"] = list(self.differences)
        return doc
