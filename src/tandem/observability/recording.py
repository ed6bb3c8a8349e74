"""Request recording for replay testing (``DRUM_RECORD_REQUESTS``).

A sampled share of prediction-type requests is written as JSON lines (schema in
``docs/recording.md``, version :data:`SCHEMA_VERSION`) for ``tandem replay``.

The request path does as little as possible: one random draw, and for a sampled request a
``put_nowait`` of references to the already-built request and response onto a bounded queue.
Everything else (header filtering, body encoding, JSON serialisation, the write) happens in a
daemon writer thread. The app is built before the server forks its workers, so the queue and the
thread are created lazily in each process on its first sampled request. A full queue, an
unserialisable record or a failed write (missing directory, full disk...) drops the record and
increments ``drum_recording_dropped_total``; nothing here ever raises into, blocks or fails a
request.

Several worker processes append to the same file. Each line is written with one ``os.write`` on
an ``O_APPEND`` descriptor while holding an exclusive ``flock`` on a companion lock file
(``<file>.lock``, never rotated, so every process locks the same inode). The same lock guards
size-based rotation, and a process whose descriptor points at a rotated file reopens the current
one before writing. A short write (the disk filled up mid-line) is truncated away, so the file
never holds a partial line.
"""

from __future__ import annotations

import atexit
import base64
import errno
import fcntl
import logging
import os
import queue
import random
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from tandem.core.http import Headers, QueryDict, Request, Response
from tandem.core.routes import Route, template_for
from tandem.observability.batching import next_batch
from tandem.observability.redact import configured_names, redacted_values

if TYPE_CHECKING:
    from tandem.settings import ServeSettings

logger = logging.getLogger("tandem.recording")

#: Version of the JSON-lines schema written by this module (``docs/recording.md``).
SCHEMA_VERSION = 1

#: Routes whose requests may be recorded.
RECORDED_ROUTES = frozenset({"predict", "transform", "predict_unstructured", "chat"})

#: Default recording file (``DRUM_RECORD_FILE``).
DEFAULT_FILE = os.path.join(tempfile.gettempdir(), "tandem-recordings", "requests.jsonl")
DEFAULT_SAMPLE_RATE = 0.01
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUP_COUNT = 5
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

#: Header names never recorded, whatever their value (compared case-insensitively).
DENIED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-auth",
        "x-api-key",
        "api-key",
        "x-csrftoken",
    }
)
#: A header whose lower-cased name contains any of these is never recorded.
DENIED_SUBSTRINGS = (
    "auth",
    "token",
    "cookie",
    "secret",
    "api-key",
    "apikey",
    "password",
    "credential",
    "session",
)
#: Headers that describe the connection rather than the request, or identify the client
#: (addresses are personal data); replaying them is wrong or pointless, so they are not recorded.
TRANSPORT_HEADERS = frozenset(
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
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
    }
)

#: Records written per lock acquisition at most.
_BATCH = 256
#: How long the exit hook waits for the writer to drain the queue.
_EXIT_FLUSH_SECONDS = 5.0


#: Every recorder of this process, for :func:`flush_all`.
_RECORDERS: weakref.WeakSet[Recorder] = weakref.WeakSet()


def flush_all(timeout: float = _EXIT_FLUSH_SECONDS) -> bool:
    """Drain every recorder's queue in this process (for exits that skip ``atexit``).

    A worker that leaves with ``os._exit`` never runs the ``atexit`` hook; calling this first
    writes what is still queued. Returns True when everything was written within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    ok = True
    for recorder in list(_RECORDERS):
        ok = recorder.flush(max(0.0, deadline - time.monotonic())) and ok
    return ok


def is_sensitive_header(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether a header must never be recorded: credentials, cookies, tokens, secrets.

    ``extra`` holds further exact names (``DRUM_RECORD_EXCLUDE_HEADERS``), e.g. an extension's
    custom authentication header whose name contains none of the denied words.
    """
    lowered = name.strip().lower()
    if lowered in DENIED_HEADERS or lowered in {e.strip().lower() for e in extra}:
        return True
    return any(word in lowered for word in DENIED_SUBSTRINGS)


def recordable_headers(
    pairs: Iterable[tuple[str, str]], extra_denied: Iterable[str] = ()
) -> dict[str, str]:
    """The headers worth recording: no credentials, no connection-level headers.

    Repeated names are joined with ``,`` (as HTTP allows for list-valued headers).
    """
    denied = frozenset(e.strip().lower() for e in extra_denied)
    out: dict[str, str] = {}
    lowered: dict[str, str] = {}
    for name, value in pairs:
        low = name.lower()
        if low in TRANSPORT_HEADERS or is_sensitive_header(name, denied):
            continue
        if low in lowered:
            key = lowered[low]
            out[key] = f"{out[key]},{value}"
        else:
            lowered[low] = name
            out[name] = value
    return out


def encode_body(body: bytes) -> tuple[str, str]:
    """``(text, encoding)``: the body as UTF-8 text when it is valid UTF-8, else base64."""
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def decode_body(text: str, encoding: str) -> bytes:
    """Inverse of :func:`encode_body`; ``ValueError`` for an unknown encoding or bad base64."""
    if encoding == "utf-8":
        return text.encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(text.encode("ascii"), validate=True)
    raise ValueError(f"unknown body_encoding {encoding!r}")


@dataclass(frozen=True)
class RecordingConfig:
    """Recording settings, read once at start-up from runtime parameters."""

    path: str = DEFAULT_FILE
    sample_rate: float = DEFAULT_SAMPLE_RATE
    max_bytes: int = DEFAULT_MAX_BYTES
    """Rotate before a write would make the file larger than this; 0 disables rotation."""
    backup_count: int = DEFAULT_BACKUP_COUNT
    """Rotated files kept (``<file>.1`` is the newest); 0 truncates instead of keeping any."""
    queue_size: int = DEFAULT_QUEUE_SIZE
    """Records waiting for the writer, per process, before new ones are dropped."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Bodies larger than this are not stored (the record says so and keeps the size)."""
    exclude_headers: tuple[str, ...] = ()
    """Extra header names never recorded (``DRUM_RECORD_EXCLUDE_HEADERS``, comma-separated)."""
    redact_query: frozenset[str] = frozenset()
    """Extra query parameters whose values are redacted (``DRUM_REDACT_QUERY_PARAMS``)."""

    @classmethod
    def from_params(cls, environ: Any = None) -> RecordingConfig | None:
        """The configuration when ``DRUM_RECORD_REQUESTS`` is true, else None.

        Bad values fail start-up with a message naming the variable (as every parameter does).
        """
        from tandem.runtime_params import Params

        params = Params(environ)
        if not params.bool("DRUM_RECORD_REQUESTS", False):
            return None
        exclude = params.str("DRUM_RECORD_EXCLUDE_HEADERS", "") or ""
        return cls(
            path=params.str("DRUM_RECORD_FILE", DEFAULT_FILE) or DEFAULT_FILE,
            sample_rate=float(
                params.float(
                    "DRUM_RECORD_SAMPLE_RATE", DEFAULT_SAMPLE_RATE, minimum=0.0, maximum=1.0
                )
                or 0.0
            ),
            max_bytes=int(params.int("DRUM_RECORD_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=0) or 0),
            backup_count=int(
                params.int("DRUM_RECORD_BACKUP_COUNT", DEFAULT_BACKUP_COUNT, minimum=0) or 0
            ),
            queue_size=int(
                params.int("DRUM_RECORD_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, minimum=1) or 1
            ),
            max_body_bytes=int(
                params.int("DRUM_RECORD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=0) or 0
            ),
            exclude_headers=tuple(h.strip() for h in exclude.split(",") if h.strip()),
            redact_query=configured_names(environ),
        )


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the request path hands to the writer: references only, no copies, no encoding.

    Neither the request nor the response object is kept, so a body over the limit (or a
    stream's iterator) is never pinned in memory by the queue.
    """

    time: float
    route: str
    seconds: float
    method: str
    path: str
    request_id: str
    query: QueryDict
    request_headers: Headers
    request_body: bytes | None
    """None when larger than the body limit."""
    request_size: int
    status: int
    content_type: str | None
    response_headers: list[tuple[str, str]]
    response_body: bytes | None
    """None for a stream, or when larger than the body limit."""
    response_size: int | None
    """None for a stream."""


def _count_dropped(n: int = 1) -> None:
    try:
        from tandem.observability.metrics import RECORDING_DROPPED

        RECORDING_DROPPED.inc(n)
    except Exception:  # noqa: BLE001 - counting must never fail a caller
        pass


class JsonlAppender:
    """Appends complete lines to a JSON-lines file shared by several processes, with rotation.

    Not thread-safe: one writer thread per process uses it.
    """

    def __init__(self, path: str, max_bytes: int, backup_count: int) -> None:
        self.path = os.path.abspath(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self.last_error: OSError | None = None
        """Why the last :meth:`write_lines` stopped early, if it did."""

    def _open(self, nonblocking: bool = False) -> None:
        """Open the lock file and the data file (creating the directory) if not open yet.

        ``nonblocking`` is for the start-up check: opening a FIFO with no reader would block.
        """
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self._lock_fd is None:
            self._lock_fd = os.open(self.path + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_NONBLOCK if nonblocking else 0)
            self._fd = os.open(self.path, flags, 0o600)

    def _reopen_if_rotated(self) -> None:
        """Another process may have rotated the file since this descriptor was opened."""
        assert self._fd is not None
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(self._fd)
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            os.close(self._fd)
            self._fd = None
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _rotate(self) -> None:
        assert self._fd is not None
        if self.backup_count > 0:
            for i in range(self.backup_count - 1, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
            os.close(self._fd)
            self._fd = None
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        else:
            os.ftruncate(self._fd, 0)

    def write_lines(self, lines: list[bytes]) -> int:
        """Append each line (each ends in a newline) with one ``os.write``; returns lines written.

        Raises ``OSError`` when the file cannot be opened, locked or rotated (nothing of the
        batch is written then). When a write fails (disk full...), whatever part of that line
        reached the file is truncated away, the rest of the batch is not attempted, the error is
        kept in :attr:`last_error` and the number of lines written before it is returned.
        """
        self.last_error = None
        self._open()
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        written = 0
        try:
            self._reopen_if_rotated()
            for line in lines:
                assert self._fd is not None
                size = os.fstat(self._fd).st_size
                if self.max_bytes and size > 0 and size + len(line) > self.max_bytes:
                    self._rotate()
                    size = 0
                try:
                    n = os.write(self._fd, line)
                except OSError as exc:
                    self._truncate(size)
                    self.last_error = exc
                    break
                if n != len(line):
                    self._truncate(size)
                    self.last_error = OSError(errno.ENOSPC, "short write (disk full?)")
                    break
                written += 1
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return written

    def _truncate(self, size: int) -> None:
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, size)
        except OSError:
            pass

    def close(self) -> None:
        """Close the descriptors (reopened on the next write)."""
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._lock_fd = None


class Recorder:
    """Samples prediction requests and writes them off the request path."""

    def __init__(self, settings: ServeSettings, config: RecordingConfig | None = None) -> None:
        self.settings = settings
        self.config = config or RecordingConfig()
        server = settings.server
        self._static = {
            "server_type": server.framework,
            "process_server": server.process_server,
            "target_type": settings.target_type,
        }
        self._pid: int | None = None
        self._queue: queue.Queue[_Pending] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._appender: JsonlAppender | None = None
        self._failing = False
        os.register_at_fork(after_in_child=self._forget_parent)
        _RECORDERS.add(self)

    @classmethod
    def from_env(cls, settings: ServeSettings) -> Recorder | None:
        """A recorder when ``DRUM_RECORD_REQUESTS`` is true, else None."""
        config = RecordingConfig.from_params()
        if config is None:
            return None
        recorder = cls(settings, config)
        recorder._check_writable()
        logger.info(
            "Recording %g%% of prediction requests to %s (rotated at %d bytes, %d kept)",
            config.sample_rate * 100,
            os.path.abspath(config.path),
            config.max_bytes,
            config.backup_count,
        )
        return recorder

    def _check_writable(self) -> None:
        """Warn at start-up (never fail) when the recording file cannot be written."""
        try:
            appender = JsonlAppender(self.config.path, 0, 0)
            appender._open(nonblocking=True)
            appender.close()
        except OSError as exc:
            logger.warning(
                "Request recording is on but %s cannot be opened (%s); records will be dropped "
                "and counted in drum_recording_dropped_total",
                self.config.path,
                exc,
            )

    # -- request path ---------------------------------------------------------------------------

    def record(self, route: Route, request: Request, response: Response, seconds: float) -> None:
        """Offer one answered request for recording; never blocks, never raises."""
        try:
            rate = self.config.sample_rate
            if rate <= 0.0 or (rate < 1.0 and random.random() >= rate):
                return
            q = self._queue
            if q is None or self._pid != os.getpid():
                q = self._start()
            limit = self.config.max_body_bytes
            body = response.body if isinstance(response.body, bytes) else None
            size = len(body) if body is not None else None
            q.put_nowait(
                _Pending(
                    time=time.time(),
                    route=route.name,
                    seconds=seconds,
                    method=request.method,
                    path=request.path,
                    request_id=request.request_id,
                    query=request.query,
                    request_headers=request.headers,
                    request_body=request.body if len(request.body) <= limit else None,
                    request_size=len(request.body),
                    status=response.status,
                    content_type=response.content_type,
                    response_headers=list(response.headers),
                    response_body=body if size is not None and size <= limit else None,
                    response_size=size,
                )
            )
        except queue.Full:
            _count_dropped()
        except Exception:  # noqa: BLE001 - recording must never fail a request
            _count_dropped()

    # -- per-process writer ---------------------------------------------------------------------

    def _forget_parent(self) -> None:
        """In a forked child: the parent's queue, thread and descriptors are not ours."""
        self._pid = None
        self._queue = None
        self._thread = None
        self._appender = None  # the parent's descriptors are leaked (they are the parent's)
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()

    def _start(self) -> queue.Queue[_Pending]:
        with self._start_lock:
            pid = os.getpid()
            if self._pid == pid and self._queue is not None:
                return self._queue
            q: queue.Queue[_Pending] = queue.Queue(maxsize=self.config.queue_size)
            self._queue = q
            self._stopping = threading.Event()
            self._appender = JsonlAppender(
                self.config.path, self.config.max_bytes, self.config.backup_count
            )
            thread = threading.Thread(
                target=self._run, args=(q,), name="tandem-recorder", daemon=True
            )
            self._thread = thread
            thread.start()
            atexit.register(self._flush_at_exit, pid)
            self._pid = pid
            return q

    def _run(self, q: queue.Queue[_Pending]) -> None:
        while (batch := next_batch(q, self._stopping, _BATCH)) is not None:
            try:
                self._write(batch)
            except Exception:  # noqa: BLE001 - the writer thread must survive anything
                logger.exception("request recording failed")
                _count_dropped(len(batch))

    def _write(self, batch: list[_Pending]) -> None:
        lines: list[bytes] = []
        for item in batch:
            try:
                lines.append(orjson.dumps(self.to_record(item)) + b"\n")
            except Exception:  # noqa: BLE001
                logger.exception("request could not be serialised for recording")
                _count_dropped()
        if not lines:
            return
        appender = self._appender
        assert appender is not None
        written = 0
        error: OSError | None
        try:
            written = appender.write_lines(lines)
            error = appender.last_error
        except OSError as exc:
            error = exc
        if error is not None:
            appender.close()  # reopened (and the directory re-created) on the next batch
            if not self._failing:
                logger.warning(
                    "Cannot write request recordings to %s (%s); dropping them",
                    self.config.path,
                    error,
                )
                self._failing = True
        elif self._failing:
            logger.warning("Request recording to %s works again", self.config.path)
            self._failing = False
        if written < len(lines):
            _count_dropped(len(lines) - written)

    def _flush_at_exit(self, pid: int) -> None:
        """Best effort at interpreter exit: let the writer drain the queue, for a few seconds."""
        if pid != os.getpid() or self._thread is None:
            return
        self.flush(_EXIT_FLUSH_SECONDS)

    def flush(self, timeout: float = _EXIT_FLUSH_SECONDS) -> bool:
        """Stop this process's writer after it has written everything queued.

        Returns True when the queue was drained within ``timeout`` seconds. Safe to call from
        any shutdown path (a worker about to ``os._exit``, for example); later records start a
        new writer.
        """
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return True
        self._stopping.set()
        thread.join(timeout)
        drained = not thread.is_alive()
        if drained:
            with self._start_lock:
                self._pid = None
                self._thread = None
                if self._appender is not None:
                    self._appender.close()
        return drained

    # -- the record ----------------------------------------------------------------------------

    def to_record(self, item: _Pending) -> dict[str, Any]:
        """The JSON document for one request (schema version :data:`SCHEMA_VERSION`)."""
        exclude = self.config.exclude_headers
        resp_pairs = list(item.response_headers)
        if item.content_type is not None:
            resp_pairs.append(("Content-Type", item.content_type))
        if item.response_size is None:
            response_body: dict[str, Any] = {
                "stream": True,
                "body": None,
                "body_encoding": None,
                "body_size": None,
            }
        else:
            response_body = {"stream": False, **_body(item.response_body, item.response_size)}
        return {
            "schema_version": SCHEMA_VERSION,
            "time": datetime.fromtimestamp(item.time, UTC).isoformat(timespec="milliseconds"),
            "request_id": item.request_id,
            **self._static,
            "pid": os.getpid(),
            "route": item.route,
            "endpoint": template_for(item.path, self.settings.url_prefix),
            "method": item.method,
            "path": item.path,
            "query": {
                name: redacted_values(name, item.query.getlist(name), self.config.redact_query)
                for name in item.query
            },
            "latency_seconds": round(item.seconds, 6),
            "request": {
                "content_type": item.request_headers.get("Content-Type"),
                "headers": recordable_headers(item.request_headers.items(), exclude),
                **_body(item.request_body, item.request_size),
            },
            "response": {
                "status": item.status,
                "content_type": item.content_type,
                "headers": recordable_headers(resp_pairs, exclude),
                **response_body,
            },
        }


def _body(body: bytes | None, size: int) -> dict[str, Any]:
    if body is None:
        return {"body": None, "body_encoding": None, "body_size": size, "omitted": True}
    text, encoding = encode_body(body)
    return {"body": text, "body_encoding": encoding, "body_size": size}
