"""The replay report: percentiles, counts, thresholds and the HTML page."""

from __future__ import annotations

import pytest

from tandem.quantiles import percentile
from tandem.replay.compare import Answer, CompareOptions
from tandem.replay.loader import BadLine, Expected, ReplayRequest
from tandem.replay.report import Thresholds, build_report, render_html
from tandem.replay.runner import Outcome, Result, judge

OPTIONS = CompareOptions()


def _request(line: int, path: str = "/predict/", expected: Expected | None = None) -> ReplayRequest:
    return ReplayRequest("rec.jsonl", line, "POST", path, endpoint=path, expected=expected)


def _outcome(body: bytes, seconds: float, status: int = 200) -> Outcome:
    return Outcome(status, "application/json", (), body, seconds)


def _pair(line: int, base: bytes, cand: bytes, base_s: float, cand_s: float) -> Result:
    return judge(line, _request(line), _outcome(cand, cand_s), _outcome(base, base_s), OPTIONS)


def _report(results: list[Result], **kwargs: object) -> dict:
    return build_report(
        results,
        kwargs.pop("bad_lines", []),  # type: ignore[arg-type]
        candidate_url="http://cand",
        baseline_url=kwargs.pop("baseline_url", "http://base"),  # type: ignore[arg-type]
        request_files=["rec.jsonl"],
        options=OPTIONS,
        thresholds=kwargs.pop("thresholds", Thresholds()),  # type: ignore[arg-type]
    )


def test_report_percentiles_are_tandems_nearest_rank() -> None:
    """Replay uses the same percentile as verify and the rollout (tandem.quantiles)."""
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0


def test_all_matching_passes() -> None:
    results = [_pair(i, b'{"p":[1]}', b'{"p":[1]}', 0.010, 0.011) for i in range(1, 11)]
    report = _report(results)
    assert report["passed"] and report["failures"] == []
    assert report["match_rate"] == 100.0
    assert report["totals"]["matched"] == 10
    assert report["latency"]["p99_ratio"] == pytest.approx(1.1)
    assert report["routes"][0]["route"] == "POST /predict/"


def test_mismatches_errors_and_thresholds() -> None:
    results = [_pair(i, b'{"p":[1]}', b'{"p":[1]}', 0.01, 0.01) for i in range(1, 9)]
    results.append(_pair(9, b'{"p":[1]}', b'{"p":[2]}', 0.01, 0.01))
    error = judge(10, _request(10), Outcome(error="timed out after 30 s"), _outcome(b"{}", 0.01),
                  OPTIONS)  # fmt: skip
    results.append(error)
    report = _report(results, bad_lines=[BadLine("rec.jsonl", 3, "not valid JSON")])
    totals = report["totals"]
    assert (totals["compared"], totals["matched"], totals["mismatched"]) == (10, 8, 1)
    assert (totals["errors"], totals["body_mismatches"], totals["bad_lines"]) == (1, 1, 1)
    assert report["match_rate"] == 80.0
    assert report["failures"] == ["match rate 80 % is below the minimum of 100 %"]
    (diff,) = report["differences"]
    assert diff["request"] == "rec.jsonl:9" and diff["where"] == "p[0]"
    assert report["errors"] == [
        {
            "request": "rec.jsonl:10",
            "method": "POST",
            "path": "/predict/",
            "route": "POST /predict/",
            "request_id": None,
            "side": "candidate",
            "error": "timed out after 30 s",
        }
    ]
    lenient = _report(results, thresholds=Thresholds(min_match_rate=80))
    assert lenient["passed"]


def test_p99_ratio_gate() -> None:
    results = [_pair(i, b"{}", b"{}", 0.010, 0.030) for i in range(1, 6)]
    report = _report(results)
    assert report["latency"]["p99_ratio"] == pytest.approx(3.0)
    assert report["failures"] == ["p99 latency ratio 3 is above the maximum of 1.2"]
    assert _report(results, thresholds=Thresholds(max_p99_ratio=3.5))["passed"]


def test_recording_mode_uses_recorded_latency_and_skips_gate_unless_asked() -> None:
    expected = Expected(200, "application/json", (), b"{}", latency_seconds=0.001)
    results = [
        judge(i, _request(i, expected=expected), _outcome(b"{}", 0.5), None, OPTIONS)
        for i in range(1, 4)
    ]
    results.append(judge(4, _request(4), _outcome(b"{}", 0.5), None, OPTIONS))  # no expectation
    report = _report(results, baseline_url=None, thresholds=Thresholds(check_latency=False))
    assert report["mode"] == "recording" and report["passed"]
    assert report["totals"]["not_compared"] == 1 and report["totals"]["compared"] == 3
    assert report["latency"]["baseline"]["source"] == "recorded (server-side)"
    gated = _report(results, baseline_url=None, thresholds=Thresholds(check_latency=True))
    assert not gated["passed"]


def test_nothing_compared_fails() -> None:
    assert _report([])["failures"][0] == "no request could be compared"


def test_status_only_expectation() -> None:
    expected = Expected(422)
    result = judge(1, _request(1, expected=expected), _outcome(b"{}", 0.1, 422), None, OPTIONS)
    assert result.verdict == "match"
    result = judge(1, _request(1, expected=expected), _outcome(b"{}", 0.1, 200), None, OPTIONS)
    assert result.verdict == "mismatch"
    assert Answer(200).body is None


def test_html_is_self_contained_and_escaped() -> None:
    results = [_pair(1, b'{"p":["<b>"]}', b'{"p":["<i>"]}', 0.01, 0.01)]
    page = render_html(_report(results))
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "<script" not in page and "src=" not in page and "<link" not in page
    assert "FAIL" in page
