"""Benchmark Tandem against DataRobot DRUM, side by side, in one run.

    python bench/run.py            # full run (about 25 minutes)
    python bench/run.py --quick    # fewer scenarios, 3 s per cell (under 3 minutes)

It creates bench/.drum-venv with ``datarobot-drum==1.18.1`` (once), builds the models and payloads
from fixed seeds, starts each server in turn on 127.0.0.1 (DRUM gunicorn ×1 and ×2, Tandem
flask, gunicorn ×1/×2, fastapi ×1/×2), checks its answers against DRUM's byte for byte, warms it
up and drives it with wrk, then puts a rollout router in front of Tandem fastapi ×1 and drives
the same 1-row load directly and through it (``--no-router`` skips that), and writes
``results.md`` and ``results.json`` under ``bench/results/<timestamp>/``. Standard library only:
any Python 3.11 runs it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import loadgen, prepare, procfs, report
from benchlib import router as routerlib
from benchlib.loadgen import Payload, Scenario
from benchlib.servers import (
    Answer,
    Executables,
    ModelSpec,
    RunningServer,
    ServerFailed,
    ServerRegistry,
    ServerSpec,
    answer_differences,
    preflight,
    request,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
STARTUP_TIMEOUT = 120.0
IMPLS = ("drum", "tandem")


@dataclass
class Plan:
    """What one run does."""

    servers: list[ServerSpec]
    models: list[ModelSpec]
    payloads: dict[str, list[Payload]]  # model name -> payloads checked for byte identity
    scenarios: list[Scenario]
    duration: float
    warmup: float
    verify_first: bool
    router_connections: list[int]  # empty: no rollout-router scenario in this run


def all_servers(workers: list[int]) -> list[ServerSpec]:
    """Server configurations, grouped by worker count so compared cells run close in time."""
    specs = []
    for n in workers:
        specs.append(ServerSpec("drum", "gunicorn", n))
        if n == 1:
            # The Flask development server is one process whatever it is asked for.
            specs.append(ServerSpec("tandem", "flask", 1))
        specs.append(ServerSpec("tandem", "gunicorn", n))
        specs.append(ServerSpec("tandem", "fastapi", n))
    return specs


def make_scenarios(payloads: dict[str, Payload], quick: bool) -> list[Scenario]:
    """The cells timed per server."""
    if quick:
        reg = [
            Scenario("regression", payloads["1row"], 8, True),
            Scenario("regression", payloads["1row"], 8, False),
            Scenario("regression", payloads["1row"], 32, True),
            Scenario("regression", payloads["1000rows"], 4, True),
        ]
        return reg
    cells = []
    for model in ("regression", "binary"):
        for payload, conns in (("1row", 1), ("1row", 8), ("1row", 32), ("1000rows", 4)):
            for keepalive in (True, False):
                cells.append(Scenario(model, payloads[payload], conns, keepalive))
    for keepalive in (True, False):
        cells.append(Scenario("echo", payloads["echo"], 4, keepalive))
    return cells


def check_identity(
    server: RunningServer,
    payloads: list[Payload],
    reference: dict[tuple[str, str], Answer],
    checks: list[dict[str, Any]],
) -> bool:
    """Post each payload once; compare with DRUM's answer (or record it as the reference)."""
    ok = True
    model = server.model.name
    for payload in payloads:
        answer = request(
            server.port, "POST", payload.route, payload.path.read_bytes(), payload.content_type
        )
        key = (model, payload.name)
        entry: dict[str, Any] = {
            "server": server.spec.name,
            "model": model,
            "payload": payload.name,
            "status": answer.status,
            "content_type": answer.content_type,
            "body_len": len(answer.body),
            "body_sha256": hashlib.sha256(answer.body).hexdigest(),
            "reference": False,
        }
        if key not in reference:
            if server.spec.impl != "drum":
                # DRUM failed for this model: nothing to compare with, which is a failure too.
                entry.update(identical=False, detail="no DRUM reference (DRUM did not answer)")
                checks.append(entry)
                ok = False
                continue
            if answer.status != 200:
                raise RuntimeError(
                    f"DRUM answered {answer.status} to {model} {payload.name}: "
                    f"{answer.body[:300]!r}; the benchmark models or payloads are wrong"
                )
            reference[key] = answer
            entry.update(identical=True, reference=True, detail="reference")
        else:
            problems = answer_differences(answer, reference[key], ("Tandem", "DRUM"))
            entry["identical"] = not problems
            entry["detail"] = "; ".join(problems) or "identical"
            if problems:
                ok = False
                print(
                    f"\n!!!!!!!! BYTE MISMATCH: {server.spec.name} {model} {payload.name}: "
                    f"{entry['detail']} !!!!!!!!\n",
                    file=sys.stderr,
                    flush=True,
                )
        checks.append(entry)
    return ok


def run(args: argparse.Namespace, registry: ServerRegistry, out_dir: Path) -> int:
    """The whole benchmark; returns the process exit status."""
    t_start = time.monotonic()
    started = dt.datetime.now().astimezone()
    meta: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M %Z"),
        "quick": args.quick,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": procfs.cpu_model(),
            "mem_gib": procfs.mem_total_gib(),
        },
        "loadavg_start": procfs.loadavg(),
        "wrk": loadgen.wrk_version(),
        "max_threads": loadgen.MAX_THREADS,
        "load_generator_shares_cpu": True,
        "notes": [
            "wrk runs on the same machine as the server and shares its CPUs",
            "DRUM has no /readyz: its start-up is timed to the first 200 on /",
            "DRUM's gunicorn config sets keepalive=0, so DRUM closes every connection even in "
            "the keep-alive runs",
            "Tandem's flask stack is one process and is compared with DRUM at 1 worker",
        ],
    }

    drum_venv = args.drum_venv
    meta["drum"] = prepare.ensure_drum_venv(drum_venv, args.base_python, args.reinstall_drum)
    tandem_py = args.tandem_venv / "bin" / "python"
    exe = Executables(
        drum=drum_venv / "bin" / "drum",
        tandem=args.tandem_venv / "bin" / "tandem",
        tandem_python=tandem_py,
        tandem_src=args.tandem_src.resolve() if args.tandem_src else None,
    )
    meta["tandem_source"] = tandem_source(args.tandem_src)

    build = out_dir / "build"
    prepare.log(f"building data, payloads and models under {build}")
    files = prepare.write_data(build)
    built = prepare.build_models(build, drum_venv / "bin" / "python", tandem_py, files)
    meta["build"] = built.build_info
    tside = built.build_info["tandem_side"]
    meta["tandem"] = {
        "tandem": tside["installed"].get("tandem", "unknown"),
        "python": tside["python"],
        "scikit-learn": tside["sklearn"],
        "pandas": tside["pandas"],
        "numpy": tside["numpy"],
    }
    side = (
        "per-side copies built from the same data and seed (scikit-learn versions differ)"
        if built.per_side_copies
        else "one set of pickles built with DRUM's python and loaded by both sides"
    )
    meta["models_note"] = (
        "Ridge (regression) and LogisticRegression (binary, labels yes/no) on 10 float "
        f"features, artifact-only code dirs (model.pkl, no custom.py); {side}; a second, "
        "independent build in Tandem's venv gave identical bytes: "
        f"{built.build_info['identical_independent_builds']}. Echo: unstructured "
        "`score_unstructured` returning the body."
    )

    payloads = {
        "1row": Payload("1 row", files.rows1, "text/csv", "/predict/"),
        "1000rows": Payload("1000 rows", files.rows1000, "text/csv", "/predict/"),
        "echo": Payload("1 MiB", files.echo, "application/octet-stream", "/predictUnstructured/"),
    }
    binary_flags = ("--positive-class-label", "yes", "--negative-class-label", "no")
    models = [
        ModelSpec("regression", "regression", built.drum["regression"], built.tandem["regression"]),
        ModelSpec("binary", "binary", built.drum["binary"], built.tandem["binary"], binary_flags),
        ModelSpec("echo", "unstructured", built.drum["echo"], built.tandem["echo"]),
    ]
    plan = Plan(
        servers=[
            s for s in all_servers(args.workers) if not args.servers or s.name in args.servers
        ],
        models=models,
        payloads={
            "regression": [payloads["1row"], payloads["1000rows"]],
            "binary": [payloads["1row"], payloads["1000rows"]],
            "echo": [payloads["echo"]],
        },
        scenarios=make_scenarios(payloads, args.quick),
        duration=args.duration if args.duration else (3.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0),
        verify_first=args.verify_first if args.verify_first is not None else not args.quick,
        router_connections=[8] if args.quick else [1, 8, 32],
    )
    # The rollout-router scenario runs on the Tandem fastapi ×1 regression server, right after
    # its own cells; without that server in the run there is nothing to put the router in front of.
    router: dict[str, Any] = {
        "server": routerlib.BACKEND.name,
        "model": routerlib.BACKEND_MODEL,
        "rows": [],
    }
    if not args.router:
        plan.router_connections = []
        router["skipped"] = "`--no-router` was given"
    elif routerlib.BACKEND not in plan.servers:
        plan.router_connections = []
        router["skipped"] = (
            f"{routerlib.BACKEND.name}, the server the router is put in front of, is not in "
            "this run (`--servers`, `--workers`)"
        )
    router["connections"] = plan.router_connections
    if not any(s.impl == "drum" for s in plan.servers):
        raise SystemExit("--servers must include a DRUM server: it gives the reference answers")
    meta["duration_s"] = plan.duration
    meta["warmup_s"] = plan.warmup
    meta["verify_first"] = plan.verify_first
    meta["scenarios"] = [s.key for s in plan.scenarios]
    meta["router_connections"] = plan.router_connections

    # One quick invocation of each program, so a broken install stops the run with its own
    # error instead of failing every server start.
    preflight(
        [s for s in (next((x for x in plan.servers if x.impl == i), None) for i in IMPLS) if s],
        models[0],
        exe,
    )

    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    reference: dict[tuple[str, str], Answer] = {}
    checks: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    failures: list[str] = []
    startup: dict[str, dict[str, list[float]]] = {s.name: {} for s in plan.servers}
    idle_memory: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in plan.servers}
    scenario_index = {s.key: i for i, s in enumerate(plan.scenarios)}
    n_runs = 0
    phases: dict[str, float] = {"setup": time.monotonic() - t_start, "server start-up": 0.0}

    def start(spec: ServerSpec, model: ModelSpec, tag: str) -> RunningServer | None:
        nonlocal n_runs
        n_runs += 1
        server = registry.start(spec, model, exe, logs / f"{spec.name}-{model.name}-{tag}.log")
        try:
            secs = server.wait_ready(STARTUP_TIMEOUT)
        except ServerFailed as exc:
            registry.stop(server)
            failures.append(str(exc).splitlines()[0])
            prepare.log("\n".join(str(exc).splitlines()[-4:]))
            if spec.impl == "drum" and not reference:
                raise
            return None
        phases["server start-up"] += secs
        startup[spec.name].setdefault(model.name, []).append(secs)
        idle_memory[spec.name].setdefault(model.name, server.memory())
        prepare.log(f"{spec.name} {model.name}: ready in {secs:.2f}s (port {server.port})")
        return server

    # Order: by worker group, then model, then server, so that DRUM gives the reference for a
    # model before any Tandem server of that model is checked.
    groups: list[list[ServerSpec]] = []
    for spec in plan.servers:
        if groups and groups[-1][0].workers == spec.workers:
            groups[-1].append(spec)
        else:
            groups.append([spec])
    if not any(s.impl == "drum" for s in groups[0]):
        raise SystemExit("the first worker group must include DRUM (the reference)")

    if plan.verify_first:
        prepare.log("verification pass: every server's answers against DRUM's, nothing timed yet")
        for group in groups:
            for model in plan.models:
                for spec in group:
                    server = start(spec, model, "verify")
                    if server is None:
                        continue
                    try:
                        check_identity(server, plan.payloads[model.name], reference, checks)
                    except (OSError, http.client.HTTPException, RuntimeError) as exc:
                        failures.append(f"{spec.name} {model.name}: {exc}".splitlines()[0])
                        prepare.log(f"{spec.name} {model.name} check failed: {exc}")
                    finally:
                        registry.stop(server)

    prepare.log("timing pass")
    for group in groups:
        for model in plan.models:
            timed = [s for s in plan.scenarios if s.model == model.name]
            if plan.verify_first and not timed:
                continue
            for spec in group:
                have_ref = all((model.name, p.name) in reference for p in plan.payloads[model.name])
                if not timed and spec.impl == "drum" and have_ref:
                    continue  # started only to be checked, and DRUM needs no check against DRUM
                if not timed and args.quick and spec.workers > 1:
                    # --quick checks models it does not time on one server per stack; the
                    # multi-worker servers run the same code and are checked on what they serve.
                    continue
                server = start(spec, model, "timed")
                if server is None:
                    continue
                try:
                    if not plan.verify_first:
                        check_identity(server, plan.payloads[model.name], reference, checks)
                    if not timed:
                        continue
                    warm = list(dict.fromkeys(s.payload for s in timed))
                    if args.quick:
                        warm = warm[:1]  # the others were just posted by the identity check
                    loadgen.warm_up(server, warm, plan.warmup)
                    for scenario in timed:
                        try:
                            cell = loadgen.measure(server, scenario, plan.duration)
                        except Exception as exc:  # one broken cell must not lose the run
                            failures.append(f"{spec.name} {scenario.label}: {exc}".splitlines()[0])
                            prepare.log(f"{spec.name} {scenario.label} failed: {exc}")
                            if server.proc.poll() is not None:
                                break
                            continue
                        cell.update(
                            server=spec.name,
                            label=spec.label,
                            impl=spec.impl,
                            stack=spec.stack,
                            workers=spec.workers,
                            compare_workers=spec.workers,
                            scenario_label=scenario.label,
                            scenario_index=scenario_index[scenario.key],
                        )
                        cells.append(cell)
                        prepare.log(
                            f"{spec.name} {scenario.label}: {cell['rps']:.0f} req/s, "
                            f"p99 {cell['p99_ms']:.1f} ms, {cell['errors']} errors, "
                            f"CPU {cell['server_cpu_ms_per_req'] or 0:.2f} ms/req"
                        )
                    if (
                        plan.router_connections
                        and spec == routerlib.BACKEND
                        and model.name == routerlib.BACKEND_MODEL
                        and server.proc.poll() is None
                    ):
                        run_router(server, payloads["1row"], plan, exe, logs, router, failures)
                except (OSError, http.client.HTTPException, RuntimeError) as exc:
                    failures.append(f"{spec.name} {model.name}: {exc}".splitlines()[0])
                    prepare.log(f"{spec.name} {model.name} failed: {exc}")
                finally:
                    registry.stop(server)

    mean_startup = {
        (name, model): sum(v) / len(v) for name, per in startup.items() for model, v in per.items()
    }
    report.add_ratios(cells, mean_startup)
    if plan.router_connections and not router["rows"] and "error" not in router:
        # The fastapi ×1 regression server failed before its cells were timed.
        router["skipped"] = f"{routerlib.BACKEND.name} did not serve the regression model"
    meta["loadavg_end"] = procfs.loadavg()
    meta["wall_s"] = time.monotonic() - t_start
    phases["wrk (warm-up and cells)"] = loadgen.WRK_SECONDS[0]
    phases["other (checks, stops)"] = meta["wall_s"] - sum(phases.values())
    meta["time_breakdown_s"] = phases
    meta["server_starts"] = n_runs
    results = {
        "meta": meta,
        "servers": [
            {
                "name": s.name,
                "label": s.label,
                "impl": s.impl,
                "stack": s.stack,
                "workers": s.workers,
                "compare_workers": s.workers,
                "startup_samples": startup[s.name],
                "startup_s": {m: sum(v) / len(v) for m, v in startup[s.name].items()},
                "idle_memory": idle_memory[s.name],
            }
            for s in plan.servers
        ],
        "identity": checks,
        "cells": cells,
        "router": router,
        "failures": failures,
    }
    md = report.markdown(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out_dir / "results.md").write_text(md + "\n")
    print(md)
    prepare.log(f"wrote {out_dir / 'results.md'} and results.json in {meta['wall_s']:.0f}s")
    mismatches = [c for c in checks if not c["identical"]]
    if mismatches:
        prepare.log(f"!!! {len(mismatches)} BYTE MISMATCH(ES) against DRUM: see results.md")
    return 1 if mismatches or failures else 0


def run_router(
    server: RunningServer,
    payload: Payload,
    plan: Plan,
    exe: Executables,
    logs: Path,
    out: dict[str, Any],
    failures: list[str],
) -> None:
    """The rollout-router scenario on a server that has just been timed; fills ``out``."""
    prepare.log(f"rollout router in front of {server.spec.name} ({server.model.name})")

    def show(row: dict[str, Any]) -> None:
        prepare.log(
            f"{row['engine']} router, {payload.name}, {row['connections']} conns, keep-alive: "
            f"{row['direct_rps']:.0f} req/s direct, {row['routed_rps']:.0f} routed "
            f"({row['routed_over_direct'] or 0:.2f}×), router CPU "
            f"{row['router_cpu_ms_per_request']:.2f} ms/req, {row['errors']} errors"
        )

    try:
        out.update(
            routerlib.run_scenario(
                exe.tandem_python,
                server.port,
                payload,
                plan.router_connections,
                plan.duration,
                plan.warmup,
                logs / f"router-{server.spec.name}-{server.model.name}.log",
                exe.tandem_src,
                on_row=show,
            )
        )
    except Exception as exc:  # a broken router must not lose the run
        out["error"] = str(exc).splitlines()[0]
        failures.append(f"rollout router: {out['error']}")
        prepare.log(f"rollout router failed: {exc}")
        return
    check = out["routed_answer"]
    if not check["identical"]:
        failures.append(f"rollout router: routed answer differs from direct: {check['detail']}")


def tandem_source(src: Path | None) -> str:
    """Which Tandem code is benchmarked: the repository's revision, or the given src dir."""
    if src is not None:
        return f"{src.resolve()} (--tandem-src)"

    def git(*argv: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    rev = git("rev-parse", "--short", "HEAD") or "unknown revision"
    dirty = " with uncommitted changes in src/" if git("status", "--porcelain", "--", "src") else ""
    return f"{REPO / 'src'} at {rev}{dirty}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description="Benchmark Tandem against DataRobot DRUM (see bench/README.md)."
    )
    p.add_argument("--quick", action="store_true", help="fewer scenarios, 3 s cells (< 3 min)")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 10, quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per payload (default 3, quick 1)")
    p.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="worker counts, comma-separated (default 1,2)",
    )
    p.add_argument(
        "--servers",
        type=lambda s: set(s.split(",")),
        help="only these servers, e.g. drum-gunicorn-1w,tandem-fastapi-1w",
    )
    verify = p.add_mutually_exclusive_group()
    verify.add_argument(
        "--verify-first",
        dest="verify_first",
        action="store_true",
        default=None,
        help="check every server before timing any (default in full runs; costs a start each)",
    )
    verify.add_argument(
        "--no-verify-first",
        dest="verify_first",
        action="store_false",
        help="check each server right before timing it, in the same process (default --quick)",
    )
    p.add_argument(
        "--no-router",
        dest="router",
        action="store_false",
        help="skip the rollout-router scenario (run by default on tandem-fastapi-1w, "
        "regression, when that server is in the run)",
    )
    p.add_argument("--drum-venv", type=Path, default=BENCH / ".drum-venv")
    p.add_argument(
        "--tandem-src",
        type=Path,
        help="run `python -m tandem` from this src/ folder (e.g. an export of another "
        "revision) instead of the venv's installed Tandem",
    )
    p.add_argument("--tandem-venv", type=Path, default=REPO / ".venv")
    p.add_argument(
        "--base-python",
        default=getattr(sys, "_base_executable", sys.executable),
        help="interpreter that creates the DRUM venv (default: this Python's base)",
    )
    p.add_argument("--reinstall-drum", action="store_true", help="recreate bench/.drum-venv")
    p.add_argument("--results", type=Path, default=BENCH / "results", help="output folder")
    return p.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the benchmark and always stop every server it started."""
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    out_dir = args.results / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    registry = ServerRegistry()
    try:
        return run(args, registry, out_dir)
    except ServerFailed as exc:
        prepare.log(f"cannot benchmark: {exc}")
        return 2
    finally:
        registry.stop_all()


if __name__ == "__main__":
    sys.exit(main())
