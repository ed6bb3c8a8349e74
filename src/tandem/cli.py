"""The ``tandem`` / ``drum`` command line: ``server`` and ``score``.

This is the only module that reads ``sys.argv``; DRUM's environment-variable equivalents of its
options are merged here (a flag on the command line always wins).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tandem.errors import ConfigError, ModelLoadError, TandemError
from tandem.version import DRUM_COMPAT_VERSION, __version__

LOG_LEVELS = ("all", "debug", "info", "warn", "warning", "error", "critical", "fatal")

#: DRUM option -> environment variable read when the option is absent (value options).
ENV_VALUES = {
    "code_dir": "CODE_DIR",
    "target_type": "TARGET_TYPE",
    "positive_class_label": "POSITIVE_CLASS_LABEL",
    "negative_class_label": "NEGATIVE_CLASS_LABEL",
    "class_labels_file": "CLASS_LABELS_FILE",
    "class_labels": "CLASS_LABELS",
    "address": "ADDRESS",
    "max_workers": "MAX_WORKERS",
    "runtime_params_file": "RUNTIME_PARAMS_FILE",
    "deployment_config": "DEPLOYMENT_CONFIG",
    "webserver": "EXTERNAL_WEB_SERVER_URL",
    "api_token": "API_TOKEN",
    "lazy_loading_file": "LAZY_LOADING_FILE",
    "deployment_id": "DEPLOYMENT_ID",
    "model_id": "MODEL_ID",
    "monitor_settings": "MONITOR_SETTINGS",
    "user_secrets_mount_path": "USER_SECRETS_MOUNT_PATH",
    "user_secrets_prefix": "USER_SECRETS_PREFIX",
}
#: Second-choice environment variables, read when the first is unset too (DRUM's defaults).
ENV_FALLBACKS = {"deployment_id": "MLOPS_DEPLOYMENT_ID", "model_id": "MLOPS_MODEL_ID"}
#: Boolean options enabled by a truthy environment variable.
ENV_FLAGS = {
    "with_error_server": "WITH_ERROR_SERVER",
    "production": "PRODUCTION",
    "show_stacktrace": "SHOW_STACKTRACE",
    "allow_dr_api_access": "ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS",
    "monitor": "MONITOR",
    "monitor_embedded": "MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS",
}
_TRUTHY = {"1", "true", "yes", "y", "t", "on"}

#: Subcommands that live in their own modules. Each module defines
#: ``add_parser(subparsers) -> None`` (registering one subcommand whose ``dest`` command name is
#: the key) and ``run(args: argparse.Namespace) -> int``. Keep their top-level imports light:
#: the parser is built on every start of ``tandem server``.
#: What the ``ops`` extra installs: needed by the plugin commands, never by ``tandem server``.
OPS_PACKAGES = frozenset({"httpx", "rich", "deepdiff"})

PLUGINS: dict[str, str] = {
    "rollout": "tandem.rollout.cli",
    "fleet": "tandem.fleet.cli",
    "replay": "tandem.replay.cli",
    "verify": "tandem.ops.verify_cli",
    "rollback": "tandem.ops.rollback_cli",
    "export": "tandem.export.cli",
}


_GPU = "GPU predictors (NIM, vLLM, Triton) run in DataRobot's drum: pip install datarobot-drum"
#: ``drum`` flags that only make sense in DataRobot's own build: accepted by the parser (never
#: "unrecognized arguments"), then refused in one line that says what to do instead.
BUILD_ONLY_FLAGS: dict[str, tuple[dict[str, Any], str]] = {
    "--docker": (
        {"metavar": "IMAGE"},
        "Tandem builds and runs no images: run `drum server` inside your image instead",
    ),
    "--memory": (
        {"metavar": "SIZE"},
        "memory limits belong to the container (Kubernetes resources, docker --memory)",
    ),
    "--skip-deps-install": (
        {"action": "store_true", "default": None},
        "Tandem installs no model dependencies: install them in the image, then drop the flag",
    ),
    "--gpu-predictor": ({"metavar": "KIND"}, _GPU),
    "--triton-host": ({"metavar": "HOST"}, _GPU),
    "--triton-http-port": ({"metavar": "PORT"}, _GPU),
    "--triton-grpc-port": ({"metavar": "PORT"}, _GPU),
    "--sidecar": (
        {"action": "store_true", "default": None},
        "sidecar mode is DataRobot's deployment layout: serve with `drum server` on its own",
    ),
}


def build_only_flag_error(args: argparse.Namespace) -> str | None:
    """The one-line refusal for the first DataRobot-build-only flag given, if any."""
    for flag, (_, advice) in BUILD_ONLY_FLAGS.items():
        if getattr(args, flag[2:].replace("-", "_"), None) not in (None, False):
            return f"{flag} only works in DataRobot's own drum build; {advice}."
    return None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-cd", "--code-dir", help="folder with custom.py and/or the model artifact")
    parser.add_argument("--target-type", help="regression, binary, multiclass, unstructured, ...")
    parser.add_argument("--positive-class-label")
    parser.add_argument("--negative-class-label")
    parser.add_argument("--class-labels", nargs="+")
    parser.add_argument("--class-labels-file")
    parser.add_argument("--target-name", help="prediction column of textgeneration-style models")
    parser.add_argument("--logging-level", choices=LOG_LEVELS, default=None)
    parser.add_argument("--show-stacktrace", action="store_true", default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--language", choices=("python",), help="only python is supported")
    parser.add_argument(
        "--runtime-params-file",
        type=existing_file,
        metavar="FILE",
        help="YAML file of runtime parameter values, checked against runtimeParameterDefinitions "
        "in model-metadata.yaml and exported as MLOPS_RUNTIME_PARAM_* (env: RUNTIME_PARAMS_FILE)",
    )
    parser.add_argument(
        "--allow-dr-api-access",
        action="store_true",
        default=None,
        help="configure DataRobot's Python client in the model (env: "
        "ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS)",
    )
    parser.add_argument(
        "--webserver", help="DataRobot external web server URL (env: EXTERNAL_WEB_SERVER_URL)"
    )
    parser.add_argument("--api-token", help="DataRobot API token (env: API_TOKEN)")
    parser.add_argument(
        "--user-secrets-mount-path",
        metavar="DIR",
        help="folder of secret files, one JSON credential each (env: USER_SECRETS_MOUNT_PATH)",
    )
    parser.add_argument(
        "--user-secrets-prefix",
        metavar="PREFIX",
        help="secrets from PREFIX_<NAME> variables (env: USER_SECRETS_PREFIX)",
    )
    parser.add_argument(
        "--lazy-loading-file",
        type=existing_file,
        metavar="FILE",
        help="YAML file of artifacts to fetch before the model loads (env: LAZY_LOADING_FILE)",
    )
    parser.add_argument(
        "--query", help="unstructured only: query string the model gets (as 'a=1&b=2')"
    )
    parser.add_argument(
        "--content-type",
        help=f"unstructured only: the input's Content-Type (default: {SCORE_CONTENT_TYPE!r})",
    )
    _monitoring(parser)
    for flag, (options, _) in BUILD_ONLY_FLAGS.items():
        parser.add_argument(flag, help="DataRobot's build only (refused)", **options)


def _monitoring(parser: argparse.ArgumentParser) -> None:
    """DRUM's MLOps monitoring flags (reported through datarobot-mlops: ``tandem[monitor]``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--monitor",
        action="store_true",
        default=None,
        help="report predictions to DataRobot MLOps (env: MONITOR); not for unstructured models",
    )
    group.add_argument(
        "--monitor-embedded",
        action="store_true",
        default=None,
        help="unstructured models get an MLOps instance as the `mlops` argument to report with "
        "(env: MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS)",
    )
    parser.add_argument("--deployment-id", help="deployment to report to (env: DEPLOYMENT_ID)")
    parser.add_argument("--model-id", help="model to report for (env: MODEL_ID)")
    parser.add_argument(
        "--monitor-settings",
        help="the MLOps library's channel, e.g. 'spooler_type=filesystem;directory=/spool' "
        "(env: MONITOR_SETTINGS)",
    )


def existing_file(arg: str) -> str:
    """argparse type of DRUM's file flags: the path must exist (DRUM's message)."""
    if not os.path.exists(arg):
        raise argparse.ArgumentTypeError(f"The file {arg} does not exist!")
    return os.path.realpath(arg)


def build_parser(prog: str = "tandem") -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve DRUM custom models on Flask or FastAPI (drop-in for `drum server`).",
    )
    parser.add_argument(
        "--version", action="version", version=f"tandem {__version__} (drum {DRUM_COMPAT_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="serve a model over HTTP")
    _common(server)
    server.add_argument("--address", help="host[:port] to bind (default 127.0.0.1:8080)")
    server.add_argument("--max-workers", type=int, help="worker processes (gunicorn, uvicorn)")
    server.add_argument(
        "--with-error-server",
        action="store_true",
        default=None,
        help="serve 513 errors instead of exiting when the model fails to load",
    )
    server.add_argument("--production", action="store_true", default=None)
    server.add_argument(
        "--deployment-config",
        metavar="FILE",
        type=existing_file,
        help="answer /predict/ in DataRobot's prediction-API shape (env: DEPLOYMENT_CONFIG)",
    )
    server.add_argument("--show-perf", action="store_true", help="collect /stats/ timings")
    server.add_argument(
        "--explain-server-type",
        action="store_true",
        help="print which stack would serve and why, then exit",
    )

    score = sub.add_parser("score", help="score a CSV/MTX file with the same core")
    _common(score)
    score.add_argument("--input", required=True, help="CSV or .mtx file to score")
    score.add_argument("--output", help="output file (.json for the server's JSON, else CSV)")
    score.add_argument("--sparse-column-file", help="column names for a .mtx input")
    score.add_argument(
        "--show-perf", action="store_true", help="print load and scoring times, as DRUM does"
    )
    for module in PLUGINS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def merge_env(
    args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]
) -> dict[str, Any]:
    """Fill options absent from the command line from DRUM's environment variables."""
    options = vars(args).copy()
    for key, env_name in ENV_VALUES.items():
        if key in options and options[key] is None and environ.get(env_name):
            value: Any = environ[env_name]
            if key == "class_labels":
                value = value.split()
            elif key == "max_workers":
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(f"MAX_WORKERS has invalid value {value!r}") from None
            options[key] = value
    for key, env_name in ENV_FALLBACKS.items():
        if key in options and options[key] is None and environ.get(env_name):
            options[key] = environ[env_name]
    for key, env_name in ENV_FLAGS.items():
        if key in options and not options[key]:
            options[key] = environ.get(env_name, "").strip().lower() in _TRUTHY
    if options.get("logging_level") in (None,):
        options["logging_level"] = "warning"
    return options


#: What ``drum score`` sends an unstructured model when ``--content-type`` is absent (DRUM's).
SCORE_CONTENT_TYPE = "text/plain; charset=utf8"


def _check_unstructured_flags(options: dict[str, Any], target_type: str) -> None:
    """DRUM's rule: ``--query`` and ``--content-type`` belong to unstructured models only."""
    if target_type == "unstructured":
        return
    for flag in ("query", "content_type"):
        if options.get(flag):
            raise ConfigError(
                f"--{flag.replace('_', '-')} argument can be used only with --target-type "
                "unstructured"
            )


def apply_runtime_params_file(options: dict[str, Any]) -> None:
    """Export ``--runtime-params-file``'s parameters before anything reads them (as DRUM does).

    Runs in the start-up process, before the model loads and before any worker starts, so every
    worker of every stack inherits them. Without a code dir nothing is loaded here: building the
    settings then reports the missing ``--code-dir``.
    """
    values_file, code_dir = options.get("runtime_params_file"), options.get("code_dir")
    if values_file and code_dir:
        from tandem.runtime_params_file import apply_runtime_params_file as apply

        apply(values_file, code_dir)


def export_lazy_loading_file(options: dict[str, Any]) -> None:
    """``--lazy-loading-file`` becomes DRUM's variables, which the model-loading process reads."""
    if options.get("lazy_loading_file"):
        from tandem.lazy_loading import export_file

        export_file(options["lazy_loading_file"])


def _server(options: dict[str, Any]) -> int:
    from tandem.settings import build_settings

    export_lazy_loading_file(options)
    apply_runtime_params_file(options)
    settings = build_settings(options)
    _check_unstructured_flags(options, settings.target_type)
    if options.get("explain_server_type"):
        decision = settings.server
        print(
            f"server type: {decision.server_type} ({decision.framework} on "
            f"{decision.process_server})"
        )
        print(f"reason: {decision.reason}")
        for key, value in decision.inputs.items():
            print(f"  {key} = {value}")
        return 0
    from tandem.servers.launch import serve

    return serve(settings)


def _score(options: dict[str, Any]) -> int:
    from tandem.core.payload import MTX_MIMETYPE, read_sparse_colnames
    from tandem.core.service import PredictionService
    from tandem.settings import build_settings

    started = time.perf_counter()
    options.setdefault("address", None)
    export_lazy_loading_file(options)
    apply_runtime_params_file(options)
    path = Path(options["input"])
    data = _read_file(path, "--input")
    settings = build_settings(options)
    _check_unstructured_flags(options, settings.target_type)
    service = PredictionService.load(settings)
    assert service.model is not None
    loaded = time.perf_counter()
    out_path = options.get("output")
    if settings.target_type == "unstructured":
        query = dict(urllib.parse.parse_qsl(options.get("query") or ""))
        content_type = options.get("content_type") or SCORE_CONTENT_TYPE
        body = service.run_unstructured(data, content_type, query, None).body
        assert isinstance(body, bytes)
        _write(out_path, body)
        _print_perf(options, started, loaded)
        return 0
    mimetype = MTX_MIMETYPE if path.suffix == ".mtx" else "text/csv"
    colnames = None
    if options.get("sparse_column_file"):
        colnames = read_sparse_colnames(
            _read_file(Path(options["sparse_column_file"]), "--sparse-column-file")
        )
    predicting = time.perf_counter()
    result = service.model.predict(data, mimetype, None, colnames)
    if service.monitor is not None:  # reported before the output is written, as DRUM does
        service.monitor.report(data, mimetype, colnames, result.predictions, predicting)
        service.monitor.flush()
    frame = result.predictions
    if out_path and out_path.endswith(".json"):
        from tandem.core.service import render_predictions

        _write(out_path, render_predictions(result))
        return 0
    if result.extra is not None:
        frame = frame.join(result.extra)
    _write(out_path, frame.to_csv(index=False).encode("utf-8"))
    _print_perf(options, started, loaded)
    return 0


def _print_perf(options: dict[str, Any], started: float, loaded: float) -> None:
    """``--show-perf``: DRUM's three timings (one run, so min = avg = max)."""
    if not options.get("show_perf"):
        return
    end = time.perf_counter()
    for name, seconds in (
        ("Full time", end - started),
        ("Init time (incl model loading)", loaded - started),
        ("Run time (incl reading CSV)", end - loaded),
    ):
        print(f"{name}:\n\tsec: min: {seconds:.2f}; avg: {seconds:.2f}; max: {seconds:.2f}")


def _read_file(path: Path, flag: str) -> bytes:
    """Read an input file named by ``flag``; a missing or unreadable file is a ConfigError."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{flag} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _write(path: str | None, data: bytes) -> None:
    if path:
        Path(path).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


#: ``drum`` subcommands that only DataRobot's DRUM has; Tandem runs ``server`` and ``score``.
DRUM_ONLY_COMMANDS = ("fit", "perf-test", "validation", "new", "push")


def drum_main(argv: Sequence[str] | None = None) -> int:
    """The ``drum`` command where DataRobot's DRUM is not installed (its entry point's twin).

    Where DRUM is installed, its own ``drum`` script runs and only ``server``/``score`` reach
    Tandem (see ``_tandem_drum``), so this answers DRUM's other subcommands in one line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in ("server", "score", None) and _real_drum_installed():
        # This `drum` script was installed over DRUM's own; its other subcommands stay DRUM's.
        from datarobot_drum.drum.entry_point import run_drum_server

        sys.argv[1:] = args
        return int(run_drum_server() or 0)
    if command in DRUM_ONLY_COMMANDS:
        print(
            f"drum: error: 'drum {command}' is DataRobot's DRUM, which is not installed here "
            "(Tandem runs 'drum server' and 'drum score'): pip install datarobot-drum",
            file=sys.stderr,
        )
        return 2
    return main(args, prog="drum")


def _real_drum_installed() -> bool:
    """Whether DataRobot's ``datarobot_drum`` (not Tandem's stand-in) is importable."""
    import _tandem_drum

    try:
        spec = importlib.util.find_spec("datarobot_drum")
    except (ImportError, ValueError):
        return False
    return spec is not None and not _tandem_drum.is_compat(spec.origin)


def main(argv: Sequence[str] | None = None, prog: str = "tandem") -> int:
    """Entry point of the ``tandem`` command (and of ``drum server``/``drum score``)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command in PLUGINS:
        from tandem.observability.logs import configure_logging

        configure_logging(getattr(args, "logging_level", None) or "warning", False)
        try:
            return int(importlib.import_module(PLUGINS[args.command]).run(args))
        except ModuleNotFoundError as exc:
            if exc.name not in OPS_PACKAGES:
                raise
            print(
                f"tandem {args.command}: needs the operator tooling, which a bare server does "
                f"not install ({exc.name} is missing): pip install 'tandem[ops]'",
                file=sys.stderr,
            )
            return 1
    refusal = build_only_flag_error(args)
    if refusal is not None:
        print(f"tandem: error: {refusal}", file=sys.stderr)
        return 2
    try:
        options = merge_env(args, os.environ)
        from tandem.observability.logs import configure_logging
        from tandem.runtime_params import Params

        configure_logging(options["logging_level"], Params().bool("DRUM_JSON_LOGGING", False))
        if args.command == "server":
            return _server(options)
        return _score(options)
    except (ConfigError, ModelLoadError, TandemError) as exc:
        if options_show_stacktrace(args):
            raise
        print(f"tandem: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # In `score`, the model's own exceptions are the user's error, not a Tandem crash.
        if args.command != "score" or options_show_stacktrace(args):
            raise
        print(f"tandem: error: {exc}", file=sys.stderr)
        return 1


def options_show_stacktrace(args: argparse.Namespace) -> bool:
    """Whether tracebacks should be shown for start-up failures."""
    return (
        bool(getattr(args, "show_stacktrace", False))
        or os.environ.get("SHOW_STACKTRACE", "").strip().lower() in _TRUTHY
    )


if __name__ == "__main__":
    sys.exit(main())
