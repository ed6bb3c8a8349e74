"""Unit tests of the router's pure parts: keys, hashing, splitting, histograms, routing updates."""

from __future__ import annotations

import math
import random

import pytest

from tandem.quantiles import histogram_quantile
from tandem.rollout.router import (
    LATENCY_BOUNDS_MS,
    Answer,
    LatencyHistogram,
    RouterConfig,
    Routing,
    choose_side,
    compare_answers,
    config_from_args,
    counts_delta,
    first_difference,
    mirror_fraction,
    parse_routing_update,
    percent_to_bp,
    should_mirror,
)
from tandem.rollout.split import murmur_hash2, request_key

KEYS = [f"req-{i}" for i in range(50_000)]


def test_request_key_prefers_the_request_id() -> None:
    assert request_key("abc", "10.0.0.1", "/predict/") == "abc"
    assert request_key(None, "10.0.0.1", "/predict/") == "10.0.0.1 /predict/"
    assert request_key("  ", "10.0.0.1", "/predict/") == "10.0.0.1 /predict/"


def test_split_is_nginx_split_clients() -> None:
    """Candidate iff MurmurHash2(key) < weight_bp * 0xffffffff // 10000 (see tandem.rollout.split;
    tests/rollout/test_nginx_e2e.py checks the same requests against a real nginx)."""
    for key in ("a", "req-1", "10.0.0.1 /predict/", "ünïcode", "abc", "abcd", "abcde"):
        h = murmur_hash2(key.encode())
        assert 0 <= h <= 0xFFFFFFFF
        for weight_bp in (1, 1234, 5000, 9999):
            expected = h < weight_bp * 0xFFFFFFFF // 10_000
            assert (choose_side(key, weight_bp) == "candidate") is expected
    assert murmur_hash2(b"") == 0
    assert murmur_hash2(b"same") == murmur_hash2(b"same")


def test_choose_side_edges_and_monotonicity() -> None:
    assert all(choose_side(k, 0) == "baseline" for k in KEYS[:2000])
    assert all(choose_side(k, 10_000) == "candidate" for k in KEYS[:2000])
    for key in KEYS[:500]:
        h = murmur_hash2(key.encode())
        first = next(w for w in range(1, 10_001) if h < w * 0xFFFFFFFF // 10_000)
        assert choose_side(key, first - 1) == "baseline"
        assert choose_side(key, first) == "candidate"
    # Raising the weight only ever moves keys from the baseline to the candidate.
    weights = [0, 1, 100, 500, 1000, 2500, 5000, 7500, 9000, 10_000]
    for key in KEYS[:2000]:
        sides = [choose_side(key, w) for w in weights]
        first = sides.index("candidate") if "candidate" in sides else len(sides)
        assert sides == ["baseline"] * first + ["candidate"] * (len(sides) - first)


@pytest.mark.parametrize("weight_bp", [1, 100, 500, 2500, 5000, 9000])
def test_split_fraction_matches_the_weight(weight_bp: int) -> None:
    # 50 000 keys: the candidate count is Binomial(n, p); allow 5 standard deviations.
    n = len(KEYS)
    p = weight_bp / 10_000
    got = sum(choose_side(k, weight_bp) == "candidate" for k in KEYS)
    assert abs(got - n * p) < 5 * math.sqrt(n * p * (1 - p)) + 1


def test_buckets_are_uniform() -> None:
    # Chi-square over 100 equal bucket ranges: 99 degrees of freedom, 99.99th percentile ≈ 160.
    counts = [0] * 100
    for key in KEYS:
        counts[murmur_hash2(key.encode()) * 100 >> 32] += 1
    expected = len(KEYS) / 100
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 160, chi2


def test_mirror_decision_is_deterministic_and_independent_of_the_split() -> None:
    assert mirror_fraction("k") == mirror_fraction("k")
    assert all(0.0 <= mirror_fraction(k) < 1.0 for k in KEYS[:1000])
    assert not any(should_mirror(k, 0.0) for k in KEYS[:1000])
    assert all(should_mirror(k, 1.0) for k in KEYS[:1000])
    n = len(KEYS)
    mirrored = [should_mirror(k, 0.1) for k in KEYS]
    assert abs(sum(mirrored) - 0.1 * n) < 5 * math.sqrt(n * 0.1 * 0.9)
    # Independence: among keys on the candidate side at 50 %, still about 10 % are mirrored
    # (a shared hash would give 0 % or 20 %).
    on_candidate = [
        m for k, m in zip(KEYS, mirrored, strict=True) if choose_side(k, 5000) == "candidate"
    ]
    share = sum(on_candidate) / len(on_candidate)
    assert 0.08 < share < 0.12, share


def test_percent_to_bp() -> None:
    assert percent_to_bp(0) == 0
    assert percent_to_bp(0.01) == 1
    assert percent_to_bp(12.34) == 1234
    assert percent_to_bp(100) == 10_000
    assert percent_to_bp(150) == 10_000
    assert percent_to_bp(-1) == 0


def test_latency_bounds_are_log_spaced_from_0_1_ms_to_120_s() -> None:
    assert LATENCY_BOUNDS_MS[0] == 0.1
    assert LATENCY_BOUNDS_MS[-1] >= 120_000 > LATENCY_BOUNDS_MS[-2]
    for low, high in zip(LATENCY_BOUNDS_MS, LATENCY_BOUNDS_MS[1:], strict=False):
        assert high / low == pytest.approx(1.1, rel=1e-4)


def test_histogram_buckets_and_overflow() -> None:
    h = LatencyHistogram()
    assert len(h.counts) == len(LATENCY_BOUNDS_MS) + 1
    h.observe(0.0)
    h.observe(0.1)  # on a bound: that bucket
    h.observe(0.1000001)  # just over: the next
    h.observe(1e9)  # overflow
    assert h.counts[0] == 2 and h.counts[1] == 1 and h.counts[-1] == 1
    assert h.count == 4
    assert h.to_dict()["counts"] == h.counts
    assert LatencyHistogram.bucket(5.0) == LatencyHistogram.bucket(4.9999)


def test_quantile_is_an_upper_bound_within_ten_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.observe(v)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        true = ordered[math.ceil(q * len(ordered)) - 1]
        got = h.quantile(q)
        assert got is not None
        assert true <= got <= true * 1.1 + 1e-9, (q, true, got)
    assert histogram_quantile([0] * len(h.counts), 0.99, LATENCY_BOUNDS_MS) is None
    overflow = [0] * len(h.counts)
    overflow[-1] = 3
    assert histogram_quantile(overflow, 0.99, LATENCY_BOUNDS_MS) == LATENCY_BOUNDS_MS[-1]


def test_window_quantile_from_cumulative_differences() -> None:
    h = LatencyHistogram()
    for _ in range(1000):
        h.observe(1.0)
    before = list(h.counts)
    for _ in range(99):
        h.observe(10.0)
    h.observe(500.0)
    window = counts_delta(h.counts, before)
    assert sum(window) == 100
    assert 500.0 <= histogram_quantile(window, 0.995, LATENCY_BOUNDS_MS) <= 550.0  # type: ignore[operator]
    assert 10.0 <= histogram_quantile(window, 0.99, LATENCY_BOUNDS_MS) <= 11.0  # type: ignore[operator]
    with pytest.raises(ValueError):
        counts_delta([1, 2], [1])


def test_parse_routing_update() -> None:
    current = Routing(weight_bp=100, mirror_rate=0.1, version=4)
    new = parse_routing_update({"weight_bp": 2500, "mirror_rate": 0.5}, current, now=12.0)
    assert new == Routing(2500, 0.5, 5, 12.0)
    assert parse_routing_update({"mirror_rate": 0}, current).weight_bp == 100
    assert parse_routing_update({"weight_bp": 200.0}, current).weight_bp == 200
    for bad in (
        {"weight_bp": 10_001},
        {"weight_bp": -1},
        {"weight_bp": 1.5},
        {"weight_bp": "100"},
        {"weight_bp": True},
        {"mirror_rate": 1.01},
        {"mirror_rate": None},
        {"weight": 1},
        {},
        [],
        None,
    ):
        with pytest.raises(ValueError):
            parse_routing_update(bad, current)


def test_first_difference_and_compare() -> None:
    assert first_difference(b"abc", b"abc") is None
    assert first_difference(b"abc", b"abd") == 2
    assert first_difference(b"abc", b"abcd") == 3
    assert first_difference(b"", b"x") == 0
    big = bytes(range(256)) * 40_000
    assert first_difference(big, big[:-1] + b"\x00") == len(big) - 1
    same = Answer(200, "application/json", b'{"predictions":[1.0]}')
    assert compare_answers(same, same, {}) is None
    other = Answer(200, "application/json", b'{"predictions":[1.000000000001]}')
    diff = compare_answers(same, other, {"path": "/predict/", "request_id": "r"})
    assert diff is not None
    assert diff["differs"] == ["body"] and diff["offset"] == 19
    assert diff["path"] == "/predict/" and diff["request_id"] == "r"
    assert "1.0]" in diff["baseline_bytes"] and "1.000000000001" in diff["candidate_bytes"]
    status = compare_answers(same, Answer(500, "text/plain", b""), {})
    assert status is not None and status["differs"] == ["status", "content_type", "body"]


def test_router_config_and_cli() -> None:
    config = RouterConfig.from_dict(
        {"baseline_url": "http://127.0.0.1:1", "candidate_url": "http://127.0.0.1:2"}
    )
    assert config.max_body_bytes == 100 * 1024 * 1024
    assert config.backend_timeout == 60.0 and config.max_inflight_mirrors == 64
    assert config.admin_host == "127.0.0.1"
    assert RouterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown keys"):
        RouterConfig.from_dict({**config.to_dict(), "nope": 1})
    with pytest.raises(ValueError):
        RouterConfig(baseline_url="127.0.0.1:1", candidate_url="http://x")
    parsed = config_from_args(
        [
            "--config-json",
            '{"baseline_url": "http://b:1", "candidate_url": "http://c:2", "max_body_bytes": 5}',
            "--listen",
            "0.0.0.0:9000",
            "--admin",
            "127.0.0.1:9001",
            "--admin-token",
            "t",
            "--weight-bp",
            "250",
            "--candidate",
            "http://c:3",
        ]
    )
    assert (parsed.listen_host, parsed.listen_port) == ("0.0.0.0", 9000)
    assert (parsed.admin_host, parsed.admin_port) == ("127.0.0.1", 9001)
    assert parsed.admin_token == "t" and parsed.initial_weight_bp == 250
    assert parsed.candidate_url == "http://c:3" and parsed.max_body_bytes == 5
    with pytest.raises(ValueError, match="baseline_url"):
        config_from_args(["--candidate", "http://c:3"])
