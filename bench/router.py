"""What the traffic engines add: the same 1-row load on a Tandem server, directly and through them.

Run with Tandem's venv (it builds the model with that scikit-learn)::

    .venv/bin/python bench/router.py [--duration 5] [--connections 1,8,32]

It starts one Tandem FastAPI server (1 worker), then puts each traffic engine in front of it in
turn, the built-in rollout router and nginx running the rollout's include file, each with the
server as both baseline and candidate (weight 50 %, no mirroring: the split itself is exercised
but every request reaches the same backend). It drives the server and the engine with wrk
(keep-alive) and reports req/s, p50 and p99 both ways, the engine's own CPU per request and RSS,
and whether the issue's targets hold. Results go to ``bench/results/<timestamp>-router/``. All
traffic stays on 127.0.0.1.

``bench/run.py`` runs the same scenario (``benchlib/router.py``) in every run, at 8 connections
with ``--quick`` and at 1, 8 and 32 otherwise; this script is for running it alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import router as routerlib  # noqa: E402
from benchlib.loadgen import Payload  # noqa: E402
from benchlib.prepare import write_data  # noqa: E402
from benchlib.servers import Executables, ModelSpec, RunningServer  # noqa: E402

HERE = Path(__file__).resolve().parent


def _build_model(build: Path) -> Path:
    """The harness's regression model (``build_models.py``), fitted with this Python."""
    out = build / "models"
    cmd = [sys.executable, str(HERE / "build_models.py"), "--data", str(build), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "regression"


def main() -> int:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", default="1,8,32")
    args = parser.parse_args()
    python = Path(sys.executable)
    tandem = python.with_name("tandem")
    if not tandem.exists():
        raise SystemExit(f"no {tandem}: run this script with Tandem's venv (.venv/bin/python)")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-router"
    out.mkdir(parents=True, exist_ok=True)
    payloads = write_data(out / "build")
    code_dir = _build_model(out / "build")
    payload = Payload("1 row", payloads.rows1, "text/csv", "/predict/")
    exe = Executables(drum=Path("drum"), tandem=tandem, tandem_python=python)
    model = ModelSpec(routerlib.BACKEND_MODEL, "regression", code_dir, code_dir)
    server = RunningServer(routerlib.BACKEND, model, exe, out / "server.log")
    try:
        server.wait_ready(60.0)
        scenario = routerlib.run_scenario(
            python,
            server.port,
            payload,
            [int(c) for c in args.connections.split(",")],
            args.duration,
            1.0,
            out / "router.log",
        )
    finally:
        server.stop()
    rows = scenario["rows"]
    lines = [
        f"# Traffic engines' overhead — {stamp} UTC",
        "",
        "Tandem FastAPI (1 worker) directly vs through each engine (weight 50 %, no mirroring); "
        f"wrk keep-alive, {args.duration:g} s per run, 1-row regression CSV. Targets: "
        + "; ".join(
            f"{e} ≤ {c:g} ms CPU/request and ≥ {r:g}× direct"
            for e, (c, r) in routerlib.TARGETS.items()
        )
        + ".",
        "",
        *(f"{engine} not run: {why}" for engine, why in scenario["not_run"].items()),
        "| engine | connections | req/s direct | req/s routed | routed ÷ direct | p50 direct |"
        " p50 routed | p99 direct | p99 routed | engine CPU/request | RSS MB | errors | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = r["meets_targets"]
        lines.append(
            f"| {r['engine']} | {r['connections']} | {r['direct_rps']:.0f} |"
            f" {r['routed_rps']:.0f} | {r['routed_over_direct'] or 0:.2f}× |"
            f" {r['direct_p50_ms']:.2f} ms | {r['routed_p50_ms']:.2f} ms |"
            f" {r['direct_p99_ms']:.2f} ms | {r['routed_p99_ms']:.2f} ms |"
            f" {r['router_cpu_ms_per_request']:.3f} ms | {r['router_rss_mb']:.0f} | {r['errors']} |"
            f" {'–' if met is None else ('met' if met else 'MISSED')} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(scenario, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
