"""Scenarios and the wrk runs that time them.

Each cell is one ``wrk`` run (``--latency``, ``bench/post.lua`` for the POST body, at most 2
threads) against one server, with the server's CPU time read from ``/proc`` just before and just
after, and its RSS/PSS read right after. wrk's own CPU (``RUSAGE_CHILDREN``) and the machine's
total busy time over the same window are recorded too, because the load generator and the other
users of this 2-core machine share the CPUs with the server.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import procfs
from benchlib.servers import HOST, RunningServer

LUA_SCRIPT = Path(__file__).resolve().parents[1] / "post.lua"
MAX_THREADS = 2
WRK_SECONDS = [0.0]  # wall time spent in wrk during this run, for the time breakdown


@dataclass(frozen=True)
class Payload:
    """A request body and the route it is posted to."""

    name: str  # "1 row", "1000 rows", "1 MiB"
    path: Path
    content_type: str
    route: str


@dataclass(frozen=True)
class Scenario:
    """One cell of the table, per server: model, payload, connections, keep-alive."""

    model: str
    payload: Payload
    connections: int
    keepalive: bool

    @property
    def key(self) -> str:
        """Stable id, e.g. ``regression/1row/c8/keepalive``."""
        conn = "keepalive" if self.keepalive else "close"
        payload = self.payload.name.replace(" ", "")
        return f"{self.model}/{payload}/c{self.connections}/{conn}"

    @property
    def label(self) -> str:
        """Human label, e.g. ``regression, 1 row, 8 conns, keep-alive``."""
        conn = "keep-alive" if self.keepalive else "close"
        conns = f"{self.connections} conn{'s' if self.connections != 1 else ''}"
        return f"{self.model}, {self.payload.name}, {conns}, {conn}"


def wrk_version() -> str:
    """wrk's version line."""
    proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (proc.stdout or proc.stderr).splitlines()[0].strip()


def run_wrk(
    port: int,
    payload: Payload,
    connections: int,
    keepalive: bool,
    duration: float,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """One bounded wrk run; returns the parsed BENCH_RESULT figures plus wrk's text output."""
    threads = max(1, min(MAX_THREADS, connections))
    cmd = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration))}s",
        f"--timeout={timeout:g}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
    ]
    if not keepalive:
        cmd += ["--header", "Connection: close"]
    cmd.append(f"http://{HOST}:{port}{payload.route}")
    env = dict(os.environ)
    env["BENCH_BODY_FILE"] = str(payload.path)
    env["BENCH_CONTENT_TYPE"] = payload.content_type
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=duration + timeout + 30
        )
    finally:
        WRK_SECONDS[0] += time.monotonic() - t0
    result: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT ") :])
    if proc.returncode != 0 or result is None:
        raise RuntimeError(
            f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        )
    result["threads"] = threads
    result["wrk_output"] = proc.stdout.split("BENCH_RESULT")[0].rstrip()
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(server: RunningServer, scenario: Scenario, duration: float) -> dict[str, Any]:
    """Time one cell against a running server and return its figures."""
    load_before = procfs.loadavg()
    busy0, total0 = procfs.machine_cpu_ticks()
    server_cpu0 = server.cpu_seconds()
    wrk_cpu0 = _children_cpu()
    t0 = time.monotonic()
    raw = run_wrk(server.port, scenario.payload, scenario.connections, scenario.keepalive, duration)
    wall = time.monotonic() - t0
    wrk_cpu = _children_cpu() - wrk_cpu0
    server_cpu = server.cpu_seconds() - server_cpu0
    busy1, total1 = procfs.machine_cpu_ticks()
    memory = server.memory()

    requests = int(raw["requests"])
    duration_s = int(raw["duration_us"]) / 1e6
    socket_errors = sum(
        int(raw[k]) for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout")
    )
    machine_busy_s = (busy1 - busy0) / procfs.CLK_TCK
    other_s = max(0.0, machine_busy_s - server_cpu - wrk_cpu)
    return {
        "scenario": scenario.key,
        "model": scenario.model,
        "payload": scenario.payload.name,
        "connections": scenario.connections,
        "keepalive": scenario.keepalive,
        "threads": raw["threads"],
        "requests": requests,
        "duration_s": duration_s,
        "rps": requests / duration_s if duration_s else 0.0,
        "p50_ms": int(raw["latency_p50_us"]) / 1000,
        "p90_ms": int(raw["latency_p90_us"]) / 1000,
        "p99_ms": int(raw["latency_p99_us"]) / 1000,
        "max_ms": int(raw["latency_max_us"]) / 1000,
        "non_2xx": int(raw["errors_status"]),
        "socket_errors": socket_errors,
        "errors": int(raw["errors_status"]) + socket_errors,
        "errors_detail": {k: raw[k] for k in raw if str(k).startswith("errors_")},
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_req": server_cpu * 1000 / requests if requests else None,
        "wrk_cpu_ms_per_req": wrk_cpu * 1000 / requests if requests else None,
        # CPU used by everything else on the machine during the run, in cores: the noise floor.
        "other_load_cores": other_s / wall if wall else 0.0,
        "machine_cpus_total_s": (total1 - total0) / procfs.CLK_TCK,
        "loadavg_before": load_before,
        "rss_mb": memory["rss_mb"],
        "pss_mb": memory["pss_mb"],
        "worker_rss_mb": memory["worker_rss_mb"],
        "processes": memory["processes"],
        "wrk_output": raw["wrk_output"],
    }


def warm_up(server: RunningServer, payloads: list[Payload], seconds: float) -> None:
    """Drive each payload for ``seconds`` (4 connections, keep-alive); results are dropped."""
    if seconds <= 0:
        return
    for payload in payloads:
        run_wrk(server.port, payload, 4, True, seconds)
