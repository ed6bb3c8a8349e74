"""``tandem export flagger``: a Canary over the exported Deployment, and its MetricTemplates.

- **MetricTemplate** ``<name>-<check>``: one per :func:`.checks.checks` entry, the same query
  as the alert's value. Flagger counts a query with no result as a failed check, where
  ``decide()`` would not judge at all, so each query falls back to a value that does not fire
  (``or vector(0)``) except the liveness one, whose silence must not pass.
- **Canary** ``<name>``: ``targetRef`` the Deployment of ``tandem export kubernetes``, the spec's
  steps as ``stepWeights``, and each metric's ``thresholdRange`` the spec's threshold.

Flagger judges every metric once per ``interval`` and advances one step per good interval, so
the exported ``interval`` is the spec's ``step_hold`` (no step is promoted sooner than the spec
allows) and ``threshold`` (failed checks before a rollback) is the spec's ``consecutive``. An
immediate trigger therefore acts within ``threshold`` intervals, not at once: page on the
Prometheus alerts (``tandem export prometheus-rules``) for those. Flagger cannot hold a step
without counting a failure, so ``decide()``'s step criteria (a hold, never a rollback) are not
exported, nor is the gradual reduction ladder (a rollback goes to 0 %). Flagger copies the
ConfigMap it finds in the pod template for the primary, so a changed ``DRUM_SERVER_TYPE`` (re-
export the kubernetes kind with the new ``--server-type``) is what starts a canary analysis.
"""

from __future__ import annotations

from typing import Any

from tandem.export.checks import Check, Selectors, checks, integer_weights
from tandem.export.model import Model
from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec

API = "flagger.app/v1beta1"


def template_name(model: Model, check: Check) -> str:
    """The MetricTemplate of a check."""
    return f"{model.name}-{check.key}"


def query(check: Check) -> str:
    """The check's value, with a non-firing fallback when it has no result."""
    if check.absent_means is None:
        return check.value
    return f"({check.value}) or vector({promql.number(check.absent_means)})"


def threshold_range(check: Check) -> dict[str, float]:
    """Flagger's accepted range: the value may not cross the check's threshold."""
    return {"max": check.threshold} if check.op == ">" else {"min": check.threshold}


def metric_template(model: Model, check: Check, prometheus_url: str) -> dict[str, Any]:
    """One MetricTemplate."""
    return {
        "apiVersion": API,
        "kind": "MetricTemplate",
        "metadata": {"name": template_name(model, check), "namespace": model.namespace},
        "spec": {
            "provider": {"type": "prometheus", "address": prometheus_url},
            "query": query(check),
        },
    }


def canary(
    model: Model, spec: RolloutSpec, sel: Selectors, ingress: str | None = None
) -> dict[str, Any]:
    """The Canary."""
    found = checks(spec, sel)
    window = promql.duration(spec.window)
    body: dict[str, Any] = {
        "targetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": model.deployment_name,
        },
        "progressDeadlineSeconds": 600,
        "service": {"port": model.port, "targetPort": "http", "name": model.service_name},
        "analysis": {
            "interval": promql.duration(spec.step_hold),
            "threshold": spec.triggers.consecutive,
            "stepWeights": integer_weights(spec),
            "metrics": [
                {
                    "name": c.key,
                    "templateRef": {"name": template_name(model, c), "namespace": model.namespace},
                    "thresholdRange": threshold_range(c),
                    "interval": window,
                }
                for c in found
            ],
        },
    }
    if ingress:
        body["provider"] = "nginx"
        body["ingressRef"] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "name": ingress,
        }
    return {
        "apiVersion": API,
        "kind": "Canary",
        "metadata": {"name": model.name, "namespace": model.namespace},
        "spec": body,
    }


def manifests(
    model: Model,
    spec: RolloutSpec,
    sel: Selectors,
    prometheus_url: str,
    ingress: str | None = None,
) -> list[dict[str, Any]]:
    """The MetricTemplates first (the Canary refers to them), then the Canary."""
    objects = [metric_template(model, c, prometheus_url) for c in checks(spec, sel)]
    objects.append(canary(model, spec, sel, ingress))
    return objects
