"""The fleet's metric seam: :class:`~tandem.rollout.prometheus.PrometheusSource` over the whole
fleet (each side is every deployment with that ``server_type``, narrowed by
``--prometheus-selector``), plus each deployment's share of the scoring requests.

The sides' queries are :mod:`tandem.rollout.promql`'s, unchanged: summed over the fleet's
series, requests and errors are the fleet's counts, P99 comes from the fleet's merged histogram and
RSS is per worker over the side's deployments. The share query groups the same request counter
(the same ``SERVED`` routes) by the ``deployment_id`` label the fleet's file-based discovery sets.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from tandem.rollout import promql
from tandem.rollout.analysis import TraceWindow
from tandem.rollout.prometheus import PrometheusSource, SideReading

logger = logging.getLogger("tandem.fleet")


def requests_by_deployment(sel: str, window: str) -> str:
    """Scoring requests per ``deployment_id`` over the window."""
    served = promql.selector(sel, promql.SERVED)
    return f"sum by (deployment_id) (increase(drum_requests_total{{{served}}}[{window}]))"


class PrometheusFleetMetrics:
    """Prometheus as the fleet's metric source."""

    def __init__(self, url: str, fleet_selector: str = "", client: httpx.Client | None = None):
        self.source = PrometheusSource(url, extra_selector=fleet_selector, client=client)
        self.fleet_selector = promql.selector(fleet_selector)

    def read(
        self, side: str, now: float, window_s: float, step_since: float, started_at: float
    ) -> SideReading:
        """One side of the fleet (see :meth:`PrometheusSource.read`)."""
        return self.source.read(side, now, window_s, step_since, started_at)

    def traces(self, side: str, now: float, window_s: float, lag_s: float) -> TraceWindow | None:
        """One side's span counts (see :meth:`PrometheusSource.traces`)."""
        return self.source.traces(side, now, window_s, lag_s)

    def requests_by_deployment(self, now: float, window_s: float) -> dict[str, int] | None:
        """Scoring requests per deployment in the window; None when Prometheus cannot say."""
        expr = requests_by_deployment(self.fleet_selector, promql.duration(window_s))
        try:
            resp = self.source.client.get(
                self.source.url + "/api/v1/query", params={"query": expr, "time": f"{now:.3f}"}
            )
            doc: dict[str, Any] = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("prometheus query failed (%s): %s", expr, exc)
            return None
        if doc.get("status") != "success":
            return None
        out: dict[str, int] = {}
        for series in (doc.get("data") or {}).get("result") or []:
            member = (series.get("metric") or {}).get("deployment_id")
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if member and value == value:  # NaN is no data
                out[member] = round(value)
        return out
