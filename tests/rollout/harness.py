"""Running a real ``tandem rollout start`` (baseline, candidate, router) with bounded load."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from tandem.rollout.status import RolloutStatus
from tandem.rollout.store import DecisionRow, RolloutStore
from tests.support import FIXTURES, free_port

CSV = b"a,b,c\n1,2,3\n4,5,6\n"
#: What ``tandem rollout start`` prints once its children are up and it starts evaluating.
READY_LINE = "rollout: router on"

#: Compressed timings: the whole story in seconds. Latency and memory limits are wide, because
#: on two shared cores (load generator, router, both stacks) a P99 over a few hundred requests
#: is mostly scheduling noise, several times the median; the fault scenarios exceed these
#: limits by another order of magnitude (the slow fault adds 0.5 s to a ~2 ms request).
FAST_SPEC: dict[str, Any] = {
    "steps": [10, 50, 100],
    "shadow_duration": "2s",
    "shadow_sample_rate": 0.5,
    "canary_mirror_rate": 0.2,
    "step_hold": "2s",
    "interval": "0.5s",
    "window": "3s",
    "min_samples": 20,
    "reduction_wait": "1.5s",
    "max_shadow_p99_ratio": 5.0,
    "criteria": {
        10: {"max_error_rate": 0.001, "max_p99_increase": 10.0, "max_memory_increase": 1.0}
    },
    "triggers": {
        "ping_timeout": "3s",
        "leak_min_span": "3s",
        "leak_warmup": "2s",
        "p99_increase": 10.0,
        "memory_increase": 2.0,
        "consecutive": 2,
        # Over 3-second spans, a few MiB of allocator noise extrapolates to hundreds of percent
        # per hour; the leaking fixture grows by thousands of percent per *second*.
        "rss_growth_per_hour": 50.0,
    },
}


class NotifyReceiver:
    """A real HTTP server on 127.0.0.1 collecting the JSON notifications POSTed to it."""

    def __init__(self) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.messages: list[dict[str, Any]] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()


class Load:
    """Bounded background load on the router: distinct request ids, statuses counted."""

    def __init__(
        self, url: str, threads: int = 3, max_seconds: float = 90.0, max_requests: int = 200_000
    ) -> None:
        self.url = url
        self.threads = threads
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.statuses: Counter[int] = Counter()
        self.failures = 0
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        """Start the load threads."""
        for worker in self._workers:
            worker.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15.0) as client:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                n = next(self._ids)
                if n >= self.max_requests:
                    return
                try:
                    r = client.post(
                        "/predict/",
                        content=CSV,
                        headers={
                            "Content-Type": "text/csv",
                            "X-Request-ID": f"load-{os.getpid()}-{n}",
                        },
                    )
                    with self._lock:
                        self.statuses[r.status_code] += 1
                except httpx.HTTPError:
                    with self._lock:
                        self.failures += 1

    def stop(self) -> None:
        """Stop and wait for the threads."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    @property
    def total(self) -> int:
        """Requests answered or failed."""
        return sum(self.statuses.values()) + self.failures

    @property
    def error_rate(self) -> float:
        """Client-facing error rate: 5xx answers and transport failures."""
        bad = self.failures + sum(c for s, c in self.statuses.items() if s >= 500)
        return bad / self.total if self.total else 0.0


class Rollout:
    """A ``tandem rollout start`` process and helpers to watch it."""

    def __init__(
        self,
        tmp_path: Path,
        fault: str | None = None,
        spec: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.dir = tmp_path
        self.admin_headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.code_dir = tmp_path / "model"
        if not self.code_dir.exists():
            shutil.copytree(FIXTURES / "rollout_candidate", self.code_dir)
        self.state = tmp_path / "state.db"
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        config = tmp_path / "rollout.yaml"
        config.write_text(yaml.safe_dump(spec if spec is not None else FAST_SPEC))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
        if fault:
            self.env["ROLLOUT_FAULT"] = fault
        self.env.update(env or {})
        self.command = [
            sys.executable,
            "-m",
            "tandem",
            "rollout",
            "start",
            "--state",
            str(self.state),
            "--code-dir",
            str(self.code_dir),
            "--target-type",
            "regression",
            "--address",
            f"127.0.0.1:{self.port}",
            "--admin-address",
            f"127.0.0.1:{self.admin_port}",
            "--config",
            str(config),
            "--backend-timeout",
            "2",
            *(["--admin-token", admin_token] if admin_token else []),
            *(extra_args or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "controller.log"

    def start(self) -> Rollout:
        """Start the controller; wait until the router answers and the controller supervises."""
        ready_before = self.logs().count(READY_LINE)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.wait_for(lambda: self._router_up(), 120, "router up")
        self.wait_for(
            lambda: self.logs().count(READY_LINE) > ready_before, 60, "controller start-up done"
        )
        return self

    def _router_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"controller exited {self.proc.returncode}:\n{self.logs()}")
        try:
            health = httpx.get(
                self.admin_url + "/api/health", headers=self.admin_headers, timeout=1
            )
            return health.status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        """The controller's output."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def store(self) -> RolloutStore:
        """A read connection to the state file."""
        return RolloutStore(self.state)

    def status(self) -> RolloutStatus | None:
        """The recorded status."""
        store = self.store()
        try:
            return store.load_status()
        finally:
            store.close()

    def history(self) -> list[DecisionRow]:
        """The recorded decisions."""
        store = self.store()
        try:
            return store.decisions(limit=100_000)
        finally:
            store.close()

    def router_stats(self) -> dict[str, Any]:
        """The router's /api/stats."""
        stats = httpx.get(self.admin_url + "/api/stats", headers=self.admin_headers, timeout=5)
        return dict(stats.json())

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll until ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        history = (
            "\n".join(
                f"{r.action} [{r.rule}] {r.from_weight}->{r.to_weight}: {r.reason}"
                for r in self.history()
            )
            if self.state.exists()
            else ""
        )
        raise AssertionError(
            f"timed out waiting for {what}\nhistory:\n{history}\nlog tail:\n{self.logs()[-3000:]}"
        )

    def wait_phase(self, phases: set[str], timeout: float = 60) -> RolloutStatus:
        """Wait until the rollout reaches one of ``phases``."""
        self.wait_for(
            lambda: (s := self.status()) is not None and s.phase.value in phases,
            timeout,
            f"phase in {phases}",
        )
        status = self.status()
        assert status is not None
        return status

    def child_pids(self) -> dict[str, int]:
        """The PIDs the state file records for baseline, candidate and router."""
        if not self.state.exists():
            return {}
        store = self.store()
        try:
            children = store.get_json("children") or {}
        finally:
            store.close()
        return {name: c["pid"] for name, c in children.items() if c and c.get("pid")}

    def kill_controller(self) -> None:
        """SIGKILL only the controller process (its children live on in their own sessions)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the controller (which stops its children), then anything left over."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in self.child_pids().values():
            if psutil.pid_exists(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
