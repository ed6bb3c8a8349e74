"""A raw-socket HTTP/1.1 client for the edges httpx will not produce: chunked bodies cut short,
half-closed connections, endless bodies, malformed framing."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class RawAnswer:
    """What came back: status (0 when nothing parseable), headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def exchange(
    port: int,
    head: bytes,
    body: Iterable[bytes] = (),
    *,
    half_close: bool = False,
    timeout: float = 20.0,
    send_seconds: float = 30.0,
) -> RawAnswer:
    """Send ``head`` and then ``body``'s pieces from a thread while reading the answer.

    Sending stops when the server stops reading (an early answer), after ``send_seconds``, or at
    the end of ``body``; ``half_close`` then sends FIN while still reading. The answer is parsed
    by ``http.client``; a connection closed with no answer gives status 0.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    stop = threading.Event()

    def send() -> None:
        deadline = time.monotonic() + send_seconds
        try:
            sock.sendall(head)
            for piece in body:
                if stop.is_set() or time.monotonic() > deadline:
                    return
                sock.sendall(piece)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered early and closed: expected for refused bodies

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            data = response.read()
        except (http.client.HTTPException, OSError):
            return RawAnswer(0, {}, b"")
        return RawAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        stop.set()
        sock.close()
        sender.join(timeout=5)


def chunked(pieces: Iterable[bytes], *, last: bool = True) -> Iterable[bytes]:
    """Frame ``pieces`` as chunks; ``last`` adds the terminating zero-size chunk."""
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    if last:
        yield b"0\r\n\r\n"


def post_head(path: str, headers: dict[str, str]) -> bytes:
    """A POST request head with ``headers``."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
