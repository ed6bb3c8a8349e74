"""Paging on-call through PagerDuty's Events API v2: trigger on rollback, resolve on recovery.

One dedup key per rollout (derived from its start time, which the state keeps, so a restarted
controller pages into the same incident): a rollback triggers it, and the baseline passing its
post-rollback verification resolves it. Sending happens on one background thread, in order, with a
few retries; paging never blocks or fails an evaluation.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import httpx

logger = logging.getLogger("tandem.rollout")

#: PagerDuty's limit on ``payload.summary``.
MAX_SUMMARY = 1024


def dedup_key(started_at: float) -> str:
    """The rollout's incident key."""
    return f"tandem-rollout-{int(started_at * 1000)}"


class PagerDuty:
    """Sends Events API v2 messages for one rollout."""

    def __init__(
        self, url: str, routing_key: str, source: str = "tandem-rollout", attempts: int = 3
    ) -> None:
        self.url = url
        self.routing_key = routing_key
        self.source = source
        self.attempts = attempts
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def trigger(self, key: str, summary: str, details: dict[str, Any]) -> None:
        """Open (or update) the rollout's incident."""
        self._send(
            {
                "routing_key": self.routing_key,
                "event_action": "trigger",
                "dedup_key": key,
                "payload": {
                    "summary": summary[:MAX_SUMMARY],
                    "source": self.source,
                    "severity": "critical",
                    "component": "tandem-rollout",
                    "custom_details": details,
                },
            }
        )

    def resolve(self, key: str) -> None:
        """Close the rollout's incident."""
        self._send({"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": key})

    def _send(self, event: dict[str, Any]) -> None:
        """Queue an event. One worker thread delivers them in order, each retried before the
        next: a resolve delivered before the trigger it closes would be dropped by PagerDuty,
        and the trigger would then open an incident nothing closes."""
        self._queue.put(event)
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._deliver_all, name="tandem-pagerduty", daemon=True
                )
                self._worker.start()

    def _deliver_all(self) -> None:
        while True:
            event = self._queue.get()
            try:
                self._deliver(event)
            except Exception:  # paging never takes the worker down
                logger.exception("PagerDuty event failed")
            finally:
                self._queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                resp = httpx.post(self.url, json=event, timeout=10.0)
                if resp.status_code < 300:
                    return
                if resp.status_code not in (429,) and resp.status_code < 500:
                    logger.warning("PagerDuty refused the event: %s", resp.text[:300])
                    return
            except httpx.HTTPError as exc:
                logger.warning("PagerDuty event failed (attempt %d): %s", attempt, exc)
            if attempt < self.attempts:
                time.sleep(min(2.0**attempt, 10.0))
        logger.warning("PagerDuty event not delivered after %d attempts", self.attempts)
