"""``tandem export argo-rollouts``: a Rollout with the spec's steps, and its AnalysisTemplates.

- **Rollout** ``<name>``: the Deployment's pod template (:func:`.kubernetes.pod_template`), with
  ``DRUM_SERVER_TYPE`` in the template's own ``env`` so that every revision keeps its stack (an
  ``env`` entry wins over the ConfigMap's ``envFrom``). Canary steps, one per spec step:
  ``setWeight``, ``pause`` for ``step_hold``, then the **step gate** analysis with that step's
  criteria (``criteria_for(weight)``) as arguments. A background analysis runs the **triggers**
  from the first step on.
- **AnalysisTemplate** ``<name>-triggers``: one metric per :func:`.checks.checks` entry, measured
  every ``interval``; it fails when the value crosses the threshold (an argument, defaulting to
  the spec's) more often than ``for / interval`` times (``failureLimit``; 0 for the immediate
  triggers). No data is no failure, as in ``decide()``. A failed analysis aborts the Rollout:
  all traffic back to the stable pods.
- **AnalysisTemplate** ``<name>-step-gate``: ``decide()``'s promotion criteria over the step
  hold, measured once. Met: the next step. Not met, or too few requests: *Inconclusive*, which
  pauses the Rollout for an operator (``decide()`` holds the step; it never rolls back on them).
- With ``--ingress NAME``: nginx traffic routing on that Ingress, with the two Services Argo
  Rollouts needs (``<name>-canary``, ``<name>-stable``); without it, weights are approximated
  by replica counts.

What Argo Rollouts cannot express: the shadow phase (no mirroring without a mesh), the gradual
reduction ladder (a failed analysis aborts to 0 %), and consecutive-only failure counting
(``failureLimit`` counts every failed measurement of the run).
"""

from __future__ import annotations

import math
from typing import Any

from tandem.export.checks import Check, Selectors, checks, integer_weights, step_gates
from tandem.export.kubernetes import pod_template, service
from tandem.export.model import Model
from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec

API = "argoproj.io/v1alpha1"


def threshold_arg(check: Check) -> str:
    """The AnalysisTemplate argument carrying a trigger's threshold."""
    return f"{check.key}-threshold"


def failure_limit(check: Check, spec: RolloutSpec) -> int:
    """Failed measurements tolerated: the check's ``for`` in evaluation intervals, rounded up
    as the alert's ``for:`` is (it fires at the first evaluation at least ``for`` after the
    condition began; the analysis fails on measurement ``failureLimit + 1``)."""
    return max(0, math.ceil(check.for_s / spec.interval - 1e-9))


def failure_condition(check: Check) -> str:
    """Fails on a value that crosses the threshold argument; no result never fails."""
    return f"len(result) > 0 && result[0] {check.op} {{{{args.{threshold_arg(check)}}}}}"


def _provider(prometheus_url: str, query: str) -> dict[str, Any]:
    return {"prometheus": {"address": prometheus_url, "query": query}}


def triggers_template(
    model: Model, spec: RolloutSpec, sel: Selectors, prometheus_url: str
) -> dict[str, Any]:
    """The background analysis: every rollback trigger."""
    found = checks(spec, sel)
    return {
        "apiVersion": API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"{model.name}-triggers", "namespace": model.namespace},
        "spec": {
            "args": [
                {"name": threshold_arg(c), "value": promql.number(c.threshold)} for c in found
            ],
            "metrics": [
                {
                    "name": c.key,
                    "interval": promql.duration(spec.interval),
                    "failureLimit": failure_limit(c, spec),
                    "failureCondition": failure_condition(c),
                    "provider": _provider(prometheus_url, c.value),
                }
                for c in found
            ],
        },
    }


def step_gate_template(
    model: Model, spec: RolloutSpec, sel: Selectors, prometheus_url: str
) -> dict[str, Any]:
    """The promotion criteria, measured once at the end of each step's pause."""
    gates = step_gates(spec, sel)
    metrics = []
    for gate in gates:
        value = "result[0] - 1" if gate.minus_one else "result[0]"
        metrics.append(
            {
                "name": gate.key,
                "count": 1,
                "successCondition": f"len(result) > 0 && {value} < {{{{args.{gate.arg}}}}}",
                # Never Failed: criteria not met hold the step (Inconclusive pauses the Rollout).
                "failureCondition": "false",
                "provider": _provider(prometheus_url, gate.value),
            }
        )
    return {
        "apiVersion": API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"{model.name}-step-gate", "namespace": model.namespace},
        "spec": {"args": [{"name": g.arg} for g in gates], "metrics": metrics},
    }


def canary_steps(model: Model, spec: RolloutSpec, sel: Selectors) -> list[dict[str, Any]]:
    """setWeight, pause for the step hold, then the step gate with the step's criteria."""
    steps: list[dict[str, Any]] = []
    gates = step_gates(spec, sel)
    for weight in integer_weights(spec):
        crit = spec.criteria_for(float(weight))
        steps.append({"setWeight": weight})
        steps.append({"pause": {"duration": promql.duration(spec.step_hold)}})
        steps.append(
            {
                "analysis": {
                    "templates": [{"templateName": f"{model.name}-step-gate"}],
                    "args": [{"name": g.arg, "value": promql.number(g.limit(crit))} for g in gates],
                }
            }
        )
    return steps


def rollout(
    model: Model, spec: RolloutSpec, sel: Selectors, ingress: str | None = None
) -> dict[str, Any]:
    """The Rollout."""
    canary: dict[str, Any] = {
        "steps": canary_steps(model, spec, sel),
        "analysis": {
            "templates": [{"templateName": f"{model.name}-triggers"}],
            "startingStep": 1,
        },
        "maxUnavailable": 0,
    }
    if ingress:
        canary["canaryService"] = f"{model.name}-canary"
        canary["stableService"] = f"{model.name}-stable"
        canary["trafficRouting"] = {"nginx": {"stableIngress": ingress}}
    return {
        "apiVersion": API,
        "kind": "Rollout",
        "metadata": {
            "name": model.deployment_name,
            "namespace": model.namespace,
            "labels": model.selector_labels(),
        },
        "spec": {
            "replicas": model.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": model.selector_labels()},
            "template": pod_template(model, spec, server_type_env=True),
            "strategy": {"canary": canary},
        },
    }


def manifests(
    model: Model,
    spec: RolloutSpec,
    sel: Selectors,
    prometheus_url: str,
    ingress: str | None = None,
) -> list[dict[str, Any]]:
    """The templates first (the Rollout refers to them), then the Services and the Rollout."""
    objects = [
        triggers_template(model, spec, sel, prometheus_url),
        step_gate_template(model, spec, sel, prometheus_url),
    ]
    if ingress:
        objects.append(service(model, f"{model.name}-canary"))
        objects.append(service(model, f"{model.name}-stable"))
    objects.append(rollout(model, spec, sel, ingress))
    return objects
