"""The fleet controller: ``tandem rollout``'s decisions, applied to ``DRUM_FASTAPI_CANARY_PERCENT``
across many deployments.

Each evaluation (every ``spec.interval`` seconds), as the rollout controller does:

1. take at most one operator command from the store;
2. observe: every deployment's ``/ping`` and ``/info/`` (side and health), and the fleet's
   traffic by ``server_type`` from Prometheus (the same PromQL, with ``--prometheus-selector``
   for the fleet): each side's windows, RSS per worker, OOM kills, ``up`` and span counts, and
   each deployment's share of the requests;
3. :func:`~tandem.rollout.decide.decide` with the same spec: steps, hold times, evidence rule,
   triggers, reduction table (the percentage is the decision's ``weight``);
4. record the decision (same store, same decision log) *before* acting;
5. when the percentage changed, walk the fleet to it (:class:`~tandem.fleet.walker.Walker`):
   every deployment's parameter store gets the percentage, only those whose side changes restart,
   at most ``max_unavailable`` at a time, each verified on its new side. A step's hold time starts
   once its deployments are moved; a deployment that failed verification on FastAPI counts
   against the step (it holds until an operator resumes, which retries it);
6. after a rollback or an abort (0 %: every FastAPI deployment restarted onto Flask), verify every
   deployment on Flask: the fleet-wide Level 1.

The fleet starts at the first step that moves anyone (see :func:`~tandem.fleet.plan.plan_steps`);
there is no shadow phase, which needs a router to mirror through. The command ends when the fleet
is promoted, rolled back or aborted; started again on the same state it resumes, and first puts
every deployment where the recorded percentage says (a walk interrupted by a crash is finished).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, Protocol

from tandem.fleet.plan import BASELINE, CANDIDATE, StepPlan, plan_steps
from tandem.fleet.walker import MemberState, MoveReport, Walker
from tandem.rollout.analysis import SideWindow, TraceWindow
from tandem.rollout.controller import Notifier, announce, record_decision, security_alerts
from tandem.rollout.decide import Observations, decide
from tandem.rollout.paging import PagerDuty, dedup_key
from tandem.rollout.prometheus import SideReading
from tandem.rollout.spec import RolloutSpec
from tandem.rollout.status import Phase, RolloutStatus
from tandem.rollout.store import RolloutStore

logger = logging.getLogger("tandem.fleet")

NAME = "Tandem fleet"
SIDES = {"baseline": BASELINE, "candidate": CANDIDATE}


class FleetMetrics(Protocol):
    """The metric seam: Prometheus by ``server_type`` (see :mod:`tandem.fleet.metrics`)."""

    def read(
        self, side: str, now: float, window_s: float, step_since: float, started_at: float
    ) -> SideReading:
        """One side's windows, RSS, OOM kills and liveness."""

    def traces(self, side: str, now: float, window_s: float, lag_s: float) -> TraceWindow | None:
        """One side's span counts for the trace-gap rule."""

    def requests_by_deployment(self, now: float, window_s: float) -> dict[str, int] | None:
        """Scoring requests per ``deployment_id`` in the window (None: not known)."""


class FleetController:
    """Runs a fleet rollout until it is promoted, rolled back or aborted (or stopped)."""

    def __init__(
        self,
        spec: RolloutSpec,
        store: RolloutStore,
        walker: Walker,
        metrics: FleetMetrics,
        notify: Notifier,
        pager: PagerDuty | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.user_spec = spec
        self.plan: StepPlan = plan_steps(spec.steps, [m.id for m in walker.members])
        self.spec = replace(spec, steps=self.plan.steps)
        """What :func:`decide` is given: the user's spec with the steps this fleet walks."""
        self.store = store
        self.walker = walker
        # Every change a walk makes (a restart begun, a deployment verified or put back and
        # held) is saved as it happens, from the walk's threads, on a connection of their own:
        # `tandem fleet status` shows a long walk live, and a crash mid-walk keeps the marks.
        self._live_store = RolloutStore(store.path, any_thread=True)
        publish = walker.on_change

        def on_change() -> None:
            self._save_members(self._live_store)
            publish()

        walker.on_change = on_change
        self.metrics = metrics
        self.notify = notify
        self.pager = pager
        self.clock = clock
        self.last_rule: str | None = None
        self.last_ping: float | None = clock()
        """The fleet starts watching now: a FastAPI deployment already down gets the timeout."""
        self.rss_history: deque[tuple[float, float]] = deque()
        self.reference: dict[str, Any] | None = store.get_json("fleet_reference")
        """The last step's Flask side (``window`` and ``rss``) with enough evidence: what the
        100 % step is judged against, when no deployment is left on Flask."""
        step = store.get_json("fleet_step") or {}
        self.step_percent: float | None = step.get("percent")
        self.step_failures: list[str] = list(step.get("failures") or [])
        applied = store.get_json("applied") or {}
        self.applied: float | None = applied.get("percent")
        self._stop = threading.Event()

    # -- state -------------------------------------------------------------------------------

    @property
    def states(self) -> dict[str, MemberState]:
        """Every deployment's state, by id."""
        return self.walker.states

    def save_members(self) -> None:
        """Keep every deployment's state in the store (``fleet_members``)."""
        self._save_members(self.store)

    def _save_members(self, store: RolloutStore) -> None:
        store.set_json("fleet_members", {i: s.to_dict() for i, s in self.states.items()})

    def _save_step(self) -> None:
        self.store.set_json(
            "fleet_step", {"percent": self.step_percent, "failures": self.step_failures}
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """End the loop after the current evaluation."""
        self._stop.set()

    def close(self) -> None:
        """Close the walk's own store connection (after :meth:`run`)."""
        self._live_store.close()

    def initial_status(self) -> RolloutStatus:
        """The saved status (every deployment put where it says), or a new rollout at the first
        step that moves anyone."""
        self.walker.read_percentages()
        saved = self.store.load_status()
        if saved is not None:
            logger.info("resuming fleet rollout: %s at %g%%", saved.phase.value, saved.weight)
            last = self.store.decisions(limit=100000)
            self.last_rule = last[-1].rule if last else None
            status = self.walk(saved, self.applied)
            if (
                status.phase in (Phase.ROLLED_BACK, Phase.ABORTED)
                and last
                and last[-1].action != "verify"
            ):
                self.verify_fleet(status)
            return status
        now = self.clock()
        first = self.spec.steps[0]
        status = RolloutStatus(
            phase=Phase.CANARY,
            weight=first,
            step_index=0,
            started_at=now,
            phase_started_at=now,
            step_started_at=now,
            spec_digest=self.user_spec.digest(),
            message=f"canary at {first:g}%",
        )
        skipped = (
            f"; spec steps {', '.join(f'{s:g}%' for s in self.plan.skipped)} move no deployment "
            "of this fleet and are skipped"
            if self.plan.skipped
            else ""
        )
        self.store.save(
            status,
            action="start",
            rule="operator.start",
            reason=f"fleet rollout of {len(self.walker.members)} deployments started at "
            f"{first:g}% (spec {status.spec_digest}); steps "
            f"{' -> '.join(f'{s:g}%' for s in self.spec.steps)}{skipped}",
            numbers={
                "spec": self.user_spec.to_dict(),
                "steps": list(self.plan.steps),
                "skipped": list(self.plan.skipped),
                "moves": {f"{p:g}": list(ids) for p, ids in self.plan.moves},
            },
            at=now,
        )
        self.notify(f"{NAME} started at {first:g}%", {"phase": "canary", "weight": first})
        return self.walk(status, 0.0)

    def run(self) -> RolloutStatus:
        """Evaluate every interval until the fleet reaches a terminal phase or is stopped."""
        status = self.initial_status()
        while not self._stop.is_set() and not status.phase.is_terminal:
            started = self.clock()
            try:
                status = self.tick(status)
            except Exception:
                logger.exception("evaluation failed; retrying next interval")
            self._stop.wait(max(0.0, self.spec.interval - (self.clock() - started)))
        return status

    def left_behind(self, status: RolloutStatus) -> list[str]:
        """Deployments held at ``status.weight``: failed on FastAPI and put back on Flask, or
        not attempted after a failed batch. A fleet promoted with any of them did not all
        move."""
        return sorted(i for i, s in self.states.items() if s.held_at == status.weight)

    # -- one evaluation ----------------------------------------------------------------------

    def tick(self, status: RolloutStatus) -> RolloutStatus:
        """Observe, decide, record, walk."""
        command = None
        pending = self.store.pending_commands()
        if pending:
            seq, command = pending[0]
            self.store.mark_handled(seq)
        held = sorted(i for i, s in self.states.items() if s.held_at == status.weight)
        if command == "resume" and status.phase == Phase.CANARY and (held or self.step_failures):
            # Resume at a step held by failed verifications: try those deployments again.
            self.store.save(
                status,
                action="retry",
                rule="operator.retry",
                from_weight=status.weight,
                reason=f"retrying {', '.join(held) or 'the failed deployments'} at "
                f"{status.weight:g}%",
                at=self.clock(),
            )
            self.last_rule = "operator.retry"
            self.step_failures = []
            self._save_step()
            return self.walk(status, self.applied, retry=True)
        obs = self.observe(status)
        decision = decide(self.spec, status, obs, command)
        counts = {side: 0 for side in (CANDIDATE, BASELINE)}
        for state in self.states.values():
            if state.side in counts:
                counts[state.side] += 1
        self.last_rule = record_decision(
            self.store, status, decision, obs, self.last_rule, {"fleet": counts}, "fleet: "
        )
        new = decision.status
        if new.weight != self.applied:
            new = self.walk(new, status.weight)
        else:
            self.save_members()  # health, sides and shares for status and the dashboard
        if announce(self.notify, self.pager, status, decision, NAME) and new.phase in (
            Phase.ROLLED_BACK,
            Phase.ABORTED,
        ):
            self.verify_fleet(new)
        return new

    def observe(self, status: RolloutStatus) -> Observations:
        """Every deployment's side and health, and the fleet's traffic by side."""
        now = self.clock()
        self.walker.observe()
        spec = self.spec
        readings = {
            side: self.metrics.read(
                side, now, spec.window, status.step_started_at, status.started_at
            )
            for side in SIDES
        }
        pinged = all(self.states[m.id].health == "up" for m in self.walker.candidates())
        # up=0 is a dead target; no series (no FastAPI deployment yet) is no data: pings decide.
        if readings["candidate"].up is not False and pinged:
            self.last_ping = now
        candidate_rss = readings["candidate"].rss
        if candidate_rss is not None:
            self.rss_history.append((now, candidate_rss))
            horizon = max(2 * spec.triggers.leak_min_span, 3600.0)
            while self.rss_history and self.rss_history[0][0] < now - horizon:
                self.rss_history.popleft()
        baseline = readings["baseline"].window
        step_baseline = readings["baseline"].step
        baseline_rss = readings["baseline"].rss
        if status.weight >= 100.0:
            # At 100 % no deployment is left on Flask (what Prometheus still files under flask
            # is its last scrapes, or a moved deployment before discovery relabels it): the step
            # and the triggers compare with the last step's Flask side, its traffic and its
            # memory (kept in the state, so a resumed fleet has it too).
            if self.reference:
                step_baseline = baseline = SideWindow(**self.reference["window"])
                baseline_rss = self.reference["rss"]
        elif (
            step_baseline.requests >= spec.min_samples
            and step_baseline.p99 is not None
            and baseline_rss is not None
        ):
            reference = {"window": asdict(step_baseline), "rss": baseline_rss}
            if reference != self.reference:
                self.reference = reference
                self.store.set_json("fleet_reference", reference)
        self._shares(now)
        traces = self.metrics.traces("candidate", now, spec.window, spec.triggers.trace_export_lag)
        alerts = security_alerts(self.store, spec, status.started_at)
        failures = self.step_failures if self.step_percent == status.weight else []
        return Observations(
            now=now,
            baseline=baseline,
            candidate=readings["candidate"].window,
            step_baseline=step_baseline,
            step_candidate=readings["candidate"].step,
            baseline_rss=baseline_rss,
            candidate_rss=candidate_rss,
            candidate_rss_history=tuple(self.rss_history),
            candidate_oom_kills=readings["candidate"].oom_kills,
            candidate_last_ping=self.last_ping,
            security_alerts=len(alerts),
            first_security_alert=alerts[0] if alerts else "",
            extension_failures=len(self.store.events("extension", since=now - spec.window)),
            candidate_spans_ended=None if traces is None else traces.spans_ended,
            candidate_spans_exported=None if traces is None else traces.spans_exported,
            candidate_span_export_failures=None if traces is None else traces.export_failures,
            step_failures=tuple(failures),
        )

    def _shares(self, now: float) -> None:
        counts = self.metrics.requests_by_deployment(now, self.spec.window)
        total = sum(counts.values()) if counts else 0
        for member_id, state in self.states.items():
            if counts is None:
                state.requests = state.share = None
                continue
            state.requests = counts.get(member_id, 0)
            state.share = state.requests / total if total else None

    # -- acting ------------------------------------------------------------------------------

    def walk(
        self, status: RolloutStatus, previous: float | None, retry: bool = False
    ) -> RolloutStatus:
        """Put the fleet at ``status.weight``; record what moved. A canary step's hold time starts
        once its deployments are moved and verified."""
        report = self.walker.move(status.weight, previous, retry)
        now = self.clock()
        if self.step_percent != status.weight:
            self.step_percent, self.step_failures = status.weight, []
        put_back = set(report.put_back)
        self.step_failures += [line for line in report.failed if line.split(":", 1)[0] in put_back]
        if report.deferred:
            self.step_failures.append(
                f"{len(report.deferred)} more not attempted after that failure: "
                + ", ".join(report.deferred)
            )
        self._save_step()
        self.applied = status.weight
        self.store.set_json("applied", {"percent": status.weight, "at": now})
        self.save_members()
        if report.changed or report.deferred:
            if status.phase == Phase.CANARY and (report.moved or report.put_back):
                status = status.evolve(step_started_at=now)
            elif status.phase == Phase.REDUCING and (report.moved or report.failed):
                # The reduction table's wait is at the reduced percentage: it starts once the
                # deployments moving back are moved, however long their restarts took.
                status = status.evolve(last_reduction_at=now)
            self.store.save(
                status,
                action="apply",
                rule="fleet.apply",
                from_weight=status.weight,
                reason=_describe(report),
                numbers=report.to_dict(),
                at=now,
            )
            self.last_rule = "fleet.apply"
            logger.info("fleet: %s", _describe(report))
        if report.failed:
            self.notify(
                f":x: {NAME}: {len(report.failed)} deployment(s) failed at {status.weight:g}%: "
                + "; ".join(report.failed)[:1500],
                {"weight": status.weight, "failed": report.failed},
            )
        return status

    def verify_fleet(self, status: RolloutStatus) -> list[str]:
        """After a rollback or an abort: every deployment verified on Flask, recorded."""
        failures = self.walker.verify_all(BASELINE, since=status.phase_started_at)
        self.save_members()
        total = len(self.walker.members)
        reason = (
            f"all {total} deployments verified on {BASELINE}"
            if not failures
            else f"{len(failures)} of {total} deployments FAILED verification on {BASELINE}: "
            + "; ".join(failures)
        )
        self.store.save(
            status,
            action="verify",
            rule="post_rollback.verify",
            from_weight=status.weight,
            reason=reason,
            numbers={"failed": failures, "deployments": total},
            at=self.clock(),
        )
        self.last_rule = "post_rollback.verify"
        if failures:
            self.notify(f":x: {NAME} post-rollback verification: {reason}", {"failed": failures})
        elif self.pager is not None and status.phase == Phase.ROLLED_BACK:
            self.pager.resolve(dedup_key(status.started_at))
        return failures


def _describe(report: MoveReport) -> str:
    parts = []
    if report.moved:
        parts.append(
            f"restarted {len(report.moved)} onto their new side and verified "
            f"({', '.join(report.moved)})"
        )
    if report.written:
        parts.append(f"wrote the percentage to {len(report.written)} without a restart")
    if report.failed:
        parts.append(f"{len(report.failed)} failed: " + "; ".join(report.failed))
    if report.deferred:
        parts.append(f"{len(report.deferred)} not attempted: {', '.join(report.deferred)}")
    if report.held:
        parts.append(f"{len(report.held)} held back: {', '.join(report.held)}")
    batches = f" in {len(report.batches)} batch(es)" if report.batches else ""
    return (
        f"{report.percent:g}%: "
        + "; ".join(parts or ["nothing to change"])
        + (f"{batches}, {report.seconds:.1f}s")
    )


def status_rows(store: RolloutStore) -> list[dict[str, Any]]:
    """Every deployment's row for ``tandem fleet status`` and the dashboard."""
    from tandem.fleet.plan import side_for

    status = store.load_status()
    members = store.get_json("fleet_members") or {}
    config = store.get_json("fleet") or {}
    rows = []
    for record in config.get("members", []):
        state = members.get(record["id"], {})
        want = side_for(record["id"], status.weight) if status is not None else None
        rows.append({**record, **state, "desired": want})
    return rows
