"""The rollout specification: steps, timings, success criteria and rollback triggers.

Defaults follow the rollback plan (ROLLBACK_PLAN.md) and the migration plan's canary section:
steps 1 → 5 → 10 → 25 → 50 → 75 → 90 → 100 %, per-step criteria, immediate triggers (error rate
> 1 %, any OOM kill, ``/ping`` silent for 30 s, any prediction difference, RSS growth > 10 %/h)
and the gradual-reduction table (> 50 % → 50 %, 25–50 % → 25 %, 10–25 % → 5 %, 1–10 % → 0 %,
15 minutes apart). Every duration accepts seconds (``"2s"``) so tests run the whole story fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from tandem.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds from ``30``, ``"30s"``, ``"15m"``, ``"1h"`` or ``"250ms"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{name} has invalid value {value!r}; use e.g. 30s, 15m, 1h")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return seconds


@dataclass(frozen=True)
class StepCriteria:
    """What a step must show before the weight goes up (from the canary plan)."""

    max_error_rate: float = 0.001
    """Candidate error-rate point estimate must be below this (0.1 %)."""
    max_p99_increase: float = 0.20
    """Candidate P99 at most this much above the baseline's (0.20 = +20 %)."""
    max_memory_increase: float = 0.30
    """Candidate RSS at most this much above the baseline's."""


#: Per-step criteria (P99 / memory): 1 %: +20 %/+50 %; 5 %: +20 %/+40 %; 10 % and later:
#: +20 %/+30 %. The canary plan allows P99 +30 % at 1 % and +25 % at 5 %, but the rollback plan
#: reduces any step whose P99 is more than 20 % above the baseline's ("Latency Regression"), and
#: the migration plan's M5 schedule asks for +20 % from 1 % on: one ladder, so a step never
#: passes what the triggers reduce.
DEFAULT_CRITERIA: dict[float, StepCriteria] = {
    1.0: StepCriteria(0.001, 0.20, 0.50),
    5.0: StepCriteria(0.001, 0.20, 0.40),
    10.0: StepCriteria(0.001, 0.20, 0.30),
}


@dataclass(frozen=True)
class Triggers:
    """Automatic rollback triggers (the rollback plan's tables)."""

    immediate_error_rate: float = 0.01
    """Candidate error rate above this (with confidence) rolls back to 0 % at once."""
    ping_timeout: float = 30.0
    """Seconds without an answer to ``/ping`` that count as a deadlock."""
    rss_growth_per_hour: float = 0.10
    """Candidate RSS growth rate (fraction of its starting RSS per hour) that counts as a leak."""
    leak_min_span: float = 600.0
    """Seconds of RSS history needed before the leak rule may fire."""
    leak_warmup: float = 600.0
    """Seconds of RSS history ignored at first (imports, caches and pools settle)."""
    p99_increase: float = 0.20
    """Candidate P99 above the baseline's by more than this starts a gradual reduction: the
    rollback plan's "Latency Regression > 20 %" (its "> 50 %" row is then covered too)."""
    memory_increase: float = 0.50
    """Candidate RSS above the baseline's by more than this starts a gradual reduction."""
    consecutive: int = 2
    """Gradual triggers must hold on this many consecutive evaluations."""
    gradual_error_rate: float = 0.001
    """Candidate 5xx rate above this (with confidence) starts a gradual reduction."""
    extension_failures: int = 3
    """More extension-failure reports than this in the window start a gradual reduction."""
    trace_export_lag: float = 15.0
    """Seconds a span may take from ending to being counted as exported: the batch processor's
    ``OTEL_BSP_SCHEDULE_DELAY`` (5 s by default), the export itself and, with Prometheus, a
    scrape interval. The trace-gap rule expects exported only the spans that ended at least
    this long ago (see :func:`tandem.rollout.decide.decide`); the window must be longer."""
    security_alert_matcher: str = 'category="security"'
    """Alertmanager alerts whose labels match this (Prometheus matcher syntax, comma-separated:
    ``=``, ``!=``, ``=~``, ``!~``) are security incidents: an immediate rollback."""


@dataclass(frozen=True)
class RolloutSpec:
    """Everything that shapes a rollout. Hashable: a changed spec is recorded as such."""

    steps: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 100.0)
    """Candidate weights in percent, ascending, ending at 100."""
    shadow_duration: float = 3600.0
    """Seconds of shadow traffic (0 % served, mirrored and compared) before the first step."""
    shadow_sample_rate: float = 0.1
    """Fraction of live requests mirrored to the candidate in shadow."""
    canary_mirror_rate: float = 0.01
    """Fraction of baseline-served requests still mirrored during the canary steps."""
    step_hold: float = 900.0
    """Seconds at each step before it may be promoted."""
    interval: float = 10.0
    """Seconds between evaluations."""
    window: float = 300.0
    """Seconds of traffic the triggers look at."""
    min_samples: int = 200
    """Requests a side needs in a window before any rule may judge it."""
    confidence: float = 0.95
    """Confidence of the Wilson interval used by the error-rate rules."""
    max_shadow_p99_ratio: float = 1.2
    """Shadow success: candidate P99 at most this times the baseline's."""
    criteria: tuple[tuple[float, StepCriteria], ...] = tuple(sorted(DEFAULT_CRITERIA.items()))
    """Per-step criteria: each applies from its weight up to the next listed weight."""
    triggers: Triggers = field(default_factory=Triggers)
    """Rollback triggers."""
    reduction_table: tuple[tuple[float, float, float], ...] = (
        (50.0, 100.0, 50.0),
        (25.0, 50.0, 25.0),
        (10.0, 25.0, 5.0),
        (0.0, 10.0, 0.0),
    )
    """Gradual reduction: (low, high, to) — a weight in (low, high] reduces to ``to``."""
    reduction_wait: float = 900.0
    """Seconds between gradual reductions (re-evaluated at each)."""
    auto_resume: bool = False
    """After a gradual reduction whose trigger cleared, resume stepping without an operator."""

    def criteria_for(self, weight: float) -> StepCriteria:
        """The criteria that apply at a weight."""
        chosen = self.criteria[0][1]
        for start, crit in self.criteria:
            if weight >= start:
                chosen = crit
        return chosen

    def reduce_to(self, weight: float) -> float:
        """The gradual-reduction target for a current weight."""
        for low, high, target in self.reduction_table:
            if low < weight <= high:
                return target
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    def digest(self) -> str:
        """A short stable hash of the spec."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RolloutSpec:
        """Build from YAML/JSON data; durations may be strings like ``"15m"``."""
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"rollout spec has unknown keys: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key in ("shadow_duration", "step_hold", "interval", "window", "reduction_wait"):
            if key in doc:
                values[key] = parse_duration(doc[key], key)
        for key in (
            "shadow_sample_rate",
            "canary_mirror_rate",
            "confidence",
            "max_shadow_p99_ratio",
        ):
            if key in doc:
                values[key] = float(doc[key])
        if "min_samples" in doc:
            values["min_samples"] = int(doc["min_samples"])
        if "auto_resume" in doc:
            values["auto_resume"] = bool(doc["auto_resume"])
        if "steps" in doc:
            values["steps"] = tuple(float(s) for s in doc["steps"])
        if "criteria" in doc:
            crit = doc["criteria"]
            items = crit.items() if isinstance(crit, dict) else [(c[0], c[1]) for c in crit]
            values["criteria"] = tuple(
                sorted(
                    (float(w), c if isinstance(c, StepCriteria) else StepCriteria(**c))
                    for w, c in items
                )
            )
        if "triggers" in doc:
            trig = (
                dict(doc["triggers"])
                if not isinstance(doc["triggers"], Triggers)
                else asdict(doc["triggers"])
            )
            for key in ("ping_timeout", "leak_min_span", "leak_warmup", "trace_export_lag"):
                if key in trig:
                    trig[key] = parse_duration(trig[key], f"triggers.{key}")
            values["triggers"] = Triggers(**trig)
        if "reduction_table" in doc:
            values["reduction_table"] = tuple(
                tuple(float(x) for x in row) for row in doc["reduction_table"]
            )
        spec = cls(**values)
        spec.validate()
        return spec

    @classmethod
    def load(
        cls,
        path: Path | None,
        overrides: dict[str, Any] | None = None,
        base: dict[str, Any] | None = None,
    ) -> RolloutSpec:
        """Defaults (or ``base``, a recorded spec), then ``rollout.yaml``, then flag overrides."""
        doc: dict[str, Any] = dict(base or {})
        if path is not None:
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read rollout spec {path}: {exc}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"rollout spec {path} must be a mapping")
            doc.update(loaded)
        doc.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(doc)

    def validate(self) -> None:
        """Reject specs that cannot run."""
        if not self.steps or list(self.steps) != sorted(set(self.steps)):
            raise ConfigError(f"steps must be strictly ascending, got {list(self.steps)}")
        if self.steps[-1] != 100.0 or self.steps[0] <= 0:
            raise ConfigError("steps must be within (0, 100] and end at 100")
        if any(round(s * 100) != s * 100 for s in self.steps):
            raise ConfigError("step weights have 0.01 % resolution")
        if not 0 < self.confidence < 1:
            raise ConfigError("confidence must be in (0, 1)")
        if self.interval <= 0:
            raise ConfigError("interval must be positive")
        for rate in (self.shadow_sample_rate, self.canary_mirror_rate):
            if not 0 <= rate <= 1:
                raise ConfigError("mirror rates must be within [0, 1]")
        if self.min_samples < 1:
            raise ConfigError("min_samples must be at least 1")
        trig = self.triggers
        if not 0 < trig.gradual_error_rate <= trig.immediate_error_rate < 1:
            raise ConfigError("triggers: need 0 < gradual_error_rate <= immediate_error_rate < 1")
        if trig.extension_failures < 0:
            raise ConfigError("triggers.extension_failures must be >= 0")
        if trig.trace_export_lag < 0:
            raise ConfigError("triggers.trace_export_lag must be >= 0")
        from tandem.rollout.alerts import parse_matchers

        parse_matchers(trig.security_alert_matcher)

    def with_overrides(self, **changes: Any) -> RolloutSpec:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def parse_steps(text: str) -> list[float]:
    """``--steps 1,5,25,100`` as percentages; a clear :class:`ConfigError` otherwise."""
    try:
        return [float(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(
            f"--steps {text!r} must be comma-separated percentages, e.g. 1,5,25,100"
        ) from None
