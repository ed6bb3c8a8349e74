"""Reading the requests to replay: Tandem's recordings, or a simple hand-written JSON-lines form.

A recording line (``docs/recording.md``) is recognised by its ``schema_version``; every other
line is read as the hand-written form (``docs/replay.md``)::

    {"method": "POST", "path": "/predict/", "headers": {"Content-Type": "text/csv"},
     "body": "a,b\\n1,2\\n"}

A line that cannot be used is reported with its file and line number and skipped; it never stops
the run.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tandem.core.routes import template_for
from tandem.observability.recording import SCHEMA_VERSION, decode_body

#: Request headers never sent on replay: they belong to the original connection.
HOP_BY_HOP = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class LineError(ValueError):
    """A line that cannot be replayed; the message says why."""


@dataclass(frozen=True)
class Expected:
    """The answer a request is expected to get: recorded, or written by hand."""

    status: int
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    """None when not known (hand-written lines without headers)."""
    body: bytes | None = None
    """None when not known: a stream, a body over the recording limit, or not given."""
    stream: bool = False
    latency_seconds: float | None = None
    """Server-side time to answer, from a recording."""


@dataclass(frozen=True)
class ReplayRequest:
    """One request to send, with where it came from."""

    source: str
    line: int
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    endpoint: str = ""
    """Route template (``/predict/``) for the per-route breakdown; the path when unknown."""
    request_id: str | None = None
    expected: Expected | None = None

    @property
    def label(self) -> str:
        """``file:line``, how reports name a request."""
        return f"{self.source}:{self.line}"

    @property
    def route_key(self) -> str:
        """``POST /predict/``: the per-route breakdown's key."""
        return f"{self.method} {self.endpoint or self.path}"


@dataclass(frozen=True)
class BadLine:
    """A line that was skipped, and why."""

    source: str
    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"source": self.source, "line": self.line, "reason": self.reason}


@dataclass
class Loaded:
    """Everything read from the request files."""

    requests: list[ReplayRequest] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)


def load_requests(paths: Iterable[str | Path]) -> Loaded:
    """Read every line of every file; unreadable files and bad lines are reported, not raised."""
    loaded = Loaded()
    for path in paths:
        source = str(path)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            loaded.bad_lines.append(BadLine(source, 0, f"cannot read file: {exc.strerror or exc}"))
            continue
        with handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    loaded.bad_lines.append(BadLine(source, number, "line is not valid UTF-8"))
                    continue
                if not text or text.startswith("#"):
                    continue
                try:
                    loaded.requests.append(parse_line(text, source, number))
                except LineError as exc:
                    loaded.bad_lines.append(BadLine(source, number, str(exc)))
    return loaded


def parse_line(text: str, source: str = "-", line: int = 0) -> ReplayRequest:
    """One JSON line (a recording or the hand-written form) -> a request; ``LineError`` if bad."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LineError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise LineError(f"expected a JSON object, got {type(doc).__name__}")
    if "schema_version" in doc:
        return _from_recording(doc, source, line)
    return _from_hand_written(doc, source, line)


# -- recordings -------------------------------------------------------------------------------


def _from_recording(doc: dict[str, Any], source: str, line: int) -> ReplayRequest:
    version = doc["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise LineError(f"schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION or version < 1:
        raise LineError(
            f"unsupported schema_version {version} (this version of tandem reads 1 to "
            f"{SCHEMA_VERSION})"
        )
    method = _method(doc.get("method"))
    path = _path(doc.get("path"))
    request = _object(doc.get("request"), "request")
    if request.get("omitted"):
        raise LineError(
            f"the request body ({request.get('body_size')} bytes) was over the recording limit "
            "and was not recorded; it cannot be replayed"
        )
    body = _recorded_body(request, "request")
    response = _object(doc.get("response"), "response")
    status = _status(response.get("status"), "response.status")
    stream = bool(response.get("stream"))
    expected_body = None
    if not stream and not response.get("omitted"):
        expected_body = _recorded_body(response, "response")
    latency = doc.get("latency_seconds")
    expected = Expected(
        status=status,
        content_type=_optional_str(response.get("content_type"), "response.content_type"),
        headers=_headers(response.get("headers", {}), "response.headers"),
        body=expected_body,
        stream=stream,
        latency_seconds=float(latency) if isinstance(latency, (int, float)) else None,
    )
    endpoint = doc.get("endpoint")
    return ReplayRequest(
        source=source,
        line=line,
        method=method,
        path=path,
        query=_query(doc.get("query", {})),
        headers=_sendable(_headers(request.get("headers", {}), "request.headers")),
        body=body,
        endpoint=endpoint if isinstance(endpoint, str) and endpoint != "unmatched" else path,
        request_id=doc.get("request_id") if isinstance(doc.get("request_id"), str) else None,
        expected=expected,
    )


def _recorded_body(part: Mapping[str, Any], name: str) -> bytes:
    text = part.get("body")
    if text is None:
        return b""
    if not isinstance(text, str):
        raise LineError(f"{name}.body must be a string")
    encoding = part.get("body_encoding") or "utf-8"
    try:
        return decode_body(text, str(encoding))
    except (ValueError, binascii.Error) as exc:
        raise LineError(f"{name}.body cannot be decoded: {exc}") from None


# -- the hand-written form ----------------------------------------------------------------------


def _from_hand_written(doc: dict[str, Any], source: str, line: int) -> ReplayRequest:
    known = {
        "method",
        "path",
        "query",
        "headers",
        "body",
        "body_base64",
        "json",
        "content_type",
        "response",
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise LineError(
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}"
        )
    if "path" not in doc:
        raise LineError("missing required field 'path'")
    path = _path(doc["path"])
    method = _method(doc.get("method", "POST"))
    headers = list(_headers(doc.get("headers", {}), "headers"))
    body, json_body = _hand_body(doc, "")
    content_type = _optional_str(doc.get("content_type"), "content_type")
    has_ct = any(name.lower() == "content-type" for name, _ in headers)
    if content_type is not None:
        if has_ct:
            raise LineError("give the content type either in 'content_type' or in 'headers'")
        headers.append(("Content-Type", content_type))
    elif json_body and not has_ct:
        headers.append(("Content-Type", "application/json"))
    expected = None
    if "response" in doc:
        expected = _hand_expected(_object(doc["response"], "response"))
    endpoint = template_for(path, "")
    return ReplayRequest(
        source=source,
        line=line,
        method=method,
        path=path,
        query=_query(doc.get("query", {})),
        headers=_sendable(tuple(headers)),
        body=body,
        endpoint=path if endpoint == "unmatched" else endpoint,
        request_id=None,
        expected=expected,
    )


def _hand_body(doc: Mapping[str, Any], prefix: str) -> tuple[bytes, bool]:
    """``body`` (text), ``body_base64`` or ``json``: at most one. Returns (bytes, is_json)."""
    given = [k for k in ("body", "body_base64", "json") if k in doc]
    if len(given) > 1:
        raise LineError(f"give only one of {prefix}body, {prefix}body_base64, {prefix}json")
    if not given:
        return b"", False
    key = given[0]
    value = doc[key]
    if key == "json":
        return json.dumps(value, separators=(",", ":")).encode("utf-8"), True
    if not isinstance(value, str):
        raise LineError(f"{prefix}{key} must be a string")
    if key == "body":
        return value.encode("utf-8"), False
    try:
        return decode_body(value, "base64"), False
    except (ValueError, binascii.Error) as exc:
        raise LineError(f"{prefix}body_base64 is not valid base64: {exc}") from None


def _hand_expected(doc: dict[str, Any]) -> Expected:
    known = {"status", "content_type", "headers", "body", "body_base64", "json"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise LineError(f"unknown field(s) in response: {', '.join(unknown)}")
    status = _status(doc.get("status", 200), "response.status")
    has_body = any(k in doc for k in ("body", "body_base64", "json"))
    body, is_json = _hand_body(doc, "response.")
    content_type = _optional_str(doc.get("content_type"), "response.content_type")
    if is_json and content_type is None:
        content_type = "application/json"
    return Expected(
        status=status,
        content_type=content_type,
        headers=_headers(doc["headers"], "response.headers") if "headers" in doc else None,
        body=body if has_body else None,
    )


# -- field checks ---------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LineError(f"'{name}' must be an object")
    return value


def _method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise LineError(f"method must be one of {', '.join(sorted(METHODS))}, got {value!r}")
    return value.upper()


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise LineError(f"path must be a string starting with '/', got {value!r}")
    if "?" in value or "#" in value:
        raise LineError("path must not contain '?' or '#'; give query parameters in 'query'")
    return value


def _status(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        raise LineError(f"{name} must be an HTTP status code, got {value!r}")
    return value


def _optional_str(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise LineError(f"{name} must be a string")
    return value


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return str(value)
    raise LineError(f"{name} values must be strings, got {value!r}")


def _headers(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        items: Iterable[Any] = value.items()
    elif isinstance(value, list):
        items = value
    else:
        raise LineError(f"{name} must be an object (or a list of [name, value] pairs)")
    out = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise LineError(f"{name} must map header names to values")
        out.append((item[0], _scalar(item[1], name)))
    return tuple(out)


def _query(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str):
        return tuple(parse_qsl(value.lstrip("?"), keep_blank_values=True))
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            values: Sequence[Any] = item if isinstance(item, list) else [item]
            pairs.extend((key, _scalar(v, "query")) for v in values)
        return tuple(pairs)
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise LineError("query must be an object, a string or a list of [name, value]")
            pairs.append((_scalar(item[0], "query"), _scalar(item[1], "query")))
        return tuple(pairs)
    raise LineError("query must be an object, a string or a list of [name, value]")


def _sendable(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((n, v) for n, v in headers if n.lower() not in HOP_BY_HOP)
