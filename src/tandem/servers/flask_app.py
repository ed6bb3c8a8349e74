"""Flask adapter: maps WSGI requests to the core service and back."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from tandem.core.http import Headers, QueryDict, standard_headers
from tandem.core.http import Request as CoreRequest
from tandem.core.http import Response as CoreResponse
from tandem.core.routes import ROUTES, Route, allowed_methods, path_variants, template_for
from tandem.core.service import PredictionService
from tandem.servers.extensions import load_extension


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

    if load_extensions and service.load_error is None and load_extension(settings, app):

        @app.after_request
        def standard_headers_everywhere(response: Response) -> Response:
            # Responses an extension produces (e.g. a before_request 401) skip the core.
            if "X-Drum-Version" not in response.headers:
                rid = request.headers.get("X-Request-ID") or str(uuid.uuid4())
                for name, value in standard_headers(rid):
                    response.headers[name] = value
            return response

    return app
