"""Logging in one format for every stack: start-up lines, access lines, optional JSON."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import orjson

ACCESS_LOGGER = "tandem.access"
_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ``Z``), level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str, json_logs: bool) -> None:
    """Root logging for the process; every library logger propagates to it."""
    numeric = {"all": logging.DEBUG, "warn": logging.WARNING, "fatal": logging.CRITICAL}.get(
        level, getattr(logging, level.upper(), logging.WARNING)
    )
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if json_logs else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Tandem's start-up and access lines are always shown, whatever the level.
    logging.getLogger("tandem.start").setLevel(logging.INFO)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    # Each stack's own access log is replaced by Tandem's, which has the same format everywhere.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def access_line(
    client: str,
    method: str,
    path: str,
    status: int,
    size: int | None,
    seconds: float,
    request_id: str,
) -> tuple[str, dict[str, Any]]:
    """The access-log message and its structured fields (the same on every stack)."""
    fields = {
        "client": client,
        "method": method,
        "path": path,
        "status": status,
        "bytes": size,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": request_id,
    }
    text = (
        f'{client} "{method} {path}" {status} {"-" if size is None else size} '
        f"{seconds * 1000:.3f}ms request_id={request_id}"
    )
    return text, fields
