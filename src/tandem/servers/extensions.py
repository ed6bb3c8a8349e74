"""Loading ``custom_flask.py`` / ``custom_fastapi.py`` before serving starts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tandem.core.model import import_file
from tandem.errors import ConfigError
from tandem.server_type import FASTAPI_EXTENSION, FLASK_EXTENSION, find_extensions
from tandem.settings import ServeSettings

logger = logging.getLogger("tandem.extensions")


def check_extensions(settings: ServeSettings) -> None:
    """Refuse to serve when the chosen stack would silently skip the only extension.

    An extension often implements authentication; serving without it would expose the model.
    """
    flask_ext, fastapi_ext = find_extensions(settings.code_dir)
    framework = settings.server.framework
    if framework == "fastapi" and flask_ext is not None and fastapi_ext is None:
        raise ConfigError(
            f"{flask_ext} exists but the server type is fastapi "
            f"({settings.server.reason}), and {FLASK_EXTENSION} cannot run on FastAPI. "
            f"Port it to {FASTAPI_EXTENSION} (init_app(app) with a FastAPI app), or set "
            "DRUM_SERVER_TYPE=flask or gunicorn."
        )
    if framework == "flask" and fastapi_ext is not None and flask_ext is None:
        raise ConfigError(
            f"{fastapi_ext} exists but the server type is {settings.server.server_type} "
            f"({settings.server.reason}), and {FASTAPI_EXTENSION} cannot run on Flask. "
            f"Add a {FLASK_EXTENSION}, or set DRUM_SERVER_TYPE=fastapi."
        )


def load_extension(settings: ServeSettings, app: Any) -> Path | None:
    """Import the stack's extension file and call its ``init_app(app)``."""
    flask_ext, fastapi_ext = find_extensions(settings.code_dir)
    path = flask_ext if settings.server.framework == "flask" else fastapi_ext
    if path is None:
        logger.info(
            "No %s in %s; no extensions loaded",
            FLASK_EXTENSION if settings.server.framework == "flask" else FASTAPI_EXTENSION,
            settings.code_dir,
        )
        return None
    logger.warning(
        "Detected %s .. trying to load %s extensions",
        path,
        "Flask" if settings.server.framework == "flask" else "FastAPI",
    )
    try:
        module = import_file(path, path.stem)
    except Exception as exc:
        raise ConfigError(f"Failed to extend the app from [{path}] : {exc}") from exc
    init_app = getattr(module, "init_app", None)
    if not callable(init_app):
        raise ConfigError(f"{path} has no init_app(app) function")
    init_app(app)
    logger.warning("Loaded extensions from %s", path)
    return path
