"""Alertmanager webhooks and label matchers: how a security incident reaches the rollout.

Alertmanager posts its webhook payload (``{"version": "4", "alerts": [{"status", "labels",
"annotations", "startsAt", "fingerprint"}, …]}``) to the router's admin API, which records every
firing alert as an ``alert`` event. The controller counts those whose labels match the spec's
``security_alert_matcher`` (Prometheus matcher syntax) as security incidents: an immediate
rollback, whatever their severity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tandem.errors import ConfigError

_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')


@dataclass(frozen=True)
class Matcher:
    """One ``label op "value"`` term."""

    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Prometheus semantics: a missing label is the empty string; regexes are anchored."""
        got = labels.get(self.label, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        found = re.fullmatch(self.value, got) is not None
        return found if self.op == "=~" else not found


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """``category="security", severity=~"high|critical"`` → matchers (all must hold)."""
    body = text.strip().removeprefix("{").removesuffix("}")
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ConfigError(f"invalid alert matcher {text!r} at {body[pos:]!r}")
        label, op, raw = m.groups()
        value = raw.encode().decode("unicode_escape")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ConfigError(f"invalid regex in alert matcher {text!r}: {exc}") from None
        matchers.append(Matcher(label, op, value))
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ConfigError(f"invalid alert matcher {text!r}: expected ',' at {pos}")
            pos += 1
    if not matchers:
        raise ConfigError("alert matcher is empty")
    return tuple(matchers)


def matches(labels: Mapping[str, str], matchers: tuple[Matcher, ...]) -> bool:
    """Whether every matcher holds for ``labels``."""
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class FiringAlert:
    """One firing alert of a webhook payload."""

    key: str
    """Alertmanager's fingerprint plus start time: a re-sent notification counts once."""
    text: str
    labels: dict[str, str]


def firing_alerts(payload: Any) -> list[FiringAlert]:
    """The firing alerts of an Alertmanager webhook payload; ValueError when it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ValueError("not an Alertmanager webhook payload (no 'alerts' list)")
    out = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise ValueError("every alert needs a 'labels' object")
        if alert.get("status", "firing") != "firing":
            continue
        labels = {str(k): str(v) for k, v in alert["labels"].items()}
        annotations = alert.get("annotations") or {}
        name = labels.get("alertname", "alert")
        summary = annotations.get("summary") or annotations.get("description") or ""
        fingerprint = str(alert.get("fingerprint") or sorted(labels.items()))
        key = f"alert:{fingerprint}:{alert.get('startsAt', '')}"
        out.append(FiringAlert(key, f"{name}: {summary}".rstrip(": "), labels))
    return out
