"""``tandem rollout start|status|history|pause|resume|abort|promote``."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_STATE = "tandem-rollout.sqlite3"
logger = logging.getLogger("tandem.rollout")


def _state_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        default=DEFAULT_STATE,
        help=f"rollout state file (SQLite; default {DEFAULT_STATE})",
    )


def add_parser(sub: Any) -> None:
    """Register ``tandem rollout``."""
    rollout = sub.add_parser("rollout", help="canary rollout with automatic rollback")
    actions = rollout.add_subparsers(dest="rollout_command", required=True)

    start = actions.add_parser("start", help="start (or resume) a rollout and supervise it")
    _state_arg(start)
    start.add_argument(
        "--code-dir", help="the model; the rollout runs both sides of it (spawn targets)"
    )
    start.add_argument(
        "--target-type", help="the model's target type (attach: default from the baseline's /info/)"
    )
    start.add_argument(
        "--baseline-url",
        help="attach targets: a deployment already serving the baseline stack (never started, "
        "stopped or restarted by the rollout; needs --candidate-url)",
    )
    start.add_argument("--candidate-url", help="attach targets: the candidate deployment")
    # Seam flags default to None: a resumed rollout keeps what it recorded, and only a flag
    # the command line states is compared with that (see tandem.rollout.seams).
    start.add_argument(
        "--traffic",
        choices=("builtin", "nginx"),
        default=None,
        help="who splits the traffic: the built-in router (default), or nginx (needs "
        "--nginx-conf and --prometheus-url)",
    )
    start.add_argument(
        "--nginx-conf",
        help="the include file the rollout owns (your nginx.conf includes it in http {})",
    )
    start.add_argument(
        "--nginx-test-cmd", default=None, help="checks the configuration (default: nginx -t)"
    )
    start.add_argument(
        "--nginx-reload-cmd",
        default=None,
        help="applies it gracefully (default: nginx -s reload)",
    )
    start.add_argument("--nginx-access-log", help="log each request's side here")
    start.add_argument(
        "--prometheus-url",
        help="judge by Prometheus (PromQL over the window) instead of the router's counters",
    )
    start.add_argument(
        "--prometheus-selector",
        default=None,
        help='labels of this deployment\'s series, e.g. \'namespace="ml", app="churn"\'',
    )
    start.add_argument(
        "--baseline-selector",
        default=None,
        help='the baseline\'s series (default server_type="flask")',
    )
    start.add_argument(
        "--candidate-selector",
        default=None,
        help='the candidate\'s series (default server_type="fastapi")',
    )
    start.add_argument(
        "--address",
        default=None,
        help=f"public address of the traffic router (host:port, default {DEFAULT_ADDRESS}); "
        "a resumed rollout keeps its own",
    )
    start.add_argument(
        "--admin-address",
        default=None,
        help="router admin/dashboard address (default 127.0.0.1, next port)",
    )
    start.add_argument("--admin-token", default=None, help="bearer token for the admin API")
    start.add_argument(
        "--baseline", default="flask", help="baseline server type (flask, gunicorn, fastapi)"
    )
    start.add_argument("--candidate", default="fastapi", help="candidate server type")
    start.add_argument("--config", type=Path, default=None, help="rollout.yaml")
    for name in (
        "steps",
        "shadow-duration",
        "step-hold",
        "interval",
        "window",
        "reduction-wait",
        "min-samples",
    ):
        start.add_argument(f"--{name}", default=None)
    start.add_argument("--auto-resume", action="store_true", default=None)
    start.add_argument(
        "--notify-url", default=None, help="POST a Slack-compatible JSON message on phase changes"
    )
    start.add_argument(
        "--pagerduty-url",
        default=None,
        help="page on-call: PagerDuty Events API v2 enqueue URL (trigger on rollback, resolve "
        "when the baseline is verified); routing key from $TANDEM_PAGERDUTY_ROUTING_KEY",
    )
    start.add_argument(
        "--backend-timeout",
        type=float,
        default=60.0,
        help="seconds the router waits for a backend before answering from the baseline",
    )
    start.add_argument("--baseline-env", action="append", default=[], metavar="K=V")
    start.add_argument("--candidate-env", action="append", default=[], metavar="K=V")
    start.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `tandem server` argument for both deployments (repeatable)",
    )
    start.add_argument("--logging-level", default="info")

    for name, text in (
        ("status", "show the rollout's state"),
        ("history", "every decision with its reason"),
    ):
        p = actions.add_parser(name, help=text)
        _state_arg(p)
        p.add_argument("--json", action="store_true")
        if name == "status":
            p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    for name in ("pause", "resume", "abort", "promote"):
        p = actions.add_parser(name, help=f"{name} the running rollout")
        _state_arg(p)
    report = actions.add_parser(
        "report", help="report an extension failure (more than 3 in the window: reduction)"
    )
    _state_arg(report)
    report.add_argument(
        "--extension", required=True, metavar="TEXT", help="what failed, as a user saw it"
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch ``tandem rollout ...``."""
    from tandem.errors import ConfigError

    try:
        if args.rollout_command == "start":
            return _start(args)
        if args.rollout_command == "status":
            return _status(args)
        if args.rollout_command == "history":
            return _history(args)
        if args.rollout_command == "report":
            return _report(args)
        return _command(args)
    except ConfigError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)
        return 1


def _pager(url: str | None) -> Any:
    """PagerDuty paging to ``url`` (``--pagerduty-url``; the key stays out of the argv)."""
    if not url:
        return None
    from tandem.errors import ConfigError
    from tandem.rollout.paging import PagerDuty

    key = os.environ.get("TANDEM_PAGERDUTY_ROUTING_KEY", "").strip()
    if not key:
        raise ConfigError("--pagerduty-url needs the routing key in TANDEM_PAGERDUTY_ROUTING_KEY")
    return PagerDuty(url, key)


def _traffic_engine(dep: Any) -> Any:
    """The traffic seam: nginx's include file, or None (the built-in router)."""
    if dep.traffic != "nginx":
        return None
    from tandem.rollout.nginx import NginxTraffic

    urls = dep.side_urls()
    return NginxTraffic(
        conf_path=Path(dep.nginx_conf),
        listen=f"{dep.public_host}:{dep.public_port}",
        baseline_url=urls["baseline"],
        candidate_url=urls["candidate"],
        test_cmd=dep.nginx_test_cmd,
        reload_cmd=dep.nginx_reload_cmd,
        access_log=Path(dep.nginx_access_log) if dep.nginx_access_log else None,
        compare_url=f"http://127.0.0.1:{dep.compare_port}",
    )


def _metric_source(seam: Any) -> Any:
    """The metrics seam: Prometheus when the rollout has a Prometheus URL, else None (built in)."""
    if not seam.prometheus:
        return None
    from tandem.rollout.prometheus import PrometheusSource

    selectors = {
        side: sel
        for side, sel in (
            ("baseline", seam.baseline_selector),
            ("candidate", seam.candidate_selector),
        )
        if sel
    }
    return PrometheusSource(seam.prometheus_url, selectors, seam.prometheus_selector)


#: Where the router listens when ``--address`` is not given.
DEFAULT_ADDRESS = "127.0.0.1:8080"


def _stated(args: argparse.Namespace) -> Any:
    """The seam flags this command line states, spelled as the state records them."""
    from tandem.rollout.seams import Stated

    return Stated(
        baseline_url=args.baseline_url.rstrip("/") if args.baseline_url else None,
        candidate_url=args.candidate_url.rstrip("/") if args.candidate_url else None,
        traffic=args.traffic,
        nginx_conf=str(Path(args.nginx_conf).resolve()) if args.nginx_conf else None,
        nginx_test_cmd=args.nginx_test_cmd,
        nginx_reload_cmd=args.nginx_reload_cmd,
        nginx_access_log=args.nginx_access_log,
        prometheus_url=args.prometheus_url or None,
        prometheus_selector=args.prometheus_selector,
        baseline_selector=args.baseline_selector,
        candidate_selector=args.candidate_selector,
    )


def _record_seam_change(store: Any, changes: dict[str, Any]) -> None:
    """On resume, seam settings that differ from the recorded ones are a decision-log entry."""
    status = store.load_status()
    if not changes or status is None:
        return
    store.save(
        status,
        action="seam_change",
        rule="operator.seam_change",
        from_weight=status.weight,
        reason=f"resumed with changed seam settings ({', '.join(changes)})",
        numbers={"changes": changes},
    )
    logger.warning("resumed with changed seam settings: %s", ", ".join(changes))


def _targets(args: argparse.Namespace) -> str:
    """Check the targets flags (spawn or attach) and return the model's target type."""
    from tandem.errors import ConfigError

    if bool(args.baseline_url) != bool(args.candidate_url):
        raise ConfigError("--baseline-url and --candidate-url go together (attach targets)")
    if args.baseline_url:
        import httpx

        if args.baseline_env or args.candidate_env or args.server_arg:
            raise ConfigError(
                "--baseline-env, --candidate-env and --server-arg configure spawned servers; "
                "attached deployments are configured where they run"
            )
        if args.target_type:
            return str(args.target_type)
        try:
            info = httpx.get(args.baseline_url.rstrip("/") + "/info/", timeout=10).json()
            return str(info["targetType"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot read the target type from {args.baseline_url}/info/ ({exc}); "
                "pass --target-type"
            ) from None
    if not args.code_dir or not args.target_type:
        raise ConfigError(
            "rollout start needs --code-dir and --target-type (spawn targets), or "
            "--baseline-url and --candidate-url (attach targets)"
        )
    return str(args.target_type)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    from tandem.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects K=V, got {item!r}")
        out[key] = value
    return out


def _hostport(text: str, flag: str) -> tuple[str, int]:
    from tandem.settings import parse_address

    try:
        return parse_address(text)
    except Exception as exc:
        raise exc.__class__(f"{flag}: {exc}") from None


def _alerting(args: argparse.Namespace, store: Any) -> tuple[str | None, str | None]:
    """The notification and PagerDuty URLs. A resumed rollout keeps paging (the PagerDuty URL is
    recorded; its routing key never is) and must keep notifying: a webhook URL is a secret, so
    only its hash is recorded and a resume without the same ``--notify-url`` is refused."""
    from tandem.errors import ConfigError

    saved = store.get_json("alerting") or {}
    notify = args.notify_url or None
    digest = saved.get("notify_url_sha256")
    if notify is None and digest:
        raise ConfigError(
            "this rollout notifies a webhook: pass the same --notify-url to resume it (the "
            "state keeps only its hash)"
        )
    if notify is not None and digest and _token_digest(notify) != digest:
        logger.info("resuming with a different --notify-url")
    pagerduty = args.pagerduty_url or saved.get("pagerduty_url")
    store.set_json(
        "alerting",
        {
            "notify_url_sha256": _token_digest(notify) if notify else None,
            "pagerduty_url": pagerduty,
        },
    )
    return notify, pagerduty


def _check_addresses_kept(args: argparse.Namespace, recorded: dict[str, Any]) -> None:
    """A resumed rollout serves where it was started: a different ``--address`` or
    ``--admin-address`` is refused, not silently ignored."""
    from tandem.errors import ConfigError

    for flag, given, host_key, port_key in (
        ("--address", args.address, "public_host", "public_port"),
        ("--admin-address", args.admin_address, "admin_host", "admin_port"),
    ):
        if given is None:
            continue
        host, port = _hostport(given, flag)
        was = (recorded.get(host_key), recorded.get(port_key))
        if (host, port) != was:
            raise ConfigError(
                f"{flag} {given}: this rollout was started on {was[0]}:{was[1]} and resumes "
                "there (clients and nginx point at it); start a new rollout to move it"
            )


def _store(path: str) -> Any:
    from tandem.rollout.store import RolloutStore

    return RolloutStore(Path(path))


def _recorded(path: str) -> Any | None:
    """The state file's store, or None when there is no file: asking about a rollout (or
    queueing a command for one) never creates an empty state file."""
    if not Path(path).is_file():
        return None
    return _store(path)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _resumed_deployment(saved: dict[str, Any], token: str | None) -> Any:
    """The recorded deployment, with the admin token given again (the state keeps its hash)."""
    from tandem.errors import ConfigError
    from tandem.rollout.controller import Deployment

    fields = {k: v for k, v in saved.items() if k not in ("admin_token", "admin_token_sha256")}
    digest = saved.get("admin_token_sha256")
    if saved.get("admin_token"):  # a state file written before tokens were stored hashed
        digest = _token_digest(saved["admin_token"])
    if digest and not token:
        raise ConfigError(
            "this rollout's admin API has a token: pass the same --admin-token to resume it "
            "(the state file keeps only its hash)"
        )
    if token and not digest:
        raise ConfigError("this rollout was started without --admin-token; resume it without one")
    if token and digest and not hmac.compare_digest(_token_digest(token), digest):
        raise ConfigError("--admin-token does not match the token this rollout was started with")
    code_dir = Path(fields["code_dir"]) if fields.get("code_dir") else None
    return Deployment(**{**fields, "code_dir": code_dir, "admin_token": token})


def _spec_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The spec keys whose values differ, as ``{key: {"before": ..., "after": ...}}``."""
    keys = sorted(set(before) | set(after))
    return {
        k: {"before": before.get(k), "after": after.get(k)}
        for k in keys
        if json.dumps(before.get(k), sort_keys=True) != json.dumps(after.get(k), sort_keys=True)
    }


def _record_spec_change(store: Any, saved: dict[str, Any], spec: Any) -> None:
    """On resume, a spec that differs from the recorded one is its own decision-log entry."""
    from dataclasses import replace

    changes = _spec_changes(saved, spec.to_dict())
    if not changes:
        return
    status = store.load_status()
    store.set_json("spec", spec.to_dict())
    if status is None:
        return
    store.save(
        replace(status, spec_digest=spec.digest()),
        action="spec_change",
        rule="operator.spec_change",
        from_weight=status.weight,
        reason=f"resumed with a changed spec ({', '.join(changes)}); spec {spec.digest()}",
        numbers={"changes": changes},
    )
    logger.warning("resumed with a changed spec: %s", ", ".join(changes))


def _start(args: argparse.Namespace) -> int:
    from tandem.errors import ConfigError
    from tandem.rollout.store import StateLock, StateLocked

    lock = StateLock(Path(args.state).resolve())
    try:
        lock.acquire()
    except StateLocked as exc:
        raise ConfigError(str(exc)) from None
    try:
        return _run_locked(args)
    finally:
        lock.release()


def _run_locked(args: argparse.Namespace) -> int:
    from tandem.errors import ConfigError
    from tandem.rollout import seams
    from tandem.rollout.controller import (
        Controller,
        Deployment,
        RouterClient,
        Supervisor,
        build_children,
        check_attached,
        free_port,
        http_notifier,
        tls_variables,
    )
    from tandem.rollout.nginx import DEFAULT_RELOAD_CMD, DEFAULT_TEST_CMD
    from tandem.rollout.spec import RolloutSpec
    from tandem.rollout.verify import baseline_verifier
    from tandem.server_type import normalise_server_type

    logging.getLogger("tandem.rollout").setLevel(args.logging_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    overrides: dict[str, Any] = {
        "shadow_duration": args.shadow_duration,
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
    _pager(args.pagerduty_url)  # refused before anything starts, like every other bad flag
    store = _store(args.state)
    if store.get_json("fleet") is not None:
        raise ConfigError(f"{args.state} holds a fleet rollout: `tandem fleet start` runs it")
    notify_url, pagerduty_url = _alerting(args, store)  # refused before anything is recorded
    pager = _pager(pagerduty_url)
    saved = store.get_json("deployment")
    saved_spec = store.get_json("spec")
    # A resumed rollout keeps its recorded spec; only what this command line states changes it.
    spec = RolloutSpec.load(args.config, overrides, base=saved_spec)
    stated = _stated(args)
    if saved is not None:
        # And its recorded seams: targets, traffic engine and metric source.
        _check_addresses_kept(args, saved)
        resumed = seams.resume(saved, store.get_json("metrics"), stated)
        dep = _resumed_deployment(resumed.deployment, args.admin_token)
        metrics = resumed.metrics
        logger.info("resuming the rollout recorded in %s", args.state)
        if resumed.changes:
            store.set_json("deployment", resumed.deployment)
        store.set_json("metrics", metrics.record())
        _record_seam_change(store, resumed.changes)
        if saved_spec is not None:
            _record_spec_change(store, saved_spec, spec)
    else:
        target_type = _targets(args)
        metrics = stated.metrics()
        if args.traffic == "nginx" and not (args.nginx_conf and args.prometheus_url):
            raise ConfigError(
                "--traffic nginx needs --nginx-conf (the include file the rollout owns) and "
                "--prometheus-url (nginx keeps no per-side counters the rollout could judge by)"
            )
        host, port = _hostport(args.address or DEFAULT_ADDRESS, "--address")
        if args.admin_address:
            admin_host, admin_port = _hostport(args.admin_address, "--admin-address")
        else:
            admin_host, admin_port = "127.0.0.1", port + 1
        dep = Deployment(
            code_dir=Path(args.code_dir).resolve() if args.code_dir else None,
            server_args=["--target-type", target_type, *args.server_arg],
            baseline_type=normalise_server_type(args.baseline, "--baseline"),
            candidate_type=normalise_server_type(args.candidate, "--candidate"),
            baseline_env=_pairs(args.baseline_env, "--baseline-env"),
            candidate_env=_pairs(args.candidate_env, "--candidate-env"),
            public_host=host,
            public_port=port,
            admin_host=admin_host,
            admin_port=admin_port,
            admin_token=args.admin_token,
            baseline_port=free_port(),
            candidate_port=free_port(),
            backend_timeout=args.backend_timeout,
            baseline_url=args.baseline_url.rstrip("/") if args.baseline_url else None,
            candidate_url=args.candidate_url.rstrip("/") if args.candidate_url else None,
            traffic=args.traffic or "builtin",
            nginx_conf=stated.nginx_conf,
            nginx_test_cmd=args.nginx_test_cmd or DEFAULT_TEST_CMD,
            nginx_reload_cmd=args.nginx_reload_cmd or DEFAULT_RELOAD_CMD,
            nginx_access_log=args.nginx_access_log,
            compare_port=free_port() if args.traffic == "nginx" else 0,
        )
        recorded = {k: v for k, v in dep.__dict__.items() if k != "admin_token"}
        recorded["code_dir"] = str(dep.code_dir) if dep.code_dir else None
        recorded["admin_token_sha256"] = _token_digest(dep.admin_token) if dep.admin_token else None
        store.set_json("deployment", recorded)
        store.set_json("metrics", metrics.record())
        store.set_json("spec", spec.to_dict())
    logger.info(
        "seams: %s targets, traffic by %s, judged by %s",
        "attached" if dep.attached else "spawned",
        f"nginx ({dep.nginx_conf})" if dep.traffic == "nginx" else "the built-in router",
        f"Prometheus ({metrics.record()['prometheus_url']})"
        if metrics.prometheus
        else "the router's counters",
    )
    if dep.attached:
        # Checked on every start, resumed ones included: the URL may now serve something else.
        for side, stack in (("baseline", dep.baseline_type), ("candidate", dep.candidate_type)):
            check_attached(side, dep.side_urls()[side], stack)
    children = build_children(dep, Path(args.state).resolve())
    known = store.get_json("children") or {}
    for child in children:
        child.adopt(known.get(child.name))

    def remember() -> None:
        store.set_json("children", supervisor.identities())

    supervisor = Supervisor(
        children, Path(args.state).resolve().parent / "rollout-logs", on_change=remember
    )
    try:
        spawned = [n for n in ("baseline", "candidate") if supervisor.supervises(n)]
        for name in spawned:
            supervisor.ensure(name)
        for name in spawned:
            supervisor.wait_healthy(name)
        supervisor.ensure("router")
        supervisor.wait_healthy("router")
    except BaseException:
        # A rollout that cannot be supervised must not leave servers running with nobody
        # watching them.
        logger.error("start-up failed; stopping the rollout's processes")
        supervisor.stop_all()
        raise
    urls = {c.name: c.url for c in children}
    controller = Controller(
        spec,
        store,
        supervisor,
        RouterClient(urls["router"], dep.admin_token),
        dep.side_urls(),
        http_notifier(notify_url),
        baseline_verifier(dep.code_dir, dep.baseline_type, dep.server_args[1]),
        metrics=_metric_source(metrics),
        traffic=_traffic_engine(dep),
        pager=pager,
    )
    if dep.traffic == "nginx":
        # The comparison service mirrors everything nginx sends it and serves nothing.
        controller.router.set_routing(0.0, 1.0)
    scheme = "https" if any(os.environ.get(name) for name in tls_variables()) else "http"
    print(
        f"rollout: router on {scheme}://{dep.public_host}:{dep.public_port}, dashboard on "
        f"{urls['router']}/, state in {args.state}",
        flush=True,
    )

    def stop(*_: Any) -> None:
        controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        status = controller.run()
    finally:
        supervisor.stop_all()
    print(f"rollout stopped: {status.phase.value} at {status.weight:g}%")
    return 0


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def status_document(store: Any) -> dict[str, Any]:
    """Everything ``status`` shows, as data."""
    status = store.load_status()
    if status is None:
        return {"status": None}
    obs = store.observations(limit=1)
    decisions = store.decisions(limit=100000)
    now = time.time()
    return {
        "status": status.to_dict(),
        "time_in_step_s": round(now - status.step_started_at, 1),
        "latest": obs[-1] if obs else None,
        "last_decision": decisions[-1].__dict__ if decisions else None,
        "deployment": store.get_json("deployment"),
        "metrics": store.get_json("metrics"),
    }


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    store = _recorded(args.state)
    console = Console()
    while True:
        doc = status_document(store) if store is not None else {"status": None}
        if args.json:
            print(json.dumps(doc, default=str, sort_keys=True))
            return 0 if doc["status"] else 1
        if doc["status"] is None:
            print(f"no rollout recorded in {args.state}", file=sys.stderr)
            return 1
        st = doc["status"]
        table = Table(title=f"Tandem rollout — {st['phase']} at {st['weight']:g}%")
        table.add_column("")
        table.add_column("baseline", justify="right")
        table.add_column("candidate", justify="right")
        latest = doc["latest"] or {}

        def cell(side: str, key: str, fmt: str, latest: dict[str, Any] = latest) -> str:
            value = (latest.get(side) or {}).get(key)
            return "—" if value is None else fmt.format(value)

        table.add_row(
            "requests (window)",
            cell("baseline", "requests", "{}"),
            cell("candidate", "requests", "{}"),
        )
        table.add_row(
            "error rate",
            cell("baseline", "error_rate", "{:.3%}"),
            cell("candidate", "error_rate", "{:.3%}"),
        )
        table.add_row(
            "P99", cell("baseline", "p99_ms", "{:.1f} ms"), cell("candidate", "p99_ms", "{:.1f} ms")
        )
        table.add_row(
            "RSS",
            cell("baseline", "rss_mb", "{:.0f} MiB"),
            cell("candidate", "rss_mb", "{:.0f} MiB"),
        )
        console.print(table)
        console.print(
            f"phase {st['phase']}, weight {st['weight']:g}%, step "
            f"{st['step_index']}, {doc['time_in_step_s']:.0f}s in step"
        )
        last = doc["last_decision"]
        # Plain text: a rule's [brackets] and a reason's text are not rich markup.
        if last:
            console.print(
                f"last decision {_when(last['at'])} {last['action']} "
                f"[{last['rule']}]: {last['reason']}",
                markup=False,
            )
        if latest.get("reason"):
            console.print(f"next: {latest['reason']}", markup=False)
        if not args.watch:
            return 0
        time.sleep(1.0)
        console.clear()


def _history(args: argparse.Namespace) -> int:
    store = _recorded(args.state)
    if store is None:
        print(f"no rollout recorded in {args.state}", file=sys.stderr)
        return 1
    rows = store.decisions(limit=100000)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], default=str))
        return 0
    for r in rows:
        print(
            f"{_when(r.at)} {r.action:<13} {r.from_weight:>6g}% -> {r.to_weight:<6g}% "
            f"[{r.rule}] {r.reason}"
        )
    return 0


def _command(args: argparse.Namespace) -> int:
    store = _recorded(args.state)
    status = store.load_status() if store is not None else None
    if store is None or status is None:
        print(f"no rollout recorded in {args.state}", file=sys.stderr)
        return 1
    seq = store.add_command(args.rollout_command)
    print(
        f"{args.rollout_command} queued (#{seq}); the controller applies it at its next evaluation"
    )
    from tandem.rollout.store import StateLock

    if not status.phase.is_terminal and not StateLock(Path(args.state).resolve()).held():
        print(
            f"no controller is running this rollout: `tandem rollout start --state {args.state}` "
            "resumes it (with the targets, traffic and metric source it was started with) and "
            "then applies the command",
            file=sys.stderr,
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    store = _recorded(args.state)
    if store is None or store.load_status() is None:
        print(f"no rollout recorded in {args.state}", file=sys.stderr)
        return 1
    text = args.extension.strip()
    if not text:
        print("tandem: error: --extension needs a description", file=sys.stderr)
        return 2
    store.add_event("extension", "operator", text)
    print("extension failure recorded; the controller counts it at its next evaluation")
    return 0
