"""Flask adapter: maps WSGI requests to the core service and back."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

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
from tandem.servers.extensions import load_extension


class PredictLane:
    """WSGI middleware answering well-formed prediction POSTs straight from the core.

    Flask's request dispatch is most of the Flask stacks' per-request cost, and a prediction
    needs none of it when no ``custom_flask.py`` hooks exist (the only case this is installed
    in). It builds the core request exactly as the Flask view would (Werkzeug's header naming,
    query parsing, client address); anything unusual - another method or path, a missing or
    oversize Content-Length, chunked bodies - goes to Flask unchanged.
    """

    def __init__(self, app: Any, service: PredictionService, prefix: str) -> None:
        self.app = app
        self.service = service
        self.route = next(r for r in ROUTES if r.name == "predict")
        self.paths = concrete_paths(self.route, prefix)
        self.limit = service.settings.max_body_size

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        declared = self.paths.get(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH", "")
        if (
            declared is None
            or environ.get("REQUEST_METHOD") != "POST"
            or not length.isdigit()
            or int(length) > self.limit
            or environ.get("HTTP_TRANSFER_ENCODING")
        ):
            return self.app(environ, start_response)
        try:
            # Werkzeug's own reading of QUERY_STRING (request.args).
            query = parse_qsl(
                environ.get("QUERY_STRING", "").encode("latin-1").decode(),
                keep_blank_values=True,
                errors="werkzeug.url_quote",
            )
        except (UnicodeError, LookupError):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        pairs = [
            (key[5:].replace("_", "-"), value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
            if environ.get(key):
                pairs.append((name, environ[key]))
        core = CoreRequest(
            method="POST",
            path=environ["PATH_INFO"],
            headers=Headers.from_pairs(pairs),
            query=QueryDict(query),
            body=body,
            client=environ.get("REMOTE_ADDR") or "-",
        )
        resp = self.service.handle(self.route, core, declared)
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
        body = request.get_data(cache=False) if request.method in ("POST", "PUT") else b""
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
    def http_error(exc: HTTPException) -> Response:
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

    return app
