"""Every PromQL query the rollout judges by, written once.

The controller's Prometheus metric source runs these, and issue 12's exports (alert rules, Argo
Rollouts and Flagger templates) render the same text, so an alert and a rollback decision can
never disagree about what "the candidate's 5xx count" means. Each side is a label selector
(default ``server_type="flask"`` for the baseline, ``server_type="fastapi"`` for the candidate,
plus ``--prometheus-selector`` for the deployment); windows are PromQL durations.

Counts, not rates: the evidence rule needs how many requests a side served, so requests and
errors are ``increase`` over the window, and so are the candidate's OpenTelemetry span counts
(``drum_otel_*``; no series while the candidate does not trace, which leaves the trace-gap rule
unjudged). Liveness uses ``up``, which carries the scrape target's
labels: give each side's targets its ``server_type`` label in the scrape configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_SELECTORS = {"baseline": 'server_type="flask"', "candidate": 'server_type="fastapi"'}


def selector(side_selector: str, extra: str = "") -> str:
    """One side's selector, with the deployment's (``--prometheus-selector``) added."""
    parts = [p.strip().strip("{}") for p in (side_selector, extra) if p and p.strip().strip("{}")]
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """A PromQL range: whole seconds, at least 1s."""
    return f"{max(1, math.ceil(seconds))}s"


#: The routes clients score through; probes, ``/info/``, ``/stats/`` and the scrapes of
#: ``/metrics`` themselves are the platform's traffic, not the users', and are not judged.
SERVED = (
    'endpoint=~".*/(predict/|predictions/|invocations|predictUnstructured/|'
    'predictionsUnstructured/|transform/|chat/completions|directAccess/.*|nim/.*)"'
)


def requests(sel: str, window: str) -> str:
    """Scoring requests the side answered in the window."""
    return f"sum(increase(drum_requests_total{{{sel}, {SERVED}}}[{window}]))"


def errors(sel: str, window: str) -> str:
    """Scoring requests the side answered with a 5xx in the window."""
    return f'sum(increase(drum_requests_total{{{sel}, {SERVED}, status=~"5.."}}[{window}]))'


def error_ratio(sel: str, window: str) -> str:
    """5xx share of the side's requests in the window (for alerts; decisions use the counts)."""
    return f"({errors(sel, window)}) / ({requests(sel, window)})"


def p99_seconds(sel: str, window: str) -> str:
    """The side's P99 response time over the window, from the duration histogram."""
    return (
        "histogram_quantile(0.99, sum by (le) "
        f"(increase(drum_request_duration_seconds_bucket{{{sel}, {SERVED}}}[{window}])))"
    )


def rss_per_worker(sel: str) -> str:
    """Resident memory per worker process (the stacks run different process counts)."""
    return f'sum(drum_memory_bytes{{{sel}, type="rss"}}) / sum(drum_workers{{{sel}}})'


def oom_kills(sel: str, window: str) -> str:
    """Workers the kernel's OOM killer killed in the window."""
    return f"sum(increase(drum_oom_kills_total{{{sel}}}[{window}]))"


def up(sel: str) -> str:
    """1 when every scrape target of the side answered its last scrape."""
    return f"min(up{{{sel}}})"


def last_scrape(sel: str) -> str:
    """Unix time of the side's most recent sample (stale series are "no data")."""
    return f"max(timestamp(drum_workers{{{sel}}}))"


def spans_ended(sel: str, window: str, offset: str = "") -> str:
    """Spans the side's traced requests ended in the window (``offset``: a window ending then)."""
    shift = f" offset {offset}" if offset else ""
    return f"sum(increase(drum_otel_spans_ended_total{{{sel}}}[{window}]{shift}))"


def spans_exported(sel: str, window: str) -> str:
    """Spans the side's OTLP exporter delivered in the window."""
    return f"sum(increase(drum_otel_spans_exported_total{{{sel}}}[{window}]))"


def span_export_failures(sel: str, window: str) -> str:
    """OTLP span export calls of the side that failed in the window."""
    return f"sum(increase(drum_otel_export_failures_total{{{sel}}}[{window}]))"


@dataclass(frozen=True)
class TraceQueries:
    """The trace-gap rule's queries for one side at one evaluation."""

    spans_ended: str
    spans_exported: str
    export_failures: str


def trace_queries(sel: str, window_s: float, lag_s: float) -> TraceQueries | None:
    """Spans ended from the window's start until ``lag_s`` ago, spans exported and failed
    exports over the whole window (see :func:`tandem.rollout.decide.decide` for why the lag);
    None when the window is not longer than the lag (nothing to judge)."""
    # Whole seconds: the lag rounded up and the ended range rounded down, so that the ended
    # range lies inside the exported one and never reaches past now - lag_s.
    lag = math.ceil(lag_s)
    ended_s = math.floor(window_s - lag)
    if ended_s < 1:
        return None
    window = duration(window_s)
    return TraceQueries(
        spans_ended=spans_ended(sel, f"{ended_s}s", f"{lag}s" if lag > 0 else ""),
        spans_exported=spans_exported(sel, window),
        export_failures=span_export_failures(sel, window),
    )


@dataclass(frozen=True)
class SideQueries:
    """The queries for one side at one evaluation."""

    requests: str
    errors: str
    p99: str
    rss: str
    oom_kills: str
    up: str
    last_scrape: str


def side_queries(sel: str, window_s: float, since_start_s: float) -> SideQueries:
    """Every query of one side: the trigger window, and OOM kills since the rollout began."""
    window = duration(window_s)
    return SideQueries(
        requests=requests(sel, window),
        errors=errors(sel, window),
        p99=p99_seconds(sel, window),
        rss=rss_per_worker(sel),
        oom_kills=oom_kills(sel, duration(since_start_s)),
        up=up(sel),
        last_scrape=last_scrape(sel),
    )


def scalar(result: Mapping[str, Any]) -> float | None:
    """The single value of an instant-query answer; None for no series, NaN or infinity."""
    data = result.get("data") or {}
    series = data.get("result") or []
    if data.get("resultType") == "scalar":
        series = [{"value": data.get("result")}]
    if len(series) != 1:
        return None
    try:
        value = float(series[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
