"""The router's configuration and the routing it starts with."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tandem.rollout.router.routing import MAX_WEIGHT_BP, Routing, percent_to_bp

logger = logging.getLogger("tandem.rollout.router")

DEFAULT_MAX_BODY = 100 * 1024 * 1024


@dataclass(frozen=True)
class RouterConfig:
    """Everything the router process needs."""

    baseline_url: str
    """Base URL of the baseline deployment, e.g. ``http://127.0.0.1:9001``."""
    candidate_url: str
    """Base URL of the candidate deployment."""
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    admin_token: str | None = None
    """When set, the admin listener requires ``Authorization: Bearer <token>``."""
    max_body_bytes: int = DEFAULT_MAX_BODY
    backend_timeout: float = 60.0
    """Seconds a backend may take to answer (connect, each read and write)."""
    max_inflight_mirrors: int = 64
    store_path: str | None = None
    """The rollout SQLite file: read for the initial weight and the dashboard, never written."""
    health_interval: float = 1.0
    """Seconds between ``/ping`` checks of a candidate marked down."""
    initial_weight_bp: int = 0
    """Weight when the store has no saved status."""
    initial_mirror_rate: float = 0.0
    """Mirror rate when the store records none."""
    log_level: str = "info"

    def __post_init__(self) -> None:
        for name in ("baseline_url", "candidate_url"):
            url = getattr(self, name)
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s) URL, got {url!r}")
        if self.max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        if self.backend_timeout <= 0:
            raise ValueError("backend_timeout must be positive")
        if self.max_inflight_mirrors < 0:
            raise ValueError("max_inflight_mirrors must not be negative")
        if self.health_interval <= 0:
            raise ValueError("health_interval must be positive")
        if not 0 <= self.initial_weight_bp <= MAX_WEIGHT_BP:
            raise ValueError("initial_weight_bp must be within 0..10000")
        if not 0.0 <= self.initial_mirror_rate <= 1.0:
            raise ValueError("initial_mirror_rate must be within 0..1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``--config-json`` format)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RouterConfig:
        """Inverse of :meth:`to_dict`; rejects unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"router config has unknown keys: {sorted(unknown)}")
        return cls(**doc)


def initial_routing(config: RouterConfig) -> Routing:
    """The routing to start with: the store's saved weight and mirror rate, else the config's."""
    weight_bp = config.initial_weight_bp
    mirror_rate = config.initial_mirror_rate
    path = Path(config.store_path) if config.store_path else None
    if path is not None and path.exists():
        try:
            from tandem.rollout.store import RolloutStore

            store = RolloutStore(path)
            try:
                status = store.load_status()
                if status is not None:
                    weight_bp = percent_to_bp(status.weight)
                    rate = getattr(status, "mirror_rate", None)
                    if rate is None:
                        latest = store.observations(limit=1)
                        rate = latest[-1].get("mirror_rate") if latest else None
                    mirror_rate = float(rate) if isinstance(rate, (int, float)) else 0.0
                    if status.phase.is_terminal:
                        mirror_rate = 0.0
                    logger.info(
                        "resuming recorded routing from %s: phase %s, weight %s %% (%d bp), "
                        "mirror rate %s",
                        path,
                        status.phase.value,
                        status.weight,
                        weight_bp,
                        mirror_rate,
                    )
            finally:
                store.close()
        except Exception as exc:  # a broken store must not stop the router from serving
            logger.warning("cannot read the rollout store %s: %s; using the config", path, exc)
    mirror_rate = min(1.0, max(0.0, mirror_rate))
    return Routing(weight_bp=weight_bp, mirror_rate=mirror_rate, version=0, applied_at=time.time())
