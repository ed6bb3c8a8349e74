"""``tandem fleet start|status|history|pause|resume|abort|promote|report``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_STATE = "tandem-fleet.sqlite3"
logger = logging.getLogger("tandem.fleet")

#: ``start`` exit codes.
EXIT_PROMOTED = 0
EXIT_NOT_PROMOTED = 1
"""Rolled back, aborted, stopped before the end, or a bad command line."""


def _state_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", default=DEFAULT_STATE, help=f"fleet state file (SQLite; default {DEFAULT_STATE})"
    )


def add_parser(sub: Any) -> None:
    """Register ``tandem fleet``."""
    fleet = sub.add_parser("fleet", help="walk DRUM_FASTAPI_CANARY_PERCENT across many deployments")
    actions = fleet.add_subparsers(dest="fleet_command", required=True)

    start = actions.add_parser("start", help="start (or resume) a fleet rollout and run it")
    _state_arg(start)
    start.add_argument("--inventory", type=Path, help="fleet.yaml (recorded: optional on resume)")
    start.add_argument(
        "--prometheus-url", help="judge the fleet by Prometheus (required on a new rollout)"
    )
    start.add_argument(
        "--prometheus-selector",
        default=None,
        help="labels of the fleet's series, e.g. 'job=\"drum-fleet\"'",
    )
    start.add_argument(
        "--file-sd",
        type=Path,
        default=None,
        help="keep this Prometheus file_sd JSON current (labels server_type, deployment_id)",
    )
    start.add_argument(
        "--file-sd-label",
        action="append",
        default=None,
        metavar="K=V",
        help="an extra label on every file_sd target (repeatable)",
    )
    start.add_argument(
        "--max-unavailable",
        type=int,
        default=None,
        help="deployments restarted at a time (default 1)",
    )
    start.add_argument("--config", type=Path, default=None, help="rollout.yaml (the same spec)")
    for name in ("steps", "step-hold", "interval", "window", "reduction-wait", "min-samples"):
        start.add_argument(f"--{name}", default=None)
    start.add_argument("--auto-resume", action="store_true", default=None)
    start.add_argument("--notify-url", default=None, help="POST Slack-compatible JSON on changes")
    start.add_argument(
        "--pagerduty-url",
        default=None,
        help="PagerDuty Events API v2 URL (key in $TANDEM_PAGERDUTY_ROUTING_KEY)",
    )
    start.add_argument(
        "--kube-context", default=None, help="kubeconfig context for Kubernetes deployments"
    )
    start.add_argument(
        "--dashboard-address",
        default=None,
        metavar="HOST:PORT",
        help="serve the rollout dashboard with the fleet's deployments here (read-only, no "
        "authentication: keep it on loopback)",
    )
    start.add_argument(
        "--dry-run",
        action="store_true",
        help="print which deployments move at each step (and the ConfigMap patches); change "
        "nothing",
    )
    start.add_argument("--logging-level", default="info")

    for name, text in (
        ("status", "every deployment: side, health, last verification, share of traffic"),
        ("history", "every decision with its reason"),
    ):
        p = actions.add_parser(name, help=text)
        _state_arg(p)
        p.add_argument("--json", action="store_true")
        if name == "status":
            p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    for name in ("pause", "resume", "abort", "promote"):
        p = actions.add_parser(
            name,
            help=f"{name} the running fleet rollout"
            + (" (at a step held by failed verifications: retry them)" if name == "resume" else ""),
        )
        _state_arg(p)
    report = actions.add_parser(
        "report", help="report an extension failure (more than 3 in the window: reduction)"
    )
    _state_arg(report)
    report.add_argument("--extension", required=True, metavar="TEXT")


def run(args: argparse.Namespace) -> int:
    """Dispatch ``tandem fleet ...``."""
    from tandem.errors import ConfigError

    try:
        if args.fleet_command == "start":
            return _start(args)
        if args.fleet_command == "status":
            return _status(args)
        if args.fleet_command == "history":
            from tandem.rollout.cli import _history

            return _history(args)
        if args.fleet_command == "report":
            from tandem.rollout.cli import _report

            return _report(args)
        return _command(args)
    except ConfigError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)
        return EXIT_NOT_PROMOTED


def _labels(items: list[str] | None) -> dict[str, str] | None:
    """``--file-sd-label`` pairs, refused where Prometheus would refuse the whole file."""
    if items is None:
        return None
    import re

    from tandem.errors import ConfigError
    from tandem.rollout.cli import _pairs

    labels = _pairs(items, "--file-sd-label")
    for name in labels:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__"):
            raise ConfigError(f"--file-sd-label {name!r} is not a Prometheus label name")
        if name in ("server_type", "deployment_id"):
            raise ConfigError(f"--file-sd-label {name!r} is the fleet's own label")
    return labels


def _start(args: argparse.Namespace) -> int:
    from tandem.errors import ConfigError
    from tandem.rollout.store import StateLock, StateLocked

    if args.dry_run:
        return _dry_run(args)
    lock = StateLock(Path(args.state).resolve(), "tandem fleet")
    try:
        lock.acquire()
    except StateLocked as exc:
        raise ConfigError(str(exc)) from None
    try:
        return _run_locked(args)
    finally:
        lock.release()


def _spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "step_hold": args.step_hold,
        "interval": args.interval,
        "window": args.window,
        "reduction_wait": args.reduction_wait,
        "min_samples": args.min_samples,
        "auto_resume": args.auto_resume,
    }
    if args.steps:
        from tandem.rollout.spec import parse_steps

        overrides["steps"] = parse_steps(args.steps)
    return overrides


def _inventory(args: argparse.Namespace, saved: dict[str, Any] | None) -> Any:
    from tandem.errors import ConfigError
    from tandem.fleet.inventory import load_inventory

    path = args.inventory or (Path(saved["inventory"]) if saved else None)
    if path is None:
        raise ConfigError("fleet start needs --inventory fleet.yaml")
    return load_inventory(Path(path))


def _places(inventory: Any, context: str | None, dry_run: bool = False) -> dict[str, Any]:
    from functools import cache

    from tandem.fleet.places import kubernetes_api, place_for

    api = cache(lambda: kubernetes_api(context))
    return {m.id: place_for(m, api, dry_run) for m in inventory.members}


def check_places(inventory: Any, places: dict[str, Any]) -> list[str]:
    """Refuse parameter stores that would defeat the percentage; warn about missing ids."""
    from tandem.errors import ConfigError
    from tandem.fleet.places import RestartError

    problems, warnings = [], []
    for member in inventory.members:
        place = places[member.id]
        try:
            pinned, own = place.pinned(), place.deployment_id()
        except RestartError as exc:
            problems.append(f"{member.id}: cannot read {member.where}: {exc}")
            continue
        if pinned:
            problems.append(
                f"{member.id}: {member.where} sets DRUM_SERVER_TYPE={pinned}, which wins over "
                "DRUM_FASTAPI_CANARY_PERCENT; remove it so the percentage picks the side"
            )
        if own is not None and own != member.id:
            problems.append(
                f"{member.id}: {member.where} sets MLOPS_DEPLOYMENT_ID={own}, not the inventory's "
                "id; the percentage would pick its side from another id's hash"
            )
        elif own is None:
            warnings.append(
                f"{member.id}: {member.where} does not set MLOPS_DEPLOYMENT_ID; the deployment "
                "must get it (equal to its id) from elsewhere, or it hashes as 'default'"
            )
    if problems:
        raise ConfigError("the fleet cannot be walked:\n  - " + "\n  - ".join(problems))
    return warnings


def _run_locked(args: argparse.Namespace) -> int:
    from tandem.errors import ConfigError
    from tandem.fleet import checks
    from tandem.fleet.controller import FleetController
    from tandem.fleet.filesd import target_groups, write_file_sd
    from tandem.fleet.metrics import PrometheusFleetMetrics
    from tandem.fleet.walker import MemberState, Walker
    from tandem.rollout import seams
    from tandem.rollout.cli import _alerting, _pager, _record_spec_change, _store
    from tandem.rollout.controller import http_notifier
    from tandem.rollout.spec import RolloutSpec

    logging.getLogger("tandem.fleet").setLevel(args.logging_level.upper())
    logging.getLogger("tandem.rollout").setLevel(args.logging_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _pager(args.pagerduty_url)  # refused before the state file is touched
    store = _store(args.state)
    if store.get_json("deployment") is not None:
        raise ConfigError(f"{args.state} holds a `tandem rollout`, not a fleet rollout")
    notify_url, pagerduty_url = _alerting(args, store)  # a resumed fleet keeps paging
    pager = _pager(pagerduty_url)
    saved = store.get_json("fleet")
    saved_spec = store.get_json("spec")
    spec = RolloutSpec.load(args.config, _spec_overrides(args), base=saved_spec)
    inventory = _inventory(args, saved)
    seam = seams.MetricSeam(args.prometheus_url, args.prometheus_selector or "")
    if saved is not None:
        recorded = saved.get("prometheus") or {}
        url, change = seams._prometheus_url(recorded, args.prometheus_url)
        selector = (
            args.prometheus_selector
            if args.prometheus_selector is not None
            else recorded.get("prometheus_selector") or ""
        )
        seam = seams.MetricSeam(url, selector)
        before = {m["id"] for m in saved.get("members", [])}
        after = {m.id for m in inventory.members}
        changes: dict[str, Any] = dict(change)
        if selector != (recorded.get("prometheus_selector") or ""):
            changes["prometheus_selector"] = {
                "before": recorded.get("prometheus_selector"),
                "after": selector,
            }
        if before != after:
            changes["deployments"] = {
                "added": sorted(after - before),
                "removed": sorted(before - after),
            }
        status = store.load_status()
        if changes and status is not None:
            store.save(
                status,
                action="seam_change",
                rule="operator.seam_change",
                from_weight=status.weight,
                reason=f"resumed with changed settings ({', '.join(changes)})",
                numbers={"changes": changes},
            )
        if saved_spec is not None:
            _record_spec_change(store, saved_spec, spec)
    elif not args.prometheus_url:
        raise ConfigError(
            "fleet start needs --prometheus-url: the fleet is judged by its metrics by "
            "server_type (label the targets with server_type; --file-sd does it)"
        )
    file_sd = args.file_sd or (Path(saved["file_sd"]) if saved and saved.get("file_sd") else None)
    labels = _labels(args.file_sd_label)
    if labels is None:
        labels = (saved or {}).get("file_sd_labels") or {}
    max_unavailable = (
        args.max_unavailable
        if args.max_unavailable is not None
        else (saved or {}).get("max_unavailable") or 1
    )
    if max_unavailable < 1:
        raise ConfigError("--max-unavailable must be at least 1")
    places = _places(inventory, args.kube_context)
    for warning in check_places(inventory, places):
        logger.warning("%s", warning)
    store.set_json(
        "fleet",
        {
            "inventory": str(inventory.path),
            "members": [m.record() for m in inventory.members],
            "max_unavailable": max_unavailable,
            "file_sd": str(file_sd.resolve()) if file_sd else None,
            "file_sd_labels": labels,
            "prometheus": seam.record(),
        },
    )
    store.set_json("spec", spec.to_dict())
    states = {
        i: MemberState.from_dict(doc)
        for i, doc in (store.get_json("fleet_members") or {}).items()
        if i in {m.id for m in inventory.members}
    }

    def publish() -> None:
        if file_sd is None:
            return
        sides = {
            i: (None if s.health == "restarting" else s.side) for i, s in walker.states.items()
        }
        write_file_sd(file_sd, target_groups(inventory.members, sides, labels))

    walker = Walker(
        inventory.members,
        places,
        states,
        checks.probe,
        checks.wait_ready,
        checks.verify,
        max_unavailable,
        on_change=publish,
    )
    assert seam.prometheus_url is not None
    controller = FleetController(
        spec,
        store,
        walker,
        PrometheusFleetMetrics(seam.prometheus_url, seam.prometheus_selector),
        http_notifier(notify_url),
        pager,
    )
    print(
        f"fleet: {len(inventory.members)} deployments, steps "
        f"{' -> '.join(f'{s:g}%' for s in controller.spec.steps)}, at most {max_unavailable} "
        f"restarting at a time; state in {args.state}"
        + (f"; file_sd {file_sd}" if file_sd else ""),
        flush=True,
    )

    dashboard = None
    if args.dashboard_address:
        from tandem.fleet.dashboard import DashboardServer
        from tandem.rollout.cli import _hostport

        host, port = _hostport(args.dashboard_address, "--dashboard-address")
        dashboard = DashboardServer(Path(args.state).resolve(), host, port).start()
        print(f"fleet: dashboard on {dashboard.url}", flush=True)

    def stop(*_: Any) -> None:
        controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        status = controller.run()
    finally:
        controller.close()
        if dashboard is not None:
            dashboard.stop()
    print(f"fleet stopped: {status.phase.value} at {status.weight:g}%", flush=True)
    return exit_code(controller, status)


def exit_code(controller: Any, status: Any) -> int:
    """0 only when the fleet was promoted and every deployment moved: an operator's promote
    with deployments put back on Flask is reported and exits 1."""
    if status.phase.value != "promoted":
        return EXIT_NOT_PROMOTED
    behind = controller.left_behind(status)
    if behind:
        print(
            f"fleet: promoted, but {len(behind)} deployment(s) are still on Flask (failed on "
            f"FastAPI and put back, or not attempted after a failure): {', '.join(behind)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_NOT_PROMOTED
    return EXIT_PROMOTED


def _dry_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tandem.fleet.plan import bucket, format_percent, plan_steps, side_for
    from tandem.rollout.spec import RolloutSpec

    inventory = _inventory(args, None)
    spec = RolloutSpec.load(args.config, _spec_overrides(args))
    places = _places(inventory, args.kube_context, dry_run=True)
    # A dry run sends nothing to Kubernetes (it is the plan shown before credentials exist):
    # only env files are checked.
    files = replace(inventory, members=tuple(m for m in inventory.members if m.kubernetes is None))
    warnings = check_places(files, places)
    ids = [m.id for m in inventory.members]
    plan = plan_steps(spec.steps, ids)
    print(
        f"{len(ids)} deployments from {inventory.path}; steps "
        f"{' -> '.join(f'{s:g}%' for s in plan.steps)}"
        + (
            f" (skipped, moving nobody: {', '.join(f'{s:g}%' for s in plan.skipped)})"
            if plan.skipped
            else ""
        )
    )
    print(f"{'deployment':<32} {'bucket':>7}  {'percent now':>11}  on FastAPI from")
    for member in sorted(inventory.members, key=lambda m: bucket(m.id)):
        now = places[member.id].read() if member.kubernetes is None else "?"
        first = next((s for s in plan.steps if side_for(member.id, s) == "fastapi"), None)
        print(
            f"{member.id:<32} {bucket(member.id):>7.2f}  {now or '(unset)':>11}  "
            f"{'-' if first is None else format_percent(first) + '%'}"
        )
    for percent, moved in plan.moves:
        print(f"step {percent:g}%: restart {', '.join(moved)}")
    print(
        "rollback (Level 1): 0% written everywhere; every FastAPI deployment restarted onto "
        "Flask and verified; then every deployment verified on Flask"
    )
    for member in inventory.members:
        if member.kubernetes is not None:
            for line in _kubernetes_plan(member, places[member.id], plan.steps):
                print(line)
    for warning in warnings:
        print(f"warning: {warning}")
    print("dry run: nothing was changed")
    return 0


def _kubernetes_plan(member: Any, place: Any, steps: tuple[float, ...]) -> list[str]:
    """The exact requests a Kubernetes entry gets: its ConfigMap patch at the first step (each
    step sends its own percentage) and its Deployment patch at the step that moves it."""
    from tandem.fleet.plan import format_percent, side_for
    from tandem.ops import kube

    k = member.kubernetes
    query = f"?fieldManager={kube.FIELD_MANAGER}"
    first = steps[0]
    configmap = place.write(format_percent(first))["patch"]
    lines = [
        f"{member.id}: sends to the Kubernetes API, as {kube.PATCH_CONTENT_TYPE}:",
        f"  at {first:g}% (each step its own percentage): PATCH "
        f"{kube.configmap_path(k.namespace, k.configmap)}{query}",
        f"    {json.dumps(configmap)}",
    ]
    moves = next((s for s in steps if side_for(member.id, s) == "fastapi"), None)
    if moves is None:
        return lines
    label = {"spec": {"template": {"metadata": {"labels": {kube.SERVER_TYPE_LABEL: "fastapi"}}}}}
    lines += [
        f"  at {moves:g}%, restarted onto fastapi: PATCH "
        f"{kube.deployment_path(k.namespace, k.deployment)}{query}",
        f"    {json.dumps(place.restart_patch('fastapi'))}",
        f"    (restartedAt stamped when sent; the same patch also sets the pod template's "
        f"{kube.SERVER_TYPE_LABEL} label, if it has one: {json.dumps(label)}, and its "
        f"{kube.CONFIG_DIGEST_ANNOTATION} annotation, if it has one, to the digest of the "
        "ConfigMap's new data), then waits until it has rolled out",
    ]
    return lines


def status_document(state: str) -> dict[str, Any]:
    """Everything ``tandem fleet status`` shows, as data."""
    from tandem.fleet.controller import status_rows
    from tandem.rollout.cli import _recorded

    store = _recorded(state)
    if store is None:
        return {"status": None, "deployments": []}
    try:
        status = store.load_status()
        decisions = store.decisions(limit=100000)
        return {
            "status": None if status is None else status.to_dict(),
            "time_in_step_s": None
            if status is None
            else round(time.time() - status.step_started_at, 1),
            "deployments": status_rows(store),
            "last_decision": decisions[-1].__dict__ if decisions else None,
            "latest": (store.observations(limit=1) or [None])[-1],
            "fleet": store.get_json("fleet"),
        }
    finally:
        store.close()


def _verification_cell(row: dict[str, Any]) -> str:
    from tandem.rollout.cli import _when

    v = row.get("verification")
    if not v:
        return "—"
    mark = "ok" if v.get("passed") else "FAILED"
    text = f"{mark} on {v.get('expect')} {_when(float(v.get('at', 0)))}"
    return text if v.get("passed") else f"{text}: {v.get('summary', '')}"[:90]


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tandem.rollout.cli import _when

    console = Console()
    while True:
        doc = status_document(args.state)
        if args.json:
            print(json.dumps(doc, default=str, sort_keys=True))
            return 0 if doc["status"] else 1
        st = doc["status"]
        if st is None:
            console.print(f"no fleet rollout recorded in {args.state}")
            return 1
        rows = doc["deployments"]
        on = sum(1 for r in rows if r.get("side") == "fastapi")
        table = Table(
            title=f"Tandem fleet — {st['phase']} at {st['weight']:g}% "
            f"({on} of {len(rows)} deployments on FastAPI)"
        )
        for column, justify in (
            ("deployment", "left"),
            ("bucket", "right"),
            ("side", "left"),
            ("at this %", "left"),
            ("health", "left"),
            ("last verification", "left"),
            ("share", "right"),
            ("requests", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in sorted(rows, key=lambda r: r.get("bucket") or 0.0):
            share = row.get("share")
            held = f" (held at {row['held_at']:g}%)" if row.get("held_at") is not None else ""
            table.add_row(
                escape(row["id"]),
                f"{row.get('bucket', 0):.2f}",
                str(row.get("side") or "?") + held,
                str(row.get("desired") or "?"),
                str(row.get("health") or "?"),
                escape(_verification_cell(row)),
                "—" if share is None else f"{share:.1%}",
                "—" if row.get("requests") is None else str(row["requests"]),
            )
        console.print(table)
        console.print(
            f"phase {st['phase']}, percentage {st['weight']:g}%, step {st['step_index']}, "
            f"{doc['time_in_step_s']:.0f}s in step",
            markup=False,
        )
        last = doc["last_decision"]
        if last:
            console.print(
                f"last decision {_when(last['at'])} {last['action']} [{last['rule']}]: "
                f"{last['reason']}",
                markup=False,
            )
        latest = doc["latest"] or {}
        if latest.get("reason"):
            console.print(f"next: {latest['reason']}", markup=False)
        if not args.watch:
            return 0
        time.sleep(1.0)
        console.clear()


def _command(args: argparse.Namespace) -> int:
    from tandem.rollout.cli import _recorded
    from tandem.rollout.store import StateLock

    store = _recorded(args.state)
    status = store.load_status() if store is not None else None
    if store is None or status is None:
        print(f"no fleet rollout recorded in {args.state}", file=sys.stderr)
        return 1
    seq = store.add_command(args.fleet_command)
    print(f"{args.fleet_command} queued (#{seq}); the fleet applies it at its next evaluation")
    if not status.phase.is_terminal and not StateLock(Path(args.state).resolve()).held():
        print(
            f"no controller is running this fleet rollout: `tandem fleet start --state "
            f"{args.state}` resumes it (with its recorded inventory and Prometheus) and then "
            "applies the command",
            file=sys.stderr,
        )
    return 0
