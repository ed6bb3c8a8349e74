"""Rollout phases and the one status record saved after every evaluation."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any

SCHEMA_VERSION = 1


class Phase(enum.StrEnum):
    """Where a rollout is. Terminal phases never change again."""

    SHADOW = "shadow"
    """0 % served; a sample of live requests is mirrored to the candidate and compared."""
    CANARY = "canary"
    """Serving the candidate at ``weight`` and stepping up through the spec's steps."""
    REDUCING = "reducing"
    """A gradual trigger fired: the weight steps down through the reduction table."""
    HOLDING = "holding"
    """A gradual reduction's trigger cleared; waiting for ``resume`` (or auto-resume)."""
    PAUSED = "paused"
    """An operator paused the rollout; only immediate triggers still act."""
    ROLLED_BACK = "rolled_back"
    """Terminal: a rollback rule sent all traffic back to the baseline."""
    ABORTED = "aborted"
    """Terminal: an operator aborted; all traffic is on the baseline."""
    PROMOTED = "promoted"
    """Terminal: the candidate serves 100 %."""

    @property
    def is_terminal(self) -> bool:
        """Whether the rollout is over."""
        return self in (Phase.ROLLED_BACK, Phase.ABORTED, Phase.PROMOTED)


@dataclass(frozen=True)
class RolloutStatus:
    """The rollout's state, saved atomically (with its decision) after every evaluation."""

    phase: Phase = Phase.SHADOW
    weight: float = 0.0
    """Percent of live traffic the candidate serves (0.01 % resolution)."""
    step_index: int = -1
    """Index into the spec's steps; -1 in shadow."""
    started_at: float = 0.0
    phase_started_at: float = 0.0
    step_started_at: float = 0.0
    resume_phase: Phase | None = None
    """The phase ``resume`` returns to (set while paused)."""
    last_reduction_at: float | None = None
    trigger_streak: dict[str, int] = field(default_factory=dict)
    """Consecutive evaluations each gradual trigger has held for."""
    rollback_rule: str | None = None
    """The rule that ended the rollout, when it was rolled back."""
    message: str = ""
    """One line for humans: what the rollout is doing and why."""
    spec_digest: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        doc = asdict(self)
        doc["phase"] = self.phase.value
        doc["resume_phase"] = self.resume_phase.value if self.resume_phase else None
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RolloutStatus:
        """Inverse of :meth:`to_dict`; refuses other schema versions."""
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported rollout status schema {doc.get('schema_version')}")
        values = dict(doc)
        values["phase"] = Phase(doc["phase"])
        values["resume_phase"] = Phase(doc["resume_phase"]) if doc.get("resume_phase") else None
        values["trigger_streak"] = dict(doc.get("trigger_streak") or {})
        return cls(**values)

    def evolve(self, **changes: Any) -> RolloutStatus:
        """A copy with some fields changed."""
        return replace(self, **changes)
