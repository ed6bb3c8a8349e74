"""The seed's rollback triggers as PromQL checks: one value query, one threshold, one delay each.

:func:`checks` reads every number from a :class:`~tandem.rollout.spec.RolloutSpec` (the one
:func:`tandem.rollout.decide.decide` is given) and every query from :mod:`tandem.rollout.promql`,
so the alert rules (:mod:`.rules`), the Argo Rollouts analysis (:mod:`.argo`) and the Flagger
metric templates (:mod:`.flagger`) fire where ``decide()`` does. What each rule judges, and
where an exported check can only approximate ``decide()``:

========================  =======================================================================
``decide()`` rule         exported check
========================  =======================================================================
immediate.error_rate      Wilson lower bound of the candidate's 5xx rate over ``window`` above
                          ``immediate_error_rate``, on at least ``min_samples`` requests: exact.
immediate.oom             any worker OOM kill in ``window`` (``decide()`` counts since the
                          rollout started: the alert clears a window after the kill).
immediate.deadlock        the candidate's scrape target down (``up``) for ``ping_timeout``: the
                          controller also probes ``/ping``; ``/metrics`` answers on the same
                          listener, so a deadlocked server fails both.
immediate.memory_leak     the least of the RSS per worker growth over the last ``leak_min_span`` and
                          over each half of it above ``rss_growth_per_hour``, once the candidate
                          has run for ``leak_warmup + leak_min_span`` (``decide()`` fits all
                          settled history up to an hour; on steady growth the two agree).
immediate.prediction_     any mirrored response that differed from the baseline's in ``window``
difference                (the rollout router's counter; ``decide()`` counts since the start).
gradual.error_rate        Wilson lower bound above ``gradual_error_rate`` on ``min_samples``
                          requests (above 1 % too: the immediate alert fires beside it): exact.
gradual.p99               candidate P99 over the baseline's above ``1 + p99_increase``, both sides
                          with ``min_samples`` requests: exact.
gradual.memory            candidate RSS per worker over the baseline's above
                          ``1 + memory_increase``: exact.
gradual.tracing           spans missing (ended from the window's start until ``trace_export_lag``
                          ago, less those exported over the whole ``window``) plus failed span
                          exports above 0, the controller's own queries with each count rounded
                          as its Prometheus source rounds it (a count ending in exactly .5 rounds
                          up in PromQL, to even in Python); no value while the candidate does not
                          trace, as in ``decide()``, but a candidate whose scrape went stale is
                          still judged on the samples left in the window (the controller counts
                          it as no data). Not exported when the window is not longer than the
                          lag (``decide()`` never judges it then).
========================  =======================================================================

Immediate checks fire at once (``for: 0s``); gradual ones after ``consecutive`` evaluations in a
row, i.e. ``for: (consecutive - 1) * interval`` with the rule group evaluated every ``interval``;
the deadlock check after ``ping_timeout``. Not exported: security incidents (they *are* alerts:
route them to the rollout's webhook) and extension failures (user reports, not metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec, StepCriteria

#: The rollout router's series when its admin ``/metrics`` is scraped as this job.
DEFAULT_ROUTER_SELECTOR = 'job="tandem-router"'


@dataclass(frozen=True)
class Selectors:
    """Full label selectors (side plus deployment) for the baseline, candidate and router."""

    baseline: str
    candidate: str
    router: str
    deployment: str = ""
    """The deployment's own selector (``--prometheus-selector``) without a side's: what the
    dashboard's by-``server_type`` panels select by."""


def selectors(
    extra: str = "",
    baseline: str | None = None,
    candidate: str | None = None,
    router: str | None = None,
) -> Selectors:
    """Side selectors as the rollout's Prometheus source builds them (``--prometheus-selector``
    added to each side's, ``server_type="flask"``/``"fastapi"`` unless given)."""
    sides = promql.DEFAULT_SELECTORS
    return Selectors(
        baseline=promql.selector(baseline or sides["baseline"], extra),
        candidate=promql.selector(candidate or sides["candidate"], extra),
        router=router if router is not None else DEFAULT_ROUTER_SELECTOR,
        deployment=promql.selector(extra),
    )


@dataclass(frozen=True)
class Check:
    """One rollback trigger as a PromQL value compared with a threshold."""

    key: str
    """Short name, usable in Kubernetes object names: ``error-rate``."""
    alert: str
    """Alert name: ``TandemCandidateErrorRate``."""
    rule: str
    """The :func:`~tandem.rollout.decide.decide` rule it mirrors: ``immediate.error_rate``."""
    action: str
    """What ``decide()`` does when it fires: ``rollback`` or ``reduce``."""
    value: str
    """PromQL: the judged value. No result while there is too little evidence to judge."""
    op: str
    """``>`` or ``<``: the value fires when it compares so with the threshold."""
    threshold: float
    for_s: float
    """Seconds the condition must hold before the alert fires."""
    unit: str
    """Grafana unit of the value (``percentunit``, ``none``, ``s``...)."""
    summary: str
    """One line for the alert's ``summary`` annotation."""
    absent_means: float | None
    """The value to assume when the query has no result, for engines that fail a metric with
    no data (Flagger): a value that does not fire. None: no data must not pass silently."""

    @property
    def immediate(self) -> bool:
        """Whether ``decide()`` rolls back at once (rather than reducing gradually)."""
        return self.action == "rollback"

    @property
    def expr(self) -> str:
        """The alert expression: the value compared with the threshold."""
        return f"({self.value}) {self.op} {promql.number(self.threshold)}"

    def fires(self, value: float) -> bool:
        """Whether a value of the query fires this check (what engines evaluate)."""
        return value > self.threshold if self.op == ">" else value < self.threshold


def _and(*parts: str) -> str:
    return " and ".join(f"({p})" for p in parts)


def _at_least(query: str, count: int) -> str:
    return f"{query} >= {count}"


def z_score(spec: RolloutSpec) -> float:
    """The normal quantile of the spec's confidence, as the Wilson bound uses it."""
    return NormalDist().inv_cdf(spec.confidence)


def gradual_for(spec: RolloutSpec) -> float:
    """Seconds a gradual trigger must hold: ``consecutive`` evaluations ``interval`` apart."""
    return max(0, spec.triggers.consecutive - 1) * spec.interval


def checks(spec: RolloutSpec, sel: Selectors) -> tuple[Check, ...]:
    """Every trigger the seed names that Prometheus can judge, in ``decide()``'s order."""
    trig = spec.triggers
    window = promql.duration(spec.window)
    cand, base = sel.candidate, sel.baseline
    z = z_score(spec)
    evidence = _at_least(promql.requests(cand, window), spec.min_samples)
    both = _and(evidence, _at_least(promql.requests(base, window), spec.min_samples))
    lower = promql.error_rate_lower_bound(cand, window, z)
    leak = promql.leak_growth_per_hour(
        cand, trig.leak_min_span, spec.interval, trig.leak_warmup + trig.leak_min_span
    )
    gradual = gradual_for(spec)
    pct = f"{trig.immediate_error_rate:.2%}"
    found = [
        Check(
            "prediction-difference",
            "TandemMirrorPredictionDifference",
            "immediate.prediction_difference",
            "rollback",
            promql.mirror_differences(sel.router, window),
            ">",
            0.0,
            0.0,
            "none",
            f"Mirrored responses differed from the baseline's in the last {window} "
            "(data corruption): roll back at once",
            0.0,
        ),
        Check(
            "oom-kills",
            "TandemCandidateOOMKill",
            "immediate.oom",
            "rollback",
            promql.oom_kills(cand, window),
            ">",
            0.0,
            0.0,
            "none",
            f"A candidate worker was OOM-killed in the last {window}: roll back at once",
            0.0,
        ),
        Check(
            "deadlock",
            "TandemCandidateDown",
            "immediate.deadlock",
            "rollback",
            promql.up(cand),
            "<",
            1.0,
            trig.ping_timeout,
            "none",
            f"A candidate target has not answered for {trig.ping_timeout:g}s (deadlock): "
            "roll back at once",
            None,
        ),
        Check(
            "error-rate",
            "TandemCandidateErrorRate",
            "immediate.error_rate",
            "rollback",
            _and(lower, evidence),
            ">",
            trig.immediate_error_rate,
            0.0,
            "percentunit",
            f"Candidate 5xx rate is above {pct} ({spec.confidence:.0%} lower bound, "
            f"{window} window): roll back at once",
            0.0,
        ),
        Check(
            "memory-leak",
            "TandemCandidateMemoryLeak",
            "immediate.memory_leak",
            "rollback",
            leak,
            ">",
            trig.rss_growth_per_hour,
            0.0,
            "percentunit",
            f"Candidate RSS grows more than {trig.rss_growth_per_hour:.0%} per hour: "
            "roll back at once",
            0.0,
        ),
        Check(
            "error-rate-gradual",
            "TandemCandidateErrorRateElevated",
            "gradual.error_rate",
            "reduce",
            _and(lower, evidence),
            ">",
            trig.gradual_error_rate,
            gradual,
            "percentunit",
            f"Candidate 5xx rate is above {trig.gradual_error_rate:.2%} "
            f"({spec.confidence:.0%} lower bound): reduce the canary weight",
            0.0,
        ),
        Check(
            "p99-ratio",
            "TandemCandidateLatencyRegression",
            "gradual.p99",
            "reduce",
            _and(promql.p99_ratio(cand, base, window), both),
            ">",
            1.0 + trig.p99_increase,
            gradual,
            "none",
            f"Candidate P99 is more than {trig.p99_increase:.0%} above the baseline's: "
            "reduce the canary weight",
            0.0,
        ),
        Check(
            "memory-ratio",
            "TandemCandidateMemoryRegression",
            "gradual.memory",
            "reduce",
            promql.memory_ratio(cand, base),
            ">",
            1.0 + trig.memory_increase,
            gradual,
            "none",
            f"Candidate RSS per worker is more than {trig.memory_increase:.0%} above the "
            "baseline's: reduce the canary weight",
            0.0,
        ),
    ]
    gaps = promql.trace_gaps(cand, spec.window, trig.trace_export_lag)
    if gaps is not None:
        found.append(
            Check(
                "trace-gaps",
                "TandemCandidateTraceGaps",
                "gradual.tracing",
                "reduce",
                gaps,
                ">",
                0.0,
                gradual,
                "none",
                f"Candidate spans were lost (failed span exports, or fewer spans exported in "
                f"the last {window} than ended until {trig.trace_export_lag:g}s ago): reduce "
                "the canary weight",
                0.0,
            )
        )
    return tuple(found)


@dataclass(frozen=True)
class StepGate:
    """One of a step's promotion criteria (``decide()``'s ``step.criteria``)."""

    key: str
    """``error-rate``, ``p99-increase`` or ``memory-increase``."""
    arg: str
    """The Argo Rollouts argument carrying the step's limit: ``max-error-rate``..."""
    value: str
    """PromQL over the step's hold time, empty without ``min_samples`` requests a side."""
    field: str
    """The :class:`~tandem.rollout.spec.StepCriteria` field holding the limit."""
    minus_one: bool
    """Whether the value is a ratio whose increase (ratio - 1) is compared with the limit."""

    def limit(self, criteria: StepCriteria) -> float:
        """This gate's limit in a step's criteria."""
        return float(getattr(criteria, self.field))


def step_gates(spec: RolloutSpec, sel: Selectors) -> tuple[StepGate, ...]:
    """The step criteria as queries over one step hold: a step passes when, on at least
    ``min_samples`` requests a side, each value stays below the step's limit."""
    window = promql.duration(spec.step_hold)
    cand, base = sel.candidate, sel.baseline
    both = _and(
        _at_least(promql.requests(cand, window), spec.min_samples),
        _at_least(promql.requests(base, window), spec.min_samples),
    )
    return (
        StepGate(
            "error-rate",
            "max-error-rate",
            _and(promql.error_ratio(cand, window), both),
            "max_error_rate",
            False,
        ),
        StepGate(
            "p99-increase",
            "max-p99-increase",
            _and(promql.p99_ratio(cand, base, window), both),
            "max_p99_increase",
            True,
        ),
        StepGate(
            "memory-increase",
            "max-memory-increase",
            _and(promql.memory_ratio(cand, base), both),
            "max_memory_increase",
            True,
        ),
    )


def integer_weights(spec: RolloutSpec) -> list[int]:
    """The spec's steps as whole percents (both engines take integer weights)."""
    weights = [round(s) for s in spec.steps]
    if any(not math.isclose(w, s) for w, s in zip(weights, spec.steps, strict=True)):
        from tandem.errors import ConfigError

        raise ConfigError(
            f"Argo Rollouts and Flagger take whole-percent weights; the spec's steps are "
            f"{list(spec.steps)}"
        )
    return weights
