"""The one percentile definition (nearest rank), on samples and on histograms."""

from __future__ import annotations

import random

import pytest

from tandem.quantiles import histogram_quantile, nearest_rank, percentile


@pytest.mark.parametrize(
    ("q", "n", "rank"),
    [(0.99, 100, 99), (0.07, 100, 7), (0.5, 5, 3), (0.999, 10, 10), (0.01, 10, 1), (1.0, 3, 3)],
)
def test_nearest_rank(q: float, n: int, rank: int) -> None:
    assert nearest_rank(q, n) == rank


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5, 99])
def test_quantile_outside_zero_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError):
        nearest_rank(q, 10)


def test_percentile_is_a_value_that_occurred() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0
    assert percentile([], 0.5) is None


def test_histogram_quantile_brackets_the_sample_percentile() -> None:
    """The histogram estimate is the upper bound of the bucket holding the sample percentile."""
    rng = random.Random(7)
    bounds = [1.1**i for i in range(1, 120)]
    values = [rng.lognormvariate(2, 1) for _ in range(5000)]
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = percentile(values, q)
        estimate = histogram_quantile(counts, q, bounds)
        assert exact is not None and estimate is not None
        assert exact <= estimate <= exact * 1.1 + 1e-9, (q, exact, estimate)


def test_histogram_quantile_edges() -> None:
    assert histogram_quantile([0, 0, 0], 0.99, [1.0, 2.0]) is None
    assert histogram_quantile([0, 0, 4], 0.99, [1.0, 2.0]) == 2.0  # overflow: the last bound
