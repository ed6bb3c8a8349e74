"""The public listener: every request is proxied to the baseline or the candidate (ASGI).

See the package docstring for the forwarding rules. The proxy is one ASGI function over
:class:`Router`'s state; the backend client is injected (:class:`~.backend.Backend`), so the
in-process tests drive the whole proxy with a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from tandem.rollout.router.backend import AiohttpBackend, Backend, BackendError, BackendResponse
from tandem.rollout.router.config import RouterConfig
from tandem.rollout.router.mirror import Answer, Mirror, Mirrored
from tandem.rollout.router.routing import (
    BASELINE,
    CANDIDATE,
    SIDES,
    Routing,
    choose_side,
    should_mirror,
)
from tandem.rollout.router.stats import LATENCY_BOUNDS_MS, SideStats
from tandem.rollout.split import request_key

logger = logging.getLogger("tandem.rollout.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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
_ROUTER_MADE = b"router"


class _StreamBroken(Exception):
    """A streamed answer broke after its headers were sent (the client sees a cut stream)."""


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@dataclass
class _Served:
    status: int
    content_type: str
    body: bytes | None
    """The whole body, or None for a stream too large to keep for mirroring."""
    latency_ms: float
    from_backend: bool = True
    """False for the router's own 502."""


def json_bytes(obj: Any) -> bytes:
    """The router's JSON encoding (compact, one trailing newline)."""
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str) + "\n").encode()


async def _send_json(
    send: Send, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json_bytes(obj)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan conversation (the router has nothing to set up in it)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Router:
    """The router's state, the proxy (:meth:`public_app`) and the candidate's health check."""

    def __init__(
        self, config: RouterConfig, routing: Routing | None = None, backend: Backend | None = None
    ) -> None:
        self.config = config
        self.routing: Routing = routing or Routing(applied_at=time.time())
        """The current split; replaced whole by :meth:`set_routing` (one reference assignment)."""
        self.started_at = time.time()
        self.candidate_down = False
        self.candidate_down_since: float | None = None
        self.candidate_marked_down = 0
        self.served = {side: SideStats() for side in SIDES}
        self.client = {
            "requests": 0,
            "errors": 0,
            "too_large": 0,
            "retried_on_baseline": 0,
            "rerouted_candidate_down": 0,
        }
        self._urls = {
            BASELINE: config.baseline_url.rstrip("/"),
            CANDIDATE: config.candidate_url.rstrip("/"),
        }
        self._backend = backend
        self.mirror = Mirror(
            lambda: self.backend,
            self._urls[CANDIDATE],
            config.max_inflight_mirrors,
            lambda: self.candidate_down,
            self.mark_candidate_down,
            config.store_path,
        )
        self._health_task: asyncio.Task[None] | None = None
        self._wake_health: asyncio.Event | None = None
        self.ready: Callable[[], bool] = lambda: True
        """Whether every listener is up (set by the server that runs the router)."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backend connection pool (unless one was injected); start the health check."""
        if self._backend is None:
            self._backend = AiohttpBackend(self.config.backend_timeout)
        self._wake_health = asyncio.Event()
        self._health_task = asyncio.create_task(self._health_loop())

    async def aclose(self) -> None:
        """Stop background work and close the pool."""
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        await self.mirror.aclose()
        if self._backend is not None:
            await self._backend.aclose()

    @property
    def backend(self) -> Backend:
        """The backend client."""
        if self._backend is None:
            raise RuntimeError("Router.start() was not awaited")
        return self._backend

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
            healthy = await self.backend.ping(
                self._urls[CANDIDATE] + "/ping", max(1.0, self.config.health_interval)
            )
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
        """The ``/api/stats`` document (see the package docstring)."""
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
            "mirrored": {side: self.mirror.mirrored[side].to_dict() for side in SIDES},
            "client": dict(self.client),
            "mirror": self.mirror.to_dict(),
        }

    def health(self) -> dict[str, Any]:
        """The ``/api/health`` document."""
        return {
            "status": "ok",
            "ready": self.ready(),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "candidate_down": self.candidate_down,
        }

    # -- the proxy ------------------------------------------------------------------------------

    async def public_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The proxy (ASGI)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        routing = self.routing  # the one read of the split this request uses
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        client_host = str(client[0]) if client else ""
        path = scope.get("path", "/")
        request_id = None
        for name, value in headers:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        key = request_key(request_id, client_host, path)
        self.client["requests"] += 1
        try:
            body = await self._read_body(receive, headers)
        except ClientGone:
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
                except BackendError as exc:
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
            self.mirror.offer(
                None
                if served.body is None
                else Mirrored(
                    method,
                    target,
                    forward_headers,
                    body,
                    Answer(served.status, served.content_type, served.body),
                    served.latency_ms,
                    {
                        "at": time.time(),
                        "method": method,
                        "path": path,
                        "query": (scope.get("query_string") or b"").decode("latin-1"),
                        "request_id": request_id,
                    },
                )
            )

    async def _read_body(
        self, receive: Receive, headers: list[tuple[bytes, bytes]]
    ) -> bytes | None:
        """The whole request body, or None when it is over the limit (then drained)."""
        limit = self.config.max_body_bytes
        declared = None
        for name, value in headers:
            if name == b"content-length":
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
                raise ClientGone()
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
    ) -> list[tuple[str, str]]:
        drop = _hop_by_hop(headers) | {"host", "content-length"}
        out: list[tuple[str, str]] = []
        forwarded_for = None
        host = None
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1")  # ASGI servers give lower-case names
            value = raw_value.decode("latin-1")
            if name == "host":
                host = value
            if name == "x-forwarded-for":
                forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
                continue
            if _is_end_to_end(name, drop):
                out.append((name, value))
        out.append(
            (
                "x-forwarded-for",
                f"{forwarded_for}, {client_host}" if forwarded_for else client_host,
            )
        )
        if host is not None:
            out.append(("x-forwarded-host", host))
        out.append(("x-forwarded-proto", str(scope.get("scheme", "http"))))
        return out

    async def _serve_baseline(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, send: Send
    ) -> _Served:
        last: BackendError | None = None
        for _attempt in range(2):  # one retry: a pooled connection the backend just closed
            try:
                return await self._proxy(BASELINE, method, target, headers, body, send)
            except BackendError as exc:
                self.served[BASELINE].failed()
                last = exc
                if exc.timeout:
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
        headers: list[tuple[str, str]],
        body: bytes,
        send: Send,
    ) -> _Served:
        """Forward to ``side`` and answer the client; BackendError when nothing was sent."""
        start = time.perf_counter()
        response = await self.backend.send(method, self._urls[side] + target, headers, body)
        try:
            raw = response.raw_headers
            drop = _hop_by_hop(raw) | {"content-length"}
            out = [
                (lname, value)
                for name, value in raw
                if _is_end_to_end((lname := name.lower()).decode("latin-1"), drop)
            ]
            out.append((b"x-tandem-backend", side.encode()))
            status = response.status
            content_type = response.content_type
            no_body = method == "HEAD" or status in (204, 304)
            if content_type.lower().startswith("text/event-stream") and not no_body:
                return await self._stream(side, response, out, send, start)
            data = await response.read()
            latency = (time.perf_counter() - start) * 1000.0
            if no_body:
                for name, value in raw:
                    if name.lower() == b"content-length":
                        out.append((b"content-length", value))
                        break
            else:
                out.append((b"content-length", str(len(data)).encode()))
            self.served[side].answered(status, latency)
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": data})
            return _Served(status, content_type, data, latency)
        finally:
            response.release()

    async def _stream(
        self,
        side: str,
        response: BackendResponse,
        headers: list[tuple[bytes, bytes]],
        send: Send,
        start: float,
    ) -> _Served:
        latency = (time.perf_counter() - start) * 1000.0
        self.served[side].answered(response.status, latency)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        kept: list[bytes] | None = []
        size = 0
        try:
            async for chunk in response.iter_chunks():
                if kept is not None:
                    size += len(chunk)
                    if size > self.config.max_body_bytes:
                        kept = None
                    else:
                        kept.append(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except BackendError as exc:
            # Headers are out: the client sees a cut stream, the side a connection failure.
            stats = self.served[side]
            stats.errors += 1
            stats.connection_failures += 1
            if side == CANDIDATE:
                self.mark_candidate_down(f"stream broke: {exc}")
            raise _StreamBroken(f"{side} stream broke: {exc}") from exc
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        body = b"".join(kept) if kept is not None else None
        return _Served(response.status, response.content_type, body, latency)
