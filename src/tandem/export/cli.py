"""``tandem export KIND``: write manifests for Kubernetes, Prometheus, Argo Rollouts, Flagger
and Grafana to stdout, or to files in ``--out DIR``.

Exit status: 0 written, 1 the options or the rollout spec cannot be exported (nothing written).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

KINDS = ("kubernetes", "prometheus-rules", "argo-rollouts", "flagger", "grafana", "all")
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"

DESCRIPTION = """\
Write what a platform engineer applies as is: no cluster is contacted.

  kubernetes        ConfigMap (DRUM_SERVER_TYPE: the rollback plan's Level 1), Deployment
                    with /startupz, /livez and /readyz probes, Service, PodMonitor or
                    ServiceMonitor; resources from a running server's /stats/ (--stats-url)
  prometheus-rules  every rollback trigger of the rollout spec as an alert: a PrometheusRule,
                    or (--plain) a plain rules file; --out writes both
  argo-rollouts     a Rollout with the spec's steps and pauses, and its AnalysisTemplates
  flagger           a Canary over the Deployment, and its MetricTemplates
  grafana           the canary dashboard (JSON, or --configmap for Grafana's sidecar)
  all               every kind into --out DIR

Thresholds, windows and steps come from the rollout spec (--config rollout.yaml, else the
defaults `tandem rollout` uses); every query is the controller's own PromQL."""


def _runtime_param(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return key.strip(), val


#: A Kubernetes label: optional DNS-subdomain prefix, a name, and a value of up to 63 characters.
_LABEL_KEY = re.compile(
    r"^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
#: The prometheus-operator objects that an operator's Prometheus selects by label.
OPERATOR_KINDS = ("PodMonitor", "ServiceMonitor", "PrometheusRule")


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not _LABEL_KEY.match(key) or len(key.rpartition("/")[0]) > 253:
        raise argparse.ArgumentTypeError(f"expected a Kubernetes label KEY=VALUE, got {value!r}")
    if not _LABEL_VALUE.match(val):
        raise argparse.ArgumentTypeError(
            f"label value {val!r} must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return key, val


def _with_operator_labels(
    objects: list[dict[str, Any]], labels: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Add ``--operator-label`` labels to the prometheus-operator objects (kube-prometheus-stack's
    Prometheus, for one, only picks up monitors and rules labelled ``release: <its release>``)."""
    for obj in objects:
        if obj.get("kind") in OPERATOR_KINDS:
            obj["metadata"].setdefault("labels", {}).update(dict(labels))
    return objects


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return number


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the model deployment's name")
    parser.add_argument("--namespace", default="default", help="its namespace (default default)")
    parser.add_argument(
        "--config",
        type=Path,
        help="rollout.yaml: thresholds, steps and timings (default: defaults)",
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="write files here, not stdout")
    parser.add_argument(
        "--operator-label",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label the PodMonitor/ServiceMonitor and PrometheusRule with it, as the cluster's "
        "Prometheus selects them (kube-prometheus-stack: release=<its release>); repeatable",
    )


def _workload(parser: argparse.ArgumentParser, image_required: bool) -> None:
    group = parser.add_argument_group("the model server")
    group.add_argument(
        "--image", required=image_required, help="container image with Tandem and the model"
    )
    group.add_argument(
        "--code-dir", default="/opt/code", help="the model's folder in the image (CODE_DIR)"
    )
    group.add_argument("--deployment-id", help="MLOPS_DEPLOYMENT_ID of the deployment")
    group.add_argument(
        "--server-type",
        default=None,
        help="flask, gunicorn or fastapi: DRUM_SERVER_TYPE in the ConfigMap (default: the "
        "server's default, fastapi)",
    )
    group.add_argument("--replicas", type=_positive_int, default=2, help="pods (default 2)")
    group.add_argument("--port", type=int, default=8080, help="container port (default 8080)")
    group.add_argument(
        "--command",
        dest="server_command",
        default="tandem server",
        help="the server command in the image (default 'tandem server'; 'drum server' works)",
    )
    group.add_argument("--target-type", help="TARGET_TYPE (regression, binary, ...)")
    group.add_argument("--workers", type=_positive_int, help="MAX_WORKERS per pod")
    group.add_argument(
        "--runtime-param",
        type=_runtime_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another runtime parameter for the ConfigMap (repeatable)",
    )
    group.add_argument(
        "--stats-url",
        help="a running server (or its /stats/ URL) to size the resources from; "
        "default requests 500m CPU, 512Mi memory, limit 1Gi",
    )


def _selectors(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Prometheus series")
    group.add_argument(
        "--prometheus-selector",
        default=None,
        help='labels of this deployment\'s series (default namespace="NS", '
        'tandem_model="NAME", which the exported monitors add)',
    )
    group.add_argument(
        "--baseline-selector", help='the baseline\'s series (default server_type="flask")'
    )
    group.add_argument(
        "--candidate-selector", help='the candidate\'s series (default server_type="fastapi")'
    )
    group.add_argument(
        "--router-selector",
        default=None,
        help='the rollout router\'s series (default job="tandem-router")',
    )


def _engines(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Argo Rollouts and Flagger")
    group.add_argument(
        "--prometheus-url",
        default=DEFAULT_PROMETHEUS_URL,
        help=f"Prometheus the engine queries (default {DEFAULT_PROMETHEUS_URL})",
    )
    group.add_argument(
        "--ingress", help="an nginx Ingress to split traffic on (default: replica counts)"
    )


def _kubernetes_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--monitor",
        choices=("podmonitor", "servicemonitor", "none"),
        default="podmonitor",
        help="prometheus-operator scrape object (default podmonitor)",
    )
    parser.add_argument(
        "--workload",
        choices=("deployment", "none"),
        default="deployment",
        help="none: leave the Deployment out (an Argo Rollout carries the pods)",
    )
    parser.add_argument(
        "--no-service",
        dest="with_service",
        action="store_false",
        help="leave the Service out (Flagger creates its own)",
    )


def add_parser(subparsers: Any) -> None:
    """Register ``tandem export``."""
    parser = subparsers.add_parser(
        "export",
        help="write Kubernetes, Prometheus, Argo Rollouts, Flagger and Grafana manifests",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    kube = kinds.add_parser("kubernetes", help="ConfigMap, Deployment, Service, monitor")
    _common(kube)
    _workload(kube, image_required=True)
    _kubernetes_options(kube)
    rules = kinds.add_parser("prometheus-rules", help="every rollback trigger as an alert")
    _common(rules)
    _selectors(rules)
    rules.add_argument(
        "--plain", action="store_true", help="stdout: a plain rules file, not a PrometheusRule"
    )
    argo = kinds.add_parser("argo-rollouts", help="Rollout and AnalysisTemplates")
    _common(argo)
    _workload(argo, image_required=True)
    _selectors(argo)
    _engines(argo)
    flagger = kinds.add_parser("flagger", help="Canary and MetricTemplates")
    _common(flagger)
    _selectors(flagger)
    _engines(flagger)
    flagger.add_argument("--port", type=int, default=8080, help="container port (default 8080)")
    grafana = kinds.add_parser("grafana", help="the canary dashboard")
    _common(grafana)
    _selectors(grafana)
    grafana.add_argument(
        "--configmap",
        action="store_true",
        help='a ConfigMap labelled grafana_dashboard: "1" instead of the bare JSON',
    )
    every = kinds.add_parser("all", help="every kind into --out DIR")
    _common(every)
    _workload(every, image_required=True)
    _kubernetes_options(every)
    _selectors(every)
    _engines(every)


def _model(args: argparse.Namespace, spec: Any) -> Any:
    from tandem.export.model import Model
    from tandem.export.sizing import Resources, fetch_stats, resources_from_stats
    from tandem.server_type import DEFAULT_SERVER_TYPE

    resources = Resources()
    if getattr(args, "stats_url", None):
        resources = resources_from_stats(fetch_stats(args.stats_url), spec.triggers.memory_increase)
    return Model(
        name=args.name,
        namespace=args.namespace,
        image=getattr(args, "image", None) or "",
        code_dir=getattr(args, "code_dir", "/opt/code"),
        deployment_id=getattr(args, "deployment_id", None),
        server_type=getattr(args, "server_type", None) or DEFAULT_SERVER_TYPE,
        port=getattr(args, "port", 8080),
        replicas=getattr(args, "replicas", 2),
        command=tuple(shlex.split(getattr(args, "server_command", "tandem server"))),
        target_type=getattr(args, "target_type", None),
        workers=getattr(args, "workers", None),
        runtime_params=tuple(getattr(args, "runtime_param", [])),
        resources=resources,
    )


def _selectors_of(args: argparse.Namespace, model: Any) -> Any:
    from tandem.export.checks import selectors

    extra = args.prometheus_selector
    return selectors(
        model.metric_selector() if extra is None else extra,
        args.baseline_selector,
        args.candidate_selector,
        args.router_selector,
    )


def _yaml(objects: list[dict[str, Any]], header: list[str]) -> str:
    import yaml

    lines = "".join(f"# {line}\n" for line in header)
    # Wide lines: a PromQL expression stays on one line, as the engines and reviewers read it.
    return lines + yaml.safe_dump_all(objects, sort_keys=False, width=1 << 16)


def render(args: argparse.Namespace) -> dict[str, str]:
    """The files of ``args.kind``: file name -> text (stdout shows the first)."""
    from tandem.export import argo, flagger, grafana, kubernetes, rules
    from tandem.export.checks import checks
    from tandem.rollout.spec import RolloutSpec
    from tandem.version import __version__

    spec = RolloutSpec.load(args.config)
    model = _model(args, spec)
    source = f"rollout spec {args.config}" if args.config else "the rollout spec's defaults"
    header = [
        f"Generated by `tandem export {args.kind}` (tandem {__version__}) from {source}",
        f"(spec digest {spec.digest()}). Do not edit: re-export instead.",
    ]
    files: dict[str, str] = {}
    kind = args.kind
    if kind in ("kubernetes", "all"):
        objects = _with_operator_labels(
            kubernetes.manifests(model, spec, args.workload, args.with_service, args.monitor),
            args.operator_label,
        )
        files["kubernetes.yaml"] = _yaml(objects, [*header, f"Resources: {model.resources.basis}."])
    if kind in ("prometheus-rules", "all"):
        sel = _selectors_of(args, model)
        labels = {"tandem_model": model.name}
        group = rules.rule_group(f"tandem-{model.name}", checks(spec, sel), spec, labels)
        rule = rules.prometheus_rule(
            f"{model.name}-rollout", model.namespace, group, {"tandem-model": model.name}
        )
        plain = _yaml([rules.rules_file(group)], header)
        wrapped = _yaml(_with_operator_labels([rule], args.operator_label), header)
        if kind == "prometheus-rules" and args.plain and not args.out:
            files["prometheus-rules.yml"] = plain
        else:
            files["prometheus-rule.yaml"] = wrapped
            files["prometheus-rules.yml"] = plain
    if kind in ("argo-rollouts", "all"):
        sel = _selectors_of(args, model)
        objects = argo.manifests(model, spec, sel, args.prometheus_url, args.ingress)
        files["argo-rollouts.yaml"] = _yaml(objects, header)
    if kind in ("flagger", "all"):
        sel = _selectors_of(args, model)
        objects = flagger.manifests(model, spec, sel, args.prometheus_url, args.ingress)
        files["flagger.yaml"] = _yaml(objects, header)
    if kind in ("grafana", "all"):
        sel = _selectors_of(args, model)
        if kind == "grafana" and args.configmap:
            files["grafana-dashboard.yaml"] = _yaml(
                [grafana.dashboard_configmap(model, spec, sel)], header
            )
        else:
            files["grafana-dashboard.json"] = grafana.dashboard_json(model, spec, sel)
    return files


def run(args: argparse.Namespace) -> int:
    """Write the manifests; 1 with a one-line error when they cannot be exported."""
    from tandem.errors import ConfigError

    if args.kind == "all" and args.out is None:
        print("tandem export: error: `all` writes several files: give --out DIR", file=sys.stderr)
        return 1
    try:
        files = render(args)
    except ConfigError as exc:
        print(f"tandem export: error: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(next(iter(files.values())))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = args.out / name
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
