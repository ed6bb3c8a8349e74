"""Framework-neutral request and response objects, and the one JSON/error rendering path."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tandem.errors import (
    BadRequest,
    PlainBadRequest,
    QueryKeyError,
    RequestError,
    SchemaValidationError,
    capped,
    is_user_error,
)
from tandem.version import DRUM_COMPAT_VERSION

JSON = "application/json"
REQUEST_ID_HEADER = "X-Request-ID"
WERKZEUG_400 = "The browser (or proxy) sent a request that this server could not understand."


class Headers(dict[str, str]):
    """Request headers keyed in Werkzeug's Title-Case, with case-insensitive lookups.

    Header names containing ``_`` are dropped, as Gunicorn and Werkzeug drop them (so every
    stack sees the same headers, and ``X_Request_ID`` cannot smuggle a request id).
    """

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Build from raw (name, value) pairs, joining repeated names with ``,``."""
        out = cls()
        for name, value in pairs:
            if "_" in name:
                continue
            key = name.title()
            out[key] = f"{out[key]},{value}" if key in out else value
        return out

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Case-insensitive ``get``."""
        return super().get(key.title(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.title())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.title())


class QueryDict(dict[str, str]):
    """Query parameters: first value per name; indexing a missing name is a 400 (as in DRUM)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        self._lists: dict[str, list[str]] = {}
        for name, value in pairs:
            self._lists.setdefault(name, []).append(value)
            self.setdefault(name, value)

    def __missing__(self, key: str) -> str:
        raise QueryKeyError(key)

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in request order."""
        return list(self._lists.get(key, []))


@dataclass(slots=True)
class Request:
    """One HTTP request as the core sees it."""

    method: str
    path: str
    headers: Headers
    query: QueryDict
    body: bytes
    request_id: str = ""
    client: str = "-"
    """Client address as the server saw it (for the access log)."""

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id = self.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())

    @property
    def content_type(self) -> str | None:
        """The raw Content-Type header."""
        return self.headers.get("Content-Type")


@dataclass(slots=True)
class Response:
    """One HTTP response: bytes, or an iterator of bytes for streams."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


def _clean(obj: Any) -> Any:
    """Replace NaN/inf floats with None so every JSON body is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def json_bytes(obj: Any) -> bytes:
    """Serialise like Flask's ``jsonify`` (sorted keys, ASCII, compact, trailing newline)."""
    text = json.dumps(
        _clean(obj), sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False
    )
    return (text + "\n").encode("ascii")


def json_response(
    obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A JSON response rendered as DRUM renders dict responses."""
    return Response(status, json_bytes(obj), JSON, headers or [])


def message(text: str, status: int) -> Response:
    """``{"message": text}``."""
    return json_response({"message": text}, status)


def error_response(exc: BaseException) -> Response:
    """The single mapping from an exception to the response a client sees."""
    if is_user_error(exc):
        status = int(getattr(exc, "status_code", 400))
        return json_response({"message": str(exc)}, status, [("X-Drum-User-Http-Error", "true")])
    if isinstance(exc, QueryKeyError):
        return json_response({"error": WERKZEUG_400}, 400)
    if isinstance(exc, BadRequest):
        return json_response({"error": exc.message}, exc.status)
    if isinstance(exc, PlainBadRequest):
        return message(exc.message, exc.status)
    if isinstance(exc, SchemaValidationError):
        return json_response(
            {"message": f"ERROR: {exc.message}", "is_schema_validation_error": True}, exc.status
        )
    if isinstance(exc, RequestError):
        return message(f"ERROR: {exc.message}", exc.status)
    return message(capped(f"ERROR: {exc}"), 500)


#: Sent with every response (the migration plan's security list): the API's JSON is never to be
#: framed, sniffed as another type, or leak its URL as a referrer.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)


def standard_headers(request_id: str) -> list[tuple[str, str]]:
    """Headers every response carries."""
    return [
        ("X-Drum-Version", DRUM_COMPAT_VERSION),
        (REQUEST_ID_HEADER, request_id),
        *SECURITY_HEADERS,
    ]
