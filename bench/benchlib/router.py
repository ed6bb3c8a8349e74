"""The rollout-router scenario: the same 1-row load on one Tandem server, directly and routed.

Two traffic engines are put in front of a running Tandem server, one after the other, each with
that server as both baseline and candidate (weight 50 %, no mirroring): the split itself is
exercised but every request reaches the same backend.

- ``builtin``: the rollout router (``python -m tandem.rollout.router``);
- ``nginx``: Debian's nginx (one worker) running the include file ``tandem rollout --traffic
  nginx`` writes (:class:`tandem.rollout.nginx.NginxTraffic`), split and upstream keep-alive
  exactly as in production.

Each comparison is a wrk run on the server, then the same run through the engine, with the
engine's own CPU time (all its processes) read from ``/proc`` just before and just after the
routed run and its RSS/PSS right after it. Used by ``bench/run.py`` (on the Tandem fastapi ×1
server it has just timed) and by ``bench/router.py`` (stand-alone, more connection counts).

The issue's targets, reported beside the figures: the built-in router adds at most 0.3 ms of
CPU per request and serves at least 0.6× direct; nginx adds at most 0.1 ms and serves at least
0.9× direct. They are judged from 8 connections up (:data:`JUDGED_FROM_CONNECTIONS`); one
connection is reported as a latency figure.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import procfs
from benchlib.loadgen import Payload, run_wrk
from benchlib.servers import (
    HOST,
    ServerFailed,
    ServerSpec,
    answer_differences,
    free_port,
    request,
    scrubbed_env,
    stop_session,
)

# The server the harness puts the router in front of, and the router's traffic settings.
BACKEND = ServerSpec("tandem", "fastapi", 1)
BACKEND_MODEL = "regression"
WEIGHT_BP = 5000
MIRROR_RATE = 0.0
#: The issue's targets per engine: (most CPU ms added per request, least routed ÷ direct).
TARGETS = {"builtin": (0.3, 0.6), "nginx": (0.1, 0.9)}
ENGINES = ("builtin", "nginx")


class _Engine:
    """A traffic engine started in its own session: launch, readiness, CPU, memory, stop."""

    name = "engine"
    port: int

    def _launch(self, command: list[str], log_path: Path, env: dict[str, str] | None) -> None:
        self.log_path = log_path
        self.startup_s: float | None = None
        self._log = open(log_path, "wb")  # closed in stop()
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The engine's first pid, which is also its process group and session id."""
        return self.proc.pid

    def _ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll until the engine answers; return seconds since launch."""
        deadline = self._t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with {self.proc.returncode} before it was ready; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                if self._ready():
                    self.startup_s = time.monotonic() - self._t0
                    return self.startup_s
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"{self.name} not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.025)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the engine's log."""
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the engine's processes."""
        return procfs.cpu_seconds(self.pid)

    def memory(self) -> dict[str, float | int]:
        """RSS/PSS (MB) of the engine's processes."""
        return procfs.memory_mb(self.pid)

    def stop(self) -> None:
        """Stop the engine's whole session and close its log."""
        try:
            stop_session(self.proc)
        finally:
            self._log.close()


class RunningRouter(_Engine):
    """A rollout router routing to one backend URL."""

    name = "rollout router"

    def __init__(
        self, python: Path | str, backend_port: int, log_path: Path, tandem_src: Path | None = None
    ) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        backend = f"http://{HOST}:{backend_port}"
        self.command = [
            str(python),
            "-m",
            "tandem.rollout.router",
            "--listen",
            f"{HOST}:{self.port}",
            "--admin",
            f"{HOST}:{self.admin_port}",
            "--baseline",
            backend,
            "--candidate",
            backend,
            "--weight-bp",
            str(WEIGHT_BP),
            "--mirror-rate",
            f"{MIRROR_RATE:g}",
            "--log-level",
            "warning",
        ]
        env = scrubbed_env()
        if tandem_src is not None:
            env["PYTHONPATH"] = str(tandem_src)
        env["PYTHONUNBUFFERED"] = "1"
        self._launch(self.command, log_path, env)

    def _ready(self) -> bool:
        return request(self.admin_port, "GET", "/api/health", timeout=2.0).status == 200


class RunningNginx(_Engine):
    """Debian's nginx (one worker, no daemon) serving the rollout's include file."""

    name = "nginx"

    def __init__(self, backend_port: int, prefix: Path, tandem_src: Path | None = None) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise ServerFailed("nginx is not installed (apt-get install nginx-light)")
        if tandem_src is not None and str(tandem_src) not in sys.path:
            sys.path.insert(0, str(tandem_src))
        from tandem.rollout.nginx import NginxTraffic

        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        include = prefix / "tandem.conf"
        backend = f"http://{HOST}:{backend_port}"
        traffic = NginxTraffic(include, f"{HOST}:{self.port}", backend, backend)
        include.write_text(traffic.render(WEIGHT_BP))
        temp = " ".join(
            f"{name}_temp_path {prefix / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main = prefix / "nginx.conf"
        # Errors go to stderr, which is the engine's log.
        main.write_text(
            f"pid {prefix / 'nginx.pid'};\nerror_log stderr warn;\n"
            "daemon off;\nworker_processes 1;\nevents { worker_connections 1024; }\n"
            f"http {{\n  access_log off;\n  {temp}\n  include {include};\n}}\n"
        )
        self._launch([binary, "-c", str(main), "-p", str(prefix)], prefix / "nginx.log", None)

    def _ready(self) -> bool:
        request(self.port, "GET", "/ping/", timeout=2.0)
        return True


def same_answer(server_port: int, router_port: int, payload: Payload) -> dict[str, Any]:
    """Post the payload directly and through the router; are status, type and body the same?"""
    body = payload.path.read_bytes()
    direct = request(server_port, "POST", payload.route, body, payload.content_type)
    routed = request(router_port, "POST", payload.route, body, payload.content_type)
    problems = answer_differences(routed, direct, ("routed", "direct"))
    return {
        "identical": not problems and direct.status == 200,
        "detail": "; ".join(problems) or f"identical (status {direct.status})",
    }


def _errors(raw: dict[str, Any]) -> int:
    return sum(int(raw[k]) for k in raw if str(k).startswith("errors_"))


def compare(
    server_port: int,
    router: RunningRouter | RunningNginx,
    payload: Payload,
    connections: int,
    duration: float,
    keepalive: bool = True,
) -> dict[str, Any]:
    """One wrk run on the server, then the same run through the router; one row of figures."""
    direct = run_wrk(server_port, payload, connections, keepalive, duration)
    before = router.cpu_seconds()
    routed = run_wrk(router.port, payload, connections, keepalive, duration)
    router_cpu = router.cpu_seconds() - before
    memory = router.memory()
    rps = [
        r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
        for r in (direct, routed)
    ]
    return {
        "engine": "nginx" if isinstance(router, RunningNginx) else "builtin",
        "connections": connections,
        "keepalive": keepalive,
        "direct_requests": int(direct["requests"]),
        "routed_requests": int(routed["requests"]),
        "direct_rps": rps[0],
        "routed_rps": rps[1],
        "routed_over_direct": rps[1] / rps[0] if rps[0] else None,
        "direct_p50_ms": direct["latency_p50_us"] / 1000,
        "routed_p50_ms": routed["latency_p50_us"] / 1000,
        "direct_p99_ms": direct["latency_p99_us"] / 1000,
        "routed_p99_ms": routed["latency_p99_us"] / 1000,
        "router_cpu_s": router_cpu,
        "router_cpu_ms_per_request": router_cpu * 1000 / max(int(routed["requests"]), 1),
        "router_rss_mb": memory["rss_mb"],
        "router_pss_mb": memory["pss_mb"],
        "direct_errors": _errors(direct),
        "errors": _errors(routed),
        "direct_wrk_output": direct["wrk_output"],
        "routed_wrk_output": routed["wrk_output"],
    }


#: Throughput targets are judged where throughput is the limit: with one connection, each
#: request waits for the one before, so "req/s" is 1 / latency and an extra hop lowers it
#: whatever the engine costs (and every request pays its own event-loop wake-ups).
JUDGED_FROM_CONNECTIONS = 8


def meets_targets(row: dict[str, Any]) -> bool | None:
    """Whether a row meets its engine's targets (None: not judged, or a figure is missing)."""
    cpu_max, ratio_min = TARGETS[row["engine"]]
    ratio = row["routed_over_direct"]
    if ratio is None or row["connections"] < JUDGED_FROM_CONNECTIONS:
        return None
    return bool(row["router_cpu_ms_per_request"] <= cpu_max and ratio >= ratio_min)


def run_scenario(
    python: Path | str,
    server_port: int,
    payload: Payload,
    connections: list[int],
    duration: float,
    warmup: float,
    log_path: Path,
    tandem_src: Path | None = None,
    on_row: Any = None,
    engines: tuple[str, ...] = ENGINES,
) -> dict[str, Any]:
    """Put each engine in front of ``server_port`` in turn, warm it up, compare each connection
    count.

    Returns the scenario's figures (``rows``, one per engine and connection count, and each
    engine's start-up time); every engine is stopped before the next starts and before
    returning, whatever happens. An engine that cannot run (nginx not installed) is reported
    under ``not_run`` rather than failing the others.
    """
    rows = []
    startup: dict[str, float] = {}
    checks: dict[str, dict[str, Any]] = {}
    not_run: dict[str, str] = {}
    for engine in engines:
        try:
            front: RunningRouter | RunningNginx = (
                RunningRouter(python, server_port, log_path, tandem_src)
                if engine == "builtin"
                else RunningNginx(
                    server_port, log_path.with_name(log_path.stem + "-nginx"), tandem_src
                )
            )
        except ServerFailed as exc:
            not_run[engine] = str(exc)
            continue
        try:
            startup[engine] = front.wait_ready()
            checks[engine] = same_answer(server_port, front.port, payload)
            if warmup > 0:
                run_wrk(front.port, payload, 8, True, warmup)  # warms the engine and the server
            for conns in connections:
                row = compare(server_port, front, payload, conns, duration)
                row["meets_targets"] = meets_targets(row)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
        finally:
            front.stop()
    identical = all(c["identical"] for c in checks.values())
    return {
        "payload": payload.name,
        "weight_bp": WEIGHT_BP,
        "mirror_rate": MIRROR_RATE,
        "duration_s": duration,
        "warmup_s": warmup,
        "router_startup_s": startup.get("builtin"),
        "startup_s": startup,
        "targets": {k: {"cpu_ms_max": v[0], "ratio_min": v[1]} for k, v in TARGETS.items()},
        "routed_answer": {
            "identical": identical,
            "detail": "; ".join(f"{k}: {c['detail']}" for k, c in checks.items()),
        },
        "not_run": not_run,
        "rows": rows,
    }
