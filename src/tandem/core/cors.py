"""CORS, off by default, restrictive when on (the migration plan's security list).

``DRUM_CORS_ENABLED`` turns it on; ``DRUM_CORS_ORIGINS`` is a comma-separated list of allowed
origins (default ``*``). Only GET and POST, only the headers X-Auth-Token, Content-Type and
X-Request-ID, preflight answers cached for an hour. Credentials are allowed only with an
explicit origin list, never with ``*``. Applied in the core, so every stack answers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tandem.core.http import Request, Response, message

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("X-Auth-Token", "Content-Type", "X-Request-ID")
MAX_AGE = 3600


@dataclass(frozen=True)
class Cors:
    """The allowed origins (``("*",)`` for any)."""

    origins: tuple[str, ...] = ("*",)

    @classmethod
    def from_params(cls, params: Any) -> Cors | None:
        """The CORS policy, or None when ``DRUM_CORS_ENABLED`` is not true."""
        if not params.bool("DRUM_CORS_ENABLED", False):
            return None
        text = params.str("DRUM_CORS_ORIGINS", "*") or "*"
        origins = tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())
        return cls(origins or ("*",))

    @property
    def any_origin(self) -> bool:
        """Whether every origin is allowed (and so credentials never are)."""
        return "*" in self.origins

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` may read answers."""
        return self.any_origin or origin.rstrip("/") in self.origins

    def headers_for(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers of an answer to a request from ``origin`` (none if not allowed)."""
        if not origin or not self.allows(origin):
            return []
        if self.any_origin:
            return [("Access-Control-Allow-Origin", "*")]
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
        ]

    def preflight(self, request: Request) -> Response:
        """Answer an ``OPTIONS`` preflight: 204 with the policy, or 403 when refused."""
        origin = request.headers.get("Origin")
        wanted = (request.headers.get("Access-Control-Request-Method") or "").upper()
        if not origin or not self.allows(origin) or wanted not in ALLOWED_METHODS:
            return message("ERROR: CORS preflight refused: origin or method not allowed", 403)
        response = Response(204, b"", None, self.headers_for(origin))
        response.headers += [
            ("Access-Control-Allow-Methods", ", ".join(ALLOWED_METHODS)),
            ("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS)),
            ("Access-Control-Max-Age", str(MAX_AGE)),
        ]
        return response
