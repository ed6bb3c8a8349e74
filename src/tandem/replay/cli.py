"""``tandem replay``: send recorded requests to two servers (or one and the recording) and compare.

Registered in :data:`tandem.cli.PLUGINS`. Only ``argparse`` is imported at module level: the
parser is built on every start of ``tandem server``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_CONCURRENCY = 10
DEFAULT_TIMEOUT = 30.0
DEFAULT_MIN_MATCH_RATE = 100.0
DEFAULT_MAX_P99_RATIO = 1.2
DEFAULT_MAX_DIFFERENCES = 20


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0")
    return value


def _percent(text: str) -> float:
    value = _non_negative_float(text.strip().rstrip("%"))
    if value > 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, got {text!r}")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def add_parser(subparsers: Any) -> None:
    """Register the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="replay recorded requests against two servers and compare the answers",
        description=(
            "Send every request of the JSON-lines files to the candidate and the baseline at the "
            "same time (or only to the candidate, comparing with the responses stored in the "
            "recording) and compare status codes, content types, headers and bodies. Exit "
            "status 0 only when the match rate and the p99 latency ratio meet the thresholds."
        ),
    )
    parser.add_argument(
        "--requests",
        nargs="+",
        required=True,
        metavar="FILE",
        help="JSON-lines files: recordings (DRUM_RECORD_FILE) or the hand-written form",
    )
    parser.add_argument("--candidate", required=True, type=_url, help="base URL of the candidate")
    parser.add_argument(
        "--baseline",
        type=_url,
        help="base URL of the baseline; without it the recorded responses are the baseline",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight per server (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per request before it counts as an error (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--float-tolerance",
        type=_non_negative_float,
        default=None,
        metavar="ABS",
        help="numbers differing by at most ABS are equal (default: exact)",
    )
    parser.add_argument(
        "--significant-digits",
        type=_positive_int,
        default=None,
        metavar="N",
        help="numbers agreeing to N significant digits are equal (default: exact)",
    )
    parser.add_argument(
        "--ignore-header",
        action="append",
        default=[],
        metavar="NAME",
        help="also ignore this response header (repeatable); X-Drum-Version, X-Request-ID, "
        "Date, Server and connection headers are ignored by default",
    )
    parser.add_argument(
        "--compare-header",
        action="append",
        default=[],
        metavar="NAME",
        help="compare a header ignored by default, e.g. X-Drum-Version (repeatable)",
    )
    parser.add_argument(
        "--ignore-field",
        action="append",
        default=[],
        metavar="KEY",
        help="ignore this JSON key at any depth (repeatable); datarobot_association_id is "
        "ignored by default",
    )
    parser.add_argument(
        "--compare-field",
        action="append",
        default=[],
        metavar="KEY",
        help="compare a JSON key ignored by default (repeatable)",
    )
    parser.add_argument(
        "--max-differences",
        type=_positive_int,
        default=DEFAULT_MAX_DIFFERENCES,
        metavar="N",
        help=f"differences shown field by field (default {DEFAULT_MAX_DIFFERENCES})",
    )
    parser.add_argument(
        "--min-match-rate",
        type=_percent,
        default=DEFAULT_MIN_MATCH_RATE,
        metavar="PERCENT",
        help="fail below this match rate (default 100)",
    )
    parser.add_argument(
        "--max-p99-ratio",
        type=_positive_float,
        default=None,
        metavar="RATIO",
        help=f"fail when candidate p99 / baseline p99 is above RATIO (default "
        f"{DEFAULT_MAX_P99_RATIO:g}; against a recording only checked when given)",
    )
    parser.add_argument("--output", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write the report as an HTML page")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--logging-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default="warning",
    )


def run(args: argparse.Namespace) -> int:
    """Run a replay; 0 when the thresholds are met, 1 when not (or nothing could be compared)."""
    import asyncio
    from pathlib import Path

    import orjson
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from tandem.replay.compare import (
        DEFAULT_IGNORED_FIELDS,
        DEFAULT_IGNORED_HEADERS,
        CompareOptions,
    )
    from tandem.replay.loader import load_requests
    from tandem.replay.report import Thresholds, build_report, print_report, render_html
    from tandem.replay.runner import MATCH, Result, replay

    # A pipe or a CI log gets wide tables rather than rich's 80-column default.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True, highlight=False)
    loaded = load_requests(args.requests)
    for bad in loaded.bad_lines:
        err.print(f"skipping {bad.source}:{bad.line}: {bad.reason}", markup=False)

    lower = {h.lower() for h in args.compare_header}
    ignored_headers = (DEFAULT_IGNORED_HEADERS - lower) | {h.lower() for h in args.ignore_header}
    ignored_fields = (DEFAULT_IGNORED_FIELDS - set(args.compare_field)) | set(args.ignore_field)
    options = CompareOptions(
        float_tolerance=args.float_tolerance,
        significant_digits=args.significant_digits,
        ignored_headers=frozenset(ignored_headers),
        ignored_fields=frozenset(ignored_fields),
    )
    thresholds = Thresholds(
        min_match_rate=args.min_match_rate,
        max_p99_ratio=(
            args.max_p99_ratio if args.max_p99_ratio is not None else DEFAULT_MAX_P99_RATIO
        ),
        check_latency=args.baseline is not None or args.max_p99_ratio is not None,
    )

    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[mismatches]} mismatched"),
        TimeElapsedColumn(),
        console=err,
        disable=args.no_progress,
        transient=True,
    )
    mismatches = 0

    with progress:
        task = progress.add_task("replay", total=len(loaded.requests), mismatches=0)

        def advance(result: Result) -> None:
            nonlocal mismatches
            if result.verdict != MATCH:
                mismatches += 1
            progress.update(task, advance=1, mismatches=mismatches)

        results = asyncio.run(
            replay(
                loaded.requests,
                args.candidate,
                args.baseline,
                options,
                concurrency=args.concurrency,
                timeout=args.timeout,
                on_result=advance,
            )
        )

    report = build_report(
        results,
        loaded.bad_lines,
        candidate_url=args.candidate,
        baseline_url=args.baseline,
        request_files=list(args.requests),
        options=options,
        thresholds=thresholds,
        max_differences=args.max_differences,
        concurrency=args.concurrency,
        timeout=args.timeout,
    )
    print_report(report, out)
    try:
        if args.output:
            Path(args.output).write_bytes(
                orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str) + b"\n"
            )
        if args.html:
            Path(args.html).write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        print(f"tandem replay: error: cannot write the report: {exc}", file=sys.stderr)
        return 1
    return 0 if report["passed"] else 1
