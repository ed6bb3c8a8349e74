"""The router's own Prometheus metrics (``GET /metrics`` on the admin listener).

Read from the router's counters at scrape time by a custom collector, so the proxy's hot path
keeps counting in plain integers. ``traffic`` is ``served`` (client traffic) or ``mirrored``
(both halves of each mirror pair); ``side`` is ``baseline`` or ``candidate``.

Latency buckets are every 8th bound of the router's own histogram (0.1 ms × 1.1^8k, so each
bucket is about 2.1× the one before), which keeps the exported counts exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tandem.rollout.router.routing import SIDES
from tandem.rollout.router.stats import LATENCY_BOUNDS_MS, SideStats

if TYPE_CHECKING:
    from tandem.rollout.router.proxy import Router

_EXPORT_EVERY = 8
EXPORTED_BOUNDS_INDEXES = tuple(range(0, len(LATENCY_BOUNDS_MS), _EXPORT_EVERY))
"""Indexes into :data:`LATENCY_BOUNDS_MS` of the exported ``le`` bounds."""


def _buckets(stats: SideStats) -> list[tuple[str, float]]:
    counts = stats.latency.counts
    out: list[tuple[str, float]] = []
    cumulative = 0
    start = 0
    for index in EXPORTED_BOUNDS_INDEXES:
        cumulative += sum(counts[start : index + 1])
        start = index + 1
        out.append((repr(LATENCY_BOUNDS_MS[index] / 1000.0), float(cumulative)))
    out.append(("+Inf", float(stats.latency.count)))
    return out


class RouterCollector:
    """A ``prometheus_client`` collector over one router's counters."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        router = self.router
        labels = ["side", "traffic"]
        requests = CounterMetricFamily(
            "tandem_router_requests",
            "Requests sent to a backend (answered or failed).",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "tandem_router_errors",
            "Backend answers with status >= 500, plus connection failures.",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "tandem_router_connection_failures",
            "Backend calls that failed to connect, write or read, or timed out.",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "tandem_router_request_duration_seconds",
            "Time from sending a request to a backend until its whole answer was read.",
            labels=labels,
        )
        for traffic, by_side in (("served", router.served), ("mirrored", router.mirror.mirrored)):
            for side in SIDES:
                stats = by_side[side]
                requests.add_metric([side, traffic], stats.requests)
                errors.add_metric([side, traffic], stats.errors)
                failures.add_metric([side, traffic], stats.connection_failures)
                latency.add_metric(
                    [side, traffic], _buckets(stats), sum_value=stats.latency.sum_ms / 1000.0
                )
        yield from (requests, errors, failures, latency)

        client = router.client
        for key, name, doc in (
            ("requests", "client_requests", "Requests clients sent to the public listener."),
            ("errors", "client_errors", "Client requests answered 5xx or cut off."),
            ("too_large", "too_large", "Client requests refused with 413 by the router."),
            (
                "retried_on_baseline",
                "retried_on_baseline",
                "Requests the candidate failed that the baseline then served.",
            ),
            (
                "rerouted_candidate_down",
                "rerouted_candidate_down",
                "Candidate-bound requests served by the baseline while the candidate was down.",
            ),
        ):
            yield CounterMetricFamily(f"tandem_router_{name}", doc, value=client[key])

        mirror = router.mirror.stats
        yield CounterMetricFamily(
            "tandem_router_mirror_compared", "Mirror pairs compared.", value=mirror.compared
        )
        yield CounterMetricFamily(
            "tandem_router_mirror_matched",
            "Mirror pairs whose status, content type and body bytes matched.",
            value=mirror.matched,
        )
        yield CounterMetricFamily(
            "tandem_router_mirror_differences",
            "Mirror pairs whose answers differed while the candidate did not fail.",
            value=mirror.differing,
        )
        yield CounterMetricFamily(
            "tandem_router_mirror_candidate_failures",
            "Mirror pairs the candidate answered 5xx where the baseline did not.",
            value=mirror.candidate_failed,
        )
        yield CounterMetricFamily(
            "tandem_router_mirror_failures",
            "Mirrors that could not be sent or read.",
            value=mirror.failed,
        )
        skipped = CounterMetricFamily(
            "tandem_router_mirror_skipped", "Sampled requests not mirrored.", labels=["reason"]
        )
        skipped.add_metric(["in_flight_limit"], mirror.dropped)
        skipped.add_metric(["candidate_down"], mirror.skipped_candidate_down)
        skipped.add_metric(["too_large"], mirror.skipped_too_large)
        yield skipped
        yield GaugeMetricFamily(
            "tandem_router_mirror_in_flight", "Mirrors running now.", value=mirror.in_flight
        )

        routing = router.routing
        yield GaugeMetricFamily(
            "tandem_router_weight_basis_points",
            "Candidate weight the routing asks for (0..10000).",
            value=routing.weight_bp,
        )
        yield GaugeMetricFamily(
            "tandem_router_effective_weight_basis_points",
            "Candidate weight in force (0 while the candidate is down).",
            value=router.effective_weight_bp(routing),
        )
        yield GaugeMetricFamily(
            "tandem_router_mirror_rate",
            "Share of baseline requests mirrored.",
            value=routing.mirror_rate,
        )
        yield GaugeMetricFamily(
            "tandem_router_candidate_down",
            "1 while the candidate is marked down.",
            value=1.0 if router.candidate_down else 0.0,
        )


def exposition(router: Router, accept: str | None) -> tuple[bytes, str]:
    """The metrics text (or OpenMetrics, when ``accept`` asks for it) and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouterCollector(router))  # type: ignore[arg-type]
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
