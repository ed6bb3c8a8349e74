"""How Uvicorn workers take and answer connections: Nagle off, one send per response, and new
connections spread over the workers by how many each already holds.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import socket
from dataclasses import dataclass
from typing import Any

from tandem.core import limits
from tandem.errors import TandemError

#: A slot with no live worker: never the least loaded.
VACANT = 1 << 62
#: Request body bytes held before reading from the socket pauses. Uvicorn pauses at 64 KiB, but
#: Tandem reads every body whole (up to its size limit) before answering, so pausing there only
#: costs two epoll_ctl calls and a loop pass per 64 KiB (about 8 % of a 1000-row request).
BODY_HIGH_WATER = 4 * 1024 * 1024
#: Scope key set when the client half-closed before its request body's end (read by the app).
BODY_CUT_SCOPE_KEY = "tandem.body_cut"
#: How long a busier worker leaves a waiting connection to the others, and how many times.
DEFER_SECONDS = 0.0005
MAX_DEFERRALS = 4


class ConnectionBoard:
    """Per worker slot: open connections, and whether the worker is idle (waiting for I/O).

    Kept in memory the supervisor's forked workers share. Each worker writes only its own slot
    (aligned 8-byte stores) and reads the others', so no lock is needed; a slightly stale value
    only makes one accept less well placed.
    """

    def __init__(self, slots: int) -> None:
        slots = max(slots, 1)
        self._memory = mmap.mmap(-1, 16 * slots)
        words = memoryview(self._memory).cast("q")
        self._counts = words[:slots]
        self._idle = words[slots:]
        for slot in range(slots):
            self._counts[slot] = VACANT

    def claim(self, slot: int) -> None:
        """A new worker in ``slot`` starts with no connections."""
        self._counts[slot] = 0
        self._idle[slot] = 0

    def set_idle(self, slot: int, idle: bool) -> None:
        """Whether the worker in ``slot`` is waiting for I/O with nothing else to do."""
        self._idle[slot] = int(idle)

    def vacate(self, slot: int) -> None:
        """The worker in ``slot`` is gone (the supervisor says so when it reaps it)."""
        self._counts[slot] = VACANT

    def add(self, slot: int, delta: int) -> None:
        """Count a connection opened (+1) or closed (-1) in ``slot``."""
        self._counts[slot] += delta

    def count(self, slot: int) -> int:
        """Open connections in ``slot`` (``VACANT`` when no worker holds it)."""
        return int(self._counts[slot])

    def idler_holds_fewer(self, slot: int) -> bool:
        """Whether another worker is idle and holds fewer open connections than ``slot``."""
        mine = self._counts[slot]
        return any(
            self._idle[other] and self._counts[other] < mine
            for other in range(len(self._counts))
            if other != slot
        )


@dataclass(frozen=True)
class Seat:
    """This worker's slot on the shared board."""

    board: ConnectionBoard
    slot: int


#: Set in a worker right after fork; None in the supervisor and in single-worker servers.
SEAT: Seat | None = None


def take_seat(board: ConnectionBoard, slot: int) -> None:
    """Called in a freshly forked worker: count this worker's connections in ``slot``."""
    global SEAT
    board.claim(slot)
    SEAT = Seat(board, slot)


class _CountingListener:
    """The listening socket, counting each accepted connection on the board at once.

    The protocol only sees its connection a task later; counting at ``accept`` keeps a worker
    that has just taken a connection from looking idle to the next readiness callback.
    """

    def __init__(self, sock: socket.socket, seat: Seat) -> None:
        self.sock = sock
        self._seat = seat

    def accept(self) -> tuple[socket.socket, Any]:
        conn, address = self.sock.accept()
        self._seat.board.add(self._seat.slot, 1)
        return conn, address

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class _IdleReportingSelector:
    """The loop's selector, telling the board while the worker waits with nothing to do."""

    def __init__(self, selector: Any, seat: Seat) -> None:
        self._selector = selector
        self._seat = seat

    def select(self, timeout: float | None = None) -> Any:
        if timeout is not None and timeout <= 0:
            return self._selector.select(timeout)
        self._seat.board.set_idle(self._seat.slot, True)
        try:
            return self._selector.select(timeout)
        finally:
            self._seat.board.set_idle(self._seat.slot, False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class BalancedAcceptLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, taking new connections one at a time and leaving them to idler workers.

    asyncio accepts every queued connection at once, so when a client opens its connections
    together the worker that wakes first takes them all (seen here: all four of a client's
    connections on one of two workers, half the throughput). This loop accepts one per pass,
    and while another worker is idle and holds fewer connections it waits briefly (at most
    ``MAX_DEFERRALS`` × ``DEFER_SECONDS``) so that one takes it; after that it accepts anyway,
    so a stuck or dying worker never leaves a connection waiting. A busy worker is never
    waited for, so short-lived connections are taken at once.
    """

    _deferred = 0

    def __init__(self, selector: Any = None) -> None:
        super().__init__(selector)
        if SEAT is not None:
            self._selector = _IdleReportingSelector(self._selector, SEAT)  # type: ignore[has-type]

    def _accept_connection(  # type: ignore[override]
        self,
        protocol_factory: Any,
        sock: Any,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *args: Any,
    ) -> None:
        seat = SEAT
        if (
            seat is not None
            and self._deferred < MAX_DEFERRALS
            and seat.board.idler_holds_fewer(seat.slot)
        ):
            self._deferred += 1
            self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
            self.call_later(
                DEFER_SECONDS,
                self._resume_accepting,
                (protocol_factory, sock, sslcontext, server, backlog, *args),
            )
            return
        self._deferred = 0
        if seat is not None and not isinstance(sock, _CountingListener):
            sock = _CountingListener(sock, seat)
        super()._accept_connection(  # type: ignore[misc]
            protocol_factory, sock, sslcontext, server, 1, *args
        )

    def _resume_accepting(self, accept_args: tuple[Any, ...]) -> None:
        sock, server = accept_args[1], accept_args[3]
        if sock.fileno() == -1 or (server is not None and not server.is_serving()):
            return  # the server closed meanwhile
        self._add_reader(  # type: ignore[attr-defined]
            sock.fileno(), self._accept_connection, *accept_args
        )


#: The asyncio internals :class:`BalancedAcceptLoop` overrides or calls (CPython 3.11 to 3.13
#: have them), and the leading parameters of ``_accept_connection`` it passes on.
_INTERNALS = ("_accept_connection", "_add_reader", "_remove_reader")
_ACCEPT_PARAMS = ("self", "protocol_factory", "sock", "sslcontext", "server", "backlog")


def check_asyncio_internals() -> None:
    """Fail loudly when this Python's asyncio lacks what :class:`BalancedAcceptLoop` overrides
    (private methods of ``asyncio.selector_events``), rather than balance wrongly."""
    import inspect
    import platform
    from asyncio import selector_events

    base = selector_events.BaseSelectorEventLoop
    problems = [f"no {name}()" for name in _INTERNALS if not callable(getattr(base, name, None))]
    if not problems:
        params = tuple(inspect.signature(base._accept_connection).parameters)  # type: ignore[attr-defined]
        if params[: len(_ACCEPT_PARAMS)] != _ACCEPT_PARAMS:
            problems.append(f"_accept_connection{params}")
    if problems:
        raise TandemError(
            f"Python {platform.python_version()}: asyncio's selector event loop changed "
            f"({'; '.join(problems)}), so Tandem's connection-balancing loop for several FastAPI "
            "workers cannot run on it. Set DRUM_UVICORN_LOOP=uvloop, or one worker."
        )


def loop_setting(loop: str, workers: int) -> Any:
    """Uvicorn's ``loop`` setting: with several workers on asyncio, the balancing loop."""
    if loop == "asyncio" and workers > 1:
        check_asyncio_internals()
        return BalancedAcceptLoop
    return loop


class CoalescingTransport:
    """A transport that sends what one loop pass writes as one ``send``.

    Uvicorn writes a response's head and its body separately; with Nagle off that is two
    packets and two system calls for every small answer. Writes are buffered until the end of
    the current pass (or a close), so a head and a body written together leave together.
    """

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue ``data``; it leaves with everything else written in this pass."""
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        """Queue each chunk."""
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        """Send what is queued, then close."""
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        """Send what is queued, then half-close."""
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        """Bytes not yet sent, queued here or in the transport."""
        return int(self._transport.get_write_buffer_size()) + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised in a parser callback to stop a request the limit table refuses."""


#: What :func:`http_protocol`'s subclass overrides or reads of Uvicorn's httptools protocol and
#: its request cycle (internals, not a public API): methods, and attributes they assign.
_UVICORN_METHODS = (
    "connection_made",
    "connection_lost",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "send_400_response",
    "_should_upgrade",
)
_UVICORN_PROTOCOL_ATTRS = ("cycle", "parser", "flow", "url", "loop", "transport")
_UVICORN_CYCLE_ATTRS = ("body", "message_event", "more_body", "response_complete", "keep_alive")


def check_uvicorn_internals() -> None:
    """Fail loudly when the installed Uvicorn's httptools protocol no longer has what Tandem's
    subclass relies on, rather than serve with limits or timeouts silently missing."""
    import inspect

    import uvicorn
    from uvicorn.protocols.http import httptools_impl

    protocol, cycle = httptools_impl.HttpToolsProtocol, httptools_impl.RequestResponseCycle
    problems = [f"no {m}()" for m in _UVICORN_METHODS if not callable(getattr(protocol, m, None))]
    for cls, attrs in ((protocol, _UVICORN_PROTOCOL_ATTRS), (cycle, _UVICORN_CYCLE_ATTRS)):
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # installed without sources (bytecode only): unchecked
            logging.getLogger("tandem.server").warning(
                "uvicorn %s is installed without sources; its %s could not be checked",
                uvicorn.__version__,
                cls.__name__,
            )
            continue
        problems += [
            f"no {cls.__name__}.{a}"
            for a in attrs
            if f"self.{a} =" not in source and f"self.{a}:" not in source
        ]
    if problems:
        raise TandemError(
            f"uvicorn {uvicorn.__version__}: its httptools protocol changed "
            f"({'; '.join(problems)}); Tandem's FastAPI worker builds on it. Install a "
            "uvicorn this Tandem release was tested with (its CI tests 0.36 and 0.55)."
        )


def http_protocol(header_timeout: float = 30.0) -> type:
    """Uvicorn's httptools protocol as Tandem's workers use it.

    Nagle is off, a pass's writes leave in one send, connections are counted on the board, and
    request bodies are read without pausing every 64 KiB. asyncio turns on ``TCP_NODELAY`` only
    for sockets whose ``proto`` is ``IPPROTO_TCP``, and the listening socket Uvicorn binds has
    ``proto`` 0, so without it a response written as headers then body waits for the client's
    delayed ACK (40 ms) on the asyncio loop.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    check_uvicorn_internals()

    class TandemHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            # Counted on the board when accepted (see _CountingListener); uncounted when lost.
            self._tandem_seat = SEAT
            self._tandem_header_timer: asyncio.TimerHandle | None = None
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
            self._tandem_arm_header_timer()

        # -- header timeout: Uvicorn has none, so a client that never finishes its headers
        # (or never sends a byte) would hold its connection for ever -----------------------

        def _tandem_arm_header_timer(self) -> None:
            if self._tandem_header_timer is None:
                self._tandem_header_timer = self.loop.call_later(
                    header_timeout, self._tandem_headers_too_slow
                )

        def _tandem_disarm_header_timer(self) -> None:
            if self._tandem_header_timer is not None:
                self._tandem_header_timer.cancel()
                self._tandem_header_timer = None

        def _tandem_headers_too_slow(self) -> None:
            self._tandem_header_timer = None
            if not self.transport.is_closing():
                self.transport.write(limits.raw_answer(408))
                self.transport.close()

        def on_body(self, body: bytes) -> None:
            # Uvicorn's own on_body, with BODY_HIGH_WATER in place of its 64 KiB.
            cycle = self.cycle
            if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
                return
            cycle.body += body
            if len(cycle.body) > BODY_HIGH_WATER:
                self.flow.pause_reading()
            cycle.message_event.set()

        # -- the limit table (tandem.core.limits) and its JSON answers ----------------------

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._tandem_arm_header_timer()
            self._tandem_fields = 0
            self._tandem_refusal: int | str | None = None

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            if len(self.url) > limits.MAX_REQUEST_LINE:
                self._tandem_refusal = 414
                raise _Refused

        def on_header(self, name: bytes, value: bytes) -> None:
            self._tandem_fields += 1
            if (
                self._tandem_fields > limits.MAX_HEADERS
                or len(name) + len(value) > limits.MAX_HEADER_FIELD
            ):
                self._tandem_refusal = 431
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._tandem_disarm_header_timer()
            line = len(self.parser.get_method()) + len(self.url) + len(" HTTP/1.1 ")
            if line > limits.MAX_REQUEST_LINE:
                self._tandem_refusal = 414
                raise _Refused
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            # Uvicorn's own answer is plain text; every stack answers these in the same JSON.
            kind = getattr(self, "_tandem_refusal", None)
            cycle = self.cycle
            if kind is None and cycle is not None and cycle.more_body:
                kind = limits.BAD_CHUNKS  # the headers were fine; the body's framing was not
            self.transport.write(limits.raw_answer(kind or 400))
            self.transport.close()

        def eof_received(self) -> bool | None:  # type: ignore[override]
            # Uvicorn closes on the client's FIN, so a client that half-closes before its body's
            # end would get no answer. Keep the write side open and tell the body reader (it
            # answers 400 and never scores the prefix); the response then closes the connection.
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                cycle.scope[BODY_CUT_SCOPE_KEY] = True  # type: ignore[literal-required]
                cycle.keep_alive = False
                cycle.message_event.set()
                return True
            return None

        def connection_lost(self, exc: Exception | None) -> None:
            self._tandem_disarm_header_timer()
            seat = getattr(self, "_tandem_seat", None)
            if seat is not None:
                seat.board.add(seat.slot, -1)
            super().connection_lost(exc)

    return TandemHttpToolsProtocol
