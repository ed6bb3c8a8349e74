"""``tandem export prometheus-rules``: every trigger of the seed as a Prometheus alert.

One rule group, evaluated every ``interval`` of the rollout spec (the controller's cadence), with
one alert per :func:`tandem.export.checks.checks` entry; written as a prometheus-operator
``PrometheusRule`` or as a plain rules file (``rule_files:``) for a Prometheus of your own.

Labels: ``severity`` (``critical`` for the immediate triggers, ``warning`` for the gradual
ones), ``category: rollout``, ``tandem_rule`` (the ``decide()`` rule, e.g.
``immediate.error_rate``) and ``tandem_action`` (``rollback`` or ``reduce``), plus the
deployment's (``tandem_model``). Sent to the rollout router's Alertmanager webhook
(``/api/alerts``), each is recorded as an ``alert`` event; none matches the spec's
``security_alert_matcher`` (:func:`check_not_security`), because the controller judges these
triggers itself from the same queries: a match would turn a latency regression into a
"security incident" and an immediate rollback. Annotations are static (no ``$value``), so a
notification never differs between two evaluations.
"""

from __future__ import annotations

from typing import Any

from tandem.errors import ConfigError
from tandem.export.checks import Check
from tandem.rollout import promql
from tandem.rollout.alerts import matches, parse_matchers
from tandem.rollout.spec import RolloutSpec

CATEGORY = "rollout"


def alert_labels(check: Check, extra: dict[str, str]) -> dict[str, str]:
    """The labels an exported alert carries."""
    return {
        "severity": "critical" if check.immediate else "warning",
        "category": CATEGORY,
        "tandem_rule": check.rule,
        "tandem_action": check.action,
        **extra,
    }


def alert_annotations(check: Check) -> dict[str, str]:
    """The alert's static annotations."""
    how = (
        "The rollout controller rolls the candidate back to 0 % on this trigger."
        if check.immediate
        else "The rollout controller steps the canary weight down (the rollback plan's "
        "gradual reduction) on this trigger."
    )
    return {
        "summary": check.summary,
        "description": f"{how} decide() rule: {check.rule}; threshold: "
        f"{promql.number(check.threshold)}.",
    }


def alert_rule(check: Check, extra: dict[str, str]) -> dict[str, Any]:
    """One alerting rule."""
    return {
        "alert": check.alert,
        "expr": check.expr,
        "for": promql.duration(check.for_s) if check.for_s > 0 else "0s",
        "labels": alert_labels(check, extra),
        "annotations": alert_annotations(check),
    }


def check_not_security(checks: tuple[Check, ...], extra: dict[str, str], spec: RolloutSpec) -> None:
    """ConfigError when an exported alert would match the spec's security matcher."""
    matchers = parse_matchers(spec.triggers.security_alert_matcher)
    for check in checks:
        labels = {"alertname": check.alert, **alert_labels(check, extra)}
        if matches(labels, matchers):
            raise ConfigError(
                f"alert {check.alert} would match security_alert_matcher "
                f"{spec.triggers.security_alert_matcher!r}: the rollout would treat it as a "
                "security incident; change the matcher or the alert labels"
            )


def rule_group(
    name: str, checks: tuple[Check, ...], spec: RolloutSpec, extra: dict[str, str]
) -> dict[str, Any]:
    """The rule group: every check's alert, evaluated every ``spec.interval``."""
    check_not_security(checks, extra, spec)
    return {
        "name": name,
        "interval": promql.duration(spec.interval),
        "rules": [alert_rule(c, extra) for c in checks],
    }


def rules_file(group: dict[str, Any]) -> dict[str, Any]:
    """A plain Prometheus rules file (``rule_files:``) holding the group."""
    return {"groups": [group]}


def prometheus_rule(
    name: str, namespace: str, group: dict[str, Any], labels: dict[str, str]
) -> dict[str, Any]:
    """The group as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"groups": [group]},
    }
