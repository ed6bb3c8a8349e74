"""The seams a rollout was started with, kept in its state so that a resumed controller keeps them.

A rollout has three seams: its *targets* (spawned servers, or deployments attached with
``--baseline-url``/``--candidate-url``), its *traffic* engine (the built-in router, or nginx
through the ``--nginx-conf`` include file) and its *metric* source (the router's counters, or
Prometheus at ``--prometheus-url``). ``rollout start`` records all three; started again on the
same state file (after a crash, a ``kill -9``, a host restart) the controller takes them from
there, whatever its command line leaves out. A command line that names different ones is

- refused where it would change an engine mid-rollout: other targets, the other traffic engine
  or another include file, Prometheus switched on or off (a production rollout must never start
  driving, or judging by, something else because a flag was forgotten);
- taken, and recorded as its own ``operator.seam_change`` decision, where it only changes a
  setting of the same engine: nginx's test and reload commands and access log, Prometheus' URL
  (it moved) and selectors.

Credentials are not stored: a Prometheus URL with a password in it is recorded with the password
replaced and a SHA-256 of the whole URL, and resuming such a rollout needs the same
``--prometheus-url`` again (as the admin token: only its hash is kept).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tandem.errors import ConfigError

#: Deployment fields a resume may not change (the targets and traffic engines).
FIXED = ("baseline_url", "candidate_url", "traffic", "nginx_conf")
#: Deployment fields a resume may change (recorded as a seam change).
ADJUSTABLE = ("nginx_test_cmd", "nginx_reload_cmd", "nginx_access_log")
#: Metric-source settings a resume may change (recorded as a seam change).
SELECTORS = ("prometheus_selector", "baseline_selector", "candidate_selector")

_FLAG = {name: "--" + name.replace("_", "-") for name in FIXED}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def redact(url: str) -> str:
    """``url`` with the password of its user information (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True)
class MetricSeam:
    """Where the rollout's evidence comes from: Prometheus (``prometheus_url``) or, when that is
    None, the built-in router's counters and each side's ``/stats/``."""

    prometheus_url: str | None = None
    """The whole URL, credentials included: held in memory, never stored as it is."""
    prometheus_selector: str = ""
    baseline_selector: str | None = None
    candidate_selector: str | None = None

    @property
    def prometheus(self) -> bool:
        """Whether the rollout judges by Prometheus."""
        return self.prometheus_url is not None

    def record(self) -> dict[str, Any]:
        """What the state keeps (the URL's password replaced, a hash of the whole URL)."""
        url = self.prometheus_url
        secret = url is not None and redact(url) != url
        return {
            "source": "prometheus" if url is not None else "builtin",
            "prometheus_url": redact(url) if url is not None else None,
            "prometheus_url_sha256": _digest(url) if url is not None and secret else None,
            **{name: getattr(self, name) for name in SELECTORS},
        }


@dataclass(frozen=True)
class Stated:
    """The seam flags a ``rollout start`` command line states (None: not given)."""

    baseline_url: str | None = None
    candidate_url: str | None = None
    traffic: str | None = None
    nginx_conf: str | None = None
    nginx_test_cmd: str | None = None
    nginx_reload_cmd: str | None = None
    nginx_access_log: str | None = None
    prometheus_url: str | None = None
    prometheus_selector: str | None = None
    baseline_selector: str | None = None
    candidate_selector: str | None = None

    def metrics(self) -> MetricSeam:
        """The metric seam of a new rollout."""
        return MetricSeam(
            self.prometheus_url,
            self.prometheus_selector or "",
            self.baseline_selector,
            self.candidate_selector,
        )


@dataclass
class Resumed:
    """A resumed rollout's seams: the recorded ones, with the settings the command line changed."""

    deployment: dict[str, Any]
    """The recorded deployment with the changed settings applied."""
    metrics: MetricSeam
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{setting: {"before": ..., "after": ...}}`` (URLs redacted); empty when nothing changed."""


def _prometheus_url(saved: Mapping[str, Any], stated: str | None) -> tuple[str, dict[str, Any]]:
    """The URL to resume with and, when it differs from the recorded one, the change."""
    recorded = saved.get("prometheus_url")
    digest = saved.get("prometheus_url_sha256")
    if stated is None:
        if digest:
            raise ConfigError(
                "this rollout's --prometheus-url holds credentials: pass the same "
                "--prometheus-url to resume it (the state file keeps only its hash)"
            )
        return str(recorded), {}
    same = hmac.compare_digest(_digest(stated), digest) if digest else stated == recorded
    if same:
        return stated, {}
    return stated, {"prometheus_url": {"before": recorded, "after": redact(stated)}}


def resume(
    deployment: Mapping[str, Any], metrics: Mapping[str, Any] | None, stated: Stated
) -> Resumed:
    """The seams to resume a rollout with: its recorded ``deployment`` and ``metrics`` (None for
    a state file written before the metric seam was recorded: the command line's is taken)."""
    changes: dict[str, dict[str, Any]] = {}
    for name in FIXED:
        before = deployment.get(name, "builtin" if name == "traffic" else None)
        after = getattr(stated, name)
        if after is not None and after != before:
            what = {"baseline_url": "targets", "candidate_url": "targets"}.get(name, "traffic")
            raise ConfigError(
                f"this rollout was started with {_FLAG[name]} {before or '(none)'}; resuming it "
                f"with {after} would change its {what} mid-rollout. Resume it with the same "
                f"flags (or leave them out: the state file has them), or abort it and start anew"
            )
    dep = dict(deployment)
    for name in ADJUSTABLE:
        after = getattr(stated, name)
        if after is not None and after != dep.get(name):
            changes[name] = {"before": dep.get(name), "after": after}
            dep[name] = after
    if metrics is None:  # recorded before this seam was: the command line decides, once
        seam = stated.metrics()
    elif metrics.get("source") != "prometheus":
        if stated.prometheus_url is not None:
            raise ConfigError(
                "this rollout judges by the router's counters (it was started without "
                "--prometheus-url); resuming it with --prometheus-url would change what it "
                "judges by mid-rollout. Abort it and start anew to judge by Prometheus"
            )
        seam = MetricSeam()
    else:
        url, change = _prometheus_url(metrics, stated.prometheus_url)
        changes.update(change)
        chosen: dict[str, Any] = {}
        for name in SELECTORS:
            before, after = metrics.get(name), getattr(stated, name)
            if after is not None and after != before:
                changes[name] = {"before": before, "after": after}
            chosen[name] = after if after is not None else before
        seam = MetricSeam(
            url,
            chosen["prometheus_selector"] or "",
            chosen["baseline_selector"],
            chosen["candidate_selector"],
        )
    if dep.get("traffic") == "nginx" and not seam.prometheus:
        raise ConfigError(
            "this rollout drives nginx, which keeps no per-side counters: pass --prometheus-url "
            "to resume it (its state file predates recording it)"
        )
    return Resumed(dep, seam, changes)
