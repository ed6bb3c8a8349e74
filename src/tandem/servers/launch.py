"""Starting a server process: Flask's own server, Gunicorn, or Uvicorn."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

from tandem.core.service import PredictionService
from tandem.runtime_params import Params
from tandem.servers.extensions import check_extensions
from tandem.settings import ServeSettings

start_log = logging.getLogger("tandem.start")
start_log.setLevel(logging.INFO)


def startup_line(settings: ServeSettings) -> str:
    """``Starting Flask server (gunicorn, 2 workers) on 127.0.0.1:8080 — DRUM_SERVER_TYPE=...``."""
    server = settings.server
    workers = 1 if server.server_type == "flask" else settings.workers
    name = "Flask" if server.framework == "flask" else "FastAPI"
    plural = "worker" if workers == 1 else "workers"
    return (
        f"Starting {name} server ({server.process_server}, {workers} {plural}) on "
        f"{settings.host}:{settings.port} — {server.reason}"
    )


def serve(settings: ServeSettings, cli: dict[str, Any]) -> None:
    """Load the model (unless workers load it themselves) and serve until stopped."""
    check_extensions(settings)
    server_type = settings.server.server_type
    if server_type == "flask":
        if settings.workers > 1:
            start_log.warning(
                "The Flask development server runs one process; ignoring %d workers. Use "
                "DRUM_SERVER_TYPE=gunicorn for several worker processes (DRUM forks a process "
                "per request here, about 14 times slower).",
                settings.workers,
            )
        _serve_werkzeug(settings)
    elif server_type == "gunicorn":
        _serve_gunicorn(settings)
    else:
        _serve_uvicorn(settings, cli)


def _serve_werkzeug(settings: ServeSettings) -> None:
    from werkzeug.serving import make_server

    from tandem.servers.flask_app import create_app

    app = create_app(PredictionService.load(settings))
    server = make_server(settings.host, settings.port, app, threaded=False, processes=1)
    start_log.info(startup_line(settings))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _serve_gunicorn(settings: ServeSettings) -> None:
    from gunicorn.app.base import BaseApplication

    from tandem.servers.flask_app import create_app

    # Load once in the master, before fork: workers share the model's pages copy-on-write.
    app = create_app(PredictionService.load(settings))
    params = Params()
    options: dict[str, Any] = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "sync",
        "timeout": params.int("DRUM_CLIENT_REQUEST_TIMEOUT", 120, minimum=0, maximum=3600),
        "keepalive": params.int("DRUM_GUNICORN_KEEP_ALIVE", 5, minimum=1, maximum=3600),
        "graceful_timeout": params.int(
            "DRUM_GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1, maximum=3600
        ),
        "backlog": params.int("DRUM_WEBSERVER_BACKLOG", 2048, minimum=1, maximum=10000),
        "max_requests": params.int("DRUM_GUNICORN_MAX_REQUESTS", 0, minimum=0, maximum=10000),
        "loglevel": settings.logging_level if settings.logging_level != "all" else "debug",
        "accesslog": None,
        "proc_name": "tandem",
    }

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    start_log.info(startup_line(settings))
    _Application().run()


def _serve_uvicorn(settings: ServeSettings, cli: dict[str, Any]) -> None:
    import uvicorn

    params = Params()
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "server_header": False,
        "access_log": False,
        "log_level": "info" if settings.logging_level in ("debug", "info", "all") else "warning",
        "timeout_keep_alive": params.int("DRUM_UVICORN_KEEP_ALIVE", 5, minimum=1, maximum=3600),
        "backlog": params.int("DRUM_WEBSERVER_BACKLOG", 2048, minimum=1, maximum=10000),
    }
    if settings.workers == 1:
        from tandem.servers.fastapi_app import create_app

        app = create_app(PredictionService.load(settings))
        start_log.info(startup_line(settings))
        uvicorn.Server(uvicorn.Config(app, **kwargs)).run()
        return
    os.environ["TANDEM_CLI_OPTIONS"] = json.dumps(cli)
    start_log.info(startup_line(settings))
    uvicorn.run(
        "tandem.servers.fastapi_app:app_from_env", factory=True, workers=settings.workers, **kwargs
    )
