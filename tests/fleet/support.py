"""A fake fleet for in-process tests: deployments that restart onto the side their stored
percentage gives them, a metric source a test steers, and a fake clock."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.fleet.controller import FleetController
from tandem.fleet.inventory import Member
from tandem.fleet.places import RestartError
from tandem.fleet.plan import side_for
from tandem.fleet.walker import MemberState, Probe, Walker
from tandem.rollout.analysis import SideWindow, TraceWindow
from tandem.rollout.prometheus import SideReading
from tandem.rollout.spec import RolloutSpec, Triggers
from tandem.rollout.store import RolloutStore

#: Eight deployment ids and their buckets: at 5 % only fleet-17 is on FastAPI, at 10 % fleet-28
#: too, at 25 % fleet-35 and fleet-10, at 50 % fleet-03 and fleet-09, and at 75 % all eight.
IDS = {
    "fleet-17": 1.25,
    "fleet-28": 6.23,
    "fleet-35": 14.07,
    "fleet-10": 20.66,
    "fleet-03": 29.29,
    "fleet-09": 42.68,
    "fleet-08": 52.94,
    "fleet-02": 74.57,
}

SPEC = RolloutSpec(
    step_hold=20,
    interval=5,
    window=30,
    min_samples=50,
    reduction_wait=60,
    triggers=Triggers(ping_timeout=30, leak_min_span=60, leak_warmup=0),
)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeDeployment:
    """One deployment: its stored percentage, the side it runs, what fails on which side."""

    id: str
    percent: str | None = "0"
    side: str = "flask"
    up: bool = True
    fail_on: set[str] = field(default_factory=set)
    """Sides on which verification fails."""
    restart_fails: bool = False
    restarts: int = 0
    writes: list[str] = field(default_factory=list)


class World:
    """Every fake deployment, and how many were unavailable at once."""

    def __init__(self, ids: dict[str, float] | None = None) -> None:
        self.deployments = {i: FakeDeployment(i) for i in ids or IDS}
        self.members = [Member(i, f"http://{i}.test:8080") for i in self.deployments]
        self.down: set[str] = set()
        self.max_down = 0
        self.lock = threading.Lock()
        self.on_restart: list[Any] = []
        self.verified: list[tuple[str, str]] = []

    # -- the place seam --------------------------------------------------------------------

    def place(self, member_id: str) -> FakePlace:
        return FakePlace(self, self.deployments[member_id])

    # -- probe, readiness and verification ------------------------------------------------------

    def probe(self, member: Member) -> Probe:
        dep = self.deployments[member.id]
        return Probe(dep.up, dep.side if dep.up else None)

    def wait_ready(self, member: Member, side: str) -> tuple[bool, str]:
        time.sleep(0.01)  # batch members overlap while they are unavailable
        with self.lock:
            self.down.discard(member.id)
        dep = self.deployments[member.id]
        return dep.side == side, f"/info/ reports {dep.side}"

    def verify(self, member: Member, side: str) -> dict[str, Any]:
        dep = self.deployments[member.id]
        with self.lock:
            self.verified.append((member.id, side))
        if side in dep.fail_on:
            return {"passed": False, "summary": f"failed predict_single: 500 on {side}"}
        return {"passed": dep.side == side, "summary": "all checks passed"}

    def sides(self) -> dict[str, str]:
        return {i: d.side for i, d in self.deployments.items()}

    def on_fastapi(self) -> set[str]:
        return {i for i, d in self.deployments.items() if d.side == "fastapi"}


class FakePlace:
    """An env file and a restart command, in memory."""

    def __init__(self, world: World, dep: FakeDeployment) -> None:
        self.world = world
        self.dep = dep

    def read(self) -> str | None:
        return self.dep.percent

    def write(self, percent: str) -> dict[str, Any] | None:
        if self.dep.percent == percent:
            return None
        self.dep.percent = percent
        self.dep.writes.append(percent)
        return {"percent": percent}

    def pinned(self) -> str | None:
        return None

    def deployment_id(self) -> str | None:
        return self.dep.id

    def restart(self, side: str | None = None) -> None:
        with self.world.lock:
            self.world.down.add(self.dep.id)
            self.world.max_down = max(self.world.max_down, len(self.world.down))
        for hook in self.world.on_restart:
            hook(self.dep)
        self.dep.restarts += 1
        if self.dep.restart_fails:
            raise RestartError("restart.sh exited with status 1")
        self.dep.side = side_for(self.dep.id, float(self.dep.percent or 0))


class FakeMetrics:
    """Both sides healthy and busy unless the test says otherwise; no Flask series at all while
    no deployment of the world is on Flask (as Prometheus at 100 %)."""

    def __init__(self, world: World | None = None) -> None:
        self.world = world
        self.flask_leftovers = 3
        """Reads at 100 % that still show Flask series (Prometheus' discovery lag)."""
        self.candidate_errors = 0
        self.candidate_p99 = 0.010
        self.candidate_up: bool | None = True

    def read(
        self, side: str, now: float, window_s: float, step_since: float, started_at: float
    ) -> SideReading:
        if side == "candidate":
            win = SideWindow(1000, self.candidate_errors, self.candidate_p99)
            return SideReading(win, win, 200 * 1024 * 1024, 0, self.candidate_up)
        if self.world is not None and self.world.on_fastapi() == set(self.world.deployments):
            if self.flask_leftovers > 0:  # relabelling lags: moved deployments still "flask"
                self.flask_leftovers -= 1
                leftover = SideWindow(60, 0, None)
                return SideReading(leftover, leftover, 150 * 1024 * 1024, 0, True)
            return SideReading(SideWindow(), SideWindow(), None, 0, None)
        win = SideWindow(1000, 0, 0.010)
        return SideReading(win, win, 200 * 1024 * 1024, 0, True)

    def traces(self, side: str, now: float, window_s: float, lag_s: float) -> TraceWindow | None:
        return None

    def requests_by_deployment(self, now: float, window_s: float) -> dict[str, int] | None:
        return {"fleet-17": 300, "fleet-28": 100}


@dataclass
class Rig:
    """A fleet controller over a fake world."""

    controller: FleetController
    world: World
    metrics: FakeMetrics
    clock: Clock
    store: RolloutStore
    notes: list[str]
    published: list[dict[str, str | None]]

    def tick(self, n: int = 1) -> Any:
        status = self.store.load_status()
        for _ in range(n):
            self.clock.now += self.controller.spec.interval
            status = self.controller.tick(status)
        return status

    def until(self, predicate: Any, limit: int = 200) -> Any:
        status = self.store.load_status()
        for _ in range(limit):
            if predicate(status):
                return status
            self.clock.now += self.controller.spec.interval
            status = self.controller.tick(status)
        raise AssertionError(f"not reached in {limit} ticks: {status}")

    def decisions(self, action: str | None = None) -> list[Any]:
        rows = self.store.decisions(limit=100_000)
        return [r for r in rows if action is None or r.action == action]


def make_rig(
    tmp_path: Path,
    spec: RolloutSpec = SPEC,
    max_unavailable: int = 2,
    world: World | None = None,
    store: RolloutStore | None = None,
) -> Rig:
    world = world or World()
    clock = Clock()
    metrics = FakeMetrics(world)
    notes: list[str] = []
    published: list[dict[str, str | None]] = []
    # A resumed controller starts from the deployments' recorded states, as `fleet start` does.
    states = (
        {
            i: MemberState.from_dict(doc)
            for i, doc in (store.get_json("fleet_members") or {}).items()
        }
        if store is not None
        else {}
    )
    store = store or RolloutStore(tmp_path / "fleet.db")
    walker = Walker(
        world.members,
        {m.id: world.place(m.id) for m in world.members},
        states,
        world.probe,
        world.wait_ready,
        world.verify,
        max_unavailable,
        clock=clock,
    )

    def publish() -> None:
        published.append(
            {i: None if s.health == "restarting" else s.side for i, s in walker.states.items()}
        )

    walker.on_change = publish
    store.set_json("fleet", {"members": [m.record() for m in world.members]})
    controller = FleetController(
        spec, store, walker, metrics, lambda text, details: notes.append(text), clock=clock
    )
    return Rig(controller, world, metrics, clock, store, notes, published)
