"""Which HTTP stack serves a deployment: ``DRUM_SERVER_TYPE`` and the deployment-level canary.

Decision order (first match wins):

1. ``DRUM_SERVER_TYPE`` set: its value, normalised (``werkzeug`` -> ``flask``, ``uvicorn`` ->
   ``fastapi``). Unknown values stop start-up with the list of valid ones.
2. Only one extension file in the code dir: the stack it was written for, so that an
   authentication extension is never skipped.
3. ``DRUM_FASTAPI_CANARY_PERCENT`` set: a stable hash of ``MLOPS_DEPLOYMENT_ID`` picks the side.
4. :data:`DEFAULT_SERVER_TYPE`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tandem.errors import ConfigError
from tandem.runtime_params import Params

#: The stack used when nothing chooses one. Defined here and nowhere else.
DEFAULT_SERVER_TYPE = "fastapi"

#: Accepted ``DRUM_SERVER_TYPE`` values and the server type each one means.
SERVER_TYPE_ALIASES: dict[str, str] = {
    "flask": "flask",
    "werkzeug": "flask",
    "gunicorn": "gunicorn",
    "fastapi": "fastapi",
    "uvicorn": "fastapi",
}

#: For each server type: the framework (what ``/info/`` calls ``drumServer``) and the process
#: server that runs it.
STACKS: dict[str, tuple[str, str]] = {
    "flask": ("flask", "werkzeug"),
    "gunicorn": ("flask", "gunicorn"),
    "fastapi": ("fastapi", "uvicorn"),
}

FLASK_EXTENSION = "custom_flask.py"
FASTAPI_EXTENSION = "custom_fastapi.py"

#: Buckets per 100 %: a deployment's bucket has 0.01 % resolution.
_BUCKETS = 10_000


@dataclass(frozen=True)
class ServerTypeDecision:
    """The chosen server type and why it was chosen."""

    server_type: str
    """``flask``, ``gunicorn`` or ``fastapi``."""
    reason: str
    """One sentence for the start-up log and ``--explain-server-type``."""
    inputs: dict[str, str] = field(default_factory=dict)
    """The settings that produced the decision, for the explanation."""

    @property
    def framework(self) -> str:
        """``flask`` or ``fastapi``."""
        return STACKS[self.server_type][0]

    @property
    def process_server(self) -> str:
        """``werkzeug``, ``gunicorn`` or ``uvicorn``."""
        return STACKS[self.server_type][1]


def normalise_server_type(value: str, source: str = "DRUM_SERVER_TYPE") -> str:
    """Map a user-supplied server type to ``flask``/``gunicorn``/``fastapi`` or fail."""
    key = value.strip().lower()
    if key not in SERVER_TYPE_ALIASES:
        valid = ", ".join(sorted(SERVER_TYPE_ALIASES))
        raise ConfigError(f"{source} has invalid value {value!r}; valid values are: {valid}")
    return SERVER_TYPE_ALIASES[key]


def deployment_bucket(deployment_id: str) -> float:
    """The deployment's stable position in [0, 100), in steps of 0.01."""
    digest = hashlib.md5(deployment_id.encode("utf-8"), usedforsecurity=False).hexdigest()
    return (int(digest, 16) % _BUCKETS) / (_BUCKETS / 100)


def find_extensions(code_dir: Path | None) -> tuple[Path | None, Path | None]:
    """Return the top-level ``custom_flask.py`` and ``custom_fastapi.py`` of a code dir."""
    if code_dir is None:
        return None, None
    flask_ext = code_dir / FLASK_EXTENSION
    fastapi_ext = code_dir / FASTAPI_EXTENSION
    return (
        flask_ext if flask_ext.is_file() else None,
        fastapi_ext if fastapi_ext.is_file() else None,
    )


def decide_server_type(params: Params, code_dir: Path | None) -> ServerTypeDecision:
    """Decide the server type from runtime parameters and the code dir's extension files."""
    explicit = params.raw("DRUM_SERVER_TYPE")
    if explicit is not None and explicit[0] is not None:
        value, source = explicit
        server_type = normalise_server_type(str(value), source)
        return ServerTypeDecision(
            server_type,
            f"{source}={value}",
            {"DRUM_SERVER_TYPE": str(value)},
        )

    flask_ext, fastapi_ext = find_extensions(code_dir)
    if flask_ext is not None and fastapi_ext is None:
        return ServerTypeDecision(
            "flask",
            f"DRUM_SERVER_TYPE unset and the code dir has only {FLASK_EXTENSION}, "
            "which runs only on Flask",
            {"extension": str(flask_ext)},
        )
    if fastapi_ext is not None and flask_ext is None:
        return ServerTypeDecision(
            "fastapi",
            f"DRUM_SERVER_TYPE unset and the code dir has only {FASTAPI_EXTENSION}, "
            "which runs only on FastAPI",
            {"extension": str(fastapi_ext)},
        )

    percent = params.float("DRUM_FASTAPI_CANARY_PERCENT", None, minimum=0.0, maximum=100.0)
    if percent is not None:
        deployment_id = params.str("MLOPS_DEPLOYMENT_ID", None) or "default"
        bucket = deployment_bucket(deployment_id)
        chosen = "fastapi" if bucket < percent else "flask"
        return ServerTypeDecision(
            chosen,
            f"DRUM_SERVER_TYPE unset; deployment {deployment_id!r} is in bucket {bucket:.2f} "
            f"and DRUM_FASTAPI_CANARY_PERCENT={percent:g}, so it is "
            f"{'inside' if chosen == 'fastapi' else 'outside'} the FastAPI canary",
            {
                "DRUM_FASTAPI_CANARY_PERCENT": f"{percent:g}",
                "MLOPS_DEPLOYMENT_ID": deployment_id,
                "bucket": f"{bucket:.2f}",
            },
        )

    return ServerTypeDecision(
        DEFAULT_SERVER_TYPE, f"DRUM_SERVER_TYPE unset; default is {DEFAULT_SERVER_TYPE}", {}
    )
