"""The split: which side serves a request, whether it is mirrored, and the routing in force."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from tandem.rollout.split import BUCKETS, to_candidate

BASELINE = "baseline"
CANDIDATE = "candidate"
SIDES = (BASELINE, CANDIDATE)
MAX_WEIGHT_BP = BUCKETS
"""Split resolution: one bucket is 0.01 % of the keys."""
_MIRROR_PERSON = b"tandem-mirror"


def mirror_fraction(key: str) -> float:
    """A number in ``[0, 1)`` from the key, independent of :func:`split_bucket`."""
    digest = hashlib.blake2b(
        key.encode("utf-8", "surrogateescape"), digest_size=8, person=_MIRROR_PERSON
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def choose_side(key: str, weight_bp: int) -> str:
    """The side of a request: nginx's ``split_clients`` rule (:mod:`tandem.rollout.split`)."""
    return CANDIDATE if to_candidate(key, weight_bp) else BASELINE


def should_mirror(key: str, mirror_rate: float) -> bool:
    """Whether a baseline-served request with this key is mirrored at ``mirror_rate``."""
    return mirror_rate > 0 and mirror_fraction(key) < mirror_rate


def percent_to_bp(percent: float) -> int:
    """A weight in percent (0.01 % resolution) as basis points, clamped to ``0..10000``."""
    return max(0, min(MAX_WEIGHT_BP, round(float(percent) * 100)))


@dataclass(frozen=True)
class Routing:
    """The split the router applies; replaced as a whole, never mutated."""

    weight_bp: int = 0
    """Candidate share in basis points (0..10000)."""
    mirror_rate: float = 0.0
    """Fraction of baseline-served requests mirrored to the candidate (0..1)."""
    version: int = 0
    """Incremented by every applied change."""
    applied_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def parse_routing_update(doc: Any, current: Routing, now: float | None = None) -> Routing:
    """The routing a ``POST /api/routing`` body asks for; ValueError when it is invalid."""
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    unknown = set(doc) - {"weight_bp", "mirror_rate"}
    if unknown:
        raise ValueError(f"unknown keys: {sorted(unknown)}")
    if not doc:
        raise ValueError("give weight_bp and/or mirror_rate")
    weight = doc.get("weight_bp", current.weight_bp)
    if isinstance(weight, bool) or not isinstance(weight, int):
        if isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        else:
            raise ValueError(f"weight_bp must be an integer, got {weight!r}")
    if not 0 <= weight <= MAX_WEIGHT_BP:
        raise ValueError(f"weight_bp must be within 0..{MAX_WEIGHT_BP}, got {weight}")
    rate = doc.get("mirror_rate", current.mirror_rate)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise ValueError(f"mirror_rate must be a number, got {rate!r}")
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mirror_rate must be within 0..1, got {rate}")
    return Routing(
        weight_bp=weight,
        mirror_rate=rate,
        version=current.version + 1,
        applied_at=time.time() if now is None else now,
    )
