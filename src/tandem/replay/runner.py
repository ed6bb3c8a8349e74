"""Sending the requests: bounded concurrency, a per-request timeout, both sides at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import httpx

from tandem.replay.compare import Answer, CompareOptions, Comparison, compare
from tandem.replay.loader import ReplayRequest

#: Verdicts of one replayed request.
MATCH = "match"
MISMATCH = "mismatch"
ERROR = "error"
NOT_COMPARED = "not_compared"


@dataclass(frozen=True)
class Outcome:
    """What one server answered to one request (or the error that stopped it)."""

    status: int | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    latency_seconds: float | None = None
    """Round trip, from sending the request to the last byte of the response."""
    error: str | None = None

    def answer(self) -> Answer:
        """As a comparable :class:`~tandem.replay.compare.Answer` (only when not an error)."""
        assert self.status is not None
        return Answer(self.status, self.content_type, self.headers, self.body)


@dataclass(frozen=True)
class Result:
    """One request, both answers, and how they compare."""

    index: int
    request: ReplayRequest
    candidate: Outcome
    baseline: Outcome | None
    """The live baseline's answer; None when comparing with the recording."""
    comparison: Comparison | None
    verdict: str
    baseline_latency_seconds: float | None

    @property
    def baseline_status(self) -> int | None:
        """Baseline status, live or recorded."""
        if self.baseline is not None:
            return self.baseline.status
        return self.request.expected.status if self.request.expected else None


async def _send(
    client: httpx.AsyncClient, base_url: str, request: ReplayRequest, timeout: float
) -> Outcome:
    url = base_url.rstrip("/") + request.path
    started = time.perf_counter()
    try:
        response = await asyncio.wait_for(
            client.request(
                request.method,
                url,
                params=list(request.query),
                headers=list(request.headers),
                content=request.body if request.body or request.method != "GET" else None,
            ),
            timeout,
        )
    except TimeoutError:
        return Outcome(error=f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    elapsed = time.perf_counter() - started
    return Outcome(
        status=response.status_code,
        content_type=response.headers.get("content-type"),
        headers=tuple(response.headers.multi_items()),
        body=response.content,
        latency_seconds=elapsed,
    )


def judge(
    index: int,
    request: ReplayRequest,
    candidate: Outcome,
    baseline: Outcome | None,
    options: CompareOptions,
) -> Result:
    """Compare the candidate's answer with the baseline's (live, or recorded when None).

    The bodies are not kept in the result (a long replay must not hold every response).
    """
    result = _judge(index, request, candidate, baseline, options)
    return replace(
        result,
        candidate=replace(candidate, body=b""),
        baseline=replace(baseline, body=b"") if baseline is not None else None,
    )


def _judge(
    index: int,
    request: ReplayRequest,
    candidate: Outcome,
    baseline: Outcome | None,
    options: CompareOptions,
) -> Result:
    if baseline is not None:
        baseline_latency = baseline.latency_seconds
        if candidate.error is not None or baseline.error is not None:
            return Result(index, request, candidate, baseline, None, ERROR, baseline_latency)
        expected = baseline.answer()
    else:
        recorded = request.expected
        baseline_latency = recorded.latency_seconds if recorded else None
        if candidate.error is not None:
            return Result(index, request, candidate, None, None, ERROR, baseline_latency)
        if recorded is None:
            return Result(index, request, candidate, None, None, NOT_COMPARED, baseline_latency)
        # A content type that is not known (a hand-written expectation without one) is not
        # compared: the candidate's stands in for it.
        content_type = recorded.content_type
        if content_type is None:
            content_type = candidate.content_type
        expected = Answer(recorded.status, content_type, recorded.headers, recorded.body)
    comparison = compare(expected, candidate.answer(), options)
    verdict = MATCH if comparison.matched else MISMATCH
    return Result(index, request, candidate, baseline, comparison, verdict, baseline_latency)


async def replay(
    requests: Sequence[ReplayRequest],
    candidate_url: str,
    baseline_url: str | None,
    options: CompareOptions,
    concurrency: int = 10,
    timeout: float = 30.0,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Send every request to the candidate (and the baseline, at the same time) and compare.

    At most ``concurrency`` requests are in flight per server; each is abandoned (an error)
    after ``timeout`` seconds. Results come back in input order.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport_timeout = httpx.Timeout(timeout)
    results: list[Result | None] = [None] * len(requests)
    pending = iter(enumerate(requests))
    # Comparing big bodies is CPU work: it runs beside the event loop, which keeps reading
    # responses (and timing them) meanwhile.
    comparer = ThreadPoolExecutor(1, thread_name_prefix="tandem-replay-compare")
    loop = asyncio.get_running_loop()

    async with (
        httpx.AsyncClient(limits=limits, timeout=transport_timeout) as candidate_client,
        httpx.AsyncClient(limits=limits, timeout=transport_timeout) as baseline_client,
    ):

        async def one(index: int, request: ReplayRequest) -> Result:
            if baseline_url is None:
                candidate = await _send(candidate_client, candidate_url, request, timeout)
                baseline = None
            else:
                candidate, baseline = await asyncio.gather(
                    _send(candidate_client, candidate_url, request, timeout),
                    _send(baseline_client, baseline_url, request, timeout),
                )
            return await loop.run_in_executor(
                comparer, judge, index, request, candidate, baseline, options
            )

        async def worker() -> None:
            for index, request in pending:
                result = await one(index, request)
                results[index] = result
                if on_result is not None:
                    on_result(result)

        try:
            workers = max(1, min(concurrency, len(requests)))
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            comparer.shutdown(wait=False)
    return [r for r in results if r is not None]
