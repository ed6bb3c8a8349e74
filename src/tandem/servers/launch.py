"""Starting a server process: Flask's own server, or Gunicorn with sync (Flask) or Uvicorn
(FastAPI) workers."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from typing import Any

from tandem.core import limits
from tandem.observability.oom import witness
from tandem.observability.state import prepare_state_dir
from tandem.runtime_params import Params
from tandem.servers.extensions import check_extensions
from tandem.settings import ServeSettings

start_log = logging.getLogger("tandem.start")


def startup_line(settings: ServeSettings) -> str:
    """The start-up log line, plus the TLS line when TLS is on."""
    line = _stack_line(settings)
    return f"{line}; {settings.tls.log_line()}" if settings.tls else line


def _stack_line(settings: ServeSettings) -> str:
    """``Starting Flask server (gunicorn, 2 workers) on 127.0.0.1:8080 — DRUM_SERVER_TYPE=...``."""
    server = settings.server
    workers = 1 if server.server_type == "flask" else settings.workers
    name = "Flask" if server.framework == "flask" else "FastAPI"
    plural = "worker" if workers == 1 else "workers"
    return (
        f"Starting {name} server ({server.process_server}, {workers} {plural}) on "
        f"{settings.host}:{settings.port} — {server.reason}"
    )


def serve(settings: ServeSettings) -> int:
    """Load the model once, then serve until stopped. Returns the process exit status."""
    check_extensions(settings)
    # Before anything imports prometheus_client: it picks multi-process mode at import time.
    prepare_state_dir()
    # The OOM-kill counter's value now: kills from before this server are not its workers'.
    witness()
    server_type = settings.server.server_type
    if server_type == "flask":
        if settings.workers > 1:
            start_log.warning(
                "The Flask development server runs one process; ignoring %d workers. Use "
                "DRUM_SERVER_TYPE=gunicorn for several worker processes (DRUM forks a process "
                "per request here, about 14 times slower).",
                settings.workers,
            )
        return _serve_werkzeug(settings)
    return _serve_gunicorn(settings, asgi=server_type != "gunicorn")


def freeze_heap() -> None:
    """Move everything loaded so far (libraries, the model) out of the garbage collector's reach.

    The model and its libraries are millions of long-lived objects; without this every full
    collection walks them all (tens of milliseconds, a P99 spike) and, after a fork, touches
    their pages so copy-on-write sharing is lost. Objects created later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def _load_service(settings: ServeSettings, before_fork: bool = False) -> Any:
    """Load the model; before a fork, with OpenMP held to one thread.

    GNU libgomp does not survive fork once a parallel region has run: a worker's first
    multi-threaded region would wait forever for pool threads that exist only in the parent.
    Loading single-threaded (including any warm-up a ``load_model`` hook does) leaves no pool
    behind, and each worker builds its own at full width.
    """
    from tandem.core.service import PredictionService

    if not before_fork:
        return PredictionService.load(settings)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return PredictionService.load(settings)
    with threadpool_limits(limits=1, user_api="openmp"):
        return PredictionService.load(settings)


def graceful_timeout(params: Params, name: str) -> int:
    """Seconds a stopping server waits for in-flight requests (``name``, default 30)."""
    return params.int(name, 30, minimum=1, maximum=3600) or 30


def _serve_werkzeug(settings: ServeSettings) -> int:
    from werkzeug.serving import WSGIRequestHandler, make_server

    from tandem.servers.flask_app import create_app

    class _Handler(WSGIRequestHandler):
        """Werkzeug's handler with the limit table, JSON refusals and no ``Server`` header."""

        # Socket timeout while reading: a client that stalls is dropped after it.
        timeout = settings.header_timeout

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() != "server":
                super().send_header(keyword, value)

        def parse_request(self) -> bool:
            if len(self.raw_requestline.rstrip(b"\r\n")) > limits.MAX_REQUEST_LINE:
                self.send_error(414)
                return False
            if not super().parse_request():
                return False
            fields = self.headers.items()
            if len(fields) > limits.MAX_HEADERS or any(
                len(k) + len(v) > limits.MAX_HEADER_FIELD for k, v in fields
            ):
                self.send_error(431)
                return False
            smuggling = "Content-Length" in self.headers and "Transfer-Encoding" in self.headers
            if smuggling or not limits.METHOD_TOKEN.match(self.command):
                self.send_error(400)
                return False
            return True

        def send_error(self, code: int, message: str | None = None, explain: Any = None) -> None:
            # http.server's HTML page (and 505 for an unknown version): the shared JSON instead.
            self.close_connection = True
            try:
                self.wfile.write(limits.raw_answer(code if code in (414, 431) else 400))
            except OSError:
                pass

    service = _load_service(settings)
    app = create_app(service)
    freeze_heap()
    _warm_tracing(service)
    server = make_server(
        settings.host,
        settings.port,
        app,
        threaded=False,
        processes=1,
        request_handler=_Handler,
        ssl_context=settings.tls.context() if settings.tls else None,
    )
    grace = graceful_timeout(Params(), "DRUM_GUNICORN_GRACEFUL_TIMEOUT")
    start_log.info(startup_line(settings))

    def drain(signum: int, frame: object) -> None:
        # The handler runs between two bytecodes of whatever request is in flight: it only asks
        # the serving loop to stop after that request, and bounds the wait.
        start_log.info("Stopping: finishing the request in flight (at most %gs)", grace)
        threading.Thread(target=server.shutdown, daemon=True).start()

        def cut_off() -> None:
            start_log.error(
                "A request was still running %gs after SIGTERM "
                "(DRUM_GUNICORN_GRACEFUL_TIMEOUT): cutting it off",
                grace,
            )
            logging.shutdown()
            os._exit(1)

        timer = threading.Timer(grace, cut_off)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _warm_tracing(service: Any) -> None:
    """Set this process's OpenTelemetry pipeline up before it serves (no-op without tracing)."""
    tracing = getattr(service, "tracing", None)
    if tracing is not None:
        tracing.warm()


class _ReapedStatuses:
    """The wait status of every child Gunicorn's arbiter reaps, for ``child_exit``.

    Gunicorn calls ``child_exit`` without the status, so an OOM kill, a ``kill -9`` and a hook's
    ``os._exit(3)`` would look alike. The arbiter module's ``os`` is replaced by this proxy,
    which records what ``waitpid`` returns and forwards everything else.
    """

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}

    def install(self, module: Any) -> None:
        """Stand in for ``os`` in Gunicorn's arbiter module (fails loudly if it changed)."""
        if getattr(module, "os", None) is not os:
            import gunicorn

            raise RuntimeError(
                f"gunicorn {gunicorn.__version__}: its arbiter no longer reaps workers through "
                "os.waitpid as Tandem expects; pin gunicorn to a tested version"
            )
        module.os = self

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        """``os.waitpid``, remembering each reaped child's status."""
        wpid, status = os.waitpid(pid, options)
        if wpid:
            self.statuses[wpid] = status
        return wpid, status

    def pop(self, pid: int) -> int | None:
        """The status ``pid`` exited with, once."""
        return self.statuses.pop(pid, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _drop_gunicorn_server_header() -> None:
    """Gunicorn writes ``Server: gunicorn`` itself, with no setting to turn it off: its
    response's default header lines are filtered (checked at start-up, failing loudly)."""
    from gunicorn.http import wsgi

    default_headers = getattr(wsgi.Response, "default_headers", None)
    if default_headers is None:
        import gunicorn

        raise RuntimeError(
            f"gunicorn {gunicorn.__version__}: Response.default_headers is gone; Tandem cannot "
            "drop the Server header (pin gunicorn to a tested version)"
        )
    if getattr(default_headers, "tandem_filtered", False):
        return

    def without_server(self: Any) -> list[str]:
        return [line for line in default_headers(self) if not line.startswith("Server:")]

    without_server.tandem_filtered = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = without_server


def _serve_gunicorn(settings: ServeSettings, asgi: bool = False) -> int:
    """Gunicorn's arbiter over the preloaded app: sync workers for Flask, or (``asgi``) Tandem's
    Uvicorn worker for FastAPI. One supervisor for both stacks: worker replacement, exit
    classification, recycling, graceful drain and the request-timeout backstop are Gunicorn's."""
    from gunicorn import arbiter as gunicorn_arbiter
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from tandem.servers import connections
    from tandem.servers.supervisor import (
        OOM_EXIT_STATUS,
        RECYCLE_STATUS,
        classify_exit,
        report_exit,
        start_heartbeat,
    )

    params = Params()
    if asgi and settings.workers > 1:
        # libuv's own switch for one accept per pass, for uvloop (read when a socket listens).
        os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    # Load once in the master, before fork: workers share the model's pages copy-on-write.
    service = _load_service(settings, before_fork=True)
    if asgi:
        from tandem.servers.fastapi_app import create_app as create_asgi_app

        app: Any = create_asgi_app(service)
    else:
        from tandem.servers.flask_app import create_app

        app = create_app(service)
    freeze_heap()
    # FastAPI workers share open-connection counts so new connections go to the idlest one.
    board = connections.ConnectionBoard(settings.workers) if asgi and settings.workers > 1 else None

    class _PropagatingLogger(Logger):  # type: ignore[misc]
        """Gunicorn's own lines go through Tandem's root handler (one format, JSON or not)."""

        def setup(self, cfg: Any) -> None:
            for log in (self.error_log, self.access_log):
                log.handlers[:] = []
                log.propagate = True

    def pre_fork(server: Any, worker: Any) -> None:
        if board is not None:  # master side: the lowest board slot no live worker holds
            held = {getattr(w, "tandem_slot", None) for w in server.WORKERS.values()}
            worker.tandem_slot = min(set(range(settings.workers)) - held)

    def post_fork(server: Any, worker: Any) -> None:
        if board is not None:
            connections.take_seat(board, worker.tandem_slot)
        _warm_tracing(service)
        worker.tandem_heartbeat = start_heartbeat()
        worker.tandem_recycled = False

        def retire() -> None:
            # A request outran DRUM_CLIENT_REQUEST_TIMEOUT and its hook was interrupted: finish
            # the requests in flight, then exit for a fresh worker (the status says why).
            start_log.error(
                "Worker %d: a model call outran DRUM_CLIENT_REQUEST_TIMEOUT; replacing it",
                os.getpid(),
            )
            worker.tandem_recycled = True
            worker.alive = False
            stop = getattr(worker, "tandem_stop", None)
            if stop is not None:
                stop(service.settings.request_timeout + 10)

        service.on_retire = retire

    def worker_exit(server: Any, worker: Any) -> None:
        beat = getattr(worker, "tandem_heartbeat", None)
        recycled = getattr(worker, "tandem_recycled", False)
        if beat is not None:
            beat.stop(clean=not recycled)
        if recycled:
            from tandem.observability.mlops import flush_all

            flush_all(5.0)  # os._exit skips the atexit hook that drains the MLOps reports
            logging.shutdown()
            os._exit(RECYCLE_STATUS)

    reaped = _ReapedStatuses()
    reaped.install(gunicorn_arbiter)
    _drop_gunicorn_server_header()

    def child_exit(server: Any, worker: Any) -> None:
        if board is not None and hasattr(worker, "tandem_slot"):
            board.vacate(worker.tandem_slot)
        if report_exit(classify_exit(worker.pid, reaped.pop(worker.pid)), restarting=True):
            server.halt(reason="a worker was OOM-killed", exit_status=OOM_EXIT_STATUS)

    class _Arbiter(gunicorn_arbiter.Arbiter):  # type: ignore[misc]
        """Gunicorn's arbiter, with boot-failure exit statuses that model code does not use.

        Gunicorn stops the whole server when a worker exits with 3 ("failed to boot") or 4
        ("app failed to load"), which is also what a booted worker does when a hook calls
        ``sys.exit(3)``. Workers fail to boot with these statuses instead, so any exit after
        start-up is one worker's failure: replaced, logged and counted.
        """

        WORKER_BOOT_ERROR = 213
        APP_LOAD_ERROR = 214
        cut_off = 0
        """Workers still serving when the graceful timeout ran out (SIGKILLed mid-request)."""

        def kill_workers(self, sig: int) -> None:
            if sig == signal.SIGKILL and self.WORKERS:
                self.cut_off = len(self.WORKERS)
            super().kill_workers(sig)

    from tandem.servers.sync_worker import worker_class as sync_worker_class

    worker_class: type = sync_worker_class(settings.header_timeout)
    if asgi:
        from tandem.servers.uvicorn_worker import worker_class as uvicorn_worker_class

        loop = uvicorn_loop(params)
        worker_class = uvicorn_worker_class(
            loop=connections.loop_setting(loop, settings.workers),
            http=connections.http_protocol(settings.header_timeout),
            timeout_keep_alive=params.int("DRUM_UVICORN_KEEP_ALIVE", 5, minimum=1, maximum=3600)
            or 5,
            # Worker recycling: a worker exits after this many requests and is replaced.
            limit_max_requests=params.int("DRUM_UVICORN_MAX_REQUESTS", 0, minimum=0, maximum=10000)
            or None,
            backlog=params.int("DRUM_WEBSERVER_BACKLOG", 2048, minimum=1, maximum=10000) or 2048,
            boot_error_status=_Arbiter.WORKER_BOOT_ERROR,
            **(settings.tls.uvicorn_options() if settings.tls else {}),
        )
    drain_setting = "DRUM_UVICORN_GRACEFUL_TIMEOUT" if asgi else "DRUM_GUNICORN_GRACEFUL_TIMEOUT"
    options: dict[str, Any] = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": worker_class,
        "limit_request_line": limits.MAX_REQUEST_LINE,
        "limit_request_fields": limits.MAX_HEADERS,
        "limit_request_field_size": limits.MAX_HEADER_FIELD,
        # Tandem answers 504 at DRUM_CLIENT_REQUEST_TIMEOUT itself; Gunicorn's own timeout is
        # the backstop for a hook stuck where no signal reaches it (inside C code).
        "timeout": int(settings.request_timeout) + 15 if settings.request_timeout > 0 else 0,
        "keepalive": params.int("DRUM_GUNICORN_KEEP_ALIVE", 5, minimum=1, maximum=3600),
        "graceful_timeout": graceful_timeout(params, drain_setting),
        "backlog": params.int("DRUM_WEBSERVER_BACKLOG", 2048, minimum=1, maximum=10000),
        # The FastAPI worker takes DRUM_UVICORN_MAX_REQUESTS itself (Gunicorn adds jitter).
        "max_requests": 0
        if asgi
        else params.int("DRUM_GUNICORN_MAX_REQUESTS", 0, minimum=0, maximum=10000),
        "loglevel": "info",
        "accesslog": None,
        "logger_class": _PropagatingLogger,
        "proc_name": "tandem",
        "pre_fork": pre_fork,
        "post_fork": post_fork,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
    }

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    if settings.tls is not None and not asgi:  # the Uvicorn worker takes TLS in its own config
        tls = settings.tls
        # Gunicorn turns TLS on when a certificate is configured; the context is Tandem's own,
        # so a key password and the cipher string apply as on the other stacks.
        options.update(
            certfile=tls.certfile,
            keyfile=tls.keyfile,
            ssl_context=lambda config, default_factory: tls.context(),
        )
    start_log.info(startup_line(settings))
    arbiter = _Arbiter(_Application())
    status = 0
    try:
        arbiter.run()
    except RuntimeError as exc:  # what BaseApplication.run does with Gunicorn's own errors
        start_log.error("Error: %s", exc)
        return 1
    except SystemExit as exc:  # Gunicorn's halt: its exit status
        status = exc.code if isinstance(exc.code, int) else 1 if exc.code else 0
    if arbiter.cut_off and status == 0:
        start_log.error(
            "%d worker(s) were still serving when %s ran out: in-flight requests were cut off",
            arbiter.cut_off,
            drain_setting,
        )
        return 1
    return status


#: ``DRUM_UVICORN_LOOP`` values, as Uvicorn's ``--loop`` takes them.
UVICORN_LOOPS = ("asyncio", "uvloop", "auto")


def uvicorn_loop(params: Params) -> str:
    """The event loop for Uvicorn workers: ``DRUM_UVICORN_LOOP``, default ``asyncio``.

    Not Uvicorn's own default (uvloop when installed): measured here, uvloop serves a keep-alive
    connection's next request only every other loop pass under load, so at 32 connections a
    slice of requests waits two full rounds (P99 twice P50, 14 ms against asyncio's 8 ms) for
    about 3 % more throughput.
    """
    return params.choice("DRUM_UVICORN_LOOP", UVICORN_LOOPS, "asyncio")
