"""Flask adapter: maps WSGI requests to the core service and back."""

from __future__ import annotations

import io
import os
import signal
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Response as WerkzeugResponse

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
from tandem.servers.extensions import load_extension

#: Bytes asked of the server's input stream per read while a body is taken in whole.
_READ_SIZE = 256 * 1024


def read_wsgi_body(
    environ: dict[str, Any], limit: int, too_large: Callable[[], RequestError]
) -> bytes:
    """The request's whole body, or an error: never a prefix of it.

    Werkzeug's own limit (``MAX_CONTENT_LENGTH``) stops reading a chunked body at the limit and
    hands back what it has, so an oversize body would be scored cut short. Here a chunked body is
    read one byte past the limit (``too_large`` then, without reading the rest), a declared length
    must arrive in full, and any failure of the server's de-chunking (a bad chunk size, a client
    gone before the last chunk) is :class:`IncompleteBody`, a 400.
    """
    stream = environ["wsgi.input"]
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    declared = environ.get("CONTENT_LENGTH", "").strip()
    try:
        if not chunked:
            if not declared:
                return b""
            if not declared.isdigit():
                raise IncompleteBody
            length = int(declared)
            if length > limit:
                raise too_large()
            parts, size = [], 0
            while size < length:
                part = stream.read(min(_READ_SIZE, length - size))
                if not part:
                    raise IncompleteBody
                parts.append(part)
                size += len(part)
            return b"".join(parts)
        parts, size = [], 0
        while True:
            part = stream.read(min(_READ_SIZE, limit + 1 - size))
            if not part:
                return b"".join(parts)
            size += len(part)
            if size > limit:
                raise too_large()
            parts.append(part)
    except RequestError:
        raise
    except Exception as exc:  # the server's de-chunking failed: OSError, gunicorn's ParseError
        raise IncompleteBody from exc


def _has_body(environ: dict[str, Any]) -> bool:
    return bool(environ.get("HTTP_TRANSFER_ENCODING")) or environ.get("CONTENT_LENGTH", "") not in (
        "",
        "0",
    )


def _environ_request(
    environ: dict[str, Any], body: bytes, query: list[tuple[str, str]]
) -> CoreRequest:
    """The core request, named as Werkzeug names it (header names, query, client address)."""
    pairs = [
        (key[5:].replace("_", "-"), value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            pairs.append((name, environ[key]))
    return CoreRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", ""),
        headers=Headers.from_pairs(pairs),
        query=QueryDict(query),
        body=body,
        client=environ.get("REMOTE_ADDR") or "-",
    )


def _werkzeug_query(environ: dict[str, Any]) -> list[tuple[str, str]] | None:
    """Werkzeug's own reading of QUERY_STRING (``request.args``); None when it cannot decode."""
    try:
        return parse_qsl(
            environ.get("QUERY_STRING", "").encode("latin-1").decode(),
            keep_blank_values=True,
            errors="werkzeug.url_quote",
        )
    except (UnicodeError, LookupError):
        return None


def _start(resp: CoreResponse, start_response: Any) -> Any:
    headers = list(resp.headers)
    if resp.content_type is not None:
        headers.insert(0, ("Content-Type", resp.content_type))
    if isinstance(resp.body, bytes):
        headers.append(("Content-Length", str(len(resp.body))))
        chunks: Any = [resp.body]
    else:
        chunks = resp.body
    start_response(f"{resp.status} {HTTP_STATUS_CODES.get(resp.status, '').upper()}", headers)
    return chunks


class _Deadline(BaseException):
    """Raised in the serving thread by SIGALRM when a request outruns the request timeout.

    A BaseException, so a hook's ``except Exception`` does not turn it into a model error.
    """


def _alarm(signum: int, frame: object) -> None:
    raise _Deadline


class WholeBody:
    """WSGI middleware, outermost on every Flask stack: nothing runs on a body not read whole,
    and no request runs past ``DRUM_CLIENT_REQUEST_TIMEOUT``.

    The body is read once (:func:`read_wsgi_body`) and handed on as a complete, length-framed
    input, so Flask views, ``custom_flask.py`` code and the prediction lane all see the same
    bytes; an oversize or cut-short body is answered here through the core (413 or 400).

    Flask stacks serve a request on the process's main thread (one at a time), so a timer
    signal can interrupt a stuck hook: the client gets 504 and, under Gunicorn, the worker is
    retired after it (the interrupted hook may have left the model half-way through a call).
    """

    def __init__(self, app: Any, service: PredictionService, prefix: str) -> None:
        self.app = app
        self.service = service
        self.prefix = prefix
        self.limit = service.settings.max_body_size
        self.timeout = service.settings.request_timeout
        self._armed_in: int | None = None

    def _arm(self) -> bool:
        if self.timeout <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        if self._armed_in != os.getpid():
            signal.signal(signal.SIGALRM, _alarm)
            self._armed_in = os.getpid()
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        return True

    def _answer(
        self, environ: dict[str, Any], start_response: Any, exc: RequestError | None
    ) -> Any:
        path = environ.get("PATH_INFO", "")
        request = _environ_request(environ, b"", _werkzeug_query(environ) or [])
        endpoint = template_for(path, self.prefix)
        if exc is None:
            resp = self.service.timed_out(request, endpoint)
        else:
            resp = self.service.body_error(request, exc, endpoint)
        return _start(resp, start_response)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if _has_body(environ):
            try:
                body = read_wsgi_body(environ, self.limit, self.service.body_too_large)
            except RequestError as exc:
                return self._answer(environ, start_response, exc)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["tandem.body"] = body
        armed = self._arm()
        try:
            result = self.app(environ, start_response)
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return result
        except _Deadline:
            self.service.retire()  # the interrupted hook may have left the model half-done
            return self._answer(environ, start_response, None)
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)


class PredictLane:
    """WSGI middleware answering well-formed prediction POSTs straight from the core.

    Flask's request dispatch is most of the Flask stacks' per-request cost, and a prediction
    needs none of it when no ``custom_flask.py`` hooks exist (the only case this is installed
    in). It builds the core request exactly as the Flask view would (Werkzeug's header naming,
    query parsing, client address); anything unusual - another method or path, a query Werkzeug
    cannot decode - goes to Flask unchanged. It sits inside :class:`WholeBody`, which has
    already read the body whole.
    """

    def __init__(self, app: Any, service: PredictionService, prefix: str) -> None:
        self.app = app
        self.service = service
        self.route = next(r for r in ROUTES if r.name == "predict")
        self.paths = concrete_paths(self.route, prefix)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        declared = self.paths.get(environ.get("PATH_INFO", ""))
        body = environ.get("tandem.body")
        if declared is None or environ.get("REQUEST_METHOD") != "POST" or body is None:
            return self.app(environ, start_response)
        query = _werkzeug_query(environ)
        if query is None:
            return self.app(environ, start_response)
        core = _environ_request(environ, body, query)
        return _start(self.service.handle(self.route, core, declared), start_response)


def _core_request(body: bytes = b"") -> CoreRequest:
    return CoreRequest(
        method=request.method,
        path=request.path,
        headers=Headers.from_pairs(request.headers.items()),
        query=QueryDict(request.args.items(multi=True)),
        body=body,
        client=request.remote_addr or "-",
    )


def _to_flask(resp: CoreResponse) -> Response:
    out = Response(resp.body, status=resp.status)
    if resp.content_type is not None:
        out.headers["Content-Type"] = resp.content_type
    else:
        del out.headers["Content-Type"]
    for name, value in resp.headers:
        out.headers[name] = value
    return out


def _template(templates: dict[str, str]) -> str:
    rule = request.url_rule
    return templates.get(rule.rule, "unmatched") if rule is not None else "unmatched"


def _view(service: PredictionService, route: Route, templates: dict[str, str]) -> Any:
    def view(**params: str) -> Response:
        # WholeBody read it (whatever an extension did with the stream since).
        body = request.environ.get("tandem.body", b"") if request.method in ("POST", "PUT") else b""
        return _to_flask(service.handle(route, _core_request(body), _template(templates), **params))

    view.__name__ = route.name
    return view


def create_app(service: PredictionService, load_extensions: bool = True) -> Flask:
    """Build the Flask app for a loaded service (and its ``custom_flask.py``)."""
    settings = service.settings
    app = Flask("tandem")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_size
    prefix = settings.url_prefix
    templates: dict[str, str] = {}
    for route in ROUTES:
        view = _view(service, route, templates)
        for declared in route.paths:
            for path in path_variants(declared, prefix):
                rule = path.replace("{path:path}", "<path:path>")
                templates[rule] = declared
                app.add_url_rule(
                    rule,
                    endpoint=f"model_api.{route.name}",
                    view_func=view,
                    methods=list(route.methods),
                    provide_automatic_options=False,
                    strict_slashes=True,
                )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | WerkzeugResponse:
        req = _core_request()
        if exc.code == 404:
            return _to_flask(service.not_found(req))
        if exc.code == 405:
            allowed = allowed_methods(request.path, prefix) or []
            endpoint = template_for(request.path, prefix)
            return _to_flask(service.method_not_allowed(req, allowed, endpoint))
        if exc.code == 413:
            return _to_flask(service.too_large(req, template_for(request.path, prefix)))
        return exc.get_response()

    extension = load_extensions and service.load_error is None and load_extension(settings, app)
    if not extension:
        # Nothing to run around the view: predictions skip Flask's dispatch entirely.
        app.wsgi_app = PredictLane(app.wsgi_app, service, prefix)  # type: ignore[method-assign]
    else:

        @app.after_request
        def standard_headers_everywhere(response: Response) -> Response:
            # Responses an extension produces (e.g. a before_request 401) skip the core.
            if "X-Drum-Version" not in response.headers:
                rid = request.headers.get("X-Request-ID") or str(uuid.uuid4())
                for name, value in standard_headers(rid):
                    response.headers[name] = value
            return response

    app.wsgi_app = WholeBody(app.wsgi_app, service, prefix)  # type: ignore[method-assign]
    return app
