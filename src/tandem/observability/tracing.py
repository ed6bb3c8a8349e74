"""OpenTelemetry tracing of requests (placeholder: tracing is off until implemented)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tandem.core.http import Request, Response
from tandem.core.routes import Route
from tandem.settings import ServeSettings


class RequestSpan:
    """Handle on the server span of one request."""

    def finish(self, response: Response) -> None:
        """Record the response on the span (status, body size)."""


class Tracing:
    """Creates one server span per request and child spans for its stages."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings

    @classmethod
    def from_env(cls, settings: ServeSettings) -> Tracing:
        """Tracing configured from the standard ``OTEL_*`` environment variables."""
        return cls(settings)

    @contextlib.contextmanager
    def request_span(self, request: Request, route: Route, template: str) -> Iterator[RequestSpan]:
        """The server span of one request (health routes are not traced)."""
        yield RequestSpan()

    @contextlib.contextmanager
    def child(self, name: str, **attributes: Any) -> Iterator[None]:
        """A child span (``parse``, ``score``, ``serialise``) of the current request span."""
        yield
