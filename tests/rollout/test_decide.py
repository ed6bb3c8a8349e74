"""Table-driven tests of the pure decision function: observations in, decision out, no clock."""

from __future__ import annotations

import pytest

from tandem.rollout.analysis import SideWindow, growth_per_hour, wilson_bounds
from tandem.rollout.decide import Observations, decide
from tandem.rollout.spec import RolloutSpec, Triggers
from tandem.rollout.status import Phase, RolloutStatus

SPEC = RolloutSpec(
    shadow_duration=10,
    step_hold=5,
    interval=1,
    window=5,
    min_samples=100,
    reduction_wait=30,
    triggers=Triggers(ping_timeout=30, leak_min_span=60, leak_warmup=0),
)
T0 = 1_000_000.0
OK_BASE = SideWindow(1000, 0, 0.010)
OK_CAND = SideWindow(1000, 0, 0.010)
MB = 1024 * 1024


def obs(now: float = T0 + 100, **kw) -> Observations:
    values = dict(
        now=now,
        baseline=OK_BASE,
        candidate=OK_CAND,
        step_baseline=OK_BASE,
        step_candidate=OK_CAND,
        baseline_rss=200 * MB,
        candidate_rss=200 * MB,
        candidate_last_ping=now - 1,
        mirror_compared=500,
    )
    values.update(kw)
    return Observations(**values)


def canary(weight: float, index: int, **kw) -> RolloutStatus:
    values = dict(
        phase=Phase.CANARY,
        weight=weight,
        step_index=index,
        started_at=T0,
        phase_started_at=T0,
        step_started_at=T0,
    )
    values.update(kw)
    return RolloutStatus(**values)


SHADOW = RolloutStatus(phase=Phase.SHADOW, started_at=T0, phase_started_at=T0, step_started_at=T0)


@pytest.mark.parametrize(
    ("name", "status", "observed", "action", "rule", "weight", "phase"),
    [
        (
            "shadow waits for its duration",
            SHADOW,
            obs(T0 + 5),
            "hold",
            "shadow.wait",
            0,
            Phase.SHADOW,
        ),
        ("shadow passes", SHADOW, obs(), "start_canary", "shadow.passed", 1, Phase.CANARY),
        (
            "shadow without data is inconclusive",
            SHADOW,
            obs(mirror_compared=0, step_candidate=SideWindow()),
            "hold",
            "inconclusive",
            0,
            Phase.SHADOW,
        ),
        (
            "shadow slower than 1.2x holds",
            SHADOW,
            obs(step_candidate=SideWindow(1000, 0, 0.013)),
            "hold",
            "shadow.criteria",
            0,
            Phase.SHADOW,
        ),
        (
            "shadow with one candidate failure fails at once",
            SHADOW,
            obs(T0 + 5, mirror_failures=1),
            "rollback",
            "shadow.failure",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "shadow with candidate failures never passes",
            SHADOW,
            obs(mirror_compared=5000, mirror_failures=2),
            "rollback",
            "shadow.failure",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "shadow prediction difference",
            SHADOW,
            obs(mirror_differences=1),
            "rollback",
            "immediate.prediction_difference",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "canary prediction difference",
            canary(25, 3),
            obs(mirror_differences=2),
            "rollback",
            "immediate.prediction_difference",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "oom kill",
            canary(10, 2),
            obs(candidate_oom_kills=1),
            "rollback",
            "immediate.oom",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "ping silent 31 s",
            canary(5, 1),
            obs(candidate_last_ping=T0 + 69),
            "rollback",
            "immediate.deadlock",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "ping silent 29 s is fine",
            canary(5, 1, step_started_at=T0 + 99),
            obs(candidate_last_ping=T0 + 71),
            "hold",
            "step.wait",
            5,
            Phase.CANARY,
        ),
        (
            "5 % errors",
            canary(10, 2),
            obs(candidate=SideWindow(400, 20, 0.01)),
            "rollback",
            "immediate.error_rate",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "2 % errors on 100 requests is not conclusive for 1 %",
            canary(10, 2),
            obs(candidate=SideWindow(100, 2, 0.01), step_candidate=SideWindow(100, 2, 0.01)),
            "hold",
            "step.criteria",
            10,
            Phase.CANARY,
        ),
        (
            "a handful of requests never rolls back",
            canary(1, 0),
            obs(candidate=SideWindow(3, 1, 0.01), step_candidate=SideWindow(3, 1, 0.01)),
            "hold",
            "inconclusive",
            1,
            Phase.CANARY,
        ),
        (
            "step waits for its hold time",
            canary(5, 1, step_started_at=T0 + 98),
            obs(),
            "hold",
            "step.wait",
            5,
            Phase.CANARY,
        ),
        ("step passes", canary(5, 1), obs(), "step_up", "step.passed", 10, Phase.CANARY),
        (
            "no data is inconclusive, never success",
            canary(5, 1),
            obs(step_baseline=SideWindow(), step_candidate=SideWindow()),
            "hold",
            "inconclusive",
            5,
            Phase.CANARY,
        ),
        (
            "1 % step allows +15 % P99",
            canary(1, 0),
            obs(step_candidate=SideWindow(1000, 0, 0.0115)),
            "step_up",
            "step.passed",
            5,
            Phase.CANARY,
        ),
        (
            "1 % step does not pass +25 % P99, which the gradual trigger reduces (one ladder)",
            canary(1, 0),
            obs(step_candidate=SideWindow(1000, 0, 0.0125)),
            "hold",
            "step.criteria",
            1,
            Phase.CANARY,
        ),
        (
            "10 % step does not allow +25 % P99",
            canary(10, 2),
            obs(step_candidate=SideWindow(1000, 0, 0.0125)),
            "hold",
            "step.criteria",
            10,
            Phase.CANARY,
        ),
        (
            "error rate at 0.1 % holds the step",
            canary(10, 2),
            obs(step_candidate=SideWindow(1000, 1, 0.01)),
            "hold",
            "step.criteria",
            10,
            Phase.CANARY,
        ),
        (
            "memory +45 % holds at 5 % (limit 40 %)",
            canary(5, 1),
            obs(candidate_rss=290 * MB),
            "hold",
            "step.criteria",
            5,
            Phase.CANARY,
        ),
        (
            "last step promotes",
            canary(100, 7),
            obs(),
            "promote",
            "step.passed",
            100,
            Phase.PROMOTED,
        ),
        (
            "security alert rolls back a canary at once",
            canary(5, 1),
            obs(security_alerts=1, first_security_alert="CandidateBreach"),
            "rollback",
            "immediate.security",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "security alert rolls back shadow too",
            SHADOW,
            obs(security_alerts=2),
            "rollback",
            "immediate.security",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "5xx 0.5% on enough requests, second evaluation: gradual reduction",
            canary(25, 3, trigger_streak={"error_rate": 1}),
            obs(candidate=SideWindow(2000, 10, 0.010)),
            "reduce",
            "gradual.error_rate",
            5,
            Phase.REDUCING,
        ),
        (
            "5xx 0.5% first evaluation only starts the streak",
            canary(25, 3, step_started_at=T0 + 99),
            obs(candidate=SideWindow(2000, 10, 0.010)),
            "hold",
            "step.wait",
            25,
            Phase.CANARY,
        ),
        (
            "5xx on too few requests is no evidence",
            canary(25, 3, step_started_at=T0 + 99, trigger_streak={"error_rate": 1}),
            obs(candidate=SideWindow(50, 2, 0.010)),
            "hold",
            "step.wait",
            25,
            Phase.CANARY,
        ),
        (
            "5xx 0.05% is under the gradual threshold",
            canary(25, 3, trigger_streak={"error_rate": 1}),
            obs(candidate=SideWindow(2000, 1, 0.010)),
            "step_up",
            "step.passed",
            50,
            Phase.CANARY,
        ),
        (
            "5xx 2% without the evidence for immediate still reduces: surely above 0.1%",
            canary(25, 3, trigger_streak={"error_rate": 1}),
            obs(candidate=SideWindow(150, 3, 0.010)),
            "reduce",
            "gradual.error_rate",
            5,
            Phase.REDUCING,
        ),
        (
            "5xx 1.5% on light traffic is not left holding its step",
            canary(25, 3, step_started_at=T0 + 99, trigger_streak={"error_rate": 1}),
            obs(candidate=SideWindow(400, 6, 0.010)),
            "reduce",
            "gradual.error_rate",
            5,
            Phase.REDUCING,
        ),
        (
            "four extension failures: gradual reduction",
            canary(50, 4, trigger_streak={"extension": 1}),
            obs(extension_failures=4),
            "reduce",
            "gradual.extension",
            25,
            Phase.REDUCING,
        ),
        (
            "three extension failures are tolerated",
            canary(50, 4, trigger_streak={"extension": 1}),
            obs(extension_failures=3),
            "step_up",
            "step.passed",
            75,
            Phase.CANARY,
        ),
        (
            "spans missing at 10%: reduction to 0 is a rollback",
            canary(10, 2, trigger_streak={"tracing": 1}),
            obs(
                candidate_spans_ended=1000,
                candidate_spans_exported=990,
                candidate_span_export_failures=0,
            ),
            "rollback",
            "gradual.tracing",
            0,
            Phase.ROLLED_BACK,
        ),
        (
            "span export failures: gradual reduction",
            canary(75, 5, trigger_streak={"tracing": 1}),
            obs(
                candidate_spans_ended=1000,
                candidate_spans_exported=1000,
                candidate_span_export_failures=2,
            ),
            "reduce",
            "gradual.tracing",
            50,
            Phase.REDUCING,
        ),
        (
            "every traced request exported: no trace gap",
            canary(75, 5, trigger_streak={"tracing": 1}),
            obs(
                candidate_spans_ended=1000,
                candidate_spans_exported=1000,
                candidate_span_export_failures=0,
            ),
            "step_up",
            "step.passed",
            90,
            Phase.CANARY,
        ),
        (
            # The controller's counts (see decide._gradual): spans that ended up to
            # trace_export_lag ago against spans exported up to now. Right after a step up the
            # exported count includes spans that ended before the lag and were still queued,
            # so it is the larger one on a healthy candidate.
            "spans still queued at the window's end are no trace gap",
            canary(75, 5, trigger_streak={"tracing": 1}),
            obs(
                candidate_spans_ended=4000,
                candidate_spans_exported=4180,
                candidate_span_export_failures=0,
            ),
            "step_up",
            "step.passed",
            90,
            Phase.CANARY,
        ),
        (
            "one span lost for good: gradual reduction",
            canary(75, 5, trigger_streak={"tracing": 1}),
            obs(
                candidate_spans_ended=4000,
                candidate_spans_exported=3999,
                candidate_span_export_failures=0,
            ),
            "reduce",
            "gradual.tracing",
            50,
            Phase.REDUCING,
        ),
        (
            "a first trace gap only starts the streak",
            canary(75, 5, step_started_at=T0 + 99),
            obs(
                candidate_spans_ended=1000,
                candidate_spans_exported=0,
                candidate_span_export_failures=3,
            ),
            "hold",
            "step.wait",
            75,
            Phase.CANARY,
        ),
        (
            "tracing off (nothing observed): the rule is not judged",
            canary(75, 5, trigger_streak={"tracing": 1}),
            obs(),
            "step_up",
            "step.passed",
            90,
            Phase.CANARY,
        ),
        (
            "spans counted but exports not (yet) observed: not judged",
            canary(75, 5, trigger_streak={"tracing": 1}),
            obs(candidate_spans_ended=1000, candidate_span_export_failures=0),
            "step_up",
            "step.passed",
            90,
            Phase.CANARY,
        ),
        (
            "trace gap closed after a reduction: hold for resume",
            canary(
                50,
                4,
                phase=Phase.REDUCING,
                last_reduction_at=T0,
                trigger_streak={"tracing": 2},
            ),
            obs(
                candidate_spans_ended=1000,
                candidate_spans_exported=1000,
                candidate_span_export_failures=0,
            ),
            "hold_reduced",
            "gradual.cleared",
            50,
            Phase.HOLDING,
        ),
        (
            "trace counts unobserved after a reduction: neither reduces nor clears",
            canary(
                50,
                4,
                phase=Phase.REDUCING,
                last_reduction_at=T0,
                trigger_streak={"tracing": 2},
            ),
            obs(),
            "hold",
            "inconclusive",
            50,
            Phase.REDUCING,
        ),
        (
            "terminal stays",
            canary(0, -1, phase=Phase.ROLLED_BACK),
            obs(mirror_differences=3),
            "hold",
            "terminal",
            0,
            Phase.ROLLED_BACK,
        ),
    ],
)
def test_decision_table(name, status, observed, action, rule, weight, phase) -> None:
    decision = decide(SPEC, status, observed)
    assert (decision.action, decision.rule, decision.status.weight, decision.status.phase) == (
        action,
        rule,
        weight,
        phase,
    ), (name, decision.reason)
    assert decision.reason


def test_trace_gap_reason_and_numbers() -> None:
    d = decide(
        SPEC,
        canary(75, 5, trigger_streak={"tracing": 1}),
        obs(
            candidate_spans_ended=1000,
            candidate_spans_exported=600,
            candidate_span_export_failures=2,
        ),
    )
    assert d.rule == "gradual.tracing"
    assert "trace gaps: 600 spans exported for 1000 ended, 2 failed exports" in d.reason
    assert (d.numbers["spans_ended"], d.numbers["spans_exported"]) == (1000, 600)
    assert d.status.trigger_streak["tracing"] == 2


def test_leak_rule_needs_span_and_growth() -> None:
    history = tuple((T0 + t, 200 * MB * (1 + 0.2 * t / 3600)) for t in range(0, 61, 5))
    d = decide(SPEC, canary(10, 2, step_started_at=T0 + 99), obs(candidate_rss_history=history))
    assert d.rule == "immediate.memory_leak" and d.status.phase == Phase.ROLLED_BACK
    assert "20.0%/hour" in d.reason
    short = history[:6]  # 25 s < leak_min_span
    assert (
        decide(
            SPEC, canary(10, 2, step_started_at=T0 + 99), obs(candidate_rss_history=short)
        ).action
        == "hold"
    )
    # A one-off step (warm-up) is not a leak: the second half does not grow.
    step = tuple((T0 + t, 200 * MB if t < 20 else 240 * MB) for t in range(0, 61, 5))
    assert (
        decide(SPEC, canary(10, 2, step_started_at=T0 + 99), obs(candidate_rss_history=step)).action
        == "hold"
    )
    warm = SPEC.with_overrides(triggers=Triggers(ping_timeout=30, leak_min_span=60, leak_warmup=30))
    assert (
        decide(
            warm, canary(10, 2, step_started_at=T0 + 99), obs(candidate_rss_history=history)
        ).action
        == "hold"
    )  # 30 s left < 60 s
    flat = tuple((T0 + t, 200 * MB) for t in range(0, 61, 5))
    assert (
        decide(SPEC, canary(10, 2, step_started_at=T0 + 99), obs(candidate_rss_history=flat)).action
        == "hold"
    )


def test_gradual_reduction_walks_the_table_and_rolls_back() -> None:
    slow = obs(candidate=SideWindow(1000, 0, 0.018), step_candidate=SideWindow(1000, 0, 0.018))
    status = canary(75, 5)
    first = decide(SPEC, status, slow)
    assert first.action == "hold" and first.status.trigger_streak["p99"] == 1
    second = decide(SPEC, first.status, slow)
    assert (second.action, second.rule, second.status.weight, second.status.phase) == (
        "reduce",
        "gradual.p99",
        50,
        Phase.REDUCING,
    )
    assert "+80% vs baseline (> +20%)" in second.reason  # the spec's limit, not a constant
    looser = SPEC.with_overrides(triggers=Triggers(p99_increase=0.7))
    again = decide(looser, decide(looser, status, slow).status, slow)
    assert "(> +70%)" in again.reason
    now = slow.now
    waiting = decide(SPEC, second.status, obs(now + 10, candidate=slow.candidate))
    assert waiting.action == "hold" and waiting.rule == "gradual.wait"
    weights = [50.0]
    status = second.status
    t = now
    while status.phase == Phase.REDUCING:
        t += 31
        d = decide(SPEC, status, obs(t, candidate=slow.candidate, step_candidate=slow.candidate))
        status = d.status
        weights.append(status.weight)
    assert weights == [50.0, 25.0, 5.0, 0.0]
    assert status.phase == Phase.ROLLED_BACK and status.rollback_rule == "gradual.p99"


def test_reducing_without_evidence_neither_reduces_nor_clears() -> None:
    reducing = canary(50, 4, phase=Phase.REDUCING, last_reduction_at=T0, trigger_streak={"p99": 2})
    few = SideWindow(5, 0, 0.5)  # below min_samples: the P99 trigger cannot be judged
    d = decide(SPEC, reducing, obs(T0 + 40, candidate=few))
    assert (d.action, d.rule, d.status.weight, d.status.phase) == (
        "hold",
        "inconclusive",
        50,
        Phase.REDUCING,
    )


def test_cleared_trigger_holds_until_resume() -> None:
    reducing = canary(50, 4, phase=Phase.REDUCING, last_reduction_at=T0, trigger_streak={"p99": 2})
    cleared = decide(SPEC, reducing, obs(T0 + 40))
    assert cleared.action == "hold_reduced" and cleared.status.phase == Phase.HOLDING
    assert cleared.status.weight == 50
    idle = decide(SPEC, cleared.status, obs(T0 + 60))
    assert idle.status.phase == Phase.HOLDING and idle.action == "hold"
    resumed = decide(SPEC, idle.status, obs(T0 + 70), command="resume")
    assert resumed.action == "resume" and resumed.status.phase == Phase.CANARY
    assert resumed.status.step_index == SPEC.steps.index(50.0)
    auto = decide(SPEC.with_overrides(auto_resume=True), reducing, obs(T0 + 40))
    assert auto.action == "resume" and auto.status.phase == Phase.CANARY


def test_a_trigger_returning_while_holding_reduces_again() -> None:
    """A weight held after its trigger cleared still serves traffic: when P99 regresses again it
    is reduced by the table, after ``consecutive`` evaluations like any step."""
    holding = canary(50, 4, phase=Phase.HOLDING, phase_started_at=T0 + 40)
    slow = obs(T0 + 100, candidate=SideWindow(1000, 0, 0.018))
    first = decide(SPEC, holding, slow)
    assert (first.action, first.status.phase, first.status.trigger_streak["p99"]) == (
        "hold",
        Phase.HOLDING,
        1,
    )
    second = decide(SPEC, first.status, obs(T0 + 101, candidate=slow.candidate))
    assert (second.action, second.rule, second.status.weight, second.status.phase) == (
        "reduce",
        "gradual.p99",
        25,
        Phase.REDUCING,
    )
    healthy = decide(SPEC, decide(SPEC, holding, obs(T0 + 100)).status, obs(T0 + 101))
    assert (healthy.action, healthy.status.phase, healthy.status.weight) == (
        "hold",
        Phase.HOLDING,
        50,
    )


def test_operator_commands() -> None:
    status = canary(25, 3)
    paused = decide(SPEC, status, obs(), command="pause")
    assert paused.status.phase == Phase.PAUSED and paused.status.weight == 25
    assert decide(SPEC, paused.status, obs()).action == "hold"
    # Immediate triggers still act while paused.
    assert decide(SPEC, paused.status, obs(candidate_oom_kills=1)).rule == "immediate.oom"
    resumed = decide(SPEC, paused.status, obs(), command="resume")
    assert resumed.status.phase == Phase.CANARY and resumed.status.step_index == 3
    aborted = decide(SPEC, status, obs(), command="abort")
    assert (aborted.status.phase, aborted.status.weight, aborted.rule) == (
        Phase.ABORTED,
        0,
        "operator.abort",
    )
    promoted = decide(SPEC, status, obs(), command="promote")
    assert (promoted.status.phase, promoted.status.weight) == (Phase.PROMOTED, 100)


def test_decide_is_pure() -> None:
    status = canary(10, 2)
    observed = obs(candidate=SideWindow(400, 20, 0.01))
    assert decide(SPEC, status, observed) == decide(SPEC, status, observed)


def test_wilson_bounds() -> None:
    low, high = wilson_bounds(0, 3000, 0.95)
    assert low == 0 and 0.0008 < high < 0.0010
    low, high = wilson_bounds(20, 400, 0.95)
    assert 0.033 < low < 0.036 and 0.07 < high < 0.075
    assert wilson_bounds(0, 0, 0.95) == (0.0, 1.0)


def test_growth_per_hour() -> None:
    history = [(t, 100.0 + t / 36) for t in range(0, 3601, 600)]
    rate, span = growth_per_hour(history) or (0, 0)
    assert abs(rate - 1.0) < 1e-9 and span == 3600
    assert growth_per_hour(history[:2]) is None


def test_spec_from_yaml_durations(tmp_path) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(
        "steps: [5, 50, 100]\nstep_hold: 2s\nreduction_wait: 15m\n"
        "triggers: {ping_timeout: 500ms, trace_export_lag: 2s}\n"
        "criteria: {5: {max_error_rate: 0.01, max_p99_increase: 0.5, max_memory_increase: 0.5}}\n"
    )
    spec = RolloutSpec.load(path)
    assert spec.steps == (5.0, 50.0, 100.0) and spec.step_hold == 2.0
    assert spec.reduction_wait == 900.0 and spec.triggers.ping_timeout == 0.5
    assert spec.triggers.trace_export_lag == 2.0
    assert spec.criteria_for(50).max_error_rate == 0.01


@pytest.mark.parametrize(
    "doc",
    [
        {"steps": [10, 5, 100]},
        {"steps": [5, 50]},
        {"step_hold": "soon"},
        {"nope": 1},
        {"steps": [0.001, 100]},
        {"triggers": {"gradual_error_rate": 0.02}},
        {"triggers": {"extension_failures": -1}},
        {"triggers": {"trace_export_lag": "-5s"}},
    ],
)
def test_spec_rejects_bad_values(doc) -> None:
    from tandem.errors import ConfigError

    with pytest.raises(ConfigError):
        RolloutSpec.from_dict(doc)


def test_a_failed_verification_holds_the_step_whatever_the_traffic_shows() -> None:
    status = canary(10.0, 2)
    failed = ("fleet-3: predict_single failed on fastapi; put back on flask",)
    decision = decide(SPEC, status, obs(step_failures=failed))
    assert (decision.action, decision.rule, decision.status.weight) == (
        "hold",
        "step.verification",
        10.0,
    )
    assert "fleet-3" in decision.reason and decision.numbers["failed_verification"] == list(failed)
    # Immediate triggers still act, and without failures the same step passes.
    errors = SideWindow(1000, 100, 0.010)
    assert decide(SPEC, status, obs(step_failures=failed, candidate=errors)).action == "rollback"
    assert decide(SPEC, status, obs()).action == "step_up"
