""":class:`PrometheusSource` reading one side: a query that failed is no data, never zero."""

from __future__ import annotations

import httpx
import pytest

from tandem.rollout import promql
from tandem.rollout.analysis import SideWindow
from tandem.rollout.prometheus import PrometheusSource

NOW = 1_000_000.0
CANDIDATE = 'server_type="fastapi"'


class _Prometheus:
    """Answers instant queries from a table; ``failing`` queries get a 503 or a refusal."""

    def __init__(self, values: dict[str, float], failing: dict[str, str]) -> None:
        self.values = values
        self.failing = failing

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        how = self.failing.get(query)
        if how == "unavailable":
            return httpx.Response(503, text="service unavailable")
        if how == "refused":
            return httpx.Response(
                422, json={"status": "error", "errorType": "timeout", "error": "query timed out"}
            )
        if how == "unreachable":
            raise httpx.ConnectError("connection refused")
        value = self.values.get(query)
        result = [] if value is None else [{"value": [NOW, str(value)]}]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )


def _read(failing: dict[str, str]) -> SideWindow:
    q = promql.side_queries(CANDIDATE, 300, 3600)
    values = {
        q.last_scrape: NOW - 2,
        q.requests: 2000.0,
        q.errors: 40.0,  # 2 %: well over every error threshold
        q.p99: 0.012,
        q.rss: 200e6,
        q.oom_kills: 0.0,
        q.up: 1.0,
    }
    client = httpx.Client(transport=httpx.MockTransport(_Prometheus(values, failing)))
    source = PrometheusSource("http://prom:9090", client=client)
    reading = source.read("candidate", NOW, 300, NOW - 300, NOW - 3600)
    assert reading.step == reading.window  # the same queries here: same step window
    return reading.window


def test_a_side_with_5xx_series_reads_its_errors() -> None:
    assert _read({}) == SideWindow(2000, 40, 0.012)


@pytest.mark.parametrize("how", ["unavailable", "refused", "unreachable"])
def test_a_failed_error_count_is_no_data_not_zero_errors(how: str) -> None:
    """Had the failed 5xx count read as 0, a candidate failing 2 % of its requests would show
    2000 clean requests: a passing step, and a 5xx streak reset."""
    errors = promql.side_queries(CANDIDATE, 300, 3600).errors
    assert _read({errors: how}) == SideWindow()


def test_no_5xx_series_at_all_is_zero_errors() -> None:
    """Prometheus has no ``status=~"5.."`` series until a side's first 5xx: an empty answer
    (unlike a failed query) is zero errors."""
    q = promql.side_queries(CANDIDATE, 300, 3600)
    client = httpx.Client(
        transport=httpx.MockTransport(
            _Prometheus({q.last_scrape: NOW - 2, q.requests: 2000.0, q.p99: 0.012, q.up: 1.0}, {})
        )
    )
    source = PrometheusSource("http://prom:9090", client=client)
    assert source.read("candidate", NOW, 300, NOW - 300, NOW - 3600).window == SideWindow(
        2000, 0, 0.012
    )
