"""The rollout's PromQL, written once: selectors, query text, and reading answers (the trace
counts through :class:`PrometheusSource` against a table of answers)."""

from __future__ import annotations

import httpx
import pytest

from tandem.rollout import promql
from tandem.rollout.analysis import TraceWindow
from tandem.rollout.prometheus import PrometheusSource


def test_selector_merges_the_deployments_labels() -> None:
    assert promql.selector('server_type="fastapi"', '{namespace="ml"}') == (
        'server_type="fastapi", namespace="ml"'
    )
    assert promql.selector('server_type="flask"', "") == 'server_type="flask"'


def test_counts_are_increases_of_scoring_requests_only() -> None:
    q = promql.side_queries('server_type="fastapi"', 299.2, 3600)
    assert q.requests.startswith('sum(increase(drum_requests_total{server_type="fastapi", ')
    assert q.requests.endswith("[300s]))")
    assert 'status=~"5.."' in q.errors and promql.SERVED in q.errors
    assert q.p99.startswith("histogram_quantile(0.99, sum by (le) (increase(")
    assert q.oom_kills.endswith("[3600s]))")
    assert q.up == 'min(up{server_type="fastapi"})'


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ({"data": {"resultType": "vector", "result": [{"value": [1.0, "12.5"]}]}}, 12.5),
        ({"data": {"resultType": "vector", "result": []}}, None),  # no series: no data
        ({"data": {"resultType": "vector", "result": [{"value": [1, "NaN"]}]}}, None),
        ({"data": {"resultType": "vector", "result": [{"value": [1, "+Inf"]}]}}, None),
        ({"data": {"resultType": "scalar", "result": [1, "3"]}}, 3.0),
        (
            {
                "data": {
                    "resultType": "vector",
                    "result": [{"value": [1, "1"]}, {"value": [1, "2"]}],
                }
            },
            None,  # two series where one was meant: ambiguous, not a number
        ),
    ],
)
def test_scalar(answer: dict[str, object], value: float | None) -> None:
    assert promql.scalar(answer) == value


def test_trace_queries_count_ended_spans_until_the_lag_and_exports_until_now() -> None:
    q = promql.trace_queries('server_type="fastapi"', 299.2, 15)
    assert q is not None
    # Ended from the window's start (rounded inside the exported range) until 15 s ago.
    assert q.spans_ended == (
        'sum(increase(drum_otel_spans_ended_total{server_type="fastapi"}[284s] offset 15s))'
    )
    assert q.spans_exported == (
        'sum(increase(drum_otel_spans_exported_total{server_type="fastapi"}[300s]))'
    )
    assert q.export_failures == (
        'sum(increase(drum_otel_export_failures_total{server_type="fastapi"}[300s]))'
    )
    lagless = promql.trace_queries('server_type="fastapi"', 60, 0)
    assert lagless is not None and lagless.spans_ended.endswith("[60s]))")
    assert promql.trace_queries('server_type="fastapi"', 15.5, 15) is None  # nothing to judge
    assert promql.trace_queries('server_type="fastapi"', 16, 15) is not None


class _Prometheus:
    """Answers instant queries from a table (query text -> value); unknown: no series."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        self.asked.append(query)
        value = self.values.get(query)
        result = [] if value is None else [{"value": [float(request.url.params["time"]), value]}]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )


NOW = 1_000_000.0
CANDIDATE = 'server_type="fastapi"'


def _source(values: dict[str, float]) -> tuple[PrometheusSource, _Prometheus]:
    answers = _Prometheus(values)
    client = httpx.Client(transport=httpx.MockTransport(answers))
    return PrometheusSource("http://prom:9090", client=client), answers


def test_prometheus_source_reads_the_trace_counts() -> None:
    q = promql.trace_queries(CANDIDATE, 300, 15)
    assert q is not None
    source, answers = _source(
        {
            promql.last_scrape(CANDIDATE): NOW - 2,
            q.spans_ended: 3999.6,  # increase() extrapolates: counts come back as floats
            q.spans_exported: 3900.2,
            q.export_failures: 0.0,
        }
    )
    assert source.traces("candidate", NOW, 300, 15) == TraceWindow(4000, 3900, 0)
    assert set(answers.asked) == {
        promql.last_scrape(CANDIDATE),
        q.spans_ended,
        q.spans_exported,
        q.export_failures,
    }


@pytest.mark.parametrize(
    ("newest", "traced"),
    [
        (NOW - 2, False),  # fresh series, but no drum_otel_* series: tracing is off
        (NOW - 120, True),  # every series stale
        (None, True),  # no series at all
    ],
)
def test_prometheus_source_without_trace_data_is_none(newest: float | None, traced: bool) -> None:
    q = promql.trace_queries(CANDIDATE, 300, 15)
    assert q is not None
    values = {} if newest is None else {promql.last_scrape(CANDIDATE): newest}
    if traced:
        values.update({q.spans_ended: 10.0, q.spans_exported: 10.0, q.export_failures: 0.0})
    source, _ = _source(values)
    assert source.traces("candidate", NOW, 300, 15) is None
    assert source.traces("candidate", NOW, 10, 15) is None  # window shorter than the lag
