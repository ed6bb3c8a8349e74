"""The pure decision function: (spec, status, observations, command) -> decision.

No clock, no I/O: the controller passes ``now`` in the observations. Rules, first match wins:

1. terminal phases never change;
2. operator commands (abort, promote, pause, resume);
3. immediate rollback to 0 % (any phase): a security incident (a matching alert, any severity),
   a prediction difference in mirrored comparison, an OOM kill, ``/ping`` silent longer than
   ``ping_timeout``, candidate error rate above ``immediate_error_rate`` with confidence, RSS
   growth above ``rss_growth_per_hour``;
4. gradual reduction (canary steps, and a reduced weight held after a trigger cleared): P99 more
   than ``p99_increase`` or RSS more than ``memory_increase`` above the baseline's, a 5xx rate
   above ``gradual_error_rate`` with confidence (also above 1 % while the evidence does not yet
   suffice for the immediate rule), more than ``extension_failures`` extension
   failure reports in the window, or trace gaps (span exports failing, or fewer spans exported
   than spans ended, lag allowed for), for ``consecutive`` evaluations → the reduction table,
   then every
   ``reduction_wait`` re-evaluate: still triggered → reduce again (0 % is a rollback), cleared →
   hold for ``resume``;
5. shadow → first step, and step → next step (or promotion at 100 %), when the step's hold time
   has passed and its criteria hold on enough evidence; otherwise hold, saying what is missing.
   Shadow fails (a rollback, rule ``shadow.failure``) on any mirrored request the candidate
   failed where the baseline answered: the plan asks for 100 % match. A step also holds (rule
   ``step.verification``) while any of its targets failed verification on the candidate
   (``tandem fleet``: a deployment moved to FastAPI that did not pass, and was put back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tandem.rollout.analysis import SideWindow, growth_per_hour, wilson_bounds
from tandem.rollout.spec import RolloutSpec
from tandem.rollout.status import Phase, RolloutStatus


@dataclass(frozen=True)
class Observations:
    """What the controller saw at one evaluation."""

    now: float
    baseline: SideWindow = SideWindow()
    """Baseline traffic over the trigger window."""
    candidate: SideWindow = SideWindow()
    """Candidate traffic (served and mirrored) over the trigger window."""
    step_baseline: SideWindow = SideWindow()
    """Baseline traffic since the current step (or shadow) began."""
    step_candidate: SideWindow = SideWindow()
    """Candidate traffic since the current step (or shadow) began."""
    baseline_rss: float | None = None
    """Bytes, over all the baseline's processes."""
    candidate_rss: float | None = None
    candidate_rss_history: tuple[tuple[float, float], ...] = ()
    """(time, bytes) samples of the candidate's RSS since it started."""
    candidate_oom_kills: int = 0
    """OOM kills of candidate workers since the rollout started."""
    candidate_last_ping: float | None = None
    """When the candidate last answered ``/ping`` (None: never)."""
    mirror_compared: int = 0
    mirror_differences: int = 0
    """Mirrored responses that differed from the baseline's, since the rollout started."""
    mirror_failures: int = 0
    """Mirrored requests the candidate answered 5xx where the baseline did not."""
    first_difference: str = ""
    security_alerts: int = 0
    """Security alerts (Alertmanager webhook, matching the spec's matcher) since the start."""
    first_security_alert: str = ""
    extension_failures: int | None = None
    """Extension failures reported (operator, admin API, candidate log) in the trigger window;
    None when nothing watches for them."""
    candidate_spans_ended: int | None = None
    """Spans of the candidate's traced requests (server spans, their children, user spans) that
    ended from the window's start until ``triggers.trace_export_lag`` seconds ago, from
    ``drum_otel_spans_ended_total`` (None: tracing off, or not observed)."""
    candidate_spans_exported: int | None = None
    """Spans the candidate exported over the whole window (``drum_otel_spans_exported_total``)."""
    candidate_span_export_failures: int | None = None
    """Failed span exports of the candidate over the window
    (``drum_otel_export_failures_total``)."""
    step_failures: tuple[str, ...] = ()
    """Targets that failed verification on the candidate since the current step began (one line
    each); every one counts against the step, which cannot pass while there is any."""


@dataclass(frozen=True)
class Decision:
    """A new status plus why it was reached."""

    status: RolloutStatus
    action: str
    """hold, start_canary, step_up, promote, rollback, reduce, hold_reduced, resume, pause,
    abort."""
    rule: str
    """The rule that decided, e.g. ``immediate.error_rate`` or ``step.criteria``."""
    reason: str
    """One line a human can read in ``history``."""
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def changes_weight(self) -> bool:
        """Whether the router must be told a new weight."""
        return self.action in {
            "start_canary",
            "step_up",
            "promote",
            "rollback",
            "reduce",
            "abort",
            "resume",
        }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _ratio(candidate: float | None, baseline: float | None) -> float | None:
    if candidate is None or baseline is None or baseline <= 0:
        return None
    return candidate / baseline - 1.0


def _rollback(
    status: RolloutStatus, now: float, rule: str, reason: str, numbers: dict[str, Any]
) -> Decision:
    new = status.evolve(
        phase=Phase.ROLLED_BACK,
        weight=0.0,
        phase_started_at=now,
        rollback_rule=rule,
        message=f"rolled back: {reason}",
        resume_phase=None,
    )
    return Decision(new, "rollback", rule, reason, numbers)


def _immediate(spec: RolloutSpec, status: RolloutStatus, obs: Observations) -> Decision | None:
    trig = spec.triggers
    now = obs.now
    if obs.security_alerts > 0:
        detail = f": {obs.first_security_alert}" if obs.first_security_alert else ""
        return _rollback(
            status,
            now,
            "immediate.security",
            f"{obs.security_alerts} security alert(s) fired{detail}",
            {"security_alerts": obs.security_alerts},
        )
    if obs.mirror_differences > 0:
        detail = f": {obs.first_difference}" if obs.first_difference else ""
        return _rollback(
            status,
            now,
            "immediate.prediction_difference",
            f"{obs.mirror_differences} of {obs.mirror_compared} mirrored responses differed "
            f"from the baseline (data corruption){detail}",
            {"mirror_differences": obs.mirror_differences, "mirror_compared": obs.mirror_compared},
        )
    if obs.candidate_oom_kills > 0:
        return _rollback(
            status,
            now,
            "immediate.oom",
            f"{obs.candidate_oom_kills} candidate worker(s) OOM-killed",
            {"oom_kills": obs.candidate_oom_kills},
        )
    last_ping = (
        obs.candidate_last_ping if obs.candidate_last_ping is not None else status.started_at
    )
    silent = now - last_ping
    if silent > trig.ping_timeout:
        return _rollback(
            status,
            now,
            "immediate.deadlock",
            f"candidate /ping unanswered for {silent:.1f}s (> {trig.ping_timeout:g}s)",
            {"ping_silent_s": round(silent, 3), "ping_timeout_s": trig.ping_timeout},
        )
    cand = obs.candidate
    if cand.requests >= spec.min_samples:
        low, _ = wilson_bounds(cand.errors, cand.requests, spec.confidence)
        if low > trig.immediate_error_rate:
            return _rollback(
                status,
                now,
                "immediate.error_rate",
                f"candidate error rate {_pct(cand.error_rate)} ({cand.errors}/{cand.requests}), "
                f"{spec.confidence:.0%} lower bound {_pct(low)} > "
                f"{_pct(trig.immediate_error_rate)}",
                {
                    "errors": cand.errors,
                    "requests": cand.requests,
                    "error_rate": cand.error_rate,
                    "lower_bound": low,
                    "threshold": trig.immediate_error_rate,
                },
            )
    growth = _leak(trig, obs.candidate_rss_history)
    if growth is not None:
        rate, span = growth
        if rate > trig.rss_growth_per_hour:
            return _rollback(
                status,
                now,
                "immediate.memory_leak",
                f"candidate RSS grows {rate * 100:.1f}%/hour over {span:.0f}s "
                f"(> {trig.rss_growth_per_hour * 100:.0f}%/hour)",
                {"growth_per_hour": rate, "span_s": span, "threshold": trig.rss_growth_per_hour},
            )
    return None


def _leak(trig: Any, history: tuple[tuple[float, float], ...]) -> tuple[float, float] | None:
    """Sustained RSS growth (rate per hour, span) after warm-up, or None.

    Both halves of the span must grow faster than the threshold, so a one-off step (a cache
    filling, a pool growing) is not a leak.
    """
    if not history:
        return None
    settled = [(t, v) for t, v in history if t >= history[0][0] + trig.leak_warmup]
    whole = growth_per_hour(settled)
    if whole is None or whole[1] < trig.leak_min_span:
        return None
    middle = settled[0][0] + whole[1] / 2
    first = growth_per_hour([p for p in settled if p[0] <= middle])
    second = growth_per_hour([p for p in settled if p[0] >= middle])
    if first is None or second is None:
        return None
    return min(whole[0], first[0], second[0]), whole[1]


def _gradual(spec: RolloutSpec, obs: Observations) -> tuple[dict[str, bool], dict[str, Any]]:
    """Which gradual triggers hold now (only judged on enough evidence)."""
    trig = spec.triggers
    fired: dict[str, bool] = {}
    numbers: dict[str, Any] = {}
    if obs.baseline.requests >= spec.min_samples and obs.candidate.requests >= spec.min_samples:
        inc = _ratio(obs.candidate.p99, obs.baseline.p99)
        if inc is not None:
            fired["p99"] = inc > trig.p99_increase
            numbers.update(
                p99_increase=inc,
                p99_increase_limit=trig.p99_increase,
                baseline_p99_s=obs.baseline.p99,
                candidate_p99_s=obs.candidate.p99,
            )
    mem = _ratio(obs.candidate_rss, obs.baseline_rss)
    if mem is not None:
        fired["memory"] = mem > trig.memory_increase
        numbers.update(
            memory_increase=mem,
            memory_increase_limit=trig.memory_increase,
            baseline_rss=obs.baseline_rss,
            candidate_rss=obs.candidate_rss,
        )
    cand = obs.candidate
    if cand.requests >= spec.min_samples:
        low, _ = wilson_bounds(cand.errors, cand.requests, spec.confidence)
        # Above 1 % the immediate rule, checked first, rolls back once its own evidence
        # suffices; until then the candidate is surely above 0.1 %, so it is reduced, never
        # left holding its step.
        fired["error_rate"] = low > trig.gradual_error_rate
        numbers.update(
            error_rate=cand.error_rate,
            error_rate_lower_bound=low,
            gradual_error_rate=trig.gradual_error_rate,
        )
    if obs.extension_failures is not None:
        fired["extension"] = obs.extension_failures > trig.extension_failures
        numbers.update(
            extension_failures=obs.extension_failures, extension_threshold=trig.extension_failures
        )
    # Trace gaps. The batch processor holds every span for up to OTEL_BSP_SCHEDULE_DELAY before
    # exporting it, so over one window "exported < ended" is true of a healthy candidate
    # whenever its traffic grows (a step up, a burst): the spans still queued at the end
    # outnumber those queued at the start. The controller therefore counts the spans that
    # ended from the window's start until trace_export_lag seconds ago, and those exported
    # from the window's start until now. Each span of the first count has had the lag to be
    # exported, and none can have been exported before the window began, so a candidate that
    # loses no span always shows exported >= ended, whatever its traffic does; only spans that
    # never left (export failed, queue full, worker killed) make exported fall behind. The
    # price is a margin of the lag's worth of spans: on steady traffic, silent losses (no
    # failed export) under about trace_export_lag / window of the spans (5 % with the
    # defaults) go unseen; a failed export is seen at once, one is enough. Waiting for the
    # streak instead would not do: after a step up the deficit lasts a whole window.
    ended, exported = obs.candidate_spans_ended, obs.candidate_spans_exported
    failures = obs.candidate_span_export_failures
    if ended is not None and exported is not None and failures is not None:
        fired["tracing"] = failures > 0 or exported < ended
        numbers.update(spans_ended=ended, spans_exported=exported, export_failures=failures)
    return fired, numbers


def _streaks(status: RolloutStatus, fired: dict[str, bool]) -> dict[str, int]:
    streak = dict(status.trigger_streak)
    for name, on in fired.items():
        streak[name] = streak.get(name, 0) + 1 if on else 0
    return streak


def _step_index_for(spec: RolloutSpec, weight: float) -> int:
    index = -1
    for i, step in enumerate(spec.steps):
        if step <= weight:
            index = i
    return index


def decide(
    spec: RolloutSpec, status: RolloutStatus, obs: Observations, command: str | None = None
) -> Decision:
    """Decide what the rollout does next. Pure: same inputs, same decision."""
    now = obs.now
    if status.phase.is_terminal:
        return Decision(status, "hold", "terminal", f"rollout is {status.phase.value}")

    if command == "abort":
        new = status.evolve(
            phase=Phase.ABORTED,
            weight=0.0,
            phase_started_at=now,
            message="aborted by operator",
            resume_phase=None,
        )
        return Decision(
            new, "abort", "operator.abort", "aborted by operator", {"from_weight": status.weight}
        )
    if command == "promote":
        new = status.evolve(
            phase=Phase.PROMOTED,
            weight=100.0,
            phase_started_at=now,
            step_index=len(spec.steps) - 1,
            message="promoted by operator",
            resume_phase=None,
        )
        return Decision(
            new,
            "promote",
            "operator.promote",
            "promoted by operator",
            {"from_weight": status.weight},
        )

    immediate = _immediate(spec, status, obs)
    if immediate is not None:
        return immediate

    if command == "pause" and status.phase != Phase.PAUSED:
        new = status.evolve(
            phase=Phase.PAUSED,
            resume_phase=status.phase,
            phase_started_at=now,
            message=f"paused by operator at {status.weight:g}%",
        )
        return Decision(new, "pause", "operator.pause", new.message)
    if command == "resume" and status.phase in (Phase.PAUSED, Phase.HOLDING):
        back = status.resume_phase if status.phase == Phase.PAUSED else Phase.CANARY
        if back in (None, Phase.HOLDING, Phase.REDUCING):
            back = Phase.CANARY if status.weight > 0 or status.step_index >= 0 else Phase.SHADOW
        index = status.step_index if back != Phase.CANARY else _step_index_for(spec, status.weight)
        new = status.evolve(
            phase=back,
            resume_phase=None,
            phase_started_at=now,
            step_started_at=now,
            step_index=index,
            trigger_streak={},
            message=f"resumed by operator at {status.weight:g}%",
        )
        return Decision(new, "resume", "operator.resume", new.message)

    if status.phase == Phase.PAUSED:
        return Decision(status, "hold", "paused", status.message or "paused")

    fired, gnumbers = _gradual(spec, obs)
    # Gradual triggers only count while the candidate serves traffic (not in shadow). A weight
    # held after a trigger cleared still serves, so a trigger coming back reduces it again.
    serving = (Phase.CANARY, Phase.REDUCING, Phase.HOLDING)
    streak = _streaks(status, fired) if status.phase in serving else {}
    triggered = sorted(n for n, c in streak.items() if c >= spec.triggers.consecutive)

    if status.phase in (Phase.CANARY, Phase.HOLDING) and triggered:
        target = spec.reduce_to(status.weight)
        rule = f"gradual.{triggered[0]}"
        reason = _gradual_reason(triggered, gnumbers, status.weight, target)
        if target <= 0:
            return _rollback(status.evolve(trigger_streak=streak), now, rule, reason, gnumbers)
        new = status.evolve(
            phase=Phase.REDUCING,
            weight=target,
            last_reduction_at=now,
            phase_started_at=now,
            trigger_streak=streak,
            step_index=_step_index_for(spec, target),
            message=f"reducing: {reason}",
        )
        return Decision(new, "reduce", rule, reason, gnumbers)

    if status.phase == Phase.REDUCING:
        waited = now - (status.last_reduction_at or status.phase_started_at)
        if waited < spec.reduction_wait:
            new = status.evolve(trigger_streak=streak)
            return Decision(
                new,
                "hold",
                "gradual.wait",
                f"at {status.weight:g}% for {waited:.0f}s of {spec.reduction_wait:g}s "
                "before re-evaluating",
                gnumbers,
            )
        # Re-evaluate on this evaluation's evidence only: a trigger that could not be judged
        # now (too few requests) neither reduces again nor counts as cleared.
        still = [name for name in triggered if fired.get(name)]
        if still:
            target = spec.reduce_to(status.weight)
            rule = f"gradual.{still[0]}"
            reason = _gradual_reason(still, gnumbers, status.weight, target)
            if target <= 0:
                return _rollback(status.evolve(trigger_streak=streak), now, rule, reason, gnumbers)
            new = status.evolve(
                weight=target,
                last_reduction_at=now,
                trigger_streak=streak,
                step_index=_step_index_for(spec, target),
                message=f"reducing: {reason}",
            )
            return Decision(new, "reduce", rule, reason, gnumbers)
        causes = [n for n, c in status.trigger_streak.items() if c >= spec.triggers.consecutive]
        if causes and all(n in fired for n in causes):  # judged now, and none fired
            if spec.auto_resume:
                new = status.evolve(
                    phase=Phase.CANARY,
                    phase_started_at=now,
                    step_started_at=now,
                    trigger_streak={},
                    message="trigger cleared; auto-resumed",
                )
                return Decision(
                    new,
                    "resume",
                    "gradual.cleared",
                    f"trigger cleared at {status.weight:g}%; resuming (auto_resume)",
                    gnumbers,
                )
            new = status.evolve(
                phase=Phase.HOLDING,
                phase_started_at=now,
                trigger_streak={},
                message=f"trigger cleared; holding at {status.weight:g}% until resume",
            )
            return Decision(new, "hold_reduced", "gradual.cleared", new.message, gnumbers)
        new = status.evolve(trigger_streak=streak)
        return Decision(
            new,
            "hold",
            "inconclusive",
            f"not enough evidence to re-evaluate at {status.weight:g}%",
            gnumbers,
        )

    if status.phase == Phase.HOLDING:
        new = status.evolve(trigger_streak=streak)
        return Decision(new, "hold", "holding", status.message, gnumbers)

    if status.phase == Phase.SHADOW:
        return _shadow(spec, status.evolve(trigger_streak=streak), obs)
    return _step(spec, status.evolve(trigger_streak=streak), obs)


def _gradual_reason(
    triggered: list[str], numbers: dict[str, Any], weight: float, target: float
) -> str:
    parts = []
    if "error_rate" in triggered:
        parts.append(
            f"candidate 5xx rate {_pct(numbers['error_rate'])} (lower bound "
            f"{_pct(numbers['error_rate_lower_bound'])} > {_pct(numbers['gradual_error_rate'])})"
        )
    if "extension" in triggered:
        parts.append(
            f"{numbers['extension_failures']} extension failures reported "
            f"(> {numbers['extension_threshold']})"
        )
    if "memory" in triggered:
        parts.append(
            f"candidate RSS {numbers['memory_increase'] * 100:+.0f}% vs baseline "
            f"(> {numbers['memory_increase_limit'] * 100:+.0f}%)"
        )
    if "p99" in triggered:
        parts.append(
            f"candidate P99 {numbers['p99_increase'] * 100:+.0f}% vs baseline "
            f"(> {numbers['p99_increase_limit'] * 100:+.0f}%)"
        )
    if "tracing" in triggered:
        parts.append(
            f"trace gaps: {numbers['spans_exported']} spans exported for "
            f"{numbers['spans_ended']} ended, {numbers['export_failures']} failed exports"
        )
    return f"{' and '.join(parts)}; {weight:g}% -> {target:g}%"


def _shadow(spec: RolloutSpec, status: RolloutStatus, obs: Observations) -> Decision:
    now = obs.now
    elapsed = now - status.phase_started_at
    numbers: dict[str, Any] = {
        "elapsed_s": round(elapsed, 3),
        "mirror_compared": obs.mirror_compared,
    }
    numbers["mirror_failures"] = obs.mirror_failures
    if obs.mirror_failures > 0:
        # The plan's shadow criterion is 100 % match with error answers identical: one
        # mirrored failure is a failed shadow, however few requests were compared.
        return _rollback(
            status,
            now,
            "shadow.failure",
            f"the candidate failed {obs.mirror_failures} mirrored request(s) the baseline "
            f"answered ({obs.mirror_compared} compared)",
            numbers,
        )
    if elapsed < spec.shadow_duration:
        return Decision(
            status,
            "hold",
            "shadow.wait",
            f"shadow for {elapsed:.0f}s of {spec.shadow_duration:g}s, "
            f"{obs.mirror_compared} responses compared",
            numbers,
        )
    base, cand = obs.step_baseline, obs.step_candidate
    if obs.mirror_compared < spec.min_samples or cand.requests < spec.min_samples:
        return Decision(
            status,
            "hold",
            "inconclusive",
            f"shadow needs {spec.min_samples} compared responses, has {obs.mirror_compared}",
            numbers,
        )
    ratio = (cand.p99 / base.p99) if (cand.p99 is not None and base.p99) else None
    numbers.update(p99_ratio=ratio, baseline_p99_s=base.p99, candidate_p99_s=cand.p99)
    if ratio is None:
        return Decision(status, "hold", "inconclusive", "no latency data for shadow", numbers)
    if ratio > spec.max_shadow_p99_ratio:
        return Decision(
            status,
            "hold",
            "shadow.criteria",
            f"shadow P99 ratio {ratio:.2f} > {spec.max_shadow_p99_ratio:g}",
            numbers,
        )
    first = spec.steps[0]
    new = status.evolve(
        phase=Phase.CANARY,
        step_index=0,
        weight=first,
        phase_started_at=now,
        step_started_at=now,
        message=f"canary at {first:g}%",
    )
    return Decision(
        new,
        "start_canary",
        "shadow.passed",
        f"shadow passed ({obs.mirror_compared} identical responses, P99 ratio "
        f"{ratio:.2f}); 0% -> {first:g}%",
        numbers,
    )


def _step(spec: RolloutSpec, status: RolloutStatus, obs: Observations) -> Decision:
    now = obs.now
    held = now - status.step_started_at
    weight = status.weight
    crit = spec.criteria_for(weight)
    numbers: dict[str, Any] = {"held_s": round(held, 3), "weight": weight}
    if obs.step_failures:
        numbers["failed_verification"] = list(obs.step_failures)
        return Decision(
            status,
            "hold",
            "step.verification",
            f"holding at {weight:g}%: {len(obs.step_failures)} failed verification on the "
            f"candidate: {'; '.join(obs.step_failures)}",
            numbers,
        )
    if held < spec.step_hold:
        return Decision(
            status,
            "hold",
            "step.wait",
            f"at {weight:g}% for {held:.0f}s of {spec.step_hold:g}s",
            numbers,
        )
    base, cand = obs.step_baseline, obs.step_candidate
    if base.requests < spec.min_samples or cand.requests < spec.min_samples:
        return Decision(
            status,
            "hold",
            "inconclusive",
            f"need {spec.min_samples} requests per side at {weight:g}%, have "
            f"baseline {base.requests}, candidate {cand.requests}",
            numbers,
        )
    err = cand.error_rate or 0.0
    p99_inc = _ratio(cand.p99, base.p99)
    mem_inc = _ratio(obs.candidate_rss, obs.baseline_rss)
    numbers.update(
        error_rate=err,
        p99_increase=p99_inc,
        memory_increase=mem_inc,
        max_error_rate=crit.max_error_rate,
        max_p99_increase=crit.max_p99_increase,
        max_memory_increase=crit.max_memory_increase,
    )
    failing = []
    if err >= crit.max_error_rate:
        failing.append(f"error rate {_pct(err)} >= {_pct(crit.max_error_rate)}")
    if p99_inc is None or p99_inc >= crit.max_p99_increase:
        failing.append(f"P99 {_pct(p99_inc)} vs baseline (limit {_pct(crit.max_p99_increase)})")
    if mem_inc is None or mem_inc >= crit.max_memory_increase:
        failing.append(
            f"memory {_pct(mem_inc)} vs baseline (limit {_pct(crit.max_memory_increase)})"
        )
    if failing:
        return Decision(
            status,
            "hold",
            "step.criteria",
            f"holding at {weight:g}%: " + "; ".join(failing),
            numbers,
        )
    if status.step_index >= len(spec.steps) - 1 or weight >= 100.0:
        new = status.evolve(
            phase=Phase.PROMOTED,
            weight=100.0,
            phase_started_at=now,
            message="promoted: candidate serves 100%",
        )
        return Decision(
            new,
            "promote",
            "step.passed",
            f"100% step passed (error {_pct(err)}, P99 {_pct(p99_inc)}, memory "
            f"{_pct(mem_inc)}); promoted",
            numbers,
        )
    index = status.step_index + 1
    target = spec.steps[index]
    new = status.evolve(
        step_index=index, weight=target, step_started_at=now, message=f"canary at {target:g}%"
    )
    return Decision(
        new,
        "step_up",
        "step.passed",
        f"{weight:g}% step passed (error {_pct(err)}, P99 {_pct(p99_inc)}, memory "
        f"{_pct(mem_inc)}); {weight:g}% -> {target:g}%",
        numbers,
    )
