"""Prometheus as the rollout's metric source (the *metrics* seam's real implementation).

Each evaluation runs :mod:`tandem.rollout.promql`'s queries for both sides at the controller's
``now``. A side whose newest sample is older than ``stale_after`` seconds, or that has no series,
is "no data": zero requests and unknown P99, RSS and liveness, which holds the step (the evidence
rule) and never counts as healthy; its trace counts are unknown too, so the trace-gap rule is not
judged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from tandem.rollout import promql
from tandem.rollout.analysis import SideWindow, TraceWindow

logger = logging.getLogger("tandem.rollout")


@dataclass(frozen=True)
class SideReading:
    """What Prometheus says about one side at one evaluation."""

    window: SideWindow
    step: SideWindow
    rss: float | None
    oom_kills: int
    up: bool | None
    """None: no data (no series, stale, or Prometheus unreachable)."""


NO_DATA = SideReading(SideWindow(), SideWindow(), None, 0, None)


class PrometheusSource:
    """Reads both sides from a Prometheus server's HTTP API."""

    def __init__(
        self,
        url: str,
        selectors: dict[str, str] | None = None,
        extra_selector: str = "",
        stale_after: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        sides = {**promql.DEFAULT_SELECTORS, **(selectors or {})}
        self.selectors = {side: promql.selector(sel, extra_selector) for side, sel in sides.items()}
        self.stale_after = stale_after
        self.client = client or httpx.Client(timeout=5.0)

    def query(self, expr: str, at: float) -> float | None:
        """One instant query; None when Prometheus has no single finite answer."""
        return self._ask(expr, at)[1]

    def _ask(self, expr: str, at: float) -> tuple[bool, float | None]:
        """(answered, value): ``answered`` is False when the query failed (Prometheus down,
        refused, timed out), which is no data; an answer without a series is ``(True, None)``."""
        try:
            resp = self.client.get(
                self.url + "/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}
            )
            doc: dict[str, Any] = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("prometheus query failed (%s): %s", expr, exc)
            return False, None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error") if isinstance(doc, dict) else doc
            logger.warning("prometheus refused %s: %s", expr, error)
            return False, None
        return True, promql.scalar(doc)

    def read(
        self, side: str, now: float, window_s: float, step_since: float, started_at: float
    ) -> SideReading:
        """The side's window, step window, RSS per worker, OOM kills and liveness at ``now``."""
        sel = self.selectors[side]
        q = promql.side_queries(sel, window_s, now - started_at)
        newest = self.query(q.last_scrape, now)
        if newest is None or now - newest > self.stale_after:
            return NO_DATA
        step = promql.side_queries(sel, now - step_since, now - started_at)
        up = self.query(q.up, now)
        return SideReading(
            window=self._window(q, now),
            step=self._window(step, now),
            rss=self.query(q.rss, now),
            oom_kills=round(self.query(q.oom_kills, now) or 0.0),
            up=None if up is None else up >= 1.0,
        )

    def traces(self, side: str, now: float, window_s: float, lag_s: float) -> TraceWindow | None:
        """The side's span counts for the trace-gap rule (:func:`promql.trace_queries`).

        None when the side has no fresh series, does not trace (no ``drum_otel_*`` series), or
        the window is not longer than the lag.
        """
        sel = self.selectors[side]
        q = promql.trace_queries(sel, window_s, lag_s)
        if q is None:
            return None
        newest = self.query(promql.last_scrape(sel), now)
        if newest is None or now - newest > self.stale_after:
            return None
        ended = self.query(q.spans_ended, now)
        exported = self.query(q.spans_exported, now)
        failures = self.query(q.export_failures, now)
        if ended is None or exported is None or failures is None:
            return None
        return TraceWindow(round(ended), round(exported), round(failures))

    def _window(self, q: promql.SideQueries, now: float) -> SideWindow:
        requests = self.query(q.requests, now)
        if not requests:
            return SideWindow()
        # No 5xx series at all is zero errors; a failed query is no data, never zero errors.
        answered, errors = self._ask(q.errors, now)
        if not answered:
            return SideWindow()
        return SideWindow(round(requests), round(errors or 0.0), self.query(q.p99, now))
