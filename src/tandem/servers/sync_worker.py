"""The Flask stack's Gunicorn worker: the sync worker, which slow clients cannot hold.

Gunicorn's sync worker reads a request with blocking calls, one connection at a time, so a
client that sends its headers slowly holds the whole worker (up to the header timeout), and a
few hundred such clients starve every worker; Gunicorn's documentation puts a buffering proxy in
front for that. This worker does the buffering itself, in the same thread and without a proxy:

- it accepts connections without blocking and keeps them in a selector until their request
  head (up to the blank line) has arrived, reading whatever each sends as it comes;
- only a connection whose head is complete is served, by Gunicorn's own sync handling (parser,
  WSGI, one request per connection), reading the buffered bytes first;
- a connection whose head is not complete within ``DRUM_UVICORN_HEADER_TIMEOUT`` gets the same
  408 JSON answer as on the FastAPI stack, and is closed;
- it takes new connections only while it has no complete request waiting, so an idle worker
  takes the next one, and on shutdown (or recycling) it stops accepting, finishes the heads it
  holds and serves them before exiting, so no accepted request is dropped.

A slow *body* is still read by the handler, with the header timeout on every read. With TLS
(``DRUM_SSL_*``) the handshake happens in the handler, so heads are not buffered.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.workers.sync import SyncWorker

from tandem.core import limits

#: Bytes of request head buffered at most; a longer head is left to Gunicorn's parser, whose
#: limits answer it (414/431 in the shared JSON).
MAX_BUFFERED_HEAD = 64 * 1024
#: Seconds a new connection's head is waited for before the connection is parked (a normal
#: client's head arrives within microseconds; a slow one costs the worker this much, once).
FIRST_WAIT = 0.005
_HEAD_END = b"\r\n\r\n"


class Prebuffered:
    """A client socket whose first bytes were already read: ``recv`` returns those first."""

    __slots__ = ("_buffer", "_sock")

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self._sock = sock
        self._buffer = data

    def recv(self, size: int, *flags: int) -> bytes:
        """The buffered bytes first, then the socket's."""
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._sock.recv(size, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@dataclass
class _Pending:
    sock: socket.socket
    addr: Any
    listener: Any
    deadline: float
    data: bytearray = field(default_factory=bytearray)

    def head_complete(self, new: int) -> bool:
        # Only the new bytes (and the three before them) can complete the blank line.
        start = max(0, len(self.data) - new - 3)
        return self.data.find(_HEAD_END, start) >= 0 or len(self.data) >= MAX_BUFFERED_HEAD


def _refusal(exc: BaseException) -> int | str:
    if isinstance(exc, http_errors.LimitRequestLine):
        return 414
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return 431
    if isinstance(
        exc,
        (
            http_errors.InvalidChunkSize,
            http_errors.ChunkMissingTerminator,
            http_errors.InvalidChunkExtension,
        ),
    ):
        return limits.BAD_CHUNKS
    if isinstance(exc, (http_errors.ParseException, http_errors.NoMoreData)):
        return 400
    return 500


def worker_class(header_timeout: float) -> type[SyncWorker]:
    """The sync worker class for a server whose header timeout is ``header_timeout`` seconds."""

    class TandemSyncWorker(SyncWorker):  # type: ignore[misc]
        """See the module docstring."""

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            client.settimeout(header_timeout)
            super().handle(listener, client, addr)

        def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
            """Refused requests get the shared JSON bodies (never Gunicorn's HTML)."""
            kind = _refusal(exc)
            if kind == 500:
                self.log.exception("Error handling request")
            else:
                self.log.warning("Invalid request from %s: %s", (addr or ("",))[0], exc)
            try:
                client.sendall(limits.raw_answer(kind))
            except OSError:
                pass

        def run(self) -> None:
            if self.cfg.is_ssl:
                super().run()
                return
            for sock in self.sockets:
                sock.setblocking(False)
            self._tandem_loop()

        # -- the buffering loop -------------------------------------------------------------

        def _tandem_loop(self) -> None:
            selector = selectors.DefaultSelector()
            pipe = self.PIPE[0]
            selector.register(pipe, selectors.EVENT_READ, None)
            accepting = False
            pending: dict[int, _Pending] = {}
            ready: deque[_Pending] = deque()
            tick = self.timeout or 0.5
            try:
                while self.alive or pending or ready:
                    self.notify()
                    if ready:
                        self._tandem_serve(ready.popleft())
                        continue
                    want = self.alive
                    if want != accepting:
                        for listener in self.sockets:
                            if want:
                                selector.register(listener, selectors.EVENT_READ, listener)
                            else:
                                selector.unregister(listener)
                        accepting = want
                    now = time.monotonic()
                    wait = min([tick, *(p.deadline - now for p in pending.values())])
                    for key, _ in selector.select(max(0.0, wait)):
                        if key.fileobj == pipe:
                            try:
                                os.read(pipe, 1)
                            except OSError:
                                pass
                        elif isinstance(key.data, _Pending):
                            self._tandem_read(selector, key.data, pending, ready)
                        elif not ready:  # one at a time while nothing else is waiting
                            self._tandem_accept(selector, key.data, pending, ready)
                    self._tandem_expire(selector, pending, ready)
                    if not self.is_parent_alive():
                        break
            finally:
                for p in pending.values():
                    p.sock.close()
                selector.close()

        def _tandem_accept(
            self,
            selector: selectors.BaseSelector,
            listener: Any,
            pending: dict[int, _Pending],
            ready: deque[_Pending],
        ) -> None:
            try:
                client, addr = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    return
                raise
            os.set_inheritable(client.fileno(), False)
            conn = _Pending(client, addr, listener, time.monotonic() + header_timeout)
            # Most heads arrive right behind the connection: wait for them briefly here, which
            # costs one poll and one recv, before parking the connection in the selector.
            budget = time.monotonic() + FIRST_WAIT
            try:
                while (left := budget - time.monotonic()) > 0:
                    client.settimeout(left)
                    data = client.recv(MAX_BUFFERED_HEAD)
                    if not data:  # gone before sending a head
                        client.close()
                        return
                    conn.data += data
                    if conn.head_complete(len(data)):
                        ready.append(conn)
                        return
            except (TimeoutError, BlockingIOError, InterruptedError):
                pass
            except OSError:
                client.close()
                return
            client.setblocking(False)
            pending[client.fileno()] = conn
            selector.register(client, selectors.EVENT_READ, conn)

        def _tandem_read(
            self,
            selector: selectors.BaseSelector,
            conn: _Pending,
            pending: dict[int, _Pending],
            ready: deque[_Pending],
        ) -> None:
            try:
                data = conn.sock.recv(MAX_BUFFERED_HEAD)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                conn.data += data
                if not conn.head_complete(len(data)):
                    return
            selector.unregister(conn.sock)
            del pending[conn.sock.fileno()]
            if not data:  # the client went away before finishing its head
                conn.sock.close()
                return
            ready.append(conn)

        def _tandem_expire(
            self,
            selector: selectors.BaseSelector,
            pending: dict[int, _Pending],
            ready: deque[_Pending],
        ) -> None:
            now = time.monotonic()
            for fd, conn in list(pending.items()):
                if conn.deadline <= now:
                    # Its head may have arrived while this worker was serving: look once more.
                    self._tandem_read(selector, conn, pending, ready)
                    if fd not in pending:
                        continue
                if conn.deadline <= now or (not self.alive and not conn.data):
                    selector.unregister(conn.sock)
                    del pending[fd]
                    if conn.deadline <= now:
                        try:
                            conn.sock.send(limits.raw_answer(408))
                        except OSError:
                            pass
                    conn.sock.close()

        def _tandem_serve(self, conn: _Pending) -> None:
            conn.sock.setblocking(True)
            self.handle(conn.listener, Prebuffered(conn.sock, bytes(conn.data)), conn.addr)

    return TandemSyncWorker
