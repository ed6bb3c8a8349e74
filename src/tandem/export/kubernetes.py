"""``tandem export kubernetes``: ConfigMap, Deployment, Service and a Prometheus monitor.

- **ConfigMap** ``<name>-config``: ``DRUM_SERVER_TYPE`` in DRUM's JSON form (``{"type":
  "string", "payload": "fastapi"}``, which DRUM and Tandem both read) and any
  ``--runtime-param`` as given, read by the pods through ``envFrom`` with the
  ``MLOPS_RUNTIME_PARAM_`` prefix, so the rollback plan's Level 1 is a patch of that key plus a
  restart that also moves the pods' ``tandem-server-type`` label: what
  :meth:`~tandem.export.model.Model.level1_patches` returns and ``tandem rollback --kubernetes``
  sends.
- **Deployment** ``<name>``: the server with ``startupProbe`` on ``/startupz`` (30 × 10 s, the
  migration plan's example), ``livenessProbe`` on ``/livez`` (restarts a pod silent for the
  rollout's ``ping_timeout`` plus two intervals, after the deadlock alert has fired) and
  ``readinessProbe`` on ``/readyz`` (503 while no model is loaded or every model thread is
  stuck), resources from :mod:`.sizing`.
- **Service** ``<name>``: port ``http``.
- **PodMonitor** (default) or **ServiceMonitor** (prometheus-operator): scrapes ``/metrics``
  every ``interval`` of the rollout spec, keeps the server's own ``server_type`` label
  (``honorLabels``) and adds ``tandem_model`` and, for ``up``, ``server_type`` from the pod
  labels. The PodMonitor finds every copy of the pods whichever engine made them (Flagger's
  primary, Argo Rollouts' canary); a ServiceMonitor selects by the Service's labels.
"""

from __future__ import annotations

import math
from typing import Any

from tandem.export.model import (
    MODEL_LABEL,
    MODEL_TARGET_LABEL,
    SERVER_TYPE_KEY,
    SERVER_TYPE_LABEL,
    SERVER_TYPE_TARGET_LABEL,
    Model,
    env_name,
)
from tandem.ops.kube import server_type_value
from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec

MONITORS = ("podmonitor", "servicemonitor", "none")
WORKLOADS = ("deployment", "none")
CONTAINER = "model"
PROBE_PERIOD = 10
#: The migration plan's startupProbe example: failureThreshold 30, periodSeconds 10.
STARTUP_FAILURES = 30


def _meta(model: Model, name: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": model.namespace,
        "labels": {
            **model.selector_labels(),
            MODEL_LABEL: model.name,
            "app.kubernetes.io/managed-by": "tandem-export",
        },
    }
    meta.update(extra)
    return meta


def configmap(model: Model) -> dict[str, Any]:
    """The ConfigMap with ``DRUM_SERVER_TYPE`` (the seed's Level 1 changes it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(model, model.configmap_name),
        "data": model.config_data(),
    }


def _probe(model: Model, path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def liveness_failures(spec: RolloutSpec) -> int:
    """Failed ``/livez`` probes (``PROBE_PERIOD`` apart) before the kubelet restarts a pod.

    A restart would hide a deadlock from the rollback trigger (``up`` down for ``ping_timeout``,
    seen at the next evaluation, one ``interval`` later): the kubelet waits two intervals past
    that, so the deadlocked candidate is rolled back before it is restarted.
    """
    return max(1, math.ceil((spec.triggers.ping_timeout + 2 * spec.interval) / PROBE_PERIOD))


def container(model: Model, spec: RolloutSpec, server_type_env: bool = False) -> dict[str, Any]:
    """The server container. ``server_type_env``: set ``MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE``
    (DRUM's JSON form, as in the ConfigMap) in the pod template too (it wins over the
    ConfigMap's ``envFrom``), so that each revision of an Argo Rollout keeps its own stack."""
    env = [
        {"name": "CODE_DIR", "value": model.code_dir},
        {"name": "ADDRESS", "value": f"0.0.0.0:{model.port}"},
    ]
    if model.deployment_id:
        env.append({"name": "MLOPS_DEPLOYMENT_ID", "value": model.deployment_id})
    if model.target_type:
        env.append({"name": "TARGET_TYPE", "value": model.target_type})
    if model.workers:
        env.append({"name": "MAX_WORKERS", "value": str(model.workers)})
    if server_type_env:
        value = server_type_value(model.server_type)
        env.append({"name": env_name(SERVER_TYPE_KEY), "value": value})
    live_failures = liveness_failures(spec)
    return {
        "name": CONTAINER,
        "image": model.image,
        "command": list(model.command),
        "ports": [{"name": "http", "containerPort": model.port, "protocol": "TCP"}],
        "env": env,
        "envFrom": [
            {"prefix": env_name(""), "configMapRef": {"name": model.configmap_name}},
        ],
        "startupProbe": _probe(model, "/startupz", PROBE_PERIOD, STARTUP_FAILURES, 5),
        "livenessProbe": _probe(model, "/livez", PROBE_PERIOD, live_failures, 5),
        "readinessProbe": _probe(model, "/readyz", 5, 2, 5),
        "resources": model.resources.to_k8s(),
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def pod_template(model: Model, spec: RolloutSpec, server_type_env: bool = False) -> dict[str, Any]:
    """The pod template shared by the Deployment and the Argo Rollout."""
    return {
        "metadata": model.template_metadata(),
        "spec": {
            "containers": [container(model, spec, server_type_env)],
            # On SIGTERM the server drains in-flight requests for up to 30 s (the
            # DRUM_*_GRACEFUL_TIMEOUT default); Kubernetes' own default would SIGKILL at 30 s.
            "terminationGracePeriodSeconds": 40,
        },
    }


def deployment(model: Model, spec: RolloutSpec) -> dict[str, Any]:
    """The Deployment (Flagger's ``targetRef``; Argo Rollouts replaces it with a Rollout)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(model, model.deployment_name),
        "spec": {
            "replicas": model.replicas,
            "selector": {"matchLabels": model.selector_labels()},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": pod_template(model, spec),
        },
    }


def service(
    model: Model, name: str | None = None, selector: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ClusterIP Service on the pods' ``http`` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(model, name or model.service_name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector or model.selector_labels(),
            "ports": [
                {"name": "http", "port": model.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def _relabelings() -> list[dict[str, Any]]:
    def label(pod_label: str) -> str:
        return "__meta_kubernetes_pod_label_" + pod_label.replace("-", "_").replace(".", "_")

    return [
        {
            "sourceLabels": [label(MODEL_LABEL)],
            "targetLabel": MODEL_TARGET_LABEL,
            "action": "replace",
        },
        {
            "sourceLabels": [label(SERVER_TYPE_LABEL)],
            "targetLabel": SERVER_TYPE_TARGET_LABEL,
            "action": "replace",
        },
    ]


def _endpoint(spec: RolloutSpec) -> dict[str, Any]:
    return {
        "port": "http",
        "path": "/metrics",
        "interval": promql.duration(spec.interval),
        # The server's own server_type label wins over the pod label (it is what the process
        # runs); target labels fill in what the series lack, and all of up's labels.
        "honorLabels": True,
        "relabelings": _relabelings(),
    }


def pod_monitor(model: Model, spec: RolloutSpec) -> dict[str, Any]:
    """A prometheus-operator PodMonitor for every pod of the model, whichever engine made it."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(model, model.name),
        "spec": {
            "selector": {"matchLabels": {MODEL_LABEL: model.name}},
            "namespaceSelector": {"matchNames": [model.namespace]},
            "podMetricsEndpoints": [_endpoint(spec)],
        },
    }


def service_monitor(model: Model, spec: RolloutSpec) -> dict[str, Any]:
    """A prometheus-operator ServiceMonitor for the model's Service."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(model, model.name),
        "spec": {
            "selector": {"matchLabels": {MODEL_LABEL: model.name}},
            "namespaceSelector": {"matchNames": [model.namespace]},
            "endpoints": [_endpoint(spec)],
        },
    }


def manifests(
    model: Model,
    spec: RolloutSpec,
    workload: str = "deployment",
    with_service: bool = True,
    monitor: str = "podmonitor",
) -> list[dict[str, Any]]:
    """Every object of the kind, in apply order (the ConfigMap before the pods that read it).

    ``workload="none"`` leaves the Deployment out (an Argo Rollout carries the pod template);
    ``with_service=False`` leaves the Service out (Flagger creates its own).
    """
    objects = [configmap(model)]
    if workload == "deployment":
        objects.append(deployment(model, spec))
    if with_service:
        objects.append(service(model))
    if monitor == "podmonitor":
        objects.append(pod_monitor(model, spec))
    elif monitor == "servicemonitor":
        objects.append(service_monitor(model, spec))
    return objects
