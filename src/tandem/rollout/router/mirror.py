"""Mirror and compare: a sampled copy of a baseline-served request goes to the candidate after the
client has its answer, and the two answers are compared byte for byte.

This is the part of the router that nginx's ``mirror`` feeds when nginx splits the traffic: the
router at weight 0 and mirror rate 1 is the comparison service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tandem.rollout.analysis import describe_difference
from tandem.rollout.router.backend import Backend, BackendError, Headers
from tandem.rollout.router.routing import BASELINE, CANDIDATE, SIDES
from tandem.rollout.router.stats import MirrorStats, SideStats

logger = logging.getLogger("tandem.rollout.router")

_SNIPPET = 40


def first_difference(a: bytes, b: bytes) -> int | None:
    """Offset of the first byte where ``a`` and ``b`` differ (the shorter length when one is a
    prefix of the other), or None when equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on prefix equality: fast for multi-megabyte bodies
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _snippet(data: bytes, offset: int) -> str:
    start = max(0, offset - _SNIPPET // 2)
    return data[start : start + _SNIPPET].decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Answer:
    """What one backend answered: enough to compare two answers."""

    status: int
    content_type: str
    body: bytes


def compare_answers(
    baseline: Answer, candidate: Answer, meta: dict[str, Any]
) -> dict[str, Any] | None:
    """None when the answers agree; else a difference record (see the module docstring)."""
    differs = []
    if baseline.status != candidate.status:
        differs.append("status")
    if baseline.content_type != candidate.content_type:
        differs.append("content_type")
    offset = first_difference(baseline.body, candidate.body)
    if offset is not None:
        differs.append("body")
    if not differs:
        return None
    return {
        **meta,
        "differs": differs,
        "baseline": {
            "status": baseline.status,
            "content_type": baseline.content_type,
            "length": len(baseline.body),
        },
        "candidate": {
            "status": candidate.status,
            "content_type": candidate.content_type,
            "length": len(candidate.body),
        },
        "offset": offset,
        "baseline_bytes": _snippet(baseline.body, offset) if offset is not None else "",
        "candidate_bytes": _snippet(candidate.body, offset) if offset is not None else "",
    }


def record_difference(store_path: str, difference: dict[str, Any]) -> None:
    """Add a difference to the rollout store's events (logged, never raised, on failure)."""
    from pathlib import Path

    from tandem.rollout.store import add_events

    if not Path(store_path).is_file():  # the router never creates a rollout's state
        logger.warning(
            "rollout store %s is gone; a mirrored difference was not recorded", store_path
        )
        return
    labels = {"request_id": str(difference.get("request_id")), "path": str(difference.get("path"))}
    try:
        add_events(
            Path(store_path),
            [("difference", "router", describe_difference(difference), labels, None)],
        )
    except Exception:
        logger.exception("could not record a mirrored difference in %s", store_path)


@dataclass
class Mirrored:
    """A baseline-served request to replay on the candidate."""

    method: str
    target: str
    headers: Headers
    body: bytes
    baseline: Answer
    latency_ms: float
    meta: dict[str, Any]
    """``at``, ``method``, ``path``, ``query``, ``request_id``: copied into a difference."""


class Mirror:
    """Sends mirrored requests to the candidate in background tasks and counts what they find.

    At most ``max_in_flight`` mirrors run at once; beyond that they are dropped and counted, so
    mirroring never holds memory or connections the client's traffic needs.
    """

    def __init__(
        self,
        backend: Callable[[], Backend],
        candidate_url: str,
        max_in_flight: int,
        candidate_down: Callable[[], bool],
        mark_candidate_down: Callable[[str], None],
        store_path: str | None = None,
    ) -> None:
        self._backend = backend
        self._store_path = store_path
        """The rollout store: each difference is also recorded there, so one found just before
        the router dies is not lost with its counters."""
        self._url = candidate_url
        self.max_in_flight = max_in_flight
        self._candidate_down = candidate_down
        self._mark_down = mark_candidate_down
        self.stats = MirrorStats()
        self.mirrored = {side: SideStats() for side in SIDES}
        """Both halves of each launched pair: the baseline's answer and the candidate's."""
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, request: Mirrored | None) -> None:
        """Launch a mirror of ``request`` if there is room (None: too large to keep)."""
        stats = self.stats
        stats.sampled += 1
        if self._candidate_down():
            stats.skipped_candidate_down += 1
            return
        if request is None:
            stats.skipped_too_large += 1
            return
        if stats.in_flight >= self.max_in_flight:
            stats.dropped += 1
            return
        stats.launched += 1
        stats.in_flight += 1
        self.mirrored[BASELINE].answered(request.baseline.status, request.latency_ms)
        task = asyncio.create_task(self._run(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: Mirrored) -> None:
        stats = self.mirrored[CANDIDATE]
        meta = request.meta
        try:
            start = time.perf_counter()
            try:
                response = await self._backend().send(
                    request.method,
                    self._url + request.target,
                    [*request.headers, ("x-tandem-mirror", "1")],
                    request.body,
                )
                try:
                    data = await response.read()
                finally:
                    response.release()
            except BackendError as exc:
                stats.failed()
                self.stats.failed += 1
                self._mark_down(f"mirrored {request.method} {meta['path']}: {exc}")
                return
            stats.answered(response.status, (time.perf_counter() - start) * 1000.0)
            candidate = Answer(response.status, response.content_type, data)
            self.stats.compared += 1
            difference = compare_answers(request.baseline, candidate, meta)
            if difference is None:
                self.stats.matched += 1
            elif candidate.status >= 500 > request.baseline.status:
                self.stats.candidate_failed += 1
            else:
                self.stats.differing += 1
                self.stats.differences.append(difference)
                logger.warning(
                    "mirrored %s %s (request id %s) differs: %s at byte %s",
                    request.method,
                    meta["path"],
                    meta["request_id"],
                    ", ".join(difference["differs"]),
                    difference["offset"],
                )
                if self._store_path:
                    await asyncio.to_thread(record_difference, self._store_path, difference)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.failed += 1
            logger.exception("mirror of %s %s failed", request.method, meta.get("path"))
        finally:
            self.stats.in_flight -= 1

    def to_dict(self) -> dict[str, Any]:
        """The ``mirror`` part of the statistics document."""
        return self.stats.to_dict(self.max_in_flight)

    async def aclose(self) -> None:
        """Cancel the mirrors still running."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
