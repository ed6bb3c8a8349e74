"""``tandem fleet start`` on real deployments: eight ``tandem server`` processes on loopback, each
with its own code dir, deployment id, env file and restart command (pid-file kill, then start),
scraped by a real Prometheus through the file_sd JSON the fleet command keeps current.

1. A healthy fleet is walked to 100 %: each deployment restarts once, when its side changes.
2. One model misbehaves only on FastAPI (5 % errors once the test raises its flag, at 50 %): the
   fleet is walked back to 0 % and every deployment ends verified on Flask.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tandem.cli import main
from tandem.fleet.plan import bucket, side_for
from tandem.rollout.status import RolloutStatus
from tandem.rollout.store import DecisionRow, RolloutStore
from tests.engines import prometheus
from tests.support import FIXTURES, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Buckets 1.25, 14.07, 20.66, 29.29, 42.68, 52.94, 74.57, 95.04: with steps 5, 25, 50, 100 each
#: step moves 1, 2, 2 and 3 deployments; fleet-17 is on FastAPI from the first step to the end.
IDS = (
    "fleet-17",
    "fleet-35",
    "fleet-10",
    "fleet-03",
    "fleet-09",
    "fleet-08",
    "fleet-02",
    "fleet-05",
)
FAULTY = "fleet-17"
RESTART = Path(__file__).with_name("restart_server.py")
CSV = b"a,b,c\n1,2,3\n4,5,6\n"

#: Compressed: seconds instead of minutes. Latency and memory limits are wide: P99 over a few
#: hundred requests on two shared cores is scheduling noise, and RSS "per worker" counts the
#: FastAPI stack's supervisor with its one worker (+90 % over Flask's single process here). The
#: error rules are the seed's.
SPEC: dict[str, Any] = {
    "steps": [5, 25, 50, 100],
    "step_hold": "4s",
    "interval": "1s",
    "window": "6s",
    "min_samples": 20,
    "reduction_wait": "4s",
    "criteria": {
        5: {"max_error_rate": 0.001, "max_p99_increase": 10.0, "max_memory_increase": 2.0}
    },
    "triggers": {
        "ping_timeout": "15s",
        "leak_min_span": "30s",
        "leak_warmup": "10s",
        "p99_increase": 10.0,
        "memory_increase": 3.0,
        "consecutive": 2,
        "rss_growth_per_hour": 50.0,
    },
}


@dataclass
class Deployment:
    """One deployment: its code dir, env file, restart command and where it answers."""

    id: str
    dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env_file(self) -> Path:
        return self.dir / "drum.env"

    @property
    def pid_file(self) -> Path:
        return self.dir / "server.pid"

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    @property
    def restart_cmd(self) -> str:
        server = [
            sys.executable,
            "-m",
            "tandem",
            "server",
            "--code-dir",
            str(self.dir / "model"),
            "--target-type",
            "regression",
            "--address",
            f"127.0.0.1:{self.port}",
        ]
        return " ".join(
            [
                sys.executable,
                str(RESTART),
                "--pid-file",
                str(self.pid_file),
                "--env-file",
                str(self.env_file),
                "--log",
                str(self.log),
                "--",
                *server,
            ]
        )

    def starts(self) -> list[int]:
        """Every PID the restart command started, oldest first."""
        path = self.pid_file.with_name("server.pid.starts")
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def info(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/info/", timeout=5).json())


class Fleet:
    """Eight deployments at 0 %, started as their restart command starts them."""

    def __init__(self, root: Path, fault: str | None = None) -> None:
        self.root = root
        self.deployments = [Deployment(i, root / i, free_port()) for i in IDS]
        for dep in self.deployments:
            shutil.copytree(FIXTURES / "rollout_candidate", dep.dir / "model")
            extra = ""
            if dep.id == fault:
                extra = "ROLLOUT_FAULT=errors\nROLLOUT_FAULT_FLAG=1\n"
            dep.env_file.write_text(
                f"MLOPS_DEPLOYMENT_ID={dep.id}\n"
                "MLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT=0\n" + extra
            )
        self.inventory = root / "fleet.yaml"
        self.inventory.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"restart_timeout": "30s", "ready_timeout": "60s"},
                    "deployments": [
                        {
                            "id": d.id,
                            "url": d.url,
                            "env_file": str(d.env_file),
                            "restart_cmd": d.restart_cmd,
                            "verify": {"log_file": str(d.log)},
                        }
                        for d in self.deployments
                    ],
                }
            )
        )

    def start(self) -> None:
        for dep in self.deployments:
            subprocess.run(dep.restart_cmd, shell=True, check=True, timeout=30, env=_env())
        deadline = time.monotonic() + 90
        for dep in self.deployments:
            while True:
                try:
                    if httpx.get(dep.url + "/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{dep.id} did not start:\n{dep.log.read_text()[-2000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill every process group a restart command ever started (normally only the last one
        is alive)."""
        for dep in self.deployments:
            for pid in dep.starts():
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def alive(self, wait: float = 10.0) -> list[int]:
        """PIDs started by restart commands that still run ``wait`` seconds from now."""
        deadline = time.monotonic() + wait
        while True:
            running = [pid for dep in self.deployments for pid in dep.starts() if _running(pid)]
            if not running or time.monotonic() > deadline:
                return running
            time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLOPS_RUNTIME_PARAM_")
        and k not in ("TANDEM_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR", "TANDEM_MASTER_PID")
    }


class Traffic:
    """Steady load on every deployment (a thread each, about 15 requests a second), bounded."""

    def __init__(self, fleet: Fleet, max_seconds: float = 240.0) -> None:
        self.fleet = fleet
        self.deadline = time.monotonic() + max_seconds
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(d,), daemon=True) for d in fleet.deployments
        ]

    def _run(self, dep: Deployment) -> None:
        with httpx.Client(base_url=dep.url, timeout=5.0) as client:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                try:
                    r = client.post("/predict/", content=CSV, headers={"Content-Type": "text/csv"})
                    self.statuses[r.status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1  # restarting
                self._stop.wait(1 / 15)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


@contextmanager
def running_fleet(tmp_path: Path, fault: str | None = None) -> Iterator[tuple[Fleet, str, Path]]:
    """The deployments, Prometheus watching the fleet's file_sd file, and load."""
    fleet = Fleet(tmp_path / "fleet", fault)
    file_sd = tmp_path / "sd" / "fleet.json"
    try:
        fleet.start()
        with prometheus(tmp_path / "prom", file_sd={"fleet": file_sd}) as prom:
            yield fleet, prom, file_sd
    finally:
        fleet.stop()
    assert fleet.alive() == [], "orphan server processes"


class Controller:
    """``tandem fleet start`` as a subprocess."""

    def __init__(self, tmp_path: Path, fleet: Fleet, prom: str, file_sd: Path) -> None:
        self.state = tmp_path / "fleet-state.db"
        spec = tmp_path / "rollout.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        self.log = tmp_path / "fleet-controller.log"
        command = [
            sys.executable,
            "-m",
            "tandem",
            "fleet",
            "start",
            "--inventory",
            str(fleet.inventory),
            "--state",
            str(self.state),
            "--prometheus-url",
            prom,
            "--prometheus-selector",
            'job="fleet"',
            "--file-sd",
            str(file_sd),
            "--file-sd-label",
            "fleet=e2e",
            "--max-unavailable",
            "2",
            "--config",
            str(spec),
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
            )

    def status(self) -> RolloutStatus | None:
        if not self.state.exists():
            return None
        store = RolloutStore(self.state)
        try:
            return store.load_status()
        finally:
            store.close()

    def history(self) -> list[DecisionRow]:
        store = RolloutStore(self.state)
        try:
            return store.decisions(limit=100_000)
        finally:
            store.close()

    def explain(self) -> str:
        rows = "\n".join(
            f"{r.at:.1f} {r.action} [{r.rule}] {r.from_weight:g}->{r.to_weight:g}: {r.reason}"
            for r in (self.history() if self.state.exists() else [])
        )
        return f"history:\n{rows}\ncontroller log:\n{self.log.read_text()[-4000:]}"

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"fleet did not finish in {timeout:g}s\n{self.explain()}"
            ) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _labels_in_prometheus(prom: str, timeout: float = 20.0) -> dict[str, str]:
    """``deployment_id -> server_type`` of the fleet's healthy targets, once discovery settled."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        targets = httpx.get(prom + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        seen = {
            t["labels"]["deployment_id"]: t["labels"]["server_type"]
            for t in targets
            if t["labels"].get("job") == "fleet" and t["health"] == "up"
        }
        if len(seen) == len(IDS) and len(targets) == len(IDS):
            return seen
        time.sleep(0.5)
    return seen


def _status_rows(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["fleet", "status", "--json", "--state", str(state)]) == 0
    doc = json.loads(capsys.readouterr().out)
    return {row["id"]: row for row in doc["deployments"]}


def test_a_healthy_fleet_is_walked_to_100_percent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with running_fleet(tmp_path) as (fleet, prom, file_sd), Traffic(fleet):
        controller = Controller(tmp_path, fleet, prom, file_sd)
        try:
            code = controller.wait(timeout=180)
        finally:
            controller.stop()
        status = controller.status()
        assert status is not None and code == 0, controller.explain()
        assert (status.phase.value, status.weight) == ("promoted", 100.0)
        history = controller.history()
        ups = [(r.from_weight, r.to_weight) for r in history if r.action == "step_up"]
        assert ups == [(5, 25), (25, 50), (50, 100)], controller.explain()
        moved = [r.numbers["moved"] for r in history if r.action == "apply"]
        assert [sorted(m) for m in moved] == [
            sorted(i for i in IDS if low <= bucket(i) < high)
            for low, high in ((0, 5), (5, 25), (25, 50), (50, 100))
        ]
        for dep in fleet.deployments:
            assert dep.info()["drumServer"] == "fastapi", dep.id
            assert "DRUM_FASTAPI_CANARY_PERCENT=100\n" in dep.env_file.read_text()
            assert len(dep.starts()) == 2, dep.id  # started, then restarted once: onto FastAPI
        groups = json.loads(file_sd.read_text())
        assert {g["labels"]["deployment_id"]: g["labels"]["server_type"] for g in groups} == (
            dict.fromkeys(IDS, "fastapi")
        )
        assert all(g["labels"]["fleet"] == "e2e" for g in groups)
        # Prometheus's server_type label followed every restart.
        assert _labels_in_prometheus(prom) == dict.fromkeys(IDS, "fastapi")
        rows = _status_rows(controller.state, capsys)
        assert set(rows) == set(IDS)
        for row in rows.values():
            assert (row["side"], row["health"]) == ("fastapi", "up")
            assert row["verification"]["expect"] == "fastapi" and row["verification"]["passed"]
        assert sum(r["requests"] or 0 for r in rows.values()) > 0
    print(f"healthy fleet walked to 100 % in {time.monotonic() - started:.0f}s")


def test_a_model_failing_only_on_fastapi_walks_the_fleet_back_to_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with running_fleet(tmp_path, fault=FAULTY) as (fleet, prom, file_sd), Traffic(fleet):
        controller = Controller(tmp_path, fleet, prom, file_sd)
        try:
            deadline = time.monotonic() + 150
            while (s := controller.status()) is None or s.weight < 50:
                assert controller.proc.poll() is None, controller.explain()
                assert time.monotonic() < deadline, controller.explain()
                time.sleep(0.2)
            faulty = next(d for d in fleet.deployments if d.id == FAULTY)
            (faulty.dir / "model" / "fault.flag").write_text("errors")
            on_fastapi_at_50 = {i for i in IDS if side_for(i, 50) == "fastapi"}
            code = controller.wait(timeout=120)
        finally:
            controller.stop()
        status = controller.status()
        assert status is not None and code == 1, controller.explain()
        assert (status.phase.value, status.weight) == ("rolled_back", 0.0), controller.explain()
        history = controller.history()
        back = [
            (r.from_weight, r.to_weight, r.rule)
            for r in history
            if r.action in ("reduce", "rollback")
        ]
        assert back and back[-1][1] == 0.0 and "error_rate" in back[-1][2], controller.explain()
        verify = [r for r in history if r.action == "verify"][-1]
        assert verify.reason == f"all {len(IDS)} deployments verified on flask", (
            controller.explain()
        )
        for dep in fleet.deployments:
            assert dep.info()["drumServer"] == "flask", dep.id
            assert "DRUM_FASTAPI_CANARY_PERCENT=0\n" in dep.env_file.read_text()
            # Restarted onto FastAPI and back if it got there; never restarted otherwise.
            assert len(dep.starts()) == (3 if dep.id in on_fastapi_at_50 else 1), dep.id
        rows = _status_rows(controller.state, capsys)
        for row in rows.values():
            assert row["side"] == "flask"
            assert row["verification"]["expect"] == "flask" and row["verification"]["passed"]
            assert row["verification"]["at"] >= status.phase_started_at
        assert _labels_in_prometheus(prom) == dict.fromkeys(IDS, "flask")
        print(f"walked back: {back}")
    print(f"faulty fleet walked back to 0 % in {time.monotonic() - started:.0f}s")
