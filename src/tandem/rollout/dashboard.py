"""The rollout dashboard: a self-contained status page served by the router's admin listener
(and, for ``tandem fleet``, by ``tandem fleet start --dashboard-address``, with a table of the
fleet's deployments).

``GET /`` (on the admin address) is one HTML page with inline JavaScript and SVG charts (no CDN,
no libraries). While open it fetches ``GET /api/dashboard`` every 1.5 s and shows the current
phase, weight and mirror rate, the status message, charts over time of the weight, per-side error
rate, P99 latency and RSS, the decision log, and the router's live counters and latest mirror
differences. With an admin token, open ``/?token=<token>``; the page passes it on to its fetches.

Observation documents
---------------------
The charts come from the store's ``observations`` table. The controller writes one row per
evaluation with ``RolloutStore.add_observation(at, weight, doc)``; ``at`` (unix seconds) and
``weight`` (candidate percent, 0..100) are columns, and the dashboard expects ``doc`` to be::

    {
      "phase": "canary",            # optional: the phase at this evaluation
      "mirror_rate": 0.01,          # optional: fraction of baseline traffic mirrored (0..1);
                                    #   the router also resumes from the latest one on restart
      "window_s": 300.0,            # optional: seconds of traffic the numbers cover
      "baseline": SIDE,
      "candidate": SIDE,
      "mirror": {                   # optional: mirrored comparisons in the window
        "compared": 120, "matched": 120, "differing": 0, "dropped": 0
      }
    }
    SIDE = {
      "requests": 1234,             # requests the side served in the window
      "errors": 1,                  # of which errors (status >= 500 or connection failure)
      "error_rate": 0.00081,        # errors / requests as a fraction (not percent), or null
      "p99_ms": 12.5,               # window P99 latency in milliseconds, or null
      "rss_mb": 180.2               # resident memory of the side's processes in MiB, or null
    }

Every number may be null or missing ("no data"): the charts leave a gap. Extra keys are kept in
the JSON and ignored by the page.

``/api/dashboard`` JSON
-----------------------
:func:`build_dashboard` returns::

    {
      "now": float,
      "store": {"path": str|null, "exists": bool, "error": str|null},
      "status": RolloutStatus.to_dict() | null,     # phase, weight, step_index, message, ...
      "spec": {...} | null,                          # the store's ``spec`` meta value
      "decisions": [{"seq", "at", "phase", "action", "rule", "from_weight", "to_weight",
                     "reason", "numbers"}, ...],     # the latest 500, oldest first
      "observations": [{"at", "weight", ...doc...}, ...],   # the latest 2000, oldest first
      "fleet": [{"id", "url", "bucket", "side", "desired", "health", "held_at",
                 "verification": {"at", "expect", "passed", "summary"} | null,
                 "requests", "share", ...}, ...] | null,   # tandem fleet's deployments
      "router": {                                    # live, from the router's statistics
        "routing": {"weight_bp", "mirror_rate", "version", "applied_at"},
        "effective_weight_bp": int, "candidate_down": bool, "uptime_s": float,
        "client": {...}, "mirror": {... "differences": [...]},
        "served": {"baseline": {"requests", "errors", "connection_failures", "p99_ms"},
                   "candidate": {...}}          # p99_ms: cumulative since the router started
      } | null
    }
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

MAX_DECISIONS = 500
MAX_OBSERVATIONS = 2000


@cache
def dashboard_html() -> bytes:
    """The page's bytes (``static/dashboard.html``, shipped as package data)."""
    return (resources.files("tandem.rollout") / "static" / "dashboard.html").read_bytes()


def summarize_router(stats: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's view of the router's ``/api/stats`` document (no raw histograms)."""
    from tandem.quantiles import histogram_quantile

    bounds = stats.get("latency_bounds_ms") or []
    served = {}
    for side, doc in (stats.get("served") or {}).items():
        counts = (doc.get("latency") or {}).get("counts") or []
        served[side] = {
            "requests": doc.get("requests", 0),
            "errors": doc.get("errors", 0),
            "connection_failures": doc.get("connection_failures", 0),
            "p99_ms": histogram_quantile(counts, 0.99, bounds) if bounds else None,
        }
    return {
        "routing": stats.get("routing"),
        "effective_weight_bp": stats.get("effective_weight_bp"),
        "candidate_down": stats.get("candidate_down"),
        "uptime_s": stats.get("uptime_s"),
        "client": stats.get("client"),
        "mirror": stats.get("mirror"),
        "served": served,
    }


def _all_decisions(store: Any, keep: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    since = 0
    while True:
        page = store.decisions(since=since, limit=1000)
        if not page:
            break
        rows.extend(asdict(row) for row in page)
        rows = rows[-keep:]
        since = page[-1].seq
        if len(page) < 1000:
            break
    return rows


def build_dashboard(
    store_path: Path | None,
    router_stats: dict[str, Any] | None = None,
    *,
    max_decisions: int = MAX_DECISIONS,
    max_observations: int = MAX_OBSERVATIONS,
) -> dict[str, Any]:
    """The ``/api/dashboard`` document (see the module docstring). Never raises for a missing
    or unreadable store: ``store.error`` says what went wrong."""
    doc: dict[str, Any] = {
        "now": time.time(),
        "store": {
            "path": str(store_path) if store_path else None,
            "exists": bool(store_path and store_path.exists()),
            "error": None,
        },
        "status": None,
        "spec": None,
        "decisions": [],
        "observations": [],
        "router": summarize_router(router_stats) if router_stats else None,
        "fleet": None,
    }
    if store_path is None or not store_path.exists():
        return doc
    try:
        from tandem.rollout.store import RolloutStore

        store = RolloutStore(store_path)
        try:
            status = store.load_status()
            doc["status"] = status.to_dict() if status is not None else None
            doc["spec"] = store.get_json("spec")
            doc["decisions"] = _all_decisions(store, max_decisions)
            doc["observations"] = store.observations(limit=max_observations)
            if store.get_json("fleet") is not None:
                from tandem.fleet.controller import status_rows

                doc["fleet"] = status_rows(store)
        finally:
            store.close()
    except Exception as exc:  # the page shows the error instead of failing
        doc["store"]["error"] = f"{type(exc).__name__}: {exc}"
    return doc
