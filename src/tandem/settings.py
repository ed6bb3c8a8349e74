"""Serving settings: one frozen object built once from the command line and the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.core import deployment_config
from tandem.core.cors import Cors
from tandem.core.drapi import ApiAccess
from tandem.errors import ConfigError
from tandem.metadata import read_metadata
from tandem.observability.mlops import MonitorSettings
from tandem.runtime_params import Params
from tandem.server_type import ServerTypeDecision, decide_server_type
from tandem.tls import TlsSettings

TARGET_TYPES = (
    "binary",
    "regression",
    "anomaly",
    "unstructured",
    "multiclass",
    "transform",
    "textgeneration",
    "geopoint",
    "vectordatabase",
    "agenticworkflow",
    "multilabel",
)
CLASSIFICATION = ("binary", "multiclass", "multilabel")
#: Targets whose prediction column is named by ``TARGET_NAME`` (DRUM reads it only for these).
TARGET_NAME_TYPES = ("textgeneration", "vectordatabase", "agenticworkflow")

#: DRUM's start-up errors for class labels (asserted verbatim by DRUM's functional tests).
BINARY_LABELS_MISSING = (
    "Positive/negative class labels are missing. They must be provided with either one: "
    "--positive-class-label/--negative-class-label arguments, environment variables, model "
    "config file."
)
BINARY_LABELS_MISMATCH = (
    "Positive/negative class labels provided with command arguments or environment variable "
    "don't match values from model config file. Use either one of them or make them match."
)
CLASS_LABELS_MISSING = (
    "Class labels are missing. They must be provided with either one: "
    "--class-labels/--class-labels-file arguments, environment variables, model config file."
)
CLASS_LABELS_MISMATCH = (
    "Class labels provided with command arguments or environment variable don't match values "
    "from model config file. Use either one of them or make them match."
)

#: Default request body limit (100 MiB, the migration plan's DRUM_FASTAPI_MAX_UPLOAD_SIZE).
DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Everything a server process needs to know, validated at start-up."""

    code_dir: Path
    """Absolute, symlink-resolved code dir."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = 8080
    """Port to bind."""
    target_type: str = "regression"
    """One of :data:`TARGET_TYPES`."""
    positive_class_label: str | None = None
    """Binary positive label."""
    negative_class_label: str | None = None
    """Binary negative label."""
    class_labels: tuple[str, ...] | None = None
    """Multiclass / multilabel labels, in the model's probability order."""
    workers: int = 1
    """Process count for gunicorn and uvicorn."""
    with_error_server: bool = False
    """Serve 513s instead of exiting when the model fails to load."""
    logging_level: str = "warning"
    """Root log level."""
    target_name: str | None = None
    """``TARGET_NAME``: the prediction column of text-generation style models."""
    url_prefix: str = ""
    """``URL_PREFIX`` without a trailing slash (``""`` when unset)."""
    server: ServerTypeDecision = field(
        default_factory=lambda: ServerTypeDecision("fastapi", "default", {})
    )
    """Which stack serves, and why."""
    executor_workers: int = 1
    """Threads that run synchronous hooks per FastAPI process."""
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    """Largest accepted request body in bytes."""
    metadata: dict[str, Any] | None = None
    """Parsed ``model-metadata.yaml`` at start-up."""
    show_perf: bool = False
    """Collect request timings for ``/stats/``."""
    max_queue_depth: int = 100
    """``DRUM_MAX_QUEUE_DEPTH``: model requests waiting or running per FastAPI worker before
    new ones are refused with 503."""
    backpressure_timeout: float = 30.0
    """``DRUM_BACKPRESSURE_TIMEOUT``: seconds a FastAPI request may wait for a model thread."""
    concurrency_limit: int | None = None
    """``DRUM_UVICORN_LIMIT_CONCURRENCY``: requests one FastAPI worker serves at once; more get
    503 (None: no cap)."""
    cors: Cors | None = None
    """``DRUM_CORS_*``: the CORS policy (None: off, the default)."""
    tls: TlsSettings | None = None
    """``DRUM_SSL_*``: serve HTTPS (None: plain HTTP)."""
    header_timeout: float = 30.0
    """``DRUM_UVICORN_HEADER_TIMEOUT``: seconds a client has to send a request's headers, on
    every stack (slow-header clients are dropped, with 408 where the server can answer)."""
    api_access: ApiAccess | None = None
    """``--allow-dr-api-access``: DataRobot's client configured for the model."""
    user_secrets_mount_path: str | None = None
    """``--user-secrets-mount-path``: secret files for a custom task (DRUM's)."""
    user_secrets_prefix: str | None = None
    """``--user-secrets-prefix``: ``<PREFIX>_<NAME>`` variables holding a custom task's secrets."""
    deployment_config: dict[str, Any] | None = None
    """``--deployment-config``: answer ``/predict/`` in DataRobot's prediction-API shape."""
    request_timeout: float = 120.0
    """``DRUM_CLIENT_REQUEST_TIMEOUT``: seconds a model call may take before the client gets 504
    and the worker is replaced (0: no limit)."""
    monitor: MonitorSettings | None = None
    """``--monitor``/``--monitor-embedded``: MLOps reporting through datarobot-mlops (None: off)."""

    @property
    def class_ordering(self) -> list[str] | None:
        """Labels in DRUM's marshalling order: [negative, positive] or the class labels."""
        if self.target_type == "binary":
            return [str(self.negative_class_label), str(self.positive_class_label)]
        if self.class_labels:
            return list(self.class_labels)
        return None


def _env_bool(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "y", "t", "on")


def normalise_url_prefix(prefix: str | None) -> str:
    """``/pfx/``, ``/pfx`` and ``pfx`` all mean ``/pfx``; empty means no prefix."""
    if not prefix:
        return ""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host[:port]`` (port defaults to 8080) and validate the port."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        host, port_text = address, "8080"
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--address has invalid port in {address!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--address port must be 0..65535, got {port}")
    return host, port


def _read_labels_file(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as fh:
            return tuple(line.strip() for line in fh if line.strip())
    except OSError as exc:
        raise ConfigError(f"cannot read class labels file {path!r}: {exc}") from None


def resolve_labels(
    target_type: str,
    cli: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
) -> tuple[str | None, str | None, tuple[str, ...] | None]:
    """Class labels from CLI/env, else from metadata, with DRUM's checks.

    As in DRUM, labels given on the command line (or its environment variables) must agree with
    ``inferenceModel`` in ``model-metadata.yaml`` when both are present: binary labels exactly,
    ``classLabels`` as a set.
    """
    inference = (metadata or {}).get("inferenceModel") or {}
    pos, neg = cli.get("positive_class_label"), cli.get("negative_class_label")
    labels: tuple[str, ...] | None = None
    if cli.get("class_labels") and cli.get("class_labels_file"):
        raise ConfigError("--class-labels and --class-labels-file are mutually exclusive")
    if cli.get("class_labels"):
        labels = tuple(str(x) for x in cli["class_labels"])
    elif cli.get("class_labels_file"):
        labels = _read_labels_file(cli["class_labels_file"])

    if (pos is None) != (neg is None):
        raise ConfigError(
            "--positive-class-label and --negative-class-label must be given together"
        )
    if target_type == "binary":
        meta_pos = inference.get("positiveClassLabel")
        meta_neg = inference.get("negativeClassLabel")
        if pos is None:
            pos, neg = meta_pos, meta_neg
        elif (
            meta_pos is not None
            and meta_neg is not None
            and (str(pos), str(neg)) != (str(meta_pos), str(meta_neg))
        ):
            raise ConfigError(BINARY_LABELS_MISMATCH)
        if pos is None or neg is None:
            raise ConfigError(BINARY_LABELS_MISSING)
        return str(pos), str(neg), None
    if target_type in ("multiclass", "multilabel"):
        meta_labels: Any = inference.get("classLabels")
        if not meta_labels and inference.get("classLabelsFile"):
            # Checked like classLabels: a mismatch stops start-up, not every prediction later.
            meta_labels = _read_labels_file(str(inference["classLabelsFile"]))
        if labels is None:
            if meta_labels:
                labels = tuple(str(x) for x in meta_labels)
        elif meta_labels and set(labels) != {str(x) for x in meta_labels}:
            raise ConfigError(CLASS_LABELS_MISMATCH)
        if labels is None:
            raise ConfigError(CLASS_LABELS_MISSING)
        if len(labels) < 2:
            raise ConfigError(f"{target_type} models need at least 2 class labels, got {labels}")
        return None, None, labels
    return None, None, None


def build_settings(
    cli: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ServeSettings:
    """Build and validate :class:`ServeSettings` from parsed CLI options and the environment.

    ``cli`` holds the argparse values (already merged with DRUM's environment-variable
    equivalents by the CLI). This is the only place that turns them into settings.
    """
    env = os.environ if environ is None else environ
    params = Params(env)
    code_dir_text = cli.get("code_dir")
    if not code_dir_text:
        raise ConfigError("--code-dir (or CODE_DIR) is required")
    code_dir = Path(code_dir_text).resolve()
    if not code_dir.is_dir():
        raise ConfigError(f"--code-dir {code_dir_text!r} is not a directory")
    metadata = read_metadata(code_dir)

    target_type = cli.get("target_type")
    meta_target = (metadata or {}).get("targetType")
    if target_type is None:
        target_type = meta_target
    if target_type is None:
        raise ConfigError(
            "Target type is missing. It must be provided in --target-type argument, TARGET_TYPE "
            "env var or model config file. (Tandem: or set targetType in model-metadata.yaml.)"
        )
    target_type = str(target_type).lower()
    if target_type not in TARGET_TYPES:
        raise ConfigError(
            f"--target-type has invalid value {target_type!r}; valid values are: "
            + ", ".join(TARGET_TYPES)
        )
    if meta_target is not None and str(meta_target).lower() != target_type:
        raise ConfigError(
            "Target type provided in --target-type argument doesn't match target type from model "
            "config file. Use either one of them or make them match. (Tandem: --target-type "
            f"{target_type}, targetType {meta_target} in model-metadata.yaml.)"
        )
    pos, neg, labels = resolve_labels(target_type, cli, metadata)

    host, port = parse_address(cli.get("address") or "127.0.0.1:8080")

    max_workers = cli.get("max_workers")
    if max_workers is not None and int(max_workers) <= 0:
        raise ConfigError("--max-workers must be > 0")
    if cli.get("production") and not max_workers:
        raise ConfigError("--production requires --max-workers > 0")
    workers = params.int("CUSTOM_MODEL_WORKERS", None, minimum=1, maximum=199)
    if workers is None:
        workers = int(max_workers) if max_workers else 1

    # --target-name wins over TARGET_NAME like every other flag over its environment variable;
    # other target types always use the ``Predictions`` column, whatever TARGET_NAME says.
    target_name = None
    if target_type in TARGET_NAME_TYPES:
        target_name = cli.get("target_name") or env.get("TARGET_NAME")
    if target_type in TARGET_NAME_TYPES and not target_name:
        raise ConfigError(
            "Unexpected empty target name for text generation, vector database, or agentic "
            "workflow target. Set TARGET_NAME or --target-name."
        )

    return ServeSettings(
        code_dir=code_dir,
        host=host,
        port=port,
        target_type=target_type,
        positive_class_label=pos,
        negative_class_label=neg,
        class_labels=labels,
        workers=workers,
        with_error_server=bool(cli.get("with_error_server")),
        logging_level=str(cli.get("logging_level") or "warning"),
        target_name=target_name,
        url_prefix=normalise_url_prefix(env.get("URL_PREFIX")),
        server=decide_server_type(params, code_dir),
        executor_workers=params.int("DRUM_FASTAPI_EXECUTOR_WORKERS", 1, minimum=1, maximum=256)
        or 1,
        max_body_size=params.int(
            "DRUM_MAX_BODY_SIZE",
            params.int("DRUM_FASTAPI_MAX_UPLOAD_SIZE", DEFAULT_MAX_BODY_SIZE, minimum=1),
            minimum=1,
        )
        or DEFAULT_MAX_BODY_SIZE,
        metadata=metadata,
        show_perf=bool(cli.get("show_perf")),
        api_access=ApiAccess.from_options(
            bool(cli.get("allow_dr_api_access")), cli.get("webserver"), cli.get("api_token")
        ),
        user_secrets_mount_path=cli.get("user_secrets_mount_path") or None,
        user_secrets_prefix=cli.get("user_secrets_prefix") or None,
        deployment_config=(
            deployment_config.load(cli["deployment_config"])
            if cli.get("deployment_config")
            else None
        ),
        request_timeout=float(
            params.int("DRUM_CLIENT_REQUEST_TIMEOUT", 120, minimum=0, maximum=3600) or 0
        ),
        monitor=MonitorSettings.from_options(cli, target_type),
        header_timeout=float(
            params.int("DRUM_UVICORN_HEADER_TIMEOUT", 30, minimum=1, maximum=3600) or 30
        ),
        tls=TlsSettings.from_params(params),
        cors=Cors.from_params(params),
        concurrency_limit=params.int(
            "DRUM_UVICORN_LIMIT_CONCURRENCY", None, minimum=1, maximum=100000
        ),
        max_queue_depth=params.int("DRUM_MAX_QUEUE_DEPTH", 100, minimum=1, maximum=100000) or 100,
        backpressure_timeout=float(
            params.float("DRUM_BACKPRESSURE_TIMEOUT", 30.0, minimum=0.001, maximum=3600) or 30.0
        ),
    )
