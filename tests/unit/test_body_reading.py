"""Reading a request body whole on each stack's adapter, with fake server streams."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from tandem.errors import IncompleteBody, PayloadTooLarge
from tandem.servers.connections import BODY_CUT_SCOPE_KEY
from tandem.servers.fastapi_app import ClientGone, read_asgi_body
from tandem.servers.flask_app import read_wsgi_body


def TOO_LARGE() -> PayloadTooLarge:  # noqa: N802 - stands for the service's error factory
    return PayloadTooLarge("too large")


class _Failing(io.RawIOBase):
    """A de-chunking stream that hands out ``data`` and then fails as a server's would."""

    def __init__(self, data: bytes, error: Exception) -> None:
        self._data = io.BytesIO(data)
        self._error = error

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        if not chunk:
            raise self._error
        return chunk


def _environ(stream: Any, **extra: str) -> dict[str, Any]:
    return {"wsgi.input": stream, **extra}


def test_wsgi_declared_length_is_read_whole() -> None:
    body = b"x" * 700_000
    got = read_wsgi_body(
        _environ(io.BytesIO(body), CONTENT_LENGTH=str(len(body))), 10**6, TOO_LARGE
    )
    assert got == body


def test_wsgi_declared_length_short_is_incomplete() -> None:
    env = _environ(io.BytesIO(b"abc"), CONTENT_LENGTH="10")
    with pytest.raises(IncompleteBody):
        read_wsgi_body(env, 100, TOO_LARGE)


def test_wsgi_declared_length_over_limit_reads_nothing() -> None:
    stream = io.BytesIO(b"x" * 200)
    with pytest.raises(PayloadTooLarge):
        read_wsgi_body(_environ(stream, CONTENT_LENGTH="200"), 100, TOO_LARGE)
    assert stream.tell() == 0


def test_wsgi_chunked_over_limit_stops_one_byte_past_it() -> None:
    stream = io.BytesIO(b"x" * 10_000)
    env = _environ(stream, HTTP_TRANSFER_ENCODING="chunked")
    with pytest.raises(PayloadTooLarge):
        read_wsgi_body(env, 1000, TOO_LARGE)
    assert stream.tell() == 1001


def test_wsgi_chunked_at_the_limit_is_whole() -> None:
    env = _environ(io.BytesIO(b"x" * 1000), HTTP_TRANSFER_ENCODING="chunked")
    assert read_wsgi_body(env, 1000, TOO_LARGE) == b"x" * 1000


@pytest.mark.parametrize("error", [OSError("Client disconnected"), ValueError("bad chunk")])
def test_wsgi_dechunking_failure_is_incomplete(error: Exception) -> None:
    env = _environ(_Failing(b"a,b\n", error), HTTP_TRANSFER_ENCODING="chunked")
    with pytest.raises(IncompleteBody):
        read_wsgi_body(env, 1000, TOO_LARGE)


def test_wsgi_bad_content_length_is_incomplete() -> None:
    with pytest.raises(IncompleteBody):
        read_wsgi_body(_environ(io.BytesIO(b""), CONTENT_LENGTH="-5"), 100, TOO_LARGE)


def _receiver(messages: list[dict[str, Any]], scope: dict[str, Any], cut_after: int = -1) -> Any:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if cut_after == 0:
            scope[BODY_CUT_SCOPE_KEY] = True
        if not pending:
            return {"type": "http.disconnect"}
        return pending.pop(0)

    return receive


def _read(scope: dict[str, Any], messages: list[dict[str, Any]], limit: int = 100) -> bytes:
    return asyncio.run(read_asgi_body(scope, _receiver(messages, scope), limit, TOO_LARGE))


def test_asgi_body_is_joined() -> None:
    scope: dict[str, Any] = {"headers": []}
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    assert _read(scope, messages) == b"abcd"


def test_asgi_over_limit_while_streaming() -> None:
    scope: dict[str, Any] = {"headers": []}
    messages = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 3
    with pytest.raises(PayloadTooLarge):
        _read(scope, messages)


def test_asgi_declared_over_limit_reads_nothing() -> None:
    scope: dict[str, Any] = {"headers": [(b"content-length", b"101")]}
    with pytest.raises(PayloadTooLarge):
        _read(scope, [])


def test_asgi_half_closed_mid_body_is_incomplete() -> None:
    scope: dict[str, Any] = {"headers": [], BODY_CUT_SCOPE_KEY: True}
    messages = [{"type": "http.request", "body": b"a,b", "more_body": True}]
    with pytest.raises(IncompleteBody):
        _read(scope, messages)


def test_asgi_disconnect_is_client_gone() -> None:
    scope: dict[str, Any] = {"headers": []}
    with pytest.raises(ClientGone):
        _read(scope, [{"type": "http.request", "body": b"a", "more_body": True}])
