"""The router's HTTP client to its two backends: a small interface and its aiohttp implementation.

The proxy and the mirror only see :class:`Backend` and :class:`BackendResponse`, so the
in-process tests drive them with a fake backend. The implementation is aiohttp's client: on
this workload it costs about a tenth of the CPU per request that httpx's async client did (the
bench README has the figures), which is what lets the router add at most a fraction of a
millisecond to a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import aiohttp

Headers = Sequence[tuple[str, str]]


class BackendError(Exception):
    """A transport failure talking to a backend (connect, write or read), or its timeout."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.exc = exc
        self.timeout = isinstance(exc, (asyncio.TimeoutError, TimeoutError))


class BackendResponse(Protocol):
    """An answer whose headers have arrived; its body is read once, whole or in chunks."""

    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    """Header names and values as the backend sent them."""
    content_type: str

    async def read(self) -> bytes:
        """The whole body (BackendError when the backend breaks off)."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (BackendError when the backend breaks off)."""
        ...

    def release(self) -> None:
        """Give the connection back (or close it when the body was not read to the end)."""
        ...


class Backend(Protocol):
    """What the router needs from an HTTP client."""

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> BackendResponse:
        """Send a request; return once the answer's headers are in (BackendError on failure)."""
        ...

    async def ping(self, url: str, timeout: float) -> bool:
        """Whether ``GET url`` answers 200 within ``timeout`` seconds."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


_SKIP_AUTO = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
"""Headers aiohttp would add on its own; the router forwards the client's, and nothing else."""


class _AiohttpResponse:
    __slots__ = ("_response", "content_type", "raw_headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.raw_headers = response.raw_headers
        self.content_type = response.headers.get("Content-Type", "")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BackendError(exc) from exc

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BackendError(exc) from exc

    def release(self) -> None:
        self._response.release()


class AiohttpBackend:
    """:class:`Backend` on one ``aiohttp.ClientSession`` (a keep-alive pool to both sides)."""

    def __init__(self, timeout: float, max_connections: int = 1024) -> None:
        # Idle connections are dropped after 1.5 s: Gunicorn closes its own after 2 s, and a
        # request sent on a connection the backend is closing fails (the proxy retries once).
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=1.5, ttl_dns_cache=None
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=min(timeout, 10.0), sock_read=timeout
            ),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> BackendResponse:
        """See :meth:`Backend.send`."""
        try:
            response = await self._session.request(
                method, url, headers=headers, data=body or None, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BackendError(exc) from exc
        return _AiohttpResponse(response)

    async def ping(self, url: str, timeout: float) -> bool:
        """See :meth:`Backend.ping`."""
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                await response.read()
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def aclose(self) -> None:
        """See :meth:`Backend.aclose`."""
        await self._session.close()
