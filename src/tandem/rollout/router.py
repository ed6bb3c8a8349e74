"""The rollout's traffic router: splits live traffic between the baseline and the candidate.

A separate process (an ASGI app on Uvicorn, one shared ``httpx.AsyncClient`` connection pool to
both backends) with two listeners:

**Public listener** (``listen_host:listen_port``) proxies every method and path (with its query
string) to the baseline or the candidate:

- *Split.* The request key is ``X-Request-ID`` when present, else ``"<client address> <path>"``.
  The candidate serves the request when nginx's MurmurHash2 of the key is below
  ``weight_bp * 0xffffffff // 10000`` (weight in basis points, 0..10 000): exactly nginx's
  ``split_clients``, so the built-in router and the nginx engine split alike
  (:mod:`tandem.rollout.split`).
  The same key (a retry) always lands on the same side for a given weight, and raising the weight
  only moves keys from the baseline to the candidate. Clients that want a fine-grained split send
  a distinct ``X-Request-ID`` per request: without one, all requests of one client to one path
  share a key.
- *Atomic weights.* The weight and the mirror rate live in one immutable :class:`Routing` object
  that ``POST /api/routing`` replaces with a single reference assignment. Each request reads the
  reference once, so in-flight requests are never dropped or split inconsistently.
- *Forwarding.* The request body is buffered in full (up to ``max_body_bytes``; above it the
  router answers 413 with Tandem's own JSON body). End-to-end headers are forwarded, hop-by-hop
  ones (``Connection`` and the headers it names, ``Keep-Alive``, ``Transfer-Encoding``, ``TE``,
  ``Trailer``, ``Upgrade``, ``Proxy-*``, ``Expect``) are dropped, ``Content-Length`` is recomputed
  and ``X-Forwarded-For``/``-Host``/``-Proto`` are added. The backend's status, headers and body
  bytes come back unchanged plus ``X-Tandem-Backend: baseline|candidate`` (``router`` on answers
  the router made itself: 413 and 502). ``text/event-stream`` answers (streamed chat) stream
  through chunk by chunk; every other answer is buffered.
- *Backend death.* A connection error or timeout talking to the candidate marks it down at once
  (its weight counts as 0 until its ``/ping`` answers 200 again; a background check runs every
  ``health_interval`` seconds), counts a failure against the candidate and retries the same
  request on the baseline, so the client does not see it. A connection error on the baseline is
  retried once (a stale pooled connection), then answered 502. 5xx answers are passed through and
  counted as errors of the side that gave them.
- *Mirroring.* With probability ``mirror_rate``, decided deterministically from the request key
  by a second hash independent of the split (blake2b personalised ``tandem-mirror``), a request
  served by the baseline is replayed to the candidate in a background task after the client has
  its answer. At most ``max_inflight_mirrors`` mirrors run at once; beyond that, mirrors are
  dropped and counted. The candidate's status, content type and body bytes are compared with what
  the baseline answered; the last 20 differences are kept with the path, request id, both
  statuses and the first differing bytes. Mirroring never delays or fails the client's request.

**Admin listener** (``admin_host:admin_port``, loopback by default; when ``admin_token`` is set,
every request needs ``Authorization: Bearer <token>`` or ``?token=<token>``):

- ``GET /api/health`` → ``{"status": "ok", "ready": bool, "pid": int, "uptime_s": float,
  "candidate_down": bool}``
- ``GET /api/stats`` → the statistics document (:meth:`Router.stats`):

  .. code-block:: text

      {"now": float, "started_at": float, "uptime_s": float,
       "routing": {"weight_bp": int, "mirror_rate": float, "version": int, "applied_at": float},
       "effective_weight_bp": int,           # 0 while the candidate is down
       "candidate_down": bool, "candidate_down_since": float|null, "candidate_marked_down": int,
       "latency_bounds_ms": [float, ...],    # bucket upper bounds, 0.1 ms · 1.1^i up to 120 s
       "served":   {"baseline": SIDE, "candidate": SIDE},   # client-facing traffic
       "mirrored": {"baseline": SIDE, "candidate": SIDE},   # pairs of launched mirrors
       "client": {"requests": int, "errors": int, "too_large": int,
                  "retried_on_baseline": int, "rerouted_candidate_down": int},
       "mirror": {"sampled": int, "launched": int, "compared": int, "matched": int,
                  "differing": int, "candidate_failed": int, "dropped": int,
                  "skipped_candidate_down": int, "skipped_too_large": int, "failed": int,
                  "in_flight": int, "max_in_flight": int,
                  "differences": [DIFF, ...]}}   # last 20, oldest first
      SIDE = {"requests": int, "errors": int, "connection_failures": int, "status_5xx": int,
              "latency": {"counts": [int, ...],  # len(latency_bounds_ms) + 1; last = overflow
                          "count": int, "sum_ms": float}}
      DIFF = {"at": float, "method": str, "path": str, "query": str, "request_id": str|null,
              "differs": ["status", "content_type", "body"],  # the parts that differ
              "baseline":  {"status": int, "content_type": str, "length": int},
              "candidate": {"status": int, "content_type": str, "length": int},
              "offset": int|null,                # first differing byte of the bodies
              "baseline_bytes": str, "candidate_bytes": str}   # ~40 bytes around it

  Every counter is cumulative since the router started, so a controller takes two snapshots and
  differences them; :func:`counts_delta` and :func:`histogram_quantile` give a window's P99.
  ``served`` counts every attempt: a candidate connection failure retried on the baseline counts
  one candidate request (an error and a connection failure) and one baseline request. Errors are
  answers with status >= 500 and connection failures; latency histograms hold answered requests
  only (time until the whole answer was read; until the headers for streams). ``mirrored.baseline``
  is the baseline half of each launched mirror pair (the same requests as ``mirrored.candidate``).
- ``GET /api/routing`` → the current routing; ``POST /api/routing`` with
  ``{"weight_bp": int 0..10000, "mirror_rate": float 0..1}`` (either may be omitted to keep its
  value) applies it atomically and returns the applied routing (400 JSON on invalid input).
- ``GET /`` the dashboard page and ``GET /api/dashboard`` its JSON (see
  :mod:`tandem.rollout.dashboard`).

On start the router takes its weight from the rollout store's saved status (``weight`` percent →
basis points) and its mirror rate from the status's or the latest observation's ``mirror_rate``
(0 when neither has one), so a restarted router resumes the recorded weight; without a saved
status it uses ``initial_weight_bp``/``initial_mirror_rate``.

Run it with :func:`run_router` (blocking; for a child process) or from the command line::

    python -m tandem.rollout.router --baseline http://127.0.0.1:9001 \\
        --candidate http://127.0.0.1:9002 --listen 0.0.0.0:8080 --admin 127.0.0.1:8081 \\
        --store rollout.db

``--config-json`` takes the whole :class:`RouterConfig` as JSON; explicit flags override it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from tandem.errors import ConfigError
from tandem.quantiles import histogram_quantile
from tandem.rollout.split import BUCKETS, request_key, to_candidate
from tandem.runtime_params import Params
from tandem.tls import TlsSettings

logger = logging.getLogger("tandem.rollout.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BASELINE = "baseline"
CANDIDATE = "candidate"
SIDES = (BASELINE, CANDIDATE)
"""Split resolution: one bucket is 0.01 % of the keys."""
MAX_WEIGHT_BP = BUCKETS
DEFAULT_MAX_BODY = 100 * 1024 * 1024
MAX_DIFFERENCES = 20
_SNIPPET = 40
_MIRROR_PERSON = b"tandem-mirror"
_ROUTER_MADE = b"router"

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        "expect",
    }
)
"""Request/response headers that never cross the proxy (plus ``Proxy-*`` and those named in
``Connection``)."""


# -- splitting ---------------------------------------------------------------------------------


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


# -- latency histogram -------------------------------------------------------------------------


def _latency_bounds() -> tuple[float, ...]:
    bounds = []
    i = 0
    while True:
        bound = 0.1 * 1.1**i
        bounds.append(float(f"{bound:.6g}"))
        if bound >= 120_000.0:
            return tuple(bounds)
        i += 1


LATENCY_BOUNDS_MS: tuple[float, ...] = _latency_bounds()
"""Upper bounds (ms) of the latency buckets: 0.1 ms × 1.1^i, up to the first at or over 120 s.
A value lands in the first bucket whose bound is >= it; values above the last bound land in an
extra overflow bucket, so a histogram has ``len(LATENCY_BOUNDS_MS) + 1`` counts."""


class LatencyHistogram:
    """Cumulative latency counts over :data:`LATENCY_BOUNDS_MS` (relative error <= 10 %)."""

    __slots__ = ("counts", "count", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.count = 0
        self.sum_ms = 0.0

    @staticmethod
    def bucket(ms: float) -> int:
        """Index of the bucket ``ms`` falls in."""
        return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)

    def observe(self, ms: float) -> None:
        """Count one latency in milliseconds."""
        self.counts[self.bucket(ms)] += 1
        self.count += 1
        self.sum_ms += ms

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of everything observed (see :func:`histogram_quantile`)."""
        return histogram_quantile(self.counts, q, LATENCY_BOUNDS_MS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"counts": list(self.counts), "count": self.count, "sum_ms": round(self.sum_ms, 3)}


def counts_delta(now: Sequence[int], before: Sequence[int]) -> list[int]:
    """Per-bucket difference of two cumulative snapshots (a window's histogram)."""
    if len(now) != len(before):
        raise ValueError("histograms have different bucket counts")
    return [a - b for a, b in zip(now, before, strict=True)]


# -- routing state and statistics --------------------------------------------------------------


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


@dataclass
class SideStats:
    """Cumulative counters of one side for one kind of traffic."""

    requests: int = 0
    errors: int = 0
    """Answers with status >= 500 plus connection failures."""
    connection_failures: int = 0
    status_5xx: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def answered(self, status: int, ms: float) -> None:
        """Count an answer."""
        self.requests += 1
        self.latency.observe(ms)
        if status >= 500:
            self.errors += 1
            self.status_5xx += 1

    def failed(self) -> None:
        """Count a connection failure (or timeout)."""
        self.requests += 1
        self.errors += 1
        self.connection_failures += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "connection_failures": self.connection_failures,
            "status_5xx": self.status_5xx,
            "latency": self.latency.to_dict(),
        }


@dataclass
class MirrorStats:
    """Cumulative mirroring counters and the last differences."""

    sampled: int = 0
    launched: int = 0
    compared: int = 0
    matched: int = 0
    differing: int = 0
    """Answers that differ where the candidate did not fail (wrong data: status < 500)."""
    candidate_failed: int = 0
    """Mirrors the candidate answered with 5xx while the baseline did not: errors, counted in
    the candidate's mirrored error figures, not as data differences."""
    dropped: int = 0
    skipped_candidate_down: int = 0
    skipped_too_large: int = 0
    failed: int = 0
    in_flight: int = 0
    differences: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_DIFFERENCES)
    )

    def to_dict(self, max_in_flight: int) -> dict[str, Any]:
        """JSON-able form."""
        doc = {k: v for k, v in self.__dict__.items() if k != "differences"}
        doc["max_in_flight"] = max_in_flight
        doc["differences"] = list(self.differences)
        return doc


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


# -- configuration -----------------------------------------------------------------------------


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


# -- ASGI helpers ------------------------------------------------------------------------------


class _BackendFailed(Exception):
    """A transport error before anything was sent to the client (safe to retry)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.exc = exc


class _StreamBroken(Exception):
    """A streamed answer broke after its headers were sent (the client sees a cut stream)."""


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def _send_simple(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str) + "\n").encode()


async def _send_json(
    send: Send, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_simple(send, status, _json_bytes(obj), b"application/json", extra or [])


def _message(text: str) -> dict[str, str]:
    return {"message": text}


def _hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> set[str]:
    drop = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            drop.update(t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip())
    return drop


def _is_end_to_end(name: str, drop: set[str]) -> bool:
    return name not in drop and not name.startswith("proxy-")


class _Server:
    """Uvicorn server without its own signal handling (the router handles signals for both)."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        class _Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

            def install_signal_handlers(self) -> None:
                return None

        self.server = _Quiet(config)

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True

    async def serve(self) -> None:
        await self.server.serve()


# -- the router --------------------------------------------------------------------------------


@dataclass
class _Served:
    status: int
    content_type: str
    body: bytes | None
    """The whole body, or None for a stream too large to keep for mirroring."""
    latency_ms: float
    from_backend: bool = True
    """False for the router's own 502."""


class Router:
    """The router's state and its two ASGI apps (:attr:`public_app`, :attr:`admin_app`)."""

    def __init__(self, config: RouterConfig, routing: Routing | None = None) -> None:
        self.config = config
        self.routing: Routing = routing or Routing(applied_at=time.time())
        """The current split; replaced whole by :meth:`set_routing` (one reference assignment)."""
        self.started_at = time.time()
        self.candidate_down = False
        self.candidate_down_since: float | None = None
        self.candidate_marked_down = 0
        self.served = {side: SideStats() for side in SIDES}
        self.mirrored = {side: SideStats() for side in SIDES}
        self.client = {
            "requests": 0,
            "errors": 0,
            "too_large": 0,
            "retried_on_baseline": 0,
            "rerouted_candidate_down": 0,
        }
        self.mirror = MirrorStats()
        self._urls = {
            BASELINE: config.baseline_url.rstrip("/"),
            CANDIDATE: config.candidate_url.rstrip("/"),
        }
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._wake_health: asyncio.Event | None = None
        self.servers: list[_Server] = []

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backend connection pool and start the candidate health check."""
        timeout = self.config.backend_timeout
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=1024, max_keepalive_connections=256, keepalive_expiry=2.0
            ),
            follow_redirects=False,
            trust_env=False,
        )
        self._wake_health = asyncio.Event()
        self._health_task = asyncio.create_task(self._health_loop())

    async def aclose(self) -> None:
        """Stop background work and close the pool."""
        tasks = [*self._tasks, *([self._health_task] if self._health_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared backend client."""
        if self._http is None:
            raise RuntimeError("Router.start() was not awaited")
        return self._http

    # -- routing and health ---------------------------------------------------------------------

    def set_routing(self, routing: Routing) -> Routing:
        """Apply a new split atomically (requests already routed keep their side)."""
        old = self.routing
        self.routing = routing
        logger.info(
            "routing v%d applied: weight %d bp → %d bp, mirror rate %s → %s",
            routing.version,
            old.weight_bp,
            routing.weight_bp,
            old.mirror_rate,
            routing.mirror_rate,
        )
        return routing

    def mark_candidate_down(self, reason: str) -> None:
        """Stop sending the candidate traffic until its ``/ping`` answers again."""
        if self.candidate_down:
            return
        self.candidate_down = True
        self.candidate_down_since = time.time()
        self.candidate_marked_down += 1
        logger.warning("candidate marked down: %s", reason)
        if self._wake_health is not None:
            self._wake_health.set()

    async def _health_loop(self) -> None:
        assert self._wake_health is not None
        while True:
            if not self.candidate_down:
                self._wake_health.clear()
                await self._wake_health.wait()
            await asyncio.sleep(self.config.health_interval)
            if not self.candidate_down:
                continue
            try:
                r = await self.http.get(
                    self._urls[CANDIDATE] + "/ping",
                    timeout=max(1.0, self.config.health_interval),
                )
                healthy = r.status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and self.candidate_down:
                down_for = time.time() - (self.candidate_down_since or time.time())
                self.candidate_down = False
                self.candidate_down_since = None
                logger.warning("candidate is back (down for %.1f s)", down_for)

    def effective_weight_bp(self, routing: Routing | None = None) -> int:
        """The weight in force: 0 while the candidate is down."""
        return 0 if self.candidate_down else (routing or self.routing).weight_bp

    # -- statistics -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The ``/api/stats`` document (see the module docstring)."""
        now = time.time()
        routing = self.routing
        return {
            "now": now,
            "started_at": self.started_at,
            "uptime_s": round(now - self.started_at, 3),
            "routing": routing.to_dict(),
            "effective_weight_bp": self.effective_weight_bp(routing),
            "candidate_down": self.candidate_down,
            "candidate_down_since": self.candidate_down_since,
            "candidate_marked_down": self.candidate_marked_down,
            "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
            "served": {side: self.served[side].to_dict() for side in SIDES},
            "mirrored": {side: self.mirrored[side].to_dict() for side in SIDES},
            "client": dict(self.client),
            "mirror": self.mirror.to_dict(self.config.max_inflight_mirrors),
        }

    def health(self) -> dict[str, Any]:
        """The ``/api/health`` document."""
        return {
            "status": "ok",
            "ready": bool(self.servers) and all(s.started for s in self.servers),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "candidate_down": self.candidate_down,
        }

    # -- public listener ------------------------------------------------------------------------

    async def public_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The proxy (ASGI)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        routing = self.routing  # the one read of the split this request uses
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        client = scope.get("client")
        client_host = str(client[0]) if client else ""
        path = scope.get("path", "/")
        request_id = None
        for name, value in headers:
            if name.lower() == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        key = request_key(request_id, client_host, path)
        self.client["requests"] += 1
        try:
            body = await self._read_body(scope, receive, headers)
        except _ClientGone:
            return
        if body is None:
            self.client["too_large"] += 1
            text = (
                "ERROR: Request body is larger than the limit of "
                f"{self.config.max_body_bytes} bytes."
            )
            await _send_json(send, 413, _message(text), [(b"x-tandem-backend", _ROUTER_MADE)])
            return

        method = scope["method"]
        target = self._target(scope)
        forward_headers = self._forward_headers(headers, client_host, scope)
        side = choose_side(key, routing.weight_bp)
        if side == CANDIDATE and self.candidate_down:
            side = BASELINE
            self.client["rerouted_candidate_down"] += 1
        served: _Served | None = None
        try:
            if side == CANDIDATE:
                try:
                    served = await self._proxy(
                        CANDIDATE, method, target, forward_headers, body, send
                    )
                except _BackendFailed as exc:
                    self.served[CANDIDATE].failed()
                    self.mark_candidate_down(f"{method} {path}: {exc}")
                    self.client["retried_on_baseline"] += 1
                    side = BASELINE
            if side == BASELINE:
                served = await self._serve_baseline(method, target, forward_headers, body, send)
        except _StreamBroken:
            self.client["errors"] += 1
            raise
        if served is None:
            self.client["errors"] += 1
            return
        if served.status >= 500:
            self.client["errors"] += 1
        if side == BASELINE and served.from_backend and should_mirror(key, routing.mirror_rate):
            self._maybe_mirror(method, target, forward_headers, body, served, request_id, scope)

    async def _read_body(
        self, scope: Scope, receive: Receive, headers: list[tuple[bytes, bytes]]
    ) -> bytes | None:
        """The whole request body, or None when it is over the limit (then drained)."""
        limit = self.config.max_body_bytes
        declared = None
        for name, value in headers:
            if name.lower() == b"content-length":
                with contextlib.suppress(ValueError):
                    declared = int(value)
        too_large = declared is not None and declared > limit
        chunks: list[bytes] = []
        size = 0
        # Drain (and discard) an over-limit body up to a bound so the client reads the 413
        # instead of failing on a reset connection; past the bound, answer at once.
        drain_cap = limit + max(limit, 64 * 1024 * 1024)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                too_large = True
            if too_large:
                chunks.clear()
                if size > drain_cap:
                    return None
            elif chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if too_large:
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _target(scope: Scope) -> str:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope.get("path", "/")
        query = scope.get("query_string") or b""
        return path + ("?" + query.decode("latin-1") if query else "")

    @staticmethod
    def _forward_headers(
        headers: list[tuple[bytes, bytes]], client_host: str, scope: Scope
    ) -> list[tuple[bytes, bytes]]:
        drop = _hop_by_hop(headers) | {"host", "content-length"}
        out: list[tuple[bytes, bytes]] = []
        forwarded_for = None
        host = None
        for name, value in headers:
            lname = name.decode("latin-1").lower()
            if lname == "host":
                host = value
            if lname == "x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
                continue
            if _is_end_to_end(lname, drop):
                out.append((name, value))
        xff = client_host.encode("latin-1")
        out.append((b"x-forwarded-for", forwarded_for + b", " + xff if forwarded_for else xff))
        if host is not None:
            out.append((b"x-forwarded-host", host))
        out.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()))
        return out

    async def _serve_baseline(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        send: Send,
    ) -> _Served | None:
        last: _BackendFailed | None = None
        for _attempt in range(2):  # one retry: a pooled connection the backend just closed
            try:
                return await self._proxy(BASELINE, method, target, headers, body, send)
            except _BackendFailed as exc:
                self.served[BASELINE].failed()
                last = exc
                if isinstance(exc.exc, httpx.TimeoutException):
                    break
        logger.error("baseline failed for %s %s: %s", method, target, last)
        await _send_json(
            send,
            502,
            _message(f"ERROR: The baseline backend is unavailable: {last}"),
            [(b"x-tandem-backend", _ROUTER_MADE)],
        )
        return _Served(502, "application/json", None, 0.0, from_backend=False)

    async def _proxy(
        self,
        side: str,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        send: Send,
    ) -> _Served:
        """Forward to ``side`` and answer the client; _BackendFailed when nothing was sent."""
        request = httpx.Request(method, self._urls[side] + target, headers=headers, content=body)
        start = time.perf_counter()
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _BackendFailed(exc) from exc
        try:
            content_type = response.headers.get("content-type", "")
            raw = response.headers.raw
            drop = _hop_by_hop(raw) | {"content-length"}
            out = [
                (name.lower(), value)
                for name, value in raw
                if _is_end_to_end(name.decode("latin-1").lower(), drop)
            ]
            out.append((b"x-tandem-backend", side.encode()))
            no_body = method == "HEAD" or response.status_code in (204, 304)
            if content_type.lower().startswith("text/event-stream") and not no_body:
                return await self._stream(side, response, out, send, start, content_type)
            try:
                chunks = [chunk async for chunk in response.aiter_raw()]
            except httpx.TransportError as exc:
                raise _BackendFailed(exc) from exc
            data = b"".join(chunks)
            latency = (time.perf_counter() - start) * 1000.0
            if no_body:
                length = response.headers.get("content-length")
                if length is not None:
                    out.append((b"content-length", length.encode("latin-1")))
            else:
                out.append((b"content-length", str(len(data)).encode()))
            self.served[side].answered(response.status_code, latency)
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            await send({"type": "http.response.body", "body": data})
            return _Served(response.status_code, content_type, data, latency)
        finally:
            await response.aclose()

    async def _stream(
        self,
        side: str,
        response: httpx.Response,
        headers: list[tuple[bytes, bytes]],
        send: Send,
        start: float,
        content_type: str,
    ) -> _Served:
        latency = (time.perf_counter() - start) * 1000.0
        self.served[side].answered(response.status_code, latency)
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        kept: list[bytes] | None = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                if kept is not None:
                    size += len(chunk)
                    if size > self.config.max_body_bytes:
                        kept = None
                    else:
                        kept.append(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.TransportError as exc:
            # Headers are out: the client sees a cut stream, the side a connection failure.
            stats = self.served[side]
            stats.errors += 1
            stats.connection_failures += 1
            if side == CANDIDATE:
                self.mark_candidate_down(f"stream broke: {exc}")
            raise _StreamBroken(f"{side} stream broke: {exc}") from exc
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        body = b"".join(kept) if kept is not None else None
        return _Served(response.status_code, content_type, body, latency)

    # -- mirroring ------------------------------------------------------------------------------

    def _maybe_mirror(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        served: _Served,
        request_id: str | None,
        scope: Scope,
    ) -> None:
        mirror = self.mirror
        mirror.sampled += 1
        if self.candidate_down:
            mirror.skipped_candidate_down += 1
            return
        if served.body is None:
            mirror.skipped_too_large += 1
            return
        if mirror.in_flight >= self.config.max_inflight_mirrors:
            mirror.dropped += 1
            return
        mirror.launched += 1
        mirror.in_flight += 1
        self.mirrored[BASELINE].answered(served.status, served.latency_ms)
        baseline = Answer(served.status, served.content_type, served.body)
        meta = {
            "at": time.time(),
            "method": method,
            "path": scope.get("path", "/"),
            "query": (scope.get("query_string") or b"").decode("latin-1"),
            "request_id": request_id,
        }
        task = asyncio.create_task(self._mirror(method, target, headers, body, baseline, meta))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mirror(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        baseline: Answer,
        meta: dict[str, Any],
    ) -> None:
        stats = self.mirrored[CANDIDATE]
        try:
            request = httpx.Request(
                method,
                self._urls[CANDIDATE] + target,
                headers=[*headers, (b"x-tandem-mirror", b"1")],
                content=body,
            )
            start = time.perf_counter()
            try:
                response = await self.http.send(request, stream=True)
                try:
                    data = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                stats.failed()
                self.mirror.failed += 1
                self.mark_candidate_down(f"mirrored {method} {meta['path']}: {exc}")
                return
            stats.answered(response.status_code, (time.perf_counter() - start) * 1000.0)
            candidate = Answer(response.status_code, response.headers.get("content-type", ""), data)
            self.mirror.compared += 1
            difference = compare_answers(baseline, candidate, meta)
            if difference is None:
                self.mirror.matched += 1
            elif candidate.status >= 500 > baseline.status:
                self.mirror.candidate_failed += 1
            else:
                self.mirror.differing += 1
                self.mirror.differences.append(difference)
                logger.warning(
                    "mirrored %s %s (request id %s) differs: %s at byte %s",
                    method,
                    meta["path"],
                    meta["request_id"],
                    ", ".join(difference["differs"]),
                    difference["offset"],
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            self.mirror.failed += 1
            logger.exception("mirror of %s %s failed", method, meta.get("path"))
        finally:
            self.mirror.in_flight -= 1

    # -- admin listener -------------------------------------------------------------------------

    def _authorized(self, scope: Scope) -> bool:
        token = self.config.admin_token
        if not token:
            return True
        for name, value in scope.get("headers") or []:
            if name.lower() == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(
                    given.strip().encode(), token.encode()
                ):
                    return True
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        return any(hmac.compare_digest(q.encode(), token.encode()) for q in query.get("token", []))

    async def admin_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin API and dashboard (ASGI)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope.get("path", "/").rstrip("/") or "/"
        if not self._authorized(scope):
            await _send_json(
                send,
                401,
                _message("ERROR: Unauthorized"),
                [(b"www-authenticate", b'Bearer realm="tandem-router"')],
            )
            return
        routes: dict[str, tuple[str, ...]] = {
            "/": ("GET",),
            "/dashboard": ("GET",),
            "/api/health": ("GET",),
            "/api/stats": ("GET",),
            "/api/routing": ("GET", "POST"),
            "/api/dashboard": ("GET",),
            "/api/alerts": ("POST",),
            "/api/reports": ("POST",),
        }
        allowed = routes.get(path)
        if allowed is None:
            await _send_json(send, 404, _message("ERROR: Not Found"))
            return
        if method not in allowed and not (method == "HEAD" and "GET" in allowed):
            await _send_json(
                send,
                405,
                _message("ERROR: Method Not Allowed"),
                [(b"allow", ", ".join(allowed).encode())],
            )
            return
        if path in ("/", "/dashboard"):
            from tandem.rollout.dashboard import dashboard_html

            await _send_simple(
                send,
                200,
                dashboard_html(),
                b"text/html; charset=utf-8",
                [(b"cache-control", b"no-store")],
            )
        elif path == "/api/health":
            await _send_json(send, 200, self.health())
        elif path == "/api/stats":
            await _send_json(send, 200, self.stats())
        elif path == "/api/routing" and method == "POST":
            try:
                raw = await _read_all(receive, 64 * 1024)
                doc = json.loads(raw or b"null")
                routing = parse_routing_update(doc, self.routing)
            except (ValueError, UnicodeDecodeError) as exc:
                await _send_json(send, 400, _message(f"ERROR: {exc}"))
                return
            except _ClientGone:
                return
            await _send_json(send, 200, self.set_routing(routing).to_dict())
        elif path == "/api/routing":
            await _send_json(send, 200, self.routing.to_dict())
        elif path in ("/api/alerts", "/api/reports"):
            await self._record_events(path, receive, send)
        else:
            from tandem.rollout.dashboard import build_dashboard

            store = Path(self.config.store_path) if self.config.store_path else None
            stats = self.stats()
            doc = await asyncio.to_thread(build_dashboard, store, stats)
            await _send_json(send, 200, doc, [(b"cache-control", b"no-store")])

    async def _record_events(self, path: str, receive: Receive, send: Send) -> None:
        """Alertmanager's webhook (``/api/alerts``) or an extension-failure report
        (``/api/reports``, ``{"extension": "text"}``), recorded in the rollout's store."""
        if not self.config.store_path:
            await _send_json(send, 503, _message("ERROR: this router has no rollout store"))
            return
        try:
            raw = await _read_all(receive, 1024 * 1024)
            doc = json.loads(raw or b"null")
            events = _events_from(path, doc)
        except (ValueError, UnicodeDecodeError) as exc:
            await _send_json(send, 400, _message(f"ERROR: {exc}"))
            return
        except _ClientGone:
            return
        recorded = await asyncio.to_thread(_store_events, Path(self.config.store_path), events)
        await _send_json(send, 200, {"received": len(events), "recorded": recorded})


def _events_from(path: str, doc: Any) -> list[tuple[str, str, str, dict[str, str], str | None]]:
    """(kind, source, text, labels, key) for each event a posted document carries."""
    from tandem.rollout.alerts import firing_alerts

    if path == "/api/alerts":
        return [("alert", "alertmanager", a.text, a.labels, a.key) for a in firing_alerts(doc)]
    text = doc.get("extension") if isinstance(doc, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError('expected {"extension": "what failed"}')
    return [("extension", "admin-api", text.strip(), {}, None)]


def _store_events(
    path: Path, events: list[tuple[str, str, str, dict[str, str], str | None]]
) -> int:
    from tandem.rollout.store import RolloutStore

    store = RolloutStore(path)
    try:
        return sum(
            store.add_event(k, src, text, labels, key) for k, src, text, labels, key in events
        )
    finally:
        store.close()


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ValueError(f"body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- process entry points ----------------------------------------------------------------------


async def serve(config: RouterConfig) -> None:
    """Run the router until SIGTERM/SIGINT (or cancellation)."""
    import uvicorn

    router = Router(config, initial_routing(config))
    await router.start()

    def uv_config(app: Any, host: str, port: int, **extra: Any) -> Any:
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            access_log=False,
            log_level=config.log_level,
            server_header=False,
            date_header=False,
            timeout_keep_alive=5,
            **extra,
        )

    # DRUM_SSL_* put the public listener on HTTPS, as they do every Tandem server; the admin
    # listener stays on loopback, plain.
    tls = TlsSettings.from_params(Params())
    public = _Server(
        uv_config(
            router.public_app,
            config.listen_host,
            config.listen_port,
            **(tls.uvicorn_options() if tls else {}),
        )
    )
    if tls is not None:
        logger.info("public listener: %s", tls.log_line())
    admin = _Server(uv_config(router.admin_app, config.admin_host, config.admin_port))
    router.servers = [public, admin]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        public.stop()
        admin.stop()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received %s: finishing in-flight requests, then exiting", sig.name)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
    logger.info(
        "Tandem router on %s:%d (admin %s:%d): baseline %s, candidate %s, weight %d bp, "
        "mirror rate %s",
        config.listen_host,
        config.listen_port,
        config.admin_host,
        config.admin_port,
        config.baseline_url,
        config.candidate_url,
        router.routing.weight_bp,
        router.routing.mirror_rate,
    )
    try:
        await asyncio.gather(public.serve(), admin.serve())
    finally:
        stop()
        await router.aclose()


def run_router(config: RouterConfig) -> None:
    """Run the router in this process until SIGTERM/SIGINT (blocking; for a child process)."""
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore"):  # one line per proxied request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m tandem.rollout.router``."""
    parser = argparse.ArgumentParser(
        prog="python -m tandem.rollout.router",
        description="Tandem's rollout traffic router: splits, mirrors and compares traffic "
        "between a baseline and a candidate deployment.",
    )
    parser.add_argument(
        "--config-json",
        help="the whole RouterConfig as a JSON object; the flags below override its fields",
    )
    parser.add_argument("--baseline", metavar="URL", help="baseline base URL")
    parser.add_argument("--candidate", metavar="URL", help="candidate base URL")
    parser.add_argument(
        "--listen", metavar="HOST:PORT", type=_address, help="public address (127.0.0.1:8080)"
    )
    parser.add_argument(
        "--admin", metavar="HOST:PORT", type=_address, help="admin address (127.0.0.1:8081)"
    )
    parser.add_argument(
        "--admin-token",
        help="bearer token the admin API requires (default: $TANDEM_ROUTER_ADMIN_TOKEN, or none)",
    )
    parser.add_argument("--store", metavar="PATH", help="the rollout SQLite file (read only)")
    parser.add_argument("--max-body-bytes", type=int, help="request body limit (100 MiB)")
    parser.add_argument("--backend-timeout", type=float, help="seconds per backend call (60)")
    parser.add_argument("--max-inflight-mirrors", type=int, help="concurrent mirrors (64)")
    parser.add_argument(
        "--health-interval", type=float, help="seconds between /ping checks of a down candidate"
    )
    parser.add_argument(
        "--weight-bp", type=int, help="candidate weight (basis points) when the store has none"
    )
    parser.add_argument(
        "--mirror-rate", type=float, help="mirror rate (0..1) when the store has none"
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="log level (info)"
    )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> RouterConfig:
    """Parse the command line into a :class:`RouterConfig` (ValueError when incomplete)."""
    args = build_parser().parse_args(argv)
    doc: dict[str, Any] = json.loads(args.config_json) if args.config_json else {}
    if not isinstance(doc, dict):
        raise ValueError("--config-json must be a JSON object")
    flags = {
        "baseline_url": args.baseline,
        "candidate_url": args.candidate,
        "admin_token": args.admin_token,
        "store_path": args.store,
        "max_body_bytes": args.max_body_bytes,
        "backend_timeout": args.backend_timeout,
        "max_inflight_mirrors": args.max_inflight_mirrors,
        "health_interval": args.health_interval,
        "initial_weight_bp": args.weight_bp,
        "initial_mirror_rate": args.mirror_rate,
        "log_level": args.log_level,
    }
    doc.update({k: v for k, v in flags.items() if v is not None})
    if args.listen:
        doc["listen_host"], doc["listen_port"] = args.listen
    if args.admin:
        doc["admin_host"], doc["admin_port"] = args.admin
    if not doc.get("admin_token") and os.environ.get("TANDEM_ROUTER_ADMIN_TOKEN"):
        doc["admin_token"] = os.environ["TANDEM_ROUTER_ADMIN_TOKEN"]
    for required in ("baseline_url", "candidate_url"):
        if not doc.get(required):
            raise ValueError(f"{required} is required (--{required.split('_')[0]} URL)")
    return RouterConfig.from_dict(doc)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tandem.rollout.router``: run until SIGTERM/SIGINT; 2 on a bad config."""
    try:
        config = config_from_args(argv)
        TlsSettings.from_params(Params())  # bad DRUM_SSL_* stop the router before it listens
    except (ValueError, TypeError, ConfigError) as exc:
        print(f"tandem router: {exc}", file=sys.stderr)
        return 2
    run_router(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "LATENCY_BOUNDS_MS",
    "Answer",
    "LatencyHistogram",
    "Router",
    "RouterConfig",
    "Routing",
    "SideStats",
    "choose_side",
    "compare_answers",
    "counts_delta",
    "first_difference",
    "initial_routing",
    "mirror_fraction",
    "parse_routing_update",
    "percent_to_bp",
    "request_key",
    "run_router",
    "serve",
    "should_mirror",
]
