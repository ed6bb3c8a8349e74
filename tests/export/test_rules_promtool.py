"""Every exported alert through ``promtool``: ``check rules``, then generated ``test rules``.

For each alert, synthetic series just above and just below the threshold. The boundary is the
one ``decide()`` draws: the error counts, P99s, memory figures and RSS slopes are chosen by
asking ``decide()`` (or its rule functions) which side of its threshold they fall on, so the
test fails if the exported PromQL and the controller ever disagree. Each case also checks the
``for:`` delay: silent one evaluation before it ends, firing when it has.

Series advance one sample per rule evaluation (the spec's ``interval``); counters start at 0,
so ``increase`` is exact from the first window on (Prometheus does not extrapolate a counter
below zero, and within a full window a sample sits on each edge).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem.export import rules
from tandem.export.checks import Check, Selectors, checks, selectors
from tandem.export.model import Model
from tandem.rollout import decide as decide_module
from tandem.rollout.analysis import SideWindow
from tandem.rollout.decide import Observations, decide
from tandem.rollout.spec import RolloutSpec
from tandem.rollout.status import Phase, RolloutStatus
from tests.export.support import run_promtool

MODEL = Model(name="churn", namespace="ml", image="registry.example/churn:1")
EXTRA_LABELS = {"tandem_model": MODEL.name}

#: The seed's thresholds (the spec's defaults), and a spec with every number moved, so that a
#: threshold typed into the export instead of read from the spec would fail one of the two.
SPECS = {
    "defaults": RolloutSpec(),
    "custom": RolloutSpec.from_dict(
        {
            "window": "120s",
            "interval": "10s",
            "min_samples": 100,
            "confidence": 0.99,
            "triggers": {
                "immediate_error_rate": 0.02,
                "gradual_error_rate": 0.005,
                "p99_increase": 0.3,
                "memory_increase": 0.25,
                "rss_growth_per_hour": 0.2,
                "ping_timeout": "20s",
                "leak_min_span": "300s",
                "leak_warmup": "200s",
                "consecutive": 3,
                "trace_export_lag": "25s",
            },
        }
    ),
}
HORIZON_STEPS = 150
REQUESTS_PER_STEP = 100.0
SERVED_ENDPOINT = "/predict/"


def series(metric: str, sel: str, **labels: str) -> str:
    """A promtool series name: the selector's equality matchers plus ``labels``."""
    pairs = [p.strip() for p in sel.split(",") if p.strip()]
    pairs += [f'{k}="{v}"' for k, v in labels.items()]
    return f"{metric}{{{', '.join(pairs)}}}"


def counter(per_step: float, steps: int = HORIZON_STEPS) -> str:
    """A counter from 0, growing ``per_step`` a sample."""
    return f"0+{per_step!r}x{steps}"


def gauge(*pieces: tuple[float, int]) -> str:
    """A gauge: (value, samples) pieces one after the other."""
    return " ".join(f"{value!r}x{count - 1}" for value, count in pieces)


@dataclass
class Case:
    """Input series and, at evaluation times, whether the alert fires."""

    series: dict[str, str]
    expect: list[tuple[float, bool]] = field(default_factory=list)


def requests_series(sel: str, ok_per_step: float, errors_per_step: float = 0.0) -> dict[str, str]:
    """A side's scoring requests: 200s and 5xx counters."""
    out = {
        series(
            "drum_requests_total", sel, endpoint=SERVED_ENDPOINT, status="200", method="POST"
        ): counter(ok_per_step)
    }
    if errors_per_step:
        out[
            series(
                "drum_requests_total", sel, endpoint=SERVED_ENDPOINT, status="500", method="POST"
            )
        ] = counter(errors_per_step)
    return out


def canary_status() -> RolloutStatus:
    return RolloutStatus(phase=Phase.CANARY, weight=10.0, step_index=2, started_at=0.0)


def rolls_back_on_errors(spec: RolloutSpec, requests: float, errors: float) -> bool:
    """decide() itself: does this window roll the candidate back for its error rate?"""
    obs = Observations(
        now=1.0,
        candidate=SideWindow(requests, errors),  # type: ignore[arg-type]
        candidate_last_ping=1.0,
    )
    return decide(spec, canary_status(), obs).rule == "immediate.error_rate"


def gradual_fired(spec: RolloutSpec, name: str, **observed: Any) -> bool:
    """decide()'s gradual rule ``name`` on one evaluation's observations."""
    fired, _ = decide_module._gradual(spec, Observations(now=1.0, **observed))
    return bool(fired.get(name))


def boundary(fires: Callable[[float], bool], low: float, high: float) -> float:
    """The smallest whole count in [low, high] that fires (fires is monotonic)."""
    lo, hi = int(low), int(high)
    assert not fires(lo) and fires(hi), "the search range does not straddle the threshold"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fires(mid) else (mid, hi)
    return float(hi)


def steps_in(spec: RolloutSpec, seconds: float) -> int:
    return round(seconds / spec.interval)


# -- one scenario builder per check ---------------------------------------------------------


def case_counter_event(metric_series: str, spec: RolloutSpec, above: bool) -> Case:
    """A counter that stays 0 (below) or counts one event at t0 (above); fires at once."""
    t0 = 60 * spec.interval
    if not above:
        return Case({metric_series: gauge((0, HORIZON_STEPS))}, [(t0, False), (2 * t0, False)])
    values = gauge((0, steps_in(spec, t0)), (1, HORIZON_STEPS - steps_in(spec, t0)))
    return Case({metric_series: values}, [(t0 - spec.interval, False), (t0, True)])


def case_differences(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    return case_counter_event(
        series("tandem_router_mirror_differences_total", sel.router), spec, above
    )


def case_oom(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    return case_counter_event(series("drum_oom_kills_total", sel.candidate), spec, above)


def case_deadlock(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """Down from t0: for the whole ping_timeout (fires), or one interval short of it."""
    t0 = 60 * spec.interval
    timeout = spec.triggers.ping_timeout
    name = series("up", sel.candidate)
    before = steps_in(spec, t0)
    if above:
        values = gauge((1, before), (0, HORIZON_STEPS - before))
        return Case({name: values}, [(t0 + timeout - spec.interval, False), (t0 + timeout, True)])
    down = steps_in(spec, timeout) - 1
    values = gauge((1, before), (0, down), (1, HORIZON_STEPS - before - down))
    return Case({name: values}, [(t0 + t, False) for t in (0, timeout - spec.interval, timeout)])


def case_error_rate(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """A full window of requests with decide()'s first rolling-back error count (above) or one
    error fewer (below); and the evidence rule: a bad rate is not judged before min_samples."""
    steps = steps_in(spec, spec.window)
    n = REQUESTS_PER_STEP * steps
    errors = boundary(lambda e: rolls_back_on_errors(spec, n, e), 0, n)
    if not above:
        errors -= 1
    assert rolls_back_on_errors(spec, n, errors) == above
    per_step = errors / steps
    full = spec.window + spec.interval
    return Case(
        requests_series(sel.candidate, REQUESTS_PER_STEP - per_step, per_step),
        [(full, above), (3 * full, above)],
    )


def case_error_rate_evidence(check: Check, spec: RolloutSpec, sel: Selectors) -> Case:
    """Half the requests fail, but the alert waits for min_samples requests in the window."""
    per_step = 20.0
    t_gate = math.ceil(spec.min_samples / per_step) * spec.interval
    assert t_gate < spec.window
    assert rolls_back_on_errors(spec, spec.min_samples, spec.min_samples / 2)
    return Case(
        requests_series(sel.candidate, per_step / 2, per_step / 2),
        [(t_gate - spec.interval, False), (t_gate, True)],
    )


def case_error_rate_gradual(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """decide()'s gradual band: the first error count that fires it over a full window (above)
    or one fewer (below). Above, the condition first holds while the window fills; the alert
    fires ``for`` later, as decide() reduces after ``consecutive`` evaluations."""
    steps = steps_in(spec, spec.window)
    n = REQUESTS_PER_STEP * steps

    def fires(requests: float, errors: float) -> bool:
        return gradual_fired(
            spec,
            "error_rate",
            candidate=SideWindow(requests, errors),  # type: ignore[arg-type]
        )

    errors = boundary(lambda e: fires(n, e), 0, n * spec.triggers.immediate_error_rate)
    if not above:
        errors -= 1
    assert fires(n, errors) == above
    per_step = errors / steps
    case = Case(requests_series(sel.candidate, REQUESTS_PER_STEP - per_step, per_step))
    if not above:
        case.expect = [(spec.window + spec.interval, False), (3 * spec.window, False)]
        return case
    # While the window fills, requests and errors grow in proportion: when does it first fire?
    first = next(
        k * spec.interval for k in range(1, steps + 1) if fires(REQUESTS_PER_STEP * k, per_step * k)
    )
    wait = check.for_s
    case.expect = [(first - spec.interval, False), (first + wait - spec.interval, wait == 0)]
    case.expect.append((first + wait, True))
    return case


#: Histogram buckets of the synthetic latency series (seconds).
BUCKETS = (0.05, 0.1, 0.25)


def histogram_quantile(q: float, cumulative: list[float]) -> float:
    """Prometheus' bucket interpolation over BUCKETS plus +Inf (cumulative counts)."""
    bounds = [*BUCKETS, math.inf]
    rank = q * cumulative[-1]
    b = next(i for i, c in enumerate(cumulative) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    start = bounds[b - 1] if b > 0 else 0.0
    below = cumulative[b - 1] if b > 0 else 0.0
    return start + (bounds[b] - start) * (rank - below) / (cumulative[b] - below)


def latency_series(sel: str, cumulative: list[float]) -> dict[str, str]:
    les = [*(repr(b) for b in BUCKETS), "+Inf"]
    return {
        series(
            "drum_request_duration_seconds_bucket", sel, endpoint=SERVED_ENDPOINT, le=le
        ): counter(c)
        for le, c in zip(les, cumulative, strict=True)
    }


def case_p99(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """Baseline requests all in (0.05, 0.1]; the candidate's split between that bucket and
    (0.1, 0.25] so that its P99 sits just past (or short of) decide()'s P99 limit."""
    base = [0.0, REQUESTS_PER_STEP, REQUESTS_PER_STEP, REQUESTS_PER_STEP]
    base_p99 = histogram_quantile(0.99, base)

    def cand(lower: float) -> list[float]:
        return [0.0, lower, REQUESTS_PER_STEP, REQUESTS_PER_STEP]

    def fires(lower: float) -> bool:
        window = SideWindow(1000, 0, histogram_quantile(0.99, cand(lower)))
        return gradual_fired(spec, "p99", baseline=SideWindow(1000, 0, base_p99), candidate=window)

    # More requests in the lower bucket, lower P99: search the count that stops firing.
    lo, hi = 0.0, REQUESTS_PER_STEP - 0.5
    assert fires(lo) and not fires(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fires(mid) else (lo, mid)
    # A step of 0.002 requests moves the candidate's P99 (and the ratio) by about 0.1 %.
    lower = lo - 0.002 if above else hi + 0.002
    assert fires(lower) == above
    found = {**latency_series(sel.baseline, base), **latency_series(sel.candidate, cand(lower))}
    found.update(requests_series(sel.baseline, REQUESTS_PER_STEP))
    found.update(requests_series(sel.candidate, REQUESTS_PER_STEP))
    # Both sides reach min_samples requests at t_gate; the alert fires `for` later.
    t_gate = math.ceil(spec.min_samples / REQUESTS_PER_STEP) * spec.interval
    if not above:
        return Case(found, [(t_gate + check.for_s, False), (spec.window * 2, False)])
    return Case(
        found,
        [
            (t_gate - spec.interval, False),
            (t_gate + check.for_s - spec.interval, check.for_s == 0),
            (t_gate + check.for_s, True),
        ],
    )


def case_memory_ratio(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """RSS per worker of the candidate jumps at t0 to just above (below) decide()'s limit."""
    base_rss, workers = 200e6, 4.0
    limit = 1 + spec.triggers.memory_increase
    ratio = limit * (1.001 if above else 0.999)

    def fires(r: float) -> bool:
        return gradual_fired(spec, "memory", baseline_rss=base_rss, candidate_rss=base_rss * r)

    assert fires(ratio) == above and not fires(1.0)
    t0 = 30 * spec.interval
    before = steps_in(spec, t0)
    cand_total = base_rss * ratio * workers
    found = {
        series("drum_worker_memory_bytes", sel.baseline, type="rss"): gauge(
            (base_rss, HORIZON_STEPS)
        ),
        series("drum_workers", sel.baseline): gauge((1.0, HORIZON_STEPS)),
        series("drum_worker_memory_bytes", sel.candidate, type="rss"): gauge(
            (base_rss * workers, before), (cand_total, HORIZON_STEPS - before)
        ),
        series("drum_workers", sel.candidate): gauge((workers, HORIZON_STEPS)),
    }
    if not above:
        return Case(found, [(t0 + check.for_s, False), (t0 * 3, False)])
    return Case(
        found,
        [
            (t0 - spec.interval, False),
            (t0 + check.for_s - spec.interval, check.for_s == 0),
            (t0 + check.for_s, True),
        ],
    )


def case_memory_leak(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """RSS growing linearly from start-up: decide()'s leak rule on the same samples says
    whether the growth is just past (or short of) its threshold at the first evaluation that
    has warm-up plus minimum span of history; the alert must agree there."""
    trig = spec.triggers
    t_judge = trig.leak_warmup + trig.leak_min_span
    v0 = 1e9

    def history(slope: float) -> tuple[tuple[float, float], ...]:
        return tuple(
            (t, v0 + slope * t)
            for t in (k * spec.interval for k in range(steps_in(spec, t_judge) + 1))
        )

    def fires(slope: float) -> bool:
        growth = decide_module._leak(trig, history(slope))
        return growth is not None and growth[0] > trig.rss_growth_per_hour

    lo, hi = 0.0, v0  # bytes per second
    assert not fires(lo) and fires(hi)
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fires(mid) else (mid, hi)
    slope = hi * 1.005 if above else lo * 0.995
    assert fires(slope) == above
    found = {
        series(
            "drum_worker_memory_bytes", sel.candidate, type="rss"
        ): f"{v0!r}+{slope * spec.interval!r}x{HORIZON_STEPS}",
        series("drum_workers", sel.candidate): gauge((1.0, HORIZON_STEPS + 1)),
    }
    # One evaluation earlier the candidate is too young to judge, whatever its growth.
    return Case(found, [(t_judge - spec.interval, False), (t_judge, above)])


#: Spans the synthetic candidate ends per evaluation interval.
SPANS_PER_STEP = 100.0


def trace_series(sel: str, exported_per_step: float, failures: str | None = None) -> dict[str, str]:
    """The candidate's ``drum_otel_*`` counters: SPANS_PER_STEP spans ended a sample, and
    ``exported_per_step`` exported; no failed export unless ``failures`` gives the series."""
    return {
        series("drum_otel_spans_ended_total", sel): counter(SPANS_PER_STEP),
        series("drum_otel_spans_exported_total", sel): counter(exported_per_step),
        series("drum_otel_export_failures_total", sel): failures or gauge((0, HORIZON_STEPS)),
    }


def trace_counts(spec: RolloutSpec, exported_per_step: float, t: float) -> tuple[int, int]:
    """(ended, exported) as the controller's Prometheus source reads them at ``t`` from the
    linear counters of :func:`trace_series`: spans ended from the window's start (or the
    counters' start at 0) until ``trace_export_lag`` ago, spans exported over the window;
    each count rounded, as the source rounds it."""
    filled = min(t, spec.window)
    ended = SPANS_PER_STEP * (filled - spec.triggers.trace_export_lag) / spec.interval
    return round(ended), round(exported_per_step * filled / spec.interval)


def trace_gap_fired(spec: RolloutSpec, ended: int, exported: int, failures: int = 0) -> bool:
    return gradual_fired(
        spec,
        "tracing",
        candidate_spans_ended=ended,
        candidate_spans_exported=exported,
        candidate_span_export_failures=failures,
    )


def case_trace_gaps(check: Check, spec: RolloutSpec, sel: Selectors, above: bool) -> Case:
    """Spans ended at a steady rate; exported at a rate that, over a full window, delivers
    decide()'s first missing span count that fires (above: one span short of the spans that
    ended until the lag ago) or every one of them (below). While the window fills the lag's
    margin shrinks: decide() on each evaluation's counts says when the gap first opens, and
    the alert fires ``for`` later."""
    ended, _ = trace_counts(spec, 0.0, spec.window)
    missing = boundary(lambda m: trace_gap_fired(spec, ended, ended - round(m)), 0, ended)
    if not above:
        missing -= 1
    exported_per_step = (ended - missing) * spec.interval / spec.window
    assert trace_counts(spec, exported_per_step, spec.window) == (ended, ended - missing)
    assert trace_gap_fired(spec, ended, round(ended - missing)) == above
    case = Case(trace_series(sel.candidate, exported_per_step))
    if not above:
        case.expect = [
            (t, False) for t in (spec.window, spec.window + check.for_s, 3 * spec.window)
        ]
        return case
    first = next(
        k * spec.interval
        for k in range(2, steps_in(spec, spec.window) + 1)
        if trace_gap_fired(spec, *trace_counts(spec, exported_per_step, k * spec.interval))
    )
    wait = check.for_s
    case.expect = [(first - spec.interval, False), (first + wait - spec.interval, wait == 0)]
    case.expect += [(first + wait, True), (3 * spec.window, True)]
    return case


def case_trace_export_failure(check: Check, spec: RolloutSpec, sel: Selectors) -> Case:
    """Every span exported (the lag's margin ahead of the spans ended), but one failed export
    at t0: decide() reduces on a single failure, the alert ``for`` after it."""
    assert trace_gap_fired(spec, 1000, 1000, failures=1)
    assert not trace_gap_fired(spec, 1000, 1000, failures=0)
    t0 = 60 * spec.interval
    before = steps_in(spec, t0)
    failures = gauge((0, before), (1, HORIZON_STEPS - before))
    wait = check.for_s
    return Case(
        trace_series(sel.candidate, SPANS_PER_STEP, failures),
        [(t0 - spec.interval, False), (t0 + wait - spec.interval, wait == 0), (t0 + wait, True)],
    )


BUILDERS: dict[str, Callable[[Check, RolloutSpec, Selectors, bool], Case]] = {
    "prediction-difference": case_differences,
    "oom-kills": case_oom,
    "deadlock": case_deadlock,
    "error-rate": case_error_rate,
    "memory-leak": case_memory_leak,
    "error-rate-gradual": case_error_rate_gradual,
    "p99-ratio": case_p99,
    "memory-ratio": case_memory_ratio,
    "trace-gaps": case_trace_gaps,
}


def _check(spec: RolloutSpec, key: str) -> tuple[Check, Selectors]:
    sel = selectors(MODEL.metric_selector())
    found = {c.key: c for c in checks(spec, sel)}
    return found[key], sel


def _alert_test(check: Check, case: Case, group: dict[str, Any], interval: str) -> dict[str, Any]:
    rule = next(r for r in group["rules"] if r["alert"] == check.alert)
    fired = [{"exp_labels": dict(rule["labels"]), "exp_annotations": dict(rule["annotations"])}]
    return {
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
        "alert_rule_test": [
            {
                "eval_time": f"{round(at)}s",
                "alertname": check.alert,
                "exp_alerts": fired if on else [],
            }
            for at, on in case.expect
        ],
    }


def run_cases(tmp_path: Path, spec: RolloutSpec, check: Check, cases: list[Case]) -> None:
    """Write the rules file and a promtool test file for ``cases``; run ``promtool test rules``."""
    sel = selectors(MODEL.metric_selector())
    group = rules.rule_group("tandem-churn", checks(spec, sel), spec, EXTRA_LABELS)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules.rules_file(group), width=1 << 16))
    interval = f"{round(spec.interval)}s"
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": interval,
        "tests": [_alert_test(check, case, group, interval) for case in cases],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, width=1 << 16))
    run_promtool("test", "rules", "tests.yml", cwd=tmp_path)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_alert_fires_above_threshold_and_not_below(
    tmp_path: Path, spec_name: str, key: str
) -> None:
    """Just above decide()'s threshold the alert fires (after its ``for:``); just below, never."""
    spec = SPECS[spec_name]
    check, sel = _check(spec, key)
    build = BUILDERS[key]
    cases = [build(check, spec, sel, True), build(check, spec, sel, False)]
    if key == "error-rate":
        cases.append(case_error_rate_evidence(check, spec, sel))
    if key == "trace-gaps":
        cases.append(case_trace_export_failure(check, spec, sel))
    run_cases(tmp_path, spec, check, cases)


def test_every_alert_has_a_promtool_case() -> None:
    """A new check cannot be exported without a generated promtool test."""
    for spec in SPECS.values():
        sel = selectors(MODEL.metric_selector())
        assert {c.key for c in checks(spec, sel)} == set(BUILDERS)


def test_for_durations_follow_the_spec() -> None:
    """Immediate triggers fire at once, gradual ones after ``consecutive`` evaluations, the
    deadlock after ``ping_timeout``: the ``for:`` each rule documents."""
    for spec in SPECS.values():
        sel = selectors(MODEL.metric_selector())
        group = rules.rule_group("g", checks(spec, sel), spec, EXTRA_LABELS)
        assert group["interval"] == f"{round(spec.interval)}s"
        waits = {r["labels"]["tandem_rule"]: r["for"] for r in group["rules"]}
        gradual = f"{round((spec.triggers.consecutive - 1) * spec.interval)}s"
        assert waits == {
            "immediate.prediction_difference": "0s",
            "immediate.oom": "0s",
            "immediate.deadlock": f"{round(spec.triggers.ping_timeout)}s",
            "immediate.error_rate": "0s",
            "immediate.memory_leak": "0s",
            "gradual.error_rate": gradual,
            "gradual.p99": gradual,
            "gradual.memory": gradual,
            "gradual.tracing": gradual,
        }
