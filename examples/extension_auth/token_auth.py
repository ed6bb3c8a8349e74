"""Token authentication shared by ``custom_flask.py`` and ``custom_fastapi.py``.

Every request must carry the header ``X-Auth`` equal to the token configured as the runtime
parameter ``EXAMPLE_AUTH_TOKEN`` (``MLOPS_RUNTIME_PARAM_EXAMPLE_AUTH_TOKEN``) or, failing that,
the environment variable ``EXAMPLE_AUTH_TOKEN``. Without a token the extension refuses to start
(fail closed). Liveness and readiness (``/``, ``/ping``, ``/ping/``, ``/health``, ``/health/``,
under ``URL_PREFIX`` when set) stay open so that orchestrators can probe the server.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from datarobot_drum import RuntimeParameters

HEADER = "X-Auth"
TOKEN_PARAMETER = "EXAMPLE_AUTH_TOKEN"
CONTENT_TYPE = "application/json"
MISSING_MESSAGE = "Missing X-Auth header"
INVALID_MESSAGE = "Auth token is invalid"
OPEN_ROUTES = ("/", "/ping", "/ping/", "/health", "/health/")

try:  # Tandem's JSON style: compact, sorted keys, trailing newline
    from tandem.core.http import json_bytes
except ImportError:  # served by DataRobot's DRUM: the same style, by hand

    def json_bytes(obj: Any) -> bytes:
        """Serialise like Flask's ``jsonify`` (sorted keys, ASCII, compact, trailing newline)."""
        return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def configured_token() -> str:
    """The expected token; raises ``RuntimeError`` when none is configured (fail closed)."""
    if RuntimeParameters.has(TOKEN_PARAMETER):
        token = RuntimeParameters.get(TOKEN_PARAMETER)
        source = RuntimeParameters.namespaced_param_name(TOKEN_PARAMETER)
    else:
        token = os.environ.get(TOKEN_PARAMETER)
        source = TOKEN_PARAMETER
    if not isinstance(token, str) or not token:
        raise RuntimeError(
            f"token authentication is not configured: set MLOPS_RUNTIME_PARAM_{TOKEN_PARAMETER} "
            f"or {TOKEN_PARAMETER} to a non-empty string ({source} is {token!r}); refusing to "
            "serve the model without authentication"
        )
    return token


def url_prefix() -> str:
    """``URL_PREFIX`` as the server applies it: ``/pfx`` for ``pfx``, ``/pfx`` or ``/pfx/``."""
    stripped = os.environ.get("URL_PREFIX", "").strip().strip("/")
    return f"/{stripped}" if stripped else ""


class TokenAuth:
    """Decides, from a request's path and ``X-Auth`` header, whether to let it through."""

    def __init__(self, token: str, prefix: str = "") -> None:
        self._token = token.encode("utf-8")
        self.open_paths = frozenset({prefix + route for route in OPEN_ROUTES} | {prefix or "/"})

    @classmethod
    def from_environment(cls) -> TokenAuth:
        """The configured token and ``URL_PREFIX``; fails when no token is configured."""
        return cls(configured_token(), url_prefix())

    def check(self, path: str, header: str | None) -> tuple[int, bytes] | None:
        """``None`` to let the request through, else the ``(status, JSON body)`` to answer."""
        if path in self.open_paths:
            return None
        if not header:
            return 401, json_bytes({"message": MISSING_MESSAGE})
        if not secrets.compare_digest(header.encode("utf-8"), self._token):
            return 401, json_bytes({"message": INVALID_MESSAGE})
        return None
