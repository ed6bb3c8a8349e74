"""The admin listener: routing, statistics, health, events, the dashboard and ``/metrics``.

A Starlette application over a :class:`~.proxy.Router`. With an admin token, every request
needs ``Authorization: Bearer <token>`` (or ``?token=<token>``, for the dashboard in a browser);
tokens are compared in constant time. Errors are JSON ``{"message": "ERROR: ..."}`` like every
other Tandem answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.rollout.router.metrics import exposition
from tandem.rollout.router.proxy import Router, json_bytes
from tandem.rollout.router.routing import parse_routing_update

EVENT_BODY_LIMIT = 1024 * 1024
ROUTING_BODY_LIMIT = 64 * 1024


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(obj), status, headers, media_type="application/json")


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"message": f"ERROR: {text}"}, status, headers)


class _BodyTooLarge(ValueError):
    pass


async def _body(request: Request, limit: int) -> Any:
    """The request's JSON document (ValueError when over ``limit`` bytes or not JSON)."""
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return json.loads(b"".join(chunks) or b"null")


class _Guard:
    """Token check and trailing-slash folding in front of the routes (pure ASGI)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(
                    given.strip().encode(), self.token
                ):
                    return True
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        return any(hmac.compare_digest(q.encode(), self.token) for q in query.get("token", []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            response = _error(
                401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="tandem-router"'}
            )
            await response(scope, receive, send)
            return
        path = scope.get("path", "/")
        if len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


def admin_app(router: Router) -> ASGIApp:
    """The admin API of ``router`` as an ASGI application."""
    config = router.config

    async def dashboard_page(request: Request) -> Response:
        from tandem.rollout.dashboard import dashboard_html

        return HTMLResponse(dashboard_html(), headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        return _json(router.health())

    async def stats(request: Request) -> Response:
        return _json(router.stats())

    async def routing(request: Request) -> Response:
        if request.method == "POST":
            try:
                doc = await _body(request, ROUTING_BODY_LIMIT)
                update = parse_routing_update(doc, router.routing)
            except (ValueError, UnicodeDecodeError) as exc:
                return _error(400, str(exc))
            return _json(router.set_routing(update).to_dict())
        return _json(router.routing.to_dict())

    async def dashboard(request: Request) -> Response:
        from tandem.rollout.dashboard import build_dashboard

        store = Path(config.store_path) if config.store_path else None
        doc = await asyncio.to_thread(build_dashboard, store, router.stats())
        return _json(doc, headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        """Alertmanager's webhook (``/api/alerts``) or an extension-failure report
        (``/api/reports``, ``{"extension": "text"}``), recorded in the rollout's store."""
        if not config.store_path:
            return _error(503, "this router has no rollout store")
        try:
            doc = await _body(request, EVENT_BODY_LIMIT)
            found = _events_from(request.url.path, doc)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, str(exc))
        from tandem.rollout.store import add_events

        recorded = await asyncio.to_thread(add_events, Path(config.store_path), found)
        return _json({"received": len(found), "recorded": recorded})

    async def metrics(request: Request) -> Response:
        body, content_type = exposition(router, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail, dict(exc.headers or {}))

    app = Starlette(
        routes=[
            Route("/", dashboard_page, methods=["GET"]),
            Route("/dashboard", dashboard_page, methods=["GET"]),
            Route("/api/health", health, methods=["GET"]),
            Route("/api/stats", stats, methods=["GET"]),
            Route("/api/routing", routing, methods=["GET", "POST"]),
            Route("/api/dashboard", dashboard, methods=["GET"]),
            Route("/api/alerts", events, methods=["POST"]),
            Route("/api/reports", events, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.router.redirect_slashes = False
    return _Guard(app, config.admin_token)


def _events_from(path: str, doc: Any) -> list[tuple[str, str, str, dict[str, str], str | None]]:
    """(kind, source, text, labels, key) for each event a posted document carries."""
    from tandem.rollout.alerts import firing_alerts

    if path.rstrip("/") == "/api/alerts":
        return [("alert", "alertmanager", a.text, a.labels, a.key) for a in firing_alerts(doc)]
    text = doc.get("extension") if isinstance(doc, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError('expected {"extension": "what failed"}')
    return [("extension", "admin-api", text.strip(), {}, None)]
