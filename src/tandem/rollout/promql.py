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
    """Resident memory per worker process (the stacks run different process counts, and a
    supervised stack's master is not a worker): what ``/stats/`` ``worker_info`` gives the
    built-in metric source."""
    return f'sum(drum_worker_memory_bytes{{{sel}, type="rss"}}) / sum(drum_workers{{{sel}}})'


def oom_kills(sel: str, window: str) -> str:
    """Workers the kernel's OOM killer killed in the window.

    Exact, not ``increase()``: ``increase`` extrapolates to the window's edges, so one kill could
    read as 1.6 and be reported as 2 in the decision log. The counter is exported from a
    server's start (at 0), so the largest value seen minus the smallest is the kills seen.
    """
    series = f"drum_oom_kills_total{{{sel}}}"
    return f"sum(max_over_time({series}[{window}]) - min_over_time({series}[{window}]))"


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


# -- Exports (``tandem export``): alert rules, Argo Rollouts and Flagger analyses, dashboards.
# Built from the queries above, so an exported rule judges by the controller's own text.


def number(value: float) -> str:
    """A float as PromQL reads it back to the same double (``repr``: shortest round trip)."""
    return repr(float(value))


def error_rate_lower_bound(sel: str, window: str, z: float) -> str:
    """The one-sided Wilson score lower bound of the side's 5xx rate in the window, as
    :func:`tandem.rollout.analysis.wilson_bounds` computes it (``z``: the normal quantile of the
    spec's confidence). The error-rate rules fire on this bound, not on the point estimate."""
    n, e = f"({requests(sel, window)})", f"({errors(sel, window)})"
    p = f"({e} / {n})"
    zz = number(z * z)
    return (
        f"(({p} + {zz} / (2 * {n})) - {number(z)} * sqrt({p} * (1 - {p}) / {n} "
        f"+ {zz} / (4 * {n} * {n}))) / (1 + {zz} / {n})"
    )


def p99_ratio(candidate_sel: str, baseline_sel: str, window: str) -> str:
    """Candidate P99 over baseline P99 in the window (no value while the baseline's is 0)."""
    return f"({p99_seconds(candidate_sel, window)}) / ({p99_seconds(baseline_sel, window)} > 0)"


def memory_ratio(candidate_sel: str, baseline_sel: str) -> str:
    """Candidate RSS per worker over the baseline's (no value while the baseline's is 0)."""
    return f"({rss_per_worker(candidate_sel)}) / ({rss_per_worker(baseline_sel)} > 0)"


def rss_growth_per_hour(sel: str, span_s: float, step_s: float, offset_s: float = 0.0) -> str:
    """The side's RSS per worker growth over ``span_s`` seconds (ending ``offset_s`` ago), as a
    fraction of its starting value per hour: the least-squares slope over the fitted value at the
    span's start, as :func:`tandem.rollout.analysis.growth_per_hour` computes it, on samples
    ``step_s`` apart (the controller's evaluation interval)."""
    span, off = max(1, math.ceil(span_s)), max(0, math.ceil(offset_s))
    shift = f" offset {off}s" if off else ""
    samples = f"({rss_per_worker(sel)})[{span}s:{duration(step_s)}]{shift}"
    # predict_linear extrapolates from the evaluation time, not from the shifted one.
    return f"3600 * deriv({samples}) / predict_linear({samples}, -{span + off})"


def present_since(sel: str, ago_s: float) -> str:
    """Non-empty when the side had a worker ``ago_s`` seconds ago (its history is that long)."""
    return f"sum(drum_workers{{{sel}}} offset {duration(ago_s)})"


def leak_growth_per_hour(sel: str, span_s: float, step_s: float, history_s: float) -> str:
    """The leak rule's value: the smallest of the RSS growth over the last ``span_s`` and over
    each half of it (a one-off step, a cache filling, grows one half only), as
    :func:`tandem.rollout.decide.decide` takes it; no value until the side has ``history_s``
    seconds of history (warm-up plus span)."""
    half = span_s / 2
    parts = {
        "span": rss_growth_per_hour(sel, span_s, step_s),
        "first_half": rss_growth_per_hour(sel, half, step_s, half),
        "second_half": rss_growth_per_hour(sel, half, step_s),
    }
    labelled = " or ".join(
        f'label_replace({expr}, "part", "{name}", "", "")' for name, expr in parts.items()
    )
    return f"min({labelled}) and {present_since(sel, history_s)}"


def trace_gaps(sel: str, window_s: float, lag_s: float) -> str | None:
    """The trace-gap rule's value: spans missing (ended from the window's start until ``lag_s``
    ago, less those exported over the whole window, 0 when as many or more were exported) plus
    failed span exports over the window; above 0 exactly when
    :func:`tandem.rollout.decide.decide` finds a trace gap. Each count is rounded as the
    controller's Prometheus source rounds it (:func:`trace_queries`' three queries); no value
    while any of them has none (the side does not trace), and None when the window is not
    longer than the lag (nothing to judge)."""
    q = trace_queries(sel, window_s, lag_s)
    if q is None:
        return None
    missing = f"clamp_min(round({q.spans_ended}) - round({q.spans_exported}), 0)"
    return f"{missing} + round({q.export_failures})"


def mirror_differences(router_sel: str, window: str) -> str:
    """Mirrored responses that differed from the baseline's in the window (rollout router)."""
    return f"sum(increase(tandem_router_mirror_differences_total{{{router_sel}}}[{window}]))"


def request_rate_by_server_type(sel: str, window: str) -> str:
    """Scoring requests per second, by ``server_type``."""
    return f"sum by (server_type) (rate(drum_requests_total{{{selector(sel, SERVED)}}}[{window}]))"


def p99_by_server_type(sel: str, window: str) -> str:
    """P99 response time in seconds, by ``server_type``."""
    return (
        "histogram_quantile(0.99, sum by (server_type, le) "
        f"(rate(drum_request_duration_seconds_bucket{{{selector(sel, SERVED)}}}[{window}])))"
    )


def error_ratio_by_server_type(sel: str, window: str) -> str:
    """5xx share of scoring requests, by ``server_type``."""
    served = selector(sel, SERVED)
    return (
        f'sum by (server_type) (rate(drum_requests_total{{{served}, status=~"5.."}}[{window}])) '
        f"/ sum by (server_type) (rate(drum_requests_total{{{served}}}[{window}]))"
    )


def rss_per_worker_by_server_type(sel: str) -> str:
    """Average resident memory per worker process, by ``server_type``."""
    rss = selector(sel, 'type="rss"')
    return (
        f"sum by (server_type) (drum_worker_memory_bytes{{{rss}}}) "
        f"/ sum by (server_type) (drum_workers{{{sel}}})"
    )


def router_weight_percent(router_sel: str) -> str:
    """The candidate weight the rollout router was told, in percent."""
    return f"max(tandem_router_weight_basis_points{{{router_sel}}}) / 100"


def router_effective_weight_percent(router_sel: str) -> str:
    """The candidate weight in force at the router (0 while the candidate is down), percent."""
    return f"max(tandem_router_effective_weight_basis_points{{{router_sel}}}) / 100"


def argo_rollout_phase(namespace: str, name: str) -> str:
    """Argo Rollouts' phase of a Rollout (one series, value 1, its ``phase`` label)."""
    return f'max by (phase) (rollout_info{{namespace="{namespace}", name="{name}"}})'


def flagger_canary_status(namespace: str, name: str) -> str:
    """Flagger's last analysis result of a Canary: 0 running, 1 succeeded, 2 failed."""
    return f'max(flagger_canary_status{{namespace="{namespace}", name="{name}"}})'


def flagger_canary_weight(namespace: str, name: str) -> str:
    """The weight Flagger routes to a Canary's new pods, in percent."""
    return f'max(flagger_canary_weight{{namespace="{namespace}", workload="{name}"}})'
