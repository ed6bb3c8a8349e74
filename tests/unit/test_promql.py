"""The rollout's PromQL, written once: selectors, query text, and reading answers."""

from __future__ import annotations

import pytest

from tandem.rollout import promql


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
