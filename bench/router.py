"""What the rollout router adds: the same 1-row load on a Tandem server, directly and through it.

Run with Tandem's venv (it builds the model with that scikit-learn)::

    .venv/bin/python bench/router.py [--duration 5] [--connections 1,8,32]

It starts one Tandem FastAPI server (1 worker) and a rollout router in front of it with the
server as both baseline and candidate (weight 50 %, no mirroring: the split itself is exercised
but every request reaches the same backend), then drives each with wrk (keep-alive) and reports
req/s, p50 and p99 with and without the router, and the router's own CPU per request and RSS.
Results go to ``bench/results/<timestamp>-router/``. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import procfs  # noqa: E402
from benchlib.loadgen import Payload, run_wrk  # noqa: E402
from benchlib.prepare import write_data  # noqa: E402
from benchlib.servers import free_port, request  # noqa: E402

HERE = Path(__file__).resolve().parent


def _build_model(build: Path, train: Path) -> Path:
    code_dir = build / "regression"
    code_dir.mkdir(parents=True, exist_ok=True)
    script = (
        "import pickle, sys, pandas as pd\n"
        "from sklearn.linear_model import Ridge\n"
        "d = pd.read_csv(sys.argv[1])\n"
        "x = d[[c for c in d.columns if c.startswith('f')]]\n"
        "pickle.dump(Ridge().fit(x, d.iloc[:, len(x.columns)]), open(sys.argv[2], 'wb'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(train), str(code_dir / "model.pkl")], check=True
    )
    return code_dir


def _wait(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if request(port, "GET", path, timeout=2.0).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready in {timeout:g}s")


def _start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import os

    with log.open("wb") as fh:
        return subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def main() -> int:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,8,32")
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-router"
    out.mkdir(parents=True, exist_ok=True)
    payloads = write_data(out / "build")
    code_dir = _build_model(out / "build", out / "build" / "train.csv")
    payload = Payload("1 row", payloads.rows1, "text/csv", "/predict/")
    server_port, router_port, admin_port = free_port(), free_port(), free_port()
    server = _start(
        [
            sys.executable,
            "-m",
            "tandem",
            "server",
            "--code-dir",
            str(code_dir),
            "--target-type",
            "regression",
            "--address",
            f"127.0.0.1:{server_port}",
        ],
        out / "server.log",
        {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "fastapi"},
    )
    router = None
    rows = []
    try:
        _wait(server_port, "/readyz", server)
        backend = f"http://127.0.0.1:{server_port}"
        router = _start(
            [
                sys.executable,
                "-m",
                "tandem.rollout.router",
                "--listen",
                f"127.0.0.1:{router_port}",
                "--admin",
                f"127.0.0.1:{admin_port}",
                "--baseline",
                backend,
                "--candidate",
                backend,
                "--weight-bp",
                "5000",
                "--mirror-rate",
                "0",
                "--log-level",
                "warning",
            ],
            out / "router.log",
        )
        _wait(admin_port, "/api/health", router)
        run_wrk(router_port, payload, 8, True, 1.0)  # warm both
        for conns in [int(c) for c in args.connections.split(",")]:
            direct = run_wrk(server_port, payload, conns, True, args.duration)
            before = procfs.cpu_seconds(router.pid)
            routed = run_wrk(router_port, payload, conns, True, args.duration)
            router_cpu = procfs.cpu_seconds(router.pid) - before
            rps = [r["requests"] / (r["duration_us"] / 1e6) for r in (direct, routed)]
            rows.append(
                {
                    "connections": conns,
                    "direct_rps": round(rps[0]),
                    "routed_rps": round(rps[1]),
                    "direct_p50_ms": direct["latency_p50_us"] / 1000,
                    "routed_p50_ms": routed["latency_p50_us"] / 1000,
                    "direct_p99_ms": direct["latency_p99_us"] / 1000,
                    "routed_p99_ms": routed["latency_p99_us"] / 1000,
                    "router_cpu_ms_per_request": round(
                        router_cpu * 1000 / max(routed["requests"], 1), 3
                    ),
                    "errors": sum(routed[k] for k in routed if k.startswith("errors_")),
                }
            )
        memory = procfs.memory_mb(router.pid)
    finally:
        if router is not None:
            _stop(router)
        _stop(server)
    lines = [
        f"# Rollout router overhead — {stamp} UTC",
        "",
        f"Tandem FastAPI (1 worker) directly vs through the router (weight 50 %, no mirroring); "
        f"wrk keep-alive, {args.duration:g} s per run, 1-row regression CSV. Router RSS "
        f"{memory['rss_mb']:.0f} MB, PSS {memory['pss_mb']:.0f} MB.",
        "",
        "| connections | req/s direct | req/s routed | p50 direct | p50 routed | p99 direct | "
        "p99 routed | router CPU/request | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['connections']} | {r['direct_rps']} | {r['routed_rps']} | "
            f"{r['direct_p50_ms']:.2f} ms | {r['routed_p50_ms']:.2f} ms | "
            f"{r['direct_p99_ms']:.2f} ms | {r['routed_p99_ms']:.2f} ms | "
            f"{r['router_cpu_ms_per_request']:.3f} ms | {r['errors']} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"rows": rows, "router_memory": memory}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
