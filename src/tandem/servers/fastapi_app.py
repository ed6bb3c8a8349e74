"""FastAPI adapter: maps ASGI requests to the core service and back.

Routes are plain Starlette routes on the FastAPI app, so no per-request validation or dependency
resolution runs: the core already parses and validates. Model code runs in a bounded thread pool
(``DRUM_FASTAPI_EXECUTOR_WORKERS``, default 1 so thread-unsafe models behave as under Flask) and
never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from tandem.core.http import Headers, QueryDict, standard_headers
from tandem.core.http import Request as CoreRequest
from tandem.core.http import Response as CoreResponse
from tandem.core.routes import (
    ROUTES,
    Route,
    allowed_methods,
    concrete_paths,
    path_variants,
    template_for,
)
from tandem.core.service import PredictionService
from tandem.errors import IncompleteBody, RequestError
from tandem.servers.connections import BODY_CUT_SCOPE_KEY
from tandem.servers.extensions import load_extension

_DONE = object()
_SLASHES = re.compile(r"/{2,}")
# Tandem traces in the core, the same on every stack; FastAPI's own spans would double them.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


class ClientGone(Exception):
    """The client disconnected before its body was read: there is nobody to answer."""


async def read_asgi_body(
    scope: Any, receive: Any, limit: int, too_large: Callable[[], RequestError]
) -> bytes:
    """The request's whole body, or an error: never a prefix of it.

    A declared length over ``limit`` is refused before reading; otherwise the body is read one
    message past the limit at most. A client that half-closes before its body's end (Tandem's
    protocol marks the scope, see ``connections``) gets :class:`IncompleteBody`; one that is
    gone entirely raises :class:`ClientGone`.
    """
    length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        if scope.get(BODY_CUT_SCOPE_KEY):
            raise IncompleteBody


class Overloaded(Exception):
    """No model thread for this request: the queue is full (``queue_full``) or the wait for a
    thread outran ``DRUM_BACKPRESSURE_TIMEOUT``."""

    def __init__(self, queue_full: bool) -> None:
        super().__init__("overloaded")
        self.queue_full = queue_full


class ModelSlots:
    """Backpressure in front of the model's thread pool, per worker.

    At most ``DRUM_MAX_QUEUE_DEPTH`` requests wait for or hold a model thread; past it a
    request is refused at once, and one that waits longer than ``DRUM_BACKPRESSURE_TIMEOUT``
    for a thread is refused then. A thread counts as busy until its call really ends, even
    after the request gave up on it.
    """

    def __init__(self, threads: int, depth: int, wait: float) -> None:
        self.threads = threads
        self.depth = depth
        self.wait = wait
        self.in_system = 0
        self._free: asyncio.Semaphore | None = None

    async def run(self, executor: ThreadPoolExecutor, call: Any) -> Any:
        """The executor future of ``call`` once a thread is free (raises :class:`Overloaded`)."""
        if self.in_system >= self.depth:
            raise Overloaded(queue_full=True)
        if self._free is None:
            self._free = asyncio.Semaphore(self.threads)
        free = self._free
        self.in_system += 1
        if free.locked():  # wait, bounded (wait_for wraps the wait in a task: only when waiting)
            try:
                await asyncio.wait_for(free.acquire(), self.wait)
            except TimeoutError:
                self.in_system -= 1
                raise Overloaded(queue_full=False) from None
        else:
            await free.acquire()
        loop = asyncio.get_running_loop()

        def release() -> None:
            self.in_system -= 1
            free.release()

        def done(_: Any) -> None:  # on the model thread: hand the bookkeeping to the loop
            try:
                loop.call_soon_threadsafe(release)
            except RuntimeError:
                pass  # the loop is gone: the worker is exiting

        future = executor.submit(call)
        future.add_done_callback(done)
        return asyncio.wrap_future(future)


async def run_blocking(
    service: PredictionService,
    executor: ThreadPoolExecutor,
    slots: ModelSlots,
    call: Any,
    request: CoreRequest,
    endpoint: str,
) -> CoreResponse:
    """Run a core call in the model's thread pool, behind backpressure and bounded by
    ``DRUM_CLIENT_REQUEST_TIMEOUT``.

    A call that outruns the timeout cannot be cancelled (its thread stays in the hook), so the
    worker is retired (``PredictionService.retire``) and the client gets 504; no free thread
    is 503.
    """
    try:
        future = await slots.run(executor, call)
    except Overloaded as exc:
        return service.overloaded(request, endpoint, exc.queue_full)
    timeout = service.settings.request_timeout
    if timeout <= 0:
        return await future  # type: ignore[no-any-return]
    try:
        return await asyncio.wait_for(future, timeout)  # type: ignore[no-any-return]
    except TimeoutError:
        service.retire()  # the thread stays stuck in the hook: everything behind it would wait
        return service.timed_out(request, endpoint)


def _core_request(request: Request, body: bytes = b"") -> CoreRequest:
    return CoreRequest(
        method=request.method,
        path=request.url.path,
        headers=Headers.from_pairs(request.headers.items()),
        query=QueryDict(request.query_params.multi_items()),
        body=body,
        client=request.client.host if request.client else "-",
    )


def _headers(resp: CoreResponse) -> dict[str, str]:
    headers = dict(resp.headers)
    if resp.content_type is not None:
        headers["content-type"] = resp.content_type
    return headers


def _to_starlette(resp: CoreResponse, executor: ThreadPoolExecutor) -> Response:
    if isinstance(resp.body, bytes):
        return Response(resp.body, status_code=resp.status, headers=_headers(resp))
    return StreamingResponse(
        _drain(resp.body, executor), status_code=resp.status, headers=_headers(resp)
    )


async def _drain(chunks: Iterator[bytes], executor: ThreadPoolExecutor) -> AsyncIterator[bytes]:
    """Pull a synchronous (user-code) iterator in the executor, one chunk at a time."""
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.run_in_executor(executor, next, chunks, _DONE)
        if chunk is _DONE:
            return
        yield chunk  # type: ignore[misc]


def _endpoint(
    service: PredictionService,
    route: Route,
    declared: str,
    executor: ThreadPoolExecutor,
    slots: ModelSlots,
) -> Any:
    limit = service.settings.max_body_size

    async def endpoint(request: Request) -> Response:
        try:
            body = (
                await read_asgi_body(request.scope, request.receive, limit, service.body_too_large)
                if request.method in ("POST", "PUT")
                else b""
            )
        except RequestError as exc:
            return _to_starlette(
                service.body_error(_core_request(request), exc, declared), executor
            )
        except ClientGone:
            return Response(status_code=400)  # never sent: the client is gone
        core = _core_request(request, body)
        if route.blocking and not service.cheap(route, core):
            call = functools.partial(service.handle, route, core, declared, **request.path_params)
            resp = await run_blocking(service, executor, slots, call, core, declared)
        else:
            resp = service.handle(route, core, declared, **request.path_params)
        return _to_starlette(resp, executor)

    return endpoint


class TandemFastAPI(FastAPI):
    """The FastAPI app, with an optional lane that answers predictions before any middleware,
    and a cap on the requests one worker serves at once (``DRUM_UVICORN_LIMIT_CONCURRENCY``)."""

    lane: PredictLane | None = None
    concurrency_limit: int | None = None
    _active = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if "//" in path:
            # Werkzeug's routing merges repeated slashes (DRUM's Flask answers //ping); so
            # does every Tandem stack.
            scope = {**scope, "path": _SLASHES.sub("/", path)}
        if scope["type"] != "http" or self.concurrency_limit is None:
            await self._serve(scope, receive, send)
            return
        if self._active >= self.concurrency_limit:
            service: PredictionService = self.state.service
            core = _core_request(Request(scope))
            resp = service.overloaded(
                core, template_for(scope["path"], service.settings.url_prefix), True
            )
            await _to_starlette(resp, self.state.executor)(scope, receive, send)
            return
        self._active += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            self._active -= 1

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        if self.lane is None:
            await super().__call__(scope, receive, send)
        else:
            await self.lane(scope, receive, send, super().__call__)


def create_app(service: PredictionService, load_extensions: bool = True) -> FastAPI:
    """Build the FastAPI app for a loaded service (and its ``custom_fastapi.py``)."""
    settings = service.settings
    executor = ThreadPoolExecutor(settings.executor_workers, thread_name_prefix="tandem-predict")
    app = TandemFastAPI(docs_url=None, redoc_url=None, openapi_url=None, **_NO_TELEMETRY)
    app.router.redirect_slashes = False
    app.concurrency_limit = settings.concurrency_limit
    app.state.service = service
    app.state.executor = executor
    slots = ModelSlots(
        settings.executor_workers, settings.max_queue_depth, settings.backpressure_timeout
    )
    prefix = settings.url_prefix
    for route in ROUTES:
        for declared in route.paths:
            endpoint = _endpoint(service, route, declared, executor, slots)
            for path in path_variants(declared, prefix):
                app.router.routes.append(
                    StarletteRoute(path, endpoint, methods=list(route.methods), name=route.name)
                )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        core = _core_request(request)
        if exc.status_code == 404:
            return _to_starlette(service.not_found(core), executor)
        if exc.status_code == 405:
            allowed = allowed_methods(request.url.path, prefix) or []
            endpoint = template_for(request.url.path, prefix)
            return _to_starlette(service.method_not_allowed(core, allowed, endpoint), executor)
        return Response(
            json.dumps({"message": f"ERROR: {exc.detail}"}).encode(),
            status_code=exc.status_code,
            headers={"content-type": "application/json"},
        )

    if load_extensions and service.load_error is None and load_extension(settings, app):
        # Added last, so it is outermost: answers from extension middleware get the headers too.
        app.add_middleware(StandardHeaders)
    else:
        # Nothing to run around the endpoint: predictions skip FastAPI's middleware stack,
        # Starlette's routing and its request objects.
        app.lane = PredictLane(service, executor, prefix, slots)
    return app


class PredictLane:
    """Answers well-formed prediction POSTs straight from the core, ahead of the ASGI stack.

    Used only when no ``custom_fastapi.py`` exists. It builds the core request exactly as the
    endpoint would (Starlette's header and query handling) and keeps the same threading rule
    (the thread pool, or the loop for a proven-cheap fast-path request); anything unusual -
    another method or path, a missing or oversize Content-Length - goes to the app unchanged.
    """

    def __init__(
        self,
        service: PredictionService,
        executor: ThreadPoolExecutor,
        prefix: str,
        slots: ModelSlots,
    ) -> None:
        self.service = service
        self.executor = executor
        self.slots = slots
        self.route = next(r for r in ROUTES if r.name == "predict")
        self.paths = concrete_paths(self.route, prefix)
        self.limit = service.settings.max_body_size

    async def __call__(self, scope: Any, receive: Any, send: Any, app: Any) -> None:
        """Answer the request, or hand it to ``app`` (the full ASGI stack) unchanged."""
        declared = self.paths.get(scope.get("path", "")) if scope["type"] == "http" else None
        if declared is None or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        raw = scope["headers"]
        length = next((v for k, v in raw if k == b"content-length"), b"")
        if not length.isdigit() or int(length) > self.limit:
            await app(scope, receive, send)
            return
        try:
            body = await read_asgi_body(scope, receive, self.limit, self.service.body_too_large)
        except ClientGone:
            return
        except RequestError as exc:
            request = Request(scope)
            resp = self.service.body_error(_core_request(request), exc, declared)
            await _to_starlette(resp, self.executor)(scope, receive, send)
            return
        client = scope.get("client")
        core = CoreRequest(
            method="POST",
            path=scope["path"],
            headers=Headers.from_pairs((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw),
            query=QueryDict(
                parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            ),
            body=body,
            client=client[0] if client else "-",
        )
        if self.service.cheap(self.route, core):
            resp = self.service.handle(self.route, core, declared)
        else:
            call = functools.partial(self.service.handle, self.route, core, declared)
            resp = await run_blocking(self.service, self.executor, self.slots, call, core, declared)
        if not isinstance(resp.body, bytes):
            await _to_starlette(resp, self.executor)(scope, receive, send)
            return
        headers = (
            [(b"content-type", resp.content_type.encode("latin-1"))]
            if (resp.content_type is not None)
            else []
        )
        headers.append((b"content-length", str(len(resp.body)).encode()))
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})


class StandardHeaders:
    """ASGI middleware: every response carries X-Drum-Version and X-Request-ID."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-drum-version" for k, _ in headers):
                    rid = next(
                        (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"),
                        "",
                    ) or str(uuid.uuid4())
                    headers += [
                        (k.lower().encode(), v.encode("latin-1")) for k, v in standard_headers(rid)
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
