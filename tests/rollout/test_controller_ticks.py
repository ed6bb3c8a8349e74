"""The controller tick by tick, in process: fake clock, fake seams, a real SQLite store.

The seams are what the controller talks to: the router's admin API (mirror statistics), the
metric source (each side's windows, memory and liveness: Prometheus, or the sides' own ``/stats/``
with the router's counters) and the traffic engine (weights).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.rollout.analysis import SideWindow, TraceWindow
from tandem.rollout.controller import Controller, TraceSample, trace_window
from tandem.rollout.nginx import TrafficError
from tandem.rollout.prometheus import SideReading
from tandem.rollout.router import LATENCY_BOUNDS_MS
from tandem.rollout.spec import RolloutSpec, Triggers
from tandem.rollout.status import Phase
from tandem.rollout.store import RolloutStore

SPEC = RolloutSpec(
    steps=(10.0, 50.0, 100.0),
    shadow_duration=10,
    step_hold=10,
    interval=5,
    window=30,
    min_samples=50,
    triggers=Triggers(ping_timeout=30, leak_min_span=60, leak_warmup=0),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeRouter:
    """The comparison/mirror side of the router's admin API."""

    def __init__(self) -> None:
        self.compared = 0
        self.differing = 0

    def stats(self) -> dict[str, Any]:
        empty = {
            "requests": 0,
            "errors": 0,
            "latency": {"counts": [0] * (len(LATENCY_BOUNDS_MS) + 1)},
        }
        return {
            "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
            "served": {"baseline": empty, "candidate": empty},
            "mirrored": {"candidate": empty},
            "mirror": {"compared": self.compared, "differing": self.differing, "differences": []},
        }

    def set_routing(self, weight: float, mirror_rate: float) -> dict[str, Any]:
        return {}


class FakeMetrics:
    """Both sides healthy and busy unless a test says otherwise."""

    def __init__(self) -> None:
        self.candidate_errors = 0
        self.trace: TraceWindow | None = None
        self.trace_calls: list[tuple[str, float, float, float]] = []

    def read(
        self, side: str, now: float, window_s: float, step_since: float, started: float
    ) -> SideReading:
        errors = self.candidate_errors if side == "candidate" else 0
        win = SideWindow(1000, errors, 0.010)
        return SideReading(win, win, 200 * 1024 * 1024, 0, True)

    def traces(self, side: str, now: float, window_s: float, lag_s: float) -> TraceWindow | None:
        self.trace_calls.append((side, now, window_s, lag_s))
        return self.trace


class FakeTraffic:
    def __init__(self) -> None:
        self.applied: list[tuple[float, float]] = []
        self.fail_with: str | None = None

    def set_routing(self, weight: float, mirror_rate: float) -> None:
        if self.fail_with:
            raise TrafficError(self.fail_with)
        self.applied.append((weight, mirror_rate))


class FakeSupervisor:
    def __init__(self, log: Path | None = None) -> None:
        self.log = log

    def supervises(self, name: str) -> bool:
        return False

    def log_path(self, name: str) -> Path | None:
        return self.log if name == "candidate" else None


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    clock, router, metrics, traffic = Clock(), FakeRouter(), FakeMetrics(), FakeTraffic()
    notes: list[str] = []
    store = RolloutStore(tmp_path / "state.db")
    controller = Controller(
        SPEC,
        store,
        FakeSupervisor(tmp_path / "candidate.log"),  # type: ignore[arg-type]
        router,  # type: ignore[arg-type]
        {"baseline": "http://b", "candidate": "http://c"},
        lambda text, details: notes.append(text),
        metrics=metrics,  # type: ignore[arg-type]
        traffic=traffic,
        clock=clock,
    )
    monkeypatch.setattr(controller, "_ping", lambda side: True)  # the direct probe
    return dict(
        c=controller,
        clock=clock,
        router=router,
        metrics=metrics,
        traffic=traffic,
        notes=notes,
        store=store,
        log=tmp_path / "candidate.log",
    )


def run(rig: dict[str, Any], seconds: float) -> Any:
    controller, clock = rig["c"], rig["clock"]
    status = controller.initial_status()
    controller.apply(status)
    end = clock.now + seconds
    while clock.now < end:
        clock.now += SPEC.interval
        rig["router"].compared += 100
        status = controller.tick(status)
    return status


def test_healthy_rollout_walks_every_step_and_applies_each_weight(rig: dict[str, Any]) -> None:
    status = run(rig, 120)
    assert status.phase == Phase.PROMOTED
    weights = [w for w, _ in rig["traffic"].applied]
    assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [0, 10, 50, 100]
    assert rig["store"].get_json("applied")["weight"] == 100


def test_errors_roll_back_and_the_zero_weight_is_applied(rig: dict[str, Any]) -> None:
    rig["metrics"].candidate_errors = 100  # 10 %
    status = run(rig, 30)
    assert status.phase == Phase.ROLLED_BACK and status.rollback_rule == "immediate.error_rate"
    assert rig["traffic"].applied[-1] == (0.0, 0.0)
    assert any("rolled back" in n for n in rig["notes"])


def test_a_difference_the_router_stored_before_it_died_rolls_back(rig: dict[str, Any]) -> None:
    """The router restarted and its counters read 0, but the difference it stored is seen."""
    controller, clock = rig["c"], rig["clock"]
    status = controller.initial_status()
    rig["store"].add_event(
        "difference", "router", "POST /predict/ (request r7): body differ at byte 8", {}
    )
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert (status.phase, status.rollback_rule) == (
        Phase.ROLLED_BACK,
        "immediate.prediction_difference",
    )
    assert "request r7" in rig["store"].decisions()[-1].reason


def test_a_refused_weight_is_notified_once_retried_and_not_recorded_as_applied(
    rig: dict[str, Any],
) -> None:
    controller, clock = rig["c"], rig["clock"]
    status = controller.initial_status()
    rig["traffic"].fail_with = "nginx -t (nginx -t) failed with 1: [emerg] bad"
    for _ in range(4):
        clock.now += SPEC.interval
        rig["router"].compared += 100
        status = controller.tick(status)
    assert rig["traffic"].applied == []
    assert rig["store"].get_json("applied") is None
    assert sum("could not apply" in n for n in rig["notes"]) == 1
    rig["traffic"].fail_with = None
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert rig["traffic"].applied[-1][0] == status.weight
    assert rig["store"].get_json("applied")["weight"] == status.weight


def test_extension_failures_in_the_candidates_log_count_once_each(rig: dict[str, Any]) -> None:
    controller, clock, log = rig["c"], rig["clock"], rig["log"]
    failed = "ERROR Failed to extend the app from [/code/custom_fastapi.py]: boom\n"
    log.write_text("Starting FastAPI server\n" + failed * 2)
    status = controller.initial_status()
    for _ in range(3):  # rereading the same log adds nothing
        clock.now += SPEC.interval
        status = controller.tick(status)
    assert len(rig["store"].events("extension")) == 2
    with log.open("a") as out:
        out.write(failed + failed[:20])  # one more, and half a line still being written
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert len(rig["store"].events("extension")) == 3
    with log.open("a") as out:
        out.write(failed[20:])
    clock.now += SPEC.interval
    controller.tick(status)
    assert len(rig["store"].events("extension")) == 4


# -- the trace-gap trigger's inputs ------------------------------------------------------------


def test_prometheus_source_fills_the_trace_counts_and_a_gap_reduces(rig: dict[str, Any]) -> None:
    controller, clock, metrics = rig["c"], rig["clock"], rig["metrics"]
    metrics.trace = TraceWindow(spans_ended=4000, spans_exported=4000, export_failures=0)
    status = controller.initial_status()
    while status.phase != Phase.CANARY:
        clock.now += SPEC.interval
        rig["router"].compared += 100
        status = controller.tick(status)
    # Asked for the candidate only, over the trigger window, with the spec's export lag.
    assert {c[0] for c in metrics.trace_calls} == {"candidate"}
    assert metrics.trace_calls[-1][1:] == (clock.now, SPEC.window, SPEC.triggers.trace_export_lag)
    assert rig["store"].observations()[-1]["tracing"] == {
        "spans_ended": 4000,
        "spans_exported": 4000,
        "export_failures": 0,
    }
    metrics.trace = TraceWindow(spans_ended=4000, spans_exported=3100, export_failures=0)
    for _ in range(2):  # the streak of consecutive evaluations the gradual rules need
        clock.now += SPEC.interval
        status = controller.tick(status)
    assert status.phase == Phase.ROLLED_BACK and status.rollback_rule == "gradual.tracing"
    last = rig["store"].decisions()[-1]
    assert "3100 spans exported for 4000 ended" in last.reason


def test_prometheus_source_without_trace_series_never_judges_tracing(rig: dict[str, Any]) -> None:
    status = run(rig, 120)  # metrics.trace stays None: the candidate does not trace
    assert status.phase == Phase.PROMOTED
    assert all(o["tracing"] is None for o in rig["store"].observations())
    assert not [d for d in rig["store"].decisions() if d.rule == "gradual.tracing"]


class SideStats:
    """Both sides' ``/stats/`` and ``/ping`` over httpx's mock transport (the built-in source).

    ``otel`` is the candidate's ``otel_info``: cumulative counts a test advances, None while it
    does not trace.
    """

    def __init__(self) -> None:
        self.otel: dict[str, int] | None = None
        self.stats_reads: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(200, text="OK")
        assert request.url.path == "/stats/"
        self.stats_reads.append(request.url.host)
        doc: dict[str, Any] = {
            "mem_info": {"drum_rss": 200.0},
            "worker_info": {"oom_kills": 0, "workers": [{"pid": 7, "rss": 200.0}]},
        }
        if request.url.host == "c":
            doc["otel_info"] = None if self.otel is None else dict(self.otel)
        return httpx.Response(200, json=doc)


BUILTIN_SPEC = SPEC.with_overrides(
    triggers=Triggers(ping_timeout=30, leak_min_span=60, leak_warmup=0, trace_export_lag=10)
)


@pytest.fixture
def builtin(tmp_path: Path) -> dict[str, Any]:
    """A controller on the built-in metric source: router counters plus each side's /stats/."""
    clock, stats = Clock(), SideStats()
    controller = Controller(
        BUILTIN_SPEC,
        RolloutStore(tmp_path / "state.db"),
        FakeSupervisor(),  # type: ignore[arg-type]
        FakeRouter(),  # type: ignore[arg-type]
        {"baseline": "http://b", "candidate": "http://c"},
        lambda text, details: None,
        traffic=FakeTraffic(),
        clock=clock,
    )
    controller._http = httpx.Client(transport=httpx.MockTransport(stats))
    return dict(c=controller, clock=clock, stats=stats)


def _observe(builtin: dict[str, Any], status: Any, **otel: int) -> Any:
    builtin["clock"].now += BUILTIN_SPEC.interval
    stats = builtin["stats"]
    if otel:
        stats.otel = {**(stats.otel or {}), **otel}
    obs = builtin["c"].observe(status)
    assert obs is not None
    return obs


def test_builtin_source_fills_the_trace_counts_from_the_candidates_stats(
    builtin: dict[str, Any],
) -> None:
    controller, stats = builtin["c"], builtin["stats"]
    status = controller.initial_status()
    obs = _observe(builtin, status)  # tracing off: no otel_info
    assert (obs.candidate_spans_ended, obs.candidate_spans_exported) == (None, None)
    assert obs.candidate_span_export_failures is None
    # One /stats/ read per side and evaluation serves RSS, OOM kills and the trace counts.
    assert sorted(stats.stats_reads) == ["b", "c"]
    # Healthy: 100 spans end per 5-second evaluation; each is exported one evaluation later.
    seen = []
    for k in range(1, 12):
        obs = _observe(
            builtin, status, spans_ended=100 * k, spans_exported=100 * (k - 1), export_failures=0
        )
        seen.append((obs.candidate_spans_ended, obs.candidate_spans_exported))
    # Not judged until the history spans the lag; then the window (30 s: seven samples) counts
    # the spans that ended until 10 s ago against those exported until now.
    assert seen[:3] == [(None, None)] * 3
    assert seen[3] == (100, 300)
    assert seen[-1] == (400, 600)
    assert all(ended <= exported for ended, exported in seen[3:])
    assert obs.candidate_span_export_failures == 0
    # The collector goes away: nothing more is exported and every batch fails.
    for n in range(1, 4):
        obs = _observe(builtin, status, spans_ended=100 * (11 + n), export_failures=n)
    assert (obs.candidate_spans_ended, obs.candidate_spans_exported) == (400, 300)
    assert obs.candidate_span_export_failures == 3


def test_builtin_source_starts_over_when_the_candidate_restarts(builtin: dict[str, Any]) -> None:
    controller = builtin["c"]
    status = controller.initial_status()
    for k in range(1, 6):
        obs = _observe(
            builtin, status, spans_ended=100 * k, spans_exported=100 * k, export_failures=0
        )
    assert obs.candidate_spans_ended == 200
    # A restarted candidate counts from zero again: no negative windows, and nothing judged
    # until the new history spans the lag.
    obs = _observe(builtin, status, spans_ended=0, spans_exported=0, export_failures=0)
    assert obs.candidate_spans_ended is None
    for k in range(1, 4):
        obs = _observe(builtin, status, spans_ended=10 * k, spans_exported=10 * k)
    assert (obs.candidate_spans_ended, obs.candidate_spans_exported) == (10, 30)
    # Unreadable or no longer tracing: not judged (the rule holds, it does not clear).
    builtin["stats"].otel = None
    assert _observe(builtin, status).candidate_spans_ended is None


def _batched(ended: Any, delay: float, at: float) -> int:
    """Spans exported by ``at`` by a batch processor sending every ``delay`` seconds (each
    export taking a second) everything that had ended when it started."""
    last_batch = delay * math.floor((at - 1.0) / delay)
    return int(ended(last_batch)) if last_batch > 0 else 0


def test_the_export_lag_keeps_a_healthy_candidate_clear_when_its_traffic_grows() -> None:
    """Why the ended count stops ``trace_export_lag`` before now (see decide._gradual)."""

    def ended(t: float) -> float:  # 4 spans per request; 10 requests/s, 50/s from t=60 on
        return 40 * min(t, 60) + 200 * max(0.0, t - 60)

    window, lag, delay = 30.0, 8.0, 5.0  # the batch delay plus the export stays under the lag
    naive_gaps, gaps = [], []
    samples: list[TraceSample] = []
    for t in range(1, 121):
        samples.append(TraceSample(float(t), int(ended(t)), _batched(ended, delay, t), 0))
        base = next(s for s in samples if s.at >= t - window)
        # The same window for both counts: spans still queued at its end look lost.
        if samples[-1].spans_exported - base.spans_exported < samples[-1].spans_ended - (
            base.spans_ended
        ):
            naive_gaps.append(t)
        counts = trace_window(samples, float(t), window, lag)
        if counts is not None and counts.spans_exported < counts.spans_ended:
            gaps.append(t)
    assert len(naive_gaps) > 30  # the whole window after the step up, at least
    assert gaps == []

    # The price: the lag's worth of traffic is the margin. On steady traffic, a candidate that
    # silently loses (no failed export: its queue overflows) well over lag / window of its
    # spans shows the gap in every full window; a few percent go unseen.
    def steady(t: float) -> float:
        return 40 * t

    def gaps_at(kept: float) -> list[bool]:
        lost = [
            TraceSample(float(t), int(steady(t)), int(_batched(steady, delay, t) * kept), 0)
            for t in range(1, 121)
        ]
        counts = [trace_window(lost[:t], float(t), window, lag) for t in range(31, 121)]
        return [c is not None and c.spans_exported < c.spans_ended for c in counts]

    assert all(gaps_at(kept=1 - 2 * lag / window))
    assert not any(gaps_at(kept=0.95))


# -- commands and the comparison service survive an unreadable or restarted router ---------------


def test_a_command_is_kept_while_the_router_cannot_be_read(rig: dict[str, Any]) -> None:
    """An evaluation that cannot observe must not consume the operator's command."""
    controller, clock, router = rig["c"], rig["clock"], rig["router"]
    status = controller.initial_status()
    rig["store"].add_command("pause")
    readable = router.stats

    def unreadable() -> dict[str, Any]:
        raise httpx.ConnectError("router restarting")

    router.stats = unreadable
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert status.phase == Phase.SHADOW
    assert [c for _, c in rig["store"].pending_commands()] == ["pause"]
    router.stats = readable
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert status.phase == Phase.PAUSED
    assert rig["store"].pending_commands() == []


def test_an_abort_acts_while_the_router_cannot_be_read(rig: dict[str, Any]) -> None:
    """The operator's abort needs no observation: weight 0 is applied at once."""
    controller, clock, router = rig["c"], rig["clock"], rig["router"]
    status = controller.initial_status()

    def unreadable() -> dict[str, Any]:
        raise httpx.ConnectError("router restarting")

    router.stats = unreadable
    rig["store"].add_command("pause")  # queued first, it waits; the abort does not
    rig["store"].add_command("abort")
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert (status.phase, status.weight) == (Phase.ABORTED, 0.0)
    assert [c for _, c in rig["store"].pending_commands()] == ["pause"]
    assert rig["store"].decisions()[-1].rule == "operator.abort"
    assert rig["traffic"].applied[-1][0] == 0.0


class RoutingRouter(FakeRouter):
    """A router whose routing calls are recorded (the comparison service under nginx)."""

    def __init__(self) -> None:
        super().__init__()
        self.routings: list[tuple[float, float]] = []

    def set_routing(self, weight: float, mirror_rate: float) -> dict[str, Any]:
        self.routings.append((weight, mirror_rate))
        return {}


class RestartingSupervisor(FakeSupervisor):
    """Supervises the router, and has just restarted it once."""

    def __init__(self) -> None:
        super().__init__()
        self.restarts = 0

    def supervises(self, name: str) -> bool:
        return name == "router"

    def ensure(self, name: str) -> bool:
        if self.restarts:
            self.restarts -= 1
            return True
        return False

    def wait_healthy(self, name: str) -> None:
        return None


def test_a_restarted_comparison_service_is_set_back_to_compare_everything(
    tmp_path: Path,
) -> None:
    """With nginx splitting, the router is the comparison service (weight 0, mirror rate 1). A
    restarted router takes its routing from the store (the rollout's weight and canary mirror
    rate), so the controller must set it back, or it serves and mirrors like a canary router."""
    clock, router, supervisor = Clock(), RoutingRouter(), RestartingSupervisor()
    controller = Controller(
        SPEC,
        RolloutStore(tmp_path / "state.db"),
        supervisor,  # type: ignore[arg-type]
        router,  # type: ignore[arg-type]
        {"baseline": "http://b", "candidate": "http://c"},
        lambda text, details: None,
        metrics=FakeMetrics(),  # type: ignore[arg-type]
        traffic=FakeTraffic(),
        clock=clock,
    )
    controller._ping = lambda side: True  # type: ignore[method-assign]
    status = controller.initial_status()
    for _ in range(3):
        clock.now += SPEC.interval
        status = controller.tick(status)
    router.routings.clear()
    supervisor.restarts = 1  # the router died and the supervisor started it again
    clock.now += SPEC.interval
    status = controller.tick(status)
    assert router.routings == [(0.0, 1.0)]
    clock.now += SPEC.interval
    controller.tick(status)
    assert router.routings == [(0.0, 1.0)]  # once per restart, not every evaluation
