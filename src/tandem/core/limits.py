"""One table of HTTP limits, and one answer for requests the HTTP layer refuses, on every stack.

Werkzeug, Gunicorn and Uvicorn each refuse malformed or oversize requests in their own way
(HTML pages, plain text, or not at all: Uvicorn took a 64 KiB header that the others answered
431). Each stack's server is configured or wrapped to apply these limits and to answer with
these bodies, so a client sees the same status and bytes whichever stack serves it.
"""

from __future__ import annotations

import re
import uuid

from tandem.core.http import Response, message, standard_headers
from tandem.errors import IncompleteBody

#: Longest request line (method, target and version, without CRLF), as Gunicorn's maximum.
MAX_REQUEST_LINE = 8190
#: Longest header field (name and value).
MAX_HEADER_FIELD = 8190
#: Most header fields in one request.
MAX_HEADERS = 100

#: Default seconds from a connection's (or a request's) first byte to the end of its headers.
DEFAULT_HEADER_TIMEOUT = 30

#: An RFC 9110 method token.
METHOD_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

_TEXTS = {
    400: "ERROR: Malformed HTTP request.",
    408: "ERROR: Request headers were not received in time (DRUM_UVICORN_HEADER_TIMEOUT).",
    414: f"ERROR: Request line is longer than {MAX_REQUEST_LINE} bytes.",
    431: (
        f"ERROR: Request headers exceed the limits: at most {MAX_HEADERS} fields of at most "
        f"{MAX_HEADER_FIELD} bytes each."
    ),
    500: "ERROR: Internal server error.",
}
#: The answer to a chunked body whose framing the server's parser rejects.
BAD_CHUNKS = "bad-chunks"


def protocol_error(kind: int | str) -> Response:
    """The answer to a request refused before it reached the app (400, 414, 431, 500), or to
    ``BAD_CHUNKS`` (400 with the incomplete-body text the app gives on every stack)."""
    if kind == BAD_CHUNKS:
        return message(f"ERROR: {IncompleteBody().message}", 400)
    status = int(kind)
    return message(_TEXTS.get(status, _TEXTS[400]), status if status in _TEXTS else 400)


def raw_answer(kind: int | str) -> bytes:
    """:func:`protocol_error` as bytes on the wire, closing the connection."""
    resp = protocol_error(kind)
    assert isinstance(resp.body, bytes)
    reason = _REASONS.get(resp.status, "Bad Request")
    lines = [
        f"HTTP/1.1 {resp.status} {reason}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in standard_headers(str(uuid.uuid4()))),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
