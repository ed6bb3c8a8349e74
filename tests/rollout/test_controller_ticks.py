"""The controller tick by tick, in process: fake clock, fake seams, a real SQLite store.

The seams are what the controller talks to: the router's admin API (mirror statistics), the
metric source (each side's windows, memory and liveness) and the traffic engine (weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tandem.rollout.analysis import SideWindow
from tandem.rollout.controller import Controller
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

    def read(
        self, side: str, now: float, window_s: float, step_since: float, started: float
    ) -> SideReading:
        errors = self.candidate_errors if side == "candidate" else 0
        win = SideWindow(1000, errors, 0.010)
        return SideReading(win, win, 200 * 1024 * 1024, 0, True)


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
