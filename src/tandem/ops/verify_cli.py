"""``tandem verify URL``: the rollback plan's verification checklist against a running server.

Exit status: 0 when no item failed (skipped items do not fail), 1 when any item failed, 2 for
usage errors.
"""

from __future__ import annotations

import argparse
from typing import Any

EXPECT_CHOICES = ("flask", "gunicorn", "fastapi", "werkzeug", "uvicorn")

DESCRIPTION = """\
Run the rollback plan's "Verification After Rollback" checklist against a running server and
print every item with pass/fail, what it saw and how long it took:

  Immediate   /ping 200, /health/ 200, /info/ reports the expected stack (--expect-server),
              no errors of the other stack or tracebacks in the log since the last start
              (--log-file)
  Functional  a single-row and a batch prediction succeed (--payload, or the sample data of
              --code-dir, or of the code dir /info/ names) and match --expected; /stats/ is
              valid; /metrics request counters move after the test requests; with
              --monitor, the MLOps report counters show them sent and none failed
  Full        (--full) a bounded load test (error rate < 0.1 %, P99 reported); every --code-dir
              answers on its target type's route; --extension-route PATH=STATUS answer as
              declared; the server's OTLP exporter counters show spans exported, no failures

Exit status: 0 when nothing failed, 1 when any item failed, 2 for usage errors."""


def normalize_url(value: str) -> str:
    """``host:port`` becomes ``http://host:port``; a trailing slash is dropped."""
    value = value.strip()
    if "://" not in value:
        value = "http://" + value
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _header(value: str) -> tuple[str, str]:
    from tandem.ops.verify import parse_header

    try:
        return parse_header(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _extension_route(value: str) -> Any:
    from tandem.ops.verify import ExtensionRoute

    try:
        return ExtensionRoute.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _code_dir(value: str) -> Any:
    from tandem.ops.verify import CodeDirSpec

    return CodeDirSpec.parse(value)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {value!r}")
        return number

    return parse


def add_verify_arguments(parser: argparse.ArgumentParser, expect: bool = True) -> None:
    """The checklist options, shared by ``tandem verify`` and ``tandem rollback``."""
    group = parser.add_argument_group("verification")
    if expect:
        group.add_argument(
            "--expect-server",
            type=str.lower,
            choices=EXPECT_CHOICES,
            help="stack /info/ must report: flask or fastapi (drumServer); gunicorn also checks "
            "processServer",
        )
    group.add_argument(
        "--log-file",
        type=_path,
        help="server log: the last 'Starting ... server' line must name the expected stack and "
        "no errors of the other stack or tracebacks may follow it",
    )
    group.add_argument("--payload", type=_path, help="prediction payload (CSV is split into rows)")
    group.add_argument("--payload-type", help="content type of --payload (default: from its name)")
    group.add_argument(
        "--code-dir",
        action="append",
        default=[],
        type=_code_dir,
        metavar="DIR[=URL]",
        help="model code dir whose data.csv (or *.csv, input.* for unstructured) feeds the "
        "predictions; with --full each answers on its target type's route (repeatable; "
        "DIR=URL for a model served elsewhere)",
    )
    group.add_argument(
        "--expected",
        type=_path,
        help="expected output: the response JSON (or its predictions list), or a CSV as "
        "'tandem score' writes it",
    )
    group.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="absolute tolerance for --expected numbers (default 0: any difference fails)",
    )
    group.add_argument("--full", action="store_true", help="also run the Full verification")
    group.add_argument(
        "--load-seconds",
        type=_positive(float),
        default=30.0,
        help="load test duration (default 30)",
    )
    group.add_argument(
        "--load-requests",
        type=_positive(int),
        default=20_000,
        help="load test request cap (default 20000)",
    )
    group.add_argument(
        "--load-concurrency",
        type=_positive(int),
        default=4,
        help="load test clients (default 4)",
    )
    group.add_argument(
        "--extension-route",
        action="append",
        default=[],
        type=_extension_route,
        metavar="[METHOD ]PATH=STATUS",
        help="an extension route and the status it must answer (repeatable)",
    )
    group.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="'NAME: VALUE'",
        help="header sent with every request, e.g. 'X-Auth: token' (repeatable)",
    )
    group.add_argument(
        "--require-traces",
        action="store_true",
        help="fail (instead of skip) the traces item when tracing is not configured",
    )
    group.add_argument(
        "--trace-wait",
        type=_positive(float),
        default=15.0,
        help="seconds to wait for the exporter to deliver spans (default 15)",
    )
    group.add_argument(
        "--require-mlops",
        action="store_true",
        help="fail (instead of skip) the MLOps item when the server does not run with --monitor",
    )
    group.add_argument(
        "--mlops-wait",
        type=_positive(float),
        default=15.0,
        help="seconds to wait for the server's MLOps reports to catch up (default 15)",
    )
    group.add_argument(
        "--timeout",
        type=_positive(float),
        default=10.0,
        help="per-request timeout in seconds (default 10)",
    )


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)


def options_from_args(args: argparse.Namespace, expect_server: str | None) -> Any:
    """A :class:`~tandem.ops.verify.VerifyOptions` from parsed arguments."""
    from tandem.ops.verify import VerifyOptions

    return VerifyOptions(
        expect_server=expect_server,
        log_file=args.log_file,
        payload=args.payload,
        payload_content_type=args.payload_type,
        code_dirs=list(args.code_dir),
        expected=args.expected,
        tolerance=args.tolerance,
        full=args.full,
        load_seconds=args.load_seconds,
        load_requests=args.load_requests,
        load_concurrency=args.load_concurrency,
        extension_routes=list(args.extension_route),
        headers=dict(args.header),
        require_traces=args.require_traces,
        trace_wait=args.trace_wait,
        require_mlops=args.require_mlops,
        mlops_wait=args.mlops_wait,
        timeout=args.timeout,
    )


def add_parser(subparsers: Any) -> None:
    """Register ``tandem verify``."""
    parser = subparsers.add_parser(
        "verify",
        help="verify a running server after a rollback (the rollback plan's checklist)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", type=normalize_url, help="the server, e.g. http://127.0.0.1:8080")
    add_verify_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def execute(url: str, options: Any, as_json: bool) -> Any:
    """Run the checklist, showing progress on a terminal, and print the report."""
    from tandem.ops.report import make_console, print_report, report_json
    from tandem.ops.verify import run_checks

    if as_json:
        report = run_checks(url, options)
        print(report_json(report))
        return report
    console = make_console()
    if console.is_terminal:
        with console.status("Verifying…") as status:

            def progress(title: str, result: Any) -> None:
                if result is None:
                    status.update(f"Verifying: {title}…")

            report = run_checks(url, options, progress)
    else:
        report = run_checks(url, options)
    print_report(report, console)
    return report


def run(args: argparse.Namespace) -> int:
    """``tandem verify``: 0 when nothing failed, 1 otherwise."""
    report = execute(args.url, options_from_args(args, args.expect_server), args.json)
    return 0 if report.ok else 1
