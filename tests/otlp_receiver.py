"""A small OTLP/HTTP trace receiver for tests: a real HTTP server on 127.0.0.1 in a thread.

It accepts ``POST /v1/traces`` with protobuf bodies (optionally gzip- or deflate-compressed),
decodes them with ``ExportTraceServiceRequest`` and keeps every span as a :class:`ReceivedSpan`.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

#: ``Span.SpanKind`` numbers of the OTLP protocol.
KIND_INTERNAL = 1
KIND_SERVER = 2
#: ``Status.StatusCode`` numbers of the OTLP protocol.
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list as a dict."""
    out: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        out[pair.key] = any_value(pair.value)
    return out


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector saw it (ids as lowercase hex, as in ``traceparent``)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    resource: dict[str, Any]
    scope: str
    events: tuple[str, ...] = field(default=())


class OtlpReceiver:
    """Collects spans POSTed to ``http://127.0.0.1:<port>/v1/traces``.

    ``fail_status`` makes every export answer that HTTP status instead (to test failures).
    """

    def __init__(self, fail_status: int | None = None) -> None:
        self.fail_status = fail_status
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path.rstrip("/") != "/v1/traces":
                    self._answer(404, b"")
                    return
                if receiver.fail_status is not None:
                    with receiver._cond:
                        receiver.requests += 1
                    self._answer(receiver.fail_status, b"")
                    return
                try:
                    request = ExportTraceServiceRequest.FromString(body)
                except Exception:  # noqa: BLE001 - a bad body is the sender's bug
                    self._answer(400, b"")
                    return
                receiver._store(request)
                self._answer(200, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _store(self, request: ExportTraceServiceRequest) -> None:
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=int(span.kind),
                            attributes=attributes(span.attributes),
                            status_code=int(span.status.code),
                            resource=resource,
                            scope=scope_spans.scope.name,
                            events=tuple(e.name for e in span.events),
                        )
                    )
        with self._cond:
            self.requests += 1
            self.spans.extend(received)
            self._cond.notify_all()

    def start(self) -> OtlpReceiver:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._cond:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans of one trace received so far."""
        return [s for s in self.snapshot() if s.trace_id == trace_id]

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """Wait until ``predicate(all spans)`` holds and return the spans (fail on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.spans)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [(s.name, s.trace_id) for s in self.spans]
                    raise AssertionError(f"spans did not arrive in {timeout}s; have {names}")
                self._cond.wait(remaining)
            return list(self.spans)

    def wait_for_trace(
        self, trace_id: str, count: int, timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """Wait until ``count`` spans of ``trace_id`` arrived; return them."""
        self.wait_for(lambda spans: sum(s.trace_id == trace_id for s in spans) >= count, timeout)
        return self.trace(trace_id)

    def __iter__(self) -> Iterator[ReceivedSpan]:
        return iter(self.snapshot())
